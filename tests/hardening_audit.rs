//! The audit log through the real binary: `orc server --audit-log-path` writes one
//! `audit.k8s.io/v1` Event per request as upstream does (who, verb, object, code), never a
//! Secret's data, and rotates by size keeping `--audit-log-maxbackup` files.

mod support;

use std::path::{Path, PathBuf};

use serde_json::Value;
use support::server::{wait_for, Server};

const SECRET_VALUE: &str = "AuditMustNeverSeeThis-5521";

fn audit_lines(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The ResponseComplete event of the request matching `verb`, `resource` and `name`.
fn find<'a>(lines: &'a [Value], verb: &str, resource: &str, name: &str) -> Option<&'a Value> {
    lines.iter().find(|e| {
        e["stage"] == "ResponseComplete"
            && e["verb"] == verb
            && e["objectRef"]["resource"] == resource
            && e["objectRef"]["name"] == name
    })
}

fn wait_for_event(path: &Path, verb: &str, resource: &str, name: &str) -> Value {
    let mut found = None;
    wait_for(&format!("audit event {verb} {resource}/{name}"), || {
        found = find(&audit_lines(path), verb, resource, name).cloned();
        found.is_some()
    });
    found.expect("found")
}

fn assert_admin_kubectl_event(e: &Value) {
    assert_eq!(e["kind"], "Event", "{e}");
    assert_eq!(e["apiVersion"], "audit.k8s.io/v1", "{e}");
    assert_eq!(e["level"], "Metadata", "{e}");
    assert_eq!(e["user"]["username"], "system:admin", "{e}");
    assert!(
        e["user"]["groups"]
            .as_array()
            .is_some_and(|g| g.iter().any(|g| g == "system:masters")),
        "{e}"
    );
    assert!(e.get("impersonatedUser").is_none(), "{e}");
    assert_eq!(
        e["annotations"]["authorization.k8s.io/decision"], "allow",
        "{e}"
    );
    assert_eq!(e["sourceIPs"][0], "127.0.0.1", "{e}");
    assert!(
        e["userAgent"]
            .as_str()
            .is_some_and(|ua| ua.starts_with("kubectl")),
        "{e}"
    );
    let id = e["auditID"].as_str().expect("auditID");
    assert_eq!(id.len(), 36, "a UUID: {id}");
    for field in ["requestReceivedTimestamp", "stageTimestamp"] {
        let t = e[field].as_str().expect(field);
        assert!(
            chrono::DateTime::parse_from_rfc3339(t).is_ok() && t.len() == 27,
            "{field} is RFC 3339 with microseconds: {t}"
        );
    }
    assert!(e.get("requestObject").is_none() && e.get("responseObject").is_none());
}

