//! `orc server --datastore-endpoint etcd://…` on a private 3-member etcd cluster, driven
//! with the real kubectl: objects, watches, conflicts, a restart, what etcdctl shows, and
//! the refusals (unreachable etcd, another cluster's etcd).

mod support;

use std::io::Read;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use support::etcd::EtcdCluster;
use support::server::{Server, ORC};
use support::wait::wait_until;

const DEPLOYMENT: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
spec:
  replicas: 2
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        command: ["sleep", "3600"]
"#;

fn server_on(cluster: &EtcdCluster) -> Server {
    Server::start_with(&["--datastore-endpoint", &cluster.endpoint()])
}

#[test]
fn a_server_on_etcd_serves_kubectl_and_keeps_its_state_across_a_restart() {
    let cluster = EtcdCluster::start(3);
    let mut server = server_on(&cluster);
    server.apply_yaml("apply", DEPLOYMENT);
    // The controllers run on etcd as on SQLite: the Deployment gets its ReplicaSet and
    // pods (Pending: no agent in this test).
    let pods = wait_until(Duration::from_secs(30), "2 pods of the deployment", || {
        let out = server.ok(&["get", "pods", "-l", "app=web", "-o", "name"]);
        (out.lines().count() == 2).then_some(out)
    });
    assert_eq!(pods.lines().count(), 2);
    let deploy = server.get_json(&["deployment", "web"]);
    let rv = deploy["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();

    // A watch through kubectl sees a change made afterwards.
    let mut watch = Command::new("kubectl")
        .arg("--kubeconfig")
        .arg(server.kubeconfig())
        .args(["get", "configmaps", "--watch", "-o", "name"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl watch");
    let seen = Arc::new(Mutex::new(String::new()));
    let mut stdout = watch.stdout.take().unwrap();
    let sink = seen.clone();
    let reader = std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            sink.lock()
                .unwrap()
                .push_str(&String::from_utf8_lossy(&buf[..n]));
        }
    });
    // Let the watch start before the change (kubectl lists first, then watches).
    wait_until(Duration::from_secs(20), "kubectl watch lists", || {
        seen.lock().unwrap().contains("configmap/kube-root-ca.crt")
    });
    server.ok(&["create", "configmap", "watched", "--from-literal=a=1"]);
    wait_until(
        Duration::from_secs(20),
        "the watch delivers the new ConfigMap",
        || seen.lock().unwrap().contains("configmap/watched"),
    );
    let _ = watch.kill();
    let _ = watch.wait();
    let _ = reader.join();

    // An update from a stale read answers 409 Conflict.
    server.ok(&["scale", "deployment", "web", "--replicas=3"]);
    let mut stale = deploy.clone();
    stale["spec"]["replicas"] = 5.into();
    let out = server.kubectl_stdin(&["replace", "-f", "-"], &stale.to_string());
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("the object has been modified") && err.contains("Conflict"),
        "{err}"
    );

    // etcdctl users find the objects under upstream's layout, and the cluster marker.
    let out = cluster.etcdctl(&[
        "get",
        "--prefix",
        "/registry/apps/deployments/",
        "--keys-only",
    ]);
    let keys = String::from_utf8_lossy(&out.stdout);
    assert!(
        keys.contains("/registry/apps/deployments/default/web"),
        "{keys}"
    );
    let out = cluster.etcdctl(&["get", "/registry/orc/cluster", "--print-value-only"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("caHash"));

    // A restart (SIGKILL, nothing flushed) finds the same objects at the same revisions.
    let before = server.get_json(&["deployment", "web"]);
    let cm = server.get_json(&["configmap", "watched"]);
    server.kill9();
    server.spawn();
    let after = server.get_json(&["deployment", "web"]);
    assert_eq!(after["spec"]["replicas"], 3);
    assert_eq!(
        after["metadata"]["resourceVersion"], before["metadata"]["resourceVersion"],
        "the resourceVersion is the etcd revision, unchanged by a restart"
    );
    assert_ne!(
        before["metadata"]["resourceVersion"].as_str(),
        Some(rv.as_str())
    );
    assert_eq!(
        server.get_json(&["configmap", "watched"])["metadata"]["uid"],
        cm["metadata"]["uid"]
    );
    // And it still writes, with one etcd member stopped.
    let mut cluster = cluster;
    cluster.stop(1);
    server.ok(&["create", "configmap", "member-down", "--from-literal=a=1"]);
    server.ok(&["get", "configmap", "member-down"]);
}

fn orc_server_output(dir: &std::path::Path, extra: &[&str]) -> std::process::Output {
    let port = support::host::free_port();
    let mut child = Command::new(ORC)
        .arg("server")
        .arg("--data-dir")
        .arg(dir.join("data"))
        .args(["--bind-address", "127.0.0.1", "--disable-agent"])
        .arg("--https-port")
        .arg(port.to_string())
        .arg("--write-kubeconfig")
        .arg(dir.join("kubeconfig.yaml"))
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn orc server");
    // Bounded: the server must give up on its own (it is killed otherwise).
    let status = wait_until(Duration::from_secs(30), "orc server to exit", || {
        child.try_wait().ok().flatten()
    });
    let mut stderr = Vec::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_end(&mut stderr)
        .unwrap();
    std::process::Output {
        status,
        stdout: Vec::new(),
        stderr,
    }
}

#[test]
fn an_unreachable_etcd_is_named_in_the_error_after_bounded_retries() {
    let dir = tempfile::tempdir().unwrap();
    let port = support::host::free_port();
    let endpoint = format!("etcd://127.0.0.1:{port}");
    let out = orc_server_output(
        dir.path(),
        &[
            "--datastore-endpoint",
            &endpoint,
            "--datastore-retry-timeout",
            "2s",
        ],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err}");
    assert!(err.contains("unreachable"), "{err}");
    // Nothing was created for a cluster that never started.
    assert!(!dir.path().join("data/server/tls").exists());
}

#[test]
fn an_etcd_holding_another_cluster_is_refused() {
    let cluster = EtcdCluster::start(1);
    let first = server_on(&cluster);
    first.ok(&["create", "configmap", "mine", "--from-literal=a=1"]);
    // Another data dir has another CA: its server must not take over this etcd.
    let other = tempfile::tempdir().unwrap();
    let out = orc_server_output(other.path(), &["--datastore-endpoint", &cluster.endpoint()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("holds another orc cluster"), "{err}");
    first.ok(&["get", "configmap", "mine"]);

    // An etcd with another application's /registry/ keys is refused too.
    let foreign = EtcdCluster::start(1);
    assert!(foreign
        .etcdctl(&["put", "/registry/pods/default/x", "{}"])
        .status
        .success());
    let dir = tempfile::tempdir().unwrap();
    let out = orc_server_output(dir.path(), &["--datastore-endpoint", &foreign.endpoint()]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no orc cluster marker"), "{err}");
}
