//! `orc agent`: flags → a checked agent config, then join the server and run the node.

use std::net::IpAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::agent::{self, client::ServerAddr, AgentConfig};

/// Flags describing this node, shared by `orc agent` and `orc server` (embedded agent).
#[derive(Debug, Clone, clap::Args)]
pub struct NodeArgs {
    /// Name of this node (defaults to the hostname).
    #[arg(long, env = "ORC_NODE_NAME")]
    pub node_name: Option<String>,
    /// IP address of this node for the cluster (defaults to the source address of the default route).
    #[arg(long, env = "ORC_NODE_IP")]
    pub node_ip: Option<IpAddr>,
    /// Label to set on this node, as key=value (repeatable).
    #[arg(long = "node-label", env = "ORC_NODE_LABEL", value_delimiter = ',')]
    pub node_label: Vec<String>,
    /// containerd socket the kubelet runs pods through.
    #[arg(
        long,
        env = "ORC_CONTAINERD_SOCKET",
        default_value = crate::agent::runtime::DEFAULT_CONTAINERD_SOCKET
    )]
    pub containerd_socket: PathBuf,
    /// containerd namespace of orc's images and containers.
    #[arg(long, env = "ORC_CONTAINERD_NAMESPACE", default_value = crate::agent::runtime::DEFAULT_NAMESPACE)]
    pub containerd_namespace: String,
    /// Name of the pod bridge on this node.
    #[arg(long, env = "ORC_POD_BRIDGE", default_value = crate::agent::net::DEFAULT_BRIDGE)]
    pub pod_bridge: String,
    /// nftables table (family ip) holding the pod masquerade rules.
    #[arg(long, env = "ORC_POD_NFT_TABLE", default_value = crate::agent::net::DEFAULT_NFT_TABLE)]
    pub pod_nft_table: String,
    /// nftables table (family ip) holding the service proxy's rules.
    #[arg(long, env = "ORC_PROXY_NFT_TABLE", default_value = crate::agent::proxy::DEFAULT_TABLE)]
    pub proxy_nft_table: String,
    /// Run no service proxy on this node (Services are then not reachable from it).
    #[arg(long, env = "ORC_DISABLE_PROXY")]
    pub disable_proxy: bool,
    /// How long each renewal of the node's Lease holds; it is renewed every quarter of
    /// it (20s: every 5s). Keep it well below the server's --node-monitor-grace-period.
    #[arg(long, env = "ORC_NODE_LEASE_DURATION", default_value = "20s", value_parser = crate::cli::server::parse_duration)]
    pub node_lease_duration: std::time::Duration,
    /// Run no cluster DNS server on this node (pods' resolv.conf still points at
    /// --cluster-dns). --disable-proxy disables it too: the cluster DNS address is a
    /// ClusterIP, and this node then serves none.
    #[arg(long, env = "ORC_DISABLE_DNS")]
    pub disable_dns: bool,
    /// Run no built-in ingress proxy on this node (on the server: do not create the
    /// `orc` IngressClass either), e.g. to run ingress-nginx or Traefik instead.
    #[arg(long, env = "ORC_DISABLE_INGRESS")]
    pub disable_ingress: bool,
    /// Port the built-in ingress serves plain HTTP on (every address of the node).
    #[arg(long, env = "ORC_INGRESS_HTTP_PORT", default_value_t = crate::agent::ingress::DEFAULT_HTTP_PORT)]
    pub ingress_http_port: u16,
    /// Port the built-in ingress serves HTTPS on (every address of the node).
    #[arg(long, env = "ORC_INGRESS_HTTPS_PORT", default_value_t = crate::agent::ingress::DEFAULT_HTTPS_PORT)]
    pub ingress_https_port: u16,
    /// nftables table (family ip) holding the NetworkPolicy rules.
    #[arg(long, env = "ORC_NETWORK_POLICY_NFT_TABLE", default_value = crate::agent::netpol::DEFAULT_TABLE)]
    pub network_policy_nft_table: String,
    /// Enforce no NetworkPolicies on this node (its table is removed at start; for
    /// another policy engine).
    #[arg(long, env = "ORC_DISABLE_NETWORK_POLICY")]
    pub disable_network_policy: bool,
    /// Size at which a container's log file is rotated (a quantity, e.g. 10Mi; 0: never).
    #[arg(long, env = "ORC_CONTAINER_LOG_MAX_SIZE", default_value = "10Mi")]
    pub container_log_max_size: String,
    /// Log files kept per container, the current one included (at least 2).
    #[arg(long, env = "ORC_CONTAINER_LOG_MAX_FILES", default_value_t = 5)]
    pub container_log_max_files: usize,
    /// Containers one containerd shim serves over its life (1: a shim per container).
    /// A shared shim saves the start of a shim daemon for all but the first of its
    /// containers; its crash ends all of them (they restart under their pods' policy).
    #[arg(long, env = "ORC_SHIM_GROUP_SIZE", default_value_t = 8, value_parser = clap::value_parser!(u64).range(1..))]
    pub shim_group_size: u64,
    /// Shared shims filled at the same time, taking consecutive containers in turn (a
    /// shim creates one container at a time).
    #[arg(long, env = "ORC_SHIM_GROUP_SPREAD", default_value_t = 2, value_parser = clap::value_parser!(u64).range(1..))]
    pub shim_group_spread: u64,
    /// The runtime handler of pods that name no RuntimeClass: runc, or a runtime found
    /// on this node (crun, nvidia, nvidia-experimental), as k3s's --default-runtime.
    #[arg(long, env = "ORC_DEFAULT_RUNTIME", default_value = agent::runtime::handlers::RUNC)]
    pub default_runtime: String,
    /// Where pods' `Localhost` seccomp profiles (`localhostProfile`) are found, as the
    /// kubelet's `<root-dir>/seccomp` (the Security Profiles Operator writes there).
    #[arg(
        long,
        env = "ORC_SECCOMP_PROFILE_ROOT",
        default_value = "/var/lib/kubelet/seccomp"
    )]
    pub seccomp_profile_root: PathBuf,
    /// Percent of the image filesystem in use at which unused images are removed.
    #[arg(long, env = "ORC_IMAGE_GC_HIGH_THRESHOLD", default_value_t = 85)]
    pub image_gc_high_threshold: u8,
    /// Percent of the image filesystem image garbage collection brings it down to.
    #[arg(long, env = "ORC_IMAGE_GC_LOW_THRESHOLD", default_value_t = 80)]
    pub image_gc_low_threshold: u8,
    /// An unused image is kept at least this long (images imported from agent/images too).
    #[arg(long, env = "ORC_IMAGE_MINIMUM_GC_AGE", default_value = "2m", value_parser = crate::cli::server::parse_duration)]
    pub image_minimum_gc_age: std::time::Duration,
    /// How often the image filesystem is checked for garbage collection.
    #[arg(long, env = "ORC_IMAGE_GC_PERIOD", default_value = "5m", value_parser = crate::cli::server::parse_duration)]
    pub image_gc_period: std::time::Duration,
    /// containerd's root directory: its filesystem is the image filesystem.
    #[arg(
        long,
        env = "ORC_CONTAINERD_ROOT",
        default_value = "/var/lib/containerd"
    )]
    pub containerd_root: PathBuf,
    /// Resources held back for the operating system, e.g. cpu=100m,memory=64Mi (also
    /// ephemeral-storage, pid); not allocatable to pods. Default for a 1 GB Raspberry Pi.
    #[arg(long, env = "ORC_SYSTEM_RESERVED", default_value = DEFAULT_SYSTEM_RESERVED)]
    pub system_reserved: String,
    /// Resources held back for orc and containerd, as --system-reserved.
    #[arg(long, env = "ORC_KUBE_RESERVED", default_value = DEFAULT_KUBE_RESERVED)]
    pub kube_reserved: String,
    /// Most pods this node runs (its pods capacity); more are rejected (OutOfpods).
    #[arg(long, env = "ORC_MAX_PODS", default_value_t = agent::allocatable::DEFAULT_MAX_PODS)]
    pub max_pods: u32,
    /// Node-pressure eviction (upstream kubelet's flags).
    #[command(flatten)]
    pub eviction: crate::cli::eviction::EvictionArgs,
}

