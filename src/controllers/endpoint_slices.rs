//! EndpointSlice controllers, as upstream's `endpointslice` and `endpointslicemirroring`
//! controllers: for every Service with a selector, slices (`discovery.k8s.io/v1`) of at
//! most 100 endpoints listing the selected pods with their ready/serving/terminating
//! conditions, node and hostname, one group of slices per resolved port set and address
//! family; for Services without a selector, the hand-made Endpoints mirrored into slices.
//! Slices carry `kubernetes.io/service-name` and `endpointslice.kubernetes.io/managed-by`
//! and are owned by their Service, so they go with it.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;

use serde_json::{json, Map, Value};

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::KeyValue;

use super::endpoints::{
    pod_has_address, pod_is_ready, resolve_target_port, service_selector, ServiceSelectors,
};
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, WorkQueue,
};
use super::ownership::owner_reference;

/// Services reconciled at once.
const WORKERS: usize = 2;
/// Endpoints per slice (upstream's `--max-endpoints-per-slice` default).
pub const MAX_ENDPOINTS_PER_SLICE: usize = 100;
pub const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";
pub const MANAGED_BY_LABEL: &str = "endpointslice.kubernetes.io/managed-by";
pub const MANAGED_BY_CONTROLLER: &str = "endpointslice-controller.k8s.io";
pub const MANAGED_BY_MIRRORING: &str = "endpointslicemirroring-controller.k8s.io";
/// Endpoints labelled so are not mirrored (upstream's `endpointslice.kubernetes.io/skip-mirror`).
const SKIP_MIRROR_LABEL: &str = "endpointslice.kubernetes.io/skip-mirror";
const HEADLESS_LABEL: &str = "service.kubernetes.io/headless";

fn services() -> &'static ResourceDef {
    resources::by_plural("", "v1", "services").expect("served")
}

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

fn endpoints() -> &'static ResourceDef {
    resources::by_plural("", "v1", "endpoints").expect("served")
}

fn slices() -> &'static ResourceDef {
    resources::by_plural("discovery.k8s.io", "v1", "endpointslices").expect("served")
}

/// The Service a slice belongs to (`namespace/name`), from its label.
fn slice_service_key(slice: &Value) -> Option<String> {
    let name = slice["metadata"]["labels"][SERVICE_NAME_LABEL].as_str()?;
    Some(format!("{}/{name}", object::namespace(slice)?))
}

/// Runs both controllers (one queue of Service keys) until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let queue = WorkQueue::new();
    let selectors = Arc::new(ServiceSelectors::default());
    let informers = [
        Informer::start(client.clone(), services(), queue.clone(), {
            let selectors = selectors.clone();
            Box::new(move |e| selectors.on_service(e))
        }),
        Informer::start(
            client.clone(),
            endpoints(),
            queue.clone(),
            Box::new(|e| vec![object_key(&e.kv.value)]),
        ),
        Informer::start(
            client.clone(),
            slices(),
            queue.clone(),
            Box::new(|e| slice_service_key(&e.kv.value).into_iter().collect()),
        ),
        Informer::start(
            client.clone(),
            pods(),
            queue.clone(),
            Box::new(move |e| selectors.selecting(e)),
        ),
    ];
    wait_for_sync(&informers).await;
    run_workers("endpointslice-controller", queue, WORKERS, move |key| {
        let client = client.clone();
        async move {
            reconcile(&*client, &key).await?;
            Ok(None)
        }
    })
    .await;
}

/// The slices of a Service one controller manages.
fn managed_slices(client: &dyn Client, ns: &str, name: &str, manager: &str) -> Vec<Value> {
    client
        .list(slices(), Some(ns), &|kv: &KeyValue| {
            let labels = &kv.value["metadata"]["labels"];
            labels[SERVICE_NAME_LABEL] == name && labels[MANAGED_BY_LABEL] == manager
        })
        .into_iter()
        .map(|kv| (*kv.value).clone())
        .collect()
}

