//! Job and CronJob rules (batch/v1): counts, completion modes, pod failure policies,
//! the pod template's restart policy, cron schedules and time zones, and what an
//! update may not change — as upstream `pkg/apis/batch/validation`.

use serde_json::{Map, Value};

use crate::api::cron;
use crate::api::selector::LabelSelector;

use super::field_error::{go_label_selector, go_string_map, render, FieldError};
use super::meta::{validate_annotations, validate_labels};
use super::names::{is_qualified_name, FIELD_IMMUTABLE};
use super::pod::validate_pod_spec;
use super::workloads::validate_label_selector;
use super::{arr_at, field, int_at, non_negative, obj_at, str_at, Errs};

/// Most completions (and parallelism) of an Indexed Job.
const MAX_INDEXED_COMPLETIONS: i64 = 100_000;
/// Most rules of a pod failure policy.
const MAX_POD_FAILURE_POLICY_RULES: usize = 20;
/// Most exit codes in one `onExitCodes` requirement.
const MAX_EXIT_CODE_VALUES: usize = 255;
/// Longest CronJob name (its Jobs append `-<minutes since epoch>`, 11 characters).
const MAX_CRONJOB_NAME_LENGTH: usize = 52;

const FAILURE_POLICY_ACTIONS: [&str; 4] = ["Count", "FailIndex", "FailJob", "Ignore"];
const EXIT_CODE_OPERATORS: [&str; 2] = ["In", "NotIn"];
const CONDITION_STATUSES: [&str; 3] = ["False", "True", "Unknown"];

/// Go's `%q` of a string list: `["a" "b"]`.
fn go_quoted_list(items: &[&str]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| super::go_quote(s)).collect();
    format!("[{}]", quoted.join(" "))
}

fn template_labels(template: &Value) -> Option<&Map<String, Value>> {
    template.get("metadata").and_then(|m| obj_at(m, "labels"))
}

/// Upstream `ValidateJob` (with `ValidateJobSpecUpdate` when `old` is the stored Job).
pub(super) fn validate_job(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_job_spec(spec, "spec", true, errs);
    if let Some(old) = old {
        validate_job_spec_update(spec, &old["spec"], old, errs);
    }
}

