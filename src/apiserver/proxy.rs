//! The `proxy` subresources, as upstream: `services/[SCHEME:]NAME[:PORT]/proxy/PATH` (to a
//! ready endpoint of the service port), `pods/[SCHEME:]NAME[:PORT]/proxy/PATH` (to the
//! pod's IP) and `nodes/[SCHEME:]NAME[:PORT]/proxy/PATH` (to the kubelet, with the API
//! server's kubelet-client identity, or to another port of the node). Every method;
//! bodies stream both ways and WebSocket upgrades are spliced. The server reaches pod IPs
//! because its host runs an agent on the pod network.
//!
//! Not done as upstream: links in proxied HTML and `Location` headers are not rewritten
//! to go through the proxy again.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderMap, HeaderName, HeaderValue, Request, Response, StatusCode};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rand::Rng;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;

use super::request::RequestBody;
use super::response::Body;
use super::ApiContext;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;

/// Longest connecting to a backend may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Kubelet port when the Node does not advertise one.
const DEFAULT_KUBELET_PORT: u16 = 10250;
/// Headers of one connection (RFC 9110 7.6.1), never passed on; `Upgrade` is sent
/// again on upgrades. The caller's credentials stay with the API server as upstream.
const DROPPED_HEADERS: [&str; 10] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
];

type ProxyBody = UnsyncBoxBody<Bytes, super::request::BoxError>;

/// `[scheme:]name[:port]` of a proxy URL (upstream `SplitSchemeNamePort`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SchemeNamePort {
    pub scheme: Scheme,
    pub name: String,
    /// A number or a port name; empty when not given.
    pub port: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scheme {
    Http,
    Https,
}

/// Splits `id` as upstream: `name`, `name:port` or `scheme:name:port` (scheme `http` or
/// `https`, port possibly empty); anything else is a 400.
pub fn split_scheme_name_port(id: &str) -> Result<SchemeNamePort, ApiError> {
    let invalid = || ApiError::bad_request(format!("invalid request {id:?}"));
    let parts: Vec<&str> = id.split(':').collect();
    let (scheme, name, port) = match parts.as_slice() {
        [name] => ("", *name, ""),
        [name, port] => ("", *name, *port),
        [scheme, name, port] => (*scheme, *name, *port),
        _ => return Err(invalid()),
    };
    let scheme = match scheme {
        "" | "http" => Scheme::Http,
        "https" => Scheme::Https,
        _ => return Err(invalid()),
    };
    if name.is_empty() {
        return Err(invalid());
    }
    Ok(SchemeNamePort {
        scheme,
        name: name.to_string(),
        port: port.to_string(),
    })
}

/// Where a proxied request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backend {
    pub scheme: Scheme,
    pub host: String,
    pub port: u16,
    /// For a node's kubelet: the node's name (TLS with the kubelet-client identity).
    pub kubelet_of: Option<String>,
}

/// The service port name a `port` of a proxy URL means: a number is looked up among the
/// service's ports (upstream: 503 when none has it), a name is taken as it is.
pub fn service_port_name(svc: &Value, port: &str) -> Result<String, ApiError> {
    let Ok(number) = port.parse::<i64>() else {
        return Ok(port.to_string());
    };
    let name = svc["metadata"]["name"].as_str().unwrap_or("");
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["port"].as_i64() == Some(number))
        .map(|p| p["name"].as_str().unwrap_or("").to_string())
        .ok_or_else(|| {
            ApiError::unavailable(format!(
                "no service port {number} found for service \"{name}\""
            ))
        })
}

/// The ready `(ip, port)` addresses of the Endpoints port named `port_name`.
pub fn ready_addresses(endpoints: &Value, port_name: &str) -> Vec<(String, u16)> {
    let mut out = Vec::new();
    for subset in endpoints["subsets"].as_array().into_iter().flatten() {
        let port = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|p| p["name"].as_str().unwrap_or("") == port_name)
            .and_then(|p| p["port"].as_u64())
            .and_then(|p| u16::try_from(p).ok());
        let Some(port) = port else { continue };
        for address in subset["addresses"].as_array().into_iter().flatten() {
            if let Some(ip) = address["ip"].as_str() {
                out.push((ip.to_string(), port));
            }
        }
    }
    out
}

