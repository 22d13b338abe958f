//! DaemonSets on two real nodes (`support::multinode`: a server and two agents, each on
//! its own containerd) driven with the real kubectl: one pod per node placed by the
//! scheduler, a node labelled out loses its pod and gets it back at once, a rolling
//! update changes the image on every node with at most `maxUnavailable` node down,
//! `kubectl rollout status|history|undo|restart` work, bad specs are refused with 422, and
//! deleting the DaemonSet deletes its pods.
//!
//! Needs root, containerd, runc, busybox-static, nsenter, ip and kubectl
//! (scripts/install-deps.sh).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::multinode::{Cluster, IMAGE, NODES};

/// The same busybox content under another name: what the rolling update switches to.
const IMAGE_V2: &str = "docker.io/library/busybox:test2";
/// How long a whole rollout over two nodes may take.
const ROLLOUT_DEADLINE: Duration = Duration::from_secs(60);
/// How soon a node that becomes eligible must get its pod running.
const PROMPTLY: Duration = Duration::from_secs(15);

fn daemon_set(name: &str, extra_spec: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: DaemonSet
metadata:
  name: {name}
spec:
  selector:
    matchLabels:
      app: {name}
{extra_spec}  template:
    metadata:
      labels:
        app: {name}
    spec:
      terminationGracePeriodSeconds: 0
      affinity:
        nodeAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
            nodeSelectorTerms:
            - matchExpressions:
              - key: agent-off
                operator: DoesNotExist
      containers:
      - name: app
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [\"sleep\", \"3600\"]
"
    )
}

