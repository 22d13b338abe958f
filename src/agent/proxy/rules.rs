//! Pure rule building: Services + Endpoints in, the desired nftables state of the proxy
//! table out (chains with their rules, affinity sets, verdict-map elements). No I/O.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::{Endpoints, Service, ServicePort};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

/// `ip daddr . meta l4proto . th dport` → `goto service-…` for services with endpoints.
pub const SERVICE_IPS_MAP: &str = "service-ips";
/// `meta l4proto . th dport` (to a local address) → `goto external-…`.
pub const SERVICE_NODEPORTS_MAP: &str = "service-nodeports";
/// ClusterIP keys of services without ready endpoints → `goto reject-chain`.
pub const NO_ENDPOINT_SERVICES_MAP: &str = "no-endpoint-services";
/// NodePort keys of services without ready endpoints → `goto reject-chain`.
pub const NO_ENDPOINT_NODEPORTS_MAP: &str = "no-endpoint-nodeports";
/// The regular chain every nat base chain jumps to.
pub const SERVICES_CHAIN: &str = "services";
pub const REJECT_CHAIN: &str = "reject-chain";
/// Where traffic goes that a `Local` traffic policy keeps from remote endpoints when this
/// node has none (upstream drops it too).
pub const DROP_CHAIN: &str = "drop-chain";
const NO_ENDPOINTS_CHAIN: &str = "no-endpoints";
const MASQUERADING_CHAIN: &str = "masquerading";
/// Packet mark bit asking the postrouting chain to masquerade (hairpin, NodePort).
pub const MASQUERADE_MARK: u32 = 0x4000;
/// `ip daddr . meta l4proto . th dport` of the services dispatched without a chain of
/// their own ([`DnatSlot`]): a plain set, so adding to it never makes the kernel
/// validate the table.
pub const DNAT_SERVICES_SET: &str = "dnat-services";
/// `ip daddr . meta l4proto . th dport . numgen` → `endpoint ip . port` (see
/// [`DnatSlot`]): a map of values, not verdicts.
pub const SERVICE_ENDPOINTS_MAP: &str = "service-endpoints";
/// `ip saddr . ip daddr` of every endpoint of those services with itself: a pod that
/// reached itself through its service is masqueraded in postrouting.
pub const HAIRPIN_SET: &str = "hairpin-endpoints";
/// The static chain that DNATs the services of [`DNAT_SERVICES_SET`].
pub const DNAT_CHAIN: &str = "service-dnat";
/// Services (ports) with up to this many ready endpoints are dispatched through
/// [`SERVICE_ENDPOINTS_MAP`]; more take a chain. The DNAT chain tries one rule per
/// endpoint count, so a new connection to a service of `n` endpoints costs `n` hash
/// lookups.
pub const MAX_MAP_ENDPOINTS: usize = 16;
/// Kubernetes' default `sessionAffinityConfig.clientIP.timeoutSeconds`.
pub const DEFAULT_AFFINITY_TIMEOUT_SECS: u32 = 10_800;
/// nft accepts names up to 255 bytes; stay well below it (the hash keeps names unique).
const MAX_NAME_LEN: usize = 200;

/// All verdict maps of the table, with their key types.
pub const MAPS: [(&str, &[&str]); 4] = [
    (
        SERVICE_IPS_MAP,
        &["ipv4_addr", "inet_proto", "inet_service"],
    ),
    (SERVICE_NODEPORTS_MAP, &["inet_proto", "inet_service"]),
    (
        NO_ENDPOINT_SERVICES_MAP,
        &["ipv4_addr", "inet_proto", "inet_service"],
    ),
    (NO_ENDPOINT_NODEPORTS_MAP, &["inet_proto", "inet_service"]),
];

/// The sets and maps of values (no verdicts) of the table, with their key types. The
/// key type `mark` stands for the `numgen` value (a 32-bit host-order integer: nft
/// 1.0.6 cannot declare a map keyed by `numgen` in JSON).
pub const DATA_SETS: [(&str, &[&str]); 3] = [
    (
        DNAT_SERVICES_SET,
        &["ipv4_addr", "inet_proto", "inet_service"],
    ),
    (
        SERVICE_ENDPOINTS_MAP,
        &["ipv4_addr", "inet_proto", "inet_service", "mark"],
    ),
    (HAIRPIN_SET, &["ipv4_addr", "ipv4_addr"]),
];

/// The value type of [`SERVICE_ENDPOINTS_MAP`].
pub const SERVICE_ENDPOINTS_DATA: [&str; 2] = ["ipv4_addr", "inet_service"];

/// The key types of every set and map whose elements the proxy adds.
pub fn element_key_types() -> Vec<(&'static str, &'static [&'static str])> {
    MAPS.iter().chain(DATA_SETS.iter()).copied().collect()
}

/// The first `numgen` value of the services with `n` endpoints: the DNAT rule for `n`
/// draws `numgen random mod n offset first_slot(n)`, so the slots of different
/// endpoint counts never overlap (0; 1, 2; 3, 4, 5; …) and one map serves them all.
pub fn first_slot(n: usize) -> u32 {
    (n * n.saturating_sub(1) / 2) as u32
}

/// One element of [`SERVICE_ENDPOINTS_MAP`]: the service key (address, protocol, port)
/// and the drawn slot, mapping to one endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct DnatSlot {
    pub ip: Ipv4Addr,
    pub protocol: Protocol,
    pub port: u16,
    pub slot: u32,
}

impl DnatSlot {
    /// The key in nft JSON.
    pub fn to_json(&self) -> Value {
        json!({"concat": [self.ip.to_string(), self.protocol.nft(), self.port, self.slot]})
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Protocol {
    Tcp,
    Udp,
    Sctp,
}

impl Protocol {
    /// Kubernetes' spelling (`TCP`, the default when unset); other values are skipped.
    pub fn from_k8s(protocol: Option<&str>) -> Option<Self> {
        match protocol.unwrap_or("TCP") {
            "TCP" => Some(Self::Tcp),
            "UDP" => Some(Self::Udp),
            "SCTP" => Some(Self::Sctp),
            _ => None,
        }
    }

    /// nft's `inet_proto` name.
    pub fn nft(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
            Self::Sctp => "sctp",
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.nft())
    }
}

/// A key of one of the [`MAPS`]: with a ClusterIP (`ip . proto . port`) or without one
/// (NodePorts: `proto . port`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ElementKey {
    pub map: &'static str,
    pub ip: Option<Ipv4Addr>,
    pub protocol: Protocol,
    pub port: u16,
}

impl ElementKey {
    /// The key in nft JSON (`{"concat": [...]}`).
    pub fn to_json(&self) -> Value {
        match self.ip {
            Some(ip) => json!({"concat": [ip.to_string(), self.protocol.nft(), self.port]}),
            None => json!({"concat": [self.protocol.nft(), self.port]}),
        }
    }
}

/// The hook of a base chain: `type <chain_type> hook <hook> priority <priority>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BaseHook {
    pub chain_type: &'static str,
    pub hook: &'static str,
    pub priority: i32,
}

