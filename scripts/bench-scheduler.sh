#!/usr/bin/env bash
# Scheduler benchmark (issue: scheduler). Prints pods bound per second for
# ORC_BENCH_SCHED_PODS pods (default 1000) on 100 and on 1,000 nodes
# (ORC_BENCH_SCHED_NODES, comma-separated). In-process Registry, release build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench scheduler "$@"
