//! Preemption (upstream's DefaultPreemption PostFilter): when a pod fits nowhere, find
//! the node where removing the fewest and least important lower-priority pods makes it
//! fit, breaking as few PodDisruptionBudgets as possible. Pure: the scheduler's cache
//! hands in the nodes, what is placed on them and the budgets.

use std::collections::HashSet;

use serde_json::{Map, Value};

use super::filters::can_schedule;
use super::info::{NodeInfo, NodeUsage, PodInfo};
use crate::api::object;
use crate::api::selector::LabelSelector;

/// A pod placed on a node, as preemption sees it.
#[derive(Debug, Clone)]
pub struct PlacedPod<'a> {
    /// `namespace/name`.
    pub key: &'a str,
    pub info: &'a PodInfo,
    pub labels: Option<&'a Map<String, Value>>,
}

impl PlacedPod<'_> {
    fn namespace_and_name(&self) -> (&str, &str) {
        self.key.split_once('/').unwrap_or(("", self.key))
    }
}

/// What preemption needs of a PodDisruptionBudget.
#[derive(Debug, Clone, PartialEq)]
pub struct Budget {
    pub namespace: String,
    /// `None` for a missing, empty or unparsable selector: it covers nothing (upstream).
    pub selector: Option<LabelSelector>,
    /// `status.disruptionsAllowed`.
    pub disruptions_allowed: i64,
    /// Names in `status.disruptedPods`: already counted by the eviction that took them.
    pub disrupted_pods: HashSet<String>,
}

impl Budget {
    pub fn from_json(pdb: &Value) -> Budget {
        let sel = &pdb["spec"]["selector"];
        let selector = if sel.is_object() {
            LabelSelector::from_k8s(sel).ok().filter(|s| !s.is_empty())
        } else {
            None
        };
        Budget {
            namespace: object::namespace(pdb).unwrap_or("").to_string(),
            selector,
            disruptions_allowed: pdb["status"]["disruptionsAllowed"].as_i64().unwrap_or(0),
            disrupted_pods: pdb["status"]["disruptedPods"]
                .as_object()
                .map(|m| m.keys().cloned().collect())
                .unwrap_or_default(),
        }
    }
}

/// Upstream `filterPodsWithPDBViolation`: splits `pods` (in order) into those whose
/// eviction, after the ones before them, would take some budget below zero, and the
/// others. A pod already listed in a budget's `disruptedPods` does not count against it.
fn split_by_budget_violation<'p, 'a>(
    pods: &[&'p PlacedPod<'a>],
    budgets: &[&Budget],
) -> (Vec<&'p PlacedPod<'a>>, Vec<&'p PlacedPod<'a>>) {
    let mut allowed: Vec<i64> = budgets.iter().map(|b| b.disruptions_allowed).collect();
    let (mut violating, mut other) = (Vec::new(), Vec::new());
    for &pod in pods {
        let (ns, name) = pod.namespace_and_name();
        let mut violated = false;
        if pod.labels.is_some_and(|l| !l.is_empty()) {
            for (i, budget) in budgets.iter().enumerate() {
                let covers = budget.namespace == ns
                    && budget
                        .selector
                        .as_ref()
                        .is_some_and(|s| s.matches(pod.labels));
                if !covers || budget.disrupted_pods.contains(name) {
                    continue;
                }
                allowed[i] -= 1;
                if allowed[i] < 0 {
                    violated = true;
                }
            }
        }
        if violated {
            violating.push(pod);
        } else {
            other.push(pod);
        }
    }
    (violating, other)
}

