#!/usr/bin/env bash
# Unpacks kubectl v1.20 (Debian's kubernetes-client package) into a private directory,
# /opt/orc-test/kubectl-1.20/kubectl, when it is not there yet. Nothing is installed on
# PATH: tests/kubectl_basics.rs runs it to check /openapi/v2, which kubectl before 1.27
# reads for client-side validation and explain. Run as root (it writes under /opt).
set -euo pipefail
dir=${ORC_KUBECTL_1_20_DIR:-/opt/orc-test/kubectl-1.20}
[[ -x "$dir/kubectl" ]] && exit 0
say() { echo "install-kubectl-1.20.sh: $*" >&2; }
[[ $(id -u) -eq 0 ]] || { say "$dir/kubectl is missing: run as root to unpack it (sudo $0)"; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 0755 "$tmp"
download() { (cd "$tmp" && apt-get download -qq kubernetes-client >/dev/null 2>&1); }
if ! download; then
    apt-get update -qq
    download || { say "apt-get download kubernetes-client failed (is Debian's mirror reachable?)"; exit 1; }
fi
dpkg -x "$tmp"/kubernetes-client_*.deb "$tmp/root"
install -D -m 0755 "$tmp/root/usr/bin/kubectl" "$dir/kubectl"
say "unpacked $("$dir/kubectl" version --client --short 2>/dev/null || echo kubectl) into $dir"
