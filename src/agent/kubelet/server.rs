//! The kubelet's HTTPS endpoint, reached by the API server for `kubectl logs` and
//! `kubectl exec`: `GET /containerLogs/{namespace}/{pod}/{container}` with `follow`,
//! `tailLines`, `previous` and `timestamps`; `/exec/{namespace}/{pod}/{container}` (see
//! `exec`), `/attach/…`, `/portForward/{namespace}/{pod}` (see `portforward`),
//! `/metrics/resource` (see `agent::stats`), `/metrics` (Prometheus text: the node's
//! kubelet, proxy and DNS series) and `/healthz`. Only clients with a cluster-CA
//! certificate of the API server's kubelet-client
//! identity (or of an admin, `system:masters`) are served; nodes are not.

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
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
    /// Where resource usage is read for `/metrics/resource`.
    pub cgroups: crate::agent::stats::CgroupReader,
    /// What `/metrics` serves.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
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
    /// Only records written at or after this (`sinceSeconds`, `sinceTime`).
    pub since: Option<DateTime<Utc>>,
}

impl LogOptions {
    /// The options of a request made at `now`.
    pub fn from_query(query: &str, now: DateTime<Utc>) -> LogOptions {
        let mut o = LogOptions::default();
        for (k, v) in form_urlencoded::parse(query.as_bytes()) {
            match k.as_ref() {
                "sinceSeconds" => {
                    o.since = v.parse::<i64>().ok().filter(|s| *s > 0).map(|s| {
                        chrono::Duration::try_seconds(s)
                            .and_then(|d| now.checked_sub_signed(d))
                            .unwrap_or(DateTime::<Utc>::MIN_UTC)
                    })
                }
                "sinceTime" => {
                    o.since = DateTime::parse_from_rfc3339(&v)
                        .ok()
                        .map(|t| t.with_timezone(&Utc))
                }
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

/// CRI log records → what `kubectl logs` shows (content, optionally timestamped), only
/// the records written at or after `since`.
pub fn render(records: &[u8], timestamps: bool, since: Option<DateTime<Utc>>) -> Vec<u8> {
    let mut out = Vec::with_capacity(records.len());
    for line in records.split(|&b| b == b'\n').filter(|l| !l.is_empty()) {
        let Some(rec) = logger::parse_line(line) else {
            continue;
        };
        if since.is_some_and(|since| rec.time < since) {
            continue;
        }
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
        // Reached through `nodes/NAME/proxy/metrics`, as upstream's kubelet.
        ["metrics"] => metrics(&endpoint).await,
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
        ["metrics", "resource"] => resource_metrics(&endpoint).await,
        ["portForward", namespace, pod]
            if portforward::websocket::is_websocket_upgrade(req.headers()) =>
        {
            portforward::websocket::port_forward(req, &endpoint, namespace, pod)
                .unwrap_or_else(|(code, message)| text(code, &message))
        }
        ["portForward", namespace, pod] => {
            portforward::port_forward(req, &endpoint, namespace, pod)
                .unwrap_or_else(|e| text(e.status(), &e.to_string()))
        }
        _ => text(StatusCode::NOT_FOUND, "not found"),
    }
}

/// `/metrics/resource`: the node's, pods' and containers' CPU and memory (upstream's
/// resource metrics endpoint, scraped by the API server's collector).
async fn resource_metrics(endpoint: &Endpoint) -> Response<Body> {
    let containers = match endpoint.runtime.list_containers().await {
        Ok(c) => c,
        Err(e) => {
            return text(
                StatusCode::SERVICE_UNAVAILABLE,
                &format!("list containers: {e}"),
            )
        }
    };
    let reader = endpoint.cgroups.clone();
    let now = Utc::now();
    let sample =
        tokio::task::spawn_blocking(move || crate::agent::stats::sample(&reader, &containers, now))
            .await;
    match sample {
        Ok(sample) => {
            let mut resp =
                Response::new(Full::new(Bytes::from(crate::agent::stats::render(&sample))).boxed());
            resp.headers_mut().insert(
                http::header::CONTENT_TYPE,
                http::HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
            );
            resp
        }
        Err(e) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("read cgroups: {e}"),
        ),
    }
}

/// The node's metrics, with the running pods and containers counted from the runtime
/// now (a pod runs while one of its containers does).
async fn metrics(endpoint: &Endpoint) -> Response<Body> {
    match endpoint.runtime.list_containers().await {
        Ok(containers) => {
            let (pods, running) = running_counts(&containers);
            endpoint.metrics.set_running(pods, running);
        }
        Err(e) => tracing::debug!(error = %e, "metrics: listing containers failed"),
    }
    let mut resp = Response::new(Full::new(Bytes::from(endpoint.metrics.encode())).boxed());
    resp.headers_mut().insert(
        http::header::CONTENT_TYPE,
        http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    resp
}

/// `(pods with a running container, running containers)` among `containers`.
fn running_counts(containers: &[crate::agent::runtime::ContainerSummary]) -> (usize, usize) {
    use crate::agent::runtime::ContainerState;
    let running: Vec<_> = containers
        .iter()
        .filter(|c| matches!(c.state, ContainerState::Running { .. }))
        .collect();
    let pods: std::collections::HashSet<&str> = running
        .iter()
        .filter_map(|c| c.labels.get(super::container::POD_UID_LABEL))
        .map(String::as_str)
        .collect();
    (pods.len(), running.len())
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
    let opts = LogOptions::from_query(req.uri().query().unwrap_or(""), Utc::now());
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

/// Sends the records of the container instance whose log is `file` (its rotated files
/// first, oldest first; the last `tail_lines` of them), then, when following, new
/// complete records — across rotations of `file` — until the container restarts (a
/// newer instance's file appears), the pod is gone or the client hangs up.
fn stream_file(
    file: &Path,
    dir: &Path,
    opts: &LogOptions,
    tx: &mpsc::Sender<Result<Frame<Bytes>, Infallible>>,
) {
    // The current file first: if it is rotated meanwhile, it shows up among the rotated
    // files too and is skipped there (same inode).
    let Ok(current) = std::fs::File::open(file) else {
        return;
    };
    let held = current.metadata().ok().map(|m| (m.dev(), m.ino()));
    let mut files: Vec<std::fs::File> = logger::rotated_files(file)
        .iter()
        .filter_map(|p| std::fs::File::open(p).ok())
        .filter(|f| f.metadata().ok().map(|m| (m.dev(), m.ino())) != held)
        .collect();
    files.push(current);
    let send = |bytes: Vec<u8>| {
        bytes.is_empty()
            || tx
                .blocking_send(Ok(Frame::data(Bytes::from(bytes))))
                .is_ok()
    };
    let (first, mut offset) = match opts.tail_lines {
        Some(n) => tail_start(&mut files, n),
        None => (0, 0),
    };
    let last = files.len() - 1;
    for (i, f) in files.iter_mut().enumerate().skip(first) {
        let from = if i == first { offset } else { 0 };
        let Some(end) = send_records(f, from, opts, &send) else {
            return;
        };
        offset = end;
        if i == last {
            break;
        }
    }
    if !opts.follow {
        return;
    }
    let mut f = files.pop().expect("the current file is always there");
    loop {
        if tx.is_closed() || !dir.exists() {
            return;
        }
        let Some(end) = send_records(&mut f, offset, opts, &send) else {
            return;
        };
        let progressed = end != offset;
        offset = end;
        if rotated_away(&f, file) {
            // The logger writes no more to a file it renamed: read what came just before
            // the rename, then go on at once with the next file (a newer rotated one if
            // it rotated more than once since, else the new one).
            let Some(_) = send_records(&mut f, offset, opts, &send) else {
                return;
            };
            if let Some(next) = next_file(&f, file) {
                f = next;
                offset = 0;
                continue;
            }
            // Between the rename and the new file's creation: try again next poll.
        } else if !progressed && file.exists() && log_file(dir, false).as_deref() != Some(file) {
            // The container restarted: its new instance logs elsewhere.
            return;
        }
        std::thread::sleep(FOLLOW_POLL);
    }
}

/// The file after the open `f` (read to its end) among `log`'s files: the rotated file
/// following it, or `log` itself. If `f` was already removed, every rotated file left
/// is newer (the oldest go first), so the oldest of them.
fn next_file(f: &std::fs::File, log: &Path) -> Option<std::fs::File> {
    let held = f.metadata().ok().map(|m| (m.dev(), m.ino()));
    let rotated = logger::rotated_files(log);
    let position = rotated
        .iter()
        .position(|p| std::fs::metadata(p).ok().map(|m| (m.dev(), m.ino())) == held);
    let next = match position {
        Some(i) => rotated.get(i + 1),
        None => rotated.first(),
    };
    match next {
        Some(p) => std::fs::File::open(p)
            .ok()
            .or_else(|| std::fs::File::open(log).ok()),
        None => std::fs::File::open(log).ok(),
    }
}

/// Whether `path` now names another file than the open `f` (the logger rotated it);
/// false while `path` does not exist (the logger is about to create it).
fn rotated_away(f: &std::fs::File, path: &Path) -> bool {
    match (f.metadata(), std::fs::metadata(path)) {
        (Ok(held), Ok(now)) => (held.dev(), held.ino()) != (now.dev(), now.ino()),
        _ => false,
    }
}

/// Sends the complete records of `f` from `offset`; the offset after them, or `None`
/// when reading failed or the client hung up.
fn send_records(
    f: &mut std::fs::File,
    offset: u64,
    opts: &LogOptions,
    send: &impl Fn(Vec<u8>) -> bool,
) -> Option<u64> {
    let mut data = Vec::new();
    f.seek(SeekFrom::Start(offset)).ok()?;
    f.read_to_end(&mut data).ok()?;
    let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    for chunk in chunks_of_records(&data[..complete], SEND_CHUNK) {
        if !send(render(chunk, opts.timestamps, opts.since)) {
            return None;
        }
    }
    Some(offset + complete as u64)
}

/// Bytes of records rendered and sent at once.
const SEND_CHUNK: usize = 64 * 1024;

/// `records` cut into pieces of about `size` bytes, each ending at a record's end.
fn chunks_of_records(records: &[u8], size: usize) -> impl Iterator<Item = &[u8]> {
    let mut rest = records;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let cut = if rest.len() <= size {
            rest.len()
        } else {
            rest[size..]
                .iter()
                .position(|&b| b == b'\n')
                .map_or(rest.len(), |i| size + i + 1)
        };
        let (chunk, after) = rest.split_at(cut);
        rest = after;
        Some(chunk)
    })
}

/// Where the last `n` complete records of `files` (oldest first) start: the index of
/// the file and the offset in it.
fn tail_start(files: &mut [std::fs::File], n: usize) -> (usize, u64) {
    let mut wanted = n;
    for i in (0..files.len()).rev() {
        let mut data = Vec::new();
        if files[i].seek(SeekFrom::Start(0)).is_err() || files[i].read_to_end(&mut data).is_err() {
            return ((i + 1).min(files.len() - 1), 0);
        }
        let complete = data.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        let records = &data[..complete];
        let count = records.iter().filter(|&&b| b == b'\n').count();
        if count >= wanted {
            let start = complete - tail(records, wanted).len();
            return (i, start as u64);
        }
        wanted -= count;
    }
    (0, 0)
}

#[cfg(test)]
mod tests {
    use super::*;
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
    fn running_pods_and_containers_are_counted_from_the_runtime() {
        use crate::agent::runtime::{ContainerState, ContainerSummary};
        let container = |id: &str, uid: &str, running: bool| ContainerSummary {
            id: id.into(),
            image: "busybox".into(),
            labels: [(
                super::super::container::POD_UID_LABEL.to_string(),
                uid.to_string(),
            )]
            .into(),
            state: if running {
                ContainerState::Running { pid: 1 }
            } else {
                ContainerState::Created
            },
        };
        let all = [
            container("a", "u1", true),
            container("b", "u1", true),
            container("c", "u2", true),
            container("d", "u3", false),
        ];
        assert_eq!(running_counts(&all), (2, 3));
        assert_eq!(running_counts(&[]), (0, 0));
    }

    #[test]
    fn records_render_as_kubectl_shows_them() {
        let t = Utc::now();
        let mut data = logger::format_line(t, Stream::Stdout, false, b"hello");
        data.extend(logger::format_line(t, Stream::Stderr, true, b"par"));
        data.extend(logger::format_line(t, Stream::Stderr, false, b"tial"));
        assert_eq!(render(&data, false, None), b"hello\npartial\n");
        let stamped = String::from_utf8(render(&data, true, None)).unwrap();
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
        let now = Utc::now();
        let o = LogOptions::from_query("follow=true&tailLines=5&timestamps=1&container=x", now);
        assert_eq!(
            o,
            LogOptions {
                follow: true,
                tail_lines: Some(5),
                previous: false,
                timestamps: true,
                since: None,
            }
        );
        let o = LogOptions::from_query("sinceSeconds=10", now);
        assert_eq!(o.since, Some(now - chrono::Duration::seconds(10)));
        let o = LogOptions::from_query("sinceTime=2024-01-01T00%3A00%3A00Z", now);
        assert_eq!(o.since.unwrap().to_rfc3339(), "2024-01-01T00:00:00+00:00");
    }

    fn rec(i: usize) -> Vec<u8> {
        logger::format_line(
            chrono::DateTime::from_timestamp(1_700_000_000 + i as i64, 0).unwrap(),
            Stream::Stdout,
            false,
            format!("line {i}").as_bytes(),
        )
    }

    fn lines(range: std::ops::Range<usize>) -> String {
        range.map(|i| format!("line {i}\n")).collect()
    }

    /// Runs `stream_file` for `log` and collects what it sends until it ends or what
    /// came ends with `until` (bounded: the test fails after 20 s).
    fn collect(log: &Path, opts: LogOptions, until: Option<&str>) -> String {
        let (tx, mut rx) = mpsc::channel(1024);
        let (log, dir) = (log.to_path_buf(), log.parent().unwrap().to_path_buf());
        std::thread::spawn(move || stream_file(&log, &dir, &opts, &tx));
        let mut out = Vec::new();
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        while until.is_none_or(|u| !out.ends_with(u.as_bytes())) {
            assert!(
                std::time::Instant::now() < deadline,
                "got only {:?}",
                String::from_utf8_lossy(&out)
            );
            match rx.try_recv() {
                Ok(Ok(frame)) => out.extend_from_slice(&frame.into_data().unwrap()),
                Err(mpsc::error::TryRecvError::Disconnected) => break,
                Err(mpsc::error::TryRecvError::Empty) => {
                    std::thread::sleep(Duration::from_millis(5))
                }
            }
        }
        String::from_utf8(out).unwrap()
    }

    /// Lines 0..30 over three rotated files and the current one.
    fn rotated_log(dir: &Path) -> PathBuf {
        let log = dir.join("0.log");
        let rotation = logger::Rotation {
            max_size: rec(0).len() as u64 * 8,
            max_files: 10,
        };
        let mut f = logger::RotatingFile::open(&log, Some(rotation), Utc::now).unwrap();
        for i in 0..30 {
            f.write_record(&rec(i)).unwrap();
        }
        assert!(logger::rotated_files(&log).len() >= 3);
        log
    }

    #[test]
    fn logs_read_across_rotated_files_in_order_with_tail_and_since() {
        let dir = tempfile::tempdir().unwrap();
        let log = rotated_log(dir.path());
        let all = collect(&log, LogOptions::default(), None);
        assert_eq!(all, lines(0..30));
        for (n, from) in [(5, 25), (12, 18), (30, 0), (100, 0), (1, 29)] {
            let opts = LogOptions {
                tail_lines: Some(n),
                ..Default::default()
            };
            assert_eq!(collect(&log, opts, None), lines(from..30), "tail {n}");
        }
        let opts = LogOptions {
            since: chrono::DateTime::from_timestamp(1_700_000_000 + 20, 0),
            ..Default::default()
        };
        assert_eq!(collect(&log, opts, None), lines(20..30));
    }

    #[test]
    fn following_goes_on_across_rotations() {
        let dir = tempfile::tempdir().unwrap();
        let log = rotated_log(dir.path());
        let opts = LogOptions {
            follow: true,
            tail_lines: Some(2),
            ..Default::default()
        };
        let (writer_log, writer_dir) = (log.clone(), dir.path().to_path_buf());
        let writer = std::thread::spawn(move || {
            // Up to two rotations between two polls of the follower; four rotated
            // files kept, so none goes before the follower opened it.
            let rotation = logger::Rotation {
                max_size: rec(0).len() as u64 * 8,
                max_files: 5,
            };
            let mut f = logger::RotatingFile::open(&writer_log, Some(rotation), Utc::now).unwrap();
            for i in 30..100 {
                f.write_record(&rec(i)).unwrap();
                if i % 16 == 0 {
                    std::thread::sleep(FOLLOW_POLL * 2);
                }
            }
            drop(writer_dir);
        });
        let got = collect(&log, opts, Some("line 99\n"));
        writer.join().unwrap();
        // The last two lines when the request came (the writer may have added a few),
        // then every line after them, in order.
        let first: usize = got
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("line "))
            .and_then(|n| n.parse().ok())
            .unwrap();
        assert!((28..=31).contains(&first), "{got}");
        assert_eq!(got, lines(first..100));
    }
}
