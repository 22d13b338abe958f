//! What a DaemonSet does next, as upstream's `manage`/`podsShouldBeOnNode`,
//! `rollingUpdate` and `updateDaemonSetStatus` decide it: which nodes get a pod, which
//! pods go, and the status counts. Pure functions of the DaemonSet, its nodes' eligibility
//! and its pods grouped by node.

use std::cmp::Ordering;
use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::Value;

use super::placement::{target_node, Eligibility};
use crate::api::defaults::daemon_set_template_generation as template_generation;
use crate::api::object;
use crate::controllers::deployment::scaled_value;
use crate::controllers::history::REVISION_HASH_LABEL;
use crate::controllers::pods::{self, parse_time};
use crate::store::KeyValue;

/// The label daemon pods carry with the DaemonSet's template generation.
pub const TEMPLATE_GENERATION_LABEL: &str = "pod-template-generation";

/// The facts about one DaemonSet that every decision reads.
#[derive(Debug, Clone)]
pub struct Daemon<'a> {
    pub ds: &'a Value,
    /// The hash of the current revision (`controller-revision-hash` of new pods).
    pub hash: &'a str,
    pub now: DateTime<Utc>,
}

impl Daemon<'_> {
    fn min_ready_seconds(&self) -> i64 {
        self.ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0)
    }

    pub fn is_available(&self, pod: &Value) -> bool {
        pods::is_available(pod, self.min_ready_seconds(), self.now)
    }

    /// Upstream `IsPodUpdated`: the pod has the current revision's hash or the current
    /// template generation.
    pub fn is_updated(&self, pod: &Value) -> bool {
        let labels = &pod["metadata"]["labels"];
        let hash_matches =
            !self.hash.is_empty() && labels[REVISION_HASH_LABEL].as_str() == Some(self.hash);
        let generation_matches = template_generation(self.ds).is_some_and(|g| {
            labels[TEMPLATE_GENERATION_LABEL].as_str() == Some(g.to_string().as_str())
        });
        hash_matches || generation_matches
    }

    fn rolling(&self) -> Option<&Value> {
        let strategy = &self.ds["spec"]["updateStrategy"];
        (strategy["type"].as_str().unwrap_or("RollingUpdate") == "RollingUpdate")
            .then(|| &strategy["rollingUpdate"])
    }

    /// Upstream `AllowsSurge`: a RollingUpdate with a non-zero `maxSurge`.
    pub fn allows_surge(&self) -> bool {
        self.rolling()
            .is_some_and(|r| scaled_value(&r["maxSurge"], 1, true) != 0)
    }

    /// `(maxSurge, maxUnavailable)` for `desired` nodes, percentages rounded up (upstream
    /// `SurgeCount`, `UnavailableCount`); both zero becomes one unavailable.
    pub fn fenceposts(&self, desired: i64) -> (i64, i64) {
        let Some(rolling) = self.rolling() else {
            return (0, 0);
        };
        let surge = scaled_value(&rolling["maxSurge"], desired, true);
        let unavailable = scaled_value(&rolling["maxUnavailable"], desired, true);
        if desired > 0 && surge == 0 && unavailable == 0 {
            return (0, 1);
        }
        (surge, unavailable)
    }
}

/// Upstream `podByCreationTimestampAndPhase`: scheduled pods first, then oldest first.
pub fn oldest_first(a: &KeyValue, b: &KeyValue) -> Ordering {
    let scheduled = |p: &KeyValue| {
        p.value["spec"]["nodeName"]
            .as_str()
            .is_some_and(|n| !n.is_empty())
    };
    scheduled(b)
        .cmp(&scheduled(a))
        .then_with(|| {
            let created = |p: &KeyValue| parse_time(&p.value["metadata"]["creationTimestamp"]);
            created(a).cmp(&created(b))
        })
        .then_with(|| a.create_revision.cmp(&b.create_revision))
}

