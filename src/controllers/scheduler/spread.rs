//! Default spreading, as upstream's PodTopologySpread plugin scores a pod without
//! constraints of its own: the system-default constraints (`kubernetes.io/hostname`
//! maxSkew 3 and `topology.kubernetes.io/zone` maxSkew 5, both `ScheduleAnyway`) over
//! the pods matching the pod's default selector (upstream `helper.DefaultSelector`: the
//! selectors of the Services selecting it and of its controlling ReplicationController,
//! ReplicaSet or StatefulSet). Pure: the cache keeps the selectors ([`Workloads`]) and
//! the per-node counts of each selector's pods ([`SpreadGroups`]) up to date from watch
//! events, so scoring a node is a lookup, never a scan of its pods.

use std::collections::HashMap;

use serde_json::{Map, Value};

use super::filters::node_affinity;
use super::info::{NodeInfo, PodInfo};
use crate::api::object;
use crate::api::selector::LabelSelector;
use crate::store::EventType;

pub const HOSTNAME_KEY: &str = "kubernetes.io/hostname";
pub const ZONE_KEY: &str = "topology.kubernetes.io/zone";
/// Upstream `systemDefaultConstraints`: (topology key, maxSkew).
pub const SYSTEM_DEFAULT_CONSTRAINTS: [(&str, i64); 2] = [(HOSTNAME_KEY, 3), (ZONE_KEY, 5)];
/// Upstream `MaxNodeScore`.
const MAX_NODE_SCORE: i64 = 100;

/// The kinds whose selectors make up a pod's default selector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WorkloadKind {
    Service,
    ReplicationController,
    ReplicaSet,
    StatefulSet,
}

type ByNamespace = HashMap<String, HashMap<String, LabelSelector>>;

/// Selectors of Services, ReplicationControllers, ReplicaSets and StatefulSets, by
/// namespace then name. An object whose selector is empty or does not parse is not
/// kept (it contributes nothing, as upstream).
#[derive(Debug, Default)]
pub struct Workloads {
    services: ByNamespace,
    controllers: ByNamespace,
    replica_sets: ByNamespace,
    stateful_sets: ByNamespace,
}

impl Workloads {
    fn map_mut(&mut self, kind: WorkloadKind) -> &mut ByNamespace {
        match kind {
            WorkloadKind::Service => &mut self.services,
            WorkloadKind::ReplicationController => &mut self.controllers,
            WorkloadKind::ReplicaSet => &mut self.replica_sets,
            WorkloadKind::StatefulSet => &mut self.stateful_sets,
        }
    }

    /// Applies a watch event.
    pub fn on_event(&mut self, kind: WorkloadKind, event: EventType, obj: &Value) {
        let ns = object::namespace(obj).unwrap_or("").to_string();
        let name = object::name(obj).to_string();
        let selector = if event == EventType::Deleted {
            None
        } else {
            selector_of(kind, obj)
        };
        let in_ns = self.map_mut(kind).entry(ns.clone()).or_default();
        match selector {
            Some(s) => {
                in_ns.insert(name, s);
            }
            None => {
                in_ns.remove(&name);
                if in_ns.is_empty() {
                    self.map_mut(kind).remove(&ns);
                }
            }
        }
    }

    /// Upstream `DefaultSelector`: the requirements of every Service selecting the pod,
    /// plus those of its controller when that is a ReplicationController, ReplicaSet or
    /// StatefulSet the cache knows. `None` when that leaves nothing to select by.
    pub fn default_selector(&self, pod: &Value) -> Option<LabelSelector> {
        let ns = object::namespace(pod).unwrap_or("");
        let labels = object::labels(pod);
        let mut selector = LabelSelector::everything();
        if let Some(services) = self.services.get(ns) {
            for s in services.values() {
                if s.matches(labels) {
                    selector = selector.and(s);
                }
            }
        }
        let owner = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|o| o["controller"].as_bool() == Some(true));
        if let Some(owner) = owner {
            let map = match (owner["apiVersion"].as_str(), owner["kind"].as_str()) {
                (Some("v1"), Some("ReplicationController")) => Some(&self.controllers),
                (Some("apps/v1"), Some("ReplicaSet")) => Some(&self.replica_sets),
                (Some("apps/v1"), Some("StatefulSet")) => Some(&self.stateful_sets),
                _ => None,
            };
            let found = map
                .and_then(|m| m.get(ns))
                .and_then(|m| m.get(owner["name"].as_str().unwrap_or("")));
            if let Some(s) = found {
                selector = selector.and(s);
            }
        }
        (!selector.is_empty()).then_some(selector)
    }
}

