//! STUB (replaced by the api-pure branch).
use serde_json::Value;
pub fn apply_defaults(_kind: &str, _obj: &mut Value) {}
