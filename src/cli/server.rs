//! `orc server`: flags → a checked server config, then run the control plane.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use ipnet::Ipv4Net;

use crate::apiserver::allocator::{Allocators, NODE_PORT_RANGE};
use crate::apiserver::auth::{TokenAuthenticator, User};
use crate::apiserver::registry::Registry;
use crate::apiserver::{self, ApiContext};
use crate::controllers;
use crate::store::cache::HistoryLimits;
use crate::store::etcd::{self as etcd_store, EtcdConfig, EtcdStore};
use crate::store::sqlite::{self, Contents, SqliteStore};
use crate::store::Store;
use crate::tls;

/// Default kubeconfig path, as `--write-kubeconfig` documents.
pub const DEFAULT_KUBECONFIG: &str = "/etc/orc/orc.yaml";
/// How often the running server looks for a token replaced by `orc token rotate`.
pub const TOKEN_RELOAD_INTERVAL: Duration = Duration::from_secs(2);
/// Shortest `--node-certificate-validity`: agents must have time to renew.
const MIN_NODE_CERTIFICATE_VALIDITY: Duration = Duration::from_secs(10);
/// How often history older than the previous tick is compacted.
const COMPACT_INTERVAL: Duration = Duration::from_secs(300);

#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct ServerArgs {
    /// Directory for the datastore, certificates and the join token.
    #[arg(long, env = "ORC_DATA_DIR", default_value = "/var/lib/orc")]
    pub data_dir: PathBuf,
    /// Address the HTTPS API listens on.
    #[arg(long, env = "ORC_BIND_ADDRESS", default_value = "0.0.0.0")]
    pub bind_address: IpAddr,
    /// Port of the HTTPS API.
    #[arg(long, env = "ORC_HTTPS_PORT", default_value_t = 6443)]
    pub https_port: u16,
    /// Where to write the admin kubeconfig (mode 0600).
    #[arg(long, env = "ORC_WRITE_KUBECONFIG", default_value = DEFAULT_KUBECONFIG)]
    pub write_kubeconfig: PathBuf,
    /// Do not run the embedded agent (control plane only).
    #[arg(long, env = "ORC_DISABLE_AGENT")]
    pub disable_agent: bool,
    /// Do not run the built-in local-path provisioner nor create its `local-path`
    /// StorageClass (k3s: `--disable local-storage`).
    #[arg(long, env = "ORC_DISABLE_LOCAL_STORAGE")]
    pub disable_local_storage: bool,
    /// Do not run the built-in ServiceLB: LoadBalancer Services are left to another
    /// controller such as MetalLB (k3s: `--disable servicelb`).
    #[arg(long, env = "ORC_DISABLE_SERVICELB")]
    pub disable_servicelb: bool,
    /// Where local-path volumes are created on the nodes (default: <data-dir>/storage).
    #[arg(long, env = "ORC_DEFAULT_LOCAL_STORAGE_PATH")]
    pub default_local_storage_path: Option<PathBuf>,
    /// The embedded agent's node.
    #[command(flatten)]
    pub node: super::agent::NodeArgs,
    /// Pod network; each node gets a /24 of it.
    #[arg(long, env = "ORC_CLUSTER_CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: Ipv4Net,
    /// Service ClusterIP range.
    #[arg(long, env = "ORC_SERVICE_CIDR", default_value = "10.43.0.0/16")]
    pub service_cidr: Ipv4Net,
    /// ClusterIP of the cluster DNS service.
    #[arg(long, env = "ORC_CLUSTER_DNS", default_value = "10.43.0.10")]
    pub cluster_dns: Ipv4Addr,
    /// Cluster domain for DNS names.
    #[arg(long, env = "ORC_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    /// Datastore: sqlite://PATH (default: <data-dir>/server/db/state.db), or an etcd v3
    /// cluster as etcd://HOST:PORT[,HOST:PORT…] (https://… or http://… as k3s).
    #[arg(long, env = "ORC_DATASTORE_ENDPOINT")]
    pub datastore_endpoint: Option<String>,
    /// CA bundle verifying the etcd members' certificates (https endpoints).
    #[arg(long, env = "ORC_DATASTORE_CAFILE")]
    pub datastore_cafile: Option<PathBuf>,
    /// Client certificate presented to etcd (with --datastore-keyfile).
    #[arg(long, env = "ORC_DATASTORE_CERTFILE")]
    pub datastore_certfile: Option<PathBuf>,
    /// Key of --datastore-certfile.
    #[arg(long, env = "ORC_DATASTORE_KEYFILE")]
    pub datastore_keyfile: Option<PathBuf>,
    /// How long a start retries an unreachable etcd before giving up (e.g. 30s).
    #[arg(long, env = "ORC_DATASTORE_RETRY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub datastore_retry_timeout: Duration,
    /// Extra names or IPs for the serving certificate.
    #[arg(long = "tls-san", env = "ORC_TLS_SAN", value_delimiter = ',')]
    pub tls_san: Vec<String>,
    /// Join token secret (generated on first start when absent). A joining server
    /// (--server) needs the cluster's: its bootstrap data is encrypted with it.
    #[arg(long, env = "ORC_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Join the cluster of this running server (https://HOST:6443) as another server:
    /// its CA and keys are read from the shared datastore (--datastore-endpoint
    /// etcd://…) and decrypted with --token (k3s: --server).
    #[arg(long, env = "ORC_URL")]
    pub server: Option<String>,
    /// Run the scheduler and controllers only while holding the Lease
    /// kube-system/orc-controllers (leader election). Default: on when the datastore is
    /// shared (etcd), off on SQLite (a single server: no election, no Lease writes).
    #[arg(long, env = "ORC_LEADER_ELECT", num_args = 0..=1, default_missing_value = "true")]
    pub leader_elect: Option<bool>,
    /// How long a leader's Lease is valid: other servers take over this long after the
    /// leader last renewed (whole seconds).
    #[arg(long, env = "ORC_LEADER_ELECT_LEASE_DURATION", default_value = "15s", value_parser = parse_positive_duration)]
    pub leader_elect_lease_duration: Duration,
    /// How long the leader keeps trying to renew before it stops its controllers
    /// (shorter than the lease duration).
    #[arg(long, env = "ORC_LEADER_ELECT_RENEW_DEADLINE", default_value = "10s", value_parser = parse_positive_duration)]
    pub leader_elect_renew_deadline: Duration,
    /// How often candidates try to acquire, and the leader to renew, the Lease.
    #[arg(long, env = "ORC_LEADER_ELECT_RETRY_PERIOD", default_value = "2s", value_parser = parse_positive_duration)]
    pub leader_elect_retry_period: Duration,
    /// NodePort range, as LOW-HIGH.
    #[arg(
        long,
        env = "ORC_SERVICE_NODE_PORT_RANGE",
        default_value = "30000-32767"
    )]
    pub service_node_port_range: String,
    /// How long a node may go without heartbeat before it is marked NotReady (Ready
    /// Unknown) and tainted unreachable (e.g. 35s). Keep it above the agents'
    /// --node-lease-duration plus the longest link outage to ride out.
    #[arg(long, env = "ORC_NODE_MONITOR_GRACE_PERIOD", default_value = "35s", value_parser = parse_positive_duration)]
    pub node_monitor_grace_period: Duration,
    /// How often the node lifecycle controller checks every node's heartbeats (e.g. 2s).
    #[arg(long, env = "ORC_NODE_MONITOR_PERIOD", default_value = "2s", value_parser = parse_positive_duration)]
    pub node_monitor_period: Duration,
    /// tolerationSeconds given to pods that do not tolerate the
    /// node.kubernetes.io/unreachable NoExecute taint themselves: how long their pods
    /// stay on a lost node before they are evicted (upstream: 300).
    #[arg(long, env = "ORC_DEFAULT_UNREACHABLE_TOLERATION_SECONDS", default_value_t = 15, value_parser = clap::value_parser!(i64).range(0..))]
    pub default_unreachable_toleration_seconds: i64,
    /// tolerationSeconds given to pods that do not tolerate the
    /// node.kubernetes.io/not-ready NoExecute taint themselves: how long their pods stay
    /// on a node whose kubelet reports NotReady (upstream: 300).
    #[arg(long, env = "ORC_DEFAULT_NOT_READY_TOLERATION_SECONDS", default_value_t = 60, value_parser = clap::value_parser!(i64).range(0..))]
    pub default_not_ready_toleration_seconds: i64,
    /// How long pods that tolerate neither taint (admission adds the tolerations unless
    /// a pod brings its own) stay on a lost or not-ready node before they are deleted.
    #[arg(long, env = "ORC_POD_EVICTION_TIMEOUT", default_value = "15s", value_parser = parse_duration)]
    pub pod_eviction_timeout: Duration,
    /// How often the built-in resource metrics (`kubectl top`, autoscalers) scrape each
    /// node's kubelet, as metrics-server's flag; `0s` turns the collection off.
    #[arg(long, env = "ORC_METRIC_RESOLUTION", default_value = "15s", value_parser = parse_duration)]
    pub metric_resolution: Duration,
    /// Which objects record `metadata.managedFields` on every write: `applied` (objects
    /// once written by server-side apply; others stay untracked like objects older than
    /// server-side apply upstream, at no cost) or `all` (as upstream: every object,
    /// which halves pod create throughput and doubles their memory).
    #[arg(long, env = "ORC_MANAGED_FIELDS", default_value = "applied", value_parser = ["applied", "all"])]
    pub managed_fields: String,
    /// Lifetime of node certificates (e.g. 720h); agents renew them after two thirds.
    #[arg(long, env = "ORC_NODE_CERTIFICATE_VALIDITY", default_value = "720h", value_parser = parse_duration)]
    pub node_certificate_validity: Duration,
    /// Audit log file (`-` for stdout): one audit.k8s.io/v1 Event per request, at the
    /// Metadata level (never request or response bodies).
    #[arg(long, env = "ORC_AUDIT_LOG_PATH")]
    pub audit_log_path: Option<PathBuf>,
    /// Rotate the audit log file when it reaches this many megabytes (0: only with
    /// --audit-log-maxbackup, at 100).
    #[arg(long, env = "ORC_AUDIT_LOG_MAXSIZE", default_value_t = 0)]
    pub audit_log_maxsize: u64,
    /// Rotated audit log files to keep (0: keep all).
    #[arg(long, env = "ORC_AUDIT_LOG_MAXBACKUP", default_value_t = 0)]
    pub audit_log_maxbackup: usize,
    /// Store Secrets encrypted with AES-GCM (key in <data-dir>/server/cred/
    /// encryption-config.json); Secrets stored earlier are encrypted at start.
    #[arg(long, env = "ORC_SECRETS_ENCRYPTION")]
    pub secrets_encryption: bool,
    /// Watches one user (or node) may hold open at once; more get 429 (0 = no limit).
    #[arg(long, env = "ORC_MAX_WATCHES_PER_USER", default_value_t = apiserver::watch::DEFAULT_MAX_WATCHES_PER_USER)]
    pub max_watches_per_user: usize,
    /// Most API connections open at once (lowered to fit the open-file limit); further
    /// clients wait until one closes.
    #[arg(long, env = "ORC_MAX_CONNECTIONS", default_value_t = apiserver::connections::DEFAULT_MAX_CONNECTIONS)]
    pub max_connections: usize,
    /// Issuer (`iss`) of service-account tokens, and the API server's token audience.
    #[arg(long, env = "ORC_SERVICE_ACCOUNT_ISSUER", default_value = tls::service_account::claims::DEFAULT_ISSUER)]
    pub service_account_issuer: String,
    /// Most the watch cache keeps of recent changes for watches resuming from an older
    /// resourceVersion, as the JSON size of the objects (e.g. 8Mi; also at most 20,000
    /// events). Past it the oldest changes go, and a watch from before them is answered
    /// 410 Gone so its client relists (upstream bounds its watch cache by a count of
    /// events per resource). Each kept byte costs about four in memory (objects are also
    /// kept parsed).
    #[arg(long, env = "ORC_WATCH_CACHE_HISTORY_BYTES", default_value = "8Mi", value_parser = parse_history_bytes)]
    pub watch_cache_history_bytes: usize,
    /// How long an API client may take to send its request headers (upstream: 32s).
    #[arg(long, env = "ORC_REQUEST_HEADER_TIMEOUT", default_value = "32s", value_parser = parse_duration, hide = true)]
    pub request_header_timeout: Duration,
    /// How long an API connection with no request in flight stays open (upstream: 90s).
    #[arg(long, env = "ORC_IDLE_CONNECTION_TIMEOUT", default_value = "90s", value_parser = parse_duration, hide = true)]
    pub idle_connection_timeout: Duration,
}

