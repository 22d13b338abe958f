//! TLS for orc: the cluster CA and its certificates, kubeconfigs, join tokens and the rustls configs built from them.

pub mod bootstrap;
mod ca;
mod kubeconfig;
pub mod node_credentials;
pub mod service_account;
mod token;

pub use ca::{
    expiry, renewal_due, NodeCertificates, Pki, ADMIN_GROUP, ADMIN_USER, KUBELET_CLIENT_USER,
    NODE_CERT_VALIDITY,
};
pub use kubeconfig::{admin_kubeconfig, kubeconfig_credentials, KubeconfigCredentials};
pub use token::{
    ca_hash, check_strength, load_or_create_token, read_token_file, rotate_token, JoinToken,
    MIN_SECRET_LEN,
};

use crate::api::identity::User;

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use rand::RngCore;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, RootCertStore};

/// Mode of every file this module writes: keys, certificates, tokens and kubeconfigs.
const PRIVATE_FILE_MODE: u32 = 0o600;
/// Mode of directories this module creates on the way to a private file.
const PRIVATE_DIR_MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("kubeconfig: {reason}")]
    ParseKubeconfig { reason: String },
    #[error("create directory {path}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("read {path}")]
    ReadFile { path: PathBuf, source: io::Error },
    #[error("write {path}")]
    WriteFile { path: PathBuf, source: io::Error },
    #[error("generate key pair for {what}")]
    GenerateKey {
        what: &'static str,
        source: rcgen::Error,
    },
    #[error("parse private key {path}: expected a pem private key written by orc")]
    ParseKeyFile { path: PathBuf, source: rcgen::Error },
    #[error("read pem of {what}")]
    ParsePem { what: String, source: io::Error },
    #[error("no certificate found in {what}")]
    NoCertificate { what: String },
    #[error("no private key found in {what}")]
    NoPrivateKey { what: String },
    #[error("parse certificate in {what}")]
    ParseCertificate {
        what: String,
        source: x509_parser::nom::Err<x509_parser::error::X509Error>,
    },
    #[error(
        "found {present} but not {missing}: restore {missing} from a backup, or remove {present} \
         to create a new ca (every node must then rejoin with the new token)"
    )]
    CaIncomplete { present: PathBuf, missing: PathBuf },
    #[error(
        "ca key {key} does not belong to ca certificate {cert}: restore the matching pair, or \
         remove both to create a new ca (every node must then rejoin with the new token)"
    )]
    CaKeyMismatch { cert: PathBuf, key: PathBuf },
    #[error(
        "ca certificate {path} has a subject orc cannot reproduce when signing: only a ca \
         created by orc is supported (remove ca.crt and ca.key to create one)"
    )]
    UnsupportedCaSubject { path: PathBuf },
    #[error("invalid tls san {name:?}: not an ip address or a dns name")]
    InvalidSan { name: String },
    #[error("a certificate common name must not be empty")]
    EmptyCommonName,
    #[error("client certificate for {common_name:?} asks for {count} organizations: at most 2 are supported")]
    TooManyOrganizations { common_name: String, count: usize },
    #[error("sign {what} certificate")]
    SignCertificate { what: String, source: rcgen::Error },
    #[error("add ca certificate to the tls trust store")]
    AddTrustAnchor { source: rustls::Error },
    #[error("build tls client certificate verifier")]
    BuildClientVerifier {
        source: rustls::server::VerifierBuilderError,
    },
    #[error("build tls server config")]
    BuildServerConfig { source: rustls::Error },
    #[error("build tls client config")]
    BuildClientConfig { source: rustls::Error },
    #[error("invalid join token: {reason}")]
    ParseToken { reason: &'static str },
    #[error(
        "invalid join token in {path}: {reason}: fix the file, or remove it to generate a new \
         token (every node must then rejoin with it)"
    )]
    ParseTokenFile { path: PathBuf, reason: &'static str },
    #[error(
        "the server's ca (sha256 {actual}) does not match the join token (made for ca sha256 \
         {expected}): check that the server address is right, and copy the current token from \
         `orc token` on that server"
    )]
    CaHashMismatch { expected: String, actual: String },
    #[error(
        "the join token has no ca hash, so the server's ca cannot be verified: use the full \
         token (K10…) printed by `orc token` on the server"
    )]
    TokenWithoutCaHash,
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Who a verified client certificate says its holder is, Kubernetes style:
/// the subject CN is the user name, each subject O is a group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
    /// The subject OU: on node certificates, the id of the node's password record they
    /// are bound to (see `Pki::issue_node_certificates`).
    pub credential: Option<String>,
}

