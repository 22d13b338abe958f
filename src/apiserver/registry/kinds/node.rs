//! Node rules: status updates that only move `lastHeartbeatTime` are heartbeats, kept
//! in memory (see `apiserver::heartbeats`), and reads show the latest one.

use serde_json::Value;

use crate::api::selector;
use crate::api::table::{self, Printer};
use crate::apiserver::heartbeats;
use crate::apiserver::registry::strategy::{Context, Strategy};
use crate::store::KeyValue;

pub struct NodeStrategy;

/// Removes the heartbeat timestamps of a Node's conditions.
fn strip_heartbeat_times(node: &mut Value) {
    let conditions = node
        .pointer_mut("/status/conditions")
        .and_then(Value::as_array_mut);
    for c in conditions
        .into_iter()
        .flatten()
        .filter_map(Value::as_object_mut)
    {
        c.remove("lastHeartbeatTime");
    }
}

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];

impl Strategy for NodeStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Node>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::NODE
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }

    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "spec.unschedulable" => selector::bool_field_value(obj, field),
            _ => selector::field_value(obj, field),
        }
    }

    fn is_heartbeat(&self, old: &Value, new: &Value) -> bool {
        heartbeats::only_heartbeat_changed(old, new, strip_heartbeat_times)
    }

    fn fresh_view(&self, cx: &Context, kv: KeyValue) -> KeyValue {
        cx.heartbeats.overlay(kv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn node_heartbeat_times_only_is_a_heartbeat() {
        let node = |hb: &str, status: &str| {
            json!({"kind": "Node", "metadata": {"name": "n1"}, "status": {"conditions": [
                {"type": "Ready", "status": status, "lastHeartbeatTime": hb, "lastTransitionTime": "t0"}]}})
        };
        assert!(NodeStrategy.is_heartbeat(&node("t1", "True"), &node("t2", "True")));
        assert!(!NodeStrategy.is_heartbeat(&node("t1", "True"), &node("t2", "False")));
        assert!(!NodeStrategy.is_heartbeat(&node("t1", "True"), &node("t1", "True")));
    }

    #[test]
    fn nodes_without_unschedulable_select_as_schedulable() {
        let node = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert_eq!(
            NodeStrategy.field_value(&node, "spec.unschedulable"),
            "false"
        );
    }
}
