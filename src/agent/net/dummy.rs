//! A dummy interface holding node-local service addresses (the cluster DNS address), so
//! servers on the node can bind them and pods reach them through the bridge gateway.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use nix::errno::Errno;
use rtnetlink::packet_route::link::{InfoKind, LinkAttribute, LinkInfo, LinkMessage};
use rtnetlink::{Handle, LinkDummy};
use tracing::debug;

use super::nl::{self, errno, step};
use super::{check_interface_name, netns, Error, Result};

/// Makes sure dummy link `name` exists (in `netns`, the agent's own when `None`), is up
/// and holds `ip/32` as its only IPv4 address. Idempotent. A link of that name that is
/// not a dummy is left alone and reported.
pub async fn ensure_local_address(netns: Option<PathBuf>, name: &str, ip: Ipv4Addr) -> Result<()> {
    check_interface_name(name)?;
    let name = name.to_string();
    netns::run(netns, move |handle| async move {
        let index = ensure_dummy(&handle, &name).await?;
        nl::ensure_only_address(&handle, index, ip, 32, &name).await
    })
    .await
}

async fn ensure_dummy(handle: &Handle, name: &str) -> Result<u32> {
    if let Some(link) = nl::link_by_name(handle, name).await? {
        if !is_dummy(&link) {
            return Err(Error::NotADummy { name: name.into() });
        }
        nl::set_up(handle, link.header.index, name).await?;
        return Ok(link.header.index);
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
        Err(e) => return Err(step(format!("create dummy link {name}"))(e)),
    }
    let link = nl::link_by_name(handle, name)
        .await?
        .ok_or_else(|| Error::LinkNotFound { name: name.into() })?;
    Ok(link.header.index)
}

fn is_dummy(link: &LinkMessage) -> bool {
    link.attributes.iter().any(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos
            .iter()
            .any(|i| matches!(i, LinkInfo::Kind(InfoKind::Dummy))),
        _ => false,
    })
}
