//! Pure rule compilation: policies + pods + namespaces in, the desired objects of the
//! `orc-netpol` table out, as fragments that can be rebuilt and diffed alone:
//!
//! - a policy's fragment holds its peer sets, one per rule and kind: the peer pods' IPs
//!   (`ipv4_addr`), its ipBlocks (intervals: CIDR minus except), and for egress rules
//!   with named ports the peer pods' `ip . protocol . port` resolved per pod;
//! - a local pod's fragment holds its chains (`ingress-…`, `egress-…`: one rule per
//!   allowed peer kind × port, then drop) and its elements in the verdict maps
//!   `ingress-pods` / `egress-pods` (pod IP → `jump` to its chain);
//! - the static part: the maps and the base chains (`forward` at filter priority 0,
//!   after the service proxy's DNAT in prerouting, so policies see pod IPs and target
//!   ports; `input` for pods' egress to the node itself, e.g. the cluster DNS), which
//!   accept replies (`ct state established,related`) first.
//!
//! Names embed the object's namespace and name, so fragments never share an object.

use std::collections::{BTreeMap, BTreeSet};
use std::net::Ipv4Addr;

use serde_json::{json, Map, Value};

use super::model::{Direction, ObjectKey, PodInfo, Policy, PortSpec, Rule};
use crate::agent::proxy::rules::{object_name, Protocol};

/// `ip daddr` → `jump ingress-…` for this node's pods isolated for ingress.
pub const INGRESS_MAP: &str = "ingress-pods";
/// `ip saddr` → `jump egress-…` for this node's pods isolated for egress.
pub const EGRESS_MAP: &str = "egress-pods";
/// The verdict maps of the table.
pub const MAPS: [&str; 2] = [INGRESS_MAP, EGRESS_MAP];
/// Base chains: traffic through the node (pod to pod, pod to elsewhere) and to it.
pub const FORWARD_CHAIN: &str = "forward";
pub const INPUT_CHAIN: &str = "input";
/// The filter priority of the base chains (nat prerouting, where the proxy DNATs
/// Service traffic, runs before any filter hook).
pub const FILTER_PRIORITY: i32 = 0;

/// What a set holds (its nft type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum SetKind {
    /// `ipv4_addr`
    Addresses,
    /// `ipv4_addr` with the interval flag.
    Ranges,
    /// `ipv4_addr . inet_proto . inet_service`
    AddressPorts,
}

/// One element of a set.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Element {
    Address(Ipv4Addr),
    Range(Ipv4Addr, Ipv4Addr),
    AddressPort(Ipv4Addr, Protocol, u16),
}

