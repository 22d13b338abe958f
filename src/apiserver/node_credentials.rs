//! `POST /v1-orc/node-credentials`: trades the join token (bootstrap identity) and a node
//! password for a node's client and kubelet serving certificates. The first join of a name
//! records a hash of its password (a Secret in kube-system, as k3s does); later joins of
//! that name must present the same password, so nobody else can take over a registered
//! node's name. A node renews its credential the same way with its current certificate.
//!
//! Node certificates carry the uid of that Secret: a request with a node certificate is
//! accepted only while the Secret exists with that uid ([`check_node_credential`]), and
//! deleting a Node deletes its Secret ([`revoke_deleted_nodes`]), so deleting a Node (or
//! its password Secret) revokes every certificate issued to it.

use base64::Engine;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::auth::{self, User};
use super::registry::{DeleteOptions, Registry, WriteOptions};
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

/// Answers a credential request: `user` must be the bootstrap identity (or an admin) to
/// join, or the node itself to renew.
pub async fn issue(
    registry: &Registry,
    pki: &crate::tls::Pki,
    user: &User,
    body: &[u8],
) -> Result<NodeCredentials, ApiError> {
    let renewing = user.node_name().filter(|_| !user.is_admin());
    if !user.is_bootstrap() && !user.is_admin() && renewing.is_none() {
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
    if let Some(node) = renewing.filter(|node| *node != req.node_name) {
        return Err(ApiError::forbidden(format!(
            "node \"{node}\" may only renew its own credential, not node \"{}\"'s",
            req.node_name
        )));
    }
    if req.node_password.is_empty() {
        return Err(ApiError::bad_request("nodePassword must not be empty"));
    }
    let binding = check_password(
        registry,
        &req.node_name,
        &req.node_password,
        renewing.is_none(),
    )
    .await?;
    let certs = pki
        .issue_node_certificates(&req.node_name, &binding)
        .map_err(|e| ApiError::internal(format!("issue node certificate: {e}")))?;
    if renewing.is_some() {
        tracing::info!(node = %req.node_name, "renewed node credential");
    } else {
        tracing::info!(node = %req.node_name, "issued node credential");
    }
    Ok(NodeCredentials {
        certificate: certs.client.0,
        key: certs.client.1,
        ca_certificate: pki.ca_cert_pem().to_string(),
        kubelet_certificate: certs.kubelet_serving.0,
        kubelet_key: certs.kubelet_serving.1,
    })
}

/// Checks a request made with a node certificate: it must carry the uid of the node's
/// current password Secret. `credential` is the certificate's binding (`None` for other
/// credentials, or certificates from before bindings existed). Users that are not nodes
/// pass. A revoked certificate gets 401, as upstream answers an invalid credential.
pub fn check_node_credential(
    registry: &Registry,
    user: &User,
    credential: Option<&str>,
) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    if user.is_admin() {
        return Ok(());
    }
    let secrets = resources::by_plural("", "v1", "secrets").expect("served");
    let current = registry
        .get(
            secrets,
            Some(PASSWORD_NAMESPACE),
            &password_secret_name(node),
        )
        .ok();
    let uid = current
        .as_ref()
        .and_then(|kv| kv.value["metadata"]["uid"].as_str());
    match (uid, credential) {
        (Some(uid), Some(bound)) if auth::constant_time_eq(uid.as_bytes(), bound.as_bytes()) => {
            Ok(())
        }
        _ => {
            tracing::info!(%node, "refused a revoked or unbound node certificate");
            Err(ApiError::unauthorized())
        }
    }
}

/// Deletes the password Secret of every deleted Node, which revokes its certificates (as
/// k3s removes node passwords with their nodes). Runs until the datastore shuts down.
pub async fn revoke_deleted_nodes(registry: std::sync::Arc<Registry>) {
    let nodes = resources::by_plural("", "v1", "nodes").expect("served");
    let secrets = resources::by_plural("", "v1", "secrets").expect("served");
    loop {
        let (_, _, mut watcher) = registry.snapshot_and_watch(&nodes.list_prefix(None));
        loop {
            let event = match watcher.next().await {
                Ok(event) => event,
                Err(crate::store::cache::WatchError::Lagged(_)) => break,
                Err(crate::store::cache::WatchError::Closed) => return,
            };
            if !matches!(event.kind, crate::store::EventType::Deleted) {
                continue;
            }
            let node = crate::api::object::name(&event.kv.value).to_string();
            let name = password_secret_name(&node);
            let opts = DeleteOptions::default();
            match registry
                .delete(secrets, Some(PASSWORD_NAMESPACE), &name, &opts)
                .await
            {
                Ok(_) => tracing::info!(%node, "node deleted: its credentials are revoked"),
                Err(e) if e.code == 404 => {}
                Err(e) => {
                    tracing::warn!(%node, error = %e, "node deleted but its password could not be removed: its credentials stay valid")
                }
            }
        }
    }
}

