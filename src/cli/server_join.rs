//! `orc server --server URL --token TOKEN`: a server joining a cluster on a shared
//! datastore. It checks the first server's CA against the token, reads the cluster's
//! bootstrap data from the datastore, opens it with the token and installs it in its data
//! dir — checking everything before writing anything, so a wrong token leaves no trace.

use std::path::Path;

use crate::agent::client::{ApiClient, ServerAddr};
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
    #[error("read or write the bootstrap data in the datastore")]
    Datastore(#[source] KvError),
    #[error("another server wrote the bootstrap data at the same time: start again")]
    Raced,
}

pub type Result<T, E = ServerJoinError> = std::result::Result<T, E>;

/// Where the bootstrap record is kept: a few raw keys beside the cluster's objects (in
/// etcd under `/registry/orc/`, which the object cache neither loads nor watches).
#[async_trait::async_trait]
pub trait BootstrapKv: Send + Sync {
    /// The value at `key` and its modification revision.
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, KvError>;
    /// Writes `key` if its modification revision is still `expected` (`None`: if it
    /// does not exist); `false` when someone else wrote it first.
    async fn put(&self, key: &str, value: Vec<u8>, expected: Option<i64>) -> Result<bool, KvError>;
    async fn delete(&self, key: &str) -> Result<(), KvError>;
}

pub type KvError = Box<dyn std::error::Error + Send + Sync>;

/// The datastore key of the record for `secret`.
fn key_for(secret: &str) -> String {
    format!(
        "{}{}",
        crate::store::etcd::RESERVED_PREFIX,
        bootstrap::record_key(secret)
    )
}

#[async_trait::async_trait]
impl BootstrapKv for etcd_client::Client {
    async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, KvError> {
        let resp = self.kv_client().get(key, None).await?;
        Ok(resp
            .kvs()
            .first()
            .map(|kv| (kv.value().to_vec(), kv.mod_revision())))
    }

    async fn put(&self, key: &str, value: Vec<u8>, expected: Option<i64>) -> Result<bool, KvError> {
        use etcd_client::{Compare, CompareOp, Txn, TxnOp};
        let guard = match expected {
            Some(rev) => Compare::mod_revision(key, CompareOp::Equal, rev),
            None => Compare::create_revision(key, CompareOp::Equal, 0),
        };
        let txn = Txn::new()
            .when([guard])
            .and_then([TxnOp::put(key, value, None)]);
        Ok(self.kv_client().txn(txn).await?.succeeded())
    }

    async fn delete(&self, key: &str) -> Result<(), KvError> {
        self.kv_client().delete(key, None).await?;
        Ok(())
    }
}

/// Fetches and opens the bootstrap record for `secret` (`None`: there is none, e.g. a
/// wrong token). Only reads the datastore.
pub async fn fetch(kv: &dyn BootstrapKv, secret: &str) -> Result<Option<bootstrap::Bundle>> {
    let key = key_for(secret);
    let Some((value, _)) = kv.get(&key).await.map_err(ServerJoinError::Datastore)? else {
        return Ok(None);
    };
    let record: serde_json::Value =
        serde_json::from_slice(&value).map_err(|e| bootstrap::BootstrapError::Malformed {
            reason: e.to_string(),
        })?;
    Ok(Some(bootstrap::open(secret, &key, &record)?))
}

/// Stores `bundle` for `secret` unless the datastore already holds exactly it: a
/// restarted server writes nothing. Returns whether it wrote.
pub async fn publish(
    kv: &dyn BootstrapKv,
    secret: &str,
    bundle: &bootstrap::Bundle,
) -> Result<bool> {
    let key = key_for(secret);
    let current = kv.get(&key).await.map_err(ServerJoinError::Datastore)?;
    if let Some((value, _)) = &current {
        let same = serde_json::from_slice(value)
            .ok()
            .and_then(|record| bootstrap::open(secret, &key, &record).ok());
        if same.as_ref() == Some(bundle) {
            return Ok(false);
        }
    }
    let sealed = bootstrap::seal(secret, &key, bundle)?;
    let value = serde_json::to_vec(&sealed).map_err(|_| bootstrap::BootstrapError::Seal)?;
    let expected = current.map(|(_, rev)| rev);
    if !kv
        .put(&key, value, expected)
        .await
        .map_err(ServerJoinError::Datastore)?
    {
        return Err(ServerJoinError::Raced);
    }
    Ok(true)
}

