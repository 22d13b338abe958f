//! Authentication (client certificates, bearer tokens) and authorization of API requests:
//! admins may do anything, nodes get what their kubelet needs for themselves and the pods
//! bound to them (upstream's Node authorizer and NodeRestriction, simplified), and the join
//! token's bootstrap identity may only ask for a node credential.

use std::collections::HashMap;
use std::sync::RwLock;

use serde_json::Value;

use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;

pub use crate::api::identity::{
    User, ADMIN_GROUP, BOOTSTRAP_GROUP, BOOTSTRAP_USER, NODES_GROUP, NODE_LEASE_NAMESPACE,
    NODE_USER_PREFIX,
};

/// Static bearer tokens (compared in constant time), each mapped to a user.
#[derive(Default)]
pub struct TokenAuthenticator {
    tokens: RwLock<HashMap<String, User>>,
}

impl TokenAuthenticator {
    pub fn insert(&self, token: &str, user: User) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), user);
    }

    pub fn authenticate(&self, token: &str) -> Option<User> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens
            .iter()
            .find(|(known, _)| constant_time_eq(known.as_bytes(), token.as_bytes()))
            .map(|(_, user)| user.clone())
    }
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    pub verb: &'a str,
    pub def: &'a ResourceDef,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
    /// For list/watch: the one object a `metadata.name=` field selector narrows it to.
    pub selected_name: Option<&'a str>,
}

/// The stored objects node authorization depends on (upstream's node graph). This is read
/// from the watch cache and may be a moment stale.
pub trait NodeGraph {
    /// `spec.nodeName` of the pod `namespace/name` (`None` if the pod does not exist).
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String>;
    /// Whether a pod bound to `node` in `namespace` references the `kind`
    /// (`Secret` or `ConfigMap`) named `name`.
    fn node_references(&self, node: &str, namespace: &str, kind: &str, name: &str) -> bool;
}

/// Decides whether `user` may perform `action` (403 `Status` if not).
pub fn authorize(user: &User, action: &Action<'_>, graph: &dyn NodeGraph) -> Result<(), ApiError> {
    if user.is_admin() {
        return Ok(());
    }
    match user.node_name() {
        Some(node) => authorize_node(user, node, action, graph),
        None => Err(forbidden(user, action, None)),
    }
}

const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
const WRITE_VERBS: [&str; 2] = ["update", "patch"];

fn authorize_node(
    user: &User,
    node: &str,
    action: &Action<'_>,
    graph: &dyn NodeGraph,
) -> Result<(), ApiError> {
    let verb = action.verb;
    let read = READ_VERBS.contains(&verb);
    let deny = |why: Option<String>| Err(forbidden(user, action, why));
    match (action.def.group, action.def.plural, action.subresource) {
        ("", "nodes", None | Some("status")) => {
            if read {
                return Ok(());
            }
            match (verb, action.name) {
                // The name is in the body: `admit_create` checks it.
                ("create", None) if action.subresource.is_none() => Ok(()),
                ("update" | "patch" | "delete", Some(name)) if name == node => Ok(()),
                ("update" | "patch" | "delete", Some(name)) => deny(Some(format!(
                    "node \"{node}\" is not allowed to modify node \"{name}\""
                ))),
                _ => deny(None),
            }
        }
        ("", "pods", None) if read => Ok(()),
        ("", "pods", sub @ (None | Some("status"))) => {
            let wanted = match (verb, sub) {
                ("delete", None) => "delete pods",
                ("update" | "patch", Some("status")) => "update pod status for pods",
                _ => return deny(None),
            };
            let bound = match (action.namespace, action.name) {
                (Some(ns), Some(name)) => graph.pod_node(ns, name).as_deref() == Some(node),
                _ => false,
            };
            if bound {
                Ok(())
            } else {
                deny(Some(format!(
                    "node \"{node}\" can only {wanted} with spec.nodeName set to itself"
                )))
            }
        }
        ("", "services" | "endpoints" | "namespaces", None) if read => Ok(()),
        ("", plural @ ("secrets" | "configmaps"), None) if read => {
            let name = match verb {
                "get" => action.name,
                _ => action.selected_name,
            };
            let kind = if plural == "secrets" {
                "Secret"
            } else {
                "ConfigMap"
            };
            match (action.namespace, name) {
                (Some(ns), Some(name)) if graph.node_references(node, ns, kind, name) => Ok(()),
                _ => deny(Some(format!(
                    "no relationship found between node '{node}' and this object"
                ))),
            }
        }
        ("coordination.k8s.io", "leases", None) => {
            if action.namespace != Some(NODE_LEASE_NAMESPACE) {
                return deny(None);
            }
            match (verb, action.name) {
                ("create", None) => Ok(()),
                ("get" | "update" | "patch" | "delete", Some(name)) if name == node => Ok(()),
                ("get" | "update" | "patch" | "delete", Some(_)) => deny(Some(
                    "can only access node lease with the same name as the requesting node".into(),
                )),
                _ => deny(None),
            }
        }
        ("" | "events.k8s.io", "events", None)
            if verb == "create" || WRITE_VERBS.contains(&verb) =>
        {
            Ok(())
        }
        _ => deny(None),
    }
}

