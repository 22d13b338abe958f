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

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl User {
    /// The bootstrap identity of the join token.
    pub fn bootstrap() -> User {
        User {
            name: BOOTSTRAP_USER.into(),
            groups: vec![BOOTSTRAP_GROUP.into()],
        }
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