/// Defaults sized for a 1 GB Raspberry Pi (README, "Node resources").
pub const DEFAULT_SYSTEM_RESERVED: &str = "cpu=100m,memory=64Mi";
pub const DEFAULT_KUBE_RESERVED: &str = "cpu=100m,memory=128Mi";

#[derive(Debug, Clone, clap::Args)]
#[command(args_override_self = true)]
pub struct AgentArgs {
    /// URL of the server to join, e.g. https://10.0.0.1:6443.
    #[arg(long, env = "ORC_JOIN")]
    pub join: String,
    /// Join token printed by `orc token` on the server.
    #[arg(long, env = "ORC_TOKEN", hide_env_values = true)]
    pub token: String,
    /// Accept a token without CA hash, trusting whatever CA the server presents.
    #[arg(long, env = "ORC_INSECURE_SKIP_CA_HASH")]
    pub insecure_skip_ca_hash: bool,
    #[arg(long, env = "ORC_DATA_DIR", default_value = "/var/lib/orc")]
    pub data_dir: PathBuf,
    /// The cluster's pod network (as given to the server).
    #[arg(long, env = "ORC_CLUSTER_CIDR", default_value = "10.42.0.0/16")]
    pub cluster_cidr: ipnet::Ipv4Net,
    /// Cluster DNS address written into pods' resolv.conf (as given to the server).
    #[arg(long, env = "ORC_CLUSTER_DNS", default_value = "10.43.0.10")]
    pub cluster_dns: std::net::Ipv4Addr,
    /// Cluster domain (as given to the server).
    #[arg(long, env = "ORC_CLUSTER_DOMAIN", default_value = "cluster.local")]
    pub cluster_domain: String,
    #[command(flatten)]
    pub node: NodeArgs,
}

