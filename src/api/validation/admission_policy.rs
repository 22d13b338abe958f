//! ValidatingAdmissionPolicy and ValidatingAdmissionPolicyBinding rules (upstream
//! `pkg/apis/admissionregistration/validation`): every CEL expression must compile in
//! the environment it will be evaluated in, as upstream refuses it at create.

use std::collections::HashSet;

use serde_json::Value;

use super::field_error::go_quote;
use super::names::{is_dns1035_label, is_dns1123_subdomain, is_qualified_name};
use super::rbac::is_path_segment_name;
use super::webhooks::validate_rule;
use super::workloads::validate_label_selector;
use super::{arr_at, field, str_at, Errs, FieldError};
use crate::api::admission_policy::{compile_expression, REASONS};

const FAILURE_POLICIES: &[&str] = &["Fail", "Ignore"];
const MATCH_POLICIES: &[&str] = &["Equivalent", "Exact"];
const VALIDATION_ACTIONS: &[&str] = &["Audit", "Deny", "Warn"];
const NOT_FOUND_ACTIONS: &[&str] = &["Deny", "Allow"];
/// Upstream `maxAuditAnnotations`.
const MAX_AUDIT_ANNOTATIONS: usize = 20;
/// Upstream `maxAuditAnnotationValueExpressionLength`.
const MAX_VALUE_EXPRESSION_BYTES: usize = 5 * 1024;
/// Upstream's limit on matchConditions.
const MAX_MATCH_CONDITIONS: usize = 64;

/// Validates a ValidatingAdmissionPolicy's spec.
pub(super) fn validate_admission_policy(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    match field(spec, "failurePolicy") {
        None => errs.push(FieldError::required("spec.failurePolicy", "")),
        Some(p) => one_of(p, "spec.failurePolicy", FAILURE_POLICIES, errs),
    }
    let param_kind = field(spec, "paramKind");
    if let Some(kind) = param_kind {
        validate_param_kind(kind, errs);
    }
    let has_params = param_kind.is_some();
    match field(spec, "matchConstraints") {
        None => errs.push(FieldError::required("spec.matchConstraints", "")),
        Some(m) => {
            validate_match_resources(m, "spec.matchConstraints", errs);
            if arr_at(m, "resourceRules").is_empty() {
                errs.push(FieldError::required(
                    "spec.matchConstraints.resourceRules",
                    "",
                ));
            }
        }
    }
    let variables = arr_at(spec, "variables");
    let names: Vec<String> = variables
        .iter()
        .map(|v| str_at(v, "name").to_string())
        .collect();
    let known = (!names.is_empty()).then_some(names.as_slice());
    validate_match_conditions(arr_at(spec, "matchConditions"), has_params, known, errs);
    for (i, v) in variables.iter().enumerate() {
        let path = format!("spec.variables[{i}]");
        let name = str_at(v, "name");
        if name.trim().is_empty() {
            errs.push(FieldError::required(
                format!("{path}.name"),
                "name is not specified",
            ));
        } else if !is_cel_identifier(name) {
            errs.push(FieldError::invalid(
                format!("{path}.name"),
                name,
                "name is not a valid CEL identifier",
            ));
        }
        let expression = str_at(v, "expression");
        if expression.trim().is_empty() {
            errs.push(FieldError::required(
                format!("{path}.expression"),
                "expression is not specified",
            ));
        } else {
            compiles(
                expression,
                has_params,
                Some(&names[..i]),
                &format!("{path}.expression"),
                errs,
            );
        }
    }
    let validations = arr_at(spec, "validations");
    let audit_annotations = arr_at(spec, "auditAnnotations");
    if validations.is_empty() && audit_annotations.is_empty() {
        let detail = "validations or auditAnnotations must contain at least one item";
        errs.push(FieldError::required("spec.validations", detail));
        errs.push(FieldError::required("spec.auditAnnotations", detail));
        return;
    }
    for (i, v) in validations.iter().enumerate() {
        validate_validation(
            v,
            &format!("spec.validations[{i}]"),
            has_params,
            known,
            errs,
        );
    }
    if audit_annotations.len() > MAX_AUDIT_ANNOTATIONS {
        errs.push(FieldError::invalid_rendered(
            "spec.auditAnnotations",
            "[]admissionregistration.AuditAnnotation{…}",
            format!("must not have more than {MAX_AUDIT_ANNOTATIONS} auditAnnotations"),
        ));
    }
    let policy_name = obj["metadata"]["name"].as_str().unwrap_or("");
    let mut keys = HashSet::new();
    for (i, a) in audit_annotations.iter().enumerate() {
        let path = format!("spec.auditAnnotations[{i}]");
        let key = str_at(a, "key");
        if policy_name.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.key"),
                key,
                "requires metadata.name be non-empty",
            ));
        } else {
            let qualified = format!("{policy_name}/{key}");
            for e in is_qualified_name(&qualified) {
                errs.push(FieldError::invalid(format!("{path}.key"), &qualified, e));
            }
        }
        let value = str_at(a, "valueExpression").trim();
        let at = format!("{path}.valueExpression");
        if value.is_empty() {
            errs.push(FieldError::required(at, "valueExpression is not specified"));
        } else if value.len() > MAX_VALUE_EXPRESSION_BYTES {
            errs.push(FieldError::required(
                at,
                format!("must not exceed {MAX_VALUE_EXPRESSION_BYTES} bytes in length"),
            ));
        } else {
            compiles(value, has_params, known, &at, errs);
        }
        if !keys.insert(key) {
            errs.push(FieldError::duplicate(format!("{path}.key"), key));
        }
    }
}