#[test]
fn kubectl_requests_are_audited_with_user_verb_object_and_code() {
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let server = Server::start_with(&["--audit-log-path", audit.to_str().unwrap()]);
    server.ok(&["create", "configmap", "audited", "--from-literal=a=b"]);
    server.ok(&["get", "configmap", "audited"]);
    server.ok(&["delete", "configmap", "audited"]);
    server.fails(&["get", "configmap", "missing"]);
    server.ok(&[
        "create",
        "secret",
        "generic",
        "hidden",
        &format!("--from-literal=password={SECRET_VALUE}"),
    ]);
    server.ok(&["get", "secret", "hidden", "-o", "yaml"]);

    let created = wait_for_event(&audit, "create", "configmaps", "audited");
    assert_admin_kubectl_event(&created);
    assert_eq!(
        created["objectRef"],
        serde_json::json!({"resource": "configmaps", "namespace": "default",
            "name": "audited", "apiVersion": "v1"})
    );
    assert_eq!(created["responseStatus"]["code"], 201);
    assert!(created["requestURI"]
        .as_str()
        .unwrap()
        .starts_with("/api/v1/namespaces/default/configmaps"));

    let got = wait_for_event(&audit, "get", "configmaps", "audited");
    assert_admin_kubectl_event(&got);
    assert_eq!(got["responseStatus"]["code"], 200);
    let deleted = wait_for_event(&audit, "delete", "configmaps", "audited");
    assert_eq!(deleted["responseStatus"]["code"], 200);
    let missing = wait_for_event(&audit, "get", "configmaps", "missing");
    assert_eq!(missing["responseStatus"]["code"], 404);
    assert_eq!(missing["responseStatus"]["reason"], "NotFound");
    assert_eq!(missing["responseStatus"]["status"], "Failure");

    let secret = wait_for_event(&audit, "create", "secrets", "hidden");
    assert_eq!(secret["responseStatus"]["code"], 201);
    wait_for_event(&audit, "get", "secrets", "hidden");
    let text = std::fs::read_to_string(&audit).unwrap();
    let encoded = base64_of(SECRET_VALUE);
    assert!(
        !text.contains(SECRET_VALUE) && !text.contains(&encoded),
        "the audit log holds the Secret's data"
    );
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&audit).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the audit log is private");
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn anonymous_requests_and_watches_are_audited_as_upstream() {
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let server = Server::start_with(&["--audit-log-path", audit.to_str().unwrap()]);
    let anonymous = server.client(false);
    let resp = anonymous
        .get(format!("{}/api/v1/namespaces/default/pods", server.url()))
        .header("user-agent", "audit-test")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    let resp = server
        .client(true)
        .get(format!(
            "{}/api/v1/namespaces/default/configmaps?watch=true&timeoutSeconds=1",
            server.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    resp.bytes()
        .await
        .expect("the watch ends after timeoutSeconds");

    let mut lines = Vec::new();
    wait_for("the watch's ResponseComplete event", || {
        lines = audit_lines(&audit);
        lines
            .iter()
            .any(|e| e["verb"] == "watch" && e["stage"] == "ResponseComplete")
    });
    let unauthorized = lines
        .iter()
        .find(|e| e["userAgent"] == "audit-test")
        .expect("the anonymous request is audited");
    assert_eq!(unauthorized["user"], serde_json::json!({}));
    assert_eq!(unauthorized["verb"], "list");
    assert_eq!(unauthorized["responseStatus"]["code"], 401);
    assert!(
        unauthorized.get("annotations").is_none(),
        "never authorized"
    );
    let watch: Vec<&Value> = lines.iter().filter(|e| e["verb"] == "watch").collect();
    let stages: Vec<&str> = watch.iter().map(|e| e["stage"].as_str().unwrap()).collect();
    assert_eq!(stages, ["ResponseStarted", "ResponseComplete"]);
    assert_eq!(watch[0]["auditID"], watch[1]["auditID"]);
    assert_eq!(watch[1]["objectRef"]["resource"], "configmaps");
    assert_eq!(watch[1]["responseStatus"]["code"], 200);
}

fn backups(dir: &Path) -> Vec<PathBuf> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            name.starts_with("audit-") && name.ends_with(".log")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_audit_log_rotates_by_size_and_keeps_max_backups() {
    const MAX_BYTES: u64 = 1024 * 1024;
    let logs = tempfile::tempdir().unwrap();
    let audit = logs.path().join("audit.log");
    let server = Server::start_with(&[
        "--audit-log-path",
        audit.to_str().unwrap(),
        "--audit-log-maxsize",
        "1",
        "--audit-log-maxbackup",
        "2",
    ]);
    // About 4 MB of events (four rotations at 1 MB): requests with a long (ignored) query parameter.
    let url = format!(
        "{}/api/v1/namespaces/default/configmaps?pad={}",
        server.url(),
        "x".repeat(4000)
    );
    let client = server.client(true);
    let mut tasks = Vec::new();
    for _ in 0..4 {
        let (client, url) = (client.clone(), url.clone());
        tasks.push(tokio::spawn(async move {
            for _ in 0..250 {
                let resp = client.get(&url).send().await.unwrap();
                assert_eq!(resp.status().as_u16(), 200);
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    // Events are written in order: once the marker's is in the file, all are.
    let marker = format!(
        "{}/api/v1/namespaces/default/configmaps?marker=last",
        server.url()
    );
    assert_eq!(
        client.get(&marker).send().await.unwrap().status().as_u16(),
        200
    );
    wait_for("the marker request in the audit log", || {
        audit_lines(&audit).iter().any(|e| {
            e["requestURI"]
                .as_str()
                .is_some_and(|u| u.ends_with("marker=last"))
        })
    });
    let kept = backups(logs.path());
    assert_eq!(
        kept.len(),
        2,
        "maxbackup bounds the rotated files: {kept:?}"
    );
    for file in kept.iter().chain([&audit]) {
        let size = std::fs::metadata(file).unwrap().len();
        assert!(size <= MAX_BYTES, "{} has {size} bytes", file.display());
        assert!(!audit_lines(file).is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audit_log_path_dash_writes_events_to_stdout() {
    use std::io::BufRead;
    use std::process::{Command, Stdio};
    let mut server = Server {
        dir: tempfile::tempdir().unwrap(),
        port: support::server::free_port(),
        child: None,
        extra_args: Vec::new(),
    };
    let mut child = Command::new(support::server::ORC)
        .arg("server")
        .arg("--data-dir")
        .arg(server.data_dir())
        .args(["--bind-address", "127.0.0.1", "--https-port"])
        .arg(server.port.to_string())
        .arg("--write-kubeconfig")
        .arg(server.kubeconfig())
        .args(["--disable-agent", "--audit-log-path", "-"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn orc server");
    let out = child.stdout.take().expect("piped stdout");
    server.child = Some(child);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in std::io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    wait_for("the server to answer", || {
        server.kubeconfig().exists()
            && std::net::TcpStream::connect(("127.0.0.1", server.port)).is_ok()
    });
    let resp = server
        .client(true)
        .get(format!("{}/version", server.url()))
        .header("user-agent", "stdout-audit")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 200);
    let mut event = None;
    wait_for("the /version event on stdout", || {
        while let Ok(line) = rx.try_recv() {
            let Ok(e) = serde_json::from_str::<Value>(&line) else {
                continue;
            };
            if e["userAgent"] == "stdout-audit" {
                event = Some(e);
            }
        }
        event.is_some()
    });
    let e = event.unwrap();
    assert_eq!(e["kind"], "Event");
    assert_eq!(e["verb"], "get");
    assert_eq!(e["requestURI"], "/version");
    assert!(e.get("objectRef").is_none(), "{e}");
    assert_eq!(e["responseStatus"]["code"], 200);
}
