//! Node-pressure eviction (upstream pkg/kubelet/eviction): every monitoring interval the
//! signals are measured against the thresholds; the node's MemoryPressure, DiskPressure
//! and PIDPressure conditions follow them (held for the pressure transition period), and
//! while a threshold is met past its grace period the node first reclaims what it can
//! itself (dead containers, unused images for disk), then evicts one pod, ranked as
//! upstream, and waits for it to be gone before looking again.

pub mod rank;
pub mod signals;
pub mod thresholds;

use std::collections::{BTreeMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use crate::agent::kubelet::evictions::{Eviction, Evictions};
use crate::agent::runtime::{ContainerRuntime, ContainerState};
use rank::{rank, Candidate};
use signals::{Observations, Probe};
use thresholds::{format_amount, is_met, Observation, Resource, Threshold, Thresholds};

/// Upstream's `--eviction-pressure-transition-period` default.
pub const DEFAULT_PRESSURE_TRANSITION_PERIOD: Duration = Duration::from_secs(300);
/// How often the signals are measured (upstream's housekeeping interval).
pub const DEFAULT_MONITORING_INTERVAL: Duration = Duration::from_secs(10);
/// containerd's default root (its image filesystem).
pub const DEFAULT_CONTAINERD_ROOT: &str = "/var/lib/containerd";
/// Grace period of a pod evicted for a hard threshold (upstream
/// `immediateEvictionGracePeriodSeconds`).
pub const HARD_EVICTION_GRACE: Duration = Duration::from_secs(1);
/// How long an eviction may take before the manager looks again (upstream
/// `podCleanupTimeout`).
pub const POD_CLEANUP_TIMEOUT: Duration = Duration::from_secs(30);
const POD_CLEANUP_POLL: Duration = Duration::from_millis(500);

/// The checked eviction configuration of an agent.
#[derive(Debug, Clone, PartialEq)]
pub struct EvictionConfig {
    pub thresholds: Thresholds,
    /// How long a pressure condition stays true after its threshold was last met.
    pub pressure_transition_period: Duration,
    /// Longest grace period a pod evicted for a soft threshold gets; zero: its own.
    pub max_pod_grace_period: Duration,
    pub monitoring_interval: Duration,
    /// containerd's root directory: the image filesystem (imagefs signals).
    pub containerd_root: PathBuf,
}

impl Default for EvictionConfig {
    fn default() -> EvictionConfig {
        EvictionConfig {
            thresholds: Thresholds::parse(thresholds::DEFAULT_EVICTION_HARD, "", "", "")
                .expect("upstream's defaults parse"),
            pressure_transition_period: DEFAULT_PRESSURE_TRANSITION_PERIOD,
            max_pod_grace_period: Duration::ZERO,
            monitoring_interval: DEFAULT_MONITORING_INTERVAL,
            containerd_root: PathBuf::from(DEFAULT_CONTAINERD_ROOT),
        }
    }
}

/// The node's pressure conditions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pressure {
    pub memory: bool,
    pub disk: bool,
    pub pids: bool,
}

impl Pressure {
    fn from_resources(resources: impl IntoIterator<Item = Resource>) -> Pressure {
        let mut p = Pressure::default();
        for r in resources {
            match r {
                Resource::Memory => p.memory = true,
                Resource::Disk => p.disk = true,
                Resource::Pids => p.pids = true,
            }
        }
        p
    }
}

/// What one pass decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    pub pressure: Pressure,
    /// The threshold to act on now (met past its grace period), with what was observed.
    pub reclaim: Option<(Threshold, Observation)>,
}

/// What the manager remembers between passes (upstream's `managerImpl` fields).
#[derive(Debug, Default)]
pub struct State {
    /// Thresholds acted on last pass: they hold until their minimum reclaim is freed.
    met: Vec<Threshold>,
    first_observed: Vec<(Threshold, Instant)>,
    condition_last_observed: BTreeMap<Resource, Instant>,
}

