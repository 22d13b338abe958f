//! Node heartbeats other servers hold in memory, merged from the digests in their
//! server leases (`apiserver::peers`) for the node lifecycle controller: a node whose
//! agent renews through another server still shows as heartbeating here.
//!
//! A digest says how long before its write each node last beat through that server.
//! Each new version of a lease is taken in once, on the controller's own clock: the
//! beat is placed at `now - age` (later than the truth by at most the time the digest
//! took to arrive, about one peer period), and a node's last beat only moves forward.

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use chrono::{DateTime, Utc};

/// The latest heartbeat of each node seen through other servers' digests.
#[derive(Default, Debug)]
pub struct PeerHeartbeats {
    /// Server lease name → the resourceVersion last taken in.
    seen: HashMap<String, String>,
    /// Node name → when it last beat, on our clock.
    last_beat: HashMap<String, DateTime<Utc>>,
}

impl PeerHeartbeats {
    /// Takes in the server leases as listed now: `(lease name, resourceVersion, digest)`.
    /// A version already taken in changes nothing (a dead server's digest does not
    /// keep its nodes alive); leases no longer listed are forgotten.
    pub fn observe<'a>(
        &mut self,
        leases: impl IntoIterator<Item = (&'a str, &'a str, BTreeMap<String, Duration>)>,
        now: DateTime<Utc>,
    ) {
        let mut seen = HashMap::new();
        for (lease, rv, digest) in leases {
            if self.seen.get(lease).map(String::as_str) != Some(rv) {
                for (node, age) in digest {
                    let Ok(age) = chrono::Duration::from_std(age) else {
                        continue;
                    };
                    let at = now - age;
                    let last = self.last_beat.entry(node).or_insert(at);
                    *last = (*last).max(at);
                }
            }
            seen.insert(lease.to_string(), rv.to_string());
        }
        self.seen = seen;
    }

    /// When `node` last beat through another server, if it did.
    pub fn last_beat(&self, node: &str) -> Option<DateTime<Utc>> {
        self.last_beat.get(node).copied()
    }

    /// Forgets a deleted node.
    pub fn forget(&mut self, node: &str) {
        self.last_beat.remove(node);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(entries: &[(&str, u64)]) -> BTreeMap<String, Duration> {
        entries
            .iter()
            .map(|(n, s)| (n.to_string(), Duration::from_secs(*s)))
            .collect()
    }

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    #[test]
    fn a_beat_is_placed_at_its_age_before_the_digest_was_seen() {
        let mut peers = PeerHeartbeats::default();
        peers.observe([("s2", "10", digest(&[("n1", 3), ("n2", 8)]))], t(100));
        assert_eq!(peers.last_beat("n1"), Some(t(97)));
        assert_eq!(peers.last_beat("n2"), Some(t(92)));
        assert_eq!(peers.last_beat("n3"), None);
    }

    #[test]
    fn the_same_lease_version_is_taken_in_once() {
        let mut peers = PeerHeartbeats::default();
        peers.observe([("s2", "10", digest(&[("n1", 1)]))], t(100));
        // The server died: its lease keeps saying "1 s ago", which must not refresh n1.
        for later in [110, 140, 200] {
            peers.observe([("s2", "10", digest(&[("n1", 1)]))], t(later));
        }
        assert_eq!(peers.last_beat("n1"), Some(t(99)));
        peers.observe([("s2", "11", digest(&[("n1", 2)]))], t(210));
        assert_eq!(peers.last_beat("n1"), Some(t(208)));
    }

    #[test]
    fn beats_merge_across_servers_and_never_move_back() {
        let mut peers = PeerHeartbeats::default();
        peers.observe(
            [
                ("s1", "5", digest(&[("n1", 20)])),
                ("s2", "6", digest(&[("n1", 2)])),
            ],
            t(100),
        );
        assert_eq!(peers.last_beat("n1"), Some(t(98)));
        // The agent failed over to s1 long ago; s2's newer version has an older beat.
        peers.observe(
            [
                ("s1", "5", digest(&[("n1", 20)])),
                ("s2", "7", digest(&[("n1", 30)])),
            ],
            t(110),
        );
        assert_eq!(peers.last_beat("n1"), Some(t(98)));
        peers.forget("n1");
        assert_eq!(peers.last_beat("n1"), None);
    }

    #[test]
    fn a_lease_that_is_gone_and_back_is_taken_in_again() {
        let mut peers = PeerHeartbeats::default();
        peers.observe([("s2", "10", digest(&[("n1", 0)]))], t(100));
        peers.observe([], t(105));
        peers.observe([("s2", "10", digest(&[("n1", 0)]))], t(120));
        assert_eq!(peers.last_beat("n1"), Some(t(120)));
    }
}
