//! STUB (replaced by the patch branch).
use serde_json::Value;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchType { Merge, Json, StrategicMerge, Apply }
impl PatchType {
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        match ct.split(';').next().unwrap_or("").trim() {
            "application/merge-patch+json" => Some(PatchType::Merge),
            "application/json-patch+json" => Some(PatchType::Json),
            "application/strategic-merge-patch+json" => Some(PatchType::StrategicMerge),
            "application/apply-patch+yaml" => Some(PatchType::Apply),
            _ => None,
        }
    }
}
#[derive(Debug, thiserror::Error)]
pub enum PatchError { #[error("unsupported")] Unsupported, #[error("{0}")] Invalid(String) }
pub fn apply_patch(_kind: &str, original: &Value, body: &[u8], _t: PatchType) -> Result<Value, PatchError> {
    let p: Value = serde_json::from_slice(body).map_err(|e| PatchError::Invalid(e.to_string()))?;
    Ok(merge_patch(original, &p))
}
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    match (target, patch) {
        (Value::Object(t), Value::Object(p)) => { let mut out = t.clone(); for (k, v) in p { if v.is_null() { out.remove(k); } else { let n = merge_patch(t.get(k).unwrap_or(&Value::Null), v); out.insert(k.clone(), n); } } Value::Object(out) }
        (_, Value::Object(p)) => merge_patch(&Value::Object(Default::default()), &Value::Object(p.clone())),
        (_, p) => p.clone(),
    }
}
