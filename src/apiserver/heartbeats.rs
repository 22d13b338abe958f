//! Node heartbeats kept in memory: Lease renewals in `kube-node-lease` and Node status
//! updates that change nothing but heartbeat timestamps are acknowledged without being
//! written to the datastore, so an idle cluster writes (almost) nothing to disk.
//!
//! A suppressed heartbeat is remembered as the stored object with the new timestamps
//! and the *stored* resourceVersion: the client uses the returned object for its next
//! update, which therefore never conflicts, and `get` returns the fresh timestamps.
//! Watches and lists see only persisted changes. Heartbeats are per server process: a
//! restarted server starts from the persisted timestamps. With several servers on one
//! datastore, each shares how long ago every node last beat through it in its server
//! Lease (see `apiserver::peers`), from [`Heartbeats::recent`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::api::object;
use crate::store::{make_kv, KeyValue};

/// The namespace of node heartbeat Leases.
pub use crate::api::identity::NODE_LEASE_NAMESPACE;

/// A heartbeat acknowledged but not persisted.
struct Pending {
    /// The object returned to the client (stored object + new timestamps).
    kv: KeyValue,
}

/// In-memory heartbeats, shared by the registry (writer) and the node lifecycle
/// controller (reader).
#[derive(Default)]
pub struct Heartbeats {
    inner: Mutex<Inner>,
}

#[derive(Default)]
struct Inner {
    pending: HashMap<String, Pending>,
    /// Heartbeats acknowledged without a write, per datastore key (monotonic).
    counts: HashMap<String, u64>,
    /// When each node (by object name: a node's Lease and Node share it) last beat
    /// through this server, on the monotonic clock.
    last_beat: HashMap<String, Instant>,
}

/// The object name at the end of a datastore key.
fn name_of_key(key: &str) -> &str {
    key.rsplit('/').next().unwrap_or(key)
}

/// `obj` without the bookkeeping a heartbeat write changes besides its timestamps.
fn without_bookkeeping(obj: &Value) -> Value {
    let mut v = obj.clone();
    if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
        meta.remove("resourceVersion");
        meta.remove("managedFields");
        // The update path takes generation from the stored object, never from the
        // heartbeat (Leases written by older orc versions carry one).
        meta.remove("generation");
    }
    v
}

/// Whether `new` differs from `old` only in heartbeat timestamps (and bookkeeping);
/// `strip_timestamps` removes the kind's heartbeat timestamps (the Node and Lease
/// registry strategies say which). Identical objects are not heartbeats.
pub fn only_heartbeat_changed(old: &Value, new: &Value, strip_timestamps: fn(&mut Value)) -> bool {
    if object::same_content(old, new) {
        return false;
    }
    let (mut old, mut new) = (without_bookkeeping(old), without_bookkeeping(new));
    strip_timestamps(&mut old);
    strip_timestamps(&mut new);
    old == new
}

