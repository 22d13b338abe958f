//! The Kubernetes-compatible HTTPS API server: TLS listener, authentication, routing.

pub mod admission;
pub mod allocator;
pub mod audit;
pub mod auth;
mod authorizer;
pub mod connections;
pub mod conversion;
pub mod crds;
pub mod delete_options;
pub mod discovery;
pub mod eviction;
pub mod handlers;
pub mod heartbeats;
pub mod impersonation;
pub mod kubelet_proxy;
pub mod metrics;
pub mod node_credentials;
pub mod openapi;
pub mod peers;
pub mod proxy;
pub mod quota;
pub mod rbac;
pub mod registry;
pub mod request;
pub mod resource_metrics;
pub mod response;
pub mod reviews;
pub mod router;
pub mod serviceaccount;
pub mod watch;

use std::net::SocketAddr;
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::Duration;

use futures::FutureExt;
use http::{Request, Response};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use crate::api::status::ApiError;
pub use connections::ConnectionLimits;
use connections::{Activity, DrainOnDrop, Guarded, RateLimitedWarning, Tracked};
use registry::Registry;

/// How long a client may take to finish the TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Everything a request handler needs.
pub struct ApiContext {
    pub registry: Arc<Registry>,
    /// PEM bundle of the cluster CA (served at `/cacerts`).
    pub ca_pem: String,
    /// Address clients should use for this server (discovery `serverAddressByClientCIDRs`).
    pub advertise: String,
    /// Bearer tokens that authenticate as a user (e.g. node join tokens), by value.
    pub tokens: auth::TokenAuthenticator,
    /// OpenAPI documents, generated on first request.
    pub openapi: openapi::OpenApi,
    /// The cluster CA, to issue node credentials.
    pub pki: Arc<crate::tls::Pki>,
    /// The audit log (`--audit-log-path`), when enabled.
    pub audit: Option<Arc<audit::AuditLog>>,
    /// Open watches per user, against `--max-watches-per-user`.
    pub watches: watch::WatchLimiter,
    /// The RBAC authorizer (the registry's, `registry.rbac`).
    pub rbac: Arc<rbac::Rbac>,
    /// What `/metrics` serves; requests are counted in `metrics.api`.
    pub metrics: Arc<crate::metrics::ServerMetrics>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("bind {addr}: is another server (orc, k3s, kube-apiserver) already using this port?")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

/// Binds the HTTPS listener (separately from serving, so callers learn the port early).
pub async fn bind(addr: SocketAddr) -> Result<TcpListener, ServeError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::Bind { addr, source })
}

/// Serves the API on `listener` until the task is dropped, within `limits`: at most
/// `max_connections` at once (lowered to fit the open-file limit; more clients wait in the
/// listen backlog), each closed when its request headers are late or it stays idle.
pub async fn serve(
    listener: TcpListener,
    tls: Arc<rustls::ServerConfig>,
    ctx: Arc<ApiContext>,
    limits: ConnectionLimits,
) {
    let acceptor = TlsAcceptor::from(tls);
    let max_connections = connections::effective_max_connections(
        limits.max_connections,
        connections::soft_fd_limit(),
    );
    if max_connections < limits.max_connections {
        tracing::info!(
            max_connections,
            wanted = limits.max_connections,
            "connection cap lowered to fit the open-file limit (raise it with ulimit -n / LimitNOFILE)"
        );
    }
    let slots = Arc::new(Semaphore::new(max_connections));
    let mut accept_warning = RateLimitedWarning::new(connections::WARNING_INTERVAL);
    let mut cap_warning = RateLimitedWarning::new(connections::WARNING_INTERVAL);
    let mut failures = 0u32;
    loop {
        let slot = match slots.clone().try_acquire_owned() {
            Ok(slot) => slot,
            Err(_) => {
                if let Some(suppressed) = cap_warning.allow(Instant::now()) {
                    tracing::warn!(
                        max_connections,
                        suppressed,
                        "connection limit reached: new clients wait until a connection closes (--max-connections)"
                    );
                }
                slots
                    .clone()
                    .acquire_owned()
                    .await
                    .expect("the connection semaphore is never closed")
            }
        };
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => {
                failures = 0;
                c
            }
            Err(e) if connections::is_per_connection_error(&e) => continue,
            Err(e) => {
                failures = failures.saturating_add(1);
                let backoff = connections::accept_backoff(failures);
                if let Some(suppressed) = accept_warning.allow(Instant::now()) {
                    tracing::warn!(
                        error = %e,
                        suppressed,
                        backoff_ms = backoff.as_millis() as u64,
                        "accept failed (out of file descriptors? raise ulimit -n or lower --max-connections)"
                    );
                }
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let _slot = slot;
            serve_connection(tcp, peer, acceptor, ctx, limits).await;
        });
    }
}

