//! `kubectl debug` on the kubelet, on the one-node cluster of `support::kubelet` (needs
//! root and containerd; see there): ephemeral containers added to a running pod through
//! `pods/ephemeralcontainers`, started once in its sandbox (in the target container's
//! PID namespace), attached to, logged, exec'd into, re-adopted by a restarted agent and
//! torn down with the pod; the node debugging pod.

use std::time::Duration;

use serde_json::Value;

mod support;
use support::kubelet::*;

/// How long kubectl debug may take to start a container and answer through the attach.
const ANSWER_WITHIN: Duration = Duration::from_secs(20);

/// The status of ephemeral container `name` in `pod`.
fn ephemeral_status(pod: &Value, name: &str) -> Value {
    pod["status"]["ephemeralContainerStatuses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|s| s["name"] == name)
        .cloned()
        .unwrap_or_default()
}

fn web_pod() -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: web
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"exec sleep 3600\"]
"
    )
}

/// `kubectl debug -it POD --target=app` with piped input: the debugger starts in the
/// pod's sandbox, sees the target's processes, answers through the attach, ends for
/// good (never restarted) and keeps its log; a second debugger is exec'd into, outlives
/// an agent restart untouched and goes with the pod.
#[test]
fn kubectl_debug_adds_ephemeral_containers_that_share_the_targets_processes() {
    let mut w = World::start();
    w.apply(&web_pod());
    w.remember("web");
    w.wait_running("web");
    let image = format!("--image={IMAGE}");

    w.step("kubectl debug -it --target: ps in the debugger shows the target's sleep");
    let debug = w.kubectl_cmd(&[
        "debug",
        "-it",
        "web",
        &image,
        "--image-pull-policy=IfNotPresent",
        "--target=app",
        "--container=debugger",
        "--",
        "sh",
    ]);
    let out = run_with_input(
        debug,
        "ps -o pid,args; echo \"on $(hostname)\"; exit 3\n",
        ANSWER_WITHIN,
    );
    assert!(
        out.contains("sleep 3600") && out.contains("on web"),
        "kubectl debug printed {out:?}\n{}",
        w.log()
    );

    w.step("the debugger ended for good, with its exit code, and keeps its log");
    w.wait_for("the debugger to be terminated", || {
        let pod = w.pod("web").unwrap_or_default();
        ephemeral_status(&pod, "debugger")["state"]["terminated"]["exitCode"] == 3
    });
    let pod = w.pod("web").unwrap();
    let status = ephemeral_status(&pod, "debugger");
    assert_eq!(status["state"]["terminated"]["reason"], "Error", "{status}");
    assert_eq!(status["restartCount"], 0, "{status}");
    assert_eq!(status["ready"], false, "{status}");
    assert_eq!(pod["status"]["phase"], "Running", "the pod runs on");
    assert_eq!(
        pod["spec"]["ephemeralContainers"][0]["targetContainerName"],
        "app"
    );
    let logs = w.kubectl_ok(&["logs", "web", "-c", "debugger"]);
    assert!(logs.contains("sleep 3600"), "{logs:?}");

    w.step("a second debugger runs on, and kubectl exec reaches it");
    w.kubectl_ok(&[
        "debug",
        "web",
        &image,
        "--image-pull-policy=IfNotPresent",
        "--container=sleeper",
        "--",
        "sleep",
        "3600",
    ]);
    w.wait_for("the sleeper to run", || {
        let pod = w.pod("web").unwrap_or_default();
        ephemeral_status(&pod, "sleeper")["state"]["running"].is_object()
    });
    let said = w.kubectl_ok(&["exec", "web", "-c", "sleeper", "--", "echo", "hi"]);
    assert_eq!(said, "hi\n");
    let before = ephemeral_status(&w.pod("web").unwrap(), "sleeper")["containerID"].clone();
    let debugger = ephemeral_status(&w.pod("web").unwrap(), "debugger")["containerID"].clone();

    w.step("a restarted agent adopts the ephemeral containers and restarts none");
    w.kill_server();
    w.spawn_server();
    w.wait_for("the restarted agent to report the pod again", || {
        w.kubectl_out(&[
            "get",
            "node",
            "kt-node",
            "-o",
            "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
        ]) == "True"
    });
    std::thread::sleep(Duration::from_secs(2));
    let pod = w.pod("web").unwrap();
    let sleeper = ephemeral_status(&pod, "sleeper");
    assert_eq!(sleeper["containerID"], before, "{sleeper}");
    assert!(sleeper["state"]["running"].is_object(), "{sleeper}");
    let ended = ephemeral_status(&pod, "debugger");
    assert_eq!(ended["containerID"], debugger, "not started again: {ended}");
    assert_eq!(ended["state"]["terminated"]["exitCode"], 3, "{ended}");

    w.step("the pod's deletion takes its ephemeral containers with it");
    let id = before
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    w.kubectl_ok(&["delete", "pod", "web", "--wait=true"]);
    assert!(!w.containers().contains(&id), "{}", w.containers());
}

