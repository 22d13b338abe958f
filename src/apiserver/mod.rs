//! The Kubernetes-compatible HTTPS API server: TLS listener, authentication, routing.

pub mod allocator;
pub mod audit;
pub mod auth;
pub mod discovery;
pub mod handlers;
pub mod heartbeats;
pub mod kubelet_proxy;
pub mod node_credentials;
pub mod openapi;
pub mod registry;
pub mod request;
pub mod response;
pub mod router;
pub mod watch;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

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

/// Serves the API on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, tls: Arc<rustls::ServerConfig>, ctx: Arc<ApiContext>) {
    let acceptor = TlsAcceptor::from(tls);
    loop {
        let (tcp, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = tcp.set_nodelay(true);
        let acceptor = acceptor.clone();
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let tls = match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
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
            let service = service_fn(move |mut req: http::Request<_>| {
                req.extensions_mut().insert(connection.clone());
                let ctx = ctx.clone();
                let cert_user = cert_user.clone();
                async move {
                    Ok::<_, std::convert::Infallible>(handlers::handle(ctx, cert_user, req).await)
                }
            });
            let builder = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new());
            if let Err(e) = builder
                .serve_connection_with_upgrades(TokioIo::new(tls), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}
