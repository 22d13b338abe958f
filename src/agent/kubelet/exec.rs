//! `GET /exec/{namespace}/{pod}/{container}?command=…` and `GET /attach/…`: the
//! kubelet's end of `kubectl exec` and `kubectl attach`. It accepts the WebSocket
//! upgrade, then starts the command in the container and runs the remote command
//! protocol between the socket and the process (for attach: see `attach`).

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{SplitSink, SplitStream};
use futures::{SinkExt, StreamExt};
use http::{header, HeaderValue, Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::{CloseFrame, Role};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::WebSocketStream;
use tracing::{debug, info, info_span, warn, Instrument};

use super::attach;
use super::container::{CONTAINER_NAME_LABEL, POD_UID_LABEL};
use super::remotecommand::{self as rc, Inbound};
use super::server::Endpoint;
use crate::agent::runtime::{
    ContainerState, ExecHandle, ExecReader, ExecRequest, ExecSession, ExecWriter, RuntimeError,
};

/// After the process exited, how long its last output may take to reach the client
/// (a background process that kept the output open would otherwise hold it forever).
const OUTPUT_DRAIN: Duration = Duration::from_secs(5);
/// How long the client may take to answer the closing handshake.
pub(super) const CLOSE_WAIT: Duration = Duration::from_secs(5);
/// Largest chunk of output sent in one message.
const OUTPUT_CHUNK: usize = 32 * 1024;
/// Messages queued for the client before the process's output waits.
pub(super) const OUTBOUND_BUFFER: usize = 16;

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error("{0}")]
    BadRequest(String),
    #[error(
        "exec needs a WebSocket upgrade with one of the protocols v5.channel.k8s.io, \
         v4.channel.k8s.io (kubectl 1.30 or newer)"
    )]
    NotWebSocket,
    #[error("pod {namespace}/{pod} is not running on this node")]
    PodNotHere { namespace: String, pod: String },
    #[error("container {container} not found in pod {pod}")]
    ContainerNotFound { pod: String, container: String },
    #[error("container {container} in pod {pod} is not running")]
    ContainerNotRunning { pod: String, container: String },
    #[error("list the node's containers")]
    ListContainers {
        #[source]
        source: RuntimeError,
    },
    #[error("exec in container {container} of pod {pod}")]
    Start {
        pod: String,
        container: String,
        #[source]
        source: RuntimeError,
    },
}

impl ExecError {
    pub fn status(&self) -> StatusCode {
        match self {
            ExecError::PodNotHere { .. } | ExecError::ContainerNotFound { .. } => {
                StatusCode::NOT_FOUND
            }
            ExecError::Start { .. } | ExecError::ListContainers { .. } => {
                StatusCode::INTERNAL_SERVER_ERROR
            }
            _ => StatusCode::BAD_REQUEST,
        }
    }

    /// The message with its cause, for the HTTP answer or the error stream.
    pub fn message(&self) -> String {
        match self {
            ExecError::Start { source, .. } | ExecError::ListContainers { source } => {
                format!("{self}: {source}")
            }
            _ => self.to_string(),
        }
    }
}

/// The container a request names.
#[derive(Debug, Clone)]
pub struct Target {
    pub namespace: String,
    pub pod: String,
    pub container: String,
}

/// What a streaming request does with the container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Runs a command in it.
    Exec,
    /// Follows the output of its main process.
    Attach,
}

