//! One pod's worker: makes its sandbox (network namespace, address, /etc files, volumes),
//! runs its init and app containers under the restart policy with back-off, posts its
//! status when it changes, and tears it all down when the pod is deleted.

mod adopt;
mod containers;
mod images;
mod probes;
mod report;
mod sandbox;
mod teardown;
mod volumes;

pub(crate) use crate::agent::error_chain;
use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::sync::{watch, Notify};
use tokio::time::Instant;
use tracing::debug;

use super::probes::{ProbeKind, ProbeSpec, ProbeState};
use super::status::{ContainerRecord, InstanceState};
use super::Shared;
use crate::agent::runtime::ContainerSummary;

/// This agent's own binary, which `orc pause` holders run as (what the path names even
/// after the file was replaced by an upgrade).
const SELF_EXE: &str = "/proc/self/exe";
/// Grace period when neither the delete nor the pod names one.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Grace period for containers of pods that vanished while the agent was away.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10);
/// How often configMap and secret volumes are rewritten from their objects.
pub const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// Longest a worker whose pod is quiet (containers running or ended for good, no
/// probes, nothing failing) sleeps when nothing wakes it: the runtime's events (a
/// container exited), pod changes and eviction orders do. A safety resync.
pub const QUIET_RESYNC: Duration = Duration::from_secs(60);
/// Exit code reported for an instance found without a task (as upstream's "Unknown"),
/// at the agent's start or when its shim died.
const UNKNOWN_EXIT_CODE: i32 = 255;
/// Why and how a pod past its activeDeadlineSeconds failed (upstream's words).
pub const DEADLINE_REASON: &str = "DeadlineExceeded";
pub const DEADLINE_MESSAGE: &str = "Pod was active on the node longer than the specified deadline";
/// Wait before retrying the final pod delete.
const DELETE_RETRY: Duration = Duration::from_secs(2);

/// Per-container bookkeeping that is not part of the status.
#[derive(Debug, Clone, Default)]
struct Track {
    /// Back-off level: crashes restarted in a row (reset after a long run).
    backoff_level: u32,
    /// When the current instance was seen exited.
    exited_at: Option<Instant>,
    /// Image pulls failed in a row and when the next try may happen.
    pull_failures: u32,
    pull_retry_at: Option<Instant>,
    /// Why the last pull failed (the ImagePullBackOff message repeats it).
    pull_error: Option<String>,
    /// A BackOff event was sent for the current back-off period.
    backoff_reported: bool,
    /// When the current instance started (probe delays count from it).
    started: Option<Instant>,
    /// Probe states of the current instance, by probe field name.
    probes: BTreeMap<&'static str, ProbeState>,
    /// The current instance was stopped because the spec changed: the next one starts
    /// at once, whatever the restart policy and back-off say (as upstream, whose
    /// back-off is keyed by the container's hash).
    definition_changed: bool,
}

