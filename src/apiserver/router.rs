//! URL paths → what they name: discovery documents or a resource (collection, object, subresource).

use crate::api::resources::{ResourceDef, Resources};

/// A parsed request path.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Health,
    CaCerts,
    /// `/metrics`: the Prometheus scrape.
    Metrics,
    /// `/v1-orc/node-credentials`: the join token trades a node password for a credential.
    NodeCredentials,
    /// `/api`
    CoreVersions,
    /// `/apis`
    Groups,
    /// `/apis/<group>`
    Group(String),
    /// `/api/v1` or `/apis/<group>/<version>`
    ResourceList {
        group: String,
        version: String,
    },
    /// `/openapi/v2`, `/openapi/v3`, `/openapi/v3/<path>`
    OpenApi(String),
    /// `/.well-known/openid-configuration`: the service-account issuer's OIDC discovery.
    OpenIdConfiguration,
    /// `/openid/v1/jwks`: the service-account token signing keys.
    OpenIdKeys,
    Resource(ResourceRoute),
}

#[derive(Debug, Clone, PartialEq)]
pub struct ResourceRoute {
    pub def: &'static ResourceDef,
    pub namespace: Option<String>,
    pub name: Option<String>,
    pub subresource: Option<String>,
    /// The deprecated `/watch/` path prefix was used.
    pub watch_path: bool,
    /// For the `proxy` subresource: the path after `/proxy` (empty, or starting with
    /// `/`; a trailing slash kept).
    pub proxy_path: Option<String>,
}

/// Resources whose objects have a `proxy` subresource taking a path after it.
const PROXIED: [&str; 3] = ["services", "pods", "nodes"];

