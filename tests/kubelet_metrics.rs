//! A node's metrics through the API server's `nodes/NAME/proxy/metrics` (issue 17), on
//! the one-node cluster of `support::kubelet` (needs root and containerd; see there):
//! the kubelet's running pods and pod start latency, the proxy's sync latency, the
//! cluster DNS's queries and the agent's process; and the scheduler's attempts on the
//! server's `/metrics`.

mod support;
use support::kubelet::*;
use support::metric_sample as sample;

#[test]
fn node_metrics_are_served_through_the_proxy_subresource() {
    let w = World::start();
    // No nodeName: the scheduler places it.
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: measured
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#
    ));
    w.wait_running("measured");
    w.step("cluster DNS queries are counted");
    let lookup = w.kubectl(&[
        "exec",
        "measured",
        "--",
        "nslookup",
        "kubernetes.default.svc.cluster.local",
        CLUSTER_DNS,
    ]);
    assert!(
        lookup.status.success(),
        "nslookup: {}",
        String::from_utf8_lossy(&lookup.stderr)
    );
    let mut text = String::new();
    w.wait_for("the node's metrics to show the pod", || {
        text = w.kubectl_out(&["get", "--raw", "/api/v1/nodes/kt-node/proxy/metrics"]);
        sample(&text, "kubelet_running_pods").unwrap_or(0.0) >= 1.0
    });
    w.step("the kubelet counts its pods and their start");
    assert!(
        sample(
            &text,
            r#"kubelet_running_containers{container_state="running"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{text}"
    );
    assert!(
        sample(&text, "kubelet_pod_start_duration_seconds_count").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    w.step("the proxy times its syncs");
    assert!(
        sample(&text, "kubeproxy_sync_proxy_rules_duration_seconds_count").unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    w.step("DNS queries are counted by type");
    assert!(
        sample(&text, r#"orc_dns_requests_total{proto="udp",type="A"}"#).unwrap_or(0.0) >= 1.0,
        "{text}"
    );
    w.step("the agent reports its process");
    assert!(sample(&text, "process_resident_memory_bytes").unwrap_or(0.0) > 0.0);
    assert!(!text.contains("measured"), "no pod names in labels: {text}");
    w.step("the scheduler counts its attempt");
    let server = w.kubectl_out(&["get", "--raw", "/metrics"]);
    assert!(
        sample(
            &server,
            r#"scheduler_schedule_attempts_total{result="scheduled",profile="default-scheduler"}"#
        )
        .unwrap_or(0.0)
            >= 1.0,
        "{server}"
    );
}
