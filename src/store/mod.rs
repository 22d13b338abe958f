//! The datastore: a revisioned key-value store of API objects, with lists and watches.
//!
//! Every write gets a new, strictly increasing revision which the API exposes as
//! `metadata.resourceVersion`. Reads (get, list, watch) are served from an in-memory
//! cache of current objects plus a window of recent events; writes go through one
//! writer that commits them durably (group commit) before acknowledging.

pub mod cache;
pub mod encryption;
pub mod etcd;
pub mod instrumented;
#[cfg(test)]
pub mod memory;
pub mod sqlite;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

pub use cache::Watcher;

/// A store revision (the `resourceVersion` clients see).
pub type Revision = u64;

/// One stored object at one revision.
#[derive(Debug, Clone)]
pub struct KeyValue {
    pub key: Arc<str>,
    /// The object, with `metadata.resourceVersion` set to `mod_revision`.
    pub value: Arc<Value>,
    /// `value` serialized as JSON (what clients receive; never re-serialized on reads).
    pub raw: Bytes,
    pub create_revision: Revision,
    pub mod_revision: Revision,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventType {
    Added,
    Modified,
    Deleted,
}

impl EventType {
    pub fn as_str(self) -> &'static str {
        match self {
            EventType::Added => "ADDED",
            EventType::Modified => "MODIFIED",
            EventType::Deleted => "DELETED",
        }
    }
}

/// A change to one key. For `Deleted`, `kv` is the last state of the object with its
/// resourceVersion set to the revision of the deletion.
#[derive(Debug, Clone)]
pub struct Event {
    pub kind: EventType,
    pub kv: KeyValue,
    /// The previous state for `Modified` events, when known.
    pub prev: Option<KeyValue>,
}

impl Event {
    pub fn revision(&self) -> Revision {
        self.kv.mod_revision
    }
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct ListPage {
    pub items: Vec<KeyValue>,
    /// The store revision the page was read at.
    pub revision: Revision,
    /// Key of the last item returned when more items remain (for `continue`).
    pub continue_after: Option<String>,
    /// How many further matching items remain after this page.
    pub remaining: usize,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{key} already exists")]
    AlreadyExists { key: String },
    #[error("{key} not found")]
    NotFound { key: String },
    #[error("{key} has been modified: expected revision {expected}, current revision {current}")]
    Conflict {
        key: String,
        expected: Revision,
        current: Revision,
    },
    #[error("revision {requested} has been compacted; the oldest available is {oldest}")]
    Compacted {
        requested: Revision,
        oldest: Revision,
    },
    #[error("open database {path}")]
    Open {
        path: String,
        #[source]
        source: rusqlite::Error,
    },
    #[error("restrict permissions of {path}")]
    Permissions {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("datastore {step} failed")]
    Sql {
        step: &'static str,
        #[source]
        source: rusqlite::Error,
    },
    #[error("stored object at {key} is not valid JSON")]
    Decode {
        key: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("stored value of {key} cannot be decoded (secrets encryption)")]
    Transform {
        key: String,
        #[source]
        source: encryption::EncryptionError,
    },
    #[error("datastore commit failed: {reason}")]
    CommitFailed { reason: String },
    /// The filesystem holding the datastore is full: nothing more can be committed.
    #[error("datastore {path} is out of space: free disk space on its filesystem")]
    OutOfSpace { path: String },
    #[error(
        "datastore {path} belongs to another application (tables: {tables}), not orc: \
         restore orc's database there, or point --datastore-endpoint at another file"
    )]
    Foreign { path: String, tables: String },
    #[error("inspect datastore {path}")]
    Inspect {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("start the datastore writer thread")]
    SpawnWriter {
        #[source]
        source: std::io::Error,
    },
    #[error("the datastore writer has stopped")]
    WriterGone,
    #[error("etcd {endpoints}: {step} failed")]
    Etcd {
        endpoints: String,
        step: &'static str,
        #[source]
        source: etcd_client::Error,
    },
    #[error(
        "etcd {endpoints} is unreachable (retried for {waited}s): check that the endpoints \
         are right and that etcd runs there"
    )]
    EtcdUnreachable {
        endpoints: String,
        waited: u64,
        #[source]
        source: etcd_client::Error,
    },
    #[error(
        "etcd {endpoints} holds another orc cluster (its CA hash is {found}, this server's is \
         {expected}): point --datastore-endpoint at this cluster's etcd, or start this server \
         with that cluster's CA"
    )]
    OtherCluster {
        endpoints: String,
        found: String,
        expected: String,
    },
    #[error(
        "etcd {endpoints} holds {keys} keys under /registry/ but no orc cluster marker \
         (another Kubernetes?): refusing to use it; give orc an etcd of its own"
    )]
    ForeignEtcd { endpoints: String, keys: i64 },
    #[error("{key} is too large for the datastore: {reason}")]
    TooLarge { key: String, reason: String },
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A filter applied to objects while listing.
pub type ListFilter<'a> = &'a (dyn Fn(&KeyValue) -> bool + Sync);

/// The datastore seen by the API server and controllers.
#[async_trait::async_trait]
pub trait Store: Send + Sync + 'static {
    /// The current object at `key` (from the cache: never touches the disk).
    fn get(&self, key: &str) -> Option<KeyValue>;
    /// Objects under `prefix` in key order, starting after `start_after`, at most
    /// `limit` (0 = no limit) of those accepted by `filter`.
    fn list(
        &self,
        prefix: &str,
        start_after: Option<&str>,
        limit: usize,
        filter: ListFilter<'_>,
    ) -> ListPage;
    /// Creates `key`; fails with `AlreadyExists` if it exists.
    async fn create(&self, key: &str, value: Value) -> Result<KeyValue>;
    /// Replaces `key`; with `expected`, fails with `Conflict` unless the current
    /// revision is `expected`.
    async fn update(&self, key: &str, value: Value, expected: Option<Revision>)
        -> Result<KeyValue>;
    /// Deletes `key`, returning its last state (resourceVersion = the delete revision).
    async fn delete(&self, key: &str, expected: Option<Revision>) -> Result<KeyValue>;
    /// Events under `prefix` with a revision greater than `after`, then live ones.
    fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher>;
    /// A consistent snapshot of the objects under `prefix` and a watch of everything after it.
    fn snapshot_and_watch(&self, prefix: &str) -> (Vec<KeyValue>, Revision, Watcher);
    /// The latest revision.
    fn revision(&self) -> Revision;
    /// Forgets history at and below `revision` (watches from there get `Compacted`).
    async fn compact(&self, revision: Revision) -> Result<()>;
    /// Whether the datastore can take writes now (for `/readyz`): fails while the last
    /// commit failed and a probe write still does (e.g. the disk is full).
    async fn ready(&self) -> Result<()> {
        Ok(())
    }
}

/// Sets `metadata.resourceVersion` of an object.
pub fn set_resource_version(value: &mut Value, rev: Revision) {
    if let Some(obj) = value.as_object_mut() {
        let meta = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Default::default()));
        if let Some(meta) = meta.as_object_mut() {
            meta.insert("resourceVersion".into(), Value::String(rev.to_string()));
        }
    }
}

/// Builds a `KeyValue`, serializing the object once.
pub fn make_kv(
    key: &str,
    mut value: Value,
    create_revision: Revision,
    mod_revision: Revision,
) -> KeyValue {
    set_resource_version(&mut value, mod_revision);
    let raw = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    KeyValue {
        key: Arc::from(key),
        value: Arc::new(value),
        raw,
        create_revision,
        mod_revision,
    }
}
