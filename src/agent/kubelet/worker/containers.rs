//! Init and app containers under the restart policy: runtime state polled, the next step
//! decided (keep, back off, start), and a new instance started step by step.

use std::path::Path;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::images::PulledImage;
use super::{containers, error_chain, exit_reason, humantime, Group, PodWorker, UNKNOWN_EXIT_CODE};
use crate::agent::kubelet::container::{self, env_sources, PodContext, Sources};
use crate::agent::kubelet::host_privileges;
use crate::agent::kubelet::probes::{ProbeKind, ProbeSpec};
use crate::agent::kubelet::status::{
    self, backoff_delay, next_step, Instance, InstanceState, Step, Terminated, Waiting,
    BACKOFF_RESET_AFTER,
};
use crate::agent::runtime::{
    ContainerConfig, ContainerState, ContainerStatus, NamespaceMode, RuntimeError, SIGTERM,
};

impl PodWorker {
    /// Reads the runtime state of every instance that may still change.
    pub(super) async fn poll_containers(&mut self) {
        let runtime = self.shared.runtime.clone();
        let pod = self.name();
        let mut exits = Vec::new();
        for record in self
            .init
            .iter_mut()
            .chain(self.apps.iter_mut())
            .chain(self.ephemeral.iter_mut())
        {
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
            let state = match state {
                // A started container whose task is gone without an exit status (its
                // shim died, with the other containers it served): it ended, with the
                // exit code of a container found without a task (containerd's too).
                ContainerState::Created if matches!(instance.state, InstanceState::Running) => {
                    ContainerState::Exited {
                        exit_code: UNKNOWN_EXIT_CODE as u32,
                        finished_at: None,
                        oom_killed: false,
                    }
                }
                state => state,
            };
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

    /// Runs init containers in order; true once all have completed. A sidecar (an init
    /// container with `restartPolicy: Always`) lets the next one start once it has
    /// started (its startup probe passed), and is restarted whenever it exits, also
    /// after initialization.
    pub(super) async fn sync_init_containers(&mut self) -> bool {
        let specs = containers(&self.pod["spec"], "initContainers");
        let policy = match self.policy().as_str() {
            "Never" => "Never",
            // Init containers restart on failure under Always and OnFailure.
            _ => "OnFailure",
        };
        // Once an app container was made, initialization is over for good (upstream):
        // only the sidecars are kept running.
        if self.app_made() {
            for (i, spec) in specs.iter().enumerate() {
                if status::is_sidecar(spec) && !self.init[i].is_running() && !self.finishing() {
                    self.advance(Group::Init, i, spec, "Always").await;
                }
            }
            return true;
        }
        for (i, spec) in specs.iter().enumerate() {
            let record = &self.init[i];
            if status::is_sidecar(spec) {
                if record.is_running() {
                    if record.started {
                        continue;
                    }
                    return false;
                }
                self.advance(Group::Init, i, spec, "Always").await;
                return false;
            }
            if record.terminated().is_some_and(|t| t.exit_code == 0) {
                continue;
            }
            if record.is_running() {
                return false;
            }
            self.advance(Group::Init, i, spec, policy).await;
            return false;
        }
        true
    }

    /// Whether the app containers have all ended for good (the pod is done, under
    /// `restartPolicy` Never or OnFailure): its sidecars are then stopped, not restarted.
    pub(super) fn finishing(&self) -> bool {
        let phase = status::pod_phase(&self.apps, &self.policy());
        phase == "Succeeded" || phase == "Failed"
    }

    /// Stops the running sidecars of a pod whose app containers have all ended, in the
    /// reverse of their order (upstream's kubelet).
    pub(super) async fn stop_sidecars_when_done(&mut self) {
        if !self.finishing() {
            return;
        }
        let specs = containers(&self.pod["spec"], "initContainers");
        for i in (0..specs.len()).rev() {
            if !status::is_sidecar(&specs[i]) || !self.init[i].is_running() {
                continue;
            }
            let name = self.init[i].name.clone();
            let Some(id) = self.init[i].current.as_ref().map(|c| c.id.clone()) else {
                continue;
            };
            self.event(
                "Normal",
                "Killing",
                &format!("Stopping container {name}"),
                Some(&name),
            )
            .await;
            let grace = self.termination_grace();
            if let Err(e) = self.shared.runtime.stop(&id, SIGTERM, grace).await {
                warn!(pod = %self.name(), container = %name, error = %e, "stopping the sidecar failed");
            }
        }
        self.poll_containers().await;
    }

    pub(super) async fn sync_app_containers(&mut self) {
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
            self.advance(Group::App, i, spec, &policy).await;
        }
    }

    /// Starts each ephemeral container that has not run yet, once: whatever way it
    /// ends, it is never restarted (as upstream). They may start before the init
    /// containers have completed.
    pub(super) async fn sync_ephemeral_containers(&mut self) {
        for spec in containers(&self.pod["spec"], "ephemeralContainers") {
            let name = spec["name"].as_str().unwrap_or("");
            let Some(i) = self.ephemeral.iter().position(|r| r.name == name) else {
                continue;
            };
            if self.ephemeral[i].current.is_none() {
                self.start_instance(Group::Ephemeral, i, &spec, 0).await;
            }
        }
    }

    /// The PID namespace of the running container `target` (an ephemeral container's
    /// `targetContainerName` joins it, as containerd's CRI does for the `TARGET` mode).
    async fn target_pid_namespace(&self, target: &str) -> Result<NamespaceMode, String> {
        let instance = self
            .init
            .iter()
            .chain(self.apps.iter())
            .find(|r| r.name == target)
            .and_then(|r| r.current.as_ref())
            .map(|i| i.id.clone());
        let not_running = || format!("target container {target:?} is not running");
        let id = instance.ok_or_else(not_running)?;
        match self.shared.runtime.status(&id).await {
            Ok(ContainerStatus {
                state: ContainerState::Running { pid },
                ..
            }) => Ok(NamespaceMode::Path(format!("/proc/{pid}/ns/pid").into())),
            Ok(_) => Err(not_running()),
            Err(e) => Err(format!(
                "failed to find the process of target container {target:?}: {}",
                error_chain(&e)
            )),
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

    /// Decides and performs the next step for one container.
    pub(super) async fn advance(&mut self, group: Group, i: usize, spec: &Value, policy: &str) {
        let record = self.record(group, i);
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
                let record = self.record_mut(group, i);
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
                self.record_mut(group, i).waiting = Some(Waiting {
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
                self.start_instance(group, i, spec, restart_count).await;
            }
        }
    }

    /// Starts a new instance of container `i`: pull, config, the previous instance gives
    /// way, create, start, record. A step that fails leaves the container waiting with
    /// the reason and is retried on a later sync.
    async fn start_instance(&mut self, group: Group, i: usize, spec: &Value, restart_count: u32) {
        let name = spec["name"].as_str().unwrap_or("").to_string();
        let image = spec["image"].as_str().unwrap_or("").to_string();
        let now = Instant::now();
        if self
            .waiting_out_pull_backoff(group, i, &name, &image, now)
            .await
        {
            return;
        }
        // The image lookup (or pull) and the config (API reads for env sources and
        // service variables) do not depend on each other.
        let (pulled, built) = tokio::join!(
            self.pull(group, &name, spec, &image),
            self.build_config(spec, restart_count, group)
        );
        let prepared = now.elapsed();
        let Some(pulled) = self.pull_for_instance(group, i, &name, pulled, now).await else {
            return;
        };
        let image_id = pulled.id;
        let built = built.and_then(|config| {
            container::verify_run_as_non_root(&self.pod, spec, &pulled.user).map(|()| config)
        });
        let Some(config) = self.config_for_instance(group, i, &name, built).await else {
            return;
        };
        let step = Instant::now();
        let old = self.retire_previous_instance(group, i, &name).await;
        let retired = step.elapsed();
        let step = Instant::now();
        if !self
            .create_instance(group, i, &name, &config, old.clone())
            .await
        {
            return;
        }
        let created = step.elapsed();
        let step = Instant::now();
        if self.pending_attach.is_some() {
            // The task (shim, logger, `runc create`) is made while the pod is plugged
            // into the network; its process starts once both are done.
            let runtime = self.shared.runtime.clone();
            let (prepared_start, network) =
                tokio::join!(runtime.prepare_start(&config.id), self.await_network());
            if network.is_err() {
                // It never ran: it goes, and the next sync makes the sandbox again.
                if let Err(e) = runtime.remove(&config.id).await {
                    warn!(pod = %self.name(), container = %name, error = %e, "removing the container of a failed sandbox failed");
                }
                self.keep_old_instance(group, i, &name, old);
                return;
            }
            if let Err(e) = prepared_start {
                // The start makes the task again and tells if it still fails.
                debug!(pod = %self.name(), container = %name, error = %e, "preparing the start failed");
            }
        }
        let attached = step.elapsed();
        let step = Instant::now();
        let (started_at, state) = self.start_created_instance(&name, &config.id).await;
        debug!(
            pod = %self.name(),
            container = %name,
            image_and_config_ms = prepared.as_millis() as u64,
            retire_ms = retired.as_millis() as u64,
            create_ms = created.as_millis() as u64,
            prepare_and_network_ms = attached.as_millis() as u64,
            start_ms = step.elapsed().as_millis() as u64,
            "container instance started"
        );
        {
            let t = self.track.entry(name.clone()).or_default();
            t.started = Some(Instant::now());
            t.probes.clear();
        }
        let record = self.record_mut(group, i);
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

    /// Whether an earlier pull failed and its back-off has not passed yet; a container
    /// that failed to pull is then told ImagePullBackOff.
    async fn waiting_out_pull_backoff(
        &mut self,
        group: Group,
        i: usize,
        name: &str,
        image: &str,
        now: Instant,
    ) -> bool {
        let track = self.track.entry(name.to_string()).or_default().clone();
        let backing_off = track.pull_retry_at.is_some_and(|t| now < t);
        if !backing_off {
            return false;
        }
        let record = self.record_mut(group, i);
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
            self.event("Normal", "BackOff", &backoff, Some(name)).await;
            self.event("Warning", "Failed", "Error: ImagePullBackOff", Some(name))
                .await;
        }
        true
    }

    /// Counts a failed pull towards the pull back-off; the image, or `None` with the
    /// container left waiting.
    async fn pull_for_instance(
        &mut self,
        group: Group,
        i: usize,
        name: &str,
        pulled: Result<PulledImage, (Waiting, String)>,
        now: Instant,
    ) -> Option<PulledImage> {
        let image = match pulled {
            Ok(image) => image,
            Err((waiting, error)) => {
                let error_event = format!("Error: {}", waiting.reason);
                self.event("Warning", "Failed", &error_event, Some(name))
                    .await;
                let t = self.track.entry(name.to_string()).or_default();
                t.pull_failures += 1;
                t.pull_retry_at = Some(now + backoff_delay(t.pull_failures));
                t.pull_error = Some(error);
                self.record_mut(group, i).waiting = Some(waiting);
                return None;
            }
        };
        let t = self.track.entry(name.to_string()).or_default();
        t.pull_failures = 0;
        t.pull_retry_at = None;
        t.pull_error = None;
        Some(image)
    }

    /// The container's runtime config, or `None` with the container left waiting in
    /// CreateContainerConfigError.
    async fn config_for_instance(
        &mut self,
        group: Group,
        i: usize,
        name: &str,
        built: Result<ContainerConfig, String>,
    ) -> Option<ContainerConfig> {
        match built {
            Ok(c) => Some(c),
            Err(message) => {
                // Retried every sync: tell only when the problem changes.
                let repeated = self.record_mut(group, i).waiting.as_ref().is_some_and(|w| {
                    w.reason == "CreateContainerConfigError" && w.message == message
                });
                if !repeated {
                    self.event(
                        "Warning",
                        "Failed",
                        &format!("Error: {message}"),
                        Some(name),
                    )
                    .await;
                }
                self.record_mut(group, i).waiting = Some(Waiting {
                    reason: "CreateContainerConfigError".into(),
                    message,
                });
                None
            }
        }
    }

    /// The previous instance gives way: its end becomes lastState, it is removed from the
    /// runtime, and its back-off level carries over. Returns it.
    async fn retire_previous_instance(
        &mut self,
        group: Group,
        i: usize,
        name: &str,
    ) -> Option<Instance> {
        let old = self.record_mut(group, i).current.take();
        if let Some(old) = &old {
            if let InstanceState::Exited(t) = &old.state {
                self.record_mut(group, i).last_termination = Some(t.clone());
            }
            if let Err(e) = self.shared.runtime.remove(&old.id).await {
                warn!(pod = %self.name(), container = %name, error = %e, "removing the old instance failed");
            }
            // Its logs stay for `--previous`; those of earlier instances go.
            if let Err(e) = container::remove_older_logs(&self.pod_dir, name, old.restart_count) {
                warn!(pod = %self.name(), container = %name, error = %e, "removing old log files failed");
            }
            let t = self.track.entry(name.to_string()).or_default();
            // A new definition starts a new back-off; a crash of the same one raises it.
            t.backoff_level = if t.definition_changed {
                0
            } else {
                t.backoff_level + 1
            };
            t.definition_changed = false;
            t.exited_at = None;
        }
        old
    }

    /// Creates the container in the runtime; on failure leaves it waiting in
    /// CreateContainerError (keeping `old` as its current instance) and returns false.
    async fn create_instance(
        &mut self,
        group: Group,
        i: usize,
        name: &str,
        config: &ContainerConfig,
        old: Option<Instance>,
    ) -> bool {
        let runtime = self.shared.runtime.clone();
        let mut created = runtime.create_container(config).await;
        if let Err(RuntimeError::Containerd { source, .. }) = &created {
            if source.code() == containerd_client::tonic::Code::AlreadyExists {
                // A leftover of an agent that stopped between create and record.
                let _ = runtime.remove(&config.id).await;
                created = runtime.create_container(config).await;
            }
        }
        let Err(e) = created else {
            return true;
        };
        let message = error_chain(&e);
        self.event(
            "Warning",
            "Failed",
            &format!("Error: {message}"),
            Some(name),
        )
        .await;
        self.record_mut(group, i).waiting = Some(Waiting {
            reason: "CreateContainerError".into(),
            message,
        });
        self.keep_old_instance(group, i, name, old);
        false
    }

    /// A new instance could not be made: `old`, if any, stays the current (exited)
    /// instance, so restarts keep counting from it.
    fn keep_old_instance(&mut self, group: Group, i: usize, name: &str, old: Option<Instance>) {
        let record = self.record_mut(group, i);
        if let Some(old) = old {
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
            self.track.entry(name.to_string()).or_default().exited_at = Some(Instant::now());
        }
    }

    /// Starts created container `id`; when it started and the state it is in (exited
    /// with StartError if it could not start).
    async fn start_created_instance(
        &mut self,
        name: &str,
        id: &str,
    ) -> (DateTime<Utc>, InstanceState) {
        // Told after the status is written (the status is what clients wait for).
        self.event_later(
            "Normal",
            "Created",
            &format!("Created container {name}"),
            Some(name),
        );
        let started = self.shared.runtime.start(id).await;
        let started_at = Utc::now();
        let state = match started {
            Ok(_) => {
                self.event_later(
                    "Normal",
                    "Started",
                    &format!("Started container {name}"),
                    Some(name),
                );
                InstanceState::Running
            }
            Err(e) => {
                let message = error_chain(&e);
                self.event(
                    "Warning",
                    "Failed",
                    &format!("Error: {message}"),
                    Some(name),
                )
                .await;
                self.track.entry(name.to_string()).or_default().exited_at = Some(Instant::now());
                InstanceState::Exited(Terminated {
                    exit_code: 128,
                    reason: "StartError".into(),
                    message: Some(message),
                    started_at: None,
                    finished_at: Some(started_at),
                    container_id: format!("containerd://{id}"),
                })
            }
        };
        (started_at, state)
    }

    async fn build_config(
        &self,
        spec: &Value,
        restart_count: u32,
        group: Group,
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
        // Host-network pods get theirs too (the node's hosts file and name, resolvers by
        // dnsPolicy), as upstream.
        let etc_files = &etc[..];
        let cfg = &self.shared.config;
        let files = cfg.pod_namespaces(&self.uid);
        let shared = cfg
            .shared_ipc_uts
            .then_some((files.ipc.as_path(), files.uts.as_path()));
        let mut namespaces = container::pod_namespaces(&self.pod, &self.netns, shared);
        if self.shares_process_namespace() {
            namespaces.pid = NamespaceMode::Path(cfg.pod_pid_namespace(&self.uid).file);
        }
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
        let mut config = container::container_config(&ctx, spec, restart_count, group.label())?;
        config.seccomp = container::seccomp_profile(&self.pod, spec, &cfg.seccomp_root);
        if let Some(target) = spec["targetContainerName"]
            .as_str()
            .filter(|t| group == Group::Ephemeral && !t.is_empty())
        {
            config.namespaces.pid = self.target_pid_namespace(target).await?;
        }
        // Looked up when the sandbox was made; a pod re-adopted after a restart looks
        // it up for its next container.
        config.runtime_handler = match &self.runtime_handler {
            Some(handler) => handler.clone(),
            None => self.lookup_runtime_handler().await?,
        };
        let adds_all = config
            .capabilities
            .add
            .iter()
            .any(|c| c.eq_ignore_ascii_case("ALL"));
        if config.privileged || adds_all {
            config.host_capabilities = Some(
                host_privileges::current_capabilities()
                    .map_err(|e| format!("failed to read the agent's own capabilities: {e}"))?,
            );
        }
        if config.privileged {
            config.devices = host_privileges::host_devices(Path::new("/dev")).map_err(|e| {
                format!("failed to list the host's devices for a privileged container: {e}")
            })?;
        }
        let score = crate::agent::kubelet::qos::oom_score_adj(
            &self.pod,
            spec,
            self.shared.config.memory_capacity,
        );
        config.oom_score_adj = Some(match self.shared.config.oom_score_floor {
            Some(floor) => score.max(floor),
            None => score,
        });
        Ok(config)
    }
}
