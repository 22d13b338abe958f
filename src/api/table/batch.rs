//! Jobs and CronJobs as `kubectl get` prints them (upstream `printJob`, `printCronJob`).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::cells::{
    age, arr, container_cells, format_label_selector, human_duration, int, parse_time, str_at,
};
use super::columns::{age_col, col, name_col, DESC_CONTAINERS, DESC_IMAGES};
use super::{name, no_conditions, Printer};

const DESC_JOB_SELECTOR: &str = "A label query over pods that should match the pod count. Normally, the system sets this field for you. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors";

fn job_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Status", "string", "Status of the job.", 0),
        col("Completions", "string", "The number of pods which reached phase Succeeded. The value increases monotonically for a given spec. However, it may decrease in reaction to scale down of elastic indexed jobs.", 0),
        col("Duration", "string", "Time required to complete the job.", 0),
        age_col(),
        col("Containers", "string", DESC_CONTAINERS, 1),
        col("Images", "string", DESC_IMAGES, 1),
        col("Selector", "string", DESC_JOB_SELECTOR, 1),
    ]
}

fn cron_job_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Schedule", "string", "The schedule in Cron format, see https://en.wikipedia.org/wiki/Cron.", 0),
        col("Timezone", "string", "The time zone name for the given schedule, see https://en.wikipedia.org/wiki/List_of_tz_database_time_zones. If not specified, this will default to the time zone of the kube-controller-manager process. The set of valid time zone names and the time zone offset is loaded from the system-wide time zone database by the API server during CronJob validation and the controller manager during execution. If no system-wide time zone database can be found a bundled version of the database is used instead. If the time zone name becomes invalid during the lifetime of a CronJob or due to a change in host configuration, the controller will stop creating new new Jobs and will create a system event with the reason UnknownTimeZone. More information can be found in https://kubernetes.io/docs/concepts/workloads/controllers/cron-jobs/#time-zones", 0),
        col("Suspend", "boolean", "This flag tells the controller to suspend subsequent executions, it does not apply to already started executions.  Defaults to false.", 0),
        col("Active", "integer", "A list of pointers to currently running jobs.", 0),
        col("Last Schedule", "string", "Information when was the last time the job was successfully scheduled.", 0),
        age_col(),
        col("Containers", "string", DESC_CONTAINERS, 1),
        col("Images", "string", DESC_IMAGES, 1),
        col("Selector", "string", DESC_JOB_SELECTOR, 1),
    ]
}

/// Whether the Job has a condition of `ty` with status True.
fn has_condition(job: &Value, ty: &str) -> bool {
    arr(&job["status"]["conditions"])
        .iter()
        .any(|c| c["type"] == ty && c["status"] == "True")
}

fn job_status(job: &Value) -> &'static str {
    if has_condition(job, "Complete") {
        "Complete"
    } else if has_condition(job, "Failed") {
        "Failed"
    } else if !job["metadata"]["deletionTimestamp"].is_null() {
        "Terminating"
    } else if has_condition(job, "Suspended") {
        "Suspended"
    } else if has_condition(job, "FailureTarget") {
        "FailureTarget"
    } else if has_condition(job, "SuccessCriteriaMet") {
        "SuccessCriteriaMet"
    } else {
        "Running"
    }
}

