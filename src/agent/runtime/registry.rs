//! A small registry v2 client: manifests and blobs, anonymous or basic auth, bearer
//! tokens from the registry's auth realm, plain HTTP for loopback registries.

use std::collections::HashMap;
use std::sync::Mutex;

use bytes::Bytes;
use futures::{Stream, StreamExt};
use reqwest::header::{HeaderMap, ACCEPT, AUTHORIZATION, CONTENT_TYPE, WWW_AUTHENTICATE};
use reqwest::StatusCode;
use sha2::{Digest, Sha256};

use super::{Reference, RegistryAuth, Result, RuntimeError};

pub const MEDIA_OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MEDIA_OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MEDIA_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
/// Largest manifest accepted (upstream containerd uses 4 MiB).
const MAX_MANIFEST_BYTES: usize = 4 << 20;
/// System CA bundle used for registries served over HTTPS.
const SYSTEM_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A manifest (or index) as fetched, with its digest.
#[derive(Debug, Clone)]
pub struct FetchedManifest {
    pub media_type: String,
    pub digest: String,
    pub bytes: Bytes,
}

pub struct RegistryClient {
    http: reqwest::Client,
    /// Bearer tokens by `registry/repository`.
    tokens: Mutex<HashMap<String, String>>,
}

pub fn sha256_digest(data: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(data)))
}