pub struct PodWorker {
    shared: Arc<Shared>,
    uid: String,
    pod: Value,
    pod_dir: PathBuf,
    netns: PathBuf,
    sandbox_ready: bool,
    pod_ip: Option<IpAddr>,
    start_time: Option<DateTime<Utc>>,
    volumes: BTreeMap<String, (PathBuf, bool)>,
    init: Vec<ContainerRecord>,
    apps: Vec<ContainerRecord>,
    /// The ephemeral containers, in the order the pod's spec added them: each runs
    /// once and is never restarted.
    ephemeral: Vec<ContainerRecord>,
    track: BTreeMap<String, Track>,
    /// Why the pod cannot start (sandbox or volume failures).
    message: Option<(String, String)>,
    last_posted: Option<Value>,
    volumes_refreshed: Instant,
    /// The pod's labels and annotations the volumes were last written with: a change
    /// rewrites the downwardAPI files at once.
    volumes_meta: Value,
    /// emptyDir volumes told to be over their sizeLimit.
    size_warned: BTreeSet<String>,
    /// When the pod became active on this node (its startTime on the monotonic clock),
    /// for activeDeadlineSeconds.
    active_since: Option<Instant>,
    /// The pod ran past its activeDeadlineSeconds or was evicted: its containers were
    /// stopped for good.
    stopped: bool,
    /// When the pod was evicted (its DisruptionTarget condition's transition time).
    evicted_at: Option<DateTime<Utc>>,
    /// The last container status read failed (the runtime may be down).
    status_failing: bool,
    /// The last status write failed: it is retried on the next sync.
    status_unposted: bool,
    /// Events to record once the sync has written the status.
    events_later: std::sync::Mutex<Vec<LaterEvent>>,
    /// The events recorded so far, so repeats raise their count.
    event_series: std::sync::Mutex<report::EventSeries>,
    /// When this kubelet first saw the pod (`kubelet_pod_start_duration_seconds`).
    seen: std::time::Instant,
    /// The pod being plugged into the network (veth, addresses, routes) while the rest
    /// of its sandbox and its first container are made: no container starts before it
    /// ends ([`Self::await_network`]).
    pending_attach: Option<tokio::task::JoinHandle<crate::agent::net::Result<std::net::Ipv4Addr>>>,
    /// The runtime handler its RuntimeClass names, once looked up (`Some(None)`: the
    /// node's default).
    runtime_handler: Option<Option<String>>,
}

/// Which of the pod's container lists a container is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Group {
    Init,
    App,
    Ephemeral,
}

impl Group {
    /// The list's field in the pod spec.
    fn field(self) -> &'static str {
        match self {
            Group::Init => "initContainers",
            Group::App => "containers",
            Group::Ephemeral => "ephemeralContainers",
        }
    }

    /// The runtime label value a restarted agent re-adopts the container by.
    fn label(self) -> &'static str {
        match self {
            Group::Init => "init",
            Group::App => "app",
            Group::Ephemeral => "ephemeral",
        }
    }

    /// The group a runtime label value names (`app` when unset or unknown).
    fn from_label(label: Option<&str>) -> Group {
        match label {
            Some("init") => Group::Init,
            Some("ephemeral") => Group::Ephemeral,
            _ => Group::App,
        }
    }
}

/// An event queued until the status is written.
struct LaterEvent {
    kind: String,
    reason: String,
    message: String,
    field_path: String,
}

fn record_for(spec: &Value) -> ContainerRecord {
    ContainerRecord::new(
        spec["name"].as_str().unwrap_or(""),
        spec["image"].as_str().unwrap_or(""),
    )
}

fn exit_reason(exit_code: u32, oom_killed: bool) -> &'static str {
    if oom_killed {
        "OOMKilled"
    } else if exit_code == 0 {
        "Completed"
    } else {
        "Error"
    }
}

fn chrono_ago(t: Option<DateTime<Utc>>) -> Duration {
    t.and_then(|t| (Utc::now() - t).to_std().ok())
        .unwrap_or(Duration::ZERO)
}

fn containers(spec: &Value, field: &str) -> Vec<Value> {
    spec[field].as_array().cloned().unwrap_or_default()
}

impl PodWorker {
    /// A worker for `pod`, taking over `adopted` containers a previous agent made for it.
    pub fn new(shared: Arc<Shared>, pod: Value, adopted: Vec<ContainerSummary>) -> Self {
        let uid = pod["metadata"]["uid"].as_str().unwrap_or("").to_string();
        let pod_dir = shared.config.pod_dir(&uid);
        let netns = shared.config.netns_path(&uid);
        let init = containers(&pod["spec"], "initContainers")
            .iter()
            .map(record_for)
            .collect();
        let apps = containers(&pod["spec"], "containers")
            .iter()
            .map(record_for)
            .collect();
        let start_time = pod["status"]["startTime"]
            .as_str()
            .and_then(|s| s.parse().ok());
        let mut worker = PodWorker {
            shared,
            uid,
            pod,
            pod_dir,
            netns,
            sandbox_ready: false,
            pod_ip: None,
            start_time,
            volumes: BTreeMap::new(),
            init,
            apps,
            ephemeral: Vec::new(),
            track: BTreeMap::new(),
            message: None,
            last_posted: None,
            volumes_refreshed: Instant::now(),
            volumes_meta: Value::Null,
            size_warned: BTreeSet::new(),
            active_since: None,
            stopped: false,
            evicted_at: None,
            status_failing: false,
            status_unposted: false,
            events_later: Default::default(),
            event_series: Default::default(),
            seen: std::time::Instant::now(),
            pending_attach: None,
            runtime_handler: None,
        };
        worker.add_ephemeral_records();
        worker.adopt(adopted);
        worker
    }

