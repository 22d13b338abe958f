//! Where a DaemonSet's pods belong, as upstream's `NodeShouldRunDaemonPod`: the pod the
//! DaemonSet would make for a node (its template plus the default DaemonSet
//! tolerations), checked against the node's name, labels (nodeSelector and required
//! node affinity) and taints; and how that pod is pinned to its node through required
//! node affinity (`matchFields metadata.name In [node]`) for the scheduler to place.
//!
//! Pure functions of the DaemonSet and node objects.

use serde_json::{json, Map, Value};

use super::super::scheduler::filters;
use super::super::scheduler::info::{tolerated, NodeInfo, PodInfo, TaintEffect};

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
pub const TAINT_DISK_PRESSURE: &str = "node.kubernetes.io/disk-pressure";
pub const TAINT_MEMORY_PRESSURE: &str = "node.kubernetes.io/memory-pressure";
pub const TAINT_PID_PRESSURE: &str = "node.kubernetes.io/pid-pressure";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";
pub const TAINT_NETWORK_UNAVAILABLE: &str = "node.kubernetes.io/network-unavailable";

/// The field a DaemonSet pod's node affinity names its node by.
const OBJECT_NAME_FIELD: &str = "metadata.name";

/// Whether a DaemonSet wants a pod on a node, and whether a pod already there may stay.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Eligibility {
    /// The node should run the daemon pod (a new one is created if missing).
    pub should_run: bool,
    /// A daemon pod already on the node may keep running (a NoSchedule taint the pod
    /// does not tolerate keeps new pods off, but evicts nothing).
    pub should_continue: bool,
}

/// The tolerations upstream adds to every DaemonSet pod
/// (`AddOrUpdateDaemonPodTolerations`), in its order.
fn default_tolerations(host_network: bool) -> Vec<Value> {
    let exists =
        |key: &str, effect: &str| json!({"key": key, "operator": "Exists", "effect": effect});
    let mut tolerations = vec![
        exists(TAINT_NOT_READY, "NoExecute"),
        exists(TAINT_UNREACHABLE, "NoExecute"),
        exists(TAINT_DISK_PRESSURE, "NoSchedule"),
        exists(TAINT_MEMORY_PRESSURE, "NoSchedule"),
        exists(TAINT_PID_PRESSURE, "NoSchedule"),
        exists(TAINT_UNSCHEDULABLE, "NoSchedule"),
    ];
    if host_network {
        tolerations.push(exists(TAINT_NETWORK_UNAVAILABLE, "NoSchedule"));
    }
    tolerations
}

/// Upstream `Toleration.MatchToleration`: same key, operator, value and effect
/// (`tolerationSeconds` aside); an unset operator means `Equal`.
fn same_toleration(a: &Value, b: &Value) -> bool {
    let text = |v: &Value, key: &str| v[key].as_str().unwrap_or_default().to_string();
    let operator = |v: &Value| match v["operator"].as_str() {
        None | Some("") => "Equal".to_string(),
        Some(op) => op.to_string(),
    };
    text(a, "key") == text(b, "key")
        && operator(a) == operator(b)
        && text(a, "value") == text(b, "value")
        && text(a, "effect") == text(b, "effect")
}

/// Adds the default DaemonSet tolerations to a pod spec, replacing a matching one that
/// differs (upstream `AddOrUpdateTolerationInPodSpec`).
pub fn add_daemon_tolerations(spec: &mut Map<String, Value>) {
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    let mut tolerations: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    for wanted in default_tolerations(host_network) {
        match tolerations.iter().position(|t| same_toleration(t, &wanted)) {
            Some(i) => tolerations[i] = wanted,
            None => tolerations.push(wanted),
        }
    }
    spec.insert("tolerations".into(), Value::Array(tolerations));
}

/// The spec of the pod `ds` would run (upstream `NewPod` without the node name).
fn daemon_pod_spec(ds: &Value) -> Value {
    let mut spec = ds["spec"]["template"]["spec"].clone();
    if !spec.is_object() {
        spec = json!({});
    }
    if let Some(map) = spec.as_object_mut() {
        add_daemon_tolerations(map);
    }
    spec
}