/// The checked configuration `orc server` runs with.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub kubeconfig: PathBuf,
    pub db_path: PathBuf,
    /// The etcd datastore (`--datastore-endpoint etcd://…`); `None`: SQLite at `db_path`.
    pub etcd: Option<EtcdConfig>,
    pub service_cidr: Ipv4Net,
    pub cluster_cidr: Ipv4Net,
    pub cluster_dns: Ipv4Addr,
    pub cluster_domain: String,
    pub node_ports: (u16, u16),
    pub tls_sans: Vec<String>,
    pub token: Option<String>,
    pub advertise_ip: IpAddr,
    pub node_monitor_grace_period: Duration,
    pub node_monitor_period: Duration,
    pub pod_eviction_timeout: Duration,
    pub default_tolerations: crate::api::defaults::DefaultTolerations,
    /// How often kubelets are scraped for resource metrics (zero: never).
    pub metric_resolution: Duration,
    pub node_certificate_validity: Duration,
    /// Every object records managedFields (`--managed-fields all`).
    pub managed_fields_for_all: bool,
    pub max_watches_per_user: usize,
    /// The embedded agent's node flags (`None` with --disable-agent).
    pub agent: Option<super::agent::NodeArgs>,
    /// Where the audit log goes (`None`: no audit log).
    pub audit: Option<apiserver::audit::AuditConfig>,
    /// `--secrets-encryption`.
    pub secrets_encryption: bool,
    /// How much history the watch cache keeps (`--watch-cache-history-bytes`).
    pub history_limits: HistoryLimits,
    /// Connection cap and timeouts of the API listener.
    pub connection_limits: apiserver::ConnectionLimits,
    /// `--service-account-issuer`.
    pub service_account_issuer: String,
    /// Where the local-path provisioner puts volumes (`None`: --disable-local-storage).
    pub local_storage_path: Option<PathBuf>,
    /// Whether the `orc` IngressClass is created at start (not with --disable-ingress).
    pub create_ingress_class: bool,
    /// Whether the built-in ServiceLB runs (`false`: --disable-servicelb).
    pub service_lb: bool,
    /// `--server`: the running server whose cluster this one joins.
    pub join_server: Option<String>,
    /// The controllers' leader election (`None`: they run at once, unconditionally).
    pub leader_election: Option<controllers::leader_election::ElectionConfig>,
}

