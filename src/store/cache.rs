//! The in-memory watch cache: current objects, a window of recent events, live watchers.
//!
//! One writer (the datastore's commit path) applies committed events; many readers list
//! and watch. Events are broadcast while the write lock is held, so a watcher that
//! subscribes under the read lock sees every event exactly once.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock, Weak};
use std::time::{Duration, Instant};

use tokio::sync::broadcast;

use super::{Event, EventType, KeyValue, ListFilter, ListPage, Result, Revision, StoreError};

/// How many live events a slow watcher may fall behind before its watch is ended
/// (the client then resumes from its last resourceVersion).
const WATCH_BUFFER: usize = 8192;
/// Events kept for resuming watches, at most (older ones are dropped early).
pub const MAX_HISTORY: usize = 20_000;
/// Default bound of the history in bytes (see [`HistoryLimits::max_bytes`]).
pub const DEFAULT_HISTORY_BYTES: usize = 8 << 20;
/// Default age past which events go (see [`HistoryLimits::max_age`]): upstream's watch
/// cache sizes itself to keep 75 s of events (`eventFreshDuration`).
pub const DEFAULT_HISTORY_AGE: Duration = Duration::from_secs(75);
/// Newest events kept whatever their age (upstream's smallest watch cache: 100 events).
pub const MIN_HISTORY_EVENTS: usize = 100;
/// Newest written objects whose parsed form the cache keeps (the writer's), at most: the
/// scheduler's attempt, the kubelet's status write and watchers reading the previous
/// state of a just-created pod then share it instead of parsing the JSON again.
pub const RECENT_PARSED: usize = 128;
/// Bound of [`RECENT_PARSED`] in bytes of JSON (the parsed form is ~9 times larger):
/// a few large objects do not keep megabytes parsed.
pub const RECENT_PARSED_BYTES: usize = 1 << 20;
/// How long the newest writes stay parsed once writes stop (see [`RECENT_PARSED`]): their
/// readers come within moments of the write, and a server idle after a burst does not
/// keep its last 128 objects parsed (~3 MB of pods) until the next writes push them out.
pub const RECENT_PARSED_IDLE: Duration = Duration::from_secs(5);
/// How often [`expire_periodically`] drops events past their age.
pub const EXPIRY_TICK: Duration = Duration::from_secs(5);

/// How much of the recent past the cache keeps so watches can resume from an older
/// resourceVersion. Whichever bound is reached first drops the oldest events; a watch
/// from before the oldest kept event gets 410 Gone and the client relists, as upstream
/// when its watch cache (bounded by a count of events per resource) has moved on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HistoryLimits {
    /// Events, at most.
    pub max_events: usize,
    /// Serialized size of the objects the events hold (the object and, for a
    /// modification, its previous state), at most. Counting bytes, not only events,
    /// keeps a history of large objects (ConfigMaps, CRs with big specs) from holding
    /// hundreds of megabytes; the memory held is a small multiple of this (each object
    /// is also kept parsed).
    pub max_bytes: usize,
    /// Events older than this go, beyond the newest [`HistoryLimits::min_events`]: a
    /// burst of changes (100 pods created and deleted) no longer holds memory once it is
    /// over, and a quiet cluster still keeps its last changes for resuming watches.
    pub max_age: Duration,
    /// Newest events the age bound never drops.
    pub min_events: usize,
}

impl Default for HistoryLimits {
    fn default() -> HistoryLimits {
        HistoryLimits {
            max_events: MAX_HISTORY,
            max_bytes: DEFAULT_HISTORY_BYTES,
            max_age: DEFAULT_HISTORY_AGE,
            min_events: MIN_HISTORY_EVENTS,
        }
    }
}

/// What one event counts against [`HistoryLimits::max_bytes`].
fn event_bytes(event: &Event) -> usize {
    event.kv.key.len() + event.kv.raw.len() + event.prev.as_ref().map_or(0, |p| p.raw.len())
}

/// An event of the history and when the cache applied it.
struct Entry {
    at: Instant,
    event: Arc<Event>,
}

impl std::ops::Deref for Entry {
    type Target = Event;
    fn deref(&self) -> &Event {
        &self.event
    }
}

