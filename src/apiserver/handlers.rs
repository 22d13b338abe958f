//! HTTP request handling: authenticate, route, authorize, then call the registry.

use std::sync::Arc;
use std::time::{Duration, Instant};

use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use http::{header, Method, Request, Response};
use serde_json::{json, Value};

use super::auth::{self, User};
use super::kubelet_proxy::Stream;
use super::openapi::v2;
use super::rbac::Decision;
use super::registry::{strategy_for, DeleteOptions, FieldValidation, WriteOptions, Written};
use super::request::{self, Query, RequestBody};
use super::response::{self, Body};
use super::reviews::{self, Authorizer as _};
use super::router::{self, ResourceRoute, Route};
use super::{discovery, impersonation, metrics, watch, ApiContext};
use crate::api::object;
use crate::api::patch::PatchType;
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::{self, FieldSelector, LabelSelector};
use crate::api::status::{self, ApiError};
use crate::api::table;
use crate::store::KeyValue;

/// Entry point for every HTTP request. `cert_user` is who the client certificate of the
/// connection names (`None` without one: a bearer token may still authenticate); it is
/// passed in so that tests can call this without a TLS connection.
pub async fn handle(
    ctx: Arc<ApiContext>,
    cert_user: Option<User>,
    req: Request<impl RequestBody>,
) -> Response<Body> {
    let started = Instant::now();
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let class = {
        let route = router::parse(&path, &ctx.registry.resources());
        metrics::classify(&method, route.as_ref(), req.uri().query(), req.headers())
    };
    let inflight = (!class.longrunning).then(|| ctx.metrics.api.inflight(class.mutating));
    let caller = authenticate(&ctx, cert_user, &req);
    let impersonating = req.headers().contains_key(impersonation::USER_HEADER);
    let real = caller.as_ref().ok().and_then(|u| u.clone());
    let user = caller.and_then(|u| impersonate(&ctx, u, &req));
    let authenticated = user.as_ref().ok().and_then(|u| u.as_ref());
    let mut audit = ctx.audit.as_ref().map(|log| {
        log.begin(
            &req,
            authenticated,
            &*ctx.registry,
            &ctx.rbac,
            &ctx.registry.resources(),
        )
    });
    if let (Some(audit), Some(real), true) = (&mut audit, &real, impersonating) {
        if authenticated.is_some() {
            audit.impersonated_by(real);
        }
    }
    let resp = match &user {
        Ok(user) => match match &mut audit {
            Some(audit) => {
                let (result, annotations) =
                    super::audit::collecting(dispatch(&ctx, user.as_ref(), req)).await;
                audit.annotate(annotations);
                result
            }
            None => dispatch(&ctx, user.as_ref(), req).await,
        } {
            Ok(resp) => resp,
            Err(e) => {
                if let Some(audit) = &mut audit {
                    audit.failed(&e);
                }
                response::error(&e)
            }
        },
        Err(e) => {
            if let Some(audit) = &mut audit {
                audit.failed(e);
            }
            refusal(e)
        }
    };
    let resp = match audit {
        Some(audit) => audit.finish(resp).await,
        None => resp,
    };
    drop(inflight);
    let elapsed = (!class.longrunning).then(|| started.elapsed());
    ctx.metrics
        .api
        .observe(&class.labels, resp.status().as_u16(), elapsed);
    let resp = match class.longrunning && resp.status().is_success() {
        true => metrics::HoldGuard::wrap(resp, ctx.metrics.api.longrunning(&class.labels)),
        false => resp,
    };
    let user = user.ok().flatten();
    tracing::debug!(
        %method,
        %path,
        user = user.as_ref().map(|u| u.name.as_str()).unwrap_or("-"),
        status = resp.status().as_u16(),
        elapsed_us = started.elapsed().as_micros() as u64,
        "request"
    );
    resp
}

/// Who sent `req`: the client certificate's user (refused when it is a revoked node
/// certificate), else the bearer token's (refused when wrong, 429 when its source failed
/// too often), else nobody (`Ok(None)`).
fn authenticate<B>(
    ctx: &ApiContext,
    cert_user: Option<User>,
    req: &Request<B>,
) -> Result<Option<User>, ApiError> {
    let connection = req.extensions().get::<auth::ConnectionInfo>();
    if let Some(user) = cert_user {
        if let Some(connection) = connection {
            let credential = connection.credential.as_deref();
            super::node_credentials::check_node_credential(&ctx.registry, &user, credential)?;
        }
        return Ok(Some(user.with_authenticated_group()));
    }
    let Some(token) = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
    else {
        return Ok(None);
    };
    let service_account = |token: &str| {
        let tokens = ctx.registry.service_account_tokens.as_deref()?;
        let now = chrono::Utc::now().timestamp();
        match tokens.authenticate(&ctx.registry, token, None, now) {
            Ok(found) => found.map(|a| a.user),
            Err(e) => {
                tracing::info!(error = %e, "authentication failed: service-account token refused");
                None
            }
        }
    };
    ctx.tokens
        .authenticate_from_or(
            token.trim(),
            connection.map(|c| c.peer.ip()),
            service_account,
        )
        .map(|u| Some(u.with_authenticated_group()))
        .map_err(auth::TokenRefusal::to_api_error)
}