    /// Adds a record for each ephemeral container the spec names that has none yet
    /// (they are only ever added, through the `ephemeralcontainers` subresource).
    fn add_ephemeral_records(&mut self) {
        for spec in containers(&self.pod["spec"], "ephemeralContainers") {
            let name = spec["name"].as_str().unwrap_or("");
            if !self.ephemeral.iter().any(|r| r.name == name) {
                self.ephemeral.push(record_for(&spec));
            }
        }
    }

    fn name(&self) -> String {
        let meta = &self.pod["metadata"];
        format!(
            "{}/{}",
            meta["namespace"].as_str().unwrap_or(""),
            meta["name"].as_str().unwrap_or("")
        )
    }

    fn namespace(&self) -> &str {
        self.pod["metadata"]["namespace"].as_str().unwrap_or("")
    }

    fn pod_name(&self) -> &str {
        self.pod["metadata"]["name"].as_str().unwrap_or("")
    }

    fn policy(&self) -> String {
        self.pod["spec"]["restartPolicy"]
            .as_str()
            .unwrap_or("Always")
            .to_string()
    }

    /// Runs until the pod is deleted (or gone from the API) and torn down, or until the
    /// kubelet drops the sender. Syncs when the pod changes, when `nudge` is notified (the
    /// runtime told of one of its containers), when an eviction is ordered, and otherwise
    /// after [`Self::next_sync_in`].
    pub async fn run(mut self, mut desired: watch::Receiver<Option<Value>>, nudge: Arc<Notify>) {
        let mut evictions = self.shared.evictions.subscribe();
        loop {
            let latest = desired.borrow_and_update().clone();
            match latest {
                None => {
                    self.teardown(ORPHAN_GRACE).await;
                    return;
                }
                Some(pod) => {
                    self.update(pod);
                    if !self.pod["metadata"]["deletionTimestamp"].is_null() {
                        self.terminate_and_delete().await;
                        return;
                    }
                    self.sync_once().await;
                }
            }
            let wait = self.next_sync_in();
            tokio::select! {
                changed = desired.changed() => if changed.is_err() { return },
                () = nudge.notified() => {}
                Ok(()) = evictions.changed() => {}
                () = tokio::time::sleep(wait) => {}
            }
        }
    }

    /// How long the worker may wait for its next sync when nothing wakes it: the sync
    /// interval while something is under way (see [`Self::busy`]), else until the next
    /// thing due by time — the activeDeadlineSeconds, the volume refresh — at most
    /// [`QUIET_RESYNC`].
    pub fn next_sync_in(&self) -> Duration {
        let interval = self.shared.config.sync_interval;
        if self.busy() {
            return interval;
        }
        let mut wait = QUIET_RESYNC.max(interval);
        if !self.stopped && !self.is_terminal() {
            wait = wait.min(VOLUME_REFRESH.saturating_sub(self.volumes_refreshed.elapsed()));
            if let (Some(deadline), Some(since)) = (
                self.pod["spec"]["activeDeadlineSeconds"].as_u64(),
                self.active_since,
            ) {
                wait = wait.min(Duration::from_secs(deadline).saturating_sub(since.elapsed()));
            }
        }
        if wait.is_zero() {
            interval
        } else {
            wait
        }
    }

