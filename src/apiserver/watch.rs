//! Watch streaming: newline-delimited JSON watch events over a chunked response.

use std::sync::Arc;
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::{header, HeaderValue, Response};
use http_body_util::{BodyExt, StreamBody};
use hyper::body::Frame;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::response::Body;
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;
use crate::store::{cache::WatchError, Event, EventType, KeyValue, Revision, Watcher};

/// Longest a watch stays open without `timeoutSeconds` (clients re-watch after it).
pub const DEFAULT_WATCH_TIMEOUT: Duration = Duration::from_secs(30 * 60);
/// How often a bookmark is sent to watchers that asked for them.
const BOOKMARK_INTERVAL: Duration = Duration::from_secs(60);
/// Events buffered towards a slow client before the stream backs up.
const STREAM_BUFFER: usize = 256;

/// Decides whether an object is visible to this watch (selectors).
pub type Predicate = Arc<dyn Fn(&Value) -> bool + Send + Sync>;

/// Turns an object into what is sent for it (plain JSON or a Table row).
pub type Encoder = Arc<dyn Fn(&KeyValue) -> Bytes + Send + Sync>;

pub struct WatchRequest {
    pub def: &'static ResourceDef,
    pub predicate: Predicate,
    pub encoder: Encoder,
    pub bookmarks: bool,
    /// Send a bookmark annotated `k8s.io/initial-events-end` after the initial events.
    pub initial_events_end: bool,
    pub timeout: Duration,
    pub content_type: &'static str,
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

/// Streams `initial` (as ADDED) then the watcher's events, filtered by the predicate.
pub fn stream(req: WatchRequest, initial: Vec<KeyValue>, mut watcher: Watcher) -> Response<Body> {
    let content_type = req.content_type;
    let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, std::convert::Infallible>>(STREAM_BUFFER);
    tokio::spawn(async move {
        let send = |b: Bytes| {
            let tx = tx.clone();
            async move { tx.send(Ok(Frame::data(b))).await.is_ok() }
        };
        for kv in &initial {
            if (req.predicate)(&kv.value) && !send(frame("ADDED", &(req.encoder)(kv))).await {
                return;
            }
        }
        if req.initial_events_end && !send(bookmark(req.def, watcher.last_revision(), true)).await {
            return;
        }
        let deadline = tokio::time::sleep(req.timeout);
        tokio::pin!(deadline);
        let mut ticker = tokio::time::interval(BOOKMARK_INTERVAL);
        ticker.tick().await;
        loop {
            tokio::select! {
                _ = &mut deadline => return,
                _ = tx.closed() => return,
                _ = ticker.tick(), if req.bookmarks => {
                    if !send(bookmark(req.def, watcher.last_revision(), false)).await {
                        return;
                    }
                }
                next = watcher.next() => {
                    let event = match next {
                        Ok(e) => e,
                        Err(WatchError::Lagged(rev)) => {
                            tracing::debug!(resource = req.def.plural, rev, "watcher lagged; ending watch");
                            return;
                        }
                        Err(WatchError::Closed) => return,
                    };
                    if let Some(bytes) = encode_event(&req, &event) {
                        if !send(bytes).await {
                            return;
                        }
                    }
                }
            }
        }
    });
    let body = StreamBody::new(ReceiverStream::new(rx)).boxed();
    let mut resp = Response::new(body);
    resp.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    resp
}

/// The frame for one event, translating selector transitions into ADDED/DELETED.
fn encode_event(req: &WatchRequest, event: &Event) -> Option<Bytes> {
    let now_matches = (req.predicate)(&event.kv.value);
    let kind = match event.kind {
        EventType::Added if now_matches => "ADDED",
        EventType::Deleted if now_matches => "DELETED",
        EventType::Modified => {
            let was = event
                .prev
                .as_ref()
                .map(|p| (req.predicate)(&p.value))
                .unwrap_or(now_matches);
            match (was, now_matches) {
                (true, true) => "MODIFIED",
                (false, true) => "ADDED",
                (true, false) => "DELETED",
                (false, false) => return None,
            }
        }
        _ => return None,
    };
    Some(frame(kind, &(req.encoder)(&event.kv)))
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
}
