//! The RBAC objects in memory, with bindings indexed by subject: a decision looks only at
//! the bindings that name the caller's user or one of its groups. Built from the stored
//! objects and kept current from the registry's watch; a snapshot is immutable (a change
//! makes a new one), so readers never wait on writers.

use std::collections::HashMap;
use std::sync::Arc;

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

use crate::api::identity::{User, SERVICE_ACCOUNT_USER_PREFIX};
use crate::api::object;

/// The store key prefix all four RBAC kinds live under.
pub const KEY_PREFIX: &str = "/rbac.authorization.k8s.io/";

/// Who a binding names, as the authorizer compares it: service accounts as their user
/// name `system:serviceaccount:NS:NAME`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum Subject {
    User(String),
    Group(String),
}

/// What a binding grants: the role it references.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RoleRef {
    /// `Role` or `ClusterRole`.
    pub kind: String,
    pub name: String,
}

/// One RoleBinding (namespace set) or ClusterRoleBinding (namespace empty).
#[derive(Debug)]
pub struct Binding {
    pub namespace: String,
    pub name: String,
    pub role_ref: RoleRef,
    subjects: Vec<Subject>,
}

impl Binding {
    fn parse(namespace: &str, obj: &Value) -> Binding {
        let role_ref = &obj["roleRef"];
        let text = |v: &Value| v.as_str().unwrap_or("").to_string();
        let subjects = obj["subjects"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| {
                let name = text(&s["name"]);
                match s["kind"].as_str()? {
                    "User" => Some(Subject::User(name)),
                    "Group" => Some(Subject::Group(name)),
                    "ServiceAccount" => {
                        // A RoleBinding's service account defaults to its namespace.
                        let ns = match s["namespace"].as_str().unwrap_or("") {
                            "" => namespace,
                            ns => ns,
                        };
                        (!ns.is_empty()).then(|| {
                            Subject::User(format!("{SERVICE_ACCOUNT_USER_PREFIX}{ns}:{name}"))
                        })
                    }
                    _ => None,
                }
            })
            .collect();
        Binding {
            namespace: namespace.to_string(),
            name: object::name(obj).to_string(),
            role_ref: RoleRef {
                kind: text(&role_ref["kind"]),
                name: text(&role_ref["name"]),
            },
            subjects,
        }
    }

    /// Upstream's description of where a permission comes from.
    pub fn describe(&self) -> String {
        let kind = if self.namespace.is_empty() {
            "ClusterRoleBinding"
        } else {
            "RoleBinding"
        };
        match self.namespace.as_str() {
            "" => format!(
                "{kind} \"{}\" of {} \"{}\"",
                self.name, self.role_ref.kind, self.role_ref.name
            ),
            ns => format!(
                "{kind} \"{}/{}\" of {} \"{}\"",
                self.name, ns, self.role_ref.kind, self.role_ref.name
            ),
        }
    }
}

