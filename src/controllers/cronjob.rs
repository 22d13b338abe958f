//! The CronJob controller (batch/v1, upstream's `cronjob_controllerv2`): creates a Job
//! named `<cronjob>-<scheduled minute since the epoch>` at each scheduled time, honours
//! `concurrencyPolicy`, `startingDeadlineSeconds` and `suspend`, keeps `status.active`,
//! `lastScheduleTime` and `lastSuccessfulTime`, and prunes finished Jobs beyond the
//! history limits. A sync is requeued for the next scheduled time (read from the
//! injected clock), never polled; after a restart only the most recent missed schedule
//! runs, as upstream.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{json, Value};

use super::clock::Clock;
use super::events::{Recorder, NORMAL, WARNING};
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};
use super::job::tracking::is_finished;
use super::ownership::{is_controlled_by, owner_reference};
use super::pods::{controller_ref, parse_time};
use crate::api::cron::{self, Schedule};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::KeyValue;

/// Annotation with the time a Job was scheduled for (in the CronJob's time zone).
pub const SCHEDULED_TIMESTAMP_ANNOTATION: &str = "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Missed schedules beyond which a warning event is recorded.
pub const TOO_MANY_MISSED: i64 = 100;
/// Slack added to the wait for the next schedule (upstream `nextScheduleDelta`).
const NEXT_SCHEDULE_DELTA: Duration = Duration::from_millis(100);
const WORKERS: usize = 2;
const COMPONENT: &str = "cronjob-controller";

fn cron_jobs_def() -> &'static ResourceDef {
    resources::by_plural("batch", "v1", "cronjobs").expect("served")
}

fn jobs_def() -> &'static ResourceDef {
    resources::by_plural("batch", "v1", "jobs").expect("served")
}

struct Controller {
    client: Arc<dyn Client>,
    clock: Arc<dyn Clock>,
    recorder: Recorder,
}

/// Runs the CronJob controller until aborted.
pub async fn run(client: Arc<dyn Client>, clock: Arc<dyn Clock>) {
    let controller = Arc::new(Controller {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client: client.clone(),
        clock,
    });
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            cron_jobs_def(),
            queue.clone(),
            Box::new(|ev| vec![object_key(&ev.kv.value)]),
        ),
        Informer::start(
            client,
            jobs_def(),
            queue.clone(),
            Box::new(|ev| {
                let mut keys: Vec<String> = owner_key(&ev.kv.value).into_iter().collect();
                if let Some(prev) = ev.prev.as_ref().and_then(|p| owner_key(&p.value)) {
                    if !keys.contains(&prev) {
                        keys.push(prev);
                    }
                }
                keys
            }),
        ),
    ];
    wait_for_sync(&informers).await;
    run_workers(COMPONENT, queue, WORKERS, move |key| {
        let controller = controller.clone();
        async move { controller.reconcile(&key).await }
    })
    .await;
}

/// The CronJob controlling a Job.
fn owner_key(job: &Value) -> Option<String> {
    let r = controller_ref(job).filter(|r| r["kind"] == "CronJob")?;
    Some(format!(
        "{}/{}",
        object::namespace(job)?,
        r["name"].as_str()?
    ))
}

/// The name of the Job for a scheduled time (upstream `getJobName`).
pub fn job_name(cron_job: &Value, scheduled: DateTime<Utc>) -> String {
    format!("{}-{}", object::name(cron_job), scheduled.timestamp() / 60)
}

/// The Job a CronJob creates for `scheduled` (upstream `getJobFromTemplate2`).
pub fn job_from_template(cron_job: &Value, scheduled: DateTime<Utc>, tz: Tz) -> Value {
    let template = &cron_job["spec"]["jobTemplate"];
    let mut annotations = template["metadata"]["annotations"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    annotations.insert(
        SCHEDULED_TIMESTAMP_ANNOTATION.into(),
        json!(scheduled
            .with_timezone(&tz)
            .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)),
    );
    let mut meta = json!({
        "name": job_name(cron_job, scheduled),
        "annotations": annotations,
        "ownerReferences": [owner_reference(cron_job)],
    });
    if let Some(labels) = template["metadata"]["labels"].as_object() {
        meta["labels"] = json!(labels);
    }
    if let Some(ns) = object::namespace(cron_job) {
        meta["namespace"] = json!(ns);
    }
    json!({"apiVersion": "batch/v1", "kind": "Job", "metadata": meta, "spec": template["spec"]})
}

