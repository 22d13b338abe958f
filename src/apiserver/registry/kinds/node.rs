//! Node rules: status updates that only move `lastHeartbeatTime` are heartbeats, kept
//! in memory (see `apiserver::heartbeats`), and reads show the latest one; podCIDRs lie
//! inside the cluster CIDR; a node writing its own Node passes NodeRestriction.

use ipnet::{IpNet, Ipv4Net};
use serde_json::Value;

use crate::api::identity::{node_may_set_label, User};
use crate::api::selector;
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::api::validation::{self, FieldError};
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

/// The label pods pin a node with (`nodeSelector`, affinity): it must stay the node's
/// own name, or a node could attract pods meant for another.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// NodeRestriction for a node writing its own Node (upstream's `admitNode`): on create
/// no restricted label; on update no change to taints, ownerReferences or restricted
/// labels. orc adds what a node could otherwise use to steer pods or traffic to itself:
/// `spec.unschedulable` (uncordoning itself), `spec.podCIDR(s)` (assigned by the server's
/// node IPAM; other agents route that prefix to the node) and a `kubernetes.io/hostname`
/// other than its own name. Others than nodes are not restricted here.
pub fn node_restriction(user: &User, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let name = crate::api::object::name(new);
    let deny = |why: String| {
        Err(ApiError::forbidden(format!(
            "nodes \"{name}\" is forbidden: {why}"
        )))
    };
    let spec = |obj: &Value, field: &str| obj["spec"].get(field).cloned().unwrap_or(Value::Null);
    let Some(old) = old else {
        let forbidden = forbidden_node_labels(node, &modified_labels(new, &Value::Null), new, true);
        if !forbidden.is_empty() {
            return deny(format!(
                "node \"{node}\" is not allowed to set the following labels: {}",
                forbidden.join(", ")
            ));
        }
        if has_pod_cidrs(new) {
            return deny(format!(
                "node \"{node}\" is not allowed to set spec.podCIDRs: the server assigns them"
            ));
        }
        return Ok(());
    };
    if spec(new, "taints") != spec(old, "taints") {
        return deny(format!("node \"{node}\" is not allowed to modify taints"));
    }
    if new["metadata"].get("ownerReferences") != old["metadata"].get("ownerReferences") {
        return deny(format!(
            "node \"{node}\" is not allowed to modify ownerReferences"
        ));
    }
    let schedulable = |obj: &Value| !spec(obj, "unschedulable").as_bool().unwrap_or(false);
    if schedulable(new) != schedulable(old) {
        return deny(format!(
            "node \"{node}\" is not allowed to modify spec.unschedulable"
        ));
    }
    for field in ["podCIDR", "podCIDRs"] {
        if spec(new, field) != spec(old, field) {
            return deny(format!(
                "node \"{node}\" is not allowed to modify spec.{field}: the server assigns it"
            ));
        }
    }
    let forbidden = forbidden_node_labels(node, &modified_labels(new, old), new, false);
    if !forbidden.is_empty() {
        return deny(format!(
            "is not allowed to modify labels: {}",
            forbidden.join(", ")
        ));
    }
    Ok(())
}

fn has_pod_cidrs(node: &Value) -> bool {
    let spec = &node["spec"];
    !spec["podCIDR"].as_str().unwrap_or("").is_empty()
        || spec["podCIDRs"].as_array().is_some_and(|a| !a.is_empty())
}

