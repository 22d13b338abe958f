//! A pod's own `topologySpreadConstraints`, as upstream's PodTopologySpread plugin:
//! `DoNotSchedule` constraints filter nodes (a node whose domain would be more than
//! `maxSkew` ahead of the least crowded eligible domain, counting `minDomains`), and
//! `ScheduleAnyway` ones score them; a pod with constraints of its own is not spread by
//! the system defaults ([`super::spread`]). Pure: the per-node counts of each
//! constraint's selector come from the cache's incrementally kept spread groups.

use std::collections::{HashMap, HashSet};

use serde_json::{json, Map, Value};

use super::filters::{node_affinity, taints_tolerated};
use super::info::{NodeInfo, PodInfo};
use super::spread::HOSTNAME_KEY;
use crate::api::object;
use crate::api::selector::LabelSelector;

/// Upstream `MaxNodeScore`.
const MAX_NODE_SCORE: i64 = 100;

/// One `TopologySpreadConstraint`, with `matchLabelKeys` folded into its selector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpreadConstraint {
    pub max_skew: i64,
    pub topology_key: String,
    /// `whenUnsatisfiable: DoNotSchedule` (a filter); otherwise a score.
    pub hard: bool,
    /// `None`: no `labelSelector`, which selects no pod (upstream).
    pub selector: Option<LabelSelector>,
    pub min_domains: Option<i64>,
    /// `nodeAffinityPolicy: Honor` (the default): only nodes the pod's node selector
    /// and required node affinity allow count.
    pub honor_node_affinity: bool,
    /// `nodeTaintsPolicy: Honor` (default Ignore): only nodes whose taints the pod
    /// tolerates count.
    pub honor_taints: bool,
}

impl SpreadConstraint {
    /// Whether the constraint counts a pod with these labels (of the pod's namespace).
    pub fn selects(&self, labels: Option<&Map<String, Value>>) -> bool {
        self.selector.as_ref().is_some_and(|s| s.matches(labels))
    }

    /// Whether pods on `node` count for the constraint.
    fn eligible(&self, pod: &PodInfo, node: &NodeInfo) -> bool {
        (!self.honor_node_affinity || node_affinity(pod, node).is_ok())
            && (!self.honor_taints || taints_tolerated(pod, node).is_ok())
    }
}

/// The pod's constraints (empty for the common pod without any).
pub fn constraints_of(pod: &Value) -> Vec<SpreadConstraint> {
    let Some(list) = pod["spec"]["topologySpreadConstraints"].as_array() else {
        return Vec::new();
    };
    let labels = object::labels(pod);
    list.iter()
        .map(|c| {
            let mut selector = c.get("labelSelector").filter(|s| s.is_object()).cloned();
            if let Some(sel) = selector.as_mut() {
                let exprs: Vec<Value> = c["matchLabelKeys"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(Value::as_str)
                    .filter_map(|k| {
                        let v = labels?.get(k)?.as_str()?;
                        Some(json!({"key": k, "operator": "In", "values": [v]}))
                    })
                    .collect();
                if !exprs.is_empty() {
                    match sel["matchExpressions"].as_array_mut() {
                        Some(a) => a.extend(exprs),
                        None => sel["matchExpressions"] = Value::Array(exprs),
                    }
                }
            }
            SpreadConstraint {
                max_skew: c["maxSkew"].as_i64().unwrap_or(1).max(1),
                topology_key: c["topologyKey"].as_str().unwrap_or("").to_string(),
                hard: c["whenUnsatisfiable"].as_str() != Some("ScheduleAnyway"),
                selector: selector.and_then(|s| LabelSelector::from_k8s(&s).ok()),
                min_domains: c["minDomains"].as_i64(),
                honor_node_affinity: c["nodeAffinityPolicy"].as_str() != Some("Ignore"),
                honor_taints: c["nodeTaintsPolicy"].as_str() == Some("Honor"),
            }
        })
        .collect()
}

/// Why a node fails the filter, in upstream's words.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SpreadFailure {
    /// The node lacks a constraint's topology label.
    MissingLabel,
    /// Placing the pod there would exceed a constraint's maxSkew.
    Skew,
}

/// Per-node counts of one constraint's pods (by the cache's node index).
pub type NodeCounts<'a> = &'a dyn Fn(usize) -> u32;