struct Inner {
    objects: BTreeMap<Arc<str>, KeyValue>,
    history: VecDeque<Entry>,
    /// Sum of [`event_bytes`] over `history`.
    history_bytes: usize,
    limits: HistoryLimits,
    revision: Revision,
    /// Watches must start after this revision; older history is gone.
    floor: Revision,
    /// Pinned handles of the newest writes (see [`RECENT_PARSED`]), oldest first.
    recent: VecDeque<KeyValue>,
    /// JSON bytes of `recent`.
    recent_bytes: usize,
    /// When the newest events were applied.
    last_write: Instant,
}

pub struct Cache {
    inner: RwLock<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

/// Keeps the writer's parsed form of `kv` among the newest writes (every handle of that
/// version shares it meanwhile), dropping the oldest past the bounds.
fn keep_parsed(inner: &mut Inner, kv: KeyValue) {
    inner.recent_bytes += kv.raw.len();
    inner.recent.push_back(kv);
    while inner.recent.len() > RECENT_PARSED
        || (inner.recent_bytes > RECENT_PARSED_BYTES && inner.recent.len() > 1)
    {
        let Some(old) = inner.recent.pop_front() else {
            break;
        };
        inner.recent_bytes -= old.raw.len();
    }
}

impl Cache {
    /// A cache holding `objects` at `revision`, with `history` (events after `floor`)
    /// kept within the default [`HistoryLimits`].
    pub fn new(
        objects: Vec<KeyValue>,
        history: Vec<Event>,
        revision: Revision,
        floor: Revision,
    ) -> Cache {
        Cache::with_limits(objects, history, revision, floor, HistoryLimits::default())
    }

    /// Like [`Cache::new`], with the history kept within `limits`.
    pub fn with_limits(
        objects: Vec<KeyValue>,
        history: Vec<Event>,
        revision: Revision,
        floor: Revision,
        limits: HistoryLimits,
    ) -> Cache {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let now = Instant::now();
        let history: VecDeque<Entry> = history
            .into_iter()
            .map(|e| Entry {
                at: now,
                event: Arc::new(e.cold()),
            })
            .collect();
        let mut inner = Inner {
            objects: objects
                .into_iter()
                .map(|kv| (kv.key.clone(), kv.cold()))
                .collect(),
            history_bytes: history.iter().map(|e| event_bytes(e)).sum(),
            history,
            limits,
            revision,
            floor,
            recent: VecDeque::new(),
            recent_bytes: 0,
            last_write: now,
        };
        trim_history(&mut inner, now);
        Cache {
            inner: RwLock::new(inner),
            events,
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Inner> {
        self.inner.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Inner> {
        self.inner.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.read().objects.get(key).cloned()
    }

    pub fn revision(&self) -> Revision {
        self.read().revision
    }

    pub fn floor(&self) -> Revision {
        self.read().floor
    }

    pub fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        filter: ListFilter<'_>,
    ) -> ListPage {
        let start: Bound<&str> = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k),
            _ => Bound::Included(prefix),
        };
        // The page's objects at one revision, taken under the lock; the filter runs
        // after it is released. A filter may read the store itself (the pod GC looks up
        // each pod's node): a second read lock taken while a write waits would never be
        // granted, and every thread that touches the store would stop behind it.
        let (candidates, revision) = {
            let inner = self.read();
            // The filter reads a handle of its own: what it parses goes with it (or
            // with the list's items) instead of staying in the cache.
            let candidates: Vec<KeyValue> = inner
                .objects
                .range::<str, _>((start, Bound::Unbounded))
                .take_while(|(k, _)| k.starts_with(prefix))
                .map(|(_, kv)| kv.cold())
                .collect();
            (candidates, inner.revision)
        };
        let mut items = Vec::new();
        let mut remaining = 0;
        let mut continue_after = None;
        for item in candidates {
            if !filter(&item) {
                continue;
            }
            if limit > 0 && items.len() >= limit {
                remaining += 1;
                continue;
            }
            if limit > 0 && items.len() + 1 == limit {
                continue_after = Some(item.key.to_string());
            }
            items.push(item);
        }
        if remaining == 0 {
            continue_after = None;
        }
        ListPage {
            items,
            revision,
            continue_after,
            remaining,
        }
    }

    /// Applies committed events (in revision order) and notifies watchers.
    pub fn apply(&self, events: Vec<Event>) {
        self.apply_at(events, Instant::now());
    }

