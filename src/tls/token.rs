//! The join token, in k3s format: `K10<sha256 hex of the CA bundle>::node:<secret>`.

use std::fmt;
use std::path::Path;
use std::str::FromStr;

use rand::RngCore;
use sha2::{Digest, Sha256};

use super::{read_file, write_private_file, Error, Result};

/// Prefix of a full token: k3s token format version 1, hash of the CA follows.
const TOKEN_PREFIX: &str = "K10";
/// Separates the CA hash from the credentials.
const CREDENTIALS_SEPARATOR: &str = "::";
/// The user part orc writes; k3s server tokens (`server`) are accepted too.
const NODE_USER: &str = "node";
const ACCEPTED_USERS: [&str; 2] = [NODE_USER, "server"];
/// Shortest secret a server accepts from `--token`: 16 characters (a generated one has 32
/// hex characters, 128 bits); shorter ones can be guessed.
pub const MIN_SECRET_LEN: usize = 16;
/// Random bytes in a generated secret (32 hex characters).
const SECRET_BYTES: usize = 16;
const SHA256_HEX_LEN: usize = 64;

/// A join token. `Display` renders the token itself (a secret: print it only on purpose);
/// `Debug` redacts the secret so a token never leaks into logs.
#[derive(Clone, PartialEq, Eq)]
pub struct JoinToken {
    /// Lowercase sha256 hex of the server's CA bundle PEM, if the token carries it.
    pub ca_hash: Option<String>,
    pub secret: String,
}

/// The sha256 hex of the CA bundle as served (the exact PEM bytes of `/cacerts`).
pub fn ca_hash(ca_pem: &str) -> String {
    hex::encode(Sha256::digest(ca_pem.as_bytes()))
}

impl JoinToken {
    /// Checks that `ca_pem`, as fetched from the server, is the CA this token was made for.
    /// A token without a CA hash fails: skipping the check is the caller's explicit choice.
    pub fn verify_ca(&self, ca_pem: &str) -> Result<()> {
        let expected = self.ca_hash.as_ref().ok_or(Error::TokenWithoutCaHash)?;
        let actual = ca_hash(ca_pem);
        if expected.eq_ignore_ascii_case(&actual) {
            Ok(())
        } else {
            Err(Error::CaHashMismatch {
                expected: expected.clone(),
                actual,
            })
        }
    }
}

impl fmt::Display for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.ca_hash {
            Some(hash) => write!(
                f,
                "{TOKEN_PREFIX}{hash}{CREDENTIALS_SEPARATOR}{NODE_USER}:{}",
                self.secret
            ),
            None => f.write_str(&self.secret),
        }
    }
}

impl fmt::Debug for JoinToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinToken")
            .field("ca_hash", &self.ca_hash)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl FromStr for JoinToken {
    type Err = Error;

    /// Accepts `K10<hash>::node:<secret>` (or `::server:`) and a bare secret.
    /// Errors never echo the input: it is a secret.
    fn from_str(s: &str) -> Result<Self> {
        parse_token(s).map_err(|reason| Error::ParseToken { reason })
    }
}

fn parse_token(s: &str) -> Result<JoinToken, &'static str> {
    let s = s.trim();
    let full = s
        .strip_prefix(TOKEN_PREFIX)
        .and_then(|rest| rest.split_once(CREDENTIALS_SEPARATOR));
    let Some((hash, credentials)) = full else {
        if s.contains(CREDENTIALS_SEPARATOR) {
            return Err("it contains '::' but does not start with K10");
        }
        check_secret(s)?;
        return Ok(JoinToken {
            ca_hash: None,
            secret: s.to_owned(),
        });
    };
    if hash.len() != SHA256_HEX_LEN || !hash.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err("the ca hash after K10 must be 64 hex characters");
    }
    let (user, secret) = credentials
        .split_once(':')
        .ok_or("expected node:<secret> after '::'")?;
    if !ACCEPTED_USERS.contains(&user) {
        return Err("expected node:<secret> after '::'");
    }
    check_secret(secret)?;
    Ok(JoinToken {
        ca_hash: Some(hash.to_ascii_lowercase()),
        secret: secret.to_owned(),
    })
}

fn check_secret(secret: &str) -> Result<(), &'static str> {
    if secret.is_empty() {
        return Err("the secret is empty");
    }
    if secret.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("the secret contains whitespace or control characters");
    }
    Ok(())
}

/// Whether `token` (a bare secret or a full token) has a secret long enough for a server.
/// Errors never echo the token.
pub fn check_strength(token: &str) -> Result<()> {
    let parsed: JoinToken = token.parse()?;
    if parsed.secret.chars().count() < MIN_SECRET_LEN {
        return Err(Error::ParseToken {
            reason: "the secret is shorter than 16 characters",
        });
    }
    Ok(())
}

