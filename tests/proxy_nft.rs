//! Service proxy against the real kernel: orc's nftables table, real TCP connects.
//!
//! Needs root and the nft binary. Every test builds its own network namespace and does
//! all its work inside it (a veth pair holding the endpoint addresses, a route for
//! the service CIDR, the proxy table), so the host's own tables and routes are never
//! touched. Traffic only goes to addresses inside that namespace.

use std::io::{ErrorKind, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use nix::mount::{umount2, MntFlags};
use orc::agent::net::{create_netns, delete_netns};

mod support;
use orc::agent::proxy::{NftCli, Proxier};
use serde_json::{json, Value};
use support::host::on_netns_thread;

/// The namespace's "node" address, and the endpoint addresses served in it.
const NODE_IP: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);
const ENDPOINT_IPS: [Ipv4Addr; 3] = [
    Ipv4Addr::new(192, 0, 2, 11),
    Ipv4Addr::new(192, 0, 2, 12),
    Ipv4Addr::new(192, 0, 2, 13),
];
const ENDPOINT_PORT: u16 = 8080;
const UDP_ENDPOINT_PORT: u16 = 5353;
/// The pod network behind the node's bridge (hairpin test).
const POD_GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 1);
const POD_IP: Ipv4Addr = Ipv4Addr::new(10, 244, 0, 2);
/// A client outside the node, on a link of its own (traffic policy test).
const CLIENT_GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(198, 51, 100, 2);
const CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 10);
const EMPTY_CLUSTER_IP: Ipv4Addr = Ipv4Addr::new(10, 43, 0, 11);
const SERVICE_PORT: u16 = 80;
const NODE_PORT: u16 = 30080;
const IO_TIMEOUT: Duration = Duration::from_secs(3);
const TABLE: &str = "orc-proxy-test";

fn require_root_and_nft() {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .expect("Uid line in /proc/self/status");
    assert_eq!(
        euid, "0",
        "tests/proxy_nft.rs needs root (network namespaces, nftables): run as root"
    );
    let found = Command::new("nft").arg("--version").output().is_ok();
    assert!(
        found,
        "tests/proxy_nft.rs needs the nft binary: apt-get install nftables"
    );
}

/// A test's own namespace with endpoint listeners; removed on drop.
struct Fixture {
    dir: PathBuf,
    ns: PathBuf,
    pods: Vec<PathBuf>,
}

impl Fixture {
    fn new() -> Fixture {
        require_root_and_nft();
        let tag: u32 = rand::random::<u32>() & 0xff_ffff;
        let dir = PathBuf::from(format!("/run/orc-test-proxy-{tag:06x}"));
        let ns = dir.join("netns").join("node");
        create_netns(&ns).expect("create the test namespace");
        let fixture = Fixture {
            dir,
            ns,
            pods: Vec::new(),
        };
        fixture.sh(&["ip", "link", "set", "lo", "up"]);
        // A veth pair whose both ends stay in the namespace: an "uplink" to nowhere.
        fixture.sh(&[
            "ip", "link", "add", "uplink0", "type", "veth", "peer", "name", "uplink1",
        ]);
        fixture.sh(&["ip", "link", "set", "uplink0", "up"]);
        fixture.sh(&["ip", "link", "set", "uplink1", "up"]);
        fixture.sh(&[
            "ip",
            "addr",
            "add",
            &format!("{NODE_IP}/24"),
            "dev",
            "uplink0",
        ]);
        for ip in ENDPOINT_IPS {
            fixture.sh(&["ip", "addr", "add", &format!("{ip}/32"), "dev", "uplink0"]);
        }
        // ClusterIPs are not local addresses: they only need a route.
        fixture.sh(&["ip", "route", "add", "10.43.0.0/16", "dev", "uplink0"]);
        for ip in ENDPOINT_IPS {
            fixture.serve(ip);
        }
        fixture
    }

