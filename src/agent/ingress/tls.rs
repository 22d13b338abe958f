//! The ingress's certificates: TLS Secrets (`tls.crt`, `tls.key`) turned into rustls keys,
//! and the SNI resolver that picks one per handshake from the Ingress TLS sections (the
//! exact name, then a `*.` wildcard covering it, then a section without hosts), falling
//! back to a self-signed certificate for names no Ingress covers.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use base64::Engine;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

/// The name in the fallback certificate.
pub const FALLBACK_NAME: &str = "orc-ingress-default";

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("secret has no {0}")]
    MissingKey(&'static str),
    #[error("secret's {0} is not base64")]
    NotBase64(&'static str),
    #[error("tls.crt holds no PEM certificate")]
    NoCertificate,
    #[error("tls.key holds no PEM private key")]
    NoPrivateKey,
    #[error("tls.key is not a usable private key")]
    UnusableKey(#[source] rustls::Error),
    #[error("generate the fallback certificate")]
    Fallback(#[source] rcgen::Error),
}

/// The certificate and key of a `kubernetes.io/tls` Secret (its JSON form).
pub fn certified_key_from_secret(secret: &serde_json::Value) -> Result<CertifiedKey, TlsError> {
    let field = |key: &'static str| -> Result<Vec<u8>, TlsError> {
        let text = secret["data"][key]
            .as_str()
            .ok_or(TlsError::MissingKey(key))?;
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .map_err(|_| TlsError::NotBase64(key))
    };
    certified_key_from_pem(&field("tls.crt")?, &field("tls.key")?)
}

/// A rustls key from PEM certificate chain and private key.
pub fn certified_key_from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<CertifiedKey, TlsError> {
    let certs: Vec<_> = rustls_pemfile::certs(&mut &cert_pem[..])
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate);
    }
    let key = rustls_pemfile::private_key(&mut &key_pem[..])
        .ok()
        .flatten()
        .ok_or(TlsError::NoPrivateKey)?;
    let signer =
        rustls::crypto::ring::sign::any_supported_type(&key).map_err(TlsError::UnusableKey)?;
    Ok(CertifiedKey::new(certs, signer))
}

/// A self-signed certificate for [`FALLBACK_NAME`] (also its CN), served for unknown names.
pub fn fallback_key() -> Result<CertifiedKey, TlsError> {
    let mut params = rcgen::CertificateParams::new(vec![FALLBACK_NAME.to_string()])
        .map_err(TlsError::Fallback)?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, FALLBACK_NAME);
    let key = rcgen::KeyPair::generate().map_err(TlsError::Fallback)?;
    let cert = params.self_signed(&key).map_err(TlsError::Fallback)?;
    certified_key_from_pem(cert.pem().as_bytes(), key.serialize_pem().as_bytes())
}

/// Which certificate serves which name: built from the Ingress TLS sections and the
/// Secrets they name.
#[derive(Debug, Default, Clone)]
pub struct CertTable {
    /// By lowercase host (`*.example.com` for wildcards).
    by_host: BTreeMap<String, Arc<CertifiedKey>>,
    /// The certificate of a TLS section without hosts, if any.
    unnamed: Option<Arc<CertifiedKey>>,
}

impl CertTable {
    /// Serves `key` for `hosts` (none: for every name no other section covers). The
    /// first section to name a host keeps it.
    pub fn add(&mut self, hosts: &[String], key: Arc<CertifiedKey>) {
        if hosts.is_empty() {
            self.unnamed.get_or_insert(key);
            return;
        }
        for host in hosts {
            self.by_host
                .entry(host.to_ascii_lowercase())
                .or_insert_with(|| key.clone());
        }
    }

