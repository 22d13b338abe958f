//! Encryption at rest: the [`ValueTransformer`] hook of the datastore, and the AES-GCM
//! transformer that encrypts Secrets with keys from an upstream `EncryptionConfiguration`.
//!
//! Stored values look as upstream's `aesgcm` provider writes them:
//! `k8s:enc:aesgcm:v1:<key name>:<12-byte random nonce><ciphertext><16-byte tag>`, with the
//! datastore key as additional authenticated data (a value moved to another key does not
//! decrypt). Values without the prefix are read as they are (upstream's `identity`
//! provider), so a datastore written before encryption was turned on stays readable until
//! its rows are rewritten. Random nonces limit a key to about 2^32 writes; upstream
//! recommends rotating aesgcm keys long before (`orc secrets-encrypt rotate-keys`).

use std::path::{Path, PathBuf};

use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// Datastore keys of Secrets (`ResourceDef::prefix` of core/v1 secrets).
pub const SECRETS_PREFIX: &str = "/core/secrets/";
/// What every encrypted value starts with, before the key name.
const ENCRYPTED_PREFIX: &str = "k8s:enc:aesgcm:v1:";
/// Name of the first key; rotation counts up (`aesgcmkey-2`, ...).
const KEY_NAME_BASE: &str = "aesgcmkey-";
const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum EncryptionError {
    #[error("read encryption config {path}")]
    Read {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("encryption config {path} is not a valid EncryptionConfiguration with aesgcm keys: {reason}")]
    Invalid { path: String, reason: String },
    #[error("write encryption config {path}")]
    Write {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("no random numbers available from the operating system")]
    Random,
    #[error("value is encrypted with key {name}, which the encryption config does not hold: restore the data dir's server/cred/encryption-config.json")]
    UnknownKey { name: String },
    #[error("value does not decrypt: wrong key or corrupted data")]
    Decrypt,
    #[error("value could not be encrypted")]
    Encrypt,
}

pub type Result<T, E = EncryptionError> = std::result::Result<T, E>;

/// Changes values on their way to and from the database. The cache and every reader see
/// decoded values: only the bytes stored on disk differ.
pub trait ValueTransformer: Send + Sync + 'static {
    /// The stored form of `value` at `key` (`None`: store it as it is).
    fn encode(&self, key: &str, value: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The value behind the stored bytes at `key` (`None`: they are the value).
    fn decode(&self, key: &str, stored: &[u8]) -> Result<Option<Vec<u8>>>;
    /// The key prefix whose stored values this transformer may rewrite (`None`: none).
    fn prefix(&self) -> Option<&str>;
    /// Whether stored bytes under [`Self::prefix`] should be rewritten with `encode`
    /// (still in clear, or under a key that is no longer the primary one).
    fn is_stale(&self, stored: &[u8]) -> bool;
}

/// Stores every value as it is (and refuses encrypted values: their keys are missing).
pub struct Identity;

impl ValueTransformer for Identity {
    fn encode(&self, _key: &str, _value: &[u8]) -> Result<Option<Vec<u8>>> {
        Ok(None)
    }

    fn decode(&self, _key: &str, stored: &[u8]) -> Result<Option<Vec<u8>>> {
        match SecretsEncryption::key_of(stored) {
            Some(name) => Err(EncryptionError::UnknownKey { name: name.into() }),
            None => Ok(None),
        }
    }

    fn prefix(&self) -> Option<&str> {
        None
    }

    fn is_stale(&self, _stored: &[u8]) -> bool {
        false
    }
}

/// One AES-256 key with its name.
struct NamedKey {
    name: String,
    secret: [u8; KEY_LEN],
    key: LessSafeKey,
}

impl NamedKey {
    fn new(name: String, secret: [u8; KEY_LEN]) -> NamedKey {
        let unbound = UnboundKey::new(&AES_256_GCM, &secret).expect("a 32-byte AES-256 key");
        NamedKey {
            name,
            secret,
            key: LessSafeKey::new(unbound),
        }
    }
}

/// The keys Secrets are encrypted with: the first encrypts, all decrypt.
pub struct SecretsEncryption {
    keys: Vec<NamedKey>,
}

impl SecretsEncryption {
    /// A new configuration with one random key.
    pub fn generate() -> Result<SecretsEncryption> {
        Ok(SecretsEncryption {
            keys: vec![NamedKey::new(format!("{KEY_NAME_BASE}1"), random_key()?)],
        })
    }

    /// Key names, the active (encrypting) one first.
    pub fn key_names(&self) -> Vec<&str> {
        self.keys.iter().map(|k| k.name.as_str()).collect()
    }

