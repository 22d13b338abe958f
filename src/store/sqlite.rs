//! The embedded SQLite datastore: an append-only revision log with group commit.
//!
//! Table `kv` holds one row per revision (kine-style): creates, updates and deletes
//! (tombstones carry the last state). Current objects are the newest row of each key
//! that is not a tombstone. One writer thread owns the connection: it batches queued
//! writes into a single transaction, commits it durably (WAL, `synchronous=FULL`),
//! then applies the events to the cache and answers the callers. No caller is answered
//! before its batch's transaction committed or failed: every answer reflects a durable
//! outcome. A writer without writes for a few seconds gives SQLite's page cache back
//! (the next writes refill it from the OS page cache).

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{params, Connection, OpenFlags, OptionalExtension};
use serde_json::Value;
use tokio::sync::{mpsc, oneshot};

use super::cache::{Cache, HistoryLimits};
use super::encryption::{Identity, ValueTransformer};
use super::{
    make_kv, Event, EventType, KeyValue, ListFilter, ListPage, Result, Revision, Store, StoreError,
    Watcher,
};

/// Most writes committed in one transaction.
const MAX_BATCH: usize = 512;
/// Queued writes before callers wait for room.
const QUEUE_DEPTH: usize = 4096;
/// WAL bytes kept after a checkpoint. A big transaction (a compaction) may grow the WAL
/// past it; the checkpoint after it truncates the file back.
const JOURNAL_SIZE_LIMIT: u64 = 4 << 20;
/// Free space the datastore's filesystem needs before a store that ran out of space
/// reports ready again (a successful write clears the failure at once).
const READY_FREE_SPACE: u64 = 4 << 20;
/// How long the writer goes without writes before it gives SQLite's page cache back
/// (`sqlite3_db_release_memory`): up to 2 MiB (SQLite's default `cache_size`) that an idle
/// server would otherwise keep after a burst of writes. Its next writes read the pages they
/// need again, from the OS page cache.
const IDLE_RELEASE: Duration = Duration::from_secs(5);
/// The tables of an orc datastore; a database holding others belongs to someone else.
const ORC_TABLES: [&str; 2] = ["kv", "meta"];

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
    /// Checks that the datastore can take writes (readiness).
    Probe,
}

/// Where a write's outcome is sent.
type Reply = oneshot::Sender<Result<Option<KeyValue>>>;

struct Request {
    op: Op,
    reply: Reply,
}

/// What a datastore file holds, judged without changing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Contents {
    Missing,
    /// A zero-length file or a database without tables.
    Empty,
    /// orc's tables.
    Orc,
}

/// Reads what `path` holds without writing to it; another application's database is
/// `StoreError::Foreign`.
pub fn inspect(path: &Path) -> Result<Contents> {
    let display = || path.display().to_string();
    match std::fs::metadata(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contents::Missing),
        Err(source) => {
            return Err(StoreError::Inspect {
                path: display(),
                source,
            })
        }
        Ok(meta) if meta.len() == 0 => return Ok(Contents::Empty),
        Ok(_) => {}
    }
    let open_err = |source| StoreError::Open {
        path: display(),
        source,
    };
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(open_err)?;
    let tables = conn
        .prepare(
            "SELECT name FROM sqlite_master WHERE type = 'table' \
             AND name NOT LIKE 'sqlite_%' ORDER BY name",
        )
        .and_then(|mut stmt| {
            stmt.query_map([], |r| r.get::<_, String>(0))?
                .collect::<rusqlite::Result<Vec<String>>>()
        })
        .map_err(open_err)?;
    if tables.is_empty() {
        Ok(Contents::Empty)
    } else if tables.iter().all(|t| ORC_TABLES.contains(&t.as_str())) {
        Ok(Contents::Orc)
    } else {
        Err(StoreError::Foreign {
            path: display(),
            tables: tables.join(", "),
        })
    }
}

/// The SQLite-backed `Store`.
pub struct SqliteStore {
    cache: Arc<Cache>,
    queue: mpsc::Sender<Request>,
    path: PathBuf,
}

impl SqliteStore {
    /// Opens (creating if needed, 0600) the database at `path` and loads it into memory.
    /// Refuses another application's database without touching it.
    pub fn open(path: &Path) -> Result<SqliteStore> {
        SqliteStore::open_with(path, Arc::new(Identity))
    }

