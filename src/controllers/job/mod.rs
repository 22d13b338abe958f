//! The Job controller (batch/v1): runs a Job's pods to completion as upstream's job
//! controller does — completions and parallelism, Indexed completion mode, back-off
//! after failures, deadlines, pod failure policies, suspension, finalizer-based
//! tracking of finished pods, and deletion `ttlSecondsAfterFinished` after the end.
//!
//! The decisions are the pure [`tracking::plan`]; this file reads the Job and its pods,
//! writes the status (with a resourceVersion precondition, so a stale view never
//! writes), removes tracking finalizers, and creates and deletes pods.

#[cfg(test)]
mod tests;
pub mod tracking;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::future::join_all;
use serde_json::{json, Value};

use super::clock::Clock;
use super::events::{Recorder, NORMAL, WARNING};
use super::expectations::Expectations;
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};
use super::ownership::{claim, is_controlled_by};
use super::pods::controller_ref;
use super::replication::{pod_from_template, slow_start_batch};
use crate::api::batch::JOB_NAME_LABEL;
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::{Event, EventType, KeyValue};
use tracking::{
    has_tracking_finalizer, BackoffRecord, Deletion, COMPLETION_INDEX, COMPLETION_INDEX_ENV,
    INDEX_FAILURE_COUNT, TRACKING_FINALIZER,
};

/// Concurrent reconciles.
const WORKERS: usize = 4;
/// Event source component.
const COMPONENT: &str = "job-controller";
/// Slack added to timed requeues so the deadline has passed when the sync runs.
const REQUEUE_SLACK: Duration = Duration::from_millis(100);

pub fn jobs_def() -> &'static ResourceDef {
    resources::by_plural("batch", "v1", "jobs").expect("served")
}

fn pods_def() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

struct Controller {
    client: Arc<dyn Client>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
    expectations: Expectations,
    /// Pod failure back-off per Job uid (in memory, as upstream).
    backoff: Mutex<HashMap<String, BackoffRecord>>,
}

/// Runs the Job controller until aborted.
pub async fn run(client: Arc<dyn Client>, clock: Arc<dyn Clock>) {
    let controller = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        clock,
        expectations: Expectations::default(),
        backoff: Mutex::new(HashMap::new()),
    });
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            jobs_def(),
            queue.clone(),
            Box::new(|ev| vec![object_key(&ev.kv.value)]),
        ),
        Informer::start(client, pods_def(), queue.clone(), {
            let controller = controller.clone();
            Box::new(move |ev| controller.pod_changed(ev))
        }),
    ];
    wait_for_sync(&informers).await;
    run_workers(COMPONENT, queue, WORKERS, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(&key).await }
    })
    .await;
}

/// The key of the Job a pod belongs to: its controller, else (for orphans still
/// holding the tracking finalizer) the Job its `job-name` label names.
fn job_key_of(pod: &Value) -> Option<String> {
    let ns = object::namespace(pod)?;
    if let Some(r) = controller_ref(pod) {
        return (r["kind"] == "Job" && r["apiVersion"] == "batch/v1")
            .then(|| format!("{ns}/{}", r["name"].as_str().unwrap_or("")));
    }
    if !has_tracking_finalizer(pod) {
        return None;
    }
    let name = pod["metadata"]["labels"][JOB_NAME_LABEL].as_str()?;
    Some(format!("{ns}/{name}"))
}

impl Controller {
    fn pod_changed(&self, ev: &Event) -> Vec<String> {
        let pod = &*ev.kv.value;
        let mut keys = Vec::new();
        if let Some(key) = job_key_of(pod) {
            if controller_ref(pod).is_some() {
                match ev.kind {
                    EventType::Added => self.expectations.creation_observed(&key),
                    EventType::Deleted => {
                        self.expectations.deletion_observed(&key, &object_key(pod))
                    }
                    EventType::Modified if object::is_deleting(pod) => {
                        self.expectations.deletion_observed(&key, &object_key(pod))
                    }
                    EventType::Modified => {}
                }
            }
            keys.push(key);
        }
        if let Some(prev) = ev.prev.as_ref().and_then(|p| job_key_of(&p.value)) {
            if !keys.contains(&prev) {
                keys.push(prev);
            }
        }
        keys
    }

