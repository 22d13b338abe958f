//! Service and Endpoints cells: type, cluster and external IPs, ports, listed endpoints.

use serde_json::{json, Value};

use super::cells::{arr, int, labels_string, or_none, str_at};

/// How many endpoints the ENDPOINTS column lists before "+ N more...".
const MAX_LISTED_ENDPOINTS: usize = 3;

pub(super) fn service_cells(svc: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = &svc["spec"];
    let svc_type = match str_at(&spec["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = arr(&spec["clusterIPs"])
        .first()
        .map(str_at)
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| str_at(&spec["clusterIP"]));
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = match str_at(&p["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match int(&p["nodePort"]) {
                n if n > 0 => format!("{}:{n}/{protocol}", int(&p["port"])),
                _ => format!("{}/{protocol}", int(&p["port"])),
            }
        })
        .collect();
    vec![
        name,
        json!(svc_type),
        json!(or_none(cluster_ip)),
        json!(service_external_ip(svc, svc_type)),
        json!(or_none(&ports.join(","))),
        age,
        json!(labels_string(&spec["selector"])),
    ]
}

fn service_external_ip(svc: &Value, svc_type: &str) -> String {
    let external: Vec<&str> = arr(&svc["spec"]["externalIPs"])
        .iter()
        .map(str_at)
        .collect();
    match svc_type {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let mut all: Vec<&str> = Vec::new();
            for ingress in arr(&svc["status"]["loadBalancer"]["ingress"]) {
                let addr = match str_at(&ingress["ip"]) {
                    "" => str_at(&ingress["hostname"]),
                    ip => ip,
                };
                if !addr.is_empty() && !all.contains(&addr) {
                    all.push(addr);
                }
            }
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(&svc["spec"]["externalName"]).into(),
        _ => "<unknown>".into(),
    }
}

/// Upstream `formatDiscoveryPorts` and `formatDiscoveryEndpoints`: at most three port
/// numbers (or names) and three addresses, then `+ N more...`; `<unset>` for none.
pub(super) fn format_endpoint_slice(slice: &Value) -> (String, String) {
    fn listed(items: Vec<String>) -> String {
        let max = MAX_LISTED_ENDPOINTS;
        let shown = items
            .iter()
            .take(max)
            .cloned()
            .collect::<Vec<_>>()
            .join(",");
        if items.len() > max {
            format!("{shown} + {} more...", items.len() - max)
        } else if shown.is_empty() {
            "<unset>".into()
        } else {
            shown
        }
    }
    let ports = arr(&slice["ports"])
        .iter()
        .map(|p| match (p["port"].as_i64(), p["name"].as_str()) {
            (Some(port), _) => port.to_string(),
            (None, Some(name)) if !name.is_empty() => name.to_string(),
            _ => "*".to_string(),
        })
        .collect();
    let addresses = arr(&slice["endpoints"])
        .iter()
        .flat_map(|e| {
            arr(&e["addresses"])
                .iter()
                .map(|a| str_at(a).to_string())
                .collect::<Vec<_>>()
        })
        .collect();
    (listed(ports), listed(addresses))
}

/// Upstream `formatEndpoints`: `ip:port` pairs, at most three, then `+ N more...`.
pub(super) fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = arr(&ss["addresses"]);
        let ports = arr(&ss["ports"]);
        // Headless services may have no ports: list the bare addresses.
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(int(&p["port"]))).collect()
        };
        for port in port_numbers {
            count += addresses.len();
            for addr in addresses {
                if list.len() == MAX_LISTED_ENDPOINTS {
                    more = true;
                    break;
                }
                let ip = str_at(&addr["ip"]);
                list.push(match port {
                    None => ip.to_string(),
                    Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                    Some(p) => format!("{ip}:{p}"),
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX_LISTED_ENDPOINTS)
    } else {
        joined
    }
}

#[cfg(test)]
mod tests {
    use super::super::{ENDPOINTS, SERVICE};
    use crate::api::table::test_support::{ago, cells};
    use serde_json::json;

    #[test]
    fn node_port_service() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(3600 * 5)},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.43.0.15",
                "clusterIPs": ["10.43.0.15"],
                "selector": {"app": "web"},
                "ports": [
                    {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"port": 53, "nodePort": 30053, "protocol": "UDP"},
                ],
            },
        });
        assert_eq!(
            cells(&SERVICE, &svc),
            [
                "web",
                "NodePort",
                "10.43.0.15",
                "<none>",
                "80:30080/TCP,53:30053/UDP",
                "5h",
                "app=web"
            ]
        );
    }

    #[test]
    fn cluster_ip_load_balancer_and_external_name_services() {
        let svc = json!({
            "metadata": {"name": "api"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1",
                     "ports": [{"port": 443, "protocol": "TCP"}]},
        });
        assert_eq!(
            cells(&SERVICE, &svc)[1..5],
            ["ClusterIP", "10.43.0.1", "<none>", "443/TCP"]
        );
        assert_eq!(cells(&SERVICE, &svc)[6], "<none>");

        let mut lb = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.43.0.9"],
                     "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}]},
        });
        assert_eq!(cells(&SERVICE, &lb)[3], "<pending>");
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}, {"hostname": "lb.example"}]}});
        lb["spec"]["externalIPs"] = json!(["1.2.3.4"]);
        assert_eq!(cells(&SERVICE, &lb)[3], "192.168.1.10,lb.example,1.2.3.4");

        let ext = json!({
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"},
        });
        assert_eq!(
            cells(&SERVICE, &ext)[1..5],
            ["ExternalName", "<none>", "db.example.com", "<none>"]
        );

        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert_eq!(cells(&SERVICE, &headless)[1..3], ["ClusterIP", "None"]);
    }

    #[test]
    fn endpoints_list_three_then_count_the_rest() {
        let ep = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(60)},
            "subsets": [{
                "addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}, {"ip": "10.42.1.7"}, {"ip": "10.42.1.8"}],
                "ports": [{"port": 80, "protocol": "TCP"}],
            }],
        });
        assert_eq!(
            cells(&ENDPOINTS, &ep),
            [
                "web",
                "10.42.0.5:80,10.42.0.6:80,10.42.1.7:80 + 1 more...",
                "60s"
            ]
        );
        let two_ports = json!({
            "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}],
                         "ports": [{"port": 80}, {"port": 443}]}],
        });
        assert_eq!(
            cells(&ENDPOINTS, &two_ports)[1],
            "10.42.0.5:80,[fd00::5]:80,10.42.0.5:443 + 1 more..."
        );
        let headless =
            json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "10.42.0.5"}]}]});
        assert_eq!(cells(&ENDPOINTS, &headless)[1], "10.42.0.5");
        let empty = json!({"metadata": {"name": "e"}});
        assert_eq!(cells(&ENDPOINTS, &empty)[1], "<none>");
    }
}