impl ServerArgs {
    /// Checks the flags and derives the paths and addresses the server uses.
    pub fn into_config(self) -> anyhow::Result<ServerConfig> {
        let default_db = self.data_dir.join("server/db/state.db");
        let (db_path, etcd) = match self.datastore_endpoint.as_deref() {
            None | Some("") => (default_db, None),
            Some(ep) if ep.starts_with("sqlite://") => {
                (PathBuf::from(&ep["sqlite://".len()..]), None)
            }
            Some(ep)
                if ep.starts_with("etcd://")
                    || ep.starts_with("https://")
                    || ep.starts_with("http://") =>
            {
                let etcd = EtcdConfig::parse(
                    ep,
                    self.datastore_cafile.clone(),
                    self.datastore_certfile.clone(),
                    self.datastore_keyfile.clone(),
                    self.datastore_retry_timeout,
                )?;
                (default_db, Some(etcd))
            }
            Some(ep) => bail!(
                "--datastore-endpoint {ep}: unsupported scheme; use sqlite://PATH or etcd://HOST:PORT"
            ),
        };
        if etcd.is_none()
            && (self.datastore_cafile.is_some()
                || self.datastore_certfile.is_some()
                || self.datastore_keyfile.is_some())
        {
            bail!("--datastore-cafile, --datastore-certfile and --datastore-keyfile need an etcd --datastore-endpoint");
        }
        if let Some(url) = &self.server {
            if etcd.is_none() {
                bail!(
                    "--server {url}: servers of one cluster share its datastore, and SQLite cannot be shared: pass --datastore-endpoint etcd://HOST:2379 (the first server's)"
                );
            }
            crate::agent::client::ServerAddr::parse(url)
                .map_err(|_| anyhow::anyhow!("--server {url}: expected https://HOST:PORT"))?;
            super::server_join::parse_token(self.token.as_deref())?;
        }
        let leader_election = if self.leader_elect.unwrap_or(etcd.is_some()) {
            let name = self.node.node_name.clone().unwrap_or_else(hostname);
            Some(controllers::leader_election::ElectionConfig::controllers(
                &name,
                self.leader_elect_lease_duration,
                self.leader_elect_renew_deadline,
                self.leader_elect_retry_period,
            )?)
        } else {
            None
        };
        if self
            .token
            .as_deref()
            .is_some_and(|t| tls::check_strength(t).is_err())
        {
            bail!(
                "--token must be at least {} characters; omit it to generate one",
                tls::MIN_SECRET_LEN
            );
        }
        if self.node_certificate_validity < MIN_NODE_CERTIFICATE_VALIDITY {
            bail!(
                "--node-certificate-validity must be at least {}s",
                MIN_NODE_CERTIFICATE_VALIDITY.as_secs()
            );
        }
        let node_ports = parse_port_range(&self.service_node_port_range)?;
        if self.service_account_issuer.trim().is_empty()
            || self.service_account_issuer.contains(char::is_whitespace)
        {
            bail!(
                "--service-account-issuer {:?}: expected a URL such as {}",
                self.service_account_issuer,
                tls::service_account::claims::DEFAULT_ISSUER
            );
        }
        if self.service_cidr.prefix_len() > 28 {
            bail!(
                "--service-cidr {} is too small: use a /28 or larger",
                self.service_cidr
            );
        }
        if self.cluster_cidr.prefix_len() > 24 {
            bail!(
                "--cluster-cidr {} is too small: each node needs a /24",
                self.cluster_cidr
            );
        }
        if self.service_cidr.contains(&self.cluster_cidr.network())
            || self.cluster_cidr.contains(&self.service_cidr.network())
        {
            bail!(
                "--service-cidr {} overlaps --cluster-cidr {}: choose separate ranges",
                self.service_cidr,
                self.cluster_cidr
            );
        }
        if !self.service_cidr.contains(&self.cluster_dns) {
            bail!(
                "--cluster-dns {} is outside --service-cidr {}: choose an address in the service range",
                self.cluster_dns,
                self.service_cidr
            );
        }
        let advertise_ip = if self.bind_address.is_unspecified() {
            crate::agent::net::primary_ip().unwrap_or(IpAddr::V4(Ipv4Addr::LOCALHOST))
        } else {
            self.bind_address
        };
        let mut sans = vec![hostname(), advertise_ip.to_string()];
        if !self.bind_address.is_unspecified() {
            sans.push(self.bind_address.to_string());
        }
        let kubernetes_ip = Ipv4Addr::from(u32::from(self.service_cidr.network()) + 1);
        sans.push(kubernetes_ip.to_string());
        sans.extend(self.tls_san.iter().filter(|s| !s.is_empty()).cloned());
        sans.retain(|s| !s.is_empty());
        Ok(ServerConfig {
            data_dir: self.data_dir.clone(),
            listen: SocketAddr::new(self.bind_address, self.https_port),
            kubeconfig: self.write_kubeconfig,
            db_path,
            etcd,
            service_cidr: self.service_cidr,
            cluster_cidr: self.cluster_cidr,
            cluster_dns: self.cluster_dns,
            cluster_domain: self.cluster_domain.clone(),
            node_ports,
            tls_sans: sans,
            token: self.token,
            advertise_ip,
            node_monitor_grace_period: self.node_monitor_grace_period,
            node_monitor_period: self.node_monitor_period,
            pod_eviction_timeout: self.pod_eviction_timeout,
            default_tolerations: crate::api::defaults::DefaultTolerations {
                not_ready: self.default_not_ready_toleration_seconds,
                unreachable: self.default_unreachable_toleration_seconds,
            },
            metric_resolution: self.metric_resolution,
            node_certificate_validity: self.node_certificate_validity,
            managed_fields_for_all: self.managed_fields == "all",
            max_watches_per_user: self.max_watches_per_user,
            create_ingress_class: !self.node.disable_ingress,
            agent: if self.disable_agent {
                None
            } else {
                // Bad node flags stop the server before it starts anything.
                self.node.resources()?;
                Some(self.node)
            },
            audit: self.audit_log_path.as_deref().map(|path| {
                apiserver::audit::AuditConfig::from_flags(
                    path,
                    self.audit_log_maxsize,
                    self.audit_log_maxbackup,
                )
            }),
            secrets_encryption: self.secrets_encryption,
            history_limits: HistoryLimits {
                max_bytes: self.watch_cache_history_bytes,
                ..HistoryLimits::default()
            },
            local_storage_path: (!self.disable_local_storage).then(|| {
                self.default_local_storage_path
                    .clone()
                    .unwrap_or_else(|| self.data_dir.join("storage"))
            }),
            connection_limits: apiserver::ConnectionLimits {
                max_connections: self.max_connections,
                header_read_timeout: self.request_header_timeout,
                idle_timeout: self.idle_connection_timeout,
            },
            service_account_issuer: self.service_account_issuer,
            service_lb: !self.disable_servicelb,
            join_server: self.server,
            leader_election,
        })
    }
}

