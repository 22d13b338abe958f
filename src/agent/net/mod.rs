//! Pod network of the agent: the node bridge, one veth per pod, IPAM persisted on disk,
//! host-gw routes to other nodes' podCIDRs and masquerade for traffic leaving the cluster.
//!
//! Netlink work runs on dedicated OS threads, each in the namespace it works on (the
//! node's, or a pod's): network namespaces are per thread, so a tokio worker never
//! calls setns. See [`netns`].

mod bridge;
mod dummy;
#[cfg(test)]
mod fake;
mod ipam;
mod masq;
pub mod netns;
mod nl;
mod routes;

use std::io;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::Ipv4Net;

pub use bridge::{host_veth_name, Bridge, PodInterface, FALLBACK_MTU};
pub use dummy::ensure_local_address;
#[cfg(test)]
pub use fake::{FakeNetwork, MemoryStore, NetCall};
pub use ipam::{gateway_of, FileStore, Ipam, IpamStore};
pub use netns::{create_netns, delete_netns, is_netns, spawn_in_netns};
pub use routes::{RouteSync, Routes, ROUTE_PROTOCOL};

pub const DEFAULT_BRIDGE: &str = "orc0";
pub const DEFAULT_NFT_TABLE: &str = "orc-nat";
/// Linux interface names are at most 15 bytes.
const MAX_IFNAME_LEN: usize = 15;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("pod CIDR {cidr} is too small: it needs room for a gateway and at least one pod (at most /29)")]
    CidrTooSmall { cidr: Ipv4Net },
    #[error("no free address left in pod CIDR {cidr} for {owner}: too many pods on this node")]
    PoolExhausted { cidr: Ipv4Net, owner: String },
    #[error("{ip} is outside the pod CIDR {cidr}")]
    AddressOutsidePodCidr { ip: Ipv4Addr, cidr: Ipv4Net },
    #[error("read IPAM state {path}")]
    IpamRead { path: PathBuf, source: io::Error },
    #[error("write IPAM state {path}")]
    IpamWrite { path: PathBuf, source: io::Error },
    #[error("corrupt IPAM record {path}: {reason}; remove it if no pod uses that address")]
    IpamCorrupt { path: PathBuf, reason: String },
    #[error("create network namespace {path}: {step}")]
    CreateNetns {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("delete network namespace {path}: {step}")]
    DeleteNetns {
        path: PathBuf,
        step: &'static str,
        source: io::Error,
    },
    #[error("enter network namespace {path}")]
    EnterNetns { path: PathBuf, source: io::Error },
    #[error("open a netlink socket")]
    NetlinkSocket(#[source] io::Error),
    #[error("start a network worker thread")]
    Thread(#[source] io::Error),
    #[error("network worker thread died before answering")]
    ThreadDied,
    #[error("netlink: {step}")]
    Netlink {
        step: String,
        source: rtnetlink::Error,
    },
    #[error("link {name} not found")]
    LinkNotFound { name: String },
    #[error("bridge {name} does not exist: the node network is not set up yet")]
    BridgeMissing { name: String },
    #[error("link {name} exists but is not a dummy link: remove it or choose another name")]
    NotADummy { name: String },
    #[error("link {name} exists but is not a bridge: choose another bridge name")]
    NotABridge { name: String },
    #[error("invalid interface name {name:?}: 1 to 15 bytes, no '/', ':' or whitespace")]
    InvalidInterfaceName { name: String },
    #[error("nftables: {step}: {detail} (is nft installed? orc check)")]
    Nft {
        step: &'static str,
        detail: String,
        source: Box<nftables::helper::NftablesError>,
    },
    #[error("set sysctl {path}")]
    Sysctl {
        path: &'static str,
        source: io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything the pod network of one node needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetworkConfig {
    /// Bridge name (`orc0`).
    pub bridge: String,
    /// This node's podCIDR; its first address is the bridge's.
    pub pod_cidr: Ipv4Net,
    /// The whole cluster's pod network; traffic leaving it is masqueraded.
    pub cluster_cidr: Ipv4Net,
    /// orc's own nftables table (family `ip`) for masquerade.
    pub nft_table: String,
    /// Bridge and veth MTU; `None`: that of the default route's interface.
    pub mtu: Option<u32>,
    /// Directory of IPAM records (`<data-dir>/agent/ipam`).
    pub ipam_dir: PathBuf,
    /// Routing protocol number marking orc's routes.
    pub route_protocol: u8,
    /// The network namespace standing for the node; `None`: the agent's own.
    pub host_netns: Option<PathBuf>,
}

impl NetworkConfig {
    /// Defaults: bridge `orc0`, table `orc-nat`, MTU detected, IPAM under
    /// `<data_dir>/agent/ipam`, the agent's own namespace.
    pub fn new(data_dir: &Path, pod_cidr: Ipv4Net, cluster_cidr: Ipv4Net) -> Self {
        NetworkConfig {
            bridge: DEFAULT_BRIDGE.into(),
            pod_cidr: pod_cidr.trunc(),
            cluster_cidr: cluster_cidr.trunc(),
            nft_table: DEFAULT_NFT_TABLE.into(),
            mtu: None,
            ipam_dir: data_dir.join("agent").join("ipam"),
            route_protocol: ROUTE_PROTOCOL,
            host_netns: None,
        }
    }

    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.pod_cidr)
    }
}

/// The pod network as the kubelet sees it. [`LinuxNetwork`] is the real one; unit
/// tests use `FakeNetwork`, which records calls.
#[async_trait]
pub trait NetworkBackend: Send + Sync {
    /// Sets up the node side (bridge, gateway address, forwarding, masquerade).
    /// Idempotent; called at agent start.
    async fn ensure_node(&self) -> Result<()>;
    /// Creates a pod's persistent network namespace at `path` (idempotent).
    async fn create_netns(&self, path: &Path) -> Result<()>;
    /// Removes a namespace made by `create_netns` (idempotent).
    async fn delete_netns(&self, path: &Path) -> Result<()>;
    /// Gives `owner` its address (the same one again if it already has one) without
    /// plugging anything: the address is known before [`Self::attach_pod`] ends, which
    /// then hands out the same one.
    fn allocate_pod_ip(&self, owner: &str) -> Result<Ipv4Addr>;
    /// Gives the pod an address (the same one again if it already has one) and plugs
    /// it into the bridge. Returns the pod IP.
    async fn attach_pod(&self, pod: &PodInterface) -> Result<Ipv4Addr>;
    /// Unplugs the pod and releases its address. Idempotent.
    async fn detach_pod(&self, pod: &PodInterface) -> Result<()>;
    /// The address held by `owner`, if any.
    fn pod_ip(&self, owner: &str) -> Option<Ipv4Addr>;
    /// Makes orc's host-gw routes exactly `desired` (`(podCIDR, node IP)` pairs of the
    /// other nodes).
    async fn sync_routes(&self, desired: &[(Ipv4Net, Ipv4Addr)]) -> Result<RouteSync>;
    /// Removes the bridge, orc's nftables table and orc's routes.
    async fn uninstall(&self) -> Result<()>;
}

/// The pod network on Linux: netlink, nftables and files under the data dir.
#[derive(Debug)]
pub struct LinuxNetwork {
    config: NetworkConfig,
    bridge: Bridge,
    routes: Routes,
    ipam: Mutex<Ipam<FileStore>>,
}

impl LinuxNetwork {
    /// Opens the IPAM records; touches no network state yet.
    pub fn new(config: NetworkConfig) -> Result<Self> {
        check_interface_name(&config.bridge)?;
        let ipam = Ipam::open(&config.ipam_dir, config.pod_cidr)?;
        Ok(LinuxNetwork {
            bridge: Bridge::new(&config),
            routes: Routes::new(config.host_netns.clone(), config.route_protocol),
            ipam: Mutex::new(ipam),
            config,
        })
    }

    pub fn config(&self) -> &NetworkConfig {
        &self.config
    }

    pub fn bridge(&self) -> &Bridge {
        &self.bridge
    }

    pub fn routes(&self) -> &Routes {
        &self.routes
    }

    /// Every `(owner, address)` allocation, e.g. to release those of pods that are gone.
    pub fn allocations(&self) -> Vec<(String, Ipv4Addr)> {
        let ipam = self.ipam.lock().expect("ipam lock poisoned");
        ipam.allocations()
            .map(|(owner, ip)| (owner.to_string(), ip))
            .collect()
    }
}

#[async_trait]
impl NetworkBackend for LinuxNetwork {
    async fn ensure_node(&self) -> Result<()> {
        self.bridge.ensure().await
    }

    async fn create_netns(&self, path: &Path) -> Result<()> {
        let path = path.to_path_buf();
        blocking(move || netns::create_netns(&path)).await
    }

    async fn delete_netns(&self, path: &Path) -> Result<()> {
        let path = path.to_path_buf();
        blocking(move || netns::delete_netns(&path)).await
    }

    fn allocate_pod_ip(&self, owner: &str) -> Result<Ipv4Addr> {
        self.ipam
            .lock()
            .expect("ipam lock poisoned")
            .allocate(owner)
    }

    async fn attach_pod(&self, pod: &PodInterface) -> Result<Ipv4Addr> {
        check_interface_name(&pod.if_name)?;
        let ip = self
            .ipam
            .lock()
            .expect("ipam lock poisoned")
            .allocate(&pod.owner)?;
        self.bridge.setup_pod(pod, ip).await?;
        Ok(ip)
    }

    async fn detach_pod(&self, pod: &PodInterface) -> Result<()> {
        self.bridge.teardown_pod(pod).await?;
        self.ipam
            .lock()
            .expect("ipam lock poisoned")
            .release(&pod.owner)?;
        Ok(())
    }

    fn pod_ip(&self, owner: &str) -> Option<Ipv4Addr> {
        self.ipam.lock().expect("ipam lock poisoned").get(owner)
    }

    async fn sync_routes(&self, desired: &[(Ipv4Net, Ipv4Addr)]) -> Result<RouteSync> {
        self.routes.sync(desired).await
    }

    async fn uninstall(&self) -> Result<()> {
        self.routes.sync(&[]).await?;
        self.bridge.uninstall().await
    }
}

/// Runs short blocking file-system work (mounts, statfs) off the async workers. It must
/// not change the thread's namespaces: those threads are shared.
async fn blocking<T: Send + 'static>(f: impl FnOnce() -> Result<T> + Send + 'static) -> Result<T> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|_| Error::ThreadDied)?
}