/// Validates a ValidatingAdmissionPolicyBinding's spec.
pub(super) fn validate_admission_policy_binding(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let policy = str_at(spec, "policyName");
    if policy.is_empty() {
        errs.push(FieldError::required("spec.policyName", ""));
    } else {
        for e in is_dns1123_subdomain(policy) {
            errs.push(FieldError::invalid("spec.policyName", policy, e));
        }
    }
    if let Some(r) = field(spec, "paramRef") {
        validate_param_ref(r, errs);
    }
    if let Some(m) = field(spec, "matchResources") {
        // Upstream's path, misspelt as it is there.
        validate_match_resources(m, "spec.matchResouces", errs);
    }
    validate_validation_actions(arr_at(spec, "validationActions"), errs);
}

fn one_of(v: &Value, path: &str, allowed: &[&str], errs: &mut Errs) {
    let s = v.as_str().unwrap_or("");
    if !allowed.contains(&s) {
        errs.push(FieldError::not_supported(path, s, allowed));
    }
}

/// Upstream `isCELIdentifier`: `[_a-zA-Z][_a-zA-Z0-9]*` and not a reserved word.
fn is_cel_identifier(name: &str) -> bool {
    let mut chars = name.chars();
    let first_ok = chars
        .next()
        .is_some_and(|c| c == '_' || c.is_ascii_alphabetic());
    first_ok
        && chars.all(|c| c == '_' || c.is_ascii_alphanumeric())
        && !crate::api::crd::cel::CEL_RESERVED.contains(&name)
}

fn compiles(source: &str, has_params: bool, known: Option<&[String]>, path: &str, errs: &mut Errs) {
    if let Err(e) = compile_expression(source, has_params, known) {
        errs.push(FieldError::invalid(path, source, e));
    }
}

fn validate_param_kind(kind: &Value, errs: &mut Errs) {
    let api_version = str_at(kind, "apiVersion");
    let path = "spec.paramKind.apiVersion";
    if api_version.is_empty() {
        errs.push(FieldError::required(path, ""));
    } else {
        let (group, version) = match api_version.matches('/').count() {
            0 => ("", api_version),
            1 => api_version.split_once('/').unwrap_or(("", api_version)),
            _ => {
                errs.push(FieldError::invalid(
                    path,
                    api_version,
                    format!("unexpected GroupVersion string: {api_version}"),
                ));
                ("", "v")
            }
        };
        if !group.is_empty() {
            let problems = is_dns1123_subdomain(group);
            if !problems.is_empty() {
                errs.push(FieldError::invalid(path, group, problems.join(",")));
            }
        }
        if version.is_empty() {
            errs.push(FieldError::invalid(
                path,
                api_version,
                "version must be specified",
            ));
        } else {
            let problems = is_dns1035_label(version);
            if !problems.is_empty() {
                errs.push(FieldError::invalid(path, version, problems.join(",")));
            }
        }
    }
    let k = str_at(kind, "kind");
    if k.is_empty() {
        errs.push(FieldError::required("spec.paramKind.kind", ""));
    } else {
        let problems = is_dns1035_label(&k.to_lowercase());
        if !problems.is_empty() {
            errs.push(FieldError::invalid(
                "spec.paramKind.kind",
                k,
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    problems.join(",")
                ),
            ));
        }
    }
}