/// `…/<name>/proxy[/path]` of a core resource: `(rest before proxy, path after it)`.
fn split_proxy_path<'a>(rest: &'a [&'a str], raw: &str) -> Option<(&'a [&'a str], String)> {
    let at = match rest {
        ["namespaces", _, plural, _, "proxy", ..] if PROXIED.contains(plural) => 5,
        [plural, _, "proxy", ..] if PROXIED.contains(plural) => 3,
        _ => return None,
    };
    let mut path = String::new();
    for seg in &rest[at..] {
        path.push('/');
        path.push_str(seg);
    }
    if raw.ends_with('/') && rest.len() > at {
        path.push('/');
    }
    if raw.ends_with("/proxy/") && rest.len() == at {
        path.push('/');
    }
    Some((&rest[..at], path))
}

/// Parses `path` (without query) against what is served; `None` when it names nothing.
pub fn parse(path: &str, served: &Resources) -> Option<Route> {
    let trimmed = path.trim_end_matches('/');
    match trimmed {
        "/version" => return Some(Route::Version),
        "/healthz" | "/livez" | "/readyz" | "/ping" => return Some(Route::Health),
        "/cacerts" => return Some(Route::CaCerts),
        super::metrics::PATH => return Some(Route::Metrics),
        super::node_credentials::PATH => return Some(Route::NodeCredentials),
        super::serviceaccount::oidc::CONFIGURATION_PATH => return Some(Route::OpenIdConfiguration),
        super::serviceaccount::oidc::JWKS_PATH => return Some(Route::OpenIdKeys),
        "/api" => return Some(Route::CoreVersions),
        "/apis" => return Some(Route::Groups),
        _ => {}
    }
    if let Some(rest) = trimmed.strip_prefix("/openapi/") {
        return Some(Route::OpenApi(rest.to_string()));
    }
    if matches!(trimmed, "/healthz/ready" | "/livez/ping" | "/readyz/ping") {
        return Some(Route::Health);
    }
    let segs: Vec<&str> = trimmed.split('/').skip(1).collect();
    let (group, version, rest) = match segs.as_slice() {
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group] => return Some(Route::Group(group.to_string())),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return None,
    };
    if rest.is_empty() {
        return served.serves(group, version).then(|| Route::ResourceList {
            group: group.to_string(),
            version: version.to_string(),
        });
    }
    let (watch_path, rest) = match rest {
        ["watch", rest @ ..] => (true, rest),
        _ => (false, rest),
    };
    let lookup = |plural: &str| served.by_plural(group, version, plural);
    let (rest, proxy_path) = match split_proxy_path(rest, path) {
        Some((rest, proxy_path)) if group.is_empty() && !watch_path => (rest, Some(proxy_path)),
        _ => (rest, None),
    };
    let mk = |def, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Some(Route::Resource(ResourceRoute {
            def,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
            watch_path,
            proxy_path: proxy_path.clone(),
        }))
    };
    match rest {
        [plural] => mk(lookup(plural)?, None, None, None),
        ["namespaces", ns, sub] if group.is_empty() && matches!(*sub, "status" | "finalize") => {
            mk(lookup("namespaces")?, None, Some(ns), Some(sub))
        }
        ["namespaces", ns, plural] => {
            let def = lookup(plural)?;
            def.namespaced.then_some(())?;
            mk(def, Some(ns), None, None)
        }
        ["namespaces", ns, plural, name] => {
            let def = lookup(plural)?;
            def.namespaced.then_some(())?;
            mk(def, Some(ns), Some(name), None)
        }
        ["namespaces", ns, plural, name, sub] => {
            let def = lookup(plural)?;
            (def.namespaced && def.has_subresource(sub)).then_some(())?;
            mk(def, Some(ns), Some(name), Some(sub))
        }
        [plural, name] => {
            let def = lookup(plural)?;
            (!def.namespaced).then_some(())?;
            mk(def, None, Some(name), None)
        }
        [plural, name, sub] => {
            let def = lookup(plural)?;
            (!def.namespaced && def.has_subresource(sub)).then_some(())?;
            mk(def, None, Some(name), Some(sub))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(path: &str) -> Option<Route> {
        super::parse(path, &crate::api::resources::Catalog::new().snapshot())
    }

    fn res(path: &str) -> ResourceRoute {
        match parse(path) {
            Some(Route::Resource(r)) => r,
            other => panic!("{path}: {other:?}"),
        }
    }

    #[test]
    fn namespaced_and_cluster_paths() {
        let r = res("/api/v1/namespaces/default/pods/web/status");
        assert_eq!(r.def.plural, "pods");
        assert_eq!(r.namespace.as_deref(), Some("default"));
        assert_eq!(r.name.as_deref(), Some("web"));
        assert_eq!(r.subresource.as_deref(), Some("status"));
        let r = res("/api/v1/pods");
        assert!(r.namespace.is_none() && r.name.is_none());
        let r = res("/api/v1/namespaces/kube-system");
        assert_eq!(r.def.plural, "namespaces");
        assert_eq!(r.name.as_deref(), Some("kube-system"));
        let r = res("/api/v1/namespaces/foo/finalize");
        assert_eq!(r.subresource.as_deref(), Some("finalize"));
        let r = res("/apis/apps/v1/namespaces/x/deployments/web/scale");
        assert_eq!(r.def.kind, "Deployment");
        let r = res("/api/v1/nodes/n1/status");
        assert_eq!(r.def.kind, "Node");
        let r = res("/api/v1/watch/namespaces/default/pods");
        assert!(r.watch_path);
    }

    #[test]
    fn proxy_paths_keep_what_follows_proxy() {
        let r = res("/api/v1/namespaces/web/services/https:site:8443/proxy/a/b/");
        assert_eq!(r.def.plural, "services");
        assert_eq!(r.name.as_deref(), Some("https:site:8443"));
        assert_eq!(r.subresource.as_deref(), Some("proxy"));
        assert_eq!(r.proxy_path.as_deref(), Some("/a/b/"));
        let r = res("/api/v1/namespaces/web/pods/p:8080/proxy");
        assert_eq!(r.proxy_path.as_deref(), Some(""));
        let r = res("/api/v1/namespaces/web/pods/p/proxy/");
        assert_eq!(r.proxy_path.as_deref(), Some("/"));
        let r = res("/api/v1/nodes/n1/proxy/healthz");
        assert_eq!(r.def.kind, "Node");
        assert_eq!(r.proxy_path.as_deref(), Some("/healthz"));
        // A path that merely looks like a subresource after proxy is the backend's.
        let r = res("/api/v1/namespaces/d/services/s/proxy/status");
        assert_eq!(r.subresource.as_deref(), Some("proxy"));
        assert_eq!(r.proxy_path.as_deref(), Some("/status"));
        assert_eq!(res("/api/v1/namespaces/d/pods/p/status").proxy_path, None);
        assert_eq!(parse("/api/v1/namespaces/d/configmaps/c/proxy/x"), None);
    }

    #[test]
    fn unknown_paths_and_scopes_do_not_route() {
        assert_eq!(parse("/api/v1/widgets"), None);
        assert_eq!(parse("/api/v1/namespaces/default/nodes"), None);
        assert_eq!(parse("/api/v1/pods/web"), None);
        assert_eq!(parse("/api/v1/namespaces/d/pods/web/bogus"), None);
        assert_eq!(parse("/apis/apps/v2/deployments"), None);
        assert_eq!(parse("/nope"), None);
        assert_eq!(parse("/apis/apps"), Some(Route::Group("apps".into())));
    }
}
