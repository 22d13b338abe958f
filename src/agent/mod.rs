//! The worker side of orc (`orc agent`, also embedded in `orc server`): join the cluster,
//! register this machine as a Node and keep it alive, run the pods bound to it (the
//! kubelet, over containerd and the pod network), the service proxy and the cluster DNS.

pub mod allocatable;
pub mod client;
pub mod dns;
pub mod eviction;
pub mod ingress;
pub mod join;
pub mod kubelet;
pub mod local_path;
pub mod net;
pub mod netpol;
pub mod node;
pub mod pod_routes;
pub mod proxy;
pub mod runtime;
pub mod stats;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use ipnet::Ipv4Net;

use client::{ApiClient, ServerAddr};
use join::{JoinConfig, JoinError};

/// The checked configuration an agent runs with.
#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub server: ServerAddr,
    pub token: crate::tls::JoinToken,
    pub insecure_skip_ca_hash: bool,
    /// The orc data dir; the agent keeps its state in `agent/` below it.
    pub data_dir: PathBuf,
    pub node_name: String,
    pub node_ip: Option<IpAddr>,
    pub node_labels: BTreeMap<String, String>,
    pub containerd_socket: PathBuf,
    /// containerd namespace of orc's images and containers.
    pub containerd_namespace: String,
    /// The whole cluster's pod network (traffic leaving it is masqueraded).
    pub cluster_cidr: Ipv4Net,
    /// Cluster DNS server written into pods' resolv.conf.
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    /// Pod bridge and nftables table names (tests take their own).
    pub bridge: String,
    pub nft_table: String,
    /// nftables table of the service proxy; `None` runs no proxy (--disable-proxy).
    pub proxy_table: Option<String>,
    /// How long a renewal of the node's Lease holds (renewed every quarter of it).
    pub node_lease_duration: Duration,
    /// Whether this node runs the cluster DNS server at `cluster_dns` (only with a proxy).
    pub serve_dns: bool,
    /// The built-in ingress proxy's ports; `None` runs none (--disable-ingress).
    pub ingress: Option<ingress::IngressConfig>,
    /// nftables table of NetworkPolicy enforcement.
    pub netpol_table: String,
    /// Whether this node enforces NetworkPolicies (--disable-network-policy: no, and
    /// the table is removed).
    pub enforce_network_policy: bool,
    /// How containers' log files are rotated; `None`: never.
    pub log_rotation: Option<runtime::logger::Rotation>,
    /// How many containers share a containerd shim.
    pub shim_sharing: runtime::ShimSharing,
    /// The runtime handlers (RuntimeClass handlers) this node has, and its default.
    pub runtime_handlers: runtime::handlers::Handlers,
    /// Where pods' `Localhost` seccomp profiles are found.
    pub seccomp_root: PathBuf,
    /// When unused images are removed.
    pub image_gc: kubelet::image_gc::ImageGcPolicy,
    /// containerd's root: its filesystem is the image filesystem.
    pub containerd_root: PathBuf,
    /// Reservations and --max-pods (the node's allocatable).
    pub allocation: allocatable::NodeAllocation,
    /// Node-pressure eviction: thresholds, periods, where the image filesystem is.
    pub eviction: eviction::EvictionConfig,
}

