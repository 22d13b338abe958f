//! Servers sharing one datastore (etcd) know each other through one Lease per server in
//! `kube-system` (`orc-server-<address>`, labelled as upstream's API server identity
//! leases). Each server renews its own every [`PEER_PERIOD`]; the renewal carries
//! the server's address and a digest of the node heartbeats it holds in memory (how
//! long ago each node last beat through it, see `apiserver::heartbeats`), so the node
//! lifecycle controller, wherever it runs, sees every node's liveness from one small
//! write per server per period instead of one write per node renewal. From the live
//! leases every server keeps the `default/kubernetes` Endpoints and EndpointSlice
//! listing all servers; agents read them to fail over.
//!
//! Liveness of a server lease is judged on the reader's own clock (when its
//! resourceVersion last changed), never from the writer's timestamps, so clock skew
//! between servers does not matter. Only servers on a shared datastore run this: a
//! single server on SQLite writes nothing more than before.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::registry::{DeleteOptions, Registry, WriteOptions};

/// How often a server renews its lease (and shares its heartbeat digest); upstream's
/// API server identity leases renew every 10 s too.
pub const PEER_PERIOD: Duration = Duration::from_secs(10);
/// How long a server lease stays live without a renewal: three missed renewals.
pub const PEER_LEASE_DURATION: Duration = Duration::from_secs(30);
/// Digest entries older than this are left out (the node talks to another server).
pub const DIGEST_WINDOW: Duration = Duration::from_secs(120);
/// Namespace of the server leases.
pub const PEER_NAMESPACE: &str = "kube-system";
/// Name prefix of the server leases.
pub const PEER_LEASE_PREFIX: &str = "orc-server-";
/// Upstream's label of API server identity leases, and its value.
pub const IDENTITY_LABEL: &str = "apiserver.kubernetes.io/identity";
pub const IDENTITY_VALUE: &str = "kube-apiserver";
/// The server's `IP:port`, as agents and pods reach it.
pub const ADDRESS_ANNOTATION: &str = "orc.io/advertise-address";
/// `{"node": milliseconds since its last heartbeat through this server, …}`.
pub const HEARTBEATS_ANNOTATION: &str = "orc.io/node-heartbeats";

fn leases() -> &'static ResourceDef {
    resources::by_plural("coordination.k8s.io", "v1", "leases").expect("served")
}

/// Whether a Lease is a server lease.
pub fn is_server_lease(lease: &Value) -> bool {
    object::namespace(lease) == Some(PEER_NAMESPACE)
        && object::name(lease).starts_with(PEER_LEASE_PREFIX)
        && lease["metadata"]["labels"][IDENTITY_LABEL] == IDENTITY_VALUE
}

/// The lease name of the server at `addr` (unique per address, stable across restarts).
pub fn lease_name(addr: SocketAddr) -> String {
    let ip: String = addr
        .ip()
        .to_string()
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!(
        "{PEER_LEASE_PREFIX}{}-{}",
        ip.trim_matches('-').to_ascii_lowercase(),
        addr.port()
    )
}

/// The heartbeat digest as stored in the annotation (whole milliseconds).
pub fn encode_digest(recent: &BTreeMap<String, Duration>) -> String {
    let map: serde_json::Map<String, Value> = recent
        .iter()
        .map(|(node, age)| (node.clone(), json!(age.as_millis() as u64)))
        .collect();
    Value::Object(map).to_string()
}

/// The heartbeat digest of a server lease (empty when absent or malformed: a lease
/// written by hand must not break the lifecycle controller).
pub fn decode_digest(lease: &Value) -> BTreeMap<String, Duration> {
    let Some(text) = lease["metadata"]["annotations"][HEARTBEATS_ANNOTATION].as_str() else {
        return BTreeMap::new();
    };
    let Ok(Value::Object(map)) = serde_json::from_str::<Value>(text) else {
        return BTreeMap::new();
    };
    map.into_iter()
        .filter_map(|(node, ms)| Some((node, Duration::from_millis(ms.as_u64()?))))
        .collect()
}

/// The address a server lease advertises.
pub fn lease_address(lease: &Value) -> Option<SocketAddr> {
    lease["metadata"]["annotations"][ADDRESS_ANNOTATION]
        .as_str()?
        .parse()
        .ok()
}

