//! The node bridge (`orc0`) with the pod gateway address, IP forwarding and masquerade,
//! and the per-pod veth pairs plugged into it.

use std::fs;
use std::net::Ipv4Addr;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoData, InfoKind, InfoVeth, LinkAttribute, LinkInfo};
use rtnetlink::packet_route::route::RouteAttribute;
use rtnetlink::{Handle, LinkBridge, LinkBridgePort, LinkUnspec, LinkVeth, RouteMessageBuilder};
use sha2::{Digest, Sha256};
use tracing::debug;

use super::masq::Masquerade;
use super::nl::{self, errno, step};
use super::{netns, Error, NetworkConfig, Result};

/// MTU used when none is configured and the default route's interface cannot be found.
pub const FALLBACK_MTU: u32 = 1500;
const IP_FORWARD_SYSCTL: &str = "/proc/sys/net/ipv4/ip_forward";
const LOOPBACK: &str = "lo";

/// One pod's interface: the veth end called `if_name` inside the pod's network namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodInterface {
    /// Pod UID or sandbox id; names the host end of the veth pair.
    pub owner: String,
    /// The pod's persistent network namespace (see [`netns::create_netns`]).
    pub netns: PathBuf,
    /// Name inside the pod, normally `eth0`.
    pub if_name: String,
}

impl PodInterface {
    pub fn new(owner: impl Into<String>, netns: impl Into<PathBuf>) -> Self {
        PodInterface {
            owner: owner.into(),
            netns: netns.into(),
            if_name: "eth0".into(),
        }
    }

    /// Host end of the veth pair: `veth` and 8 hex digits of a hash of the owner (a hash,
    /// not a prefix: sandbox ids and UIDs may share prefixes).
    pub fn host_veth(&self) -> String {
        host_veth_name(&self.owner)
    }
}

pub fn host_veth_name(owner: &str) -> String {
    let digest = Sha256::digest(owner.as_bytes());
    format!("veth{}", hex::encode(&digest[..4]))
}

/// The node's pod bridge. Every operation runs on a dedicated thread in the node's
/// network namespace ([`NetworkConfig::host_netns`]).
#[derive(Debug, Clone)]
pub struct Bridge {
    name: String,
    pod_cidr: Ipv4Net,
    mtu: Option<u32>,
    host_netns: Option<PathBuf>,
    masquerade: Masquerade,
}

