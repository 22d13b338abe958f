//! The DaemonSet controller against a real in-process registry on the in-memory store,
//! on a paused tokio clock. No scheduler or kubelet runs: pods stay unbound (their node
//! is the one their node affinity names) and tests mark them ready or failed as a
//! kubelet would.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::placement::target_node;
use super::rollout::TEMPLATE_GENERATION_LABEL;
use crate::api::object;
use crate::apiserver::registry::{DeleteOptions, WriteOptions};
use crate::controllers::clock::TokioClock;
use crate::controllers::history::{self, REVISION_HASH_LABEL};
use crate::controllers::workload_tests::{def, pods_def, wait_for, Harness, NS};
use crate::controllers::{garbage_collector, pods};

const SCENARIO_DEADLINE: Duration = Duration::from_secs(600);

async fn within_deadline(scenario: impl std::future::Future<Output = ()>) {
    tokio::time::timeout(SCENARIO_DEADLINE, scenario)
        .await
        .expect("scenario deadlocked");
}

fn ds_def() -> &'static crate::api::resources::ResourceDef {
    def("apps", "daemonsets")
}

fn nodes() -> &'static crate::api::resources::ResourceDef {
    def("", "nodes")
}

struct Cluster {
    h: Harness,
    tasks: JoinSet<()>,
}

impl Cluster {
    async fn new() -> Cluster {
        let h = Harness::new().await;
        let mut tasks = JoinSet::new();
        tasks.spawn(super::run(h.registry.clone(), Arc::new(TokioClock::new())));
        Cluster { h, tasks }
    }

    async fn add_node(&self, name: &str, labels: Value, taints: Value) {
        let body = json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": name, "labels": labels},
            "spec": {"taints": taints},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}});
        self.h
            .registry
            .create(nodes(), None, body, &WriteOptions::default())
            .await
            .expect("create node");
    }

    async fn set_node(&self, name: &str, f: impl Fn(&mut Value) + Sync) {
        self.h
            .registry
            .modify(
                nodes(),
                None,
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
            .expect("modify node");
    }

    /// Live pods (not finished, not deleting) by the node they are meant for.
    fn pods_on(&self) -> Vec<(String, Value)> {
        let mut out: Vec<(String, Value)> = self
            .h
            .active_pods()
            .iter()
            .map(|p| {
                (
                    target_node(&p.value).unwrap_or_default(),
                    (*p.value).clone(),
                )
            })
            .collect();
        out.sort_by(|a, b| a.0.cmp(&b.0));
        out
    }

    fn nodes_with_pods(&self) -> Vec<String> {
        self.pods_on().into_iter().map(|(n, _)| n).collect()
    }

    async fn mark_all_ready(&self) {
        for (_, pod) in self.pods_on() {
            if !pods::is_ready(&pod) {
                self.h.mark_ready(object::name(&pod)).await;
            }
        }
    }

    fn status(&self, name: &str) -> Value {
        self.h.get(ds_def(), name)["status"].clone()
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.tasks.abort_all();
    }
}

fn daemon_set(name: &str, image: &str, strategy: Value) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "DaemonSet",
           "metadata": {"name": name},
           "spec": {"selector": {"matchLabels": {"app": name}},
                    "updateStrategy": strategy,
                    "template": {"metadata": {"labels": {"app": name}},
                                 "spec": {"containers": [{"name": "c", "image": image}]}}}})
}

fn rolling(unavailable: Value, surge: Value) -> Value {
    json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": unavailable, "maxSurge": surge}})
}

