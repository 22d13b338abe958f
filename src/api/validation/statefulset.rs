//! StatefulSet rules (upstream `ValidateStatefulSet`, `ValidateStatefulSetUpdate` and
//! `ValidateStatefulSetStatusUpdate`): policies, selector against template labels,
//! claim templates, and which parts of the spec an update may change.

use serde_json::Value;

use crate::api::selector::LabelSelector;

use super::field_error::{go_label_selector, go_string_map, render, FieldError};
use super::names::{is_dns1123_label, FIELD_IMMUTABLE, NON_NEGATIVE_ERR};
use super::workloads::{
    int_or_percent, template_labels, validate_label_selector, validate_pod_template,
};
use super::{arr_at, field, int_at, is_empty_map, non_negative, obj_at, str_at, Errs};

/// The spec fields an update may change (upstream 1.32's list, in its message).
const MUTABLE_SPEC_FIELDS: [&str; 6] = [
    "replicas",
    "ordinals",
    "template",
    "updateStrategy",
    "persistentVolumeClaimRetentionPolicy",
    "minReadySeconds",
];

const IMMUTABLE_SPEC: &str = "updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden";

const RETENTION_POLICIES: [&str; 2] = ["Retain", "Delete"];

pub(super) fn validate_stateful_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_spec(spec, errs);
    if let Some(old) = old {
        let old_spec = old.get("spec").unwrap_or(&Value::Null);
        if !same_apart_from_mutable_fields(spec, old_spec) {
            errs.push(FieldError::forbidden("spec", IMMUTABLE_SPEC));
        }
        validate_status_update(obj, old, errs);
    }
}

fn validate_spec(spec: &Value, errs: &mut Errs) {
    match field(spec, "podManagementPolicy").map(|v| v.as_str().unwrap_or("")) {
        None | Some("") => errs.push(FieldError::required("spec.podManagementPolicy", "")),
        Some("OrderedReady" | "Parallel") => {}
        Some(other) => errs.push(FieldError::invalid(
            "spec.podManagementPolicy",
            other,
            "must be 'OrderedReady' or 'Parallel'",
        )),
    }
    validate_update_strategy(spec, errs);
    if let Some(policy) = field(spec, "persistentVolumeClaimRetentionPolicy") {
        for key in ["whenDeleted", "whenScaled"] {
            let value = str_at(policy, key);
            if !RETENTION_POLICIES.contains(&value) {
                errs.push(FieldError::not_supported(
                    format!("spec.persistentVolumeClaimRetentionPolicy.{key}"),
                    value,
                    &RETENTION_POLICIES,
                ));
            }
        }
    }
    non_negative(spec, "replicas", "spec", errs);
    non_negative(spec, "minReadySeconds", "spec", errs);
    non_negative(spec, "revisionHistoryLimit", "spec", errs);
    if let Some(start) = field(spec, "ordinals").and_then(|o| int_at(o, "start")) {
        if start < 0 {
            errs.push(FieldError::invalid_rendered(
                "spec.ordinals.start",
                start.to_string(),
                NON_NEGATIVE_ERR,
            ));
        }
    }
    let service_name = str_at(spec, "serviceName");
    if !service_name.is_empty() {
        for message in is_dns1123_label(service_name) {
            errs.push(FieldError::invalid(
                "spec.serviceName",
                service_name,
                message,
            ));
        }
    }
    let selector = field(spec, "selector");
    let mut parsed = None;
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            validate_label_selector(sel, "spec.selector", errs);
            if is_empty_map(obj_at(sel, "matchLabels"))
                && arr_at(sel, "matchExpressions").is_empty()
            {
                errs.push(FieldError::invalid_rendered(
                    "spec.selector",
                    go_label_selector(sel),
                    "empty selector is invalid for statefulset",
                ));
            }
            match LabelSelector::from_k8s(sel) {
                Ok(s) => parsed = Some(s),
                Err(_) => errs.push(FieldError::invalid_rendered(
                    "spec.selector",
                    go_label_selector(sel),
                    "",
                )),
            }
        }
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    if let Some(sel) = parsed.filter(|s| !s.is_empty()) {
        if !sel.matches(template_labels(template)) {
            errs.push(FieldError::invalid_rendered(
                "spec.template.metadata.labels",
                go_string_map(template_labels(template)),
                "`selector` does not match template `labels`",
            ));
        }
    }
    let claim_names = validate_claim_templates(spec, errs);
    // Mounts may name a claim template: the pods get a volume of that name.
    let mut with_claims = template.clone();
    add_claim_volumes(&mut with_claims, &claim_names);
    validate_pod_template(&with_claims, "spec.template", "StatefulSet", errs);
    if str_at(
        template.get("spec").unwrap_or(&Value::Null),
        "restartPolicy",
    )
    .is_empty()
    {
        errs.push(FieldError::not_supported(
            "spec.template.spec.restartPolicy",
            "",
            &["Always"],
        ));
    }
}