/// Upstream `validateJobSpec`: `selector_required` is false inside a CronJob's template
/// (the Job made from it gets a generated selector).
fn validate_job_spec(spec: &Value, path: &str, selector_required: bool, errs: &mut Errs) {
    for key in [
        "parallelism",
        "completions",
        "activeDeadlineSeconds",
        "backoffLimit",
        "ttlSecondsAfterFinished",
        "backoffLimitPerIndex",
        "maxFailedIndexes",
    ] {
        non_negative(spec, key, path, errs);
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    match field(spec, "selector") {
        None if selector_required => {
            errs.push(FieldError::required(format!("{path}.selector"), ""))
        }
        None => {}
        Some(sel) => {
            validate_label_selector(sel, &format!("{path}.selector"), errs);
            match LabelSelector::from_k8s(sel) {
                Ok(s) if !s.is_empty() && !s.matches(template_labels(template)) => {
                    errs.push(FieldError::invalid_rendered(
                        format!("{path}.template.metadata.labels"),
                        go_string_map(template_labels(template)),
                        "`selector` does not match template `labels`",
                    ))
                }
                Ok(_) => {}
                Err(_) => errs.push(FieldError::invalid_rendered(
                    format!("{path}.selector"),
                    go_label_selector(sel),
                    "invalid label selector",
                )),
            }
        }
    }
    let mode = str_at(spec, "completionMode");
    let indexed = mode == "Indexed";
    if field(spec, "completionMode").is_some() && !matches!(mode, "NonIndexed" | "Indexed") {
        errs.push(FieldError::not_supported(
            format!("{path}.completionMode"),
            mode,
            &["NonIndexed", "Indexed"],
        ));
    }
    if indexed {
        match int_at(spec, "completions") {
            None => errs.push(FieldError::required(
                format!("{path}.completions"),
                "when completion mode is Indexed",
            )),
            Some(c) if c > MAX_INDEXED_COMPLETIONS => errs.push(FieldError::invalid_rendered(
                format!("{path}.completions"),
                c.to_string(),
                format!("must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"),
            )),
            Some(_) => {}
        }
        if let Some(p) = int_at(spec, "parallelism").filter(|p| *p > MAX_INDEXED_COMPLETIONS) {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.parallelism"),
                p.to_string(),
                format!("must be less than or equal to {MAX_INDEXED_COMPLETIONS} when completion mode is Indexed"),
            ));
        }
    }
    if field(spec, "backoffLimitPerIndex").is_some() && !indexed {
        errs.push(FieldError::forbidden(
            format!("{path}.backoffLimitPerIndex"),
            "requires indexed completion mode",
        ));
    }
    if field(spec, "maxFailedIndexes").is_some() && field(spec, "backoffLimitPerIndex").is_none() {
        errs.push(FieldError::required(
            format!("{path}.backoffLimitPerIndex"),
            "when maxFailedIndexes is specified",
        ));
    }
    validate_job_template(template, &format!("{path}.template"), errs);
    let restart = str_at(&template["spec"], "restartPolicy");
    if let Some(policy) = field(spec, "podFailurePolicy") {
        validate_pod_failure_policy(spec, policy, &format!("{path}.podFailurePolicy"), errs);
        if restart != "Never" {
            errs.push(FieldError::invalid(
                format!("{path}.template.spec.restartPolicy"),
                restart,
                "only \"Never\" is supported when podFailurePolicy is specified",
            ));
        }
    }
    if let Some(p) = field(spec, "podReplacementPolicy") {
        let p = p.as_str().unwrap_or("");
        if field(spec, "podFailurePolicy").is_some() {
            if p != "Failed" {
                errs.push(FieldError::not_supported(
                    format!("{path}.podReplacementPolicy"),
                    p,
                    &["Failed"],
                ));
            }
        } else if !matches!(p, "TerminatingOrFailed" | "Failed") {
            errs.push(FieldError::not_supported(
                format!("{path}.podReplacementPolicy"),
                p,
                &["Failed", "TerminatingOrFailed"],
            ));
        }
    }
}

/// The pod template of a Job: labels, annotations, the pod spec, and a restart policy
/// that lets pods finish.
fn validate_job_template(template: &Value, path: &str, errs: &mut Errs) {
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    validate_labels(obj_at(meta, "labels"), &format!("{path}.labels"), errs);
    validate_annotations(
        obj_at(meta, "annotations"),
        &format!("{path}.annotations"),
        errs,
    );
    let spec = template.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, &format!("{path}.spec"), errs);
    let policy = str_at(spec, "restartPolicy");
    if policy != "OnFailure" && policy != "Never" {
        errs.push(FieldError::not_supported(
            format!("{path}.spec.restartPolicy"),
            policy,
            &["OnFailure", "Never"],
        ));
    }
}

