//! Deployment controller (apps/v1): owns one ReplicaSet per pod template
//! (`<deployment>-<pod-template-hash>`), rolls between them (RollingUpdate with
//! maxSurge/maxUnavailable, or Recreate), keeps the revision history kubectl's
//! `rollout history/undo` reads, and reports progress conditions.
//!
//! Surge and availability are counted from the pods in the cache, not only from
//! ReplicaSet status (which lags): a ReplicaSet counts as `max(spec, live pods)` pods
//! and `min(spec, available pods)` available, so a rollout never overshoots
//! `replicas + maxSurge` pods nor drops below `replicas - maxUnavailable` available.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::clock::Clock;
use super::events::{Recorder, NORMAL};
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};
use super::ownership::{claim, owner_reference};
use super::pods::{self, controller_ref, parse_time};
use crate::api::defaults::pod_template_defaults;
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::{Event, KeyValue};

pub const REVISION_ANNOTATION: &str = "deployment.kubernetes.io/revision";
pub const DESIRED_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/desired-replicas";
pub const MAX_REPLICAS_ANNOTATION: &str = "deployment.kubernetes.io/max-replicas";
const REVISION_HISTORY_ANNOTATION: &str = "deployment.kubernetes.io/revision-history";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const ROLLBACK_TO_ANNOTATION: &str = "deprecated.deployment.rollback.to";
/// Label distinguishing the ReplicaSets (and pods) of one Deployment's templates.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Deployment annotations never copied onto its ReplicaSets.
const ANNOTATIONS_NOT_COPIED: &[&str] = &[
    LAST_APPLIED_ANNOTATION,
    REVISION_ANNOTATION,
    REVISION_HISTORY_ANNOTATION,
    DESIRED_REPLICAS_ANNOTATION,
    MAX_REPLICAS_ANNOTATION,
    ROLLBACK_TO_ANNOTATION,
];

// Condition reasons, as upstream (kubectl rollout status reads them).
const NEW_RS_CREATED: &str = "NewReplicaSetCreated";
const FOUND_NEW_RS: &str = "FoundNewReplicaSet";
const RS_UPDATED: &str = "ReplicaSetUpdated";
const NEW_RS_AVAILABLE: &str = "NewReplicaSetAvailable";
const TIMED_OUT: &str = "ProgressDeadlineExceeded";
const PAUSED: &str = "DeploymentPaused";
const RESUMED: &str = "DeploymentResumed";
const MIN_AVAILABLE: &str = "MinimumReplicasAvailable";
const MIN_UNAVAILABLE: &str = "MinimumReplicasUnavailable";

/// Concurrent reconciles.
const WORKERS: usize = 4;

fn deployments() -> &'static ResourceDef {
    resources::by_plural("apps", "v1", "deployments").expect("served")
}

fn replica_sets() -> &'static ResourceDef {
    resources::by_plural("apps", "v1", "replicasets").expect("served")
}

fn pods_def() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

// ---------------------------------------------------------------------------
// Pure helpers
// ---------------------------------------------------------------------------

fn spec_replicas(obj: &Value) -> i64 {
    obj["spec"]["replicas"].as_i64().unwrap_or(1)
}

fn status_count(obj: &Value, field: &str) -> i64 {
    obj["status"][field].as_i64().unwrap_or(0)
}

fn annotation<'a>(obj: &'a Value, key: &str) -> Option<&'a str> {
    obj["metadata"]["annotations"][key].as_str()
}

fn set_annotation(obj: &mut Value, key: &str, value: String) {
    let meta = object::meta_mut(obj);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[key] = json!(value);
}

/// The revision a ReplicaSet records (0 when absent or unparsable).
pub fn revision(rs: &Value) -> i64 {
    annotation(rs, REVISION_ANNOTATION)
        .and_then(|r| r.parse().ok())
        .unwrap_or(0)
}

fn is_rolling(d: &Value) -> bool {
    d["spec"]["strategy"]["type"]
        .as_str()
        .unwrap_or("RollingUpdate")
        == "RollingUpdate"
}

/// An int-or-percent resolved against `total`; percentages round up for surge and
/// down for unavailability, as upstream.
pub fn scaled_value(v: &Value, total: i64, round_up: bool) -> i64 {
    match v {
        Value::Number(n) => n.as_i64().unwrap_or(0),
        Value::String(s) => match s.strip_suffix('%') {
            Some(pct) => {
                let pct: i64 = pct.trim().parse().unwrap_or(0);
                let scaled = pct * total;
                if round_up {
                    (scaled + 99).div_euclid(100)
                } else {
                    scaled.div_euclid(100)
                }
            }
            None => s.trim().parse().unwrap_or(0),
        },
        _ => 0,
    }
}

/// `(maxSurge, maxUnavailable)` of a RollingUpdate deployment (upstream
/// `ResolveFenceposts`: both zero would deadlock, so unavailability becomes 1).
pub fn fenceposts(d: &Value) -> (i64, i64) {
    let desired = spec_replicas(d);
    let rolling = &d["spec"]["strategy"]["rollingUpdate"];
    let surge = scaled_value(&rolling["maxSurge"], desired, true);
    let unavailable = scaled_value(&rolling["maxUnavailable"], desired, false);
    if surge == 0 && unavailable == 0 {
        return (0, 1);
    }
    (surge, unavailable)
}

pub fn max_surge(d: &Value) -> i64 {
    if !is_rolling(d) {
        return 0;
    }
    fenceposts(d).0
}

pub fn max_unavailable(d: &Value) -> i64 {
    if !is_rolling(d) || spec_replicas(d) == 0 {
        return 0;
    }
    fenceposts(d).1.min(spec_replicas(d))
}

fn sort_keys(v: &Value) -> Value {
    match v {
        Value::Object(m) => {
            let mut keys: Vec<&String> = m.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for k in keys {
                out.insert(k.clone(), sort_keys(&m[k]));
            }
            Value::Object(out)
        }
        Value::Array(a) => Value::Array(a.iter().map(sort_keys).collect()),
        other => other.clone(),
    }
}

fn fnv32a(bytes: &[u8]) -> u32 {
    let mut hash: u32 = 0x811c_9dc5;
    for b in bytes {
        hash ^= u32::from(*b);
        hash = hash.wrapping_mul(0x0100_0193);
    }
    hash
}

