//! Service-account tokens: the ES256 signing key kept next to the CA
//! (`service-account.key`) and the JWTs (JWS compact form) signed and verified with it.
//! Signing and verifying are pure; only `load_or_create` touches the disk.

pub mod claims;

use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde::Serialize;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// The key file, in the server's TLS directory.
pub const SIGNING_KEY_FILE: &str = "service-account.key";
/// The one signing algorithm orc issues and accepts.
pub const ALGORITHM: &str = "ES256";
/// Longest token looked at: anything longer is refused before any parsing.
pub const MAX_TOKEN_LEN: usize = 16 * 1024;
/// DER of a P-256 `SubjectPublicKeyInfo` up to the uncompressed point (what Go's
/// `x509.MarshalPKIXPublicKey` writes before the 65 point bytes).
const P256_SPKI_PREFIX: [u8; 26] = [
    0x30, 0x59, 0x30, 0x13, 0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a,
    0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00,
];
const PEM_LABEL: &str = "PRIVATE KEY";

#[derive(Debug, thiserror::Error)]
pub enum SigningKeyError {
    #[error("read service-account signing key {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error(
        "service-account signing key {path} is not a pkcs#8 ecdsa p-256 key: restore it from a \
         backup, or remove it to create a new one (service-account tokens issued so far stop \
         working)"
    )]
    Parse { path: PathBuf },
    #[error("generate the service-account signing key")]
    Generate,
    #[error("write the service-account signing key")]
    Write(#[source] super::Error),
}

/// Why a token is not a valid JWT signed by this key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("token is larger than {MAX_TOKEN_LEN} bytes")]
    TooLarge,
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsupported signing algorithm {0:?}")]
    Algorithm(String),
    #[error("token is signed by an unknown key")]
    UnknownKey,
    #[error("invalid signature")]
    Signature,
    #[error("sign token")]
    Sign,
}

/// The server's ECDSA P-256 key for service-account tokens, with its key id
/// (base64url of the SHA-256 of its DER public key, as upstream). `Debug` shows no key.
pub struct SigningKey {
    pair: EcdsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl SigningKey {
    /// A new random key and its PKCS#8 PEM.
    pub fn generate() -> Result<(SigningKey, String), SigningKeyError> {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .map_err(|_| SigningKeyError::Generate)?;
        let key = SigningKey::from_pkcs8(pkcs8.as_ref()).ok_or(SigningKeyError::Generate)?;
        Ok((key, pem_encode(pkcs8.as_ref())))
    }

    /// The key of a PKCS#8 PEM (`None` if it is not an ECDSA P-256 key).
    pub fn from_pem(pem: &str) -> Option<SigningKey> {
        match rustls_pemfile::private_key(&mut pem.as_bytes()).ok()?? {
            rustls::pki_types::PrivateKeyDer::Pkcs8(der) => {
                SigningKey::from_pkcs8(der.secret_pkcs8_der())
            }
            _ => None,
        }
    }

    fn from_pkcs8(der: &[u8]) -> Option<SigningKey> {
        let rng = SystemRandom::new();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, der, &rng).ok()?;
        let kid = URL_SAFE_NO_PAD.encode(Sha256::digest(spki_der(pair.public_key().as_ref())));
        Some(SigningKey { pair, kid, rng })
    }