/// The pods to evict from one node so that `pod` fits there, and how many of them
/// break a budget (upstream `selectVictimsOnNode`): every lower-priority pod is
/// removed, then each is given back as long as `pod` still fits, the ones whose
/// eviction would break a budget first, then the others, each in order of importance
/// (higher priority first). `None` when `pod` does not fit even with all of them gone,
/// or nothing would be evicted.
pub fn victims_on<'a>(
    pod: &PodInfo,
    node: &NodeInfo,
    usage: &NodeUsage,
    placed: &[PlacedPod<'a>],
    budgets: &[&Budget],
) -> Option<(Vec<PlacedPod<'a>>, usize)> {
    let mut lower: Vec<&PlacedPod<'a>> = placed
        .iter()
        .filter(|p| p.info.priority < pod.priority)
        .collect();
    if lower.is_empty() {
        return None;
    }
    let mut reduced = usage.clone();
    for p in &lower {
        reduced.remove(p.info);
    }
    can_schedule(pod, node, &reduced).ok()?;
    lower.sort_by(|a, b| {
        b.info
            .priority
            .cmp(&a.info.priority)
            .then_with(|| a.key.cmp(b.key))
    });
    let (violating, other) = split_by_budget_violation(&lower, budgets);
    let mut victims: Vec<PlacedPod<'a>> = Vec::new();
    let mut violations = 0;
    let mut reprieve = |p: &PlacedPod<'a>, reduced: &mut NodeUsage| -> bool {
        reduced.add(p.info);
        if can_schedule(pod, node, reduced).is_ok() {
            return true;
        }
        reduced.remove(p.info);
        victims.push(p.clone());
        false
    };
    for &p in &violating {
        if !reprieve(p, &mut reduced) {
            violations += 1;
        }
    }
    for &p in &other {
        reprieve(p, &mut reduced);
    }
    if victims.is_empty() {
        return None;
    }
    victims.sort_by(|a, b| {
        b.info
            .priority
            .cmp(&a.info.priority)
            .then_with(|| a.key.cmp(b.key))
    });
    Some((victims, violations))
}