/// Answers an exec or attach request: `101 Switching Protocols` with the session
/// running behind it, or the error. Only a request that is no WebSocket exec at all is
/// refused with an HTTP error: kubectl takes any failed upgrade for a server without
/// WebSocket support and retries with SPDY, so what goes wrong later (no such
/// container, the command cannot start) is told on the error stream, as upstream's
/// kubelet does.
pub async fn exec(
    req: Request<Incoming>,
    endpoint: Arc<Endpoint>,
    target: Target,
    kind: Kind,
) -> Result<Response<super::server::Body>, ExecError> {
    let query = req.uri().query().unwrap_or("");
    let request = match kind {
        Kind::Exec => rc::exec_request(query),
        Kind::Attach => rc::attach_request(query),
    }
    .map_err(ExecError::BadRequest)?;
    let wants_websocket = req
        .headers()
        .get(header::UPGRADE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("websocket"));
    let key = req.headers().get(header::SEC_WEBSOCKET_KEY).cloned();
    let protocol = rc::negotiate(
        req.headers()
            .get_all(header::SEC_WEBSOCKET_PROTOCOL)
            .iter()
            .filter_map(|v| v.to_str().ok()),
    );
    let (Some(key), Some(protocol), true) = (key, protocol, wants_websocket) else {
        return Err(ExecError::NotWebSocket);
    };
    let upgrade = hyper::upgrade::on(req);
    tokio::spawn(async move {
        let upgraded = match upgrade.await {
            Ok(upgraded) => upgraded,
            Err(e) => {
                warn!(error = %e, "exec upgrade failed");
                return;
            }
        };
        let ws = WebSocketStream::from_raw_socket(TokioIo::new(upgraded), Role::Server, None).await;
        let span = info_span!(
            "exec",
            pod = %format!("{}/{}", target.namespace, target.pod),
            container = %target.container,
            ?kind,
        );
        let session = async {
            if kind == Kind::Attach {
                return match running_container(&endpoint, &target).await {
                    Ok(running) => {
                        let logs = endpoint
                            .pods_dir
                            .join(&running.uid)
                            .join("logs")
                            .join(&target.container);
                        info!(protocol, "attached");
                        let runtime = endpoint.runtime.clone();
                        attach::run(ws, runtime, &running.id, &logs, &request, protocol).await;
                    }
                    Err(e) => refuse_session(ws, &e.message()).await,
                };
            }
            match start(&endpoint, &target, &request).await {
                Ok(session) => {
                    info!(command = ?request.cmd, tty = request.tty, protocol, "exec started");
                    run_session(ws, session, &request, protocol).await;
                }
                Err(e) => {
                    debug!(error = %e.message(), "exec refused");
                    refuse_session(ws, &e.message()).await;
                }
            }
        };
        session.instrument(span).await;
    });
    let mut resp = Response::new(super::server::empty());
    *resp.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = resp.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("websocket"));
    headers.insert(
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(protocol),
    );
    if let Ok(accept) = HeaderValue::from_str(&derive_accept_key(key.as_bytes())) {
        headers.insert(header::SEC_WEBSOCKET_ACCEPT, accept);
    }
    Ok(resp)
}

/// Starts the command in the running instance of the target container.
async fn start(
    endpoint: &Endpoint,
    target: &Target,
    request: &ExecRequest,
) -> Result<ExecSession, ExecError> {
    let running = running_container(endpoint, target).await?;
    endpoint
        .runtime
        .exec_streaming(&running.id, request)
        .await
        .map_err(|source| ExecError::Start {
            pod: target.pod.clone(),
            container: target.container.clone(),
            source,
        })
}

/// The running instance of a container.
struct Running {
    /// Of its pod.
    uid: String,
    /// containerd's id of the instance.
    id: String,
}

/// The running instance of the target container.
async fn running_container(endpoint: &Endpoint, target: &Target) -> Result<Running, ExecError> {
    let uid = endpoint
        .pods
        .read()
        .ok()
        .and_then(|p| {
            p.get(&(target.namespace.clone(), target.pod.clone()))
                .map(|e| e.uid.clone())
        })
        .ok_or_else(|| ExecError::PodNotHere {
            namespace: target.namespace.to_string(),
            pod: target.pod.to_string(),
        })?;
    let containers =
        endpoint
            .runtime
            .list_containers()
            .await
            .map_err(|source| ExecError::Start {
                pod: target.pod.to_string(),
                container: target.container.to_string(),
                source,
            })?;
    let instances: Vec<_> = containers
        .iter()
        .filter(|c| {
            c.labels.get(POD_UID_LABEL) == Some(&uid)
                && c.labels.get(CONTAINER_NAME_LABEL) == Some(&target.container)
        })
        .collect();
    if instances.is_empty() {
        return Err(ExecError::ContainerNotFound {
            pod: target.pod.to_string(),
            container: target.container.to_string(),
        });
    }
    instances
        .iter()
        .find(|c| matches!(c.state, ContainerState::Running { .. }))
        .map(|c| Running {
            uid: uid.clone(),
            id: c.id.clone(),
        })
        .ok_or_else(|| ExecError::ContainerNotRunning {
            pod: target.pod.to_string(),
            container: target.container.to_string(),
        })
}

