//! Endpoints controller: keeps one Endpoints object per Service with a selector, listing
//! the IPs of the selected pods (ready ones in `addresses`, others in
//! `notReadyAddresses`) with the service ports resolved per pod.
//!
//! Services without a selector are left alone (their Endpoints are user-managed); the
//! `kubernetes` Service in `default` is maintained by bootstrap.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use serde_json::{json, Map, Value};

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::{Event, EventType, KeyValue};

use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, WorkQueue,
};

/// Services reconciled at once.
const WORKERS: usize = 2;
/// Label upstream puts on the Endpoints of headless services.
const LABEL_HEADLESS: &str = "service.kubernetes.io/headless";

fn services() -> &'static ResourceDef {
    resources::by_plural("", "v1", "services").expect("served")
}

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

fn endpoints() -> &'static ResourceDef {
    resources::by_plural("", "v1", "endpoints").expect("served")
}

/// The selector of a Service, None when it has none (user-managed endpoints).
pub(crate) fn service_selector(svc: &Value) -> Option<LabelSelector> {
    svc["spec"]["selector"]
        .as_object()
        .filter(|m| !m.is_empty())
        .map(LabelSelector::from_map)
}

/// Whether bootstrap, not this controller, owns the Service's endpoints.
fn is_bootstrap_managed(ns: &str, name: &str) -> bool {
    ns == "default" && name == "kubernetes"
}

/// The selectors of the Services that have one, by namespace and name, kept from the
/// Service informer's events: a pod event is matched against them without listing (and
/// parsing) Services, and without parsing the pod's versions when no Service of its
/// namespace has a selector. It may lag the store by a Service event; that event
/// enqueues the Service itself, so no change is missed.
#[derive(Default)]
pub(crate) struct ServiceSelectors {
    by_namespace: Mutex<HashMap<String, BTreeMap<String, LabelSelector>>>,
}

impl ServiceSelectors {
    /// Follows a Service event; the key to enqueue for it.
    pub(crate) fn on_service(&self, event: &Event) -> Vec<String> {
        let svc = &event.kv.value;
        let key = object_key(svc);
        let ns = object::namespace(svc).unwrap_or("").to_string();
        let name = object::name(svc).to_string();
        let selector = match event.kind {
            EventType::Deleted => None,
            EventType::Added | EventType::Modified => service_selector(svc),
        };
        let mut by_namespace = self.by_namespace.lock().unwrap_or_else(|e| e.into_inner());
        match selector {
            Some(selector) => {
                by_namespace.entry(ns).or_default().insert(name, selector);
            }
            None => {
                if let Some(names) = by_namespace.get_mut(&ns) {
                    names.remove(&name);
                    if names.is_empty() {
                        by_namespace.remove(&ns);
                    }
                }
            }
        }
        vec![key]
    }

    /// Keys of the Services that select the pod of `event` (either of its versions).
    pub(crate) fn selecting(&self, event: &Event) -> Vec<String> {
        // The namespace from the datastore key `/core/pods/<namespace>/<name>`.
        let ns = match event.kv.key.split('/').nth(3) {
            Some(ns) => ns.to_string(),
            None => object::namespace(&event.kv.value).unwrap_or("").to_string(),
        };
        let by_namespace = self.by_namespace.lock().unwrap_or_else(|e| e.into_inner());
        let Some(names) = by_namespace.get(&ns) else {
            return vec![];
        };
        let mut versions = vec![event.kv.value.get()];
        if let Some(prev) = &event.prev {
            versions.push(prev.value.get());
        }
        names
            .iter()
            .filter(|(_, sel)| versions.iter().any(|p| sel.matches(object::labels(p))))
            .map(|(name, _)| format!("{ns}/{name}"))
            .collect()
    }
}

/// Runs the controller until aborted.
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
            pods(),
            queue.clone(),
            Box::new(move |e| selectors.selecting(e)),
        ),
    ];
    wait_for_sync(&informers).await;
    run_workers("endpoints-controller", queue, WORKERS, move |key| {
        let client = client.clone();
        async move {
            reconcile(&*client, &key).await?;
            Ok(None)
        }
    })
    .await;
}