/// The user `req` runs as: `user`, or the one its `Impersonate-*` headers name once
/// `user` may impersonate every part of it (403 naming the first part it may not).
fn impersonate<B>(
    ctx: &ApiContext,
    user: Option<User>,
    req: &Request<B>,
) -> Result<Option<User>, ApiError> {
    let Some(wanted) = impersonation::requested(req.headers())? else {
        return Ok(user);
    };
    let caller = user.ok_or_else(ApiError::unauthorized)?;
    for check in wanted.checks() {
        if ctx.decide(&caller, &check.attrs) != Decision::Allow {
            return Err(impersonation::forbidden(&caller, &check));
        }
    }
    let user = wanted.user();
    tracing::debug!(caller = %caller.name, user = %user.name, "impersonating");
    Ok(Some(user))
}

/// The answer to a refused credential, with `Retry-After` on a 429.
fn refusal(e: &ApiError) -> Response<Body> {
    let mut resp = response::error(e);
    let retry_after = e
        .details
        .as_ref()
        .and_then(|d| d["retryAfterSeconds"].as_u64());
    if let Some(secs) = retry_after {
        resp.headers_mut()
            .insert(header::RETRY_AFTER, http::HeaderValue::from(secs));
    }
    resp
}

fn header_str<B>(req: &Request<B>, name: header::HeaderName) -> &str {
    req.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

async fn dispatch(
    ctx: &ApiContext,
    user: Option<&User>,
    req: Request<impl RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let served = ctx.registry.resources();
    let route = router::parse(req.uri().path(), &served);
    match &route {
        Some(Route::Version) => return Ok(response::json(200, &discovery::version())),
        Some(Route::Health) if req.uri().path().trim_end_matches('/') == "/readyz" => {
            return Ok(readyz(ctx, req.uri().query().unwrap_or("")).await)
        }
        Some(Route::Health) => return Ok(response::text(200, "ok")),
        Some(Route::CaCerts) => return Ok(response::text(200, ctx.ca_pem.clone())),
        _ => {}
    }
    let user = user.ok_or_else(ApiError::unauthorized)?;
    let route = route.ok_or_else(ApiError::no_route)?;
    if route == Route::NodeCredentials {
        return node_credentials(ctx, user, req).await;
    }
    let accept = header_str(&req, header::ACCEPT).to_string();
    if req.method() != Method::GET && !matches!(route, Route::Resource(_)) {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.method()
        )));
    }
    match route {
        Route::CoreVersions if discovery::wants_aggregated(&accept) => {
            Ok(aggregated(discovery::aggregated(&served, true)))
        }
        Route::CoreVersions => Ok(response::json(
            200,
            &discovery::core_versions(&ctx.advertise),
        )),
        Route::Groups if discovery::wants_aggregated(&accept) => {
            Ok(aggregated(discovery::aggregated(&served, false)))
        }
        Route::Groups => Ok(response::json(200, &discovery::groups(&served))),
        Route::Group(g) => discovery::group(&served, &g)
            .map(|v| response::json(200, &v))
            .ok_or_else(ApiError::no_route),
        Route::ResourceList { group, version } => Ok(response::json(
            200,
            &discovery::resource_list(&served, &group, &version),
        )),
        Route::OpenApi(path) => openapi(ctx, &path, &req),
        Route::OpenIdConfiguration | Route::OpenIdKeys => openid(ctx, &route),
        Route::Metrics => metrics::scrape(ctx, user),
        Route::Resource(r) => {
            // A deprecated custom resource version warns on every request, as upstream.
            let deprecation = r.def.custom.and_then(|c| c.deprecation_warning.clone());
            let resp = resource(ctx, user, r, req).await?;
            Ok(match deprecation {
                Some(warning) => response::with_warnings(resp, &[warning]),
                None => resp,
            })
        }
        Route::Version | Route::Health | Route::CaCerts | Route::NodeCredentials => {
            unreachable!("answered above")
        }
    }
}

/// How long the `/readyz` datastore check may take before it counts as failed.
const READYZ_DATASTORE_TIMEOUT: Duration = Duration::from_secs(2);

/// `/readyz` as upstream answers it: `ok`, or with `?verbose` (and always on failure)
/// one `[+]name ok` / `[-]name failed: reason withheld` line per check and a verdict;
/// 500 when a check fails. `?exclude=NAME` skips a check.
async fn readyz(ctx: &ApiContext, query: &str) -> Response<Body> {
    let params: Vec<(String, String)> = form_urlencoded::parse(query.as_bytes())
        .into_owned()
        .collect();
    let verbose = params.iter().any(|(k, _)| k == "verbose");
    let excluded = |name: &str| params.iter().any(|(k, v)| k == "exclude" && v == name);
    let datastore = match tokio::time::timeout(
        READYZ_DATASTORE_TIMEOUT,
        ctx.registry.datastore_ready(),
    )
    .await
    {
        Ok(result) => result.map_err(|e| e.to_string()),
        Err(_) => Err("the datastore did not answer in time".to_string()),
    };
    let checks = [("ping", Ok(())), ("datastore", datastore)];
    let mut body = String::new();
    let mut failed = false;
    for (name, result) in checks.iter().filter(|(name, _)| !excluded(name)) {
        match result {
            Ok(()) => body.push_str(&format!("[+]{name} ok\n")),
            Err(reason) => {
                tracing::info!(check = name, %reason, "readyz check failed");
                body.push_str(&format!("[-]{name} failed: reason withheld\n"));
                failed = true;
            }
        }
    }
    match (failed, verbose) {
        (true, _) => response::text(500, format!("{body}readyz check failed\n")),
        (false, true) => response::text(200, format!("{body}readyz check passed\n")),
        (false, false) => response::text(200, "ok"),
    }
}