/// One chain: a base chain when `hook` is set, else a regular chain. Rules are the
/// `expr` arrays of nft JSON rules, in order.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ChainSpec {
    pub hook: Option<BaseHook>,
    pub rules: Vec<Value>,
}

/// The complete desired content of the proxy table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Ruleset {
    pub chains: BTreeMap<String, ChainSpec>,
    /// Per-endpoint `ipv4_addr` sets with the timeout flag (ClientIP affinity).
    pub affinity_sets: BTreeSet<String>,
    /// Map element → the chain it jumps to (`goto`).
    pub elements: BTreeMap<ElementKey, String>,
    /// Elements of [`DNAT_SERVICES_SET`] (`map` is that set's name).
    pub dnat_services: BTreeSet<ElementKey>,
    /// Elements of [`SERVICE_ENDPOINTS_MAP`]: slot → endpoint address and port.
    pub dnat_slots: BTreeMap<DnatSlot, (Ipv4Addr, u16)>,
    /// Endpoint addresses that need an element `ip . ip` in [`HAIRPIN_SET`]. Shared
    /// between services (one pod behind several): the proxier counts them.
    pub hairpin: BTreeSet<Ipv4Addr>,
}

/// Services and Endpoints, keyed by `(namespace, name)`.
pub type ServiceMap = BTreeMap<(String, String), Service>;
pub type EndpointsMap = BTreeMap<(String, String), Endpoints>;

/// Builds the desired state for every Service with an IPv4 ClusterIP (headless and
/// ExternalName services have nothing to proxy). Deterministic: the same input always
/// gives the same names and rule order. The static chains plus every
/// [`build_service`] fragment.
pub fn build(services: &ServiceMap, endpoints: &EndpointsMap, node: Option<&str>) -> Ruleset {
    build_with(services, endpoints, node, Shape::default())
}

/// [`build`] in the given [`Shape`].
pub fn build_with(
    services: &ServiceMap,
    endpoints: &EndpointsMap,
    node: Option<&str>,
    shape: Shape,
) -> Ruleset {
    let mut ruleset = build_static(shape);
    for (key, service) in services {
        ruleset.merge(build_service(
            &key.0,
            &key.1,
            service,
            endpoints.get(key),
            node,
            shape,
        ));
    }
    ruleset
}

/// How services are dispatched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Shape {
    /// Plain ClusterIP service ports (no session affinity, `internalTrafficPolicy:
    /// Cluster`, no NodePort, no external address, 1 to [`MAX_MAP_ENDPOINTS`] ready
    /// endpoints) get no chain: elements of [`DNAT_SERVICES_SET`],
    /// [`SERVICE_ENDPOINTS_MAP`] and [`HAIRPIN_SET`], which a static chain uses. Adding
    /// such a service, or changing its endpoints, then adds no rule and no jump, and the
    /// kernel does not validate the whole table (`nft_table_validate`, which every new
    /// rule or verdict element triggers: ~30 ms at 10,000 services). Only over netlink:
    /// nft 1.0.6 cannot parse the DNAT rule back from JSON.
    pub dnat_maps: bool,
}

/// The chains every table has, services or not.
pub fn build_static(shape: Shape) -> Ruleset {
    let mut ruleset = Ruleset::default();
    add_static_chains(&mut ruleset, shape);
    ruleset
}

/// The objects of one Service: its chains, affinity sets and map elements. Names embed
/// the service's namespace and name, so fragments of different services never share an
/// object (ClusterIPs and NodePorts are unique per cluster) and can be diffed alone.
/// `node` is this node's name: `internalTrafficPolicy` / `externalTrafficPolicy: Local`
/// keep ClusterIP / NodePort traffic on the endpoints whose `nodeName` it is.
pub fn build_service(
    namespace: &str,
    name: &str,
    service: &Service,
    endpoints: Option<&Endpoints>,
    node: Option<&str>,
    shape: Shape,
) -> Ruleset {
    let mut ruleset = Ruleset::default();
    let Some(spec) = &service.spec else {
        return ruleset;
    };
    if spec.type_.as_deref() == Some("ExternalName") {
        return ruleset;
    }
    let Some(cluster_ip) = spec
        .cluster_ip
        .as_deref()
        .and_then(|ip| ip.parse::<Ipv4Addr>().ok())
    else {
        return ruleset;
    };
    let external_ips = external_ips(service);
    let affinity = (spec.session_affinity.as_deref() == Some("ClientIP")).then(|| {
        spec.session_affinity_config
            .as_ref()
            .and_then(|c| c.client_ip.as_ref())
            .and_then(|c| c.timeout_seconds)
            .and_then(|t| u32::try_from(t).ok())
            .unwrap_or(DEFAULT_AFFINITY_TIMEOUT_SECS)
    });
    for port in spec.ports.iter().flatten() {
        let Some(protocol) = Protocol::from_k8s(port.protocol.as_deref()) else {
            continue;
        };
        let Ok(service_port) = u16::try_from(port.port) else {
            continue;
        };
        let target = ServicePortTarget {
            namespace,
            name,
            port_name: port.name.as_deref().unwrap_or(""),
            protocol,
            cluster_ip,
            port: service_port,
            node_port: port.node_port.and_then(|p| u16::try_from(p).ok()),
            external_ips: &external_ips,
            affinity,
            internal_local: spec.internal_traffic_policy.as_deref() == Some("Local"),
            external_local: spec.external_traffic_policy.as_deref() == Some("Local"),
        };
        let ready = endpoints
            .map(|e| ready_endpoints(e, port, protocol))
            .unwrap_or_default();
        add_service_port(&mut ruleset, &target, &ready, node, shape);
    }
    ruleset
}

/// The IPv4 addresses in `status.loadBalancer.ingress` that the proxy takes traffic for
/// (kube-proxy's `loadBalancerVIPs`): those without `ipMode` or with `ipMode: VIP`
/// (`Proxy` means the load balancer delivers to the nodes itself).
pub fn load_balancer_ips(service: &Service) -> Vec<Ipv4Addr> {
    let ingress = service
        .status
        .as_ref()
        .and_then(|s| s.load_balancer.as_ref())
        .and_then(|lb| lb.ingress.as_ref());
    let ips: BTreeSet<Ipv4Addr> = ingress
        .into_iter()
        .flatten()
        .filter(|i| i.ip_mode.as_deref().is_none_or(|m| m == "VIP"))
        .filter_map(|i| i.ip.as_deref()?.parse().ok())
        .collect();
    ips.into_iter().collect()
}

/// The addresses outside the cluster the Service takes traffic for, like kube-proxy:
/// its load-balancer addresses ([`load_balancer_ips`]) and `spec.externalIPs`, both
/// through the service's external chain (so `externalTrafficPolicy` applies to both).
/// IPv4 only, as the rest of the proxy; sorted, without duplicates.
pub fn external_ips(service: &Service) -> Vec<Ipv4Addr> {
    let external = service
        .spec
        .as_ref()
        .and_then(|s| s.external_ips.as_ref())
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.parse::<Ipv4Addr>().ok());
    let ips: BTreeSet<Ipv4Addr> = load_balancer_ips(service)
        .into_iter()
        .chain(external)
        .collect();
    ips.into_iter().collect()
}

