//! NetworkPolicy rules (upstream `ValidateNetworkPolicySpec`): valid selectors, ports
//! (protocol TCP/UDP/SCTP, a valid number or name, `endPort` only after a numeric
//! `port` and not below it), peers (exactly one kind when `ipBlock` is used, at least
//! one), ipBlocks whose `except` entries are strict subsets of `cidr`, and at most the
//! two known policy types.

use ipnet::IpNet;
use serde_json::Value;

use super::field_error::FieldError;
use super::names::{is_valid_port_name, is_valid_port_num};
use super::workloads::validate_label_selector;
use super::{arr_at, field, Errs};

/// The values of `spec.policyTypes[*]`.
pub const POLICY_TYPES: [&str; 2] = ["Ingress", "Egress"];
const PROTOCOLS: [&str; 3] = ["TCP", "UDP", "SCTP"];
const CIDR_ERR: &str = "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)";

pub(super) fn validate_network_policy(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_label_selector(
        spec.get("podSelector").unwrap_or(&Value::Null),
        "spec.podSelector",
        errs,
    );
    for (direction, peers_key) in [("ingress", "from"), ("egress", "to")] {
        for (i, rule) in arr_at(spec, direction).iter().enumerate() {
            let path = format!("spec.{direction}[{i}]");
            for (j, port) in arr_at(rule, "ports").iter().enumerate() {
                validate_port(port, &format!("{path}.ports[{j}]"), errs);
            }
            for (j, peer) in arr_at(rule, peers_key).iter().enumerate() {
                validate_peer(peer, &format!("{path}.{peers_key}[{j}]"), errs);
            }
        }
    }
    let types = arr_at(spec, "policyTypes");
    if types.len() > POLICY_TYPES.len() {
        let rendered = format!(
            "[{}]",
            types
                .iter()
                .map(|t| t.as_str().unwrap_or("").to_string())
                .collect::<Vec<_>>()
                .join(" ")
        );
        errs.push(FieldError::invalid_rendered(
            "spec.policyTypes",
            format!("&{rendered}"),
            "may not specify more than two policyTypes",
        ));
        return;
    }
    for (i, t) in types.iter().enumerate() {
        let t = t.as_str().unwrap_or("");
        if !POLICY_TYPES.contains(&t) {
            errs.push(FieldError::not_supported(
                format!("spec.policyTypes[{i}]"),
                t,
                &POLICY_TYPES,
            ));
        }
    }
}

fn validate_port(port: &Value, path: &str, errs: &mut Errs) {
    if let Some(protocol) = field(port, "protocol").and_then(Value::as_str) {
        if !PROTOCOLS.contains(&protocol) {
            errs.push(FieldError::not_supported(
                format!("{path}.protocol"),
                protocol,
                &PROTOCOLS,
            ));
        }
    }
    let end_port = field(port, "endPort").and_then(Value::as_i64);
    match field(port, "port") {
        Some(Value::Number(n)) => {
            let number = n.as_i64().unwrap_or(0);
            for msg in is_valid_port_num(number) {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.port"),
                    number.to_string(),
                    msg,
                ));
            }
            if let Some(end) = end_port {
                if end < number {
                    errs.push(FieldError::invalid_rendered(
                        format!("{path}.endPort"),
                        number.to_string(),
                        "must be greater than or equal to `port`",
                    ));
                }
                for msg in is_valid_port_num(end) {
                    errs.push(FieldError::invalid_rendered(
                        format!("{path}.endPort"),
                        end.to_string(),
                        msg,
                    ));
                }
            }
        }
        Some(Value::String(name)) => {
            if let Some(end) = end_port {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.endPort"),
                    end.to_string(),
                    "may not be specified when `port` is non-numeric",
                ));
            }
            for msg in is_valid_port_name(name) {
                errs.push(FieldError::invalid(format!("{path}.port"), name, msg));
            }
        }
        _ => {
            if let Some(end) = end_port {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.endPort"),
                    end.to_string(),
                    "may not be specified when `port` is not specified",
                ));
            }
        }
    }
}

fn validate_peer(peer: &Value, path: &str, errs: &mut Errs) {
    let mut kinds = 0;
    for key in ["podSelector", "namespaceSelector"] {
        if let Some(selector) = field(peer, key) {
            kinds += 1;
            validate_label_selector(selector, &format!("{path}.{key}"), errs);
        }
    }
    let ip_block = field(peer, "ipBlock");
    if let Some(block) = ip_block {
        kinds += 1;
        validate_ip_block(block, &format!("{path}.ipBlock"), errs);
    }
    if kinds == 0 {
        errs.push(FieldError::required(path, "must specify a peer"));
    } else if kinds > 1 && ip_block.is_some() {
        errs.push(FieldError::forbidden(
            path,
            "may not specify both ipBlock and another peer",
        ));
    }
}

