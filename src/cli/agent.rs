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
    /// it. Keep it below the server's --node-monitor-grace-period.
    #[arg(long, env = "ORC_NODE_LEASE_DURATION", default_value = "40s", value_parser = crate::cli::server::parse_duration)]
    pub node_lease_duration: std::time::Duration,
    /// Run no cluster DNS server on this node (pods' resolv.conf still points at
    /// --cluster-dns). --disable-proxy disables it too: the cluster DNS address is a
    /// ClusterIP, and this node then serves none.
    #[arg(long, env = "ORC_DISABLE_DNS")]
    pub disable_dns: bool,
    /// Node-pressure eviction (upstream kubelet's flags).
    #[command(flatten)]
    pub eviction: crate::cli::eviction::EvictionArgs,
}

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

impl NodeArgs {
    /// The agent config for joining `server` with `token` (shared by the embedded agent).
    pub fn into_config(
        self,
        server: ServerAddr,
        token: crate::tls::JoinToken,
        data_dir: PathBuf,
    ) -> anyhow::Result<AgentConfig> {
        let node_name = match self.node_name.filter(|n| !n.is_empty()) {
            Some(n) => n,
            None => crate::cli::server::hostname(),
        };
        if let Some(problem) = crate::api::validation::is_dns1123_subdomain(&node_name).first() {
            anyhow::bail!(
                "node name {node_name:?} is not valid: {problem}: choose one with --node-name"
            );
        }
        let node_labels =
            agent::node::parse_labels(&self.node_label).map_err(anyhow::Error::msg)?;
        let eviction = self.eviction.into_config()?;
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
            eviction,
        })
    }
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
        assert_eq!(c.node_labels.len(), 2);
        assert_eq!(c.agent_dir(), PathBuf::from("/var/lib/orc/agent"));
        assert_eq!(c.token.secret, "s3cret");
        assert_eq!(c.proxy_table.as_deref(), Some("orc-proxy"));
        assert_eq!(c.node_lease_duration, std::time::Duration::from_secs(40));
    }

    #[test]
    fn lease_duration_is_a_go_style_duration() {
        let base = ["--join", "https://10.0.0.1:6443", "--token", TOKEN];
        let c = config(&[&base[..], &["--node-lease-duration", "4s"]].concat()).unwrap();
        assert_eq!(c.node_lease_duration, std::time::Duration::from_secs(4));
        assert!(config(&[&base[..], &["--node-lease-duration", "soon"]].concat()).is_err());
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
    fn cluster_dns_runs_unless_disabled() {
        let base = ["--join", "https://10.0.0.1:6443", "--token", TOKEN];
        assert!(config(&base).unwrap().serve_dns);
        let c = config(&[&base[..], &["--disable-dns"]].concat()).unwrap();
        assert!(!c.serve_dns);
        assert!(c.proxy_table.is_some());
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
