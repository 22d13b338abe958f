//! Joining a cluster: check the server's CA against the join token, then trade the token
//! and this node's password for a node credential (client and kubelet serving
//! certificates), kept under `<data-dir>/agent/` and reused on every later start; renewing
//! it with the current certificate and the password when two thirds of its life are over.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rand::RngCore;

use super::client::{ApiClient, ClientError, Rejection, ServerAddr};
use crate::tls::node_credentials::{self, CredentialsRequest, NodeCredentials};
use crate::tls::{self, JoinToken};

/// Files under the agent directory.
pub const NODE_PASSWORD_FILE: &str = "node-password";
pub const CLIENT_CERT_FILE: &str = "client.crt";
pub const CLIENT_KEY_FILE: &str = "client.key";
pub const CA_CERT_FILE: &str = "ca.crt";
pub const KUBELET_CERT_FILE: &str = "kubelet.crt";
pub const KUBELET_KEY_FILE: &str = "kubelet.key";
/// A kubeconfig with the node credential (for debugging: `kubectl --kubeconfig`).
pub const KUBECONFIG_FILE: &str = "kubelet.kubeconfig";
/// Random bytes in a generated node password (32 hex characters).
const PASSWORD_BYTES: usize = 16;
pub use super::client::{backoff, FIRST_RETRY, MAX_RETRY};

#[derive(Debug, thiserror::Error)]
pub enum JoinError {
    #[error("cannot reach the server at {server}: is `orc server` running there, and is the port open? ({cause})")]
    Unreachable { server: String, cause: String },
    #[error(
        "the server's CA does not match the token's hash: is --join pointing at the right server?"
    )]
    CaMismatch,
    #[error("the join token has no CA hash, so the server cannot be verified: use the full K10… token from `orc token` on the server, or pass --insecure-skip-ca-hash")]
    TokenWithoutCaHash,
    #[error("{server}/cacerts did not answer a CA certificate (status {status}): is --join pointing at an orc server?")]
    NoCa { server: String, status: u16 },
    #[error("the server rejected the join token (401 Unauthorized): copy the current token from `orc token` on the server")]
    TokenRejected,
    #[error("the server refused to register node {node}: {message}: choose another --node-name, or, if the old machine is gone, delete its record with `kubectl -n kube-system delete secret {secret}`")]
    NameTaken {
        node: String,
        message: String,
        secret: String,
    },
    #[error("the node credential request failed: {rejection}")]
    Refused { rejection: Rejection },
    #[error("the server sent an unreadable node credential")]
    BadCredential,
    #[error("the server no longer accepts this node's credential (401 Unauthorized): the Node or its password was deleted; restart the agent to join again with the join token")]
    Revoked,
    #[error("store the node credential under {dir}")]
    Store {
        dir: PathBuf,
        #[source]
        source: tls::Error,
    },
    #[error("read the node credential under {dir}: remove the directory to join again")]
    Load {
        dir: PathBuf,
        #[source]
        source: tls::Error,
    },
}

impl JoinError {
    /// Whether trying again later may succeed (the server may come up, the token may be
    /// fixed on the server's side); the others need the user.
    pub fn is_retryable(&self) -> bool {
        match self {
            JoinError::Unreachable { .. } | JoinError::TokenRejected | JoinError::BadCredential => {
                true
            }
            JoinError::Refused { rejection } => {
                rejection.status.is_server_error()
                    || rejection.status == http::StatusCode::TOO_MANY_REQUESTS
            }
            _ => false,
        }
    }
}

fn unreachable(server: &ServerAddr, e: ClientError) -> JoinError {
    let mut cause = e.to_string();
    let mut source = std::error::Error::source(&e);
    while let Some(s) = source {
        cause.push_str(": ");
        cause.push_str(&s.to_string());
        source = s.source();
    }
    JoinError::Unreachable {
        server: server.url(),
        cause,
    }
}

/// What joining needs.
#[derive(Debug, Clone)]
pub struct JoinConfig {
    pub server: ServerAddr,
    pub token: JoinToken,
    /// Accept a token without CA hash (trust whatever CA the server presents).
    pub insecure_skip_ca_hash: bool,
    pub node_name: String,
    /// `<data-dir>/agent`.
    pub agent_dir: PathBuf,
}

