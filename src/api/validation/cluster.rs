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

/// Upstream's length limits of events.k8s.io fields (`pkg/apis/core/validation/events.go`).
const REPORTING_INSTANCE_LENGTH_LIMIT: usize = 128;
const ACTION_LENGTH_LIMIT: usize = 128;
const REASON_LENGTH_LIMIT: usize = 128;
const NOTE_LENGTH_LIMIT: usize = 1024;

/// The API an Event write came through: the rules (and one field name) differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventApi {
    /// core/v1: legacy rules only (backwards compatibility).
    Core,
    /// events.k8s.io/v1: legacy rules, then upstream's strict rules for new events.
    EventsV1,
}

/// Upstream `ValidateEventCreate`/`ValidateEventUpdate` on the stored (core) shape:
/// `legacyValidateEvent` for every write; for events.k8s.io/v1 writes also eventTime,
/// type and the deprecated fields on create, and the immutable fields on update.
pub(super) fn validate_event(obj: &Value, old: Option<&Value>, api: EventApi, errs: &mut Errs) {
    legacy_validate_event(obj, api, errs);
    if api == EventApi::Core {
        return;
    }
    match old {
        None => strict_validate_event_create(obj, errs),
        Some(old) => {
            if obj.get("series") != old.get("series") {
                validate_event_series(obj, errs);
            }
            for f in [
                "involvedObject",
                "reason",
                "message",
                "source",
                "firstTimestamp",
                "lastTimestamp",
                "count",
                "type",
                "eventTime",
                "action",
                "related",
                "reportingComponent",
                "reportingInstance",
            ] {
                let (new_v, old_v) = (set_field(obj, f), set_field(old, f));
                if new_v != old_v {
                    let path = if f == "reportingComponent" {
                        "reportingController"
                    } else {
                        f
                    };
                    errs.push(match new_v.and_then(Value::as_str) {
                        Some(s) => FieldError::invalid(path, s, "field is immutable"),
                        None => FieldError::invalid_rendered(
                            path,
                            new_v.map(Value::to_string).unwrap_or_else(|| "null".into()),
                            "field is immutable",
                        ),
                    });
                }
            }
        }
    }
}

/// A field's value unless it is absent, null or the zero value Go would not tell apart.
fn set_field<'a>(obj: &'a Value, f: &str) -> Option<&'a Value> {
    obj.get(f).filter(|v| match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Number(n) => n.as_i64() != Some(0),
        Value::Object(m) => !m.is_empty(),
        _ => true,
    })
}

fn legacy_validate_event(obj: &Value, api: EventApi, errs: &mut Errs) {
    let reporting_path = match api {
        EventApi::Core => "reportingComponent",
        EventApi::EventsV1 => "reportingController",
    };
    let namespace = obj
        .get("metadata")
        .map(|m| str_at(m, "namespace"))
        .unwrap_or("");
    let involved = obj.get("involvedObject").unwrap_or(&Value::Null);
    let involved_ns = str_at(involved, "namespace");
    if set_field(obj, "eventTime").is_none() {
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
        return;
    }
    if involved_ns.is_empty() && namespace != "default" && namespace != "kube-system" {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ));
    }
    let controller = str_at(obj, "reportingComponent");
    if controller.is_empty() {
        errs.push(FieldError::required(reporting_path, ""));
    }
    for m in is_qualified_name(controller) {
        errs.push(FieldError::invalid(reporting_path, controller, m));
    }
    let instance = str_at(obj, "reportingInstance");
    if instance.is_empty() {
        errs.push(FieldError::required("reportingInstance", ""));
    }
    if instance.len() > REPORTING_INSTANCE_LENGTH_LIMIT {
        errs.push(at_most(
            "reportingInstance",
            REPORTING_INSTANCE_LENGTH_LIMIT,
        ));
    }
    let action = str_at(obj, "action");
    if action.is_empty() {
        errs.push(FieldError::required("action", ""));
    }
    if action.len() > ACTION_LENGTH_LIMIT {
        errs.push(at_most("action", ACTION_LENGTH_LIMIT));
    }
    let reason = str_at(obj, "reason");
    if reason.is_empty() {
        errs.push(FieldError::required("reason", ""));
    }
    if reason.len() > REASON_LENGTH_LIMIT {
        errs.push(at_most("reason", REASON_LENGTH_LIMIT));
    }
    if str_at(obj, "message").len() > NOTE_LENGTH_LIMIT {
        errs.push(at_most("message", NOTE_LENGTH_LIMIT));
    }
}

/// Upstream reports these with an empty value: `Invalid value: "": can have at most N characters`.
fn at_most(path: &str, limit: usize) -> FieldError {
    FieldError::invalid(path, "", format!("can have at most {limit} characters"))
}

fn strict_validate_event_create(obj: &Value, errs: &mut Errs) {
    validate_event_series(obj, errs);
    if set_field(obj, "eventTime").is_none() {
        errs.push(FieldError::required("eventTime", ""));
    }
    let event_type = str_at(obj, "type");
    if event_type != "Normal" && event_type != "Warning" {
        errs.push(FieldError::invalid(
            "type",
            "",
            format!("has invalid value: {event_type}"),
        ));
    }
    for (core, v1) in [
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ] {
        if set_field(obj, core).is_some() {
            errs.push(FieldError::invalid(v1, "", "needs to be unset"));
        }
    }
    let source = obj.get("source").unwrap_or(&Value::Null);
    if !str_at(source, "component").is_empty() || !str_at(source, "host").is_empty() {
        errs.push(FieldError::invalid(
            "deprecatedSource",
            "",
            "needs to be unset",
        ));
    }
}

