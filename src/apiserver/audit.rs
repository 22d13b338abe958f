//! The audit log (`--audit-log-path`): one `audit.k8s.io/v1` Event per request at the
//! Metadata level (who, what, on which object, with which outcome; never a request or
//! response body), written by a dedicated thread to stdout or a file rotated by size.
//!
//! Requests never wait for the disk: events go through a bounded queue of
//! [`QUEUE_DEPTH`] lines, like upstream's batch backend. When the writer falls that far
//! behind, new events are dropped, counted, and a warning is logged at most every
//! [`DROP_WARNING_INTERVAL`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::net::IpAddr;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use chrono::{DateTime, SecondsFormat, Utc};
use http::{header, Request, Response};
use http_body_util::BodyExt;
use serde::Serialize;

use super::auth::{self, NodeGraph, User};
use super::rbac::Rbac;
use super::request::Query;
use super::response::Body;
use super::router::{self, Route};
use crate::api::resources::Resources;
use crate::api::status::ApiError;

/// Events queued for the writer before new ones are dropped (upstream's batch buffer).
pub const QUEUE_DEPTH: usize = 10_000;
/// Least time between two "audit events dropped" warnings.
pub const DROP_WARNING_INTERVAL: Duration = Duration::from_secs(10);
/// Rotation size when only `--audit-log-maxbackup` is given (lumberjack's default).
const DEFAULT_MAX_SIZE_MB: u64 = 100;
/// Backup file names carry the rotation time in this format (as lumberjack names them).
const BACKUP_TIME_FORMAT: &str = "%Y-%m-%dT%H-%M-%S%.3f";

#[derive(Debug, thiserror::Error)]
pub enum AuditError {
    #[error("open audit log {path}")]
    Open {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("start the audit log writer thread")]
    SpawnWriter {
        #[source]
        source: io::Error,
    },
}

/// Where the audit log goes and how it is rotated (kube-apiserver's flags).
#[derive(Debug, Clone, PartialEq)]
pub struct AuditConfig {
    /// `None` is stdout (`--audit-log-path -`).
    pub path: Option<PathBuf>,
    /// Rotate when the file would grow past this many bytes (`None`: never).
    pub max_bytes: Option<u64>,
    /// Rotated files kept (0: all).
    pub max_backups: usize,
}

impl AuditConfig {
    /// From `--audit-log-path`, `--audit-log-maxsize` (MB) and `--audit-log-maxbackup`.
    /// As upstream, a file is rotated only when one of the limits is set, and a backup
    /// limit alone rotates at 100 MB.
    pub fn from_flags(path: &Path, max_size_mb: u64, max_backups: usize) -> AuditConfig {
        let size_mb = match (max_size_mb, max_backups) {
            (0, 0) => None,
            (0, _) => Some(DEFAULT_MAX_SIZE_MB),
            (mb, _) => Some(mb),
        };
        AuditConfig {
            path: (path != Path::new("-")).then(|| path.to_path_buf()),
            max_bytes: size_mb.map(|mb| mb * 1024 * 1024),
            max_backups,
        }
    }
}

/// The running audit log: hands events to the writer thread without waiting.
pub struct AuditLog {
    queue: SyncSender<Vec<u8>>,
    dropped: AtomicU64,
    last_drop_warning: Mutex<Option<Instant>>,
}

impl AuditLog {
    /// Opens the destination (so a bad path fails at start-up) and starts the writer.
    pub fn start(config: AuditConfig) -> Result<Arc<AuditLog>, AuditError> {
        let sink: Box<dyn LineSink> = match &config.path {
            None => Box::new(io::stdout()),
            Some(path) => Box::new(RotatingFile::open(
                path.clone(),
                config.max_bytes,
                config.max_backups,
            )?),
        };
        let (queue, rx) = sync_channel(QUEUE_DEPTH);
        std::thread::Builder::new()
            .name("orc-audit-writer".into())
            .spawn(move || write_lines(rx, sink))
            .map_err(|source| AuditError::SpawnWriter { source })?;
        Ok(Arc::new(AuditLog {
            queue,
            dropped: AtomicU64::new(0),
            last_drop_warning: Mutex::new(None),
        }))
    }

