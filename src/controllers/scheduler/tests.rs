//! Scheduler tests: the cache on plain values, then the controller against a real
//! in-process Registry on the in-memory store, on a paused clock.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::time::Instant;

use super::*;
use crate::apiserver::registry::{Registry, WriteOptions};
use crate::controllers::testutil;

fn node_json(name: &str, cpu: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": cpu, "memory": memory, "pods": "110"},
            "capacity": {"cpu": cpu, "memory": memory, "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

fn pod_json(name: &str, memory: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
        "spec": {"schedulerName": "default-scheduler", "containers": [
            {"name": "c", "image": "busybox", "resources": {"requests": {"memory": memory}}}]},
        "status": {"phase": "Pending"},
    })
}

// ---------------------------------------------------------------------------
// Cache (no I/O)
// ---------------------------------------------------------------------------

fn bind_target(action: Option<Action>) -> String {
    match action {
        Some(Action::Bind { node, .. }) => node,
        other => panic!("expected a bind, got {other:?}"),
    }
}

#[test]
fn assumed_pods_keep_a_node_from_being_overcommitted() {
    let mut cache = Cache::new();
    for n in ["a", "b"] {
        cache.on_node(EventType::Added, Arc::new(node_json(n, "1", "1Gi")));
    }
    for p in ["p1", "p2", "p3"] {
        cache.on_pod(EventType::Added, Arc::new(pod_json(p, "768Mi")));
    }
    let now = Instant::now();
    let mut nodes = vec![
        bind_target(cache.next_action(now)),
        bind_target(cache.next_action(now)),
    ];
    nodes.sort();
    assert_eq!(nodes, ["a", "b"]);
    match cache.next_action(now) {
        Some(Action::ReportUnschedulable { key, message, .. }) => {
            assert_eq!(key, "default/p3");
            assert_eq!(
                message,
                "0/2 nodes are available: 2 Insufficient memory. preemption: 0/2 nodes are \
                 available: 2 Preemption is not helpful for scheduling."
            );
        }
        other => panic!("expected unschedulable, got {other:?}"),
    }
    assert_eq!(cache.next_action(now), None);
}

#[test]
fn a_failed_bind_frees_the_node_and_retries_after_backoff() {
    let mut cache = Cache::new();
    cache.on_node(EventType::Added, Arc::new(node_json("a", "1", "1Gi")));
    cache.on_pod(EventType::Added, Arc::new(pod_json("p1", "768Mi")));
    let now = Instant::now();
    assert_eq!(bind_target(cache.next_action(now)), "a");
    assert_eq!(cache.usage("a").unwrap().requested.memory, 768 << 20);
    cache.on_outcome(
        Outcome::BindFailed {
            key: "default/p1".into(),
            node: "a".into(),
            error: ApiError::internal("datastore error"),
        },
        now,
    );
    assert_eq!(cache.usage("a").unwrap().requested.memory, 0);
    assert_eq!(cache.placed_on("default/p1"), None);
    assert!(!cache.has_queued());
    cache.requeue_due(now + INITIAL_BACKOFF);
    assert_eq!(bind_target(cache.next_action(now)), "a");
}

#[test]
fn the_watch_confirms_an_assumed_pod_without_counting_it_twice() {
    let mut cache = Cache::new();
    cache.on_node(EventType::Added, Arc::new(node_json("a", "1", "1Gi")));
    cache.on_pod(EventType::Added, Arc::new(pod_json("p1", "512Mi")));
    assert_eq!(bind_target(cache.next_action(Instant::now())), "a");
    let mut bound = pod_json("p1", "512Mi");
    bound["spec"]["nodeName"] = json!("a");
    cache.on_pod(EventType::Modified, Arc::new(bound.clone()));
    cache.on_outcome(
        Outcome::Bound {
            key: "default/p1".into(),
        },
        Instant::now(),
    );
    assert_eq!(cache.usage("a").unwrap().requested.memory, 512 << 20);
    assert_eq!(cache.usage("a").unwrap().requested.pods, 1);
    // Finished pods stop counting.
    bound["status"]["phase"] = json!("Succeeded");
    cache.on_pod(EventType::Modified, Arc::new(bound));
    assert_eq!(cache.usage("a").unwrap().requested.pods, 0);
}

