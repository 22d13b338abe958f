//! `orc server --server URL --token TOKEN`: a server joining a cluster on a shared
//! datastore. It checks the first server's CA against the token, reads the cluster's
//! bootstrap data from the datastore, opens it with the token and installs it in its data
//! dir — checking everything before writing anything, so a wrong token leaves no trace.

use std::path::Path;

use crate::agent::client::{ApiClient, ServerAddr};
use crate::store::Store;
use crate::tls::{self, bootstrap, JoinToken};

#[derive(Debug, thiserror::Error)]
pub enum ServerJoinError {
    #[error("--server {url}: expected https://HOST:PORT of a running server")]
    BadUrl { url: String },
    #[error("--server needs --token: the join token of the first server (cat /var/lib/orc/server/token there)")]
    NoToken,
    #[error("--token is not a join token: {0}")]
    BadToken(#[source] tls::Error),
    #[error("cannot reach {server}/cacerts: {reason} (is the first server running?)")]
    Unreachable { server: String, reason: String },
    #[error("{server}/cacerts did not answer a CA certificate (status {status}): is --server pointing at an orc server?")]
    NoCa { server: String, status: u16 },
    #[error("the CA of {server} does not match the hash in --token: use the token of that server's cluster")]
    CaHashMismatch { server: String },
    #[error("--token is not this cluster's: the datastore holds no bootstrap data for it (use the token of the first server, cat /var/lib/orc/server/token there); nothing was written")]
    WrongToken,
    #[error("{server} serves another CA than the cluster on this datastore: --server and --datastore-endpoint belong to different clusters")]
    CaMismatch { server: String },
    #[error(transparent)]
    Bootstrap(#[from] bootstrap::BootstrapError),
    #[error("bootstrap data in the datastore")]
    Store(#[source] crate::store::StoreError),
}

pub type Result<T, E = ServerJoinError> = std::result::Result<T, E>;

/// Fetches and opens the bootstrap record for `secret` (`None`: there is none, e.g. a
/// wrong token). Only reads the datastore.
pub fn fetch(store: &dyn Store, secret: &str) -> Result<Option<bootstrap::Bundle>> {
    let key = bootstrap::record_key(secret);
    match store.get(&key) {
        Some(kv) => Ok(Some(bootstrap::open(secret, &key, &kv.value)?)),
        None => Ok(None),
    }
}

/// Stores `bundle` for `secret` unless the datastore already holds exactly it: a
/// restarted server writes nothing. Returns whether it wrote.
pub async fn publish(store: &dyn Store, secret: &str, bundle: &bootstrap::Bundle) -> Result<bool> {
    let key = bootstrap::record_key(secret);
    let current = store.get(&key);
    if let Some(kv) = &current {
        if bootstrap::open(secret, &key, &kv.value).ok().as_ref() == Some(bundle) {
            return Ok(false);
        }
    }
    let sealed = bootstrap::seal(secret, &key, bundle)?;
    let written = match current {
        Some(kv) => store.update(&key, sealed, Some(kv.mod_revision)).await,
        None => store.create(&key, sealed).await,
    };
    written.map_err(ServerJoinError::Store)?;
    Ok(true)
}

/// Removes the record of a token that is no longer valid (after a rotation).
pub async fn withdraw(store: &dyn Store, secret: &str) -> Result<()> {
    match store.delete(&bootstrap::record_key(secret), None).await {
        Ok(_) | Err(crate::store::StoreError::NotFound { .. }) => Ok(()),
        Err(e) => Err(ServerJoinError::Store(e)),
    }
}

/// `--token` parsed for a joining server.
pub fn parse_token(token: Option<&str>) -> Result<JoinToken> {
    token
        .ok_or(ServerJoinError::NoToken)?
        .parse()
        .map_err(ServerJoinError::BadToken)
}

/// The CA bundle `url` serves at `/cacerts`, checked against the token's hash (a token
/// without a hash is checked later against the bootstrap data, which it decrypts).
pub async fn fetch_server_ca(url: &str, token: &JoinToken) -> Result<String> {
    let addr = ServerAddr::parse(url).map_err(|_| ServerJoinError::BadUrl { url: url.into() })?;
    let unverified =
        tls::client_config_unverified().map_err(|e| ServerJoinError::Unreachable {
            server: addr.url(),
            reason: e.to_string(),
        })?;
    let client = ApiClient::new(addr.clone(), unverified, None);
    let resp = client
        .get("/cacerts")
        .await
        .map_err(|e| ServerJoinError::Unreachable {
            server: addr.url(),
            reason: e.to_string(),
        })?;
    let ca_pem = String::from_utf8_lossy(&resp.body).into_owned();
    if !resp.status.is_success() || !ca_pem.contains("BEGIN CERTIFICATE") {
        return Err(ServerJoinError::NoCa {
            server: addr.url(),
            status: resp.status.as_u16(),
        });
    }
    if token.ca_hash.is_some() && token.verify_ca(&ca_pem).is_err() {
        return Err(ServerJoinError::CaHashMismatch { server: addr.url() });
    }
    Ok(ca_pem)
}

/// Reads and checks the bootstrap data for `token` (the datastore is only read): it
/// must exist, open with the token, hold the CA `served_ca` that `server` serves, and
/// agree with whatever `server_dir` already holds (a restarted joined server).
pub fn fetch_bootstrap(
    store: &dyn Store,
    token: &JoinToken,
    server: &str,
    served_ca: &str,
    server_dir: &Path,
) -> Result<bootstrap::Bundle> {
    let bundle = match fetch(store, &token.secret) {
        Ok(Some(bundle)) => bundle,
        Ok(None) | Err(ServerJoinError::Bootstrap(bootstrap::BootstrapError::WrongToken)) => {
            return Err(ServerJoinError::WrongToken)
        }
        Err(e) => return Err(e),
    };
    let ca = bundle.files.get("tls/ca.crt").map(Vec::as_slice);
    if ca != Some(served_ca.as_bytes()) {
        return Err(ServerJoinError::CaMismatch {
            server: server.into(),
        });
    }
    bootstrap::check_installable(server_dir, &bundle)?;
    Ok(bundle)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::memory::MemoryStore;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn bundle() -> bootstrap::Bundle {
        let mut b = bootstrap::Bundle::default();
        b.files.insert("tls/ca.crt".into(), b"CA PEM".to_vec());
        b.files.insert("tls/ca.key".into(), b"CA KEY".to_vec());
        b
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused_and_nothing_is_written() {
        let store = MemoryStore::new();
        publish(&store, SECRET, &bundle()).await.unwrap();
        let revision = store.revision();
        let dir = tempfile::tempdir().unwrap();
        let server_dir = dir.path().join("server");
        let wrong = parse_token(Some("another-secret-of-the-right-length")).unwrap();
        let err = fetch_bootstrap(&store, &wrong, "https://a:6443", "CA PEM", &server_dir)
            .unwrap_err();
        assert!(matches!(err, ServerJoinError::WrongToken), "{err}");
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert!(!server_dir.exists());
        assert_eq!(store.revision(), revision);

        let right = parse_token(Some(SECRET)).unwrap();
        let got = fetch_bootstrap(&store, &right, "https://a:6443", "CA PEM", &server_dir)
            .unwrap();
        assert_eq!(got, bundle());
        let err = fetch_bootstrap(&store, &right, "https://b:6443", "OTHER CA", &server_dir)
            .unwrap_err();
        assert!(matches!(err, ServerJoinError::CaMismatch { .. }), "{err}");
    }

    #[test]
    fn a_token_is_required() {
        assert!(matches!(parse_token(None), Err(ServerJoinError::NoToken)));
        assert!(matches!(
            parse_token(Some("K10zz::node:x")),
            Err(ServerJoinError::BadToken(_))
        ));
    }

    #[tokio::test]
    async fn publish_writes_once_and_fetch_needs_the_token() {
        let store = MemoryStore::new();
        assert!(publish(&store, SECRET, &bundle()).await.unwrap());
        let rev = store.revision();
        assert!(!publish(&store, SECRET, &bundle()).await.unwrap());
        assert_eq!(store.revision(), rev, "a restart writes nothing");
        assert_eq!(fetch(&store, SECRET).unwrap(), Some(bundle()));
        assert_eq!(fetch(&store, "wrong-token-0123456789").unwrap(), None);
        withdraw(&store, SECRET).await.unwrap();
        assert_eq!(fetch(&store, SECRET).unwrap(), None);
    }
}
