//! The cluster CA and the certificates it signs: HTTPS serving, admin and client certificates.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use rand::RngCore;
use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, DnValue,
    ExtendedKeyUsagePurpose, IsCa, KeyIdMethod, KeyPair, KeyUsagePurpose, SanType, SerialNumber,
};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::ServerConfig;
use tracing::warn;
use x509_parser::der_parser::asn1_rs::Tag;
use x509_parser::extensions::ParsedExtension;
use x509_parser::x509::X509Name;

use super::{
    crypto_provider, parse_certs, parse_key, read_file, root_store, write_private_file, Error,
    Result,
};

/// User and group of the admin client certificate (full access through `system:masters`).
pub const ADMIN_USER: &str = "system:admin";
/// The user the API server presents to kubelets (logs, exec, attach), as kubeadm names it.
/// It is in no group: on the API itself it may do nothing.
pub const KUBELET_CLIENT_USER: &str = "kube-apiserver-kubelet-client";
pub use crate::api::identity::ADMIN_GROUP;

const CA_CERT_FILE: &str = "ca.crt";
const CA_KEY_FILE: &str = "ca.key";
const SERVING_CERT_FILE: &str = "serving.crt";
const SERVING_KEY_FILE: &str = "serving.key";
const ADMIN_CERT_FILE: &str = "admin.crt";
const ADMIN_KEY_FILE: &str = "admin.key";

const CA_COMMON_NAME_PREFIX: &str = "orc-server-ca@";
const SERVING_COMMON_NAME: &str = "orc";
/// Names the serving certificate always carries, whatever `--tls-san` says.
const DEFAULT_SANS: [&str; 6] = [
    "localhost",
    "127.0.0.1",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
];

const DAY: Duration = Duration::from_secs(24 * 60 * 60);
const CA_VALIDITY: Duration = Duration::from_secs(10 * 365 * 24 * 60 * 60);
const LEAF_VALIDITY: Duration = Duration::from_secs(365 * 24 * 60 * 60);
/// Default lifetime of node credentials (client and kubelet serving certificates). The agent
/// renews them when two thirds have passed (after 20 of 30 days), so a node that is off for
/// up to ten days still comes back with a valid credential, and a stolen one is useless a
/// month later at most (revocation by deleting the Node is immediate).
pub const NODE_CERT_VALIDITY: Duration = Duration::from_secs(30 * 24 * 60 * 60);
/// A persisted admin certificate closer than this to expiry is reissued at start.
const RENEW_BEFORE: Duration = Duration::from_secs(90 * 24 * 60 * 60);
/// Certificates start this far in the past, so a node whose clock lags a little accepts them.
const CLOCK_SKEW_ALLOWANCE: Duration = Duration::from_secs(60 * 60);
/// Random serial numbers: 16 bytes, top bit clear (positive, well under RFC 5280's 20).
const SERIAL_BYTES: usize = 16;
/// At most this many O values fit in one rcgen distinguished name (see `subject`).
const MAX_ORGANIZATIONS: usize = 2;

/// The server's PKI, kept in one directory (`server/tls/`): a CA created on first start and
/// reused after, a serving certificate reissued on every start, and an admin client
/// certificate created once (reissued only when it stops verifying or nears expiry).
/// Every file is written 0600. `Debug` shows no key material.
pub struct Pki {
    tls_dir: PathBuf,
    ca: Ca,
    serving_cert_pem: String,
    serving_key_pem: String,
    admin_cert_pem: String,
    admin_key_pem: String,
    kubelet_client_cert_pem: String,
    kubelet_client_key_pem: String,
    node_cert_validity: Duration,
}

/// A node's credentials as issued: `(cert_pem, key_pem)` of its client certificate and of
/// its kubelet serving certificate.
#[derive(Clone)]
pub struct NodeCertificates {
    pub client: (String, String),
    pub kubelet_serving: (String, String),
}

/// The CA as rcgen signs with it. `signer` has the stored CA's subject and key identifier,
/// which is all a signature needs; its own DER is not the stored certificate's.
struct Ca {
    cert_pem: String,
    cert_der: CertificateDer<'static>,
    signer: rcgen::Certificate,
    key: KeyPair,
}

impl fmt::Debug for Pki {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Pki")
            .field("tls_dir", &self.tls_dir)
            .finish_non_exhaustive()
    }
}