fn validate_update_strategy(spec: &Value, errs: &mut Errs) {
    let Some(strategy) = field(spec, "updateStrategy") else {
        errs.push(FieldError::required("spec.updateStrategy", ""));
        return;
    };
    let rolling = field(strategy, "rollingUpdate");
    match str_at(strategy, "type") {
        "" => errs.push(FieldError::required("spec.updateStrategy", "")),
        "OnDelete" => {
            if let Some(r) = rolling {
                errs.push(FieldError::invalid_rendered(
                    "spec.updateStrategy.rollingUpdate",
                    r.to_string(),
                    "only allowed for updateStrategy 'RollingUpdate'",
                ));
            }
        }
        "RollingUpdate" => {
            let Some(r) = rolling else { return };
            let path = "spec.updateStrategy.rollingUpdate";
            non_negative(r, "partition", path, errs);
            if let Some(raw) = field(r, "maxUnavailable") {
                let at = format!("{path}.maxUnavailable");
                match int_or_percent(raw, &at, errs) {
                    Some((0, _)) => errs.push(FieldError::invalid_rendered(
                        &at,
                        render(raw),
                        "cannot be 0",
                    )),
                    Some((n, true)) if n > 100 => errs.push(FieldError::invalid_rendered(
                        &at,
                        render(raw),
                        "must not be greater than 100%",
                    )),
                    _ => {}
                }
            }
        }
        other => errs.push(FieldError::invalid(
            "spec.updateStrategy",
            other,
            "must be 'RollingUpdate' or 'OnDelete'",
        )),
    }
}

/// Checks each claim template's name; returns the names.
fn validate_claim_templates(spec: &Value, errs: &mut Errs) -> Vec<String> {
    let mut names = Vec::new();
    for (i, claim) in arr_at(spec, "volumeClaimTemplates").iter().enumerate() {
        let path = format!("spec.volumeClaimTemplates[{i}]");
        let name = claim
            .get("metadata")
            .map(|m| str_at(m, "name"))
            .unwrap_or("");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{path}.metadata.name"), ""));
            continue;
        }
        for message in is_dns1123_label(name) {
            errs.push(FieldError::invalid(
                format!("{path}.metadata.name"),
                name,
                message,
            ));
        }
        if arr_at(claim.get("spec").unwrap_or(&Value::Null), "accessModes").is_empty() {
            errs.push(FieldError::required(
                format!("{path}.spec.accessModes"),
                "at least 1 access mode is required",
            ));
        }
        names.push(name.to_string());
    }
    names
}

/// Adds a `persistentVolumeClaim` volume per claim template the template has no
/// volume for (what the controller does to each pod).
fn add_claim_volumes(template: &mut Value, claims: &[String]) {
    let Some(spec) = template.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let volumes = spec
        .entry("volumes")
        .or_insert_with(|| Value::Array(vec![]));
    let Some(list) = volumes.as_array_mut() else {
        return;
    };
    for claim in claims {
        if !list.iter().any(|v| v["name"] == claim.as_str()) {
            list.push(serde_json::json!({"name": claim,
                "persistentVolumeClaim": {"claimName": claim}}));
        }
    }
}

/// Whether `new` equals `old` once the fields an update may change are set aside
/// (as upstream's semantic equality: a null, empty list and empty map are all unset).
fn same_apart_from_mutable_fields(new: &Value, old: &Value) -> bool {
    let strip = |spec: &Value| {
        let mut spec = spec.clone();
        if let Some(map) = spec.as_object_mut() {
            for key in MUTABLE_SPEC_FIELDS {
                map.remove(key);
            }
        }
        drop_unset(&mut spec);
        spec
    };
    strip(new) == strip(old)
}

