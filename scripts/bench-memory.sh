#!/usr/bin/env bash
# Memory benchmark (issue 17): RSS of `orc server` with its embedded agent on a private
# containerd, in a network namespace of its own:
#   idle (empty cluster) → 30 pods Running (the Raspberry Pi budget: orc + containerd
#   + shims) → 100 pods Running → all deleted → idle again;
# then the API alone (`--disable-agent`) holding ORC_BENCH_API_PODS pods (default 10,000),
# and again after a short idle.
#
#   scripts/bench-memory.sh [ORC_BINARY]      (default: a release build, target/release/orc)
#
# Env: ORC_BENCH_IDLE_SECS (default 30) idle before each idle figure; ORC_BENCH_ENV
# ("NAME=VALUE ...", e.g. "LD_PRELOAD=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2") set
# for orc only, to compare allocators and their settings; ORC_BENCH_API_PODS;
# ORC_EVICTION_HARD (the node's hard eviction thresholds; default: memory and a nearly full
# disk only); ORC_BENCH_PARTS (default "pods,api": which of the two parts to run); ORC_BENCH_MALLOC_STATS=1
# prints glibc's malloc_stats() of orc at each step of the pods part (through gdb, which
# stops orc for a moment; glibc builds only); ORC_BENCH_PROBE="COMMAND" runs COMMAND with
# orc's pid as its last argument at each step of the pods part (e.g. a smaps breakdown).
# Needs root, containerd, runc, kubectl, busybox-static (scripts/install-deps.sh).
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${1:-}
if [[ -z "$bin" ]]; then
    cargo build --release --locked --bin orc >&2
    bin=${CARGO_TARGET_DIR:-target}/release/orc
