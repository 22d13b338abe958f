//! Preemption (upstream's DefaultPreemption PostFilter): when a pod fits nowhere, find
//! the node where removing the fewest and least important lower-priority pods makes it
//! fit. Pure: the scheduler's cache hands in the nodes and what is placed on them.

use super::filters::can_schedule;
use super::info::{NodeInfo, NodeUsage, PodInfo, SpreadKey};

/// A pod placed on a node, as preemption sees it.
#[derive(Debug, Clone)]
pub struct PlacedPod<'a> {
    pub key: &'a str,
    pub info: &'a PodInfo,
    pub spread: &'a [SpreadKey],
}

/// The pods to evict from one node so that `pod` fits there (upstream
/// `selectVictimsOnNode`): every lower-priority pod is removed, then each is given back
/// in order of importance (higher priority first) as long as `pod` still fits. `None`
/// when `pod` does not fit even with all of them gone, or nothing would be evicted.
pub fn victims_on<'a>(
    pod: &PodInfo,
    node: &NodeInfo,
    usage: &NodeUsage,
    placed: &[PlacedPod<'a>],
) -> Option<Vec<PlacedPod<'a>>> {
    let mut lower: Vec<&PlacedPod<'a>> = placed
        .iter()
        .filter(|p| p.info.priority < pod.priority)
        .collect();
    if lower.is_empty() {
        return None;
    }
    let mut reduced = usage.clone();
    for p in &lower {
        reduced.remove(p.info, p.spread);
    }
    can_schedule(pod, node, &reduced).ok()?;
    lower.sort_by(|a, b| {
        b.info
            .priority
            .cmp(&a.info.priority)
            .then_with(|| a.key.cmp(b.key))
    });
    let mut victims = Vec::new();
    for p in lower {
        reduced.add(p.info, p.spread);
        if can_schedule(pod, node, &reduced).is_err() {
            reduced.remove(p.info, p.spread);
            victims.push(p.clone());
        }
    }
    (!victims.is_empty()).then_some(victims)
}

/// How bad evicting `victims` is, for picking a node (upstream
/// `pickOneNodeForPreemption` without PDBs): lowest highest-victim priority, then the
/// smallest sum of priorities (shifted to be positive, so fewer victims weigh less),
/// then the fewest victims.
pub fn cost(victims: &[PlacedPod<'_>]) -> (i64, i128, usize) {
    let highest = victims
        .iter()
        .map(|v| v.info.priority)
        .max()
        .unwrap_or(i64::MIN);
    let sum = victims
        .iter()
        .map(|v| i128::from(v.info.priority) + i128::from(i32::MAX) + 1)
        .sum();
    (highest, sum, victims.len())
}

/// Whether `pod` may preempt others at all (its policy is not `Never`).
pub fn may_preempt(pod: &PodInfo) -> bool {
    !pod.preemption_never
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn node() -> NodeInfo {
        NodeInfo::from_json(&json!({
            "metadata": {"name": "n1"},
            "status": {"allocatable": {"cpu": "1", "memory": "1Gi", "pods": "10"},
                       "conditions": [{"type": "Ready", "status": "True"}]},
        }))
    }

    fn pod(cpu: &str, priority: i64) -> PodInfo {
        PodInfo::from_json(&json!({
            "spec": {"priority": priority,
                     "containers": [{"name": "c", "resources": {"requests": {"cpu": cpu}}}]},
        }))
    }

    fn usage_of(pods: &[&PodInfo]) -> NodeUsage {
        let mut u = NodeUsage::default();
        for p in pods {
            u.add(p, &[]);
        }
        u
    }

    #[test]
    fn the_fewest_least_important_pods_make_room() {
        let (low, mid, high) = (pod("400m", 1), pod("400m", 5), pod("200m", 100));
        let placed = [
            PlacedPod {
                key: "ns/low",
                info: &low,
                spread: &[],
            },
            PlacedPod {
                key: "ns/mid",
                info: &mid,
                spread: &[],
            },
            PlacedPod {
                key: "ns/high",
                info: &high,
                spread: &[],
            },
        ];
        let usage = usage_of(&[&low, &mid, &high]);
        let incoming = pod("300m", 50);
        let victims = victims_on(&incoming, &node(), &usage, &placed).unwrap();
        let keys: Vec<&str> = victims.iter().map(|v| v.key).collect();
        assert_eq!(
            keys,
            ["ns/low"],
            "mid is reprieved first, high is never a candidate"
        );
        // Needing 700m: both lower-priority pods go.
        let bigger = pod("700m", 50);
        let victims = victims_on(&bigger, &node(), &usage, &placed).unwrap();
        assert_eq!(victims.len(), 2);
        // Needing more than the node minus the higher-priority pod: no help.
        assert!(victims_on(&pod("900m", 50), &node(), &usage, &placed).is_none());
        // Nothing of lower priority: no help.
        assert!(victims_on(&pod("300m", 1), &node(), &usage, &placed).is_none());
    }

    #[test]
    fn nodes_are_compared_by_the_victims_importance_then_count() {
        let (a, b, c) = (pod("1", 1), pod("1", 1), pod("1", 3));
        let two_low = [
            PlacedPod {
                key: "a",
                info: &a,
                spread: &[],
            },
            PlacedPod {
                key: "b",
                info: &b,
                spread: &[],
            },
        ];
        let one_higher = [PlacedPod {
            key: "c",
            info: &c,
            spread: &[],
        }];
        assert!(
            cost(&two_low) < cost(&one_higher),
            "lower highest priority wins"
        );
        assert!(cost(&two_low[..1]) < cost(&two_low), "then fewer victims");
    }

    #[test]
    fn preemption_policy_never_is_honoured() {
        let never =
            PodInfo::from_json(&json!({"spec": {"priority": 10, "preemptionPolicy": "Never"}}));
        assert!(!may_preempt(&never));
        assert!(may_preempt(&pod("1", 10)));
    }
}
