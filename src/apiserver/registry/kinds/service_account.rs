//! ServiceAccount rules: printed with their secret count.

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct ServiceAccountStrategy;

impl Strategy for ServiceAccountStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::ServiceAccount>(
            gen,
        )
    }

    fn printer(&self) -> &'static Printer {
        &table::SERVICE_ACCOUNT
    }
}