#[test]
fn unschedulable_pods_wait_for_a_cluster_change_not_their_own_status() {
    let mut cache = Cache::new();
    cache.on_node(EventType::Added, Arc::new(node_json("small", "1", "1Gi")));
    cache.on_pod(EventType::Added, Arc::new(pod_json("big", "2Gi")));
    let t0 = Instant::now();
    assert!(matches!(
        cache.next_action(t0),
        Some(Action::ReportUnschedulable { .. })
    ));
    // Our own status write comes back through the watch: no retry.
    let mut reported = pod_json("big", "2Gi");
    reported["status"]["conditions"] = json!([{"type": "PodScheduled", "status": "False"}]);
    cache.on_pod(EventType::Modified, Arc::new(reported));
    // A node heartbeat that changes nothing the scheduler looks at: no retry either.
    let mut heartbeat = node_json("small", "1", "1Gi");
    heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = json!("2024-01-01T00:00:00Z");
    cache.on_node(EventType::Modified, Arc::new(heartbeat));
    assert_eq!(cache.next_retry(), None);
    // A new node is a reason to retry, after the back-off.
    cache.on_node(EventType::Added, Arc::new(node_json("large", "4", "8Gi")));
    let retry = cache.next_retry().expect("retry scheduled");
    assert!(retry >= t0 + INITIAL_BACKOFF);
    cache.requeue_due(retry);
    assert_eq!(bind_target(cache.next_action(retry)), "large");
}

#[test]
fn an_unschedulable_pod_whose_labels_or_spec_change_is_tried_again_at_once() {
    let mut cache = Cache::new();
    cache.on_node(EventType::Added, Arc::new(node_json("small", "1", "1Gi")));
    cache.on_pod(EventType::Added, Arc::new(pod_json("big", "2Gi")));
    let t0 = Instant::now();
    assert!(matches!(
        cache.next_action(t0),
        Some(Action::ReportUnschedulable { .. })
    ));
    assert!(!cache.has_queued());
    let mut relabelled = pod_json("big", "2Gi");
    relabelled["metadata"]["labels"] = json!({"tier": "db"});
    cache.on_pod(EventType::Modified, Arc::new(relabelled.clone()));
    assert!(cache.has_queued(), "a label change requeues the pod");
    assert!(matches!(
        cache.next_action(t0),
        Some(Action::ReportUnschedulable { .. })
    ));
    let mut tolerating = relabelled;
    tolerating["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
    cache.on_pod(EventType::Modified, Arc::new(tolerating));
    assert!(cache.has_queued(), "a spec change requeues the pod");
}

#[test]
fn the_fit_fingerprint_follows_spec_and_labels_not_status_or_member_order() {
    let a = json!({"metadata": {"name": "p", "labels": {"a": "1", "b": "2"}},
                   "spec": {"containers": [{"name": "c", "image": "i"}], "priority": 0}});
    let mut reordered = json!({"metadata": {"labels": {"b": "2", "a": "1"}, "name": "p"},
                               "spec": {"priority": 0, "containers": [{"image": "i", "name": "c"}]}});
    assert_eq!(a, reordered);
    assert_eq!(fit_fingerprint(&a), fit_fingerprint(&reordered));
    reordered["status"] = json!({"phase": "Pending"});
    reordered["metadata"]["resourceVersion"] = json!("7");
    assert_eq!(fit_fingerprint(&a), fit_fingerprint(&reordered));
    let mut relabelled = a.clone();
    relabelled["metadata"]["labels"]["a"] = json!("9");
    assert_ne!(fit_fingerprint(&a), fit_fingerprint(&relabelled));
    let mut respecced = a.clone();
    respecced["spec"]["priority"] = json!(1);
    assert_ne!(fit_fingerprint(&a), fit_fingerprint(&respecced));
    // Values do not shift between members or items.
    let ab = json!({"spec": {"x": "ab", "y": ""}});
    let a_b = json!({"spec": {"x": "a", "y": "b"}});
    assert_ne!(fit_fingerprint(&ab), fit_fingerprint(&a_b));
    let items = json!({"spec": {"x": [["a"], []]}});
    let items2 = json!({"spec": {"x": [[], ["a"]]}});
    assert_ne!(fit_fingerprint(&items), fit_fingerprint(&items2));
}

#[test]
fn pods_a_service_selects_spread_although_resources_favour_one_node() {
    let mut cache = Cache::new();
    for n in ["a", "b"] {
        cache.on_node(EventType::Added, Arc::new(node_json(n, "4", "8Gi")));
    }
    let svc = json!({"apiVersion": "v1", "kind": "Service",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"selector": {"app": "web"}}});
    let mut web = bound_to(pod_json("web-0", "1Mi"), "a");
    web["metadata"]["labels"] = json!({"app": "web"});
    cache.on_pod(EventType::Added, Arc::new(web));
    // b is busier, so resources alone send pods to a.
    let busy = bound_to(pod_json("other", "2Gi"), "b");
    cache.on_pod(EventType::Added, Arc::new(busy));
    cache.on_service(EventType::Added, Arc::new(svc.clone()));
    let mut new = pod_json("web-1", "1Mi");
    new["metadata"]["labels"] = json!({"app": "web"});
    cache.on_pod(EventType::Added, Arc::new(new));
    assert_eq!(bind_target(cache.next_action(Instant::now())), "b");
    // Without the Service nothing spreads the pods: resources decide.
    cache.on_service(EventType::Deleted, Arc::new(svc));
    let mut last = pod_json("web-2", "1Mi");
    last["metadata"]["labels"] = json!({"app": "web"});
    cache.on_pod(EventType::Added, Arc::new(last));
    assert_eq!(bind_target(cache.next_action(Instant::now())), "a");
}