/// Admission of a create once its body is known (NodeRestriction): a node may create only
/// its own Node and its own Lease.
pub fn admit_create(user: &User, def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let name = crate::api::object::name(obj);
    let why = match def.plural {
        "nodes" if name != node => {
            format!("node \"{node}\" is not allowed to modify node \"{name}\"")
        }
        "leases" if name != node => {
            "can only access node lease with the same name as the requesting node".to_string()
        }
        _ => return Ok(()),
    };
    Err(ApiError::forbidden(format!(
        "{} \"{name}\" is forbidden: {why}",
        crate::api::status::resource_name(def)
    )))
}

/// Labels no node may set on itself (upstream `v1.LabelNamespaceNodeRestriction`): they
/// are how admins steer workloads to nodes they trust.
const NODE_RESTRICTION_LABEL_NAMESPACE: &str = "node-restriction.kubernetes.io";
/// The `kubernetes.io`/`k8s.io` labels a kubelet sets on its own Node (upstream
/// `kubeletapis.IsKubeletLabel`); every other label of those namespaces is the cluster's.
const KUBELET_LABELS: [&str; 11] = [
    "kubernetes.io/hostname",
    "topology.kubernetes.io/zone",
    "topology.kubernetes.io/region",
    "failure-domain.beta.kubernetes.io/zone",
    "failure-domain.beta.kubernetes.io/region",
    "beta.kubernetes.io/instance-type",
    "node.kubernetes.io/instance-type",
    "kubernetes.io/os",
    "kubernetes.io/arch",
    "beta.kubernetes.io/os",
    "beta.kubernetes.io/arch",
];
const KUBELET_LABEL_NAMESPACES: [&str; 2] = ["kubelet.kubernetes.io", "node.kubernetes.io"];
/// The label pods pin a node with (`nodeSelector`, affinity): it must stay the node's
/// own name, or a node could attract pods meant for another.
const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// NodeRestriction for a node writing its own Node (upstream's `admitNode`): on create
/// no restricted label; on update no change to taints, ownerReferences or restricted
/// labels. orc adds what a node could otherwise use to steer pods or traffic to itself:
/// `spec.unschedulable` (uncordoning itself), `spec.podCIDR(s)` (assigned by the server's
/// node IPAM; other agents route that prefix to the node) and a `kubernetes.io/hostname`
/// other than its own name. Others than nodes are not restricted here.
pub fn admit_node_write(user: &User, new: &Value, old: Option<&Value>) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let name = crate::api::object::name(new);
    let deny = |why: String| {
        Err(ApiError::forbidden(format!(
            "nodes \"{name}\" is forbidden: {why}"
        )))
    };
    let spec = |obj: &Value, field: &str| obj["spec"].get(field).cloned().unwrap_or(Value::Null);
    let Some(old) = old else {
        let forbidden = forbidden_node_labels(node, &modified_labels(new, &Value::Null), new, true);
        if !forbidden.is_empty() {
            return deny(format!(
                "node \"{node}\" is not allowed to set the following labels: {}",
                forbidden.join(", ")
            ));
        }
        if has_pod_cidrs(new) {
            return deny(format!(
                "node \"{node}\" is not allowed to set spec.podCIDRs: the server assigns them"
            ));
        }
        return Ok(());
    };
    if spec(new, "taints") != spec(old, "taints") {
        return deny(format!("node \"{node}\" is not allowed to modify taints"));
    }
    if new["metadata"].get("ownerReferences") != old["metadata"].get("ownerReferences") {
        return deny(format!(
            "node \"{node}\" is not allowed to modify ownerReferences"
        ));
    }
    let schedulable = |obj: &Value| !spec(obj, "unschedulable").as_bool().unwrap_or(false);
    if schedulable(new) != schedulable(old) {
        return deny(format!(
            "node \"{node}\" is not allowed to modify spec.unschedulable"
        ));
    }
    for field in ["podCIDR", "podCIDRs"] {
        if spec(new, field) != spec(old, field) {
            return deny(format!(
                "node \"{node}\" is not allowed to modify spec.{field}: the server assigns it"
            ));
        }
    }
    let forbidden = forbidden_node_labels(node, &modified_labels(new, old), new, false);
    if !forbidden.is_empty() {
        return deny(format!(
            "is not allowed to modify labels: {}",
            forbidden.join(", ")
        ));
    }
    Ok(())
}