    /// Runs a command inside the test namespace, panicking on failure.
    fn sh(&self, args: &[&str]) -> String {
        let output = Command::new("nsenter")
            .arg(format!("--net={}", self.ns.display()))
            .args(args)
            .output()
            .expect("run nsenter");
        assert!(
            output.status.success(),
            "{args:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        String::from_utf8_lossy(&output.stdout).into_owned()
    }

    /// A listener on `ip:ENDPOINT_PORT` that answers every connection with `ip`.
    fn serve(&self, ip: Ipv4Addr) {
        let listener = on_netns_thread(&self.ns, move || {
            TcpListener::bind((ip, ENDPOINT_PORT)).expect("bind endpoint listener")
        });
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let _ = conn.write_all(ip.to_string().as_bytes());
            }
        });
    }

    /// A UDP socket on `ip:UDP_ENDPOINT_PORT` that answers every datagram with `ip`.
    fn serve_udp(&self, ip: Ipv4Addr) {
        let socket = on_netns_thread(&self.ns, move || {
            UdpSocket::bind((ip, UDP_ENDPOINT_PORT)).expect("bind UDP endpoint")
        });
        std::thread::spawn(move || {
            let mut buf = [0u8; 64];
            while let Ok((_, from)) = socket.recv_from(&mut buf) {
                let _ = socket.send_to(ip.to_string().as_bytes(), from);
            }
        });
    }

    /// Sends one datagram from inside the namespace and returns the answer.
    fn ask_udp(&self, ip: Ipv4Addr, port: u16) -> String {
        on_netns_thread(&self.ns, move || {
            let socket = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind client");
            socket.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
            socket.connect((ip, port)).expect("connect UDP client");
            socket.send(b"who").expect("send datagram");
            let mut buf = [0u8; 64];
            let n = socket
                .recv(&mut buf)
                .expect("UDP answer through the ClusterIP");
            String::from_utf8_lossy(&buf[..n]).into_owned()
        })
    }

    /// Connects from inside the namespace; `Ok(answer)` or the connect error kind.
    fn connect(&self, ip: Ipv4Addr, port: u16) -> Result<String, (ErrorKind, Duration)> {
        connect_from(&self.ns, ip, port)
    }

    /// A "pod" namespace behind a bridge in the node namespace, with `POD_IP` and a
    /// default route via the bridge, and a listener on `POD_IP:ENDPOINT_PORT` that
    /// answers with the source address it sees.
    fn add_pod(&mut self) -> PathBuf {
        let pod = self.dir.join("netns").join("pod");
        create_netns(&pod).expect("create the pod namespace");
        self.pods.push(pod.clone());
        self.sh(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        self.sh(&["ip", "link", "add", "br0", "type", "bridge"]);
        self.sh(&[
            "ip",
            "addr",
            "add",
            &format!("{POD_GATEWAY}/24"),
            "dev",
            "br0",
        ]);
        self.sh(&["ip", "link", "set", "br0", "up"]);
        self.sh(&[
            "ip", "link", "add", "vpod", "type", "veth", "peer", "name", "eth0",
        ]);
        self.sh(&["ip", "link", "set", "eth0", "netns", pod.to_str().unwrap()]);
        self.sh(&["ip", "link", "set", "vpod", "master", "br0", "up"]);
        // As orc's bridge does: a Service can lead a pod back to itself.
        self.sh(&[
            "ip",
            "link",
            "set",
            "vpod",
            "type",
            "bridge_slave",
            "hairpin",
            "on",
        ]);
        let in_pod = |args: &[&str]| {
            let status = Command::new("nsenter")
                .arg(format!("--net={}", pod.display()))
                .args(args)
                .status()
                .expect("run nsenter");
            assert!(status.success(), "{args:?} failed in the pod namespace");
        };
        in_pod(&["ip", "link", "set", "lo", "up"]);
        in_pod(&["ip", "link", "set", "eth0", "up"]);
        in_pod(&["ip", "addr", "add", &format!("{POD_IP}/24"), "dev", "eth0"]);
        in_pod(&[
            "ip",
            "route",
            "add",
            "default",
            "via",
            &POD_GATEWAY.to_string(),
        ]);
        let listener = on_netns_thread(&pod, move || {
            TcpListener::bind((POD_IP, ENDPOINT_PORT)).expect("bind pod listener")
        });
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { return };
                let peer = conn.peer_addr().map(|a| a.ip().to_string());
                let _ = conn.write_all(peer.unwrap_or_default().as_bytes());
            }
        });
        pod
    }

    /// A namespace outside the node, linked to it by a veth pair, with `CLIENT_IP` and a
    /// default route via the node.
    fn add_client(&mut self) -> PathBuf {
        let client = self.dir.join("netns").join("client");
        create_netns(&client).expect("create the client namespace");
        self.pods.push(client.clone());
        self.sh(&["sh", "-c", "echo 1 > /proc/sys/net/ipv4/ip_forward"]);
        self.sh(&[
            "ip", "link", "add", "vclient", "type", "veth", "peer", "name", "eth0",
        ]);
        self.sh(&[
            "ip",
            "link",
            "set",
            "eth0",
            "netns",
            client.to_str().unwrap(),
        ]);
        let gateway = format!("{CLIENT_GATEWAY}/24");
        self.sh(&["ip", "addr", "add", &gateway, "dev", "vclient"]);
        self.sh(&["ip", "link", "set", "vclient", "up"]);
        let address = format!("{CLIENT_IP}/24");
        let via = CLIENT_GATEWAY.to_string();
        for args in [
            vec!["ip", "link", "set", "lo", "up"],
            vec!["ip", "link", "set", "eth0", "up"],
            vec!["ip", "addr", "add", &address, "dev", "eth0"],
            vec!["ip", "route", "add", "default", "via", &via],
        ] {
            let status = Command::new("nsenter")
                .arg(format!("--net={}", client.display()))
                .args(&args)
                .status()
                .expect("run nsenter");
            assert!(status.success(), "{args:?} failed in the client namespace");
        }
        client
    }

    fn answers(&self, ip: Ipv4Addr, port: u16, tries: usize) -> std::collections::BTreeSet<String> {
        (0..tries)
            .map(|_| self.connect(ip, port).expect("service answers"))
            .collect()
    }

    fn proxier(&self) -> Proxier<NftCli> {
        Proxier::new(TABLE, NftCli::in_netns(&self.ns))
    }

    fn table_text(&self) -> String {
        self.sh(&["nft", "list", "table", "ip", TABLE])
    }
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Removing the namespace removes everything in it: addresses, routes, the table.
        for ns in self.pods.iter().chain([&self.ns]) {
            if let Err(e) = delete_netns(ns) {
                eprintln!("cleanup: {e}");
            }
        }
        let _ = umount2(&self.dir.join("netns"), MntFlags::MNT_DETACH);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Connects from inside `ns`; `Ok(answer)` or the connect error kind and how long it took.
