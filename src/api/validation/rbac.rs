//! RBAC rules (upstream `pkg/apis/rbac/validation`): Roles and ClusterRoles need verbs and
//! either resource rules or (cluster-wide only) non-resource URLs; bindings reference a
//! role of the RBAC group, name valid subjects, and never change their roleRef.

use serde_json::Value;

use super::field_error::{go_quote, FieldError};
use super::names::is_dns1123_subdomain;
use super::workloads::validate_label_selector;
use super::{arr_at, field, str_at, Errs};

/// The RBAC API group, the only one a roleRef (and a User or Group subject) may name.
pub const RBAC_GROUP: &str = "rbac.authorization.k8s.io";

/// Upstream `IsValidPathSegmentName`: RBAC object names may hold `:` (`system:node`) but
/// must be usable as one URL path segment.
pub fn is_path_segment_name(name: &str) -> Vec<String> {
    for illegal in [".", ".."] {
        if name == illegal {
            return vec![format!("may not be '{illegal}'")];
        }
    }
    ["/", "%"]
        .iter()
        .filter(|c| name.contains(*c))
        .map(|c| format!("may not contain '{c}'"))
        .collect()
}

/// Go's `%#v` of a `[]string`: `[]string{"a", "b"}`.
fn go_string_slice(items: &[Value]) -> String {
    let quoted: Vec<String> = items
        .iter()
        .map(|v| go_quote(v.as_str().unwrap_or("")))
        .collect();
    format!("[]string{{{}}}", quoted.join(", "))
}

/// Upstream `ValidatePolicyRule`.
fn validate_policy_rule(rule: &Value, namespaced: bool, path: &str, errs: &mut Errs) {
    if arr_at(rule, "verbs").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.verbs"),
            "verbs must contain at least one value",
        ));
    }
    let urls = arr_at(rule, "nonResourceURLs");
    if !urls.is_empty() {
        let rendered = go_string_slice(urls);
        if namespaced {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.nonResourceURLs"),
                rendered.clone(),
                "namespaced rules cannot apply to non-resource URLs",
            ));
        }
        if ["apiGroups", "resources", "resourceNames"]
            .iter()
            .any(|k| !arr_at(rule, k).is_empty())
        {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.nonResourceURLs"),
                rendered,
                "rules cannot apply to both regular resources and non-resource URLs",
            ));
        }
        return;
    }
    if arr_at(rule, "apiGroups").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.apiGroups"),
            "resource rules must supply at least one api group",
        ));
    }
    if arr_at(rule, "resources").is_empty() {
        errs.push(FieldError::required(
            format!("{path}.resources"),
            "resource rules must supply at least one resource",
        ));
    }
}

pub(super) fn validate_role(obj: &Value, errs: &mut Errs) {
    for (i, rule) in arr_at(obj, "rules").iter().enumerate() {
        validate_policy_rule(rule, true, &format!("rules[{i}]"), errs);
    }
}

pub(super) fn validate_cluster_role(obj: &Value, errs: &mut Errs) {
    for (i, rule) in arr_at(obj, "rules").iter().enumerate() {
        validate_policy_rule(rule, false, &format!("rules[{i}]"), errs);
    }
    if let Some(aggregation) = field(obj, "aggregationRule") {
        let selectors = arr_at(aggregation, "clusterRoleSelectors");
        if selectors.is_empty() {
            errs.push(FieldError::required(
                "aggregationRule.clusterRoleSelectors",
                "at least one clusterRoleSelector required if aggregationRule is non-nil",
            ));
        }
        for (i, selector) in selectors.iter().enumerate() {
            validate_label_selector(
                selector,
                &format!("aggregationRule.clusterRoleSelectors[{i}]"),
                errs,
            );
        }
    }
}

/// Upstream `ValidateRoleBinding` / `ValidateClusterRoleBinding` (`cluster`), with
/// `ValidateRoleBindingUpdate`'s immutable roleRef when `old` is given.
pub(super) fn validate_binding(obj: &Value, old: Option<&Value>, cluster: bool, errs: &mut Errs) {
    let role_ref = obj.get("roleRef").unwrap_or(&Value::Null);
    let group = str_at(role_ref, "apiGroup");
    if group != RBAC_GROUP {
        errs.push(FieldError::not_supported(
            "roleRef.apiGroup",
            group,
            &[RBAC_GROUP],
        ));
    }
    let kinds: &[&str] = if cluster {
        &["ClusterRole"]
    } else {
        &["Role", "ClusterRole"]
    };
    let kind = str_at(role_ref, "kind");
    if !kinds.contains(&kind) {
        errs.push(FieldError::not_supported("roleRef.kind", kind, kinds));
    }
    let name = str_at(role_ref, "name");
    if name.is_empty() {
        errs.push(FieldError::required("roleRef.name", ""));
    } else {
        for m in is_path_segment_name(name) {
            errs.push(FieldError::invalid("roleRef.name", name, m));
        }
    }
    for (i, subject) in arr_at(obj, "subjects").iter().enumerate() {
        validate_subject(subject, !cluster, &format!("subjects[{i}]"), errs);
    }
    if let Some(old) = old {
        let old_ref = old.get("roleRef").unwrap_or(&Value::Null);
        if old_ref != role_ref {
            errs.push(FieldError::invalid_rendered(
                "roleRef",
                format!(
                    "rbac.RoleRef{{APIGroup:{}, Kind:{}, Name:{}}}",
                    go_quote(group),
                    go_quote(kind),
                    go_quote(name)
                ),
                "cannot change roleRef",
            ));
        }
    }
}