fn has_pod_cidrs(node: &Value) -> bool {
    let spec = &node["spec"];
    !spec["podCIDR"].as_str().unwrap_or("").is_empty()
        || spec["podCIDRs"].as_array().is_some_and(|a| !a.is_empty())
}

/// The label keys whose value differs between `new` and `old` (added, removed, changed),
/// sorted (upstream `getModifiedLabels`).
fn modified_labels(new: &Value, old: &Value) -> Vec<String> {
    let labels = |obj: &Value| {
        obj["metadata"]["labels"]
            .as_object()
            .cloned()
            .unwrap_or_default()
    };
    let (new, old) = (labels(new), labels(old));
    let keys: std::collections::BTreeSet<&String> = new.keys().chain(old.keys()).collect();
    keys.into_iter()
        .filter(|k| new.get(*k) != old.get(*k))
        .cloned()
        .collect()
}

/// Of the `modified` labels, those node `node` may not set (upstream
/// `getForbiddenLabels`, plus the hostname rule); `new` is the Node as written.
fn forbidden_node_labels(
    node: &str,
    modified: &[String],
    new: &Value,
    creating: bool,
) -> Vec<String> {
    let in_namespace = |ns: &str, wanted: &str| ns == wanted || ns.ends_with(&format!(".{wanted}"));
    modified
        .iter()
        .filter(|key| {
            let ns = key.split_once('/').map(|(ns, _)| ns).unwrap_or("");
            if in_namespace(ns, NODE_RESTRICTION_LABEL_NAMESPACE) {
                return true;
            }
            if key.as_str() == HOSTNAME_LABEL {
                let own_name = new["metadata"]["labels"][HOSTNAME_LABEL].as_str() == Some(node);
                return !(creating && own_name);
            }
            let kubernetes = in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io");
            let kubelet = KUBELET_LABELS.contains(&key.as_str())
                || KUBELET_LABEL_NAMESPACES.iter().any(|k| in_namespace(ns, k));
            kubernetes && !kubelet
        })
        .cloned()
        .collect()
}

/// The upstream wording of a denial, with the reason a node rule gives, if any.
fn forbidden(user: &User, action: &Action<'_>, why: Option<String>) -> ApiError {
    let resource = match action.subresource {
        Some(sub) => format!("{}/{sub}", action.def.plural),
        None => action.def.plural.to_string(),
    };
    let scope = match action.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let subject = match action.name {
        Some(name) => format!(
            "{} \"{name}\" is forbidden",
            crate::api::status::resource_name(action.def)
        ),
        None => format!(
            "{} is forbidden",
            crate::api::status::resource_name(action.def)
        ),
    };
    let why = why.map(|w| format!(": {w}")).unwrap_or_default();
    ApiError::forbidden(format!(
        "{subject}: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}{why}",
        user.name, action.verb, action.def.group
    ))
}