async fn reconcile(client: &dyn Client, key: &str) -> Result<(), ApiError> {
    let (Some(ns), name) = split_key(key) else {
        return Ok(());
    };
    // ExternalName Services have no endpoints (upstream deletes their slices).
    let svc = client
        .get(services(), Some(ns), name)
        .ok()
        .filter(|s| s.value["spec"]["type"] != "ExternalName");
    let selector = svc.as_ref().and_then(|s| service_selector(&s.value));
    // Slices from pods: only for a Service with a selector.
    let desired = match (&svc, &selector) {
        (Some(svc), Some(selector)) => {
            let selected = client.list(pods(), Some(ns), &|kv: &KeyValue| {
                selector.matches(object::labels(&kv.value))
            });
            let pods: Vec<&Value> = selected.iter().map(|kv| &*kv.value).collect();
            desired_from_pods(&svc.value, &pods)
        }
        _ => Vec::new(),
    };
    let existing = managed_slices(client, ns, name, MANAGED_BY_CONTROLLER);
    sync(
        client,
        svc.as_ref().map(|s| &*s.value),
        ns,
        name,
        MANAGED_BY_CONTROLLER,
        existing,
        desired,
    )
    .await?;
    // Mirrored slices: a Service without a selector whose Endpoints are hand-made.
    let mirrored = match (&svc, &selector) {
        (Some(_), None) => client
            .get(endpoints(), Some(ns), name)
            .ok()
            .filter(|ep| ep.value["metadata"]["labels"][SKIP_MIRROR_LABEL] != "true")
            .map(|ep| desired_from_endpoints(&ep.value))
            .unwrap_or_default(),
        _ => Vec::new(),
    };
    let existing = managed_slices(client, ns, name, MANAGED_BY_MIRRORING);
    sync(
        client,
        svc.as_ref().map(|s| &*s.value),
        ns,
        name,
        MANAGED_BY_MIRRORING,
        existing,
        mirrored,
    )
    .await
}

/// Endpoints grouped by (address family, ports as JSON text): the ports and endpoints.
type Groups = BTreeMap<(&'static str, String), (Vec<Value>, Vec<Value>)>;

/// One slice's content: what the controller compares and writes.
#[derive(Debug, Clone, PartialEq)]
pub struct SliceContent {
    pub address_type: &'static str,
    pub ports: Vec<Value>,
    pub endpoints: Vec<Value>,
}

/// Writes `desired` over the `existing` slices of one manager: a slice whose content is
/// already wanted is kept untouched, others are updated in place, and slices left over
/// are deleted (so an unchanged Service writes nothing).
async fn sync(
    client: &dyn Client,
    svc: Option<&Value>,
    ns: &str,
    name: &str,
    manager: &str,
    existing: Vec<Value>,
    desired: Vec<SliceContent>,
) -> Result<(), ApiError> {
    let labels = svc.map(|s| slice_labels(s, manager)).unwrap_or_default();
    let mut spare: Vec<Value> = Vec::new();
    let mut todo: Vec<SliceContent> = Vec::new();
    let mut kept = vec![false; existing.len()];
    for content in desired {
        let same = existing.iter().enumerate().position(|(i, s)| {
            !kept[i]
                && content_of(s) == content
                && s["metadata"]["labels"] == Value::Object(labels.clone())
        });
        match same {
            Some(i) => kept[i] = true,
            None => todo.push(content),
        }
    }
    for (i, slice) in existing.into_iter().enumerate() {
        if !kept[i] {
            spare.push(slice);
        }
    }
    let Some(svc) = svc else {
        return delete_all(client, ns, spare).await;
    };
    for content in todo {
        match spare.pop() {
            Some(slice) => {
                let (labels, content) = (labels.clone(), content.clone());
                let written = client
                    .modify(slices(), Some(ns), object::name(&slice), None, &|cur| {
                        let mut next = cur.clone();
                        write_content(&mut next, &content);
                        next["metadata"]["labels"] = Value::Object(labels.clone());
                        Ok(next)
                    })
                    .await;
                match written {
                    Err(e) if e.code == 404 => {}
                    other => {
                        other?;
                    }
                }
            }
            None => {
                let mut body = json!({
                    "apiVersion": "discovery.k8s.io/v1",
                    "kind": "EndpointSlice",
                    "metadata": {
                        "generateName": format!("{}-", truncate_prefix(name)),
                        "namespace": ns,
                        "labels": labels,
                        "ownerReferences": [owner_reference(svc)],
                    },
                });
                write_content(&mut body, &content);
                match client.create(slices(), Some(ns), body).await {
                    Err(e) if e.code == 404 || e.code == 403 => return Ok(()), // namespace going away
                    other => {
                        other?;
                    }
                }
            }
        }
    }
    delete_all(client, ns, spare).await
}

async fn delete_all(
    client: &dyn Client,
    ns: &str,
    slices_to_go: Vec<Value>,
) -> Result<(), ApiError> {
    for slice in slices_to_go {
        match client
            .delete(
                slices(),
                Some(ns),
                object::name(&slice),
                &DeleteOptions::default(),
            )
            .await
        {
            Err(e) if e.code != 404 => return Err(e),
            _ => {}
        }
    }
    Ok(())
}

/// Upstream cuts long Service names so that the generated slice name stays valid.
fn truncate_prefix(name: &str) -> &str {
    match name.char_indices().nth(57) {
        Some((i, _)) => &name[..i],
        None => name,
    }
}

fn content_of(slice: &Value) -> SliceContent {
    let address_type = match slice["addressType"].as_str() {
        Some("IPv6") => "IPv6",
        Some("FQDN") => "FQDN",
        _ => "IPv4",
    };
    SliceContent {
        address_type,
        ports: slice["ports"].as_array().cloned().unwrap_or_default(),
        endpoints: slice["endpoints"].as_array().cloned().unwrap_or_default(),
    }
}

fn write_content(slice: &mut Value, content: &SliceContent) {
    slice["addressType"] = json!(content.address_type);
    slice["endpoints"] = Value::Array(content.endpoints.clone());
    slice["ports"] = Value::Array(content.ports.clone());
}

/// The Service's labels (minus the ones the controller sets), the service name, the
/// manager, and the headless marker (upstream `setEndpointSliceLabels`).
fn slice_labels(svc: &Value, manager: &str) -> Map<String, Value> {
    let mut labels = object::labels(svc).cloned().unwrap_or_default();
    labels.remove(SERVICE_NAME_LABEL);
    labels.remove(MANAGED_BY_LABEL);
    labels.remove(HEADLESS_LABEL);
    if svc["spec"]["clusterIP"] == "None" {
        labels.insert(HEADLESS_LABEL.into(), json!(""));
    }
    labels.insert(SERVICE_NAME_LABEL.into(), json!(object::name(svc)));
    labels.insert(MANAGED_BY_LABEL.into(), json!(manager));
    labels
}

fn family(ip: &str) -> Option<&'static str> {
    match ip.parse::<IpAddr>().ok()? {
        IpAddr::V4(_) => Some("IPv4"),
        IpAddr::V6(_) => Some("IPv6"),
    }
}