impl Ruleset {
    /// Adds `other`'s objects (same-named ones are replaced).
    pub fn merge(&mut self, other: Ruleset) {
        self.chains.extend(other.chains);
        self.affinity_sets.extend(other.affinity_sets);
        self.elements.extend(other.elements);
        self.dnat_services.extend(other.dnat_services);
        self.dnat_slots.extend(other.dnat_slots);
        self.hairpin.extend(other.hairpin);
    }
}

struct ServicePortTarget<'a> {
    namespace: &'a str,
    name: &'a str,
    port_name: &'a str,
    protocol: Protocol,
    cluster_ip: Ipv4Addr,
    port: u16,
    node_port: Option<u16>,
    /// `status.loadBalancer.ingress` addresses: handled like the NodePort.
    external_ips: &'a [Ipv4Addr],
    affinity: Option<u32>,
    /// `internalTrafficPolicy: Local`: ClusterIP traffic only to this node's endpoints.
    internal_local: bool,
    /// `externalTrafficPolicy: Local`: NodePort and load-balancer traffic only to this
    /// node's endpoints, keeping the client's source address.
    external_local: bool,
}

impl ServicePortTarget<'_> {
    /// `<ns>/<name>/<proto>/<port name>`, the readable part of chain names.
    fn id(&self) -> String {
        format!(
            "{}/{}/{}/{}",
            self.namespace, self.name, self.protocol, self.port_name
        )
    }
}

/// A ready endpoint of one service port.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct ReadyEndpoint {
    pub ip: Ipv4Addr,
    pub port: u16,
    /// The node the endpoint runs on (`nodeName` of the Endpoints address).
    pub node: Option<String>,
}

/// The ready endpoints serving `port` of a service, sorted and deduplicated.
/// The Endpoints port is found by the service port's name (how the endpoints controller
/// names them), else by a named targetPort; a numeric targetPort is the fallback for
/// subsets that list no ports.
pub fn ready_endpoints(
    endpoints: &Endpoints,
    port: &ServicePort,
    protocol: Protocol,
) -> Vec<ReadyEndpoint> {
    let port_name = port.name.as_deref().unwrap_or("");
    let mut ready = BTreeSet::new();
    for subset in endpoints.subsets.iter().flatten() {
        let ports = subset.ports.as_deref().unwrap_or_default();
        let same_protocol = |p: &&k8s_openapi::api::core::v1::EndpointPort| {
            Protocol::from_k8s(p.protocol.as_deref()) == Some(protocol)
        };
        let by_name = ports
            .iter()
            .filter(same_protocol)
            .find(|p| p.name.as_deref().unwrap_or("") == port_name);
        let by_target_name = || match &port.target_port {
            Some(IntOrString::String(target)) => ports
                .iter()
                .filter(same_protocol)
                .find(|p| p.name.as_deref() == Some(target.as_str())),
            _ => None,
        };
        let number = match by_name.or_else(by_target_name) {
            Some(p) => u16::try_from(p.port).ok(),
            None if ports.is_empty() => match &port.target_port {
                Some(IntOrString::Int(n)) => u16::try_from(*n).ok(),
                None => u16::try_from(port.port).ok(),
                Some(IntOrString::String(_)) => None,
            },
            None => None,
        };
        let Some(number) = number else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<Ipv4Addr>() {
                ready.insert(ReadyEndpoint {
                    ip,
                    port: number,
                    node: address.node_name.clone(),
                });
            }
        }
    }
    ready.into_iter().collect()
}

/// A deterministic, length-limited nft object name: `<prefix>-<hash>-<id>`.
pub fn object_name(prefix: &str, id: &str) -> String {
    let digest = Sha256::digest(id.as_bytes());
    let hash: String = digest[..4].iter().map(|b| format!("{b:02x}")).collect();
    let mut name = format!("{prefix}-{hash}-{id}");
    if name.len() > MAX_NAME_LEN {
        let mut end = MAX_NAME_LEN;
        while !name.is_char_boundary(end) {
            end -= 1;
        }
        name.truncate(end);
    }
    name
}

