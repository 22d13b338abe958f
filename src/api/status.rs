//! API errors as Kubernetes `Status` objects (code, reason, message, details).

use serde_json::{json, Value};

use super::resources::ResourceDef;
use super::validation::FieldError;

/// An error answered to an API client as a `meta.k8s.io/v1 Status`.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{message}")]
pub struct ApiError {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub details: Option<Value>,
}

/// The 422 `Invalid` error: `{label} "{name}" is invalid: …` with one cause per field.
fn invalid_of(group: &str, kind: &str, label: &str, name: &str, errors: &[FieldError]) -> ApiError {
    let causes: Vec<Value> = errors
        .iter()
        // As upstream: the field apart, the message without it (kubectl prints both).
        .map(|e| json!({"reason": e.reason(), "message": e.body(), "field": e.field}))
        .collect();
    let list = if errors.len() == 1 {
        errors[0].to_string()
    } else {
        format!(
            "[{}]",
            errors
                .iter()
                .map(|e| e.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    ApiError {
        details: Some(json!({
            "name": name, "group": group, "kind": kind, "causes": causes
        })),
        ..ApiError::new(
            422,
            "Invalid",
            format!("{label} \"{name}\" is invalid: {list}"),
        )
    }
}

fn details(def: &ResourceDef, name: &str) -> Value {
    json!({"name": name, "group": def.group, "kind": def.plural})
}

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            reason,
            message: message.into(),
            details: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }

    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }

    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }

    /// Upstream `admission.NewForbidden`: `pods "web" is forbidden: WHY`.
    pub fn admission_forbidden(def: &ResourceDef, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(details(def, name)),
            ..ApiError::forbidden(format!(
                "{} \"{name}\" is forbidden: {why}",
                resource_name(def)
            ))
        }
    }

    pub fn not_found(def: &ResourceDef, name: &str) -> ApiError {
        ApiError {
            details: Some(details(def, name)),
            ..ApiError::new(
                404,
                "NotFound",
                format!("{} \"{name}\" not found", resource_name(def)),
            )
        }
    }

    /// A path that names nothing orc serves.
    pub fn no_route() -> ApiError {
        ApiError::new(
            404,
            "NotFound",
            "the server could not find the requested resource",
        )
    }

    pub fn already_exists(def: &ResourceDef, name: &str) -> ApiError {
        ApiError {
            details: Some(details(def, name)),
            ..ApiError::new(
                409,
                "AlreadyExists",
                format!("{} \"{name}\" already exists", resource_name(def)),
            )
        }
    }

    pub fn conflict(def: &ResourceDef, name: &str, why: &str) -> ApiError {
        ApiError {
            details: Some(details(def, name)),
            ..ApiError::new(
                409,
                "Conflict",
                format!(
                    "Operation cannot be fulfilled on {} \"{name}\": {why}",
                    resource_name(def)
                ),
            )
        }
    }

    /// The optimistic-concurrency conflict (stale resourceVersion).
    pub fn modified(def: &ResourceDef, name: &str) -> ApiError {
        ApiError::conflict(
            def,
            name,
            "the object has been modified; please apply your changes to the latest version and try again",
        )
    }

    pub fn invalid(def: &ResourceDef, name: &str, errors: &[FieldError]) -> ApiError {
        invalid_of(def.group, def.kind, def.kind, name, errors)
    }

    /// 422 for options that are not a stored kind (upstream `NewInvalid` with a bare
    /// group-kind, e.g. `DeleteOptions.meta.k8s.io "" is invalid: …`).
    pub fn invalid_options(group: &str, kind: &str, errors: &[FieldError]) -> ApiError {
        invalid_of(group, kind, &format!("{kind}.{group}"), "", errors)
    }

    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }

    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", message)
    }

    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }

    pub fn too_large(limit: usize) -> ApiError {
        ApiError::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    pub fn unsupported_media_type(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "InternalError", message)
    }

    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// The `Status` object sent to the client.
    pub fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if let Some(d) = &self.details {
            status["details"] = d.clone();
        }
        status
    }
}

/// `pods`, or `deployments.apps` for named groups (as upstream messages say).
pub fn resource_name(def: &ResourceDef) -> String {
    if def.group.is_empty() {
        def.plural.to_string()
    } else {
        format!("{}.{}", def.plural, def.group)
    }
}

/// A successful `Status` (e.g. for deletecollection-style answers).
pub fn success_status(def: &ResourceDef, name: &str, uid: Option<&str>) -> Value {
    let mut details = json!({"name": name, "group": def.group, "kind": def.plural});
    if let Some(uid) = uid {
        details["uid"] = Value::String(uid.to_string());
    }
    json!({
        "kind": "Status", "apiVersion": "v1", "metadata": {},
        "status": "Success", "details": details
    })
}
