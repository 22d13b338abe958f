//! Container log rotation on the kubelet's one-node cluster (`support::kubelet`; needs
//! root and containerd): a container printing quickly keeps at most max-size × max-files
//! of logs, `kubectl logs -f` follows it across rotations without losing a line,
//! `--tail` and `--previous` read across rotated files, and only the last dead
//! instance's logs are kept.

use std::io::Read;
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

mod support;
use support::kubelet::*;

const MAX_SIZE: u64 = 8 * 1024;
const MAX_FILES: usize = 4;
/// Lines the first instance prints, 50 every 0.1 s (about 100 KB of CRI records).
const LINES: usize = 2000;
/// Longest the whole printing and restarting may take.
const RESTARTS_DEADLINE: Duration = Duration::from_secs(90);

/// The log files of container `app` of pod `uid`, by name.
fn log_files(w: &World, uid: &str) -> Vec<(String, u64)> {
    let dir = w.data_dir().join(format!("agent/pods/{uid}/logs/app"));
    let mut files: Vec<(String, u64)> = std::fs::read_dir(&dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| {
            let len = e.metadata().map(|m| m.len()).unwrap_or(0);
            (e.file_name().to_string_lossy().into_owned(), len)
        })
        .collect();
    files.sort();
    files
}

fn instance_files(files: &[(String, u64)], instance: u32) -> Vec<&(String, u64)> {
    let prefix = format!("{instance}.log");
    files
        .iter()
        .filter(|(n, _)| n == &prefix || n.starts_with(&format!("{prefix}.")))
        .collect()
}

fn restart_count(w: &World) -> i64 {
    w.pod("chatty")
        .map(|p| container_status(&p)["restartCount"].as_i64().unwrap_or(0))
        .unwrap_or(0)
}

fn running(w: &World) -> bool {
    w.pod("chatty")
        .is_some_and(|p| container_status(&p)["state"]["running"].is_object())
}

