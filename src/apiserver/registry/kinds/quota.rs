//! ResourceQuota and LimitRange rules: a quota is created with an empty status (the
//! resource quota controller counts its usage, admission charges writes to it); both
//! print as upstream. What they enforce lives in `apiserver::quota`.

use serde_json::{json, Value};

use crate::api::defaults;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};

pub struct ResourceQuotaStrategy;

impl Strategy for ResourceQuotaStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::core::v1::ResourceQuota>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::RESOURCE_QUOTA
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = json!({});
        defaults::apply_defaults(cx.def.kind, obj);
    }
}

pub struct LimitRangeStrategy;

impl Strategy for LimitRangeStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::core::v1::LimitRange>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::LIMIT_RANGE
    }
}