fn validate_pod_failure_policy(spec: &Value, policy: &Value, path: &str, errs: &mut Errs) {
    let rules = arr_at(policy, "rules");
    if rules.len() > MAX_POD_FAILURE_POLICY_RULES {
        errs.push(FieldError::too_many(
            format!("{path}.rules"),
            rules.len(),
            MAX_POD_FAILURE_POLICY_RULES,
        ));
    }
    let pod_spec = &spec["template"]["spec"];
    let container_names: Vec<&str> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| arr_at(pod_spec, list))
        .map(|c| str_at(c, "name"))
        .collect();
    for (i, rule) in rules.iter().enumerate() {
        let rule_path = format!("{path}.rules[{i}]");
        let action = str_at(rule, "action");
        if action.is_empty() {
            errs.push(FieldError::required(
                format!("{rule_path}.action"),
                format!("valid values: {}", go_quoted_list(&FAILURE_POLICY_ACTIONS)),
            ));
        } else if action == "FailIndex" {
            if field(spec, "backoffLimitPerIndex").is_none() {
                errs.push(FieldError::invalid(
                    format!("{rule_path}.action"),
                    action,
                    "requires the backoffLimitPerIndex to be set",
                ));
            }
        } else if !FAILURE_POLICY_ACTIONS.contains(&action) {
            errs.push(FieldError::not_supported(
                format!("{rule_path}.action"),
                action,
                &FAILURE_POLICY_ACTIONS,
            ));
        }
        let on_exit = field(rule, "onExitCodes");
        let on_conditions = arr_at(rule, "onPodConditions");
        if let Some(req) = on_exit {
            validate_on_exit_codes(
                req,
                &format!("{rule_path}.onExitCodes"),
                &container_names,
                errs,
            );
        }
        for (j, pattern) in on_conditions.iter().enumerate() {
            let p = format!("{rule_path}.onPodConditions[{j}]");
            let status = str_at(pattern, "status");
            if status.is_empty() {
                errs.push(FieldError::required(
                    format!("{p}.status"),
                    format!("valid values: {}", go_quoted_list(&CONDITION_STATUSES)),
                ));
            } else if !CONDITION_STATUSES.contains(&status) {
                errs.push(FieldError::not_supported(
                    format!("{p}.status"),
                    status,
                    &CONDITION_STATUSES,
                ));
            }
            let ty = str_at(pattern, "type");
            for m in is_qualified_name(ty) {
                errs.push(FieldError::invalid(format!("{p}.type"), ty, m));
            }
        }
        match (on_exit.is_some(), on_conditions.is_empty()) {
            (true, false) => errs.push(FieldError::invalid_rendered(
                rule_path,
                "",
                "specifying both OnExitCodes and OnPodConditions is not supported",
            )),
            (false, true) => errs.push(FieldError::invalid_rendered(
                rule_path,
                "",
                "specifying one of OnExitCodes and OnPodConditions is required",
            )),
            _ => {}
        }
    }
}

fn validate_on_exit_codes(req: &Value, path: &str, containers: &[&str], errs: &mut Errs) {
    if let Some(name) = field(req, "containerName").and_then(Value::as_str) {
        if !containers.contains(&name) {
            errs.push(FieldError::invalid(
                format!("{path}.containerName"),
                name,
                "must be one of the container or initContainer names in the pod template",
            ));
        }
    }
    let op = str_at(req, "operator");
    if op.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.operator"),
            format!("valid values: {}", go_quoted_list(&EXIT_CODE_OPERATORS)),
        ));
    } else if !EXIT_CODE_OPERATORS.contains(&op) {
        errs.push(FieldError::not_supported(
            format!("{path}.operator"),
            op,
            &EXIT_CODE_OPERATORS,
        ));
    }
    let values = arr_at(req, "values");
    if values.is_empty() || values.len() > MAX_EXIT_CODE_VALUES {
        errs.push(FieldError::invalid_rendered(
            format!("{path}.values"),
            render(&req["values"]),
            format!("at least one value is required, and no more than {MAX_EXIT_CODE_VALUES} are allowed"),
        ));
    }
    let mut prev = -1;
    let mut seen = std::collections::BTreeSet::new();
    for (i, v) in values.iter().enumerate() {
        let v = v.as_i64().unwrap_or(0);
        let p = format!("{path}.values[{i}]");
        if op == "In" && v == 0 {
            errs.push(FieldError::invalid_rendered(
                &p,
                "0",
                "must not be 0 for the In operator",
            ));
        }
        if !seen.insert(v) {
            errs.push(FieldError::duplicate_rendered(&p, v.to_string()));
        }
        if prev > v {
            errs.push(FieldError::invalid_rendered(
                &p,
                v.to_string(),
                "must be ordered",
            ));
        }
        prev = v;
    }
}