    /// Like [`SqliteStore::open`], with values passing through `transformer` on their way
    /// to and from disk; stored values it reports stale are rewritten first.
    pub fn open_with(path: &Path, transformer: Arc<dyn ValueTransformer>) -> Result<SqliteStore> {
        SqliteStore::open_configured(path, transformer, HistoryLimits::default())
    }

    /// Like [`SqliteStore::open_with`], with the watch cache's history kept within `limits`.
    pub fn open_configured(
        path: &Path,
        transformer: Arc<dyn ValueTransformer>,
        limits: HistoryLimits,
    ) -> Result<SqliteStore> {
        if inspect(path)? == Contents::Missing {
            create_private_file(path)?;
        }
        let mut conn = connect(path)?;
        rewrite_stale(&mut conn, &*transformer)?;
        let (cache, revision) = load(&conn, &*transformer, limits)?;
        let cache = Arc::new(cache);
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let writer = Writer {
            conn,
            cache: cache.clone(),
            revision,
            path: path.to_path_buf(),
            failure: None,
            transformer,
            idle_release: IDLE_RELEASE,
        };
        std::thread::Builder::new()
            .name("orc-store-writer".into())
            .spawn(move || {
                writer.run(rx);
            })
            .map_err(|source| StoreError::SpawnWriter { source })?;
        let expiring = Arc::downgrade(&cache);
        std::thread::Builder::new()
            .name("orc-history-expiry".into())
            .spawn(move || super::cache::expire_periodically(expiring))
            .map_err(|source| StoreError::SpawnExpiry { source })?;
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

/// Opens orc's database at `path` (which exists) and creates its tables when missing.
fn connect(path: &Path) -> Result<Connection> {
    let open_err = |source| StoreError::Open {
        path: path.display().to_string(),
        source,
    };
    let conn = Connection::open(path).map_err(open_err)?;
    // The datastore holds Secrets: only the owner may read it (WAL and SHM files
    // are created with the database's mode; older ones are tightened too).
    for file in [
        path.to_path_buf(),
        sidecar(path, "-wal"),
        sidecar(path, "-shm"),
    ] {
        restrict_permissions(&file)?;
    }
    conn.execute_batch(&format!(
        "PRAGMA journal_mode=WAL;
             PRAGMA synchronous=FULL;
             PRAGMA busy_timeout=5000;
             PRAGMA journal_size_limit={JOURNAL_SIZE_LIMIT};
             CREATE TABLE IF NOT EXISTS kv (
                 rev INTEGER PRIMARY KEY,
                 key TEXT NOT NULL,
                 created INTEGER NOT NULL,
                 deleted INTEGER NOT NULL,
                 create_rev INTEGER NOT NULL,
                 value BLOB NOT NULL
             );
             CREATE INDEX IF NOT EXISTS kv_key_rev ON kv(key, rev);
             CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value INTEGER NOT NULL);"
    ))
    .map_err(open_err)?;
    Ok(conn)
}

fn sidecar(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

/// Creates an empty file readable only by its owner, whatever the umask.
fn create_private_file(path: &Path) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map(drop)
        .map_err(|source| StoreError::Permissions {
            path: path.display().to_string(),
            source,
        })
}

/// Makes `path` 0600 when it exists.
fn restrict_permissions(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    match std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        result => result.map_err(|source| StoreError::Permissions {
            path: path.display().to_string(),
            source,
        }),
    }
}

/// Loads current objects and the history after the compaction floor. Each `Modified`
/// event carries the key's previous state, as live events do, so a selector watch
/// resumed after a restart still sees objects leave the selector. (Compaction keeps the
/// newest row at or below the floor for this.)
fn load(
    conn: &Connection,
    transformer: &dyn ValueTransformer,
    limits: HistoryLimits,
) -> Result<(Cache, Revision)> {
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
        // Checked, not kept: the cache parses objects when they are used.
        serde_json::from_slice::<serde::de::IgnoredAny>(&raw).map_err(|source| {
            StoreError::Decode {
                key: key.clone(),
                source,
            }
        })?;
        let kv = KeyValue::from_raw(&key, Bytes::from(raw), create_rev, rev);
        revision = revision.max(rev);
        let (kind, prev) = if deleted {
            objects.remove(&kv.key);
            (EventType::Deleted, None)
        } else {
            let prev = objects.insert(kv.key.clone(), kv.clone());
            if created {
                (EventType::Added, None)
            } else {
                (EventType::Modified, prev)
            }
        };
        if rev > compacted {
            history.push(Event { kind, kv, prev });
        }
    }
    let cache = Cache::with_limits(
        objects.into_values().collect(),
        history,
        revision,
        compacted,
        limits,
    );
    Ok((cache, revision))
}

