//! The kubelet: runs the pods bound to this node. It watches them through the API, gives
//! each a worker ([`worker::PodWorker`]) that drives the container runtime and the pod
//! network, and re-adopts the containers a previous agent left running (an agent restart
//! never kills healthy workloads).

pub mod api;
pub mod attach;
pub mod container;
pub mod evictions;
pub mod exec;
pub mod host_privileges;
pub mod image_gc;
pub mod pidns;
pub mod pod_files;
pub mod podns;
pub mod portforward;
pub mod probes;
pub mod qos;
pub mod remotecommand;
pub mod server;
pub mod spdy;
pub mod status;
pub mod tmpfs;
pub mod tokens;
pub mod volume;
pub mod worker;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::agent::client::last_known::LastKnownDir;
use crate::agent::net::NetworkBackend;
use crate::agent::runtime::{ContainerEvent, ContainerRuntime, ContainerSummary};
use api::{PodApi, PodUpdate};
pub use pod_files::DnsConfig;
use worker::PodWorker;

/// How often the worker of a busy pod syncs (starting, backing off, probed); quiet pods
/// wait for events (see [`worker::PodWorker::busy`]).
pub const SYNC_INTERVAL: Duration = Duration::from_secs(1);

/// What the kubelet needs to know about its node.
#[derive(Debug, Clone)]
pub struct KubeletConfig {
    pub node_name: String,
    /// The node's address (status.hostIP).
    pub host_ip: IpAddr,
    /// `<data-dir>/agent`: pod directories live in `pods/<uid>`, network namespaces in
    /// `netns/<uid>`.
    pub agent_dir: PathBuf,
    pub dns: DnsConfig,
    pub sync_interval: Duration,
    /// Where cgroup hierarchies are mounted (pod cgroups are removed on teardown).
    pub cgroup_root: PathBuf,
    /// Give each pod IPC and UTS namespaces its containers share (needs root); without,
    /// each container gets its own (with the pod's hostname).
    pub shared_ipc_uts: bool,
    /// Mount a tmpfs for each Secret volume and emptyDir `medium: Memory` volume (needs
    /// root); without, they are plain directories under the pod directory.
    pub secrets_on_tmpfs: bool,
    /// The node's memory in bytes: Burstable containers' `oom_score_adj` is relative to it.
    pub memory_capacity: u64,
    /// No container gets an `oom_score_adj` below this (see [`qos::oom_score_floor`]).
    pub oom_score_floor: Option<i32>,
    /// Most pods this node runs (`--max-pods`); more are rejected at admission.
    pub max_pods: usize,
    /// The runtime handlers of this node (a pod's RuntimeClass must name one).
    pub runtime_handlers: Vec<String>,
    /// Where `seccompProfile.localhostProfile` paths are found (the kubelet's
    /// `<root-dir>/seccomp`).
    pub seccomp_root: PathBuf,
}

impl KubeletConfig {
    pub fn pods_dir(&self) -> PathBuf {
        self.agent_dir.join("pods")
    }

    pub fn pod_dir(&self, uid: &str) -> PathBuf {
        self.pods_dir().join(uid)
    }

    /// The pod's network namespace. Kept apart from the pod directory: the namespace
    /// directory becomes a shared mount point, which a pod directory should not be.
    pub fn netns_path(&self, uid: &str) -> PathBuf {
        self.netns_dir().join(uid)
    }

    /// Where the pods' network namespaces are.
    pub fn netns_dir(&self) -> PathBuf {
        self.agent_dir.join("netns")
    }

    /// The pod's IPC and UTS namespace files.
    pub fn pod_namespaces(&self, uid: &str) -> podns::PodNamespaceFiles {
        podns::PodNamespaceFiles::new(&self.agent_dir.join("podns"), uid)
    }

    /// The pod's shared PID namespace (`shareProcessNamespace`).
    pub fn pod_pid_namespace(&self, uid: &str) -> pidns::PodPidNamespace {
        pidns::PodPidNamespace::new(&self.agent_dir.join("podns"), uid)
    }
}

