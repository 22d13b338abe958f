//! Node credentials and the join token against a real `orc server` (and `orc agent`s
//! without containerd): weak tokens refused, failed authentication rate-limited per source
//! and logged without the token, token rotation that leaves joined nodes alone, node
//! certificates revoked with their Node and renewed by the agent, and the API server
//! talking only to the kubelet serving certificate of the node it means.

mod support;

use std::process::Command;
use std::time::Duration;

use support::host_agent::{join_token as token, HostAgent as Agent};
use support::server::{stdout, wait_for, Server, ORC};
use support::wait::wait_until;

fn secret_of(token: &str) -> String {
    token.rsplit(':').next().unwrap().to_string()
}

fn node_exists(s: &Server, node: &str) -> bool {
    s.kubectl(&["get", "node", node]).status.success()
}

/// A server and agent `n1` joined to it, registered.
fn joined(extra: &[&str]) -> (Server, tempfile::TempDir, Agent) {
    let server = Server::start_with(extra);
    let work = tempfile::tempdir().unwrap();
    let agent = Agent::start(&server, &token(&server), &work.path().join("a1"), "n1");
    wait_for("node n1 to register", || node_exists(&server, "n1"));
    (server, work, agent)
}

/// POSTs a credential request for `node` with `bearer`; the status code and body.
async fn request_credentials(
    client: &reqwest::Client,
    s: &Server,
    bearer: &str,
    node: &str,
) -> (u16, Option<u64>, serde_json::Value) {
    let resp = client
        .post(format!("{}/v1-orc/node-credentials", s.url()))
        .bearer_auth(bearer)
        .json(&serde_json::json!({"nodeName": node, "nodePassword": "pw-of-this-test"}))
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let retry_after = resp
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    (code, retry_after, resp.json().await.unwrap_or_default())
}

#[test]
fn a_weak_join_token_is_refused_with_an_actionable_message() {
    let dir = tempfile::tempdir().unwrap();
    let out = Command::new(ORC)
        .args(["server", "--token", "a", "--disable-agent"])
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--write-kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "server started with --token a");
    assert!(
        stderr.contains("--token must be at least 16 characters; omit it to generate one"),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(!dir.path().join("data/server/token").exists());
}