/// Upstream `validateMatchResources`.
fn validate_match_resources(m: &Value, path: &str, errs: &mut Errs) {
    match field(m, "matchPolicy") {
        None => errs.push(FieldError::required(format!("{path}.matchPolicy"), "")),
        Some(p) => one_of(p, &format!("{path}.matchPolicy"), MATCH_POLICIES, errs),
    }
    for selector in ["namespaceSelector", "objectSelector"] {
        match field(m, selector) {
            None => errs.push(FieldError::required(format!("{path}.{selector}"), "")),
            Some(sel) => validate_label_selector(sel, &format!("{path}.{selector}"), errs),
        }
    }
    for key in ["resourceRules", "excludeResourceRules"] {
        for (i, rule) in arr_at(m, key).iter().enumerate() {
            let at = format!("{path}.{key}[{i}]");
            let mut names = HashSet::new();
            for (j, name) in arr_at(rule, "resourceNames").iter().enumerate() {
                let name = name.as_str().unwrap_or("");
                for e in is_path_segment_name(name) {
                    errs.push(FieldError::invalid(
                        format!("{at}.resourceNames[{j}]"),
                        name,
                        e,
                    ));
                }
                if !names.insert(name) {
                    errs.push(FieldError::duplicate(
                        format!("{at}.resourceNames[{j}]"),
                        name,
                    ));
                }
            }
            validate_rule(rule, &at, errs);
        }
    }
}

fn validate_match_conditions(
    conditions: &[Value],
    has_params: bool,
    known: Option<&[String]>,
    errs: &mut Errs,
) {
    if conditions.len() > MAX_MATCH_CONDITIONS {
        errs.push(FieldError::too_many(
            "spec.matchConditions",
            conditions.len(),
            MAX_MATCH_CONDITIONS,
        ));
    }
    let mut names = HashSet::new();
    for (i, c) in conditions.iter().enumerate() {
        let path = format!("spec.matchConditions[{i}]");
        let expression = str_at(c, "expression").trim();
        if expression.is_empty() {
            errs.push(FieldError::required(format!("{path}.expression"), ""));
        } else {
            compiles(
                expression,
                has_params,
                known,
                &format!("{path}.expression"),
                errs,
            );
        }
        let name = str_at(c, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{path}.name"), ""));
        } else {
            for e in is_qualified_name(name) {
                errs.push(FieldError::invalid(format!("{path}.name"), name, e));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{path}.name"), name));
            }
        }
    }
}

/// Upstream `validateValidation`.
fn validate_validation(
    v: &Value,
    path: &str,
    has_params: bool,
    known: Option<&[String]>,
    errs: &mut Errs,
) {
    let expression = str_at(v, "expression");
    if expression.trim().is_empty() {
        errs.push(FieldError::required(
            format!("{path}.expression"),
            "expression is not specified",
        ));
    } else {
        compiles(
            expression,
            has_params,
            known,
            &format!("{path}.expression"),
            errs,
        );
    }
    let message_expression = str_at(v, "messageExpression");
    if !message_expression.is_empty() && message_expression.trim().is_empty() {
        errs.push(FieldError::invalid(
            format!("{path}.messageExpression"),
            message_expression,
            "must be non-empty if specified",
        ));
    } else if !message_expression.is_empty() {
        compiles(
            message_expression,
            has_params,
            known,
            &format!("{path}.messageExpression"),
            errs,
        );
    }
    let message = str_at(v, "message");
    if !message.is_empty() && message.trim().is_empty() {
        errs.push(FieldError::invalid(
            format!("{path}.message"),
            message,
            "message must be non-empty if specified",
        ));
    } else if message.trim().contains(['\n', '\r']) {
        errs.push(FieldError::invalid(
            format!("{path}.message"),
            message,
            "message must not contain line breaks",
        ));
    }
    if let Some(reason) = field(v, "reason") {
        one_of(reason, &format!("{path}.reason"), REASONS, errs);
    }
}

