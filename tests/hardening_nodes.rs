//! A joined node's own credential against a real `orc server`: it may not escalate
//! through its Node (NodeRestriction: taints, cordon, podCIDRs, restricted labels), store
//! invalid quantities, store oversized objects or flood events; the admin still may do
//! what belongs to admins.

mod support;

use std::path::Path;
use std::time::Duration;

use serde_json::{json, Value};
use support::host_agent::{join_token, HostAgent};
use support::server::{wait_for, Server};

/// A joined node `node` (an agent without containerd) once it has its podCIDR: what
/// gives the test a real node credential.
fn join(s: &Server, node: &str) -> HostAgent {
    let data_dir = s.dir.path().join(format!("agent-{node}"));
    let agent = HostAgent::start(s, &join_token(s), &data_dir, node);
    wait_for(&format!("node {node} to get its podCIDR"), || {
        agent.kubeconfig().exists()
            && s.kubectl(&["get", "node", node, "-o", "jsonpath={.spec.podCIDR}"])
                .stdout
                .starts_with(b"10.42.")
    });
    agent
}

/// Runs kubectl as the node expecting a refusal; returns stderr. (`kubectl uncordon`
/// reports a refusal on stderr but exits 0.)
fn refused(agent: &HostAgent, args: &[&str]) -> String {
    let out = agent.kubectl(args);
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success() || stderr.starts_with("error: "),
        "node's kubectl {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    stderr
}

