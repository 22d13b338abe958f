//! The StatefulSet controller (apps/v1), as upstream's `pkg/controller/statefulset`:
//! stable pods `<set>-<ordinal>` with their own claims, created in order (OrderedReady)
//! or all at once (Parallel), replaced from the highest ordinal down on a RollingUpdate
//! (`partition`, `maxUnavailable`) or left alone (OnDelete); revisions kept as
//! ControllerRevisions (`history`), claims owned as the retention policy says.
//!
//! `plan` decides (pure), `identity` builds pods and claims (pure), this file reads the
//! cache and writes.

pub mod identity;
pub mod plan;
#[cfg(test)]
mod tests;

use std::collections::HashSet;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::{debug, info_span, Instrument};

use super::clock::Clock;
use super::events::{Recorder, NORMAL, WARNING};
use super::framework::{
    def_of, object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled,
    WorkQueue,
};
use super::history;
use super::ownership::claim;
use super::pods::{self, controller_ref};
use super::replication::slow_start_batch;
use crate::api::object;
use crate::api::resources::ResourceDef;
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::Event;
use plan::{Action, Counts, Input, Revision};

const COMPONENT: &str = "statefulset-controller";
/// Concurrent reconciles.
const WORKERS: usize = 4;
/// How soon a sync looks again after the cache was behind its own write.
const CACHE_CATCH_UP: Duration = Duration::from_millis(200);

fn sets_def() -> &'static ResourceDef {
    def_of::<k8s_openapi::api::apps::v1::StatefulSet>()
}

fn pods_def() -> &'static ResourceDef {
    def_of::<k8s_openapi::api::core::v1::Pod>()
}

fn claims_def() -> &'static ResourceDef {
    def_of::<k8s_openapi::api::core::v1::PersistentVolumeClaim>()
}

struct Controller {
    client: Arc<dyn Client>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
}

/// Runs the StatefulSet controller until aborted.
pub async fn run(client: Arc<dyn Client>, clock: Arc<dyn Clock>) {
    let controller = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        clock,
    });
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            sets_def(),
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
        async move {
            let span = info_span!("reconcile", object = %key, kind = "StatefulSet");
            controller.reconcile(&key).instrument(span).await
        }
    })
    .await;
}

/// The set selector (None when it selects nothing).
fn selector_of(set: &Value) -> Option<LabelSelector> {
    LabelSelector::from_k8s(&set["spec"]["selector"])
        .ok()
        .filter(|s| !s.is_empty())
}

/// The set with its pod template replaced by the one a revision recorded (upstream
/// `ApplyRevision`).
fn with_template_of(set: &Value, revision: &Value) -> Value {
    let mut applied = set.clone();
    applied["spec"]["template"] = history::template_of(revision);
    applied
}

impl Controller {
    /// The sets to sync after a pod change: its controller, or for an orphan the sets
    /// whose selector matches and that name it as a member.
    fn pod_changed(&self, ev: &Event) -> Vec<String> {
        let pod = &*ev.kv.value;
        let Some(ns) = object::namespace(pod) else {
            return vec![];
        };
        let owner = |p: &Value| {
            controller_ref(p)
                .filter(|r| r["kind"] == "StatefulSet")
                .and_then(|r| r["name"].as_str())
                .map(|name| format!("{ns}/{name}"))
        };
        let mut keys: Vec<String> = owner(pod).into_iter().collect();
        if keys.is_empty() && controller_ref(pod).is_none() {
            let labels = object::labels(pod);
            keys.extend(
                self.client
                    .list(sets_def(), Some(ns), &|kv| {
                        identity::is_member(&kv.value, pod)
                            && selector_of(&kv.value).is_some_and(|s| s.matches(labels))
                    })
                    .iter()
                    .map(|kv| object_key(&kv.value)),
            );
        }
        if let Some(prev) = ev.prev.as_ref().and_then(|p| owner(&p.value)) {
            if !keys.contains(&prev) {
                keys.push(prev);
            }
        }
        keys
    }

