//! This machine as a Node object: facts gathered from the host, the Node built from them
//! (a pure function), registration, and the heartbeat (Lease renewals, status updates).

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

use super::client::error::{accepted, answered};
use super::client::{ApiClient, ApiError};
use crate::api::identity::NODE_LEASE_NAMESPACE;

/// Version the agent reports as its kubelet.
pub const KUBELET_VERSION: &str = "v1.32.0+orc";
/// For how long a renewal of the node's Lease holds (upstream kubelet
/// `--node-lease-duration-seconds`); it is renewed every quarter of it, as upstream.
/// 20 s: a renewal every 5 s, so that a dead node is noticed soon after the server's
/// 35 s grace period and a 20 s link outage never reaches it (README "Node failure").
pub const DEFAULT_LEASE_DURATION: Duration = Duration::from_secs(20);
const LEASE_RENEWALS_PER_DURATION: u32 = 4;
/// Renewals never come more often than this, whatever the lease duration.
const MIN_RENEW_INTERVAL: Duration = Duration::from_millis(250);
/// How often the node status is posted when nothing changed.
pub const STATUS_UPDATE_INTERVAL: Duration = Duration::from_secs(60);
const READY_MESSAGE: &str = "orc agent is posting ready status";
/// Ready=False reason while the container runtime is not usable (upstream's).
pub const NOT_READY_REASON: &str = "KubeletNotReady";
/// How often the container runtime is asked whether it answers, and how long it has.
pub const RUNTIME_CHECK_INTERVAL: Duration = Duration::from_secs(5);
pub const RUNTIME_CHECK_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the runtime may go without answering before the node is NotReady
/// (upstream's maxWaitForContainerRuntime).
pub const RUNTIME_DOWN_AFTER: Duration = Duration::from_secs(30);

/// The container runtime as the agent last saw it; the node's Ready condition follows
/// it (upstream's runtime state).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RuntimeHealth {
    /// Not connected yet: the agent is starting, or containerd was never reachable.
    Unknown {
        error: Option<String>,
    },
    Up {
        version: String,
    },
    Down {
        error: String,
    },
}

impl RuntimeHealth {
    /// Why the node is not ready, if the runtime is the reason (upstream's words first).
    pub fn problem(&self) -> Option<String> {
        match self {
            RuntimeHealth::Up { .. } => None,
            RuntimeHealth::Unknown { error: None } => {
                Some("container runtime status check may not have completed yet".into())
            }
            RuntimeHealth::Unknown { error: Some(e) } | RuntimeHealth::Down { error: e } => {
                Some(format!("container runtime is down: {e}"))
            }
        }
    }
}

/// Asks `runtime` for its version every [`RUNTIME_CHECK_INTERVAL`] and publishes the
/// answer. As upstream, the runtime is down only once it has not answered for
/// [`RUNTIME_DOWN_AFTER`]: a containerd restart does not make the node (and so its
/// pods, and the Services behind them) NotReady. Returns when nobody listens any more.
pub async fn monitor_runtime(
    runtime: std::sync::Arc<dyn crate::agent::runtime::ContainerRuntime>,
    health: tokio::sync::watch::Sender<RuntimeHealth>,
) {
    // The caller has just connected: that counts as an answer.
    let mut answered = tokio::time::Instant::now();
    let mut failing = false;
    loop {
        let checked = tokio::time::timeout(RUNTIME_CHECK_TIMEOUT, runtime.version()).await;
        let error = match checked {
            Ok(Ok(version)) => {
                answered = tokio::time::Instant::now();
                failing = false;
                publish(&health, RuntimeHealth::Up { version });
                None
            }
            Ok(Err(e)) => Some(crate::agent::error_chain(&e)),
            Err(_) => Some(format!(
                "no answer within {}s",
                RUNTIME_CHECK_TIMEOUT.as_secs()
            )),
        };
        if let Some(error) = error {
            if !failing {
                failing = true;
                tracing::warn!(%error, "container runtime does not answer");
            }
            if answered.elapsed() >= RUNTIME_DOWN_AFTER {
                publish(&health, RuntimeHealth::Down { error });
            }
        }
        if health.is_closed() {
            return;
        }
        tokio::time::sleep(RUNTIME_CHECK_INTERVAL).await;
    }
}

