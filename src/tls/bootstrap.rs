//! The cluster's bootstrap data in a shared datastore: the files every server of one
//! cluster must hold alike (CA, service-account signing key, secrets-encryption config),
//! sealed with a key derived from the join token so that a joining server with the same
//! `--token` can fetch them and nobody reading the datastore without it can.
//!
//! As k3s does, the record is found without the secret: its datastore key is
//! `bootstrap/<name>` (under etcd's `/registry/orc/`), where the name is derived from the token. Unlike k3s (a bare
//! SHA-256), the name is itself a PBKDF2 output, so the key name is no shortcut for
//! guessing the token offline. The contents are AES-256-GCM with a PBKDF2-HMAC-SHA256 key
//! (random salt per record), the datastore key as additional authenticated data.

use std::collections::BTreeMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::pbkdf2;
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// Name prefix of bootstrap records (etcd keeps them under `/registry/orc/`).
pub const KEY_PREFIX: &str = "bootstrap/";
/// Files of `<data-dir>/server/` shared by every server of a cluster. The CA key signs
/// every server's own serving certificate; the signing key makes service-account tokens
/// issued by one server valid on all; the encryption config lets each read Secrets.
pub const SHARED_FILES: [&str; 4] = [
    "tls/ca.crt",
    "tls/ca.key",
    "tls/service-account.key",
    "cred/encryption-config.json",
];
/// PBKDF2-HMAC-SHA256 rounds for the record's name and its encryption key.
const PBKDF2_ROUNDS: u32 = 100_000;
/// Salt of the name derivation: fixed, so every server finds the same record.
const NAME_SALT: &[u8] = b"orc bootstrap record name v1";
/// Bytes of the derived name (hex in the key).
const NAME_BYTES: usize = 16;
const KEY_BYTES: usize = 32;
const SALT_BYTES: usize = 16;
/// Format of the sealed record.
const FORMAT: &str = "orc-bootstrap/v1";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("no random numbers available")]
    Random,
    #[error("seal the bootstrap data")]
    Seal,
    /// The record does not open with this token (or was tampered with).
    #[error("the bootstrap data in the datastore does not decrypt with this token (a different cluster's, or altered)")]
    WrongToken,
    #[error("the bootstrap record is malformed: {reason}")]
    Malformed { reason: String },
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Write(#[from] super::Error),
    #[error("{path} differs from the cluster's bootstrap data: this data dir belongs to another cluster (remove {dir} to join this one)")]
    Conflict { path: PathBuf, dir: PathBuf },
}

pub type Result<T, E = BootstrapError> = std::result::Result<T, E>;

/// The shared files, by path relative to `<data-dir>/server/`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct Bundle {
    pub files: BTreeMap<String, Vec<u8>>,
}

impl std::fmt::Debug for Bundle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Key material never reaches a log: only the file names.
        f.debug_struct("Bundle")
            .field("files", &self.files.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// The record as stored: what is needed to open it, and the ciphertext.
#[derive(Debug, Serialize, Deserialize)]
struct Sealed {
    format: String,
    rounds: u32,
    salt: String,
    nonce: String,
    ciphertext: String,
}

/// The datastore key of the bootstrap record for the join token secret `secret`.
pub fn record_key(secret: &str) -> String {
    let mut name = [0u8; NAME_BYTES];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds(PBKDF2_ROUNDS),
        NAME_SALT,
        secret.as_bytes(),
        &mut name,
    );
    format!("{KEY_PREFIX}{}", hex::encode(name))
}

fn rounds(n: u32) -> NonZeroU32 {
    NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN)
}

fn derive_key(secret: &str, salt: &[u8], n: u32) -> LessSafeKey {
    let mut key = [0u8; KEY_BYTES];
    pbkdf2::derive(
        pbkdf2::PBKDF2_HMAC_SHA256,
        rounds(n),
        salt,
        secret.as_bytes(),
        &mut key,
    );
    // AES_256_GCM takes exactly KEY_BYTES: this cannot fail.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("32-byte AES-256-GCM key"))
}

