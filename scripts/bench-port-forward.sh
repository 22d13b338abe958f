#!/usr/bin/env bash
# kubectl port-forward throughput and connect latency (needs root; the kubelet tests'
# one-node cluster on a private containerd, see tests/port_forward.rs). Runs the
# integration test, which pushes 16 MiB through a busybox `nc -e cat` echo in the pod and
# back (both directions at once) and times 20 new connections to their first echoed byte,
# once over WebSocket (kubectl's default) and once over SPDY
# (KUBECTL_PORT_FORWARD_WEBSOCKETS=false), and prints its figures.
# Pass --release to measure an optimised build.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo test "$@" --test port_forward -- --nocapture 2>&1 | tee /dev/stderr | grep '^port-forward bench:'