fn validate_param_ref(r: &Value, errs: &mut Errs) {
    let name = str_at(r, "name");
    let selector = field(r, "selector");
    if !name.is_empty() {
        for e in is_path_segment_name(name) {
            errs.push(FieldError::invalid("spec.paramRef.name", name, e));
        }
        if selector.is_some() {
            errs.push(FieldError::forbidden(
                "spec.paramRef.name",
                "name and selector are mutually exclusive",
            ));
        }
    }
    if let Some(sel) = selector {
        validate_label_selector(sel, "spec.paramRef.selector", errs);
        if !name.is_empty() {
            errs.push(FieldError::forbidden(
                "spec.paramRef.selector",
                "name and selector are mutually exclusive",
            ));
        }
    }
    if name.is_empty() && selector.is_none() {
        errs.push(FieldError::required(
            "spec.paramRef",
            "one of name or selector must be specified",
        ));
    }
    match str_at(r, "parameterNotFoundAction") {
        "" => errs.push(FieldError::required(
            "spec.paramRef.parameterNotFoundAction",
            "",
        )),
        a if !NOT_FOUND_ACTIONS.contains(&a) => errs.push(FieldError::not_supported(
            "spec.paramRef.parameterNotFoundAction",
            a,
            NOT_FOUND_ACTIONS,
        )),
        _ => {}
    }
}

