//! What one StatefulSet sync does, as upstream's `defaultStatefulSetControl.updateStatefulSet`
//! decides it: pods to create (in ordinal order, one at a time for OrderedReady), failed
//! pods to replace, condemned pods (beyond the replicas) to delete from the highest
//! ordinal down, and the RollingUpdate step (reverse ordinal order above `partition`,
//! one at a time or up to `maxUnavailable`); plus the counts the status reports.
//!
//! A pure function of the set, its pods, the two revision names and `now`: the caller
//! carries the actions out.

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::identity::{self, end_ordinal, ordinal_of, start_ordinal};
use crate::api::object;
use crate::controllers::history::pod_revision;
use crate::controllers::pods;

/// Which revision a new pod is built from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Revision {
    /// `status.currentRevision` (ordinals below the partition keep it).
    Current,
    /// `status.updateRevision` (the set's template now).
    Update,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Create the pod of `ordinal` (its claims first).
    Create { ordinal: i64, revision: Revision },
    /// Delete a pod: finished (to be re-created), condemned, or of an old revision.
    Delete { name: String, uid: String },
    /// Restore a pod's identity labels.
    Relabel { name: String, ordinal: i64 },
}

/// The pod counts of the status (upstream `computeReplicaStatus`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counts {
    pub replicas: i64,
    pub ready: i64,
    pub available: i64,
    pub current: i64,
    pub updated: i64,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    pub actions: Vec<Action>,
    pub counts: Counts,
    /// Whether the actions run one at a time (OrderedReady) or all at once (Parallel).
    pub monotonic: bool,
}

/// What a sync decides from.
pub struct Input<'a> {
    pub set: &'a Value,
    /// The pods the set owns and names as its members (any phase).
    pub pods: &'a [Value],
    pub current_revision: &'a str,
    pub update_revision: &'a str,
    pub now: DateTime<Utc>,
}

fn min_ready_seconds(set: &Value) -> i64 {
    set["spec"]["minReadySeconds"].as_i64().unwrap_or(0)
}

fn running_and_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && pods::is_ready(pod)
}

fn running_and_available(pod: &Value, min_ready: i64, now: DateTime<Utc>) -> bool {
    running_and_ready(pod) && pods::is_available(pod, min_ready, now)
}

/// Upstream `isHealthy`: running, available and not terminating.
fn healthy(pod: &Value, min_ready: i64, now: DateTime<Utc>) -> bool {
    running_and_available(pod, min_ready, now) && !object::is_deleting(pod)
}

fn finished(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Failed" | "Succeeded")
    )
}

/// Whether the set creates and deletes pods one at a time (OrderedReady).
pub fn is_monotonic(set: &Value) -> bool {
    set["spec"]["podManagementPolicy"] != "Parallel"
}

/// Counts of `pods` against the two revisions.
pub fn count(input: &Input) -> Counts {
    let min_ready = min_ready_seconds(input.set);
    let mut counts = Counts::default();
    for pod in input.pods {
        counts.replicas += 1;
        if running_and_ready(pod) {
            counts.ready += 1;
            if running_and_available(pod, min_ready, input.now) {
                counts.available += 1;
            }
        }
        if !object::is_deleting(pod) {
            let revision = pod_revision(pod);
            if revision == input.current_revision {
                counts.current += 1;
            }
            if revision == input.update_revision {
                counts.updated += 1;
            }
        }
    }
    counts
}

/// The revision a new pod of `ordinal` gets (upstream `newVersionedStatefulSetPod`).
pub fn revision_for_new(set: &Value, ordinal: i64) -> Revision {
    let strategy = &set["spec"]["updateStrategy"];
    let start = start_ordinal(set);
    let keeps_current = match strategy["rollingUpdate"].as_object() {
        Some(rolling) => {
            ordinal
                < start
                    + rolling
                        .get("partition")
                        .and_then(Value::as_i64)
                        .unwrap_or(0)
        }
        None => {
            strategy["type"] == "RollingUpdate"
                && ordinal < start + set["status"]["currentReplicas"].as_i64().unwrap_or(0)
        }
    };
    if keeps_current {
        Revision::Current
    } else {
        Revision::Update
    }
}

/// Upstream `getStatefulSetMaxUnavailable`: an int or a percentage of the replicas
/// (rounded down), at least 1.
pub fn max_unavailable(raw: &Value, replicas: i64) -> i64 {
    let n = match raw {
        Value::Number(n) => n.as_i64().unwrap_or(1),
        Value::String(s) => s
            .strip_suffix('%')
            .and_then(|p| p.parse::<i64>().ok())
            .map(|p| p * replicas / 100)
            .unwrap_or(1),
        _ => 1,
    };
    n.max(1)
}

