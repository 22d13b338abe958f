//! Service proxy benchmark: full sync of N services × 2 endpoints into a real nftables
//! table, then the time to compute and apply one more service, for N = 1,000 and 10,000;
//! then, at 1,000 services, the endpoint → rule latency: an Endpoints change handed to
//! the running proxier (`Proxier::run`, with its sync pacing) until the transaction
//! holding the new endpoint is committed in the kernel (and checked there at the end).
//! Needs root and nft; all work happens in a network namespace the benchmark creates
//! (the host's tables are never touched). Prints figures; asserts nothing but that the
//! last endpoint is in the kernel's table.
//!
//! Run: `cargo bench --bench proxy`. Env: ORC_BENCH_PROXY_SERVICES (default
//! "1000,10000"), ORC_BENCH_PROXY_LATENCY_SERVICES (default 1000; 0 skips it).

use std::path::{Path, PathBuf};
use std::sync::mpsc as std_mpsc;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::{json, Value};

use orc::agent::net::{create_netns, delete_netns};
use orc::agent::proxy::{rules, Change, Nft, NftCli, Proxier};

const TABLE: &str = "orc-proxy-bench";
/// How many times one more service is added (after the full sync).
const ONE_MORE_ROUNDS: usize = 25;

fn service(i: usize) -> Service {
    serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "spec": {"clusterIP": format!("10.43.{}.{}", i / 250, i % 250 + 1),
                 "ports": [{"name": "http", "port": 80}]},
    }))
    .unwrap()
}

fn endpoints(i: usize) -> Endpoints {
    let ip = |n: usize| format!("10.42.{}.{}", n / 250, n % 250 + 1);
    serde_json::from_value(json!({
        "metadata": {"namespace": "bench", "name": format!("svc-{i}")},
        "subsets": [{"addresses": [{"ip": ip(2 * i)}, {"ip": ip(2 * i + 1)}],
                     "ports": [{"name": "http", "port": 8080}]}],
    }))
    .unwrap()
}

/// Endpoints of service `i` with a third, changing endpoint `10.99.x.y` (`round`).
fn endpoints_with(i: usize, round: usize) -> Endpoints {
    let mut eps = endpoints(i);
    let extra = format!("10.99.{}.{}", round / 250, round % 250 + 1);
    let subsets = eps.subsets.as_mut().expect("subsets");
    subsets[0]
        .addresses
        .as_mut()
        .expect("addresses")
        .push(serde_json::from_value(json!({ "ip": extra })).unwrap());
    eps
}

/// The real backend, telling when each transaction was committed and what it held.
struct Timed {
    inner: NftCli,
    committed: std_mpsc::Sender<(Instant, String)>,
}

impl Nft for Timed {
    fn apply(&self, commands: &[Value]) -> orc::agent::proxy::Result<()> {
        self.inner.apply(commands)?;
        let text = serde_json::to_string(commands).unwrap_or_default();
        let _ = self.committed.send((Instant::now(), text));
        Ok(())
    }

    fn list_table(&self, table: &str) -> orc::agent::proxy::Result<Option<Value>> {
        self.inner.list_table(table)
    }

    fn apply_script(&self, script: &str) -> orc::agent::proxy::Result<()> {
        self.inner.apply_script(script)
    }

