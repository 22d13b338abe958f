//! Scheduler: binds each unscheduled pod of `default-scheduler` to a node through the
//! pods/binding subresource. Pods that fit nowhere stay Pending with a
//! `PodScheduled=False/Unschedulable` condition and a `FailedScheduling` event, and are
//! retried (with back-off) when nodes or pods change. A pod that fits nowhere may
//! preempt lower-priority pods ([`preemption`]): they get a `DisruptionTarget`
//! condition and are deleted, the pod is nominated to their node
//! (`status.nominatedNodeName`) and scheduled once they are gone; meanwhile pods of no
//! higher priority do not take the room it waits for.
//!
//! The decisions run on a cache ([`Cache`]) of nodes and of what is placed on each node,
//! kept up to date from watch events (never by rescanning pods). A pod is *assumed* on
//! its node as soon as it is chosen, so binds can be in flight concurrently without
//! over-committing a node; a failed bind forgets the assumption.

pub mod filters;
pub mod info;
pub mod pod_affinity;
pub mod preemption;
mod rules;
pub mod scores;
pub mod spread;
pub mod topology_spread;
pub mod volumes;

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;
use tracing::Instrument;

use crate::api::object;
use crate::api::resources;
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::apiserver::registry::set_condition;
use crate::controllers::events::{Recorder, NORMAL, WARNING};
use crate::controllers::framework::{object_key, split_key, Client};
use crate::metrics::{ScheduleResult, SchedulerMetrics};
use crate::store::{EventType, KeyValue, LazyValue};

use filters::{can_schedule, fit_error, Reason};
use info::{NodeInfo, NodeUsage, PodInfo, DEFAULT_SCHEDULER_NAME};
use pod_affinity::NamespaceLabels;
use preemption::Budget;
use scores::{raw_scores, total_scores, RawScores};
use spread::{default_spread_raw, zone_counts, SpreadGroups, WorkloadKind, Workloads, ZONE_KEY};
use volumes::{choices_on, pod_volumes, ClaimChoice, PodVolumes, StorageView};

/// Writes (binds, unschedulable reports) in flight at once; the datastore group-commits
/// concurrent writes, so this is what buys throughput.
pub const MAX_IN_FLIGHT: usize = 64;
/// First retry delay of a pod that did not fit; doubles per failed attempt.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);
pub const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// Unschedulable pods are retried at least this often, even without a cluster change
/// (upstream `podMaxInUnschedulablePodsDuration` is 5 minutes).
pub const UNSCHEDULABLE_FLUSH: Duration = Duration::from_secs(60);
/// With fewer nodes than this, every node is considered for every pod; with more, the
/// search stops after this many (or upstream's adaptive percentage of) feasible nodes.
pub const MIN_FEASIBLE_NODES_TO_FIND: usize = 100;

/// Where an unbound pod is in the scheduling cycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    /// In the active queue.
    Queued,
    /// Waiting for its back-off to expire.
    Backoff,
    /// Fits nowhere; waits for a cluster change.
    Unschedulable,
    /// Assumed on a node; the bind is in flight or the watch has not shown it bound yet.
    Binding,
}

struct Pending {
    /// Without its parsed form: 10,000 unschedulable pods would otherwise each hold
    /// ~18 KB parsed. Each attempt parses it (or shares a form someone holds).
    obj: LazyValue,
    /// [`fit_fingerprint`] of `obj`: tells whether an update can change where the pod
    /// fits without parsing `obj` again.
    fit: u64,
    stage: Stage,
    attempts: u32,
    last_attempt: Option<Instant>,
}

/// A pod counted on a node: bound (seen so in the watch) or assumed (bind in flight).
struct Placed {
    node: String,
    info: PodInfo,
    obj: Arc<Value>,
    assumed: bool,
}

#[derive(Default)]
struct NodeEntry {
    /// `None` when the node is unknown (deleted, or not seen yet) but pods are bound to it.
    info: Option<NodeInfo>,
    usage: NodeUsage,
}

/// Pods to evict for a preemption: their keys and objects.
pub type Victims = Vec<(String, Arc<Value>)>;

/// What the scheduler wants done; the controller loop performs it.
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    Bind {
        key: String,
        pod: Arc<Value>,
        node: String,
        /// What to write for the pod's unbound claims before the pod is bound.
        volumes: Vec<ClaimChoice>,
    },
    ReportUnschedulable {
        key: String,
        pod: Arc<Value>,
        message: String,
    },
    /// Evict `victims` (keys and pods) so that the pod fits on `node`.
    Preempt {
        key: String,
        pod: Arc<Value>,
        node: String,
        victims: Victims,
        message: String,
    },
}

impl Action {
    /// The pod the action is about.
    pub fn key(&self) -> &str {
        match self {
            Action::Bind { key, .. }
            | Action::ReportUnschedulable { key, .. }
            | Action::Preempt { key, .. } => key,
        }
    }
}

/// The outcome of an [`Action`], fed back to the cache.
#[derive(Debug)]
pub enum Outcome {
    Bound {
        key: String,
    },
    BindFailed {
        key: String,
        node: String,
        error: ApiError,
    },
    Reported {
        key: String,
    },
}

/// The scheduler's view of the cluster and its queue of pods to place. No I/O: events
/// go in, [`Action`]s come out.
#[derive(Default)]
pub struct Cache {
    nodes: Vec<NodeEntry>,
    node_index: HashMap<String, usize>,
    /// Nodes with `info` (the ones pods can go to).
    known_nodes: usize,
    placed: HashMap<String, Placed>,
    pending: HashMap<String, Pending>,
    active: VecDeque<String>,
    backoff: BinaryHeap<Reverse<(Instant, String)>>,
    unschedulable: HashSet<String>,
    /// Selectors of Services and of the controllers pods are spread by.
    workloads: Workloads,
    /// Placed pods per node of each selector some pod was spread by.
    groups: SpreadGroups,
    /// PodDisruptionBudgets by key, for choosing preemption victims.
    budgets: HashMap<String, Budget>,
    /// Where the next search starts, so successive pods look at different nodes first.
    next_start: usize,
    /// Claims, volumes, classes, and the claim choices of binds in flight.
    storage: StorageView,
    /// The claims each pod's bind in flight made choices for.
    assumed_by_pod: HashMap<String, Vec<String>>,
    /// Pods that preempted others, by key: the node they wait for and what they need.
    nominated: HashMap<String, (String, PodInfo)>,
    /// Placed pods with pod affinity or anti-affinity terms of their own (the only
    /// placed pods InterPodAffinity reads for pods without terms).
    with_affinity: HashSet<String>,
    /// Namespace labels, for the terms' `namespaceSelector`.
    namespaces: NamespaceLabels,
}

