//! Two servers on one etcd, two agents in network namespaces (the agents joined through
//! server 2, while server 1 leads the controllers): the leader sees the agents' liveness
//! only through server 2's heartbeat digest, the `kubernetes` endpoints list both
//! servers, and when server 2 is killed (-9) the agents fail over to server 1 with no
//! pod disrupted — nodes stay Ready, containers keep running, restartCount unchanged.
//! Also measures the datastore writes of the idle two-server cluster.
//!
//! Needs root, containerd, runc, busybox-static, etcd, etcdctl and kubectl
//! (scripts/install-deps.sh). Takes about three minutes: the checks outlast the node
//! grace period (35 s) and the eviction timeout.

mod support;

use std::time::{Duration, Instant};

use serde_json::Value;
use support::host::run;
use support::multinode::{is_ready, Cluster, ETCD_CLIENT, NODES, SERVER2_IP, SERVER_IP};

/// Longer than the node grace period (35 s) plus the eviction timeout (15 s).
const WATCH_FOR: Duration = Duration::from_secs(60);
/// The idle window over which datastore writes are counted.
const IDLE_WINDOW: Duration = Duration::from_secs(60);

fn pod_yaml(name: &str, node: &str) -> String {
    format!(
        r#"
apiVersion: v1
kind: Pod
metadata: {{name: {name}, namespace: default}}
spec:
  nodeName: {node}
  terminationGracePeriodSeconds: 1
  containers:
  - name: c
    image: docker.io/library/busybox:test
    command: ["sleep", "3600"]
"#
    )
}

/// Each pod's (uid, containerID, restartCount).
fn pod_state(c: &Cluster, names: &[&str]) -> Vec<(Value, Value, Value)> {
    names
        .iter()
        .map(|n| {
            let p = c.pod(n).unwrap_or_default();
            let status = &p["status"]["containerStatuses"][0];
            (
                p["metadata"]["uid"].clone(),
                status["containerID"].clone(),
                status["restartCount"].clone(),
            )
        })
        .collect()
}

/// Every node Ready with no lifecycle taint, every pod Running.
fn all_healthy(c: &Cluster, pods: &[&str]) -> Result<(), String> {
    for (node, _) in NODES {
        let n = c.node(node).ok_or(format!("node {node} unreadable"))?;
        if !is_ready(&n) {
            return Err(format!(
                "node {node} not Ready: {}",
                n["status"]["conditions"]
            ));
        }
        if n["spec"]["taints"]
            .as_array()
            .is_some_and(|t| !t.is_empty())
        {
            return Err(format!("node {node} tainted: {}", n["spec"]["taints"]));
        }
    }
    for p in pods {
        let pod = c.pod(p).ok_or(format!("pod {p} gone"))?;
        if pod["status"]["phase"] != "Running" || pod["metadata"]["deletionTimestamp"].is_string() {
            return Err(format!("pod {p} disrupted: {}", pod["status"]));
        }
    }
    Ok(())
}

