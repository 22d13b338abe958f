//! PATCH bodies applied to stored objects: JSON merge patch (RFC 7386), JSON patch
//! (RFC 6902) and Kubernetes strategic merge patch, as pure functions on JSON values.

mod schema;
mod strategic;

use serde_json::{Map, Value};

use schema::Ty;

/// The patch formats of `PATCH` requests, told apart by their `Content-Type`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatchType {
    /// `application/merge-patch+json` (RFC 7386).
    Merge,
    /// `application/json-patch+json` (RFC 6902).
    Json,
    /// `application/strategic-merge-patch+json`.
    StrategicMerge,
    /// `application/apply-patch+yaml` (server-side apply).
    Apply,
}

impl PatchType {
    /// The patch type of a `Content-Type` header value, ignoring parameters such as
    /// `; charset=utf-8`; `None` for any other media type (the server answers 415).
    pub fn from_content_type(ct: &str) -> Option<PatchType> {
        let media_type = ct.split(';').next().unwrap_or_default().trim();
        let patch_type = match media_type.to_ascii_lowercase().as_str() {
            "application/merge-patch+json" => PatchType::Merge,
            "application/json-patch+json" => PatchType::Json,
            "application/strategic-merge-patch+json" => PatchType::StrategicMerge,
            "application/apply-patch+yaml" => PatchType::Apply,
            _ => return None,
        };
        Some(patch_type)
    }

    /// The media type of this patch type.
    pub fn content_type(self) -> &'static str {
        match self {
            PatchType::Merge => "application/merge-patch+json",
            PatchType::Json => "application/json-patch+json",
            PatchType::StrategicMerge => "application/strategic-merge-patch+json",
            PatchType::Apply => "application/apply-patch+yaml",
        }
    }
}

/// Why a JSON patch operation could not be applied.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JsonPatchFailure {
    /// A `test` operation found another value.
    TestFailed,
    /// `path` names no location in the document (or an index out of range).
    InvalidPath,
    /// `from` of a `move`/`copy` names no location in the document.
    InvalidFrom,
    /// A `move` into a child of its own source.
    MoveIntoItself,
}