/// `kubectl debug node/NAME`: a pod on the node with its root at /host, in the host's
/// PID and network namespaces.
#[test]
fn kubectl_debug_node_runs_a_pod_in_the_hosts_namespaces_with_its_root_at_host() {
    let w = World::start();
    let image = format!("--image={IMAGE}");
    let marker = w.data_dir().join("debug-marker");
    std::fs::write(&marker, "on the host\n").unwrap();
    let debug = w.kubectl_cmd(&[
        "debug",
        "node/kt-node",
        "-i",
        &image,
        "--image-pull-policy=IfNotPresent",
        "--profile=general",
        "--",
        "sh",
    ]);
    let script = format!(
        "cat /host{}; readlink /proc/self/ns/pid; exit\n",
        marker.display()
    );
    let out = run_with_input(debug, &script, ANSWER_WITHIN);
    let host_pid_ns = std::fs::read_link("/proc/self/ns/pid").unwrap();
    assert!(
        out.contains("on the host") && out.contains(&*host_pid_ns.to_string_lossy()),
        "kubectl debug node printed {out:?}\n{}",
        w.log()
    );
    let pods = w.kubectl_out(&["get", "pods", "-o", "name"]);
    assert!(pods.contains("node-debugger-kt-node-"), "{pods}");
    for pod in pods.lines() {
        w.remember(pod.trim_start_matches("pod/"));
    }
}

/// `kubectl debug --copy-to --share-processes`: a copy of the pod with a debugging
/// container, its containers in one PID namespace whose PID 1 is the pod's `orc pause`
/// holder; the namespace outlives an agent restart and goes with the pod.
#[test]
fn kubectl_debug_copy_to_shares_one_process_namespace_across_the_copy() {
    let mut w = World::start();
    w.apply(&web_pod());
    w.remember("web");
    w.wait_running("web");
    let image = format!("--image={IMAGE}");
    let debug = w.kubectl_cmd(&[
        "debug",
        "web",
        "-i",
        "--copy-to=web-copy",
        "--share-processes",
        &image,
        "--image-pull-policy=IfNotPresent",
        "--container=debugger",
        "--",
        "sh",
    ]);
    let out = run_with_input(debug, "ps -o pid,args; exit\n", ANSWER_WITHIN);
    w.remember("web-copy");
    let holder_is_pid_1 = out
        .lines()
        .any(|l| l.trim_start().starts_with("1 ") && l.contains("orc pause"));
    assert!(
        out.contains("sleep 3600") && holder_is_pid_1,
        "kubectl debug --copy-to printed {out:?}\n{}",
        w.log()
    );
    let copy = w.pod("web-copy").unwrap();
    assert_eq!(copy["spec"]["shareProcessNamespace"], true);
    let uid = copy["metadata"]["uid"].as_str().unwrap().to_string();
    let app = container_status(&copy)["containerID"].clone();

    w.step("the shared namespace outlives an agent restart");
    w.kill_server();
    w.spawn_server();
    w.wait_for("the holder to be seen from the app container again", || {
        w.kubectl_out(&["exec", "web-copy", "-c", "app", "--", "ps", "-o", "args"])
            .contains("orc pause")
    });
    assert_eq!(
        container_status(&w.pod("web-copy").unwrap())["containerID"],
        app
    );

    w.step("its holder goes with the pod");
    let holder = w.data_dir().join(format!("agent/podns/{uid}-pid.holder"));
    let pid = std::fs::read_to_string(&holder).unwrap();
    w.kubectl_ok(&["delete", "pod", "web-copy", "--wait=true"]);
    w.wait_for("the holder to end", || {
        !std::path::Path::new(&format!("/proc/{}", pid.trim())).exists()
    });
    assert!(!holder.exists());
}
