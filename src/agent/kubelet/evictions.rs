//! Evictions the node-pressure eviction manager ordered, waiting for their pod's worker
//! to carry them out (stop the containers, fail the pod with reason `Evicted`).

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::watch;

/// Upstream's pod status reason for a pod the kubelet evicted.
pub const EVICTED_REASON: &str = "Evicted";
/// Reason of the `DisruptionTarget` condition the kubelet sets on pods it ends.
pub const TERMINATION_BY_KUBELET: &str = "TerminationByKubelet";

/// One eviction order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Eviction {
    /// The pod status message (upstream's "The node was low on resource: …").
    pub message: String,
    /// How long the containers get between SIGTERM and SIGKILL.
    pub grace: Duration,
}

/// Orders by pod uid; each worker takes its own on its next sync, which an order starts
/// at once (workers of quiet pods otherwise sleep long).
#[derive(Debug, Default)]
pub struct Evictions {
    orders: Mutex<HashMap<String, Eviction>>,
    /// Counts the orders given: workers watch it to wake up.
    given: watch::Sender<u64>,
}

impl Evictions {
    pub fn order(&self, uid: &str, eviction: Eviction) {
        if let Ok(mut orders) = self.orders.lock() {
            orders.insert(uid.to_string(), eviction);
        }
        self.given.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// Changes whenever an order is given.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.given.subscribe()
    }

    /// The order for pod `uid`, if any (taken: it is carried out once).
    pub fn take(&self, uid: &str) -> Option<Eviction> {
        self.orders.lock().ok()?.remove(uid)
    }

    /// Whether an order for `uid` waits for its worker.
    pub fn is_pending(&self, uid: &str) -> bool {
        self.orders
            .lock()
            .map(|o| o.contains_key(uid))
            .unwrap_or(false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_order_is_taken_once() {
        let e = Evictions::default();
        let order = Eviction {
            message: "low".into(),
            grace: Duration::ZERO,
        };
        e.order("u1", order.clone());
        assert!(e.is_pending("u1"));
        assert_eq!(e.take("u2"), None);
        assert_eq!(e.take("u1"), Some(order));
        assert_eq!(e.take("u1"), None);
        assert!(!e.is_pending("u1"));
    }

    #[test]
    fn an_order_wakes_the_watchers() {
        let e = Evictions::default();
        let mut watcher = e.subscribe();
        assert!(!watcher.has_changed().unwrap());
        e.order(
            "u1",
            Eviction {
                message: "low".into(),
                grace: Duration::ZERO,
            },
        );
        assert!(watcher.has_changed().unwrap());
        watcher.mark_unchanged();
        assert!(!watcher.has_changed().unwrap());
    }
}
