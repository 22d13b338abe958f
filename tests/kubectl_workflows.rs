//! Everyday kubectl workflows with default flags: apply, patch, edit, set image,
//! explain, field validation, describe and events, wait, and no failing requests.

mod support;

use support::server::{stdout, Server};
use support::wait::assert_stays_for;

const DEPLOY_V1: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web, stage: one}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: busybox:1.36
        env: [{name: A, value: "1"}, {name: B, value: "2"}]
        ports: [{containerPort: 80}]
"#;

const DEPLOY_V2: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  labels: {app: web}
spec:
  replicas: 3
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: busybox:1.37
        env: [{name: A, value: "1"}, {name: C, value: "3"}]
        ports: [{containerPort: 80}]
"#;

#[test]
fn apply_creates_is_idempotent_updates_and_prunes_removed_fields() {
    let s = Server::start();
    assert!(s.apply_yaml("apply", DEPLOY_V1).contains("created"));
    // The deployment controller's status writes come first: only then does an
    // unchanged apply have a resourceVersion to keep.
    support::server::wait_for("the deployment's status", || {
        let d = s.get_json(&["deploy", "web"]);
        d["status"]["observedGeneration"] == d["metadata"]["generation"]
            && d["status"]["replicas"] == d["spec"]["replicas"]
            && d["status"]["unavailableReplicas"] == d["spec"]["replicas"]
    });
    let first = s.get_json(&["deploy", "web"]);
    assert!(
        first["metadata"]["annotations"]["kubectl.kubernetes.io/last-applied-configuration"]
            .is_string()
    );
    let again = s.apply_yaml("apply", DEPLOY_V1);
    assert!(again.contains("unchanged"), "{again}");
    let same = s.get_json(&["deploy", "web"]);
    assert_eq!(
        same["metadata"]["resourceVersion"],
        first["metadata"]["resourceVersion"]
    );
    assert!(s.apply_yaml("apply", DEPLOY_V2).contains("configured"));
    let d = s.get_json(&["deploy", "web"]);
    assert_eq!(d["spec"]["replicas"], 3);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(c["image"], "busybox:1.37");
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        env,
        vec!["A", "C"],
        "B was removed from the config, so apply prunes it"
    );
    assert!(
        d["metadata"]["labels"].get("stage").is_none(),
        "label removed from the config is pruned"
    );
    assert_eq!(d["metadata"]["generation"], 2);
}

#[test]
fn server_side_apply_creates_and_updates() {
    let s = Server::start();
    let cm = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"1\"\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], cm);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let cm2 = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: ssa\ndata:\n  a: \"2\"\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], cm2);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.get_json(&["cm", "ssa"])["data"]["a"], "2");
}

#[test]
fn patch_with_all_three_types() {
    let s = Server::start();
    s.apply_yaml("apply", DEPLOY_V1);
    s.ok(&[
        "patch",
        "deploy",
        "web",
        "--type=merge",
        "-p",
        r#"{"spec":{"replicas":4}}"#,
    ]);
    assert_eq!(s.get_json(&["deploy", "web"])["spec"]["replicas"], 4);
    s.ok(&[
        "patch", "deploy", "web", "--type=json", "-p",
        r#"[{"op":"replace","path":"/spec/template/spec/containers/0/image","value":"busybox:1.35"}]"#,
    ]);
    let d = s.get_json(&["deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:1.35"
    );
    // Strategic merge: a container entry merges by name, env by name.
    s.ok(&[
        "patch", "deploy", "web", "-p",
        r#"{"spec":{"template":{"spec":{"containers":[{"name":"app","env":[{"name":"D","value":"4"}]}]}}}}"#,
    ]);
    let d = s.get_json(&["deploy", "web"]);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(
        c["image"], "busybox:1.35",
        "strategic merge kept the other fields"
    );
    let env: Vec<&str> = c["env"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert!(env.contains(&"A") && env.contains(&"D"), "{env:?}");
    let err = s.fails(&[
        "patch",
        "deploy",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"test","path":"/spec/replicas","value":99}]"#,
    ]);
    assert!(!err.is_empty());
}