impl State {
    /// One pass of upstream's `synchronize` up to choosing the threshold to reclaim.
    pub fn step(
        &mut self,
        config: &EvictionConfig,
        observations: &Observations,
        now: Instant,
    ) -> Decision {
        let met_now = |t: &Threshold, with_min_reclaim: bool| {
            observations
                .get(&t.signal)
                .is_some_and(|o| is_met(t, o, with_min_reclaim))
        };
        let mut current: Vec<Threshold> = config
            .thresholds
            .0
            .iter()
            .filter(|t| met_now(t, false))
            .cloned()
            .collect();
        for t in &self.met {
            if !current.contains(t) && met_now(t, true) {
                current.push(t.clone());
            }
        }
        self.first_observed = current
            .iter()
            .map(|t| {
                let since = self
                    .first_observed
                    .iter()
                    .find(|(seen, _)| seen == t)
                    .map_or(now, |(_, at)| *at);
                (t.clone(), since)
            })
            .collect();
        for t in &current {
            self.condition_last_observed
                .insert(t.signal.resource(), now);
        }
        let period = config.pressure_transition_period;
        self.condition_last_observed
            .retain(|_, at| now.duration_since(*at) < period);
        let pressure = Pressure::from_resources(
            self.condition_last_observed
                .keys()
                .copied()
                .chain(current.iter().map(|t| t.signal.resource())),
        );
        let mut due: Vec<Threshold> = self
            .first_observed
            .iter()
            .filter(|(t, since)| now.duration_since(*since) >= t.grace_period)
            .map(|(t, _)| t.clone())
            .collect();
        self.met = due.clone();
        // Memory first, then disk, then pids; hard thresholds before soft ones.
        due.sort_by_key(|t| (t.signal.resource(), !t.hard));
        let reclaim = due
            .into_iter()
            .find_map(|t| observations.get(&t.signal).map(|o| (t.clone(), *o)));
        Decision { pressure, reclaim }
    }
}

/// Upstream's eviction message for a pod evicted to reclaim `threshold`.
pub fn eviction_message(threshold: &Threshold, observed: &Observation) -> String {
    let wanted = threshold.value.amount(observed.capacity);
    format!(
        "The node was low on resource: {}. Threshold quantity: {}, available: {}. ",
        threshold.signal.starved_resource(),
        format_amount(threshold.signal, wanted),
        format_amount(threshold.signal, observed.available),
    )
}

/// The grace period of a pod evicted for `threshold` (upstream: hard thresholds kill
/// at once; soft ones give the pod its own grace, at most `--eviction-max-pod-grace-period`).
pub fn eviction_grace(threshold: &Threshold, pod_grace_seconds: i64, max: Duration) -> Duration {
    if threshold.hard {
        return HARD_EVICTION_GRACE;
    }
    let own = Duration::from_secs(pod_grace_seconds.max(0) as u64);
    if max.is_zero() {
        own
    } else {
        own.min(max)
    }
}

/// The pods running on this node (read when a pod must be chosen).
pub trait PodSource: Send + Sync {
    fn active_pods(&self) -> BoxFuture<'_, Result<Vec<Value>, String>>;
}

/// Something the node can free itself before pods are evicted: dead containers here;
/// image garbage collection plugs in the same way.
pub trait NodeReclaimer: Send + Sync {
    fn name(&self) -> &'static str;
    /// Frees what it can for pressure on `resource`; the pods still wanted are `active`.
    fn reclaim<'a>(
        &'a self,
        resource: Resource,
        active: &'a HashSet<String>,
    ) -> BoxFuture<'a, Result<(), String>>;
}

/// Removes stopped containers whose pod is gone from the node (upstream's container
/// garbage collection of dead containers, tried before evicting for disk).
pub struct DeadContainers {
    pub runtime: Arc<dyn ContainerRuntime>,
}

impl NodeReclaimer for DeadContainers {
    fn name(&self) -> &'static str {
        "dead containers"
    }

    fn reclaim<'a>(
        &'a self,
        resource: Resource,
        active: &'a HashSet<String>,
    ) -> BoxFuture<'a, Result<(), String>> {
        Box::pin(async move {
            if resource != Resource::Disk {
                return Ok(());
            }
            let all = self
                .runtime
                .list_containers()
                .await
                .map_err(|e| crate::agent::error_chain(&e))?;
            for c in all {
                let Some(uid) = c
                    .labels
                    .get(crate::agent::kubelet::container::POD_UID_LABEL)
                else {
                    continue;
                };
                let dead = !matches!(c.state, ContainerState::Running { .. });
                if dead && !active.contains(uid) {
                    info!(container = %c.id, pod_uid = %uid, "removing a dead container to free disk");
                    if let Err(e) = self.runtime.remove(&c.id).await {
                        warn!(container = %c.id, error = %crate::agent::error_chain(&e), "removing a dead container failed");
                    }
                }
            }
            Ok(())
        })
    }
}

/// Lists this node's pods through the API (the node may read the pods bound to it).
pub struct ApiPods {
    pub client: Arc<crate::agent::client::ApiClient>,
    pub node: String,
}

impl PodSource for ApiPods {
    fn active_pods(&self) -> BoxFuture<'_, Result<Vec<Value>, String>> {
        Box::pin(async move {
            let path = format!("/api/v1/pods?fieldSelector=spec.nodeName%3D{}", self.node);
            let resp = self
                .client
                .get(&path)
                .await
                .map_err(|e| crate::agent::error_chain(&e))?;
            if !resp.status.is_success() {
                return Err(format!("listing the node's pods: HTTP {}", resp.status));
            }
            let list = resp.json().unwrap_or_default();
            Ok(list["items"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|p| is_active(p))
                .cloned()
                .collect())
        })
    }
}

