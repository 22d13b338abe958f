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
pub mod lazy;
#[cfg(test)]
pub mod memory;
pub mod sqlite;

use std::sync::Arc;

use bytes::Bytes;
use serde_json::Value;

pub use cache::Watcher;
pub use lazy::{LazyValue, Selectable};

/// A store revision (the `resourceVersion` clients see).
pub type Revision = u64;

/// One stored object at one revision.
///
/// Cloning is cheap (reference counts). `value` is parsed from `raw` on first use and
/// shared by every handle of this version while one holds it (see [`LazyValue`]); keep
/// [`KeyValue::cold`] copies in long-lived maps so the parsed form is not held there.
#[derive(Debug, Clone)]
pub struct KeyValue {
    pub key: Arc<str>,
    /// The object, with `metadata.resourceVersion` set to `mod_revision`.
    pub value: LazyValue,
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

impl KeyValue {
    /// The same object version, without the parsed form this handle may hold.
    pub fn cold(&self) -> KeyValue {
        KeyValue {
            key: self.key.clone(),
            value: self.value.cold(),
            raw: self.raw.clone(),
            create_revision: self.create_revision,
            mod_revision: self.mod_revision,
        }
    }

    /// The same key and revisions holding `value` instead (a view of the stored
    /// object: another version of its kind, a converted custom resource).
    pub fn with_value(self, value: Value) -> KeyValue {
        let value = LazyValue::from(value);
        KeyValue {
            raw: value.raw().clone(),
            value,
            ..self
        }
    }

    /// An object that is not stored (a dry run's result, a `Status` answer), at
    /// revision 0.
    pub fn unstored(key: &str, value: Value) -> KeyValue {
        let value = LazyValue::from(value);
        KeyValue {
            key: Arc::from(key),
            raw: value.raw().clone(),
            value,
            create_revision: 0,
            mod_revision: 0,
        }
    }

    /// A handle on an object read back from the datastore as JSON (`raw` holds its
    /// resourceVersion already); parsed when first used.
    pub fn from_raw(
        key: &str,
        raw: Bytes,
        create_revision: Revision,
        mod_revision: Revision,
    ) -> KeyValue {
        KeyValue {
            key: Arc::from(key),
            value: LazyValue::from_raw(raw.clone()),
            raw,
            create_revision,
            mod_revision,
        }
    }
}

impl Event {
    /// The same event with cold handles (what the history keeps).
    pub fn cold(&self) -> Event {
        Event {
            kind: self.kind,
            kv: self.kv.cold(),
            prev: self.prev.as_ref().map(KeyValue::cold),
        }
    }
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
    #[error("start the watch-cache history expiry thread")]
    SpawnExpiry {
        #[source]
        source: std::io::Error,
    },
    #[error("the datastore writer has stopped")]
    WriterGone,
    #[error("etcd {endpoints}: {step} failed: {source}")]
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
            meta.insert(
                "resourceVersion".into(),
                Value::String(compact_string(rev.to_string())),
            );
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
    let mut raw = serde_json::to_vec(&value).unwrap_or_default();
    // `Bytes::from` keeps a vector's spare capacity for as long as the object is cached.
    raw.shrink_to_fit();
    let raw = Bytes::from(raw);
    KeyValue {
        key: Arc::from(key),
        value: LazyValue::new(Arc::new(value), raw.clone()),
        raw,
        create_revision,
        mod_revision,
    }
}

/// An object about to be written, compacted by the caller (the writer thread, which
/// serializes all writes, then only sets its resourceVersion in place): the
/// resourceVersion it will get is already a key, so setting it grows no map.
pub fn compact_for_store(mut value: Value) -> Value {
    set_resource_version(&mut value, 0);
    compact_value(value)
}

/// The same object with every map, array and string allocated at its exact size.
///
/// The cache keeps each object parsed for as long as it exists, and a parsed object is
/// mostly maps: a map built by inserting (parsing, defaulting, patching) keeps the spare
/// room of its last growth, ~40 % of a typical pod's parsed size (a pending pod of
/// 2,667 JSON bytes: 26,070 heap bytes parsed, 18,550 compacted). Order and contents
/// are unchanged.
pub fn compact_value(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut out = serde_json::Map::with_capacity(map.len());
            for (k, v) in map {
                out.insert(compact_string(k), compact_value(v));
            }
            Value::Object(out)
        }
        Value::Array(items) => {
            let mut out = Vec::with_capacity(items.len());
            out.extend(items.into_iter().map(compact_value));
            Value::Array(out)
        }
        Value::String(s) => Value::String(compact_string(s)),
        other => other,
    }
}

fn compact_string(mut s: String) -> String {
    s.shrink_to_fit();
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every array and string in `value` has no spare capacity.
    fn assert_exact(value: &Value) {
        match value {
            Value::Object(map) => map.values().for_each(assert_exact),
            Value::Array(items) => {
                assert_eq!(items.capacity(), items.len(), "array {value}");
                items.iter().for_each(assert_exact);
            }
            Value::String(s) => assert_eq!(s.capacity(), s.len(), "string {s:?}"),
            _ => {}
        }
    }

    #[test]
    fn compacted_objects_are_equal_and_serialize_identically() {
        let mut pod = json!({
            "metadata": {"name": "p", "labels": {"app": "web", "tier": "a"}, "managedFields": [
                {"manager": "kubectl", "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}}}}
            ]},
            "spec": {"containers": [{"name": "c", "image": "busybox", "command": ["sleep", "1"]}]},
            "status": {"phase": "Pending", "conditions": [], "nothing": null, "n": 1.5, "ok": true}
        });
        // Grow some maps, arrays and strings the way defaulting and patching do.
        let spec = pod["spec"].as_object_mut().unwrap();
        for i in 0..5 {
            spec.insert(format!("k{i}"), json!(i));
        }
        let containers = pod["spec"]["containers"].as_array_mut().unwrap();
        containers.reserve(10);
        let mut image = String::with_capacity(100);
        image.push_str("busybox:1.36");
        containers[0]["image"] = Value::String(image);

        let compacted = compact_value(pod.clone());
        assert_eq!(compacted, pod);
        assert_eq!(
            serde_json::to_string(&compacted).unwrap(),
            serde_json::to_string(&pod).unwrap(),
            "key order is kept"
        );
        assert_exact(&compacted);
    }

    #[test]
    fn make_kv_caches_a_compact_object_and_its_json() {
        let kv = make_kv(
            "/pods/default/p",
            compact_for_store(json!({"metadata": {"name": "p"}, "a": ["x"]})),
            3,
            7,
        );
        assert_eq!(kv.value["metadata"]["resourceVersion"], "7");
        assert_exact(&kv.value);
        let parsed: Value = serde_json::from_slice(&kv.raw).unwrap();
        assert_eq!(&parsed, &*kv.value);
        assert_eq!((kv.create_revision, kv.mod_revision), (3, 7));
    }
}
