//! The node's readiness follows its container runtime, on the one-node cluster of
//! `support::kubelet` (needs root and containerd; see there).

use std::time::Instant;

use serde_json::Value;

mod support;
use support::kubelet::*;

/// The node is NotReady while containerd is down (once the outage outlasts upstream's
/// 30 s allowance) and Ready once it is back; pods start again, and a probe that runs
/// through containerd does not count the outage as failures.
#[test]
fn node_is_not_ready_while_containerd_is_down() {
    let w = World::start();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: probed
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    # Runs through containerd: its outage below must not count as failures.
    livenessProbe:
      exec:
        command: ["true"]
      periodSeconds: 1
"#
    ));
    w.wait_running("probed");
    assert_eq!(w.node_ready()["status"], "True", "{}", w.node_ready());
    w.stop_containerd();
    let stopped = Instant::now();
    let mut ready = Value::Null;
    w.wait_for_within(
        RUNTIME_DOWN_AFTER + DEADLINE,
        "the node to be NotReady",
        || {
            ready = w.node_ready();
            ready["status"] == "False"
        },
    );
    assert!(
        stopped.elapsed() >= RUNTIME_DOWN_AFTER - orc::agent::node::RUNTIME_CHECK_INTERVAL,
        "NotReady after only {:?}",
        stopped.elapsed()
    );
    assert_eq!(ready["reason"], "KubeletNotReady", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("container runtime is down")),
        "{ready}"
    );
    let table = w.kubectl_ok(&["get", "node", "kt-node"]);
    assert!(table.contains("NotReady"), "{table}");
    w.restart_containerd();
    w.wait_for("the node to be Ready again", || {
        w.node_ready()["status"] == "True"
    });
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: after-outage
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo back; exec sleep 3600\"]
"
    ));
    w.remember("after-outage");
    w.wait_for("a pod to start after the outage", || {
        w.kubectl_out(&["logs", "after-outage"]) == "back"
    });
    assert_eq!(
        container_status(&w.pod("probed").unwrap())["restartCount"],
        0,
        "the outage restarted a container"
    );
    let events = w.pod_events("probed");
    assert!(
        !events
            .iter()
            .any(|(r, _)| r == "Unhealthy" || r == "Killing"),
        "{events:?}"
    );
}
