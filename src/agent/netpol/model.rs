//! What policy enforcement knows of the cluster, read from API objects (JSON): pods with
//! their address, labels and named ports, and NetworkPolicies as rules of peers and
//! ports. No I/O.

use std::net::Ipv4Addr;

use ipnet::Ipv4Net;
use serde_json::{Map, Value};

use crate::agent::proxy::rules::Protocol;
use crate::api::selector::LabelSelector;

/// `(namespace, name)` of a pod or a policy.
pub type ObjectKey = (String, String);

/// A pod that has an address of its own on the pod network.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub namespace: String,
    pub name: String,
    pub ip: Ipv4Addr,
    pub labels: Map<String, Value>,
    pub node: Option<String>,
    /// The named container ports (for named ports in policies).
    pub ports: Vec<NamedPort>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedPort {
    pub name: String,
    pub protocol: Protocol,
    pub port: u16,
}

impl PodInfo {
    /// The pod as policies see it; `None` for pods without an IPv4 address of their own:
    /// not yet started, on the host's network, or finished (their address may already
    /// belong to another pod).
    pub fn from_object(pod: &Value) -> Option<PodInfo> {
        if pod["spec"]["hostNetwork"].as_bool() == Some(true) {
            return None;
        }
        if matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded" | "Failed")
        ) {
            return None;
        }
        let ip: Ipv4Addr = pod["status"]["podIP"].as_str()?.parse().ok()?;
        let mut ports = Vec::new();
        for container in pod["spec"]["containers"].as_array().into_iter().flatten() {
            for port in container["ports"].as_array().into_iter().flatten() {
                let (Some(name), Some(number)) = (
                    port["name"].as_str().filter(|n| !n.is_empty()),
                    port["containerPort"]
                        .as_u64()
                        .and_then(|p| u16::try_from(p).ok()),
                ) else {
                    continue;
                };
                let Some(protocol) = Protocol::from_k8s(port["protocol"].as_str()) else {
                    continue;
                };
                ports.push(NamedPort {
                    name: name.to_string(),
                    protocol,
                    port: number,
                });
            }
        }
        Some(PodInfo {
            namespace: pod["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            name: pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
            ip,
            labels: pod["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
            node: pod["spec"]["nodeName"].as_str().map(String::from),
            ports,
        })
    }

    pub fn key(&self) -> ObjectKey {
        (self.namespace.clone(), self.name.clone())
    }

    /// The number of the container port called `name` for `protocol`.
    pub fn named_port(&self, name: &str, protocol: Protocol) -> Option<u16> {
        self.ports
            .iter()
            .find(|p| p.name == name && p.protocol == protocol)
            .map(|p| p.port)
    }
}

/// The traffic direction a policy rule is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Direction {
    Ingress,
    Egress,
}

impl Direction {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ingress => "ingress",
            Self::Egress => "egress",
        }
    }
}

/// One NetworkPolicy.
#[derive(Debug, Clone)]
pub struct Policy {
    pub namespace: String,
    pub name: String,
    /// The pods (of `namespace`) it applies to.
    pub pod_selector: Selector,
    /// The ingress rules when the policy is of type Ingress (empty: deny all).
    pub ingress: Option<Vec<Rule>>,
    /// The egress rules when the policy is of type Egress (empty: deny all).
    pub egress: Option<Vec<Rule>>,
}

/// A label selector; one that does not parse selects nothing (validation keeps such
/// selectors out of the API).
#[derive(Debug, Clone)]
pub struct Selector(Option<LabelSelector>);

impl Selector {
    fn from_k8s(selector: &Value) -> Selector {
        Selector(LabelSelector::from_k8s(selector).ok())
    }

    pub fn matches(&self, labels: &Map<String, Value>) -> bool {
        self.0.as_ref().is_some_and(|s| s.matches(Some(labels)))
    }
}

/// An ingress or egress rule: traffic from/to `peers` (`None`: any address) on `ports`
/// (empty: every port).
#[derive(Debug, Clone)]
pub struct Rule {
    pub peers: Option<Vec<Peer>>,
    pub ports: Vec<PortSpec>,
}

