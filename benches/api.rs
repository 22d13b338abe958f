//! API server benchmark: create throughput and latency (sequential and 16-way), list
//! latency at 10,000 pods, custom objects next to ConfigMaps, server-side apply next to
//! merge patch, idle RSS and idle disk writes. Prints figures; asserts nothing.
//!
//! Run: `scripts/bench-api.sh` (or `cargo bench --bench api`). Env: ORC_BENCH_PODS
//! (default 10000), ORC_BENCH_KINDS (objects per kind in the custom-object part, default
//! 2000), ORC_BENCH_IDLE_SECS (default 60), ORC_BENCH_RUNS (default 5: the 16-way
//! create figure is measured that many times, each on a fresh server, and reported as
//! min/median/max with what explains the spread: the data disk's fsync latency, the
//! server's CPU per create and the machine's load), ORC_BENCH_RUN_PODS (creates per run,
//! default 5000), ORC_BENCH_DATASTORE (`sqlite`, the default, or `etcd`: every server
//! gets a fresh private 3-member etcd cluster from scripts/etcd-test-env.sh),
//! ORC_BENCH_CREATES_ONLY (`1`: only the repeated 16-way create figure),
//! ORC_BENCH_IDLE_ONLY (`1`: only the idle server's RSS, CPU and writes),
//! ORC_BENCH_SPIN (`1`: a nice-19 busy loop pinned on every core during the 16-way runs,
//! so that no core ever goes idle: what the server costs when its wake-ups never find a
//! halted CPU).
//! ORC_BENCH_POLICIES_ONLY (`1`: only what a ValidatingAdmissionPolicy costs a create).

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const ORC: &str = env!("CARGO_BIN_EXE_orc");

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn pod(name: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "labels": {"app": "bench"}},
        "spec": {"containers": [{"name": "c", "image": "busybox:1.36", "command": ["sleep", "3600"],
                                  "resources": {"requests": {"cpu": "10m", "memory": "16Mi"}}}]}
    })
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn report(label: &str, n: usize, elapsed: Duration, mut lat: Vec<Duration>) {
    lat.sort();
    println!(
        "{label:<28} {n:>6} creates in {:>7.2}s = {:>7.0}/s  p50 {:>6.2} ms  p99 {:>6.2} ms",
        elapsed.as_secs_f64(),
        n as f64 / elapsed.as_secs_f64(),
        percentile(&lat, 0.50).as_secs_f64() * 1e3,
        percentile(&lat, 0.99).as_secs_f64() * 1e3,
    );
}

/// `n` creates from 16 concurrent clients, each body made by `body(i)`.
async fn concurrent_creates(
    http: &reqwest::Client,
    url: &str,
    n: usize,
    body: impl Fn(usize) -> Value + Send + Sync + 'static,
) -> (Duration, Vec<Duration>) {
    let body = std::sync::Arc::new(body);
    let workers = 16;
    let t = Instant::now();
    let mut handles = Vec::new();
    for w in 0..workers {
        let (http, url, body) = (http.clone(), url.to_string(), body.clone());
        handles.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = w;
            while i < n {
                let s = Instant::now();
                let r = http.post(&url).json(&body(i)).send().await.unwrap();
                let status = r.status().as_u16();
                // The body is read, so the connection is reused for the next create.
                let body = r.bytes().await.unwrap_or_default();
                assert_eq!(status, 201, "{}", String::from_utf8_lossy(&body));
                lat.push(s.elapsed());
                i += workers;
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for h in handles {
        lat.extend(h.await.unwrap());
    }
    (t.elapsed(), lat)
}

fn config_map(i: usize) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": format!("cm-{i}"), "labels": {"app": "bench"}},
           "data": {"schedule": "*/5 * * * *", "image": "cron:1", "replicas": "3"}})
}

fn crontab(i: usize) -> Value {
    json!({"apiVersion": "bench.example.com/v1", "kind": "CronTab",
           "metadata": {"name": format!("ct-{i}"), "labels": {"app": "bench"}},
           "spec": {"cronSpec": "*/5 * * * *", "image": "cron:1", "replicas": 3}})
}

