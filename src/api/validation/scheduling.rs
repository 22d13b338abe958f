//! PriorityClass rules (upstream `ValidatePriorityClass`, `ValidatePriorityClassUpdate`):
//! names starting with `system-` are reserved for the built-in classes (with their
//! values), user classes go up to 1e9, the preemption policy is one of two, and
//! `value` and `preemptionPolicy` never change.

use serde_json::Value;

use super::field_error::FieldError;
use super::Errs;

/// Highest value a user-defined class may have (upstream `HighestUserDefinablePriority`).
pub const HIGHEST_USER_DEFINABLE_PRIORITY: i64 = 1_000_000_000;
/// Prefix reserved for the built-in classes.
pub const SYSTEM_PRIORITY_CLASS_PREFIX: &str = "system-";
/// The built-in classes with their values and descriptions (upstream
/// `SystemPriorityClasses`).
pub const SYSTEM_PRIORITY_CLASSES: [(&str, i64, &str); 2] = [
    (
        "system-node-critical",
        2_000_001_000,
        "Used for system critical pods that must not be moved from their current node.",
    ),
    (
        "system-cluster-critical",
        2_000_000_000,
        "Used for system critical pods that must run in the cluster, but can be moved to another node if necessary.",
    ),
];
/// The values `preemptionPolicy` may take.
pub const PREEMPTION_POLICIES: [&str; 2] = ["Never", "PreemptLowerPriority"];

/// Upstream `IsKnownSystemPriorityClass`: why `name` is not a built-in class as given.
fn system_class_problem(name: &str, value: i64, global_default: bool) -> Option<String> {
    let Some((_, wanted, _)) = SYSTEM_PRIORITY_CLASSES.iter().find(|(n, _, _)| *n == name) else {
        return Some(format!("{name} is not a known system priority class"));
    };
    if value != *wanted {
        return Some(format!("value of {name} PriorityClass must be {wanted}"));
    }
    if global_default {
        return Some(format!(
            "globalDefault of {name} PriorityClass must be false"
        ));
    }
    None
}

pub(super) fn validate_priority_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let value = obj["value"].as_i64().unwrap_or(0);
    let global_default = obj["globalDefault"].as_bool().unwrap_or(false);
    if name.starts_with(SYSTEM_PRIORITY_CLASS_PREFIX) {
        if let Some(problem) = system_class_problem(name, value, global_default) {
            errs.push(FieldError::forbidden(
                "metadata.name",
                format!(
                    "priority class names with '{SYSTEM_PRIORITY_CLASS_PREFIX}' prefix are reserved for system use only. error: {problem}"
                ),
            ));
        }
    } else if value > HIGHEST_USER_DEFINABLE_PRIORITY {
        errs.push(FieldError::forbidden(
            "value",
            format!(
                "maximum allowed value of a user defined priority is {HIGHEST_USER_DEFINABLE_PRIORITY}"
            ),
        ));
    }
    if let Some(policy) = obj.get("preemptionPolicy").filter(|p| !p.is_null()) {
        let policy = policy.as_str().unwrap_or("");
        if !PREEMPTION_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                "preemptionPolicy",
                policy,
                &PREEMPTION_POLICIES,
            ));
        }
    }
    if let Some(old) = old {
        if old["value"] != obj["value"] {
            errs.push(FieldError::forbidden(
                "value",
                "may not be changed in an update.",
            ));
        }
        if old["preemptionPolicy"] != obj["preemptionPolicy"] {
            errs.push(FieldError::invalid_rendered(
                "preemptionPolicy",
                super::field_error::render(&obj["preemptionPolicy"]),
                "field is immutable",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::validate;

    fn pc(name: &str, value: i64) -> serde_json::Value {
        json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
               "metadata": {"name": name}, "value": value, "preemptionPolicy": "PreemptLowerPriority"})
    }

    fn messages(obj: &serde_json::Value, old: Option<&serde_json::Value>) -> Vec<String> {
        validate("PriorityClass", obj, old)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    #[test]
    fn user_classes_stay_below_a_billion_and_out_of_the_system_prefix() {
        assert!(messages(&pc("high", 1_000_000_000), None).is_empty());
        assert_eq!(
            messages(&pc("higher", 1_000_000_001), None),
            ["value: Forbidden: maximum allowed value of a user defined priority is 1000000000"]
        );
        assert_eq!(
            messages(&pc("system-mine", 5), None),
            ["metadata.name: Forbidden: priority class names with 'system-' prefix are reserved for system use only. error: system-mine is not a known system priority class"]
        );
        assert!(messages(&pc("system-node-critical", 2_000_001_000), None).is_empty());
        assert!(messages(&pc("system-cluster-critical", 7), None)[0]
            .contains("value of system-cluster-critical PriorityClass must be 2000000000"));
        let mut never = pc("batch", 10);
        never["preemptionPolicy"] = json!("Sometimes");
        assert!(messages(&never, None)[0].contains("Unsupported value: \"Sometimes\""));
    }

    #[test]
    fn value_and_preemption_policy_are_immutable() {
        let old = pc("high", 1000);
        let mut new = old.clone();
        new["description"] = json!("changed");
        assert!(messages(&new, Some(&old)).is_empty());
        new["value"] = json!(2000);
        assert_eq!(
            messages(&new, Some(&old)),
            ["value: Forbidden: may not be changed in an update."]
        );
        let mut new = old.clone();
        new["preemptionPolicy"] = json!("Never");
        assert!(messages(&new, Some(&old))[0].contains("field is immutable"));
    }
}