/// The lease of this server as renewed at `now` (RFC 3339 micro time).
pub fn server_lease(addr: SocketAddr, holder: &str, digest: &str, now: &str) -> Value {
    json!({
        "apiVersion": "coordination.k8s.io/v1", "kind": "Lease",
        "metadata": {
            "name": lease_name(addr), "namespace": PEER_NAMESPACE,
            "labels": {IDENTITY_LABEL: IDENTITY_VALUE},
            "annotations": {ADDRESS_ANNOTATION: addr.to_string(), HEARTBEATS_ANNOTATION: digest},
        },
        "spec": {
            "holderIdentity": holder,
            "leaseDurationSeconds": PEER_LEASE_DURATION.as_secs(),
            "renewTime": now,
        },
    })
}

/// Which server leases are live, judged by when this reader saw each change.
#[derive(Default, Debug)]
pub struct PeerView {
    /// Lease name → (resourceVersion last seen, when it was first seen).
    seen: HashMap<String, (String, Instant)>,
}

impl PeerView {
    /// Takes in the current leases (name, resourceVersion); forgets deleted ones. A
    /// lease seen for the first time counts as just renewed.
    pub fn observe<'a>(
        &mut self,
        leases: impl IntoIterator<Item = (&'a str, &'a str)>,
        now: Instant,
    ) {
        let mut current = HashMap::new();
        for (name, rv) in leases {
            let entry = match self.seen.remove(name) {
                Some((old, at)) if old == rv => (old, at),
                _ => (rv.to_string(), now),
            };
            current.insert(name.to_string(), entry);
        }
        self.seen = current;
    }

    /// Whether the lease `name` changed within `duration` before `now`.
    pub fn is_live(&self, name: &str, now: Instant, duration: Duration) -> bool {
        self.seen
            .get(name)
            .is_some_and(|(_, at)| now.saturating_duration_since(*at) <= duration)
    }
}

/// The `default/kubernetes` Endpoints subsets for these servers: one subset per port,
/// addresses sorted (so an unchanged set compares equal and is not rewritten).
pub fn endpoint_subsets(servers: &[SocketAddr]) -> Value {
    let mut by_port: BTreeMap<u16, Vec<String>> = BTreeMap::new();
    for s in servers {
        by_port
            .entry(s.port())
            .or_default()
            .push(s.ip().to_string());
    }
    let subsets: Vec<Value> = by_port
        .into_iter()
        .map(|(port, mut ips)| {
            ips.sort();
            ips.dedup();
            let addresses: Vec<Value> = ips.into_iter().map(|ip| json!({"ip": ip})).collect();
            json!({"addresses": addresses,
                   "ports": [{"name": "https", "port": port, "protocol": "TCP"}]})
        })
        .collect();
    Value::Array(subsets)
}

/// Identity of this server for its lease.
#[derive(Clone, Debug)]
pub struct PeerConfig {
    /// `IP:port` agents and pods reach this server at.
    pub address: SocketAddr,
    /// `holderIdentity` of the lease: the address and a per-start id.
    pub holder: String,
    pub period: Duration,
}

impl PeerConfig {
    pub fn new(address: SocketAddr) -> PeerConfig {
        let start = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        PeerConfig {
            address,
            holder: format!("{}_{start:x}", lease_name(address)),
            period: PEER_PERIOD,
        }
    }
}

/// Renews this server's lease and keeps the `kubernetes` endpoints listing the live
/// servers, every period, until the task is dropped.
pub async fn run(registry: Arc<Registry>, config: PeerConfig) {
    let mut view = PeerView::default();
    let mut ticker = tokio::time::interval(config.period);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticker.tick().await;
        if let Err(e) = renew(&registry, &config).await {
            tracing::warn!(server = %config.address, error = %e.message, "cannot renew the server lease");
        }
        if let Err(e) = reconcile_endpoints(&registry, &config, &mut view).await {
            tracing::warn!(server = %config.address, error = %e.message, "cannot update the kubernetes endpoints");
        }
    }
}

