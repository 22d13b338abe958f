//! STUB (replaced by the api-pure branch).
use serde_json::Value;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind { Required, Invalid, NotSupported, Duplicate, Forbidden, TooLong, TooMany }
#[derive(Debug, Clone)]
pub struct FieldError { pub field: String, pub kind: FieldErrorKind, pub value: Option<String>, pub detail: String }
impl FieldError { pub fn reason(&self) -> &'static str { "FieldValueInvalid" } }
impl std::fmt::Display for FieldError { fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { write!(f, "{}: {}", self.field, self.detail) } }
pub fn validate(_kind: &str, _obj: &Value, _old: Option<&Value>) -> Vec<FieldError> { vec![] }
