//! What the proxy and the cluster DNS read from the API server: every Service and
//! EndpointSlice of the cluster (the agent's list-watch), turned into [`Change`]s. The
//! slices of a Service are merged into one Endpoints view (what the rules and records
//! are built from): ready endpoints serve; a Service with no ready endpoint left is
//! served by its terminating endpoints that still pass readiness, as upstream's
//! kube-proxy does during a graceful shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{
    EndpointAddress, EndpointPort, EndpointSubset, Endpoints, Service,
};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Change, Nft, Proxier};
use crate::agent::client::last_known::LastKnownDir;
use crate::agent::client::{Event, ListWatchApi, Query, Reflector};

/// Changes buffered between the watches and the proxier.
const CHANGE_BUFFER: usize = 1024;

/// A kind of object the proxy follows, and the changes it makes.
trait Followed: DeserializeOwned + Clone + Send + Sync + 'static {
    const PLURAL: &'static str;
    /// The change that adds or updates this object.
    fn upserted(self) -> Change;
    /// The change that removes this object.
    fn deleted(&self) -> Change;
}

impl Followed for Service {
    const PLURAL: &'static str = "services";

    fn upserted(self) -> Change {
        Change::Service(Box::new(self))
    }

    fn deleted(&self) -> Change {
        let (namespace, name) = key_of(&self.metadata);
        Change::ServiceDeleted { namespace, name }
    }
}

/// The collection the slices are listed from (and kept under, on disk).
const SLICES: &str = "endpointslices";

/// The label naming the Service of an EndpointSlice.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// The EndpointSlices seen so far, by (namespace, slice name), with their Service.
#[derive(Default)]
struct SliceMerger {
    slices: BTreeMap<(String, String), (String, EndpointSlice)>,
}

impl SliceMerger {
    /// The Service a slice belongs to; slices without the label are nobody's (upstream's
    /// kube-proxy ignores them too).
    fn service_of(slice: &EndpointSlice) -> Option<String> {
        slice
            .metadata
            .labels
            .as_ref()?
            .get(SERVICE_NAME_LABEL)
            .filter(|s| !s.is_empty())
            .cloned()
    }

    /// Records `slice`; returns the Services whose view changed.
    fn upsert(&mut self, slice: EndpointSlice) -> Vec<(String, String)> {
        let (ns, name) = key_of(&slice.metadata);
        let mut touched = Vec::new();
        let before = self.slices.remove(&(ns.clone(), name.clone()));
        if let Some((svc, _)) = before {
            touched.push((ns.clone(), svc));
        }
        if let Some(svc) = Self::service_of(&slice) {
            touched.push((ns.clone(), svc.clone()));
            self.slices.insert((ns, name), (svc, slice));
        }
        touched
    }

    fn remove(&mut self, slice: &EndpointSlice) -> Vec<(String, String)> {
        let (ns, name) = key_of(&slice.metadata);
        match self.slices.remove(&(ns.clone(), name)) {
            Some((svc, _)) => vec![(ns, svc)],
            None => Vec::new(),
        }
    }

    /// Replaces everything with `slices` (a relist); returns every Service seen before or
    /// after.
    fn reset(&mut self, slices: Vec<EndpointSlice>) -> Vec<(String, String)> {
        let mut touched: BTreeSet<(String, String)> = self
            .slices
            .iter()
            .map(|((ns, _), (svc, _))| (ns.clone(), svc.clone()))
            .collect();
        self.slices.clear();
        for slice in slices {
            touched.extend(self.upsert(slice));
        }
        touched.into_iter().collect()
    }

    /// The change that brings a consumer's view of one Service's endpoints up to date.
    fn change_for(&self, ns: &str, svc: &str) -> Change {
        let slices: Vec<&EndpointSlice> = self
            .slices
            .iter()
            .filter(|((n, _), (s, _))| n == ns && s == svc)
            .map(|(_, (_, slice))| slice)
            .collect();
        if slices.is_empty() {
            return Change::EndpointsDeleted {
                namespace: ns.to_string(),
                name: svc.to_string(),
            };
        }
        Change::Endpoints(Box::new(merge_slices(ns, svc, &slices)))
    }

