//! One pod's worker: makes its sandbox (network namespace, address, /etc files, volumes),
//! runs its init and app containers under the restart policy with back-off, posts its
//! status when it changes, and tears it all down when the pod is deleted.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::container::{
    self, env_sources, pull_policy, PodContext, Sources, CONTAINER_IMAGE_LABEL,
    CONTAINER_KIND_LABEL, CONTAINER_NAME_LABEL, RESTART_COUNT_LABEL,
};
use super::pod_files::{self, PreparedVolume};
use super::probes::{run_probe, ProbeError, ProbeKind, ProbeSpec, ProbeState};
use super::status::{
    self, backoff_delay, next_step, ContainerRecord, Instance, InstanceState, PodFacts, Step,
    Terminated, Waiting, BACKOFF_RESET_AFTER,
};
use super::Shared;
use crate::agent::net::PodInterface;
use crate::agent::runtime::{ContainerState, ContainerSummary, PullPolicy, RuntimeError, SIGTERM};

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
    /// When the pod became active on this node (its startTime on the monotonic clock),
    /// for activeDeadlineSeconds.
    active_since: Option<Instant>,
    /// The pod ran past its activeDeadlineSeconds: its containers were stopped for good.
    deadline_exceeded: bool,
    /// The last container status read failed (the runtime may be down).
    status_failing: bool,
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
            active_since: None,
            deadline_exceeded: false,
            status_failing: false,
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

    /// Takes over containers found in the runtime: the newest instance of each container
    /// becomes its current one; older instances are stale and removed on the first sync.
    fn adopt(&mut self, mut found: Vec<ContainerSummary>) {
        let restart = |c: &ContainerSummary| -> u32 {
            c.labels
                .get(RESTART_COUNT_LABEL)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0)
        };
        found.sort_by_key(|c| std::cmp::Reverse(restart(c)));
        let previous = self.pod["status"].clone();
        for c in found {
            let name = c
                .labels
                .get(CONTAINER_NAME_LABEL)
                .cloned()
                .unwrap_or_default();
            let is_init = c.labels.get(CONTAINER_KIND_LABEL).map(String::as_str) == Some("init");
            let records = if is_init {
                &mut self.init
            } else {
                &mut self.apps
            };
            let Some(record) = records.iter_mut().find(|r| r.name == name) else {
                continue;
            };
            if record.current.is_some() {
                continue;
            }
            let container_id = format!("containerd://{}", c.id);
            let field = if is_init {
                "initContainerStatuses"
            } else {
                "containerStatuses"
            };
            let known = previous[field]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["name"] == name.as_str())
                .cloned()
                .unwrap_or_default();
            let same = known["containerID"] == container_id.as_str();
            let started_at = same
                .then(|| known["state"]["running"]["startedAt"].as_str())
                .flatten()
                .and_then(|s| s.parse().ok());
            if same {
                record.last_termination = parse_terminated(&known["lastState"]["terminated"]);
            }
            let state = match c.state {
                ContainerState::Running { .. } => InstanceState::Running,
                ContainerState::Exited {
                    exit_code,
                    finished_at,
                    oom_killed,
                } => {
                    let ago = chrono_ago(finished_at);
                    self.track.entry(name.clone()).or_default().exited_at =
                        Some(Instant::now().checked_sub(ago).unwrap_or_else(Instant::now));
                    InstanceState::Exited(Terminated {
                        exit_code: exit_code as i32,
                        reason: exit_reason(exit_code, oom_killed).into(),
                        message: None,
                        started_at,
                        finished_at,
                        container_id: container_id.clone(),
                    })
                }
                // No running task: the node rebooted, or an agent stopped between
                // create and start. The instance counts as ended; the restart policy
                // decides what comes next.
                ContainerState::Created | ContainerState::Unknown => {
                    self.track.entry(name.clone()).or_default().exited_at = Some(Instant::now());
                    InstanceState::Exited(Terminated {
                        exit_code: UNKNOWN_EXIT_CODE,
                        reason: "Unknown".into(),
                        message: Some(
                            "the container was not running when the agent started".into(),
                        ),
                        started_at,
                        finished_at: None,
                        container_id: container_id.clone(),
                    })
                }
            };
            let restart_count = restart(&c);
            let track = self.track.entry(name.clone()).or_default();
            // Crashes before this instance count towards its back-off.
            track.backoff_level = restart_count;
            let ran = chrono_ago(started_at);
            track.started = Some(Instant::now().checked_sub(ran).unwrap_or_else(Instant::now));
            if same {
                // Probe results carry over: a ready container stays ready.
                record.started = known["started"].as_bool().unwrap_or(true);
                if known["ready"] == true {
                    record.probe_ready = Some(true);
                }
            }
            if let Some(image) = c.labels.get(CONTAINER_IMAGE_LABEL) {
                record.image = image.clone();
            }
            record.current = Some(Instance {
                id: c.id.clone(),
                restart_count,
                image_id: known["imageID"].as_str().unwrap_or("").to_string(),
                started_at,
                state,
            });
            debug!(pod = %self.name(), container = %name, id = %c.id, "re-adopted container");
        }
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
        if !self.deadline_exceeded && !self.is_terminal() && self.past_active_deadline() {
            self.stop_past_deadline().await;
        }
        if !self.is_terminal() && !self.deadline_exceeded {
            if !self.sandbox_ready {
                self.ensure_sandbox().await;
            }
            if self.sandbox_ready && self.volumes_refreshed.elapsed() >= VOLUME_REFRESH {
                // ConfigMap and Secret changes reach running containers (files, not env).
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

    /// Fails the pod for running past its deadline: stops its containers for good.
    async fn stop_past_deadline(&mut self) {
        info!(pod = %self.name(), "pod ran past its activeDeadlineSeconds; stopping it");
        self.deadline_exceeded = true;
        self.message = Some((DEADLINE_REASON.into(), DEADLINE_MESSAGE.into()));
        self.event("Normal", DEADLINE_REASON, DEADLINE_MESSAGE, None)
            .await;
        let running: Vec<(String, String)> = self
            .init
            .iter()
            .chain(self.apps.iter())
            .filter(|r| r.is_running())
            .filter_map(|r| Some((r.name.clone(), r.current.as_ref()?.id.clone())))
            .collect();
        self.stop_containers(&running, self.termination_grace())
            .await;
        for r in self.init.iter_mut().chain(self.apps.iter_mut()) {
            r.waiting = None;
        }
    }

    /// Stops the `(name, id)` containers together (SIGTERM, SIGKILL after `grace`),
    /// with a Killing event for each.
    async fn stop_containers(&self, running: &[(String, String)], grace: Duration) {
        for (name, _) in running {
            let text = format!("Stopping container {name}");
            self.event("Normal", "Killing", &text, Some(name)).await;
        }
        let pod = self.name();
        let stops = running.iter().map(|(name, id)| {
            let (runtime, pod) = (self.shared.runtime.clone(), pod.clone());
            async move {
                if let Err(e) = runtime.stop(id, SIGTERM, grace).await {
                    warn!(%pod, container = %name, error = %e, "stopping container failed");
                }
            }
        });
        futures::future::join_all(stops).await;
    }

    async fn ensure_sandbox(&mut self) {
        if self.start_time.is_none() {
            self.start_time = Some(Utc::now());
            self.active_since = Some(Instant::now());
        }
        match self.make_sandbox().await {
            Ok(()) => {
                self.sandbox_ready = true;
                self.message = None;
            }
            Err((reason, message)) => {
                // Retried every sync: tell only when the problem changes.
                if self.message.as_ref() != Some(&(reason.clone(), message.clone())) {
                    warn!(pod = %self.name(), %reason, %message, "pod sandbox not ready");
                    self.event("Warning", &reason, &message, None).await;
                }
                self.message = Some((reason, message));
            }
        }
    }

    async fn make_sandbox(&mut self) -> Result<(), (String, String)> {
        let sandbox_err = |m: String| ("FailedCreatePodSandBox".to_string(), m);
        std::fs::create_dir_all(&self.pod_dir).map_err(|e| {
            sandbox_err(format!(
                "create pod directory {}: {e}",
                self.pod_dir.display()
            ))
        })?;
        let host_network = self.pod["spec"]["hostNetwork"].as_bool() == Some(true);
        let net = &self.shared.network;
        if host_network {
            self.pod_ip = Some(self.shared.config.host_ip);
        } else {
            let existing = net.pod_ip(&self.uid);
            let have_netns = crate::agent::net::is_netns(&self.netns);
            self.pod_ip = match existing {
                // Re-adopted: the pod keeps its address and interface untouched.
                Some(ip) if have_netns => Some(IpAddr::V4(ip)),
                _ => {
                    net.create_netns(&self.netns)
                        .await
                        .map_err(|e| sandbox_err(error_chain(&e)))?;
                    let iface = PodInterface::new(self.uid.clone(), self.netns.clone());
                    let ip = net
                        .attach_pod(&iface)
                        .await
                        .map_err(|e| sandbox_err(error_chain(&e)))?;
                    Some(IpAddr::V4(ip))
                }
            };
        }
        let cfg = &self.shared.config;
        if cfg.shared_ipc_uts && !host_network {
            let files = cfg.pod_namespaces(&self.uid);
            files
                .create(&pod_files::pod_hostname(&self.pod))
                .map_err(|e| sandbox_err(format!("create IPC/UTS namespaces: {e}")))?;
        }
        let hosts = pod_files::render_hosts(&self.pod, self.pod_ip, &cfg.dns.domain);
        let host_resolv = std::fs::read_to_string(&cfg.dns.host_resolv_conf).unwrap_or_default();
        let resolv = pod_files::render_resolv_conf(&self.pod, &cfg.dns, &host_resolv);
        let hostname = format!("{}\n", pod_files::pod_hostname(&self.pod));
        for (file, contents) in [
            ("etc-hosts", hosts),
            ("resolv.conf", resolv),
            ("hostname", hostname),
        ] {
            pod_files::write_if_changed(&self.pod_dir.join(file), contents.as_bytes())
                .map_err(|e| sandbox_err(error_chain(&e)))?;
        }
        self.prepare_volumes()
            .await
            .map_err(|m| ("FailedMount".to_string(), m))
    }

    async fn prepare_volumes(&mut self) -> Result<(), String> {
        let ns = self.namespace().to_string();
        for v in containers(&self.pod["spec"], "volumes") {
            let name = v["name"].as_str().unwrap_or("").to_string();
            let prepared = if v["emptyDir"].is_object() {
                let dir = pod_files::volume_dir(&self.pod_dir, "empty-dir", &name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("create emptyDir {}: {e}", dir.display()))?;
                PreparedVolume {
                    host_path: dir,
                    read_only: false,
                }
            } else if v["hostPath"].is_object() {
                pod_files::prepare_host_path(&name, &v["hostPath"]).map_err(|e| error_chain(&e))?
            } else if v["configMap"].is_object() || v["secret"].is_object() {
                let (kind, plural, source, obj_name) = if v["configMap"].is_object() {
                    let s = &v["configMap"];
                    (
                        "ConfigMap",
                        "configmaps",
                        s,
                        s["name"].as_str().unwrap_or(""),
                    )
                } else {
                    let s = &v["secret"];
                    (
                        "Secret",
                        "secrets",
                        s,
                        s["secretName"].as_str().unwrap_or(""),
                    )
                };
                let object = self
                    .shared
                    .api
                    .get_object(plural, &ns, obj_name)
                    .await
                    .map_err(|e| {
                        format!(
                            "MountVolume.SetUp failed for volume {name:?}: {}",
                            error_chain(&e)
                        )
                    })?;
                let data = match object {
                    Some(o) => pod_files::object_data(kind, &o),
                    None if source["optional"].as_bool() == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(format!(
                        "MountVolume.SetUp failed for volume {name:?}: {} \"{obj_name}\" not found",
                        kind.to_lowercase()
                    ))
                    }
                };
                let files = pod_files::projected_files(&name, source, &data)
                    .map_err(|e| error_chain(&e))?;
                let sub = if kind == "Secret" {
                    "secret"
                } else {
                    "configmap"
                };
                let dir = pod_files::volume_dir(&self.pod_dir, sub, &name);
                pod_files::write_projected(&dir, &files).map_err(|e| error_chain(&e))?;
                PreparedVolume {
                    host_path: dir,
                    read_only: true,
                }
            } else {
                return Err(format!(
                    "volume {name:?}: only emptyDir, hostPath, configMap and secret volumes are supported"
                ));
            };
            self.volumes
                .insert(name, (prepared.host_path, prepared.read_only));
        }
        Ok(())
    }

    /// Reads the runtime state of every instance that may still change.
    async fn poll_containers(&mut self) {
        let runtime = self.shared.runtime.clone();
        let pod = self.name();
        let mut exits = Vec::new();
        for record in self.init.iter_mut().chain(self.apps.iter_mut()) {
            let Some(instance) = record.current.as_mut() else {
                continue;
            };
            if matches!(instance.state, InstanceState::Exited(_)) {
                continue;
            }
            let state = match runtime.status(&instance.id).await {
                Ok(s) => s.state,
                Err(RuntimeError::ContainerNotFound { .. }) => ContainerState::Exited {
                    exit_code: 137,
                    finished_at: None,
                    oom_killed: false,
                },
                Err(e) => {
                    // Told once per outage, not every sync (containerd may be restarting).
                    if std::mem::replace(&mut self.status_failing, true) {
                        debug!(%pod, container = %record.name, error = %e, "container status failed");
                    } else {
                        warn!(%pod, container = %record.name, error = %e, "container status failed");
                    }
                    continue;
                }
            };
            self.status_failing = false;
            match state {
                ContainerState::Running { .. } => instance.state = InstanceState::Running,
                ContainerState::Exited {
                    exit_code,
                    finished_at,
                    oom_killed,
                } => {
                    info!(%pod, container = %record.name, exit_code, "container exited");
                    instance.state = InstanceState::Exited(Terminated {
                        exit_code: exit_code as i32,
                        reason: exit_reason(exit_code, oom_killed).into(),
                        message: None,
                        started_at: instance.started_at,
                        finished_at: finished_at.or_else(|| Some(Utc::now())),
                        container_id: format!("containerd://{}", instance.id),
                    });
                    let ran = instance
                        .started_at
                        .zip(finished_at)
                        .and_then(|(s, f)| (f - s).to_std().ok())
                        .unwrap_or(Duration::ZERO);
                    exits.push((record.name.clone(), ran));
                }
                ContainerState::Created | ContainerState::Unknown => {}
            }
        }
        for (name, ran) in exits {
            let t = self.track.entry(name).or_default();
            t.exited_at = Some(Instant::now());
            t.backoff_reported = false;
            if ran >= BACKOFF_RESET_AFTER {
                t.backoff_level = 0;
            }
        }
    }

    /// Runs init containers in order; true once all have completed.
    async fn sync_init_containers(&mut self) -> bool {
        let specs = containers(&self.pod["spec"], "initContainers");
        let policy = match self.policy().as_str() {
            "Never" => "Never",
            // Init containers restart on failure under Always and OnFailure.
            _ => "OnFailure",
        };
        for (i, spec) in specs.iter().enumerate() {
            let record = &self.init[i];
            if record.terminated().is_some_and(|t| t.exit_code == 0) {
                continue;
            }
            if record.is_running() {
                return false;
            }
            self.advance(true, i, spec, policy).await;
            return false;
        }
        true
    }

    async fn sync_app_containers(&mut self) {
        let specs = containers(&self.pod["spec"], "containers");
        let policy = self.policy();
        for (i, spec) in specs.iter().enumerate() {
            let record = &self.apps[i];
            if record.current.is_some() && record.image != spec["image"].as_str().unwrap_or("") {
                if record.is_running() {
                    self.stop_changed(i).await;
                } else if record
                    .terminated()
                    .is_some_and(|t| status::should_restart(&policy, t.exit_code))
                {
                    // Waiting out a crash back-off: the new image need not (upstream's
                    // back-off is per container definition).
                    let name = record.name.clone();
                    self.track.entry(name).or_default().definition_changed = true;
                }
            }
            self.advance(false, i, spec, &policy).await;
        }
    }

    /// Stops running app container `i` whose spec names another image than it was made
    /// from; [`Self::advance`] then starts its successor.
    async fn stop_changed(&mut self, i: usize) {
        let name = self.apps[i].name.clone();
        let Some(id) = self.apps[i].current.as_ref().map(|c| c.id.clone()) else {
            return;
        };
        let text = format!("Container {name} definition changed, will be restarted");
        self.event("Normal", "Killing", &text, Some(&name)).await;
        info!(pod = %self.name(), container = %name, "container definition changed; restarting it");
        self.track
            .entry(name.clone())
            .or_default()
            .definition_changed = true;
        let grace = self.termination_grace();
        if let Err(e) = self.shared.runtime.stop(&id, SIGTERM, grace).await {
            warn!(pod = %self.name(), container = %name, error = %e, "stopping the changed container failed");
        }
        self.poll_containers().await;
    }

    fn termination_grace(&self) -> Duration {
        self.pod["spec"]["terminationGracePeriodSeconds"]
            .as_u64()
            .map_or(DEFAULT_GRACE, Duration::from_secs)
    }

    /// Decides and performs the next step for one container.
    async fn advance(&mut self, init: bool, i: usize, spec: &Value, policy: &str) {
        let record = if init { &self.init[i] } else { &self.apps[i] };
        let name = record.name.clone();
        let track = self.track.get(&name).cloned().unwrap_or_default();
        let exited_ago = track.exited_at.map(|t| t.elapsed());
        let step = match record.terminated() {
            Some(_) if track.definition_changed => Step::Start {
                restart_count: record.restart_count() + 1,
            },
            _ => next_step(record, policy, track.backoff_level, exited_ago),
        };
        match step {
            Step::Keep => {
                let record = self.record_mut(init, i);
                if record.terminated().is_some() || record.is_running() {
                    record.waiting = None;
                }
            }
            Step::BackOff { .. } => {
                let delay = backoff_delay(track.backoff_level);
                let message = format!(
                    "back-off {} restarting failed container={name} pod={}_{}({})",
                    humantime(delay),
                    self.pod_name(),
                    self.namespace(),
                    self.uid
                );
                self.record_mut(init, i).waiting = Some(Waiting {
                    reason: "CrashLoopBackOff".into(),
                    message: message.clone(),
                });
                if !track.backoff_reported {
                    self.track.entry(name.clone()).or_default().backoff_reported = true;
                    let msg = "Back-off restarting failed container";
                    self.event(
                        "Warning",
                        "BackOff",
                        &format!("{msg} {name} in pod {}", self.name()),
                        Some(&name),
                    )
                    .await;
                }
            }
            Step::Start { restart_count } => {
                self.start_instance(init, i, spec, restart_count).await;
            }
        }
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

    async fn start_instance(&mut self, init: bool, i: usize, spec: &Value, restart_count: u32) {
        let name = spec["name"].as_str().unwrap_or("").to_string();
        let image = spec["image"].as_str().unwrap_or("").to_string();
        let now = Instant::now();
        let track = self.track.entry(name.clone()).or_default().clone();
        if track.pull_retry_at.is_some_and(|t| now < t) {
            let record = self.record_mut(init, i);
            let failed_pull = record
                .waiting
                .as_ref()
                .is_some_and(|w| w.reason == "ErrImagePull");
            if failed_pull {
                // As upstream: the back-off names the pull error it waits out.
                let backoff = format!("Back-off pulling image {image:?}");
                record.waiting = Some(Waiting {
                    reason: "ImagePullBackOff".into(),
                    message: format!(
                        "{backoff}: ErrImagePull: {}",
                        track.pull_error.as_deref().unwrap_or("")
                    ),
                });
                self.event("Normal", "BackOff", &backoff, Some(&name)).await;
                self.event("Warning", "Failed", "Error: ImagePullBackOff", Some(&name))
                    .await;
            }
            return;
        }
        let image_id = match self.pull(init, &name, spec, &image).await {
            Ok(id) => id,
            Err((waiting, error)) => {
                let error_event = format!("Error: {}", waiting.reason);
                self.event("Warning", "Failed", &error_event, Some(&name))
                    .await;
                let t = self.track.entry(name.clone()).or_default();
                t.pull_failures += 1;
                t.pull_retry_at = Some(now + backoff_delay(t.pull_failures));
                t.pull_error = Some(error);
                self.record_mut(init, i).waiting = Some(waiting);
                return;
            }
        };
        {
            let t = self.track.entry(name.clone()).or_default();
            t.pull_failures = 0;
            t.pull_retry_at = None;
            t.pull_error = None;
        }
        let config = match self.build_config(spec, restart_count, init).await {
            Ok(c) => c,
            Err(message) => {
                // Retried every sync: tell only when the problem changes.
                let repeated = self.record_mut(init, i).waiting.as_ref().is_some_and(|w| {
                    w.reason == "CreateContainerConfigError" && w.message == message
                });
                if !repeated {
                    self.event(
                        "Warning",
                        "Failed",
                        &format!("Error: {message}"),
                        Some(&name),
                    )
                    .await;
                }
                self.record_mut(init, i).waiting = Some(Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message,
                });
                return;
            }
        };
        // The previous instance gives way: its end becomes lastState.
        let old = self.record_mut(init, i).current.take();
        if let Some(old) = &old {
            if let InstanceState::Exited(t) = &old.state {
                self.record_mut(init, i).last_termination = Some(t.clone());
            }
            if let Err(e) = self.shared.runtime.remove(&old.id).await {
                warn!(pod = %self.name(), container = %name, error = %e, "removing the old instance failed");
            }
            let t = self.track.entry(name.clone()).or_default();
            // A new definition starts a new back-off; a crash of the same one raises it.
            t.backoff_level = if t.definition_changed {
                0
            } else {
                t.backoff_level + 1
            };
            t.definition_changed = false;
            t.exited_at = None;
        }
        let runtime = self.shared.runtime.clone();
        let mut created = runtime.create_container(&config).await;
        if let Err(RuntimeError::Containerd { source, .. }) = &created {
            if source.code() == containerd_client::tonic::Code::AlreadyExists {
                // A leftover of an agent that stopped between create and record.
                let _ = runtime.remove(&config.id).await;
                created = runtime.create_container(&config).await;
            }
        }
        if let Err(e) = created {
            let message = error_chain(&e);
            self.event(
                "Warning",
                "Failed",
                &format!("Error: {message}"),
                Some(&name),
            )
            .await;
            let record = self.record_mut(init, i);
            record.waiting = Some(Waiting {
                reason: "CreateContainerError".into(),
                message,
            });
            if let Some(old) = old {
                // Keep counting restarts from the old instance.
                record.current = Some(Instance {
                    state: InstanceState::Exited(record.last_termination.clone().unwrap_or(
                        Terminated {
                            exit_code: 0,
                            reason: "Error".into(),
                            message: None,
                            started_at: None,
                            finished_at: None,
                            container_id: format!("containerd://{}", old.id),
                        },
                    )),
                    ..old
                });
                self.track.entry(name.clone()).or_default().exited_at = Some(Instant::now());
            }
            return;
        }
        self.event(
            "Normal",
            "Created",
            &format!("Created container {name}"),
            Some(&name),
        )
        .await;
        let started = runtime.start(&config.id).await;
        let started_at = Utc::now();
        let state = match started {
            Ok(_) => {
                self.event(
                    "Normal",
                    "Started",
                    &format!("Started container {name}"),
                    Some(&name),
                )
                .await;
                InstanceState::Running
            }
            Err(e) => {
                let message = error_chain(&e);
                self.event(
                    "Warning",
                    "Failed",
                    &format!("Error: {message}"),
                    Some(&name),
                )
                .await;
                self.track.entry(name.clone()).or_default().exited_at = Some(Instant::now());
                InstanceState::Exited(Terminated {
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: Some(message),
                    started_at: None,
                    finished_at: Some(started_at),
                    container_id: format!("containerd://{}", config.id),
                })
            }
        };
        {
            let t = self.track.entry(name.clone()).or_default();
            t.started = Some(Instant::now());
            t.probes.clear();
        }
        let record = self.record_mut(init, i);
        record.image = image;
        record.waiting = None;
        record.started = ProbeSpec::of(spec, ProbeKind::Startup).is_none();
        record.probe_ready = ProbeSpec::of(spec, ProbeKind::Readiness).map(|_| false);
        record.current = Some(Instance {
            id: config.id.clone(),
            restart_count,
            image_id,
            started_at: Some(started_at),
            state,
        });
    }

    /// Makes the image present; the image ID on success, the waiting state and the
    /// error on failure.
    async fn pull(
        &self,
        init: bool,
        name: &str,
        spec: &Value,
        image: &str,
    ) -> Result<String, (Waiting, String)> {
        let policy = pull_policy(spec);
        let runtime = &self.shared.runtime;
        let field = self.field_path(init, name);
        if policy != PullPolicy::Always {
            if let Ok(info) = runtime.ensure_image(image, PullPolicy::Never, None).await {
                self.event_at(
                    "Normal",
                    "Pulled",
                    &format!("Container image {image:?} already present on machine"),
                    &field,
                )
                .await;
                return Ok(image_id(&info));
            }
        }
        if policy == PullPolicy::Never {
            let message =
                format!("Container image {image:?} is not present with pull policy of Never");
            self.event_at("Warning", "ErrImageNeverPull", &message, &field)
                .await;
            return Err((
                Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message: message.clone(),
                },
                message,
            ));
        }
        self.event_at(
            "Normal",
            "Pulling",
            &format!("Pulling image {image:?}"),
            &field,
        )
        .await;
        let auth = self.pull_auth(image).await;
        let begun = Instant::now();
        match runtime.ensure_image(image, policy, auth.as_ref()).await {
            Ok(info) => {
                let took = begun.elapsed();
                self.event_at(
                    "Normal",
                    "Pulled",
                    &format!("Successfully pulled image {image:?} in {}", humantime(took)),
                    &field,
                )
                .await;
                Ok(image_id(&info))
            }
            Err(e) => {
                let error = error_chain(&e);
                let message = format!("Failed to pull image {image:?}: {error}");
                self.event_at("Warning", "Failed", &message, &field).await;
                Err((
                    Waiting {
                        reason: "ErrImagePull".into(),
                        message,
                    },
                    error,
                ))
            }
        }
    }

    /// Registry credentials for `image` from the pod's imagePullSecrets (missing or
    /// unreadable Secrets are skipped, as upstream does).
    async fn pull_auth(&self, image: &str) -> Option<crate::agent::runtime::RegistryAuth> {
        let registry = crate::agent::runtime::Reference::parse(image)
            .ok()?
            .registry;
        let mut secrets = Vec::new();
        for s in containers(&self.pod["spec"], "imagePullSecrets") {
            let Some(name) = s["name"].as_str() else {
                continue;
            };
            match self
                .shared
                .api
                .get_object("secrets", self.namespace(), name)
                .await
            {
                Ok(Some(secret)) => secrets.push(secret),
                Ok(None) => warn!(pod = %self.name(), secret = name, "image pull secret not found"),
                Err(e) => {
                    warn!(pod = %self.name(), secret = name, error = %e, "reading image pull secret failed")
                }
            }
        }
        container::registry_auth(&secrets, &registry)
    }

    async fn build_config(
        &self,
        spec: &Value,
        restart_count: u32,
        init: bool,
    ) -> Result<crate::agent::runtime::ContainerConfig, String> {
        let mut sources = Sources::new();
        for (kind, name) in env_sources(spec) {
            let plural = if kind == "Secret" {
                "secrets"
            } else {
                "configmaps"
            };
            let object = self
                .shared
                .api
                .get_object(plural, self.namespace(), &name)
                .await
                .map_err(|e| error_chain(&e))?;
            sources.insert((kind, name), object);
        }
        let ns = self.namespace().to_string();
        let mut services = self
            .shared
            .api
            .list_services(&ns)
            .await
            .map_err(|e| error_chain(&e))?;
        if ns != "default" {
            let master = self
                .shared
                .api
                .list_services("default")
                .await
                .map_err(|e| error_chain(&e))?;
            services.extend(
                master
                    .into_iter()
                    .filter(|s| s["metadata"]["name"] == "kubernetes"),
            );
        }
        let etc = [
            (self.pod_dir.join("etc-hosts"), "/etc/hosts"),
            (self.pod_dir.join("resolv.conf"), "/etc/resolv.conf"),
            (self.pod_dir.join("hostname"), "/etc/hostname"),
        ];
        let host_network = self.pod["spec"]["hostNetwork"].as_bool() == Some(true);
        let etc_files = if host_network { &etc[..0] } else { &etc[..] };
        let cfg = &self.shared.config;
        let files = cfg.pod_namespaces(&self.uid);
        let shared = cfg
            .shared_ipc_uts
            .then_some((files.ipc.as_path(), files.uts.as_path()));
        let namespaces = container::pod_namespaces(&self.pod, &self.netns, shared);
        let ctx = PodContext {
            pod: &self.pod,
            pod_dir: &self.pod_dir,
            namespaces: &namespaces,
            pod_ip: self.pod_ip,
            host_ip: self.shared.config.host_ip,
            node_name: &self.shared.config.node_name,
            volumes: &self.volumes,
            etc_files,
            sources: &sources,
            services: &services,
        };
        container::container_config(&ctx, spec, restart_count, init)
    }

    /// Runs the probes that are due for running app containers: startup first, then
    /// liveness (a failed one restarts the container) and readiness.
    async fn run_probes(&mut self) {
        let specs = containers(&self.pod["spec"], "containers");
        for (i, spec) in specs.iter().enumerate() {
            let Some(record) = self.apps.get(i) else {
                continue;
            };
            let Some(id) = record
                .is_running()
                .then(|| record.current.as_ref().map(|c| c.id.clone()))
                .flatten()
            else {
                continue;
            };
            let name = record.name.clone();
            let kinds: &[ProbeKind] = if record.started {
                &[ProbeKind::Liveness, ProbeKind::Readiness]
            } else {
                &[ProbeKind::Startup]
            };
            for &kind in kinds {
                let Some(probe) = ProbeSpec::of(spec, kind) else {
                    continue;
                };
                let now = Instant::now();
                let track = self.track.entry(name.clone()).or_default();
                let started = *track.started.get_or_insert(now);
                let state = track.probes.entry(kind.field()).or_default();
                if !state.due(&probe, started, now) {
                    continue;
                }
                state.last_run = Some(now);
                let result =
                    run_probe(&probe, spec, &id, self.pod_ip, self.shared.runtime.as_ref()).await;
                match &result {
                    Ok(()) => {}
                    Err(ProbeError::Failed(message)) => {
                        let text = format!("{} probe failed: {message}", kind.name());
                        self.event("Warning", "Unhealthy", &text, Some(&name)).await;
                    }
                    Err(ProbeError::Unknown(message)) => {
                        debug!(pod = %self.name(), container = %name, probe = kind.name(), %message, "probe result unknown; ignored");
                        continue;
                    }
                }
                let track = self.track.entry(name.clone()).or_default();
                let state = track.probes.entry(kind.field()).or_default();
                let Some(settled) = state.record(&probe, result.is_ok(), Instant::now()) else {
                    continue;
                };
                match (kind, settled) {
                    (ProbeKind::Readiness, ready) => self.apps[i].probe_ready = Some(ready),
                    (ProbeKind::Startup, true) => self.apps[i].started = true,
                    (ProbeKind::Liveness, true) => {}
                    (ProbeKind::Liveness | ProbeKind::Startup, false) => {
                        let text = format!(
                            "Container {name} failed {} probe, will be restarted",
                            kind.name().to_lowercase()
                        );
                        self.event("Normal", "Killing", &text, Some(&name)).await;
                        track_reset(&mut self.track, &name);
                        let grace = self.termination_grace();
                        if let Err(e) = self.shared.runtime.stop(&id, SIGTERM, grace).await {
                            warn!(pod = %self.name(), container = %name, error = %e, "stopping unhealthy container failed");
                        }
                        break;
                    }
                }
            }
        }
    }

    fn facts(&self) -> PodFacts<'_> {
        let initialized = self
            .init
            .iter()
            .all(|r| r.terminated().is_some_and(|t| t.exit_code == 0));
        PodFacts {
            pod: &self.pod,
            pod_ip: self.pod_ip,
            host_ip: self.shared.config.host_ip,
            start_time: self.start_time.unwrap_or_else(Utc::now),
            now: Utc::now(),
            initialized,
            message: self.message.clone(),
            failed: self.deadline_exceeded,
            previous: self.last_posted.as_ref().unwrap_or(&self.pod["status"]),
        }
    }

    /// The status as it would be posted now.
    pub fn status(&self) -> Value {
        status::pod_status(&self.facts(), &self.init, &self.apps)
    }

    async fn post_status(&mut self) {
        if self.is_terminal()
            && self.last_posted.is_none()
            && self.pod["status"]["phase"].is_string()
        {
            // Ended before this agent started: the stored status stays as it is.
            let stored = self.pod["status"]["phase"].as_str().unwrap_or("");
            if stored == "Succeeded" || stored == "Failed" {
                return;
            }
        }
        let status = self.status();
        let unchanged_stored = !status::status_changed(&self.pod["status"], &status);
        let unchanged_posted = self
            .last_posted
            .as_ref()
            .is_some_and(|p| !status::status_changed(p, &status));
        if unchanged_stored || unchanged_posted {
            return;
        }
        let (ns, name) = (self.namespace().to_string(), self.pod_name().to_string());
        let changed: Vec<&String> = status
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(k, v)| &&self.pod["status"][k.as_str()] != v)
            .map(|(k, _)| k)
            .collect();
        debug!(pod = %self.name(), ?changed, "posting pod status");
        match self.shared.api.patch_status(&ns, &name, &status).await {
            Ok(()) => {
                debug!(pod = %self.name(), phase = %status["phase"], "pod status updated");
                self.last_posted = Some(status);
            }
            Err(e) => warn!(pod = %self.name(), error = %e, "pod status update failed"),
        }
    }

    /// Graceful termination of a pod being deleted, then the final delete in the API.
    async fn terminate_and_delete(&mut self) {
        let meta = &self.pod["metadata"];
        let grace = meta["deletionGracePeriodSeconds"]
            .as_u64()
            .or_else(|| self.pod["spec"]["terminationGracePeriodSeconds"].as_u64())
            .map_or(DEFAULT_GRACE, Duration::from_secs);
        self.teardown(grace).await;
        let (ns, name) = (self.namespace().to_string(), self.pod_name().to_string());
        loop {
            match self.shared.api.delete_pod(&ns, &name, &self.uid).await {
                Ok(()) => {
                    info!(pod = %self.name(), "pod deleted");
                    return;
                }
                Err(e) => {
                    warn!(pod = %self.name(), error = %e, "final pod delete failed; retrying");
                    tokio::time::sleep(DELETE_RETRY).await;
                }
            }
        }
    }

    /// Stops every container (SIGTERM, SIGKILL after `grace`), removes them, unplugs
    /// the pod from the network and removes its files. Idempotent.
    pub async fn teardown(&mut self, grace: Duration) {
        let pod = self.name();
        let runtime = self.shared.runtime.clone();
        let mut ids: Vec<(String, String)> = Vec::new();
        for r in self.init.iter().chain(self.apps.iter()) {
            if let Some(i) = &r.current {
                ids.push((r.name.clone(), i.id.clone()));
            }
        }
        // Also instances not tracked (stale ones a previous agent left).
        if let Ok(all) = runtime.list_containers().await {
            for c in all {
                if c.labels.get(container::POD_UID_LABEL) == Some(&self.uid)
                    && !ids.iter().any(|(_, id)| *id == c.id)
                {
                    let name = c
                        .labels
                        .get(CONTAINER_NAME_LABEL)
                        .cloned()
                        .unwrap_or_default();
                    ids.push((name, c.id));
                }
            }
        }
        let mut running = Vec::new();
        for entry in &ids {
            if matches!(
                runtime.status(&entry.1).await.map(|s| s.state),
                Ok(ContainerState::Running { .. })
            ) {
                running.push(entry.clone());
            }
        }
        self.stop_containers(&running, grace).await;
        for (name, id) in &ids {
            if let Err(e) = runtime.remove(id).await {
                warn!(%pod, container = %name, error = %e, "removing container failed");
            }
        }
        remove_pod_cgroups(&self.shared.config.cgroup_root, &self.uid);
        let net = &self.shared.network;
        let iface = PodInterface::new(self.uid.clone(), self.netns.clone());
        if let Err(e) = net.detach_pod(&iface).await {
            warn!(%pod, error = %error_chain(&e), "detaching pod network failed");
        }
        if let Err(e) = net.delete_netns(&self.netns).await {
            warn!(%pod, error = %error_chain(&e), "deleting network namespace failed");
        }
        if self.shared.config.shared_ipc_uts {
            if let Err(e) = self.shared.config.pod_namespaces(&self.uid).delete() {
                warn!(%pod, error = %e, "deleting IPC/UTS namespaces failed");
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.pod_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(%pod, dir = %self.pod_dir.display(), error = %e, "removing pod directory failed");
            }
        }
        self.sandbox_ready = false;
        info!(%pod, "pod torn down");
    }

    async fn event(&self, kind: &str, reason: &str, message: &str, container: Option<&str>) {
        let field = container.map(|c| {
            let init = self.init.iter().any(|r| r.name == c);
            self.field_path(init, c)
        });
        self.event_at(kind, reason, message, field.as_deref().unwrap_or(""))
            .await;
    }

    async fn event_at(&self, kind: &str, reason: &str, message: &str, field_path: &str) {
        let ns = self.namespace();
        if ns.is_empty() {
            // An orphan known only by its uid: there is no pod to attach the event to.
            return;
        }
        let now = status::timestamp(Utc::now());
        let suffix = uuid::Uuid::new_v4().simple().to_string();
        let mut involved = json!({
            "kind": "Pod", "apiVersion": "v1", "namespace": ns,
            "name": self.pod_name(), "uid": self.uid,
        });
        if !field_path.is_empty() {
            involved["fieldPath"] = json!(field_path);
        }
        let node = &self.shared.config.node_name;
        let event = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": format!("{}.{}", self.pod_name(), &suffix[..16]), "namespace": ns},
            "involvedObject": involved,
            "reason": reason,
            "message": message,
            "type": kind,
            "source": {"component": "kubelet", "host": node},
            "reportingComponent": "kubelet",
            "reportingInstance": node,
            "firstTimestamp": now,
            "lastTimestamp": now,
            "count": 1,
        });
        if let Err(e) = self.shared.api.create_event(ns, &event).await {
            debug!(pod = %self.name(), %reason, error = %e, "event not recorded");
        }
    }
}

