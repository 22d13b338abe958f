#!/usr/bin/env bash
# Node-pressure check benchmark (issue 20): CPU time of one measurement of every
# eviction signal on this host and its cost per minute at the default 10 s interval.
# Release build. Env: ORC_BENCH_EVICTION_PASSES, ORC_BENCH_EVICTION_DIR,
# ORC_BENCH_EVICTION_IMAGEFS (see benches/eviction.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench eviction "$@"
