//! ValidatingAdmissionPolicy semantics without I/O: upstream's v1 defaults, a policy's
//! CEL compiled once (each expression in the environment upstream gives it), and the
//! evaluation of a compiled policy against one admission request (`evaluate`).
//!
//! The CEL layer is the CRD rules' (`api::crd::cel`): the same functions, the same cost
//! bound. Missing against upstream: type-checking (`status.typeChecking` stays empty,
//! and a policy whose expressions are well-formed but ill-typed is admitted and fails
//! when evaluated, where its failurePolicy applies) and the `authorizer` variable.

mod evaluate;

pub use evaluate::{evaluate, AuditAnnotation, Decision, Input, Outcome};

use serde_json::{json, Map, Value};

use crate::api::crd::cel::{self, CompiledRule};

/// Upstream's failure policy of a policy (also applied to missing params and bad bindings).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailurePolicy {
    Fail,
    Ignore,
}

/// A compiled `validations[]` entry.
#[derive(Debug)]
pub struct CompiledValidation {
    pub expression: String,
    pub program: CompiledRule,
    pub message: String,
    pub message_expression: Option<CompiledRule>,
    /// The status reason of a refusal (`Invalid` when unset, as upstream).
    pub reason: &'static str,
}

/// A policy's CEL, compiled once per generation.
#[derive(Debug)]
pub struct CompiledPolicy {
    pub name: String,
    pub failure_policy: FailurePolicy,
    pub has_param_kind: bool,
    pub variables: Vec<(String, CompiledRule)>,
    pub match_conditions: Vec<(String, CompiledRule)>,
    pub validations: Vec<CompiledValidation>,
    pub audit_annotations: Vec<(String, String, CompiledRule)>,
}

/// Which expression of a policy is compiled: each sees its own variables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExpressionKind {
    Validation,
    MessageExpression,
    MatchCondition,
    AuditAnnotation,
    Variable,
}

/// The variables an expression of a policy may use (upstream
/// `OptionalVariableDeclarations`; `authorizer` is not offered, see the module notes).
pub fn declared(has_params: bool, has_variables: bool) -> Vec<&'static str> {
    let mut names = vec!["object", "oldObject", "request", "namespaceObject"];
    if has_params {
        names.push("params");
    }
    if has_variables {
        names.push("variables");
    }
    names
}

/// Compiles one expression of a policy; the error is upstream's field error detail
/// (`compilation failed: ERROR: <input>:1:5: …`). `known_variables` are the variable
/// names the expression may read from `variables`.
pub fn compile_expression(
    source: &str,
    has_params: bool,
    known_variables: Option<&[String]>,
) -> Result<CompiledRule, String> {
    let names = declared(has_params, known_variables.is_some());
    let compiled =
        cel::compile_with(source, &names).map_err(|e| format!("compilation failed: {e}"))?;
    if let Some(unknown) = compiled
        .variables_used
        .iter()
        .find(|used| !known_variables.is_some_and(|known| known.iter().any(|k| k == *used)))
    {
        return Err(format!(
            "compilation failed: ERROR: <input>:1:1: undefined field '{unknown}'"
        ));
    }
    Ok(compiled)
}

fn str_of<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn items<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

/// The status reasons a validation may give (upstream `supportedValidationPolicyReason`).
pub const REASONS: &[&str] = &["Forbidden", "Invalid", "RequestEntityTooLarge"];

/// The HTTP code of a refusal's reason (upstream `reasonToCode`).
pub fn reason_code(reason: &str) -> u16 {
    match reason {
        "Forbidden" => 403,
        "Unauthorized" => 401,
        "RequestEntityTooLarge" => 413,
        _ => 422,
    }
}