    /// A new random key becomes the active one; the old keys stay for decrypting until
    /// every value has been rewritten (see [`Self::retire_old_keys`]).
    pub fn rotated(&self) -> Result<SecretsEncryption> {
        let next = self
            .keys
            .iter()
            .filter_map(|k| k.name.strip_prefix(KEY_NAME_BASE)?.parse::<u64>().ok())
            .max()
            .unwrap_or(0)
            + 1;
        let mut keys = vec![NamedKey::new(
            format!("{KEY_NAME_BASE}{next}"),
            random_key()?,
        )];
        keys.extend(
            self.keys
                .iter()
                .map(|k| NamedKey::new(k.name.clone(), k.secret)),
        );
        Ok(SecretsEncryption { keys })
    }

    /// Only the active key (once no stored value needs the others).
    pub fn retire_old_keys(mut self) -> SecretsEncryption {
        self.keys.truncate(1);
        self
    }

    /// Where the rotation stands, in k3s's words: `start` with the first key,
    /// `reencrypt_active` while old keys are kept, `reencrypt_finished` after a rotation.
    pub fn rotation_stage(&self) -> &'static str {
        match (self.keys.len(), self.keys[0].name.as_str()) {
            (1, name) if name == format!("{KEY_NAME_BASE}1") => "start",
            (1, _) => "reencrypt_finished",
            _ => "reencrypt_active",
        }
    }

    /// Reads the configuration at `path` (`None` when the file does not exist).
    pub fn load(path: &Path) -> Result<Option<SecretsEncryption>> {
        let text = match std::fs::read(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(EncryptionError::Read {
                    path: path.display().to_string(),
                    source,
                })
            }
        };
        Self::from_json(&text)
            .map(Some)
            .map_err(|reason| EncryptionError::Invalid {
                path: path.display().to_string(),
                reason,
            })
    }

    fn from_json(text: &[u8]) -> std::result::Result<SecretsEncryption, String> {
        let config: EncryptionConfiguration =
            serde_json::from_slice(text).map_err(|e| e.to_string())?;
        let rule = config
            .resources
            .iter()
            .find(|r| r.resources.iter().any(|r| r == "secrets"))
            .ok_or("no rule for secrets")?;
        let aesgcm = rule
            .providers
            .iter()
            .find_map(|p| p.aesgcm.as_ref())
            .ok_or("no aesgcm provider")?;
        let mut keys = Vec::new();
        for k in &aesgcm.keys {
            let secret = base64::engine::general_purpose::STANDARD
                .decode(&k.secret)
                .ok()
                .and_then(|s| <[u8; KEY_LEN]>::try_from(s).ok())
                .ok_or_else(|| format!("key {} is not 32 bytes of base64", k.name))?;
            if k.name.is_empty() || k.name.contains(':') {
                return Err(format!("key name {:?} is empty or holds ':'", k.name));
            }
            keys.push(NamedKey::new(k.name.clone(), secret));
        }
        if keys.is_empty() {
            return Err("the aesgcm provider has no keys".into());
        }
        Ok(SecretsEncryption { keys })
    }

    fn to_json(&self) -> Vec<u8> {
        let keys = self
            .keys
            .iter()
            .map(|k| KeyEntry {
                name: k.name.clone(),
                secret: base64::engine::general_purpose::STANDARD.encode(k.secret),
            })
            .collect();
        let config = EncryptionConfiguration {
            kind: "EncryptionConfiguration".into(),
            api_version: "apiserver.config.k8s.io/v1".into(),
            resources: vec![ResourceRule {
                resources: vec!["secrets".into()],
                providers: vec![
                    Provider {
                        aesgcm: Some(AesGcm { keys }),
                        identity: None,
                    },
                    Provider {
                        aesgcm: None,
                        identity: Some(serde_json::json!({})),
                    },
                ],
            }],
        };
        serde_json::to_vec_pretty(&config).expect("serializable")
    }

    /// Writes the configuration to `path` (mode 0600, replaced atomically).
    pub fn save(&self, path: &Path) -> Result<()> {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let write_err = |source| EncryptionError::Write {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(write_err)?;
        }
        let tmp = temp_path(path);
        let mut file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .map_err(write_err)?;
        file.write_all(&self.to_json()).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        std::fs::rename(&tmp, path).map_err(write_err)
    }

    /// How a stored value is encrypted: `Some(key name)`, or `None` when in clear.
    pub fn key_of(stored: &[u8]) -> Option<&str> {
        let rest = stored.strip_prefix(ENCRYPTED_PREFIX.as_bytes())?;
        let end = rest.iter().position(|b| *b == b':')?;
        std::str::from_utf8(&rest[..end]).ok()
    }

    fn encrypt(&self, key: &str, value: &[u8]) -> Result<Vec<u8>> {
        let primary = &self.keys[0];
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| EncryptionError::Random)?;
        let mut sealed = value.to_vec();
        primary
            .key
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(key.as_bytes()),
                &mut sealed,
            )
            .map_err(|_| EncryptionError::Encrypt)?;
        let mut out = Vec::with_capacity(
            ENCRYPTED_PREFIX.len() + primary.name.len() + 1 + NONCE_LEN + sealed.len(),
        );
        out.extend_from_slice(ENCRYPTED_PREFIX.as_bytes());
        out.extend_from_slice(primary.name.as_bytes());
        out.push(b':');
        out.extend_from_slice(&nonce);
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn decrypt(&self, key: &str, stored: &[u8], name: &str) -> Result<Vec<u8>> {
        let named = self
            .keys
            .iter()
            .find(|k| k.name == name)
            .ok_or_else(|| EncryptionError::UnknownKey { name: name.into() })?;
        let body = &stored[ENCRYPTED_PREFIX.len() + name.len() + 1..];
        if body.len() < NONCE_LEN {
            return Err(EncryptionError::Decrypt);
        }
        let (nonce, sealed) = body.split_at(NONCE_LEN);
        let nonce =
            Nonce::try_assume_unique_for_key(nonce).map_err(|_| EncryptionError::Decrypt)?;
        let mut buf = sealed.to_vec();
        let plain = named
            .key
            .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
            .map_err(|_| EncryptionError::Decrypt)?;
        Ok(plain.to_vec())
    }
}

