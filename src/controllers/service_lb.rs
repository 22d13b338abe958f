//! ServiceLB: the built-in load balancer for Services of type LoadBalancer (k3s'
//! ServiceLB, without its pods). A Service without `spec.loadBalancerClass` gets the
//! addresses of the load-balancer nodes in `status.loadBalancer.ingress`; the nftables
//! proxy of every node then answers on those addresses and the Service ports.
//!
//! Nodes: the Ready ones, not being deleted, without upstream's
//! `node.kubernetes.io/exclude-from-external-load-balancers` label; when any node is
//! labelled `svccontroller.orc.io/enablelb=true`, only the nodes so labelled (k3s'
//! `svccontroller.k3s.cattle.io/enablelb`). Every Service uses the same nodes, so two
//! Services asking for one port and protocol cannot both have it: the one holding it
//! (an address in its status; else the older) keeps it, the other stays pending (empty
//! status) with a Warning event naming the holder, and gets the port once it is free.
//!
//! The decisions are one pure function over all Services and Nodes ([`plan`]); the
//! controller writes the status of the Service it reconciles when it differs.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::store::{Event, KeyValue};

use super::events::{Recorder, NORMAL, WARNING};
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, WorkQueue,
};

/// Services reconciled at once.
const WORKERS: usize = 1;
/// When any node has this label set to `true`, only those nodes carry load balancers.
pub const ENABLE_LB_LABEL: &str = "svccontroller.orc.io/enablelb";
/// Upstream's label keeping a node out of every external load balancer.
pub const EXCLUDE_LB_LABEL: &str = "node.kubernetes.io/exclude-from-external-load-balancers";
/// Event reason when a Service cannot get its ports (upstream's service controller's).
pub const REASON_FAILED: &str = "SyncLoadBalancerFailed";
/// Event reason when a Service got its addresses.
pub const REASON_ENSURED: &str = "EnsuredLoadBalancer";

fn services() -> &'static ResourceDef {
    resources::by_plural("", "v1", "services").expect("served")
}

fn nodes() -> &'static ResourceDef {
    resources::by_plural("", "v1", "nodes").expect("served")
}

/// Whether this controller serves the Service: type LoadBalancer, no
/// `loadBalancerClass` (another controller's, e.g. MetalLB's), not being deleted.
pub fn is_managed(svc: &Value) -> bool {
    svc["spec"]["type"] == "LoadBalancer"
        && svc["spec"]["loadBalancerClass"]
            .as_str()
            .is_none_or(str::is_empty)
        && !object::is_deleting(svc)
}

/// The ingress addresses in a Service's status.
pub fn ingress_ips(svc: &Value) -> Vec<String> {
    svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(String::from))
        .collect()
}

fn node_is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn label<'a>(node: &'a Value, key: &str) -> Option<&'a str> {
    object::labels(node)
        .and_then(|l| l.get(key))
        .and_then(Value::as_str)
}

/// The nodes carrying load balancers (see the module comment), by name.
pub fn lb_nodes<'a>(nodes: &[&'a Value]) -> Vec<&'a Value> {
    let restricted = nodes
        .iter()
        .any(|n| label(n, ENABLE_LB_LABEL) == Some("true"));
    let mut chosen: Vec<&Value> = nodes
        .iter()
        .copied()
        .filter(|n| node_is_ready(n) && !object::is_deleting(n))
        .filter(|n| label(n, EXCLUDE_LB_LABEL).is_none())
        .filter(|n| !restricted || label(n, ENABLE_LB_LABEL) == Some("true"))
        .collect();
    chosen.sort_by_key(|n| object::name(n).to_string());
    chosen
}

/// The InternalIP and ExternalIP addresses of `nodes`, sorted, each once.
pub fn node_addresses(nodes: &[&Value]) -> Vec<String> {
    let addresses: BTreeSet<String> = nodes
        .iter()
        .flat_map(|n| n["status"]["addresses"].as_array().into_iter().flatten())
        .filter(|a| matches!(a["type"].as_str(), Some("InternalIP" | "ExternalIP")))
        .filter_map(|a| a["address"].as_str())
        .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
        .map(String::from)
        .collect();
    addresses.into_iter().collect()
}

/// `(port, protocol)` of each Service port.
fn ports_of(svc: &Value) -> Vec<(i64, String)> {
    svc["spec"]["ports"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| {
            let port = p["port"].as_i64()?;
            Some((port, p["protocol"].as_str().unwrap_or("TCP").to_string()))
        })
        .collect()
}