    fn apply_at(&self, events: Vec<Event>, now: Instant) {
        let mut inner = self.write();
        inner.last_write = now;
        for event in events {
            let event = Arc::new(event);
            inner.revision = inner.revision.max(event.revision());
            match event.kind {
                EventType::Added | EventType::Modified => {
                    inner.objects.insert(event.kv.key.clone(), event.kv.cold());
                    if event.kv.value.is_pinned() {
                        keep_parsed(&mut inner, event.kv.clone());
                    }
                }
                EventType::Deleted => {
                    inner.objects.remove(&event.kv.key);
                }
            }
            inner.history_bytes += event_bytes(&event);
            // The live event keeps the writer's parsed form for the watchers it is
            // sent to; the history and the objects keep only the JSON.
            inner.history.push_back(Entry {
                at: now,
                event: Arc::new(event.cold()),
            });
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
        trim_history(&mut inner, now);
    }

    /// How many written objects the cache keeps parsed, and their JSON bytes.
    pub fn recent_parsed(&self) -> (usize, usize) {
        let inner = self.read();
        (inner.recent.len(), inner.recent_bytes)
    }

    /// Drops events past [`HistoryLimits::max_age`] at `now` (see [`expire_periodically`]),
    /// and the parsed forms of the newest writes once none came for [`RECENT_PARSED_IDLE`].
    pub fn expire(&self, now: Instant) {
        let mut inner = self.write();
        trim_history(&mut inner, now);
        if !inner.recent.is_empty()
            && now.saturating_duration_since(inner.last_write) >= RECENT_PARSED_IDLE
        {
            inner.recent = VecDeque::new();
            inner.recent_bytes = 0;
        }
    }

    /// Drops history at and below `revision`.
    pub fn compact(&self, revision: Revision) {
        let mut inner = self.write();
        while inner
            .history
            .front()
            .is_some_and(|e| e.revision() <= revision)
        {
            pop_oldest(&mut inner);
        }
        inner.floor = inner.floor.max(revision);
        shrink_history(&mut inner);
    }

    /// Events in the history and what they count against [`HistoryLimits::max_bytes`].
    pub fn history_size(&self) -> (usize, usize) {
        let inner = self.read();
        (inner.history.len(), inner.history_bytes)
    }

    pub fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher> {
        let inner = self.read();
        if after < inner.floor {
            return Err(StoreError::Compacted {
                requested: after,
                oldest: inner.floor + 1,
            });
        }
        let start = inner.history.partition_point(|e| e.revision() <= after);
        let backlog: VecDeque<Arc<Event>> = inner
            .history
            .range(start..)
            .filter(|e| e.kv.key.starts_with(prefix))
            // Fresh handles: what the watcher parses is not pinned in the history.
            .map(|e| Arc::new(e.event.cold()))
            .collect();
        Ok(Watcher {
            prefix: prefix.to_string(),
            backlog,
            live: self.events.subscribe(),
            last: after,
        })
    }

    pub fn snapshot_and_watch(&self, prefix: &str) -> (Vec<KeyValue>, Revision, Watcher) {
        let inner = self.read();
        let items: Vec<KeyValue> = inner
            .objects
            .range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
            .map(|(_, kv)| kv.cold())
            .collect();
        let watcher = Watcher {
            prefix: prefix.to_string(),
            backlog: VecDeque::new(),
            live: self.events.subscribe(),
            last: inner.revision,
        };
        (items, inner.revision, watcher)
    }
}

/// Drops the oldest event; watches must then start at or after its revision.
fn pop_oldest(inner: &mut Inner) {
    if let Some(e) = inner.history.pop_front() {
        inner.history_bytes -= event_bytes(&e);
        inner.floor = inner.floor.max(e.revision());
    }
}

fn trim_history(inner: &mut Inner, now: Instant) {
    let before = inner.history.len();
    let expired = |inner: &Inner| {
        inner.history.len() > inner.limits.min_events
            && inner
                .history
                .front()
                .is_some_and(|e| now.saturating_duration_since(e.at) > inner.limits.max_age)
    };
    while inner.history.len() > inner.limits.max_events
        || (inner.history_bytes > inner.limits.max_bytes && !inner.history.is_empty())
        || expired(inner)
    {
        pop_oldest(inner);
    }
    if inner.history.len() < before {
        shrink_history(inner);
    }
}

/// Every [`EXPIRY_TICK`], drops the history's events past their age, until the cache is
/// dropped (a server with no writes would otherwise keep a burst's history).
pub fn expire_periodically(cache: Weak<Cache>) {
    loop {
        std::thread::sleep(EXPIRY_TICK);
        match cache.upgrade() {
            Some(cache) => cache.expire(Instant::now()),
            None => return,
        }
    }
}

/// Gives back the ring's memory after a burst: a deque keeps its largest capacity.
fn shrink_history(inner: &mut Inner) {
    let len = inner.history.len();
    if inner.history.capacity() > 1024 && len < inner.history.capacity() / 4 {
        inner.history.shrink_to(len * 2);
    }
}

/// A stream of events under one key prefix.
pub struct Watcher {
    prefix: String,
    backlog: VecDeque<Arc<Event>>,
    live: broadcast::Receiver<Arc<Event>>,
    last: Revision,
}

#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("watcher fell too far behind; resume from revision {0}")]
    Lagged(Revision),
    #[error("the datastore has shut down")]
    Closed,
}

impl Watcher {
    /// The next event, or an error after which the watch is over.
    pub async fn next(&mut self) -> std::result::Result<Arc<Event>, WatchError> {
        if let Some(e) = self.backlog.pop_front() {
            self.last = e.revision();
            return Ok(e);
        }
        loop {
            match self.live.recv().await {
                Ok(e) => {
                    if e.revision() <= self.last || !e.kv.key.starts_with(&self.prefix) {
                        continue;
                    }
                    self.last = e.revision();
                    return Ok(e);
                }
                Err(broadcast::error::RecvError::Lagged(_)) => {
                    return Err(WatchError::Lagged(self.last))
                }
                Err(broadcast::error::RecvError::Closed) => return Err(WatchError::Closed),
            }
        }
    }