fn is_terminal(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded") | Some("Failed")
    )
}

fn is_ours(pod: &Value) -> bool {
    matches!(
        pod["spec"]["schedulerName"].as_str(),
        None | Some("") | Some(DEFAULT_SCHEDULER_NAME)
    )
}

/// A hash of what decides where a pod fits (its spec and labels), equal for equal
/// values (maps in any order, as `Value`'s equality): comparing it spares parsing the
/// pod's previous version, which the scheduler keeps only as JSON.
fn fit_fingerprint(pod: &Value) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    fn feed(v: &Value, h: &mut DefaultHasher) {
        match v {
            Value::Null => 0u8.hash(h),
            Value::Bool(b) => (1u8, b).hash(h),
            Value::Number(n) => (2u8, n.to_string()).hash(h),
            Value::String(s) => (3u8, s).hash(h),
            Value::Array(items) => {
                (4u8, items.len()).hash(h);
                items.iter().for_each(|v| feed(v, h));
            }
            Value::Object(map) => {
                // Members in any order: the sum of each member's own hash.
                let members = map.iter().fold(0u64, |sum, (k, v)| {
                    let mut m = DefaultHasher::new();
                    k.hash(&mut m);
                    feed(v, &mut m);
                    sum.wrapping_add(m.finish())
                });
                (5u8, map.len(), members).hash(h);
            }
        }
    }
    let mut h = DefaultHasher::new();
    feed(&pod["spec"], &mut h);
    feed(&pod["metadata"]["labels"], &mut h);
    h.finish()
}

fn backoff_for(attempts: u32) -> Duration {
    let doublings = attempts.saturating_sub(1).min(16);
    (INITIAL_BACKOFF * 2u32.pow(doublings)).min(MAX_BACKOFF)
}

/// How many feasible nodes are enough to stop looking (upstream
/// `numFeasibleNodesToFind` with the adaptive percentage).
pub fn feasible_nodes_to_find(total: usize) -> usize {
    if total < MIN_FEASIBLE_NODES_TO_FIND {
        return total;
    }
    let percent = 50usize.saturating_sub(total / 125).max(5);
    (total * percent / 100).max(MIN_FEASIBLE_NODES_TO_FIND)
}

impl Cache {
    pub fn new() -> Cache {
        Cache::default()
    }

    /// Rebuilds everything from fresh lists, keeping the assumptions of binds still in
    /// flight for pods the lists show unbound.
    pub fn resync(&mut self, nodes: &[KeyValue], services: &[KeyValue], pods: &[KeyValue]) {
        let assumed: Vec<(String, Placed)> =
            self.placed.drain().filter(|(_, p)| p.assumed).collect();
        let next_start = self.next_start;
        let storage = std::mem::take(&mut self.storage);
        let assumed_by_pod = std::mem::take(&mut self.assumed_by_pod);
        let nominated = std::mem::take(&mut self.nominated);
        *self = Cache {
            next_start,
            storage,
            assumed_by_pod,
            nominated,
            ..Cache::default()
        };
        for kv in nodes {
            self.on_node(EventType::Added, kv.value.get());
        }
        for kv in services {
            self.on_service(EventType::Added, kv.value.get());
        }
        for kv in pods {
            self.on_pod(EventType::Added, kv.value.clone());
        }
        for (key, placed) in assumed {
            if let Some(p) = self.pending.get_mut(&key) {
                p.stage = Stage::Binding;
                let i = self.entry_index(&placed.node);
                self.nodes[i].usage.add(&placed.info);
                let ns = object::namespace(&placed.obj).unwrap_or("");
                self.groups
                    .on_placed(ns, object::labels(&placed.obj), i, true);
                if placed.info.pod_affinity.is_some() {
                    self.with_affinity.insert(key.clone());
                }
                self.placed.insert(key, placed);
            }
        }
    }

    fn entry_index(&mut self, node: &str) -> usize {
        if let Some(&i) = self.node_index.get(node) {
            return i;
        }
        self.nodes.push(NodeEntry::default());
        let i = self.nodes.len() - 1;
        self.node_index.insert(node.to_string(), i);
        i
    }

    pub fn on_node(&mut self, kind: EventType, node: Arc<Value>) {
        let name = object::name(&node);
        if kind == EventType::Deleted {
            if let Some(&i) = self.node_index.get(name) {
                if self.nodes[i].info.take().is_some() {
                    self.known_nodes -= 1;
                }
            }
            return;
        }
        let info = NodeInfo::from_json(&node);
        let i = self.entry_index(name);
        let entry = &mut self.nodes[i];
        if entry.info.as_ref() == Some(&info) {
            return;
        }
        if entry.info.is_none() {
            self.known_nodes += 1;
        }
        entry.info = Some(info);
        self.cluster_changed(Instant::now());
    }

    /// Replaces the claims, volumes and classes with fresh lists (after `resync`).
    pub fn resync_storage(
        &mut self,
        claims: &[KeyValue],
        volumes: &[KeyValue],
        classes: &[KeyValue],
    ) {
        let by = |kvs: &[KeyValue]| -> HashMap<String, Arc<Value>> {
            kvs.iter()
                .map(|kv| (object_key(&kv.value), kv.value.get()))
                .collect()
        };
        self.storage.claims = by(claims);
        self.storage.volumes = by(volumes);
        self.storage.classes = by(classes);
    }

    /// A claim, volume or class changed: pods waiting on storage may fit now.
    pub fn on_storage(&mut self, plural: &str, kind: EventType, obj: Arc<Value>) {
        let key = object_key(&obj);
        let map = match plural {
            "persistentvolumeclaims" => &mut self.storage.claims,
            "persistentvolumes" => &mut self.storage.volumes,
            _ => &mut self.storage.classes,
        };
        if kind == EventType::Deleted {
            map.remove(&key);
        } else {
            map.insert(key, obj);
        }
        self.cluster_changed(Instant::now());
    }

