//! Scores: how good a feasible node is for a pod (higher is better), with upstream's
//! plugins and weights: least-allocated resources (1), spreading a group of pods (2),
//! intolerable `PreferNoSchedule` taints (3), preferred node affinity (2).

use super::info::{tolerated, NodeInfo, NodeUsage, PodInfo, SpreadKey, TaintEffect};

pub const MAX_NODE_SCORE: i64 = 100;
const LEAST_ALLOCATED_WEIGHT: i64 = 1;
const SPREAD_WEIGHT: i64 = 2;
const TAINT_TOLERATION_WEIGHT: i64 = 3;
const NODE_AFFINITY_WEIGHT: i64 = 2;

/// Per-node figures before normalization across the feasible nodes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RawScores {
    /// Already 0..=100.
    pub least_allocated: i64,
    /// Pods of the pod's spread groups already on the node.
    pub spread_count: i64,
    /// `PreferNoSchedule` taints the pod does not tolerate.
    pub intolerable_taints: i64,
    /// Sum of the weights of matching preferred node-affinity terms.
    pub preferred_affinity: i64,
}

pub fn raw_scores(
    pod: &PodInfo,
    spread: &[SpreadKey],
    node: &NodeInfo,
    usage: &NodeUsage,
) -> RawScores {
    RawScores {
        least_allocated: least_allocated(pod, node, usage),
        spread_count: spread_count(spread, usage),
        intolerable_taints: intolerable_prefer_no_schedule(pod, node),
        preferred_affinity: preferred_affinity(pod, node),
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

/// Pods of the pod's groups (its controller, the Services selecting it) on the node.
/// A pod in several groups counts once per group it shares.
pub fn spread_count(spread: &[SpreadKey], usage: &NodeUsage) -> i64 {
    spread
        .iter()
        .map(|k| usage.spread.get(k).copied().unwrap_or(0) as i64)
        .sum()
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
    let max_spread = raw.iter().map(|r| r.spread_count).max().unwrap_or(0);
    let max_taints = raw.iter().map(|r| r.intolerable_taints).max().unwrap_or(0);
    let max_affinity = raw.iter().map(|r| r.preferred_affinity).max().unwrap_or(0);
    raw.iter()
        .map(|r| {
            let spread = reversed(r.spread_count, max_spread);
            let taints = reversed(r.intolerable_taints, max_taints);
            let affinity = if max_affinity > 0 {
                r.preferred_affinity * MAX_NODE_SCORE / max_affinity
            } else {
                0
            };
            r.least_allocated * LEAST_ALLOCATED_WEIGHT
                + spread * SPREAD_WEIGHT
                + taints * TAINT_TOLERATION_WEIGHT
                + affinity * NODE_AFFINITY_WEIGHT
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
        busy.add(&pod("2", "4Gi"), &[]);
        let p = pod("1", "2Gi");
        assert_eq!(least_allocated(&p, &n, &empty), 75);
        assert_eq!(least_allocated(&p, &n, &busy), 25);
        assert_eq!(least_allocated(&pod("8", "16Gi"), &n, &empty), 0);
    }

    #[test]
    fn spreading_prefers_nodes_with_fewer_pods_of_the_group() {
        let key = SpreadKey::Controller("rs-1".into());
        let p = pod("100m", "100Mi");
        let n = node(json!({}));
        let mut usages = vec![NodeUsage::default(); 3];
        usages[0].add(&p, std::slice::from_ref(&key));
        usages[0].add(&p, std::slice::from_ref(&key));
        usages[1].add(&p, std::slice::from_ref(&key));
        let raw: Vec<RawScores> = usages
            .iter()
            .map(|u| RawScores {
                spread_count: spread_count(std::slice::from_ref(&key), u),
                ..Default::default()
            })
            .collect();
        assert_eq!(
            raw.iter().map(|r| r.spread_count).collect::<Vec<_>>(),
            [2, 1, 0]
        );
        assert_eq!(total_scores(&raw), [300, 400, 500]);
        // Other groups do not count.
        let other = [SpreadKey::Controller("rs-2".into())];
        assert_eq!(spread_count(&other, &usages[0]), 0);
        let _ = raw_scores(&p, &other, &n, &usages[0]);
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