    /// Events dropped because the writer fell behind.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// Records what a request asks, before it is handled; `user` is who authenticated.
    /// The authorization decision is the authorizer's answer for the same request (read
    /// from `graph` as the handler will a moment later).
    pub fn begin<B>(
        self: &Arc<Self>,
        req: &Request<B>,
        user: Option<&User>,
        graph: &dyn NodeGraph,
        rbac: &Rbac,
        served: &Resources,
    ) -> Pending {
        let uri = req.uri();
        let request_uri = uri
            .path_and_query()
            .map_or_else(|| uri.path().to_string(), |pq| pq.as_str().to_string());
        let query = Query::parse(uri.query());
        let mut allowed = user.is_some();
        let (verb, object_ref, long_running) = match router::parse(uri.path(), served) {
            Some(Route::Resource(r)) => {
                let verb = super::handlers::verb_of(req.method(), &r, &query);
                if let Some(user) = user {
                    let action = auth::Action {
                        verb,
                        def: r.def,
                        namespace: r.namespace.as_deref(),
                        name: r.name.as_deref(),
                        subresource: r.subresource.as_deref(),
                        selected_name: super::handlers::selected_name(query.str("fieldSelector")),
                    };
                    allowed = auth::authorize(user, &action, graph, rbac).is_ok();
                }
                let long_running = verb == "watch"
                    || matches!(
                        r.subresource.as_deref(),
                        Some("exec" | "attach" | "portforward" | "proxy")
                    )
                    || (r.subresource.as_deref() == Some("log") && query.flag("follow"));
                let object_ref = ObjectRef {
                    resource: r.def.plural,
                    namespace: r.namespace.clone(),
                    name: r.name.clone(),
                    api_group: (!r.def.group.is_empty()).then_some(r.def.group),
                    api_version: r.def.version,
                    subresource: r.subresource.clone(),
                };
                (verb.to_string(), Some(object_ref), long_running)
            }
            _ => (req.method().as_str().to_ascii_lowercase(), None, false),
        };
        Pending {
            log: self.clone(),
            audit_id: uuid::Uuid::new_v4().to_string(),
            received: Utc::now(),
            request_uri,
            verb,
            user: user.cloned(),
            impersonated: None,
            source_ips: source_ips(req),
            user_agent: req
                .headers()
                .get(header::USER_AGENT)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string),
            object_ref,
            long_running,
            decision: user.map(|_| if allowed { "allow" } else { "forbid" }),
            failure: None,
            annotations: BTreeMap::new(),
        }
    }

    fn emit(&self, event: &Event<'_>) {
        let mut line = match serde_json::to_vec(event) {
            Ok(line) => line,
            Err(e) => {
                tracing::warn!(error = %e, "audit event could not be serialized");
                return;
            }
        };
        line.push(b'\n');
        match self.queue.try_send(line) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => self.count_drop(),
            Err(TrySendError::Disconnected(_)) => self.count_drop(),
        }
    }

    fn count_drop(&self) {
        let dropped = self.dropped.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self
            .last_drop_warning
            .lock()
            .unwrap_or_else(|e| e.into_inner());
        if last.is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL) {
            *last = Some(Instant::now());
            tracing::warn!(
                dropped,
                queue = QUEUE_DEPTH,
                "audit log writer is behind: events dropped"
            );
        }
    }
}