    /// A Service changed: the default spreading of the pods it selects follows.
    pub fn on_service(&mut self, kind: EventType, svc: Arc<Value>) {
        self.workloads.on_event(WorkloadKind::Service, kind, &svc);
    }

    /// A ReplicationController, ReplicaSet or StatefulSet changed (its selector is what
    /// its pods are spread by).
    pub fn on_workload(&mut self, kind: WorkloadKind, event: EventType, obj: Arc<Value>) {
        self.workloads.on_event(kind, event, &obj);
    }

    /// A PodDisruptionBudget changed.
    /// Keeps the namespaces' labels (for `namespaceSelector` in pod affinity terms).
    pub fn on_namespace(&mut self, kind: EventType, ns: Arc<Value>) {
        let name = object::name(&ns).to_string();
        if kind == EventType::Deleted {
            self.namespaces.remove(&name);
        } else {
            let labels = object::labels(&ns).cloned().unwrap_or_default();
            self.namespaces.insert(name, labels);
        }
    }

    pub fn on_budget(&mut self, kind: EventType, pdb: Arc<Value>) {
        let key = object_key(&pdb);
        if kind == EventType::Deleted {
            self.budgets.remove(&key);
        } else {
            self.budgets.insert(key, Budget::from_json(&pdb));
        }
    }

    pub fn on_pod(&mut self, kind: EventType, pod: impl Into<LazyValue>) {
        let handle: LazyValue = pod.into();
        let pod = handle.get();
        let key = object_key(&pod);
        if kind == EventType::Deleted {
            self.forget_pending(&key);
            if self.unplace(&key) {
                self.cluster_changed(Instant::now());
            }
            return;
        }
        let node = pod["spec"]["nodeName"].as_str().unwrap_or("");
        if !node.is_empty() {
            self.forget_pending(&key);
            if !object::is_deleting(&pod) && !is_terminal(&pod) {
                let node = node.to_string();
                self.place(key, &node, pod, false);
            } else if self.unplace(&key) {
                self.cluster_changed(Instant::now());
            }
            return;
        }
        if !is_ours(&pod) || object::is_deleting(&pod) || is_terminal(&pod) {
            // A bind in flight for it fails and drops its assumption.
            self.forget_pending(&key);
            return;
        }
        match self.pending.get_mut(&key) {
            None => {
                self.pending.insert(
                    key.clone(),
                    Pending {
                        obj: handle.cold(),
                        fit: fit_fingerprint(&pod),
                        stage: Stage::Queued,
                        attempts: 0,
                        last_attempt: None,
                    },
                );
                self.active.push_back(key);
            }
            Some(p) => {
                // Our own status writes come back here: only spec or label changes
                // can make an unschedulable pod fit.
                let fit = fit_fingerprint(&pod);
                let changed = fit != p.fit;
                p.fit = fit;
                p.obj = handle.cold();
                if changed && p.stage == Stage::Unschedulable {
                    p.stage = Stage::Queued;
                    self.unschedulable.remove(&key);
                    self.active.push_back(key);
                }
            }
        }
    }

    fn forget_pending(&mut self, key: &str) {
        self.nominated.remove(key);
        if self.pending.remove(key).is_some() {
            self.unschedulable.remove(key);
        }
    }

    fn place(&mut self, key: String, node: &str, pod: Arc<Value>, assumed: bool) {
        if let Some(p) = self.placed.get_mut(&key) {
            // The watch confirming an assumed pod, or a status update: nothing the
            // scheduler counts changed, so nothing is parsed or recounted.
            let same = p.node == node
                && object::labels(&p.obj) == object::labels(&pod)
                && (p.assumed || p.obj["spec"] == pod["spec"]);
            if same {
                p.obj = pod;
                p.assumed = assumed;
                return;
            }
        }
        let info = PodInfo::from_json(&pod);
        self.place_info(key, node, pod, info, assumed);
    }

    fn place_info(
        &mut self,
        key: String,
        node: &str,
        pod: Arc<Value>,
        info: PodInfo,
        assumed: bool,
    ) {
        self.unplace(&key);
        let i = self.entry_index(node);
        self.nodes[i].usage.add(&info);
        let ns = object::namespace(&pod).unwrap_or("");
        self.groups.on_placed(ns, object::labels(&pod), i, true);
        if info.pod_affinity.is_some() {
            self.with_affinity.insert(key.clone());
        }
        self.placed.insert(
            key,
            Placed {
                node: node.to_string(),
                info,
                obj: pod,
                assumed,
            },
        );
    }

    /// Stops counting a pod on its node; true if it was counted.
    fn unplace(&mut self, key: &str) -> bool {
        match self.placed.remove(key) {
            Some(p) => {
                self.with_affinity.remove(key);
                let i = self.entry_index(&p.node);
                self.nodes[i].usage.remove(&p.info);
                let ns = object::namespace(&p.obj).unwrap_or("");
                self.groups.on_placed(ns, object::labels(&p.obj), i, false);
                true
            }
            None => false,
        }
    }

    /// Something that may let unschedulable pods fit happened: retry them after their
    /// back-off.
    fn cluster_changed(&mut self, now: Instant) {
        for key in std::mem::take(&mut self.unschedulable) {
            if let Some(p) = self.pending.get_mut(&key) {
                p.stage = Stage::Backoff;
                let at = p
                    .last_attempt
                    .map_or(now, |t| (t + backoff_for(p.attempts)).max(now));
                self.backoff.push(Reverse((at, key)));
            }
        }
    }

    /// Retries every unschedulable pod (after its back-off), cluster change or not.
    pub fn flush_unschedulable(&mut self, now: Instant) {
        self.cluster_changed(now);
    }

    /// When the next pod leaves back-off.
    pub fn next_retry(&self) -> Option<Instant> {
        self.backoff.peek().map(|Reverse((at, _))| *at)
    }

    /// Moves pods whose back-off expired to the active queue.
    pub fn requeue_due(&mut self, now: Instant) {
        while let Some(Reverse((at, _))) = self.backoff.peek() {
            if *at > now {
                break;
            }
            let Some(Reverse((_, key))) = self.backoff.pop() else {
                break;
            };
            if let Some(p) = self.pending.get_mut(&key) {
                if p.stage == Stage::Backoff {
                    p.stage = Stage::Queued;
                    self.active.push_back(key);
                }
            }
        }
    }