/// One hard constraint's PreFilter state: pods per domain over the eligible nodes and
/// the smallest domain count (0 while there are fewer domains than `minDomains`).
#[derive(Debug)]
struct HardState<'c> {
    constraint: &'c SpreadConstraint,
    per_domain: HashMap<String, u64>,
    min: u64,
    self_match: u64,
}

/// Upstream's PreFilter state over all the pod's `DoNotSchedule` constraints.
#[derive(Debug, Default)]
pub struct SpreadFilter<'c> {
    hard: Vec<HardState<'c>>,
}

impl<'c> SpreadFilter<'c> {
    /// `nodes`: every known node with its index; `counts[i]`: the per-node counts of
    /// constraint `i` (hard ones read only).
    pub fn new<'n>(
        pod: &PodInfo,
        pod_labels: Option<&Map<String, Value>>,
        constraints: &'c [SpreadConstraint],
        nodes: &[(usize, &'n NodeInfo)],
        counts: &[NodeCounts<'_>],
    ) -> SpreadFilter<'c> {
        let hard: Vec<(usize, &SpreadConstraint)> = constraints
            .iter()
            .enumerate()
            .filter(|(_, c)| c.hard)
            .collect();
        let mut states = Vec::new();
        for &(ci, c) in &hard {
            let mut per_domain: HashMap<String, u64> = HashMap::new();
            for &(i, node) in nodes {
                // Upstream counts only nodes carrying every hard constraint's key.
                let has_all_keys = hard
                    .iter()
                    .all(|(_, h)| node.labels.contains_key(&h.topology_key));
                if !has_all_keys || !c.eligible(pod, node) {
                    continue;
                }
                let Some(value) = node.labels.get(&c.topology_key).and_then(Value::as_str) else {
                    continue;
                };
                *per_domain.entry(value.to_string()).or_default() += u64::from(counts[ci](i));
            }
            let mut min = per_domain.values().copied().min().unwrap_or(0);
            if c.min_domains.is_some_and(|m| (per_domain.len() as i64) < m) {
                min = 0;
            }
            states.push(HardState {
                constraint: c,
                per_domain,
                min,
                self_match: u64::from(c.selects(pod_labels)),
            });
        }
        SpreadFilter { hard: states }
    }

    pub fn is_empty(&self) -> bool {
        self.hard.is_empty()
    }

    /// Upstream `Filter`.
    pub fn check(&self, node: &NodeInfo) -> Result<(), SpreadFailure> {
        for s in &self.hard {
            let Some(value) = node
                .labels
                .get(&s.constraint.topology_key)
                .and_then(Value::as_str)
            else {
                return Err(SpreadFailure::MissingLabel);
            };
            let matching = s.per_domain.get(value).copied().unwrap_or(0) + s.self_match;
            if matching as i64 - s.min as i64 > s.constraint.max_skew {
                return Err(SpreadFailure::Skew);
            }
        }
        Ok(())
    }
}

/// Upstream `topologyNormalizingWeight`.
fn normalizing_weight(domains: usize) -> f64 {
    ((domains + 2) as f64).ln()
}

/// Upstream's PreScore + Score + NormalizeScore for the `ScheduleAnyway` constraints,
/// over the feasible nodes `feasible` (cache index, node): a score in 0..=100 per
/// feasible node, or `None` when the pod has no such constraint. Nodes lacking a
/// constraint's key get 0. `all` is every known node (domains other than hostnames
/// count the pods of every eligible node).
pub fn soft_scores<'n>(
    pod: &PodInfo,
    constraints: &[SpreadConstraint],
    feasible: &[(usize, &'n NodeInfo)],
    all: &[(usize, &'n NodeInfo)],
    counts: &[NodeCounts<'_>],
) -> Option<Vec<i64>> {
    let soft: Vec<(usize, &SpreadConstraint)> = constraints
        .iter()
        .enumerate()
        .filter(|(_, c)| !c.hard)
        .collect();
    if soft.is_empty() {
        return None;
    }
    let has_all_keys = |node: &NodeInfo| {
        soft.iter()
            .all(|(_, c)| node.labels.contains_key(&c.topology_key))
    };
    let domain = |c: &SpreadConstraint, node: &'n NodeInfo| -> Option<&'n str> {
        node.labels.get(&c.topology_key).and_then(Value::as_str)
    };
    let mut per_constraint: Vec<(f64, HashMap<&str, u64>)> = Vec::new();
    for &(ci, c) in &soft {
        let domains: HashSet<&str> = feasible
            .iter()
            .filter(|(_, n)| has_all_keys(n))
            .filter_map(|(_, n)| domain(c, n))
            .collect();
        let mut per_domain: HashMap<&str, u64> = HashMap::new();
        if c.topology_key != HOSTNAME_KEY {
            for &(i, node) in all {
                if !has_all_keys(node) || !c.eligible(pod, node) {
                    continue;
                }
                if let Some(value) = domain(c, node).filter(|v| domains.contains(v)) {
                    *per_domain.entry(value).or_default() += u64::from(counts[ci](i));
                }
            }
        }
        per_constraint.push((normalizing_weight(domains.len()), per_domain));
    }
    let raw: Vec<Option<i64>> = feasible
        .iter()
        .map(|&(i, node)| {
            if !has_all_keys(node) {
                return None;
            }
            let mut score = 0.0;
            for (&(ci, c), (weight, per_domain)) in soft.iter().zip(&per_constraint) {
                let count = if c.topology_key == HOSTNAME_KEY {
                    u64::from(counts[ci](i))
                } else {
                    domain(c, node)
                        .and_then(|v| per_domain.get(v))
                        .copied()
                        .unwrap_or(0)
                };
                score += count as f64 * weight + (c.max_skew - 1) as f64;
            }
            Some(score.round() as i64)
        })
        .collect();
    let scored = raw.iter().flatten();
    let min = scored.clone().copied().min().unwrap_or(0);
    let max = scored.copied().max().unwrap_or(0);
    Some(
        raw.iter()
            .map(|s| match s {
                None => 0,
                Some(_) if max == 0 => MAX_NODE_SCORE,
                Some(s) => MAX_NODE_SCORE * (max + min - s) / max,
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::scheduler::spread::ZONE_KEY;

    fn node(name: &str, zone: Option<&str>) -> NodeInfo {
        let mut labels = json!({HOSTNAME_KEY: name});
        if let Some(z) = zone {
            labels[ZONE_KEY] = json!(z);
        }
        NodeInfo::from_json(&json!({"metadata": {"name": name, "labels": labels}}))
    }

    fn pod(constraints: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns", "labels": {"app": "web", "rev": "2"}},
               "spec": {"topologySpreadConstraints": constraints}})
    }

    fn constraint(key: &str, skew: i64, when: &str) -> Value {
        json!({"maxSkew": skew, "topologyKey": key, "whenUnsatisfiable": when,
               "labelSelector": {"matchLabels": {"app": "web"}}})
    }

    #[test]
    fn constraints_parse_with_upstreams_defaults() {
        let mut c = constraint(ZONE_KEY, 2, "DoNotSchedule");
        c["matchLabelKeys"] = json!(["rev"]);
        c["minDomains"] = json!(3);
        let parsed = constraints_of(&pod(json!([
            c,
            constraint(HOSTNAME_KEY, 1, "ScheduleAnyway")
        ])));
        assert_eq!(parsed.len(), 2);
        assert!(parsed[0].hard && !parsed[1].hard);
        assert_eq!(parsed[0].min_domains, Some(3));
        assert!(parsed[0].honor_node_affinity && !parsed[0].honor_taints);
        let v1 = json!({"app": "web", "rev": "1"});
        let v2 = json!({"app": "web", "rev": "2"});
        assert!(
            !parsed[0].selects(v1.as_object()),
            "matchLabelKeys pins rev"
        );
        assert!(parsed[0].selects(v2.as_object()));
        assert!(parsed[1].selects(v1.as_object()));
        assert!(constraints_of(&json!({"spec": {}})).is_empty());
    }

    #[test]
    fn do_not_schedule_keeps_the_skew_within_max_skew() {
        let nodes = [node("n1", None), node("n2", None), node("n3", None)];
        let indexed: Vec<(usize, &NodeInfo)> = nodes.iter().enumerate().collect();
        let p = pod(json!([constraint(HOSTNAME_KEY, 1, "DoNotSchedule")]));
        let constraints = constraints_of(&p);
        let info = PodInfo::from_json(&p);
        let per_node = [1u32, 1, 0];
        let counts = |i: usize| per_node[i];
        let f = SpreadFilter::new(
            &info,
            object::labels(&p),
            &constraints,
            &indexed,
            &[&counts],
        );
        // min 0 (n3): 1 + 1 - 0 = 2 > 1 on n1 and n2.
        assert_eq!(f.check(&nodes[0]), Err(SpreadFailure::Skew));
        assert_eq!(f.check(&nodes[1]), Err(SpreadFailure::Skew));
        assert_eq!(f.check(&nodes[2]), Ok(()));
        let bare = NodeInfo::from_json(&json!({"metadata": {"name": "bare"}}));
        assert_eq!(f.check(&bare), Err(SpreadFailure::MissingLabel));
    }

    #[test]
    fn min_domains_counts_missing_domains_as_empty() {
        let nodes = [node("a1", Some("a")), node("b1", Some("b"))];
        let indexed: Vec<(usize, &NodeInfo)> = nodes.iter().enumerate().collect();
        let mut c = constraint(ZONE_KEY, 1, "DoNotSchedule");
        c["minDomains"] = json!(3);
        let p = pod(json!([c]));
        let constraints = constraints_of(&p);
        let info = PodInfo::from_json(&p);
        let per_node = [1u32, 1];
        let counts = |i: usize| per_node[i];
        let f = SpreadFilter::new(
            &info,
            object::labels(&p),
            &constraints,
            &indexed,
            &[&counts],
        );
        // Two domains of three: the global minimum is 0, so 1 + 1 - 0 > 1 everywhere.
        assert_eq!(f.check(&nodes[0]), Err(SpreadFailure::Skew));
        assert_eq!(f.check(&nodes[1]), Err(SpreadFailure::Skew));
        let p = pod(json!([constraint(ZONE_KEY, 1, "DoNotSchedule")]));
        let constraints = constraints_of(&p);
        let f = SpreadFilter::new(
            &info,
            object::labels(&p),
            &constraints,
            &indexed,
            &[&counts],
        );
        assert_eq!(f.check(&nodes[0]), Ok(()));
    }

    #[test]
    fn node_affinity_policy_decides_which_nodes_count() {
        let nodes = [node("n1", None), node("n2", None)];
        let indexed: Vec<(usize, &NodeInfo)> = nodes.iter().enumerate().collect();
        let mut p = pod(json!([constraint(HOSTNAME_KEY, 1, "DoNotSchedule")]));
        p["spec"]["nodeSelector"] = json!({HOSTNAME_KEY: "n1"});
        let info = PodInfo::from_json(&p);
        let per_node = [3u32, 0];
        let counts = |i: usize| per_node[i];
        // Honor: n2 is not eligible, so n1 is compared with itself only.
        let constraints = constraints_of(&p);
        let f = SpreadFilter::new(
            &info,
            object::labels(&p),
            &constraints,
            &indexed,
            &[&counts],
        );
        assert_eq!(f.check(&nodes[0]), Ok(()));
        // Ignore: n2's empty domain counts, 3 + 1 - 0 > 1.
        let mut c = constraint(HOSTNAME_KEY, 1, "DoNotSchedule");
        c["nodeAffinityPolicy"] = json!("Ignore");
        p["spec"]["topologySpreadConstraints"] = json!([c]);
        let constraints = constraints_of(&p);
        let f = SpreadFilter::new(
            &info,
            object::labels(&p),
            &constraints,
            &indexed,
            &[&counts],
        );
        assert_eq!(f.check(&nodes[0]), Err(SpreadFailure::Skew));
    }

    #[test]
    fn schedule_anyway_prefers_the_emptier_domains() {
        let nodes = [
            node("a1", Some("a")),
            node("a2", Some("a")),
            node("b1", Some("b")),
            node("x", None),
        ];
        let indexed: Vec<(usize, &NodeInfo)> = nodes.iter().enumerate().collect();
        let p = pod(json!([constraint(ZONE_KEY, 1, "ScheduleAnyway")]));
        let constraints = constraints_of(&p);
        let info = PodInfo::from_json(&p);
        let per_node = [2u32, 1, 1, 5];
        let counts = |i: usize| per_node[i];
        let scores = soft_scores(&info, &constraints, &indexed, &indexed, &[&counts]).unwrap();
        // Zone a holds 3, zone b 1: b1 scores best; x lacks the key and gets 0.
        assert!(scores[2] > scores[0], "{scores:?}");
        assert_eq!(scores[0], scores[1]);
        assert_eq!(scores[3], 0);
        assert_eq!(scores[2], 100);
        // Only hard constraints: no score from this plugin.
        let hard = constraints_of(&pod(json!([constraint(ZONE_KEY, 1, "DoNotSchedule")])));
        assert!(soft_scores(&info, &hard, &indexed, &indexed, &[&counts]).is_none());
    }
}