/// The port of a pod proxy URL: a number, a named container port, or (none given) the
/// first container port, else 80 (upstream leaves the port out of the URL then).
pub fn pod_port(pod: &Value, port: &str) -> Result<u16, ApiError> {
    let container_ports = || {
        pod["spec"]["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
    };
    if port.is_empty() {
        return Ok(container_ports()
            .find_map(|p| p["containerPort"].as_u64())
            .and_then(|p| u16::try_from(p).ok())
            .unwrap_or(80));
    }
    if let Ok(number) = port.parse::<u16>() {
        return Ok(number);
    }
    container_ports()
        .find(|p| p["name"] == port)
        .and_then(|p| p["containerPort"].as_u64())
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "pod {} has no container port named {port:?}",
                pod["metadata"]["name"].as_str().unwrap_or("")
            ))
        })
}

/// A node's InternalIP and kubelet port.
fn node_kubelet(node: &Value) -> Result<(String, u16), ApiError> {
    let name = node["metadata"]["name"].as_str().unwrap_or("");
    let address = node["status"]["addresses"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|a| a["type"] == "InternalIP")
        .and_then(|a| a["address"].as_str())
        .ok_or_else(|| ApiError::unavailable(format!("node {name} has no InternalIP")))?;
    let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
        .as_u64()
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(DEFAULT_KUBELET_PORT);
    Ok((address.to_string(), port))
}

fn def(plural: &str) -> &'static ResourceDef {
    resources::by_plural("", "v1", plural).expect("served")
}

/// Where `kind/id/proxy` goes (`kind` is `services`, `pods` or `nodes`).
fn backend(
    ctx: &ApiContext,
    plural: &str,
    ns: Option<&str>,
    id: &str,
) -> Result<Backend, ApiError> {
    let target = split_scheme_name_port(id)?;
    let name = target.name.as_str();
    match plural {
        "services" => {
            let svc = ctx.registry.get(def("services"), ns, name)?.value;
            let port_name = service_port_name(&svc, &target.port)?;
            let no_endpoints =
                || ApiError::unavailable(format!("no endpoints available for service \"{id}\""));
            let endpoints = ctx
                .registry
                .get(def("endpoints"), ns, name)
                .map_err(|_| no_endpoints())?
                .value;
            let ready = ready_addresses(&endpoints, &port_name);
            if ready.is_empty() {
                return Err(no_endpoints());
            }
            let (host, port) = ready[rand::thread_rng().gen_range(0..ready.len())].clone();
            Ok(Backend {
                scheme: target.scheme,
                host,
                port,
                kubelet_of: None,
            })
        }
        "pods" => {
            let pod = ctx.registry.get(def("pods"), ns, name)?.value;
            let ip = pod["status"]["podIP"].as_str().unwrap_or("");
            if ip.parse::<std::net::IpAddr>().is_err() {
                return Err(ApiError::unavailable(format!(
                    "pod {name} has no IP address yet"
                )));
            }
            Ok(Backend {
                scheme: target.scheme,
                host: ip.to_string(),
                port: pod_port(&pod, &target.port)?,
                kubelet_of: None,
            })
        }
        _ => {
            let node = ctx.registry.get(def("nodes"), None, name)?.value;
            let (host, kubelet_port) = node_kubelet(&node)?;
            let port = match target.port.as_str() {
                "" => kubelet_port,
                p => p.parse().map_err(|_| {
                    ApiError::bad_request(format!("invalid port {p:?} for node {name}"))
                })?,
            };
            let kubelet = port == kubelet_port;
            Ok(Backend {
                scheme: if kubelet {
                    Scheme::Https
                } else {
                    target.scheme
                },
                host,
                port,
                kubelet_of: kubelet.then(|| name.to_string()),
            })
        }
    }
}