/// Publishes `now` if it differs from what `health` holds, logging a change of state.
pub fn publish(health: &tokio::sync::watch::Sender<RuntimeHealth>, now: RuntimeHealth) {
    health.send_if_modified(|h| {
        if *h == now {
            return false;
        }
        match &now {
            RuntimeHealth::Down { error } => {
                tracing::warn!(%error, "container runtime is down; the node is NotReady")
            }
            RuntimeHealth::Up { version } => tracing::info!(%version, "container runtime is up"),
            RuntimeHealth::Unknown { .. } => {}
        }
        *h = now;
        true
    });
}

/// What the host says about itself, gathered once per status update.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeFacts {
    pub name: String,
    pub hostname: String,
    pub internal_ip: IpAddr,
    /// Kubernetes architecture name (amd64, arm64, …).
    pub arch: String,
    pub cpus: usize,
    pub memory_ki: u64,
    pub kernel_version: String,
    pub os_image: String,
    pub machine_id: String,
    pub boot_id: String,
    pub containerd_version: Option<String>,
    /// Why the container runtime cannot be used (the node is NotReady); `None`: it answers.
    pub runtime_problem: Option<String>,
    /// Extra labels from --node-label.
    pub labels: BTreeMap<String, String>,
    /// Reservations and --max-pods: allocatable = capacity - reserved.
    pub allocation: crate::agent::allocatable::NodeAllocation,
    /// The pressure conditions the eviction manager reports.
    pub pressure: crate::agent::eviction::Pressure,
    /// The runtime handlers RuntimeClasses may name here (`status.runtimeHandlers`).
    pub runtime_handlers: Vec<String>,
}

impl NodeFacts {
    /// Reads the host: /proc, /etc/os-release, /etc/machine-id.
    pub fn gather(
        name: &str,
        node_ip: Option<IpAddr>,
        labels: &BTreeMap<String, String>,
    ) -> NodeFacts {
        let read = |path: &str| std::fs::read_to_string(path).unwrap_or_default();
        NodeFacts {
            name: name.to_string(),
            // As k3s: the node name (by default the host name) is the kubelet's hostname
            // override, so `kubernetes.io/hostname` tells nodes on one machine apart.
            hostname: name.to_string(),
            internal_ip: node_ip
                .or_else(crate::agent::net::primary_ip)
                .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::LOCALHOST)),
            arch: kubernetes_arch(std::env::consts::ARCH).to_string(),
            cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            memory_ki: meminfo_total_ki(&read("/proc/meminfo")).unwrap_or(0),
            kernel_version: read("/proc/sys/kernel/osrelease").trim().to_string(),
            os_image: os_release_pretty_name(&read("/etc/os-release"))
                .unwrap_or_else(|| "Linux".into()),
            machine_id: read("/etc/machine-id").trim().to_string(),
            boot_id: read("/proc/sys/kernel/random/boot_id").trim().to_string(),
            containerd_version: None,
            runtime_problem: None,
            labels: labels.clone(),
            allocation: Default::default(),
            pressure: Default::default(),
            runtime_handlers: Vec::new(),
        }
    }
}

/// Rust's architecture name → the one Kubernetes uses (GOARCH).
pub fn kubernetes_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        other => other,
    }
}

/// `MemTotal` of /proc/meminfo, in KiB.
pub fn meminfo_total_ki(meminfo: &str) -> Option<u64> {
    meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
}

/// `PRETTY_NAME` of /etc/os-release, unquoted.
pub fn os_release_pretty_name(os_release: &str) -> Option<String> {
    os_release
        .lines()
        .find_map(|l| l.strip_prefix("PRETTY_NAME="))
        .map(|v| v.trim().trim_matches('"').trim_matches('\'').to_string())
        .filter(|v| !v.is_empty())
}

/// Parses `--node-label k=v` values.
pub fn parse_labels(values: &[String]) -> Result<BTreeMap<String, String>, String> {
    let mut labels = BTreeMap::new();
    for v in values.iter().filter(|v| !v.is_empty()) {
        let (k, val) = v
            .split_once('=')
            .ok_or_else(|| format!("--node-label {v:?}: expected key=value"))?;
        let problems = crate::api::validation::is_qualified_name(k);
        if let Some(p) = problems.first() {
            return Err(format!("--node-label {v:?}: invalid key: {p}"));
        }
        if !crate::api::identity::node_may_set_label(k) {
            return Err(format!(
                "--node-label {v:?}: a node may not give itself {k} (NodeRestriction): \
                 set it as admin instead: kubectl label node NODE {v}"
            ));
        }
        let problems = crate::api::validation::is_valid_label_value(val);
        if let Some(p) = problems.first() {
            return Err(format!("--node-label {v:?}: invalid value: {p}"));
        }
        labels.insert(k.to_string(), val.to_string());
    }
    Ok(labels)
}