/// What every pod worker shares.
pub struct Shared {
    pub config: KubeletConfig,
    pub runtime: Arc<dyn ContainerRuntime>,
    pub network: Arc<dyn NetworkBackend>,
    pub api: Arc<dyn PodApi>,
    /// Service-account tokens of the projected volumes, cached and renewed.
    pub tokens: tokens::TokenManager,
    /// Evictions ordered by the node-pressure eviction manager.
    pub evictions: Arc<evictions::Evictions>,
    /// What the kubelet's `/metrics` serves.
    pub metrics: Arc<crate::metrics::NodeMetrics>,
}

struct WorkerHandle {
    desired: watch::Sender<Option<Value>>,
    /// Wakes the worker: the runtime told of one of its containers.
    nudge: Arc<Notify>,
    task: JoinHandle<()>,
}

/// What the runtime's event follower tells the kubelet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeSignal {
    /// A container changed (exited, was OOM-killed): its pod's worker syncs.
    Event(ContainerEvent),
    /// Events may have been missed (the stream broke, or was just opened): every worker
    /// syncs.
    Resync,
}

/// Buffer of container events between the runtime and the kubelet.
const EVENT_BUFFER: usize = 256;
/// Wait before following the runtime's events again after the stream broke.
const EVENTS_RETRY: Duration = Duration::from_secs(2);
/// How long after (re)subscribing every worker is told to resync: by then the
/// subscription is in place, and what happened before it is read from the runtime.
const RESYNC_AFTER_SUBSCRIBE: Duration = Duration::from_millis(500);

/// Pods of this node and their workers.
pub struct Kubelet {
    shared: Arc<Shared>,
    workers: HashMap<String, WorkerHandle>,
    /// Pods whose worker finished (deleted and torn down): late events are ignored.
    finished: HashSet<String>,
    /// Containers found at start, by pod uid, waiting for their pod's worker.
    adoptable: HashMap<String, Vec<ContainerSummary>>,
    synced: bool,
    /// Pod uids by namespace and name, for the log endpoint.
    index: server::PodIndex,
}

impl Kubelet {
    pub fn new(shared: Arc<Shared>) -> Self {
        Kubelet {
            shared,
            workers: HashMap::new(),
            finished: HashSet::new(),
            adoptable: HashMap::new(),
            synced: false,
            index: Default::default(),
        }
    }

    /// Pod uids by namespace and name (shared with the log endpoint).
    pub fn index(&self) -> server::PodIndex {
        self.index.clone()
    }

    /// Reads the containers a previous agent made, to re-adopt them.
    pub async fn load_existing(&mut self) -> Result<(), crate::agent::runtime::RuntimeError> {
        let all = self.shared.runtime.list_containers().await?;
        for c in all {
            if let Some(uid) = c.labels.get(container::POD_UID_LABEL) {
                self.adoptable.entry(uid.clone()).or_default().push(c);
            }
        }
        Ok(())
    }

    /// Applies one change from the pod watch.
    pub fn handle(&mut self, update: PodUpdate) {
        match update {
            PodUpdate::Snapshot(pods) => {
                let listed: HashSet<String> = pods.iter().map(uid_of).collect();
                let gone: Vec<String> = self
                    .workers
                    .keys()
                    .filter(|uid| !listed.contains(*uid))
                    .cloned()
                    .collect();
                for uid in gone {
                    self.send(&uid, None);
                }
                if !self.synced {
                    self.synced = true;
                    self.clean_orphans(&listed);
                }
                for pod in pods {
                    self.upsert(pod);
                }
            }
            // Possibly stale: the pods run as they were, nothing is cleaned up until the
            // server lists what exists now.
            PodUpdate::LastKnown(pods) => {
                for pod in pods {
                    self.upsert(pod);
                }
            }
            PodUpdate::Upsert(pod) => self.upsert(pod),
            PodUpdate::Deleted(pod) => self.send(&uid_of(&pod), None),
        }
        self.reap();
    }

