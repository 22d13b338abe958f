//! Scheduling-relevant views of pods and nodes, parsed once from their JSON (wire form)
//! so that filters and scores run on plain structs, and the per-node usage the
//! scheduler keeps up to date from watch events.

use serde_json::{Map, Value};

use crate::api::quantity::Quantity;

/// The scheduler name pods get by default; pods naming another scheduler are left alone.
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
/// `status.allocatable.pods` when a node does not say (kubelet's default `maxPods`).
pub const DEFAULT_MAX_PODS: i64 = 110;
/// CPU a container without a cpu request is assumed to use, for scoring only
/// (upstream `DefaultMilliCPURequest`).
pub const DEFAULT_MILLI_CPU_REQUEST: i64 = 100;
/// Memory a container without a memory request is assumed to use, for scoring only
/// (upstream `DefaultMemoryRequest`).
pub const DEFAULT_MEMORY_REQUEST: i64 = 200 << 20;

pub const TAINT_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_UNSCHEDULABLE: &str = "node.kubernetes.io/unschedulable";

/// Amounts of the resources the scheduler accounts for.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Resources {
    pub milli_cpu: i64,
    pub memory: i64,
    pub pods: i64,
}

impl Resources {
    /// Reads `cpu`, `memory` and `pods` from a quantity map (`requests`, `allocatable` …);
    /// an absent or malformed quantity reads as zero.
    fn from_quantities(map: &Value) -> Resources {
        Resources {
            milli_cpu: Quantity::from_json(&map["cpu"])
                .ok()
                .map_or(0, |q| q.milli_value()),
            memory: Quantity::from_json(&map["memory"])
                .ok()
                .map_or(0, |q| q.value()),
            pods: Quantity::from_json(&map["pods"])
                .ok()
                .map_or(0, |q| q.value()),
        }
    }

    fn max(self, other: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu.max(other.milli_cpu),
            memory: self.memory.max(other.memory),
            pods: self.pods.max(other.pods),
        }
    }
}

impl std::ops::Add for Resources {
    type Output = Resources;
    fn add(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu + o.milli_cpu,
            memory: self.memory + o.memory,
            pods: self.pods + o.pods,
        }
    }
}

