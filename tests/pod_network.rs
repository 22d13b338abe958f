//! Pod network against the real kernel: bridge, veth pairs, IPAM, routes and nftables.
//!
//! Needs root. Every test builds its own "node" network namespace and does all its work
//! inside it (bridge, masquerade table, routes, sysctls), with per-test random names and a
//! random 10.244.x.0/24, so the host's own network is never touched. Traffic only goes
//! to addresses inside namespaces the test created. Drop guards clean up on failure.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use ipnet::Ipv4Net;
use nix::mount::{umount2, MntFlags};
use orc::agent::net::{
    self, create_netns, delete_netns, is_netns, netns, spawn_in_netns, LinuxNetwork,
    NetworkBackend, NetworkConfig, PodInterface, Routes, ROUTE_PROTOCOL,
};
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::packet_route::route::{RouteAddress, RouteAttribute, RouteProtocol};
use rtnetlink::{Handle, LinkUnspec, LinkVeth, RouteMessageBuilder};

mod support;
use support::host::on_netns_thread;

const CLUSTER_CIDR: &str = "10.244.0.0/16";
/// TEST-NET-1: the node's "uplink" inside the test's node namespace only.
const UPLINK_NET: &str = "192.0.2.0/24";
const UPLINK_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const OUTSIDE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 2);
const IO_TIMEOUT: Duration = Duration::from_secs(5);

fn require_root() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    assert_eq!(
        euid, "0",
        "tests/pod_network.rs needs root (network namespaces, bridges, nftables): run as root"
    );
}

fn require_nft() {
    let found = Command::new("nft").arg("--version").output().is_ok();
    assert!(
        found,
        "tests/pod_network.rs needs the nft binary: apt-get install nftables"
    );
}

/// A test's own node namespace, pod namespaces and directories; all removed on drop.
struct Fixture {
    dir: PathBuf,
    node_ns: PathBuf,
    config: NetworkConfig,
    pod_namespaces: Vec<PathBuf>,
}

impl Fixture {
    fn new() -> Fixture {
        require_root();
        let tag: u32 = rand::random::<u32>() & 0xff_ffff;
        let dir = PathBuf::from(format!("/run/orc-test-net-{tag:06x}"));
        let node_ns = dir.join("netns").join("node");
        let mut fixture = Fixture {
            dir: dir.clone(),
            node_ns: node_ns.clone(),
            config: NetworkConfig::new(
                &dir,
                format!("10.244.{}.0/24", rand::random::<u8>() % 200)
                    .parse()
                    .unwrap(),
                CLUSTER_CIDR.parse().unwrap(),
            ),
            pod_namespaces: Vec::new(),
        };
        fixture.config.bridge = format!("orct{tag:06x}");
        fixture.config.nft_table = format!("orct-nat-{tag:06x}");
        fixture.config.host_netns = Some(node_ns.clone());
        create_netns(&node_ns).expect("create the node namespace");
        fixture
    }

    fn pod_netns(&mut self, name: &str) -> PathBuf {
        let path = self.dir.join("netns").join(name);
        self.pod_namespaces.push(path.clone());
        path
    }

    /// A namespace linked to the node by [`add_uplink`].
    async fn outside(&mut self) -> PathBuf {
        let outside = self.pod_netns("outside");
        create_netns(&outside).expect("create the outside namespace");
        add_uplink(self.node(), outside.clone()).await;
        outside
    }