impl Bridge {
    pub fn new(config: &NetworkConfig) -> Self {
        Bridge {
            name: config.bridge.clone(),
            pod_cidr: config.pod_cidr.trunc(),
            mtu: config.mtu,
            host_netns: config.host_netns.clone(),
            masquerade: Masquerade {
                table: config.nft_table.clone(),
                pod_cidr: config.pod_cidr.trunc(),
                cluster_cidr: config.cluster_cidr.trunc(),
            },
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn gateway(&self) -> Ipv4Addr {
        super::ipam::gateway_of(self.pod_cidr)
    }

    /// Makes sure the bridge exists, is up and holds the gateway address (as its only
    /// IPv4 address), that IPv4 forwarding is on and that the masquerade rules are in
    /// place. Idempotent; safe to call at every agent start.
    pub async fn ensure(&self) -> Result<()> {
        let this = self.clone();
        netns::run(self.host_netns.clone(), move |handle| async move {
            let index = this.ensure_link(&handle).await?;
            let (gateway, prefix) = (this.gateway(), this.pod_cidr.prefix_len());
            nl::ensure_only_address(&handle, index, gateway, prefix, &this.name).await?;
            enable_ip_forward()?;
            this.masquerade.apply()
        })
        .await
    }

    async fn ensure_link(&self, handle: &Handle) -> Result<u32> {
        if let Some(link) = nl::link_by_name(handle, &self.name).await? {
            if !is_bridge(&link) {
                return Err(Error::NotABridge {
                    name: self.name.clone(),
                });
            }
            nl::set_up(handle, link.header.index, &self.name).await?;
            return Ok(link.header.index);
        }
        let mtu = match self.mtu {
            Some(mtu) => mtu,
            None => default_route_mtu(handle).await?.unwrap_or(FALLBACK_MTU),
        };
        debug!(bridge = %self.name, mtu, "creating bridge");
        // A fixed address: otherwise the bridge takes the lowest of its ports' addresses
        // and changes it as pods come and go.
        let created = handle
            .link()
            .add(
                LinkBridge::new(&self.name)
                    .mtu(mtu)
                    .address(random_local_mac().to_vec())
                    .up()
                    .build(),
            )
            .execute()
            .await;
        match created {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
            Err(e) => return Err(step(format!("create bridge {}", self.name))(e)),
        }
        let link =
            nl::link_by_name(handle, &self.name)
                .await?
                .ok_or_else(|| Error::LinkNotFound {
                    name: self.name.clone(),
                })?;
        Ok(link.header.index)
    }

    /// Removes the bridge and orc's nftables table. Pods' veths stay until torn down.
    pub async fn uninstall(&self) -> Result<()> {
        let this = self.clone();
        netns::run(self.host_netns.clone(), move |handle| async move {
            nl::delete_link(&handle, &this.name).await?;
            this.masquerade.remove()
        })
        .await
    }

    /// Plugs a pod into the bridge: a veth pair whose host end joins the bridge and whose
    /// other end is `pod.if_name` inside `pod.netns`, with `ip` on the pod CIDR's prefix,
    /// `lo` up and a default route via the gateway. The MTU is the bridge's.
    ///
    /// A leftover host veth of the same owner (an earlier, interrupted attempt) is
    /// replaced. On failure nothing is left plugged in.
    pub async fn setup_pod(&self, pod: &PodInterface, ip: Ipv4Addr) -> Result<()> {
        if !self.pod_cidr.contains(&ip) {
            return Err(Error::AddressOutsidePodCidr {
                ip,
                cidr: self.pod_cidr,
            });
        }
        let bridge = self.name.clone();
        let host_veth = pod.host_veth();
        let pod_if = pod.if_name.clone();
        let netns_path = pod.netns.clone();
        let mtu = netns::run(self.host_netns.clone(), move |handle| async move {
            create_veth(&handle, &bridge, &host_veth, &pod_if, &netns_path).await
        })
        .await?;

        let (pod_if, gateway, prefix) = (
            pod.if_name.clone(),
            self.gateway(),
            self.pod_cidr.prefix_len(),
        );
        let configured = netns::run(Some(pod.netns.clone()), move |handle| async move {
            configure_pod_side(&handle, &pod_if, ip, prefix, gateway).await
        })
        .await;
        if let Err(e) = configured {
            let host_veth = pod.host_veth();
            let cleanup = netns::run(self.host_netns.clone(), move |handle| async move {
                nl::delete_link(&handle, &host_veth).await
            })
            .await;
            if let Err(cleanup) = cleanup {
                debug!(error = %cleanup, "removing the half-made veth failed too");
            }
            return Err(e);
        }
        debug!(owner = %pod.owner, %ip, mtu, "pod plugged into the bridge");
        Ok(())
    }

    /// Unplugs a pod: deletes its interface inside its namespace (when that still
    /// exists) and the host end of the veth. Idempotent.
    pub async fn teardown_pod(&self, pod: &PodInterface) -> Result<()> {
        if netns::is_netns(&pod.netns) {
            let pod_if = pod.if_name.clone();
            netns::run(Some(pod.netns.clone()), move |handle| async move {
                nl::delete_link(&handle, &pod_if).await
            })
            .await?;
        }
        let host_veth = pod.host_veth();
        netns::run(self.host_netns.clone(), move |handle| async move {
            nl::delete_link(&handle, &host_veth).await
        })
        .await?;
        Ok(())
    }
}

/// Creates the veth pair with its pod end directly inside the pod's namespace, plugs the
/// host end into the bridge (hairpin on, for Services that lead back to the same pod)
/// and brings it up. Returns the MTU used. Runs in the node namespace.
async fn create_veth(
    handle: &Handle,
    bridge: &str,
    host_veth: &str,
    pod_if: &str,
    netns_path: &Path,
) -> Result<u32> {
    let bridge_link =
        nl::link_by_name(handle, bridge)
            .await?
            .ok_or_else(|| Error::BridgeMissing {
                name: bridge.to_string(),
            })?;
    let mtu = nl::link_mtu(&bridge_link).unwrap_or(FALLBACK_MTU);
    if nl::delete_link(handle, host_veth).await? {
        debug!(%host_veth, "replaced a leftover veth");
    }
    let netns_file = fs::File::open(netns_path).map_err(|source| Error::EnterNetns {
        path: netns_path.to_path_buf(),
        source,
    })?;
    let peer = LinkUnspec::new_with_name(pod_if)
        .mtu(mtu)
        .setns_by_fd(netns_file.as_raw_fd())
        .build();
    let veth = LinkVeth::new(host_veth, pod_if)
        .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
        .mtu(mtu)
        .build();
    handle
        .link()
        .add(veth)
        .execute()
        .await
        .map_err(step(format!("create veth {host_veth} (pod end {pod_if})")))?;
    drop(netns_file);

    let plugged = async {
        let link =
            nl::link_by_name(handle, host_veth)
                .await?
                .ok_or_else(|| Error::LinkNotFound {
                    name: host_veth.to_string(),
                })?;
        let index = link.header.index;
        handle
            .link()
            .set(
                LinkUnspec::new_with_index(index)
                    .controller(bridge_link.header.index)
                    .build(),
            )
            .execute()
            .await
            .map_err(step(format!("plug {host_veth} into {bridge}")))?;
        handle
            .link()
            .set_port(LinkBridgePort::new(index).hairpin(true).build())
            .execute()
            .await
            .map_err(step(format!("turn on hairpin on {host_veth}")))?;
        nl::set_up(handle, index, host_veth).await
    }
    .await;
    if let Err(e) = plugged {
        let _ = nl::delete_link(handle, host_veth).await;
        return Err(e);
    }
    Ok(mtu)
}

/// Inside the pod namespace: `lo` up, address on the pod interface, interface up, and a
/// default route via the gateway.
async fn configure_pod_side(
    handle: &Handle,
    pod_if: &str,
    ip: Ipv4Addr,
    prefix: u8,
    gateway: Ipv4Addr,
) -> Result<()> {
    let lo = nl::link_by_name(handle, LOOPBACK)
        .await?
        .ok_or_else(|| Error::LinkNotFound {
            name: LOOPBACK.into(),
        })?;
    nl::set_up(handle, lo.header.index, LOOPBACK).await?;
    let link = nl::link_by_name(handle, pod_if)
        .await?
        .ok_or_else(|| Error::LinkNotFound {
            name: pod_if.to_string(),
        })?;
    let index = link.header.index;
    nl::ensure_only_address(handle, index, ip, prefix, pod_if).await?;
    nl::set_up(handle, index, pod_if).await?;
    let default_route = RouteMessageBuilder::<Ipv4Addr>::new()
        .gateway(gateway)
        .output_interface(index)
        .build();
    handle
        .route()
        .add(default_route)
        .replace()
        .execute()
        .await
        .map_err(step(format!("add default route via {gateway}")))
}

fn is_bridge(link: &rtnetlink::packet_route::link::LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Bridge))),
        _ => false,
    })
}

