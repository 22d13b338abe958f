//! Cluster DNS: a DNS server on every node (UDP and TCP port 53) at the cluster DNS
//! address (`--cluster-dns`). It answers `<svc>.<ns>.svc.<domain>`, headless and pod
//! names from the Services and Endpoints it watches ([`records`]) and forwards every
//! other name to the node's resolvers ([`server`]).
//!
//! The address lives on a dummy link in the node's namespace (`orc-dns`; on `lo` where
//! the kernel has no dummy links): the host reaches it locally, pods through their
//! default route to the bridge gateway. The
//! server reserves it as the ClusterIP of `kube-system/kube-dns`; the service proxy
//! leaves that one ClusterIP alone ([`crate::agent::proxy::Proxier::with_local_ip`]).

pub mod records;
pub mod server;

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use hickory_server::proto::rr::Name;
use tokio::net::{TcpListener, UdpSocket};
use tracing::Instrument;

use crate::agent::proxy::source::ServiceWatch;
use records::Records;
use server::ClusterDns;

/// The dummy link holding the cluster DNS address.
pub const DEFAULT_INTERFACE: &str = "orc-dns";
pub const DNS_PORT: u16 = 53;
/// Where systemd-resolved keeps the real upstream servers when /etc/resolv.conf only
/// names its local stub.
const SYSTEMD_RESOLV_CONF: &str = "/run/systemd/resolve/resolv.conf";
const HOST_RESOLV_CONF: &str = "/etc/resolv.conf";

#[derive(Debug, thiserror::Error)]
pub enum DnsError {
    #[error("cluster domain {domain:?} is not a valid DNS name")]
    InvalidDomain {
        domain: String,
        source: hickory_server::proto::ProtoError,
    },
    #[error("put the cluster DNS address on link {link}")]
    Interface {
        link: String,
        source: crate::agent::net::Error,
    },
    #[error("listen on {protocol} {addr}: is another DNS server bound to it?")]
    Bind {
        protocol: &'static str,
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("read the node's resolv.conf {path}")]
    ReadResolvConf {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("parse resolv.conf")]
    ParseResolvConf {
        source: hickory_server::net::NetError,
    },
    #[error("set up forwarding to the upstream resolvers: {reason}")]
    Forwarder { reason: String },
}

pub type Result<T, E = DnsError> = std::result::Result<T, E>;

/// Where and what the node's DNS server serves.
#[derive(Debug, Clone)]
pub struct DnsConfig {
    /// The cluster DNS address (`--cluster-dns`).
    pub address: Ipv4Addr,
    pub port: u16,
    /// The cluster domain (`--cluster-domain`).
    pub domain: String,
    /// Dummy link to hold `address`; `None`: the address is already local (tests).
    pub interface: Option<String>,
    /// The node's resolv.conf, naming the upstream resolvers.
    pub resolv_conf: PathBuf,
    /// Where queries are counted (the kubelet's `/metrics`).
    pub metrics: Option<Arc<crate::metrics::NodeMetrics>>,
}

impl DnsConfig {
    /// The node's DNS server at `address` for `domain`, forwarding to the resolvers of
    /// [`node_resolv_conf`].
    pub fn new(address: Ipv4Addr, domain: &str) -> Self {
        DnsConfig {
            address,
            port: DNS_PORT,
            domain: domain.to_string(),
            interface: Some(DEFAULT_INTERFACE.to_string()),
            resolv_conf: node_resolv_conf(),
            metrics: None,
        }
    }
}

/// The resolv.conf naming the node's real resolvers: /etc/resolv.conf, or
/// systemd-resolved's upstream list when /etc/resolv.conf names only its loopback stub
/// (as kubelet's `--resolv-conf` on such systems).
pub fn node_resolv_conf() -> PathBuf {
    let host = std::fs::read_to_string(HOST_RESOLV_CONF).unwrap_or_default();
    let systemd = PathBuf::from(SYSTEMD_RESOLV_CONF);
    if only_loopback_servers(&host) && systemd.exists() {
        systemd
    } else {
        PathBuf::from(HOST_RESOLV_CONF)
    }
}

