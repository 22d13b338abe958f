//! Scores: how good a feasible node is for a pod (higher is better), with upstream's
//! default plugins and weights: NodeResourcesFit least-allocated (1),
//! NodeResourcesBalancedAllocation (1), PodTopologySpread with the system-default
//! constraints (2, see [`super::spread`]) or the pod's own `ScheduleAnyway` constraints
//! (2, see [`super::topology_spread`]), InterPodAffinity (2, see
//! [`super::pod_affinity`]), intolerable `PreferNoSchedule` taints (3), preferred node
//! affinity (2).

use super::info::{tolerated, NodeInfo, NodeUsage, PodInfo, TaintEffect};
use super::spread;

pub const MAX_NODE_SCORE: i64 = 100;
const LEAST_ALLOCATED_WEIGHT: i64 = 1;
const BALANCED_ALLOCATION_WEIGHT: i64 = 1;
const SPREAD_WEIGHT: i64 = 2;
const TAINT_TOLERATION_WEIGHT: i64 = 3;
const NODE_AFFINITY_WEIGHT: i64 = 2;
const INTER_POD_AFFINITY_WEIGHT: i64 = 2;

/// Per-node figures before normalization across the feasible nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawScores {
    /// Already 0..=100.
    pub least_allocated: i64,
    /// Already 0..=100.
    pub balanced_allocation: i64,
    /// PodTopologySpread's raw score (lower is better); `None` when the pod is not
    /// spread (nothing selects or owns it).
    pub spread: Option<i64>,
    /// `PreferNoSchedule` taints the pod does not tolerate.
    pub intolerable_taints: i64,
    /// Sum of the weights of matching preferred node-affinity terms.
    pub preferred_affinity: i64,
    /// PodTopologySpread's score (0..=100) from the pod's own `ScheduleAnyway`
    /// constraints; replaces the default spreading when set.
    pub pod_spread: Option<i64>,
    /// InterPodAffinity's score, already normalized (0..=100).
    pub inter_pod_affinity: i64,
}

