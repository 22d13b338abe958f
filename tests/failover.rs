//! Node failure with orc's default timings (README "Node failure"), on the multi-node
//! cluster of `support::multinode` (a server and two agents in network namespaces of
//! their own): a node that dies has its Deployment's pods running on the other node
//! within 60 s, and a node whose LAN link drops for 20 s loses none of its pods and is
//! Ready again.
//!
//! Needs root, containerd, runc, busybox-static, nsenter, ip, ctr and kubectl
//! (scripts/install-deps.sh).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::multinode::{is_ready, Cluster, IMAGE};

/// The goal: a dead node's pods run elsewhere within a minute, by default.
const FAILOVER_BUDGET: Duration = Duration::from_secs(60);
/// The link outage a node must ride out without losing a pod.
const OUTAGE: Duration = Duration::from_secs(20);
/// How long after the outage began an eviction could still come from it: the server's
/// default 35 s grace plus the default 15 s unreachable toleration, counted from the
/// last heartbeat (at most 5 s before the outage), and a margin.
const EVICTION_WINDOW: Duration = Duration::from_secs(60);
/// How long the Deployment may take to run its replicas on a fresh cluster.
const START_DEADLINE: Duration = Duration::from_secs(60);
const POLL: Duration = Duration::from_millis(500);

fn deployment() -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {{app: web}}
  template:
    metadata:
      labels: {{app: web}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: web
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [\"sleep\", \"100000\"]
        resources: {{requests: {{cpu: 100m, memory: 16Mi}}}}
"
    )
}

fn web_pods(c: &Cluster) -> Vec<Value> {
    let pods: Vec<Value> = c
        .kubectl_json(&["get", "pods", "-l", "app=web"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default();
    pods.iter().for_each(|p| c.remember(p));
    pods
}

fn node_of(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

fn uid(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn running(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running" && pod["metadata"]["deletionTimestamp"].is_null()
}

/// The nodes the running, not deleting web pods run on, sorted.
fn running_on(pods: &[Value]) -> Vec<String> {
    let mut nodes: Vec<String> = pods
        .iter()
        .filter(|p| running(p))
        .map(|p| node_of(p).to_string())
        .collect();
    nodes.sort();
    nodes
}

/// A default-timing cluster running the Deployment with one replica on each node.
fn cluster_with_spread_deployment() -> Cluster {
    let started = Instant::now();
    let c = Cluster::start_with_default_timing();
    eprintln!("cluster up in {:?}", started.elapsed());
    c.step("The Deployment runs one replica on each node");
    c.apply(&deployment());
    let mut pods = Vec::new();
    c.wait_within(START_DEADLINE, "both web replicas to run", || {
        pods = web_pods(&c);
        running_on(&pods).len() == 2
    });
    assert_eq!(
        running_on(&pods),
        ["n1", "n2"],
        "replicas not spread over the nodes"
    );
    c
}

#[test]
fn a_dead_nodes_deployment_pods_run_on_another_node_within_a_minute() {
    let mut c = cluster_with_spread_deployment();
    c.step("A dead node's pods run on the other node within 60 s (default flags)");
    c.kill_node("n2");
    let killed = Instant::now();
    let mut not_ready_after = None;
    c.wait_within(FAILOVER_BUDGET, "both web replicas to run on n1", || {
        if not_ready_after.is_none() && c.node("n2").is_some_and(|n| !is_ready(&n)) {
            not_ready_after = Some(killed.elapsed());
        }
        running_on(&web_pods(&c)) == ["n1", "n1"]
    });
    let failover = killed.elapsed();
    eprintln!(
        "failover: n2 NotReady after {not_ready_after:?}; its pods Running on n1 after {failover:?} \
         (budget {FAILOVER_BUDGET:?})"
    );
    assert!(failover <= FAILOVER_BUDGET);
    assert!(
        not_ready_after.is_some_and(|t| t < failover),
        "the node was marked NotReady before its pods moved"
    );
    let n1 = c.node("n1").expect("node n1");
    assert!(is_ready(&n1), "n1 stayed Ready");
}

#[test]
fn a_node_whose_link_drops_for_20s_keeps_its_pods_and_is_ready_again() {
    let c = cluster_with_spread_deployment();
    let before: BTreeSet<String> = web_pods(&c).iter().map(uid).collect();
    c.step("A 20 s link outage evicts no pod");
    c.set_link("n2", false);
    let cut = Instant::now();
    let mut restored = false;
    let mut not_ready_for = Duration::ZERO;
    let mut last_poll = Instant::now();
    // Bounded: until the window in which the outage could still cause an eviction ends.
    while cut.elapsed() < EVICTION_WINDOW {
        if !restored && cut.elapsed() >= OUTAGE {
            c.set_link("n2", true);
            restored = true;
            eprintln!("link of n2 back after {:?}", cut.elapsed());
        }
        let pods = web_pods(&c);
        let now: BTreeSet<String> = pods.iter().map(uid).collect();
        assert_eq!(
            now,
            before,
            "pods changed {:?} after the link dropped",
            cut.elapsed()
        );
        assert!(
            pods.iter()
                .all(|p| p["metadata"]["deletionTimestamp"].is_null()),
            "a pod is being deleted {:?} after the link dropped: {pods:?}",
            cut.elapsed()
        );
        if c.node("n2").is_some_and(|n| !is_ready(&n)) {
            not_ready_for += last_poll.elapsed();
        }
        last_poll = Instant::now();
        std::thread::sleep(POLL);
    }
    assert!(restored);
    eprintln!("n2 was NotReady for about {not_ready_for:?} of the {OUTAGE:?} outage");
    c.step("The node is Ready again with its pods Running");
    c.wait_within(
        Duration::from_secs(30),
        "n2 Ready with both replicas Running",
        || c.node("n2").is_some_and(|n| is_ready(&n)) && running_on(&web_pods(&c)) == ["n1", "n2"],
    );
    let after: BTreeSet<String> = web_pods(&c).iter().map(uid).collect();
    assert_eq!(after, before, "the same pods, none replaced");
}
