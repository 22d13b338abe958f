//! `kubectl port-forward` through the API server to the kubelet, into the pod's network
//! namespace, on the one-node cluster of `support::kubelet` (needs root and containerd;
//! see there): both of kubectl's transports (SPDY tunneled in WebSocket, and plain SPDY),
//! two ports at once, concurrent connections, large transfers both ways, and a closed
//! port reported as kubectl reports it. Prints throughput and connect latency
//! (`scripts/bench-port-forward.sh`).

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

mod support;
use support::host::on_netns_thread;
use support::kubelet::*;

/// Pod `pf`: httpd on 8080 (an index and a 4 MiB random blob), an echo server (`cat` per
/// connection) on 9000; nothing on 7777.
const POD: &str = "apiVersion: v1
kind: Pod
metadata:
  name: pf
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: IMAGE
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"mkdir -p /www && echo hello > /www/index.html && dd if=/dev/urandom of=/www/blob bs=1024 count=4096 2>/dev/null && httpd -p 8080 -h /www && exec nc -ll -p 9000 -e cat\"]
";
const HTTP_PORT: u16 = 8080;
const ECHO_PORT: u16 = 9000;
const CLOSED_PORT: u16 = 7777;
/// How long one connection through the forward may take.
const IO_TIMEOUT: Duration = Duration::from_secs(30);

/// A running `kubectl port-forward`: its local ports by remote port, and its output.
struct PortForward {
    child: Child,
    locals: BTreeMap<u16, u16>,
    stdout: mpsc::Receiver<String>,
    stderr: thread::JoinHandle<String>,
}

impl PortForward {
    /// Starts `kubectl port-forward pod/pf :REMOTE…` and waits (bounded) until it says
    /// "Forwarding from 127.0.0.1:LOCAL -> REMOTE" for every port.
    fn start(w: &World, remotes: &[u16], websockets: bool) -> PortForward {
        let mut args = vec!["port-forward".to_string(), "pod/pf".to_string()];
        args.extend(remotes.iter().map(|r| format!(":{r}")));
        PortForward::start_args(w, &args, remotes, websockets)
    }

    /// `kubectl args…`, waiting for a "Forwarding from" line per port of `remotes`.
    fn start_args(w: &World, args: &[String], remotes: &[u16], websockets: bool) -> PortForward {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let mut cmd = w.kubectl_cmd(&args);
        if !websockets {
            cmd.env("KUBECTL_PORT_FORWARD_WEBSOCKETS", "false");
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl port-forward");
        let out = BufReader::new(child.stdout.take().unwrap());
        let mut err = child.stderr.take().unwrap();
        let (tx, stdout) = mpsc::channel();
        thread::spawn(move || {
            for line in out.lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let stderr = thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        });
        let mut pf = PortForward {
            child,
            locals: BTreeMap::new(),
            stdout,
            stderr,
        };
        let deadline = Instant::now() + DEADLINE;
        while pf.locals.len() < remotes.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(line) = pf.stdout.recv_timeout(left) else {
                let _ = pf.child.kill();
                let _ = pf.child.wait();
                panic!(
                    "kubectl port-forward did not start: {}",
                    pf.stderr.join().unwrap_or_default()
                );
            };
            // Forwarding from 127.0.0.1:40123 -> 8080
            if let Some(rest) = line.strip_prefix("Forwarding from 127.0.0.1:") {
                let (local, remote) = rest.split_once(" -> ").expect("kubectl's format");
                pf.locals
                    .insert(remote.trim().parse().unwrap(), local.parse().unwrap());
            }
        }
        pf
    }

    fn addr(&self, remote: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.locals[&remote]))
    }

    /// Ends kubectl (bounded); its stderr.
    fn stop(mut self) -> String {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.stderr.join().unwrap_or_default()
    }

    /// Waits (bounded) for kubectl to exit by itself; its stderr.
    fn wait_exit(mut self) -> String {
        let deadline = Instant::now() + DEADLINE;
        while self.child.try_wait().unwrap().is_none() && Instant::now() < deadline {
            thread::sleep(Duration::from_millis(50));
        }
        self.stop()
    }
}

fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).expect("connect to kubectl");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// `GET path` over HTTP/1.0: the body (panics unless 200).
fn http_get(addr: SocketAddr, path: &str) -> Vec<u8> {
    let mut s = connect(addr);
    write!(s, "GET {path} HTTP/1.0\r\n\r\n").unwrap();
    let mut response = Vec::new();
    s.read_to_end(&mut response).expect("read the response");
    let end = response
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .expect("a complete response");
    let head = String::from_utf8_lossy(&response[..end]);
    assert_eq!(head.split_whitespace().nth(1), Some("200"), "{head}");
    response[end + 4..].to_vec()
}

/// Sends `data` to the echo server while reading it back; what came back.
fn echo(addr: SocketAddr, data: Vec<u8>) -> Vec<u8> {
    let s = connect(addr);
    let mut writer = s.try_clone().unwrap();
    let sender = thread::spawn(move || {
        writer.write_all(&data).expect("send to the echo server");
        writer.shutdown(Shutdown::Write).unwrap();
    });
    let mut back = Vec::new();
    (&s).read_to_end(&mut back).expect("read the echo");
    sender.join().unwrap();
    back
}

/// Deterministic pseudo-random bytes.
fn payload(len: usize, seed: u32) -> Vec<u8> {
    let mut x = seed | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

/// FNV-1a, to compare large transfers in messages.
fn checksum(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

/// What a user does through one forward: both ports, concurrent connections, large
/// transfers both ways. Returns the measured echo throughput (MB/s, each way) and the
/// median connect latency (first byte back).
fn exercise(w: &World, pf: &PortForward, blob: &[u8]) -> (f64, Duration) {
    let (web, echo_addr) = (pf.addr(HTTP_PORT), pf.addr(ECHO_PORT));
    let blob = blob.to_vec();
    on_netns_thread(&w.netns_path(), move || {
        assert_eq!(http_get(web, "/index.html"), b"hello\n");

        // Several connections at once, on both ports.
        let workers: Vec<_> = (0..8u32)
            .map(|i| {
                thread::spawn(move || {
                    if i % 2 == 0 {
                        let data = payload(200_000, i + 1);
                        assert!(echo(echo_addr, data.clone()) == data, "echo {i}");
                    } else {
                        assert_eq!(http_get(web, "/index.html"), b"hello\n");
                    }
                })
            })
            .collect();
        for worker in workers {
            worker.join().expect("a concurrent connection failed");
        }

        // Large transfers: the blob down, 16 MiB up and back.
        let down = http_get(web, "/blob");
        assert_eq!(
            (down.len(), checksum(&down)),
            (blob.len(), checksum(&blob)),
            "the blob arrived changed"
        );
        let data = payload(16 << 20, 7);
        let started = Instant::now();
        let back = echo(echo_addr, data.clone());
        let elapsed = started.elapsed();
        assert_eq!(
            (back.len(), checksum(&back)),
            (data.len(), checksum(&data)),
            "the echo came back changed"
        );
        let throughput = data.len() as f64 / 1e6 / elapsed.as_secs_f64();

        // Connect latency: a new connection until its first byte comes back.
        let mut latencies: Vec<Duration> = (0..20)
            .map(|_| {
                let started = Instant::now();
                let mut s = connect(echo_addr);
                s.write_all(b"x").unwrap();
                let mut one = [0u8; 1];
                s.read_exact(&mut one).expect("first byte back");
                started.elapsed()
            })
            .collect();
        latencies.sort();
        (throughput, latencies[latencies.len() / 2])
    })
}

#[test]
fn port_forward_reaches_pod_ports_over_websocket_and_spdy() {
    let w = World::start();
    w.apply(&POD.replace("IMAGE", IMAGE));
    w.wait_running("pf");
    w.wait_for("the pod's servers to listen", || {
        w.kubectl(&["exec", "pf", "--", "ls", "/proc/1/fd"])
            .status
            .success()
            && w.kubectl(&[
                "exec",
                "pf",
                "--",
                "sh",
                "-c",
                "nc 127.0.0.1 8080 </dev/null",
            ])
            .status
            .success()
    });
    let blob = w.kubectl(&["exec", "pf", "--", "cat", "/www/blob"]).stdout;
    assert_eq!(blob.len(), 4 << 20, "the pod made its blob");

    let mut measured = Vec::new();
    for (transport, websockets) in [("websocket", true), ("spdy", false)] {
        w.step(&format!(
            "kubectl port-forward over {transport}: two ports, concurrent connections, large transfers"
        ));
        let pf = PortForward::start(&w, &[HTTP_PORT, ECHO_PORT], websockets);
        let (throughput, latency) = exercise(&w, &pf, &blob);
        let stderr = pf.stop();
        assert!(
            !stderr.contains("error") && !stderr.contains("Unhandled"),
            "{stderr}"
        );
        measured.push((transport, throughput, latency));
    }
    w.step("the API server saw both transports");
    let log = w.log();
    for transport in ["websocket", "spdy"] {
        assert!(
            log.lines()
                .any(|l| l.contains("port-forward tunnel open") && l.contains(transport)),
            "no {transport} port-forward in the server log"
        );
    }

    w.step("a closed port: kubectl reports the pod's refusal from the error stream");
    let pf = PortForward::start(&w, &[CLOSED_PORT], true);
    let addr = pf.addr(CLOSED_PORT);
    let got = on_netns_thread(&w.netns_path(), move || {
        let mut s = connect(addr);
        let mut rest = Vec::new();
        let _ = s.read_to_end(&mut rest);
        rest
    });
    assert!(got.is_empty(), "data from a closed port: {got:?}");
    let stderr = pf.wait_exit();
    assert!(
        stderr.contains(&format!(
            "an error occurred forwarding {} -> {CLOSED_PORT}",
            addr.port()
        )),
        "{stderr}"
    );
    assert!(
        stderr.contains(&format!(
            "error forwarding port {CLOSED_PORT} to pod default/pf"
        )) && stderr.contains("connection refused"),
        "{stderr}"
    );

    w.step("a hostNetwork pod: the node's localhost is reached, as upstream");
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: hostpf
spec:
  nodeName: kt-node
  hostNetwork: true
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sleep\", \"3600\"]
"
    ));
    w.wait_running("hostpf");
    // A server on the node's (the test namespace's) loopback, answering one connection.
    let node_server = on_netns_thread(&w.netns_path(), || {
        std::net::TcpListener::bind("127.0.0.1:0").unwrap()
    });
    let node_port = node_server.local_addr().unwrap().port();
    let answer = thread::spawn(move || {
        let (mut conn, _) = node_server.accept().unwrap();
        conn.write_all(b"from the node").unwrap();
    });
    let mut args = vec!["port-forward".to_string(), "pod/hostpf".to_string()];
    args.push(format!(":{node_port}"));
    let pf = PortForward::start_args(&w, &args, &[node_port], true);
    let addr = pf.addr(node_port);
    let got = on_netns_thread(&w.netns_path(), move || {
        let mut s = connect(addr);
        let mut all = Vec::new();
        s.read_to_end(&mut all).unwrap();
        all
    });
    answer.join().unwrap();
    assert_eq!(got, b"from the node");
    pf.stop();

    w.step("a user who may get pods/portforward but not create it is refused on both transports");
    w.apply(
        "apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata:
  name: pf-viewer
rules:
- apiGroups: [\"\"]
  resources: [pods, pods/portforward]
  verbs: [get, list]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata:
  name: pf-viewer
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: Role
  name: pf-viewer
subjects:
- apiGroup: rbac.authorization.k8s.io
  kind: User
  name: viewer
",
    );
    let refused = w.kubectl(&["port-forward", "--as", "viewer", "pod/pf", ":8080"]);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains("cannot create resource \"pods/portforward\""),
        "{stderr}"
    );

    for (transport, throughput, latency) in measured {
        eprintln!(
            "port-forward bench: transport={transport} echo_throughput={throughput:.1}MB/s \
             connect_latency_median={:.2}ms",
            latency.as_secs_f64() * 1e3
        );
    }
}