/// The `pod-template-hash` of a template: stable over key order, changes with any
/// field and with the deployment's `collisionCount`. Encoded like upstream
/// (`SafeEncodeString` of the decimal FNV-32a).
pub fn pod_template_hash(template: &Value, collision_count: Option<i64>) -> String {
    const ALPHANUMS: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut text = serde_json::to_string(&sort_keys(template)).unwrap_or_default();
    if let Some(c) = collision_count {
        text.push_str(&c.to_string());
    }
    fnv32a(text.as_bytes())
        .to_string()
        .bytes()
        .map(|b| ALPHANUMS[b as usize % ALPHANUMS.len()] as char)
        .collect()
}

fn without_hash(template: &Value) -> Value {
    let mut t = template.clone();
    if let Some(labels) = t["metadata"]["labels"].as_object_mut() {
        labels.remove(POD_TEMPLATE_HASH_LABEL);
    }
    pod_template_defaults(&mut t);
    t
}

/// Whether two pod templates are equal apart from the `pod-template-hash` label.
pub fn equal_ignoring_hash(a: &Value, b: &Value) -> bool {
    sort_keys(&without_hash(a)) == sort_keys(&without_hash(b))
}

/// A deployment condition as upstream writes it.
fn condition(kind: &str, status: &str, reason: &str, message: &str, now: &str) -> Value {
    json!({"type": kind, "status": status, "lastUpdateTime": now, "lastTransitionTime": now,
           "reason": reason, "message": message})
}

fn get_condition<'a>(status: &'a Value, kind: &str) -> Option<&'a Value> {
    status["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == kind)
}

fn remove_condition(status: &mut Value, kind: &str) {
    if let Some(conds) = status["conditions"].as_array_mut() {
        conds.retain(|c| c["type"] != kind);
    }
}

/// Upstream `SetDeploymentCondition`: same status and reason is no change; same
/// status keeps the transition time.
fn set_condition(status: &mut Value, mut cond: Value) {
    if let Some(cur) = get_condition(status, cond["type"].as_str().unwrap_or("")) {
        if cur["status"] == cond["status"] && cur["reason"] == cond["reason"] {
            return;
        }
        if cur["status"] == cond["status"] {
            cond["lastTransitionTime"] = cur["lastTransitionTime"].clone();
        }
    }
    let kind = cond["type"].as_str().unwrap_or("").to_string();
    remove_condition(status, &kind);
    if !status["conditions"].is_array() {
        status["conditions"] = json!([]);
    }
    if let Some(conds) = status["conditions"].as_array_mut() {
        conds.push(cond);
    }
}

fn has_progress_deadline(d: &Value) -> bool {
    d["spec"]["progressDeadlineSeconds"]
        .as_i64()
        .is_some_and(|s| s < i64::from(i32::MAX))
}

/// Upstream `DeploymentComplete`.
pub fn deployment_complete(d: &Value, status: &Value) -> bool {
    let want = spec_replicas(d);
    status["updatedReplicas"].as_i64() == Some(want)
        && status["replicas"].as_i64() == Some(want)
        && status["availableReplicas"].as_i64() == Some(want)
        && status["observedGeneration"].as_i64().unwrap_or(0)
            >= d["metadata"]["generation"].as_i64().unwrap_or(0)
}

/// Upstream `DeploymentProgressing`: the new status shows movement since `old`.
fn deployment_progressing(old: &Value, new: &Value) -> bool {
    let n = |s: &Value, f: &str| s[f].as_i64().unwrap_or(0);
    let old_old = n(old, "replicas") - n(old, "updatedReplicas");
    let new_old = n(new, "replicas") - n(new, "updatedReplicas");
    n(new, "updatedReplicas") > n(old, "updatedReplicas")
        || new_old < old_old
        || n(new, "readyReplicas") > n(old, "readyReplicas")
        || n(new, "availableReplicas") > n(old, "availableReplicas")
}

fn progress_deadline_at(d: &Value, status: &Value) -> Option<DateTime<Utc>> {
    let cond = get_condition(status, "Progressing")?;
    let since = parse_time(&cond["lastUpdateTime"])?;
    Some(since + chrono::Duration::seconds(d["spec"]["progressDeadlineSeconds"].as_i64()?))
}

/// Upstream `DeploymentTimedOut`.
fn deployment_timed_out(d: &Value, status: &Value, now: DateTime<Utc>) -> bool {
    if !has_progress_deadline(d) {
        return false;
    }
    match get_condition(status, "Progressing") {
        None => false,
        Some(c) if c["reason"] == NEW_RS_AVAILABLE => false,
        Some(c) if c["reason"] == TIMED_OUT => true,
        Some(_) => progress_deadline_at(d, status).is_some_and(|at| at < now),
    }
}

// ---------------------------------------------------------------------------
// The controller
// ---------------------------------------------------------------------------

/// A ReplicaSet with what its pods look like right now.
#[derive(Debug, Clone)]
struct Rs {
    obj: Value,
    created: u64,
    /// Live (not finished, not terminating) pods.
    active: i64,
    /// Pods available (ready for minReadySeconds).
    available: i64,
    /// Pods not finished (terminating ones included).
    not_finished: i64,
}

impl Rs {
    fn name(&self) -> &str {
        object::name(&self.obj)
    }

    fn replicas(&self) -> i64 {
        spec_replicas(&self.obj)
    }

    /// Pods this ReplicaSet has or is about to have.
    fn pod_count(&self) -> i64 {
        self.replicas().max(self.active)
    }

    /// Available pods that will survive its pending scale-down.
    fn available_count(&self) -> i64 {
        self.replicas().min(self.available)
    }
}

struct Controller {
    client: Arc<dyn Client>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
}

/// The deployment being reconciled and the state gathered for it.
struct Pass {
    d: Value,
    key: String,
    /// Working status: conditions and collision count set during this pass.
    status: Value,
    now: DateTime<Utc>,
}

pub async fn run(client: Arc<dyn Client>, clock: Arc<dyn Clock>) {
    let controller = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), "deployment-controller"),
        client: client.clone(),
        clock,
    });
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            deployments(),
            queue.clone(),
            Box::new(|ev| vec![object_key(&ev.kv.value)]),
        ),
        Informer::start(client.clone(), replica_sets(), queue.clone(), {
            let c = controller.clone();
            Box::new(move |ev| c.replica_set_changed(ev))
        }),
        Informer::start(client, pods_def(), queue.clone(), {
            let c = controller.clone();
            Box::new(move |ev| c.pod_changed(ev))
        }),
    ];
    wait_for_sync(&informers).await;
    run_workers("deployment-controller", queue, WORKERS, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(&key).await }
    })
    .await;
}