/// A duration as Go writes them (`40s`, `5m`, `1m30s`, `500ms`) or plain seconds.
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    if let Ok(secs) = s.parse::<u64>() {
        return Ok(Duration::from_secs(secs));
    }
    crate::api::duration::parse_go_duration(s, "40s, 5m or 1m30s")
}

/// Smallest `--watch-cache-history-bytes`: below it, watches started from a list would
/// often find their revision already gone under a steady stream of writes.
const MIN_HISTORY_BYTES: i64 = 1 << 20;

/// `--watch-cache-history-bytes`: a byte quantity (`16Mi`, `64M`, `20000000`), at least 1Mi.
fn parse_history_bytes(s: &str) -> Result<usize, String> {
    let bytes = crate::api::quantity::parse_quantity(s.trim())
        .map_err(|e| format!("{e}: expected a size such as 16Mi or 64M"))?
        .value();
    if bytes < MIN_HISTORY_BYTES {
        return Err("must be at least 1Mi".to_string());
    }
    usize::try_from(bytes).map_err(|_| "too large for this machine".to_string())
}

/// A duration as [`parse_duration`] reads it, longer than zero (a period of zero would
/// spin).
fn parse_positive_duration(s: &str) -> Result<Duration, String> {
    match parse_duration(s)? {
        d if d.is_zero() => Err(format!("{s}: must be longer than zero")),
        d => Ok(d),
    }
}

fn parse_port_range(s: &str) -> anyhow::Result<(u16, u16)> {
    let parsed = s.split_once('-').and_then(|(lo, hi)| {
        Some((
            lo.trim().parse::<u16>().ok()?,
            hi.trim().parse::<u16>().ok()?,
        ))
    });
    match parsed {
        Some((lo, hi)) if lo > 0 && lo <= hi => Ok((lo, hi)),
        _ => bail!(
            "--service-node-port-range {s}: expected LOW-HIGH, e.g. {}-{}",
            NODE_PORT_RANGE.0,
            NODE_PORT_RANGE.1
        ),
    }
}

/// This machine's hostname (lowercased, as node names are).
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_lowercase())
        .unwrap_or_else(|_| "localhost".into())
}

pub fn run(args: ServerArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orc-server")
        .build()
        .context("start the async runtime")?;
    runtime.block_on(serve(config))
}

