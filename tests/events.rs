//! events.k8s.io/v1 with the real kubectl against a real `orc server`: the same stored
//! Events as core/v1, in both shapes, with v1 validation, field selectors, tables and
//! watches, and the Events orc's own controllers write.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc::Receiver;

use serde_json::Value;
use support::server::{wait_for, Server, DEADLINE};

const V1: &str = "events.v1.events.k8s.io";

const V1_EVENT: &str = r#"
apiVersion: events.k8s.io/v1
kind: Event
metadata:
  name: web-checked
  namespace: default
eventTime: "EVENT_TIME"
regarding: {apiVersion: v1, kind: Pod, name: web, namespace: default}
related: {kind: Node, name: n1}
note: "health check passed"
reason: Checked
type: Normal
action: Check
reportingController: example.com/checker
reportingInstance: checker-1
"#;

const CORE_EVENT: &str = r#"
apiVersion: v1
kind: Event
metadata:
  name: db-backoff
  namespace: default
involvedObject: {apiVersion: v1, kind: Pod, name: db, namespace: default}
reason: BackOff
message: "Back-off restarting failed container"
type: Warning
source: {component: kubelet, host: n2}
count: 4
firstTimestamp: "FIRST_TIME"
lastTimestamp: "LAST_TIME"
"#;

/// The v1 Event, happening now (the event TTL controller deletes Events whose last
/// occurrence is older than an hour).
fn v1_event() -> String {
    let now = chrono::Utc::now();
    V1_EVENT.replace(
        "EVENT_TIME",
        &now.to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
    )
}

/// The core Event, first seen a minute ago and last seen now; its two timestamps.
fn core_event() -> (String, String, String) {
    let now = chrono::Utc::now();
    let at =
        |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (first, last) = (at(now - chrono::Duration::seconds(60)), at(now));
    let yaml = CORE_EVENT
        .replace("FIRST_TIME", &first)
        .replace("LAST_TIME", &last);
    (yaml, first, last)
}

fn names(list: &Value) -> Vec<String> {
    let mut out: Vec<String> = list["items"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|i| i["metadata"]["name"].as_str().unwrap_or("").to_string())
        .collect();
    out.sort();
    out
}

fn item<'a>(list: &'a Value, name: &str) -> &'a Value {
    list["items"]
        .as_array()
        .and_then(|items| items.iter().find(|i| i["metadata"]["name"] == name))
        .unwrap_or_else(|| panic!("{name} in {list}"))
}