/// Upstream `ValidateJobSpecUpdate`: selector, completion mode and failure policies never
/// change; completions only for Indexed Jobs together with parallelism; the template
/// only in its scheduling directives while the Job is suspended and never started.
fn validate_job_spec_update(spec: &Value, old_spec: &Value, old: &Value, errs: &mut Errs) {
    let immutable = |key: &str, errs: &mut Errs| {
        let (new, prev) = (spec.get(key), old_spec.get(key));
        if new.filter(|v| !v.is_null()) != prev.filter(|v| !v.is_null()) {
            errs.push(FieldError::invalid_rendered(
                format!("spec.{key}"),
                new.map(render).unwrap_or_else(|| "null".into()),
                FIELD_IMMUTABLE,
            ));
        }
    };
    for key in [
        "selector",
        "completionMode",
        "podFailurePolicy",
        "backoffLimitPerIndex",
        "managedBy",
        "successPolicy",
    ] {
        immutable(key, errs);
    }
    if str_at(spec, "completionMode") == "Indexed" {
        let changed = spec.get("completions") != old_spec.get("completions");
        if changed
            && int_at(spec, "completions").is_some()
            && spec["completions"] != spec["parallelism"]
        {
            errs.push(FieldError::invalid_rendered(
                "spec.completions",
                render(&spec["completions"]),
                "can only be modified in tandem with spec.parallelism",
            ));
        }
    } else {
        immutable("completions", errs);
    }
    let mut template = spec["template"].clone();
    let mut old_template = old_spec["template"].clone();
    let never_started = old["status"]["startTime"].is_null();
    if spec["suspend"] == true && never_started {
        // Scheduling directives may change before a suspended Job first starts.
        for t in [&mut template, &mut old_template] {
            for (part, key) in [
                ("metadata", "labels"),
                ("metadata", "annotations"),
                ("spec", "nodeSelector"),
                ("spec", "affinity"),
                ("spec", "tolerations"),
                ("spec", "schedulingGates"),
            ] {
                if let Some(m) = t.get_mut(part).and_then(Value::as_object_mut) {
                    m.remove(key);
                }
            }
        }
    }
    if template != old_template {
        errs.push(FieldError::invalid_rendered(
            "spec.template",
            render(&spec["template"]),
            FIELD_IMMUTABLE,
        ));
    }
}

/// Upstream `ValidateCronJobCreate`/`ValidateCronJobUpdate`.
pub(super) fn validate_cron_job(obj: &Value, errs: &mut Errs) {
    let name = crate::api::object::name(obj);
    if name.len() > MAX_CRONJOB_NAME_LENGTH {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            format!("must be no more than {MAX_CRONJOB_NAME_LENGTH} characters"),
        ));
    }
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let schedule = str_at(spec, "schedule");
    if schedule.is_empty() {
        errs.push(FieldError::required("spec.schedule", ""));
    } else {
        if let Err(e) = cron::parse(schedule) {
            errs.push(FieldError::invalid(
                "spec.schedule",
                schedule,
                e.to_string(),
            ));
        }
        if schedule.contains("TZ") {
            errs.push(FieldError::invalid(
                "spec.schedule",
                schedule,
                "cannot use TZ or CRON_TZ in schedule, use timeZone field instead",
            ));
        }
    }
    validate_time_zone(spec, errs);
    non_negative(spec, "startingDeadlineSeconds", "spec", errs);
    non_negative(spec, "successfulJobsHistoryLimit", "spec", errs);
    non_negative(spec, "failedJobsHistoryLimit", "spec", errs);
    let policy = str_at(spec, "concurrencyPolicy");
    if policy.is_empty() {
        errs.push(FieldError::required("spec.concurrencyPolicy", ""));
    } else if !matches!(policy, "Allow" | "Forbid" | "Replace") {
        errs.push(FieldError::not_supported(
            "spec.concurrencyPolicy",
            policy,
            &["Allow", "Forbid", "Replace"],
        ));
    }
    let template = spec.get("jobTemplate").unwrap_or(&Value::Null);
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    validate_labels(
        obj_at(meta, "labels"),
        "spec.jobTemplate.metadata.labels",
        errs,
    );
    validate_annotations(
        obj_at(meta, "annotations"),
        "spec.jobTemplate.metadata.annotations",
        errs,
    );
    let job_spec = template.get("spec").unwrap_or(&Value::Null);
    validate_job_spec(job_spec, "spec.jobTemplate.spec", false, errs);
    if job_spec["manualSelector"] == true {
        errs.push(FieldError::not_supported(
            "spec.jobTemplate.spec.manualSelector",
            "true",
            &["nil", "false"],
        ));
    }
}