async fn node_credentials(
    ctx: &ApiContext,
    user: &User,
    req: Request<impl RequestBody>,
) -> Result<Response<Body>, ApiError> {
    if req.method() != Method::POST {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({})",
            req.method()
        )));
    }
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let body = request::read_body(req.into_body(), content_length).await?;
    let creds = super::node_credentials::issue(&ctx.registry, &ctx.pki, user, &body).await?;
    let value = serde_json::to_value(creds).map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(response::json(200, &value))
}

/// The service-account issuer's OIDC discovery document or key set.
fn openid(ctx: &ApiContext, route: &Route) -> Result<Response<Body>, ApiError> {
    use super::serviceaccount::oidc;
    let tokens = ctx
        .registry
        .service_account_tokens
        .as_deref()
        .ok_or_else(ApiError::no_route)?;
    let (doc, content_type) = match route {
        Route::OpenIdKeys => (oidc::jwks(tokens), oidc::JWKS_CONTENT_TYPE),
        _ => (
            oidc::configuration(tokens, &ctx.advertise),
            "application/json",
        ),
    };
    let mut resp = response::json(200, &doc);
    let headers = resp.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(content_type),
    );
    headers.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static(oidc::CACHE_CONTROL),
    );
    Ok(resp)
}

fn aggregated(v: Value) -> Response<Body> {
    let mut resp = response::json(200, &v);
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        http::HeaderValue::from_static(discovery::AGGREGATED_CONTENT_TYPE),
    );
    resp
}

/// An OpenAPI document, with a strong `ETag` (`304` when `If-None-Match` matches). A
/// request naming the current `hash=` may cache the answer for good: the URL changes with
/// the document. `/openapi/v2` is JSON or gnostic protobuf as `Accept` asks (`406` when
/// neither), each form with its own `ETag`, and says `Vary: Accept`.
fn openapi<B>(ctx: &ApiContext, path: &str, req: &Request<B>) -> Result<Response<Body>, ApiError> {
    let served = ctx.registry.resources();
    let v2_format = if path.trim_matches('/') == "v2" {
        let accept = header_str(req, header::ACCEPT);
        Some(v2::negotiate(accept).ok_or_else(|| {
            ApiError::not_acceptable(format!("/openapi/v2 is not served as {accept}"))
        })?)
    } else {
        None
    };
    let doc = match v2_format {
        Some(format) => ctx.openapi.v2(format, &served).ok_or_else(|| {
            ApiError::unavailable("the protobuf form of /openapi/v2 could not be built")
        })?,
        None => ctx
            .openapi
            .document(path, &served)
            .ok_or_else(ApiError::no_route)?,
    };
    let etag = doc.etag();
    let not_modified = header_str(req, header::IF_NONE_MATCH)
        .split(',')
        .any(|tag| {
            let tag = tag.trim();
            tag == "*" || tag.trim_start_matches("W/") == etag
        });
    let gzipped = doc
        .gzipped()
        .filter(|_| accepts_gzip(header_str(req, header::ACCEPT_ENCODING)));
    let mut resp = if not_modified {
        let mut resp = response::raw_json(304, Bytes::new());
        resp.headers_mut().remove(header::CONTENT_TYPE);
        resp
    } else if let Some(body) = gzipped.clone() {
        let mut resp = response::raw_json(200, body);
        resp.headers_mut().insert(
            header::CONTENT_ENCODING,
            http::HeaderValue::from_static("gzip"),
        );
        resp
    } else {
        let body = doc
            .body()
            .map_err(|e| ApiError::internal(format!("reading the OpenAPI document: {e}")))?;
        response::raw_json(200, body)
    };
    let immutable = Query::parse(req.uri().query()).get("hash") == Some(doc.hash.as_str());
    let cache_control = if immutable {
        "public, immutable, max-age=31536000"
    } else {
        "no-cache, private"
    };
    let headers = resp.headers_mut();
    if let Ok(v) = http::HeaderValue::from_str(&etag) {
        headers.insert(header::ETAG, v);
    }
    headers.insert(
        header::CACHE_CONTROL,
        http::HeaderValue::from_static(cache_control),
    );
    // The body depends on Accept-Encoding (and, for v2, on Accept).
    let vary = if v2_format.is_some() {
        "Accept, Accept-Encoding"
    } else {
        "Accept-Encoding"
    };
    headers.insert(header::VARY, http::HeaderValue::from_static(vary));
    if let Some(format) = v2_format {
        if !not_modified {
            let content_type = http::HeaderValue::from_static(format.content_type());
            headers.insert(header::CONTENT_TYPE, content_type);
        }
    }
    Ok(resp)
}

/// Whether an `Accept-Encoding` header value allows a gzip-encoded body (`gzip` or `*`
/// without `q=0`).
pub(super) fn accepts_gzip(accept_encoding: &str) -> bool {
    accept_encoding.split(',').any(|coding| {
        let mut parts = coding.split(';');
        let name = parts.next().unwrap_or("").trim();
        let refused = parts.any(|p| {
            p.trim()
                .strip_prefix("q=")
                .and_then(|q| q.trim().parse::<f32>().ok())
                == Some(0.0)
        });
        (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
    })
}

pub(super) fn verb_of(method: &Method, r: &ResourceRoute, query: &Query) -> &'static str {
    // Streaming into a pod is a create, whether the client upgrades a GET (WebSocket) or
    // a POST (SPDY), as upstream authorizes it.
    if matches!(
        r.subresource.as_deref(),
        Some("exec" | "attach" | "portforward")
    ) && matches!(*method, Method::GET | Method::POST)
    {
        return "create";
    }
    if r.subresource.as_deref() == Some("proxy") && *method == Method::HEAD {
        return "get";
    }
    match *method {
        Method::GET if r.name.is_none() && (query.flag("watch") || r.watch_path) => "watch",
        Method::GET if r.name.is_none() => "list",
        Method::GET => "get",
        Method::POST => "create",
        Method::PUT => "update",
        Method::PATCH => "patch",
        Method::DELETE if r.name.is_none() => "deletecollection",
        Method::DELETE => "delete",
        _ => "unknown",
    }
}

