//! The kubelet's HTTPS endpoint, reached by the API server for `kubectl logs` and
//! `kubectl exec`: `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`,
//! `tailLines`, `previous` and `timestamps`; `/exec/{namespace}/{pod}/{container}` (see
//! `exec`), `/attach/…`, `/portForward/{namespace}/{pod}` (see `portforward`) and `/healthz`. Only clients with a cluster-CA certificate of the API server's kubelet-client
//! identity (or of an admin, `system:masters`) are served; nodes are not.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{combinators::BoxBody, BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::{exec, portforward};
use crate::agent::runtime::{logger, ContainerRuntime};

/// Port the kubelet listens on (advertised in the Node's daemonEndpoints).
pub const KUBELET_PORT: u16 = 10250;
/// How often a followed log file is checked for new lines.
pub const FOLLOW_POLL: Duration = Duration::from_millis(250);

pub type Body = BoxBody<Bytes, Infallible>;

/// What the endpoint knows of a pod of this node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexedPod {
    pub uid: String,
    /// The pod uses the node's network namespace (port-forward dials there).
    pub host_network: bool,
}

/// Pods by `(namespace, name)`, kept by the kubelet for the endpoint.
pub type PodIndex = Arc<RwLock<HashMap<(String, String), IndexedPod>>>;

/// What the endpoint serves from.
pub struct Endpoint {
    pub pods: PodIndex,
    /// Where pod directories (with their logs) are.
    pub pods_dir: PathBuf,
    /// Where pods' network namespaces are (a file named by the pod uid), for port-forward.
    pub netns_dir: PathBuf,
    pub runtime: Arc<dyn ContainerRuntime>,
}

pub fn empty() -> Body {
    Full::new(Bytes::new()).boxed()
}

/// What a log request asks for.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LogOptions {
    pub follow: bool,
    pub tail_lines: Option<usize>,
    pub previous: bool,
    pub timestamps: bool,
}

impl LogOptions {
    pub fn from_query(query: &str) -> LogOptions {
        let mut o = LogOptions::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "follow" => o.follow = v == "true" || v == "1",
                "previous" => o.previous = v == "true" || v == "1",
                "timestamps" => o.timestamps = v == "true" || v == "1",
                "tailLines" => o.tail_lines = v.parse().ok(),
                _ => {}
            }
        }
        o
    }
}

/// The log file of the current (or previous) instance of a container: the highest (or
/// second highest) restart number in `dir`.
pub fn log_file(dir: &Path, previous: bool) -> Option<PathBuf> {
    let mut numbers: Vec<u32> = std::fs::read_dir(dir)
        .ok()?
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.strip_suffix(".log")?.parse().ok())
        .collect();
    numbers.sort_unstable();
    let n = if previous {
        numbers.iter().rev().nth(1)?
    } else {
        numbers.last()?
    };
    Some(dir.join(format!("{n}.log")))
}

/// CRI log records → what `kubectl logs` shows (content, optionally timestamped).
pub fn render(records: &[u8], timestamps: bool) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len());
    for line in records.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Some(rec) = logger::parse_line(line) else {
            continue;
        };
        if timestamps {
            out.extend_from_slice(
                rec.time
                    .to_rfc3339_opts(chrono::SecondsFormat::Nanos, true)
                    .as_bytes(),
            );
            out.push(b' ');
        }
        out.extend_from_slice(&rec.content);
        if !rec.partial {
            out.push(b'\n');
        }
    }
    out
}

/// The last `n` complete records of `records`.
fn tail(records: &[u8], n: usize) -> &[u8] {
    let mut count = 0;
    for (i, &b) in records.iter().enumerate().rev() {
        if b == b'\n' && i + 1 < records.len() {
            count += 1;
            if count == n {
                return &records[i + 1..];
            }
        }
    }
    if n == 0 {
        &[]
    } else {
        records
    }
}