/// The most recent schedule not later than `now` since the last one (or the CronJob's
/// creation), and about how many were missed (upstream `mostRecentScheduleTime`).
/// `startingDeadlineSeconds` narrows the window when `include_deadline`.
pub fn most_recent_schedule_time(
    cron_job: &Value,
    now: DateTime<Utc>,
    schedule: &Schedule,
    tz: Tz,
    include_deadline: bool,
) -> Result<(Option<DateTime<Utc>>, i64), String> {
    let mut earliest = parse_time(&cron_job["status"]["lastScheduleTime"])
        .or_else(|| parse_time(&cron_job["metadata"]["creationTimestamp"]))
        .unwrap_or(now);
    if let Some(deadline) = cron_job["spec"]["startingDeadlineSeconds"]
        .as_i64()
        .filter(|_| include_deadline)
    {
        let window_start = chrono::Duration::try_seconds(deadline)
            .and_then(|d| now.checked_sub_signed(d))
            .unwrap_or(earliest);
        if window_start > earliest {
            earliest = window_start;
        }
    }
    let Some(t1) = schedule.next_after(earliest, tz) else {
        return Ok((None, 0));
    };
    if now < t1 {
        return Ok((None, 0));
    }
    let Some(t2) = schedule.next_after(t1, tz) else {
        return Ok((Some(t1), 1));
    };
    if now < t2 {
        return Ok((Some(t1), 1));
    }
    let interval = (t2 - t1).num_seconds();
    if interval < 1 {
        return Err("time difference between two schedules is less than 1 second".into());
    }
    let missed = (now - t1).num_seconds() / interval + 1;
    // Start a little before the estimated last run and walk to `now` (irregular
    // schedules such as `30 6-16/4 * * 1-5` included).
    let from = t1 + chrono::Duration::seconds((missed - 2).max(0) * interval);
    let mut most_recent = None;
    let mut t = schedule.next_after(from, tz);
    while let Some(next) = t.filter(|t| *t <= now) {
        most_recent = Some(next);
        t = schedule.next_after(next, tz);
    }
    Ok((most_recent.or(Some(t1)), missed))
}

/// How long until the next schedule after `now` (plus a little slack).
pub fn next_schedule_in(schedule: &Schedule, tz: Tz, now: DateTime<Utc>) -> Option<Duration> {
    let next = schedule.next_after(now, tz)?;
    (next - now).to_std().ok().map(|d| d + NEXT_SCHEDULE_DELTA)
}

fn job_ref(job: &Value) -> Value {
    json!({
        "kind": "Job", "apiVersion": "batch/v1",
        "namespace": object::namespace(job).unwrap_or(""),
        "name": object::name(job),
        "uid": object::uid(job).unwrap_or(""),
        "resourceVersion": job["metadata"]["resourceVersion"],
    })
}

fn job_succeeded(job: &Value) -> bool {
    job["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Complete" && c["status"] == "True")
}

/// The finished Jobs beyond the history limits, oldest first (upstream
/// `cleanupFinishedJobs`, ordered by start time then name).
pub fn jobs_to_prune<'a>(cron_job: &Value, jobs: &'a [KeyValue]) -> Vec<&'a KeyValue> {
    let spec = &cron_job["spec"];
    let mut prune = Vec::new();
    for (succeeded, limit) in [
        (true, spec["successfulJobsHistoryLimit"].as_i64()),
        (false, spec["failedJobsHistoryLimit"].as_i64()),
    ] {
        let Some(limit) = limit else { continue };
        let mut finished: Vec<&KeyValue> = jobs
            .iter()
            .filter(|j| is_finished(&j.value) && job_succeeded(&j.value) == succeeded)
            .collect();
        finished.sort_by_key(|j| {
            (
                parse_time(&j.value["status"]["startTime"]).is_none(),
                parse_time(&j.value["status"]["startTime"]),
                object::name(&j.value).to_string(),
            )
        });
        let excess = finished.len().saturating_sub(limit.max(0) as usize);
        prune.extend(finished.into_iter().take(excess));
    }
    prune
}

impl Controller {
    async fn event(&self, cron_job: &Value, warning: bool, reason: &str, message: &str) {
        let ty = if warning { WARNING } else { NORMAL };
        self.recorder.record(cron_job, ty, reason, message).await;
    }

