//! host-gw: keeps a route to every other node's podCIDR via that node's InternalIP, in
//! step with the cluster's Nodes (list + watch, relisting after any error and every
//! [`RELIST_INTERVAL`], which also repairs routes someone removed).

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;
use serde_json::Value;

use super::client::{ApiClient, ClientError, WatchEvent, WatchEvents};
use super::net::NetworkBackend;

/// One host-gw route: a node's podCIDR and the node address it is reached through.
pub type PodRoute = (Ipv4Net, Ipv4Addr);

/// How long one watch stays open; then the Nodes are listed and the routes re-applied.
const RELIST_INTERVAL: Duration = Duration::from_secs(60);
/// Wait before listing again after a failed list or watch.
const RETRY_DELAY: Duration = Duration::from_secs(2);

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{step} nodes")]
    Request {
        step: &'static str,
        #[source]
        source: ClientError,
    },
    #[error("{step} nodes: the server answered {status}: {message}")]
    Rejected {
        step: &'static str,
        status: u16,
        message: String,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The routes node `own_node` needs: every other node's podCIDR via its first IPv4
/// InternalIP. Nodes without either are skipped (they get routes once they have both);
/// should two nodes claim one podCIDR, the first by name wins. Sorted by podCIDR.
pub fn desired_routes<'a>(
    nodes: impl IntoIterator<Item = &'a Value>,
    own_node: &str,
) -> Vec<PodRoute> {
    let mut routes: BTreeMap<Ipv4Net, (&str, Ipv4Addr)> = BTreeMap::new();
    for node in nodes {
        let name = node["metadata"]["name"].as_str().unwrap_or("");
        if name == own_node {
            continue;
        }
        let Some(cidr) = node["spec"]["podCIDR"]
            .as_str()
            .and_then(|c| c.parse::<Ipv4Net>().ok())
        else {
            continue;
        };
        let Some(ip) = internal_ipv4(node) else {
            continue;
        };
        let entry = routes.entry(cidr.trunc()).or_insert((name, ip));
        if name < entry.0 {
            *entry = (name, ip);
        }
    }
    routes
        .into_iter()
        .map(|(cidr, (_, ip))| (cidr, ip))
        .collect()
}

fn internal_ipv4(node: &Value) -> Option<Ipv4Addr> {
    node["status"]["addresses"]
        .as_array()?
        .iter()
        .filter(|a| a["type"] == "InternalIP")
        .find_map(|a| a["address"].as_str()?.parse().ok())
}

/// The Nodes this agent knows and the routes it last applied for them.
pub struct PodRoutes {
    network: Arc<dyn NetworkBackend>,
    own_node: String,
    nodes: BTreeMap<String, Value>,
    /// What the last successful sync made the routes; `None`: unknown (sync again).
    applied: Option<Vec<PodRoute>>,
}

impl PodRoutes {
    pub fn new(network: Arc<dyn NetworkBackend>, own_node: &str) -> Self {
        PodRoutes {
            network,
            own_node: own_node.to_string(),
            nodes: BTreeMap::new(),
            applied: None,
        }
    }

    /// Forgets the known Nodes for a fresh list of them.
    pub fn replace_all(&mut self, nodes: Vec<Value>) {
        self.nodes = nodes.into_iter().map(|n| (node_name(&n), n)).collect();
    }

    /// Applies one watch event. Returns false when the watch must end (an ERROR event,
    /// e.g. 410 Gone): the caller relists.
    pub fn on_event(&mut self, kind: &str, node: Value) -> bool {
        match kind {
            "ADDED" | "MODIFIED" => {
                self.nodes.insert(node_name(&node), node);
            }
            "DELETED" => {
                self.nodes.remove(&node_name(&node));
            }
            "BOOKMARK" => {}
            _ => return false,
        }
        true
    }

    /// Makes the node's routes match the known Nodes: when they changed since the last
    /// sync, or always with `force`. Failures are logged; the next call retries.
    pub async fn apply(&mut self, force: bool) {
        let desired = desired_routes(self.nodes.values(), &self.own_node);
        if !force && self.applied.as_ref() == Some(&desired) {
            return;
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
                tracing::warn!(error = %super::kubelet::worker::error_chain(&e), "syncing the routes to other nodes' pods failed; will retry");
                self.applied = None;
            }
        }
    }
}

fn node_name(node: &Value) -> String {
    node["metadata"]["name"].as_str().unwrap_or("").to_string()
}

/// Follows the Nodes forever, keeping `routes` in step.
pub async fn run(client: Arc<ApiClient>, mut routes: PodRoutes) {
    loop {
        let resource_version = match list(&client).await {
            Ok((nodes, rv)) => {
                routes.replace_all(nodes);
                routes.apply(true).await;
                rv
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot list nodes for the pod routes; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
                continue;
            }
        };
        if let Err(e) = watch(&client, &resource_version, &mut routes).await {
            tracing::warn!(error = %e, "watching nodes for the pod routes failed; relisting");
            tokio::time::sleep(RETRY_DELAY).await;
        }
    }
}

