#!/usr/bin/env bash
# Cached-object CPU check (issue 17 part 7): `orc server --disable-agent` on loopback, N pods
# (default 10,000) created by 16 HTTPS clients: the server CPU the creates cost (with the
# scheduler's work on them), RSS, then list latencies (all, a label selector, a field
# selector, one 500-item page). Usage: scripts/bench-cache-cpu.sh ORC_BINARY [N]
set -euo pipefail
bin=$1; n=${2:-10000}
dir=$(mktemp -d /run/orc-bench-cache-XXXX); port=16744
"$bin" server --data-dir "$dir/data" --bind-address 127.0.0.1 --https-port $port \
  --write-kubeconfig "$dir/kc" --disable-agent --log-level warn 2>"$dir/log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$dir"' EXIT
for _ in $(seq 1 300); do [[ -s $dir/kc ]] && kubectl --kubeconfig "$dir/kc" get --raw /readyz >/dev/null 2>&1 && break; sleep 0.2; done
python3 - "$dir/kc" "$n" "$pid" <<'PY'
import base64, http.client, json, os, re, ssl, sys, tempfile, threading, time
kubeconfig, total, pid = open(sys.argv[1]).read(), int(sys.argv[2]), sys.argv[3]
tck = os.sysconf("SC_CLK_TCK")
def cpu():
    f = open("/proc/%s/stat" % pid).read().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / tck
def rss():
    for l in open("/proc/%s/status" % pid):
        if l.startswith("VmRSS"): return int(l.split()[1]) / 1024
field = lambda name: re.search(name + r": *(\S+)", kubeconfig).group(1)
host, port = re.match(r"https://([^:/]+):(\d+)", field("server")).groups()
files = {}
for name in ["certificate-authority-data", "client-certificate-data", "client-key-data"]:
    f = tempfile.NamedTemporaryFile(delete=False); f.write(base64.b64decode(field(name))); f.close(); files[name] = f.name
ctx = ssl.create_default_context(cafile=files["certificate-authority-data"]); ctx.check_hostname = False
ctx.load_cert_chain(files["client-certificate-data"], files["client-key-data"])
def pod(i):
    return json.dumps({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "api-%05d" % i, "labels": {"app": "mem", "i": str(i % 100)}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
            "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}})
def worker(w):
    conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=60)
    for i in range(w, total, 16):
        conn.request("POST", "/api/v1/namespaces/default/pods", pod(i), {"Content-Type": "application/json"})
        r = conn.getresponse(); r.read(); assert r.status == 201, r.status
c0 = cpu(); t0 = time.monotonic()
threads = [threading.Thread(target=worker, args=(w,)) for w in range(16)]
[t.start() for t in threads]; [t.join() for t in threads]
t1 = time.monotonic(); c1 = cpu()
print("creates: %.0f/s, server CPU %.1f s for %d creates (%.2f ms each), RSS %.1f MB" % (total / (t1 - t0), c1 - c0, total, (c1 - c0) * 1000 / total, rss()))
time.sleep(30); c2 = cpu()
print("next 30 s (scheduler, events): server CPU %.1f s, RSS %.1f MB" % (c2 - c1, rss()))
conn = http.client.HTTPSConnection(host, int(port), context=ctx, timeout=120)
def get(path):
    times = []
    for _ in range(3):
        s = time.monotonic(); conn.request("GET", path); r = conn.getresponse(); body = r.read(); assert r.status == 200
        times.append(time.monotonic() - s)
    return times[0] * 1000, min(times) * 1000, len(json.loads(body)["items"])
for name, path in [("list all (JSON)", "/api/v1/namespaces/default/pods"),
                   ("list labelSelector i=7", "/api/v1/namespaces/default/pods?labelSelector=i%3D7"),
                   ("list fieldSelector spec.nodeName=x", "/api/v1/pods?fieldSelector=spec.nodeName%3Dx"),
                   ("list limit=500 (first page)", "/api/v1/namespaces/default/pods?limit=500")]:
    first, ms, items = get(path)
    print("%-36s first %7.1f ms, best of 3: %7.1f ms (%d items), RSS %.1f MB" % (name, first, ms, items, rss()))
for f in files.values(): os.unlink(f)
PY
