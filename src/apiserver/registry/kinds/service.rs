//! Service rules: the ClusterIP and NodePorts a Service asks for (or needs) are
//! reserved from the cluster's pools on create and update and released when it no
//! longer holds them; a PUT without them keeps the ones already allocated.

use std::net::Ipv4Addr;

use serde_json::{json, Value};

use crate::api::defaults;
use crate::api::object;
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::api::validation::FieldErrorKind;
use crate::apiserver::allocator::Reservation;
use crate::apiserver::registry::generic::field_error;
use crate::apiserver::registry::strategy::{Context, Strategy};

pub struct ServiceStrategy;

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &[
    "metadata.namespace",
    "metadata.name",
    "spec.clusterIP",
    "spec.type",
];

impl Strategy for ServiceStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Service>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::SERVICE
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"loadBalancer": {}});
        defaults::apply_defaults(cx.def.kind, obj);
    }

    fn allocate(
        &self,
        cx: &Context,
        svc: &mut Value,
        old: Option<&Value>,
    ) -> Result<Reservation, ApiError> {
        if let Some(old) = old {
            carry_allocations(old, svc);
        }
        allocate(cx, svc, old)
    }

    fn holds_allocations(&self) -> bool {
        true
    }

    fn allocations(&self, svc: &Value) -> Reservation {
        let mut held = Reservation::default();
        if let Some(ip) = svc["spec"]["clusterIP"]
            .as_str()
            .and_then(|s| s.parse().ok())
        {
            held.ips.push(ip);
        }
        for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
            if let Some(np) = port["nodePort"].as_u64() {
                held.ports.push((np as u16, protocol(port).to_string()));
            }
        }
        held
    }
}

fn protocol(port: &Value) -> &str {
    port["protocol"].as_str().unwrap_or("TCP")
}

