"""orc driven by the official Python client (PyPI `kubernetes`): a real pod's exec (over
the websocket protocol), followed logs and port-forward.

Run by tests/clients.rs as `python python_pods.py KUBECONFIG POD NAMESPACE` against a
server with its agent, once the pod (a busybox printing numbered lines and serving
HTTP on 8080) runs. Every check runs even when an earlier one failed; the exit status
is the number of failed checks.
"""

import json
import sys
import time
import traceback

from kubernetes import client, config, watch
from kubernetes.stream import portforward, stream
from kubernetes.stream.ws_client import ERROR_CHANNEL

CHECKS = []


def check(fn):
    CHECKS.append(fn)
    return fn


def expect(cond, what):
    if not cond:
        raise AssertionError(what)


POD, NS = sys.argv[2], sys.argv[3]


@check
def exec_collects_output():
    core = client.CoreV1Api()
    out = stream(
        core.connect_get_namespaced_pod_exec,
        POD,
        NS,
        command=["sh", "-c", "echo hello from $(hostname); echo to-stderr >&2"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
    )
    expect(f"hello from {POD}" in out and "to-stderr" in out, repr(out))


@check
def exec_with_stdin_and_exit_code():
    core = client.CoreV1Api()
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        POD,
        NS,
        command=["sh", "-c", "read line; echo got:$line; exit 3"],
        stderr=True,
        stdin=True,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    ws.write_stdin("ping\n")
    out = ""
    deadline = time.monotonic() + 15
    while ws.is_open() and time.monotonic() < deadline:
        ws.update(timeout=1)
        out += ws.read_stdout()
    ws.close()
    expect("got:ping" in out, repr(out))
    expect(ws.returncode == 3, f"returncode {ws.returncode}")


@check
def exec_of_a_missing_command_fails():
    core = client.CoreV1Api()
    ws = stream(
        core.connect_get_namespaced_pod_exec,
        POD,
        NS,
        command=["/no/such/binary"],
        stderr=True,
        stdin=False,
        stdout=True,
        tty=False,
        _preload_content=False,
    )
    ws.run_forever(timeout=15)
    # The final Status is an InternalError whose cause is the runtime's message, as
    # upstream's (whose text the client's returncode cannot parse as a number).
    status = json.loads(ws.read_channel(ERROR_CHANNEL))
    expect(status["status"] == "Failure" and status["reason"] == "InternalError", status)
    expect("/no/such/binary" in status["details"]["causes"][0]["message"], status)


@check
def logs_read_and_followed():
    core = client.CoreV1Api()
    text = core.read_namespaced_pod_log(POD, NS, tail_lines=2)
    lines = text.strip().split("\n")
    expect(len(lines) == 2 and all(line.startswith("line ") for line in lines), repr(text))
    # Follow: new lines arrive as the container writes them.
    resp = core.read_namespaced_pod_log(POD, NS, follow=True, tail_lines=1, _preload_content=False)
    seen = []
    began = time.monotonic()
    for chunk in resp.stream(64):
        seen += [line for line in chunk.decode().split("\n") if line]
        if len(seen) >= 4:
            break
        expect(time.monotonic() - began < 15, f"too slow: {seen}")
    resp.release_conn()
    numbers = [int(line.split()[1]) for line in seen[:4] if line.startswith("line ")]
    expect(len(numbers) == 4 and numbers == sorted(numbers) and numbers[-1] > numbers[0], seen)
    # watch.Watch().stream over the log (the client's documented way to follow).
    w = watch.Watch()
    got = []
    for line in w.stream(core.read_namespaced_pod_log, name=POD, namespace=NS, tail_lines=1, follow=True):
        got.append(line)
        if len(got) == 3:
            w.stop()
    expect(all(line.startswith("line ") for line in got), got)
    ts = core.read_namespaced_pod_log(POD, NS, tail_lines=1, timestamps=True)
    expect(ts[:4].isdigit() and "Z line " in ts, repr(ts))


@check
def port_forward_reaches_the_pod():
    core = client.CoreV1Api()
    pf = portforward(core.connect_get_namespaced_pod_portforward, POD, NS, ports="8080")
    sock = pf.socket(8080)
    sock.setblocking(True)
    sock.settimeout(10)
    sock.sendall(b"GET / HTTP/1.0\r\nHost: pod\r\n\r\n")
    reply = b""
    while True:
        data = sock.recv(1024)
        if not data:
            break
        reply += data
    sock.close()
    expect(reply.startswith(b"HTTP/1.") and f"{POD}\n".encode() in reply, reply)
    expect(pf.error(8080) is None, pf.error(8080))
    # A port nothing listens on: the forward reports an error for it.
    pf2 = portforward(core.connect_get_namespaced_pod_portforward, POD, NS, ports="9")
    s2 = pf2.socket(9)
    s2.setblocking(True)
    s2.settimeout(10)
    try:
        s2.sendall(b"x")
        s2.recv(10)
    except OSError:
        pass
    deadline = time.monotonic() + 10
    while pf2.error(9) is None and time.monotonic() < deadline:
        time.sleep(0.2)
    expect(pf2.error(9), "no error for a closed port")
    s2.close()


def main():
    config.load_kube_config(config_file=sys.argv[1])
    failed = 0
    for fn in CHECKS:
        began = time.monotonic()
        try:
            fn()
            print(f"ok   {fn.__name__} ({time.monotonic() - began:.1f}s)", flush=True)
        except Exception:
            failed += 1
            print(f"FAIL {fn.__name__}:\n{traceback.format_exc()}", flush=True)
    print(f"python pods: {len(CHECKS) - failed} of {len(CHECKS)} checks passed", flush=True)
    sys.exit(failed)


if __name__ == "__main__":
    main()
