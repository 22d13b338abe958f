//! NetworkPolicy enforcement on this node, in orc's own nftables table (`ip orc-netpol`
//! by default; other tables are never touched).
//!
//! [`model`] reads pods and policies, [`rules`] compiles them into per-policy and
//! per-pod fragments (pure), [`sync`] turns fragments into nft JSON commands, and
//! [`Enforcer`] keeps the current objects and the fragments last applied: each change
//! rebuilds only the fragments it can affect and applies their diff as one atomic
//! `nft -j` transaction through the proxy's [`Nft`] backend. [`source`] feeds it from
//! the API server.

pub mod model;
pub mod rules;
pub mod source;
pub mod sync;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Map, Value};
use tokio::sync::mpsc;
use tracing::{debug, info_span, warn, Instrument};

use crate::agent::proxy::SyncPacer;
pub use crate::agent::proxy::{Nft, NftCli};
use model::{ObjectKey, PodInfo, Policy};
use rules::{Cluster, Fragment};

pub const DEFAULT_TABLE: &str = "orc-netpol";
/// Wait before retrying a failed sync (the retry is a full resync).
pub const SYNC_RETRY_DELAY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("apply network policy rules to nftables table {table}")]
    Apply {
        table: String,
        source: crate::agent::proxy::Error,
    },
    #[error("remove nftables table {table}")]
    Uninstall {
        table: String,
        source: crate::agent::proxy::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// One change to what policies see, for [`Enforcer::run`].
#[derive(Debug, Clone)]
pub enum Change {
    /// A pod (any node) as stored; one without an address of its own counts as gone.
    Pod(Box<Value>),
    PodDeleted {
        namespace: String,
        name: String,
    },
    Namespace {
        name: String,
        labels: Map<String, Value>,
    },
    NamespaceDeleted {
        name: String,
    },
    Policy(Box<Value>),
    PolicyDeleted {
        namespace: String,
        name: String,
    },
}

/// What a sync did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SyncStats {
    pub full: bool,
    pub commands: usize,
}

/// The fragments in the table, per object.
#[derive(Debug, Default)]
struct Applied {
    policies: BTreeMap<ObjectKey, Fragment>,
    pods: BTreeMap<ObjectKey, Fragment>,
}

/// Keeps every pod with an address, every namespace's labels and every policy, and per
/// policy and per local pod the fragment last applied. The first sync (and the first
/// after a failure) rewrites the whole table; the others rebuild only the fragments of
/// the policies and local pods a change can affect and apply their diff.
pub struct Enforcer<N: Nft> {
    table: String,
    nft: N,
    node: String,
    pods: BTreeMap<ObjectKey, PodInfo>,
    namespaces: BTreeMap<String, Map<String, Value>>,
    policies: BTreeMap<ObjectKey, Policy>,
    applied: Option<Applied>,
    changed_policies: BTreeSet<ObjectKey>,
    changed_pods: BTreeSet<ObjectKey>,
}

impl<N: Nft> Enforcer<N> {
    /// Enforces policies for the pods whose `spec.nodeName` is `node`.
    pub fn new(table: impl Into<String>, nft: N, node: impl Into<String>) -> Self {
        Self {
            table: table.into(),
            nft,
            node: node.into(),
            pods: BTreeMap::new(),
            namespaces: BTreeMap::new(),
            policies: BTreeMap::new(),
            applied: None,
            changed_policies: BTreeSet::new(),
            changed_pods: BTreeSet::new(),
        }
    }

    pub fn table(&self) -> &str {
        &self.table
    }

    fn is_local(&self, pod: &PodInfo) -> bool {
        pod.node.as_deref() == Some(self.node.as_str())
    }

    /// Records `pod` (or its absence) and marks what it can affect: the policies that
    /// have it (before or after) among their peers, and the pod itself when on this node.
    fn set_pod(&mut self, key: ObjectKey, pod: Option<PodInfo>) {
        let old = self.pods.remove(&key);
        if old == pod {
            if let Some(pod) = old {
                self.pods.insert(key, pod);
            }
            return;
        }
        for version in [&old, &pod].into_iter().flatten() {
            for (policy_key, policy) in &self.policies {
                if rules::policy_refers_to(policy, version, &self.namespaces) {
                    self.changed_policies.insert(policy_key.clone());
                }
            }
            if self.is_local(version) {
                self.changed_pods.insert(key.clone());
            }
        }
        if let Some(pod) = pod {
            self.pods.insert(key, pod);
        }
    }