impl RegistryClient {
    pub fn new() -> Result<Self> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .connect_timeout(std::time::Duration::from_secs(15));
        if let Ok(pem) = std::fs::read(SYSTEM_CA_BUNDLE) {
            for cert in rustls_pemfile::certs(&mut &pem[..]).flatten() {
                if let Ok(c) = reqwest::Certificate::from_der(&cert) {
                    builder = builder.add_root_certificate(c);
                }
            }
        }
        let http = builder.build().map_err(|e| RuntimeError::Http {
            url: "(client setup)".into(),
            source: e,
        })?;
        Ok(RegistryClient {
            http,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    fn base_url(r: &Reference) -> String {
        let scheme = if r.is_insecure() { "http" } else { "https" };
        format!("{scheme}://{}/v2/{}", r.api_host(), r.repository)
    }

    fn token_key(r: &Reference) -> String {
        format!("{}/{}", r.registry, r.repository)
    }

    /// GET with the cached token; on 401 follows the challenge once and retries.
    async fn get(
        &self,
        r: &Reference,
        url: &str,
        accept: Option<&str>,
        auth: Option<&RegistryAuth>,
    ) -> Result<reqwest::Response> {
        let http_err = |e| RuntimeError::Http {
            url: url.to_string(),
            source: e,
        };
        let send = |authz: Option<String>| {
            let mut req = self.http.get(url);
            if let Some(a) = accept {
                req = req.header(ACCEPT, a);
            }
            if let Some(a) = authz {
                req = req.header(AUTHORIZATION, a);
            }
            req.send()
        };
        let cached = self
            .tokens
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&Self::token_key(r))
            .cloned();
        let resp = send(cached.map(|t| format!("Bearer {t}")))
            .await
            .map_err(http_err)?;
        if resp.status() != StatusCode::UNAUTHORIZED {
            return Ok(resp);
        }
        let challenge = resp
            .headers()
            .get(WWW_AUTHENTICATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let authz = if challenge.to_ascii_lowercase().starts_with("bearer") {
            let token = self.fetch_token(r, &challenge, auth).await?;
            self.tokens
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .insert(Self::token_key(r), token.clone());
            format!("Bearer {token}")
        } else if let Some(a) = auth {
            basic(a)
        } else {
            return Err(self.unauthorized(r));
        };
        let resp = send(Some(authz)).await.map_err(http_err)?;
        if resp.status() == StatusCode::UNAUTHORIZED {
            return Err(self.unauthorized(r));
        }
        Ok(resp)
    }

    fn unauthorized(&self, r: &Reference) -> RuntimeError {
        RuntimeError::Unauthorized {
            reference: r.to_string(),
            registry: r.registry.clone(),
        }
    }

    async fn fetch_token(
        &self,
        r: &Reference,
        challenge: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<String> {
        let params = parse_challenge(challenge);
        let realm = params.get("realm").ok_or_else(|| RuntimeError::Registry {
            registry: r.registry.clone(),
            message: format!("bearer challenge without realm: {challenge}"),
        })?;
        let mut query: Vec<(&str, String)> =
            vec![("scope", format!("repository:{}:pull", r.repository))];
        if let Some(s) = params.get("service") {
            query.push(("service", s.clone()));
        }
        let mut req = self.http.get(realm).query(&query);
        if let Some(a) = auth {
            req = req.header(AUTHORIZATION, basic(a));
        }
        let http_err = |e| RuntimeError::Http {
            url: realm.clone(),
            source: e,
        };
        let resp = req.send().await.map_err(http_err)?;
        if resp.status() == StatusCode::UNAUTHORIZED || resp.status() == StatusCode::FORBIDDEN {
            return Err(self.unauthorized(r));
        }
        let resp = resp.error_for_status().map_err(http_err)?;
        let body: serde_json::Value = resp.json().await.map_err(http_err)?;
        body.get("token")
            .or_else(|| body.get("access_token"))
            .and_then(|t| t.as_str())
            .map(str::to_string)
            .ok_or_else(|| RuntimeError::Registry {
                registry: r.registry.clone(),
                message: "token response without a token".into(),
            })
    }

    fn check_status(&self, r: &Reference, resp: &reqwest::Response) -> Result<()> {
        match resp.status() {
            s if s.is_success() => Ok(()),
            StatusCode::NOT_FOUND => Err(RuntimeError::ImageNotFound {
                reference: r.to_string(),
                registry: r.registry.clone(),
            }),
            StatusCode::FORBIDDEN => Err(self.unauthorized(r)),
            s => Err(RuntimeError::Registry {
                registry: r.registry.clone(),
                message: format!("{} answered {s}", resp.url()),
            }),
        }
    }

    /// Fetches the manifest or index `reference` (a tag or a digest) of `r`'s repository.
    pub async fn manifest(
        &self,
        r: &Reference,
        reference: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<FetchedManifest> {
        let url = format!("{}/manifests/{reference}", Self::base_url(r));
        let accept = [
            MEDIA_OCI_INDEX,
            MEDIA_OCI_MANIFEST,
            MEDIA_DOCKER_LIST,
            MEDIA_DOCKER_MANIFEST,
        ]
        .join(", ");
        let resp = self.get(r, &url, Some(&accept), auth).await?;
        self.check_status(r, &resp)?;
        let media_type = header_media_type(resp.headers());
        let bytes = resp.bytes().await.map_err(|e| RuntimeError::Http {
            url: url.clone(),
            source: e,
        })?;
        if bytes.len() > MAX_MANIFEST_BYTES {
            return Err(RuntimeError::InvalidImage {
                reference: r.to_string(),
                reason: format!("manifest of {} bytes is too large", bytes.len()),
            });
        }
        let digest = sha256_digest(&bytes);
        if reference.starts_with("sha256:") && reference != digest {
            return Err(RuntimeError::InvalidImage {
                reference: r.to_string(),
                reason: format!("registry sent manifest {digest} for {reference}"),
            });
        }
        // Registries may send a generic type; the document's mediaType field is better.
        let media_type = serde_json::from_slice::<serde_json::Value>(&bytes)
            .ok()
            .and_then(|v| v.get("mediaType")?.as_str().map(str::to_string))
            .or(media_type)
            .unwrap_or_else(|| MEDIA_OCI_MANIFEST.to_string());
        Ok(FetchedManifest {
            media_type,
            digest,
            bytes,
        })
    }

    /// Streams blob `digest`; the caller verifies the digest (containerd does on commit).
    pub async fn blob(
        &self,
        r: &Reference,
        digest: &str,
        auth: Option<&RegistryAuth>,
    ) -> Result<impl Stream<Item = Result<Bytes>> + Send + Unpin + 'static> {
        let url = format!("{}/blobs/{digest}", Self::base_url(r));
        let resp = self.get(r, &url, None, auth).await?;
        self.check_status(r, &resp)?;
        Ok(resp.bytes_stream().map(move |c| {
            c.map_err(|e| RuntimeError::Http {
                url: url.clone(),
                source: e,
            })
        }))
    }
}

fn basic(a: &RegistryAuth) -> String {
    use base64::Engine;
    let raw = format!("{}:{}", a.username, a.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

fn header_media_type(h: &HeaderMap) -> Option<String> {
    h.get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
        .filter(|v| v.starts_with("application/vnd."))
}

/// Parses `Bearer realm="…",service="…",scope="…"` into its parameters.
pub fn parse_challenge(challenge: &str) -> HashMap<String, String> {
    let rest = challenge
        .split_once(' ')
        .map(|(_, r)| r)
        .unwrap_or_default();
    let mut out = HashMap::new();
    let mut s = rest.trim();
    while !s.is_empty() {
        let Some((key, after)) = s.split_once('=') else {
            break;
        };
        let key = key
            .trim()
            .trim_start_matches(',')
            .trim()
            .to_ascii_lowercase();
        let (value, remaining) = if let Some(quoted) = after.strip_prefix('"') {
            match quoted.find('"') {
                Some(end) => (&quoted[..end], &quoted[end + 1..]),
                None => (quoted, ""),
            }
        } else {
            match after.find(',') {
                Some(end) => (&after[..end], &after[end..]),
                None => (after, ""),
            }
        };
        out.insert(key, value.to_string());
        s = remaining.trim_start_matches(',').trim();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let p = parse_challenge(
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/busybox:pull""#,
        );
        assert_eq!(p["realm"], "https://auth.docker.io/token");
        assert_eq!(p["service"], "registry.docker.io");
        assert_eq!(p["scope"], "repository:library/busybox:pull");
        let p = parse_challenge("Bearer realm=https://x/token, service=reg");
        assert_eq!(p["realm"], "https://x/token");
        assert_eq!(p["service"], "reg");
    }

    #[test]
    fn loopback_registries_use_plain_http() {
        let r = Reference::parse("127.0.0.1:5000/busybox:test").unwrap();
        assert_eq!(
            RegistryClient::base_url(&r),
            "http://127.0.0.1:5000/v2/busybox"
        );
        let r = Reference::parse("busybox").unwrap();
        assert_eq!(
            RegistryClient::base_url(&r),
            "https://registry-1.docker.io/v2/library/busybox"
        );
    }

    #[test]
    fn digests_are_sha256_hex() {
        assert_eq!(
            sha256_digest(b""),
            "sha256:e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
    }
}
