//! Watch streaming: newline-delimited JSON watch events over a chunked response, with
//! the limits that keep many (or slow) watchers cheap: objects are sent from the bytes
//! the store serialized once (shared by every watcher, never copied per watch), a
//! watcher may fall only so many bytes behind before its watch is ended (clients then
//! resume or relist, as with upstream), each user may hold only so many watches, and
//! every watch ends after a bounded time.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::Notify;

use super::response::Body;
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;
use crate::store::{cache::WatchError, Event, EventType, KeyValue, Revision, Watcher};

/// Shortest a watch without `timeoutSeconds` stays open; the longest is twice this
/// (upstream's `--min-request-timeout`, randomized so that watches do not all end at once).
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// Longest any watch stays open, whatever `timeoutSeconds` asks (clients re-watch).
pub const MAX_WATCH_TIMEOUT: Duration = Duration::from_secs(60 * 60);
/// How often a bookmark is sent to watchers that asked for them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// How many bytes of events a watcher may have waiting (not yet taken by its
/// connection) before its watch is ended. The events are shared with every other
/// watcher, so this bounds what a slow watcher keeps alive rather than copies. An event
/// is always taken when nothing is waiting, however large it is.
pub const MAX_WATCH_LAG_BYTES: usize = 4 * 1024 * 1024;
/// Watches one user may hold open at once, unless configured otherwise.
pub const DEFAULT_MAX_WATCHES_PER_USER: usize = 500;
/// Objects up to this size are copied into their event's frame (one chunk on the wire);
/// larger ones are sent as the store's shared bytes between a small head and tail.
const INLINE_OBJECT_BYTES: usize = 16 * 1024;

/// Decides whether an object is visible to this watch (selectors).
pub type Predicate = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// Turns an object into what is sent for it (plain JSON or a Table row).
pub type Encoder = Arc<dyn Fn(&KeyValue) -> Bytes + Send + Sync>;

/// Brings a stored object into the watcher's version before it is encoded (custom
/// objects of a CRD with a conversion webhook), as a task of its own (the response body
/// must be `Sync`, the conversion's future is not); a failure ends the watch.
pub type Convert =
    Arc<dyn Fn(KeyValue) -> tokio::task::JoinHandle<Result<KeyValue, ApiError>> + Send + Sync>;

pub struct WatchRequest {
    pub def: &'static ResourceDef,
    pub predicate: Predicate,
    pub encoder: Encoder,
    pub convert: Option<Convert>,
    /// Checked for every object before it is sent (initial ones too); the first object
    /// that fails ends the watch. Nodes are re-authorized this way: a node's right to
    /// read a Secret or ConfigMap ends with the last of its pods that uses it.
    pub still_authorized: Option<Predicate>,
    pub bookmarks: bool,
    /// Send a bookmark annotated `k8s.io/initial-events-end` after the initial events.
    pub initial_events_end: bool,
    pub timeout: Duration,
    pub content_type: &'static str,
    /// This watch's place in its user's quota (given back when the stream is dropped).
    pub slot: Option<WatchSlot>,
}

/// How long a watch stays open: `timeoutSeconds` when given (at most
/// [`MAX_WATCH_TIMEOUT`]), else a random time between [`DEFAULT_WATCH_TIMEOUT`] and
/// twice that, as upstream.
pub fn watch_timeout(requested_seconds: Option<i64>) -> Duration {
    match requested_seconds.filter(|t| *t > 0) {
        Some(t) => Duration::from_secs(t as u64).min(MAX_WATCH_TIMEOUT),
        None => {
            let spread = rand::thread_rng().gen_range(0.0..1.0);
            DEFAULT_WATCH_TIMEOUT.mul_f64(1.0 + spread)
        }
    }
}

/// Counts the open watches of each user against a cap (0 = no cap).
pub struct WatchLimiter {
    max_per_user: usize,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

/// One open watch of one user; dropping it gives the place back.
pub struct WatchSlot {
    user: String,
    open: Arc<Mutex<HashMap<String, usize>>>,
}

impl WatchLimiter {
    pub fn new(max_per_user: usize) -> WatchLimiter {
        WatchLimiter {
            max_per_user,
            open: Arc::default(),
        }
    }

