//! A dummy interface holding node-local service addresses (the cluster DNS address), so
//! servers on the node can bind them and pods reach them through the bridge gateway.
//! Kernels without dummy links (no `dummy` module) get the address on `lo` instead:
//! any local address is delivered the same way.

use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;

use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkDummy};
use tracing::debug;

use super::nl::{self, errno, step};
use super::{check_interface_name, netns, Error, Result};

const LOOPBACK: &str = "lo";

/// Makes sure dummy link `name` exists (in `netns`, the agent's own when `None`), is up
/// and holds `ip/32` as its only IPv4 address; where the kernel has no dummy links,
/// adds `ip/32` to `lo` (next to its other addresses). Idempotent. A link called `name`
/// that is not a dummy is left alone and reported. Returns the link holding `ip`.
pub async fn ensure_local_address(
    netns: Option<PathBuf>,
    name: &str,
    ip: Ipv4Addr,
) -> Result<String> {
    check_interface_name(name)?;
    let name = name.to_string();
    netns::run(netns, move |handle| async move {
        if let Some(index) = ensure_dummy(&handle, &name).await? {
            nl::ensure_only_address(&handle, index, ip, 32, &name).await?;
            return Ok(name);
        }
        let lo = nl::link_by_name(&handle, LOOPBACK)
            .await?
            .ok_or_else(|| Error::LinkNotFound {
                name: LOOPBACK.into(),
            })?;
        match handle
            .address()
            .add(lo.header.index, IpAddr::V4(ip), 32)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
            Err(e) => return Err(step(format!("add address {ip}/32 to {LOOPBACK}"))(e)),
        }
        Ok(LOOPBACK.to_string())
    })
    .await
}

/// The index of dummy link `name` (created when missing); `None` when the kernel
/// cannot make dummy links.
async fn ensure_dummy(handle: &Handle, name: &str) -> Result<Option<u32>> {
    if let Some(link) = nl::link_by_name(handle, name).await? {
        if !is_dummy(&link) {
            return Err(Error::NotADummy { name: name.into() });
        }
        nl::set_up(handle, link.header.index, name).await?;
        return Ok(Some(link.header.index));
    }
    debug!(link = name, "creating dummy link");
    match handle
        .link()
        .add(LinkDummy::new(name).up().build())
        .execute()
        .await
    {
        Ok(()) => {}
        Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
        Err(e) if errno(&e) == Some(Errno::EOPNOTSUPP) => {
            debug!(link = name, "the kernel has no dummy links");
            return Ok(None);
        }
        Err(e) => return Err(step(format!("create dummy link {name}"))(e)),
    }
    let link = nl::link_by_name(handle, name)
        .await?
        .ok_or_else(|| Error::LinkNotFound { name: name.into() })?;
    Ok(Some(link.header.index))
}

fn is_dummy(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Dummy))),
        _ => false,
    })
}
