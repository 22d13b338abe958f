//! The API server's side of `/metrics`: which labels a request is counted under
//! (upstream's verb, group, version, resource, subresource and scope), the scrape
//! endpoint with its authorization, and the body wrapper that keeps a long-running
//! request counted until its stream ends.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use http::{header, HeaderMap, Method, Response};
use hyper::body::{Body as HttpBody, Frame, SizeHint};

use super::auth::User;
use super::rbac::{Attributes, Decision};
use super::response::{self, Body};
use super::reviews::Authorizer as _;
use super::router::Route;
use super::ApiContext;
use crate::api::patch::PatchType;
use crate::api::status::ApiError;
use crate::metrics::{InflightGuard, RequestLabels};

/// The path Prometheus scrapes.
pub const PATH: &str = "/metrics";

/// Subresources served as streams: counted under upstream's `CONNECT` verb.
const CONNECT_SUBRESOURCES: [&str; 4] = ["exec", "attach", "portforward", "proxy"];

/// How one request is counted.
#[derive(Debug, Clone, PartialEq)]
pub struct RequestClass {
    pub labels: RequestLabels,
    /// A write (`apiserver_current_inflight_requests{request_kind="mutating"}`).
    pub mutating: bool,
    /// A watch or a stream: in `apiserver_longrunning_requests` while open, and without a
    /// duration observation (its duration is the client's choice).
    pub longrunning: bool,
}

/// The labels of a request to `route` (`None`: the path names nothing served).
pub fn classify(
    method: &Method,
    route: Option<&Route>,
    query: Option<&str>,
    headers: &HeaderMap,
) -> RequestClass {
    let mutating = !matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS);
    let query = super::request::Query::parse(query);
    let dry_run = if query.get("dryRun").is_some_and(|v| !v.is_empty()) {
        "All"
    } else {
        ""
    };
    let mut labels = RequestLabels {
        verb: method_verb(method),
        group: "",
        version: "",
        resource: "",
        subresource: Cow::Borrowed(""),
        scope: "",
        component: "apiserver",
        dry_run,
    };
    let Some(Route::Resource(r)) = route else {
        return RequestClass {
            labels,
            mutating,
            longrunning: false,
        };
    };
    let subresource = r.subresource.as_deref().unwrap_or("");
    let watch = *method == Method::GET && r.name.is_none() && (query.flag("watch") || r.watch_path);
    let connect = CONNECT_SUBRESOURCES.contains(&subresource);
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    labels.verb = match *method {
        _ if connect => "CONNECT",
        Method::GET if watch => "WATCH",
        Method::GET if r.name.is_none() => "LIST",
        Method::PATCH if PatchType::from_content_type(content_type) == Some(PatchType::Apply) => {
            "APPLY"
        }
        Method::DELETE if r.name.is_none() => "DELETECOLLECTION",
        _ => labels.verb,
    };
    labels.group = r.def.group;
    labels.version = r.def.version;
    labels.resource = r.def.plural;
    // The served subresources are a fixed set per kind: bounded, so kept as they are.
    labels.subresource = Cow::Owned(subresource.to_string());
    labels.scope = match (&r.name, &r.namespace) {
        (Some(_), _) => "resource",
        (None, Some(_)) => "namespace",
        (None, None) => "cluster",
    };
    let follow = subresource == "log" && query.flag("follow");
    RequestClass {
        labels,
        mutating,
        longrunning: watch || connect || follow,
    }
}

fn method_verb(method: &Method) -> &'static str {
    match *method {
        Method::GET => "GET",
        Method::HEAD => "HEAD",
        Method::POST => "POST",
        Method::PUT => "PUT",
        Method::PATCH => "PATCH",
        Method::DELETE => "DELETE",
        Method::OPTIONS => "OPTIONS",
        _ => "other",
    }
}

/// `GET /metrics`: the scrape, for users allowed `get` on the non-resource URL (admins,
/// the `system:monitoring` group, any RBAC grant), as upstream.
pub fn scrape(ctx: &ApiContext, user: &User) -> Result<Response<Body>, ApiError> {
    let attrs = Attributes::non_resource("get", PATH);
    if let decision @ (Decision::Deny(_) | Decision::NoOpinion(_)) = ctx.decide(user, &attrs) {
        tracing::debug!(user = %user.name, ?decision, "metrics scrape refused");
        return Err(ApiError::forbidden(format!(
            "forbidden: User \"{}\" cannot get path \"{PATH}\"",
            user.name
        )));
    }
    let mut resp = response::text(200, ctx.metrics.encode());
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(crate::metrics::CONTENT_TYPE),
    );
    Ok(resp)
}