async fn serve(config: ServerConfig) -> anyhow::Result<()> {
    let started = Instant::now();
    let server_dir = config.data_dir.join("server");
    // A joining server checks its token against the cluster before it writes anything.
    let joined = match &config.join_server {
        Some(url) => Some(fetch_join_bootstrap(&config, url, &server_dir).await?),
        None => None,
    };
    for dir in [
        Some(config.data_dir.as_path()),
        Some(server_dir.as_path()),
        config.db_path.parent().filter(|_| config.etcd.is_none()),
    ]
    .into_iter()
    .flatten()
    .filter(|d| !d.as_os_str().is_empty())
    {
        create_private_dir(dir, dir.starts_with(&config.data_dir))?;
    }
    if let Some(bundle) = &joined {
        tls::bootstrap::install(&server_dir, bundle)
            .context("install the cluster's bootstrap data")?;
        tracing::info!(files = ?bundle, "installed the cluster's CA and keys from the datastore");
    }
    // An etcd datastore is reached (with bounded retries) and inspected before any
    // credentials are created; it is claimed for this cluster's CA further down.
    let etcd_client = match &config.etcd {
        None => {
            check_datastore_matches_credentials(&config, &server_dir)?;
            None
        }
        Some(etcd) => Some(check_etcd_matches_credentials(etcd, &server_dir).await?),
    };
    // Where the cluster's bootstrap data is kept (several servers share it via etcd).
    let bootstrap_kv = etcd_client.clone();
    if let (Some(kv), None) = (&bootstrap_kv, &joined) {
        adopt_bootstrap(&config, kv, &server_dir).await?;
    }
    let encryption =
        super::secrets_encrypt::server_encryption(&config.data_dir, config.secrets_encryption)
            .context("set up secrets encryption")?;
    let (transformer, _keys_lock) = match encryption {
        Some((transformer, lock)) => (transformer, Some(lock)),
        None => (Arc::new(crate::store::encryption::Identity) as Arc<_>, None),
    };
    let metrics =
        crate::metrics::ServerMetrics::new(config.etcd.is_none().then(|| config.db_path.clone()));
    // The etcd marker names the cluster by its CA: the CA comes first there.
    let mut pki = None;
    let store: Arc<dyn Store> = match (&config.etcd, etcd_client) {
        (Some(etcd), Some(client)) => {
            let loaded = tls::Pki::load_or_create(&server_dir.join("tls"), &config.tls_sans)
                .context("set up the cluster CA and certificates")?;
            let ca_hash = tls::ca_hash(loaded.ca_cert_pem());
            pki = Some(loaded);
            etcd_store::claim(&client, etcd, &ca_hash).await?;
            Arc::new(
                EtcdStore::open_claimed(client, etcd.clone(), transformer, config.history_limits)
                    .await
                    .with_context(|| format!("open the etcd datastore {}", etcd.describe()))?,
            )
        }
        _ => Arc::new(
            SqliteStore::open_configured(&config.db_path, transformer, config.history_limits)
                .with_context(|| format!("open datastore {}", config.db_path.display()))?,
        ),
    };
    let store: Arc<dyn Store> = Arc::new(crate::store::instrumented::Instrumented::new(
        store,
        metrics.datastore.clone(),
    ));
    let pki = match pki {
        Some(pki) => pki,
        None => tls::Pki::load_or_create(&server_dir.join("tls"), &config.tls_sans)
            .context("set up the cluster CA and certificates")?,
    }
    .with_node_cert_validity(config.node_certificate_validity);
    let token = tls::load_or_create_token(
        &server_dir.join("token"),
        pki.ca_cert_pem(),
        config.token.as_deref(),
    )
    .context("set up the join token")?;
    let server_url = format!(
        "https://{}:{}",
        kubeconfig_host(&config),
        config.listen.port()
    );
    let kubeconfig = tls::admin_kubeconfig(
        &server_url,
        pki.ca_cert_pem(),
        pki.admin_cert_pem(),
        pki.admin_key_pem(),
    );
    tls::write_private_file(&config.kubeconfig, kubeconfig.as_bytes()).with_context(|| {
        format!(
            "write kubeconfig {} (choose another path with --write-kubeconfig)",
            config.kubeconfig.display()
        )
    })?;

    let signing_key = Arc::new(
        tls::service_account::SigningKey::load_or_create(&server_dir.join("tls"))
            .context("set up the service-account token signing key")?,
    );
    if let Some(kv) = &bootstrap_kv {
        let bundle = tls::bootstrap::collect(&server_dir)?;
        if super::server_join::publish(kv, &token.secret, &bundle)
            .await
            .context("store the cluster's bootstrap data in the datastore")?
        {
            tracing::info!(files = ?bundle, "stored the cluster's bootstrap data (encrypted with the join token) in the datastore");
        }
    }
    let allocators = Allocators::new(config.service_cidr, config.node_ports);
    let mut registry = Registry::new(store.clone(), allocators);
    registry.default_tolerations = config.default_tolerations;
    registry.managed_fields_for_all = config.managed_fields_for_all;
    registry.cluster_cidr = Some(config.cluster_cidr);
    registry.service_account_tokens = Some(Arc::new(
        apiserver::serviceaccount::ServiceAccountTokens::new(
            signing_key.clone(),
            &config.service_account_issuer,
        ),
    ));
    // Webhooks without a caBundle are trusted through the cluster CA.
    registry.webhooks = Arc::new(apiserver::admission::Webhooks::new(Some(
        pki.ca_cert_pem().to_string(),
    )));
    registry.conversion_clients = Arc::new(apiserver::admission::Clients::new(Some(
        pki.ca_cert_pem().to_string(),
    )));
    let registry = Arc::new(registry);
    registry.webhooks.load(&registry);
    registry.policies.load(&registry);
    // Custom resources are served from the first request on.
    let mut crds = apiserver::crds::CrdServer::new();
    crds.load(&registry);
    controllers::bootstrap::run(
        &registry,
        &controllers::bootstrap::Bootstrap {
            advertise_ip: config.advertise_ip,
            https_port: config.listen.port(),
            cluster_dns: config.cluster_dns,
            endpoints_from_peers: config.etcd.is_some(),
        },
    )
    .await
    .context("create the system namespaces and the kubernetes Service")?;
    apiserver::rbac::bootstrap::reconcile(&registry, apiserver::rbac::bootstrap::POLICY)
        .await
        .context("reconcile the bootstrap RBAC policy")?;
    registry.rbac.load(&registry);

    let pki = Arc::new(pki);
    let tokens = TokenAuthenticator::default();
    tokens.insert(&token.secret, User::bootstrap());
    let ctx = Arc::new(ApiContext {
        registry: registry.clone(),
        ca_pem: pki.ca_cert_pem().to_string(),
        advertise: format!("{}:{}", config.advertise_ip, config.listen.port()),
        tokens,
        openapi: apiserver::openapi::OpenApi::new(),
        pki: pki.clone(),
        audit: match config.audit.clone() {
            Some(audit) => Some(apiserver::audit::AuditLog::start(audit)?),
            None => None,
        },
        watches: apiserver::watch::WatchLimiter::new(config.max_watches_per_user),
        rbac: registry.rbac.clone(),
        metrics: metrics.clone(),
    });
    let listener = apiserver::bind(config.listen).await?;
    let tls_config = pki.server_config().context("build the TLS server config")?;
    let controllers_config = controllers::Config {
        node_monitor_grace_period: config.node_monitor_grace_period,
        node_monitor_period: config.node_monitor_period,
        pod_eviction_timeout: config.pod_eviction_timeout,
        legacy_tokens: Some(controllers::service_account_tokens::LegacyTokenSigner {
            key: signing_key.clone(),
            root_ca: pki.ca_cert_pem().to_string(),
        }),
        root_ca_pem: Some(pki.ca_cert_pem().to_string()),
        local_storage_path: config.local_storage_path.clone(),
        create_ingress_class: config.create_ingress_class,
        service_lb: config.service_lb,
        scheduler_metrics: metrics.scheduler.clone(),
        workqueue_metrics: metrics.workqueue.clone(),
        ..Default::default()
    };
    // What runs once per cluster: on the leader only when servers elect one.
    let leader_work = {
        let registry = registry.clone();
        let store = store.clone();
        let cluster_cidr = config.cluster_cidr;
        move || {
            let mut tasks = controllers::start(registry.clone(), controllers_config.clone());
            tasks.spawn(controllers::node_ipam::run(registry.clone(), cluster_cidr));
            tasks.spawn(compact_periodically(store.clone()));
            tasks
        }
    };
    let (mut controllers, elector) = match config.leader_election.clone() {
        None => (leader_work(), None),
        Some(election) => {
            let elector = controllers::leader_election::LeaderElector::new(
                registry.clone(),
                election,
                Arc::new(controllers::clock::RealClock),
            );
            let mut tasks = tokio::task::JoinSet::new();
            tasks.spawn(elector.clone().run(leader_work));
            (tasks, Some(elector))
        }
    };
    controllers.spawn(crds.run(registry.clone()));
    controllers.spawn(registry.webhooks.clone().run(registry.clone()));
    controllers.spawn(registry.policies.clone().run(registry.clone()));
    controllers.spawn(registry.rbac.clone().run(registry.clone()));
    controllers.spawn(apiserver::node_credentials::revoke_deleted_nodes(
        registry.clone(),
    ));
    if config.etcd.is_some() {
        // Every server (not only the leader): its lease, heartbeat digest and address.
        let address = SocketAddr::new(config.advertise_ip, config.listen.port());
        controllers.spawn(apiserver::peers::run(
            registry.clone(),
            apiserver::peers::PeerConfig::new(address),
        ));
    }
    tokio::spawn(reload_token(
        server_dir.join("token"),
        ctx.clone(),
        bootstrap_kv.map(|kv| (kv, server_dir.clone())),
    ));
    if !config.metric_resolution.is_zero() {
        tokio::spawn(apiserver::resource_metrics::collect(
            ctx.clone(),
            config.metric_resolution,
        ));
    }
    controllers.spawn(controllers::manifests::run(
        registry.clone(),
        server_dir.join("manifests"),
    ));
    let api = tokio::spawn(apiserver::serve(
        listener,
        tls_config,
        ctx,
        config.connection_limits,
    ));

    tracing::info!(
        listen = %config.listen,
        kubeconfig = %config.kubeconfig.display(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "orc server is ready"
    );
    eprintln!(
        "orc server is ready: export KUBECONFIG={}\nJoin another machine with: orc agent --join {server_url} --token $(cat {})",
        config.kubeconfig.display(),
        server_dir.join("token").display()
    );
    if let Some(node) = config.agent.clone() {
        let server = crate::agent::client::ServerAddr {
            host: kubeconfig_host(&config)
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string(),
            port: config.listen.port(),
        };
        let agent_config = node
            .into_config(server, token, config.data_dir.clone())
            .context("configure the embedded agent (or pass --disable-agent)")?;
        let agent_config = crate::agent::AgentConfig {
            cluster_cidr: config.cluster_cidr,
            cluster_dns: config.cluster_dns,
            cluster_domain: config.cluster_domain.clone(),
            ..agent_config
        };
        create_private_dir(&agent_config.agent_dir(), true)?;
        controllers.spawn(async move {
            if let Err(e) = crate::agent::run(agent_config).await {
                tracing::error!(error = %e, "the embedded agent stopped");
            }
        });
    }

    shutdown_signal().await;
    tracing::info!("shutting down");
    api.abort();
    controllers.abort_all();
    while controllers.join_next().await.is_some() {}
    if let Some(elector) = elector {
        // Another server takes over at once instead of after the lease duration.
        elector.release().await;
    }
    Ok(())
}

/// A server on a shared datastore started without `--server` (the first one, or one
/// restarted): when the datastore already holds bootstrap data for its token, its files
/// are installed before the PKI is loaded, so this server serves the cluster's CA instead
/// of making its own; files of another cluster in its data dir are refused. Without a
/// record (a new cluster, or another token) the server sets up its own and publishes it.
async fn adopt_bootstrap(
    config: &ServerConfig,
    kv: &etcd_client::Client,
    server_dir: &Path,
) -> anyhow::Result<()> {
    let secret = match config.token.as_deref() {
        Some(token) => Some(token.parse::<tls::JoinToken>()?.secret),
        None => tls::read_token_file(&server_dir.join("token"))?.map(|t| t.secret),
    };
    let Some(secret) = secret else {
        return Ok(());
    };
    if let Some(bundle) = super::server_join::fetch(kv, &secret).await? {
        tls::bootstrap::install(server_dir, &bundle).context(
            "adopt the cluster's bootstrap data (to join this cluster, start on an empty --data-dir with --server and --token)",
        )?;
    }
    Ok(())
}

/// A joining server's first steps, which write nothing: check `--server`'s CA against
/// the token, then read the cluster's bootstrap data from the datastore and open it.
async fn fetch_join_bootstrap(
    config: &ServerConfig,
    url: &str,
    server_dir: &Path,
) -> anyhow::Result<tls::bootstrap::Bundle> {
    use super::server_join;
    let token = server_join::parse_token(config.token.as_deref())?;
    let served_ca = server_join::fetch_server_ca(url, &token).await?;
    let etcd = config
        .etcd
        .as_ref()
        .context("--server needs an etcd --datastore-endpoint")?;
    let kv = etcd_store::connect(etcd).await?;
    let bundle = server_join::fetch_bootstrap(&kv, &token, url, &served_ca, server_dir).await?;
    Ok(bundle)
}

/// Follows the token file: after `orc token rotate`, the new token authenticates joins
/// and the old one no longer does. Joined nodes use certificates and are not affected.
///
/// On a shared datastore (`bootstrap`: the store and this server's `server/` dir), the
/// cluster's bootstrap data is re-encrypted under the new token and the old record is
/// removed, so servers join with the new token only.
async fn reload_token(
    path: PathBuf,
    ctx: Arc<ApiContext>,
    bootstrap: Option<(etcd_client::Client, PathBuf)>,
) {
    let mut current = tls::read_token_file(&path).ok().flatten();
    let mut warned = false;
    loop {
        tokio::time::sleep(TOKEN_RELOAD_INTERVAL).await;
        match tls::read_token_file(&path) {
            Ok(Some(token)) if Some(&token) != current.as_ref() => {
                ctx.tokens.replace(&token.secret, User::bootstrap());
                tracing::info!(path = %path.display(), "join token rotated: the previous one is refused from now on");
                if let Some((kv, server_dir)) = &bootstrap {
                    let previous = current.as_ref().map(|t| t.secret.as_str());
                    if let Err(e) = republish_bootstrap(kv, server_dir, &token, previous).await {
                        tracing::error!(error = %e, "cannot re-encrypt the cluster's bootstrap data under the new token: joining servers need the previous token until this server restarts");
                    }
                }
                current = Some(token);
                warned = false;
            }
            Ok(_) => warned = false,
            // Once per breakage, not every interval.
            Err(e) if !warned => {
                tracing::warn!(error = %e, "cannot read the join token file; keeping the current token");
                warned = true;
            }
            Err(_) => {}
        }
    }
}

/// Stores the bootstrap data under `token` and withdraws the record of `previous`.
async fn republish_bootstrap(
    kv: &etcd_client::Client,
    server_dir: &Path,
    token: &tls::JoinToken,
    previous: Option<&str>,
) -> super::server_join::Result<()> {
    let bundle = tls::bootstrap::collect(server_dir)?;
    super::server_join::publish(kv, &token.secret, &bundle).await?;
    if let Some(previous) = previous.filter(|p| *p != token.secret) {
        super::server_join::withdraw(kv, previous).await?;
    }
    tracing::info!("the cluster's bootstrap data is now encrypted with the new join token");
    Ok(())
}

/// Creates `dir` and its missing parents 0700 whatever the umask: they hold keys and
/// every Secret. With `tighten` (a directory orc owns), an existing `dir` becomes 0700.
pub(crate) fn create_private_dir(dir: &Path, tighten: bool) -> anyhow::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("create directory {}", dir.display()))?;
    if tighten {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("make {} private (0700)", dir.display()))?;
    }
    Ok(())
}