    /// Adds a pod that stands for something served on the node itself (the cluster DNS
    /// as the `kube-system` pod upstream users allow egress to); never isolated.
    pub fn add_stand_in(&mut self, pod: PodInfo) {
        self.set_pod(pod.key(), Some(pod));
    }

    fn set_namespace(&mut self, name: String, labels: Option<Map<String, Value>>) {
        if self.namespaces.get(&name) == labels.as_ref() {
            return;
        }
        match labels {
            Some(labels) => self.namespaces.insert(name, labels),
            None => self.namespaces.remove(&name),
        };
        for (key, policy) in &self.policies {
            if policy.has_namespace_selectors() {
                self.changed_policies.insert(key.clone());
            }
        }
    }

    /// Records `policy` (or its absence): its own sets and the chains of this node's
    /// pods in its namespace are rebuilt.
    fn set_policy(&mut self, key: ObjectKey, policy: Option<Policy>) {
        self.changed_policies.insert(key.clone());
        for (pod_key, pod) in &self.pods {
            if pod.namespace == key.0 && self.is_local(pod) {
                self.changed_pods.insert(pod_key.clone());
            }
        }
        match policy {
            Some(policy) => self.policies.insert(key, policy),
            None => self.policies.remove(&key),
        };
    }

    pub fn apply_change(&mut self, change: Change) {
        match change {
            Change::Pod(object) => {
                let key = object_key(&object);
                self.set_pod(key, PodInfo::from_object(&object));
            }
            Change::PodDeleted { namespace, name } => self.set_pod((namespace, name), None),
            Change::Namespace { name, labels } => self.set_namespace(name, Some(labels)),
            Change::NamespaceDeleted { name } => self.set_namespace(name, None),
            Change::Policy(object) => {
                let policy = Policy::from_object(&object);
                self.set_policy(policy.key(), Some(policy));
            }
            Change::PolicyDeleted { namespace, name } => self.set_policy((namespace, name), None),
        }
    }

    /// Forgets the applied state: the next [`sync`](Self::sync) rewrites the table.
    pub fn force_full_sync(&mut self) {
        self.applied = None;
    }

    fn cluster(&self) -> Cluster<'_> {
        Cluster {
            pods: &self.pods,
            namespaces: &self.namespaces,
        }
    }

    fn policy_fragment(&self, key: &ObjectKey) -> Fragment {
        self.policies
            .get(key)
            .map(|p| rules::policy_fragment(p, &self.cluster()))
            .unwrap_or_default()
    }

    fn pod_fragment(&self, key: &ObjectKey) -> Fragment {
        match self.pods.get(key) {
            Some(pod) if self.is_local(pod) => rules::pod_fragment(
                pod,
                self.policies
                    .range((pod.namespace.clone(), String::new())..)
                    .take_while(|((ns, _), _)| *ns == pod.namespace)
                    .map(|(_, p)| p),
            ),
            _ => Fragment::default(),
        }
    }

    /// Brings the table in line with the current objects in one nft transaction.
    /// Blocking. On failure the next sync rewrites the table.
    pub fn sync(&mut self) -> Result<SyncStats> {
        let changed_policies = std::mem::take(&mut self.changed_policies);
        let changed_pods = std::mem::take(&mut self.changed_pods);
        let (full, commands, applied) = match self.applied.take() {
            Some(mut applied) => {
                let (mut old, mut new) = (Fragment::default(), Fragment::default());
                for key in changed_policies {
                    let fragment = self.policy_fragment(&key);
                    if let Some(before) = applied.policies.remove(&key) {
                        old.merge(&before);
                    }
                    new.merge(&fragment);
                    if !fragment.is_empty() {
                        applied.policies.insert(key, fragment);
                    }
                }
                for key in changed_pods {
                    let fragment = self.pod_fragment(&key);
                    if let Some(before) = applied.pods.remove(&key) {
                        old.merge(&before);
                    }
                    new.merge(&fragment);
                    if !fragment.is_empty() {
                        applied.pods.insert(key, fragment);
                    }
                }
                (false, sync::diff(&self.table, &old, &new), applied)
            }
            None => {
                let mut applied = Applied::default();
                let mut desired = Fragment::default();
                for key in self.policies.keys() {
                    let fragment = self.policy_fragment(key);
                    desired.merge(&fragment);
                    applied.policies.insert(key.clone(), fragment);
                }
                for (key, pod) in &self.pods {
                    if self.is_local(pod) {
                        let fragment = self.pod_fragment(key);
                        if !fragment.is_empty() {
                            desired.merge(&fragment);
                            applied.pods.insert(key.clone(), fragment);
                        }
                    }
                }
                (true, sync::full_sync(&self.table, &desired), applied)
            }
        };
        if !commands.is_empty() {
            // `applied` stays `None`: the next sync rewrites the table.
            self.nft.apply(&commands).map_err(|source| Error::Apply {
                table: self.table.clone(),
                source,
            })?;
        }
        self.applied = Some(applied);
        Ok(SyncStats {
            full,
            commands: commands.len(),
        })
    }

    /// Deletes the whole table (a missing table is fine).
    pub fn uninstall(&mut self) -> Result<()> {
        self.applied = None;
        self.nft
            .apply(&sync::uninstall(&self.table))
            .map_err(|source| Error::Uninstall {
                table: self.table.clone(),
                source,
            })
    }
}

