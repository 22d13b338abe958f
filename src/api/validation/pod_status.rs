//! Pod status rules (upstream `ValidatePodStatusUpdate`): what a write of the `status`
//! subresource is checked for. Such a write keeps the stored spec and metadata, so only
//! the status is looked at: condition types, the nominated node, the QoS class, the pod
//! and host IPs, and terminated containers that may not run again.

use std::collections::HashSet;
use std::net::IpAddr;

use serde_json::Value;

use super::field_error::{go_quote, FieldError};
use super::names::{is_dns1123_subdomain, is_qualified_name};
use super::{arr_at, str_at};

/// Condition types the system owns: any other type must be a qualified name.
const SYSTEM_CONDITIONS: [&str; 3] = ["PodScheduled", "Ready", "Initialized"];
/// Upstream `IsValidIP`'s detail.
const INVALID_IP: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";

/// Field errors of a status write from `old` to `new` (both whole pods).
pub fn validate_pod_status_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let status = new.get("status").unwrap_or(&Value::Null);
    let old_status = old.get("status").unwrap_or(&Value::Null);
    // Upstream reports condition types under `metadata.conditions` (its field path
    // starts from the metadata there) with a capitalised `Type`.
    for (i, c) in arr_at(status, "conditions").iter().enumerate() {
        let kind = str_at(c, "type");
        if SYSTEM_CONDITIONS.contains(&kind) {
            continue;
        }
        for m in is_qualified_name(kind) {
            errs.push(FieldError::invalid(
                format!("metadata.conditions[{i}].Type"),
                kind,
                m,
            ));
        }
    }
    let nominated = str_at(status, "nominatedNodeName");
    if !nominated.is_empty() && nominated != str_at(old_status, "nominatedNodeName") {
        for m in is_dns1123_subdomain(nominated) {
            errs.push(FieldError::invalid(
                "status.nominatedNodeName",
                nominated,
                m,
            ));
        }
    }
    let qos = str_at(status, "qosClass");
    if qos != str_at(old_status, "qosClass") {
        errs.push(FieldError::invalid(
            "status.qosClass",
            qos,
            "field is immutable",
        ));
    }
    let restart_policy = str_at(&new["spec"], "restartPolicy");
    container_state_transitions(
        arr_at(status, "containerStatuses"),
        arr_at(old_status, "containerStatuses"),
        restart_policy,
        &mut errs,
    );
    validate_ips(status, "podIPs", "PodIP", &mut errs);
    validate_ips(status, "hostIPs", "HostIP", &mut errs);
    errs
}

/// Upstream `ValidateContainerStateTransition`: unless the pod restarts its containers
/// always, a terminated container stays terminated (with `OnFailure`, one that failed
/// may run again).
fn container_state_transitions(
    new: &[Value],
    old: &[Value],
    restart_policy: &str,
    errs: &mut Vec<FieldError>,
) {
    if restart_policy == "Always" {
        return;
    }
    for (i, before) in old.iter().enumerate() {
        let Some(terminated) = before["state"].get("terminated").filter(|t| t.is_object()) else {
            continue;
        };
        let failed = terminated["exitCode"].as_i64().unwrap_or(0) != 0;
        if failed && restart_policy == "OnFailure" {
            continue;
        }
        let name = str_at(before, "name");
        for now in new.iter().filter(|s| str_at(s, "name") == name) {
            if !now["state"].get("terminated").is_some_and(Value::is_object) {
                errs.push(FieldError::forbidden(
                    format!("status.containerStatuses[{i}].state"),
                    "may not be transitioned to non-terminated state",
                ));
            }
        }
    }
}

