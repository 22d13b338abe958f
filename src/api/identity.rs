//! Who a caller is: the user and group names orc's identities use (admin, nodes, the
//! join token's bootstrap identity) and the authenticated `User`. Shared by the API
//! server (authentication, authorization) and the agent (node names, kubelet endpoint).

/// Group whose members may do anything (as upstream).
pub const ADMIN_GROUP: &str = "system:masters";
/// Group of every node identity (client certificates issued at join).
pub const NODES_GROUP: &str = "system:nodes";
/// A node's user name is this prefix followed by the node name.
pub const NODE_USER_PREFIX: &str = "system:node:";
/// The user the join token's secret authenticates as: it may only obtain a node credential.
pub const BOOTSTRAP_USER: &str = "system:bootstrap:node";
pub const BOOTSTRAP_GROUP: &str = "system:bootstrappers";
/// Namespace of the node heartbeat leases.
pub const NODE_LEASE_NAMESPACE: &str = "kube-node-lease";

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
/// Whether a node may set label `key` on its own Node (upstream NodeRestriction's
/// label policy, `getForbiddenLabels`): not `node-restriction.kubernetes.io/*`, and of
/// the `kubernetes.io`/`k8s.io` labels only those a kubelet sets (`kubernetes.io/os`,
/// `topology.kubernetes.io/zone`, `node.kubernetes.io/*` ...) — `node-role.kubernetes.io/*`
/// is the admin's. The server's NodeRestriction also keeps `kubernetes.io/hostname` the
/// node's own name.
pub fn node_may_set_label(key: &str) -> bool {
    let in_namespace = |ns: &str, wanted: &str| ns == wanted || ns.ends_with(&format!(".{wanted}"));
    let ns = key.split_once('/').map(|(ns, _)| ns).unwrap_or("");
    if in_namespace(ns, NODE_RESTRICTION_LABEL_NAMESPACE) {
        return false;
    }
    let kubernetes = in_namespace(ns, "kubernetes.io") || in_namespace(ns, "k8s.io");
    let kubelet = KUBELET_LABELS.contains(&key)
        || KUBELET_LABEL_NAMESPACES.iter().any(|k| in_namespace(ns, k));
    !kubernetes || kubelet
}

/// Group every authenticated caller is in (added at authentication, as upstream).
pub const AUTHENTICATED_GROUP: &str = "system:authenticated";
/// Service accounts authenticate as `system:serviceaccount:NAMESPACE:NAME`, in groups
/// `system:serviceaccounts` and `system:serviceaccounts:NAMESPACE`.
pub const SERVICE_ACCOUNT_USER_PREFIX: &str = "system:serviceaccount:";
pub const SERVICE_ACCOUNTS_GROUP: &str = "system:serviceaccounts";

/// An authenticated caller (upstream `user.Info`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
    /// Unique id of the identity (a service account's uid); empty when it has none.
    pub uid: String,
    /// Further attributes (`authentication.kubernetes.io/pod-name` ...), as upstream.
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl User {
    /// The bootstrap identity of the join token.
    pub fn bootstrap() -> User {
        User {
            name: BOOTSTRAP_USER.into(),
            groups: vec![BOOTSTRAP_GROUP.into()],
            ..Default::default()
        }
    }

    /// A service account's user: `system:serviceaccount:NS:NAME` in its groups.
    pub fn service_account(namespace: &str, name: &str, uid: &str) -> User {
        User {
            name: format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{name}"),
            groups: vec![
                SERVICE_ACCOUNTS_GROUP.to_string(),
                format!("{SERVICE_ACCOUNTS_GROUP}:{namespace}"),
                AUTHENTICATED_GROUP.to_string(),
            ],
            uid: uid.to_string(),
            ..Default::default()
        }
    }

    /// `(namespace, name)` of the service account this user is.
    pub fn service_account_name(&self) -> Option<(&str, &str)> {
        self.name
            .strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?
            .split_once(':')
            .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
    }

    /// Adds `system:authenticated` unless the user is in it already.
    pub fn with_authenticated_group(mut self) -> User {
        if !self.groups.iter().any(|g| g == AUTHENTICATED_GROUP) {
            self.groups.push(AUTHENTICATED_GROUP.to_string());
        }
        self
    }

    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }

    pub fn is_bootstrap(&self) -> bool {
        self.name == BOOTSTRAP_USER && self.groups.iter().any(|g| g == BOOTSTRAP_GROUP)
    }

    /// The node this user is (`system:node:<name>` in group `system:nodes`).
    pub fn node_name(&self) -> Option<&str> {
        if !self.groups.iter().any(|g| g == NODES_GROUP) {
            return None;
        }
        self.name
            .strip_prefix(NODE_USER_PREFIX)
            .filter(|n| !n.is_empty())
    }
}