#[test]
fn replicas_of_a_replica_set_land_evenly_with_a_skew_of_at_most_one() {
    let mut cache = Cache::new();
    for i in 0..10 {
        cache.on_node(
            EventType::Added,
            Arc::new(node_json(&format!("n{i}"), "32", "64Gi")),
        );
    }
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}}});
    cache.on_workload(WorkloadKind::ReplicaSet, EventType::Added, Arc::new(rs));
    for i in 0..100 {
        let mut p = owned_pod(&format!("web-{i}"), "rs-uid-1");
        p["metadata"]["labels"] = json!({"app": "web"});
        cache.on_pod(EventType::Added, Arc::new(p));
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    while let Some(action) = cache.next_action(Instant::now()) {
        *per_node.entry(bind_target(Some(action))).or_default() += 1;
    }
    assert_eq!(per_node.len(), 10);
    assert!(per_node.values().all(|&n| n == 10), "{per_node:?}");
}

#[test]
fn large_clusters_stop_searching_after_enough_feasible_nodes() {
    assert_eq!(feasible_nodes_to_find(3), 3);
    assert_eq!(feasible_nodes_to_find(100), 100);
    assert_eq!(feasible_nodes_to_find(1000), 420);
    assert_eq!(feasible_nodes_to_find(10_000), 500);
}

// ---------------------------------------------------------------------------
// Controller against a real Registry
// ---------------------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(10);

struct Cluster {
    registry: Arc<Registry>,
    scheduler: tokio::task::JoinHandle<()>,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.scheduler.abort();
    }
}

fn def(plural: &str) -> &'static crate::api::resources::ResourceDef {
    resources::by_plural("", "v1", plural).expect("served")
}

/// A registry on the in-memory store with the scheduler running on it.
async fn cluster() -> Cluster {
    let registry = testutil::registry().await;
    let scheduler = tokio::spawn(run(registry.clone(), Default::default()));
    Cluster {
        registry,
        scheduler,
    }
}

impl Cluster {
    async fn add_node(&self, node: Value) {
        self.registry
            .create(def("nodes"), None, node, &WriteOptions::default())
            .await
            .expect("create node");
    }