/// Replaces the join token in `path` by `new_secret` (a bare secret or a full token for
/// `ca_pem`, at least 16 characters) or a random one. Returns the new token.
pub fn rotate_token(path: &Path, ca_pem: &str, new_secret: Option<&str>) -> Result<JoinToken> {
    let secret = match new_secret {
        Some(requested) => {
            check_strength(requested)?;
            let requested: JoinToken = requested.parse()?;
            if requested.ca_hash.is_some() {
                requested.verify_ca(ca_pem)?;
            }
            requested.secret
        }
        None => random_secret(),
    };
    let token = JoinToken {
        ca_hash: Some(ca_hash(ca_pem)),
        secret,
    };
    write_private_file(path, format!("{token}\n").as_bytes())?;
    Ok(token)
}

/// Reads the secret of the token file at `path` (what a running server reloads after
/// `orc token rotate`).
pub fn read_token_file(path: &Path) -> Result<Option<JoinToken>> {
    let Some(contents) = read_file(path)? else {
        return Ok(None);
    };
    parse_token(&contents)
        .map(Some)
        .map_err(|reason| Error::ParseTokenFile {
            path: path.to_owned(),
            reason,
        })
}

/// Loads the server's join token from `path`, creating it on first start (random 32-hex
/// secret, file mode 0600). With `requested_secret` (a bare secret or a full token, e.g. from
/// `--token`), that secret is used and persisted; a full token must match `ca_pem`.
/// The file holds the full token for `ca_pem` and is rewritten only when that changes.
pub fn load_or_create_token(
    path: &Path,
    ca_pem: &str,
    requested_secret: Option<&str>,
) -> Result<JoinToken> {
    let existing = read_file(path)?;
    let secret = match (requested_secret, &existing) {
        (Some(requested), _) => {
            let requested: JoinToken = requested.parse()?;
            if requested.ca_hash.is_some() {
                requested.verify_ca(ca_pem)?;
            }
            requested.secret
        }
        (None, Some(contents)) => {
            parse_token(contents)
                .map_err(|reason| Error::ParseTokenFile {
                    path: path.to_owned(),
                    reason,
                })?
                .secret
        }
        (None, None) => random_secret(),
    };
    let token = JoinToken {
        ca_hash: Some(ca_hash(ca_pem)),
        secret,
    };
    let rendered = format!("{token}\n");
    if existing.as_deref() != Some(rendered.as_str()) {
        write_private_file(path, rendered.as_bytes())?;
    }
    Ok(token)
}

