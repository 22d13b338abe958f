//! Custom objects (kinds served from CustomResourceDefinitions): upstream's custom
//! resource strategy — no built-in defaults, status reset behind the status subresource,
//! metadata validated as any object's and the rest by the CRD's schema.

use serde_json::{json, Value};

use crate::api::crd;
use crate::api::object;
use crate::api::resources::ResourceDef;
use crate::api::validation::{self, FieldError};
use crate::apiserver::registry::strategy::{keep_unwritten_part, Context, Strategy};
use crate::store::KeyValue;

/// A custom object as a client of version `def` sees it: stored in the CRD's storage
/// version, it reads in any served version (conversion `None`: only `apiVersion`
/// changes, as upstream). Objects of a CRD with a conversion webhook stay as stored:
/// the callers that answer clients convert them (`Registry::in_served_version`).
pub fn in_version(def: &ResourceDef, kv: KeyValue) -> KeyValue {
    let wanted = def.api_version();
    let Some(custom) = def.custom else {
        return kv;
    };
    if custom.conversion.is_some() || kv.value["apiVersion"].as_str() == Some(wanted.as_str()) {
        return kv;
    }
    let mut value = (*kv.value).clone();
    value["apiVersion"] = json!(wanted);
    kv.with_value(value)
}

/// Sets a custom object's `apiVersion` to its CRD's storage version (conversion
/// `None`; a webhook converts it just before it is stored).
fn to_storage_version(def: &ResourceDef, obj: &mut Value) {
    if let Some(custom) = def.custom.filter(|c| c.conversion.is_none()) {
        obj["apiVersion"] = json!(format!("{}/{}", def.group, custom.storage_version));
    }
}

pub struct CustomStrategy;

impl Strategy for CustomStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    /// Upstream's custom resource strategy: behind a status subresource the spec part
    /// moves generation on; without one, any change but metadata does (status too).
    fn generation_moves(&self, cx: &Context, new: &Value, old: &Value) -> bool {
        if cx.def.has_status() {
            !object::same_spec_part(new, old)
        } else {
            !object::same_but_metadata(new, old)
        }
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        // Behind a status subresource, a create starts without status (upstream's
        // PrepareForCreate); the kind's schema defaults applied in `typed`. Upstream
        // defaults every object it reads from etcd too, so the create's answer and every
        // read carry the schema's status defaults (Gateway API's `Accepted: Unknown`,
        // "Waiting for controller"): stored here, they read the same.
        if cx.def.has_status() {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
            if let Some(schema) = cx.def.custom.and_then(|c| c.structural.as_deref()) {
                crd::apply_defaults(schema, obj);
            }
        }
        to_storage_version(cx.def, obj);
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        to_storage_version(cx.def, new);
    }

    fn fresh_view(&self, cx: &Context, kv: KeyValue) -> KeyValue {
        in_version(cx.def, kv)
    }

    /// Upstream's decoding of a custom object: fields the schema does not know are
    /// pruned (they are the unknown fields `fieldValidation` reports), then the schema's
    /// defaults apply.
    fn typed(&self, cx: &Context, obj: &Value) -> Result<Value, serde_json::Error> {
        let mut obj = obj.clone();
        if let Some(schema) = cx.def.custom.and_then(|c| c.structural.as_deref()) {
            crd::prune(schema, &mut obj);
            crd::apply_defaults(schema, &mut obj);
        }
        Ok(obj)
    }

    fn validate(&self, cx: &Context, obj: &Value) -> Vec<FieldError> {
        custom_errors(cx, obj, None)
    }

    fn validate_update(&self, cx: &Context, new: &Value, old: &Value) -> Vec<FieldError> {
        custom_errors(cx, new, Some(old))
    }
}

/// The object's metadata as any object's, then what its CRD's schema says (types,
/// formats, list types, CEL rules; `old` for transition rules).
fn custom_errors(cx: &Context, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs =
        validation::validate_object_meta_subdomain(obj.get("metadata").unwrap_or(&Value::Null));
    if let Some(schema) = cx.def.custom.and_then(|c| c.structural.as_deref()) {
        errs.extend(crd::validate(schema, obj, old));
    }
    errs
}
