//! Controller plumbing: a de-duplicating work queue with delayed requeue, and informers
//! that turn datastore watch events into work-queue keys.
//!
//! Controllers read current objects from the datastore's in-memory cache (never the
//! disk) and learn about changes from watches; they never poll.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio::task::JoinHandle;

use crate::apiserver::registry::Registry;
use crate::store::{Event, EventType};

/// Keys waiting to be reconciled; a key queued twice is reconciled once.
#[derive(Default)]
pub struct WorkQueue {
    inner: Mutex<(VecDeque<String>, HashSet<String>)>,
    notify: Notify,
}

impl WorkQueue {
    pub fn new() -> Arc<WorkQueue> {
        Arc::new(WorkQueue::default())
    }

    pub fn add(&self, key: impl Into<String>) {
        let key = key.into();
        let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
        if inner.1.insert(key.clone()) {
            inner.0.push_back(key);
            drop(inner);
            self.notify.notify_one();
        }
    }

    /// Queues `key` again after `delay` ("requeue after").
    pub fn add_after(self: &Arc<Self>, key: impl Into<String>, delay: Duration) {
        let key = key.into();
        let queue = Arc::clone(self);
        tokio::spawn(async move {
            tokio::time::sleep(delay).await;
            queue.add(key);
        });
    }

    /// The next key to reconcile (waits until there is one).
    pub async fn next(&self) -> String {
        loop {
            let notified = self.notify.notified();
            {
                let mut inner = self.inner.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(key) = inner.0.pop_front() {
                    inner.1.remove(&key);
                    if !inner.0.is_empty() {
                        self.notify.notify_one();
                    }
                    return key;
                }
            }
            notified.await;
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().unwrap_or_else(|e| e.into_inner()).0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Maps a change to the keys of the objects that must be reconciled because of it.
pub type KeyMapper = Box<dyn Fn(&Event) -> Vec<String> + Send + Sync>;

/// Watches everything under `prefix`: every current object is mapped as `Added` at
/// start (and after a relist when the watch ends), then every change; the resulting
/// keys are queued.
pub fn spawn_informer(
    registry: Arc<Registry>,
    prefix: String,
    queue: Arc<WorkQueue>,
    map: KeyMapper,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        loop {
            let (items, _, mut watcher) = registry.snapshot_and_watch(&prefix);
            for kv in items {
                let event = Event {
                    kind: EventType::Added,
                    kv,
                    prev: None,
                };
                for key in map(&event) {
                    queue.add(key);
                }
            }
            loop {
                match watcher.next().await {
                    Ok(event) => {
                        for key in map(&event) {
                            queue.add(key);
                        }
                    }
                    Err(e) => {
                        tracing::debug!(%prefix, error = %e, "informer watch ended; relisting");
                        break;
                    }
                }
            }
        }
    })
}

/// `namespace/name` (or `name` for cluster objects) of an object.
pub fn object_key(obj: &serde_json::Value) -> String {
    let name = crate::api::object::name(obj);
    match crate::api::object::namespace(obj) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Splits a key made by `object_key`.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn queue_deduplicates_and_delivers_in_order() {
        let q = WorkQueue::new();
        q.add("a");
        q.add("b");
        q.add("a");
        assert_eq!(q.len(), 2);
        let next = tokio::time::timeout(Duration::from_secs(1), q.next())
            .await
            .expect("queue deadlocked");
        assert_eq!(next, "a");
        assert_eq!(q.next().await, "b");
        assert!(q.is_empty());
    }

    #[tokio::test(start_paused = true)]
    async fn add_after_requeues_once_the_delay_passed() {
        let q = WorkQueue::new();
        q.add_after("x", Duration::from_secs(5));
        tokio::time::sleep(Duration::from_secs(4)).await;
        assert!(q.is_empty());
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(q.next().await, "x");
    }

    #[test]
    fn keys_round_trip() {
        let obj = serde_json::json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert_eq!(object_key(&obj), "ns/a");
        assert_eq!(split_key("ns/a"), (Some("ns"), "a"));
        assert_eq!(split_key("node1"), (None, "node1"));
    }
}
