//! Several servers on one etcd (issue 18): three etcd members and two `orc server`s, the
//! second joined with `--server` and the token. Objects created through one are read and
//! watched through the other; with the first (the leader) killed, an RC still heals
//! through the second; with an etcd member stopped, writes continue; after a restart of
//! everything, the state is intact; a joining server with a wrong token is refused and
//! writes nothing.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use support::etcd::EtcdCluster;
use support::server::{kubectl_with, stdout, Server, ORC, WEB_RC};
use support::wait::wait_until;

const TOKEN: &str = "ha-test-token-0123456789abcdef";
const DEADLINE: Duration = Duration::from_secs(30);
/// The bound for an RC to heal through the second server after the leader died.
const FAILOVER_WITHIN: Duration = Duration::from_secs(30);

fn config_map(name: &str) -> String {
    format!("apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: {name}, namespace: default}}\ndata: {{k: v}}\n")
}

fn live_pods(server: &Server) -> usize {
    let out = server.kubectl(&[
        "get", "pods", "-n", "default", "-l", "app=web", "-o", "json",
    ]);
    if !out.status.success() {
        return usize::MAX;
    }
    let pods: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    pods["items"].as_array().map_or(0, |items| {
        items
            .iter()
            .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
            .count()
    })
}

fn holder(server: &Server) -> String {
    let out = server.kubectl(&[
        "get",
        "lease",
        "-n",
        "kube-system",
        "orc-controllers",
        "-o",
        "jsonpath={.spec.holderIdentity}",
    ]);
    stdout(&out).trim().to_string()
}

fn etcd_key_count(etcd: &EtcdCluster) -> usize {
    let out = etcd.etcdctl(&["get", "", "--prefix", "--keys-only"]);
    assert!(out.status.success(), "etcdctl: {out:?}");
    stdout(&out)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .count()
}

#[test]
fn two_servers_on_three_etcd_members_share_one_cluster() {
    let mut etcd = EtcdCluster::start(3);
    let endpoint = etcd.endpoint();
    let mut first = Server::start_with(&["--datastore-endpoint", &endpoint, "--token", TOKEN]);
    let token = std::fs::read_to_string(first.data_dir().join("server/token"))
        .expect("the first server's token")
        .trim()
        .to_string();
    assert!(token.starts_with("K10"), "{token}");
    let first_url = first.url();
    let mut second = Server::start_with(&[
        "--datastore-endpoint",
        &endpoint,
        "--server",
        &first_url,
        "--token",
        &token,
    ]);

    // One CA: the second server's CA is the first's, and the first's admin kubeconfig
    // works against the second server (its serving certificate has its own address).
    let ca = |s: &Server| std::fs::read(s.data_dir().join("server/tls/ca.crt")).expect("ca");
    assert_eq!(ca(&first), ca(&second));
    assert_ne!(
        std::fs::read(first.data_dir().join("server/tls/serving.crt")).unwrap(),
        std::fs::read(second.data_dir().join("server/tls/serving.crt")).unwrap()
    );
    let second_server = format!("--server={}", second.url());
    let cross = kubectl_with(
        &first.kubeconfig(),
        &[&second_server, "get", "ns", "default"],
        None,
    );
    assert!(cross.status.success(), "{cross:?}");

    // Create through one, read and watch through the other.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(second.kubeconfig())
        .args([
            "get",
            "configmaps",
            "-n",
            "default",
            "--watch",
            "-o",
            "name",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl watch");
    let (lines_tx, lines) = mpsc::channel();
    let watch_out = watch.stdout.take().expect("stdout");
    std::thread::spawn(move || {
        for line in BufReader::new(watch_out).lines().map_while(Result::ok) {
            if lines_tx.send(line).is_err() {
                return;
            }
        }
    });
    first.apply_yaml("create", &config_map("made-on-first"));
    wait_until(DEADLINE, "the second server to serve it", || {
        second
            .kubectl(&["get", "configmap", "-n", "default", "made-on-first"])
            .status
            .success()
    });
    let seen = wait_until(DEADLINE, "the watch on the second server to see it", || {
        lines.try_iter().find(|l| l.contains("made-on-first"))
    });
    assert_eq!(seen.trim(), "configmap/made-on-first");
    let _ = watch.kill();
    let _ = watch.wait();

    // The first server leads; kill -9 it and the RC heals through the second.
    let leader = wait_until(DEADLINE, "a leader", || {
        Some(holder(&second)).filter(|h| !h.is_empty())
    });
    second.apply_yaml("create", WEB_RC);
    wait_until(DEADLINE, "the RC's two pods", || live_pods(&second) == 2);
    first.kill9();
    let pods = second.get_json(&["pods", "-n", "default", "-l", "app=web"]);
    let victim = pods["items"][0]["metadata"]["name"]
        .as_str()
        .expect("pod")
        .to_string();
    second.ok(&["delete", "pod", "-n", "default", &victim, "--wait=false"]);
    let killed = std::time::Instant::now();
    wait_until(
        FAILOVER_WITHIN,
        "the RC to heal through the second server",
        || {
            live_pods(&second) == 2
                && !second
                    .get_json(&["pods", "-n", "default", "-l", "app=web"])
                    .to_string()
                    .contains(&victim)
        },
    );
    let healed = killed.elapsed();
    let new_leader = holder(&second);
    assert!(
        !new_leader.is_empty() && new_leader != leader,
        "{leader} -> {new_leader}"
    );
    eprintln!("RC healed {healed:?} after the leader was killed");

    // One etcd member down: writes continue.
    etcd.stop(1);
    wait_until(DEADLINE, "a write with one etcd member down", || {
        second
            .kubectl_stdin(&["create", "-f", "-"], &config_map("made-with-two-members"))
            .status
            .success()
            || second
                .kubectl(&["get", "configmap", "-n", "default", "made-with-two-members"])
                .status
                .success()
    });

    // A joining server with the cluster's CA hash but a wrong secret: refused, nothing written.
    let before = etcd_key_count(&etcd);
    let wrong = format!(
        "{}::node:not-the-cluster-secret-0123",
        &token[..token.find("::").unwrap()]
    );
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let out = Command::new(ORC)
        .arg("server")
        .arg("--data-dir")
        .arg(&data)
        .args([
            "--disable-agent",
            "--bind-address",
            "127.0.0.1",
            "--https-port",
            "1",
        ])
        .arg("--write-kubeconfig")
        .arg(dir.path().join("kubeconfig"))
        .args([
            "--datastore-endpoint",
            &endpoint,
            "--server",
            &second.url(),
            "--token",
            &wrong,
        ])
        .output()
        .expect("run orc server");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("not this cluster's"), "{err}");
    assert!(!data.exists(), "the data dir was written");
    assert_eq!(etcd_key_count(&etcd), before, "etcd was written");

    // Restart everything (etcd member by member, keeping its quorum; both servers at
    // once): the state is intact.
    second.kill9();
    etcd.restart(1);
    for member in [0, 2] {
        etcd.stop(member);
        etcd.restart(member);
    }
    first.spawn();
    second.spawn();
    for server in [&first, &second] {
        for cm in ["made-on-first", "made-with-two-members"] {
            server.ok(&["get", "configmap", "-n", "default", cm]);
        }
        wait_until(DEADLINE, "the RC's pods after the restart", || {
            live_pods(server) == 2
        });
    }
}