impl ValueTransformer for SecretsEncryption {
    fn encode(&self, key: &str, value: &[u8]) -> Result<Option<Vec<u8>>> {
        if !key.starts_with(SECRETS_PREFIX) {
            return Ok(None);
        }
        self.encrypt(key, value).map(Some)
    }

    fn decode(&self, key: &str, stored: &[u8]) -> Result<Option<Vec<u8>>> {
        match Self::key_of(stored) {
            None => Ok(None),
            Some(name) => self.decrypt(key, stored, name).map(Some),
        }
    }

    fn prefix(&self) -> Option<&str> {
        Some(SECRETS_PREFIX)
    }

    fn is_stale(&self, stored: &[u8]) -> bool {
        Self::key_of(stored) != Some(self.keys[0].name.as_str())
    }
}

fn random_key() -> Result<[u8; KEY_LEN]> {
    let mut key = [0u8; KEY_LEN];
    SystemRandom::new()
        .fill(&mut key)
        .map_err(|_| EncryptionError::Random)?;
    Ok(key)
}

fn temp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Upstream's `apiserver.config.k8s.io/v1` EncryptionConfiguration (the parts orc uses).
#[derive(Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
struct EncryptionConfiguration {
    kind: String,
    api_version: String,
    resources: Vec<ResourceRule>,
}

#[derive(Serialize, Deserialize)]
struct ResourceRule {
    resources: Vec<String>,
    providers: Vec<Provider>,
}

#[derive(Serialize, Deserialize)]
struct Provider {
    #[serde(skip_serializing_if = "Option::is_none")]
    aesgcm: Option<AesGcm>,
    #[serde(skip_serializing_if = "Option::is_none")]
    identity: Option<serde_json::Value>,
}

#[derive(Serialize, Deserialize)]
struct AesGcm {
    keys: Vec<KeyEntry>,
}

#[derive(Serialize, Deserialize)]
struct KeyEntry {
    name: String,
    secret: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "/core/secrets/default/db";

    #[test]
    fn secrets_round_trip_and_other_keys_pass_through() {
        let enc = SecretsEncryption::generate().unwrap();
        let stored = enc.encode(KEY, b"{\"data\":\"hunter2\"}").unwrap().unwrap();
        assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:aesgcmkey-1:"));
        assert!(!stored.windows(7).any(|w| w == b"hunter2"));
        assert_eq!(
            enc.decode(KEY, &stored).unwrap().unwrap(),
            b"{\"data\":\"hunter2\"}"
        );
        assert!(enc
            .encode("/core/configmaps/default/x", b"{}")
            .unwrap()
            .is_none());
        assert!(enc.decode(KEY, b"{\"in\":\"clear\"}").unwrap().is_none());
        assert!(enc.is_stale(b"{\"in\":\"clear\"}"));
        assert!(!enc.is_stale(&stored));
    }

    #[test]
    fn a_value_moved_to_another_key_or_tampered_does_not_decrypt() {
        let enc = SecretsEncryption::generate().unwrap();
        let stored = enc.encode(KEY, b"{}").unwrap().unwrap();
        assert!(matches!(
            enc.decode("/core/secrets/default/other", &stored),
            Err(EncryptionError::Decrypt)
        ));
        let mut tampered = stored.clone();
        *tampered.last_mut().unwrap() ^= 1;
        assert!(enc.decode(KEY, &tampered).is_err());
        let other = SecretsEncryption::generate().unwrap();
        assert!(other.decode(KEY, &stored).is_err());
    }

