//! Pods on the kubelet, on the one-node cluster of `support::kubelet` (needs root and
//! containerd; see there): running, logs, namespaces, restarts and adoption, crash loops,
//! probes, the OOM killer, shared volumes, deadlines and deletion.

use std::process::{Command, Stdio};
use std::time::Duration;

use serde_json::Value;

mod support;
use support::host::run;
use support::kubelet::*;
use support::wait::assert_stays_for_every;

/// How long a restarted agent is watched for restarting a container it should adopt.
const READOPTED_WINDOW: Duration = Duration::from_secs(2);

/// A pod that runs, reports ready, logs, and is adopted across an agent restart, then is
/// deleted with everything the agent made for it.
#[test]
fn pod_runs_logs_survives_an_agent_restart_and_is_deleted() {
    let mut w = World::start();
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo hello; sleep 3600\"]
    readinessProbe:
      exec:
        command: [\"cat\", \"/etc/hostname\"]
      periodSeconds: 1
"
    ));

    w.step("Running, with an address from the node's podCIDR and a ready container");
    let mut hello = Value::Null;
    w.wait_for("pod hello to be Running", || {
        hello = w.pod("hello").unwrap_or_default();
        hello["status"]["phase"] == "Running" && container_status(&hello)["ready"] == true
    });
    let ip = hello["status"]["podIP"].as_str().unwrap_or("").to_string();
    assert!(
        ip.starts_with("10.199."),
        "pod IP {ip:?} is not from the podCIDR"
    );
    let cs = container_status(&hello);
    let id = cs["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    assert!(
        w.containers().contains(&id),
        "container {id} not in containerd"
    );
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    let ready = hello["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "{}", hello["status"]);

    w.step("Its output is in the CRI log file");
    let uid = hello["metadata"]["uid"].as_str().unwrap().to_string();
    w.uids.borrow_mut().push(uid.clone());
    let log = w
        .data_dir()
        .join(format!("agent/pods/{uid}/logs/app/0.log"));
    w.wait_for("hello in the container log", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("stdout F hello"))
    });

    w.step("kubectl logs reaches the kubelet through the API server");
    let logs = w.kubectl(&["logs", "hello"]);
    assert!(
        logs.status.success(),
        "kubectl logs: {}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello\n");

    w.step("-f keeps following until it is stopped");
    let inner = w.kubectl_cmd(&["logs", "-f", "hello"]);
    let mut follow = Command::new("timeout");
    follow
        .arg("2")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("KUBECONFIG", w.kubeconfig())
        .stdin(Stdio::null());
    let followed = run(&mut follow);
    assert_eq!(
        followed.status.code(),
        Some(124),
        "kubectl logs -f ended by itself"
    );
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "hello\n");

    w.step("The container is in the pod's network, IPC and UTS namespaces");
    let pid = w.task_pid(&id).expect("hello runs");
    for (ns, file) in [
        ("net", format!("agent/netns/{uid}")),
        ("ipc", format!("agent/podns/{uid}-ipc")),
        ("uts", format!("agent/podns/{uid}-uts")),
    ] {
        use std::os::unix::fs::MetadataExt;
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ino = std::fs::metadata(w.data_dir().join(&file)).unwrap().ino();
        assert_eq!(
            link.to_string_lossy(),
            format!("{ns}:[{ino}]"),
            "container not in the pod's {ns} namespace"
        );
    }

    w.step("An agent restart re-adopts the running container: same container, same start");
    let pid_before = w.task_pid(&id);
    w.kill_server();
    w.spawn_server();
    w.wait_for("the restarted agent to post status", || {
        w.log().matches("kubelet is running").count() >= 2
    });
    assert!(pid_before.is_some(), "container {id} has no running task");
    assert_stays_for_every(
        READOPTED_WINDOW,
        POLL_EVERY,
        "the restarted agent to keep container hello (same id, start time and task, no restart)",
        || {
            let again = container_status(&w.pod("hello").unwrap());
            let kept = again["containerID"] == cs["containerID"]
                && again["restartCount"] == 0
                && again["state"]["running"]["startedAt"] == cs["state"]["running"]["startedAt"]
                && w.task_pid(&id) == pid_before;
            kept.then_some(()).ok_or(again)
        },
    );

    w.step("Deleting stops and removes the container, then the pod");
    let deleted = w.kubectl(&["delete", "pod", "hello", "--timeout=20s"]);
    assert!(
        deleted.status.success(),
        "kubectl delete: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    w.wait_for("pod hello to be gone", || w.pod("hello").is_none());
    assert!(!w.containers().contains(&id), "container {id} left behind");
    assert!(!w.data_dir().join(format!("agent/pods/{uid}")).exists());
    assert!(!w.data_dir().join(format!("agent/netns/{uid}")).exists());
    assert!(!w.data_dir().join(format!("agent/podns/{uid}-ipc")).exists());
}