fn validate_validation_actions(actions: &[Value], errs: &mut Errs) {
    let path = "spec.validationActions";
    let mut seen = HashSet::new();
    for (i, a) in actions.iter().enumerate() {
        let a = a.as_str().unwrap_or("");
        if !VALIDATION_ACTIONS.contains(&a) {
            errs.push(FieldError::not_supported(
                format!("{path}[{i}]"),
                a,
                VALIDATION_ACTIONS,
            ));
        }
        if !seen.insert(a) {
            errs.push(FieldError::duplicate(format!("{path}[{i}]"), a));
        }
    }
    if seen.contains("Deny") && seen.contains("Warn") {
        let rendered: Vec<String> = actions
            .iter()
            .map(|a| go_quote(a.as_str().unwrap_or("")))
            .collect();
        errs.push(FieldError::invalid_rendered(
            path,
            format!("[]admissionregistration.ValidationAction{{{}}}", rendered.join(", ")),
            "must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
        ));
    }
    if seen.is_empty() {
        errs.push(FieldError::required(
            path,
            "at least one validation action is required",
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::messages;
    use super::super::validate;
    use serde_json::{json, Value};

    fn policy(spec: Value) -> Value {
        let mut p = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
            "metadata": {"name": "demo-policy.example.com"},
            "spec": {"failurePolicy": "Fail",
                "matchConstraints": {"matchPolicy": "Equivalent", "namespaceSelector": {}, "objectSelector": {},
                    "resourceRules": [{"apiGroups": ["apps"], "apiVersions": ["v1"], "operations": ["CREATE", "UPDATE"], "resources": ["deployments"]}]},
                "validations": [{"expression": "object.spec.replicas <= 5"}]}});
        for (k, v) in spec.as_object().expect("object") {
            p["spec"][k] = v.clone();
        }
        p
    }

    fn errors(kind: &str, obj: &Value) -> Vec<String> {
        messages(&validate(kind, obj, None))
    }

    #[test]
    fn the_upstream_example_policy_is_valid() {
        assert!(errors("ValidatingAdmissionPolicy", &policy(json!({}))).is_empty());
    }

    #[test]
    fn an_expression_that_does_not_compile_is_refused() {
        let p = policy(json!({"validations": [{"expression": "object.spec.replicas <"}]}));
        let errs = errors("ValidatingAdmissionPolicy", &p);
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.validations[0].expression: Invalid value: \"object.spec.replicas <\": compilation failed: ERROR: <input>:1:"),
            "{errs:?}"
        );
        let p = policy(json!({"validations": [{"expression": "params.max > 1"}]}));
        assert_eq!(
            errors("ValidatingAdmissionPolicy", &p),
            ["spec.validations[0].expression: Invalid value: \"params.max > 1\": compilation failed: ERROR: <input>:1:1: undeclared reference to 'params' (in container '')"]
        );
        let p = policy(
            json!({"paramKind": {"apiVersion": "v1", "kind": "ConfigMap"},
            "validations": [{"expression": "params.max > 1", "messageExpression": "'x' +"}]}),
        );
        let errs = errors("ValidatingAdmissionPolicy", &p);
        assert!(
            errs.len() == 1
                && errs[0].starts_with("spec.validations[0].messageExpression: Invalid value"),
            "{errs:?}"
        );
    }

    #[test]
    fn required_fields_and_enums_read_as_upstream() {
        let mut p = policy(json!({"validations": [], "failurePolicy": "Sometimes",
            "paramKind": {"apiVersion": "a/b/c"}}));
        p["spec"]
            .as_object_mut()
            .unwrap()
            .remove("matchConstraints");
        assert_eq!(
            errors("ValidatingAdmissionPolicy", &p),
            [
                "spec.failurePolicy: Unsupported value: \"Sometimes\": supported values: \"Fail\", \"Ignore\"",
                "spec.paramKind.apiVersion: Invalid value: \"a/b/c\": unexpected GroupVersion string: a/b/c",
                "spec.paramKind.kind: Required value",
                "spec.matchConstraints: Required value",
                "spec.validations: Required value: validations or auditAnnotations must contain at least one item",
                "spec.auditAnnotations: Required value: validations or auditAnnotations must contain at least one item",
            ]
        );
        let p = policy(
            json!({"validations": [{"expression": "true", "reason": "Teapot", "message": "a\nb"}]}),
        );
        assert_eq!(
            errors("ValidatingAdmissionPolicy", &p),
            [
                "spec.validations[0].message: Invalid value: \"a\\nb\": message must not contain line breaks",
                "spec.validations[0].reason: Unsupported value: \"Teapot\": supported values: \"Forbidden\", \"Invalid\", \"RequestEntityTooLarge\"",
            ]
        );
    }

    #[test]
    fn bindings_need_a_policy_actions_and_a_sound_param_ref() {
        let binding = |spec: Value| json!({"kind": "ValidatingAdmissionPolicyBinding", "metadata": {"name": "b"}, "spec": spec});
        let ok = binding(json!({"policyName": "demo", "validationActions": ["Deny"],
            "paramRef": {"name": "limits", "namespace": "default", "parameterNotFoundAction": "Deny"}}));
        assert!(errors("ValidatingAdmissionPolicyBinding", &ok).is_empty());
        let bad = binding(json!({"validationActions": ["Deny", "Warn", "Deny"],
            "paramRef": {"name": "a", "selector": {}},
            "matchResources": {"matchPolicy": "Sometimes", "namespaceSelector": {}, "objectSelector": {}}}));
        assert_eq!(
            errors("ValidatingAdmissionPolicyBinding", &bad),
            [
                "spec.policyName: Required value",
                "spec.paramRef.name: Forbidden: name and selector are mutually exclusive",
                "spec.paramRef.selector: Forbidden: name and selector are mutually exclusive",
                "spec.paramRef.parameterNotFoundAction: Required value",
                "spec.matchResouces.matchPolicy: Unsupported value: \"Sometimes\": supported values: \"Equivalent\", \"Exact\"",
                "spec.validationActions[2]: Duplicate value: \"Deny\"",
                "spec.validationActions: Invalid value: []admissionregistration.ValidationAction{\"Deny\", \"Warn\", \"Deny\"}: must not contain both Deny and Warn (repeating the same validation failure information in the API response and headers serves no purpose)",
            ]
        );
        assert_eq!(
            errors("ValidatingAdmissionPolicyBinding", &binding(json!({"policyName": "p"}))),
            ["spec.validationActions: Required value: at least one validation action is required"]
        );
    }
}
