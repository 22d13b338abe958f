//! Ingress and IngressClass rules (upstream `pkg/apis/networking/validation`): rules or a
//! default backend, hosts as DNS names (a leading `*.` wildcard allowed, IPs refused),
//! paths by type (Exact and Prefix absolute and clean), backends naming a Service with a
//! port name XOR number or a resource, TLS hosts, the class field and legacy annotation
//! agreeing; classes with a domain-prefixed, immutable controller and parameters scoped
//! as they say.

use serde_json::Value;

use super::field_error::{render, FieldError};
use super::names::{is_dns1035_label, is_dns1123_subdomain, is_valid_port_name, FIELD_IMMUTABLE};
use super::rbac::is_path_segment_name;
use super::{arr_at, field, str_at, Errs};
use crate::api::ingress::LEGACY_CLASS_ANNOTATION;

/// The path types an Ingress path may have.
pub const PATH_TYPES: [&str; 3] = ["Exact", "ImplementationSpecific", "Prefix"];
const INVALID_PATH_SEQUENCES: [&str; 5] = ["//", "/./", "/../", "%2f", "%2F"];
const INVALID_PATH_SUFFIXES: [&str; 2] = ["/..", "/."];
/// Upstream `maxLenIngressClassController`.
const MAX_CONTROLLER_LEN: usize = 250;
const WILDCARD_DNS1123_SUBDOMAIN_MSG: &str = "a wildcard DNS-1123 subdomain must start with '*.', followed by a valid DNS subdomain, which must consist of lower case alphanumeric characters, '-' or '.' and end with an alphanumeric character (e.g. '*.example.com', regex used for validation is '\\*\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')";

/// Upstream `IsWildcardDNS1123Subdomain`.
pub fn is_wildcard_dns1123_subdomain(host: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if host.len() > 253 {
        errs.push("must be no more than 253 characters".to_string());
    }
    let valid = host
        .strip_prefix("*.")
        .is_some_and(|rest| is_dns1123_subdomain(rest).is_empty());
    if !valid {
        errs.push(WILDCARD_DNS1123_SUBDOMAIN_MSG.to_string());
    }
    errs
}

/// A rule or TLS host: a DNS name (or `*.` wildcard), never an IP address.
fn validate_host(host: &str, path: &str, check_ip: bool, errs: &mut Errs) {
    if check_ip && host.parse::<std::net::IpAddr>().is_ok() {
        errs.push(FieldError::invalid(
            path,
            host,
            "must be a DNS name, not an IP address",
        ));
    }
    let problems = if host.contains('*') {
        is_wildcard_dns1123_subdomain(host)
    } else {
        is_dns1123_subdomain(host)
    };
    for msg in problems {
        errs.push(FieldError::invalid(path, host, msg));
    }
}

fn validate_typed_reference(r: &Value, path: &str, errs: &mut Errs) {
    if let Some(group) = field(r, "apiGroup").and_then(Value::as_str) {
        for msg in is_dns1123_subdomain(group) {
            errs.push(FieldError::invalid(format!("{path}.apiGroup"), group, msg));
        }
    }
    for key in ["kind", "name"] {
        let value = str_at(r, key);
        if value.is_empty() {
            errs.push(FieldError::required(
                format!("{path}.{key}"),
                format!("{key} is required"),
            ));
        }
        for msg in is_path_segment_name(value) {
            errs.push(FieldError::invalid(format!("{path}.{key}"), value, msg));
        }
    }
}

