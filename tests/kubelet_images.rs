//! Images on the kubelet, on the one-node cluster of `support::kubelet` (needs root,
//! containerd, skopeo and docker-registry; see there): pulls from a registry, a missing
//! image's back-off, a new image restarting a container, and the offline example
//! (examples/hello) run from an image imported with `orc images import`.

use std::net::SocketAddr;
use std::process::Command;

use serde_json::Value;

mod support;
use support::host::{repo_path, run};
use support::kubelet::*;

/// A node with a private registry holding the busybox test image; returns it and the
/// image's name there.
fn world_with_registry() -> (World, String) {
    let w = World::start_with(true);
    for tool in ["skopeo", "docker-registry"] {
        let found = run(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
        assert!(
            found.status.success(),
            "this test needs {tool}: run scripts/install-deps.sh"
        );
    }
    let port = w.registry_port.unwrap();
    let pushed = format!("127.0.0.1:{port}/test/busybox:pushed");
    let mut copy = w.in_netns("skopeo");
    copy.args(["copy", "--dest-tls-verify=false"])
        .arg(format!(
            "oci-archive:{}",
            w.data_dir().join("agent/images/busybox.tar").display()
        ))
        .arg(format!("docker://{pushed}"));
    let copied = run(&mut copy);
    assert!(
        copied.status.success(),
        "skopeo copy to the test's registry: {}",
        String::from_utf8_lossy(&copied.stderr)
    );
    (w, pushed)
}

/// An image is pulled over HTTP from the registry on the node's loopback, and the pod's
/// status and events say where it came from.
#[test]
fn image_is_pulled_from_a_registry() {
    let (w, pushed) = world_with_registry();
    let port = w.registry_port.unwrap();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: pulled
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {pushed}
    imagePullPolicy: Always
    command: ["sh", "-c", "echo from-the-registry; exec sleep 3600"]
"#
    ));
    w.remember("pulled");
    w.wait_for("pulled to run", || {
        w.kubectl_out(&["logs", "pulled"]) == "from-the-registry"
    });
    let pulled = container_status(&w.pod("pulled").unwrap());
    assert!(
        pulled["imageID"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("127.0.0.1:{port}/test/busybox@sha256:"))),
        "{pulled}"
    );
    let events = w.pod_events("pulled");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image")),
        "{events:?}"
    );
}

/// A missing image: ErrImagePull, then ImagePullBackOff, each with a message and events
/// (seen through a watch: ErrImagePull lasts only until the next sync).
#[test]
fn missing_image_reports_err_image_pull_then_back_off() {
    let (w, _) = world_with_registry();
    let port = w.registry_port.unwrap();
    let missing = format!("127.0.0.1:{port}/nothing/here:v1");
    let watch = PodWatch::start(&w, "check=missing-image");
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: nowhere
  labels:
    check: missing-image
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {missing}
    imagePullPolicy: IfNotPresent
"
    ));
    w.remember("nowhere");
    let mut reasons = Vec::new();
    let mut waiting = Value::Null;
    w.wait_for(
        "nowhere to report ErrImagePull, then ImagePullBackOff",
        || {
            for pod in watch.pods() {
                let state = container_status(&pod)["state"]["waiting"].clone();
                if let Some(reason) = state["reason"].as_str() {
                    if reasons.last().map(String::as_str) != Some(reason) {
                        reasons.push(reason.to_string());
                    }
                    if reason == "ErrImagePull" {
                        let message = state["message"].as_str().unwrap_or("");
                        assert!(
                            message.starts_with(&format!("Failed to pull image \"{missing}\"")),
                            "{state}"
                        );
                    }
                    waiting = state;
                }
            }
            let first_pull_failed = reasons.iter().position(|r| r == "ErrImagePull");
            let backed_off = reasons.iter().rposition(|r| r == "ImagePullBackOff");
            first_pull_failed
                .zip(backed_off)
                .is_some_and(|(f, b)| f < b)
                && waiting["reason"] == "ImagePullBackOff"
        },
    );
    let message = waiting["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with(&format!("Back-off pulling image \"{missing}\"")),
        "{waiting}"
    );
    assert!(message.contains("not found"), "{waiting}");
    let events = w.pod_events("nowhere");
    for (reason, text) in [
        ("Failed", format!("Failed to pull image \"{missing}\"")),
        ("Failed", "Error: ErrImagePull".to_string()),
        ("BackOff", format!("Back-off pulling image \"{missing}\"")),
        ("Failed", "Error: ImagePullBackOff".to_string()),
    ] {
        assert!(
            events
                .iter()
                .any(|(r, m)| r == reason && m.starts_with(&text)),
            "no {reason} event {text:?} in {events:?}"
        );
    }
    let described = w.kubectl_ok(&["describe", "pod", "nowhere"]);
    for text in ["ImagePullBackOff", "ErrImagePull", "Failed to pull image"] {
        assert!(described.contains(text), "no {text} in: {described}");
    }
}