async fn renew(registry: &Registry, config: &PeerConfig) -> Result<(), ApiError> {
    let recent = registry.heartbeats.recent(Instant::now(), DIGEST_WINDOW);
    let digest = encode_digest(&recent);
    let now = chrono::Utc::now()
        .format("%Y-%m-%dT%H:%M:%S%.6fZ")
        .to_string();
    let lease = server_lease(config.address, &config.holder, &digest, &now);
    let name = lease_name(config.address);
    let opts = WriteOptions::default();
    match registry.get(leases(), Some(PEER_NAMESPACE), &name) {
        Ok(_) => {
            registry
                .modify(leases(), Some(PEER_NAMESPACE), &name, None, &opts, &|cur| {
                    let mut next = lease.clone();
                    next["metadata"]["resourceVersion"] =
                        cur["metadata"]["resourceVersion"].clone();
                    next["metadata"]["uid"] = cur["metadata"]["uid"].clone();
                    next["metadata"]["creationTimestamp"] =
                        cur["metadata"]["creationTimestamp"].clone();
                    Ok(next)
                })
                .await?;
        }
        Err(e) if e.code == 404 => {
            registry
                .create(leases(), Some(PEER_NAMESPACE), lease, &opts)
                .await?;
        }
        Err(e) => return Err(e),
    }
    Ok(())
}

/// Lists the server leases, updates `view`, deletes leases dead for two durations and
/// writes the endpoints when the live set changed.
async fn reconcile_endpoints(
    registry: &Registry,
    config: &PeerConfig,
    view: &mut PeerView,
) -> Result<(), ApiError> {
    let page = registry.list(leases(), Some(PEER_NAMESPACE), None, 0, &|kv| {
        is_server_lease(&kv.value)
    });
    let now = Instant::now();
    view.observe(
        page.items.iter().map(|kv| {
            (
                object::name(&kv.value),
                kv.value["metadata"]["resourceVersion"]
                    .as_str()
                    .unwrap_or(""),
            )
        }),
        now,
    );
    let own = lease_name(config.address);
    let mut live = vec![config.address];
    for kv in &page.items {
        let name = object::name(&kv.value);
        if name == own {
            continue;
        }
        if view.is_live(name, now, PEER_LEASE_DURATION) {
            live.extend(lease_address(&kv.value));
        } else if !view.is_live(name, now, 2 * PEER_LEASE_DURATION) {
            tracing::info!(lease = %name, "removing the lease of a server gone for {}s", 2 * PEER_LEASE_DURATION.as_secs());
            let opts = DeleteOptions::default();
            if let Err(e) = registry
                .delete(leases(), Some(PEER_NAMESPACE), name, &opts)
                .await
            {
                if e.code != 404 {
                    return Err(e);
                }
            }
        }
    }
    write_kubernetes_endpoints(registry, &live, config.address.port()).await
}

/// Makes the `default/kubernetes` Endpoints list `servers` and its EndpointSlice those
/// of them on `slice_port` (a slice has one port list); writes only what differs. As
/// upstream's endpoint reconciler, the API server writes the slice itself (the
/// Endpoints are marked not to be mirrored).
pub async fn write_kubernetes_endpoints(
    registry: &Registry,
    servers: &[SocketAddr],
    slice_port: u16,
) -> Result<(), ApiError> {
    let opts = WriteOptions::default();
    let endpoints = resources::by_plural("", "v1", "endpoints").expect("served");
    let subsets = endpoint_subsets(servers);
    match registry.get(endpoints, Some("default"), "kubernetes") {
        Ok(kv) if kv.value["subsets"] == subsets => {}
        Ok(_) => {
            registry
                .modify(
                    endpoints,
                    Some("default"),
                    "kubernetes",
                    None,
                    &opts,
                    &|cur| {
                        let mut cur = cur.clone();
                        cur["subsets"] = subsets.clone();
                        Ok(cur)
                    },
                )
                .await?;
        }
        Err(_) => {
            let ep = json!({
                "apiVersion": "v1", "kind": "Endpoints",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"endpointslice.kubernetes.io/skip-mirror": "true"}},
                "subsets": subsets,
            });
            ignore_exists(registry.create(endpoints, Some("default"), ep, &opts).await)?;
        }
    }
    let slices = resources::by_plural("discovery.k8s.io", "v1", "endpointslices").expect("served");
    let mut ips: Vec<std::net::IpAddr> = servers
        .iter()
        .filter(|s| s.port() == slice_port)
        .map(|s| s.ip())
        .collect();
    ips.sort();
    ips.dedup();
    let family = if ips.first().is_some_and(|ip| ip.is_ipv6()) {
        "IPv6"
    } else {
        "IPv4"
    };
    let endpoints: Vec<Value> = ips
        .iter()
        .map(|ip| json!({"addresses": [ip.to_string()], "conditions": {"ready": true}}))
        .collect();
    let endpoints = Value::Array(endpoints);
    let ports = json!([{"name": "https", "port": slice_port, "protocol": "TCP"}]);
    match registry.get(slices, Some("default"), "kubernetes") {
        Ok(kv) if kv.value["endpoints"] == endpoints && kv.value["ports"] == ports => {}
        Ok(_) => {
            registry
                .modify(slices, Some("default"), "kubernetes", None, &opts, &|cur| {
                    let mut cur = cur.clone();
                    cur["addressType"] = json!(family);
                    cur["endpoints"] = endpoints.clone();
                    cur["ports"] = ports.clone();
                    Ok(cur)
                })
                .await?;
        }
        Err(_) => {
            let slice = json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "kubernetes", "namespace": "default",
                             "labels": {"kubernetes.io/service-name": "kubernetes"}},
                "addressType": family,
                "endpoints": endpoints,
                "ports": ports,
            });
            ignore_exists(registry.create(slices, Some("default"), slice, &opts).await)?;
        }
    }
    Ok(())
}