fn selector_of(kind: WorkloadKind, obj: &Value) -> Option<LabelSelector> {
    let sel = &obj["spec"]["selector"];
    let selector = match kind {
        WorkloadKind::Service | WorkloadKind::ReplicationController => {
            LabelSelector::from_map(sel.as_object()?)
        }
        WorkloadKind::ReplicaSet | WorkloadKind::StatefulSet => {
            if !sel.is_object() {
                return None;
            }
            LabelSelector::from_k8s(sel).ok()?
        }
    };
    (!selector.is_empty()).then_some(selector)
}

/// The placed pods of one namespace matching one selector, counted per node (by the
/// cache's node index).
#[derive(Debug)]
pub struct SpreadGroup {
    selector: LabelSelector,
    per_node: Vec<u32>,
    total: u64,
}

impl SpreadGroup {
    /// Pods of the group on the node with this index.
    pub fn on_node(&self, node: usize) -> u32 {
        self.per_node.get(node).copied().unwrap_or(0)
    }

    fn add(&mut self, node: usize) {
        if self.per_node.len() <= node {
            self.per_node.resize(node + 1, 0);
        }
        self.per_node[node] += 1;
        self.total += 1;
    }

    fn remove(&mut self, node: usize) {
        if let Some(n) = self.per_node.get_mut(node).filter(|n| **n > 0) {
            *n -= 1;
            self.total -= 1;
        }
    }
}

/// Every [`SpreadGroup`] some pod was scored with, by namespace then selector text.
/// A group is created (by one scan of the placed pods) the first time a pod needs it
/// and kept up to date as pods are placed and unplaced; it is dropped when its last pod
/// goes.
#[derive(Debug, Default)]
pub struct SpreadGroups {
    by_ns: HashMap<String, HashMap<String, SpreadGroup>>,
}

impl SpreadGroups {
    /// A pod with these labels was placed on (`added`) or removed from a node.
    pub fn on_placed(
        &mut self,
        ns: &str,
        labels: Option<&Map<String, Value>>,
        node: usize,
        added: bool,
    ) {
        let Some(groups) = self.by_ns.get_mut(ns) else {
            return;
        };
        groups.retain(|_, g| {
            if g.selector.matches(labels) {
                if added {
                    g.add(node);
                } else {
                    g.remove(node);
                    return g.total > 0;
                }
            }
            true
        });
        if groups.is_empty() {
            self.by_ns.remove(ns);
        }
    }

    /// The group of `selector` in `ns`, counted from `placed` (namespace, labels, node
    /// index of every placed pod) when it does not exist yet.
    pub fn group<'p>(
        &mut self,
        ns: &str,
        selector: &LabelSelector,
        placed: impl Iterator<Item = (&'p str, Option<&'p Map<String, Value>>, usize)>,
    ) -> &SpreadGroup {
        let groups = self.by_ns.entry(ns.to_string()).or_default();
        groups.entry(selector.to_string()).or_insert_with(|| {
            let mut g = SpreadGroup {
                selector: selector.clone(),
                per_node: Vec::new(),
                total: 0,
            };
            for (pod_ns, labels, node) in placed {
                if pod_ns == ns && selector.matches(labels) {
                    g.add(node);
                }
            }
            g
        })
    }

    /// How many groups are kept (diagnostics and tests).
    pub fn len(&self) -> usize {
        self.by_ns.values().map(HashMap::len).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.by_ns.is_empty()
    }
}

/// Pods of the group per zone, over the nodes the pod's node selector and required
/// affinity allow (upstream's `nodeAffinityPolicy: Honor`), for the zones of the
/// feasible nodes.
pub fn zone_counts<'a>(
    pod: &PodInfo,
    nodes: impl Iterator<Item = (usize, &'a NodeInfo)>,
    group: &SpreadGroup,
) -> HashMap<String, u64> {
    let mut counts: HashMap<String, u64> = HashMap::new();
    for (i, node) in nodes {
        let Some(zone) = node.labels.get(ZONE_KEY).and_then(Value::as_str) else {
            continue;
        };
        if node_affinity(pod, node).is_err() {
            continue;
        }
        *counts.entry(zone.to_string()).or_default() += u64::from(group.on_node(i));
    }
    counts
}

/// Upstream `topologyNormalizingWeight`: domains with more values weigh more.
fn normalizing_weight(domains: usize) -> f64 {
    ((domains + 2) as f64).ln()
}

/// Upstream `scoreForCount`: `maxSkew - 1` waters down small differences.
fn score_for_count(count: u64, max_skew: i64, weight: f64) -> f64 {
    count as f64 * weight + (max_skew - 1) as f64
}

