//! DaemonSet rules (upstream `ValidateDaemonSet`, `ValidateDaemonSetSpec`,
//! `ValidateDaemonSetUpdateStrategy` and the strategy's selector immutability).

use serde_json::Value;

use crate::api::selector::LabelSelector;

use super::field_error::{go_label_selector, go_quote, go_string_map, render, FieldError};
use super::meta::{validate_annotations, validate_labels};
use super::names::FIELD_IMMUTABLE;
use super::pod::validate_pod_spec;
use super::workloads::{int_or_percent, template_labels, validate_label_selector};
use super::{arr_at, field, is_empty_map, non_negative, obj_at, str_at, Errs};

const STRATEGY_TYPES: [&str; 2] = ["RollingUpdate", "OnDelete"];

pub(super) fn validate_daemon_set(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let selector = field(spec, "selector");
    if let Some(sel) = selector {
        validate_label_selector(sel, "spec.selector", errs);
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    // A missing selector selects nothing, so it cannot match the template either.
    let matches = match selector {
        None => Some(false),
        Some(sel) => LabelSelector::from_k8s(sel)
            .ok()
            .map(|s| s.matches(template_labels(template))),
    };
    if matches == Some(false) {
        errs.push(FieldError::invalid_rendered(
            "spec.template.metadata.labels",
            go_string_map(template_labels(template)),
            "`selector` does not match template `labels`",
        ));
    }
    if let Some(sel) = selector {
        if is_empty_map(obj_at(sel, "matchLabels")) && arr_at(sel, "matchExpressions").is_empty() {
            errs.push(FieldError::invalid_rendered(
                "spec.selector",
                go_label_selector(sel),
                "empty selector is invalid for daemonset",
            ));
        }
    }
    validate_template(template, errs);
    non_negative(spec, "minReadySeconds", "spec", errs);
    validate_update_strategy(
        spec.get("updateStrategy").unwrap_or(&Value::Null),
        "spec.updateStrategy",
        errs,
    );
    non_negative(spec, "revisionHistoryLimit", "spec", errs);

    if let Some(old) = old {
        let old_sel = field(&old["spec"], "selector");
        if old_sel != selector {
            errs.push(FieldError::invalid_rendered(
                "spec.selector",
                go_label_selector(selector.unwrap_or(&Value::Null)),
                FIELD_IMMUTABLE,
            ));
        }
    }
}

/// Upstream `ValidatePodTemplateSpec` plus the DaemonSet's own template rules.
fn validate_template(template: &Value, errs: &mut Errs) {
    let path = "spec.template";
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
    if policy != "Always" {
        errs.push(FieldError::not_supported(
            format!("{path}.spec.restartPolicy"),
            policy,
            &["Always"],
        ));
    }
    if field(spec, "activeDeadlineSeconds").is_some() {
        errs.push(FieldError::forbidden(
            format!("{path}.spec.activeDeadlineSeconds"),
            "activeDeadlineSeconds in DaemonSet is not Supported",
        ));
    }
}

/// Upstream `ValidateDaemonSetUpdateStrategy` and `ValidateRollingUpdateDaemonSet`.
fn validate_update_strategy(strategy: &Value, path: &str, errs: &mut Errs) {
    match str_at(strategy, "type") {
        "OnDelete" => {}
        "RollingUpdate" => {
            let Some(rolling) = field(strategy, "rollingUpdate") else {
                errs.push(FieldError::required(format!("{path}.rollingUpdate"), ""));
                return;
            };
            validate_rolling_update(rolling, &format!("{path}.rollingUpdate"), errs);
        }
        other => errs.push(FieldError {
            field: path.to_string(),
            kind: super::FieldErrorKind::NotSupported,
            value: Some(go_strategy(
                other,
                field(strategy, "rollingUpdate").is_some(),
            )),
            detail: format!(
                "supported values: {}",
                STRATEGY_TYPES.map(go_quote).join(", ")
            ),
        }),
    }
}

/// Go's `%#v` of an `apps.DaemonSetUpdateStrategy` (what upstream prints for a bad type).
fn go_strategy(kind: &str, has_rolling: bool) -> String {
    let rolling = if has_rolling {
        "(*apps.RollingUpdateDaemonSet)(0x0)"
    } else {
        "(*apps.RollingUpdateDaemonSet)(nil)"
    };
    format!(
        "apps.DaemonSetUpdateStrategy{{Type:{}, RollingUpdate:{rolling}}}",
        go_quote(kind)
    )
}

fn validate_rolling_update(rolling: &Value, path: &str, errs: &mut Errs) {
    let mut value_of = |key: &str| -> (i64, Option<&Value>) {
        let Some(raw) = field(rolling, key) else {
            return (0, None);
        };
        let key_path = format!("{path}.{key}");
        match int_or_percent(raw, &key_path, errs) {
            Some((n, true)) if n > 100 => {
                errs.push(FieldError::invalid_rendered(
                    &key_path,
                    render(raw),
                    "must not be greater than 100%",
                ));
                (n, Some(raw))
            }
            Some((n, _)) => (n, Some(raw)),
            // A negative number still counts as non-zero below, as upstream.
            None => (raw.as_i64().unwrap_or(0), Some(raw)),
        }
    };
    let (unavailable, _) = value_of("maxUnavailable");
    let (surge, surge_raw) = value_of("maxSurge");
    match (unavailable != 0, surge != 0) {
        (true, true) => errs.push(FieldError::invalid_rendered(
            format!("{path}.maxSurge"),
            render(surge_raw.unwrap_or(&Value::Null)),
            "may not be set when maxUnavailable is non-zero",
        )),
        (false, false) => errs.push(FieldError::required(
            format!("{path}.maxUnavailable"),
            "cannot be 0 when maxSurge is 0",
        )),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use crate::api::defaults::apply_defaults;
    use crate::api::validation::test_support::{good_pod_spec, has, messages};
    use serde_json::{json, Value};

    fn ds() -> Value {
        let mut ds = json!({"metadata": {"name": "agent", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": "agent"}},
                     "template": {"metadata": {"labels": {"app": "agent"}}, "spec": good_pod_spec()}}});
        apply_defaults("DaemonSet", &mut ds);
        ds
    }

    fn errors(obj: &Value) -> Vec<String> {
        messages(&validate("DaemonSet", obj, None))
    }

    #[test]
    fn a_defaulted_daemon_set_is_valid() {
        assert_eq!(errors(&ds()), Vec::<String>::new());
    }

    #[test]
    fn selector_must_match_the_template_and_not_be_empty() {
        let mut bad = ds();
        bad["spec"]["template"]["metadata"]["labels"] = json!({"app": "other"});
        assert_eq!(
            errors(&bad),
            ["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"other\"}: `selector` does not match template `labels`"]
        );
        let mut empty = ds();
        empty["spec"]["selector"] = json!({});
        assert!(has(
            &validate("DaemonSet", &empty, None),
            "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for daemonset"
        ));
        let mut missing = ds();
        missing["spec"].as_object_mut().unwrap().remove("selector");
        assert!(has(
            &validate("DaemonSet", &missing, None),
            "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"agent\"}: `selector` does not match template `labels`"
        ));
    }

    #[test]
    fn the_selector_is_immutable() {
        let old = ds();
        let mut new = ds();
        new["spec"]["selector"] =
            json!({"matchExpressions": [{"key": "app", "operator": "Exists"}]});
        assert_eq!(
            messages(&validate("DaemonSet", &new, Some(&old))),
            ["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement{v1.LabelSelectorRequirement{Key:\"app\", Operator:\"Exists\", Values:[]string(nil)}}}: field is immutable"]
        );
        assert!(validate("DaemonSet", &old, Some(&old)).is_empty());
    }

    #[test]
    fn template_restart_policy_must_be_always() {
        let mut bad = ds();
        bad["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        bad["spec"]["template"]["spec"]["activeDeadlineSeconds"] = json!(5);
        let errs = validate("DaemonSet", &bad, None);
        assert!(has(&errs, "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""));
        assert!(has(&errs, "spec.template.spec.activeDeadlineSeconds: Forbidden: activeDeadlineSeconds in DaemonSet is not Supported"));
    }

    #[test]
    fn rolling_update_needs_exactly_one_of_surge_and_unavailability() {
        let with = |rolling: Value| {
            let mut d = ds();
            d["spec"]["updateStrategy"]["rollingUpdate"] = rolling;
            errors(&d)
        };
        assert_eq!(
            with(json!({"maxUnavailable": 0, "maxSurge": 0})),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
        assert_eq!(
            with(json!({"maxUnavailable": "0%", "maxSurge": "0%"})),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Required value: cannot be 0 when maxSurge is 0"]
        );
        assert_eq!(
            with(json!({"maxUnavailable": 1, "maxSurge": "20%"})),
            ["spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \"20%\": may not be set when maxUnavailable is non-zero"]
        );
        assert_eq!(
            with(json!({"maxUnavailable": "150%", "maxSurge": 0})),
            ["spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"]
        );
        assert!(with(json!({"maxUnavailable": 0, "maxSurge": "x%"}))[0].starts_with(
            "spec.updateStrategy.rollingUpdate.maxSurge: Invalid value: \"x%\": a valid percent string"
        ));
        assert_eq!(
            with(json!({"maxUnavailable": -1, "maxSurge": 0})),
            [
                "spec.updateStrategy.rollingUpdate.maxUnavailable: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
        assert!(with(json!({"maxUnavailable": 0, "maxSurge": "25%"})).is_empty());
    }

    #[test]
    fn update_strategy_type_and_limits() {
        let mut d = ds();
        d["spec"]["updateStrategy"] = json!({"type": "Blue"});
        assert_eq!(
            errors(&d),
            ["spec.updateStrategy: Unsupported value: apps.DaemonSetUpdateStrategy{Type:\"Blue\", RollingUpdate:(*apps.RollingUpdateDaemonSet)(nil)}: supported values: \"RollingUpdate\", \"OnDelete\""]
        );
        let mut d = ds();
        d["spec"]["updateStrategy"] = json!({"type": "RollingUpdate"});
        assert_eq!(
            errors(&d),
            ["spec.updateStrategy.rollingUpdate: Required value"]
        );
        let mut d = ds();
        d["spec"]["revisionHistoryLimit"] = json!(-1);
        d["spec"]["minReadySeconds"] = json!(-2);
        let errs = validate("DaemonSet", &d, None);
        assert!(has(
            &errs,
            "spec.revisionHistoryLimit: Invalid value: -1: must be greater than or equal to 0"
        ));
        assert!(has(
            &errs,
            "spec.minReadySeconds: Invalid value: -2: must be greater than or equal to 0"
        ));
    }
}