    /// The key in `tls_dir/service-account.key`, created (mode 0600) on first start.
    pub fn load_or_create(tls_dir: &Path) -> Result<SigningKey, SigningKeyError> {
        let path = tls_dir.join(SIGNING_KEY_FILE);
        match std::fs::read_to_string(&path) {
            Ok(pem) => SigningKey::from_pem(&pem).ok_or(SigningKeyError::Parse { path }),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let (key, pem) = SigningKey::generate()?;
                super::write_private_file(&path, pem.as_bytes()).map_err(SigningKeyError::Write)?;
                Ok(key)
            }
            Err(source) => Err(SigningKeyError::Read { path, source }),
        }
    }

    pub fn key_id(&self) -> &str {
        &self.kid
    }

    /// `claims` signed as a compact JWS with header `{"alg":"ES256","kid":KID}`.
    pub fn sign<T: Serialize>(&self, claims: &T) -> Result<String, JwtError> {
        let header = json!({"alg": ALGORITHM, "kid": self.kid});
        let header = serde_json::to_vec(&header).map_err(|_| JwtError::Sign)?;
        let payload = serde_json::to_vec(claims).map_err(|_| JwtError::Sign)?;
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header),
            URL_SAFE_NO_PAD.encode(payload)
        );
        let signature = self
            .pair
            .sign(&self.rng, signing_input.as_bytes())
            .map_err(|_| JwtError::Sign)?;
        Ok(format!(
            "{signing_input}.{}",
            URL_SAFE_NO_PAD.encode(signature.as_ref())
        ))
    }

    /// The payload of `token` once its header names ES256 (and this key, when it names
    /// one) and its signature verifies. Claims are not looked at.
    pub fn verify(&self, token: &str) -> Result<Value, JwtError> {
        let parts = split(token)?;
        let header: Value = decode_json(parts.header, "header")?;
        match header["alg"].as_str() {
            Some(ALGORITHM) => {}
            other => return Err(JwtError::Algorithm(other.unwrap_or("").to_string())),
        }
        if header
            .get("kid")
            .is_some_and(|kid| kid.as_str() != Some(self.kid.as_str()))
        {
            return Err(JwtError::UnknownKey);
        }
        let signature = URL_SAFE_NO_PAD
            .decode(parts.signature)
            .map_err(|_| JwtError::Malformed("signature is not base64url"))?;
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, self.pair.public_key().as_ref())
            .verify(parts.signing_input.as_bytes(), &signature)
            .map_err(|_| JwtError::Signature)?;
        decode_json(parts.payload, "payload")
    }

    /// The public key as a JWK (RFC 7517), as `/openid/v1/jwks` lists it.
    pub fn jwk(&self) -> Value {
        let point = self.pair.public_key().as_ref();
        // Uncompressed point: 0x04 || x (32 bytes) || y (32 bytes).
        let (x, y) = point[1..].split_at(32);
        json!({
            "use": "sig",
            "kty": "EC",
            "kid": self.kid,
            "crv": "P-256",
            "alg": ALGORITHM,
            "x": URL_SAFE_NO_PAD.encode(x),
            "y": URL_SAFE_NO_PAD.encode(y),
        })
    }
}

/// Whether `token` has the shape of a JWS compact token (three dot-separated parts).
pub fn looks_like_jwt(token: &str) -> bool {
    token.len() <= MAX_TOKEN_LEN && token.split('.').count() == 3
}

/// The payload of `token` WITHOUT verifying anything: only to learn which issuer it
/// claims, so that tokens of other issuers are left to other authenticators.
pub fn unverified_payload(token: &str) -> Result<Value, JwtError> {
    decode_json(split(token)?.payload, "payload")
}

struct Parts<'a> {
    header: &'a str,
    payload: &'a str,
    signature: &'a str,
    signing_input: &'a str,
}

fn split(token: &str) -> Result<Parts<'_>, JwtError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(JwtError::TooLarge);
    }
    let (signing_input, signature) = token
        .rsplit_once('.')
        .ok_or(JwtError::Malformed("not three dot-separated parts"))?;
    let (header, payload) = signing_input
        .split_once('.')
        .filter(|(_, payload)| !payload.contains('.'))
        .ok_or(JwtError::Malformed("not three dot-separated parts"))?;
    Ok(Parts {
        header,
        payload,
        signature,
        signing_input,
    })
}

fn decode_json(part: &str, what: &'static str) -> Result<Value, JwtError> {
    let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|_| {
        JwtError::Malformed(if what == "header" {
            "header is not base64url"
        } else {
            "payload is not base64url"
        })
    })?;
    let value: Value = serde_json::from_slice(&bytes).map_err(|_| {
        JwtError::Malformed(if what == "header" {
            "header is not json"
        } else {
            "payload is not json"
        })
    })?;
    if !value.is_object() {
        return Err(JwtError::Malformed("not a json object"));
    }
    Ok(value)
}

/// The DER `SubjectPublicKeyInfo` of an uncompressed P-256 point.
fn spki_der(point: &[u8]) -> Vec<u8> {
    let mut der = P256_SPKI_PREFIX.to_vec();
    der.extend_from_slice(point);
    der
}