/// Serves `plural/id/proxy<path>` (the route's `proxy_path`).
pub async fn proxy(
    ctx: &ApiContext,
    plural: &str,
    ns: Option<&str>,
    id: &str,
    path: &str,
    req: Request<impl RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let backend = backend(ctx, plural, ns, id)?;
    if path.is_empty() {
        // Relative links of the backend's pages need the trailing slash (upstream
        // redirects too).
        let mut location = format!("{}/", req.uri().path());
        if let Some(q) = req.uri().query() {
            location = format!("{location}?{q}");
        }
        let mut resp = Response::new(super::response::full(Bytes::new()));
        *resp.status_mut() = StatusCode::MOVED_PERMANENTLY;
        if let Ok(v) = HeaderValue::from_str(&location) {
            resp.headers_mut().insert(header::LOCATION, v);
        }
        return Ok(resp);
    }
    let span = tracing::info_span!(
        "proxy",
        resource = plural,
        object = %id,
        backend = %format!("{}:{}", backend.host, backend.port)
    );
    tracing::Instrument::instrument(forward(ctx, &backend, path, req), span).await
}

async fn forward(
    ctx: &ApiContext,
    backend: &Backend,
    path: &str,
    req: Request<impl RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let (mut parts, body) = req.into_parts();
    let upgrade = parts.headers.contains_key(header::UPGRADE);
    let path_and_query = match parts.uri.query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let authority = match backend.host.contains(':') {
        true => format!("[{}]:{}", backend.host, backend.port),
        false => format!("{}:{}", backend.host, backend.port),
    };
    let mut builder = Request::builder()
        .method(parts.method.clone())
        .uri(&path_and_query);
    let headers = builder.headers_mut().expect("a fresh builder has headers");
    copy_end_to_end_headers(&parts.headers, headers);
    if let Ok(host) = HeaderValue::from_str(&authority) {
        headers.insert(header::HOST, host);
    }
    if let Some(peer) = parts.extensions.get::<super::auth::ConnectionInfo>() {
        append_forwarded_for(headers, peer.peer.ip());
    }
    if upgrade {
        headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
        for v in parts.headers.get_all(header::UPGRADE) {
            headers.append(header::UPGRADE, v.clone());
        }
    }
    let body: ProxyBody = if upgrade {
        Empty::new().map_err(|never| match never {}).boxed_unsync()
    } else {
        body.map_err(Into::into).boxed_unsync()
    };
    let outgoing = builder
        .body(body)
        .map_err(|e| ApiError::bad_request(format!("cannot proxy this request: {e}")))?;
    let mut sender = connect(ctx, backend).await?;
    let mut resp = sender.send_request(outgoing).await.map_err(|e| {
        ApiError::unavailable(format!(
            "error trying to reach {}:{}: {e}",
            backend.host, backend.port
        ))
    })?;
    if upgrade && resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        let to_client = parts
            .extensions
            .remove::<hyper::upgrade::OnUpgrade>()
            .ok_or_else(|| ApiError::bad_request("this connection cannot be upgraded"))?;
        let mut answer = Response::new(super::response::full(Bytes::new()));
        *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
        for (name, value) in resp.headers() {
            answer.headers_mut().append(name, value.clone());
        }
        let to_backend = hyper::upgrade::on(&mut resp);
        tokio::spawn(async move {
            match tokio::try_join!(to_backend, to_client) {
                Ok((backend, client)) => {
                    let (mut backend, mut client) = (TokioIo::new(backend), TokioIo::new(client));
                    let copied = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
                    tracing::debug!(?copied, "proxied upgraded connection ended");
                }
                Err(e) => tracing::debug!(error = %e, "proxied upgrade failed"),
            }
        });
        return Ok(answer);
    }
    let status = resp.status();
    let mut out_headers = HeaderMap::new();
    copy_end_to_end_headers(resp.headers(), &mut out_headers);
    let mut out = Response::new(stream_body(resp.into_body()));
    *out.status_mut() = status;
    *out.headers_mut() = out_headers;
    Ok(out)
}