/// What the node's resource flags say.
#[derive(Debug, Clone)]
pub struct NodeResources {
    pub log_rotation: Option<agent::runtime::logger::Rotation>,
    pub image_gc: agent::kubelet::image_gc::ImageGcPolicy,
    pub allocation: agent::allocatable::NodeAllocation,
}

impl NodeArgs {
    /// The checked log rotation, image GC and reservation flags (each error names its flag).
    pub fn resources(&self) -> anyhow::Result<NodeResources> {
        let log_rotation =
            log_rotation(&self.container_log_max_size, self.container_log_max_files)?;
        let image_gc = agent::kubelet::image_gc::ImageGcPolicy {
            high_threshold: self.image_gc_high_threshold,
            low_threshold: self.image_gc_low_threshold,
            min_age: self.image_minimum_gc_age,
            period: self.image_gc_period,
        };
        image_gc.validate()?;
        if self.image_gc_period.is_zero() {
            anyhow::bail!("--image-gc-period must be more than 0s");
        }
        if self.max_pods == 0 {
            anyhow::bail!("--max-pods must be at least 1");
        }
        let allocation = agent::allocatable::NodeAllocation {
            system_reserved: agent::allocatable::Reserved::parse(
                "--system-reserved",
                &self.system_reserved,
            )?,
            kube_reserved: agent::allocatable::Reserved::parse(
                "--kube-reserved",
                &self.kube_reserved,
            )?,
            eviction_hard_memory: self.eviction.hard_memory_available()?.map(|bytes| {
                crate::api::quantity::Quantity::from_units(
                    bytes,
                    crate::api::quantity::Format::BinarySI,
                )
            }),
            max_pods: self.max_pods,
        };
        Ok(NodeResources {
            log_rotation,
            image_gc,
            allocation,
        })
    }