/// Asserts `all_healthy` at every check for `period`.
fn stays_healthy(c: &Cluster, pods: &[&str], period: Duration) {
    let start = Instant::now();
    while start.elapsed() < period {
        if let Err(e) = all_healthy(c, pods) {
            panic!("after {:?}: {e}", start.elapsed());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

fn kubernetes_endpoints(c: &Cluster) -> Vec<String> {
    let ep = c
        .kubectl_json(&["get", "endpoints", "kubernetes"])
        .unwrap_or_default();
    let mut ips: Vec<String> = ep["subsets"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["addresses"].as_array().cloned().unwrap_or_default())
        .filter_map(|a| a["ip"].as_str().map(str::to_owned))
        .collect();
    ips.sort();
    ips
}

fn agent_log(c: &Cluster, node: &str) -> String {
    std::fs::read_to_string(c.log_path(&format!("agent-{node}"))).unwrap_or_default()
}

/// Writes to etcd over `window`: (count, bytes of keys and values), from a watch of
/// every key.
fn etcd_writes(c: &Cluster, window: Duration) -> (usize, usize) {
    let secs = window.as_secs().to_string();
    let mut watch = c.in_netns("srv", "timeout");
    watch
        .args([secs.as_str(), "etcdctl", "--endpoints", ETCD_CLIENT])
        .args(["watch", "--prefix", "", "-w", "json"]);
    let out = run(&mut watch);
    let (mut count, mut bytes) = (0, 0);
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let Ok(resp) = serde_json::from_str::<Value>(line) else {
            continue;
        };
        for e in resp["Events"].as_array().into_iter().flatten() {
            count += 1;
            // base64 in the JSON output: 3 bytes per 4 characters.
            let b64 = |v: &Value| v.as_str().map_or(0, |s| s.len() * 3 / 4);
            bytes += b64(&e["kv"]["key"]) + b64(&e["kv"]["value"]);
        }
    }
    (count, bytes)
}

#[test]
fn agents_fail_over_to_the_other_server_without_disturbing_their_pods() {
    let mut c = Cluster::start_ha();
    c.step("server 1 leads the controllers");
    let holder = c.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "orc-controllers",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    assert!(holder.starts_with("srv1"), "leader: {holder}");

    c.step("the kubernetes endpoints list both servers");
    c.wait_for("both servers in the kubernetes endpoints", || {
        kubernetes_endpoints(&c) == [SERVER_IP, SERVER2_IP]
    });
    let leases = c.kubectl_ok(&[
        "get",
        "leases",
        "-n",
        "kube-system",
        "-l",
        "apiserver.kubernetes.io/identity=kube-apiserver",
        "-o",
        "name",
    ]);
    assert_eq!(leases.lines().count(), 2, "{leases}");

    c.step("pods run on both nodes");
    let pods = ["p1", "p2"];
    for (pod, (node, _)) in pods.iter().zip(NODES) {
        c.apply(&pod_yaml(pod, node));
    }
    for p in pods {
        c.wait_running(p);
    }
    let before = pod_state(&c, &pods);

    c.step("the agents learn both servers");
    for (node, _) in NODES {
        c.wait_within(
            Duration::from_secs(45),
            &format!("agent {node} to know server 1"),
            || {
                agent_log(&c, node).lines().any(|l| {
                    l.contains("API servers") && l.contains(SERVER_IP) && l.contains(SERVER2_IP)
                })
            },
        );
    }

    c.step("idle: the leader sees the nodes only through server 2's digest, and they stay Ready");
    let started = Instant::now();
    let (writes, bytes) = etcd_writes(&c, IDLE_WINDOW);
    let minutes = started.elapsed().as_secs_f64() / 60.0;
    eprintln!(
        "idle two-server cluster, {} agent nodes: {:.0} datastore writes/min, {:.0} bytes/min",
        NODES.len(),
        writes as f64 / minutes,
        bytes as f64 / minutes
    );
    all_healthy(&c, &pods).unwrap();
    assert_eq!(pod_state(&c, &pods), before);
    // Two servers renewing every 10 s (server leases), the leader's election lease every
    // 2 s: nothing per node renewal (which would be 2 nodes × 6/min on top).
    assert!(
        writes as f64 / minutes <= 60.0,
        "{writes} writes in {minutes:.2} min"
    );

    c.step("server 2, which the agents talk to, is killed");
    c.kill_server(2);
    let killed = Instant::now();
    // Healthy all along; when server 2 leaves the endpoints is noted on the way.
    let mut left_endpoints = None;
    while killed.elapsed() < WATCH_FOR {
        if let Err(e) = all_healthy(&c, &pods) {
            panic!("after {:?}: {e}", killed.elapsed());
        }
        if left_endpoints.is_none() && kubernetes_endpoints(&c) == [SERVER_IP] {
            left_endpoints = Some(killed.elapsed());
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    assert_eq!(
        pod_state(&c, &pods),
        before,
        "containers restarted or replaced"
    );
    for (node, _) in NODES {
        assert!(
            agent_log(&c, node).contains("failing over"),
            "agent {node} did not fail over"
        );
        // Its lease is renewed through server 1 now: renewTime is recent there.
        let age = chrono::Utc::now().signed_duration_since(renew_time(&c, node));
        assert!(
            age < chrono::Duration::seconds(20),
            "{node} renewed {age} ago"
        );
    }

    c.step("server 2 drops out of the kubernetes endpoints");
    let left_endpoints = left_endpoints.unwrap_or_else(|| {
        c.wait_within(
            Duration::from_secs(30),
            "server 2 gone from the endpoints",
            || kubernetes_endpoints(&c) == [SERVER_IP],
        );
        killed.elapsed()
    });
    eprintln!("server 2 left the endpoints {left_endpoints:?} after it died");
    // Its last renewal is at most one period old, the survivor notices a lease that
    // stopped changing within a lease duration and one period of its own.
    assert!(
        left_endpoints <= Duration::from_secs(55),
        "server 2 left the endpoints {left_endpoints:?} after it died"
    );

    c.step("an agent restarted while the server it joined through is down uses server 1");
    let (node, _) = NODES[0];
    let restarted = chrono::Utc::now();
    c.restart_agent(node);
    c.wait_within(
        Duration::from_secs(45),
        &format!("{node} to renew its lease after the restart"),
        || renew_time(&c, node) > restarted,
    );
    stays_healthy(&c, &pods, Duration::from_secs(10));
    assert_eq!(
        pod_state(&c, &pods),
        before,
        "containers restarted or replaced"
    );
}

/// When `node` last renewed its Lease.
fn renew_time(c: &Cluster, node: &str) -> chrono::DateTime<chrono::Utc> {
    let renew = c.kubectl_ok(&[
        "get",
        "lease",
        "-n",
        "kube-node-lease",
        node,
        "-o",
        "jsonpath={.spec.renewTime}",
    ]);
    chrono::DateTime::parse_from_rfc3339(&renew)
        .expect("renewTime")
        .with_timezone(&chrono::Utc)
}