#[tokio::test]
async fn wrong_tokens_from_one_source_get_429_and_are_logged_without_the_token() {
    let s = Server::start();
    let anonymous = s.client(false);
    let mut codes = Vec::new();
    let mut retry_after = None;
    let mut limited_status = serde_json::Value::Null;
    let started = std::time::Instant::now();
    for i in 0..200 {
        let (code, after, body) =
            request_credentials(&anonymous, &s, &format!("guess-{i:04}-zzzzzzzzzz"), "n9").await;
        if code == 429 {
            retry_after = retry_after.or(after);
            limited_status = body;
        }
        codes.push(code);
    }
    eprintln!(
        "200 wrong tokens from one source in {:?}: {} answered 401, {} answered 429",
        started.elapsed(),
        codes.iter().filter(|c| **c == 401).count(),
        codes.iter().filter(|c| **c == 429).count()
    );
    let unauthorized = codes.iter().take_while(|c| **c == 401).count();
    assert!(
        (1..=20).contains(&unauthorized),
        "the first wrong tokens get 401: {codes:?}"
    );
    let limited = codes.iter().filter(|c| **c == 429).count();
    assert!(limited >= 150, "most later guesses get 429: {codes:?}");
    assert!(codes.iter().all(|c| *c == 401 || *c == 429), "{codes:?}");
    assert_eq!(limited_status["kind"], "Status");
    assert_eq!(limited_status["reason"], "TooManyRequests");
    assert_eq!(limited_status["code"], 429);
    let retry_after = retry_after.expect("a Retry-After header");
    assert!((1..=10).contains(&retry_after), "{retry_after}");

    // A client with a certificate is not held up by the guesser next to it.
    let admin = s.client(true);
    let resp = admin
        .get(format!("{}/api/v1/namespaces", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);

    // Once the source waited as told, the right token works again.
    let right = secret_of(&token(&s));
    let mut last = 0;
    for _ in 0..3 {
        tokio::time::sleep(Duration::from_secs(retry_after)).await;
        last = request_credentials(&anonymous, &s, &right, "n9").await.0;
        if last == 200 {
            break;
        }
    }
    assert_eq!(last, 200, "the right token after Retry-After");

    let log = s.log();
    assert!(
        log.lines()
            .any(|l| l.contains("authentication failed") && l.contains("127.0.0.1")),
        "failures are logged with their source:\n{log}"
    );
    assert!(!log.contains("guess-0"), "a token reached the log:\n{log}");
    assert!(!log.contains(&right[..8]), "the real token reached the log");
}

#[tokio::test]
async fn a_rotated_token_admits_new_joins_refuses_the_old_and_leaves_joined_nodes_alone() {
    let (s, _work, agent) = joined(&[]);
    let old = secret_of(&token(&s));
    let out = Command::new(ORC)
        .args(["token", "rotate", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed = stdout(&out).trim().to_string();
    assert_eq!(printed, token(&s), "rotate prints the new token");
    let new = secret_of(&printed);
    assert_ne!(new, old);
    assert!(new.len() >= 16);

    let anonymous = s.client(false);
    let mut seen = 0;
    for _ in 0..100 {
        seen = request_credentials(&anonymous, &s, &old, "n7").await.0;
        if seen == 401 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(seen, 401, "the old token is refused after rotation");
    assert_eq!(
        request_credentials(&anonymous, &s, &new, "n7").await.0,
        200,
        "the new token joins"
    );

    // The joined node still uses the API with its own certificate.
    let out = agent.kubectl(&["get", "node", "n1", "-o", "name"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let weak = Command::new(ORC)
        .args(["token", "rotate", "--new-token", "short", "--data-dir"])
        .arg(s.data_dir())
        .output()
        .unwrap();
    assert!(!weak.status.success());
    assert!(String::from_utf8_lossy(&weak.stderr)
        .contains("--new-token must be at least 16 characters; omit it to generate one"));
}

#[test]
fn deleting_a_node_revokes_its_certificate() {
    let (s, _work, agent) = joined(&[]);
    let out = agent.kubectl(&["get", "node", "n1", "-o", "name"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    s.ok(&["delete", "node", "n1"]);
    wait_for("the node's certificate to be refused", || {
        let out = agent.kubectl(&["get", "nodes"]);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Unauthorized")
    });
    let gone = s.kubectl(&["get", "secret", "-n", "kube-system", "n1.node-password.orc"]);
    assert!(
        !gone.status.success(),
        "the node's password is deleted with it"
    );
    assert!(
        !node_exists(&s, "n1"),
        "a revoked agent cannot register its Node again"
    );

    // Restarted, the agent finds its credential refused and joins again with the token.
    let data_dir = agent.data_dir.clone();
    drop(agent);
    let agent = Agent::start(&s, &token(&s), &data_dir, "n1");
    wait_for("the restarted agent to register n1 again", || {
        node_exists(&s, "n1")
    });
    assert!(agent.log().contains("joining again with the join token"));
    let out = agent.kubectl(&["get", "node", "n1", "-o", "name"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn deleting_a_nodes_password_secret_revokes_its_certificate() {
    let (s, _work, agent) = joined(&[]);
    s.ok(&[
        "delete",
        "secret",
        "-n",
        "kube-system",
        "n1.node-password.orc",
    ]);
    wait_for("the node's certificate to be refused", || {
        let out = agent.kubectl(&["get", "node", "n1"]);
        !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("Unauthorized")
    });
}

#[test]
fn the_agent_renews_its_certificates_before_they_expire() {
    // Renewal after two thirds: about 10 s into a 15 s life.
    let (s, _work, agent) = joined(&["--node-certificate-validity", "15s"]);
    let first = agent.agent_file("client.crt");
    let first_kubelet = agent.agent_file("kubelet.crt");
    assert!(first.contains("BEGIN CERTIFICATE") && first_kubelet.contains("BEGIN CERTIFICATE"));
    wait_until(
        Duration::from_secs(25),
        "the agent to renew its credential",
        || agent.log().contains("renewed the node credential"),
    );
    wait_for("the renewed certificates on disk", || {
        let (client, kubelet) = (
            agent.agent_file("client.crt"),
            agent.agent_file("kubelet.crt"),
        );
        client.contains("BEGIN CERTIFICATE")
            && client != first
            && kubelet.contains("BEGIN CERTIFICATE")
            && kubelet != first_kubelet
    });
    // The renewed credential (in the kubeconfig the agent rewrote) is accepted.
    let out = agent.kubectl(&["get", "node", "n1", "-o", "name"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(s.log().contains("renewed node credential"), "{}", s.log());
}

#[tokio::test]
async fn the_api_server_refuses_to_proxy_to_an_address_that_is_not_the_nodes_kubelet() {
    let s = Server::start();
    // A "node" whose kubelet address is the API server itself.
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: liar\n",
    );
    let status = format!(
        r#"{{"status":{{"addresses":[{{"type":"InternalIP","address":"127.0.0.1"}}],"daemonEndpoints":{{"kubeletEndpoint":{{"Port":{}}}}}}}}}"#,
        s.port
    );
    s.ok(&[
        "patch",
        "node",
        "liar",
        "--subresource=status",
        "--type=merge",
        "-p",
        &status,
    ]);
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\n  namespace: default\nspec:\n  nodeName: liar\n  containers:\n  - name: c\n    image: busybox\n",
    );
    let resp = s
        .client(true)
        .get(format!(
            "{}/api/v1/namespaces/default/pods/p/log?container=c",
            s.url()
        ))
        .send()
        .await
        .unwrap();
    let code = resp.status().as_u16();
    let status: serde_json::Value = resp.json().await.unwrap();
    assert!(code >= 500, "{code}: {status}");
    assert_eq!(status["kind"], "Status");
    let message = status["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("not the kubelet serving certificate of node liar"),
        "{message}"
    );

    let err = s.fails(&["logs", "p"]);
    assert!(err.contains("not the kubelet serving certificate"), "{err}");
}
