#!/usr/bin/env bash
# Runs orc's whole test suite: the lint gates (rustfmt, clippy with warnings as errors),
# then unit tests and integration tests against the real binary and the real kubectl.
# Installs the system packages the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
# A toolchain install-deps.sh just installed with rustup is not on PATH yet.
command -v cargo >/dev/null 2>&1 || . "$HOME/.cargo/env"
command -v kubectl >/dev/null 2>&1 || {
  echo "test.sh: kubectl not found: the integration tests drive the real kubectl (v1.32)" >&2
  exit 1
}
for bin in etcd etcdctl; do
  command -v "$bin" >/dev/null 2>&1 || {
    echo "test.sh: $bin not found: the etcd datastore tests start a private etcd (Debian's etcd-server, etcd-client)" >&2
    exit 1
  }
done

# The lint gates need rustfmt and clippy; add them when missing (a machine that already
# has them carries on even when rustup cannot reach the network).
for component in "rustfmt:fmt" "clippy:clippy"; do
  name=${component%%:*} subcommand=${component#*:}
  cargo "$subcommand" --version >/dev/null 2>&1 || rustup component add "$name" || {
    echo "test.sh: cargo $subcommand is missing and 'rustup component add $name' failed" >&2
    exit 1
  }
done
cargo fmt --all -- --check
cargo clippy --locked --all-targets -- -D warnings

cargo build --locked --all-targets
# The tests run agents in network namespaces of their own (or with orc's tables turned
# off): any orc nftables table they leave in the host's namespace is a bug.
orc_tables() { { nft list tables 2>/dev/null || true; } | awk '$3 ~ /^orc/ { print $2 " " $3 }' | sort; }
tables_before=$(orc_tables)
cargo test --locked -- --test-threads="${ORC_TEST_THREADS:-4}"
left=$(comm -13 <(echo "$tables_before") <(orc_tables) | paste -sd, -)
if [[ -n "$left" ]]; then
  echo "test.sh: the tests left nftables tables in the host's network namespace: $left" >&2
  exit 1
fi
