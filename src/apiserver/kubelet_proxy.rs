//! `pods/{name}/log`, `pods/{name}/exec` and `pods/{name}/portforward`: the API server asks the kubelet of the
//! pod's node (its InternalIP and daemonEndpoints port, over HTTPS with the kubelet-client
//! certificate, verifying the node's kubelet serving certificate) and streams the answer back. An exec's WebSocket upgrade is passed on to
//! the kubelet, and once both sides switched protocols the bytes are spliced: the
//! kubelet speaks the remote command protocol with the client. A port-forward always
//! reaches the kubelet as a SPDY/3.1 upgrade: kubectl's own SPDY is spliced, and the SPDY
//! it tunnels in binary WebSocket messages (`SPDY/3.1+portforward.k8s.io`) is unwrapped
//! here, as upstream's API server does.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{header, HeaderValue, Request, Response, StatusCode};
use http_body_util::{BodyExt, Empty, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_rustls::TlsConnector;
use tokio_stream::wrappers::ReceiverStream;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;

use super::request::Query;
use super::response::Body;
use super::ApiContext;
use crate::api::resources;
use crate::api::status::ApiError;

/// Longest connecting to a kubelet may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Kubelet port when the Node does not advertise one.
const DEFAULT_KUBELET_PORT: u64 = 10250;
/// Query parameters passed on to the kubelet.
const LOG_PARAMS: [&str; 6] = [
    "follow",
    "tailLines",
    "previous",
    "timestamps",
    "sinceSeconds",
    "sinceTime",
];

/// Query parameters of an exec passed on to the kubelet (an attach's: all but `command`).
const EXEC_PARAMS: [&str; 5] = ["command", "stdin", "stdout", "stderr", "tty"];
/// Headers of a WebSocket handshake passed on to the kubelet.
const WEBSOCKET_HEADERS: [header::HeaderName; 4] = [
    header::UPGRADE,
    header::SEC_WEBSOCKET_KEY,
    header::SEC_WEBSOCKET_VERSION,
    header::SEC_WEBSOCKET_PROTOCOL,
];
/// Headers of the kubelet's `101 Switching Protocols` passed back to the client.
const SWITCH_HEADERS: [header::HeaderName; 4] = [
    header::CONNECTION,
    header::UPGRADE,
    header::SEC_WEBSOCKET_ACCEPT,
    header::SEC_WEBSOCKET_PROTOCOL,
];

/// The WebSocket subprotocol kubectl tunnels port-forward's SPDY in.
pub const PORT_FORWARD_WEBSOCKET_PROTOCOL: &str = "SPDY/3.1+portforward.k8s.io";
/// The port-forward stream protocol (header `X-Stream-Protocol-Version`).
const PORT_FORWARD_PROTOCOL: &str = "portforward.k8s.io";
/// Header naming the stream protocol versions a client speaks (and the one agreed).
const STREAM_PROTOCOL_HEADER: &str = "x-stream-protocol-version";
/// Largest chunk of the kubelet's bytes sent in one WebSocket message.
const TUNNEL_CHUNK: usize = 32 * 1024;
/// After one direction of a tunnel ended, how long the other may take to end too.
const TUNNEL_CLOSE_WAIT: Duration = Duration::from_secs(5);

/// The container a log or exec request means: the one named, or the pod's only container.
pub fn log_container(pod: &Value, requested: &str) -> Result<String, ApiError> {
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let names: Vec<&str> = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| pod["spec"][*f].as_array().into_iter().flatten())
        .filter_map(|c| c["name"].as_str())
        .collect();
    if !requested.is_empty() {
        return if names.contains(&requested) {
            Ok(requested.to_string())
        } else {
            Err(ApiError::bad_request(format!(
                "container {requested} is not valid for pod {name}"
            )))
        };
    }
    let apps: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    match apps.as_slice() {
        [one] => Ok(one.to_string()),
        _ => Err(ApiError::bad_request(format!(
            "a container name must be specified for pod {name}, choose one of: [{}]",
            apps.join(" ")
        ))),
    }
}

