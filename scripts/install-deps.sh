#!/usr/bin/env bash
# Installs everything orc needs to build, run and test on Debian / Raspberry Pi OS: the
# system packages with apt, kubectl (scripts/install-kubectl.sh), kubectl v1.20 for the
# OpenAPI v2 tests (scripts/install-kubectl-1.20.sh, into /opt/orc-test), the Python and
# Node.js Kubernetes clients for tests/clients.rs (into /opt/orc-test) and, when cargo is
# missing, the Rust toolchain with rustup (https://rustup.rs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
PKGS=(containerd runc crun nftables protobuf-compiler libprotobuf-dev etcd-server etcd-client busybox-static docker-registry skopeo iproute2 curl ca-certificates gcc libc6-dev)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# The distribution starts its own registry service; orc's tests run a private one instead.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
# Likewise Debian's etcd service: orc's tests and benchmarks start private etcd clusters.
if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet etcd 2>/dev/null; then
  systemctl stop etcd || true
  systemctl disable etcd >/dev/null 2>&1 || true
fi

SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO bash "$here/install-kubectl.sh"
$SUDO bash "$here/install-kubectl-1.20.sh"

# The second clients of tests/clients.rs: the official Python client (PyPI `kubernetes`) in a
# venv and @kubernetes/client-node in an npm prefix, both pinned, under /opt/orc-test.
CLIENTS=/opt/orc-test
PY_KUBERNETES=37.0.2
NODE_CLIENT=1.4.0
if ! "$CLIENTS/python/bin/python" -c "import kubernetes, sys; sys.exit(kubernetes.__version__ != '$PY_KUBERNETES')" 2>/dev/null; then
  command -v python3 >/dev/null 2>&1 && python3 -c 'import venv, ensurepip' 2>/dev/null || {
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends python3 python3-venv
  }
  $SUDO rm -rf "$CLIENTS/python"
  $SUDO python3 -m venv "$CLIENTS/python"
  $SUDO "$CLIENTS/python/bin/pip" install -q --disable-pip-version-check "kubernetes==$PY_KUBERNETES"
fi
if [ "$(cat "$CLIENTS/node/node_modules/@kubernetes/client-node/package.json" 2>/dev/null | grep -m1 '"version"' | tr -dc '0-9.')" != "$NODE_CLIENT" ]; then
  command -v npm >/dev/null 2>&1 || {
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends nodejs npm
  }
  $SUDO mkdir -p "$CLIENTS/node"
  $SUDO npm install --silent --no-audit --no-fund --prefix "$CLIENTS/node" "@kubernetes/client-node@$NODE_CLIENT"
fi
if ! command -v cargo >/dev/null 2>&1; then
  [ -x "$HOME/.cargo/bin/cargo" ] || {
    echo "install-deps.sh: installing the Rust toolchain with rustup (into $HOME/.cargo)" >&2
    curl --proto '=https' --tlsv1.2 -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component rustfmt,clippy >&2
  }
  echo "install-deps.sh: Rust is in $HOME/.cargo/bin: put it on PATH (. \"\$HOME/.cargo/env\")" >&2
fi