async fn list(client: &ApiClient) -> Result<(Vec<Value>, String)> {
    const STEP: &str = "list";
    let resp = client
        .get("/api/v1/nodes")
        .await
        .map_err(|source| Error::Request { step: STEP, source })?;
    if !resp.status.is_success() {
        return Err(Error::Rejected {
            step: STEP,
            status: resp.status.as_u16(),
            message: resp.message(),
        });
    }
    let mut list = resp.json().unwrap_or_default();
    let rv = list["metadata"]["resourceVersion"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let items = match list["items"].take() {
        Value::Array(items) => items,
        _ => Vec::new(),
    };
    Ok((items, rv))
}

/// Applies the Node watch from `resource_version` until the server ends it.
async fn watch(client: &ApiClient, resource_version: &str, routes: &mut PodRoutes) -> Result<()> {
    const STEP: &str = "watch";
    let path = format!(
        "/api/v1/nodes?watch=1&resourceVersion={resource_version}\
         &allowWatchBookmarks=true&timeoutSeconds={}",
        RELIST_INTERVAL.as_secs()
    );
    let (status, body) = client
        .stream(&path)
        .await
        .map_err(|source| Error::Request { step: STEP, source })?;
    if !status.is_success() {
        return Err(Error::Rejected {
            step: STEP,
            status: status.as_u16(),
            message: String::new(),
        });
    }
    let mut events = WatchEvents::new(body);
    while let Some(event) = events.next().await {
        let WatchEvent { kind, object } = match event {
            Ok(event) => event,
            Err(e) => {
                tracing::debug!(error = %e, "node watch stream broke");
                return Ok(());
            }
        };
        if !routes.on_event(&kind, object) {
            return Ok(());
        }
        routes.apply(false).await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::net::{FakeNetwork, NetCall};
    use serde_json::json;

    fn node(name: &str, cidr: Option<&str>, ip: Option<&str>) -> Value {
        let mut n = json!({"metadata": {"name": name}, "spec": {}, "status": {"addresses": [
            {"type": "Hostname", "address": name}
        ]}});
        if let Some(c) = cidr {
            n["spec"]["podCIDR"] = json!(c);
        }
        if let Some(ip) = ip {
            n["status"]["addresses"]
                .as_array_mut()
                .unwrap()
                .push(json!({"type": "InternalIP", "address": ip}));
        }
        n
    }

    fn route(cidr: &str, ip: &str) -> PodRoute {
        (cidr.parse().unwrap(), ip.parse().unwrap())
    }

    #[test]
    fn routes_go_to_other_nodes_pod_cidrs_via_their_internal_ip() {
        let nodes = [
            node("n1", Some("10.42.1.0/24"), Some("192.168.1.11")),
            node("n2", Some("10.42.2.0/24"), Some("192.168.1.12")),
            node("n3", Some("10.42.3.0/24"), Some("192.168.1.13")),
        ];
        assert_eq!(
            desired_routes(&nodes, "n1"),
            vec![
                route("10.42.2.0/24", "192.168.1.12"),
                route("10.42.3.0/24", "192.168.1.13")
            ]
        );
        assert_eq!(desired_routes(&nodes[..1], "n1"), vec![]);
    }

    #[test]
    fn nodes_without_pod_cidr_or_ipv4_internal_ip_get_no_route() {
        let mut v6 = node("v6", Some("10.42.4.0/24"), Some("fd00::4"));
        v6["status"]["addresses"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "ExternalIP", "address": "203.0.113.4"}));
        let nodes = [
            node("no-cidr", None, Some("192.168.1.2")),
            node("no-ip", Some("10.42.3.0/24"), None),
            node("bad-cidr", Some("not a cidr"), Some("192.168.1.5")),
            v6,
            node("dual", Some("10.42.6.0/24"), Some("fd00::6")),
        ];
        let mut dual = nodes[4].clone();
        dual["status"]["addresses"]
            .as_array_mut()
            .unwrap()
            .push(json!({"type": "InternalIP", "address": "192.168.1.6"}));
        assert_eq!(desired_routes(&nodes[..4], "me"), vec![]);
        assert_eq!(
            desired_routes([&dual], "me"),
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
            desired_routes(&nodes, "me"),
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
        let mut routes = PodRoutes::new(fake.clone(), "n1");
        routes.replace_all(vec![
            node("n1", Some("10.42.1.0/24"), Some("192.168.1.11")),
            node("n2", Some("10.42.2.0/24"), Some("192.168.1.12")),
        ]);
        routes.apply(true).await;
        let n2 = vec![route("10.42.2.0/24", "192.168.1.12")];
        assert_eq!(syncs(&fake), vec![n2.clone()]);

        // A heartbeat changes nothing that matters: no sync.
        assert!(routes.on_event(
            "MODIFIED",
            node("n2", Some("10.42.2.0/24"), Some("192.168.1.12"))
        ));
        routes.apply(false).await;
        assert_eq!(syncs(&fake).len(), 1);

        // A new node gets a route once it has its podCIDR.
        assert!(routes.on_event("ADDED", node("n3", None, Some("192.168.1.13"))));
        routes.apply(false).await;
        assert_eq!(syncs(&fake).len(), 1);
        assert!(routes.on_event(
            "MODIFIED",
            node("n3", Some("10.42.3.0/24"), Some("192.168.1.13"))
        ));
        routes.apply(false).await;
        let with_n3 = vec![n2[0], route("10.42.3.0/24", "192.168.1.13")];
        assert_eq!(syncs(&fake).last(), Some(&with_n3));

        // A deleted node loses its route.
        assert!(routes.on_event("DELETED", node("n2", None, None)));
        routes.apply(false).await;
        assert_eq!(fake.routes(), vec![route("10.42.3.0/24", "192.168.1.13")]);

        // An ERROR event ends the watch (the caller relists), a BOOKMARK does not.
        assert!(routes.on_event("BOOKMARK", json!({"metadata": {}})));
        assert!(!routes.on_event("ERROR", json!({"code": 410})));
    }
}
