//! The Job controller's decisions on plain values, and a Job run end to end against the
//! in-process registry with pods finished by hand.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::tracking::*;
use super::*;
use crate::store::make_kv;

fn now() -> DateTime<Utc> {
    DateTime::parse_from_rfc3339("2024-05-01T10:00:00Z")
        .unwrap()
        .with_timezone(&Utc)
}

fn job(spec: Value) -> Value {
    let mut spec_full = json!({
        "parallelism": 2, "completions": 3, "backoffLimit": 6, "completionMode": "NonIndexed",
        "suspend": false, "podReplacementPolicy": "TerminatingOrFailed",
        "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "j1"}},
        "template": {"metadata": {"labels": {"batch.kubernetes.io/controller-uid": "j1"}},
                     "spec": {"restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}},
    });
    for (k, v) in spec.as_object().unwrap() {
        spec_full[k] = v.clone();
    }
    json!({"apiVersion": "batch/v1", "kind": "Job",
           "metadata": {"name": "work", "namespace": "default", "uid": "j1"},
           "spec": spec_full, "status": {"startTime": "2024-05-01T09:59:00Z"}})
}

fn pod(name: &str, phase: &str, index: Option<i64>, tracked: bool) -> KeyValue {
    let mut p = json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                                    "ownerReferences": [{"kind": "Job", "apiVersion": "batch/v1", "name": "work", "uid": "j1", "controller": true}]},
                       "status": {"phase": phase}});
    if tracked {
        p["metadata"]["finalizers"] = json!([TRACKING_FINALIZER]);
    }
    if let Some(ix) = index {
        p["metadata"]["annotations"] = json!({COMPLETION_INDEX: ix.to_string()});
    }
    make_kv(name, p, 1, 1)
}

fn exit_code(kv: KeyValue, code: i64) -> KeyValue {
    let mut p = (*kv.value).clone();
    p["status"]["containerStatuses"] = json!([{"name": "main", "restartCount": 0,
        "state": {"terminated": {"exitCode": code, "finishedAt": "2024-05-01T09:59:50Z"}}}]);
    kv.with_value(p)
}

fn names(pods: &[KeyValue]) -> Vec<&str> {
    pods.iter().map(|p| object::name(&p.value)).collect()
}

#[test]
fn a_new_job_starts_parallelism_pods() {
    let mut j = job(json!({}));
    j["status"] = json!({});
    let plan = plan(&j, &[], &mut BackoffRecord::default(), now());
    assert_eq!(plan.create, vec![None, None]);
    assert_eq!(plan.status["startTime"], "2024-05-01T10:00:00Z");
    assert_eq!(plan.status["active"], Value::Null);
    assert_eq!(plan.status["uncountedTerminatedPods"], json!({}));
}