fn job_cells(job: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &job["spec"];
    let succeeded = int(&job["status"]["succeeded"]);
    let completions = match spec["completions"].as_i64() {
        Some(c) => format!("{succeeded}/{c}"),
        None => match int(&spec["parallelism"]) {
            p if p > 1 => format!("{succeeded}/1 of {p}"),
            _ => format!("{succeeded}/1"),
        },
    };
    let start = parse_time(&job["status"]["startTime"]);
    let duration = match (start, parse_time(&job["status"]["completionTime"])) {
        (None, _) => String::new(),
        (Some(s), None) => human_duration(now - s),
        (Some(s), Some(c)) => human_duration(c - s),
    };
    let (names, images) = container_cells(&spec["template"]);
    vec![
        name(job),
        json!(job_status(job)),
        json!(completions),
        json!(duration),
        json!(age(job, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(&spec["selector"])),
    ]
}

fn cron_job_cells(cj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &cj["spec"];
    let last = match parse_time(&cj["status"]["lastScheduleTime"]) {
        Some(t) => human_duration(now - t),
        None => "<none>".into(),
    };
    let tz = match spec["timeZone"].as_str() {
        Some(tz) => tz.to_string(),
        None => "<none>".into(),
    };
    let suspend = match spec["suspend"].as_bool() {
        None => "<unset>",
        Some(true) => "True",
        Some(false) => "False",
    };
    let job_spec = &spec["jobTemplate"]["spec"];
    let (names, images) = container_cells(&job_spec["template"]);
    vec![
        name(cj),
        json!(str_at(&spec["schedule"])),
        json!(tz),
        json!(suspend),
        json!(arr(&cj["status"]["active"]).len()),
        json!(last),
        json!(age(cj, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(&job_spec["selector"])),
    ]
}

pub static JOB: Printer = Printer {
    columns: job_columns,
    cells: job_cells,
    conditions: no_conditions,
};

pub static CRON_JOB: Printer = Printer {
    columns: cron_job_columns,
    cells: cron_job_cells,
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::table::RowPrinter;

    fn ago(now: DateTime<Utc>, secs: i64) -> String {
        crate::api::object::timestamp(now - chrono::Duration::seconds(secs))
    }

    #[test]
    fn jobs_print_status_completions_and_duration() {
        let now = Utc::now();
        let job = json!({
            "metadata": {"name": "pi", "creationTimestamp": ago(now, 120)},
            "spec": {"completions": 3, "parallelism": 2,
                     "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u"}},
                     "template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}},
            "status": {"succeeded": 3, "startTime": ago(now, 100), "completionTime": ago(now, 55),
                       "conditions": [{"type": "SuccessCriteriaMet", "status": "True"},
                                      {"type": "Complete", "status": "True"}]},
        });
        assert_eq!(
            JOB.row(&job, now),
            [
                json!("pi"),
                json!("Complete"),
                json!("3/3"),
                json!("45s"),
                json!("2m"),
                json!("c"),
                json!("busybox"),
                json!("batch.kubernetes.io/controller-uid=u")
            ]
        );
        let running = json!({"metadata": {"name": "w"}, "spec": {"parallelism": 4},
                             "status": {"succeeded": 1, "startTime": ago(now, 10)}});
        let row = JOB.row(&running, now);
        assert_eq!(
            row[1..4],
            [json!("Running"), json!("1/1 of 4"), json!("10s")]
        );
        let failing = json!({"metadata": {"name": "f"}, "spec": {"completions": 1},
            "status": {"conditions": [{"type": "FailureTarget", "status": "True"}]}});
        assert_eq!(
            JOB.row(&failing, now)[1..4],
            [json!("FailureTarget"), json!("0/1"), json!("")]
        );
    }

    #[test]
    fn cron_jobs_print_schedule_zone_suspend_active_and_last_schedule() {
        let now = Utc::now();
        let cj = json!({
            "metadata": {"name": "hello", "creationTimestamp": ago(now, 600)},
            "spec": {"schedule": "*/1 * * * *", "suspend": false,
                     "jobTemplate": {"spec": {"template": {"spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}},
            "status": {"active": [{"name": "hello-1"}], "lastScheduleTime": ago(now, 30)},
        });
        assert_eq!(
            CRON_JOB.row(&cj, now),
            [
                json!("hello"),
                json!("*/1 * * * *"),
                json!("<none>"),
                json!("False"),
                json!(1),
                json!("30s"),
                json!("10m"),
                json!("c"),
                json!("busybox"),
                json!("<none>")
            ]
        );
        assert_eq!(CRON_JOB.column_definitions().len(), 10);
    }
}