/// `X-Forwarded-For`, then `X-Real-Ip`, then the connection's peer, without repeats (as
/// upstream's `SourceIPs`). The headers are client-supplied and only informational.
fn source_ips<B>(req: &Request<B>) -> Vec<String> {
    let header_ips = |name: &str| -> Vec<IpAddr> {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(|v| {
                v.split(',')
                    .filter_map(|ip| ip.trim().parse().ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    let mut ips = header_ips("x-forwarded-for");
    ips.extend(header_ips("x-real-ip"));
    if let Some(super::auth::ConnectionInfo { peer, .. }) = req.extensions().get() {
        ips.push(peer.ip());
    }
    let mut out: Vec<String> = Vec::with_capacity(ips.len());
    for ip in ips {
        let ip = ip.to_string();
        if !out.contains(&ip) {
            out.push(ip);
        }
    }
    out
}

/// One request being audited, from [`AuditLog::begin`] to [`Pending::finish`].
pub struct Pending {
    log: Arc<AuditLog>,
    audit_id: String,
    received: DateTime<Utc>,
    request_uri: String,
    verb: String,
    user: Option<User>,
    impersonated: Option<User>,
    source_ips: Vec<String>,
    user_agent: Option<String>,
    object_ref: Option<ObjectRef>,
    long_running: bool,
    /// `allow` or `forbid` (`None`: not authenticated, so never authorized).
    decision: Option<&'static str>,
    failure: Option<ResponseStatus>,
    /// What the request's admission added (ValidatingAdmissionPolicies' audit annotations).
    annotations: BTreeMap<String, String>,
}

tokio::task_local! {
    /// The audit annotations of the request being handled in this task.
    static ANNOTATIONS: RefCell<BTreeMap<String, String>>;
}

/// Adds an annotation to the audit event of the request being handled (nothing when
/// the request is not audited).
pub fn annotate(key: &str, value: &str) {
    let _ = ANNOTATIONS.try_with(|a| a.borrow_mut().insert(key.to_string(), value.to_string()));
}

/// Runs `handling` collecting the audit annotations [`annotate`] adds meanwhile.
pub async fn collecting<F: std::future::Future>(
    handling: F,
) -> (F::Output, BTreeMap<String, String>) {
    ANNOTATIONS
        .scope(RefCell::new(BTreeMap::new()), async {
            let out = handling.await;
            (out, ANNOTATIONS.with(|a| a.take()))
        })
        .await
}

impl Pending {
    /// The request runs as the user it was begun with on behalf of `caller`, who
    /// authenticated: the event names `caller` as its user and the other as
    /// `impersonatedUser`, as upstream.
    pub fn impersonated_by(&mut self, caller: &User) {
        self.impersonated = self.user.replace(caller.clone());
    }

    /// Annotations the request's admission added.
    pub fn annotate(&mut self, annotations: BTreeMap<String, String>) {
        self.annotations.extend(annotations);
    }

    /// The request failed with `e`: its Status (reason, message, code; never a body)
    /// becomes the event's `responseStatus`, as upstream copies it.
    pub fn failed(&mut self, e: &ApiError) {
        self.failure = Some(ResponseStatus {
            metadata: EmptyMeta {},
            status: Some("Failure"),
            message: Some(e.message.clone()),
            reason: Some(e.reason),
            code: e.code,
        });
    }

    /// Logs the event for `resp` and returns it. A long-running request (watch, exec,
    /// attach, followed logs) logs `ResponseStarted` now and `ResponseComplete` when its
    /// body ends or the client goes away; every other request logs `ResponseComplete`.
    pub async fn finish(mut self, resp: Response<Body>) -> Response<Body> {
        let code = resp.status().as_u16();
        let resp = self.name_created_object(resp).await;
        if !self.long_running {
            self.log.emit(&self.event("ResponseComplete", code));
            return resp;
        }
        self.log.emit(&self.event("ResponseStarted", code));
        let (parts, body) = resp.into_parts();
        let body = AuditedBody {
            inner: body,
            pending: Some((self, code)),
        };
        Response::from_parts(parts, Body::new(body))
    }

    /// A create names its object in the body: take the name from the created object,
    /// as upstream completes `objectRef` from it.
    async fn name_created_object(&mut self, resp: Response<Body>) -> Response<Body> {
        let Some(object_ref) = &mut self.object_ref else {
            return resp;
        };
        if self.verb != "create" || object_ref.name.is_some() || resp.status().as_u16() != 201 {
            return resp;
        }
        let (parts, body) = resp.into_parts();
        let bytes = match body.collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(never) => match never {},
        };
        #[derive(serde::Deserialize)]
        struct Named {
            metadata: NameOnly,
        }
        #[derive(serde::Deserialize)]
        struct NameOnly {
            name: Option<String>,
        }
        if let Ok(named) = serde_json::from_slice::<Named>(&bytes) {
            object_ref.name = named.metadata.name;
        }
        Response::from_parts(parts, super::response::full(bytes))
    }

    fn event(&self, stage: &'static str, code: u16) -> Event<'_> {
        Event {
            kind: "Event",
            api_version: "audit.k8s.io/v1",
            level: "Metadata",
            audit_id: &self.audit_id,
            stage,
            request_uri: &self.request_uri,
            verb: &self.verb,
            user: UserInfo {
                username: self.user.as_ref().map(|u| u.name.as_str()),
                groups: self.user.as_ref().map(|u| u.groups.as_slice()),
            },
            impersonated_user: self.impersonated.as_ref().map(|u| UserInfo {
                username: Some(u.name.as_str()),
                groups: Some(u.groups.as_slice()),
            }),
            source_ips: &self.source_ips,
            user_agent: self.user_agent.as_deref(),
            object_ref: self.object_ref.as_ref(),
            response_status: self.failure.clone().unwrap_or(ResponseStatus {
                metadata: EmptyMeta {},
                status: None,
                message: None,
                reason: None,
                code,
            }),
            request_received_timestamp: micros(self.received),
            stage_timestamp: micros(Utc::now()),
            annotations: {
                let mut all: BTreeMap<&str, &str> = self
                    .annotations
                    .iter()
                    .map(|(k, v)| (k.as_str(), v.as_str()))
                    .collect();
                if let Some(decision) = self.decision {
                    all.insert("authorization.k8s.io/decision", decision);
                }
                all
            },
        }
    }
}

fn micros(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// `audit.k8s.io/v1` Event at the Metadata level (field order as upstream writes it).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Event<'a> {
    kind: &'static str,
    api_version: &'static str,
    level: &'static str,
    #[serde(rename = "auditID")]
    audit_id: &'a str,
    stage: &'static str,
    #[serde(rename = "requestURI")]
    request_uri: &'a str,
    verb: &'a str,
    user: UserInfo<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    impersonated_user: Option<UserInfo<'a>>,
    #[serde(rename = "sourceIPs")]
    source_ips: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    user_agent: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_ref: Option<&'a ObjectRef>,
    response_status: ResponseStatus,
    request_received_timestamp: String,
    stage_timestamp: String,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    annotations: BTreeMap<&'a str, &'a str>,
}

#[derive(Serialize)]
struct UserInfo<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    groups: Option<&'a [String]>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
struct ObjectRef {
    resource: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    namespace: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    api_group: Option<&'static str>,
    api_version: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    subresource: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
struct EmptyMeta {}

#[derive(Debug, Clone, Serialize)]
struct ResponseStatus {
    metadata: EmptyMeta,
    #[serde(skip_serializing_if = "Option::is_none")]
    status: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    message: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reason: Option<&'static str>,
    code: u16,
}

/// A long-running response's body: logs `ResponseComplete` when it is dropped (sent in
/// full, or abandoned by the client).
struct AuditedBody {
    inner: Body,
    pending: Option<(Pending, u16)>,
}

impl hyper::body::Body for AuditedBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        std::pin::Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.inner.size_hint()
    }
}

impl Drop for AuditedBody {
    fn drop(&mut self) {
        if let Some((pending, code)) = self.pending.take() {
            pending.log.emit(&pending.event("ResponseComplete", code));
        }
    }
}

/// Where the writer thread puts lines.
trait LineSink: Send {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()>;
    fn flush(&mut self) -> io::Result<()>;
}

impl LineSink for io::Stdout {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.lock().write_all(line)
    }

    fn flush(&mut self) -> io::Result<()> {
        Write::flush(self)
    }
}

/// The writer thread: writes queued lines, flushing whenever the queue runs empty. Ends
/// when the [`AuditLog`] is dropped.
fn write_lines(rx: Receiver<Vec<u8>>, mut sink: Box<dyn LineSink>) {
    let mut last_error: Option<Instant> = None;
    let mut report = |e: io::Error| {
        if last_error.is_none_or(|at| at.elapsed() >= DROP_WARNING_INTERVAL) {
            last_error = Some(Instant::now());
            tracing::warn!(error = %e, "writing the audit log failed");
        }
    };
    while let Ok(line) = rx.recv() {
        if let Err(e) = sink.write_line(&line) {
            report(e);
        }
        while let Ok(line) = rx.try_recv() {
            if let Err(e) = sink.write_line(&line) {
                report(e);
            }
        }
        if let Err(e) = sink.flush() {
            report(e);
        }
    }
}

/// An append-only file rotated by size: the full file is renamed to
/// `NAME-<UTC time>.EXT` (lumberjack's names, as kube-apiserver's audit log uses) and the
/// oldest backups beyond `max_backups` are removed.
struct RotatingFile {
    path: PathBuf,
    file: BufWriter<File>,
    size: u64,
    max_bytes: Option<u64>,
    max_backups: usize,
}

impl RotatingFile {
    fn open(path: PathBuf, max_bytes: Option<u64>, max_backups: usize) -> Result<Self, AuditError> {
        let open_err = |source| AuditError::Open {
            path: path.display().to_string(),
            source,
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(open_err)?;
        }
        let file = open_append(&path).map_err(open_err)?;
        let size = file.metadata().map_err(open_err)?.len();
        Ok(RotatingFile {
            path,
            file: BufWriter::new(file),
            size,
            max_bytes,
            max_backups,
        })
    }

    fn rotate(&mut self) -> io::Result<()> {
        self.file.flush()?;
        let mut at = Utc::now();
        let mut backup = backup_path(&self.path, at);
        while backup.exists() {
            at += chrono::Duration::milliseconds(1);
            backup = backup_path(&self.path, at);
        }
        std::fs::rename(&self.path, &backup)?;
        self.file = BufWriter::new(open_append(&self.path)?);
        self.size = 0;
        self.remove_old_backups()
    }

    fn remove_old_backups(&self) -> io::Result<()> {
        if self.max_backups == 0 {
            return Ok(());
        }
        let mut backups = backups_of(&self.path)?;
        backups.sort();
        let excess = backups.len().saturating_sub(self.max_backups);
        for old in &backups[..excess] {
            std::fs::remove_file(old)?;
        }
        Ok(())
    }
}

impl LineSink for RotatingFile {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        let len = line.len() as u64;
        if self
            .max_bytes
            .is_some_and(|max| self.size > 0 && self.size + len > max)
        {
            self.rotate()?;
        }
        self.file.write_all(line)?;
        self.size += len;
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

/// The log holds user names and what they did: owner-only, like the datastore.
fn open_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

fn split_name(path: &Path) -> (String, String) {
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let ext = path
        .extension()
        .map(|e| format!(".{}", e.to_string_lossy()))
        .unwrap_or_default();
    (stem, ext)
}

fn backup_path(path: &Path, at: DateTime<Utc>) -> PathBuf {
    let (stem, ext) = split_name(path);
    path.with_file_name(format!("{stem}-{}{ext}", at.format(BACKUP_TIME_FORMAT)))
}

/// Rotated files of `path` (their names sort by rotation time).
fn backups_of(path: &Path) -> io::Result<Vec<PathBuf>> {
    let (stem, ext) = split_name(path);
    let dir = match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => dir.to_path_buf(),
        None => PathBuf::from("."),
    };
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let name = entry?.file_name().to_string_lossy().into_owned();
        let stamp = name
            .strip_prefix(&format!("{stem}-"))
            .and_then(|rest| rest.strip_suffix(&ext));
        let is_backup = stamp
            .is_some_and(|s| chrono::NaiveDateTime::parse_from_str(s, BACKUP_TIME_FORMAT).is_ok());
        if is_backup {
            out.push(dir.join(name));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    #[test]
    fn flags_map_to_rotation_as_upstream() {
        let c = AuditConfig::from_flags(Path::new("/var/log/audit.log"), 0, 0);
        assert_eq!(c.max_bytes, None);
        assert_eq!(c.path.as_deref(), Some(Path::new("/var/log/audit.log")));
        let c = AuditConfig::from_flags(Path::new("a.log"), 0, 3);
        assert_eq!(c.max_bytes, Some(100 * 1024 * 1024));
        let c = AuditConfig::from_flags(Path::new("-"), 2, 0);
        assert_eq!((c.path, c.max_bytes), (None, Some(2 * 1024 * 1024)));
    }

    #[test]
    fn rotation_keeps_at_most_max_backups_and_no_line_is_split() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.log");
        let mut file = RotatingFile::open(path.clone(), Some(100), 2).unwrap();
        for i in 0..40 {
            file.write_line(format!("{{\"line\":\"{i:04}\"}}\n").as_bytes())
                .unwrap();
        }
        file.flush().unwrap();
        let backups = backups_of(&path).unwrap();
        assert_eq!(backups.len(), 2, "{backups:?}");
        let mut lines = 0;
        for f in backups.iter().chain([&path]) {
            let text = std::fs::read_to_string(f).unwrap();
            assert!(
                text.len() <= 100,
                "{} has {} bytes",
                f.display(),
                text.len()
            );
            for line in text.lines() {
                serde_json::from_str::<Value>(line).expect("whole JSON lines");
                lines += 1;
            }
        }
        // 16-byte lines, 6 per file: the current file and two backups hold the newest.
        assert!(lines >= 13, "{lines}");
        let current = std::fs::read_to_string(&path).unwrap();
        assert!(current.contains("0039"), "{current}");
    }

    #[test]
    fn backup_names_follow_lumberjack() {
        let at = DateTime::parse_from_rfc3339("2026-12-03T13:00:00.123Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            backup_path(Path::new("/var/log/audit.log"), at),
            PathBuf::from("/var/log/audit-2026-12-03T13-00-00.123.log")
        );
    }

    fn request(method: &str, uri: &str) -> Request<()> {
        let mut req = Request::builder()
            .method(method)
            .uri(uri)
            .header(header::USER_AGENT, "kubectl/v1.32")
            .header("x-forwarded-for", "10.0.0.9, 127.0.0.1")
            .body(())
            .unwrap();
        req.extensions_mut().insert(super::auth::ConnectionInfo {
            peer: "127.0.0.1:5000".parse().unwrap(),
            credential: None,
        });
        req
    }

    /// A cluster without pods (nodes may read no secret).
    use crate::api::resources::Catalog;

    struct NoPods;

    impl NodeGraph for NoPods {
        fn pod_node(&self, _namespace: &str, _name: &str) -> Option<String> {
            None
        }

        fn node_references(&self, _node: &str, _ns: &str, _kind: &str, _name: &str) -> bool {
            false
        }
    }

    fn event_json(p: &Pending, stage: &'static str, code: u16) -> Value {
        serde_json::to_value(p.event(stage, code)).unwrap()
    }

    #[test]
    fn events_have_upstreams_metadata_shape() {
        let dir = tempfile::tempdir().unwrap();
        let log = AuditLog::start(AuditConfig {
            path: Some(dir.path().join("a.log")),
            max_bytes: None,
            max_backups: 0,
        })
        .unwrap();
        let admin = User {
            name: "system:admin".into(),
            groups: vec!["system:masters".into()],
            ..Default::default()
        };
        let p = log.begin(
            &request(
                "DELETE",
                "/apis/apps/v1/namespaces/web/deployments/front?dryRun=All",
            ),
            Some(&admin),
            &NoPods,
            &Rbac::new(),
            &Catalog::new().snapshot(),
        );
        let ev = event_json(&p, "ResponseComplete", 200);
        assert_eq!(ev["kind"], "Event");
        assert_eq!(ev["apiVersion"], "audit.k8s.io/v1");
        assert_eq!(ev["level"], "Metadata");
        assert_eq!(ev["verb"], "delete");
        assert_eq!(
            ev["requestURI"],
            "/apis/apps/v1/namespaces/web/deployments/front?dryRun=All"
        );
        assert_eq!(ev["user"]["username"], "system:admin");
        assert_eq!(ev["user"]["groups"][0], "system:masters");
        assert_eq!(
            ev["sourceIPs"],
            serde_json::json!(["10.0.0.9", "127.0.0.1"])
        );
        assert_eq!(ev["userAgent"], "kubectl/v1.32");
        assert_eq!(
            ev["objectRef"],
            serde_json::json!({"resource": "deployments", "namespace": "web", "name": "front",
                "apiGroup": "apps", "apiVersion": "v1"})
        );
        assert_eq!(
            ev["responseStatus"],
            serde_json::json!({"metadata": {}, "code": 200})
        );
        let stamp = ev["stageTimestamp"].as_str().unwrap();
        assert!(DateTime::parse_from_rfc3339(stamp).is_ok(), "{stamp}");
        assert_eq!(stamp.len(), "2026-12-03T13:00:00.000000Z".len(), "{stamp}");
        assert!(ev.get("impersonatedUser").is_none());
        assert_eq!(ev["annotations"]["authorization.k8s.io/decision"], "allow");

        let mut p = log.begin(
            &request("GET", "/api/v1/pods?watch=true"),
            None,
            &NoPods,
            &Rbac::new(),
            &Catalog::new().snapshot(),
        );
        assert!(p.long_running);
        assert_eq!(p.verb, "watch");
        p.failed(&ApiError::unauthorized());
        let ev = event_json(&p, "ResponseComplete", 401);
        assert_eq!(ev["user"], serde_json::json!({}));
        assert_eq!(ev["responseStatus"]["code"], 401);
        assert_eq!(ev["responseStatus"]["reason"], "Unauthorized");
        assert!(ev.get("annotations").is_none(), "never authorized: {ev}");

        let node = User {
            name: "system:node:n1".into(),
            groups: vec!["system:nodes".into()],
            ..Default::default()
        };
        let p = log.begin(
            &request("GET", "/api/v1/namespaces/default/secrets/db"),
            Some(&node),
            &NoPods,
            &Rbac::new(),
            &Catalog::new().snapshot(),
        );
        let ev = event_json(&p, "ResponseComplete", 403);
        assert_eq!(ev["annotations"]["authorization.k8s.io/decision"], "forbid");

        let p = log.begin(
            &request("GET", "/version"),
            Some(&admin),
            &NoPods,
            &Rbac::new(),
            &Catalog::new().snapshot(),
        );
        let ev = event_json(&p, "ResponseComplete", 200);
        assert_eq!(ev["verb"], "get");
        assert!(ev.get("objectRef").is_none());
    }
}