impl Pki {
    /// Loads the CA from `tls_dir` (creating it on first start), reissues the serving
    /// certificate for `sans` (each an IP address or a DNS name; the defaults are always
    /// added) and loads or creates the admin certificate.
    ///
    /// Agents connect by the address in their `--join` URL, so `sans` should hold every
    /// address and name they may use (`--tls-san`, node IPs, hostname, the first service IP).
    pub fn load_or_create(tls_dir: &Path, sans: &[String]) -> Result<Pki> {
        let ca = Ca::load_or_create(tls_dir)?;

        let serving_sans = serving_sans(sans)?;
        let (serving_cert_pem, serving_key_pem) = ca.issue(
            "serving",
            SERVING_COMMON_NAME,
            &[],
            serving_sans,
            ExtendedKeyUsagePurpose::ServerAuth,
        )?;
        // The file holds the chain as served: leaf, then CA.
        write_private_file(
            &tls_dir.join(SERVING_CERT_FILE),
            format!("{serving_cert_pem}{}", ca.cert_pem).as_bytes(),
        )?;
        write_private_file(&tls_dir.join(SERVING_KEY_FILE), serving_key_pem.as_bytes())?;

        let (admin_cert_pem, admin_key_pem) = match load_admin(tls_dir, &ca)? {
            Some(admin) => admin,
            None => {
                let admin = ca.issue_client("admin", ADMIN_USER, &[ADMIN_GROUP])?;
                write_private_file(&tls_dir.join(ADMIN_KEY_FILE), admin.1.as_bytes())?;
                write_private_file(&tls_dir.join(ADMIN_CERT_FILE), admin.0.as_bytes())?;
                admin
            }
        };

        // Kept in memory only: reissued on every start, nothing on disk to steal.
        let (kubelet_client_cert_pem, kubelet_client_key_pem) =
            ca.issue_client("kubelet client", KUBELET_CLIENT_USER, &[])?;

        Ok(Pki {
            tls_dir: tls_dir.to_owned(),
            ca,
            serving_cert_pem,
            serving_key_pem,
            admin_cert_pem,
            admin_key_pem,
            kubelet_client_cert_pem,
            kubelet_client_key_pem,
            node_cert_validity: NODE_CERT_VALIDITY,
        })
    }

    /// Sets the lifetime of the node credentials issued from now on.
    pub fn with_node_cert_validity(mut self, validity: Duration) -> Pki {
        self.node_cert_validity = validity;
        self
    }

    /// `(cert_pem, key_pem)` the API server presents to kubelets.
    pub fn kubelet_client_credential(&self) -> (&str, &str) {
        (&self.kubelet_client_cert_pem, &self.kubelet_client_key_pem)
    }

    /// Issues the credentials of node `node`: a client certificate (user
    /// `system:node:<node>`, group `system:nodes`) and a kubelet serving certificate with the
    /// same subject, both carrying `binding` (the id of the node's password record, which
    /// the API server checks on every request so that deleting it revokes them) as OU.
    /// The serving certificate has no subject alternative names: it proves a node's
    /// identity to the API server, which checks exactly that, and cannot pass for any
    /// host name or address.
    pub fn issue_node_certificates(&self, node: &str, binding: &str) -> Result<NodeCertificates> {
        let user = format!("{}{node}", crate::api::identity::NODE_USER_PREFIX);
        let groups = [crate::api::identity::NODES_GROUP];
        let issue = |what: &str, usage| {
            self.ca.issue_with(
                what,
                &user,
                &groups,
                Some(binding),
                Vec::new(),
                usage,
                self.node_cert_validity,
            )
        };
        Ok(NodeCertificates {
            client: issue("node client", ExtendedKeyUsagePurpose::ClientAuth)?,
            kubelet_serving: issue("kubelet serving", ExtendedKeyUsagePurpose::ServerAuth)?,
        })
    }

    /// The CA bundle PEM exactly as stored in `ca.crt`: what `/cacerts` serves and what the
    /// join token's hash covers.
    pub fn ca_cert_pem(&self) -> &str {
        &self.ca.cert_pem
    }

    pub fn admin_cert_pem(&self) -> &str {
        &self.admin_cert_pem
    }

    pub fn admin_key_pem(&self) -> &str {
        &self.admin_key_pem
    }

    /// Issues a client certificate (1 year, client-auth only) signed by the CA, with
    /// `common_name` as the user and `organizations` (at most 2) as the groups.
    /// Returns `(cert_pem, key_pem)`; nothing is written to disk.
    pub fn issue_client_cert(
        &self,
        common_name: &str,
        organizations: &[&str],
    ) -> Result<(String, String)> {
        self.ca.issue_client("client", common_name, organizations)
    }

    /// The HTTPS server config: serving certificate plus CA as chain, ALPN `h2` and
    /// `http/1.1`. Client certificates are requested and, when sent, must verify against the
    /// CA; clients without one get through TLS (the HTTP layer answers them 401).
    pub fn server_config(&self) -> Result<Arc<ServerConfig>> {
        let provider = crypto_provider();
        let mut chain = parse_certs(&self.serving_cert_pem, "serving certificate")?;
        chain.push(self.ca.cert_der.clone());
        let key = parse_key(&self.serving_key_pem, "serving key")?;
        let mut config = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|source| Error::BuildServerConfig { source })?
            .with_client_cert_verifier(self.ca.client_verifier(true)?)
            .with_single_cert(chain, key)
            .map_err(|source| Error::BuildServerConfig { source })?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}