/// Whether `pod` references the `kind` (`Secret` or `ConfigMap`) named `name`: volumes
/// (also projected), env and envFrom of every container, and image pull secrets.
pub fn pod_references(pod: &Value, kind: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    let (volume_field, ref_field, key_ref, from_ref) = match kind {
        "Secret" => ("secret", "secretName", "secretKeyRef", "secretRef"),
        "ConfigMap" => ("configMap", "name", "configMapKeyRef", "configMapRef"),
        _ => return false,
    };
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let named = |v: &Value, field: &str| v[field].as_str() == Some(name);
    if kind == "Secret"
        && items(&spec["imagePullSecrets"])
            .iter()
            .any(|s| named(s, "name"))
    {
        return true;
    }
    for volume in items(&spec["volumes"]) {
        if named(&volume[volume_field], ref_field) {
            return true;
        }
        let projected = items(&volume["projected"]["sources"]);
        if projected.iter().any(|s| named(&s[volume_field], "name")) {
            return true;
        }
    }
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| items(&spec[*f]));
    for c in containers {
        if items(&c["env"])
            .iter()
            .any(|e| named(&e["valueFrom"][key_ref], "name"))
        {
            return true;
        }
        if items(&c["envFrom"])
            .iter()
            .any(|e| named(&e[from_ref], "name"))
        {
            return true;
        }
    }
    false
}

impl NodeGraph for super::registry::Registry {
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
        let pods = crate::api::resources::by_plural("", "v1", "pods").expect("served");
        let kv = self.get(pods, Some(namespace), name).ok()?;
        Some(
            kv.value["spec"]["nodeName"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }

    fn node_references(&self, node: &str, namespace: &str, kind: &str, name: &str) -> bool {
        let pods = crate::api::resources::by_plural("", "v1", "pods").expect("served");
        let page = self.list(pods, Some(namespace), None, 1, &|kv| {
            kv.value["spec"]["nodeName"].as_str() == Some(node)
                && pod_references(&kv.value, kind, name)
        });
        !page.items.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::by_plural;
    use serde_json::json;

    /// A node graph over plain pod values.
    struct Pods(Vec<Value>);

    impl NodeGraph for Pods {
        fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
                .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        }

        fn node_references(&self, node: &str, namespace: &str, kind: &str, name: &str) -> bool {
            self.0.iter().any(|p| {
                p["metadata"]["namespace"] == namespace
                    && p["spec"]["nodeName"] == node
                    && pod_references(p, kind, name)
            })
        }
    }

    fn graph() -> Pods {
        Pods(vec![
            json!({"metadata": {"namespace": "default", "name": "mine"},
                   "spec": {"nodeName": "n1", "volumes": [{"name": "v", "secret": {"secretName": "db"}}],
                            "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}),
            json!({"metadata": {"namespace": "default", "name": "theirs"},
                   "spec": {"nodeName": "n2", "volumes": [{"name": "v", "secret": {"secretName": "other"}}]}}),
        ])
    }

    fn node(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec![NODES_GROUP.into()],
        }
    }

    fn action<'a>(
        verb: &'a str,
        plural: &str,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
        subresource: Option<&'a str>,
    ) -> Action<'a> {
        let def = crate::api::resources::RESOURCES
            .iter()
            .find(|d| d.plural == plural)
            .expect("served resource");
        Action {
            verb,
            def,
            namespace,
            name,
            subresource,
            selected_name: None,
        }
    }

    fn allowed(user: &User, a: &Action<'_>) -> bool {
        authorize(user, a, &graph()).is_ok()
    }

    #[test]
    fn admins_may_do_anything_and_others_get_an_upstream_style_403() {
        let pods = by_plural("", "v1", "pods").unwrap();
        let action = Action {
            verb: "list",
            def: pods,
            namespace: Some("default"),
            name: None,
            subresource: None,
            selected_name: None,
        };
        let admin = User {
            name: "system:admin".into(),
            groups: vec![ADMIN_GROUP.into()],
        };
        assert!(authorize(&admin, &action, &graph()).is_ok());
        let bob = User {
            name: "bob".into(),
            groups: vec![],
        };
        let err = authorize(&bob, &action, &graph()).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }

    #[test]
    fn node_may_update_its_own_node_status_but_not_another_nodes() {
        let n1 = node("n1");
        for verb in ["update", "patch"] {
            assert!(allowed(
                &n1,
                &action(verb, "nodes", None, Some("n1"), Some("status"))
            ));
            assert!(allowed(&n1, &action(verb, "nodes", None, Some("n1"), None)));
        }
        let err = authorize(
            &n1,
            &action("patch", "nodes", None, Some("n2"), Some("status")),
            &graph(),
        )
        .unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "nodes \"n2\" is forbidden: User \"system:node:n1\" cannot patch resource \"nodes/status\" in API group \"\" at the cluster scope: node \"n1\" is not allowed to modify node \"n2\""
        );
        // Every node reads every Node: its host-gw routes follow the others' podCIDRs.
        assert!(allowed(&n1, &action("list", "nodes", None, None, None)));
        assert!(allowed(&n1, &action("watch", "nodes", None, None, None)));
        assert!(allowed(
            &n1,
            &action("get", "nodes", None, Some("n2"), None)
        ));
    }