/// Compiles a stored (validated) policy. An expression that does not compile (a policy
/// stored by an older server) is an error the failurePolicy decides about.
pub fn compile_policy(policy: &Value) -> Result<CompiledPolicy, String> {
    let spec = policy.get("spec").unwrap_or(&Value::Null);
    let has_params = spec.get("paramKind").is_some_and(Value::is_object);
    let names: Vec<String> = items(spec, "variables")
        .iter()
        .map(|v| str_of(v, "name").to_string())
        .collect();
    let known = (!names.is_empty()).then_some(names.as_slice());
    let at = |path: String, e: String| format!("{path}: {e}");
    let mut variables = Vec::new();
    for (i, v) in items(spec, "variables").iter().enumerate() {
        let earlier = &names[..i];
        let program = compile_expression(str_of(v, "expression"), has_params, Some(earlier))
            .map_err(|e| at(format!("spec.variables[{i}].expression"), e))?;
        variables.push((names[i].clone(), program));
    }
    let mut match_conditions = Vec::new();
    for (i, m) in items(spec, "matchConditions").iter().enumerate() {
        let program = compile_expression(str_of(m, "expression"), has_params, known)
            .map_err(|e| at(format!("spec.matchConditions[{i}].expression"), e))?;
        match_conditions.push((str_of(m, "name").to_string(), program));
    }
    let mut validations = Vec::new();
    for (i, v) in items(spec, "validations").iter().enumerate() {
        let expression = str_of(v, "expression").trim().to_string();
        let program = compile_expression(&expression, has_params, known)
            .map_err(|e| at(format!("spec.validations[{i}].expression"), e))?;
        let message_expression = match str_of(v, "messageExpression") {
            "" => None,
            source => Some(
                compile_expression(source, has_params, known)
                    .map_err(|e| at(format!("spec.validations[{i}].messageExpression"), e))?,
            ),
        };
        let reason = REASONS
            .iter()
            .find(|r| **r == str_of(v, "reason"))
            .copied()
            .unwrap_or("Invalid");
        validations.push(CompiledValidation {
            expression,
            program,
            message: str_of(v, "message").trim().to_string(),
            message_expression,
            reason,
        });
    }
    let mut audit_annotations = Vec::new();
    for (i, a) in items(spec, "auditAnnotations").iter().enumerate() {
        let source = str_of(a, "valueExpression").trim().to_string();
        let program = compile_expression(&source, has_params, known)
            .map_err(|e| at(format!("spec.auditAnnotations[{i}].valueExpression"), e))?;
        audit_annotations.push((str_of(a, "key").to_string(), source, program));
    }
    Ok(CompiledPolicy {
        name: str_of(policy.get("metadata").unwrap_or(&Value::Null), "name").to_string(),
        failure_policy: if str_of(spec, "failurePolicy") == "Ignore" {
            FailurePolicy::Ignore
        } else {
            FailurePolicy::Fail
        },
        has_param_kind: has_params,
        variables,
        match_conditions,
        validations,
        audit_annotations,
    })
}

/// Upstream v1 defaults of the two kinds: `SetDefaults_ValidatingAdmissionPolicySpec`
/// (failurePolicy Fail) and `SetDefaults_MatchResources` on the policy's
/// matchConstraints and the binding's matchResources (when set). Other kinds are left
/// as they are.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    if !matches!(
        kind,
        "ValidatingAdmissionPolicy" | "ValidatingAdmissionPolicyBinding"
    ) {
        return;
    }
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    let key = if kind == "ValidatingAdmissionPolicy" {
        if !spec.contains_key("failurePolicy") || spec["failurePolicy"].is_null() {
            spec.insert("failurePolicy".into(), json!("Fail"));
        }
        "matchConstraints"
    } else {
        "matchResources"
    };
    if let Some(m) = spec.get_mut(key).and_then(Value::as_object_mut) {
        match_resources_defaults(m);
    }
}