/// The DaemonSet's pods by the node they run on or are meant for (upstream
/// `getNodesToDaemonPods`); pods that finished and are being deleted are left out
/// unless `include_deleted_terminal`, pods naming no node are left out.
pub fn pods_by_node(
    pods: &[KeyValue],
    include_deleted_terminal: bool,
) -> BTreeMap<String, Vec<KeyValue>> {
    let mut by_node: BTreeMap<String, Vec<KeyValue>> = BTreeMap::new();
    for pod in pods {
        let terminal = !pods::is_running_or_pending(&pod.value);
        if !include_deleted_terminal && terminal && object::is_deleting(&pod.value) {
            continue;
        }
        if let Some(node) = target_node(&pod.value) {
            by_node.entry(node).or_default().push(pod.clone());
        }
    }
    by_node
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or_default()
}

/// What the core loop does on one pass (upstream `manage`).
#[derive(Debug, Default, Clone)]
pub struct Plan {
    /// Nodes that get a new pod.
    pub create_on: Vec<String>,
    /// Pods to delete.
    pub delete: Vec<KeyValue>,
    /// Failed pods to delete (subject to the per-node back-off), with their node.
    pub failed: Vec<(String, KeyValue)>,
}

/// Upstream `podsShouldBeOnNode` for every node, plus the unscheduled pods meant for
/// nodes that no longer exist.
pub fn manage(
    daemon: &Daemon,
    eligibility: &BTreeMap<String, Eligibility>,
    by_node: &BTreeMap<String, Vec<KeyValue>>,
) -> Plan {
    let mut plan = Plan::default();
    for (node, fit) in eligibility {
        let pods = by_node.get(node);
        match pods {
            None if fit.should_run => plan.create_on.push(node.clone()),
            Some(pods) if fit.should_continue => {
                on_eligible_node(daemon, node, fit, pods, &mut plan)
            }
            Some(pods) if !fit.should_continue => plan.delete.extend(
                pods.iter()
                    .filter(|p| !object::is_deleting(&p.value))
                    .cloned(),
            ),
            _ => {}
        }
    }
    for (node, pods) in by_node {
        if eligibility.contains_key(node) {
            continue;
        }
        plan.delete.extend(
            pods.iter()
                .filter(|p| {
                    p.value["spec"]["nodeName"]
                        .as_str()
                        .is_none_or(str::is_empty)
                        && !object::is_deleting(&p.value)
                })
                .cloned(),
        );
    }
    plan
}

/// The `shouldContinueRunning` branch of `podsShouldBeOnNode`.
fn on_eligible_node(
    daemon: &Daemon,
    node: &str,
    fit: &Eligibility,
    pods: &[KeyValue],
    plan: &mut Plan,
) {
    let mut running = Vec::new();
    for pod in pods.iter().filter(|p| !object::is_deleting(&p.value)) {
        match phase(&pod.value) {
            "Failed" => plan.failed.push((node.to_string(), pod.clone())),
            "Succeeded" => plan.delete.push(pod.clone()),
            _ => running.push(pod.clone()),
        }
    }
    running.sort_by(oldest_first);
    if !daemon.allows_surge() {
        plan.delete.extend(running.into_iter().skip(1));
        return;
    }
    if running.len() <= 1 {
        if running.is_empty() && fit.should_run {
            plan.create_on.push(node.to_string());
        }
        return;
    }
    // Surging: keep the oldest new pod and, while it is not ready but the oldest old pod
    // is, that old pod too.
    let mut oldest_new = None;
    let mut oldest_old = None;
    for pod in running {
        let is_new =
            pod.value["metadata"]["labels"][REVISION_HASH_LABEL].as_str() == Some(daemon.hash);
        let slot = if is_new {
            &mut oldest_new
        } else {
            &mut oldest_old
        };
        if slot.is_none() {
            *slot = Some(pod);
        } else {
            plan.delete.push(pod);
        }
    }
    if let (Some(new), Some(old)) = (oldest_new, oldest_old) {
        if !pods::is_ready(&old.value) || pods::is_ready(&new.value) {
            plan.delete.push(old);
        }
    }
}

