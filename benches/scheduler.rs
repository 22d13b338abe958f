//! Scheduler benchmark: pods bound per second by the scheduler against an in-process
//! Registry (SQLite datastore in a temp dir), for 1,000 replicas of one ReplicaSet on
//! 100 and on 1,000 nodes. Every bind is a real `pods/binding` write plus its
//! `Scheduled` event. Prints the rate and the fewest and most pods per node, and exits
//! non-zero when the spread is uneven: with upstream's default spreading every node
//! holds the average (pods / nodes) within -2 / +1 (8 to 11 for 1,000 on 100).
//!
//! Run: `scripts/bench-scheduler.sh` (or `cargo bench --bench scheduler`). Env:
//! ORC_BENCH_SCHED_PODS (default 1000), ORC_BENCH_SCHED_NODES (default "100,1000").

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::stream::{self, StreamExt};
use serde_json::{json, Value};

use orc::api::resources;
use orc::apiserver::allocator::Allocators;
use orc::apiserver::registry::{Registry, WriteOptions};
use orc::store::sqlite::SqliteStore;
use orc::store::EventType;

/// Concurrent creates while setting up (not measured).
const SETUP_CONCURRENCY: usize = 32;
/// Give up on a run after this long.
const RUN_LIMIT: Duration = Duration::from_secs(300);

fn env_num(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "spec": {},
        "status": {
            "allocatable": {"cpu": "32", "memory": "64Gi", "pods": "110"},
            "capacity": {"cpu": "32", "memory": "64Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    })
}

/// The one ReplicaSet whose replicas the bench schedules (no controller runs: the pods
/// are created directly, owned by it).
fn replica_set(replicas: usize) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "ReplicaSet",
        "metadata": {"name": "app", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "app"}},
                 "template": {"metadata": {"labels": {"app": "app"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36"}]}}},
    })
}

fn pod(name: &str, owner_uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": "app"},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "name": "app", "uid": owner_uid, "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })
}

/// Whether `min`..=`max` pods per node is the even spread the bench demands.
fn spread_ok(pods: usize, nodes: usize, min: usize, max: usize) -> bool {
    let floor = pods / nodes;
    let ceil = pods.div_ceil(nodes);
    min + 2 >= floor && max <= ceil + 1
}

async fn create_all(registry: &Arc<Registry>, plural: &str, objects: Vec<Value>) {
    let def = resources::by_plural("", "v1", plural).expect("served");
    stream::iter(objects)
        .for_each_concurrent(SETUP_CONCURRENCY, |obj| {
            let registry = registry.clone();
            async move {
                let ns = if def.namespaced {
                    Some("default")
                } else {
                    None
                };
                registry
                    .create(def, ns, obj, &WriteOptions::default())
                    .await
                    .expect("create");
            }
        })
        .await;
}

/// A registry on a fresh datastore with the default namespace and `nodes` Ready nodes
/// (keep the returned dir alive while the registry is used).
async fn cluster_with_nodes(nodes: usize) -> (tempfile::TempDir, Arc<Registry>) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open store");
    let registry = Arc::new(Registry::new(
        Arc::new(store),
        Allocators::new("10.43.0.0/16".parse().unwrap(), (30000, 32767)),
    ));
    let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
    let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
    registry
        .create(namespaces, None, ns, &WriteOptions::default())
        .await
        .expect("create namespace");
    // The ServiceAccount admission wants the pods' account (its controller is not run).
    let accounts = resources::by_plural("", "v1", "serviceaccounts").expect("served");
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                    "metadata": {"name": "default", "namespace": "default"}});
    registry
        .create(accounts, Some("default"), sa, &WriteOptions::default())
        .await
        .expect("create service account");
    create_all(
        &registry,
        "nodes",
        (0..nodes).map(|i| node(&format!("node-{i:04}"))).collect(),
    )
    .await;
    (dir, registry)
}