/// Upstream `NodeShouldRunDaemonPod`.
pub fn node_should_run(node: &Value, ds: &Value) -> Eligibility {
    let node_name = node["metadata"]["name"].as_str().unwrap_or_default();
    let wanted_name = ds["spec"]["template"]["spec"]["nodeName"]
        .as_str()
        .unwrap_or_default();
    if !wanted_name.is_empty() && wanted_name != node_name {
        return Eligibility::default();
    }
    let pod = PodInfo::from_json(&json!({"spec": daemon_pod_spec(ds)}));
    let node = NodeInfo::from_json(node);
    if filters::node_affinity(&pod, &node).is_err() {
        return Eligibility::default();
    }
    let untolerated = |effects: &[TaintEffect]| {
        node.taints
            .iter()
            .any(|t| effects.contains(&t.effect) && !tolerated(&pod.tolerations, t))
    };
    if untolerated(&[TaintEffect::NoSchedule, TaintEffect::NoExecute]) {
        return Eligibility {
            should_run: false,
            should_continue: !untolerated(&[TaintEffect::NoExecute]),
        };
    }
    Eligibility {
        should_run: true,
        should_continue: true,
    }
}

/// The node affinity term that pins a pod to `node`.
fn node_name_term(node: &str) -> Value {
    json!({"matchFields": [{"key": OBJECT_NAME_FIELD, "operator": "In", "values": [node]}]})
}

/// Upstream `ReplaceDaemonSetPodNodeNameNodeAffinity`: the required node affinity of a
/// pod spec becomes the one term naming `node` (the template's own required terms were
/// already checked by `node_should_run`; preferred terms are kept).
pub fn pin_to_node(spec: &mut Map<String, Value>, node: &str) {
    let affinity = spec.entry("affinity").or_insert_with(|| json!({}));
    if !affinity.is_object() {
        *affinity = json!({});
    }
    let node_affinity = &mut affinity["nodeAffinity"];
    if !node_affinity.is_object() {
        *node_affinity = json!({});
    }
    let required = &mut node_affinity["requiredDuringSchedulingIgnoredDuringExecution"];
    if !required.is_object() {
        *required = json!({});
    }
    required["nodeSelectorTerms"] = json!([node_name_term(node)]);
}