/// Tells the client why its command did not start (a failure `Status` on the error
/// stream) and closes.
pub(super) async fn refuse_session<S>(ws: WebSocketStream<S>, message: &str)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (sink, mut incoming) = ws.split();
    let (outbound, queue) = mpsc::channel::<Vec<u8>>(1);
    let writer = tokio::spawn(write_client(sink, queue));
    let status = rc::failure_status(message).to_string();
    let _ = outbound.send(rc::frame(rc::ERROR, status.as_bytes())).await;
    drop(outbound);
    let _ = tokio::time::timeout(CLOSE_WAIT, writer).await;
    // The client's answer to the closing handshake.
    let _ = tokio::time::timeout(CLOSE_WAIT, async {
        while incoming.next().await.is_some() {}
    })
    .await;
}

/// Runs the remote command protocol until the process has exited and its output and
/// final status are sent, or until the client goes away (which kills the process).
async fn run_session<S>(
    ws: WebSocketStream<S>,
    session: ExecSession,
    request: &ExecRequest,
    protocol: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let ExecSession {
        stdin,
        stdout,
        stderr,
        mut control,
    } = session;
    let (sink, incoming) = ws.split();
    let (outbound, queue) = mpsc::channel::<Vec<u8>>(OUTBOUND_BUFFER);
    let writer = tokio::spawn(write_client(sink, queue));
    // As upstream: an empty message on the first stream tells the client all are open.
    let first = match (&stdout, &stderr) {
        (Some(_), _) => rc::STDOUT,
        (None, Some(_)) => rc::STDERR,
        (None, None) => rc::ERROR,
    };
    let _ = outbound.send(rc::frame(first, &[])).await;
    let pumps: Vec<_> = [(stdout, rc::STDOUT), (stderr, rc::STDERR)]
        .into_iter()
        .filter_map(|(from, stream)| Some(tokio::spawn(pump(from?, stream, outbound.clone()))))
        .collect();
    let mut reader = tokio::spawn(read_client(incoming, stdin, control.handle(), protocol));
    let code = tokio::select! {
        code = control.wait() => code,
        _ = &mut reader => {
            debug!(command = ?request.cmd, "exec client went away; killing the process");
            control.kill().await;
            for p in pumps {
                p.abort();
            }
            writer.abort();
            return;
        }
    };
    let pump_aborts: Vec<_> = pumps.iter().map(|p| p.abort_handle()).collect();
    let outputs = futures::future::join_all(pumps);
    if tokio::time::timeout(OUTPUT_DRAIN, outputs).await.is_err() {
        debug!(command = ?request.cmd, "exec output still open after the process exited");
        pump_aborts.iter().for_each(|p| p.abort());
    }
    let status = match code {
        Ok(code) => {
            debug!(command = ?request.cmd, code, "exec finished");
            rc::exit_status(&request.cmd, code)
        }
        Err(e) => {
            warn!(error = %e, "exec wait failed");
            rc::failure_status(&e.to_string())
        }
    };
    let _ = outbound
        .send(rc::frame(rc::ERROR, status.to_string().as_bytes()))
        .await;
    drop(outbound);
    let writer_abort = writer.abort_handle();
    if tokio::time::timeout(CLOSE_WAIT, writer).await.is_err() {
        writer_abort.abort();
    }
    let _ = tokio::time::timeout(CLOSE_WAIT, &mut reader).await;
    reader.abort();
}

/// Sends queued messages to the client, then the closing handshake.
pub(super) async fn write_client<S>(
    mut sink: SplitSink<WebSocketStream<S>, Message>,
    mut queue: mpsc::Receiver<Vec<u8>>,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(message) = queue.recv().await {
        if sink.send(Message::binary(message)).await.is_err() {
            return;
        }
    }
    // kubectl takes a close without a status (1005) for an error.
    let normal = CloseFrame {
        code: CloseCode::Normal,
        reason: "".into(),
    };
    let _ = sink.send(Message::Close(Some(normal))).await;
    let _ = sink.close().await;
}

