//! Jobs and CronJobs on the one-node cluster of `support::kubelet` (needs root and
//! containerd; see there), driven with the real kubectl: completions with parallelism,
//! the back-off limit, Indexed Jobs reading their index, `kubectl logs job/…`, deletion
//! with the pods, 422s for bad specs, and a CronJob firing, created from with
//! `kubectl create job --from` and pruned to its history limit.

use std::time::Duration;

use serde_json::Value;

mod support;
use support::kubelet::*;

/// Longest wait for a Job that runs a few short pods (the failing one backs off 10 s).
const JOB_DEADLINE: Duration = Duration::from_secs(90);
/// A `* * * * *` CronJob fires at the next minute boundary, then its Job runs.
const CRON_DEADLINE: Duration = Duration::from_secs(100);

fn job_yaml(name: &str, extra_spec: &str, restart: &str, command: &str) -> String {
    format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: {name}
spec:
{extra_spec}  template:
    spec:
      restartPolicy: {restart}
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        command: [\"sh\", \"-c\", {command:?}]
"
    )
}

fn json_of(w: &World, args: &[&str]) -> Value {
    serde_json::from_str(&w.kubectl_ok(args)).unwrap_or_default()
}

fn pods_of(w: &World, job: &str) -> Vec<Value> {
    let selector = format!("batch.kubernetes.io/job-name={job}");
    json_of(w, &["get", "pods", "-l", &selector, "-o", "json"])["items"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// A Job of three completions two at a time completes; one that always fails stops at
/// its back-off limit; an Indexed Job's pods see their index; bad specs are refused.
#[test]
fn jobs_complete_fail_at_the_backoff_limit_and_run_indexed_pods() {
    let mut w = World::start();

    w.step("bad Jobs and CronJobs are refused with 422 and field paths, nothing stored");
    let out = w
        .kubectl_cmd(&["create", "-f", "-"])
        .output_with_stdin(&job_yaml(
            "negative",
            "  completions: -1\n",
            "Never",
            "true",
        ));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("spec.completions: Invalid value: -1: must be greater than or equal to 0"),
        "{err}"
    );
    let out = w
        .kubectl_cmd(&["create", "-f", "-"])
        .output_with_stdin(&job_yaml("always", "", "Always", "true"));
    assert!(String::from_utf8_lossy(&out.stderr).contains(
        "spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""
    ));
    let out = w.kubectl(&[
        "create",
        "cronjob",
        "bad",
        "--image",
        IMAGE,
        "--schedule",
        "61 * * * *",
        "--",
        "true",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"),
        "{err}"
    );
    assert!(w
        .kubectl_out(&["get", "jobs,cronjobs", "-o", "name"])
        .is_empty());

    w.step("a Job of 3 completions, 2 at a time, completes");
    w.apply(&job_yaml(
        "three",
        "  completions: 3\n  parallelism: 2\n",
        "Never",
        "echo done on $(hostname)",
    ));
    w.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/three",
        "--timeout=90s",
    ]);
    let job = json_of(&w, &["get", "job", "three", "-o", "json"]);
    assert_eq!(job["status"]["succeeded"], 3);
    assert_eq!(
        job["status"]["uncountedTerminatedPods"],
        serde_json::json!({})
    );
    assert!(job["status"]["completionTime"].is_string());
    let pods = pods_of(&w, "three");
    assert_eq!(pods.len(), 3, "exactly one pod per completion");
    for pod in &pods {
        assert_eq!(pod["status"]["phase"], "Succeeded");
        assert!(
            pod["metadata"]["finalizers"].is_null(),
            "tracking finalizer removed: {pod}"
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["kind"], "Job");
    }
    let table = w.kubectl_ok(&["get", "jobs"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "STATUS", "COMPLETIONS", "DURATION", "AGE"]);
    let row = table.lines().find(|l| l.starts_with("three")).unwrap();
    assert!(row.contains("Complete") && row.contains("3/3"), "{table}");
    assert!(w
        .kubectl_ok(&["logs", "job/three"])
        .contains("done on three-"));

    w.step("a Job whose pods always fail stops at its backoff limit");
    w.apply(&job_yaml(
        "failing",
        "  backoffLimit: 1\n",
        "Never",
        "exit 3",
    ));
    w.kubectl_ok(&[
        "wait",
        "--for=condition=failed",
        "job/failing",
        "--timeout=90s",
    ]);
    let job = json_of(&w, &["get", "job", "failing", "-o", "json"]);
    assert_eq!(job["status"]["failed"], 2, "{job}");
    let failed = job["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Failed")
        .cloned()
        .unwrap();
    assert_eq!(failed["reason"], "BackoffLimitExceeded");
    assert_eq!(pods_of(&w, "failing").len(), 2);

    w.step("an Indexed Job's pods read JOB_COMPLETION_INDEX and have stable hostnames");
    w.apply(&job_yaml(
        "indexed",
        "  completions: 3\n  parallelism: 3\n  completionMode: Indexed\n",
        "Never",
        "echo index=$JOB_COMPLETION_INDEX host=$(hostname)",
    ));
    w.wait_for_within(JOB_DEADLINE, "the Indexed Job to complete", || {
        w.kubectl_out(&[
            "get",
            "job",
            "indexed",
            "-o",
            "jsonpath={.status.completedIndexes}",
        ]) == "0-2"
    });
    w.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/indexed",
        "--timeout=30s",
    ]);
    for pod in pods_of(&w, "indexed") {
        let name = pod["metadata"]["name"].as_str().unwrap();
        let index = pod["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(name.starts_with(&format!("indexed-{index}-")), "{name}");
        let logs = w.kubectl_ok(&["logs", name]);
        assert_eq!(logs.trim(), format!("index={index} host=indexed-{index}"));
    }

    w.step("a server restart in the middle of a Job counts every pod once");
    w.apply(&job_yaml(
        "steady",
        "  completions: 4\n  parallelism: 2\n",
        "Never",
        "sleep 1",
    ));
    w.wait_for("the first pod of job steady to succeed", || {
        pods_of(&w, "steady")
            .iter()
            .any(|p| p["status"]["phase"] == "Succeeded")
    });
    w.kill_server();
    w.spawn_server();
    w.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/steady",
        "--timeout=90s",
    ]);
    let job = json_of(&w, &["get", "job", "steady", "-o", "json"]);
    assert_eq!(job["status"]["succeeded"], 4, "{job}");
    assert_eq!(job["status"].get("failed"), None, "{job}");
    assert_eq!(pods_of(&w, "steady").len(), 4, "no pod was replaced twice");

    w.step("kubectl delete job removes the Job's pods");
    w.kubectl_ok(&["delete", "job", "three"]);
    w.wait_for("the pods of job three to go", || {
        pods_of(&w, "three").is_empty()
    });
}