/// Upstream `validateIngressBackend`.
fn validate_backend(backend: &Value, path: &str, errs: &mut Errs) {
    let resource = field(backend, "resource");
    let service = field(backend, "service");
    match (resource, service) {
        (Some(_), Some(_)) => errs.push(FieldError::invalid(
            path,
            "",
            "cannot set both resource and service backends",
        )),
        (Some(r), None) => validate_typed_reference(r, &format!("{path}.resource"), errs),
        (None, Some(svc)) => {
            let name = str_at(svc, "name");
            if name.is_empty() {
                errs.push(FieldError::required(format!("{path}.service.name"), ""));
            } else {
                for msg in is_dns1035_label(name) {
                    errs.push(FieldError::invalid(
                        format!("{path}.service.name"),
                        name,
                        msg,
                    ));
                }
            }
            let port = svc.get("port").unwrap_or(&Value::Null);
            let port_name = str_at(port, "name");
            let number = port.get("number").and_then(Value::as_i64).unwrap_or(0);
            match (port_name.is_empty(), number == 0) {
                (false, false) => errs.push(FieldError::invalid(
                    path,
                    "",
                    "cannot set both port name & port number",
                )),
                (false, true) => {
                    for msg in is_valid_port_name(port_name) {
                        errs.push(FieldError::invalid(
                            format!("{path}.service.port.name"),
                            port_name,
                            msg,
                        ));
                    }
                }
                (true, false) => {
                    for msg in super::is_valid_port_num(number) {
                        errs.push(FieldError::invalid_rendered(
                            format!("{path}.service.port.number"),
                            number.to_string(),
                            msg,
                        ));
                    }
                }
                (true, true) => errs.push(FieldError::required(
                    path,
                    "port name or number is required",
                )),
            }
        }
        (None, None) => errs.push(FieldError::invalid(
            path,
            "",
            "resource or service backend is required",
        )),
    }
}

/// Upstream `validateHTTPIngressPath`.
fn validate_http_path(p: &Value, path: &str, errs: &mut Errs) {
    let value = str_at(p, "path");
    let Some(path_type) = field(p, "pathType").and_then(Value::as_str) else {
        errs.push(FieldError::required(
            format!("{path}.pathType"),
            "pathType must be specified",
        ));
        return;
    };
    let path_field = format!("{path}.path");
    match path_type {
        "Exact" | "Prefix" => {
            if !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    &path_field,
                    value,
                    "must be an absolute path",
                ));
            }
            for seq in INVALID_PATH_SEQUENCES {
                if value.contains(seq) {
                    errs.push(FieldError::invalid(
                        &path_field,
                        value,
                        format!("must not contain '{seq}'"),
                    ));
                }
            }
            for suffix in INVALID_PATH_SUFFIXES {
                if value.ends_with(suffix) {
                    errs.push(FieldError::invalid(
                        &path_field,
                        value,
                        format!("cannot end with '{suffix}'"),
                    ));
                }
            }
        }
        "ImplementationSpecific" => {
            if !value.is_empty() && !value.starts_with('/') {
                errs.push(FieldError::invalid(
                    &path_field,
                    value,
                    "must be an absolute path",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.pathType"),
            other,
            &PATH_TYPES,
        )),
    }
    validate_backend(
        p.get("backend").unwrap_or(&Value::Null),
        &format!("{path}.backend"),
        errs,
    );
}