/// MTU of the interface the default route leaves through, if there is one.
async fn default_route_mtu(handle: &Handle) -> Result<Option<u32>> {
    let routes = nl::main_table_routes(handle).await?;
    let oif = routes
        .iter()
        .filter(|r| r.header.destination_prefix_length == 0)
        .find_map(|r| {
            r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Oif(index) => Some(*index),
                _ => None,
            })
        });
    let Some(oif) = oif else { return Ok(None) };
    Ok(nl::link_by_index(handle, oif)
        .await?
        .as_ref()
        .and_then(nl::link_mtu))
}

fn enable_ip_forward() -> Result<()> {
    let sysctl_err = |source| Error::Sysctl {
        path: IP_FORWARD_SYSCTL,
        source,
    };
    let current = fs::read_to_string(IP_FORWARD_SYSCTL).map_err(sysctl_err)?;
    if current.trim() != "1" {
        fs::write(IP_FORWARD_SYSCTL, "1").map_err(sysctl_err)?;
    }
    Ok(())
}

/// A random unicast, locally administered MAC address.
fn random_local_mac() -> [u8; 6] {
    let mut mac: [u8; 6] = rand::random();
    mac[0] = (mac[0] & 0xfe) | 0x02;
    mac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_veth_name_is_short_stable_and_distinct() {
        let a = host_veth_name("3f2a1b9c-0000-4000-8000-000000000001");
        let b = host_veth_name("3f2a1b9c-0000-4000-8000-000000000002");
        assert_eq!(a, host_veth_name("3f2a1b9c-0000-4000-8000-000000000001"));
        assert_ne!(a, b);
        assert_eq!(a.len(), 12);
        assert!(a.len() <= 15, "linux interface names are at most 15 bytes");
        assert!(a.starts_with("veth"));
    }

    #[test]
    fn random_mac_is_unicast_and_locally_administered() {
        for _ in 0..32 {
            let mac = random_local_mac();
            assert_eq!(mac[0] & 0x01, 0, "unicast");
            assert_eq!(mac[0] & 0x02, 0x02, "locally administered");
        }
    }
}