    /// Whether pods wait in the active queue.
    pub fn has_queued(&self) -> bool {
        !self.active.is_empty()
    }

    /// Schedules the next queued pod: assumes it on the best node and asks for the
    /// bind, or parks it and asks for the unschedulable report.
    pub fn next_action(&mut self, now: Instant) -> Option<Action> {
        while let Some(key) = self.active.pop_front() {
            let Some(p) = self.pending.get(&key) else {
                continue;
            };
            if p.stage != Stage::Queued {
                continue;
            }
            let pod = p.obj.get();
            let info = PodInfo::from_json(&pod);
            let selector = self.workloads.default_selector(&pod);
            // As upstream's `schedulePod`: no nodes is told before any plugin (the
            // volumes' PreFilter included) looks at the pod.
            let decision = if self.has_no_nodes() {
                Err((fit_error(0, &HashMap::new()), HashSet::new()))
            } else {
                match pod_volumes(&pod, &self.storage) {
                    Ok(vols) => self.select_node(&key, &pod, &info, selector.as_ref(), &vols),
                    Err(why) => Err((volume_fit_error(self.known_nodes, &why), HashSet::new())),
                }
            };
            let p = self.pending.get_mut(&key).expect("looked up above");
            match decision {
                Ok((i, volumes)) => {
                    p.stage = Stage::Binding;
                    self.nominated.remove(&key);
                    let node = self.node_name(i);
                    self.assume_claims(&key, &node, &volumes);
                    self.place_info(key.clone(), &node, pod.clone(), info, true);
                    return Some(Action::Bind {
                        key,
                        pod,
                        node,
                        volumes,
                    });
                }
                Err((message, rules_fail)) => {
                    p.attempts += 1;
                    p.last_attempt = Some(now);
                    p.stage = Stage::Unschedulable;
                    self.unschedulable.insert(key.clone());
                    if let Some((node, victims)) = self.find_preemption(&key, &info, &rules_fail) {
                        self.nominated.insert(key.clone(), (node.clone(), info));
                        // As upstream, a successful preemption leaves no "preemption:"
                        // part in the message.
                        let message = match message.split_once(" preemption: ") {
                            Some((fit, _)) => fit.to_string(),
                            None => message,
                        };
                        return Some(Action::Preempt {
                            key,
                            pod,
                            node,
                            victims,
                            message,
                        });
                    }
                    return Some(Action::ReportUnschedulable { key, pod, message });
                }
            }
        }
        None
    }

