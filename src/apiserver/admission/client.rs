//! Calling a webhook: HTTPS (reqwest, rustls) trusting its `caBundle` or else the
//! cluster CA, to its URL or straight to a ready endpoint of its Service (so it works
//! without a service proxy), within its timeout. One client per webhook, cached and
//! rebuilt when its configuration or the endpoint it reaches changes.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::Mutex;

use rand::seq::SliceRandom;
use serde_json::Value;

use super::matching::{Endpoint, Hook};
use super::review::{self, ResponseError};
use crate::api::resources;
use crate::apiserver::registry::Registry;

/// Most bytes of a webhook's answer read (upstream's limit for responses is larger, but
/// an AdmissionReview answer is small).
const MAX_RESPONSE_BYTES: usize = 3 * 1024 * 1024;

/// Why a webhook could not be asked (upstream `ErrCallingWebhook` reasons). A Service
/// is resolved as upstream's endpoint resolver does it, when dialling the webhook's
/// URL: its errors read as that POST's, with upstream's words.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("failed to call webhook: Post \"{url}\": service \"{name}\" not found")]
    ServiceNotFound { url: String, name: String },
    #[error("failed to call webhook: Post \"{url}\": no service port {port} found for service \"{name}\"")]
    ServicePortNotFound {
        url: String,
        name: String,
        port: u16,
    },
    #[error("failed to call webhook: Post \"{url}\": endpoints \"{name}\" not found")]
    EndpointsNotFound { url: String, name: String },
    #[error(
        "failed to call webhook: Post \"{url}\": no endpoints available for service \"{name}\""
    )]
    NoEndpoints { url: String, name: String },
    #[error("failed to call webhook: no CA to trust: set clientConfig.caBundle")]
    NoTrustedCa,
    #[error("failed to call webhook: clientConfig.caBundle: {0}")]
    Trust(#[source] crate::tls::Error),
    #[error("failed to call webhook: build client: {0}")]
    Build(#[source] reqwest::Error),
    #[error("failed to call webhook: Post \"{url}\": context deadline exceeded")]
    Timeout { url: String },
    #[error("failed to call webhook: Post \"{url}\": {reason}")]
    Send { url: String, reason: String },
    #[error("received invalid webhook response: HTTP {status}: {body}")]
    HttpStatus { status: u16, body: String },
    #[error("received invalid webhook response: {0}")]
    Invalid(#[from] ResponseError),
}

/// What a cached client was built for: rebuilt when either changes.
#[derive(PartialEq, Eq)]
struct Fingerprint {
    configuration_version: String,
    resolved: Option<SocketAddr>,
}

/// Which webhook a client is for: configuration name, webhook name, mutating or not
/// (for a CRD's conversion webhook: the CRD's name, `"conversion"`, false).
type HookKey = (String, String, bool);

/// One webhook as the transport sees it: where it listens, whom to trust, how long to
/// wait, and what its cached client is keyed and fingerprinted by.
pub struct Destination<'a> {
    pub key: HookKey,
    /// Changes when the webhook's configuration does (its client is then rebuilt).
    pub version: &'a str,
    pub endpoint: &'a Endpoint,
    pub ca_bundle: Option<&'a str>,
    pub timeout: std::time::Duration,
}

impl Hook {
    fn destination(&self) -> Destination<'_> {
        Destination {
            key: (self.configuration.clone(), self.name.clone(), self.mutating),
            version: &self.configuration_version,
            endpoint: &self.endpoint,
            ca_bundle: self.ca_bundle.as_deref(),
            timeout: self.timeout,
        }
    }
}

/// The webhook clients, one per webhook.
pub struct Clients {
    cluster_ca_pem: Option<String>,
    cache: Mutex<HashMap<HookKey, (Fingerprint, reqwest::Client)>>,
}

/// A reqwest error with its causes (reqwest's own message alone says little).
fn error_chain(e: &reqwest::Error) -> String {
    let mut out = String::new();
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(s) = source {
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&s.to_string());
        source = s.source();
    }
    if out.is_empty() {
        e.to_string()
    } else {
        out
    }
}

/// The URL upstream names in its errors: a Service's is `https://NAME.NAMESPACE.svc:PORT`
/// with the Service's port, whichever endpoint it reaches.
fn shown_url(hook: &Destination<'_>) -> String {
    let timeout = hook.timeout.as_secs();
    match hook.endpoint {
        Endpoint::Url(url) => format!("{url}?timeout={timeout}s"),
        Endpoint::Service {
            namespace,
            name,
            path,
            port,
        } => {
            let path = if path.is_empty() { "/" } else { path };
            format!("https://{name}.{namespace}.svc:{port}{path}?timeout={timeout}s")
        }
    }
}

/// Where a request for `hook` goes: the URL, and for Services the endpoint address the
/// URL's host (`NAME.NAMESPACE.svc`, the name the certificate is checked for) resolves to
/// (the URL carries that endpoint's port: the client dials the port of the URL).
fn target(
    registry: &Registry,
    hook: &Destination<'_>,
) -> Result<(String, Option<SocketAddr>), CallError> {
    match hook.endpoint {
        Endpoint::Url(url) => Ok((url.clone(), None)),
        Endpoint::Service {
            namespace,
            name,
            path,
            port,
        } => {
            let addr = service_endpoint(registry, namespace, name, *port, &shown_url(hook))?;
            let host = format!("{name}.{namespace}.svc");
            let path = if path.is_empty() { "/" } else { path };
            Ok((format!("https://{host}:{}{path}", addr.port()), Some(addr)))
        }
    }
}