/// The slice port of a service port resolved to `port` on a pod.
fn slice_port(svc_port: &Value, port: Option<i64>) -> Value {
    let mut p = json!({
        "name": svc_port["name"].as_str().unwrap_or(""),
        "protocol": svc_port["protocol"].as_str().unwrap_or("TCP"),
    });
    if let Some(port) = port {
        p["port"] = json!(port);
    }
    if let Some(ap) = svc_port["appProtocol"].as_str() {
        p["appProtocol"] = json!(ap);
    }
    p
}

/// One pod's endpoint (upstream `podToEndpoint`): ready when the pod is Ready and not
/// terminating (always, with `publishNotReadyAddresses`), serving when Ready,
/// terminating while being deleted.
fn pod_endpoint(svc: &Value, pod: &Value, ip: &str) -> Value {
    let ready_condition = pod_is_ready(pod);
    let terminating = object::is_deleting(pod);
    let publish_not_ready = svc["spec"]["publishNotReadyAddresses"] == true;
    let mut endpoint = json!({
        "addresses": [ip],
        "conditions": {
            "ready": publish_not_ready || (ready_condition && !terminating),
            "serving": publish_not_ready || ready_condition,
            "terminating": terminating,
        },
        "targetRef": {
            "kind": "Pod",
            "namespace": object::namespace(pod),
            "name": object::name(pod),
            "uid": object::uid(pod),
        },
    });
    if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        endpoint["nodeName"] = json!(node);
    }
    let hostname = pod["spec"]["hostname"].as_str().unwrap_or("");
    if !hostname.is_empty() && pod["spec"]["subdomain"].as_str() == Some(object::name(svc)) {
        endpoint["hostname"] = json!(hostname);
    }
    endpoint
}

/// The slices of a Service over the pods its selector matches: one group per address
/// family and resolved port set, endpoints sorted by address, cut into slices of at most
/// [`MAX_ENDPOINTS_PER_SLICE`]. Terminating pods stay in (not ready; serving while they
/// still pass their readiness), as upstream's.
/// The address types a Service's slices carry (upstream `getAddressTypesForService`): its
/// `ipFamilies`, else the family of its cluster IP, else IPv4.
fn address_types(svc: &Value) -> Vec<&'static str> {
    let mut types: Vec<&'static str> = Vec::new();
    for family in svc["spec"]["ipFamilies"].as_array().into_iter().flatten() {
        let t = match family.as_str() {
            Some("IPv4") => "IPv4",
            Some("IPv6") => "IPv6",
            _ => continue,
        };
        if !types.contains(&t) {
            types.push(t);
        }
    }
    if types.is_empty() {
        let cluster_ip = svc["spec"]["clusterIP"].as_str().unwrap_or_default();
        types.push(family(cluster_ip).unwrap_or("IPv4"));
    }
    types
}

