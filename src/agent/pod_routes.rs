//! host-gw: keeps a route to every other node's podCIDR via that node's InternalIP, in
//! step with the cluster's Nodes (the agent's list-watch, relisting every
//! [`RELIST_INTERVAL`], which also repairs routes someone removed).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use tracing::Instrument;

use super::client::{Event, ListWatchApi, Query, Reflector};
use super::net::NetworkBackend;

/// One host-gw route: a node's podCIDR and the node address it is reached through.
pub type PodRoute = (Ipv4Net, Ipv4Addr);

/// How often the Nodes are listed again and the routes re-applied.
const RELIST_INTERVAL: Duration = Duration::from_secs(60);

/// Which peer podCIDRs this node routes: only subnets of the cluster CIDR
/// (`--cluster-cidr`, as given to the server) that do not overlap the node's own podCIDR.
/// Anything else a peer's Node claims (`0.0.0.0/1`, the service CIDR, this node's own
/// pods) would divert traffic that is not that peer's to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteScope {
    pub cluster_cidr: Ipv4Net,
    pub own_pod_cidr: Ipv4Net,
}

/// Why a peer's podCIDR gets no route.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    OutsideClusterCidr,
    OverlapsOwnPodCidr,
}

impl RouteScope {
    pub fn new(cluster_cidr: Ipv4Net, own_pod_cidr: Ipv4Net) -> Self {
        RouteScope {
            cluster_cidr: cluster_cidr.trunc(),
            own_pod_cidr: own_pod_cidr.trunc(),
        }
    }

    pub fn check(&self, cidr: Ipv4Net) -> Result<(), Refusal> {
        if !self.cluster_cidr.contains(&cidr) {
            return Err(Refusal::OutsideClusterCidr);
        }
        if cidr.contains(&self.own_pod_cidr) || self.own_pod_cidr.contains(&cidr) {
            return Err(Refusal::OverlapsOwnPodCidr);
        }
        Ok(())
    }
}

/// Every other node's podCIDR (truncated) with its first IPv4 InternalIP, by node name.
fn peer_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own_node: &str,
) -> impl Iterator<Item = (&'a str, Ipv4Net, Ipv4Addr)> {
    let own_node = own_node.to_string();
    nodes.into_iter().filter_map(move |node| {
        let name = node.metadata.name.as_deref().unwrap_or("");
        if name == own_node {
            return None;
        }
        let cidr = node
            .spec
            .as_ref()
            .and_then(|spec| spec.pod_cidr.as_deref())
            .and_then(|c| c.parse::<Ipv4Net>().ok())?;
        Some((name, cidr.trunc(), internal_ipv4(node)?))
    })
}

/// The routes node `own_node` needs: every other node's podCIDR via its first IPv4
/// InternalIP, for podCIDRs `scope` accepts. Nodes without either are skipped (they get
/// routes once they have both); should two nodes claim one podCIDR, the first by name
/// wins. Sorted by podCIDR.
pub fn desired_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own_node: &str,
    scope: &RouteScope,
) -> Vec<PodRoute> {
    let mut routes: BTreeMap<Ipv4Net, (&str, Ipv4Addr)> = BTreeMap::new();
    for (name, cidr, ip) in peer_routes(nodes, own_node) {
        if scope.check(cidr).is_err() {
            continue;
        }
        let entry = routes.entry(cidr).or_insert((name, ip));
        if name < entry.0 {
            *entry = (name, ip);
        }
    }
    routes
        .into_iter()
        .map(|(cidr, (_, ip))| (cidr, ip))
        .collect()
}

/// The peers whose podCIDR `scope` refuses, with the reason (for the log).
pub fn refused_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Node>,
    own_node: &str,
    scope: &RouteScope,
) -> Vec<(String, Ipv4Net, Refusal)> {
    peer_routes(nodes, own_node)
        .filter_map(|(name, cidr, _)| Some((name.to_string(), cidr, scope.check(cidr).err()?)))
        .collect()
}

fn internal_ipv4(node: &Node) -> Option<Ipv4Addr> {
    node.status
        .as_ref()?
        .addresses
        .as_ref()?
        .iter()
        .filter(|a| a.type_ == "InternalIP")
        .find_map(|a| a.address.parse().ok())
}

