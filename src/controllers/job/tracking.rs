//! The Job controller's decisions as one pure function of the Job, its pods, the pod
//! failure back-off and `now` (upstream `syncJob`, `trackJobStatusAndRemoveFinalizers`,
//! `manageJob`): what the status becomes, which pods lose the tracking finalizer, which
//! are deleted and which indexes get new pods.
//!
//! Finalizer-based tracking: a finished pod that still carries
//! [`TRACKING_FINALIZER`] is first recorded in `status.uncountedTerminatedPods` (or, for
//! a succeeded pod of an Indexed Job, in `completedIndexes`), that status is written,
//! then the finalizer is removed, and only once the pod has no finalizer (or is gone) is
//! its uid moved into the `succeeded`/`failed` counters. A pod without the finalizer is
//! never looked at again, so no pod is counted twice, across restarts included.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use crate::api::object;
use crate::controllers::pods::{self, parse_time};
use crate::store::KeyValue;

/// The finalizer that keeps a Job's pod until the Job has counted it.
pub const TRACKING_FINALIZER: &str = "batch.kubernetes.io/job-tracking";
/// Annotation and label with an Indexed Job pod's completion index.
pub const COMPLETION_INDEX: &str = "batch.kubernetes.io/job-completion-index";
/// Annotation with how often an index already failed (with `backoffLimitPerIndex`).
pub const INDEX_FAILURE_COUNT: &str = "batch.kubernetes.io/job-index-failure-count";
/// The environment variable an Indexed Job pod reads its index from.
pub const COMPLETION_INDEX_ENV: &str = "JOB_COMPLETION_INDEX";
/// First delay before a failed pod is replaced (doubles with each failure).
pub const DEFAULT_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(10);
/// Longest delay before a failed pod is replaced (upstream `MaxJobPodFailureBackOff`).
pub const MAX_POD_FAILURE_BACKOFF: Duration = Duration::from_secs(600);
/// Most pods created or deleted by one sync (upstream `MaxPodCreateDeletePerSync`).
pub const MAX_POD_CREATE_DELETE_PER_SYNC: usize = 500;
/// Most uids kept in each list of `uncountedTerminatedPods` (upstream `MaxUncountedPods`).
pub const MAX_UNCOUNTED_PODS: usize = 500;

/// The delay before replacing a pod after `failures` failures in a row.
pub fn backoff_delay(failures: u32) -> Duration {
    if failures == 0 {
        return Duration::ZERO;
    }
    let factor = 1u64.checked_shl(failures - 1).unwrap_or(u64::MAX);
    let secs = DEFAULT_POD_FAILURE_BACKOFF
        .as_secs()
        .saturating_mul(factor)
        .min(MAX_POD_FAILURE_BACKOFF.as_secs());
    Duration::from_secs(secs)
}

/// Pod failures since the last success (upstream `backoffRecord`, kept in memory).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BackoffRecord {
    pub failures_after_last_success: u32,
    pub last_failure: Option<DateTime<Utc>>,
}

impl BackoffRecord {
    /// How long new pods must still wait.
    pub fn remaining(&self, now: DateTime<Utc>) -> Duration {
        let Some(last) = self.last_failure else {
            return Duration::ZERO;
        };
        let until = last
            + chrono::Duration::from_std(backoff_delay(self.failures_after_last_success))
                .unwrap_or_default();
        (until - now).to_std().unwrap_or(Duration::ZERO)
    }
}

/// A condition a Job gets when it finishes (first the interim one, then the final one).
#[derive(Debug, Clone, PartialEq)]
pub struct Finish {
    pub success: bool,
    pub reason: String,
    pub message: String,
}

impl Finish {
    fn success() -> Finish {
        Finish {
            success: true,
            reason: "CompletionsReached".into(),
            message: "Reached expected number of succeeded pods".into(),
        }
    }

    fn failure(reason: &str, message: impl Into<String>) -> Finish {
        Finish {
            success: false,
            reason: reason.into(),
            message: message.into(),
        }
    }

