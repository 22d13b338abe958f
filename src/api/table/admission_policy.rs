//! The ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding printers
//! (upstream `printValidatingAdmissionPolicy`, `printValidatingAdmissionPolicyBinding`):
//! NAME, VALIDATIONS, PARAMKIND, AGE and NAME, POLICYNAME, PARAMREF, AGE.

use serde_json::{json, Value};

use super::cells::age;
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};

/// What upstream prints for a policy without paramKind or a binding without paramRef.
const UNSET: &str = "<unset>";

fn policy_columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Validations",
            "integer",
            "Validations indicates the number of validation rules defined in this configuration",
            0,
        ),
        col(
            "ParamKind",
            "string",
            "ParamKind specifies the kind of resources used to parameterize this policy",
            0,
        ),
        age_col(),
    ]
}

fn binding_columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "PolicyName",
            "string",
            "PolicyName indicates the policy definition which the policy binding binded to",
            0,
        ),
        col(
            "ParamRef",
            "string",
            "ParamRef indicates the param resource which sets the configration param",
            0,
        ),
        age_col(),
    ]
}

fn param_kind(obj: &Value) -> String {
    let kind = &obj["spec"]["paramKind"];
    if !kind.is_object() {
        return UNSET.into();
    }
    format!(
        "{}/{}",
        kind["apiVersion"].as_str().unwrap_or(""),
        kind["kind"].as_str().unwrap_or("")
    )
}

/// Upstream prints a selector with the Go protobuf `String()` of `metav1.LabelSelector`.
fn go_selector_string(sel: &Value) -> String {
    let mut labels: Vec<(&String, &str)> = sel["matchLabels"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    labels.sort();
    let labels: String = labels.iter().map(|(k, v)| format!("{k}: {v},")).collect();
    let exprs: String = sel["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            let values: Vec<&str> = e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            format!(
                "LabelSelectorRequirement{{Key:{},Operator:{},Values:[{}],}},",
                e["key"].as_str().unwrap_or(""),
                e["operator"].as_str().unwrap_or(""),
                values.join(" ")
            )
        })
        .collect();
    format!(
        "&LabelSelector{{MatchLabels:map[string]string{{{labels}}},MatchExpressions:[]LabelSelectorRequirement{{{exprs}}},}}"
    )
}

fn param_ref(obj: &Value) -> String {
    let r = &obj["spec"]["paramRef"];
    if !r.is_object() {
        return UNSET.into();
    }
    let name = r["name"].as_str().unwrap_or("");
    let namespace = r["namespace"].as_str().unwrap_or("");
    if !name.is_empty() {
        // As upstream: a name without a namespace may be cluster-scoped, printed `*/`.
        let ns = if namespace.is_empty() { "*" } else { namespace };
        return format!("{ns}/{name}");
    }
    if r["selector"].is_object() {
        return go_selector_string(&r["selector"]);
    }
    UNSET.into()
}

pub static VALIDATING_ADMISSION_POLICY: Printer = Printer {
    columns: policy_columns,
    cells: |obj, now| {
        let validations = obj["spec"]["validations"].as_array().map_or(0, Vec::len);
        vec![
            name(obj),
            json!(validations),
            json!(param_kind(obj)),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

pub static VALIDATING_ADMISSION_POLICY_BINDING: Printer = Printer {
    columns: binding_columns,
    cells: |obj, now| {
        vec![
            name(obj),
            obj["spec"]["policyName"].clone(),
            json!(param_ref(obj)),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::super::test_support::{ago, cells};
    use super::*;

    #[test]
    fn policies_print_their_validation_count_and_param_kind() {
        let plain = json!({"metadata": {"name": "demo", "creationTimestamp": ago(60)},
            "spec": {"validations": [{"expression": "true"}, {"expression": "true"}]}});
        assert_eq!(
            cells(&VALIDATING_ADMISSION_POLICY, &plain),
            ["demo", "2", "<unset>", "60s"]
        );
        let with_params = json!({"metadata": {"name": "p", "creationTimestamp": ago(60)},
            "spec": {"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"}}});
        assert_eq!(
            cells(&VALIDATING_ADMISSION_POLICY, &with_params),
            ["p", "0", "v1/ConfigMap", "60s"]
        );
    }

    #[test]
    fn bindings_print_the_param_reference_as_upstream() {
        let binding = |param_ref: Value| {
            json!({"metadata": {"name": "b", "creationTimestamp": ago(60)},
                   "spec": {"policyName": "demo", "paramRef": param_ref}})
        };
        let third = |v: Value| cells(&VALIDATING_ADMISSION_POLICY_BINDING, &v)[2].clone();
        assert_eq!(third(binding(Value::Null)), "<unset>");
        assert_eq!(
            third(binding(json!({"name": "limits", "namespace": "ops"}))),
            "ops/limits"
        );
        assert_eq!(third(binding(json!({"name": "limits"}))), "*/limits");
        assert_eq!(
            third(binding(json!({"selector": {"matchLabels": {"b": "2", "a": "1"},
                "matchExpressions": [{"key": "env", "operator": "In", "values": ["x", "y"]}]}}))),
            "&LabelSelector{MatchLabels:map[string]string{a: 1,b: 2,},MatchExpressions:[]LabelSelectorRequirement{LabelSelectorRequirement{Key:env,Operator:In,Values:[x y],},},}"
        );
        assert_eq!(
            cells(&VALIDATING_ADMISSION_POLICY_BINDING, &binding(Value::Null))[1],
            "demo"
        );
    }
}