/// A patch that could not be applied. [`PatchError::status_code`] gives the HTTP status
/// the API server answers with, as upstream.
#[derive(Debug, thiserror::Error)]
pub enum PatchError {
    /// The patch type is not implemented (server-side apply): 415.
    #[error("{patch_type} patches are not supported by this server: use kubectl apply without --server-side, or a strategic merge or JSON merge patch")]
    Unsupported { patch_type: &'static str },
    /// The body is not the JSON (or YAML) document the patch type needs: 400.
    #[error("{message}")]
    Decode { message: String },
    /// The body is not a list of JSON patch operations: 400.
    #[error("{message}")]
    JsonPatchDecode { message: String },
    /// A JSON patch operation failed (`test` mismatch, missing path): 422.
    #[error("{message}")]
    JsonPatchFailed {
        /// Index of the failed operation in the patch.
        operation: usize,
        /// Its `op` (`add`, `remove`, `replace`, `move`, `copy`, `test`).
        op: &'static str,
        /// Its `path`.
        path: String,
        failure: JsonPatchFailure,
        message: String,
    },
    /// A malformed strategic merge patch directive (`$patch`, `$retainKeys`,
    /// `$setElementOrder`, `$deleteFromPrimitiveList`): 400.
    #[error("{message}")]
    BadDirective { message: String },
    /// An item of a list merged by key lacks the key: 422.
    #[error("map: {item} does not contain declared merge key: {key}")]
    MissingMergeKey { item: String, key: String },
    /// Lists of lists cannot be merged: 422.
    #[error("lists of lists are not supported")]
    ListOfLists,
    /// A merging list whose items are not all of one type: 422.
    #[error("list element types are not identical in {field}")]
    MixedListItems { field: String },
}

impl PatchError {
    /// The HTTP status of the `Status` the API server answers with.
    pub fn status_code(&self) -> u16 {
        match self {
            PatchError::Unsupported { .. } => 415,
            PatchError::Decode { .. }
            | PatchError::JsonPatchDecode { .. }
            | PatchError::BadDirective { .. } => 400,
            PatchError::JsonPatchFailed { .. }
            | PatchError::MissingMergeKey { .. }
            | PatchError::ListOfLists
            | PatchError::MixedListItems { .. } => 422,
        }
    }
}

/// Applies a `PATCH` body of `patch_type` to `original`, an object of `kind` (Pod,
/// Deployment, …; the kind picks the strategic merge strategies, and unknown kinds only
/// know those of `metadata`). The result still needs defaulting and validation.
pub fn apply_patch(
    kind: &str,
    original: &Value,
    patch_body: &[u8],
    patch_type: PatchType,
) -> Result<Value, PatchError> {
    match patch_type {
        PatchType::Merge => Ok(merge_patch(original, &decode_json(patch_body)?)),
        PatchType::Json => json_patch(original, patch_body),
        PatchType::StrategicMerge => {
            let patch = match decode_json(patch_body)? {
                Value::Object(map) => map,
                other => {
                    return Err(PatchError::Decode {
                        message: format!(
                            "json: cannot unmarshal {} into Go value of type map[string]interface {{}}",
                            json_type_name(&other)
                        ),
                    })
                }
            };
            strategic_merge_patch(kind, original, patch)
        }
        PatchType::Apply => Err(PatchError::Unsupported {
            patch_type: "server-side apply",
        }),
    }
}

/// JSON merge patch (RFC 7386): objects merge recursively, `null` removes a key, anything
/// else (lists included) replaces the target value.
pub fn merge_patch(target: &Value, patch: &Value) -> Value {
    let mut doc = target.clone();
    json_patch::merge(&mut doc, patch);
    doc
}

/// Applies a strategic merge patch object to `original` (an object of `kind`).
pub fn strategic_merge_patch(
    kind: &str,
    original: &Value,
    patch: Map<String, Value>,
) -> Result<Value, PatchError> {
    let original = match original {
        Value::Object(map) => map.clone(),
        _ => Map::new(),
    };
    strategic::merge_object(original, patch, Ty::of_kind(kind)).map(Value::Object)
}

/// JSON patch (RFC 6902), all operations or none.
fn json_patch(original: &Value, patch_body: &[u8]) -> Result<Value, PatchError> {
    let ops: json_patch::Patch =
        serde_json::from_slice(patch_body).map_err(|e| PatchError::JsonPatchDecode {
            message: format!("invalid JSON patch: {e}"),
        })?;
    let mut doc = original.clone();
    json_patch::patch(&mut doc, &ops).map_err(|e| {
        let op = ops.0.get(e.operation);
        let op_name = op.map_or("unknown", operation_name);
        let path = e.path.to_string();
        let failure = match e.kind {
            json_patch::PatchErrorKind::TestFailed => JsonPatchFailure::TestFailed,
            json_patch::PatchErrorKind::InvalidFromPointer => JsonPatchFailure::InvalidFrom,
            json_patch::PatchErrorKind::CannotMoveInsideItself => JsonPatchFailure::MoveIntoItself,
            _ => JsonPatchFailure::InvalidPath,
        };
        // Wording of evanphx/json-patch, which upstream uses.
        let message = match failure {
            JsonPatchFailure::TestFailed => format!("testing value {path} failed: test failed"),
            JsonPatchFailure::InvalidPath => {
                format!("{op_name} operation does not apply: doc is missing path: \"{path}\": missing value")
            }
            JsonPatchFailure::InvalidFrom => {
                let from = match op {
                    Some(json_patch::PatchOperation::Move(m)) => m.from.to_string(),
                    Some(json_patch::PatchOperation::Copy(c)) => c.from.to_string(),
                    _ => String::new(),
                };
                format!("{op_name} operation does not apply: doc is missing from path: \"{from}\": missing value")
            }
            JsonPatchFailure::MoveIntoItself => {
                format!("{op_name} operation does not apply: cannot move {path} into itself")
            }
        };
        PatchError::JsonPatchFailed {
            operation: e.operation,
            op: op_name,
            path,
            failure,
            message,
        }
    })?;
    Ok(doc)
}

fn operation_name(op: &json_patch::PatchOperation) -> &'static str {
    match op {
        json_patch::PatchOperation::Add(_) => "add",
        json_patch::PatchOperation::Remove(_) => "remove",
        json_patch::PatchOperation::Replace(_) => "replace",
        json_patch::PatchOperation::Move(_) => "move",
        json_patch::PatchOperation::Copy(_) => "copy",
        json_patch::PatchOperation::Test(_) => "test",
    }
}

fn decode_json(body: &[u8]) -> Result<Value, PatchError> {
    serde_json::from_slice(body).map_err(|e| PatchError::Decode {
        message: format!("error decoding patch: {e}"),
    })
}

fn json_type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}