fn text(code: StatusCode, message: &str) -> Response<Body> {
    let mut resp = Response::new(Full::new(Bytes::from(format!("{message}\n"))).boxed());
    *resp.status_mut() = code;
    resp
}

/// Whether the holder of a (CA-verified) client certificate may use the endpoint: the API
/// server's kubelet-client identity, or an admin. Nodes and everyone else may not.
fn may_use_kubelet(id: &crate::tls::Identity) -> bool {
    id.user == crate::tls::KUBELET_CLIENT_USER
        || id
            .groups
            .iter()
            .any(|g| g == crate::api::identity::ADMIN_GROUP)
}

/// Serves the endpoint on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, endpoint: Arc<Endpoint>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let Ok((tcp, peer)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        // Streams (exec, port-forward) write small frames that must not wait for ACKs.
        let _ = tcp.set_nodelay(true);
        let (acceptor, endpoint) = (acceptor.clone(), endpoint.clone());
        tokio::spawn(async move {
            let Ok(Ok(tls)) =
                tokio::time::timeout(Duration::from_secs(10), acceptor.accept(tcp)).await
            else {
                tracing::debug!(%peer, "kubelet TLS handshake failed");
                return;
            };
            let allowed = tls
                .get_ref()
                .1
                .peer_certificates()
                .and_then(|c| c.first())
                .and_then(|der| crate::tls::identity_from_cert(der.as_ref()))
                .is_some_and(|id| may_use_kubelet(&id));
            let service = service_fn(move |req: Request<Incoming>| {
                let endpoint = endpoint.clone();
                async move {
                    if !allowed {
                        return Ok::<_, Infallible>(text(
                            StatusCode::FORBIDDEN,
                            "only the API server may use the kubelet endpoint",
                        ));
                    }
                    Ok(handle(req, endpoint).await)
                }
            });
            let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await;
        });
    }
}