/// One connection: TLS handshake, then HTTP/1 or HTTP/2 until the client closes it or a
/// timeout of `limits` does.
async fn serve_connection(
    tcp: tokio::net::TcpStream,
    peer: SocketAddr,
    acceptor: TlsAcceptor,
    ctx: Arc<ApiContext>,
    limits: ConnectionLimits,
) {
    let handshake = HANDSHAKE_TIMEOUT.min(limits.header_read_timeout);
    let tls = match tokio::time::timeout(handshake, acceptor.accept(tcp)).await {
        Ok(Ok(tls)) => tls,
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            return;
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            return;
        }
    };
    let identity = tls
        .get_ref()
        .1
        .peer_certificates()
        .and_then(|certs| certs.first())
        .and_then(|der| crate::tls::identity_from_cert(der.as_ref()));
    let connection = auth::ConnectionInfo {
        peer,
        credential: identity.as_ref().and_then(|id| id.credential.clone()),
    };
    let cert_user = identity.map(auth::User::from);
    let activity = Activity::new(Instant::now());
    let service = {
        let activity = activity.clone();
        service_fn(move |mut req: Request<Incoming>| {
            req.extensions_mut().insert(connection.clone());
            let guard = activity.request_started();
            let ctx = ctx.clone();
            let cert_user = cert_user.clone();
            async move {
                let resp = handle_catching_panics(ctx, cert_user, req).await;
                Ok::<_, std::convert::Infallible>(
                    resp.map(|body| Guarded::new(body, guard).boxed()),
                )
            }
        })
    };
    let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
    let io = TokioIo::new(Tracked::new(tls, activity.clone()));
    let conn = builder.serve_connection_with_upgrades(io, service);
    match connections::drive(conn, &activity, &limits).await {
        Some(Ok(())) => {}
        Some(Err(e)) => tracing::debug!(%peer, error = %e, "connection ended with an error"),
        None => {
            tracing::debug!(%peer, "closed a connection whose request headers were late or that stayed idle")
        }
    }
}

/// [`handlers::handle`], answering a panic as a 500 `Status` (logged with the request)
/// instead of dropping the connection ([`catch_panics`]). Request bodies the handler leaves unread are
/// drained, so that early answers (401, 404, 413) reach the client.
async fn handle_catching_panics(
    ctx: Arc<ApiContext>,
    cert_user: Option<auth::User>,
    req: Request<Incoming>,
) -> Response<response::Body> {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let req = req.map(DrainOnDrop::new);
    catch_panics(&method, &path, handlers::handle(ctx, cert_user, req)).await
}

/// The answer of `handler`, or a 500 `Status` if it panics.
async fn catch_panics(
    method: &http::Method,
    path: &str,
    handler: impl std::future::Future<Output = Response<response::Body>>,
) -> Response<response::Body> {
    match AssertUnwindSafe(handler).catch_unwind().await {
        Ok(resp) => resp,
        Err(panic) => {
            let message = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_default();
            tracing::error!(%method, %path, panic = %message, "request handler panicked");
            response::error(&ApiError::internal(
                "an error on the server prevented the request from succeeding",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_handler_is_answered_with_an_internal_error_status() {
        let resp = catch_panics(&http::Method::PATCH, "/api/v1/x", async {
            panic!("boom");
        })
        .await;
        assert_eq!(resp.status(), 500);
        let body = resp.into_body().collect().await.unwrap().to_bytes();
        let status: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(status["reason"], "InternalError");
        assert_eq!(status["code"], 500);
        let ok = catch_panics(&http::Method::GET, "/version", async {
            response::text(200, "ok")
        })
        .await;
        assert_eq!(ok.status(), 200);
    }
}
