//! The client-side-apply upgrade path: the `last-applied-configuration` annotation lets
//! `kubectl` take over fields it applied client-side without conflicts, and is kept up
//! to date by server-side applies (upstream's `lastappliedmanager.go` and
//! `lastappliedupdater.go`).

use serde_json::{Map, Value};

use super::fieldset::FieldSet;
use super::json::go_json;
use super::typed::{compare, to_field_set, validate};
use super::Request;

/// The annotation `kubectl apply` (client-side) keeps its last configuration in.
pub const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";

/// Only this manager takes part in the upgrade path; others opt out by their name.
pub const KUBECTL_MANAGER: &str = "kubectl";

fn annotation(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")?
        .get(LAST_APPLIED_ANNOTATION)?
        .as_str()
        .filter(|s| !s.is_empty())
}

/// The fields the last client-side apply set that still hold the values it set, as the
/// server stored them (defaulted: a webhook rule's `scope: "*"`, a Deployment's
/// `strategy.type`): the applier may take these over without conflict, which is where
/// upstream's kubectl ends after moving its client-side manager's fields to itself.
/// `None` when the object has no usable annotation (absent, not JSON, another API
/// version, or not a valid object).
pub(crate) fn allowed_conflicts(
    live: &Value,
    live_object: &Value,
    req: &Request,
) -> Option<FieldSet> {
    let mut last: Value = serde_json::from_str(annotation(live)?).ok()?;
    if last.get("apiVersion").and_then(Value::as_str) != Some(req.api_version) {
        return None;
    }
    if req.subresource.is_empty() {
        crate::api::defaults::apply_defaults(req.kind, &mut last);
    }
    let node = &req.shape.root;
    validate(&last, node, false).ok()?;
    let fields = to_field_set(&last, node);
    let cmp = compare(&last, live_object, node);
    Some(
        fields
            .difference(&cmp.modified)
            .difference(&cmp.added)
            .difference(&cmp.removed),
    )
}

/// After a `kubectl` server-side apply, rewrites the annotation (when the object has
/// one) to the applied configuration, so a later client-side apply diffs against it.
pub(crate) fn update_annotation(object: &mut Value, config: &Value) {
    if annotation(object).is_none() {
        return;
    }
    let mut applied = config.clone();
    if let Some(annotations) = applied
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.remove(LAST_APPLIED_ANNOTATION);
    }
    let text = format!("{}\n", go_json(&applied));
    if let Some(annotations) = object
        .pointer_mut("/metadata/annotations")
        .and_then(Value::as_object_mut)
    {
        annotations.insert(LAST_APPLIED_ANNOTATION.into(), Value::String(text));
    }
}

/// `object` without `metadata.managedFields`.
pub(crate) fn without_managed_fields(object: &Value) -> Value {
    let mut out = object.clone();
    if let Some(metadata) = out.get_mut("metadata").and_then(Value::as_object_mut) {
        metadata.remove("managedFields");
    }
    out
}

/// Whether an update's `managedFields` asks to clear them (`[]` or `[{}]`).
pub(crate) fn is_reset(managed_fields: Option<&Value>) -> bool {
    match managed_fields {
        Some(Value::Array(items)) => match items.as_slice() {
            [] => true,
            [only] => only.as_object().is_some_and(Map::is_empty),
            _ => false,
        },
        _ => false,
    }
}
