//! The `admission.k8s.io/v1` AdmissionReview a webhook is sent, and the checks on its
//! answer (upstream `webhook/request` and `VerifyAdmissionResponse`).

use serde_json::{json, Map, Value};

use super::matching::Operation;
use crate::api::identity::User;

pub const REVIEW_API_VERSION: &str = "admission.k8s.io/v1";

/// What the webhooks are told about one write.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// The resource written (`pods`, or `deployments` for a write of `deployments/scale`).
    pub group: &'a str,
    pub version: &'a str,
    pub resource: &'a str,
    /// The kind of `object` (`Pod`, or autoscaling/v1 `Scale`).
    pub kind: (&'a str, &'a str, &'a str),
    pub subresource: &'a str,
    pub name: &'a str,
    pub namespace: Option<&'a str>,
    pub operation: Operation,
    pub user: &'a User,
    pub object: Option<&'a Value>,
    pub old_object: Option<&'a Value>,
    pub dry_run: bool,
    /// CreateOptions, UpdateOptions or DeleteOptions (`meta.k8s.io/v1`).
    pub options: Value,
}

impl Request<'_> {
    /// The AdmissionReview sent for this write, with a fresh request `uid`.
    pub fn review(&self, uid: &str) -> Value {
        let (group, version, kind) = self.kind;
        let kind = json!({"group": group, "version": version, "kind": kind});
        let resource =
            json!({"group": self.group, "version": self.version, "resource": self.resource});
        let mut user = json!({"username": self.user.name, "groups": self.user.groups});
        if !self.user.uid.is_empty() {
            user["uid"] = json!(self.user.uid);
        }
        if !self.user.extra.is_empty() {
            user["extra"] = json!(self.user.extra);
        }
        let mut request = json!({
            "uid": uid,
            "kind": kind,
            "resource": resource,
            "requestKind": kind,
            "requestResource": resource,
            "name": self.name,
            "operation": self.operation.as_str(),
            "userInfo": user,
            "object": self.object,
            "oldObject": self.old_object,
            "dryRun": self.dry_run,
            "options": self.options,
        });
        if !self.subresource.is_empty() {
            request["subResource"] = json!(self.subresource);
            request["requestSubResource"] = json!(self.subresource);
        }
        if let Some(ns) = self.namespace {
            request["namespace"] = json!(ns);
        }
        json!({"apiVersion": REVIEW_API_VERSION, "kind": "AdmissionReview", "request": request})
    }
}

/// The options object of an operation, as upstream sends it.
pub fn options(operation: Operation, dry_run: bool, field_manager: Option<&str>) -> Value {
    let kind = match operation {
        Operation::Create => "CreateOptions",
        Operation::Update => "UpdateOptions",
        Operation::Delete => "DeleteOptions",
        Operation::Connect => return Value::Null,
    };
    let mut o = json!({"kind": kind, "apiVersion": "meta.k8s.io/v1"});
    if dry_run {
        o["dryRun"] = json!(["All"]);
    }
    if let (Some(m), false) = (field_manager, operation == Operation::Delete) {
        o["fieldManager"] = json!(m);
    }
    o
}

/// Why a webhook's answer is not a usable AdmissionReview response.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ResponseError {
    #[error("the body is not JSON: {0}")]
    NotJson(String),
    #[error("expected webhook response of admission.k8s.io/v1, Kind=AdmissionReview, got {0}")]
    WrongKind(String),
    #[error("webhook response was absent")]
    Absent,
    #[error("expected response.uid=\"{expected}\", got \"{got}\"")]
    WrongUid { expected: String, got: String },
    #[error("expected response.patchType to be set with a patch")]
    PatchTypeMissing,
    #[error("expected patchType \"JSONPatch\", got \"{0}\"")]
    PatchTypeUnsupported(String),
}

/// A webhook's verdict.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Response {
    pub allowed: bool,
    /// `status` of a refusal: code, reason, message.
    pub status: Map<String, Value>,
    /// The base64 JSONPatch of a mutating webhook.
    pub patch: Option<String>,
    pub warnings: Vec<String>,
    pub audit_annotations: Map<String, Value>,
}

