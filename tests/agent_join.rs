//! `orc agent` against a real `orc server`: joining with the token, node identity and
//! authorization, registration with a podCIDR, lease heartbeats, restarts, and the
//! server's embedded agent.

mod support;

use std::process::{Command, Stdio};
use std::time::Duration;

use support::host_agent::{
    join_token as token, HostAgent as Agent, HOST_NETNS_AGENT_ARGS, NO_CONTAINERD,
};
use support::server::{kubectl_with, stdout, wait_for, Server, ORC};
use support::wait::wait_until;

/// How long an agent may take to renew its node lease (it renews every 10 s).
const LEASE_RENEWED_WITHIN: Duration = Duration::from_secs(25);

fn node_json(s: &Server, node: &str) -> Option<serde_json::Value> {
    let out = s.kubectl(&["get", "node", node, "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_str(&stdout(&out)).unwrap())
}

/// The agents here have no containerd (their socket names no file): their nodes say so.
fn no_runtime(node: &serde_json::Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "Ready"
                && c["status"] == "False"
                && c["reason"] == "KubeletNotReady"
                && c["message"].as_str().is_some_and(|m| {
                    m.starts_with("container runtime is down: ") && m.contains(NO_CONTAINERD)
                })
        })
}

fn wait_registered_with_cidr(s: &Server, node: &str) -> serde_json::Value {
    let mut last = None;
    wait_for(
        &format!("node {node} with a podCIDR, NotReady for want of containerd"),
        || {
            last = node_json(s, node);
            last.as_ref()
                .is_some_and(|n| no_runtime(n) && n["spec"]["podCIDR"].as_str().is_some())
        },
    );
    last.unwrap()
}

fn lease_renew_time(s: &Server, node: &str) -> Option<String> {
    let out = s.kubectl(&["get", "lease", "-n", "kube-node-lease", node, "-o", "json"]);
    if !out.status.success() {
        return None;
    }
    let lease: serde_json::Value = serde_json::from_str(&stdout(&out)).unwrap();
    lease["spec"]["renewTime"].as_str().map(str::to_string)
}

/// Runs kubectl with the node's credential, expecting a 403.
fn forbidden(agent: &Agent, args: &[&str]) {
    let out = kubectl_with(&agent.kubeconfig(), args, None);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.to_lowercase().contains("forbidden"),
        "kubectl {args:?} as the node: expected Forbidden, got {err} / {}",
        stdout(&out)
    );
}

/// A server and one agent joined to it as node `n1` (registered, with a podCIDR); the
/// agent's data dir lives in `work`.
struct Joined {
    server: Server,
    work: tempfile::TempDir,
    token: String,
    agent: Agent,
    node: serde_json::Value,
}

fn join_n1() -> Joined {
    let server = Server::start();
    let work = tempfile::tempdir().unwrap();
    let token = token(&server);
    let agent = Agent::start(&server, &token, &work.path().join("a1"), "n1");
    let node = wait_registered_with_cidr(&server, "n1");
    Joined {
        server,
        work,
        token,
        agent,
        node,
    }
}

#[test]
fn joined_agent_registers_its_node_with_a_pod_cidr() {
    let Joined {
        server: s, node, ..
    } = &join_n1();
    let labels = &node["metadata"]["labels"];
    assert_eq!(labels["kubernetes.io/os"], "linux");
    assert!(labels["kubernetes.io/arch"].is_string());
    assert_eq!(node["spec"]["podCIDR"], "10.42.0.0/24");
    assert_eq!(node["status"]["capacity"]["pods"], "110");
    assert_eq!(node["status"]["nodeInfo"]["kubeletVersion"], "v1.32.0+orc");
    let table = s.ok(&["get", "nodes"]);
    assert!(
        table.contains("n1") && table.contains("NotReady"),
        "{table}"
    );
}

#[test]
fn agent_renews_its_node_lease_and_lists_show_it() {
    let Joined { server: s, .. } = &join_n1();
    let mut first = None;
    wait_for("the node lease", || {
        first = lease_renew_time(s, "n1");
        first.is_some()
    });
    wait_until(
        LEASE_RENEWED_WITHIN,
        &format!("the lease renewTime to advance from {first:?}"),
        || {
            let now = lease_renew_time(s, "n1");
            (now != first).then_some(()).ok_or(now)
        },
    );
    // Lists show the renewal too, although it was not written to the datastore.
    let listed = s.get_json(&["leases", "-n", "kube-node-lease"]);
    let listed_time = listed["items"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["metadata"]["name"] == "n1")
        .and_then(|l| l["spec"]["renewTime"].as_str())
        .map(str::to_string);
    assert_ne!(listed_time, first, "a list shows the renewed lease");
}

#[test]
fn agent_keeps_its_credential_and_password_in_private_files() {
    let Joined { agent, .. } = &join_n1();
    use std::os::unix::fs::PermissionsExt;
    for file in ["node-password", "client.key", "client.crt", "ca.crt"] {
        let mode = std::fs::metadata(agent.data_dir.join("agent").join(file))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{file}");
    }
}

#[test]
fn node_identity_reads_what_a_kubelet_reads_and_nothing_admin_like() {
    let Joined {
        server: s, agent, ..
    } = &join_n1();
    let nodes = kubectl_with(&agent.kubeconfig(), &["get", "nodes"], None);
    assert!(nodes.status.success(), "{:?}", nodes);
    forbidden(agent, &["delete", "ns", "default"]);
    forbidden(agent, &["create", "ns", "mine"]);
    forbidden(agent, &["get", "secrets", "-n", "kube-system"]);
    forbidden(
        agent,
        &["create", "secret", "generic", "x", "-n", "kube-system"],
    );
    forbidden(agent, &["run", "p", "--image=busybox", "-n", "kube-system"]);
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: other\n",
    );
    forbidden(agent, &["label", "node", "other", "stolen=yes"]);
    let own = kubectl_with(
        &agent.kubeconfig(),
        &["label", "node", "n1", "mine=yes"],
        None,
    );
    assert!(
        own.status.success(),
        "{}",
        String::from_utf8_lossy(&own.stderr)
    );
}

