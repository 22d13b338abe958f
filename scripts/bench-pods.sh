#!/usr/bin/env bash
# Pod startup benchmark (needs root; see benches/pods.rs). Prints create → Running
# latency p50/p99/max over ORC_BENCH_PODS pods (default 100) and idle RSS of the server
# (embedded agent) and of a separate agent. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench pods "$@"