/// A new image: the container is killed and started again from it.
#[test]
fn new_image_restarts_the_container() {
    let w = World::start();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: swap
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo started; exec sleep 3600"]
"#
    ));
    w.remember("swap");
    w.wait_for("swap to run", || {
        w.kubectl_out(&["logs", "swap"]) == "started"
    });
    let before = container_status(&w.pod("swap").unwrap());
    w.kubectl_ok(&["set", "image", "pod/swap", &format!("app={OTHER_IMAGE}")]);
    let mut after = Value::Null;
    w.wait_for("swap to run its new image", || {
        after = container_status(&w.pod("swap").unwrap_or_default());
        after["restartCount"] == 1 && after["state"]["running"].is_object()
    });
    assert_eq!(after["image"], OTHER_IMAGE, "{after}");
    assert_ne!(after["containerID"], before["containerID"], "{after}");
    let events = w.pod_events("swap");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Killing"
                && m == "Container app definition changed, will be restarted"),
        "{events:?}"
    );
}

/// README's quick start, on the test's node: the hello example's image is built by its
/// script, imported with `orc images import` (no registry anywhere), the example applied
/// unchanged, and its Service answers from the node with a page from one of its pods.
#[test]
fn hello_example_runs_from_an_imported_image() {
    let w = World::start();
    let tarball = w.dir.join("orc-hello.tar");
    let built = run(Command::new(repo_path("examples/hello/build-image.sh")).arg(&tarball));
    assert!(
        built.status.success(),
        "examples/hello/build-image.sh: {}",
        String::from_utf8_lossy(&built.stderr)
    );
    let imported = run(Command::new(ORC)
        .args(["images", "import"])
        .arg(&tarball)
        .arg("--containerd-socket")
        .arg(w.dir.join("containerd.sock"))
        .args(["--containerd-namespace", NAMESPACE]));
    assert!(
        imported.status.success(),
        "orc images import: {}",
        String::from_utf8_lossy(&imported.stderr)
    );
    assert!(
        String::from_utf8_lossy(&imported.stdout).contains("imported localhost/orc-hello:1"),
        "{imported:?}"
    );

    w.step("kubectl apply -f examples/hello/ and wait for the Deployment");
    w.kubectl_ok(&[
        "apply",
        "-f",
        &repo_path("examples/hello").to_string_lossy(),
    ]);
    w.kubectl_ok(&["rollout", "status", "deployment/hello", "--timeout=60s"]);
    for pod in w
        .kubectl_out(&["get", "pods", "-l", "app=hello", "-o", "name"])
        .lines()
    {
        w.remember(pod.trim_start_matches("pod/"));
    }
    w.wait_for("both pods to be the Service's ready endpoints", || {
        w.ready_endpoint_ips("default", "hello").len() == 2
    });

    w.step("the Service's ClusterIP answers from the node");
    // A machine has a default route that ClusterIP traffic takes before the proxy
    // rewrites it; the test's namespace has none, so it gets one for the service network.
    let routed = run(Command::new("ip").args([
        "-n",
        &w.netns,
        "route",
        "replace",
        SERVICE_CIDR,
        "dev",
        "orc0",
    ]));
    assert!(routed.status.success(), "{routed:?}");
    let ip = w.kubectl_out(&["get", "svc", "hello", "-o", "jsonpath={.spec.clusterIP}"]);
    let addr: SocketAddr = format!("{ip}:80").parse().unwrap();
    let body = support::wait::wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "the hello Service to answer",
        || w.http_get_from_node(addr),
    );
    assert!(body.starts_with("hello from hello-"), "{body:?}");
}