/// Parses and checks the answer to the review sent with `uid`.
pub fn parse_response(body: &[u8], uid: &str) -> Result<Response, ResponseError> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| ResponseError::NotJson(e.to_string()))?;
    let (api_version, kind) = (
        review["apiVersion"].as_str().unwrap_or(""),
        review["kind"].as_str().unwrap_or(""),
    );
    if api_version != REVIEW_API_VERSION || kind != "AdmissionReview" {
        return Err(ResponseError::WrongKind(format!(
            "{api_version}, Kind={kind}"
        )));
    }
    let r = review
        .get("response")
        .filter(|r| r.is_object())
        .ok_or(ResponseError::Absent)?;
    let got = r["uid"].as_str().unwrap_or("");
    if got != uid {
        return Err(ResponseError::WrongUid {
            expected: uid.to_string(),
            got: got.to_string(),
        });
    }
    let patch = r["patch"]
        .as_str()
        .filter(|p| !p.is_empty())
        .map(String::from);
    match (r["patchType"].as_str(), &patch) {
        (None, Some(_)) => return Err(ResponseError::PatchTypeMissing),
        (Some(t), _) if t != "JSONPatch" => {
            return Err(ResponseError::PatchTypeUnsupported(t.to_string()))
        }
        _ => {}
    }
    Ok(Response {
        allowed: r["allowed"].as_bool().unwrap_or(false),
        status: r["status"].as_object().cloned().unwrap_or_default(),
        patch,
        warnings: r["warnings"]
            .as_array()
            .map(|w| {
                w.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect()
            })
            .unwrap_or_default(),
        audit_annotations: r["auditAnnotations"]
            .as_object()
            .cloned()
            .unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user() -> User {
        User {
            name: "alice".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            uid: "u-1".into(),
            extra: [("scopes".to_string(), vec!["a".to_string()])].into(),
        }
    }

    #[test]
    fn the_review_carries_resource_user_objects_and_options() {
        let user = user();
        let pod = json!({"metadata": {"name": "p"}});
        let req = Request {
            group: "",
            version: "v1",
            kind: ("", "v1", "Pod"),
            resource: "pods",
            subresource: "status",
            name: "p",
            namespace: Some("default"),
            operation: Operation::Update,
            user: &user,
            object: Some(&pod),
            old_object: Some(&pod),
            dry_run: true,
            options: options(Operation::Update, true, Some("kubectl")),
        };
        let review = req.review("id-1");
        let r = &review["request"];
        assert_eq!(review["apiVersion"], "admission.k8s.io/v1");
        assert_eq!(r["uid"], "id-1");
        assert_eq!(
            r["kind"],
            json!({"group": "", "version": "v1", "kind": "Pod"})
        );
        assert_eq!(r["resource"]["resource"], "pods");
        assert_eq!(r["subResource"], "status");
        assert_eq!(r["namespace"], "default");
        assert_eq!(r["operation"], "UPDATE");
        assert_eq!(
            r["userInfo"],
            json!({"username": "alice", "uid": "u-1", "groups": ["dev", "system:authenticated"], "extra": {"scopes": ["a"]}})
        );
        assert_eq!(r["dryRun"], true);
        assert_eq!(
            r["options"],
            json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1", "dryRun": ["All"], "fieldManager": "kubectl"})
        );
        assert_eq!(r["oldObject"], pod);
    }

    #[test]
    fn responses_are_checked_for_kind_uid_and_patch_type() {
        let ok = |response: Value| {
            serde_json::to_vec(&json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response}))
                .expect("encodes")
        };
        let r = parse_response(
            &ok(json!({"uid": "x", "allowed": true, "patchType": "JSONPatch", "patch": "W10=", "warnings": ["careful"]})),
            "x",
        )
        .expect("valid");
        assert!(r.allowed);
        assert_eq!(r.patch.as_deref(), Some("W10="));
        assert_eq!(r.warnings, ["careful"]);
        let denied = parse_response(
            &ok(json!({"uid": "x", "allowed": false, "status": {"code": 403, "message": "no"}})),
            "x",
        )
        .expect("valid");
        assert!(!denied.allowed);
        assert_eq!(denied.status["message"], "no");
        assert_eq!(
            parse_response(&ok(json!({"uid": "y", "allowed": true})), "x"),
            Err(ResponseError::WrongUid {
                expected: "x".into(),
                got: "y".into()
            })
        );
        assert_eq!(
            parse_response(
                &ok(json!({"uid": "x", "allowed": true, "patch": "W10="})),
                "x"
            ),
            Err(ResponseError::PatchTypeMissing)
        );
        assert_eq!(
            parse_response(b"{\"kind\": \"Status\"}", "x"),
            Err(ResponseError::WrongKind(", Kind=Status".into()))
        );
        assert!(matches!(
            parse_response(b"<html>", "x"),
            Err(ResponseError::NotJson(_))
        ));
        assert_eq!(
            parse_response(
                br#"{"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"}"#,
                "x"
            ),
            Err(ResponseError::Absent)
        );
    }
}