async fn resource(
    ctx: &ApiContext,
    user: &User,
    r: ResourceRoute,
    req: Request<impl RequestBody>,
) -> Result<Response<Body>, ApiError> {
    let query = Query::parse(req.uri().query());
    let method = req.method().clone();
    let verb = verb_of(&method, &r, &query);
    auth::authorize(
        user,
        &auth::Action {
            verb,
            def: r.def,
            namespace: r.namespace.as_deref(),
            name: r.name.as_deref(),
            subresource: r.subresource.as_deref(),
            selected_name: selected_name(query.str("fieldSelector")),
        },
        &*ctx.registry,
        &ctx.rbac,
    )?;
    let def = r.def;
    if let (Some(name), Some("proxy")) = (r.name.as_deref(), r.subresource.as_deref()) {
        // The query and body are the backend's: nothing here reads them.
        let path = r.proxy_path.as_deref().unwrap_or("");
        let ns = r.namespace.as_deref();
        return super::proxy::proxy(ctx, def.plural, ns, name, path, req).await;
    }
    // Kinds served for some verbs only (Binding, TokenReview: create) refuse the others.
    if r.subresource.is_none() && !def.verbs().contains(&verb) {
        return Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            status::resource_name(def)
        )));
    }
    let ns = r.namespace.as_deref();
    if super::resource_metrics::is_metrics(def) {
        return super::resource_metrics::serve(ctx, def, ns, r.name.as_deref(), &query);
    }
    let as_table = match table::negotiated_table_version(header_str(&req, header::ACCEPT)) {
        Some(version) => Some(TableRequest {
            version,
            include: table::IncludeObject::try_parse(query.str("includeObject"))
                .map_err(ApiError::bad_request)?,
        }),
        None => None,
    };
    let content_type = header_str(&req, header::CONTENT_TYPE).to_string();
    let content_length = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok());
    let mut opts = WriteOptions::default();
    opts.dry_run = query.dry_run()?;
    opts.field_validation = FieldValidation::parse(query.str("fieldValidation"))?;
    opts.requester = Some(user.clone());
    let applying = PatchType::from_content_type(&content_type) == Some(PatchType::Apply);
    opts.force = query.flag("force");
    opts.field_manager = match query.get("fieldManager").filter(|m| !m.is_empty()) {
        Some(m) => Some(m.to_string()),
        // Server-side apply must name its manager; other writes default to the
        // client's user agent, as upstream.
        None if applying => None,
        None => Some(super::registry::manager_from_user_agent(header_str(
            &req,
            header::USER_AGENT,
        ))),
    };
    let sub = r.subresource.as_deref();
    match (verb, r.name.as_deref(), sub) {
        ("list", None, None) => list(ctx, user, def, ns, &query, as_table).await,
        ("watch", None, None) => watch(ctx, user, def, ns, &query, as_table).await,
        ("get", Some(name), None | Some("status" | "ephemeralcontainers")) => {
            // A resourceVersion other than 0 asks for data not older than it.
            if let Some(rv) = object::parse_resource_version(query.str("resourceVersion"))
                .map_err(ApiError::bad_request)?
                .filter(|rv| *rv != 0)
            {
                wait_until_fresh(ctx, rv).await?;
            }
            let kv = ctx.registry.get(def, ns, name)?;
            let kv = ctx.registry.one_in_served_version(def, kv).await?;
            match as_table {
                Some(t) => Ok(response::json(200, &t.one(def, &kv.value, true))),
                None => Ok(response::raw_json(200, kv.raw.clone())),
            }
        }
        ("get", Some(name), Some("scale")) => {
            let kv = ctx.registry.get(def, ns, name)?;
            let kv = ctx.registry.one_in_served_version(def, kv).await?;
            Ok(response::json(200, &ctx.registry.scale_of(def, &kv.value)))
        }
        ("get", Some(name), Some("log")) => {
            let pod = bound_pod(ctx, def, ns, name)?;
            super::kubelet_proxy::pod_logs(ctx, &pod, &query).await
        }
        ("create", Some(name), Some(sub @ ("exec" | "attach"))) => {
            let pod = bound_pod(ctx, def, ns, name)?;
            let stream = if sub == "exec" {
                Stream::Exec
            } else {
                Stream::Attach
            };
            super::kubelet_proxy::pod_stream(ctx, &pod, &query, req, stream).await
        }
        ("create", Some(name), Some("portforward")) => {
            // A WebSocket port-forward is a GET: as upstream, it needs `get` as well.
            if method == Method::GET {
                auth::authorize(
                    user,
                    &auth::Action {
                        verb: "get",
                        def,
                        namespace: ns,
                        name: Some(name),
                        subresource: sub,
                        selected_name: None,
                    },
                    &*ctx.registry,
                    &ctx.rbac,
                )?;
            }
            let pod = bound_pod(ctx, def, ns, name)?;
            super::kubelet_proxy::pod_port_forward(ctx, &pod, req).await
        }
        ("create", None, None) => {
            if def.custom.is_some_and(|c| c.terminating) {
                return Err(ApiError::method_not_allowed(format!(
                    "create not allowed while custom resource definition is terminating: {}",
                    def.custom.map_or("", |c| c.crd_name.as_str())
                )));
            }
            let body = request::read_body(req.into_body(), content_length).await?;
            let obj = request::decode(&content_type, &body).await?;
            if reviews::is_review(def) {
                let answer = reviews::answer(ctx, user, def, ns, obj)?;
                return Ok(response::json(201, &answer));
            }
            auth::admit_create(user, def, &obj)?;
            opts.duplicate_fields = json_duplicates(&content_type, &body);
            let w = ctx.registry.create(def, ns, obj, &opts).await?;
            written(ctx, def, 201, w).await
        }
        ("create", Some(name), Some("binding")) => {
            let body = request::read_body(req.into_body(), content_length).await?;
            let obj = request::decode(&content_type, &body).await?;
            let ns = ns.unwrap_or("default");
            ctx.registry.bind_pod(ns, name, &obj, &opts).await?;
            let bindings = resources::by_plural("", "v1", "bindings").expect("served");
            Ok(response::json(
                201,
                &status::success_status(bindings, name, None),
            ))
        }
        ("create", Some(name), Some("eviction")) => {
            let body = request::read_body(req.into_body(), content_length).await?;
            let obj = request::decode(&content_type, &body).await?;
            let ns = ns.unwrap_or("default");
            let answer =
                super::eviction::evict(&ctx.registry, ns, name, &obj, opts.dry_run).await?;
            Ok(response::json(201, &answer))
        }
        ("create", Some(name), Some("token")) => {
            let tokens = ctx
                .registry
                .service_account_tokens
                .as_deref()
                .ok_or_else(ApiError::no_route)?;
            let body = request::read_body(req.into_body(), content_length).await?;
            let obj = request::decode(&content_type, &body).await?;
            let ns = ns.unwrap_or("default");
            let answer = super::serviceaccount::token_request::create(
                &ctx.registry,
                tokens,
                user,
                ns,
                name,
                &obj,
                chrono::Utc::now(),
            )?;
            Ok(response::json(201, &answer))
        }
        ("update", Some(name), None | Some("status" | "ephemeralcontainers")) => {
            let body = request::read_body(req.into_body(), content_length).await?;
            let obj = request::decode(&content_type, &body).await?;
            opts.duplicate_fields = json_duplicates(&content_type, &body);
            let w = ctx.registry.update(def, ns, name, obj, sub, &opts).await?;
            written(ctx, def, 200, w).await
        }
        ("update", Some(name), Some("finalize")) => {
            let body = request::read_body(req.into_body(), content_length).await?;
            let obj = request::decode(&content_type, &body).await?;
            let finalizers = obj["spec"]["finalizers"].clone();
            let w = ctx
                .registry
                .modify(def, ns, name, Some("finalize"), &opts, &|cur| {
                    let mut cur = cur.clone();
                    cur["spec"]["finalizers"] = finalizers.clone();
                    Ok(cur)
                })
                .await?;
            written(ctx, def, 200, w).await
        }
        ("update", Some(name), Some("scale")) => {
            let body = request::read_body(req.into_body(), content_length).await?;
            let scale = request::decode(&content_type, &body).await?;
            let w = ctx
                .registry
                .update_scale(def, ns, name, &scale, &opts)
                .await?;
            let kv = ctx.registry.one_in_served_version(def, w.kv).await?;
            Ok(response::json(200, &ctx.registry.scale_of(def, &kv.value)))
        }
        ("patch", Some(name), None | Some("status" | "ephemeralcontainers")) => {
            let patch_type = patch_type(&content_type)?;
            if def.custom.is_some() && patch_type == PatchType::StrategicMerge {
                // Custom kinds have no patch strategies: upstream refuses the media type.
                return Err(ApiError::unsupported_media_type(
                    "the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/apply-patch+yaml",
                ));
            }
            let body = request::read_body(req.into_body(), content_length).await?;
            let w = ctx
                .registry
                .patch(def, ns, name, (patch_type, &body), sub, &opts)
                .await?;
            // Server-side apply of a missing object creates it: 201, as upstream.
            let created = patch_type == PatchType::Apply
                && w.kv.mod_revision != 0
                && w.kv.create_revision == w.kv.mod_revision;
            written(ctx, def, if created { 201 } else { 200 }, w).await
        }
        ("patch", Some(name), Some("scale")) => {
            let patch_type = patch_type(&content_type)?;
            let body = request::read_body(req.into_body(), content_length).await?;
            let w = ctx
                .registry
                .patch_scale(def, ns, name, (patch_type, &body), &opts)
                .await?;
            let kv = ctx.registry.one_in_served_version(def, w.kv).await?;
            Ok(response::json(200, &ctx.registry.scale_of(def, &kv.value)))
        }
        ("delete", Some(name), None) => {
            let body = request::read_body(req.into_body(), content_length).await?;
            let mut dopts = super::delete_options::from_request(
                &content_type,
                &body,
                &query,
                &def.api_version(),
                opts.dry_run,
            )?;
            dopts.requester = opts.requester.clone();
            let w = ctx.registry.delete(def, ns, name, &dopts).await?;
            if w.deleted && !strategy_for(def).returns_deleted_object() {
                // Upstream's finalizeDelete: a Status naming what went, unless the kind
                // answers with the object.
                let uid = w.kv.value["metadata"]["uid"].as_str();
                return Ok(response::with_warnings(
                    response::json(200, &status::success_status(def, name, uid)),
                    &w.warnings,
                ));
            }
            // Upstream answers 202 only for a pending delete asked with
            // `orphanDependents: false` ("changing it would break existing clients").
            let code = if !w.deleted && dopts.orphan_dependents_false {
                202
            } else {
                200
            };
            written(ctx, def, code, w).await
        }
        ("deletecollection", None, None) => {
            let body = request::read_body(req.into_body(), content_length).await?;
            let mut dopts = super::delete_options::from_request(
                &content_type,
                &body,
                &query,
                &def.api_version(),
                opts.dry_run,
            )?;
            dopts.requester = opts.requester.clone();
            delete_collection(ctx, def, ns, &query, &dopts).await
        }
        _ => Err(ApiError::method_not_allowed(format!(
            "the server does not allow this method on the requested resource ({method} {})",
            status::resource_name(def)
        ))),
    }
}