/// Removes map entries that are null, empty lists or empty maps, depth first.
fn drop_unset(v: &mut Value) {
    match v {
        Value::Object(map) => {
            for item in map.values_mut() {
                drop_unset(item);
            }
            map.retain(|_, item| !is_unset(item));
        }
        Value::Array(items) => items.iter_mut().for_each(drop_unset),
        _ => {}
    }
}

fn is_unset(v: &Value) -> bool {
    match v {
        Value::Null => true,
        Value::Array(a) => a.is_empty(),
        Value::Object(m) => m.is_empty(),
        _ => false,
    }
}

/// Upstream `ValidateControllerRevision` and `ValidateControllerRevisionUpdate`: data
/// is required and never changes, the revision number is not negative.
pub(super) fn validate_controller_revision(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if field(obj, "data").is_none() {
        errs.push(FieldError::required("data", "data is mandatory"));
    }
    if let Some(n) = int_at(obj, "revision").filter(|n| *n < 0) {
        errs.push(FieldError::invalid_rendered(
            "revision",
            n.to_string(),
            NON_NEGATIVE_ERR,
        ));
    }
    if let Some(old) = old {
        if obj.get("data") != old.get("data") {
            errs.push(FieldError::invalid_rendered(
                "data",
                render(obj.get("data").unwrap_or(&Value::Null)),
                FIELD_IMMUTABLE,
            ));
        }
    }
}

