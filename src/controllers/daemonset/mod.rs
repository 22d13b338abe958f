//! DaemonSet controller (apps/v1), as upstream's `pkg/controller/daemon`: one pod per
//! eligible node (see `placement`), created unscheduled with required node affinity to
//! its node so the scheduler places it; pods that may no longer stay are deleted, failed
//! pods are replaced with a per-node back-off; RollingUpdate (`maxUnavailable` /
//! `maxSurge`) or OnDelete between ControllerRevisions (`history`); status counts.
//!
//! Node changes (new nodes, labels, taints) are watched, so a node that becomes eligible
//! gets its pod at once. Writes in flight are tracked as `Expectations`, as for
//! ReplicaSets.

pub mod placement;
pub mod rollout;
#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures::future::join_all;
use serde_json::{json, Map, Value};

use super::clock::Clock;
use super::events::{Recorder, NORMAL, WARNING};
use super::expectations::Expectations;
use super::framework::{
    def_of, object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled,
    WorkQueue,
};
use super::history::{self, REVISION_HASH_LABEL};
use super::ownership::{claim, is_controlled_by, owner_reference};
use super::pods::controller_ref;
use super::replication::slow_start_batch;
use crate::api::defaults::daemon_set_template_generation as template_generation;
use crate::api::object;
use crate::api::resources::ResourceDef;
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::{Event, EventType, KeyValue};
use placement::{node_should_run, Eligibility};
use rollout::{Daemon, TEMPLATE_GENERATION_LABEL};

const COMPONENT: &str = "daemonset-controller";
/// Concurrent reconciles.
const WORKERS: usize = 2;
/// Most pods created or deleted by one pass (upstream `BurstReplicas` of this controller).
pub const BURST_REPLICAS: usize = 250;
/// Back-off before a failed daemon pod on a node is replaced again: doubles from the
/// initial value up to the maximum (upstream `failedPodsBackoff`).
pub const FAILED_POD_BACKOFF_INITIAL: Duration = Duration::from_secs(1);
pub const FAILED_POD_BACKOFF_MAX: Duration = Duration::from_secs(15 * 60);

fn daemon_sets() -> &'static ResourceDef {
    def_of::<k8s_openapi::api::apps::v1::DaemonSet>()
}

fn nodes_def() -> &'static ResourceDef {
    def_of::<k8s_openapi::api::core::v1::Node>()
}

fn pods_def() -> &'static ResourceDef {
    def_of::<k8s_openapi::api::core::v1::Pod>()
}

fn revisions_def() -> &'static ResourceDef {
    def_of::<k8s_openapi::api::apps::v1::ControllerRevision>()
}

/// Per-(DaemonSet, node) back-off of failed-pod replacement (upstream
/// `flowcontrol.Backoff`): the current delay and when it was last raised.
#[derive(Default)]
struct FailedPodBackoff {
    entries: Mutex<HashMap<String, (Duration, DateTime<Utc>)>>,
}

impl FailedPodBackoff {
    /// The time left of the back-off of `key` at `now` (None when not backing off).
    fn remaining(&self, key: &str, now: DateTime<Utc>) -> Option<Duration> {
        let entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let (delay, since) = entries.get(key)?;
        let elapsed = (now - *since).to_std().unwrap_or_default();
        delay.checked_sub(elapsed).filter(|left| !left.is_zero())
    }

    /// Raises the back-off of `key` (upstream `Next`): the initial delay the first time
    /// or after a long quiet spell, else twice the last, at most the maximum.
    fn next(&self, key: &str, now: DateTime<Utc>) {
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        let delay = match entries.get(key) {
            Some((delay, since))
                if (now - *since).to_std().unwrap_or_default() <= 2 * FAILED_POD_BACKOFF_MAX =>
            {
                (*delay * 2).min(FAILED_POD_BACKOFF_MAX)
            }
            _ => FAILED_POD_BACKOFF_INITIAL,
        };
        entries.insert(key.to_string(), (delay, now));
    }

