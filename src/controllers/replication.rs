//! The replica manager behind the ReplicationController (core/v1) and ReplicaSet
//! (apps/v1) controllers: one implementation parameterised by [`ReplicaKind`].
//!
//! It claims the pods its selector matches, creates or deletes pods to reach
//! `spec.replicas` (never more than [`BURST_REPLICAS`] at once, creations in slow-start
//! batches, deletions in upstream `ActivePods` order) and reports status. Writes in
//! flight are tracked as [`Expectations`] so a burst is never acted on twice.

use std::sync::Arc;
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use super::clock::Clock;
use super::events::{Recorder, NORMAL, WARNING};
use super::expectations::Expectations;
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};
use super::ownership::{claim, is_controlled_by, owner_reference};
use super::pods::{self, controller_ref};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::{Event, EventType, KeyValue};

/// Most pods created or deleted by one reconcile (upstream `BurstReplicas`).
pub const BURST_REPLICAS: usize = 500;
/// Size of the first batch of a slow-start create burst (then 2, 4, 8 …).
pub const SLOW_START_INITIAL_BATCH: usize = 1;
/// Concurrent reconciles per controller.
const WORKERS: usize = 4;

/// The resource a replica manager runs for.
pub struct ReplicaKind {
    pub group: &'static str,
    pub version: &'static str,
    pub plural: &'static str,
    pub kind: &'static str,
    /// Event source component.
    pub component: &'static str,
    /// `spec.selector` is a plain label map (core/v1) rather than a `LabelSelector`.
    pub map_selector: bool,
}

pub static REPLICATION_CONTROLLER: ReplicaKind = ReplicaKind {
    group: "",
    version: "v1",
    plural: "replicationcontrollers",
    kind: "ReplicationController",
    component: "replication-controller",
    map_selector: true,
};

pub static REPLICA_SET: ReplicaKind = ReplicaKind {
    group: "apps",
    version: "v1",
    plural: "replicasets",
    kind: "ReplicaSet",
    component: "replicaset-controller",
    map_selector: false,
};

impl ReplicaKind {
    pub fn def(&self) -> &'static ResourceDef {
        resources::by_plural(self.group, self.version, self.plural).expect("served")
    }

    /// The pod selector; None when it selects nothing (absent, empty or invalid).
    pub fn selector(&self, obj: &Value) -> Option<LabelSelector> {
        let sel = &obj["spec"]["selector"];
        let parsed = if self.map_selector {
            sel.as_object().map(LabelSelector::from_map)
        } else {
            LabelSelector::from_k8s(sel).ok()
        };
        parsed.filter(|s| !s.is_empty())
    }
}

fn pods_def() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

struct Manager {
    kind: &'static ReplicaKind,
    client: Arc<dyn Client>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
    expectations: Expectations,
}

/// Runs the controller for `kind` until aborted.
pub async fn run(client: Arc<dyn Client>, kind: &'static ReplicaKind, clock: Arc<dyn Clock>) {
    let manager = Arc::new(Manager {
        kind,
        recorder: Recorder::new(client.clone(), kind.component),
        client: client.clone(),
        clock,
        expectations: Expectations::default(),
    });
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            kind.def(),
            queue.clone(),
            Box::new(|ev| vec![object_key(&ev.kv.value)]),
        ),
        Informer::start(client, pods_def(), queue.clone(), {
            let manager = manager.clone();
            Box::new(move |ev| manager.pod_changed(ev))
        }),
    ];
    wait_for_sync(&informers).await;
    run_workers(kind.component, queue, WORKERS, move |key| {
        let manager = manager.clone();
        async move { manager.reconcile(&key).await }
    })
    .await;
}

impl Manager {
    /// Key of the controller of our kind that owns `pod`.
    fn owner_key(&self, pod: &Value) -> Option<String> {
        let r = controller_ref(pod).filter(|r| r["kind"] == self.kind.kind)?;
        let ns = object::namespace(pod)?;
        Some(format!("{ns}/{}", r["name"].as_str()?))
    }