/// Upstream `ValidateIngressSpec` and `ValidateIngressCreate`'s class check.
pub(super) fn validate_ingress(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let rules = arr_at(spec, "rules");
    let default_backend = field(spec, "defaultBackend");
    if rules.is_empty() && default_backend.is_none() {
        errs.push(FieldError::invalid_rendered(
            "spec",
            render(&Value::Array(rules.to_vec())),
            "either `defaultBackend` or `rules` must be specified",
        ));
    }
    if let Some(backend) = default_backend {
        validate_backend(backend, "spec.defaultBackend", errs);
    }
    for (i, rule) in rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        let host = str_at(rule, "host");
        if !host.is_empty() {
            validate_host(host, &format!("{path}.host"), true, errs);
        }
        if let Some(http) = field(rule, "http") {
            let paths = arr_at(http, "paths");
            if paths.is_empty() {
                errs.push(FieldError::required(format!("{path}.http.paths"), ""));
            }
            for (j, p) in paths.iter().enumerate() {
                validate_http_path(p, &format!("{path}.http.paths[{j}]"), errs);
            }
        }
    }
    for (i, tls) in arr_at(spec, "tls").iter().enumerate() {
        for (j, host) in arr_at(tls, "hosts").iter().enumerate() {
            let host = host.as_str().unwrap_or("");
            validate_host(host, &format!("spec.tls[{i}].hosts[{j}]"), false, errs);
        }
    }
    if let Some(class) = field(spec, "ingressClassName").and_then(Value::as_str) {
        for msg in is_dns1123_subdomain(class) {
            errs.push(FieldError::invalid("spec.ingressClassName", class, msg));
        }
        let annotation = obj["metadata"]["annotations"][LEGACY_CLASS_ANNOTATION]
            .as_str()
            .unwrap_or("");
        if old.is_none() && !annotation.is_empty() && annotation != class {
            errs.push(FieldError::invalid(
                format!("annotations.{LEGACY_CLASS_ANNOTATION}"),
                annotation,
                "must match `ingressClassName` when both are specified",
            ));
        }
    }
    let status = &obj["status"]["loadBalancer"];
    for (i, ing) in arr_at(status, "ingress").iter().enumerate() {
        let path = format!("status.loadBalancer.ingress[{i}]");
        let ip = str_at(ing, "ip");
        if !ip.is_empty() && ip.parse::<std::net::IpAddr>().is_err() {
            errs.push(FieldError::invalid(
                format!("{path}.ip"),
                ip,
                "must be a valid IP address",
            ));
        }
        let hostname = str_at(ing, "hostname");
        if !hostname.is_empty() {
            for msg in is_dns1123_subdomain(hostname) {
                errs.push(FieldError::invalid(
                    format!("{path}.hostname"),
                    hostname,
                    msg,
                ));
            }
            if hostname.parse::<std::net::IpAddr>().is_ok() {
                errs.push(FieldError::invalid(
                    format!("{path}.hostname"),
                    hostname,
                    "must be a DNS name, not an IP address",
                ));
            }
        }
    }
}

/// Upstream `IsDomainPrefixedPath` for `spec.controller`.
fn validate_controller(controller: &str, errs: &mut Errs) {
    let path = "spec.controller";
    if controller.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    if controller.len() > MAX_CONTROLLER_LEN {
        errs.push(FieldError::too_long(path, MAX_CONTROLLER_LEN));
    }
    let Some((host, rest)) = controller.split_once('/') else {
        errs.push(FieldError::invalid(
            path,
            controller,
            "must be a domain-prefixed path (such as \"acme.io/foo\")",
        ));
        return;
    };
    for msg in is_dns1123_subdomain(host) {
        errs.push(FieldError::invalid(path, host, msg));
    }
    let path_ok = !rest.is_empty()
        && rest
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "/-._~%!$&'()*+,;=:".contains(c));
    if !path_ok {
        errs.push(FieldError::invalid(
            path,
            rest,
            "Invalid path: regex used for validation is '[A-Za-z0-9/\\-._~%!$&'()*+,;=:]+'",
        ));
    }
}