/// The scores that depend on the node alone (spreading is filled in across the
/// feasible nodes afterwards).
pub fn raw_scores(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> RawScores {
    RawScores {
        least_allocated: least_allocated(pod, node, usage),
        balanced_allocation: balanced_allocation(pod, node, usage),
        spread: None,
        intolerable_taints: intolerable_prefer_no_schedule(pod, node),
        preferred_affinity: preferred_affinity(pod, node),
        pod_spread: None,
        inter_pod_affinity: 0,
    }
}

/// Upstream `LeastAllocated` over cpu and memory (equal weights), counting pods without
/// requests at the non-zero defaults: the emptier the node after placing the pod, the
/// higher.
pub fn least_allocated(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> i64 {
    let requested = usage.nonzero_requested + pod.nonzero_requests;
    let free_share = |requested: i64, capacity: i64| {
        if capacity <= 0 || requested > capacity {
            0
        } else {
            (capacity - requested) * MAX_NODE_SCORE / capacity
        }
    };
    (free_share(requested.milli_cpu, node.allocatable.milli_cpu)
        + free_share(requested.memory, node.allocatable.memory))
        / 2
}

/// Upstream `BalancedAllocation` over cpu and memory: 100 minus the standard deviation
/// of the shares of each resource requested once the pod is placed (actual requests),
/// so nodes whose cpu and memory fill alike are preferred. A pod requesting neither is
/// not scored (every node gets the same).
pub fn balanced_allocation(pod: &PodInfo, node: &NodeInfo, usage: &NodeUsage) -> i64 {
    if pod.requests.milli_cpu == 0 && pod.requests.memory == 0 {
        return 0;
    }
    let requested = usage.requested + pod.requests;
    let share = |requested: i64, capacity: i64| {
        if capacity <= 0 {
            1.0
        } else {
            (requested as f64 / capacity as f64).min(1.0)
        }
    };
    let cpu = share(requested.milli_cpu, node.allocatable.milli_cpu);
    let memory = share(requested.memory, node.allocatable.memory);
    // The standard deviation of two values is half their distance.
    let std = (cpu - memory).abs() / 2.0;
    ((1.0 - std) * MAX_NODE_SCORE as f64) as i64
}

pub fn intolerable_prefer_no_schedule(pod: &PodInfo, node: &NodeInfo) -> i64 {
    node.taints
        .iter()
        .filter(|t| t.effect == TaintEffect::PreferNoSchedule && !tolerated(&pod.tolerations, t))
        .count() as i64
}

pub fn preferred_affinity(pod: &PodInfo, node: &NodeInfo) -> i64 {
    pod.preferred_terms
        .iter()
        .filter(|(_, term)| term.matches(node))
        .map(|(w, _)| *w)
        .sum()
}

/// Final scores of the feasible nodes (same order as `raw`): each plugin normalized to
/// 0..=100 across the nodes, then weighted and summed.
pub fn total_scores(raw: &[RawScores]) -> Vec<i64> {
    let max_taints = raw.iter().map(|r| r.intolerable_taints).max().unwrap_or(0);
    let max_affinity = raw.iter().map(|r| r.preferred_affinity).max().unwrap_or(0);
    let spread_raw: Vec<i64> = raw.iter().filter_map(|r| r.spread).collect();
    let spread = if raw.iter().all(|r| r.pod_spread.is_some()) && !raw.is_empty() {
        raw.iter().map(|r| r.pod_spread.unwrap_or(0)).collect()
    } else if spread_raw.len() == raw.len() {
        spread::normalize(&spread_raw)
    } else {
        vec![0; raw.len()]
    };
    raw.iter()
        .zip(spread)
        .map(|(r, spread)| {
            let taints = reversed(r.intolerable_taints, max_taints);
            let affinity = if max_affinity > 0 {
                r.preferred_affinity * MAX_NODE_SCORE / max_affinity
            } else {
                0
            };
            r.least_allocated * LEAST_ALLOCATED_WEIGHT
                + r.balanced_allocation * BALANCED_ALLOCATION_WEIGHT
                + spread * SPREAD_WEIGHT
                + taints * TAINT_TOLERATION_WEIGHT
                + affinity * NODE_AFFINITY_WEIGHT
                + r.inter_pod_affinity * INTER_POD_AFFINITY_WEIGHT
        })
        .collect()
}

/// Fewer is better: 100 for none, 0 for the most.
fn reversed(count: i64, max: i64) -> i64 {
    if max <= 0 {
        MAX_NODE_SCORE
    } else {
        MAX_NODE_SCORE * (max - count) / max
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn node(spec: Value) -> NodeInfo {
        NodeInfo::from_json(&json!({
            "metadata": {"name": "n", "labels": {"zone": "a"}},
            "spec": spec,
            "status": {"allocatable": {"cpu": "4", "memory": "8Gi"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
    }

    fn pod(cpu: &str, memory: &str) -> PodInfo {
        PodInfo::from_json(&json!({"spec": {"containers": [
            {"name": "c", "resources": {"requests": {"cpu": cpu, "memory": memory}}}]}}))
    }

    #[test]
    fn least_allocated_prefers_emptier_nodes() {
        let n = node(json!({}));
        let empty = NodeUsage::default();
        let mut busy = NodeUsage::default();
        busy.add(&pod("2", "4Gi"));
        let p = pod("1", "2Gi");
        assert_eq!(least_allocated(&p, &n, &empty), 75);
        assert_eq!(least_allocated(&p, &n, &busy), 25);
        assert_eq!(least_allocated(&pod("8", "16Gi"), &n, &empty), 0);
    }

    #[test]
    fn spreading_weighs_twice_and_outvotes_small_resource_differences() {
        let raw: Vec<RawScores> = [(90, Some(2)), (91, Some(4)), (92, Some(5))]
            .into_iter()
            .map(|(least_allocated, spread)| RawScores {
                least_allocated,
                spread,
                ..Default::default()
            })
            .collect();
        // Spread normalizes to 100, 60, 40, weighted 2 (no taints: 300 each).
        assert_eq!(total_scores(&raw), [590, 511, 472]);
        // A pod nothing selects is not spread: resources decide.
        let unspread: Vec<RawScores> = raw
            .iter()
            .map(|r| RawScores { spread: None, ..*r })
            .collect();
        assert_eq!(total_scores(&unspread), [390, 391, 392]);
    }

    #[test]
    fn balanced_allocation_prefers_nodes_whose_resources_fill_alike() {
        let n = node(json!({}));
        let mut cpu_heavy = NodeUsage::default();
        cpu_heavy.add(&pod("3", "0"));
        let p = pod("1", "2Gi");
        // Empty node: cpu 1/4, memory 2/8: perfectly balanced.
        assert_eq!(balanced_allocation(&p, &n, &NodeUsage::default()), 100);
        // cpu 4/4, memory 2/8: std 0.375.
        assert_eq!(balanced_allocation(&p, &n, &cpu_heavy), 62);
        // A pod requesting nothing is not scored.
        assert_eq!(balanced_allocation(&pod("0", "0"), &n, &cpu_heavy), 0);
    }

    #[test]
    fn prefer_no_schedule_taints_lower_the_score_unless_tolerated() {
        let tainted = node(json!({"taints": [{"key": "spot", "effect": "PreferNoSchedule"}]}));
        let plain = pod("0", "0");
        assert_eq!(intolerable_prefer_no_schedule(&plain, &tainted), 1);
        let tolerant = PodInfo::from_json(&json!({"spec": {
            "containers": [{"name": "c"}],
            "tolerations": [{"key": "spot", "operator": "Exists"}]}}));
        assert_eq!(intolerable_prefer_no_schedule(&tolerant, &tainted), 0);
        let raw = [
            RawScores {
                intolerable_taints: 1,
                ..Default::default()
            },
            RawScores::default(),
        ];
        let total = total_scores(&raw);
        assert!(total[1] > total[0]);
    }

    #[test]
    fn preferred_affinity_adds_matching_weights() {
        let p = PodInfo::from_json(&json!({"spec": {"containers": [{"name": "c"}],
        "affinity": {"nodeAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": [
            {"weight": 30, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["a"]}]}},
            {"weight": 5, "preference": {"matchExpressions": [{"key": "zone", "operator": "In", "values": ["b"]}]}},
        ]}}}}));
        assert_eq!(preferred_affinity(&p, &node(json!({}))), 30);
        let raw = [
            RawScores {
                preferred_affinity: 30,
                ..Default::default()
            },
            RawScores::default(),
        ];
        let total = total_scores(&raw);
        assert_eq!(total[0] - total[1], 200);
    }
}