/// Why the last commit failed (cleared by the next successful one).
#[derive(Debug, Clone)]
enum Failure {
    OutOfSpace,
    Other(String),
}

struct Writer {
    conn: Connection,
    cache: Arc<Cache>,
    revision: Revision,
    path: PathBuf,
    failure: Option<Failure>,
    transformer: Arc<dyn ValueTransformer>,
    /// See [`IDLE_RELEASE`].
    idle_release: Duration,
}

struct Row {
    rev: Revision,
    key: Arc<str>,
    created: bool,
    deleted: bool,
    create_rev: Revision,
    raw: Bytes,
}

/// Writes decided in the current batch, not yet committed.
#[derive(Default)]
struct Pending {
    /// Each written key's state after the pending writes (`None` = deleted).
    overlay: HashMap<Arc<str>, Option<KeyValue>>,
    rows: Vec<Row>,
    events: Vec<Event>,
    /// Every caller's answer, held until the transaction committed or failed: an error
    /// such as `AlreadyExists` may rest on a pending write that is then rolled back.
    replies: Vec<(Reply, Result<KeyValue>)>,
}

/// A decided write: the new state, its event kind and the previous state.
type Decision = (KeyValue, EventType, Option<KeyValue>);

impl Writer {
    /// Serves writes until every sender is gone; returns the writer (tests look at it).
    fn run(mut self, mut rx: mpsc::Receiver<Request>) -> Writer {
        // The clock for the idle release; without it (it could not be built) the writer
        // only waits for writes and keeps its page cache.
        let timer = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .inspect_err(|error| {
                tracing::warn!(%error, "no timer for the datastore writer: SQLite's page cache is kept while idle");
            })
            .ok();
        let mut wrote = false;
        loop {
            let next = match &timer {
                Some(timer) if wrote => {
                    // The timeout is made inside the runtime: its timer needs the clock.
                    let idle = self.idle_release;
                    match timer.block_on(async { tokio::time::timeout(idle, rx.recv()).await }) {
                        Ok(next) => next,
                        Err(_idle) => {
                            self.release_memory();
                            wrote = false;
                            continue;
                        }
                    }
                }
                _ => rx.blocking_recv(),
            };
            let Some(first) = next else {
                return self;
            };
            let mut batch = vec![first];
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(req) => batch.push(req),
                    Err(_) => break,
                }
            }
            self.process(batch);
            wrote = true;
        }
    }

    /// Bytes of SQLite's page cache held by the connection.
    fn page_cache_bytes(&self) -> usize {
        let (mut current, mut highwater) = (0, 0);
        // SAFETY: the handle is this writer's open connection, used only by this thread;
        // sqlite3_db_status only reads counters into the two integers.
        let rc = unsafe {
            rusqlite::ffi::sqlite3_db_status(
                self.conn.handle(),
                rusqlite::ffi::SQLITE_DBSTATUS_CACHE_USED,
                &mut current,
                &mut highwater,
                0,
            )
        };
        if rc == rusqlite::ffi::SQLITE_OK {
            usize::try_from(current).unwrap_or(0)
        } else {
            0
        }
    }

    /// Gives SQLite's unused cached pages back to the allocator (see [`IDLE_RELEASE`]).
    fn release_memory(&self) {
        let before = self.page_cache_bytes();
        match self.conn.release_memory() {
            Ok(()) => tracing::debug!(
                before,
                after = self.page_cache_bytes(),
                "idle datastore writer gave SQLite's page cache back"
            ),
            Err(error) => tracing::warn!(%error, "cannot release SQLite's page cache"),
        }
    }

    fn process(&mut self, batch: Vec<Request>) {
        let mut pending = Pending::default();
        for Request { op, reply } in batch {
            let next = self.revision + 1 + pending.rows.len() as Revision;
            let decision = match op {
                Op::Compact { revision } => {
                    // Commit what is queued so far first, then compact.
                    self.commit(&mut pending);
                    let _ = reply.send(self.compact(revision).map(|_| None));
                    continue;
                }
                Op::Probe => {
                    self.commit(&mut pending);
                    let _ = reply.send(self.probe().map(|_| None));
                    continue;
                }
                Op::Create { key, value } => match current(&pending.overlay, &self.cache, &key) {
                    Some(_) => Err(StoreError::AlreadyExists { key }),
                    None => Ok((make_kv(&key, value, next, next), EventType::Added, None)),
                },
                Op::Update {
                    key,
                    value,
                    expected,
                } => current_at(&pending.overlay, &self.cache, key, expected).map(|(key, cur)| {
                    (
                        make_kv(&key, value, cur.create_revision, next),
                        EventType::Modified,
                        Some(cur),
                    )
                }),
                Op::Delete { key, expected } => {
                    current_at(&pending.overlay, &self.cache, key, expected).map(|(key, cur)| {
                        (
                            make_kv(&key, (*cur.value).clone(), cur.create_revision, next),
                            EventType::Deleted,
                            None,
                        )
                    })
                }
            };
            match decision {
                Ok(decision) => pending.push(decision, reply),
                Err(e) => pending.replies.push((reply, Err(e))),
            }
        }
        self.commit(&mut pending);
    }

    /// Writes the pending rows in one transaction; only once it committed are the
    /// events published and the callers answered. A failed transaction answers every
    /// caller of the batch with the failure and publishes nothing.
    fn commit(&mut self, pending: &mut Pending) {
        let Pending {
            overlay: _,
            rows,
            events,
            replies,
        } = std::mem::take(pending);
        let outcome = if rows.is_empty() {
            Ok(())
        } else {
            write_rows(&mut self.conn, &rows, &*self.transformer)
        };
        match outcome {
            Ok(()) => {
                if !rows.is_empty() {
                    self.revision += rows.len() as Revision;
                    self.failure = None;
                    self.cache.apply(events);
                }
                for (reply, result) in replies {
                    let _ = reply.send(result.map(Some));
                }
            }
            Err(source) => {
                let failure = failure_of(&source);
                tracing::error!(error = %source, path = %self.path.display(), writes = rows.len(), "datastore commit failed");
                for (reply, _) in replies {
                    let _ = reply.send(Err(self.error_for(&failure)));
                }
                self.failure = Some(failure);
            }
        }
    }

    fn error_for(&self, failure: &Failure) -> StoreError {
        match failure {
            Failure::OutOfSpace => StoreError::OutOfSpace {
                path: self.path.display().to_string(),
            },
            Failure::Other(reason) => StoreError::CommitFailed {
                reason: reason.clone(),
            },
        }
    }

    /// Ready unless the last commit failed and a probe write still fails (or, after
    /// running out of space, the filesystem has not got room again).
    fn probe(&mut self) -> Result<()> {
        let Some(failure) = self.failure.clone() else {
            return self
                .conn
                .query_row("SELECT 1", [], |_| Ok(()))
                .map_err(|source| StoreError::Sql {
                    step: "probe",
                    source,
                });
        };
        if matches!(failure, Failure::OutOfSpace)
            && free_space(&self.path).is_some_and(|free| free < READY_FREE_SPACE)
        {
            return Err(self.error_for(&failure));
        }
        let probe = self.conn.execute(
            "INSERT INTO meta(name, value) VALUES('ready_probe', unixepoch()) \
             ON CONFLICT(name) DO UPDATE SET value = excluded.value",
            [],
        );
        match probe {
            Ok(_) => {
                tracing::info!(path = %self.path.display(), "datastore takes writes again");
                self.failure = None;
                Ok(())
            }
            Err(source) => Err(self.error_for(&failure_of(&source))),
        }
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
        // Keep each key's newest row at or below `revision`: it is the current object
        // or the previous state of the key's next event.
        let removed = tx
            .execute(
                "DELETE FROM kv WHERE rev <= ?1 AND (deleted = 1 OR rev < \
                 (SELECT MAX(k2.rev) FROM kv AS k2 WHERE k2.key = kv.key AND k2.rev <= ?1))",
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
        // A compaction writes a large transaction: fold the WAL into the database and
        // truncate it, so it does not keep that size.
        if let Err(error) = self
            .conn
            .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        {
            tracing::warn!(%error, "checkpoint after compaction failed");
        }
        tracing::debug!(revision, removed, "compacted datastore");
        Ok(())
    }
}

