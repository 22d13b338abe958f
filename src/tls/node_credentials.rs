//! Wire types of `POST /v1-orc/node-credentials`, where an agent trades the join token and
//! its node password for a node client certificate (served by the API server, asked for
//! by the agent's join).

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

/// What the server answers: the node's client certificate and key, and the CA (PEM).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct NodeCredentials {
    pub certificate: String,
    pub key: String,
    pub ca_certificate: String,
}

/// Name of the Secret holding `node`'s password hash.
pub fn password_secret_name(node: &str) -> String {
    format!("{node}.node-password.orc")
}
