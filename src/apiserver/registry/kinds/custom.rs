//! Custom objects (kinds served from CustomResourceDefinitions): upstream's custom
//! resource strategy — no built-in defaults, status reset behind the status subresource,
//! metadata validated as any object's and the rest by the CRD's schema.

use serde_json::Value;

use crate::api::validation::{self, FieldError};
use crate::apiserver::registry::strategy::{keep_unwritten_part, Context, Strategy};

pub struct CustomStrategy;

impl Strategy for CustomStrategy {
    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        // Behind a status subresource, a create starts without status (upstream's
        // PrepareForCreate); the kind's schema defaults apply in `decode_custom`.
        if cx.def.has_status() {
            if let Some(o) = obj.as_object_mut() {
                o.remove("status");
            }
        }
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
    }

    fn validate(&self, _cx: &Context, obj: &Value) -> Vec<FieldError> {
        validation::validate_custom_object_meta(obj)
    }

    fn validate_update(&self, _cx: &Context, new: &Value, _old: &Value) -> Vec<FieldError> {
        validation::validate_custom_object_meta(new)
    }
}
