//! Port-forward over WebSocket, protocol `v4.channel.k8s.io` (upstream kubelet's
//! `handleWebSocketStreams`), as the official Python and JavaScript clients speak it. The
//! ports come from the query (`port=8080,9090`, repeatable); port i has the data channel
//! 2i and the error channel 2i+1, each opened by a first message holding the port
//! (little-endian u16). A failure to reach a port is written on its error channel; the
//! session ends once the connection of every port ended, or the client hung up.

use std::sync::Arc;

use bytes::Bytes;
use futures::StreamExt;
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::Role;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info_span, warn, Instrument};

use super::{pod_dialer, PodDialer, PortForwardError, DATA_CHUNK, INBOUND_QUEUE, OUTBOUND_QUEUE};
use crate::agent::kubelet::server::Endpoint;

/// The WebSocket subprotocol of port-forward's channels.
pub const PROTOCOL_V4: &str = "v4.channel.k8s.io";

/// Whether the request is a WebSocket upgrade.
pub fn is_websocket_upgrade(headers: &http::HeaderMap) -> bool {
    headers
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"))
}

/// The ports of the `port` query parameters, in upstream's words when one is wrong.
pub fn ports(query: &str) -> Result<Vec<u16>, String> {
    let values: Vec<String> = form_urlencoded::parse(query.as_bytes())
        .filter(|(k, _)| k == "port")
        .map(|(_, v)| v.into_owned())
        .collect();
    if values.is_empty() {
        return Err("query parameter \"port\" is required".into());
    }
    let mut ports = Vec::new();
    for value in &values {
        if value.is_empty() {
            return Err("query parameter \"port\" cannot be empty".into());
        }
        for p in value.split(',') {
            let port: u16 = p
                .parse()
                .map_err(|e| format!("unable to parse {value:?} as a port: {e}"))?;
            if port == 0 {
                return Err(format!("port {value:?} must be > 0"));
            }
            ports.push(port);
        }
    }
    Ok(ports)
}

/// Answers a WebSocket port-forward request: `101 Switching Protocols` with the session
/// running behind it, or the error (400 for bad ports, 404 for a pod not here).
pub fn port_forward(
    req: Request<Incoming>,
    endpoint: &Endpoint,
    namespace: &str,
    pod: &str,
) -> Result<Response<crate::agent::kubelet::server::Body>, (StatusCode, String)> {
    let ports = ports(req.uri().query().unwrap_or("")).map_err(|e| (StatusCode::BAD_REQUEST, e))?;
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .cloned()
        .ok_or((
            StatusCode::BAD_REQUEST,
            "missing Sec-WebSocket-Key".to_string(),
        ))?;
    // Upstream accepts the binary protocol, or none at all.
    let offered: Vec<String> = req
        .headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|p| p.trim().to_string())
        .filter(|p| !p.is_empty())
        .collect();
    let protocol = offered.iter().any(|p| p == PROTOCOL_V4);
    if !protocol && !offered.is_empty() {
        return Err((
            StatusCode::BAD_REQUEST,
            format!("unable to upgrade: unable to negotiate protocol: client supports {offered:?}, server accepts [\"{PROTOCOL_V4}\"]"),
        ));
    }
    let (uid, dialer) = pod_dialer(endpoint, namespace, pod)
        .map_err(|e: PortForwardError| (e.status(), e.to_string()))?;
    let upgrade = hyper::upgrade::on(req);
    let span = info_span!("port_forward", pod = %format!("{namespace}/{pod}"), %uid, transport = "websocket");
    let name = format!("{namespace}/{pod}");
    tokio::spawn(
        async move {
            match upgrade.await {
                Ok(upgraded) => {
                    let ws = WebSocketStream::from_raw_socket(
                        TokioIo::new(upgraded),
                        Role::Server,
                        None,
                    )
                    .await;
                    serve(ws, ports, Arc::new(dialer), name, uid).await;
                }
                Err(e) => warn!(error = %e, "port-forward upgrade failed"),
            }
        }
        .instrument(span),
    );
    let mut resp = Response::new(crate::agent::kubelet::server::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    if protocol {
        headers.insert(
            header::SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(PROTOCOL_V4),
        );
    }
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    Ok(resp)
}

