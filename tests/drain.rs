//! `kubectl drain` on the real node of `support::kubelet` (needs root and containerd;
//! see there): a PodDisruptionBudget holds the drain while it would break the budget,
//! the same drain empties the node once the budget allows it (the pods' containers stop),
//! the replacements wait on the cordoned node and run once it is uncordoned.

use std::time::Duration;

use serde_json::Value;

mod support;
use support::kubelet::*;

fn pods_of_web(w: &World) -> Vec<Value> {
    let out = w.kubectl_ok(&["get", "pods", "-l", "app=web", "-o", "json"]);
    let list: Value = serde_json::from_str(&out).unwrap_or_default();
    list["items"].as_array().cloned().unwrap_or_default()
}

fn names(pods: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = pods
        .iter()
        .map(|p| p["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    names.sort();
    names
}

fn running(pods: &[Value]) -> usize {
    pods.iter()
        .filter(|p| p["status"]["phase"] == "Running")
        .count()
}

#[test]
fn drain_waits_for_the_budget_then_empties_the_node() {
    let w = World::start();
    w.apply(&format!(
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
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        command: [\"sleep\", \"3600\"]
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: web
spec:
  minAvailable: 2
  selector:
    matchLabels: {{app: web}}
"
    ));
    w.wait_for("both pods running", || running(&pods_of_web(&w)) == 2);
    let first = names(&pods_of_web(&w));
    w.wait_for("the budget to count both pods healthy", || {
        w.kubectl_out(&[
            "get",
            "pdb",
            "web",
            "-o",
            "jsonpath={.status.currentHealthy}/{.status.disruptionsAllowed}",
        ]) == "2/0"
    });

    w.step("the budget holds the drain until its timeout");
    let drain = [
        "drain",
        "kt-node",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--timeout=5s",
    ];
    let out = w.kubectl(&drain);
    let stderr = String::from_utf8_lossy(&out.stderr).to_string();
    assert!(!out.status.success(), "drain went through");
    assert!(stderr.contains("disruption budget"), "{stderr}");
    assert_eq!(names(&pods_of_web(&w)), first, "no pod was evicted");
    assert_eq!(running(&pods_of_web(&w)), 2);
    let unschedulable = w.kubectl_out(&[
        "get",
        "node",
        "kt-node",
        "-o",
        "jsonpath={.spec.unschedulable}",
    ]);
    assert_eq!(unschedulable, "true", "drain cordons the node first");

    w.step("once the budget allows it, the same drain empties the node");
    w.kubectl_ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec": {"minAvailable": 0}}"#,
    ]);
    let out = w.kubectl_ok(&[&drain[..4], &["--timeout=60s"]].concat());
    assert!(out.contains("node/kt-node drained"), "{out}");
    w.wait_for_within(
        Duration::from_secs(30),
        "the drained pods gone (their containers stopped)",
        || {
            let left = pods_of_web(&w);
            first.iter().all(|name| !names(&left).contains(name))
        },
    );
    let pods = pods_of_web(&w);
    assert_eq!(pods.len(), 2, "the Deployment replaced its pods");
    assert!(
        pods.iter().all(|p| p["status"]["phase"] == "Pending"),
        "the replacements wait while the node is cordoned"
    );

    w.step("uncordoned, the node runs the replacements");
    w.kubectl_ok(&["uncordon", "kt-node"]);
    w.wait_for("the replacements running", || {
        running(&pods_of_web(&w)) == 2
    });
}