/// Upstream `findUpdatedPodsOnNode`: the node's one new and one old pod (not deleting);
/// None when it has more than one of either (the core loop prunes them first).
fn updated_and_old<'p>(
    daemon: &Daemon,
    pods: &'p [KeyValue],
) -> Option<(Option<&'p KeyValue>, Option<&'p KeyValue>)> {
    let mut new = None;
    let mut old = None;
    for pod in pods.iter().filter(|p| !object::is_deleting(&p.value)) {
        let slot = if daemon.is_updated(&pod.value) {
            &mut new
        } else {
            &mut old
        };
        if slot.is_some() {
            return None;
        }
        *slot = Some(pod);
    }
    Some((new, old))
}

/// What a rolling-update pass does.
#[derive(Debug, Default, Clone)]
pub struct Rollout {
    /// Old pods to delete now.
    pub delete: Vec<KeyValue>,
    /// Nodes that get a new pod next to their old one (surge).
    pub create_on: Vec<String>,
}

/// Upstream `rollingUpdate`: without surge, deletes old pods while no more than
/// `maxUnavailable` nodes are down; with surge, starts new pods next to old ones (at most
/// `maxSurge` at a time) and deletes an old pod once its replacement is available.
pub fn rolling_update(
    daemon: &Daemon,
    eligibility: &BTreeMap<String, Eligibility>,
    by_node: &BTreeMap<String, Vec<KeyValue>>,
) -> Rollout {
    let desired = eligibility.values().filter(|e| e.should_run).count() as i64;
    let mut nodes = by_node.clone();
    for (node, fit) in eligibility {
        if fit.should_run {
            nodes.entry(node.clone()).or_default();
        }
    }
    let (max_surge, max_unavailable) = daemon.fenceposts(desired);
    if max_surge == 0 {
        return replace_without_surge(daemon, &nodes, max_unavailable);
    }
    let should_run = |node: &str| eligibility.get(node).is_some_and(|e| e.should_run);
    let mut rollout = Rollout::default();
    let mut should_not_run = Vec::new();
    let mut candidates = Vec::new();
    let mut allowed = Vec::new();
    let mut surging = 0;
    let mut available = 0;
    for (node, pods) in &nodes {
        let Some((new, old)) = updated_and_old(daemon, pods) else {
            surging += 1;
            continue;
        };
        if let Some(counted) = old.or(new) {
            if daemon.is_available(&counted.value) {
                available += 1;
            }
        }
        match (new, old) {
            (_, None) => {}
            (None, Some(old)) => {
                if !daemon.is_available(&old.value) {
                    if should_run(node) {
                        allowed.push(node.clone());
                    } else {
                        rollout.delete.push(old.clone());
                    }
                } else if !should_run(node) {
                    should_not_run.push(old.clone());
                } else if surging < max_surge {
                    candidates.push(node.clone());
                }
            }
            (Some(new), Some(old)) => {
                if daemon.is_available(&new.value) {
                    rollout.delete.push(old.clone());
                } else {
                    surging += 1;
                }
            }
        }
    }
    // Pods on nodes that no longer fit go only once enough replacements are available.
    let deletable = (available - desired).clamp(0, should_not_run.len() as i64) as usize;
    rollout
        .delete
        .extend(should_not_run.into_iter().take(deletable));
    let remaining = (max_surge - surging).clamp(0, candidates.len() as i64) as usize;
    rollout.create_on = allowed;
    rollout
        .create_on
        .extend(candidates.into_iter().take(remaining));
    rollout
}

fn replace_without_surge(
    daemon: &Daemon,
    nodes: &BTreeMap<String, Vec<KeyValue>>,
    max_unavailable: i64,
) -> Rollout {
    let mut unavailable = 0;
    let mut replace_now = Vec::new();
    let mut candidates = Vec::new();
    for pods in nodes.values() {
        let Some((new, old)) = updated_and_old(daemon, pods) else {
            unavailable += 1;
            continue;
        };
        match (new, old) {
            (None, None) | (Some(_), Some(_)) => unavailable += 1,
            (Some(new), None) => {
                if !daemon.is_available(&new.value) {
                    unavailable += 1;
                }
            }
            (None, Some(old)) => {
                if !daemon.is_available(&old.value) {
                    replace_now.push(old.clone());
                    unavailable += 1;
                } else if unavailable < max_unavailable {
                    candidates.push(old.clone());
                }
            }
        }
    }
    let room = (max_unavailable - unavailable).clamp(0, candidates.len() as i64) as usize;
    replace_now.extend(candidates.into_iter().take(room));
    Rollout {
        delete: replace_now,
        create_on: Vec::new(),
    }
}

