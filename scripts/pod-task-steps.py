#!/usr/bin/env python3
"""Per-container task timeline from kernel process events, for pod start-up profiling.

    perf record -k mono -e sched:sched_process_exec,sched:sched_process_fork,sched:sched_process_exit -a -o P.data &
    (start pods, e.g. ORC_BENCH_PODS=40 cargo bench --bench pods), then stop perf (SIGINT)
    perf script -i P.data -F comm,pid,tid,time,event,trace > P.txt
    scripts/pod-task-steps.py P.txt

Follows each container from containerd's fork of `containerd-shim-runc-v2 start` through
the shim daemon, orc's logger, `runc create` (and `runc init`), `runc start`, to the exec
of the container's command, and prints the median and 90th percentile of each step as a
Markdown table (README, "Pod startup: where the task's time goes").
"""
import re, sys, statistics
parent = {}; execs = []; exits = {}
for line in open(sys.argv[1]):
    m = re.match(r'\s*(.+?)\s+(\d+)/(\d+)\s+([\d.]+):\s+sched:(\w+):\s+(.*)', line)
    if not m: continue
    comm, pid, tid, t, ev, rest = m.groups(); pid = int(pid); t = float(t) * 1000
    if ev == 'sched_process_fork':
        c = int(re.search(r'child_pid=(\d+)', rest).group(1)); parent[c] = pid
    elif ev == 'sched_process_exec':
        execs.append((t, pid, re.search(r'filename=(\S+)', rest).group(1)))
    elif ev == 'sched_process_exit' and 'group_dead=true' in rest:
        exits[pid] = t
shim = {pid for t, pid, f in execs if f.endswith('containerd-shim-runc-v2')}
shim_exec = {pid: t for t, pid, f in execs if f.endswith('containerd-shim-runc-v2')}
def anc(p, stop):
    seen = 0
    while p in parent and seen < 50:
        p = parent[p]; seen += 1
        if p in stop: return p
    return None
daemons = {p for p in shim if parent.get(p) in shim or anc(p, shim) is not None}
rows = []
for d in daemons:
    s = anc(d, shim)
    under = [(t, p, f) for t, p, f in execs if p != d and anc(p, {d}) == d]
    under.sort()
    logger = next((t for t, p, f in under if 'orc' in f.split('/')[-1]), None)
    runcs = [(t, p) for t, p, f in under if f.endswith('/runc')]
    init = next((t for t, p, f in under if f == '/proc/self/exe'), None)
    app = next((t for t, p, f in under if f not in ('/proc/self/exe', '/dev/fd/6') and not f.endswith('/runc') and 'orc' not in f.split('/')[-1]), None)
    if not (logger and len(runcs) >= 2 and init and app): continue
    (tc, pc), (ts, psx) = runcs[0], runcs[1]
    rows.append({
        'shim start exec -> daemon exec': shim_exec[d] - shim_exec[s],
        'daemon exec -> logger exec': logger - shim_exec[d],
        'logger exec -> runc create exec (logger ready)': tc - logger,
        'runc create exec -> runc init exec': init - tc,
        'runc init exec -> runc create exits': exits.get(pc, tc) - init,
        'runc create exits -> runc start exec (round trips)': ts - exits.get(pc, tc),
        'runc start exec -> app exec': app - ts,
        'shim start exec -> app exec (task total)': app - shim_exec[s],
    })
print(f"{len(rows)} containers\n| step | p50 ms | p90 ms |\n| --- | --- | --- |")
for k in rows[0] if rows else []:
    v = sorted(r[k] for r in rows)
    print(f"| {k} | {statistics.median(v):.1f} | {v[int(0.9*(len(v)-1))]:.1f} |")
