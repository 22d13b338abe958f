//! `DeleteOptions` of a DELETE (or an Eviction): read from the body in any encoding
//! client-go sends (JSON, YAML, Kubernetes protobuf; empty), merged with the query
//! parameters, and checked as upstream's `ValidateDeleteOptions`.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::DeleteOptions as WireDeleteOptions;
use serde_json::Value;

use super::registry::DeleteOptions;
use super::request::{self, Query};
use crate::api::status::ApiError;
use crate::api::validation::FieldError;

/// `apiVersion`s a DeleteOptions body may name besides the group-version of the
/// resource it deletes (upstream registers it in every group-version and `meta.k8s.io`).
const META_VERSIONS: &[&str] = &["meta.k8s.io/v1", "meta.k8s.io/v1beta1", "v1"];

/// The propagation policies upstream accepts.
const PROPAGATION_POLICIES: &[&str] = &["Orphan", "Background", "Foreground"];

/// The DeleteOptions of a DELETE with `body` of `content_type` and `query`;
/// `api_version` is the group-version of the resource being deleted; `dry_run` is the
/// query's `dryRun=All`. Bad bodies are 400 BadRequest, bad options 422 Invalid.
pub fn from_request(
    content_type: &str,
    body: &[u8],
    query: &Query,
    api_version: &str,
    dry_run: bool,
) -> Result<DeleteOptions, ApiError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        Value::Object(Default::default())
    } else {
        request::decode_body(content_type, body).map_err(|e| match e.code {
            413 => e,
            _ => ApiError::bad_request(format!("invalid DeleteOptions body: {}", e.message)),
        })?
    };
    let typed = typed(&body, api_version)?;
    from_typed(typed, query, dry_run)
}

/// `body` as the typed DeleteOptions: an object of kind DeleteOptions (or without a kind)
/// in `api_version` or a meta group-version, with fields of the right types.
pub fn typed(body: &Value, api_version: &str) -> Result<WireDeleteOptions, ApiError> {
    if !body.is_object() {
        return Err(ApiError::bad_request(
            "invalid DeleteOptions body: not a JSON object",
        ));
    }
    let kind = body["kind"].as_str().unwrap_or("");
    if !kind.is_empty() && kind != "DeleteOptions" {
        return Err(ApiError::bad_request(format!(
            "invalid DeleteOptions body: kind {kind:?} is not DeleteOptions"
        )));
    }
    let version = body["apiVersion"].as_str().unwrap_or("");
    if !version.is_empty() && version != api_version && !META_VERSIONS.contains(&version) {
        return Err(ApiError::bad_request(format!(
            "invalid DeleteOptions body: apiVersion {version:?} is not {api_version:?} or meta.k8s.io/v1"
        )));
    }
    serde_json::from_value(body.clone())
        .map_err(|e| ApiError::bad_request(format!("invalid DeleteOptions body: {e}")))
}