/// Refuses to start a new cluster over existing cluster credentials: a data dir whose
/// CA or join token exists but whose datastore is missing or empty has lost its state
/// (a new, empty cluster would silently replace it). Another application's database is
/// refused by the datastore itself, untouched.
fn check_datastore_matches_credentials(
    config: &ServerConfig,
    server_dir: &Path,
) -> anyhow::Result<()> {
    let contents = sqlite::inspect(&config.db_path)?;
    let tls_dir = server_dir.join("tls");
    let has_credentials = server_dir.join("token").exists()
        || std::fs::read_dir(&tls_dir).is_ok_and(|mut entries| entries.next().is_some());
    let state = match contents {
        Contents::Orc => return Ok(()),
        _ if !has_credentials => return Ok(()),
        Contents::Missing => "missing",
        Contents::Empty => "empty",
    };
    bail!(
        "data dir {} has cluster credentials but its datastore {} is {state}: restore the database, or remove {} to start a new cluster",
        config.data_dir.display(),
        config.db_path.display(),
        server_dir.display()
    )
}

/// Connects to the etcd datastore (retrying, bounded) and refuses what cannot be this
/// cluster's: another application's keys, or an empty etcd while this data dir holds
/// cluster credentials (its cluster's state would be lost: an empty new cluster would
/// silently replace it). Whether a marked etcd is this cluster's is checked against the
/// CA once it is loaded.
async fn check_etcd_matches_credentials(
    etcd: &EtcdConfig,
    server_dir: &Path,
) -> anyhow::Result<etcd_client::Client> {
    let client = etcd_store::connect(etcd).await?;
    let contents = etcd_store::inspect(&client, etcd).await?;
    let has_credentials = server_dir.join("token").exists()
        || std::fs::read_dir(server_dir.join("tls")).is_ok_and(|mut e| e.next().is_some());
    match contents {
        etcd_store::Contents::Foreign { keys } => Err(crate::store::StoreError::ForeignEtcd {
            endpoints: etcd.describe(),
            keys,
        }
        .into()),
        etcd_store::Contents::Empty if has_credentials => bail!(
            "etcd {} is empty but {} holds this cluster's credentials: its state is not in this etcd; point --datastore-endpoint at the cluster's etcd, or remove {} to start a new cluster",
            etcd.describe(),
            server_dir.display(),
            server_dir.display()
        ),
        _ => Ok(client),
    }
}