impl Heartbeats {
    pub fn new() -> Heartbeats {
        Heartbeats::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Records a heartbeat on top of the stored `base`: returns what the client gets
    /// (`new` with the stored revisions).
    pub fn record(&self, base: &KeyValue, mut new: Value) -> KeyValue {
        if let Some(generation) = base.value["metadata"].get("generation") {
            object::meta_mut(&mut new).insert("generation".into(), generation.clone());
        }
        let kv = make_kv(&base.key, new, base.create_revision, base.mod_revision);
        let mut inner = self.lock();
        *inner.counts.entry(base.key.to_string()).or_default() += 1;
        inner
            .last_beat
            .insert(name_of_key(&base.key).to_string(), Instant::now());
        inner
            .pending
            .insert(base.key.to_string(), Pending { kv: kv.clone() });
        kv
    }

    /// The freshest view of a stored object: its pending heartbeat when that was made
    /// on this very revision, else the stored object (a stale heartbeat is dropped).
    pub fn overlay(&self, stored: KeyValue) -> KeyValue {
        let mut inner = self.lock();
        let Some(p) = inner.pending.get(&*stored.key) else {
            return stored;
        };
        if p.kv.mod_revision == stored.mod_revision {
            p.kv.clone()
        } else {
            inner.pending.remove(&*stored.key);
            stored
        }
    }

    /// How many unpersisted heartbeats were acknowledged for `key` so far.
    pub fn count(&self, key: &str) -> u64 {
        self.lock().counts.get(key).copied().unwrap_or(0)
    }

    /// Forgets a deleted object.
    pub fn forget(&self, key: &str) {
        let mut inner = self.lock();
        inner.pending.remove(key);
        inner.counts.remove(key);
        inner.last_beat.remove(name_of_key(key));
    }

    /// How long ago (at `now`) each node last beat through this server, for the nodes
    /// that did within `within`; older entries are dropped (their node talks to
    /// another server, or is gone).
    pub fn recent(&self, now: Instant, within: Duration) -> BTreeMap<String, Duration> {
        let mut inner = self.lock();
        inner
            .last_beat
            .retain(|_, at| now.saturating_duration_since(*at) <= within);
        inner
            .last_beat
            .iter()
            .map(|(name, at)| (name.clone(), now.saturating_duration_since(*at)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(renew: &str) -> Value {
        json!({"kind": "Lease", "metadata": {"name": "n1", "namespace": NODE_LEASE_NAMESPACE, "resourceVersion": "5"},
               "spec": {"holderIdentity": "n1", "renewTime": renew}})
    }

    #[test]
    fn only_stripped_fields_and_bookkeeping_may_change() {
        let strip = |v: &mut Value| {
            v["spec"].as_object_mut().map(|s| s.remove("renewTime"));
        };
        let old = lease("a");
        let mut new = lease("b");
        new["metadata"]["resourceVersion"] = json!("6");
        new["metadata"]["generation"] = json!(2);
        assert!(only_heartbeat_changed(&old, &new, strip));
        assert!(!only_heartbeat_changed(&old, &old, strip));
        new["spec"]["holderIdentity"] = json!("other");
        assert!(!only_heartbeat_changed(&old, &new, strip));
    }

    #[test]
    fn overlay_is_dropped_once_the_object_changes() {
        let hb = Heartbeats::new();
        let base = make_kv("/k", lease("a"), 3, 5);
        let got = hb.record(&base, lease("b"));
        assert_eq!(got.mod_revision, 5);
        assert_eq!(got.value["metadata"]["resourceVersion"], "5");
        assert_eq!(hb.overlay(base.clone()).value["spec"]["renewTime"], "b");
        assert_eq!(hb.count("/k"), 1);
        let newer = make_kv("/k", lease("c"), 3, 9);
        assert_eq!(hb.overlay(newer).value["spec"]["renewTime"], "c");
        assert_eq!(hb.overlay(base).value["spec"]["renewTime"], "a");
    }

    #[test]
    fn recent_beats_are_named_by_node_and_age_out() {
        let hb = Heartbeats::new();
        let base = make_kv("/registry/leases/kube-node-lease/n1", lease("a"), 3, 5);
        hb.record(&base, lease("b"));
        let now = Instant::now() + Duration::from_secs(3);
        let recent = hb.recent(now, Duration::from_secs(60));
        let age = recent.get("n1").copied().expect("n1 beat here");
        assert!(
            age >= Duration::from_secs(3) && age < Duration::from_secs(60),
            "{age:?}"
        );
        assert!(hb
            .recent(now + Duration::from_secs(120), Duration::from_secs(60))
            .is_empty());
        // Dropped for good, not only hidden.
        assert!(hb.recent(now, Duration::from_secs(60)).is_empty());
        hb.record(&base, lease("c"));
        hb.forget(&base.key);
        assert!(hb
            .recent(Instant::now(), Duration::from_secs(60))
            .is_empty());
    }
}