/// Upstream `ValidateIngressClass` (and the controller's immutability on update).
pub(super) fn validate_ingress_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let controller = str_at(spec, "controller");
    validate_controller(controller, errs);
    if let Some(old) = old {
        if old["spec"]["controller"].as_str().unwrap_or("") != controller {
            errs.push(FieldError::invalid(
                "spec.controller",
                controller,
                FIELD_IMMUTABLE,
            ));
        }
    }
    if let Some(params) = field(spec, "parameters") {
        let path = "spec.parameters";
        validate_typed_reference(params, path, errs);
        let namespace = field(params, "namespace").and_then(Value::as_str);
        match field(params, "scope").and_then(Value::as_str) {
            None => errs.push(FieldError::required(
                format!("{path}.scope"),
                "`parameters.scope` is required",
            )),
            Some("Namespace") => match namespace {
                None => errs.push(FieldError::required(
                    format!("{path}.namespace"),
                    "`parameters.scope` is set to 'Namespace'",
                )),
                Some(ns) => {
                    for msg in super::is_dns1123_label(ns) {
                        errs.push(FieldError::invalid(format!("{path}.namespace"), ns, msg));
                    }
                }
            },
            Some("Cluster") => {
                if namespace.is_some() {
                    errs.push(FieldError::forbidden(
                        format!("{path}.namespace"),
                        "`parameters.scope` is set to 'Cluster'",
                    ));
                }
            }
            Some(other) => errs.push(FieldError::not_supported(
                format!("{path}.scope"),
                other,
                &["Cluster", "Namespace"],
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use serde_json::{json, Value};

    fn errors(kind: &str, obj: &Value) -> Vec<String> {
        validate(kind, obj, None)
            .iter()
            .map(|e| e.to_string())
            .collect()
    }

    fn ingress(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"}, "spec": spec})
    }

    fn backend(name: &str, port: Value) -> Value {
        json!({"service": {"name": name, "port": port}})
    }

    #[test]
    fn a_valid_ingress_passes() {
        let ing = ingress(json!({
            "ingressClassName": "orc",
            "defaultBackend": backend("fallback", json!({"number": 80})),
            "rules": [
                {"host": "a.example.com", "http": {"paths": [
                    {"path": "/api", "pathType": "Prefix", "backend": backend("api", json!({"name": "http"}))},
                    {"path": "/exact", "pathType": "Exact", "backend": backend("api", json!({"number": 8080}))},
                    {"pathType": "ImplementationSpecific", "backend": backend("api", json!({"number": 1}))},
                ]}},
                {"host": "*.apps.example.com", "http": {"paths": [
                    {"path": "/", "pathType": "Prefix", "backend": {"resource": {"apiGroup": "k8s.example.com", "kind": "StorageBucket", "name": "assets"}}},
                ]}},
            ],
            "tls": [{"hosts": ["a.example.com", "*.apps.example.com"], "secretName": "a-tls"}],
        }));
        assert_eq!(errors("Ingress", &ing), Vec::<String>::new());
    }

    #[test]
    fn empty_specs_bad_hosts_and_paths_are_refused_with_upstreams_messages() {
        let errs = errors("Ingress", &ingress(json!({})));
        assert_eq!(
            errs,
            ["spec: Invalid value: []: either `defaultBackend` or `rules` must be specified"]
        );
        let rule = |host: &str, path: Value| {
            ingress(json!({"rules": [{"host": host, "http": {"paths": [path]}}]}))
        };
        let ok_backend = backend("svc", json!({"number": 80}));
        let errs = errors(
            "Ingress",
            &rule(
                "10.0.0.1",
                json!({"path": "/", "pathType": "Prefix", "backend": ok_backend}),
            ),
        );
        assert!(errs[0].contains("spec.rules[0].host: Invalid value: \"10.0.0.1\": must be a DNS name, not an IP address"), "{errs:?}");
        let errs = errors(
            "Ingress",
            &rule(
                "a.*.com",
                json!({"path": "/", "pathType": "Prefix", "backend": ok_backend}),
            ),
        );
        assert!(
            errs[0].contains("a wildcard DNS-1123 subdomain must start with '*.'"),
            "{errs:?}"
        );
        let errs = errors(
            "Ingress",
            &rule(
                "Bad_Host",
                json!({"path": "/", "pathType": "Prefix", "backend": ok_backend}),
            ),
        );
        assert!(
            errs[0].contains("a lowercase RFC 1123 subdomain"),
            "{errs:?}"
        );
        let errs = errors(
            "Ingress",
            &rule(
                "a.com",
                json!({"path": "api", "pathType": "Exact", "backend": ok_backend}),
            ),
        );
        assert_eq!(errs, ["spec.rules[0].http.paths[0].path: Invalid value: \"api\": must be an absolute path"]);
        let errs = errors(
            "Ingress",
            &rule(
                "a.com",
                json!({"path": "/a//b/..", "pathType": "Prefix", "backend": ok_backend}),
            ),
        );
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert!(errs[0].contains("must not contain '//'"));
        assert!(errs[1].contains("cannot end with '/..'"));
        let errs = errors(
            "Ingress",
            &rule("a.com", json!({"path": "/", "backend": ok_backend})),
        );
        assert_eq!(
            errs,
            ["spec.rules[0].http.paths[0].pathType: Required value: pathType must be specified"]
        );
        let errs = errors(
            "Ingress",
            &rule(
                "a.com",
                json!({"path": "/", "pathType": "Regex", "backend": ok_backend}),
            ),
        );
        assert_eq!(errs, ["spec.rules[0].http.paths[0].pathType: Unsupported value: \"Regex\": supported values: \"Exact\", \"ImplementationSpecific\", \"Prefix\""]);
        let errs = errors(
            "Ingress",
            &ingress(json!({"rules": [{"host": "a.com", "http": {"paths": []}}]})),
        );
        assert_eq!(errs, ["spec.rules[0].http.paths: Required value"]);
    }

    #[test]
    fn backends_name_a_service_port_by_name_xor_number_or_a_resource() {
        let with = |b: Value| errors("Ingress", &ingress(json!({"defaultBackend": b})));
        assert_eq!(
            with(json!({"service": {"name": "a", "port": {"name": "http", "number": 80}}})),
            ["spec.defaultBackend: Invalid value: \"\": cannot set both port name & port number"]
        );
        assert_eq!(
            with(json!({"service": {"name": "a", "port": {}}})),
            ["spec.defaultBackend: Required value: port name or number is required"]
        );
        assert_eq!(
            with(json!({"service": {"name": "a", "port": {"number": 70000}}})),
            ["spec.defaultBackend.service.port.number: Invalid value: 70000: must be between 1 and 65535, inclusive"]
        );
        assert_eq!(
            with(json!({"service": {"port": {"number": 80}}})),
            ["spec.defaultBackend.service.name: Required value"]
        );
        assert_eq!(
            with(json!({})),
            ["spec.defaultBackend: Invalid value: \"\": resource or service backend is required"]
        );
        assert_eq!(
            with(json!({"service": {"name": "a", "port": {"number": 80}}, "resource": {"kind": "K", "name": "n"}})),
            ["spec.defaultBackend: Invalid value: \"\": cannot set both resource and service backends"]
        );
        assert_eq!(
            with(json!({"resource": {"name": "n"}})),
            ["spec.defaultBackend.resource.kind: Required value: kind is required"]
        );
    }

    #[test]
    fn the_class_field_and_the_legacy_annotation_must_agree_on_create() {
        let mut ing = ingress(json!({"ingressClassName": "orc",
            "defaultBackend": backend("a", json!({"number": 80}))}));
        ing["metadata"]["annotations"] = json!({"kubernetes.io/ingress.class": "nginx"});
        assert_eq!(errors("Ingress", &ing), ["annotations.kubernetes.io/ingress.class: Invalid value: \"nginx\": must match `ingressClassName` when both are specified"]);
        assert!(validate("Ingress", &ing, Some(&ing)).is_empty());
    }

    #[test]
    fn classes_need_a_domain_prefixed_immutable_controller_and_scoped_parameters() {
        let class = |spec: Value| json!({"metadata": {"name": "orc"}, "spec": spec});
        assert!(errors(
            "IngressClass",
            &class(json!({"controller": "orc.io/ingress"}))
        )
        .is_empty());
        assert_eq!(
            errors("IngressClass", &class(json!({}))),
            ["spec.controller: Required value"]
        );
        assert_eq!(
            errors("IngressClass", &class(json!({"controller": "nginx"}))),
            ["spec.controller: Invalid value: \"nginx\": must be a domain-prefixed path (such as \"acme.io/foo\")"]
        );
        let old = class(json!({"controller": "orc.io/ingress"}));
        let new = class(json!({"controller": "k8s.io/ingress-nginx"}));
        let errs: Vec<String> = validate("IngressClass", &new, Some(&old))
            .iter()
            .map(|e| e.to_string())
            .collect();
        assert_eq!(
            errs,
            ["spec.controller: Invalid value: \"k8s.io/ingress-nginx\": field is immutable"]
        );
        let params = |p: Value| {
            errors(
                "IngressClass",
                &class(json!({"controller": "a.io/b", "parameters": p})),
            )
        };
        assert!(params(json!({"kind": "Cfg", "name": "x", "scope": "Cluster"})).is_empty());
        assert_eq!(
            params(json!({"kind": "Cfg", "name": "x", "scope": "Namespace"})),
            ["spec.parameters.namespace: Required value: `parameters.scope` is set to 'Namespace'"]
        );
        assert_eq!(
            params(json!({"kind": "Cfg", "name": "x", "scope": "Cluster", "namespace": "a"})),
            ["spec.parameters.namespace: Forbidden: `parameters.scope` is set to 'Cluster'"]
        );
    }
}
