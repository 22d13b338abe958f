#!/usr/bin/env bash
# StatefulSet benchmark (needs root; see benches/pods.rs): a Parallel StatefulSet of
# ORC_BENCH_STATEFULSET replicas (default 50, busybox sleep) from create to all Ready
# on the one-node setup of the pod benchmark. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
ORC_BENCH_STATEFULSET="${ORC_BENCH_STATEFULSET:-50}" exec cargo bench --bench pods "$@"