fn image_of(pod: &Value) -> &str {
    pod["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn one_pod_per_eligible_node_follows_node_changes() {
    within_deadline(async {
        let c = Cluster::new().await;
        c.add_node("n1", json!({}), json!([])).await;
        c.add_node("n2", json!({}), json!([])).await;
        c.add_node(
            "tainted",
            json!({}),
            json!([{"key": "dedicated", "value": "db", "effect": "NoSchedule"}]),
        )
        .await;
        let ds =
            c.h.create(
                ds_def(),
                daemon_set("agent", "img:1", rolling(json!(1), json!(0))),
            )
            .await;
        wait_for("a pod on n1 and n2", || c.nodes_with_pods() == ["n1", "n2"]).await;

        let revision = history::owned(&*c.h.registry, &c.h.get(ds_def(), "agent"));
        assert_eq!(revision.len(), 1);
        let hash = history::hash_of(&revision[0]);
        for (node, pod) in c.pods_on() {
            assert!(pod["spec"]["nodeName"].is_null(), "the scheduler binds it");
            assert_eq!(
                pod["spec"]["affinity"]["nodeAffinity"]
                    ["requiredDuringSchedulingIgnoredDuringExecution"],
                json!({"nodeSelectorTerms": [{"matchFields": [
                    {"key": "metadata.name", "operator": "In", "values": [node]}]}]})
            );
            let labels = &pod["metadata"]["labels"];
            assert_eq!(labels[REVISION_HASH_LABEL], hash.as_str());
            assert_eq!(labels[TEMPLATE_GENERATION_LABEL], "1");
            assert_eq!(labels["app"], "agent");
            let tolerations = pod["spec"]["tolerations"].as_array().expect("tolerations");
            assert!(tolerations.iter().any(
                |t| t["key"] == "node.kubernetes.io/unreachable" && t["effect"] == "NoExecute"
            ));
            assert!(object::name(&pod).starts_with("agent-"));
            assert_eq!(
                pod["metadata"]["ownerReferences"][0]["uid"],
                ds["metadata"]["uid"]
            );
        }
        wait_for("status counts two nodes", || {
            let s = c.status("agent");
            s["desiredNumberScheduled"] == 2
                && s["currentNumberScheduled"] == 2
                && s["numberMisscheduled"] == 0
                && s["updatedNumberScheduled"] == 2
                && s["numberUnavailable"] == 2
                && s["observedGeneration"] == 1
        })
        .await;
        c.mark_all_ready().await;
        wait_for("two ready and available", || {
            let s = c.status("agent");
            s["numberReady"] == 2
                && s["numberAvailable"] == 2
                && s.get("numberUnavailable").is_none()
        })
        .await;

        // A NoExecute taint evicts; a new node gets its pod at once.
        c.set_node("n2", |n| {
            n["spec"]["taints"] = json!([{"key": "maintenance", "effect": "NoExecute"}]);
        })
        .await;
        c.add_node("n3", json!({}), json!([])).await;
        wait_for("n2 loses its pod, n3 gets one", || {
            c.nodes_with_pods() == ["n1", "n3"]
        })
        .await;

        // Labels: a node selector narrows the set, the matching node gains again.
        c.h.modify(ds_def(), "agent", |d| {
            d["spec"]["template"]["spec"]["nodeSelector"] = json!({"agent": "yes"});
        })
        .await;
        c.set_node("n3", |n| n["metadata"]["labels"]["agent"] = json!("yes"))
            .await;
        wait_for("only n3 keeps a pod", || c.nodes_with_pods() == ["n3"]).await;
        c.set_node("n2", |n| {
            n["spec"]["taints"] = json!([]);
            n["metadata"]["labels"]["agent"] = json!("yes");
        })
        .await;
        wait_for("n2 is eligible again", || {
            c.nodes_with_pods() == ["n2", "n3"]
        })
        .await;
        c.h.assert_idle().await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn rolling_update_keeps_at_most_max_unavailable_nodes_down() {
    within_deadline(async {
        let mut c = Cluster::new().await;
        for n in ["n1", "n2", "n3"] {
            c.add_node(n, json!({}), json!([])).await;
        }
        c.h.create(
            ds_def(),
            daemon_set("agent", "img:1", rolling(json!(1), json!(0))),
        )
        .await;
        wait_for("three pods", || c.pods_on().len() == 3).await;
        c.mark_all_ready().await;
        // From now on, at least two nodes always have a ready pod.
        let (violations, stop) = c.h.watch_pods(|pods| {
            let ready: BTreeSet<String> = pods
                .iter()
                .filter(|p| pods::is_ready(p) && !object::is_deleting(p))
                .filter_map(|p| target_node(p))
                .collect();
            (ready.len() < 2).then(|| format!("only {} nodes ready", ready.len()))
        });
        c.h.modify(ds_def(), "agent", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
        })
        .await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let on = c.pods_on();
            if on.len() == 3
                && on
                    .iter()
                    .all(|(_, p)| image_of(p) == "img:2" && pods::is_ready(p))
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rollout stalled: {on:?}"
            );
            c.mark_all_ready().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(violations.lock().unwrap().clone(), Vec::<String>::new());
        wait_for("status shows the rollout done", || {
            let s = c.status("agent");
            s["updatedNumberScheduled"] == 3
                && s["numberAvailable"] == 3
                && s["observedGeneration"] == 2
        })
        .await;
        let ds = c.h.get(ds_def(), "agent");
        let revisions = history::owned(&*c.h.registry, &ds);
        assert_eq!(
            revisions.iter().map(history::number).collect::<Vec<_>>(),
            [1, 2]
        );
        for (_, pod) in c.pods_on() {
            assert_eq!(pod["metadata"]["labels"][TEMPLATE_GENERATION_LABEL], "2");
        }
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn surge_starts_the_new_pod_before_the_old_one_goes() {
    within_deadline(async {
        let mut c = Cluster::new().await;
        for n in ["n1", "n2"] {
            c.add_node(n, json!({}), json!([])).await;
        }
        c.h.create(
            ds_def(),
            daemon_set("agent", "img:1", rolling(json!(0), json!(1))),
        )
        .await;
        wait_for("two pods", || c.pods_on().len() == 2).await;
        c.mark_all_ready().await;
        let (violations, stop) = c.h.watch_pods(|pods| {
            let ready: BTreeSet<String> = pods
                .iter()
                .filter(|p| pods::is_ready(p) && !object::is_deleting(p))
                .filter_map(|p| target_node(p))
                .collect();
            let live = pods.iter().filter(|p| !object::is_deleting(p)).count();
            if ready.len() < 2 {
                Some(format!("only {} nodes ready", ready.len()))
            } else if live > 3 {
                Some(format!("{live} pods: more than maxSurge extra"))
            } else {
                None
            }
        });
        c.h.modify(ds_def(), "agent", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
        })
        .await;
        wait_for("a surge pod next to an old one", || c.pods_on().len() == 3).await;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            let on = c.pods_on();
            if on.len() == 2
                && on
                    .iter()
                    .all(|(_, p)| image_of(p) == "img:2" && pods::is_ready(p))
            {
                break;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "rollout stalled: {on:?}"
            );
            c.mark_all_ready().await;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        assert_eq!(violations.lock().unwrap().clone(), Vec::<String>::new());
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn on_delete_waits_for_pods_to_be_deleted() {
    within_deadline(async {
        let c = Cluster::new().await;
        c.add_node("n1", json!({}), json!([])).await;
        c.h.create(
            ds_def(),
            daemon_set("agent", "img:1", json!({"type": "OnDelete"})),
        )
        .await;
        wait_for("a pod", || c.pods_on().len() == 1).await;
        c.mark_all_ready().await;
        c.h.modify(ds_def(), "agent", |d| {
            d["spec"]["template"]["spec"]["containers"][0]["image"] = json!("img:2");
        })
        .await;
        wait_for("the new revision observed", || {
            c.status("agent")["observedGeneration"] == 2
        })
        .await;
        c.h.assert_idle().await;
        let (_, old) = c.pods_on().remove(0);
        assert_eq!(image_of(&old), "img:1");
        assert!(c.status("agent").get("updatedNumberScheduled").is_none());
        c.h.delete(pods_def(), object::name(&old)).await;
        wait_for("the replacement runs the new image", || {
            c.pods_on()
                .first()
                .is_some_and(|(_, p)| image_of(p) == "img:2")
        })
        .await;
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn failed_pods_are_replaced_with_back_off() {
    within_deadline(async {
        let c = Cluster::new().await;
        c.add_node("n1", json!({}), json!([])).await;
        c.h.create(
            ds_def(),
            daemon_set("agent", "img:1", rolling(json!(1), json!(0))),
        )
        .await;
        let fail = |name: String| {
            let registry = c.h.registry.clone();
            async move {
                registry
                    .modify(
                        pods_def(),
                        Some(NS),
                        &name,
                        Some("status"),
                        &WriteOptions::default(),
                        &|cur| {
                            let mut cur = cur.clone();
                            cur["status"]["phase"] = json!("Failed");
                            Ok(cur)
                        },
                    )
                    .await
                    .expect("fail pod");
            }
        };
        wait_for("a pod", || c.pods_on().len() == 1).await;
        let first = object::name(&c.pods_on()[0].1).to_string();
        fail(first.clone()).await;
        wait_for("a replacement", || {
            c.pods_on().len() == 1 && object::name(&c.pods_on()[0].1) != first
        })
        .await;
        assert_eq!(c.h.events("FailedDaemonPod").len(), 1);
        // A second failure right away waits for the back-off (2s) before replacement.
        let second = object::name(&c.pods_on()[0].1).to_string();
        let failed_at = tokio::time::Instant::now();
        fail(second.clone()).await;
        wait_for("a second replacement", || {
            c.pods_on().len() == 1 && object::name(&c.pods_on()[0].1) != second
        })
        .await;
        assert!(
            failed_at.elapsed() >= Duration::from_secs(1),
            "{:?}",
            failed_at.elapsed()
        );
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn revisions_are_truncated_and_pods_go_with_their_daemon_set() {
    within_deadline(async {
        let mut c = Cluster::new().await;
        c.tasks.spawn(garbage_collector::run(c.h.registry.clone()));
        c.add_node("n1", json!({}), json!([])).await;
        let mut body = daemon_set("agent", "img:0", rolling(json!(1), json!(0)));
        body["spec"]["revisionHistoryLimit"] = json!(1);
        c.h.create(ds_def(), body).await;
        wait_for("the first pod", || c.pods_on().len() == 1).await;
        for i in 1..=3 {
            c.h.modify(ds_def(), "agent", |d| {
                d["spec"]["template"]["spec"]["containers"][0]["image"] = json!(format!("img:{i}"));
            })
            .await;
            let image = format!("img:{i}");
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            while c
                .pods_on()
                .first()
                .is_none_or(|(_, p)| image_of(p) != image)
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "no pod with {image}"
                );
                c.mark_all_ready().await;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        c.mark_all_ready().await;
        let ds = c.h.get(ds_def(), "agent");
        wait_for("one old revision kept besides the current one", || {
            history::owned(&*c.h.registry, &ds).len() == 2
        })
        .await;
        let numbers: Vec<i64> = history::owned(&*c.h.registry, &ds)
            .iter()
            .map(history::number)
            .collect();
        assert_eq!(numbers, [3, 4]);

        c.h.registry
            .delete(ds_def(), Some(NS), "agent", &DeleteOptions::default())
            .await
            .expect("delete");
        wait_for("pods and revisions collected", || {
            c.h.pods().is_empty() && history::owned(&*c.h.registry, &ds).is_empty()
        })
        .await;
    })
    .await;
}