/// Raw PodTopologySpread scores (upstream `Score`, lower is better) of the feasible
/// nodes for the system-default constraints: `host_counts[i]` pods of the group on
/// `nodes[i]`, `zone_counts` per zone. A node without a constraint's label gets nothing
/// for it.
pub fn default_spread_raw(
    nodes: &[&NodeInfo],
    host_counts: &[u32],
    zone_counts: &HashMap<String, u64>,
) -> Vec<i64> {
    let zones: std::collections::HashSet<&str> = nodes
        .iter()
        .filter_map(|n| n.labels.get(ZONE_KEY).and_then(Value::as_str))
        .collect();
    let host_weight = normalizing_weight(nodes.len());
    let zone_weight = normalizing_weight(zones.len());
    nodes
        .iter()
        .zip(host_counts)
        .map(|(node, &count)| {
            let mut score = 0.0;
            for (key, max_skew) in SYSTEM_DEFAULT_CONSTRAINTS {
                let Some(value) = node.labels.get(key).and_then(Value::as_str) else {
                    continue;
                };
                score += if key == HOSTNAME_KEY {
                    score_for_count(u64::from(count), max_skew, host_weight)
                } else {
                    let count = zone_counts.get(value).copied().unwrap_or(0);
                    score_for_count(count, max_skew, zone_weight)
                };
            }
            score.round() as i64
        })
        .collect()
}