/// Forwards one output stream of the process to the client.
async fn pump(mut from: ExecReader, stream: u8, to: mpsc::Sender<Vec<u8>>) {
    let mut buf = vec![0u8; OUTPUT_CHUNK];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if to.send(rc::frame(stream, &buf[..n])).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// Handles the client's messages (stdin, resizes, stdin's close) until it hangs up.
async fn read_client<S>(
    mut incoming: SplitStream<WebSocketStream<S>>,
    mut stdin: Option<ExecWriter>,
    control: ExecHandle,
    protocol: &'static str,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    while let Some(Ok(message)) = incoming.next().await {
        let data = match message {
            Message::Binary(data) => data,
            // As upstream's stream reader: a text frame's bytes count as a binary
            // one's (the Python client sends str stdin in text frames).
            Message::Text(text) => text.into(),
            Message::Close(_) => break,
            _ => continue,
        };
        match rc::parse(&data, protocol) {
            Inbound::Stdin(bytes) => {
                if let Some(w) = stdin.as_mut() {
                    if w.write_all(bytes).await.is_err() || w.flush().await.is_err() {
                        stdin = None;
                    }
                }
            }
            Inbound::Resize(size) => control.resize(size).await,
            Inbound::CloseStdin => {
                if let Some(mut w) = stdin.take() {
                    let _ = w.shutdown().await;
                    drop(w);
                    control.close_stdin().await;
                }
            }
            Inbound::Ignored => {}
            Inbound::Invalid(why) => debug!(%why, "exec client message ignored"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::agent::runtime::{ContainerConfig, ContainerRuntime, ExecOutput, FakeRuntime};

    const IMAGE: &str = "busybox:test";
    const UID: &str = "uid-1";

    async fn endpoint_with(containers: &[(&str, bool)]) -> (Endpoint, Arc<FakeRuntime>) {
        let runtime = Arc::new(FakeRuntime::new());
        runtime.add_image(IMAGE);
        for (name, running) in containers {
            let mut config = ContainerConfig::new(format!("{UID}-{name}-0"), IMAGE, "/x".into());
            config.labels = BTreeMap::from([
                (POD_UID_LABEL.to_string(), UID.to_string()),
                (CONTAINER_NAME_LABEL.to_string(), name.to_string()),
            ]);
            let id = runtime.create_container(&config).await.unwrap();
            if *running {
                runtime.start(&id).await.unwrap();
            }
        }
        let endpoint = Endpoint {
            pods: Default::default(),
            pods_dir: "/nonexistent".into(),
            netns_dir: "/nonexistent".into(),
            runtime: runtime.clone(),
            cgroups: crate::agent::stats::CgroupReader::new("/nonexistent"),
            metrics: crate::metrics::NodeMetrics::new(),
        };
        endpoint.pods.write().unwrap().insert(
            ("ns".into(), "p".into()),
            super::super::server::IndexedPod {
                uid: UID.into(),
                host_network: false,
            },
        );
        (endpoint, runtime)
    }

    fn target(pod: &str, container: &str) -> Target {
        Target {
            namespace: "ns".into(),
            pod: pod.into(),
            container: container.into(),
        }
    }

    #[tokio::test]
    async fn the_running_instance_of_the_named_container_is_the_target() {
        let (endpoint, _) = endpoint_with(&[("app", true), ("done", false)]).await;
        let running = running_container(&endpoint, &target("p", "app")).await;
        assert_eq!(running.ok().map(|r| r.id), Some(format!("{UID}-app-0")));
        let e = running_container(&endpoint, &target("p", "done")).await;
        assert!(matches!(e, Err(ExecError::ContainerNotRunning { .. })));
        let e = running_container(&endpoint, &target("p", "nope")).await;
        assert_eq!(e.err().unwrap().status(), StatusCode::NOT_FOUND);
        let e = running_container(&endpoint, &target("elsewhere", "app")).await;
        assert!(matches!(e, Err(ExecError::PodNotHere { .. })));
    }

    /// A session over an in-memory socket; the client end is returned.
    async fn start_session(
        runtime: &FakeRuntime,
        request: ExecRequest,
    ) -> (
        WebSocketStream<tokio::io::DuplexStream>,
        tokio::task::JoinHandle<()>,
    ) {
        let session = runtime
            .exec_streaming(&format!("{UID}-app-0"), &request)
            .await
            .unwrap();
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let task = tokio::spawn(async move {
            run_session(server, session, &request, rc::PROTOCOL_V5).await;
        });
        (client, task)
    }

    #[tokio::test]
    async fn a_session_carries_stdin_and_output_and_ends_with_the_exit_status() {
        let (_endpoint, runtime) = endpoint_with(&[("app", true)]).await;
        runtime.set_exec_result(
            &format!("{UID}-app-0"),
            ExecOutput {
                stdout: b"out ".to_vec(),
                stderr: b"err".to_vec(),
                exit_code: 7,
            },
        );
        let request = ExecRequest {
            cmd: vec!["cat".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let (mut client, task) = start_session(&runtime, request).await;
        client
            .send(Message::binary(rc::frame(rc::STDIN, b"hi")))
            .await
            .unwrap();
        client
            .send(Message::binary(vec![rc::CLOSE, rc::STDIN]))
            .await
            .unwrap();
        let mut streams: BTreeMap<u8, Vec<u8>> = BTreeMap::new();
        let mut close = None;
        let read = async {
            while let Some(Ok(m)) = client.next().await {
                match m {
                    Message::Binary(data) => streams
                        .entry(data[0])
                        .or_default()
                        .extend_from_slice(&data[1..]),
                    Message::Close(frame) => close = frame,
                    _ => {}
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("session deadlocked");
        assert_eq!(streams[&rc::STDOUT], b"out hi");
        assert_eq!(streams[&rc::STDERR], b"err");
        let status: serde_json::Value = serde_json::from_slice(&streams[&rc::ERROR]).unwrap();
        assert_eq!(status["reason"], "NonZeroExitCode");
        assert_eq!(status["details"]["causes"][0]["message"], "7");
        assert_eq!(close.map(|c| c.code), Some(CloseCode::Normal));
        task.await.unwrap();
    }

    /// The Python client sends `str` stdin in text frames (channel byte and all), which
    /// upstream's reader takes as it takes binary ones.
    #[tokio::test]
    async fn stdin_in_text_frames_reaches_the_process() {
        let (_endpoint, runtime) = endpoint_with(&[("app", true)]).await;
        let request = ExecRequest {
            cmd: vec!["cat".into()],
            stdin: true,
            stdout: true,
            stderr: false,
            tty: false,
        };
        let (mut client, task) = start_session(&runtime, request).await;
        client.send(Message::text("\u{0}hi")).await.unwrap();
        client
            .send(Message::binary(vec![rc::CLOSE, rc::STDIN]))
            .await
            .unwrap();
        let mut stdout = Vec::new();
        let read = async {
            while let Some(Ok(m)) = client.next().await {
                if let Message::Binary(data) = m {
                    if data[0] == rc::STDOUT {
                        stdout.extend_from_slice(&data[1..]);
                    }
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(10), read)
            .await
            .expect("session deadlocked");
        assert_eq!(stdout, b"hi");
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_refused_session_tells_why_on_the_error_stream() {
        let (server_io, client_io) = tokio::io::duplex(64 * 1024);
        let server = WebSocketStream::from_raw_socket(server_io, Role::Server, None).await;
        let mut client = WebSocketStream::from_raw_socket(client_io, Role::Client, None).await;
        let task = tokio::spawn(refuse_session(server, "container nope not found in pod p"));
        let first = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("refusal deadlocked");
        let Some(Ok(Message::Binary(data))) = first else {
            panic!("{first:?}");
        };
        assert_eq!(data[0], rc::ERROR);
        let status: serde_json::Value = serde_json::from_slice(&data[1..]).unwrap();
        assert_eq!(status["status"], "Failure");
        assert_eq!(status["message"], "container nope not found in pod p");
        while client.next().await.is_some() {}
        task.await.unwrap();
    }

    #[tokio::test]
    async fn a_session_ends_when_the_client_goes_away() {
        let (_endpoint, runtime) = endpoint_with(&[("app", true)]).await;
        let request = ExecRequest {
            cmd: vec!["cat".into()],
            stdin: true,
            stdout: true,
            stderr: false,
            tty: false,
        };
        let (client, task) = start_session(&runtime, request).await;
        drop(client);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("session outlived its client")
            .unwrap();
    }
}