/// Records the password of a new node (when `may_register`), or checks it against the
/// recorded one. Returns the uid of the password Secret, which the certificates carry.
async fn check_password(
    registry: &Registry,
    node: &str,
    password: &str,
    may_register: bool,
) -> Result<String, ApiError> {
    let secrets = resources::by_plural("", "v1", "secrets").expect("served");
    let name = password_secret_name(node);
    let hash = password_hash(password);
    let encoded = base64::engine::general_purpose::STANDARD.encode(&hash);
    let uid = |value: &Value| value["metadata"]["uid"].as_str().unwrap_or("").to_string();
    // Twice at most: a concurrent first join of the same name makes create fail once.
    for _ in 0..2 {
        if let Ok(kv) = registry.get(secrets, Some(PASSWORD_NAMESPACE), &name) {
            return if stored_hash_matches(&kv.value, &hash) {
                Ok(uid(&kv.value))
            } else {
                Err(ApiError::forbidden(format!(
                    "node {node} is already registered with a different password"
                )))
            };
        }
        if !may_register {
            return Err(ApiError::unauthorized());
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
            Ok(written) => return Ok(uid(&written.kv.value)),
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
    use crate::apiserver::allocator::Allocators;
    use crate::store::memory::MemoryStore;

    async fn registry() -> Registry {
        let allocators = Allocators::new("10.43.0.0/16".parse().unwrap(), (30000, 32767));
        let registry = Registry::new(std::sync::Arc::new(MemoryStore::new()), allocators);
        let namespaces = resources::by_plural("", "v1", "namespaces").unwrap();
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": PASSWORD_NAMESPACE}});
        registry
            .create(namespaces, None, ns, &WriteOptions::default())
            .await
            .unwrap();
        registry
    }

    fn request(node: &str, password: &str) -> Vec<u8> {
        serde_json::to_vec(&json!({"nodeName": node, "nodePassword": password})).unwrap()
    }

    /// The user and binding a node certificate names.
    fn holder(creds: &NodeCredentials) -> (User, Option<String>) {
        let der = rustls_pemfile::certs(&mut creds.certificate.as_bytes())
            .next()
            .unwrap()
            .unwrap();
        let id = crate::tls::identity_from_cert(&der).unwrap();
        (
            User {
                name: id.user,
                groups: id.groups,
                ..Default::default()
            },
            id.credential,
        )
    }

    #[tokio::test]
    async fn a_node_renews_its_own_credential_until_its_password_is_deleted() {
        let registry = registry().await;
        let dir = tempfile::tempdir().unwrap();
        let pki = crate::tls::Pki::load_or_create(dir.path(), &[]).unwrap();
        let joined = issue(&registry, &pki, &User::bootstrap(), &request("n1", "pw"))
            .await
            .unwrap();
        let (n1, binding) = holder(&joined);
        assert_eq!(n1.node_name(), Some("n1"));
        check_node_credential(&registry, &n1, binding.as_deref()).unwrap();
        assert_eq!(
            check_node_credential(&registry, &n1, None)
                .unwrap_err()
                .code,
            401,
            "a node certificate without binding"
        );

        let renewed = issue(&registry, &pki, &n1, &request("n1", "pw"))
            .await
            .unwrap();
        assert_ne!(renewed.certificate, joined.certificate);
        assert_eq!(holder(&renewed).1, binding, "same password record");
        let err = issue(&registry, &pki, &n1, &request("n2", "pw"))
            .await
            .unwrap_err();
        assert_eq!(err.code, 403);
        let err = issue(&registry, &pki, &n1, &request("n1", "other"))
            .await
            .unwrap_err();
        assert_eq!(err.code, 403);

        let secrets = resources::by_plural("", "v1", "secrets").unwrap();
        registry
            .delete(
                secrets,
                Some(PASSWORD_NAMESPACE),
                &password_secret_name("n1"),
                &DeleteOptions::default(),
            )
            .await
            .unwrap();
        let err = check_node_credential(&registry, &n1, binding.as_deref()).unwrap_err();
        assert_eq!((err.code, err.reason), (401, "Unauthorized"));
        let err = issue(&registry, &pki, &n1, &request("n1", "pw"))
            .await
            .unwrap_err();
        assert_eq!(err.code, 401, "a revoked node cannot register itself again");

        // Joining again with the token makes a new record: the old binding stays revoked.
        let rejoined = issue(&registry, &pki, &User::bootstrap(), &request("n1", "pw"))
            .await
            .unwrap();
        let (_, new_binding) = holder(&rejoined);
        assert_ne!(new_binding, binding);
        check_node_credential(&registry, &n1, new_binding.as_deref()).unwrap();
        assert!(check_node_credential(&registry, &n1, binding.as_deref()).is_err());
    }

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