fn client_for(kubeconfig: &Path) -> reqwest::Client {
    let creds = orc::tls::kubeconfig_credentials(&std::fs::read_to_string(kubeconfig).unwrap())
        .expect("parse kubeconfig");
    let identity = Some((creds.cert_pem.as_str(), creds.key_pem.as_str()));
    let tls = orc::tls::client_config_pinned(&creds.ca_pem, identity).expect("client tls");
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(Duration::from_secs(10))
        .build()
        .expect("reqwest client")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// What of a Node a node could use to escalate: podCIDRs, cordon, the admin's taints
/// (the node lifecycle controller's `node.kubernetes.io/*` taints come and go) and labels.
fn escalation_surface(s: &Server, node: &str) -> Value {
    let n = s.get_json(&["node", node]);
    let spec = &n["spec"];
    let admin_taints: Vec<&Value> = spec["taints"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|t| {
            !t["key"]
                .as_str()
                .unwrap_or("")
                .starts_with("node.kubernetes.io/")
        })
        .collect();
    json!({"podCIDR": spec["podCIDR"], "podCIDRs": spec["podCIDRs"],
           "unschedulable": spec["unschedulable"], "taints": admin_taints,
           "labels": n["metadata"]["labels"]})
}

#[test]
fn node_cannot_escalate_through_its_own_node_object() {
    let s = Server::start();
    let n1 = join(&s, "n1");
    // The admin taints and cordons the node and pins its role.
    s.ok(&["taint", "node", "n1", "dedicated=db:NoSchedule"]);
    s.ok(&["cordon", "n1"]);
    s.ok(&["label", "node", "n1", "node-role.kubernetes.io/worker="]);
    let before = escalation_surface(&s, "n1");
    let forbidden = |args: &[&str], why: &str| {
        let err = refused(&n1, args);
        assert!(
            err.contains("nodes \"n1\" is forbidden: ") && err.contains(why),
            "{args:?}: {err}"
        );
    };

    let taints = "node \"n1\" is not allowed to modify taints";
    forbidden(&["taint", "node", "n1", "dedicated-"], taints);
    forbidden(
        &[
            "patch",
            "node",
            "n1",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/spec/taints"}]"#,
        ],
        taints,
    );
    forbidden(
        &[
            "patch",
            "node",
            "n1",
            "--type=strategic",
            "-p",
            r#"{"spec":{"taints":null}}"#,
        ],
        taints,
    );
    forbidden(
        &["uncordon", "n1"],
        "node \"n1\" is not allowed to modify spec.unschedulable",
    );
    forbidden(
        &[
            "patch",
            "node",
            "n1",
            "--type=merge",
            "-p",
            r#"{"spec":{"podCIDR":"0.0.0.0/1","podCIDRs":["0.0.0.0/1"]}}"#,
        ],
        "node \"n1\" is not allowed to modify spec.podCIDR",
    );
    for label in [
        "node-restriction.kubernetes.io/trusted=yes",
        "node-role.kubernetes.io/control-plane=",
        "node-role.kubernetes.io/worker-",
        "kubernetes.io/hostname=n2",
    ] {
        let key = label.trim_end_matches('-').split('=').next().unwrap();
        forbidden(
            &["label", "node", "n1", label, "--overwrite"],
            &format!("is not allowed to modify labels: {key}"),
        );
    }
    // A PUT of the whole Node with the taints gone is refused the same way.
    let mut node = s.get_json(&["node", "n1"]);
    node["spec"]["taints"] = json!([]);
    let (code, status) = runtime().block_on(async {
        let resp = client_for(&n1.kubeconfig())
            .put(format!("{}/api/v1/nodes/n1", s.url()))
            .json(&node)
            .send()
            .await
            .unwrap();
        (resp.status(), resp.json::<Value>().await.unwrap())
    });
    assert_eq!(code, 403);
    assert_eq!(status["reason"], "Forbidden");
    assert_eq!(
        status["message"],
        format!("nodes \"n1\" is forbidden: {taints}")
    );

    assert_eq!(
        escalation_surface(&s, "n1"),
        before,
        "the Node is unchanged"
    );
    // What is the kubelet's stays the node's.
    let own = n1.kubectl(&["label", "node", "n1", "zone=attic"]);
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );

    // PodCIDRs: immutable for everyone once assigned, and inside --cluster-cidr.
    let err = s.fails(&[
        "patch",
        "node",
        "n1",
        "--type=merge",
        "-p",
        r#"{"spec":{"podCIDR":"10.42.200.0/24","podCIDRs":["10.42.200.0/24"]}}"#,
    ]);
    assert!(
        err.contains("Node \"n1\" is invalid")
            && err.contains("spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid"),
        "{err}"
    );
    let outside = s.kubectl_stdin(
        &["create", "-f", "-"],
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: rogue\nspec:\n  podCIDR: 10.43.0.0/24\n  podCIDRs: [10.43.0.0/24]\n",
    );
    let err = String::from_utf8_lossy(&outside.stderr);
    assert!(
        !outside.status.success()
            && err.contains("spec.podCIDRs[0]: Invalid value: \"10.43.0.0/24\": must be a subnet of the cluster CIDR 10.42.0.0/16"),
        "{err}"
    );

    // The admin still may do all the rest.
    s.ok(&["taint", "node", "n1", "dedicated-"]);
    s.ok(&["uncordon", "n1"]);
    s.ok(&["label", "node", "n1", "node-role.kubernetes.io/worker-"]);
    let after = escalation_surface(&s, "n1");
    assert_eq!(after["taints"], json!([]), "{after}");
    assert_eq!(after["unschedulable"], Value::Null, "{after}");
    assert!(after["labels"]
        .get("node-role.kubernetes.io/worker")
        .is_none());
}

