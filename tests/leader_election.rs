//! Leader election of the controllers with the real server and kubectl: the Lease
//! kube-system/orc-controllers is written and renewed, a server that loses it stops its
//! controllers until it wins it back, a single SQLite server elects nobody, and a
//! joining server (`--server`) without a shared datastore is refused before it writes.

mod support;

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use support::server::{Server, ORC, WEB_RC};
use support::wait::{assert_stays_for, wait_until};

const LEASE: [&str; 3] = ["-n", "kube-system", "lease/orc-controllers"];
/// Short timings so that a lost lease comes back within a test's patience.
const FAST_ELECTION: [&str; 7] = [
    "--leader-elect",
    "--leader-elect-lease-duration",
    "4s",
    "--leader-elect-renew-deadline",
    "3s",
    "--leader-elect-retry-period",
    "500ms",
];
const DEADLINE: Duration = Duration::from_secs(30);

fn lease(server: &Server) -> Option<Value> {
    let out = server.kubectl(&["get", LEASE[0], LEASE[1], LEASE[2], "-o", "json"]);
    out.status
        .success()
        .then(|| serde_json::from_slice(&out.stdout).ok())
        .flatten()
}

fn holder(server: &Server) -> String {
    lease(server)
        .and_then(|l| l["spec"]["holderIdentity"].as_str().map(str::to_owned))
        .unwrap_or_default()
}

fn pod_names(server: &Server) -> Vec<String> {
    let pods = server.get_json(&["pods", "-n", "default", "-l", "app=web"]);
    pods["items"]
        .as_array()
        .map(|items| {
            items
                .iter()
                .filter(|p| p["metadata"]["deletionTimestamp"].is_null())
                .filter_map(|p| p["metadata"]["name"].as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn controllers_run_only_while_this_server_holds_the_lease() {
    let mut server = Server::start_with(&FAST_ELECTION);
    let me = wait_until(DEADLINE, "the server to acquire the lease", || {
        Some(holder(&server)).filter(|h| !h.is_empty())
    });
    let spec = &lease(&server).expect("lease")["spec"];
    assert_eq!(spec["leaseDurationSeconds"], 4, "{spec}");
    assert!(me.contains('_'), "holder is name_<random>: {me}");
    // Renewals are real writes that every server would see: renewTime moves.
    let first = spec["renewTime"].clone();
    wait_until(DEADLINE, "a renewal", || {
        lease(&server).is_some_and(|l| l["spec"]["renewTime"] != first)
    });

    server.apply_yaml("create", WEB_RC);
    wait_until(DEADLINE, "the RC's two pods", || {
        pod_names(&server).len() == 2
    });

    // Another candidate takes the lease (as a server on the other side of a partition
    // would): this server stops its controllers, so a deleted pod is not replaced...
    server.ok(&[
        "patch",
        LEASE[0],
        LEASE[1],
        LEASE[2],
        "--type",
        "merge",
        "-p",
        r#"{"spec":{"holderIdentity":"intruder","leaseDurationSeconds":6}}"#,
    ]);
    wait_until(DEADLINE, "the server to step down", || {
        server.log().contains("lost the leadership")
    });
    let victim = pod_names(&server)[0].clone();
    server.ok(&["delete", "pod", "-n", "default", &victim, "--wait=false"]);
    wait_until(DEADLINE, "the pod to go", || pod_names(&server).len() == 1);
    assert_stays_for(
        Duration::from_secs(3),
        "no replacement while not leading",
        || pod_names(&server).len() == 1 && holder(&server) == "intruder",
    );
    // ...until the intruder's lease expires unrenewed and this server takes over again.
    wait_until(DEADLINE, "the server to lead again", || {
        holder(&server) == me
    });
    let transitions = lease(&server).expect("lease")["spec"]["leaseTransitions"].clone();
    assert_eq!(transitions, 1, "taking the lease back is a transition");
    wait_until(DEADLINE, "the RC to heal", || pod_names(&server).len() == 2);

    // A clean stop gives the lease up for the next server.
    let pid = server.child.as_ref().expect("running").id();
    let term = Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()
        .expect("kill");
    assert!(term.success());
    wait_until(DEADLINE, "the server to release the lease", || {
        server.log().contains("released the leader lease")
    });
    server.kill9();
}

#[test]
fn a_single_sqlite_server_elects_nobody() {
    let server = Server::start();
    server.apply_yaml("create", WEB_RC);
    wait_until(DEADLINE, "the RC's pods", || pod_names(&server).len() == 2);
    let leases = server.ok(&["get", "leases", "-n", "kube-system", "-o", "name"]);
    assert!(leases.trim().is_empty(), "no election lease: {leases}");
    assert!(
        !server.log().contains("became the leader"),
        "{}",
        server.log()
    );
}

#[test]
fn bad_ha_flags_are_refused_before_anything_is_written() {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("data");
    let run = |extra: &[&str]| {
        let out = Command::new(ORC)
            .arg("server")
            .arg("--data-dir")
            .arg(&data)
            .args(["--disable-agent", "--write-kubeconfig"])
            .arg(dir.path().join("kubeconfig"))
            .args(extra)
            .output()
            .expect("run orc server");
        assert!(!out.status.success(), "{extra:?} accepted");
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(!data.exists(), "{extra:?} wrote the data dir");
        err
    };
    let token = "K10aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa::node:0123456789abcdef";
    let err = run(&["--server", "https://127.0.0.1:1", "--token", token]);
    assert!(err.contains("SQLite cannot be shared"), "{err}");
    let err = run(&[
        "--server",
        "https://127.0.0.1:1",
        "--token",
        token,
        "--datastore-endpoint",
        "sqlite:///tmp/x.db",
    ]);
    assert!(err.contains("--datastore-endpoint etcd://"), "{err}");
    let err = run(&["--leader-elect", "--leader-elect-renew-deadline", "20s"]);
    assert!(
        err.contains("--leader-elect-renew-deadline") && err.contains("shorter"),
        "{err}"
    );
    assert_eq!(
        err.lines().filter(|l| !l.trim().is_empty()).count(),
        1,
        "{err}"
    );
}