fn deployment_owner_key(obj: &Value) -> Option<String> {
    let r = controller_ref(obj).filter(|r| r["kind"] == "Deployment")?;
    Some(format!(
        "{}/{}",
        object::namespace(obj)?,
        r["name"].as_str()?
    ))
}

impl Controller {
    fn replica_set_changed(&self, ev: &Event) -> Vec<String> {
        let rs = &*ev.kv.value;
        let mut keys: Vec<String> = deployment_owner_key(rs).into_iter().collect();
        if keys.is_empty() {
            if let Some(ns) = object::namespace(rs) {
                let labels = object::labels(rs);
                keys.extend(
                    self.client
                        .list(deployments(), Some(ns), &|kv| {
                            LabelSelector::from_k8s(&kv.value["spec"]["selector"])
                                .is_ok_and(|s| !s.is_empty() && s.matches(labels))
                        })
                        .iter()
                        .map(|kv| object_key(&kv.value)),
                );
            }
        }
        if let Some(prev) = ev
            .prev
            .as_ref()
            .and_then(|p| deployment_owner_key(&p.value))
        {
            if !keys.contains(&prev) {
                keys.push(prev);
            }
        }
        keys
    }

    fn pod_changed(&self, ev: &Event) -> Vec<String> {
        let pod = &*ev.kv.value;
        let Some(r) = controller_ref(pod).filter(|r| r["kind"] == "ReplicaSet") else {
            return vec![];
        };
        let (Some(ns), Some(rs_name)) = (object::namespace(pod), r["name"].as_str()) else {
            return vec![];
        };
        self.client
            .get(replica_sets(), Some(ns), rs_name)
            .ok()
            .and_then(|rs| deployment_owner_key(&rs.value))
            .into_iter()
            .collect()
    }

    async fn reconcile(&self, key: &str) -> Reconciled {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let Ok(kv) = self.client.get(deployments(), Some(ns), name) else {
            return Ok(None);
        };
        let d = (*kv.value).clone();
        let Some(selector) = LabelSelector::from_k8s(&d["spec"]["selector"])
            .ok()
            .filter(|s| !s.is_empty())
        else {
            tracing::warn!("deployment selects nothing; skipping");
            return Ok(None);
        };
        let candidates = self.client.list(replica_sets(), Some(ns), &|_| true);
        let claimed = claim(
            &*self.client,
            deployments(),
            &d,
            &selector,
            replica_sets(),
            candidates,
        )
        .await?;
        let mut pass = Pass {
            status: match &d["status"] {
                Value::Object(m) => Value::Object(m.clone()),
                _ => json!({}),
            },
            d,
            key: key.to_string(),
            now: self.clock.now(),
        };
        let mut rss = self.with_pods(ns, claimed);
        if object::is_deleting(&pass.d) {
            let (new, _) = self.split_new(&pass, &rss);
            return self.sync_status(&mut pass, &rss, new.as_ref()).await;
        }
        self.check_paused_conditions(&mut pass);
        if pass.d["spec"]["paused"] == true || is_scaling_event(&pass.d, &rss) {
            return self.sync_scale(&mut pass, &mut rss).await;
        }
        if is_rolling(&pass.d) {
            self.rollout_rolling(&mut pass, &mut rss).await
        } else {
            self.rollout_recreate(&mut pass, &mut rss).await
        }
    }