/// Upstream `ValidateRoleBindingSubject`.
fn validate_subject(subject: &Value, namespaced: bool, path: &str, errs: &mut Errs) {
    let name = str_at(subject, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let group = str_at(subject, "apiGroup");
    match str_at(subject, "kind") {
        "ServiceAccount" => {
            if !name.is_empty() {
                for m in is_dns1123_subdomain(name) {
                    errs.push(FieldError::invalid(format!("{path}.name"), name, m));
                }
            }
            if !group.is_empty() {
                errs.push(FieldError::not_supported(
                    format!("{path}.apiGroup"),
                    group,
                    &[""],
                ));
            }
            if !namespaced && str_at(subject, "namespace").is_empty() {
                errs.push(FieldError::required(format!("{path}.namespace"), ""));
            }
        }
        "User" | "Group" => {
            if group != RBAC_GROUP {
                errs.push(FieldError::not_supported(
                    format!("{path}.apiGroup"),
                    group,
                    &[RBAC_GROUP],
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.kind"),
            other,
            &["ServiceAccount", "User", "Group"],
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{has, messages};
    use super::super::validate;
    use serde_json::json;

    #[test]
    fn rbac_names_may_hold_colons_but_not_slashes() {
        let ok = json!({"metadata": {"name": "system:node"}});
        assert!(validate("ClusterRole", &ok, None).is_empty());
        let bad = json!({"metadata": {"name": "a/b"}});
        assert!(has(
            &validate("ClusterRole", &bad, None),
            r#"metadata.name: Invalid value: "a/b": may not contain '/'"#
        ));
    }

    #[test]
    fn rules_need_verbs_and_resources_or_cluster_wide_urls() {
        let role = json!({"metadata": {"name": "r", "namespace": "default"}, "rules": [
            {"apiGroups": [""], "resources": ["pods"]},
            {"verbs": ["get"]},
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
        ]});
        let errs = validate("Role", &role, None);
        assert_eq!(
            messages(&errs),
            [
                "rules[0].verbs: Required value: verbs must contain at least one value",
                "rules[1].apiGroups: Required value: resource rules must supply at least one api group",
                "rules[1].resources: Required value: resource rules must supply at least one resource",
                r#"rules[2].nonResourceURLs: Invalid value: []string{"/healthz"}: namespaced rules cannot apply to non-resource URLs"#,
            ]
        );
        let cluster = json!({"metadata": {"name": "c"}, "rules": [
            {"verbs": ["get"], "nonResourceURLs": ["/healthz"]},
            {"verbs": ["get"], "nonResourceURLs": ["/x"], "resources": ["pods"]},
        ]});
        assert_eq!(
            messages(&validate("ClusterRole", &cluster, None)),
            [
                r#"rules[1].nonResourceURLs: Invalid value: []string{"/x"}: rules cannot apply to both regular resources and non-resource URLs"#
            ]
        );
        let empty_aggregation = json!({"metadata": {"name": "c"}, "aggregationRule": {}});
        assert!(has(
            &validate("ClusterRole", &empty_aggregation, None),
            "aggregationRule.clusterRoleSelectors: Required value: at least one clusterRoleSelector required if aggregationRule is non-nil"
        ));
    }

    #[test]
    fn bindings_reference_rbac_roles_and_valid_subjects() {
        let binding = json!({"metadata": {"name": "b"},
        "roleRef": {"apiGroup": "rbac", "kind": "Role", "name": ""},
        "subjects": [
            {"kind": "ServiceAccount", "name": "default"},
            {"kind": "User", "name": "alice"},
            {"kind": "Robot", "name": "r2"},
        ]});
        assert_eq!(
            messages(&validate("ClusterRoleBinding", &binding, None)),
            [
                r#"roleRef.apiGroup: Unsupported value: "rbac": supported values: "rbac.authorization.k8s.io""#,
                r#"roleRef.kind: Unsupported value: "Role": supported values: "ClusterRole""#,
                "roleRef.name: Required value",
                "subjects[0].namespace: Required value",
                r#"subjects[1].apiGroup: Unsupported value: "": supported values: "rbac.authorization.k8s.io""#,
                r#"subjects[2].kind: Unsupported value: "Robot": supported values: "ServiceAccount", "User", "Group""#,
            ]
        );
        let ok = json!({"metadata": {"name": "b", "namespace": "default"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "default"}]});
        assert!(validate("RoleBinding", &ok, None).is_empty());
        let mut changed = ok.clone();
        changed["roleRef"]["kind"] = json!("ClusterRole");
        assert_eq!(
            messages(&validate("RoleBinding", &changed, Some(&ok))),
            [
                r#"roleRef: Invalid value: rbac.RoleRef{APIGroup:"rbac.authorization.k8s.io", Kind:"ClusterRole", Name:"r"}: cannot change roleRef"#
            ]
        );
    }
}
