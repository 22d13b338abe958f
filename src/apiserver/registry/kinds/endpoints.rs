//! Endpoints and EndpointSlice rules: printed with the addresses they list.

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct EndpointsStrategy;

impl Strategy for EndpointsStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Endpoints>(
            gen,
        )
    }

    fn printer(&self) -> &'static Printer {
        &table::ENDPOINTS
    }
}

/// EndpointSlice rules: printed with their address type, ports and addresses.
pub struct EndpointSliceStrategy;

impl Strategy for EndpointSliceStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<
            k8s_openapi::api::discovery::v1::EndpointSlice,
        >(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::ENDPOINT_SLICE
    }
}