fn only_loopback_servers(resolv_conf: &str) -> bool {
    let servers: Vec<IpAddr> = resolv_conf
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    !servers.is_empty() && servers.iter().all(IpAddr::is_loopback)
}

/// Wait before retrying a failed start step.
const RETRY_DELAY: Duration = Duration::from_secs(5);

/// Runs the node's DNS server from `watch` (Services and Endpoints) until the watch
/// ends: keeps the records current from the start, puts the address on its link, then
/// serves. Start problems are logged and retried; name resolution on the node itself
/// keeps working without this server.
pub async fn run(watch: ServiceWatch, config: DnsConfig) {
    let span = tracing::info_span!("cluster_dns", address = %config.address);
    run_until_watch_ends(watch, config).instrument(span).await
}

async fn run_until_watch_ends(watch: ServiceWatch, config: DnsConfig) {
    let mut records = match Name::from_ascii(&config.domain) {
        Ok(domain) => Records::new(domain),
        Err(source) => {
            let e = DnsError::InvalidDomain {
                domain: config.domain.clone(),
                source,
            };
            tracing::error!(error = %e, "cluster DNS disabled");
            return;
        }
    };
    let ServiceWatch {
        initial,
        mut changes,
    } = watch;
    for change in initial {
        records.apply_change(change);
    }
    let records = Arc::new(RwLock::new(records));
    // Follow changes from now on, also while the server below is not serving yet: the
    // watch must never wait for it.
    let updates = {
        let records = records.clone();
        tokio::spawn(async move {
            while let Some(change) = changes.recv().await {
                records
                    .write()
                    .unwrap_or_else(|e| e.into_inner())
                    .apply_change(change);
            }
        })
    };
    if let Some(link) = &config.interface {
        ensure_address(link, config.address).await;
    }
    let forward = forwarder(&config);
    let addr = SocketAddr::new(IpAddr::V4(config.address), config.port);
    let (udp, tcp) = loop {
        match bind(addr).await {
            Ok(sockets) => break sockets,
            Err(e) => {
                tracing::warn!(error = %crate::agent::error_chain(&e), "cluster DNS cannot start yet; retrying");
                tokio::time::sleep(RETRY_DELAY).await;
            }
        }
    };
    let handler = ClusterDns::new(records, forward).with_metrics(config.metrics.clone());
    let _server = server::serve(handler, udp, tcp);
    tracing::info!(%addr, domain = %config.domain, "cluster DNS is serving");
    let _ = updates.await;
}

/// Puts `address` on `link`, retrying with back-off until it works.
async fn ensure_address(link: &str, address: Ipv4Addr) {
    let mut attempt = 0;
    loop {
        match crate::agent::net::ensure_local_address(None, link, address).await {
            Ok(holder) => {
                tracing::debug!(link = %holder, "the cluster DNS address is local");
                return;
            }
            Err(source) => {
                let e = DnsError::Interface {
                    link: link.to_string(),
                    source,
                };
                tracing::warn!(error = %crate::agent::error_chain(&e), "cluster DNS cannot start yet; retrying");
                tokio::time::sleep(crate::agent::join::backoff(attempt)).await;
                attempt += 1;
            }
        }
    }
}

/// Forwarding to the node's resolvers; `None` (logged) when there are none.
fn forwarder(config: &DnsConfig) -> Option<server::Upstream> {
    let upstream = upstreams(config).and_then(|upstreams| {
        tracing::debug!(?upstreams, "forwarding other names");
        server::forwarder(&upstreams)
    });
    match upstream {
        Ok(Some(upstream)) => Some(upstream),
        Ok(None) => {
            tracing::warn!(resolv_conf = %config.resolv_conf.display(), "no upstream resolver: names outside the cluster will not resolve");
            None
        }
        Err(e) => {
            tracing::warn!(error = %crate::agent::error_chain(&e), "names outside the cluster will not resolve");
            None
        }
    }
}