    async fn add_pod(&self, pod: Value) {
        let mut pod = pod;
        if let Some(meta) = pod["metadata"].as_object_mut() {
            meta.remove("uid");
        }
        self.registry
            .create(def("pods"), Some("default"), pod, &WriteOptions::default())
            .await
            .expect("create pod");
    }

    fn pod(&self, name: &str) -> Arc<Value> {
        self.registry
            .get(def("pods"), Some("default"), name)
            .expect("pod exists")
            .value
            .get()
    }

    fn node_of(&self, name: &str) -> Option<String> {
        self.pod(name)["spec"]["nodeName"]
            .as_str()
            .filter(|s| !s.is_empty())
            .map(str::to_string)
    }

    /// Polls until `done` holds (bounded).
    async fn wait_for(&self, what: &str, done: impl Fn(&Cluster) -> bool) {
        tokio::time::timeout(WAIT, async {
            while !done(self) {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}; pods:\n{}", self.dump_pods()));
    }

    fn dump_pods(&self) -> String {
        self.registry
            .list(def("pods"), None, None, 0, &|_| true)
            .items
            .iter()
            .map(|kv| kv.value.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    }

    async fn wait_bound(&self, name: &str) -> String {
        self.wait_for(&format!("{name} to be bound"), |c| {
            c.node_of(name).is_some()
        })
        .await;
        self.node_of(name).unwrap()
    }

    fn events_about(&self, pod: &str, reason: &str) -> Vec<Value> {
        self.registry
            .list(def("events"), Some("default"), None, 0, &|_| true)
            .items
            .into_iter()
            .map(|kv| (*kv.value).clone())
            .filter(|e| e["involvedObject"]["name"] == pod && e["reason"] == reason)
            .collect()
    }

    /// Waits until the pod is reported unschedulable; returns the condition message.
    async fn wait_unschedulable(&self, name: &str) -> String {
        self.wait_for(&format!("{name} to be reported unschedulable"), |c| {
            unschedulable_message(&c.pod(name)).is_some()
                && !c.events_about(name, "FailedScheduling").is_empty()
        })
        .await;
        unschedulable_message(&self.pod(name)).unwrap()
    }
}

fn unschedulable_message(pod: &Value) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| {
            c["type"] == "PodScheduled" && c["status"] == "False" && c["reason"] == "Unschedulable"
        })
        .and_then(|c| c["message"].as_str())
        .map(str::to_string)
}

fn owned_pod(name: &str, owner_uid: &str) -> Value {
    let mut p = pod_json(name, "64Mi");
    p["metadata"]["ownerReferences"] = json!([{
        "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "web-1",
        "uid": owner_uid, "controller": true, "blockOwnerDeletion": true,
    }]);
    p
}

#[tokio::test(start_paused = true)]
async fn six_pods_of_one_replica_set_spread_two_per_node() {
    let c = cluster().await;
    for n in ["node1", "node2", "node3"] {
        c.add_node(node_json(n, "4", "8Gi")).await;
    }
    let rs = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "web-1", "namespace": "default"},
        "spec": {"replicas": 6, "selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
    let replica_sets = resources::by_plural("apps", "v1", "replicasets").expect("served");
    c.registry
        .create(replica_sets, Some("default"), rs, &WriteOptions::default())
        .await
        .expect("create replica set");
    for i in 0..6 {
        let mut p = owned_pod(&format!("web-{i}"), "rs-uid-1");
        p["metadata"]["labels"] = json!({"app": "web"});
        c.add_pod(p).await;
    }
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        *per_node
            .entry(c.wait_bound(&format!("web-{i}")).await)
            .or_default() += 1;
    }
    assert_eq!(per_node.len(), 3, "{per_node:?}");
    assert!(per_node.values().all(|&n| n == 2), "{per_node:?}");
    let pod = c.pod("web-0");
    let scheduled = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "PodScheduled")
        .cloned()
        .unwrap();
    assert_eq!(scheduled["status"], "True");
    let node = c.node_of("web-0").unwrap();
    c.wait_for("Scheduled event", |c| {
        !c.events_about("web-0", "Scheduled").is_empty()
    })
    .await;
    assert_eq!(
        c.events_about("web-0", "Scheduled")[0]["message"],
        format!("Successfully assigned default/web-0 to {node}")
    );
}

