//! Workload controllers (ReplicationController, ReplicaSet, Deployment) against a real
//! in-process registry on the in-memory store, on a paused tokio clock (timestamps follow
//! it through `TokioClock`). Nothing schedules or runs pods here: tests mark pods ready
//! by writing their status, as a kubelet would.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::clock::{Clock, TokioClock};
use super::deployment::{self, POD_TEMPLATE_HASH_LABEL, REVISION_ANNOTATION};
use super::framework::{object_key, Client};
use super::pods;
use super::replication::{self, REPLICATION_CONTROLLER, REPLICA_SET};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::apiserver::registry::{DeleteOptions, Registry, WriteOptions};
use crate::controllers::testutil;
use crate::store::{EventType, KeyValue};

pub const NS: &str = "default";
/// How long (of tokio time) one condition may take to hold.
const WAIT: Duration = Duration::from_secs(20);
/// How long (of tokio time) a whole scenario may take.
const SCENARIO_DEADLINE: Duration = Duration::from_secs(600);

/// Runs a scenario under a deadline, so controllers that stop making progress fail the
/// test instead of hanging it.
async fn within_deadline(scenario: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(SCENARIO_DEADLINE, scenario)
        .await
        .expect("scenario deadlocked");
}

pub struct Harness {
    pub registry: Arc<Registry>,
    clock: Arc<TokioClock>,
    tasks: JoinSet<()>,
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

pub fn def(group: &str, plural: &str) -> &'static ResourceDef {
    resources::by_plural(group, "v1", plural).expect("served")
}

pub fn pods_def() -> &'static ResourceDef {
    def("", "pods")
}

impl Harness {
    /// A registry with namespace `default` and no controllers running yet.
    pub async fn new() -> Harness {
        Harness {
            registry: testutil::registry().await,
            clock: Arc::new(TokioClock::new()),
            tasks: JoinSet::new(),
        }
    }

    pub fn start_replication(&mut self) {
        for kind in [&REPLICATION_CONTROLLER, &REPLICA_SET] {
            let clock = self.clock.clone();
            self.tasks
                .spawn(replication::run(self.registry.clone(), kind, clock));
        }
    }

    /// The replica set controller and the deployment controller.
    pub fn start_deployments(&mut self) {
        let clock = self.clock.clone();
        self.tasks
            .spawn(replication::run(self.registry.clone(), &REPLICA_SET, clock));
        self.tasks
            .spawn(deployment::run(self.registry.clone(), self.clock.clone()));
    }

    pub async fn create(&self, def: &ResourceDef, body: Value) -> Value {
        let w = self
            .registry
            .create(def, Some(NS), body, &WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("create {}: {e}", def.kind));
        (*w.kv.value).clone()
    }

    pub fn get(&self, def: &ResourceDef, name: &str) -> Value {
        (*self
            .registry
            .get(def, Some(NS), name)
            .expect("exists")
            .value)
            .clone()
    }

    pub async fn modify(&self, def: &ResourceDef, name: &str, f: impl Fn(&mut Value) + Sync) {
        self.registry
            .modify(
                def,
                Some(NS),
                name,
                None,
                &WriteOptions::default(),
                &|cur| {
                    let mut cur = cur.clone();
                    f(&mut cur);
                    Ok(cur)
                },
            )
            .await
            .unwrap_or_else(|e| panic!("modify {name}: {e}"));
    }

    /// All pods, oldest first.
    pub fn pods(&self) -> Vec<KeyValue> {
        let mut items = self
            .registry
            .list(pods_def(), Some(NS), None, 0, &|_| true)
            .items;
        items.sort_by_key(|p| p.create_revision);
        items
    }

    pub fn active_pods(&self) -> Vec<KeyValue> {
        self.pods()
            .into_iter()
            .filter(|p| pods::is_active(&p.value))
            .collect()
    }