fn is_active(pod: &Value) -> bool {
    pod["metadata"]["deletionTimestamp"].is_null()
        && !matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        )
}

/// The running eviction manager.
pub struct Manager {
    pub config: EvictionConfig,
    pub probe: Arc<dyn Probe>,
    pub pods: Arc<dyn PodSource>,
    pub evictions: Arc<Evictions>,
    pub reclaimers: Vec<Arc<dyn NodeReclaimer>>,
    /// The node's pressure conditions, for the heartbeat.
    pub pressure: watch::Sender<Pressure>,
}

impl Manager {
    /// Measures, publishes the conditions and evicts, every monitoring interval, until
    /// nobody listens to the conditions any more.
    pub async fn run(self) {
        if self.config.thresholds.is_empty() {
            info!("no eviction thresholds: node-pressure eviction is off");
            return;
        }
        let mut state = State::default();
        let mut ticker = tokio::time::interval(self.config.monitoring_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticker.tick().await;
            if self.pressure.is_closed() {
                return;
            }
            self.pass(&mut state).await;
        }
    }

    /// One pass: measure, decide, publish, and act.
    pub async fn pass(&self, state: &mut State) {
        let observations = self.probe.observe();
        let decision = state.step(&self.config, &observations, Instant::now());
        self.pressure.send_if_modified(|p| {
            let changed = *p != decision.pressure;
            if changed {
                info!(
                    memory = decision.pressure.memory,
                    disk = decision.pressure.disk,
                    pids = decision.pressure.pids,
                    "node pressure changed"
                );
            }
            *p = decision.pressure;
            changed
        });
        let Some((threshold, observed)) = decision.reclaim else {
            return;
        };
        let resource = threshold.signal.resource();
        warn!(signal = %threshold.signal, available = observed.available, "eviction threshold met; reclaiming");
        let pods = match self.pods.active_pods().await {
            Ok(p) => p,
            Err(error) => {
                warn!(%error, "cannot list the node's pods for eviction");
                return;
            }
        };
        let active: HashSet<String> = pods
            .iter()
            .filter_map(|p| p["metadata"]["uid"].as_str().map(str::to_string))
            .collect();
        if self.reclaim_node_level(&threshold, resource, &active).await {
            return;
        }
        let mut candidates: Vec<Candidate> = pods
            .iter()
            .map(|p| {
                let mut c = Candidate::from_pod(p);
                c.memory_usage = self.probe.pod_memory(&c.uid);
                c.disk_usage = self.probe.pod_disk(&c.uid);
                c
            })
            .filter(|c| !self.evictions.is_pending(&c.uid))
            .collect();
        rank(&mut candidates, resource);
        let Some(victim) = candidates.into_iter().find(|c| !c.critical) else {
            warn!(signal = %threshold.signal, "eviction threshold met but no pod may be evicted");
            return;
        };
        let message = eviction_message(&threshold, &observed);
        let grace = eviction_grace(
            &threshold,
            victim.grace_seconds,
            self.config.max_pod_grace_period,
        );
        info!(pod = %format!("{}/{}", victim.namespace, victim.name), signal = %threshold.signal, "evicting a pod for node pressure");
        self.evictions
            .order(&victim.uid, Eviction { message, grace });
        self.wait_for_cleanup(&victim.uid, grace).await;
    }

    /// Tries the node's own reclaimers; true when the threshold is no longer met.
    async fn reclaim_node_level(
        &self,
        threshold: &Threshold,
        resource: Resource,
        active: &HashSet<String>,
    ) -> bool {
        if resource != Resource::Disk || self.reclaimers.is_empty() {
            return false;
        }
        for r in &self.reclaimers {
            if let Err(error) = r.reclaim(resource, active).await {
                warn!(reclaimer = r.name(), %error, "node-level reclaim failed");
            }
        }
        let after = self.probe.observe();
        let resolved = after
            .get(&threshold.signal)
            .is_none_or(|o| !is_met(threshold, o, true));
        if resolved {
            info!(signal = %threshold.signal, "node-level reclaim freed enough; no pod evicted");
        }
        resolved
    }

    /// Waits until the evicted pod is no longer active (or the timeout passes).
    async fn wait_for_cleanup(&self, uid: &str, grace: Duration) {
        let deadline = Instant::now() + grace + POD_CLEANUP_TIMEOUT;
        while Instant::now() < deadline {
            tokio::time::sleep(POD_CLEANUP_POLL).await;
            match self.pods.active_pods().await {
                Ok(pods) if !pods.iter().any(|p| p["metadata"]["uid"] == uid) => return,
                Ok(_) => {}
                Err(error) => debug!(%error, "checking the evicted pod failed"),
            }
        }
        warn!(pod_uid = %uid, "the evicted pod is still active after the cleanup timeout");
    }
}

#[cfg(test)]
mod tests;