    fn changes_for(&self, services: Vec<(String, String)>) -> Vec<Change> {
        let unique: BTreeSet<(String, String)> = services.into_iter().collect();
        unique
            .iter()
            .map(|(ns, svc)| self.change_for(ns, svc))
            .collect()
    }
}

/// One Service's slices as Endpoints: a subset per slice (its ports), ready endpoints
/// as addresses and the others as not-ready addresses — except that when no endpoint
/// of the Service is ready, the terminating ones that still serve are used as
/// addresses (upstream's terminating-endpoint fallback). FQDN slices are skipped.
pub fn merge_slices(ns: &str, svc: &str, slices: &[&EndpointSlice]) -> Endpoints {
    let ready = |e: &k8s_openapi::api::discovery::v1::Endpoint| {
        e.conditions.as_ref().and_then(|c| c.ready).unwrap_or(true)
    };
    let serving_terminating = |e: &k8s_openapi::api::discovery::v1::Endpoint| {
        let c = e.conditions.as_ref();
        let terminating = c.and_then(|c| c.terminating).unwrap_or(false);
        let serving = c.and_then(|c| c.serving.or(c.ready)).unwrap_or(true);
        terminating && serving
    };
    let ip_slices: Vec<&&EndpointSlice> = slices
        .iter()
        .filter(|s| s.address_type == "IPv4" || s.address_type == "IPv6")
        .collect();
    let any_ready = ip_slices.iter().any(|s| s.endpoints.iter().any(&ready));
    let mut subsets = Vec::new();
    for slice in ip_slices {
        let mut addresses = Vec::new();
        let mut not_ready = Vec::new();
        for endpoint in &slice.endpoints {
            let Some(ip) = endpoint.addresses.first() else {
                continue;
            };
            let address = EndpointAddress {
                ip: ip.clone(),
                hostname: endpoint.hostname.clone(),
                node_name: endpoint.node_name.clone(),
                target_ref: endpoint.target_ref.clone(),
            };
            let serves = if any_ready {
                ready(endpoint)
            } else {
                serving_terminating(endpoint)
            };
            if serves {
                addresses.push(address);
            } else {
                not_ready.push(address);
            }
        }
        let ports: Vec<EndpointPort> = slice
            .ports
            .iter()
            .flatten()
            .filter_map(|p| {
                Some(EndpointPort {
                    name: p.name.clone().filter(|n| !n.is_empty()),
                    port: p.port?,
                    protocol: p.protocol.clone(),
                    app_protocol: p.app_protocol.clone(),
                })
            })
            .collect();
        if addresses.is_empty() && not_ready.is_empty() {
            continue;
        }
        subsets.push(EndpointSubset {
            addresses: Some(addresses).filter(|a| !a.is_empty()),
            not_ready_addresses: Some(not_ready).filter(|a| !a.is_empty()),
            ports: Some(ports).filter(|p| !p.is_empty()),
        });
    }
    Endpoints {
        metadata: ObjectMeta {
            namespace: Some(ns.to_string()),
            name: Some(svc.to_string()),
            ..ObjectMeta::default()
        },
        subsets: Some(subsets).filter(|s| !s.is_empty()),
    }
}

/// Sends the merged Endpoints of every Service whose slices change. Returns when the
/// receiver is gone.
async fn follow_slices(
    mut reflector: Reflector<EndpointSlice>,
    mut merger: SliceMerger,
    out: mpsc::Sender<Change>,
) {
    loop {
        let touched = match reflector.next().await {
            Event::Restarted(objects) | Event::LastKnown(objects) => merger.reset(objects),
            Event::Applied(object) => merger.upsert(object),
            Event::Deleted(object) => merger.remove(&object),
        };
        for change in merger.changes_for(touched) {
            if out.send(change).await.is_err() {
                return;
            }
        }
    }
}