fn connect_from(ns: &Path, ip: Ipv4Addr, port: u16) -> Result<String, (ErrorKind, Duration)> {
    let addr = SocketAddr::from((ip, port));
    on_netns_thread(ns, move || {
        let started = Instant::now();
        match TcpStream::connect_timeout(&addr, IO_TIMEOUT) {
            Ok(mut stream) => {
                stream.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
                let mut answer = String::new();
                stream.read_to_string(&mut answer).expect("read answer");
                Ok(answer)
            }
            Err(e) => Err((e.kind(), started.elapsed())),
        }
    })
}

fn service(name: &str, cluster_ip: Ipv4Addr, extra: Value) -> Service {
    let mut spec = json!({
        "clusterIP": cluster_ip.to_string(),
        "type": "NodePort",
        "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "web",
                   "nodePort": if name == "web" { NODE_PORT } else { NODE_PORT + 1 }}],
    });
    if let (Some(spec), Some(extra)) = (spec.as_object_mut(), extra.as_object()) {
        spec.extend(extra.clone());
    }
    serde_json::from_value(
        json!({"metadata": {"namespace": "default", "name": name}, "spec": spec}),
    )
    .unwrap()
}

fn endpoints(name: &str, ips: &[Ipv4Addr]) -> Endpoints {
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": name},
        "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": ENDPOINT_PORT}]}],
    }))
    .unwrap()
}

fn set(items: &[Ipv4Addr]) -> std::collections::BTreeSet<String> {
    items.iter().map(|ip| ip.to_string()).collect()
}

#[test]
fn cluster_ip_spreads_over_ready_endpoints_and_follows_changes() {
    let fixture = Fixture::new();
    let mut proxier = fixture.proxier();
    proxier.update_service(service("web", CLUSTER_IP, json!({})));
    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS[..2]));
    assert!(proxier.sync().expect("first (full) sync").full);

    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 40),
        set(&ENDPOINT_IPS[..2]),
        "connections to the ClusterIP spread over both endpoints"
    );
    assert_eq!(
        fixture.answers(NODE_IP, NODE_PORT, 40),
        set(&ENDPOINT_IPS[..2]),
        "the NodePort on the node's address reaches the endpoints"
    );

    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS));
    let stats = proxier.sync().expect("sync one more endpoint");
    assert!(!stats.full);
    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 60),
        set(&ENDPOINT_IPS)
    );

    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS[1..2]));
    proxier.sync().expect("sync removed endpoints");
    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 20),
        set(&ENDPOINT_IPS[1..2]),
        "removed endpoints get no new connections"
    );
}

#[test]
fn service_without_endpoints_is_refused_at_once() {
    let fixture = Fixture::new();
    let mut proxier = fixture.proxier();
    proxier.update_service(service("empty", EMPTY_CLUSTER_IP, json!({})));
    proxier.sync().expect("sync");
    for (ip, port) in [(EMPTY_CLUSTER_IP, SERVICE_PORT), (NODE_IP, NODE_PORT + 1)] {
        let (kind, took) = fixture
            .connect(ip, port)
            .expect_err("a service without endpoints must not answer");
        assert_eq!(kind, ErrorKind::ConnectionRefused, "{ip}:{port}");
        assert!(
            took < Duration::from_secs(1),
            "rejected, not dropped: {took:?}"
        );
    }
}

#[test]
fn client_ip_affinity_keeps_a_client_on_one_endpoint() {
    let fixture = Fixture::new();
    let mut proxier = fixture.proxier();
    let affinity = json!({"sessionAffinity": "ClientIP",
                          "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}});
    proxier.update_service(service("web", CLUSTER_IP, affinity));
    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS));
    proxier.sync().expect("sync");
    let chosen = fixture.answers(CLUSTER_IP, SERVICE_PORT, 20);
    assert_eq!(chosen.len(), 1, "one endpoint for one client: {chosen:?}");

    // Its endpoint goes away (and with it its affinity set): the client moves on, once.
    let chosen: Ipv4Addr = chosen.first().unwrap().parse().unwrap();
    let rest: Vec<Ipv4Addr> = ENDPOINT_IPS
        .into_iter()
        .filter(|ip| *ip != chosen)
        .collect();
    proxier.update_endpoints(endpoints("web", &rest));
    proxier.sync().expect("sync without the chosen endpoint");
    let now = fixture.answers(CLUSTER_IP, SERVICE_PORT, 20);
    assert_eq!(now.len(), 1, "{now:?}");
    assert!(!now.contains(&chosen.to_string()));
}

