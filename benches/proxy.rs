//! Service proxy benchmark: full sync of N services × 2 endpoints into a real nftables
//! table, then the time to compute and apply one more service, for N = 1,000 and 10,000.
//! Needs root and nft; all work happens in a network namespace the benchmark creates
//! (the host's tables are never touched). Prints figures; asserts nothing.
//!
//! Run: `cargo bench --bench proxy`. Env: ORC_BENCH_PROXY_SERVICES (default
//! "1000,10000").

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::json;

use orc::agent::net::{create_netns, delete_netns};
use orc::agent::proxy::{NftCli, Proxier};

const TABLE: &str = "orc-proxy-bench";
/// How many times one more service is added (after the full sync).
const ONE_MORE_ROUNDS: usize = 10;

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

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn run(services: usize, netns: &Path) {
    let nft = NftCli {
        netns: Some(netns.to_path_buf()),
    };
    let mut proxier = Proxier::new(TABLE, nft);
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
    took.sort();
    println!(
        "{services} services: one more service: compute+apply median {}, max {} ({commands} nft commands, {ONE_MORE_ROUNDS} rounds)",
        ms(took[took.len() / 2]),
        ms(*took.last().unwrap()),
    );
    proxier.uninstall().expect("uninstall");
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
    if let Err(e) = delete_netns(&netns) {
        eprintln!("cleanup: {e}");
    }
    let _ = nix::mount::umount2(&dir, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir_all(&dir);
}