    fn interim_type(&self) -> &'static str {
        if self.success {
            "SuccessCriteriaMet"
        } else {
            "FailureTarget"
        }
    }

    fn final_type(&self) -> &'static str {
        if self.success {
            "Complete"
        } else {
            "Failed"
        }
    }
}

/// A pod to delete, and whether its tracking finalizer goes first (pods removed by a
/// scale-down or suspension are not counted as failed).
#[derive(Debug, Clone)]
pub struct Deletion {
    pub pod: KeyValue,
    pub uncounted: bool,
}

/// An event for the Job.
#[derive(Debug, Clone, PartialEq)]
pub struct JobEvent {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What one sync decides.
#[derive(Debug, Default)]
pub struct Plan {
    /// The status to write (equal to the current one when nothing changed).
    pub status: Value,
    /// Pods whose tracking finalizer is removed after the status is written.
    pub remove_finalizers: Vec<KeyValue>,
    pub delete: Vec<Deletion>,
    /// New pods: `Some(index)` for Indexed Jobs.
    pub create: Vec<Option<i64>>,
    /// The failure count annotation of each new pod (per index, `backoffLimitPerIndex`).
    pub index_failures: HashMap<i64, i64>,
    pub events: Vec<JobEvent>,
    /// Look again after this long (deadline, back-off).
    pub requeue_after: Option<Duration>,
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

fn is_terminal(pod: &Value) -> bool {
    matches!(phase(pod), "Succeeded" | "Failed")
}

pub fn has_tracking_finalizer(pod: &Value) -> bool {
    object::finalizers(pod)
        .iter()
        .any(|f| f == TRACKING_FINALIZER)
}

/// Being deleted but still running.
fn is_terminating(pod: &Value) -> bool {
    object::is_deleting(pod) && !is_terminal(pod)
}

fn is_active(pod: &Value) -> bool {
    !is_terminal(pod) && !object::is_deleting(pod)
}

/// The completion index a pod carries (annotation, else label).
pub fn pod_index(pod: &Value) -> Option<i64> {
    let meta = &pod["metadata"];
    meta["annotations"][COMPLETION_INDEX]
        .as_str()
        .or_else(|| meta["labels"][COMPLETION_INDEX].as_str())
        .and_then(|s| s.parse().ok())
        .filter(|i| *i >= 0)
}

/// Parses `completedIndexes` (`1,3-5,7`).
pub fn parse_indexes(text: &str) -> BTreeSet<i64> {
    let mut set = BTreeSet::new();
    for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        match part.split_once('-') {
            Some((a, b)) => {
                if let (Ok(a), Ok(b)) = (a.parse::<i64>(), b.parse::<i64>()) {
                    set.extend(a..=b);
                }
            }
            None => set.extend(part.parse::<i64>().ok()),
        }
    }
    set
}

/// Formats indexes as intervals (`1,3-5,7`), as upstream.
pub fn format_indexes(set: &BTreeSet<i64>) -> String {
    let mut parts = Vec::new();
    let mut iter = set.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// When the pod's containers last finished (for the back-off).
fn finish_time(pod: &Value) -> Option<DateTime<Utc>> {
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| pod["status"][k].as_array().into_iter().flatten())
        .filter_map(|c| parse_time(&c["state"]["terminated"]["finishedAt"]))
        .max()
}

/// What a pod failure policy rule says about a failed pod.
#[derive(Debug, Clone, PartialEq)]
pub enum FailureAction {
    FailJob(String),
    FailIndex,
    Ignore,
    Count,
}

/// Upstream `matchPodFailurePolicy`: the first rule matching a failed pod's container
/// exit codes or conditions; `Count` when none matches.
pub fn match_pod_failure_policy(policy: &Value, pod: &Value) -> FailureAction {
    let pod_name = format!(
        "{}/{}",
        object::namespace(pod).unwrap_or(""),
        object::name(pod)
    );
    for (i, rule) in policy["rules"].as_array().into_iter().flatten().enumerate() {
        let action = rule["action"].as_str().unwrap_or("");
        let mut matched = None;
        if let Some(req) = rule.get("onExitCodes").filter(|v| !v.is_null()) {
            if let Some((container, code)) = matching_exit_code(req, pod) {
                matched = Some(format!(
                    "Container {container} for pod {pod_name} failed with exit code {code} matching {action} rule at index {i}"
                ));
            }
        }
        for pattern in rule["onPodConditions"].as_array().into_iter().flatten() {
            let status = pattern["status"].as_str().unwrap_or("True");
            let has = pod["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == pattern["type"] && c["status"] == status);
            if has && matched.is_none() {
                matched = Some(format!(
                    "Pod {pod_name} has condition {} matching {action} rule at index {i}",
                    pattern["type"].as_str().unwrap_or("")
                ));
            }
        }
        if let Some(message) = matched {
            return match action {
                "FailJob" => FailureAction::FailJob(message),
                "FailIndex" => FailureAction::FailIndex,
                "Ignore" => FailureAction::Ignore,
                _ => FailureAction::Count,
            };
        }
    }
    FailureAction::Count
}

/// The first container (init containers first) that ended with a non-zero exit code
/// the requirement matches.
fn matching_exit_code(req: &Value, pod: &Value) -> Option<(String, i64)> {
    let only = req["containerName"].as_str();
    let values: Vec<i64> = req["values"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_i64)
        .collect();
    let is_in = req["operator"] == "In";
    ["initContainerStatuses", "containerStatuses"]
        .iter()
        .flat_map(|k| pod["status"][k].as_array().into_iter().flatten())
        .filter(|c| only.is_none_or(|n| c["name"] == n))
        .filter_map(|c| {
            let code = c["state"]["terminated"]["exitCode"].as_i64()?;
            let name = c["name"].as_str().unwrap_or("").to_string();
            Some((name, code))
        })
        .find(|(_, code)| *code != 0 && values.contains(code) == is_in)
}

fn condition<'a>(status: &'a Map<String, Value>, ty: &str) -> Option<&'a Value> {
    status
        .get("conditions")?
        .as_array()?
        .iter()
        .find(|c| c["type"] == ty)
}