/// Removes the record of a token that is no longer valid (after a rotation).
pub async fn withdraw(kv: &dyn BootstrapKv, secret: &str) -> Result<()> {
    kv.delete(&key_for(secret))
        .await
        .map_err(ServerJoinError::Datastore)
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
    let unverified = tls::client_config_unverified().map_err(|e| ServerJoinError::Unreachable {
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
pub async fn fetch_bootstrap(
    kv: &dyn BootstrapKv,
    token: &JoinToken,
    server: &str,
    served_ca: &str,
    server_dir: &Path,
) -> Result<bootstrap::Bundle> {
    let bundle = match fetch(kv, &token.secret).await {
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
    use std::collections::HashMap;
    use std::sync::Mutex;

    /// A datastore of raw keys that counts its writes.
    #[derive(Default)]
    struct MemoryKv {
        keys: Mutex<HashMap<String, (Vec<u8>, i64)>>,
        writes: Mutex<i64>,
    }

    #[async_trait::async_trait]
    impl BootstrapKv for MemoryKv {
        async fn get(&self, key: &str) -> Result<Option<(Vec<u8>, i64)>, KvError> {
            Ok(self.keys.lock().unwrap().get(key).cloned())
        }

        async fn put(
            &self,
            key: &str,
            value: Vec<u8>,
            expected: Option<i64>,
        ) -> Result<bool, KvError> {
            let mut keys = self.keys.lock().unwrap();
            if keys.get(key).map(|(_, rev)| *rev) != expected {
                return Ok(false);
            }
            let mut writes = self.writes.lock().unwrap();
            *writes += 1;
            keys.insert(key.into(), (value, *writes));
            Ok(true)
        }

        async fn delete(&self, key: &str) -> Result<(), KvError> {
            *self.writes.lock().unwrap() += 1;
            self.keys.lock().unwrap().remove(key);
            Ok(())
        }
    }

    impl MemoryKv {
        fn writes(&self) -> i64 {
            *self.writes.lock().unwrap()
        }
    }

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn bundle() -> bootstrap::Bundle {
        let mut b = bootstrap::Bundle::default();
        b.files.insert("tls/ca.crt".into(), b"CA PEM".to_vec());
        b.files.insert("tls/ca.key".into(), b"CA KEY".to_vec());
        b
    }

    #[tokio::test]
    async fn a_wrong_token_is_refused_and_nothing_is_written() {
        let store = MemoryKv::default();
        publish(&store, SECRET, &bundle()).await.unwrap();
        let writes = store.writes();
        let dir = tempfile::tempdir().unwrap();
        let server_dir = dir.path().join("server");
        let wrong = parse_token(Some("another-secret-of-the-right-length")).unwrap();
        let err = fetch_bootstrap(&store, &wrong, "https://a:6443", "CA PEM", &server_dir)
            .await
            .unwrap_err();
        assert!(matches!(err, ServerJoinError::WrongToken), "{err}");
        assert!(err.to_string().contains("nothing was written"), "{err}");
        assert!(!server_dir.exists());
        assert_eq!(store.writes(), writes);

        let right = parse_token(Some(SECRET)).unwrap();
        let got = fetch_bootstrap(&store, &right, "https://a:6443", "CA PEM", &server_dir)
            .await
            .unwrap();
        assert_eq!(got, bundle());
        let err = fetch_bootstrap(&store, &right, "https://b:6443", "OTHER CA", &server_dir)
            .await
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
        let store = MemoryKv::default();
        assert!(publish(&store, SECRET, &bundle()).await.unwrap());
        let writes = store.writes();
        assert!(!publish(&store, SECRET, &bundle()).await.unwrap());
        assert_eq!(store.writes(), writes, "a restart writes nothing");
        assert!(store
            .keys
            .lock()
            .unwrap()
            .keys()
            .all(|k| k.starts_with("/registry/orc/bootstrap/")));
        assert_eq!(fetch(&store, SECRET).await.unwrap(), Some(bundle()));
        assert_eq!(fetch(&store, "wrong-token-0123456789").await.unwrap(), None);
        // A changed bundle (e.g. an encryption config added) replaces the record.
        let mut other = bundle();
        other
            .files
            .insert("tls/service-account.key".into(), b"SA".to_vec());
        assert!(publish(&store, SECRET, &other).await.unwrap());
        assert_eq!(fetch(&store, SECRET).await.unwrap(), Some(other));
        withdraw(&store, SECRET).await.unwrap();
        assert_eq!(fetch(&store, SECRET).await.unwrap(), None);
    }
}
