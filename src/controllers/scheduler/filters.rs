//! Filters: whether a pod can run on a node, and why not, in upstream's words.

use std::collections::HashMap;
use std::fmt;

use super::info::{
    tolerated, NodeInfo, NodeUsage, PodInfo, Taint, TaintEffect, TAINT_NOT_READY,
    TAINT_UNSCHEDULABLE,
};

/// Why a node cannot take a pod. `Display` gives upstream's wording, which is what
/// users see counted in `FailedScheduling` events.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Reason {
    NotReady,
    Unschedulable,
    UntoleratedTaint {
        key: String,
        value: String,
    },
    NodeAffinity,
    HostPorts,
    TooManyPods,
    InsufficientCpu,
    InsufficientMemory,
    /// A bound claim's volume does not allow the node.
    VolumeNodeAffinityConflict,
    /// An unbound `WaitForFirstConsumer` claim has no volume and no provisioner there.
    NoVolumesToBind,
    /// The node lacks a topology label of the pod's `DoNotSchedule` spread constraints.
    SpreadMissingLabel,
    /// Placing the pod there would exceed a spread constraint's maxSkew.
    SpreadConstraints,
    /// The pod's required pod affinity is not satisfied there.
    PodAffinity,
    /// The pod's required pod anti-affinity is not satisfied there.
    PodAntiAffinity,
    /// A placed pod's required anti-affinity keeps the pod away.
    ExistingPodsAntiAffinity,
}

impl From<super::pod_affinity::AffinityFailure> for Reason {
    fn from(f: super::pod_affinity::AffinityFailure) -> Reason {
        use super::pod_affinity::AffinityFailure;
        match f {
            AffinityFailure::Affinity => Reason::PodAffinity,
            AffinityFailure::AntiAffinity => Reason::PodAntiAffinity,
            AffinityFailure::ExistingAntiAffinity => Reason::ExistingPodsAntiAffinity,
        }
    }
}

impl From<super::topology_spread::SpreadFailure> for Reason {
    fn from(f: super::topology_spread::SpreadFailure) -> Reason {
        use super::topology_spread::SpreadFailure;
        match f {
            SpreadFailure::MissingLabel => Reason::SpreadMissingLabel,
            SpreadFailure::Skew => Reason::SpreadConstraints,
        }
    }
}

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Reason::NotReady => f.write_str("node(s) were not ready"),
            Reason::Unschedulable => f.write_str("node(s) were unschedulable"),
            Reason::UntoleratedTaint { key, value } => {
                write!(f, "node(s) had untolerated taint {{{key}: {value}}}")
            }
            Reason::NodeAffinity => {
                f.write_str("node(s) didn't match Pod's node affinity/selector")
            }
            Reason::HostPorts => {
                f.write_str("node(s) didn't have free ports for the requested pod ports")
            }
            Reason::TooManyPods => f.write_str("Too many pods"),
            Reason::InsufficientCpu => f.write_str("Insufficient cpu"),
            Reason::InsufficientMemory => f.write_str("Insufficient memory"),
            Reason::VolumeNodeAffinityConflict => {
                f.write_str("node(s) had volume node affinity conflict")
            }
            Reason::NoVolumesToBind => {
                f.write_str("node(s) didn't find available persistent volumes to bind")
            }
            Reason::SpreadMissingLabel => f.write_str(
                "node(s) didn't match pod topology spread constraints (missing required label)",
            ),
            Reason::SpreadConstraints => {
                f.write_str("node(s) didn't match pod topology spread constraints")
            }
            Reason::PodAffinity => f.write_str("node(s) didn't match pod affinity rules"),
            Reason::PodAntiAffinity => f.write_str("node(s) didn't match pod anti-affinity rules"),
            Reason::ExistingPodsAntiAffinity => {
                f.write_str("node(s) didn't satisfy existing pods anti-affinity rules")
            }
        }
    }
}