async fn reconcile(client: &dyn Client, key: &str) -> Result<(), ApiError> {
    let (Some(ns), name) = split_key(key) else {
        return Ok(());
    };
    if is_bootstrap_managed(ns, name) {
        return Ok(());
    }
    let existing = client.get(endpoints(), Some(ns), name).ok();
    let Ok(svc) = client.get(services(), Some(ns), name) else {
        if existing.is_some() {
            return match client
                .delete(endpoints(), Some(ns), name, &DeleteOptions::default())
                .await
            {
                Err(e) if e.code != 404 => Err(e),
                _ => Ok(()),
            };
        }
        return Ok(());
    };
    let Some(selector) = service_selector(&svc.value) else {
        return Ok(());
    };
    let selected = client.list(pods(), Some(ns), &|kv: &KeyValue| {
        selector.matches(object::labels(&kv.value))
    });
    let pods: Vec<&Value> = selected.iter().map(|kv| &*kv.value).collect();
    let subsets = desired_subsets(&svc.value, &pods);
    let labels = desired_labels(&svc.value);
    match existing {
        None => {
            let body = json!({
                "apiVersion": "v1",
                "kind": "Endpoints",
                "metadata": {"name": name, "namespace": ns, "labels": labels},
                "subsets": subsets,
            });
            match client.create(endpoints(), Some(ns), body).await {
                Err(e) if e.code == 409 => Err(e), // created meanwhile: retry as an update
                Err(e) if e.code == 404 || e.code == 403 => Ok(()), // namespace going away
                other => other.map(|_| ()),
            }
        }
        Some(ep) => {
            if same_subsets(&ep.value["subsets"], &subsets)
                && ep.value["metadata"]["labels"] == Value::Object(labels.clone())
            {
                return Ok(());
            }
            client
                .modify(endpoints(), Some(ns), name, None, &|cur| {
                    let mut cur = cur.clone();
                    cur["subsets"] = subsets.clone();
                    cur["metadata"]["labels"] = Value::Object(labels.clone());
                    Ok(cur)
                })
                .await
                .map(|_| ())
        }
    }
}

/// Missing, null and empty subsets all mean "no endpoints".
fn same_subsets(current: &Value, desired: &Value) -> bool {
    let empty = |v: &Value| v.as_array().is_none_or(|a| a.is_empty());
    (empty(current) && empty(desired)) || current == desired
}

/// The Service's labels, plus the headless marker upstream adds.
fn desired_labels(svc: &Value) -> Map<String, Value> {
    let mut labels = object::labels(svc).cloned().unwrap_or_default();
    if svc["spec"]["clusterIP"] == "None" {
        labels.insert(LABEL_HEADLESS.into(), json!(""));
    } else {
        labels.remove(LABEL_HEADLESS);
    }
    labels
}

