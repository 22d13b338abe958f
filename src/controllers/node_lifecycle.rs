//! Node lifecycle controller: notices nodes that stopped heartbeating, marks them
//! `Ready=Unknown` and taints them unreachable, and evicts their pods once the pods'
//! tolerations run out so that their owners recreate them elsewhere.
//!
//! Heartbeats are Lease renewals in `kube-node-lease` and Node status updates; most of
//! them are kept in memory by the registry (`apiserver::heartbeats`) and never reach a
//! watch, so the controller looks at them every monitor period. As upstream, staleness
//! is measured from when the controller *observed* a heartbeat change on its own clock
//! (never from the timestamps the kubelet wrote), so clock skew and a server restart do
//! not make healthy nodes look dead. With several servers on one datastore, a node
//! renewing through another server is seen through that server's heartbeat digest
//! (`controllers::peer_heartbeats`): a node is silent for the shorter of the two.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tracing::Instrument;

use crate::api::defaults::TAINT_NODE_UNREACHABLE;
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::heartbeats::NODE_LEASE_NAMESPACE;
use crate::apiserver::peers;
use crate::apiserver::registry::{self, DeleteOptions};
use crate::store::KeyValue;

use super::clock::Clock;
use super::events::{Recorder, NORMAL};
use super::framework::{
    object_key, run_workers, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};
use super::peer_heartbeats::PeerHeartbeats;

const NAME: &str = "node-lifecycle-controller";

/// How long a node may stay silent before it is marked `Ready=Unknown` (upstream
/// `--node-monitor-grace-period`, 50 s there). With the agent's 5 s renewals, a link
/// that drops for 20 s looks silent for at most about 27 s (see README "Node failure").
pub const NODE_MONITOR_GRACE: Duration = Duration::from_secs(35);
/// How often nodes are checked (upstream `--node-monitor-period`, 5 s there): reading
/// the in-memory heartbeats of every node costs microseconds.
pub const NODE_MONITOR_PERIOD: Duration = Duration::from_secs(2);
/// How long pods tolerating neither the unreachable nor the not-ready taint stay on a
/// lost node (admission gives every pod such tolerations unless it brings its own).
pub const POD_EVICTION_TIMEOUT: Duration = Duration::from_secs(15);
/// The taint of nodes whose kubelet reports `Ready=False`.
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
const NODE_STATUS_UNKNOWN: &str = "NodeStatusUnknown";
const KUBELET_STOPPED: &str = "Kubelet stopped posting node status.";

#[derive(Clone)]
pub struct NodeLifecycleConfig {
    pub grace_period: Duration,
    pub eviction_timeout: Duration,
    pub monitor_period: Duration,
    pub clock: Arc<dyn Clock>,
}

fn nodes() -> &'static ResourceDef {
    resources::by_plural("", "v1", "nodes").expect("served")
}

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

fn leases() -> &'static ResourceDef {
    resources::by_plural("coordination.k8s.io", "v1", "leases").expect("served")
}

/// What the controller last saw of a node's heartbeats, and when.
struct Health {
    signature: Signature,
    observed: DateTime<Utc>,
}

/// Everything that changes when a node heartbeats, persisted or not.
#[derive(PartialEq, Eq, Clone, Debug)]
struct Signature {
    lease_renew: Value,
    lease_beats: u64,
    ready_heartbeat: Value,
    node_beats: u64,
}

fn signature(client: &dyn Client, node: &KeyValue) -> Signature {
    let name = object::name(&node.value);
    let lease_ns = Some(NODE_LEASE_NAMESPACE);
    let lease_renew = client
        .get(leases(), lease_ns, name)
        .map(|kv| kv.value["spec"]["renewTime"].clone())
        .unwrap_or(Value::Null);
    let ready_heartbeat = ready_condition(&node.value)
        .map(|c| c["lastHeartbeatTime"].clone())
        .unwrap_or(Value::Null);
    Signature {
        lease_renew,
        lease_beats: client.heartbeats(leases(), lease_ns, name),
        ready_heartbeat,
        node_beats: client.heartbeats(nodes(), None, name),
    }
}