    fn forget_daemon_set(&self, ds_key: &str) {
        let prefix = format!("{ds_key}/");
        self.entries
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .retain(|k, _| !k.starts_with(&prefix));
    }
}

struct Controller {
    client: Arc<dyn Client>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
    expectations: Expectations,
    failed_backoff: FailedPodBackoff,
}

/// Runs the DaemonSet controller until aborted.
pub async fn run(client: Arc<dyn Client>, clock: Arc<dyn Clock>) {
    let controller = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        clock,
        expectations: Expectations::default(),
        failed_backoff: FailedPodBackoff::default(),
    });
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            daemon_sets(),
            queue.clone(),
            Box::new(|ev| vec![object_key(&ev.kv.value)]),
        ),
        Informer::start(client.clone(), pods_def(), queue.clone(), {
            let c = controller.clone();
            Box::new(move |ev| c.pod_changed(ev))
        }),
        Informer::start(client.clone(), nodes_def(), queue.clone(), {
            let c = controller.clone();
            Box::new(move |ev| c.node_changed(ev))
        }),
        Informer::start(
            client,
            revisions_def(),
            queue.clone(),
            Box::new(|ev| owner_key(&ev.kv.value).into_iter().collect()),
        ),
    ];
    wait_for_sync(&informers).await;
    run_workers(COMPONENT, queue, WORKERS, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(&key).await }
    })
    .await;
}

/// Key of the DaemonSet controlling `obj`.
fn owner_key(obj: &Value) -> Option<String> {
    let r = controller_ref(obj).filter(|r| r["kind"] == "DaemonSet")?;
    Some(format!(
        "{}/{}",
        object::namespace(obj)?,
        r["name"].as_str()?
    ))
}

fn selector_of(ds: &Value) -> Option<LabelSelector> {
    LabelSelector::from_k8s(&ds["spec"]["selector"])
        .ok()
        .filter(|s| !s.is_empty())
}

fn is_rolling_update(ds: &Value) -> bool {
    ds["spec"]["updateStrategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// The pod `ds` runs on `node` for the revision `hash` (upstream `CreatePodTemplate` and
/// `ReplaceDaemonSetPodNodeNameNodeAffinity`): the template with the default DaemonSet
/// tolerations, the revision labels, and required node affinity to `node`. It carries
/// no `nodeName`: the scheduler binds it.
pub fn new_pod(ds: &Value, hash: &str, node: &str) -> Value {
    let template = &ds["spec"]["template"];
    let mut labels = template["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    if let Some(generation) = template_generation(ds) {
        labels.insert(
            TEMPLATE_GENERATION_LABEL.into(),
            json!(generation.to_string()),
        );
    }
    if !hash.is_empty() {
        labels.insert(REVISION_HASH_LABEL.into(), json!(hash));
    }
    let mut meta = json!({
        "generateName": format!("{}-", object::name(ds)),
        "labels": labels,
        "ownerReferences": [owner_reference(ds)],
    });
    for field in ["annotations", "finalizers"] {
        let v = &template["metadata"][field];
        if !v.is_null() {
            meta[field] = v.clone();
        }
    }
    if let Some(ns) = object::namespace(ds) {
        meta["namespace"] = json!(ns);
    }
    let mut spec: Map<String, Value> = template["spec"].as_object().cloned().unwrap_or_default();
    placement::add_daemon_tolerations(&mut spec);
    placement::pin_to_node(&mut spec, node);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec})
}

