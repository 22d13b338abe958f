#!/usr/bin/env bash
# Who wakes whom during the API benchmark's 16-way creates (issue 19 part 7; root, perf).
# Runs the api bench binary (ORC_BENCH_CREATES_ONLY, one run of ORC_BENCH_RUN_PODS creates,
# default 20,000) against ORC_BIN, records every scheduler switch and wake-up on all CPUs
# for SECONDS (default 2) from 4 s after the server started, and prints per create: the
# wake-ups by waker → wakee thread group, how many found their CPU idle (a halted vCPU to
# restart), the switches into the idle task per CPU, and the same for each thread group.
# Usage: ORC_BIN=path/to/orc scripts/trace-wakeups.sh BENCH_BINARY [SECONDS]
# (BENCH_BINARY: what `cargo bench --bench api --no-run` prints; ORC_BENCH_SPIN=1 adds
# the bench's nice-19 busy loops.)
set -euo pipefail
bench=$1; secs=${2:-2}
: "${ORC_BIN:?the orc binary to measure}"
dir=$(mktemp -d /tmp/orc-wakeups-XXXX)
trap 'rm -rf "$dir"' EXIT
ORC_BENCH_CREATES_ONLY=1 ORC_BENCH_RUNS=1 ORC_BENCH_RUN_PODS=${ORC_BENCH_RUN_PODS:-20000} \
  "$bench" --bench >"$dir/bench.out" 2>&1 &
bench_pid=$!
server=""
for _ in $(seq 1 300); do
  server=$(pgrep -P "$bench_pid" -f "server --" || true)
  [[ -n $server ]] && break
  sleep 0.1
done
[[ -n $server ]] || { cat "$dir/bench.out"; echo "no server started" >&2; exit 1; }
sleep 4
perf record -q -a -e sched:sched_switch -e sched:sched_wakeup -e sched:sched_waking \
  -o "$dir/perf.data" -- sleep "$secs" 2>/dev/null
# Creates in the window: pods the server stored meanwhile are not known here, so the
# bench's own rate over the whole run stands for it.
wait "$bench_pid" || true
cat "$dir/bench.out"
rate=$(sed -n 's/^16-way run 1\/1: *\([0-9]*\)\/s.*/\1/p' "$dir/bench.out")
perf script -i "$dir/perf.data" -F comm,tid,cpu,time,event,trace 2>/dev/null |
  python3 -c '
import re, sys, collections
rate, secs = float(sys.argv[1]), float(sys.argv[2])
creates = rate * secs
def group(comm):
    comm = comm.strip()
    if comm.startswith("orc-server"): return "server worker"
    if comm.startswith("orc-store-writ"): return "server writer"
    if comm.startswith("tokio-r"): return "bench client"
    if comm.startswith("kworker"): return "kernel worker"
    if comm.startswith("swapper"): return "idle"
    if comm.startswith("perf") or comm == "sleep": return "perf"
    if comm == "api" or comm.startswith("api-"): return "bench main"
    if comm.startswith("orc"): return "server other"
    others[comm] += 1
    return "other"
others = collections.Counter()
idle_cpu = {}            # cpu -> running the idle task?
pairs = collections.Counter()
to_idle = collections.Counter()
switches = collections.Counter()
into_idle = collections.Counter()
waking = {}
line_re = re.compile(r"^\s*(.+?)\s+(\d+)\s+\[(\d+)\]\s+([\d.]+):\s+(\S+):\s+(.*)$")
for line in sys.stdin:
    m = line_re.match(line)
    if not m: continue
    comm, tid, cpu, _, event, trace = m.groups()
    cpu = int(cpu)
    if event == "sched:sched_switch":
        nxt = re.search(r"next_comm=(.+?) next_pid=(\d+)", trace)
        prev = re.search(r"prev_comm=(.+?) prev_pid=(\d+)", trace)
        idle_cpu[cpu] = nxt.group(2) == "0"
        switches[group(prev.group(1))] += 1
        if nxt.group(2) == "0": into_idle[group(prev.group(1))] += 1
    elif event == "sched:sched_waking":
        # Fired by the waker; the wake-up itself may complete on the target CPU later.
        w = re.search(r"comm=(.+?) pid=(\d+) prio=", trace)
        waking[w.group(2)] = (group(comm), cpu, group(w.group(1)))
    elif event == "sched:sched_wakeup":
        w = re.search(r"comm=(.+?) pid=(\d+) prio=\d+ target_cpu=(\d+)", trace)
        waker, from_cpu, wakee = waking.pop(w.group(2), ("?", -1, group(w.group(1))))
        target = int(w.group(3))
        pairs[(waker, wakee)] += 1
        if idle_cpu.get(target, False) and target != from_cpu:
            to_idle[(waker, wakee)] += 1
print(f"\nwake-ups per create ({creates:.0f} creates in {secs:.0f} s at {rate:.0f}/s), waker -> wakee: all / onto another, idle CPU")
for (pair, n) in pairs.most_common(14):
    print(f"  {pair[0]:>14} -> {pair[1]:<14} {n/creates:6.2f} / {to_idle[pair]/creates:5.2f}")
total = "total"
print(f"  {total:>31} {sum(pairs.values())/creates:6.2f} / {sum(to_idle.values())/creates:5.2f}")
print("context switches out per create (of which into the idle task):")
for g, n in switches.most_common(8):
    print(f"  {g:<14} {n/creates:6.2f} ({into_idle[g]/creates:.2f})")
print("the busiest threads grouped as other:", ", ".join(c for c, _ in others.most_common(6)))
' "${rate:-1}" "$secs"