//! The review APIs: `authentication.k8s.io/v1` SelfSubjectReview (who am I) and
//! `authorization.k8s.io/v1` SelfSubjectAccessReview, SubjectAccessReview,
//! LocalSubjectAccessReview (may this user do that) and SelfSubjectRulesReview (what may
//! I do here). Nothing is stored: a create answers the object with its status filled in,
//! as upstream's REST storage of these kinds does (`kubectl auth whoami`, `kubectl auth
//! can-i [--list] [--as]`).

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

use super::rbac::{Attributes, Decision, ResourceAttrs};
use crate::api::identity::User;
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;
use crate::api::validation::FieldError;

/// What the reviews ask of the server's authorizers.
pub trait Authorizer {
    /// The decision of the whole authorizer chain (admins, nodes, RBAC).
    fn decide(&self, user: &User, attrs: &Attributes) -> Decision;
    /// The rules `user` holds in `namespace`: resource rules, non-resource rules (both as
    /// `authorization.k8s.io/v1` JSON) and whether the list may be incomplete.
    fn rules(&self, user: &User, namespace: &str) -> (Vec<Value>, Vec<Value>, bool);
}

/// Whether `def` is one of the review kinds answered here.
pub fn is_review(def: &ResourceDef) -> bool {
    matches!(
        (def.group, def.kind),
        ("authentication.k8s.io", "SelfSubjectReview")
            | (
                "authorization.k8s.io",
                "SelfSubjectAccessReview"
                    | "SubjectAccessReview"
                    | "LocalSubjectAccessReview"
                    | "SelfSubjectRulesReview"
            )
    )
}

/// Answers a create of the review kind `def` by `caller` (in namespace `ns` for the
/// namespaced LocalSubjectAccessReview): the object with its status. 422 for an invalid
/// spec, 400 for a rules review without a namespace.
pub fn answer(
    authorizer: &dyn Authorizer,
    caller: &User,
    def: &ResourceDef,
    ns: Option<&str>,
    obj: Value,
) -> Result<Value, ApiError> {
    let typed = (def.roundtrip)(&obj).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let spec = &typed["spec"];
    let status = match def.kind {
        "SelfSubjectReview" => json!({"userInfo": user_info(caller)}),
        "SelfSubjectAccessReview" => {
            let attrs = attributes(def, spec, None)?;
            access_status(authorizer.decide(caller, &attrs))
        }
        "SubjectAccessReview" => {
            let subject = subject(def, spec)?;
            let attrs = attributes(def, spec, None)?;
            access_status(authorizer.decide(&subject, &attrs))
        }
        "LocalSubjectAccessReview" => {
            let subject = subject(def, spec)?;
            let attrs = attributes(def, spec, Some(ns.unwrap_or("")))?;
            access_status(authorizer.decide(&subject, &attrs))
        }
        "SelfSubjectRulesReview" => {
            let namespace = spec["namespace"].as_str().unwrap_or("");
            if namespace.is_empty() {
                return Err(ApiError::bad_request("no namespace on request"));
            }
            let (resource_rules, non_resource_rules, incomplete) =
                authorizer.rules(caller, namespace);
            json!({
                "resourceRules": resource_rules,
                "nonResourceRules": non_resource_rules,
                "incomplete": incomplete,
            })
        }
        other => return Err(ApiError::internal(format!("{other} is not a review kind"))),
    };
    let mut out = Map::new();
    out.insert("kind".into(), json!(def.kind));
    out.insert("apiVersion".into(), json!(def.api_version()));
    let mut metadata = typed["metadata"].as_object().cloned().unwrap_or_default();
    metadata.insert("creationTimestamp".into(), Value::Null);
    out.insert("metadata".into(), Value::Object(metadata));
    if !spec.is_null() {
        out.insert("spec".into(), spec.clone());
    }
    out.insert("status".into(), status);
    Ok(Value::Object(out))
}

/// `status.userInfo` as upstream writes it.
fn user_info(user: &User) -> Value {
    let mut info = json!({"username": user.name, "groups": user.groups});
    if !user.uid.is_empty() {
        info["uid"] = json!(user.uid);
    }
    if !user.extra.is_empty() {
        info["extra"] = json!(user.extra);
    }
    info
}