fn validate_ip_block(block: &Value, path: &str, errs: &mut Errs) {
    let cidr = field(block, "cidr").and_then(Value::as_str).unwrap_or("");
    if cidr.is_empty() {
        errs.push(FieldError::required(format!("{path}.cidr"), ""));
        return;
    }
    let Ok(net) = cidr.parse::<IpNet>() else {
        errs.push(FieldError::invalid(format!("{path}.cidr"), cidr, CIDR_ERR));
        return;
    };
    for (i, except) in arr_at(block, "except").iter().enumerate() {
        let except = except.as_str().unwrap_or("");
        let except_path = format!("{path}.except[{i}]");
        let Ok(inner) = except.parse::<IpNet>() else {
            errs.push(FieldError::invalid(&except_path, except, CIDR_ERR));
            continue;
        };
        if !net.contains(&inner.addr()) || net.prefix_len() >= inner.prefix_len() {
            errs.push(FieldError::invalid(
                &except_path,
                except,
                "must be a strict subset of `cidr`",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{has, messages};
    use super::super::validate;
    use serde_json::{json, Value};

    fn policy(spec: Value) -> Value {
        json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
               "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn errors(spec: Value) -> Vec<super::FieldError> {
        validate("NetworkPolicy", &policy(spec), None)
    }

    #[test]
    fn a_complete_policy_is_valid() {
        let errs = errors(json!({
            "podSelector": {"matchLabels": {"app": "db"}},
            "policyTypes": ["Ingress", "Egress"],
            "ingress": [{"from": [
                {"podSelector": {"matchLabels": {"role": "web"}},
                 "namespaceSelector": {"matchLabels": {"team": "a"}}},
                {"ipBlock": {"cidr": "172.17.0.0/16", "except": ["172.17.1.0/24"]}}],
              "ports": [{"protocol": "TCP", "port": 5432}, {"port": "http"},
                        {"protocol": "UDP", "port": 3000, "endPort": 3010}]}],
            "egress": [{"to": [{"ipBlock": {"cidr": "10.0.0.0/24"}}]}],
        }));
        assert!(errs.is_empty(), "{:?}", messages(&errs));
    }

    #[test]
    fn bad_ports_are_refused_with_upstream_messages() {
        let errs = errors(json!({"podSelector": {}, "ingress": [{"ports": [
            {"protocol": "ICMP", "port": 80},
            {"port": 0},
            {"port": 90, "endPort": 80},
            {"port": "http", "endPort": 81},
            {"endPort": 82},
            {"port": "not_a_name"},
        ]}]}));
        assert!(has(&errs, "spec.ingress[0].ports[0].protocol: Unsupported value: \"ICMP\": supported values: \"TCP\", \"UDP\", \"SCTP\""));
        assert!(has(
            &errs,
            "spec.ingress[0].ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        ));
        assert!(has(
            &errs,
            "spec.ingress[0].ports[2].endPort: Invalid value: 90: must be greater than or equal to `port`"
        ));
        assert!(has(
            &errs,
            "spec.ingress[0].ports[3].endPort: Invalid value: 81: may not be specified when `port` is non-numeric"
        ));
        assert!(has(
            &errs,
            "spec.ingress[0].ports[4].endPort: Invalid value: 82: may not be specified when `port` is not specified"
        ));
        assert!(
            messages(&errs)
                .iter()
                .any(|m| m
                    .starts_with("spec.ingress[0].ports[5].port: Invalid value: \"not_a_name\""))
        );
    }

    #[test]
    fn bad_peers_and_ip_blocks_are_refused() {
        let errs = errors(json!({"podSelector": {}, "egress": [{"to": [
            {},
            {"ipBlock": {"cidr": "10.0.0.0/8"}, "podSelector": {}},
            {"ipBlock": {"cidr": "10.0.0.0/33"}},
            {"ipBlock": {"cidr": "10.0.0.0/16", "except": ["10.1.0.0/24", "10.0.0.0/16"]}},
            {"ipBlock": {}},
        ]}]}));
        assert!(has(
            &errs,
            "spec.egress[0].to[0]: Required value: must specify a peer"
        ));
        assert!(has(
            &errs,
            "spec.egress[0].to[1]: Forbidden: may not specify both ipBlock and another peer"
        ));
        assert!(has(&errs, "spec.egress[0].to[2].ipBlock.cidr: Invalid value: \"10.0.0.0/33\": must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)"));
        assert!(has(
            &errs,
            "spec.egress[0].to[3].ipBlock.except[0]: Invalid value: \"10.1.0.0/24\": must be a strict subset of `cidr`"
        ));
        assert!(has(
            &errs,
            "spec.egress[0].to[3].ipBlock.except[1]: Invalid value: \"10.0.0.0/16\": must be a strict subset of `cidr`"
        ));
        assert!(has(
            &errs,
            "spec.egress[0].to[4].ipBlock.cidr: Required value"
        ));
    }

    #[test]
    fn unknown_policy_types_and_bad_selectors_are_refused() {
        let errs = errors(json!({"podSelector": {"matchLabels": {"a b": "c"}},
                                 "policyTypes": ["Ingress", "Sideways"]}));
        assert!(has(&errs, "spec.policyTypes[1]: Unsupported value: \"Sideways\": supported values: \"Ingress\", \"Egress\""));
        assert!(messages(&errs)
            .iter()
            .any(|m| m.starts_with("spec.podSelector.matchLabels: Invalid value: \"a b\"")));
        let errs = errors(json!({"podSelector": {},
                                 "policyTypes": ["Ingress", "Egress", "Ingress"]}));
        assert!(messages(&errs)[0].contains("may not specify more than two policyTypes"));
    }
}