fn add_service_port(
    ruleset: &mut Ruleset,
    target: &ServicePortTarget<'_>,
    ready: &[ReadyEndpoint],
    node: Option<&str>,
    shape: Shape,
) {
    let cluster_key = |map| ElementKey {
        map,
        ip: Some(target.cluster_ip),
        protocol: target.protocol,
        port: target.port,
    };
    let node_key = |map, port| ElementKey {
        map,
        ip: None,
        protocol: target.protocol,
        port,
    };
    let load_balancer_key = |map, ip: Ipv4Addr| ElementKey {
        map,
        ip: Some(ip),
        protocol: target.protocol,
        port: target.port,
    };
    if ready.is_empty() {
        ruleset
            .elements
            .insert(cluster_key(NO_ENDPOINT_SERVICES_MAP), REJECT_CHAIN.into());
        if let Some(node_port) = target.node_port {
            ruleset.elements.insert(
                node_key(NO_ENDPOINT_NODEPORTS_MAP, node_port),
                REJECT_CHAIN.into(),
            );
        }
        for ip in target.external_ips {
            ruleset.elements.insert(
                load_balancer_key(NO_ENDPOINT_SERVICES_MAP, *ip),
                REJECT_CHAIN.into(),
            );
        }
        return;
    }
    let plain = target.affinity.is_none()
        && !target.internal_local
        && target.node_port.is_none()
        && target.external_ips.is_empty();
    if shape.dnat_maps && plain && ready.len() <= MAX_MAP_ENDPOINTS {
        add_dnat_slots(ruleset, target, ready);
        return;
    }

    let id = target.id();
    let is_local = |e: &ReadyEndpoint| node.is_some() && e.node.as_deref() == node;
    let (service_rules, local_rules) = match target.affinity {
        None => {
            let local: Vec<ReadyEndpoint> = ready.iter().filter(|e| is_local(e)).cloned().collect();
            (dnat_choice(target, ready), dnat_choice(target, &local))
        }
        Some(timeout) => {
            // A chain per endpoint: it records the client in the endpoint's affinity set.
            let mut service_rules = Vec::new();
            let mut all = Vec::with_capacity(ready.len());
            let mut local = Vec::new();
            for endpoint in ready {
                let (ip, port) = (endpoint.ip, endpoint.port);
                let endpoint_id = format!("{id}__{ip}/{port}");
                let chain = object_name("endpoint", &endpoint_id);
                let set = object_name("affinity", &endpoint_id);
                service_rules.push(json!([
                    match_eq(ip_field("saddr"), json!(format!("@{set}"))),
                    goto(&chain),
                ]));
                let rules = vec![
                    json!([
                        match_eq(ip_field("saddr"), json!(ip.to_string())),
                        set_mark_for_masquerade(),
                    ]),
                    json!([{"set": {
                        "op": "update",
                        "elem": {"elem": {"val": ip_field("saddr"), "timeout": timeout}},
                        "set": format!("@{set}"),
                    }}]),
                    json!([match_l4proto(target.protocol), dnat(endpoint)]),
                ];
                ruleset.affinity_sets.insert(set);
                ruleset.chains.insert(chain.clone(), regular(rules));
                if is_local(endpoint) {
                    local.push(chain.clone());
                }
                all.push(chain);
            }
            service_rules.extend(uniform_choice(&all));
            (service_rules, uniform_choice(&local))
        }
    };
    let service_chain = object_name("service", &id);
    ruleset
        .chains
        .insert(service_chain.clone(), regular(service_rules));
    // This node's endpoints, for the Local traffic policies.
    let local_chain = (!local_rules.is_empty() && (target.internal_local || target.external_local))
        .then(|| {
            let chain = object_name("local", &id);
            ruleset.chains.insert(chain.clone(), regular(local_rules));
            chain
        });

    match (&local_chain, target.internal_local) {
        (_, false) => {
            ruleset
                .elements
                .insert(cluster_key(SERVICE_IPS_MAP), service_chain.clone());
        }
        (Some(chain), true) => {
            ruleset
                .elements
                .insert(cluster_key(SERVICE_IPS_MAP), chain.clone());
        }
        (None, true) => {
            ruleset
                .elements
                .insert(cluster_key(NO_ENDPOINT_SERVICES_MAP), DROP_CHAIN.into());
        }
    }

    if target.node_port.is_some() || !target.external_ips.is_empty() {
        // Traffic from outside (to a NodePort or a load-balancer address) must come back
        // through this node: masquerade it. With externalTrafficPolicy Local it stays on
        // this node's endpoints and keeps its source address; the node's own traffic may
        // still use every endpoint.
        let external_chain = object_name("external", &id);
        let to_cluster = json!([set_mark_for_masquerade(), goto(&service_chain)]);
        let rules = if target.external_local {
            let from_this_node = match_eq(
                json!({"fib": {"result": "type", "flags": ["saddr"]}}),
                json!("local"),
            );
            let to_local = match &local_chain {
                Some(chain) => json!([goto(chain)]),
                None => json!([{"drop": null}]),
            };
            vec![
                json!([
                    from_this_node,
                    set_mark_for_masquerade(),
                    goto(&service_chain)
                ]),
                to_local,
            ]
        } else {
            vec![to_cluster]
        };
        ruleset
            .chains
            .insert(external_chain.clone(), regular(rules));
        // kube-proxy's nftables mode: load-balancer addresses are `service-ips` keys
        // that jump to the external chain.
        for ip in target.external_ips {
            ruleset.elements.insert(
                load_balancer_key(SERVICE_IPS_MAP, *ip),
                external_chain.clone(),
            );
        }
        if let Some(node_port) = target.node_port {
            ruleset
                .elements
                .insert(node_key(SERVICE_NODEPORTS_MAP, node_port), external_chain);
        }
    }
}

/// A plain service port as elements only: its key in [`DNAT_SERVICES_SET`], one slot per
/// endpoint in [`SERVICE_ENDPOINTS_MAP`] (drawn by the DNAT rule for its endpoint count),
/// and its endpoints in [`HAIRPIN_SET`].
fn add_dnat_slots(ruleset: &mut Ruleset, target: &ServicePortTarget<'_>, ready: &[ReadyEndpoint]) {
    ruleset.dnat_services.insert(ElementKey {
        map: DNAT_SERVICES_SET,
        ip: Some(target.cluster_ip),
        protocol: target.protocol,
        port: target.port,
    });
    let first = first_slot(ready.len());
    for (i, endpoint) in ready.iter().enumerate() {
        let slot = DnatSlot {
            ip: target.cluster_ip,
            protocol: target.protocol,
            port: target.port,
            slot: first + i as u32,
        };
        ruleset
            .dnat_slots
            .insert(slot, (endpoint.ip, endpoint.port));
        // A loopback endpoint (the API server behind `kubernetes` on a one-node test
        // cluster) is no pod that could reach itself over the bridge: masquerading every
        // `127.0.0.1 → 127.0.0.1` connection would only add NAT to the node's own traffic.
        if !endpoint.ip.is_loopback() {
            ruleset.hairpin.insert(endpoint.ip);
        }
    }
}

/// `numgen random mod (n - i) == 0`: choice `i` of `n` taken with the same overall
/// probability for every `i` (1/n, then 1/(n-1) of the rest, …) when each choice draws
/// anew; `None` for the last one, which takes what is left. One anonymous verdict map
/// per service (`numgen random mod n vmap { … }`, kube-proxy's form) would draw once, but
/// the kernel names anonymous sets by scanning every set of the table, which makes a full
/// sync quadratic: 19.7 s against 0.9 s for 10,000 services.
fn draw(i: usize, n: usize) -> Option<Value> {
    (i + 1 < n).then(|| {
        match_eq(
            json!({"numgen": {"mode": "random", "mod": n - i, "offset": 0}}),
            json!(0),
        )
    })
}

/// Rules that jump to one of `chains`, each with the same probability (see [`draw`]).
fn uniform_choice(chains: &[String]) -> Vec<Value> {
    let n = chains.len();
    chains
        .iter()
        .enumerate()
        .map(|(i, chain)| Value::Array(draw(i, n).into_iter().chain([goto(chain)]).collect()))
        .collect()
}

/// Rules that DNAT to one of `endpoints`, each with the same probability (see [`draw`]),
/// without a chain per endpoint (nft then has a third of the chains to load for every
/// change: one more service among 10,000 takes ~15 ms instead of ~120 ms). Two rules per
/// endpoint, told apart by the source address so that each packet draws once: the
/// endpoint's own traffic (a pod reaching itself through its Service) is also marked for
/// masquerade, or its answer would bypass the NAT.
fn dnat_choice(target: &ServicePortTarget<'_>, endpoints: &[ReadyEndpoint]) -> Vec<Value> {
    let n = endpoints.len();
    let mut rules = Vec::with_capacity(2 * n);
    for (i, endpoint) in endpoints.iter().enumerate() {
        let ip = json!(endpoint.ip.to_string());
        let draw = draw(i, n);
        let mut hairpin = vec![match_eq(ip_field("saddr"), ip.clone())];
        hairpin.extend(draw.clone());
        hairpin.extend([
            match_l4proto(target.protocol),
            set_mark_for_masquerade(),
            dnat(endpoint),
        ]);
        rules.push(Value::Array(hairpin));
        let mut other = Vec::new();
        if draw.is_some() {
            other.push(json!({"match": {"op": "!=", "left": ip_field("saddr"), "right": ip}}));
        }
        other.extend(draw);
        other.extend([match_l4proto(target.protocol), dnat(endpoint)]);
        rules.push(Value::Array(other));
    }
    rules
}

fn match_l4proto(protocol: Protocol) -> Value {
    match_eq(l4proto(), json!(protocol.nft()))
}

