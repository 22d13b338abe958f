//! Wire types of `POST /v1-orc/node-credentials`, where an agent trades the join token (or,
//! to renew, its current node certificate) and its node password for a node client
//! certificate and a kubelet serving certificate (served by the API server, asked for by
//! the agent's join and renewal).

use serde::{Deserialize, Serialize};

/// Path of the endpoint (outside the Kubernetes API paths).
pub const PATH: &str = "/v1-orc/node-credentials";

/// What an agent sends.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CredentialsRequest {
    pub node_name: String,
    pub node_password: String,
}

/// What the server answers (PEM): the node's client certificate and key, the CA, and the
/// kubelet's serving certificate and key.
#[derive(Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    pub certificate: String,
    pub key: String,
    pub ca_certificate: String,
    pub kubelet_certificate: String,
    pub kubelet_key: String,
}

impl std::fmt::Debug for NodeCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NodeCredentials").finish_non_exhaustive()
    }
}

/// Name of the Secret holding `node`'s password hash.
pub fn password_secret_name(node: &str) -> String {
    format!("{node}.node-password.orc")
}