/// The status the controller writes for `counts` (fields upstream omits when zero are
/// left out, as on the wire).
fn status_of(
    ds: &Value,
    counts: &rollout::Counts,
    collision_count: i64,
    observe_generation: bool,
) -> Value {
    let mut status = match &ds["status"] {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    let set = |status: &mut Value, key: &str, value: i64, omit_zero: bool| {
        if omit_zero && value == 0 {
            if let Some(m) = status.as_object_mut() {
                m.remove(key);
            }
        } else {
            status[key] = json!(value);
        }
    };
    set(&mut status, "desiredNumberScheduled", counts.desired, false);
    set(&mut status, "currentNumberScheduled", counts.current, false);
    set(
        &mut status,
        "numberMisscheduled",
        counts.misscheduled,
        false,
    );
    set(&mut status, "numberReady", counts.ready, false);
    set(&mut status, "updatedNumberScheduled", counts.updated, true);
    set(&mut status, "numberAvailable", counts.available, true);
    set(&mut status, "numberUnavailable", counts.unavailable(), true);
    if observe_generation {
        status["observedGeneration"] = ds["metadata"]["generation"].clone();
    }
    if collision_count > 0 || status.get("collisionCount").is_some() {
        status["collisionCount"] = json!(collision_count);
    }
    status
}

impl Controller {
    fn pod_changed(&self, ev: &Event) -> Vec<String> {
        let pod = &*ev.kv.value;
        let pod_key = object_key(pod);
        let owner = owner_key(pod);
        let mut keys = Vec::new();
        if let Some(owner) = &owner {
            match ev.kind {
                EventType::Added => self.expectations.creation_observed(owner),
                EventType::Deleted => self.expectations.deletion_observed(owner, &pod_key),
                EventType::Modified if object::is_deleting(pod) => {
                    self.expectations.deletion_observed(owner, &pod_key)
                }
                EventType::Modified => {}
            }
            keys.push(owner.clone());
        } else if ev.kind != EventType::Deleted {
            if let Some(ns) = object::namespace(pod) {
                let labels = object::labels(pod);
                keys.extend(
                    self.client
                        .list(daemon_sets(), Some(ns), &|kv| {
                            selector_of(&kv.value).is_some_and(|s| s.matches(labels))
                        })
                        .iter()
                        .map(|kv| object_key(&kv.value)),
                );
            }
        }
        if let Some(prev) = ev.prev.as_ref().and_then(|p| owner_key(&p.value)) {
            if Some(&prev) != owner.as_ref() {
                keys.push(prev);
            }
        }
        keys
    }

    /// DaemonSets to look at after a node change: those that want a pod on a new node,
    /// every one when a node goes, and those whose verdict on the node changed.
    fn node_changed(&self, ev: &Event) -> Vec<String> {
        let node = &*ev.kv.value;
        let prev = ev.prev.as_ref().map(|p| &*p.value);
        self.client
            .list(daemon_sets(), None, &|_| true)
            .iter()
            .filter(|kv| {
                let ds = &*kv.value;
                match (ev.kind, prev) {
                    (EventType::Added, _) => node_should_run(node, ds).should_run,
                    (EventType::Modified, Some(prev)) => {
                        node_should_run(prev, ds) != node_should_run(node, ds)
                    }
                    _ => true,
                }
            })
            .map(|kv| object_key(&kv.value))
            .collect()
    }

    async fn reconcile(&self, key: &str) -> Reconciled {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Ok(kv) = self.client.get(daemon_sets(), Some(ns), name) else {
            self.expectations.forget(key);
            self.failed_backoff.forget_daemon_set(key);
            return Ok(None);
        };
        let ds = (*kv.value).clone();
        let Some(selector) = selector_of(&ds) else {
            self.recorder
                .record(
                    &ds,
                    WARNING,
                    "SelectingAll",
                    "This daemon set is selecting all pods. A non-empty selector is required.",
                )
                .await;
            return Ok(None);
        };
        // Its revisions may already be going: its status cannot be computed reliably.
        if object::is_deleting(&ds) {
            return Ok(None);
        }
        let collision_count = ds["status"]["collisionCount"].as_i64().unwrap_or(0);
        let revisions = history::sync(
            &*self.client,
            &ds,
            history::template_patch(&ds["spec"]["template"]),
            None,
            collision_count,
        )
        .await?;
        let hash = history::hash_of(&revisions.update);
        let eligibility: BTreeMap<String, Eligibility> = self
            .client
            .list(nodes_def(), None, &|_| true)
            .iter()
            .map(|n| {
                (
                    object::name(&n.value).to_string(),
                    node_should_run(&n.value, &ds),
                )
            })
            .collect();
        let satisfied = self.expectations.satisfied(key);
        let mut requeue = None;
        let mut sync_error = None;
        if satisfied {
            let pods = self.claimed_pods(&ds, &selector).await?;
            let now = self.clock.now();
            let daemon = Daemon {
                ds: &ds,
                hash: &hash,
                now,
            };
            match self.update(key, &daemon, &eligibility, &pods).await {
                Ok(delay) => requeue = delay,
                Err(e) => sync_error = Some(e),
            }
            self.cleanup_history(&ds, &revisions).await?;
        }
        let pods = self.claimed_pods(&ds, &selector).await?;
        let now = self.clock.now();
        let daemon = Daemon {
            ds: &ds,
            hash: &hash,
            now,
        };
        let counts = rollout::counts(&daemon, &eligibility, &rollout::pods_by_node(&pods, false));
        let status = status_of(&ds, &counts, revisions.collision_count, satisfied);
        if status != ds["status"] {
            self.write_status(&ds, status).await?;
        }
        if let Some(e) = sync_error {
            return Err(e);
        }
        let min_ready = ds["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
        if min_ready > 0 && counts.ready != counts.available {
            let wait = Duration::from_secs(min_ready as u64);
            requeue = Some(requeue.map_or(wait, |r: Duration| r.min(wait)));
        }
        Ok(requeue)
    }

    /// The core loop and, when it has nothing to do, a rolling-update step (upstream
    /// `updateDaemonSet`). Returns when to look again for pods held back by back-off.
    async fn update(
        &self,
        key: &str,
        daemon: &Daemon<'_>,
        eligibility: &BTreeMap<String, Eligibility>,
        pods: &[KeyValue],
    ) -> Result<Option<Duration>, ApiError> {
        let by_node = rollout::pods_by_node(pods, false);
        let plan = rollout::manage(daemon, eligibility, &by_node);
        let mut delete = plan.delete;
        let mut requeue: Option<Duration> = None;
        for (node, pod) in plan.failed {
            let backoff_key = format!("{key}/{node}");
            if let Some(left) = self.failed_backoff.remaining(&backoff_key, daemon.now) {
                requeue = Some(requeue.map_or(left, |r| r.min(left)));
                continue;
            }
            self.failed_backoff.next(&backoff_key, daemon.now);
            let message = format!(
                "Found failed daemon pod {} on node {node}, will try to kill it",
                object_key(&pod.value)
            );
            self.recorder
                .record(daemon.ds, WARNING, "FailedDaemonPod", &message)
                .await;
            delete.push(pod);
        }
        if !plan.create_on.is_empty() || !delete.is_empty() {
            self.sync_nodes(key, daemon, plan.create_on, delete).await?;
            return Ok(requeue);
        }
        if is_rolling_update(daemon.ds) && self.expectations.satisfied(key) {
            let step = rollout::rolling_update(daemon, eligibility, &by_node);
            self.sync_nodes(key, daemon, step.create_on, step.delete)
                .await?;
        }
        Ok(requeue)
    }

    /// The pods `ds` controls, after adopting matching orphans and releasing the ones
    /// whose labels no longer match.
    async fn claimed_pods(
        &self,
        ds: &Value,
        selector: &LabelSelector,
    ) -> Result<Vec<KeyValue>, ApiError> {
        let candidates = self
            .client
            .list(pods_def(), object::namespace(ds), &|_| true);
        claim(
            &*self.client,
            daemon_sets(),
            ds,
            selector,
            pods_def(),
            candidates,
        )
        .await
    }

    /// Creates pods on `create_on` and deletes `delete` (upstream `syncNodes`): creations
    /// in slow-start batches, at most [`BURST_REPLICAS`] of each per pass.
    async fn sync_nodes(
        &self,
        key: &str,
        daemon: &Daemon<'_>,
        mut create_on: Vec<String>,
        mut delete: Vec<KeyValue>,
    ) -> Result<(), ApiError> {
        create_on.truncate(BURST_REPLICAS);
        delete.truncate(BURST_REPLICAS);
        if create_on.is_empty() && delete.is_empty() {
            return Ok(());
        }
        self.expectations.expect(
            key,
            create_on.len(),
            delete.iter().map(|p| object_key(&p.value)),
        );
        let next = AtomicUsize::new(0);
        let create = slow_start_batch(create_on.len(), 1, || {
            let node = create_on[next.fetch_add(1, Ordering::SeqCst)].clone();
            async move { self.create_pod(daemon, &node).await }
        });
        let deletes = join_all(delete.iter().map(|p| self.delete_pod(daemon.ds, &p.value)));
        let ((created, create_error), deleted) = futures::join!(create, deletes);
        for _ in created..create_on.len() {
            self.expectations.creation_observed(key);
        }
        let mut first_error = create_error;
        for (pod, result) in delete.iter().zip(deleted) {
            if let Err(e) = result {
                self.expectations
                    .deletion_observed(key, &object_key(&pod.value));
                if e.code != 404 && first_error.is_none() {
                    first_error = Some(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    async fn create_pod(&self, daemon: &Daemon<'_>, node: &str) -> Result<(), ApiError> {
        let body = new_pod(daemon.ds, daemon.hash, node);
        let ns = object::namespace(daemon.ds);
        match self.client.create(pods_def(), ns, body).await {
            Ok(written) => {
                let message = format!("Created pod: {}", object::name(&written.kv.value));
                self.recorder
                    .record(daemon.ds, NORMAL, "SuccessfulCreate", &message)
                    .await;
                Ok(())
            }
            Err(e) => {
                let message = format!("Error creating: {}", e.message);
                self.recorder
                    .record(daemon.ds, WARNING, "FailedCreate", &message)
                    .await;
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, ds: &Value, pod: &Value) -> Result<(), ApiError> {
        let opts = DeleteOptions {
            precondition_uid: object::uid(pod).map(str::to_string),
            ..Default::default()
        };
        let name = object::name(pod);
        match self
            .client
            .delete(pods_def(), object::namespace(pod), name, &opts)
            .await
        {
            Ok(_) => {
                let message = format!("Deleted pod: {name}");
                self.recorder
                    .record(ds, NORMAL, "SuccessfulDelete", &message)
                    .await;
                Ok(())
            }
            Err(e) => {
                if e.code != 404 {
                    let message = format!("Error deleting: {}", e.message);
                    self.recorder
                        .record(ds, WARNING, "FailedDelete", &message)
                        .await;
                }
                Err(e)
            }
        }
    }

    /// Deletes the oldest revisions beyond `revisionHistoryLimit` that neither the
    /// DaemonSet's spec nor any of its pods (finished ones included) still use.
    async fn cleanup_history(
        &self,
        ds: &Value,
        revisions: &history::Revisions,
    ) -> Result<(), ApiError> {
        let limit = ds["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10);
        let uid = object::uid(ds).unwrap_or_default().to_string();
        let live_hashes: HashSet<String> = self
            .client
            .list(pods_def(), object::namespace(ds), &|p| {
                is_controlled_by(&p.value, &uid)
            })
            .iter()
            .map(|p| history::pod_revision(&p.value).to_string())
            .filter(|h| !h.is_empty())
            .collect();
        let mut live: HashSet<String> = revisions
            .all
            .iter()
            .filter(|r| live_hashes.contains(&history::hash_of(r)))
            .map(|r| object::name(r).to_string())
            .collect();
        live.insert(object::name(&revisions.update).to_string());
        history::truncate(&*self.client, &revisions.all, &live, limit).await
    }

    async fn write_status(&self, ds: &Value, status: Value) -> Result<(), ApiError> {
        let uid = object::uid(ds).unwrap_or_default().to_string();
        let name = object::name(ds);
        let result = self
            .client
            .modify(
                daemon_sets(),
                object::namespace(ds),
                name,
                Some("status"),
                &|cur| {
                    if object::uid(cur) != Some(uid.as_str()) {
                        return Err(ApiError::not_found(daemon_sets(), name));
                    }
                    let mut cur = cur.clone();
                    cur["status"] = status.clone();
                    Ok(cur)
                },
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
