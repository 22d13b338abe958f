//! Namespace, Node, Event and Lease rules.

use serde_json::Value;

use super::field_error::FieldError;
use super::names::{is_qualified_name, is_valid_label_value};
use super::{arr_at, int_at, non_negative, obj_at, str_at, validate_resource_quantity, Errs};

pub(super) fn validate_namespace(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for (i, f) in arr_at(spec, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        let path = format!("spec.finalizers[{i}]");
        let msgs = is_qualified_name(f);
        for m in &msgs {
            errs.push(FieldError::invalid(&path, f, m.clone()));
        }
        if msgs.is_empty() && !f.contains('/') && f != "kubernetes" {
            errs.push(FieldError::invalid(
                &path,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

pub(super) const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

/// Upstream's words for a podCIDR changed after it was assigned.
const POD_CIDR_IMMUTABLE: &str = "node updates may not change podCIDR except from \"\" to valid";

pub(super) fn validate_node(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(old) = old {
        validate_pod_cidr_update(spec, old.get("spec").unwrap_or(&Value::Null), errs);
    }
    let status = obj.get("status").unwrap_or(&Value::Null);
    for list in ["capacity", "allocatable"] {
        for (resource, value) in obj_at(status, list).into_iter().flatten() {
            let path = format!("status.{list}.{resource}");
            validate_resource_quantity(resource, value, &path, errs);
        }
    }
    for (i, cidr) in arr_at(spec, "podCIDRs").iter().enumerate() {
        let cidr = cidr.as_str().unwrap_or("");
        if cidr.parse::<ipnet::IpNet>().is_err() {
            errs.push(FieldError::invalid(
                format!("spec.podCIDRs[{i}]"),
                cidr,
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            ));
        }
    }
    for (i, t) in arr_at(spec, "taints").iter().enumerate() {
        let path = format!("spec.taints[{i}]");
        let key = str_at(t, "key");
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{path}.key"), key, m));
        }
        let value = str_at(t, "value");
        for m in is_valid_label_value(value) {
            errs.push(FieldError::invalid(format!("{path}.value"), value, m));
        }
        match str_at(t, "effect") {
            "" => errs.push(FieldError::required(format!("{path}.effect"), "")),
            e if !TAINT_EFFECTS.contains(&e) => errs.push(FieldError::not_supported(
                format!("{path}.effect"),
                e,
                &TAINT_EFFECTS,
            )),
            _ => {}
        }
    }
    let pod_cidr = str_at(spec, "podCIDR");
    if !pod_cidr.is_empty() && pod_cidr.parse::<ipnet::IpNet>().is_err() {
        errs.push(FieldError::invalid(
            "spec.podCIDR",
            pod_cidr,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
    }
}

/// Upstream `ValidateNodeUpdate` for pod CIDRs: once assigned they never change (for
/// anyone; the node IPAM assigns each once).
fn validate_pod_cidr_update(spec: &Value, old_spec: &Value, errs: &mut Errs) {
    if !str_at(old_spec, "podCIDR").is_empty()
        && str_at(spec, "podCIDR") != str_at(old_spec, "podCIDR")
    {
        errs.push(FieldError::forbidden("spec.podCIDR", POD_CIDR_IMMUTABLE));
    }
    let old_cidrs = arr_at(old_spec, "podCIDRs");
    if !old_cidrs.is_empty() && arr_at(spec, "podCIDRs") != old_cidrs {
        errs.push(FieldError::forbidden("spec.podCIDRs", POD_CIDR_IMMUTABLE));
    }
}

pub(super) fn validate_event(obj: &Value, errs: &mut Errs) {
    let namespace = obj
        .get("metadata")
        .map(|m| str_at(m, "namespace"))
        .unwrap_or("");
    let involved = obj.get("involvedObject").unwrap_or(&Value::Null);
    let involved_ns = str_at(involved, "namespace");
    let mismatch = if involved_ns.is_empty() {
        !namespace.is_empty() && namespace != "default"
    } else {
        namespace != involved_ns
    };
    if mismatch {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ));
    }
}

pub(super) fn validate_lease(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(d) = int_at(spec, "leaseDurationSeconds") {
        if d <= 0 {
            errs.push(FieldError::invalid_rendered(
                "spec.leaseDurationSeconds",
                d.to_string(),
                "must be greater than 0",
            ));
        }
    }
    non_negative(spec, "leaseTransitions", "spec", errs);
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use crate::api::validation::test_support::{has_prefix, messages};
    use serde_json::json;

    #[test]
    fn namespace_finalizers() {
        let ok = json!({"metadata": {"name": "ns"}, "spec": {"finalizers": ["kubernetes", "example.com/x"]}});
        assert!(validate("Namespace", &ok, None).is_empty());
        let bad = json!({"metadata": {"name": "ns"}, "spec": {"finalizers": ["custom"]}});
        assert_eq!(messages(&validate("Namespace", &bad, None)), vec!["spec.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"]);
    }

    #[test]
    fn node_taints_and_pod_cidr() {
        let node = json!({"metadata": {"name": "n1.example"}, "spec": {"podCIDR": "10.42.0.0/24",
            "taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k2"}, {"key": "k3", "effect": "Bad"}]}});
        let errs = validate("Node", &node, None);
        assert_eq!(messages(&errs), vec![
            "spec.taints[1].effect: Required value",
            "spec.taints[2].effect: Unsupported value: \"Bad\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        ]);
        let bad_cidr = json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.42.0.0"}});
        assert!(has_prefix(
            &validate("Node", &bad_cidr, None),
            "spec.podCIDR: Invalid value: \"10.42.0.0\""
        ));
    }

    #[test]
    fn assigned_pod_cidrs_never_change() {
        let node = |cidr: &str| json!({"metadata": {"name": "n1"}, "spec": {"podCIDR": cidr, "podCIDRs": [cidr]}});
        let unassigned = json!({"metadata": {"name": "n1"}, "spec": {}});
        assert!(validate("Node", &node("10.42.1.0/24"), Some(&unassigned)).is_empty());
        let assigned = node("10.42.1.0/24");
        assert!(validate("Node", &assigned, Some(&assigned)).is_empty());
        assert_eq!(
            messages(&validate("Node", &node("10.42.2.0/24"), Some(&assigned))),
            vec![
                "spec.podCIDR: Forbidden: node updates may not change podCIDR except from \"\" to valid",
                "spec.podCIDRs: Forbidden: node updates may not change podCIDR except from \"\" to valid",
            ]
        );
        assert_eq!(validate("Node", &unassigned, Some(&assigned)).len(), 2);
    }

    #[test]
    fn node_capacity_and_allocatable_must_be_quantities() {
        let node = |cpu: serde_json::Value| {
            json!({"metadata": {"name": "n1"}, "status": {
                "capacity": {"cpu": cpu, "memory": "2Gi", "pods": "110"},
                "allocatable": {"cpu": "1500m", "ephemeral-storage": "1e9"}}})
        };
        assert!(validate("Node", &node(json!("2")), None).is_empty());
        for bad in ["*", "0x10", "lots", ""] {
            assert_eq!(
                messages(&validate("Node", &node(json!(bad)), None)),
                vec![format!("status.capacity.cpu: Invalid value: \"{bad}\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'")],
                "{bad}"
            );
        }
        assert_eq!(
            messages(&validate("Node", &node(json!("-1")), None)),
            vec!["status.capacity.cpu: Invalid value: \"-1\": must be greater than or equal to 0"]
        );
        let fractional_pods =
            json!({"metadata": {"name": "n1"}, "status": {"allocatable": {"pods": "1500m"}}});
        assert_eq!(
            messages(&validate("Node", &fractional_pods, None)),
            vec!["status.allocatable.pods: Invalid value: \"1500m\": must be an integer"]
        );
    }

    #[test]
    fn event_namespace_must_match_involved_object() {
        let ok = json!({"metadata": {"name": "e", "namespace": "ns"}, "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p"}});
        assert!(validate("Event", &ok, None).is_empty());
        let node_event = json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"kind": "Node", "name": "n"}});
        assert!(validate("Event", &node_event, None).is_empty());
        let bad = json!({"metadata": {"name": "e", "namespace": "other"}, "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p"}});
        assert_eq!(
            messages(&validate("Event", &bad, None)),
            vec!["involvedObject.namespace: Invalid value: \"ns\": does not match event.namespace"]
        );
    }

    #[test]
    fn lease_durations() {
        let lease = json!({"metadata": {"name": "node1"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        assert_eq!(
            messages(&validate("Lease", &lease, None)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn unknown_kinds_get_metadata_only() {
        assert!(validate(
            "ServiceAccount",
            &json!({"metadata": {"name": "default"}}),
            None
        )
        .is_empty());
        assert!(!validate("Widget", &json!({"metadata": {"name": "UPPER"}}), None).is_empty());
    }
}
