//! PodDisruptionBudget rules (upstream `ValidatePodDisruptionBudget`): at most one of
//! `minAvailable`/`maxUnavailable`, each a non-negative integer or a percentage of at
//! most 100%, a valid selector, a known `unhealthyPodEvictionPolicy`, and a status
//! without negative counts.

use serde_json::Value;

use super::field_error::{render, FieldError};
use super::names::NON_NEGATIVE_ERR;
use super::workloads::{int_or_percent, validate_label_selector};
use super::{field, int_at, Errs};

/// The values `spec.unhealthyPodEvictionPolicy` may take.
pub const UNHEALTHY_POD_EVICTION_POLICIES: [&str; 2] = ["AlwaysAllow", "IfHealthyBudget"];

pub(super) fn validate_pod_disruption_budget(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let min = field(spec, "minAvailable");
    let max = field(spec, "maxUnavailable");
    if min.is_some() && max.is_some() {
        errs.push(FieldError::invalid_rendered(
            "spec",
            render(spec),
            "minAvailable and maxUnavailable cannot be both set",
        ));
    }
    for (key, value) in [("minAvailable", min), ("maxUnavailable", max)] {
        let Some(value) = value else { continue };
        let path = format!("spec.{key}");
        match int_or_percent(value, &path, errs) {
            Some((n, true)) if n > 100 => errs.push(FieldError::invalid_rendered(
                &path,
                render(value),
                "must not be greater than 100%",
            )),
            Some(_) => {}
            None if value.is_string() || value.is_i64() => {}
            None => errs.push(FieldError::invalid_rendered(
                &path,
                render(value),
                "must be an integer or percentage (e.g '5%')",
            )),
        }
    }
    if let Some(selector) = field(spec, "selector") {
        validate_label_selector(selector, "spec.selector", errs);
    }
    if let Some(policy) = field(spec, "unhealthyPodEvictionPolicy") {
        let policy = policy.as_str().unwrap_or("");
        if !UNHEALTHY_POD_EVICTION_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.unhealthyPodEvictionPolicy",
                policy,
                &UNHEALTHY_POD_EVICTION_POLICIES,
            ));
        }
    }
    let status = obj.get("status").unwrap_or(&Value::Null);
    for key in [
        "disruptionsAllowed",
        "currentHealthy",
        "desiredHealthy",
        "expectedPods",
    ] {
        if let Some(n) = int_at(status, key).filter(|n| *n < 0) {
            errs.push(FieldError::invalid_rendered(
                format!("status.{key}"),
                n.to_string(),
                NON_NEGATIVE_ERR,
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{has, messages};
    use super::super::validate;
    use serde_json::{json, Value};

    fn pdb(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    #[test]
    fn one_bound_with_a_selector_is_valid() {
        for spec in [
            json!({"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}),
            json!({"maxUnavailable": "25%", "selector": {"matchLabels": {"app": "web"}}}),
            json!({"minAvailable": "100%", "unhealthyPodEvictionPolicy": "AlwaysAllow"}),
            json!({}),
        ] {
            let errs = validate("PodDisruptionBudget", &pdb(spec.clone()), None);
            assert!(errs.is_empty(), "{spec}: {:?}", messages(&errs));
        }
    }

    #[test]
    fn both_bounds_bad_numbers_and_unknown_policies_are_refused() {
        let errs = validate(
            "PodDisruptionBudget",
            &pdb(json!({"minAvailable": 1, "maxUnavailable": 1})),
            None,
        );
        assert_eq!(errs.len(), 1);
        assert!(
            messages(&errs)[0].starts_with("spec: Invalid value: ")
                && messages(&errs)[0]
                    .ends_with("minAvailable and maxUnavailable cannot be both set")
        );
        let errs = validate(
            "PodDisruptionBudget",
            &pdb(json!({"minAvailable": -1})),
            None,
        );
        assert!(has(
            &errs,
            "spec.minAvailable: Invalid value: -1: must be greater than or equal to 0"
        ));
        let errs = validate(
            "PodDisruptionBudget",
            &pdb(json!({"maxUnavailable": "150%"})),
            None,
        );
        assert!(has(
            &errs,
            "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"
        ));
        let errs = validate(
            "PodDisruptionBudget",
            &pdb(json!({"maxUnavailable": "half"})),
            None,
        );
        assert_eq!(errs[0].field, "spec.maxUnavailable");
        let errs = validate(
            "PodDisruptionBudget",
            &pdb(json!({"unhealthyPodEvictionPolicy": "Never"})),
            None,
        );
        assert!(has(
            &errs,
            "spec.unhealthyPodEvictionPolicy: Unsupported value: \"Never\": supported values: \"AlwaysAllow\", \"IfHealthyBudget\""
        ));
        let errs = validate(
            "PodDisruptionBudget",
            &pdb(json!({"selector": {"matchExpressions": [{"key": "app", "operator": "Near"}]}})),
            None,
        );
        assert_eq!(errs[0].field, "spec.selector.matchExpressions[0].operator");
    }

    #[test]
    fn negative_status_counts_are_refused() {
        let mut obj = pdb(json!({"minAvailable": 1}));
        obj["status"] = json!({"disruptionsAllowed": -1});
        let errs = validate("PodDisruptionBudget", &obj, None);
        assert!(has(
            &errs,
            "status.disruptionsAllowed: Invalid value: -1: must be greater than or equal to 0"
        ));
    }
}
