#!/usr/bin/env bash
# Job throughput benchmark (needs root; see benches/jobs.rs). Prints the time from
# creating a Job of ORC_BENCH_COMPLETIONS completions (default 200, parallelism
# ORC_BENCH_PARALLELISM, default 10; pods run `true` on containerd) to its Complete
# condition, as completions/s. Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench jobs "$@"