fn ignore_exists(r: Result<impl Sized, ApiError>) -> Result<(), ApiError> {
    match r {
        Ok(_) => Ok(()),
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_names_are_dns_labels_unique_per_address() {
        assert_eq!(
            lease_name("10.0.0.1:6443".parse().unwrap()),
            "orc-server-10-0-0-1-6443"
        );
        assert_eq!(
            lease_name("[fd00::1]:6443".parse().unwrap()),
            "orc-server-fd00--1-6443"
        );
        assert_ne!(
            lease_name("10.0.0.1:6443".parse().unwrap()),
            lease_name("10.0.0.1:6444".parse().unwrap())
        );
    }

    #[test]
    fn digest_round_trips_through_the_lease() {
        let recent: BTreeMap<String, Duration> = [
            ("n1".to_string(), Duration::from_millis(1500)),
            ("n2".to_string(), Duration::from_secs(7)),
        ]
        .into();
        let addr: SocketAddr = "10.0.0.2:6443".parse().unwrap();
        let lease = server_lease(
            addr,
            "h",
            &encode_digest(&recent),
            "2026-12-04T16:00:00.000000Z",
        );
        assert!(is_server_lease(&lease));
        assert_eq!(decode_digest(&lease), recent);
        assert_eq!(lease_address(&lease), Some(addr));
        let mut bad = lease.clone();
        bad["metadata"]["annotations"][HEARTBEATS_ANNOTATION] = json!("{not json");
        assert!(decode_digest(&bad).is_empty());
        bad["metadata"]["annotations"][HEARTBEATS_ANNOTATION] = json!(r#"{"n1": "x", "n2": 5}"#);
        assert_eq!(decode_digest(&bad).len(), 1);
    }

    #[test]
    fn a_lease_is_live_while_its_version_changes_on_our_clock() {
        let t0 = Instant::now();
        let d = PEER_LEASE_DURATION;
        let mut view = PeerView::default();
        view.observe([("a", "1"), ("b", "1")], t0);
        // Seen for the first time: live for a full duration.
        assert!(view.is_live("a", t0 + d, d));
        view.observe([("a", "2"), ("b", "1")], t0 + d);
        let later = t0 + d + Duration::from_secs(5);
        view.observe([("a", "2"), ("b", "1")], later);
        assert!(view.is_live("a", later, d));
        assert!(
            !view.is_live("b", later, d),
            "b was not renewed for more than {d:?}"
        );
        // A deleted lease is forgotten.
        view.observe([("a", "2")], later);
        assert!(!view.is_live("b", later, 10 * d));
    }

    #[test]
    fn endpoint_subsets_group_by_port_and_sort() {
        let servers: Vec<SocketAddr> = ["10.0.0.2:6443", "10.0.0.1:6443", "10.0.0.3:7443"]
            .iter()
            .map(|s| s.parse().unwrap())
            .collect();
        assert_eq!(
            endpoint_subsets(&servers),
            json!([
                {"addresses": [{"ip": "10.0.0.1"}, {"ip": "10.0.0.2"}],
                 "ports": [{"name": "https", "port": 6443, "protocol": "TCP"}]},
                {"addresses": [{"ip": "10.0.0.3"}],
                 "ports": [{"name": "https", "port": 7443, "protocol": "TCP"}]},
            ])
        );
    }
}
