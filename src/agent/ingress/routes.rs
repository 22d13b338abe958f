//! The routing decisions of the built-in ingress, without I/O: the route table built from
//! the Ingresses it serves (hosts exact before wildcard before host-less rules; within a
//! host the longest path first, Exact before Prefix at equal length; ImplementationSpecific
//! as Prefix; the oldest Ingress first on ties; the default backend last), and a backend's
//! ready endpoints from its Service and merged EndpointSlices.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::networking::v1::{Ingress, IngressBackend};

/// How a backend names its Service's port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PortRef {
    Number(i32),
    Name(String),
}

/// Where a matched request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Backend {
    Service {
        namespace: String,
        name: String,
        port: PortRef,
    },
    /// A `resource` backend (an object of some other API): nothing this proxy can send
    /// traffic to.
    Resource {
        namespace: String,
        kind: String,
        name: String,
    },
}

impl Backend {
    fn from_spec(namespace: &str, backend: &IngressBackend) -> Option<Backend> {
        if let Some(svc) = &backend.service {
            let port = svc.port.as_ref()?;
            let port = match (&port.name, port.number) {
                (Some(name), _) if !name.is_empty() => PortRef::Name(name.clone()),
                (_, Some(n)) => PortRef::Number(n),
                _ => return None,
            };
            return Some(Backend::Service {
                namespace: namespace.to_string(),
                name: svc.name.clone(),
                port,
            });
        }
        backend.resource.as_ref().map(|r| Backend::Resource {
            namespace: namespace.to_string(),
            kind: r.kind.clone(),
            name: r.name.clone(),
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Match {
    /// Sorted before Prefix at equal length.
    Exact,
    Prefix,
}

#[derive(Debug, Clone)]
struct PathRule {
    path: String,
    kind: Match,
    backend: Backend,
    /// (creationTimestamp, namespace/name) of the Ingress: older wins ties.
    order: (String, String),
}

impl PathRule {
    fn matches(&self, path: &str) -> bool {
        match self.kind {
            Match::Exact => self.path == path,
            Match::Prefix => prefix_matches(&self.path, path),
        }
    }

    /// Longest path first, Exact before Prefix, older Ingress first.
    fn sort_key(&self) -> (std::cmp::Reverse<usize>, Match, (String, String)) {
        (
            std::cmp::Reverse(self.path.trim_end_matches('/').len()),
            self.kind,
            self.order.clone(),
        )
    }
}

/// Upstream's Prefix semantics: element-wise by `/`, a trailing `/` in either ignored
/// (`/foo` matches `/foo`, `/foo/` and `/foo/bar`, never `/foobar`).
pub fn prefix_matches(rule: &str, path: &str) -> bool {
    let rule = rule.trim_end_matches('/');
    if rule.is_empty() {
        return true;
    }
    match path.strip_prefix(rule) {
        Some(rest) => rest.is_empty() || rest.starts_with('/'),
        None => false,
    }
}

/// The routes of every Ingress the built-in controller serves.
#[derive(Debug, Default, Clone)]
pub struct RouteTable {
    exact: BTreeMap<String, Vec<PathRule>>,
    /// By the suffix after `*` (`.example.com`).
    wildcard: BTreeMap<String, Vec<PathRule>>,
    any_host: Vec<PathRule>,
    default_backend: Option<(Backend, (String, String))>,
}

impl RouteTable {
    /// The table for `ingresses` (those the controller serves).
    pub fn build<'a>(ingresses: impl IntoIterator<Item = &'a Ingress>) -> RouteTable {
        let mut table = RouteTable::default();
        for ing in ingresses {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            let order = (
                ing.metadata
                    .creation_timestamp
                    .as_ref()
                    .map(|t| t.0.to_rfc3339())
                    .unwrap_or_default(),
                format!("{ns}/{}", ing.metadata.name.clone().unwrap_or_default()),
            );
            let Some(spec) = &ing.spec else { continue };
            if let Some(backend) = spec
                .default_backend
                .as_ref()
                .and_then(|b| Backend::from_spec(&ns, b))
            {
                let older = table
                    .default_backend
                    .as_ref()
                    .is_none_or(|(_, o)| order < *o);
                if older {
                    table.default_backend = Some((backend, order.clone()));
                }
            }
            for rule in spec.rules.iter().flatten() {
                let host = rule.host.clone().unwrap_or_default().to_ascii_lowercase();
                let list = if host.is_empty() {
                    &mut table.any_host
                } else if let Some(suffix) = host.strip_prefix('*') {
                    table.wildcard.entry(suffix.to_string()).or_default()
                } else {
                    table.exact.entry(host).or_default()
                };
                let Some(http) = &rule.http else { continue };
                for p in &http.paths {
                    let Some(backend) = Backend::from_spec(&ns, &p.backend) else {
                        continue;
                    };
                    let kind = match p.path_type.as_str() {
                        "Exact" => Match::Exact,
                        _ => Match::Prefix,
                    };
                    let path = p
                        .path
                        .clone()
                        .filter(|p| !p.is_empty())
                        .unwrap_or("/".into());
                    list.push(PathRule {
                        path,
                        kind,
                        backend,
                        order: order.clone(),
                    });
                }
            }
        }
        let lists = table
            .exact
            .values_mut()
            .chain(table.wildcard.values_mut())
            .chain(std::iter::once(&mut table.any_host));
        for list in lists {
            list.sort_by_key(PathRule::sort_key);
        }
        table
    }

    /// The backend for a request to `host` (lowercase, without port) and `path`: the
    /// rules of the exact host, then of the wildcard covering it (one label only), then
    /// the host-less rules, then the default backend; `None` answers 404.
    pub fn route(&self, host: &str, path: &str) -> Option<&Backend> {
        fn first<'a>(rules: &'a [PathRule], path: &str) -> Option<&'a PathRule> {
            rules.iter().find(|r| r.matches(path))
        }
        let wildcard = host
            .split_once('.')
            .and_then(|(_, rest)| self.wildcard.get(&format!(".{rest}")));
        self.exact
            .get(host)
            .and_then(|r| first(r, path))
            .or_else(|| wildcard.and_then(|r| first(r, path)))
            .or_else(|| first(&self.any_host, path))
            .map(|r| &r.backend)
            .or(self.default_backend.as_ref().map(|(b, _)| b))
    }

    /// Whether no Ingress routes anything.
    pub fn is_empty(&self) -> bool {
        self.exact.is_empty()
            && self.wildcard.is_empty()
            && self.any_host.is_empty()
            && self.default_backend.is_none()
    }
}

/// Why a Service backend cannot take a request (answered 503).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unavailable {
    #[error("service {0} not found")]
    NoService(String),
    #[error("service {0} has no port {1}")]
    NoPort(String, String),
    #[error("service {0} has no ready endpoints")]
    NoEndpoints(String),
    #[error("{0} backends are not supported by the built-in ingress")]
    Unsupported(String),
}