fn condition_true(status: &Map<String, Value>, ty: &str) -> bool {
    condition(status, ty).is_some_and(|c| c["status"] == "True")
}

/// Upstream `ensureJobConditionStatus`: adds the condition or changes its status; true
/// when it changed.
fn ensure_condition(
    status: &mut Map<String, Value>,
    ty: &str,
    value: &str,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) -> bool {
    let stamp = object::timestamp(now);
    let conditions = status
        .entry("conditions")
        .or_insert_with(|| json!([]))
        .as_array_mut();
    let Some(conditions) = conditions else {
        return false;
    };
    let fresh = json!({"type": ty, "status": value, "lastProbeTime": stamp,
                       "lastTransitionTime": stamp, "reason": reason, "message": message});
    match conditions.iter_mut().find(|c| c["type"] == ty) {
        Some(c) if c["status"] == value => false,
        Some(c) => {
            *c = fresh;
            true
        }
        None => {
            conditions.push(fresh);
            true
        }
    }
}

/// Upstream `pastBackoffLimitOnFailure`: restarts of running pods (restartPolicy
/// OnFailure) reached the back-off limit.
fn past_backoff_limit_on_failure(job: &Value, pods: &[&KeyValue], limit: i64) -> bool {
    if job["spec"]["template"]["spec"]["restartPolicy"] != "OnFailure" {
        return false;
    }
    let restarts: i64 = pods
        .iter()
        .filter(|p| matches!(phase(&p.value), "Running" | "Pending"))
        .flat_map(|p| {
            ["initContainerStatuses", "containerStatuses"]
                .iter()
                .flat_map(|k| p.value["status"][k].as_array().cloned().unwrap_or_default())
        })
        .map(|c| c["restartCount"].as_i64().unwrap_or(0))
        .sum();
    if limit == 0 {
        restarts > 0
    } else {
        restarts >= limit
    }
}

fn uid_list(v: &Value) -> Vec<String> {
    v.as_array()
        .into_iter()
        .flatten()
        .filter_map(|u| u.as_str().map(str::to_string))
        .collect()
}

