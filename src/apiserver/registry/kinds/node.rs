//! Node rules: status updates that only move `lastHeartbeatTime` are heartbeats, kept
//! in memory (see `apiserver::heartbeats`), and reads show the latest one; podCIDRs lie
//! inside the cluster CIDR; a node writing its own Node passes NodeRestriction
//! (`auth::admit_node_write`).

use ipnet::{IpNet, Ipv4Net};
use serde_json::Value;

use crate::api::identity::User;
use crate::api::selector;
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::api::validation::{self, FieldError};
use crate::apiserver::registry::strategy::{Context, Strategy};
use crate::apiserver::{auth, heartbeats};
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

/// `spec.podCIDR` and each of `spec.podCIDRs` (as field path and value).
fn pod_cidrs(node: &Value) -> Vec<(String, &str)> {
    let spec = &node["spec"];
    let single = spec["podCIDR"].as_str().filter(|c| !c.is_empty());
    let listed = spec["podCIDRs"].as_array().into_iter().flatten();
    single
        .map(|c| ("spec.podCIDR".to_string(), c))
        .into_iter()
        .chain(
            listed
                .enumerate()
                .filter_map(|(i, c)| Some((format!("spec.podCIDRs[{i}]"), c.as_str()?))),
        )
        .collect()
}

/// Errors for podCIDRs of `new` outside `cluster` (`--cluster-cidr`): agents route a
/// node's podCIDR to it, so a range outside the pod network would capture other
/// traffic. Only podCIDRs `new` sets are checked (an update of a Node assigned before the
/// cluster CIDR changed still succeeds). Malformed values are validation's to report.
pub fn pod_cidrs_outside(cluster: Ipv4Net, new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let before = old.map(pod_cidrs).unwrap_or_default();
    pod_cidrs(new)
        .into_iter()
        .filter(|entry| !before.contains(entry))
        .filter_map(|(field, text)| {
            let inside = match text.parse::<IpNet>().ok()? {
                IpNet::V4(net) => cluster.contains(&net),
                IpNet::V6(_) => false,
            };
            (!inside).then(|| {
                FieldError::invalid(
                    field,
                    text,
                    format!("must be a subnet of the cluster CIDR {cluster} (--cluster-cidr)"),
                )
            })
        })
        .collect()
}

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &["metadata.name", "spec.unschedulable"];

impl Strategy for NodeStrategy {
    fn validate(&self, cx: &Context, obj: &Value) -> Vec<FieldError> {
        let mut errors = validation::validate(cx.def.kind, obj, None);
        if let Some(cluster) = cx.cluster_cidr {
            errors.extend(pod_cidrs_outside(cluster, obj, None));
        }
        errors
    }

    fn validate_update(&self, cx: &Context, new: &Value, old: &Value) -> Vec<FieldError> {
        let mut errors = validation::validate(cx.def.kind, new, Some(old));
        if let Some(cluster) = cx.cluster_cidr {
            errors.extend(pod_cidrs_outside(cluster, new, Some(old)));
        }
        errors
    }

    fn admit(
        &self,
        _cx: &Context,
        requester: &User,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        auth::admit_node_write(requester, new, old)
    }

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
    fn pod_cidrs_must_lie_inside_the_cluster_cidr() {
        let cluster: Ipv4Net = "10.42.0.0/16".parse().unwrap();
        let node = |cidr: &str| json!({"spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        assert!(pod_cidrs_outside(cluster, &node("10.42.3.0/24"), None).is_empty());
        for outside in ["0.0.0.0/1", "10.43.0.0/24", "10.0.0.0/8", "fd00::/64"] {
            let errors = pod_cidrs_outside(cluster, &node(outside), None);
            let fields: Vec<&str> = errors.iter().map(|e| e.field.as_str()).collect();
            assert_eq!(fields, ["spec.podCIDR", "spec.podCIDRs[0]"], "{outside}");
        }
        assert_eq!(
            pod_cidrs_outside(cluster, &node("10.43.0.0/24"), None)[0].to_string(),
            "spec.podCIDR: Invalid value: \"10.43.0.0/24\": must be a subnet of the cluster CIDR 10.42.0.0/16 (--cluster-cidr)"
        );
        // A range assigned before (under another cluster CIDR) does not block updates.
        let old = node("10.99.0.0/24");
        assert!(pod_cidrs_outside(cluster, &old, Some(&old)).is_empty());
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
