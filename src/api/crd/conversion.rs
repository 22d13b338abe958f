//! CRD conversion webhooks, the pure part (upstream `apiserver/conversion/webhook_converter.go`):
//! a CRD's webhook stanza, the `ConversionReview` sent for the objects that are not in the
//! desired version, and the checks on the answer — uid, `result.status`, count, each
//! converted object's apiVersion, kind, name, namespace and uid — with upstream's
//! messages. Metadata other than labels and annotations is taken from the original
//! (`restoreObjectMeta`). Sending the review is the caller's.

use serde_json::{json, Map, Value};

use crate::api::client_config::{self, Endpoint};
use crate::api::validation::{self, FieldError};

/// How long a conversion webhook has to answer (upstream's webhook client default).
pub const WEBHOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// A CRD's `spec.conversion.webhook` (strategy `Webhook`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Webhook {
    /// The CRD's name: the webhook is `conversion_webhook_for_<name>` upstream.
    pub crd_name: String,
    /// The CRD's resourceVersion: a client built for an older one is rebuilt.
    pub crd_version: String,
    pub target: Endpoint,
    /// The PEM text of `clientConfig.caBundle`, when set.
    pub ca_bundle: Option<String>,
    pub review_versions: Vec<String>,
}

impl Webhook {
    /// The webhook of a stored (valid, defaulted) CRD, when its strategy is `Webhook`.
    pub fn of_crd(crd: &Value) -> Option<Webhook> {
        let conversion = &crd["spec"]["conversion"];
        if conversion["strategy"] != "Webhook" {
            return None;
        }
        let webhook = &conversion["webhook"];
        let client = &webhook["clientConfig"];
        let target = Endpoint::of(client)?;
        let ca_bundle = client_config::ca_bundle(client);
        Some(Webhook {
            crd_name: crd["metadata"]["name"].as_str().unwrap_or("").to_string(),
            crd_version: crd["metadata"]["resourceVersion"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            target,
            ca_bundle,
            review_versions: webhook["conversionReviewVersions"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(Value::as_str)
                        .map(String::from)
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// The URL the review is posted to (for a Service, by its DNS name, as upstream
    /// names it in errors; an empty path is `/`), with upstream's `?timeout=30s`.
    pub fn url(&self) -> String {
        let base = match &self.target {
            Endpoint::Url(url) => {
                let after_scheme = url.split_once("://").map_or(url.as_str(), |(_, r)| r);
                if after_scheme.contains('/') {
                    url.clone()
                } else {
                    format!("{url}/")
                }
            }
            Endpoint::Service {
                namespace,
                name,
                path,
                port,
            } => {
                let path = if path.is_empty() { "/" } else { path };
                format!("https://{name}.{namespace}.svc:{port}{path}")
            }
        };
        let sep = if base.contains('?') { '&' } else { '?' };
        format!("{base}{sep}timeout={}s", WEBHOOK_TIMEOUT.as_secs())
    }
}

/// Why a conversion failed; the message is upstream's, naming the converted object's
/// `group/version, Kind=Kind` (`gvk`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConversionError {
    #[error("no supported conversion review versions")]
    NoReviewVersion,
    /// The call or the review's answer failed (`reason` says how).
    #[error("conversion webhook for {gvk} failed: {reason}")]
    Failed { gvk: String, reason: String },
    #[error("conversion webhook for {gvk} returned {got} objects, expected {expected}")]
    Count {
        gvk: String,
        got: usize,
        expected: usize,
    },
    #[error(
        "conversion webhook for {gvk} returned invalid converted object at index {index}: {reason}"
    )]
    InvalidListItem {
        gvk: String,
        index: usize,
        reason: String,
    },
    #[error("conversion webhook for {gvk} returned invalid metadata in object at index {index}: {reason}")]
    InvalidListMetadata {
        gvk: String,
        index: usize,
        reason: String,
    },
    #[error("conversion webhook for {gvk} returned invalid object at index 0: {reason}")]
    InvalidObjectType { gvk: String, reason: String },
    #[error("conversion webhook for {gvk} returned invalid object: {reason}")]
    InvalidObject { gvk: String, reason: String },
    #[error("conversion webhook for {gvk} returned invalid metadata: {reason}")]
    InvalidMetadata { gvk: String, reason: String },
}

/// `group/version, Kind=Kind` of an object (Go's GroupVersionKind String).
pub fn gvk_of(obj: &Value) -> String {
    gvk(
        obj["apiVersion"].as_str().unwrap_or(""),
        obj["kind"].as_str().unwrap_or(""),
    )
}

fn gvk(api_version: &str, kind: &str) -> String {
    // A core-group version has no slash: Go prints it as "/v1".
    if api_version.contains('/') {
        format!("{api_version}, Kind={kind}")
    } else {
        format!("/{api_version}, Kind={kind}")
    }
}

/// The review version used: the first of `conversionReviewVersions` orc speaks.
pub fn review_version(versions: &[String]) -> Result<&'static str, ConversionError> {
    versions
        .iter()
        .find_map(|v| match v.as_str() {
            "v1" => Some("v1"),
            "v1beta1" => Some("v1beta1"),
            _ => None,
        })
        .ok_or(ConversionError::NoReviewVersion)
}

/// The `ConversionReview` asking for `objects` in `desired` (`group/version`).
pub fn review(review_version: &str, uid: &str, desired: &str, objects: &[&Value]) -> Value {
    json!({
        "kind": "ConversionReview",
        "apiVersion": format!("apiextensions.k8s.io/{review_version}"),
        "request": {
            "uid": uid,
            "desiredAPIVersion": desired,
            "objects": objects,
        },
        "response": {"uid": "", "convertedObjects": null, "result": {"metadata": {}}},
    })
}

/// The converted objects of a webhook's answer (upstream `getConvertedObjectsFromResponse`;
/// `v1beta1` answers are not checked for kind and uid, as upstream). The error is the
/// reason only: the caller frames it.
pub fn converted_objects(
    review_version: &str,
    uid: &str,
    body: &[u8],
) -> Result<Vec<Value>, String> {
    let answer: Value = serde_json::from_slice(body).map_err(|e| e.to_string())?;
    if review_version == "v1" {
        let expected = "apiextensions.k8s.io/v1, Kind=ConversionReview";
        let got = gvk(
            answer["apiVersion"].as_str().unwrap_or(""),
            answer["kind"].as_str().unwrap_or(""),
        );
        if got != expected {
            return Err(format!(
                "expected webhook response of {expected}, got {got}"
            ));
        }
    }
    let response = answer
        .get("response")
        .filter(|r| r.is_object())
        .ok_or("no response provided")?;
    if review_version == "v1" {
        let got = response["uid"].as_str().unwrap_or("");
        if got != uid {
            return Err(format!("expected response.uid=\"{uid}\", got \"{got}\""));
        }
    }
    let result = &response["result"];
    let status = result["status"].as_str().unwrap_or("");
    if status != "Success" {
        return match result["message"].as_str().filter(|m| !m.is_empty()) {
            Some(m) => Err(m.to_string()),
            None => Err(format!(
                "response.result.status was '{status}', not 'Success'"
            )),
        };
    }
    Ok(response["convertedObjects"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// Upstream `validateConvertedObject`: kind, name, namespace and uid unchanged.
fn validate_converted(original: &Value, converted: &Value) -> Result<(), String> {
    let field = |o: &Value, f: &str| -> String {
        let v = if f == "kind" {
            &o["kind"]
        } else {
            &o["metadata"][f]
        };
        v.as_str().unwrap_or("").to_string()
    };
    for (f, what) in [
        ("kind", "kind"),
        ("name", "name"),
        ("namespace", "namespace"),
        ("uid", "UID"),
    ] {
        let (e, a) = (field(original, f), field(converted, f));
        if e != a {
            return Err(format!("must have the same {what}: {e} != {a}"));
        }
    }
    Ok(())
}

/// Upstream `restoreObjectMeta`: the original's metadata with the converted object's
/// labels and annotations (which must be valid).
fn restore_object_meta(original: &Value, converted: &mut Value) -> Result<(), String> {
    let response_meta = match converted.get("metadata") {
        None => return Err("missing metadata in converted object".into()),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(format!(
                "invalid metadata of type {} in converted object",
                go_type(other)
            ))
        }
    };
    let mut meta = original["metadata"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    for field in ["labels", "annotations"] {
        let response_field = match response_meta.get(field) {
            None | Some(Value::Null) => {
                meta.remove(field);
                continue;
            }
            Some(Value::Object(m)) => m,
            Some(other) => {
                return Err(format!(
                    "invalid metadata.{field} of type {} in converted object",
                    go_type(other)
                ))
            }
        };
        let original_field = meta.get(field).and_then(Value::as_object);
        let mut changed = original_field.map_or(0, Map::len) != response_field.len();
        for (k, v) in response_field {
            if !v.is_string() {
                return Err(format!(
                    "metadata.{field}[{k}] must be a string, but is {} in converted object",
                    go_type(v)
                ));
            }
            if original_field.and_then(|o| o.get(k)) != Some(v) {
                changed = true;
            }
        }
        if changed {
            let mut errs: Vec<FieldError> = Vec::new();
            if field == "labels" {
                validation::validate_labels(Some(response_field), "metadata.labels", &mut errs);
            } else {
                validation::validate_annotations(
                    Some(response_field),
                    "metadata.annotation",
                    &mut errs,
                );
            }
            if !errs.is_empty() {
                return Err(aggregate(&errs));
            }
        }
        meta.insert(field.into(), Value::Object(response_field.clone()));
    }
    converted["metadata"] = Value::Object(meta);
    Ok(())
}

/// Go's `ErrorList.ToAggregate()` text.
fn aggregate(errs: &[FieldError]) -> String {
    match errs {
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// How Go's `%T` names a JSON value decoded into `interface{}`.
fn go_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Puts the webhook's `converted` answers in place of the `originals` that were sent
/// (one object: the single-object checks and messages; several, `list_gvk` set: the
/// list's), checking each as upstream.
pub fn accept_converted(
    originals: &[&Value],
    converted: Vec<Value>,
    desired: &str,
    list_gvk: Option<&str>,
) -> Result<Vec<Value>, ConversionError> {
    let gvk_for_errors = match list_gvk {
        Some(g) => g.to_string(),
        None => originals.first().map(|o| gvk_of(o)).unwrap_or_default(),
    };
    if converted.len() != originals.len() {
        return Err(ConversionError::Count {
            gvk: gvk_for_errors,
            got: converted.len(),
            expected: originals.len(),
        });
    }
    let mut out = Vec::with_capacity(converted.len());
    for (i, (original, mut converted)) in originals.iter().zip(converted).enumerate() {
        let got_gv = converted["apiVersion"].as_str().unwrap_or("").to_string();
        let (expected_kind, got_kind) = (
            original["kind"].as_str().unwrap_or(""),
            converted["kind"].as_str().unwrap_or(""),
        );
        let gvk = gvk_for_errors.clone();
        if list_gvk.is_some() {
            // Upstream counts the item before these checks: their index is one more.
            let index = i + 1;
            if got_gv != desired {
                return Err(ConversionError::InvalidListItem {
                    gvk,
                    index,
                    reason: format!("invalid groupVersion (expected {desired}, received {got_gv})"),
                });
            }
            if expected_kind != got_kind {
                return Err(ConversionError::InvalidListItem {
                    gvk,
                    index,
                    reason: format!("invalid kind (expected {expected_kind}, received {got_kind})"),
                });
            }
            validate_converted(original, &converted).map_err(|reason| {
                ConversionError::InvalidListItem {
                    gvk: gvk.clone(),
                    index,
                    reason,
                }
            })?;
            restore_object_meta(original, &mut converted).map_err(|reason| {
                ConversionError::InvalidListMetadata {
                    gvk: gvk.clone(),
                    index,
                    reason,
                }
            })?;
        } else {
            if got_gv != desired {
                return Err(ConversionError::InvalidObjectType {
                    gvk,
                    reason: format!("invalid groupVersion (expected {desired}, received {got_gv})"),
                });
            }
            if expected_kind != got_kind {
                return Err(ConversionError::InvalidObjectType {
                    gvk,
                    reason: format!("invalid kind (expected {expected_kind}, received {got_kind})"),
                });
            }
            validate_converted(original, &converted).map_err(|reason| {
                ConversionError::InvalidObject {
                    gvk: gvk.clone(),
                    reason,
                }
            })?;
            restore_object_meta(original, &mut converted).map_err(|reason| {
                ConversionError::InvalidMetadata {
                    gvk: gvk.clone(),
                    reason,
                }
            })?;
        }
        out.push(converted);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine;

    fn widget(version: &str, name: &str) -> Value {
        json!({
            "apiVersion": format!("example.com/{version}"), "kind": "Widget",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                         "resourceVersion": "7", "labels": {"a": "b"}},
            "spec": {"size": 1}
        })
    }

    fn answer(uid: &str, objects: Vec<Value>) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "ConversionReview",
            "response": {"uid": uid, "result": {"status": "Success"}, "convertedObjects": objects}
        }))
        .unwrap()
    }

    #[test]
    fn the_webhook_stanza_is_read_from_a_stored_crd() {
        let crd = json!({"metadata": {"name": "widgets.example.com", "resourceVersion": "4"},
            "spec": {"conversion": {"strategy": "Webhook", "webhook": {
                "clientConfig": {"service": {"namespace": "sys", "name": "hook", "path": "/convert", "port": 443},
                                 "caBundle": base64::engine::general_purpose::STANDARD.encode("PEM")},
                "conversionReviewVersions": ["v1beta1", "v1"]}}}});
        let w = Webhook::of_crd(&crd).unwrap();
        assert_eq!(w.ca_bundle.as_deref(), Some("PEM"));
        assert_eq!(w.url(), "https://hook.sys.svc:443/convert?timeout=30s");
        assert_eq!(review_version(&w.review_versions), Ok("v1beta1"));
        let mut bare = w.clone();
        bare.target = Endpoint::Service {
            namespace: "sys".into(),
            name: "hook".into(),
            path: String::new(),
            port: 443,
        };
        assert_eq!(bare.url(), "https://hook.sys.svc:443/?timeout=30s");
        bare.target = Endpoint::Url("https://conv.example.com:8443".into());
        assert_eq!(bare.url(), "https://conv.example.com:8443/?timeout=30s");
        let none = json!({"spec": {"conversion": {"strategy": "None"}}});
        assert_eq!(Webhook::of_crd(&none), None);
    }

    #[test]
    fn the_review_version_is_the_first_known_one() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(review_version(&v(&["v2", "v1", "v1beta1"])), Ok("v1"));
        assert_eq!(
            review_version(&v(&["v2"])).unwrap_err().to_string(),
            "no supported conversion review versions"
        );
    }

    #[test]
    fn the_review_carries_uid_desired_version_and_objects() {
        let obj = widget("v1", "a");
        let r = review("v1", "u-1", "example.com/v2", &[&obj]);
        assert_eq!(r["apiVersion"], "apiextensions.k8s.io/v1");
        assert_eq!(r["request"]["uid"], "u-1");
        assert_eq!(r["request"]["desiredAPIVersion"], "example.com/v2");
        assert_eq!(r["request"]["objects"][0], obj);
    }

    #[test]
    fn answers_are_checked_for_kind_uid_and_status() {
        let ok = answer("u", vec![widget("v2", "a")]);
        assert_eq!(converted_objects("v1", "u", &ok).unwrap().len(), 1);
        assert_eq!(
            converted_objects("v1", "other", &ok).unwrap_err(),
            "expected response.uid=\"other\", got \"u\""
        );
        // v1beta1 answers are not checked for their uid, as upstream.
        assert!(converted_objects("v1beta1", "other", &ok).is_ok());
        let wrong = br#"{"apiVersion":"v1","kind":"Status"}"#;
        assert_eq!(
            converted_objects("v1", "u", wrong).unwrap_err(),
            "expected webhook response of apiextensions.k8s.io/v1, Kind=ConversionReview, got /v1, Kind=Status"
        );
        let failed = br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","response":{"uid":"u","result":{"status":"Failure","message":"cannot convert"}}}"#;
        assert_eq!(
            converted_objects("v1", "u", failed).unwrap_err(),
            "cannot convert"
        );
        let silent = br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview","response":{"uid":"u","result":{}}}"#;
        assert_eq!(
            converted_objects("v1", "u", silent).unwrap_err(),
            "response.result.status was '', not 'Success'"
        );
        let absent = br#"{"apiVersion":"apiextensions.k8s.io/v1","kind":"ConversionReview"}"#;
        assert_eq!(
            converted_objects("v1", "u", absent).unwrap_err(),
            "no response provided"
        );
    }

    #[test]
    fn converted_objects_keep_the_original_metadata_but_labels_and_annotations() {
        let original = widget("v1", "a");
        let mut converted = widget("v2", "a");
        converted["metadata"]["resourceVersion"] = json!("999");
        converted["metadata"]["labels"] = json!({"c": "d"});
        converted["metadata"]["finalizers"] = json!(["x"]);
        converted["spec"] = json!({"replicas": 1});
        let out = accept_converted(&[&original], vec![converted], "example.com/v2", None).unwrap();
        assert_eq!(out[0]["metadata"]["resourceVersion"], "7");
        assert_eq!(out[0]["metadata"]["labels"], json!({"c": "d"}));
        assert!(out[0]["metadata"].get("finalizers").is_none());
        assert_eq!(out[0]["spec"], json!({"replicas": 1}));
    }

    #[test]
    fn a_wrong_count_version_kind_or_name_is_refused_with_upstreams_message() {
        let original = widget("v1", "a");
        let e = accept_converted(&[&original], vec![], "example.com/v2", None).unwrap_err();
        assert_eq!(
            e.to_string(),
            "conversion webhook for example.com/v1, Kind=Widget returned 0 objects, expected 1"
        );
        let e = accept_converted(
            &[&original],
            vec![widget("v1", "a")],
            "example.com/v2",
            None,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "conversion webhook for example.com/v1, Kind=Widget returned invalid object at index 0: invalid groupVersion (expected example.com/v2, received example.com/v1)");
        let e = accept_converted(
            &[&original],
            vec![widget("v2", "b")],
            "example.com/v2",
            None,
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "conversion webhook for example.com/v1, Kind=Widget returned invalid object: must have the same name: a != b");
        let e = accept_converted(
            &[&original],
            vec![widget("v2", "b")],
            "example.com/v2",
            Some("example.com/v1, Kind=WidgetList"),
        )
        .unwrap_err();
        assert_eq!(e.to_string(), "conversion webhook for example.com/v1, Kind=WidgetList returned invalid converted object at index 1: must have the same name: a != b");
        let mut bad_label = widget("v2", "a");
        bad_label["metadata"]["labels"] = json!({"a": "not a label value!"});
        let e =
            accept_converted(&[&original], vec![bad_label], "example.com/v2", None).unwrap_err();
        assert!(
            e.to_string().starts_with("conversion webhook for example.com/v1, Kind=Widget returned invalid metadata: metadata.labels[a]: Invalid value: \"not a label value!\""),
            "{e}"
        );
    }
}