/// Custom objects next to ConfigMaps of the same size, then server-side apply next to
/// merge patch on one object.
async fn kinds(http: &reqwest::Client, api: &str, n: usize) {
    let crd = json!({
        "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "crontabs.bench.example.com"},
        "spec": {"group": "bench.example.com", "scope": "Namespaced",
                 "names": {"plural": "crontabs", "kind": "CronTab"},
                 "versions": [{"name": "v1", "served": true, "storage": true,
                   "schema": {"openAPIV3Schema": {"type": "object", "properties": {
                     "spec": {"type": "object", "properties": {
                       "cronSpec": {"type": "string", "pattern": "^(\\S+ ){4}\\S+$"},
                       "image": {"type": "string"},
                       "replicas": {"type": "integer", "minimum": 0, "maximum": 100}}}}}}}]}
    });
    let r = http
        .post(format!(
            "{api}/apis/apiextensions.k8s.io/v1/customresourcedefinitions"
        ))
        .json(&crd)
        .send()
        .await
        .unwrap();
    assert_eq!(
        r.status().as_u16(),
        201,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let crontabs = format!("{api}/apis/bench.example.com/v1/namespaces/default/crontabs");
    let t = Instant::now();
    while http.get(&crontabs).send().await.unwrap().status() != 200 {
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the CRD was not established"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    println!(
        "CRD created to served: {:.1} ms",
        t.elapsed().as_secs_f64() * 1e3
    );
    let config_maps = format!("{api}/api/v1/namespaces/default/configmaps");
    let (elapsed, lat) = concurrent_creates(http, &config_maps, n, config_map).await;
    report("ConfigMaps, 16-way", n, elapsed, lat);
    let (elapsed, lat) = concurrent_creates(http, &crontabs, n, crontab).await;
    report("custom objects, 16-way", n, elapsed, lat);

    // The same change 500 times on one object: merge patch, then server-side apply.
    let rounds = 500;
    for (label, url, content_type, body) in [
        (
            "merge patch",
            format!("{config_maps}/cm-0"),
            "application/merge-patch+json",
            (|i: usize| json!({"data": {"replicas": i.to_string()}})) as fn(usize) -> Value,
        ),
        (
            "server-side apply",
            format!("{config_maps}/cm-1?fieldManager=bench&force=true"),
            "application/apply-patch+yaml",
            |i: usize| {
                json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "cm-1"},
                           "data": {"replicas": i.to_string()}})
            },
        ),
    ] {
        let mut lat = Vec::with_capacity(rounds);
        let t = Instant::now();
        for i in 0..rounds {
            let s = Instant::now();
            let r = http
                .patch(&url)
                .header("Content-Type", content_type)
                .body(serde_json::to_vec(&body(i)).unwrap())
                .send()
                .await
                .unwrap();
            assert_eq!(
                r.status().as_u16(),
                200,
                "{}",
                r.text().await.unwrap_or_default()
            );
            lat.push(s.elapsed());
        }
        lat.sort();
        println!(
            "{label:<28} {rounds:>6} patches in {:>6.2}s  p50 {:>6.2} ms  p99 {:>6.2} ms",
            t.elapsed().as_secs_f64(),
            percentile(&lat, 0.50).as_secs_f64() * 1e3,
            percentile(&lat, 0.99).as_secs_f64() * 1e3,
        );
    }
}

/// CPU time (user + system, all threads) the process used so far, in seconds: what a
/// create costs the server, whatever else the machine is doing meanwhile.
fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at state (field 3).
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // utime and stime are fields 14 and 15: indexes 11 and 12 after the state.
    (ticks(11) + ticks(12)) / 100.0
}

