#!/usr/bin/env bash
# Installs orc on this machine (Debian / Raspberry Pi OS, as root) and starts it:
#
#   sudo scripts/install.sh [FLAG...]                                # a server
#   sudo ORC_URL=https://SERVER:6443 ORC_TOKEN=TOKEN scripts/install.sh [FLAG...]   # an agent
#
# FLAGs go to `orc server` (or `orc agent`); /etc/orc/config.yaml holds flags too (keys
# are flag names: `tls-san: [my.host]`). The binary comes from ORC_BINARY=PATH, else from
# a release file for this machine beside the script (orc-x86_64-unknown-linux-musl,
# orc-aarch64-unknown-linux-musl, as scripts/release.sh writes them), and is built from
# source with cargo only when there is none. containerd, runc and nftables are installed
# with apt when missing, and on a server kubectl (scripts/install-kubectl.sh). Where
# systemd runs, the unit (orc.service or orc-agent.service, from the binary's embedded/)
# is written, enabled and started; elsewhere (containers, CI) orc runs in the
# foreground. Running it again upgrades in place. The uninstall script goes beside the
# binary as orc-uninstall.sh.
#
# Environment: ORC_BINARY, ORC_URL, ORC_TOKEN, ORC_INSTALL_DIR [/usr/local/bin],
# ORC_SYSTEMD_DIR [/etc/systemd/system], ORC_ENV_DIR [/etc/default] (where the unit's
# environment file goes), ORC_SKIP_PACKAGES=1 (leave apt alone), ORC_NO_START=1
# (install only), ORC_NO_SYSTEMD=1 (run in the foreground even where systemd runs).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)

say() { echo "install.sh: $*" >&2; }
die() { say "$*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "run as root (sudo $0): orc installs packages and manages containers"
install_dir=${ORC_INSTALL_DIR:-/usr/local/bin}
systemd_dir=${ORC_SYSTEMD_DIR:-/etc/systemd/system}
if [[ -n "${ORC_URL:-}" ]]; then
    [[ -n "${ORC_TOKEN:-}" ]] || die "ORC_URL is set but ORC_TOKEN is not: give the server's join token (orc token on the server)"
    role=agent unit=orc-agent
else
    role=server unit=orc
fi

# 1. The binary: given, beside the script, or built.
case $(uname -m) in
    x86_64 | amd64) target=x86_64-unknown-linux-musl ;;
    aarch64 | arm64) target=aarch64-unknown-linux-musl ;;
    *) target="" ;;
esac
binary=${ORC_BINARY:-}
if [[ -z "$binary" && -n "$target" ]]; then
    for candidate in "$here/orc-$target" "$here/../dist/orc-$target"; do
        [[ -f "$candidate" ]] && { binary=$candidate; break; }
    done
fi
if [[ -n "$binary" ]]; then
    [[ -f "$binary" ]] || die "ORC_BINARY=$binary: no such file"
    if [[ -f "$binary.sha256" ]]; then
        (cd "$(dirname "$binary")" && sha256sum --quiet -c "$(basename "$binary").sha256") \
            || die "$binary does not match $binary.sha256"
    fi
else
    [[ -f "$here/../Cargo.toml" ]] || die "no orc binary for $(uname -m): set ORC_BINARY=PATH or put orc-$target beside this script"
    say "no prebuilt binary: building from source (this takes minutes)"
    bash "$here/install-deps.sh"
    command -v cargo >/dev/null 2>&1 || . "$HOME/.cargo/env" 2>/dev/null \
        || die "no prebuilt binary and no Rust toolchain: set ORC_BINARY=PATH, or install Rust (https://rustup.rs)"
    (cd "$here/.." && cargo build --release --locked)
    binary="$here/../target/release/orc"
fi
"$binary" version >/dev/null 2>&1 || die "$binary does not run on this machine ($(uname -m))"

