//! The control plane end to end with the real server and kubectl, on simulated nodes:
//! Node objects whose "kubelet" is this test (it renews their leases and marks the
//! pods bound to them Running and Ready).

mod support;

use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use support::server::{wait_for, Server};
use support::wait::assert_stays_for;

const NODES: [&str; 3] = ["node-a", "node-b", "node-c"];

fn node(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "allocatable": {"cpu": "4", "memory": "8Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()}],
            "addresses": [{"type": "InternalIP", "address": "192.0.2.10"}],
        }
    })
}

/// How often a simulated kubelet renews its lease and starts its pods.
const KUBELET_SYNC_PERIOD: Duration = Duration::from_millis(300);

/// Pretends to be the kubelets of `alive` nodes: renews their leases and starts the
/// pods bound to them (phase Running, Ready=True, a pod IP).
async fn simulate_kubelets(
    client: reqwest::Client,
    base: String,
    alive: Arc<Mutex<HashSet<String>>>,
) {
    let mut ip = 2u32;
    loop {
        let nodes: Vec<String> = alive.lock().unwrap().iter().cloned().collect();
        for n in &nodes {
            let now = chrono::Utc::now()
                .format("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string();
            let lease_url =
                format!("{base}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases/{n}");
            let lease = json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
                "metadata": {"name": n, "namespace": "kube-node-lease"},
                "spec": {"holderIdentity": n, "leaseDurationSeconds": 40, "renewTime": now}});
            let r = client
                .patch(&lease_url)
                .header("Content-Type", "application/merge-patch+json")
                .body(json!({"spec": {"renewTime": now}}).to_string())
                .send()
                .await;
            if !matches!(&r, Ok(resp) if resp.status().is_success()) {
                let _ = client
                    .post(format!(
                        "{base}/apis/coordination.k8s.io/v1/namespaces/kube-node-lease/leases"
                    ))
                    .json(&lease)
                    .send()
                    .await;
            }
            let pods: Value = match client
                .get(format!(
                    "{base}/api/v1/pods?fieldSelector=spec.nodeName%3D{n}"
                ))
                .send()
                .await
            {
                Ok(r) => r.json().await.unwrap_or(Value::Null),
                Err(_) => continue,
            };
            for p in pods["items"].as_array().into_iter().flatten() {
                if p["metadata"]["deletionTimestamp"].is_string() {
                    let url = format!(
                        "{base}/api/v1/namespaces/{}/pods/{}",
                        p["metadata"]["namespace"].as_str().unwrap(),
                        p["metadata"]["name"].as_str().unwrap()
                    );
                    let _ = client
                        .delete(url)
                        .json(&json!({"gracePeriodSeconds": 0}))
                        .send()
                        .await;
                    continue;
                }
                if p["status"]["phase"] == "Running" {
                    continue;
                }
                ip += 1;
                let url = format!(
                    "{base}/api/v1/namespaces/{}/pods/{}/status",
                    p["metadata"]["namespace"].as_str().unwrap(),
                    p["metadata"]["name"].as_str().unwrap()
                );
                let status = json!({"status": {
                    "phase": "Running",
                    "podIP": format!("10.42.{}.{}", ip / 250, ip % 250 + 2),
                    "conditions": [
                        {"type": "Ready", "status": "True"},
                        {"type": "ContainersReady", "status": "True"},
                        {"type": "Initialized", "status": "True"},
                        {"type": "PodScheduled", "status": "True"}],
                    "startTime": now,
                }});
                let _ = client
                    .patch(url)
                    .header("Content-Type", "application/merge-patch+json")
                    .body(status.to_string())
                    .send()
                    .await;
            }
        }
        tokio::time::sleep(KUBELET_SYNC_PERIOD).await;
    }
}

fn pods_per_node(s: &Server, selector: &str) -> BTreeMap<String, usize> {
    let pods = s.get_json(&["pods", "-l", selector]);
    let mut out = BTreeMap::new();
    for p in pods["items"].as_array().unwrap() {
        if p["metadata"]["deletionTimestamp"].is_string() {
            continue;
        }
        let n = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
        *out.entry(n).or_insert(0) += 1;
    }
    out
}

