#!/usr/bin/env bash
# Watch memory (issue 11, item 3): RSS growth of an `orc server` for N watches that
# never read, on a namespace holding four 1 MB ConfigMaps that are then modified a few
# times. Prints RSS before and after and the growth.
#
#   scripts/bench-watch-memory.sh            # 300 watches, target/release/orc if built
#   ORC_BIN=path/to/orc WATCHES=2000 scripts/bench-watch-memory.sh
#
# Needs python3 and kubectl. Everything stays on 127.0.0.1; the server runs from a
# temporary data dir and is killed at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

WATCHES=${WATCHES:-300}
MODIFICATIONS=${MODIFICATIONS:-3}
if [[ -z "${ORC_BIN:-}" ]]; then
    if [[ -x target/release/orc ]]; then ORC_BIN=target/release/orc; else ORC_BIN=target/debug/orc; fi
fi
[[ -x "$ORC_BIN" ]] || { echo "no orc binary at $ORC_BIN: cargo build --release" >&2; exit 1; }

work=$(mktemp -d)
server_pid=""
clients_pid=""
cleanup() {
    [[ -n "$clients_pid" ]] && kill "$clients_pid" 2>/dev/null || true
    [[ -n "$server_pid" ]] && kill "$server_pid" 2>/dev/null || true
    wait 2>/dev/null || true
    rm -rf "$work"
}
trap cleanup EXIT

# Builds before the per-user watch cap have no flag for it.
extra=()
if "$ORC_BIN" server --help | grep -q -- --max-watches-per-user; then
    extra=(--max-watches-per-user $((WATCHES + 100)))
fi
# Each watch here is a connection of its own: make room beyond the default cap (1,024).
if "$ORC_BIN" server --help | grep -q -- --max-connections; then
    extra+=(--max-connections $((WATCHES + 100)))
    ulimit -n $((WATCHES * 2 + 1024)) 2>/dev/null || true
fi
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
kubeconfig="$work/kubeconfig.yaml"
"$ORC_BIN" server --data-dir "$work/data" --bind-address 127.0.0.1 --https-port "$port" \
    --write-kubeconfig "$kubeconfig" --disable-agent "${extra[@]}" 2>"$work/server.log" &
server_pid=$!

rss_mb() { awk '/^VmRSS:/ {printf "%.0f", $2 / 1024}' "/proc/$server_pid/status"; }
kc() { KUBECONFIG="$kubeconfig" kubectl "$@"; }

for _ in $(seq 1 200); do
    [[ -s "$kubeconfig" ]] && kc get ns default >/dev/null 2>&1 && break
    sleep 0.1
done
kc get ns default >/dev/null

kc config view --raw -o jsonpath='{.clusters[0].cluster.certificate-authority-data}' | base64 -d >"$work/ca.pem"
kc config view --raw -o jsonpath='{.users[0].user.client-certificate-data}' | base64 -d >"$work/cert.pem"
kc config view --raw -o jsonpath='{.users[0].user.client-key-data}' | base64 -d >"$work/key.pem"

kc create namespace bench >/dev/null
head -c 1000000 /dev/zero | tr '\0' 'x' >"$work/blob"
for i in 1 2 3 4; do
    kc -n bench create configmap "big-$i" --from-file=data="$work/blob" >/dev/null
done
sleep 2
before=$(rss_mb)

# N watches over TLS that send their request and then never read (tiny receive buffers).
cat >"$work/clients.py" <<'EOF'
import socket, ssl, sys, time
port, n, work = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.check_hostname = False
ctx.load_verify_locations(work + "/ca.pem")
ctx.load_cert_chain(work + "/cert.pem", work + "/key.pem")
ctx.set_alpn_protocols(["http/1.1"])
held = []
for _ in range(n):
    raw = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    raw.connect(("127.0.0.1", port))
    tls = ctx.wrap_socket(raw)
    tls.sendall(b"GET /api/v1/namespaces/bench/configmaps?watch=1 HTTP/1.1\r\n"
                b"Host: 127.0.0.1\r\nAccept: application/json\r\n\r\n")
    held.append(tls)
print("open", flush=True)
time.sleep(3600)
EOF
ulimit -n 65536 2>/dev/null || true
python3 "$work/clients.py" "$port" "$WATCHES" "$work" >"$work/clients.out" &
clients_pid=$!
for _ in $(seq 1 600); do
    grep -q open "$work/clients.out" 2>/dev/null && break
    kill -0 "$clients_pid" 2>/dev/null || { echo "watch clients failed" >&2; exit 1; }
    sleep 0.1
done
sleep 2
with_watches=$(rss_mb)

for m in $(seq 1 "$MODIFICATIONS"); do
    for i in 1 2 3 4; do
        kc -n bench patch configmap "big-$i" --type merge -p "{\"data\":{\"round\":\"$m\"}}" >/dev/null
    done
done
# Let the server push what it will push, then take the highest of a few samples.
peak=$(rss_mb)
for _ in $(seq 1 10); do
    sleep 0.5
    now=$(rss_mb)
    (( now > peak )) && peak=$now
done

echo "binary:                 $ORC_BIN"
echo "non-reading watches:    $WATCHES (4 x 1 MB ConfigMaps, $MODIFICATIONS modifications each)"
echo "RSS before watches:     ${before} MB"
echo "RSS with watches open:  ${with_watches} MB"
echo "RSS after modifications: ${peak} MB"
echo "RSS growth:             $((peak - before)) MB"