/// Whether `pod` fits `node` given what is already placed there (`usage`). Checks run in
/// upstream's plugin order and stop at the first failing one; the resource check
/// reports every insufficient resource.
pub fn can_schedule(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> Result<(), Vec<Reason>> {
    node_ready(pod, node)
        .and_then(|()| node_schedulable(pod, node))
        .and_then(|()| taints_tolerated(pod, node))
        .and_then(|()| node_affinity(pod, node))
        .and_then(|()| host_ports_free(pod, usage))
        .map_err(|r| vec![r])?;
    resources_fit(pod, node, usage)
}

/// The node's `Ready` condition is `True`, unless the pod tolerates the not-ready taint
/// (as DaemonSet pods do).
pub fn node_ready(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    let taint = Taint {
        key: TAINT_NOT_READY.to_string(),
        value: String::new(),
        effect: TaintEffect::NoSchedule,
    };
    if node.ready || tolerated(&pod.tolerations, &taint) {
        Ok(())
    } else {
        Err(Reason::NotReady)
    }
}

/// The node is not cordoned, unless the pod tolerates the unschedulable taint.
pub fn node_schedulable(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    let taint = Taint {
        key: TAINT_UNSCHEDULABLE.to_string(),
        value: String::new(),
        effect: TaintEffect::NoSchedule,
    };
    if !node.unschedulable || tolerated(&pod.tolerations, &taint) {
        Ok(())
    } else {
        Err(Reason::Unschedulable)
    }
}

/// Every `NoSchedule` and `NoExecute` taint is tolerated (`PreferNoSchedule` only scores).
pub fn taints_tolerated(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    match node.taints.iter().find(|t| {
        matches!(t.effect, TaintEffect::NoSchedule | TaintEffect::NoExecute)
            && !tolerated(&pod.tolerations, t)
    }) {
        None => Ok(()),
        Some(t) => Err(Reason::UntoleratedTaint {
            key: t.key.clone(),
            value: t.value.clone(),
        }),
    }
}

/// `nodeSelector` labels all match, and some required node-affinity term matches.
pub fn node_affinity(pod: &PodInfo, node: &NodeInfo) -> Result<(), Reason> {
    let selector_ok = pod
        .node_selector
        .iter()
        .all(|(k, v)| node.labels.get(k).and_then(|l| l.as_str()) == Some(v.as_str()));
    let affinity_ok = pod
        .required_terms
        .as_ref()
        .is_none_or(|terms| terms.iter().any(|t| t.matches(node)));
    if selector_ok && affinity_ok {
        Ok(())
    } else {
        Err(Reason::NodeAffinity)
    }
}

/// None of the pod's host ports is taken on the node.
pub fn host_ports_free(pod: &PodInfo, usage: &NodeUsage) -> Result<(), Reason> {
    let clash = pod
        .host_ports
        .iter()
        .any(|want| usage.host_ports.iter().any(|have| have.conflicts(want)));
    if clash {
        Err(Reason::HostPorts)
    } else {
        Ok(())
    }
}

/// Requests fit in allocatable minus what is already placed (upstream `NodeResourcesFit`:
/// a resource the pod does not request is not checked, except the pod count).
pub fn resources_fit(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> Result<(), Vec<Reason>> {
    let free = node.allocatable - usage.requested;
    let mut reasons = Vec::new();
    if pod.requests.pods > free.pods {
        reasons.push(Reason::TooManyPods);
    }
    if pod.requests.milli_cpu > 0 && pod.requests.milli_cpu > free.milli_cpu {
        reasons.push(Reason::InsufficientCpu);
    }
    if pod.requests.memory > 0 && pod.requests.memory > free.memory {
        reasons.push(Reason::InsufficientMemory);
    }
    if reasons.is_empty() {
        Ok(())
    } else {
        Err(reasons)
    }
}

/// The message of a pod that fits nowhere, as upstream's `FitError` words it:
/// `0/3 nodes are available: 2 Insufficient memory, 1 node(s) had untolerated taint
/// {node.kubernetes.io/unreachable: }. preemption: 0/3 nodes are available: 3
/// Preemption is not helpful for scheduling.` Reasons are ordered by count (most
/// frequent first), then alphabetically. There is no preemption, hence the last part.
pub fn fit_error(total_nodes: usize, reasons: &HashMap<Reason, usize>) -> String {
    if total_nodes == 0 {
        return "no nodes available to schedule pods".to_string();
    }
    let mut counted: Vec<(usize, String)> =
        reasons.iter().map(|(r, n)| (*n, r.to_string())).collect();
    counted.sort_by(|a, b| b.0.cmp(&a.0).then_with(|| a.1.cmp(&b.1)));
    let histogram = counted
        .iter()
        .map(|(n, r)| format!("{n} {r}"))
        .collect::<Vec<_>>()
        .join(", ");
    format!(
        "0/{total_nodes} nodes are available: {histogram}. preemption: 0/{total_nodes} nodes are \
         available: {total_nodes} Preemption is not helpful for scheduling."
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(extra: Value) -> NodeInfo {
        let mut n = json!({
            "metadata": {"name": "node1", "labels": {"disk": "ssd", "gen": "5"}},
            "spec": {},
            "status": {"allocatable": {"cpu": "2", "memory": "4Gi", "pods": "3"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        });
        merge(&mut n, extra);
        NodeInfo::from_json(&n)
    }

    fn pod(spec: Value) -> PodInfo {
        let mut p = json!({"spec": {"containers": [{"name": "c"}]}});
        merge(&mut p["spec"], spec);
        PodInfo::from_json(&p)
    }

    fn merge(into: &mut Value, from: Value) {
        if let (Some(a), Value::Object(b)) = (into.as_object_mut(), from) {
            for (k, v) in b {
                match a.get_mut(&k) {
                    Some(existing) if existing.is_object() && v.is_object() => merge(existing, v),
                    _ => {
                        a.insert(k, v);
                    }
                }
            }
        }
    }

    fn requesting(cpu: &str, memory: &str) -> PodInfo {
        pod(
            json!({"containers": [{"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}),
        )
    }

    #[test]
    fn a_ready_node_with_room_takes_a_plain_pod() {
        assert_eq!(
            can_schedule(&pod(json!({})), &node(json!({})), &NodeUsage::default()),
            Ok(())
        );
    }

    #[test]
    fn a_not_ready_node_is_refused_unless_the_pod_tolerates_it() {
        let n = node(json!({"status": {"conditions": [{"type": "Ready", "status": "False"}]}}));
        assert_eq!(
            can_schedule(&pod(json!({})), &n, &NodeUsage::default()),
            Err(vec![Reason::NotReady])
        );
        let tolerant =
            pod(json!({"tolerations": [{"key": TAINT_NOT_READY, "operator": "Exists"}]}));
        assert_eq!(can_schedule(&tolerant, &n, &NodeUsage::default()), Ok(()));
    }

    #[test]
    fn a_cordoned_node_is_refused() {
        let n = node(json!({"spec": {"unschedulable": true}}));
        assert_eq!(
            node_schedulable(&pod(json!({})), &n),
            Err(Reason::Unschedulable)
        );
        let tolerant = pod(
            json!({"tolerations": [{"key": TAINT_UNSCHEDULABLE, "operator": "Exists", "effect": "NoSchedule"}]}),
        );
        assert_eq!(node_schedulable(&tolerant, &n), Ok(()));
    }

    #[test]
    fn requests_must_fit_what_is_left_of_allocatable() {
        let n = node(json!({}));
        let mut usage = NodeUsage::default();
        usage.add(&requesting("1500m", "3Gi"));
        assert_eq!(
            resources_fit(&requesting("500m", "1Gi"), &n, &usage),
            Ok(())
        );
        assert_eq!(
            resources_fit(&requesting("600m", "2Gi"), &n, &usage),
            Err(vec![Reason::InsufficientCpu, Reason::InsufficientMemory])
        );
        // A pod asking for nothing still takes a pod slot.
        usage.add(&pod(json!({})));
        usage.add(&pod(json!({})));
        assert_eq!(
            resources_fit(&pod(json!({})), &n, &usage),
            Err(vec![Reason::TooManyPods])
        );
    }

    #[test]
    fn taints_need_tolerations_except_prefer_no_schedule() {
        let n = node(json!({"spec": {"taints": [
            {"key": "dedicated", "value": "db", "effect": "NoSchedule"},
            {"key": "soft", "effect": "PreferNoSchedule"},
        ]}}));
        assert_eq!(
            taints_tolerated(&pod(json!({})), &n),
            Err(Reason::UntoleratedTaint {
                key: "dedicated".into(),
                value: "db".into()
            })
        );
        let equal = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Equal", "value": "db", "effect": "NoSchedule"}]}),
        );
        assert_eq!(taints_tolerated(&equal, &n), Ok(()));
        let wrong_value = pod(json!({"tolerations": [{"key": "dedicated", "value": "web"}]}));
        assert!(taints_tolerated(&wrong_value, &n).is_err());
        let wrong_effect = pod(
            json!({"tolerations": [{"key": "dedicated", "operator": "Exists", "effect": "NoExecute"}]}),
        );
        assert!(taints_tolerated(&wrong_effect, &n).is_err());
        let everything = pod(json!({"tolerations": [{"operator": "Exists"}]}));
        assert_eq!(taints_tolerated(&everything, &n), Ok(()));
        let no_execute = node(
            json!({"spec": {"taints": [{"key": "node.kubernetes.io/unreachable", "effect": "NoExecute"}]}}),
        );
        assert_eq!(
            taints_tolerated(&pod(json!({})), &no_execute)
                .unwrap_err()
                .to_string(),
            "node(s) had untolerated taint {node.kubernetes.io/unreachable: }"
        );
    }

    #[test]
    fn node_selector_labels_must_all_match() {
        let n = node(json!({}));
        assert_eq!(
            node_affinity(&pod(json!({"nodeSelector": {"disk": "ssd"}})), &n),
            Ok(())
        );
        assert_eq!(
            node_affinity(
                &pod(json!({"nodeSelector": {"disk": "ssd", "zone": "a"}})),
                &n
            ),
            Err(Reason::NodeAffinity)
        );
    }

    fn required(terms: Value) -> PodInfo {
        pod(
            json!({"affinity": {"nodeAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}}}),
        )
    }

    #[test]
    fn required_node_affinity_operators() {
        let n = node(json!({}));
        let ok = |terms: Value| node_affinity(&required(terms), &n).is_ok();
        assert!(ok(
            json!([{"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd", "ssd"]}]}])
        ));
        assert!(!ok(
            json!([{"matchExpressions": [{"key": "disk", "operator": "NotIn", "values": ["ssd"]}]}])
        ));
        assert!(ok(
            json!([{"matchExpressions": [{"key": "zone", "operator": "NotIn", "values": ["a"]}]}])
        ));
        assert!(ok(
            json!([{"matchExpressions": [{"key": "disk", "operator": "Exists"}]}])
        ));
        assert!(ok(
            json!([{"matchExpressions": [{"key": "zone", "operator": "DoesNotExist"}]}])
        ));
        assert!(ok(
            json!([{"matchExpressions": [{"key": "gen", "operator": "Gt", "values": ["4"]}]}])
        ));
        assert!(!ok(
            json!([{"matchExpressions": [{"key": "gen", "operator": "Lt", "values": ["5"]}]}])
        ));
        assert!(!ok(
            json!([{"matchExpressions": [{"key": "disk", "operator": "Gt", "values": ["1"]}]}])
        ));
        assert!(ok(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["node1"]}]}])
        ));
        assert!(!ok(
            json!([{"matchFields": [{"key": "metadata.name", "operator": "NotIn", "values": ["node1"]}]}])
        ));
        // Terms are ORed, requirements within a term ANDed; an empty term matches nothing.
        assert!(ok(json!([
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["hdd"]}]},
            {"matchExpressions": [{"key": "disk", "operator": "In", "values": ["ssd"]}, {"key": "gen", "operator": "Exists"}]},
        ])));
        assert!(!ok(json!([{"matchExpressions": [
            {"key": "disk", "operator": "In", "values": ["ssd"]}, {"key": "zone", "operator": "Exists"}]}])));
        assert!(!ok(json!([{}])));
        assert!(!ok(json!([])));
    }

    #[test]
    fn host_ports_clash_with_ports_already_taken() {
        let web = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080}]}]}),
        );
        let mut usage = NodeUsage::default();
        assert_eq!(host_ports_free(&web, &usage), Ok(()));
        usage.add(&web);
        assert_eq!(host_ports_free(&web, &usage), Err(Reason::HostPorts));
        let udp = pod(
            json!({"containers": [{"name": "c", "ports": [{"containerPort": 80, "hostPort": 8080, "protocol": "UDP"}]}]}),
        );
        assert_eq!(host_ports_free(&udp, &usage), Ok(()));
    }

    #[test]
    fn filters_stop_at_the_first_failing_check() {
        let n = node(
            json!({"spec": {"unschedulable": true, "taints": [{"key": "x", "effect": "NoSchedule"}]}}),
        );
        assert_eq!(
            can_schedule(&requesting("10", "10Gi"), &n, &NodeUsage::default()),
            Err(vec![Reason::Unschedulable])
        );
    }

    #[test]
    fn fit_error_counts_reasons_like_upstream() {
        let mut reasons = HashMap::new();
        reasons.insert(Reason::InsufficientMemory, 2);
        reasons.insert(
            Reason::UntoleratedTaint {
                key: "node.kubernetes.io/unreachable".into(),
                value: String::new(),
            },
            1,
        );
        assert_eq!(
            fit_error(3, &reasons),
            "0/3 nodes are available: 2 Insufficient memory, 1 node(s) had untolerated taint \
             {node.kubernetes.io/unreachable: }. preemption: 0/3 nodes are available: 3 \
             Preemption is not helpful for scheduling."
        );
        assert_eq!(
            fit_error(0, &HashMap::new()),
            "no nodes available to schedule pods"
        );
    }
}