const RC: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: web}
spec:
  replicas: 6
  selector: {app: web}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        resources: {requests: {cpu: 100m, memory: 64Mi}}
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rc_spreads_over_nodes_and_recovers_from_node_loss() {
    let s = Server::start_with(&[
        "--node-monitor-grace-period",
        "3s",
        "--pod-eviction-timeout",
        "2s",
        "--default-unreachable-toleration-seconds",
        "2",
    ]);
    let client = s.client(true);
    for n in NODES {
        let r = client
            .post(format!("{}/api/v1/nodes", s.url()))
            .json(&node(n))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
    }
    let alive = Arc::new(Mutex::new(
        NODES.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
    ));
    let kubelets = tokio::spawn(simulate_kubelets(client.clone(), s.url(), alive.clone()));

    s.apply_yaml("apply", RC);
    let spread = tokio::task::block_in_place(|| {
        wait_for("6 pods bound, 2 per node", || {
            let per = pods_per_node(&s, "app=web");
            per.len() == 3 && per.values().all(|c| *c == 2) && !per.contains_key("")
        });
        pods_per_node(&s, "app=web")
    });
    assert_eq!(spread.values().sum::<usize>(), 6, "{spread:?}");
    tokio::task::block_in_place(|| {
        wait_for("rc ready 6", || {
            s.get_json(&["rc", "web"])["status"]["readyReplicas"] == 6
        });
    });

    // node-c stops heartbeating: it becomes NotReady and its pods come back elsewhere.
    alive.lock().unwrap().remove("node-c");
    tokio::task::block_in_place(|| {
        wait_for("node-c not ready", || {
            let n = s.get_json(&["node", "node-c"]);
            n["status"]["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["type"] == "Ready" && c["status"] != "True")
        });
        let table = s.ok(&["get", "nodes"]);
        assert!(table.contains("NotReady"), "{table}");
        wait_for("6 pods on node-a and node-b only", || {
            let per = pods_per_node(&s, "app=web");
            !per.contains_key("node-c") && per.values().sum::<usize>() == 6 && !per.contains_key("")
        });
    });
    let per = pods_per_node(&s, "app=web");
    assert_eq!(per.get("node-a"), Some(&3), "{per:?}");
    assert_eq!(per.get("node-b"), Some(&3), "{per:?}");
    let describe = s.ok(&["describe", "rc", "web"]);
    assert!(describe.contains("SuccessfulCreate"), "{describe}");
    kubelets.abort();
}

const DEPLOY: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: api}
spec:
  replicas: 3
  selector: {matchLabels: {app: api}}
  strategy: {rollingUpdate: {maxSurge: 1, maxUnavailable: 0}}
  template:
    metadata: {labels: {app: api}}
    spec:
      containers: [{name: api, image: "busybox:1.36"}]
"#;

/// A server with the three [`NODES`], whose kubelets this test simulates until dropped.
struct SimulatedNodes {
    server: Server,
    kubelets: tokio::task::JoinHandle<()>,
}

impl SimulatedNodes {
    async fn start() -> SimulatedNodes {
        let server = Server::start();
        let client = server.client(true);
        for n in NODES {
            let r = client
                .post(format!("{}/api/v1/nodes", server.url()))
                .json(&node(n))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status().as_u16(), 201, "create node {n}");
        }
        let alive = Arc::new(Mutex::new(
            NODES.iter().map(|s| s.to_string()).collect::<HashSet<_>>(),
        ));
        let kubelets = tokio::spawn(simulate_kubelets(client, server.url(), alive));
        SimulatedNodes { server, kubelets }
    }
}

impl Drop for SimulatedNodes {
    fn drop(&mut self) {
        self.kubelets.abort();
    }
}

