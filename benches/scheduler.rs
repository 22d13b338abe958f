//! Scheduler benchmark: pods bound per second by the scheduler against an in-process
//! Registry (SQLite datastore in a temp dir), for 1,000 pods on 100 and on 1,000 nodes.
//! Every bind is a real `pods/binding` write plus its `Scheduled` event. Prints figures;
//! asserts nothing.
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

fn pod(name: &str, owner: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": "default", "labels": {"app": format!("app-{owner}")},
                     "ownerReferences": [{"apiVersion": "apps/v1", "kind": "ReplicaSet",
                         "name": format!("app-{owner}"), "uid": format!("rs-uid-{owner}"), "controller": true}]},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36",
                                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]},
    })
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
    create_all(
        &registry,
        "pods",
        (0..pods)
            .map(|i| pod(&format!("pod-{i:05}"), i % 20))
            .collect(),
    )
    .await;

    let pods_prefix = resources::by_plural("", "v1", "pods")
        .expect("served")
        .prefix();
    let (_, _, mut watch) = registry.snapshot_and_watch(&pods_prefix);
    let started = Instant::now();
    let scheduler = tokio::spawn(orc::controllers::scheduler::run(registry.clone()));
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
    let min = if per_node.len() < nodes {
        0
    } else {
        per_node.values().copied().min().unwrap_or(0)
    };
    let max = per_node.values().copied().max().unwrap_or(0);
    (elapsed, min, max)
}

/// End to end: an RC of `pods` replicas is created on `nodes` nodes with the RC
/// controller and the scheduler running; times until every replica is bound.
async fn run_rc(nodes: usize, pods: usize) -> Duration {
    let (_dir, registry) = cluster_with_nodes(nodes).await;
    let rc_controller = tokio::spawn(orc::controllers::replication::run(
        registry.clone(),
        &orc::controllers::replication::REPLICATION_CONTROLLER,
        Arc::new(orc::controllers::clock::RealClock),
    ));
    let scheduler = tokio::spawn(orc::controllers::scheduler::run(registry.clone()));
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
    let deadline = tokio::time::sleep(RUN_LIMIT);
    tokio::pin!(deadline);
    while bound.len() < pods {
        tokio::select! {
            event = watch.next() => {
                let event = event.expect("pods watch");
                if event.kind != EventType::Deleted && event.kv.value["spec"]["nodeName"].is_string() {
                    bound.insert(event.kv.key.clone());
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
    elapsed
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
    for nodes in node_counts {
        let (elapsed, min, max) = runtime.block_on(run_once(nodes, pods));
        println!(
            "scheduler {pods:>6} pods on {nodes:>5} nodes: bound in {:>6.2}s = {:>7.0} pods/s  (pods per node min {min} max {max})",
            elapsed.as_secs_f64(),
            pods as f64 / elapsed.as_secs_f64(),
        );
        let rc = runtime.block_on(run_rc(nodes, pods));
        println!(
            "RC scale-up {pods:>6} replicas on {nodes:>5} nodes: all bound in {:>6.2}s",
            rc.as_secs_f64()
        );
    }
}
