//! APIService rules (upstream kube-aggregator `ValidateAPIService`): the name is
//! `<version>.<group>`, group and version are DNS names, both priorities are bounded,
//! and a service-backed APIService names its service and a valid port while a local
//! one (no service) carries no TLS settings.

use serde_json::Value;

use super::field_error::FieldError;
use super::names::{is_dns1035_label, is_dns1123_subdomain, is_valid_port_num};
use super::Errs;

pub(super) fn validate_api_service(obj: &Value, errs: &mut Errs) {
    let spec = &obj["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let version = spec["version"].as_str().unwrap_or("");
    let name = obj["metadata"]["name"].as_str().unwrap_or("");
    let required_name = format!("{version}.{group}");
    if !name.is_empty()
        && super::rbac::is_path_segment_name(name).is_empty()
        && name != required_name
    {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            format!("must be `spec.version+\".\"+spec.group`: {required_name:?}"),
        ));
    }
    if group.is_empty() && version != "v1" {
        errs.push(FieldError::required(
            "spec.group",
            "only v1 may have an empty group and it better be legacy kube",
        ));
    }
    if !group.is_empty() {
        for e in is_dns1123_subdomain(group) {
            errs.push(FieldError::invalid("spec.group", group, e));
        }
    }
    for e in is_dns1035_label(version) {
        errs.push(FieldError::invalid("spec.version", version, e));
    }
    let group_priority = spec["groupPriorityMinimum"].as_i64().unwrap_or(0);
    if group_priority <= 0 || group_priority > 20000 {
        errs.push(FieldError::invalid_rendered(
            "spec.groupPriorityMinimum",
            group_priority.to_string(),
            "must be positive and less than 20000",
        ));
    }
    let version_priority = spec["versionPriority"].as_i64().unwrap_or(0);
    if version_priority <= 0 || version_priority > 1000 {
        errs.push(FieldError::invalid_rendered(
            "spec.versionPriority",
            version_priority.to_string(),
            "must be positive and less than 1000",
        ));
    }
    let ca_bundle = spec["caBundle"].as_str().unwrap_or("");
    let insecure = spec["insecureSkipTLSVerify"].as_bool().unwrap_or(false);
    let service = &spec["service"];
    if service.is_null() {
        if !ca_bundle.is_empty() {
            errs.push(FieldError::invalid(
                "spec.caBundle",
                &format!("{} bytes", decoded_len(ca_bundle)),
                "local APIServices may not have a caBundle",
            ));
        }
        if insecure {
            errs.push(FieldError::invalid_rendered(
                "spec.insecureSkipTLSVerify",
                "true",
                "local APIServices may not have insecureSkipTLSVerify",
            ));
        }
        return;
    }
    if service["namespace"].as_str().unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.service.namespace", ""));
    }
    if service["name"].as_str().unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.service.name", ""));
    }
    let port = service["port"].as_i64().unwrap_or(0);
    let port_errs = is_valid_port_num(port);
    if !port_errs.is_empty() {
        errs.push(FieldError::invalid_rendered(
            "spec.service.port",
            port.to_string(),
            format!("port is not valid: {}", port_errs.join(", ")),
        ));
    }
    if insecure && !ca_bundle.is_empty() {
        errs.push(FieldError::invalid_rendered(
            "spec.insecureSkipTLSVerify",
            "true",
            "may not be true if caBundle is present",
        ));
    }
}

/// The length in bytes of base64 `data` once decoded (what upstream counts).
fn decoded_len(data: &str) -> usize {
    let padding = data.bytes().rev().take_while(|b| *b == b'=').count();
    (data.len() / 4 * 3).saturating_sub(padding)
}

#[cfg(test)]
mod tests {
    use super::super::test_support::{has, messages};
    use super::super::validate;
    use serde_json::{json, Value};

    fn api_service(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "apiregistration.k8s.io/v1", "kind": "APIService",
            "metadata": {"name": name}, "spec": spec})
    }

    #[test]
    fn published_metrics_server_api_service_is_valid() {
        let obj = api_service(
            "v1beta1.metrics.k8s.io",
            json!({"group": "metrics.k8s.io", "version": "v1beta1",
                "groupPriorityMinimum": 100, "versionPriority": 100,
                "insecureSkipTLSVerify": true,
                "service": {"name": "metrics-server", "namespace": "kube-system", "port": 443}}),
        );
        assert!(validate("APIService", &obj, None).is_empty());
    }

    #[test]
    fn the_name_must_be_version_dot_group() {
        let obj = api_service(
            "metrics",
            json!({"group": "metrics.k8s.io", "version": "v1beta1",
                "groupPriorityMinimum": 100, "versionPriority": 100}),
        );
        assert_eq!(
            messages(&validate("APIService", &obj, None)),
            [
                r#"metadata.name: Invalid value: "metrics": must be `spec.version+"."+spec.group`: "v1beta1.metrics.k8s.io""#
            ]
        );
    }

    #[test]
    fn priorities_service_and_tls_settings_are_checked() {
        let obj = api_service(
            "v1.example.com",
            json!({"group": "example.com", "version": "v1",
                "groupPriorityMinimum": 0, "versionPriority": 1001,
                "insecureSkipTLSVerify": true, "caBundle": "AAAA",
                "service": {"name": "", "namespace": "x", "port": 70000}}),
        );
        let errs = validate("APIService", &obj, None);
        has(
            &errs,
            "spec.groupPriorityMinimum: Invalid value: 0: must be positive and less than 20000",
        );
        has(
            &errs,
            "spec.versionPriority: Invalid value: 1001: must be positive and less than 1000",
        );
        has(&errs, "spec.service.name: Required value");
        has(
            &errs,
            "spec.service.port: Invalid value: 70000: port is not valid: must be between 1 and 65535, inclusive",
        );
        has(
            &errs,
            "spec.insecureSkipTLSVerify: Invalid value: true: may not be true if caBundle is present",
        );
    }

    #[test]
    fn local_api_services_carry_no_tls_settings() {
        let obj = api_service(
            "v1.apps",
            json!({"group": "apps", "version": "v1", "groupPriorityMinimum": 17800,
                "versionPriority": 15, "caBundle": "AAAA"}),
        );
        assert_eq!(
            messages(&validate("APIService", &obj, None)),
            [
                r#"spec.caBundle: Invalid value: "3 bytes": local APIServices may not have a caBundle"#
            ]
        );
        let legacy = api_service(
            "v2.",
            json!({"group": "", "version": "v2", "groupPriorityMinimum": 1, "versionPriority": 1}),
        );
        has(
            &validate("APIService", &legacy, None),
            "spec.group: Required value: only v1 may have an empty group and it better be legacy kube",
        );
    }
}