/// The pod `name`, which must be bound to a node (for log, exec and attach).
fn bound_pod(
    ctx: &ApiContext,
    def: &'static ResourceDef,
    ns: Option<&str>,
    name: &str,
) -> Result<Arc<Value>, ApiError> {
    let pod = ctx.registry.get(def, ns, name)?.value.get();
    if pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
        return Err(ApiError::bad_request(format!(
            "pod {name} does not have a host assigned"
        )));
    }
    Ok(pod)
}

/// The one name a `metadata.name=X` field selector narrows a list or watch to.
pub(super) fn selected_name(field_selector: &str) -> Option<&str> {
    let mut names = field_selector.split(',').filter_map(|term| {
        let term = term.trim();
        term.strip_prefix("metadata.name==")
            .or_else(|| term.strip_prefix("metadata.name="))
    });
    let name = names.next()?;
    (names.next().is_none() && !name.is_empty()).then_some(name)
}

/// Duplicate keys of a JSON body (YAML bodies with duplicates fail to parse anyway).
fn json_duplicates(content_type: &str, body: &[u8]) -> Vec<String> {
    let media = content_type.split(';').next().unwrap_or("").trim();
    if matches!(media, "" | "application/json" | "*/*") {
        object::duplicate_fields(body)
    } else {
        Vec::new()
    }
}