impl Ca {
    fn load_or_create(tls_dir: &Path) -> Result<Ca> {
        let cert_path = tls_dir.join(CA_CERT_FILE);
        let key_path = tls_dir.join(CA_KEY_FILE);
        match (read_file(&cert_path)?, read_file(&key_path)?) {
            (Some(cert_pem), Some(key_pem)) => Ca::load(&cert_path, cert_pem, &key_path, &key_pem),
            (None, None) => Ca::create(&cert_path, &key_path),
            (Some(_), None) => Err(Error::CaIncomplete {
                present: cert_path,
                missing: key_path,
            }),
            (None, Some(_)) => Err(Error::CaIncomplete {
                present: key_path,
                missing: cert_path,
            }),
        }
    }

    fn create(cert_path: &Path, key_path: &Path) -> Result<Ca> {
        let key = generate_key("ca")?;
        let now = SystemTime::now();
        let unix = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
        let mut params = ca_params(subject(&format!("{CA_COMMON_NAME_PREFIX}{unix}"), &[]));
        set_validity(&mut params, now, CA_VALIDITY);
        params.serial_number = Some(random_serial());
        let signer = params
            .self_signed(&key)
            .map_err(|source| Error::SignCertificate {
                what: "ca".into(),
                source,
            })?;
        let cert_pem = signer.pem();
        // Key first: a crash in between leaves a key without certificate, which
        // load_or_create reports rather than silently replacing.
        write_private_file(key_path, key.serialize_pem().as_bytes())?;
        write_private_file(cert_path, cert_pem.as_bytes())?;
        Ok(Ca {
            cert_der: signer.der().clone(),
            cert_pem,
            signer,
            key,
        })
    }

    fn load(cert_path: &Path, cert_pem: String, key_path: &Path, key_pem: &str) -> Result<Ca> {
        let key = KeyPair::from_pem(key_pem).map_err(|source| Error::ParseKeyFile {
            path: key_path.to_owned(),
            source,
        })?;
        let what = cert_path.display().to_string();
        let cert_der = parse_certs(&cert_pem, &what)?.swap_remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&cert_der)
            .map_err(|source| Error::ParseCertificate { what, source })?;
        if cert.public_key().raw != key.public_key_der().as_slice() {
            return Err(Error::CaKeyMismatch {
                cert: cert_path.to_owned(),
                key: key_path.to_owned(),
            });
        }

        let unsupported = || Error::UnsupportedCaSubject {
            path: cert_path.to_owned(),
        };
        let mut params = ca_params(dn_from_x509(cert.subject()).ok_or_else(unsupported)?);
        if let Some(ski) = cert
            .iter_extensions()
            .find_map(|ext| match ext.parsed_extension() {
                ParsedExtension::SubjectKeyIdentifier(id) => Some(id.0.to_vec()),
                _ => None,
            })
        {
            params.key_identifier_method = KeyIdMethod::PreSpecified(ski);
        }
        let signer = params
            .self_signed(&key)
            .map_err(|source| Error::SignCertificate {
                what: "ca".into(),
                source,
            })?;
        // Certificates we sign name their issuer by these bytes; they must be the stored
        // CA's subject bytes exactly, or nothing we issue would chain to it.
        let same_subject = x509_parser::parse_x509_certificate(signer.der())
            .is_ok_and(|(_, s)| s.subject().as_raw() == cert.subject().as_raw());
        if !same_subject {
            return Err(unsupported());
        }