/// Decides one sync of `input.set`.
pub fn plan(input: &Input) -> Plan {
    let set = input.set;
    let min_ready = min_ready_seconds(set);
    let now = input.now;
    let monotonic = is_monotonic(set);
    let mut plan = Plan {
        actions: Vec::new(),
        counts: count(input),
        monotonic,
    };
    if object::is_deleting(set) {
        return plan;
    }
    let start = start_ordinal(set);
    let end = end_ordinal(set);
    let mut replicas: Vec<Option<&Value>> = vec![None; usize::try_from(end - start).unwrap_or(0)];
    let mut condemned: Vec<&Value> = Vec::new();
    for pod in input.pods {
        match ordinal_of(pod) {
            Some(o) if o >= start && o < end => replicas[(o - start) as usize] = Some(pod),
            Some(_) => condemned.push(pod),
            None => {}
        }
    }
    condemned.sort_by_key(|p| std::cmp::Reverse(ordinal_of(p)));
    let healthy_slot = |slot: &Option<&Value>| slot.is_some_and(|p| healthy(p, min_ready, now));
    // Upstream's firstUnhealthyPod: the first unhealthy replica (a missing one counts),
    // else the unhealthy condemned pod with the lowest ordinal.
    let first_unhealthy: Option<String> = match replicas.iter().position(|s| !healthy_slot(s)) {
        Some(i) => Some(identity::pod_name(set, start + i as i64)),
        None => condemned
            .iter()
            .rev()
            .find(|p| !healthy(p, min_ready, now))
            .map(|p| object::name(p).to_string()),
    };

    for (i, slot) in replicas.iter().enumerate() {
        let ordinal = start + i as i64;
        let Some(pod) = slot else {
            plan.actions.push(Action::Create {
                ordinal,
                revision: revision_for_new(set, ordinal),
            });
            if monotonic {
                return plan;
            }
            continue;
        };
        if finished(pod) {
            if !object::is_deleting(pod) {
                plan.actions.push(delete(pod));
            }
            if monotonic {
                return plan;
            }
            continue;
        }
        if object::is_deleting(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        if monotonic && !running_and_available(pod, min_ready, now) {
            return plan;
        }
        if !identity::identity_matches(set, pod) {
            plan.actions.push(Action::Relabel {
                name: object::name(pod).to_string(),
                ordinal,
            });
        }
    }

    for pod in &condemned {
        if object::is_deleting(pod) {
            if monotonic {
                return plan;
            }
            continue;
        }
        let first = first_unhealthy.as_deref() == Some(object::name(pod));
        if monotonic && !first && !running_and_available(pod, min_ready, now) {
            return plan;
        }
        plan.actions.push(delete(pod));
        if monotonic {
            return plan;
        }
    }

    let strategy = &set["spec"]["updateStrategy"];
    if strategy["type"] != "RollingUpdate" {
        return plan;
    }
    let rolling = &strategy["rollingUpdate"];
    let partition = usize::try_from(rolling["partition"].as_i64().unwrap_or(0)).unwrap_or(0);
    let outdated =
        |pod: &Value| pod_revision(pod) != input.update_revision && !object::is_deleting(pod);
    match rolling.get("maxUnavailable").filter(|v| !v.is_null()) {
        None => {
            for target in (partition..replicas.len()).rev() {
                let Some(pod) = replicas[target] else {
                    return plan;
                };
                if outdated(pod) {
                    plan.actions.push(delete(pod));
                    plan.counts.current -= 1;
                    return plan;
                }
                if !healthy(pod, min_ready, now) {
                    return plan;
                }
            }
        }
        Some(raw) => {
            let max = max_unavailable(raw, identity::replicas(set));
            let unavailable = replicas.iter().filter(|s| !healthy_slot(s)).count() as i64;
            if unavailable >= max {
                return plan;
            }
            let mut budget = max - unavailable;
            for target in (partition..replicas.len()).rev() {
                if budget == 0 {
                    break;
                }
                if let Some(pod) = replicas[target].filter(|p| outdated(p)) {
                    plan.actions.push(delete(pod));
                    plan.counts.current -= 1;
                    budget -= 1;
                }
            }
        }
    }
    plan
}

fn delete(pod: &Value) -> Action {
    Action::Delete {
        name: object::name(pod).to_string(),
        uid: object::uid(pod).unwrap_or("").to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const CUR: &str = "web-1111";
    const UPD: &str = "web-2222";

    fn now() -> DateTime<Utc> {
        pods::parse_time(&json!("2024-01-01T00:10:00Z")).unwrap()
    }

    fn set(replicas: i64, policy: &str, rolling: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "ns", "uid": "u"},
            "spec": {"replicas": replicas, "podManagementPolicy": policy,
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": rolling}},
            "status": {}})
    }

    /// A pod of `ordinal` at `revision`: "ready", "pending", "failed" or "terminating".
    fn pod(ordinal: i64, revision: &str, state: &str) -> Value {
        let mut p = json!({"metadata": {"name": format!("web-{ordinal}"), "namespace": "ns",
                "uid": format!("uid-{ordinal}"),
                "labels": {"controller-revision-hash": revision,
                    identity::POD_NAME_LABEL: format!("web-{ordinal}"),
                    identity::POD_INDEX_LABEL: ordinal.to_string()}},
            "status": {"phase": "Pending"}});
        match state {
            "ready" | "terminating" => {
                p["status"] = json!({"phase": "Running", "conditions": [{"type": "Ready",
                    "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}]});
                if state == "terminating" {
                    p["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:09:00Z");
                }
            }
            "failed" => p["status"]["phase"] = json!("Failed"),
            _ => {}
        }
        p
    }

    fn run(set: &Value, pods: &[Value]) -> Plan {
        plan(&Input {
            set,
            pods,
            current_revision: CUR,
            update_revision: UPD,
            now: now(),
        })
    }

    fn created(ordinal: i64) -> Action {
        Action::Create {
            ordinal,
            revision: Revision::Update,
        }
    }

    fn deleted(ordinal: i64) -> Action {
        Action::Delete {
            name: format!("web-{ordinal}"),
            uid: format!("uid-{ordinal}"),
        }
    }

    #[test]
    fn ordered_ready_creates_one_pod_at_a_time_after_its_predecessors_are_ready() {
        let s = set(3, "OrderedReady", json!({"partition": 0}));
        assert_eq!(run(&s, &[]).actions, [created(0)]);
        assert_eq!(run(&s, &[pod(0, UPD, "pending")]).actions, []);
        assert_eq!(run(&s, &[pod(0, UPD, "ready")]).actions, [created(1)]);
        // A missing lower ordinal is created before anything else happens.
        assert_eq!(run(&s, &[pod(1, UPD, "ready")]).actions, [created(0)]);
    }

    #[test]
    fn parallel_creates_every_missing_pod_at_once() {
        let s = set(3, "Parallel", json!({"partition": 0}));
        assert_eq!(
            run(&s, &[pod(1, UPD, "pending")]).actions,
            [created(0), created(2)]
        );
    }

    #[test]
    fn failed_pods_are_deleted_to_be_recreated() {
        let s = set(2, "OrderedReady", json!({"partition": 0}));
        assert_eq!(
            run(&s, &[pod(0, UPD, "failed"), pod(1, UPD, "ready")]).actions,
            [deleted(0)]
        );
    }

    #[test]
    fn scale_down_deletes_the_highest_ordinal_first_and_waits_for_it() {
        let s = set(1, "OrderedReady", json!({"partition": 0}));
        let pods = [
            pod(0, UPD, "ready"),
            pod(1, UPD, "ready"),
            pod(2, UPD, "ready"),
        ];
        assert_eq!(run(&s, &pods).actions, [deleted(2)]);
        let terminating = [
            pod(0, UPD, "ready"),
            pod(1, UPD, "ready"),
            pod(2, UPD, "terminating"),
        ];
        assert_eq!(run(&s, &terminating).actions, []);
        let parallel = set(1, "Parallel", json!({"partition": 0}));
        assert_eq!(run(&parallel, &pods).actions, [deleted(2), deleted(1)]);
    }

    #[test]
    fn scale_down_stops_at_an_unhealthy_pod_that_is_not_the_first_unhealthy_one() {
        let s = set(1, "OrderedReady", json!({"partition": 0}));
        // web-2 unhealthy, web-1 unhealthy too: web-1 is the first unhealthy, web-2 blocks.
        let pods = [
            pod(0, UPD, "ready"),
            pod(1, UPD, "pending"),
            pod(2, UPD, "pending"),
        ];
        assert_eq!(run(&s, &pods).actions, []);
        // Only the highest is unhealthy: it is the first unhealthy and may go.
        let pods = [
            pod(0, UPD, "ready"),
            pod(1, UPD, "ready"),
            pod(2, UPD, "pending"),
        ];
        assert_eq!(run(&s, &pods).actions, [deleted(2)]);
    }

    #[test]
    fn rolling_update_replaces_from_the_highest_ordinal_down_to_the_partition() {
        let s = set(3, "OrderedReady", json!({"partition": 1}));
        let pods = [
            pod(0, CUR, "ready"),
            pod(1, CUR, "ready"),
            pod(2, CUR, "ready"),
        ];
        let p = run(&s, &pods);
        assert_eq!(p.actions, [deleted(2)]);
        assert_eq!(
            p.counts.current, 2,
            "the deleted pod no longer counts as current"
        );
        // web-2 updated and ready: web-1 next; web-0 is below the partition.
        let pods = [
            pod(0, CUR, "ready"),
            pod(1, CUR, "ready"),
            pod(2, UPD, "ready"),
        ];
        assert_eq!(run(&s, &pods).actions, [deleted(1)]);
        let pods = [
            pod(0, CUR, "ready"),
            pod(1, UPD, "ready"),
            pod(2, UPD, "ready"),
        ];
        assert_eq!(run(&s, &pods).actions, []);
        // An updated pod that is not ready yet holds the rollout.
        let pods = [
            pod(0, CUR, "ready"),
            pod(1, CUR, "ready"),
            pod(2, UPD, "pending"),
        ];
        assert_eq!(run(&s, &pods).actions, []);
    }

    #[test]
    fn new_pods_below_the_partition_get_the_current_revision() {
        let s = set(3, "OrderedReady", json!({"partition": 2}));
        assert_eq!(revision_for_new(&s, 1), Revision::Current);
        assert_eq!(revision_for_new(&s, 2), Revision::Update);
        let mut no_rolling = s.clone();
        no_rolling["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
        no_rolling["status"]["currentReplicas"] = json!(1);
        assert_eq!(revision_for_new(&no_rolling, 0), Revision::Current);
        assert_eq!(revision_for_new(&no_rolling, 1), Revision::Update);
        let mut on_delete = s.clone();
        on_delete["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        assert_eq!(revision_for_new(&on_delete, 0), Revision::Update);
    }

    #[test]
    fn on_delete_never_replaces_running_pods() {
        let mut s = set(2, "OrderedReady", Value::Null);
        s["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        let pods = [pod(0, CUR, "ready"), pod(1, CUR, "ready")];
        assert_eq!(run(&s, &pods).actions, []);
    }

    #[test]
    fn max_unavailable_replaces_several_pods_at_once_within_its_budget() {
        let s = set(
            4,
            "OrderedReady",
            json!({"partition": 0, "maxUnavailable": 2}),
        );
        let pods: Vec<Value> = (0..4).map(|o| pod(o, CUR, "ready")).collect();
        assert_eq!(run(&s, &pods).actions, [deleted(3), deleted(2)]);
        // One already unavailable (Parallel: nothing waits for it): only one more may go.
        let parallel = set(4, "Parallel", json!({"partition": 0, "maxUnavailable": 2}));
        let mut pods = pods;
        pods[3] = pod(3, UPD, "pending");
        assert_eq!(run(&parallel, &pods).actions, [deleted(2)]);
        // OrderedReady waits for the unready pod first.
        assert_eq!(run(&s, &pods).actions, []);
        let pct = set(
            4,
            "OrderedReady",
            json!({"partition": 0, "maxUnavailable": "50%"}),
        );
        assert_eq!(
            max_unavailable(
                &pct["spec"]["updateStrategy"]["rollingUpdate"]["maxUnavailable"],
                4
            ),
            2
        );
        assert_eq!(max_unavailable(&json!("10%"), 4), 1, "at least one");
    }

    #[test]
    fn counts_follow_revisions_readiness_and_availability() {
        let mut s = set(3, "OrderedReady", json!({"partition": 0}));
        s["spec"]["minReadySeconds"] = json!(1200);
        let pods = [
            pod(0, CUR, "ready"),
            pod(1, UPD, "pending"),
            pod(2, UPD, "terminating"),
        ];
        let counts = run(&s, &pods).counts;
        assert_eq!(
            counts,
            Counts {
                replicas: 3,
                ready: 2,
                available: 0,
                current: 1,
                updated: 1
            }
        );
    }

    #[test]
    fn ordinals_start_where_the_set_says() {
        let mut s = set(2, "Parallel", json!({"partition": 0}));
        s["spec"]["ordinals"] = json!({"start": 5});
        assert_eq!(run(&s, &[]).actions, [created(5), created(6)]);
        // web-0 is outside 5..7: condemned.
        let p = run(
            &s,
            &[
                pod(0, UPD, "ready"),
                pod(5, UPD, "ready"),
                pod(6, UPD, "ready"),
            ],
        );
        assert_eq!(p.actions, [deleted(0)]);
    }
}