/// The answer to a write: the object in the version written (custom objects through
/// their CRD's converter).
async fn written(
    ctx: &ApiContext,
    def: &ResourceDef,
    code: u16,
    w: Written,
) -> Result<Response<Body>, ApiError> {
    let kv = super::registry::in_version(def, w.kv);
    let kv = ctx.registry.one_in_served_version(def, kv).await?;
    Ok(response::with_warnings(
        response::raw_json(code, kv.raw),
        &w.warnings,
    ))
}

fn patch_type(content_type: &str) -> Result<PatchType, ApiError> {
    PatchType::from_content_type(content_type).ok_or_else(|| {
        ApiError::unsupported_media_type(format!(
            "the body of the request was in an unknown format ({content_type}) - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json"
        ))
    })
}

/// Label and field selectors of a list/watch request, as one predicate.
fn selectors(def: &ResourceDef, query: &Query) -> Result<watch::Predicate, ApiError> {
    let (labels, fields) = parse_selectors(def, query)?;
    Ok(predicate_of(def, labels, fields))
}

/// The request's label and field selectors, checked (syntax, supported fields).
fn parse_selectors(
    def: &ResourceDef,
    query: &Query,
) -> Result<(LabelSelector, FieldSelector), ApiError> {
    let labels = LabelSelector::parse(query.str("labelSelector"))
        .map_err(|e| ApiError::bad_request(format!("unable to parse requirement: {e}")))?;
    let fields = FieldSelector::parse(query.str("fieldSelector"))
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    selector::check_supported(strategy_for(def).selectable_fields(), &fields)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok((labels, fields))
}

/// Selectors as a predicate on the parsed object.
fn predicate_of(
    def: &ResourceDef,
    labels: LabelSelector,
    fields: FieldSelector,
) -> watch::Predicate {
    let strategy = strategy_for(def);
    Arc::new(move |obj: &Value| {
        labels.matches(object::labels(obj))
            && fields.matches_by(|field| strategy.field_value(obj, field))
    })
}

/// A list's (or a collection delete's) selectors as a filter of stored objects: on what
/// each object version extracts once (its labels and the kind's selectable fields, see
/// `store::LazyValue::selectable`), so a selector list does not parse every object.
/// `metadata.name` and `metadata.namespace` are read from the key. A node's narrowed
/// reads (persistent volumes) and views of another field set read the parsed object.
fn list_filter(
    user: &User,
    def: &'static ResourceDef,
    query: &Query,
) -> Result<impl Fn(&KeyValue) -> bool + Sync, ApiError> {
    let (labels, fields) = parse_selectors(def, query)?;
    let predicate =
        auth::narrow_for_node(user, def, predicate_of(def, labels.clone(), fields.clone()));
    let narrowed = auth::narrows_for_node(user, def).is_some();
    let everything = labels.is_empty() && fields.is_empty() && !narrowed;
    let strategy = strategy_for(def);
    let prefix_len = def.list_prefix(None).len();
    Ok(move |kv: &KeyValue| {
        if everything {
            return true;
        }
        if narrowed {
            return predicate(&kv.value.get());
        }
        let value_of = |obj: &Value, field: &str| match field {
            "metadata.name" | "metadata.namespace" => String::new(),
            _ => strategy.field_value(obj, field),
        };
        let Some(extracted) = kv.value.selectable(strategy.selectable_fields(), value_of) else {
            return predicate(&kv.value.get());
        };
        let (namespace, name) = key_name(def, &kv.key[prefix_len.min(kv.key.len())..]);
        labels.matches_by(|key| extracted.label(key))
            && fields.matches_by(|field| match field {
                "metadata.name" => name.to_string(),
                "metadata.namespace" => namespace.to_string(),
                _ => extracted.field(field).to_string(),
            })
    })
}

