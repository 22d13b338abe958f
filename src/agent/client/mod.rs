//! A small HTTPS client for the Kubernetes API, as the agent uses it: JSON in and out over
//! one kept-alive HTTP/1.1 connection (reopened when it breaks), TLS pinned by the caller.
//! [`watch`] lists and watches on top of it; [`error`] is what a failed call returns;
//! [`last_known`] keeps what the watches saw on disk, for a start without server;
//! [`servers`] is the list of servers the clients of one agent share and fail over in.

pub mod error;
#[cfg(test)]
pub mod fake;
pub mod last_known;
pub mod servers;
pub mod watch;

pub use error::{ApiError, Rejection};
pub use servers::Servers;
pub use watch::{Event, ListWatchApi, Query, Reflector};

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use serde_json::Value;
use tokio::net::TcpStream;
use tokio::sync::Mutex;
use tokio_rustls::TlsConnector;

/// Longest a connection attempt (TCP and TLS) may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Port used when the URL names none.
pub const DEFAULT_PORT: u16 = 6443;
/// Back-off between attempts of anything the agent retries: doubling from the first to
/// the last.
pub const FIRST_RETRY: Duration = Duration::from_secs(1);
pub const MAX_RETRY: Duration = Duration::from_secs(30);

/// The delay before attempt `attempt + 1` (doubling from 1 s, at most 30 s).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_RETRY
        .saturating_mul(2u32.saturating_pow(attempt.min(16)))
        .min(MAX_RETRY)
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(
        "invalid server url {url:?}: expected https://HOST[:PORT], e.g. https://10.0.0.1:6443"
    )]
    InvalidUrl { url: String },
    #[error("connect to {addr}")]
    Connect {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("tls handshake with {addr}")]
    Handshake {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("http exchange with {addr}")]
    Http {
        addr: String,
        #[source]
        source: hyper::Error,
    },
    #[error("no answer from {addr} within {}s", REQUEST_TIMEOUT.as_secs())]
    Timeout { addr: String },
    #[error("build request")]
    BuildRequest(#[source] http::Error),
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// The host and port of an `https://` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerAddr {
    pub host: String,
    pub port: u16,
}

impl ServerAddr {
    /// Parses `https://HOST[:PORT][/]` (IPv6 hosts in brackets).
    pub fn parse(url: &str) -> Result<ServerAddr> {
        let invalid = || ClientError::InvalidUrl {
            url: url.to_string(),
        };
        let uri: http::Uri = url.parse().map_err(|_| invalid())?;
        if uri.scheme_str() != Some("https") || !matches!(uri.path(), "" | "/") {
            return Err(invalid());
        }
        let host = uri.host().filter(|h| !h.is_empty()).ok_or_else(invalid)?;
        let host = host.trim_start_matches('[').trim_end_matches(']');
        Ok(ServerAddr {
            host: host.to_string(),
            port: uri.port_u16().unwrap_or(DEFAULT_PORT),
        })
    }

    /// `host:port` for messages and the Host header.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn url(&self) -> String {
        format!("https://{}", self.authority())
    }
}

/// An answer: the status code and the body.
#[derive(Debug, Clone)]
pub struct Response {
    pub status: StatusCode,
    pub body: Bytes,
}

impl Response {
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The `message` of a Kubernetes `Status` body, else the body as text.
    pub fn message(&self) -> String {
        match self.json() {
            Some(v) if v["message"].is_string() => v["message"].as_str().unwrap_or("").into(),
            _ => String::from_utf8_lossy(&self.body).trim().to_string(),
        }
    }
}

/// An API client. Cheap to share (`Arc`); requests are serialized over one
/// connection, which suits the agent's few requests. It talks to the current server
/// of its [`Servers`]; a server that cannot be reached hands over to the next.
pub struct ApiClient {
    servers: Arc<Servers>,
    tls: TlsConnector,
    bearer: Option<String>,
    conn: Mutex<Option<Conn>>,
}

/// A kept connection and the server at its other end.
struct Conn {
    sender: SendRequest<Full<Bytes>>,
    addr: ServerAddr,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient")
            .field("addr", &self.servers.current())
            .finish_non_exhaustive()
    }
}

impl ApiClient {
    /// A client for `addr` alone with `tls` (pinned CA, maybe a client certificate)
    /// and an optional bearer token.
    pub fn new(addr: ServerAddr, tls: Arc<ClientConfig>, bearer: Option<String>) -> ApiClient {
        ApiClient::with_servers(Servers::new(addr), tls, bearer)
    }

    /// A client of the servers in `servers` (shared with the agent's other clients).
    pub fn with_servers(
        servers: Arc<Servers>,
        tls: Arc<ClientConfig>,
        bearer: Option<String>,
    ) -> ApiClient {
        ApiClient {
            servers,
            tls: TlsConnector::from(tls),
            bearer,
            conn: Mutex::new(None),
        }
    }