    /// The agent config for joining `server` with `token` (shared by the embedded agent).
    pub fn into_config(
        self,
        server: ServerAddr,
        token: crate::tls::JoinToken,
        data_dir: PathBuf,
    ) -> anyhow::Result<AgentConfig> {
        let NodeResources {
            log_rotation,
            image_gc,
            allocation,
        } = self.resources()?;
        let node_name = match self.node_name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => crate::cli::server::hostname(),
        };
        if let Some(problem) = crate::api::validation::is_dns1123_subdomain(&node_name).first() {
            anyhow::bail!(
                "node name {node_name:?} is not valid: {problem}: choose one with --node-name"
            );
        }
        let mut node_labels =
            agent::node::parse_labels(&self.node_label).map_err(anyhow::Error::msg)?;
        let ingress = (!self.disable_ingress).then_some(agent::ingress::IngressConfig {
            http_port: self.ingress_http_port,
            https_port: self.ingress_https_port,
        });
        if let Some(ingress) = &ingress {
            if ingress.http_port == ingress.https_port {
                anyhow::bail!(
                    "--ingress-http-port and --ingress-https-port are both {}: choose two ports",
                    ingress.http_port
                );
            }
            node_labels.insert(crate::api::ingress::NODE_LABEL.to_string(), "true".into());
        }
        let eviction = self.eviction.into_config(self.containerd_root.clone())?;
        let runtime_handlers =
            agent::runtime::handlers::Handlers::detect(std::path::Path::new("/"))
                .with_default(&self.default_runtime)?;
        Ok(AgentConfig {
            server,
            token,
            insecure_skip_ca_hash: false,
            data_dir,
            node_name,
            node_ip: self.node_ip,
            node_labels,
            containerd_socket: self.containerd_socket,
            containerd_namespace: self.containerd_namespace,
            cluster_cidr: "10.42.0.0/16".parse().expect("valid default"),
            cluster_dns: std::net::Ipv4Addr::new(10, 43, 0, 10),
            cluster_domain: "cluster.local".into(),
            bridge: self.pod_bridge,
            nft_table: self.pod_nft_table,
            serve_dns: !self.disable_dns && !self.disable_proxy,
            proxy_table: (!self.disable_proxy).then_some(self.proxy_nft_table),
            node_lease_duration: self.node_lease_duration,
            ingress,
            netpol_table: self.network_policy_nft_table,
            enforce_network_policy: !self.disable_network_policy,
            log_rotation,
            shim_sharing: agent::runtime::ShimSharing {
                size: self.shim_group_size,
                spread: self.shim_group_spread,
            },
            runtime_handlers,
            seccomp_root: self.seccomp_profile_root,
            image_gc,
            containerd_root: self.containerd_root,
            allocation,
            eviction,
        })
    }
}

/// `--container-log-max-size` and `--container-log-max-files` → the logger's rotation
/// (`None` with a max size of 0).
fn log_rotation(
    max_size: &str,
    max_files: usize,
) -> anyhow::Result<Option<agent::runtime::logger::Rotation>> {
    let size: crate::api::quantity::Quantity = max_size
        .parse()
        .map_err(|e| anyhow::anyhow!("--container-log-max-size {max_size:?}: {e}"))?;
    if size.is_negative() {
        anyhow::bail!("--container-log-max-size {max_size:?}: must not be negative");
    }
    if max_files < 2 {
        anyhow::bail!("--container-log-max-files {max_files}: must be at least 2");
    }
    Ok((!size.is_zero()).then(|| agent::runtime::logger::Rotation {
        max_size: size.value() as u64,
        max_files,
    }))
}

impl AgentArgs {
    pub fn into_config(self) -> anyhow::Result<AgentConfig> {
        let server = ServerAddr::parse(&self.join).context("--join")?;
        let token: crate::tls::JoinToken = self
            .token
            .parse()
            .context("--token: copy it from `orc token` on the server")?;
        let mut config = self.node.into_config(server, token, self.data_dir)?;
        config.insecure_skip_ca_hash = self.insecure_skip_ca_hash;
        config.cluster_cidr = self.cluster_cidr;
        config.cluster_dns = self.cluster_dns;
        config.cluster_domain = self.cluster_domain;
        agent::join::check_token(&config.token, config.insecure_skip_ca_hash)?;
        Ok(config)
    }
}