/// Upstream `SetDefaults_MatchResources` (matchPolicy Equivalent, empty selectors) and
/// `SetDefaults_Rule` on its rules (scope `*`).
fn match_resources_defaults(m: &mut Map<String, Value>) {
    let default_to = |m: &mut Map<String, Value>, key: &str, value: Value| {
        if m.get(key).is_none_or(Value::is_null) {
            m.insert(key.to_string(), value);
        }
    };
    default_to(m, "matchPolicy", json!("Equivalent"));
    default_to(m, "namespaceSelector", json!({}));
    default_to(m, "objectSelector", json!({}));
    for key in ["resourceRules", "excludeResourceRules"] {
        if let Some(rules) = m.get_mut(key).and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                default_to(rule, "scope", json!("*"));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_upstreams_v1_ones() {
        let mut policy = json!({"spec": {"matchConstraints": {"resourceRules": [{"operations": ["CREATE"]}]},
            "validations": [{"expression": "true"}]}});
        apply_defaults("ValidatingAdmissionPolicy", &mut policy);
        let spec = &policy["spec"];
        assert_eq!(spec["failurePolicy"], "Fail");
        let m = &spec["matchConstraints"];
        assert_eq!(m["matchPolicy"], "Equivalent");
        assert_eq!(m["namespaceSelector"], json!({}));
        assert_eq!(m["objectSelector"], json!({}));
        assert_eq!(m["resourceRules"][0]["scope"], "*");
        let mut binding = json!({"spec": {"policyName": "p", "validationActions": ["Deny"]}});
        apply_defaults("ValidatingAdmissionPolicyBinding", &mut binding);
        assert!(binding["spec"].get("matchResources").is_none());
        let mut narrowed =
            json!({"spec": {"matchResources": {"namespaceSelector": {"matchLabels": {"a": "b"}}}}});
        apply_defaults("ValidatingAdmissionPolicyBinding", &mut narrowed);
        let m = &narrowed["spec"]["matchResources"];
        assert_eq!(m["matchPolicy"], "Equivalent");
        assert_eq!(m["namespaceSelector"]["matchLabels"]["a"], "b");
        assert_eq!(m["objectSelector"], json!({}));
        let mut other = json!({"spec": {"matchResources": {}}});
        apply_defaults("ConfigMap", &mut other);
        assert_eq!(other, json!({"spec": {"matchResources": {}}}));
    }

    #[test]
    fn each_expression_sees_the_variables_upstream_declares() {
        assert!(compile_expression("object.spec.replicas <= 5", false, None).is_ok());
        assert!(compile_expression(
            "oldObject == null || request.operation == 'UPDATE'",
            false,
            None
        )
        .is_ok());
        let err =
            compile_expression("object.spec.replicas <= params.max", false, None).unwrap_err();
        assert_eq!(
            err,
            "compilation failed: ERROR: <input>:1:1: undeclared reference to 'params' (in container '')"
        );
        assert!(compile_expression("object.spec.replicas <= params.max", true, None).is_ok());
        let known = ["replicas".to_string()];
        assert!(compile_expression("variables.replicas < 5", false, Some(&known)).is_ok());
        let err = compile_expression("variables.other < 5", false, Some(&known)).unwrap_err();
        assert!(err.ends_with("undefined field 'other'"), "{err}");
        let err = compile_expression("object.spec.replicas <", false, None).unwrap_err();
        assert!(
            err.starts_with("compilation failed: ERROR: <input>:1:"),
            "{err}"
        );
    }

    #[test]
    fn a_policy_compiles_with_its_variables_in_order() {
        let policy = json!({"metadata": {"name": "p"}, "spec": {
            "failurePolicy": "Ignore",
            "variables": [{"name": "r", "expression": "object.spec.replicas"},
                          {"name": "twice", "expression": "variables.r * 2"}],
            "validations": [{"expression": "variables.twice < 10", "reason": "Forbidden"}]}});
        let compiled = compile_policy(&policy).unwrap();
        assert_eq!(compiled.failure_policy, FailurePolicy::Ignore);
        assert_eq!(compiled.validations[0].reason, "Forbidden");
        let forward = json!({"metadata": {"name": "p"}, "spec": {
            "variables": [{"name": "a", "expression": "variables.b"}, {"name": "b", "expression": "1"}],
            "validations": [{"expression": "true"}]}});
        let err = compile_policy(&forward).unwrap_err();
        assert!(
            err.starts_with("spec.variables[0].expression: compilation failed"),
            "{err}"
        );
    }
}