/// A PUT without clusterIP/nodePorts keeps the allocated ones (as upstream).
fn carry_allocations(old: &Value, new: &mut Value) {
    let new_ip = new["spec"]["clusterIP"].as_str().unwrap_or("");
    if new_ip.is_empty() {
        if let Some(ip) = old["spec"]["clusterIP"].as_str() {
            new["spec"]["clusterIP"] = json!(ip);
            new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = new["spec"]["ports"].as_array_mut() {
        for port in ports.iter_mut() {
            if port["nodePort"].as_u64().unwrap_or(0) != 0 {
                continue;
            }
            let same = old_ports
                .iter()
                .find(|o| o["port"] == port["port"] && protocol(o) == protocol(port));
            if let Some(np) = same.and_then(|o| o["nodePort"].as_u64()) {
                port["nodePort"] = json!(np);
            }
        }
    }
}

/// Reserves the ClusterIP and NodePorts a Service asks for (or needs) and that `old`
/// (the stored Service, on updates) does not hold already.
fn allocate(cx: &Context, svc: &mut Value, old: Option<&Value>) -> Result<Reservation, ApiError> {
    let (def, name) = (cx.def, object::name(svc).to_string());
    let mut allocated = Reservation::default();
    let svc_type = svc["spec"]["type"]
        .as_str()
        .unwrap_or("ClusterIP")
        .to_string();
    let old_ip = old
        .and_then(|o| o["spec"]["clusterIP"].as_str())
        .unwrap_or("");
    let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
    let ip_error = |detail: &str| {
        ApiError::invalid(
            def,
            &name,
            &[field_error(
                "spec.clusterIPs",
                FieldErrorKind::Invalid,
                Some(format!("[]string{{\"{requested}\"}}")),
                detail,
            )],
        )
    };
    if svc_type == "ExternalName" {
        if let Some(spec) = svc["spec"].as_object_mut() {
            spec.remove("clusterIP");
            spec.remove("clusterIPs");
        }
    } else if requested == "None" {
        svc["spec"]["clusterIPs"] = json!(["None"]);
    } else if requested.is_empty() || requested != old_ip {
        let want: Option<Ipv4Addr> = if requested.is_empty() {
            None
        } else {
            Some(requested.parse().map_err(|_| {
                ip_error("must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)")
            })?)
        };
        let ip = cx.allocators.allocate_ip(want).map_err(|e| match want {
            Some(ip) => ip_error(&format!("failed to allocate IP {ip}: {e}")),
            None => ip_error(&format!("failed to allocate a serviceIP: {e}")),
        })?;
        allocated.ips.push(ip);
        svc["spec"]["clusterIP"] = json!(ip.to_string());
        svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
    }
    let wants_node_ports = svc_type == "NodePort" || svc_type == "LoadBalancer";
    // `allocateLoadBalancerNodePorts: false`: no new NodePorts for a LoadBalancer, but the
    // ones asked for are reserved (upstream `initNodePorts`).
    let allocates_new_ports =
        svc_type == "NodePort" || svc["spec"]["allocateLoadBalancerNodePorts"] != false;
    let old_ports = old
        .map(|o| ServiceStrategy.allocations(o))
        .unwrap_or_default()
        .ports;
    let Some(ports) = svc["spec"]["ports"].as_array_mut() else {
        return Ok(allocated);
    };
    for (i, port) in ports.iter_mut().enumerate() {
        let proto = protocol(port).to_string();
        if !wants_node_ports {
            if let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
            continue;
        }
        let want = port["nodePort"]
            .as_u64()
            .map(|p| p as u16)
            .filter(|p| *p != 0);
        if want.is_some_and(|p| old_ports.contains(&(p, proto.clone()))) {
            continue;
        }
        if want.is_none() && !allocates_new_ports {
            if let Some(p) = port.as_object_mut() {
                p.remove("nodePort");
            }
            continue;
        }
        match cx.allocators.allocate_port(want, &proto) {
            Ok(p) => {
                allocated.ports.push((p, proto));
                port["nodePort"] = json!(p);
            }
            Err(e) => {
                allocated.release(cx.allocators);
                return Err(ApiError::invalid(
                    def,
                    &name,
                    &[field_error(
                        &format!("spec.ports[{i}].nodePort"),
                        FieldErrorKind::Invalid,
                        want.map(|p| p.to_string()),
                        &e.to_string(),
                    )],
                ));
            }
        }
    }
    Ok(allocated)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources;
    use crate::apiserver::allocator::Allocators;
    use crate::apiserver::heartbeats::Heartbeats;

    fn with_context<T>(f: impl FnOnce(&Context) -> T) -> T {
        let allocators = Allocators::new("10.43.0.0/29".parse().unwrap(), (30000, 30001));
        let heartbeats = Heartbeats::new();
        let event_rate_limit = Default::default();
        let rbac = crate::apiserver::rbac::Rbac::new();
        let store = crate::store::memory::MemoryStore::new();
        let cx = Context {
            def: resources::by_plural("", "v1", "services").expect("served"),
            allocators: &allocators,
            heartbeats: &heartbeats,
            default_tolerations: Default::default(),
            cluster_cidr: None,
            event_rate_limit: &event_rate_limit,
            rbac: &rbac,
            store: &store,
        };
        f(&cx)
    }

    fn node_port_service(node_port: u64) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
            "ports": [{"port": 80, "protocol": "TCP", "nodePort": node_port}]}})
    }

    #[test]
    fn a_load_balancer_without_node_port_allocation_gets_only_the_ports_it_names() {
        with_context(|cx| {
            let mut svc = json!({"metadata": {"name": "lb"}, "spec": {"type": "LoadBalancer",
                "allocateLoadBalancerNodePorts": false,
                "ports": [{"port": 80, "protocol": "TCP"},
                          {"port": 81, "protocol": "TCP", "nodePort": 30001}]}});
            let held = ServiceStrategy.allocate(cx, &mut svc, None).unwrap();
            assert_eq!(held.ports, vec![(30001, "TCP".to_string())]);
            assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");
            let mut default = json!({"metadata": {"name": "lb2"}, "spec": {"type": "LoadBalancer",
                "ports": [{"port": 80, "protocol": "TCP"}]}});
            let held = ServiceStrategy.allocate(cx, &mut default, None).unwrap();
            assert_eq!(held.ports, vec![(30000, "TCP".to_string())]);
        });
    }

    #[test]
    fn a_failed_node_port_gives_back_the_cluster_ip_it_took() {
        with_context(|cx| {
            let mut first = node_port_service(30000);
            let held = ServiceStrategy.allocate(cx, &mut first, None).unwrap();
            assert_eq!(held.ips.len(), 1);
            let mut clash = node_port_service(30000);
            let err = ServiceStrategy.allocate(cx, &mut clash, None).unwrap_err();
            assert_eq!(err.code, 422);
            assert!(
                err.message.contains("spec.ports[0].nodePort"),
                "{}",
                err.message
            );
            // Four dynamic addresses remain in a /29 with one held: the failed
            // create must not have kept a fifth.
            for _ in 0..4 {
                cx.allocators.allocate_ip(None).expect("address given back");
            }
        });
    }

    #[test]
    fn an_update_without_cluster_ip_or_node_port_keeps_the_allocated_ones() {
        with_context(|cx| {
            let mut old = node_port_service(0);
            ServiceStrategy.allocate(cx, &mut old, None).unwrap();
            let mut new = json!({"metadata": {"name": "web"}, "spec": {"type": "NodePort",
                "ports": [{"port": 80, "protocol": "TCP"}]}});
            let added = ServiceStrategy.allocate(cx, &mut new, Some(&old)).unwrap();
            assert_eq!(added, Reservation::default());
            assert_eq!(new["spec"]["clusterIP"], old["spec"]["clusterIP"]);
            assert_eq!(
                new["spec"]["ports"][0]["nodePort"],
                old["spec"]["ports"][0]["nodePort"]
            );
        });
    }

    #[test]
    fn external_name_services_hold_no_cluster_ip() {
        with_context(|cx| {
            let mut svc = json!({"metadata": {"name": "ext"}, "spec": {"type": "ExternalName",
                "externalName": "example.com", "clusterIP": "10.43.0.3"}});
            let held = ServiceStrategy.allocate(cx, &mut svc, None).unwrap();
            assert_eq!(held, Reservation::default());
            assert!(svc["spec"].get("clusterIP").is_none());
        });
    }
}
