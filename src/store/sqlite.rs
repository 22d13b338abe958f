//! The embedded SQLite datastore: an append-only revision log with group commit.
//!
//! Table `kv` holds one row per revision (kine-style): creates, updates and deletes
//! (tombstones carry the last state). Current objects are the newest row of each key
//! that is not a tombstone. One writer thread owns the connection: it batches queued
//! writes into a single transaction, commits it durably (WAL, `synchronous=FULL`),
//! then applies the events to the cache and acknowledges the callers.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use rusqlite::{params, Connection, OptionalExtension};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::cache::Cache;
use super::encryption::{Identity, ValueTransformer};
use super::{
    make_kv, Event, EventType, KeyValue, ListFilter, ListPage, Result, Revision, Store, StoreError,
    Watcher,
};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Queued writes before callers wait for room.
const QUEUE_DEPTH: usize = 4096;

enum Op {
    Create {
        key: String,
        value: Value,
    },
    Update {
        key: String,
        value: Value,
        expected: Option<Revision>,
    },
    Delete {
        key: String,
        expected: Option<Revision>,
    },
    Compact {
        revision: Revision,
    },
}

/// Where a write's outcome is sent.
type Reply = oneshot::Sender<Result<Option<KeyValue>>>;

struct Request {
    op: Op,
    reply: Reply,
}