    /// Whether the pod needs a sync every sync interval: it is being set up, a container
    /// waits (to start, to be pulled, in back-off) or is probed, a status write or a
    /// runtime read failed. A pod whose containers run or ended for good needs none:
    /// what changes them comes as an event.
    pub fn busy(&self) -> bool {
        if self.status_failing || self.status_unposted {
            return true;
        }
        if self.stopped || self.is_terminal() {
            return false;
        }
        if !self.sandbox_ready || self.message.is_some() {
            return true;
        }
        if self.ephemeral.iter().any(|r| r.current.is_none()) {
            // An ephemeral container waits to start (or for its image).
            return true;
        }
        let policy = self.policy();
        let init_policy = if policy == "Never" {
            "Never"
        } else {
            "OnFailure"
        };
        let settled = |r: &ContainerRecord, policy: &str| {
            r.waiting.is_none()
                && match r.current.as_ref().map(|c| &c.state) {
                    Some(InstanceState::Running) => true,
                    Some(InstanceState::Exited(t)) => {
                        !super::status::should_restart(policy, t.exit_code)
                    }
                    Some(InstanceState::Created) | None => false,
                }
        };
        let settled_init = self.init.iter().enumerate().all(|(i, r)| {
            settled(
                r,
                if self.is_sidecar(i) {
                    "Always"
                } else {
                    init_policy
                },
            )
        });
        if !settled_init {
            return true;
        }
        if !self.initialized() {
            // An init container runs (its exit comes as an event), or a sidecar waits for
            // its startup probe.
            return self
                .init
                .iter()
                .enumerate()
                .any(|(i, r)| self.is_sidecar(i) && !r.started);
        }
        if !self.apps.iter().all(|r| settled(r, &policy)) {
            return true;
        }
        containers(&self.pod["spec"], "containers")
            .iter()
            .chain(
                containers(&self.pod["spec"], "initContainers")
                    .iter()
                    .filter(|s| super::status::is_sidecar(s)),
            )
            .any(|spec| {
                [
                    ProbeKind::Startup,
                    ProbeKind::Liveness,
                    ProbeKind::Readiness,
                ]
                .into_iter()
                .any(|kind| ProbeSpec::of(spec, kind).is_some())
            })
    }

    /// Whether init container `i` is a sidecar (`restartPolicy: Always`).
    fn is_sidecar(&self, i: usize) -> bool {
        super::status::is_sidecar(&self.pod["spec"]["initContainers"][i])
    }

    /// Whether initialization is done: every init container completed and every sidecar
    /// started — and for good once an app container was made (a sidecar restarting
    /// later does not undo it, as upstream).
    pub(super) fn initialized(&self) -> bool {
        if self.app_made() {
            return true;
        }
        self.init.iter().enumerate().all(|(i, r)| {
            if self.is_sidecar(i) {
                r.is_running() && r.started
            } else {
                r.terminated().is_some_and(|t| t.exit_code == 0)
            }
        })
    }

    /// Whether an app container was ever made: initialization is then over for good.
    pub(super) fn app_made(&self) -> bool {
        self.apps
            .iter()
            .any(|r| r.current.is_some() || r.last_termination.is_some())
    }

    /// Takes the pod as the API has it now (the next sync acts on it).
    pub fn update(&mut self, pod: Value) {
        self.pod = pod;
        self.add_ephemeral_records();
    }

    /// Whether the pod has ended for good (Succeeded or Failed as last posted or stored).
    fn is_terminal(&self) -> bool {
        let phase = |s: &Value| matches!(s["phase"].as_str(), Some("Succeeded") | Some("Failed"));
        phase(&self.pod["status"]) || self.last_posted.as_ref().is_some_and(phase)
    }

