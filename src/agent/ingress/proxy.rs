//! The ingress's HTTP handling: one hyper connection per client (HTTP/1.1, and HTTP/2 by
//! ALPN on TLS or prior knowledge), each request routed by the current snapshot and sent
//! to a pod of its backend over a fresh HTTP/1.1 connection (round-robin over the ready
//! endpoints, the next one tried when connecting fails), bodies streamed both ways,
//! `Upgrade` requests (WebSocket) spliced through once the pod answers 101, and the
//! X-Forwarded-For/-Proto/-Host/-Port and X-Real-IP headers added.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};

use super::routes::{endpoints_of, Backend, Unavailable};
use super::source::State;

/// How long connecting to a pod may take before the next endpoint is tried.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

pub type ProxyBody = BoxBody<Bytes, hyper::Error>;

/// Headers that describe one connection, not the message (RFC 9110 §7.6.1), never
/// forwarded (except `connection`/`upgrade` of an upgrade request).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// What every connection of one listener shares.
pub struct Proxy {
    pub state: Arc<State>,
    /// `http` or `https`.
    pub scheme: &'static str,
    /// The listener's port (X-Forwarded-Port).
    pub port: u16,
    /// Round-robin position per backend.
    next: Mutex<HashMap<String, usize>>,
}

impl Proxy {
    pub fn new(state: Arc<State>, scheme: &'static str, port: u16) -> Proxy {
        Proxy {
            state,
            scheme,
            port,
            next: Mutex::new(HashMap::new()),
        }
    }

    /// The endpoints in the order to try them: each request starts one further along.
    fn rotation(&self, backend: &str, mut endpoints: Vec<SocketAddr>) -> Vec<SocketAddr> {
        let mut next = self.next.lock().unwrap_or_else(|e| e.into_inner());
        let position = next.entry(backend.to_string()).or_insert(0);
        let start = *position % endpoints.len();
        *position = position.wrapping_add(1);
        endpoints.rotate_left(start);
        endpoints
    }
}

/// Serves one client connection until it ends.
pub async fn serve_connection<I>(proxy: Arc<Proxy>, io: I, peer: SocketAddr)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let service = hyper::service::service_fn(move |req| {
        let proxy = proxy.clone();
        async move { Ok::<_, Infallible>(handle(&proxy, req, peer).await) }
    });
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    if let Err(e) = builder
        .serve_connection_with_upgrades(TokioIo::new(io), service)
        .await
    {
        tracing::debug!(%peer, error = %e, "ingress connection ended with an error");
    }
}

fn text(status: StatusCode, body: String) -> Response<ProxyBody> {
    let mut resp = Response::new(Full::new(Bytes::from(body)).map_err(|n| match n {}).boxed());
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    resp
}

/// The host a request names (`:authority` or `Host`), with and without its port.
fn request_host(req: &Request<Incoming>) -> (String, String) {
    let full = req
        .uri()
        .authority()
        .map(|a| a.as_str().to_string())
        .or_else(|| {
            req.headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_string)
        })
        .unwrap_or_default();
    let bare = match full.rsplit_once(':') {
        Some((h, port)) if port.chars().all(|c| c.is_ascii_digit()) && !h.ends_with(']') => h,
        _ => full.as_str(),
    };
    let bare = bare.trim_start_matches('[').trim_end_matches(']');
    (full.clone(), bare.to_ascii_lowercase())
}

fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    connection_upgrade && headers.contains_key(header::UPGRADE)
}

/// Removes hop-by-hop headers, and the ones `Connection` names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect();
    for name in named {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(name);
    }
    headers.remove(header::UPGRADE);
}

/// Adds the X-Forwarded-* and X-Real-IP headers (appending to an existing
/// X-Forwarded-For, as proxies in a chain do).
pub fn add_forwarded(
    headers: &mut HeaderMap,
    peer: SocketAddr,
    scheme: &str,
    host: &str,
    port: u16,
) {
    let ip = peer.ip().to_string();
    let xff = match headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
    {
        Some(prior) => format!("{prior}, {ip}"),
        None => ip.clone(),
    };
    let mut set = |name: &'static str, value: &str| {
        if let Ok(v) = HeaderValue::from_str(value) {
            headers.insert(name, v);
        }
    };
    set("x-forwarded-for", &xff);
    set("x-forwarded-proto", scheme);
    set("x-forwarded-host", host);
    set("x-forwarded-port", &port.to_string());
    set("x-real-ip", &ip);
}