    fn upsert(&mut self, pod: Value) {
        let uid = uid_of(&pod);
        if uid.is_empty() || self.finished.contains(&uid) {
            return;
        }
        if let Ok(mut index) = self.index.write() {
            let meta = &pod["metadata"];
            let key = (
                meta["namespace"].as_str().unwrap_or("").to_string(),
                meta["name"].as_str().unwrap_or("").to_string(),
            );
            let host_network = pod["spec"]["hostNetwork"].as_bool() == Some(true);
            index.insert(
                key,
                server::IndexedPod {
                    uid: uid.clone(),
                    host_network,
                },
            );
        }
        if self.workers.contains_key(&uid) {
            self.send(&uid, Some(pod));
            return;
        }
        if !self.adoptable.contains_key(&uid) {
            if let Some(message) =
                over_max_pods(&pod, self.active_pods(), self.shared.config.max_pods)
            {
                self.reject(uid, pod, OUT_OF_PODS, message);
                return;
            }
        }
        let adopted = self.adoptable.remove(&uid).unwrap_or_default();
        info!(pod = %pod_key(&pod), %uid, adopted = adopted.len(), "pod worker started");
        let worker = PodWorker::new(self.shared.clone(), pod.clone(), adopted);
        self.spawn(uid, worker, Some(pod));
    }

    /// Pods with a worker that have not finished (not Succeeded or Failed, not deleted):
    /// what counts against `--max-pods`.
    fn active_pods(&self) -> usize {
        self.workers
            .values()
            .filter(|w| {
                w.desired.borrow().as_ref().is_some_and(|pod| {
                    !matches!(
                        pod["status"]["phase"].as_str(),
                        Some("Succeeded" | "Failed")
                    )
                })
            })
            .count()
    }

    /// Refuses a pod at admission as upstream's kubelet does: the pod fails with
    /// `reason` and a warning event says why; it never runs here.
    fn reject(&mut self, uid: String, pod: Value, reason: &'static str, message: String) {
        warn!(pod = %pod_key(&pod), %uid, %reason, %message, "pod rejected");
        self.finished.insert(uid.clone());
        let api = self.shared.api.clone();
        let node = self.shared.config.node_name.clone();
        tokio::spawn(async move {
            let meta = &pod["metadata"];
            let ns = meta["namespace"].as_str().unwrap_or("");
            let name = meta["name"].as_str().unwrap_or("");
            let status = serde_json::json!({
                "phase": "Failed", "reason": reason, "message": message,
            });
            if let Err(e) = api.patch_status(ns, name, &status).await {
                warn!(pod = %pod_key(&pod), error = %e, "failing a rejected pod failed");
            }
            let event = rejection_event(&pod, &node, reason, &message, chrono::Utc::now());
            if let Err(e) = api.create_event(ns, &event).await {
                tracing::debug!(pod = %pod_key(&pod), error = %e, "event not recorded");
            }
        });
    }

    fn spawn(&mut self, uid: String, worker: PodWorker, pod: Option<Value>) {
        let (tx, rx) = watch::channel(pod);
        let nudge = Arc::new(Notify::new());
        let task = tokio::spawn(worker.run(rx, nudge.clone()));
        self.workers.insert(
            uid,
            WorkerHandle {
                desired: tx,
                nudge,
                task,
            },
        );
    }

    /// Wakes the workers `signal` concerns: the one whose pod the container belongs to
    /// (container ids start with the pod's uid), or all of them.
    pub fn runtime_signal(&self, signal: &RuntimeSignal) {
        match signal {
            RuntimeSignal::Event(event) => {
                let id = event.container_id();
                let owner = self.workers.iter().find(|(uid, _)| {
                    id.strip_prefix(uid.as_str())
                        .is_some_and(|rest| rest.starts_with('-'))
                });
                if let Some((uid, w)) = owner {
                    tracing::debug!(%uid, container = id, ?event, "container event");
                    w.nudge.notify_one();
                }
            }
            RuntimeSignal::Resync => {
                for w in self.workers.values() {
                    w.nudge.notify_one();
                }
            }
        }
    }

    fn send(&mut self, uid: &str, pod: Option<Value>) {
        if let Some(w) = self.workers.get(uid) {
            let _ = w.desired.send(pod);
        }
    }