    /// The certificate for a handshake naming `name`.
    pub fn lookup(&self, name: Option<&str>) -> Option<Arc<CertifiedKey>> {
        if let Some(name) = name.map(str::to_ascii_lowercase) {
            if let Some(key) = self.by_host.get(&name) {
                return Some(key.clone());
            }
            if let Some((_, rest)) = name.split_once('.') {
                if let Some(key) = self.by_host.get(&format!("*.{rest}")) {
                    return Some(key.clone());
                }
            }
        }
        self.unnamed.clone()
    }
}

/// The rustls resolver: the current [`CertTable`], else the fallback certificate.
#[derive(Debug)]
pub struct SniResolver {
    table: RwLock<Arc<CertTable>>,
    fallback: Arc<CertifiedKey>,
}

impl SniResolver {
    pub fn new(fallback: CertifiedKey) -> SniResolver {
        SniResolver {
            table: RwLock::new(Arc::new(CertTable::default())),
            fallback: Arc::new(fallback),
        }
    }

    pub fn replace(&self, table: CertTable) {
        *self.table.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(table);
    }
}

impl ResolvesServerCert for SniResolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let table = self.table.read().unwrap_or_else(|e| e.into_inner()).clone();
        table
            .lookup(hello.server_name())
            .or_else(|| Some(self.fallback.clone()))
    }
}

/// The TLS server config of the HTTPS listener: certificates by SNI, HTTP/2 and
/// HTTP/1.1 offered by ALPN.
pub fn server_config(resolver: Arc<SniResolver>) -> Arc<rustls::ServerConfig> {
    let mut config = rustls::ServerConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .expect("ring supports the default protocol versions")
    .with_no_client_auth()
    .with_cert_resolver(resolver);
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Arc::new(config)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key_for(name: &str) -> Arc<CertifiedKey> {
        let generated = rcgen::generate_simple_self_signed(vec![name.to_string()]).unwrap();
        Arc::new(
            certified_key_from_pem(
                generated.cert.pem().as_bytes(),
                generated.key_pair.serialize_pem().as_bytes(),
            )
            .unwrap(),
        )
    }

    #[test]
    fn names_pick_exact_then_wildcard_then_unnamed_certificates() {
        let (a, wild, unnamed) = (
            key_for("a.example.com"),
            key_for("*.example.com"),
            key_for("x"),
        );
        let mut table = CertTable::default();
        table.add(&["a.example.com".into()], a.clone());
        table.add(&["*.example.com".into()], wild.clone());
        assert!(table.lookup(Some("other.org")).is_none());
        table.add(&[], unnamed.clone());
        let same =
            |x: Option<Arc<CertifiedKey>>, y: &Arc<CertifiedKey>| Arc::ptr_eq(&x.unwrap(), y);
        assert!(same(table.lookup(Some("A.example.com")), &a));
        assert!(same(table.lookup(Some("b.example.com")), &wild));
        assert!(same(table.lookup(Some("a.b.example.com")), &unnamed));
        assert!(same(table.lookup(None), &unnamed));
    }

    #[test]
    fn secrets_give_keys_and_bad_secrets_say_what_is_wrong() {
        let generated = rcgen::generate_simple_self_signed(vec!["a.com".to_string()]).unwrap();
        let b64 = |s: String| base64::engine::general_purpose::STANDARD.encode(s);
        let secret = serde_json::json!({"data": {
            "tls.crt": b64(generated.cert.pem()), "tls.key": b64(generated.key_pair.serialize_pem())}});
        assert!(certified_key_from_secret(&secret).is_ok());
        let no_key = serde_json::json!({"data": {"tls.crt": b64(generated.cert.pem())}});
        assert!(matches!(
            certified_key_from_secret(&no_key),
            Err(TlsError::MissingKey("tls.key"))
        ));
        let garbage =
            serde_json::json!({"data": {"tls.crt": b64("x".into()), "tls.key": b64("y".into())}});
        assert!(matches!(
            certified_key_from_secret(&garbage),
            Err(TlsError::NoCertificate)
        ));
        assert!(fallback_key().is_ok());
    }
}