/// Reads the identity out of a peer certificate. The certificate is not verified here:
/// call this only on a certificate rustls has already verified against the CA.
/// Returns `None` for unparsable certificates and certificates without a usable CN.
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?;
    if user.is_empty() {
        return None;
    }
    let groups = subject
        .iter_organization()
        .filter_map(|o| o.as_str().ok())
        .map(str::to_owned)
        .collect();
    let credential = subject
        .iter_organizational_unit()
        .next()
        .and_then(|ou| ou.as_str().ok())
        .map(str::to_owned);
    Some(Identity {
        user: user.to_owned(),
        groups,
        credential,
    })
}

/// A certificate and key that can be replaced while TLS configs use them (a rotated node
/// credential): new handshakes present the current pair. Serves as the client certificate
/// of the agent's API connections and as the kubelet's serving certificate.
#[derive(Debug, Clone)]
pub struct SharedCert(Arc<RwLock<Arc<CertifiedKey>>>);

impl SharedCert {
    pub fn new(cert_pem: &str, key_pem: &str) -> Result<SharedCert> {
        Ok(SharedCert(Arc::new(RwLock::new(certified_key(
            cert_pem, key_pem,
        )?))))
    }

    /// Presents `(cert_pem, key_pem)` from the next handshake on.
    pub fn replace(&self, cert_pem: &str, key_pem: &str) -> Result<()> {
        let key = certified_key(cert_pem, key_pem)?;
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = key;
        Ok(())
    }

    fn current(&self) -> Arc<CertifiedKey> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

fn certified_key(cert_pem: &str, key_pem: &str) -> Result<Arc<CertifiedKey>> {
    let certs = parse_certs(cert_pem, "certificate")?;
    let key = crypto_provider()
        .key_provider
        .load_private_key(parse_key(key_pem, "key")?)
        .map_err(|source| Error::BuildClientConfig { source })?;
    Ok(Arc::new(CertifiedKey::new(certs, key)))
}

impl rustls::client::ResolvesClientCert for SharedCert {
    fn resolve(
        &self,
        _root_hint_subjects: &[&[u8]],
        _sigschemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

impl rustls::server::ResolvesServerCert for SharedCert {
    fn resolve(&self, _client_hello: rustls::server::ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current())
    }
}

/// Like [`client_config_pinned`] with a client certificate, but presenting whatever `cert`
/// holds at each handshake.
pub fn client_config_rotating(ca_pem: &str, cert: &SharedCert) -> Result<Arc<ClientConfig>> {
    let roots = root_store(ca_pem, "pinned ca")?;
    let config = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::BuildClientConfig { source })?
        .with_root_certificates(roots)
        .with_client_cert_resolver(Arc::new(cert.clone()));
    Ok(Arc::new(config))
}

/// A TLS client config that trusts only the certificates in `ca_pem` (a PEM bundle) and,
/// given `(cert_pem, key_pem)`, presents that client certificate. No ALPN protocols are set:
/// a caller speaking HTTP/2 adds `h2` itself.
pub fn client_config_pinned(
    ca_pem: &str,
    client_cert: Option<(&str, &str)>,
) -> Result<Arc<ClientConfig>> {
    let roots = root_store(ca_pem, "pinned ca")?;
    let builder = ClientConfig::builder_with_provider(crypto_provider())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::BuildClientConfig { source })?
        .with_root_certificates(roots);
    let config = match client_cert {
        Some((cert_pem, key_pem)) => builder
            .with_client_auth_cert(
                parse_certs(cert_pem, "client certificate")?,
                parse_key(key_pem, "client key")?,
            )
            .map_err(|source| Error::BuildClientConfig { source })?,
        None => builder.with_no_client_auth(),
    };
    Ok(Arc::new(config))
}