/// A ready endpoint of the Service port `port`: the Endpoints port named like that
/// Service port, at a randomly chosen ready address.
fn service_endpoint(
    registry: &Registry,
    namespace: &str,
    name: &str,
    port: u16,
    url: &str,
) -> Result<SocketAddr, CallError> {
    let not_found = || CallError::ServiceNotFound {
        url: url.into(),
        name: name.into(),
    };
    let services = resources::by_plural("", "v1", "services").ok_or_else(not_found)?;
    let service = registry
        .get(services, Some(namespace), name)
        .map_err(|_| not_found())?;
    let ports = service.value["spec"]["ports"].as_array().cloned();
    let service_port = ports
        .unwrap_or_default()
        .into_iter()
        .find(|p| p["port"].as_u64() == Some(u64::from(port)))
        .ok_or_else(|| CallError::ServicePortNotFound {
            url: url.into(),
            name: name.into(),
            port,
        })?;
    let port_name = service_port["name"].as_str().unwrap_or("");
    let no_endpoints = || CallError::NoEndpoints {
        url: url.into(),
        name: name.into(),
    };
    let endpoints_def = resources::by_plural("", "v1", "endpoints").ok_or_else(no_endpoints)?;
    let endpoints = registry
        .get(endpoints_def, Some(namespace), name)
        .map_err(|_| CallError::EndpointsNotFound {
            url: url.into(),
            name: name.into(),
        })?;
    let mut candidates = Vec::new();
    for subset in endpoints.value["subsets"].as_array().into_iter().flatten() {
        let ports = subset["ports"].as_array().map(Vec::as_slice).unwrap_or(&[]);
        let Some(target_port) = ports
            .iter()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
        else {
            continue;
        };
        for address in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = address["ip"]
                .as_str()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
            {
                candidates.push(SocketAddr::new(ip, target_port));
            }
        }
    }
    candidates
        .choose(&mut rand::thread_rng())
        .copied()
        .ok_or_else(no_endpoints)
}

impl Clients {
    pub fn new(cluster_ca_pem: Option<String>) -> Clients {
        Clients {
            cluster_ca_pem,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Forgets the clients of webhooks no longer configured.
    pub fn retain(&self, keep: &dyn Fn(&str, &str, bool) -> bool) {
        if let Ok(mut cache) = self.cache.lock() {
            cache.retain(|(config, hook, mutating), _| keep(config, hook, *mutating));
        }
    }

    fn client_for(
        &self,
        hook: &Destination<'_>,
        url: &str,
        resolved: Option<SocketAddr>,
    ) -> Result<reqwest::Client, CallError> {
        let key = hook.key.clone();
        let fingerprint = Fingerprint {
            configuration_version: hook.version.to_string(),
            resolved,
        };
        if let Ok(cache) = self.cache.lock() {
            if let Some((fp, client)) = cache.get(&key) {
                if *fp == fingerprint {
                    return Ok(client.clone());
                }
            }
        }
        let ca = hook
            .ca_bundle
            .or(self.cluster_ca_pem.as_deref())
            .ok_or(CallError::NoTrustedCa)?;
        let tls = crate::tls::client_config_pinned(ca, None).map_err(CallError::Trust)?;
        let mut builder = reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .no_proxy();
        if let (Some(addr), Ok(parsed)) = (resolved, url::Url::parse(url)) {
            if let Some(host) = parsed.host_str() {
                builder = builder.resolve(host, addr);
            }
        }
        let client = builder.build().map_err(CallError::Build)?;
        if let Ok(mut cache) = self.cache.lock() {
            cache.insert(key, (fingerprint, client.clone()));
        }
        Ok(client)
    }

    /// Sends `review` (whose request uid is `uid`) to `hook` and checks the answer,
    /// all within the webhook's timeout.
    pub async fn call(
        &self,
        registry: &Registry,
        hook: &Hook,
        review: &Value,
        uid: &str,
    ) -> Result<review::Response, CallError> {
        let body = self.post(registry, &hook.destination(), review).await?;
        Ok(review::parse_response(&body, uid)?)
    }

    /// Posts `review` to the webhook and returns its (2xx) answer's body, within the
    /// webhook's timeout.
    pub async fn post(
        &self,
        registry: &Registry,
        hook: &Destination<'_>,
        review: &Value,
    ) -> Result<Vec<u8>, CallError> {
        let (base, resolved) = target(registry, hook)?;
        let client = self.client_for(hook, &base, resolved)?;
        let url = format!("{base}?timeout={}s", hook.timeout.as_secs());
        let shown = shown_url(hook);
        let exchange = async {
            let response =
                client
                    .post(&url)
                    .json(review)
                    .send()
                    .await
                    .map_err(|e| CallError::Send {
                        url: shown.clone(),
                        reason: error_chain(&e),
                    })?;
            let status = response.status();
            let body = read_limited(response).await.map_err(|e| CallError::Send {
                url: shown.clone(),
                reason: error_chain(&e),
            })?;
            if !status.is_success() {
                let text = String::from_utf8_lossy(&body[..body.len().min(256)]).into_owned();
                return Err(CallError::HttpStatus {
                    status: status.as_u16(),
                    body: text,
                });
            }
            Ok(body)
        };
        match tokio::time::timeout(hook.timeout, exchange).await {
            Ok(result) => result,
            Err(_) => Err(CallError::Timeout { url: shown }),
        }
    }
}

/// The response body, at most [`MAX_RESPONSE_BYTES`] of it.
async fn read_limited(mut response: reqwest::Response) -> Result<Vec<u8>, reqwest::Error> {
    let mut body = Vec::new();
    while let Some(chunk) = response.chunk().await? {
        let room = MAX_RESPONSE_BYTES.saturating_sub(body.len());
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if room <= chunk.len() {
            break;
        }
    }
    Ok(body)
}
