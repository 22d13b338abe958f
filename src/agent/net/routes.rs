//! host-gw routes: other nodes' podCIDRs via their node IPs, in the main table. orc's
//! routes carry their own routing protocol number, so a sync only ever removes routes
//! orc created.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use ipnet::Ipv4Net;
use nix::errno::Errno;
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteMessage, RouteProtocol};
use rtnetlink::{Handle, RouteMessageBuilder};
use tracing::{info, warn};

use super::nl::{self, errno, step};
use super::{netns, Result};

/// Routing protocol number marking orc's routes (`ip route show proto 79`). Unassigned in
/// iproute2's rt_protos.
pub const ROUTE_PROTOCOL: u8 = 79;

/// What a [`Routes::sync`] changed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RouteSync {
    pub added: Vec<(Ipv4Net, Ipv4Addr)>,
    pub removed: Vec<(Ipv4Net, Ipv4Addr)>,
    /// Desired destinations already routed by someone else; left alone.
    pub conflicts: Vec<Ipv4Net>,
}

/// orc's routes in the node's network namespace.
#[derive(Debug, Clone)]
pub struct Routes {
    host_netns: Option<PathBuf>,
    protocol: u8,
}

impl Routes {
    /// `host_netns`: the node's network namespace, `None` for the agent's own.
    pub fn new(host_netns: Option<PathBuf>, protocol: u8) -> Self {
        Routes {
            host_netns,
            protocol,
        }
    }

    /// Routes orc owns now, as `(destination, gateway)`.
    pub async fn list(&self) -> Result<Vec<(Ipv4Net, Ipv4Addr)>> {
        let protocol = self.protocol;
        netns::run(self.host_netns.clone(), move |handle| async move {
            Ok(owned_routes(&handle, protocol)
                .await?
                .into_iter()
                .map(|(route, _)| route)
                .collect())
        })
        .await
    }

    /// Makes orc's routes exactly `desired`: adds the missing ones, removes the ones no
    /// longer wanted (or whose gateway changed). Routes with another protocol number are
    /// never touched; a desired destination someone else already routes is reported in
    /// [`RouteSync::conflicts`] and skipped.
    pub async fn sync(&self, desired: &[(Ipv4Net, Ipv4Addr)]) -> Result<RouteSync> {
        let desired: BTreeSet<(Ipv4Net, Ipv4Addr)> =
            desired.iter().map(|(net, gw)| (net.trunc(), *gw)).collect();
        let protocol = self.protocol;
        netns::run(self.host_netns.clone(), move |handle| async move {
            let mut sync = RouteSync::default();
            for (route, msg) in owned_routes(&handle, protocol).await? {
                if desired.contains(&route) {
                    continue;
                }
                match handle.route().del(msg).execute().await {
                    Ok(()) => {}
                    Err(e) if errno(&e) == Some(Errno::ESRCH) => {}
                    Err(e) => {
                        return Err(step(format!("remove route {} via {}", route.0, route.1))(e))
                    }
                }
                info!(destination = %route.0, gateway = %route.1, "removed pod route");
                sync.removed.push(route);
            }
            let present: BTreeSet<_> = owned_routes(&handle, protocol)
                .await?
                .into_iter()
                .map(|(route, _)| route)
                .collect();
            for &(net, gateway) in desired.difference(&present) {
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(net.network(), net.prefix_len())
                    .gateway(gateway)
                    .protocol(RouteProtocol::from(protocol))
                    .build();
                match handle.route().add(route).execute().await {
                    Ok(()) => {
                        info!(destination = %net, %gateway, "added pod route");
                        sync.added.push((net, gateway));
                    }
                    Err(e) if errno(&e) == Some(Errno::EEXIST) => {
                        warn!(destination = %net, "a route not made by orc already covers this pod CIDR; leaving it");
                        sync.conflicts.push(net);
                    }
                    Err(e) => return Err(step(format!("add route {net} via {gateway}"))(e)),
                }
            }
            Ok(sync)
        })
        .await
    }
}

/// orc's IPv4 routes of the main table, with the messages needed to delete them.
async fn owned_routes(
    handle: &Handle,
    protocol: u8,
) -> Result<Vec<((Ipv4Net, Ipv4Addr), RouteMessage)>> {
    let routes = nl::main_table_routes(handle).await?;
    Ok(routes
        .into_iter()
        .filter(|r| u8::from(r.header.protocol) == protocol)
        .filter_map(|r| {
            let destination = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })?;
            let gateway = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            })?;
            let net = Ipv4Net::new(destination, r.header.destination_prefix_length).ok()?;
            Some(((net, gateway), r))
        })
        .collect())
}