#[test]
fn udp_service_reaches_its_endpoints() {
    let fixture = Fixture::new();
    for ip in ENDPOINT_IPS {
        fixture.serve_udp(ip);
    }
    let mut proxier = fixture.proxier();
    let dns =
        json!({"type": "ClusterIP", "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]});
    proxier.update_service(service("dns", CLUSTER_IP, dns));
    let eps: Endpoints = serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "dns"},
        "subsets": [{"addresses": [{"ip": ENDPOINT_IPS[0].to_string()}],
                     "ports": [{"name": "dns", "port": UDP_ENDPOINT_PORT, "protocol": "UDP"}]}],
    }))
    .unwrap();
    proxier.update_endpoints(eps);
    proxier.sync().expect("sync");
    assert_eq!(fixture.ask_udp(CLUSTER_IP, 53), ENDPOINT_IPS[0].to_string());
}

#[test]
fn full_resync_is_idempotent_removes_stale_chains_and_uninstall_deletes_the_table() {
    let fixture = Fixture::new();
    let mut first = fixture.proxier();
    first.update_service(service("web", CLUSTER_IP, json!({})));
    first.update_endpoints(endpoints("web", &ENDPOINT_IPS[..2]));
    first.update_service(service("empty", EMPTY_CLUSTER_IP, json!({})));
    first.sync().expect("first sync");
    let installed = fixture.table_text();

    // A restarted orc: same objects, no memory of what it applied, plus junk by hand.
    fixture.sh(&["nft", "add", "chain", "ip", TABLE, "stale-handmade"]);
    fixture.sh(&[
        "nft",
        "add",
        "rule",
        "ip",
        TABLE,
        "stale-handmade",
        "jump",
        "services",
    ]);
    let mut restarted = fixture.proxier();
    restarted.update_service(service("web", CLUSTER_IP, json!({})));
    restarted.update_endpoints(endpoints("web", &ENDPOINT_IPS[..2]));
    restarted.update_service(service("empty", EMPTY_CLUSTER_IP, json!({})));
    assert!(restarted.sync().expect("full resync").full);
    let resynced = fixture.table_text();
    assert!(!resynced.contains("stale-handmade"), "{resynced}");
    assert_eq!(resynced, installed, "a full resync changes nothing else");
    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 20),
        set(&ENDPOINT_IPS[..2])
    );

    restarted.uninstall().expect("uninstall");
    let tables = fixture.sh(&["nft", "list", "tables"]);
    assert!(!tables.contains(TABLE), "{tables}");
    restarted.uninstall().expect("uninstall is idempotent");
}

#[test]
fn pod_reaching_itself_through_its_service_is_masqueraded() {
    let mut fixture = Fixture::new();
    let pod = fixture.add_pod();
    let mut proxier = fixture.proxier();
    proxier.update_service(service("web", CLUSTER_IP, json!({})));
    proxier.update_endpoints(endpoints("web", &[POD_IP]));
    proxier.sync().expect("sync");
    // Without masquerade the pod would answer itself directly and the connect would fail.
    let seen = connect_from(&pod, CLUSTER_IP, SERVICE_PORT).expect("hairpin connection");
    assert_eq!(
        seen,
        POD_GATEWAY.to_string(),
        "the pod sees the node, not itself"
    );
}

/// Endpoints `web` with each address on the given node.
fn endpoints_on_nodes(addresses: &[(Ipv4Addr, &str)]) -> Endpoints {
    let addresses: Vec<Value> = addresses
        .iter()
        .map(|(ip, node)| json!({"ip": ip.to_string(), "nodeName": node}))
        .collect();
    serde_json::from_value(json!({
        "metadata": {"namespace": "default", "name": "web"},
        "subsets": [{"addresses": addresses, "ports": [{"name": "http", "port": ENDPOINT_PORT}]}],
    }))
    .unwrap()
}

#[test]
fn local_traffic_policies_keep_traffic_on_this_nodes_endpoints() {
    let mut fixture = Fixture::new();
    fixture.add_pod();
    let client = fixture.add_client();
    let from_client = |tries| -> std::collections::BTreeSet<String> {
        (0..tries)
            .map(|_| connect_from(&client, NODE_IP, NODE_PORT).expect("NodePort answers"))
            .collect()
    };
    let mut proxier = fixture.proxier().with_node_name("here");
    let local = json!({"internalTrafficPolicy": "Local", "externalTrafficPolicy": "Local"});
    proxier.update_service(service("web", CLUSTER_IP, local.clone()));
    // The pod (answering with the source it sees) is here, the other endpoint is not.
    proxier.update_endpoints(endpoints_on_nodes(&[
        (ENDPOINT_IPS[0], "there"),
        (POD_IP, "here"),
    ]));
    proxier.sync().expect("sync");

    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 20),
        set(&[NODE_IP]),
        "internalTrafficPolicy Local: ClusterIP traffic only to this node's pod"
    );
    assert_eq!(
        from_client(20),
        set(&[CLIENT_IP]),
        "externalTrafficPolicy Local: only this node's pod, seeing the client's address"
    );

    // Policy Cluster: both endpoints, and the pod sees the node (masqueraded).
    proxier.update_service(service("web", CLUSTER_IP, json!({})));
    proxier.sync().expect("sync");
    assert_eq!(
        from_client(40),
        set(&[ENDPOINT_IPS[0], POD_GATEWAY]),
        "externalTrafficPolicy Cluster spreads and masquerades"
    );

    // Local with no endpoint here: dropped, not sent elsewhere.
    proxier.update_service(service("web", CLUSTER_IP, local));
    proxier.update_endpoints(endpoints_on_nodes(&[(ENDPOINT_IPS[0], "there")]));
    proxier.sync().expect("sync");
    let (kind, _) = fixture
        .connect(CLUSTER_IP, SERVICE_PORT)
        .expect_err("no local endpoint: the ClusterIP must not answer");
    assert_eq!(kind, ErrorKind::TimedOut, "dropped, not rejected");
}

