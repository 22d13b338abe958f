//! The built-in ingress controller of every agent (k3s ships Traefik as a pod; orc
//! serves in process): HTTP and HTTPS listeners on every address of the node that route
//! the Ingresses of the `orc.io/ingress` classes (see `api::ingress::is_ours`) straight
//! to the pods of their backend Services. `routes` decides, `source` watches, `tls`
//! picks certificates by SNI, `proxy` forwards. A port that cannot be bound is logged,
//! reported as a Warning event on the Node and retried; the rest of the agent runs on.

pub mod proxy;
pub mod routes;
pub mod source;
pub mod tls;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::agent::client::ApiClient;

pub const DEFAULT_HTTP_PORT: u16 = 80;
pub const DEFAULT_HTTPS_PORT: u16 = 443;
/// How long to wait before binding a busy port again.
pub const BIND_RETRY: Duration = Duration::from_secs(15);
/// The event reason when a port cannot be bound.
pub const BIND_FAILED_REASON: &str = "IngressPortUnavailable";

/// Where the ingress listens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IngressConfig {
    pub http_port: u16,
    pub https_port: u16,
}

#[derive(Debug, thiserror::Error)]
pub enum IngressError {
    #[error("prepare the fallback certificate")]
    Fallback(#[source] tls::TlsError),
}

/// Runs the ingress until the agent stops. Returns only when it cannot start at all.
pub async fn run(
    client: Arc<ApiClient>,
    config: IngressConfig,
    node: String,
) -> Result<(), IngressError> {
    let fallback = tls::fallback_key().map_err(IngressError::Fallback)?;
    let resolver = Arc::new(tls::SniResolver::new(fallback));
    let tls_config = tls::server_config(resolver.clone());
    let state = Arc::new(source::State::new(resolver));
    tokio::spawn(source::run(client.clone(), state.clone()));
    let http = proxy::Proxy::new(state.clone(), "http", config.http_port);
    let https = proxy::Proxy::new(state, "https", config.https_port);
    tracing::info!(
        http_port = config.http_port,
        https_port = config.https_port,
        "built-in ingress starting"
    );
    tokio::join!(
        listen(Arc::new(http), None, client.clone(), node.clone()),
        listen(
            Arc::new(https),
            Some(tokio_rustls::TlsAcceptor::from(tls_config)),
            client,
            node
        ),
    );
    Ok(())
}

/// Binds the proxy's port (retrying while it is busy) and serves every connection.
async fn listen(
    proxy: Arc<proxy::Proxy>,
    tls: Option<tokio_rustls::TlsAcceptor>,
    client: Arc<ApiClient>,
    node: String,
) {
    let addr = SocketAddr::from((Ipv4Addr::UNSPECIFIED, proxy.port));
    let mut reported = false;
    let listener = loop {
        match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => break l,
            Err(e) => {
                tracing::error!(port = proxy.port, scheme = proxy.scheme, error = %e,
                    retry_in_s = BIND_RETRY.as_secs(),
                    "the ingress cannot listen (is another ingress controller or web server using the port? see --ingress-http-port, --ingress-https-port, --disable-ingress)");
                if !reported {
                    let message = format!(
                        "built-in ingress cannot listen on port {} ({}): {e}",
                        proxy.port, proxy.scheme
                    );
                    reported = report_bind_failure(&client, &node, &message).await;
                }
                tokio::time::sleep(BIND_RETRY).await;
            }
        }
    };
    tracing::info!(
        port = proxy.port,
        scheme = proxy.scheme,
        "ingress listening"
    );
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(port = proxy.port, error = %e, "ingress accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let proxy = proxy.clone();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => proxy::serve_connection(proxy, stream, peer).await,
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls_stream) => proxy::serve_connection(proxy, tls_stream, peer).await,
                    Err(e) => tracing::debug!(%peer, error = %e, "ingress TLS handshake failed"),
                },
            }
        });
    }
}

/// A Warning event on the Node; returns whether it was recorded.
async fn report_bind_failure(client: &ApiClient, node: &str, message: &str) -> bool {
    let now = crate::api::object::timestamp(chrono::Utc::now());
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    let event = json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{node}.{}", &suffix[..16]), "namespace": "default"},
        "involvedObject": {"kind": "Node", "apiVersion": "v1", "name": node, "uid": node},
        "reason": BIND_FAILED_REASON,
        "message": message,
        "type": "Warning",
        "source": {"component": "orc-ingress", "host": node},
        "reportingComponent": "orc-ingress",
        "reportingInstance": node,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    });
    match client
        .post("/api/v1/namespaces/default/events", &event)
        .await
    {
        Ok(resp) if resp.status.is_success() => true,
        Ok(resp) => {
            tracing::debug!(status = %resp.status, message = %resp.message(), "ingress event not recorded");
            false
        }
        Err(e) => {
            tracing::debug!(error = %e, "ingress event not recorded");
            false
        }
    }
}