    /// One pass: sandbox, containers, status.
    pub async fn sync_once(&mut self) {
        if let Some(eviction) = self.shared.evictions.take(&self.uid) {
            if !self.stopped && !self.is_terminal() {
                self.evict(eviction).await;
            }
        }
        if !self.stopped && !self.is_terminal() && self.past_active_deadline() {
            self.stop_past_deadline().await;
        }
        if !self.is_terminal() && !self.stopped {
            if !self.sandbox_ready {
                self.ensure_sandbox().await;
            }
            if self
                .pending_attach
                .as_ref()
                .is_some_and(|h| h.is_finished())
            {
                // Plugged in (or failed to) while no container was ready to start.
                let _ = self.await_network().await;
            }
            let meta_changed = volumes::volume_meta(&self.pod) != self.volumes_meta;
            if self.sandbox_ready
                && (meta_changed || self.volumes_refreshed.elapsed() >= VOLUME_REFRESH)
            {
                // ConfigMap and Secret changes reach running containers (files, not env),
                // and label or annotation changes the downwardAPI files.
                if let Err(e) = self.prepare_volumes().await {
                    debug!(pod = %self.name(), error = %e, "volume refresh failed");
                }
                self.volumes_refreshed = Instant::now();
            }
            if self.sandbox_ready {
                self.poll_containers().await;
                let initialized = self.sync_init_containers().await;
                self.sync_ephemeral_containers().await;
                if initialized {
                    self.sync_app_containers().await;
                    self.stop_sidecars_when_done().await;
                }
                // Sidecars' probes run during initialization too (a startup probe lets
                // the next init container start).
                self.run_probes().await;
            }
        } else {
            self.poll_containers().await;
        }
        self.post_status().await;
        self.flush_events().await;
    }

    /// Whether the pod has been active on this node for its activeDeadlineSeconds
    /// (counted from its startTime, as upstream).
    fn past_active_deadline(&mut self) -> bool {
        let Some(deadline) = self.pod["spec"]["activeDeadlineSeconds"].as_u64() else {
            return false;
        };
        let Some(start) = self.start_time else {
            return false;
        };
        let since = *self.active_since.get_or_insert_with(|| {
            let now = Instant::now();
            now.checked_sub(chrono_ago(Some(start))).unwrap_or(now)
        });
        since.elapsed() >= Duration::from_secs(deadline)
    }

    /// Whether the pod's containers share one PID namespace of its own
    /// (`shareProcessNamespace`; made only where the agent makes the pod's namespaces).
    fn shares_process_namespace(&self) -> bool {
        self.shared.config.shared_ipc_uts && self.pod["spec"]["shareProcessNamespace"] == true
    }

    fn termination_grace(&self) -> Duration {
        self.pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .map_or(DEFAULT_GRACE, Duration::from_secs)
    }

    fn record(&self, group: Group, i: usize) -> &ContainerRecord {
        match group {
            Group::Init => &self.init[i],
            Group::App => &self.apps[i],
            Group::Ephemeral => &self.ephemeral[i],
        }
    }

    fn record_mut(&mut self, group: Group, i: usize) -> &mut ContainerRecord {
        match group {
            Group::Init => &mut self.init[i],
            Group::App => &mut self.apps[i],
            Group::Ephemeral => &mut self.ephemeral[i],
        }
    }

    fn field_path(&self, group: Group, name: &str) -> String {
        format!("spec.{}{{{name}}}", group.field())
    }

    /// The group of the container named `name` (`App` when none has the name).
    fn group_of(&self, name: &str) -> Group {
        if self.init.iter().any(|r| r.name == name) {
            Group::Init
        } else if self.ephemeral.iter().any(|r| r.name == name) {
            Group::Ephemeral
        } else {
            Group::App
        }
    }
}

/// `10s`, `1m20s`, `1.2s` as Go prints durations (roughly).
fn humantime(d: Duration) -> String {
    let secs = d.as_secs();
    if secs >= 60 {
        format!("{}m{}s", secs / 60, secs % 60)
    } else if secs >= 1 {
        format!("{secs}s")
    } else {
        format!("{}ms", d.as_millis())
    }
}