    /// A place for one more watch of `user`, or 429 TooManyRequests when they hold
    /// the maximum already.
    pub fn acquire(&self, user: &str) -> Result<WatchSlot, ApiError> {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(user.to_string()).or_default();
        if self.max_per_user > 0 && *count >= self.max_per_user {
            return Err(too_many_watches(user, self.max_per_user));
        }
        *count += 1;
        Ok(WatchSlot {
            user: user.to_string(),
            open: self.open.clone(),
        })
    }

    /// Watches `user` holds open now.
    pub fn open_watches(&self, user: &str) -> usize {
        let open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        open.get(user).copied().unwrap_or(0)
    }
}

impl Drop for WatchSlot {
    fn drop(&mut self) {
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.user) {
            *count = count.saturating_sub(1);
            if *count == 0 {
                open.remove(&self.user);
            }
        }
    }
}

/// Seconds a client refused for too many watches is told to wait (`Retry-After`).
pub const TOO_MANY_WATCHES_RETRY_SECONDS: u64 = 1;

/// Upstream's `TooManyRequests` Status (`errors.NewTooManyRequests`).
fn too_many_watches(user: &str, max: usize) -> ApiError {
    ApiError {
        details: Some(json!({"retryAfterSeconds": TOO_MANY_WATCHES_RETRY_SECONDS})),
        ..ApiError::new(
            429,
            "TooManyRequests",
            format!(
                "too many watches: user \"{user}\" already holds {max} open watches (the server's --max-watches-per-user); close some and try again later"
            ),
        )
    }
}

fn frame(kind: &str, object: &[u8]) -> Bytes {
    let mut b = BytesMut::with_capacity(object.len() + 32);
    b.put_slice(b"{\"type\":\"");
    b.put_slice(kind.as_bytes());
    b.put_slice(b"\",\"object\":");
    b.put_slice(object);
    b.put_slice(b"}\n");
    b.freeze()
}

/// The chunks of one event's line: one copied frame for small objects; for large ones a
/// head, the object's (shared) bytes and a tail, so no watcher copies a large object.
fn event_chunks(kind: EventType, object: Bytes) -> Vec<Bytes> {
    if object.len() <= INLINE_OBJECT_BYTES {
        return vec![frame(kind.as_str(), &object)];
    }
    let head: &'static [u8] = match kind {
        EventType::Added => b"{\"type\":\"ADDED\",\"object\":",
        EventType::Modified => b"{\"type\":\"MODIFIED\",\"object\":",
        EventType::Deleted => b"{\"type\":\"DELETED\",\"object\":",
    };
    vec![Bytes::from_static(head), object, Bytes::from_static(b"}\n")]
}

fn bookmark(def: &ResourceDef, rev: Revision, initial_end: bool) -> Bytes {
    let mut meta = json!({"resourceVersion": rev.to_string()});
    if initial_end {
        meta["annotations"] = json!({"k8s.io/initial-events-end": "true"});
    }
    let obj = json!({"kind": def.kind, "apiVersion": def.api_version(), "metadata": meta});
    frame("BOOKMARK", &serde_json::to_vec(&obj).unwrap_or_default())
}

/// A watch that fails at once with an ERROR event (e.g. 410 Expired), as upstream.
pub fn error_stream(e: &ApiError) -> Response<Body> {
    let body = frame(
        "ERROR",
        &serde_json::to_vec(&e.to_status()).unwrap_or_default(),
    );
    let mut resp = Response::new(super::response::full(body));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    resp
}

/// What waits to be sent to one watcher: references to shared events, encoded only
/// when the connection takes them.
enum Pending {
    Event { kind: EventType, kv: KeyValue },
    Bookmark(Revision),
}

#[derive(Default)]
struct OutboxState {
    queue: VecDeque<(Pending, usize)>,
    /// Sum of the sizes of the queued events.
    bytes: usize,
    /// No more events: the watch timed out, fell behind, lost its right, or the store
    /// shut down. What is queued is dropped.
    closed: bool,
}