/// The labels the agent owns on its Node.
pub fn node_labels(facts: &NodeFacts) -> Map<String, Value> {
    let mut labels = Map::new();
    labels.insert("kubernetes.io/hostname".into(), json!(facts.hostname));
    labels.insert("kubernetes.io/os".into(), json!("linux"));
    labels.insert("kubernetes.io/arch".into(), json!(facts.arch));
    labels.insert("beta.kubernetes.io/os".into(), json!("linux"));
    labels.insert("beta.kubernetes.io/arch".into(), json!(facts.arch));
    for (k, v) in &facts.labels {
        labels.insert(k.clone(), json!(v));
    }
    labels
}

fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

/// A `MicroTime` (as Lease renewTime wants it).
pub fn micro_time(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// The node status for `facts` at `now`. A condition keeps its `lastTransitionTime` from
/// `previous` (the conditions last posted or stored) while its status is unchanged.
pub fn node_status(facts: &NodeFacts, now: DateTime<Utc>, previous: &Value) -> Value {
    let (capacity, allocatable) = facts
        .allocation
        .capacity_and_allocatable(facts.cpus, facts.memory_ki);
    let condition = |kind: &str, status: &str, reason: &str, message: &str| {
        let transition = previous
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| timestamp(now));
        json!({
            "type": kind, "status": status, "reason": reason, "message": message,
            "lastHeartbeatTime": timestamp(now), "lastTransitionTime": transition,
        })
    };
    let mut status = json!({
        "capacity": capacity,
        "allocatable": allocatable,
        "addresses": [
            {"type": "InternalIP", "address": facts.internal_ip.to_string()},
            {"type": "Hostname", "address": facts.hostname},
        ],
        "nodeInfo": {
            "machineID": facts.machine_id,
            "systemUUID": facts.machine_id,
            "bootID": facts.boot_id,
            "kernelVersion": facts.kernel_version,
            "osImage": facts.os_image,
            "operatingSystem": "linux",
            "architecture": facts.arch,
            "containerRuntimeVersion": format!(
                "containerd://{}",
                facts.containerd_version.as_deref().unwrap_or("unknown")
            ),
            "kubeletVersion": KUBELET_VERSION,
            "kubeProxyVersion": KUBELET_VERSION,
        },
        "conditions": [
            if facts.pressure.memory {
                condition("MemoryPressure", "True", "KubeletHasInsufficientMemory", "kubelet has insufficient memory available")
            } else {
                condition("MemoryPressure", "False", "KubeletHasSufficientMemory", "kubelet has sufficient memory available")
            },
            if facts.pressure.disk {
                condition("DiskPressure", "True", "KubeletHasDiskPressure", "kubelet has disk pressure")
            } else {
                condition("DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure")
            },
            if facts.pressure.pids {
                condition("PIDPressure", "True", "KubeletHasInsufficientPID", "kubelet has insufficient PID available")
            } else {
                condition("PIDPressure", "False", "KubeletHasSufficientPID", "kubelet has sufficient PID available")
            },
            match &facts.runtime_problem {
                None => condition("Ready", "True", "KubeletReady", READY_MESSAGE),
                Some(problem) => condition("Ready", "False", NOT_READY_REASON, problem),
            },
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
    });
    if !facts.runtime_handlers.is_empty() {
        // Neither recursive read-only mounts nor user namespaces are offered.
        let features = json!({"recursiveReadOnlyMounts": false, "userNamespaces": false});
        status["runtimeHandlers"] = facts
            .runtime_handlers
            .iter()
            .map(|name| json!({"name": name, "features": features}))
            .collect();
    }
    status
}

/// The Node to create for `facts` at `now` (the server assigns `spec.podCIDR`).
pub fn build_node(facts: &NodeFacts, now: DateTime<Utc>) -> Value {
    json!({
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": facts.name, "labels": node_labels(facts)},
        "spec": {},
        "status": node_status(facts, now, &Value::Null),
    })
}

/// The node's Lease in kube-node-lease, renewed at `now`, owned by the Node `node_uid`.
pub fn build_lease(
    node: &str,
    node_uid: Option<&str>,
    duration: Duration,
    now: DateTime<Utc>,
) -> Value {
    let mut lease = json!({
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": node, "namespace": NODE_LEASE_NAMESPACE},
        "spec": lease_spec(node, duration, now),
    });
    if let Some(uid) = node_uid {
        lease["metadata"]["ownerReferences"] =
            json!([{"apiVersion": "v1", "kind": "Node", "name": node, "uid": uid}]);
    }
    lease
}

fn lease_spec(node: &str, duration: Duration, now: DateTime<Utc>) -> Value {
    // Whole seconds, at least one: a shorter lease would look expired already.
    let seconds = duration.as_secs_f64().ceil().max(1.0) as i64;
    json!({
        "holderIdentity": node,
        "leaseDurationSeconds": seconds,
        "renewTime": micro_time(now),
    })
}

/// Status without the heartbeat times: what "changed" means for status updates.
fn without_times(status: &Value) -> Value {
    let mut s = status.clone();
    if let Some(cs) = s["conditions"].as_array_mut() {
        for c in cs {
            if let Some(c) = c.as_object_mut() {
                c.remove("lastHeartbeatTime");
                c.remove("lastTransitionTime");
            }
        }
    }
    s
}

fn node_path(name: &str) -> String {
    format!("/api/v1/nodes/{name}")
}

fn lease_path(name: &str) -> String {
    format!("/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases/{name}")
}

/// How often a Lease of `lease_duration` is renewed: every quarter of it, as upstream.
pub fn renew_interval(lease_duration: Duration) -> Duration {
    (lease_duration / LEASE_RENEWALS_PER_DURATION).max(MIN_RENEW_INTERVAL)
}

/// Keeps one Node registered and alive: register, then renew the Lease and post status.
pub struct Heartbeat {
    client: ApiClient,
    name: String,
    node_ip: Option<IpAddr>,
    labels: BTreeMap<String, String>,
    node_uid: Option<String>,
    /// The status last posted (the conditions' transition times come from it).
    posted: Value,
    posted_at: Option<Instant>,
    lease_duration: Duration,
    /// The container runtime's health, as the agent's runtime check publishes it.
    runtime: tokio::sync::watch::Receiver<RuntimeHealth>,
    /// The runtime version last seen (kept while the runtime is down).
    runtime_version: Option<String>,
    allocation: crate::agent::allocatable::NodeAllocation,
    /// The node's pressure conditions, as the eviction manager publishes them.
    pressure: Option<tokio::sync::watch::Receiver<crate::agent::eviction::Pressure>>,
    runtime_handlers: Vec<String>,
}

impl Heartbeat {
    pub fn new(
        client: ApiClient,
        name: &str,
        node_ip: Option<IpAddr>,
        labels: BTreeMap<String, String>,
        runtime: tokio::sync::watch::Receiver<RuntimeHealth>,
    ) -> Heartbeat {
        Heartbeat {
            client,
            name: name.to_string(),
            node_ip,
            labels,
            node_uid: None,
            posted: Value::Null,
            posted_at: None,
            lease_duration: DEFAULT_LEASE_DURATION,
            runtime,
            runtime_version: None,
            allocation: Default::default(),
            pressure: None,
            runtime_handlers: Vec::new(),
        }
    }

    /// The runtime handlers the node reports in `status.runtimeHandlers`.
    pub fn with_runtime_handlers(mut self, names: Vec<String>) -> Heartbeat {
        self.runtime_handlers = names;
        self
    }

    /// Reservations and --max-pods shown in the node's capacity and allocatable.
    pub fn with_allocation(
        mut self,
        allocation: crate::agent::allocatable::NodeAllocation,
    ) -> Heartbeat {
        self.allocation = allocation;
        self
    }

    /// Reports the pressure conditions `pressure` publishes.
    pub fn with_pressure(
        mut self,
        pressure: tokio::sync::watch::Receiver<crate::agent::eviction::Pressure>,
    ) -> Heartbeat {
        self.pressure = Some(pressure);
        self
    }

    /// How long each Lease renewal holds; renewals come every quarter of it.
    pub fn with_lease_duration(mut self, duration: Duration) -> Heartbeat {
        self.lease_duration = duration;
        self
    }

    fn facts(&mut self) -> NodeFacts {
        let mut facts = NodeFacts::gather(&self.name, self.node_ip, &self.labels);
        let health = self.runtime.borrow_and_update().clone();
        if let RuntimeHealth::Up { version } = &health {
            self.runtime_version = Some(version.clone());
        }
        facts.containerd_version = self.runtime_version.clone();
        facts.runtime_problem = health.problem();
        facts.allocation = self.allocation.clone();
        facts.runtime_handlers = self.runtime_handlers.clone();
        if let Some(p) = self.pressure.as_mut() {
            facts.pressure = *p.borrow_and_update();
        }
        facts
    }

    /// Creates the Node, or updates the labels and status of the existing one.
    pub async fn register(&mut self) -> Result<(), ApiError> {
        let facts = self.facts();
        let path = node_path(&self.name);
        let resp = answered("read the node", self.client.get(&path)).await?;
        let now = Utc::now();
        let node = match resp.status.as_u16() {
            404 => {
                let node = build_node(&facts, now);
                let resp =
                    accepted("create the node", self.client.post("/api/v1/nodes", &node)).await?;
                self.posted = node["status"].clone();
                self.posted_at = Some(Instant::now());
                resp.json().unwrap_or_default()
            }
            200 => {
                let existing = resp.json().unwrap_or_default();
                let patch = json!({"metadata": {"labels": node_labels(&facts)}});
                accepted(
                    "update the node's labels",
                    self.client.merge_patch(&path, &patch),
                )
                .await?;
                self.posted = existing["status"].clone();
                self.post_status(&facts).await?;
                existing
            }
            _ => return Err(ApiError::rejected("read the node", &resp)),
        };
        self.node_uid = node["metadata"]["uid"].as_str().map(str::to_string);
        tracing::info!(node = %self.name, "node registered");
        Ok(())
    }

    async fn post_status(&mut self, facts: &NodeFacts) -> Result<(), ApiError> {
        let status = node_status(facts, Utc::now(), &self.posted["conditions"]);
        let patch = json!({"status": status});
        accepted(
            "update the node status",
            self.client
                .merge_patch(&format!("{}/status", node_path(&self.name)), &patch),
        )
        .await?;
        self.posted = status;
        self.posted_at = Some(Instant::now());
        Ok(())
    }

    /// Renews the Lease (creating it if missing).
    pub async fn renew_lease(&self) -> Result<(), ApiError> {
        let now = Utc::now();
        let patch = json!({"spec": lease_spec(&self.name, self.lease_duration, now)});
        let what = "renew the node lease";
        let resp = answered(
            what,
            self.client.merge_patch(&lease_path(&self.name), &patch),
        )
        .await?;
        match resp.status.as_u16() {
            200 => Ok(()),
            404 => {
                let lease = build_lease(
                    &self.name,
                    self.node_uid.as_deref(),
                    self.lease_duration,
                    now,
                );
                let path = format!(
                    "/apis/coordination.k8s.io/v1/namespaces/{NODE_LEASE_NAMESPACE}/leases"
                );
                let what = "create the node lease";
                let resp = answered(what, self.client.post(&path, &lease)).await?;
                if resp.status.is_success() || resp.status.as_u16() == 409 {
                    Ok(())
                } else {
                    Err(ApiError::rejected(what, &resp))
                }
            }
            _ => Err(ApiError::rejected(what, &resp)),
        }
    }

    /// One heartbeat tick: renew the lease; post status when it changed or is due.
    /// A Node deleted meanwhile is registered again.
    pub async fn tick(&mut self) -> Result<(), ApiError> {
        self.renew_lease().await?;
        let facts = self.facts();
        let due = self
            .posted_at
            .is_none_or(|t| t.elapsed() >= STATUS_UPDATE_INTERVAL);
        let changed = without_times(&node_status(&facts, Utc::now(), &Value::Null))
            != without_times(&self.posted);
        if due || changed {
            match self.post_status(&facts).await {
                Err(e) if e.status() == Some(404) => self.register().await?,
                other => other?,
            }
        }
        Ok(())
    }

    /// Registers (retrying with back-off), then beats until the task is dropped.
    pub async fn run(mut self) {
        let mut attempt = 0;
        while let Err(e) = self.register().await {
            let delay = super::join::backoff(attempt);
            tracing::warn!(node = %self.name, error = %super::error_chain(&e), retry_in_s = delay.as_secs(), "node registration failed; retrying");
            tokio::time::sleep(delay).await;
            attempt += 1;
        }
        let renew_every = renew_interval(self.lease_duration);
        let mut ticker = tokio::time::interval(renew_every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut runtime_watched = true;
        let mut pressure_watched = self.pressure.is_some();
        loop {
            // A runtime going down or coming back, or a pressure condition changing, is
            // posted at once, not at the next tick.
            tokio::select! {
                _ = ticker.tick() => {}
                changed = self.runtime.changed(), if runtime_watched => {
                    runtime_watched = changed.is_ok();
                }
                changed = pressure_changed(&mut self.pressure), if pressure_watched => {
                    pressure_watched = changed;
                }
            }
            // A beat stuck on a link that dropped is given up at the next one's time,
            // so the first beat after the link returns goes out at once on a fresh
            // connection (not after TCP's retransmission back-off, up to 30 s later).
            match tokio::time::timeout(renew_every, self.tick()).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => {
                    tracing::warn!(node = %self.name, error = %super::error_chain(&e), "heartbeat failed");
                }
                Err(_) => {
                    self.client.disconnect().await;
                    tracing::warn!(node = %self.name, timeout_ms = renew_every.as_millis() as u64, "heartbeat timed out; reconnecting");
                }
            }
        }
    }
}

/// Waits for the pressure conditions to change; false once they never will.
async fn pressure_changed(
    pressure: &mut Option<tokio::sync::watch::Receiver<crate::agent::eviction::Pressure>>,
) -> bool {
    match pressure {
        Some(rx) => rx.changed().await.is_ok(),
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn facts() -> NodeFacts {
        NodeFacts {
            name: "n1".into(),
            hostname: "box".into(),
            internal_ip: "192.168.1.5".parse().unwrap(),
            arch: "arm64".into(),
            cpus: 4,
            memory_ki: 8_000_000,
            kernel_version: "6.1.0-18-arm64".into(),
            os_image: "Debian GNU/Linux 12 (bookworm)".into(),
            machine_id: "abc".into(),
            boot_id: "boot".into(),
            containerd_version: None,
            runtime_problem: None,
            labels: BTreeMap::from([("zone".to_string(), "attic".to_string())]),
            allocation: Default::default(),
            pressure: Default::default(),
            runtime_handlers: vec!["crun".into(), "runc".into()],
        }
    }

    fn t(s: &str) -> DateTime<Utc> {
        s.parse().unwrap()
    }

    #[test]
    fn node_is_built_from_the_facts() {
        let node = build_node(&facts(), t("2024-05-01T10:00:00Z"));
        let labels = &node["metadata"]["labels"];
        assert_eq!(labels["kubernetes.io/hostname"], "box");
        assert_eq!(labels["kubernetes.io/os"], "linux");
        assert_eq!(labels["kubernetes.io/arch"], "arm64");
        assert_eq!(labels["zone"], "attic");
        assert!(labels
            .as_object()
            .unwrap()
            .keys()
            .all(|k| !k.starts_with("node-role")));
        let status = &node["status"];
        assert_eq!(
            status["capacity"],
            json!({"cpu": "4", "memory": "8000000Ki", "pods": "110"})
        );
        assert_eq!(status["allocatable"], status["capacity"]);
        assert_eq!(
            status["addresses"],
            json!([{"type": "InternalIP", "address": "192.168.1.5"}, {"type": "Hostname", "address": "box"}])
        );
        let info = &status["nodeInfo"];
        assert_eq!(info["kubeletVersion"], "v1.32.0+orc");
        assert_eq!(info["containerRuntimeVersion"], "containerd://unknown");
        assert_eq!(info["osImage"], "Debian GNU/Linux 12 (bookworm)");
        assert_eq!(info["architecture"], "arm64");
        assert_eq!(info["machineID"], "abc");
        let no_features = json!({"recursiveReadOnlyMounts": false, "userNamespaces": false});
        assert_eq!(
            status["runtimeHandlers"],
            json!([{"name": "crun", "features": no_features}, {"name": "runc", "features": no_features}])
        );
        let ready = status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .unwrap();
        assert_eq!(ready["status"], "True");
        assert_eq!(ready["reason"], "KubeletReady");
        assert_eq!(ready["message"], "orc agent is posting ready status");
        assert_eq!(ready["lastHeartbeatTime"], "2024-05-01T10:00:00Z");
        for kind in ["MemoryPressure", "DiskPressure", "PIDPressure"] {
            let c = status["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == kind)
                .unwrap();
            assert_eq!(c["status"], "False", "{kind}");
        }
        // What the server would store: a typed Node.
        let typed: k8s_openapi::api::core::v1::Node = serde_json::from_value(node).unwrap();
        assert_eq!(typed.metadata.name.as_deref(), Some("n1"));
    }

    fn ready(status: &Value) -> Value {
        status["conditions"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["type"] == "Ready")
            .cloned()
            .unwrap()
    }

    #[test]
    fn node_is_not_ready_while_the_runtime_is_down() {
        let mut down = facts();
        down.runtime_problem = RuntimeHealth::Down {
            error: "connection refused".into(),
        }
        .problem();
        let up = node_status(&facts(), t("2024-05-01T10:00:00Z"), &Value::Null);
        let status = node_status(&down, t("2024-05-01T10:01:00Z"), &up["conditions"]);
        let r = ready(&status);
        assert_eq!(r["status"], "False");
        assert_eq!(r["reason"], "KubeletNotReady");
        assert_eq!(
            r["message"],
            "container runtime is down: connection refused"
        );
        assert_eq!(r["lastTransitionTime"], "2024-05-01T10:01:00Z");
        // Back up: Ready again, from that moment.
        let again = node_status(&facts(), t("2024-05-01T10:02:00Z"), &status["conditions"]);
        assert_eq!(ready(&again)["status"], "True");
        assert_eq!(ready(&again)["lastTransitionTime"], "2024-05-01T10:02:00Z");
    }

    #[test]
    fn pressure_conditions_follow_the_eviction_manager_in_upstreams_words() {
        let calm = node_status(&facts(), t("2024-05-01T10:00:00Z"), &Value::Null);
        let mut pressed = facts();
        pressed.pressure = crate::agent::eviction::Pressure {
            memory: true,
            disk: true,
            pids: true,
        };
        let status = node_status(&pressed, t("2024-05-01T10:01:00Z"), &calm["conditions"]);
        let find = |s: &Value, kind: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == kind)
                .cloned()
                .unwrap()
        };
        let memory = find(&status, "MemoryPressure");
        assert_eq!(memory["status"], "True");
        assert_eq!(memory["reason"], "KubeletHasInsufficientMemory");
        assert_eq!(
            memory["message"],
            "kubelet has insufficient memory available"
        );
        assert_eq!(memory["lastTransitionTime"], "2024-05-01T10:01:00Z");
        assert_eq!(
            find(&status, "DiskPressure")["reason"],
            "KubeletHasDiskPressure"
        );
        assert_eq!(
            find(&status, "PIDPressure")["reason"],
            "KubeletHasInsufficientPID"
        );
        assert_eq!(
            find(&status, "Ready")["status"],
            "True",
            "pressure is not NotReady"
        );
        assert_ne!(
            without_times(&status),
            without_times(&calm),
            "a change is posted"
        );
    }

    #[test]
    fn runtime_health_names_the_problem_in_upstreams_words() {
        assert_eq!(
            RuntimeHealth::Up {
                version: "1.7".into()
            }
            .problem(),
            None
        );
        assert_eq!(
            RuntimeHealth::Unknown { error: None }.problem().unwrap(),
            "container runtime status check may not have completed yet"
        );
        assert_eq!(
            RuntimeHealth::Unknown {
                error: Some("no socket".into())
            }
            .problem()
            .unwrap(),
            "container runtime is down: no socket"
        );
    }

    async fn next_health(rx: &mut tokio::sync::watch::Receiver<RuntimeHealth>) -> RuntimeHealth {
        tokio::time::timeout(Duration::from_secs(60), rx.changed())
            .await
            .expect("the monitor published (deadlocked?)")
            .unwrap();
        rx.borrow_and_update().clone()
    }

    #[tokio::test(start_paused = true)]
    async fn runtime_monitor_follows_the_runtime_down_and_up() {
        use crate::agent::runtime::{fake::FAKE_VERSION, FakeRuntime};
        let rt = std::sync::Arc::new(FakeRuntime::new());
        let (tx, mut rx) = tokio::sync::watch::channel(RuntimeHealth::Unknown { error: None });
        let monitor = tokio::spawn(monitor_runtime(rt.clone(), tx));
        let up = RuntimeHealth::Up {
            version: FAKE_VERSION.into(),
        };
        assert_eq!(next_health(&mut rx).await, up);
        // A short outage (a containerd restart) goes unnoticed; a long one does not.
        rt.set_down(true);
        tokio::time::sleep(RUNTIME_DOWN_AFTER - RUNTIME_CHECK_INTERVAL).await;
        rt.set_down(false);
        tokio::time::sleep(RUNTIME_CHECK_INTERVAL * 2).await;
        assert!(!rx.has_changed().unwrap(), "{:?}", *rx.borrow());
        rt.set_down(true);
        let down_at = tokio::time::Instant::now();
        assert!(
            matches!(next_health(&mut rx).await, RuntimeHealth::Down { error } if error.contains("the fake runtime is down"))
        );
        assert!(down_at.elapsed() >= RUNTIME_DOWN_AFTER - RUNTIME_CHECK_INTERVAL);
        rt.set_down(false);
        assert_eq!(next_health(&mut rx).await, up);
        drop(rx);
        tokio::time::timeout(Duration::from_secs(60), monitor)
            .await
            .expect("the monitor ends when nobody listens")
            .unwrap();
    }

    #[test]
    fn heartbeat_keeps_the_transition_time_of_unchanged_conditions() {
        let first = node_status(&facts(), t("2024-05-01T10:00:00Z"), &Value::Null);
        let later = node_status(&facts(), t("2024-05-01T10:01:00Z"), &first["conditions"]);
        let ready = |s: &Value| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == "Ready")
                .unwrap()
                .clone()
        };
        assert_eq!(ready(&later)["lastTransitionTime"], "2024-05-01T10:00:00Z");
        assert_eq!(ready(&later)["lastHeartbeatTime"], "2024-05-01T10:01:00Z");
        assert_eq!(without_times(&first), without_times(&later));
        let mut other = facts();
        other.internal_ip = "192.168.1.6".parse().unwrap();
        assert_ne!(
            without_times(&node_status(
                &other,
                t("2024-05-01T10:01:00Z"),
                &Value::Null
            )),
            without_times(&first)
        );
    }

    #[test]
    fn lease_is_held_by_the_node_with_a_micro_time() {
        let lease = build_lease(
            "n1",
            Some("uid-1"),
            DEFAULT_LEASE_DURATION,
            t("2024-05-01T10:00:00.123456Z"),
        );
        assert_eq!(lease["metadata"]["namespace"], "kube-node-lease");
        assert_eq!(lease["spec"]["holderIdentity"], "n1");
        assert_eq!(lease["spec"]["leaseDurationSeconds"], 20);
        assert_eq!(lease["spec"]["renewTime"], "2024-05-01T10:00:00.123456Z");
        assert_eq!(lease["metadata"]["ownerReferences"][0]["uid"], "uid-1");
        let typed: k8s_openapi::api::coordination::v1::Lease =
            serde_json::from_value(lease).unwrap();
        assert!(typed.spec.unwrap().renew_time.is_some());
    }

    #[test]
    fn host_files_are_parsed() {
        assert_eq!(
            meminfo_total_ki("MemTotal:       16314976 kB\nMemFree: 1 kB\n"),
            Some(16314976)
        );
        assert_eq!(meminfo_total_ki("nothing"), None);
        let os = "NAME=\"Debian GNU/Linux\"\nPRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\n";
        assert_eq!(
            os_release_pretty_name(os).as_deref(),
            Some("Debian GNU/Linux 12 (bookworm)")
        );
        assert_eq!(os_release_pretty_name("ID=x"), None);
        assert_eq!(kubernetes_arch("x86_64"), "amd64");
        assert_eq!(kubernetes_arch("aarch64"), "arm64");
    }

    #[test]
    fn node_labels_are_checked() {
        let labels = parse_labels(&["zone=attic".into(), "example.com/tier=edge".into()]).unwrap();
        assert_eq!(labels["zone"], "attic");
        assert!(parse_labels(&["novalue".into()])
            .unwrap_err()
            .contains("key=value"));
        assert!(parse_labels(&["bad key=x".into()])
            .unwrap_err()
            .contains("invalid key"));
        assert_eq!(
            parse_labels(&["node-role.kubernetes.io/worker=true".into()]).unwrap_err(),
            "--node-label \"node-role.kubernetes.io/worker=true\": a node may not give itself node-role.kubernetes.io/worker (NodeRestriction): set it as admin instead: kubectl label node NODE node-role.kubernetes.io/worker=true"
        );
        assert!(parse_labels(&["topology.kubernetes.io/zone=a".into()]).is_ok());
    }
}