#[test]
fn set_image_and_edit() {
    let s = Server::start();
    s.apply_yaml("apply", DEPLOY_V1);
    s.ok(&["set", "image", "deployment/web", "app=busybox:stable"]);
    let d = s.get_json(&["deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"][0]["image"],
        "busybox:stable"
    );
    let editor = s.dir.path().join("editor.sh");
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i 's/replicas: 2/replicas: 7/' \"$1\"\n",
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new("kubectl")
        .args(["edit", "deployment", "web"])
        .env("KUBECONFIG", s.kubeconfig())
        .env("KUBE_EDITOR", &editor)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(s.get_json(&["deploy", "web"])["spec"]["replicas"], 7);
}

#[test]
fn field_validation_strict_warn_and_ignore() {
    let s = Server::start();
    let bad = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: v\n  bogus: 1\ndata: {a: b}\n";
    let out = s.kubectl_stdin(&["create", "-f", "-"], bad);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("strict decoding error: unknown field \"metadata.bogus\""),
        "{err}"
    );
    assert!(!s.kubectl(&["get", "cm", "v"]).status.success());
    let out = s.kubectl_stdin(&["create", "--validate=warn", "-f", "-"], bad);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown field \"metadata.bogus\""));
    s.ok(&["delete", "cm", "v"]);
    let out = s.kubectl_stdin(&["create", "--validate=false", "-f", "-"], bad);
    assert!(out.status.success());
}

#[test]
fn discovery_explain_and_get_all() {
    let s = Server::start();
    let resources = s.ok(&["api-resources"]);
    for line in ["pods   ", "replicationcontrollers", "deployments", "leases"] {
        assert!(resources.contains(line), "{resources}");
    }
    assert!(
        resources.contains(" rc ") || resources.contains("rc   "),
        "{resources}"
    );
    let explain = s.ok(&["explain", "pod.spec.containers"]);
    assert!(
        explain.contains("FIELD: containers") || explain.contains("containers"),
        "{explain}"
    );
    assert!(explain.contains("image"), "{explain}");
    s.apply_yaml("apply", DEPLOY_V1);
    let all = s.ok(&["get", "all"]);
    assert!(all.contains("deployment.apps/web"), "{all}");
    assert!(all.contains("service/kubernetes"), "{all}");
    let two = s.ok(&["get", "deploy,svc"]);
    assert!(
        two.contains("deployment.apps/web") && two.contains("service/kubernetes"),
        "{two}"
    );
    let table = s.ok(&["get", "svc", "kubernetes"]);
    assert!(
        table.contains("CLUSTER-IP") && table.contains("10.43.0.1"),
        "{table}"
    );
}

#[test]
fn describe_shows_events_and_events_sort() {
    let s = Server::start();
    s.apply_yaml("apply", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: p\nspec:\n  containers:\n  - name: c\n    image: busybox\n");
    let pod = s.get_json(&["pod", "p"]);
    let uid = pod["metadata"]["uid"].as_str().unwrap();
    // Recent timestamps: the event TTL controller removes events older than an hour.
    let now = chrono::Utc::now();
    let at = |secs_ago: i64| {
        (now - chrono::Duration::seconds(secs_ago))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    };
    for (name, reason, ts) in [("p.1", "Pulling", at(10)), ("p.2", "Started", at(20))] {
        let ev = format!(
            "apiVersion: v1\nkind: Event\nmetadata:\n  name: {name}\ninvolvedObject:\n  kind: Pod\n  name: p\n  namespace: default\n  uid: {uid}\n  apiVersion: v1\nreason: {reason}\nmessage: {reason} happened\ntype: Normal\nfirstTimestamp: \"{ts}\"\nlastTimestamp: \"{ts}\"\ncount: 1\nsource:\n  component: test\n"
        );
        s.apply_yaml("create", &ev);
    }
    let describe = s.ok(&["describe", "pod", "p"]);
    assert!(
        describe.contains("Name:") && describe.contains("busybox"),
        "{describe}"
    );
    assert!(describe.contains("Pulling happened"), "{describe}");
    let events = s.ok(&["get", "events", "--sort-by=.lastTimestamp"]);
    let started = events.find("Started").expect("Started event listed");
    let pulling = events.find("Pulling").expect("Pulling event listed");
    assert!(started < pulling, "sorted by lastTimestamp:\n{events}");
    s.apply_yaml("apply", DEPLOY_V1);
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: ReplicationController\nmetadata:\n  name: rc1\nspec:\n  replicas: 1\n  selector: {app: rc1}\n  template:\n    metadata: {labels: {app: rc1}}\n    spec:\n      containers: [{name: c, image: busybox}]\n",
    );
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: n1\nstatus:\n  capacity: {cpu: \"2\", memory: 1Gi, pods: \"110\"}\n",
    );
    support::server::wait_for("the deployment's ReplicaSet", || {
        s.ok(&["describe", "deploy", "web"])
            .contains("ScalingReplicaSet")
    });
    let rc = s.ok(&["describe", "rc", "rc1"]);
    support::server::wait_for("rc events", || {
        s.ok(&["describe", "rc", "rc1"])
            .contains("SuccessfulCreate")
    });
    assert!(rc.contains("Replicas:"), "{rc}");
    let node = s.ok(&["describe", "node", "n1"]);
    assert!(node.contains("Capacity:"), "{node}");
    for kind in ["svc kubernetes", "ns default"] {
        let args: Vec<&str> = std::iter::once("describe").chain(kind.split(' ')).collect();
        s.ok(&args);
    }
}

