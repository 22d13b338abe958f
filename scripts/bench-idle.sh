#!/usr/bin/env bash
# Idle cost benchmark (needs root; see benches/pods.rs, idle mode): the CPU of the
# `orc server` process (with its embedded agent) as % of one core with 0, 30 and 100
# idle pods (`sleep`, no probes), over ORC_BENCH_IDLE_WINDOW seconds (default 60) each.
# Release build. Counts: ORC_BENCH_IDLE_PODS (default 0,30,100).
set -euo pipefail
cd "$(dirname "$0")/.."
export ORC_BENCH_IDLE_PODS="${ORC_BENCH_IDLE_PODS:-0,30,100}"
exec cargo bench --bench pods "$@"