impl AgentConfig {
    pub fn agent_dir(&self) -> PathBuf {
        self.data_dir.join("agent")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error(transparent)]
    Join(#[from] JoinError),
    #[error("use the node credential")]
    Credential(#[source] crate::tls::Error),
}

/// Joins (or reuses the stored credential), registers the Node, then heartbeats forever.
/// Returns only when joining fails in a way that needs the user.
pub async fn run(config: AgentConfig) -> Result<(), AgentError> {
    let join = JoinConfig {
        server: config.server.clone(),
        token: config.token.clone(),
        insecure_skip_ca_hash: config.insecure_skip_ca_hash,
        node_name: config.node_name.clone(),
        agent_dir: config.agent_dir(),
    };
    join::check_token(&join.token, join.insecure_skip_ca_hash)?;
    protect_from_oom_killer();
    let metrics = crate::metrics::NodeMetrics::new();
    let creds = join::obtain_credentials(&join).await?;
    let client_cert = crate::tls::SharedCert::new(&creds.certificate, &creds.key)
        .map_err(AgentError::Credential)?;
    let kubelet_cert = crate::tls::SharedCert::new(&creds.kubelet_certificate, &creds.kubelet_key)
        .map_err(AgentError::Credential)?;
    let tls = crate::tls::client_config_rotating(&creds.ca_certificate, &client_cert)
        .map_err(AgentError::Credential)?;
    // Every client follows the same server list and fails over together; the list an
    // earlier run kept lets it start while the configured server is down.
    let last_known = client::last_known::LastKnownDir::new(&config.agent_dir());
    let servers_file = last_known.file(client::servers::LAST_KNOWN);
    let servers = client::Servers::with_known(
        config.server.clone(),
        client::servers::load_known(&servers_file),
    );
    let new_client =
        |tls: Arc<rustls::ClientConfig>| ApiClient::with_servers(servers.clone(), tls, None);
    let client = new_client(tls.clone());
    let renewal_client = new_client(tls.clone());
    tokio::spawn(client::servers::follow_endpoints(
        Arc::new(new_client(tls.clone())),
        servers.clone(),
        config.server.clone(),
        servers_file,
    ));
    tokio::spawn(join::keep_renewed(
        join.clone(),
        renewal_client,
        creds.clone(),
        client_cert,
        kubelet_cert.clone(),
    ));
    tracing::info!(
        node = %config.node_name,
        server = %config.server.url(),
        containerd = %config.containerd_socket.display(),
        "orc agent is running"
    );
    if let Some(table) = config.proxy_table.clone() {
        let services_client = Arc::new(new_client(tls.clone()));
        let mut proxier = proxy::Proxier::new(table, proxy::NftCli::default())
            .with_node_name(config.node_name.clone())
            .with_metrics(metrics.clone());
        let dns_config = config.serve_dns.then(|| dns::DnsConfig {
            metrics: Some(metrics.clone()),
            ..dns::DnsConfig::new(config.cluster_dns, &config.cluster_domain)
        });
        if dns_config.is_some() {
            // The cluster DNS address is answered by this node's own DNS server.
            proxier = proxier.with_local_ip(config.cluster_dns);
        }
        let last_known = last_known.clone();
        tokio::spawn(async move {
            // One watch of Services and Endpoints for both.
            let consumer = if dns_config.is_some() {
                "service proxy and cluster DNS"
            } else {
                "service proxy"
            };
            let watch =
                proxy::source::watch_services(services_client, consumer, Some(&last_known)).await;
            match dns_config {
                Some(dns_config) => {
                    let (for_proxy, for_dns) = watch.split();
                    tokio::spawn(dns::run(for_dns, dns_config));
                    proxy::source::run_proxy(for_proxy, proxier).await
                }
                None => proxy::source::run_proxy(watch, proxier).await,
            }
        });
    }
    if let Some(ingress_config) = config.ingress.clone() {
        let ingress_client = Arc::new(new_client(tls.clone()));
        let node = config.node_name.clone();
        tokio::spawn(async move {
            if let Err(e) = ingress::run(ingress_client, ingress_config, node).await {
                tracing::error!(error = %error_chain(&e), "the built-in ingress did not start");
            }
        });
    }
    start_network_policy(&config, Arc::new(new_client(tls.clone())));
    // Local-path volumes on this node: directories made and removed.
    let volumes_client = Arc::new(new_client(tls.clone()));
    tokio::spawn(local_path::run(
        volumes_client.clone(),
        volumes_client,
        config.node_name.clone(),
    ));
    let kubelet_client = Arc::new(new_client(tls));
    let (runtime_health, runtime_seen) =
        tokio::sync::watch::channel(node::RuntimeHealth::Unknown { error: None });
    let (pressure, pressure_seen) = tokio::sync::watch::channel(eviction::Pressure::default());
    tokio::spawn(run_pods(
        config.clone(),
        kubelet_client,
        creds.ca_certificate.clone(),
        kubelet_cert,
        runtime_health,
        pressure,
        metrics,
    ));
    node::Heartbeat::new(
        client,
        &config.node_name,
        config.node_ip,
        config.node_labels.clone(),
        runtime_seen,
    )
    .with_lease_duration(config.node_lease_duration)
    .with_allocation(config.allocation.clone())
    .with_pressure(pressure_seen)
    .with_runtime_handlers(
        config
            .runtime_handlers
            .names()
            .into_iter()
            .map(String::from)
            .collect(),
    )
    .run()
    .await;
    Ok(())
}

/// Enforces NetworkPolicies for this node's pods, or (--disable-network-policy) removes
/// the table an earlier run left.
fn start_network_policy(config: &AgentConfig, client: Arc<ApiClient>) {
    let table = config.netpol_table.clone();
    let mut enforcer = netpol::Enforcer::new(
        table.clone(),
        netpol::NftCli::default(),
        config.node_name.clone(),
    );
    if !config.enforce_network_policy {
        tokio::task::spawn_blocking(move || match enforcer.uninstall() {
            Ok(()) => tracing::info!(%table, "network policies are not enforced on this node"),
            Err(e) => {
                tracing::warn!(%table, error = %error_chain(&e), "removing the network policy table failed")
            }
        });
        return;
    }
    // The cluster DNS answers on this node itself: policies see it as a kube-system pod.
    let dns = (config.serve_dns && config.proxy_table.is_some()).then_some(config.cluster_dns);
    tokio::spawn(netpol::source::run_enforcer(client, enforcer, dns));
}

/// How soon, then at most how often, the podCIDR of a freshly registered node is looked
/// for (the server assigns it within milliseconds of the registration: a fixed second
/// here kept a new node from Ready for that second).
const POD_CIDR_FIRST_POLL: Duration = Duration::from_millis(20);
const POD_CIDR_POLL: Duration = Duration::from_secs(1);

/// Waits for the node's podCIDR and for containerd, sets up the pod network and runs the
/// kubelet. Problems are logged and retried: the node keeps its heartbeat meanwhile, and
/// `health` tells it whether containerd answers.
async fn run_pods(
    config: AgentConfig,
    client: Arc<ApiClient>,
    ca_pem: String,
    kubelet_cert: crate::tls::SharedCert,
    health: tokio::sync::watch::Sender<node::RuntimeHealth>,
    pressure: tokio::sync::watch::Sender<eviction::Pressure>,
    metrics: Arc<crate::metrics::NodeMetrics>,
) {
    let agent_dir = config.agent_dir();
    let (pod_cidr, runtime) = tokio::join!(
        wait_for_pod_cidr(&client, &config.node_name, &agent_dir),
        connect_containerd(&config, &health)
    );
    tokio::spawn(node::monitor_runtime(runtime.clone(), health));
    import_images(&config, runtime.as_ref()).await;
    let mut net_config = net::NetworkConfig::new(&config.data_dir, pod_cidr, config.cluster_cidr);
    net_config.bridge = config.bridge.clone();
    net_config.nft_table = config.nft_table.clone();
    let network = match net::LinuxNetwork::new(net_config) {
        Ok(n) => Arc::new(n),
        Err(e) => {
            tracing::error!(error = %error_chain(&e), "pod network unusable; pods will not run");
            return;
        }
    };
    let mut attempt = 0;
    while let Err(e) = net::NetworkBackend::ensure_node(network.as_ref()).await {
        let delay = join::backoff(attempt);
        tracing::warn!(error = %error_chain(&e), retry_in_s = delay.as_secs(), "setting up the pod network failed; retrying");
        tokio::time::sleep(delay).await;
        attempt += 1;
    }
    // Only now, with the node's own pod network in place: routes to the other nodes'
    // pods belong to a node that runs pods.
    let scope = pod_routes::RouteScope::new(config.cluster_cidr, pod_cidr);
    let routes = pod_routes::PodRoutes::new(network.clone(), &config.node_name, scope);
    tokio::spawn(pod_routes::run(client.clone(), routes));
    let host_ip = config
        .node_ip
        .or_else(crate::agent::net::primary_ip)
        .unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST));
    let shared = Arc::new(kubelet::Shared {
        config: kubelet::KubeletConfig {
            node_name: config.node_name.clone(),
            host_ip,
            agent_dir: config.agent_dir(),
            dns: kubelet::DnsConfig {
                servers: vec![config.cluster_dns],
                domain: config.cluster_domain.clone(),
                host_resolv_conf: dns::node_resolv_conf(),
            },
            sync_interval: kubelet::SYNC_INTERVAL,
            cgroup_root: PathBuf::from(runtime::cgroup::CGROUP_ROOT),
            shared_ipc_uts: true,
            secrets_on_tmpfs: true,
            memory_capacity: allocatable::NodeAllocation::memory_bytes(
                node::meminfo_total_ki(
                    &std::fs::read_to_string("/proc/meminfo").unwrap_or_default(),
                )
                .unwrap_or(0),
            ),
            max_pods: config.allocation.max_pods as usize,
            oom_score_floor: kubelet::qos::oom_score_floor(std::path::Path::new("/proc")),
            runtime_handlers: config
                .runtime_handlers
                .names()
                .into_iter()
                .map(String::from)
                .collect(),
            seccomp_root: config.seccomp_root.clone(),
        },
        runtime,
        network,
        api: Arc::new(
            kubelet::api::HttpPodApi::new(client.clone())
                .with_last_known(client::last_known::LastKnownDir::new(&config.agent_dir())),
        ),
        tokens: kubelet::tokens::TokenManager::new(),
        evictions: Default::default(),
        metrics,
    });
    let image_gc = kubelet::image_gc::ImageGc::new(
        shared.runtime.clone(),
        Arc::new(kubelet::image_gc::StatvfsImageFs {
            path: config.containerd_root.clone(),
        }),
        shared.api.clone(),
        config.image_gc,
        &config.node_name,
        &config.agent_dir(),
    );
    tokio::spawn(image_gc.run());
    let eviction_manager = eviction::Manager {
        probe: Arc::new(eviction::signals::HostProbe {
            cgroup_root: shared.config.cgroup_root.clone(),
            proc_root: PathBuf::from("/proc"),
            node_fs: config.data_dir.clone(),
            image_fs: config.eviction.containerd_root.clone(),
            pods_dir: shared.config.pods_dir(),
        }),
        pods: Arc::new(eviction::ApiPods {
            client: client.clone(),
            node: config.node_name.clone(),
        }),
        evictions: shared.evictions.clone(),
        reclaimers: vec![Arc::new(eviction::DeadContainers {
            runtime: shared.runtime.clone(),
        })],
        pressure,
        config: config.eviction.clone(),
    };
    tokio::spawn(eviction_manager.run());
    let endpoint = kubelet_endpoint(&ca_pem, &kubelet_cert).await;
    kubelet::run(shared, client, endpoint).await;
}