/// A response body holding a guard (e.g. an open watch's `apiserver_longrunning_requests`
/// count) until the body is sent or dropped.
pub struct HoldGuard {
    inner: Body,
    _guard: InflightGuard,
}

impl HoldGuard {
    pub fn wrap(resp: Response<Body>, guard: InflightGuard) -> Response<Body> {
        resp.map(|inner| {
            http_body_util::BodyExt::boxed(HoldGuard {
                inner,
                _guard: guard,
            })
        })
    }
}

impl HttpBody for HoldGuard {
    type Data = bytes::Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Self::Data>, Self::Error>>> {
        Pin::new(&mut self.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::Catalog;

    fn class(method: Method, path_and_query: &str, content_type: &str) -> RequestClass {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let served = Catalog::new().snapshot();
        let route = super::super::router::parse(path, &served);
        let mut headers = HeaderMap::new();
        if !content_type.is_empty() {
            headers.insert(header::CONTENT_TYPE, content_type.parse().unwrap());
        }
        classify(&method, route.as_ref(), query, &headers)
    }

    #[test]
    fn verbs_and_scopes_follow_upstream() {
        let c = class(Method::POST, "/api/v1/namespaces/d/configmaps", "");
        assert_eq!(
            (
                c.labels.verb,
                c.labels.resource,
                c.labels.scope,
                c.labels.version
            ),
            ("POST", "configmaps", "namespace", "v1")
        );
        assert!(c.mutating && !c.longrunning);
        let c = class(Method::GET, "/api/v1/pods", "");
        assert_eq!((c.labels.verb, c.labels.scope), ("LIST", "cluster"));
        let c = class(Method::GET, "/api/v1/namespaces/d/pods?watch=true", "");
        assert_eq!(c.labels.verb, "WATCH");
        assert!(c.longrunning && !c.mutating);
        let c = class(Method::GET, "/api/v1/watch/namespaces/d/pods", "");
        assert_eq!(c.labels.verb, "WATCH");
        let c = class(
            Method::GET,
            "/apis/apps/v1/namespaces/d/deployments/web/scale",
            "",
        );
        assert_eq!(
            (
                c.labels.verb,
                c.labels.group,
                &*c.labels.subresource,
                c.labels.scope
            ),
            ("GET", "apps", "scale", "resource")
        );
        let c = class(
            Method::PATCH,
            "/apis/apps/v1/namespaces/d/deployments/web",
            "application/apply-patch+yaml",
        );
        assert_eq!(c.labels.verb, "APPLY");
        let c = class(Method::DELETE, "/api/v1/namespaces/d/configmaps", "");
        assert_eq!(c.labels.verb, "DELETECOLLECTION");
        let c = class(Method::POST, "/api/v1/namespaces/d/pods/p/exec", "");
        assert_eq!(c.labels.verb, "CONNECT");
        assert!(c.longrunning);
        let c = class(
            Method::GET,
            "/api/v1/namespaces/d/pods/p/log?follow=true",
            "",
        );
        assert_eq!((c.labels.verb, &*c.labels.subresource), ("GET", "log"));
        assert!(c.longrunning);
        let c = class(
            Method::POST,
            "/api/v1/namespaces/d/configmaps?dryRun=All",
            "",
        );
        assert_eq!(c.labels.dry_run, "All");
    }

    #[test]
    fn proxied_paths_and_unknown_urls_add_no_label_values() {
        let c = class(Method::GET, "/api/v1/nodes/n1/proxy/metrics/cadvisor", "");
        assert_eq!(
            (c.labels.verb, c.labels.resource, &*c.labels.subresource),
            ("CONNECT", "nodes", "proxy")
        );
        let c = class(Method::GET, "/some/unknown/path/123", "");
        assert_eq!(
            (
                c.labels.verb,
                c.labels.resource,
                c.labels.scope,
                c.labels.group
            ),
            ("GET", "", "", "")
        );
        let c = class(Method::GET, "/metrics", "");
        assert_eq!((c.labels.verb, c.labels.resource), ("GET", ""));
    }
}
