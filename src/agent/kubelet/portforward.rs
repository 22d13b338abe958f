//! `POST /portForward/{namespace}/{pod}`: the kubelet's end of `kubectl port-forward`.
//! The request upgrades to SPDY/3.1 (protocol `portforward.k8s.io`); the client then
//! opens two streams per forwarded connection (headers `streamType: error|data`, `port`,
//! `requestID`). Each pair is forwarded to a TCP connection to localhost:PORT opened
//! inside the pod's network namespace (on a dedicated OS thread that entered it); a
//! failure is written on the pair's error stream, which kubectl prints.
//!
//! The API server reaches this endpoint for both of kubectl's transports: SPDY directly,
//! and SPDY tunneled in WebSocket messages, which the API server unwraps. The client
//! libraries' WebSocket protocol (`v4.channel.k8s.io`) is served by `websocket`.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, info_span, warn, Instrument};

use super::server::Endpoint;
use super::spdy::{self, Decoder, Encoder, Frame, Headers, SpdyError};
use crate::agent::net::{is_netns, netns::spawn_in_netns};

/// The only port-forward protocol version (header `X-Stream-Protocol-Version`).
pub const PROTOCOL_V1: &str = "portforward.k8s.io";
/// The upgrade token of SPDY/3.1 (header `Upgrade`).
pub const SPDY_UPGRADE: &str = "SPDY/3.1";
/// Header naming the stream protocol versions a client speaks (and the one agreed).
pub const PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// How long the second stream of a pair may take after the first (upstream's default).
pub const STREAM_CREATION_TIMEOUT: Duration = Duration::from_secs(30);
/// How long connecting to the pod's port may take.
const DIAL_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest DATA frame sent (what spdystream's peers write per `io.Copy` round).
const DATA_CHUNK: usize = 32 * 1024;
/// DATA frames queued for one forwarded connection before the session waits for it.
const INBOUND_QUEUE: usize = 16;
/// Frames queued for the client before forwarders wait.
const OUTBOUND_QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum PortForwardError {
    #[error("unable to upgrade: missing upgrade headers in request (Connection: Upgrade, Upgrade: SPDY/3.1)")]
    NotSpdyUpgrade,
    #[error(
        "unable to upgrade: unable to negotiate protocol: client supports {client:?}, server accepts [\"{PROTOCOL_V1}\"]"
    )]
    Protocol { client: Vec<String> },
    #[error("pod {namespace}/{pod} is not running on this node")]
    PodNotHere { namespace: String, pod: String },
}

impl PortForwardError {
    pub fn status(&self) -> StatusCode {
        match self {
            PortForwardError::NotSpdyUpgrade => StatusCode::BAD_REQUEST,
            PortForwardError::Protocol { .. } => StatusCode::FORBIDDEN,
            PortForwardError::PodNotHere { .. } => StatusCode::NOT_FOUND,
        }
    }
}

/// Whether the headers ask for a SPDY/3.1 upgrade.
pub fn is_spdy_upgrade(headers: &http::HeaderMap) -> bool {
    let has = |name: header::HeaderName, token: &str| {
        headers.get_all(name).iter().any(|v| {
            v.to_str()
                .is_ok_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
        })
    };
    has(header::CONNECTION, "upgrade") && has(header::UPGRADE, SPDY_UPGRADE)
}

/// The protocol to answer with: `None` for a legacy client that names none, the
/// port-forward protocol when offered, an error otherwise.
pub fn negotiate(headers: &http::HeaderMap) -> Result<Option<&'static str>, PortForwardError> {
    let offered: Vec<String> = headers
        .get_all(PROTOCOL_HEADER)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect();
    if offered.is_empty() {
        return Ok(None);
    }
    if offered.iter().any(|p| p == PROTOCOL_V1) {
        return Ok(Some(PROTOCOL_V1));
    }
    Err(PortForwardError::Protocol { client: offered })
}