/// The kubelet's HTTPS listener (for logs through the API server); `None` when it
/// cannot be set up, which only costs `kubectl logs`.
async fn kubelet_endpoint(
    ca_pem: &str,
    serving: &crate::tls::SharedCert,
) -> Option<(tokio::net::TcpListener, Arc<rustls::ServerConfig>)> {
    let tls = match crate::tls::kubelet_server_config(ca_pem, serving) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "kubelet endpoint disabled: kubectl logs will not work");
            return None;
        }
    };
    let port = kubelet::server::KUBELET_PORT;
    match tokio::net::TcpListener::bind(("0.0.0.0", port)).await {
        Ok(l) => Some((l, tls)),
        Err(e) => {
            tracing::warn!(port, error = %e, "kubelet endpoint disabled (port in use?): kubectl logs will not work");
            None
        }
    }
}

/// The node's pod CIDR from the server, kept on disk; the kept one while the server
/// cannot be reached (it never changes once set).
async fn wait_for_pod_cidr(client: &ApiClient, node: &str, agent_dir: &std::path::Path) -> Ipv4Net {
    let last_known = client::last_known::LastKnownDir::new(agent_dir);
    let mut poll = POD_CIDR_FIRST_POLL;
    loop {
        match client.get(&format!("/api/v1/nodes/{node}")).await {
            Ok(resp) => {
                let cidr = resp.json().and_then(|n| {
                    n["spec"]["podCIDR"]
                        .as_str()
                        .and_then(|c| c.parse::<Ipv4Net>().ok())
                });
                if let Some(cidr) = cidr {
                    tracing::info!(%node, pod_cidr = %cidr, "node has its pod CIDR");
                    if last_known.pod_cidr() != Some(cidr) {
                        if let Err(e) = last_known.save_pod_cidr(cidr) {
                            tracing::warn!(error = %error_chain(&e), "keeping the pod CIDR failed");
                        }
                    }
                    return cidr;
                }
            }
            Err(_) => {
                if let Some(cidr) = last_known.pod_cidr() {
                    tracing::info!(%node, pod_cidr = %cidr, "the server cannot be reached: using the last known pod CIDR");
                    return cidr;
                }
            }
        }
        tokio::time::sleep(poll).await;
        poll = (poll * 2).min(POD_CIDR_POLL);
    }
}