fi
bin=$(realpath "$bin")
[[ $(id -u) -eq 0 ]] || { echo "bench-memory.sh: run as root (network namespaces, containerd)" >&2; exit 1; }
idle=${ORC_BENCH_IDLE_SECS:-30}
api_pods=${ORC_BENCH_API_PODS:-10000}
read -r -a extra_env <<<"${ORC_BENCH_ENV:-}"
# The node's hard eviction thresholds (as benches/pods.rs): memory and a nearly full disk
# only, so a development machine's disk past the default 10 % free (DiskPressure: no pod
# is scheduled) does not stop the bench. ORC_EVICTION_HARD overrides.
eviction_hard=${ORC_EVICTION_HARD:-memory.available<100Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<5%}
image=docker.io/library/busybox:test
tag=$(printf '%06x' $((RANDOM * 32768 + RANDOM)))
dir=/run/orc-bench-memory-$tag ns=orc-bm-$tag
# Private ports inside the namespace (loopback of the namespace only).
port=16543 api_port=16544
pid=
cleanup() {
    if [[ -n "$pid" ]]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
    # Pod cgroups left by a failed run (the agent removes them when pods are deleted).
    for uid in $(ls "$dir/data/agent/pods" 2>/dev/null); do
        for h in /sys/fs/cgroup /sys/fs/cgroup/*; do
            [[ -d "$h/orc/pod$uid" ]] || continue
            find "$h/orc/pod$uid" -mindepth 1 -depth -type d -exec rmdir {} + 2>/dev/null || true
            rmdir "$h/orc/pod$uid" 2>/dev/null || true
        done
    done
    scripts/containerd-test-env.sh stop "$dir" >/dev/null 2>&1 || true
    ip netns del "$ns" 2>/dev/null || true
    rm -rf "$dir"
}
trap cleanup EXIT

in_ns() { nsenter --net="/var/run/netns/$ns" "$@"; }
kc() { in_ns kubectl --kubeconfig "$kubeconfig" "$@"; }
rss_kb() { awk '/^VmRSS:/ { print $2 }' "/proc/$1/status"; }
mb() { awk -v k="$1" 'BEGIN { printf "%.1f", k / 1024 }'; }
# Proportional set size of the containerd shims serving this benchmark's containerd (one
# per pod; their RSS counts the shared Go runtime pages once per shim).
shims_kb() {
    local total=0 p cmdline
    for p in /proc/[0-9]*; do
        cmdline=$({ tr '\0' ' ' <"$p/cmdline"; } 2>/dev/null) || continue
        case "$cmdline" in
            *containerd-shim*"-address $dir/containerd.sock "*)
                total=$((total + $(awk '/^Pss:/ { print $2 }' "$p/smaps_rollup" 2>/dev/null || echo 0))) ;;
        esac
    done
    echo "$total"
}
# wait_until SECONDS DESCRIPTION COMMAND...: polls every 0.2 s.
wait_until() {
    local secs=$1 what=$2; shift 2
    for _ in $(seq 1 $((secs * 5))); do
        "$@" >/dev/null 2>&1 && return 0
        sleep 0.2
    done
    echo "bench-memory.sh: $what did not happen within ${secs}s; server log:" >&2
    tail -30 "$dir/server.log" >&2
    exit 1
}
pods_yaml() { # FIRST LAST
    local i
    for i in $(seq "$1" "$2"); do
        printf -- '---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: mem-%03d\n  labels: {app: mem}\n' "$i"
        printf 'spec:\n  terminationGracePeriodSeconds: 1\n  containers:\n  - name: app\n'
        printf '    image: %s\n    imagePullPolicy: IfNotPresent\n    command: [sleep, "3600"]\n' "$image"
    done
}
running_count() {
    kc get pods -l app=mem --no-headers 2>/dev/null | awk '$3 == "Running"' | wc -l
}
all_running() { [[ $(running_count) -ge $1 ]]; }
no_pods_left() {
    [[ -z $(kc get pods -o name 2>/dev/null) ]] &&
        [[ -z $(ctr --address "$dir/containerd.sock" -n orc-bench-memory containers ls -q 2>/dev/null) ]]
}
node_ready() {
    [[ -s "$kubeconfig" ]] && [[ $(kc get node bench-node \
        -o 'jsonpath={.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null) == True ]]
}
api_ready() { [[ -s "$kubeconfig" ]] && kc get --raw /readyz; }
status_kb() { awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"; }
# glibc's malloc_stats() of orc (to its stderr, the server log): the arenas' totals.
malloc_stats() {
    local from
    from=$(wc -l <"$dir/server.log")
    gdb -p "$pid" -batch -ex 'call (void) malloc_stats()' >/dev/null 2>&1 || return 0
    tail -n +"$((from + 1))" "$dir/server.log" | awk '/^Total \(incl. mmap\):/ { t = 1 }
        t && /system bytes/ { sys = $4 } t && /in use bytes/ { use = $5 }
        END { if (sys) printf "    malloc: %.1f MB from the system, %.1f MB in use\n", sys / 1048576, use / 1048576 }'
}
report() { # LABEL
    local orc ctd shims
    orc=$(rss_kb "$pid") ctd=$(rss_kb "$(cat "$dir/containerd.pid")") shims=$(shims_kb)
    printf '%-34s orc %6s MB   containerd %5s MB   shims (PSS) %5s MB   total %6s MB\n' "$1" \
        "$(mb "$orc")" "$(mb "$ctd")" "$(mb "$shims")" "$(mb $((orc + ctd + shims)))"
    printf '    orc: anon %s MB, file %s MB, shmem %s MB, %s threads\n' "$(mb "$(status_kb "$pid" RssAnon)")" \
        "$(mb "$(status_kb "$pid" RssFile)")" "$(mb "$(status_kb "$pid" RssShmem)")" "$(status_kb "$pid" Threads)"
    [[ ${ORC_BENCH_MALLOC_STATS:-0} != 1 ]] || malloc_stats
    [[ -z ${ORC_BENCH_PROBE:-} ]] || ${ORC_BENCH_PROBE} "$pid" || true
}

mkdir -p "$dir/data/agent/images"
scripts/build-test-image.sh "$dir/data/agent/images/busybox.tar" "$image" >/dev/null
ip netns add "$ns"
ip -n "$ns" link set lo up
ip -n "$ns" link add eth0 type veth peer name lan0
ip -n "$ns" addr add 192.168.234.2/24 dev eth0
ip -n "$ns" link set lan0 up
ip -n "$ns" link set eth0 up
in_ns scripts/containerd-test-env.sh start "$dir" >/dev/null
echo "orc memory: $bin ${ORC_BENCH_ENV:+($ORC_BENCH_ENV) }$(stat -c %s "$bin") bytes, $(nproc) cores, $(date -u +%F)"

if [[ ${ORC_BENCH_PARTS:-pods,api} == *pods* ]]; then
kubeconfig=$dir/kubeconfig
# nsenter and env exec: $! is orc's pid.
nsenter --net="/var/run/netns/$ns" env ORC_EVICTION_HARD="$eviction_hard" "${extra_env[@]}" "$bin" server --data-dir "$dir/data" --bind-address 127.0.0.1 \
    --https-port "$port" --write-kubeconfig "$kubeconfig" --node-name bench-node \
    --cluster-cidr 10.196.0.0/16 --node-ip 192.168.234.2 --log-level warn \
    --containerd-socket "$dir/containerd.sock" --containerd-namespace orc-bench-memory \
    2>"$dir/server.log" &
pid=$!
wait_until 60 "node Ready" node_ready
sleep "$idle"
report "idle, empty cluster (${idle}s)"
pods_yaml 1 30 | kc create -f - >/dev/null
wait_until 120 "30 pods Running" all_running 30
sleep 5
report "30 pods Running"
pods_yaml 31 100 | kc create -f - >/dev/null
wait_until 300 "100 pods Running" all_running 100
sleep 5
report "100 pods Running"
kc delete pods -l app=mem --wait=false >/dev/null
wait_until 300 "pods and containers gone" no_pods_left
sleep "$idle"
report "idle after the 100 pods (${idle}s)"
kill "$pid"; wait "$pid" 2>/dev/null || true; pid=
fi
[[ ${ORC_BENCH_PARTS:-pods,api} == *api* ]] || exit 0

# The API alone holding many pods (no agent: they stay Pending), created 16 at a time.
kubeconfig=$dir/kubeconfig-api
nsenter --net="/var/run/netns/$ns" env "${extra_env[@]}" "$bin" server --data-dir "$dir/api-data" --bind-address 127.0.0.1 \
    --https-port "$api_port" --write-kubeconfig "$kubeconfig" --disable-agent --log-level warn \
    2>"$dir/server.log" &
pid=$!
wait_until 60 "API ready" api_ready
# 16 HTTPS clients with keep-alive (kubectl's one process per batch is slower than orc).
rate=$(in_ns python3 - "$kubeconfig" "$api_pods" <<'PY'
import base64, http.client, json, os, re, ssl, sys, tempfile, threading, time
kubeconfig, total = open(sys.argv[1]).read(), int(sys.argv[2])
field = lambda name: re.search(name + r": *(\S+)", kubeconfig).group(1)
host, port = re.match(r"https://([^:/]+):(\d+)", field("server")).groups()
files = {}
for name in ["certificate-authority-data", "client-certificate-data", "client-key-data"]:
    f = tempfile.NamedTemporaryFile(delete=False)
    f.write(base64.b64decode(field(name)))
    f.close()
    files[name] = f.name
ctx = ssl.create_default_context(cafile=files["certificate-authority-data"])
ctx.check_hostname = False
ctx.load_cert_chain(files["client-certificate-data"], files["client-key-data"])
for f in files.values():
    os.unlink(f)
def pod(i):
    return json.dumps({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "api-%05d" % i, "labels": {"app": "mem"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})
errors = []
def worker(w):
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
    for i in range(w, total, 16):
        conn.request("POST", "/api/v1/namespaces/default/pods", pod(i),
                     {"Content-Type": "application/json"})
        r = conn.getresponse()
        body = r.read()
        if r.status != 201:
            errors.append(body[:200])
            return
start = time.monotonic()
threads = [threading.Thread(target=worker, args=(w,)) for w in range(16)]
[t.start() for t in threads]
[t.join() for t in threads]
if errors:
    sys.exit("create failed: %r" % errors[0])
print("%.0f" % (total / (time.monotonic() - start)))
PY
)
count=$(kc get pods --no-headers 2>/dev/null | wc -l)
[[ $count -eq $api_pods ]] || { echo "bench-memory.sh: $count of $api_pods pods created" >&2; exit 1; }
printf '%-34s orc %6s MB   (created by 16 clients at %s/s)\n' "API holding $api_pods pods" \
    "$(mb "$(rss_kb "$pid")")" "$rate"
sleep "$idle"
printf '%-34s orc %6s MB\n' "... after ${idle}s idle" "$(mb "$(rss_kb "$pid")")"