    /// The node where evicting the least important lower-priority pods lets `pod` fit,
    /// and those pods; `None` when preemption does not help (or is not allowed).
    /// Nodes in `rules_fail` (where the pod's spread or pod-affinity rules, or placed
    /// pods' anti-affinity, refuse it) are not considered: evicting lower-priority pods
    /// for resources cannot make those rules pass, and preempting there would loop.
    fn find_preemption(
        &self,
        key: &str,
        pod: &PodInfo,
        rules_fail: &HashSet<usize>,
    ) -> Option<(String, Victims)> {
        if !preemption::may_preempt(pod) {
            return None;
        }
        let mut by_node: HashMap<&str, Vec<preemption::PlacedPod<'_>>> = HashMap::new();
        for (k, p) in &self.placed {
            by_node
                .entry(p.node.as_str())
                .or_default()
                .push(preemption::PlacedPod {
                    key: k,
                    info: &p.info,
                    labels: object::labels(&p.obj),
                });
        }
        let budgets: Vec<&Budget> = self.budgets.values().collect();
        let mut best: Option<(_, String, Vec<preemption::PlacedPod<'_>>)> = None;
        for (i, entry) in self.nodes.iter().enumerate() {
            let Some(node) = &entry.info else {
                continue;
            };
            if rules_fail.contains(&i) {
                continue;
            }
            let Some(placed) = by_node.get(node.name.as_str()) else {
                continue;
            };
            let usage = self.usage_with_nominated(key, pod, &node.name, &entry.usage);
            let Some((victims, violations)) =
                preemption::victims_on(pod, node, &usage, placed, &budgets)
            else {
                continue;
            };
            let cost = preemption::cost(&victims, violations);
            let better = match &best {
                None => true,
                Some((c, name, _)) => (cost, &node.name) < (*c, name),
            };
            if better {
                best = Some((cost, node.name.clone(), victims));
            }
        }
        let (_, node, victims) = best?;
        let victims = victims
            .iter()
            .filter_map(|v| Some((v.key.to_string(), self.placed.get(v.key)?.obj.clone())))
            .collect();
        Some((node, victims))
    }

    /// `usage` of `node` plus the pods nominated to it that are at least as important
    /// as `pod` (other than `pod` itself): the room they wait for is not `pod`'s.
    fn usage_with_nominated(
        &self,
        key: &str,
        pod: &PodInfo,
        node: &str,
        usage: &NodeUsage,
    ) -> NodeUsage {
        let mut usage = usage.clone();
        for (k, (n, info)) in &self.nominated {
            if k != key && n == node && info.priority >= pod.priority {
                usage.add(info);
            }
        }
        usage
    }

    fn node_name(&self, i: usize) -> String {
        self.nodes[i]
            .info
            .as_ref()
            .map(|n| n.name.clone())
            .unwrap_or_default()
    }

    /// Records the claim choices of a bind about to be made, so that other pods see them.
    fn assume_claims(&mut self, pod_key: &str, node: &str, volumes: &[ClaimChoice]) {
        let mut claims = Vec::new();
        for choice in volumes {
            let volume = match choice {
                ClaimChoice::Volume { volume, .. } => Some(volume.clone()),
                ClaimChoice::Provision { .. } => None,
                ClaimChoice::Decided { .. } => continue,
            };
            let claim = choice.claim().to_string();
            self.storage
                .assumed
                .insert(claim.clone(), (node.to_string(), volume));
            claims.push(claim);
        }
        if !claims.is_empty() {
            self.assumed_by_pod.insert(pod_key.to_string(), claims);
        }
    }

    fn forget_claims(&mut self, pod_key: &str) {
        for claim in self.assumed_by_pod.remove(pod_key).unwrap_or_default() {
            self.storage.assumed.remove(&claim);
        }
    }

    /// Filters then scores the nodes; the index of the best one and the choices for the
    /// pod's unbound claims there, or why none fits and the nodes its spread and
    /// pod-affinity rules refuse (for preemption to leave alone).
    fn select_node(
        &mut self,
        key: &str,
        obj: &Value,
        pod: &PodInfo,
        selector: Option<&LabelSelector>,
        vols: &PodVolumes,
    ) -> Result<(usize, Vec<ClaimChoice>), (String, HashSet<usize>)> {
        let len = self.nodes.len();
        if self.has_no_nodes() {
            return Err((fit_error(0, &HashMap::new()), HashSet::new()));
        }
        let ns = object::namespace(obj).unwrap_or("");
        // The pod's own spread constraints and pod-affinity rules, and the placed pods'
        // anti-affinity: computed once per attempt, and only when there are any.
        let spread_counts: Vec<Vec<u32>> = pod
            .spread_constraints
            .iter()
            .map(|c| match &c.selector {
                Some(sel) => self.per_node_counts(ns, sel),
                None => vec![0; len],
            })
            .collect();
        let spread_filter = self.spread_filter(obj, pod, &spread_counts);
        let affinity_filter = self.affinity_filter(obj, pod);
        let rules = |node: &NodeInfo| -> Result<(), Reason> {
            if let Some(f) = &spread_filter {
                f.check(node).map_err(Reason::from)?;
            }
            if let Some(f) = &affinity_filter {
                f.check(node).map_err(Reason::from)?;
            }
            Ok(())
        };
        let has_rules = spread_filter.is_some() || affinity_filter.is_some();
        let enough = feasible_nodes_to_find(self.known_nodes);
        let start = self.next_start % len;
        let mut feasible: Vec<(usize, RawScores)> = Vec::new();
        let mut choices: HashMap<usize, Vec<ClaimChoice>> = HashMap::new();
        let mut reasons: HashMap<Reason, usize> = HashMap::new();
        let mut rules_fail: HashSet<usize> = HashSet::new();
        let mut looked_at = 0;
        for offset in 0..len {
            let i = (start + offset) % len;
            let entry = &self.nodes[i];
            let Some(node) = &entry.info else {
                continue;
            };
            looked_at = offset + 1;
            let nominated_here =
                !self.nominated.is_empty() && self.nominated.values().any(|(n, _)| *n == node.name);
            let with_nominated;
            let usage = if nominated_here {
                with_nominated = self.usage_with_nominated(key, pod, &node.name, &entry.usage);
                &with_nominated
            } else {
                &entry.usage
            };
            let rules_ok = if has_rules {
                let verdict = rules(node);
                if verdict.is_err() {
                    rules_fail.insert(i);
                }
                verdict
            } else {
                Ok(())
            };
            let fits = can_schedule(pod, node, usage)
                .and_then(|()| {
                    if vols.is_empty() {
                        return Ok(());
                    }
                    let c = choices_on(vols, node, &self.storage).map_err(|r| vec![r])?;
                    choices.insert(i, c);
                    Ok(())
                })
                .and_then(|()| rules_ok.map_err(|r| vec![r]));
            match fits {
                Ok(()) => {
                    feasible.push((i, raw_scores(pod, node, &entry.usage)));
                    if feasible.len() >= enough {
                        break;
                    }
                }
                Err(why) => {
                    for r in why {
                        *reasons.entry(r).or_default() += 1;
                    }
                }
            }
        }
        self.next_start = (start + looked_at) % len;
        let best = match feasible.len() {
            0 => return Err((fit_error(self.known_nodes, &reasons), rules_fail)),
            1 => feasible[0].0,
            _ => {
                if pod.spread_constraints.is_empty() {
                    if let Some(selector) = selector {
                        self.score_spread(ns, pod, selector, &mut feasible);
                    }
                } else {
                    self.score_own_spread(pod, &spread_counts, &mut feasible);
                }
                self.score_inter_pod_affinity(obj, pod, &mut feasible);
                let raw: Vec<RawScores> = feasible.iter().map(|(_, r)| *r).collect();
                let totals = total_scores(&raw);
                feasible[pick_best(&totals)].0
            }
        };
        Ok((best, choices.remove(&best).unwrap_or_default()))
    }

    /// Fills in the PodTopologySpread score of each feasible node for a pod spread by
    /// `selector` (the system-default constraints).
    fn score_spread(
        &mut self,
        ns: &str,
        pod: &PodInfo,
        selector: &LabelSelector,
        feasible: &mut [(usize, RawScores)],
    ) {
        let Cache {
            groups,
            placed,
            node_index,
            nodes,
            ..
        } = self;
        let group = groups.group(
            ns,
            selector,
            placed.values().filter_map(|p| {
                let i = *node_index.get(&p.node)?;
                Some((
                    object::namespace(&p.obj).unwrap_or(""),
                    object::labels(&p.obj),
                    i,
                ))
            }),
        );
        let infos: Vec<&NodeInfo> = feasible
            .iter()
            .filter_map(|(i, _)| nodes[*i].info.as_ref())
            .collect();
        let host_counts: Vec<u32> = feasible.iter().map(|(i, _)| group.on_node(*i)).collect();
        let zones = if infos.iter().any(|n| n.labels.contains_key(ZONE_KEY)) {
            let known = nodes
                .iter()
                .enumerate()
                .filter_map(|(i, e)| Some((i, e.info.as_ref()?)));
            zone_counts(pod, known, group)
        } else {
            HashMap::new()
        };
        let raw = default_spread_raw(&infos, &host_counts, &zones);
        for ((_, scores), spread) in feasible.iter_mut().zip(raw) {
            scores.spread = Some(spread);
        }
    }

    /// Feeds back the result of an action.
    pub fn on_outcome(&mut self, outcome: Outcome, now: Instant) {
        let (key, node, error) = match outcome {
            Outcome::BindFailed { key, node, error } => {
                self.forget_claims(&key);
                (key, node, error)
            }
            // A successful bind stays assumed until the watch shows the pod bound.
            Outcome::Bound { key } => {
                self.forget_claims(&key);
                return tracing::trace!(pod = %key, "bound");
            }
            Outcome::Reported { key } => return tracing::trace!(pod = %key, "reported"),
        };
        if self
            .placed
            .get(&key)
            .is_some_and(|p| p.assumed && p.node == node)
        {
            self.unplace(&key);
        }
        let Some(p) = self.pending.get_mut(&key) else {
            return;
        };
        let settled_elsewhere = error.code == 404
            || (error.code == 409
                && (error.message.contains("already assigned")
                    || error.message.contains("being deleted")));
        if settled_elsewhere {
            // Bound by someone else, or going away: the watch will tell.
            return;
        }
        p.attempts += 1;
        p.last_attempt = Some(now);
        p.stage = Stage::Backoff;
        self.backoff
            .push(Reverse((now + backoff_for(p.attempts), key)));
    }

    /// Whether there is no node to schedule onto (upstream's `ErrNoNodesAvailable`).
    fn has_no_nodes(&self) -> bool {
        self.known_nodes == 0 || self.nodes.is_empty()
    }

    /// The node a pod is counted on (bound or assumed), for tests and diagnostics.
    pub fn placed_on(&self, key: &str) -> Option<&str> {
        self.placed.get(key).map(|p| p.node.as_str())
    }

    /// What is counted on a node.
    pub fn usage(&self, node: &str) -> Option<&NodeUsage> {
        self.node_index.get(node).map(|&i| &self.nodes[i].usage)
    }
}

/// The message of a pod whose claims no node can satisfy (upstream: the PreFilter's
/// status in the `FitError`).
fn volume_fit_error(total_nodes: usize, why: &str) -> String {
    format!(
        "0/{total_nodes} nodes are available: {why}. preemption: 0/{total_nodes} nodes are \
         available: {total_nodes} Preemption is not helpful for scheduling."
    )
}

/// Index of the highest score; ties broken at random (as upstream) so equal nodes share
/// the load.
fn pick_best(scores: &[i64]) -> usize {
    let mut rng = rand::thread_rng();
    let mut best = 0;
    let mut ties = 0;
    for (i, &s) in scores.iter().enumerate() {
        if i == 0 || s > scores[best] {
            best = i;
            ties = 1;
        } else if s == scores[best] {
            ties += 1;
            if rng.gen_range(0..ties) == 0 {
                best = i;
            }
        }
    }
    best
}

/// Shared by the controller loop and the tasks performing actions.
struct Context {
    client: Arc<dyn Client>,
    recorder: Recorder,
    metrics: SchedulerMetrics,
}

/// Runs the scheduler until aborted.
///
/// Unlike the other controllers it keeps its own queue of pods (active, backing off,
/// unschedulable) and its own cache of what is placed where, as upstream's scheduler
/// does; it reads and writes through the same `Client`.
pub async fn run(client: Arc<dyn Client>, metrics: SchedulerMetrics) {
    let ctx = Arc::new(Context {
        recorder: Recorder::new(client.clone(), DEFAULT_SCHEDULER_NAME),
        client,
        metrics,
    });
    let nodes_def = resources::by_plural("", "v1", "nodes").expect("served");
    let pods_def = resources::by_plural("", "v1", "pods").expect("served");
    let services_def = resources::by_plural("", "v1", "services").expect("served");
    let claims_def = resources::by_plural("", "v1", "persistentvolumeclaims").expect("served");
    let volumes_def = resources::by_plural("", "v1", "persistentvolumes").expect("served");
    let classes_def =
        resources::by_plural("storage.k8s.io", "v1", "storageclasses").expect("served");
    let workload_defs = [
        (
            WorkloadKind::ReplicationController,
            resources::by_plural("", "v1", "replicationcontrollers").expect("served"),
        ),
        (
            WorkloadKind::ReplicaSet,
            resources::by_plural("apps", "v1", "replicasets").expect("served"),
        ),
        (
            WorkloadKind::StatefulSet,
            resources::by_plural("apps", "v1", "statefulsets").expect("served"),
        ),
    ];
    let budgets_def = resources::by_plural("policy", "v1", "poddisruptionbudgets").expect("served");
    let namespaces_def = resources::by_plural("", "v1", "namespaces").expect("served");
    let (done_tx, mut done_rx) = mpsc::unbounded_channel::<Outcome>();
    let mut cache = Cache::new();
    let mut in_flight = 0usize;
    loop {
        let client = &ctx.client;
        let (nodes, _, mut node_watch) = client.list_and_watch(nodes_def);
        let (services, _, mut service_watch) = client.list_and_watch(services_def);
        let (pods, _, mut pod_watch) = client.list_and_watch(pods_def);
        let (claims, _, mut claim_watch) = client.list_and_watch(claims_def);
        let (volumes, _, mut volume_watch) = client.list_and_watch(volumes_def);
        let (classes, _, mut class_watch) = client.list_and_watch(classes_def);
        let [mut rc_watch, mut rs_watch, mut ss_watch] = workload_defs.map(|(kind, def)| {
            let (objs, _, watch) = client.list_and_watch(def);
            (kind, objs, watch)
        });
        let (budgets, _, mut budget_watch) = client.list_and_watch(budgets_def);
        let (namespaces, _, mut namespace_watch) = client.list_and_watch(namespaces_def);
        cache.resync(&nodes, &services, &pods);
        for kv in namespaces {
            cache.on_namespace(EventType::Added, kv.value.get());
        }
        cache.resync_storage(&claims, &volumes, &classes);
        for (kind, objs, _) in [&mut rc_watch, &mut rs_watch, &mut ss_watch] {
            for kv in std::mem::take(objs) {
                cache.on_workload(*kind, EventType::Added, kv.value.get());
            }
        }
        for kv in budgets {
            cache.on_budget(EventType::Added, kv.value.get());
        }
        drop((nodes, services, pods, claims, volumes, classes));
        let mut flush =
            tokio::time::interval_at(Instant::now() + UNSCHEDULABLE_FLUSH, UNSCHEDULABLE_FLUSH);
        loop {
            let retry_at = cache.next_retry();
            let can_act = in_flight < MAX_IN_FLIGHT && cache.has_queued();
            tokio::select! {
                biased;
                Some(outcome) = done_rx.recv() => {
                    in_flight -= 1;
                    cache.on_outcome(outcome, Instant::now());
                }
                event = node_watch.next() => match event {
                    Ok(e) => cache.on_node(e.kind, e.kv.value.get()),
                    Err(e) => {
                        tracing::debug!(error = %e, "scheduler node watch ended; relisting");
                        break;
                    }
                },
                event = service_watch.next() => match event {
                    Ok(e) => cache.on_service(e.kind, e.kv.value.get()),
                    Err(e) => {
                        tracing::debug!(error = %e, "scheduler service watch ended; relisting");
                        break;
                    }
                },
                event = pod_watch.next() => match event {
                    Ok(e) => cache.on_pod(e.kind, e.kv.value.clone()),
                    Err(e) => {
                        tracing::debug!(error = %e, "scheduler pod watch ended; relisting");
                        break;
                    }
                },
                event = rc_watch.2.next() => match event {
                    Ok(e) => cache.on_workload(rc_watch.0, e.kind, e.kv.value.get()),
                    Err(_) => break,
                },
                event = rs_watch.2.next() => match event {
                    Ok(e) => cache.on_workload(rs_watch.0, e.kind, e.kv.value.get()),
                    Err(_) => break,
                },
                event = ss_watch.2.next() => match event {
                    Ok(e) => cache.on_workload(ss_watch.0, e.kind, e.kv.value.get()),
                    Err(_) => break,
                },
                event = budget_watch.next() => match event {
                    Ok(e) => cache.on_budget(e.kind, e.kv.value.get()),
                    Err(_) => break,
                },
                event = namespace_watch.next() => match event {
                    Ok(e) => cache.on_namespace(e.kind, e.kv.value.get()),
                    Err(_) => break,
                },
                event = claim_watch.next() => match event {
                    Ok(e) => cache.on_storage(claims_def.plural, e.kind, e.kv.value.get()),
                    Err(_) => break,
                },
                event = volume_watch.next() => match event {
                    Ok(e) => cache.on_storage(volumes_def.plural, e.kind, e.kv.value.get()),
                    Err(_) => break,
                },
                event = class_watch.next() => match event {
                    Ok(e) => cache.on_storage(classes_def.plural, e.kind, e.kv.value.get()),
                    Err(_) => break,
                },
                _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                    cache.requeue_due(Instant::now());
                }
                _ = flush.tick() => cache.flush_unschedulable(Instant::now()),
                _ = std::future::ready(()), if can_act => {
                    let started = Instant::now();
                    if let Some(action) = cache.next_action(started) {
                        in_flight += 1;
                        let span = tracing::info_span!("reconcile", controller = DEFAULT_SCHEDULER_NAME, object = %action.key());
                        tokio::spawn(perform(ctx.clone(), action, started, done_tx.clone()).instrument(span));
                    }
                }
            }
        }
    }
}

