//! The `serviceaccounts/token` subresource (upstream's `TokenREST`): a TokenRequest for
//! an existing account, optionally bound to a Pod, Secret or Node, answered with a
//! signed token. Nodes may only ask for tokens bound to pods scheduled on them
//! (upstream's NodeRestriction).

use serde_json::{json, Value};

use super::{core, ServiceAccountTokens};
use crate::api::identity::User;
use crate::api::object;
use crate::api::status::ApiError;
use crate::api::validation::FieldError;
use crate::apiserver::registry::Registry;
use crate::tls::service_account::claims::{Binding, BoundClaims, ObjectRef, TokenSpec};

/// `expirationSeconds` when a request names none.
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 60 * 60;
/// Shortest and longest lifetime a request may ask for (upstream's validation).
pub const MIN_EXPIRATION_SECONDS: i64 = 10 * 60;
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;
/// What kubelets ask for: such pod-bound tokens for the API server are issued for
/// [`EXTENDED_EXPIRATION_SECONDS`] and only warn after this (upstream's
/// `--service-account-extend-token-expiration`, on by default).
pub const WARN_ONLY_EXPIRATION_SECONDS: i64 = 60 * 60 + 7;
pub const EXTENDED_EXPIRATION_SECONDS: i64 = 24 * 365 * 60 * 60;

const API_VERSION: &str = "authentication.k8s.io/v1";
const KIND: &str = "TokenRequest";

/// The object a token is to be bound to.
struct BoundRef {
    kind: String,
    api_version: String,
    name: String,
    uid: String,
}

