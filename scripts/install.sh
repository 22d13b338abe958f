#!/usr/bin/env bash
# Installs what orc needs (Debian / Raspberry Pi OS packages), builds and installs the
# orc binary to /usr/local/bin, then runs `orc server` in the foreground.
# Extra arguments are passed to `orc server` (e.g. --tls-san my.host).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ "$(id -u)" -ne 0 ]; then
  echo "install.sh: run as root (sudo $0): orc installs packages and manages containers" >&2
  exit 1
fi
bash scripts/install-deps.sh
if ! command -v cargo >/dev/null 2>&1; then
  echo "install.sh: cargo not found: install the Rust toolchain (https://rustup.rs) and re-run" >&2
  exit 1
fi
cargo build --release --locked
install -m 0755 target/release/orc /usr/local/bin/orc
echo "installed /usr/local/bin/orc; starting the server (Ctrl-C stops it)"
exec /usr/local/bin/orc server "$@"