    async fn reconcile(&self, key: &str) -> Reconciled {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let job = match self.client.get(jobs_def(), Some(ns), name) {
            Ok(kv) => kv,
            Err(e) if e.code == 404 => {
                self.expectations.forget(key);
                self.release_orphans(ns, name, None).await?;
                return Ok(None);
            }
            Err(e) => return Err(e),
        };
        let job_value = &*job.value;
        let uid = object::uid(job_value).unwrap_or("").to_string();
        if object::is_deleting(job_value) {
            self.release_orphans(ns, name, Some(&uid)).await?;
            return Ok(None);
        }
        if tracking::is_finished(job_value) {
            self.backoff_records().remove(&uid);
            self.release_orphans(ns, name, Some(&uid)).await?;
            return self.after_finished(job_value).await;
        }
        let pods = self.owned_pods(job_value).await?;
        if !self.expectations.satisfied(key) {
            // Creations or deletions in flight: their watch events requeue the Job.
            return Ok(None);
        }
        let now = self.clock.now();
        let plan = {
            let mut records = self.backoff_records();
            let record = records.entry(uid.clone()).or_default();
            tracking::plan(job_value, &pods, record, now)
        };
        if plan.status != job_value["status"] {
            let mut body = job_value.clone();
            body["status"] = plan.status.clone();
            self.client
                .update_status(jobs_def(), Some(ns), name, body)
                .await?;
        }
        for event in &plan.events {
            let ty = if event.warning { WARNING } else { NORMAL };
            self.recorder
                .record(job_value, ty, event.reason, &event.message)
                .await;
        }
        let removals = plan
            .remove_finalizers
            .iter()
            .map(|p| self.remove_finalizer(&p.value));
        first_error(join_all(removals).await)?;
        self.delete_pods(key, job_value, &plan.delete).await?;
        self.create_pods(key, job_value, &plan.create, &plan.index_failures)
            .await?;
        Ok(plan.requeue_after.map(|d| d + REQUEUE_SLACK))
    }

    fn backoff_records(&self) -> std::sync::MutexGuard<'_, HashMap<String, BackoffRecord>> {
        self.backoff.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The pods the Job controls, after adopting orphans its selector matches.
    async fn owned_pods(&self, job: &Value) -> Result<Vec<KeyValue>, ApiError> {
        let ns = object::namespace(job);
        let uid = object::uid(job).unwrap_or("");
        let selector = LabelSelector::from_k8s(&job["spec"]["selector"]).ok();
        let candidates = self.client.list(pods_def(), ns, &|p| {
            is_controlled_by(&p.value, uid)
                || selector
                    .as_ref()
                    .is_some_and(|s| s.matches(object::labels(&p.value)))
        });
        match selector.filter(|s| !s.is_empty()) {
            Some(s) => claim(&*self.client, jobs_def(), job, &s, pods_def(), candidates).await,
            None => Ok(candidates
                .into_iter()
                .filter(|p| is_controlled_by(&p.value, uid))
                .collect()),
        }
    }

    /// Removes the tracking finalizer from the pods of a Job that is gone, being deleted
    /// or finished (`uid` of the Job, `None` when it no longer exists): nothing will
    /// count them any more.
    async fn release_orphans(
        &self,
        ns: &str,
        name: &str,
        uid: Option<&str>,
    ) -> Result<(), ApiError> {
        let pods = self.client.list(pods_def(), Some(ns), &|p| {
            let pod = &*p.value;
            has_tracking_finalizer(pod)
                && match controller_ref(pod) {
                    Some(r) => {
                        r["kind"] == "Job"
                            && r["name"] == name
                            && (uid.is_none() || r["uid"] == uid.unwrap_or(""))
                    }
                    None => pod["metadata"]["labels"][JOB_NAME_LABEL] == name,
                }
        });
        first_error(join_all(pods.iter().map(|p| self.remove_finalizer(&p.value))).await)
    }