/// What a Service's status should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Served on these addresses (none when no node carries load balancers).
    Ingress(Vec<String>),
    /// Pending: `holder` (`namespace/name`) holds `port`/`protocol`.
    PortTaken {
        holder: String,
        port: i64,
        protocol: String,
    },
    /// No longer a LoadBalancer this controller serves, with addresses it gave: cleared.
    Clear,
}

/// The decision for every Service that needs one (managed ones, and unmanaged ones
/// still carrying addresses while having no class, unless being deleted), by
/// `namespace/name`.
///
/// Ports go to Services in this order: those already holding addresses, then by
/// creation time, then by key; a Service wanting a port an earlier one has is pending.
pub fn plan(services: &[&Value], nodes: &[&Value]) -> BTreeMap<String, Decision> {
    let addresses = node_addresses(&lb_nodes(nodes));
    let mut managed: Vec<&Value> = services.iter().copied().filter(|s| is_managed(s)).collect();
    managed.sort_by_cached_key(|s| {
        (
            ingress_ips(s).is_empty(),
            s["metadata"]["creationTimestamp"]
                .as_str()
                .unwrap_or("")
                .to_string(),
            object_key(s),
        )
    });
    let mut holders: BTreeMap<(i64, String), String> = BTreeMap::new();
    let mut out = BTreeMap::new();
    for svc in managed {
        let key = object_key(svc);
        let ports = ports_of(svc);
        let taken = ports
            .iter()
            .find_map(|p| holders.get(p).map(|holder| (p.clone(), holder.clone())));
        let decision = match taken {
            Some(((port, protocol), holder)) => Decision::PortTaken {
                holder,
                port,
                protocol,
            },
            None => {
                for p in ports {
                    holders.insert(p, key.clone());
                }
                Decision::Ingress(addresses.clone())
            }
        };
        out.insert(key, decision);
    }
    for svc in services {
        let unclassed = svc["spec"]["loadBalancerClass"]
            .as_str()
            .is_none_or(str::is_empty);
        let cleared = !is_managed(svc) && !object::is_deleting(svc);
        if cleared && unclassed && !ingress_ips(svc).is_empty() {
            out.insert(object_key(svc), Decision::Clear);
        }
    }
    out
}

/// `status.loadBalancer` for the addresses (ipMode VIP: the proxy takes the traffic).
pub fn load_balancer_status(addresses: &[String]) -> Value {
    if addresses.is_empty() {
        return json!({});
    }
    let ingress: Vec<Value> = addresses
        .iter()
        .map(|ip| json!({"ip": ip, "ipMode": "VIP"}))
        .collect();
    json!({ "ingress": ingress })
}

/// The keys of every Service that a change to `svc` (any version) may affect: all
/// LoadBalancer Services, when a version of it is or was one or carries addresses.
fn service_event_keys(client: &dyn Client, event: &Event) -> Vec<String> {
    let mut versions = vec![&*event.kv.value];
    if let Some(prev) = &event.prev {
        versions.push(&*prev.value);
    }
    let relevant = versions
        .iter()
        .any(|v| v["spec"]["type"] == "LoadBalancer" || !ingress_ips(v).is_empty());
    if !relevant {
        return vec![];
    }
    let mut keys = all_lb_service_keys(client);
    keys.push(object_key(&event.kv.value));
    keys
}

fn all_lb_service_keys(client: &dyn Client) -> Vec<String> {
    client
        .list(services(), None, &|kv: &KeyValue| {
            kv.value["spec"]["type"] == "LoadBalancer"
        })
        .iter()
        .map(|kv| object_key(&kv.value))
        .collect()
}

/// What of a Node the choice of load-balancer nodes reads.
fn node_projection(node: &Value) -> Value {
    json!([
        label(node, ENABLE_LB_LABEL),
        label(node, EXCLUDE_LB_LABEL).is_some(),
        node_is_ready(node),
        object::is_deleting(node),
        node["status"]["addresses"],
    ])
}

fn node_event_keys(client: &dyn Client, event: &Event) -> Vec<String> {
    let unchanged = matches!(event.kind, crate::store::EventType::Modified)
        && event
            .prev
            .as_ref()
            .is_some_and(|p| node_projection(&p.value) == node_projection(&event.kv.value));
    if unchanged {
        return vec![];
    }
    all_lb_service_keys(client)
}