impl Element {
    pub fn to_json(&self) -> Value {
        match self {
            Self::Address(ip) => json!(ip.to_string()),
            Self::Range(lo, hi) if lo == hi => json!(lo.to_string()),
            Self::Range(lo, hi) => json!({"range": [lo.to_string(), hi.to_string()]}),
            Self::AddressPort(ip, protocol, port) => {
                json!({"concat": [ip.to_string(), protocol.nft(), port]})
            }
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetSpec {
    pub kind: SetKind,
    pub elements: BTreeSet<Element>,
}

/// The objects of one policy or one pod (or the static part).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Fragment {
    pub sets: BTreeMap<String, SetSpec>,
    /// Regular chains with their rules (`expr` arrays), in order.
    pub chains: BTreeMap<String, Vec<Value>>,
    /// `(map, pod IP)` → the chain the element jumps to.
    pub verdicts: BTreeMap<(&'static str, Ipv4Addr), String>,
}

impl Fragment {
    pub fn is_empty(&self) -> bool {
        self.sets.is_empty() && self.chains.is_empty() && self.verdicts.is_empty()
    }

    /// Adds `other`'s objects (names are unique per fragment, so nothing collides).
    pub fn merge(&mut self, other: &Fragment) {
        self.sets
            .extend(other.sets.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.chains
            .extend(other.chains.iter().map(|(k, v)| (k.clone(), v.clone())));
        self.verdicts
            .extend(other.verdicts.iter().map(|(k, v)| (*k, v.clone())));
    }
}

/// What a compilation reads: every pod with an address (of every node, plus stand-ins
/// such as the node-local cluster DNS) and the labels of every namespace.
pub struct Cluster<'a> {
    pub pods: &'a BTreeMap<ObjectKey, PodInfo>,
    pub namespaces: &'a BTreeMap<String, Map<String, Value>>,
}

/// The kinds of peer sets of one rule, with their names.
struct RuleSets {
    pods: Option<String>,
    blocks: Option<String>,
    named: Option<String>,
}

impl RuleSets {
    /// The sets `rule` (number `index` of `direction` in `policy`) needs: the same
    /// answer for the policy's fragment (which creates them) and the pods' (which use
    /// them).
    fn of(policy: &Policy, direction: Direction, index: usize, rule: &Rule) -> RuleSets {
        let id = format!(
            "{}/{}/{}/{index}",
            policy.namespace,
            policy.name,
            direction.as_str()
        );
        RuleSets {
            pods: rule.has_pod_peers().then(|| object_name("peers", &id)),
            blocks: rule.has_blocks().then(|| object_name("blocks", &id)),
            named: (direction == Direction::Egress && rule.has_named_ports())
                .then(|| object_name("named", &id)),
        }
    }
}

/// The peer sets of `policy`.
pub fn policy_fragment(policy: &Policy, cluster: &Cluster<'_>) -> Fragment {
    let mut fragment = Fragment::default();
    for direction in [Direction::Ingress, Direction::Egress] {
        for (index, rule) in policy.rules(direction).into_iter().flatten().enumerate() {
            let sets = RuleSets::of(policy, direction, index, rule);
            let peers = || {
                cluster.pods.values().filter(|pod| {
                    rule.peers_include(
                        &policy.namespace,
                        pod,
                        cluster.namespaces.get(&pod.namespace),
                    )
                })
            };
            if let Some(name) = sets.pods {
                let elements = peers().map(|pod| Element::Address(pod.ip)).collect();
                fragment.sets.insert(
                    name,
                    SetSpec {
                        kind: SetKind::Addresses,
                        elements,
                    },
                );
            }
            if let Some(name) = sets.blocks {
                let elements = rule
                    .block_ranges()
                    .into_iter()
                    .map(|(lo, hi)| Element::Range(Ipv4Addr::from(lo), Ipv4Addr::from(hi)))
                    .collect();
                fragment.sets.insert(
                    name,
                    SetSpec {
                        kind: SetKind::Ranges,
                        elements,
                    },
                );
            }
            if let Some(name) = sets.named {
                // Named ports are resolved on the destination: every peer pod (every pod
                // when the rule names no peers) that has the port. ipBlocks name no pods.
                let destinations: Box<dyn Iterator<Item = &PodInfo>> = match &rule.peers {
                    None => Box::new(cluster.pods.values()),
                    Some(_) => Box::new(peers()),
                };
                let mut elements = BTreeSet::new();
                for pod in destinations {
                    for port in &rule.ports {
                        if let PortSpec::Named(protocol, port_name) = port {
                            if let Some(number) = pod.named_port(port_name, *protocol) {
                                elements.insert(Element::AddressPort(pod.ip, *protocol, number));
                            }
                        }
                    }
                }
                fragment.sets.insert(
                    name,
                    SetSpec {
                        kind: SetKind::AddressPorts,
                        elements,
                    },
                );
            }
        }
    }
    fragment
}

/// Whether `pod`'s address (or named ports) is in one of `policy`'s peer sets: a change
/// of the pod then changes the policy's fragment.
pub fn policy_refers_to(
    policy: &Policy,
    pod: &PodInfo,
    namespaces: &BTreeMap<String, Map<String, Value>>,
) -> bool {
    [Direction::Ingress, Direction::Egress]
        .into_iter()
        .flat_map(|d| policy.rules(d).into_iter().flatten().map(move |r| (d, r)))
        .any(|(direction, rule)| {
            let named_anywhere =
                direction == Direction::Egress && rule.peers.is_none() && rule.has_named_ports();
            named_anywhere
                || rule.peers_include(&policy.namespace, pod, namespaces.get(&pod.namespace))
        })
}

/// The chains and map elements of `pod` (on this node) under `policies` (all of them;
/// those of other namespaces are skipped). Empty when no policy selects the pod.
pub fn pod_fragment<'a>(pod: &PodInfo, policies: impl Iterator<Item = &'a Policy>) -> Fragment {
    let selecting: Vec<&Policy> = policies.filter(|p| p.selects(pod)).collect();
    let mut fragment = Fragment::default();
    for (direction, map) in [
        (Direction::Ingress, INGRESS_MAP),
        (Direction::Egress, EGRESS_MAP),
    ] {
        let applying: Vec<&Policy> = selecting
            .iter()
            .copied()
            .filter(|p| p.rules(direction).is_some())
            .collect();
        if applying.is_empty() {
            continue;
        }
        let mut rules = Vec::new();
        for policy in applying {
            for (index, rule) in policy.rules(direction).into_iter().flatten().enumerate() {
                let sets = RuleSets::of(policy, direction, index, rule);
                rules.extend(allow_rules(pod, direction, rule, &sets));
            }
        }
        rules.push(json!([{"drop": null}]));
        let chain = object_name(
            direction.as_str(),
            &format!("{}/{}", pod.namespace, pod.name),
        );
        fragment.chains.insert(chain.clone(), rules);
        fragment.verdicts.insert((map, pod.ip), chain);
    }
    fragment
}

/// The rules of `pod`'s chain that let `rule`'s traffic through: ingress ones accept,
/// egress ones return (to the ingress check of the destination, when it is on this node).
fn allow_rules(pod: &PodInfo, direction: Direction, rule: &Rule, sets: &RuleSets) -> Vec<Value> {
    let (peer_field, verdict) = match direction {
        Direction::Ingress => ("saddr", json!({"accept": null})),
        Direction::Egress => ("daddr", json!({"return": null})),
    };
    let peer_matches: Vec<Option<Value>> = match &rule.peers {
        None => vec![None],
        Some(_) => [&sets.pods, &sets.blocks]
            .into_iter()
            .flatten()
            .map(|set| Some(match_eq(ip_field(peer_field), json!(format!("@{set}")))))
            .collect(),
    };
    let port_matches: Vec<Vec<Value>> = if rule.ports.is_empty() {
        vec![Vec::new()]
    } else {
        rule.ports
            .iter()
            .filter_map(|port| match port {
                PortSpec::All(protocol) => Some(vec![match_l4proto(*protocol)]),
                PortSpec::Range(protocol, lo, hi) => Some(port_range(*protocol, *lo, *hi)),
                // The pod is the destination of ingress traffic: its own port numbers.
                PortSpec::Named(protocol, name) if direction == Direction::Ingress => pod
                    .named_port(name, *protocol)
                    .map(|n| port_range(*protocol, n, n)),
                // Egress named ports are resolved per destination in the `named` set.
                PortSpec::Named(..) => None,
            })
            .collect()
    };
    let mut rules = Vec::new();
    for peer in &peer_matches {
        for ports in &port_matches {
            let mut expr: Vec<Value> = peer.iter().cloned().collect();
            expr.extend(ports.iter().cloned());
            expr.push(verdict.clone());
            rules.push(Value::Array(expr));
        }
    }
    if let Some(named) = &sets.named {
        let key = json!({"concat": [ip_field("daddr"), l4proto(), th_dport()]});
        rules.push(json!([match_eq(key, json!(format!("@{named}"))), verdict]));
    }
    rules
}

/// The base chains' rules: replies pass; then the egress check of local sources and
/// (in `forward`) the ingress check of local destinations.
pub fn static_chains() -> Vec<(&'static str, &'static str, Vec<Value>)> {
    let replies = json!([
        {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}},
        {"accept": null}
    ]);
    let check = |field: &str, map: &str| json!([{"vmap": {"key": ip_field(field), "data": format!("@{map}")}}]);
    vec![
        (
            FORWARD_CHAIN,
            "forward",
            vec![
                replies.clone(),
                check("saddr", EGRESS_MAP),
                check("daddr", INGRESS_MAP),
            ],
        ),
        (
            INPUT_CHAIN,
            "input",
            vec![replies, check("saddr", EGRESS_MAP)],
        ),
    ]
}

fn port_range(protocol: Protocol, lo: u16, hi: u16) -> Vec<Value> {
    let port = if lo == hi {
        json!(lo)
    } else {
        json!({"range": [lo, hi]})
    };
    vec![match_l4proto(protocol), match_eq(th_dport(), port)]
}

fn match_l4proto(protocol: Protocol) -> Value {
    match_eq(l4proto(), json!(protocol.nft()))
}

fn match_eq(left: Value, right: Value) -> Value {
    json!({"match": {"op": "==", "left": left, "right": right}})
}

fn ip_field(field: &str) -> Value {
    json!({"payload": {"protocol": "ip", "field": field}})
}

fn l4proto() -> Value {
    json!({"meta": {"key": "l4proto"}})
}

fn th_dport() -> Value {
    json!({"payload": {"protocol": "th", "field": "dport"}})
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    pub fn pod(ns: &str, name: &str, ip: &str, labels: Value, node: &str) -> PodInfo {
        PodInfo::from_object(&json!({
            "metadata": {"namespace": ns, "name": name, "labels": labels},
            "spec": {"nodeName": node, "containers": [{"name": "c", "ports": [
                {"name": "http", "containerPort": 8080},
                {"name": "dns", "containerPort": 53, "protocol": "UDP"}]}]},
            "status": {"podIP": ip, "phase": "Running"}}))
        .unwrap()
    }

    pub fn policy(ns: &str, name: &str, spec: Value) -> Policy {
        let mut object = json!({"metadata": {"namespace": ns, "name": name}, "spec": spec});
        crate::api::defaults::apply_defaults("NetworkPolicy", &mut object);
        Policy::from_object(&object)
    }

    pub fn world() -> (
        BTreeMap<ObjectKey, PodInfo>,
        BTreeMap<String, Map<String, Value>>,
    ) {
        let pods = [
            pod("shop", "db", "10.42.0.2", json!({"app": "db"}), "n1"),
            pod("shop", "web", "10.42.0.3", json!({"app": "web"}), "n1"),
            pod("shop", "batch", "10.42.1.4", json!({"app": "batch"}), "n2"),
            pod(
                "ops",
                "monitor",
                "10.42.1.5",
                json!({"app": "monitor"}),
                "n2",
            ),
        ];
        let namespaces = [
            ("shop", json!({"team": "shop"})),
            ("ops", json!({"team": "ops"})),
        ]
        .into_iter()
        .map(|(n, l)| (n.to_string(), l.as_object().unwrap().clone()))
        .collect();
        (pods.into_iter().map(|p| (p.key(), p)).collect(), namespaces)
    }

    fn rules_text(fragment: &Fragment) -> String {
        serde_json::to_string(&fragment.chains).unwrap()
    }

    fn addresses(fragment: &Fragment, prefix: &str) -> Vec<String> {
        let (_, set) = fragment
            .sets
            .iter()
            .find(|(name, _)| name.starts_with(prefix))
            .unwrap_or_else(|| panic!("no {prefix} set in {fragment:#?}"));
        set.elements
            .iter()
            .map(|e| e.to_json().to_string())
            .collect()
    }

    #[test]
    fn an_unselected_pod_is_not_isolated() {
        let (pods, _) = world();
        let deny_db = policy(
            "shop",
            "deny",
            json!({"podSelector": {"matchLabels": {"app": "db"}}}),
        );
        let web = &pods[&("shop".to_string(), "web".to_string())];
        assert!(pod_fragment(web, [&deny_db].into_iter()).is_empty());
        let other_ns = policy("ops", "deny-all", json!({"podSelector": {}}));
        assert!(pod_fragment(web, [&other_ns].into_iter()).is_empty());
    }

    #[test]
    fn default_deny_ingress_is_a_chain_that_only_drops() {
        let (pods, _) = world();
        let deny = policy("shop", "deny", json!({"podSelector": {}}));
        let db = &pods[&("shop".to_string(), "db".to_string())];
        let fragment = pod_fragment(db, [&deny].into_iter());
        assert_eq!(fragment.chains.len(), 1, "ingress only: {fragment:#?}");
        let (name, rules) = fragment.chains.iter().next().unwrap();
        assert!(
            name.starts_with("ingress-") && name.ends_with("shop/db"),
            "{name}"
        );
        assert_eq!(rules, &vec![json!([{"drop": null}])]);
        assert_eq!(
            fragment
                .verdicts
                .get(&(INGRESS_MAP, "10.42.0.2".parse().unwrap())),
            Some(name)
        );
    }

    #[test]
    fn pod_and_namespace_selectors_fill_the_peer_set() {
        let (pods, namespaces) = world();
        let cluster = Cluster {
            pods: &pods,
            namespaces: &namespaces,
        };
        let p = policy(
            "shop",
            "db",
            json!({"podSelector": {"matchLabels": {"app": "db"}},
                   "ingress": [{"from": [
                       {"podSelector": {"matchLabels": {"app": "web"}}},
                       {"namespaceSelector": {"matchLabels": {"team": "ops"}}},
                       {"namespaceSelector": {}, "podSelector": {"matchLabels": {"app": "batch"}}}]}]}),
        );
        let fragment = policy_fragment(&p, &cluster);
        assert_eq!(
            addresses(&fragment, "peers-"),
            ["\"10.42.0.3\"", "\"10.42.1.4\"", "\"10.42.1.5\""]
        );
        let db = &pods[&("shop".to_string(), "db".to_string())];
        let chain = pod_fragment(db, [&p].into_iter());
        let text = rules_text(&chain);
        let set = fragment.sets.keys().next().unwrap();
        assert!(text.contains(&format!("@{set}")), "{text}");
        assert!(text.contains("\"accept\""), "{text}");
        // A pod of another namespace is a peer only through a namespace selector.
        let monitor = &pods[&("ops".to_string(), "monitor".to_string())];
        assert!(policy_refers_to(&p, monitor, &namespaces));
        let only_web = policy(
            "shop",
            "web",
            json!({"ingress": [{"from": [{"podSelector": {}}]}]}),
        );
        assert!(!policy_refers_to(&only_web, monitor, &namespaces));
    }

    #[test]
    fn ip_blocks_become_interval_sets_without_the_exceptions() {
        let (pods, namespaces) = world();
        let cluster = Cluster {
            pods: &pods,
            namespaces: &namespaces,
        };
        let p = policy(
            "shop",
            "lan",
            json!({"ingress": [{"from": [
                {"ipBlock": {"cidr": "192.168.0.0/16", "except": ["192.168.1.0/24"]}},
                {"ipBlock": {"cidr": "192.168.1.7/32"}}]}]}),
        );
        let fragment = policy_fragment(&p, &cluster);
        let (_, set) = fragment.sets.iter().next().unwrap();
        assert_eq!(set.kind, SetKind::Ranges);
        assert_eq!(
            addresses(&fragment, "blocks-"),
            [
                r#"{"range":["192.168.0.0","192.168.0.255"]}"#,
                r#""192.168.1.7""#,
                r#"{"range":["192.168.2.0","192.168.255.255"]}"#
            ]
        );
    }

    #[test]
    fn ports_compile_to_protocol_and_port_matches() {
        let (pods, _) = world();
        let db = &pods[&("shop".to_string(), "db".to_string())];
        let p = policy(
            "shop",
            "ports",
            json!({"ingress": [{"ports": [
                {"port": 5432},
                {"port": 3000, "endPort": 3010, "protocol": "UDP"},
                {"port": "http"},
                {"port": "dns", "protocol": "UDP"},
                {"port": "missing"},
                {"protocol": "SCTP"}]}]}),
        );
        let fragment = pod_fragment(db, [&p].into_iter());
        let rules = fragment.chains.values().next().unwrap();
        let expected = [
            json!([{"match": {"op": "==", "left": l4proto(), "right": "tcp"}},
                   {"match": {"op": "==", "left": th_dport(), "right": 5432}}, {"accept": null}]),
            json!([{"match": {"op": "==", "left": l4proto(), "right": "udp"}},
                   {"match": {"op": "==", "left": th_dport(), "right": {"range": [3000, 3010]}}},
                   {"accept": null}]),
            json!([{"match": {"op": "==", "left": l4proto(), "right": "tcp"}},
                   {"match": {"op": "==", "left": th_dport(), "right": 8080}}, {"accept": null}]),
            json!([{"match": {"op": "==", "left": l4proto(), "right": "udp"}},
                   {"match": {"op": "==", "left": th_dport(), "right": 53}}, {"accept": null}]),
            json!([{"match": {"op": "==", "left": l4proto(), "right": "sctp"}}, {"accept": null}]),
            json!([{"drop": null}]),
        ];
        assert_eq!(rules.as_slice(), expected.as_slice());
    }

    #[test]
    fn egress_rules_return_and_named_ports_resolve_on_the_destination() {
        let (pods, namespaces) = world();
        let cluster = Cluster {
            pods: &pods,
            namespaces: &namespaces,
        };
        let p = policy(
            "shop",
            "out",
            json!({"podSelector": {"matchLabels": {"app": "web"}}, "policyTypes": ["Egress"],
                   "egress": [{"to": [{"podSelector": {"matchLabels": {"app": "db"}}}],
                               "ports": [{"port": "http"}, {"port": 22}]}]}),
        );
        let fragment = policy_fragment(&p, &cluster);
        assert_eq!(
            addresses(&fragment, "named-"),
            [r#"{"concat":["10.42.0.2","tcp",8080]}"#]
        );
        let web = &pods[&("shop".to_string(), "web".to_string())];
        let chain = pod_fragment(web, [&p].into_iter());
        assert!(chain.verdicts.keys().all(|(map, _)| *map == EGRESS_MAP));
        let text = rules_text(&chain);
        assert!(
            text.contains("\"return\"") && !text.contains("\"accept\""),
            "{text}"
        );
        assert!(text.contains("\"daddr\""), "{text}");
        assert!(text.contains("@named-"), "{text}");
    }

    #[test]
    fn an_empty_rule_allows_everything_and_egress_only_policies_leave_ingress_open() {
        let (pods, _) = world();
        let db = &pods[&("shop".to_string(), "db".to_string())];
        let allow_all = policy("shop", "all", json!({"ingress": [{}]}));
        let fragment = pod_fragment(db, [&allow_all].into_iter());
        let rules = fragment.chains.values().next().unwrap();
        assert_eq!(rules[0], json!([{"accept": null}]));
        let egress_only = policy("shop", "out", json!({"policyTypes": ["Egress"]}));
        let fragment = pod_fragment(db, [&egress_only].into_iter());
        assert_eq!(fragment.verdicts.len(), 1);
        assert!(fragment
            .verdicts
            .contains_key(&(EGRESS_MAP, "10.42.0.2".parse().unwrap())));
    }
}