fn track_reset(track: &mut BTreeMap<String, Track>, name: &str) {
    if let Some(t) = track.get_mut(name) {
        t.probes.clear();
    }
}

/// Removes the (empty) cgroup `orc/pod<uid>` the pod's containers were made in, in the
/// unified hierarchy and in every v1 hierarchy. Best effort.
fn remove_pod_cgroups(root: &std::path::Path, uid: &str) {
    let rel = format!("orc/pod{uid}");
    let _ = std::fs::remove_dir(root.join(&rel));
    for h in std::fs::read_dir(root).into_iter().flatten().flatten() {
        let _ = std::fs::remove_dir(h.path().join(&rel));
    }
}

fn parse_terminated(v: &Value) -> Option<Terminated> {
    let obj = v.as_object()?;
    Some(Terminated {
        exit_code: obj.get("exitCode")?.as_i64()? as i32,
        reason: v["reason"].as_str().unwrap_or("").to_string(),
        message: v["message"].as_str().map(str::to_string),
        started_at: v["startedAt"].as_str().and_then(|s| s.parse().ok()),
        finished_at: v["finishedAt"].as_str().and_then(|s| s.parse().ok()),
        container_id: v["containerID"].as_str().unwrap_or("").to_string(),
    })
}

fn image_id(info: &crate::agent::runtime::ImageInfo) -> String {
    let repo = info
        .name
        .rsplit_once(':')
        .map_or(info.name.as_str(), |(r, tag)| {
            if tag.contains('/') {
                info.name.as_str()
            } else {
                r
            }
        });
    format!("{repo}@{}", info.digest)
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

/// An error with its sources: "what failed: why".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