    /// Tears down what belongs to pods the API no longer has: containers found at start
    /// and pod directories / network namespaces left on disk.
    fn clean_orphans(&mut self, listed: &HashSet<String>) {
        let mut orphans: BTreeMap<String, Vec<ContainerSummary>> = BTreeMap::new();
        for (uid, containers) in self.adoptable.iter() {
            if !listed.contains(uid) {
                orphans.insert(uid.clone(), containers.clone());
            }
        }
        for dir in [
            self.shared.config.pods_dir(),
            self.shared.config.agent_dir.join("netns"),
            self.shared.config.agent_dir.join("podns"),
        ] {
            for entry in std::fs::read_dir(&dir).into_iter().flatten().flatten() {
                let name = entry.file_name().to_string_lossy().into_owned();
                let uid = name
                    .strip_suffix("-ipc")
                    .or_else(|| name.strip_suffix("-uts"))
                    .unwrap_or(&name)
                    .to_string();
                // A pod run from the last known state has a worker, which tears it
                // down itself.
                if !listed.contains(&uid) && !self.workers.contains_key(&uid) {
                    orphans.entry(uid).or_default();
                }
            }
        }
        for (uid, containers) in orphans {
            self.adoptable.remove(&uid);
            info!(%uid, containers = containers.len(), "cleaning up a pod that is gone from the API");
            let stub = serde_json::json!({"metadata": {"uid": uid, "name": uid, "namespace": ""}, "spec": {}});
            let worker = PodWorker::new(self.shared.clone(), stub, containers);
            self.spawn(uid, worker, None);
        }
    }

    /// Forgets workers that have finished.
    fn reap(&mut self) {
        let done: Vec<String> = self
            .workers
            .iter()
            .filter(|(_, w)| w.task.is_finished())
            .map(|(uid, _)| uid.clone())
            .collect();
        if let Ok(mut index) = self.index.write() {
            index.retain(|_, pod| !done.contains(&pod.uid));
        }
        for uid in done {
            self.workers.remove(&uid);
            self.finished.insert(uid);
        }
    }

    /// Follows the pod watch until it ends, and the runtime's events.
    pub async fn run(
        mut self,
        mut updates: mpsc::Receiver<PodUpdate>,
        mut runtime_events: mpsc::Receiver<RuntimeSignal>,
    ) {
        let mut reap = tokio::time::interval(Duration::from_secs(10));
        let mut events_open = true;
        loop {
            tokio::select! {
                update = updates.recv() => match update {
                    Some(u) => self.handle(u),
                    None => return,
                },
                signal = runtime_events.recv(), if events_open => match signal {
                    Some(s) => self.runtime_signal(&s),
                    None => events_open = false,
                },
                _ = reap.tick() => self.reap(),
            }
        }
    }

    /// The uids of the pods that have a worker.
    pub fn pods(&self) -> Vec<String> {
        self.workers.keys().cloned().collect()
    }
}

/// Reason of a pod rejected because the node runs `--max-pods` already (upstream's
/// admission handler: `Out` + the resource name).
pub const OUT_OF_PODS: &str = "OutOfpods";

/// Why a new `pod` may not run on a node running `active` pods of at most `max_pods`
/// (upstream's message), or `None` when it may. A pod already finished is no new load.
pub fn over_max_pods(pod: &Value, active: usize, max_pods: usize) -> Option<String> {
    let phase = pod["status"]["phase"].as_str();
    if matches!(phase, Some("Succeeded" | "Failed")) || active < max_pods {
        return None;
    }
    Some(format!(
        "Node didn't have enough resource: pods, requested: 1, used: {active}, capacity: {max_pods}"
    ))
}

/// The warning event on a pod refused at admission.
fn rejection_event(
    pod: &Value,
    node: &str,
    reason: &str,
    message: &str,
    now: chrono::DateTime<chrono::Utc>,
) -> Value {
    let meta = &pod["metadata"];
    let name = meta["name"].as_str().unwrap_or("");
    let now = status::timestamp(now);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    serde_json::json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{name}.{}", &suffix[..16]), "namespace": meta["namespace"]},
        "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": meta["namespace"],
                           "name": name, "uid": meta["uid"]},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    })
}

