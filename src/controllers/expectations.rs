//! Controller expectations: the pod creations and deletions a controller has issued but
//! not yet seen come back through its watch, so that it never acts twice on one gap
//! (upstream `UIDTrackingControllerExpectations`).
//!
//! A controller records what it is about to do before doing it, lowers the count when a
//! write fails (it will never be observed), and the informer lowers it as watch events
//! arrive. While expectations are pending the controller only refreshes status.

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Expectations older than this are assumed lost (a missed watch event) and ignored.
pub const EXPECTATIONS_TIMEOUT: Duration = Duration::from_secs(5 * 60);

#[derive(Debug)]
struct Pending {
    /// Creations still to be observed (may go negative when unrelated adds arrive).
    adds: i64,
    /// Keys (`namespace/name`) of pods whose deletion is still to be observed.
    deletes: HashSet<String>,
    since: Instant,
}

impl Pending {
    fn fulfilled(&self) -> bool {
        self.adds <= 0 && self.deletes.is_empty()
    }
}

/// Outstanding creates/deletes per controller key.
#[derive(Debug, Default)]
pub struct Expectations {
    inner: Mutex<HashMap<String, Pending>>,
}

impl Expectations {
    fn with<R>(&self, f: impl FnOnce(&mut HashMap<String, Pending>) -> R) -> R {
        f(&mut self.inner.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether the controller may act on `key`: nothing is in flight, or what is in
    /// flight has been pending longer than [`EXPECTATIONS_TIMEOUT`].
    pub fn satisfied(&self, key: &str) -> bool {
        self.with(|m| match m.get(key) {
            None => true,
            Some(p) => p.fulfilled() || p.since.elapsed() > EXPECTATIONS_TIMEOUT,
        })
    }

    /// Records `count` creations about to be issued for `key`.
    pub fn expect_creations(&self, key: &str, count: usize) {
        self.with(|m| {
            m.insert(
                key.to_string(),
                Pending {
                    adds: count as i64,
                    deletes: HashSet::new(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// Records the deletions about to be issued for `key` (pods as `namespace/name`).
    pub fn expect_deletions(&self, key: &str, pods: impl IntoIterator<Item = String>) {
        self.with(|m| {
            m.insert(
                key.to_string(),
                Pending {
                    adds: 0,
                    deletes: pods.into_iter().collect(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// Records `creations` and the `deletions` (pods as `namespace/name`) about to be
    /// issued together for `key` (upstream `SetExpectations`).
    pub fn expect(&self, key: &str, creations: usize, deletions: impl IntoIterator<Item = String>) {
        self.with(|m| {
            m.insert(
                key.to_string(),
                Pending {
                    adds: creations as i64,
                    deletes: deletions.into_iter().collect(),
                    since: Instant::now(),
                },
            );
        });
    }

    /// A pod created for `key` was observed, or its creation failed.
    pub fn creation_observed(&self, key: &str) {
        self.with(|m| {
            if let Some(p) = m.get_mut(key) {
                p.adds -= 1;
            }
        });
    }

    /// The deletion of `pod` for `key` was observed, or the delete failed.
    pub fn deletion_observed(&self, key: &str, pod: &str) {
        self.with(|m| {
            if let Some(p) = m.get_mut(key) {
                p.deletes.remove(pod);
            }
        });
    }

    /// Forgets `key` (its controller is gone).
    pub fn forget(&self, key: &str) {
        self.with(|m| {
            m.remove(key);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn creations_must_all_be_observed() {
        let e = Expectations::default();
        assert!(e.satisfied("ns/rc"));
        e.expect_creations("ns/rc", 2);
        assert!(!e.satisfied("ns/rc"));
        e.creation_observed("ns/rc");
        assert!(!e.satisfied("ns/rc"));
        e.creation_observed("ns/rc");
        assert!(e.satisfied("ns/rc"));
    }

    #[test]
    fn deletions_are_tracked_by_pod() {
        let e = Expectations::default();
        e.expect_deletions("ns/rc", ["ns/a".to_string(), "ns/b".to_string()]);
        e.deletion_observed("ns/rc", "ns/a");
        e.deletion_observed("ns/rc", "ns/a");
        assert!(!e.satisfied("ns/rc"));
        e.deletion_observed("ns/rc", "ns/b");
        assert!(e.satisfied("ns/rc"));
        e.forget("ns/rc");
        assert!(e.satisfied("ns/rc"));
    }
}