/// The Nodes this agent knows and the routes it last applied for them.
pub struct PodRoutes {
    network: Arc<dyn NetworkBackend>,
    own_node: String,
    scope: RouteScope,
    nodes: BTreeMap<String, Node>,
    /// What the last successful sync made the routes; `None`: unknown (sync again).
    applied: Option<Vec<PodRoute>>,
}

impl PodRoutes {
    pub fn new(network: Arc<dyn NetworkBackend>, own_node: &str, scope: RouteScope) -> Self {
        PodRoutes {
            network,
            own_node: own_node.to_string(),
            scope,
            nodes: BTreeMap::new(),
            applied: None,
        }
    }

    /// Applies one change of the Nodes. Returns whether the routes are due for a full
    /// re-sync (after a fresh list, which also repairs routes someone removed).
    pub fn on_event(&mut self, event: Event<Node>) -> bool {
        match event {
            Event::Restarted(nodes) | Event::LastKnown(nodes) => {
                self.nodes = nodes.into_iter().map(|n| (node_name(&n), n)).collect();
                return true;
            }
            Event::Applied(node) => {
                self.nodes.insert(node_name(&node), node);
            }
            Event::Deleted(node) => {
                self.nodes.remove(&node_name(&node));
            }
        }
        false
    }

    /// Makes the node's routes match the known Nodes: when they changed since the last
    /// sync, or always with `force`. Failures are logged; the next call retries.
    pub async fn apply(&mut self, force: bool) {
        let desired = desired_routes(self.nodes.values(), &self.own_node, &self.scope);
        if !force && self.applied.as_ref() == Some(&desired) {
            return;
        }
        for (node, pod_cidr, why) in
            refused_routes(self.nodes.values(), &self.own_node, &self.scope)
        {
            tracing::warn!(%node, %pod_cidr, reason = ?why, cluster_cidr = %self.scope.cluster_cidr, own_pod_cidr = %self.scope.own_pod_cidr, "not routing a node's podCIDR outside the cluster CIDR or overlapping this node's (does the agent's --cluster-cidr match the server's?)");
        }
        match self.network.sync_routes(&desired).await {
            Ok(sync) => {
                if !sync.conflicts.is_empty() {
                    tracing::warn!(conflicts = ?sync.conflicts, "other routes cover these pod CIDRs: pods there may be unreachable");
                }
                tracing::debug!(
                    routes = desired.len(),
                    added = sync.added.len(),
                    removed = sync.removed.len(),
                    "pod routes in sync"
                );
                self.applied = Some(desired);
            }
            Err(e) => {
                tracing::warn!(error = %super::error_chain(&e), "syncing the routes to other nodes' pods failed; will retry");
                self.applied = None;
            }
        }
    }
}

fn node_name(node: &Node) -> String {
    node.metadata.name.clone().unwrap_or_default()
}