impl Pending {
    fn push(&mut self, (kv, kind, prev): Decision, reply: Reply) {
        self.overlay.insert(
            kv.key.clone(),
            (kind != EventType::Deleted).then(|| kv.clone()),
        );
        self.rows.push(Row {
            rev: kv.mod_revision,
            key: kv.key.clone(),
            created: kind == EventType::Added,
            deleted: kind == EventType::Deleted,
            create_rev: kv.create_revision,
            raw: kv.raw.clone(),
        });
        self.events.push(Event {
            kind,
            kv: kv.clone(),
            prev,
        });
        self.replies.push((reply, Ok(kv)));
    }
}

fn failure_of(error: &rusqlite::Error) -> Failure {
    match error {
        rusqlite::Error::SqliteFailure(e, _) if e.code == rusqlite::ErrorCode::DiskFull => {
            Failure::OutOfSpace
        }
        other => Failure::Other(other.to_string()),
    }
}

/// Bytes available to unprivileged writers on the filesystem holding `path`.
fn free_space(path: &Path) -> Option<u64> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty())?;
    let stat = nix::sys::statvfs::statvfs(dir).ok()?;
    Some(stat.blocks_available() as u64 * stat.fragment_size() as u64)
}

fn current(
    overlay: &HashMap<Arc<str>, Option<KeyValue>>,
    cache: &Cache,
    key: &str,
) -> Option<KeyValue> {
    match overlay.get(key) {
        Some(v) => v.clone(),
        None => cache.get(key),
    }
}