    /// Pairs ReplicaSets with counts of their pods, oldest ReplicaSet first.
    fn with_pods(&self, ns: &str, claimed: Vec<KeyValue>) -> Vec<Rs> {
        let mut counts: HashMap<String, (i64, i64, i64)> = HashMap::new();
        let min_ready: HashMap<String, i64> = claimed
            .iter()
            .map(|kv| {
                (
                    object::uid(&kv.value).unwrap_or("").to_string(),
                    kv.value["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
                )
            })
            .collect();
        let now = self.clock.now();
        let pods = self.client.list(pods_def(), Some(ns), &|p| {
            controller_ref(&p.value)
                .and_then(|r| r["uid"].as_str())
                .is_some_and(|uid| min_ready.contains_key(uid))
        });
        for p in pods {
            let uid = controller_ref(&p.value)
                .and_then(|r| r["uid"].as_str())
                .unwrap_or("")
                .to_string();
            let min = min_ready.get(&uid).copied().unwrap_or(0);
            let c = counts.entry(uid).or_default();
            if pods::is_active(&p.value) {
                c.0 += 1;
                if pods::is_available(&p.value, min, now) {
                    c.1 += 1;
                }
            }
            if pods::is_running_or_pending(&p.value) {
                c.2 += 1;
            }
        }
        let mut rss: Vec<Rs> = claimed
            .into_iter()
            .map(|kv| {
                let (active, available, not_finished) = counts
                    .get(object::uid(&kv.value).unwrap_or(""))
                    .copied()
                    .unwrap_or_default();
                Rs {
                    obj: (*kv.value).clone(),
                    created: kv.create_revision,
                    active,
                    available,
                    not_finished,
                }
            })
            .collect();
        rss.sort_by_key(|rs| rs.created);
        rss
    }

    /// The ReplicaSet running the deployment's current template (the oldest such, as
    /// upstream `FindNewReplicaSet`), and the others.
    fn split_new(&self, pass: &Pass, rss: &[Rs]) -> (Option<Rs>, Vec<Rs>) {
        let template = &pass.d["spec"]["template"];
        let new = rss
            .iter()
            .find(|rs| equal_ignoring_hash(&rs.obj["spec"]["template"], template))
            .cloned();
        let new_uid = new.as_ref().map(|rs| object::uid(&rs.obj).unwrap_or(""));
        let old = rss
            .iter()
            .filter(|rs| Some(object::uid(&rs.obj).unwrap_or("")) != new_uid)
            .cloned()
            .collect();
        (new, old)
    }

    /// Finds (and with `create`, creates) the new ReplicaSet, syncing revision
    /// annotations on it and on the deployment (upstream `getAllReplicaSetsAndSyncRevision`).
    async fn sync_revision(
        &self,
        pass: &mut Pass,
        rss: &mut Vec<Rs>,
        create: bool,
    ) -> Result<Option<usize>, ApiError> {
        let (new, old) = self.split_new(pass, rss);
        let new_revision = old.iter().map(|rs| revision(&rs.obj)).max().unwrap_or(0) + 1;
        if let Some(new) = new {
            let idx = rss
                .iter()
                .position(|rs| rs.obj["metadata"]["uid"] == new.obj["metadata"]["uid"])
                .expect("new replica set is listed");
            let mut updated = new.obj.clone();
            let annotations_changed = set_new_rs_annotations(&pass.d, &mut updated, new_revision);
            let min_ready = &pass.d["spec"]["minReadySeconds"];
            let min_ready_changed =
                updated["spec"]["minReadySeconds"].as_i64() != min_ready.as_i64();
            if annotations_changed || min_ready_changed {
                let annotations = updated["metadata"]["annotations"].clone();
                let min_ready = min_ready.clone();
                let written = self
                    .modify_rs(&new.obj, &|cur| {
                        let mut cur = cur.clone();
                        cur["metadata"]["annotations"] = annotations.clone();
                        cur["spec"]["minReadySeconds"] = min_ready.clone();
                        Ok(cur)
                    })
                    .await?;
                rss[idx].obj = written;
            }
            self.set_deployment_revision(pass, revision(&rss[idx].obj))
                .await?;
            if has_progress_deadline(&pass.d)
                && get_condition(&pass.status, "Progressing").is_none()
            {
                let msg = format!("Found new replica set \"{}\"", rss[idx].name());
                let now = object::timestamp(pass.now);
                set_condition(
                    &mut pass.status,
                    condition("Progressing", "True", FOUND_NEW_RS, &msg, &now),
                );
            }
            return Ok(Some(idx));
        }
        if !create {
            return Ok(None);
        }
        let collision_count = pass.status["collisionCount"].as_i64();
        let hash = pod_template_hash(&pass.d["spec"]["template"], collision_count);
        let new_replicas = new_rs_new_replicas(&pass.d, rss, None);
        let rs = new_replica_set(&pass.d, &hash, new_replicas, new_revision);
        let ns = object::namespace(&pass.d).unwrap_or("default").to_string();
        let name = object::name(&rs).to_string();
        let created = self.client.create(replica_sets(), Some(&ns), rs).await;
        let kv = match created {
            Ok(w) => w.kv,
            Err(e) if e.code == 409 => {
                // Either our own ReplicaSet raced us, or a hash collision.
                let existing = self.client.get(replica_sets(), Some(&ns), &name)?;
                let ours = controller_ref(&existing.value)
                    .is_some_and(|r| r["uid"] == pass.d["metadata"]["uid"]);
                if ours
                    && equal_ignoring_hash(
                        &existing.value["spec"]["template"],
                        &pass.d["spec"]["template"],
                    )
                {
                    existing
                } else {
                    pass.status["collisionCount"] = json!(collision_count.unwrap_or(0) + 1);
                    self.write_status(pass).await?;
                    return Err(e);
                }
            }
            Err(e) => return Err(e),
        };
        if new_replicas > 0 {
            let msg = format!("Scaled up replica set {name} from 0 to {new_replicas}");
            self.recorder
                .record(&pass.d, NORMAL, "ScalingReplicaSet", &msg)
                .await;
        }
        if has_progress_deadline(&pass.d) {
            let msg = format!("Created new replica set \"{name}\"");
            let now = object::timestamp(pass.now);
            set_condition(
                &mut pass.status,
                condition("Progressing", "True", NEW_RS_CREATED, &msg, &now),
            );
        }
        let rev = revision(&kv.value);
        rss.push(Rs {
            obj: (*kv.value).clone(),
            created: kv.create_revision,
            active: 0,
            available: 0,
            not_finished: 0,
        });
        self.set_deployment_revision(pass, rev).await?;
        Ok(Some(rss.len() - 1))
    }

    async fn set_deployment_revision(&self, pass: &mut Pass, rev: i64) -> Result<(), ApiError> {
        let rev = rev.to_string();
        if annotation(&pass.d, REVISION_ANNOTATION) == Some(rev.as_str()) {
            return Ok(());
        }
        let uid = pass.d["metadata"]["uid"].clone();
        let w = self
            .client
            .modify(
                deployments(),
                object::namespace(&pass.d),
                object::name(&pass.d),
                None,
                &|cur| {
                    if cur["metadata"]["uid"] != uid {
                        return Err(ApiError::not_found(deployments(), object::name(cur)));
                    }
                    let mut cur = cur.clone();
                    set_annotation(&mut cur, REVISION_ANNOTATION, rev.clone());
                    Ok(cur)
                },
            )
            .await?;
        let status = std::mem::take(&mut pass.status);
        pass.d = (*w.kv.value).clone();
        pass.status = status;
        Ok(())
    }

    async fn modify_rs(
        &self,
        rs: &Value,
        mutate: &(dyn Fn(&Value) -> Result<Value, ApiError> + Sync),
    ) -> Result<Value, ApiError> {
        let uid = rs["metadata"]["uid"].clone();
        let w = self
            .client
            .modify(
                replica_sets(),
                object::namespace(rs),
                object::name(rs),
                None,
                &|cur| {
                    if cur["metadata"]["uid"] != uid {
                        return Err(ApiError::not_found(replica_sets(), object::name(cur)));
                    }
                    mutate(cur)
                },
            )
            .await?;
        Ok((*w.kv.value).clone())
    }

    /// Sets a ReplicaSet's replicas (and the desired/max annotations); true when the
    /// size changed.
    async fn scale(&self, pass: &Pass, rs: &mut Rs, size: i64) -> Result<bool, ApiError> {
        let old = rs.replicas();
        let desired = spec_replicas(&pass.d);
        let max = desired + max_surge(&pass.d);
        let annotations_stale = annotation(&rs.obj, DESIRED_REPLICAS_ANNOTATION)
            != Some(desired.to_string().as_str())
            || annotation(&rs.obj, MAX_REPLICAS_ANNOTATION) != Some(max.to_string().as_str());
        if old == size && !annotations_stale {
            return Ok(false);
        }
        rs.obj = self
            .modify_rs(&rs.obj, &|cur| {
                let mut cur = cur.clone();
                cur["spec"]["replicas"] = json!(size);
                set_annotation(&mut cur, DESIRED_REPLICAS_ANNOTATION, desired.to_string());
                set_annotation(&mut cur, MAX_REPLICAS_ANNOTATION, max.to_string());
                Ok(cur)
            })
            .await?;
        if old != size {
            let direction = if size > old { "up" } else { "down" };
            let msg = format!(
                "Scaled {direction} replica set {} from {old} to {size}",
                rs.name()
            );
            self.recorder
                .record(&pass.d, NORMAL, "ScalingReplicaSet", &msg)
                .await;
        }
        Ok(old != size)
    }

    async fn rollout_rolling(&self, pass: &mut Pass, rss: &mut Vec<Rs>) -> Reconciled {
        let new_idx = self.sync_revision(pass, rss, true).await?;
        let desired = spec_replicas(&pass.d);
        // Scale the new ReplicaSet up as far as maxSurge allows.
        if let Some(i) = new_idx {
            let current = rss[i].replicas();
            let target = if current > desired {
                desired
            } else {
                new_rs_new_replicas(&pass.d, rss, Some(i))
            };
            let mut rs = rss[i].clone();
            let scaled = self.scale(pass, &mut rs, target).await?;
            rss[i] = rs;
            if scaled {
                return self.sync_rollout_status(pass, rss, new_idx).await;
            }
        }
        if self.reconcile_old_replica_sets(pass, rss, new_idx).await? {
            return self.sync_rollout_status(pass, rss, new_idx).await;
        }
        let status = calculate_status(&pass.d, &pass.status, rss, new_idx, pass.now);
        if deployment_complete(&pass.d, &status) {
            self.cleanup(pass, rss, new_idx).await?;
        }
        self.sync_rollout_status(pass, rss, new_idx).await
    }

    /// Scales old ReplicaSets down as far as maxUnavailable allows, unhealthy ones
    /// first (upstream `reconcileOldReplicaSets`). True when anything was scaled.
    async fn reconcile_old_replica_sets(
        &self,
        pass: &Pass,
        rss: &mut [Rs],
        new_idx: Option<usize>,
    ) -> Result<bool, ApiError> {
        let old: Vec<usize> = (0..rss.len()).filter(|i| Some(*i) != new_idx).collect();
        if old.iter().map(|i| rss[*i].replicas()).sum::<i64>() == 0 {
            return Ok(false);
        }
        let all_pods: i64 = rss.iter().map(Rs::pod_count).sum();
        let min_available = spec_replicas(&pass.d) - max_unavailable(&pass.d);
        let new_unavailable = new_idx
            .map(|i| rss[i].replicas() - rss[i].available_count())
            .unwrap_or(0);
        let max_scaled_down = all_pods - min_available - new_unavailable;
        if max_scaled_down <= 0 {
            return Ok(false);
        }
        // Unhealthy replicas go first: removing them costs no availability.
        let mut cleaned = 0;
        for &i in &old {
            if cleaned >= max_scaled_down {
                break;
            }
            let unhealthy = rss[i].replicas() - rss[i].available_count();
            if rss[i].replicas() == 0 || unhealthy <= 0 {
                continue;
            }
            let count = unhealthy.min(max_scaled_down - cleaned);
            let size = rss[i].replicas() - count;
            self.scale(pass, &mut rss[i], size).await?;
            cleaned += count;
        }
        // Then healthy ones, keeping minAvailable.
        let available: i64 = rss.iter().map(Rs::available_count).sum();
        let mut scaled = 0;
        if available > min_available {
            let total = available - min_available;
            for &i in &old {
                if scaled >= total {
                    break;
                }
                if rss[i].replicas() == 0 {
                    continue;
                }
                let count = rss[i].replicas().min(total - scaled);
                let size = rss[i].replicas() - count;
                self.scale(pass, &mut rss[i], size).await?;
                scaled += count;
            }
        }
        Ok(cleaned + scaled > 0)
    }

    async fn rollout_recreate(&self, pass: &mut Pass, rss: &mut Vec<Rs>) -> Reconciled {
        let mut new_idx = self.sync_revision(pass, rss, false).await?;
        let mut scaled_down = false;
        for (i, rs) in rss.iter_mut().enumerate() {
            if Some(i) != new_idx && rs.replicas() > 0 {
                scaled_down |= self.scale(pass, rs, 0).await?;
            }
        }
        if scaled_down {
            return self.sync_rollout_status(pass, rss, new_idx).await;
        }
        let old_running = rss.iter().enumerate().any(|(i, rs)| {
            Some(i) != new_idx && (rs.not_finished > 0 || status_count(&rs.obj, "replicas") > 0)
        });
        if old_running {
            return self.sync_rollout_status(pass, rss, new_idx).await;
        }
        if new_idx.is_none() {
            new_idx = self.sync_revision(pass, rss, true).await?;
        }
        if let Some(i) = new_idx {
            let desired = spec_replicas(&pass.d);
            let mut rs = rss[i].clone();
            self.scale(pass, &mut rs, desired).await?;
            rss[i] = rs;
        }
        let status = calculate_status(&pass.d, &pass.status, rss, new_idx, pass.now);
        if deployment_complete(&pass.d, &status) {
            self.cleanup(pass, rss, new_idx).await?;
        }
        self.sync_rollout_status(pass, rss, new_idx).await
    }

    /// Paused deployments and replica count changes: scale what exists, roll nothing.
    async fn sync_scale(&self, pass: &mut Pass, rss: &mut Vec<Rs>) -> Reconciled {
        let new_idx = self.sync_revision(pass, rss, false).await?;
        self.scale_proportionally(pass, rss, new_idx).await?;
        if pass.d["spec"]["paused"] == true {
            self.cleanup(pass, rss, new_idx).await?;
        }
        self.sync_status(pass, rss, new_idx.map(|i| rss[i].clone()).as_ref())
            .await
    }

    /// Upstream `scale`: a lone active ReplicaSet takes the new size; a saturated new
    /// one retires the old; otherwise a rolling deployment spreads the change over its
    /// active ReplicaSets in proportion to their size.
    async fn scale_proportionally(
        &self,
        pass: &Pass,
        rss: &mut [Rs],
        new_idx: Option<usize>,
    ) -> Result<(), ApiError> {
        let desired = spec_replicas(&pass.d);
        let active: Vec<usize> = (0..rss.len()).filter(|i| rss[*i].replicas() > 0).collect();
        let lone = match active.len() {
            0 => new_idx.or(rss.len().checked_sub(1)),
            1 => Some(active[0]),
            _ => None,
        };
        if let Some(i) = lone {
            if rss[i].replicas() != desired {
                self.scale(pass, &mut rss[i], desired).await?;
            }
            return Ok(());
        }
        if let Some(i) = new_idx {
            let rs = &rss[i];
            let saturated = rs.replicas() == desired
                && annotation(&rs.obj, DESIRED_REPLICAS_ANNOTATION)
                    == Some(desired.to_string().as_str())
                && status_count(&rs.obj, "availableReplicas") == desired;
            if saturated {
                for j in active {
                    if j != i {
                        self.scale(pass, &mut rss[j], 0).await?;
                    }
                }
                return Ok(());
            }
        }
        if !is_rolling(&pass.d) {
            return Ok(());
        }
        let current: i64 = active.iter().map(|i| rss[*i].replicas()).sum();
        let allowed = if desired > 0 {
            desired + max_surge(&pass.d)
        } else {
            0
        };
        let to_add = allowed - current;
        if to_add == 0 {
            return Ok(());
        }
        let mut order = active.clone();
        // Larger first; newer first when adding, older first when removing.
        order.sort_by(|a, b| {
            rss[*b].replicas().cmp(&rss[*a].replicas()).then_with(|| {
                if to_add > 0 {
                    rss[*b].created.cmp(&rss[*a].created)
                } else {
                    rss[*a].created.cmp(&rss[*b].created)
                }
            })
        });
        let mut sizes: Vec<(usize, i64)> = Vec::new();
        let mut added = 0;
        for &i in &order {
            let proportion = proportion(&rss[i], &pass.d, to_add, added);
            sizes.push((i, rss[i].replicas() + proportion));
            added += proportion;
        }
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
        for (i, size) in sizes {
            self.scale(pass, &mut rss[i], size).await?;
        }
        Ok(())
    }

    /// Deletes the oldest retired ReplicaSets beyond `revisionHistoryLimit`.
    async fn cleanup(
        &self,
        pass: &Pass,
        rss: &[Rs],
        new_idx: Option<usize>,
    ) -> Result<(), ApiError> {
        let Some(limit) = pass.d["spec"]["revisionHistoryLimit"].as_i64() else {
            return Ok(());
        };
        let mut cleanable: Vec<&Rs> = rss
            .iter()
            .enumerate()
            .filter(|(i, rs)| {
                Some(*i) != new_idx
                    && rs.replicas() == 0
                    && status_count(&rs.obj, "replicas") == 0
                    && status_count(&rs.obj, "observedGeneration")
                        >= rs.obj["metadata"]["generation"].as_i64().unwrap_or(0)
                    && !object::is_deleting(&rs.obj)
            })
            .map(|(_, rs)| rs)
            .collect();
        let excess = cleanable.len() as i64 - limit;
        if excess <= 0 {
            return Ok(());
        }
        cleanable.sort_by_key(|rs| (revision(&rs.obj), rs.created));
        for rs in cleanable.into_iter().take(excess as usize) {
            let opts = DeleteOptions {
                precondition_uid: object::uid(&rs.obj).map(str::to_string),
                ..Default::default()
            };
            match self
                .client
                .delete(replica_sets(), object::namespace(&rs.obj), rs.name(), &opts)
                .await
            {
                Ok(_) => {}
                Err(e) if e.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    fn check_paused_conditions(&self, pass: &mut Pass) {
        if !has_progress_deadline(&pass.d) {
            return;
        }
        let cond = get_condition(&pass.status, "Progressing");
        if cond.is_some_and(|c| c["reason"] == TIMED_OUT) {
            return;
        }
        let paused_set = cond.is_some_and(|c| c["reason"] == PAUSED);
        let paused = pass.d["spec"]["paused"] == true;
        let now = object::timestamp(pass.now);
        if paused && !paused_set {
            set_condition(
                &mut pass.status,
                condition(
                    "Progressing",
                    "Unknown",
                    PAUSED,
                    "Deployment is paused",
                    &now,
                ),
            );
        } else if !paused && paused_set {
            set_condition(
                &mut pass.status,
                condition(
                    "Progressing",
                    "Unknown",
                    RESUMED,
                    "Deployment is resumed",
                    &now,
                ),
            );
        }
    }

    /// Status without progress bookkeeping (paused, scaling, deleting).
    async fn sync_status(&self, pass: &mut Pass, rss: &[Rs], new: Option<&Rs>) -> Reconciled {
        let new_idx = new.and_then(|n| {
            rss.iter()
                .position(|rs| rs.obj["metadata"]["uid"] == n.obj["metadata"]["uid"])
        });
        pass.status = calculate_status(&pass.d, &pass.status, rss, new_idx, pass.now);
        self.write_status(pass).await?;
        Ok(None)
    }

    /// Status with the Progressing condition (upstream `syncRolloutStatus`); asks to be
    /// woken at the progress deadline of a stalled rollout.
    async fn sync_rollout_status(
        &self,
        pass: &mut Pass,
        rss: &[Rs],
        new_idx: Option<usize>,
    ) -> Reconciled {
        let mut status = calculate_status(&pass.d, &pass.status, rss, new_idx, pass.now);
        let now = object::timestamp(pass.now);
        let rs_name = new_idx.map(|i| rss[i].name().to_string());
        let subject = match &rs_name {
            Some(n) => format!("ReplicaSet \"{n}\""),
            None => format!("Deployment \"{}\"", object::name(&pass.d)),
        };
        if !has_progress_deadline(&pass.d) {
            remove_condition(&mut status, "Progressing");
        }
        let current = get_condition(&status, "Progressing").cloned();
        let is_complete = status["replicas"] == status["updatedReplicas"]
            && current
                .as_ref()
                .is_some_and(|c| c["reason"] == NEW_RS_AVAILABLE);
        if has_progress_deadline(&pass.d) && !is_complete {
            if deployment_complete(&pass.d, &status) {
                let msg = format!("{subject} has successfully progressed.");
                set_condition(
                    &mut status,
                    condition("Progressing", "True", NEW_RS_AVAILABLE, &msg, &now),
                );
            } else if deployment_progressing(&pass.d["status"], &status) {
                let msg = format!("{subject} is progressing.");
                let mut cond = condition("Progressing", "True", RS_UPDATED, &msg, &now);
                if let Some(cur) = current.as_ref().filter(|c| c["status"] == "True") {
                    cond["lastTransitionTime"] = cur["lastTransitionTime"].clone();
                    remove_condition(&mut status, "Progressing");
                }
                set_condition(&mut status, cond);
            } else if deployment_timed_out(&pass.d, &status, pass.now) {
                let msg = format!("{subject} has timed out progressing.");
                set_condition(
                    &mut status,
                    condition("Progressing", "False", TIMED_OUT, &msg, &now),
                );
            }
        }
        // Surface the new ReplicaSet's failure to create pods.
        let failure = new_idx.and_then(|i| get_condition(&rss[i].obj["status"], "ReplicaFailure"));
        match failure {
            Some(f) => {
                let reason = f["reason"].as_str().unwrap_or("FailedCreate");
                let message = f["message"].as_str().unwrap_or("");
                set_condition(
                    &mut status,
                    condition("ReplicaFailure", "True", reason, message, &now),
                );
            }
            None => remove_condition(&mut status, "ReplicaFailure"),
        }
        pass.status = status;
        self.write_status(pass).await?;
        Ok(self.stuck_requeue(pass))
    }

    /// When to look again at a rollout that may stall past its deadline.
    fn stuck_requeue(&self, pass: &Pass) -> Option<Duration> {
        let cond = get_condition(&pass.status, "Progressing")?;
        if !has_progress_deadline(&pass.d)
            || cond["reason"] == NEW_RS_AVAILABLE
            || cond["reason"] == TIMED_OUT
            || deployment_complete(&pass.d, &pass.status)
        {
            return None;
        }
        let at = progress_deadline_at(&pass.d, &pass.status)?;
        let after = (at - pass.now).to_std().unwrap_or_default();
        Some(after.max(Duration::from_secs(1)))
    }

    async fn write_status(&self, pass: &Pass) -> Result<(), ApiError> {
        let mut status = pass.status.clone();
        if status["conditions"]
            .as_array()
            .is_some_and(|c| c.is_empty())
        {
            if let Some(s) = status.as_object_mut() {
                s.remove("conditions");
            }
        }
        if status == pass.d["status"] {
            return Ok(());
        }
        let uid = pass.d["metadata"]["uid"].clone();
        let result = self
            .client
            .modify(
                deployments(),
                object::namespace(&pass.d),
                object::name(&pass.d),
                Some("status"),
                &|cur| {
                    if cur["metadata"]["uid"] != uid {
                        return Err(ApiError::not_found(deployments(), object::name(cur)));
                    }
                    let mut cur = cur.clone();
                    cur["status"] = status.clone();
                    Ok(cur)
                },
            )
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(e) if e.code == 404 => {
                tracing::debug!(object = %pass.key, "deployment gone before its status was written");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }
}

/// Whether the deployment's replica count changed under active ReplicaSets (their
/// desired-replicas annotation disagrees with `spec.replicas`).
fn is_scaling_event(d: &Value, rss: &[Rs]) -> bool {
    let desired = spec_replicas(d).to_string();
    rss.iter()
        .filter(|rs| rs.replicas() > 0)
        .filter_map(|rs| annotation(&rs.obj, DESIRED_REPLICAS_ANNOTATION))
        .any(|a| a != desired)
}

/// Upstream `GetProportion`: the share of `to_add` for `rs`.
fn proportion(rs: &Rs, d: &Value, to_add: i64, added: i64) -> i64 {
    if rs.replicas() == 0 || to_add == 0 || to_add == added {
        return 0;
    }
    let fraction = replica_set_fraction(rs, d);
    let allowed = to_add - added;
    if to_add > 0 {
        fraction.min(allowed)
    } else {
        fraction.max(allowed)
    }
}

fn replica_set_fraction(rs: &Rs, d: &Value) -> i64 {
    let desired = spec_replicas(d);
    if desired == 0 {
        return -rs.replicas();
    }
    let deployment_replicas = desired + max_surge(d);
    let annotated = annotation(&rs.obj, MAX_REPLICAS_ANNOTATION)
        .and_then(|a| a.parse::<i64>().ok())
        .unwrap_or_else(|| status_count(d, "replicas"));
    if annotated <= 0 {
        return 0;
    }
    let new_size =
        (rs.replicas() as f64 * deployment_replicas as f64 / annotated as f64).round() as i64;
    new_size - rs.replicas()
}

/// How many replicas the new ReplicaSet should have now (upstream `NewRSNewReplicas`),
/// counting pods that exist beyond their ReplicaSet's spec as still there.
fn new_rs_new_replicas(d: &Value, rss: &[Rs], new_idx: Option<usize>) -> i64 {
    let desired = spec_replicas(d);
    if !is_rolling(d) {
        return desired;
    }
    let new_replicas = new_idx.map(|i| rss[i].replicas()).unwrap_or(0);
    let current: i64 = rss.iter().map(Rs::pod_count).sum();
    let max_total = desired + max_surge(d);
    if current >= max_total {
        return new_replicas;
    }
    let scale_up = (max_total - current).min(desired - new_replicas);
    new_replicas + scale_up.max(0)
}

/// Copies deployment annotations to the new ReplicaSet and raises its revision to
/// `new_revision` when it is older (a rollback makes an old ReplicaSet new again).
fn set_new_rs_annotations(d: &Value, rs: &mut Value, new_revision: i64) -> bool {
    let mut changed = false;
    if let Some(annotations) = d["metadata"]["annotations"].as_object() {
        for (k, v) in annotations {
            if ANNOTATIONS_NOT_COPIED.contains(&k.as_str()) {
                continue;
            }
            if rs["metadata"]["annotations"][k] != *v {
                set_annotation(rs, k, v.as_str().unwrap_or("").to_string());
                changed = true;
            }
        }
    }
    if revision(rs) < new_revision {
        set_annotation(rs, REVISION_ANNOTATION, new_revision.to_string());
        changed = true;
    }
    changed
}

/// The ReplicaSet for the deployment's current template.
fn new_replica_set(d: &Value, hash: &str, replicas: i64, revision: i64) -> Value {
    let mut template = d["spec"]["template"].clone();
    template["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!(hash);
    let mut selector = d["spec"]["selector"].clone();
    selector["matchLabels"][POD_TEMPLATE_HASH_LABEL] = json!(hash);
    let desired = spec_replicas(d);
    let mut rs = json!({
        "apiVersion": "apps/v1",
        "kind": "ReplicaSet",
        "metadata": {
            "name": format!("{}-{hash}", object::name(d)),
            "namespace": object::namespace(d),
            "labels": template["metadata"]["labels"],
            "ownerReferences": [owner_reference(d)],
            "annotations": {
                DESIRED_REPLICAS_ANNOTATION: desired.to_string(),
                MAX_REPLICAS_ANNOTATION: (desired + max_surge(d)).to_string(),
            },
        },
        "spec": {
            "replicas": replicas,
            "minReadySeconds": d["spec"]["minReadySeconds"].as_i64().unwrap_or(0),
            "selector": selector,
            "template": template,
        },
    });
    set_new_rs_annotations(d, &mut rs, revision);
    rs
}

/// Upstream `calculateStatus`, over `base` (the status being built this pass).
fn calculate_status(
    d: &Value,
    base: &Value,
    rss: &[Rs],
    new_idx: Option<usize>,
    now: DateTime<Utc>,
) -> Value {
    let sum = |f: &str| -> i64 { rss.iter().map(|rs| status_count(&rs.obj, f)).sum() };
    let available = sum("availableReplicas");
    let total: i64 = rss.iter().map(Rs::replicas).sum();
    let mut status = base.clone();
    if !status.is_object() {
        status = json!({});
    }
    status["observedGeneration"] = d["metadata"]["generation"].clone();
    status["replicas"] = json!(sum("replicas"));
    status["updatedReplicas"] = json!(new_idx
        .map(|i| status_count(&rss[i].obj, "replicas"))
        .unwrap_or(0));
    status["readyReplicas"] = json!(sum("readyReplicas"));
    status["availableReplicas"] = json!(available);
    status["unavailableReplicas"] = json!((total - available).max(0));
    let now = object::timestamp(now);
    let cond = if available >= spec_replicas(d) - max_unavailable(d) {
        condition(
            "Available",
            "True",
            MIN_AVAILABLE,
            "Deployment has minimum availability.",
            &now,
        )
    } else {
        condition(
            "Available",
            "False",
            MIN_UNAVAILABLE,
            "Deployment does not have minimum availability.",
            &now,
        )
    };
    set_condition(&mut status, cond);
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn deployment(replicas: i64, surge: Value, unavailable: Value) -> Value {
        json!({"metadata": {"name": "web", "generation": 1},
               "spec": {"replicas": replicas,
                        "strategy": {"type": "RollingUpdate",
                                     "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}}}})
    }

    #[test]
    fn percentages_round_surge_up_and_unavailability_down() {
        let d = deployment(10, json!("25%"), json!("25%"));
        assert_eq!(fenceposts(&d), (3, 2));
        let d = deployment(3, json!(1), json!(0));
        assert_eq!(fenceposts(&d), (1, 0));
        let d = deployment(3, json!("0%"), json!(0));
        assert_eq!(fenceposts(&d), (0, 1), "both zero would never progress");
        let d = deployment(2, json!(0), json!(5));
        assert_eq!(max_unavailable(&d), 2);
        let mut recreate = deployment(2, json!(1), json!(1));
        recreate["spec"]["strategy"] = json!({"type": "Recreate"});
        assert_eq!((max_surge(&recreate), max_unavailable(&recreate)), (0, 0));
    }

    #[test]
    fn template_hash_is_stable_and_ignores_key_order() {
        let a = json!({"metadata": {"labels": {"app": "web", "tier": "fe"}},
                       "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}});
        let b = json!({"spec": {"containers": [{"image": "nginx:1", "name": "c"}]},
                       "metadata": {"labels": {"tier": "fe", "app": "web"}}});
        let h = pod_template_hash(&a, None);
        assert_eq!(h, pod_template_hash(&b, None));
        assert!(h.chars().all(|c| "bcdfghjklmnpqrstvwxz2456789".contains(c)));
        assert_ne!(h, pod_template_hash(&a, Some(1)));
        let mut c = a.clone();
        c["spec"]["containers"][0]["image"] = json!("nginx:2");
        assert_ne!(h, pod_template_hash(&c, None));
        let mut hashed = a.clone();
        hashed["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL] = json!(h);
        assert!(equal_ignoring_hash(&hashed, &b));
        assert!(!equal_ignoring_hash(&hashed, &c));
    }

    fn rs(replicas: i64, active: i64, available: i64, created: u64) -> Rs {
        Rs {
            obj: json!({"spec": {"replicas": replicas}}),
            created,
            active,
            available,
            not_finished: active,
        }
    }

    #[test]
    fn new_replica_set_grows_within_surge_counting_lingering_pods() {
        let d = deployment(4, json!(1), json!(1));
        // Old RS scaled to 3 but still has 4 pods: no room to surge yet.
        let rss = vec![rs(3, 4, 4, 1), rs(1, 1, 0, 2)];
        assert_eq!(new_rs_new_replicas(&d, &rss, Some(1)), 1);
        let rss = vec![rs(3, 3, 3, 1), rs(1, 1, 0, 2)];
        assert_eq!(new_rs_new_replicas(&d, &rss, Some(1)), 2);
        let rss = vec![rs(4, 4, 4, 1)];
        assert_eq!(new_rs_new_replicas(&d, &rss, None), 1);
    }

    #[test]
    fn progress_conditions_keep_transition_time_for_the_same_status() {
        let mut status = json!({});
        set_condition(
            &mut status,
            condition("Progressing", "True", NEW_RS_CREATED, "a", "t1"),
        );
        set_condition(
            &mut status,
            condition("Progressing", "True", RS_UPDATED, "b", "t2"),
        );
        let c = get_condition(&status, "Progressing").unwrap();
        assert_eq!(
            (c["reason"].as_str(), c["lastTransitionTime"].as_str()),
            (Some(RS_UPDATED), Some("t1"))
        );
        set_condition(
            &mut status,
            condition("Progressing", "False", TIMED_OUT, "c", "t3"),
        );
        let c = get_condition(&status, "Progressing").unwrap();
        assert_eq!(c["lastTransitionTime"], "t3");
    }

    #[test]
    fn a_stalled_rollout_times_out_after_the_deadline() {
        let mut d = deployment(2, json!(1), json!(0));
        d["spec"]["progressDeadlineSeconds"] = json!(10);
        let status = json!({"conditions": [condition("Progressing", "True", RS_UPDATED, "x", "2024-01-01T00:00:00Z")]});
        let before = parse_time(&json!("2024-01-01T00:00:05Z")).unwrap();
        let after = parse_time(&json!("2024-01-01T00:00:11Z")).unwrap();
        assert!(!deployment_timed_out(&d, &status, before));
        assert!(deployment_timed_out(&d, &status, after));
    }
}
