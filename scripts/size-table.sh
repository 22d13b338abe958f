#!/usr/bin/env bash
# Measures what each size option buys for the static x86_64 binary (README, "Release
# binaries"): builds `orc` for x86_64-unknown-linux-musl once per variant, each in its own
# target directory under target/size/ (every variant rebuilds everything: on 2 cores
# about 15 minutes each), and prints a Markdown table of the stripped sizes.
#
#   scripts/size-table.sh [VARIANT...]     (default: all; names in the table below)
#
# Needs what scripts/release.sh needs (musl-tools, the Rust musl target).
set -euo pipefail
cd "$(dirname "$0")/.."
target=x86_64-unknown-linux-musl
command -v musl-gcc >/dev/null 2>&1 || { echo "size-table.sh: needs musl-gcc (apt-get install musl-tools)" >&2; exit 1; }
rustup target list --installed | grep -qx "$target" || rustup target add "$target"
export CC_x86_64_unknown_linux_musl=musl-gcc
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS="-C target-feature=+crt-static"

# name | profile | extra cargo arguments | description
variants=(
    "release|release||\`release\`: opt-level 3, thin LTO, 4 codegen units"
    "dist-o3|dist|--config profile.dist.opt-level=3|opt-level 3, fat LTO, 1 codegen unit"
    "dist|dist||\`dist\`: opt-level \"s\", fat LTO, 1 codegen unit (the release binaries)"
    "dist-z|dist|--config profile.dist.opt-level=\"z\"|\`dist\` with opt-level \"z\""
    "dist-cgu16|dist|--config profile.dist.codegen-units=16|\`dist\` with 16 codegen units"
    "dist-abort|dist|--config profile.dist.panic=\"abort\"|\`dist\` with panic = \"abort\" (not used: a panicking request must become a 500)"
    "dist-musl-malloc|dist|--features musl-malloc|\`dist\` with musl's allocator instead of mimalloc"
)
wanted=("$@")
echo "| variant | size |"
echo "| --- | --- |"
for v in "${variants[@]}"; do
    IFS='|' read -r name profile extra description <<<"$v"
    if [[ ${#wanted[@]} -gt 0 && " ${wanted[*]} " != *" $name "* ]]; then continue; fi
    dir=target/size/$name
    # shellcheck disable=SC2086 # extra holds whole cargo arguments
    cargo build --locked --quiet --bin orc --profile "$profile" --target "$target" $extra \
        --target-dir "$dir" >&2
    size=$(stat -c %s "$dir/$target/$profile/orc")
    printf '| %s | %s B (%s MiB) |\n' "$description" "$(sed -E ':a;s/([0-9])([0-9]{3})($|,)/\1,\2\3/;ta' <<<"$size")" \
        "$(awk -v s="$size" 'BEGIN { printf "%.1f", s / 1048576 }')"
done
