#!/usr/bin/env bash
# Service proxy benchmark (needs root and nft; see benches/proxy.rs). Prints the full-sync
# time of N services x 2 endpoints and the time to program one more service, for
# N = 1,000 and 10,000 (ORC_BENCH_PROXY_SERVICES). Works in a private network namespace.
# Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench proxy "$@"