/// The sync of one Job that is not finished: `pods` are the pods it controls (in any
/// phase), `backoff` its failure record (updated with the failures seen now).
pub fn plan(
    job: &Value,
    pods: &[KeyValue],
    backoff: &mut BackoffRecord,
    now: DateTime<Utc>,
) -> Plan {
    let spec = &job["spec"];
    let mut status = job["status"].as_object().cloned().unwrap_or_default();
    let indexed = spec["completionMode"] == "Indexed";
    let completions = spec["completions"].as_i64();
    let parallelism = spec["parallelism"].as_i64().unwrap_or(1).max(0);
    let backoff_limit = spec["backoffLimit"].as_i64().unwrap_or(6);
    let per_index_limit = spec["backoffLimitPerIndex"].as_i64();
    let failure_policy = spec.get("podFailurePolicy").filter(|p| !p.is_null());
    let suspended = spec["suspend"] == true;
    let replace_only_failed = spec["podReplacementPolicy"] == "Failed";
    let mut plan = Plan::default();

    // Pods whose uids were recorded and whose finalizers are gone are counted now.
    let by_uid: HashMap<&str, &KeyValue> = pods
        .iter()
        .filter_map(|p| object::uid(&p.value).map(|u| (u, p)))
        .collect();
    let still_tracked = |uid: &String| {
        by_uid
            .get(uid.as_str())
            .is_some_and(|p| has_tracking_finalizer(&p.value))
    };
    let uncounted = &status
        .get("uncountedTerminatedPods")
        .cloned()
        .unwrap_or_default();
    let mut uncounted_succeeded = uid_list(&uncounted["succeeded"]);
    let mut uncounted_failed = uid_list(&uncounted["failed"]);
    let mut succeeded = status.get("succeeded").and_then(Value::as_i64).unwrap_or(0);
    let mut failed = status.get("failed").and_then(Value::as_i64).unwrap_or(0);
    let before = (uncounted_succeeded.len(), uncounted_failed.len());
    uncounted_succeeded.retain(still_tracked);
    uncounted_failed.retain(still_tracked);
    succeeded += (before.0 - uncounted_succeeded.len()) as i64;
    failed += (before.1 - uncounted_failed.len()) as i64;

    let mut completed = parse_indexes(
        status
            .get("completedIndexes")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let mut failed_indexes = parse_indexes(
        status
            .get("failedIndexes")
            .and_then(Value::as_str)
            .unwrap_or(""),
    );
    let in_range = |ix: i64| completions.is_some_and(|c| ix < c);

    let existing_finish = ["FailureTarget", "SuccessCriteriaMet"]
        .iter()
        .find_map(|ty| condition(&status, ty).filter(|c| c["status"] == "True"))
        .map(|c| Finish {
            success: c["type"] == "SuccessCriteriaMet",
            reason: c["reason"].as_str().unwrap_or("").to_string(),
            message: c["message"].as_str().unwrap_or("").to_string(),
        });
    let failing = existing_finish.as_ref().is_some_and(|f| !f.success);

    // Newly finished pods are recorded (uncounted) and lose their finalizer.
    let mut fail_job_message = None;
    let mut new_failures = Vec::new();
    let mut new_success = false;
    for pod in pods.iter().filter(|p| has_tracking_finalizer(&p.value)) {
        let p = &*pod.value;
        let uid = object::uid(p).unwrap_or("").to_string();
        if uncounted_succeeded.contains(&uid) || uncounted_failed.contains(&uid) {
            plan.remove_finalizers.push(pod.clone());
            continue;
        }
        if uncounted_succeeded.len() + uncounted_failed.len() >= MAX_UNCOUNTED_PODS {
            break;
        }
        let ix = pod_index(p);
        if phase(p) == "Succeeded" {
            new_success = true;
            if indexed {
                if let Some(ix) = ix.filter(|i| in_range(*i) && !failed_indexes.contains(i)) {
                    completed.insert(ix);
                }
            } else {
                uncounted_succeeded.push(uid);
            }
            plan.remove_finalizers.push(pod.clone());
            continue;
        }
        // A pod being deleted counts as failed once it stops (upstream's kubelet marks it
        // Failed; orc's deletes it at once, so a final delete counts as stopped).
        let stopped = is_terminating(p) && p["metadata"]["deletionGracePeriodSeconds"] == 0;
        let considered_failed = phase(p) == "Failed"
            || (is_terminating(p) && (failure_policy.is_none() || failing || stopped));
        if !considered_failed {
            continue;
        }
        let mut count = true;
        if let (Some(policy), "Failed") = (failure_policy, phase(p)) {
            match match_pod_failure_policy(policy, p) {
                FailureAction::FailJob(message) => {
                    fail_job_message.get_or_insert(message);
                }
                FailureAction::FailIndex => {
                    failed_indexes.extend(ix.filter(|i| in_range(*i)));
                }
                FailureAction::Ignore => count = false,
                FailureAction::Count => {}
            }
        }
        if count {
            if let (Some(limit), Some(ix)) = (per_index_limit, ix) {
                let failures = index_failure_count(p) + 1;
                if failures > limit && in_range(ix) {
                    failed_indexes.insert(ix);
                }
            }
            if !indexed || ix.is_some_and(in_range) {
                uncounted_failed.push(uid);
                new_failures.push(finish_time(p).unwrap_or(now));
            }
        }
        plan.remove_finalizers.push(pod.clone());
    }
    if new_success {
        backoff.failures_after_last_success = 0;
        backoff.last_failure = None;
    }
    if let Some(latest) = new_failures.iter().max() {
        backoff.failures_after_last_success += new_failures.len() as u32;
        backoff.last_failure = Some(backoff.last_failure.map_or(*latest, |l| l.max(*latest)));
    }

    let succeeded_total = if indexed {
        completed.len() as i64
    } else {
        succeeded + uncounted_succeeded.len() as i64
    };
    let failed_total = failed + uncounted_failed.len() as i64;
    let active: Vec<&KeyValue> = pods.iter().filter(|p| is_active(&p.value)).collect();
    let terminating = pods.iter().filter(|p| is_terminating(&p.value)).count();

    // Start time and suspension.
    if suspended && existing_finish.is_none() {
        if ensure_condition(
            &mut status,
            "Suspended",
            "True",
            "JobSuspended",
            "Job suspended",
            now,
        ) {
            plan.events.push(JobEvent {
                warning: false,
                reason: "Suspended",
                message: "Job suspended".into(),
            });
        }
    } else if condition_true(&status, "Suspended")
        && ensure_condition(
            &mut status,
            "Suspended",
            "False",
            "JobResumed",
            "Job resumed",
            now,
        )
    {
        plan.events.push(JobEvent {
            warning: false,
            reason: "Resumed",
            message: "Job resumed".into(),
        });
        status.insert("startTime".into(), json!(object::timestamp(now)));
    }
    if !suspended && status.get("startTime").is_none_or(Value::is_null) {
        status.insert("startTime".into(), json!(object::timestamp(now)));
    }
    let start = status.get("startTime").and_then(parse_time);

    // Has the Job reached its end?
    let mut finish = existing_finish.clone();
    if finish.is_none() {
        let deadline = spec["activeDeadlineSeconds"]
            .as_i64()
            .zip(start)
            // A deadline past what a time can hold never comes.
            .and_then(|(secs, start)| {
                start.checked_add_signed(chrono::Duration::try_seconds(secs)?)
            });
        let max_failed_indexes = spec["maxFailedIndexes"].as_i64();
        finish = if let Some(message) = fail_job_message {
            Some(Finish::failure("PodFailurePolicy", message))
        } else if failed_total > backoff_limit
            || past_backoff_limit_on_failure(job, &active, backoff_limit)
        {
            Some(Finish::failure(
                "BackoffLimitExceeded",
                "Job has reached the specified backoff limit",
            ))
        } else if max_failed_indexes.is_some_and(|m| failed_indexes.len() as i64 > m) {
            Some(Finish::failure(
                "MaxFailedIndexesExceeded",
                "Job has exceeded the specified maximal number of failed indexes",
            ))
        } else if !suspended && deadline.is_some_and(|d| d <= now) {
            Some(Finish::failure(
                "DeadlineExceeded",
                "Job was active longer than specified deadline",
            ))
        } else if indexed {
            let done = (completed.len() + failed_indexes.len()) as i64;
            match completions {
                Some(c) if done >= c && failed_indexes.is_empty() => Some(Finish::success()),
                Some(c) if done >= c => {
                    Some(Finish::failure("FailedIndexes", "Job has failed indexes"))
                }
                _ => None,
            }
        } else {
            let done = match completions {
                Some(c) => succeeded_total >= c,
                None => succeeded_total > 0 && active.is_empty(),
            };
            done.then(Finish::success)
        };
        if let Some(f) = &finish {
            ensure_condition(
                &mut status,
                f.interim_type(),
                "True",
                &f.reason,
                &f.message,
                now,
            );
            if !f.success {
                plan.events.push(JobEvent {
                    warning: true,
                    reason: reason_str(&f.reason),
                    message: f.message.clone(),
                });
            }
        } else if let Some(d) = deadline.filter(|_| !suspended) {
            plan.requeue_after = (d - now).to_std().ok();
        }
    }

    // Pods to delete or create.
    if finish.is_some() {
        plan.delete.extend(active.iter().map(|p| Deletion {
            pod: (*p).clone(),
            uncounted: false,
        }));
    } else if suspended {
        plan.delete.extend(active.iter().map(|p| Deletion {
            pod: (*p).clone(),
            uncounted: true,
        }));
    } else if indexed {
        let completions = completions.unwrap_or(0);
        let mut occupied: BTreeMap<i64, Vec<&KeyValue>> = BTreeMap::new();
        for pod in &active {
            match pod_index(&pod.value) {
                Some(ix)
                    if ix < completions
                        && !completed.contains(&ix)
                        && !failed_indexes.contains(&ix) =>
                {
                    occupied.entry(ix).or_default().push(pod)
                }
                _ => plan.delete.push(Deletion {
                    pod: (*pod).clone(),
                    uncounted: true,
                }),
            }
        }
        for group in occupied.values() {
            // Keep the most advanced pod of an index.
            let mut group = group.clone();
            group.sort_by_key(|p| (!pods::is_ready(&p.value), phase(&p.value) != "Running"));
            plan.delete.extend(group[1..].iter().map(|p| Deletion {
                pod: (*p).clone(),
                uncounted: true,
            }));
        }
        let mut busy: BTreeSet<i64> = occupied.keys().copied().collect();
        if replace_only_failed {
            busy.extend(
                pods.iter()
                    .filter(|p| is_terminating(&p.value))
                    .filter_map(|p| pod_index(&p.value)),
            );
        }
        let running = occupied.len() as i64;
        let want = (parallelism - running).max(0) as usize;
        let pending = (0..completions)
            .filter(|i| !completed.contains(i) && !failed_indexes.contains(i) && !busy.contains(i));
        for ix in pending.take(want.min(MAX_POD_CREATE_DELETE_PER_SYNC)) {
            plan.create.push(Some(ix));
            if per_index_limit.is_some() {
                plan.index_failures
                    .insert(ix, previous_index_failures(pods, ix));
            }
        }
    } else {
        let want = match completions {
            Some(c) => parallelism.min(c - succeeded_total),
            None if succeeded_total > 0 => 0,
            None => parallelism,
        }
        .max(0) as usize;
        let counted = active.len() + if replace_only_failed { terminating } else { 0 };
        if active.len() > want {
            let owned: Vec<KeyValue> = active.iter().map(|p| (*p).clone()).collect();
            let excess = (active.len() - want).min(MAX_POD_CREATE_DELETE_PER_SYNC);
            plan.delete
                .extend(
                    pods::pods_to_delete(&owned, excess)
                        .into_iter()
                        .map(|pod| Deletion {
                            pod,
                            uncounted: true,
                        }),
                );
        } else if counted < want {
            plan.create = vec![None; (want - counted).min(MAX_POD_CREATE_DELETE_PER_SYNC)];
        }
    }
    if !plan.create.is_empty() {
        let wait = backoff.remaining(now);
        if !wait.is_zero() {
            plan.create.clear();
            plan.index_failures.clear();
            plan.requeue_after = Some(plan.requeue_after.map_or(wait, |r| r.min(wait)));
        }
    }

    // The final condition once every pod is gone or counted.
    if let Some(f) = &finish {
        let settled = plan.remove_finalizers.is_empty()
            && uncounted_succeeded.is_empty()
            && uncounted_failed.is_empty()
            && active.is_empty()
            && terminating == 0;
        if settled
            && ensure_condition(
                &mut status,
                f.final_type(),
                "True",
                &f.reason,
                &f.message,
                now,
            )
            && f.success
        {
            status.insert("completionTime".into(), json!(object::timestamp(now)));
            plan.events.push(JobEvent {
                warning: false,
                reason: "Completed",
                message: "Job completed".into(),
            });
        }
    }

    // Counts.
    let ready = active.iter().filter(|p| pods::is_ready(&p.value)).count();
    set_count(&mut status, "active", active.len() as i64);
    // Counters hold only pods already counted; the rest wait in the uncounted lists.
    set_count(
        &mut status,
        "succeeded",
        if indexed { succeeded_total } else { succeeded },
    );
    set_count(&mut status, "failed", failed);
    status.insert("ready".into(), json!(ready));
    status.insert("terminating".into(), json!(terminating));
    if indexed {
        let text = format_indexes(&completed);
        if text.is_empty() {
            status.remove("completedIndexes");
        } else {
            status.insert("completedIndexes".into(), json!(text));
        }
        if per_index_limit.is_some() {
            status.insert(
                "failedIndexes".into(),
                json!(format_indexes(&failed_indexes)),
            );
        }
    }
    let mut uncounted = Map::new();
    if !uncounted_succeeded.is_empty() {
        uncounted.insert("succeeded".into(), json!(uncounted_succeeded));
    }
    if !uncounted_failed.is_empty() {
        uncounted.insert("failed".into(), json!(uncounted_failed));
    }
    status.insert("uncountedTerminatedPods".into(), Value::Object(uncounted));
    plan.status = Value::Object(status);
    plan
}

/// Sets a counter, leaving it out when zero (as upstream's `omitempty`).
fn set_count(status: &mut Map<String, Value>, key: &str, value: i64) {
    if value > 0 {
        status.insert(key.into(), json!(value));
    } else {
        status.remove(key);
    }
}

fn reason_str(reason: &str) -> &'static str {
    match reason {
        "PodFailurePolicy" => "PodFailurePolicy",
        "BackoffLimitExceeded" => "BackoffLimitExceeded",
        "DeadlineExceeded" => "DeadlineExceeded",
        "MaxFailedIndexesExceeded" => "MaxFailedIndexesExceeded",
        "FailedIndexes" => "FailedIndexes",
        _ => "JobFailed",
    }
}

fn index_failure_count(pod: &Value) -> i64 {
    pod["metadata"]["annotations"][INDEX_FAILURE_COUNT]
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

/// How often index `ix` failed so far: the highest count among its failed pods + 1.
fn previous_index_failures(pods: &[KeyValue], ix: i64) -> i64 {
    pods.iter()
        .filter(|p| pod_index(&p.value) == Some(ix) && phase(&p.value) == "Failed")
        .map(|p| index_failure_count(&p.value) + 1)
        .max()
        .unwrap_or(0)
}

/// Whether the Job has its final condition (Complete or Failed).
pub fn is_finished(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
}

/// When a finished Job finished (its Complete or Failed condition's transition).
pub fn finish_time_of(job: &Value) -> Option<DateTime<Utc>> {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| (c["type"] == "Complete" || c["type"] == "Failed") && c["status"] == "True")
        .and_then(|c| parse_time(&c["lastTransitionTime"]))
        .or_else(|| parse_time(&job["status"]["completionTime"]))
}
