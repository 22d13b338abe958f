//! A mutating webhook's answer applied: its base64 JSONPatch (RFC 6902) on the object.

use base64::Engine;
use serde_json::Value;

/// Why a webhook's patch could not be applied.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    #[error("patch is not base64: {0}")]
    Base64(#[source] base64::DecodeError),
    #[error("patch is not a JSON patch: {0}")]
    Decode(#[source] serde_json::Error),
    #[error("patch cannot be applied: {0}")]
    Apply(#[source] json_patch::PatchError),
    #[error("patch turned the object into a {0}, not an object")]
    NotAnObject(&'static str),
}

/// `obj` with the base64 JSONPatch `patch_b64` applied (or the error, leaving `obj` alone).
pub fn apply(obj: &Value, patch_b64: &str) -> Result<Value, PatchError> {
    let raw = base64::engine::general_purpose::STANDARD
        .decode(patch_b64.trim())
        .map_err(PatchError::Base64)?;
    let patch: json_patch::Patch = serde_json::from_slice(&raw).map_err(PatchError::Decode)?;
    let mut out = obj.clone();
    json_patch::patch(&mut out, &patch).map_err(PatchError::Apply)?;
    match out {
        Value::Object(_) => Ok(out),
        Value::Array(_) => Err(PatchError::NotAnObject("list")),
        _ => Err(PatchError::NotAnObject("scalar")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn b64(v: Value) -> String {
        base64::engine::general_purpose::STANDARD.encode(v.to_string())
    }

    #[test]
    fn a_json_patch_adds_labels_and_replaces_fields() {
        let pod = json!({"metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"x": 1}});
        let patched = apply(
            &pod,
            &b64(json!([
                {"op": "add", "path": "/metadata/labels/mutated", "value": "yes"},
                {"op": "replace", "path": "/spec/x", "value": 2}
            ])),
        )
        .expect("applies");
        assert_eq!(
            patched,
            json!({"metadata": {"name": "p", "labels": {"a": "1", "mutated": "yes"}}, "spec": {"x": 2}})
        );
    }

    #[test]
    fn bad_patches_are_errors_and_leave_the_object_alone() {
        let obj = json!({"metadata": {"name": "p"}});
        assert!(matches!(apply(&obj, "%%%"), Err(PatchError::Base64(_))));
        assert!(matches!(
            apply(&obj, &b64(json!({"op": "add"}))),
            Err(PatchError::Decode(_))
        ));
        let failing = b64(json!([{"op": "remove", "path": "/spec/missing"}]));
        assert!(matches!(apply(&obj, &failing), Err(PatchError::Apply(_))));
        let root = b64(json!([{"op": "replace", "path": "", "value": [1]}]));
        assert!(matches!(
            apply(&obj, &root),
            Err(PatchError::NotAnObject("list"))
        ));
        assert_eq!(obj, json!({"metadata": {"name": "p"}}));
    }
}
