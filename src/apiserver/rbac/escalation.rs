//! Escalation prevention on RBAC writes (upstream's policy-based role and binding
//! storage, `ConfirmNoEscalation`, `RoleEscalationAuthorized`, `BindingAuthorized`): a
//! client may only write a role whose permissions it holds itself, or bind a role whose
//! permissions it holds, unless it has `escalate` / `bind` on that role. `system:masters`
//! is exempt; the in-process controllers are never checked.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

use super::rules::{compact, compact_string, go_string_list, uncovered};
use super::{Attributes, Rbac};
use crate::api::identity::User;
use crate::api::object;
use crate::api::resources::ResourceDef;
use crate::api::status::{resource_name, ApiError};
use crate::api::validation::RBAC_GROUP;

/// Whether an update changes nothing but what the garbage collector writes (upstream
/// `IsOnlyMutatingGCFields`): such updates are never escalations.
fn only_gc_fields_changed(new: &Value, old: &Value) -> bool {
    let strip = |v: &Value| {
        let mut v = v.clone();
        if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
            for f in [
                "ownerReferences",
                "finalizers",
                "resourceVersion",
                "managedFields",
                "generation",
            ] {
                meta.remove(f);
            }
        }
        v
    };
    strip(new) == strip(old)
}

fn forbidden(def: &ResourceDef, name: &str, why: &str) -> ApiError {
    ApiError {
        details: Some(serde_json::json!({"name": name, "group": def.group, "kind": def.plural})),
        ..ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: {why}",
            resource_name(def)
        ))
    }
}

/// Upstream `ConfirmNoEscalation`: `Err(message)` naming the permissions in `wanted` that
/// `user` does not hold in `namespace`.
pub fn confirm_no_escalation(
    rbac: &Rbac,
    user: &User,
    namespace: &str,
    wanted: &[PolicyRule],
) -> Result<(), String> {
    let (owned, errors) = rbac.rules_and_errors(user, namespace);
    let missing = uncovered(&owned, wanted);
    if missing.is_empty() {
        return Ok(());
    }
    let mut shown: Vec<String> = compact(missing).iter().map(compact_string).collect();
    shown.sort();
    shown.dedup();
    let mut msg = format!(
        "user \"{}\" (groups={}) is attempting to grant RBAC permissions not currently held:\n{}",
        user.name,
        go_string_list(&user.groups),
        shown.join("\n")
    );
    if !errors.is_empty() {
        msg.push_str(&format!("; resolution errors: [{}]", errors.join(" ")));
    }
    Err(msg)
}

/// Everything: what an aggregationRule may gather (upstream `fullAuthority`).
fn full_authority() -> Vec<PolicyRule> {
    let all = || Some(vec!["*".to_string()]);
    vec![
        PolicyRule {
            verbs: vec!["*".into()],
            api_groups: all(),
            resources: all(),
            ..Default::default()
        },
        PolicyRule {
            verbs: vec!["*".into()],
            non_resource_urls: all(),
            ..Default::default()
        },
    ]
}

/// Admission of a Role or ClusterRole write by `requester`: refused unless it holds every
/// rule (in the role's namespace), has `escalate` on the role, or is `system:masters`. A
/// ClusterRole that sets or changes an aggregationRule needs every permission.
pub fn admit_role(
    rbac: &Rbac,
    requester: &User,
    def: &ResourceDef,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if requester.is_admin() || old.is_some_and(|old| only_gc_fields_changed(new, old)) {
        return Ok(());
    }
    let namespace = object::namespace(new).unwrap_or("");
    let name = object::name(new);
    // As upstream: the request's name, which a create does not have.
    let request_name = if old.is_some() { name } else { "" };
    let escalate = Attributes::resource(
        "escalate",
        namespace,
        RBAC_GROUP,
        def.plural,
        "",
        request_name,
    );
    if rbac.authorize(requester, &escalate).is_allowed() {
        return Ok(());
    }
    let rules = super::index::parse_rules(new);
    confirm_no_escalation(rbac, requester, namespace, &rules)
        .map_err(|why| forbidden(def, name, &why))?;
    let aggregation = new.get("aggregationRule").filter(|a| !a.is_null());
    let aggregation_changed =
        aggregation.is_some() && old.is_none_or(|old| old.get("aggregationRule") != aggregation);
    if aggregation_changed
        && confirm_no_escalation(rbac, requester, namespace, &full_authority()).is_err()
    {
        return Err(forbidden(
            def,
            name,
            "must have cluster-admin privileges to use the aggregationRule",
        ));
    }
    Ok(())
}