/// The namespace ("" for a cluster-scoped kind) and name in the key of an object of
/// `def`, past the kind's prefix.
fn key_name<'k>(def: &ResourceDef, rest: &'k str) -> (&'k str, &'k str) {
    match rest.split_once('/') {
        Some((namespace, name)) if def.namespaced => (namespace, name),
        _ => ("", rest),
    }
}

#[derive(serde::Serialize, serde::Deserialize)]
struct ContinueToken {
    rv: u64,
    start: String,
}

/// How objects of `def` print as Table rows: a custom resource's printer columns, or
/// the built-in kind's printer.
fn printer_of(def: &ResourceDef) -> &'static dyn table::RowPrinter {
    match def.custom {
        Some(custom) => custom,
        None => strategy_for(def).printer(),
    }
}

/// A client asked for `meta.k8s.io` Table output (kubectl get's default).
#[derive(Debug, Clone, Copy)]
struct TableRequest {
    version: &'static str,
    include: table::IncludeObject,
}

impl TableRequest {
    /// A one-row Table for `obj` in the negotiated version (a GET, or a watch event).
    fn one(&self, def: &ResourceDef, obj: &Value, with_columns: bool) -> Value {
        let printer = printer_of(def);
        let mut v =
            table::watch_table(printer, obj, self.include, chrono::Utc::now(), with_columns);
        table::set_api_version(&mut v, self.version);
        v
    }
}

async fn list(
    ctx: &ApiContext,
    user: &User,
    def: &'static ResourceDef,
    ns: Option<&str>,
    query: &Query,
    as_table: Option<TableRequest>,
) -> Result<Response<Body>, ApiError> {
    let filter = list_filter(user, def, query)?;
    let limit = query.int("limit")?.unwrap_or(0).max(0) as usize;
    let start_after = match query.get("continue").filter(|c| !c.is_empty()) {
        None => None,
        Some(token) => {
            let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(token)
                .or_else(|_| base64::engine::general_purpose::STANDARD.decode(token))
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            let t: ContinueToken = serde_json::from_slice(&bytes)
                .map_err(|_| ApiError::bad_request("continue key is not valid"))?;
            let prefix = def.list_prefix(ns);
            if !t.start.starts_with(&prefix) {
                return Err(ApiError::bad_request("continue key is not valid"));
            }
            Some(t.start)
        }
    };
    let rv_match = query.str("resourceVersionMatch");
    if let Some(rv) = object::parse_resource_version(query.str("resourceVersion"))
        .map_err(ApiError::bad_request)?
    {
        // Exact and NotOlderThan (the default for a resourceVersion but 0) both need
        // the store to have reached it.
        if rv != 0 {
            wait_until_fresh(ctx, rv).await?;
        }
        if rv_match == "Exact" && rv != ctx.registry.revision() {
            return Err(ApiError::gone(format!(
                "too old resource version: {rv} ({})",
                ctx.registry.revision()
            )));
        }
    }
    let mut page = ctx
        .registry
        .list(def, ns, start_after.as_deref(), limit, &filter);
    // One review for the page's objects not stored in the version asked for.
    page.items = ctx
        .registry
        .in_served_version(def, std::mem::take(&mut page.items), true)
        .await?;
    let mut meta = json!({"resourceVersion": page.revision.to_string()});
    if let Some(last) = &page.continue_after {
        let token = serde_json::to_vec(&ContinueToken {
            rv: page.revision,
            start: last.clone(),
        })
        .unwrap_or_default();
        meta["continue"] = json!(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(token));
        meta["remainingItemCount"] = json!(page.remaining);
    }
    if let Some(t) = as_table {
        let objects: Vec<&Value> = page.items.iter().map(|kv| &*kv.value).collect();
        let mut v = table::table(
            printer_of(def),
            &objects,
            t.include,
            chrono::Utc::now(),
            meta,
        );
        table::set_api_version(&mut v, t.version);
        return Ok(response::json(200, &v));
    }
    let head = json!({
        "kind": format!("{}List", def.kind),
        "apiVersion": def.api_version(),
        "metadata": meta,
    });
    let head = serde_json::to_vec(&head).unwrap_or_default();
    let size: usize = page.items.iter().map(|kv| kv.raw.len() + 1).sum();
    let mut out = BytesMut::with_capacity(head.len() + size + 16);
    // `{...metadata}` → `{...metadata,"items":[...]}`
    out.put_slice(&head[..head.len() - 1]);
    out.put_slice(b",\"items\":[");
    for (i, kv) in page.items.iter().enumerate() {
        if i > 0 {
            out.put_u8(b',');
        }
        out.put_slice(&kv.raw);
    }
    out.put_slice(b"]}");
    Ok(response::raw_json(200, out.freeze()))
}