fn random_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    const CA: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    #[test]
    fn ca_hash_is_sha256_hex_of_the_pem_bytes() {
        // sha256("abc")
        assert_eq!(
            ca_hash("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn full_token_round_trips() {
        let token = JoinToken {
            ca_hash: Some(ca_hash(CA)),
            secret: "s3cret".into(),
        };
        let text = token.to_string();
        assert_eq!(text, format!("K10{}::node:s3cret", ca_hash(CA)));
        assert_eq!(text.parse::<JoinToken>().unwrap(), token);
    }

    #[test]
    fn bare_secret_parses_without_ca_hash() {
        let token: JoinToken = "  abc123\n".parse().unwrap();
        assert_eq!(token.ca_hash, None);
        assert_eq!(token.secret, "abc123");
        assert_eq!(token.to_string(), "abc123");
    }

    #[test]
    fn k3s_server_tokens_and_uppercase_hashes_are_accepted() {
        let hash = ca_hash(CA).to_ascii_uppercase();
        let token: JoinToken = format!("K10{hash}::server:pw").parse().unwrap();
        assert_eq!(token.ca_hash, Some(ca_hash(CA)));
        assert_eq!(token.secret, "pw");
    }

    #[test]
    fn malformed_tokens_are_rejected_without_echoing_them() {
        let hash = ca_hash(CA);
        for bad in [
            String::new(),
            "   ".into(),
            "K10abc::node:hunter2".into(),
            format!("K10{hash}::node:"),
            format!("K10{hash}::hunter2"),
            format!("K10{hash}::admin:hunter2"),
            format!("K10{}::node:hunter2", "z".repeat(64)),
            "abc::node:hunter2".into(),
            "hunter 2".into(),
        ] {
            let err = bad.parse::<JoinToken>().unwrap_err();
            assert!(matches!(err, Error::ParseToken { .. }), "{bad:?}: {err:?}");
            assert!(!err.to_string().contains("hunter2"), "{err}");
        }
    }

    #[test]
    fn debug_redacts_the_secret() {
        let token = JoinToken {
            ca_hash: Some(ca_hash(CA)),
            secret: "hunter2".into(),
        };
        let debug = format!("{token:?}");
        assert!(!debug.contains("hunter2"), "{debug}");
        assert!(debug.contains("<redacted>"), "{debug}");
    }

    #[test]
    fn verify_ca_accepts_the_right_ca_and_explains_a_wrong_one() {
        let token = JoinToken {
            ca_hash: Some(ca_hash(CA)),
            secret: "s".into(),
        };
        token.verify_ca(CA).unwrap();
        let err = token.verify_ca("another ca").unwrap_err();
        assert!(matches!(err, Error::CaHashMismatch { .. }), "{err:?}");
        let msg = err.to_string();
        assert!(msg.contains("does not match"), "{msg}");
        assert!(msg.contains("orc token"), "{msg}");

        let bare = JoinToken {
            ca_hash: None,
            secret: "s".into(),
        };
        assert!(matches!(
            bare.verify_ca(CA).unwrap_err(),
            Error::TokenWithoutCaHash
        ));
    }

    #[test]
    fn token_is_created_once_and_reused_after_restart() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server/token");
        let first = load_or_create_token(&path, CA, None).unwrap();
        assert_eq!(first.secret.len(), 32);
        assert!(first.secret.bytes().all(|b| b.is_ascii_hexdigit()));
        assert_eq!(first.ca_hash, Some(ca_hash(CA)));
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read_to_string(&path).unwrap(), format!("{first}\n"));

        let again = load_or_create_token(&path, CA, None).unwrap();
        assert_eq!(again, first);
    }

    #[test]
    fn requested_secret_is_used_and_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        load_or_create_token(&path, CA, None).unwrap();
        let chosen = load_or_create_token(&path, CA, Some("mysecret")).unwrap();
        assert_eq!(chosen.secret, "mysecret");
        let after_restart = load_or_create_token(&path, CA, None).unwrap();
        assert_eq!(after_restart, chosen);

        let full = format!("K10{}::node:other", ca_hash(CA));
        let from_full = load_or_create_token(&path, CA, Some(&full)).unwrap();
        assert_eq!(from_full.secret, "other");
    }

    #[test]
    fn requested_full_token_for_another_ca_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let foreign = format!("K10{}::node:s", ca_hash("another ca"));
        let err = load_or_create_token(&path, CA, Some(&foreign)).unwrap_err();
        assert!(matches!(err, Error::CaHashMismatch { .. }), "{err:?}");
        assert!(!path.exists());
    }

    #[test]
    fn token_file_follows_a_new_ca_but_keeps_its_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = load_or_create_token(&path, CA, None).unwrap();
        let rotated = load_or_create_token(&path, "new ca", None).unwrap();
        assert_eq!(rotated.secret, first.secret);
        assert_eq!(rotated.ca_hash, Some(ca_hash("new ca")));
    }

    #[test]
    fn short_secrets_are_too_weak_whatever_the_form() {
        assert!(check_strength("a").is_err());
        assert!(check_strength("0123456789abcde").is_err());
        assert!(check_strength(&format!("K10{}::node:short", ca_hash(CA))).is_err());
        assert!(check_strength("0123456789abcdef").is_ok());
        let err = check_strength("hunter2").unwrap_err();
        assert!(!err.to_string().contains("hunter2"), "{err}");
    }

    #[test]
    fn rotation_writes_a_new_secret_for_the_same_ca() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        let first = load_or_create_token(&path, CA, None).unwrap();
        let rotated = rotate_token(&path, CA, None).unwrap();
        assert_ne!(rotated.secret, first.secret);
        assert_eq!(rotated.ca_hash, first.ca_hash);
        assert_eq!(read_token_file(&path).unwrap(), Some(rotated.clone()));
        assert_eq!(load_or_create_token(&path, CA, None).unwrap(), rotated);
        let chosen = rotate_token(&path, CA, Some("chosen-secret-0123")).unwrap();
        assert_eq!(chosen.secret, "chosen-secret-0123");
        assert!(rotate_token(&path, CA, Some("short")).is_err());
        assert_eq!(read_token_file(&path).unwrap(), Some(chosen));
    }

    #[test]
    fn corrupt_token_file_names_the_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        fs::write(&path, "K10nothex::node:x\n").unwrap();
        let err = load_or_create_token(&path, CA, None).unwrap_err();
        assert!(matches!(err, Error::ParseTokenFile { .. }), "{err:?}");
        assert!(err.to_string().contains("token"), "{err}");
    }
}