#[derive(Debug, Clone)]
pub enum Peer {
    /// Pods matching `pods` (all without it) in the namespaces matching `namespaces`, or
    /// in the policy's own namespace without it.
    Pods {
        namespaces: Option<Selector>,
        pods: Option<Selector>,
    },
    /// Addresses: the block's CIDR minus its exceptions, as inclusive ranges.
    Block(Vec<(u32, u32)>),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PortSpec {
    /// Every port of the protocol.
    All(Protocol),
    /// `port` … `endPort` (one port when they are equal).
    Range(Protocol, u16, u16),
    /// A container port name, resolved on the pod the traffic goes to.
    Named(Protocol, String),
}

impl Policy {
    /// The policy as stored (defaulted and validated by the API server).
    pub fn from_object(policy: &Value) -> Policy {
        let spec = &policy["spec"];
        let types: Vec<&str> = spec["policyTypes"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let has_egress_rules = spec["egress"].as_array().is_some_and(|r| !r.is_empty());
        // Without policyTypes (only written by clients bypassing defaulting): upstream's default.
        let (ingress, egress) = if types.is_empty() {
            (true, has_egress_rules)
        } else {
            (types.contains(&"Ingress"), types.contains(&"Egress"))
        };
        let rules = |key: &str, peers_key: &str| -> Vec<Rule> {
            spec[key]
                .as_array()
                .into_iter()
                .flatten()
                .map(|rule| Rule::from_object(rule, peers_key))
                .collect()
        };
        Policy {
            namespace: policy["metadata"]["namespace"]
                .as_str()
                .unwrap_or("default")
                .to_string(),
            name: policy["metadata"]["name"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            pod_selector: Selector::from_k8s(
                spec.get("podSelector")
                    .filter(|s| !s.is_null())
                    .unwrap_or(&Value::Object(Map::new())),
            ),
            ingress: ingress.then(|| rules("ingress", "from")),
            egress: egress.then(|| rules("egress", "to")),
        }
    }

    pub fn key(&self) -> ObjectKey {
        (self.namespace.clone(), self.name.clone())
    }

    /// Whether the policy applies to `pod`.
    pub fn selects(&self, pod: &PodInfo) -> bool {
        pod.namespace == self.namespace && self.pod_selector.matches(&pod.labels)
    }

    pub fn rules(&self, direction: Direction) -> Option<&[Rule]> {
        match direction {
            Direction::Ingress => self.ingress.as_deref(),
            Direction::Egress => self.egress.as_deref(),
        }
    }

    /// Whether any peer selects pods by the labels of their namespace.
    pub fn has_namespace_selectors(&self) -> bool {
        [&self.ingress, &self.egress]
            .into_iter()
            .flatten()
            .flatten()
            .flat_map(|r| r.peers.iter().flatten())
            .any(|p| {
                matches!(
                    p,
                    Peer::Pods {
                        namespaces: Some(_),
                        ..
                    }
                )
            })
    }
}

impl Rule {
    fn from_object(rule: &Value, peers_key: &str) -> Rule {
        let peers: Vec<Peer> = rule[peers_key]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Peer::from_object)
            .collect();
        let listed = rule[peers_key].as_array().is_some_and(|p| !p.is_empty());
        let ports = rule["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(PortSpec::from_object)
            .collect();
        Rule {
            peers: listed.then_some(peers),
            ports,
        }
    }

    pub fn has_pod_peers(&self) -> bool {
        self.peers
            .iter()
            .flatten()
            .any(|p| matches!(p, Peer::Pods { .. }))
    }

    pub fn has_blocks(&self) -> bool {
        self.peers
            .iter()
            .flatten()
            .any(|p| matches!(p, Peer::Block(_)))
    }

    pub fn has_named_ports(&self) -> bool {
        self.ports.iter().any(|p| matches!(p, PortSpec::Named(..)))
    }

    /// Whether `pod` is one of the rule's pod peers (`policy_ns` is the policy's
    /// namespace, `namespace_labels` the labels of the pod's namespace).
    pub fn peers_include(
        &self,
        policy_ns: &str,
        pod: &PodInfo,
        namespace_labels: Option<&Map<String, Value>>,
    ) -> bool {
        self.peers.iter().flatten().any(|peer| match peer {
            Peer::Pods { namespaces, pods } => {
                let in_namespace = match namespaces {
                    None => pod.namespace == policy_ns,
                    Some(selector) => namespace_labels.is_some_and(|l| selector.matches(l)),
                };
                in_namespace && pods.as_ref().is_none_or(|s| s.matches(&pod.labels))
            }
            Peer::Block(_) => false,
        })
    }

    /// The address ranges of the rule's ipBlocks, merged.
    pub fn block_ranges(&self) -> Vec<(u32, u32)> {
        let ranges = self
            .peers
            .iter()
            .flatten()
            .filter_map(|p| match p {
                Peer::Block(ranges) => Some(ranges.iter().copied()),
                Peer::Pods { .. } => None,
            })
            .flatten()
            .collect();
        merge_ranges(ranges)
    }
}

impl Peer {
    fn from_object(peer: &Value) -> Option<Peer> {
        if let Some(block) = peer.get("ipBlock").filter(|b| b.is_object()) {
            let cidr: Ipv4Net = block["cidr"].as_str()?.parse().ok()?;
            let except: Vec<Ipv4Net> = block["except"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|e| e.as_str()?.parse().ok())
                .collect();
            return Some(Peer::Block(block_ranges(cidr, &except)));
        }
        let selector = |key: &str| {
            peer.get(key)
                .filter(|s| s.is_object())
                .map(Selector::from_k8s)
        };
        let (namespaces, pods) = (selector("namespaceSelector"), selector("podSelector"));
        if namespaces.is_none() && pods.is_none() {
            return None;
        }
        Some(Peer::Pods { namespaces, pods })
    }
}

impl PortSpec {
    fn from_object(port: &Value) -> Option<PortSpec> {
        let protocol = Protocol::from_k8s(port["protocol"].as_str())?;
        Some(match &port["port"] {
            Value::Number(n) => {
                let start = u16::try_from(n.as_u64()?).ok()?;
                let end = port["endPort"]
                    .as_u64()
                    .and_then(|e| u16::try_from(e).ok())
                    .filter(|e| *e >= start)
                    .unwrap_or(start);
                PortSpec::Range(protocol, start, end)
            }
            Value::String(name) => match name.parse::<u16>() {
                Ok(number) => PortSpec::Range(protocol, number, number),
                Err(_) => PortSpec::Named(protocol, name.clone()),
            },
            _ => PortSpec::All(protocol),
        })
    }
}

fn net_range(net: Ipv4Net) -> (u32, u32) {
    (u32::from(net.network()), u32::from(net.broadcast()))
}

/// `cidr` minus every `except` block, as sorted inclusive ranges.
pub fn block_ranges(cidr: Ipv4Net, except: &[Ipv4Net]) -> Vec<(u32, u32)> {
    let mut ranges = vec![net_range(cidr.trunc())];
    for hole in except {
        let (lo, hi) = net_range(hole.trunc());
        ranges = ranges
            .into_iter()
            .flat_map(|(a, b)| {
                let mut left = Vec::with_capacity(2);
                if hi < a || lo > b {
                    left.push((a, b));
                } else {
                    if lo > a {
                        left.push((a, lo - 1));
                    }
                    if hi < b {
                        left.push((hi + 1, b));
                    }
                }
                left
            })
            .collect();
    }
    ranges
}

/// Sorted, non-overlapping, non-adjacent ranges covering the same addresses.
pub fn merge_ranges(mut ranges: Vec<(u32, u32)>) -> Vec<(u32, u32)> {
    ranges.sort_unstable();
    let mut merged: Vec<(u32, u32)> = Vec::with_capacity(ranges.len());
    for (lo, hi) in ranges {
        match merged.last_mut() {
            Some(last) if u64::from(lo) <= u64::from(last.1) + 1 => last.1 = last.1.max(hi),
            _ => merged.push((lo, hi)),
        }
    }
    merged
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ip(s: &str) -> u32 {
        u32::from(s.parse::<Ipv4Addr>().unwrap())
    }

    #[test]
    fn an_ip_block_is_its_cidr_minus_the_exceptions() {
        let ranges = block_ranges(
            "10.0.0.0/16".parse().unwrap(),
            &[
                "10.0.1.0/24".parse().unwrap(),
                "10.0.255.0/24".parse().unwrap(),
            ],
        );
        assert_eq!(
            ranges,
            [
                (ip("10.0.0.0"), ip("10.0.0.255")),
                (ip("10.0.2.0"), ip("10.0.254.255"))
            ]
        );
        let everything = block_ranges("0.0.0.0/0".parse().unwrap(), &[]);
        assert_eq!(everything, [(0, u32::MAX)]);
    }

    #[test]
    fn overlapping_and_adjacent_ranges_merge() {
        assert_eq!(
            merge_ranges(vec![(10, 20), (0, 5), (6, 8), (15, 30), (40, 40)]),
            [(0, 8), (10, 30), (40, 40)]
        );
        assert_eq!(merge_ranges(vec![(0, u32::MAX), (5, 6)]), [(0, u32::MAX)]);
    }

    #[test]
    fn policy_types_decide_which_directions_are_isolated() {
        let policy = Policy::from_object(&json!({
            "metadata": {"namespace": "ns", "name": "p"},
            "spec": {"podSelector": {}, "policyTypes": ["Egress"],
                     "ingress": [{}]}}));
        assert!(policy.ingress.is_none());
        assert_eq!(policy.egress.as_ref().map(Vec::len), Some(0));
        let legacy = Policy::from_object(&json!({
            "metadata": {"namespace": "ns", "name": "p"},
            "spec": {"egress": [{"ports": [{"port": "dns", "protocol": "UDP"}]}]}}));
        assert!(legacy.ingress.is_some());
        let egress = legacy.egress.unwrap();
        assert_eq!(
            egress[0].ports,
            [PortSpec::Named(Protocol::Udp, "dns".into())]
        );
        assert!(egress[0].peers.is_none(), "no `to` means every destination");
    }

    #[test]
    fn pods_without_their_own_address_are_left_out() {
        let pod = |extra: Value| {
            let p = json!({"metadata": {"namespace": "ns", "name": "a", "labels": {"app": "a"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "c", "ports": [
                    {"name": "http", "containerPort": 8080},
                    {"containerPort": 9000}]}]},
                "status": {"podIP": "10.42.0.5", "phase": "Running"}});
            PodInfo::from_object(&crate::api::patch::merge_patch(&p, &extra))
        };
        let running = pod(json!({})).unwrap();
        assert_eq!(running.named_port("http", Protocol::Tcp), Some(8080));
        assert_eq!(running.named_port("http", Protocol::Udp), None);
        assert_eq!(running.ports.len(), 1);
        assert!(pod(json!({"spec": {"hostNetwork": true}})).is_none());
        assert!(pod(json!({"status": {"phase": "Succeeded"}})).is_none());
        assert!(pod(json!({"status": {"podIP": null}})).is_none());
    }
}
