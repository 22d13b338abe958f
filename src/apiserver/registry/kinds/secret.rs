//! Secret rules: printed with their type and key count, selectable by `type`.

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct SecretStrategy;

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &["type", "metadata.namespace", "metadata.name"];

impl Strategy for SecretStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Secret>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::SECRET
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }
}
