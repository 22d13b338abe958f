#!/usr/bin/env bash
# Endpoint → rule benchmark, end to end (issue 19 part 6; see benches/endpoints.rs): an
# EndpointSlice change written through the API until the kernel's ruleset holds it, with
# ORC_BENCH_ENDPOINT_SERVICES Services (default 1000), ORC_BENCH_ENDPOINT_ROUNDS changes
# (default 100). Needs root, containerd, runc, nft (scripts/install-deps.sh). Release build.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench endpoints "$@"