#[test]
fn chatty_container_logs_rotate_while_kubectl_follows_and_previous_still_works() {
    let mut w = World::prepare(false);
    // Added to the World's defaults (node-pressure eviction off).
    w.server_args.extend(
        [
            "--container-log-max-size",
            "8Ki",
            "--container-log-max-files",
            &MAX_FILES.to_string(),
        ]
        .map(String::from),
    );
    w.spawn_server();
    // Instance 0 prints LINES lines and "done", then exits; instance 1 says so and exits
    // after a while; instance 2 stays.
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: chatty
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 1
  volumes: [{{name: scratch, emptyDir: {{}}}}]
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
    command:
    - sh
    - -c
    - |
      runs=$(cat /scratch/runs 2>/dev/null || echo 0)
      echo $((runs + 1)) > /scratch/runs
      if [ "$runs" -ge 2 ]; then echo "run $runs"; exec sleep 3600; fi
      if [ "$runs" -eq 1 ]; then echo "run 1"; sleep 8; exit 1; fi
      sleep 2
      i=0
      while [ $i -lt {LINES} ]; do
        j=0
        while [ $j -lt 50 ]; do echo "line $i"; i=$((i + 1)); j=$((j + 1)); done
        sleep 0.1
      done
      echo done
      sleep 1
      exit 1
"#
    ));
    w.step("the container runs and kubectl logs -f follows it from the start");
    w.wait_running("chatty");
    let uid = w.pod("chatty").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let mut follow = w
        .kubectl_cmd(&["logs", "-f", "chatty"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("kubectl logs -f");

    w.step("rotated files appear, within max-size x max-files");
    let mut most_files = 0;
    let mut most_bytes = 0;
    w.wait_for_within(RESTARTS_DEADLINE, "instance 0 to be done", || {
        let files = log_files(&w, &uid);
        let zero = instance_files(&files, 0);
        most_files = most_files.max(zero.len());
        most_bytes = most_bytes.max(zero.iter().map(|(_, l)| *l).sum::<u64>());
        for (name, len) in &zero {
            assert!(*len <= MAX_SIZE, "{name} holds {len} bytes, more than 8Ki");
        }
        restart_count(&w) >= 1
    });
    assert!(
        most_files == MAX_FILES,
        "expected {MAX_FILES} files of instance 0 at most and at some point, saw {most_files}"
    );
    assert!(
        most_bytes <= MAX_SIZE * MAX_FILES as u64,
        "{most_bytes} bytes"
    );

    w.step("kubectl logs -f saw every line, in order, across the rotations");
    let mut out = String::new();
    let mut stdout = follow.stdout.take().unwrap();
    let reader = std::thread::spawn(move || {
        let _ = stdout.read_to_string(&mut out);
        out
    });
    // The follow ends when the container restarts; bounded by the deadline below.
    let mut ended = false;
    for _ in 0..(DEADLINE.as_millis() / POLL_EVERY.as_millis()) {
        if follow.try_wait().unwrap().is_some() {
            ended = true;
            break;
        }
        std::thread::sleep(POLL_EVERY);
    }
    if !ended {
        let _ = follow.kill();
    }
    let _ = follow.wait();
    let out = reader.join().unwrap();
    assert!(
        ended,
        "kubectl logs -f did not end with the container: {out:.200}"
    );
    // It normally starts at line 0 (the container waits 2 s before printing); if kubectl
    // came late, at the oldest line kept. Either way it saw more lines than the files
    // ever hold at once (so it followed across rotations), none lost, none twice.
    let got: Vec<&str> = out.lines().collect();
    let first: usize = got
        .first()
        .and_then(|l| l.strip_prefix("line "))
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("-f showed {:.200}", out));
    let expected: Vec<String> = (first..LINES)
        .map(|i| format!("line {i}"))
        .chain(["done".to_string()])
        .collect();
    assert_eq!(
        got.len(),
        expected.len(),
        "lines seen by -f: first {:?} last {:?}",
        got.first(),
        got.last()
    );
    assert!(
        got.iter().zip(&expected).all(|(a, b)| a == b),
        "lines out of order or lost"
    );
    let most_kept_lines = (MAX_SIZE * MAX_FILES as u64 / 40) as usize;
    assert!(
        got.len() > most_kept_lines,
        "-f saw {} lines, no more than the files hold",
        got.len()
    );

    w.step("--previous and --tail read the last dead instance across its rotated files");
    w.wait_for_within(RESTARTS_DEADLINE, "instance 1 to run", || {
        restart_count(&w) == 1 && running(&w)
    });
    let previous = w.kubectl_ok(&["logs", "chatty", "--previous", "--tail", "3"]);
    assert_eq!(
        previous,
        format!("line {}\nline {}\ndone\n", LINES - 2, LINES - 1)
    );
    let whole_previous = w.kubectl_ok(&["logs", "chatty", "--previous"]);
    assert!(whole_previous.ends_with("done\n"));
    assert!(
        (whole_previous.len() as u64) <= MAX_SIZE * MAX_FILES as u64,
        "{} bytes",
        whole_previous.len()
    );
    let first_kept: usize = whole_previous
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("line "))
        .and_then(|n| n.parse().ok())
        .expect("the oldest kept line");
    assert!(first_kept > 0, "the oldest lines were rotated away");
    let kept: Vec<&str> = whole_previous.lines().collect();
    assert_eq!(
        kept.len(),
        LINES - first_kept + 1,
        "a gap in the kept lines"
    );

    w.step("once instance 2 runs, instance 0's logs are gone and instance 1's stay");
    w.wait_for_within(RESTARTS_DEADLINE, "instance 2 to run", || {
        restart_count(&w) == 2 && running(&w)
    });
    w.wait_for("instance 0's log files to be removed", || {
        instance_files(&log_files(&w, &uid), 0).is_empty()
    });
    let files = log_files(&w, &uid);
    assert!(!instance_files(&files, 1).is_empty(), "{files:?}");
    assert_eq!(w.kubectl_ok(&["logs", "chatty", "--previous"]), "run 1\n");
    assert_eq!(w.kubectl_ok(&["logs", "chatty"]), "run 2\n");

    w.step("the pod's logs go with the pod");
    w.kubectl_ok(&["delete", "pod", "chatty", "--wait=true", "--timeout=30s"]);
    let pod_dir = w.data_dir().join(format!("agent/pods/{uid}"));
    w.wait_for("the pod directory to be removed", || {
        !Path::new(&pod_dir).exists()
    });
}