fn key_of(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Every Service and its endpoints (from its EndpointSlices) of the cluster: `initial` holds one upsert per object of
/// the first complete lists, `changes` everything after (watch events, and the full
/// state again after each relist, with deletions for objects that went away meanwhile).
/// Consumers (the service proxy, the cluster DNS) load `initial` before serving, so a
/// restart never drops services that still exist.
pub struct ServiceWatch {
    pub initial: Vec<Change>,
    pub changes: mpsc::Receiver<Change>,
}

/// Lists Services and EndpointSlices (retrying until both lists succeed) and keeps watching
/// them in background tasks that end when `changes` is dropped. `consumer` names who
/// watches, in logs. With `last_known`, both are kept on disk, and when the server
/// cannot be reached at start the last known state stands in for the first lists.
pub async fn watch_services(
    api: Arc<dyn ListWatchApi>,
    consumer: &'static str,
    last_known: Option<&LastKnownDir>,
) -> ServiceWatch {
    let span = tracing::info_span!("service_watch", consumer);
    let mut services = Reflector::<Service>::new(api.clone(), Query::all(Service::PLURAL));
    let mut slices =
        Reflector::<EndpointSlice>::new(api, Query::all_in_group("discovery.k8s.io/v1", SLICES));
    if let Some(dir) = last_known {
        services = services.remember_in(dir.file(Service::PLURAL));
        slices = slices.remember_in(dir.file(SLICES));
    }
    let (services_now, slices_now) = async {
        let services_now = first_list(&mut services).await;
        (services_now, first_list(&mut slices).await)
    }
    .instrument(span.clone())
    .await;
    let mut merger = SliceMerger::default();
    let touched = merger.reset(slices_now);
    let initial = (services_now.into_iter().map(Followed::upserted))
        .chain(merger.changes_for(touched))
        .collect();
    let (tx, changes) = mpsc::channel(CHANGE_BUFFER);
    tokio::spawn(follow(services, tx.clone()).instrument(span.clone()));
    tokio::spawn(follow_slices(slices, merger, tx).instrument(span));
    ServiceWatch { initial, changes }
}

/// The objects of the first list (the first event of a reflector), or the last known
/// ones while the server cannot be reached.
async fn first_list<T: DeserializeOwned + Clone + Send + Sync + 'static>(
    reflector: &mut Reflector<T>,
) -> Vec<T> {
    loop {
        if let Event::Restarted(objects) | Event::LastKnown(objects) = reflector.next().await {
            return objects;
        }
    }
}

/// Sends every change `reflector` sees as [`Change`]s: after a relist, a deletion for
/// each object that went away meanwhile and the full state again. Returns when the
/// receiver is gone.
async fn follow<T: Followed>(mut reflector: Reflector<T>, out: mpsc::Sender<Change>) {
    loop {
        let changes: Vec<Change> = match reflector.next().await {
            Event::Restarted(objects) | Event::LastKnown(objects) => {
                objects.into_iter().map(T::upserted).collect()
            }
            Event::Applied(object) => vec![object.upserted()],
            Event::Deleted(object) => vec![object.deleted()],
        };
        for change in changes {
            if out.send(change).await.is_err() {
                return;
            }
        }
    }
}

impl ServiceWatch {
    /// Two watches fed from this one, for two consumers: each gets every change, in
    /// order. A slow consumer holds back the other, so both must keep reading. The
    /// copying task ends when this watch ends or both consumers are gone.
    pub fn split(self) -> (ServiceWatch, ServiceWatch) {
        let ServiceWatch {
            initial,
            mut changes,
        } = self;
        let (tx_a, rx_a) = mpsc::channel(CHANGE_BUFFER);
        let (tx_b, rx_b) = mpsc::channel(CHANGE_BUFFER);
        tokio::spawn(async move {
            let mut outputs = vec![tx_a, tx_b];
            while let Some(change) = changes.recv().await {
                let mut open = Vec::with_capacity(outputs.len());
                for tx in outputs {
                    if tx.send(change.clone()).await.is_ok() {
                        open.push(tx);
                    }
                }
                if open.is_empty() {
                    return;
                }
                outputs = open;
            }
        });
        (
            ServiceWatch {
                initial: initial.clone(),
                changes: rx_a,
            },
            ServiceWatch {
                initial,
                changes: rx_b,
            },
        )
    }
}