fn object_key(object: &Value) -> ObjectKey {
    (
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string(),
        object["metadata"]["name"]
            .as_str()
            .unwrap_or("")
            .to_string(),
    )
}

impl<N: Nft + 'static> Enforcer<N> {
    /// Applies changes as they arrive, paced as the service proxy's syncs are
    /// ([`SyncPacer`]: at once after a quiet spell, else those arriving meanwhile
    /// together), until `changes` closes. nft runs on a blocking thread; a failed sync
    /// is logged and retried as a full one.
    ///
    /// Starts with a full sync: load the complete initial objects with
    /// [`apply_change`](Self::apply_change) first, or pods stay unprotected (or
    /// isolated) until their next change.
    pub async fn run(self, mut changes: mpsc::Receiver<Change>) {
        let enforcer = Arc::new(Mutex::new(self));
        let table = enforcer.lock().expect("enforcer lock").table.clone();
        let mut dirty = true;
        let mut pacer = SyncPacer::default();
        loop {
            if !dirty {
                let Some(change) = changes.recv().await else {
                    return;
                };
                enforcer.lock().expect("enforcer lock").apply_change(change);
            }
            let wait = pacer.delay(tokio::time::Instant::now());
            if !wait.is_zero() {
                tokio::time::sleep(wait).await;
            }
            let began = tokio::time::Instant::now();
            let closed = crate::agent::proxy::drain_changes(&mut changes, |change| {
                enforcer.lock().expect("enforcer lock").apply_change(change)
            });
            let worker = Arc::clone(&enforcer);
            let span = info_span!("netpol_sync", table = %table);
            let result = tokio::task::spawn_blocking(move || {
                let started = std::time::Instant::now();
                let stats = worker.lock().expect("enforcer lock").sync();
                (stats, started.elapsed())
            })
            .instrument(span)
            .await;
            pacer.record(began, began.elapsed());
            match result {
                Ok((Ok(stats), took)) => {
                    debug!(%table, full = stats.full, commands = stats.commands,
                           took_ms = took.as_millis() as u64, "network policies synced");
                    dirty = false;
                }
                Ok((Err(e), _)) => {
                    warn!(%table, error = %crate::agent::error_chain(&e), "network policy sync failed; retrying with a full sync");
                    enforcer.lock().expect("enforcer lock").force_full_sync();
                    dirty = true;
                    tokio::time::sleep(SYNC_RETRY_DELAY).await;
                }
                Err(e) => {
                    warn!(%table, error = %e, "network policy sync thread failed");
                    dirty = true;
                    tokio::time::sleep(SYNC_RETRY_DELAY).await;
                }
            }
            if closed {
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::proxy::FakeNft;
    use serde_json::json;

    fn pod(ns: &str, name: &str, ip: &str, app: &str, node: &str) -> Change {
        Change::Pod(Box::new(json!({
            "metadata": {"namespace": ns, "name": name, "labels": {"app": app}},
            "spec": {"nodeName": node, "containers": [{"name": "c"}]},
            "status": {"podIP": ip, "phase": "Running"}})))
    }

    fn policy(ns: &str, name: &str, spec: Value) -> Change {
        let mut object = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
        crate::api::defaults::apply_defaults("NetworkPolicy", &mut object);
        Change::Policy(Box::new(object))
    }

    fn last(nft: &FakeNft) -> String {
        serde_json::to_string(nft.applied.lock().unwrap().last().unwrap()).unwrap()
    }

    fn enforcer() -> (Enforcer<FakeNft>, FakeNft) {
        let nft = FakeNft::default();
        let mut e = Enforcer::new("orc-netpol-test", nft.clone(), "n1");
        e.apply_change(pod("shop", "db", "10.42.0.2", "db", "n1"));
        e.apply_change(pod("shop", "web", "10.42.0.3", "web", "n1"));
        e.apply_change(pod("shop", "far", "10.42.1.3", "web", "n2"));
        e.apply_change(policy(
            "shop",
            "db",
            json!({"podSelector": {"matchLabels": {"app": "db"}},
                   "ingress": [{"from": [{"podSelector": {"matchLabels": {"app": "web"}}}]}]}),
        ));
        (e, nft)
    }

    #[test]
    fn first_sync_is_full_then_only_diffs() {
        let (mut e, nft) = enforcer();
        assert!(e.sync().unwrap().full);
        let text = last(&nft);
        assert!(
            text.contains("10.42.0.3") && text.contains("10.42.1.3"),
            "{text}"
        );
        let stats = e.sync().unwrap();
        assert_eq!(
            stats,
            SyncStats {
                full: false,
                commands: 0
            }
        );
        assert_eq!(
            nft.applied.lock().unwrap().len(),
            1,
            "an empty diff applies nothing"
        );
    }

    #[test]
    fn a_new_peer_pod_on_another_node_adds_one_set_element() {
        let (mut e, nft) = enforcer();
        e.sync().unwrap();
        e.apply_change(pod("shop", "web-2", "10.42.2.7", "web", "n3"));
        let stats = e.sync().unwrap();
        assert_eq!(stats.commands, 1, "{}", last(&nft));
        assert!(last(&nft).contains("10.42.2.7"));
        // A pod no policy refers to changes nothing.
        e.apply_change(pod("shop", "other", "10.42.2.8", "batch", "n3"));
        assert_eq!(e.sync().unwrap().commands, 0);
    }

    #[test]
    fn relabelling_a_local_pod_isolates_it() {
        let (mut e, nft) = enforcer();
        e.sync().unwrap();
        e.apply_change(pod("shop", "web", "10.42.0.3", "db", "n1"));
        e.sync().unwrap();
        let text = last(&nft);
        assert!(text.contains("shop/web"), "web gets a chain: {text}");
        assert!(
            text.contains("\"delete\""),
            "and leaves the peer set: {text}"
        );
    }

    #[test]
    fn deleting_the_policy_removes_its_chains_and_sets() {
        let (mut e, nft) = enforcer();
        e.sync().unwrap();
        e.apply_change(Change::PolicyDeleted {
            namespace: "shop".into(),
            name: "db".into(),
        });
        e.sync().unwrap();
        let text = last(&nft);
        assert!(
            text.contains("\"set\"") && text.contains("\"chain\""),
            "{text}"
        );
        assert!(!text.contains("\"add\""), "{text}");
    }

    #[test]
    fn namespace_labels_matter_only_to_namespace_selectors() {
        let (mut e, _) = enforcer();
        e.sync().unwrap();
        e.apply_change(Change::Namespace {
            name: "shop".into(),
            labels: json!({"team": "x"}).as_object().unwrap().clone(),
        });
        assert!(e.changed_policies.is_empty());
        e.apply_change(policy(
            "shop",
            "from-ops",
            json!({"ingress": [{"from": [{"namespaceSelector": {"matchLabels": {"team": "ops"}}}]}]}),
        ));
        e.sync().unwrap();
        e.apply_change(Change::Namespace {
            name: "shop".into(),
            labels: json!({"team": "ops"}).as_object().unwrap().clone(),
        });
        assert_eq!(e.changed_policies.len(), 1);
    }

    #[test]
    fn failed_sync_is_followed_by_a_full_one() {
        let (mut e, nft) = enforcer();
        e.sync().unwrap();
        e.apply_change(pod("shop", "web-2", "10.42.2.7", "web", "n3"));
        nft.fail_next
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(e.sync().is_err());
        assert!(e.sync().unwrap().full);
        assert!(last(&nft).contains("10.42.2.7"));
    }

    #[tokio::test(start_paused = true)]
    async fn run_batches_changes_that_arrive_together() {
        let (e, nft) = enforcer();
        let (tx, rx) = mpsc::channel(16);
        let task = tokio::spawn(e.run(rx));
        tokio::time::sleep(Duration::from_secs(1)).await;
        let initial = nft.applied.lock().unwrap().len();
        tx.send(pod("shop", "a", "10.42.3.1", "web", "n3"))
            .await
            .unwrap();
        tx.send(pod("shop", "b", "10.42.3.2", "web", "n3"))
            .await
            .unwrap();
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("enforcer run loop deadlocked")
            .unwrap();
        assert_eq!(initial, 1, "startup full sync");
        assert_eq!(
            nft.applied.lock().unwrap().len(),
            2,
            "both changes in one transaction"
        );
    }
}