/// The DaemonSet's pods that are not being deleted.
fn live_pods(c: &Cluster) -> Vec<Value> {
    c.kubectl_json(&["get", "pods", "-l", "app=agent"])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

fn is_running_ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Nodes with a running, ready pod of the DaemonSet, and the images those pods run.
fn ready_nodes(pods: &[Value]) -> (BTreeSet<String>, BTreeSet<String>) {
    let ready: Vec<&Value> = pods.iter().filter(|p| is_running_ready(p)).collect();
    let nodes = ready
        .iter()
        .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        .collect();
    let images = ready
        .iter()
        .map(|p| {
            p["spec"]["containers"][0]["image"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .collect();
    (nodes, images)
}

fn all_nodes() -> BTreeSet<String> {
    NODES.iter().map(|(n, _)| n.to_string()).collect()
}

/// Waits until every node runs exactly one ready pod with `image`, checking on every
/// look that no more than `max_unavailable` nodes are without a ready pod.
fn roll_to(c: &Cluster, image: &str, max_unavailable: usize) {
    let start = Instant::now();
    loop {
        let pods = live_pods(c);
        for p in &pods {
            c.remember(p);
        }
        let (nodes, images) = ready_nodes(&pods);
        let down = all_nodes().difference(&nodes).count();
        assert!(
            down <= max_unavailable,
            "{down} nodes without a ready pod during the rollout to {image}"
        );
        if pods.len() == NODES.len() && nodes == all_nodes() && images == [image.to_string()].into()
        {
            return;
        }
        assert!(
            start.elapsed() < ROLLOUT_DEADLINE,
            "rollout to {image} stalled: {} pods, ready on {nodes:?}, images {images:?}",
            pods.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn a_daemon_set_runs_one_pod_per_node_and_rolls_through_them() {
    let started = Instant::now();
    let c = Cluster::start_with_images(&[IMAGE_V2]);
    eprintln!("cluster up in {:?}", started.elapsed());

    c.step("Bad DaemonSets are refused with 422 and not stored");
    let mismatched = daemon_set("bad", "").replace("app: bad\n    spec", "app: other\n    spec");
    let refused = c.kubectl_stdin_fails(&["create", "-f", "-"], &mismatched);
    assert!(
        refused.contains("is invalid")
            && refused.contains("spec.template.metadata.labels")
            && refused.contains("`selector` does not match template `labels`"),
        "{refused}"
    );
    let no_budget = daemon_set(
        "bad",
        "  updateStrategy:\n    rollingUpdate:\n      maxUnavailable: 0\n      maxSurge: 0\n",
    );
    let refused = c.kubectl_stdin_fails(&["create", "-f", "-"], &no_budget);
    assert!(
        refused.contains("spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"),
        "{refused}"
    );
    assert!(!c.kubectl(&["get", "ds", "bad"]).status.success());

    c.step("One pod per node, bound by the scheduler");
    c.apply(&daemon_set("agent", ""));
    c.wait_for("a running pod on each node", || {
        let pods = live_pods(&c);
        pods.len() == NODES.len() && ready_nodes(&pods).0 == all_nodes()
    });
    for pod in live_pods(&c) {
        c.remember(&pod);
        let terms = &pod["spec"]["affinity"]["nodeAffinity"]
            ["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"];
        assert_eq!(
            terms[0]["matchFields"][0]["values"][0], pod["spec"]["nodeName"],
            "placed by node affinity: {terms}"
        );
    }
    c.wait_for("the status to count both nodes", || {
        let table = c.kubectl_out(&["get", "ds", "agent"]);
        let row: Vec<&str> = table
            .lines()
            .nth(1)
            .unwrap_or("")
            .split_whitespace()
            .collect();
        row.get(1..6) == Some(&["2", "2", "2", "2", "2"][..])
    });
    let table = c.kubectl_out(&["get", "ds", "agent"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        [
            "NAME",
            "DESIRED",
            "CURRENT",
            "READY",
            "UP-TO-DATE",
            "AVAILABLE",
            "NODE",
            "SELECTOR",
            "AGE"
        ],
        "{table}"
    );

    c.step("A node labelled out loses its pod and gets it back at once");
    c.kubectl_ok(&["label", "node", "n2", "agent-off=yes"]);
    c.wait_for("n2's pod to go", || {
        let pods = live_pods(&c);
        pods.len() == 1 && pods[0]["spec"]["nodeName"] == "n1"
    });
    c.kubectl_ok(&["label", "node", "n2", "agent-off-"]);
    let relabelled = Instant::now();
    c.wait_within(PROMPTLY, "n2 to run a pod again", || {
        ready_nodes(&live_pods(&c)).0 == all_nodes()
    });
    eprintln!(
        "n2 ran its pod {:?} after it became eligible",
        relabelled.elapsed()
    );

    c.step("A rolling update changes the image on every node, one node at a time");
    c.kubectl_ok(&["set", "image", "ds/agent", &format!("app={IMAGE_V2}")]);
    roll_to(&c, IMAGE_V2, 1);
    let status = c.kubectl_out(&["rollout", "status", "ds/agent", "--timeout=30s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = c.kubectl_out(&["rollout", "history", "ds/agent"]);
    let revisions: Vec<&str> = history
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|w| w.chars().all(|c| c.is_ascii_digit()))
        .collect();
    assert_eq!(revisions, ["1", "2"], "{history}");

    c.step("kubectl rollout undo restores the first image everywhere");
    let undo = c.kubectl_out(&["rollout", "undo", "ds/agent"]);
    assert!(undo.contains("rolled back"), "{undo}");
    roll_to(&c, IMAGE, 1);
    let status = c.kubectl_out(&["rollout", "status", "ds/agent", "--timeout=30s"]);
    assert!(status.contains("successfully rolled out"), "{status}");
    let history = c.kubectl_out(&["rollout", "history", "ds/agent"]);
    assert!(history.lines().any(|l| l.starts_with('3')), "{history}");

    c.step("kubectl rollout restart replaces every pod");
    let before: BTreeSet<String> = live_pods(&c)
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    c.kubectl_ok(&["rollout", "restart", "ds/agent"]);
    c.wait_within(ROLLOUT_DEADLINE, "new pods on every node", || {
        let pods = live_pods(&c);
        pods.iter().for_each(|p| c.remember(p));
        let names: BTreeSet<String> = pods
            .iter()
            .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        pods.len() == NODES.len()
            && names.is_disjoint(&before)
            && ready_nodes(&pods).0 == all_nodes()
    });
    let status = c.kubectl_out(&["rollout", "status", "ds/agent", "--timeout=30s"]);
    assert!(status.contains("successfully rolled out"), "{status}");

    c.step("Deleting the DaemonSet deletes its pods");
    c.kubectl_ok(&["delete", "ds", "agent"]);
    c.wait_for("the pods to be gone", || {
        c.kubectl_json(&["get", "pods", "-l", "app=agent"])
            .and_then(|l| l["items"].as_array().map(Vec::len))
            == Some(0)
    });
    eprintln!("done in {:?}", started.elapsed());
}