    /// Marks a pod Running and Ready, as a kubelet would.
    pub async fn mark_ready(&self, name: &str) {
        let now = object::timestamp(self.clock.now());
        self.registry
            .modify(
                pods_def(),
                Some(NS),
                name,
                Some("status"),
                &WriteOptions::default(),
                &|cur| {
                    let mut cur = cur.clone();
                    cur["status"]["phase"] = json!("Running");
                    cur["status"]["conditions"] = json!([
                        {"type": "Ready", "status": "True", "lastTransitionTime": now},
                        {"type": "PodScheduled", "status": "True", "lastTransitionTime": now},
                    ]);
                    Ok(cur)
                },
            )
            .await
            .unwrap_or_else(|e| panic!("mark {name} ready: {e}"));
    }

    pub async fn delete(&self, def: &ResourceDef, name: &str) {
        self.registry
            .delete(def, Some(NS), name, &DeleteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("delete {name}: {e}"));
    }

    pub fn events(&self, reason: &str) -> Vec<String> {
        self.registry
            .list(def("", "events"), Some(NS), None, 0, &|_| true)
            .items
            .iter()
            .filter(|e| e.value["reason"] == reason)
            .map(|e| e.value["message"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// Checks `invariant` against the set of existing pods after every pod watch event
    /// (every state the store went through); returns the violations seen and a stop flag.
    pub fn watch_pods(
        &mut self,
        invariant: impl Fn(&[&Value]) -> Option<String> + Send + Sync + 'static,
    ) -> (Arc<Mutex<Vec<String>>>, Arc<AtomicBool>) {
        let violations = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (items, _, mut watcher) = Client::list_and_watch(&*self.registry, pods_def());
        let (v, s) = (violations.clone(), stop.clone());
        self.tasks.spawn(async move {
            let mut current: BTreeMap<String, Value> = items
                .into_iter()
                .map(|kv| (object_key(&kv.value), (*kv.value).clone()))
                .collect();
            let check = |current: &BTreeMap<String, Value>| {
                let pods: Vec<&Value> = current.values().collect();
                if let Some(problem) = invariant(&pods) {
                    v.lock().unwrap().push(problem);
                }
            };
            check(&current);
            while !s.load(Ordering::SeqCst) {
                let Ok(ev) = watcher.next().await else { break };
                let key = object_key(&ev.kv.value);
                match ev.kind {
                    EventType::Deleted => current.remove(&key),
                    _ => current.insert(key, (*ev.kv.value).clone()),
                };
                check(&current);
            }
        });
        (violations, stop)
    }
}

impl Harness {
    /// Asserts that the controllers write nothing more once converged (an idle
    /// cluster must not keep rewriting status).
    pub async fn assert_idle(&self) {
        let before = self.registry.revision();
        // On the paused clock every task runs until idle before this sleep ends.
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(self.registry.revision(), before, "controllers keep writing");
    }
}

/// Polls `check` until it holds, panicking with `what` after [`WAIT`].
pub async fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let result = tokio::time::timeout(WAIT, async {
        while !check() {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    if result.is_err() {
        panic!("timed out waiting for {what}");
    }
}

fn template(app: &str, image: &str) -> Value {
    json!({"metadata": {"labels": {"app": app}},
           "spec": {"containers": [{"name": "c", "image": image}]}})
}

fn rc(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "v1", "kind": "ReplicationController",
           "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"app": name}, "template": template(name, "nginx:1")}})
}

fn rs(name: &str, replicas: i64) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
           "metadata": {"name": name},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": name}}, "template": template(name, "nginx:1")}})
}

fn rc_def() -> &'static ResourceDef {
    def("", "replicationcontrollers")
}

fn rs_def() -> &'static ResourceDef {
    def("apps", "replicasets")
}

fn owned_by<'a>(pods: &'a [KeyValue], uid: &str) -> Vec<&'a KeyValue> {
    pods.iter()
        .filter(|p| pods::controller_ref(&p.value).is_some_and(|r| r["uid"] == uid))
        .collect()
}

fn name_of(p: &KeyValue) -> String {
    object::name(&p.value).to_string()
}

