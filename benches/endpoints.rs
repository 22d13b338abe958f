//! Endpoint → rule benchmark, end to end (issue 19 part 6): `orc server` with its embedded
//! agent in a network namespace of its own holds N selector-less Services, each with an
//! EndpointSlice of two endpoints; then, round after round, one slice gets a new endpoint
//! through the API (a merge patch) and the time is taken from the write's answer until
//! the kernel's ruleset holds the new endpoint — seen by `nft monitor` in the same
//! namespace, so the API's watch delivery, the proxy's pacing and the kernel commit are
//! all inside the figure. Prints p50/p99/max; asserts only that every change arrives.
//!
//! Run as root: `scripts/bench-endpoints.sh` (or `cargo bench --bench endpoints`). Needs
//! what the kubelet tests need (tests/support/kubelet.rs: containerd, runc, nsenter, ip,
//! kubectl) and nft, stdbuf. Env: ORC_BENCH_ENDPOINT_SERVICES (default 1000),
//! ORC_BENCH_ENDPOINT_ROUNDS (default 100), ORC_BENCH_TRACE (set: each round's wall-clock
//! times on stderr, to set beside the server log).

use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

#[path = "../tests/support/mod.rs"]
mod support;
use support::host::{on_netns_thread, require_root_and_tools};
use support::kubelet::World;

const NAMESPACE: &str = "bench";
/// Longest a change may take to reach the kernel before the bench gives up.
const CHANGE_DEADLINE: Duration = Duration::from_secs(10);
/// Longest the initial sync of every Service may take.
const SYNC_DEADLINE: Duration = Duration::from_secs(120);
/// Concurrent writers while the Services and slices are created.
const WRITERS: usize = 16;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn endpoint_ip(n: usize) -> String {
    format!("10.98.{}.{}", n / 250, n % 250 + 1)
}

/// The changing third endpoint of round `round` (an address no other object holds).
fn new_endpoint_ip(round: usize) -> String {
    format!("10.97.{}.{}", round / 250, round % 250 + 1)
}

fn service(i: usize) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {"name": format!("svc-{i}"), "namespace": NAMESPACE},
        "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
    })
}

fn slice_endpoints(ips: &[String]) -> Value {
    ips.iter()
        .map(|ip| json!({"addresses": [ip], "conditions": {"ready": true}}))
        .collect()
}

fn slice(i: usize) -> Value {
    json!({
        "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
        "metadata": {"name": format!("svc-{i}"), "namespace": NAMESPACE,
                     "labels": {"kubernetes.io/service-name": format!("svc-{i}")}},
        "addressType": "IPv4",
        "endpoints": slice_endpoints(&[endpoint_ip(2 * i), endpoint_ip(2 * i + 1)]),
        "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
    })
}

/// An HTTPS client of the admin kubeconfig, and the server's URL.
fn client(w: &World) -> (reqwest::Client, String) {
    let text = std::fs::read_to_string(w.kubeconfig()).expect("read the kubeconfig");
    let creds = orc::tls::kubeconfig_credentials(&text).expect("parse the kubeconfig");
    let identity = Some((creds.cert_pem.as_str(), creds.key_pem.as_str()));
    let tls = orc::tls::client_config_pinned(&creds.ca_pem, identity).expect("client TLS");
    let client = reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client");
    (client, format!("https://{}:{}", w.bind_address, w.port))
}

/// Runs `f` to completion on a thread inside the world's network namespace (where the
/// server listens).
fn in_world<T: Send + 'static>(
    w: &World,
    f: impl std::future::Future<Output = T> + Send + 'static,
) -> T {
    on_netns_thread(&w.netns_path(), move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime")
            .block_on(f)
    })
}

async fn send(req: reqwest::RequestBuilder, what: &str) {
    let resp = req.send().await.unwrap_or_else(|e| panic!("{what}: {e}"));
    let status = resp.status();
    if !status.is_success() {
        let body = resp.text().await.unwrap_or_default();
        panic!("{what}: {status}: {body}");
    }
}

/// `nft monitor` in the world's namespace: each line with when it was read.
struct Monitor {
    child: Child,
    lines: mpsc::Receiver<(Instant, String)>,
}

impl Monitor {
    fn start(w: &World) -> Monitor {
        let mut child = w
            .in_netns("stdbuf")
            .args(["-oL", "nft", "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nft monitor");
        let stdout = child.stdout.take().expect("piped stdout");
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send((Instant::now(), line)).is_err() {
                    break;
                }
            }
        });
        Monitor { child, lines }
    }

    /// When the first line naming `ip` (as a whole address) arrives, within `deadline`.
    fn wait_for(&self, ip: &str, deadline: Duration) -> Option<Instant> {
        let end = Instant::now() + deadline;
        let names = |line: &str| {
            line.split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .any(|word| word == ip)
        };
        loop {
            let left = end.checked_duration_since(Instant::now())?;
            match self.lines.recv_timeout(left) {
                Ok((at, line)) if names(&line) => return Some(at),
                Ok(_) => {}
                Err(_) => return None,
            }
        }
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:.1} ms", d.as_secs_f64() * 1000.0)
}

