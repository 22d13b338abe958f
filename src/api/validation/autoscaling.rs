//! HorizontalPodAutoscaler rules (upstream `ValidateHorizontalPodAutoscaler`, v2 shape):
//! a scale target with kind and name, `minReplicas` ≥ 1, `maxReplicas` ≥ 1 and ≥
//! `minReplicas`, metrics of a known type with a valid target, and behavior windows,
//! policies and select policies within upstream's bounds.

use serde_json::Value;

use super::field_error::{render, FieldError};
use super::rbac::is_path_segment_name;
use super::{arr_at, field, int_at, str_at, Errs};

const METRIC_TYPES: [&str; 5] = [
    "Object",
    "Pods",
    "Resource",
    "External",
    "ContainerResource",
];
const TARGET_TYPES: [&str; 3] = ["Utilization", "Value", "AverageValue"];
const POLICY_TYPES: [&str; 2] = ["Pods", "Percent"];
const SELECT_POLICIES: [&str; 3] = ["Max", "Min", "Disabled"];
/// Longest stabilization window (upstream `MaxStabilizationWindowSeconds`).
const MAX_STABILIZATION_WINDOW_SECONDS: i64 = 3600;
/// Longest policy period (upstream `MaxPeriodSeconds`).
const MAX_PERIOD_SECONDS: i64 = 1800;

pub(super) fn validate_horizontal_pod_autoscaler(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let target = spec.get("scaleTargetRef").unwrap_or(&Value::Null);
    for key in ["kind", "name"] {
        let value = str_at(target, key);
        let path = format!("spec.scaleTargetRef.{key}");
        if value.is_empty() {
            errs.push(FieldError::required(path, ""));
        } else {
            for msg in is_path_segment_name(value) {
                errs.push(FieldError::invalid(&path, value, msg));
            }
        }
    }
    let min = int_at(spec, "minReplicas");
    if let Some(min) = min.filter(|m| *m < 1) {
        errs.push(FieldError::invalid_rendered(
            "spec.minReplicas",
            min.to_string(),
            "must be greater than or equal to 1",
        ));
    }
    match int_at(spec, "maxReplicas") {
        Some(max) if max < 1 => errs.push(FieldError::invalid_rendered(
            "spec.maxReplicas",
            max.to_string(),
            "must be greater than or equal to 1",
        )),
        Some(max) if min.is_some_and(|m| max < m) => errs.push(FieldError::invalid_rendered(
            "spec.maxReplicas",
            max.to_string(),
            "must be greater than or equal to `minReplicas`",
        )),
        Some(_) => {}
        None => errs.push(FieldError::required("spec.maxReplicas", "")),
    }
    for (i, m) in arr_at(spec, "metrics").iter().enumerate() {
        validate_metric(m, &format!("spec.metrics[{i}]"), errs);
    }
    if let Some(behavior) = field(spec, "behavior") {
        for dir in ["scaleUp", "scaleDown"] {
            if let Some(rules) = field(behavior, dir) {
                validate_rules(rules, &format!("spec.behavior.{dir}"), errs);
            }
        }
    }
}

fn validate_metric(m: &Value, path: &str, errs: &mut Errs) {
    let kind = str_at(m, "type");
    if kind.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.type"),
            "must specify a metric source type",
        ));
        return;
    }
    if !METRIC_TYPES.contains(&kind) {
        errs.push(FieldError::not_supported(
            format!("{path}.type"),
            kind,
            &METRIC_TYPES,
        ));
        return;
    }
    let source_key = match kind {
        "Resource" => "resource",
        "ContainerResource" => "containerResource",
        "Pods" => "pods",
        "Object" => "object",
        _ => "external",
    };
    let Some(source) = field(m, source_key) else {
        errs.push(FieldError::required(
            format!("{path}.{source_key}"),
            format!("must populate information for the given metric source (type {kind})"),
        ));
        return;
    };
    let path = format!("{path}.{source_key}");
    if matches!(kind, "Resource" | "ContainerResource") && str_at(source, "name").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.name"),
            "must specify a resource name",
        ));
    }
    if kind == "ContainerResource" && str_at(source, "container").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.container"),
            "must specify a container",
        ));
    }
    if matches!(kind, "Pods" | "Object" | "External")
        && str_at(&source["metric"], "name").is_empty()
    {
        errs.push(FieldError::required(
            format!("{path}.metric.name"),
            "must specify a metric name",
        ));
    }
    let target = source.get("target").unwrap_or(&Value::Null);
    let tpath = format!("{path}.target");
    let ttype = str_at(target, "type");
    if ttype.is_empty() {
        errs.push(FieldError::required(
            format!("{tpath}.type"),
            "must specify a metric target type",
        ));
        return;
    }
    if !TARGET_TYPES.contains(&ttype) {
        errs.push(FieldError::not_supported(
            format!("{tpath}.type"),
            ttype,
            &TARGET_TYPES,
        ));
        return;
    }
    let allowed: &[&str] = match kind {
        "Resource" | "ContainerResource" => &["Utilization", "AverageValue"],
        "Pods" => &["AverageValue"],
        _ => &["Value", "AverageValue"],
    };
    if !allowed.contains(&ttype) {
        errs.push(FieldError::not_supported(
            format!("{tpath}.type"),
            ttype,
            allowed,
        ));
        return;
    }
    match ttype {
        "Utilization" => match int_at(target, "averageUtilization") {
            Some(u) if u <= 0 => errs.push(FieldError::invalid_rendered(
                format!("{tpath}.averageUtilization"),
                u.to_string(),
                "must be greater than 0",
            )),
            Some(_) => {}
            None => errs.push(FieldError::required(
                format!("{tpath}.averageUtilization"),
                "must set either a target raw value or a target utilization",
            )),
        },
        "AverageValue" | "Value" => {
            let key = if ttype == "Value" {
                "value"
            } else {
                "averageValue"
            };
            match field(target, key) {
                None => errs.push(FieldError::required(
                    format!("{tpath}.{key}"),
                    "must set either a target value or averageValue",
                )),
                Some(q) => match super::quantity_text(q)
                    .and_then(|t| crate::api::quantity::parse_quantity(&t).ok())
                {
                    Some(q) if q.milli_value() <= 0 => errs.push(FieldError::invalid_rendered(
                        format!("{tpath}.{key}"),
                        render(field(target, key).unwrap_or(&Value::Null)),
                        "must be positive",
                    )),
                    Some(_) => {}
                    None => errs.push(FieldError::invalid_rendered(
                        format!("{tpath}.{key}"),
                        render(field(target, key).unwrap_or(&Value::Null)),
                        "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'",
                    )),
                },
            }
        }
        _ => {}
    }
}