/// Encrypts `bundle` for the token secret `secret`, bound to the datastore key `key`.
pub fn seal(secret: &str, key: &str, bundle: &Bundle) -> Result<Value> {
    let rng = SystemRandom::new();
    let mut salt = [0u8; SALT_BYTES];
    let mut nonce = [0u8; NONCE_LEN];
    rng.fill(&mut salt).map_err(|_| BootstrapError::Random)?;
    rng.fill(&mut nonce).map_err(|_| BootstrapError::Random)?;
    let files: BTreeMap<&str, String> = bundle
        .files
        .iter()
        .map(|(path, data)| (path.as_str(), B64.encode(data)))
        .collect();
    let mut buf = serde_json::to_vec(&files).map_err(|_| BootstrapError::Seal)?;
    derive_key(secret, &salt, PBKDF2_ROUNDS)
        .seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(key.as_bytes()),
            &mut buf,
        )
        .map_err(|_| BootstrapError::Seal)?;
    serde_json::to_value(Sealed {
        format: FORMAT.into(),
        rounds: PBKDF2_ROUNDS,
        salt: B64.encode(salt),
        nonce: B64.encode(nonce),
        ciphertext: B64.encode(buf),
    })
    .map_err(|_| BootstrapError::Seal)
}

/// Decrypts a record sealed by [`seal`] for `secret` at datastore key `key`.
pub fn open(secret: &str, key: &str, record: &Value) -> Result<Bundle> {
    let malformed = |reason: &str| BootstrapError::Malformed {
        reason: reason.into(),
    };
    let sealed: Sealed = serde_json::from_value(record.clone())
        .map_err(|e| malformed(&format!("not a bootstrap record: {e}")))?;
    if sealed.format != FORMAT {
        return Err(malformed(&format!("unknown format {:?}", sealed.format)));
    }
    // Bounded so that a forged record cannot make a server spin for hours.
    if sealed.rounds == 0 || sealed.rounds > 10 * PBKDF2_ROUNDS {
        return Err(malformed("PBKDF2 rounds out of range"));
    }
    let decode = |what: &str, s: &str| {
        B64.decode(s)
            .map_err(|_| malformed(&format!("{what} is not base64")))
    };
    let salt = decode("salt", &sealed.salt)?;
    let nonce = decode("nonce", &sealed.nonce)?;
    let mut buf = decode("ciphertext", &sealed.ciphertext)?;
    let nonce = Nonce::try_assume_unique_for_key(&nonce).map_err(|_| malformed("bad nonce"))?;
    let plain = derive_key(secret, &salt, sealed.rounds)
        .open_in_place(nonce, Aad::from(key.as_bytes()), &mut buf)
        .map_err(|_| BootstrapError::WrongToken)?;
    let files: BTreeMap<String, String> =
        serde_json::from_slice(plain).map_err(|_| malformed("contents are not a file map"))?;
    let mut bundle = Bundle::default();
    for (path, data) in files {
        if !SHARED_FILES.contains(&path.as_str()) {
            return Err(malformed(&format!("unexpected file {path:?}")));
        }
        bundle.files.insert(path, decode("a file", &data)?);
    }
    Ok(bundle)
}