#[tokio::test(start_paused = true)]
async fn a_pod_that_fits_nowhere_stays_pending_with_counted_reasons() {
    let c = cluster().await;
    c.add_node(node_json("node1", "4", "1Gi")).await;
    c.add_node(node_json("node2", "4", "1Gi")).await;
    let mut unreachable = node_json("node3", "4", "8Gi");
    unreachable["spec"]["taints"] =
        json!([{"key": "node.kubernetes.io/unreachable", "effect": "NoSchedule"}]);
    c.add_node(unreachable).await;
    c.add_pod(pod_json("big", "2Gi")).await;
    let expected = "0/3 nodes are available: 2 Insufficient memory, 1 node(s) had untolerated \
                    taint {node.kubernetes.io/unreachable: }. preemption: 0/3 nodes are \
                    available: 3 Preemption is not helpful for scheduling.";
    assert_eq!(c.wait_unschedulable("big").await, expected);
    let events = c.events_about("big", "FailedScheduling");
    assert_eq!(events[0]["message"], expected);
    assert_eq!(events[0]["type"], "Warning");
    assert_eq!(c.node_of("big"), None);
    assert_eq!(c.pod("big")["status"]["phase"], "Pending");
}

#[tokio::test(start_paused = true)]
async fn a_cordoned_node_gets_nothing() {
    let c = cluster().await;
    let mut cordoned = node_json("cordoned", "64", "256Gi");
    cordoned["spec"]["unschedulable"] = json!(true);
    c.add_node(cordoned).await;
    c.add_node(node_json("open", "1", "1Gi")).await;
    for i in 0..4 {
        c.add_pod(pod_json(&format!("p{i}"), "64Mi")).await;
    }
    for i in 0..4 {
        assert_eq!(c.wait_bound(&format!("p{i}")).await, "open");
    }
}