/// A TLS client config that accepts ANY server certificate (the handshake signature is
/// still checked against the presented certificate). Only for fetching `/cacerts` before
/// the CA is known: the caller must check what it fetched against the join token's hash
/// and use [`client_config_pinned`] for everything else; and for the API server's
/// `https:` service and pod proxy, which upstream does not verify either (pods serve
/// certificates no CA of the cluster signed).
pub fn client_config_unverified() -> Result<Arc<ClientConfig>> {
    let provider = crypto_provider();
    let config = ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::BuildClientConfig { source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAnyServerCert(provider)))
        .with_no_client_auth();
    Ok(Arc::new(config))
}

/// The API server's client config towards the kubelet of node `node`: presents
/// `(cert_pem, key_pem)` (the kubelet-client identity) and accepts only that node's kubelet
/// serving certificate: issued by the cluster CA `ca_pem` for server authentication to
/// user `system:node:<node>` in group `system:nodes`. Whatever address the node reports,
/// anything else answering there (another node's kubelet, the API server itself) fails
/// the handshake.
pub fn kubelet_client_config(
    ca_pem: &str,
    cert_pem: &str,
    key_pem: &str,
    node: &str,
) -> Result<Arc<ClientConfig>> {
    let provider = crypto_provider();
    let verifier = KubeletServerVerifier {
        roots: root_store(ca_pem, "cluster ca")?,
        provider: provider.clone(),
        node: node.to_owned(),
    };
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::BuildClientConfig { source })?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(verifier))
        .with_client_auth_cert(
            parse_certs(cert_pem, "client certificate")?,
            parse_key(key_pem, "client key")?,
        )
        .map_err(|source| Error::BuildClientConfig { source })?;
    Ok(Arc::new(config))
}

/// The kubelet's server config: presents `serving` (the node's kubelet serving certificate,
/// rotated in place), and requires client certificates verified against the cluster CA
/// `ca_pem` (who may use the endpoint is the caller's check on the identity).
pub fn kubelet_server_config(
    ca_pem: &str,
    serving: &SharedCert,
) -> Result<Arc<rustls::ServerConfig>> {
    let provider = crypto_provider();
    let roots = Arc::new(root_store(ca_pem, "cluster ca")?);
    let verifier =
        rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider.clone())
            .build()
            .map_err(|source| Error::BuildClientVerifier { source })?;
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|source| Error::BuildServerConfig { source })?
        .with_client_cert_verifier(verifier)
        .with_cert_resolver(Arc::new(serving.clone()));
    Ok(Arc::new(config))
}

/// Whether a verified certificate's identity is the kubelet of `node`.
pub fn is_kubelet_of(identity: &Identity, node: &str) -> bool {
    identity
        .user
        .strip_prefix(crate::api::identity::NODE_USER_PREFIX)
        == Some(node)
        && identity
            .groups
            .iter()
            .any(|g| g == crate::api::identity::NODES_GROUP)
}

/// Verifies a kubelet's serving certificate: chain to the cluster CA with server-auth usage,
/// then the identity of the expected node (not a host name: kubelet certificates have none).
#[derive(Debug)]
struct KubeletServerVerifier {
    roots: RootCertStore,
    provider: Arc<CryptoProvider>,
    node: String,
}