    async fn remove_finalizer(&self, pod: &Value) -> Result<(), ApiError> {
        let uid = object::uid(pod).unwrap_or("").to_string();
        let result = self
            .client
            .modify(
                pods_def(),
                object::namespace(pod),
                object::name(pod),
                None,
                &|cur| {
                    if object::uid(cur) != Some(uid.as_str()) {
                        return Err(ApiError::not_found(pods_def(), object::name(cur)));
                    }
                    let mut cur = cur.clone();
                    let meta = &mut cur["metadata"];
                    if let Some(list) = meta["finalizers"].as_array_mut() {
                        list.retain(|f| f != TRACKING_FINALIZER);
                        if list.is_empty() {
                            meta.as_object_mut().map(|m| m.remove("finalizers"));
                        }
                    }
                    Ok(cur)
                },
            )
            .await;
        match result {
            Err(e) if e.code != 404 => Err(e),
            _ => Ok(()),
        }
    }

    async fn delete_pods(
        &self,
        key: &str,
        job: &Value,
        victims: &[Deletion],
    ) -> Result<(), ApiError> {
        if victims.is_empty() {
            return Ok(());
        }
        self.expectations
            .expect_deletions(key, victims.iter().map(|d| object_key(&d.pod.value)));
        let results = join_all(victims.iter().map(|d| async move {
            let pod = &*d.pod.value;
            if d.uncounted {
                self.remove_finalizer(pod).await?;
            }
            let opts = DeleteOptions {
                precondition_uid: object::uid(pod).map(str::to_string),
                ..Default::default()
            };
            let result = self
                .client
                .delete(pods_def(), object::namespace(pod), object::name(pod), &opts)
                .await;
            match &result {
                Ok(_) => {
                    let message = format!("Deleted pod: {}", object::name(pod));
                    self.recorder
                        .record(job, NORMAL, "SuccessfulDelete", &message)
                        .await;
                }
                Err(e) if e.code != 404 => {
                    let message = format!("Error deleting: {}", e.message);
                    self.recorder
                        .record(job, WARNING, "FailedDelete", &message)
                        .await;
                }
                Err(_) => {}
            }
            result.map(|_| ())
        }))
        .await;
        let mut errors = Vec::new();
        for (d, result) in victims.iter().zip(results) {
            if let Err(e) = result {
                self.expectations
                    .deletion_observed(key, &object_key(&d.pod.value));
                if e.code != 404 {
                    errors.push(e);
                }
            }
        }
        errors.into_iter().next().map_or(Ok(()), Err)
    }

    async fn create_pods(
        &self,
        key: &str,
        job: &Value,
        indexes: &[Option<i64>],
        index_failures: &HashMap<i64, i64>,
    ) -> Result<(), ApiError> {
        if indexes.is_empty() {
            return Ok(());
        }
        self.expectations.expect_creations(key, indexes.len());
        let next = std::sync::atomic::AtomicUsize::new(0);
        let (created, error) = slow_start_batch(indexes.len(), 1, || {
            let i = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let index = indexes[i];
            let failures = index.and_then(|ix| index_failures.get(&ix).copied());
            self.create_pod(job, index, failures)
        })
        .await;
        for _ in created..indexes.len() {
            self.expectations.creation_observed(key);
        }
        error.map_or(Ok(()), Err)
    }