/// Checks a token before anything is fetched: one without hash needs explicit consent.
pub fn check_token(token: &JoinToken, insecure_skip_ca_hash: bool) -> Result<(), JoinError> {
    if token.ca_hash.is_none() && !insecure_skip_ca_hash {
        return Err(JoinError::TokenWithoutCaHash);
    }
    Ok(())
}

/// Checks the CA fetched without verification against the token.
pub fn check_ca(token: &JoinToken, ca_pem: &str) -> Result<(), JoinError> {
    match token.ca_hash {
        None => Ok(()),
        Some(_) => token.verify_ca(ca_pem).map_err(|_| JoinError::CaMismatch),
    }
}

/// The node password in `agent_dir`, generated (0600) on first use.
pub fn load_or_create_password(agent_dir: &Path) -> Result<String, JoinError> {
    let path = agent_dir.join(NODE_PASSWORD_FILE);
    if let Ok(existing) = std::fs::read_to_string(&path) {
        let existing = existing.trim();
        if !existing.is_empty() {
            return Ok(existing.to_string());
        }
    }
    let mut bytes = [0u8; PASSWORD_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    let password = hex::encode(bytes);
    tls::write_private_file(&path, format!("{password}\n").as_bytes()).map_err(|source| {
        JoinError::Store {
            dir: agent_dir.to_owned(),
            source,
        }
    })?;
    Ok(password)
}

/// A stored credential usable for `config`: issued for this node name and, when the token
/// has a hash, under the CA the token names. `None` when absent or stale.
pub fn load_stored(config: &JoinConfig) -> Result<Option<NodeCredentials>, JoinError> {
    let dir = &config.agent_dir;
    let read = |file: &str| std::fs::read_to_string(dir.join(file)).ok();
    let (
        Some(certificate),
        Some(key),
        Some(ca_certificate),
        Some(kubelet_certificate),
        Some(kubelet_key),
    ) = (
        read(CLIENT_CERT_FILE),
        read(CLIENT_KEY_FILE),
        read(CA_CERT_FILE),
        read(KUBELET_CERT_FILE),
        read(KUBELET_KEY_FILE),
    )
    else {
        return Ok(None);
    };
    let der = rustls_pemfile::certs(&mut certificate.as_bytes())
        .next()
        .and_then(Result::ok);
    let identity = der.and_then(|der| tls::identity_from_cert(der.as_ref()));
    let expected_user = format!(
        "{}{}",
        crate::api::identity::NODE_USER_PREFIX,
        config.node_name
    );
    let Some(identity) = identity.filter(|id| id.user == expected_user) else {
        tracing::info!(dir = %dir.display(), "stored node credential is for another node name; joining again");
        return Ok(None);
    };
    if identity.credential.is_none() {
        tracing::info!(dir = %dir.display(), "stored node credential is from an older orc (not revocable); joining again");
        return Ok(None);
    }
    if tls::expiry(&certificate).is_none_or(|end| end <= std::time::SystemTime::now()) {
        tracing::info!(dir = %dir.display(), "stored node credential has expired; joining again");
        return Ok(None);
    }
    if config.token.ca_hash.is_some() && check_ca(&config.token, &ca_certificate).is_err() {
        tracing::warn!(dir = %dir.display(), "stored node credential is from another CA than the token's; joining again");
        return Ok(None);
    }
    // The stored pair must still form a usable TLS identity.
    tls::client_config_pinned(&ca_certificate, Some((&certificate, &key))).map_err(|source| {
        JoinError::Load {
            dir: dir.clone(),
            source,
        }
    })?;
    Ok(Some(NodeCredentials {
        certificate,
        key,
        ca_certificate,
        kubelet_certificate,
        kubelet_key,
    }))
}

fn store(config: &JoinConfig, creds: &NodeCredentials) -> Result<(), JoinError> {
    let dir = &config.agent_dir;
    let kubeconfig = tls::admin_kubeconfig(
        &config.server.url(),
        &creds.ca_certificate,
        &creds.certificate,
        &creds.key,
    );
    [
        (CLIENT_KEY_FILE, creds.key.as_str()),
        (CLIENT_CERT_FILE, creds.certificate.as_str()),
        (CA_CERT_FILE, creds.ca_certificate.as_str()),
        (KUBELET_KEY_FILE, creds.kubelet_key.as_str()),
        (KUBELET_CERT_FILE, creds.kubelet_certificate.as_str()),
        (KUBECONFIG_FILE, kubeconfig.as_str()),
    ]
    .iter()
    .try_for_each(|(file, contents)| tls::write_private_file(&dir.join(file), contents.as_bytes()))
    .map_err(|source| JoinError::Store {
        dir: dir.clone(),
        source,
    })
}

/// One join attempt: fetch and check the CA, then obtain and store the node credential.
pub async fn join_once(config: &JoinConfig) -> Result<NodeCredentials, JoinError> {
    check_token(&config.token, config.insecure_skip_ca_hash)?;
    let unverified = tls::client_config_unverified().map_err(|source| JoinError::Load {
        dir: config.agent_dir.clone(),
        source,
    })?;
    let bootstrap = ApiClient::new(config.server.clone(), unverified, None);
    let resp = bootstrap
        .get("/cacerts")
        .await
        .map_err(|e| unreachable(&config.server, e))?;
    let ca_pem = String::from_utf8_lossy(&resp.body).into_owned();
    if !resp.status.is_success() || !ca_pem.contains("BEGIN CERTIFICATE") {
        return Err(JoinError::NoCa {
            server: config.server.url(),
            status: resp.status.as_u16(),
        });
    }
    check_ca(&config.token, &ca_pem)?;
    drop(bootstrap);

    let pinned = tls::client_config_pinned(&ca_pem, None).map_err(|source| JoinError::Load {
        dir: config.agent_dir.clone(),
        source,
    })?;
    let client = ApiClient::new(
        config.server.clone(),
        pinned,
        Some(config.token.secret.clone()),
    );
    let request = CredentialsRequest {
        node_name: config.node_name.clone(),
        node_password: load_or_create_password(&config.agent_dir)?,
    };
    let body = serde_json::to_value(&request).map_err(|_| JoinError::BadCredential)?;
    let resp = client
        .post(node_credentials::PATH, &body)
        .await
        .map_err(|e| unreachable(&config.server, e))?;
    match resp.status.as_u16() {
        200 => {}
        401 => return Err(JoinError::TokenRejected),
        403 if resp.message().contains("already registered") => {
            return Err(JoinError::NameTaken {
                node: config.node_name.clone(),
                message: resp.message(),
                secret: node_credentials::password_secret_name(&config.node_name),
            })
        }
        _ => {
            return Err(JoinError::Refused {
                rejection: Rejection::from_response(&resp),
            })
        }
    }
    accept(config, &resp.body, &ca_pem)
}

/// A credential the server answered with: under the CA the token vouched for, stored.
fn accept(config: &JoinConfig, body: &[u8], ca_pem: &str) -> Result<NodeCredentials, JoinError> {
    let creds: NodeCredentials =
        serde_json::from_slice(body).map_err(|_| JoinError::BadCredential)?;
    if creds.ca_certificate != ca_pem {
        return Err(JoinError::CaMismatch);
    }
    store(config, &creds)?;
    Ok(creds)
}

/// One renewal: trades the current certificate (presented by `client`) and the node
/// password for a new credential under the same CA, and stores it.
pub async fn renew_once(
    config: &JoinConfig,
    client: &ApiClient,
    ca_pem: &str,
) -> Result<NodeCredentials, JoinError> {
    let request = CredentialsRequest {
        node_name: config.node_name.clone(),
        node_password: load_or_create_password(&config.agent_dir)?,
    };
    let body = serde_json::to_value(&request).map_err(|_| JoinError::BadCredential)?;
    let resp = client
        .post(node_credentials::PATH, &body)
        .await
        .map_err(|e| unreachable(&config.server, e))?;
    match resp.status.as_u16() {
        200 => {}
        401 => return Err(JoinError::Revoked),
        _ => {
            return Err(JoinError::Refused {
                rejection: Rejection::from_response(&resp),
            })
        }
    }
    accept(config, &resp.body, ca_pem)
}

/// Longest sleep between looks at the clock while waiting for a renewal (the wall clock
/// may jump, e.g. when a Raspberry Pi gets NTP time after boot).
const RENEWAL_CHECK: Duration = Duration::from_secs(3600);

/// Keeps the node credential fresh: when two thirds of the current certificate's life are
/// over, renews it and puts the new certificates into `client_cert` and `kubelet_cert`
/// (new connections present them). Failures are retried with back-off; a revoked
/// credential is reported once and then retried slowly.
pub async fn keep_renewed(
    config: JoinConfig,
    client: ApiClient,
    mut current: NodeCredentials,
    client_cert: tls::SharedCert,
    kubelet_cert: tls::SharedCert,
) {
    let mut attempt = 0;
    loop {
        let due = tls::renewal_due(&current.certificate).unwrap_or_else(SystemTime::now);
        if let Ok(wait) = due.duration_since(SystemTime::now()) {
            tokio::time::sleep(wait.min(RENEWAL_CHECK)).await;
            continue;
        }
        match renew_once(&config, &client, &current.ca_certificate).await {
            Ok(creds) => {
                let replaced = client_cert
                    .replace(&creds.certificate, &creds.key)
                    .and_then(|()| {
                        kubelet_cert.replace(&creds.kubelet_certificate, &creds.kubelet_key)
                    });
                if let Err(e) = replaced {
                    tracing::warn!(error = %e, "renewed node credential is unusable; keeping the current one");
                } else {
                    let valid_until = tls::expiry(&creds.certificate)
                        .map(|t| chrono::DateTime::<chrono::Utc>::from(t).to_rfc3339());
                    tracing::info!(node = %config.node_name, valid_until = valid_until.as_deref().unwrap_or("?"), "renewed the node credential");
                    current = creds;
                }
                attempt = 0;
            }
            Err(e) => {
                let delay = backoff(attempt);
                if attempt == 0 {
                    tracing::warn!(error = %e, retry_in_s = delay.as_secs(), "renewing the node credential failed; retrying");
                }
                tokio::time::sleep(delay).await;
                attempt = attempt.saturating_add(1);
            }
        }
    }
}

/// How long the start-up check of a stored credential may take: without an answer the
/// agent goes on with it (it must start without a server, from its last known state).
const REVOCATION_CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// Whether the server answers 401 to the stored credential (revoked by deleting the Node or
/// its password). Anything else, including no answer, counts as not revoked.
async fn is_revoked(config: &JoinConfig, creds: &NodeCredentials) -> bool {
    let Ok(tls) = tls::client_config_pinned(
        &creds.ca_certificate,
        Some((&creds.certificate, &creds.key)),
    ) else {
        return false;
    };
    let client = ApiClient::new(config.server.clone(), tls, None);
    let path = format!("/api/v1/nodes/{}", config.node_name);
    let answer = tokio::time::timeout(REVOCATION_CHECK_TIMEOUT, client.get(&path)).await;
    matches!(answer, Ok(Ok(resp)) if resp.status == http::StatusCode::UNAUTHORIZED)
}

/// The stored credential, or a new one: retries with back-off while the failure may go
/// away, returns at once when it needs the user.
pub async fn obtain_credentials(config: &JoinConfig) -> Result<NodeCredentials, JoinError> {
    if let Some(creds) = load_stored(config)? {
        if !is_revoked(config, &creds).await {
            tracing::info!(node = %config.node_name, dir = %config.agent_dir.display(), "using the stored node credential");
            return Ok(creds);
        }
        tracing::warn!(node = %config.node_name, "the server refuses the stored node credential (the Node or its password was deleted); joining again with the join token");
    }
    let mut attempt = 0;
    loop {
        match join_once(config).await {
            Ok(creds) => {
                tracing::info!(node = %config.node_name, server = %config.server.url(), "joined the cluster");
                return Ok(creds);
            }
            Err(e) if e.is_retryable() => {
                let delay = backoff(attempt);
                tracing::warn!(
                    attempt = attempt + 1,
                    retry_in_s = delay.as_secs(),
                    error = %e,
                    "join failed; retrying"
                );
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
            Err(e) => return Err(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn token(hash: Option<String>) -> JoinToken {
        JoinToken {
            ca_hash: hash,
            secret: "s".into(),
        }
    }

    #[test]
    fn token_without_hash_needs_explicit_consent() {
        let bare = token(None);
        let e = check_token(&bare, false).unwrap_err();
        assert!(matches!(e, JoinError::TokenWithoutCaHash));
        assert!(e.to_string().contains("--insecure-skip-ca-hash"), "{e}");
        assert!(check_token(&bare, true).is_ok());
        assert!(check_ca(&bare, CA).is_ok(), "consented: any CA");
    }

    #[test]
    fn ca_must_match_the_tokens_hash() {
        let t = token(Some(tls::ca_hash(CA)));
        assert!(check_token(&t, false).is_ok());
        assert!(check_ca(&t, CA).is_ok());
        let e = check_ca(&t, "another CA").unwrap_err();
        assert_eq!(
            e.to_string(),
            "the server's CA does not match the token's hash: is --join pointing at the right server?"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn backoff_doubles_from_one_second_to_thirty() {
        let delays: Vec<u64> = (0..8).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(delays, [1, 2, 4, 8, 16, 30, 30, 30]);
        assert_eq!(backoff(u32::MAX), MAX_RETRY);
    }

    #[test]
    fn unreachable_server_and_rejected_token_are_retried() {
        assert!(JoinError::TokenRejected.is_retryable());
        let e = JoinError::Unreachable {
            server: "https://x:6443".into(),
            cause: "refused".into(),
        };
        assert!(e.is_retryable());
        let taken = JoinError::NameTaken {
            node: "n1".into(),
            message: "node n1 is already registered with a different password".into(),
            secret: "n1.node-password.orc".into(),
        };
        assert!(!taken.is_retryable());
    }

    #[test]
    fn a_refused_credential_request_is_retried_only_for_server_trouble() {
        let refused = |status: u16| JoinError::Refused {
            rejection: Rejection {
                status: http::StatusCode::from_u16(status).unwrap(),
                reason: String::new(),
                message: "no".into(),
            },
        };
        assert!(refused(503).is_retryable());
        assert!(refused(429).is_retryable());
        assert!(!refused(400).is_retryable());
        assert_eq!(
            refused(400).to_string(),
            "the node credential request failed: the server answered 400: no"
        );
    }

    #[test]
    fn node_password_is_created_once_and_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = load_or_create_password(dir.path()).unwrap();
        assert_eq!(first.len(), 32);
        assert_eq!(load_or_create_password(dir.path()).unwrap(), first);
        let mode = std::fs::metadata(dir.path().join(NODE_PASSWORD_FILE))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn stored_credential_is_reused_only_for_its_node_and_ca() {
        let dir = tempfile::tempdir().unwrap();
        let pki = tls::Pki::load_or_create(&dir.path().join("tls"), &[]).unwrap();
        let certs = pki.issue_node_certificates("n1", "uid-1").unwrap();
        let creds = NodeCredentials {
            certificate: certs.client.0,
            key: certs.client.1,
            ca_certificate: pki.ca_cert_pem().to_string(),
            kubelet_certificate: certs.kubelet_serving.0,
            kubelet_key: certs.kubelet_serving.1,
        };
        let mut config = JoinConfig {
            server: ServerAddr::parse("https://127.0.0.1:1").unwrap(),
            token: token(Some(tls::ca_hash(pki.ca_cert_pem()))),
            insecure_skip_ca_hash: false,
            node_name: "n1".into(),
            agent_dir: dir.path().join("agent"),
        };
        store(&config, &creds).unwrap();
        let loaded = load_stored(&config).unwrap().expect("reused");
        assert_eq!(loaded.certificate, creds.certificate);
        assert!(config.agent_dir.join(KUBECONFIG_FILE).exists());

        config.node_name = "n2".into();
        assert!(load_stored(&config).unwrap().is_none(), "another node name");
        config.node_name = "n1".into();
        config.token = token(Some(tls::ca_hash("another ca")));
        assert!(load_stored(&config).unwrap().is_none(), "another CA");
        config.token = token(Some(tls::ca_hash(pki.ca_cert_pem())));

        // A certificate from before revocable credentials (no binding) is replaced.
        let (certificate, key) = pki
            .issue_client_cert("system:node:n1", &["system:nodes"])
            .unwrap();
        store(
            &config,
            &NodeCredentials {
                certificate,
                key,
                ..creds
            },
        )
        .unwrap();
        assert!(
            load_stored(&config).unwrap().is_none(),
            "unbound credential"
        );
    }

    #[test]
    fn missing_stored_credential_means_join() {
        let dir = tempfile::tempdir().unwrap();
        let config = JoinConfig {
            server: ServerAddr::parse("https://127.0.0.1:1").unwrap(),
            token: token(Some(tls::ca_hash(CA))),
            insecure_skip_ca_hash: false,
            node_name: "n1".into(),
            agent_dir: dir.path().to_owned(),
        };
        assert!(load_stored(&config).unwrap().is_none());
    }
}