async fn connect_containerd(
    config: &AgentConfig,
    health: &tokio::sync::watch::Sender<node::RuntimeHealth>,
) -> Arc<dyn runtime::ContainerRuntime> {
    let mut rc = runtime::ContainerdConfig::new(&config.containerd_socket);
    rc.namespace = config.containerd_namespace.clone();
    rc.log_rotation = config.log_rotation;
    rc.shim_sharing = config.shim_sharing;
    rc.handlers = config.runtime_handlers.clone();
    let mut attempt = 0;
    loop {
        match runtime::ContainerdRuntime::connect(rc.clone()).await {
            Ok(r) => return Arc::new(r),
            Err(e) => {
                let error = Some(error_chain(&e));
                node::publish(health, node::RuntimeHealth::Unknown { error });
                let delay = join::backoff(attempt);
                if attempt == 0 {
                    tracing::warn!(error = %e, "pods cannot run until containerd is reachable; retrying");
                } else {
                    tracing::debug!(error = %e, retry_in_s = delay.as_secs(), "containerd still unreachable");
                }
                tokio::time::sleep(delay).await;
                attempt += 1;
            }
        }
    }
}

/// Imports the image tarballs in `<data-dir>/agent/images/` (air-gapped installs).
async fn import_images(config: &AgentConfig, runtime: &dyn runtime::ContainerRuntime) {
    let dir = config.agent_dir().join("images");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    let mut tars: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "tar"))
        .collect();
    tars.sort();
    for tar in tars {
        match runtime.import_archive(&tar).await {
            Ok(names) => {
                tracing::info!(file = %tar.display(), images = ?names, "image archive imported")
            }
            Err(e) => {
                tracing::warn!(file = %tar.display(), error = %error_chain(&e), "image archive import failed")
            }
        }
    }
}
/// Makes this process (the agent, or the server with its embedded agent) one of the
/// OOM killer's last choices, as upstream's kubelet does for itself. Needs root with
/// CAP_SYS_RESOURCE; without, a warning (and pods' scores are not lowered either).
fn protect_from_oom_killer() {
    let score = kubelet::qos::KUBELET_OOM_SCORE_ADJ;
    match kubelet::qos::set_own_oom_score_adj(std::path::Path::new("/proc"), score) {
        Ok(()) => tracing::debug!(oom_score_adj = score, "protected from the OOM killer"),
        Err(e) => tracing::warn!(error = %error_chain(&e), "the OOM killer may pick orc first"),
    }
}

/// An error with its sources: "what failed: why".
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        source = s.source();
    }
    out
}