/// Follows the Nodes forever, keeping `routes` in step.
pub async fn run(api: Arc<dyn ListWatchApi>, mut routes: PodRoutes) {
    let span = tracing::info_span!("pod_routes", node = %routes.own_node);
    let query = Query::all("nodes").relist_every(RELIST_INTERVAL);
    let mut nodes = Reflector::<Node>::new(api, query);
    async move {
        loop {
            let resync = routes.on_event(nodes.next().await);
            routes.apply(resync).await;
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::net::{FakeNetwork, NetCall};
    use serde_json::{json, Value};

    fn node_json(name: &str, cidr: Option<&str>, ips: &[(&str, &str)]) -> Value {
        let mut n = json!({"metadata": {"name": name}, "spec": {}, "status": {"addresses": [
            {"type": "Hostname", "address": name}
        ]}});
        if let Some(c) = cidr {
            n["spec"]["podCIDR"] = json!(c);
        }
        for (kind, ip) in ips {
            n["status"]["addresses"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": kind, "address": ip}));
        }
        n
    }

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Node {
        let ips: Vec<_> = ip.iter().map(|ip| ("InternalIP", *ip)).collect();
        serde_json::from_value(node_json(name, cidr, &ips)).unwrap()
    }

    fn route(cidr: &str, ip: &str) -> PodRoute {
        (cidr.parse().unwrap(), ip.parse().unwrap())
    }

    /// Node n1's view: cluster 10.42.0.0/16, its own pods in 10.42.1.0/24.
    fn scope() -> RouteScope {
        RouteScope::new(
            "10.42.0.0/16".parse().unwrap(),
            "10.42.1.0/24".parse().unwrap(),
        )
    }

    #[test]
    fn peer_pod_cidrs_outside_the_cluster_or_overlapping_ours_get_no_route() {
        let nodes = [
            node("good", Some("10.42.2.0/24"), Some("192.168.1.12")),
            node("everything", Some("0.0.0.0/1"), Some("192.168.1.66")),
            node("services", Some("10.43.0.0/24"), Some("192.168.1.67")),
            node("wider", Some("10.42.0.0/16"), Some("192.168.1.68")),
            node("mine", Some("10.42.1.0/24"), Some("192.168.1.69")),
            node("inside-mine", Some("10.42.1.128/25"), Some("192.168.1.70")),
        ];
        assert_eq!(
            desired_routes(&nodes, "n1", &scope()),
            vec![route("10.42.2.0/24", "192.168.1.12")]
        );
        let refused: Vec<(String, Refusal)> = refused_routes(&nodes, "n1", &scope())
            .into_iter()
            .map(|(node, _, why)| (node, why))
            .collect();
        use Refusal::*;
        assert_eq!(
            refused,
            [
                ("everything".to_string(), OutsideClusterCidr),
                ("services".to_string(), OutsideClusterCidr),
                ("wider".to_string(), OverlapsOwnPodCidr),
                ("mine".to_string(), OverlapsOwnPodCidr),
                ("inside-mine".to_string(), OverlapsOwnPodCidr),
            ]
        );
    }

    #[test]
    fn routes_go_to_other_nodes_pod_cidrs_via_their_internal_ip() {
        let nodes = [
            node("n1", Some("10.42.1.0/24"), Some("192.168.1.11")),
            node("n2", Some("10.42.2.0/24"), Some("192.168.1.12")),
            node("n3", Some("10.42.3.0/24"), Some("192.168.1.13")),
        ];
        assert_eq!(
            desired_routes(&nodes, "n1", &scope()),
            vec![
                route("10.42.2.0/24", "192.168.1.12"),
                route("10.42.3.0/24", "192.168.1.13")
            ]
        );
        assert_eq!(desired_routes(&nodes[..1], "n1", &scope()), vec![]);
    }

    #[test]
    fn nodes_without_pod_cidr_or_ipv4_internal_ip_get_no_route() {
        let v6 = node_json(
            "v6",
            Some("10.42.4.0/24"),
            &[("InternalIP", "fd00::4"), ("ExternalIP", "203.0.113.4")],
        );
        let v6: Node = serde_json::from_value(v6).unwrap();
        let nodes = [
            node("no-cidr", None, Some("192.168.1.2")),
            node("no-ip", Some("10.42.3.0/24"), None),
            node("bad-cidr", Some("not a cidr"), Some("192.168.1.5")),
            v6,
            node("dual", Some("10.42.6.0/24"), Some("fd00::6")),
        ];
        let dual = node_json(
            "dual",
            Some("10.42.6.0/24"),
            &[("InternalIP", "fd00::6"), ("InternalIP", "192.168.1.6")],
        );
        let dual: Node = serde_json::from_value(dual).unwrap();
        assert_eq!(desired_routes(&nodes[..4], "me", &scope()), vec![]);
        assert_eq!(
            desired_routes([&dual], "me", &scope()),
            vec![route("10.42.6.0/24", "192.168.1.6")]
        );
    }

    #[test]
    fn a_pod_cidr_claimed_twice_is_routed_to_the_first_node_by_name() {
        let nodes = [
            node("b", Some("10.42.2.0/24"), Some("192.168.1.12")),
            node("a", Some("10.42.2.7/24"), Some("192.168.1.11")),
        ];
        assert_eq!(
            desired_routes(&nodes, "me", &scope()),
            vec![route("10.42.2.0/24", "192.168.1.11")]
        );
    }

    fn syncs(fake: &FakeNetwork) -> Vec<Vec<PodRoute>> {
        fake.calls()
            .into_iter()
            .filter_map(|c| match c {
                NetCall::SyncRoutes(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    #[tokio::test]
    async fn routes_follow_node_events_and_sync_only_on_change() {
        let fake = Arc::new(FakeNetwork::new("10.42.1.0/24".parse().unwrap()).unwrap());
        let mut routes = PodRoutes::new(fake.clone(), "n1", scope());
        let listed = routes.on_event(Event::Restarted(vec![
            node("n1", Some("10.42.1.0/24"), Some("192.168.1.11")),
            node("n2", Some("10.42.2.0/24"), Some("192.168.1.12")),
        ]));
        assert!(listed, "a fresh list re-syncs the routes");
        routes.apply(listed).await;
        let n2 = vec![route("10.42.2.0/24", "192.168.1.12")];
        assert_eq!(syncs(&fake), vec![n2.clone()]);

        // A heartbeat changes nothing that matters: no sync.
        let heartbeat = node("n2", Some("10.42.2.0/24"), Some("192.168.1.12"));
        assert!(!routes.on_event(Event::Applied(heartbeat)));
        routes.apply(false).await;
        assert_eq!(syncs(&fake).len(), 1);

        // A new node gets a route once it has its podCIDR.
        routes.on_event(Event::Applied(node("n3", None, Some("192.168.1.13"))));
        routes.apply(false).await;
        assert_eq!(syncs(&fake).len(), 1);
        routes.on_event(Event::Applied(node(
            "n3",
            Some("10.42.3.0/24"),
            Some("192.168.1.13"),
        )));
        routes.apply(false).await;
        let with_n3 = vec![n2[0], route("10.42.3.0/24", "192.168.1.13")];
        assert_eq!(syncs(&fake).last(), Some(&with_n3));

        // A deleted node loses its route.
        routes.on_event(Event::Deleted(node("n2", None, None)));
        routes.apply(false).await;
        assert_eq!(fake.routes(), vec![route("10.42.3.0/24", "192.168.1.13")]);
    }

    #[tokio::test(start_paused = true)]
    async fn routes_are_resynced_from_a_fresh_list_every_interval() {
        use crate::agent::client::fake::{Answer, FakeListWatch};
        let network = Arc::new(FakeNetwork::new("10.42.1.0/24".parse().unwrap()).unwrap());
        let api = Arc::new(FakeListWatch::new());
        let nodes = vec![
            node_json(
                "n1",
                Some("10.42.1.0/24"),
                &[("InternalIP", "192.168.1.11")],
            ),
            node_json(
                "n2",
                Some("10.42.2.0/24"),
                &[("InternalIP", "192.168.1.12")],
            ),
        ];
        let (watch, events) = tokio::sync::mpsc::unbounded_channel();
        api.answer("/api/v1/nodes", Answer::list("5", nodes.clone()))
            .answer("/api/v1/nodes", Answer::Live(events))
            .answer("/api/v1/nodes", Answer::list("9", nodes));
        let task = tokio::spawn(run(
            api.clone(),
            PodRoutes::new(network.clone(), "n1", scope()),
        ));
        let n2 = vec![route("10.42.2.0/24", "192.168.1.12")];
        let resynced = async {
            while syncs(&network).is_empty() {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            // The watch runs its course (the server ends it after the interval).
            tokio::time::sleep(RELIST_INTERVAL).await;
            drop(watch);
            while syncs(&network).len() < 2 || api.paths().len() < 4 {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(600), resynced)
            .await
            .expect("the pod routes deadlocked");
        task.abort();
        assert_eq!(
            syncs(&network),
            vec![n2.clone(), n2],
            "unchanged routes are re-applied"
        );
        let paths = api.paths();
        assert_eq!(paths.len(), 4, "list, watch, list, watch: {paths:?}");
        assert_eq!(paths[0], "/api/v1/nodes");
        assert!(paths[1].contains("resourceVersion=5") && paths[1].contains("timeoutSeconds=60"));
        assert!(paths[3].contains("resourceVersion=9"), "{paths:?}");
    }
}
