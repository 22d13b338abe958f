//! Cost of the node-pressure checks: CPU time of one measurement of every eviction
//! signal on this host (root memory cgroup, statfs of two filesystems, pids), and what
//! that costs per minute at the default 10 s monitoring interval. Prints figures;
//! asserts nothing.
//!
//! Run: `scripts/bench-eviction.sh` (or `cargo bench --bench eviction`). Env:
//! ORC_BENCH_EVICTION_PASSES (default 2000), ORC_BENCH_EVICTION_DIR (the nodefs path,
//! default /var/lib), ORC_BENCH_EVICTION_IMAGEFS (default /var/lib/containerd, else /).

use std::path::PathBuf;
use std::time::Instant;

use orc::agent::eviction::signals::{HostProbe, Probe};
use orc::agent::eviction::DEFAULT_MONITORING_INTERVAL;

/// CPU time this thread has used, in nanoseconds (first field of schedstat).
fn thread_cpu_ns() -> u64 {
    std::fs::read_to_string("/proc/thread-self/schedstat")
        .ok()
        .and_then(|s| s.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn main() {
    let passes: u64 = std::env::var("ORC_BENCH_EVICTION_PASSES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let node_fs = std::env::var("ORC_BENCH_EVICTION_DIR").unwrap_or_else(|_| "/var/lib".into());
    let image_fs = std::env::var("ORC_BENCH_EVICTION_IMAGEFS").unwrap_or_else(|_| {
        if std::path::Path::new("/var/lib/containerd").exists() {
            "/var/lib/containerd".into()
        } else {
            "/".into()
        }
    });
    let probe = HostProbe {
        cgroup_root: PathBuf::from("/sys/fs/cgroup"),
        proc_root: PathBuf::from("/proc"),
        node_fs: PathBuf::from(node_fs),
        image_fs: PathBuf::from(image_fs),
        pods_dir: PathBuf::from("/nonexistent"),
    };
    let signals = probe.observe().len();
    let (cpu0, wall0) = (thread_cpu_ns(), Instant::now());
    for _ in 0..passes {
        std::hint::black_box(probe.observe());
    }
    let cpu_per_pass = (thread_cpu_ns() - cpu0) as f64 / passes as f64;
    let wall_per_pass = wall0.elapsed().as_nanos() as f64 / passes as f64;
    let per_minute = 60.0 / DEFAULT_MONITORING_INTERVAL.as_secs_f64();
    println!("eviction signals measured per pass: {signals}");
    println!(
        "one pass: {:.1} µs CPU ({:.1} µs wall), {passes} passes",
        cpu_per_pass / 1e3,
        wall_per_pass / 1e3
    );
    println!(
        "per minute at the {}s interval: {:.3} ms CPU ({:.5}% of one core)",
        DEFAULT_MONITORING_INTERVAL.as_secs(),
        cpu_per_pass * per_minute / 1e6,
        cpu_per_pass * per_minute / 60e9 * 100.0
    );
}
