//! Built-in resource metrics and the HorizontalPodAutoscaler on the kubelet's one-node
//! cluster (`support::kubelet`; needs root and containerd), with the real kubectl:
//! `kubectl top nodes` and `kubectl top pods [-A] [--containers]` show what a busy pod
//! uses, a missing pod's metrics are 404, and `kubectl autoscale` scales a Deployment
//! whose pods burn CPU up, then (behavior shortened in the spec) down again.

use std::time::Duration;

use serde_json::Value;

mod support;
use support::kubelet::*;

/// Two scrapes 15 s apart are needed before the first figures (metrics-server's
/// resolution), plus the pod's start.
const METRICS_DEADLINE: Duration = Duration::from_secs(90);
/// Up: two scrapes, one 15 s autoscaler sync, pods starting. Down: new pods' first two
/// scrapes and a few syncs.
const SCALE_DEADLINE: Duration = Duration::from_secs(150);

/// A Deployment whose pods run `command`, requesting 20m CPU and limited to 100m (a busy
/// loop then uses 500 % of its request without taking a whole core). No `replicas`: a
/// re-apply must leave the autoscaler's count alone (one replica by default).
fn deployment(command: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: burner
spec:
  selector:
    matchLabels: {{app: burner}}
  template:
    metadata:
      labels: {{app: burner}}
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: burn
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [\"sh\", \"-c\", \"{command}\"]
        resources:
          requests: {{cpu: 20m, memory: 16Mi}}
          limits: {{cpu: 100m}}
"
    )
}

/// The millicores of a `kubectl top` CPU cell (`99m`, `1`).
fn millicores(cell: &str) -> u64 {
    match cell.strip_suffix('m') {
        Some(m) => m.parse().unwrap_or(0),
        None => cell.parse::<u64>().map(|c| c * 1000).unwrap_or(0),
    }
}

fn replicas(w: &World) -> i64 {
    w.kubectl_out(&[
        "get",
        "deployment",
        "burner",
        "-o",
        "jsonpath={.spec.replicas}",
    ])
    .parse()
    .unwrap_or(0)
}

#[test]
fn kubectl_top_shows_usage_and_an_autoscaler_scales_a_busy_deployment() {
    let w = World::start();

    w.step("kubectl top pods --containers shows a busy pod's CPU");
    w.apply(&deployment("while :; do :; done"));
    let mut top = String::new();
    w.wait_for_within(METRICS_DEADLINE, "metrics of the busy pod", || {
        top = w.kubectl_out(&["top", "pods", "--containers"]);
        top.lines().any(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            cols.len() == 4
                && cols[0].starts_with("burner-")
                && cols[1] == "burn"
                && millicores(cols[2]) > 10
        })
    });
    assert!(top.starts_with("POD"), "{top}");
    assert!(
        top.contains("CPU(cores)") && top.contains("MEMORY(bytes)"),
        "{top}"
    );
    let all = w.kubectl_ok(&["top", "pods", "-A"]);
    assert!(
        all.lines()
            .any(|l| l.starts_with("default") && l.contains("burner-")),
        "{all}"
    );

    w.step("kubectl top nodes shows the node's CPU and memory");
    let nodes = w.kubectl_ok(&["top", "nodes"]);
    let row: Vec<&str> = nodes
        .lines()
        .find(|l| l.starts_with("kt-node"))
        .unwrap_or_else(|| panic!("{nodes}"))
        .split_whitespace()
        .collect();
    assert!(millicores(row[1]) > 0, "{nodes}");
    assert!(
        row[3].trim_end_matches("Mi").parse::<u64>().unwrap_or(0) > 0,
        "{nodes}"
    );

    w.step("the metrics API: PodMetrics by label, NodeMetrics, 404 for a missing pod");
    let list: Value = serde_json::from_str(&w.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dburner",
    ]))
    .unwrap();
    assert_eq!(list["kind"], "PodMetricsList");
    let item = &list["items"][0];
    assert_eq!(item["metadata"]["labels"]["app"], "burner");
    assert_eq!(item["containers"][0]["name"], "burn");
    assert_ne!(item["containers"][0]["usage"]["memory"], "0");
    let none: Value = serde_json::from_str(&w.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods?labelSelector=app%3Dnothing",
    ]))
    .unwrap();
    assert_eq!(none["items"], serde_json::json!([]));
    let node: Value = serde_json::from_str(&w.kubectl_ok(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/nodes/kt-node",
    ]))
    .unwrap();
    assert_eq!(node["kind"], "NodeMetrics");
    assert!(node["window"].as_str().unwrap().ends_with('s'));
    let missing = w.kubectl(&[
        "get",
        "--raw",
        "/apis/metrics.k8s.io/v1beta1/namespaces/default/pods/missing",
    ]);
    assert!(!missing.status.success());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    w.step("kubectl autoscale creates an autoscaler that scales the busy Deployment up");
    w.kubectl_ok(&[
        "autoscale",
        "deployment",
        "burner",
        "--cpu-percent=50",
        "--min=1",
        "--max=3",
    ]);
    w.kubectl_ok(&[
        "patch",
        "hpa",
        "burner",
        "--type=merge",
        "-p",
        r#"{"spec":{"behavior":{"scaleDown":{"stabilizationWindowSeconds":0,"policies":[{"type":"Pods","value":5,"periodSeconds":15}]}}}}"#,
    ]);
    w.wait_for_within(
        SCALE_DEADLINE,
        "the Deployment to be scaled up to 3",
        || replicas(&w) == 3,
    );
    let table = w.kubectl_ok(&["get", "hpa", "burner"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        [
            "NAME",
            "REFERENCE",
            "TARGETS",
            "MINPODS",
            "MAXPODS",
            "REPLICAS",
            "AGE"
        ],
        "{table}"
    );
    assert!(
        table.contains("Deployment/burner") && table.contains("/50%"),
        "{table}"
    );
    let hpa: Value = serde_json::from_str(&w.kubectl_ok(&[
        "get",
        "horizontalpodautoscalers.v2.autoscaling",
        "burner",
        "-o",
        "json",
    ]))
    .unwrap();
    let conditions = hpa["status"]["conditions"].as_array().unwrap();
    assert!(
        conditions
            .iter()
            .any(|c| c["type"] == "ScalingActive" && c["status"] == "True"),
        "{conditions:?}"
    );
    assert!(hpa["status"]["lastScaleTime"].is_string());
    let v1: Value = serde_json::from_str(&w.kubectl_ok(&[
        "get",
        "horizontalpodautoscalers.v1.autoscaling",
        "burner",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(v1["apiVersion"], "autoscaling/v1");
    assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
    let events = w.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler",
    ]);
    assert!(events.contains("SuccessfulRescale"), "{events}");

    w.step("idle pods bring the Deployment back down (behavior from the spec)");
    w.apply(&deployment("sleep 3600"));
    w.wait_for_within(
        SCALE_DEADLINE,
        "the Deployment to be scaled down to 1",
        || replicas(&w) == 1,
    );
    let events = w.kubectl_ok(&[
        "get",
        "events",
        "--field-selector",
        "involvedObject.kind=HorizontalPodAutoscaler,reason=SuccessfulRescale",
        "-o",
        "jsonpath={.items[*].message}",
    ]);
    assert!(
        events.contains("New size: 1; reason: All metrics below target"),
        "{events}"
    );
}
