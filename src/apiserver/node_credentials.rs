//! `POST /v1-orc/node-credentials`: trades the join token (bootstrap identity) and a node
//! password for a node's client certificate. The first join of a name records a hash of its
//! password (a Secret in kube-system, as k3s does); later joins of that name must present
//! the same password, so nobody else can take over a registered node's name.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::{self, User, NODES_GROUP, NODE_USER_PREFIX};
use super::registry::{Registry, WriteOptions};
use crate::api::resources;
use crate::api::status::ApiError;
use crate::api::validation::is_dns1123_subdomain;

pub use crate::tls::node_credentials::{
    password_secret_name, CredentialsRequest, NodeCredentials, PATH,
};

/// Namespace and type of the Secrets holding node password hashes.
pub const PASSWORD_NAMESPACE: &str = "kube-system";
pub const PASSWORD_SECRET_TYPE: &str = "orc.io/node-password";
/// Key of the hash in the Secret's data.
const HASH_KEY: &str = "hash";
/// Prefix of a stored hash, naming the algorithm.
const HASH_PREFIX: &str = "sha256:";

fn password_hash(password: &str) -> String {
    format!(
        "{HASH_PREFIX}{}",
        hex::encode(Sha256::digest(password.as_bytes()))
    )
}

/// Answers a credential request: `user` must be the bootstrap identity (or an admin).
pub async fn issue(
    registry: &Registry,
    pki: &crate::tls::Pki,
    user: &User,
    body: &[u8],
) -> Result<NodeCredentials, ApiError> {
    if !user.is_bootstrap() && !user.is_admin() {
        return Err(ApiError::forbidden(format!(
            "User \"{}\" cannot request node credentials: only the join token may",
            user.name
        )));
    }
    let req: CredentialsRequest = serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("invalid node credentials request: {e}")))?;
    if let Some(problem) = is_dns1123_subdomain(&req.node_name).into_iter().next() {
        return Err(ApiError::bad_request(format!(
            "invalid node name {:?}: {problem}",
            req.node_name
        )));
    }
    if req.node_password.is_empty() {
        return Err(ApiError::bad_request("nodePassword must not be empty"));
    }
    check_password(registry, &req.node_name, &req.node_password).await?;
    let (certificate, key) = pki
        .issue_client_cert(
            &format!("{NODE_USER_PREFIX}{}", req.node_name),
            &[NODES_GROUP],
        )
        .map_err(|e| ApiError::internal(format!("issue node certificate: {e}")))?;
    tracing::info!(node = %req.node_name, "issued node credential");
    Ok(NodeCredentials {
        certificate,
        key,
        ca_certificate: pki.ca_cert_pem().to_string(),
    })
}

/// Records the password of a new node, or checks it against the recorded one.
async fn check_password(registry: &Registry, node: &str, password: &str) -> Result<(), ApiError> {
    let secrets = resources::by_plural("", "v1", "secrets").expect("served");
    let name = password_secret_name(node);
    let hash = password_hash(password);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&hash);
    // Twice at most: a concurrent first join of the same name makes create fail once.
    for _ in 0..2 {
        if let Ok(kv) = registry.get(secrets, Some(PASSWORD_NAMESPACE), &name) {
            return if stored_hash_matches(&kv.value, &hash) {
                Ok(())
            } else {
                Err(ApiError::forbidden(format!(
                    "node {node} is already registered with a different password"
                )))
            };
        }
        let secret = json!({
            "apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": name, "namespace": PASSWORD_NAMESPACE,
                         "labels": {"orc.io/node": node}},
            "type": PASSWORD_SECRET_TYPE,
            "immutable": true,
            "data": {HASH_KEY: encoded},
        });
        match registry
            .create(
                secrets,
                Some(PASSWORD_NAMESPACE),
                secret,
                &WriteOptions::default(),
            )
            .await
        {
            Ok(_) => return Ok(()),
            Err(e) if e.code == 409 => continue,
            Err(e) => return Err(e),
        }
    }
    Err(ApiError::internal(format!(
        "could not record the password of node {node}"
    )))
}

fn stored_hash_matches(secret: &Value, hash: &str) -> bool {
    let stored = secret["data"][HASH_KEY]
        .as_str()
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_default();
    auth::constant_time_eq(&stored, hash.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_hash_is_compared_exactly() {
        let hash = password_hash("pw");
        assert!(hash.starts_with("sha256:") && hash.len() == 7 + 64);
        let secret =
            json!({"data": {"hash": base64::engine::general_purpose::STANDARD.encode(&hash)}});
        assert!(stored_hash_matches(&secret, &hash));
        assert!(!stored_hash_matches(&secret, &password_hash("other")));
        assert!(!stored_hash_matches(&json!({}), &hash));
    }
}
