//! `kubectl exec` and `kubectl attach` through the API server to the kubelet, on the
//! one-node cluster of `support::kubelet` (needs root and containerd; see there).

use std::io::Write;
use std::process::{Child, Output, Stdio};
use std::time::{Duration, Instant};

mod support;
use support::kubelet::*;

/// A node running pod `two`, whose containers `shell` and `side` each wrote their name
/// to their own /tmp/who.
fn world_with_pod_two() -> World {
    let w = World::start();
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: shell
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo shell > /tmp/who; sleep 3600\"]
  - name: side
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo side > /tmp/who; sleep 3600\"]
"
    ));
    w.wait_running("two");
    w
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `kubectl exec` through the API server to the kubelet: stdout and stderr apart, the
/// exit code, the `-c` container, large output, and `kubectl cp` (tar both ways).
#[test]
fn exec_returns_output_and_exit_codes_of_the_chosen_container() {
    let w = world_with_pod_two();
    w.step("stdout and stderr apart, and the exit code becomes kubectl's");
    let out = w.kubectl(&[
        "exec",
        "two",
        "-c",
        "shell",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(text(&out.stdout), "out\n", "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("err\n"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 7"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("fallback") && !stderr.contains("SPDY"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(7));

    let ok = w.kubectl(&["exec", "two", "-c", "shell", "--", "echo", "ok"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "ok\n");

    w.step("-c picks the container (each has its own /tmp)");
    for name in ["shell", "side"] {
        let who = w.kubectl_out(&["exec", "two", "-c", name, "--", "cat", "/tmp/who"]);
        assert_eq!(who, name);
    }

    w.step("Output larger than the pipes in between arrives whole");
    let seq = w.kubectl(&["exec", "two", "-c", "shell", "--", "seq", "1", "30000"]);
    assert!(seq.status.success(), "{}", text(&seq.stderr));
    let lines: Vec<String> = text(&seq.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 30000);
    assert_eq!(lines.last().map(String::as_str), Some("30000"));

    w.step("kubectl cp streams tar through exec's stdin and stdout: binary data both ways");
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let local = w.dir.join("blob.in");
    std::fs::write(&local, &blob).unwrap();
    let to_pod = w.kubectl(&[
        "cp",
        "-c",
        "shell",
        local.to_str().unwrap(),
        "two:/tmp/blob",
    ]);
    assert!(to_pod.status.success(), "{}", text(&to_pod.stderr));
    let back = w.dir.join("blob.out");
    let from_pod = w.kubectl(&["cp", "-c", "shell", "two:/tmp/blob", back.to_str().unwrap()]);
    assert!(from_pod.status.success(), "{}", text(&from_pod.stderr));
    assert!(
        std::fs::read(&back).unwrap() == blob,
        "kubectl cp changed the data"
    );
}

/// `kubectl exec` with stdin and a tty, and how it ends: a background process that keeps
/// the output open does not hold kubectl, and a client that goes away takes its command
/// with it.
#[test]
fn exec_carries_stdin_and_a_tty_and_ends_with_its_client() {
    let w = world_with_pod_two();
    w.step("A background process that keeps the output open does not hold kubectl for good");
    let bg = w.kubectl(&[
        "exec",
        "two",
        "-c",
        "shell",
        "--",
        "sh",
        "-c",
        "sleep 60 & echo started; exit 3",
    ]);
    assert_eq!(text(&bg.stdout), "started\n");
    assert_eq!(bg.status.code(), Some(3), "{}", text(&bg.stderr));

    w.step("stdin reaches the command, and its end ends the command");
    let mut cat = w.kubectl_cmd(&["exec", "-i", "two", "-c", "shell", "--", "cat"]);
    let mut child = cat
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = wait_with_deadline(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    w.step(
        "With a tty (kubectl needs a terminal of its own to ask for one), sized as kubectl's terminal once its first resize arrived",
    );
    let mut script = w.in_netns("script");
    script
        .args(["-qec", TTY_EXEC, "/dev/null"])
        .env("KUBECONFIG", w.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = wait_with_deadline(script.spawn().unwrap());
    let tty_out = text(&out.stdout);
    assert!(
        tty_out.contains("/dev/pts/"),
        "{tty_out} {}",
        text(&out.stderr)
    );
    assert!(tty_out.contains("size 30 100\r\n"), "{tty_out}");

    w.step("A client that goes away takes its command with it");
    let mut sleeper = w
        .kubectl_cmd(&["exec", "two", "-c", "shell", "--", "sleep", "777"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = || {
        w.kubectl_out(&["exec", "two", "-c", "shell", "--", "ps"])
            .contains("sleep 777")
    };
    w.wait_for("the exec'd sleep to run", sleeping);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    w.wait_for("the exec'd sleep to be killed", || !sleeping());
}

/// Bad `kubectl exec` requests get clear errors, and only admins may exec.
#[test]
fn exec_refuses_bad_requests_and_non_admins() {
    let w = world_with_pod_two();
    w.step("Bad requests get clear errors");
    let missing = w.kubectl(&["exec", "two", "-c", "nope", "--", "true"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("container nope is not valid for pod two"),
        "{}",
        text(&missing.stderr)
    );
    let not_found = w.kubectl(&["exec", "ghost", "--", "true"]);
    assert!(
        text(&not_found.stderr).contains("not found"),
        "{}",
        text(&not_found.stderr)
    );
    w.step("Only admins (and so not a node's credential) may exec");
    let node_kubeconfig = w.data_dir().join("agent/kubelet.kubeconfig");
    let denied = w.kubectl(&[
        "--kubeconfig",
        node_kubeconfig.to_str().unwrap(),
        "exec",
        "two",
        "-c",
        "shell",
        "--",
        "true",
    ]);
    assert!(
        text(&denied.stderr)
            .contains("User \"system:node:kt-node\" cannot create resource \"pods/exec\""),
        "{}",
        text(&denied.stderr)
    );
    let not_there = w.kubectl(&["exec", "two", "-c", "shell", "--", "/no/such/binary"]);
    assert!(!not_there.status.success());
    let stderr = text(&not_there.stderr);
    assert!(
        stderr.contains("exec in container shell of pod two") && stderr.contains("/no/such/binary"),
        "{stderr}"
    );
}

/// `kubectl attach` follows a container's output from the moment it attached, on stdout
/// and stderr, and returns once the container has exited.
#[test]
fn attach_follows_a_container_until_it_exits() {
    let w = World::start();
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  nodeName: kt-node
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"i=0; until [ -e /tmp/stop ]; do i=$((i+1)); echo tick $i; echo tock $i >&2; sleep 0.2; done; echo bye\"]
"
    ));
    w.wait_running("ticker");
    let mut attach = w
        .kubectl_cmd(&["attach", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Attached once a tick arrives; then the container is told to finish.
    let mut stdout = std::io::BufReader::new(attach.stdout.take().unwrap());
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) > 0 {
            let _ = lines_tx.send(std::mem::take(&mut line));
        }
    });
    let first = lines
        .recv_timeout(DEADLINE)
        .expect("no output from kubectl attach");
    assert!(first.starts_with("tick "), "{first:?}");
    let stop = w.kubectl(&["exec", "ticker", "--", "touch", "/tmp/stop"]);
    assert!(stop.status.success());
    let out = wait_with_deadline(attach);
    reader.join().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(rest.last().map(String::as_str), Some("bye\n"), "{rest:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tock "), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}

/// `kubectl exec -it` in a 30x100 terminal: the command prints its tty and, once it is
/// sized (bounded wait), its size.
const TTY_EXEC: &str = "stty rows 30 cols 100; kubectl exec -it two -c shell -- sh -c '\
    tty; for i in $(seq 50); do s=$(stty size 2>&1); case $s in *[1-9]*) break;; esac; sleep 0.1; done; \
    echo size $s'";

/// Waits for a child's output, killing it if it takes longer than `DEADLINE`.
fn wait_with_deadline(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out; stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}