/// How bad evicting `victims` is, for picking a node (upstream
/// `pickOneNodeForPreemption`): the fewest budget violations, then the lowest
/// highest-victim priority, then the smallest sum of priorities (shifted to be
/// positive, so fewer victims weigh less), then the fewest victims.
pub fn cost(victims: &[PlacedPod<'_>], violations: usize) -> (usize, i64, i128, usize) {
    let highest = victims
        .iter()
        .map(|v| v.info.priority)
        .max()
        .unwrap_or(i64::MIN);
    let sum = victims
        .iter()
        .map(|v| i128::from(v.info.priority) + i128::from(i32::MAX) + 1)
        .sum();
    (violations, highest, sum, victims.len())
}

/// Whether `pod` may preempt others at all (its policy is not `Never`).
pub fn may_preempt(pod: &PodInfo) -> bool {
    !pod.preemption_never
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

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
            u.add(p);
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
                labels: None,
            },
            PlacedPod {
                key: "ns/mid",
                info: &mid,
                labels: None,
            },
            PlacedPod {
                key: "ns/high",
                info: &high,
                labels: None,
            },
        ];
        let usage = usage_of(&[&low, &mid, &high]);
        let incoming = pod("300m", 50);
        let (victims, _) = victims_on(&incoming, &node(), &usage, &placed, &[]).unwrap();
        let keys: Vec<&str> = victims.iter().map(|v| v.key).collect();
        assert_eq!(
            keys,
            ["ns/low"],
            "mid is reprieved first, high is never a candidate"
        );
        // Needing 700m: both lower-priority pods go.
        let bigger = pod("700m", 50);
        let (victims, _) = victims_on(&bigger, &node(), &usage, &placed, &[]).unwrap();
        assert_eq!(victims.len(), 2);
        // Needing more than the node minus the higher-priority pod: no help.
        assert!(victims_on(&pod("900m", 50), &node(), &usage, &placed, &[]).is_none());
        // Nothing of lower priority: no help.
        assert!(victims_on(&pod("300m", 1), &node(), &usage, &placed, &[]).is_none());
    }

    #[test]
    fn nodes_are_compared_by_the_victims_importance_then_count() {
        let (a, b, c) = (pod("1", 1), pod("1", 1), pod("1", 3));
        let two_low = [
            PlacedPod {
                key: "a",
                info: &a,
                labels: None,
            },
            PlacedPod {
                key: "b",
                info: &b,
                labels: None,
            },
        ];
        let one_higher = [PlacedPod {
            key: "c",
            info: &c,
            labels: None,
        }];
        assert!(
            cost(&two_low, 0) < cost(&one_higher, 0),
            "lower highest priority wins"
        );
        assert!(
            cost(&two_low[..1], 0) < cost(&two_low, 0),
            "then fewer victims"
        );
        assert!(
            cost(&one_higher, 0) < cost(&two_low[..1], 1),
            "fewer budget violations first of all"
        );
    }

    fn pdb(selector: Value, allowed: i64, disrupted: &[&str]) -> Budget {
        let disrupted: serde_json::Map<String, Value> = disrupted
            .iter()
            .map(|n| (n.to_string(), json!("2026-01-01T00:00:00Z")))
            .collect();
        Budget::from_json(&json!({
            "metadata": {"name": "b", "namespace": "ns"},
            "spec": {"selector": selector},
            "status": {"disruptionsAllowed": allowed, "disruptedPods": disrupted},
        }))
    }

    #[test]
    fn a_pod_a_budget_protects_is_kept_when_another_will_do() {
        let (a, b) = (pod("500m", 1), pod("500m", 1));
        let (protected, free) = (json!({"app": "db"}), json!({"app": "web"}));
        // Equal pods are given back in name order, so without the budget "ns/b" goes.
        let placed = [
            PlacedPod {
                key: "ns/a",
                info: &a,
                labels: free.as_object(),
            },
            PlacedPod {
                key: "ns/b",
                info: &b,
                labels: protected.as_object(),
            },
        ];
        let usage = usage_of(&[&a, &b]);
        let incoming = pod("500m", 10);
        let (victims, violations) = victims_on(&incoming, &node(), &usage, &placed, &[]).unwrap();
        assert_eq!(victims[0].key, "ns/b");
        assert_eq!(violations, 0);
        let budget = pdb(json!({"matchLabels": {"app": "db"}}), 0, &[]);
        let (victims, violations) =
            victims_on(&incoming, &node(), &usage, &placed, &[&budget]).unwrap();
        let keys: Vec<&str> = victims.iter().map(|v| v.key).collect();
        assert_eq!(keys, ["ns/a"]);
        assert_eq!(violations, 0);
        // A budget that still allows a disruption does not protect.
        let lenient = pdb(json!({"matchLabels": {"app": "db"}}), 1, &[]);
        let (victims, _) = victims_on(&incoming, &node(), &usage, &placed, &[&lenient]).unwrap();
        assert_eq!(victims[0].key, "ns/b");
        // When both must go, the violation is counted.
        let (victims, violations) =
            victims_on(&pod("1", 10), &node(), &usage, &placed, &[&budget]).unwrap();
        assert_eq!((victims.len(), violations), (2, 1));
    }

    #[test]
    fn budgets_count_in_their_namespace_and_not_pods_already_disrupted() {
        let low = pod("1", 1);
        let labels = json!({"app": "db"});
        let placed = [PlacedPod {
            key: "ns/db-0",
            info: &low,
            labels: labels.as_object(),
        }];
        let usage = usage_of(&[&low]);
        let incoming = pod("1", 10);
        let strict = pdb(json!({"matchLabels": {"app": "db"}}), 0, &[]);
        let (_, violations) = victims_on(&incoming, &node(), &usage, &placed, &[&strict]).unwrap();
        assert_eq!(violations, 1);
        let already = pdb(json!({"matchLabels": {"app": "db"}}), 0, &["db-0"]);
        let (_, violations) = victims_on(&incoming, &node(), &usage, &placed, &[&already]).unwrap();
        assert_eq!(violations, 0);
        let mut elsewhere = strict.clone();
        elsewhere.namespace = "other".into();
        let (_, violations) =
            victims_on(&incoming, &node(), &usage, &placed, &[&elsewhere]).unwrap();
        assert_eq!(violations, 0);
        // An empty selector covers nothing.
        let empty = pdb(json!({}), 0, &[]);
        assert_eq!(empty.selector, None);
        let (_, violations) = victims_on(&incoming, &node(), &usage, &placed, &[&empty]).unwrap();
        assert_eq!(violations, 0);
    }

    #[test]
    fn preemption_policy_never_is_honoured() {
        let never =
            PodInfo::from_json(&json!({"spec": {"priority": 10, "preemptionPolicy": "Never"}}));
        assert!(!may_preempt(&never));
        assert!(may_preempt(&pod("1", 10)));
    }
}
