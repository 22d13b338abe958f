#!/usr/bin/env bash
# Removes orc from this machine, like k3s-uninstall.sh: stops the orc processes started
# from the installed binary, kills orc's containers, removes orc's network state (the
# proxy, network-policy and pod-network nftables tables, the pod bridge, the cluster DNS link, host-gw
# routes, pod network namespaces), then the systemd units, the binary, /etc/orc and the
# data dir.
#
#   sudo scripts/uninstall.sh
#
# Environment (defaults in brackets): ORC_BIN [/usr/local/bin/orc],
# ORC_DATA_DIR [/var/lib/orc], ORC_CONFIG_DIR [/etc/orc],
# ORC_CONTAINERD_SOCKET [/run/containerd/containerd.sock], ORC_CONTAINERD_NAMESPACE [orc],
# ORC_PROXY_NFT_TABLE [orc-proxy], ORC_NETWORK_POLICY_NFT_TABLE [orc-netpol],
# ORC_POD_NFT_TABLE [orc-nat], ORC_POD_BRIDGE [orc0],
# ORC_CLUSTER_DNS [10.43.0.10], ORC_SYSTEMD_DIR [/etc/systemd/system],
# ORC_ENV_DIR [/etc/default].
# Everything missing is skipped, so running it twice is fine.
set -euo pipefail

BIN=${ORC_BIN:-/usr/local/bin/orc}
DATA_DIR=${ORC_DATA_DIR:-/var/lib/orc}
CONFIG_DIR=${ORC_CONFIG_DIR:-/etc/orc}
SOCKET=${ORC_CONTAINERD_SOCKET:-/run/containerd/containerd.sock}
CTR_NAMESPACE=${ORC_CONTAINERD_NAMESPACE:-orc}
PROXY_TABLE=${ORC_PROXY_NFT_TABLE:-orc-proxy}
NETPOL_TABLE=${ORC_NETWORK_POLICY_NFT_TABLE:-orc-netpol}
POD_TABLE=${ORC_POD_NFT_TABLE:-orc-nat}
BRIDGE=${ORC_POD_BRIDGE:-orc0}
CLUSTER_DNS=${ORC_CLUSTER_DNS:-10.43.0.10}
DNS_LINK=orc-dns # holds the cluster DNS address; on kernels without dummy links, lo does
ROUTE_PROTOCOL=79 # host-gw routes to other nodes' pod CIDRs (src/agent/net/routes.rs)

if [ "$(id -u)" -ne 0 ]; then
  echo "uninstall.sh: run as root (sudo $0): it stops orc and removes its network state" >&2
  exit 1
fi

# 0. The systemd units install.sh wrote: stopped and disabled, so nothing restarts orc.
SYSTEMD_DIR=${ORC_SYSTEMD_DIR:-/etc/systemd/system}
ENV_DIR=${ORC_ENV_DIR:-/etc/default}
for unit in orc orc-agent; do
  [ -f "$SYSTEMD_DIR/$unit.service" ] || continue
  if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now "$unit.service" >/dev/null 2>&1 || true
  fi
  rm -f "$SYSTEMD_DIR/$unit.service" "$ENV_DIR/$unit"
done
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
  systemctl daemon-reload 2>/dev/null || true
fi

# 1. orc processes started from the installed binary (servers, agents, log shims).
if [ -e "$BIN" ]; then
  bin=$(readlink -f "$BIN")
  for exe in /proc/[0-9]*/exe; do
    [ "$(readlink "$exe" 2>/dev/null)" = "$bin" ] || continue
    pid=${exe#/proc/}; pid=${pid%/exe}
    kill -TERM "$pid" 2>/dev/null || true
  done
  for _ in $(seq 1 50); do
    alive=0
    for exe in /proc/[0-9]*/exe; do
      [ "$(readlink "$exe" 2>/dev/null)" = "$bin" ] && alive=1 && break
    done
    [ "$alive" -eq 0 ] && break
    sleep 0.1
  done
fi

# 2. orc's containers (the containerd namespace orc uses; other namespaces are left).
if [ -S "$SOCKET" ] && command -v ctr >/dev/null 2>&1; then
  ctr="ctr --address $SOCKET --namespace $CTR_NAMESPACE"
  for task in $($ctr tasks list -q 2>/dev/null); do
    $ctr tasks kill --signal SIGKILL "$task" >/dev/null 2>&1 || true
  done
  for _ in $(seq 1 50); do
    [ -z "$($ctr tasks list -q 2>/dev/null)" ] && break
    for task in $($ctr tasks list -q 2>/dev/null); do
      $ctr tasks delete "$task" >/dev/null 2>&1 || true
    done
    sleep 0.1
  done
  for container in $($ctr containers list -q 2>/dev/null); do
    $ctr containers delete "$container" >/dev/null 2>&1 || true
  done
fi

# 3. Network state, in this network namespace only.
if command -v nft >/dev/null 2>&1; then
  for table in "$PROXY_TABLE" "$NETPOL_TABLE" "$POD_TABLE"; do
    nft delete table ip "$table" 2>/dev/null || true
  done
fi
for link in "$BRIDGE" "$DNS_LINK"; do
  ip link delete "$link" 2>/dev/null || true
done
ip addr delete "$CLUSTER_DNS/32" dev lo 2>/dev/null || true
ip route flush proto "$ROUTE_PROTOCOL" 2>/dev/null || true

# 4. Files: pod namespaces and volumes are mount points under the data dir.
if [ -d "$DATA_DIR" ]; then
  awk -v dir="$(readlink -f "$DATA_DIR")/" 'index($2, dir) == 1 { print $2 }' /proc/self/mounts \
    | sort -r | while read -r mount; do umount -l "$mount" 2>/dev/null || true; done
  rm -rf "$DATA_DIR"
fi
rm -rf "$CONFIG_DIR"
rm -f "$BIN" "$(dirname "$BIN")/orc-uninstall.sh"
echo "orc is uninstalled"