    /// The server requests go to now.
    pub fn addr(&self) -> ServerAddr {
        self.servers.current()
    }

    /// Drops the kept connection (the next request opens a new one): for a caller that
    /// gave up on a request, whose connection may be stuck on a dead link or on a
    /// server that died. The next request goes to the next known server (the caller's
    /// timeout may have cut a connection attempt short, before it could fail over).
    pub async fn disconnect(&self) {
        let mut conn = self.conn.lock().await;
        let addr = match conn.take() {
            Some(c) => c.addr,
            None => self.servers.current(),
        };
        self.servers.failed(&addr);
    }

    pub async fn get(&self, path: &str) -> Result<Response> {
        self.request(Method::GET, path, None, "").await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Response> {
        self.request(Method::POST, path, Some(body), "application/json")
            .await
    }

    pub async fn merge_patch(&self, path: &str, body: &Value) -> Result<Response> {
        self.request(
            Method::PATCH,
            path,
            Some(body),
            "application/merge-patch+json",
        )
        .await
    }

    /// Sends one request, reconnecting once if the kept connection turned out closed.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        content_type: &str,
    ) -> Result<Response> {
        let bytes = body
            .map(|b| Bytes::from(serde_json::to_vec(b).unwrap_or_default()))
            .unwrap_or_default();
        let exchange = async {
            let mut conn = self.conn.lock().await;
            let mut fresh = false;
            loop {
                if conn.as_ref().is_none_or(|c| c.sender.is_closed()) {
                    fresh = true;
                    *conn = Some(self.connect().await?);
                }
                let Some(Conn { sender, addr }) = conn.as_mut() else {
                    unreachable!("connected above");
                };
                let addr = addr.clone();
                let req = self.build(&addr, &method, path, bytes.clone(), content_type)?;
                let sent = match sender.ready().await {
                    Ok(()) => sender.send_request(req).await,
                    Err(e) => Err(e),
                };
                match sent {
                    Ok(resp) => {
                        let status = resp.status();
                        let body = resp.into_body().collect().await.map_err(|source| {
                            ClientError::Http {
                                addr: addr.authority(),
                                source,
                            }
                        })?;
                        return Ok(Response {
                            status,
                            body: body.to_bytes(),
                        });
                    }
                    // A kept connection the server closed meanwhile: retry once on a new one.
                    Err(_) if !fresh => {
                        *conn = None;
                        continue;
                    }
                    Err(source) => {
                        *conn = None;
                        return Err(ClientError::Http {
                            addr: addr.authority(),
                            source,
                        });
                    }
                }
            }
        };
        let addr = self.servers.current();
        match tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => {
                // The connection may be stuck mid-exchange: never reuse it, and try
                // another server next time.
                if let Ok(mut conn) = self.conn.try_lock() {
                    *conn = None;
                }
                self.servers.failed(&addr);
                Err(ClientError::Timeout {
                    addr: addr.authority(),
                })
            }
        }
    }

    /// Sends a GET whose answer is a long-lived stream (a watch) on a connection of its
    /// own, so the kept connection stays free for other requests. Only connecting and the
    /// response head are bounded in time; the body is read by the caller.
    pub async fn stream(&self, path: &str) -> Result<(StatusCode, hyper::body::Incoming)> {
        let Conn { mut sender, addr } = self.connect().await?;
        let req = self.build(&addr, &Method::GET, path, Bytes::new(), "")?;
        let head = async {
            sender.ready().await?;
            sender.send_request(req).await
        };
        match tokio::time::timeout(REQUEST_TIMEOUT, head).await {
            Ok(Ok(resp)) => Ok((resp.status(), resp.into_body())),
            Ok(Err(source)) => Err(ClientError::Http {
                addr: addr.authority(),
                source,
            }),
            Err(_) => {
                self.servers.failed(&addr);
                Err(ClientError::Timeout {
                    addr: addr.authority(),
                })
            }
        }
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Response> {
        self.request(Method::PUT, path, Some(body), "application/json")
            .await
    }

    pub async fn delete(&self, path: &str, body: &Value) -> Result<Response> {
        self.request(Method::DELETE, path, Some(body), "application/json")
            .await
    }

    fn build(
        &self,
        addr: &ServerAddr,
        method: &Method,
        path: &str,
        body: Bytes,
        content_type: &str,
    ) -> Result<Request<Full<Bytes>>> {
        let mut req = Request::builder()
            .method(method.clone())
            .uri(path)
            .header(header::HOST, addr.authority())
            .header(header::ACCEPT, "application/json")
            .header(
                header::USER_AGENT,
                concat!("orc-agent/", env!("CARGO_PKG_VERSION")),
            );
        if !content_type.is_empty() {
            req = req.header(header::CONTENT_TYPE, content_type);
        }
        if let Some(token) = &self.bearer {
            req = req.header(header::AUTHORIZATION, format!("Bearer {token}"));
        }
        req.body(Full::new(body)).map_err(ClientError::BuildRequest)
    }

    /// Connects to the current server; one that cannot be reached hands over to the
    /// next, each known server tried once.
    async fn connect(&self) -> Result<Conn> {
        let mut addr = self.servers.current();
        let mut tries = self.servers.all().len();
        loop {
            match self.connect_to(&addr).await {
                Ok(sender) => return Ok(Conn { sender, addr }),
                Err(e) => {
                    let next = self.servers.failed(&addr);
                    tries -= 1;
                    if tries == 0 || next == addr {
                        return Err(e);
                    }
                    tracing::debug!(server = %addr.authority(), error = %e, "connect failed; trying the next server");
                    addr = next;
                }
            }
        }
    }

    async fn connect_to(&self, server: &ServerAddr) -> Result<SendRequest<Full<Bytes>>> {
        let addr = server.authority();
        let connect = async {
            let tcp = TcpStream::connect((server.host.as_str(), server.port))
                .await
                .map_err(|source| ClientError::Connect {
                    addr: addr.clone(),
                    source,
                })?;
            let _ = tcp.set_nodelay(true);
            let name = ServerName::try_from(server.host.clone())
                .map_err(|_| ClientError::InvalidUrl { url: server.url() })?;
            let tls =
                self.tls
                    .connect(name, tcp)
                    .await
                    .map_err(|source| ClientError::Handshake {
                        addr: addr.clone(),
                        source,
                    })?;
            let (sender, conn) = http1::handshake(TokioIo::new(tls))
                .await
                .map_err(|source| ClientError::Http {
                    addr: addr.clone(),
                    source,
                })?;
            tokio::spawn(async move {
                if let Err(e) = conn.await {
                    tracing::debug!(error = %e, "api connection ended");
                }
            });
            Ok(sender)
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, connect).await {
            Ok(r) => r,
            Err(_) => Err(ClientError::Connect {
                addr: addr.clone(),
                source: std::io::Error::new(std::io::ErrorKind::TimedOut, "connection timed out"),
            }),
        }
    }
}