/// The slices a selector Service wants from its pods: endpoints of the Service's address
/// types only, and, as upstream, an empty placeholder slice for each address type that
/// has no endpoint (so `kubectl get endpointslices` lists every such Service).
pub fn desired_from_pods(svc: &Value, pods: &[&Value]) -> Vec<SliceContent> {
    let types = address_types(svc);
    let mut slices = slices_from_pods(svc, pods, &types);
    for address_type in types {
        if !slices.iter().any(|s| s.address_type == address_type) {
            slices.push(SliceContent {
                address_type,
                ports: Vec::new(),
                endpoints: Vec::new(),
            });
        }
    }
    slices
}

fn slices_from_pods(svc: &Value, pods: &[&Value], types: &[&'static str]) -> Vec<SliceContent> {
    let svc_ports: Vec<&Value> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let mut groups = Groups::new();
    for pod in pods.iter().filter(|p| pod_has_address(p)) {
        let mut ports: Vec<Value> = svc_ports
            .iter()
            .filter_map(|sp| resolve_target_port(sp, pod).map(|port| slice_port(sp, Some(port))))
            .collect();
        if ports.is_empty() && !svc_ports.is_empty() {
            continue;
        }
        ports.sort_by_key(|p| p.to_string());
        let ips = pod_ips(pod);
        for ip in ips {
            let Some(family) = family(&ip).filter(|f| types.contains(f)) else {
                continue;
            };
            let group = groups
                .entry((family, Value::Array(ports.clone()).to_string()))
                .or_insert_with(|| (ports.clone(), Vec::new()));
            group.1.push(pod_endpoint(svc, pod, &ip));
        }
    }
    chunk(groups)
}

/// Every IP of a pod (`status.podIPs`, else `status.podIP`), one per family.
fn pod_ips(pod: &Value) -> Vec<String> {
    let mut ips: Vec<String> = pod["status"]["podIPs"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["ip"].as_str().map(str::to_string))
        .collect();
    if ips.is_empty() {
        ips.extend(pod["status"]["podIP"].as_str().map(str::to_string));
    }
    ips.retain(|ip| !ip.is_empty());
    ips
}

fn chunk(groups: Groups) -> Vec<SliceContent> {
    let address = |e: &Value| {
        e["addresses"][0]
            .as_str()
            .and_then(|a| a.parse::<IpAddr>().ok())
    };
    let mut out = Vec::new();
    for ((address_type, _), (ports, mut endpoints)) in groups {
        endpoints.sort_by(|a, b| {
            address(a).cmp(&address(b)).then_with(|| {
                a["targetRef"]["uid"]
                    .as_str()
                    .cmp(&b["targetRef"]["uid"].as_str())
            })
        });
        for part in endpoints.chunks(MAX_ENDPOINTS_PER_SLICE) {
            out.push(SliceContent {
                address_type,
                ports: ports.clone(),
                endpoints: part.to_vec(),
            });
        }
    }
    out
}

/// Hand-made Endpoints as slices (upstream's mirroring): each subset's addresses ready,
/// its not-ready addresses not, grouped by family and ports.
pub fn desired_from_endpoints(ep: &Value) -> Vec<SliceContent> {
    let mut groups = Groups::new();
    for subset in ep["subsets"].as_array().into_iter().flatten() {
        let mut ports: Vec<Value> = subset["ports"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| slice_port(p, p["port"].as_i64()))
            .collect();
        ports.sort_by_key(|p| p.to_string());
        for (list, ready) in [("addresses", true), ("notReadyAddresses", false)] {
            for addr in subset[list].as_array().into_iter().flatten() {
                let Some(ip) = addr["ip"].as_str() else {
                    continue;
                };
                let Some(family) = family(ip) else { continue };
                let mut endpoint = json!({
                    "addresses": [ip],
                    "conditions": {"ready": ready, "serving": ready, "terminating": false},
                });
                for field in ["nodeName", "hostname", "targetRef"] {
                    if !addr[field].is_null() {
                        endpoint[field] = addr[field].clone();
                    }
                }
                let group = groups
                    .entry((family, Value::Array(ports.clone()).to_string()))
                    .or_insert_with(|| (ports.clone(), Vec::new()));
                group.1.push(endpoint);
            }
        }
    }
    chunk(groups)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::controllers::testutil::{self, wait_for};
    use std::time::Duration;

    fn pod(name: &str, ip: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"),
                            "labels": {"app": "web"}},
               "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox",
                        "ports": [{"name": "http", "containerPort": 8080}]}]},
               "status": {"podIP": ip, "phase": "Running",
                          "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]}})
    }

    fn service() -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "uid": "svc-uid",
                            "labels": {"team": "a"}},
               "spec": {"selector": {"app": "web"}, "clusterIP": "10.43.0.10",
                        "ports": [{"name": "http", "port": 80, "targetPort": "http"}]}})
    }

    #[test]
    fn pods_become_endpoints_with_conditions_and_resolved_ports() {
        let svc = service();
        let a = pod("a", "10.42.0.12", true);
        let b = pod("b", "10.42.0.3", false);
        let mut c = pod("c", "10.42.0.4", true);
        c["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        let slices = desired_from_pods(&svc, &[&a, &b, &c]);
        assert_eq!(slices.len(), 1);
        let s = &slices[0];
        assert_eq!(s.address_type, "IPv4");
        assert_eq!(
            s.ports,
            vec![json!({"name": "http", "protocol": "TCP", "port": 8080})]
        );
        let addrs: Vec<&str> = s
            .endpoints
            .iter()
            .map(|e| e["addresses"][0].as_str().unwrap())
            .collect();
        assert_eq!(addrs, ["10.42.0.3", "10.42.0.4", "10.42.0.12"]);
        assert_eq!(
            s.endpoints[0]["conditions"],
            json!({"ready": false, "serving": false, "terminating": false})
        );
        // Terminating but still passing readiness: serving, not ready.
        assert_eq!(
            s.endpoints[1]["conditions"],
            json!({"ready": false, "serving": true, "terminating": true})
        );
        assert_eq!(
            s.endpoints[2]["conditions"],
            json!({"ready": true, "serving": true, "terminating": false})
        );
        assert_eq!(s.endpoints[2]["nodeName"], "n1");
        assert_eq!(s.endpoints[2]["targetRef"]["name"], "a");
    }

    #[test]
    fn more_than_a_hundred_pods_take_several_slices_and_families_split() {
        let mut svc = service();
        svc["spec"]["ipFamilies"] = json!(["IPv4", "IPv6"]);
        let pods: Vec<Value> = (0..250)
            .map(|i| {
                pod(
                    &format!("p{i}"),
                    &format!("10.42.{}.{}", i / 200, i % 200 + 1),
                    true,
                )
            })
            .collect();
        let mut v6 = pod("six", "fd00::5", true);
        v6["metadata"]["uid"] = json!("uid-six");
        let mut refs: Vec<&Value> = pods.iter().collect();
        refs.push(&v6);
        let slices = desired_from_pods(&svc, &refs);
        let sizes: Vec<(&str, usize)> = slices
            .iter()
            .map(|s| (s.address_type, s.endpoints.len()))
            .collect();
        assert_eq!(
            sizes,
            [("IPv4", 100), ("IPv4", 100), ("IPv4", 50), ("IPv6", 1)]
        );
    }

    #[test]
    fn a_family_without_endpoints_gets_a_placeholder_and_other_families_stay_out() {
        // No pod with an address: one empty IPv4 slice (the cluster IP's family).
        let svc = service();
        let pending = json!({"metadata": {"name": "p", "labels": {"app": "web"}},
                             "spec": {"containers": [{"name": "c"}]}, "status": {}});
        let slices = desired_from_pods(&svc, &[&pending]);
        assert_eq!(
            slices,
            [SliceContent {
                address_type: "IPv4",
                ports: vec![],
                endpoints: vec![]
            }]
        );
        // A single-stack IPv4 Service leaves a pod's IPv6 address out.
        let six = pod("six", "fd00::5", true);
        let slices = desired_from_pods(&svc, &[&six]);
        assert_eq!(slices.len(), 1);
        assert!(slices[0].endpoints.is_empty());
        // Dual stack with IPv4 pods only: the IPv6 family gets the placeholder.
        let mut dual = service();
        dual["spec"]["ipFamilies"] = json!(["IPv4", "IPv6"]);
        let four = pod("four", "10.42.0.9", true);
        let types: Vec<(&str, usize)> = desired_from_pods(&dual, &[&four])
            .iter()
            .map(|s| (s.address_type, s.endpoints.len()))
            .collect();
        assert_eq!(types, [("IPv4", 1), ("IPv6", 0)]);
        // An IPv6 cluster IP without ipFamilies (an old object) means IPv6.
        let mut v6 = service();
        v6["spec"]["clusterIP"] = json!("fd00:43::10");
        assert_eq!(desired_from_pods(&v6, &[])[0].address_type, "IPv6");
    }

    #[test]
    fn hostnames_are_published_for_pods_in_the_services_subdomain() {
        let svc = service();
        let mut a = pod("web-0", "10.42.0.5", true);
        a["spec"]["hostname"] = json!("web-0");
        a["spec"]["subdomain"] = json!("web");
        let mut b = pod("other", "10.42.0.6", true);
        b["spec"]["hostname"] = json!("other");
        b["spec"]["subdomain"] = json!("elsewhere");
        let slices = desired_from_pods(&svc, &[&a, &b]);
        assert_eq!(slices[0].endpoints[0]["hostname"], "web-0");
        assert!(slices[0].endpoints[1].get("hostname").is_none());
    }

    #[test]
    fn hand_made_endpoints_are_mirrored() {
        let ep = json!({"subsets": [{"addresses": [{"ip": "192.168.1.10"}],
                                     "notReadyAddresses": [{"ip": "192.168.1.11"}],
                                     "ports": [{"name": "db", "port": 5432}]}]});
        let slices = desired_from_endpoints(&ep);
        assert_eq!(slices.len(), 1);
        assert_eq!(slices[0].endpoints.len(), 2);
        assert_eq!(slices[0].endpoints[0]["conditions"]["ready"], true);
        assert_eq!(slices[0].endpoints[1]["conditions"]["ready"], false);
        assert_eq!(slices[0].ports[0]["port"], 5432);
    }

    async fn put(registry: &Registry, def: &ResourceDef, body: Value) {
        registry
            .create(def, Some("default"), body, &WriteOptions::default())
            .await
            .expect("create");
    }

    fn slices_of(registry: &Registry, manager: &str) -> Vec<Value> {
        managed_slices(registry, "default", "web", manager)
    }

    #[tokio::test(start_paused = true)]
    async fn slices_follow_pods_and_go_with_their_service() {
        let registry = testutil::registry().await;
        let client: Arc<dyn Client> = registry.clone();
        let task = tokio::spawn(run(client));
        put(
            &registry,
            services(),
            json!({"apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "labels": {"team": "a"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8080}]}}),
        )
        .await;
        wait_for("the placeholder slice", Duration::from_secs(10), || {
            slices_of(&registry, MANAGED_BY_CONTROLLER)
                .first()
                .is_some_and(|s| s["endpoints"] == json!([]) && s["addressType"] == "IPv4")
        })
        .await;
        let mut p = pod("a", "10.42.0.7", true);
        p["metadata"].as_object_mut().unwrap().remove("uid");
        p["apiVersion"] = json!("v1");
        p["kind"] = json!("Pod");
        let status = p["status"].clone();
        put(&registry, pods(), p).await;
        let mut current = (*registry.get(pods(), Some("default"), "a").unwrap().value).clone();
        current["status"] = status;
        registry
            .update(
                pods(),
                Some("default"),
                "a",
                current,
                Some("status"),
                &WriteOptions::default(),
            )
            .await
            .expect("status");
        wait_for("a slice with the pod", Duration::from_secs(10), || {
            slices_of(&registry, MANAGED_BY_CONTROLLER)
                .first()
                .is_some_and(|s| s["endpoints"][0]["addresses"][0] == "10.42.0.7")
        })
        .await;
        let slice = slices_of(&registry, MANAGED_BY_CONTROLLER).remove(0);
        assert_eq!(slice["metadata"]["labels"]["team"], "a");
        assert_eq!(slice["metadata"]["ownerReferences"][0]["kind"], "Service");
        assert_eq!(slice["ports"][0]["port"], 8080);
        // Deleting the Service takes its slices (the garbage collector is not running
        // here: the controller deletes them itself).
        registry
            .delete(
                services(),
                Some("default"),
                "web",
                &DeleteOptions::default(),
            )
            .await
            .expect("delete service");
        wait_for("no slices", Duration::from_secs(10), || {
            slices_of(&registry, MANAGED_BY_CONTROLLER).is_empty()
        })
        .await;
        task.abort();
    }
}