fn ready_condition(node: &Value) -> Option<&Value> {
    node["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

/// The lifecycle taint a node should carry for its Ready condition, if any (none
/// before the kubelet first reports).
pub fn taint_for_ready(node: &Value) -> Option<&'static str> {
    match ready_condition(node)?["status"].as_str() {
        Some("True") => None,
        Some("False") => Some(TAINT_NODE_NOT_READY),
        _ => Some(TAINT_NODE_UNREACHABLE),
    }
}

/// The node's taints with the lifecycle taints made to match `wanted` (keeping an
/// existing matching taint and its timeAdded). None when nothing changes.
pub fn reconcile_taints(node: &Value, wanted: Option<&str>, now: &str) -> Option<Vec<Value>> {
    let taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours = |t: &Value| t["key"] == TAINT_NODE_UNREACHABLE || t["key"] == TAINT_NODE_NOT_READY;
    let mut out: Vec<Value> = taints
        .iter()
        .filter(|t| !ours(t) || Some(t["key"].as_str().unwrap_or("")) == wanted)
        .cloned()
        .collect();
    if let Some(key) = wanted {
        for effect in ["NoSchedule", "NoExecute"] {
            if !out.iter().any(|t| t["key"] == key && t["effect"] == effect) {
                out.push(json!({"key": key, "effect": effect, "timeAdded": now}));
            }
        }
    }
    (out != taints).then_some(out)
}

/// The NoSchedule taints upstream's TaintNodesByCondition gives a node for its
/// pressure conditions, by condition type.
pub const CONDITION_TAINTS: [(&str, &str); 3] = [
    (
        "MemoryPressure",
        crate::controllers::daemonset::placement::TAINT_MEMORY_PRESSURE,
    ),
    (
        "DiskPressure",
        crate::controllers::daemonset::placement::TAINT_DISK_PRESSURE,
    ),
    (
        "PIDPressure",
        crate::controllers::daemonset::placement::TAINT_PID_PRESSURE,
    ),
];

/// The condition taints `node` should carry: one for each pressure condition that is
/// True (upstream `TaintNodesByCondition`; Unknown or False carries none).
pub fn condition_taints_for(node: &Value) -> Vec<&'static str> {
    let conditions = node["status"]["conditions"].as_array();
    CONDITION_TAINTS
        .iter()
        .filter(|(kind, _)| {
            conditions
                .into_iter()
                .flatten()
                .any(|c| c["type"] == *kind && c["status"] == "True")
        })
        .map(|(_, taint)| *taint)
        .collect()
}