impl rustls::client::danger::ServerCertVerifier for KubeletServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.roots,
            intermediates,
            now,
            self.provider.signature_verification_algorithms.all,
        )?;
        match identity_from_cert(end_entity) {
            Some(id) if is_kubelet_of(&id, &self.node) => {
                Ok(rustls::client::danger::ServerCertVerified::assertion())
            }
            other => Err(rustls::Error::General(format!(
                "the certificate is not the kubelet serving certificate of node {} (it names {:?})",
                self.node,
                other.map(|id| id.user).unwrap_or_default()
            ))),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[derive(Debug)]
struct AcceptAnyServerCert(Arc<CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for AcceptAnyServerCert {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// Writes `contents` to `path` with mode 0600, creating missing parent directories (0700).
/// The data goes to a temporary file in the same directory, created 0600, which is synced
/// and renamed over `path`: readers see the old or the new file, never a partial or
/// world-readable one.
pub fn write_private_file(path: &Path, contents: &[u8]) -> Result<()> {
    let write_error = |source| Error::WriteFile {
        path: path.to_owned(),
        source,
    };
    let file_name = path.file_name().ok_or_else(|| {
        write_error(io::Error::new(
            io::ErrorKind::InvalidInput,
            "path has no file name",
        ))
    })?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(PRIVATE_DIR_MODE)
        .create(dir)
        .map_err(|source| Error::CreateDir {
            path: dir.to_owned(),
            source,
        })?;

    let tmp = dir.join(format!(
        ".{}.tmp-{:08x}",
        file_name.to_string_lossy(),
        rand::rngs::OsRng.next_u32()
    ));
    let write = || -> io::Result<()> {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(PRIVATE_FILE_MODE)
            .open(&tmp)?;
        // The umask may have cleared bits of the requested mode; make it exact.
        file.set_permissions(fs::Permissions::from_mode(PRIVATE_FILE_MODE))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        // Make the rename itself durable (power loss on an SD card).
        File::open(dir)?.sync_all()
    };
    write().map_err(|source| {
        let _ = fs::remove_file(&tmp);
        write_error(source)
    })
}

/// The one crypto provider orc uses, passed explicitly (no process-wide default).
fn crypto_provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn parse_certs(pem: &str, what: &str) -> Result<Vec<CertificateDer<'static>>> {
    let certs = rustls_pemfile::certs(&mut pem.as_bytes())
        .collect::<io::Result<Vec<_>>>()
        .map_err(|source| Error::ParsePem {
            what: what.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(Error::NoCertificate {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}

fn parse_key(pem: &str, what: &str) -> Result<PrivateKeyDer<'static>> {
    rustls_pemfile::private_key(&mut pem.as_bytes())
        .map_err(|source| Error::ParsePem {
            what: what.to_owned(),
            source,
        })?
        .ok_or_else(|| Error::NoPrivateKey {
            what: what.to_owned(),
        })
}

fn root_store(ca_pem: &str, what: &str) -> Result<RootCertStore> {
    let mut roots = RootCertStore::empty();
    for cert in parse_certs(ca_pem, what)? {
        roots
            .add(cert)
            .map_err(|source| Error::AddTrustAnchor { source })?;
    }
    Ok(roots)
}

fn read_file(path: &Path) -> Result<Option<String>> {
    match fs::read_to_string(path) {
        Ok(s) => Ok(Some(s)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(Error::ReadFile {
            path: path.to_owned(),
            source,
        }),
    }
}

impl From<Identity> for User {
    fn from(id: Identity) -> User {
        User {
            name: id.user,
            groups: id.groups,
            ..Default::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_private_file_creates_parents_with_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("a/b/secret");
        write_private_file(&path, b"one").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"one");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(&dir.path().join("a/b")), 0o700);
    }

    #[test]
    fn write_private_file_replaces_and_tightens_an_existing_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("kubeconfig");
        fs::write(&path, b"old").unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        write_private_file(&path, b"new").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new");
        assert_eq!(mode(&path), 0o600);
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary file is left behind");
    }

    #[test]
    fn write_private_file_reports_the_path_on_failure() {
        let dir = tempfile::tempdir().unwrap();
        let blocker = dir.path().join("file");
        fs::write(&blocker, b"").unwrap();
        let err = write_private_file(&blocker.join("child"), b"x").unwrap_err();
        assert!(matches!(err, Error::CreateDir { .. }), "{err:?}");
        assert!(err.to_string().contains("file"), "{err}");
    }

    #[test]
    fn client_config_pinned_rejects_pem_without_certificates() {
        let err = client_config_pinned("not a pem", None).unwrap_err();
        assert!(matches!(err, Error::NoCertificate { .. }), "{err:?}");
    }
}