    #[test]
    fn node_may_create_only_its_own_node_and_lease() {
        let n1 = node("n1");
        let nodes = by_plural("", "v1", "nodes").unwrap();
        let leases = by_plural("coordination.k8s.io", "v1", "leases").unwrap();
        assert!(allowed(&n1, &action("create", "nodes", None, None, None)));
        assert!(admit_create(&n1, nodes, &json!({"metadata": {"name": "n1"}})).is_ok());
        let err = admit_create(&n1, nodes, &json!({"metadata": {"name": "n2"}})).unwrap_err();
        assert_eq!(err.code, 403);
        assert!(
            err.message.contains("not allowed to modify node \"n2\""),
            "{}",
            err.message
        );
        assert!(admit_create(&n1, leases, &json!({"metadata": {"name": "n2"}})).is_err());
        let admin = User {
            name: "system:admin".into(),
            groups: vec![ADMIN_GROUP.into()],
        };
        assert!(admit_create(&admin, nodes, &json!({"metadata": {"name": "n2"}})).is_ok());
    }

    fn own_node() -> Value {
        json!({"metadata": {"name": "n1", "labels": {
                   "kubernetes.io/hostname": "n1", "kubernetes.io/os": "linux", "zone": "attic"}},
               "spec": {"podCIDR": "10.42.1.0/24", "podCIDRs": ["10.42.1.0/24"],
                        "taints": [{"key": "dedicated", "value": "db", "effect": "NoSchedule"}],
                        "unschedulable": true}})
    }

    fn node_write_refusal(new: &Value, old: Option<&Value>) -> String {
        let err = admit_node_write(&node("n1"), new, old).unwrap_err();
        assert_eq!((err.code, err.reason), (403, "Forbidden"));
        err.message
    }

    #[test]
    fn node_may_not_change_its_taints_cordon_pod_cidrs_or_owners() {
        let old = own_node();
        let changed = |f: &dyn Fn(&mut Value)| {
            let mut new = old.clone();
            f(&mut new);
            node_write_refusal(&new, Some(&old))
        };
        assert_eq!(
            changed(&|n| n["spec"]["taints"] = json!([])),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify taints"
        );
        assert_eq!(
            changed(&|n| {
                n["spec"].as_object_mut().unwrap().remove("unschedulable");
            }),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to modify spec.unschedulable"
        );
        assert!(changed(&|n| n["spec"]["podCIDRs"] = json!(["0.0.0.0/1"]))
            .ends_with("is not allowed to modify spec.podCIDRs: the server assigns it"));
        assert!(
            changed(&|n| n["spec"]["podCIDR"] = json!("10.42.2.0/24")).contains("spec.podCIDR:")
        );
        assert!(
            changed(&|n| n["metadata"]["ownerReferences"] = json!([{"name": "x"}]))
                .ends_with("not allowed to modify ownerReferences")
        );
        // Status, its own labels and kubelet labels stay the node's.
        let mut fine = old.clone();
        fine["status"] = json!({"capacity": {"cpu": "4"}});
        fine["metadata"]["labels"]["zone"] = json!("cellar");
        fine["metadata"]["labels"]["topology.kubernetes.io/zone"] = json!("a");
        fine["metadata"]["labels"]["node.kubernetes.io/exclude-from-external-load-balancers"] =
            json!("true");
        assert!(admit_node_write(&node("n1"), &fine, Some(&old)).is_ok());
    }