/// The node's taints with the condition taints made to match `wanted` (NoSchedule,
/// keeping an existing one and its timeAdded). None when nothing changes.
pub fn reconcile_condition_taints(node: &Value, wanted: &[&str], now: &str) -> Option<Vec<Value>> {
    let taints: Vec<Value> = node["spec"]["taints"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let ours = |t: &Value| CONDITION_TAINTS.iter().any(|(_, key)| t["key"] == *key);
    let mut out: Vec<Value> = taints
        .iter()
        .filter(|t| {
            !ours(t)
                || wanted
                    .iter()
                    .any(|w| t["key"] == *w && t["effect"] == "NoSchedule")
        })
        .cloned()
        .collect();
    for key in wanted {
        if !out
            .iter()
            .any(|t| t["key"] == *key && t["effect"] == "NoSchedule")
        {
            out.push(json!({"key": key, "effect": "NoSchedule", "timeAdded": now}));
        }
    }
    (out != taints).then_some(out)
}

/// Both kinds of lifecycle taints reconciled: for the Ready condition (`ready`) and
/// for the pressure conditions. None when nothing changes.
fn all_taints(node: &Value, ready: Option<&str>, now: &str) -> Option<Vec<Value>> {
    let after_ready = reconcile_taints(node, ready, now);
    let mut view = node.clone();
    if let Some(t) = &after_ready {
        view["spec"]["taints"] = json!(t);
    }
    reconcile_condition_taints(&view, &condition_taints_for(node), now).or(after_ready)
}

/// How long `pod` tolerates the NoExecute taint `key`: None = forever.
pub fn toleration_for(pod: &Value, key: &str, default: Duration) -> Option<Duration> {
    let tolerations = pod["spec"]["tolerations"].as_array();
    let matching = tolerations.into_iter().flatten().find(|t| {
        let t_key = t["key"].as_str().unwrap_or("");
        let op = t["operator"].as_str().unwrap_or("Equal");
        let effect = t["effect"].as_str().unwrap_or("");
        let key_ok = t_key == key || (t_key.is_empty() && op == "Exists");
        key_ok && (effect.is_empty() || effect == "NoExecute")
    });
    match matching {
        None => Some(default),
        Some(t) => t["tolerationSeconds"]
            .as_i64()
            .map(|s| Duration::from_secs(s.max(0) as u64)),
    }
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

pub struct NodeLifecycle {
    client: Arc<dyn Client>,
    config: NodeLifecycleConfig,
    recorder: Recorder,
    health: Mutex<HashMap<String, Health>>,
    peers: Mutex<PeerHeartbeats>,
}

/// Runs the controller until aborted: every node is checked when it changes and every
/// monitor period.
pub async fn run(client: Arc<dyn Client>, config: NodeLifecycleConfig) {
    let controller = Arc::new(NodeLifecycle::new(client.clone(), config));
    let queue = WorkQueue::new();
    let informers = [Informer::start(
        client,
        nodes(),
        queue.clone(),
        Box::new(|e| vec![object_key(&e.kv.value)]),
    )];
    wait_for_sync(&informers).await;
    run_workers(NAME, queue, 1, move |name| {
        let controller = controller.clone();
        async move { controller.reconcile(&name).await }
    })
    .await;
}

impl NodeLifecycle {
    pub fn new(client: Arc<dyn Client>, config: NodeLifecycleConfig) -> NodeLifecycle {
        NodeLifecycle {
            recorder: Recorder::new(client.clone(), "node-controller"),
            client,
            config,
            health: Mutex::default(),
            peers: Mutex::default(),
        }
    }

    fn health(&self) -> std::sync::MutexGuard<'_, HashMap<String, Health>> {
        self.health.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// One pass over all nodes (what `run` does per node every monitor period).
    pub async fn monitor(&self) {
        let names: Vec<String> = self
            .client
            .list(nodes(), None, &|_| true)
            .iter()
            .map(|kv| object::name(&kv.value).to_string())
            .collect();
        let gone: Vec<String> = self
            .health()
            .keys()
            .filter(|name| !names.contains(name))
            .cloned()
            .collect();
        for name in gone.iter().chain(&names) {
            let span = tracing::info_span!("reconcile", controller = NAME, object = %name);
            if let Err(e) = self.reconcile(name).instrument(span).await {
                tracing::warn!(controller = NAME, object = %name, error = %e, "reconcile failed");
            }
        }
    }

    /// Checks one node; looks again after the monitor period.
    async fn reconcile(&self, name: &str) -> Reconciled {
        let Ok(node) = self.client.get(nodes(), None, name) else {
            self.health().remove(name);
            self.peers().forget(name);
            self.client.forget_heartbeats(nodes(), None, name);
            self.client
                .forget_heartbeats(leases(), Some(NODE_LEASE_NAMESPACE), name);
            return Ok(None);
        };
        let now = self.config.clock.now();
        let silent_for = self.silent_for(&node, now);
        let next_eviction = self.check_node(name, silent_for, now).await?;
        Ok(Some(next_check(self.config.monitor_period, next_eviction)))
    }

    fn peers(&self) -> std::sync::MutexGuard<'_, PeerHeartbeats> {
        self.peers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Takes in the heartbeat digests of the server leases (none on a lone server).
    fn observe_peers(&self, now: DateTime<Utc>) {
        let leases = self
            .client
            .list(leases(), Some(peers::PEER_NAMESPACE), &|kv| {
                peers::is_server_lease(&kv.value)
            });
        self.peers().observe(
            leases.iter().map(|kv| {
                (
                    object::name(&kv.value),
                    kv.value["metadata"]["resourceVersion"]
                        .as_str()
                        .unwrap_or(""),
                    peers::decode_digest(&kv.value),
                )
            }),
            now,
        );
    }

    /// How long the node's heartbeats have not changed, as observed on our clock,
    /// through this server or (from their digests) through the others.
    fn silent_for(&self, node: &KeyValue, now: DateTime<Utc>) -> Duration {
        let name = object::name(&node.value);
        let sig = signature(&*self.client, node);
        let local = {
            let mut health = self.health();
            let health = health.entry(name.to_string()).or_insert(Health {
                signature: sig.clone(),
                observed: now,
            });
            if health.signature != sig {
                health.signature = sig;
                health.observed = now;
            }
            health.observed
        };
        self.observe_peers(now);
        let last = match self.peers().last_beat(name) {
            Some(remote) => local.max(remote),
            None => local,
        };
        (now - last).to_std().unwrap_or_default()
    }

    /// Marks, taints and evicts as the node's heartbeats say; returns how long until the
    /// next pod's toleration of its taint runs out, if one will.
    async fn check_node(
        &self,
        name: &str,
        silent_for: Duration,
        now: DateTime<Utc>,
    ) -> Result<Option<Duration>, ApiError> {
        let mut node = self.client.get(nodes(), None, name)?;
        let marked_unknown = ready_condition(&node.value).is_some_and(|c| c["status"] == "Unknown");
        if silent_for > self.config.grace_period && !marked_unknown {
            tracing::info!(node = %name, "node stopped heartbeating; marking Ready=Unknown");
            node = self.mark_unknown(name, now).await?;
            self.recorder
                .record(
                    &node.value,
                    NORMAL,
                    "NodeNotReady",
                    &format!("Node {name} status is now: NodeNotReady"),
                )
                .await;
        }
        if ready_condition(&node.value).is_some_and(|c| c["status"] == "Unknown") {
            self.mark_pods_not_ready(name).await;
        }
        let wanted = taint_for_ready(&node.value);
        let stamp = object::timestamp(now);
        if let Some(taints) = all_taints(&node.value, wanted, &stamp) {
            node = self
                .client
                .modify(nodes(), None, name, None, &|cur| {
                    let mut cur = cur.clone();
                    let taints = all_taints(&cur, wanted, &stamp).unwrap_or(taints.clone());
                    cur["spec"]["taints"] = json!(taints);
                    Ok(cur)
                })
                .await?
                .kv;
        }
        Ok(match wanted {
            Some(key) => self.evict_pods(&node.value, key, now).await,
            None => None,
        })
    }

    /// Sets every condition to Unknown as upstream does for a silent kubelet.
    async fn mark_unknown(&self, name: &str, now: DateTime<Utc>) -> Result<KeyValue, ApiError> {
        let stamp = object::timestamp(now);
        let written = self
            .client
            .modify(nodes(), None, name, Some("status"), &|cur| {
                let mut cur = cur.clone();
                if ready_condition(&cur).is_none() {
                    registry::set_condition(&mut cur, "Ready", "Unknown", None, None);
                }
                for c in cur["status"]["conditions"]
                    .as_array_mut()
                    .into_iter()
                    .flatten()
                {
                    if c["status"] != "Unknown" {
                        c["status"] = json!("Unknown");
                        c["lastTransitionTime"] = json!(stamp);
                    }
                    c["reason"] = json!(NODE_STATUS_UNKNOWN);
                    c["message"] = json!(KUBELET_STOPPED);
                }
                Ok(cur)
            })
            .await?;
        Ok(written.kv)
    }

    fn pods_bound_to(&self, node: &str) -> Vec<KeyValue> {
        self.client.list(pods(), None, &|kv: &KeyValue| {
            kv.value["spec"]["nodeName"] == node
        })
    }

    /// Pods of a lost node are not ready any more (services stop sending them traffic).
    async fn mark_pods_not_ready(&self, node: &str) {
        for pod in self.pods_bound_to(node) {
            let ns = object::namespace(&pod.value)
                .unwrap_or("default")
                .to_string();
            let name = object::name(&pod.value).to_string();
            let already = pod.value["status"]["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| c["type"] == "Ready" && c["status"] == "False");
            if already {
                continue;
            }
            let result = self
                .client
                .modify(pods(), Some(&ns), &name, Some("status"), &|cur| {
                    let mut cur = cur.clone();
                    registry::set_condition(&mut cur, "Ready", "False", None, None);
                    Ok(cur)
                })
                .await;
            if let Err(e) = result {
                tracing::debug!(pod = %object_key(&pod.value), error = %e, "mark pod not ready");
            }
        }
    }

    /// Deletes the pods whose toleration of the node's NoExecute taint ran out; on an
    /// unreachable node without grace, since no kubelet will confirm. Returns how long
    /// until the next toleration runs out, if one will.
    async fn evict_pods(&self, node: &Value, taint: &str, now: DateTime<Utc>) -> Option<Duration> {
        let added = node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|t| t["key"] == taint && t["effect"] == "NoExecute")
            .and_then(|t| parse_time(&t["timeAdded"]))?;
        let unreachable = taint == TAINT_NODE_UNREACHABLE;
        let mut next: Option<Duration> = None;
        for pod in self.pods_bound_to(object::name(node)) {
            if object::is_deleting(&pod.value) && !unreachable {
                continue;
            }
            let tolerated = toleration_for(&pod.value, taint, self.config.eviction_timeout);
            match eviction_wait(added, tolerated, now) {
                Eviction::Never => continue,
                Eviction::In(wait) => {
                    next = Some(next.map_or(wait, |n| n.min(wait)));
                    continue;
                }
                Eviction::Now => {}
            }
            let ns = object::namespace(&pod.value)
                .unwrap_or("default")
                .to_string();
            let name = object::name(&pod.value).to_string();
            let opts = DeleteOptions {
                grace_period: unreachable.then_some(0),
                precondition_uid: object::uid(&pod.value).map(str::to_string),
                ..Default::default()
            };
            tracing::info!(pod = %object_key(&pod.value), node = %object::name(node), "evicting pod from lost node");
            self.recorder
                .record(
                    &pod.value,
                    NORMAL,
                    "TaintManagerEviction",
                    &format!("Marking for deletion Pod {ns}/{name}"),
                )
                .await;
            match self.client.delete(pods(), Some(&ns), &name, &opts).await {
                Ok(_) => {}
                Err(e) if e.code == 404 || e.code == 409 => {}
                Err(e) => tracing::warn!(pod = %object_key(&pod.value), error = %e, "evict pod"),
            }
        }
        next
    }
}

/// When a pod on a node tainted at `added` is evicted, given how long it tolerates the
/// taint (`None`: forever).
#[derive(Debug, PartialEq, Eq)]
pub enum Eviction {
    Now,
    In(Duration),
    Never,
}

pub fn eviction_wait(
    added: DateTime<Utc>,
    tolerated: Option<Duration>,
    now: DateTime<Utc>,
) -> Eviction {
    // A toleration too long to add to a date never runs out either.
    let due = tolerated
        .and_then(|t| chrono::Duration::from_std(t).ok())
        .and_then(|t| added.checked_add_signed(t));
    let Some(due) = due else {
        return Eviction::Never;
    };
    match (due - now).to_std() {
        Ok(wait) if !wait.is_zero() => Eviction::In(wait),
        _ => Eviction::Now,
    }
}

/// When to look at a node again: every monitor period, and as soon as a toleration
/// runs out (so a pod is evicted when due, not up to a period later).
pub fn next_check(monitor_period: Duration, next_eviction: Option<Duration>) -> Duration {
    next_eviction.map_or(monitor_period, |due| {
        // A few milliseconds late rather than early: the clock must have passed `due`.
        monitor_period.min(due + Duration::from_millis(5))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{Registry, WriteOptions};

    #[test]
    fn pressure_conditions_become_no_schedule_taints_and_clear_again() {
        let node = json!({
            "spec": {"taints": [{"key": "dedicated", "effect": "NoSchedule", "value": "db"}]},
            "status": {"conditions": [
                {"type": "MemoryPressure", "status": "True"},
                {"type": "DiskPressure", "status": "False"},
                {"type": "PIDPressure", "status": "Unknown"},
                {"type": "Ready", "status": "True"},
            ]},
        });
        assert_eq!(
            condition_taints_for(&node),
            ["node.kubernetes.io/memory-pressure"]
        );
        let taints = all_taints(&node, taint_for_ready(&node), "2024-05-01T10:00:00Z").unwrap();
        assert_eq!(
            taints,
            vec![
                json!({"key": "dedicated", "effect": "NoSchedule", "value": "db"}),
                json!({"key": "node.kubernetes.io/memory-pressure", "effect": "NoSchedule",
                       "timeAdded": "2024-05-01T10:00:00Z"}),
            ]
        );
        let mut tainted = node.clone();
        tainted["spec"]["taints"] = json!(taints);
        assert_eq!(all_taints(&tainted, None, "later"), None, "kept as it is");
        tainted["status"]["conditions"][0]["status"] = json!("False");
        assert_eq!(
            all_taints(&tainted, None, "later").unwrap(),
            vec![json!({"key": "dedicated", "effect": "NoSchedule", "value": "db"})]
        );
        // A node that is not ready and under disk pressure carries both kinds.
        let mut sick = node.clone();
        sick["status"]["conditions"][1]["status"] = json!("True");
        sick["status"]["conditions"][3]["status"] = json!("False");
        let keys: Vec<String> = all_taints(&sick, taint_for_ready(&sick), "t")
            .unwrap()
            .iter()
            .map(|t| {
                format!(
                    "{}:{}",
                    t["key"].as_str().unwrap(),
                    t["effect"].as_str().unwrap()
                )
            })
            .collect();
        assert_eq!(
            keys,
            [
                "dedicated:NoSchedule",
                "node.kubernetes.io/not-ready:NoSchedule",
                "node.kubernetes.io/not-ready:NoExecute",
                "node.kubernetes.io/memory-pressure:NoSchedule",
                "node.kubernetes.io/disk-pressure:NoSchedule",
            ]
        );
    }
    use crate::controllers::clock::FakeClock;
    use crate::controllers::testutil;

    fn ready_status(node: &Value) -> &str {
        ready_condition(node)
            .and_then(|c| c["status"].as_str())
            .unwrap_or("Unknown")
    }

    fn node_body(name: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    }

    fn lease_body(name: &str, renew: &str) -> Value {
        json!({"apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
               "metadata": {"name": name, "namespace": NODE_LEASE_NAMESPACE},
               "spec": {"holderIdentity": name, "leaseDurationSeconds": 40, "renewTime": renew}})
    }

    /// What a kubelet does every 10s: renew its lease from the object it got back last.
    async fn renew(registry: &Registry, last: &Value, clock: &FakeClock) -> Value {
        let mut next = last.clone();
        next["spec"]["renewTime"] = json!(clock.now().format("%Y-%m-%dT%H:%M:%S%.6fZ").to_string());
        registry
            .update(
                leases(),
                Some(NODE_LEASE_NAMESPACE),
                object::name(last),
                next,
                None,
                &WriteOptions::default(),
            )
            .await
            .expect("lease renewal never conflicts")
            .kv
            .value
            .as_ref()
            .clone()
    }

    async fn kubelet_reports_ready(registry: &Registry, name: &str) {
        registry
            .modify(
                nodes(),
                None,
                name,
                Some("status"),
                &WriteOptions::default(),
                &|cur| {
                    let mut cur = cur.clone();
                    registry::set_condition(&mut cur, "Ready", "True", Some("KubeletReady"), None);
                    Ok(cur)
                },
            )
            .await
            .expect("node status");
    }

    fn pod_body(name: &str, node: &str, toleration_seconds: Option<i64>) -> Value {
        let mut pod = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(s) = toleration_seconds {
            pod["spec"]["tolerations"] = json!([{"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": s}]);
        }
        pod
    }

    fn config(clock: Arc<FakeClock>) -> NodeLifecycleConfig {
        NodeLifecycleConfig {
            grace_period: NODE_MONITOR_GRACE,
            eviction_timeout: POD_EVICTION_TIMEOUT,
            monitor_period: NODE_MONITOR_PERIOD,
            clock,
        }
    }

    #[tokio::test(start_paused = true)]
    async fn lease_renewals_are_not_written_but_seen() {
        let registry = testutil::registry().await;
        let clock = Arc::new(FakeClock::new(Utc::now()));
        let opts = WriteOptions::default();
        registry
            .create(nodes(), None, node_body("n1"), &opts)
            .await
            .unwrap();
        kubelet_reports_ready(&registry, "n1").await;
        let mut lease = registry
            .create(
                leases(),
                Some(NODE_LEASE_NAMESPACE),
                lease_body("n1", "2024-01-01T00:00:00.000000Z"),
                &opts,
            )
            .await
            .unwrap()
            .kv
            .value
            .as_ref()
            .clone();
        let controller = NodeLifecycle::new(registry.clone(), config(clock.clone()));
        controller.monitor().await;
        let revision = registry.revision();
        for _ in 0..10 {
            clock.advance(Duration::from_secs(10));
            lease = renew(&registry, &lease, &clock).await;
            controller.monitor().await;
        }
        assert_eq!(
            registry.revision(),
            revision,
            "renewals wrote to the datastore"
        );
        let got = registry
            .get(leases(), Some(NODE_LEASE_NAMESPACE), "n1")
            .unwrap();
        assert_eq!(got.value["spec"]["renewTime"], lease["spec"]["renewTime"]);
        let node = registry.get(nodes(), None, "n1").unwrap();
        assert_eq!(
            ready_status(&node.value),
            "True",
            "100s of renewals keep the node ready"
        );

        // Node status updates that only move heartbeat times are not written either.
        let before = registry.revision();
        registry
            .modify(nodes(), None, "n1", Some("status"), &opts, &|cur| {
                let mut cur = cur.clone();
                cur["status"]["conditions"][0]["lastHeartbeatTime"] = json!("2030-01-01T00:00:00Z");
                Ok(cur)
            })
            .await
            .unwrap();
        assert_eq!(registry.revision(), before);
        // A real change is written, and carries the latest renewTime.
        let mut changed = lease.clone();
        changed["spec"]["leaseDurationSeconds"] = json!(50);
        let written = registry
            .update(
                leases(),
                Some(NODE_LEASE_NAMESPACE),
                "n1",
                changed,
                None,
                &opts,
            )
            .await
            .unwrap();
        assert!(written.kv.mod_revision > revision);
        let stored = registry.get_by_key(&written.kv.key).unwrap();
        assert_eq!(
            stored.value["spec"]["renewTime"],
            lease["spec"]["renewTime"]
        );
    }

    struct LostNode {
        registry: Arc<Registry>,
        clock: Arc<FakeClock>,
        controller: NodeLifecycle,
        lease: Value,
    }

    /// Node `n1`, ready once, with pods tolerating the unreachable taint for 30s
    /// (`short`), the default time (`default`) and forever (`forever`), as the
    /// controller first sees it.
    async fn node_with_pods() -> LostNode {
        let registry = testutil::registry().await;
        let clock = Arc::new(FakeClock::new(Utc::now()));
        let opts = WriteOptions::default();
        registry
            .create(nodes(), None, node_body("n1"), &opts)
            .await
            .unwrap();
        kubelet_reports_ready(&registry, "n1").await;
        let lease = registry
            .create(
                leases(),
                Some(NODE_LEASE_NAMESPACE),
                lease_body("n1", "2024-01-01T00:00:00.000000Z"),
                &opts,
            )
            .await
            .unwrap()
            .kv
            .value
            .as_ref()
            .clone();
        for (name, secs) in [("short", Some(30)), ("default", None), ("forever", None)] {
            let mut body = pod_body(name, "n1", secs);
            if name == "forever" {
                body["spec"]["tolerations"] = json!([{"key": TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"}]);
            }
            registry
                .create(pods(), Some("default"), body, &opts)
                .await
                .unwrap();
        }
        let controller = NodeLifecycle::new(registry.clone(), config(clock.clone()));
        controller.monitor().await;
        LostNode {
            registry,
            clock,
            controller,
            lease,
        }
    }

    /// `node_with_pods`, then silent for 45s: past the 40s grace period.
    async fn lost_node() -> LostNode {
        let lost = node_with_pods().await;
        lost.clock.advance(Duration::from_secs(45));
        lost.controller.monitor().await;
        lost
    }

    fn exists(registry: &Registry, pod: &str) -> bool {
        registry.get(pods(), Some("default"), pod).is_ok()
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_stays_ready_within_the_grace_period() {
        let n = node_with_pods().await;
        n.clock.advance(Duration::from_secs(30));
        n.controller.monitor().await;
        let node = n.registry.get(nodes(), None, "n1").unwrap();
        assert_eq!(ready_status(&node.value), "True");
    }

    /// Another server's lease saying `node` beat through it `age` ago.
    async fn peer_digest(registry: &Registry, node: &str, age: Duration) {
        let addr: std::net::SocketAddr = "192.0.2.2:6443".parse().unwrap();
        let digest = peers::encode_digest(&[(node.to_string(), age)].into());
        let lease = peers::server_lease(addr, "other", &digest, "2026-12-04T16:00:00.000000Z");
        let name = peers::lease_name(addr);
        let opts = WriteOptions::default();
        let ns = Some(peers::PEER_NAMESPACE);
        let namespaces = resources::by_plural("", "v1", "namespaces").unwrap();
        let body = json!({"metadata": {"name": peers::PEER_NAMESPACE}});
        let _exists = registry.create(namespaces, None, body, &opts).await;
        if registry.get(leases(), ns, &name).is_err() {
            registry.create(leases(), ns, lease, &opts).await.unwrap();
        } else {
            registry
                .modify(leases(), ns, &name, None, &opts, &|cur| {
                    let mut cur = cur.clone();
                    cur["metadata"]["annotations"] = lease["metadata"]["annotations"].clone();
                    Ok(cur)
                })
                .await
                .unwrap();
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_heartbeating_through_another_server_stays_ready_until_its_digest_stops() {
        let n = node_with_pods().await;
        // No beat reaches this server: only the other server's digest, every 10 s.
        for i in 0..12 {
            n.clock.advance(Duration::from_secs(10));
            peer_digest(&n.registry, "n1", Duration::from_millis(1000 + i)).await;
            n.controller.monitor().await;
        }
        let node = n.registry.get(nodes(), None, "n1").unwrap();
        assert_eq!(
            ready_status(&node.value),
            "True",
            "120 s of remote beats keep it ready"
        );
        // The other server keeps an old digest (or died): no new version, no new beat.
        n.clock.advance(Duration::from_secs(30));
        n.controller.monitor().await;
        let node = n.registry.get(nodes(), None, "n1").unwrap();
        assert_eq!(
            ready_status(&node.value),
            "True",
            "still within the grace period"
        );
        n.clock.advance(Duration::from_secs(10));
        n.controller.monitor().await;
        let node = n.registry.get(nodes(), None, "n1").unwrap();
        assert_eq!(
            ready_status(&node.value),
            "Unknown",
            "silent for 41 s since its last remote beat"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_silent_node_is_marked_unknown_and_tainted_unreachable() {
        let LostNode { registry, .. } = lost_node().await;
        let node = registry.get(nodes(), None, "n1").unwrap();
        let ready = ready_condition(&node.value).unwrap();
        assert_eq!(ready["status"], "Unknown");
        assert_eq!(ready["reason"], NODE_STATUS_UNKNOWN);
        assert_eq!(ready["message"], KUBELET_STOPPED);
        let taints = node.value["spec"]["taints"].as_array().unwrap();
        for effect in ["NoSchedule", "NoExecute"] {
            assert!(
                taints.iter().any(|t| t["key"] == TAINT_NODE_UNREACHABLE
                    && t["effect"] == effect
                    && t["timeAdded"].is_string()),
                "{effect} taint in {taints:?}"
            );
        }
        let events = resources::by_plural("", "v1", "events").unwrap();
        let recorded = registry.list(events, Some("default"), None, 0, &|kv: &KeyValue| {
            kv.value["reason"] == "NodeNotReady"
        });
        assert_eq!(recorded.items.len(), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn pods_of_a_lost_node_are_marked_not_ready() {
        let LostNode { registry, .. } = lost_node().await;
        let pod = registry.get(pods(), Some("default"), "short").unwrap();
        let not_ready = pod.value["status"]["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .any(|c| c["type"] == "Ready" && c["status"] == "False");
        assert!(not_ready);
    }

    #[tokio::test(start_paused = true)]
    async fn pods_of_a_lost_node_are_evicted_when_their_toleration_runs_out() {
        let LostNode {
            registry,
            clock,
            controller,
            ..
        } = lost_node().await;
        clock.advance(Duration::from_secs(31));
        controller.monitor().await;
        assert!(!exists(&registry, "short"), "30s toleration: force-deleted");
        assert!(exists(&registry, "default"));
        clock.advance(Duration::from_secs(300));
        controller.monitor().await;
        assert!(
            !exists(&registry, "default"),
            "the default toleration ran out"
        );
        assert!(exists(&registry, "forever"), "tolerates forever");
    }

    #[tokio::test(start_paused = true)]
    async fn a_node_that_heartbeats_again_is_ready_and_untainted() {
        let n = lost_node().await;
        renew(&n.registry, &n.lease, &n.clock).await;
        kubelet_reports_ready(&n.registry, "n1").await;
        n.controller.monitor().await;
        let node = n.registry.get(nodes(), None, "n1").unwrap();
        assert_eq!(ready_status(&node.value), "True");
        assert!(node.value["spec"]["taints"]
            .as_array()
            .is_none_or(|t| t.is_empty()));
        n.clock.advance(Duration::from_secs(20));
        n.controller.monitor().await;
        let node = n.registry.get(nodes(), None, "n1").unwrap();
        assert_eq!(
            ready_status(&node.value),
            "True",
            "fresh heartbeat keeps it ready"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn controller_loop_runs_on_its_period() {
        let registry = testutil::registry().await;
        let clock = Arc::new(FakeClock::new(Utc::now()));
        registry
            .create(nodes(), None, node_body("n1"), &WriteOptions::default())
            .await
            .unwrap();
        let mut cfg = config(clock.clone());
        cfg.monitor_period = Duration::from_millis(10);
        let task = tokio::spawn(run(registry.clone(), cfg));
        tokio::time::sleep(Duration::from_millis(50)).await;
        clock.advance(Duration::from_secs(41));
        testutil::wait_for("node marked unknown", Duration::from_secs(2), || {
            registry
                .get(nodes(), None, "n1")
                .is_ok_and(|n| ready_condition(&n.value).is_some_and(|c| c["status"] == "Unknown"))
        })
        .await;
        task.abort();
    }

    #[test]
    fn eviction_comes_when_the_toleration_runs_out_and_the_check_with_it() {
        let added = Utc::now();
        let secs = |s| Some(Duration::from_secs(s));
        assert_eq!(eviction_wait(added, None, added), Eviction::Never);
        assert_eq!(
            eviction_wait(added, Some(Duration::MAX), added),
            Eviction::Never,
            "too long to add to a date"
        );
        assert_eq!(
            eviction_wait(added, secs(15), added + chrono::Duration::seconds(5)),
            Eviction::In(Duration::from_secs(10))
        );
        let due = added + chrono::Duration::seconds(15);
        assert_eq!(eviction_wait(added, secs(15), due), Eviction::Now);
        assert_eq!(eviction_wait(added, secs(0), added), Eviction::Now);
        let period = Duration::from_secs(2);
        assert_eq!(next_check(period, None), period);
        assert_eq!(next_check(period, Some(Duration::from_secs(9))), period);
        assert_eq!(
            next_check(period, Some(Duration::from_millis(300))),
            Duration::from_millis(305),
            "just after the toleration runs out, not a period later"
        );
    }

    /// The default timings (agent renewals every 5 s, this controller's defaults, the
    /// default 15 s unreachable toleration) on a fake clock, checked each second as the
    /// controller's run loop may: a link that drops for 20 s leaves the node Ready and
    /// its pod in place; a node that dies has its pod evicted within the 60 s budget
    /// (minus a few seconds for the replacement to start).
    #[tokio::test(start_paused = true)]
    async fn default_timings_ride_out_a_20s_outage_and_evict_a_dead_nodes_pods_in_time() {
        let renew_every =
            crate::agent::node::renew_interval(crate::agent::node::DEFAULT_LEASE_DURATION);
        assert_eq!(renew_every, Duration::from_secs(5));
        let n = node_with_pods().await;
        let unreachable_default = 15;
        n.registry
            .create(
                pods(),
                Some("default"),
                pod_body("web", "n1", Some(unreachable_default)),
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        let mut lease = n.lease.clone();
        // Seconds since the start; the kubelet renews on multiples of 5 s (and at once
        // when the link returns, as its stuck beat times out and it reconnects).
        let (outage_from, outage_to) = (12, 32);
        let mut was_down = false;
        for second in 1..=120 {
            n.clock.advance(Duration::from_secs(1));
            let down = (outage_from..outage_to).contains(&second);
            if !down && (second % 5 == 0 || was_down) {
                lease = renew(&n.registry, &lease, &n.clock).await;
            }
            was_down = down;
            n.controller.monitor().await;
            let node = n.registry.get(nodes(), None, "n1").unwrap();
            assert_eq!(ready_status(&node.value), "True", "at {second}s");
            assert!(exists(&n.registry, "web"), "evicted at {second}s");
        }
        // Worst case for a dead node: it renewed just before dying.
        renew(&n.registry, &lease, &n.clock).await;
        n.controller.monitor().await;
        let mut evicted_after = None;
        for second in 1..=120 {
            n.clock.advance(Duration::from_secs(1));
            n.controller.monitor().await;
            if !exists(&n.registry, "web") {
                evicted_after = Some(second);
                break;
            }
        }
        let evicted_after = evicted_after.expect("the dead node's pod is evicted");
        let grace = NODE_MONITOR_GRACE.as_secs() + unreachable_default as u64;
        assert!(
            evicted_after > grace && evicted_after <= grace + 2,
            "evicted {evicted_after}s after the last heartbeat"
        );
        assert!(
            evicted_after <= 55,
            "leaves 5 s of the 60 s for the replacement"
        );
    }

    #[test]
    fn toleration_seconds_decide_eviction_time() {
        let default = Duration::from_secs(60);
        let pod = pod_body("p", "n", Some(30));
        assert_eq!(
            toleration_for(&pod, TAINT_NODE_UNREACHABLE, default),
            Some(Duration::from_secs(30))
        );
        let bare = pod_body("p", "n", None);
        assert_eq!(
            toleration_for(&bare, TAINT_NODE_UNREACHABLE, default),
            Some(default)
        );
        let mut all = bare.clone();
        all["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        assert_eq!(toleration_for(&all, TAINT_NODE_UNREACHABLE, default), None);
    }
}