fn kubeconfig_host(config: &ServerConfig) -> String {
    if config.listen.ip().is_unspecified() {
        "127.0.0.1".to_string()
    } else {
        match config.listen.ip() {
            IpAddr::V6(ip) => format!("[{ip}]"),
            ip => ip.to_string(),
        }
    }
}

/// Every interval, compacts history up to the revision seen at the previous tick
/// (so watches can resume for at least one interval). Idle servers write nothing.
async fn compact_periodically(store: Arc<dyn Store>) {
    let mut previous = store.revision();
    let mut ticker = tokio::time::interval(COMPACT_INTERVAL);
    ticker.tick().await;
    loop {
        ticker.tick().await;
        let current = store.revision();
        if let Err(e) = store.compact(previous).await {
            tracing::warn!(error = %e, "compaction failed");
        }
        previous = current;
    }
}

pub(crate) async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: ServerArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<ServerConfig> {
        let mut argv = vec!["orc"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv)?.args.into_config()
    }

    #[test]
    fn defaults_derive_paths_from_the_data_dir() {
        let c = config(&["--data-dir", "/tmp/x"]).unwrap();
        assert_eq!(c.db_path, PathBuf::from("/tmp/x/server/db/state.db"));
        assert_eq!(c.listen.port(), 6443);
        assert_eq!(c.node_ports, (30000, 32767));
        assert!(c.tls_sans.contains(&"10.43.0.1".to_string()));
        assert_eq!(c.local_storage_path, Some(PathBuf::from("/tmp/x/storage")));
        let c = config(&["--default-local-storage-path", "/srv/volumes"]).unwrap();
        assert_eq!(c.local_storage_path, Some(PathBuf::from("/srv/volumes")));
        let c = config(&["--disable-local-storage"]).unwrap();
        assert_eq!(c.local_storage_path, None);
        assert!(c.create_ingress_class);
        let c = config(&["--disable-ingress"]).unwrap();
        assert!(!c.create_ingress_class, "no orc IngressClass");
        assert!(c.agent.is_some_and(|a| a.disable_ingress));
        assert!(c.service_lb, "ServiceLB runs by default");
        assert!(!config(&["--disable-servicelb"]).unwrap().service_lb);
    }

    #[test]
    fn watch_cache_history_bytes_takes_a_size_of_at_least_1mi() {
        let c = config(&[]).unwrap();
        assert_eq!(c.history_limits.max_bytes, 8 << 20);
        assert_eq!(
            c.history_limits.max_events,
            crate::store::cache::MAX_HISTORY
        );
        let c = config(&["--watch-cache-history-bytes", "64M"]).unwrap();
        assert_eq!(c.history_limits.max_bytes, 64_000_000);
        let c = config(&["--watch-cache-history-bytes", "1048576"]).unwrap();
        assert_eq!(c.history_limits.max_bytes, 1 << 20);
        for bad in ["0", "512Ki", "lots"] {
            let err = config(&["--watch-cache-history-bytes", bad])
                .err()
                .unwrap_or_else(|| panic!("{bad} accepted"))
                .to_string();
            assert!(err.contains("--watch-cache-history-bytes"), "{bad}: {err}");
        }
    }

    #[test]
    fn node_lifecycle_flags_take_go_durations() {
        let c = config(&[]).unwrap();
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(35));
        assert_eq!(c.node_monitor_period, Duration::from_secs(2));
        assert_eq!(c.pod_eviction_timeout, Duration::from_secs(15));
        assert_eq!(
            c.default_tolerations,
            crate::api::defaults::DefaultTolerations {
                not_ready: 60,
                unreachable: 15
            }
        );
        let c = config(&[
            "--node-monitor-grace-period",
            "1m30s",
            "--pod-eviction-timeout",
            "300",
        ])
        .unwrap();
        assert_eq!(c.node_monitor_grace_period, Duration::from_secs(90));
        assert_eq!(c.pod_eviction_timeout, Duration::from_secs(300));
        assert!(config(&["--pod-eviction-timeout", "5 minutes"]).is_err());
        assert!(
            config(&["--node-monitor-period", "0s"]).is_err(),
            "would spin"
        );
        assert!(config(&["--default-unreachable-toleration-seconds", "-1"]).is_err());
        let c = config(&[
            "--node-monitor-period",
            "500ms",
            "--default-unreachable-toleration-seconds",
            "300",
            "--default-not-ready-toleration-seconds",
            "0",
        ])
        .unwrap();
        assert_eq!(c.node_monitor_period, Duration::from_millis(500));
        assert_eq!(c.default_tolerations.unreachable, 300);
        assert_eq!(c.default_tolerations.not_ready, 0);
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
    }

    #[test]
    fn leader_election_is_off_on_sqlite_unless_asked_for() {
        let c = config(&[]).unwrap();
        assert!(c.leader_election.is_none(), "a single server elects nobody");
        assert!(c.etcd.is_none());
        let c = config(&["--leader-elect", "--node-name", "srv-a"]).unwrap();
        let e = c.leader_election.expect("election");
        assert!(e.identity.starts_with("srv-a_"), "{}", e.identity);
        assert_eq!(e.namespace, "kube-system");
        assert_eq!(
            (e.lease_duration, e.renew_deadline, e.retry_period),
            (
                Duration::from_secs(15),
                Duration::from_secs(10),
                Duration::from_secs(2)
            )
        );
        assert!(config(&["--leader-elect=false"])
            .unwrap()
            .leader_election
            .is_none());
        let e = config(&["--leader-elect", "--leader-elect-retry-period", "10s"]).unwrap_err();
        assert!(e.to_string().contains("--leader-elect-retry-period"), "{e}");
    }

    #[test]
    fn a_joining_server_needs_a_shared_datastore_and_a_token() {
        let e = config(&[
            "--server",
            "https://10.0.0.1:6443",
            "--token",
            "0123456789abcdef",
        ])
        .unwrap_err();
        assert!(e.to_string().contains("SQLite cannot be shared"), "{e}");
    }

    #[test]
    fn bad_flags_give_actionable_errors() {
        let e = config(&["--datastore-endpoint", "mysql://x"]).unwrap_err();
        assert!(e.to_string().contains("unsupported scheme"), "{e}");
        let e = config(&["--service-cidr", "10.42.0.0/16"]).unwrap_err();
        assert!(e.to_string().contains("overlaps"), "{e}");
        let e = config(&["--service-node-port-range", "9-1"]).unwrap_err();
        assert!(e.to_string().contains("LOW-HIGH"), "{e}");
        let e = config(&["--cluster-dns", "10.96.0.10"]).unwrap_err();
        assert!(e.to_string().contains("outside --service-cidr"), "{e}");
        let c = config(&[
            "--service-cidr",
            "10.96.0.0/12",
            "--cluster-dns",
            "10.96.0.10",
        ])
        .unwrap();
        assert_eq!(c.cluster_dns, Ipv4Addr::new(10, 96, 0, 10));
        let c = config(&["--datastore-endpoint", "sqlite:///tmp/a.db"]).unwrap();
        assert_eq!(c.db_path, PathBuf::from("/tmp/a.db"));
        assert!(c.etcd.is_none());
        let c = config(&[
            "--datastore-endpoint",
            "etcd://127.0.0.1:2379,127.0.0.2:2379",
        ])
        .unwrap();
        let etcd = c.etcd.expect("etcd datastore");
        assert_eq!(
            etcd.describe(),
            "http://127.0.0.1:2379,http://127.0.0.2:2379"
        );
        let e = config(&["--datastore-endpoint", "etcd://a"]).unwrap_err();
        assert!(e.to_string().contains("is not HOST:PORT"), "{e}");
        let e = config(&["--datastore-cafile", "/tmp/ca.pem"]).unwrap_err();
        assert!(e.to_string().contains("need an etcd"), "{e}");
    }
}