/// Streams the log of a container of `pod` from its node's kubelet.
pub async fn pod_logs(
    ctx: &ApiContext,
    pod: &Value,
    query: &Query,
) -> Result<Response<Body>, ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let container = log_container(pod, query.str("container"))?;
    let mut path = format!("/containerLogs/{ns}/{name}/{container}");
    let params: Vec<(&str, &str)> = LOG_PARAMS
        .iter()
        .map(|p| (*p, query.str(p)))
        .filter(|(_, v)| !v.is_empty())
        .collect();
    if !params.is_empty() {
        let encoded: String = form_urlencoded::Serializer::new(String::new())
            .extend_pairs(params)
            .finish();
        path = format!("{path}?{encoded}");
    }
    let mut kubelet = Kubelet::connect(ctx, pod).await?;
    let req = Request::get(&path)
        .header(header::HOST, &kubelet.host)
        .body(Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let resp = kubelet.send(req).await?;
    if resp.status() != StatusCode::OK {
        return Err(kubelet_error(resp).await);
    }
    let mut body = resp.into_body();
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
    let mut out = Response::new(StreamBody::new(ReceiverStream::new(rx)).boxed());
    out.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    Ok(out)
}

/// Streaming into a pod: `exec` or `attach`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    Exec,
    Attach,
}

impl Stream {
    fn as_str(self) -> &'static str {
        match self {
            Stream::Exec => "exec",
            Stream::Attach => "attach",
        }
    }
}

/// Passes an exec's or attach's WebSocket handshake on to the kubelet of the pod's node
/// and, once the kubelet switched protocols, splices the client's connection to the
/// kubelet's.
pub async fn pod_stream(
    ctx: &ApiContext,
    pod: &Value,
    query: &Query,
    req: Request<impl super::request::RequestBody>,
    stream: Stream,
) -> Result<Response<Body>, ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let container = log_container(pod, query.str("container"))?;
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    if matches!(phase, "Succeeded" | "Failed") {
        return Err(ApiError::bad_request(format!(
            "cannot {} into a container in a completed pod; current phase is {phase}",
            stream.as_str()
        )));
    }
    let params = stream_query(req.uri().query().unwrap_or(""), stream)?;
    // kubectl retries with SPDY after any failed WebSocket upgrade: checked last, so that
    // the retry meets the first attempt's error again.
    let mut kubelet = Kubelet::connect(ctx, pod).await?;
    if !is_websocket_upgrade(req.headers()) {
        return Err(ApiError::bad_request(
            "orc serves exec over WebSocket only (protocols v5.channel.k8s.io, v4.channel.k8s.io): use kubectl 1.30 or newer",
        ));
    }
    let span = tracing::info_span!(
        "stream",
        kind = stream.as_str(),
        pod = %format!("{ns}/{name}"),
        %container
    );
    let uri = format!("/{}/{ns}/{name}/{container}?{params}", stream.as_str());
    websocket_to_kubelet(&mut kubelet, req, uri, span).await
}

/// Passes a WebSocket handshake on to the kubelet as a GET of `uri` and, once the kubelet
/// switched protocols, splices the client's connection to the kubelet's (the kubelet
/// speaks the channel protocol with the client).
async fn websocket_to_kubelet(
    kubelet: &mut Kubelet,
    mut req: Request<impl super::request::RequestBody>,
    uri: String,
    span: tracing::Span,
) -> Result<Response<Body>, ApiError> {
    let mut forward = Request::get(uri)
        .header(header::HOST, &kubelet.host)
        .header(header::CONNECTION, "Upgrade");
    for h in WEBSOCKET_HEADERS {
        for v in req.headers().get_all(&h) {
            forward = forward.header(&h, v);
        }
    }
    let forward = forward
        .body(Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = kubelet.send(forward).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let mut answer = Response::new(super::response::full(Bytes::new()));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    for h in SWITCH_HEADERS {
        for v in resp.headers().get_all(&h) {
            answer.headers_mut().append(&h, v.clone());
        }
    }
    let to_kubelet = hyper::upgrade::on(&mut resp);
    let to_client = hyper::upgrade::on(&mut req);
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let (kubelet, client) = match tokio::try_join!(to_kubelet, to_client) {
                Ok(both) => both,
                Err(e) => {
                    tracing::warn!(error = %e, "exec upgrade failed");
                    return;
                }
            };
            let (mut kubelet, mut client) = (TokioIo::new(kubelet), TokioIo::new(client));
            match tokio::io::copy_bidirectional(&mut client, &mut kubelet).await {
                Ok((up, down)) => tracing::debug!(up, down, "exec stream ended"),
                Err(e) => tracing::debug!(error = %e, "exec stream ended with an error"),
            }
        },
        span,
    ));
    Ok(answer)
}

