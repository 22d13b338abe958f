#!/usr/bin/env bash
# Installs kubectl (v1.32, the version orc is tested with) when there is none, from the
# Kubernetes project's apt repository (pkgs.k8s.io), as its documentation does for
# Debian; Debian's own kubernetes-client is v1.20, too old for orc's API (it reads
# OpenAPI v2 only). A kubectl already on PATH is left alone. Run as root.
set -euo pipefail
command -v kubectl >/dev/null 2>&1 && exit 0
say() { echo "install-kubectl.sh: $*" >&2; }
[[ $(id -u) -eq 0 ]] || { say "kubectl is missing: run as root to install it (sudo $0)"; exit 1; }
minor=v1.32
keyring=/etc/apt/keyrings/kubernetes-apt-keyring.gpg
say "installing kubectl $minor from pkgs.k8s.io with apt"
missing=()
for p in curl ca-certificates gpg; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi
mkdir -p -m 0755 /etc/apt/keyrings
curl -fsSL "https://pkgs.k8s.io/core:/stable:/$minor/deb/Release.key" | gpg --batch --yes --dearmor -o "$keyring.tmp"
chmod 0644 "$keyring.tmp"
mv -f "$keyring.tmp" "$keyring"
echo "deb [signed-by=$keyring] https://pkgs.k8s.io/core:/stable:/$minor/deb/ /" >/etc/apt/sources.list.d/kubernetes.list
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends kubectl >/dev/null
say "installed $(kubectl version --client 2>/dev/null | head -1)"