    async fn reconcile(&self, key: &str) -> Reconciled {
        let (ns, name) = split_key(key);
        let ns = ns.unwrap_or("default");
        let cron_job = match self.client.get(cron_jobs_def(), Some(ns), name) {
            Ok(kv) => (*kv.value).clone(),
            Err(e) if e.code == 404 => return Ok(None),
            Err(e) => return Err(e),
        };
        let uid = object::uid(&cron_job).unwrap_or("").to_string();
        let jobs = self
            .client
            .list(jobs_def(), Some(ns), &|j| is_controlled_by(&j.value, &uid));
        let mut status = cron_job["status"].as_object().cloned().unwrap_or_default();
        let requeue = self.sync(&cron_job, &jobs, &mut status).await;
        let status = Value::Object(status);
        if status != cron_job["status"] && !(status == json!({}) && cron_job["status"].is_null()) {
            let mut body = cron_job.clone();
            body["status"] = status;
            self.client
                .update_status(cron_jobs_def(), Some(ns), name, body)
                .await?;
        }
        for job in jobs_to_prune(&cron_job, &jobs) {
            self.delete_job(&cron_job, &job.value).await?;
        }
        requeue
    }

    /// Upstream `syncCronJob`: updates `status` in place and creates the Job due now.
    async fn sync(
        &self,
        cron_job: &Value,
        jobs: &[KeyValue],
        status: &mut serde_json::Map<String, Value>,
    ) -> Reconciled {
        let mut active: Vec<Value> = status
            .get("active")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        let in_active = |active: &[Value], uid: &str| active.iter().any(|r| r["uid"] == uid);
        for kv in jobs {
            let job = &*kv.value;
            let uid = object::uid(job).unwrap_or("");
            let found = in_active(&active, uid);
            if !found && !is_finished(job) {
                let message = format!(
                    "Saw a job that the controller did not create or forgot: {}",
                    object::name(job)
                );
                self.event(cron_job, true, "UnexpectedJob", &message).await;
            } else if found && is_finished(job) {
                active.retain(|r| r["uid"] != uid);
                let condition = if job_succeeded(job) {
                    "Complete"
                } else {
                    "Failed"
                };
                let message = format!(
                    "Saw completed job: {}, condition: {condition}",
                    object::name(job)
                );
                self.event(cron_job, false, "SawCompletedJob", &message)
                    .await;
            }
            if job_succeeded(job) {
                if let Some(done) = parse_time(&job["status"]["completionTime"]) {
                    let last = status.get("lastSuccessfulTime").and_then(parse_time);
                    if last.is_none_or(|l| done > l) {
                        status.insert(
                            "lastSuccessfulTime".into(),
                            job["status"]["completionTime"].clone(),
                        );
                    }
                }
            }
        }
        // Active Jobs that no longer exist are dropped.
        let mut missing = Vec::new();
        active.retain(|r| {
            let exists = jobs
                .iter()
                .any(|j| object::uid(&j.value) == r["uid"].as_str());
            let known = self
                .client
                .get(
                    jobs_def(),
                    r["namespace"].as_str(),
                    r["name"].as_str().unwrap_or(""),
                )
                .is_ok_and(|j| object::uid(&j.value) == r["uid"].as_str());
            if !exists && !known {
                missing.push(r["name"].as_str().unwrap_or("").to_string());
            }
            exists || known
        });
        for name in missing {
            self.event(
                cron_job,
                false,
                "MissingJob",
                &format!("Active job went missing: {name}"),
            )
            .await;
        }
        set_active(status, &active);

        if object::is_deleting(cron_job) {
            return Ok(None);
        }
        let spec = &cron_job["spec"];
        let Some(tz) = cron::time_zone(spec["timeZone"].as_str()) else {
            let tz = spec["timeZone"].as_str().unwrap_or("");
            let message = format!(
                "invalid timeZone: {}: unknown time zone {tz}",
                crate::api::validation::go_quote(tz)
            );
            self.event(cron_job, true, "UnknownTimeZone", &message)
                .await;
            return Ok(None);
        };
        if spec["suspend"] == true {
            return Ok(None);
        }
        let schedule_text = spec["schedule"].as_str().unwrap_or("");
        let schedule = match cron::parse(schedule_text) {
            Ok(s) => s,
            Err(e) => {
                let message = format!("invalid schedule: {schedule_text} : {e}");
                self.event(cron_job, true, "InvalidSchedule", &message)
                    .await;
                return Ok(None);
            }
        };
        let now = self.clock.now();
        let next = next_schedule_in(&schedule, tz, now);
        let (scheduled, missed) =
            match most_recent_schedule_time(cron_job, now, &schedule, tz, true) {
                Ok(found) => found,
                Err(e) => {
                    let message = format!("invalid schedule: {schedule_text} : {e}");
                    self.event(cron_job, true, "InvalidSchedule", &message)
                        .await;
                    return Ok(None);
                }
            };
        let Some(scheduled) = scheduled else {
            return Ok(next);
        };
        if missed > TOO_MANY_MISSED {
            let message = format!("too many missed start times: {missed}. Set or decrease .spec.startingDeadlineSeconds or check clock skew");
            self.event(cron_job, true, "TooManyMissedTimes", &message)
                .await;
        }
        if let Some(deadline) = spec["startingDeadlineSeconds"].as_i64() {
            let missed = chrono::Duration::try_seconds(deadline)
                .and_then(|d| scheduled.checked_add_signed(d))
                .is_some_and(|end| end < now);
            if missed {
                let message = format!(
                    "Missed scheduled time to start a job: {}",
                    scheduled.to_rfc2822()
                );
                self.event(cron_job, true, "MissSchedule", &message).await;
                return Ok(next);
            }
        }
        let name = job_name(cron_job, scheduled);
        let already = active.iter().any(|r| r["name"] == name.as_str())
            || status.get("lastScheduleTime").and_then(parse_time) == Some(scheduled);
        if already {
            return Ok(next);
        }
        match spec["concurrencyPolicy"].as_str().unwrap_or("Allow") {
            "Forbid" if !active.is_empty() => {
                let message = "Not starting job because prior execution is running and concurrency policy is Forbid";
                self.event(cron_job, false, "JobAlreadyActive", message)
                    .await;
                return Ok(next);
            }
            "Replace" => {
                for r in std::mem::take(&mut active) {
                    if let Ok(job) = self.client.get(
                        jobs_def(),
                        r["namespace"].as_str(),
                        r["name"].as_str().unwrap_or(""),
                    ) {
                        self.delete_job(cron_job, &job.value).await?;
                    }
                }
                set_active(status, &active);
            }
            _ => {}
        }
        let ns = object::namespace(cron_job);
        let body = job_from_template(cron_job, scheduled, tz);
        let created = match self.client.create(jobs_def(), ns, body).await {
            Ok(w) => {
                let message = format!("Created job {name}");
                self.event(cron_job, false, "SuccessfulCreate", &message)
                    .await;
                (*w.kv.value).clone()
            }
            Err(e) if e.code == 409 => {
                let job = self.client.get(jobs_def(), ns, &name)?;
                let uid = object::uid(cron_job).unwrap_or("");
                if !is_controlled_by(&job.value, uid)
                    || in_active(&active, object::uid(&job.value).unwrap_or(""))
                {
                    return Ok(next);
                }
                (*job.value).clone()
            }
            Err(e) => {
                let message = format!("Error creating job: {}", e.message);
                self.event(cron_job, true, "FailedCreate", &message).await;
                return Err(e);
            }
        };
        active.push(job_ref(&created));
        set_active(status, &active);
        status.insert(
            "lastScheduleTime".into(),
            json!(object::timestamp(scheduled)),
        );
        Ok(next)
    }

