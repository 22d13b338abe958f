//! ReplicationController, ReplicaSet and Deployment rules: templates, selectors, rolling updates.

use serde_json::{Map, Value};

use crate::api::selector::LabelSelector;

use super::field_error::{go_label_selector, go_string_map, render, FieldError};
use super::meta::{validate_annotations, validate_labels};
use super::names::{is_qualified_name, is_valid_label_value, FIELD_IMMUTABLE, NON_NEGATIVE_ERR};
use super::pod::validate_pod_spec;
use super::{arr_at, field, int_at, is_empty_map, non_negative, obj_at, str_at, Errs};

fn validate_pod_template(template: &Value, path: &str, kind_label: &str, errs: &mut Errs) {
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
    if !policy.is_empty() && policy != "Always" {
        errs.push(FieldError::not_supported(
            format!("{path}.spec.restartPolicy"),
            policy,
            &["Always"],
        ));
    }
    if let Some(d) = field(spec, "activeDeadlineSeconds") {
        errs.push(FieldError::invalid_rendered(
            format!("{path}.spec.activeDeadlineSeconds"),
            d.to_string(),
            format!("activeDeadlineSeconds in {kind_label} is not Supported"),
        ));
    }
}

pub(super) fn template_labels(template: &Value) -> Option<&Map<String, Value>> {
    template.get("metadata").and_then(|m| obj_at(m, "labels"))
}