/// The ready endpoints (pod address and target port) of `port` of `service`.
pub fn endpoints_of(
    service: Option<&Service>,
    endpoints: Option<&Endpoints>,
    key: &str,
    port: &PortRef,
) -> Result<Vec<SocketAddr>, Unavailable> {
    let service = service.ok_or_else(|| Unavailable::NoService(key.to_string()))?;
    let no_port = || {
        let shown = match port {
            PortRef::Number(n) => n.to_string(),
            PortRef::Name(n) => format!("{n:?}"),
        };
        Unavailable::NoPort(key.to_string(), shown)
    };
    let spec = service.spec.as_ref().ok_or_else(no_port)?;
    let service_port = spec
        .ports
        .iter()
        .flatten()
        .find(|p| match port {
            PortRef::Number(n) => p.port == *n,
            PortRef::Name(n) => p.name.as_deref() == Some(n),
        })
        .ok_or_else(no_port)?;
    let port_name = service_port.name.clone().unwrap_or_default();
    let mut out = Vec::new();
    for subset in endpoints
        .and_then(|e| e.subsets.as_ref())
        .into_iter()
        .flatten()
    {
        let target = subset
            .ports
            .iter()
            .flatten()
            .find(|p| p.name.clone().unwrap_or_default() == port_name)
            .and_then(|p| u16::try_from(p.port).ok());
        let Some(target) = target else { continue };
        for address in subset.addresses.iter().flatten() {
            if let Ok(ip) = address.ip.parse::<IpAddr>() {
                out.push(SocketAddr::new(ip, target));
            }
        }
    }
    if out.is_empty() {
        return Err(Unavailable::NoEndpoints(key.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ingress(name: &str, created: &str, spec: serde_json::Value) -> Ingress {
        serde_json::from_value(json!({"metadata": {"name": name, "namespace": "default",
            "creationTimestamp": created}, "spec": spec}))
        .unwrap()
    }

    fn svc(name: &str) -> serde_json::Value {
        json!({"service": {"name": name, "port": {"number": 80}}})
    }

    fn to(name: &str) -> Backend {
        Backend::Service {
            namespace: "default".into(),
            name: name.into(),
            port: PortRef::Number(80),
        }
    }

    fn path(p: &str, t: &str, backend: &str) -> serde_json::Value {
        json!({"path": p, "pathType": t, "backend": svc(backend)})
    }

    #[test]
    fn prefix_matching_is_element_wise() {
        assert!(prefix_matches("/foo", "/foo"));
        assert!(prefix_matches("/foo", "/foo/"));
        assert!(prefix_matches("/foo/", "/foo"));
        assert!(prefix_matches("/foo", "/foo/bar"));
        assert!(!prefix_matches("/foo", "/foobar"));
        assert!(prefix_matches("/", "/anything"));
        assert!(!prefix_matches("/aaa/bbb", "/aaa/bbbxyz"));
    }

    #[test]
    fn longest_path_wins_and_exact_beats_prefix_of_equal_length() {
        let ing = ingress(
            "a",
            "2024-01-01T00:00:00Z",
            json!({"rules": [{"host": "a.com", "http": {"paths": [
                path("/", "Prefix", "root"),
                path("/api", "Prefix", "api"),
                path("/api", "Exact", "api-exact"),
                path("/api/v2", "ImplementationSpecific", "v2"),
            ]}}]}),
        );
        let table = RouteTable::build([&ing]);
        assert_eq!(table.route("a.com", "/api"), Some(&to("api-exact")));
        assert_eq!(table.route("a.com", "/api/"), Some(&to("api")));
        assert_eq!(table.route("a.com", "/api/v2/x"), Some(&to("v2")));
        assert_eq!(table.route("a.com", "/apix"), Some(&to("root")));
        assert_eq!(
            table.route("b.com", "/api"),
            None,
            "no rule, no default: 404"
        );
    }

    #[test]
    fn exact_hosts_before_wildcards_before_hostless_rules_then_the_default_backend() {
        let ing = ingress(
            "a",
            "2024-01-01T00:00:00Z",
            json!({
            "defaultBackend": svc("fallback"),
            "rules": [
                {"host": "*.example.com", "http": {"paths": [path("/", "Prefix", "wild")]}},
                {"host": "www.example.com", "http": {"paths": [path("/shop", "Prefix", "shop")]}},
                {"http": {"paths": [path("/status", "Exact", "status")]}},
            ]}),
        );
        let table = RouteTable::build([&ing]);
        assert_eq!(
            table.route("www.example.com", "/shop/cart"),
            Some(&to("shop"))
        );
        assert_eq!(table.route("www.example.com", "/"), Some(&to("wild")));
        assert_eq!(table.route("api.example.com", "/x"), Some(&to("wild")));
        assert_eq!(
            table.route("a.b.example.com", "/x"),
            Some(&to("fallback")),
            "one label only"
        );
        assert_eq!(table.route("example.com", "/x"), Some(&to("fallback")));
        assert_eq!(table.route("other.org", "/status"), Some(&to("status")));
        assert_eq!(table.route("other.org", "/status/x"), Some(&to("fallback")));
    }

    #[test]
    fn the_older_ingress_wins_ties_and_the_default_backend() {
        let newer = ingress(
            "newer",
            "2024-02-01T00:00:00Z",
            json!({"defaultBackend": svc("new-default"),
            "rules": [{"host": "a.com", "http": {"paths": [path("/", "Prefix", "new")]}}]}),
        );
        let older = ingress(
            "older",
            "2024-01-01T00:00:00Z",
            json!({"defaultBackend": svc("old-default"),
            "rules": [{"host": "a.com", "http": {"paths": [path("/", "Prefix", "old")]}}]}),
        );
        let table = RouteTable::build([&newer, &older]);
        assert_eq!(table.route("a.com", "/"), Some(&to("old")));
        assert_eq!(table.route("b.com", "/"), Some(&to("old-default")));
    }

    #[test]
    fn backends_resolve_to_the_ready_endpoints_of_the_service_port() {
        let service: Service = serde_json::from_value(json!({"metadata": {"name": "web"},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080},
                               {"name": "admin", "port": 81, "targetPort": 9090}]}}))
        .unwrap();
        let endpoints: Endpoints = serde_json::from_value(json!({"metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}],
                         "notReadyAddresses": [{"ip": "10.42.0.7"}],
                         "ports": [{"name": "http", "port": 8080}, {"name": "admin", "port": 9090}]}]}))
        .unwrap();
        let got = endpoints_of(
            Some(&service),
            Some(&endpoints),
            "default/web",
            &PortRef::Number(80),
        )
        .unwrap();
        assert_eq!(
            got,
            [
                "10.42.0.5:8080".parse().unwrap(),
                "10.42.0.6:8080".parse().unwrap()
            ]
        );
        let got = endpoints_of(
            Some(&service),
            Some(&endpoints),
            "default/web",
            &PortRef::Name("admin".into()),
        )
        .unwrap();
        assert_eq!(got[0], "10.42.0.5:9090".parse().unwrap());
        assert_eq!(
            endpoints_of(
                Some(&service),
                Some(&endpoints),
                "default/web",
                &PortRef::Number(82)
            ),
            Err(Unavailable::NoPort("default/web".into(), "82".into()))
        );
        assert_eq!(
            endpoints_of(None, None, "default/web", &PortRef::Number(80)),
            Err(Unavailable::NoService("default/web".into()))
        );
        assert_eq!(
            endpoints_of(Some(&service), None, "default/web", &PortRef::Number(80)),
            Err(Unavailable::NoEndpoints("default/web".into()))
        );
    }
}