/// Runs one session on `ws`: a connection to each port, until all ended or the client
/// hung up.
pub async fn serve<S>(
    ws: WebSocketStream<S>,
    ports: Vec<u16>,
    dialer: Arc<PodDialer>,
    pod: String,
    uid: String,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut incoming) = ws.split();
    let (outbound, queue) = mpsc::channel::<Vec<u8>>(OUTBOUND_QUEUE);
    let writer = tokio::spawn(super::super::exec::write_client(sink, queue));
    // Each channel opens with its port.
    for (i, port) in ports.iter().enumerate() {
        for channel in [2 * i, 2 * i + 1] {
            let mut opening = vec![channel as u8];
            opening.extend_from_slice(&port.to_le_bytes());
            let _ = outbound.send(opening).await;
        }
    }
    let mut inbound = Vec::new();
    let mut forwards = tokio::task::JoinSet::new();
    for (i, &port) in ports.iter().enumerate() {
        let (tx, rx) = mpsc::channel::<Bytes>(INBOUND_QUEUE);
        inbound.push(tx);
        let (dialer, outbound) = (dialer.clone(), outbound.clone());
        let (pod, uid) = (pod.clone(), uid.clone());
        forwards.spawn(async move {
            let data = (2 * i) as u8;
            match dialer.dial(port).await {
                Ok(conn) => forward(conn, rx, data, &outbound).await,
                Err(e) => {
                    let msg = format!("error forwarding port {port} to pod {pod}, uid {uid}: {e}");
                    debug!(port, error = %e, "port-forward dial failed");
                    let mut frame = vec![data + 1];
                    frame.extend_from_slice(msg.as_bytes());
                    let _ = outbound.send(frame).await;
                }
            }
        });
    }
    drop(outbound);
    let client = async {
        while let Some(Ok(message)) = incoming.next().await {
            let data: Bytes = match message {
                Message::Binary(data) => data,
                Message::Text(text) => text.into(),
                Message::Close(_) => break,
                _ => continue,
            };
            let Some((&channel, payload)) = data.split_first() else {
                continue;
            };
            // Data channels are even; the client writes nothing on error channels.
            let Some(tx) = inbound
                .get(channel as usize / 2)
                .filter(|_| channel % 2 == 0)
            else {
                continue;
            };
            if !payload.is_empty() {
                let _ = tx.send(data.slice(1..)).await;
            }
        }
    };
    tokio::select! {
        _ = client => {}
        _ = async { while forwards.join_next().await.is_some() {} } => {}
    }
    forwards.abort_all();
    let _ = writer.await;
}

/// Carries the client's bytes to the pod's connection and the pod's back on channel
/// `data`, until the pod's side ends.
async fn forward(
    conn: tokio::net::TcpStream,
    mut from_client: mpsc::Receiver<Bytes>,
    data: u8,
    to_client: &mpsc::Sender<Vec<u8>>,
) {
    let (mut read, mut write) = conn.into_split();
    let up = tokio::spawn(async move {
        while let Some(bytes) = from_client.recv().await {
            if write.write_all(&bytes).await.is_err() {
                return;
            }
        }
        let _ = write.shutdown().await;
    });
    let mut buf = vec![0u8; DATA_CHUNK];
    loop {
        match read.read(&mut buf[1..]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                buf[0] = data;
                if to_client.send(buf[..=n].to_vec()).await.is_err() {
                    break;
                }
            }
        }
    }
    up.abort();
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::SinkExt;

    #[test]
    fn ports_are_read_as_upstream_reads_them() {
        assert_eq!(ports("port=8080"), Ok(vec![8080]));
        assert_eq!(ports("port=80,443&port=9"), Ok(vec![80, 443, 9]));
        assert_eq!(
            ports("ports=80").unwrap_err(),
            "query parameter \"port\" is required"
        );
        assert_eq!(
            ports("port=").unwrap_err(),
            "query parameter \"port\" cannot be empty"
        );
        assert!(ports("port=x")
            .unwrap_err()
            .starts_with("unable to parse \"x\" as a port"));
        assert_eq!(ports("port=0").unwrap_err(), "port \"0\" must be > 0");
    }

    /// A session to a listener on this host: the channels open with the port, the
    /// client's bytes reach it, its answer comes back on the data channel, and the
    /// session ends when it closes; a port nothing listens on gets an error message.
    #[tokio::test]
    async fn a_session_forwards_each_port_on_its_channels() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        tokio::spawn(async move {
            let (mut conn, _) = listener.accept().await.unwrap();
            let mut got = [0u8; 4];
            conn.read_exact(&mut got).await.unwrap();
            conn.write_all(&[&got[..], b" back"].concat())
                .await
                .unwrap();
        });
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let session = tokio::spawn(serve(
            server,
            vec![port, closed],
            Arc::new(PodDialer::host()),
            "ns/p".into(),
            "u".into(),
        ));
        client
            .send(Message::binary(b"\x00ping".to_vec()))
            .await
            .unwrap();
        let mut channels: std::collections::BTreeMap<u8, Vec<Vec<u8>>> = Default::default();
        let read = async {
            while let Some(Ok(m)) = client.next().await {
                if let Message::Binary(data) = m {
                    channels
                        .entry(data[0])
                        .or_default()
                        .push(data[1..].to_vec());
                }
            }
        };
        tokio::time::timeout(std::time::Duration::from_secs(20), read)
            .await
            .expect("session deadlocked");
        session.await.unwrap();
        assert_eq!(channels[&0][0], port.to_le_bytes());
        assert_eq!(channels[&1], vec![port.to_le_bytes().to_vec()]);
        assert_eq!(channels[&0][1..].concat(), b"ping back");
        assert_eq!(channels[&2], vec![closed.to_le_bytes().to_vec()]);
        let error = String::from_utf8(channels[&3][1..].concat()).unwrap();
        assert!(
            error.starts_with(&format!(
                "error forwarding port {closed} to pod ns/p, uid u: "
            )),
            "{error}"
        );
    }
}