fn main() {
    require_root_and_tools("the endpoints benchmark");
    let services = env_usize("ORC_BENCH_ENDPOINT_SERVICES", 1000).max(1);
    let rounds = env_usize("ORC_BENCH_ENDPOINT_ROUNDS", 100).max(1);
    let w = World::start();
    let (http, url) = client(&w);

    eprintln!("creating {services} Services and their EndpointSlices…");
    let created = Instant::now();
    {
        let (http, url) = (http.clone(), url.clone());
        in_world(&w, async move {
            send(
                http.post(format!("{url}/api/v1/namespaces"))
                    .json(&json!({"metadata": {"name": NAMESPACE}})),
                "create the namespace",
            )
            .await;
            let next = std::sync::atomic::AtomicUsize::new(0);
            let writer = || async {
                loop {
                    let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if i >= services {
                        break;
                    }
                    send(
                        http.post(format!("{url}/api/v1/namespaces/{NAMESPACE}/services"))
                            .json(&service(i)),
                        "create a Service",
                    )
                    .await;
                    send(
                        http.post(format!(
                            "{url}/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices"
                        ))
                        .json(&slice(i)),
                        "create an EndpointSlice",
                    )
                    .await;
                }
            };
            futures::future::join_all((0..WRITERS).map(|_| writer())).await;
        });
    }
    eprintln!(
        "created in {:.1} s; waiting for the proxy to hold them all…",
        created.elapsed().as_secs_f64()
    );
    let last = endpoint_ip(2 * (services - 1) + 1);
    w.wait_for_within(
        SYNC_DEADLINE,
        "the last Service's endpoints in the kernel",
        || {
            let out = w
                .in_netns("nft")
                .args(["list", "ruleset"])
                .output()
                .expect("run nft");
            String::from_utf8_lossy(&out.stdout)
                .split(|c: char| !(c.is_ascii_digit() || c == '.'))
                .any(|word| word == last)
        },
    );
    eprintln!(
        "all {services} Services in the kernel {:.1} s after the first create",
        created.elapsed().as_secs_f64()
    );

    let monitor = Monitor::start(&w);
    // Let nft monitor subscribe before the first change.
    std::thread::sleep(Duration::from_millis(500));
    let mut latencies = Vec::with_capacity(rounds);
    let trace = std::env::var_os("ORC_BENCH_TRACE").is_some();
    for round in 0..rounds {
        let i = (round * 7919) % services;
        let new_ip = new_endpoint_ip(round);
        let patch = json!({"endpoints": slice_endpoints(&[
            endpoint_ip(2 * i), endpoint_ip(2 * i + 1), new_ip.clone()
        ])});
        let (http, url) = (http.clone(), url.clone());
        let answered = in_world(&w, async move {
            send(
                http.patch(format!(
                    "{url}/apis/discovery.k8s.io/v1/namespaces/{NAMESPACE}/endpointslices/svc-{i}"
                ))
                .header("Content-Type", "application/merge-patch+json")
                .body(patch.to_string()),
                "patch an EndpointSlice",
            )
            .await;
            Instant::now()
        });
        let seen = monitor
            .wait_for(&new_ip, CHANGE_DEADLINE)
            .unwrap_or_else(|| {
                panic!("round {round}: {new_ip} not in the kernel within {CHANGE_DEADLINE:?}")
            });
        // The monitor may read the commit before the client reads the write's answer.
        latencies.push(seen.saturating_duration_since(answered));
        if trace {
            // Wall-clock times to set beside the server's log (RUST_LOG timestamps).
            let now = (std::time::SystemTime::now(), Instant::now());
            let wall = |at: Instant| {
                chrono::DateTime::<chrono::Utc>::from(now.0 - now.1.saturating_duration_since(at))
                    .format("%H:%M:%S%.6f")
            };
            eprintln!(
                "round {round}: {new_ip} answered {} seen {}",
                wall(answered),
                wall(seen)
            );
        }
        // Changes a little apart, as a cluster's are (not one burst).
        std::thread::sleep(Duration::from_millis(20 + (round % 5) as u64 * 10));
    }
    latencies.sort();
    println!(
        "endpoint change written through the API → in the kernel, {services} Services, {rounds} changes: p50 {}, p99 {}, max {}",
        ms(percentile(&latencies, 0.50)),
        ms(percentile(&latencies, 0.99)),
        ms(*latencies.last().expect("rounds ≥ 1")),
    );
}