fn validate_rules(rules: &Value, path: &str, errs: &mut Errs) {
    if let Some(w) = int_at(rules, "stabilizationWindowSeconds") {
        if !(0..=MAX_STABILIZATION_WINDOW_SECONDS).contains(&w) {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.stabilizationWindowSeconds"),
                w.to_string(),
                format!("must be less than or equal to {MAX_STABILIZATION_WINDOW_SECONDS}")
                    .as_str(),
            ));
        }
    }
    let select = str_at(rules, "selectPolicy");
    if !select.is_empty() && !SELECT_POLICIES.contains(&select) {
        errs.push(FieldError::not_supported(
            format!("{path}.selectPolicy"),
            select,
            &SELECT_POLICIES,
        ));
    }
    let policies = arr_at(rules, "policies");
    if policies.is_empty() {
        errs.push(FieldError::required(
            format!("{path}.policies"),
            "must specify at least one Policy",
        ));
    }
    for (i, p) in policies.iter().enumerate() {
        let ppath = format!("{path}.policies[{i}]");
        let t = str_at(p, "type");
        if !POLICY_TYPES.contains(&t) {
            errs.push(FieldError::not_supported(
                format!("{ppath}.type"),
                t,
                &POLICY_TYPES,
            ));
        }
        match int_at(p, "value") {
            Some(v) if v > 0 => {}
            v => errs.push(FieldError::invalid_rendered(
                format!("{ppath}.value"),
                v.unwrap_or(0).to_string(),
                "must be greater than zero",
            )),
        }
        match int_at(p, "periodSeconds") {
            Some(s) if s > 0 && s <= MAX_PERIOD_SECONDS => {}
            Some(s) if s > MAX_PERIOD_SECONDS => errs.push(FieldError::invalid_rendered(
                format!("{ppath}.periodSeconds"),
                s.to_string(),
                format!("must be less than or equal to {MAX_PERIOD_SECONDS}").as_str(),
            )),
            s => errs.push(FieldError::invalid_rendered(
                format!("{ppath}.periodSeconds"),
                s.unwrap_or(0).to_string(),
                "must be greater than zero",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    fn errors(spec: Value) -> Vec<String> {
        let obj = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"}, "spec": spec});
        crate::api::validation::validate("HorizontalPodAutoscaler", &obj, None)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    use serde_json::Value;

    fn good() -> Value {
        json!({"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
               "minReplicas": 1, "maxReplicas": 5,
               "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                   "target": {"type": "Utilization", "averageUtilization": 50}}}],
               "behavior": {"scaleDown": {"stabilizationWindowSeconds": 5, "selectPolicy": "Max",
                   "policies": [{"type": "Pods", "value": 1, "periodSeconds": 5}]}}})
    }

    #[test]
    fn a_well_formed_autoscaler_passes() {
        assert_eq!(errors(good()), Vec::<String>::new());
    }

    #[test]
    fn bounds_targets_and_behavior_are_checked_as_upstream() {
        let mut spec = good();
        spec["minReplicas"] = json!(0);
        spec["scaleTargetRef"]["name"] = json!("");
        let errs = errors(spec);
        assert!(
            errs.contains(
                &"spec.minReplicas: Invalid value: 0: must be greater than or equal to 1"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.iter()
                .any(|e| e.starts_with("spec.scaleTargetRef.name: Required value")),
            "{errs:?}"
        );
        let mut spec = good();
        spec["minReplicas"] = json!(3);
        spec["maxReplicas"] = json!(2);
        assert_eq!(
            errors(spec),
            vec!["spec.maxReplicas: Invalid value: 2: must be greater than or equal to `minReplicas`"]
        );
        let mut spec = good();
        spec["metrics"][0]["resource"]["target"] =
            json!({"type": "Utilization", "averageUtilization": 0});
        assert_eq!(
            errors(spec),
            vec!["spec.metrics[0].resource.target.averageUtilization: Invalid value: 0: must be greater than 0"]
        );
        let mut spec = good();
        spec["metrics"][0]["type"] = json!("Bogus");
        assert!(errors(spec)[0].starts_with("spec.metrics[0].type: Unsupported value: \"Bogus\""));
        let mut spec = good();
        spec["behavior"]["scaleDown"]["policies"] =
            json!([{"type": "Pods", "value": 0, "periodSeconds": 1801}]);
        spec["behavior"]["scaleDown"]["stabilizationWindowSeconds"] = json!(4000);
        let errs = errors(spec);
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs.contains(&"spec.behavior.scaleDown.policies[0].value: Invalid value: 0: must be greater than zero".to_string()));
    }
}
