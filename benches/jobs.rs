//! Job throughput benchmark: one Job of ORC_BENCH_COMPLETIONS completions (default 200)
//! with parallelism ORC_BENCH_PARALLELISM (default 10) whose pods run `true` on
//! containerd, timed from create to the `Complete` condition (`kubectl wait`, a watch).
//! Prints completions/s; asserts only that the Job completes with every completion
//! counted once.
//!
//! Run as root: `scripts/bench-jobs.sh` (or `cargo bench --bench jobs`). Reuses the
//! kubelet tests' one-node cluster (tests/support/kubelet.rs): a private containerd,
//! the busybox test image imported, `orc server` in a network namespace of its own,
//! everything removed when the bench ends.

use std::time::Instant;

#[path = "../tests/support/mod.rs"]
mod support;
use support::kubelet::{World, IMAGE};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn main() {
    let completions = env_num("ORC_BENCH_COMPLETIONS", 200);
    let parallelism = env_num("ORC_BENCH_PARALLELISM", 10);
    let w = World::start();
    let yaml = format!(
        "apiVersion: batch/v1
kind: Job
metadata:
  name: bench
spec:
  completions: {completions}
  parallelism: {parallelism}
  template:
    spec:
      restartPolicy: Never
      terminationGracePeriodSeconds: 1
      containers:
      - name: main
        image: {IMAGE}
        command: [\"true\"]
"
    );
    let started = Instant::now();
    w.apply(&yaml);
    w.kubectl_ok(&[
        "wait",
        "--for=condition=complete",
        "job/bench",
        "--timeout=1200s",
    ]);
    let elapsed = started.elapsed();
    let succeeded = w.kubectl_out(&["get", "job", "bench", "-o", "jsonpath={.status.succeeded}"]);
    assert_eq!(
        succeeded,
        completions.to_string(),
        "every completion counted once"
    );
    let pods = w.kubectl_out(&[
        "get",
        "pods",
        "-l",
        "batch.kubernetes.io/job-name=bench",
        "-o",
        "name",
    ]);
    println!(
        "job of {completions} completions, parallelism {parallelism}: create → Complete in {:.1} s = {:.1} completions/s ({} pods)",
        elapsed.as_secs_f64(),
        completions as f64 / elapsed.as_secs_f64(),
        pods.lines().count(),
    );
}