/// `nft -j list table` without handles, map elements sorted: comparable between tables
/// built the same way (hash sets list their elements in a per-set random order).
fn normalized_listing(fixture: &Fixture) -> Value {
    let mut listing: Value =
        serde_json::from_str(&fixture.sh(&["nft", "-j", "list", "table", "ip", TABLE]))
            .expect("nft -j prints JSON");
    fn scrub(value: &mut Value) {
        match value {
            Value::Object(map) => {
                map.remove("handle");
                if let Some(Value::Array(elems)) = map.get_mut("elem") {
                    elems.sort_by_key(|e| e.to_string());
                }
                map.values_mut().for_each(scrub);
            }
            Value::Array(items) => items.iter_mut().for_each(scrub),
            _ => {}
        }
    }
    scrub(&mut listing);
    let items = listing["nftables"].as_array_mut().expect("nftables array");
    items.retain(|item| item.get("metainfo").is_none());
    listing
}

fn object<T: serde::de::DeserializeOwned>(value: Value) -> T {
    serde_json::from_value(value).expect("a valid object")
}

/// A Service `default/name` with exactly `spec`.
fn service_spec(name: &str, spec: Value) -> Service {
    object(json!({"metadata": {"namespace": "default", "name": name}, "spec": spec}))
}

/// Endpoints `default/name` with `subsets`.
fn endpoints_subsets(name: &str, subsets: Value) -> Endpoints {
    object(json!({"metadata": {"namespace": "default", "name": name}, "subsets": subsets}))
}

/// A Service with many ports (TCP and UDP, named, numeric target ports) and its
/// endpoints at `ips`.
fn many_ports(ips: &[Ipv4Addr]) -> (Service, Endpoints) {
    let mut ports = vec![json!({"name": "dns", "port": 53, "protocol": "UDP", "targetPort": 5353})];
    let mut endpoint_ports = vec![json!({"name": "dns", "port": 5353, "protocol": "UDP"})];
    for i in 0..10u16 {
        ports.push(json!({"name": format!("p{i}"), "port": 9000 + i, "targetPort": 19000 + i}));
        endpoint_ports.push(json!({"name": format!("p{i}"), "port": 19000 + i}));
    }
    let addresses: Vec<Value> = ips.iter().map(|ip| json!({"ip": ip.to_string()})).collect();
    (
        service_spec("many", json!({"clusterIP": "10.43.0.20", "ports": ports})),
        endpoints_subsets(
            "many",
            json!([{"addresses": addresses, "ports": endpoint_ports}]),
        ),
    )
}

/// The endpoints of Service `terminating` from an EndpointSlice whose endpoints are
/// all terminating, one still serving (upstream's fallback uses it) and one not.
fn terminating_endpoints() -> Endpoints {
    use k8s_openapi::api::discovery::v1::EndpointSlice;
    let slice: EndpointSlice = object(json!({
        "metadata": {"namespace": "default", "name": "terminating-x1",
                     "labels": {"kubernetes.io/service-name": "terminating"}},
        "addressType": "IPv4",
        "ports": [{"name": "http", "port": ENDPOINT_PORT, "protocol": "TCP"}],
        "endpoints": [
            {"addresses": [ENDPOINT_IPS[1].to_string()],
             "conditions": {"ready": false, "serving": true, "terminating": true}},
            {"addresses": [ENDPOINT_IPS[2].to_string()],
             "conditions": {"ready": false, "serving": false, "terminating": true}},
        ],
    }));
    orc::agent::proxy::source::merge_slices("default", "terminating", &[&slice])
}

/// A NodePort Service like [`service`] with its own node port (they are unique in a
/// cluster).
fn with_node_port(name: &str, cluster_ip: Ipv4Addr, node_port: u16) -> Service {
    let ports = json!([{"name": "http", "port": SERVICE_PORT, "targetPort": "web",
                        "nodePort": node_port}]);
    service(name, cluster_ip, json!({ "ports": ports }))
}

/// One step of the comparison: changes made to a proxier, then one sync.
type Step = Box<dyn Fn(&mut Proxier<NftCli>)>;

