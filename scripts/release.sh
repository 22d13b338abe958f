#!/usr/bin/env bash
# Builds the release binaries: fully static, stripped `orc` for x86_64 and for 64-bit
# Raspberry Pi OS (aarch64, Pi 3/4/5), with the `dist` profile of Cargo.toml.
#
#   scripts/release.sh OUTDIR [TARGET...]
#
# writes OUTDIR/orc-<target> and OUTDIR/orc-<target>.sha256 for each target (default:
# x86_64-unknown-linux-musl aarch64-unknown-linux-musl) with install.sh,
# install-kubectl.sh and uninstall.sh beside them, and prints their sizes. Installs
# what it needs: musl-tools, gcc-aarch64-linux-gnu and file with apt, the Rust targets
# with rustup. ORC_PROFILE picks another Cargo profile (to measure size options).
set -euo pipefail
cd "$(dirname "$0")/.."

out=${1:?usage: scripts/release.sh OUTDIR [TARGET...]}
shift
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(x86_64-unknown-linux-musl aarch64-unknown-linux-musl)
profile=${ORC_PROFILE:-dist}

missing=()
command -v musl-gcc >/dev/null 2>&1 || missing+=(musl-tools)
command -v aarch64-linux-gnu-gcc >/dev/null 2>&1 || missing+=(gcc-aarch64-linux-gnu)
command -v file >/dev/null 2>&1 || missing+=(file)
[[ " ${targets[*]} " != *" aarch64-unknown-linux-musl "* ]] || command -v qemu-aarch64-static >/dev/null 2>&1 || missing+=(qemu-user-static)
if [[ ${#missing[@]} -gt 0 ]]; then
    [[ $(id -u) -eq 0 ]] || { echo "release.sh: install ${missing[*]} (as root: apt-get install ${missing[*]})" >&2; exit 1; }
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
fi
installed=$(rustup target list --installed)
for target in "${targets[@]}"; do
    grep -qx "$target" <<<"$installed" || rustup target add "$target"
done

# C parts (ring, SQLite) are compiled for musl: musl-gcc on x86_64; on aarch64 the GNU
# cross compiler, linked against the musl libc that Rust's target ships (self-contained).
export CC_x86_64_unknown_linux_musl=musl-gcc
export CC_aarch64_unknown_linux_musl=aarch64-linux-gnu-gcc
# glibc's headers turn SQLite's large-file calls into open64 and friends, which musl 1.2.4+
# does not have; off_t is 64-bit on aarch64 anyway.
export CFLAGS_aarch64_unknown_linux_musl="-DSQLITE_DISABLE_LFS"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_LINKER=aarch64-linux-gnu-gcc
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"

# Smoke run of a built binary (under qemu for another architecture): `orc version`, then
# `orc server --disable-agent` on a private port and data dir until kubectl gets its
# namespaces.
smoke() {
    local binary=$1; shift
    local runner=("$@") work port
    "${runner[@]}" "$binary" version >/dev/null
    work=$(mktemp -d)
    port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
    "${runner[@]}" "$binary" server --disable-agent --data-dir "$work/data" --bind-address 127.0.0.1 \
        --https-port "$port" --write-kubeconfig "$work/kubeconfig" 2>"$work/log" &
    local pid=$! ok=false
    for _ in $(seq 1 600); do
        if [[ -s "$work/kubeconfig" ]] && kubectl --kubeconfig "$work/kubeconfig" get namespace kube-system >/dev/null 2>&1; then
            ok=true; break
        fi
        kill -0 "$pid" 2>/dev/null || break
        sleep 0.1
    done
    kill "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    if ! $ok; then
        echo "release.sh: $binary did not serve the API:" >&2
        tail -20 "$work/log" >&2
        rm -rf "$work"
        exit 1
    fi
    rm -rf "$work"
    echo "$binary: orc version and orc server --disable-agent ran${runner[*]:+ under ${runner[*]}}"
}

mkdir -p "$out"
# The install scripts go beside the binaries: OUTDIR is all a machine needs
# (`sudo ./install.sh` there picks the binary for its architecture).
install -m 0755 scripts/install.sh scripts/install-kubectl.sh scripts/uninstall.sh "$out/"
for target in "${targets[@]}"; do
    cargo build --locked --bin orc --profile "$profile" --target "$target"
    binary="$out/orc-$target"
    install -m 0755 "${CARGO_TARGET_DIR:-target}/$target/$profile/orc" "$binary"
    description=$(file -b "$binary")
    case "$description" in
        *"statically linked"* | *"static-pie linked"*) ;;
        *) echo "release.sh: $binary is not static: $description" >&2; exit 1 ;;
    esac
    runner=()
    case "$target" in
        x86_64-*) [[ $(uname -m) == x86_64 ]] || runner=(qemu-x86_64-static) ;;
        aarch64-*) [[ $(uname -m) == aarch64 ]] || runner=(qemu-aarch64-static) ;;
    esac
    smoke "$binary" "${runner[@]}"
    (cd "$out" && sha256sum "orc-$target" >"orc-$target.sha256")
    size=$(stat -c %s "$binary")
    printf '%s: %s bytes (%s MiB), %s\n' "$binary" "$size" \
        "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')" "${description%%,*}"
done