# 2. What orc runs containers with.
if [[ "${ORC_SKIP_PACKAGES:-}" != 1 ]]; then
    missing=()
    for p in containerd runc nftables; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
    done
    if [[ ${#missing[@]} -gt 0 ]]; then
        say "installing ${missing[*]} with apt"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
    # A server's users drive it with kubectl.
    if [[ $role == server ]] && ! command -v kubectl >/dev/null 2>&1; then
        bash "$here/install-kubectl.sh" \
            || say "kubectl could not be installed: install it as https://kubernetes.io/docs/tasks/tools/ shows; orc goes on"
    fi
fi

# 3. The binary and the uninstall script, replaced atomically (a running orc keeps its
# old file until it restarts).
systemd=false
[[ -d /run/systemd/system && "${ORC_NO_SYSTEMD:-}" != 1 ]] && command -v systemctl >/dev/null 2>&1 && systemd=true
mkdir -p "$install_dir"
install -m 0755 "$binary" "$install_dir/.orc.new"
mv -f "$install_dir/.orc.new" "$install_dir/orc"
install -m 0755 "$here/uninstall.sh" "$install_dir/orc-uninstall.sh"
say "installed $install_dir/orc ($("$install_dir/orc" version | head -1))"

args=("$@")
env_dir=${ORC_ENV_DIR:-/etc/default}
run=("$install_dir/orc" "$role" "${args[@]}")

# 4. The systemd unit (from the binary's embedded/) and its environment file (0600:
# an agent's join token), where systemd runs or ORC_SYSTEMD_DIR asks for them.
if $systemd || [[ -n "${ORC_SYSTEMD_DIR:-}" ]]; then
    mkdir -p "$systemd_dir" "$env_dir"
    exec_start="ExecStart=$install_dir/orc $role"
    for a in "${args[@]}"; do exec_start+=" $(printf '%q' "$a")"; done
    "$install_dir/orc" embedded "systemd/$unit.service" \
        | sed -e "s|^ExecStart=.*|$exec_start|" \
              -e "s|^EnvironmentFile=-.*|EnvironmentFile=-$env_dir/$unit|" \
        >"$systemd_dir/$unit.service"
    (
        umask 077
        echo "# Written by orc's install.sh: ORC_* variables are orc's flags."
        if [[ $role == agent ]]; then
            echo "ORC_JOIN=$ORC_URL"
            echo "ORC_TOKEN=$ORC_TOKEN"
        fi
    ) >"$env_dir/$unit.tmp"
    chmod 0600 "$env_dir/$unit.tmp"
    mv -f "$env_dir/$unit.tmp" "$env_dir/$unit"
    say "wrote $systemd_dir/$unit.service and $env_dir/$unit"
fi
if [[ "${ORC_NO_START:-}" == 1 ]]; then
    say "installed; not started (ORC_NO_START=1)"
    exit 0
fi

if $systemd; then
    systemctl daemon-reload
    systemctl enable "$unit.service" >/dev/null 2>&1
    systemctl restart "$unit.service"
    say "started $unit.service (journalctl -u $unit -f follows it)"
    if [[ $role == server ]]; then
        for _ in $(seq 1 100); do
            [[ -s /etc/orc/orc.yaml ]] && break
            sleep 0.2
        done
        echo "kubeconfig: export KUBECONFIG=/etc/orc/orc.yaml"
        echo "join a node: ORC_URL=https://$(hostname -I 2>/dev/null | awk '{print $1}'):6443 ORC_TOKEN=<sudo orc token, on this machine> sudo ./install.sh"
    fi
    exit 0
fi

# 5. No systemd (a container, CI): orc in the foreground.
if [[ $role == agent ]]; then
    export ORC_JOIN=$ORC_URL ORC_TOKEN
    say "no systemd here: running orc agent in the foreground (Ctrl-C stops it)"
else
    say "no systemd here: running orc server in the foreground (Ctrl-C stops it)"
    say "kubeconfig: export KUBECONFIG=/etc/orc/orc.yaml (or --write-kubeconfig); join a node: ORC_URL=https://THIS-HOST:6443 ORC_TOKEN=\$(orc token) ./install.sh"
fi
exec "${run[@]}"