    async fn reconcile(&self, key: &str) -> Reconciled {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Ok(kv) = self.client.get(sets_def(), Some(ns), name) else {
            return Ok(None);
        };
        let set = &*kv.value;
        if object::is_deleting(set) {
            return Ok(None);
        }
        let Some(selector) = selector_of(set) else {
            return Ok(None);
        };
        let candidates = self.client.list(pods_def(), Some(ns), &|p| {
            identity::is_member(set, &p.value)
        });
        let owned: Vec<Value> = claim(
            &*self.client,
            sets_def(),
            set,
            &selector,
            pods_def(),
            candidates,
        )
        .await?
        .into_iter()
        .map(|kv| (*kv.value).clone())
        .collect();

        let status = &set["status"];
        let revisions = history::sync(
            &*self.client,
            set,
            history::template_patch(&set["spec"]["template"]),
            status["currentRevision"].as_str(),
            status["collisionCount"].as_i64().unwrap_or(0),
        )
        .await?;
        let current_name = object::name(&revisions.current).to_string();
        let update_name = object::name(&revisions.update).to_string();
        let current_set = with_template_of(set, &revisions.current);
        let update_set = with_template_of(set, &revisions.update);

        self.sync_claim_owners(set, &owned).await?;
        let now = self.clock.now();
        let decided = plan::plan(&Input {
            set,
            pods: &owned,
            current_revision: &current_name,
            update_revision: &update_name,
            now,
        });
        debug!(actions = ?decided.actions, "sync");
        let targets = Targets {
            set,
            current: (&current_set, &current_name),
            update: (&update_set, &update_name),
        };
        let outcome = self.carry_out(&targets, &decided).await;

        self.write_status(set, decided.counts, &revisions, &current_name, &update_name)
            .await?;
        let mut live: HashSet<String> = owned
            .iter()
            .map(|p| history::pod_revision(p).to_string())
            .collect();
        live.insert(current_name);
        live.insert(update_name);
        let limit = set["spec"]["revisionHistoryLimit"].as_i64().unwrap_or(10);
        history::truncate(&*self.client, &revisions.all, &live, limit).await?;

        let retry = outcome?;
        let min_ready = set["spec"]["minReadySeconds"].as_i64().unwrap_or(0);
        let owned_kv: Vec<_> = owned
            .iter()
            .map(|p| crate::store::make_kv(&object_key(p), p.clone(), 0, 0))
            .collect();
        let available_in = pods::next_availability(&owned_kv, min_ready, now)
            .map(|d| d + Duration::from_millis(100));
        Ok(match (retry, available_in) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        })
    }

    /// Runs the plan's actions: one by one for OrderedReady (there is at most one that
    /// blocks), in slow-start batches for Parallel. `Some(delay)` asks to look again
    /// soon (the cache was behind a write, or a claim is about to go).
    async fn carry_out(
        &self,
        targets: &Targets<'_>,
        decided: &plan::Plan,
    ) -> Result<Option<Duration>, ApiError> {
        let retry = std::sync::Mutex::new(None);
        let next = AtomicUsize::new(0);
        let (_, error) = slow_start_batch(decided.actions.len(), 1, || {
            let action = &decided.actions[next.fetch_add(1, Ordering::SeqCst)];
            let retry = &retry;
            async move {
                if let Some(delay) = self.act(targets, action).await? {
                    *retry.lock().expect("retry lock") = Some(delay);
                }
                Ok(())
            }
        })
        .await;
        match error {
            Some(e) => Err(e),
            None => Ok(retry.into_inner().expect("retry lock")),
        }
    }

    async fn act(
        &self,
        targets: &Targets<'_>,
        action: &Action,
    ) -> Result<Option<Duration>, ApiError> {
        let set = targets.set;
        match action {
            Action::Create { ordinal, revision } => {
                let (template_set, revision_name) = match revision {
                    Revision::Current => targets.current,
                    Revision::Update => targets.update,
                };
                let pod = identity::new_pod(template_set, *ordinal, revision_name);
                if !self.create_claims(set, &pod, *ordinal).await? {
                    return Ok(Some(CACHE_CATCH_UP));
                }
                self.create_pod(set, pod).await
            }
            Action::Delete { name, uid } => {
                self.delete_pod(set, name, uid).await?;
                Ok(None)
            }
            Action::Relabel { name, ordinal } => {
                self.relabel(set, name, *ordinal).await?;
                Ok(None)
            }
        }
    }

    /// Creates the pod's missing claims; false when a claim is still owned by an earlier
    /// pod of that name (the garbage collector is deleting it: wait).
    async fn create_claims(
        &self,
        set: &Value,
        pod: &Value,
        ordinal: i64,
    ) -> Result<bool, ApiError> {
        let ns = object::namespace(set);
        let pod_name = object::name(pod);
        for mut claim in identity::claims_for(set, ordinal) {
            let claim_name = object::name(&claim).to_string();
            match self.client.get(claims_def(), ns, &claim_name) {
                Ok(existing) => {
                    if identity::claim_is_stale(&existing.value, pod_name) {
                        return Ok(false);
                    }
                    if object::is_deleting(&existing.value) {
                        return Err(ApiError::conflict(
                            claims_def(),
                            &claim_name,
                            &format!("pvc {claim_name} is being deleted"),
                        ));
                    }
                    continue;
                }
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
            if let Some(refs) = identity::claim_owner_refs(set, pod, &claim) {
                object::meta_mut(&mut claim).insert("ownerReferences".into(), refs);
            }
            match self.client.create(claims_def(), ns, claim).await {
                Ok(_) => {
                    let message = format!(
                        "create Claim {claim_name} Pod {pod_name} in StatefulSet {} success",
                        object::name(set)
                    );
                    self.recorder
                        .record(set, NORMAL, "SuccessfulCreate", &message)
                        .await;
                }
                Err(e) if e.reason == "AlreadyExists" => {}
                Err(e) => {
                    let message = format!(
                        "create Claim {claim_name} for Pod {pod_name} in StatefulSet {} failed error: {}",
                        object::name(set),
                        e.message
                    );
                    self.recorder
                        .record(set, WARNING, "FailedCreate", &message)
                        .await;
                    return Err(e);
                }
            }
        }
        Ok(true)
    }

    async fn create_pod(&self, set: &Value, pod: Value) -> Result<Option<Duration>, ApiError> {
        let name = object::name(&pod).to_string();
        match self
            .client
            .create(pods_def(), object::namespace(set), pod)
            .await
        {
            Ok(_) => {
                let message = format!(
                    "create Pod {name} in StatefulSet {} successful",
                    object::name(set)
                );
                self.recorder
                    .record(set, NORMAL, "SuccessfulCreate", &message)
                    .await;
                Ok(None)
            }
            // The cache had not seen the pod yet (or its predecessor is still going).
            Err(e) if e.reason == "AlreadyExists" => Ok(Some(CACHE_CATCH_UP)),
            Err(e) => {
                let message = format!(
                    "create Pod {name} in StatefulSet {} failed error: {}",
                    object::name(set),
                    e.message
                );
                self.recorder
                    .record(set, WARNING, "FailedCreate", &message)
                    .await;
                Err(e)
            }
        }
    }

    async fn delete_pod(&self, set: &Value, name: &str, uid: &str) -> Result<(), ApiError> {
        let opts = DeleteOptions {
            precondition_uid: Some(uid.to_string()),
            ..Default::default()
        };
        match self
            .client
            .delete(pods_def(), object::namespace(set), name, &opts)
            .await
        {
            Ok(_) => {
                let message = format!(
                    "delete Pod {name} in StatefulSet {} successful",
                    object::name(set)
                );
                self.recorder
                    .record(set, NORMAL, "SuccessfulDelete", &message)
                    .await;
                Ok(())
            }
            Err(e) if e.code == 404 || e.code == 409 => Ok(()),
            Err(e) => {
                let message = format!(
                    "delete Pod {name} in StatefulSet {} failed error: {}",
                    object::name(set),
                    e.message
                );
                self.recorder
                    .record(set, WARNING, "FailedDelete", &message)
                    .await;
                Err(e)
            }
        }
    }

    async fn relabel(&self, set: &Value, name: &str, ordinal: i64) -> Result<(), ApiError> {
        let result = self
            .client
            .modify(pods_def(), object::namespace(set), name, None, &|cur| {
                let mut pod = cur.clone();
                identity::set_identity(set, &mut pod, ordinal);
                Ok(pod)
            })
            .await;
        match result {
            Ok(_) => {
                let message = format!(
                    "update Pod {name} in StatefulSet {} successful",
                    object::name(set)
                );
                self.recorder
                    .record(set, NORMAL, "SuccessfulUpdate", &message)
                    .await;
                Ok(())
            }
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Gives each existing claim of the set's pods the owner references the retention
    /// policy asks for (upstream `UpdatePodClaimForRetentionPolicy`).
    async fn sync_claim_owners(&self, set: &Value, owned: &[Value]) -> Result<(), ApiError> {
        let ns = object::namespace(set);
        for pod in owned.iter().filter(|p| !object::is_deleting(p)) {
            let Some(ordinal) = identity::ordinal_of(pod) else {
                continue;
            };
            for wanted in identity::claims_for(set, ordinal) {
                let name = object::name(&wanted);
                let Ok(existing) = self.client.get(claims_def(), ns, name) else {
                    continue;
                };
                if identity::claim_owner_refs(set, pod, &existing.value).is_none() {
                    continue;
                }
                let result = self
                    .client
                    .modify(claims_def(), ns, name, None, &|cur| {
                        let mut claim = cur.clone();
                        if let Some(refs) = identity::claim_owner_refs(set, pod, cur) {
                            object::meta_mut(&mut claim).insert("ownerReferences".into(), refs);
                        }
                        Ok(claim)
                    })
                    .await;
                match result {
                    Ok(_) => {}
                    Err(e) if e.code == 404 => {}
                    Err(e) => return Err(e),
                }
            }
        }
        Ok(())
    }

    /// Writes the status (upstream `updateStatefulSetStatus`, with
    /// `completeRollingUpdate`) when it changed.
    async fn write_status(
        &self,
        set: &Value,
        counts: Counts,
        revisions: &history::Revisions,
        current_name: &str,
        update_name: &str,
    ) -> Result<(), ApiError> {
        let status = status_of(
            set,
            counts,
            revisions.collision_count,
            current_name,
            update_name,
        );
        if status == set["status"] {
            return Ok(());
        }
        let uid = object::uid(set).unwrap_or("").to_string();
        let result = self
            .client
            .modify(
                sets_def(),
                object::namespace(set),
                object::name(set),
                Some("status"),
                &|cur| {
                    if object::uid(cur) != Some(uid.as_str()) {
                        return Err(ApiError::not_found(sets_def(), object::name(set)));
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

/// The set and the two revisions new pods are built from.
struct Targets<'a> {
    set: &'a Value,
    current: (&'a Value, &'a str),
    update: (&'a Value, &'a str),
}

/// The status a sync writes, zero counts left out as upstream's JSON does (`replicas`
/// and `availableReplicas` are always written); a RollingUpdate whose pods are all
/// updated and ready makes the update revision current.
pub fn status_of(
    set: &Value,
    counts: Counts,
    collision_count: i64,
    current_name: &str,
    update_name: &str,
) -> Value {
    let mut counts = counts;
    let mut current_name = current_name;
    if set["spec"]["updateStrategy"]["type"] == "RollingUpdate"
        && counts.updated == counts.replicas
        && counts.ready == counts.replicas
    {
        counts.current = counts.updated;
        current_name = update_name;
    }
    let mut status = json!({
        "observedGeneration": set["metadata"]["generation"],
        "replicas": counts.replicas,
        "availableReplicas": counts.available,
        "currentRevision": current_name,
        "updateRevision": update_name,
    });
    for (key, n) in [
        ("readyReplicas", counts.ready),
        ("currentReplicas", counts.current),
        ("updatedReplicas", counts.updated),
        ("collisionCount", collision_count),
    ] {
        if n != 0 {
            status[key] = json!(n);
        }
    }
    if let Some(conditions) = set["status"].get("conditions") {
        status["conditions"] = conditions.clone();
    }
    status
}