        Ok(Ca {
            cert_pem,
            cert_der,
            signer,
            key,
        })
    }

    fn issue_client(
        &self,
        what: &str,
        common_name: &str,
        organizations: &[&str],
    ) -> Result<(String, String)> {
        self.issue(
            what,
            common_name,
            organizations,
            Vec::new(),
            ExtendedKeyUsagePurpose::ClientAuth,
        )
    }

    fn issue(
        &self,
        what: &str,
        common_name: &str,
        organizations: &[&str],
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
    ) -> Result<(String, String)> {
        self.issue_with(
            what,
            common_name,
            organizations,
            None,
            sans,
            usage,
            LEAF_VALIDITY,
        )
    }

    /// Issues a leaf certificate with a fresh P-256 key: `(cert_pem, key_pem)`.
    #[allow(clippy::too_many_arguments)]
    fn issue_with(
        &self,
        what: &str,
        common_name: &str,
        organizations: &[&str],
        unit: Option<&str>,
        sans: Vec<SanType>,
        usage: ExtendedKeyUsagePurpose,
        validity: Duration,
    ) -> Result<(String, String)> {
        if common_name.is_empty() {
            return Err(Error::EmptyCommonName);
        }
        if organizations.len() > MAX_ORGANIZATIONS {
            return Err(Error::TooManyOrganizations {
                common_name: common_name.to_owned(),
                count: organizations.len(),
            });
        }
        let key = generate_key("certificate")?;
        let now = SystemTime::now();
        let mut params = CertificateParams::default();
        params.distinguished_name = subject(common_name, organizations);
        if let Some(unit) = unit {
            params
                .distinguished_name
                .push(DnType::OrganizationalUnitName, unit);
        }
        params.subject_alt_names = sans;
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![usage];
        params.use_authority_key_identifier_extension = true;
        set_validity(&mut params, now, validity);
        params.serial_number = Some(random_serial());
        let cert = params
            .signed_by(&key, &self.signer, &self.key)
            .map_err(|source| Error::SignCertificate {
                what: what.to_owned(),
                source,
            })?;
        Ok((cert.pem(), key.serialize_pem()))
    }

    /// Verifies client certificates against this CA, optionally letting anonymous clients in.
    fn client_verifier(&self, allow_anonymous: bool) -> Result<Arc<dyn ClientCertVerifier>> {
        let roots = Arc::new(root_store(&self.cert_pem, "ca certificate")?);
        let builder = WebPkiClientVerifier::builder_with_provider(roots, crypto_provider());
        let builder = if allow_anonymous {
            builder.allow_unauthenticated()
        } else {
            builder
        };
        builder
            .build()
            .map_err(|source| Error::BuildClientVerifier { source })
    }
}

/// The persisted admin credential, if it still verifies against `ca` for `RENEW_BEFORE`
/// and the key belongs to it; `None` means issue a new one.
fn load_admin(tls_dir: &Path, ca: &Ca) -> Result<Option<(String, String)>> {
    let cert_path = tls_dir.join(ADMIN_CERT_FILE);
    let (Some(cert_pem), Some(key_pem)) = (
        read_file(&cert_path)?,
        read_file(&tls_dir.join(ADMIN_KEY_FILE))?,
    ) else {
        return Ok(None);
    };
    let Ok(certs) = parse_certs(&cert_pem, "admin certificate") else {
        warn!(path = %cert_path.display(), "admin certificate unreadable, issuing a new one");
        return Ok(None);
    };
    let until = SystemTime::now() + RENEW_BEFORE;
    let until = UnixTime::since_unix_epoch(until.duration_since(UNIX_EPOCH).unwrap_or_default());
    if let Err(error) = ca
        .client_verifier(false)?
        .verify_client_cert(&certs[0], &[], until)
    {
        warn!(
            path = %cert_path.display(),
            %error,
            renew_before_days = RENEW_BEFORE.as_secs() / DAY.as_secs(),
            "admin certificate does not verify against the ca long enough, issuing a new one"
        );
        return Ok(None);
    }
    let key_matches = KeyPair::from_pem(&key_pem).is_ok_and(|key| {
        x509_parser::parse_x509_certificate(&certs[0])
            .is_ok_and(|(_, cert)| cert.public_key().raw == key.public_key_der().as_slice())
    });
    if !key_matches {
        warn!(path = %cert_path.display(), "admin key does not match the admin certificate, issuing a new one");
        return Ok(None);
    }
    Ok(Some((cert_pem, key_pem)))
}

fn ca_params(distinguished_name: DistinguishedName) -> CertificateParams {
    let mut params = CertificateParams::default();
    params.distinguished_name = distinguished_name;
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    params
}

/// CN plus O values. rcgen keeps one value per attribute type, so a second O goes in as a
/// custom attribute with the same OID (it encodes identically).
fn subject(common_name: &str, organizations: &[&str]) -> DistinguishedName {
    const ORGANIZATION_OID: [u64; 4] = [2, 5, 4, 10];
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, common_name);
    let org_types = [
        DnType::OrganizationName,
        DnType::CustomDnType(ORGANIZATION_OID.to_vec()),
    ];
    for (ty, org) in org_types.into_iter().zip(organizations) {
        dn.push(ty, *org);
    }
    dn
}

/// Rebuilds an rcgen name from a certificate subject; `None` if rcgen cannot express it.
fn dn_from_x509(name: &X509Name<'_>) -> Option<DistinguishedName> {
    let mut dn = DistinguishedName::new();
    for rdn in name.iter() {
        let [attr] = rdn.iter().collect::<Vec<_>>()[..] else {
            return None;
        };
        let oid: Vec<u64> = attr.attr_type().iter()?.collect();
        let ty = DnType::from_oid(&oid);
        if dn.get(&ty).is_some() {
            return None;
        }
        let value = attr.attr_value();
        let text = std::str::from_utf8(value.data).ok()?;
        let value = match value.header.tag() {
            Tag::Utf8String => DnValue::Utf8String(text.to_owned()),
            Tag::PrintableString => DnValue::PrintableString(text.try_into().ok()?),
            Tag::Ia5String => DnValue::Ia5String(text.try_into().ok()?),
            _ => return None,
        };
        dn.push(ty, value);
    }
    Some(dn)
}