/// The events between a watch's producer (following the store) and its connection.
#[derive(Default)]
struct Outbox {
    state: Mutex<OutboxState>,
    /// Wakes the connection's side when something was queued or the watch closed.
    ready: Notify,
    /// Wakes the producer when the connection's side is gone.
    gone: Notify,
}

/// Whether a push was taken.
#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    Queued,
    /// The watcher is too far behind: the watch is closed now.
    TooFarBehind,
    Closed,
}

impl Outbox {
    fn lock(&self) -> std::sync::MutexGuard<'_, OutboxState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn push(&self, item: Pending, size: usize, limit: usize) -> Pushed {
        let mut state = self.lock();
        if state.closed {
            return Pushed::Closed;
        }
        if !state.queue.is_empty() && state.bytes + size > limit {
            state.closed = true;
            state.queue.clear();
            state.bytes = 0;
            drop(state);
            self.ready.notify_one();
            return Pushed::TooFarBehind;
        }
        state.queue.push_back((item, size));
        state.bytes += size;
        drop(state);
        self.ready.notify_one();
        Pushed::Queued
    }

    fn close(&self) {
        let mut state = self.lock();
        state.closed = true;
        state.queue.clear();
        state.bytes = 0;
        drop(state);
        self.ready.notify_one();
    }

    /// The next item, or `None` once the watch is closed.
    async fn next(&self) -> Option<Pending> {
        loop {
            {
                let mut state = self.lock();
                if state.closed {
                    return None;
                }
                if let Some((item, size)) = state.queue.pop_front() {
                    state.bytes -= size;
                    return Some(item);
                }
            }
            self.ready.notified().await;
        }
    }
}

/// The connection's side of a watch: sends the initial objects, then what the producer
/// queued. Dropping it (the client went away) stops the producer.
struct Sender {
    req: Arc<WatchRequest>,
    outbox: Arc<Outbox>,
    initial: std::vec::IntoIter<KeyValue>,
    /// The snapshot's revision, for the initial-events-end bookmark.
    start: Revision,
    initial_done: bool,
    /// A conversion failed: the ERROR event is the last.
    failed: bool,
    chunks: VecDeque<Bytes>,
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.outbox.close();
        self.outbox.gone.notify_one();
    }
}

impl Sender {
    /// The next chunk of the response body, or `None` at its end.
    async fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            if let Some(chunk) = self.chunks.pop_front() {
                return Some(chunk);
            }
            if !self.initial_done {
                match self.initial.next() {
                    Some(kv) => {
                        if (self.req.predicate)(&kv.value) {
                            if !self.authorized(&kv) {
                                return None;
                            }
                            self.push_event(EventType::Added, kv).await;
                        }
                    }
                    None => {
                        self.initial_done = true;
                        if self.req.initial_events_end {
                            self.chunks
                                .push_back(bookmark(self.req.def, self.start, true));
                        }
                    }
                }
                continue;
            }
            if self.failed {
                return None;
            }
            match self.outbox.next().await? {
                Pending::Event { kind, kv } => self.push_event(kind, kv).await,
                Pending::Bookmark(rev) => {
                    self.chunks.push_back(bookmark(self.req.def, rev, false));
                }
            }
        }
    }

    /// Queues the event's chunks; a failed conversion queues an ERROR event instead
    /// and ends the watch (upstream's watch ends when an object cannot be decoded).
    async fn push_event(&mut self, kind: EventType, kv: KeyValue) {
        let kv = match &self.req.convert {
            None => kv,
            Some(convert) => match convert(kv)
                .await
                .unwrap_or_else(|e| Err(ApiError::internal(e.to_string())))
            {
                Ok(kv) => kv,
                Err(e) => {
                    tracing::debug!(resource = self.req.def.plural, error = %e.message, "conversion failed; ending watch");
                    let status = serde_json::to_vec(&e.to_status()).unwrap_or_default();
                    self.chunks.push_back(frame("ERROR", &status));
                    self.failed = true;
                    self.initial_done = true;
                    self.initial = Vec::new().into_iter();
                    self.outbox.close();
                    return;
                }
            },
        };
        self.chunks
            .extend(event_chunks(kind, (self.req.encoder)(&kv)));
    }

    fn authorized(&self, kv: &KeyValue) -> bool {
        match &self.req.still_authorized {
            Some(check) if !check(&kv.value) => {
                tracing::debug!(resource = self.req.def.plural, key = %kv.key, "watcher no longer authorized; ending watch");
                false
            }
            _ => true,
        }
    }
}

