#!/usr/bin/env bash
# Built-in resource metrics benchmark (issue 17): CPU time of one collection pass per
# node (kubelet cgroup reads and render, server parse and rates) and its cost per minute
# at the default 15 s resolution. Release build. Env: ORC_BENCH_METRICS_PODS,
# ORC_BENCH_METRICS_PASSES (see benches/metrics.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench metrics "$@"
