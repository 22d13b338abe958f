//! Real CRDs from widely used projects (`testdata/`, sources in its README): each must be
//! accepted, and a realistic object of each must validate while a broken one fails.

use serde_json::{json, Value};

use super::*;
use crate::api::crd::test_support::messages;

fn load(yaml: &str) -> Value {
    let doc = yaml.trim_start_matches("---\n");
    serde_yaml::from_str(doc).expect("test CRD parses as YAML")
}

/// The CRD (defaulted and validated) and the storage version's parsed schema.
fn accepted(yaml: &str) -> (Value, Structural) {
    let mut crd = load(yaml);
    default_crd(&mut crd);
    let errs = messages(&validate_crd(&crd, None));
    assert!(errs.is_empty(), "{}: {errs:#?}", crd["metadata"]["name"]);
    let versions = crd["spec"]["versions"].as_array().unwrap();
    let storage = versions
        .iter()
        .find(|v| v["storage"] == json!(true))
        .unwrap();
    let name = storage["name"].as_str().unwrap();
    let schema = Structural::from_json(schema_for_version(&crd, name).unwrap()).unwrap();
    (crd, schema)
}

/// Prunes, defaults and validates like the API server; returns the errors.
fn admit(schema: &Structural, mut obj: Value) -> Vec<String> {
    let pruned = prune(schema, &mut obj);
    assert!(pruned.is_empty(), "unexpected unknown fields {pruned:?}");
    apply_defaults(schema, &mut obj);
    messages(&validate(schema, &obj, None))
}

fn object(api_version: &str, kind: &str, spec: Value) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"name": "example", "namespace": "default"}, "spec": spec})
}

#[test]
fn cert_manager_certificate() {
    let (_, s) = accepted(include_str!("testdata/cert-manager-certificates.yaml"));
    let good = object(
        "cert-manager.io/v1",
        "Certificate",
        json!({
            "secretName": "example-tls",
            "dnsNames": ["example.com", "www.example.com"],
            "duration": "2160h",
            "renewBefore": "360h",
            "privateKey": {"algorithm": "ECDSA", "size": 256, "rotationPolicy": "Always"},
            "issuerRef": {"name": "letsencrypt", "kind": "ClusterIssuer", "group": "cert-manager.io"}
        }),
    );
    assert_eq!(admit(&s, good), Vec::<String>::new());
    let bad = object(
        "cert-manager.io/v1",
        "Certificate",
        json!({
            "secretName": "example-tls",
            "privateKey": {"algorithm": "DSA"}
        }),
    );
    assert_eq!(
        admit(&s, bad),
        vec![
            "spec.issuerRef: Required value",
            r#"spec.privateKey.algorithm: Unsupported value: "DSA": supported values: "RSA", "ECDSA", "Ed25519""#,
        ]
    );
}