/// The current object at `key`, which must exist at revision `expected` when given.
fn current_at(
    overlay: &HashMap<Arc<str>, Option<KeyValue>>,
    cache: &Cache,
    key: String,
    expected: Option<Revision>,
) -> Result<(String, KeyValue)> {
    match current(overlay, cache, &key) {
        None => Err(StoreError::NotFound { key }),
        Some(cur) if expected.is_some_and(|e| e != cur.mod_revision) => Err(StoreError::Conflict {
            key,
            expected: expected.unwrap_or_default(),
            current: cur.mod_revision,
        }),
        Some(cur) => Ok((key, cur)),
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
    // On failure the transaction is rolled back when `tx` drops.
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
            // Here, in the caller's task: the writer thread serializes every write.
            value: super::compact_for_store(value),
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
            // Here, in the caller's task: the writer thread serializes every write.
            value: super::compact_for_store(value),
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

    async fn ready(&self) -> Result<()> {
        self.submit(Op::Probe).await.map(|_| ())
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

    /// A writer driven directly, so a test decides exactly what one batch holds.
    fn writer(dir: &tempfile::TempDir) -> Writer {
        let path = dir.path().join("state.db");
        create_private_file(&path).unwrap();
        let conn = connect(&path).unwrap();
        let (cache, revision) = load(&conn, &Identity, HistoryLimits::default()).unwrap();
        Writer {
            conn,
            cache: Arc::new(cache),
            revision,
            path,
            failure: None,
            transformer: Arc::new(Identity),
            idle_release: IDLE_RELEASE,
        }
    }

    fn request(op: Op) -> (Request, oneshot::Receiver<Result<Option<KeyValue>>>) {
        let (reply, rx) = oneshot::channel();
        (Request { op, reply }, rx)
    }

    fn create(key: &str) -> Op {
        Op::Create {
            key: key.into(),
            value: obj("x", "1"),
        }
    }

    #[test]
    fn a_failed_group_commit_answers_every_write_with_the_failure_and_publishes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(&dir);
        let (req, rx) = request(create("/t/before"));
        w.process(vec![req]);
        assert!(rx.blocking_recv().unwrap().is_ok());
        let revision = w.revision;
        // Injected failure: the third write of the batch makes the transaction fail.
        w.conn
            .execute_batch(
                "CREATE TRIGGER fail BEFORE INSERT ON kv WHEN NEW.key = '/t/boom' \
                 BEGIN SELECT RAISE(ABORT, 'injected failure'); END;",
            )
            .unwrap();
        let (first, first_rx) = request(create("/t/a"));
        // Refused only because of the first write, which is then rolled back.
        let (duplicate, duplicate_rx) = request(create("/t/a"));
        let (boom, boom_rx) = request(create("/t/boom"));
        let mut watch = w.cache.watch("/t/", revision).unwrap();
        w.process(vec![first, duplicate, boom]);
        for rx in [first_rx, duplicate_rx, boom_rx] {
            let answer = rx.blocking_recv().expect("every caller is answered");
            assert!(
                matches!(answer, Err(StoreError::CommitFailed { .. })),
                "{answer:?}"
            );
        }
        assert!(w.cache.get("/t/a").is_none());
        assert_eq!(w.cache.revision(), revision);
        assert_eq!(w.revision, revision);
        // The next batch commits and takes the next revision; watchers see only it.
        let (again, again_rx) = request(create("/t/a"));
        w.process(vec![again]);
        let kv = again_rx.blocking_recv().unwrap().unwrap().unwrap();
        assert_eq!(kv.mod_revision, revision + 1);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .unwrap();
        let event = rt
            .block_on(async { tokio::time::timeout(Duration::from_secs(2), watch.next()).await })
            .expect("watch deadlocked")
            .unwrap();
        assert_eq!((&*event.kv.key, event.revision()), ("/t/a", revision + 1));
        drop(w);
        let store = open(&dir);
        assert_eq!(store.revision(), revision + 1);
        assert!(store.get("/t/boom").is_none());
    }

    #[test]
    fn an_idle_writer_gives_sqlites_page_cache_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = writer(&dir);
        let data = "x".repeat(1000);
        let batch: Vec<Request> = (0..2000)
            .map(|i| {
                request(Op::Create {
                    key: format!("/t/{i:05}"),
                    value: obj("x", &data),
                })
                .0
            })
            .collect();
        w.process(batch);
        let busy = w.page_cache_bytes();
        assert!(busy > 1 << 20, "page cache after 2 MB of writes: {busy} B");
        // Served by its thread: one more write, then nothing for a while.
        w.idle_release = Duration::from_millis(20);
        let (queue, rx) = mpsc::channel(QUEUE_DEPTH);
        let thread = std::thread::spawn(move || w.run(rx));
        let (req, reply) = request(create("/t/last"));
        queue.blocking_send(req).unwrap();
        assert!(reply.blocking_recv().unwrap().is_ok());
        // Idle for 25 times the release delay.
        std::thread::sleep(Duration::from_millis(500));
        drop(queue);
        let w = thread
            .join()
            .expect("the writer ends when its queue closes");
        let idle = w.page_cache_bytes();
        assert!(idle < busy / 8, "page cache {busy} B busy, {idle} B idle");
        // Still a working store: the next write reads what it needs again.
        let (req, reply) = request(create("/t/after"));
        let mut w = w;
        w.process(vec![req]);
        assert!(reply.blocking_recv().unwrap().is_ok());
        assert!(w.cache.get("/t/00000").is_some() && w.cache.get("/t/after").is_some());
    }

    #[test]
    fn a_full_disk_is_reported_as_out_of_space() {
        let full = rusqlite::Error::SqliteFailure(
            rusqlite::ffi::Error::new(rusqlite::ffi::SQLITE_FULL),
            None,
        );
        assert!(matches!(failure_of(&full), Failure::OutOfSpace));
        let dir = tempfile::tempdir().unwrap();
        let w = writer(&dir);
        let message = w.error_for(&Failure::OutOfSpace).to_string();
        assert!(message.contains("out of space"), "{message}");
    }

    fn labelled(name: &str, app: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {"app": app}}})
    }

    async fn next_event(w: &mut Watcher) -> Arc<Event> {
        tokio::time::timeout(Duration::from_secs(2), w.next())
            .await
            .expect("watch deadlocked")
            .unwrap()
    }

    #[tokio::test]
    async fn reloaded_history_carries_the_previous_state_of_each_change() {
        let dir = tempfile::tempdir().unwrap();
        let created = {
            let store = open(&dir);
            let a = store.create("/t/a", labelled("a", "1")).await.unwrap();
            store
                .update("/t/a", labelled("a", "2"), None)
                .await
                .unwrap();
            a.mod_revision
        };
        let store = open(&dir);
        let mut w = store.watch("/t/", created).unwrap();
        let e = next_event(&mut w).await;
        assert_eq!(e.kind, EventType::Modified);
        let prev = e
            .prev
            .as_ref()
            .expect("reloaded event keeps its previous state");
        assert_eq!(prev.value["metadata"]["labels"]["app"], "1");
        assert_eq!(prev.mod_revision, created);
    }

    #[tokio::test]
    async fn compaction_keeps_the_previous_state_of_the_first_change_after_it() {
        let dir = tempfile::tempdir().unwrap();
        let floor = {
            let store = open(&dir);
            store.create("/t/a", labelled("a", "1")).await.unwrap();
            let v2 = store
                .update("/t/a", labelled("a", "2"), None)
                .await
                .unwrap();
            store
                .update("/t/a", labelled("a", "3"), None)
                .await
                .unwrap();
            store.compact(v2.mod_revision).await.unwrap();
            v2.mod_revision
        };
        let store = open(&dir);
        assert_eq!(
            store.get("/t/a").unwrap().value["metadata"]["labels"]["app"],
            "3"
        );
        let mut w = store.watch("/t/", floor).unwrap();
        let e = next_event(&mut w).await;
        let prev = e.prev.as_ref().expect("previous state survives compaction");
        assert_eq!(prev.value["metadata"]["labels"]["app"], "2");
    }

    #[tokio::test]
    async fn compaction_truncates_the_wal() {
        let dir = tempfile::tempdir().unwrap();
        let store = open(&dir);
        let big = "x".repeat(4096);
        for i in 0..300 {
            store
                .create(&format!("/t/{i}"), obj("x", &big))
                .await
                .unwrap();
        }
        for i in 0..300 {
            store.delete(&format!("/t/{i}"), None).await.unwrap();
        }
        let wal = sidecar(store.path(), "-wal");
        let before = std::fs::metadata(&wal).unwrap().len();
        store.compact(store.revision()).await.unwrap();
        let after = std::fs::metadata(&wal).unwrap().len();
        eprintln!("WAL: {before} bytes after 300 creates and deletes of 4 KiB objects, {after} after compaction");
        assert!(
            before > 1 << 20,
            "the workload grew the WAL ({before} bytes)"
        );
        assert_eq!(after, 0, "WAL after compaction (was {before} bytes)");
    }

    #[test]
    fn another_applications_database_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("app.db");
        {
            let conn = Connection::open(&path).unwrap();
            conn.execute_batch("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);")
                .unwrap();
        }
        let before = std::fs::read(&path).unwrap();
        let err = SqliteStore::open(&path)
            .err()
            .expect("foreign database refused");
        assert!(matches!(err, StoreError::Foreign { .. }), "{err}");
        assert!(err.to_string().contains("users"), "{err}");
        assert_eq!(std::fs::read(&path).unwrap(), before);
        let missing = dir.path().join("missing.db");
        assert_eq!(inspect(&missing).unwrap(), Contents::Missing);
        std::fs::write(&missing, b"").unwrap();
        assert_eq!(inspect(&missing).unwrap(), Contents::Empty);
        drop(SqliteStore::open(&missing).unwrap());
        assert_eq!(inspect(&missing).unwrap(), Contents::Orc);
        // Closed cleanly (no WAL or SHM file left), it is still recognised.
        let closed = dir.path().join("closed.db");
        create_private_file(&closed).unwrap();
        drop(connect(&closed).unwrap());
        assert!(!sidecar(&closed, "-wal").exists());
        assert_eq!(inspect(&closed).unwrap(), Contents::Orc);
        let before = std::fs::read(&closed).unwrap();
        assert_eq!(inspect(&closed).unwrap(), Contents::Orc);
        assert_eq!(std::fs::read(&closed).unwrap(), before);
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