impl std::ops::Sub for Resources {
    type Output = Resources;
    fn sub(self, o: Resources) -> Resources {
        Resources {
            milli_cpu: self.milli_cpu - o.milli_cpu,
            memory: self.memory - o.memory,
            pods: self.pods - o.pods,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TaintEffect {
    NoSchedule,
    PreferNoSchedule,
    NoExecute,
    /// An effect this scheduler does not know; it never blocks scheduling.
    Other,
}

impl TaintEffect {
    fn parse(s: &str) -> TaintEffect {
        match s {
            "NoSchedule" => TaintEffect::NoSchedule,
            "PreferNoSchedule" => TaintEffect::PreferNoSchedule,
            "NoExecute" => TaintEffect::NoExecute,
            _ => TaintEffect::Other,
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            TaintEffect::NoSchedule => "NoSchedule",
            TaintEffect::PreferNoSchedule => "PreferNoSchedule",
            TaintEffect::NoExecute => "NoExecute",
            TaintEffect::Other => "",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Taint {
    pub key: String,
    pub value: String,
    pub effect: TaintEffect,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Toleration {
    /// Empty with `exists` = tolerates every taint.
    pub key: String,
    /// Operator `Exists` (otherwise `Equal`).
    pub exists: bool,
    pub value: String,
    /// Empty = every effect.
    pub effect: String,
}

impl Toleration {
    fn parse(v: &Value) -> Toleration {
        Toleration {
            key: str_of(&v["key"]).to_string(),
            exists: str_of(&v["operator"]) == "Exists",
            value: str_of(&v["value"]).to_string(),
            effect: str_of(&v["effect"]).to_string(),
        }
    }

    /// Upstream `Toleration.ToleratesTaint`.
    pub fn tolerates(&self, taint: &Taint) -> bool {
        if !self.effect.is_empty() && self.effect != taint.effect.as_str() {
            return false;
        }
        if !self.key.is_empty() && self.key != taint.key {
            return false;
        }
        self.exists || self.value == taint.value
    }
}

/// True when some toleration tolerates `taint`.
pub fn tolerated(tolerations: &[Toleration], taint: &Taint) -> bool {
    tolerations.iter().any(|t| t.tolerates(taint))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectorOp {
    In,
    NotIn,
    Exists,
    DoesNotExist,
    Gt,
    Lt,
    /// An operator validation should have refused; it matches nothing.
    Unknown,
}

/// One `matchExpressions` / `matchFields` entry of a NodeSelectorTerm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeSelectorRequirement {
    pub key: String,
    pub op: SelectorOp,
    pub values: Vec<String>,
}

impl NodeSelectorRequirement {
    fn parse(v: &Value) -> NodeSelectorRequirement {
        let op = match str_of(&v["operator"]) {
            "In" => SelectorOp::In,
            "NotIn" => SelectorOp::NotIn,
            "Exists" => SelectorOp::Exists,
            "DoesNotExist" => SelectorOp::DoesNotExist,
            "Gt" => SelectorOp::Gt,
            "Lt" => SelectorOp::Lt,
            _ => SelectorOp::Unknown,
        };
        NodeSelectorRequirement {
            key: str_of(&v["key"]).to_string(),
            op,
            values: v["values"]
                .as_array()
                .map(|a| a.iter().map(|x| str_of(x).to_string()).collect())
                .unwrap_or_default(),
        }
    }

    /// Whether the requirement holds for a label (or field) value (`None` = absent).
    pub fn matches(&self, value: Option<&str>) -> bool {
        let has = |v: &str| self.values.iter().any(|x| x == v);
        match self.op {
            SelectorOp::In => value.is_some_and(has),
            SelectorOp::NotIn => !value.is_some_and(has),
            SelectorOp::Exists => value.is_some(),
            SelectorOp::DoesNotExist => value.is_none(),
            SelectorOp::Gt | SelectorOp::Lt => {
                let (Some(Ok(have)), [want]) =
                    (value.map(str::parse::<i64>), self.values.as_slice())
                else {
                    return false;
                };
                let Ok(want) = want.parse::<i64>() else {
                    return false;
                };
                if self.op == SelectorOp::Gt {
                    have > want
                } else {
                    have < want
                }
            }
            SelectorOp::Unknown => false,
        }
    }
}

/// A NodeSelectorTerm: all expressions and all fields must hold; an empty term matches
/// nothing (upstream).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NodeSelectorTerm {
    pub expressions: Vec<NodeSelectorRequirement>,
    pub fields: Vec<NodeSelectorRequirement>,
}

impl NodeSelectorTerm {
    pub fn parse(v: &Value) -> NodeSelectorTerm {
        let reqs = |field: &str| {
            v[field]
                .as_array()
                .map(|a| a.iter().map(NodeSelectorRequirement::parse).collect())
                .unwrap_or_default()
        };
        NodeSelectorTerm {
            expressions: reqs("matchExpressions"),
            fields: reqs("matchFields"),
        }
    }

    pub fn matches(&self, node: &NodeInfo) -> bool {
        if self.expressions.is_empty() && self.fields.is_empty() {
            return false;
        }
        self.expressions
            .iter()
            .all(|r| r.matches(node.labels.get(&r.key).map(str_of)))
            && self.fields.iter().all(|r| {
                // `metadata.name` is the only field upstream supports.
                r.key == "metadata.name" && r.matches(Some(&node.name))
            })
    }
}

/// A host port a pod claims; `ip` "0.0.0.0" claims every address.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HostPort {
    pub ip: String,
    pub protocol: String,
    pub port: i64,
}

impl HostPort {
    pub fn conflicts(&self, other: &HostPort) -> bool {
        const ANY: &str = "0.0.0.0";
        self.port == other.port
            && self.protocol == other.protocol
            && (self.ip == other.ip || self.ip == ANY || other.ip == ANY)
    }
}

/// What the scheduler needs to know about a pod.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PodInfo {
    /// Effective requests (containers summed, max with each init container, plus
    /// overhead); `pods` is always 1.
    pub requests: Resources,
    /// Requests with upstream's non-zero defaults for containers asking for nothing
    /// (scoring only; `pods` unused).
    pub nonzero_requests: Resources,
    pub node_selector: Vec<(String, String)>,
    /// Required node affinity: the pod fits a node matching any term. `None` = no rule.
    pub required_terms: Option<Vec<NodeSelectorTerm>>,
    /// Preferred node affinity: (weight, term).
    pub preferred_terms: Vec<(i64, NodeSelectorTerm)>,
    pub tolerations: Vec<Toleration>,
    pub host_ports: Vec<HostPort>,
    /// `spec.priority` (resolved from the PriorityClass at admission).
    pub priority: i64,
    /// `spec.preemptionPolicy: Never`: the pod never preempts others.
    pub preemption_never: bool,
    /// `podAffinity` / `podAntiAffinity` terms; `None` for the usual pod without any.
    pub pod_affinity: Option<std::sync::Arc<super::pod_affinity::PodAffinity>>,
    /// `topologySpreadConstraints` (empty for the usual pod without any).
    pub spread_constraints: Vec<super::topology_spread::SpreadConstraint>,
}

impl PodInfo {
    pub fn from_json(pod: &Value) -> PodInfo {
        let spec = &pod["spec"];
        let mut sum = Resources::default();
        let mut nonzero = Resources::default();
        for c in spec["containers"].as_array().into_iter().flatten() {
            let r = Resources::from_quantities(&c["resources"]["requests"]);
            sum = sum + r;
            nonzero = nonzero + with_nonzero_defaults(r);
        }
        // Upstream's `PodRequests`: sidecars (restartable init containers) run beside
        // the app containers and every init container after them; an init container
        // needs its own requests plus the sidecars started before it.
        let (mut sidecars, mut sidecars_nonzero) = (Resources::default(), Resources::default());
        let (mut init, mut init_nonzero) = (Resources::default(), Resources::default());
        for c in spec["initContainers"].as_array().into_iter().flatten() {
            let r = Resources::from_quantities(&c["resources"]["requests"]);
            let (need, need_nonzero) = if c["restartPolicy"] == "Always" {
                sum = sum + r;
                nonzero = nonzero + with_nonzero_defaults(r);
                sidecars = sidecars + r;
                sidecars_nonzero = sidecars_nonzero + with_nonzero_defaults(r);
                (sidecars, sidecars_nonzero)
            } else {
                (r + sidecars, with_nonzero_defaults(r) + sidecars_nonzero)
            };
            init = init.max(need);
            init_nonzero = init_nonzero.max(need_nonzero);
        }
        sum = sum.max(init);
        nonzero = nonzero.max(init_nonzero);
        let overhead = Resources::from_quantities(&spec["overhead"]);
        let mut requests = sum + overhead;
        requests.pods = 1;
        let mut nonzero_requests = nonzero + overhead;
        nonzero_requests.pods = 1;

        let node_selector = spec["nodeSelector"]
            .as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| (k.clone(), str_of(v).to_string()))
                    .collect()
            })
            .unwrap_or_default();
        let affinity = &spec["affinity"]["nodeAffinity"];
        let required = &affinity["requiredDuringSchedulingIgnoredDuringExecution"];
        let required_terms = required.is_object().then(|| {
            required["nodeSelectorTerms"]
                .as_array()
                .map(|a| a.iter().map(NodeSelectorTerm::parse).collect())
                .unwrap_or_default()
        });
        let preferred_terms = affinity["preferredDuringSchedulingIgnoredDuringExecution"]
            .as_array()
            .map(|a| {
                a.iter()
                    .map(|p| {
                        (
                            p["weight"].as_i64().unwrap_or(0),
                            NodeSelectorTerm::parse(&p["preference"]),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        let tolerations = spec["tolerations"]
            .as_array()
            .map(|a| a.iter().map(Toleration::parse).collect())
            .unwrap_or_default();
        let host_ports = spec["containers"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|c| c["ports"].as_array().into_iter().flatten())
            .filter_map(|p| {
                let port = p["hostPort"].as_i64().filter(|&n| n > 0)?;
                let ip = match str_of(&p["hostIP"]) {
                    "" => "0.0.0.0",
                    ip => ip,
                };
                let protocol = match str_of(&p["protocol"]) {
                    "" => "TCP",
                    proto => proto,
                };
                Some(HostPort {
                    ip: ip.to_string(),
                    protocol: protocol.to_string(),
                    port,
                })
            })
            .collect();
        PodInfo {
            requests,
            nonzero_requests,
            node_selector,
            required_terms,
            preferred_terms,
            tolerations,
            host_ports,
            priority: spec["priority"].as_i64().unwrap_or(0),
            preemption_never: spec["preemptionPolicy"] == "Never",
            pod_affinity: super::pod_affinity::PodAffinity::from_pod(pod).map(std::sync::Arc::new),
            spread_constraints: super::topology_spread::constraints_of(pod),
        }
    }
}

fn with_nonzero_defaults(mut r: Resources) -> Resources {
    if r.milli_cpu == 0 {
        r.milli_cpu = DEFAULT_MILLI_CPU_REQUEST;
    }
    if r.memory == 0 {
        r.memory = DEFAULT_MEMORY_REQUEST;
    }
    r
}

/// What the scheduler needs to know about a node. Two equal `NodeInfo`s schedule alike,
/// so a node update that leaves it unchanged (a heartbeat) is no reason to retry pods.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeInfo {
    pub name: String,
    pub labels: Map<String, Value>,
    /// The `Ready` condition is `True`.
    pub ready: bool,
    /// `spec.unschedulable` (cordoned).
    pub unschedulable: bool,
    pub taints: Vec<Taint>,
    pub allocatable: Resources,
}

impl NodeInfo {
    pub fn from_json(node: &Value) -> NodeInfo {
        let status = &node["status"];
        let ready = status["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        let quantities = if status["allocatable"].is_object() {
            &status["allocatable"]
        } else {
            &status["capacity"]
        };
        let mut allocatable = Resources::from_quantities(quantities);
        if quantities.get("pods").is_none() {
            allocatable.pods = DEFAULT_MAX_PODS;
        }
        let taints = node["spec"]["taints"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|t| Taint {
                key: str_of(&t["key"]).to_string(),
                value: str_of(&t["value"]).to_string(),
                effect: TaintEffect::parse(str_of(&t["effect"])),
            })
            .collect();
        NodeInfo {
            name: crate::api::object::name(node).to_string(),
            labels: crate::api::object::labels(node)
                .cloned()
                .unwrap_or_default(),
            ready,
            unschedulable: node["spec"]["unschedulable"].as_bool().unwrap_or(false),
            taints,
            allocatable,
        }
    }
}

/// What is already placed on a node (bound pods plus pods assumed while their binding
/// is in flight).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct NodeUsage {
    pub requested: Resources,
    pub nonzero_requested: Resources,
    pub host_ports: Vec<HostPort>,
}

impl NodeUsage {
    pub fn add(&mut self, pod: &PodInfo) {
        self.requested = self.requested + pod.requests;
        self.nonzero_requested = self.nonzero_requested + pod.nonzero_requests;
        self.host_ports.extend(pod.host_ports.iter().cloned());
    }

    pub fn remove(&mut self, pod: &PodInfo) {
        self.requested = self.requested - pod.requests;
        self.nonzero_requested = self.nonzero_requested - pod.nonzero_requests;
        for hp in &pod.host_ports {
            if let Some(i) = self.host_ports.iter().position(|x| x == hp) {
                self.host_ports.swap_remove(i);
            }
        }
    }

    /// Nothing is placed here.
    pub fn is_empty(&self) -> bool {
        self.requested == Resources::default() && self.host_ports.is_empty()
    }
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn requests_sum_containers_and_take_the_max_with_init_containers() {
        let pod = json!({"spec": {
            "containers": [
                {"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}},
                {"resources": {"requests": {"cpu": "200m"}}},
            ],
            "initContainers": [{"resources": {"requests": {"cpu": "500m", "memory": "32Mi"}}}],
            "overhead": {"cpu": "10m"},
        }});
        let info = PodInfo::from_json(&pod);
        assert_eq!(
            info.requests,
            Resources {
                milli_cpu: 510,
                memory: 64 << 20,
                pods: 1
            }
        );
    }

    #[test]
    fn sidecars_add_to_the_app_containers_and_to_later_init_containers() {
        let pod = json!({"spec": {
            "containers": [{"resources": {"requests": {"cpu": "100m", "memory": "64Mi"}}}],
            "initContainers": [
                {"resources": {"requests": {"cpu": "50m", "memory": "16Mi"}}, "restartPolicy": "Always"},
                {"resources": {"requests": {"cpu": "500m", "memory": "8Mi"}}},
            ],
        }});
        let info = PodInfo::from_json(&pod);
        // max(100m + 50m, 500m + 50m) and max(64Mi + 16Mi, 8Mi + 16Mi).
        assert_eq!(
            info.requests,
            Resources {
                milli_cpu: 550,
                memory: 80 << 20,
                pods: 1
            }
        );
    }

    #[test]
    fn a_pod_without_requests_counts_one_pod_and_nonzero_defaults_for_scoring() {
        let info = PodInfo::from_json(&json!({"spec": {"containers": [{"name": "c"}]}}));
        assert_eq!(
            info.requests,
            Resources {
                milli_cpu: 0,
                memory: 0,
                pods: 1
            }
        );
        assert_eq!(info.nonzero_requests.milli_cpu, DEFAULT_MILLI_CPU_REQUEST);
        assert_eq!(info.nonzero_requests.memory, DEFAULT_MEMORY_REQUEST);
    }

    #[test]
    fn node_allocatable_pods_defaults_to_110_and_ready_reads_the_condition() {
        let node = json!({"metadata": {"name": "n1"}, "status": {
            "allocatable": {"cpu": "2", "memory": "4Gi"},
            "conditions": [{"type": "Ready", "status": "True"}],
        }});
        let info = NodeInfo::from_json(&node);
        assert!(info.ready);
        assert_eq!(
            info.allocatable,
            Resources {
                milli_cpu: 2000,
                memory: 4 << 30,
                pods: 110
            }
        );
        let not_ready = json!({"status": {"conditions": [{"type": "Ready", "status": "Unknown"}]}});
        assert!(!NodeInfo::from_json(&not_ready).ready);
    }

    #[test]
    fn requests_in_every_quantity_spelling_are_counted_exactly() {
        let pod = json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "2n", "memory": "1e9"}}},
            {"resources": {"requests": {"cpu": 0.5, "memory": "129e6"}}},
            {"resources": {"requests": {"cpu": "5u", "memory": "1Pi"}}},
        ]}});
        let info = PodInfo::from_json(&pod);
        assert_eq!(
            info.requests.milli_cpu,
            1 + 500 + 1,
            "each rounds up to a millicore"
        );
        assert_eq!(
            info.requests.memory,
            1_000_000_000 + 129_000_000 + (1 << 50)
        );
    }

    #[test]
    fn host_ports_default_to_tcp_on_every_address() {
        let pod = json!({"spec": {"containers": [{"ports": [
            {"containerPort": 80, "hostPort": 8080},
            {"containerPort": 53, "hostPort": 53, "protocol": "UDP", "hostIP": "10.0.0.1"},
            {"containerPort": 9000},
        ]}]}});
        let ports = PodInfo::from_json(&pod).host_ports;
        assert_eq!(ports.len(), 2);
        assert_eq!(
            (ports[0].ip.as_str(), ports[0].protocol.as_str()),
            ("0.0.0.0", "TCP")
        );
        assert!(ports[0].conflicts(&HostPort {
            ip: "10.0.0.2".into(),
            protocol: "TCP".into(),
            port: 8080
        }));
        assert!(!ports[1].conflicts(&HostPort {
            ip: "10.0.0.2".into(),
            protocol: "UDP".into(),
            port: 53
        }));
    }

    #[test]
    fn usage_add_then_remove_returns_to_empty() {
        let pod = PodInfo::from_json(&json!({"spec": {"containers": [
            {"resources": {"requests": {"cpu": "1"}}, "ports": [{"containerPort": 80, "hostPort": 80}]}
        ]}}));
        let mut usage = NodeUsage::default();
        usage.add(&pod);
        assert_eq!(usage.requested.pods, 1);
        usage.remove(&pod);
        assert_eq!(usage, NodeUsage::default());
    }
}