pub fn run(args: AgentArgs) -> anyhow::Result<()> {
    let config = args.into_config()?;
    // The agent's credentials and pod files: private whatever the umask.
    for dir in [config.data_dir.clone(), config.agent_dir()] {
        crate::cli::server::create_private_dir(&dir, true)?;
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("orc-agent")
        .build()
        .context("start the async runtime")?;
    runtime.block_on(async {
        tokio::select! {
            result = agent::run(config) => result.map_err(anyhow::Error::from),
            () = crate::cli::server::shutdown_signal() => {
                tracing::info!("shutting down");
                Ok(())
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: AgentArgs,
    }

    fn config(args: &[&str]) -> anyhow::Result<AgentConfig> {
        let mut argv = vec!["orc"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv)?.args.into_config()
    }

    const TOKEN: &str =
        "K10aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa::node:s3cret";

    #[test]
    fn flags_become_a_checked_config() {
        let c = config(&[
            "--join",
            "https://10.0.0.1:6443",
            "--token",
            TOKEN,
            "--node-name",
            "n1",
            "--node-label",
            "zone=attic",
            "--node-label",
            "tier=edge",
            "--node-ip",
            "10.0.0.2",
        ])
        .unwrap();
        assert_eq!(c.server.port, 6443);
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.node_labels["zone"], "attic");
        assert_eq!(c.node_labels["tier"], "edge");
        assert_eq!(c.node_labels.len(), 3, "and the ingress label");
        assert_eq!(c.agent_dir(), PathBuf::from("/var/lib/orc/agent"));
        assert_eq!(c.token.secret, "s3cret");
        assert_eq!(c.proxy_table.as_deref(), Some("orc-proxy"));
        assert_eq!(c.node_lease_duration, std::time::Duration::from_secs(20));
    }

    #[test]
    fn lease_duration_is_a_go_style_duration() {
        let base = ["--join", "https://10.0.0.1:6443", "--token", TOKEN];
        let c = config(&[&base[..], &["--node-lease-duration", "4s"]].concat()).unwrap();
        assert_eq!(c.node_lease_duration, std::time::Duration::from_secs(4));
        assert!(config(&[&base[..], &["--node-lease-duration", "soon"]].concat()).is_err());
    }

    #[test]
    fn network_policy_table_is_chosen_or_disabled_by_flag() {
        let base = ["--join", "https://10.0.0.1:6443", "--token", TOKEN];
        let c = config(&base).unwrap();
        assert_eq!(c.netpol_table, "orc-netpol");
        assert!(c.enforce_network_policy);
        let c = config(
            &[
                &base[..],
                &[
                    "--network-policy-nft-table",
                    "np",
                    "--disable-network-policy",
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(c.netpol_table, "np");
        assert!(!c.enforce_network_policy);
    }

    #[test]
    fn proxy_table_is_chosen_or_disabled_by_flag() {
        let base = ["--join", "https://10.0.0.1:6443", "--token", TOKEN];
        let c = config(&[&base[..], &["--proxy-nft-table", "mine"]].concat()).unwrap();
        assert_eq!(c.proxy_table.as_deref(), Some("mine"));
        let c = config(&[&base[..], &["--disable-proxy"]].concat()).unwrap();
        assert_eq!(c.proxy_table, None);
        assert!(
            !c.serve_dns,
            "no proxy, no ClusterIPs: no cluster DNS either"
        );
    }

    #[test]
    fn ingress_listens_on_80_and_443_unless_moved_or_disabled() {
        let base = ["--join", "https://10.0.0.1:6443", "--token", TOKEN];
        let c = config(&base).unwrap();
        let ports = c.ingress.map(|i| (i.http_port, i.https_port));
        assert_eq!(ports, Some((80, 443)));
        assert_eq!(c.node_labels[crate::api::ingress::NODE_LABEL], "true");
        let moved = [
            "--ingress-http-port",
            "8080",
            "--ingress-https-port",
            "8443",
        ];
        let c = config(&[&base[..], &moved].concat()).unwrap();
        assert_eq!(
            c.ingress.map(|i| (i.http_port, i.https_port)),
            Some((8080, 8443))
        );
        let c = config(&[&base[..], &["--disable-ingress"]].concat()).unwrap();
        assert_eq!(c.ingress, None);
        assert!(!c.node_labels.contains_key(crate::api::ingress::NODE_LABEL));
        let same = [
            "--ingress-http-port",
            "8080",
            "--ingress-https-port",
            "8080",
        ];
        let err = config(&[&base[..], &same].concat())
            .unwrap_err()
            .to_string();
        assert!(err.contains("choose two ports"), "{err}");
    }

    #[test]
    fn cluster_dns_runs_unless_disabled() {
        let base = ["--join", "https://10.0.0.1:6443", "--token", TOKEN];
        assert!(config(&base).unwrap().serve_dns);
        let c = config(&[&base[..], &["--disable-dns"]].concat()).unwrap();
        assert!(!c.serve_dns);
        assert!(c.proxy_table.is_some());
    }

    #[test]
    fn node_resource_flags_have_pi_defaults_and_name_themselves_when_wrong() {
        let base = ["--join", "https://10.0.0.1:6443", "--token", TOKEN];
        let c = config(&base).unwrap();
        assert_eq!(c.allocation.max_pods, 110);
        assert_eq!(c.allocation.system_reserved.0["memory"].value(), 64 << 20);
        assert_eq!(c.allocation.kube_reserved.0["cpu"].milli_value(), 100);
        assert_eq!(
            c.log_rotation,
            Some(agent::runtime::logger::Rotation {
                max_size: 10 << 20,
                max_files: 5
            })
        );
        assert_eq!(c.image_gc, Default::default());
        assert_eq!(c.containerd_root, PathBuf::from("/var/lib/containerd"));
        let c = config(
            &[
                &base[..],
                &[
                    "--container-log-max-size",
                    "0",
                    "--max-pods",
                    "8",
                    "--kube-reserved",
                    "",
                    "--image-gc-period",
                    "1s",
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(c.log_rotation, None);
        assert_eq!(c.allocation.max_pods, 8);
        assert!(c.allocation.kube_reserved.0.is_empty());
        assert_eq!(c.image_gc.period, std::time::Duration::from_secs(1));
        for (flag, value) in [
            ("--system-reserved", "memory=lots"),
            ("--kube-reserved", "cpu"),
            ("--container-log-max-size", "ten"),
            ("--container-log-max-files", "1"),
            ("--image-gc-low-threshold", "90"),
            ("--image-gc-high-threshold", "101"),
            ("--max-pods", "0"),
        ] {
            let e = config(&[&base[..], &[flag, value]].concat()).unwrap_err();
            let text = format!("{e:#}");
            assert!(text.contains(flag), "{flag} {value}: {text}");
            assert!(!text.contains('\n'), "one line: {text}");
        }
    }

    #[test]
    fn bad_flags_give_actionable_errors() {
        let e = config(&["--join", "http://x:6443", "--token", TOKEN]).unwrap_err();
        assert!(format!("{e:#}").contains("expected https://"), "{e:#}");
        let e = config(&["--join", "https://x:6443", "--token", "bare"]).unwrap_err();
        assert!(
            format!("{e:#}").contains("--insecure-skip-ca-hash"),
            "{e:#}"
        );
        assert!(config(&[
            "--join",
            "https://x",
            "--token",
            "bare",
            "--insecure-skip-ca-hash"
        ])
        .is_ok());
        let e = config(&[
            "--join",
            "https://x",
            "--token",
            TOKEN,
            "--node-name",
            "Bad_Name",
        ])
        .unwrap_err();
        assert!(format!("{e:#}").contains("--node-name"), "{e:#}");
    }
}
