#!/usr/bin/env bash
# Ingress benchmark (needs root; see benches/ingress.rs). Prints requests/s, p50 and p99
# of `GET /` through the built-in ingress and straight to the pod, and their ratio
# (ORC_BENCH_CLIENTS concurrent clients, default 8, for ORC_BENCH_SECS, default 10).
# Release build; pass `--profile dev` to measure the debug build instead.
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench ingress "$@"