/// Answers a TokenRequest `body` for the account `ns/name`, sent by `requester`, at
/// `now`: the request with `status.token` and `status.expirationTimestamp` filled in.
pub fn create(
    registry: &Registry,
    tokens: &ServiceAccountTokens,
    requester: &User,
    ns: &str,
    name: &str,
    body: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Value, ApiError> {
    check_type(body)?;
    let meta = &body["metadata"];
    if let Some(body_name) = meta["name"]
        .as_str()
        .filter(|n| !n.is_empty() && *n != name)
    {
        return Err(invalid(
            name,
            &[FieldError::invalid(
                "metadata.name",
                body_name,
                "must match the service account name if specified",
            )],
        ));
    }
    if let Some(body_ns) = meta["namespace"]
        .as_str()
        .filter(|n| !n.is_empty() && *n != ns)
    {
        return Err(invalid(
            name,
            &[FieldError::invalid(
                "metadata.namespace",
                body_ns,
                "must match the service account namespace if specified",
            )],
        ));
    }
    let sa = registry.get(core("serviceaccounts"), Some(ns), name)?.value;
    let spec = &body["spec"];
    let audiences: Vec<String> = match spec["audiences"].as_array() {
        Some(list) if !list.is_empty() => list
            .iter()
            .filter_map(|a| a.as_str().map(str::to_string))
            .collect(),
        _ => tokens.api_audiences().to_vec(),
    };
    let expiration = spec["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
    validate_expiration(name, expiration)?;
    let bound = bound_ref(spec);
    if let Some(node) = requester.node_name() {
        admit_node(registry, node, ns, name, bound.as_ref())?;
    }
    let binding = match &bound {
        Some(r) => bind(registry, ns, name, r)?,
        None => Binding::default(),
    };
    let kube_audiences = audiences.iter().all(|a| tokens.api_audiences().contains(a));
    let (token_seconds, warn_after) =
        if binding.pod.is_some() && expiration == WARN_ONLY_EXPIRATION_SECONDS && kube_audiences {
            (EXTENDED_EXPIRATION_SECONDS, Some(expiration))
        } else {
            (expiration, None)
        };
    let claims = BoundClaims::new(TokenSpec {
        issuer: tokens.issuer(),
        namespace: ns,
        service_account: ObjectRef::new(name, object::uid(&sa).unwrap_or_default()),
        binding,
        audiences: audiences.clone(),
        now: now.timestamp(),
        expiration_seconds: token_seconds,
        warn_after_seconds: warn_after,
        id: uuid::Uuid::new_v4().to_string(),
    });
    let token = tokens
        .key()
        .sign(&claims)
        .map_err(|e| ApiError::internal(format!("failed to generate token: {e}")))?;
    let mut out_spec = json!({"audiences": audiences, "expirationSeconds": expiration});
    if let Some(r) = &bound {
        out_spec["boundObjectRef"] = json!({
            "kind": r.kind, "apiVersion": r.api_version, "name": r.name, "uid": r.uid,
        });
    }
    let expires = now + chrono::Duration::seconds(expiration);
    Ok(json!({
        "kind": KIND,
        "apiVersion": API_VERSION,
        "metadata": {"name": name, "namespace": ns, "creationTimestamp": timestamp(now)},
        "spec": out_spec,
        "status": {"token": token, "expirationTimestamp": timestamp(expires)},
    }))
}

fn timestamp(t: chrono::DateTime<chrono::Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// The body must be a TokenRequest (fields of the right types).
fn check_type(body: &Value) -> Result<(), ApiError> {
    super::check_body::<k8s_openapi::api::authentication::v1::TokenRequest>(body, KIND)
}

fn validate_expiration(name: &str, seconds: i64) -> Result<(), ApiError> {
    let why = if seconds < MIN_EXPIRATION_SECONDS {
        "may not specify a duration less than 10 minutes"
    } else if seconds > MAX_EXPIRATION_SECONDS {
        "may not specify a duration larger than 2^32 seconds"
    } else {
        return Ok(());
    };
    Err(invalid(
        name,
        &[FieldError::invalid_rendered(
            "spec.expirationSeconds",
            seconds.to_string(),
            why,
        )],
    ))
}

/// Upstream's 422 for a TokenRequest (`TokenRequest.authentication.k8s.io "x" is invalid`).
fn invalid(name: &str, errors: &[FieldError]) -> ApiError {
    let mut e = ApiError::invalid(core("serviceaccounts"), name, errors);
    if let Some((_, list)) = e.message.split_once(" is invalid: ") {
        e.message = format!("{KIND}.authentication.k8s.io \"{name}\" is invalid: {list}");
    }
    if let Some(details) = e.details.as_mut() {
        details["group"] = json!("authentication.k8s.io");
        details["kind"] = json!(KIND);
    }
    e
}

fn bound_ref(spec: &Value) -> Option<BoundRef> {
    let r = spec.get("boundObjectRef").filter(|r| r.is_object())?;
    let field = |f: &str| r[f].as_str().unwrap_or_default().to_string();
    Some(BoundRef {
        kind: field("kind"),
        api_version: field("apiVersion"),
        name: field("name"),
        uid: field("uid"),
    })
}

/// Upstream's NodeRestriction for `serviceaccounts/token`: a node's token must be bound
/// (by uid) to a pod scheduled on that node.
fn admit_node(
    registry: &Registry,
    node: &str,
    ns: &str,
    name: &str,
    bound: Option<&BoundRef>,
) -> Result<(), ApiError> {
    let forbidden = |why: String| {
        ApiError::forbidden(format!("serviceaccounts \"{name}\" is forbidden: {why}"))
    };
    let Some(r) = bound.filter(|r| r.api_version == "v1" && r.kind == "Pod" && !r.name.is_empty())
    else {
        return Err(forbidden("node requested token not bound to a pod".into()));
    };
    if r.uid.is_empty() {
        return Err(forbidden(
            "node requested token with a pod binding without a uid".into(),
        ));
    }
    let pod = registry.get(core("pods"), Some(ns), &r.name)?.value;
    if object::uid(&pod) != Some(r.uid.as_str()) {
        return Err(forbidden(uid_mismatch(&r.uid)));
    }
    if pod["spec"]["nodeName"].as_str() != Some(node) {
        return Err(forbidden(
            "node requested token bound to a pod scheduled on a different node".into(),
        ));
    }
    Ok(())
}

fn uid_mismatch(uid: &str) -> String {
    format!(
        "the UID in the bound object reference ({uid}) does not match the UID in record. The object might have been deleted and then recreated"
    )
}

/// Looks up the object `r` names (404 when missing, 409 when its uid differs) and what
/// the token records of it.
fn bind(registry: &Registry, ns: &str, name: &str, r: &BoundRef) -> Result<Binding, ApiError> {
    let group = r.api_version.rsplit_once('/').map_or("", |(g, _)| g);
    let (obj, binding) = match (group, r.kind.as_str()) {
        ("", "Pod") => {
            let pod = registry.get(core("pods"), Some(ns), &r.name)?.value;
            let account = pod["spec"]["serviceAccountName"].as_str().unwrap_or("");
            if account != name {
                return Err(ApiError::bad_request(format!(
                    "cannot bind token for serviceaccount \"{name}\" to pod running with different serviceaccount name."
                )));
            }
            let node = pod["spec"]["nodeName"]
                .as_str()
                .filter(|n| !n.is_empty())
                .map(|node_name| {
                    // A missing Node still names the pod's node, without a uid (upstream).
                    let uid = registry
                        .get(core("nodes"), None, node_name)
                        .ok()
                        .and_then(|kv| object::uid(&kv.value).map(str::to_string))
                        .unwrap_or_default();
                    ObjectRef::new(node_name, &uid)
                });
            let binding = Binding {
                pod: Some(ObjectRef::new(
                    &r.name,
                    object::uid(&pod).unwrap_or_default(),
                )),
                node,
                secret: None,
            };
            (pod, binding)
        }
        ("", "Node") => {
            let node = registry.get(core("nodes"), None, &r.name)?.value;
            let binding = Binding {
                node: Some(ObjectRef::new(
                    &r.name,
                    object::uid(&node).unwrap_or_default(),
                )),
                ..Binding::default()
            };
            (node, binding)
        }
        ("", "Secret") => {
            let secret = registry.get(core("secrets"), Some(ns), &r.name)?.value;
            let binding = Binding {
                secret: Some(ObjectRef::new(
                    &r.name,
                    object::uid(&secret).unwrap_or_default(),
                )),
                ..Binding::default()
            };
            (secret, binding)
        }
        _ => {
            let gvk = match group {
                "" => format!("/{}, Kind={}", r.api_version, r.kind),
                _ => format!(
                    "{group}/{}, Kind={}",
                    r.api_version.rsplit('/').next().unwrap_or(""),
                    r.kind
                ),
            };
            return Err(ApiError::bad_request(format!(
                "cannot bind token for serviceaccount \"{name}\" to object of type {gvk}"
            )));
        }
    };
    if !r.uid.is_empty() && object::uid(&obj) != Some(r.uid.as_str()) {
        return Err(ApiError {
            details: Some(json!({"name": r.name, "group": group, "kind": r.kind})),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{}\": {}",
                    r.kind,
                    r.name,
                    uid_mismatch(&r.uid)
                ),
            )
        });
    }
    Ok(binding)
}