/// Performs one action (decided at `started`) and reports its outcome.
async fn perform(
    ctx: Arc<Context>,
    action: Action,
    started: Instant,
    done: mpsc::UnboundedSender<Outcome>,
) {
    let attempt = attempt_result(&action);
    let outcome = match action {
        Action::Bind {
            key,
            pod,
            node,
            volumes,
        } => {
            let (ns, name) = split_key(&key);
            let ns = ns.unwrap_or("default");
            if let Err(error) = bind_volumes(&*ctx.client, &node, &volumes).await {
                tracing::debug!(pod = %key, %node, error = %error, "binding volumes failed");
                let message = format!(
                    "running PreBind plugin \"VolumeBinding\": {}",
                    error.message
                );
                ctx.recorder
                    .record(&pod, WARNING, "FailedScheduling", &message)
                    .await;
                let _ = done.send(Outcome::BindFailed { key, node, error });
                ctx.metrics
                    .observe_attempt(ScheduleResult::Error, started.elapsed());
                return;
            }
            let binding = json!({
                "apiVersion": "v1", "kind": "Binding",
                "metadata": {"name": name, "namespace": ns, "uid": pod["metadata"]["uid"]},
                "target": {"apiVersion": "v1", "kind": "Node", "name": node},
            });
            match ctx.client.bind_pod(ns, name, &binding).await {
                Ok(written) => {
                    // The bind is done: free its slot before the event is written.
                    let message = format!("Successfully assigned {ns}/{name} to {node}");
                    let _ = done.send(Outcome::Bound { key });
                    ctx.metrics.observe_attempt(attempt, started.elapsed());
                    ctx.recorder
                        .record(&written.kv.value, NORMAL, "Scheduled", &message)
                        .await;
                    return;
                }
                Err(error) => {
                    tracing::debug!(pod = %key, %node, error = %error, "bind failed");
                    Outcome::BindFailed { key, node, error }
                }
            }
        }
        Action::ReportUnschedulable { key, pod, message } => {
            let (ns, name) = split_key(&key);
            tracing::debug!(pod = %key, %message, "unschedulable");
            if !has_unschedulable_condition(&pod, &message) {
                let pods = resources::by_plural("", "v1", "pods").expect("served");
                let result = ctx
                    .client
                    .modify(pods, ns, name, Some("status"), &|cur| {
                        let mut cur = cur.clone();
                        set_condition(
                            &mut cur,
                            "PodScheduled",
                            "False",
                            Some("Unschedulable"),
                            Some(&message),
                        );
                        Ok(cur)
                    })
                    .await;
                if let Err(e) = result {
                    tracing::debug!(pod = %key, error = %e, "could not record unschedulable condition");
                }
            }
            ctx.recorder
                .record(&pod, WARNING, "FailedScheduling", &message)
                .await;
            Outcome::Reported { key }
        }
        Action::Preempt {
            key,
            pod,
            node,
            victims,
            message,
        } => {
            preempt(&ctx, &key, &pod, &node, &victims, &message).await;
            Outcome::Reported { key }
        }
    };
    let result = match outcome {
        Outcome::BindFailed { .. } => ScheduleResult::Error,
        _ => attempt,
    };
    ctx.metrics.observe_attempt(result, started.elapsed());
    // The loop owns the receiver for as long as it runs.
    let _ = done.send(outcome);
}

