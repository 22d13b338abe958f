//! The scheduler honours a pod's own placement rules on two real nodes
//! (`support::multinode`), driven with the real kubectl: a Deployment with required
//! pod anti-affinity on the hostname runs one replica per node and leaves the third
//! Pending with upstream's message, and a Deployment with a `DoNotSchedule` topology
//! spread constraint (maxSkew 1) lands evenly.
//!
//! Needs root, containerd, runc, busybox-static, nsenter, ip and kubectl
//! (scripts/install-deps.sh).

use std::collections::BTreeMap;

use serde_json::Value;

mod support;
use support::multinode::{Cluster, IMAGE, NODES};

fn deployment(name: &str, replicas: usize, pod_spec_extra: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
spec:
  replicas: {replicas}
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
    spec:
      terminationGracePeriodSeconds: 0
{pod_spec_extra}      containers:
      - name: c
        image: {IMAGE}
        imagePullPolicy: Never
        command: [sleep, '3600']
"
    )
}

fn pods_of(c: &Cluster, app: &str) -> Vec<Value> {
    c.kubectl_json(&["get", "pods", "-l", &format!("app={app}")])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
        .collect()
}

/// Running pods per node.
fn running_per_node(pods: &[Value]) -> BTreeMap<String, usize> {
    let mut out = BTreeMap::new();
    for p in pods {
        if p["status"]["phase"] == "Running" {
            let node = p["spec"]["nodeName"].as_str().unwrap_or("").to_string();
            *out.entry(node).or_default() += 1;
        }
    }
    out
}

fn unschedulable_message(pod: &Value) -> Option<String> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "PodScheduled" && c["reason"] == "Unschedulable")
        .and_then(|c| c["message"].as_str().map(str::to_string))
}

#[test]
fn pod_anti_affinity_and_topology_spread_place_replicas_as_upstream() {
    let c = Cluster::start();

    c.step("required anti-affinity on the hostname: one replica per node, the third Pending");
    let anti = "      affinity:
        podAntiAffinity:
          requiredDuringSchedulingIgnoredDuringExecution:
          - labelSelector:
              matchLabels: {app: apart}
            topologyKey: kubernetes.io/hostname
";
    c.apply(&deployment("apart", 3, anti));
    let mut pending = Value::Null;
    c.wait_for(
        "two replicas running on two nodes and one unschedulable",
        || {
            let pods = pods_of(&c, "apart");
            let per_node = running_per_node(&pods);
            let unschedulable: Vec<&Value> = pods
                .iter()
                .filter(|p| unschedulable_message(p).is_some())
                .collect();
            if let [one] = unschedulable.as_slice() {
                pending = (*one).clone();
            }
            per_node.len() == NODES.len()
                && per_node.values().all(|&n| n == 1)
                && unschedulable.len() == 1
        },
    );
    for p in pods_of(&c, "apart") {
        c.remember(&p);
    }
    assert_eq!(pending["status"]["phase"], "Pending");
    let message = unschedulable_message(&pending).unwrap_or_default();
    assert!(
        message.starts_with(
            "0/2 nodes are available: 2 node(s) didn't match pod anti-affinity rules."
        ),
        "{message}"
    );
    let name = pending["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    c.wait_for("a FailedScheduling event in upstream's words", || {
        c.kubectl_json(&[
            "get",
            "events",
            "--field-selector",
            &format!("reason=FailedScheduling,involvedObject.name={name}"),
        ])
        .and_then(|l| l["items"].as_array().cloned())
        .is_some_and(|items| {
            items.iter().any(|e| {
                e["message"]
                    .as_str()
                    .is_some_and(|m| m.contains("didn't match pod anti-affinity rules"))
            })
        })
    });
    c.kubectl_ok(&["delete", "deployment", "apart", "--wait=false"]);

    c.step("maxSkew 1 DoNotSchedule on the hostname: replicas spread evenly");
    let spread = "      topologySpreadConstraints:
      - maxSkew: 1
        topologyKey: kubernetes.io/hostname
        whenUnsatisfiable: DoNotSchedule
        labelSelector:
          matchLabels: {app: even}
";
    c.apply(&deployment("even", 4, spread));
    c.wait_for("four replicas running, two per node", || {
        let per_node = running_per_node(&pods_of(&c, "even"));
        per_node.len() == NODES.len() && per_node.values().all(|&n| n == 2)
    });
    c.step("scaling up keeps the skew within one");
    c.kubectl_ok(&["scale", "deployment", "even", "--replicas=5"]);
    c.wait_for("five replicas running, 3 and 2", || {
        let per_node = running_per_node(&pods_of(&c, "even"));
        let mut counts: Vec<usize> = per_node.values().copied().collect();
        counts.sort();
        counts == [2, 3]
    });
    for p in pods_of(&c, "even") {
        c.remember(&p);
    }
}
