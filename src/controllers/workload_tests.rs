//! Workload controllers (ReplicationController, ReplicaSet, Deployment) against a real
//! in-process registry and SQLite store. Nothing schedules or runs pods here: tests
//! mark pods ready by writing their status, as a kubelet would.

use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::pods;
use super::replication::{self, REPLICATION_CONTROLLER, REPLICA_SET};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::apiserver::allocator::Allocators;
use crate::apiserver::registry::{DeleteOptions, Registry, WriteOptions};
use crate::store::sqlite::SqliteStore;
use crate::store::{EventType, KeyValue};

pub const NS: &str = "default";
const WAIT: Duration = Duration::from_secs(20);

pub struct Harness {
    pub registry: Arc<Registry>,
    tasks: JoinSet<()>,
    _dir: tempfile::TempDir,
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
        let dir = tempfile::tempdir().expect("tempdir");
        let store = Arc::new(SqliteStore::open(&dir.path().join("db")).expect("open store"));
        let registry = Arc::new(Registry::new(
            store,
            Allocators::new("10.43.0.0/16".parse().unwrap(), (30000, 32767)),
        ));
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        registry
            .create(def("", "namespaces"), None, ns, &WriteOptions::default())
            .await
            .expect("create namespace");
        Harness {
            registry,
            tasks: JoinSet::new(),
            _dir: dir,
        }
    }

    pub fn start_replication(&mut self) {
        self.tasks.spawn(replication::run(
            self.registry.clone(),
            &REPLICATION_CONTROLLER,
        ));
        self.tasks
            .spawn(replication::run(self.registry.clone(), &REPLICA_SET));
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
        let now = object::timestamp(chrono::Utc::now());
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

    /// Tracks the number of existing pods at every watch event; returns (max seen, stop).
    pub fn watch_pod_count(&mut self) -> (Arc<AtomicI64>, Arc<AtomicBool>) {
        let max = Arc::new(AtomicI64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let (items, _, mut watcher) = self.registry.store.snapshot_and_watch(&pods_def().prefix());
        let (m, s) = (max.clone(), stop.clone());
        self.tasks.spawn(async move {
            let mut count = items.len() as i64;
            m.fetch_max(count, Ordering::SeqCst);
            while !s.load(Ordering::SeqCst) {
                let Ok(ev) = watcher.next().await else { break };
                match ev.kind {
                    EventType::Added => count += 1,
                    EventType::Deleted => count -= 1,
                    EventType::Modified => {}
                }
                m.fetch_max(count, Ordering::SeqCst);
            }
        });
        (max, stop)
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn converges_to_replicas_with_owner_references() {
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
        let created = h.events("SuccessfulCreate");
        assert_eq!(created.len(), 3);
        assert!(created.iter().all(|m| m.starts_with("Created pod: web-")));
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scales_up_and_down() {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scale_down_deletes_unscheduled_then_not_ready_then_newest_first() {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adopts_matching_orphans_and_releases_relabelled_pods() {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deleted_pods_are_recreated() {
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
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_never_over_creates() {
    for (def, body) in [(rc_def(), rc as fn(&str, i64) -> Value), (rs_def(), rs)] {
        let mut h = Harness::new().await;
        let (max, stop) = h.watch_pod_count();
        h.start_replication();
        h.create(def, body("web", 200)).await;
        wait_for("200 pods", || h.pods().len() == 200).await;
        wait_for("status replicas 200", || {
            h.get(def, "web")["status"]["replicas"] == 200
        })
        .await;
        // Give any stray second round a chance to show up.
        tokio::time::sleep(Duration::from_millis(300)).await;
        stop.store(true, Ordering::SeqCst);
        assert_eq!(h.pods().len(), 200);
        assert!(max.load(Ordering::SeqCst) <= 200, "over-created: {max:?}");
        assert_eq!(h.events("SuccessfulCreate").len(), 200);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_creates_set_replica_failure() {
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
}