/// The policy rules of a stored Role or ClusterRole (rules that do not parse are left
/// out: validation refused them on the way in).
pub fn parse_rules(obj: &Value) -> Vec<PolicyRule> {
    obj["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|r| serde_json::from_value(r.clone()).ok())
        .collect()
}

/// Which RBAC kind a store key holds, with its namespace and name.
enum Keyed<'a> {
    Role(&'a str, &'a str),
    ClusterRole(&'a str),
    /// A RoleBinding's namespace.
    RoleBinding(&'a str),
    ClusterRoleBinding,
}

fn parse_key(key: &str) -> Option<Keyed<'_>> {
    let rest = key.strip_prefix(KEY_PREFIX)?;
    let (plural, rest) = rest.split_once('/')?;
    let namespaced = || rest.split_once('/');
    Some(match plural {
        "roles" => namespaced().map(|(ns, n)| Keyed::Role(ns, n))?,
        "rolebindings" => namespaced().map(|(ns, _)| Keyed::RoleBinding(ns))?,
        "clusterroles" => Keyed::ClusterRole(rest),
        "clusterrolebindings" => Keyed::ClusterRoleBinding,
        _ => return None,
    })
}

/// One immutable snapshot of the RBAC objects.
#[derive(Debug, Default, Clone)]
pub struct Index {
    /// Bumped on every change: cached decisions of older snapshots are void.
    pub generation: u64,
    roles: HashMap<(String, String), Arc<Vec<PolicyRule>>>,
    cluster_roles: HashMap<String, Arc<Vec<PolicyRule>>>,
    bindings: HashMap<String, Arc<Binding>>,
    /// Bindings by (namespace, subject); ClusterRoleBindings under namespace "".
    by_subject: HashMap<(String, Subject), Vec<Arc<Binding>>>,
}

/// Why a binding grants nothing: the role it references is missing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind}.rbac.authorization.k8s.io \"{name}\" not found")]
pub struct RoleNotFound {
    /// `role` or `clusterrole`, as upstream's listers say.
    pub kind: &'static str,
    pub name: String,
}

impl Index {
    /// An index of `objects` (store key, object).
    pub fn build<'a>(objects: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Index {
        let mut index = Index::default();
        for (key, obj) in objects {
            index.insert(key, obj);
        }
        index
    }

    /// Adds or replaces the object at `key`.
    pub fn insert(&mut self, key: &str, obj: &Value) {
        self.remove(key);
        match parse_key(key) {
            Some(Keyed::Role(ns, name)) => {
                self.roles
                    .insert((ns.into(), name.into()), Arc::new(parse_rules(obj)));
            }
            Some(Keyed::ClusterRole(name)) => {
                self.cluster_roles
                    .insert(name.into(), Arc::new(parse_rules(obj)));
            }
            Some(Keyed::RoleBinding(ns)) => self.insert_binding(key, Binding::parse(ns, obj)),
            Some(Keyed::ClusterRoleBinding) => self.insert_binding(key, Binding::parse("", obj)),
            None => return,
        }
        self.generation += 1;
    }

    fn insert_binding(&mut self, key: &str, binding: Binding) {
        let binding = Arc::new(binding);
        for subject in &binding.subjects {
            let entry = self
                .by_subject
                .entry((binding.namespace.clone(), subject.clone()))
                .or_default();
            if !entry.iter().any(|b| Arc::ptr_eq(b, &binding)) {
                entry.push(binding.clone());
            }
        }
        self.bindings.insert(key.to_string(), binding);
    }

    /// Forgets the object at `key`.
    pub fn remove(&mut self, key: &str) {
        match parse_key(key) {
            Some(Keyed::Role(ns, name)) => {
                self.roles.remove(&(ns.to_string(), name.to_string()));
            }
            Some(Keyed::ClusterRole(name)) => {
                self.cluster_roles.remove(name);
            }
            Some(Keyed::RoleBinding(_) | Keyed::ClusterRoleBinding) => {
                if let Some(old) = self.bindings.remove(key) {
                    for subject in &old.subjects {
                        let slot = (old.namespace.clone(), subject.clone());
                        if let Some(list) = self.by_subject.get_mut(&slot) {
                            list.retain(|b| !Arc::ptr_eq(b, &old));
                            if list.is_empty() {
                                self.by_subject.remove(&slot);
                            }
                        }
                    }
                }
            }
            None => return,
        }
        self.generation += 1;
    }

    /// The rules of the role `role_ref` names, for a binding in `namespace` ("" for a
    /// ClusterRoleBinding).
    pub fn role_rules(
        &self,
        role_ref: &RoleRef,
        namespace: &str,
    ) -> Result<Arc<Vec<PolicyRule>>, RoleNotFound> {
        let found = match role_ref.kind.as_str() {
            "Role" => self
                .roles
                .get(&(namespace.to_string(), role_ref.name.clone())),
            _ => self.cluster_roles.get(&role_ref.name),
        };
        found.cloned().ok_or_else(|| RoleNotFound {
            kind: if role_ref.kind == "Role" {
                "role"
            } else {
                "clusterrole"
            },
            name: role_ref.name.clone(),
        })
    }

    /// The bindings that apply to `user` in `namespace`: every ClusterRoleBinding naming
    /// it, then (for a namespace) the RoleBindings there; each binding once.
    pub fn bindings_for(&self, user: &User, namespace: &str) -> Vec<&Arc<Binding>> {
        let mut out: Vec<&Arc<Binding>> = Vec::new();
        let scopes: &[&str] = if namespace.is_empty() {
            &[""]
        } else {
            &["", namespace]
        };
        for scope in scopes {
            let subjects = std::iter::once(Subject::User(user.name.clone()))
                .chain(user.groups.iter().map(|g| Subject::Group(g.clone())));
            for subject in subjects {
                let Some(list) = self.by_subject.get(&(scope.to_string(), subject)) else {
                    continue;
                };
                for b in list {
                    if !out.iter().any(|seen| Arc::ptr_eq(seen, b)) {
                        out.push(b);
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str, groups: &[&str]) -> User {
        User {
            name: name.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn bindings_are_found_by_user_group_and_service_account() {
        let crb = json!({"metadata": {"name": "readers"},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "Group", "name": "devs"}, {"kind": "User", "name": "alice"}]});
        let rb = json!({"metadata": {"name": "sa", "namespace": "ns1"},
            "roleRef": {"kind": "Role", "name": "r"},
            "subjects": [{"kind": "ServiceAccount", "name": "builder"}]});
        let mut index = Index::build([
            (
                "/rbac.authorization.k8s.io/clusterrolebindings/readers",
                &crb,
            ),
            ("/rbac.authorization.k8s.io/rolebindings/ns1/sa", &rb),
        ]);
        let alice = user("alice", &["devs"]);
        let names =
            |bs: Vec<&Arc<Binding>>| -> Vec<String> { bs.iter().map(|b| b.name.clone()).collect() };
        assert_eq!(names(index.bindings_for(&alice, "ns1")), ["readers"]);
        assert!(index.bindings_for(&user("bob", &[]), "").is_empty());
        let sa = User::service_account("ns1", "builder", "uid");
        assert_eq!(names(index.bindings_for(&sa, "ns1")), ["sa"]);
        assert!(index.bindings_for(&sa, "ns2").is_empty());
        assert!(index.bindings_for(&sa, "").is_empty());
        let before = index.generation;
        index.remove("/rbac.authorization.k8s.io/clusterrolebindings/readers");
        assert!(index.generation > before);
        assert!(index.bindings_for(&alice, "ns1").is_empty());
        let err = index
            .role_rules(
                &RoleRef {
                    kind: "Role".into(),
                    name: "r".into(),
                },
                "ns1",
            )
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "role.rbac.authorization.k8s.io \"r\" not found"
        );
    }
}
