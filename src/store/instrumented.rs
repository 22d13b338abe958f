//! A [`Store`] that times every write into `orc_datastore_commit_duration_seconds`:
//! from the write handed to the datastore until it is durable (with SQLite's group
//! commit, the wait for the batch is part of it, as a client sees it).

use std::sync::Arc;
use std::time::Instant;

use serde_json::Value;

use super::{KeyValue, ListFilter, ListPage, Result, Revision, Store, Watcher};
use crate::metrics::DatastoreMetrics;

pub struct Instrumented {
    inner: Arc<dyn Store>,
    metrics: DatastoreMetrics,
}

impl Instrumented {
    pub fn new(inner: Arc<dyn Store>, metrics: DatastoreMetrics) -> Instrumented {
        Instrumented { inner, metrics }
    }
}

#[async_trait::async_trait]
impl Store for Instrumented {
    fn get(&self, key: &str) -> Option<KeyValue> {
        self.inner.get(key)
    }

    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        filter: ListFilter<'_>,
    ) -> ListPage {
        self.inner.list(prefix, start_after, limit, filter)
    }

    async fn create(&self, key: &str, value: Value) -> Result<KeyValue> {
        let started = Instant::now();
        let result = self.inner.create(key, value).await;
        self.metrics.observe_commit("create", started.elapsed());
        result
    }

    async fn update(
        &self,
        key: &str,
        value: Value,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let started = Instant::now();
        let result = self.inner.update(key, value, expected).await;
        self.metrics.observe_commit("update", started.elapsed());
        result
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let started = Instant::now();
        let result = self.inner.delete(key, expected).await;
        self.metrics.observe_commit("delete", started.elapsed());
        result
    }

    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher> {
        self.inner.watch(prefix, after)
    }

    fn snapshot_and_watch(&self, prefix: &str) -> (Vec<KeyValue>, Revision, Watcher) {
        self.inner.snapshot_and_watch(prefix)
    }

    fn revision(&self) -> Revision {
        self.inner.revision()
    }

    async fn compact(&self, revision: Revision) -> Result<()> {
        self.inner.compact(revision).await
    }

    async fn ready(&self) -> Result<()> {
        self.inner.ready().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::ServerMetrics;
    use serde_json::json;

    #[tokio::test]
    async fn writes_are_timed_by_operation_and_reads_pass_through() {
        let metrics = ServerMetrics::new(None);
        let store = Instrumented::new(
            Arc::new(super::super::memory::MemoryStore::new()),
            metrics.datastore.clone(),
        );
        let kv = store
            .create(
                "/registry/configmaps/d/a",
                json!({"metadata": {"name": "a"}}),
            )
            .await
            .unwrap();
        store
            .update(
                "/registry/configmaps/d/a",
                json!({"metadata": {"name": "a"}}),
                Some(kv.mod_revision),
            )
            .await
            .unwrap();
        store
            .delete("/registry/configmaps/d/a", None)
            .await
            .unwrap();
        assert!(store.get("/registry/configmaps/d/a").is_none());
        let text = metrics.encode();
        for op in ["create", "update", "delete"] {
            let line =
                format!(r#"orc_datastore_commit_duration_seconds_count{{operation="{op}"}} 1"#);
            assert!(text.contains(&line), "{op}: {text}");
        }
    }
}
