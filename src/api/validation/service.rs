//! Service and Endpoints rules.

use std::collections::HashSet;

use serde_json::Value;

use super::field_error::{go_quote, FieldError};
use super::meta::validate_labels;
use super::names::{
    is_dns1123_label, is_dns1123_subdomain, is_valid_ip, is_valid_port_name, is_valid_port_num,
    IP_ERR,
};
use super::pod::PORT_PROTOCOLS;
use super::{arr_at, check_enum, int_at, obj_at, str_at, Errs};

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: [&str; 2] = ["ClientIP", "None"];
const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
/// Upstream `MaxClientIPServiceAffinitySeconds`.
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

pub(super) fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let svc_type = str_at(spec, "type");
    let cluster_ip = str_at(spec, "clusterIP");
    let headless = cluster_ip == "None";
    check_enum(spec, "type", "spec", &SERVICE_TYPES, errs);

    let ports = arr_at(spec, "ports");
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = format!("spec.ports[{i}]");
        let name = str_at(p, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                errs.push(FieldError::invalid(format!("{idx}.name"), name, m));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{idx}.name"), name));
            }
        }
        let port = int_at(p, "port").unwrap_or(0);
        for m in is_valid_port_num(port) {
            errs.push(FieldError::invalid_rendered(
                format!("{idx}.port"),
                port.to_string(),
                m,
            ));
        }
        check_enum(p, "protocol", &idx, &PORT_PROTOCOLS, errs);
        match p.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                for m in is_valid_port_num(n) {
                    errs.push(FieldError::invalid_rendered(
                        format!("{idx}.targetPort"),
                        n.to_string(),
                        m,
                    ));
                }
            }
            Some(Value::String(s)) if !s.is_empty() => {
                for m in is_valid_port_name(s) {
                    errs.push(FieldError::invalid(format!("{idx}.targetPort"), s, m));
                }
            }
            _ => {}
        }
        if let Some(np) = int_at(p, "nodePort").filter(|n| *n != 0) {
            if svc_type == "ClusterIP" || svc_type.is_empty() {
                errs.push(FieldError::forbidden(
                    format!("{idx}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else {
                for m in is_valid_port_num(np) {
                    errs.push(FieldError::invalid_rendered(
                        format!("{idx}.nodePort"),
                        np.to_string(),
                        m,
                    ));
                }
            }
        }
    }

    if svc_type == "ExternalName" {
        let ext = str_at(spec, "externalName");
        if ext.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            for m in is_dns1123_subdomain(ext.strip_suffix('.').unwrap_or(ext)) {
                errs.push(FieldError::invalid("spec.externalName", ext, m));
            }
        }
    }
    if !cluster_ip.is_empty() && !headless && !is_valid_ip(cluster_ip) {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            cluster_ip,
            IP_ERR,
        ));
    }
    for (i, ip) in arr_at(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if !is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                format!("spec.externalIPs[{i}]"),
                ip,
                IP_ERR,
            ));
        }
    }
    check_enum(spec, "sessionAffinity", "spec", &SESSION_AFFINITIES, errs);
    if str_at(spec, "sessionAffinity") == "ClientIP" {
        let timeout = spec
            .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
            .and_then(Value::as_i64);
        if let Some(t) = timeout.filter(|t| !(1..=MAX_CLIENT_IP_AFFINITY_SECONDS).contains(t)) {
            errs.push(FieldError::invalid_rendered(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                t.to_string(),
                format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
            ));
        }
    }
    check_enum(
        spec,
        "externalTrafficPolicy",
        "spec",
        &TRAFFIC_POLICIES,
        errs,
    );
    check_enum(
        spec,
        "internalTrafficPolicy",
        "spec",
        &TRAFFIC_POLICIES,
        errs,
    );
    validate_labels(obj_at(spec, "selector"), "spec.selector", errs);

    if let Some(old) = old {
        validate_service_update(spec, old.get("spec").unwrap_or(&Value::Null), errs);
    }
}

fn service_cluster_ips(spec: &Value) -> Vec<String> {
    let ips: Vec<String> = arr_at(spec, "clusterIPs")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    match str_at(spec, "clusterIP") {
        "" => Vec::new(),
        ip => vec![ip.to_string()],
    }
}