/// How an attempt counts in `scheduler_schedule_attempts_total` if its writes succeed:
/// a preemption, like a pod that fits nowhere, is `unschedulable`, as upstream.
fn attempt_result(action: &Action) -> ScheduleResult {
    match action {
        Action::Bind { .. } => ScheduleResult::Scheduled,
        Action::ReportUnschedulable { .. } | Action::Preempt { .. } => {
            ScheduleResult::Unschedulable
        }
    }
}

/// Reason and message of the `DisruptionTarget` condition of a preempted pod (upstream).
const PREEMPTION_REASON: &str = "PreemptionByScheduler";

/// Carries out a preemption as upstream's `PrepareCandidate`: the preemptor is
/// nominated to `node` (and told why it waits), each victim gets a `DisruptionTarget`
/// condition and a `Preempted` event, and is deleted with its own grace period.
async fn preempt(
    ctx: &Context,
    key: &str,
    pod: &Value,
    node: &str,
    victims: &[(String, Arc<Value>)],
    message: &str,
) {
    let pods = resources::by_plural("", "v1", "pods").expect("served");
    let uid = pod["metadata"]["uid"].as_str().unwrap_or("");
    tracing::info!(pod = %key, %node, victims = victims.len(), "preempting lower-priority pods");
    for (victim_key, victim) in victims {
        let (ns, name) = split_key(victim_key);
        let condition_message =
            format!("{DEFAULT_SCHEDULER_NAME}: preempting to accommodate a higher priority pod");
        let marked = ctx
            .client
            .modify(pods, ns, name, Some("status"), &|cur| {
                let mut cur = cur.clone();
                set_condition(
                    &mut cur,
                    "DisruptionTarget",
                    "True",
                    Some(PREEMPTION_REASON),
                    Some(&condition_message),
                );
                Ok(cur)
            })
            .await;
        if let Err(e) = marked {
            tracing::debug!(pod = %victim_key, error = %e, "could not mark the preemption victim");
        }
        ctx.recorder
            .record(
                victim,
                NORMAL,
                "Preempted",
                &format!("Preempted by pod {uid} on node {node}"),
            )
            .await;
        let opts = crate::apiserver::registry::DeleteOptions {
            precondition_uid: object::uid(victim).map(str::to_string),
            ..Default::default()
        };
        match ctx.client.delete(pods, ns, name, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %victim_key, error = %e, "deleting the preemption victim failed")
            }
        }
    }
    let (ns, name) = split_key(key);
    let nominated = ctx
        .client
        .modify(pods, ns, name, Some("status"), &|cur| {
            let mut cur = cur.clone();
            cur["status"]["nominatedNodeName"] = json!(node);
            set_condition(
                &mut cur,
                "PodScheduled",
                "False",
                Some("Unschedulable"),
                Some(message),
            );
            Ok(cur)
        })
        .await;
    if let Err(e) = nominated {
        tracing::debug!(pod = %key, error = %e, "could not record the nominated node");
    }
    ctx.recorder
        .record(pod, WARNING, "FailedScheduling", message)
        .await;
}

