//! Priorities against the real binary and kubectl: the built-in PriorityClasses and
//! upstream's rules for classes (reserved names, the 1e9 cap, immutable value, system
//! classes kept), pods given their class's priority at admission, and a high-priority
//! pod preempting a low-priority one on a full API-only node (nominated node,
//! DisruptionTarget, Preempted event), sparing a pod a PodDisruptionBudget protects.

mod support;

use serde_json::{json, Value};
use support::server::{wait_for, Server};

fn full_node(s: &Server, name: &str) {
    let node = json!({
        "apiVersion": "v1", "kind": "Node",
        "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
        "status": {
            "capacity": {"cpu": "1", "memory": "1Gi", "pods": "110"},
            "allocatable": {"cpu": "1", "memory": "1Gi", "pods": "110"},
            "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady",
                            "lastHeartbeatTime": chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()}],
        }
    });
    let out = s.kubectl_stdin(&["create", "-f", "-"], &node.to_string());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn class(s: &Server, name: &str, value: i64) {
    s.apply_yaml(
        "create",
        &format!("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {name}\nvalue: {value}\n"),
    );
}

fn pod_yaml(name: &str, class: &str, cpu: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  priorityClassName: {class}\n  containers:\n  - name: c\n    image: busybox\n    resources: {{requests: {{cpu: {cpu}}}}}\n"
    )
}

fn pod(s: &Server, name: &str) -> Value {
    s.get_json(&["pod", name])
}

#[test]
fn priority_classes_follow_upstreams_rules() {
    let s = Server::start();
    let table = s.ok(&["get", "priorityclasses"]);
    let header: Vec<&str> = table
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        header,
        ["NAME", "VALUE", "GLOBAL-DEFAULT", "AGE", "PREEMPTIONPOLICY"]
    );
    let rows: Vec<Vec<&str>> = table
        .lines()
        .skip(1)
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(rows.len(), 2, "{table}");
    assert_eq!(
        rows[0][..3],
        ["system-cluster-critical", "2000000000", "false"]
    );
    assert_eq!(
        rows[1][..3],
        ["system-node-critical", "2000001000", "false"]
    );
    assert_eq!(rows[1][4], "PreemptLowerPriority");

    class(&s, "high", 1000);
    let err = s.fails(&[
        "patch",
        "pc",
        "high",
        "--type=merge",
        "-p",
        r#"{"value": 2000}"#,
    ]);
    assert!(
        err.contains("value: Forbidden: may not be changed in an update."),
        "{err}"
    );
    assert_eq!(s.get_json(&["pc", "high"])["value"], 1000);
    let err = s.fails(&["delete", "pc", "system-node-critical"]);
    assert!(
        err.contains("this is a system priority class and cannot be deleted"),
        "{err}"
    );
    // (Written as YAML: kubectl's own generators send protobuf, which needs the
    // PriorityClass protobuf schema the merge regenerates.)
    let create = |yaml: String| -> String {
        let out = s.kubectl_stdin(&["create", "-f", "-"], &yaml);
        assert!(!out.status.success(), "{yaml} was accepted");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let pc = |name: &str, value: i64, default: bool| {
        format!("apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: {name}\nvalue: {value}\nglobalDefault: {default}\n")
    };
    let err = create(pc("system-mine", 5, false));
    assert!(err.contains("reserved for system use only"), "{err}");
    let err = create(pc("huge", 1_000_000_001, false));
    assert!(
        err.contains("maximum allowed value of a user defined priority is 1000000000"),
        "{err}"
    );
    s.apply_yaml("create", &pc("everyone", 7, true));
    let err = create(pc("another", 8, true));
    assert!(
        err.contains("PriorityClass everyone already marked as default"),
        "{err}"
    );

    // Admission resolves the class into the pod's priority.
    s.apply_yaml("create", &pod_yaml("important", "high", "100m"));
    assert_eq!(pod(&s, "important")["spec"]["priority"], 1000);
    assert_eq!(
        pod(&s, "important")["spec"]["preemptionPolicy"],
        "PreemptLowerPriority"
    );
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: plain\nspec:\n  containers:\n  - {name: c, image: busybox}\n",
    );
    assert_eq!(
        pod(&s, "plain")["spec"]["priority"],
        7,
        "the global default"
    );
    assert_eq!(pod(&s, "plain")["spec"]["priorityClassName"], "everyone");
    let out = s.kubectl_stdin(&["create", "-f", "-"], &pod_yaml("lost", "nope", "100m"));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("pods \"lost\" is forbidden: no PriorityClass with name nope was found"),
        "{err}"
    );
}

