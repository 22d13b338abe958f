//! An in-memory `Store` for tests: the same revisions, conflicts, watch history and
//! compaction as `sqlite.rs`, without a disk or a writer thread (so it runs on a paused
//! tokio clock).

use std::sync::Mutex;

use serde_json::Value;

use super::cache::Cache;
use super::{
    make_kv, Event, EventType, KeyValue, ListFilter, ListPage, Result, Revision, Store, StoreError,
    Watcher,
};

/// Objects and history live only in the watch cache; writes are serialized by one lock.
pub struct MemoryStore {
    cache: Cache,
    /// Held while a write checks the current object and applies its event, so revisions
    /// are assigned in commit order.
    writer: Mutex<()>,
}

impl Default for MemoryStore {
    fn default() -> MemoryStore {
        MemoryStore::new()
    }
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore {
            cache: Cache::new(vec![], vec![], 0, 0),
            writer: Mutex::new(()),
        }
    }

    /// Applies one write: `decide` sees the current object and returns the new state
    /// (`None` value = delete) and the event kind, or an error that changes nothing.
    fn write(
        &self,
        key: &str,
        decide: impl FnOnce(Option<KeyValue>, Revision) -> Result<(KeyValue, EventType)>,
    ) -> Result<KeyValue> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.cache.get(key);
        let next = self.cache.revision() + 1;
        let (kv, kind) = decide(current.clone(), next)?;
        let prev = (kind == EventType::Modified).then_some(current).flatten();
        self.cache.apply(vec![Event {
            kind,
            kv: kv.clone(),
            prev,
        }]);
        Ok(kv)
    }
}

fn check_expected(key: &str, current: &KeyValue, expected: Option<Revision>) -> Result<()> {
    match expected {
        Some(expected) if expected != current.mod_revision => Err(StoreError::Conflict {
            key: key.to_string(),
            expected,
            current: current.mod_revision,
        }),
        _ => Ok(()),
    }
}

fn not_found(key: &str) -> StoreError {
    StoreError::NotFound {
        key: key.to_string(),
    }
}

#[async_trait::async_trait]
impl Store for MemoryStore {
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.cache.get(key)
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        filter: ListFilter<'_>,
    ) -> ListPage {
        self.cache.list(prefix, start_after, limit, filter)
    }

    async fn create(&self, key: &str, value: Value) -> Result<KeyValue> {
        self.write(key, |current, next| match current {
            Some(_) => Err(StoreError::AlreadyExists {
                key: key.to_string(),
            }),
            None => Ok((make_kv(key, value, next, next), EventType::Added)),
        })
    }

    async fn update(
        &self,
        key: &str,
        value: Value,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        self.write(key, |current, next| {
            let current = current.ok_or_else(|| not_found(key))?;
            check_expected(key, &current, expected)?;
            let kv = make_kv(key, value, current.create_revision, next);
            Ok((kv, EventType::Modified))
        })
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        self.write(key, |current, next| {
            let current = current.ok_or_else(|| not_found(key))?;
            check_expected(key, &current, expected)?;
            let last = (*current.value).clone();
            Ok((
                make_kv(key, last, current.create_revision, next),
                EventType::Deleted,
            ))
        })
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher> {
        self.cache.watch(prefix, after)
    }

    fn snapshot_and_watch(&self, prefix: &str) -> (Vec<KeyValue>, Revision, Watcher) {
        self.cache.snapshot_and_watch(prefix)
    }

    fn revision(&self) -> Revision {
        self.cache.revision()
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        let _writer = self.writer.lock().unwrap_or_else(|e| e.into_inner());
        let revision = revision.min(self.cache.revision());
        if revision > self.cache.floor() {
            self.cache.compact(revision);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn obj(name: &str) -> Value {
        json!({"metadata": {"name": name}})
    }

    #[tokio::test]
    async fn every_write_gets_a_strictly_increasing_revision() {
        let store = MemoryStore::new();
        let a = store.create("/x/a", obj("a")).await.unwrap();
        let b = store.create("/x/b", obj("b")).await.unwrap();
        let a2 = store.update("/x/a", obj("a"), None).await.unwrap();
        let gone = store.delete("/x/b", None).await.unwrap();
        assert_eq!(
            [
                a.mod_revision,
                b.mod_revision,
                a2.mod_revision,
                gone.mod_revision
            ],
            [1, 2, 3, 4]
        );
        assert_eq!(a2.create_revision, 1, "an update keeps the create revision");
        assert_eq!(gone.value["metadata"]["resourceVersion"], "4");
        assert_eq!(store.revision(), 4);
        assert!(store.get("/x/b").is_none());
    }

    #[tokio::test]
    async fn stale_revision_update_conflicts_and_changes_nothing() {
        let store = MemoryStore::new();
        let first = store.create("/x/a", obj("a")).await.unwrap();
        store.update("/x/a", obj("a"), None).await.unwrap();
        let err = store
            .update("/x/a", obj("stale"), Some(first.mod_revision))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        let err = store.delete("/x/a", Some(first.mod_revision)).await;
        assert!(matches!(err, Err(StoreError::Conflict { .. })));
        assert_eq!(store.revision(), 2);
        let err = store.create("/x/a", obj("a")).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }));
        let err = store.update("/x/none", obj("n"), None).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }));
    }

    async fn next(w: &mut Watcher) -> std::sync::Arc<Event> {
        tokio::time::timeout(Duration::from_secs(1), w.next())
            .await
            .expect("watch deadlocked")
            .unwrap()
    }

    #[tokio::test]
    async fn watch_replays_history_and_carries_the_previous_state() {
        let store = MemoryStore::new();
        store.create("/x/a", obj("a")).await.unwrap();
        store.create("/y/a", obj("a")).await.unwrap();
        store
            .update("/x/a", json!({"metadata": {"name": "a"}, "v": 2}), None)
            .await
            .unwrap();
        let mut watch = store.watch("/x/", 0).unwrap();
        assert_eq!(next(&mut watch).await.kind, EventType::Added);
        let modified = next(&mut watch).await;
        assert_eq!(modified.kind, EventType::Modified);
        assert_eq!(modified.prev.as_ref().unwrap().mod_revision, 1);
        store.delete("/x/a", None).await.unwrap();
        assert_eq!(next(&mut watch).await.kind, EventType::Deleted);
    }

    #[tokio::test]
    async fn compaction_expires_watches_from_older_revisions() {
        let store = MemoryStore::new();
        for name in ["a", "b", "c"] {
            store
                .create(&format!("/x/{name}"), obj(name))
                .await
                .unwrap();
        }
        store.compact(2).await.unwrap();
        assert!(matches!(
            store.watch("/x/", 1),
            Err(StoreError::Compacted { .. })
        ));
        let mut watch = store.watch("/x/", 2).unwrap();
        assert_eq!(&*watch.next().await.unwrap().kv.key, "/x/c");
        let (items, revision, _) = store.snapshot_and_watch("/x/");
        assert_eq!(
            (items.len(), revision),
            (3, 3),
            "objects outlive compaction"
        );
    }
}