/// How long `kubectl wait` must be seen blocking before the awaited change is made.
const WAITER_BLOCKS_FOR: std::time::Duration = std::time::Duration::from_millis(500);

#[test]
fn wait_for_condition_and_delete() {
    let s = Server::start();
    s.apply_yaml("apply", "apiVersion: v1\nkind: Pod\nmetadata:\n  name: w\nspec:\n  containers:\n  - name: c\n    image: busybox\n");
    let kubeconfig = s.kubeconfig();
    let waiter = std::thread::spawn(move || {
        support::server::kubectl_with(
            &kubeconfig,
            &["wait", "--for=condition=Ready", "pod/w", "--timeout=15s"],
            None,
        )
    });
    assert_stays_for(
        WAITER_BLOCKS_FOR,
        "kubectl wait to block while w is not Ready",
        || !waiter.is_finished(),
    );
    s.ok(&[
        "patch",
        "pod",
        "w",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"phase":"Running","conditions":[{"type":"Ready","status":"True"}]}}"#,
    ]);
    let out = waiter.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout(&out).contains("condition met"));
    let kubeconfig = s.kubeconfig();
    let waiter = std::thread::spawn(move || {
        support::server::kubectl_with(
            &kubeconfig,
            &["wait", "--for=delete", "pod/w", "--timeout=15s"],
            None,
        )
    });
    assert_stays_for(
        WAITER_BLOCKS_FOR,
        "kubectl wait to block while w exists",
        || !waiter.is_finished(),
    );
    s.ok(&["delete", "pod", "w", "--wait=false"]);
    let out = waiter.join().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn kubectl_apply_and_get_make_no_failing_requests() {
    let s = Server::start();
    let out = s.kubectl_stdin(&["apply", "-v=8", "-f", "-"], DEPLOY_V1);
    assert!(out.status.success());
    let out2 = s.kubectl(&["get", "deploy,pods,svc", "-A", "-v=8"]);
    assert!(out2.status.success());
    let out3 = s.kubectl_stdin(&["apply", "-v=8", "-f", "-"], DEPLOY_V2);
    assert!(out3.status.success());
    for log in [&out.stderr, &out2.stderr, &out3.stderr] {
        let log = String::from_utf8_lossy(log);
        let mut last_request = String::new();
        for line in log.lines() {
            if let Some(i) = line
                .find("] GET https://")
                .or_else(|| line.find("] POST https://"))
                .or_else(|| line.find("] PATCH https://"))
            {
                last_request = line[i + 2..].to_string();
            }
            if !line.contains("Response Status:") {
                continue;
            }
            let failed =
                line.contains("Response Status: 5") || line.contains("Response Status: 404");
            // The only 404 upstream kubectl also sees: apply looking up an object that
            // does not exist yet (then it creates it).
            let expected_lookup = last_request.starts_with("GET ")
                && last_request.contains("/namespaces/default/deployments/web");
            assert!(
                !failed || expected_lookup,
                "kubectl saw a failing request: {last_request} -> {line}"
            );
        }
    }
}