fn validate_time_zone(spec: &Value, errs: &mut Errs) {
    let Some(tz) = field(spec, "timeZone") else {
        return;
    };
    let tz = tz.as_str().unwrap_or("");
    let path = "spec.timeZone";
    if tz.is_empty() {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be nil or non-empty string",
        ));
        return;
    }
    let bad_part = tz.split('/').any(|part| {
        part == "."
            || part == ".."
            || part.starts_with('-')
            || part.is_empty()
            || !part
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '+'))
    });
    if bad_part {
        errs.push(FieldError::invalid(
            path,
            tz,
            format!("unknown time zone {tz}"),
        ));
        return;
    }
    if tz.eq_ignore_ascii_case("Local") {
        errs.push(FieldError::invalid(
            path,
            tz,
            "timeZone must be an explicit time zone as defined in https://www.iana.org/time-zones",
        ));
    } else if cron::time_zone(Some(tz)).is_none() {
        errs.push(FieldError::invalid(
            path,
            tz,
            format!("unknown time zone {tz}"),
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::defaults::apply_defaults;
    use crate::api::validation::validate;

    fn job() -> serde_json::Value {
        json!({
            "apiVersion": "batch/v1", "kind": "Job",
            "metadata": {"name": "pi", "namespace": "default", "uid": "u1"},
            "spec": {
                "selector": {"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}},
                "template": {
                    "metadata": {"labels": {"batch.kubernetes.io/controller-uid": "u1"}},
                    "spec": {"restartPolicy": "Never",
                             "containers": [{"name": "main", "image": "busybox"}]}}
            }
        })
    }

    fn errors(
        kind: &str,
        mut obj: serde_json::Value,
        old: Option<&serde_json::Value>,
    ) -> Vec<String> {
        apply_defaults(kind, &mut obj);
        validate(kind, &obj, old)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn a_defaulted_job_is_valid() {
        assert_eq!(errors("Job", job(), None), Vec::<String>::new());
    }

    #[test]
    fn negative_counts_and_restart_always_are_refused_with_field_paths() {
        let mut j = job();
        j["spec"]["completions"] = json!(-1);
        j["spec"]["parallelism"] = json!(-2);
        j["spec"]["template"]["spec"]["restartPolicy"] = json!("Always");
        let errs = errors("Job", j, None);
        assert!(
            errs.contains(
                &"spec.completions: Invalid value: -1: must be greater than or equal to 0"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.contains(
                &"spec.parallelism: Invalid value: -2: must be greater than or equal to 0"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(errs.contains(&"spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\"".to_string()), "{errs:?}");
    }

    #[test]
    fn indexed_jobs_need_completions() {
        let mut j = job();
        j["spec"]["completionMode"] = json!("Indexed");
        j["spec"]["parallelism"] = json!(2);
        let errs = errors("Job", j, None);
        assert_eq!(
            errs,
            ["spec.completions: Required value: when completion mode is Indexed"]
        );
    }

    #[test]
    fn pod_failure_policies_are_checked_rule_by_rule() {
        let mut j = job();
        j["spec"]["podFailurePolicy"] = json!({"rules": [
            {"action": "FailJob", "onExitCodes": {"operator": "In", "values": [0, 3, 2]}},
            {"action": "Explode", "onPodConditions": [{"type": "DisruptionTarget"}]},
            {"action": "Ignore"},
        ]});
        let errs = errors("Job", j, None);
        assert!(errs.contains(&"spec.podFailurePolicy.rules[0].onExitCodes.values[0]: Invalid value: 0: must not be 0 for the In operator".to_string()), "{errs:?}");
        assert!(errs.contains(&"spec.podFailurePolicy.rules[0].onExitCodes.values[2]: Invalid value: 2: must be ordered".to_string()), "{errs:?}");
        assert!(errs.contains(&"spec.podFailurePolicy.rules[1].action: Unsupported value: \"Explode\": supported values: \"Count\", \"FailIndex\", \"FailJob\", \"Ignore\"".to_string()), "{errs:?}");
        assert!(
            errs.iter().any(
                |e| e.starts_with("spec.podFailurePolicy.rules[2]: Invalid value")
                    && e.ends_with("specifying one of OnExitCodes and OnPodConditions is required")
            ),
            "{errs:?}"
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    #[test]
    fn updates_keep_selector_completions_and_template() {
        let mut old = job();
        apply_defaults("Job", &mut old);
        old["status"] = json!({"startTime": "2024-01-01T00:00:00Z"});
        let mut new = old.clone();
        new["spec"]["completions"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("other");
        new["spec"]["parallelism"] = json!(3);
        let errs = errors("Job", new, Some(&old));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].starts_with("spec.completions: Invalid value: 5: field is immutable"));
        assert!(errs[1].starts_with("spec.template: Invalid value"));
    }

    #[test]
    fn a_suspended_job_that_never_ran_may_change_its_node_selector() {
        let mut old = job();
        old["spec"]["suspend"] = json!(true);
        apply_defaults("Job", &mut old);
        let mut new = old.clone();
        new["spec"]["template"]["spec"]["nodeSelector"] = json!({"disk": "ssd"});
        assert_eq!(errors("Job", new.clone(), Some(&old)), Vec::<String>::new());
        old["status"] = json!({"startTime": "2024-01-01T00:00:00Z"});
        assert_eq!(errors("Job", new, Some(&old)).len(), 1);
    }

    fn cron_job(schedule: &str) -> serde_json::Value {
        json!({
            "apiVersion": "batch/v1", "kind": "CronJob",
            "metadata": {"name": "hello", "namespace": "default"},
            "spec": {"schedule": schedule, "jobTemplate": {"spec": {"template": {"spec": {
                "restartPolicy": "OnFailure",
                "containers": [{"name": "c", "image": "busybox"}]}}}}}
        })
    }

    #[test]
    fn cron_jobs_need_a_valid_schedule() {
        assert_eq!(
            errors("CronJob", cron_job("*/5 * * * *"), None),
            Vec::<String>::new()
        );
        assert_eq!(
            errors("CronJob", cron_job("@hourly"), None),
            Vec::<String>::new()
        );
        assert_eq!(
            errors("CronJob", cron_job("61 * * * *"), None),
            ["spec.schedule: Invalid value: \"61 * * * *\": end of range (61) above maximum (59): 61"]
        );
        assert_eq!(
            errors("CronJob", cron_job("TZ=UTC * * * * *"), None),
            ["spec.schedule: Invalid value: \"TZ=UTC * * * * *\": cannot use TZ or CRON_TZ in schedule, use timeZone field instead"]
        );
        assert_eq!(
            errors("CronJob", cron_job(""), None),
            ["spec.schedule: Required value"]
        );
    }

    #[test]
    fn cron_jobs_name_real_time_zones_and_policies() {
        let mut cj = cron_job("0 9 * * *");
        cj["spec"]["timeZone"] = json!("Europe/Berlin");
        assert_eq!(errors("CronJob", cj.clone(), None), Vec::<String>::new());
        cj["spec"]["timeZone"] = json!("Mars/Olympus");
        cj["spec"]["concurrencyPolicy"] = json!("Sometimes");
        cj["spec"]["startingDeadlineSeconds"] = json!(-5);
        let errs = errors("CronJob", cj, None);
        assert_eq!(
            errs,
            [
                "spec.timeZone: Invalid value: \"Mars/Olympus\": unknown time zone Mars/Olympus",
                "spec.startingDeadlineSeconds: Invalid value: -5: must be greater than or equal to 0",
                "spec.concurrencyPolicy: Unsupported value: \"Sometimes\": supported values: \"Allow\", \"Forbid\", \"Replace\"",
            ]
        );
        let mut always = cron_job("@daily");
        always["spec"]["jobTemplate"]["spec"]["template"]["spec"]["restartPolicy"] =
            json!("Always");
        assert_eq!(
            errors("CronJob", always, None),
            ["spec.jobTemplate.spec.template.spec.restartPolicy: Unsupported value: \"Always\": supported values: \"OnFailure\", \"Never\""]
        );
    }
}
