//! Node-pressure eviction on the one-node cluster of `support::kubelet` (needs root and
//! containerd; see there): an agent restarted with a memory threshold it is already
//! past reports MemoryPressure, is tainted so new pods are not placed there, evicts the
//! BestEffort pod before the Guaranteed one (Failed, reason Evicted, upstream's
//! message, an event), and clears the condition and the taint once the threshold is
//! lifted. Malformed eviction flags stop the agent with one line naming the flag.

use std::process::Command;

use serde_json::Value;

mod support;
use support::kubelet::*;

const MEMORY_TAINT: &str = "node.kubernetes.io/memory-pressure";

fn pod_yaml(name: &str, resources: &str) -> String {
    format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 5
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
    resources: {resources}
"#
    )
}

fn eviction_args(w: &World, hard: &str) -> Vec<String> {
    vec![
        format!("--eviction-hard={hard}"),
        "--eviction-pressure-transition-period=2s".into(),
        "--eviction-monitoring-interval=2s".into(),
        format!("--containerd-root={}", w.dir.join("root").display()),
    ]
}

fn condition(w: &World, kind: &str) -> Value {
    let out = w.kubectl(&["get", "node", "kt-node", "-o", "json"]);
    let node: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    node["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == kind).cloned())
        .unwrap_or_default()
}

fn taints(w: &World) -> String {
    w.kubectl_out(&[
        "get",
        "node",
        "kt-node",
        "-o",
        "jsonpath={range .spec.taints[*]}{.key}:{.effect} {end}",
    ])
}

fn phase(w: &World, name: &str) -> String {
    w.pod(name).unwrap_or_default()["status"]["phase"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[test]
fn memory_pressure_taints_the_node_and_evicts_best_effort_before_guaranteed() {
    let mut w = World::prepare(false);
    w.server_args = eviction_args(&w, "memory.available<1Ki");
    w.spawn_server();

    w.step("pods run while the node has memory to spare");
    w.apply(&pod_yaml(
        "guaranteed",
        "{requests: {cpu: 100m, memory: 64Mi}, limits: {cpu: 100m, memory: 64Mi}}",
    ));
    w.apply(&pod_yaml("best-effort", "{}"));
    w.wait_running("guaranteed");
    w.wait_running("best-effort");
    assert_eq!(condition(&w, "MemoryPressure")["status"], "False");
    assert_eq!(
        w.pod("guaranteed").unwrap()["status"]["qosClass"],
        "Guaranteed"
    );

    w.step("an agent started past its memory threshold reports MemoryPressure and is tainted");
    w.kill_server();
    w.server_args = eviction_args(&w, "memory.available<1000Ti");
    w.spawn_server();
    w.wait_for("the MemoryPressure condition", || {
        condition(&w, "MemoryPressure")["status"] == "True"
    });
    let pressure = condition(&w, "MemoryPressure");
    assert_eq!(pressure["reason"], "KubeletHasInsufficientMemory");
    assert_eq!(
        pressure["message"],
        "kubelet has insufficient memory available"
    );
    w.wait_for("the memory-pressure taint", || {
        taints(&w).contains(&format!("{MEMORY_TAINT}:NoSchedule"))
    });

    w.step("the BestEffort pod is evicted first, the Guaranteed one later");
    let mut guaranteed_when_best_effort_went = String::new();
    w.wait_for("the BestEffort pod to be evicted", || {
        let gone = phase(&w, "best-effort") == "Failed";
        if gone {
            guaranteed_when_best_effort_went = phase(&w, "guaranteed");
        }
        gone
    });
    assert_eq!(
        guaranteed_when_best_effort_went, "Running",
        "one pod per check, BestEffort first"
    );
    let evicted = w.pod("best-effort").unwrap();
    assert_eq!(evicted["status"]["reason"], "Evicted", "{evicted}");
    let message = evicted["status"]["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with(
            "The node was low on resource: memory. Threshold quantity: 1000Ti, available: "
        ),
        "{message}"
    );
    let target = evicted["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget").cloned())
        .expect("a DisruptionTarget condition");
    assert_eq!(target["reason"], "TerminationByKubelet");
    assert!(
        w.pod_events("best-effort")
            .iter()
            .any(|(reason, m)| reason == "Evicted" && m == message),
        "{:?}",
        w.pod_events("best-effort")
    );
    w.wait_for("the Guaranteed pod to be evicted next", || {
        phase(&w, "guaranteed") == "Failed"
    });
    assert_eq!(w.pod("guaranteed").unwrap()["status"]["reason"], "Evicted");

    w.step("the scheduler places no new pod on the tainted node");
    w.apply(&pod_yaml("newcomer", "{}"));
    w.wait_for("the newcomer to be reported unschedulable", || {
        w.pod_events("newcomer").iter().any(|(reason, m)| {
            reason == "FailedScheduling"
                && m.contains(&format!("untolerated taint {{{MEMORY_TAINT}: }}"))
        })
    });

    w.step("lifting the threshold clears the condition and the taint");
    w.kill_server();
    w.server_args = eviction_args(&w, "memory.available<1Ki");
    w.spawn_server();
    w.wait_for("MemoryPressure to clear", || {
        condition(&w, "MemoryPressure")["status"] == "False"
    });
    assert_eq!(
        condition(&w, "MemoryPressure")["reason"],
        "KubeletHasSufficientMemory"
    );
    w.wait_for("the taint to go", || !taints(&w).contains(MEMORY_TAINT));
    w.wait_running("newcomer");
}

#[test]
fn malformed_eviction_flags_stop_the_agent_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    let token = format!("K10{}::node:secret", "a".repeat(64));
    for (flag, named) in [
        ("--eviction-hard=memory.available>1Gi", "--eviction-hard"),
        ("--eviction-soft=memory.available<1Gi", "--eviction-soft"),
        ("--eviction-hard=disk.free<1Gi", "--eviction-hard"),
        (
            "--eviction-pressure-transition-period=a-while",
            "--eviction-pressure-transition-period",
        ),
    ] {
        let out = Command::new(ORC)
            .args(["agent", "--join", "https://127.0.0.1:1", "--token", &token])
            .arg("--data-dir")
            .arg(dir.path())
            .arg(flag)
            .output()
            .expect("run orc agent");
        assert!(!out.status.success(), "{flag} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{flag}: {stderr}");
        assert!(
            lines[0].starts_with(&format!("orc: invalid {named} ")),
            "{flag}: {stderr}"
        );
    }
}