#[test]
fn node_status_with_invalid_quantities_is_refused_and_describe_still_works() {
    let s = Server::start();
    let n1 = join(&s, "n1");
    let status_patch_refused = |patch: &str| {
        refused(
            &n1,
            &[
                "patch",
                "node",
                "n1",
                "--subresource=status",
                "--type=merge",
                "-p",
                patch,
            ],
        )
    };
    for bad in ["*", "0x10", "lots"] {
        let patch = json!({"status": {"capacity": {"cpu": bad}}}).to_string();
        let err = status_patch_refused(&patch);
        assert!(
            err.contains("The Node \"n1\" is invalid: ")
                && err.contains(&format!(
                    "status.capacity.cpu: Invalid value: \"{bad}\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"
                )),
            "{bad}: {err}"
        );
    }
    let err = status_patch_refused(r#"{"status":{"allocatable":{"memory":"-1Gi"}}}"#);
    assert!(
        err.contains("status.allocatable.memory: Invalid value: \"-1Gi\": must be greater than or equal to 0"),
        "{err}"
    );
    let described = s.ok(&["describe", "node", "n1"]);
    assert!(described.contains("Name:               n1"), "{described}");
    assert!(described.contains("Capacity:"), "{described}");
}

#[test]
fn oversized_objects_are_refused_and_node_events_are_rate_limited() {
    let s = Server::start();
    let n1 = join(&s, "n1");
    let node = client_for(&n1.kubeconfig());
    let admin = s.client(true);
    let events = format!("{}/api/v1/namespaces/default/events", s.url());
    let event = |name: &str, message: &str| {
        json!({"apiVersion": "v1", "kind": "Event",
               "metadata": {"name": name, "namespace": "default"},
               "involvedObject": {"kind": "Node", "name": "n1"},
               "reason": "Test", "message": message, "type": "Normal"})
    };
    let rt = runtime();
    rt.block_on(async {
        // 1.6 MB: under the 3 MiB request limit, over the 1.5 MiB an object may take.
        let huge = event("huge", &"x".repeat(1_600_000));
        let resp = node.post(&events).json(&huge).send().await.unwrap();
        assert_eq!(resp.status(), 413);
        let status: Value = resp.json().await.unwrap();
        assert_eq!(status["reason"], "RequestEntityTooLarge");
        let message = status["message"].as_str().unwrap();
        assert!(
            message.starts_with("etcdserver: request is too large: events \"huge\" would take ")
                && message.ends_with("bytes stored, the limit is 1572864"),
            "{message}"
        );
        let stored = admin.get(format!("{events}/huge")).send().await.unwrap();
        assert_eq!(stored.status(), 404, "nothing was written");

        // Status updates too: a 1.6 MB condition message.
        let status_patch = json!({"status": {"conditions": [
            {"type": "Bloat", "status": "True", "message": "x".repeat(1_600_000)}]}});
        let resp = node
            .patch(format!("{}/api/v1/nodes/n1/status", s.url()))
            .header("content-type", "application/merge-patch+json")
            .body(status_patch.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 413);

        // A node gets its burst of events, then 429 with Retry-After.
        let mut accepted = 0;
        let refused = loop {
            assert!(accepted < 400, "no rate limit after {accepted} events");
            let resp = node
                .post(&events)
                .json(&event(&format!("n1-{accepted}"), "hello"))
                .send()
                .await
                .unwrap();
            if resp.status() == 429 {
                break resp;
            }
            assert_eq!(resp.status(), 201);
            accepted += 1;
        };
        assert!(accepted >= 90, "only {accepted} events before the limit");
        assert_eq!(refused.headers()["retry-after"], "1");
        let status: Value = refused.json().await.unwrap();
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(
            status["message"],
            "Too many requests: limit reached on type User for key system:node:n1"
        );
        // The admin is not limited.
        for i in 0..150 {
            let resp = admin
                .post(&events)
                .json(&event(&format!("admin-{i}"), "hello"))
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 201, "admin event {i}");
        }
    });
    // ConfigMap data keeps upstream's own limit (422).
    let big = "x".repeat(1_048_577);
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
                    "metadata": {"name": "big", "namespace": "default"}, "data": {"a": big}});
    let resp = rt.block_on(async {
        admin
            .post(format!("{}/api/v1/namespaces/default/configmaps", s.url()))
            .json(&cm)
            .send()
            .await
            .unwrap()
    });
    assert_eq!(resp.status(), 422);
    let status: Value = rt.block_on(resp.json()).unwrap();
    assert!(
        status["message"]
            .as_str()
            .unwrap()
            .contains("Too long: may not be more than 1048576 bytes"),
        "{status}"
    );
}
