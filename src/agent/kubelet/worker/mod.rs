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
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::debug;

use super::probes::ProbeState;
use super::status::ContainerRecord;
use super::Shared;
use crate::agent::runtime::ContainerSummary;

/// Grace period when neither the delete nor the pod names one.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(30);
/// Grace period for containers of pods that vanished while the agent was away.
pub const ORPHAN_GRACE: Duration = Duration::from_secs(10);
/// How often configMap and secret volumes are rewritten from their objects.
pub const VOLUME_REFRESH: Duration = Duration::from_secs(60);
/// Exit code reported for an instance found without a task (as upstream's "Unknown").
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
    /// When this kubelet first saw the pod (`kubelet_pod_start_duration_seconds`).
    seen: std::time::Instant,
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
            seen: std::time::Instant::now(),
        };
        worker.adopt(adopted);
        worker
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
    /// kubelet drops the sender.
    pub async fn run(mut self, mut desired: watch::Receiver<Option<Value>>) {
        let interval = self.shared.config.sync_interval;
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
            tokio::select! {
                changed = desired.changed() => if changed.is_err() { return },
                () = tokio::time::sleep(interval) => {}
            }
        }
    }

    /// Takes the pod as the API has it now (the next sync acts on it).
    pub fn update(&mut self, pod: Value) {
        self.pod = pod;
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
                if initialized {
                    self.sync_app_containers().await;
                    self.run_probes().await;
                }
            }
        } else {
            self.poll_containers().await;
        }
        self.post_status().await;
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

    fn termination_grace(&self) -> Duration {
        self.pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .map_or(DEFAULT_GRACE, Duration::from_secs)
    }

    fn record_mut(&mut self, init: bool, i: usize) -> &mut ContainerRecord {
        if init {
            &mut self.init[i]
        } else {
            &mut self.apps[i]
        }
    }

    fn field_path(&self, init: bool, name: &str) -> String {
        let field = if init { "initContainers" } else { "containers" };
        format!("spec.{field}{{{name}}}")
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
