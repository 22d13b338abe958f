//! Pod startup benchmark: create → Running latency (p50/p99/max) over 100 pods with the
//! image already present, then idle RSS of the server (with its embedded agent) and of a
//! separate `orc agent`. Prints figures; asserts nothing beyond the setup working.
//!
//! Run as root: `scripts/bench-pods.sh` (or `cargo bench --bench pods`). Needs what the
//! kubelet tests (tests/support/kubelet.rs) need (containerd, runc, busybox-static,
//! nsenter, ip, kubectl) and reuses their setup: a private containerd
//! (scripts/containerd-test-env.sh), the busybox test image imported from
//! `<data-dir>/agent/images/`, and `orc server` in a network namespace of its own. The
//! separate agent runs in a second namespace joined to the first by a veth pair.
//! Everything lives in one directory under /run that is removed, with both namespaces,
//! when the bench ends (also on panic).
//!
//! Env: ORC_BENCH_PODS (default 100), ORC_BENCH_IDLE_SECS (default 30),
//! ORC_EVICTION_HARD (the nodes' hard eviction thresholds; default: memory and a disk
//! 99 % full only, so that a busy development disk does not stop the pods). For profiling,
//! ORC_BENCH_LOG sets the server's RUST_LOG (default `info`; e.g.
//! `info,orc::agent::kubelet=debug` for the kubelet's per-step timings) and
//! ORC_BENCH_SERVER_LOG names a file the server's log is copied to before the bench's
//! directory is removed. ORC_BENCH_BIN runs another orc binary than the one built with the
//! bench (e.g. a baseline's, for a before/after in the same conditions).
//!
//! Idle mode (`scripts/bench-idle.sh`): with ORC_BENCH_IDLE_PODS set to counts such as
//! `0,30,100`, runs that many idle pods (`sleep`, no probes) in turn and measures the CPU
//! the `orc server` process (with its embedded agent) uses over ORC_BENCH_IDLE_WINDOW
//! seconds (default 60; utime + stime from /proc/PID/stat) after ORC_BENCH_IDLE_SETTLE
//! seconds (default 15) once all are Running, as % of one core.

use std::collections::HashMap;
use std::io::BufReader;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "../tests/support/mod.rs"]
mod support;
use support::host::{free_port, in_netns, repo_path, require_root_and_tools, run};

/// The orc binary the bench runs: ORC_BENCH_BIN, else the one cargo built with it (so one
/// bench binary can compare two orc builds in the same conditions).
fn orc_bin() -> String {
    std::env::var("ORC_BENCH_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_orc").to_string())
}
const IMAGE: &str = "docker.io/library/busybox:test";
const NAMESPACE: &str = "orc-bench-pods";
const AGENT_NAMESPACE: &str = "orc-bench-agent";
const NODE: &str = "bench-node";
const AGENT_NODE: &str = "bench-agent";
/// The veth pair between the server's namespace and the separate agent's.
const SERVER_VETH_IP: &str = "10.251.0.1";
const AGENT_VETH_IP: &str = "10.251.0.2";
/// Longest the setup waits for the node (or the agent) to be Ready.
const SETUP_DEADLINE: Duration = Duration::from_secs(60);
/// Longest all pods together may take to be Running, and to be cleaned up.
const PODS_DEADLINE: Duration = Duration::from_secs(300);