/// Passes a port-forward on to the kubelet of the pod's node as a SPDY upgrade and, once
/// it switched protocols, splices a SPDY client to it, or carries a WebSocket client's
/// binary messages to it as a byte stream (and its bytes back as binary messages).
pub async fn pod_port_forward(
    ctx: &ApiContext,
    pod: &Value,
    mut req: Request<impl super::request::RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("");
    let name = pod["metadata"]["name"].as_str().unwrap_or("");
    let websocket = is_websocket_upgrade(req.headers());
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    if websocket && !offers_protocol(req.headers(), PORT_FORWARD_WEBSOCKET_PROTOCOL) {
        // The client libraries' channel protocol (v4.channel.k8s.io), which the kubelet
        // serves itself; the pod's `ports` become the kubelet's `port` parameters.
        let ports = {
            let mut ports = form_urlencoded::Serializer::new(String::new());
            for (_, p) in form_urlencoded::parse(req.uri().query().unwrap_or("").as_bytes())
                .filter(|(k, _)| k == "ports")
            {
                ports.append_pair("port", &p);
            }
            ports.finish()
        };
        let mut kubelet = Kubelet::connect(ctx, pod).await?;
        let span = tracing::info_span!(
            "port_forward",
            pod = %format!("{ns}/{name}"),
            transport = "websocket"
        );
        let uri = format!("/portForward/{ns}/{name}?{ports}");
        return websocket_to_kubelet(&mut kubelet, req, uri, span).await;
    }
    if websocket {
        if !offers_protocol(req.headers(), PORT_FORWARD_WEBSOCKET_PROTOCOL) || key.is_none() {
            return Err(ApiError::bad_request(format!(
                "port-forward over WebSocket needs the protocol {PORT_FORWARD_WEBSOCKET_PROTOCOL} and a Sec-WebSocket-Key"
            )));
        }
    } else if !is_spdy_upgrade(req.headers()) {
        return Err(ApiError::bad_request(
            "unable to upgrade: port-forward needs a WebSocket (SPDY/3.1+portforward.k8s.io) or SPDY/3.1 upgrade",
        ));
    }
    let mut kubelet = Kubelet::connect(ctx, pod).await?;
    let mut forward = Request::post(format!("/portForward/{ns}/{name}"))
        .header(header::HOST, &kubelet.host)
        .header(header::CONNECTION, "Upgrade")
        .header(header::UPGRADE, "SPDY/3.1");
    if websocket {
        forward = forward.header(STREAM_PROTOCOL_HEADER, PORT_FORWARD_PROTOCOL);
    } else {
        for v in req.headers().get_all(STREAM_PROTOCOL_HEADER) {
            forward = forward.header(STREAM_PROTOCOL_HEADER, v);
        }
    }
    let forward = forward
        .body(Empty::new())
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let mut resp = kubelet.send(forward).await?;
    if resp.status() != StatusCode::SWITCHING_PROTOCOLS {
        return Err(kubelet_error(resp).await);
    }
    let mut answer = Response::new(super::response::full(Bytes::new()));
    *answer.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = answer.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    match &key {
        Some(key) if websocket => {
            headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
            headers.insert(
                header::SEC_WEBSOCKET_PROTOCOL,
                HeaderValue::from_static(PORT_FORWARD_WEBSOCKET_PROTOCOL),
            );
            let accept = derive_accept_key(key.as_bytes());
            headers.insert(
                header::SEC_WEBSOCKET_ACCEPT,
                HeaderValue::from_str(&accept).map_err(|e| ApiError::internal(e.to_string()))?,
            );
        }
        _ => {
            for h in [
                header::UPGRADE,
                header::HeaderName::from_static(STREAM_PROTOCOL_HEADER),
            ] {
                for v in resp.headers().get_all(&h) {
                    headers.append(&h, v.clone());
                }
            }
        }
    }
    let to_kubelet = hyper::upgrade::on(&mut resp);
    let to_client = hyper::upgrade::on(&mut req);
    let transport = if websocket { "websocket" } else { "spdy" };
    let span = tracing::info_span!("port_forward", pod = %format!("{ns}/{name}"));
    tokio::spawn(tracing::Instrument::instrument(
        async move {
            let (kubelet, client) = match tokio::try_join!(to_kubelet, to_client) {
                Ok(both) => both,
                Err(e) => {
                    tracing::warn!(error = %e, "port-forward upgrade failed");
                    return;
                }
            };
            tracing::info!(transport, "port-forward tunnel open");
            let (mut kubelet, mut client) = (TokioIo::new(kubelet), TokioIo::new(client));
            if websocket {
                let ws = WebSocketStream::from_raw_socket(client, Role::Server, None).await;
                tunnel(ws, kubelet).await;
            } else {
                let copied = tokio::io::copy_bidirectional(&mut client, &mut kubelet).await;
                tracing::debug!(?copied, "port-forward ended");
            }
        },
        span,
    ));
    Ok(answer)
}