/// A `* * * * *` CronJob fires at the next minute; a Job made from it with
/// `kubectl create job --from` runs too, and the successful history is pruned to one.
#[test]
fn cron_job_fires_and_keeps_its_history_limit() {
    let w = World::start();
    w.apply(&format!(
        "apiVersion: batch/v1
kind: CronJob
metadata:
  name: tick
spec:
  schedule: \"* * * * *\"
  successfulJobsHistoryLimit: 1
  jobTemplate:
    spec:
      template:
        spec:
          restartPolicy: OnFailure
          terminationGracePeriodSeconds: 1
          containers:
          - name: main
            image: {IMAGE}
            command: [\"sh\", \"-c\", \"echo tick\"]
"
    ));
    let table = w.kubectl_ok(&["get", "cronjobs"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "SCHEDULE", "TIMEZONE", "SUSPEND", "ACTIVE", "LAST", "SCHEDULE", "AGE"]
    );

    w.step("the CronJob creates a Job at the next minute, and it completes");
    let mut scheduled = String::new();
    w.wait_for_within(CRON_DEADLINE, "a Job of the CronJob to complete", || {
        let jobs = json_of(&w, &["get", "jobs", "-o", "json"]);
        let done = jobs["items"].as_array().into_iter().flatten().find(|j| {
            j["metadata"]["ownerReferences"][0]["name"] == "tick"
                && j["status"]["succeeded"] == 1
                && j["status"]["conditions"].to_string().contains("Complete")
        });
        if let Some(j) = done {
            scheduled = j["metadata"]["name"].as_str().unwrap_or("").to_string();
        }
        done.is_some()
    });
    let cron_job = json_of(&w, &["get", "cronjob", "tick", "-o", "json"]);
    let job = json_of(&w, &["get", "job", &scheduled, "-o", "json"]);
    let minutes: i64 = scheduled.trim_start_matches("tick-").parse().unwrap();
    let stamp = job["metadata"]["annotations"]["batch.kubernetes.io/cronjob-scheduled-timestamp"]
        .as_str()
        .unwrap();
    let at = chrono::DateTime::parse_from_rfc3339(stamp).unwrap();
    assert_eq!(
        at.timestamp(),
        minutes * 60,
        "named after the scheduled minute"
    );
    assert_eq!(cron_job["status"]["lastScheduleTime"], stamp);
    w.wait_for("lastSuccessfulTime to be set", || {
        !w.kubectl_out(&[
            "get",
            "cronjob",
            "tick",
            "-o",
            "jsonpath={.status.lastSuccessfulTime}",
        ])
        .is_empty()
    });

    w.step("kubectl create job --from=cronjob runs the template at once");
    // Suspended, the CronJob starts no newer Job that would make the one made by hand the
    // oldest finished one (and so the one its history limit prunes) before it is seen.
    w.kubectl_ok(&[
        "patch",
        "cronjob",
        "tick",
        "--type=merge",
        "-p",
        r#"{"spec": {"suspend": true}}"#,
    ]);
    // Start times have a resolution of one second and upstream breaks ties by name, so a
    // Job started in the same second as the scheduled one would sort before "tick-…" and
    // be the one pruned: start it in a later second.
    std::thread::sleep(std::time::Duration::from_millis(1100));
    w.kubectl_ok(&["create", "job", "by-hand", "--from=cronjob/tick"]);
    w.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/by-hand",
        "--timeout=60s",
    ]);

    w.step("only one successful Job is kept (successfulJobsHistoryLimit: 1)");
    w.wait_for("the older successful Job to be pruned", || {
        let jobs = json_of(&w, &["get", "jobs", "-o", "json"]);
        let finished: Vec<String> = jobs["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|j| j["status"]["conditions"].to_string().contains("Complete"))
            .map(|j| j["metadata"]["name"].as_str().unwrap_or("").to_string())
            .collect();
        finished == ["by-hand"]
    });
}

/// Runs a command with `input` on stdin.
trait WithStdin {
    fn output_with_stdin(&mut self, input: &str) -> std::process::Output;
}

impl WithStdin for std::process::Command {
    fn output_with_stdin(&mut self, input: &str) -> std::process::Output {
        use std::io::Write;
        let mut child = self
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("spawn");
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().expect("wait")
    }
}