/// The names of the ReplicaSets of the `api` Deployment.
fn api_replicasets(s: &Server) -> Vec<String> {
    s.ok(&["get", "rs", "-l", "app=api", "-o", "name"])
        .lines()
        .map(str::to_string)
        .collect()
}

/// Applies [`DEPLOY`] and waits for its first rollout to finish.
fn deploy_api(s: &Server) {
    s.apply_yaml("apply", DEPLOY);
    s.ok(&["rollout", "status", "deployment/api", "--timeout=30s"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deployment_rolls_out_an_image_change() {
    let nodes = SimulatedNodes::start().await;
    let s = &nodes.server;
    tokio::task::block_in_place(|| {
        deploy_api(s);
        s.ok(&["set", "image", "deployment/api", "api=busybox:1.37"]);
        let out = s.ok(&["rollout", "status", "deployment/api", "--timeout=30s"]);
        assert!(out.contains("successfully rolled out"), "{out}");
        let pods = s.get_json(&["pods", "-l", "app=api"]);
        let live: Vec<&Value> = pods["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
            .collect();
        assert_eq!(live.len(), 3, "live pods after the rollout: {live:?}");
        assert!(
            live.iter()
                .all(|p| p["spec"]["containers"][0]["image"] == "busybox:1.37"),
            "every live pod runs the new image: {live:?}"
        );
        let history = s.ok(&["rollout", "history", "deployment/api"]);
        assert!(history.contains('1') && history.contains('2'), "{history}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_undo_returns_to_the_previous_replicaset() {
    let nodes = SimulatedNodes::start().await;
    let s = &nodes.server;
    tokio::task::block_in_place(|| {
        deploy_api(s);
        s.ok(&["set", "image", "deployment/api", "api=busybox:1.37"]);
        s.ok(&["rollout", "status", "deployment/api", "--timeout=30s"]);
        s.ok(&["rollout", "undo", "deployment/api"]);
        s.ok(&["rollout", "status", "deployment/api", "--timeout=30s"]);
        let d = s.get_json(&["deploy", "api"]);
        assert_eq!(
            d["spec"]["template"]["spec"]["containers"][0]["image"],
            "busybox:1.36"
        );
        let rs = api_replicasets(s);
        assert_eq!(rs.len(), 2, "undo reuses the first ReplicaSet: {rs:?}");
    });
}

/// How long a paused Deployment is watched for a rollout that must not start.
const PAUSED_WINDOW: Duration = Duration::from_secs(1);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_deployment_rolls_out_only_once_resumed() {
    let nodes = SimulatedNodes::start().await;
    let s = &nodes.server;
    tokio::task::block_in_place(|| {
        deploy_api(s);
        s.ok(&["rollout", "pause", "deployment/api"]);
        s.ok(&["set", "image", "deployment/api", "api=busybox:1.38"]);
        assert_stays_for(
            PAUSED_WINDOW,
            "the paused deployment to keep its one ReplicaSet",
            || {
                let rs = api_replicasets(s);
                (rs.len() == 1).then_some(()).ok_or(rs)
            },
        );
        s.ok(&["rollout", "resume", "deployment/api"]);
        s.ok(&["rollout", "status", "deployment/api", "--timeout=30s"]);
        let rs = api_replicasets(s);
        assert_eq!(rs.len(), 2, "resuming rolled out a new ReplicaSet: {rs:?}");
    });
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollout_restart_rolls_out_a_new_replicaset() {
    let nodes = SimulatedNodes::start().await;
    let s = &nodes.server;
    tokio::task::block_in_place(|| {
        deploy_api(s);
        s.ok(&["rollout", "restart", "deployment/api"]);
        s.ok(&["rollout", "status", "deployment/api", "--timeout=30s"]);
        let rs = api_replicasets(s);
        assert_eq!(rs.len(), 2, "restart made a second ReplicaSet: {rs:?}");
    });
}

#[test]
fn unschedulable_pod_explains_why() {
    let s = Server::start();
    let mut small = node("tiny");
    small["status"]["allocatable"]["memory"] = json!("128Mi");
    small["status"]["capacity"]["memory"] = json!("128Mi");
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        &serde_json::to_string(&small).unwrap(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: big\nspec:\n  containers:\n  - name: c\n    image: busybox\n    resources: {requests: {memory: 1Gi}}\n",
    );
    wait_for("FailedScheduling event", || {
        s.ok(&["describe", "pod", "big"])
            .contains("FailedScheduling")
    });
    let describe = s.ok(&["describe", "pod", "big"]);
    assert!(describe.contains("Insufficient memory"), "{describe}");
    let pod = s.get_json(&["pod", "big"]);
    assert_eq!(pod["status"]["phase"], "Pending");
    assert!(pod["spec"]["nodeName"].is_null());
}

#[test]
fn cascading_deletes_follow_the_policy() {
    let s = Server::start();
    let rc = RC.replace("replicas: 6", "replicas: 2");
    for (name, cascade, pods_left) in [
        ("bg", "background", 0),
        ("fg", "foreground", 0),
        ("or", "orphan", 2),
    ] {
        let yaml = rc
            .replace("name: web", &format!("name: {name}"))
            .replace("app: web", &format!("app: {name}"));
        s.apply_yaml("apply", &yaml);
        wait_for("2 pods", || {
            pods_per_node(&s, &format!("app={name}"))
                .values()
                .sum::<usize>()
                == 2
        });
        s.ok(&[
            "delete",
            "rc",
            name,
            &format!("--cascade={cascade}"),
            "--timeout=20s",
        ]);
        assert!(!s.kubectl(&["get", "rc", name]).status.success());
        wait_for("dependents to match the policy", || {
            pods_per_node(&s, &format!("app={name}"))
                .values()
                .sum::<usize>()
                == pods_left
        });
        if pods_left > 0 {
            let pods = s.get_json(&["pods", "-l", &format!("app={name}")]);
            assert!(
                pods["items"][0]["metadata"]["ownerReferences"].is_null()
                    || pods["items"][0]["metadata"]["ownerReferences"]
                        .as_array()
                        .unwrap()
                        .is_empty()
            );
        }
    }
}

#[test]
fn a_second_rc_replaces_the_first_rolling_update_style() {
    let s = Server::start();
    let rc = |version: u32, replicas: u32| {
        format!(
            "apiVersion: v1\nkind: ReplicationController\nmetadata: {{name: web-v{version}}}\nspec:\n  replicas: {replicas}\n  selector: {{app: web, version: \"{version}\"}}\n  template:\n    metadata: {{labels: {{app: web, version: \"{version}\"}}}}\n    spec:\n      containers: [{{name: web, image: \"busybox:1.3{version}\"}}]\n"
        )
    };
    let count = |selector: &str| pods_per_node(&s, selector).values().sum::<usize>();
    s.apply_yaml("apply", &rc(1, 3));
    wait_for("3 v1 pods", || count("app=web,version=1") == 3);
    s.apply_yaml("apply", &rc(2, 0));
    // Step by step, as `kubectl rolling-update` did: one up on the new, one down on the old.
    for step in 1..=3 {
        s.ok(&["scale", "rc", "web-v2", &format!("--replicas={step}")]);
        s.ok(&["scale", "rc", "web-v1", &format!("--replicas={}", 3 - step)]);
        wait_for("the step to converge", || {
            count("app=web,version=2") == step && count("app=web,version=1") == 3 - step
        });
    }
    s.ok(&["delete", "rc", "web-v1"]);
    let pods = s.get_json(&["pods", "-l", "app=web"]);
    let owners: Vec<&str> = pods["items"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| !p["metadata"]["deletionTimestamp"].is_string())
        .map(|p| {
            p["metadata"]["ownerReferences"][0]["name"]
                .as_str()
                .unwrap()
        })
        .collect();
    assert_eq!(owners, vec!["web-v2"; 3], "{pods}");
}