fn access_status(decision: Decision) -> Value {
    match decision {
        Decision::Allow => json!({"allowed": true}),
        Decision::Deny(reason) => json!({"allowed": false, "denied": true, "reason": reason}),
        Decision::NoOpinion(reason) if reason.is_empty() => json!({"allowed": false}),
        Decision::NoOpinion(reason) => json!({"allowed": false, "reason": reason}),
    }
}

fn invalid(def: &ResourceDef, errors: &[FieldError]) -> ApiError {
    ApiError::invalid(def, "", errors)
}

/// The user a SubjectAccessReview asks about (no group is added: the spec's are all).
fn subject(def: &ResourceDef, spec: &Value) -> Result<User, ApiError> {
    let name = spec["user"].as_str().unwrap_or("").to_string();
    let groups: Vec<String> = strings(&spec["groups"]);
    if name.is_empty() && groups.is_empty() {
        return Err(invalid(
            def,
            &[FieldError::invalid(
                "spec.user",
                "",
                "at least one of user or group must be specified",
            )],
        ));
    }
    let extra: BTreeMap<String, Vec<String>> = spec["extra"]
        .as_object()
        .map(|m| m.iter().map(|(k, v)| (k.clone(), strings(v))).collect())
        .unwrap_or_default();
    Ok(User {
        name,
        groups,
        uid: spec["uid"].as_str().unwrap_or("").to_string(),
        extra,
    })
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|s| s.as_str().map(str::to_string))
        .collect()
}