async fn handle(req: Request<Incoming>, endpoint: Arc<Endpoint>) -> Response<Body> {
    let path = req.uri().path().to_string();
    let parts: Vec<&str> = path.trim_matches('/').split('/').collect();
    match parts.as_slice() {
        // Upstream's kubelet health check (reached through `nodes/NAME/proxy/healthz`).
        ["healthz"] => Response::new(Full::new(Bytes::from_static(b"ok")).boxed()),
        ["containerLogs", ns, pod, container] => {
            container_logs(&req, &endpoint.pods, &endpoint.pods_dir, ns, pod, container)
        }
        [kind @ ("exec" | "attach"), namespace, pod, container] => {
            let kind = if *kind == "exec" {
                exec::Kind::Exec
            } else {
                exec::Kind::Attach
            };
            let target = exec::Target {
                namespace: namespace.to_string(),
                pod: pod.to_string(),
                container: container.to_string(),
            };
            exec::exec(req, endpoint.clone(), target, kind)
                .await
                .unwrap_or_else(|e| text(e.status(), &e.message()))
        }
        ["portForward", namespace, pod] => {
            portforward::port_forward(req, &endpoint, namespace, pod)
                .unwrap_or_else(|e| text(e.status(), &e.to_string()))
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

fn container_logs(
    req: &Request<Incoming>,
    pods: &PodIndex,
    pods_dir: &Path,
    ns: &str,
    pod: &str,
    container: &str,
) -> Response<Body> {
    let uid = pods.read().ok().and_then(|p| {
        p.get(&(ns.to_string(), pod.to_string()))
            .map(|e| e.uid.clone())
    });
    let Some(uid) = uid else {
        return text(
            StatusCode::NOT_FOUND,
            &format!("pod {ns}/{pod} is not running on this node"),
        );
    };
    let opts = LogOptions::from_query(req.uri().query().unwrap_or(""));
    let dir = pods_dir.join(&uid).join("logs").join(container);
    let Some(file) = log_file(&dir, opts.previous) else {
        let what = if opts.previous {
            "previous terminated"
        } else {
            ""
        };
        return text(
            StatusCode::BAD_REQUEST,
            &format!("{what} container {container:?} in pod {pod:?} has no logs"),
        );
    };
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(16);
    tokio::task::spawn_blocking(move || stream_file(&file, &dir, &opts, &tx));
    let body = StreamBody::new(tokio_stream::wrappers::ReceiverStream::new(rx));
    let mut resp = Response::new(BodyExt::boxed(body));
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static("text/plain"),
    );
    resp
}

/// Sends the file's records (the last `tail_lines`), then, when following, new complete
/// records until the container restarts (a newer file appears), the pod is gone or the
/// client hangs up.
fn stream_file(
    file: &Path,
    dir: &Path,
    opts: &LogOptions,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) {
    let Ok(mut f) = std::fs::File::open(file) else {
        return;
    };
    let mut data = Vec::new();
    if f.read_to_end(&mut data).is_err() {
        return;
    }
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    let start = match opts.tail_lines {
        Some(n) => tail(&data[..complete], n),
        None => &data[..complete],
    };
    let send = |bytes: Vec<u8>| {
        bytes.is_empty()
            || tx
                .blocking_send(Ok(Frame::data(Bytes::from(bytes))))
                .is_ok()
    };
    if !send(render(start, opts.timestamps)) || !opts.follow {
        return;
    }
    let mut offset = complete as u64;
    loop {
        std::thread::sleep(FOLLOW_POLL);
        if tx.is_closed() || !dir.exists() {
            return;
        }
        let mut more = Vec::new();
        if f.seek(SeekFrom::Start(offset)).is_err() || f.read_to_end(&mut more).is_err() {
            return;
        }
        if let Some(end) = more.iter().rposition(|&b| b == b'\n') {
            offset += end as u64 + 1;
            if !send(render(&more[..=end], opts.timestamps)) {
                return;
            }
        } else if log_file(dir, false).as_deref() != Some(file) {
            // The container restarted: its new instance logs elsewhere.
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;
    use logger::Stream;

    #[test]
    fn only_the_api_servers_kubelet_client_and_admins_may_use_the_endpoint() {
        let id = |user: &str, groups: &[&str]| crate::tls::Identity {
            user: user.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            credential: None,
        };
        assert!(may_use_kubelet(&id("kube-apiserver-kubelet-client", &[])));
        assert!(may_use_kubelet(&id("system:admin", &["system:masters"])));
        assert!(!may_use_kubelet(&id("system:node:n2", &["system:nodes"])));
        assert!(!may_use_kubelet(&id("bob", &[])));
    }

    #[test]
    fn records_render_as_kubectl_shows_them() {
        let t = Utc::now();
        let mut data = logger::format_line(t, Stream::Stdout, false, b"hello");
        data.extend(logger::format_line(t, Stream::Stderr, true, b"par"));
        data.extend(logger::format_line(t, Stream::Stderr, false, b"tial"));
        assert_eq!(render(&data, false), b"hello\npartial\n");
        let stamped = String::from_utf8(render(&data, true)).unwrap();
        assert!(
            stamped.ends_with("Z hello\n") || stamped.contains("Z hello\n"),
            "{stamped}"
        );
        assert_eq!(
            tail(&data, 1),
            &logger::format_line(t, Stream::Stderr, false, b"tial")[..]
        );
    }

    #[test]
    fn current_and_previous_log_files() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(log_file(dir.path(), false), None);
        for n in [0, 1, 10] {
            std::fs::write(dir.path().join(format!("{n}.log")), "").unwrap();
        }
        assert_eq!(log_file(dir.path(), false), Some(dir.path().join("10.log")));
        assert_eq!(log_file(dir.path(), true), Some(dir.path().join("1.log")));
    }

    #[test]
    fn options_parse_from_the_query() {
        let o = LogOptions::from_query("follow=true&tailLines=5&timestamps=1&container=x");
        assert_eq!(
            o,
            LogOptions {
                follow: true,
                tail_lines: Some(5),
                previous: false,
                timestamps: true
            }
        );
    }
}