/// Admission of a RoleBinding or ClusterRoleBinding write by `requester`: refused unless
/// it has `bind` on the referenced role (resourceNames honoured), holds every permission
/// of that role, or is `system:masters`.
pub fn admit_binding(
    rbac: &Rbac,
    requester: &User,
    def: &ResourceDef,
    new: &Value,
    old: Option<&Value>,
) -> Result<(), ApiError> {
    if requester.is_admin() || old.is_some_and(|old| only_gc_fields_changed(new, old)) {
        return Ok(());
    }
    let namespace = object::namespace(new).unwrap_or("");
    let name = object::name(new);
    let role_ref = &new["roleRef"];
    let kind = role_ref["kind"].as_str().unwrap_or("");
    let role_name = role_ref["name"].as_str().unwrap_or("");
    let resource = match kind {
        "Role" => "roles",
        "ClusterRole" => "clusterroles",
        // Validation refuses it with the supported kinds.
        _ => return Ok(()),
    };
    let bind = Attributes::resource(
        "bind",
        namespace,
        role_ref["apiGroup"].as_str().unwrap_or(""),
        resource,
        "",
        role_name,
    );
    if rbac.authorize(requester, &bind).is_allowed() {
        return Ok(());
    }
    let rules = rbac
        .role_ref_rules(kind, role_name, namespace)
        .map_err(|e| forbidden(def, name, &e.to_string()))?;
    confirm_no_escalation(rbac, requester, namespace, &rules)
        .map_err(|why| forbidden(def, name, &why))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::by_plural;
    use serde_json::json;

    fn rbac_with(objects: &[(&str, Value)]) -> Rbac {
        Rbac::from_objects(objects.iter().map(|(k, v)| (*k, v)))
    }

    fn alice() -> User {
        User {
            name: "alice".into(),
            groups: vec!["devs".into(), "system:authenticated".into()],
            ..Default::default()
        }
    }

    fn pod_reader_setup(extra_rules: Value) -> Rbac {
        rbac_with(&[
            (
                "/rbac.authorization.k8s.io/roles/ns/manager",
                json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get", "list"]}]}),
            ),
            (
                "/rbac.authorization.k8s.io/rolebindings/ns/alice",
                json!({"metadata": {"name": "alice", "namespace": "ns"},
                       "roleRef": {"kind": "Role", "name": "manager"},
                       "subjects": [{"kind": "User", "name": "alice"}]}),
            ),
            (
                "/rbac.authorization.k8s.io/clusterroles/extra",
                json!({"rules": extra_rules}),
            ),
            (
                "/rbac.authorization.k8s.io/clusterrolebindings/alice-extra",
                json!({"metadata": {"name": "alice-extra"},
                       "roleRef": {"kind": "ClusterRole", "name": "extra"},
                       "subjects": [{"kind": "Group", "name": "devs"}]}),
            ),
        ])
    }

    fn role(verbs: &[&str]) -> Value {
        json!({"metadata": {"name": "r", "namespace": "ns"},
               "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": verbs}]})
    }

    #[test]
    fn a_role_with_permissions_the_writer_lacks_is_refused_with_upstreams_message() {
        let rbac = pod_reader_setup(json!([]));
        let roles = by_plural("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        assert!(admit_role(&rbac, &alice(), roles, &role(&["get"]), None).is_ok());
        let err = admit_role(&rbac, &alice(), roles, &role(&["get", "delete"]), None).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "roles.rbac.authorization.k8s.io \"r\" is forbidden: user \"alice\" (groups=[\"devs\" \"system:authenticated\"]) is attempting to grant RBAC permissions not currently held:\n{APIGroups:[\"\"], Resources:[\"pods\"], Verbs:[\"delete\"]}"
        );
        // Elsewhere alice holds nothing.
        let mut other_ns = role(&["get"]);
        other_ns["metadata"]["namespace"] = json!("other");
        assert!(admit_role(&rbac, &alice(), roles, &other_ns, None).is_err());
        let admin = User {
            name: "root".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        assert!(admit_role(&rbac, &admin, roles, &role(&["*"]), None).is_ok());
    }

    #[test]
    fn escalate_permission_lets_a_role_writer_grant_more() {
        let rbac = pod_reader_setup(json!([{"apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["roles"], "verbs": ["escalate"]}]));
        let roles = by_plural("rbac.authorization.k8s.io", "v1", "roles").unwrap();
        assert!(admit_role(&rbac, &alice(), roles, &role(&["*"]), None).is_ok());
    }

    #[test]
    fn aggregation_rules_need_every_permission() {
        let rbac = pod_reader_setup(json!([]));
        let cluster_roles = by_plural("rbac.authorization.k8s.io", "v1", "clusterroles").unwrap();
        let aggregated = json!({"metadata": {"name": "agg"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"a": "b"}}]}});
        let err = admit_role(&rbac, &alice(), cluster_roles, &aggregated, None).unwrap_err();
        assert!(
            err.message
                .ends_with("must have cluster-admin privileges to use the aggregationRule"),
            "{}",
            err.message
        );
    }

    #[test]
    fn binding_needs_the_roles_permissions_or_bind_on_it() {
        let rbac = pod_reader_setup(json!([{"apiGroups": ["rbac.authorization.k8s.io"],
            "resources": ["clusterroles"], "verbs": ["bind"], "resourceNames": ["view"]}]));
        let bindings = by_plural("rbac.authorization.k8s.io", "v1", "rolebindings").unwrap();
        let binding = |kind: &str, name: &str| {
            json!({"metadata": {"name": "b", "namespace": "ns"},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": kind, "name": name},
            "subjects": [{"kind": "User", "name": "bob"}]})
        };
        assert!(
            admit_binding(&rbac, &alice(), bindings, &binding("Role", "manager"), None).is_ok()
        );
        // `bind` on view, although view does not even exist here.
        assert!(admit_binding(
            &rbac,
            &alice(),
            bindings,
            &binding("ClusterRole", "view"),
            None
        )
        .is_ok());
        let err = admit_binding(
            &rbac,
            &alice(),
            bindings,
            &binding("ClusterRole", "edit"),
            None,
        )
        .unwrap_err();
        assert_eq!(
            err.message,
            "rolebindings.rbac.authorization.k8s.io \"b\" is forbidden: clusterrole.rbac.authorization.k8s.io \"edit\" not found"
        );
        let err = admit_binding(
            &rbac,
            &alice(),
            bindings,
            &binding("ClusterRole", "extra"),
            None,
        );
        assert!(err.is_ok(), "an empty role grants nothing to escalate");
    }
}