#[test]
fn another_machine_cannot_claim_a_joined_node_name() {
    let Joined {
        server: s,
        work,
        token,
        ..
    } = &join_n1();
    let mut thief = Agent::start(s, token, &work.path().join("a2"), "n1");
    assert!(
        !thief.wait_exit(),
        "second agent with the same name must fail"
    );
    let log = thief.log();
    assert!(
        log.contains("node n1 is already registered with a different password"),
        "{log}"
    );
}

#[test]
fn restarted_agent_reuses_its_stored_credential_and_password() {
    let Joined {
        server: s,
        work,
        token,
        mut agent,
        ..
    } = join_n1();
    let password = agent.agent_file("node-password");
    let cert = agent.agent_file("client.crt");
    agent.stop();
    let restarted = Agent::start(&s, &token, &work.path().join("a1"), "n1");
    wait_for("the restarted agent to use its stored credential", || {
        restarted.log().contains("using the stored node credential")
    });
    let before = lease_renew_time(&s, "n1");
    wait_for("the restarted agent to renew the lease", || {
        lease_renew_time(&s, "n1") != before
    });
    assert_eq!(restarted.agent_file("node-password"), password);
    assert_eq!(restarted.agent_file("client.crt"), cert);
    assert!(!restarted.log().contains("joined the cluster"));
}

#[test]
fn agent_refuses_a_foreign_ca_and_retries_a_rejected_token() {
    let s = Server::start();
    let work = tempfile::tempdir().unwrap();
    let token = token(&s);
    let secret = token.rsplit(':').next().unwrap();

    let foreign = format!("K10{}::node:{secret}", "ab".repeat(32));
    let mut agent = Agent::start(&s, &foreign, &work.path().join("a"), "n1");
    assert!(!agent.wait_exit());
    assert!(
        agent.log().contains(
            "the server's CA does not match the token's hash: is --join pointing at the right server?"
        ),
        "{}",
        agent.log()
    );

    let bare = Agent::start(&s, secret, &work.path().join("b"), "n1");
    let mut bare = bare;
    assert!(!bare.wait_exit());
    assert!(
        bare.log().contains("--insecure-skip-ca-hash"),
        "{}",
        bare.log()
    );

    let hash = token.trim_start_matches("K10").split("::").next().unwrap();
    let wrong = format!("K10{hash}::node:wrongsecret");
    let retrying = Agent::start(&s, &wrong, &work.path().join("c"), "n1");
    wait_for("two rejected join attempts", || {
        retrying
            .log()
            .matches("the server rejected the join token (401 Unauthorized)")
            .count()
            >= 2
    });
    assert!(node_json(&s, "n1").is_none());
}

#[test]
fn server_with_embedded_agent_registers_its_own_node() {
    let mut s = Server {
        dir: tempfile::tempdir().unwrap(),
        port: support::server::free_port(),
        child: None,
        extra_args: vec![],
    };
    let log = std::fs::File::create(s.dir.path().join("server.log")).unwrap();
    let child = Command::new(ORC)
        .arg("server")
        .arg("--data-dir")
        .arg(s.data_dir())
        .args([
            "--bind-address",
            "127.0.0.1",
            "--https-port",
            &s.port.to_string(),
        ])
        .arg("--write-kubeconfig")
        .arg(s.kubeconfig())
        .args(["--node-name", "embedded", "--node-label", "zone=attic"])
        .args(HOST_NETNS_AGENT_ARGS)
        .arg("--containerd-socket")
        .arg(s.dir.path().join(NO_CONTAINERD))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn orc server");
    s.child = Some(child);
    let node = wait_registered_with_cidr(&s, "embedded");
    assert_eq!(node["metadata"]["labels"]["zone"], "attic");
    assert!(s.data_dir().join("agent/client.crt").exists());
}

#[tokio::test]
async fn join_token_only_buys_a_node_credential() {
    let s = Server::start();
    let secret = token(&s).rsplit(':').next().unwrap().to_string();
    let anonymous = s.client(false);
    let url = format!("{}/v1-orc/node-credentials", s.url());
    let body = serde_json::json!({"nodeName": "n9", "nodePassword": "pw"});

    let resp = anonymous.post(&url).json(&body).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    let resp = anonymous
        .post(&url)
        .bearer_auth("wrong")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);

    // The bootstrap identity may not use the Kubernetes API itself.
    let resp = anonymous
        .get(format!("{}/api/v1/nodes", s.url()))
        .bearer_auth(&secret)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(status["kind"], "Status");
    assert_eq!(status["reason"], "Forbidden");

    let resp = anonymous
        .post(&url)
        .bearer_auth(&secret)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    let creds: serde_json::Value = resp.json().await.unwrap();
    assert!(creds["certificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));
    assert!(creds["caCertificate"]
        .as_str()
        .unwrap()
        .contains("BEGIN CERTIFICATE"));

    let other = serde_json::json!({"nodeName": "n9", "nodePassword": "another"});
    let resp = anonymous
        .post(&url)
        .bearer_auth(&secret)
        .json(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
    let status: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(
        status["message"],
        "node n9 is already registered with a different password"
    );
    let secret_type = s.ok(&[
        "get",
        "secret",
        "-n",
        "kube-system",
        "n9.node-password.orc",
        "-o",
        "jsonpath={.type}",
    ]);
    assert_eq!(secret_type, "orc.io/node-password");
}