    fn node(&self) -> Option<PathBuf> {
        Some(self.node_ns.clone())
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Removing the namespaces removes everything in them: veths, the bridge, the
        // nftables table, routes.
        for ns in self.pod_namespaces.iter().chain([&self.node_ns]) {
            if let Err(e) = delete_netns(ns) {
                eprintln!("cleanup: {e}");
            }
        }
        let netns_dir = self.dir.join("netns");
        let _ = umount2(&netns_dir, MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs netlink work in `ns`, panicking on error.
async fn in_ns<F, Fut, T>(ns: Option<PathBuf>, f: F) -> T
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = net::Result<T>>,
    T: Send + 'static,
{
    netns::run(ns, f)
        .await
        .expect("netlink work in test namespace")
}

async fn link_exists(ns: Option<PathBuf>, name: &str) -> bool {
    let name = name.to_string();
    in_ns(ns, move |h| async move {
        let found = h.link().get().match_name(name).execute().try_next().await;
        Ok(found.ok().flatten().is_some())
    })
    .await
}

/// Links the node namespace to an "outside" namespace standing for the rest of the world:
/// a veth pair with `UPLINK_IP` on the node end and `OUTSIDE_IP` on the other. The
/// outside has no route to any pod CIDR, so pods reach it only through masquerade.
async fn add_uplink(node: Option<PathBuf>, outside: PathBuf) {
    let prefix = UPLINK_NET.parse::<Ipv4Net>().unwrap().prefix_len();
    let outside_ns = outside.clone();
    in_ns(node, move |h| async move {
        let outside_file = std::fs::File::open(&outside_ns).expect("open outside namespace");
        let peer = LinkUnspec::new_with_name("orctup1")
            .setns_by_fd(outside_file.as_raw_fd())
            .build();
        let veth = LinkVeth::new("orctup0", "orctup1")
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
            .up()
            .build();
        h.link()
            .add(veth)
            .execute()
            .await
            .expect("create uplink veth");
        let index = link_index(&h, "orctup0").await;
        h.address()
            .add(index, UPLINK_IP.into(), prefix)
            .execute()
            .await
            .expect("address on uplink");
        Ok(())
    })
    .await;
    in_ns(Some(outside), move |h| async move {
        for name in ["lo", "orctup1"] {
            let index = link_index(&h, name).await;
            h.link()
                .set(LinkUnspec::new_with_index(index).up().build())
                .execute()
                .await
                .expect("link up");
        }
        let index = link_index(&h, "orctup1").await;
        h.address()
            .add(index, OUTSIDE_IP.into(), prefix)
            .execute()
            .await
            .expect("address outside");
        Ok(())
    })
    .await
}

async fn link_index(h: &Handle, name: &str) -> u32 {
    h.link()
        .get()
        .match_name(name)
        .execute()
        .try_next()
        .await
        .expect("look up link")
        .unwrap_or_else(|| panic!("link {name} exists"))
        .header
        .index
}

/// `(destination, gateway, protocol)` of every IPv4 route with a gateway in the main table.
async fn gateway_routes(ns: Option<PathBuf>) -> Vec<(Ipv4Net, Ipv4Addr, u8)> {
    in_ns(ns, |h| async move {
        let routes: Vec<_> = h
            .route()
            .get(RouteMessageBuilder::<Ipv4Addr>::new().build())
            .execute()
            .try_collect()
            .await
            .expect("dump routes");
        let mut out = Vec::new();
        for r in routes {
            let dst = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Destination(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            let gw = r.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(RouteAddress::Inet(ip)) => Some(*ip),
                _ => None,
            });
            if let (Some(dst), Some(gw)) = (dst, gw) {
                let net = Ipv4Net::new(dst, r.header.destination_prefix_length).unwrap();
                out.push((net, gw, u8::from(r.header.protocol)));
            }
        }
        out.sort();
        Ok(out)
    })
    .await
}

/// Serves one "ping" → "pong" exchange on `addr` from inside `ns`; returns once
/// listening. The thread yields the client's address as seen by the server.
fn serve_once_in(ns: &Path, addr: SocketAddr) -> std::thread::JoinHandle<net::Result<SocketAddr>> {
    let (ready_tx, ready_rx) = mpsc::channel();
    let server = spawn_in_netns(Some(ns.to_path_buf()), move || {
        let listener = TcpListener::bind(addr).expect("bind inside the pod namespace");
        listener.set_nonblocking(true).unwrap();
        ready_tx.send(()).unwrap();
        let deadline = Instant::now() + IO_TIMEOUT;
        let (mut conn, peer) = loop {
            match listener.accept() {
                Ok(conn) => break conn,
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    assert!(Instant::now() < deadline, "nobody connected to {addr}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("accept on {addr}: {e}"),
            }
        };
        conn.set_nonblocking(false).unwrap();
        conn.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut buf = [0u8; 4];
        conn.read_exact(&mut buf).expect("read ping");
        assert_eq!(&buf, b"ping");
        conn.write_all(b"pong").expect("write pong");
        Ok(peer)
    })
    .expect("start listener thread");
    ready_rx
        .recv_timeout(IO_TIMEOUT)
        .expect("listener did not start");
    server
}

/// Connects to `addr` from inside `ns` (the calling process's namespace when `None`) and
/// does the ping/pong exchange.
fn ping_from(ns: Option<&Path>, addr: SocketAddr) -> Result<(), String> {
    ping_within(ns, addr, IO_TIMEOUT)
}

fn ping_within(ns: Option<&Path>, addr: SocketAddr, timeout: Duration) -> Result<(), String> {
    spawn_in_netns(ns.map(Path::to_path_buf), move || {
        Ok((|| -> std::io::Result<()> {
            let mut conn = TcpStream::connect_timeout(&addr, timeout)?;
            conn.set_read_timeout(Some(IO_TIMEOUT))?;
            conn.write_all(b"ping")?;
            let mut buf = [0u8; 4];
            conn.read_exact(&mut buf)?;
            assert_eq!(&buf, b"pong");
            Ok(())
        })())
    })
    .expect("start client thread")
    .join()
    .expect("client thread panicked")
    .expect("enter client namespace")
    .map_err(|e| format!("connect to {addr}: {e}"))
}

fn nft_in(ns: &Path, args: &[&str]) -> std::process::Output {
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    on_netns_thread(ns, move || {
        Command::new("nft").args(&args).output().expect("run nft")
    })
}

fn read_sysctl_in(ns: &Path, path: &'static str) -> String {
    on_netns_thread(ns, move || {
        std::fs::read_to_string(path).unwrap().trim().to_string()
    })
}

#[tokio::test]
async fn two_pods_on_one_bridge_talk_by_ip_and_teardown_removes_the_veth() {
    require_nft();
    let mut fx = Fixture::new();
    let outside = fx.outside().await;
    let ns_a = fx.pod_netns("pod-a");
    let ns_b = fx.pod_netns("pod-b");

    let network = LinuxNetwork::new(fx.config.clone()).unwrap();
    network.ensure_node().await.unwrap();
    network
        .ensure_node()
        .await
        .expect("ensure_node is idempotent");
    assert!(link_exists(fx.node(), &fx.config.bridge).await);
    assert_eq!(
        read_sysctl_in(&fx.node_ns, "/proc/sys/net/ipv4/ip_forward"),
        "1"
    );

    network.create_netns(&ns_a).await.unwrap();
    network.create_netns(&ns_b).await.unwrap();
    network
        .create_netns(&ns_b)
        .await
        .expect("create_netns is idempotent");
    let pod_a = PodInterface::new("uid-a", &ns_a);
    let pod_b = PodInterface::new("uid-b", &ns_b);
    let ip_a = network.attach_pod(&pod_a).await.unwrap();
    let ip_b = network.attach_pod(&pod_b).await.unwrap();
    assert_ne!(ip_a, ip_b);
    assert!(fx.config.pod_cidr.contains(&ip_a) && fx.config.pod_cidr.contains(&ip_b));
    assert!(link_exists(fx.node(), &pod_a.host_veth()).await);
    assert!(link_exists(Some(ns_a.clone()), "eth0").await);

    // Pod to pod, across the bridge.
    let server = serve_once_in(&ns_a, SocketAddr::from((ip_a, 8080)));
    ping_from(Some(&ns_b), SocketAddr::from((ip_a, 8080))).expect("pod b reaches pod a");
    server.join().unwrap().unwrap();

    // Node to pod, from the bridge's gateway address.
    let server = serve_once_in(&ns_b, SocketAddr::from((ip_b, 8081)));
    ping_from(Some(&fx.node_ns), SocketAddr::from((ip_b, 8081))).expect("node reaches pod b");
    server.join().unwrap().unwrap();

    // Pod to the node's other address: through the default route via the gateway.
    let server = serve_once_in(&fx.node_ns, SocketAddr::from((UPLINK_IP, 8082)));
    ping_from(Some(&ns_a), SocketAddr::from((UPLINK_IP, 8082)))
        .expect("pod a reaches the node's uplink address via its default route");
    assert_eq!(server.join().unwrap().unwrap().ip(), ip_a);

    // Pod to outside the cluster: forwarded by the node and masqueraded to its address
    // (the outside has no route back to the pod CIDR).
    let server = serve_once_in(&outside, SocketAddr::from((OUTSIDE_IP, 8083)));
    ping_from(Some(&ns_a), SocketAddr::from((OUTSIDE_IP, 8083)))
        .expect("pod a reaches outside the cluster");
    assert_eq!(
        server.join().unwrap().unwrap().ip(),
        UPLINK_IP,
        "traffic leaving the cluster is masqueraded"
    );

    // Teardown removes both ends of the veth and releases the address.
    network.detach_pod(&pod_a).await.unwrap();
    network
        .detach_pod(&pod_a)
        .await
        .expect("detach_pod is idempotent");
    assert!(!link_exists(fx.node(), &pod_a.host_veth()).await);
    assert!(!link_exists(Some(ns_a.clone()), "eth0").await);
    assert_eq!(network.pod_ip("uid-a"), None);
    assert!(
        ping_within(
            Some(&ns_b),
            SocketAddr::from((ip_a, 8080)),
            Duration::from_millis(500)
        )
        .is_err(),
        "pod a is gone from the network"
    );

    // A detached pod whose namespace is already gone still loses its host veth.
    network.delete_netns(&ns_b).await.unwrap();
    network.detach_pod(&pod_b).await.unwrap();
    assert!(!link_exists(fx.node(), &pod_b.host_veth()).await);
}

#[tokio::test]
async fn attach_again_after_restart_keeps_the_address_and_replaces_a_leftover_veth() {
    let mut fx = Fixture::new();
    let ns_a = fx.pod_netns("pod-a");
    create_netns(&ns_a).unwrap();
    let pod = PodInterface::new("uid-a", &ns_a);
    let ip = {
        let network = LinuxNetwork::new(fx.config.clone()).unwrap();
        network.ensure_node().await.unwrap();
        network.attach_pod(&pod).await.unwrap()
    };
    // The agent restarts: IPAM is re-read from disk.
    let network = LinuxNetwork::new(fx.config.clone()).unwrap();
    assert_eq!(network.pod_ip("uid-a"), Some(ip));
    // The pod namespace is recreated (sandbox restart) while the host veth is still
    // around: attach replaces it and hands out the same address.
    delete_netns(&ns_a).unwrap();
    create_netns(&ns_a).unwrap();
    assert_eq!(network.attach_pod(&pod).await.unwrap(), ip);
    assert!(link_exists(Some(ns_a.clone()), "eth0").await);
    let other = PodInterface::new("uid-b", fx.pod_netns("pod-b"));
    create_netns(&other.netns).unwrap();
    assert_ne!(network.attach_pod(&other).await.unwrap(), ip);
}

#[tokio::test]
async fn masquerade_lives_in_its_own_table_and_uninstall_removes_it_with_the_bridge() {
    require_nft();
    let fx = Fixture::new();
    let network = LinuxNetwork::new(fx.config.clone()).unwrap();
    network.ensure_node().await.unwrap();
    network.ensure_node().await.unwrap();

    let table = fx.config.nft_table.as_str();
    let listed = nft_in(&fx.node_ns, &["-j", "list", "table", "ip", table]);
    assert!(listed.status.success(), "{listed:?}");
    let json: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let rules: Vec<_> = json["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .collect();
    assert_eq!(
        rules.len(),
        1,
        "one masquerade rule after two ensures: {json}"
    );
    let rule = rules[0].to_string();
    assert!(rule.contains("masquerade"), "{rule}");
    assert!(
        rule.contains(&fx.config.pod_cidr.network().to_string()),
        "{rule}"
    );

    network.uninstall().await.unwrap();
    assert!(!link_exists(fx.node(), &fx.config.bridge).await);
    let listed = nft_in(&fx.node_ns, &["list", "table", "ip", table]);
    assert!(
        !listed.status.success(),
        "table still there after uninstall"
    );
    network.uninstall().await.expect("uninstall is idempotent");
}

#[tokio::test]
async fn sync_routes_adds_and_removes_only_its_own_routes() {
    let mut fx = Fixture::new();
    fx.outside().await;
    let net = |s: &str| -> Ipv4Net { s.parse().unwrap() };
    let ip = |s: &str| -> Ipv4Addr { s.parse().unwrap() };

    // A route orc did not make.
    in_ns(fx.node(), |h| async move {
        let route = RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(Ipv4Addr::new(10, 244, 200, 0), 24)
            .gateway(Ipv4Addr::new(192, 0, 2, 9))
            .protocol(RouteProtocol::Static)
            .build();
        h.route().add(route).execute().await.expect("foreign route");
        Ok(())
    })
    .await;
    let foreign = (net("10.244.200.0/24"), ip("192.0.2.9"), 4u8);

    let routes = Routes::new(fx.node(), ROUTE_PROTOCOL);
    let desired = [
        (net("10.244.201.0/24"), ip("192.0.2.2")),
        (net("10.244.202.0/24"), ip("192.0.2.3")),
    ];
    let sync = routes.sync(&desired).await.unwrap();
    assert_eq!(sync.added.len(), 2);
    assert_eq!(
        gateway_routes(fx.node()).await,
        vec![
            foreign,
            (net("10.244.201.0/24"), ip("192.0.2.2"), ROUTE_PROTOCOL),
            (net("10.244.202.0/24"), ip("192.0.2.3"), ROUTE_PROTOCOL),
        ]
    );

    let again = routes.sync(&desired).await.unwrap();
    assert!(
        again.added.is_empty() && again.removed.is_empty(),
        "{again:?}"
    );

    // A node went away and another moved.
    let sync = routes
        .sync(&[(net("10.244.201.0/24"), ip("192.0.2.4"))])
        .await
        .unwrap();
    assert_eq!(sync.removed.len(), 2, "{sync:?}");
    assert_eq!(sync.added, vec![(net("10.244.201.0/24"), ip("192.0.2.4"))]);

    // A destination someone else routes is left alone.
    let sync = routes
        .sync(&[(net("10.244.200.0/24"), ip("192.0.2.5"))])
        .await
        .unwrap();
    assert_eq!(sync.conflicts, vec![net("10.244.200.0/24")]);
    assert_eq!(gateway_routes(fx.node()).await, vec![foreign]);

    routes.sync(&[]).await.unwrap();
    assert!(routes.list().await.unwrap().is_empty());
    assert_eq!(gateway_routes(fx.node()).await, vec![foreign]);
}

#[test]
fn netns_create_and_delete_are_idempotent() {
    let mut fx = Fixture::new();
    let ns = fx.pod_netns("pod-x");
    assert!(!is_netns(&ns));
    create_netns(&ns).unwrap();
    assert!(is_netns(&ns));
    create_netns(&ns).unwrap();
    delete_netns(&ns).unwrap();
    assert!(!is_netns(&ns) && !ns.exists());
    delete_netns(&ns).unwrap();
}
