//! Job and CronJob rules (upstream `pkg/registry/batch/{job,cronjob}/strategy.go`):
//! created with an empty status (their controllers own it), a Job gets its generated
//! selector and pod labels unless it asks for a manual selector, and a batch/v1 Job
//! deleted without a propagation policy orphans its pods, as upstream.

use serde_json::{json, Map, Value};

use crate::api::batch::{
    CONTROLLER_UID_LABEL, JOB_NAME_LABEL, LEGACY_CONTROLLER_UID_LABEL, LEGACY_JOB_NAME_LABEL,
};
use crate::api::defaults;
use crate::api::object;
use crate::api::selector;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy, NAME_AND_NAMESPACE};

pub struct JobStrategy;
pub struct CronJobStrategy;

pub static JOB: JobStrategy = JobStrategy;
pub static CRON_JOB: CronJobStrategy = CronJobStrategy;

/// Upstream `generateSelector`: labels the pod template with the Job's name and uid
/// (keeping labels the user set) and selects the uid label.
pub fn generate_selector(job: &mut Value) {
    let name = object::name(job).to_string();
    let uid = object::uid(job).unwrap_or("").to_string();
    let Some(spec) = job.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let template = object_at(spec, "template");
    let labels = object_at(object_at(template, "metadata"), "labels");
    for (key, value) in [
        (LEGACY_JOB_NAME_LABEL, &name),
        (JOB_NAME_LABEL, &name),
        (LEGACY_CONTROLLER_UID_LABEL, &uid),
        (CONTROLLER_UID_LABEL, &uid),
    ] {
        labels.entry(key).or_insert_with(|| json!(value));
    }
    let selector = object_at(spec, "selector");
    object_at(selector, "matchLabels")
        .entry(CONTROLLER_UID_LABEL)
        .or_insert_with(|| json!(uid));
}

/// The object at `key`, made an empty object when absent or of another type.
fn object_at<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = m.entry(key).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

/// Upstream Job field labels.
const JOB_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.successful"];

impl Strategy for JobStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::batch::v1::Job>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::JOB
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        JOB_FIELDS
    }

    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "status.successful" => obj["status"]["succeeded"].as_i64().unwrap_or(0).to_string(),
            _ => selector::field_value(obj, field),
        }
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        if obj["spec"]["manualSelector"] != true {
            generate_selector(obj);
        }
        defaults::apply_defaults(cx.def.kind, obj);
    }

    fn default_propagation(&self) -> Option<&'static str> {
        Some("Orphan")
    }
}

impl Strategy for CronJobStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::batch::v1::CronJob>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::CRON_JOB
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        NAME_AND_NAMESPACE
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        if let Some(o) = obj.as_object_mut() {
            o.remove("status");
        }
        defaults::apply_defaults(cx.def.kind, obj);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_selectors_select_the_uid_and_label_the_template() {
        let mut job = json!({"metadata": {"name": "pi", "uid": "u1"},
            "spec": {"template": {"metadata": {"labels": {"app": "pi", "job-name": "mine"}}}}});
        generate_selector(&mut job);
        assert_eq!(
            job["spec"]["template"]["metadata"]["labels"],
            json!({"app": "pi", "job-name": "mine", "batch.kubernetes.io/job-name": "pi",
                   "controller-uid": "u1", "batch.kubernetes.io/controller-uid": "u1"})
        );
        assert_eq!(
            job["spec"]["selector"],
            json!({"matchLabels": {"batch.kubernetes.io/controller-uid": "u1"}})
        );
    }

    #[test]
    fn jobs_select_by_succeeded_count_and_orphan_by_default() {
        let job = json!({"status": {"succeeded": 3}});
        assert_eq!(JOB.field_value(&job, "status.successful"), "3");
        assert_eq!(JOB.field_value(&json!({}), "status.successful"), "0");
        assert_eq!(JOB.default_propagation(), Some("Orphan"));
        assert_eq!(CRON_JOB.default_propagation(), None);
    }
}