#[test]
fn prometheus_operator_service_monitor() {
    let (_, s) = accepted(include_str!(
        "testdata/prometheus-operator-servicemonitors.yaml"
    ));
    let good = object(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        json!({
            "selector": {"matchLabels": {"app": "web"}},
            "namespaceSelector": {"matchNames": ["default"]},
            "endpoints": [{"port": "metrics", "interval": "30s", "path": "/metrics", "scheme": "https",
                           "tlsConfig": {"insecureSkipVerify": true},
                           "relabelings": [{"sourceLabels": ["__meta_kubernetes_pod_name"], "targetLabel": "pod", "action": "replace"}]}]
        }),
    );
    assert_eq!(admit(&s, good), Vec::<String>::new());
    let bad = object(
        "monitoring.coreos.com/v1",
        "ServiceMonitor",
        json!({
            "selector": {},
            "endpoints": [{"port": "metrics", "scheme": "ftp", "interval": "soon"}]
        }),
    );
    let errs = admit(&s, bad);
    assert!(
        errs.contains(&r#"spec.endpoints[0].scheme: Unsupported value: "ftp": supported values: "http", "https", "HTTP", "HTTPS""#.to_string()),
        "{errs:#?}"
    );
    assert!(
        errs.iter().any(|e| e.starts_with(r#"spec.endpoints[0].interval: Invalid value: "soon": spec.endpoints[0].interval in body should match '"#)),
        "{errs:#?}"
    );
}

#[test]
fn prometheus_operator_prometheus_rule() {
    let (_, s) = accepted(include_str!(
        "testdata/prometheus-operator-prometheusrules.yaml"
    ));
    let good = object(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        json!({
            "groups": [{"name": "web", "interval": "1m", "rules": [
                {"alert": "HighErrorRate", "expr": "sum(rate(http_errors_total[5m])) > 1", "for": "10m",
                 "labels": {"severity": "page"}, "annotations": {"summary": "errors"}},
                {"record": "job:up:sum", "expr": "sum by (job) (up)"}
            ]}]
        }),
    );
    assert_eq!(admit(&s, good), Vec::<String>::new());
    let bad = object(
        "monitoring.coreos.com/v1",
        "PrometheusRule",
        json!({
            "groups": [{"rules": [{"alert": "X"}]}]
        }),
    );
    assert_eq!(
        admit(&s, bad),
        vec![
            "spec.groups[0].name: Required value",
            "spec.groups[0].rules[0].expr: Required value"
        ]
    );
}

#[test]
fn traefik_ingress_route() {
    let (_, s) = accepted(include_str!("testdata/traefik-ingressroutes.yaml"));
    let good = object(
        "traefik.io/v1alpha1",
        "IngressRoute",
        json!({
            "entryPoints": ["websecure"],
            "routes": [{"match": "Host(`example.com`) && PathPrefix(`/api`)", "kind": "Rule", "priority": 10,
                        "services": [{"name": "api", "port": 8080}, {"name": "web", "port": "http", "weight": 1}],
                        "middlewares": [{"name": "auth"}]}],
            "tls": {"secretName": "example-tls"}
        }),
    );
    assert_eq!(admit(&s, good), Vec::<String>::new());
    let bad = object(
        "traefik.io/v1alpha1",
        "IngressRoute",
        json!({
            "routes": [{"kind": "Redirect", "services": [{"name": "api", "port": true}]}]
        }),
    );
    assert_eq!(
        admit(&s, bad),
        vec![
            "spec.routes[0].match: Required value",
            r#"spec.routes[0].kind: Unsupported value: "Redirect": supported values: "Rule""#,
            r#"spec.routes[0].services[0].port: Invalid value: "boolean": spec.routes[0].services[0].port in body must be of type integer,string: "boolean""#,
        ]
    );
}

#[test]
fn metallb_ip_address_pool() {
    let (_, s) = accepted(include_str!("testdata/metallb-ipaddresspools.yaml"));
    let good = object(
        "metallb.io/v1beta1",
        "IPAddressPool",
        json!({
            "addresses": ["192.168.10.0/24", "fc00:f853:ccd:e799::/124", "192.168.9.1-192.168.9.5"],
            "autoAssign": true,
            "serviceAllocation": {"priority": 50, "namespaces": ["default"]}
        }),
    );
    assert_eq!(admit(&s, good), Vec::<String>::new());
    let bad = object(
        "metallb.io/v1beta1",
        "IPAddressPool",
        json!({"addresses": "192.168.10.0/24", "autoAssign": "yes"}),
    );
    assert_eq!(
        admit(&s, bad),
        vec![
            r#"spec.addresses: Invalid value: "string": spec.addresses in body must be of type array: "string""#,
            r#"spec.autoAssign: Invalid value: "string": spec.autoAssign in body must be of type boolean: "string""#,
        ]
    );
}

#[test]
fn flux_git_repository_with_its_cel_rule() {
    let (_, s) = accepted(include_str!("testdata/flux-gitrepositories.yaml"));
    let good = object(
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        json!({
            "url": "https://github.com/stefanprodan/podinfo",
            "interval": "5m0s",
            "ref": {"branch": "master"},
            "provider": "azure",
            "serviceAccountName": "flux"
        }),
    );
    assert_eq!(admit(&s, good.clone()), Vec::<String>::new());
    let mut defaulted = good;
    apply_defaults(&s, &mut defaulted);
    assert_eq!(defaulted["spec"]["timeout"], json!("60s"));
    let bad = object(
        "source.toolkit.fluxcd.io/v1",
        "GitRepository",
        json!({
            "url": "ftp://example.com/repo",
            "interval": "5m",
            "serviceAccountName": "flux"
        }),
    );
    assert_eq!(
        admit(&s, bad),
        vec![
            r#"spec.url: Invalid value: "ftp://example.com/repo": spec.url in body should match '^(http|https|ssh)://.*$'"#,
            r#"spec: Invalid value: "object": serviceAccountName can only be set when provider is 'azure' or 'aws'"#,
        ]
    );
}