async fn watch(
    ctx: &ApiContext,
    user: &User,
    def: &'static ResourceDef,
    ns: Option<&str>,
    query: &Query,
    as_table: Option<TableRequest>,
) -> Result<Response<Body>, ApiError> {
    let predicate = auth::narrow_for_node(user, def, selectors(def, query)?);
    let timeout = watch::watch_timeout(query.int("timeoutSeconds")?);
    let send_initial = query.get("sendInitialEvents") == Some("true");
    let rv = object::parse_resource_version(query.str("resourceVersion"))
        .map_err(ApiError::bad_request)?;
    if let (Some(rv), true) = (rv, send_initial) {
        if let Err(e) = wait_until_fresh(ctx, rv).await {
            return Ok(watch::error_stream(&e));
        }
    }
    let slot = match ctx.watches.acquire(&user.name) {
        Ok(slot) => slot,
        Err(e) => {
            let mut resp = response::error(&e);
            resp.headers_mut().insert(
                header::RETRY_AFTER,
                http::HeaderValue::from(watch::TOO_MANY_WATCHES_RETRY_SECONDS),
            );
            return Ok(resp);
        }
    };
    let still_authorized: Option<watch::Predicate> = user.node_name().map(|node| {
        let (node, registry) = (node.to_string(), ctx.registry.clone());
        Arc::new(move |obj: &Value| auth::node_may_read(&node, def, obj, &*registry))
            as watch::Predicate
    });
    let request = watch::WatchRequest {
        def,
        predicate,
        encoder: match as_table {
            None if super::registry::converts(def) => {
                Arc::new(move |kv: &KeyValue| super::registry::in_version(def, kv.clone()).raw)
            }
            None => Arc::new(|kv: &KeyValue| kv.raw.clone()),
            Some(t) => {
                let first = std::sync::atomic::AtomicBool::new(true);
                Arc::new(move |kv: &KeyValue| {
                    let with_columns = first.swap(false, std::sync::atomic::Ordering::Relaxed);
                    let v = t.one(def, &kv.value, with_columns);
                    Bytes::from(serde_json::to_vec(&v).unwrap_or_default())
                })
            }
        },
        convert: def.custom.is_some_and(|c| c.conversion.is_some()).then(|| {
            let registry = ctx.registry.clone();
            Arc::new(move |kv: KeyValue| {
                let registry = registry.clone();
                tokio::spawn(async move { registry.one_in_served_version(def, kv).await })
            }) as watch::Convert
        }),
        still_authorized,
        bookmarks: query.flag("allowWatchBookmarks"),
        initial_events_end: send_initial,
        timeout,
        content_type: "application/json",
        slot: Some(slot),
    };
    let prefix = def.list_prefix(ns);
    let store = &ctx.registry;
    match rv {
        Some(rv) if rv != 0 && !send_initial => match store.watch(&prefix, rv) {
            Ok(w) => Ok(watch::stream(request, Vec::new(), w)),
            Err(crate::store::StoreError::Compacted { requested, oldest }) => {
                Ok(watch::error_stream(&ApiError::gone(format!(
                    "too old resource version: {requested} ({oldest})"
                ))))
            }
            Err(e) => Err(ApiError::internal(e.to_string())),
        },
        _ => {
            let (items, _rev, w) = store.snapshot_and_watch(&prefix);
            Ok(watch::stream(request, items, w))
        }
    }
}

/// How long a read naming a resourceVersion newer than the store's waits for it.
const FRESHNESS_WAIT: Duration = Duration::from_secs(3);

/// Waits (at most [`FRESHNESS_WAIT`]) until the store has reached `rv`, for reads that
/// must not be older than `rv`; then upstream's 504 "Too large resource version".
async fn wait_until_fresh(ctx: &ApiContext, rv: u64) -> Result<(), ApiError> {
    if ctx.registry.wait_for_revision(rv, FRESHNESS_WAIT).await {
        return Ok(());
    }
    Err(too_large_resource_version(rv, ctx.registry.revision()))
}

/// Upstream's `storage.NewTooLargeResourceVersionError`: a 504 Timeout with the cause
/// `ResourceVersionTooLarge` (clients retry after a second).
fn too_large_resource_version(requested: u64, current: u64) -> ApiError {
    ApiError {
        details: Some(json!({
            "causes": [{"reason": "ResourceVersionTooLarge", "message": "Too large resource version"}],
            "retryAfterSeconds": 1,
        })),
        ..ApiError::new(
            504,
            "Timeout",
            format!("Timeout: Too large resource version: {requested}, current: {current}"),
        )
    }
}

async fn delete_collection(
    ctx: &ApiContext,
    def: &'static ResourceDef,
    ns: Option<&str>,
    query: &Query,
    dopts: &DeleteOptions,
) -> Result<Response<Body>, ApiError> {
    let (labels, fields) = parse_selectors(def, query)?;
    let everything = labels.is_empty() && fields.is_empty();
    let predicate = predicate_of(def, labels, fields);
    let filter = |kv: &KeyValue| everything || predicate(&kv.value);
    let page = ctx.registry.list(def, ns, None, 0, &filter);
    // Upstream lists what it deletes in the version asked for: a conversion that fails
    // deletes nothing.
    let page_items = ctx
        .registry
        .in_served_version(def, page.items, true)
        .await?;
    let mut out = BytesMut::new();
    let mut first = true;
    for kv in page_items {
        let name = object::name(&kv.value).to_string();
        let ns = object::namespace(&kv.value).map(str::to_string);
        match ctx.registry.delete(def, ns.as_deref(), &name, dopts).await {
            Ok(w) => {
                if !first {
                    out.put_u8(b',');
                }
                first = false;
                let kv = super::registry::in_version(def, w.kv);
                let kv = ctx.registry.one_in_served_version(def, kv).await?;
                out.put_slice(&kv.raw);
            }
            Err(e) if e.code == 404 => {}
            Err(e) => return Err(e),
        }
    }
    let head = format!(
        "{{\"kind\":\"{}List\",\"apiVersion\":\"{}\",\"metadata\":{{\"resourceVersion\":\"{}\"}},\"items\":[",
        def.kind,
        def.api_version(),
        ctx.registry.revision()
    );
    let mut body = BytesMut::from(head.as_bytes());
    body.put_slice(&out);
    body.put_slice(b"]}");
    Ok(response::raw_json(200, Bytes::from(body)))
}

#[cfg(test)]
mod tests;