/// A container that keeps exiting backs off, keeps its previous log and exit code, and
/// the pod's events tell the story.
#[test]
fn crashing_container_backs_off_with_its_previous_log() {
    let w = World::start();
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  nodeName: kt-node
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo bye; exit 3\"]
"
    ));
    w.remember("crash");
    let mut crash = Value::Null;
    w.wait_for("pod crash to be in CrashLoopBackOff", || {
        crash = w.pod("crash").unwrap_or_default();
        let cs = container_status(&crash);
        cs["restartCount"].as_u64().unwrap_or(0) >= 1
            && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let previous = w.kubectl_out(&["logs", "crash", "--previous"]);
    assert_eq!(previous, "bye");
    let crash_cs = container_status(&crash);
    assert_eq!(
        crash_cs["lastState"]["terminated"]["exitCode"], 3,
        "{crash_cs}"
    );
    assert_eq!(crash["status"]["phase"], "Running");
    let events = w.kubectl_out(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    for reason in ["Pulled", "Created", "Started", "BackOff"] {
        assert!(events.contains(reason), "no {reason} event in {events}");
    }
}

/// `kubectl run` goes through the scheduler to this node.
#[test]
fn kubectl_run_is_scheduled_to_the_node() {
    let w = World::start();
    let ran = w.kubectl(&[
        "run",
        "scheduled",
        &format!("--image={IMAGE}"),
        "--image-pull-policy=IfNotPresent",
        "--",
        "sleep",
        "3600",
    ]);
    assert!(
        ran.status.success(),
        "kubectl run: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    w.wait_for("pod scheduled to be Running on kt-node", || {
        let p = w.pod("scheduled").unwrap_or_default();
        p["spec"]["nodeName"] == "kt-node" && p["status"]["phase"] == "Running"
    });
    w.remember("scheduled");
}

/// A pod's containers share its localhost and its emptyDir volume.
#[test]
fn pod_containers_share_localhost_and_volumes() {
    let w = World::start();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: pair
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo written-by-web > /shared/note && exec httpd -f -p 8080 -h /var/www"]
    volumeMounts:
    - name: shared
      mountPath: /shared
  - name: client
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "until [ -s /data/note ]; do sleep 0.2; done; cat /data/note; until wget -qO- http://localhost:8080/; do sleep 0.2; done; exec sleep 3600"]
    volumeMounts:
    - name: shared
      mountPath: /data
  volumes:
  - name: shared
    emptyDir: {{}}
"#
    ));
    w.remember("pair");
    let mut logs = String::new();
    w.wait_for("client to read the note and the page", || {
        logs = w.kubectl_out(&["logs", "pair", "-c", "client"]);
        logs.contains("hello from orc busybox")
    });
    assert_eq!(logs, "written-by-web\nhello from orc busybox", "{logs}");
}

/// A container over its memory limit is OOM-killed and restarted; the kill is its lastState.
#[test]
fn container_over_its_memory_limit_is_oom_killed() {
    let w = World::start();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["tail", "/dev/zero"]
    resources:
      limits:
        memory: 16Mi
"#
    ));
    w.remember("hog");
    let mut hog = Value::Null;
    w.wait_for("hog to be OOM-killed", || {
        hog = w.pod("hog").unwrap_or_default();
        container_status(&hog)["lastState"]["terminated"]["reason"] == "OOMKilled"
    });
    let last = &container_status(&hog)["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");
}