/// Runs the controller until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(client.clone(), services(), queue.clone(), {
            let client = client.clone();
            Box::new(move |e| service_event_keys(&*client, e))
        }),
        Informer::start(client.clone(), nodes(), queue.clone(), {
            let client = client.clone();
            Box::new(move |e| node_event_keys(&*client, e))
        }),
    ];
    wait_for_sync(&informers).await;
    let recorder = Arc::new(Recorder::new(client.clone(), "service-lb-controller"));
    run_workers("service-lb-controller", queue, WORKERS, move |key| {
        let (client, recorder) = (client.clone(), recorder.clone());
        async move {
            reconcile(&*client, &recorder, &key).await?;
            Ok(None)
        }
    })
    .await;
}

async fn reconcile(client: &dyn Client, recorder: &Recorder, key: &str) -> Result<(), ApiError> {
    let (Some(ns), name) = split_key(key) else {
        return Ok(());
    };
    let Ok(current) = client.get(services(), Some(ns), name) else {
        return Ok(());
    };
    let all_services = client.list(services(), None, &|kv: &KeyValue| {
        kv.value["spec"]["type"] == "LoadBalancer" || kv.value["metadata"]["name"] == name
    });
    let all_nodes = client.list(nodes(), None, &|_| true);
    let service_values: Vec<&Value> = all_services.iter().map(|kv| &*kv.value).collect();
    let node_values: Vec<&Value> = all_nodes.iter().map(|kv| &*kv.value).collect();
    let Some(decision) = plan(&service_values, &node_values).remove(key) else {
        return Ok(());
    };
    let svc = &*current.value;
    let desired = match &decision {
        Decision::Ingress(addresses) => load_balancer_status(addresses),
        Decision::PortTaken { .. } | Decision::Clear => json!({}),
    };
    let stored = svc["status"]["loadBalancer"].clone();
    let normalized = |v: &Value| if v.is_null() { json!({}) } else { v.clone() };
    if normalized(&stored) != desired {
        let status = desired.clone();
        client
            .modify(services(), Some(ns), name, Some("status"), &|cur| {
                let mut cur = cur.clone();
                cur["status"]["loadBalancer"] = status.clone();
                Ok(cur)
            })
            .await?;
        tracing::info!(service = %key, status = %desired, "load balancer status updated");
        if let Decision::Ingress(addresses) = &decision {
            if !addresses.is_empty() {
                recorder
                    .record(
                        svc,
                        NORMAL,
                        REASON_ENSURED,
                        &format!("Ensured load balancer on {}", addresses.join(", ")),
                    )
                    .await;
            }
        }
    }
    if let Decision::PortTaken {
        holder,
        port,
        protocol,
    } = &decision
    {
        recorder
            .record(
                svc,
                WARNING,
                REASON_FAILED,
                &format!(
                    "Error syncing load balancer: port {port}/{protocol} is already used by LoadBalancer Service {holder}; the Service stays pending until the port is free"
                ),
            )
            .await;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, ready: bool, labels: Value, addresses: &[(&str, &str)]) -> Value {
        let addresses: Vec<Value> = addresses
            .iter()
            .map(|(t, a)| json!({"type": t, "address": a}))
            .collect();
        json!({"metadata": {"name": name, "labels": labels}, "status": {
            "conditions": [{"type": "Ready", "status": if ready {"True"} else {"False"}}],
            "addresses": addresses,
        }})
    }

    fn lb(name: &str, created: &str, port: i64, extra: Value) -> Value {
        let mut svc = json!({"metadata": {"name": name, "namespace": "default",
            "creationTimestamp": created},
            "spec": {"type": "LoadBalancer", "ports": [{"port": port, "protocol": "TCP"}]},
            "status": {"loadBalancer": {}}});
        if let Some(extra) = extra.as_object() {
            for (k, v) in extra {
                svc["spec"][k] = v.clone();
            }
        }
        svc
    }

    fn with_status(mut svc: Value, ip: &str) -> Value {
        svc["status"]["loadBalancer"] = load_balancer_status(&[ip.to_string()]);
        svc
    }

    fn names(nodes: Vec<&Value>) -> Vec<&str> {
        nodes.into_iter().map(object::name).collect()
    }

    #[test]
    fn every_ready_node_carries_load_balancers_unless_some_are_labelled() {
        let a = node("a", true, json!({}), &[("InternalIP", "10.0.0.1")]);
        let b = node("b", true, json!({}), &[("InternalIP", "10.0.0.2")]);
        let down = node("down", false, json!({}), &[("InternalIP", "10.0.0.3")]);
        let excluded = node(
            "x",
            true,
            json!({EXCLUDE_LB_LABEL: ""}),
            &[("InternalIP", "10.0.0.4")],
        );
        assert_eq!(names(lb_nodes(&[&b, &a, &down, &excluded])), ["a", "b"]);
        let labelled = node(
            "c",
            true,
            json!({ENABLE_LB_LABEL: "true"}),
            &[("InternalIP", "10.0.0.5")],
        );
        let labelled_down = node(
            "d",
            false,
            json!({ENABLE_LB_LABEL: "true"}),
            &[("InternalIP", "10.0.0.6")],
        );
        assert_eq!(names(lb_nodes(&[&a, &b, &labelled, &labelled_down])), ["c"]);
        // `false` restricts nothing.
        let off = node("e", true, json!({ENABLE_LB_LABEL: "false"}), &[]);
        assert_eq!(names(lb_nodes(&[&a, &off])), ["a", "e"]);
    }

    #[test]
    fn addresses_are_internal_and_external_ips_sorted_once() {
        let a = node(
            "a",
            true,
            json!({}),
            &[
                ("InternalIP", "10.0.0.2"),
                ("ExternalIP", "203.0.113.7"),
                ("Hostname", "a"),
            ],
        );
        let b = node(
            "b",
            true,
            json!({}),
            &[("InternalIP", "10.0.0.1"), ("ExternalIP", "203.0.113.7")],
        );
        assert_eq!(
            node_addresses(&[&a, &b]),
            ["10.0.0.1", "10.0.0.2", "203.0.113.7"]
        );
    }

    #[test]
    fn a_load_balancer_service_gets_the_node_addresses() {
        let a = node("a", true, json!({}), &[("InternalIP", "10.0.0.1")]);
        let svc = lb("web", "2026-01-01T00:00:00Z", 80, json!({}));
        let plan = plan(&[&svc], &[&a]);
        assert_eq!(
            plan["default/web"],
            Decision::Ingress(vec!["10.0.0.1".into()])
        );
        assert_eq!(
            load_balancer_status(&["10.0.0.1".into()]),
            json!({"ingress": [{"ip": "10.0.0.1", "ipMode": "VIP"}]})
        );
        assert_eq!(load_balancer_status(&[]), json!({}));
    }

    #[test]
    fn a_service_with_a_load_balancer_class_is_left_alone() {
        let a = node("a", true, json!({}), &[("InternalIP", "10.0.0.1")]);
        let metallb = lb(
            "m",
            "2026-01-01T00:00:00Z",
            80,
            json!({"loadBalancerClass": "metallb.io/metallb"}),
        );
        let metallb = with_status(metallb, "192.0.2.10");
        let other = lb("o", "2026-01-02T00:00:00Z", 80, json!({}));
        let plan = plan(&[&metallb, &other], &[&a]);
        assert!(!plan.contains_key("default/m"), "{plan:?}");
        // Its port is not ours to guard.
        assert_eq!(
            plan["default/o"],
            Decision::Ingress(vec!["10.0.0.1".into()])
        );
    }

    #[test]
    fn the_second_service_on_a_port_stays_pending_until_the_first_goes() {
        let a = node("a", true, json!({}), &[("InternalIP", "10.0.0.1")]);
        let first = lb("first", "2026-01-01T00:00:00Z", 80, json!({}));
        let second = lb("second", "2026-01-02T00:00:00Z", 80, json!({}));
        let udp = {
            let mut s = lb("dns", "2026-01-03T00:00:00Z", 80, json!({}));
            s["spec"]["ports"][0]["protocol"] = json!("UDP");
            s
        };
        let decided = plan(&[&second, &first, &udp], &[&a]);
        assert_eq!(
            decided["default/second"],
            Decision::PortTaken {
                holder: "default/first".into(),
                port: 80,
                protocol: "TCP".into()
            }
        );
        assert!(matches!(decided["default/first"], Decision::Ingress(_)));
        assert!(
            matches!(decided["default/dns"], Decision::Ingress(_)),
            "another protocol on the same port is free"
        );
        let decided = plan(&[&second], &[&a]);
        assert_eq!(
            decided["default/second"],
            Decision::Ingress(vec!["10.0.0.1".into()])
        );
    }

    #[test]
    fn the_service_holding_a_port_keeps_it_against_an_older_one() {
        let a = node("a", true, json!({}), &[("InternalIP", "10.0.0.1")]);
        // The older Service changed its port to one the newer holds already.
        let older = lb("older", "2026-01-01T00:00:00Z", 443, json!({}));
        let holder = with_status(
            lb("newer", "2026-01-02T00:00:00Z", 443, json!({})),
            "10.0.0.1",
        );
        let decided = plan(&[&older, &holder], &[&a]);
        assert!(matches!(decided["default/newer"], Decision::Ingress(_)));
        assert!(matches!(
            decided["default/older"],
            Decision::PortTaken { ref holder, .. } if holder == "default/newer"
        ));
    }

    #[test]
    fn a_service_that_stops_being_a_load_balancer_loses_its_addresses() {
        let mut svc = with_status(lb("web", "2026-01-01T00:00:00Z", 80, json!({})), "10.0.0.1");
        svc["spec"]["type"] = json!("ClusterIP");
        assert_eq!(plan(&[&svc], &[])["default/web"], Decision::Clear);
        let mut plain = lb("plain", "2026-01-01T00:00:00Z", 80, json!({}));
        plain["spec"]["type"] = json!("ClusterIP");
        assert!(plan(&[&plain], &[]).is_empty());
    }

    #[test]
    fn without_load_balancer_nodes_services_are_pending_without_a_conflict() {
        let down = node("a", false, json!({}), &[("InternalIP", "10.0.0.1")]);
        let svc = lb("web", "2026-01-01T00:00:00Z", 80, json!({}));
        assert_eq!(
            plan(&[&svc], &[&down])["default/web"],
            Decision::Ingress(vec![])
        );
    }

    #[tokio::test(start_paused = true)]
    async fn the_controller_writes_addresses_and_hands_a_port_over() {
        use crate::controllers::testutil::{registry, wait_for};
        use std::time::Duration;
        let reg = registry().await;
        let client: Arc<dyn Client> = reg.clone();
        let task = tokio::spawn(run(client.clone()));
        client
            .create(
                nodes(),
                None,
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "a"}}),
            )
            .await
            .unwrap();
        let status = node("a", true, json!({}), &[("InternalIP", "10.0.0.1")])["status"].clone();
        client
            .modify(nodes(), None, "a", Some("status"), &|cur| {
                let mut cur = cur.clone();
                cur["status"] = status.clone();
                Ok(cur)
            })
            .await
            .unwrap();
        let create_lb = |name: &'static str| {
            let client = client.clone();
            async move {
                let body = json!({"apiVersion": "v1", "kind": "Service",
                    "metadata": {"name": name, "namespace": "default"},
                    "spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}});
                client
                    .create(services(), Some("default"), body)
                    .await
                    .unwrap();
            }
        };
        let ips = |name: &str| {
            client
                .get(services(), Some("default"), name)
                .map(|kv| ingress_ips(&kv.value))
                .unwrap_or_default()
        };
        create_lb("first").await;
        wait_for("first served", Duration::from_secs(10), || {
            ips("first") == ["10.0.0.1"]
        })
        .await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        create_lb("second").await;
        let events = resources::by_plural("", "v1", "events").expect("served");
        wait_for("a conflict event", Duration::from_secs(10), || {
            client
                .list(events, Some("default"), &|kv: &KeyValue| {
                    kv.value["reason"] == REASON_FAILED
                        && kv.value["involvedObject"]["name"] == "second"
                })
                .len()
                == 1
        })
        .await;
        assert!(ips("second").is_empty());
        client
            .delete(
                services(),
                Some("default"),
                "first",
                &crate::apiserver::registry::DeleteOptions::default(),
            )
            .await
            .unwrap();
        wait_for("second served", Duration::from_secs(10), || {
            ips("second") == ["10.0.0.1"]
        })
        .await;
        task.abort();
    }

    #[test]
    fn node_events_that_change_nothing_the_choice_reads_are_ignored() {
        let a = node("a", true, json!({}), &[("InternalIP", "10.0.0.1")]);
        let mut heartbeat = a.clone();
        heartbeat["status"]["conditions"][0]["lastHeartbeatTime"] = json!("2026-01-01T00:00:00Z");
        assert_eq!(node_projection(&a), node_projection(&heartbeat));
        let mut labelled = a.clone();
        labelled["metadata"]["labels"][ENABLE_LB_LABEL] = json!("true");
        assert_ne!(node_projection(&a), node_projection(&labelled));
    }
}