/// The upstream resolvers named by the node's resolv.conf.
fn upstreams(config: &DnsConfig) -> Result<Vec<SocketAddr>> {
    let contents = std::fs::read_to_string(&config.resolv_conf).map_err(|source| {
        DnsError::ReadResolvConf {
            path: config.resolv_conf.clone(),
            source,
        }
    })?;
    server::upstreams_from_resolv_conf(&contents, IpAddr::V4(config.address))
}

async fn bind(addr: SocketAddr) -> Result<(UdpSocket, TcpListener)> {
    let udp = UdpSocket::bind(addr)
        .await
        .map_err(|source| DnsError::Bind {
            protocol: "UDP",
            addr,
            source,
        })?;
    let tcp = TcpListener::bind(addr)
        .await
        .map_err(|source| DnsError::Bind {
            protocol: "TCP",
            addr,
            source,
        })?;
    Ok((udp, tcp))
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::agent::proxy::Change;
    use hickory_server::proto::op::{Message, Query, ResponseCode};
    use hickory_server::proto::rr::RecordType;
    use tokio::sync::mpsc;

    fn web(ip: &str) -> Change {
        let svc = serde_json::json!({"metadata": {"namespace": "default", "name": "web"},
                                     "spec": {"clusterIP": ip}});
        Change::Service(Box::new(serde_json::from_value(svc).unwrap()))
    }

    async fn ask(server: SocketAddr, name: &str) -> Option<Message> {
        let mut query = Message::query();
        query.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let socket = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        socket
            .send_to(&query.to_vec().unwrap(), server)
            .await
            .unwrap();
        let mut buf = vec![0; 2048];
        let recv = tokio::time::timeout(Duration::from_millis(500), socket.recv(&mut buf));
        let n = recv.await.ok()?.ok()?;
        Message::from_vec(&buf[..n]).ok()
    }

    #[tokio::test]
    async fn run_serves_the_initial_records_and_follows_changes() {
        let dir = tempfile::tempdir().unwrap();
        let resolv_conf = dir.path().join("resolv.conf");
        std::fs::write(&resolv_conf, "search example.com\n").unwrap();
        let port = std::net::UdpSocket::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let config = DnsConfig {
            address: Ipv4Addr::LOCALHOST,
            port,
            domain: "cluster.local".into(),
            interface: None,
            resolv_conf,
            metrics: Some(crate::metrics::NodeMetrics::new()),
        };
        let metrics = config.metrics.clone().unwrap();
        let (tx, changes) = mpsc::channel(4);
        let watch = ServiceWatch {
            initial: vec![web("10.43.0.20")],
            changes,
        };
        let task = tokio::spawn(run(watch, config));
        let server = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let name = "web.default.svc.cluster.local.";
        let answer_is = |want: &'static str| async move {
            for _ in 0..100 {
                if let Some(m) = ask(server, name).await {
                    let got: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
                    if m.metadata.response_code == ResponseCode::NoError && got == [want] {
                        return;
                    }
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            panic!("{name} never answered {want}");
        };
        answer_is("10.43.0.20").await;
        tx.send(web("10.43.0.21")).await.unwrap();
        answer_is("10.43.0.21").await;
        // Every answered query was counted, by transport, type and code.
        let text = metrics.encode();
        let counted = |prefix: &str| {
            text.lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        assert!(
            counted(r#"orc_dns_requests_total{proto="udp",type="A"}"#) >= 2.0,
            "{text}"
        );
        assert!(
            counted(r#"orc_dns_responses_total{rcode="NOERROR"}"#) >= 2.0,
            "{text}"
        );
        drop(tx);
        tokio::time::timeout(Duration::from_secs(10), task)
            .await
            .expect("the DNS server stops when its watch ends")
            .unwrap();
    }

    #[test]
    fn a_stub_only_resolv_conf_is_recognised() {
        assert!(only_loopback_servers(
            "nameserver 127.0.0.53\noptions edns0\n"
        ));
        assert!(!only_loopback_servers(
            "nameserver 127.0.0.53\nnameserver 192.0.2.1\n"
        ));
        assert!(!only_loopback_servers("search example.com\n"));
    }
}
