//! The `pods/ephemeralcontainers` subresource with the real kubectl against a real
//! `orc server` (no agent): `kubectl debug` adds a defaulted ephemeral container, the
//! subresource writes only `spec.ephemeralContainers` and refuses what upstream's
//! validation refuses, and no other write may add one.

mod support;

use support::server::Server;

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  containers:
  - name: app
    image: busybox:1.36
    command: ["sleep", "3600"]
"#;

/// A JSON patch of the `ephemeralcontainers` subresource of pod web.
fn patch_ephemeral<'a>(kind: &'a str, patch: &'a str) -> [&'a str; 8] {
    [
        "patch",
        "pod",
        "web",
        "--subresource=ephemeralcontainers",
        "--type",
        kind,
        "-p",
        patch,
    ]
}

#[test]
fn kubectl_debug_adds_an_ephemeral_container_and_only_the_subresource_may() {
    let s = Server::start();
    s.apply_yaml("apply", POD);

    // Served and discovered as upstream: get, patch and update, kind Pod.
    let v1: serde_json::Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/api/v1"])).expect("json");
    let entry = v1["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "pods/ephemeralcontainers")
        .cloned()
        .expect("pods/ephemeralcontainers discovered");
    assert_eq!(entry["kind"], "Pod");
    assert_eq!(
        entry["verbs"],
        serde_json::json!(["get", "patch", "update"])
    );

    // kubectl debug without -i only adds the container (its strategic merge patch).
    s.ok(&[
        "debug",
        "web",
        "--image=busybox:1.36",
        "--target=app",
        "--container=debugger",
        "--profile=general",
    ]);
    let pod = s.get_json(&["pod", "web"]);
    let debugger = &pod["spec"]["ephemeralContainers"][0];
    assert_eq!(debugger["name"], "debugger", "{debugger}");
    assert_eq!(debugger["targetContainerName"], "app");
    assert_eq!(debugger["imagePullPolicy"], "IfNotPresent", "defaulted");
    assert_eq!(debugger["terminationMessagePath"], "/dev/termination-log");
    assert_eq!(debugger["terminationMessagePolicy"], "File");
    assert_eq!(
        debugger["securityContext"]["capabilities"]["add"],
        serde_json::json!(["SYS_PTRACE"]),
        "the general profile's"
    );
    let read: serde_json::Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web/ephemeralcontainers",
    ]))
    .expect("json");
    assert_eq!(read["kind"], "Pod");
    assert_eq!(
        read["spec"]["ephemeralContainers"],
        pod["spec"]["ephemeralContainers"]
    );

    // Existing ones may be neither changed nor removed; names are unique across every
    // list; the fields a debugging container has no use for are refused.
    let changed = s.fails(&patch_ephemeral(
        "json",
        r#"[{"op":"replace","path":"/spec/ephemeralContainers/0/image","value":"busybox:2"}]"#,
    ));
    assert!(
        changed.contains("spec.ephemeralContainers[debugger]: Forbidden: existing ephemeral containers \"debugger\" may not be changed"),
        "{changed}"
    );
    let removed = s.fails(&patch_ephemeral(
        "json",
        r#"[{"op":"remove","path":"/spec/ephemeralContainers/0"}]"#,
    ));
    assert!(
        removed.contains("spec.ephemeralContainers: Forbidden: existing ephemeral containers \"debugger\" may not be removed"),
        "{removed}"
    );
    // A strategic merge patch puts a new item first when it names no order.
    let bad = s.fails(&patch_ephemeral(
        "strategic",
        r#"{"spec":{"ephemeralContainers":[{"name":"app","image":"busybox:1","ports":[{"containerPort":80}],"targetContainerName":"nope"}]}}"#,
    ));
    for message in [
        "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
        "spec.ephemeralContainers[0].targetContainerName: Not found: \"nope\"",
        "spec.ephemeralContainers[0].ports: Forbidden: cannot be set for an Ephemeral Container",
    ] {
        assert!(bad.contains(message), "{message} in {bad}");
    }

    // The subresource writes the ephemeral containers only.
    s.ok(&patch_ephemeral(
        "merge",
        r#"{"metadata":{"labels":{"app":"other"}},"spec":{"activeDeadlineSeconds":5}}"#,
    ));
    let pod = s.get_json(&["pod", "web"]);
    assert_eq!(pod["metadata"]["labels"]["app"], "web");
    assert!(
        pod["spec"]["activeDeadlineSeconds"].is_null(),
        "{}",
        pod["spec"]
    );

    // No other write adds one: not an update of the pod, not a create.
    let update = s.fails(&[
        "patch",
        "pod",
        "web",
        "--type=json",
        "-p",
        r#"[{"op":"add","path":"/spec/ephemeralContainers/-","value":{"name":"x","image":"busybox:1"}}]"#,
    ]);
    assert!(
        update.contains("spec: Forbidden: pod updates may not change fields other than"),
        "{update}"
    );
    let create = s
        .kubectl_stdin(
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: Pod\nmetadata: {name: early}\nspec:\n  containers: [{name: a, image: busybox:1}]\n  ephemeralContainers: [{name: e, image: busybox:1}]\n",
        )
        .stderr;
    assert!(
        String::from_utf8_lossy(&create)
            .contains("spec.ephemeralContainers: Forbidden: cannot be set on create"),
        "{}",
        String::from_utf8_lossy(&create)
    );
}
