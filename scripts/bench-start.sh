#!/usr/bin/env bash
# Start-to-Ready benchmark (needs root, containerd, runc, kubectl): spawns `orc server`
# with its embedded agent on a private containerd in a network namespace of its own and
# times spawn → node Ready (kubectl polled every 20 ms), ORC_BENCH_RUNS times (default 5).
#
#   scripts/bench-start.sh [ORC_BINARY]      (default: a release build, target/release/orc)
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [[ -z "$bin" ]]; then
    cargo build --release --locked --bin orc >&2
    bin=${CARGO_TARGET_DIR:-target}/release/orc
fi
[[ $(id -u) -eq 0 ]] || { echo "bench-start.sh: run as root (network namespaces, containerd)" >&2; exit 1; }
runs=${ORC_BENCH_RUNS:-5}
tag=$(printf '%06x' $((RANDOM * 32768 + RANDOM)))
dir=/run/orc-bench-start-$tag ns=orc-bs-$tag
cleanup() {
    [[ -n "${pid:-}" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
    ip netns exec "$ns" scripts/containerd-test-env.sh stop "$dir" >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT
mkdir -p "$dir"
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 type veth peer name lan0
ip -n "$ns" addr add 192.168.233.2/24 dev eth0
ip -n "$ns" link set lan0 up
ip -n "$ns" link set eth0 up
ip netns exec "$ns" scripts/containerd-test-env.sh start "$dir" >/dev/null
echo "orc start-to-Ready: $bin, $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
for run in $(seq 1 "$runs"); do
    rm -rf "$dir/data" "$dir/kubeconfig"
    start=$(date +%s%N)
    ip netns exec "$ns" "$bin" server --data-dir "$dir/data" --bind-address 127.0.0.1 \
        --https-port 16443 --write-kubeconfig "$dir/kubeconfig" --node-name bench-node \
        --cluster-cidr 10.197.0.0/16 --node-ip 192.168.233.2 \
        --containerd-socket "$dir/containerd.sock" --containerd-namespace orc-bench-start \
        2>"$dir/server.log" &
    pid=$!
    ready=false
    for _ in $(seq 1 1500); do
        if [[ -s "$dir/kubeconfig" ]] && [[ $(ip netns exec "$ns" kubectl --kubeconfig "$dir/kubeconfig" \
            get node bench-node -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]; then
            ready=true
            break
        fi
        sleep 0.02
    done
    end=$(date +%s%N)
    kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
    $ready || { echo "run $run: the node did not become Ready within 30 s; log:" >&2; tail -20 "$dir/server.log" >&2; exit 1; }
    echo "run $run: spawn to node Ready $(( (end - start) / 1000000 )) ms"
done
