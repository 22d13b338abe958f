//! StatefulSet and ControllerRevision rules: a StatefulSet is created with an empty
//! status (its controller owns it) and has `status` and `scale` subresources; both
//! print with their upstream columns.

use serde_json::{json, Value};

use crate::api::defaults;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};

pub struct StatefulSetStrategy;

impl Strategy for StatefulSetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::apps::v1::StatefulSet>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::STATEFUL_SET
    }

    /// Upstream `PrepareForCreate`: the status starts empty (`replicas` and
    /// `availableReplicas` are always written).
    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0, "availableReplicas": 0});
        defaults::apply_defaults(cx.def.kind, obj);
    }
}

pub struct ControllerRevisionStrategy;

impl Strategy for ControllerRevisionStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::apps::v1::ControllerRevision>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::CONTROLLER_REVISION
    }
}