/// Whether the pod counts as ready for the service's endpoints.
pub(crate) fn pod_is_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Whether the pod belongs in the endpoints at all (upstream `ShouldPodBeInEndpoints`
/// without terminating endpoints): it has an IP, is not being deleted and not finished.
fn pod_has_endpoint(pod: &Value) -> bool {
    pod_has_address(pod) && !object::is_deleting(pod)
}

/// Upstream `ShouldPodBeInEndpoints` with terminating endpoints (EndpointSlices): the
/// pod has an IP and has not finished.
pub(crate) fn pod_has_address(pod: &Value) -> bool {
    let has_ip = pod["status"]["podIP"]
        .as_str()
        .is_some_and(|ip| !ip.is_empty());
    let finished = match pod["status"]["phase"].as_str() {
        Some("Failed") => true,
        Some("Succeeded") => pod["spec"]["restartPolicy"].as_str() != Some("Always"),
        _ => false,
    };
    has_ip && !finished
}

/// The container port a service port's `targetPort` means for this pod: a number as
/// is, a name looked up among the pod's container ports (same protocol).
pub(crate) fn resolve_target_port(svc_port: &Value, pod: &Value) -> Option<i64> {
    let protocol = svc_port["protocol"].as_str().unwrap_or("TCP");
    match &svc_port["targetPort"] {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if !s.is_empty() => {
            if let Ok(n) = s.parse::<i64>() {
                return Some(n);
            }
            let containers = pod["spec"]["containers"].as_array().into_iter().flatten();
            containers
                .flat_map(|c| c["ports"].as_array().into_iter().flatten())
                .find(|p| {
                    p["name"] == s.as_str() && p["protocol"].as_str().unwrap_or("TCP") == protocol
                })
                .and_then(|p| p["containerPort"].as_i64())
        }
        _ => svc_port["port"].as_i64(),
    }
}

fn endpoint_address(svc: &Value, pod: &Value) -> Value {
    let mut addr = json!({
        "ip": pod["status"]["podIP"],
        "targetRef": {
            "kind": "Pod",
            "namespace": object::namespace(pod),
            "name": object::name(pod),
            "uid": object::uid(pod),
        },
    });
    if let Some(node) = pod["spec"]["nodeName"].as_str().filter(|n| !n.is_empty()) {
        addr["nodeName"] = json!(node);
    }
    let hostname = pod["spec"]["hostname"].as_str().unwrap_or("");
    if !hostname.is_empty() && pod["spec"]["subdomain"].as_str() == Some(object::name(svc)) {
        addr["hostname"] = json!(hostname);
    }
    addr
}

/// The subsets for a Service over the pods its selector matches: pods are grouped by
/// identical resolved port sets (upstream `RepackSubsets`), addresses sorted by IP.
pub fn desired_subsets(svc: &Value, pods: &[&Value]) -> Value {
    let svc_ports: Vec<&Value> = svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .collect();
    let publish_not_ready = svc["spec"]["publishNotReadyAddresses"] == true;
    // Resolved port set (as JSON text, for ordering) → (ports, ready, not ready).
    type Group = (Vec<Value>, Vec<Value>, Vec<Value>);
    let mut groups: BTreeMap<String, Group> = BTreeMap::new();
    for pod in pods.iter().filter(|p| pod_has_endpoint(p)) {
        let mut ports: Vec<Value> = svc_ports
            .iter()
            .filter_map(|sp| {
                let port = resolve_target_port(sp, pod)?;
                let mut p = json!({
                    "port": port,
                    "protocol": sp["protocol"].as_str().unwrap_or("TCP"),
                });
                if let Some(name) = sp["name"].as_str().filter(|n| !n.is_empty()) {
                    p["name"] = json!(name);
                }
                if let Some(ap) = sp["appProtocol"].as_str() {
                    p["appProtocol"] = json!(ap);
                }
                Some(p)
            })
            .collect();
        // A pod none of whose ports resolve is left out; a service without ports
        // still lists its pods (headless services).
        if ports.is_empty() && !svc_ports.is_empty() {
            tracing::debug!(pod = %object_key(pod), "no service port resolves on this pod");
            continue;
        }
        ports.sort_by_key(|p| p.to_string());
        let group = groups
            .entry(Value::Array(ports.clone()).to_string())
            .or_insert_with(|| (ports, vec![], vec![]));
        let addr = endpoint_address(svc, pod);
        if publish_not_ready || pod_is_ready(pod) {
            group.1.push(addr);
        } else {
            group.2.push(addr);
        }
    }
    let by_ip = |a: &Value, b: &Value| {
        let ip = |v: &Value| {
            v["ip"]
                .as_str()
                .and_then(|s| s.parse::<std::net::IpAddr>().ok())
        };
        ip(a).cmp(&ip(b)).then_with(|| {
            a["targetRef"]["uid"]
                .as_str()
                .cmp(&b["targetRef"]["uid"].as_str())
        })
    };
    let subsets: Vec<Value> = groups
        .into_values()
        .map(|(ports, mut ready, mut not_ready)| {
            ready.sort_by(by_ip);
            not_ready.sort_by(by_ip);
            let mut subset = Map::new();
            if !ready.is_empty() {
                subset.insert("addresses".into(), Value::Array(ready));
            }
            if !not_ready.is_empty() {
                subset.insert("notReadyAddresses".into(), Value::Array(not_ready));
            }
            if !ports.is_empty() {
                subset.insert("ports".into(), Value::Array(ports));
            }
            Value::Object(subset)
        })
        .collect();
    Value::Array(subsets)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::controllers::testutil::{self, wait_for};
    use std::time::Duration;

    fn pod(name: &str, ip: &str, ready: bool, ports: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}"), "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": [{"name": "c", "image": "busybox", "ports": ports}]},
            "status": {"podIP": ip, "phase": "Running", "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}]},
        })
    }

    fn event(kind: EventType, key: &str, obj: Value, prev: Option<Value>) -> Event {
        Event {
            kind,
            kv: KeyValue::unstored(key, obj),
            prev: prev.map(|p| KeyValue::unstored(key, p)),
        }
    }

    #[test]
    fn pod_events_enqueue_the_services_selecting_either_version() {
        let selectors = ServiceSelectors::default();
        let svc = |name: &str, selector: Value| json!({"metadata": {"name": name, "namespace": "default"}, "spec": {"selector": selector}});
        let added = |name: &str, obj: Value| {
            event(
                EventType::Added,
                &format!("/core/services/default/{name}"),
                obj,
                None,
            )
        };
        assert_eq!(
            selectors.on_service(&added("web", svc("web", json!({"app": "web"})))),
            ["default/web"]
        );
        selectors.on_service(&added("db", svc("db", json!({"app": "db"}))));
        // No selector: user-managed endpoints, never matched.
        selectors.on_service(&added("kubernetes", svc("kubernetes", json!({}))));
        let labelled = |app: &str| json!({"metadata": {"name": "p", "namespace": "default", "labels": {"app": app}}});
        let key = "/core/pods/default/p";
        let created = event(EventType::Added, key, labelled("web"), None);
        assert_eq!(selectors.selecting(&created), ["default/web"]);
        let relabelled = event(
            EventType::Modified,
            key,
            labelled("db"),
            Some(labelled("web")),
        );
        assert_eq!(
            selectors.selecting(&relabelled),
            ["default/db", "default/web"]
        );
        let elsewhere = event(
            EventType::Added,
            "/core/pods/other/p",
            json!({"metadata": {"name": "p", "namespace": "other", "labels": {"app": "web"}}}),
            None,
        );
        assert!(selectors.selecting(&elsewhere).is_empty());
        // A selector removed, and a Service deleted, select no more.
        selectors.on_service(&event(
            EventType::Modified,
            "/core/services/default/web",
            svc("web", json!({})),
            None,
        ));
        selectors.on_service(&event(
            EventType::Deleted,
            "/core/services/default/db",
            svc("db", json!({"app": "db"})),
            None,
        ));
        assert!(selectors.selecting(&relabelled).is_empty());
    }

    fn service(target_port: Value) -> Value {
        json!({
            "apiVersion": "v1", "kind": "Service",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80, "protocol": "TCP", "targetPort": target_port}]},
        })
    }

    #[test]
    fn named_target_port_groups_pods_by_resolved_port() {
        let a = pod(
            "a",
            "10.42.0.2",
            true,
            json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
        );
        let b = pod(
            "b",
            "10.42.0.3",
            false,
            json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]),
        );
        let c = pod(
            "c",
            "10.42.0.4",
            true,
            json!([{"name": "http", "containerPort": 9090, "protocol": "TCP"}]),
        );
        let d = pod(
            "d",
            "10.42.0.5",
            true,
            json!([{"name": "other", "containerPort": 1, "protocol": "TCP"}]),
        );
        let subsets = desired_subsets(&service(json!("http")), &[&c, &b, &a, &d]);
        assert_eq!(
            subsets,
            json!([
                {
                    "addresses": [{"ip": "10.42.0.2", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "a", "uid": "uid-a"}}],
                    "notReadyAddresses": [{"ip": "10.42.0.3", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "b", "uid": "uid-b"}}],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                },
                {
                    "addresses": [{"ip": "10.42.0.4", "nodeName": "n1", "targetRef": {"kind": "Pod", "namespace": "default", "name": "c", "uid": "uid-c"}}],
                    "ports": [{"name": "http", "port": 9090, "protocol": "TCP"}],
                },
            ])
        );
    }

    #[test]
    fn terminating_and_ip_less_pods_are_left_out() {
        let mut gone = pod("a", "10.42.0.2", true, json!([]));
        gone["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        let no_ip = pod("b", "", true, json!([]));
        assert_eq!(
            desired_subsets(&service(json!(80)), &[&gone, &no_ip]),
            json!([])
        );
    }

    async fn create_pod(registry: &Registry, name: &str, ip: &str, ready: bool) {
        let ports = json!([{"name": "http", "containerPort": 8080, "protocol": "TCP"}]);
        registry
            .create(
                pods(),
                Some("default"),
                pod(name, "", ready, ports),
                &WriteOptions::default(),
            )
            .await
            .expect("create pod");
        set_pod_status(registry, name, ip, ready).await;
    }

    /// What a kubelet reports once the pod runs.
    async fn set_pod_status(registry: &Registry, name: &str, ip: &str, ready: bool) {
        registry
            .modify(
                pods(),
                Some("default"),
                name,
                Some("status"),
                &WriteOptions::default(),
                &|p| {
                    let mut p = p.clone();
                    p["status"]["podIP"] = json!(ip);
                    p["status"]["phase"] = json!("Running");
                    p["status"]["conditions"] =
                        json!([{"type": "Ready", "status": if ready {"True"} else {"False"}}]);
                    Ok(p)
                },
            )
            .await
            .expect("pod status");
    }

    fn subsets_of(registry: &Registry) -> Option<Value> {
        registry
            .get(endpoints(), Some("default"), "web")
            .ok()
            .map(|kv| kv.value["subsets"].clone())
    }

    /// Addresses of the `web` endpoints in `field` (`addresses`, `notReadyAddresses`).
    fn ips(registry: &Registry, field: &str) -> Vec<String> {
        subsets_of(registry)
            .and_then(|s| s.as_array().cloned())
            .unwrap_or_default()
            .iter()
            .flat_map(|s| s[field].as_array().cloned().unwrap_or_default())
            .map(|a| a["ip"].as_str().unwrap_or("").to_string())
            .collect()
    }

    /// The controller running, a ready pod `a` and a not-ready pod `b` behind the
    /// `web` Service, once their endpoints are listed.
    async fn service_with_two_pods() -> (Arc<Registry>, tokio::task::JoinHandle<()>) {
        let registry = testutil::registry().await;
        let task = tokio::spawn(run(registry.clone()));
        create_pod(&registry, "a", "10.42.0.2", true).await;
        create_pod(&registry, "b", "10.42.0.3", false).await;
        registry
            .create(
                services(),
                Some("default"),
                service(json!("http")),
                &WriteOptions::default(),
            )
            .await
            .expect("create service");
        wait_for("ready and not-ready addresses", WAIT, || {
            ips(&registry, "addresses") == ["10.42.0.2"]
                && ips(&registry, "notReadyAddresses") == ["10.42.0.3"]
        })
        .await;
        (registry, task)
    }

    const WAIT: Duration = Duration::from_secs(1);

    #[tokio::test(start_paused = true)]
    async fn endpoints_list_selected_pods_with_named_ports_resolved() {
        let (registry, task) = service_with_two_pods().await;
        let ep = subsets_of(&registry).expect("endpoints");
        assert_eq!(
            ep[0]["ports"],
            json!([{"name": "http", "port": 8080, "protocol": "TCP"}])
        );
        assert_eq!(ep[0]["addresses"][0]["targetRef"]["name"], "a");
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_turning_ready_moves_to_addresses() {
        let (registry, task) = service_with_two_pods().await;
        set_pod_status(&registry, "b", "10.42.0.3", true).await;
        wait_for("pod b ready", WAIT, || {
            ips(&registry, "addresses") == ["10.42.0.2", "10.42.0.3"]
                && ips(&registry, "notReadyAddresses").is_empty()
        })
        .await;
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_pod_change_that_moves_no_address_writes_nothing() {
        let (registry, task) = service_with_two_pods().await;
        let rv = registry
            .get(endpoints(), Some("default"), "web")
            .unwrap()
            .mod_revision;
        registry
            .modify(
                pods(),
                Some("default"),
                "a",
                None,
                &WriteOptions::default(),
                &|p| {
                    let mut p = p.clone();
                    p["metadata"]["annotations"] = json!({"touched": "yes"});
                    Ok(p)
                },
            )
            .await
            .unwrap();
        // On the paused clock every task runs until idle before this sleep ends.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            registry
                .get(endpoints(), Some("default"), "web")
                .unwrap()
                .mod_revision,
            rv,
            "no write when nothing changed"
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_pod_leaves_the_endpoints() {
        let (registry, task) = service_with_two_pods().await;
        let now = DeleteOptions {
            grace_period: Some(0),
            ..Default::default()
        };
        registry
            .delete(pods(), Some("default"), "a", &now)
            .await
            .unwrap();
        wait_for("pod a gone", WAIT, || {
            ips(&registry, "addresses").is_empty()
                && ips(&registry, "notReadyAddresses") == ["10.42.0.3"]
        })
        .await;
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn endpoints_go_with_their_service() {
        let (registry, task) = service_with_two_pods().await;
        registry
            .delete(
                services(),
                Some("default"),
                "web",
                &DeleteOptions::default(),
            )
            .await
            .unwrap();
        wait_for("endpoints deleted", WAIT, || {
            subsets_of(&registry).is_none()
        })
        .await;
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn services_without_selector_keep_user_endpoints() {
        let registry = testutil::registry().await;
        let task = tokio::spawn(run(registry.clone()));
        let mut svc = service(json!(80));
        svc["spec"].as_object_mut().unwrap().remove("selector");
        registry
            .create(services(), Some("default"), svc, &WriteOptions::default())
            .await
            .unwrap();
        let ep = json!({"apiVersion": "v1", "kind": "Endpoints", "metadata": {"name": "web", "namespace": "default"},
            "subsets": [{"addresses": [{"ip": "192.0.2.1"}], "ports": [{"port": 80, "protocol": "TCP"}]}]});
        registry
            .create(endpoints(), Some("default"), ep, &WriteOptions::default())
            .await
            .unwrap();
        // On the paused clock every task runs until idle before this sleep ends.
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            subsets_of(&registry).unwrap()[0]["addresses"][0]["ip"],
            "192.0.2.1"
        );
        task.abort();
    }
}