    #[test]
    fn node_may_not_give_itself_restricted_labels() {
        let old = own_node();
        let relabel = |key: &str, value: Option<&str>| {
            let mut new = old.clone();
            match value {
                Some(v) => new["metadata"]["labels"][key] = json!(v),
                None => {
                    new["metadata"]["labels"]
                        .as_object_mut()
                        .unwrap()
                        .remove(key);
                }
            }
            node_write_refusal(&new, Some(&old))
        };
        assert_eq!(
            relabel("node-restriction.kubernetes.io/trusted", Some("yes")),
            "nodes \"n1\" is forbidden: is not allowed to modify labels: node-restriction.kubernetes.io/trusted"
        );
        assert!(
            relabel("example.node-restriction.kubernetes.io/x", Some("y"))
                .ends_with("labels: example.node-restriction.kubernetes.io/x")
        );
        assert!(relabel("node-role.kubernetes.io/control-plane", Some(""))
            .ends_with("labels: node-role.kubernetes.io/control-plane"));
        assert!(relabel("kubernetes.io/hostname", Some("n2"))
            .ends_with("labels: kubernetes.io/hostname"));
        assert!(relabel("kubernetes.io/hostname", None).ends_with("labels: kubernetes.io/hostname"));
        assert!(relabel("k8s.io/anything", Some("x")).ends_with("labels: k8s.io/anything"));
    }

    #[test]
    fn node_registers_with_kubelet_labels_and_taints_but_no_restricted_label_or_pod_cidr() {
        let mut created = own_node();
        created["spec"] =
            json!({"taints": [{"key": "k", "effect": "NoSchedule"}], "unschedulable": true});
        assert!(admit_node_write(&node("n1"), &created, None).is_ok());
        let mut role = created.clone();
        role["metadata"]["labels"]["node-role.kubernetes.io/master"] = json!("");
        role["metadata"]["labels"]["kubernetes.io/hostname"] = json!("n2");
        assert_eq!(
            node_write_refusal(&role, None),
            "nodes \"n1\" is forbidden: node \"n1\" is not allowed to set the following labels: kubernetes.io/hostname, node-role.kubernetes.io/master"
        );
        let mut cidr = created.clone();
        cidr["spec"]["podCIDR"] = json!("10.42.9.0/24");
        assert!(node_write_refusal(&cidr, None)
            .ends_with("not allowed to set spec.podCIDRs: the server assigns them"));
        // Admins (and controllers, which are never admitted) may do all of it.
        let admin = User {
            name: "system:admin".into(),
            groups: vec![ADMIN_GROUP.into()],
        };
        assert!(admit_node_write(&admin, &role, Some(&own_node())).is_ok());
    }