/// The SQLite-backed `Store`.
pub struct SqliteStore {
    cache: Arc<Cache>,
    queue: mpsc::Sender<Request>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path` and loads it into memory.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with(path, Arc::new(Identity))
    }

    /// Like [`SqliteStore::open`], with values passing through `transformer` on their way
    /// to and from disk; stored values it reports stale are rewritten first.
    pub fn open_with(path: &Path, transformer: Arc<dyn ValueTransformer>) -> Result<SqliteStore> {
        let open_err = |source| StoreError::Open {
            path: path.display().to_string(),
            source,
        };
        let mut conn = Connection::open(path).map_err(open_err)?;
        // The datastore holds Secrets: only the owner may read it (WAL files follow).
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(
                |source| StoreError::Permissions {
                    path: path.display().to_string(),
                    source,
                },
            )?;
        }
        conn.execute_batch(
            "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
             CREATE TABLE IF NOT EXISTS kv (
                 rev INTEGER PRIMARY KEY,
                 key TEXT NOT NULL,
                 created INTEGER NOT NULL,
                 deleted INTEGER NOT NULL,
                 create_rev INTEGER NOT NULL,
                 value BLOB NOT NULL
             );
             CREATE INDEX IF NOT EXISTS kv_key_rev ON kv(key, rev);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);",
        )
        .map_err(open_err)?;
        rewrite_stale(&mut conn, &*transformer)?;
        let (cache, revision) = load(&conn, &*transformer)?;
        let cache = Arc::new(cache);
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            conn,
            cache: cache.clone(),
            revision,
            transformer,
        };
        std::thread::Builder::new()
            .name("orc-store-writer".into())
            .spawn(move || writer.run(rx))
            .map_err(|source| StoreError::SpawnWriter { source })?;
        Ok(SqliteStore {
            cache,
            queue,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    async fn submit(&self, op: Op) -> Result<Option<KeyValue>> {
        let (reply, rx) = oneshot::channel();
        self.queue
            .send(Request { op, reply })
            .await
            .map_err(|_| StoreError::WriterGone)?;
        rx.await.map_err(|_| StoreError::WriterGone)?
    }
}

fn load(conn: &Connection, transformer: &dyn ValueTransformer) -> Result<(Cache, Revision)> {
    let sql = |source| StoreError::Sql {
        step: "load",
        source,
    };
    let compacted: Revision = conn
        .query_row(
            "SELECT value FROM meta WHERE name = 'compact_rev'",
            [],
            |r| r.get::<_, i64>(0),
        )
        .optional()
        .map_err(sql)?
        .unwrap_or(0) as Revision;
    let mut stmt = conn
        .prepare("SELECT rev, key, created, deleted, create_rev, value FROM kv ORDER BY rev")
        .map_err(sql)?;
    let mut rows = stmt.query([]).map_err(sql)?;
    let mut objects: HashMap<Arc<str>, KeyValue> = HashMap::new();
    let mut history = Vec::new();
    let mut revision = compacted;
    while let Some(row) = rows.next().map_err(sql)? {
        let rev = row.get::<_, i64>(0).map_err(sql)? as Revision;
        let key: String = row.get(1).map_err(sql)?;
        let created: bool = row.get(2).map_err(sql)?;
        let deleted: bool = row.get(3).map_err(sql)?;
        let create_rev = row.get::<_, i64>(4).map_err(sql)? as Revision;
        let raw: Vec<u8> = row.get(5).map_err(sql)?;
        let raw = match transformer.decode(&key, &raw) {
            Ok(decoded) => decoded.unwrap_or(raw),
            Err(source) => return Err(StoreError::Transform { key, source }),
        };
        let value: Value = serde_json::from_slice(&raw).map_err(|source| StoreError::Decode {
            key: key.clone(),
            source,
        })?;
        let kv = KeyValue {
            key: Arc::from(key.as_str()),
            value: Arc::new(value),
            raw: Bytes::from(raw),
            create_revision: create_rev,
            mod_revision: rev,
        };
        revision = revision.max(rev);
        let kind = if deleted {
            objects.remove(&kv.key);
            EventType::Deleted
        } else {
            objects.insert(kv.key.clone(), kv.clone());
            if created {
                EventType::Added
            } else {
                EventType::Modified
            }
        };
        if rev > compacted {
            history.push(Event {
                kind,
                kv,
                prev: None,
            });
        }
    }
    let cache = Cache::new(
        objects.into_values().collect(),
        history,
        revision,
        compacted,
    );
    Ok((cache, revision))
}

struct Writer {
    conn: Connection,
    cache: Arc<Cache>,
    revision: Revision,
    transformer: Arc<dyn ValueTransformer>,
}

struct Row {
    rev: Revision,
    key: Arc<str>,
    created: bool,
    deleted: bool,
    create_rev: Revision,
    raw: Bytes,
}

impl Writer {
    fn run(mut self, mut rx: mpsc::Receiver<Request>) {
        while let Some(first) = rx.blocking_recv() {
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.process(batch);
        }
    }

    fn process(&mut self, batch: Vec<Request>) {
        let mut overlay: HashMap<String, Option<KeyValue>> = HashMap::new();
        let mut next = self.revision + 1;
        let mut outcomes: Vec<(Reply, Result<KeyValue>)> = Vec::with_capacity(batch.len());
        let mut events = Vec::new();
        let mut rows = Vec::new();
        for Request { op, reply } in batch {
            let outcome = match op {
                Op::Compact { revision } => {
                    // Commit what is queued so far first, then compact.
                    self.commit(&mut outcomes, &mut events, &mut rows, next);
                    overlay.clear();
                    let result = self.compact(revision).map(|_| None);
                    let _ = reply.send(result);
                    continue;
                }
                Op::Create { key, value } => {
                    let current = current(&overlay, &self.cache, &key);
                    if current.is_some() {
                        Err(StoreError::AlreadyExists { key })
                    } else {
                        let kv = make_kv(&key, value, next, next);
                        Ok((kv, EventType::Added, None))
                    }
                }
                Op::Update {
                    key,
                    value,
                    expected,
                } => match current(&overlay, &self.cache, &key) {
                    None => Err(StoreError::NotFound { key }),
                    Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => {
                        Err(StoreError::Conflict {
                            key,
                            expected: expected.unwrap_or_default(),
                            current: cur.mod_revision,
                        })
                    }
                    Some(cur) => Ok((
                        make_kv(&key, value, cur.create_revision, next),
                        EventType::Modified,
                        Some(cur),
                    )),
                },
                Op::Delete { key, expected } => match current(&overlay, &self.cache, &key) {
                    None => Err(StoreError::NotFound { key }),
                    Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => {
                        Err(StoreError::Conflict {
                            key,
                            expected: expected.unwrap_or_default(),
                            current: cur.mod_revision,
                        })
                    }
                    Some(cur) => Ok((
                        make_kv(&key, (*cur.value).clone(), cur.create_revision, next),
                        EventType::Deleted,
                        None,
                    )),
                },
            };
            match outcome {
                Ok((kv, kind, prev)) => {
                    next += 1;
                    overlay.insert(
                        kv.key.to_string(),
                        (kind != EventType::Deleted).then(|| kv.clone()),
                    );
                    rows.push(Row {
                        rev: kv.mod_revision,
                        key: kv.key.clone(),
                        created: kind == EventType::Added,
                        deleted: kind == EventType::Deleted,
                        create_rev: kv.create_revision,
                        raw: kv.raw.clone(),
                    });
                    events.push(Event {
                        kind,
                        kv: kv.clone(),
                        prev,
                    });
                    outcomes.push((reply, Ok(kv)));
                }
                Err(e) => {
                    let _ = reply.send(Err(e));
                }
            }
        }
        self.commit(&mut outcomes, &mut events, &mut rows, next);
    }

    /// Writes `rows` in one transaction; on success publishes `events`, then answers.
    fn commit(
        &mut self,
        outcomes: &mut Vec<(Reply, Result<KeyValue>)>,
        events: &mut Vec<Event>,
        rows: &mut Vec<Row>,
        next: Revision,
    ) {
        if rows.is_empty() {
            return;
        }
        match write_rows(&mut self.conn, rows, &*self.transformer) {
            Ok(()) => {
                self.revision = next - 1;
                self.cache.apply(std::mem::take(events));
                for (reply, result) in outcomes.drain(..) {
                    let _ = reply.send(result.map(Some));
                }
            }
            Err(source) => {
                tracing::error!(error = %source, "datastore commit failed");
                events.clear();
                for (reply, _) in outcomes.drain(..) {
                    let _ = reply.send(Err(StoreError::CommitFailed {
                        reason: source.to_string(),
                    }));
                }
            }
        }
        rows.clear();
    }

    fn compact(&mut self, revision: Revision) -> Result<()> {
        let revision = revision.min(self.revision);
        if revision <= self.cache.floor() {
            return Ok(());
        }
        let sql = |source| StoreError::Sql {
            step: "compact",
            source,
        };
        let tx = self.conn.transaction().map_err(sql)?;
        let removed = tx
            .execute(
                "DELETE FROM kv WHERE rev <= ?1 AND (deleted = 1 OR rev < \
                 (SELECT MAX(k2.rev) FROM kv AS k2 WHERE k2.key = kv.key))",
                params![revision as i64],
            )
            .map_err(sql)?;
        tx.execute(
            "INSERT INTO meta(name, value) VALUES('compact_rev', ?1) \
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            params![revision as i64],
        )
        .map_err(sql)?;
        tx.commit().map_err(sql)?;
        self.cache.compact(revision);
        tracing::debug!(revision, removed, "compacted datastore");
        Ok(())
    }
}

fn current(
    overlay: &HashMap<String, Option<KeyValue>>,
    cache: &Cache,
    key: &str,
) -> Option<KeyValue> {
    match overlay.get(key) {
        Some(v) => v.clone(),
        None => cache.get(key),
    }
}

fn write_rows(
    conn: &mut Connection,
    rows: &[Row],
    transformer: &dyn ValueTransformer,
) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    {
        let mut stmt = tx.prepare_cached(
            "INSERT INTO kv(rev, key, created, deleted, create_rev, value) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
        )?;
        for row in rows {
            let encoded = transformer
                .encode(&row.key, &row.raw)
                .map_err(|e| rusqlite::Error::ToSqlConversionFailure(Box::new(e)))?;
            stmt.execute(params![
                row.rev as i64,
                &*row.key,
                row.created,
                row.deleted,
                row.create_rev as i64,
                encoded.as_deref().unwrap_or(&row.raw[..])
            ])?;
        }
    }
    tx.commit()
}

/// Rewrites in place (same revisions, new bytes) every stored value under the
/// transformer's prefix that it reports stale: in clear, or under a retired key. The
/// overwritten bytes must not linger on disk: when anything was rewritten, the database
/// is vacuumed (no free page keeps an old copy) and the WAL truncated. Returns how many
/// values were rewritten.
pub fn rewrite_stale(conn: &mut Connection, transformer: &dyn ValueTransformer) -> Result<usize> {
    let Some(prefix) = transformer.prefix() else {
        return Ok(0);
    };
    let sql = |source| StoreError::Sql {
        step: "rewrite stored values",
        source,
    };
    let tx = conn.transaction().map_err(sql)?;
    let mut rewritten = 0;
    {
        let mut select = tx
            .prepare("SELECT rev, key, value FROM kv WHERE key >= ?1 AND key < ?2")
            .map_err(sql)?;
        let mut update = tx
            .prepare("UPDATE kv SET value = ?1 WHERE rev = ?2")
            .map_err(sql)?;
        let mut rows = select
            .query(params![prefix, prefix_end(prefix)])
            .map_err(sql)?;
        while let Some(row) = rows.next().map_err(sql)? {
            let stored: Vec<u8> = row.get(2).map_err(sql)?;
            if !transformer.is_stale(&stored) {
                continue;
            }
            let rev: i64 = row.get(0).map_err(sql)?;
            let key: String = row.get(1).map_err(sql)?;
            let transform = |source| StoreError::Transform {
                key: key.clone(),
                source,
            };
            let plain = transformer
                .decode(&key, &stored)
                .map_err(transform)?
                .unwrap_or(stored);
            let encoded = transformer
                .encode(&key, &plain)
                .map_err(transform)?
                .unwrap_or(plain);
            update.execute(params![encoded, rev]).map_err(sql)?;
            rewritten += 1;
        }
    }
    tx.commit().map_err(sql)?;
    if rewritten > 0 {
        conn.execute_batch("VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")
            .map_err(sql)?;
        tracing::info!(
            rewritten,
            prefix,
            "rewrote stored values (secrets encryption)"
        );
    }
    Ok(rewritten)
}

/// Opens an existing database for [`rewrite_stale`] or [`count_stale`] from outside the
/// server (`orc secrets-encrypt`).
pub fn open_existing(path: &Path) -> Result<Connection> {
    let open_err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
        .map_err(open_err)?;
    conn.execute_batch("PRAGMA busy_timeout=5000;")
        .map_err(open_err)?;
    Ok(conn)
}

/// Stored values under the transformer's prefix (every revision kept), and how many of
/// them are stale.
pub fn count_stale(
    conn: &Connection,
    transformer: &dyn ValueTransformer,
) -> Result<(usize, usize)> {
    let Some(prefix) = transformer.prefix() else {
        return Ok((0, 0));
    };
    let sql = |source| StoreError::Sql {
        step: "count stored values",
        source,
    };
    let mut select = conn
        .prepare("SELECT value FROM kv WHERE key >= ?1 AND key < ?2")
        .map_err(sql)?;
    let mut rows = select
        .query(params![prefix, prefix_end(prefix)])
        .map_err(sql)?;
    let (mut total, mut stale) = (0, 0);
    while let Some(row) = rows.next().map_err(sql)? {
        let stored: Vec<u8> = row.get(0).map_err(sql)?;
        total += 1;
        stale += usize::from(transformer.is_stale(&stored));
    }
    Ok((total, stale))
}

/// The first key after every key starting with `prefix` (which ends in `/`).
fn prefix_end(prefix: &str) -> String {
    let mut end = prefix.trim_end_matches('/').to_string();
    end.push('0');
    end
}

#[async_trait::async_trait]
impl Store for SqliteStore {
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
        let op = Op::Create {
            key: key.to_string(),
            value,
        };
        self.submit(op).await?.ok_or(StoreError::WriterGone)
    }

    async fn update(
        &self,
        key: &str,
        value: Value,
        expected: Option<Revision>,
    ) -> Result<KeyValue> {
        let op = Op::Update {
            key: key.to_string(),
            value,
            expected,
        };
        self.submit(op).await?.ok_or(StoreError::WriterGone)
    }

    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue> {
        let op = Op::Delete {
            key: key.to_string(),
            expected,
        };
        self.submit(op).await?.ok_or(StoreError::WriterGone)
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
        self.submit(Op::Compact { revision }).await.map(|_| ())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn open(dir: &tempfile::TempDir) -> SqliteStore {
        SqliteStore::open(&dir.path().join("state.db")).expect("open store")
    }

    fn obj(name: &str, data: &str) -> Value {
        json!({"metadata": {"name": name}, "data": {"k": data}})
    }

    #[tokio::test]
    async fn every_write_gets_a_strictly_increasing_revision() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let a = store.create("/t/a", obj("a", "1")).await.unwrap();
        let b = store.create("/t/b", obj("b", "1")).await.unwrap();
        let a2 = store
            .update("/t/a", obj("a", "2"), Some(a.mod_revision))
            .await
            .unwrap();
        let d = store.delete("/t/b", None).await.unwrap();
        assert!(a.mod_revision < b.mod_revision);
        assert!(b.mod_revision < a2.mod_revision);
        assert!(a2.mod_revision < d.mod_revision);
        assert_eq!(a2.create_revision, a.mod_revision);
        assert_eq!(
            a2.value["metadata"]["resourceVersion"],
            a2.mod_revision.to_string()
        );
        assert_eq!(store.revision(), d.mod_revision);
    }

    #[tokio::test]
    async fn stale_revision_update_conflicts_and_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let a = store.create("/t/a", obj("a", "1")).await.unwrap();
        store
            .update("/t/a", obj("a", "2"), Some(a.mod_revision))
            .await
            .unwrap();
        let err = store
            .update("/t/a", obj("a", "3"), Some(a.mod_revision))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
        assert_eq!(store.get("/t/a").unwrap().value["data"]["k"], "2");
        let err = store.create("/t/a", obj("a", "x")).await.unwrap_err();
        assert!(matches!(err, StoreError::AlreadyExists { .. }));
        let err = store.delete("/t/missing", None).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound { .. }));
    }

    #[tokio::test]
    async fn reopening_restores_objects_revision_and_history() {
        let dir = tempfile::tempdir().unwrap();
        let (rev_after_first, last) = {
            let store = open(&dir);
            let a = store.create("/t/a", obj("a", "1")).await.unwrap();
            store.create("/t/b", obj("b", "1")).await.unwrap();
            store.update("/t/a", obj("a", "2"), None).await.unwrap();
            let d = store.delete("/t/b", None).await.unwrap();
            (a.mod_revision, d.mod_revision)
        };
        let store = open(&dir);
        assert_eq!(store.revision(), last);
        assert_eq!(store.get("/t/a").unwrap().value["data"]["k"], "2");
        assert!(store.get("/t/b").is_none());
        let next = store.create("/t/c", obj("c", "1")).await.unwrap();
        assert_eq!(next.mod_revision, last + 1);
        // History survives the restart: a watch resumes from the first write.
        let mut w = store.watch("/t/", rev_after_first).unwrap();
        let kinds: Vec<_> = futures_kinds(&mut w, 4).await;
        assert_eq!(
            kinds,
            vec![
                EventType::Added,
                EventType::Modified,
                EventType::Deleted,
                EventType::Added
            ]
        );
    }

    async fn futures_kinds(w: &mut Watcher, n: usize) -> Vec<EventType> {
        let mut out = Vec::new();
        for _ in 0..n {
            let e = tokio::time::timeout(Duration::from_secs(2), w.next())
                .await
                .expect("watch deadlocked")
                .unwrap();
            out.push(e.kind);
        }
        out
    }

    #[tokio::test]
    async fn compaction_expires_old_watches_and_survives_restart() {
        let dir = tempfile::tempdir().unwrap();
        let compact_at;
        {
            let store = open(&dir);
            for i in 0..5 {
                store
                    .create(&format!("/t/{i}"), obj("x", "1"))
                    .await
                    .unwrap();
            }
            store.update("/t/0", obj("x", "2"), None).await.unwrap();
            store.delete("/t/1", None).await.unwrap();
            compact_at = store.revision() - 1;
            store.compact(compact_at).await.unwrap();
            assert!(matches!(
                store.watch("/t/", 1),
                Err(StoreError::Compacted { .. })
            ));
            assert!(store.watch("/t/", compact_at).is_ok());
        }
        let store = open(&dir);
        assert!(matches!(
            store.watch("/t/", 1),
            Err(StoreError::Compacted { .. })
        ));
        assert_eq!(store.get("/t/0").unwrap().value["data"]["k"], "2");
        assert!(store.get("/t/1").is_none());
        let page = store.list("/t/", None, 0, &|_| true);
        assert_eq!(page.items.len(), 4);
    }

    #[tokio::test]
    async fn concurrent_writers_are_group_committed_without_loss() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(open(&dir));
        let mut tasks = Vec::new();
        for w in 0..8 {
            let store = store.clone();
            tasks.push(tokio::spawn(async move {
                for i in 0..50 {
                    store
                        .create(&format!("/t/{w}-{i}"), obj("x", "1"))
                        .await
                        .unwrap();
                }
            }));
        }
        for t in tasks {
            t.await.unwrap();
        }
        assert_eq!(store.list("/t/", None, 0, &|_| true).items.len(), 400);
        assert_eq!(store.revision(), 400);
        drop(store);
        let store = open(&dir);
        assert_eq!(store.list("/t/", None, 0, &|_| true).items.len(), 400);
    }
}