    /// Keys of our controllers in the pod's namespace whose selector matches it.
    fn matching_owners(&self, pod: &Value) -> Vec<String> {
        let Some(ns) = object::namespace(pod) else {
            return vec![];
        };
        let labels = object::labels(pod);
        self.client
            .list(self.kind.def(), Some(ns), &|kv| {
                self.kind
                    .selector(&kv.value)
                    .is_some_and(|s| s.matches(labels))
            })
            .iter()
            .map(|kv| object_key(&kv.value))
            .collect()
    }

    /// Maps a pod change to the controllers to reconcile, observing expectations.
    fn pod_changed(&self, ev: &Event) -> Vec<String> {
        let pod = &*ev.kv.value;
        let pod_key = object_key(pod);
        let owner = self.owner_key(pod);
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
            keys.extend(self.matching_owners(pod));
        }
        if let Some(prev) = &ev.prev {
            let prev_owner = self.owner_key(&prev.value);
            if prev_owner.is_some() && prev_owner != owner {
                keys.extend(prev_owner);
            }
        }
        keys
    }

    async fn reconcile(&self, key: &str) -> Reconciled {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let def = self.kind.def();
        let Ok(kv) = self.client.get(def, Some(ns), name) else {
            self.expectations.forget(key);
            return Ok(None);
        };
        let owner = &*kv.value;
        let uid = object::uid(owner).unwrap_or("").to_string();
        let mut owned = match self.kind.selector(owner) {
            Some(selector) => {
                let candidates = self
                    .client
                    .list(pods_def(), Some(ns), &|p| pods::is_active(&p.value));
                claim(&*self.client, def, owner, &selector, pods_def(), candidates).await?
            }
            None => vec![],
        };
        let mut manage_err = None;
        if self.expectations.satisfied(key) && !object::is_deleting(owner) {
            match self.manage(key, owner, &owned).await {
                Ok(false) => {}
                Ok(true) => owned = self.owned_active_pods(ns, &uid),
                Err(e) => {
                    owned = self.owned_active_pods(ns, &uid);
                    manage_err = Some(e);
                }
            }
        }
        let now = self.clock.now();
        let status = calculate_status(owner, &owned, manage_err.as_ref(), now);
        if status != owner["status"] {
            self.write_status(ns, name, &uid, status).await?;
        }
        if let Some(e) = manage_err {
            return Err(e);
        }
        let min_ready = owner["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
        Ok(pods::next_availability(&owned, min_ready, now).map(|d| d + Duration::from_millis(100)))
    }

    fn owned_active_pods(&self, ns: &str, uid: &str) -> Vec<KeyValue> {
        self.client.list(pods_def(), Some(ns), &|p| {
            pods::is_active(&p.value) && is_controlled_by(&p.value, uid)
        })
    }

    async fn write_status(
        &self,
        ns: &str,
        name: &str,
        uid: &str,
        status: Value,
    ) -> Result<(), ApiError> {
        let def = self.kind.def();
        let result = self
            .client
            .modify(def, Some(ns), name, Some("status"), &|cur| {
                if object::uid(cur) != Some(uid) {
                    return Err(ApiError::not_found(def, name));
                }
                let mut cur = cur.clone();
                cur["status"] = status.clone();
                Ok(cur)
            })
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Creates or deletes pods towards `spec.replicas`; true when it wrote anything.
    async fn manage(&self, key: &str, owner: &Value, owned: &[KeyValue]) -> Result<bool, ApiError> {
        let want = owner["spec"]["replicas"].as_i64().unwrap_or(1).max(0) as usize;
        let have = owned.len();
        if have < want {
            let count = (want - have).min(BURST_REPLICAS);
            self.expectations.expect_creations(key, count);
            let (created, error) =
                slow_start_batch(count, SLOW_START_INITIAL_BATCH, || self.create_pod(owner)).await;
            for _ in created..count {
                self.expectations.creation_observed(key);
            }
            return match error {
                Some(e) => Err(e),
                None => Ok(true),
            };
        }
        if have > want {
            let count = (have - want).min(BURST_REPLICAS);
            let victims = pods::pods_to_delete(owned, count);
            self.expectations
                .expect_deletions(key, victims.iter().map(|p| object_key(&p.value)));
            let results = join_all(victims.iter().map(|p| self.delete_pod(owner, &p.value))).await;
            let mut first_error = None;
            for (pod, result) in victims.iter().zip(results) {
                if let Err(e) = result {
                    self.expectations
                        .deletion_observed(key, &object_key(&pod.value));
                    if e.code != 404 && first_error.is_none() {
                        first_error = Some(e);
                    }
                }
            }
            return match first_error {
                Some(e) => Err(e),
                None => Ok(true),
            };
        }
        Ok(false)
    }

    async fn create_pod(&self, owner: &Value) -> Result<(), ApiError> {
        let ns = object::namespace(owner).unwrap_or("default");
        let body = pod_from_template(owner);
        match self.client.create(pods_def(), Some(ns), body).await {
            Ok(w) => {
                let message = format!("Created pod: {}", object::name(&w.kv.value));
                self.recorder
                    .record(owner, NORMAL, "SuccessfulCreate", &message)
                    .await;
                Ok(())
            }
            Err(e) => {
                // Creating into a terminating namespace is expected, not news (a
                // refusal for a missing ServiceAccount is: upstream reports it).
                if !namespace_terminating(&e) {
                    let message = format!("Error creating: {}", e.message);
                    self.recorder
                        .record(owner, WARNING, "FailedCreate", &message)
                        .await;
                }
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, owner: &Value, pod: &Value) -> Result<(), ApiError> {
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
                    .record(owner, NORMAL, "SuccessfulDelete", &message)
                    .await;
                Ok(())
            }
            Err(e) => {
                if e.code != 404 {
                    let message = format!("Error deleting: {}", e.message);
                    self.recorder
                        .record(owner, WARNING, "FailedDelete", &message)
                        .await;
                }
                Err(e)
            }
        }
    }
}

/// Runs `count` calls of `f` in batches of 1, 2, 4 … (starting at `initial`), stopping
/// after the first batch with a failure. Returns the successes and the first error.
pub async fn slow_start_batch<F, Fut>(
    count: usize,
    initial: usize,
    f: F,
) -> (usize, Option<ApiError>)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Result<(), ApiError>>,
{
    let mut remaining = count;
    let mut successes = 0;
    let mut batch = remaining.min(initial.max(1));
    while batch > 0 {
        let results = join_all((0..batch).map(|_| f())).await;
        let mut error = None;
        for r in results {
            match r {
                Ok(()) => successes += 1,
                Err(e) => {
                    error.get_or_insert(e);
                }
            }
        }
        if error.is_some() {
            return (successes, error);
        }
        remaining -= batch;
        batch = remaining.min(2 * batch);
    }
    (successes, None)
}

/// Whether `e` refuses a create because the namespace is being deleted.
fn namespace_terminating(e: &ApiError) -> bool {
    e.details.as_ref().is_some_and(|d| {
        d["causes"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["reason"] == "NamespaceTerminating")
    })
}

/// The pod a controller creates from its `spec.template` (upstream `GetPodFromTemplate`).
pub fn pod_from_template(owner: &Value) -> Value {
    let template = &owner["spec"]["template"];
    let mut meta = json!({
        "generateName": format!("{}-", object::name(owner)),
        "ownerReferences": [owner_reference(owner)],
    });
    for field in ["labels", "annotations", "finalizers"] {
        let v = &template["metadata"][field];
        if !v.is_null() {
            meta[field] = v.clone();
        }
    }
    if let Some(ns) = object::namespace(owner) {
        meta["namespace"] = json!(ns);
    }
    json!({
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": meta,
        "spec": template["spec"],
    })
}

/// The status the controller reports for `owner` given its active `owned` pods and the
/// error of the last create/delete round (upstream `calculateStatus`).
pub fn calculate_status(
    owner: &Value,
    owned: &[KeyValue],
    manage_err: Option<&ApiError>,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let template_labels = owner["spec"]["template"]["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let min_ready = owner["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
    let fully_labeled = owned
        .iter()
        .filter(|p| {
            let labels = object::labels(&p.value);
            template_labels
                .iter()
                .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
        })
        .count();
    let ready = owned.iter().filter(|p| pods::is_ready(&p.value)).count();
    let available = owned
        .iter()
        .filter(|p| pods::is_available(&p.value, min_ready, now))
        .count();
    let mut status = match &owner["status"] {
        Value::Object(m) => Value::Object(m.clone()),
        _ => json!({}),
    };
    status["replicas"] = json!(owned.len());
    status["fullyLabeledReplicas"] = json!(fully_labeled);
    status["readyReplicas"] = json!(ready);
    status["availableReplicas"] = json!(available);
    status["observedGeneration"] = owner["metadata"]["generation"].clone();
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let has_failure = conditions.iter().any(|c| c["type"] == "ReplicaFailure");
    match manage_err {
        Some(e) if !has_failure => {
            let want = owner["spec"]["replicas"].as_i64().unwrap_or(1);
            let reason = if (owned.len() as i64) < want {
                "FailedCreate"
            } else {
                "FailedDelete"
            };
            conditions.push(json!({
                "type": "ReplicaFailure", "status": "True",
                "lastTransitionTime": object::timestamp(now),
                "reason": reason, "message": e.message,
            }));
        }
        None if has_failure => conditions.retain(|c| c["type"] != "ReplicaFailure"),
        _ => {}
    }
    if conditions.is_empty() {
        if let Some(s) = status.as_object_mut() {
            s.remove("conditions");
        }
    } else {
        status["conditions"] = json!(conditions);
    }
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rc() -> Value {
        json!({
            "apiVersion": "v1", "kind": "ReplicationController",
            "metadata": {"name": "web", "namespace": "default", "uid": "u1", "generation": 3},
            "spec": {"replicas": 2, "selector": {"app": "web"},
                     "template": {"metadata": {"labels": {"app": "web", "tier": "fe"}},
                                  "spec": {"containers": [{"name": "c", "image": "nginx"}]}}},
            "status": {"replicas": 0},
        })
    }

    #[test]
    fn pods_from_the_template_carry_labels_and_a_controller_reference() {
        let pod = pod_from_template(&rc());
        assert_eq!(pod["metadata"]["generateName"], "web-");
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", "tier": "fe"})
        );
        assert_eq!(
            pod["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "ReplicationController", "name": "web",
                    "uid": "u1", "controller": true, "blockOwnerDeletion": true}])
        );
        assert_eq!(pod["spec"]["containers"][0]["image"], "nginx");
    }

    #[test]
    fn status_counts_labeled_ready_and_available_pods() {
        let now = chrono::Utc::now();
        let ready = json!([{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]);
        let pods = vec![
            crate::store::make_kv(
                "a",
                json!({"metadata": {"labels": {"app": "web", "tier": "fe"}}, "status": {"conditions": ready}}),
                1,
                1,
            ),
            crate::store::make_kv("b", json!({"metadata": {"labels": {"app": "web"}}}), 2, 2),
        ];
        let status = calculate_status(&rc(), &pods, None, now);
        assert_eq!(
            status,
            json!({"replicas": 2, "fullyLabeledReplicas": 1, "readyReplicas": 1,
                   "availableReplicas": 1, "observedGeneration": 3})
        );
        let err = ApiError::forbidden("quota exceeded");
        let failed = calculate_status(&rc(), &pods[..1], Some(&err), now);
        assert_eq!(failed["conditions"][0]["reason"], "FailedCreate");
        assert_eq!(failed["conditions"][0]["message"], "quota exceeded");
        let mut recovered_owner = rc();
        recovered_owner["status"] = failed;
        let recovered = calculate_status(&recovered_owner, &pods, None, now);
        assert!(recovered.get("conditions").is_none());
    }

    #[tokio::test]
    async fn slow_start_doubles_batches_and_stops_on_failure() {
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(10, 1, || async {
            calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            Ok(())
        })
        .await;
        assert_eq!((ok, err.is_none()), (10, true));
        let calls = std::sync::atomic::AtomicUsize::new(0);
        let (ok, err) = slow_start_batch(100, 1, || async {
            let n = calls.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            if n >= 5 {
                Err(ApiError::forbidden("no"))
            } else {
                Ok(())
            }
        })
        .await;
        // Batches 1, 2, then 4 of which one fails: 7 attempted, 5 succeeded.
        assert_eq!(ok, 5);
        assert!(err.is_some());
        assert_eq!(calls.load(std::sync::atomic::Ordering::SeqCst), 7);
    }
}