/// The backend's body, streamed to the client as it comes (ends early when the backend
/// fails mid-way: the client sees a truncated body, as upstream).
fn stream_body(mut body: Incoming) -> Body {
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::spawn(async move {
        while let Some(Ok(frame)) = body.frame().await {
            if let Ok(data) = frame.into_data() {
                if tx.send(Ok(Frame::data(data))).await.is_err() {
                    return;
                }
            }
        }
    });
    StreamBody::new(ReceiverStream::new(rx)).boxed()
}

/// Copies the headers that are not about one connection (nor the caller's credentials
/// and impersonation, which the API server consumed).
pub fn copy_end_to_end_headers(from: &HeaderMap, to: &mut HeaderMap) {
    let named_in_connection: Vec<String> = from
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|t| t.trim().to_ascii_lowercase())
        .collect();
    for (name, value) in from {
        let n = name.as_str();
        if DROPPED_HEADERS.contains(&n)
            || n.starts_with("impersonate-")
            || named_in_connection.iter().any(|c| c == n)
        {
            continue;
        }
        to.append(name.clone(), value.clone());
    }
}

fn append_forwarded_for(headers: &mut HeaderMap, client: std::net::IpAddr) {
    let name = HeaderName::from_static("x-forwarded-for");
    let value = match headers.get(&name).and_then(|v| v.to_str().ok()) {
        Some(prior) => format!("{prior}, {client}"),
        None => client.to_string(),
    };
    if let Ok(v) = HeaderValue::from_str(&value) {
        headers.insert(name, v);
    }
}

/// Opens an HTTP/1.1 connection to the backend: plain, TLS without verification (what
/// upstream's proxy transport does for `https:` services and pods), or to a kubelet with
/// the kubelet-client identity, accepting only that node's kubelet certificate.
async fn connect(ctx: &ApiContext, backend: &Backend) -> Result<SendRequest<ProxyBody>, ApiError> {
    let unreachable = |e: String| {
        ApiError::unavailable(format!(
            "error trying to reach {}:{}: {e}",
            backend.host, backend.port
        ))
    };
    let tls = match (&backend.kubelet_of, backend.scheme) {
        (Some(node), _) => {
            let (cert_pem, key_pem) = ctx.pki.kubelet_client_credential();
            Some(
                crate::tls::kubelet_client_config(ctx.pki.ca_cert_pem(), cert_pem, key_pem, node)
                    .map_err(|e| ApiError::internal(e.to_string()))?,
            )
        }
        (None, Scheme::Https) => Some(
            crate::tls::client_config_unverified()
                .map_err(|e| ApiError::internal(e.to_string()))?,
        ),
        (None, Scheme::Http) => None,
    };
    let host = backend.host.clone();
    let port = backend.port;
    let open = async move {
        let tcp = TcpStream::connect((host.as_str(), port))
            .await
            .map_err(|e| e.to_string())?;
        match tls {
            None => handshake(tcp).await,
            Some(config) => {
                let server_name = ServerName::try_from(host.clone()).map_err(|e| e.to_string())?;
                let stream = TlsConnector::from(Arc::clone(&config))
                    .connect(server_name, tcp)
                    .await
                    .map_err(|e| e.to_string())?;
                handshake(stream).await
            }
        }
    };
    tokio::time::timeout(CONNECT_TIMEOUT, open)
        .await
        .map_err(|_| unreachable("timeout".into()))?
        .map_err(unreachable)
}