/// Carries the bytes of `kubelet` to the WebSocket client in binary messages, and the
/// client's binary messages to `kubelet`, as kubectl's tunneling connection frames them
/// (message boundaries carry no meaning). Ends when both directions ended, or shortly
/// after one did.
pub async fn tunnel<C, K>(client: WebSocketStream<C>, kubelet: K)
where
    C: AsyncRead + AsyncWrite + Unpin,
    K: AsyncRead + AsyncWrite,
{
    let (mut to_client, mut from_client) = futures::StreamExt::split(client);
    let (mut from_kubelet, mut to_kubelet) = tokio::io::split(kubelet);
    let up = async {
        while let Some(Ok(message)) = futures::StreamExt::next(&mut from_client).await {
            let data = match message {
                Message::Binary(data) => data,
                Message::Close(_) => break,
                _ => continue,
            };
            if to_kubelet.write_all(&data).await.is_err() {
                break;
            }
        }
        let _ = to_kubelet.shutdown().await;
    };
    let down = async {
        let mut buf = vec![0u8; TUNNEL_CHUNK];
        loop {
            match from_kubelet.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    let message = Message::binary(buf[..n].to_vec());
                    if futures::SinkExt::send(&mut to_client, message)
                        .await
                        .is_err()
                    {
                        return;
                    }
                }
            }
        }
        let normal = CloseFrame {
            code: CloseCode::Normal,
            reason: "".into(),
        };
        let _ = futures::SinkExt::send(&mut to_client, Message::Close(Some(normal))).await;
        let _ = futures::SinkExt::close(&mut to_client).await;
    };
    tokio::pin!(up, down);
    tokio::select! {
        _ = &mut up => { let _ = tokio::time::timeout(TUNNEL_CLOSE_WAIT, &mut down).await; }
        _ = &mut down => { let _ = tokio::time::timeout(TUNNEL_CLOSE_WAIT, &mut up).await; }
    }
}

/// Whether the client offers WebSocket subprotocol `protocol`.
fn offers_protocol(headers: &http::HeaderMap, protocol: &str) -> bool {
    headers
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|p| p.trim() == protocol)
}

/// Whether a request asks to switch to SPDY/3.1.
fn is_spdy_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("SPDY/3.1"))
}