/// The node counts of a DaemonSet's status (upstream `updateDaemonSetStatus`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub desired: i64,
    pub current: i64,
    pub misscheduled: i64,
    pub ready: i64,
    pub available: i64,
    pub updated: i64,
}

impl Counts {
    pub fn unavailable(&self) -> i64 {
        self.desired - self.available
    }
}

pub fn counts(
    daemon: &Daemon,
    eligibility: &BTreeMap<String, Eligibility>,
    by_node: &BTreeMap<String, Vec<KeyValue>>,
) -> Counts {
    let mut c = Counts::default();
    for (node, fit) in eligibility {
        let pods = by_node.get(node).filter(|p| !p.is_empty());
        if !fit.should_run {
            if pods.is_some() {
                c.misscheduled += 1;
            }
            continue;
        }
        c.desired += 1;
        let Some(pods) = pods else { continue };
        c.current += 1;
        let mut pods = pods.clone();
        pods.sort_by(oldest_first);
        let pod = &pods[0].value;
        if pods::is_ready(pod) {
            c.ready += 1;
            if daemon.is_available(pod) {
                c.available += 1;
            }
        }
        if daemon.is_updated(pod) {
            c.updated += 1;
        }
    }
    c
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HASH: &str = "new";
    const T0: &str = "2024-01-01T00:00:00Z";

    fn ds(strategy: Value) -> Value {
        json!({"metadata": {"name": "agent", "annotations": {"deprecated.daemonset.template.generation": "2"}},
               "spec": {"updateStrategy": strategy}})
    }

    fn rolling(unavailable: Value, surge: Value) -> Value {
        ds(
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": surge}}),
        )
    }

    fn daemon(ds: &Value) -> Daemon<'_> {
        Daemon {
            ds,
            hash: HASH,
            now: parse_time(&json!("2024-01-01T01:00:00Z")).unwrap(),
        }
    }

    /// A pod of revision `hash` on `node`, ready or not, created at second `created`.
    fn pod(name: &str, node: &str, hash: &str, ready: bool, created: u64) -> KeyValue {
        let mut v = json!({
            "metadata": {"name": name, "creationTimestamp": format!("2024-01-01T00:00:{created:02}Z"),
                         "labels": {REVISION_HASH_LABEL: hash, TEMPLATE_GENERATION_LABEL: "1"}},
            "spec": {"nodeName": node},
            "status": {"phase": "Running"},
        });
        if ready {
            v["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": T0}]);
        }
        crate::store::make_kv(name, v, created + 1, created + 1)
    }

    fn eligible(nodes: &[&str]) -> BTreeMap<String, Eligibility> {
        nodes
            .iter()
            .map(|n| {
                (
                    n.to_string(),
                    Eligibility {
                        should_run: true,
                        should_continue: true,
                    },
                )
            })
            .collect()
    }

    fn names(pods: &[KeyValue]) -> Vec<&str> {
        pods.iter().map(|p| object::name(&p.value)).collect()
    }

    #[test]
    fn pods_are_grouped_by_their_target_node() {
        let unscheduled = crate::store::make_kv(
            "u",
            json!({"metadata": {"name": "u"}, "spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["n2"]}]}]}}}}}),
            9,
            9,
        );
        let mut gone = pod("gone", "n1", HASH, false, 3);
        let mut v = (*gone.value).clone();
        v["status"]["phase"] = json!("Failed");
        v["metadata"]["deletionTimestamp"] = json!(T0);
        gone = gone.with_value(v);
        let pods = vec![pod("a", "n1", HASH, true, 1), unscheduled, gone];
        let by_node = pods_by_node(&pods, false);
        assert_eq!(names(&by_node["n1"]), ["a"]);
        assert_eq!(names(&by_node["n2"]), ["u"]);
        assert_eq!(names(&pods_by_node(&pods, true)["n1"]), ["a", "gone"]);
    }

    #[test]
    fn manage_creates_on_empty_nodes_and_deletes_where_pods_may_not_stay() {
        let d = rolling(json!(1), json!(0));
        let mut fits = eligible(&["n1", "n2"]);
        fits.insert("tainted".into(), Eligibility::default());
        fits.insert(
            "cordoned".into(),
            Eligibility {
                should_run: false,
                should_continue: true,
            },
        );
        let pods = vec![
            pod("dup-old", "n2", HASH, true, 1),
            pod("dup-new", "n2", HASH, true, 2),
            pod("off", "tainted", HASH, true, 3),
            pod("kept", "cordoned", HASH, true, 4),
        ];
        let plan = manage(&daemon(&d), &fits, &pods_by_node(&pods, false));
        assert_eq!(plan.create_on, ["n1"]);
        let mut deleted = names(&plan.delete);
        deleted.sort();
        assert_eq!(deleted, ["dup-new", "off"]);
    }

    #[test]
    fn manage_handles_failed_and_succeeded_pods_and_vanished_nodes() {
        let d = rolling(json!(1), json!(0));
        let fits = eligible(&["n1", "n2"]);
        let mut failed = pod("failed", "n1", HASH, false, 1);
        let mut v = (*failed.value).clone();
        v["status"]["phase"] = json!("Failed");
        failed = failed.with_value(v);
        let mut done = pod("done", "n2", HASH, false, 2);
        let mut v = (*done.value).clone();
        v["status"]["phase"] = json!("Succeeded");
        done = done.with_value(v);
        let orphan = crate::store::make_kv(
            "orphan",
            json!({"metadata": {"name": "orphan"}, "spec": {"affinity": {"nodeAffinity": {
                "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [
                    {"matchFields": [{"key": "metadata.name", "operator": "In", "values": ["gone"]}]}]}}}}}),
            9,
            9,
        );
        let plan = manage(
            &daemon(&d),
            &fits,
            &pods_by_node(&[failed, done, orphan], false),
        );
        assert_eq!(plan.failed.len(), 1);
        assert_eq!(plan.failed[0].0, "n1");
        assert_eq!(names(&plan.delete), ["done", "orphan"]);
        assert!(
            plan.create_on.is_empty(),
            "replacements come on the next pass"
        );
    }

    #[test]
    fn surge_keeps_old_pod_until_new_one_is_ready() {
        let d = rolling(json!(0), json!(1));
        let fits = eligible(&["n1"]);
        let waiting = vec![
            pod("old", "n1", "old", true, 1),
            pod("new", "n1", HASH, false, 2),
        ];
        let plan = manage(&daemon(&d), &fits, &pods_by_node(&waiting, false));
        assert!(plan.delete.is_empty());
        let ready = vec![
            pod("old", "n1", "old", true, 1),
            pod("new", "n1", HASH, true, 2),
        ];
        let plan = manage(&daemon(&d), &fits, &pods_by_node(&ready, false));
        assert_eq!(names(&plan.delete), ["old"]);
    }

    #[test]
    fn rolling_update_deletes_at_most_max_unavailable_old_pods() {
        let d = rolling(json!(1), json!(0));
        let fits = eligible(&["n1", "n2", "n3"]);
        let all_old = vec![
            pod("a", "n1", "old", true, 1),
            pod("b", "n2", "old", true, 2),
            pod("c", "n3", "old", true, 3),
        ];
        let step = rolling_update(&daemon(&d), &fits, &pods_by_node(&all_old, false));
        assert_eq!(names(&step.delete), ["a"]);
        assert!(step.create_on.is_empty());

        // n1's replacement is not available yet: nothing more may go.
        let replacing = vec![
            pod("a2", "n1", HASH, false, 4),
            pod("b", "n2", "old", true, 2),
            pod("c", "n3", "old", true, 3),
        ];
        let step = rolling_update(&daemon(&d), &fits, &pods_by_node(&replacing, false));
        assert!(step.delete.is_empty());

        // An unavailable old pod is replaced at once, on top of the budget.
        let broken = vec![
            pod("a2", "n1", HASH, true, 4),
            pod("b", "n2", "old", false, 2),
            pod("c", "n3", "old", true, 3),
        ];
        let step = rolling_update(&daemon(&d), &fits, &pods_by_node(&broken, false));
        assert_eq!(names(&step.delete), ["b"]);

        // 50% of 3 nodes rounds up to 2.
        let d = rolling(json!("50%"), json!(0));
        let step = rolling_update(&daemon(&d), &fits, &pods_by_node(&all_old, false));
        assert_eq!(names(&step.delete), ["a", "b"]);
    }

    #[test]
    fn rolling_update_with_surge_adds_new_pods_first() {
        let d = rolling(json!(0), json!(1));
        let fits = eligible(&["n1", "n2"]);
        let all_old = vec![
            pod("a", "n1", "old", true, 1),
            pod("b", "n2", "old", true, 2),
        ];
        let step = rolling_update(&daemon(&d), &fits, &pods_by_node(&all_old, false));
        assert_eq!(step.create_on, ["n1"]);
        assert!(step.delete.is_empty());

        let surged = vec![
            pod("a", "n1", "old", true, 1),
            pod("a2", "n1", HASH, false, 3),
            pod("b", "n2", "old", true, 2),
        ];
        let step = rolling_update(&daemon(&d), &fits, &pods_by_node(&surged, false));
        assert!(
            step.delete.is_empty() && step.create_on.is_empty(),
            "waits for the surge pod"
        );

        let available = vec![
            pod("a", "n1", "old", true, 1),
            pod("a2", "n1", HASH, true, 3),
            pod("b", "n2", "old", true, 2),
        ];
        let step = rolling_update(&daemon(&d), &fits, &pods_by_node(&available, false));
        assert_eq!(names(&step.delete), ["a"]);
        assert_eq!(step.create_on, ["n2"]);
    }

    #[test]
    fn on_delete_never_replaces_pods() {
        let d = ds(json!({"type": "OnDelete"}));
        let fits = eligible(&["n1"]);
        let pods = vec![pod("a", "n1", "old", true, 1)];
        let daemon = daemon(&d);
        assert_eq!(daemon.fenceposts(1), (0, 0));
        assert!(!daemon.allows_surge());
        let step = rolling_update(&daemon, &fits, &pods_by_node(&pods, false));
        assert!(step.delete.is_empty() && step.create_on.is_empty());
    }

    #[test]
    fn pods_count_as_updated_by_hash_or_template_generation() {
        let d = rolling(json!(1), json!(0));
        let daemon = daemon(&d);
        assert!(daemon.is_updated(&pod("a", "n1", HASH, true, 1).value));
        assert!(!daemon.is_updated(&pod("a", "n1", "old", true, 1).value));
        let mut by_generation = (*pod("a", "n1", "old", true, 1).value).clone();
        by_generation["metadata"]["labels"][TEMPLATE_GENERATION_LABEL] = json!("2");
        assert!(daemon.is_updated(&by_generation));
    }

    #[test]
    fn status_counts_nodes_not_pods() {
        let d = rolling(json!(1), json!(0));
        let mut fits = eligible(&["n1", "n2", "n3"]);
        fits.insert("off".into(), Eligibility::default());
        let pods = vec![
            pod("a", "n1", HASH, true, 1),
            pod("a-extra", "n1", "old", false, 5),
            pod("b", "n2", "old", false, 2),
            pod("x", "off", HASH, true, 3),
        ];
        let c = counts(&daemon(&d), &fits, &pods_by_node(&pods, false));
        assert_eq!(
            c,
            Counts {
                desired: 3,
                current: 2,
                misscheduled: 1,
                ready: 1,
                available: 1,
                updated: 1
            }
        );
        assert_eq!(c.unavailable(), 2);
    }
}
