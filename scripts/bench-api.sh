#!/usr/bin/env bash
# API server benchmark (issue: foundation). Prints create throughput/latency, list
# latency at ORC_BENCH_PODS pods, idle RSS and idle disk writes. Release build;
# ORC_BIN=PATH measures another orc binary (e.g. dist/orc-x86_64-unknown-linux-musl).
set -euo pipefail
cd "$(dirname "$0")/.."
exec cargo bench --bench api "$@"