fn env_num(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn run_ok(what: &str, cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        out.status.success(),
        "{what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        .unwrap_or(0)
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn spawn_logged(cmd: &mut Command, log: &Path) -> Child {
    let log = std::fs::File::create(log).unwrap();
    cmd.stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"))
}

/// The node-pressure thresholds the bench's nodes run with (ORC_EVICTION_HARD, else
/// memory and a nearly full disk only): a development machine's disk is often past the
/// default 10 % / 15 % free, and a node under DiskPressure schedules nothing, so the
/// bench would wait for pods that never start.
fn eviction_hard() -> String {
    std::env::var("ORC_EVICTION_HARD").unwrap_or_else(|_| {
        "memory.available<100Mi,nodefs.available<1%,imagefs.available<1%,nodefs.inodesFree<5%"
            .to_string()
    })
}

/// The bench's world: a directory, a private containerd, two network namespaces, the
/// server in the first and (later) a separate agent in the second. Dropping it removes
/// all of them.
struct World {
    dir: PathBuf,
    netns: String,
    agent_netns: String,
    server: Option<Child>,
    agent: Option<Child>,
    port: u16,
}

impl World {
    fn start() -> World {
        require_root_and_tools("benches/pods.rs");
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let dir = PathBuf::from(format!("/run/orc-bench-pods-{tag}"));
        let world = World {
            dir: dir.clone(),
            netns: format!("orc-bp-{tag}"),
            agent_netns: format!("orc-bpa-{tag}"),
            server: None,
            agent: None,
            port: free_port(),
        };
        std::fs::create_dir_all(world.data_dir().join("agent/images")).unwrap();
        run_ok(
            "build the busybox test image (needs busybox-static)",
            Command::new(repo_path("scripts/build-test-image.sh"))
                .arg(world.data_dir().join("agent/images/busybox.tar"))
                .arg(IMAGE),
        );
        run_ok(
            "start a private containerd",
            Command::new(repo_path("scripts/containerd-test-env.sh"))
                .arg("start")
                .arg(&dir),
        );
        for ns in [&world.netns, &world.agent_netns] {
            run_ok(
                "ip netns add",
                Command::new("ip").args(["netns", "add", ns]),
            );
            run(Command::new("ip").args(["-n", ns, "link", "set", "lo", "up"]));
        }
        let veth = format!("obp{}", &tag[..6]);
        run_ok(
            "ip link add veth",
            Command::new("ip").args([
                "-n",
                &world.netns,
                "link",
                "add",
                &format!("{veth}s"),
                "type",
                "veth",
                "peer",
                "name",
                &format!("{veth}a"),
                "netns",
                &world.agent_netns,
            ]),
        );
        for (ns, dev, ip) in [
            (&world.netns, format!("{veth}s"), SERVER_VETH_IP),
            (&world.agent_netns, format!("{veth}a"), AGENT_VETH_IP),
        ] {
            let cidr = format!("{ip}/30");
            run_ok(
                "ip addr add",
                Command::new("ip").args(["-n", ns, "addr", "add", &cidr, "dev", &dev]),
            );
            run_ok(
                "ip link set up",
                Command::new("ip").args(["-n", ns, "link", "set", &dev, "up"]),
            );
        }
        world
    }

    /// Starts `orc server` (with its embedded agent) in the first namespace, listening on
    /// all its addresses so that the separate agent can reach it over the veth.
    fn spawn_server(&mut self) {
        let child = spawn_logged(
            in_netns(&self.netns, orc_bin())
                .arg("server")
                .arg("--data-dir")
                .arg(self.data_dir())
                .args(["--bind-address", "0.0.0.0", "--https-port"])
                .arg(self.port.to_string())
                .args(["--tls-san", SERVER_VETH_IP])
                .arg("--write-kubeconfig")
                .arg(self.kubeconfig())
                .args(["--node-name", NODE, "--cluster-cidr", "10.198.0.0/16"])
                .arg("--containerd-socket")
                .arg(self.dir.join("containerd.sock"))
                .args(["--containerd-namespace", NAMESPACE])
                .arg(format!("--eviction-hard={}", eviction_hard()))
                .env(
                    "RUST_LOG",
                    std::env::var("ORC_BENCH_LOG").unwrap_or_else(|_| "info".into()),
                ),
            &self.dir.join("server.log"),
        );
        self.server = Some(child);
    }

    /// Starts a separate `orc agent` in the second namespace, joined over the veth, on the
    /// same containerd (its own containerd namespace).
    fn spawn_agent(&mut self) {
        let token = std::fs::read_to_string(self.data_dir().join("server/token"))
            .expect("read the join token");
        let data_dir = self.dir.join("agent-data");
        std::fs::create_dir_all(&data_dir).unwrap();
        let child = spawn_logged(
            in_netns(&self.agent_netns, orc_bin())
                .arg("agent")
                .arg("--join")
                .arg(format!("https://{SERVER_VETH_IP}:{}", self.port))
                .args(["--token", token.trim()])
                .arg("--data-dir")
                .arg(&data_dir)
                .args(["--node-name", AGENT_NODE, "--node-ip", AGENT_VETH_IP])
                .args(["--cluster-cidr", "10.198.0.0/16"])
                .arg("--containerd-socket")
                .arg(self.dir.join("containerd.sock"))
                .args(["--containerd-namespace", AGENT_NAMESPACE])
                .arg(format!("--eviction-hard={}", eviction_hard()))
                .env("RUST_LOG", "info"),
            &self.dir.join("agent.log"),
        );
        self.agent = Some(child);
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    /// kubectl inside the server's network namespace.
    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = in_netns(&self.netns, "kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null());
        cmd
    }

    fn kubectl_out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&run(&mut self.kubectl_cmd(args)).stdout)
            .trim()
            .to_string()
    }

    fn node_ready(&self, node: &str) -> bool {
        self.kubeconfig().exists()
            && self.kubectl_out(&[
                "get",
                "node",
                node,
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Ready\")].status}",
            ]) == "True"
    }

    fn containers(&self, namespace: &str) -> usize {
        let out = run(Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["-n", namespace, "containers", "ls", "-q"]));
        String::from_utf8_lossy(&out.stdout).lines().count()
    }

    fn wait_for(&self, what: &str, deadline: Duration, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            if start.elapsed() > deadline {
                panic!("timed out waiting for {what}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn pid(child: &Option<Child>) -> u32 {
        // nsenter execs orc, so the child's pid is orc's.
        child.as_ref().expect("process started").id()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        for mut child in [self.agent.take(), self.server.take()]
            .into_iter()
            .flatten()
        {
            let _ = child.kill();
            let _ = child.wait();
        }
        if let Ok(keep) = std::env::var("ORC_BENCH_SERVER_LOG") {
            if let Err(e) = std::fs::copy(self.dir.join("server.log"), &keep) {
                eprintln!("copy the server log to {keep}: {e}");
            }
        }
        if std::thread::panicking() {
            for log in ["server.log", "agent.log"] {
                let text = std::fs::read_to_string(self.dir.join(log)).unwrap_or_default();
                let tail: Vec<&str> = text.lines().rev().take(40).collect();
                eprintln!("--- {log} (last lines) ---");
                for l in tail.into_iter().rev() {
                    eprintln!("{l}");
                }
            }
        }
        let uids: Vec<String> = [
            self.data_dir().join("agent/pods"),
            self.dir.join("agent-data/agent/pods"),
        ]
        .iter()
        .flat_map(|d| std::fs::read_dir(d).into_iter().flatten().flatten())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
        // Stops tasks and shims, unmounts everything below the directory and removes it.
        let _ = Command::new(repo_path("scripts/containerd-test-env.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        // The bridges, the veth pair and the nftables tables die with the namespaces.
        for ns in [&self.netns, &self.agent_netns] {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        for uid in &uids {
            remove_pod_cgroups(uid);
        }
    }
}

/// Removes the cgroups of pod `uid` (and of its containers) in every hierarchy.
fn remove_pod_cgroups(uid: &str) {
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
    {
        let pod = hierarchy.path().join("orc").join(format!("pod{uid}"));
        for c in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
            if c.path().is_dir() {
                let _ = std::fs::remove_dir(c.path());
            }
        }
        let _ = std::fs::remove_dir(&pod);
    }
}

fn pod_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: bench
spec:
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sleep\", \"3600\"]
"
    )
}

/// Watches pods through `kubectl get pods -w` and sends each pod's name the first time
/// its phase is Running, with the instant the event was read.
fn watch_running(w: &World) -> (Child, mpsc::Receiver<(String, Instant)>) {
    let mut child = w
        .kubectl_cmd(&["get", "pods", "-w", "--output-watch-events", "-o", "json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubectl get pods -w");
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut seen = std::collections::HashSet::new();
        let events = serde_json::Deserializer::from_reader(BufReader::new(stdout));
        for event in events.into_iter::<Value>() {
            let Ok(event) = event else { break };
            let now = Instant::now();
            let pod = &event["object"];
            let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
            if pod["status"]["phase"] == "Running"
                && seen.insert(name.clone())
                && tx.send((name, now)).is_err()
            {
                break;
            }
        }
    });
    (child, rx)
}

fn create_pod(w: &World, name: &str) {
    kubectl_create(w, &pod_yaml(name), &format!("pod {name}"));
}

/// `kubectl create -f -` of `yaml`; `what` names it if kubectl fails.
fn kubectl_create(w: &World, yaml: &str, what: &str) {
    use std::io::Write;
    let mut child = w
        .kubectl_cmd(&["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl create");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "kubectl create {what}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A Parallel StatefulSet of `replicas` busybox pods: create → `status.readyReplicas`
/// equal to the replicas (polled every 50 ms).
fn bench_statefulset(w: &World, replicas: u64) {
    use std::io::Write;
    let yaml = format!(
        "apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: bench
spec:
  replicas: {replicas}
  serviceName: bench
  podManagementPolicy: Parallel
  selector:
    matchLabels:
      app: bench
  template:
    metadata:
      labels:
        app: bench
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: sleep
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [\"sleep\", \"3600\"]
"
    );
    let start = Instant::now();
    let mut child = w
        .kubectl_cmd(&["create", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .expect("spawn kubectl create");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(yaml.as_bytes())
        .unwrap();
    assert!(
        child.wait().unwrap().success(),
        "kubectl create statefulset"
    );
    let want = replicas.to_string();
    loop {
        let ready = w.kubectl_out(&[
            "get",
            "sts",
            "bench",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]);
        if ready == want {
            break;
        }
        assert!(
            start.elapsed() < PODS_DEADLINE,
            "only {ready} of {replicas} ready after {PODS_DEADLINE:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    println!(
        "StatefulSet of {replicas} (Parallel): create → all Ready in {:.2}s",
        start.elapsed().as_secs_f64()
    );
    run_ok(
        "kubectl delete sts",
        &mut w.kubectl_cmd(&["delete", "sts", "bench", "--wait=false"]),
    );
}

/// utime + stime of process `pid` in clock ticks (fields 14 and 15 of /proc/PID/stat;
/// the command name, field 2, may hold spaces, so fields count from its closing paren).
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("read /proc/PID/stat");
    let after = &stat[stat.rfind(')').expect("stat has (comm)") + 2..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    // `after` starts at field 3 (state): utime is field 14, stime 15.
    let field = |n: usize| -> u64 { fields[n - 3].parse().expect("numeric stat field") };
    field(14) + field(15)
}

fn clock_ticks_per_second() -> u64 {
    let out = run(Command::new("getconf").arg("CLK_TCK"));
    String::from_utf8_lossy(&out.stdout)
        .trim()
        .parse()
        .unwrap_or(100)
}

/// Creates pods `idle-{from}`..`idle-{to}` with one `kubectl create` of a YAML stream.
fn create_idle_pods(w: &World, from: usize, to: usize) {
    if from >= to {
        return;
    }
    let yaml: Vec<String> = (from..to)
        .map(|i| pod_yaml(&format!("idle-{i:03}")).replace("app: bench", "app: idle"))
        .collect();
    kubectl_create(w, &yaml.join("---\n"), "idle pods");
}

fn running_pods(w: &World, label: &str) -> usize {
    w.kubectl_out(&[
        "get",
        "pods",
        "-l",
        label,
        "--field-selector=status.phase=Running",
        "-o",
        "name",
    ])
    .lines()
    .count()
}

/// Idle cost: for each count, that many idle pods Running, then the server's CPU over
/// a window.
fn bench_idle(w: &World, counts: &[usize]) {
    let window = Duration::from_secs(env_num("ORC_BENCH_IDLE_WINDOW", 60));
    let settle = Duration::from_secs(env_num("ORC_BENCH_IDLE_SETTLE", 15));
    let hz = clock_ticks_per_second();
    let pid = World::pid(&w.server);
    println!(
        "idle CPU of `orc server` + embedded agent (pid {pid}): pods `sleep 3600` without probes; \
         {}s settle, then utime+stime over {}s",
        settle.as_secs(),
        window.as_secs()
    );
    let mut have = 0;
    for &count in counts {
        create_idle_pods(w, have, count);
        have = have.max(count);
        w.wait_for("idle pods Running", PODS_DEADLINE, || {
            running_pods(w, "app=idle") >= count
        });
        std::thread::sleep(settle);
        let before = cpu_ticks(pid);
        let start = Instant::now();
        std::thread::sleep(window);
        let ticks = cpu_ticks(pid) - before;
        let secs = start.elapsed().as_secs_f64();
        println!(
            "{count:>4} idle pods: {:.2} % of one core ({ticks} ticks at {hz} Hz over {secs:.1}s), RSS {:.1} MB",
            ticks as f64 / hz as f64 / secs * 100.0,
            rss_kb(pid) as f64 / 1024.0,
        );
    }
}

fn main() {
    let pods = env_num("ORC_BENCH_PODS", 100) as usize;
    let idle = Duration::from_secs(env_num("ORC_BENCH_IDLE_SECS", 30));
    let mut w = World::start();
    let spawned = Instant::now();
    w.spawn_server();
    w.wait_for("node Ready", SETUP_DEADLINE, || w.node_ready(NODE));
    println!("orc pod startup bench: {pods} pods `sleep 3600`, image present, 1 node");
    println!(
        "start to node Ready (spawn of orc server with its agent → Ready=True, polled by kubectl): {} ms",
        spawned.elapsed().as_millis()
    );
    if let Ok(counts) = std::env::var("ORC_BENCH_IDLE_PODS") {
        let counts: Vec<usize> = counts
            .split(',')
            .map(|c| {
                c.trim()
                    .parse()
                    .expect("ORC_BENCH_IDLE_PODS: numbers, e.g. 0,30,100")
            })
            .collect();
        bench_idle(&w, &counts);
        return;
    }
    if let Ok(replicas) = std::env::var("ORC_BENCH_STATEFULSET") {
        bench_statefulset(
            &w,
            replicas.parse().expect("ORC_BENCH_STATEFULSET: a number"),
        );
        return;
    }

    // Sequential creation: each create is sent when the previous one has returned, without
    // waiting for the previous pod to run, so startups overlap.
    let (mut watch, running) = watch_running(&w);
    let mut created: HashMap<String, Instant> = HashMap::new();
    let mut ran: HashMap<String, Instant> = HashMap::new();
    let start = Instant::now();
    for i in 0..pods {
        let name = format!("bench-{i:03}");
        create_pod(&w, &name);
        created.insert(name, Instant::now());
        ran.extend(running.try_iter());
    }
    let created_in = start.elapsed();
    while ran.len() < pods {
        let left = PODS_DEADLINE.saturating_sub(start.elapsed());
        match running.recv_timeout(left) {
            Ok((name, at)) => {
                ran.insert(name, at);
            }
            Err(_) => panic!(
                "only {} of {pods} pods Running after {PODS_DEADLINE:?}",
                ran.len()
            ),
        }
    }
    let all_running = start.elapsed();
    let _ = watch.kill();
    let _ = watch.wait();
    let mut latency: Vec<Duration> = created
        .iter()
        .map(|(name, c)| ran[name].saturating_duration_since(*c))
        .collect();
    latency.sort();
    println!(
        "created {pods} pods sequentially in {:.2}s; all Running after {:.2}s",
        created_in.as_secs_f64(),
        all_running.as_secs_f64()
    );
    println!(
        "startup latency (create returned → phase Running): p50 {:.0} ms  p99 {:.0} ms  max {:.0} ms  min {:.0} ms",
        ms(percentile(&latency, 0.50)),
        ms(percentile(&latency, 0.99)),
        ms(*latency.last().unwrap()),
        ms(latency[0]),
    );

    let deleting = Instant::now();
    run_ok(
        "kubectl delete pods",
        &mut w.kubectl_cmd(&["delete", "pods", "-l", "app=bench", "--wait=false"]),
    );
    w.wait_for("pods and containers cleaned up", PODS_DEADLINE, || {
        w.kubectl_out(&["get", "pods", "-o", "name"]).is_empty() && w.containers(NAMESPACE) == 0
    });
    println!(
        "deleted {pods} pods (objects and containers gone) in {:.2}s",
        deleting.elapsed().as_secs_f64()
    );

    // Idle: the separate agent joins while the server idles; both are measured after
    // `idle` without pods.
    w.spawn_agent();
    w.wait_for("separate agent Ready", SETUP_DEADLINE, || {
        w.node_ready(AGENT_NODE)
    });
    std::thread::sleep(idle);
    println!(
        "idle RSS after {}s, no pods: orc server + embedded agent (one process) {:.1} MB; separate `orc agent` {:.1} MB",
        idle.as_secs(),
        rss_kb(World::pid(&w.server)) as f64 / 1024.0,
        rss_kb(World::pid(&w.agent)) as f64 / 1024.0,
    );
}
