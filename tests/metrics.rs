//! Prometheus `/metrics` (issue 17) through the real binary and the real kubectl: the
//! API server's request counters move by exactly the requests made, long-running
//! watches are gauged while open, the scrape needs RBAC `get` on the non-resource URL;
//! and a node's kubelet, proxy and DNS series through `nodes/NAME/proxy/metrics` (needs
//! root and containerd: see `support::kubelet`).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

mod support;
use support::metric_sample as sample;
use support::server::{kubectl_with, wait_for, Server};

fn scrape(server: &Server) -> String {
    server.ok(&["get", "--raw", "/metrics"])
}

const CONFIGMAP_CREATED: &str = r#"apiserver_request_total{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",dry_run="",code="201"}"#;
const CONFIGMAP_CONFLICT: &str = r#"apiserver_request_total{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",dry_run="",code="409"}"#;
const CONFIGMAP_POST_DURATIONS: &str = r#"apiserver_request_duration_seconds_count{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",dry_run=""}"#;
const QUEUE_ADDS: &str = r#"workqueue_adds_total{name="root-ca-cert-publisher"}"#;
const CONFIGMAP_WATCHES: &str = r#"apiserver_longrunning_requests{verb="WATCH",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",dry_run=""}"#;

#[test]
fn request_counters_move_by_the_requests_made() {
    let server = Server::start();
    // A family shows once it has a sample: the first scrape may be the server's first
    // request (kubectl's `--raw` skips discovery), counted once it is answered.
    scrape(&server);
    let before = scrape(&server);
    assert!(
        before.contains("# TYPE apiserver_request_total counter"),
        "{before}"
    );
    let created_before = sample(&before, CONFIGMAP_CREATED).unwrap_or(0.0);
    let timed_before = sample(&before, CONFIGMAP_POST_DURATIONS).unwrap_or(0.0);
    let queued_before = sample(&before, QUEUE_ADDS).unwrap_or(0.0);
    const N: usize = 5;
    for i in 0..N {
        server.ok(&["create", "configmap", &format!("counted-{i}")]);
    }
    server.fails(&["create", "configmap", "counted-0"]);
    server.ok(&["create", "namespace", "queued"]);
    let after = scrape(&server);
    assert_eq!(
        sample(&after, CONFIGMAP_CREATED),
        Some(created_before + N as f64),
        "{after}"
    );
    assert!(
        sample(&after, CONFIGMAP_CONFLICT).unwrap_or(0.0) >= 1.0,
        "{after}"
    );
    // Every POST was timed, the conflict too.
    assert_eq!(
        sample(&after, CONFIGMAP_POST_DURATIONS),
        Some(timed_before + N as f64 + 1.0)
    );
    // The datastore timed the creates; its file has a size; the process reports itself;
    // the controllers' queues report under their names.
    assert!(
        sample(
            &after,
            r#"orc_datastore_commit_duration_seconds_count{operation="create"}"#
        )
        .unwrap_or(0.0)
            >= N as f64,
        "{after}"
    );
    assert!(
        sample(
            &after,
            r#"apiserver_storage_db_total_size_in_bytes{storage_cluster_id="sqlite"}"#
        )
        .unwrap_or(0.0)
            > 0.0
    );
    for process in [
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "process_start_time_seconds",
    ] {
        assert!(
            sample(&after, process).unwrap_or(0.0) > 0.0,
            "{process}: {after}"
        );
    }
    // A new namespace is queued by the controller publishing kube-root-ca.crt.
    assert!(
        sample(&after, QUEUE_ADDS).unwrap_or(0.0) >= queued_before + 1.0,
        "{after}"
    );
    // This scrape itself is in flight while it is encoded.
    assert!(
        sample(
            &after,
            r#"apiserver_current_inflight_requests{request_kind="readOnly"}"#
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    // No label carries an object name.
    assert!(!after.contains("counted-"), "{after}");
}

#[test]
fn an_open_watch_is_a_long_running_request_until_it_ends() {
    let server = Server::start();
    assert_eq!(
        sample(&scrape(&server), CONFIGMAP_WATCHES).unwrap_or(0.0),
        0.0
    );
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(["get", "configmaps", "--watch"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubectl --watch");
    wait_for("the watch to be counted", || {
        sample(&scrape(&server), CONFIGMAP_WATCHES) == Some(1.0)
    });
    let _ = watch.kill();
    let _ = watch.wait();
    wait_for("the ended watch to be uncounted", || {
        sample(&scrape(&server), CONFIGMAP_WATCHES) == Some(0.0)
    });
}

/// A kubeconfig for `user` in `groups`, with a client certificate from the server's CA
/// (issued from a copy of its TLS directory, so the server's own files stay untouched).
fn user_kubeconfig(server: &Server, user: &str, groups: &[&str]) -> PathBuf {
    let copy = server.dir.path().join(format!("tls-{user}"));
    std::fs::create_dir_all(&copy).expect("mkdir");
    let tls = server.data_dir().join("server/tls");
    for entry in std::fs::read_dir(&tls).expect("read tls dir") {
        let entry = entry.expect("entry");
        std::fs::copy(entry.path(), copy.join(entry.file_name())).expect("copy tls file");
    }
    let pki = orc::tls::Pki::load_or_create(&copy, &[]).expect("load the CA");
    let (cert, key) = pki.issue_client_cert(user, groups).expect("issue");
    let path = server.dir.path().join(format!("{user}.kubeconfig"));
    let text = orc::tls::admin_kubeconfig(&server.url(), pki.ca_cert_pem(), &cert, &key);
    std::fs::write(&path, text).expect("write kubeconfig");
    path
}

fn raw_metrics(kubeconfig: &Path) -> (bool, String, String) {
    let out = kubectl_with(kubeconfig, &["get", "--raw", "/metrics"], None);
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn scraping_needs_get_on_the_metrics_url() {
    let server = Server::start();
    let alice = user_kubeconfig(&server, "alice", &[]);
    let (ok, _, stderr) = raw_metrics(&alice);
    assert!(!ok, "alice may not scrape yet");
    assert!(
        stderr.contains(r#"forbidden: User \"alice\" cannot get path \"/metrics\""#)
            || stderr.contains(r#"forbidden: User "alice" cannot get path "/metrics""#),
        "{stderr}"
    );
    // Upstream's system:monitoring role, bound to its group, lets a monitoring agent in.
    let role = server.get_json(&["clusterrole", "system:monitoring"]);
    let urls = role["rules"][0]["nonResourceURLs"].to_string();
    assert!(urls.contains("\"/metrics\""), "{role}");
    let prometheus = user_kubeconfig(&server, "prometheus", &["system:monitoring"]);
    let (ok, body, stderr) = raw_metrics(&prometheus);
    assert!(ok, "{stderr}");
    assert!(body.contains("apiserver_request_total{"));
    // A grant of its own lets alice in too.
    server.ok(&[
        "create",
        "clusterrole",
        "metrics-reader",
        "--verb=get",
        "--non-resource-url=/metrics",
    ]);
    server.ok(&[
        "create",
        "clusterrolebinding",
        "alice-metrics",
        "--clusterrole=metrics-reader",
        "--user=alice",
    ]);
    wait_for("alice to be allowed to scrape", || raw_metrics(&alice).0);
    // Without credentials: 401, as for every other path but the public ones.
    let resp = server
        .client(false)
        .get(format!("{}/metrics", server.url()));
    let status = tokio::runtime::Runtime::new()
        .expect("runtime")
        .block_on(async { resp.send().await.expect("request").status() });
    assert_eq!(status.as_u16(), 401);
}
