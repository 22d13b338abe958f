//! APIService rules (apiregistration.k8s.io/v1, cluster-scoped): defaults and validation
//! from `api/`, the status only the availability controller
//! (`controllers::api_service`) writes, printed with its service and availability.
//! orc stores APIServices so that published installs (metrics-server, KEDA…) apply,
//! but does not proxy aggregated APIs: their status says so.

use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;
use schemars::gen::SchemaGenerator;
use serde_json::{json, Value};

use crate::api::defaults;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};

pub struct ApiServiceStrategy;

impl Strategy for ApiServiceStrategy {
    /// Upstream `PrepareForCreate`: the status starts empty.
    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = json!({});
        defaults::apply_defaults(cx.def.kind, obj);
    }

    fn openapi_schema(&self, gen: &mut SchemaGenerator) -> Option<String> {
        schema_of::<APIService>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::API_SERVICE
    }
}