/// The node a daemon pod runs on or is meant for (upstream `GetTargetNodeName`): its
/// `nodeName`, else the `metadata.name In [node]` term of its required node affinity.
pub fn target_node(pod: &Value) -> Option<String> {
    if let Some(name) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        return Some(name.to_string());
    }
    let terms = pod["spec"]["affinity"]["nodeAffinity"]
        ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
        .as_array()?;
    terms
        .iter()
        .flat_map(|t| t["matchFields"].as_array().into_iter().flatten())
        .find(|f| f["key"] == OBJECT_NAME_FIELD && f["operator"] == "In")
        .and_then(|f| match f["values"].as_array().map(Vec::as_slice) {
            Some([only]) => only.as_str().map(str::to_string),
            _ => None,
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ds(template_spec: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "i"}]});
        if let (Some(a), Value::Object(b)) = (spec.as_object_mut(), template_spec) {
            a.extend(b);
        }
        json!({"metadata": {"name": "agent"}, "spec": {"template": {"spec": spec}}})
    }

    fn node(name: &str, labels: Value, taints: Value) -> Value {
        json!({"metadata": {"name": name, "labels": labels}, "spec": {"taints": taints},
               "status": {"conditions": [{"type": "Ready", "status": "True"}]}})
    }

    const RUN: Eligibility = Eligibility {
        should_run: true,
        should_continue: true,
    };
    const NEVER: Eligibility = Eligibility {
        should_run: false,
        should_continue: false,
    };
    const KEEP_ONLY: Eligibility = Eligibility {
        should_run: false,
        should_continue: true,
    };

    #[test]
    fn node_selector_and_required_affinity_choose_nodes() {
        let selective = ds(json!({"nodeSelector": {"disk": "ssd"}}));
        assert_eq!(
            node_should_run(&node("a", json!({"disk": "ssd"}), json!([])), &selective),
            RUN
        );
        assert_eq!(
            node_should_run(&node("b", json!({"disk": "hdd"}), json!([])), &selective),
            NEVER
        );
        let affine = ds(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution":
            {"nodeSelectorTerms": [{"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]}}}}),
        );
        assert_eq!(
            node_should_run(&node("a", json!({"zone": "z1"}), json!([])), &affine),
            RUN
        );
        assert_eq!(
            node_should_run(&node("a", json!({"zone": "z2"}), json!([])), &affine),
            NEVER
        );
        let named = ds(json!({"nodeName": "a"}));
        assert_eq!(
            node_should_run(&node("a", json!({}), json!([])), &named),
            RUN
        );
        assert_eq!(
            node_should_run(&node("b", json!({}), json!([])), &named),
            NEVER
        );
    }

    #[test]
    fn taints_keep_new_pods_off_and_no_execute_evicts() {
        let plain = ds(json!({}));
        let no_schedule = json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]);
        let no_execute = json!([{"key": "dedicated", "value": "db", "effect": "NoExecute"}]);
        let prefer = json!([{"key": "dedicated", "value": "db", "effect": "PreferNoSchedule"}]);
        assert_eq!(
            node_should_run(&node("a", json!({}), no_schedule.clone()), &plain),
            KEEP_ONLY
        );
        assert_eq!(
            node_should_run(&node("a", json!({}), no_execute.clone()), &plain),
            NEVER
        );
        assert_eq!(node_should_run(&node("a", json!({}), prefer), &plain), RUN);
        let tolerant = ds(json!({"tolerations": [{"key": "dedicated", "operator": "Exists"}]}));
        assert_eq!(
            node_should_run(&node("a", json!({}), no_execute), &tolerant),
            RUN
        );
    }

    #[test]
    fn default_daemon_tolerations_cover_node_conditions() {
        let plain = ds(json!({}));
        for (key, effect) in [
            (TAINT_NOT_READY, "NoExecute"),
            (TAINT_UNREACHABLE, "NoExecute"),
            (TAINT_DISK_PRESSURE, "NoSchedule"),
            (TAINT_MEMORY_PRESSURE, "NoSchedule"),
            (TAINT_PID_PRESSURE, "NoSchedule"),
            (TAINT_UNSCHEDULABLE, "NoSchedule"),
        ] {
            let taints = json!([{"key": key, "effect": effect}]);
            assert_eq!(
                node_should_run(&node("a", json!({}), taints), &plain),
                RUN,
                "{key}"
            );
        }
        let network = json!([{"key": TAINT_NETWORK_UNAVAILABLE, "effect": "NoSchedule"}]);
        assert_eq!(
            node_should_run(&node("a", json!({}), network.clone()), &plain),
            KEEP_ONLY
        );
        let host = ds(json!({"hostNetwork": true}));
        assert_eq!(node_should_run(&node("a", json!({}), network), &host), RUN);
    }

    #[test]
    fn tolerations_are_added_once_and_matching_ones_replaced() {
        let mut spec = json!({"tolerations": [
            {"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
            {"key": "mine", "operator": "Exists"},
        ]});
        let map = spec.as_object_mut().unwrap();
        add_daemon_tolerations(map);
        add_daemon_tolerations(map);
        let tolerations = map["tolerations"].as_array().unwrap();
        assert_eq!(tolerations.len(), 7);
        assert_eq!(
            tolerations[0],
            json!({"key": TAINT_NOT_READY, "operator": "Exists", "effect": "NoExecute"})
        );
        assert_eq!(tolerations[1]["key"], "mine");
    }

    #[test]
    fn pods_are_pinned_by_node_affinity_and_found_by_it() {
        let mut spec = json!({"affinity": {
            "nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["z1"]}]}]},
                "preferredDuringSchedulingIgnoredDuringExecution": [{"weight": 1, "preference": {}}]},
            "podAntiAffinity": {}}});
        pin_to_node(spec.as_object_mut().unwrap(), "n2");
        assert_eq!(
            spec["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"],
            json!({"nodeSelectorTerms": [{"matchFields": [
                {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]})
        );
        assert!(spec["affinity"]["nodeAffinity"]
            ["preferredDuringSchedulingIgnoredDuringExecution"]
            .is_array());
        assert!(spec["affinity"]["podAntiAffinity"].is_object());
        assert_eq!(
            target_node(&json!({"spec": spec.clone()})),
            Some("n2".into())
        );
        let mut bare = json!({});
        pin_to_node(bare.as_object_mut().unwrap(), "n1");
        assert_eq!(target_node(&json!({"spec": bare})), Some("n1".into()));
        assert_eq!(
            target_node(&json!({"spec": {"nodeName": "n3", "affinity": spec["affinity"]}})),
            Some("n3".into())
        );
        assert_eq!(target_node(&json!({"spec": {}})), None);
    }
}