/// Upstream `NormalizeScore`: the least crowded node gets 100, scaled by the spread
/// between the least and the most crowded.
pub fn normalize(raw: &[i64]) -> Vec<i64> {
    let min = raw.iter().copied().min().unwrap_or(0);
    let max = raw.iter().copied().max().unwrap_or(0);
    raw.iter()
        .map(|&s| {
            if max == 0 {
                MAX_NODE_SCORE
            } else {
                MAX_NODE_SCORE * (max + min - s) / max
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node(name: &str, zone: Option<&str>) -> NodeInfo {
        let mut labels = json!({HOSTNAME_KEY: name});
        if let Some(z) = zone {
            labels[ZONE_KEY] = json!(z);
        }
        NodeInfo::from_json(&json!({"metadata": {"name": name, "labels": labels}}))
    }

    fn pod(labels: Value, owner: Option<(&str, &str, &str)>) -> Value {
        let mut p = json!({"metadata": {"name": "p", "namespace": "ns", "labels": labels}});
        if let Some((api, kind, name)) = owner {
            p["metadata"]["ownerReferences"] = json!([
                {"apiVersion": api, "kind": kind, "name": name, "uid": "u", "controller": true}]);
        }
        p
    }

    fn workload(kind: &str, name: &str, selector: Value) -> Value {
        json!({"kind": kind, "metadata": {"name": name, "namespace": "ns"},
               "spec": {"selector": selector}})
    }

    #[test]
    fn the_default_selector_merges_services_and_the_controller() {
        let mut w = Workloads::default();
        w.on_event(
            WorkloadKind::Service,
            EventType::Added,
            &workload("Service", "web", json!({"app": "web"})),
        );
        w.on_event(
            WorkloadKind::Service,
            EventType::Added,
            &workload("Service", "other", json!({"app": "other"})),
        );
        w.on_event(
            WorkloadKind::ReplicaSet,
            EventType::Added,
            &workload(
                "ReplicaSet",
                "web-1",
                json!({"matchLabels": {"app": "web"},
                       "matchExpressions": [{"key": "hash", "operator": "In", "values": ["1"]}]}),
            ),
        );
        let owned = pod(
            json!({"app": "web", "hash": "1"}),
            Some(("apps/v1", "ReplicaSet", "web-1")),
        );
        assert_eq!(
            w.default_selector(&owned).unwrap().to_string(),
            "app=web,hash in (1)"
        );
        // A controller the cache does not know, or of another kind, adds nothing.
        let job = pod(json!({"app": "web"}), Some(("batch/v1", "Job", "j")));
        assert_eq!(w.default_selector(&job).unwrap().to_string(), "app=web");
        // Nothing selects or owns it: no default spreading.
        assert!(w.default_selector(&pod(json!({"x": "y"}), None)).is_none());
        // A deleted Service stops counting.
        w.on_event(
            WorkloadKind::Service,
            EventType::Deleted,
            &workload("Service", "web", json!({"app": "web"})),
        );
        assert!(w.default_selector(&job).is_none());
    }

    #[test]
    fn replication_controllers_and_stateful_sets_count_by_their_selectors() {
        let mut w = Workloads::default();
        w.on_event(
            WorkloadKind::ReplicationController,
            EventType::Added,
            &workload("ReplicationController", "rc", json!({"app": "rc"})),
        );
        w.on_event(
            WorkloadKind::StatefulSet,
            EventType::Added,
            &workload("StatefulSet", "db", json!({"matchLabels": {"app": "db"}})),
        );
        let rc_pod = pod(
            json!({"app": "rc"}),
            Some(("v1", "ReplicationController", "rc")),
        );
        assert_eq!(w.default_selector(&rc_pod).unwrap().to_string(), "app=rc");
        let db_pod = pod(json!({"app": "db"}), Some(("apps/v1", "StatefulSet", "db")));
        assert_eq!(w.default_selector(&db_pod).unwrap().to_string(), "app=db");
    }

    #[test]
    fn groups_count_matching_pods_per_node_and_go_with_their_last_pod() {
        let mut groups = SpreadGroups::default();
        let web = json!({"app": "web"});
        let other = json!({"app": "other"});
        let placed = [
            ("ns", web.as_object(), 0),
            ("ns", web.as_object(), 0),
            ("ns", other.as_object(), 1),
            ("elsewhere", web.as_object(), 1),
        ];
        let selector = LabelSelector::parse("app=web").unwrap();
        let g = groups.group("ns", &selector, placed.iter().copied());
        assert_eq!((g.on_node(0), g.on_node(1), g.on_node(7)), (2, 0, 0));
        groups.on_placed("ns", web.as_object(), 3, true);
        groups.on_placed("ns", other.as_object(), 3, true);
        let g = groups.group("ns", &selector, std::iter::empty());
        assert_eq!(g.on_node(3), 1);
        for node in [0, 0, 3] {
            groups.on_placed("ns", web.as_object(), node, false);
        }
        assert!(groups.is_empty(), "the last pod took its group along");
    }

    #[test]
    fn crowded_nodes_score_lower_and_the_skew_tolerance_waters_small_differences_down() {
        let nodes: Vec<NodeInfo> = (0..3).map(|i| node(&format!("n{i}"), None)).collect();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        // ln(5) = 1.609: counts 0, 1, 2 give 2, 3.6, 5.2 → 2, 4, 5.
        let raw = default_spread_raw(&refs, &[0, 1, 2], &HashMap::new());
        assert_eq!(raw, [2, 4, 5]);
        assert_eq!(normalize(&raw), [100, 60, 40]);
        // Nothing placed anywhere: every node is equally good.
        let raw = default_spread_raw(&refs, &[0, 0, 0], &HashMap::new());
        assert_eq!(normalize(&raw), [100, 100, 100]);
    }

    #[test]
    fn zones_add_their_own_counts() {
        let nodes = [
            node("a1", Some("a")),
            node("a2", Some("a")),
            node("b1", Some("b")),
        ];
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let zones = HashMap::from([("a".to_string(), 4u64), ("b".to_string(), 0)]);
        let raw = default_spread_raw(&refs, &[2, 2, 0], &zones);
        // host: 2*ln(5)+2 = 5.2; zone weight ln(4) = 1.386: a = 4*1.386+4 = 9.5, b = 4.
        assert_eq!(raw, [15, 15, 6]);
        let scores = normalize(&raw);
        assert!(scores[2] > scores[0]);
        // The zone counts honour the pod's node selector.
        let mut group = SpreadGroup {
            selector: LabelSelector::everything(),
            per_node: Vec::new(),
            total: 0,
        };
        for (i, n) in [(0, 3), (2, 1)] {
            for _ in 0..n {
                group.add(i);
            }
        }
        let anywhere = PodInfo::default();
        let counts = zone_counts(&anywhere, nodes.iter().enumerate(), &group);
        assert_eq!((counts["a"], counts["b"]), (3, 1));
        let pinned = PodInfo {
            node_selector: vec![(HOSTNAME_KEY.into(), "b1".into())],
            ..Default::default()
        };
        let counts = zone_counts(&pinned, nodes.iter().enumerate(), &group);
        assert_eq!(counts.get("a"), None);
        assert_eq!(counts["b"], 1);
    }

    #[test]
    fn a_thousand_replicas_land_ten_per_node_on_a_hundred_nodes() {
        let nodes: Vec<NodeInfo> = (0..100).map(|i| node(&format!("n{i}"), None)).collect();
        let refs: Vec<&NodeInfo> = nodes.iter().collect();
        let mut counts = vec![0u32; 100];
        for _ in 0..1000 {
            let scores = normalize(&default_spread_raw(&refs, &counts, &HashMap::new()));
            let best = (0..100).max_by_key(|&i| (scores[i], -(i as i64))).unwrap();
            counts[best] += 1;
        }
        assert!(counts.iter().all(|&c| c == 10), "{counts:?}");
    }
}