/// The attributes an access review asks about; exactly one of `resourceAttributes` and
/// `nonResourceAttributes`. A LocalSubjectAccessReview (`local_namespace`) asks only
/// about resources in its own namespace.
fn attributes(
    def: &ResourceDef,
    spec: &Value,
    local_namespace: Option<&str>,
) -> Result<Attributes, ApiError> {
    let res = spec["resourceAttributes"].as_object();
    let non = spec["nonResourceAttributes"].as_object();
    let field = |name: &str, m: &Map<String, Value>| {
        m.get(name)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    match (res, non, local_namespace) {
        (Some(_), Some(_), _) => Err(invalid(
            def,
            &[FieldError::invalid(
                "spec.nonResourceAttributes",
                "",
                "cannot be specified in combination with resourceAttributes",
            )],
        )),
        (None, None, _) => Err(invalid(
            def,
            &[FieldError::invalid(
                "spec.resourceAttributes",
                "",
                "exactly one of nonResourceAttributes or resourceAttributes must be specified",
            )],
        )),
        (None, Some(_), Some(_)) => Err(invalid(
            def,
            &[FieldError::invalid(
                "spec.nonResourceAttributes",
                "",
                "disallowed on this kind of request",
            )],
        )),
        (None, Some(non), None) => Ok(Attributes {
            verb: field("verb", non),
            namespace: String::new(),
            resource: None,
            path: Some(field("path", non)),
        }),
        (Some(res), None, local) => {
            let namespace = field("namespace", res);
            if let Some(local) = local {
                if namespace != local {
                    return Err(invalid(
                        def,
                        &[FieldError::invalid(
                            "spec.resourceAttributes.namespace",
                            &namespace,
                            "must match metadata.namespace",
                        )],
                    ));
                }
            }
            Ok(Attributes {
                verb: field("verb", res),
                namespace,
                resource: Some(ResourceAttrs {
                    group: field("group", res),
                    resource: field("resource", res),
                    subresource: field("subresource", res),
                    name: field("name", res),
                }),
                path: None,
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::by_kind;

    /// Allows `get pods` in `dev` to user `jane` and `/healthz` to everyone.
    struct Fake;

    impl Authorizer for Fake {
        fn decide(&self, user: &User, attrs: &Attributes) -> Decision {
            match (&attrs.resource, &attrs.path) {
                (Some(r), _)
                    if user.name == "jane"
                        && attrs.verb == "get"
                        && r.resource == "pods"
                        && attrs.namespace == "dev" =>
                {
                    Decision::Allow
                }
                (None, Some(p)) if p == "/healthz" => Decision::Allow,
                _ => Decision::NoOpinion(String::new()),
            }
        }
        fn rules(&self, user: &User, namespace: &str) -> (Vec<Value>, Vec<Value>, bool) {
            let rules = if user.name == "jane" && namespace == "dev" {
                vec![json!({"verbs": ["get"], "apiGroups": [""], "resources": ["pods"]})]
            } else {
                vec![]
            };
            (rules, vec![], false)
        }
    }

    fn jane() -> User {
        User {
            name: "jane".into(),
            groups: vec!["dev".into(), "system:authenticated".into()],
            uid: "u1".into(),
            ..Default::default()
        }
    }

    fn review(kind: &str, spec: Value) -> Result<Value, ApiError> {
        let api_version = if kind == "SelfSubjectReview" {
            "authentication.k8s.io/v1"
        } else {
            "authorization.k8s.io/v1"
        };
        let def = by_kind(api_version, kind).expect("served");
        let obj = json!({"apiVersion": api_version, "kind": kind, "metadata": {}, "spec": spec});
        answer(&Fake, &jane(), def, Some("dev"), obj)
    }

    #[test]
    fn self_subject_review_reports_the_caller() {
        let out = review("SelfSubjectReview", Value::Null).unwrap();
        assert_eq!(out["status"]["userInfo"]["username"], "jane");
        assert_eq!(out["status"]["userInfo"]["uid"], "u1");
        assert_eq!(
            out["status"]["userInfo"]["groups"],
            json!(["dev", "system:authenticated"])
        );
        assert_eq!(out["kind"], "SelfSubjectReview");
    }

    #[test]
    fn self_subject_access_review_asks_the_authorizer() {
        let allowed = review(
            "SelfSubjectAccessReview",
            json!({"resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}}),
        )
        .unwrap();
        assert_eq!(allowed["status"], json!({"allowed": true}));
        let refused = review(
            "SelfSubjectAccessReview",
            json!({"resourceAttributes": {"namespace": "prod", "verb": "get", "resource": "pods"}}),
        )
        .unwrap();
        assert_eq!(refused["status"]["allowed"], false);
        let path = review(
            "SelfSubjectAccessReview",
            json!({"nonResourceAttributes": {"path": "/healthz", "verb": "get"}}),
        )
        .unwrap();
        assert_eq!(path["status"]["allowed"], true);
    }

    #[test]
    fn access_reviews_need_exactly_one_kind_of_attributes() {
        let neither = review("SelfSubjectAccessReview", json!({})).unwrap_err();
        assert_eq!(neither.code, 422);
        assert!(
            neither.message.contains("exactly one of"),
            "{}",
            neither.message
        );
        let both = review(
            "SelfSubjectAccessReview",
            json!({"resourceAttributes": {"verb": "get"}, "nonResourceAttributes": {"path": "/"}}),
        )
        .unwrap_err();
        assert_eq!(both.code, 422);
    }

    #[test]
    fn subject_access_review_asks_about_the_named_user() {
        let err = review(
            "SubjectAccessReview",
            json!({"resourceAttributes": {"verb": "get"}}),
        )
        .unwrap_err();
        assert!(
            err.message.contains("at least one of user or group"),
            "{}",
            err.message
        );
        let out = review(
            "SubjectAccessReview",
            json!({"user": "jane", "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}}),
        )
        .unwrap();
        assert_eq!(out["status"]["allowed"], true);
        let other = review(
            "SubjectAccessReview",
            json!({"user": "bob", "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}}),
        )
        .unwrap();
        assert_eq!(other["status"]["allowed"], false);
    }

    #[test]
    fn local_subject_access_review_stays_in_its_namespace() {
        let err = review(
            "LocalSubjectAccessReview",
            json!({"user": "jane", "resourceAttributes": {"namespace": "prod", "verb": "get", "resource": "pods"}}),
        )
        .unwrap_err();
        assert!(
            err.message.contains("must match metadata.namespace"),
            "{}",
            err.message
        );
        let out = review(
            "LocalSubjectAccessReview",
            json!({"user": "jane", "resourceAttributes": {"namespace": "dev", "verb": "get", "resource": "pods"}}),
        )
        .unwrap();
        assert_eq!(out["status"]["allowed"], true);
    }

    #[test]
    fn rules_review_lists_the_rules_in_the_namespace() {
        let out = review("SelfSubjectRulesReview", json!({"namespace": "dev"})).unwrap();
        assert_eq!(
            out["status"]["resourceRules"][0]["resources"],
            json!(["pods"])
        );
        assert_eq!(out["status"]["incomplete"], false);
        let err = review("SelfSubjectRulesReview", json!({})).unwrap_err();
        assert_eq!(
            (err.code, err.message.as_str()),
            (400, "no namespace on request")
        );
    }
}