/// Per-thread CPU seconds and context switches of process `pid`, keyed by thread id:
/// (thread name, CPU seconds, voluntary, involuntary switches).
fn thread_stats(pid: u32) -> std::collections::HashMap<u32, (String, f64, u64, u64)> {
    let mut out = std::collections::HashMap::new();
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for task in tasks.flatten() {
        let Some(tid) = task
            .file_name()
            .to_str()
            .and_then(|t| t.parse::<u32>().ok())
        else {
            continue;
        };
        let dir = task.path();
        let stat = std::fs::read_to_string(dir.join("stat")).unwrap_or_default();
        let Some((head, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let name = head.split_once('(').map_or("", |(_, n)| n).to_string();
        let fields: Vec<f64> = rest
            .split_whitespace()
            .map(|f| f.parse().unwrap_or(0.0))
            .collect();
        let cpu = (fields.get(11).unwrap_or(&0.0) + fields.get(12).unwrap_or(&0.0)) / 100.0;
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let switches = |label: &str| {
            status
                .lines()
                .find(|l| l.starts_with(label))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
                .unwrap_or(0)
        };
        out.insert(
            tid,
            (
                name,
                cpu,
                switches("voluntary_ctxt_switches:"),
                switches("nonvoluntary_ctxt_switches:"),
            ),
        );
    }
    out
}

/// What each named group of the server's threads used between two [`thread_stats`]
/// readings, per create: "name CPUµs/ctx-switches" for the busiest groups.
fn thread_split(
    before: &std::collections::HashMap<u32, (String, f64, u64, u64)>,
    after: &std::collections::HashMap<u32, (String, f64, u64, u64)>,
    n: usize,
) -> String {
    let mut groups: std::collections::BTreeMap<&str, (f64, u64)> = Default::default();
    for (tid, (name, cpu, vol, invol)) in after {
        let (cpu0, vol0, invol0) = before
            .get(tid)
            .map_or((0.0, 0, 0), |(_, c, v, i)| (*c, *v, *i));
        let group = groups.entry(name.as_str()).or_default();
        group.0 += cpu - cpu0;
        group.1 += (vol + invol).saturating_sub(vol0 + invol0);
    }
    let mut groups: Vec<_> = groups.into_iter().collect();
    groups.sort_by(|a, b| b.1 .0.total_cmp(&a.1 .0));
    groups
        .iter()
        .take(3)
        .map(|(name, (cpu, switches))| {
            format!(
                "{name} {:.0} µs/{:.1} cs",
                cpu * 1e6 / n as f64,
                *switches as f64 / n as f64
            )
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Busy and total CPU seconds of the whole machine (all cores) from /proc/stat.
fn machine_cpu() -> (f64, f64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let fields: Vec<f64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0.0))
        .collect();
    let total: f64 = fields.iter().take(8).sum();
    // idle and iowait are fields 4 and 5.
    let idle = fields.get(3).unwrap_or(&0.0) + fields.get(4).unwrap_or(&0.0);
    ((total - idle) / 100.0, total / 100.0)
}

/// How many times the machine's CPUs entered an idle state so far (the cpuidle
/// counters of every CPU; on a VM each is a halted vCPU that a wake-up must restart).
fn idle_entries() -> u64 {
    let Ok(cpus) = std::fs::read_dir("/sys/devices/system/cpu") else {
        return 0;
    };
    let mut total = 0;
    for cpu in cpus.flatten() {
        let Ok(states) = std::fs::read_dir(cpu.path().join("cpuidle")) else {
            continue;
        };
        for state in states.flatten() {
            total += std::fs::read_to_string(state.path().join("usage"))
                .ok()
                .and_then(|u| u.trim().parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    total
}

/// Rescheduling interrupts (one CPU telling another to run a thread it woke) on every
/// CPU so far, from /proc/interrupts.
fn resched_ipis() -> u64 {
    std::fs::read_to_string("/proc/interrupts")
        .unwrap_or_default()
        .lines()
        .find(|l| l.trim_start().starts_with("RES:"))
        .map_or(0, |l| {
            l.split_whitespace()
                .skip(1)
                .map_while(|f| f.parse::<u64>().ok())
                .sum()
        })
}

/// With `ORC_BENCH_SPIN=1`, one nice-19 busy loop pinned on each core (killed on drop):
/// the cores never idle, while the benchmark's processes still get nearly all the CPU.
struct Spinners(Vec<std::process::Child>);

impl Spinners {
    fn start() -> Spinners {
        if env_num("ORC_BENCH_SPIN", 0) != 1 {
            return Spinners(Vec::new());
        }
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let spinners = (0..cores)
            .map(|core| {
                Command::new("nice")
                    .args(["-n", "19", "taskset", "-c", &core.to_string()])
                    .args(["sh", "-c", "while :; do :; done"])
                    .spawn()
                    .expect("start a busy loop (nice, taskset, sh)")
            })
            .collect();
        println!("busy loops: one nice-19 loop pinned on each of {cores} cores");
        Spinners(spinners)
    }
}

impl Drop for Spinners {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// System CPU seconds and minor page faults of process `pid` so far (all threads).
fn sys_and_faults(pid: u32) -> (f64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // minflt is field 10 (index 7 after the state), stime field 15 (index 12).
    (field(12) as f64 / 100.0, field(7))
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn write_bytes(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/io"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("write_bytes:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn dir_size(p: &Path) -> u64 {
    let mut total = 0;
    if let Ok(rd) = std::fs::read_dir(p) {
        for e in rd.flatten() {
            let m = match e.metadata() {
                Ok(m) => m,
                Err(_) => continue,
            };
            total += if m.is_dir() {
                dir_size(&e.path())
            } else {
                m.len()
            };
        }
    }
    total
}

/// ConfigMap creates by three callers, in alternating rounds so that the store's growth
/// and warm-up weigh on each alike: admin (group `system:masters`, no RBAC lookup), a
/// certificate user bound to `edit` by a RoleBinding (RBAC decision on every request:
/// what RBAC costs), and a service account with its bearer token bound the same way
/// (JWT check and bound-object check on top: what token authentication costs).
async fn rbac(
    admin: &reqwest::Client,
    kubeconfig: &Path,
    data: &Path,
    (api, pid): (&str, u32),
    n: usize,
) {
    let ns = format!("{api}/api/v1/namespaces/default");
    let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "bench"}});
    let r = admin
        .post(format!("{ns}/serviceaccounts"))
        .json(&sa)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let binding = json!({"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "bench-edit"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "edit"},
        "subjects": [{"kind": "ServiceAccount", "name": "bench", "namespace": "default"},
                     {"kind": "User", "name": "bench-user", "apiGroup": "rbac.authorization.k8s.io"}]});
    let r = admin
        .post(format!(
            "{api}/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings"
        ))
        .json(&binding)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let request = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                         "spec": {"expirationSeconds": 3600}});
    let r = admin
        .post(format!("{ns}/serviceaccounts/bench/token"))
        .json(&request)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let token: Value = r.json().await.unwrap();
    let token = token["status"]["token"].as_str().unwrap().to_string();
    let creds =
        orc::tls::kubeconfig_credentials(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let sa_client = {
        let tls = orc::tls::client_config_pinned(&creds.ca_pem, None).unwrap();
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(
            reqwest::header::AUTHORIZATION,
            format!("Bearer {token}").parse().unwrap(),
        );
        reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .default_headers(headers)
            .pool_max_idle_per_host(64)
            .build()
            .unwrap()
    };
    let user_client = {
        // Issued from a copy of the server's TLS directory (its CA), as an admin would.
        let copy = data.with_file_name("bench-user-tls");
        std::fs::create_dir_all(&copy).unwrap();
        for entry in std::fs::read_dir(data.join("server/tls")).unwrap() {
            let entry = entry.unwrap();
            std::fs::copy(entry.path(), copy.join(entry.file_name())).unwrap();
        }
        let pki = orc::tls::Pki::load_or_create(&copy, &[]).unwrap();
        let (cert, key) = pki.issue_client_cert("bench-user", &[]).unwrap();
        let tls = orc::tls::client_config_pinned(&creds.ca_pem, Some((&cert, &key))).unwrap();
        reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .pool_max_idle_per_host(64)
            .build()
            .unwrap()
    };
    let url = format!("{ns}/configmaps");
    // The binding is seen by the authorizer a moment after it is written.
    for client in [&sa_client, &user_client] {
        for _ in 0..100 {
            let r = client.get(&url).send().await.unwrap();
            if r.status().is_success() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    let callers = [
        ("admin", admin),
        ("user + RBAC", &user_client),
        ("SA token + RBAC", &sa_client),
    ];
    let rounds = 3;
    let per_round = n / rounds;
    let mut rates: Vec<Vec<f64>> = vec![Vec::new(); callers.len()];
    let mut cpu: Vec<Vec<f64>> = vec![Vec::new(); callers.len()];
    for round in 0..rounds {
        for (c, (label, client)) in callers.iter().enumerate() {
            let cpu_before = cpu_secs(pid);
            let (elapsed, lat) = concurrent_creates(client, &url, per_round, move |i| {
                let mut cm = config_map(i);
                cm["metadata"]["name"] = json!(format!("rbac-{c}-{round}-{i}"));
                cm
            })
            .await;
            cpu[c].push((cpu_secs(pid) - cpu_before) * 1e6 / per_round as f64);
            rates[c].push(per_round as f64 / elapsed.as_secs_f64());
            report(
                &format!("16-way ConfigMaps, {label} #{}", round + 1),
                per_round,
                elapsed,
                lat,
            );
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (admin_rate, admin_cpu) = (median(&rates[0]), median(&cpu[0]));
    for (c, (label, _)) in callers.iter().enumerate() {
        let (rate, cost) = (median(&rates[c]), median(&cpu[c]));
        println!(
            "16-way ConfigMaps, {label:<16} median {rate:>7.0}/s ({:+.1}% vs admin), server CPU {cost:.0} µs/create ({:+.1}% vs admin)",
            (rate / admin_rate - 1.0) * 100.0,
            (cost / admin_cpu - 1.0) * 100.0
        );
    }
}

/// What the service-account admission costs a pod create: pods that opt out of the
/// token volume next to pods that get it, in alternating rounds.
async fn pod_tokens(http: &reqwest::Client, (api, pid): (&str, u32), n: usize) {
    let url = format!("{api}/api/v1/namespaces/default/pods");
    let rounds = 3;
    let per_round = n / rounds;
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (c, label) in ["pods, no token volume", "pods, token volume"]
            .into_iter()
            .enumerate()
        {
            let cpu_before = cpu_secs(pid);
            let (elapsed, lat) = concurrent_creates(http, &url, per_round, move |i| {
                let mut p = pod(&format!("tok-{c}-{round}-{i}"));
                if c == 0 {
                    p["spec"]["automountServiceAccountToken"] = json!(false);
                }
                p
            })
            .await;
            cpu[c].push((cpu_secs(pid) - cpu_before) * 1e6 / per_round as f64);
            rates[c].push(per_round as f64 / elapsed.as_secs_f64());
            report(
                &format!("16-way {label} #{}", round + 1),
                per_round,
                elapsed,
                lat,
            );
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "pod creates: {:.0}/s without, {:.0}/s with the token volume; server CPU {:.0} -> {:.0} µs/create",
        median(&rates[0]),
        median(&rates[1]),
        median(&cpu[0]),
        median(&cpu[1]),
    );
}

/// An HTTPS admission webhook in this process that allows everything (the mutating path
/// adds a label with a JSON patch); returns its port and CA bundle (base64 PEM).
async fn start_webhook() -> (u16, String) {
    use base64::Engine;
    use http_body_util::{BodyExt, Full};
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    let certs = rustls_pemfile::certs(&mut cert.pem().as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let private = rustls_pemfile::private_key(&mut key.serialize_pem().as_bytes())
        .unwrap()
        .unwrap();
    let mut tls = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(certs, private)
    .unwrap();
    tls.alpn_protocols = vec![b"http/1.1".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(tls));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let service = hyper::service::service_fn(
                    |req: hyper::Request<hyper::body::Incoming>| async move {
                        let mutate = req.uri().path() == "/mutate";
                        let body = req.into_body().collect().await.map(|b| b.to_bytes());
                        let review: Value = body
                            .ok()
                            .and_then(|b| serde_json::from_slice(&b).ok())
                            .unwrap_or(Value::Null);
                        let mut response =
                            json!({"uid": review["request"]["uid"], "allowed": true});
                        if mutate {
                            let patch = json!([{"op": "add", "path": "/metadata/labels/mutated", "value": "yes"}]);
                            response["patchType"] = json!("JSONPatch");
                            response["patch"] =
                                json!(base64::engine::general_purpose::STANDARD
                                    .encode(patch.to_string()));
                        }
                        let out = json!({"apiVersion": "admission.k8s.io/v1",
                                         "kind": "AdmissionReview", "response": response});
                        Ok::<_, std::convert::Infallible>(hyper::Response::new(Full::new(
                            bytes::Bytes::from(serde_json::to_vec(&out).unwrap()),
                        )))
                    },
                );
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(tls), service)
                    .await;
            });
        }
    });
    (
        port,
        base64::engine::general_purpose::STANDARD.encode(ca.pem()),
    )
}

/// What admission webhooks cost a create: ConfigMaps that no webhook selects next to
/// ConfigMaps that a validating and a mutating webhook (HTTPS, in this process) both
/// review, in alternating rounds.
async fn webhooks(admin: &reqwest::Client, (api, pid): (&str, u32), n: usize) {
    let (port, ca_bundle) = start_webhook().await;
    let webhook = |kind: &str, path: &str| {
        let mut hook = json!({
            "name": format!("{}.bench.example.com", path.trim_start_matches('/')),
            "clientConfig": {"url": format!("https://127.0.0.1:{port}{path}"), "caBundle": ca_bundle},
            "rules": [{"apiGroups": [""], "apiVersions": ["v1"], "operations": ["CREATE"],
                       "resources": ["configmaps"]}],
            "objectSelector": {"matchLabels": {"webhook": "yes"}},
            "sideEffects": "None", "admissionReviewVersions": ["v1"], "failurePolicy": "Fail"});
        if kind == "Mutating" {
            hook["reinvocationPolicy"] = json!("Never");
        }
        json!({"apiVersion": "admissionregistration.k8s.io/v1",
               "kind": format!("{kind}WebhookConfiguration"),
               "metadata": {"name": format!("bench-{}", path.trim_start_matches('/'))},
               "webhooks": [hook]})
    };
    for (kind, plural, path) in [
        ("Validating", "validatingwebhookconfigurations", "/validate"),
        ("Mutating", "mutatingwebhookconfigurations", "/mutate"),
    ] {
        let r = admin
            .post(format!(
                "{api}/apis/admissionregistration.k8s.io/v1/{plural}"
            ))
            .json(&webhook(kind, path))
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            201,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }
    let url = format!("{api}/api/v1/namespaces/default/configmaps");
    // The configurations reach the dispatcher through its watch: wait for a mutation.
    let t = Instant::now();
    loop {
        let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "probe-", "labels": {"webhook": "yes"}}});
        let created: Value = admin
            .post(&url)
            .json(&probe)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if created["metadata"]["labels"]["mutated"] == "yes" {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the webhooks were not called"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rounds = 3;
    let per_round = n / rounds;
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut p50s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (c, label) in ["no webhook", "2 webhooks"].into_iter().enumerate() {
            let cpu_before = cpu_secs(pid);
            let (elapsed, lat) = concurrent_creates(admin, &url, per_round, move |i| {
                let mut cm = config_map(i);
                cm["metadata"]["name"] = json!(format!("wh-{c}-{round}-{i}"));
                if c == 1 {
                    cm["metadata"]["labels"]["webhook"] = json!("yes");
                }
                cm
            })
            .await;
            cpu[c].push((cpu_secs(pid) - cpu_before) * 1e6 / per_round as f64);
            rates[c].push(per_round as f64 / elapsed.as_secs_f64());
            let mut sorted = lat.clone();
            sorted.sort();
            p50s[c].push(percentile(&sorted, 0.5).as_secs_f64() * 1e3);
            report(
                &format!("16-way ConfigMaps, {label} #{}", round + 1),
                per_round,
                elapsed,
                lat,
            );
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "webhooks: {:.0}/s without, {:.0}/s with a validating + a mutating webhook; p50 {:.2} -> {:.2} ms; server CPU {:.0} -> {:.0} µs/create",
        median(&rates[0]),
        median(&rates[1]),
        median(&p50s[0]),
        median(&p50s[1]),
        median(&cpu[0]),
        median(&cpu[1]),
    );
}

/// What ValidatingAdmissionPolicies cost a create: ConfigMaps that the policy's binding
/// does not select next to ConfigMaps it does (three CEL validations each), in
/// alternating rounds.
async fn admission_policies(admin: &reqwest::Client, (api, pid): (&str, u32), n: usize) {
    let group = format!("{api}/apis/admissionregistration.k8s.io/v1");
    let policy = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": "bench-policy"},
        "spec": {"matchConstraints": {"resourceRules": [{"apiGroups": [""], "apiVersions": ["v1"],
                    "operations": ["CREATE", "UPDATE"], "resources": ["configmaps"]}]},
                 "validations": [
                    {"expression": "object.metadata.name.startsWith('pc-') || object.metadata.name.startsWith('probe-')"},
                    {"expression": "!has(object.data) || object.data.size() <= 10"},
                    {"expression": "object.metadata.labels.all(k, k.size() < 64)",
                     "messageExpression": "'label keys must be short in ' + object.metadata.name"}]}});
    let binding = json!({"apiVersion": "admissionregistration.k8s.io/v1", "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": "bench-binding"},
        "spec": {"policyName": "bench-policy", "validationActions": ["Deny"],
                 "matchResources": {"objectSelector": {"matchLabels": {"policy": "yes"}}}}});
    for (plural, body) in [
        ("validatingadmissionpolicies", &policy),
        ("validatingadmissionpolicybindings", &binding),
    ] {
        let r = admin
            .post(format!("{group}/{plural}"))
            .json(body)
            .send()
            .await
            .unwrap();
        assert_eq!(
            r.status().as_u16(),
            201,
            "{}",
            r.text().await.unwrap_or_default()
        );
    }
    let url = format!("{api}/api/v1/namespaces/default/configmaps");
    // The binding reaches the policies through their watch: wait for a refusal.
    let t = Instant::now();
    loop {
        let probe = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"generateName": "refused-", "labels": {"policy": "yes"}}});
        let r = admin.post(&url).json(&probe).send().await.unwrap();
        if r.status().as_u16() == 422 {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(10),
            "the policy was not enforced"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let rounds = 3;
    let per_round = n / rounds;
    let mut rates: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut p50s: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    let mut cpu: [Vec<f64>; 2] = [Vec::new(), Vec::new()];
    for round in 0..rounds {
        for (c, label) in ["not selected", "3 validations"].into_iter().enumerate() {
            let cpu_before = cpu_secs(pid);
            let (elapsed, lat) = concurrent_creates(admin, &url, per_round, move |i| {
                let mut cm = config_map(i);
                cm["metadata"]["name"] = json!(format!("pc-{c}-{round}-{i}"));
                if c == 1 {
                    cm["metadata"]["labels"]["policy"] = json!("yes");
                }
                cm
            })
            .await;
            cpu[c].push((cpu_secs(pid) - cpu_before) * 1e6 / per_round as f64);
            rates[c].push(per_round as f64 / elapsed.as_secs_f64());
            let mut sorted = lat.clone();
            sorted.sort();
            p50s[c].push(percentile(&sorted, 0.5).as_secs_f64() * 1e3);
            report(
                &format!("16-way ConfigMaps, policy {label} #{}", round + 1),
                per_round,
                elapsed,
                lat,
            );
        }
    }
    let median = |v: &[f64]| {
        let mut v = v.to_vec();
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!(
        "admission policies: {:.0}/s not selected, {:.0}/s with 3 validations; p50 {:.2} -> {:.2} ms; server CPU {:.0} -> {:.0} µs/create; load {}",
        median(&rates[0]),
        median(&rates[1]),
        median(&p50s[0]),
        median(&p50s[1]),
        median(&cpu[0]),
        median(&cpu[1]),
        load_average(),
    );
}

fn client(kubeconfig: &Path) -> reqwest::Client {
    let creds =
        orc::tls::kubeconfig_credentials(&std::fs::read_to_string(kubeconfig).unwrap()).unwrap();
    let tls =
        orc::tls::client_config_pinned(&creds.ca_pem, Some((&creds.cert_pem, &creds.key_pem)))
            .unwrap();
    reqwest::Client::builder()
        .use_preconfigured_tls((*tls).clone())
        .pool_max_idle_per_host(64)
        .build()
        .unwrap()
}

/// Whether the servers keep their state in etcd (`ORC_BENCH_DATASTORE=etcd`).
fn on_etcd() -> bool {
    std::env::var("ORC_BENCH_DATASTORE").is_ok_and(|d| d == "etcd")
}

/// Where the private etcd cluster of the server with data dir `data` lives.
fn etcd_dir(data: &Path) -> std::path::PathBuf {
    data.with_extension("etcd")
}

/// The datastore flags of the server with data dir `data`: on etcd, a fresh private
/// 3-member cluster (stopped by [`stop_datastore`]).
fn datastore_args(data: &Path) -> Vec<String> {
    if !on_etcd() {
        return Vec::new();
    }
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/etcd-test-env.sh");
    let out = Command::new(script)
        .arg("start")
        .arg(etcd_dir(data))
        .arg("3")
        .output()
        .expect("run scripts/etcd-test-env.sh");
    assert!(
        out.status.success(),
        "etcd did not start: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let endpoint = String::from_utf8_lossy(&out.stdout).trim().to_string();
    vec!["--datastore-endpoint".into(), endpoint]
}

/// Stops the private etcd cluster of the server with data dir `data`, if any.
fn stop_datastore(data: &Path) {
    if on_etcd() {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/etcd-test-env.sh");
        let _ = Command::new(script)
            .arg("stop")
            .arg(etcd_dir(data))
            .status();
    }
}

/// Starts `orc server` (control plane only) on `port` with its own data dir: this
/// build's binary, or `ORC_BIN` (to measure a release binary, e.g. a static musl one).
fn spawn_server(port: u16, data: &Path, kubeconfig: &Path) -> std::process::Child {
    let datastore = datastore_args(data);
    Command::new(std::env::var_os("ORC_BIN").unwrap_or_else(|| ORC.into()))
        .args([
            "server",
            "--disable-agent",
            "--bind-address",
            "127.0.0.1",
            "--log-level",
            "warn",
        ])
        .arg("--https-port")
        .arg(port.to_string())
        .arg("--data-dir")
        .arg(data)
        .arg("--write-kubeconfig")
        .arg(kubeconfig)
        .args(datastore)
        .stdout(Stdio::null())
        .spawn()
        .expect("start orc server")
}

/// Median fdatasync latency of a small write in `dir`: what one group commit waits for.
fn fsync_latency(dir: &Path) -> Duration {
    use std::io::Write;
    let path = dir.join("fsync-probe");
    let mut file = std::fs::File::create(&path).unwrap();
    let mut lat = Vec::new();
    for _ in 0..50 {
        let s = Instant::now();
        file.write_all(&[0u8; 4096]).unwrap();
        file.sync_data().unwrap();
        lat.push(s.elapsed());
    }
    let _ = std::fs::remove_file(&path);
    lat.sort();
    percentile(&lat, 0.5)
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .next()
        .unwrap_or("?")
        .to_string()
}

/// How many pods the scheduler has answered as unschedulable so far (its
/// `scheduler_schedule_attempts_total{result="unschedulable"}`; the bench's pods fit no
/// node, there is none).
async fn unschedulable_attempts(http: &reqwest::Client, url: &str) -> u64 {
    let Ok(r) = http.get(format!("{url}/metrics")).send().await else {
        return 0;
    };
    r.text()
        .await
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("scheduler_schedule_attempts_total{result=\"unschedulable\""))
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .map_or(0, |v| v as u64)
}

/// Starts a fresh server in `dir` and waits until it answers; its client and process.
async fn fresh_server(dir: &Path) -> (reqwest::Client, String, std::process::Child) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.join("kc.yaml");
    let mut child = spawn_server(port, &dir.join("data"), &kubeconfig);
    let url = format!("https://127.0.0.1:{port}");
    let started = Instant::now();
    let http = loop {
        if kubeconfig.exists() {
            let c = client(&kubeconfig);
            if c.get(format!("{url}/readyz")).send().await.is_ok() {
                break c;
            }
        }
        if started.elapsed() >= Duration::from_secs(30) {
            let _ = child.kill();
            let _ = child.wait();
            stop_datastore(&dir.join("data"));
            panic!("server did not start");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    (http, url, child)
}

/// The 16-way pod create figure `runs` times, each on a fresh server with `n` creates
/// after its 16 connections are open (connection set-up is not what is measured).
async fn repeated_creates(root: &Path, runs: usize, n: usize) {
    let mut rates = Vec::new();
    let mut p99s = Vec::new();
    let _spinners = Spinners::start();
    for run in 0..runs {
        let dir = root.join(format!("run-{run}"));
        std::fs::create_dir_all(&dir).unwrap();
        let (http, url, mut child) = fresh_server(&dir).await;
        let pid = child.id();
        // Open the 16 connections first.
        let warm: Vec<_> = (0..16)
            .map(|_| {
                let (http, url) = (http.clone(), url.clone());
                tokio::spawn(async move {
                    let _ = http.get(format!("{url}/readyz")).send().await;
                })
            })
            .collect();
        for w in warm {
            let _ = w.await;
        }
        let fsync = fsync_latency(&dir);
        let load = load_average();
        let cpu0 = cpu_secs(pid);
        let threads0 = thread_stats(pid);
        let (sys0, faults0) = sys_and_faults(pid);
        let (client0, machine0) = (cpu_secs(std::process::id()), machine_cpu());
        let (idle0, ipis0) = (idle_entries(), resched_ipis());
        let base = format!("{url}/api/v1/namespaces/default/pods");
        let (elapsed, mut lat) =
            concurrent_creates(&http, &base, n, |i| pod(&format!("run-{i}"))).await;
        let cpu = (cpu_secs(pid) - cpu0) * 1e6 / n as f64;
        let client = (cpu_secs(std::process::id()) - client0) * 1e6 / n as f64;
        let machine = machine_cpu();
        let idles = (idle_entries() - idle0) as f64 / n as f64;
        let ipis = (resched_ipis() - ipis0) as f64 / n as f64;
        let (busy, total) = (machine.0 - machine0.0, machine.1 - machine0.1);
        let threads = thread_split(&threads0, &thread_stats(pid), n);
        let (sys1, faults1) = sys_and_faults(pid);
        // The scheduler answers each pod (its status and a FailedScheduling Event) on its
        // own time: how much of that fell inside the timed window, and the server's CPU
        // per pod once it has answered every pod (the end-to-end cost, whatever the split).
        let in_window = unschedulable_attempts(&http, &url).await;
        let settle = Instant::now();
        while unschedulable_attempts(&http, &url).await < n as u64
            && settle.elapsed() < Duration::from_secs(30)
        {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let end_to_end = (cpu_secs(pid) - cpu0) * 1e6 / n as f64;
        let settled = settle.elapsed().as_secs_f64();
        let sys = (sys1 - sys0) * 1e6 / n as f64;
        let faults = (faults1 - faults0) as f64 / n as f64;
        lat.sort();
        let rate = n as f64 / elapsed.as_secs_f64();
        let p99 = percentile(&lat, 0.99).as_secs_f64() * 1e3;
        println!(
            "16-way run {}/{runs}: {rate:>7.0}/s  p50 {:>5.2} ms  p99 {p99:>6.2} ms  server CPU {cpu:>4.0} µs/create  fsync p50 {:.2} ms  load {load}",
            run + 1,
            percentile(&lat, 0.5).as_secs_f64() * 1e3,
            fsync.as_secs_f64() * 1e3,
        );
        println!(
            "    scheduler answered {in_window} of {n} pods in the window; server CPU per pod with every pod answered {end_to_end:.0} µs ({settled:.1} s later)"
        );
        // Where the machine's CPU went in the timed window: the server's threads, this
        // bench's clients (reqwest, TLS, JSON on the same cores), everything else.
        println!(
            "    server threads: {threads};  server system CPU {sys:.0} µs and {faults:.1} page faults per create;  bench client {client:.0} µs/create;  machine busy {:.0} % of {:.1} core-s, server + client {:.0} % of it;  CPU idle entries {idles:.1} and rescheduling IPIs {ipis:.1} per create",
            busy / total * 100.0,
            total,
            (cpu + client) * n as f64 / 1e6 / busy * 100.0,
        );
        rates.push(rate);
        p99s.push(p99);
        drop(http);
        let _ = child.kill();
        let _ = child.wait();
        stop_datastore(&dir.join("data"));
        let _ = std::fs::remove_dir_all(&dir);
    }
    rates.sort_by(f64::total_cmp);
    p99s.sort_by(f64::total_cmp);
    if let (Some(first), Some(last)) = (rates.first(), rates.last()) {
        println!(
            "16-way creates over {runs} runs of {n}: min {first:.0}/s  median {:.0}/s  max {last:.0}/s;  p99 min {:.2} ms  median {:.2} ms  max {:.2} ms",
            rates[rates.len() / 2],
            p99s[0],
            p99s[p99s.len() / 2],
            p99s[p99s.len() - 1],
        );
    }
}

#[tokio::main]
async fn main() {
    let pods_total = env_num("ORC_BENCH_PODS", 10_000) as usize;
    let idle_secs = env_num("ORC_BENCH_IDLE_SECS", 60);
    let dir = tempfile::tempdir().unwrap();
    if env_num("ORC_BENCH_IDLE_ONLY", 0) == 1 {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        idle(dir.path(), port, idle_secs).await;
        return;
    }
    let policies_only = env_num("ORC_BENCH_POLICIES_ONLY", 0) == 1;
    // First, alone on the machine (no other orc server running).
    if !policies_only {
        repeated_creates(
            dir.path(),
            env_num("ORC_BENCH_RUNS", 5) as usize,
            env_num("ORC_BENCH_RUN_PODS", 5000) as usize,
        )
        .await;
    }
    if env_num("ORC_BENCH_CREATES_ONLY", 0) == 1 {
        return;
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let kubeconfig = dir.path().join("kc.yaml");
    let data = dir.path().join("data");
    let started = Instant::now();
    let mut child = spawn_server(port, &data, &kubeconfig);
    let pid = child.id();
    let http = loop {
        if kubeconfig.exists() {
            let c = client(&kubeconfig);
            if c.get(format!("https://127.0.0.1:{port}/readyz"))
                .send()
                .await
                .is_ok()
            {
                break c;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "server did not start"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    };
    if let Some(bin) = std::env::var_os("ORC_BIN") {
        println!("binary: {}", bin.to_string_lossy());
    }
    println!(
        "machine: {} cores, {}",
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        std::fs::read_to_string("/proc/cpuinfo")
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("model name"))
            .unwrap_or("model name: ?")
            .split(':')
            .nth(1)
            .unwrap_or("?")
            .trim()
    );
    println!(
        "start to ready: {:.0} ms (process spawn to first HTTPS answer)",
        started.elapsed().as_secs_f64() * 1e3
    );
    if policies_only {
        admission_policies(
            &http,
            (&format!("https://127.0.0.1:{port}"), pid),
            env_num("ORC_BENCH_KINDS", 2000) as usize,
        )
        .await;
        let _ = child.kill();
        let _ = child.wait();
        stop_datastore(&data);
        return;
    }
    let base = format!("https://127.0.0.1:{port}/api/v1/namespaces/default/pods");

    // Sequential creates.
    let seq = 1000.min(pods_total);
    let mut lat = Vec::with_capacity(seq);
    let t = Instant::now();
    for i in 0..seq {
        let s = Instant::now();
        let r = http
            .post(&base)
            .json(&pod(&format!("seq-{i}")))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), 201);
        let _ = r.bytes().await;
        lat.push(s.elapsed());
    }
    report("sequential", seq, t.elapsed(), lat);

    // 16-way concurrent creates up to the total.
    let remaining = pods_total.saturating_sub(seq);
    let (elapsed, lat) =
        concurrent_creates(&http, &base, remaining, |i| pod(&format!("par-{i}"))).await;
    report("16-way concurrent", remaining, elapsed, lat);

    // List latency with all pods present.
    let mut lat = Vec::new();
    let mut bytes = 0;
    for _ in 0..10 {
        let s = Instant::now();
        let body = http.get(&base).send().await.unwrap().bytes().await.unwrap();
        lat.push(s.elapsed());
        bytes = body.len();
    }
    lat.sort();
    println!(
        "list {pods_total} pods ({:.1} MB)      p50 {:>7.1} ms  max {:>7.1} ms",
        bytes as f64 / 1e6,
        percentile(&lat, 0.5).as_secs_f64() * 1e3,
        lat.last().unwrap().as_secs_f64() * 1e3
    );
    println!(
        "RSS with {pods_total} pods: {:.1} MB",
        rss_kb(pid) as f64 / 1024.0
    );
    kinds(
        &http,
        &format!("https://127.0.0.1:{port}"),
        env_num("ORC_BENCH_KINDS", 2000) as usize,
    )
    .await;
    rbac(
        &http,
        &kubeconfig,
        &data,
        (&format!("https://127.0.0.1:{port}"), pid),
        env_num("ORC_BENCH_KINDS", 2000) as usize,
    )
    .await;
    pod_tokens(
        &http,
        (&format!("https://127.0.0.1:{port}"), pid),
        env_num("ORC_BENCH_KINDS", 2000) as usize,
    )
    .await;
    webhooks(
        &http,
        (&format!("https://127.0.0.1:{port}"), pid),
        env_num("ORC_BENCH_KINDS", 2000) as usize,
    )
    .await;
    admission_policies(
        &http,
        (&format!("https://127.0.0.1:{port}"), pid),
        env_num("ORC_BENCH_KINDS", 2000) as usize,
    )
    .await;
    drop(http);

    // Idle: a fresh server with an empty cluster.
    let _ = child.kill();
    let _ = child.wait();
    stop_datastore(&data);
    idle(dir.path(), port, idle_secs).await;
}

/// A fresh server with an empty cluster left alone for `idle_secs`: its RSS, CPU and
/// disk writes.
async fn idle(root: &Path, port: u16, idle_secs: u64) {
    let idle_dir = root.join("idle");
    let idle_kc = root.join("idle-kc.yaml");
    let mut child = spawn_server(port, &idle_dir, &idle_kc);
    let pid = child.id();
    tokio::time::sleep(Duration::from_secs(3)).await;
    let (w0, s0, cpu0) = (write_bytes(pid), dir_size(&idle_dir), cpu_secs(pid));
    tokio::time::sleep(Duration::from_secs(idle_secs)).await;
    let (w1, s1, cpu1) = (write_bytes(pid), dir_size(&idle_dir), cpu_secs(pid));
    let per_min = |d: u64| d as f64 * 60.0 / idle_secs as f64;
    println!(
        "idle RSS (empty cluster): {:.1} MB",
        rss_kb(pid) as f64 / 1024.0
    );
    println!(
        "idle CPU over {idle_secs}s: {:.2} % of one core ({:.2} s)",
        (cpu1 - cpu0) * 100.0 / idle_secs as f64,
        cpu1 - cpu0
    );
    println!(
        "idle writes over {idle_secs}s: {:.0} bytes/min written by the process, data dir grew {:.0} bytes/min",
        per_min(w1.saturating_sub(w0)),
        per_min(s1.saturating_sub(s0))
    );
    let _ = child.kill();
    let _ = child.wait();
    stop_datastore(&idle_dir);
}