fn check_interface_name(name: &str) -> Result<()> {
    let valid = !name.is_empty()
        && name.len() <= MAX_IFNAME_LEN
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace());
    if valid {
        Ok(())
    } else {
        Err(Error::InvalidInterfaceName { name: name.into() })
    }
}

/// The source address of the default route (a UDP connect sends no packet).
pub fn primary_ip() -> Option<std::net::IpAddr> {
    let sock = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    sock.connect("192.0.2.1:9").ok()?;
    let ip = sock.local_addr().ok()?.ip();
    (!ip.is_unspecified()).then_some(ip)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names_are_checked_like_the_kernel_does() {
        assert!(check_interface_name("eth0").is_ok());
        assert!(check_interface_name("orc0").is_ok());
        assert!(check_interface_name("a-fifteen-bytes").is_ok());
        assert!(check_interface_name("sixteen-bytes-xx").is_err());
        assert!(check_interface_name("").is_err());
        assert!(check_interface_name("a/b").is_err());
        assert!(check_interface_name("eth0:1").is_err());
    }

    #[test]
    fn config_defaults_follow_the_design() {
        let config = NetworkConfig::new(
            Path::new("/var/lib/orc"),
            "10.42.5.7/24".parse().unwrap(),
            "10.42.0.0/16".parse().unwrap(),
        );
        assert_eq!(config.bridge, "orc0");
        assert_eq!(config.pod_cidr.to_string(), "10.42.5.0/24");
        assert_eq!(config.gateway(), "10.42.5.1".parse::<Ipv4Addr>().unwrap());
        assert_eq!(config.ipam_dir, Path::new("/var/lib/orc/agent/ipam"));
        assert_eq!(config.nft_table, "orc-nat");
    }
}
