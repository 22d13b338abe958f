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
# Test binaries that mostly wait (failover and eviction windows, an
# unreachable server's timeouts) run beside the others instead of after them: each test
# has its own directories, ports, network namespaces and containerd, so they do not meet.
waiting=(ha_failover failover hardening_offline)
others=()
for file in tests/*.rs; do
  name=$(basename "$file" .rs)
  [[ " ${waiting[*]} " == *" $name "* ]] || others+=(--test "$name")
done
# cargo holds the target directory's lock while it runs tests: these executables are
# run directly (from the package root, as cargo does).
mapfile -t waiting_bins < <(
  cargo test --locked --no-run --message-format=json $(printf -- '--test %s ' "${waiting[@]}") |
    python3 -c '
import json, sys
for line in sys.stdin:
    m = json.loads(line)
    if m.get("reason") == "compiler-artifact" and m.get("executable") and m["target"]["kind"] == ["test"]:
        print(m["executable"])'
)
[[ ${#waiting_bins[@]} -eq ${#waiting[@]} ]] || {
  echo "test.sh: expected ${#waiting[@]} test executables for ${waiting[*]}, got: ${waiting_bins[*]}" >&2
  exit 1
}
waiting_log=$(mktemp)
(
  failed=0
  for bin in "${waiting_bins[@]}"; do
    echo "     Running $bin"
    "$bin" --test-threads=2 || failed=1
  done
  exit "$failed"
) >"$waiting_log" 2>&1 &
waiting_pid=$!
status=0
cargo test --locked --lib --bins "${others[@]}" -- --test-threads="${ORC_TEST_THREADS:-4}" || status=$?
cargo test --locked --doc || status=$?
wait "$waiting_pid" || status=$?
echo "test.sh: the test binaries that ran beside the others (${waiting[*]}):"
cat "$waiting_log"
rm -f "$waiting_log"
[[ $status -eq 0 ]] || exit "$status"
left=$(comm -13 <(echo "$tables_before") <(orc_tables) | paste -sd, -)
if [[ -n "$left" ]]; then
  echo "test.sh: the tests left nftables tables in the host's network namespace: $left" >&2
  exit 1
fi