/// Upstream `validatePodIPs`/`validateHostIPs`: every address valid, at most one per
/// family, none twice. `go_type` names the item type as Go prints it.
fn validate_ips(status: &Value, list: &str, go_type: &str, errs: &mut Vec<FieldError>) {
    let items = arr_at(status, list);
    let ips: Vec<&str> = items.iter().map(|item| str_at(item, "ip")).collect();
    for (i, ip) in ips.iter().enumerate() {
        if ip.parse::<IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                format!("status.{list}[{i}]"),
                ip,
                INVALID_IP,
            ));
        }
    }
    if ips.len() < 2 {
        return;
    }
    let parsed: Vec<IpAddr> = ips.iter().filter_map(|ip| ip.parse().ok()).collect();
    let dual_stack = parsed.len() == ips.len()
        && parsed.iter().any(IpAddr::is_ipv4)
        && parsed.iter().any(IpAddr::is_ipv6);
    if !dual_stack || ips.len() > 2 {
        let rendered: Vec<String> = ips
            .iter()
            .map(|ip| format!("core.{go_type}{{IP:{}}}", go_quote(ip)))
            .collect();
        errs.push(FieldError::invalid_rendered(
            format!("status.{list}"),
            format!("[]core.{go_type}{{{}}}", rendered.join(", ")),
            "may specify no more than one IP for each IP family",
        ));
    }
    let mut seen = HashSet::new();
    for (i, ip) in ips.iter().enumerate() {
        if !seen.insert(*ip) {
            errs.push(FieldError::duplicate_rendered(
                format!("status.{list}[{i}]"),
                format!("core.{go_type}{{IP:{}}}", go_quote(ip)),
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::validation::test_support::messages;
    use serde_json::json;

    fn pod(restart: &str, status: Value) -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"restartPolicy": restart,
            "containers": [{"name": "app", "image": "busybox"}]}, "status": status})
    }

    fn errors(old: Value, new: Value) -> Vec<String> {
        messages(&validate_pod_status_update(
            &pod("Never", new),
            &pod("Never", old),
        ))
    }

    #[test]
    fn a_status_the_kubelet_and_the_scheduler_write_passes() {
        let old = json!({"phase": "Pending", "qosClass": "BestEffort"});
        let new = json!({"phase": "Running", "qosClass": "BestEffort",
            "conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable"},
                           {"type": "Ready", "status": "True"},
                           {"type": "example.com/gate", "status": "True"}],
            "podIP": "10.42.0.5", "podIPs": [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}],
            "hostIPs": [{"ip": "192.168.1.2"}], "nominatedNodeName": "node-1",
            "containerStatuses": [{"name": "app", "state": {"running": {}}}]});
        assert_eq!(errors(old, new), Vec::<String>::new());
    }

    #[test]
    fn bad_ips_and_condition_types_are_refused_as_upstream() {
        let old = json!({"qosClass": "BestEffort"});
        let new = json!({"qosClass": "BestEffort",
            "conditions": [{"type": "not a name", "status": "True"}],
            "podIPs": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.5"}],
            "hostIPs": [{"ip": "bogus"}], "nominatedNodeName": "Node_1"});
        let errs = errors(old, new);
        assert!(errs.contains(&"metadata.conditions[0].Type: Invalid value: \"not a name\": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')".to_string()), "{errs:#?}");
        assert!(errs.contains(&"status.podIPs: Invalid value: []core.PodIP{core.PodIP{IP:\"10.42.0.5\"}, core.PodIP{IP:\"10.42.0.5\"}}: may specify no more than one IP for each IP family".to_string()), "{errs:#?}");
        assert!(errs.contains(
            &"status.podIPs[1]: Duplicate value: core.PodIP{IP:\"10.42.0.5\"}".to_string()
        ));
        assert!(errs.contains(&"status.hostIPs[0]: Invalid value: \"bogus\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)".to_string()));
        assert!(errs
            .iter()
            .any(|e| e.starts_with("status.nominatedNodeName: Invalid value: \"Node_1\"")));
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }

    #[test]
    fn the_qos_class_is_immutable_and_an_unchanged_nominated_node_is_not_rechecked() {
        let old = json!({"qosClass": "BestEffort", "nominatedNodeName": "Legacy_Name"});
        let new = json!({"qosClass": "Burstable", "nominatedNodeName": "Legacy_Name"});
        assert_eq!(
            errors(old, new),
            ["status.qosClass: Invalid value: \"Burstable\": field is immutable"]
        );
    }

    #[test]
    fn terminated_containers_of_pods_that_never_restart_stay_terminated() {
        let old = json!({"containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 1}}}]});
        let new = json!({"containerStatuses": [{"name": "app", "state": {"running": {}}}]});
        assert_eq!(
            errors(old.clone(), new.clone()),
            ["status.containerStatuses[0].state: Forbidden: may not be transitioned to non-terminated state"]
        );
        let on_failure = validate_pod_status_update(&pod("OnFailure", new), &pod("OnFailure", old));
        assert!(on_failure.is_empty(), "a failed container may run again");
    }
}