#[test]
fn events_written_through_either_api_read_through_both() {
    let s = Server::start();
    assert!(s
        .apply_yaml("create", &v1_event())
        .contains("event.events.k8s.io/web-checked created"));
    let (core_yaml, first, last) = core_event();
    s.apply_yaml("create", &core_yaml);

    // The v1 Event as core/v1 sees it.
    let core = s.get_json(&["events"]);
    let checked = item(&core, "web-checked");
    assert_eq!(checked["apiVersion"], "v1");
    assert_eq!(checked["involvedObject"]["name"], "web");
    assert_eq!(checked["message"], "health check passed");
    assert_eq!(checked["reportingComponent"], "example.com/checker");
    assert_eq!(checked["reportingInstance"], "checker-1");
    assert_eq!(checked["action"], "Check");
    assert_eq!(checked["related"]["name"], "n1");
    assert!(checked.get("note").is_none(), "{checked}");

    // The core Event as events.k8s.io/v1 sees it, and the v1 Event as it was written.
    let v1 = s.get_json(&[V1]);
    let backoff = item(&v1, "db-backoff");
    assert_eq!(backoff["apiVersion"], "events.k8s.io/v1");
    assert_eq!(backoff["regarding"]["name"], "db");
    assert_eq!(backoff["note"], "Back-off restarting failed container");
    assert_eq!(backoff["deprecatedSource"]["component"], "kubelet");
    assert_eq!(backoff["deprecatedSource"]["host"], "n2");
    assert_eq!(backoff["deprecatedCount"], 4);
    assert_eq!(backoff["deprecatedFirstTimestamp"], first.as_str());
    assert_eq!(backoff["deprecatedLastTimestamp"], last.as_str());
    assert!(backoff.get("involvedObject").is_none(), "{backoff}");
    let checked = s.get_json(&[V1, "web-checked"]);
    assert_eq!(checked["regarding"]["kind"], "Pod");
    assert_eq!(checked["note"], "health check passed");
    assert_eq!(checked["reportingController"], "example.com/checker");
    // One object: the same resourceVersion through both APIs.
    let core_one = s.get_json(&["event", "web-checked"]);
    assert_eq!(
        core_one["metadata"]["resourceVersion"],
        checked["metadata"]["resourceVersion"]
    );

    // Field selectors: v1 labels on v1, core labels on core.
    let by_regarding = s.get_json(&[V1, "--field-selector", "regarding.name=db"]);
    assert_eq!(names(&by_regarding), ["db-backoff"]);
    let by_kind_reason = s.get_json(&[V1, "--field-selector", "regarding.kind=Pod,reason=Checked"]);
    assert_eq!(names(&by_kind_reason), ["web-checked"]);
    let by_controller = s.get_json(&[
        V1,
        "--field-selector",
        "reportingController=example.com/checker",
    ]);
    assert_eq!(names(&by_controller), ["web-checked"]);
    let warnings = s.get_json(&[V1, "--field-selector", "type=Warning"]);
    assert_eq!(names(&warnings), ["db-backoff"]);
    let core_selected = s.get_json(&["events", "--field-selector", "involvedObject.name=web"]);
    assert_eq!(names(&core_selected), ["web-checked"]);
    let err = s.fails(&["get", V1, "--field-selector", "involvedObject.name=web"]);
    assert!(
        err.contains("field label not supported: involvedObject.name"),
        "{err}"
    );

    // The table kubectl prints: upstream's event columns for both APIs.
    let table = s.ok(&["get", V1]);
    let header = table.lines().next().unwrap_or("");
    for column in ["LAST SEEN", "TYPE", "REASON", "OBJECT", "MESSAGE"] {
        assert!(header.contains(column), "{table}");
    }
    assert!(
        table.contains("pod/db") && table.contains("Back-off restarting failed container"),
        "{table}"
    );
    let wide = s.ok(&["get", V1, "-o", "wide"]);
    assert!(wide.contains("kubelet, n2"), "{wide}");

    // Discovery shows both groups.
    let resources = s.ok(&["api-resources", "--api-group", "events.k8s.io"]);
    assert!(
        resources.contains("events") && resources.contains("events.k8s.io/v1"),
        "{resources}"
    );

    // A series grows through v1; what happened stays as it was.
    let observed = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true);
    s.ok(&[
        "patch",
        V1,
        "web-checked",
        "--type",
        "merge",
        "-p",
        &format!(r#"{{"series":{{"count":2,"lastObservedTime":"{observed}"}}}}"#),
    ]);
    assert_eq!(s.get_json(&["event", "web-checked"])["series"]["count"], 2);
    let err = s.fails(&[
        "patch",
        V1,
        "web-checked",
        "--type",
        "merge",
        "-p",
        r#"{"note":"something else"}"#,
    ]);
    assert!(err.contains("message: Invalid value"), "{err}");
    assert!(err.contains("field is immutable"), "{err}");

    // Deleted through one API, gone from both.
    s.ok(&["delete", V1, "db-backoff"]);
    assert!(names(&s.get_json(&["events"])) == ["web-checked"]);
}

#[test]
fn events_k8s_io_creates_are_validated_as_upstream() {
    let s = Server::start();
    let no_time = V1_EVENT.replace("eventTime: \"EVENT_TIME\"\n", "");
    let out = s.kubectl_stdin(&["create", "-f", "-"], &no_time);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("is invalid"), "{err}");
    assert!(err.contains("eventTime: Required value"), "{err}");

    let bad = v1_event()
        .replace("type: Normal", "type: Odd")
        .replace("reportingController: example.com/checker\n", "")
        .replace(
            "note: \"health check passed\"",
            &format!("note: \"{}\"", "n".repeat(1025)),
        );
    let out = s.kubectl_stdin(&["create", "-f", "-"], &bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    for want in [
        "type: Invalid value: \"\": has invalid value: Odd",
        "reportingController: Required value",
        "message: Invalid value: \"\": can have at most 1024 characters",
    ] {
        assert!(err.contains(want), "{want} in {err}");
    }
    let deprecated = v1_event().replace("type: Normal", "type: Normal\ndeprecatedCount: 3");
    let out = s.kubectl_stdin(&["create", "-f", "-"], &deprecated);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("deprecatedCount: Invalid value: \"\": needs to be unset"),
        "{err}"
    );
    // Nothing was stored by the refused creates.
    assert_eq!(names(&s.get_json(&["events"])), Vec::<String>::new());
}