/// Upstream `ValidateStatefulSetStatus` on updates: counts not negative nor above
/// `status.replicas`, and a collision count that never goes down.
fn validate_status_update(obj: &Value, old: &Value, errs: &mut Errs) {
    let Some(status) = field(obj, "status") else {
        return;
    };
    for key in [
        "replicas",
        "readyReplicas",
        "currentReplicas",
        "updatedReplicas",
        "availableReplicas",
        "observedGeneration",
        "collisionCount",
    ] {
        non_negative(status, key, "status", errs);
    }
    let replicas = int_at(status, "replicas").unwrap_or(0);
    for key in ["readyReplicas", "currentReplicas", "updatedReplicas"] {
        let n = int_at(status, key).unwrap_or(0);
        if n > replicas {
            errs.push(FieldError::invalid_rendered(
                format!("status.{key}"),
                n.to_string(),
                "cannot be greater than status.replicas",
            ));
        }
    }
    let before = old["status"]["collisionCount"].as_i64();
    let now = int_at(status, "collisionCount");
    if let Some(before) = before {
        if now.unwrap_or(0) < before {
            errs.push(FieldError::invalid_rendered(
                "status.collisionCount",
                now.unwrap_or(0).to_string(),
                "cannot be decremented",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use crate::api::validation::test_support::{good_pod_spec, has, has_prefix, messages};
    use serde_json::{json, Value};

    fn set() -> Value {
        let mut obj = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": 2, "serviceName": "web",
                "selector": {"matchLabels": {"app": "web"}},
                "podManagementPolicy": "OrderedReady",
                "updateStrategy": {"type": "RollingUpdate", "rollingUpdate": {"partition": 0}},
                "persistentVolumeClaimRetentionPolicy": {"whenDeleted": "Retain", "whenScaled": "Retain"},
                "revisionHistoryLimit": 10,
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": good_pod_spec()},
                "volumeClaimTemplates": [{"metadata": {"name": "data"},
                    "spec": {"accessModes": ["ReadWriteOnce"]}}]}});
        obj["spec"]["template"]["spec"]["containers"][0]["volumeMounts"] =
            json!([{"name": "data", "mountPath": "/data"}]);
        obj
    }

    #[test]
    fn a_defaulted_set_mounting_its_claim_template_is_valid() {
        assert_eq!(
            messages(&validate("StatefulSet", &set(), None)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn selector_policies_and_counts_are_checked() {
        let mut bad = set();
        bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "db"});
        bad["spec"]["replicas"] = json!(-1);
        bad["spec"]["podManagementPolicy"] = json!("Random");
        bad["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = json!("Keep");
        bad["spec"]["serviceName"] = json!("Web_Service");
        bad["spec"]["ordinals"] = json!({"start": -2});
        bad["spec"]["template"]["spec"]["restartPolicy"] = json!("Never");
        let errs = validate("StatefulSet", &bad, None);
        assert!(has(&errs, "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"));
        assert!(has(
            &errs,
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        ));
        assert!(has(
            &errs,
            "spec.podManagementPolicy: Invalid value: \"Random\": must be 'OrderedReady' or 'Parallel'"
        ));
        assert!(has(&errs, "spec.persistentVolumeClaimRetentionPolicy.whenScaled: Unsupported value: \"Keep\": supported values: \"Retain\", \"Delete\""));
        assert!(has_prefix(
            &errs,
            "spec.serviceName: Invalid value: \"Web_Service\": a lowercase RFC 1123 label"
        ));
        assert!(has(
            &errs,
            "spec.ordinals.start: Invalid value: -2: must be greater than or equal to 0"
        ));
        assert!(has(&errs, "spec.template.spec.restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""));
    }

    #[test]
    fn update_strategies_are_checked() {
        let mut s = set();
        s["spec"]["updateStrategy"] =
            json!({"type": "OnDelete", "rollingUpdate": {"partition": 1}});
        assert!(has_prefix(
            &validate("StatefulSet", &s, None),
            "spec.updateStrategy.rollingUpdate: Invalid value: "
        ));
        s["spec"]["updateStrategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"partition": -1, "maxUnavailable": 0}});
        let errs = validate("StatefulSet", &s, None);
        assert!(has(&errs, "spec.updateStrategy.rollingUpdate.partition: Invalid value: -1: must be greater than or equal to 0"));
        assert!(has(
            &errs,
            "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: 0: cannot be 0"
        ));
        s["spec"]["updateStrategy"] = json!({"type": "Sometimes"});
        assert!(has(
            &validate("StatefulSet", &s, None),
            "spec.updateStrategy: Invalid value: \"Sometimes\": must be 'RollingUpdate' or 'OnDelete'"
        ));
    }

    #[test]
    fn updates_may_change_only_the_mutable_fields() {
        let old = set();
        let mut new = set();
        new["spec"]["replicas"] = json!(5);
        new["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
        new["spec"]["updateStrategy"] = json!({"type": "OnDelete"});
        new["spec"]["minReadySeconds"] = json!(3);
        new["spec"]["ordinals"] = json!({"start": 1});
        assert_eq!(
            messages(&validate("StatefulSet", &new, Some(&old))),
            Vec::<String>::new()
        );
        for (field, value) in [
            ("serviceName", json!("other")),
            ("podManagementPolicy", json!("Parallel")),
            (
                "volumeClaimTemplates",
                json!([{"metadata": {"name": "data"}, "spec": {"accessModes": ["ReadWriteMany"]}}]),
            ),
            ("revisionHistoryLimit", json!(3)),
        ] {
            let mut changed = set();
            changed["spec"][field] = value;
            assert_eq!(
                messages(&validate("StatefulSet", &changed, Some(&old))),
                vec![format!("spec: Forbidden: {}", super::IMMUTABLE_SPEC)],
                "{field}"
            );
        }
    }

    #[test]
    fn controller_revisions_need_data_that_never_changes() {
        let revision = json!({"metadata": {"name": "web-1"}, "data": {"a": 1}, "revision": 1});
        assert!(validate("ControllerRevision", &revision, None).is_empty());
        let mut missing = revision.clone();
        missing.as_object_mut().unwrap().remove("data");
        missing["revision"] = json!(-1);
        let errs = validate("ControllerRevision", &missing, None);
        assert!(has(&errs, "data: Required value: data is mandatory"));
        assert!(has(
            &errs,
            "revision: Invalid value: -1: must be greater than or equal to 0"
        ));
        let mut changed = revision.clone();
        changed["data"] = json!({"a": 2});
        changed["revision"] = json!(3);
        assert!(has_prefix(
            &validate("ControllerRevision", &changed, Some(&revision)),
            "data: Invalid value: "
        ));
    }

    #[test]
    fn status_counts_stay_within_replicas_and_collisions_never_go_down() {
        let mut old = set();
        old["status"] = json!({"replicas": 2, "collisionCount": 2});
        let mut new = old.clone();
        new["status"] = json!({"replicas": 1, "readyReplicas": 2, "collisionCount": 1});
        let errs = validate("StatefulSet", &new, Some(&old));
        assert!(has(
            &errs,
            "status.readyReplicas: Invalid value: 2: cannot be greater than status.replicas"
        ));
        assert!(has(
            &errs,
            "status.collisionCount: Invalid value: 1: cannot be decremented"
        ));
    }
}