fn dnat(endpoint: &ReadyEndpoint) -> Value {
    json!({"dnat": {"addr": endpoint.ip.to_string(), "port": endpoint.port}})
}

/// The chains every table has, services or not.
fn add_static_chains(ruleset: &mut Ruleset, shape: Shape) {
    let base = |chain_type, hook, priority, rules| ChainSpec {
        hook: Some(BaseHook {
            chain_type,
            hook,
            priority,
        }),
        rules,
    };
    let jump_to = |chain: &str| vec![json!([{"jump": {"target": chain}}])];
    let local_daddr = json!({"fib": {"result": "type", "flags": ["daddr"]}});
    let vmap_rules = |ip_map: &str, port_map: &str| {
        vec![
            json!([{"vmap": {"key": {"concat": [ip_field("daddr"), l4proto(), th_dport()]}, "data": format!("@{ip_map}")}}]),
            json!([
                match_eq(local_daddr.clone(), json!("local")),
                {"vmap": {"key": {"concat": [l4proto(), th_dport()]}, "data": format!("@{port_map}")}},
            ]),
        ]
    };
    let chains = &mut ruleset.chains;
    // nat: dstnat in prerouting (traffic in) and output (host → ClusterIP), srcnat after.
    chains.insert(
        "nat-prerouting".into(),
        base("nat", "prerouting", -100, jump_to(SERVICES_CHAIN)),
    );
    chains.insert(
        "nat-output".into(),
        base("nat", "output", -100, jump_to(SERVICES_CHAIN)),
    );
    chains.insert(
        "nat-postrouting".into(),
        base("nat", "postrouting", 100, jump_to(MASQUERADING_CHAIN)),
    );
    // reject is only valid in input/forward/output: filter there, before nat (-100).
    for hook in ["input", "forward", "output"] {
        chains.insert(
            format!("filter-{hook}"),
            base("filter", hook, -110, jump_to(NO_ENDPOINTS_CHAIN)),
        );
    }
    let mut services = vmap_rules(SERVICE_IPS_MAP, SERVICE_NODEPORTS_MAP);
    let mut masquerading = vec![json!([
        match_eq(
            json!({"&": [{"meta": {"key": "mark"}}, MASQUERADE_MARK]}),
            json!(MASQUERADE_MARK)
        ),
        {"masquerade": null},
    ])];
    if shape.dnat_maps {
        services.push(json!([
            match_eq(service_key(), json!(format!("@{DNAT_SERVICES_SET}"))),
            goto(DNAT_CHAIN),
        ]));
        // One rule per endpoint count n, drawing among the n slots of that count; a
        // service's key matches only in the rule of its own count (the others miss).
        let dnat_rules = (1..=MAX_MAP_ENDPOINTS)
            .map(|n| {
                let mut key = service_key();
                key["concat"]
                    .as_array_mut()
                    .expect("a concatenation")
                    .push(json!({"numgen": {"mode": "random", "mod": n, "offset": first_slot(n)}}));
                json!([{"dnat": {"family": "ip", "addr": {"map": {
                    "key": key,
                    "data": format!("@{SERVICE_ENDPOINTS_MAP}"),
                }}}}])
            })
            .collect();
        chains.insert(DNAT_CHAIN.into(), regular(dnat_rules));
        masquerading.push(json!([
            match_eq(
                json!({"concat": [ip_field("saddr"), ip_field("daddr")]}),
                json!(format!("@{HAIRPIN_SET}"))
            ),
            {"masquerade": null},
        ]));
    }
    chains.insert(SERVICES_CHAIN.into(), regular(services));
    chains.insert(
        NO_ENDPOINTS_CHAIN.into(),
        regular(vmap_rules(
            NO_ENDPOINT_SERVICES_MAP,
            NO_ENDPOINT_NODEPORTS_MAP,
        )),
    );
    chains.insert(MASQUERADING_CHAIN.into(), regular(masquerading));
    chains.insert(DROP_CHAIN.into(), regular(vec![json!([{"drop": null}])]));
    chains.insert(
        REJECT_CHAIN.into(),
        regular(vec![
            json!([
                match_eq(l4proto(), json!("tcp")),
                {"reject": {"type": "tcp reset"}},
            ]),
            json!([{"reject": {"type": "icmp", "expr": "host-unreachable"}}]),
        ]),
    );
}