/// Runs one scenario for both the RC and the RS (shared replica manager).
async fn for_both_kinds<F, Fut>(scenario: F)
where
    F: Fn(Harness, &'static ResourceDef, fn(&str, i64) -> Value) -> Fut,
    Fut: std::future::Future<Output = ()>,
{
    let mut h = Harness::new().await;
    h.start_replication();
    scenario(h, rc_def(), rc).await;
    let mut h = Harness::new().await;
    h.start_replication();
    scenario(h, rs_def(), rs).await;
}

#[tokio::test(start_paused = true)]
async fn converges_to_replicas_with_owner_references() {
    within_deadline(async {
        for_both_kinds(|h, def, body| async move {
            let owner = h.create(def, body("web", 3)).await;
            let uid = object::uid(&owner).unwrap().to_string();
            wait_for("3 pods", || h.active_pods().len() == 3).await;
            for p in h.pods() {
                let name = name_of(&p);
                assert!(name.starts_with("web-") && name.len() == 9, "{name}");
                assert_eq!(p.value["metadata"]["labels"]["app"], "web");
                assert_eq!(
                    p.value["metadata"]["ownerReferences"],
                    json!([{"apiVersion": owner["apiVersion"], "kind": def.kind, "name": "web",
                        "uid": uid, "controller": true, "blockOwnerDeletion": true}])
                );
            }
            wait_for("status replicas 3", || {
                let s = &h.get(def, "web")["status"];
                s["replicas"] == 3 && s["fullyLabeledReplicas"] == 3 && s["observedGeneration"] == 1
            })
            .await;
            for p in h.pods() {
                h.mark_ready(&name_of(&p)).await;
            }
            wait_for("ready status", || {
                let s = &h.get(def, "web")["status"];
                s["readyReplicas"] == 3 && s["availableReplicas"] == 3
            })
            .await;
            h.assert_idle().await;
            let created = h.events("SuccessfulCreate");
            assert_eq!(created.len(), 3);
            assert!(created.iter().all(|m| m.starts_with("Created pod: web-")));
        })
        .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn scales_up_and_down() {
    within_deadline(async {
        for_both_kinds(|h, def, body| async move {
            h.create(def, body("web", 2)).await;
            wait_for("2 pods", || h.active_pods().len() == 2).await;
            h.modify(def, "web", |o| o["spec"]["replicas"] = json!(5))
                .await;
            wait_for("5 pods", || h.active_pods().len() == 5).await;
            h.modify(def, "web", |o| o["spec"]["replicas"] = json!(1))
                .await;
            wait_for("1 pod", || h.pods().len() == 1).await;
            wait_for("status replicas 1", || {
                h.get(def, "web")["status"]["replicas"] == 1
            })
            .await;
            assert_eq!(h.events("SuccessfulDelete").len(), 4);
            h.modify(def, "web", |o| o["spec"]["replicas"] = json!(0))
                .await;
            wait_for("no pods", || h.pods().is_empty()).await;
        })
        .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn scale_down_deletes_unscheduled_then_not_ready_then_newest_first() {
    within_deadline(async {
        for_both_kinds(|h, def, body| async move {
            // Scheduled pods made beforehand (adopted): two ready, one not ready; the
            // controller adds a fourth, unscheduled one.
            for (name, node) in [("p1", "n1"), ("p2", "n2"), ("p3", "n3")] {
                let pod = json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": name, "labels": {"app": "web"}},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "nginx:1"}]}});
                h.create(pods_def(), pod).await;
            }
            h.mark_ready("p1").await;
            h.mark_ready("p2").await;
            h.create(def, body("web", 4)).await;
            wait_for("4 pods", || h.active_pods().len() == 4).await;
            let names: Vec<String> = h.pods().iter().map(name_of).collect();
            assert_eq!(names[..3], ["p1", "p2", "p3"]);
            let active_names = || -> Vec<String> { h.active_pods().iter().map(name_of).collect() };
            h.modify(def, "web", |o| o["spec"]["replicas"] = json!(3))
                .await;
            wait_for("3 active", || active_names().len() == 3).await;
            assert_eq!(active_names(), names[..3]);
            h.modify(def, "web", |o| o["spec"]["replicas"] = json!(2))
                .await;
            wait_for("2 active", || active_names().len() == 2).await;
            assert_eq!(active_names(), names[..2]);
            h.modify(def, "web", |o| o["spec"]["replicas"] = json!(1))
                .await;
            wait_for("1 active", || active_names().len() == 1).await;
            assert_eq!(active_names(), names[..1]);
        })
        .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn adopts_matching_orphans_and_releases_relabelled_pods() {
    within_deadline(async {
        for_both_kinds(|h, def, body| async move {
            let orphan = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "stray", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "nginx:1"}]}});
            h.create(pods_def(), orphan).await;
            let owner = h.create(def, body("web", 1)).await;
            let uid = object::uid(&owner).unwrap().to_string();
            wait_for("orphan adopted", || {
                pods::controller_ref(&h.get(pods_def(), "stray"))
                    .is_some_and(|r| r["uid"] == uid.as_str())
            })
            .await;
            wait_for("status replicas 1", || {
                h.get(def, "web")["status"]["replicas"] == 1
            })
            .await;
            assert_eq!(h.pods().len(), 1, "adopted orphan counts as a replica");

            h.modify(pods_def(), "stray", |p| {
                p["metadata"]["labels"]["app"] = json!("debug")
            })
            .await;
            wait_for("relabelled pod released", || {
                pods::controller_ref(&h.get(pods_def(), "stray")).is_none()
            })
            .await;
            wait_for("replacement created", || {
                owned_by(&h.pods(), &uid).len() == 1
            })
            .await;
            assert_eq!(h.pods().len(), 2);
        })
        .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn deleted_pods_are_recreated() {
    within_deadline(async {
        for_both_kinds(|h, def, body| async move {
            h.create(def, body("web", 3)).await;
            wait_for("3 pods", || h.active_pods().len() == 3).await;
            let victim = name_of(&h.pods()[1]);
            h.delete(pods_def(), &victim).await;
            wait_for("replacement", || {
                let names: Vec<String> = h.active_pods().iter().map(name_of).collect();
                names.len() == 3 && !names.contains(&victim)
            })
            .await;
        })
        .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_burst_never_over_creates() {
    within_deadline(async {
        for (def, body) in [(rc_def(), rc as fn(&str, i64) -> Value), (rs_def(), rs)] {
            let mut h = Harness::new().await;
            let (over, stop) = h.watch_pods(|pods| {
                (pods.len() > 200).then(|| format!("{} pods exist", pods.len()))
            });
            h.start_replication();
            h.create(def, body("web", 200)).await;
            wait_for("200 pods", || h.pods().len() == 200).await;
            wait_for("status replicas 200", || {
                h.get(def, "web")["status"]["replicas"] == 200
            })
            .await;
            // Give any stray second round a chance to show up (on the paused clock every
            // task runs until idle before this sleep ends).
            tokio::time::sleep(Duration::from_millis(300)).await;
            stop.store(true, Ordering::SeqCst);
            assert_eq!(h.pods().len(), 200);
            assert_eq!(*over.lock().unwrap(), Vec::<String>::new(), "over-created");
            assert_eq!(h.events("SuccessfulCreate").len(), 200);
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn failed_creates_set_replica_failure() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_replication();
        let opts = WriteOptions::default();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "doomed"}});
        let r = &h.registry;
        r.create(def("", "namespaces"), None, ns, &opts)
            .await
            .unwrap();
        r.create(rc_def(), Some("doomed"), rc("web", 0), &opts)
            .await
            .unwrap();
        // Nothing finalizes the namespace here: it stays Terminating and refuses new pods.
        r.delete(
            def("", "namespaces"),
            None,
            "doomed",
            &DeleteOptions::default(),
        )
        .await
        .unwrap();
        r.modify(rc_def(), Some("doomed"), "web", None, &opts, &|cur| {
            let mut cur = cur.clone();
            cur["spec"]["replicas"] = json!(2);
            Ok(cur)
        })
        .await
        .unwrap();
        wait_for("ReplicaFailure", || {
            let rc = r.get(rc_def(), Some("doomed"), "web").unwrap().value;
            let cond = &rc["status"]["conditions"][0];
            cond["type"] == "ReplicaFailure" && cond["reason"] == "FailedCreate"
        })
        .await;
    })
    .await;
}

// ---------------------------------------------------------------------------
// Deployments
// ---------------------------------------------------------------------------

fn deploy_def() -> &'static ResourceDef {
    def("apps", "deployments")
}

fn deploy(replicas: i64, image: &str, strategy: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "Deployment",
           "metadata": {"name": "web"},
           "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                    "strategy": strategy, "template": template("web", image)}})
}

fn rolling(surge: Value, unavailable: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": surge, "maxUnavailable": unavailable}})
}

fn image_of(obj: &Value) -> String {
    obj["spec"]["template"]["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn pod_image(pod: &Value) -> String {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn annotation(obj: &Value, key: &str) -> String {
    obj["metadata"]["annotations"][key]
        .as_str()
        .unwrap_or("")
        .to_string()
}

impl Harness {
    /// ReplicaSets, oldest first.
    fn replica_sets(&self) -> Vec<Value> {
        let mut items = self
            .registry
            .list(rs_def(), Some(NS), None, 0, &|_| true)
            .items;
        items.sort_by_key(|kv| kv.create_revision);
        items.iter().map(|kv| (*kv.value).clone()).collect()
    }

    fn progressing_reason(&self) -> String {
        let d = self.get(deploy_def(), "web");
        d["status"]["conditions"]
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == "Progressing"))
            .map(|c| c["reason"].as_str().unwrap_or("").to_string())
            .unwrap_or_default()
    }

    /// What `kubectl rollout status` waits for.
    fn rollout_complete(&self) -> bool {
        let d = self.get(deploy_def(), "web");
        let (spec, st) = (&d["spec"], &d["status"]);
        st["observedGeneration"] == d["metadata"]["generation"]
            && st["updatedReplicas"] == spec["replicas"]
            && st["replicas"] == spec["replicas"]
            && st["availableReplicas"] == spec["replicas"]
            && self.progressing_reason() == "NewReplicaSetAvailable"
    }

    fn unready_pods(&self) -> Vec<String> {
        self.active_pods()
            .iter()
            .filter(|p| !pods::is_ready(&p.value))
            .map(name_of)
            .collect()
    }

    /// Marks pods ready one at a time, as they appear, until the rollout completes.
    async fn drive_rollout(&self) {
        for _ in 0..200 {
            wait_for("rollout progress", || {
                self.rollout_complete() || !self.unready_pods().is_empty()
            })
            .await;
            if self.rollout_complete() {
                return;
            }
            let next = self.unready_pods().remove(0);
            self.mark_ready(&next).await;
        }
        panic!("rollout did not complete in 200 steps");
    }
}

#[tokio::test(start_paused = true)]
async fn deployment_runs_pods_through_a_hashed_replica_set() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_deployments();
        h.create(
            deploy_def(),
            deploy(3, "nginx:1", rolling(json!("25%"), json!("25%"))),
        )
        .await;
        wait_for("3 pods", || h.active_pods().len() == 3).await;
        let rss = h.replica_sets();
        assert_eq!(rss.len(), 1);
        let rs = &rss[0];
        let hash = rs["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL]
            .as_str()
            .expect("hash label")
            .to_string();
        assert_eq!(object::name(rs), format!("web-{hash}"));
        assert_eq!(
            rs["spec"]["selector"]["matchLabels"],
            json!({"app": "web", POD_TEMPLATE_HASH_LABEL: hash})
        );
        assert_eq!(
            rs["spec"]["template"]["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL],
            hash.as_str()
        );
        assert_eq!(annotation(rs, REVISION_ANNOTATION), "1");
        assert_eq!(annotation(rs, deployment::DESIRED_REPLICAS_ANNOTATION), "3");
        assert_eq!(annotation(rs, deployment::MAX_REPLICAS_ANNOTATION), "4");
        assert_eq!(rs["metadata"]["ownerReferences"][0]["kind"], "Deployment");
        for p in h.pods() {
            assert_eq!(
                p.value["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL],
                hash.as_str()
            );
        }
        wait_for("deployment revision", || {
            annotation(&h.get(deploy_def(), "web"), REVISION_ANNOTATION) == "1"
        })
        .await;
        h.drive_rollout().await;
        let d = h.get(deploy_def(), "web");
        // `unavailableReplicas: 0` is left out, as Go's omitempty does.
        assert_eq!(d["status"].get("unavailableReplicas"), None);
        let available = d["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Available")
            .cloned()
            .unwrap();
        assert_eq!(available["status"], "True");
        let scaled = h.events("ScalingReplicaSet");
        assert_eq!(
            scaled,
            [format!("Scaled up replica set web-{hash} from 0 to 3")]
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn scaling_a_deployment_scales_its_replica_set_without_a_rollout() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_deployments();
        h.create(
            deploy_def(),
            deploy(3, "nginx:1", rolling(json!("25%"), json!("25%"))),
        )
        .await;
        h.drive_rollout().await;
        h.modify(deploy_def(), "web", |d| d["spec"]["replicas"] = json!(5))
            .await;
        wait_for("5 pods", || h.active_pods().len() == 5).await;
        assert_eq!(h.replica_sets().len(), 1);
        h.drive_rollout().await;
        assert_eq!(annotation(&h.replica_sets()[0], REVISION_ANNOTATION), "1");
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn rolling_update_stays_within_surge_and_unavailability() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_deployments();
        h.create(
            deploy_def(),
            deploy(4, "nginx:1", rolling(json!(1), json!(1))),
        )
        .await;
        h.drive_rollout().await;
        let (violations, stop) = h.watch_pods(|pods| {
            let live: Vec<&&Value> = pods.iter().filter(|p| !object::is_deleting(p)).collect();
            let ready = live.iter().filter(|p| pods::is_ready(p)).count();
            if pods.len() > 5 {
                Some(format!("{} pods exceed replicas + maxSurge", pods.len()))
            } else if ready < 3 {
                Some(format!(
                    "only {ready} ready pods, below replicas - maxUnavailable"
                ))
            } else {
                None
            }
        });
        h.modify(deploy_def(), "web", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2")
        })
        .await;
        h.drive_rollout().await;
        stop.store(true, Ordering::SeqCst);
        assert_eq!(*violations.lock().unwrap(), Vec::<String>::new());
        let rss = h.replica_sets();
        assert_eq!(rss.len(), 2);
        assert_eq!(spec_of(&rss[0]), 0);
        assert_eq!(spec_of(&rss[1]), 4);
        assert_eq!(image_of(&rss[1]), "nginx:2");
        assert_eq!(annotation(&rss[1], REVISION_ANNOTATION), "2");
        assert_eq!(
            annotation(&h.get(deploy_def(), "web"), REVISION_ANNOTATION),
            "2"
        );
        wait_for("old pods gone", || h.pods().len() == 4).await;
        assert!(h.pods().iter().all(|p| pod_image(&p.value) == "nginx:2"));
    })
    .await;
}

fn spec_of(rs: &Value) -> i64 {
    rs["spec"]["replicas"].as_i64().unwrap()
}

#[tokio::test(start_paused = true)]
async fn recreate_removes_old_pods_before_starting_new_ones() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_deployments();
        h.create(
            deploy_def(),
            deploy(3, "nginx:1", json!({"type": "Recreate"})),
        )
        .await;
        h.drive_rollout().await;
        let (violations, stop) = h.watch_pods(|pods| {
            let hashes: std::collections::BTreeSet<&str> = pods
                .iter()
                .filter_map(|p| p["metadata"]["labels"][POD_TEMPLATE_HASH_LABEL].as_str())
                .collect();
            (hashes.len() > 1).then(|| format!("old and new pods together: {hashes:?}"))
        });
        h.modify(deploy_def(), "web", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2")
        })
        .await;
        h.drive_rollout().await;
        stop.store(true, Ordering::SeqCst);
        assert_eq!(*violations.lock().unwrap(), Vec::<String>::new());
        assert_eq!(h.pods().len(), 3);
        assert!(h.pods().iter().all(|p| pod_image(&p.value) == "nginx:2"));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn undo_scales_the_old_replica_set_back_up() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_deployments();
        h.create(
            deploy_def(),
            deploy(2, "nginx:1", rolling(json!(1), json!(0))),
        )
        .await;
        h.drive_rollout().await;
        h.modify(deploy_def(), "web", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2")
        })
        .await;
        h.drive_rollout().await;
        let before: Vec<String> = h
            .replica_sets()
            .iter()
            .map(|rs| object::name(rs).to_string())
            .collect();
        assert_eq!(before.len(), 2);

        // What `kubectl rollout undo --to-revision=1` does: copy revision 1's template
        // (without its hash label) into the deployment.
        let first = h
            .replica_sets()
            .into_iter()
            .find(|rs| annotation(rs, REVISION_ANNOTATION) == "1")
            .expect("revision 1 kept");
        let mut template = first["spec"]["template"].clone();
        template["metadata"]["labels"]
            .as_object_mut()
            .unwrap()
            .remove(POD_TEMPLATE_HASH_LABEL);
        h.modify(deploy_def(), "web", |d| {
            d["spec"]["template"] = template.clone()
        })
        .await;
        h.drive_rollout().await;
        let after = h.replica_sets();
        let names: Vec<String> = after
            .iter()
            .map(|rs| object::name(rs).to_string())
            .collect();
        assert_eq!(names, before, "no new replica set for a rollback");
        assert_eq!(annotation(&after[0], REVISION_ANNOTATION), "3");
        assert_eq!(spec_of(&after[0]), 2);
        assert_eq!(spec_of(&after[1]), 0);
        assert_eq!(
            annotation(&h.get(deploy_def(), "web"), REVISION_ANNOTATION),
            "3"
        );
        wait_for("old pods gone", || h.pods().len() == 2).await;
        assert!(h.pods().iter().all(|p| pod_image(&p.value) == "nginx:1"));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_paused_deployment_does_not_roll_out() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_deployments();
        h.create(
            deploy_def(),
            deploy(2, "nginx:1", rolling(json!(1), json!(0))),
        )
        .await;
        h.drive_rollout().await;
        h.modify(deploy_def(), "web", |d| {
            d["spec"]["paused"] = json!(true);
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("nginx:2");
        })
        .await;
        wait_for("paused observed", || {
            let d = h.get(deploy_def(), "web");
            d["status"]["observedGeneration"] == d["metadata"]["generation"]
                && h.progressing_reason() == "DeploymentPaused"
        })
        .await;
        assert_eq!(h.replica_sets().len(), 1);
        assert!(h.pods().iter().all(|p| pod_image(&p.value) == "nginx:1"));

        h.modify(deploy_def(), "web", |d| d["spec"]["paused"] = json!(false))
            .await;
        h.drive_rollout().await;
        assert_eq!(h.replica_sets().len(), 2);
        assert!(h
            .active_pods()
            .iter()
            .all(|p| pod_image(&p.value) == "nginx:2"));
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn old_replica_sets_beyond_the_history_limit_are_deleted() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_deployments();
        let mut body = deploy(1, "nginx:1", rolling(json!(1), json!(0)));
        body["spec"]["revisionHistoryLimit"] = json!(1);
        h.create(deploy_def(), body).await;
        h.drive_rollout().await;
        for image in ["nginx:2", "nginx:3"] {
            h.modify(deploy_def(), "web", |d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(image)
            })
            .await;
            h.drive_rollout().await;
        }
        wait_for("history trimmed to 1", || h.replica_sets().len() == 2).await;
        let revisions: Vec<String> = h
            .replica_sets()
            .iter()
            .map(|rs| annotation(rs, REVISION_ANNOTATION))
            .collect();
        assert_eq!(revisions, ["2", "3"]);
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn a_stalled_rollout_reports_progress_deadline_exceeded() {
    within_deadline(async {
        let mut h = Harness::new().await;
        h.start_deployments();
        let mut body = deploy(1, "nginx:1", rolling(json!(1), json!(0)));
        body["spec"]["progressDeadlineSeconds"] = json!(1);
        h.create(deploy_def(), body).await;
        wait_for("ProgressDeadlineExceeded", || {
            h.progressing_reason() == "ProgressDeadlineExceeded"
        })
        .await;
    })
    .await;
}
