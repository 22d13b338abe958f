//! Small netlink helpers shared by the bridge, pod and route code.

use std::net::{IpAddr, Ipv4Addr};

use futures::TryStreamExt;
use nix::errno::Errno;
use rtnetlink::packet_route::address::AddressAttribute;
use rtnetlink::packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::packet_route::route::{RouteAttribute, RouteHeader, RouteMessage};
use rtnetlink::{Handle, LinkUnspec, RouteMessageBuilder};

use super::{Error, Result};

/// The errno a netlink request failed with, if the kernel sent one.
pub(crate) fn errno(e: &rtnetlink::Error) -> Option<Errno> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| Errno::from_raw(-c.get())),
        _ => None,
    }
}

/// Maps a netlink error to [`Error::Netlink`] naming the step that failed.
pub(crate) fn step(step: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> Error {
    let step = step.into();
    move |source| Error::Netlink { step, source }
}

pub(crate) async fn link_by_name(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut links = handle.link().get().match_name(name).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(e) => Err(step(format!("look up link {name}"))(e)),
    }
}

pub(crate) async fn link_by_index(handle: &Handle, index: u32) -> Result<Option<LinkMessage>> {
    let mut links = handle.link().get().match_index(index).execute();
    match links.try_next().await {
        Ok(link) => Ok(link),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(None),
        Err(e) => Err(step(format!("look up link #{index}"))(e)),
    }
}

pub(crate) fn link_mtu(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::Mtu(mtu) => Some(*mtu),
        _ => None,
    })
}

/// Deletes the link called `name`; a missing link is not an error.
pub(crate) async fn delete_link(handle: &Handle, name: &str) -> Result<bool> {
    let Some(link) = link_by_name(handle, name).await? else {
        return Ok(false);
    };
    match handle.link().del(link.header.index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if errno(&e) == Some(Errno::ENODEV) => Ok(false),
        Err(e) => Err(step(format!("delete link {name}"))(e)),
    }
}

pub(crate) async fn set_up(handle: &Handle, index: u32, what: &str) -> Result<()> {
    handle
        .link()
        .set(LinkUnspec::new_with_index(index).up().build())
        .execute()
        .await
        .map_err(step(format!("bring up {what}")))
}

/// Makes `ip/prefix_len` the only IPv4 address of link `index`.
pub(crate) async fn ensure_only_address(
    handle: &Handle,
    index: u32,
    ip: Ipv4Addr,
    prefix_len: u8,
    what: &str,
) -> Result<()> {
    let addresses: Vec<_> = handle
        .address()
        .get()
        .set_link_index_filter(index)
        .execute()
        .try_collect()
        .await
        .map_err(step(format!("list addresses of {what}")))?;
    let mut present = false;
    for msg in addresses {
        let v4 = msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(IpAddr::V4(v4)) | AddressAttribute::Address(IpAddr::V4(v4)) => {
                Some(*v4)
            }
            _ => None,
        });
        let Some(v4) = v4 else { continue };
        if v4 == ip && msg.header.prefix_len == prefix_len {
            present = true;
            continue;
        }
        handle
            .address()
            .del(msg)
            .execute()
            .await
            .map_err(step(format!("remove stale address {v4} from {what}")))?;
    }
    if !present {
        match handle
            .address()
            .add(index, IpAddr::V4(ip), prefix_len)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if errno(&e) == Some(Errno::EEXIST) => {}
            Err(e) => return Err(step(format!("add address {ip}/{prefix_len} to {what}"))(e)),
        }
    }
    Ok(())
}

/// Every IPv4 route of the main routing table.
pub(crate) async fn main_table_routes(handle: &Handle) -> Result<Vec<RouteMessage>> {
    let routes: Vec<RouteMessage> = handle
        .route()
        .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
        .execute()
        .try_collect()
        .await
        .map_err(step("list routes"))?;
    Ok(routes
        .into_iter()
        .filter(|r| route_table(r) == u32::from(RouteHeader::RT_TABLE_MAIN))
        .collect())
}

pub(crate) fn route_table(route: &RouteMessage) -> u32 {
    route
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(route.header.table))
}