/// Answers a port-forward request: `101 Switching Protocols` with the SPDY session
/// running behind it, or the error.
pub fn port_forward(
    req: Request<Incoming>,
    endpoint: &Endpoint,
    namespace: &str,
    pod: &str,
) -> Result<Response<super::server::Body>, PortForwardError> {
    let protocol = negotiate(req.headers())?;
    if !is_spdy_upgrade(req.headers()) {
        return Err(PortForwardError::NotSpdyUpgrade);
    }
    let (uid, dialer) = pod_dialer(endpoint, namespace, pod)?;
    let target = Target {
        pod: format!("{namespace}/{pod}"),
        uid: uid.clone(),
        dialer,
    };
    let upgrade = hyper::upgrade::on(req);
    let span = info_span!("port_forward", pod = %target.pod, %uid);
    tokio::spawn(
        async move {
            match upgrade.await {
                Ok(upgraded) => serve(TokioIo::new(upgraded), Arc::new(target)).await,
                Err(e) => warn!(error = %e, "port-forward upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut resp = Response::new(super::server::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static(SPDY_UPGRADE));
    if let Some(p) = protocol {
        headers.insert(PROTOCOL_HEADER, HeaderValue::from_static(p));
    }
    Ok(resp)
}

/// The uid of a pod of this node and how to reach its ports: inside its network
/// namespace, or the node's for a `hostNetwork` pod (as upstream, whose sandbox then is
/// the node's namespace).
pub fn pod_dialer(
    endpoint: &Endpoint,
    namespace: &str,
    pod: &str,
) -> Result<(String, PodDialer), PortForwardError> {
    let entry = endpoint
        .pods
        .read()
        .ok()
        .and_then(|p| p.get(&(namespace.to_string(), pod.to_string())).cloned())
        .ok_or_else(|| PortForwardError::PodNotHere {
            namespace: namespace.to_string(),
            pod: pod.to_string(),
        })?;
    let dialer = if entry.host_network {
        PodDialer::host()
    } else {
        PodDialer::in_netns(endpoint.netns_dir.join(&entry.uid))
    };
    Ok((entry.uid, dialer))
}

/// Opens TCP connections to localhost inside a pod's network namespace.
#[derive(Debug, Clone)]
pub struct PodDialer {
    /// `None`: the namespace of the process (tests).
    netns: Option<PathBuf>,
}

impl PodDialer {
    pub fn in_netns(path: PathBuf) -> Self {
        PodDialer { netns: Some(path) }
    }

    /// Dials in the process's own network namespace (the node's).
    pub fn host() -> Self {
        PodDialer { netns: None }
    }

    /// Connects to localhost:`port` (IPv4, then IPv6, as containerd does). The socket is
    /// made on an OS thread that entered the namespace; it stays in that namespace.
    pub async fn dial(&self, port: u16) -> Result<TcpStream, String> {
        if let Some(path) = &self.netns {
            if !is_netns(path) {
                return Err("the pod has no network namespace on this node".into());
            }
        }
        let (tx, rx) = oneshot::channel();
        spawn_in_netns(self.netns.clone(), move || {
            let _ = tx.send(connect_localhost(port));
            Ok(())
        })
        .map_err(|e| format!("start a thread in the pod's network namespace: {e}"))?;
        let std = rx
            .await
            .map_err(|_| "the pod's network namespace could not be entered".to_string())??;
        std.set_nonblocking(true).map_err(|e| e.to_string())?;
        // What the client wrote goes on at once, as a Go dialer's connection does.
        let _ = std.set_nodelay(true);
        TcpStream::from_std(std).map_err(|e| e.to_string())
    }
}

fn connect_localhost(port: u16) -> Result<std::net::TcpStream, String> {
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let e4 = match std::net::TcpStream::connect_timeout(&v4, DIAL_TIMEOUT) {
        Ok(s) => return Ok(s),
        Err(e) => e,
    };
    let v6 = std::net::SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, port));
    match std::net::TcpStream::connect_timeout(&v6, DIAL_TIMEOUT) {
        Ok(s) => Ok(s),
        Err(e6) => Err(format!(
            "failed to connect to localhost:{port} inside the pod's network namespace: \
             IPv4: dial tcp4 {v4}: connect: {} IPv6: dial tcp6 {v6}: connect: {}",
            describe(&e4),
            describe(&e6)
        )),
    }
}

/// An I/O error as Go prints a syscall error (`connection refused`).
fn describe(e: &io::Error) -> String {
    match e.raw_os_error() {
        Some(code) => nix::errno::Errno::from_raw(code).desc().to_lowercase(),
        None => e.to_string(),
    }
}

/// The pod a session forwards to.
pub struct Target {
    /// `namespace/name`, for messages.
    pub pod: String,
    pub uid: String,
    pub dialer: PodDialer,
}

/// The two streams of one forwarded connection, as they arrive.
struct Pair {
    port: u16,
    error: Option<u32>,
    data: Option<u32>,
    deadline: Instant,
}

/// What the session knows of a stream the client opened.
struct StreamEntry {
    request: String,
    /// Where the client's DATA go (data streams of running pairs); dropped at its FIN.
    inbound: Option<mpsc::Sender<Bytes>>,
    /// Set when the client resets the stream.
    reset: Option<watch::Sender<bool>>,
}

/// Runs one port-forward session on `io` until the client hangs up.
pub async fn serve<S>(io: S, target: Arc<Target>)
where
    S: AsyncRead + AsyncWrite + Send + 'static,
{
    let (mut reader, writer) = tokio::io::split(io);
    let (out, queue) = mpsc::channel::<Frame>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(write_frames(writer, queue));
    let (done_tx, mut done) = mpsc::unbounded_channel::<(String, u32, u32)>();
    let mut session = Session {
        target,
        out,
        done: done_tx,
        streams: HashMap::new(),
        pairs: HashMap::new(),
        forwarders: JoinSet::new(),
        last_stream_id: 0,
        gone_away: false,
    };
    let mut decoder = Decoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    'session: loop {
        let next_deadline = session.pairs.values().map(|p| p.deadline).min();
        tokio::select! {
            read = reader.read_buf(&mut buf) => {
                match read {
                    Ok(0) => break,
                    Err(e) => {
                        debug!(error = %e, "port-forward connection failed");
                        break;
                    }
                    Ok(_) => {}
                }
                loop {
                    match decoder.decode(&mut buf) {
                        Ok(Some(frame)) => session.handle(frame).await,
                        Ok(None) => break,
                        Err(e) => {
                            session.protocol_error(&e).await;
                            break 'session;
                        }
                    }
                }
            }
            Some((request, error, data_id)) = done.recv() => {
                session.streams.remove(&error);
                session.streams.remove(&data_id);
                while session.forwarders.try_join_next().is_some() {}
                debug!(%request, "forwarded connection closed");
            }
            _ = sleep_until(next_deadline) => session.expire_pairs().await,
        }
        if session.gone_away && session.forwarders.is_empty() {
            break;
        }
    }
    // Hanging up ends every forwarded connection; the writer ends with the last sender.
    session.forwarders.abort_all();
    drop(session);
    let _ = writer.await;
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

struct Session {
    target: Arc<Target>,
    out: mpsc::Sender<Frame>,
    done: mpsc::UnboundedSender<(String, u32, u32)>,
    streams: HashMap<u32, StreamEntry>,
    pairs: HashMap<String, Pair>,
    forwarders: JoinSet<()>,
    last_stream_id: u32,
    gone_away: bool,
}

impl Session {
    async fn send(&self, frame: Frame) {
        let _ = self.out.send(frame).await;
    }

    async fn handle(&mut self, frame: Frame) {
        match frame {
            Frame::SynStream {
                stream_id,
                flags,
                headers,
                ..
            } => self.open_stream(stream_id, flags, &headers).await,
            Frame::Data {
                stream_id,
                flags,
                data,
            } => {
                let Some(entry) = self.streams.get_mut(&stream_id) else {
                    return;
                };
                if !data.is_empty() {
                    if let Some(inbound) = &entry.inbound {
                        if inbound.send(data).await.is_err() {
                            entry.inbound = None;
                        }
                    }
                }
                if flags & spdy::FLAG_FIN != 0 {
                    entry.inbound = None;
                }
            }
            Frame::RstStream { stream_id, .. } => {
                if let Some(entry) = self.streams.get_mut(&stream_id) {
                    entry.inbound = None;
                    if let Some(reset) = &entry.reset {
                        let _ = reset.send(true);
                    }
                    let request = entry.request.clone();
                    // A stream reset before its pair was complete cancels the pair.
                    if let Some(pair) = self.pairs.remove(&request) {
                        for id in [pair.error, pair.data].into_iter().flatten() {
                            self.streams.remove(&id);
                        }
                    }
                }
            }
            Frame::Ping { id } => {
                // Pings the client started (odd ids) are answered; ours are never sent.
                if !id.is_multiple_of(2) {
                    self.send(Frame::Ping { id }).await;
                }
            }
            Frame::GoAway { .. } => self.gone_away = true,
            Frame::SynReply { .. }
            | Frame::Headers { .. }
            | Frame::Settings { .. }
            | Frame::WindowUpdate { .. }
            | Frame::Unknown { .. } => {}
        }
    }

    async fn open_stream(&mut self, stream_id: u32, flags: u8, headers: &Headers) {
        // Client streams have odd, increasing ids.
        if stream_id.is_multiple_of(2) || stream_id <= self.last_stream_id {
            self.reset(stream_id, spdy::status::PROTOCOL_ERROR).await;
            return;
        }
        self.last_stream_id = stream_id;
        if self.gone_away {
            self.reset(stream_id, spdy::status::REFUSED_STREAM).await;
            return;
        }
        let (port, kind) = match stream_kind(headers) {
            Ok(k) => k,
            Err(why) => {
                debug!(stream_id, %why, "port-forward stream refused");
                self.reset(stream_id, spdy::status::CANCEL).await;
                return;
            }
        };
        let request = request_id(headers, kind, stream_id);
        self.send(Frame::SynReply {
            stream_id,
            flags: 0,
            headers: vec![],
        })
        .await;
        let pair = self.pairs.entry(request.clone()).or_insert_with(|| Pair {
            port,
            error: None,
            data: None,
            deadline: Instant::now() + STREAM_CREATION_TIMEOUT,
        });
        let slot = match kind {
            StreamKind::Error => &mut pair.error,
            StreamKind::Data => &mut pair.data,
        };
        if slot.is_some() {
            let message = format!(
                "error processing stream for request {request}: {} stream already assigned",
                kind.as_str()
            );
            self.reset(stream_id, spdy::status::STREAM_IN_USE).await;
            if let Some(error) = self.pairs.get(&request).and_then(|p| p.error) {
                self.send(data(error, message.into_bytes(), false)).await;
            }
            return;
        }
        *slot = Some(stream_id);
        self.streams.insert(
            stream_id,
            StreamEntry {
                request: request.clone(),
                inbound: None,
                reset: None,
            },
        );
        let Some(Pair {
            port,
            error: Some(error),
            data: Some(data_id),
            ..
        }) = self.pairs.get(&request)
        else {
            return;
        };
        let (port, error, data_id) = (*port, *error, *data_id);
        self.pairs.remove(&request);
        let (inbound_tx, inbound) = mpsc::channel(INBOUND_QUEUE);
        let (reset_tx, reset) = watch::channel(false);
        for id in [error, data_id] {
            if let Some(entry) = self.streams.get_mut(&id) {
                entry.reset = Some(reset_tx.clone());
            }
        }
        // The client may have closed its half of the data stream with the SYN_STREAM.
        let data_open = !(kind == StreamKind::Data && flags & spdy::FLAG_FIN != 0);
        if let Some(entry) = self.streams.get_mut(&data_id) {
            entry.inbound = data_open.then_some(inbound_tx);
        }
        let forward = Forward {
            target: self.target.clone(),
            request: request.clone(),
            port,
            error,
            data: data_id,
            out: self.out.clone(),
        };
        let done = self.done.clone();
        self.forwarders.spawn(
            async move {
                forward.run(inbound, reset).await;
                let _ = done.send((request, error, data_id));
            }
            .in_current_span(),
        );
    }

    async fn reset(&self, stream_id: u32, status: u32) {
        self.send(Frame::RstStream { stream_id, status }).await;
    }

    /// Pairs whose second stream did not come in time: told on their error stream.
    async fn expire_pairs(&mut self) {
        let now = Instant::now();
        let expired: Vec<String> = self
            .pairs
            .iter()
            .filter(|(_, p)| p.deadline <= now)
            .map(|(r, _)| r.clone())
            .collect();
        for request in expired {
            let Some(pair) = self.pairs.remove(&request) else {
                continue;
            };
            debug!(%request, "port-forward pair timed out waiting for streams");
            if let Some(error) = pair.error {
                let message = format!("request {request}: timed out waiting for streams");
                self.send(data(error, message.into_bytes(), false)).await;
                self.send(data(error, Vec::new(), true)).await;
            }
            if let Some(data_id) = pair.data {
                self.send(data(data_id, Vec::new(), true)).await;
            }
            for id in [pair.error, pair.data].into_iter().flatten() {
                self.streams.remove(&id);
            }
        }
    }

    async fn protocol_error(&self, e: &SpdyError) {
        warn!(error = %e, "port-forward client spoke invalid SPDY; closing");
        self.send(Frame::GoAway {
            last_good_stream_id: self.last_stream_id,
            status: 1,
        })
        .await;
    }
}

fn data(stream_id: u32, bytes: Vec<u8>, fin: bool) -> Frame {
    Frame::Data {
        stream_id,
        flags: if fin { spdy::FLAG_FIN } else { 0 },
        data: Bytes::from(bytes),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StreamKind {
    Error,
    Data,
}

impl StreamKind {
    fn as_str(self) -> &'static str {
        match self {
            StreamKind::Error => "error",
            StreamKind::Data => "data",
        }
    }
}

/// A stream's port and kind from its headers (as upstream's kubelet checks them).
fn stream_kind(headers: &Headers) -> Result<(u16, StreamKind), String> {
    let port = spdy::header(headers, "port").ok_or("\"port\" header is required")?;
    let port: u16 = port
        .parse()
        .map_err(|e| format!("unable to parse {port:?} as a port: {e}"))?;
    if port == 0 {
        return Err("port \"0\" must be > 0".into());
    }
    let kind = match spdy::header(headers, "streamtype") {
        Some("error") => StreamKind::Error,
        Some("data") => StreamKind::Data,
        Some(other) => return Err(format!("invalid stream type {other:?}")),
        None => return Err("\"streamType\" header is required".into()),
    };
    Ok((port, kind))
}

/// The request a stream belongs to: its `requestID`, or for old clients without one the
/// id upstream derives from consecutive stream ids.
fn request_id(headers: &Headers, kind: StreamKind, stream_id: u32) -> String {
    match spdy::header(headers, "requestid") {
        Some(id) if !id.is_empty() => id.to_string(),
        _ => match kind {
            StreamKind::Error => stream_id.to_string(),
            StreamKind::Data => stream_id.saturating_sub(2).to_string(),
        },
    }
}

/// One forwarded connection: a pair of streams and a TCP connection in the pod.
struct Forward {
    target: Arc<Target>,
    request: String,
    port: u16,
    error: u32,
    data: u32,
    out: mpsc::Sender<Frame>,
}

impl Forward {
    async fn run(self, inbound: mpsc::Receiver<Bytes>, mut reset: watch::Receiver<bool>) {
        let tcp = match self.target.dialer.dial(self.port).await {
            Ok(tcp) => tcp,
            Err(why) => {
                let message = format!(
                    "error forwarding port {} to pod {}, uid {}: {why}",
                    self.port, self.target.pod, self.target.uid
                );
                debug!(request = %self.request, port = self.port, %why, "port-forward dial failed");
                let _ = self
                    .out
                    .send(data(self.error, message.into_bytes(), false))
                    .await;
                let _ = self.out.send(data(self.error, Vec::new(), true)).await;
                let _ = self.out.send(data(self.data, Vec::new(), true)).await;
                return;
            }
        };
        debug!(request = %self.request, port = self.port, "forwarding");
        let (from_pod, to_pod) = tcp.into_split();
        let copy = async {
            tokio::join!(
                client_to_pod(inbound, to_pod),
                pod_to_client(from_pod, self.data, &self.out)
            )
        };
        tokio::select! {
            _ = copy => {}
            _ = reset.wait_for(|r| *r) => {}
        }
        // An empty error stream tells the client the forwarding ended without error.
        let _ = self.out.send(data(self.error, Vec::new(), true)).await;
    }
}

/// Writes the client's data to the pod; its FIN half-closes the TCP connection.
async fn client_to_pod(
    mut inbound: mpsc::Receiver<Bytes>,
    mut to_pod: tokio::net::tcp::OwnedWriteHalf,
) {
    while let Some(bytes) = inbound.recv().await {
        if to_pod.write_all(&bytes).await.is_err() {
            return;
        }
    }
    let _ = to_pod.shutdown().await;
}

/// Sends what the pod writes on the data stream, then the stream's FIN.
async fn pod_to_client(
    mut from_pod: tokio::net::tcp::OwnedReadHalf,
    stream_id: u32,
    out: &mpsc::Sender<Frame>,
) {
    let mut buf = vec![0u8; DATA_CHUNK];
    loop {
        match from_pod.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if out
                    .send(data(stream_id, buf[..n].to_vec(), false))
                    .await
                    .is_err()
                {
                    return;
                }
            }
        }
    }
    let _ = out.send(data(stream_id, Vec::new(), true)).await;
}

/// Encodes queued frames onto the connection (several per write when they pile up).
async fn write_frames<W: AsyncWrite>(writer: W, mut queue: mpsc::Receiver<Frame>) {
    tokio::pin!(writer);
    let mut encoder = Encoder::new();
    let mut buf = BytesMut::with_capacity(64 * 1024);
    while let Some(frame) = queue.recv().await {
        let mut next = Some(frame);
        while let Some(frame) = next.take() {
            if let Err(e) = encoder.encode(&frame, &mut buf) {
                warn!(error = %e, "port-forward frame not sent");
            }
            if buf.len() < DATA_CHUNK * 4 {
                next = queue.try_recv().ok();
            }
        }
        if writer.write_all(&buf).await.is_err() || writer.flush().await.is_err() {
            return;
        }
        buf.clear();
    }
    let _ = writer.shutdown().await;
}

pub mod websocket;

#[cfg(test)]
mod tests;