/// The primary cluster IP may not change once set (except to or from ExternalName).
/// An update that omits the IP is allowed: the server carries the old one over, as
/// upstream's registry does.
fn validate_service_update(new: &Value, old: &Value, errs: &mut Errs) {
    if str_at(old, "type") == "ExternalName" || str_at(new, "type") == "ExternalName" {
        return;
    }
    let old_ips = service_cluster_ips(old);
    let new_ips = service_cluster_ips(new);
    if let (Some(o), Some(n)) = (old_ips.first(), new_ips.first()) {
        if o != n {
            let rendered = format!(
                "[]string{{{}}}",
                new_ips
                    .iter()
                    .map(|s| go_quote(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            errs.push(FieldError::invalid_rendered(
                "spec.clusterIPs[0]",
                rendered,
                "may not change once set",
            ));
        }
    }
}

pub(super) fn validate_endpoints(obj: &Value, errs: &mut Errs) {
    for (i, subset) in arr_at(obj, "subsets").iter().enumerate() {
        let idx = format!("subsets[{i}]");
        let addresses = arr_at(subset, "addresses");
        let not_ready = arr_at(subset, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                &idx,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (list_name, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                let apath = format!("{idx}.{list_name}[{j}]");
                let ip = str_at(a, "ip");
                if !is_valid_ip(ip) {
                    errs.push(FieldError::invalid(format!("{apath}.ip"), ip, IP_ERR));
                }
                let hostname = str_at(a, "hostname");
                if !hostname.is_empty() {
                    for m in is_dns1123_label(hostname) {
                        errs.push(FieldError::invalid(
                            format!("{apath}.hostname"),
                            hostname,
                            m,
                        ));
                    }
                }
                let node = str_at(a, "nodeName");
                if !node.is_empty() {
                    for m in is_dns1123_subdomain(node) {
                        errs.push(FieldError::invalid(format!("{apath}.nodeName"), node, m));
                    }
                }
            }
        }
        let ports = arr_at(subset, "ports");
        for (j, p) in ports.iter().enumerate() {
            let ppath = format!("{idx}.ports[{j}]");
            let name = str_at(p, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("{ppath}.name"), ""));
            } else if !name.is_empty() {
                for m in is_dns1123_label(name) {
                    errs.push(FieldError::invalid(format!("{ppath}.name"), name, m));
                }
            }
            let port = int_at(p, "port").unwrap_or(0);
            for m in is_valid_port_num(port) {
                errs.push(FieldError::invalid_rendered(
                    format!("{ppath}.port"),
                    port.to_string(),
                    m,
                ));
            }
            check_enum(p, "protocol", &ppath, &PORT_PROTOCOLS, errs);
        }
    }
}

/// Upstream `ValidateEndpointSlice` (+ update): the address type, the addresses valid
/// for it, conditions, hostname and node names, ports; `addressType` is immutable.
pub(super) fn validate_endpoint_slice(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    const ADDRESS_TYPES: [&str; 3] = ["IPv4", "IPv6", "FQDN"];
    const MAX_ENDPOINTS: usize = 1000;
    const MAX_ADDRESSES: usize = 100;
    const MAX_PORTS: usize = 20_000;
    let address_type = str_at(obj, "addressType");
    if address_type.is_empty() {
        errs.push(FieldError::required("addressType", ""));
    } else if !ADDRESS_TYPES.contains(&address_type) {
        errs.push(FieldError::not_supported(
            "addressType",
            address_type,
            &ADDRESS_TYPES,
        ));
    }
    if let Some(old) = old {
        let before = str_at(old, "addressType");
        if before != address_type {
            errs.push(FieldError::invalid(
                "addressType",
                address_type,
                "field is immutable",
            ));
        }
    }
    let endpoints = arr_at(obj, "endpoints");
    if endpoints.len() > MAX_ENDPOINTS {
        errs.push(FieldError::too_many(
            "endpoints",
            endpoints.len(),
            MAX_ENDPOINTS,
        ));
    }
    for (i, endpoint) in endpoints.iter().enumerate() {
        let path = format!("endpoints[{i}]");
        let addresses = arr_at(endpoint, "addresses");
        if addresses.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.addresses"),
                "must contain at least 1 address",
            ));
        } else if addresses.len() > MAX_ADDRESSES {
            errs.push(FieldError::too_many(
                format!("{path}.addresses"),
                addresses.len(),
                MAX_ADDRESSES,
            ));
        }
        for (j, address) in addresses.iter().enumerate() {
            let apath = format!("{path}.addresses[{j}]");
            let text = address.as_str().unwrap_or("");
            let fine = match address_type {
                "IPv4" => text.parse::<std::net::Ipv4Addr>().is_ok(),
                "IPv6" => text.parse::<std::net::Ipv6Addr>().is_ok(),
                "FQDN" => is_dns1123_subdomain(text).is_empty(),
                _ => true,
            };
            if !fine {
                let detail = match address_type {
                    "IPv4" => "must be a valid IPv4 address",
                    "IPv6" => "must be a valid IPv6 address",
                    _ => "must be a valid DNS subdomain",
                };
                errs.push(FieldError::invalid(apath, text, detail));
            }
        }
        let hostname = str_at(endpoint, "hostname");
        if !hostname.is_empty() {
            for m in is_dns1123_label(hostname) {
                errs.push(FieldError::invalid(format!("{path}.hostname"), hostname, m));
            }
        }
        let node = str_at(endpoint, "nodeName");
        if !node.is_empty() {
            for m in is_dns1123_subdomain(node) {
                errs.push(FieldError::invalid(format!("{path}.nodeName"), node, m));
            }
        }
    }
    let ports = arr_at(obj, "ports");
    if ports.len() > MAX_PORTS {
        errs.push(FieldError::too_many("ports", ports.len(), MAX_PORTS));
    }
    let mut names: Vec<&str> = Vec::new();
    for (j, p) in ports.iter().enumerate() {
        let ppath = format!("ports[{j}]");
        let name = str_at(p, "name");
        if !name.is_empty() {
            for m in is_dns1123_label(name) {
                errs.push(FieldError::invalid(format!("{ppath}.name"), name, m));
            }
        }
        if names.contains(&name) {
            errs.push(FieldError::duplicate(format!("{ppath}.name"), name));
        }
        names.push(name);
        if let Some(port) = int_at(p, "port") {
            for m in is_valid_port_num(port) {
                errs.push(FieldError::invalid_rendered(
                    format!("{ppath}.port"),
                    port.to_string(),
                    m,
                ));
            }
        }
        check_enum(p, "protocol", &ppath, &PORT_PROTOCOLS, errs);
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use super::*;
    use crate::api::validation::test_support::{has, has_prefix, messages};
    use serde_json::json;

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "svc"}, "spec": spec})
    }

    #[test]
    fn service_ports_rules() {
        assert!(has(
            &validate("Service", &service(json!({"type": "ClusterIP"})), None),
            "spec.ports: Required value"
        ));
        assert!(validate("Service", &service(json!({"clusterIP": "None"})), None).is_empty());
        assert!(validate(
            "Service",
            &service(json!({"type": "ExternalName", "externalName": "example.com"})),
            None
        )
        .is_empty());

        let spec = json!({"ports": [
            {"port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "web", "port": 0, "protocol": "HTTP", "targetPort": "Bad_Name"},
            {"name": "web", "port": 81, "targetPort": 0}
        ]});
        let errs = validate("Service", &service(spec), None);
        assert!(has(&errs, "spec.ports[0].name: Required value"));
        assert!(has(
            &errs,
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        ));
        assert!(has(&errs, "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""));
        assert!(has_prefix(
            &errs,
            "spec.ports[1].targetPort: Invalid value: \"Bad_Name\""
        ));
        assert!(has(&errs, "spec.ports[2].name: Duplicate value: \"web\""));
        assert!(has(
            &errs,
            "spec.ports[2].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"
        ));
    }

    #[test]
    fn service_type_affinity_and_node_port() {
        let spec = json!({"type": "Magic", "sessionAffinity": "Sticky", "ports": [{"port": 80, "nodePort": 30000}]});
        let errs = validate("Service", &service(spec), None);
        assert!(has(&errs, "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""));
        assert!(has(&errs, "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""));
        let cip = json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30000}]});
        assert!(has(
            &validate("Service", &service(cip), None),
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
        ));
        let np = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 99999}]});
        assert!(has(&validate("Service", &service(np), None), "spec.ports[0].nodePort: Invalid value: 99999: must be between 1 and 65535, inclusive"),
            "range is the allocator's business, but the port number must still be a port");
        let ext = json!({"type": "ExternalName"});
        assert!(has(
            &validate("Service", &service(ext), None),
            "spec.externalName: Required value"
        ));
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let old = service(
            json!({"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"], "ports": [{"port": 80}]}),
        );
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.43.0.11");
        new["spec"]["clusterIPs"] = json!(["10.43.0.11"]);
        assert_eq!(
            messages(&validate("Service", &new, Some(&old))),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.11\"}: may not change once set"]
        );
        let mut omitted = old.clone();
        omitted["spec"].as_object_mut().unwrap().remove("clusterIP");
        omitted["spec"]
            .as_object_mut()
            .unwrap()
            .remove("clusterIPs");
        assert!(validate("Service", &omitted, Some(&old)).is_empty());
        let mut bad = old.clone();
        bad["spec"]["clusterIP"] = json!("nope");
        bad["spec"].as_object_mut().unwrap().remove("clusterIPs");
        assert!(has(&validate("Service", &bad, None), "spec.clusterIPs[0]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
    }

    #[test]
    fn endpoints_checks() {
        let obj = json!({"metadata": {"name": "svc"}, "subsets": [
            {"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80, "protocol": "TCP"}]},
            {"ports": [{"port": 70000}, {"name": "b", "port": 1, "protocol": "XTP"}]},
            {"addresses": [{"ip": "999.1.1.1"}]}
        ]});
        let errs = validate("Endpoints", &obj, None);
        assert!(has(
            &errs,
            "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`"
        ));
        assert!(has(&errs, "subsets[1].ports[0].name: Required value"));
        assert!(has(&errs, "subsets[1].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"));
        assert!(has_prefix(
            &errs,
            "subsets[1].ports[1].protocol: Unsupported value: \"XTP\""
        ));
        assert!(has(&errs, "subsets[2].addresses[0].ip: Invalid value: \"999.1.1.1\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }
}