async fn handshake<IO>(io: IO) -> Result<SendRequest<ProxyBody>, String>
where
    IO: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!(error = %e, "proxied connection ended with an error");
        }
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn ids_split_into_scheme_name_and_port_as_upstream() {
        let s = split_scheme_name_port("web").unwrap();
        assert_eq!(
            (s.scheme, s.name.as_str(), s.port.as_str()),
            (Scheme::Http, "web", "")
        );
        let s = split_scheme_name_port("web:8080").unwrap();
        assert_eq!(s.port, "8080");
        let s = split_scheme_name_port("https:web:443").unwrap();
        assert_eq!((s.scheme, s.port.as_str()), (Scheme::Https, "443"));
        let s = split_scheme_name_port("https:web:").unwrap();
        assert_eq!((s.scheme, s.port.as_str()), (Scheme::Https, ""));
        for bad in ["ftp:web:21", ":80", "a:b:c:d", ""] {
            let e = split_scheme_name_port(bad).unwrap_err();
            assert_eq!(e.code, 400, "{bad}");
        }
    }

    #[test]
    fn a_service_port_number_means_its_name() {
        let svc = json!({"metadata": {"name": "web"}, "spec": {"ports": [
            {"name": "http", "port": 80}, {"name": "admin", "port": 9000}]}});
        assert_eq!(service_port_name(&svc, "9000").unwrap(), "admin");
        assert_eq!(service_port_name(&svc, "http").unwrap(), "http");
        assert_eq!(service_port_name(&svc, "").unwrap(), "");
        let e = service_port_name(&svc, "81").unwrap_err();
        assert_eq!(e.code, 503);
        assert!(e.message.contains("no service port 81"), "{}", e.message);
    }

    #[test]
    fn only_ready_addresses_of_the_named_port_are_backends() {
        let eps = json!({"subsets": [
            {"addresses": [{"ip": "10.42.0.2"}], "notReadyAddresses": [{"ip": "10.42.0.9"}],
             "ports": [{"name": "http", "port": 8080}]},
            {"addresses": [{"ip": "10.42.0.3"}], "ports": [{"name": "admin", "port": 9000}]},
        ]});
        assert_eq!(
            ready_addresses(&eps, "http"),
            vec![("10.42.0.2".to_string(), 8080)]
        );
        assert!(ready_addresses(&eps, "metrics").is_empty());
        let unnamed =
            json!({"subsets": [{"addresses": [{"ip": "10.42.0.4"}], "ports": [{"port": 80}]}]});
        assert_eq!(ready_addresses(&unnamed, "").len(), 1);
    }

    #[test]
    fn pod_ports_default_to_the_first_container_port() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "a"}, {"name": "b", "ports": [{"name": "web", "containerPort": 8080}]}]}});
        assert_eq!(pod_port(&pod, "").unwrap(), 8080);
        assert_eq!(pod_port(&pod, "web").unwrap(), 8080);
        assert_eq!(pod_port(&pod, "9090").unwrap(), 9090);
        assert_eq!(pod_port(&pod, "nope").unwrap_err().code, 400);
        let bare = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(pod_port(&bare, "").unwrap(), 80);
    }

    #[test]
    fn connection_headers_and_credentials_are_not_passed_on() {
        let mut from = HeaderMap::new();
        from.insert(
            header::AUTHORIZATION,
            HeaderValue::from_static("Bearer secret"),
        );
        from.insert("impersonate-user", HeaderValue::from_static("bob"));
        from.insert(header::CONNECTION, HeaderValue::from_static("close, x-hop"));
        from.insert("x-hop", HeaderValue::from_static("1"));
        from.insert(header::ACCEPT, HeaderValue::from_static("text/html"));
        from.insert(
            header::TRANSFER_ENCODING,
            HeaderValue::from_static("chunked"),
        );
        let mut to = HeaderMap::new();
        copy_end_to_end_headers(&from, &mut to);
        let names: Vec<&str> = to.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
        append_forwarded_for(&mut to, "10.0.0.1".parse().unwrap());
        append_forwarded_for(&mut to, "10.0.0.2".parse().unwrap());
        assert_eq!(to["x-forwarded-for"], "10.0.0.1, 10.0.0.2");
    }
}