/// Reads a watch response body (newline-delimited JSON events) one event at a time.
pub struct WatchEvents {
    body: hyper::body::Incoming,
    buf: bytes::BytesMut,
}

/// One watch event: its `type` (ADDED, MODIFIED, DELETED, BOOKMARK, ERROR) and object.
pub struct WatchEvent {
    pub kind: String,
    pub object: Value,
}

impl WatchEvents {
    pub fn new(body: hyper::body::Incoming) -> WatchEvents {
        WatchEvents {
            body,
            buf: bytes::BytesMut::new(),
        }
    }

    /// The next event; `None` when the server ended the watch. Lines that are not JSON
    /// are skipped; a broken stream is an error (the caller relists or re-watches).
    pub async fn next(&mut self) -> Option<std::result::Result<WatchEvent, hyper::Error>> {
        use bytes::Buf;
        loop {
            while let Some(nl) = self.buf.iter().position(|&b| b == b'\n') {
                let line = self.buf.split_to(nl + 1);
                if let Ok(mut event) = serde_json::from_slice::<Value>(line.chunk()) {
                    let kind = event["type"].as_str().unwrap_or("").to_string();
                    return Some(Ok(WatchEvent {
                        kind,
                        object: event["object"].take(),
                    }));
                }
            }
            match self.body.frame().await? {
                Err(e) => return Some(Err(e)),
                Ok(frame) => {
                    if let Ok(data) = frame.into_data() {
                        self.buf.extend_from_slice(&data);
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_urls_parse_with_default_port() {
        let a = ServerAddr::parse("https://10.0.0.1:6444").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("10.0.0.1", 6444));
        let a = ServerAddr::parse("https://server.lan/").unwrap();
        assert_eq!((a.host.as_str(), a.port), ("server.lan", DEFAULT_PORT));
        let a = ServerAddr::parse("https://[fd00::1]:6443").unwrap();
        assert_eq!(a.host, "fd00::1");
        assert_eq!(a.authority(), "[fd00::1]:6443");
        for bad in [
            "http://10.0.0.1:6443",
            "10.0.0.1:6443",
            "https://",
            "https://h/x",
        ] {
            let e = ServerAddr::parse(bad).unwrap_err();
            assert!(e.to_string().contains("expected https://"), "{bad}: {e}");
        }
    }
}
