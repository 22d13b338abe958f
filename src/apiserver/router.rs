//! URL paths → what they name: discovery documents or a resource (collection, object, subresource).

use crate::api::resources::{ResourceDef, Resources};

/// A parsed request path.
#[derive(Debug, Clone, PartialEq)]
pub enum Route {
    Version,
    Health,
    CaCerts,
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
}

/// Parses `path` (without query) against what is served; `None` when it names nothing.
pub fn parse(path: &str, served: &Resources) -> Option<Route> {
    let trimmed = path.trim_end_matches('/');
    match trimmed {
        "/version" => return Some(Route::Version),
        "/healthz" | "/livez" | "/readyz" | "/ping" => return Some(Route::Health),
        "/cacerts" => return Some(Route::CaCerts),
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
    let mk = |def, ns: Option<&str>, name: Option<&str>, sub: Option<&str>| {
        Some(Route::Resource(ResourceRoute {
            def,
            namespace: ns.map(str::to_string),
            name: name.map(str::to_string),
            subresource: sub.map(str::to_string),
            watch_path,
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