#[test]
fn a_high_priority_pod_preempts_a_low_priority_one_on_a_full_node() {
    let s = Server::start();
    full_node(&s, "n1");
    class(&s, "low", 10);
    class(&s, "high", 1000);
    let mut polite = String::from(
        "apiVersion: scheduling.k8s.io/v1\nkind: PriorityClass\nmetadata:\n  name: polite\nvalue: 2000\n",
    );
    polite.push_str("preemptionPolicy: Never\n");
    s.apply_yaml("create", &polite);

    s.apply_yaml("create", &pod_yaml("low", "low", "800m"));
    wait_for("the low-priority pod to be scheduled", || {
        pod(&s, "low")["spec"]["nodeName"] == "n1"
    });
    let low_uid = pod(&s, "low")["metadata"]["uid"].clone();

    // A pod that never preempts stays Pending however important it is.
    s.apply_yaml("create", &pod_yaml("waits", "polite", "500m"));
    wait_for("the polite pod to be reported unschedulable", || {
        pod(&s, "waits")["status"]["conditions"]
            .as_array()
            .is_some_and(|cs| cs.iter().any(|c| c["reason"] == "Unschedulable"))
    });
    assert_eq!(pod(&s, "low")["metadata"]["uid"], low_uid, "still there");
    s.ok(&["delete", "pod", "waits"]);

    s.apply_yaml("create", &pod_yaml("high", "high", "500m"));
    wait_for("the high-priority pod to be nominated to n1", || {
        pod(&s, "high")["status"]["nominatedNodeName"] == "n1"
    });
    // No kubelet here: the victim stays terminating (its grace period) with the
    // condition saying why.
    wait_for("the low-priority pod to be preempted", || {
        !pod(&s, "low")["metadata"]["deletionTimestamp"].is_null()
    });
    let low = pod(&s, "low");
    assert_eq!(low["metadata"]["uid"], low_uid);
    let target = low["status"]["conditions"]
        .as_array()
        .and_then(|cs| cs.iter().find(|c| c["type"] == "DisruptionTarget").cloned())
        .expect("a DisruptionTarget condition");
    assert_eq!(target["status"], "True");
    assert_eq!(target["reason"], "PreemptionByScheduler");
    assert_eq!(
        target["message"],
        "default-scheduler: preempting to accommodate a higher priority pod"
    );
    wait_for("the high-priority pod to be scheduled to n1", || {
        pod(&s, "high")["spec"]["nodeName"] == "n1"
    });
    let events = s.ok(&[
        "get",
        "events",
        "--field-selector",
        "reason=Preempted",
        "-o",
        "jsonpath={range .items[*]}{.involvedObject.name}: {.message}{\"\\n\"}{end}",
    ]);
    let high_uid = pod(&s, "high")["metadata"]["uid"]
        .as_str()
        .unwrap_or("")
        .to_string();
    assert!(
        events.contains(&format!("low: Preempted by pod {high_uid} on node n1")),
        "{events}"
    );
    let wide = s.ok(&["get", "pod", "high", "-o", "wide"]);
    let header: Vec<&str> = wide
        .lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let row: Vec<&str> = wide
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    let nominated = header
        .iter()
        .position(|h| *h == "NOMINATED")
        .expect("a NOMINATED NODE column");
    assert_eq!(row[nominated], "n1", "{wide}");
}

#[test]
fn preemption_spares_the_pod_a_disruption_budget_protects() {
    let s = Server::start();
    full_node(&s, "n1");
    class(&s, "low", 10);
    class(&s, "high", 1000);
    // Without the budget "guarded" would go: equal victims are reprieved in name order.
    for (name, app) in [("free", "web"), ("guarded", "db")] {
        let mut yaml = pod_yaml(name, "low", "400m");
        yaml = yaml.replacen(
            &format!("name: {name}\n"),
            &format!("name: {name}\n  labels:\n    app: {app}\n"),
            1,
        );
        s.apply_yaml("create", &yaml);
    }
    s.apply_yaml(
        "create",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: db\nspec:\n  minAvailable: 1\n  selector:\n    matchLabels:\n      app: db\n",
    );
    for name in ["free", "guarded"] {
        wait_for(&format!("{name} to be scheduled"), || {
            pod(&s, name)["spec"]["nodeName"] == "n1"
        });
    }
    wait_for("the budget to allow no disruption", || {
        s.get_json(&["pdb", "db"])["status"]["observedGeneration"].is_number()
    });
    assert_eq!(
        s.get_json(&["pdb", "db"])["status"]["disruptionsAllowed"],
        0
    );

    s.apply_yaml("create", &pod_yaml("high", "high", "500m"));
    wait_for("the unprotected pod to be preempted", || {
        !pod(&s, "free")["metadata"]["deletionTimestamp"].is_null()
    });
    wait_for("the high-priority pod to be nominated to n1", || {
        pod(&s, "high")["status"]["nominatedNodeName"] == "n1"
    });
    let guarded = pod(&s, "guarded");
    assert!(
        guarded["metadata"]["deletionTimestamp"].is_null(),
        "the protected pod stays: {guarded}"
    );
    assert!(
        guarded["status"]["conditions"]
            .as_array()
            .is_none_or(|cs| cs.iter().all(|c| c["type"] != "DisruptionTarget")),
        "{guarded}"
    );
}