async fn handle(
    proxy: &Proxy,
    mut req: Request<Incoming>,
    peer: SocketAddr,
) -> Response<ProxyBody> {
    let (host_header, host) = request_host(&req);
    let path = req.uri().path().to_string();
    let snapshot = proxy.state.snapshot();
    let Some(backend) = snapshot.routes.route(&host, &path) else {
        return text(StatusCode::NOT_FOUND, "404 page not found\n".into());
    };
    let resolved = match backend {
        Backend::Service {
            namespace,
            name,
            port,
        } => {
            let key = format!("{namespace}/{name}");
            endpoints_of(
                snapshot.services.get(&key),
                snapshot.endpoints.get(&key),
                &key,
                port,
            )
            .map(|eps| (key, eps))
        }
        Backend::Resource { kind, .. } => Err(Unavailable::Unsupported(kind.clone())),
    };
    let (key, endpoints) = match resolved {
        Ok(r) => r,
        Err(e) => {
            tracing::debug!(%host, %path, reason = %e, "ingress backend unavailable");
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                format!("503 Service Unavailable: {e}\n"),
            );
        }
    };
    drop(snapshot);
    let upgrade = req.version() == Version::HTTP_11 && is_upgrade(req.headers());
    let client_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    let mut headers = parts.headers;
    let upgrade_value = headers.get(header::UPGRADE).cloned();
    strip_hop_by_hop(&mut headers);
    if let (true, Some(value)) = (upgrade, upgrade_value) {
        headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
        headers.insert(header::UPGRADE, value);
    }
    if !headers.contains_key(header::HOST) {
        if let Ok(v) = HeaderValue::from_str(&host_header) {
            headers.insert(header::HOST, v);
        }
    }
    add_forwarded(&mut headers, peer, proxy.scheme, &host_header, proxy.port);
    let path_and_query = parts
        .uri
        .path_and_query()
        .map(|p| p.as_str().to_string())
        .unwrap_or_else(|| "/".into());
    let mut sender = None;
    for endpoint in proxy.rotation(&key, endpoints) {
        match connect(endpoint).await {
            Ok(s) => {
                sender = Some(s);
                break;
            }
            Err(e) => {
                tracing::warn!(backend = %key, %endpoint, error = %e, "connecting to the pod failed; trying the next endpoint");
            }
        }
    }
    let Some(mut sender) = sender else {
        return text(
            StatusCode::BAD_GATEWAY,
            format!("502 Bad Gateway: no endpoint of service {key} accepts connections\n"),
        );
    };
    let mut out = Request::new(body);
    *out.method_mut() = parts.method;
    *out.version_mut() = Version::HTTP_11;
    *out.uri_mut() = match path_and_query.parse() {
        Ok(uri) => uri,
        Err(_) => return text(StatusCode::BAD_REQUEST, "400 Bad Request\n".into()),
    };
    *out.headers_mut() = headers;
    let mut resp = match sender.send_request(out).await {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(backend = %key, error = %e, "the pod's answer failed");
            return text(StatusCode::BAD_GATEWAY, format!("502 Bad Gateway: {e}\n"));
        }
    };
    if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        if let Some(client_upgrade) = client_upgrade {
            let backend_upgrade = hyper::upgrade::on(&mut resp);
            tokio::spawn(async move {
                match tokio::try_join!(client_upgrade, backend_upgrade) {
                    Ok((client, pod)) => {
                        let (mut client, mut pod) = (TokioIo::new(client), TokioIo::new(pod));
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut pod).await;
                    }
                    Err(e) => tracing::debug!(error = %e, "upgraded connection failed"),
                }
            });
            let (parts, _) = resp.into_parts();
            return Response::from_parts(
                parts,
                http_body_util::Empty::new().map_err(|n| match n {}).boxed(),
            );
        }
    }
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    Response::from_parts(parts, body.boxed())
}

/// An HTTP/1.1 connection to a pod (its driver runs in its own task, upgrades allowed).
async fn connect(
    endpoint: SocketAddr,
) -> std::io::Result<hyper::client::conn::http1::SendRequest<Incoming>> {
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, tokio::net::TcpStream::connect(endpoint))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    let _ = stream.set_nodelay(true);
    let (sender, conn) = hyper::client::conn::http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(%endpoint, error = %e, "pod connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_headers_append_to_a_chain() {
        let mut h = HeaderMap::new();
        add_forwarded(
            &mut h,
            "10.0.0.9:5555".parse().unwrap(),
            "https",
            "a.com:8443",
            443,
        );
        assert_eq!(h["x-forwarded-for"], "10.0.0.9");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "a.com:8443");
        assert_eq!(h["x-forwarded-port"], "443");
        assert_eq!(h["x-real-ip"], "10.0.0.9");
        add_forwarded(&mut h, "10.0.0.10:1".parse().unwrap(), "http", "a.com", 80);
        assert_eq!(h["x-forwarded-for"], "10.0.0.9, 10.0.0.10");
    }

    #[test]
    fn hop_by_hop_headers_are_not_forwarded() {
        let mut h = HeaderMap::new();
        h.insert(
            "connection",
            HeaderValue::from_static("keep-alive, x-secret-hop"),
        );
        h.insert("x-secret-hop", HeaderValue::from_static("1"));
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-app", HeaderValue::from_static("kept"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert_eq!(h["x-app"], "kept");
        let mut up = HeaderMap::new();
        up.insert("connection", HeaderValue::from_static("Upgrade"));
        up.insert("upgrade", HeaderValue::from_static("websocket"));
        assert!(is_upgrade(&up));
        up.remove("upgrade");
        assert!(!is_upgrade(&up));
    }

    #[test]
    fn endpoints_take_turns() {
        let state = Arc::new(State::new(Arc::new(super::super::tls::SniResolver::new(
            super::super::tls::fallback_key().unwrap(),
        ))));
        let proxy = Proxy::new(state, "http", 80);
        let eps: Vec<SocketAddr> = vec![
            "10.0.0.1:80".parse().unwrap(),
            "10.0.0.2:80".parse().unwrap(),
        ];
        let firsts: Vec<SocketAddr> = (0..4)
            .map(|_| proxy.rotation("a/b", eps.clone())[0])
            .collect();
        assert_eq!(firsts, [eps[0], eps[1], eps[0], eps[1]]);
        assert_eq!(
            proxy.rotation("a/b", eps.clone()).len(),
            2,
            "every endpoint is a retry candidate"
        );
    }
}
