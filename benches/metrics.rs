//! Cost of the built-in resource metrics per node: CPU time of one collection pass —
//! the kubelet reading the node's and every pod's and container's cgroup files and
//! rendering `/metrics/resource`, the server parsing that scrape and taking rates
//! against the previous one — and what that costs per minute at the default 15 s
//! resolution. The cgroup files are a v1 hierarchy written to a temporary directory
//! (the host's own `memory.stat` as content, so parsing costs what it costs on a node);
//! the TLS connection of each scrape is not included. Prints figures; asserts nothing.
//!
//! Run: `scripts/bench-metrics.sh` (or `cargo bench --bench metrics`). Env:
//! ORC_BENCH_METRICS_PODS (default 30), ORC_BENCH_METRICS_PASSES (default 2000).

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

use orc::agent::kubelet::container::{
    CONTAINER_NAME_LABEL, POD_NAMESPACE_LABEL, POD_NAME_LABEL, POD_UID_LABEL,
};
use orc::agent::runtime::{ContainerState, ContainerSummary};
use orc::agent::stats::{render, sample, CgroupReader};
use orc::api::metrics::parse_scrape;
use orc::apiserver::resource_metrics::ResourceMetrics;

/// CPU time this thread has used, in nanoseconds (first field of schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn env_or(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn cgroup(root: &Path, rel: &str, stat: &str) {
    for (controller, file, value) in [
        ("cpuacct", "cpuacct.usage", "123456789\n"),
        ("memory", "memory.usage_in_bytes", "10485760\n"),
        ("memory", "memory.stat", stat),
    ] {
        let dir = root.join(controller).join(rel.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).expect("make the fixture");
        std::fs::write(dir.join(file), value).expect("write the fixture");
    }
}

fn main() {
    let pods = env_or("ORC_BENCH_METRICS_PODS", 30);
    let passes = env_or("ORC_BENCH_METRICS_PASSES", 2000);
    let stat = std::fs::read_to_string("/sys/fs/cgroup/memory/memory.stat")
        .unwrap_or_else(|_| "cache 0\nrss 0\ntotal_inactive_file 4096\n".repeat(12));
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    cgroup(root, "/", &stat);
    let mut containers = Vec::new();
    for i in 0..pods {
        let uid = format!("uid-{i}");
        cgroup(root, &format!("/orc/pod{uid}"), &stat);
        cgroup(root, &format!("/orc/pod{uid}/c{i}"), &stat);
        let labels: BTreeMap<String, String> = [
            (POD_UID_LABEL, uid.as_str()),
            (POD_NAME_LABEL, &format!("pod-{i}")),
            (POD_NAMESPACE_LABEL, "default"),
            (CONTAINER_NAME_LABEL, "app"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        containers.push(ContainerSummary {
            id: format!("c{i}"),
            image: "busybox".into(),
            labels,
            state: ContainerState::Running { pid: 1 },
        });
    }
    let reader = CgroupReader {
        root: root.to_path_buf(),
        proc_root: "/proc".into(),
    };
    let store = ResourceMetrics::new();
    let (mut node_ns, mut server_ns) = (0u64, 0u64);
    let wall = Instant::now();
    let mut bytes = 0;
    for pass in 0..passes {
        let at = chrono::Utc::now() + chrono::Duration::seconds(pass as i64 * 15);
        let t0 = thread_cpu_ns();
        let text = render(&sample(&reader, &containers, at));
        let t1 = thread_cpu_ns();
        let scrape = parse_scrape(&text, at.timestamp_millis()).expect("parses");
        store.record("node", scrape);
        let t2 = thread_cpu_ns();
        node_ns += t1 - t0;
        server_ns += t2 - t1;
        bytes = text.len();
    }
    let per_pass = |ns: u64| ns as f64 / passes as f64 / 1000.0;
    let per_minute_ms = |ns: u64| ns as f64 / passes as f64 * 4.0 / 1e6;
    println!("resource metrics, {pods} pods (1 container each), {passes} passes, {bytes} bytes per scrape");
    println!(
        "kubelet (read cgroups, render): {:.1} µs/pass; server (parse, rates): {:.1} µs/pass",
        per_pass(node_ns),
        per_pass(server_ns)
    );
    let total = per_minute_ms(node_ns + server_ns);
    println!(
        "per node per minute at 15 s: {total:.2} ms CPU ({:.4} % of one core); wall {:?}",
        total / 600.0,
        wall.elapsed()
    );
}