/// The same sequence of syncs (a full sync, incremental ones adding, changing and
/// deleting services, a full resync of the existing table) on two namespaces, one over
/// netlink and one with the nft binary only: after every sync `nft -j list table`
/// shows the same table in both.
#[test]
fn netlink_batches_build_the_same_table_as_the_nft_binary() {
    let netlink = Fixture::new();
    let binary = Fixture::new();
    let lb_ip = Ipv4Addr::new(203, 0, 113, 7);
    let lb_spec = json!({"type": "LoadBalancer", "externalTrafficPolicy": "Local",
                         "sessionAffinity": "ClientIP",
                         "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}});
    let mut with_lb = service("web", CLUSTER_IP, lb_spec);
    with_lb.status = Some(object(
        json!({"loadBalancer": {"ingress": [{"ip": lb_ip.to_string()}, {"ip": "203.0.113.8"}]}}),
    ));
    let udp = service_spec(
        "dns",
        json!({"clusterIP": "10.43.0.53", "internalTrafficPolicy": "Local",
               "ports": [{"name": "dns", "port": 53, "protocol": "UDP"}]}),
    );
    let udp_endpoints = endpoints_subsets(
        "dns",
        json!([{"addresses": [{"ip": "192.0.2.11", "nodeName": "here"}],
                "ports": [{"name": "dns", "port": 5353, "protocol": "UDP"}]}]),
    );
    let external = |ips: Value| {
        service_spec(
            "external",
            json!({"clusterIP": "10.43.0.30", "externalIPs": ips, "sessionAffinity": "ClientIP",
                   "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": ENDPOINT_PORT}]}),
        )
    };
    let terminating = service_spec(
        "terminating",
        json!({"clusterIP": "10.43.0.31", "type": "NodePort",
               "ports": [{"name": "http", "port": SERVICE_PORT, "nodePort": 30090}]}),
    );
    let plain = Ipv4Addr::new(10, 43, 0, 13);
    let steps: Vec<(&str, bool, Step)> = vec![
        (
            "full sync: a service without endpoints, a NodePort service",
            true,
            Box::new(|p| {
                p.update_service(with_node_port("empty", EMPTY_CLUSTER_IP, 30081));
                p.update_service(with_node_port("gone", Ipv4Addr::new(10, 43, 0, 12), 30082));
                p.update_endpoints(endpoints("gone", &ENDPOINT_IPS[2..]));
            }),
        ),
        (
            "add load balancer, UDP, many ports, externalIPs, terminating endpoints",
            false,
            Box::new(move |p| {
                p.update_service(with_lb.clone());
                p.update_endpoints(endpoints_on_nodes(&[
                    (ENDPOINT_IPS[0], "here"),
                    (ENDPOINT_IPS[1], "elsewhere"),
                ]));
                p.update_service(udp.clone());
                p.update_endpoints(udp_endpoints.clone());
                let (many, many_eps) = many_ports(&ENDPOINT_IPS);
                p.update_service(many);
                p.update_endpoints(many_eps);
                p.update_service(external(json!(["198.51.100.7", "198.51.100.8"])));
                p.update_endpoints(endpoints("external", &ENDPOINT_IPS[..2]));
                p.update_service(terminating.clone());
                p.update_endpoints(terminating_endpoints());
            }),
        ),
        (
            "change endpoints, delete a service, add one",
            false,
            Box::new(move |p| {
                p.update_endpoints(endpoints_on_nodes(&[
                    (ENDPOINT_IPS[0], "here"),
                    (ENDPOINT_IPS[2], "here"),
                ]));
                p.delete_service("default", "gone");
                p.delete_endpoints("default", "gone");
                p.update_service(with_node_port("plain", plain, 30083));
                p.update_endpoints(endpoints("plain", &ENDPOINT_IPS));
                p.update_endpoints(endpoints("empty", &ENDPOINT_IPS[..1]));
                let (_, many_eps) = many_ports(&ENDPOINT_IPS[1..]);
                p.update_endpoints(many_eps);
            }),
        ),
        (
            "endpoints go, externalIPs change, a service goes",
            false,
            Box::new(move |p| {
                p.delete_endpoints("default", "empty");
                p.update_service(external(json!(["198.51.100.8"])));
                p.delete_service("default", "many");
                p.delete_endpoints("default", "many");
                p.update_endpoints(endpoints_subsets("terminating", json!([])));
            }),
        ),
        (
            "full resync of the existing table",
            true,
            Box::new(|p| p.force_full_sync()),
        ),
    ];
    let nfts = [
        NftCli::in_netns(&netlink.ns),
        NftCli::in_netns(&binary.ns).binary_only(),
    ];
    let mut proxiers: Vec<Proxier<NftCli>> = nfts
        .iter()
        // Chains for every service on both sides: the DNAT maps' rule only goes over
        // netlink (`plain_services_are_elements_of_the_dnat_maps` covers them).
        .map(|nft| {
            Proxier::new(TABLE, nft.clone())
                .with_node_name("here")
                .with_dnat_maps(false)
        })
        .collect();
    for (what, full, step) in &steps {
        let mut listings = Vec::new();
        for (proxier, fixture) in proxiers.iter_mut().zip([&netlink, &binary]) {
            step(proxier);
            let stats = proxier.sync().unwrap_or_else(|e| panic!("{what}: {e}"));
            assert_eq!(stats.full, *full, "{what}");
            listings.push(normalized_listing(fixture));
        }
        assert_eq!(
            serde_json::to_string_pretty(&listings[0]).unwrap(),
            serde_json::to_string_pretty(&listings[1]).unwrap(),
            "{what}: netlink and nft made different tables"
        );
    }
    assert_eq!(
        nfts.iter()
            .map(NftCli::netlink_transactions)
            .collect::<Vec<_>>(),
        vec![steps.len() as u64, 0],
        "every sync went over netlink (only the maps through nft), none in binary mode"
    );
    // And the table built over netlink works.
    assert_eq!(
        netlink.answers(CLUSTER_IP, SERVICE_PORT, 10).len(),
        1,
        "ClientIP affinity"
    );
    assert_eq!(netlink.answers(plain, SERVICE_PORT, 20), set(&ENDPOINT_IPS));
    netlink.sh(&["ip", "route", "add", "198.51.100.0/24", "dev", "uplink0"]);
    assert_eq!(
        netlink
            .answers(Ipv4Addr::new(198, 51, 100, 8), SERVICE_PORT, 10)
            .len(),
        1,
        "the external IP, with ClientIP affinity"
    );
    let (kind, _) = netlink
        .connect(Ipv4Addr::new(198, 51, 100, 7), SERVICE_PORT)
        .expect_err("an external IP the Service no longer has");
    assert_ne!(
        kind,
        ErrorKind::ConnectionRefused,
        "not the service's reject"
    );
}