pub(super) fn validate_replication_controller(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    non_negative(spec, "minReadySeconds", "spec", errs);
    let selector = obj_at(spec, "selector");
    if is_empty_map(selector) {
        errs.push(FieldError::required("spec.selector", ""));
    }
    validate_labels(selector, "spec.selector", errs);
    non_negative(spec, "replicas", "spec", errs);
    let Some(template) = field(spec, "template") else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    if let Some(sel) = selector.filter(|m| !m.is_empty()) {
        if !LabelSelector::from_map(sel).matches(template_labels(template)) {
            errs.push(FieldError::invalid_rendered(
                "spec.template.metadata.labels",
                go_string_map(template_labels(template)),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_pod_template(template, "spec.template", "ReplicationController", errs);
}

pub(super) fn validate_apps_workload(
    kind: &str,
    obj: &Value,
    old: Option<&Value>,
    errs: &mut Errs,
) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    non_negative(spec, "replicas", "spec", errs);
    non_negative(spec, "minReadySeconds", "spec", errs);
    let selector = field(spec, "selector");
    let mut parsed = None;
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            validate_label_selector(sel, "spec.selector", errs);
            let empty = is_empty_map(obj_at(sel, "matchLabels"))
                && arr_at(sel, "matchExpressions").is_empty();
            if empty {
                errs.push(FieldError::invalid_rendered(
                    "spec.selector",
                    go_label_selector(sel),
                    "empty selector is invalid for deployment",
                ));
            }
            match LabelSelector::from_k8s(sel) {
                Ok(s) => parsed = Some(s),
                Err(_) => errs.push(FieldError::invalid_rendered(
                    "spec.selector",
                    go_label_selector(sel),
                    "invalid label selector",
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
    validate_pod_template(template, "spec.template", kind, errs);

    if kind == "Deployment" {
        validate_deployment_spec(spec, errs);
    }
    if let Some(old) = old {
        let old_sel = old.get("spec").and_then(|s| s.get("selector"));
        if old_sel.filter(|v| !v.is_null()) != selector {
            errs.push(FieldError::invalid_rendered(
                "spec.selector",
                go_label_selector(selector.unwrap_or(&Value::Null)),
                FIELD_IMMUTABLE,
            ));
        }
    }
}

/// Upstream `ValidateLabelSelector` (metav1): operators, keys, values.
pub fn validate_label_selector(sel: &Value, path: &str, errs: &mut Errs) {
    validate_labels(
        obj_at(sel, "matchLabels"),
        &format!("{path}.matchLabels"),
        errs,
    );
    for (i, e) in arr_at(sel, "matchExpressions").iter().enumerate() {
        let idx = format!("{path}.matchExpressions[{i}]");
        let values = arr_at(e, "values");
        match str_at(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{idx}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{idx}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                format!("{idx}.operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let key = str_at(e, "key");
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{idx}.key"), key, m));
        }
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for m in is_valid_label_value(v) {
                errs.push(FieldError::invalid(format!("{idx}.values[{j}]"), v, m));
            }
        }
    }
}

fn validate_deployment_spec(spec: &Value, errs: &mut Errs) {
    non_negative(spec, "revisionHistoryLimit", "spec", errs);
    if let Some(strategy) = field(spec, "strategy") {
        let rolling = field(strategy, "rollingUpdate");
        match str_at(strategy, "type") {
            "Recreate" => {
                if rolling.is_some() {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = rolling {
                    validate_rolling_update(ru, "spec.strategy.rollingUpdate", errs);
                }
            }
            other => errs.push(FieldError::not_supported(
                "spec.strategy.type",
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    if let Some(deadline) = int_at(spec, "progressDeadlineSeconds") {
        if deadline <= int_at(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(FieldError::invalid_rendered(
                "spec.progressDeadlineSeconds",
                deadline.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

/// An intOrString as (rendered, value, is_percent); None when malformed.
pub(super) fn int_or_percent(v: &Value, path: &str, errs: &mut Errs) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                errs.push(FieldError::invalid_rendered(
                    path,
                    n.to_string(),
                    NON_NEGATIVE_ERR,
                ));
                return None;
            }
            Some((n, false))
        }
        Value::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
            match digits.and_then(|d| d.parse().ok()) {
                Some(n) => Some((n, true)),
                None => {
                    errs.push(FieldError::invalid(
                        path,
                        s,
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    None
                }
            }
        }
        _ => None,
    }
}

fn validate_rolling_update(ru: &Value, path: &str, errs: &mut Errs) {
    let unavailable_path = format!("{path}.maxUnavailable");
    let unavailable = field(ru, "maxUnavailable")
        .and_then(|v| int_or_percent(v, &unavailable_path, errs).map(|r| (v, r)));
    let surge =
        field(ru, "maxSurge").and_then(|v| int_or_percent(v, &format!("{path}.maxSurge"), errs));
    if let (Some((raw, (0, _))), Some((0, _))) = (unavailable, surge) {
        errs.push(FieldError::invalid_rendered(
            &unavailable_path,
            render(raw),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if let Some((raw, (n, true))) = unavailable {
        if n > 100 {
            errs.push(FieldError::invalid_rendered(
                &unavailable_path,
                render(raw),
                "must not be greater than 100%",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use super::*;
    use crate::api::validation::test_support::{good_pod_spec, has, has_prefix, messages};
    use serde_json::json;

    fn rc(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "rc"}, "spec": {"replicas": 1, "selector": selector,
            "template": {"metadata": {"labels": labels}, "spec": good_pod_spec()}}})
    }

    #[test]
    fn rc_selector_must_match_template() {
        assert!(validate(
            "ReplicationController",
            &rc(json!({"app": "a"}), json!({"app": "a", "x": "y"})),
            None
        )
        .is_empty());
        let errs = validate(
            "ReplicationController",
            &rc(json!({"app": "a"}), json!({"app": "b"})),
            None,
        );
        assert_eq!(
            messages(&errs),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`"]
        );
        let errs = validate(
            "ReplicationController",
            &rc(json!({}), json!({"app": "b"})),
            None,
        );
        assert_eq!(messages(&errs), vec!["spec.selector: Required value"]);
    }

    #[test]
    fn rc_replicas_and_restart_policy() {
        let mut obj = rc(json!({"app": "a"}), json!({"app": "a"}));
        obj["spec"]["replicas"] = json!(-1);
        obj["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        let errs = validate("ReplicationController", &obj, None);
        assert!(has(
            &errs,
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        ));
        assert!(has(&errs, "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""));
    }

    fn deployment(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": selector,
            "template": {"metadata": {"labels": labels}, "spec": good_pod_spec()},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}})
    }

    #[test]
    fn deployment_valid_and_selector_checks() {
        let ok = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        assert_eq!(
            messages(&validate("Deployment", &ok, None)),
            Vec::<String>::new()
        );

        let expr = deployment(
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}),
            json!({"app": "db"}),
        );
        assert!(has_prefix(&validate("Deployment", &expr, None), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"));

        let mut missing = ok.clone();
        missing["spec"].as_object_mut().unwrap().remove("selector");
        assert!(has(
            &validate("ReplicaSet", &missing, None),
            "spec.selector: Required value"
        ));

        let empty = deployment(json!({}), json!({"app": "web"}));
        assert!(has(&validate("Deployment", &empty, None), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"));

        let bad_op = deployment(
            json!({"matchExpressions": [{"key": "app", "operator": "Like"}]}),
            json!({"app": "web"}),
        );
        assert!(has(&validate("Deployment", &bad_op, None), "spec.selector.matchExpressions[0].operator: Invalid value: \"Like\": not a valid selector operator"));
    }

    #[test]
    fn apps_selector_is_immutable() {
        let old = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "v": "2"}),
        );
        let new = deployment(
            json!({"matchLabels": {"app": "web", "v": "2"}}),
            json!({"app": "web", "v": "2"}),
        );
        assert_eq!(
            messages(&validate("Deployment", &new, Some(&old))),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
        );
        assert!(validate("Deployment", &old, Some(&old)).is_empty());
    }

    #[test]
    fn deployment_strategy_checks() {
        let mut d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        d["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        assert!(has(&validate("Deployment", &d, None), "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"));
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "150%"}});
        let errs = validate("Deployment", &d, None);
        assert!(has_prefix(
            &errs,
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x%\": a valid percent string"
        ));
        assert!(has(&errs, "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"));
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
        assert!(has(&validate("Deployment", &d, None), "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"));
        d["spec"]["strategy"] = json!({"type": "BlueGreen"});
        assert!(has(&validate("Deployment", &d, None), "spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\""));
    }
}
