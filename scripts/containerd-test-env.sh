#!/usr/bin/env bash
# Starts / stops a private containerd (and optionally a private docker-registry) for tests.
#
#   scripts/containerd-test-env.sh start DIR [REGISTRY_PORT]
#       containerd at DIR/containerd.sock (root DIR/root, state DIR/state, overlayfs),
#       registry on 127.0.0.1:REGISTRY_PORT storing in DIR/registry when a port is given.
#   scripts/containerd-test-env.sh stop DIR
#       kills the tasks, shims, containerd and registry started for DIR, unmounts and removes DIR.
#
# Needs root, containerd, runc and docker-registry (scripts/install-deps.sh).
set -euo pipefail

cmd=${1:?usage: $0 start|stop DIR [REGISTRY_PORT]}
DIR=${2:?usage: $0 start|stop DIR [REGISTRY_PORT]}
PORT=${3:-}
START_TIMEOUT=${START_TIMEOUT:-20}

need() {
  command -v "$1" >/dev/null 2>&1 || { echo "$1 not found: run scripts/install-deps.sh" >&2; exit 1; }
}

wait_for() { # DESCRIPTION COMMAND...
  local what=$1; shift
  for _ in $(seq 1 $((START_TIMEOUT * 10))); do
    "$@" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "$what did not come up within ${START_TIMEOUT}s; its log:" >&2
  return 1
}

# crun (the tests' second runtime handler) refuses a hybrid cgroup layout whose cgroup2
# hierarchy holds controllers, which systemd's hybrid mode never leaves there. On a host
# booted with some (a VM whose init mounted every v1 controller but hugetlb), those are
# mounted as v1 hierarchies, as systemd would have; a host on cgroup2 alone has no
# /sys/fs/cgroup/unified and is left as it is.
v1_for_cgroup2_controllers() {
  local unified=/sys/fs/cgroup/unified c
  [ -r "$unified/cgroup.controllers" ] || return 0
  for c in $(cat "$unified/cgroup.controllers"); do
    mkdir -p "/sys/fs/cgroup/$c"
    mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c" 2>/dev/null \
      || echo "warning: cgroup controller $c stays on cgroup2: crun cannot run containers here" >&2
  done
}

start() {
  [ "$(id -u)" -eq 0 ] || { echo "containerd needs root" >&2; exit 1; }
  need containerd; need runc; need containerd-shim-runc-v2; need ctr
  v1_for_cgroup2_controllers
  mkdir -p "$DIR/root" "$DIR/state"
  DIR=$(cd "$DIR" && pwd)
  cat >"$DIR/config.toml" <<EOF
version = 2
root = "$DIR/root"
state = "$DIR/state"
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = "$DIR/containerd.sock"
[ttrpc]
  address = "$DIR/containerd.sock.ttrpc"
[debug]
  address = ""
[metrics]
  address = ""
[plugins."io.containerd.runtime.v1.linux"]
  shim_debug = false
EOF
  containerd --config "$DIR/config.toml" >"$DIR/containerd.log" 2>&1 &
  echo $! >"$DIR/containerd.pid"
  wait_for containerd ctr --address "$DIR/containerd.sock" version \
    || { cat "$DIR/containerd.log" >&2; exit 1; }

  if [ -n "$PORT" ]; then
    need docker-registry
    mkdir -p "$DIR/registry"
    cat >"$DIR/registry.yml" <<EOF
version: 0.1
log:
  level: warn
storage:
  filesystem:
    rootdirectory: $DIR/registry
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$PORT
EOF
    docker-registry serve "$DIR/registry.yml" >"$DIR/registry.log" 2>&1 &
    echo $! >"$DIR/registry.pid"
    wait_for docker-registry bash -c "exec 3<>/dev/tcp/127.0.0.1/$PORT" \
      || { cat "$DIR/registry.log" >&2; exit 1; }
  fi
  echo "containerd: $DIR/containerd.sock${PORT:+ registry: 127.0.0.1:$PORT}"
}

kill_pidfile() {
  local file=$1
  [ -f "$file" ] || return 0
  local pid; pid=$(cat "$file")
  if kill "$pid" 2>/dev/null; then
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  fi
  rm -f "$file"
}

stop() {
  [ -d "$DIR" ] || return 0
  DIR=$(cd "$DIR" && pwd)
  local sock="$DIR/containerd.sock"
  if [ -S "$sock" ] && ctr --address "$sock" version >/dev/null 2>&1; then
    for ns in $(ctr --address "$sock" namespaces ls -q 2>/dev/null); do
      for t in $(ctr --address "$sock" -n "$ns" tasks ls -q 2>/dev/null); do
        ctr --address "$sock" -n "$ns" tasks kill -s SIGKILL "$t" >/dev/null 2>&1 || true
        ctr --address "$sock" -n "$ns" tasks delete -f "$t" >/dev/null 2>&1 || true
      done
      for c in $(ctr --address "$sock" -n "$ns" containers ls -q 2>/dev/null); do
        ctr --address "$sock" -n "$ns" containers delete "$c" >/dev/null 2>&1 || true
      done
    done
  fi
  # Shims outlive containerd by design: end the ones serving this (and only this) socket.
  for p in /proc/[0-9]*; do
    local cmdline
    cmdline=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
    case "$cmdline" in
      *containerd-shim*"-address $sock "*) kill -9 "${p#/proc/}" 2>/dev/null || true ;;
    esac
  done
  kill_pidfile "$DIR/containerd.pid"
  kill_pidfile "$DIR/registry.pid"
  # Unmount anything left below DIR (rootfs of killed containers), deepest first.
  awk -v d="$DIR/" 'index($2, d) == 1 { print $2 }' /proc/self/mounts | sort -r | while read -r m; do
    umount -l "$m" 2>/dev/null || true
  done
  rm -rf "$DIR"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR [REGISTRY_PORT]" >&2; exit 2 ;;
esac