/// A transaction the kernel refuses is all or nothing over netlink too: nothing of it
/// is applied, the caller gets nft's error (the same transaction, retried with the
/// binary), and the next transaction goes over netlink again (on the same socket).
#[test]
fn a_refused_netlink_batch_changes_nothing_and_the_next_one_goes_over_netlink() {
    use orc::agent::proxy::Nft;
    let fixture = Fixture::new();
    let nft = NftCli::in_netns(&fixture.ns);
    let mut proxier = Proxier::new(TABLE, nft.clone());
    proxier.update_service(service("web", CLUSTER_IP, json!({})));
    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS[..1]));
    proxier.sync().expect("full sync");
    let before = normalized_listing(&fixture);
    let sent = nft.netlink_transactions();
    let cmd = |verb: &str, what: Value| json!({ verb: what });
    let refused = [
        cmd(
            "add",
            json!({"chain": {"family": "ip", "table": TABLE, "name": "half-made"}}),
        ),
        cmd(
            "add",
            json!({"rule": {"family": "ip", "table": TABLE, "chain": "half-made",
                            "expr": [{"goto": {"target": "no-such-chain"}}]}}),
        ),
    ];
    let err = nft.apply(&refused).expect_err("a jump to a missing chain");
    assert!(
        matches!(err, orc::agent::proxy::Error::NftFailed { .. }),
        "nft's own error after the netlink refusal: {err:?}"
    );
    assert_eq!(nft.netlink_transactions(), sent, "the refused batch");
    assert_eq!(
        normalized_listing(&fixture),
        before,
        "nothing of the refused transaction is in the table"
    );
    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS[1..2]));
    assert!(!proxier.sync().expect("the next change").full);
    assert_eq!(nft.netlink_transactions(), sent + 1, "over netlink again");
    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 5),
        set(&ENDPOINT_IPS[1..2])
    );
}

/// A ClusterIP Service with one port and nothing else: dispatched through the DNAT maps.
fn plain_service(name: &str, cluster_ip: Ipv4Addr, protocol: &str) -> Service {
    service_spec(
        name,
        json!({"clusterIP": cluster_ip.to_string(),
               "ports": [{"name": "http", "port": SERVICE_PORT, "targetPort": "web",
                          "protocol": protocol}]}),
    )
}

/// The chain names of the proxy table.
fn chains(fixture: &Fixture) -> Vec<String> {
    fixture
        .table_text()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("chain "))
        .map(|l| l.trim_end_matches(" {").to_string())
        .collect()
}