    #[test]
    fn rotation_encrypts_with_the_new_key_and_still_reads_old_values() {
        let first = SecretsEncryption::generate().unwrap();
        let old = first.encode(KEY, b"{\"v\":1}").unwrap().unwrap();
        let rotated = first.rotated().unwrap();
        assert_eq!(rotated.key_names(), vec!["aesgcmkey-2", "aesgcmkey-1"]);
        assert_eq!(rotated.rotation_stage(), "reencrypt_active");
        assert!(rotated.is_stale(&old));
        assert_eq!(rotated.decode(KEY, &old).unwrap().unwrap(), b"{\"v\":1}");
        let new = rotated.encode(KEY, b"{\"v\":1}").unwrap().unwrap();
        assert_eq!(SecretsEncryption::key_of(&new), Some("aesgcmkey-2"));
        let done = rotated.retire_old_keys();
        assert_eq!(done.rotation_stage(), "reencrypt_finished");
        assert!(matches!(
            done.decode(KEY, &old),
            Err(EncryptionError::UnknownKey { .. })
        ));
        assert_eq!(first.rotation_stage(), "start");
    }

    fn db_bytes(dir: &Path) -> Vec<u8> {
        let mut all = Vec::new();
        for name in ["state.db", "state.db-wal"] {
            all.extend(std::fs::read(dir.join(name)).unwrap_or_default());
        }
        all
    }

    fn contains(haystack: &[u8], needle: &str) -> bool {
        haystack
            .windows(needle.len())
            .any(|w| w == needle.as_bytes())
    }

    #[tokio::test]
    async fn the_store_encrypts_existing_and_new_secrets_on_disk_only() {
        use crate::store::sqlite::SqliteStore;
        use crate::store::Store;
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let db = dir.path().join("state.db");
        let secret = |v: &str| serde_json::json!({"metadata": {"name": "s"}, "data": {"k": v}});
        {
            let store = SqliteStore::open(&db).unwrap();
            store.create(KEY, secret("clear-old-value")).await.unwrap();
            store
                .update(KEY, secret("clear-new-value"), None)
                .await
                .unwrap();
            store
                .create("/core/configmaps/default/c", secret("configmap-value"))
                .await
                .unwrap();
        }
        assert!(contains(&db_bytes(dir.path()), "clear-old-value"));
        let enc: Arc<dyn ValueTransformer> = Arc::new(SecretsEncryption::generate().unwrap());
        {
            let store = SqliteStore::open_with(&db, enc.clone()).unwrap();
            assert_eq!(
                store.get(KEY).unwrap().value["data"]["k"],
                "clear-new-value"
            );
            store
                .create("/core/secrets/default/t", secret("fresh-value"))
                .await
                .unwrap();
        }
        let bytes = db_bytes(dir.path());
        for value in ["clear-old-value", "clear-new-value", "fresh-value"] {
            assert!(!contains(&bytes, value), "{value} is on disk in clear");
        }
        assert!(contains(&bytes, "configmap-value"));
        let err = SqliteStore::open(&db)
            .err()
            .expect("encrypted rows need the keys");
        assert!(
            matches!(&err, crate::store::StoreError::Transform { key, source: EncryptionError::UnknownKey { .. } } if key.starts_with(SECRETS_PREFIX)),
            "{err}"
        );
        let store = SqliteStore::open_with(&db, enc).unwrap();
        assert_eq!(
            store.get("/core/secrets/default/t").unwrap().value["data"]["k"],
            "fresh-value"
        );
    }

    #[test]
    fn config_file_is_private_and_upstream_shaped() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cred/encryption-config.json");
        assert!(SecretsEncryption::load(&path).unwrap().is_none());
        let enc = SecretsEncryption::generate().unwrap().rotated().unwrap();
        enc.save(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let v: serde_json::Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        assert_eq!(v["kind"], "EncryptionConfiguration");
        assert_eq!(v["resources"][0]["resources"][0], "secrets");
        assert_eq!(
            v["resources"][0]["providers"][0]["aesgcm"]["keys"][0]["name"],
            "aesgcmkey-2"
        );
        assert!(v["resources"][0]["providers"][1]["identity"].is_object());
        let loaded = SecretsEncryption::load(&path).unwrap().unwrap();
        assert_eq!(loaded.key_names(), enc.key_names());
        let stored = enc.encode(KEY, b"x").unwrap().unwrap();
        assert_eq!(loaded.decode(KEY, &stored).unwrap().unwrap(), b"x");
        std::fs::write(&path, b"{\"kind\":\"EncryptionConfiguration\"}").unwrap();
        assert!(matches!(
            SecretsEncryption::load(&path),
            Err(EncryptionError::Invalid { .. })
        ));
    }
}
