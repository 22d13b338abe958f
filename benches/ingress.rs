//! Ingress throughput benchmark: the same `GET /` sent through the built-in ingress
//! (node address, port 80, by Host) and straight to the pod (pod IP, port 8080), by
//! ORC_BENCH_CLIENTS concurrent clients (default 8) for ORC_BENCH_SECS seconds each
//! (default 10), one connection per request (busybox httpd closes after each answer).
//! Prints requests/s, p50 and p99 of both and their ratio; asserts only that every
//! request got its 200.
//!
//! Run as root: `scripts/bench-ingress.sh` (or `cargo bench --bench ingress`). Reuses the
//! kubelet tests' one-node cluster (tests/support/kubelet.rs): a private containerd, the
//! busybox test image imported, `orc server` (with its agent and ingress) in a network
//! namespace of its own, everything removed when the bench ends.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

#[path = "../tests/support/mod.rs"]
mod support;
use support::host::on_netns_thread;
use support::kubelet::{httpd_pod, World, NODE_IP};

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One request on a fresh connection; its latency, or why it failed.
fn request(addr: SocketAddr, host: &str) -> Result<Duration, String> {
    let started = Instant::now();
    let mut s =
        TcpStream::connect_timeout(&addr, Duration::from_secs(2)).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(|e| e.to_string())?;
    s.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer).map_err(|e| e.to_string())?;
    if !answer.starts_with(b"HTTP/1.1 200") && !answer.starts_with(b"HTTP/1.0 200") {
        return Err(String::from_utf8_lossy(&answer).into_owned());
    }
    Ok(started.elapsed())
}

struct Figures {
    per_second: f64,
    p50: Duration,
    p99: Duration,
}

/// `clients` threads in the node's network namespace sending requests for `secs`.
fn load(w: &World, addr: SocketAddr, host: &'static str, clients: u64, secs: u64) -> Figures {
    let ns = w.netns_path();
    let started = Instant::now();
    let workers: Vec<_> = (0..clients)
        .map(|_| {
            let ns = ns.clone();
            std::thread::spawn(move || {
                on_netns_thread(&ns, move || {
                    let mut latencies = Vec::new();
                    let until = Instant::now() + Duration::from_secs(secs);
                    while Instant::now() < until {
                        match request(addr, host) {
                            Ok(l) => latencies.push(l),
                            Err(e) => panic!("request to {addr} failed: {e}"),
                        }
                    }
                    latencies
                })
            })
        })
        .collect();
    let mut all: Vec<Duration> = workers
        .into_iter()
        .flat_map(|t| t.join().expect("a client thread panicked"))
        .collect();
    let elapsed = started.elapsed();
    all.sort();
    let at = |q: f64| all[((all.len() as f64 * q) as usize).min(all.len() - 1)];
    Figures {
        per_second: all.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

fn main() {
    let clients = env_num("ORC_BENCH_CLIENTS", 8);
    let secs = env_num("ORC_BENCH_SECS", 10);
    let w = World::start();
    let mut yaml = httpd_pod("web-1", "default", "web");
    yaml.push_str(
        "---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: web
spec:
  rules:
  - host: bench.example.com
    http:
      paths:
      - path: /
        pathType: Prefix
        backend:
          service:
            name: web
            port:
              number: 80
",
    );
    w.apply(&yaml);
    w.wait_running("web-1");
    let pod_ip = w.kubectl_out(&["get", "pod", "web-1", "-o", "jsonpath={.status.podIP}"]);
    let direct: SocketAddr = format!("{pod_ip}:8080").parse().expect("pod IP");
    let ingress: SocketAddr = format!("{NODE_IP}:80").parse().unwrap();
    let ns = w.netns_path();
    w.wait_for("the ingress to route to the pod", || {
        on_netns_thread(&ns, move || request(ingress, "bench.example.com").is_ok())
    });
    let through = load(&w, ingress, "bench.example.com", clients, secs);
    let straight = load(&w, direct, "bench.example.com", clients, secs);
    for (what, f) in [
        ("through the ingress", &through),
        ("straight to the pod", &straight),
    ] {
        println!(
            "{what}: {:.0} requests/s, p50 {:.2} ms, p99 {:.2} ms ({clients} clients, {secs} s)",
            f.per_second,
            f.p50.as_secs_f64() * 1e3,
            f.p99.as_secs_f64() * 1e3,
        );
    }
    println!(
        "ingress / direct: {:.2} × the requests/s, {:.2} × the p99",
        through.per_second / straight.per_second,
        through.p99.as_secs_f64() / straight.p99.as_secs_f64(),
    );
}