    async fn delete_job(&self, cron_job: &Value, job: &Value) -> Result<(), ApiError> {
        let opts = DeleteOptions {
            propagation: Some("Background".into()),
            precondition_uid: object::uid(job).map(str::to_string),
            ..Default::default()
        };
        let name = object::name(job);
        match self
            .client
            .delete(jobs_def(), object::namespace(job), name, &opts)
            .await
        {
            Ok(_) => {
                self.event(
                    cron_job,
                    false,
                    "SuccessfulDelete",
                    &format!("Deleted job {name}"),
                )
                .await;
                Ok(())
            }
            Err(e) if e.code == 404 => Ok(()),
            Err(e) => {
                self.event(
                    cron_job,
                    true,
                    "FailedDelete",
                    &format!("Deleted job: {}", e.message),
                )
                .await;
                Err(e)
            }
        }
    }
}

fn set_active(status: &mut serde_json::Map<String, Value>, active: &[Value]) {
    if active.is_empty() {
        status.remove("active");
    } else {
        status.insert("active".into(), json!(active));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    fn cron_job(schedule: &str, created: &str) -> Value {
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "backup", "namespace": "default", "uid": "cj1", "creationTimestamp": created},
            "spec": {"schedule": schedule, "concurrencyPolicy": "Allow",
                     "successfulJobsHistoryLimit": 2, "failedJobsHistoryLimit": 1,
                     "jobTemplate": {"metadata": {"labels": {"app": "backup"}},
                                     "spec": {"template": {"spec": {"restartPolicy": "Never",
                                       "containers": [{"name": "c", "image": "busybox"}]}}}}},
        })
    }

    fn recent(cj: &Value, now: &str, deadline: bool) -> (Option<String>, i64) {
        let schedule = cron::parse(cj["spec"]["schedule"].as_str().unwrap()).unwrap();
        let (t, missed) =
            most_recent_schedule_time(cj, at(now), &schedule, Tz::UTC, deadline).unwrap();
        (t.map(|t| t.to_rfc3339()), missed)
    }

    #[test]
    fn nothing_is_due_before_the_first_schedule() {
        let cj = cron_job("0 * * * *", "2024-05-01T10:05:00Z");
        assert_eq!(recent(&cj, "2024-05-01T10:59:59Z", true), (None, 0));
        assert_eq!(
            recent(&cj, "2024-05-01T11:00:30Z", true),
            (Some("2024-05-01T11:00:00+00:00".into()), 1)
        );
    }

    #[test]
    fn after_a_restart_only_the_most_recent_missed_schedule_runs() {
        let mut cj = cron_job("0 * * * *", "2024-05-01T00:00:00Z");
        cj["status"] = json!({"lastScheduleTime": "2024-05-01T10:00:00Z"});
        // The controller was down from 10:00 to 15:20: five runs were missed.
        assert_eq!(
            recent(&cj, "2024-05-01T15:20:00Z", true),
            (Some("2024-05-01T15:00:00+00:00".into()), 5)
        );
    }

    #[test]
    fn a_starting_deadline_narrows_the_window_and_too_many_misses_are_counted() {
        let mut cj = cron_job("* * * * *", "2024-01-01T00:00:00Z");
        // Months of minutes missed: counted (a warning), the latest still due.
        let (t, missed) = recent(&cj, "2024-03-01T00:00:30Z", true);
        assert_eq!(t.as_deref(), Some("2024-03-01T00:00:00+00:00"));
        assert!(missed > TOO_MANY_MISSED, "{missed}");
        // With a 200 s starting deadline only the last few minutes count.
        cj["spec"]["startingDeadlineSeconds"] = json!(200);
        let (t, missed) = recent(&cj, "2024-03-01T00:00:30Z", true);
        assert_eq!(t.as_deref(), Some("2024-03-01T00:00:00+00:00"));
        assert!(missed <= 4, "{missed}");
    }

    #[test]
    fn jobs_are_named_by_minute_and_carry_the_scheduled_time() {
        let cj = cron_job("0 * * * *", "2024-05-01T00:00:00Z");
        let t = at("2024-05-01T11:00:00Z");
        let job = job_from_template(&cj, t, "Europe/Berlin".parse().unwrap());
        assert_eq!(
            job["metadata"]["name"],
            format!("backup-{}", t.timestamp() / 60)
        );
        assert_eq!(
            job["metadata"]["annotations"][SCHEDULED_TIMESTAMP_ANNOTATION],
            "2024-05-01T13:00:00+02:00"
        );
        assert_eq!(job["metadata"]["labels"], json!({"app": "backup"}));
        assert_eq!(job["metadata"]["ownerReferences"][0]["kind"], "CronJob");
        assert_eq!(job["metadata"]["ownerReferences"][0]["controller"], true);
        assert_eq!(job["spec"]["template"]["spec"]["restartPolicy"], "Never");
    }

    #[test]
    fn history_limits_prune_the_oldest_finished_jobs() {
        let cj = cron_job("* * * * *", "2024-05-01T00:00:00Z");
        let job = |name: &str, start: &str, ty: &str| {
            crate::store::make_kv(
                name,
                json!({"metadata": {"name": name}, "status": {"startTime": start,
                    "conditions": [{"type": ty, "status": "True"}]}}),
                1,
                1,
            )
        };
        let jobs = vec![
            job("s3", "2024-05-01T00:03:00Z", "Complete"),
            job("s1", "2024-05-01T00:01:00Z", "Complete"),
            job("s2", "2024-05-01T00:02:00Z", "Complete"),
            job("f1", "2024-05-01T00:01:30Z", "Failed"),
            job("f2", "2024-05-01T00:02:30Z", "Failed"),
            crate::store::make_kv("running", json!({"metadata": {"name": "running"}}), 1, 1),
        ];
        let pruned: Vec<&str> = jobs_to_prune(&cj, &jobs)
            .iter()
            .map(|j| object::name(&j.value))
            .collect();
        assert_eq!(pruned, ["s1", "f1"]);
    }

    #[test]
    fn the_next_sync_waits_for_the_next_schedule() {
        let schedule = cron::parse("*/5 * * * *").unwrap();
        let wait = next_schedule_in(&schedule, Tz::UTC, at("2024-05-01T10:01:00Z")).unwrap();
        assert_eq!(wait, Duration::from_secs(240) + NEXT_SCHEDULE_DELTA);
    }
}
