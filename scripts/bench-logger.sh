#!/usr/bin/env bash
# CPU the container logger (`orc container-logger`, what the shim runs for every
# container) spends on a chatty container's output, with and without log rotation.
# The logger is fed MEGABYTES of 100-byte lines on its stdout pipe (fd 3), as the shim
# would, and its user+system CPU is measured with /usr/bin/time.
#
#   scripts/bench-logger.sh [ORC_BINARY] [MEGABYTES] [ROUNDS]
#
# Needs no root. Prints one line per setting: CPU seconds per round (median) and per MB.
set -euo pipefail

ORC=${1:-target/release/orc}
MB=${2:-100}
ROUNDS=${3:-5}
[ -x "$ORC" ] || { echo "$ORC not found: build it (cargo build --release)" >&2; exit 1; }
[ -x /usr/bin/time ] || { echo "/usr/bin/time not found: apt-get install time" >&2; exit 1; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
head -c 99 /dev/zero | tr '\0' 'x' >"$dir/line"
LINE=$(cat "$dir/line")
# (yes ends with SIGPIPE: not a failure here.)
head -c "${MB}M" < <(yes "$LINE") >"$dir/input"

# bench LABEL LOGGER_ARGS...
bench() {
  local label=$1
  shift
  local samples=()
  for _ in $(seq 1 "$ROUNDS"); do
    rm -rf "$dir/logs"
    mkdir -p "$dir/logs"
    /usr/bin/time -f "%U %S" -o "$dir/time" \
      "$ORC" container-logger "$dir/logs/0.log" "$@" 3<"$dir/input" 4</dev/null 5>/dev/null
    samples+=("$(awk '{printf "%.2f", $1 + $2}' "$dir/time")")
  done
  local median
  median=$(printf '%s\n' "${samples[@]}" | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  local kept
  kept=$(du -sk "$dir/logs" | awk '{print $1}')
  printf '%-34s %6s s CPU per %s MB (%s ms/MB), %s KiB kept, %s files\n' \
    "$label" "$median" "$MB" "$(awk -v m="$median" -v n="$MB" 'BEGIN {printf "%.1f", m * 1000 / n}')" \
    "$kept" "$(ls "$dir/logs" | wc -l)"
}

bench "no rotation"
bench "rotation 10Mi x 5 (default)" --max-size 10485760 --max-files 5
bench "rotation 1Mi x 5" --max-size 1048576 --max-files 5