#[tokio::test(start_paused = true)]
async fn a_taint_needs_a_toleration() {
    let c = cluster().await;
    let mut tainted = node_json("gpu", "4", "8Gi");
    tainted["spec"]["taints"] =
        json!([{"key": "dedicated", "value": "gpu", "effect": "NoSchedule"}]);
    c.add_node(tainted).await;
    c.add_pod(pod_json("plain", "64Mi")).await;
    let mut tolerant = pod_json("tolerant", "64Mi");
    tolerant["spec"]["tolerations"] =
        json!([{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoSchedule"}]);
    c.add_pod(tolerant).await;
    assert_eq!(c.wait_bound("tolerant").await, "gpu");
    assert_eq!(
        c.wait_unschedulable("plain").await,
        "0/1 nodes are available: 1 node(s) had untolerated taint {dedicated: gpu}. \
         preemption: 0/1 nodes are available: 1 Preemption is not helpful for scheduling."
    );
}

#[tokio::test(start_paused = true)]
async fn node_selector_picks_matching_nodes() {
    let c = cluster().await;
    c.add_node(node_json("hdd", "4", "8Gi")).await;
    let mut ssd = node_json("ssd", "4", "8Gi");
    ssd["metadata"]["labels"]["disk"] = json!("ssd");
    c.add_node(ssd).await;
    for i in 0..4 {
        let mut p = pod_json(&format!("db{i}"), "64Mi");
        p["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        c.add_pod(p).await;
    }
    for i in 0..4 {
        assert_eq!(c.wait_bound(&format!("db{i}")).await, "ssd");
    }
}

#[tokio::test(start_paused = true)]
async fn a_pending_pod_is_scheduled_once_a_node_is_added() {
    let c = cluster().await;
    c.add_pod(pod_json("waiting", "64Mi")).await;
    assert_eq!(
        c.wait_unschedulable("waiting").await,
        "no nodes available to schedule pods"
    );
    c.add_node(node_json("late", "1", "1Gi")).await;
    assert_eq!(c.wait_bound("waiting").await, "late");
}

#[tokio::test(start_paused = true)]
async fn no_nodes_is_told_before_the_pods_claims_are_looked_at() {
    let c = cluster().await;
    let mut p = pod_json("with-claim", "64Mi");
    p["spec"]["volumes"] =
        json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data"}}]);
    c.add_pod(p).await;
    assert_eq!(
        c.wait_unschedulable("with-claim").await,
        "no nodes available to schedule pods"
    );
    c.add_node(node_json("n1", "1", "1Gi")).await;
    let claim_missing = "0/1 nodes are available: persistentvolumeclaim \"data\" not found. \
                         preemption: 0/1 nodes are available: 1 Preemption is not helpful for \
                         scheduling.";
    c.wait_for("the claim's message once a node exists", |c| {
        unschedulable_message(&c.pod("with-claim")).as_deref() == Some(claim_missing)
    })
    .await;
}

#[tokio::test(start_paused = true)]
async fn deleting_a_pod_frees_room_for_a_pending_one() {
    let c = cluster().await;
    c.add_node(node_json("only", "1", "1Gi")).await;
    c.add_pod(pod_json("first", "768Mi")).await;
    assert_eq!(c.wait_bound("first").await, "only");
    c.add_pod(pod_json("second", "768Mi")).await;
    c.wait_unschedulable("second").await;
    // A bound pod gets a grace period; force it.
    let opts = crate::apiserver::registry::DeleteOptions {
        grace_period: Some(0),
        ..Default::default()
    };
    c.registry
        .delete(def("pods"), Some("default"), "first", &opts)
        .await
        .expect("delete");
    assert_eq!(c.wait_bound("second").await, "only");
}

// ---------------------------------------------------------------------------
// Preemption (no I/O)
// ---------------------------------------------------------------------------

fn prioritized(name: &str, memory: &str, priority: i64) -> Value {
    let mut p = pod_json(name, memory);
    p["spec"]["priority"] = json!(priority);
    p
}

fn bound_to(mut pod: Value, node: &str) -> Value {
    pod["spec"]["nodeName"] = json!(node);
    pod["status"]["phase"] = json!("Running");
    pod
}

#[test]
fn a_higher_priority_pod_preempts_the_least_important_pods_on_a_full_node() {
    let mut cache = Cache::new();
    cache.on_node(EventType::Added, Arc::new(node_json("a", "1", "1Gi")));
    cache.on_node(EventType::Added, Arc::new(node_json("b", "1", "1Gi")));
    for (name, node, priority) in [("low-a", "a", 10), ("mid-b", "b", 50)] {
        let pod = bound_to(prioritized(name, "768Mi", priority), node);
        cache.on_pod(EventType::Added, Arc::new(pod));
    }
    cache.on_pod(
        EventType::Added,
        Arc::new(prioritized("high", "512Mi", 100)),
    );
    let now = Instant::now();
    match cache.next_action(now) {
        Some(Action::Preempt {
            key,
            node,
            victims,
            message,
            ..
        }) => {
            assert_eq!(key, "default/high");
            assert_eq!(node, "a", "the node whose victims matter least");
            let keys: Vec<&str> = victims.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(keys, ["default/low-a"]);
            assert_eq!(message, "0/2 nodes are available: 2 Insufficient memory.");
        }
        other => panic!("expected a preemption, got {other:?}"),
    }
    // While the victim goes, a pod of lower priority does not take its room.
    cache.on_pod(
        EventType::Deleted,
        Arc::new(bound_to(prioritized("low-a", "768Mi", 10), "a")),
    );
    cache.on_pod(
        EventType::Added,
        Arc::new(prioritized("sneaky", "768Mi", 0)),
    );
    cache.requeue_due(now + MAX_BACKOFF);
    let mut binds = Vec::new();
    while let Some(action) = cache.next_action(now + MAX_BACKOFF) {
        binds.push(action);
    }
    let bound: Vec<(String, String)> = binds
        .iter()
        .filter_map(|a| match a {
            Action::Bind { key, node, .. } => Some((key.clone(), node.clone())),
            _ => None,
        })
        .collect();
    assert_eq!(bound, [("default/high".to_string(), "a".to_string())]);
}

#[test]
fn preemption_policy_never_and_equal_priorities_do_not_preempt() {
    let mut cache = Cache::new();
    cache.on_node(EventType::Added, Arc::new(node_json("a", "1", "1Gi")));
    let low = bound_to(prioritized("low", "768Mi", 10), "a");
    cache.on_pod(EventType::Added, Arc::new(low));
    let mut polite = prioritized("polite", "512Mi", 100);
    polite["spec"]["preemptionPolicy"] = json!("Never");
    cache.on_pod(EventType::Added, Arc::new(polite));
    cache.on_pod(EventType::Added, Arc::new(prioritized("peer", "512Mi", 10)));
    let now = Instant::now();
    for _ in 0..2 {
        assert!(matches!(
            cache.next_action(now),
            Some(Action::ReportUnschedulable { .. })
        ));
    }
}

// ---------------------------------------------------------------------------
// Pod affinity and topology spread (no I/O)
// ---------------------------------------------------------------------------

fn labelled(name: &str, app: &str, affinity: Value, spread: Value) -> Value {
    let mut p = pod_json(name, "64Mi");
    p["metadata"]["labels"] = json!({"app": app});
    if !affinity.is_null() {
        p["spec"]["affinity"] = affinity;
    }
    if !spread.is_null() {
        p["spec"]["topologySpreadConstraints"] = spread;
    }
    p
}

fn anti_affinity_to(app: &str) -> Value {
    json!({"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
        {"labelSelector": {"matchLabels": {"app": app}}, "topologyKey": "kubernetes.io/hostname"}]}})
}

#[test]
fn required_anti_affinity_on_hostname_leaves_the_third_replica_pending() {
    let mut cache = Cache::new();
    for n in ["a", "b"] {
        cache.on_node(EventType::Added, Arc::new(node_json(n, "4", "8Gi")));
    }
    for p in ["web-1", "web-2", "web-3"] {
        let pod = labelled(p, "web", anti_affinity_to("web"), Value::Null);
        cache.on_pod(EventType::Added, Arc::new(pod));
    }
    let now = Instant::now();
    let mut nodes = vec![
        bind_target(cache.next_action(now)),
        bind_target(cache.next_action(now)),
    ];
    nodes.sort();
    assert_eq!(nodes, ["a", "b"]);
    match cache.next_action(now) {
        Some(Action::ReportUnschedulable { message, .. }) => assert_eq!(
            message,
            "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules. \
             preemption: 0/2 nodes are available: 2 Preemption is not helpful for scheduling."
        ),
        other => panic!("expected unschedulable, got {other:?}"),
    }
}

#[test]
fn placed_pods_anti_affinity_keeps_matching_pods_off_their_node() {
    let mut cache = Cache::new();
    for n in ["a", "b"] {
        cache.on_node(EventType::Added, Arc::new(node_json(n, "4", "8Gi")));
    }
    let loner = bound_to(
        labelled("loner", "db", anti_affinity_to("web"), Value::Null),
        "a",
    );
    cache.on_pod(EventType::Added, Arc::new(loner));
    let now = Instant::now();
    for p in ["web-1", "web-2", "web-3"] {
        cache.on_pod(
            EventType::Added,
            Arc::new(labelled(p, "web", Value::Null, Value::Null)),
        );
        assert_eq!(bind_target(cache.next_action(now)), "b");
    }
    // Pods the rule does not select may still go there.
    cache.on_pod(
        EventType::Added,
        Arc::new(labelled("other", "cache", Value::Null, Value::Null)),
    );
    assert!(matches!(cache.next_action(now), Some(Action::Bind { .. })));
}

#[test]
fn do_not_schedule_spread_keeps_replicas_even_although_resources_favour_one_node() {
    let mut cache = Cache::new();
    cache.on_node(EventType::Added, Arc::new(node_json("big", "64", "256Gi")));
    for n in ["small-1", "small-2"] {
        cache.on_node(EventType::Added, Arc::new(node_json(n, "2", "2Gi")));
    }
    let spread = json!([{"maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
    let now = Instant::now();
    let mut per_node: HashMap<String, usize> = HashMap::new();
    for i in 0..6 {
        let pod = labelled(&format!("web-{i}"), "web", Value::Null, spread.clone());
        cache.on_pod(EventType::Added, Arc::new(pod));
        *per_node
            .entry(bind_target(cache.next_action(now)))
            .or_default() += 1;
    }
    assert_eq!(
        per_node.values().copied().collect::<Vec<_>>(),
        [2, 2, 2],
        "{per_node:?}"
    );
    // A node without the topology key is refused with upstream's words.
    let mut bare = node_json("bare", "64", "256Gi");
    bare["metadata"]["labels"] = json!({});
    cache.on_node(EventType::Added, Arc::new(bare));
    cache.on_node(
        EventType::Deleted,
        Arc::new(node_json("big", "64", "256Gi")),
    );
    let pod = labelled("web-late", "web", Value::Null, spread);
    let mut pinned = pod.clone();
    pinned["spec"]["nodeSelector"] = json!({});
    cache.on_pod(EventType::Added, Arc::new(pinned));
    match cache.next_action(now) {
        // small-1 and small-2 hold 2 each (the domain of big is gone): 3 - 2 ≤ 1 fits.
        Some(Action::Bind { node, .. }) => assert!(node.starts_with("small"), "{node}"),
        Some(Action::ReportUnschedulable { message, .. }) => panic!("{message}"),
        other => panic!("expected a bind, got {other:?}"),
    }
}

#[test]
fn spread_refusals_are_reported_in_upstreams_words() {
    let mut cache = Cache::new();
    let mut bare = node_json("bare", "4", "8Gi");
    bare["metadata"]["labels"] = json!({});
    cache.on_node(EventType::Added, Arc::new(bare));
    let spread = json!([{"maxSkew": 1, "topologyKey": "topology.kubernetes.io/zone",
        "whenUnsatisfiable": "DoNotSchedule", "labelSelector": {"matchLabels": {"app": "web"}}}]);
    cache.on_pod(
        EventType::Added,
        Arc::new(labelled("web", "web", Value::Null, spread)),
    );
    match cache.next_action(Instant::now()) {
        Some(Action::ReportUnschedulable { message, .. }) => assert!(
            message.starts_with(
                "0/1 nodes are available: 1 node(s) didn't match pod topology spread \
                 constraints (missing required label)."
            ),
            "{message}"
        ),
        other => panic!("expected unschedulable, got {other:?}"),
    }
}

#[test]
fn preemption_leaves_nodes_the_anti_affinity_refuses_alone() {
    let mut cache = Cache::new();
    cache.on_node(EventType::Added, Arc::new(node_json("a", "1", "1Gi")));
    let mut db = bound_to(prioritized("db", "768Mi", 10), "a");
    db["metadata"]["labels"] = json!({"app": "db"});
    cache.on_pod(EventType::Added, Arc::new(db));
    // Evicting db would free the memory, but the pod's anti-affinity to db pods on the
    // node is what matters here as well: no victims that cannot help.
    let mut high = prioritized("high", "512Mi", 100);
    high["spec"]["affinity"] = anti_affinity_to("cache");
    let mut cache_pod = bound_to(prioritized("cache", "64Mi", 1000), "a");
    cache_pod["metadata"]["labels"] = json!({"app": "cache"});
    cache.on_pod(EventType::Added, Arc::new(cache_pod));
    cache.on_pod(EventType::Added, Arc::new(high));
    match cache.next_action(Instant::now()) {
        Some(Action::ReportUnschedulable { message, .. }) => {
            assert!(message.contains("Insufficient memory"), "{message}")
        }
        other => panic!("expected no preemption, got {other:?}"),
    }
}
