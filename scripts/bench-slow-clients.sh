#!/usr/bin/env bash
# Slow-client benchmark (issue 11, item 2): opens ORC_BENCH_SLOW (default 1000) anonymous
# TLS connections that send half a request to a fresh `orc server`, while a normal
# client keeps asking GET /api/v1/namespaces. Prints how long until the server closed
# the slow connections, the normal client's latency meanwhile, and the server's open
# file descriptors and memory. Asserts nothing.
#
# Env: ORC_BIN (default: target/debug/orc, built if missing), ORC_BENCH_SLOW,
# ORC_BENCH_HEADER_TIMEOUT (default: the server's default, 32s).
set -euo pipefail
cd "$(dirname "$0")/.."

ORC_BIN=${ORC_BIN:-target/debug/orc}
if [[ ! -x $ORC_BIN ]]; then
    cargo build --bin orc
fi
SLOW=${ORC_BENCH_SLOW:-1000}
WORK=$(mktemp -d)
PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
EXTRA=()
if [[ -n ${ORC_BENCH_HEADER_TIMEOUT:-} ]]; then
    EXTRA+=(--request-header-timeout "$ORC_BENCH_HEADER_TIMEOUT")
fi

"$ORC_BIN" server --data-dir "$WORK/data" --bind-address 127.0.0.1 --https-port "$PORT" \
    --write-kubeconfig "$WORK/kubeconfig.yaml" --disable-agent "${EXTRA[@]}" \
    >"$WORK/server.out" 2>"$WORK/server.log" &
SERVER=$!
cleanup() {
    kill "$SERVER" 2>/dev/null || true
    wait "$SERVER" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT

for _ in $(seq 1 100); do
    [[ -s $WORK/kubeconfig.yaml ]] && break
    sleep 0.1
done
[[ -s $WORK/kubeconfig.yaml ]] || { echo "server did not start:"; cat "$WORK/server.log"; exit 1; }

python3 - "$WORK" "$PORT" "$SERVER" "$SLOW" <<'EOF'
import asyncio, base64, os, re, ssl, statistics, sys, time

work, port, pid, slow = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
kubeconfig = open(f"{work}/kubeconfig.yaml").read()
def field(name):
    return base64.b64decode(re.search(name + r":\s*(\S+)", kubeconfig).group(1))
for name, path in [("certificate-authority-data", "ca.pem"), ("client-certificate-data", "cert.pem"),
                   ("client-key-data", "key.pem")]:
    open(f"{work}/{path}", "wb").write(field(name))

def context(admin):
    ctx = ssl.create_default_context(cafile=f"{work}/ca.pem")
    ctx.set_alpn_protocols(["http/1.1"])
    if admin:
        ctx.load_cert_chain(f"{work}/cert.pem", f"{work}/key.pem")
    return ctx

def fds():
    return len(os.listdir(f"/proc/{pid}/fd"))

def rss_mb():
    for line in open(f"/proc/{pid}/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0

HALF = b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: application/json\r\n"

async def slow_client(ctx, opened, closed):
    reader, writer = await asyncio.open_connection("127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1")
    writer.write(HALF)
    await writer.drain()
    start = time.monotonic()
    opened.append(start)
    try:
        await reader.read(1)
    except (ConnectionError, ssl.SSLError):
        pass
    closed.append(time.monotonic() - start)
    writer.close()

async def normal_client(stop, latencies, errors):
    ctx = context(True)
    while not stop.is_set():
        t = time.monotonic()
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(
                "127.0.0.1", port, ssl=ctx, server_hostname="127.0.0.1"), 10)
            writer.write(b"GET /api/v1/namespaces HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
            await writer.drain()
            data = await asyncio.wait_for(reader.read(), 10)
            writer.close()
            if not data.startswith(b"HTTP/1.1 200"):
                errors.append(data[:40])
            latencies.append(time.monotonic() - t)
        except Exception as e:
            errors.append(repr(e))
        await asyncio.sleep(0.2)

async def main():
    ctx = context(False)
    fds_before, rss_before = fds(), rss_mb()
    opened, closed = [], []
    t0 = time.monotonic()
    tasks = []
    for i in range(slow):
        tasks.append(asyncio.create_task(slow_client(ctx, opened, closed)))
        if i % 50 == 49:
            await asyncio.sleep(0)
    while len(opened) + len(closed) < slow and time.monotonic() - t0 < 60:
        await asyncio.sleep(0.05)
    t_open = time.monotonic() - t0
    fds_peak, rss_peak = fds(), rss_mb()
    stop = asyncio.Event()
    latencies, errors = [], []
    normal = asyncio.create_task(normal_client(stop, latencies, errors))
    done, pending = await asyncio.wait(tasks, timeout=180)
    all_closed = time.monotonic() - t0
    stop.set()
    await normal
    for p in pending:
        p.cancel()
    failed = sum(1 for t in done if t.exception() is not None)
    lat = sorted(latencies) or [0]
    print(f"slow clients:        {len(opened)} of {slow} TLS connections sending half a request (opened in {t_open:.1f}s, {failed} failed to open)")
    print(f"server fds:          {fds_before} before, {fds_peak} with the slow clients, {fds()} after")
    print(f"server RSS:          {rss_before:.0f} MB before, {rss_peak:.0f} MB with the slow clients, {rss_mb():.0f} MB after")
    if closed:
        print(f"closed by server:    {len(closed)} ({len(pending)} still open after 180s); "
              f"each after {min(closed):.1f}s..{max(closed):.1f}s; all closed {all_closed:.1f}s after the first connect")
    print(f"normal client:       {len(latencies)} requests meanwhile, {len(errors)} errors, latency "
          f"p50 {statistics.median(lat)*1e3:.0f} ms, p99 {lat[int((len(lat)-1)*0.99)]*1e3:.0f} ms, max {lat[-1]*1e3:.0f} ms")
    for e in errors[:3]:
        print(f"  error: {e}")

asyncio.run(main())
EOF
echo "server log warnings: $(grep -c WARN "$WORK/server.log" || true)"
