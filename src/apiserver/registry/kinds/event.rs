//! Event rules: printed as `kubectl get events` lists them, selectable by the
//! object they are about, their reason, source and type.

use serde_json::Value;

use crate::api::selector;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::Strategy;

pub struct EventStrategy;

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &[
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
    "metadata.namespace",
    "metadata.name",
];

impl Strategy for EventStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Event>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::EVENT
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }

    /// `source` is the legacy source component, else the reporting controller.
    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "source" => {
                let component = selector::field_value(obj, "source.component");
                if component.is_empty() {
                    selector::field_value(obj, "reportingComponent")
                } else {
                    component
                }
            }
            _ => selector::field_value(obj, field),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn event_source_falls_back_to_the_reporting_component() {
        let old_style = json!({"source": {"component": "kubelet"}, "reportingComponent": "x"});
        assert_eq!(EventStrategy.field_value(&old_style, "source"), "kubelet");
        let new_style = json!({"reportingComponent": "orc-controller"});
        assert_eq!(
            EventStrategy.field_value(&new_style, "source"),
            "orc-controller"
        );
    }
}