/// The label keys whose value differs between `new` and `old` (added, removed, changed),
/// sorted (upstream `getModifiedLabels`).
fn modified_labels(new: &Value, old: &Value) -> Vec<String> {
    let labels = |obj: &Value| {
        obj["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let (new, old) = (labels(new), labels(old));
    let keys: std::collections::BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    keys.into_iter()
        .filter(|k| new.get(*k) != old.get(*k))
        .cloned()
        .collect()
}

/// Of the `modified` labels, those node `node` may not set (upstream
/// `getForbiddenLabels`, plus the hostname rule); `new` is the Node as written.
fn forbidden_node_labels(
    node: &str,
    modified: &[String],
    new: &Value,
    creating: bool,
) -> Vec<String> {
    modified
        .iter()
        .filter(|key| {
            if key.as_str() == HOSTNAME_LABEL {
                let own_name = new["metadata"]["labels"][HOSTNAME_LABEL].as_str() == Some(node);
                return !(creating && own_name);
            }
            !node_may_set_label(key)
        })
        .cloned()
        .collect()
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
        node_restriction(requester, new, old)
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
    use crate::api::identity::{ADMIN_GROUP, NODES_GROUP};
    use serde_json::json;

    fn node(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec![NODES_GROUP.into()],
            ..Default::default()
        }
    }

    fn own_node() -> Value {
        json!({"metadata": {"name": "n1", "labels": {
                   "kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux", "zone": "attic"}},
               "spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"],
                        "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}],
                        "unschedulable": true}})
    }

    fn node_write_refusal(new: &Value, old: Option<&Value>) -> String {
        let err = node_restriction(&node("n1"), new, old).unwrap_err();
        assert_eq!((err.code, err.reason), (403, "Forbidden"));
        err.message
    }

    #[test]
    fn node_may_not_change_its_taints_cordon_pod_cidrs_or_owners() {
        let old = own_node();
        let changed = |f: &dyn Fn(&mut Value)| {
            let mut new = old.clone();
            f(&mut new);
            node_write_refusal(&new, Some(&old))
        };
        assert_eq!(
            changed(&|n| n["spec"]["taints"] = json!([])),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints"
        );
        assert_eq!(
            changed(&|n| {
                n["spec"].as_object_mut().unwrap().remove("unschedulable");
            }),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify spec.unschedulable"
        );
        assert!(changed(&|n| n["spec"]["podCIDRs"] = json!(["0.0.0.0/1"]))
            .ends_with("is not allowed to modify spec.podCIDRs: the server assigns it"));
        assert!(
            changed(&|n| n["spec"]["podCIDR"] = json!("10.42.2.0/24")).contains("spec.podCIDR:")
        );
        assert!(
            changed(&|n| n["metadata"]["ownerReferences"] = json!([{"name": "x"}]))
                .ends_with("not allowed to modify ownerReferences")
        );
        // Status, its own labels and kubelet labels stay the node's.
        let mut fine = old.clone();
        fine["status"] = json!({"capacity": {"cpu": "4"}});
        fine["metadata"]["labels"]["zone"] = json!("cellar");
        fine["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("a");
        fine["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] =
            json!("true");
        assert!(node_restriction(&node("n1"), &fine, Some(&old)).is_ok());
    }

    #[test]
    fn node_may_not_give_itself_restricted_labels() {
        let old = own_node();
        let relabel = |key: &str, value: Option<&str>| {
            let mut new = old.clone();
            match value {
                Some(v) => new["metadata"]["labels"][key] = json!(v),
                None => {
                    new["metadata"]["labels"]
                        .as_object_mut()
                        .unwrap()
                        .remove(key);
                }
            }
            node_write_refusal(&new, Some(&old))
        };
        assert_eq!(
            relabel("node-restriction.kubernetes.io/trusted", Some("yes")),
            "nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/trusted"
        );
        assert!(
            relabel("example.node-restriction.kubernetes.io/x", Some("y"))
                .ends_with("labels: example.node-restriction.kubernetes.io/x")
        );
        assert!(relabel("node-role.kubernetes.io/control-plane", Some(""))
            .ends_with("labels: node-role.kubernetes.io/control-plane"));
        assert!(relabel("kubernetes.io/hostname", Some("n2"))
            .ends_with("labels: kubernetes.io/hostname"));
        assert!(relabel("kubernetes.io/hostname", None).ends_with("labels: kubernetes.io/hostname"));
        assert!(relabel("k8s.io/anything", Some("x")).ends_with("labels: k8s.io/anything"));
    }

    #[test]
    fn node_registers_with_kubelet_labels_and_taints_but_no_restricted_label_or_pod_cidr() {
        let mut created = own_node();
        created["spec"] =
            json!({"taints": [{"key": "k", "effect": "NoSchedule"}], "unschedulable": true});
        assert!(node_restriction(&node("n1"), &created, None).is_ok());
        let mut role = created.clone();
        role["metadata"]["labels"]["node-role.kubernetes.io/master"] = json!("");
        role["metadata"]["labels"]["kubernetes.io/hostname"] = json!("n2");
        assert_eq!(
            node_write_refusal(&role, None),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to set the following labels: kubernetes.io/hostname, node-role.kubernetes.io/master"
        );
        let mut cidr = created.clone();
        cidr["spec"]["podCIDR"] = json!("10.42.9.0/24");
        assert!(node_write_refusal(&cidr, None)
            .ends_with("not allowed to set spec.podCIDRs: the server assigns them"));
        // Admins (and controllers, which are never admitted) may do all of it.
        let admin = User {
            name: "system:admin".into(),
            groups: vec![ADMIN_GROUP.into()],
            ..Default::default()
        };
        assert!(node_restriction(&admin, &role, Some(&own_node())).is_ok());
    }

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