/// The requested SANs (IP if it parses as one, else DNS) followed by the defaults, deduplicated.
fn serving_sans(requested: &[String]) -> Result<Vec<SanType>> {
    let mut sans: Vec<SanType> = Vec::new();
    let names = requested
        .iter()
        .map(|s| s.trim())
        .chain(DEFAULT_SANS.iter().copied());
    for name in names {
        let san = match name.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if is_dns_name(name) => {
                SanType::DnsName(name.try_into().map_err(|_| Error::InvalidSan {
                    name: name.to_owned(),
                })?)
            }
            Err(_) => {
                return Err(Error::InvalidSan {
                    name: name.to_owned(),
                })
            }
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    Ok(sans)
}

/// Letters, digits, `-`, `_`, `.` and wildcard `*`; no empty labels.
fn is_dns_name(name: &str) -> bool {
    !name.is_empty()
        && name.split('.').all(|label| {
            !label.is_empty()
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'*'))
        })
}

fn generate_key(what: &'static str) -> Result<KeyPair> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
        .map_err(|source| Error::GenerateKey { what, source })
}

fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; SERIAL_BYTES];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    // Positive, and no leading zero byte (DER integers are minimal).
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    SerialNumber::from_slice(&bytes)
}

/// When the certificate `cert_pem` should be renewed: once two thirds of its lifetime (from
/// its issue, not from its back-dated start) have passed. `None` if it cannot be read.
pub fn renewal_due(cert_pem: &str) -> Option<SystemTime> {
    let (not_before, not_after) = validity(cert_pem)?;
    let issued = (not_before + CLOCK_SKEW_ALLOWANCE).min(not_after);
    let lifetime = not_after.duration_since(issued).unwrap_or_default();
    Some(issued + lifetime * 2 / 3)
}

/// When the certificate `cert_pem` expires. `None` if it cannot be read.
pub fn expiry(cert_pem: &str) -> Option<SystemTime> {
    validity(cert_pem).map(|(_, not_after)| not_after)
}

/// `(not_before, not_after)` of the first certificate in `cert_pem`.
fn validity(cert_pem: &str) -> Option<(SystemTime, SystemTime)> {
    let der = parse_certs(cert_pem, "certificate").ok()?.swap_remove(0);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).ok()?;
    let at = |t: x509_parser::time::ASN1Time| {
        UNIX_EPOCH + Duration::from_secs(u64::try_from(t.timestamp()).unwrap_or(0))
    };
    Some((
        at(cert.validity().not_before),
        at(cert.validity().not_after),
    ))
}

