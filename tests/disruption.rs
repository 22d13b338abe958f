//! Disruption budgets against the real binary and kubectl: PDB status follows the pods,
//! the eviction subresource answers 429 while the budget allows nothing and evicts once
//! it does, `kubectl drain` is held by a budget (bounded `--timeout`) and goes through
//! once the budget allows it, and DELETE accepts protobuf DeleteOptions (kubectl drain
//! `--disable-eviction`). Pods are bound to API-only nodes and their readiness is
//! written through the status subresource, as a kubelet would.

mod support;

use serde_json::{json, Value};
use support::server::{stdout, wait_for, Server};

fn node(s: &Server, name: &str) {
    s.apply_yaml(
        "create",
        &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"),
    );
}

/// A bare pod labelled `app=web` on `node`, Running and Ready.
fn ready_pod(s: &Server, name: &str, node: &str) {
    s.apply_yaml(
        "create",
        &format!(
            "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  labels: {{app: web}}\nspec:\n  nodeName: {node}\n  containers:\n  - {{name: c, image: busybox}}\n"
        ),
    );
    let status = json!({"status": {"phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}]}});
    s.ok(&[
        "patch",
        "pod",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

fn pdb_status(s: &Server) -> Value {
    s.get_json(&["pdb", "web"])["status"].clone()
}

fn pod_exists(s: &Server, name: &str) -> bool {
    s.kubectl(&["get", "pod", name]).status.success()
}

async fn evict(s: &Server, pod: &str) -> (u16, Value) {
    let url = format!("{}/api/v1/namespaces/default/pods/{pod}/eviction", s.url());
    let body = json!({"apiVersion": "policy/v1", "kind": "Eviction",
        "metadata": {"name": pod, "namespace": "default"},
        "deleteOptions": {"gracePeriodSeconds": 0}});
    let resp = s
        .client(true)
        .post(url)
        .json(&body)
        .send()
        .await
        .expect("eviction");
    let code = resp.status().as_u16();
    (code, resp.json().await.expect("a Status"))
}

#[tokio::test]
async fn budgets_hold_evictions_and_drain_until_they_allow_them() {
    let s = Server::start();
    node(&s, "n1");
    ready_pod(&s, "a", "n1");
    ready_pod(&s, "b", "n1");
    s.apply_yaml(
        "create",
        "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: web\nspec:\n  minAvailable: 2\n  selector: {matchLabels: {app: web}}\n",
    );
    wait_for("the budget counts two healthy pods", || {
        let st = pdb_status(&s);
        st["currentHealthy"] == 2 && st["observedGeneration"] == 1
    });
    let st = pdb_status(&s);
    assert_eq!(
        (&st["desiredHealthy"], &st["expectedPods"]),
        (&json!(2), &json!(2))
    );
    assert_eq!(st["disruptionsAllowed"], 0);
    assert_eq!(st["conditions"][0]["reason"], "InsufficientPods");
    let table = s.ok(&["get", "pdb"]);
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
            "MIN",
            "AVAILABLE",
            "MAX",
            "UNAVAILABLE",
            "ALLOWED",
            "DISRUPTIONS",
            "AGE"
        ]
    );
    assert!(
        table.lines().nth(1).unwrap_or("").starts_with("web "),
        "{table}"
    );
    assert!(
        table.lines().nth(1).unwrap_or("").contains("  N/A  "),
        "{table}"
    );

    // Refused while the budget allows nothing: 429 with upstream's message and cause.
    let (code, status) = evict(&s, "a").await;
    assert_eq!(code, 429, "{status}");
    assert_eq!(
        status["message"],
        "Cannot evict pod as it would violate the pod's disruption budget."
    );
    assert_eq!(status["details"]["causes"][0]["reason"], "DisruptionBudget");
    assert!(pod_exists(&s, "a"));

    // A third healthy pod allows one disruption: the eviction goes through and takes it.
    ready_pod(&s, "c", "n1");
    wait_for("one disruption allowed", || {
        pdb_status(&s)["disruptionsAllowed"] == 1
    });
    let (code, status) = evict(&s, "c").await;
    assert_eq!(code, 201, "{status}");
    assert_eq!(status["status"], "Success");
    assert!(!pod_exists(&s, "c"));
    wait_for("the budget allows nothing again", || {
        let st = pdb_status(&s);
        st["disruptionsAllowed"] == 0 && st["currentHealthy"] == 2
    });

    // kubectl drain cordons, then retries the blocked evictions until its timeout.
    let drain = [
        "drain",
        "n1",
        "--ignore-daemonsets",
        "--delete-emptydir-data",
        "--force",
        "--grace-period=0",
        "--timeout=4s",
    ];
    let started = std::time::Instant::now();
    let out = s.kubectl(&drain);
    assert!(
        !out.status.success(),
        "drain went through: {}",
        stdout(&out)
    );
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("disruption budget"), "{stderr}");
    assert_eq!(s.get_json(&["node", "n1"])["spec"]["unschedulable"], true);
    assert!(pod_exists(&s, "a") && pod_exists(&s, "b"));

    // Once the budget allows it, the same drain empties the node.
    s.ok(&[
        "patch",
        "pdb",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec": {"minAvailable": 0}}"#,
    ]);
    wait_for("two disruptions allowed", || {
        pdb_status(&s)["disruptionsAllowed"] == 2
    });
    let out = s.kubectl(&drain);
    assert!(
        out.status.success(),
        "drain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("node/n1 drained"), "{}", stdout(&out));
    assert!(!pod_exists(&s, "a") && !pod_exists(&s, "b"));
    s.ok(&["uncordon", "n1"]);
    assert!(s.get_json(&["node", "n1"])["spec"]["unschedulable"].is_null());
}

/// `runtime.Unknown{typeMeta{meta.k8s.io/v1, DeleteOptions}, raw}` with the `k8s\0` magic.
fn protobuf_delete_options(raw: &[u8]) -> Vec<u8> {
    fn field(tag: u8, bytes: &[u8]) -> Vec<u8> {
        let mut out = vec![(tag << 3) | 2, bytes.len() as u8];
        out.extend_from_slice(bytes);
        out
    }
    let mut type_meta = field(1, b"meta.k8s.io/v1");
    type_meta.extend(field(2, b"DeleteOptions"));
    let mut out = b"k8s\0".to_vec();
    out.extend(field(1, &type_meta));
    out.extend(field(2, raw));
    out
}

#[tokio::test]
async fn deletes_take_protobuf_options_and_drain_can_skip_eviction() {
    let s = Server::start();
    node(&s, "n2");
    ready_pod(&s, "p", "n2");
    let uid = s.get_json(&["pod", "p"])["metadata"]["uid"]
        .as_str()
        .expect("uid")
        .to_string();
    let url = format!("{}/api/v1/namespaces/default/pods/p", s.url());
    let c = s.client(true);
    let delete = |raw: Vec<u8>| {
        c.delete(&url)
            .header("Content-Type", "application/vnd.kubernetes.protobuf")
            .body(protobuf_delete_options(&raw))
    };
    // preconditions{uid: "wrong"}: 409 Conflict, the pod stays.
    let wrong = [vec![0x12, 7, 0x0a, 5], b"wrong".to_vec()].concat();
    let resp = delete(wrong).send().await.expect("delete");
    assert_eq!(resp.status().as_u16(), 409);
    assert!(pod_exists(&s, "p"));
    // Garbage is a 400 BadRequest.
    let resp = c
        .delete(&url)
        .header("Content-Type", "application/vnd.kubernetes.protobuf")
        .body(b"k8s\0\xff\xff".to_vec())
        .send()
        .await
        .expect("delete");
    assert_eq!(resp.status().as_u16(), 400);
    // gracePeriodSeconds: 0 with the right uid deletes it now.
    let right = [
        vec![0x08, 0, 0x12, uid.len() as u8 + 2, 0x0a, uid.len() as u8],
        uid.into_bytes(),
    ]
    .concat();
    let resp = delete(right).send().await.expect("delete");
    assert_eq!(resp.status().as_u16(), 200);
    assert!(!pod_exists(&s, "p"));

    // kubectl drain --disable-eviction deletes pods itself (protobuf DeleteOptions).
    ready_pod(&s, "q", "n2");
    let out = s.kubectl(&[
        "drain",
        "n2",
        "--disable-eviction",
        "--force",
        "--grace-period=0",
        "--timeout=20s",
    ]);
    assert!(
        out.status.success(),
        "drain failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!pod_exists(&s, "q"));
}