    /// The next event if one is already waiting, without waiting for one: what a
    /// consumer uses to take a burst of changes in one pass.
    pub fn try_next(&mut self) -> Option<std::result::Result<Arc<Event>, WatchError>> {
        if let Some(e) = self.backlog.pop_front() {
            self.last = e.revision();
            return Some(Ok(e));
        }
        loop {
            match self.live.try_recv() {
                Ok(e) => {
                    if e.revision() <= self.last || !e.kv.key.starts_with(&self.prefix) {
                        continue;
                    }
                    self.last = e.revision();
                    return Some(Ok(e));
                }
                Err(broadcast::error::TryRecvError::Empty) => return None,
                Err(broadcast::error::TryRecvError::Lagged(_)) => {
                    return Some(Err(WatchError::Lagged(self.last)))
                }
                Err(broadcast::error::TryRecvError::Closed) => {
                    return Some(Err(WatchError::Closed))
                }
            }
        }
    }

    /// The revision of the last event delivered (or the start revision).
    pub fn last_revision(&self) -> Revision {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::make_kv;
    use bytes::Bytes;
    use serde_json::json;
    use std::time::Duration;

    fn added(key: &str, rev: Revision) -> Event {
        Event {
            kind: EventType::Added,
            kv: make_kv(key, json!({"metadata": {"name": key}}), rev, rev),
            prev: None,
        }
    }

    #[tokio::test]
    async fn watch_replays_history_after_revision_then_live_events() {
        let cache = Cache::new(vec![], vec![], 0, 0);
        cache.apply(vec![added("/a/1", 1), added("/b/1", 2), added("/a/2", 3)]);
        let mut w = cache.watch("/a/", 1).unwrap();
        assert_eq!(w.next().await.unwrap().revision(), 3);
        cache.apply(vec![added("/b/2", 4), added("/a/3", 5)]);
        let e = tokio::time::timeout(Duration::from_secs(1), w.next())
            .await
            .expect("watch deadlocked")
            .unwrap();
        assert_eq!(&*e.kv.key, "/a/3");
    }

    #[test]
    fn try_next_takes_what_waits_and_never_waits() {
        let cache = Cache::new(vec![], vec![], 0, 0);
        cache.apply(vec![added("/a/1", 1)]);
        let mut w = cache.watch("/a/", 0).unwrap();
        assert_eq!(w.try_next().unwrap().unwrap().revision(), 1);
        assert!(w.try_next().is_none());
        cache.apply(vec![added("/b/1", 2), added("/a/2", 3), added("/a/3", 4)]);
        let burst: Vec<Revision> = std::iter::from_fn(|| w.try_next())
            .map(|e| e.unwrap().revision())
            .collect();
        assert_eq!(burst, [3, 4]);
        assert_eq!(w.last_revision(), 4);
    }

    #[tokio::test]
    async fn the_cache_keeps_json_and_live_events_carry_the_writers_parsed_form() {
        let cache = Cache::new(vec![], vec![], 0, 0);
        let mut live = cache.watch("/a/", 0).unwrap();
        let event = added("/a/1", 1);
        let written = event.kv.clone();
        assert!(written.value.is_pinned(), "the writer's object is parsed");
        cache.apply(vec![event]);
        // Watchers share the writer's parse instead of parsing again.
        let e = live.next().await.unwrap();
        assert!(e.kv.value.is_pinned());
        assert!(std::ptr::eq(&*e.kv.value, &*written.value));
        drop((e, written, live));
        // The cache keeps the newest writes parsed: a reader shares the writer's form.
        let cached = cache.get("/a/1").unwrap();
        assert!(cached.value.is_parsed() && !cached.value.is_pinned());
        assert_eq!(cache.recent_parsed().0, 1);
        // Until RECENT_PARSED newer writes push it out.
        cache.apply(
            (0..RECENT_PARSED as u64)
                .map(|i| added(&format!("/b/{i}"), 2 + i))
                .collect(),
        );
        assert_eq!(cache.recent_parsed().0, RECENT_PARSED);
        // Nothing in the cache holds it any more: objects, history and lists are cold.
        assert!(!cached.value.is_parsed());
        assert!(!cache.read().history[0].kv.value.is_parsed());
        // A reader parses it for itself; the cache's copy stays cold.
        let all: ListFilter = &|kv| kv.value["metadata"]["name"] == "/a/1";
        let listed = cache.list("/a/", None, 0, all).items;
        assert_eq!(listed.len(), 1);
        assert!(listed[0].value.is_pinned());
        assert!(!cache.read().objects["/a/1"].value.is_pinned());
        drop(listed);
        assert!(!cached.value.is_parsed(), "released with the list");
        // A watch resumed from the history gets handles of its own too.
        let mut resumed = cache.watch("/a/", 0).unwrap();
        let replayed = resumed.next().await.unwrap();
        assert_eq!(replayed.kv.value["metadata"]["name"], "/a/1");
        assert!(!cache.read().history[0].kv.value.is_pinned());
    }

    #[test]
    fn watch_before_floor_is_compacted() {
        let cache = Cache::new(vec![], vec![], 0, 0);
        cache.apply(vec![added("/a/1", 1), added("/a/2", 2), added("/a/3", 3)]);
        cache.compact(2);
        assert!(matches!(
            cache.watch("/a/", 1),
            Err(StoreError::Compacted { .. })
        ));
        assert!(cache.watch("/a/", 2).is_ok());
    }

    #[test]
    fn list_pages_with_continue_and_filter() {
        let cache = Cache::new(vec![], vec![], 0, 0);
        cache.apply((1..=5).map(|i| added(&format!("/p/{i}"), i)).collect());
        let all: ListFilter = &|_| true;
        let page = cache.list("/p/", None, 2, all);
        assert_eq!(page.items.len(), 2);
        assert_eq!(page.remaining, 3);
        let next = cache.list("/p/", page.continue_after.as_deref(), 2, all);
        assert_eq!(&*next.items[0].key, "/p/3");
        let odd: ListFilter = &|kv| kv.mod_revision % 2 == 1;
        let page = cache.list("/p/", None, 0, odd);
        assert_eq!(page.items.len(), 3);
        assert!(page.continue_after.is_none());
    }

    /// An event whose object serializes to exactly `size` bytes (key included in the count).
    /// The pod GC's filter looks up each pod's node: a filter that reads the cache while
    /// a write waits for it must not stop the list (nor, behind it, every reader).
    #[test]
    fn a_list_filter_may_read_the_cache_while_a_write_waits() {
        let cache = Arc::new(Cache::new(vec![], vec![], 0, 0));
        cache.apply(vec![added("/n/a", 1), added("/p/1", 2), added("/p/2", 3)]);
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let lister = {
            let cache = cache.clone();
            std::thread::spawn(move || {
                let writer_started = std::sync::Once::new();
                let filter = |kv: &KeyValue| {
                    writer_started.call_once(|| {
                        let cache = cache.clone();
                        std::thread::spawn(move || cache.apply(vec![added("/p/3", 4)]));
                        // Let the write reach the lock and wait there.
                        std::thread::sleep(Duration::from_millis(100));
                    });
                    kv.key.ends_with('1') && cache.get("/n/a").is_some()
                };
                let page = cache.list("/p/", None, 0, &filter);
                done_tx.send(page.items.len()).unwrap();
            })
        };
        let found = done_rx
            .recv_timeout(Duration::from_secs(10))
            .expect("the list finished");
        assert_eq!(found, 1);
        lister.join().unwrap();
    }

    fn sized(key: &str, rev: Revision, size: usize) -> Event {
        let mut e = added(key, rev);
        e.kv.raw = Bytes::from(vec![b' '; size - key.len()]);
        e
    }

    fn limits(max_events: usize, max_bytes: usize) -> HistoryLimits {
        HistoryLimits {
            max_events,
            max_bytes,
            ..HistoryLimits::default()
        }
    }

    fn aged(max_age: Duration, min_events: usize) -> HistoryLimits {
        HistoryLimits {
            max_age,
            min_events,
            ..HistoryLimits::default()
        }
    }

    #[test]
    fn events_past_their_age_go_beyond_the_newest_few() {
        let cache = Cache::with_limits(vec![], vec![], 0, 0, aged(Duration::from_secs(75), 2));
        let start = Instant::now();
        cache.apply_at(
            (1..=5).map(|i| added(&format!("/p/{i}"), i)).collect(),
            start,
        );
        cache.apply_at(vec![added("/p/6", 6)], start + Duration::from_secs(60));
        cache.expire(start + Duration::from_secs(75));
        assert_eq!(cache.history_size().0, 6, "nothing is older than 75 s yet");
        cache.expire(start + Duration::from_secs(76));
        // Events 1-5 are past their age; 6 is not. The newest two are kept anyway.
        assert_eq!(cache.history_size().0, 2);
        assert_eq!(cache.floor(), 4);
        assert!(cache.watch("/p/", 3).is_err(), "the client relists");
        let mut w = cache.watch("/p/", 4).unwrap();
        assert_eq!(w.backlog.pop_front().unwrap().revision(), 5);
        cache.expire(start + Duration::from_secs(3600));
        assert_eq!(
            cache.history_size().0,
            2,
            "a quiet cluster keeps its last changes"
        );
        assert_eq!(cache.list("/p/", None, 0, &|_| true).items.len(), 6);
    }

    #[test]
    fn the_newest_writes_are_unpinned_once_writes_stop() {
        let cache = Cache::new(vec![], vec![], 0, 0);
        let start = Instant::now();
        let event = added("/a/1", 1);
        let written = event.kv.clone();
        cache.apply_at(vec![event], start);
        drop(written);
        let cached = cache.get("/a/1").unwrap();
        assert!(cached.value.is_parsed(), "kept parsed while recent");
        cache.expire(start + RECENT_PARSED_IDLE / 2);
        assert_eq!(cache.recent_parsed().0, 1, "writes may still come");
        cache.apply_at(vec![added("/a/2", 2)], start + RECENT_PARSED_IDLE);
        cache.expire(start + RECENT_PARSED_IDLE * 3 / 2);
        assert_eq!(cache.recent_parsed().0, 2, "the last write was recent");
        cache.expire(start + RECENT_PARSED_IDLE * 2);
        assert_eq!(cache.recent_parsed(), (0, 0));
        assert!(!cached.value.is_parsed(), "nothing holds the parsed form");
        assert_eq!(cache.get("/a/1").unwrap().value["metadata"]["name"], "/a/1");
    }

    #[test]
    fn a_burst_is_given_back_once_past_its_age() {
        let cache = Cache::with_limits(vec![], vec![], 0, 0, aged(Duration::from_secs(75), 100));
        let start = Instant::now();
        cache.apply_at(
            (1..=5000)
                .map(|i| sized(&format!("/p/{i}"), i, 50))
                .collect(),
            start,
        );
        // The next write, or the periodic expiry on an idle server, drops the burst.
        cache.apply_at(
            vec![sized("/p/late", 5001, 50)],
            start + Duration::from_secs(80),
        );
        assert_eq!(cache.history_size(), (100, 5000));
        assert!(cache.read().history.capacity() < 1024);
    }

    #[test]
    fn expiry_stops_when_the_cache_is_dropped() {
        let cache = Arc::new(Cache::new(vec![], vec![], 0, 0));
        let weak = Arc::downgrade(&cache);
        drop(cache);
        // Returns after one tick instead of running forever.
        let done = std::thread::spawn(move || expire_periodically(weak));
        let deadline = Instant::now() + EXPIRY_TICK * 4;
        while !done.is_finished() {
            assert!(
                Instant::now() < deadline,
                "expiry thread outlived its cache"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    #[test]
    fn history_is_bounded_in_bytes_dropping_the_oldest_events() {
        let cache = Cache::with_limits(vec![], vec![], 0, 0, limits(1000, 1000));
        cache.apply(
            (1..=25)
                .map(|i| sized(&format!("/p/{i}"), i, 100))
                .collect(),
        );
        assert_eq!(cache.history_size(), (10, 1000));
        assert_eq!(cache.floor(), 15, "events up to 15 dropped");
        assert!(matches!(
            cache.watch("/p/", 14),
            Err(StoreError::Compacted { oldest: 16, .. })
        ));
        assert!(cache.watch("/p/", 15).is_ok());
        // The objects themselves are all still there.
        let all: ListFilter = &|_| true;
        assert_eq!(cache.list("/p/", None, 0, all).items.len(), 25);
    }

    #[test]
    fn modified_events_count_their_previous_state() {
        let cache = Cache::with_limits(vec![], vec![], 0, 0, limits(1000, 10_000));
        let first = sized("/p/a", 1, 300);
        let mut second = sized("/p/a", 2, 200);
        second.kind = EventType::Modified;
        second.prev = Some(first.kv.clone());
        cache.apply(vec![first, second]);
        // 300 for the Added event; 200 + 296 (its prev's JSON, without the key again)
        // for the Modified one.
        assert_eq!(cache.history_size(), (2, 796));
    }

    #[test]
    fn history_is_still_bounded_in_events() {
        let cache = Cache::with_limits(vec![], vec![], 0, 0, limits(3, usize::MAX));
        cache.apply((1..=5).map(|i| added(&format!("/p/{i}"), i)).collect());
        assert_eq!(cache.history_size().0, 3);
        assert_eq!(cache.floor(), 2);
    }

    #[test]
    fn an_event_larger_than_the_bound_is_not_kept() {
        let cache = Cache::with_limits(vec![], vec![], 0, 0, limits(1000, 500));
        cache.apply(vec![sized("/p/small", 1, 100), sized("/p/huge", 2, 600)]);
        assert_eq!(cache.history_size(), (0, 0));
        // Watching from now still works; from before, the client relists.
        assert!(cache.watch("/p/", 2).is_ok());
        assert!(cache.watch("/p/", 1).is_err());
        assert!(cache.get("/p/huge").is_some());
    }

    #[test]
    fn loaded_history_is_trimmed_to_the_bounds() {
        let history = (1..=10)
            .map(|i| sized(&format!("/p/{i}"), i, 100))
            .collect();
        let cache = Cache::with_limits(vec![], history, 10, 0, limits(1000, 450));
        assert_eq!(cache.history_size(), (4, 400));
        assert_eq!(cache.floor(), 6);
    }

    #[test]
    fn compaction_gives_back_bytes_and_ring_capacity() {
        let cache = Cache::with_limits(vec![], vec![], 0, 0, limits(100_000, usize::MAX));
        cache.apply(
            (1..=5000)
                .map(|i| sized(&format!("/p/{i}"), i, 50))
                .collect(),
        );
        cache.compact(4990);
        assert_eq!(cache.history_size(), (10, 500));
        assert!(
            cache.read().history.capacity() < 1024,
            "capacity {} kept after compaction",
            cache.read().history.capacity()
        );
    }
}