/// Runs the service proxy on `proxier` from `watch`, forever. The proxier's first sync
/// (a full resync) happens only once both complete lists are loaded, so a restart
/// never drops services that still exist.
pub async fn run_proxy<N: Nft + 'static>(watch: ServiceWatch, mut proxier: Proxier<N>) {
    let ServiceWatch { initial, changes } = watch;
    let objects = initial.len();
    for change in initial {
        proxier.apply_change(change);
    }
    tracing::info!(table = proxier.table(), objects, "service proxy is running");
    proxier.run(changes).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn object<T: Followed>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn objects_become_typed_changes() {
        let service: Service = object(json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"clusterIP": "10.43.0.5", "ports": [{"port": 80}]},
        }));
        assert!(matches!(
            service.upserted(),
            Change::Service(s) if s.metadata.name.as_deref() == Some("web")
        ));
    }

    fn service(name: &str) -> serde_json::Value {
        json!({"metadata": {"namespace": "ns", "name": name, "uid": name, "resourceVersion": "1"},
               "spec": {"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}})
    }

    fn describe(change: &Change) -> String {
        match change {
            Change::Service(s) => format!("service {}", s.metadata.name.as_deref().unwrap_or("")),
            Change::ServiceDeleted { name, .. } => format!("deleted service {name}"),
            Change::Endpoints(e) => {
                format!("endpoints {}", e.metadata.name.as_deref().unwrap_or(""))
            }
            Change::EndpointsDeleted { name, .. } => format!("deleted endpoints {name}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn services_gone_while_the_watch_was_expired_are_deleted_after_the_relist() {
        use crate::agent::client::fake::{Answer, FakeListWatch};
        let api = Arc::new(FakeListWatch::new());
        api.answer(
            "/api/v1/services",
            Answer::list("1", vec![service("a"), service("b")]),
        )
        .answer(
            "/apis/discovery.k8s.io/v1/endpointslices",
            Answer::list("1", vec![]),
        )
        .answer(
            "/api/v1/services",
            Answer::events([(
                "ERROR",
                json!({"kind": "Status", "code": 410, "reason": "Expired"}),
            )]),
        )
        .answer("/api/v1/services", Answer::list("7", vec![service("b")]));
        let test = async {
            let mut watch = watch_services(api.clone(), "test", None).await;
            let initial: Vec<String> = watch.initial.iter().map(describe).collect();
            assert_eq!(initial, ["service a", "service b"]);
            let mut changes = Vec::new();
            while changes.len() < 2 {
                changes.push(describe(&watch.changes.recv().await.unwrap()));
            }
            assert_eq!(changes, ["deleted service a", "service b"]);
        };
        tokio::time::timeout(Duration::from_secs(60), test)
            .await
            .expect("the service watch deadlocked");
    }

    #[tokio::test]
    async fn a_split_watch_gives_every_change_to_both_consumers() {
        let (tx, changes) = mpsc::channel(4);
        let deleted = |name: &str| Change::ServiceDeleted {
            namespace: "default".into(),
            name: name.into(),
        };
        let watch = ServiceWatch {
            initial: vec![deleted("initial")],
            changes,
        };
        let (mut a, b) = watch.split();
        assert_eq!(a.initial.len(), 1);
        assert_eq!(b.initial.len(), 1);
        drop(b);
        for name in ["one", "two"] {
            tx.send(deleted(name)).await.unwrap();
        }
        drop(tx);
        let mut seen = Vec::new();
        let drain = async {
            while let Some(Change::ServiceDeleted { name, .. }) = a.changes.recv().await {
                seen.push(name);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .expect("split watch deadlocked after one consumer left");
        assert_eq!(seen, ["one", "two"]);
    }

    fn slice(name: &str, service: Option<&str>, endpoints: serde_json::Value) -> EndpointSlice {
        let mut labels = json!({});
        if let Some(svc) = service {
            labels[SERVICE_NAME_LABEL] = json!(svc);
        }
        serde_json::from_value(json!({
            "metadata": {"namespace": "ns", "name": name, "labels": labels},
            "addressType": "IPv4",
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
            "endpoints": endpoints,
        }))
        .unwrap()
    }

    fn ips(list: &Option<Vec<EndpointAddress>>) -> Vec<&str> {
        list.iter().flatten().map(|a| a.ip.as_str()).collect()
    }

    #[test]
    fn the_slices_of_a_service_merge_into_one_endpoints_view() {
        let mut merger = SliceMerger::default();
        let a = slice(
            "web-a",
            Some("web"),
            json!([
            {"addresses": ["10.42.0.2"], "conditions": {"ready": true}, "nodeName": "n1"},
            {"addresses": ["10.42.0.3"], "conditions": {"ready": false}}]),
        );
        let b = slice("web-b", Some("web"), json!([{"addresses": ["10.42.0.4"]}]));
        assert_eq!(merger.upsert(a), [("ns".to_string(), "web".to_string())]);
        merger.upsert(b.clone());
        // A slice nobody's Service owns is ignored.
        assert!(merger.upsert(slice("stray", None, json!([]))).is_empty());
        let Change::Endpoints(ep) = merger.change_for("ns", "web") else {
            panic!("no endpoints");
        };
        let subsets = ep.subsets.unwrap();
        assert_eq!(subsets.len(), 2);
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.3"]);
        assert_eq!(
            subsets[0].addresses.as_ref().unwrap()[0]
                .node_name
                .as_deref(),
            Some("n1")
        );
        // No conditions means ready.
        assert_eq!(ips(&subsets[1].addresses), ["10.42.0.4"]);
        assert_eq!(subsets[1].ports.as_ref().unwrap()[0].port, 8080);
        // The last slice gone: the Service's endpoints are deleted.
        merger.remove(&b);
        merger.remove(&slice("web-a", Some("web"), json!([])));
        assert!(matches!(
            merger.change_for("ns", "web"),
            Change::EndpointsDeleted { namespace, name } if namespace == "ns" && name == "web"
        ));
    }

    #[test]
    fn terminating_endpoints_that_still_serve_carry_traffic_when_none_is_ready() {
        let terminating = json!({"ready": false, "serving": true, "terminating": true});
        let gone = json!({"ready": false, "serving": false, "terminating": true});
        let only_terminating = slice(
            "web-a",
            Some("web"),
            json!([
            {"addresses": ["10.42.0.2"], "conditions": terminating},
            {"addresses": ["10.42.0.3"], "conditions": gone}]),
        );
        let merged = merge_slices("ns", "web", &[&only_terminating]);
        let subsets = merged.subsets.unwrap();
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.2"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.3"]);
        // With a ready endpoint, terminating ones get no new traffic.
        let with_ready = slice(
            "web-a",
            Some("web"),
            json!([
            {"addresses": ["10.42.0.2"], "conditions": terminating},
            {"addresses": ["10.42.0.5"], "conditions": {"ready": true}}]),
        );
        let merged = merge_slices("ns", "web", &[&with_ready]);
        let subsets = merged.subsets.unwrap();
        assert_eq!(ips(&subsets[0].addresses), ["10.42.0.5"]);
        assert_eq!(ips(&subsets[0].not_ready_addresses), ["10.42.0.2"]);
    }

    #[test]
    fn a_relist_reports_services_whose_slices_went_away() {
        let mut merger = SliceMerger::default();
        merger.upsert(slice(
            "a-1",
            Some("a"),
            json!([{"addresses": ["10.42.0.2"]}]),
        ));
        merger.upsert(slice(
            "b-1",
            Some("b"),
            json!([{"addresses": ["10.42.0.3"]}]),
        ));
        let touched = merger.reset(vec![slice(
            "b-1",
            Some("b"),
            json!([{"addresses": ["10.42.0.3"]}]),
        )]);
        let changes: Vec<String> = merger.changes_for(touched).iter().map(describe).collect();
        assert_eq!(changes, ["deleted endpoints a", "endpoints b"]);
    }
}