fn uid_of(pod: &Value) -> String {
    pod["metadata"]["uid"].as_str().unwrap_or("").to_string()
}

fn pod_key(pod: &Value) -> String {
    format!(
        "{}/{}",
        pod["metadata"]["namespace"].as_str().unwrap_or(""),
        pod["metadata"]["name"].as_str().unwrap_or("")
    )
}

/// Starts the kubelet for a registered node: re-adopts containers, then watches the
/// node's pods and runs them. Returns only if the pod watch ends.
pub async fn run(
    shared: Arc<Shared>,
    client: Arc<crate::agent::client::ApiClient>,
    endpoint: Option<(TcpListener, Arc<rustls::ServerConfig>)>,
) {
    let mut kubelet = Kubelet::new(shared.clone());
    if let Some((listener, tls)) = endpoint {
        let endpoint = server::Endpoint {
            pods: kubelet.index(),
            pods_dir: shared.config.pods_dir(),
            netns_dir: shared.config.netns_dir(),
            runtime: shared.runtime.clone(),
            cgroups: crate::agent::stats::CgroupReader::new(shared.config.cgroup_root.clone()),
            metrics: shared.metrics.clone(),
        };
        tokio::spawn(server::serve(listener, tls, Arc::new(endpoint)));
    }
    let mut attempt = 0;
    while let Err(e) = kubelet.load_existing().await {
        let delay = crate::agent::join::backoff(attempt);
        warn!(error = %crate::agent::error_chain(&e), retry_in_s = delay.as_secs(), "listing containers failed; retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
    let (tx, rx) = mpsc::channel(64);
    let last_known = LastKnownDir::new(&shared.config.agent_dir).file("pods");
    tokio::spawn(api::watch_pods(
        client,
        shared.config.node_name.clone(),
        Some(last_known),
        tx,
    ));
    let (events_tx, events_rx) = mpsc::channel(EVENT_BUFFER);
    tokio::spawn(follow_runtime_events(shared.runtime.clone(), events_tx));
    info!(node = %shared.config.node_name, "kubelet is running");
    kubelet.run(rx, events_rx).await;
}

/// Follows the runtime's container events for the kubelet until it stops listening,
/// subscribing again (after [`EVENTS_RETRY`]) whenever the stream ends or breaks. Soon
/// after each subscription every worker is told to resync: events from before it are
/// lost.
pub async fn follow_runtime_events(
    runtime: Arc<dyn ContainerRuntime>,
    out: mpsc::Sender<RuntimeSignal>,
) {
    let mut failures = 0u32;
    loop {
        let (tx, mut rx) = mpsc::channel(EVENT_BUFFER);
        let follow = runtime.follow_events(tx);
        tokio::pin!(follow);
        let resync = tokio::time::sleep(RESYNC_AFTER_SUBSCRIBE);
        tokio::pin!(resync);
        let mut resync_due = true;
        let ended = loop {
            tokio::select! {
                ended = &mut follow => break ended,
                Some(event) = rx.recv() => {
                    failures = 0;
                    if out.send(RuntimeSignal::Event(event)).await.is_err() {
                        return;
                    }
                }
                () = &mut resync, if resync_due => {
                    resync_due = false;
                    if out.send(RuntimeSignal::Resync).await.is_err() {
                        return;
                    }
                }
            }
        };
        while let Ok(event) = rx.try_recv() {
            if out.send(RuntimeSignal::Event(event)).await.is_err() {
                return;
            }
        }
        match ended {
            Ok(()) => info!("the runtime's event stream ended; following it again"),
            Err(e) => {
                failures += 1;
                // Told once per outage (containerd may be restarting).
                if failures == 1 {
                    warn!(error = %crate::agent::error_chain(&e), "following the runtime's events failed; retrying");
                } else {
                    tracing::debug!(error = %crate::agent::error_chain(&e), "following the runtime's events failed");
                }
            }
        }
        if out.is_closed() {
            return;
        }
        tokio::time::sleep(EVENTS_RETRY).await;
        // Whatever happened meanwhile is read from the runtime by the resync.
    }
}

#[cfg(test)]
mod tests;
