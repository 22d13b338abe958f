//! HorizontalPodAutoscaler rules: stored as `autoscaling/v2` (created with an empty
//! status, which the controller owns; defaults from `api::autoscaling`), and served as
//! `autoscaling/v1` too: a v1 write is converted to v2 before the v2 rules apply, and
//! every v1 read (get, list, watch, write answers) converts the stored object back.

use serde_json::{json, Value};

use crate::api::autoscaling::{from_v1, to_v1};
use crate::api::resources::ResourceDef;
use crate::api::table::{self, Printer};
use crate::api::{defaults, validation};
use crate::apiserver::registry::strategy::{keep_unwritten_part, schema_of, Context, Strategy};
use crate::store::KeyValue;

/// Upstream's empty `HorizontalPodAutoscalerStatus` (`desiredReplicas` is not omitted).
fn empty_status() -> Value {
    json!({"desiredReplicas": 0})
}

/// Whether `def` is the `autoscaling/v1` view of the stored v2 objects.
pub fn is_v1(def: &ResourceDef) -> bool {
    def.group == "autoscaling" && def.version == "v1" && def.custom.is_none()
}

/// The stored (v2) object `kv` as v1 shows it.
pub fn v1_view(kv: KeyValue) -> KeyValue {
    if kv.value["apiVersion"] == "autoscaling/v1" {
        return kv;
    }
    let value = to_v1(&kv.value);
    kv.with_value(value)
}

pub struct HorizontalPodAutoscalerStrategy;

impl Strategy for HorizontalPodAutoscalerStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::HORIZONTAL_POD_AUTOSCALER
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = empty_status();
        defaults::apply_defaults(cx.def.kind, obj);
    }
}

pub struct HorizontalPodAutoscalerV1Strategy;

impl Strategy for HorizontalPodAutoscalerV1Strategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::HORIZONTAL_POD_AUTOSCALER_V1
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        *obj = from_v1(obj);
        obj["status"] = empty_status();
        defaults::apply_defaults(cx.def.kind, obj);
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        // `old` is the v1 view of the stored object: both sides in v2 before the rules.
        let old = if old["apiVersion"] == "autoscaling/v1" {
            from_v1(old)
        } else {
            old.clone()
        };
        *new = from_v1(new);
        keep_unwritten_part(cx.def, new, &old, subresource);
        defaults::apply_defaults(cx.def.kind, new);
    }

    fn validate_update(
        &self,
        _cx: &Context,
        new: &Value,
        _old: &Value,
    ) -> Vec<validation::FieldError> {
        validation::validate("HorizontalPodAutoscaler", new, None)
    }

    fn fresh_view(&self, _cx: &Context, kv: KeyValue) -> KeyValue {
        v1_view(kv)
    }
}
