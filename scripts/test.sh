#!/usr/bin/env bash
# Runs orc's whole test suite: unit tests and integration tests against the real
# binary and the real kubectl. Installs the system packages the tests need first.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
command -v kubectl >/dev/null 2>&1 || {
  echo "test.sh: kubectl not found: the integration tests drive the real kubectl (v1.32)" >&2
  exit 1
}
cargo build --locked --all-targets
cargo test --locked -- --test-threads="${ORC_TEST_THREADS:-4}"