/// Plain ClusterIP services (no affinity, no NodePort, no external address, cluster
/// traffic policy) get no chain of their own: their keys and endpoints are elements of
/// the DNAT maps, drawn by a static rule per endpoint count. Connections spread over
/// the endpoints and follow changes; a service that gains session affinity moves to a
/// chain and back.
#[test]
fn plain_services_are_elements_of_the_dnat_maps() {
    let fixture = Fixture::new();
    for ip in ENDPOINT_IPS {
        fixture.serve_udp(ip);
    }
    let mut proxier = fixture.proxier();
    proxier.update_service(plain_service("web", CLUSTER_IP, "TCP"));
    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS[..2]));
    assert!(proxier.sync().expect("full sync").full);
    let static_chains = chains(&fixture);
    assert!(
        static_chains
            .iter()
            .all(|c| !c.starts_with("service-") || c == orc::agent::proxy::rules::DNAT_CHAIN),
        "no chain per service: {static_chains:?}"
    );
    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 40),
        set(&ENDPOINT_IPS[..2]),
        "connections spread over both endpoints"
    );

    // One more endpoint, one less: only the map's elements change.
    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS));
    proxier.sync().expect("sync one more endpoint");
    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 60),
        set(&ENDPOINT_IPS)
    );
    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS[2..]));
    proxier.sync().expect("sync fewer endpoints");
    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 20),
        set(&ENDPOINT_IPS[2..])
    );

    // A UDP service on the same port and another TCP one: still no new chain.
    let dns_ip = Ipv4Addr::new(10, 43, 0, 53);
    proxier.update_service(plain_service("dns", dns_ip, "UDP"));
    proxier.update_endpoints(endpoints_subsets(
        "dns",
        json!([{"addresses": [{"ip": ENDPOINT_IPS[1].to_string()}],
                "ports": [{"name": "http", "port": UDP_ENDPOINT_PORT, "protocol": "UDP"}]}]),
    ));
    let other = Ipv4Addr::new(10, 43, 0, 14);
    proxier.update_service(plain_service("other", other, "TCP"));
    proxier.update_endpoints(endpoints("other", &ENDPOINT_IPS[..1]));
    proxier.sync().expect("sync two more services");
    assert_eq!(chains(&fixture), static_chains, "elements only");
    assert_eq!(
        fixture.ask_udp(dns_ip, SERVICE_PORT),
        ENDPOINT_IPS[1].to_string()
    );
    assert_eq!(
        fixture.answers(other, SERVICE_PORT, 10),
        set(&ENDPOINT_IPS[..1])
    );

    // Without endpoints: rejected at once, as with chains.
    proxier.delete_endpoints("default", "other");
    proxier.sync().expect("sync no endpoints");
    let (kind, took) = fixture
        .connect(other, SERVICE_PORT)
        .expect_err("a service without endpoints must not answer");
    assert_eq!(kind, ErrorKind::ConnectionRefused);
    assert!(took < Duration::from_secs(1), "rejected, not dropped");

    // Session affinity needs chains; dropping it goes back to the maps.
    let mut sticky = plain_service("web", CLUSTER_IP, "TCP");
    sticky.spec.as_mut().unwrap().session_affinity = Some("ClientIP".into());
    proxier.update_service(sticky);
    proxier.update_endpoints(endpoints("web", &ENDPOINT_IPS));
    proxier.sync().expect("sync affinity");
    assert_ne!(chains(&fixture), static_chains);
    assert_eq!(fixture.answers(CLUSTER_IP, SERVICE_PORT, 20).len(), 1);
    proxier.update_service(plain_service("web", CLUSTER_IP, "TCP"));
    proxier.sync().expect("sync without affinity");
    assert_eq!(chains(&fixture), static_chains);
    assert_eq!(
        fixture.answers(CLUSTER_IP, SERVICE_PORT, 60),
        set(&ENDPOINT_IPS)
    );

    // A full resync of the existing table changes nothing.
    let before = fixture.table_text();
    proxier.force_full_sync();
    assert!(proxier.sync().expect("full resync").full);
    assert_eq!(fixture.table_text(), before);
}

/// The hairpin of the DNAT maps: a pod behind two plain services reaches itself through
/// either, masqueraded; when one service goes the other still masquerades (the
/// `hairpin-endpoints` element is shared).
#[test]
fn pod_reaching_itself_through_a_plain_service_is_masqueraded() {
    let mut fixture = Fixture::new();
    let pod = fixture.add_pod();
    let mut proxier = fixture.proxier();
    let second = Ipv4Addr::new(10, 43, 0, 15);
    proxier.update_service(plain_service("web", CLUSTER_IP, "TCP"));
    proxier.update_endpoints(endpoints("web", &[POD_IP]));
    proxier.update_service(plain_service("second", second, "TCP"));
    proxier.update_endpoints(endpoints("second", &[POD_IP]));
    proxier.sync().expect("sync");
    for ip in [CLUSTER_IP, second] {
        let seen = connect_from(&pod, ip, SERVICE_PORT).expect("hairpin connection");
        assert_eq!(
            seen,
            POD_GATEWAY.to_string(),
            "the pod sees the node via {ip}"
        );
    }
    proxier.delete_service("default", "web");
    proxier.delete_endpoints("default", "web");
    proxier.sync().expect("sync without web");
    let seen = connect_from(&pod, second, SERVICE_PORT).expect("hairpin connection");
    assert_eq!(seen, POD_GATEWAY.to_string(), "still masqueraded");
    proxier.delete_service("default", "second");
    proxier.delete_endpoints("default", "second");
    proxier.sync().expect("sync without services");
    let listed = fixture.sh(&["nft", "list", "set", "ip", TABLE, "hairpin-endpoints"]);
    assert!(!listed.contains(&POD_IP.to_string()), "{listed}");
}