/// Lines kubectl prints, read on a thread so a test can wait with a deadline.
fn lines_of(
    args: &[&str],
    kubeconfig: &std::path::Path,
) -> (std::process::Child, Receiver<String>) {
    let mut child = Command::new("kubectl")
        .args(args)
        .env("KUBECONFIG", kubeconfig)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("kubectl");
    let out = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    (child, rx)
}

fn wait_line(rx: &Receiver<String>, seen: &mut Vec<String>, want: impl Fn(&str) -> bool) {
    let deadline = std::time::Instant::now() + DEADLINE;
    while !seen.iter().any(|l| want(l)) {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("watch did not print the line waited for; saw {seen:?}"),
        }
    }
}

#[test]
fn watches_of_either_api_see_events_written_through_the_other() {
    let s = Server::start();
    s.apply_yaml(
        "create",
        &core_event().0.replace("name: db-backoff", "name: before"),
    );
    let (mut v1_watch, v1_rx) = lines_of(
        &[
            "get",
            V1,
            "-w",
            "--output-watch-events",
            "-o",
            "jsonpath={.type} {.object.apiVersion} {.object.metadata.name} {.object.note}{\"\\n\"}",
        ],
        &s.kubeconfig(),
    );
    let (mut core_watch, core_rx) = lines_of(
        &["get", "events", "-w", "--output-watch-events", "-o", "wide"],
        &s.kubeconfig(),
    );
    let (mut v1_seen, mut core_seen) = (Vec::new(), Vec::new());
    // Both watches listed the existing Event: from here on they see every change.
    wait_line(&v1_rx, &mut v1_seen, |l| l.contains("before"));
    wait_line(&core_rx, &mut core_seen, |l| l.contains("before"));
    s.apply_yaml("create", &core_event().0);
    s.apply_yaml("create", &v1_event());
    wait_line(&v1_rx, &mut v1_seen, |l| {
        l == "ADDED events.k8s.io/v1 db-backoff Back-off restarting failed container"
    });
    wait_line(&v1_rx, &mut v1_seen, |l| {
        l == "ADDED events.k8s.io/v1 web-checked health check passed"
    });
    wait_line(&core_rx, &mut core_seen, |l| {
        l.starts_with("ADDED") && l.contains("Checked") && l.contains("health check passed")
    });
    s.ok(&["delete", "event", "web-checked"]);
    wait_line(&v1_rx, &mut v1_seen, |l| {
        l.starts_with("DELETED events.k8s.io/v1 web-checked")
    });
    for child in [&mut v1_watch, &mut core_watch] {
        let _ = child.kill();
        let _ = child.wait();
    }
}

#[test]
fn controller_events_read_through_events_k8s_io() {
    let s = Server::start();
    s.ok(&[
        "create",
        "deployment",
        "web",
        "--image=busybox:1.36",
        "--replicas=2",
    ]);
    let selector = "regarding.kind=Deployment,regarding.name=web,reason=ScalingReplicaSet";
    let mut events = Value::Null;
    wait_for(
        "the deployment controller's ScalingReplicaSet event",
        || {
            events = s.get_json(&[V1, "--field-selector", selector]);
            !names(&events).is_empty()
        },
    );
    let ev = &events["items"][0];
    assert_eq!(ev["apiVersion"], "events.k8s.io/v1");
    assert_eq!(ev["type"], "Normal");
    assert_eq!(ev["reportingController"], "deployment-controller");
    assert_eq!(ev["deprecatedSource"]["component"], "deployment-controller");
    assert!(
        ev["note"]
            .as_str()
            .is_some_and(|n| n.starts_with("Scaled up replica set web-")),
        "{ev}"
    );
    // kubectl events (core/v1) shows the same Event.
    let shown = s.ok(&["events", "--for", "deployment/web"]);
    assert!(shown.contains("ScalingReplicaSet"), "{shown}");
}