    fn supports_dnat_maps(&self) -> bool {
        self.inner.supports_dnat_maps()
    }
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn run(services: usize, netns: &Path) {
    let nft = NftCli::in_netns(netns);
    let mut proxier = Proxier::new(TABLE, nft.clone());
    for i in 0..services {
        proxier.update_service(service(i));
        proxier.update_endpoints(endpoints(i));
    }
    let started = Instant::now();
    let stats = proxier.sync().expect("full sync");
    println!(
        "{services} services x 2 endpoints: full sync {} ({} nft commands)",
        ms(started.elapsed()),
        stats.commands
    );

    // One more service, ONE_MORE_ROUNDS times over: the median and the slowest (the first,
    // right after the full sync, pays for the kernel still freeing the old objects).
    let mut took = Vec::new();
    let mut commands = 0;
    for extra in 0..ONE_MORE_ROUNDS {
        let started = Instant::now();
        proxier.update_service(service(services + extra));
        proxier.update_endpoints(endpoints(services + extra));
        commands = proxier.sync().expect("incremental sync").commands;
        took.push(started.elapsed());
    }
    // In order: which rounds are slow (the first after the full sync, periodic ones…).
    let rounds: Vec<String> = took
        .iter()
        .map(|d| format!("{:.1}", d.as_secs_f64() * 1000.0))
        .collect();
    println!(
        "{services} services: one more service, rounds in order (ms): {}",
        rounds.join(" ")
    );
    took.sort();
    println!(
        "{services} services: one more service: compute+apply median {}, max {} ({commands} nft commands, {ONE_MORE_ROUNDS} rounds, {} of {} transactions over netlink)",
        ms(took[took.len() / 2]),
        ms(*took.last().unwrap()),
        nft.netlink_transactions(),
        ONE_MORE_ROUNDS + 1,
    );
    proxier.uninstall().expect("uninstall");
}

/// How many endpoint changes the latency benchmark makes, and the pause between them
/// (longer than the proxier's minimum sync interval: each change comes alone).
const LATENCY_ROUNDS: usize = 100;
const LATENCY_PAUSE: Duration = Duration::from_millis(150);

/// Endpoint → rule latency at `services` services through the proxier's run loop.
fn latency(services: usize, netns: &Path) {
    let nft = NftCli::in_netns(netns);
    let (committed_tx, committed) = std_mpsc::channel();
    let timed = Timed {
        inner: nft.clone(),
        committed: committed_tx,
    };
    let mut proxier = Proxier::new(TABLE, timed);
    for i in 0..services {
        proxier.update_service(service(i));
        proxier.update_endpoints(endpoints(i));
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let (changes, rx) = tokio::sync::mpsc::channel(16);
    let task = runtime.spawn(proxier.run(rx));
    committed
        .recv_timeout(Duration::from_secs(120))
        .expect("the startup full sync");
    let mut took = Vec::with_capacity(LATENCY_ROUNDS);
    for round in 0..LATENCY_ROUNDS {
        std::thread::sleep(LATENCY_PAUSE);
        let svc = round % services;
        let eps = endpoints_with(svc, round);
        let endpoint = format!("10.99.{}.{}", round / 250, round % 250 + 1);
        let sent = Instant::now();
        changes
            .blocking_send(Change::Endpoints(Box::new(eps)))
            .expect("proxier running");
        loop {
            let (at, text) = committed
                .recv_timeout(Duration::from_secs(30))
                .expect("the change is applied");
            if text.contains(&format!("\"{endpoint}\"")) {
                took.push(at - sent);
                break;
            }
        }
    }
    drop(changes);
    runtime.block_on(task).expect("proxier run loop");
    // The last endpoint is in the kernel's table: in the DNAT map (a plain service of
    // three endpoints) or, without it, in the service's chain.
    let last = LATENCY_ROUNDS - 1;
    let object: (&str, String) = if nft.supports_dnat_maps() {
        ("map", rules::SERVICE_ENDPOINTS_MAP.to_string())
    } else {
        let chain = format!("bench/svc-{}/tcp/http", last % services);
        ("chain", rules::object_name("service", &chain))
    };
    let listed = std::process::Command::new("nsenter")
        .arg(format!("--net={}", netns.display()))
        .args(["nft", "list", object.0, "ip", TABLE, &object.1])
        .output()
        .expect("run nft");
    let listed = String::from_utf8_lossy(&listed.stdout);
    let endpoint = format!("10.99.{}.{}", last / 250, last % 250 + 1);
    assert!(
        listed.contains(&endpoint),
        "{endpoint} not in {object:?}: {listed}"
    );
    took.sort();
    let pct = |p: usize| took[(took.len() * p / 100).min(took.len() - 1)];
    println!(
        "{services} services: endpoint change -> rule in the kernel: p50 {}, p99 {}, max {} ({LATENCY_ROUNDS} changes, {} transactions over netlink)",
        ms(pct(50)),
        ms(pct(99)),
        ms(*took.last().unwrap()),
        nft.netlink_transactions(),
    );
    let mut cleanup = Proxier::new(TABLE, nft);
    cleanup.uninstall().expect("uninstall");
}

fn main() {
    let counts: Vec<usize> = std::env::var("ORC_BENCH_PROXY_SERVICES")
        .unwrap_or_else(|_| "1000,10000".into())
        .split(',')
        .filter_map(|n| n.trim().parse().ok())
        .collect();
    let dir = PathBuf::from(format!("/run/orc-bench-proxy-{}", std::process::id()));
    let netns = dir.join("node");
    create_netns(&netns).expect("create a network namespace (the proxy benchmark needs root)");
    for services in counts {
        run(services, &netns);
    }
    let latency_services: usize = std::env::var("ORC_BENCH_PROXY_LATENCY_SERVICES")
        .ok()
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or(1000);
    if latency_services > 0 {
        latency(latency_services, &netns);
    }
    if let Err(e) = delete_netns(&netns) {
        eprintln!("cleanup: {e}");
    }
    let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&dir);
}
