//! ConfigMap rules: printed with their key count.

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct ConfigMapStrategy;

impl Strategy for ConfigMapStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::ConfigMap>(
            gen,
        )
    }

    fn printer(&self) -> &'static Printer {
        &table::CONFIG_MAP
    }
}