fn pem_encode(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut pem = format!("-----BEGIN {PEM_LABEL}-----\n");
    for line in b64.as_bytes().chunks(64) {
        pem.push_str(std::str::from_utf8(line).unwrap_or_default());
        pem.push('\n');
    }
    pem.push_str(&format!("-----END {PEM_LABEL}-----\n"));
    pem
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> SigningKey {
        SigningKey::generate().expect("generate").0
    }

    fn forge(header: &Value, payload: &Value, signature: &[u8]) -> String {
        format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(header).unwrap()),
            URL_SAFE_NO_PAD.encode(serde_json::to_vec(payload).unwrap()),
            URL_SAFE_NO_PAD.encode(signature)
        )
    }

    #[test]
    fn signed_tokens_verify_and_carry_the_key_id() {
        let key = key();
        let token = key.sign(&json!({"sub": "x", "n": 1})).expect("sign");
        assert!(looks_like_jwt(&token));
        assert_eq!(
            key.verify(&token).expect("verify"),
            json!({"sub": "x", "n": 1})
        );
        let header: Value = decode_json(token.split('.').next().unwrap(), "header").unwrap();
        assert_eq!(header, json!({"alg": "ES256", "kid": key.key_id()}));
        // Key id: base64url(sha256(DER SubjectPublicKeyInfo)), 32 bytes → 43 chars.
        assert_eq!(key.key_id().len(), 43);
    }

    #[test]
    fn a_changed_payload_or_another_keys_signature_is_refused() {
        let key = key();
        let token = key.sign(&json!({"sub": "a"})).unwrap();
        let parts: Vec<&str> = token.split('.').collect();
        let other_payload = URL_SAFE_NO_PAD.encode(br#"{"sub":"admin"}"#);
        let tampered = format!("{}.{other_payload}.{}", parts[0], parts[2]);
        assert_eq!(key.verify(&tampered), Err(JwtError::Signature));
        let other = SigningKey::generate().unwrap().0;
        let foreign = other.sign(&json!({"sub": "a"})).unwrap();
        assert_eq!(key.verify(&foreign), Err(JwtError::UnknownKey));
        // Without a kid the signature still decides.
        let no_kid = forge(&json!({"alg": "ES256"}), &json!({"sub": "a"}), &[0u8; 64]);
        assert_eq!(key.verify(&no_kid), Err(JwtError::Signature));
    }

    #[test]
    fn other_algorithms_and_malformed_tokens_are_refused() {
        let key = key();
        let none = forge(&json!({"alg": "none"}), &json!({"sub": "a"}), b"");
        assert_eq!(key.verify(&none), Err(JwtError::Algorithm("none".into())));
        let hs = forge(&json!({"alg": "HS256"}), &json!({"sub": "a"}), b"sig");
        assert_eq!(key.verify(&hs), Err(JwtError::Algorithm("HS256".into())));
        assert!(matches!(key.verify("a.b"), Err(JwtError::Malformed(_))));
        assert!(matches!(key.verify("a.b.c.d"), Err(JwtError::Malformed(_))));
        assert!(matches!(
            key.verify("!!.??.**"),
            Err(JwtError::Malformed(_))
        ));
        let huge = "a".repeat(MAX_TOKEN_LEN + 1);
        assert_eq!(key.verify(&huge), Err(JwtError::TooLarge));
        assert!(!looks_like_jwt("K10abc::node:secret"));
    }

    #[test]
    fn the_jwk_holds_the_public_point() {
        let key = key();
        let jwk = key.jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ES256");
        assert_eq!(jwk["use"], "sig");
        assert_eq!(jwk["kid"], key.key_id());
        let x = URL_SAFE_NO_PAD.decode(jwk["x"].as_str().unwrap()).unwrap();
        let y = URL_SAFE_NO_PAD.decode(jwk["y"].as_str().unwrap()).unwrap();
        let mut point = vec![4u8];
        point.extend(x);
        point.extend(y);
        assert_eq!(point, key.pair.public_key().as_ref());
    }

    #[test]
    fn the_key_is_created_once_with_mode_0600_and_reloaded() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let first = SigningKey::load_or_create(dir.path()).expect("create");
        let path = dir.path().join(SIGNING_KEY_FILE);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let again = SigningKey::load_or_create(dir.path()).expect("load");
        assert_eq!(first.key_id(), again.key_id());
        let token = first.sign(&json!({"a": 1})).unwrap();
        assert!(again.verify(&token).is_ok());
        std::fs::write(&path, "garbage").unwrap();
        let e = SigningKey::load_or_create(dir.path()).unwrap_err();
        assert!(matches!(e, SigningKeyError::Parse { .. }), "{e}");
    }
}