#[test]
fn guestbook_examples_apply_unchanged() {
    let s = Server::start();
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/examples/guestbook");
    let out = s.ok(&["apply", "-f", dir]);
    for obj in [
        "deployment.apps/redis-leader",
        "deployment.apps/redis-follower",
        "service/frontend",
        "deployment.apps/frontend",
    ] {
        assert!(out.contains(obj), "{out}");
    }
    let svc = s.get_json(&["svc", "frontend"]);
    assert!(svc["spec"]["ports"][0]["nodePort"].as_u64().unwrap() >= 30000);
}

/// A Deployment written as many published manifests are: empty lists, `false` and `""`
/// in `omitempty` fields, and quantities in a spelling of their own.
const DEPLOY_LOOSE: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata:
  name: loose
spec:
  replicas: 1
  selector: {matchLabels: {app: loose}}
  template:
    metadata: {labels: {app: loose}}
    spec:
      nodeSelector: {}
      containers:
      - name: app
        image: busybox:1.36
        args: []
        stdin: false
        env: [{name: EMPTY, value: ""}]
        resources:
          requests: {cpu: 0.5, memory: 1024Mi}
          limits: {cpu: 1}
"#;

#[test]
fn built_in_objects_are_stored_as_upstreams_go_types_write_them() {
    let s = Server::start();
    assert!(s.apply_yaml("apply", DEPLOY_LOOSE).contains("created"));
    let d = s.get_json(&["deploy", "loose"]);
    let spec = &d["spec"]["template"]["spec"];
    let c = &spec["containers"][0];
    // omitempty fields lose their empty values (kubernetes#114777) ...
    assert!(spec.get("nodeSelector").is_none(), "{spec}");
    assert!(c.get("args").is_none() && c.get("stdin").is_none(), "{c}");
    assert_eq!(c["env"], serde_json::json!([{"name": "EMPTY"}]));
    // ... and quantities are stored in canonical form (kubernetes#116135).
    assert_eq!(
        c["resources"],
        serde_json::json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1"}})
    );
    let jsonpath = s.ok(&[
        "get",
        "deploy",
        "loose",
        "-o",
        "jsonpath={.spec.template.spec.containers[0].resources.requests.cpu}",
    ]);
    assert_eq!(jsonpath, "500m");
    // The file no longer matches what is stored, so every re-apply patches it and says
    // `configured`, as against upstream; the object itself does not change.
    for _ in 0..2 {
        let again = s.apply_yaml("apply", DEPLOY_LOOSE);
        assert!(
            again.contains("deployment.apps/loose configured"),
            "{again}"
        );
    }
    let after = s.get_json(&["deploy", "loose"]);
    assert_eq!(after["metadata"]["generation"], 1);
    assert_eq!(after["spec"], d["spec"]);
    // `kubectl diff` asks the server for the result of the same patch: nothing changes.
    let out = s.kubectl_stdin(&["diff", "-f", "-"], DEPLOY_LOOSE);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));

    // Server-side apply stores the same form and records the configuration's fields,
    // empty ones too, as its manager's.
    let ssa = DEPLOY_LOOSE.replace("name: loose\n", "name: loose-ssa\n");
    for _ in 0..2 {
        let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &ssa);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let d = s.get_json(&["deploy", "loose-ssa", "--show-managed-fields"]);
    assert_eq!(d["metadata"]["generation"], 1);
    let c = &d["spec"]["template"]["spec"]["containers"][0];
    assert!(c.get("args").is_none(), "{c}");
    assert_eq!(c["resources"]["requests"]["cpu"], "500m");
    let applied = d["metadata"]["managedFields"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["operation"] == "Apply")
        .expect("the apply's managed fields");
    let fields = &applied["fieldsV1"]["f:spec"]["f:template"]["f:spec"]["f:containers"]
        ["k:{\"name\":\"app\"}"];
    assert!(fields.get("f:args").is_some(), "{fields}");
    let out = s.kubectl_stdin(&["diff", "--server-side", "-f", "-"], &ssa);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}