fn regular(rules: Vec<Value>) -> ChainSpec {
    ChainSpec { hook: None, rules }
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

/// `ip daddr . meta l4proto . th dport`, the key of a service.
fn service_key() -> Value {
    json!({"concat": [ip_field("daddr"), l4proto(), th_dport()]})
}

fn th_dport() -> Value {
    json!({"payload": {"protocol": "th", "field": "dport"}})
}

fn goto(chain: &str) -> Value {
    json!({"goto": {"target": chain}})
}

/// `meta mark set meta mark | 0x4000`
fn set_mark_for_masquerade() -> Value {
    json!({"mangle": {
        "key": {"meta": {"key": "mark"}},
        "value": {"|": [{"meta": {"key": "mark"}}, MASQUERADE_MARK]},
    }})
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn service(ns: &str, name: &str, spec: Value) -> Service {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "spec": spec,
        }))
        .unwrap()
    }

    pub(crate) fn endpoints(ns: &str, name: &str, subsets: Value) -> Endpoints {
        serde_json::from_value(json!({
            "metadata": {"namespace": ns, "name": name},
            "subsets": subsets,
        }))
        .unwrap()
    }

    pub(crate) fn web_service() -> Service {
        service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.10", "ports": [{"name": "http", "port": 80, "targetPort": "web"}]}),
        )
    }

    pub(crate) fn web_endpoints(ips: &[&str]) -> Endpoints {
        let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip})).collect();
        endpoints(
            "default",
            "web",
            json!([{"addresses": addresses,
                    "notReadyAddresses": [{"ip": "10.42.0.99"}],
                    "ports": [{"name": "http", "port": 8080}]}]),
        )
    }

    pub(crate) fn maps(svcs: Vec<Service>, eps: Vec<Endpoints>) -> (ServiceMap, EndpointsMap) {
        let key = |m: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta| {
            (m.namespace.clone().unwrap(), m.name.clone().unwrap())
        };
        (
            svcs.into_iter().map(|s| (key(&s.metadata), s)).collect(),
            eps.into_iter().map(|e| (key(&e.metadata), e)).collect(),
        )
    }

    fn chains_with_prefix<'a>(r: &'a Ruleset, prefix: &str) -> Vec<&'a String> {
        r.chains.keys().filter(|c| c.starts_with(prefix)).collect()
    }

    /// `ip:port` of every DNAT in `rules`, in order, each once.
    fn dnat_targets(rules: &[Value]) -> Vec<String> {
        let mut targets: Vec<String> = Vec::new();
        for rule in rules {
            if let Some(d) = rule.as_array().and_then(|r| r.last()).map(|s| &s["dnat"]) {
                if let (Some(ip), Some(port)) = (d["addr"].as_str(), d["port"].as_u64()) {
                    let target = format!("{ip}:{port}");
                    if !targets.contains(&target) {
                        targets.push(target);
                    }
                }
            }
        }
        targets
    }

    #[test]
    fn service_with_ready_endpoints_gets_a_chain_choosing_among_them_with_numgen() {
        let (s, e) = maps(
            vec![web_service()],
            vec![web_endpoints(&["10.42.0.2", "10.42.0.3"])],
        );
        let r = build(&s, &e, None);
        let key = ElementKey {
            map: SERVICE_IPS_MAP,
            ip: Some("10.43.0.10".parse().unwrap()),
            protocol: Protocol::Tcp,
            port: 80,
        };
        let service_chain = &r.elements[&key];
        assert!(service_chain.starts_with("service-"), "{service_chain}");
        assert!(service_chain.ends_with("-default/web/tcp/http"));
        let rules = &r.chains[service_chain].rules;
        // Port taken from the Endpoints by name; not-ready addresses left out.
        assert_eq!(dnat_targets(rules), ["10.42.0.2:8080", "10.42.0.3:8080"]);
        assert_eq!(rules.len(), 4, "{rules:#?}");
        // 1/2 to the first endpoint (its own traffic marked for masquerade)…
        let saddr = |rule: &Value| rule[0]["match"].clone();
        assert_eq!(saddr(&rules[0])["op"], "==");
        assert_eq!(saddr(&rules[0])["right"], "10.42.0.2");
        assert_eq!(saddr(&rules[1])["op"], "!=");
        for rule in &rules[..2] {
            assert_eq!(rule[1]["match"]["left"]["numgen"]["mod"], 2);
            assert_eq!(rule[1]["match"]["right"], 0);
        }
        assert!(rules[0][3].get("mangle").is_some());
        assert!(rules[1]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s.get("mangle").is_none()));
        // …the rest to the second.
        assert_eq!(saddr(&rules[2])["right"], "10.42.0.3");
        assert!(rules[2][2].get("mangle").is_some());
        assert_eq!(rules[3].as_array().unwrap().len(), 2, "{}", rules[3]);
        assert!(chains_with_prefix(&r, "endpoint-").is_empty());
        assert!(r.affinity_sets.is_empty());
    }

    const MAPS_SHAPE: Shape = Shape { dnat_maps: true };

    #[test]
    fn a_plain_service_is_dnat_elements_without_a_chain() {
        let (s, e) = maps(
            vec![web_service()],
            vec![web_endpoints(&["10.42.0.2", "10.42.0.3"])],
        );
        let r = build_with(&s, &e, None, MAPS_SHAPE);
        assert_eq!(
            r.chains,
            build_static(MAPS_SHAPE).chains,
            "no chain of its own"
        );
        assert!(
            r.elements.is_empty(),
            "no verdict element: {:?}",
            r.elements
        );
        let key = ElementKey {
            map: DNAT_SERVICES_SET,
            ip: Some("10.43.0.10".parse().unwrap()),
            protocol: Protocol::Tcp,
            port: 80,
        };
        assert_eq!(r.dnat_services, BTreeSet::from([key]));
        let slots: Vec<(u32, String)> = r
            .dnat_slots
            .iter()
            .map(|(slot, (ip, port))| (slot.slot, format!("{ip}:{port}")))
            .collect();
        assert_eq!(
            slots,
            [(1, "10.42.0.2:8080".into()), (2, "10.42.0.3:8080".into())],
            "two endpoints: slots 1 and 2, the named target port"
        );
        let hairpin: Vec<String> = r.hairpin.iter().map(Ipv4Addr::to_string).collect();
        assert_eq!(hairpin, ["10.42.0.2", "10.42.0.3"]);
        // Without endpoints it is rejected as before.
        let (s, e) = maps(vec![web_service()], vec![]);
        let r = build_with(&s, &e, None, MAPS_SHAPE);
        assert!(r.dnat_slots.is_empty() && r.dnat_services.is_empty());
        assert_eq!(
            r.elements[&cluster_ip_key(NO_ENDPOINT_SERVICES_MAP)],
            REJECT_CHAIN
        );
    }

    #[test]
    fn a_loopback_endpoint_gets_a_slot_but_no_hairpin_masquerade() {
        let (s, e) = maps(
            vec![web_service()],
            vec![web_endpoints(&["127.0.0.1", "10.42.0.3"])],
        );
        let r = build_with(&s, &e, None, MAPS_SHAPE);
        assert_eq!(r.dnat_slots.len(), 2);
        let hairpin: Vec<String> = r.hairpin.iter().map(Ipv4Addr::to_string).collect();
        assert_eq!(
            hairpin,
            ["10.42.0.3"],
            "127.0.0.1 → 127.0.0.1 is the node's own traffic"
        );
    }

    #[test]
    fn the_slots_of_each_endpoint_count_follow_each_other_without_overlap() {
        let mut next = 0;
        for n in 1..=MAX_MAP_ENDPOINTS {
            assert_eq!(first_slot(n), next, "{n} endpoints");
            next += n as u32;
        }
        // The DNAT chain: one rule per count, drawing that count's slots.
        let statics = build_static(MAPS_SHAPE);
        let rules = &statics.chains[DNAT_CHAIN].rules;
        assert_eq!(rules.len(), MAX_MAP_ENDPOINTS);
        for (i, rule) in rules.iter().enumerate() {
            let key = &rule[0]["dnat"]["addr"]["map"]["key"]["concat"];
            assert_eq!(key[3]["numgen"]["mod"], i + 1);
            assert_eq!(key[3]["numgen"]["offset"], first_slot(i + 1));
        }
        assert!(!build_static(Shape::default())
            .chains
            .contains_key(DNAT_CHAIN));
    }

    #[test]
    fn services_that_need_chains_keep_them_with_dnat_maps() {
        let many: Vec<String> = (0..=MAX_MAP_ENDPOINTS)
            .map(|i| format!("10.42.1.{}", i + 1))
            .collect();
        let many: Vec<&str> = many.iter().map(String::as_str).collect();
        let cases = [
            (json!({"sessionAffinity": "ClientIP"}), vec!["10.42.0.2"]),
            (json!({"internalTrafficPolicy": "Local"}), vec!["10.42.0.2"]),
            (json!({"externalIPs": ["198.51.100.7"]}), vec!["10.42.0.2"]),
            (json!({}), many),
        ];
        for (extra, ips) in cases {
            let mut spec = json!({"clusterIP": "10.43.0.10",
                "ports": [{"name": "http", "port": 80, "targetPort": "web"}]});
            spec.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            let (s, e) = maps(
                vec![service("default", "web", spec)],
                vec![web_endpoints(&ips)],
            );
            let r = build_with(&s, &e, Some("here"), MAPS_SHAPE);
            assert!(r.dnat_slots.is_empty(), "{extra}");
            assert!(
                !r.elements.is_empty(),
                "{extra}: dispatched by the verdict maps"
            );
        }
        // A NodePort service too.
        let r = web_with_policies(json!({}), true);
        assert!(r.dnat_slots.is_empty() && r.elements.contains_key(&node_port_key()));
    }

    #[test]
    fn uniform_choice_draws_one_in_n_then_one_in_the_rest() {
        let chains: Vec<String> = (0..4).map(|i| format!("endpoint-{i}")).collect();
        let rules = uniform_choice(&chains);
        let mods: Vec<&Value> = rules
            .iter()
            .map(|r| &r[0]["match"]["left"]["numgen"]["mod"])
            .collect();
        assert_eq!(mods, [&json!(4), &json!(3), &json!(2), &Value::Null]);
        for (rule, chain) in rules.iter().zip(&chains) {
            assert_eq!(
                rule.as_array().unwrap().last().unwrap()["goto"]["target"],
                chain.as_str()
            );
        }
        assert_eq!(
            uniform_choice(&chains[..1]),
            vec![json!([goto("endpoint-0")])]
        );
    }

    /// Service `web` with a NodePort and the given traffic policies over one endpoint on
    /// node `here` (10.42.0.2) and one on `there` (10.42.0.3).
    fn web_with_policies(policies: Value, here: bool) -> Ruleset {
        let mut spec = json!({"clusterIP": "10.43.0.10", "type": "NodePort",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
        spec.as_object_mut()
            .unwrap()
            .extend(policies.as_object().unwrap().clone());
        let mut addresses = vec![json!({"ip": "10.42.0.3", "nodeName": "there"})];
        if here {
            addresses.push(json!({"ip": "10.42.0.2", "nodeName": "here"}));
        }
        let eps = endpoints(
            "default",
            "web",
            json!([{"addresses": addresses, "ports": [{"name": "http", "port": 8080}]}]),
        );
        let (s, e) = maps(vec![service("default", "web", spec)], vec![eps]);
        build(&s, &e, Some("here"))
    }

    fn gotos(rules: &[Value]) -> Vec<&str> {
        rules
            .iter()
            .filter_map(|r| r.as_array()?.last()?["goto"]["target"].as_str())
            .collect()
    }

    fn cluster_ip_key(map: &'static str) -> ElementKey {
        ElementKey {
            map,
            ip: Some("10.43.0.10".parse().unwrap()),
            protocol: Protocol::Tcp,
            port: 80,
        }
    }

    fn node_port_key() -> ElementKey {
        ElementKey {
            map: SERVICE_NODEPORTS_MAP,
            ip: None,
            protocol: Protocol::Tcp,
            port: 30080,
        }
    }

    #[test]
    fn internal_traffic_policy_local_sends_cluster_ip_traffic_to_this_nodes_endpoints() {
        let r = web_with_policies(json!({"internalTrafficPolicy": "Local"}), true);
        let chain = &r.elements[&cluster_ip_key(SERVICE_IPS_MAP)];
        assert!(chain.starts_with("local-"), "{chain}");
        assert_eq!(dnat_targets(&r.chains[chain].rules), ["10.42.0.2:8080"]);
        // NodePorts (externalTrafficPolicy Cluster) still use every endpoint.
        let external = &r.chains[&r.elements[&node_port_key()]].rules;
        let service_chain = gotos(external)[0];
        assert_eq!(dnat_targets(&r.chains[service_chain].rules).len(), 2);

        // No endpoint here: dropped, not sent to the other node, not rejected.
        let r = web_with_policies(json!({"internalTrafficPolicy": "Local"}), false);
        assert!(!r.elements.contains_key(&cluster_ip_key(SERVICE_IPS_MAP)));
        assert_eq!(
            r.elements[&cluster_ip_key(NO_ENDPOINT_SERVICES_MAP)],
            DROP_CHAIN
        );
    }

    #[test]
    fn external_traffic_policy_local_keeps_node_port_traffic_here_unmasqueraded() {
        let r = web_with_policies(json!({"externalTrafficPolicy": "Local"}), true);
        // ClusterIP traffic still uses every endpoint.
        let service_chain = &r.elements[&cluster_ip_key(SERVICE_IPS_MAP)];
        assert!(service_chain.starts_with("service-"));
        let external = &r.chains[&r.elements[&node_port_key()]].rules;
        assert_eq!(external.len(), 2, "{external:?}");
        // The node's own traffic: masqueraded, to any endpoint.
        assert_eq!(external[0][0]["match"]["left"]["fib"]["flags"][0], "saddr");
        assert!(external[0][1].get("mangle").is_some());
        assert_eq!(external[0][2]["goto"]["target"], service_chain.as_str());
        // Everything else: to this node's endpoint, without the masquerade mark.
        let local = external[1][0]["goto"]["target"].as_str().unwrap();
        assert!(local.starts_with("local-"), "{local}");
        assert_eq!(external[1].as_array().unwrap().len(), 1);
        assert_eq!(dnat_targets(&r.chains[local].rules), ["10.42.0.2:8080"]);

        // No endpoint here: outside traffic is dropped.
        let r = web_with_policies(json!({"externalTrafficPolicy": "Local"}), false);
        let external = &r.chains[&r.elements[&node_port_key()]].rules;
        assert_eq!(external[1], json!([{"drop": null}]));
        assert!(chains_with_prefix(&r, "local-").is_empty());
    }

    /// Service `web` of type LoadBalancer (NodePort 30080) with `status` and `spec` extra.
    fn load_balancer(extra_spec: Value, ingress: Value) -> Service {
        let mut spec = json!({"clusterIP": "10.43.0.10", "type": "LoadBalancer",
            "ports": [{"name": "http", "port": 80, "nodePort": 30080}]});
        spec.as_object_mut()
            .unwrap()
            .extend(extra_spec.as_object().unwrap().clone());
        let mut svc = service("default", "web", spec);
        svc.status =
            Some(serde_json::from_value(json!({"loadBalancer": {"ingress": ingress}})).unwrap());
        svc
    }

    fn lb_key(map: &'static str, ip: &str) -> ElementKey {
        ElementKey {
            map,
            ip: Some(ip.parse().unwrap()),
            protocol: Protocol::Tcp,
            port: 80,
        }
    }

    #[test]
    fn load_balancer_addresses_go_through_the_external_chain_like_the_node_port() {
        let svc = load_balancer(
            json!({}),
            json!([{"ip": "192.168.1.2", "ipMode": "VIP"}, {"ip": "192.168.1.3"},
                   {"ip": "192.168.1.4", "ipMode": "Proxy"}, {"hostname": "lb.example"},
                   {"ip": "fd00::1"}]),
        );
        let (s, e) = maps(vec![svc], vec![web_endpoints(&["10.42.0.2"])]);
        let r = build(&s, &e, None);
        let external = &r.elements[&node_port_key()];
        assert!(external.starts_with("external-"), "{external}");
        for ip in ["192.168.1.2", "192.168.1.3"] {
            assert_eq!(&r.elements[&lb_key(SERVICE_IPS_MAP, ip)], external, "{ip}");
        }
        let lb_elements = r
            .elements
            .keys()
            .filter(|k| k.ip.is_some_and(|ip| ip.octets()[0] == 192))
            .count();
        assert_eq!(lb_elements, 2, "Proxy-mode and IPv6 addresses are skipped");
        // The external chain masquerades and goes to every endpoint.
        let rule = &r.chains[external].rules[0];
        assert!(rule[0].get("mangle").is_some(), "{rule}");
    }

    #[test]
    fn external_ips_go_through_the_external_chain_and_are_rejected_without_endpoints() {
        let svc = service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.10", "externalIPs": ["198.51.100.7", "fd00::7", "junk"],
                   "ports": [{"name": "http", "port": 80}]}),
        );
        let (s, e) = maps(vec![svc.clone()], vec![web_endpoints(&["10.42.0.2"])]);
        let r = build(&s, &e, None);
        let external = &r.elements[&lb_key(SERVICE_IPS_MAP, "198.51.100.7")];
        assert!(
            external.starts_with("external-"),
            "a ClusterIP Service too: {external}"
        );
        assert!(r.chains.contains_key(external));
        let ips = r.elements.keys().filter(|k| k.ip.is_some()).count();
        assert_eq!(ips, 2, "the ClusterIP and the IPv4 external IP: {r:?}");
        let (s, e) = maps(vec![svc], vec![]);
        let r = build(&s, &e, None);
        assert_eq!(
            r.elements[&lb_key(NO_ENDPOINT_SERVICES_MAP, "198.51.100.7")],
            REJECT_CHAIN
        );
    }

    #[test]
    fn load_balancer_addresses_without_endpoints_are_rejected() {
        let svc = load_balancer(json!({}), json!([{"ip": "192.168.1.2"}]));
        let (s, e) = maps(vec![svc], vec![]);
        let r = build(&s, &e, None);
        assert_eq!(
            r.elements[&lb_key(NO_ENDPOINT_SERVICES_MAP, "192.168.1.2")],
            REJECT_CHAIN
        );
        assert!(!r
            .elements
            .contains_key(&lb_key(SERVICE_IPS_MAP, "192.168.1.2")));
    }

    #[test]
    fn load_balancer_without_node_ports_still_gets_an_external_chain() {
        let mut svc = load_balancer(
            json!({"allocateLoadBalancerNodePorts": false, "externalTrafficPolicy": "Local"}),
            json!([{"ip": "192.168.1.2"}]),
        );
        svc.spec.as_mut().unwrap().ports.as_mut().unwrap()[0].node_port = None;
        let eps = endpoints(
            "default",
            "web",
            json!([{"addresses": [{"ip": "10.42.0.2", "nodeName": "here"}],
                    "ports": [{"name": "http", "port": 8080}]}]),
        );
        let (s, e) = maps(vec![svc], vec![eps]);
        let r = build(&s, &e, Some("here"));
        let external = &r.elements[&lb_key(SERVICE_IPS_MAP, "192.168.1.2")];
        assert!(external.starts_with("external-"), "{external}");
        assert!(!r.elements.keys().any(|k| k.map == SERVICE_NODEPORTS_MAP));
        // externalTrafficPolicy Local: outside traffic to this node's endpoint only.
        let rules = &r.chains[external].rules;
        let local = rules[1][0]["goto"]["target"].as_str().unwrap();
        assert!(local.starts_with("local-"), "{local}");
    }

    #[test]
    fn service_without_ready_endpoints_is_rejected() {
        let svc = service(
            "default",
            "lonely",
            json!({"clusterIP": "10.43.0.11", "type": "NodePort",
                   "ports": [{"port": 53, "protocol": "UDP", "nodePort": 30053}]}),
        );
        let (s, e) = maps(vec![svc], vec![]);
        let r = build(&s, &e, None);
        assert!(chains_with_prefix(&r, "service-").is_empty());
        let targets: Vec<(&str, &String)> = r.elements.iter().map(|(k, v)| (k.map, v)).collect();
        assert_eq!(
            targets,
            vec![
                (NO_ENDPOINT_NODEPORTS_MAP, &REJECT_CHAIN.to_string()),
                (NO_ENDPOINT_SERVICES_MAP, &REJECT_CHAIN.to_string()),
            ]
        );
    }

    #[test]
    fn node_port_goes_through_an_external_chain_that_marks_for_masquerade() {
        let svc = service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.10", "type": "NodePort",
                   "ports": [{"name": "http", "port": 80, "nodePort": 30080}]}),
        );
        let (s, e) = maps(vec![svc], vec![web_endpoints(&["10.42.0.2"])]);
        let r = build(&s, &e, None);
        let key = ElementKey {
            map: SERVICE_NODEPORTS_MAP,
            ip: None,
            protocol: Protocol::Tcp,
            port: 30080,
        };
        let external = &r.elements[&key];
        assert!(external.starts_with("external-"));
        let rule = &r.chains[external].rules[0];
        assert!(rule[0].get("mangle").is_some(), "{rule}");
        assert!(rule[1]["goto"]["target"]
            .as_str()
            .unwrap()
            .starts_with("service-"));
    }

    #[test]
    fn client_ip_affinity_adds_a_set_per_endpoint_looked_up_before_numgen() {
        let svc = service(
            "default",
            "web",
            json!({"clusterIP": "10.43.0.10", "sessionAffinity": "ClientIP",
                   "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}},
                   "ports": [{"name": "http", "port": 80}]}),
        );
        let (s, e) = maps(vec![svc], vec![web_endpoints(&["10.42.0.2", "10.42.0.3"])]);
        let r = build(&s, &e, None);
        assert_eq!(r.affinity_sets.len(), 2);
        let service_chain = chains_with_prefix(&r, "service-")[0];
        let rules = &r.chains[service_chain].rules;
        assert_eq!(rules.len(), 4, "two lookups, then the numgen choice");
        assert!(rules[0][0]["match"]["right"]
            .as_str()
            .unwrap()
            .starts_with("@affinity-"));
        assert!(rules[2][0]["match"]["left"].get("numgen").is_some());
        let endpoint = chains_with_prefix(&r, "endpoint-")[0];
        let update = &r.chains[endpoint].rules[1][0]["set"];
        assert_eq!(update["op"], "update");
        assert_eq!(update["elem"]["elem"]["timeout"], 60);
    }

    #[test]
    fn headless_and_external_name_services_are_skipped() {
        let headless = service(
            "default",
            "headless",
            json!({"clusterIP": "None", "ports": [{"port": 80}]}),
        );
        let external = service(
            "default",
            "ext",
            json!({"type": "ExternalName", "externalName": "example.org"}),
        );
        let (s, e) = maps(vec![headless, external], vec![]);
        assert_eq!(
            build(&s, &e, None),
            build(&BTreeMap::new(), &BTreeMap::new(), None)
        );
    }

    #[test]
    fn object_names_are_deterministic_distinct_and_bounded() {
        let a = object_name("service", "ns/a/tcp/http");
        assert_eq!(a, object_name("service", "ns/a/tcp/http"));
        assert_ne!(a, object_name("service", "ns/b/tcp/http"));
        let long = object_name("endpoint", &"x".repeat(400));
        assert!(long.len() <= MAX_NAME_LEN);
    }
}
