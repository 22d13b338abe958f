//! The in-memory watch cache: current objects, a window of recent events, live watchers.
//!
//! One writer (the datastore's commit path) applies committed events; many readers list
//! and watch. Events are broadcast while the write lock is held, so a watcher that
//! subscribes under the read lock sees every event exactly once.

use std::collections::{BTreeMap, VecDeque};
use std::ops::Bound;
use std::sync::{Arc, RwLock};

use tokio::sync::broadcast;

use super::{Event, EventType, KeyValue, ListFilter, ListPage, Result, Revision, StoreError};

/// How many live events a slow watcher may fall behind before its watch is ended
/// (the client then resumes from its last resourceVersion).
const WATCH_BUFFER: usize = 8192;
/// Events kept for resuming watches, at most (older ones are dropped early).
pub const MAX_HISTORY: usize = 20_000;

#[derive(Default)]
struct Inner {
    objects: BTreeMap<Arc<str>, KeyValue>,
    history: VecDeque<Arc<Event>>,
    revision: Revision,
    /// Watches must start after this revision; older history is gone.
    floor: Revision,
}

pub struct Cache {
    inner: RwLock<Inner>,
    events: broadcast::Sender<Arc<Event>>,
}

impl Cache {
    /// A cache holding `objects` at `revision`, with `history` (events after `floor`).
    pub fn new(
        objects: Vec<KeyValue>,
        history: Vec<Event>,
        revision: Revision,
        floor: Revision,
    ) -> Cache {
        let (events, _) = broadcast::channel(WATCH_BUFFER);
        let mut inner = Inner {
            objects: objects.into_iter().map(|kv| (kv.key.clone(), kv)).collect(),
            history: history.into_iter().map(Arc::new).collect(),
            revision,
            floor,
        };
        trim_history(&mut inner);
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
        let inner = self.read();
        let start: Bound<&str> = match start_after {
            Some(k) if k >= prefix => Bound::Excluded(k),
            _ => Bound::Included(prefix),
        };
        let mut items = Vec::new();
        let mut remaining = 0;
        let mut continue_after = None;
        for (key, kv) in inner
            .objects
            .range::<str, _>((start, Bound::Unbounded))
            .take_while(|(k, _)| k.starts_with(prefix))
        {
            if !filter(kv) {
                continue;
            }
            if limit > 0 && items.len() >= limit {
                remaining += 1;
                continue;
            }
            items.push(kv.clone());
            if limit > 0 && items.len() == limit {
                continue_after = Some(key.to_string());
            }
        }
        if remaining == 0 {
            continue_after = None;
        }
        ListPage {
            items,
            revision: inner.revision,
            continue_after,
            remaining,
        }
    }

    /// Applies committed events (in revision order) and notifies watchers.
    pub fn apply(&self, events: Vec<Event>) {
        let mut inner = self.write();
        for event in events {
            let event = Arc::new(event);
            inner.revision = inner.revision.max(event.revision());
            match event.kind {
                EventType::Added | EventType::Modified => {
                    inner.objects.insert(event.kv.key.clone(), event.kv.clone());
                }
                EventType::Deleted => {
                    inner.objects.remove(&event.kv.key);
                }
            }
            inner.history.push_back(event.clone());
            // No receivers is fine: nobody is watching.
            let _ = self.events.send(event);
        }
        trim_history(&mut inner);
    }

    /// Drops history at and below `revision`.
    pub fn compact(&self, revision: Revision) {
        let mut inner = self.write();
        while inner
            .history
            .front()
            .is_some_and(|e| e.revision() <= revision)
        {
            inner.history.pop_front();
        }
        inner.floor = inner.floor.max(revision);
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
            .cloned()
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
            .map(|(_, kv)| kv.clone())
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

fn trim_history(inner: &mut Inner) {
    while inner.history.len() > MAX_HISTORY {
        if let Some(e) = inner.history.pop_front() {
            inner.floor = inner.floor.max(e.revision());
        }
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

    /// The revision of the last event delivered (or the start revision).
    pub fn last_revision(&self) -> Revision {
        self.last
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::make_kv;
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
}