/// A failing liveness probe restarts the container, with Unhealthy and Killing events.
#[test]
fn failing_liveness_probe_restarts_the_container() {
    let w = World::start();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: sick
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec:
        command: ["cat", "/tmp/healthy"]
      periodSeconds: 1
      failureThreshold: 1
"#
    ));
    w.remember("sick");
    w.wait_for("sick to be restarted by its liveness probe", || {
        let sick = w.pod("sick").unwrap_or_default();
        container_status(&sick)["restartCount"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    let events = w.pod_events("sick");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(r, m)| r == "Killing"
            && m == "Container app failed liveness probe, will be restarted"),
        "{events:?}"
    );
}

/// A pod past its activeDeadlineSeconds is stopped and Failed with DeadlineExceeded.
#[test]
fn pod_past_its_active_deadline_fails() {
    let w = World::start();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: brief
spec:
  nodeName: kt-node
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#
    ));
    w.remember("brief");
    let mut brief = Value::Null;
    w.wait_for("brief to fail past its deadline", || {
        brief = w.pod("brief").unwrap_or_default();
        brief["status"]["phase"] == "Failed"
    });
    assert_eq!(
        brief["status"]["reason"], "DeadlineExceeded",
        "{}",
        brief["status"]
    );
    assert_eq!(
        brief["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    let cs = container_status(&brief);
    assert!(cs["state"]["terminated"].is_object(), "{cs}");
    let id = cs["containerID"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("containerd://")
        .to_string();
    assert!(w.task_pid(&id).is_none(), "brief's container still runs");
}

/// A running container without probes leaves its worker quiet (no polling; the next
/// resync is a minute away): its exit comes from containerd's event stream, and the
/// container is restarted well within the test's deadline, which is shorter than that
/// resync.
#[test]
fn exit_of_a_quiet_container_is_seen_from_the_runtime_event() {
    assert!(DEADLINE < orc::agent::kubelet::worker::QUIET_RESYNC);
    let w = World::start();
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: quiet
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sleep\", \"4\"]
"
    ));
    w.remember("quiet");
    w.wait_for("pod quiet to be Running", || {
        w.pod("quiet").unwrap_or_default()["status"]["phase"] == "Running"
    });
    let mut quiet = Value::Null;
    w.wait_for("the quiet container to be restarted after its exit", || {
        quiet = w.pod("quiet").unwrap_or_default();
        container_status(&quiet)["restartCount"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    let last = &container_status(&quiet)["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 0, "{last}");
    assert_eq!(last["reason"], "Completed", "{last}");
}

/// The parent of process `pid` (the shim, for a container's main process).
fn parent_pid(pid: &str) -> String {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // pid (comm) state ppid …; comm may hold spaces, so count from its ')'.
    let rest = stat.rfind(')').map(|i| &stat[i + 2..]).unwrap_or("");
    rest.split(' ').nth(1).unwrap_or("").to_string()
}

/// The containerd id of a pod's (first) container.
fn container_id(w: &World, pod: &str) -> String {
    let pod = w.pod(pod).unwrap_or_default();
    container_status(&pod)["containerID"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("containerd://")
        .to_string()
}

/// With `--shim-group-size 2`, two pods' containers share one containerd shim: deleting
/// the first pod leaves the second running (logs, exec) in that shim; the shim's death
/// ends the second pod's container, which is restarted (lastState: exit code 255).
#[test]
fn pods_sharing_a_shim_outlive_each_other_and_restart_when_it_dies() {
    let mut w = World::prepare(false);
    w.server_args
        .extend(["--shim-group-size", "2", "--shim-group-spread", "1"].map(String::from));
    w.spawn_server();
    for name in ["first", "second"] {
        w.apply(&format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"while true; do echo tick; sleep 0.2; done\"]
"
        ));
        w.remember(name);
        w.wait_running(name);
    }
    w.step("both pods' containers run in one shim");
    let pids: Vec<String> = ["first", "second"]
        .iter()
        .map(|p| w.task_pid(&container_id(&w, p)).expect("task runs"))
        .collect();
    let shim = parent_pid(&pids[0]);
    assert!(!shim.is_empty());
    assert_eq!(parent_pid(&pids[1]), shim, "pids {pids:?}");

    w.step("the first pod goes; the second runs on in the shared shim");
    w.kubectl_ok(&["delete", "pod", "first", "--wait=true"]);
    let second = container_id(&w, "second");
    assert_eq!(w.task_pid(&second).as_deref(), Some(pids[1].as_str()));
    let logs = w.kubectl_out(&["logs", "second", "--tail=1"]);
    assert_eq!(logs, "tick");
    let said = w.kubectl_out(&["exec", "second", "--", "echo", "still here"]);
    assert_eq!(said, "still here");

    w.step("the shim dies: the second pod's container is restarted");
    let killed = run(Command::new("kill").args(["-9", &shim]));
    assert!(killed.status.success(), "{killed:?}");
    w.wait_for(
        "the second pod's container restarted after the shim's death",
        || {
            let pod = w.pod("second").unwrap_or_default();
            let cs = container_status(&pod);
            cs["restartCount"].as_u64().unwrap_or(0) >= 1
                && cs["lastState"]["terminated"]["exitCode"] == 255
                && cs["state"]["running"].is_object()
        },
    );
    let restarted = w.task_pid(&container_id(&w, "second")).expect("task runs");
    assert_ne!(parent_pid(&restarted), shim);
    let logs = w.kubectl_out(&["logs", "second", "--previous", "--tail=1"]);
    assert_eq!(logs, "tick");
}

/// Which OCI runtime holds container `id`: `crun` and `runc` each answer `state` only
/// for containers they made (crun keeps a `status` file, runc a `state.json`, in the
/// root containerd's runc shim gives both: `/run/containerd/runc/<namespace>`).
fn runtime_of(id: &str) -> Option<&'static str> {
    let root = format!("/run/containerd/runc/{NAMESPACE}");
    ["crun", "runc"].into_iter().find(|bin| {
        run(Command::new(bin).args(["--root", &root, "state", id]))
            .status
            .success()
    })
}

fn runtime_class_pod(name: &str, class: Option<&str>) -> String {
    let class = class
        .map(|c| format!("  runtimeClassName: {c}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{class}  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo up; sleep 3600\"]
"
    )
}

/// RuntimeClasses pick the runtime, as on k3s: the server's `crun` RuntimeClass runs a
/// pod's containers with crun (the agent found it), pods without a class run on runc; a
/// handler the node lacks leaves the pod in ContainerCreating with upstream's
/// FailedCreatePodSandBox event; `--default-runtime crun` moves classless pods to crun
/// while the ones already running stay on runc across the agent's restart.
#[test]
fn runtime_classes_pick_the_runtime_their_handler_names() {
    let mut w = World::start();
    w.step("the server made k3s's RuntimeClasses; the node reports its handlers");
    w.wait_for("the crun RuntimeClass", || {
        w.kubectl_out(&["get", "runtimeclass", "crun", "-o", "jsonpath={.handler}"]) == "crun"
    });
    let handlers = w.kubectl_out(&[
        "get",
        "node",
        "kt-node",
        "-o",
        "jsonpath={.status.runtimeHandlers[*].name}",
    ]);
    assert_eq!(handlers, "crun runc");

    w.step("a pod of class crun runs on crun, one without a class on runc");
    for (name, class) in [("on-crun", Some("crun")), ("on-runc", None)] {
        w.apply(&runtime_class_pod(name, class));
        w.remember(name);
        w.wait_running(name);
    }
    let on_crun = container_id(&w, "on-crun");
    let on_runc = container_id(&w, "on-runc");
    assert_eq!(runtime_of(&on_crun), Some("crun"), "{}", w.log());
    assert_eq!(runtime_of(&on_runc), Some("runc"));
    assert_eq!(w.kubectl_out(&["logs", "on-crun"]), "up");
    assert_eq!(
        w.kubectl_out(&["exec", "on-crun", "--", "echo", "in crun"]),
        "in crun"
    );

    w.step("a handler the node lacks: the sandbox is not made, as upstream says");
    w.apply(
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: kata}\nhandler: kata\n",
    );
    w.apply(&runtime_class_pod("on-kata", Some("kata")));
    w.remember("on-kata");
    let wanted = "Failed to create pod sandbox: failed to get sandbox runtime: no runtime for \"kata\" is configured";
    w.wait_for("the FailedCreatePodSandBox event", || {
        w.pod_events("on-kata")
            .iter()
            .any(|(reason, message)| reason == "FailedCreatePodSandBox" && message == wanted)
    });
    let waiting = &container_status(&w.pod("on-kata").unwrap())["state"]["waiting"];
    assert_eq!(waiting["reason"], "ContainerCreating", "{waiting}");
    w.kubectl_ok(&["delete", "pod", "on-kata", "--wait=true"]);

    w.step("--default-runtime crun: new classless pods run on crun, running ones stay");
    w.kill_server();
    w.server_args
        .extend(["--default-runtime", "crun"].map(String::from));
    w.spawn_server();
    w.apply(&runtime_class_pod("later", None));
    w.remember("later");
    w.wait_running("later");
    assert_eq!(runtime_of(&container_id(&w, "later")), Some("crun"));
    assert_eq!(
        container_id(&w, "on-runc"),
        on_runc,
        "re-adopted, not remade"
    );
    assert_eq!(runtime_of(&on_runc), Some("runc"));
    assert_eq!(runtime_of(&on_crun), Some("crun"));
}

/// A pod whose container has stdin open (and a terminal with `tty`), running
/// `command` (a YAML list).
fn stdin_pod(name: &str, tty: bool, command: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    stdin: true
    tty: {tty}
    command: {command}
"
    )
}

/// `kubectl run -i --rm` as users run one-off commands: the piped input reaches the
/// container's stdin (`stdinOnce`: EOF when kubectl's input ends), the output comes
/// back and the pod is deleted; `kubectl attach -i` to a container whose stdin stays
/// open feeds it across attaches without ending its input.
#[test]
fn kubectl_run_and_attach_carry_stdin_to_the_container() {
    let w = World::start();
    w.step("kubectl run -i --rm: input in, output out, pod gone");
    let image = format!("--image={IMAGE}");
    let run = w.kubectl_cmd(&[
        "run",
        "once",
        "-i",
        "--rm",
        "--restart=Never",
        &image,
        "--image-pull-policy=IfNotPresent",
        "--",
        "sh",
        "-c",
        "while read line; do echo \"got $line\"; done; echo done",
    ]);
    let out = run_with_input(run, "hello\nworld\n", DEADLINE);
    assert!(
        out.contains("got hello\ngot world\ndone"),
        "kubectl run printed {out:?}\n{}",
        w.log()
    );
    w.wait_for("the pod to be deleted", || w.pod("once").is_none());

    w.step("kubectl attach -i twice to a container whose stdin stays open");
    w.apply(&stdin_pod(
        "open",
        false,
        r#"["sh", "-c", "while read line; do echo \"got $line\"; done; echo eof"]"#,
    ));
    w.remember("open");
    w.wait_running("open");
    for word in ["one", "two"] {
        let attach = w.kubectl_cmd(&["attach", "-i", "open"]);
        // kubectl attach stays until the container ends: it is stopped once the
        // container has answered.
        let _ = run_with_input(attach, &format!("{word}\n"), Duration::from_secs(3));
        w.wait_for("the container to read the attach's input", || {
            w.kubectl_out(&["logs", "open"])
                .contains(&format!("got {word}"))
        });
    }
    let logs = w.kubectl_out(&["logs", "open"]);
    assert!(!logs.contains("eof"), "stdin stayed open: {logs:?}");
    assert!(container_status(&w.pod("open").unwrap())["state"]["running"].is_object());

    w.step("a shell on a terminal (stdin + tty) runs what an attach types");
    w.apply(&stdin_pod("shell", true, r#"["sh"]"#));
    w.remember("shell");
    w.wait_running("shell");
    let attach = w.kubectl_cmd(&["attach", "-i", "shell"]);
    let _ = run_with_input(attach, "echo \"$TERM on $(tty)\"\n", Duration::from_secs(3));
    w.wait_for("the shell to run the typed command", || {
        w.kubectl_out(&["logs", "shell"])
            .contains("xterm on /dev/pts/0")
    });
}
