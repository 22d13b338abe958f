//! PodTemplate rules (core/v1, namespaced; upstream `pkg/registry/core/podtemplate`):
//! the template is defaulted as every pod template is, and the generation moves when
//! it changes.

use serde_json::Value;

use crate::api::defaults;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};

pub struct PodTemplateStrategy;

fn template_defaults(obj: &mut Value) {
    if obj["template"].is_object() {
        defaults::pod_template_defaults(&mut obj["template"]);
    }
}

impl Strategy for PodTemplateStrategy {
    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        template_defaults(obj);
    }

    fn prepare_for_update(
        &self,
        _cx: &Context,
        new: &mut Value,
        _old: &Value,
        _subresource: Option<&str>,
    ) {
        template_defaults(new);
    }

    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::core::v1::PodTemplate>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::POD_TEMPLATE
    }
}