/// Reads the shared files present in `server_dir` (absent optional ones are skipped).
pub fn collect(server_dir: &Path) -> Result<Bundle> {
    let mut bundle = Bundle::default();
    for rel in SHARED_FILES {
        let path = server_dir.join(rel);
        match std::fs::read(&path) {
            Ok(data) => {
                bundle.files.insert(rel.to_string(), data);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(BootstrapError::Read { path, source }),
        }
    }
    Ok(bundle)
}

/// Writes the bundle's files into `server_dir` (0600, parents 0700). A file already there
/// with other contents is refused before anything is written: this data dir was set up
/// for another cluster.
pub fn install(server_dir: &Path, bundle: &Bundle) -> Result<()> {
    check_installable(server_dir, bundle)?;
    for (rel, data) in &bundle.files {
        let path = server_dir.join(rel);
        if std::fs::read(&path).ok().as_ref() != Some(data) {
            super::write_private_file(&path, data)?;
        }
    }
    Ok(())
}

/// Whether [`install`] would succeed: no file of `bundle` exists in `server_dir` with
/// other contents. Reads only.
pub fn check_installable(server_dir: &Path, bundle: &Bundle) -> Result<()> {
    for (rel, data) in &bundle.files {
        let path = server_dir.join(rel);
        match std::fs::read(&path) {
            Ok(existing) if existing != *data => {
                return Err(BootstrapError::Conflict {
                    path,
                    dir: server_dir.to_owned(),
                })
            }
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(source) => return Err(BootstrapError::Read { path, source }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "0123456789abcdef0123456789abcdef";

    fn bundle() -> Bundle {
        let mut b = Bundle::default();
        b.files.insert("tls/ca.crt".into(), b"CERT".to_vec());
        b.files.insert("tls/ca.key".into(), b"KEY\x00\xff".to_vec());
        b
    }

    #[test]
    fn sealed_bundle_opens_with_the_same_token_only() {
        let key = record_key(SECRET);
        let sealed = seal(SECRET, &key, &bundle()).unwrap();
        assert_eq!(open(SECRET, &key, &sealed).unwrap(), bundle());
        let err = open("another-secret-0123456789", &key, &sealed).unwrap_err();
        assert!(matches!(err, BootstrapError::WrongToken), "{err:?}");
        let text = sealed.to_string();
        assert!(!text.contains("CERT") && !text.contains(&B64.encode(b"CERT")));
    }

    #[test]
    fn tampered_or_moved_records_do_not_open() {
        let key = record_key(SECRET);
        let sealed = seal(SECRET, &key, &bundle()).unwrap();
        let mut flipped = sealed.clone();
        let mut ct = B64.decode(sealed["ciphertext"].as_str().unwrap()).unwrap();
        ct[0] ^= 1;
        flipped["ciphertext"] = Value::String(B64.encode(ct));
        assert!(matches!(
            open(SECRET, &key, &flipped),
            Err(BootstrapError::WrongToken)
        ));
        // Bound to its datastore key.
        assert!(matches!(
            open(SECRET, "/bootstrap/other", &sealed),
            Err(BootstrapError::WrongToken)
        ));
        let mut rounds = sealed.clone();
        rounds["rounds"] = Value::from(u32::MAX);
        assert!(matches!(
            open(SECRET, &key, &rounds),
            Err(BootstrapError::Malformed { .. })
        ));
        assert!(matches!(
            open(SECRET, &key, &serde_json::json!({"a": 1})),
            Err(BootstrapError::Malformed { .. })
        ));
    }

    #[test]
    fn record_key_depends_on_the_token_and_hides_it() {
        let key = record_key(SECRET);
        assert!(key.starts_with(KEY_PREFIX));
        assert_eq!(
            key,
            record_key(SECRET),
            "every server finds the same record"
        );
        assert_ne!(key, record_key("0123456789abcdef0123456789abcdeX"));
        assert!(!key.contains(SECRET));
    }

    #[test]
    fn install_writes_private_files_and_refuses_another_clusters_dir() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        install(dir.path(), &bundle()).unwrap();
        let ca = dir.path().join("tls/ca.key");
        assert_eq!(std::fs::read(&ca).unwrap(), b"KEY\x00\xff");
        let mode = std::fs::metadata(&ca).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert_eq!(collect(dir.path()).unwrap(), bundle());
        // Installing again is a no-op; another CA is refused and nothing changes.
        install(dir.path(), &bundle()).unwrap();
        let mut other = bundle();
        other.files.insert("tls/ca.crt".into(), b"OTHER".to_vec());
        other
            .files
            .insert("tls/service-account.key".into(), b"SA".to_vec());
        let err = install(dir.path(), &other).unwrap_err();
        assert!(matches!(err, BootstrapError::Conflict { .. }), "{err}");
        assert!(!dir.path().join("tls/service-account.key").exists());
    }
}
