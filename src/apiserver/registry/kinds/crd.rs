//! CustomResourceDefinition rules: upstream's defaults, validation of the definition
//! itself, status behind its subresource, and deletion that first removes every custom
//! object (the `customresourcecleanup` finalizer, finished by `apiserver::crds`).

use serde_json::{json, Value};

use crate::api::crd;
use crate::api::resources::RESOURCES;
use crate::api::table::{self, Printer};
use crate::api::validation::FieldError;
use crate::apiserver::registry::strategy::{keep_unwritten_part, Context, Strategy};

/// The finalizer a CRD gets when it is deleted: its objects go first.
pub const CLEANUP_FINALIZER: &str = "customresourcecleanup.apiextensions.k8s.io";

pub struct CrdStrategy;

impl Strategy for CrdStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream `PrepareForCreate`: the status starts empty but for the storage version,
    /// already recorded as stored (an update right after the create, before the
    /// establishing controller ran, must still pass the stored-versions validation).
    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        crd::default_crd(obj);
        let stored: Vec<Value> = obj["spec"]["versions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|v| v["storage"] == true)
            .map(|v| v["name"].clone())
            .into_iter()
            .collect();
        obj["status"] = json!({
            "conditions": [],
            "acceptedNames": {"plural": "", "kind": ""},
            "storedVersions": stored,
        });
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        if subresource.is_none() {
            crd::default_crd(new);
        }
    }

    fn validate(&self, _cx: &Context, obj: &Value) -> Vec<FieldError> {
        let mut errs = crd::validate_crd(obj, None);
        errs.extend(builtin_group_clash(obj));
        errs
    }

    fn validate_update(&self, _cx: &Context, new: &Value, old: &Value) -> Vec<FieldError> {
        crd::validate_crd(new, Some(old))
    }

    fn deleted_by_controller(&self) -> bool {
        true
    }

    fn prepare_for_delete(&self, obj: &mut Value) {
        let finalizers = obj["metadata"]["finalizers"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if !finalizers.iter().any(|f| f == CLEANUP_FINALIZER) {
            let mut finalizers = finalizers;
            finalizers.push(json!(CLEANUP_FINALIZER));
            obj["metadata"]["finalizers"] = json!(finalizers);
        }
        crate::apiserver::registry::set_crd_condition(
            obj,
            "Terminating",
            "True",
            "InstanceDeletionPending",
            "CustomResourceDefinition marked for deletion; CustomResource deletion will begin soon",
        );
    }

    fn printer(&self) -> &'static Printer {
        &table::CUSTOM_RESOURCE_DEFINITION
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<
            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition,
        >(gen)
    }
}

/// A CRD may not define kinds in a group the server's built-in kinds live in.
fn builtin_group_clash(obj: &Value) -> Vec<FieldError> {
    let group = obj["spec"]["group"].as_str().unwrap_or("");
    if RESOURCES.iter().any(|r| r.group == group) {
        vec![FieldError::invalid(
            "spec.group",
            group,
            "the group is served by the built-in API; custom resources need a group of their own",
        )]
    } else {
        vec![]
    }
}