    #[test]
    fn node_may_not_act_as_admin() {
        let n1 = node("n1");
        let denied = [
            action("create", "namespaces", None, None, None),
            action("delete", "namespaces", None, Some("default"), None),
            action("create", "pods", Some("kube-system"), None, None),
            action("create", "secrets", Some("kube-system"), None, None),
            action("update", "secrets", Some("default"), Some("db"), None),
            action("delete", "secrets", Some("default"), Some("db"), None),
            action("list", "secrets", Some("kube-system"), None, None),
            action("create", "deployments", Some("default"), None, None),
            action(
                "update",
                "services",
                Some("default"),
                Some("kubernetes"),
                None,
            ),
            action("delete", "nodes", None, Some("n2"), None),
            action(
                "update",
                "leases",
                Some("kube-node-lease"),
                Some("n2"),
                None,
            ),
            action("create", "leases", Some("default"), None, None),
            action(
                "create",
                "pods",
                Some("default"),
                Some("mine"),
                Some("binding"),
            ),
            action("update", "pods", Some("default"), Some("mine"), None),
        ];
        for a in &denied {
            let err = authorize(&n1, a, &graph()).unwrap_err();
            assert_eq!(err.code, 403, "{a:?}");
            assert!(
                err.message.contains("User \"system:node:n1\" cannot"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn node_may_touch_only_pods_bound_to_it() {
        let n1 = node("n1");
        let ns = Some("default");
        assert!(allowed(&n1, &action("list", "pods", None, None, None)));
        assert!(allowed(
            &n1,
            &action("patch", "pods", ns, Some("mine"), Some("status"))
        ));
        assert!(allowed(
            &n1,
            &action("delete", "pods", ns, Some("mine"), None)
        ));
        let err = authorize(
            &n1,
            &action("update", "pods", ns, Some("theirs"), Some("status")),
            &graph(),
        )
        .unwrap_err();
        assert!(
            err.message.ends_with(
                "node \"n1\" can only update pod status for pods with spec.nodeName set to itself"
            ),
            "{}",
            err.message
        );
        assert!(!allowed(
            &n1,
            &action("delete", "pods", ns, Some("theirs"), None)
        ));
        assert!(!allowed(
            &n1,
            &action("delete", "pods", ns, Some("missing"), None)
        ));
    }

    #[test]
    fn node_may_read_only_secrets_and_configmaps_its_pods_use() {
        let n1 = node("n1");
        let ns = Some("default");
        assert!(allowed(
            &n1,
            &action("get", "secrets", ns, Some("db"), None)
        ));
        assert!(allowed(
            &n1,
            &action("get", "configmaps", ns, Some("cfg"), None)
        ));
        let err = authorize(
            &n1,
            &action("get", "secrets", ns, Some("other"), None),
            &graph(),
        )
        .unwrap_err();
        assert!(
            err.message
                .ends_with("no relationship found between node 'n1' and this object"),
            "{}",
            err.message
        );
        assert!(!allowed(
            &n1,
            &action("get", "secrets", Some("kube-system"), Some("db"), None)
        ));
        let mut watch_one = action("watch", "secrets", ns, None, None);
        assert!(!allowed(&n1, &watch_one));
        watch_one.selected_name = Some("db");
        assert!(allowed(&n1, &watch_one));
    }

    #[test]
    fn node_renews_its_own_lease_and_records_events() {
        let n1 = node("n1");
        let lease_ns = Some(NODE_LEASE_NAMESPACE);
        assert!(allowed(
            &n1,
            &action("create", "leases", lease_ns, None, None)
        ));
        assert!(allowed(
            &n1,
            &action("update", "leases", lease_ns, Some("n1"), None)
        ));
        assert!(allowed(
            &n1,
            &action("get", "leases", lease_ns, Some("n1"), None)
        ));
        assert!(allowed(
            &n1,
            &action("create", "events", Some("default"), None, None)
        ));
        assert!(!allowed(
            &n1,
            &action("delete", "events", Some("default"), Some("e"), None)
        ));
    }

    #[test]
    fn bootstrap_identity_may_not_use_the_api() {
        let bootstrap = User::bootstrap();
        assert!(bootstrap.is_bootstrap() && bootstrap.node_name().is_none());
        for a in [
            action("get", "nodes", None, Some("n1"), None),
            action("create", "nodes", None, None, None),
            action("list", "secrets", Some("kube-system"), None, None),
        ] {
            assert_eq!(authorize(&bootstrap, &a, &graph()).unwrap_err().code, 403);
        }
        // A node name needs the nodes group.
        let pretender = User {
            name: "system:node:n1".into(),
            groups: vec![],
        };
        assert!(!allowed(
            &pretender,
            &action("get", "nodes", None, Some("n1"), None)
        ));
    }

    #[test]
    fn pod_references_cover_volumes_env_and_pull_secrets() {
        let pod = json!({"spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "p", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}],
            "initContainers": [{"name": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "envsec", "key": "k"}}}]}],
        }});
        assert!(pod_references(&pod, "Secret", "pull"));
        assert!(pod_references(&pod, "ConfigMap", "proj"));
        assert!(pod_references(&pod, "Secret", "envsec"));
        assert!(!pod_references(&pod, "ConfigMap", "pull"));
        assert!(!pod_references(&pod, "Secret", "proj"));
    }

    #[test]
    fn tokens_authenticate_only_exact_matches() {
        let auth = TokenAuthenticator::default();
        let user = User {
            name: "system:node:a".into(),
            groups: vec!["system:nodes".into()],
        };
        auth.insert("secret-token", user.clone());
        assert_eq!(auth.authenticate("secret-token"), Some(user));
        assert_eq!(auth.authenticate("secret-tokem"), None);
        assert_eq!(auth.authenticate(""), None);
    }
}
