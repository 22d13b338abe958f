//! Shared shims: which containerd runc v2 shim a new container's task joins.
//!
//! containerd's runc v2 shim serves every container whose spec carries the same
//! [`GROUP_ANNOTATION`] (CRI puts a pod's containers in one shim this way): the task of
//! a container joining a group whose shim runs already costs a short-lived `shim start`
//! and no shim daemon start. A group takes at most `size` containers over its life (so
//! a shim's crash or a stuck shim reaches at most that many), and consecutive
//! containers go to `spread` groups in turn, because a shim creates one container at a
//! time: two pods started together land in different shims.

use std::sync::atomic::{AtomicU64, Ordering};

/// The spec annotation containerd's runc v2 shim groups containers by.
pub const GROUP_ANNOTATION: &str = "io.containerd.runc.v2.group";

/// How many containers share a shim.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShimSharing {
    /// Containers one shim serves over its life; 1: a shim per container.
    pub size: u64,
    /// Groups filled at the same time, taking consecutive containers in turn.
    pub spread: u64,
}

impl ShimSharing {
    /// A shim of its own for every container (containerd's default).
    pub const NONE: ShimSharing = ShimSharing { size: 1, spread: 1 };
}

/// Hands out shim groups to new containers (see the module's documentation).
#[derive(Debug)]
pub struct ShimGroups {
    sharing: ShimSharing,
    /// Names this runtime's groups apart from those of an earlier run of the agent,
    /// whose shims may still serve containers.
    prefix: String,
    assigned: AtomicU64,
}

impl ShimGroups {
    pub fn new(sharing: ShimSharing, prefix: String) -> Self {
        ShimGroups {
            sharing,
            prefix,
            assigned: AtomicU64::new(0),
        }
    }

    /// The group of the next container's shim; `None`: a shim of its own.
    pub fn next(&self) -> Option<String> {
        let ShimSharing { size, spread } = self.sharing;
        if size <= 1 {
            return None;
        }
        let spread = spread.max(1);
        let n = self.assigned.fetch_add(1, Ordering::Relaxed);
        let generation = n / (size * spread);
        let slot = n % spread;
        Some(format!("{}-{generation}-{slot}", self.prefix))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn counts(groups: &ShimGroups, containers: usize) -> HashMap<String, usize> {
        let mut counts = HashMap::new();
        for _ in 0..containers {
            *counts.entry(groups.next().unwrap()).or_default() += 1;
        }
        counts
    }

    #[test]
    fn without_sharing_every_container_has_a_shim_of_its_own() {
        let groups = ShimGroups::new(ShimSharing::NONE, "p".into());
        assert_eq!(groups.next(), None);
        assert_eq!(groups.next(), None);
    }

    #[test]
    fn no_group_takes_more_than_its_size_and_consecutive_containers_alternate() {
        let groups = ShimGroups::new(ShimSharing { size: 4, spread: 2 }, "p".into());
        let first: Vec<String> = (0..3).map(|_| groups.next().unwrap()).collect();
        assert_eq!(first, ["p-0-0", "p-0-1", "p-0-0"]);
        let groups = ShimGroups::new(ShimSharing { size: 4, spread: 2 }, "p".into());
        let counts = counts(&groups, 20);
        assert_eq!(counts.len(), 6, "{counts:?}");
        assert!(counts.values().all(|&n| n <= 4), "{counts:?}");
        assert_eq!(counts["p-2-0"], 2, "{counts:?}");
    }

    #[test]
    fn a_spread_of_zero_is_taken_as_one() {
        let groups = ShimGroups::new(ShimSharing { size: 2, spread: 0 }, "p".into());
        let counts = counts(&groups, 5);
        assert_eq!(counts.len(), 3, "{counts:?}");
        assert!(counts.values().all(|&n| n <= 2), "{counts:?}");
    }
}