/// Whether a request asks to switch to WebSocket.
fn is_websocket_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The kubelet's query for an exec (the command and the streams, in order; an error
/// when there is no command) or an attach (the streams).
pub fn stream_query(query: &str, stream: Stream) -> Result<String, ApiError> {
    let pairs: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .filter(|(k, _)| EXEC_PARAMS.contains(&k.as_str()))
        .filter(|(k, _)| stream == Stream::Exec || k != "command")
        .collect();
    if stream == Stream::Exec && !pairs.iter().any(|(k, _)| k == "command") {
        return Err(ApiError::bad_request(
            "you must specify at least one command for the container",
        ));
    }
    Ok(form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs)
        .finish())
}

/// An open HTTP/1.1 connection to the kubelet of a pod's node.
pub(super) struct Kubelet {
    sender: SendRequest<Empty<Bytes>>,
    /// `address:port`, for the Host header.
    pub(super) host: String,
    node: String,
}

impl Kubelet {
    async fn connect(ctx: &ApiContext, pod: &Value) -> Result<Kubelet, ApiError> {
        let name = pod["metadata"]["name"].as_str().unwrap_or("");
        let node_name = pod["spec"]["nodeName"].as_str().unwrap_or("");
        let nodes = resources::by_plural("", "v1", "nodes").expect("nodes are served");
        let node = ctx
            .registry
            .get(nodes, None, node_name)
            .map_err(|_| ApiError::unavailable(format!("node {node_name} of pod {name} is gone")))?
            .value;
        Kubelet::connect_node(ctx, &node).await
    }

    /// Connects to the kubelet of `node` (a Node object).
    pub(super) async fn connect_node(ctx: &ApiContext, node: &Value) -> Result<Kubelet, ApiError> {
        let node_name = node["metadata"]["name"].as_str().unwrap_or("");
        let address = node["status"]["addresses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|a| a["type"] == "InternalIP")
            .and_then(|a| a["address"].as_str())
            .ok_or_else(|| ApiError::unavailable(format!("node {node_name} has no InternalIP")))?
            .to_string();
        let port = node["status"]["daemonEndpoints"]["kubeletEndpoint"]["Port"]
            .as_u64()
            .unwrap_or(DEFAULT_KUBELET_PORT) as u16;
        let unreachable = |e: String| {
            ApiError::unavailable(format!(
                "the kubelet of node {node_name} ({address}:{port}) cannot be reached: {e}"
            ))
        };
        // The kubelet-client identity, and only this node's kubelet serving certificate:
        // an address pointing elsewhere (even at this server) fails the handshake.
        let (cert_pem, key_pem) = ctx.pki.kubelet_client_credential();
        let tls =
            crate::tls::kubelet_client_config(ctx.pki.ca_cert_pem(), cert_pem, key_pem, node_name)
                .map_err(|e| ApiError::internal(e.to_string()))?;
        let connect = async {
            let tcp = TcpStream::connect((address.as_str(), port))
                .await
                .map_err(|e| e.to_string())?;
            // Streams (exec, port-forward) write small frames that must not wait for ACKs.
            let _ = tcp.set_nodelay(true);
            let server_name = ServerName::try_from(address.clone()).map_err(|e| e.to_string())?;
            let stream = TlsConnector::from(Arc::clone(&tls))
                .connect(server_name, tcp)
                .await
                .map_err(|e| e.to_string())?;
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|e| e.to_string())
        };
        let (sender, conn) = tokio::time::timeout(CONNECT_TIMEOUT, connect)
            .await
            .map_err(|_| unreachable("timeout".into()))?
            .map_err(unreachable)?;
        tokio::spawn(conn.with_upgrades());
        Ok(Kubelet {
            sender,
            host: format!("{address}:{port}"),
            node: node_name.to_string(),
        })
    }

    pub(super) async fn send(
        &mut self,
        req: Request<Empty<Bytes>>,
    ) -> Result<Response<Incoming>, ApiError> {
        self.sender.send_request(req).await.map_err(|e| {
            ApiError::unavailable(format!(
                "the kubelet of node {} ({}) cannot be reached: {e}",
                self.node, self.host
            ))
        })
    }
}

