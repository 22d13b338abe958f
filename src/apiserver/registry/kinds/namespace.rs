//! Namespace rules: created Active, the system namespaces cannot be deleted, and a
//! delete only marks the namespace Terminating: the namespace controller empties it and
//! clears `spec.finalizers`, and the namespace goes when those are gone too.

use serde_json::{json, Value};

use crate::api::defaults;
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{keep_unwritten_part, Context, Strategy};
use crate::controllers::namespace::NAMESPACE_FINALIZER;

/// Namespaces that can never be deleted.
const UNDELETABLE_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub struct NamespaceStrategy;

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &["status.phase", "metadata.name"];

impl Strategy for NamespaceStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Namespace>(
            gen,
        )
    }

    fn printer(&self) -> &'static Printer {
        &table::NAMESPACE
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }

    /// Created Active and with the `kubernetes` finalizer, added to those the body
    /// names (upstream's `PrepareForCreate`: not a default, since the namespace
    /// controller removes it).
    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"phase": "Active"});
        defaults::apply_defaults(cx.def.kind, obj);
        let mut finalizers = obj["spec"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == NAMESPACE_FINALIZER) {
            finalizers.push(json!(NAMESPACE_FINALIZER));
        }
        obj["spec"]["finalizers"] = Value::Array(finalizers);
    }

    /// `spec.finalizers` change only through the `finalize` subresource; other updates
    /// keep the stored ones (upstream's `PrepareForUpdate`).
    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        defaults::apply_defaults(cx.def.kind, new);
        if subresource != Some("finalize") {
            match old.pointer("/spec/finalizers") {
                Some(stored) => new["spec"]["finalizers"] = stored.clone(),
                None => {
                    if let Some(spec) = new.get_mut("spec").and_then(Value::as_object_mut) {
                        spec.remove("finalizers");
                    }
                }
            }
        }
    }

    fn check_delete(&self, _cx: &Context, obj: &Value) -> Result<(), ApiError> {
        let name = crate::api::object::name(obj);
        if UNDELETABLE_NAMESPACES.contains(&name) {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        Ok(())
    }

    fn deleted_by_controller(&self) -> bool {
        true
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        obj["status"]["phase"] = json!("Terminating");
    }

    fn finalized(&self, obj: &Value) -> bool {
        obj["spec"]["finalizers"]
            .as_array()
            .is_none_or(|f| f.is_empty())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_namespace_is_finalized_once_its_spec_finalizers_are_gone() {
        let ns = |finalizers: Value| json!({"spec": {"finalizers": finalizers}});
        assert!(!NamespaceStrategy.finalized(&ns(json!(["kubernetes"]))));
        assert!(NamespaceStrategy.finalized(&ns(json!([]))));
        assert!(NamespaceStrategy.finalized(&json!({"spec": {}})));
    }

    #[test]
    fn marking_a_namespace_for_deletion_makes_it_terminating() {
        let mut ns = json!({"metadata": {"name": "team"}, "status": {"phase": "Active"}});
        NamespaceStrategy.prepare_for_delete(&mut ns);
        assert_eq!(ns["status"]["phase"], "Terminating");
    }
}