/// The options of a typed body merged with the query (the body wins), validated.
pub fn from_typed(
    body: WireDeleteOptions,
    query: &Query,
    dry_run: bool,
) -> Result<DeleteOptions, ApiError> {
    let propagation = body
        .propagation_policy
        .or_else(|| query.get("propagationPolicy").map(str::to_string));
    let orphan = match body.orphan_dependents {
        Some(o) => Some(o),
        None => match query.get("orphanDependents") {
            None | Some("") => None,
            Some(v) => Some(v.parse::<bool>().map_err(|_| {
                ApiError::bad_request(format!(
                    "invalid value {v:?} for query parameter orphanDependents"
                ))
            })?),
        },
    };
    let body_dry_run = body.dry_run.unwrap_or_default();
    let mut errs = Vec::new();
    if orphan.is_some() && propagation.is_some() {
        errs.push(FieldError::invalid(
            "propagationPolicy",
            propagation.as_deref().unwrap_or(""),
            "orphanDependents and deletionPropagation cannot be both set",
        ));
    }
    if let Some(p) = propagation.as_deref() {
        if !PROPAGATION_POLICIES.contains(&p) {
            errs.push(FieldError::not_supported(
                "propagationPolicy",
                p,
                PROPAGATION_POLICIES,
            ));
        }
    }
    for v in body_dry_run.iter().filter(|v| v.as_str() != "All") {
        errs.push(FieldError::not_supported("dryRun", v, &["All"]));
    }
    if !errs.is_empty() {
        return Err(ApiError::invalid_options(
            "meta.k8s.io",
            "DeleteOptions",
            &errs,
        ));
    }
    let propagation = match (propagation, orphan) {
        (Some(p), _) => Some(p),
        (None, Some(true)) => Some("Orphan".to_string()),
        (None, Some(false)) => Some("Background".to_string()),
        (None, None) => None,
    };
    let preconditions = body.preconditions.unwrap_or_default();
    Ok(DeleteOptions {
        dry_run: dry_run || !body_dry_run.is_empty(),
        requester: None,
        grace_period: match body.grace_period_seconds {
            Some(g) => Some(g),
            None => query.int("gracePeriodSeconds")?,
        },
        propagation,
        precondition_uid: preconditions.uid.filter(|u| !u.is_empty()),
        precondition_rv: preconditions.resource_version.filter(|r| !r.is_empty()),
        orphan_dependents_false: orphan == Some(false),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const PB: &str = "application/vnd.kubernetes.protobuf";

    fn parse(content_type: &str, body: &[u8], query: &str) -> Result<DeleteOptions, ApiError> {
        from_request(content_type, body, &Query::parse(Some(query)), "v1", false)
    }

    /// A protobuf body: magic, then `runtime.Unknown{typeMeta, raw}` around `raw`.
    fn protobuf(api_version: &str, kind: &str, raw: &[u8]) -> Vec<u8> {
        fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
            let mut out = vec![(tag << 3) | 2, bytes.len() as u8];
            out.extend_from_slice(bytes);
            out
        }
        let mut type_meta = field(1, api_version.as_bytes());
        type_meta.extend(field(2, kind.as_bytes()));
        let mut out = b"k8s\0".to_vec();
        out.extend(field(1, &type_meta));
        out.extend(field(2, raw));
        out
    }

    #[test]
    fn an_empty_body_takes_the_query() {
        let o = parse("", b"", "gracePeriodSeconds=3&propagationPolicy=Foreground").unwrap();
        assert_eq!(o.grace_period, Some(3));
        assert_eq!(o.propagation.as_deref(), Some("Foreground"));
        assert!(!o.dry_run);
        let o = parse("application/json", b"  ", "").unwrap();
        assert_eq!(o.grace_period, None);
    }

    #[test]
    fn json_bodies_in_meta_and_resource_versions_decode() {
        for version in ["meta.k8s.io/v1", "v1", ""] {
            let body = json!({
                "kind": "DeleteOptions", "apiVersion": version,
                "gracePeriodSeconds": 0,
                "preconditions": {"uid": "u1", "resourceVersion": "42"},
                "dryRun": ["All"],
            });
            let o = parse("application/json", body.to_string().as_bytes(), "").unwrap();
            assert_eq!(o.grace_period, Some(0));
            assert_eq!(o.precondition_uid.as_deref(), Some("u1"));
            assert_eq!(o.precondition_rv.as_deref(), Some("42"));
            assert!(o.dry_run);
        }
    }

    #[test]
    fn protobuf_bodies_decode_as_kubectl_sends_them() {
        // DeleteOptions{gracePeriodSeconds: 30 (tag 1), preconditions{uid: "abc"} (tag 2),
        // propagationPolicy: "Background" (tag 4)}
        let mut raw = vec![0x08, 30];
        raw.extend([0x12, 5, 0x0a, 3, b'a', b'b', b'c']);
        raw.extend([0x22, 10]);
        raw.extend(b"Background");
        for version in ["meta.k8s.io/v1", "v1"] {
            let o = parse(PB, &protobuf(version, "DeleteOptions", &raw), "").unwrap();
            assert_eq!(o.grace_period, Some(30), "{version}");
            assert_eq!(o.precondition_uid.as_deref(), Some("abc"));
            assert_eq!(o.propagation.as_deref(), Some("Background"));
        }
    }

    #[test]
    fn bad_bodies_are_bad_requests() {
        for (content_type, body) in [
            ("application/json", b"{nope".to_vec()),
            ("application/json", b"[1]".to_vec()),
            (
                "application/json",
                br#"{"gracePeriodSeconds": "soon"}"#.to_vec(),
            ),
            (
                "application/json",
                br#"{"kind": "Pod", "apiVersion": "v1"}"#.to_vec(),
            ),
            (
                "application/json",
                br#"{"kind": "DeleteOptions", "apiVersion": "apps/v1"}"#.to_vec(),
            ),
            (PB, b"k8s\0garbage".to_vec()),
            (PB, protobuf("v1", "Pod", &[])),
            ("text/html", b"<p>".to_vec()),
        ] {
            let err = parse(content_type, &body, "").unwrap_err();
            assert_eq!(err.code, 400, "{}", String::from_utf8_lossy(&body));
            assert!(
                err.message.starts_with("invalid DeleteOptions body"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn conflicting_or_unknown_options_are_invalid() {
        let err = parse(
            "application/json",
            br#"{"orphanDependents": true, "propagationPolicy": "Foreground"}"#,
            "",
        )
        .unwrap_err();
        assert_eq!(err.code, 422);
        assert_eq!(
            err.message,
            "DeleteOptions.meta.k8s.io \"\" is invalid: propagationPolicy: Invalid value: \"Foreground\": orphanDependents and deletionPropagation cannot be both set"
        );
        let err = parse("application/json", br#"{"propagationPolicy": "Later"}"#, "").unwrap_err();
        assert_eq!(err.code, 422);
        let err = parse("application/json", br#"{"dryRun": ["Some"]}"#, "").unwrap_err();
        assert_eq!(err.code, 422);
    }

    #[test]
    fn orphan_dependents_maps_to_a_policy_and_the_body_wins_over_the_query() {
        let o = parse("application/json", br#"{"orphanDependents": true}"#, "").unwrap();
        assert_eq!(o.propagation.as_deref(), Some("Orphan"));
        assert!(!o.orphan_dependents_false);
        let o = parse("", b"", "orphanDependents=false").unwrap();
        assert_eq!(o.propagation.as_deref(), Some("Background"));
        assert!(
            o.orphan_dependents_false,
            "a pending delete then answers 202"
        );
        let o = parse(
            "application/json",
            br#"{"gracePeriodSeconds": 1}"#,
            "gracePeriodSeconds=9",
        )
        .unwrap();
        assert_eq!(o.grace_period, Some(1));
    }
}