    async fn create_pod(
        &self,
        job: &Value,
        index: Option<i64>,
        failures: Option<i64>,
    ) -> Result<(), ApiError> {
        let body = job_pod(job, index, failures);
        match self
            .client
            .create(pods_def(), object::namespace(job), body)
            .await
        {
            Ok(w) => {
                let message = format!("Created pod: {}", object::name(&w.kv.value));
                self.recorder
                    .record(job, NORMAL, "SuccessfulCreate", &message)
                    .await;
                Ok(())
            }
            Err(e) => {
                let message = format!("Error creating: {}", e.message);
                self.recorder
                    .record(job, WARNING, "FailedCreate", &message)
                    .await;
                Err(e)
            }
        }
    }

    /// A finished Job with `ttlSecondsAfterFinished` is deleted (with its pods, in the
    /// foreground) once that time has passed (upstream's TTL-after-finished controller).
    async fn after_finished(&self, job: &Value) -> Reconciled {
        let Some(ttl) = job["spec"]["ttlSecondsAfterFinished"].as_i64() else {
            return Ok(None);
        };
        let Some(finished) = tracking::finish_time_of(job) else {
            return Ok(None);
        };
        let expires = finished + chrono::Duration::seconds(ttl);
        let now = self.clock.now();
        if expires > now {
            return Ok((expires - now).to_std().ok().map(|d| d + REQUEUE_SLACK));
        }
        let opts = DeleteOptions {
            propagation: Some("Foreground".into()),
            precondition_uid: object::uid(job).map(str::to_string),
            ..Default::default()
        };
        tracing::info!(job = %object_key(job), "deleting finished job after its TTL");
        match self
            .client
            .delete(jobs_def(), object::namespace(job), object::name(job), &opts)
            .await
        {
            Err(e) if e.code != 404 => Err(e),
            _ => Ok(None),
        }
    }
}

fn first_error(results: Vec<Result<(), ApiError>>) -> Result<(), ApiError> {
    results.into_iter().find(|r| r.is_err()).unwrap_or(Ok(()))
}

/// The pod a Job creates (upstream `GetPodFromTemplate` plus the Job's additions): the
/// tracking finalizer, and for Indexed Jobs the completion index as annotation, label,
/// `JOB_COMPLETION_INDEX` (downward API), hostname `<job>-<index>` and name prefix.
pub fn job_pod(job: &Value, index: Option<i64>, index_failures: Option<i64>) -> Value {
    let mut pod = pod_from_template(job);
    let meta = &mut pod["metadata"];
    let mut finalizers = meta["finalizers"].as_array().cloned().unwrap_or_default();
    if !finalizers.iter().any(|f| f == TRACKING_FINALIZER) {
        finalizers.push(json!(TRACKING_FINALIZER));
    }
    meta["finalizers"] = json!(finalizers);
    let Some(ix) = index else {
        return pod;
    };
    let name = object::name(job);
    let text = ix.to_string();
    meta["generateName"] = json!(format!("{name}-{ix}-"));
    for field in ["annotations", "labels"] {
        if !meta[field].is_object() {
            meta[field] = json!({});
        }
        meta[field][COMPLETION_INDEX] = json!(text);
    }
    if let Some(failures) = index_failures {
        meta["annotations"][INDEX_FAILURE_COUNT] = json!(failures.to_string());
    }
    let spec = &mut pod["spec"];
    spec["hostname"] = json!(format!("{name}-{ix}"));
    let env = json!({"name": COMPLETION_INDEX_ENV, "valueFrom": {"fieldRef": {
        "apiVersion": "v1",
        "fieldPath": format!("metadata.annotations['{COMPLETION_INDEX}']"),
    }}});
    for list in ["initContainers", "containers"] {
        for c in spec[list].as_array_mut().into_iter().flatten() {
            if !c["env"].is_array() {
                c["env"] = json!([]);
            }
            let vars = c["env"].as_array_mut().expect("just made an array");
            if !vars.iter().any(|v| v["name"] == COMPLETION_INDEX_ENV) {
                vars.push(env.clone());
            }
        }
    }
    pod
}
