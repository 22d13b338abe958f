//! Stopping: containers stopped together (SIGTERM, then SIGKILL after the grace period),
//! the pod failed past its deadline, and a deleted pod torn down and removed.

use std::time::Duration;

use tracing::{info, warn};

use super::{
    error_chain, PodWorker, DEADLINE_MESSAGE, DEADLINE_REASON, DEFAULT_GRACE, DELETE_RETRY,
};
use crate::agent::kubelet::container::{self, CONTAINER_NAME_LABEL};
use crate::agent::kubelet::evictions::{Eviction, EVICTED_REASON};
use crate::agent::kubelet::tmpfs;
use crate::agent::net::PodInterface;
use crate::agent::runtime::{ContainerState, SIGTERM};

/// The mounts of the agent's mount namespace.
const MOUNTINFO: &str = "/proc/self/mountinfo";

impl PodWorker {
    /// Evicts the pod for the node-pressure eviction manager (upstream `evictPod`): stops
    /// its containers for good with the order's grace period; the pod fails with reason
    /// `Evicted`, the order's message and a `DisruptionTarget` condition.
    pub(super) async fn evict(&mut self, eviction: Eviction) {
        info!(pod = %self.name(), message = %eviction.message, "evicting the pod");
        self.stopped = true;
        self.evicted_at = Some(chrono::Utc::now());
        self.message = Some((EVICTED_REASON.into(), eviction.message.clone()));
        self.event("Warning", EVICTED_REASON, &eviction.message, None)
            .await;
        let running = self.running_containers();
        self.stop_containers(&running, eviction.grace).await;
        for r in self
            .init
            .iter_mut()
            .chain(self.apps.iter_mut())
            .chain(self.ephemeral.iter_mut())
        {
            r.waiting = None;
        }
    }

    fn running_containers(&self) -> Vec<(String, String)> {
        self.init
            .iter()
            .chain(self.apps.iter())
            .chain(self.ephemeral.iter())
            .filter(|r| r.is_running())
            .filter_map(|r| Some((r.name.clone(), r.current.as_ref()?.id.clone())))
            .collect()
    }

    /// Fails the pod for running past its deadline: stops its containers for good.
    pub(super) async fn stop_past_deadline(&mut self) {
        info!(pod = %self.name(), "pod ran past its activeDeadlineSeconds; stopping it");
        self.stopped = true;
        self.message = Some((DEADLINE_REASON.into(), DEADLINE_MESSAGE.into()));
        self.event("Normal", DEADLINE_REASON, DEADLINE_MESSAGE, None)
            .await;
        let running = self.running_containers();
        self.stop_containers(&running, self.termination_grace())
            .await;
        for r in self
            .init
            .iter_mut()
            .chain(self.apps.iter_mut())
            .chain(self.ephemeral.iter_mut())
        {
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

    /// Graceful termination of a pod being deleted, then the final delete in the API.
    pub(super) async fn terminate_and_delete(&mut self) {
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
        if let Some(attach) = self.pending_attach.take() {
            // Unplugged below once plugged in.
            let _ = attach.await;
        }
        let runtime = self.shared.runtime.clone();
        let mut ids: Vec<(String, String)> = Vec::new();
        for r in self
            .init
            .iter()
            .chain(self.apps.iter())
            .chain(self.ephemeral.iter())
        {
            if let Some(i) = &r.current {
                ids.push((r.name.clone(), i.id.clone()));
            }
        }
        // Also instances not tracked (stale ones a previous agent left).
        if let Ok(own) = runtime
            .list_containers_labelled(container::POD_UID_LABEL, &self.uid)
            .await
        {
            for c in own {
                if !ids.iter().any(|(_, id)| *id == c.id) {
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
        // App containers first; the sidecars after them, last one first, in what is left
        // of the grace period (upstream's order).
        let sidecars: Vec<String> = super::containers(&self.pod["spec"], "initContainers")
            .iter()
            .filter(|s| crate::agent::kubelet::status::is_sidecar(s))
            .filter_map(|s| s["name"].as_str().map(str::to_string))
            .collect();
        let (mut last, first): (Vec<_>, Vec<_>) = running
            .into_iter()
            .partition(|(name, _)| sidecars.contains(name));
        let begun = std::time::Instant::now();
        self.stop_containers(&first, grace).await;
        last.sort_by_key(|(name, _)| std::cmp::Reverse(sidecars.iter().position(|s| s == name)));
        for sidecar in last {
            let left = grace.saturating_sub(begun.elapsed());
            self.stop_containers(std::slice::from_ref(&sidecar), left)
                .await;
        }
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
            // Whether or not the pod (still) shares one: a holder left behind goes.
            if let Err(e) = self.shared.config.pod_pid_namespace(&self.uid).delete() {
                warn!(%pod, error = %e, "deleting the shared PID namespace failed");
            }
        }
        // Secret volumes are tmpfs mounts: gone with their contents before the files.
        let mountinfo = std::fs::read_to_string(MOUNTINFO).unwrap_or_default();
        if let Err(e) = tmpfs::unmount_below(&self.pod_dir, &mountinfo) {
            warn!(%pod, error = %error_chain(&e), "unmounting pod volumes failed");
        }
        self.shared.tokens.forget_pod(&self.uid);
        if let Err(e) = std::fs::remove_dir_all(&self.pod_dir) {
            if e.kind() != std::io::ErrorKind::NotFound {
                warn!(%pod, dir = %self.pod_dir.display(), error = %e, "removing pod directory failed");
            }
        }
        self.sandbox_ready = false;
        info!(%pod, "pod torn down");
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