#[test]
fn finished_pods_are_recorded_before_their_finalizers_go_and_counted_after() {
    let j = job(json!({}));
    let pods = [
        pod("a", "Succeeded", None, true),
        pod("b", "Running", None, true),
    ];
    let first = plan(&j, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(
        first.status["uncountedTerminatedPods"],
        json!({"succeeded": ["uid-a"]})
    );
    assert_eq!(first.status["succeeded"], Value::Null, "not counted yet");
    assert_eq!(names(&first.remove_finalizers), ["a"]);
    // One more pod keeps two running for the two completions left.
    assert_eq!(first.create, vec![None]);

    // Same pods, status written: the finalizer is still there, nothing is counted twice.
    let mut j2 = j.clone();
    j2["status"] = first.status.clone();
    let again = plan(&j2, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(
        again.status["uncountedTerminatedPods"],
        json!({"succeeded": ["uid-a"]})
    );
    assert_eq!(names(&again.remove_finalizers), ["a"]);

    // The finalizer is gone: the uid moves into the counter, exactly once.
    let pods = [
        pod("a", "Succeeded", None, false),
        pod("b", "Running", None, true),
    ];
    let counted = plan(&j2, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(counted.status["succeeded"], 1);
    assert_eq!(counted.status["uncountedTerminatedPods"], json!({}));
    assert!(counted.remove_finalizers.is_empty());
    let mut j3 = j2.clone();
    j3["status"] = counted.status.clone();
    let later = plan(&j3, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(
        later.status["succeeded"], 1,
        "a pod without the finalizer is never recounted"
    );
}

#[test]
fn a_job_completes_after_all_pods_are_counted() {
    let mut j = job(json!({}));
    j["status"]["succeeded"] = json!(2);
    let pods = [pod("c", "Succeeded", None, true)];
    let p1 = plan(&j, &pods, &mut BackoffRecord::default(), now());
    let conditions = p1.status["conditions"].as_array().unwrap();
    assert_eq!(conditions.len(), 1);
    assert_eq!(conditions[0]["type"], "SuccessCriteriaMet");
    assert_eq!(conditions[0]["reason"], "CompletionsReached");
    j["status"] = p1.status;
    let pods = [pod("c", "Succeeded", None, false)];
    let p2 = plan(&j, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(p2.status["succeeded"], 3);
    let types: Vec<&Value> = p2.status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| &c["type"])
        .collect();
    assert_eq!(types, ["SuccessCriteriaMet", "Complete"]);
    assert_eq!(p2.status["completionTime"], "2024-05-01T10:00:00Z");
    assert!(p2.events.iter().any(|e| e.reason == "Completed"));
    assert!(p2.create.is_empty());
}

#[test]
fn failures_beyond_the_backoff_limit_fail_the_job() {
    let mut j = job(json!({"backoffLimit": 1, "parallelism": 1, "completions": 1}));
    j["status"]["failed"] = json!(1);
    let pods = [exit_code(pod("x", "Failed", None, true), 1)];
    let p = plan(&j, &pods, &mut BackoffRecord::default(), now());
    let c = &p.status["conditions"][0];
    assert_eq!(
        (c["type"].as_str(), c["reason"].as_str()),
        (Some("FailureTarget"), Some("BackoffLimitExceeded"))
    );
    assert_eq!(c["message"], "Job has reached the specified backoff limit");
    assert!(p.create.is_empty());
    j["status"] = p.status;
    let pods = [exit_code(pod("x", "Failed", None, false), 1)];
    let p = plan(&j, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(p.status["failed"], 2);
    assert_eq!(p.status["conditions"][1]["type"], "Failed");
    assert_eq!(p.status["conditions"][1]["reason"], "BackoffLimitExceeded");
}

#[test]
fn failed_pods_are_replaced_after_an_exponential_backoff() {
    assert_eq!(backoff_delay(0), Duration::ZERO);
    assert_eq!(backoff_delay(1), Duration::from_secs(10));
    assert_eq!(backoff_delay(2), Duration::from_secs(20));
    assert_eq!(backoff_delay(4), Duration::from_secs(80));
    assert_eq!(backoff_delay(10), MAX_POD_FAILURE_BACKOFF);
    assert_eq!(backoff_delay(200), MAX_POD_FAILURE_BACKOFF);

    let j = job(json!({"parallelism": 1, "completions": 1}));
    let mut record = BackoffRecord::default();
    let pods = [exit_code(pod("x", "Failed", None, true), 1)];
    // The pod finished at 09:59:50; ten seconds later is 10:00:00 = now: no wait left.
    let p = plan(&j, &pods, &mut record, now() - chrono::Duration::seconds(5));
    assert_eq!(record.failures_after_last_success, 1);
    assert!(p.create.is_empty(), "still backing off");
    assert_eq!(p.requeue_after, Some(Duration::from_secs(5)));
    let mut j2 = j.clone();
    j2["status"] = p.status;
    let p = plan(&j2, &pods, &mut record, now());
    assert_eq!(p.create, vec![None]);
}

#[test]
fn an_active_deadline_fails_the_job_and_stops_its_pods() {
    let j = job(json!({"activeDeadlineSeconds": 30}));
    let pods = [pod("a", "Running", None, true)];
    let p = plan(&j, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(p.status["conditions"][0]["reason"], "DeadlineExceeded");
    assert_eq!(p.delete.len(), 1);
    assert!(
        !p.delete[0].uncounted,
        "pods of a failing job count as failed"
    );
    let early = plan(
        &j,
        &pods,
        &mut BackoffRecord::default(),
        now() - chrono::Duration::seconds(40),
    );
    assert!(early.status.get("conditions").is_none());
    assert_eq!(early.requeue_after, Some(Duration::from_secs(10)));
}

#[test]
fn indexed_jobs_run_each_pending_index_once() {
    let j = job(json!({"completionMode": "Indexed", "completions": 5, "parallelism": 3}));
    let pods = [
        pod("i0", "Succeeded", Some(0), true),
        pod("i1", "Running", Some(1), true),
        pod("i1b", "Running", Some(1), true),
        pod("i9", "Running", Some(9), true),
    ];
    let p = plan(&j, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(p.status["completedIndexes"], "0");
    assert_eq!(p.status["succeeded"], 1);
    let mut deleted: Vec<&str> = p
        .delete
        .iter()
        .map(|d| object::name(&d.pod.value))
        .collect();
    deleted.sort();
    assert_eq!(
        deleted,
        ["i1b", "i9"],
        "a duplicate and an out-of-range index"
    );
    assert_eq!(p.create, vec![Some(2), Some(3)]);
    assert_eq!(
        parse_indexes("1,3-5,7"),
        [1, 3, 4, 5, 7].into_iter().collect()
    );
    assert_eq!(
        format_indexes(&[0, 1, 2, 4, 6, 7].into_iter().collect()),
        "0-2,4,6-7"
    );
}

#[test]
fn indexed_pods_carry_their_index_everywhere() {
    let j = job(json!({"completionMode": "Indexed", "completions": 3}));
    let p = job_pod(&j, Some(2), None);
    assert_eq!(p["metadata"]["generateName"], "work-2-");
    assert_eq!(p["metadata"]["annotations"][COMPLETION_INDEX], "2");
    assert_eq!(p["metadata"]["labels"][COMPLETION_INDEX], "2");
    assert_eq!(p["metadata"]["finalizers"], json!([TRACKING_FINALIZER]));
    assert_eq!(p["spec"]["hostname"], "work-2");
    assert_eq!(
        p["spec"]["containers"][0]["env"],
        json!([{"name": "JOB_COMPLETION_INDEX", "valueFrom": {"fieldRef": {"apiVersion": "v1",
            "fieldPath": "metadata.annotations['batch.kubernetes.io/job-completion-index']"}}}])
    );
    assert_eq!(p["metadata"]["ownerReferences"][0]["controller"], true);
}

#[test]
fn pod_failure_policy_rules_decide_per_exit_code() {
    let policy = json!({"rules": [
        {"action": "Ignore", "onPodConditions": [{"type": "DisruptionTarget", "status": "True"}]},
        {"action": "FailJob", "onExitCodes": {"containerName": "main", "operator": "In", "values": [42]}},
        {"action": "Count", "onExitCodes": {"operator": "NotIn", "values": [42]}},
    ]});
    let failed = exit_code(pod("x", "Failed", None, true), 42);
    assert_eq!(
        match_pod_failure_policy(&policy, &failed.value),
        FailureAction::FailJob("Container main for pod default/x failed with exit code 42 matching FailJob rule at index 1".into())
    );
    let other = exit_code(pod("y", "Failed", None, true), 3);
    assert_eq!(
        match_pod_failure_policy(&policy, &other.value),
        FailureAction::Count
    );
    let mut disrupted = (*other.value).clone();
    disrupted["status"]["conditions"] = json!([{"type": "DisruptionTarget", "status": "True"}]);
    assert_eq!(
        match_pod_failure_policy(&policy, &disrupted),
        FailureAction::Ignore
    );

    let j = job(json!({"podFailurePolicy": policy, "podReplacementPolicy": "Failed"}));
    let p = plan(&j, &[failed], &mut BackoffRecord::default(), now());
    assert_eq!(p.status["conditions"][0]["type"], "FailureTarget");
    assert_eq!(p.status["conditions"][0]["reason"], "PodFailurePolicy");

    let ignored = make_kv("z", disrupted, 1, 1);
    let p = plan(&j, &[ignored], &mut BackoffRecord::default(), now());
    assert_eq!(
        p.status["uncountedTerminatedPods"],
        json!({}),
        "an ignored failure is not counted"
    );
    assert_eq!(p.remove_finalizers.len(), 1);
    assert_eq!(p.create.len(), 2);
}

#[test]
fn fail_index_marks_the_index_failed_without_retrying_it() {
    let policy = json!({"rules": [{"action": "FailIndex", "onExitCodes": {"operator": "In", "values": [7]}}]});
    let j = job(
        json!({"completionMode": "Indexed", "completions": 2, "parallelism": 2,
                       "backoffLimitPerIndex": 1, "backoffLimit": 2147483647,
                       "podFailurePolicy": policy, "podReplacementPolicy": "Failed"}),
    );
    let pods = [
        exit_code(pod("i0", "Failed", Some(0), true), 7),
        pod("i1", "Succeeded", Some(1), true),
    ];
    let p = plan(&j, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(p.status["failedIndexes"], "0");
    assert_eq!(p.status["completedIndexes"], "1");
    assert_eq!(p.status["conditions"][0]["reason"], "FailedIndexes");
    assert!(p.create.is_empty());
}

#[test]
fn suspending_stops_pods_without_counting_them_and_resuming_restarts_the_clock() {
    let j = job(json!({"suspend": true}));
    let pods = [pod("a", "Running", None, true)];
    let p = plan(&j, &pods, &mut BackoffRecord::default(), now());
    assert_eq!(p.status["conditions"][0]["type"], "Suspended");
    assert_eq!(p.status["conditions"][0]["status"], "True");
    assert!(p.delete[0].uncounted);
    assert!(p.create.is_empty());
    let mut resumed = job(json!({}));
    resumed["status"] = p.status;
    let later = now() + chrono::Duration::seconds(60);
    let p = plan(&resumed, &[], &mut BackoffRecord::default(), later);
    assert_eq!(p.status["conditions"][0]["status"], "False");
    assert_eq!(p.status["conditions"][0]["reason"], "JobResumed");
    assert_eq!(p.status["startTime"], "2024-05-01T10:01:00Z");
    assert_eq!(p.create.len(), 2);
}

mod live {
    //! The controller against the in-process registry; pods are finished by writing
    //! their status, as a kubelet would.
    use super::*;
    use crate::controllers::clock::TokioClock;
    use crate::controllers::testutil;
    use crate::controllers::Client;

    async fn set_phase(client: &dyn Client, pod: &Value, phase: &str) {
        let mut body = pod.clone();
        body["status"]["phase"] = json!(phase);
        client
            .update_status(pods_def(), Some("default"), object::name(pod), body)
            .await
            .unwrap();
    }

    fn job_status(client: &dyn Client) -> Value {
        (*client
            .get(jobs_def(), Some("default"), "work")
            .unwrap()
            .value)["status"]
            .clone()
    }

    fn job_body(extra: Value) -> Value {
        let mut body = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "work", "namespace": "default"},
            "spec": {"completions": 1, "parallelism": 1, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}});
        for (k, v) in extra.as_object().unwrap() {
            body["spec"][k] = v.clone();
        }
        body
    }

    fn pods(client: &dyn Client) -> Vec<KeyValue> {
        client.list(pods_def(), Some("default"), &|_| true)
    }

    #[tokio::test(start_paused = true)]
    async fn a_suspended_job_starts_no_pods_until_resumed() {
        let registry = testutil::registry().await;
        let client: Arc<dyn Client> = registry.clone();
        let task = tokio::spawn(run(client.clone(), Arc::new(TokioClock::new())));
        let body = job_body(json!({"suspend": true}));
        client
            .create(jobs_def(), Some("default"), body)
            .await
            .unwrap();
        testutil::wait_for("the Suspended condition", Duration::from_secs(10), || {
            job_status(&*client)["conditions"][0]["type"] == "Suspended"
        })
        .await;
        assert!(pods(&*client).is_empty());
        assert!(job_status(&*client)["startTime"].is_null());
        client
            .patch(
                jobs_def(),
                Some("default"),
                "work",
                crate::api::patch::PatchType::Merge,
                br#"{"spec": {"suspend": false}}"#,
            )
            .await
            .unwrap();
        testutil::wait_for("a pod after resuming", Duration::from_secs(10), || {
            pods(&*client).len() == 1
        })
        .await;
        let status = job_status(&*client);
        assert_eq!(status["conditions"][0]["status"], "False");
        assert_eq!(status["conditions"][0]["reason"], "JobResumed");
        assert!(status["startTime"].is_string());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_finished_job_is_deleted_after_its_ttl() {
        let registry = testutil::registry().await;
        let client: Arc<dyn Client> = registry.clone();
        let task = tokio::spawn(run(client.clone(), Arc::new(TokioClock::new())));
        let body = job_body(json!({"ttlSecondsAfterFinished": 30}));
        client
            .create(jobs_def(), Some("default"), body)
            .await
            .unwrap();
        testutil::wait_for("a pod", Duration::from_secs(10), || {
            pods(&*client).len() == 1
        })
        .await;
        set_phase(&*client, &pods(&*client)[0].value, "Succeeded").await;
        testutil::wait_for("the Job to complete", Duration::from_secs(10), || {
            tracking::is_finished(&json!({"status": job_status(&*client)}))
        })
        .await;
        tokio::time::sleep(Duration::from_secs(20)).await;
        let job = client.get(jobs_def(), Some("default"), "work").unwrap();
        assert!(
            !object::is_deleting(&job.value),
            "kept until the TTL has passed"
        );
        testutil::wait_for("the Job to be deleted", Duration::from_secs(15), || {
            client
                .get(jobs_def(), Some("default"), "work")
                .map_or(true, |j| object::is_deleting(&j.value))
        })
        .await;
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_job_runs_to_completion_and_its_pods_keep_no_finalizer() {
        let registry = testutil::registry().await;
        let client: Arc<dyn Client> = registry.clone();
        let task = tokio::spawn(run(client.clone(), Arc::new(TokioClock::new())));
        let body = json!({"apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "work", "namespace": "default"},
            "spec": {"completions": 3, "parallelism": 2, "template": {"spec": {
                "restartPolicy": "Never", "containers": [{"name": "main", "image": "busybox"}]}}}});
        client
            .create(jobs_def(), Some("default"), body)
            .await
            .unwrap();
        let mut finished = std::collections::HashSet::new();
        tokio::time::timeout(Duration::from_secs(60), async {
            loop {
                let pods = client.list(pods_def(), Some("default"), &|_| true);
                for p in &pods {
                    let name = object::name(&p.value).to_string();
                    if p.value["status"]["phase"] != "Succeeded" && finished.insert(name) {
                        assert!(has_tracking_finalizer(&p.value));
                        set_phase(&*client, &p.value, "Succeeded").await;
                    }
                }
                if tracking::is_finished(&json!({"status": job_status(&*client)})) {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        })
        .await
        .expect("the job completes");
        let status = job_status(&*client);
        assert_eq!(status["succeeded"], 3);
        assert_eq!(status["conditions"][1]["type"], "Complete");
        let pods = client.list(pods_def(), Some("default"), &|_| true);
        assert_eq!(pods.len(), 3, "no extra pods");
        assert!(pods.iter().all(|p| !has_tracking_finalizer(&p.value)));
        task.abort();
    }
}