/// Creates `nodes` nodes and `pods` pods, starts the scheduler and times until every pod
/// is bound (seen in the pods watch). Returns (elapsed, pods per node min/max).
async fn run_once(nodes: usize, pods: usize) -> (Duration, usize, usize) {
    let (_dir, registry) = cluster_with_nodes(nodes).await;
    let replica_sets = resources::by_plural("apps", "v1", "replicasets").expect("served");
    let rs = registry
        .create(
            replica_sets,
            Some("default"),
            replica_set(pods),
            &WriteOptions::default(),
        )
        .await
        .expect("create replica set");
    let uid = rs.kv.value["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    create_all(
        &registry,
        "pods",
        (0..pods)
            .map(|i| pod(&format!("pod-{i:05}"), &uid))
            .collect(),
    )
    .await;

    let pods_prefix = resources::by_plural("", "v1", "pods")
        .expect("served")
        .prefix();
    let (_, _, mut watch) = registry.snapshot_and_watch(&pods_prefix);
    let started = Instant::now();
    let scheduler = tokio::spawn(orc::controllers::scheduler::run(
        registry.clone(),
        orc::metrics::SchedulerMetrics::default(),
    ));
    let mut bound = std::collections::HashSet::new();
    let mut per_node: std::collections::HashMap<String, usize> = Default::default();
    let deadline = tokio::time::sleep(RUN_LIMIT);
    tokio::pin!(deadline);
    while bound.len() < pods {
        tokio::select! {
            event = watch.next() => {
                let event = event.expect("pods watch");
                if event.kind == EventType::Deleted {
                    continue;
                }
                let value = &event.kv.value;
                if let Some(node) = value["spec"]["nodeName"].as_str() {
                    if bound.insert(event.kv.key.clone()) {
                        *per_node.entry(node.to_string()).or_default() += 1;
                    }
                }
            }
            _ = &mut deadline => {
                eprintln!("gave up: {} of {pods} pods bound", bound.len());
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    scheduler.abort();
    let (min, max) = min_max(&per_node, nodes);
    (elapsed, min, max)
}

/// End to end: an RC of `pods` replicas is created on `nodes` nodes with the RC
/// controller and the scheduler running; times until every replica is bound. Returns
/// (elapsed, pods per node min/max).
async fn run_rc(nodes: usize, pods: usize) -> (Duration, usize, usize) {
    let (_dir, registry) = cluster_with_nodes(nodes).await;
    let rc_controller = tokio::spawn(orc::controllers::replication::run(
        registry.clone(),
        &orc::controllers::replication::REPLICATION_CONTROLLER,
        Arc::new(orc::controllers::clock::RealClock),
    ));
    let scheduler = tokio::spawn(orc::controllers::scheduler::run(
        registry.clone(),
        orc::metrics::SchedulerMetrics::default(),
    ));
    let pods_prefix = resources::by_plural("", "v1", "pods")
        .expect("served")
        .prefix();
    let (_, _, mut watch) = registry.snapshot_and_watch(&pods_prefix);
    let rc = json!({
        "apiVersion": "v1", "kind": "ReplicationController",
        "metadata": {"name": "scale", "namespace": "default"},
        "spec": {"replicas": pods, "selector": {"app": "scale"},
                 "template": {"metadata": {"labels": {"app": "scale"}},
                              "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                       "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}}},
    });
    let rcs = resources::by_plural("", "v1", "replicationcontrollers").expect("served");
    let started = Instant::now();
    registry
        .create(rcs, Some("default"), rc, &WriteOptions::default())
        .await
        .expect("create rc");
    let mut bound = std::collections::HashSet::new();
    let mut per_node: std::collections::HashMap<String, usize> = Default::default();
    let deadline = tokio::time::sleep(RUN_LIMIT);
    tokio::pin!(deadline);
    while bound.len() < pods {
        tokio::select! {
            event = watch.next() => {
                let event = event.expect("pods watch");
                if event.kind == EventType::Deleted {
                    continue;
                }
                if let Some(node) = event.kv.value["spec"]["nodeName"].as_str() {
                    if bound.insert(event.kv.key.clone()) {
                        *per_node.entry(node.to_string()).or_default() += 1;
                    }
                }
            }
            _ = &mut deadline => {
                eprintln!("gave up: {} of {pods} replicas bound", bound.len());
                break;
            }
        }
    }
    let elapsed = started.elapsed();
    scheduler.abort();
    rc_controller.abort();
    let (min, max) = min_max(&per_node, nodes);
    (elapsed, min, max)
}

/// Fewest and most pods per node (a node without pods counts 0).
fn min_max(per_node: &std::collections::HashMap<String, usize>, nodes: usize) -> (usize, usize) {
    let min = if per_node.len() < nodes {
        0
    } else {
        per_node.values().copied().min().unwrap_or(0)
    };
    (min, per_node.values().copied().max().unwrap_or(0))
}

fn main() {
    let pods = env_num("ORC_BENCH_SCHED_PODS", 1000);
    let node_counts: Vec<usize> = std::env::var("ORC_BENCH_SCHED_NODES")
        .unwrap_or_else(|_| "100,1000".into())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let mut uneven = Vec::new();
    for nodes in node_counts {
        let (elapsed, min, max) = runtime.block_on(run_once(nodes, pods));
        println!(
            "scheduler {pods:>6} pods on {nodes:>5} nodes: bound in {:>6.2}s = {:>7.0} pods/s  (pods per node min {min} max {max})",
            elapsed.as_secs_f64(),
            pods as f64 / elapsed.as_secs_f64(),
        );
        if !spread_ok(pods, nodes, min, max) {
            uneven.push(format!(
                "{pods} replicas on {nodes} nodes: {min} to {max} per node"
            ));
        }
        let (rc, min, max) = runtime.block_on(run_rc(nodes, pods));
        println!(
            "RC scale-up {pods:>6} replicas on {nodes:>5} nodes: all bound in {:>6.2}s  (pods per node min {min} max {max})",
            rc.as_secs_f64()
        );
        if !spread_ok(pods, nodes, min, max) {
            uneven.push(format!(
                "RC of {pods} replicas on {nodes} nodes: {min} to {max} per node"
            ));
        }
    }
    if !uneven.is_empty() {
        eprintln!("FAILED: uneven spread (expected the average -2/+1 per node):");
        for u in &uneven {
            eprintln!("  {u}");
        }
        std::process::exit(1);
    }
}
