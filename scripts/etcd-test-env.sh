#!/usr/bin/env bash
# A private etcd cluster on loopback for humans and benchmarks (Debian's etcd-server,
# installed by scripts/install-deps.sh).
#
#   scripts/etcd-test-env.sh start DIR [MEMBERS]   # default 3 members; prints the
#                                                  # --datastore-endpoint value
#   scripts/etcd-test-env.sh endpoint DIR          # prints it again
#   scripts/etcd-test-env.sh stop DIR              # kills the members, removes DIR
#
# Each member gets free loopback ports (client and peer), its own data dir DIR/mN and its
# log DIR/mN.log. `start` waits (at most 30 s) until every member reports healthy.
set -euo pipefail

usage() {
  echo "usage: $0 start DIR [MEMBERS] | endpoint DIR | stop DIR" >&2
  exit 2
}

free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}

cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || usage

case "$cmd" in
start)
  members=${3:-3}
  command -v etcd >/dev/null || { echo "etcd not found: run scripts/install-deps.sh" >&2; exit 1; }
  if [ -e "$dir/pids" ]; then
    echo "$dir already holds a cluster: '$0 stop $dir' first" >&2
    exit 1
  fi
  mkdir -p "$dir"
  dir=$(cd "$dir" && pwd)
  cluster=""
  declare -a clients peers
  for i in $(seq 0 $((members - 1))); do
    clients[$i]=$(free_port)
    peers[$i]=$(free_port)
    cluster+="${cluster:+,}m$i=http://127.0.0.1:${peers[$i]}"
  done
  token="orc-$(basename "$dir")-$$"
  : >"$dir/pids"
  endpoint=""
  for i in $(seq 0 $((members - 1))); do
    etcd --name "m$i" --data-dir "$dir/m$i" \
      --listen-client-urls "http://127.0.0.1:${clients[$i]}" \
      --advertise-client-urls "http://127.0.0.1:${clients[$i]}" \
      --listen-peer-urls "http://127.0.0.1:${peers[$i]}" \
      --initial-advertise-peer-urls "http://127.0.0.1:${peers[$i]}" \
      --initial-cluster "$cluster" --initial-cluster-token "$token" \
      --initial-cluster-state new --logger=zap --log-outputs=stderr \
      >/dev/null 2>"$dir/m$i.log" &
    echo $! >>"$dir/pids"
    endpoint+="${endpoint:+,}127.0.0.1:${clients[$i]}"
  done
  echo "etcd://$endpoint" >"$dir/endpoint"
  urls=$(sed 's|^etcd://||; s|\([^,]*\)|http://\1|g' "$dir/endpoint")
  for _ in $(seq 1 60); do
    if ETCDCTL_API=3 etcdctl --endpoints "$urls" --dial-timeout=1s --command-timeout=2s \
      endpoint health >/dev/null 2>&1; then
      cat "$dir/endpoint"
      exit 0
    fi
    sleep 0.5
  done
  echo "etcd cluster in $dir did not become healthy within 30 s; logs: $dir/m*.log" >&2
  "$0" stop "$dir"
  exit 1
  ;;
endpoint)
  cat "$dir/endpoint"
  ;;
stop)
  if [ -f "$dir/pids" ]; then
    while read -r pid; do
      kill "$pid" 2>/dev/null || true
    done <"$dir/pids"
    while read -r pid; do
      for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      kill -9 "$pid" 2>/dev/null || true
    done <"$dir/pids"
  fi
  rm -rf "$dir"
  ;;
*)
  usage
  ;;
esac