/// How long a pod's claims may take to be bound once the choices are written (upstream
/// `bindTimeout` is 10 minutes; a local provisioner answers in milliseconds).
pub const VOLUME_BIND_TIMEOUT: Duration = Duration::from_secs(120);
const VOLUME_BIND_POLL: Duration = Duration::from_millis(100);

/// Upstream's PreBind: writes the choices for the pod's unbound claims (a static
/// volume pre-bound to its claim, or the claim's `selected-node`), then waits until
/// the binding controller (and the provisioner) bound every one of them.
async fn bind_volumes(
    client: &dyn Client,
    node: &str,
    volumes: &[ClaimChoice],
) -> Result<(), ApiError> {
    use crate::api::storage::{ANN_BIND_COMPLETED, ANN_SELECTED_NODE};
    use crate::controllers::persistent_volume::matching::{
        is_volume_bound_to_claim, volume_bound_to,
    };
    use crate::controllers::persistent_volume::{claims, volumes as pvs};
    for choice in volumes {
        let (ns, name) = split_key(choice.claim());
        match choice {
            ClaimChoice::Volume { volume, .. } => {
                let pvc = client.get(claims(), ns, name)?.value;
                client
                    .modify(pvs(), None, volume, None, &|cur| {
                        if cur["spec"]["claimRef"].is_object()
                            && !is_volume_bound_to_claim(cur, &pvc)
                        {
                            return Err(ApiError::internal(format!(
                                "persistentvolume {volume:?} was bound to another claim meanwhile"
                            )));
                        }
                        Ok(volume_bound_to(cur, &pvc))
                    })
                    .await?;
            }
            ClaimChoice::Provision { .. } => {
                client
                    .modify(claims(), ns, name, None, &|cur| {
                        let mut cur = cur.clone();
                        let meta = object::meta_mut(&mut cur);
                        let a = meta.entry("annotations").or_insert_with(|| json!({}));
                        a[ANN_SELECTED_NODE] = json!(node);
                        Ok(cur)
                    })
                    .await?;
            }
            ClaimChoice::Decided { .. } => {}
        }
    }
    let deadline = Instant::now() + VOLUME_BIND_TIMEOUT;
    for choice in volumes {
        let (ns, name) = split_key(choice.claim());
        loop {
            let pvc = client.get(claims(), ns, name)?.value;
            if object::is_deleting(&pvc) {
                return Err(ApiError::internal(format!(
                    "persistentvolumeclaim {name:?} is going away"
                )));
            }
            let bound = !pvc["spec"]["volumeName"].as_str().unwrap_or("").is_empty()
                && !pvc["metadata"]["annotations"][ANN_BIND_COMPLETED].is_null();
            if bound {
                break;
            }
            if Instant::now() >= deadline {
                return Err(ApiError::internal(format!(
                    "binding volumes: timed out waiting for persistentvolumeclaim {name:?} to be bound"
                )));
            }
            tokio::time::sleep(VOLUME_BIND_POLL).await;
        }
    }
    Ok(())
}

fn has_unschedulable_condition(pod: &Value, message: &str) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "PodScheduled"
                && c["status"] == "False"
                && c["reason"] == "Unschedulable"
                && c["message"] == message
        })
}

#[cfg(test)]
mod tests;
