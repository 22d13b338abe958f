//! TokenReview (`authentication.k8s.io/v1`, create-only, never stored): whether a token
//! authenticates, as whom and for which of the asked audiences (upstream's
//! `pkg/registry/authentication/tokenreview`). Reviews service-account tokens, the only
//! bearer tokens orc's users hold (the join token only trades itself for a node
//! certificate).

use serde_json::{json, Map, Value};

use crate::api::status::ApiError;
use crate::apiserver::registry::Registry;

const API_VERSION: &str = "authentication.k8s.io/v1";
const KIND: &str = "TokenReview";
/// The error of a token no authenticator recognizes (upstream's bearer-token wording).
const INVALID_TOKEN: &str = "invalid bearer token";

/// The review of `body` at `now` (seconds since the epoch): the request with its status.
pub fn review(registry: &Registry, body: &Value, now: i64) -> Result<Value, ApiError> {
    super::check_body::<k8s_openapi::api::authentication::v1::TokenReview>(body, KIND)?;
    if let Some(ns) = body["metadata"]["namespace"]
        .as_str()
        .filter(|n| !n.is_empty())
    {
        return Err(ApiError::bad_request(format!(
            "namespace is not allowed on this type: {ns}"
        )));
    }
    let token = body["spec"]["token"].as_str().unwrap_or_default();
    if token.is_empty() {
        return Err(ApiError::bad_request(
            "token is required for TokenReview in authentication",
        ));
    }
    let requested: Vec<String> = body["spec"]["audiences"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let mut status = json!({"user": {}});
    if let Some(tokens) = registry.service_account_tokens.as_deref() {
        let wanted = (!requested.is_empty()).then_some(requested.as_slice());
        match tokens.authenticate(registry, token, wanted, now) {
            Ok(Some(auth)) => {
                let extra: Map<String, Value> = auth
                    .user
                    .extra
                    .iter()
                    .map(|(k, v)| (k.clone(), json!(v)))
                    .collect();
                status = json!({
                    "authenticated": true,
                    "user": {
                        "username": auth.user.name,
                        "uid": auth.user.uid,
                        "groups": auth.user.groups,
                        "extra": extra,
                    },
                    "audiences": auth.audiences,
                });
            }
            Ok(None) => status["error"] = json!(INVALID_TOKEN),
            Err(e) => {
                tracing::debug!(error = %e, "token review: token refused");
                status["error"] = json!(e.to_string());
            }
        }
    } else {
        status["error"] = json!(INVALID_TOKEN);
    }
    let mut out = body.clone();
    out["kind"] = json!(KIND);
    out["apiVersion"] = json!(API_VERSION);
    if !out["metadata"].is_object() {
        out["metadata"] = json!({});
    }
    out["metadata"]["creationTimestamp"] = Value::Null;
    out["status"] = status;
    Ok(out)
}