fn validate_event_series(obj: &Value, errs: &mut Errs) {
    let Some(series) = obj.get("series").filter(|s| s.is_object()) else {
        return;
    };
    if int_at(series, "count").unwrap_or(0) < 2 {
        errs.push(FieldError::invalid(
            "series.count",
            "",
            "should be at least 2",
        ));
    }
    if str_at(series, "lastObservedTime").is_empty() {
        errs.push(FieldError::required("series.lastObservedTime", ""));
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

    fn v1_event() -> serde_json::Value {
        json!({
            "apiVersion": "v1", "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns"},
            "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p"},
            "eventTime": "2026-12-04T10:00:00.000000Z",
            "reportingComponent": "example.com/ctl",
            "reportingInstance": "ctl-1",
            "action": "Check",
            "reason": "Checked",
            "type": "Normal",
            "message": "fine",
        })
    }

    #[test]
    fn a_complete_v1_event_is_valid() {
        assert!(super::super::validate_event_v1(&v1_event(), None).is_empty());
    }

    #[test]
    fn v1_creates_need_event_time_reporting_fields_and_a_known_type() {
        let mut ev = v1_event();
        for f in [
            "eventTime",
            "reportingComponent",
            "reportingInstance",
            "action",
            "reason",
        ] {
            ev.as_object_mut().unwrap().remove(f);
        }
        ev["type"] = json!("Odd");
        let errs = messages(&super::super::validate_event_v1(&ev, None));
        assert!(
            errs.contains(&"eventTime: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"type: Invalid value: \"\": has invalid value: Odd".to_string()),
            "{errs:?}"
        );
        // Without eventTime the legacy rules do not ask for the reporting fields.
        assert!(
            !errs.iter().any(|e| e.starts_with("reportingController")),
            "{errs:?}"
        );
        let mut ev = v1_event();
        ev["reportingComponent"] = json!("");
        ev["reportingInstance"] = json!("i".repeat(129));
        ev["action"] = json!("");
        ev["message"] = json!("n".repeat(1025));
        let errs = messages(&super::super::validate_event_v1(&ev, None));
        assert!(
            errs.contains(&"reportingController: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(
                &"reportingInstance: Invalid value: \"\": can have at most 128 characters"
                    .to_string()
            ),
            "{errs:?}"
        );
        assert!(
            errs.contains(&"action: Required value".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(
                &"message: Invalid value: \"\": can have at most 1024 characters".to_string()
            ),
            "{errs:?}"
        );
    }

    #[test]
    fn v1_creates_refuse_the_deprecated_fields_and_short_series() {
        let mut ev = v1_event();
        ev["count"] = json!(2);
        ev["firstTimestamp"] = json!("2026-12-04T10:00:00Z");
        ev["source"] = json!({"component": "x"});
        ev["series"] = json!({"count": 1});
        let errs = messages(&super::super::validate_event_v1(&ev, None));
        for want in [
            "deprecatedCount: Invalid value: \"\": needs to be unset",
            "deprecatedFirstTimestamp: Invalid value: \"\": needs to be unset",
            "deprecatedSource: Invalid value: \"\": needs to be unset",
            "series.count: Invalid value: \"\": should be at least 2",
            "series.lastObservedTime: Required value",
        ] {
            assert!(errs.contains(&want.to_string()), "{want} in {errs:?}");
        }
    }

    #[test]
    fn v1_updates_keep_what_happened_and_may_grow_the_series() {
        let old = v1_event();
        let mut grown = old.clone();
        grown["series"] = json!({"count": 2, "lastObservedTime": "2026-12-04T10:01:00.000000Z"});
        assert!(super::super::validate_event_v1(&grown, Some(&old)).is_empty());
        let mut changed = old.clone();
        changed["reason"] = json!("Other");
        changed["reportingComponent"] = json!("other");
        let errs = messages(&super::super::validate_event_v1(&changed, Some(&old)));
        assert!(
            errs.contains(&"reason: Invalid value: \"Other\": field is immutable".to_string()),
            "{errs:?}"
        );
        assert!(
            errs.contains(
                &"reportingController: Invalid value: \"other\": field is immutable".to_string()
            ),
            "{errs:?}"
        );
        // Core updates keep the legacy rules only.
        assert!(validate("Event", &changed, Some(&old)).is_empty());
    }

    #[test]
    fn core_events_with_an_event_time_follow_the_legacy_rules() {
        let mut ev = v1_event();
        ev["reportingComponent"] = json!("");
        let errs = messages(&validate("Event", &ev, None));
        assert_eq!(errs[0], "reportingComponent: Required value");
        // As upstream, the empty name also fails the qualified-name check.
        assert!(
            errs[1..]
                .iter()
                .all(|e| e.starts_with("reportingComponent: Invalid value: \"\"")),
            "{errs:?}"
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