/// A kubelet's error answer as the API's: its text, with a matching code.
async fn kubelet_error(resp: Response<Incoming>) -> ApiError {
    let status = resp.status();
    let text = resp
        .into_body()
        .collect()
        .await
        .map(|b| String::from_utf8_lossy(&b.to_bytes()).trim().to_string())
        .unwrap_or_default();
    match status.as_u16() {
        400 | 404 => ApiError::bad_request(text),
        403 => ApiError::forbidden(text),
        500 => ApiError::internal(text),
        _ => ApiError::unavailable(text),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::{SinkExt, StreamExt};
    use serde_json::json;

    #[test]
    fn exec_queries_keep_the_command_and_streams_in_order() {
        let q = stream_query(
            "command=sh&command=-c&command=echo+hi&container=c&stdin=true&stdout=true&tty=false&x=1",
            Stream::Exec,
        )
        .unwrap();
        assert_eq!(
            q,
            "command=sh&command=-c&command=echo+hi&stdin=true&stdout=true&tty=false"
        );
        let e = stream_query("stdout=true&container=c", Stream::Exec).unwrap_err();
        assert_eq!(e.code, 400);
        assert!(e.message.contains("at least one command"), "{}", e.message);
        let q = stream_query("command=x&stdout=true&container=c", Stream::Attach).unwrap();
        assert_eq!(q, "stdout=true");
    }

    #[tokio::test]
    async fn the_tunnel_carries_binary_messages_as_one_byte_stream_both_ways() {
        let (client_io, server_io) = tokio::io::duplex(64 * 1024);
        let (kubelet_near, mut kubelet) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let task = tokio::spawn(tunnel(server, kubelet_near));
        // One SPDY PING frame split over three messages; text messages carry nothing.
        let ping = [0x80, 0x03, 0x00, 0x06, 0, 0, 0, 4, 0, 0, 0, 1];
        for part in [&ping[..3], &ping[3..4], &ping[4..]] {
            client.send(Message::binary(part.to_vec())).await.unwrap();
            client.send(Message::text("ignored")).await.unwrap();
        }
        let mut got = [0u8; 12];
        tokio::time::timeout(Duration::from_secs(10), kubelet.read_exact(&mut got))
            .await
            .expect("tunnel deadlocked")
            .unwrap();
        assert_eq!(got, ping);
        kubelet.write_all(&ping).await.unwrap();
        let back = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("tunnel deadlocked");
        let Some(Ok(Message::Binary(back))) = back else {
            panic!("{back:?}");
        };
        assert_eq!(&back[..], &ping[..]);
        // The kubelet hanging up closes the WebSocket normally.
        drop(kubelet);
        let mut close = None;
        while let Some(Ok(m)) = client.next().await {
            if let Message::Close(frame) = m {
                close = frame;
            }
        }
        assert_eq!(close.map(|c| c.code), Some(CloseCode::Normal));
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("tunnel outlived both ends")
            .unwrap();
    }

    #[test]
    fn port_forward_upgrades_are_recognised() {
        let mut h = http::HeaderMap::new();
        assert!(!is_spdy_upgrade(&h) && !offers_protocol(&h, PORT_FORWARD_WEBSOCKET_PROTOCOL));
        h.insert(header::UPGRADE, HeaderValue::from_static("SPDY/3.1"));
        assert!(is_spdy_upgrade(&h));
        h.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static("v5.channel.k8s.io, SPDY/3.1+portforward.k8s.io"),
        );
        assert!(offers_protocol(&h, PORT_FORWARD_WEBSOCKET_PROTOCOL));
    }

    #[test]
    fn the_only_container_is_the_default() {
        let pod = json!({"metadata": {"name": "p"}, "spec": {
            "initContainers": [{"name": "init"}],
            "containers": [{"name": "app"}],
        }});
        assert_eq!(log_container(&pod, "").unwrap(), "app");
        assert_eq!(log_container(&pod, "init").unwrap(), "init");
        assert!(log_container(&pod, "nope").is_err());
        let two = json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "a"}, {"name": "b"}]}});
        let e = log_container(&two, "").unwrap_err();
        assert!(e.to_status()["message"]
            .as_str()
            .unwrap()
            .contains("choose one of: [a b]"));
    }
}