/// Streams `initial` (as ADDED) then the watcher's events, filtered by the predicate.
pub fn stream(req: WatchRequest, initial: Vec<KeyValue>, watcher: Watcher) -> Response<Body> {
    let content_type = req.content_type;
    let req = Arc::new(req);
    let outbox = Arc::new(Outbox::default());
    let sender = Sender {
        req: req.clone(),
        outbox: outbox.clone(),
        initial: initial.into_iter(),
        start: watcher.last_revision(),
        initial_done: false,
        failed: false,
        chunks: VecDeque::new(),
    };
    tokio::spawn(produce(req, outbox, watcher));
    let chunks = futures::stream::unfold(sender, |mut sender| async move {
        let chunk = sender.next_chunk().await?;
        Some((Ok::<_, Infallible>(Frame::data(chunk)), sender))
    });
    let body = StreamBody::new(chunks).boxed();
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// Follows the store for one watch, queuing what the watcher should see until the watch
/// times out, falls too far behind, loses its authorization, or its client goes away.
async fn produce(req: Arc<WatchRequest>, outbox: Arc<Outbox>, mut watcher: Watcher) {
    let deadline = tokio::time::sleep(req.timeout);
    tokio::pin!(deadline);
    let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
    ticker.tick().await;
    let pushed = loop {
        let (item, size) = tokio::select! {
            _ = &mut deadline => break Pushed::Closed,
            _ = outbox.gone.notified() => return,
            _ = ticker.tick(), if req.bookmarks => {
                (Pending::Bookmark(watcher.last_revision()), 0)
            }
            next = watcher.next() => {
                let event = match next {
                    Ok(e) => e,
                    Err(WatchError::Lagged(rev)) => {
                        tracing::debug!(resource = req.def.plural, rev, "watcher lagged; ending watch");
                        break Pushed::Closed;
                    }
                    Err(WatchError::Closed) => break Pushed::Closed,
                };
                let Some(kind) = transition(&req.predicate, &event) else {
                    continue;
                };
                if let Some(check) = &req.still_authorized {
                    if !check(&event.kv.value) {
                        tracing::debug!(resource = req.def.plural, key = %event.kv.key, "watcher no longer authorized; ending watch");
                        break Pushed::Closed;
                    }
                }
                let size = event.kv.raw.len();
                (Pending::Event { kind, kv: event.kv.clone() }, size)
            }
        };
        match outbox.push(item, size, MAX_WATCH_LAG_BYTES) {
            Pushed::Queued => {}
            other => break other,
        }
    };
    if pushed == Pushed::TooFarBehind {
        tracing::info!(
            resource = req.def.plural,
            limit_bytes = MAX_WATCH_LAG_BYTES,
            "watcher fell too far behind; ending its watch (the client resumes or relists)"
        );
    }
    outbox.close();
}

/// The event type a watcher with `predicate` sees for `event`, translating selector
/// transitions into ADDED/DELETED (`None`: the watcher does not see it).
fn transition(predicate: &Predicate, event: &Event) -> Option<EventType> {
    let now_matches = predicate(&event.kv.value);
    match event.kind {
        EventType::Added if now_matches => Some(EventType::Added),
        EventType::Deleted if now_matches => Some(EventType::Deleted),
        EventType::Modified => {
            let was = event
                .prev
                .as_ref()
                .map(|p| predicate(&p.value))
                .unwrap_or(now_matches);
            match (was, now_matches) {
                (true, true) => Some(EventType::Modified),
                (false, true) => Some(EventType::Added),
                (true, false) => Some(EventType::Deleted),
                (false, false) => None,
            }
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_one_json_object_per_line() {
        let f = frame("ADDED", br#"{"a":1}"#);
        assert_eq!(&f[..], b"{\"type\":\"ADDED\",\"object\":{\"a\":1}}\n");
        let v: Value = serde_json::from_slice(&f).unwrap();
        assert_eq!(v["object"]["a"], 1);
    }

    #[test]
    fn large_objects_are_sent_from_the_shared_bytes_without_a_copy() {
        let object = Bytes::from(format!("{{\"data\":\"{}\"}}", "x".repeat(100_000)));
        let chunks = event_chunks(EventType::Modified, object.clone());
        assert_eq!(chunks.len(), 3);
        assert_eq!(chunks[1].as_ptr(), object.as_ptr(), "the object was copied");
        let line: Vec<u8> = chunks.concat();
        assert!(line.ends_with(b"}\n"));
        let v: Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["type"], "MODIFIED");
        assert_eq!(v["object"]["data"].as_str().unwrap().len(), 100_000);
        let small = event_chunks(EventType::Deleted, Bytes::from_static(b"{}"));
        assert_eq!(
            &small.concat()[..],
            b"{\"type\":\"DELETED\",\"object\":{}}\n"
        );
    }

    fn event(size: usize) -> Pending {
        let kv = crate::store::make_kv("/k", json!({"d": "x".repeat(size)}), 1, 1);
        Pending::Event {
            kind: EventType::Modified,
            kv,
        }
    }

    #[tokio::test]
    async fn a_watcher_too_far_behind_is_closed_and_its_queue_dropped() {
        let outbox = Outbox::default();
        // A single event larger than the limit is taken when nothing waits.
        assert_eq!(outbox.push(event(10), 500, 100), Pushed::Queued);
        assert!(outbox.next().await.is_some());
        assert_eq!(outbox.push(event(10), 60, 100), Pushed::Queued);
        assert_eq!(outbox.push(event(10), 40, 100), Pushed::Queued);
        assert_eq!(outbox.push(event(10), 1, 100), Pushed::TooFarBehind);
        assert!(outbox.lock().queue.is_empty());
        assert!(outbox.next().await.is_none(), "a closed watch ends");
        assert_eq!(outbox.push(event(10), 1, 100), Pushed::Closed);
    }

    #[tokio::test]
    async fn taking_events_makes_room_for_more() {
        let outbox = Outbox::default();
        for _ in 0..10 {
            assert_eq!(outbox.push(event(10), 80, 100), Pushed::Queued);
            assert!(outbox.next().await.is_some());
        }
        assert_eq!(outbox.lock().bytes, 0);
    }

    #[test]
    fn watch_timeouts_are_randomized_and_capped() {
        for _ in 0..20 {
            let t = watch_timeout(None);
            assert!(
                t >= DEFAULT_WATCH_TIMEOUT && t <= 2 * DEFAULT_WATCH_TIMEOUT,
                "{t:?}"
            );
        }
        assert_eq!(watch_timeout(Some(5)), Duration::from_secs(5));
        assert_eq!(watch_timeout(Some(86_400)), MAX_WATCH_TIMEOUT);
        assert!(watch_timeout(Some(0)) >= DEFAULT_WATCH_TIMEOUT);
    }

    #[test]
    fn each_user_gets_at_most_the_cap_of_watches() {
        let limiter = WatchLimiter::new(2);
        let a = limiter.acquire("alice").unwrap();
        let _b = limiter.acquire("alice").unwrap();
        let err = limiter.acquire("alice").err().unwrap();
        assert_eq!((err.code, err.reason), (429, "TooManyRequests"));
        assert!(
            err.message.contains("--max-watches-per-user"),
            "{}",
            err.message
        );
        assert!(limiter.acquire("bob").is_ok(), "others are not affected");
        drop(a);
        assert_eq!(limiter.open_watches("alice"), 1);
        assert!(limiter.acquire("alice").is_ok());
        let unlimited = WatchLimiter::new(0);
        let held: Vec<_> = (0..1000).map(|_| unlimited.acquire("x").unwrap()).collect();
        assert_eq!(unlimited.open_watches("x"), held.len());
    }
}