/// Valid from a little before `now` (clock skew) for `validity`.
fn set_validity(params: &mut CertificateParams, now: SystemTime, validity: Duration) {
    // rcgen wants `time` values; build them from the epoch rather than depend on `time`.
    let at = |t: SystemTime| {
        rcgen::date_time_ymd(1970, 1, 1) + t.duration_since(UNIX_EPOCH).unwrap_or_default()
    };
    params.not_before = at(now - CLOCK_SKEW_ALLOWANCE);
    params.not_after = at(now + validity);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::{client_config_pinned, identity_from_cert, Identity};
    use rustls::pki_types::ServerName;
    use rustls::ClientConfig;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::{TlsAcceptor, TlsConnector};

    fn sans(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    fn read(dir: &Path, file: &str) -> String {
        fs::read_to_string(dir.join(file)).unwrap()
    }

    /// (DNS names, IP addresses) of the first certificate in `pem`.
    fn san_names(pem: &str) -> (Vec<String>, Vec<IpAddr>) {
        let der = parse_certs(pem, "test").unwrap().swap_remove(0);
        let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
        let (mut dns, mut ips) = (Vec::new(), Vec::new());
        for name in &cert
            .subject_alternative_name()
            .unwrap()
            .unwrap()
            .value
            .general_names
        {
            match name {
                x509_parser::extensions::GeneralName::DNSName(n) => dns.push(n.to_string()),
                x509_parser::extensions::GeneralName::IPAddress(b) => ips.push(match b.len() {
                    4 => IpAddr::from(<[u8; 4]>::try_from(*b).unwrap()),
                    _ => IpAddr::from(<[u8; 16]>::try_from(*b).unwrap()),
                }),
                other => panic!("unexpected san {other:?}"),
            }
        }
        (dns, ips)
    }

    fn common_name(pem: &str) -> String {
        let der = parse_certs(pem, "test").unwrap().swap_remove(0);
        identity_from_cert(&der).unwrap().user
    }

    /// Runs a TLS handshake plus one round trip between the two configs over an in-memory
    /// pipe. Returns the server side (the client identity it saw and the ALPN protocol)
    /// and the client side result.
    async fn handshake(
        server: Arc<ServerConfig>,
        client: Arc<ClientConfig>,
    ) -> (
        std::io::Result<(Option<Identity>, Option<Vec<u8>>)>,
        std::io::Result<()>,
    ) {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let server_side = async move {
            let mut tls = TlsAcceptor::from(server).accept(server_io).await?;
            let (_, conn) = tls.get_ref();
            let identity = conn
                .peer_certificates()
                .and_then(|certs| certs.first())
                .and_then(|cert| identity_from_cert(cert));
            let alpn = conn.alpn_protocol().map(<[u8]>::to_vec);
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            tls.write_all(b"pong").await?;
            tls.flush().await?;
            Ok((identity, alpn))
        };
        let client_side = async move {
            let name = ServerName::try_from("localhost").unwrap();
            let mut tls = TlsConnector::from(client).connect(name, client_io).await?;
            tls.write_all(b"ping").await?;
            tls.flush().await?;
            let mut buf = [0u8; 4];
            tls.read_exact(&mut buf).await?;
            assert_eq!(&buf, b"pong");
            Ok(())
        };
        tokio::time::timeout(Duration::from_secs(10), async {
            tokio::join!(server_side, client_side)
        })
        .await
        .expect("tls handshake deadlocked")
    }

    #[test]
    fn restart_reuses_ca_and_admin_cert_but_reissues_serving_cert() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join("server/tls");
        let first = Pki::load_or_create(&tls, &sans(&["first.example"])).unwrap();
        let (ca_crt, ca_key) = (read(&tls, "ca.crt"), read(&tls, "ca.key"));
        let (admin_crt, admin_key) = (read(&tls, "admin.crt"), read(&tls, "admin.key"));
        let serving = read(&tls, "serving.crt");
        assert_eq!(first.ca_cert_pem(), ca_crt);
        assert_eq!(first.admin_cert_pem(), admin_crt);
        assert_eq!(first.admin_key_pem(), admin_key);
        assert!(common_name(&ca_crt).starts_with("orc-server-ca@"));
        assert_eq!(common_name(&serving), "orc");

        let second =
            Pki::load_or_create(&tls, &sans(&["orc.example", "10.43.0.1", "fd00::1"])).unwrap();
        assert_eq!(read(&tls, "ca.crt"), ca_crt);
        assert_eq!(read(&tls, "ca.key"), ca_key);
        assert_eq!(read(&tls, "admin.crt"), admin_crt);
        assert_eq!(read(&tls, "admin.key"), admin_key);
        assert_eq!(second.ca_cert_pem(), ca_crt);
        assert_eq!(second.admin_cert_pem(), admin_crt);

        let reissued = read(&tls, "serving.crt");
        assert_ne!(reissued, serving);
        assert!(reissued.ends_with(&ca_crt), "serving.crt holds the chain");
        let (dns, ips) = san_names(&reissued);
        assert_eq!(
            dns,
            [
                "orc.example",
                "localhost",
                "kubernetes",
                "kubernetes.default",
                "kubernetes.default.svc",
                "kubernetes.default.svc.cluster.local"
            ]
        );
        let expected_ips: Vec<IpAddr> = ["10.43.0.1", "fd00::1", "127.0.0.1"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(ips, expected_ips);
    }

    #[test]
    fn every_file_is_private() {
        let dir = tempfile::tempdir().unwrap();
        Pki::load_or_create(dir.path(), &[]).unwrap();
        for file in [
            CA_CERT_FILE,
            CA_KEY_FILE,
            SERVING_CERT_FILE,
            SERVING_KEY_FILE,
            ADMIN_CERT_FILE,
            ADMIN_KEY_FILE,
        ] {
            let mode = fs::metadata(dir.path().join(file))
                .unwrap()
                .permissions()
                .mode();
            assert_eq!(mode & 0o777, 0o600, "{file}");
        }
    }

    #[test]
    fn admin_and_client_certs_carry_their_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let admin = parse_certs(pki.admin_cert_pem(), "admin").unwrap();
        assert_eq!(
            identity_from_cert(&admin[0]),
            Some(Identity {
                user: "system:admin".into(),
                groups: vec!["system:masters".into()],
                credential: None,
            })
        );

        let (cert, _) = pki
            .issue_client_cert("system:node:pi-1", &["system:nodes", "orc:agents"])
            .unwrap();
        let der = parse_certs(&cert, "node").unwrap();
        assert_eq!(
            identity_from_cert(&der[0]),
            Some(Identity {
                user: "system:node:pi-1".into(),
                groups: vec!["system:nodes".into(), "orc:agents".into()],
                credential: None,
            })
        );
        assert_eq!(identity_from_cert(b"not a certificate"), None);
    }

    #[test]
    fn issue_client_cert_refuses_what_it_cannot_encode() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert!(matches!(
            pki.issue_client_cert("", &[]),
            Err(Error::EmptyCommonName)
        ));
        assert!(matches!(
            pki.issue_client_cert("u", &["a", "b", "c"]),
            Err(Error::TooManyOrganizations { count: 3, .. })
        ));
    }

    #[test]
    fn invalid_san_is_named_in_the_error() {
        let dir = tempfile::tempdir().unwrap();
        for bad in ["bad name", "", "a..b", "https://x"] {
            let err = Pki::load_or_create(dir.path(), &sans(&[bad])).unwrap_err();
            assert!(matches!(err, Error::InvalidSan { .. }), "{err:?}");
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn half_a_ca_is_reported_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        Pki::load_or_create(dir.path(), &[]).unwrap();
        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let err = Pki::load_or_create(dir.path(), &[]).unwrap_err();
        assert!(matches!(err, Error::CaIncomplete { .. }), "{err:?}");
        assert!(err.to_string().contains("ca.key"), "{err}");
        assert!(dir.path().join(CA_CERT_FILE).exists());
    }

    #[test]
    fn ca_key_of_another_ca_is_reported() {
        let (one, two) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        Pki::load_or_create(one.path(), &[]).unwrap();
        Pki::load_or_create(two.path(), &[]).unwrap();
        fs::copy(two.path().join(CA_KEY_FILE), one.path().join(CA_KEY_FILE)).unwrap();
        let err = Pki::load_or_create(one.path(), &[]).unwrap_err();
        assert!(matches!(err, Error::CaKeyMismatch { .. }), "{err:?}");
    }

    #[test]
    fn admin_cert_is_reissued_when_the_ca_is_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let first = Pki::load_or_create(dir.path(), &[]).unwrap();
        fs::remove_file(dir.path().join(CA_CERT_FILE)).unwrap();
        fs::remove_file(dir.path().join(CA_KEY_FILE)).unwrap();
        let second = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert_ne!(second.ca_cert_pem(), first.ca_cert_pem());
        assert_ne!(second.admin_cert_pem(), first.admin_cert_pem());
        assert_eq!(read(dir.path(), ADMIN_CERT_FILE), second.admin_cert_pem());
    }

    #[test]
    fn node_certificates_name_the_node_carry_the_binding_and_renew_at_two_thirds() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[])
            .unwrap()
            .with_node_cert_validity(Duration::from_secs(3 * 3600));
        let certs = pki.issue_node_certificates("pi-1", "uid-7").unwrap();
        for (pem, _) in [&certs.client, &certs.kubelet_serving] {
            let der = parse_certs(pem, "node").unwrap();
            assert_eq!(
                identity_from_cert(&der[0]),
                Some(Identity {
                    user: "system:node:pi-1".into(),
                    groups: vec!["system:nodes".into()],
                    credential: Some("uid-7".into()),
                })
            );
            let (_, cert) = x509_parser::parse_x509_certificate(&der[0]).unwrap();
            assert!(
                cert.subject_alternative_name().unwrap().is_none(),
                "no names"
            );
            let due = renewal_due(pem).unwrap();
            let from_now = due.duration_since(SystemTime::now()).unwrap();
            assert!(
                from_now > Duration::from_secs(2 * 3600 - 60)
                    && from_now <= Duration::from_secs(2 * 3600),
                "{from_now:?}"
            );
            let left = expiry(pem)
                .unwrap()
                .duration_since(SystemTime::now())
                .unwrap();
            assert!(left <= Duration::from_secs(3 * 3600), "{left:?}");
        }
    }

    #[test]
    fn pki_can_be_shared_between_tasks() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Pki>();
    }

    #[test]
    fn debug_shows_no_keys() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        assert!(!format!("{pki:?}").contains("PRIVATE KEY"));
    }

    #[tokio::test]
    async fn anonymous_client_gets_through_tls_without_identity() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let client = client_config_pinned(pki.ca_cert_pem(), None).unwrap();
        let (server, client) = handshake(pki.server_config().unwrap(), client).await;
        client.unwrap();
        assert_eq!(server.unwrap(), (None, None));
    }

    #[tokio::test]
    async fn issued_client_cert_verifies_and_names_the_client() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let (cert, key) = pki
            .issue_client_cert("system:node:pi-1", &["system:nodes"])
            .unwrap();
        let mut client = client_config_pinned(pki.ca_cert_pem(), Some((&cert, &key))).unwrap();
        Arc::make_mut(&mut client).alpn_protocols = vec![b"h2".to_vec()];
        let (server, client) = handshake(pki.server_config().unwrap(), client).await;
        client.unwrap();
        let (identity, alpn) = server.unwrap();
        assert_eq!(
            identity,
            Some(Identity {
                user: "system:node:pi-1".into(),
                groups: vec!["system:nodes".into()],
                credential: None,
            })
        );
        assert_eq!(alpn.as_deref(), Some(&b"h2"[..]));
    }

    #[tokio::test]
    async fn certs_from_a_reloaded_ca_chain_to_the_original() {
        let dir = tempfile::tempdir().unwrap();
        let original_ca = Pki::load_or_create(dir.path(), &[])
            .unwrap()
            .ca_cert_pem()
            .to_owned();
        let restarted = Pki::load_or_create(dir.path(), &[]).unwrap();
        let (cert, key) = restarted.issue_client_cert("after-restart", &[]).unwrap();
        let client = client_config_pinned(&original_ca, Some((&cert, &key))).unwrap();
        let (server, client) = handshake(restarted.server_config().unwrap(), client).await;
        client.unwrap();
        assert_eq!(server.unwrap().0.unwrap().user, "after-restart");

        let admin = client_config_pinned(
            &original_ca,
            Some((restarted.admin_cert_pem(), restarted.admin_key_pem())),
        )
        .unwrap();
        let (server, client) = handshake(restarted.server_config().unwrap(), admin).await;
        client.unwrap();
        assert_eq!(server.unwrap().0.unwrap().user, ADMIN_USER);
    }

    /// A server config presenting `(cert_pem, key_pem)` and taking any CA client cert.
    fn kubelet_like_server(pki: &Pki, cert_pem: &str, key_pem: &str) -> Arc<ServerConfig> {
        let shared = crate::tls::SharedCert::new(cert_pem, key_pem).unwrap();
        crate::tls::kubelet_server_config(pki.ca_cert_pem(), &shared).unwrap()
    }

    #[tokio::test]
    async fn the_api_server_accepts_only_the_kubelet_serving_cert_of_the_node_it_wants() {
        let dir = tempfile::tempdir().unwrap();
        let pki = Pki::load_or_create(dir.path(), &[]).unwrap();
        let (client_cert, client_key) = pki.kubelet_client_credential();
        let to = |node: &str| {
            crate::tls::kubelet_client_config(pki.ca_cert_pem(), client_cert, client_key, node)
                .unwrap()
        };
        let n1 = pki.issue_node_certificates("n1", "u1").unwrap();
        let (cert, key) = &n1.kubelet_serving;

        let (server, client) = handshake(kubelet_like_server(&pki, cert, key), to("n1")).await;
        client.unwrap();
        let seen = server.unwrap().0.unwrap();
        assert_eq!(seen.user, KUBELET_CLIENT_USER);
        assert!(seen.groups.is_empty(), "the kubelet client is no admin");

        let (_, client) = handshake(kubelet_like_server(&pki, cert, key), to("n2")).await;
        assert!(client.is_err(), "n1's kubelet passed for n2's");

        // The API server's own serving certificate (a node reporting 127.0.0.1).
        let (_, client) = handshake(pki.server_config().unwrap(), to("n1")).await;
        let err = client.unwrap_err().to_string();
        assert!(
            err.contains("not the kubelet serving certificate of node n1"),
            "{err}"
        );

        // A node's client certificate is not for serving.
        let (cert, key) = &n1.client;
        let (_, client) = handshake(kubelet_like_server(&pki, cert, key), to("n1")).await;
        assert!(
            client.is_err(),
            "a client certificate served as a kubelet's"
        );
    }

    #[tokio::test]
    async fn client_cert_from_another_ca_is_rejected() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let pki = Pki::load_or_create(ours.path(), &[]).unwrap();
        let other = Pki::load_or_create(theirs.path(), &[]).unwrap();
        let (cert, key) = other
            .issue_client_cert("system:admin", &["system:masters"])
            .unwrap();
        let client = client_config_pinned(pki.ca_cert_pem(), Some((&cert, &key))).unwrap();
        let (server, client) = handshake(pki.server_config().unwrap(), client).await;
        assert!(server.is_err(), "server accepted a foreign client cert");
        assert!(client.is_err());
    }

    #[tokio::test]
    async fn client_pinned_to_another_ca_rejects_the_server() {
        let (ours, theirs) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let pki = Pki::load_or_create(ours.path(), &[]).unwrap();
        let other = Pki::load_or_create(theirs.path(), &[]).unwrap();
        let client = client_config_pinned(other.ca_cert_pem(), None).unwrap();
        let (server, client) = handshake(pki.server_config().unwrap(), client).await;
        assert!(client.is_err(), "client trusted a server of another ca");
        assert!(server.is_err());
    }
}
