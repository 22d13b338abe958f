//! Several nodes on one machine, for the tests that need them: `orc server
//! --disable-agent` and one `orc agent` per entry of [`NODES`], each in a network
//! namespace of its own on a private "LAN" (a bridge in another namespace), each agent
//! with its own containerd. Everything carries a name of its own (namespaces,
//! directory), so such tests run alongside the others; dropping the [`Cluster`] kills
//! the processes, stops the containerds and removes the namespaces and the directory,
//! even when the test fails.
//!
//! Needs root, containerd, runc, busybox-static, nsenter, ip and kubectl
//! (scripts/install-deps.sh).

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::host::{
    in_netns, kubectl_apply, remove_pod_cgroups, repo_path, require_root_and_tools, run,
};
use super::wait::wait_until_every;

pub const ORC: &str = env!("CARGO_BIN_EXE_orc");
/// How often a condition is checked (most checks run kubectl).
pub const POLL_EVERY: Duration = Duration::from_millis(200);
pub const IMAGE: &str = "docker.io/library/busybox:test";
pub const CONTAINERD_NAMESPACE: &str = "orc-multinode";
/// Longest any single wait takes.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The LAN: the server and the nodes, one /24.
pub const SERVER_IP: &str = "192.168.77.1";
pub const LAN_PREFIX_LEN: u8 = 24;
/// The API port; free, as the server has a network namespace of its own.
pub const API_PORT: u16 = 6443;
pub const CLUSTER_CIDR: &str = "10.201.0.0/16";
/// The second server of [`Cluster::start_ha`]: in the server's namespace too, so that
/// both reach the private etcd on that namespace's loopback.
pub const SERVER2_IP: &str = "192.168.77.2";
/// The private etcd of [`Cluster::start_ha`] (loopback of the servers' namespace).
pub const ETCD_CLIENT: &str = "http://127.0.0.1:2379";
/// The nodes: name and LAN address.
pub const NODES: [(&str, &str); 2] = [("n1", "192.168.77.11"), ("n2", "192.168.77.12")];
/// Short heartbeats and timeouts, so that a dead node is noticed within seconds
/// ([`Timing::Short`]).
pub const NODE_LEASE_DURATION: &str = "2s";
pub const NODE_MONITOR_GRACE_PERIOD: &str = "4s";
pub const POD_EVICTION_TIMEOUT: &str = "1s";
pub const NODE_MONITOR_PERIOD: &str = "1s";
pub const DEFAULT_TOLERATION_SECONDS: &str = "1";

/// The node heartbeat and failure timings a cluster runs with.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timing {
    /// The short ones above, for tests that only need a dead node noticed.
    Short,
    /// orc's defaults (no timing flags), for tests of the defaults themselves.
    Default,
}
/// Lines of each log printed when the test fails.
pub const LOG_TAIL_LINES: usize = 120;

/// The test's world. Dropping it kills the processes, stops the containerds, deletes
/// the network namespaces and removes the directory.
pub struct Cluster {
    pub tag: String,
    pub dir: PathBuf,
    /// Network namespaces made so far.
    netns: Vec<String>,
    server: Option<Child>,
    /// One per entry of [`NODES`], once started.
    agents: Vec<Option<Child>>,
    /// Directories of the containerds started so far (one per node).
    containerds: Vec<PathBuf>,
    /// Pods the test saw (their cgroups are removed at the end).
    uids: RefCell<Vec<String>>,
    /// The behaviour the test is checking now (named when the test fails).
    step: RefCell<String>,
    timing: Timing,
    /// The etcd and the second server of [`Cluster::start_ha`].
    etcd: Option<Child>,
    server2: Option<Child>,
    /// Which server the agents join (1 or 2).
    join_server: u8,
}

impl Cluster {
    /// Names the behaviour the following checks prove (a failure names it).
    pub fn step(&self, behaviour: &str) {
        eprintln!("checking: {behaviour}");
        *self.step.borrow_mut() = behaviour.to_string();
    }

    /// A cluster with the busybox test image [`IMAGE`] on every node.
    pub fn start() -> Cluster {
        Cluster::start_with_images(&[])
    }

    /// A cluster whose nodes also have the busybox test image under each of
    /// `extra_images` (other names for the same content, for image changes).
    pub fn start_with_images(extra_images: &[&str]) -> Cluster {
        Cluster::start_with(extra_images, Timing::Short)
    }

    /// A cluster with orc's default node timings (lease, grace, tolerations).
    pub fn start_with_default_timing() -> Cluster {
        Cluster::start_with(&[], Timing::Default)
    }

    pub fn start_with(extra_images: &[&str], timing: Timing) -> Cluster {
        Cluster::start_cluster(extra_images, timing, false)
    }

    /// Two servers on a private etcd (in the servers' namespace): server 1 at
    /// [`SERVER_IP`] starts the cluster (and so leads its controllers), server 2 at
    /// [`SERVER2_IP`] joins it, and the agents join server 2. orc's default timings.
    pub fn start_ha() -> Cluster {
        Cluster::start_cluster(&[], Timing::Default, true)
    }

    fn start_cluster(extra_images: &[&str], timing: Timing, ha: bool) -> Cluster {
        require_root_and_tools("tests/multinode.rs");
        assert!(
            run(Command::new("sh").args(["-c", "command -v busybox"]))
                .status
                .success(),
            "tests/multinode.rs needs busybox (busybox-static): run scripts/install-deps.sh"
        );
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let dir = PathBuf::from(format!("/run/orc-multinode-{tag}"));
        std::fs::create_dir_all(&dir).unwrap();
        let mut c = Cluster {
            tag,
            dir,
            netns: Vec::new(),
            server: None,
            agents: NODES.iter().map(|_| None).collect(),
            containerds: Vec::new(),
            uids: Default::default(),
            step: RefCell::new("starting the cluster".to_string()),
            timing,
            etcd: None,
            server2: None,
            join_server: if ha { 2 } else { 1 },
        };
        let mut tarballs = Vec::new();
        for (i, name) in std::iter::once(IMAGE)
            .chain(extra_images.iter().copied())
            .enumerate()
        {
            let image = c.dir.join(format!("busybox-{i}.tar"));
            let built = run(Command::new(repo_path("scripts/build-test-image.sh"))
                .arg(&image)
                .arg(name));
            assert!(
                built.status.success(),
                "build the busybox test image {name} (needs busybox-static): {}",
                String::from_utf8_lossy(&built.stderr)
            );
            tarballs.push(image);
        }
        for (node, _) in NODES {
            let containerd = c.node_dir(node);
            c.containerds.push(containerd.clone());
            let started = run(Command::new(repo_path("scripts/containerd-test-env.sh"))
                .arg("start")
                .arg(&containerd));
            assert!(
                started.status.success(),
                "start the private containerd of {node}: {}",
                String::from_utf8_lossy(&started.stderr)
            );
            let images = c.data_dir(node).join("agent/images");
            std::fs::create_dir_all(&images).unwrap();
            for image in &tarballs {
                std::fs::copy(image, images.join(image.file_name().unwrap())).unwrap();
            }
        }
        c.make_lan();
        if ha {
            c.start_etcd();
            c.spawn_server_with(&[
                "--datastore-endpoint",
                "etcd://127.0.0.1:2379",
                "--node-name",
                "srv1",
            ]);
        } else {
            c.spawn_server();
        }
        let token = std::fs::read_to_string(c.dir.join("server-data/server/token"))
            .expect("the server wrote its join token");
        if ha {
            c.spawn_server2(token.trim());
        }
        for i in 0..NODES.len() {
            c.spawn_agent(i, token.trim());
        }
        for (node, _) in NODES {
            c.wait_for(&format!("node {node} to be Ready with a podCIDR"), || {
                c.node(node)
                    .is_some_and(|n| is_ready(&n) && n["spec"]["podCIDR"].is_string())
            });
        }
        c
    }

    pub fn netns_name(&self, role: &str) -> String {
        format!("orc-mn-{}-{role}", self.tag)
    }

    pub fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    pub fn data_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    pub fn log_path(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.log"))
    }

    /// The LAN: a bridge in namespace `lan`, and a veth from it to `eth0` of the server's
    /// and each node's namespace.
    pub fn make_lan(&mut self) {
        let lan = self.netns_name("lan");
        self.add_netns(&lan);
        ip(&["-n", &lan, "link", "add", "lan0", "type", "bridge"]);
        ip(&["-n", &lan, "link", "set", "lan0", "up"]);
        let hosts = std::iter::once(("srv", SERVER_IP)).chain(NODES);
        for (host, address) in hosts {
            let ns = self.netns_name(host);
            self.add_netns(&ns);
            ip(&[
                "-n", &lan, "link", "add", host, "type", "veth", "peer", "name", "eth0", "netns",
                &ns,
            ]);
            ip(&["-n", &lan, "link", "set", host, "master", "lan0", "up"]);
            let cidr = format!("{address}/{LAN_PREFIX_LEN}");
            ip(&["-n", &ns, "addr", "add", &cidr, "dev", "eth0"]);
            ip(&["-n", &ns, "link", "set", "eth0", "up"]);
        }
    }

    pub fn add_netns(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.netns.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// `PROGRAM ARGS…` in network namespace `role` (`nsenter`, not `ip netns exec`, which
    /// remounts /sys so that runc finds no cgroups).
    pub fn in_netns(&self, role: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = in_netns(&self.netns_name(role), program);
        cmd.stdin(Stdio::null());
        cmd
    }

    pub fn spawn_logged(&self, mut cmd: Command, who: &str) -> Child {
        let log = std::fs::File::create(self.log_path(who)).unwrap();
        cmd.env("RUST_LOG", "info,orc::agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {who}: {e}"))
    }

    /// The control plane alone, in namespace `srv`, with short node timeouts.
    pub fn spawn_server(&mut self) {
        self.spawn_server_with(&[]);
    }

    /// A one-member etcd on the loopback of namespace `srv` (the servers' namespace).
    fn start_etcd(&mut self) {
        let data = self.dir.join("etcd");
        let mut cmd = self.in_netns("srv", "etcd");
        cmd.args(["--name", "m0", "--data-dir"])
            .arg(&data)
            .args([
                "--listen-client-urls",
                ETCD_CLIENT,
                "--advertise-client-urls",
                ETCD_CLIENT,
            ])
            .args(["--listen-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-advertise-peer-urls", "http://127.0.0.1:2380"])
            .args(["--initial-cluster", "m0=http://127.0.0.1:2380"])
            .args(["--logger=zap", "--log-outputs=stderr"]);
        self.etcd = Some(self.spawn_logged(cmd, "etcd"));
        self.wait_for("the private etcd to be healthy", || {
            run(&mut self.etcdctl(&["endpoint", "health"]))
                .status
                .success()
        });
    }

    /// `etcdctl ARGS…` against the private etcd of [`Cluster::start_ha`].
    pub fn etcdctl(&self, args: &[&str]) -> Command {
        let mut cmd = self.in_netns("srv", "etcdctl");
        cmd.args(["--endpoints", ETCD_CLIENT]).args(args);
        cmd
    }

    /// The second server at [`SERVER2_IP`], joining the first with `token`.
    fn spawn_server2(&mut self, token: &str) {
        let cidr = format!("{SERVER2_IP}/{LAN_PREFIX_LEN}");
        ip(&[
            "-n",
            &self.netns_name("srv"),
            "addr",
            "add",
            &cidr,
            "dev",
            "eth0",
        ]);
        let mut cmd = self.in_netns("srv", ORC);
        cmd.arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(self.dir.join("server2-data"))
            .args(["--bind-address", SERVER2_IP])
            .args(["--https-port", &API_PORT.to_string()])
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig2())
            .args(["--cluster-cidr", CLUSTER_CIDR])
            .args([
                "--datastore-endpoint",
                "etcd://127.0.0.1:2379",
                "--node-name",
                "srv2",
            ])
            .args(["--server", &format!("https://{SERVER_IP}:{API_PORT}")])
            .args(["--token", token]);
        self.server2 = Some(self.spawn_logged(cmd, "server2"));
        self.wait_for("the second server to answer", || {
            self.kubeconfig2().exists()
                && run(self
                    .kubectl_cmd(&["get", "namespace", "default"])
                    .env("KUBECONFIG", self.kubeconfig2()))
                .status
                .success()
        });
    }

    pub fn kubeconfig2(&self) -> PathBuf {
        self.dir.join("kubeconfig-2.yaml")
    }

    /// Kills server `n` (1 or 2) at once (SIGKILL); kubectl then talks to the other.
    pub fn kill_server(&mut self, n: u8) {
        let child = if n == 1 {
            self.server.take()
        } else {
            self.server2.take()
        };
        if let Some(mut child) = child {
            let _ = child.kill();
            let _ = child.wait();
        }
        if n == 1 {
            std::fs::copy(self.kubeconfig2(), self.kubeconfig()).unwrap();
        }
    }

    /// The first server with `extra` flags.
    fn spawn_server_with(&mut self, extra: &[&str]) {
        let mut cmd = self.in_netns("srv", ORC);
        cmd.arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(self.dir.join("server-data"))
            .args(["--bind-address", SERVER_IP])
            .args(["--https-port", &API_PORT.to_string()])
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(["--cluster-cidr", CLUSTER_CIDR]);
        if self.timing == Timing::Short {
            cmd.args(["--node-monitor-grace-period", NODE_MONITOR_GRACE_PERIOD])
                .args(["--node-monitor-period", NODE_MONITOR_PERIOD])
                .args(["--pod-eviction-timeout", POD_EVICTION_TIMEOUT])
                .args([
                    "--default-unreachable-toleration-seconds",
                    DEFAULT_TOLERATION_SECONDS,
                ])
                .args([
                    "--default-not-ready-toleration-seconds",
                    DEFAULT_TOLERATION_SECONDS,
                ]);
        }
        cmd.args(extra);
        self.server = Some(self.spawn_logged(cmd, "server"));
        self.wait_for("the API server to answer", || {
            self.kubeconfig().exists()
                && self
                    .kubectl(&["get", "namespace", "default"])
                    .status
                    .success()
        });
    }

    /// `orc agent --join …` for node `NODES[i]` in its namespace, on its containerd.
    pub fn spawn_agent(&mut self, i: usize, token: &str) {
        let (node, address) = NODES[i];
        let mut cmd = self.in_netns(node, ORC);
        cmd.arg("agent")
            .args(["--join", &format!("https://{}:{API_PORT}", self.join_ip())])
            .args(["--token", token])
            .args(["--node-name", node, "--node-ip", address])
            .arg("--data-dir")
            .arg(self.data_dir(node))
            .arg("--containerd-socket")
            .arg(self.node_dir(node).join("containerd.sock"))
            .args(["--containerd-namespace", CONTAINERD_NAMESPACE])
            .args(["--cluster-cidr", CLUSTER_CIDR])
            // The host's free disk must not decide the tests (no node-pressure eviction).
            .arg("--eviction-hard=");
        if self.timing == Timing::Short {
            cmd.args(["--node-lease-duration", NODE_LEASE_DURATION]);
        }
        self.agents[i] = Some(self.spawn_logged(cmd, &format!("agent-{node}")));
    }

    /// The address the agents join.
    pub fn join_ip(&self) -> &'static str {
        if self.join_server == 2 {
            SERVER2_IP
        } else {
            SERVER_IP
        }
    }

    /// Kills the agent of `node` at once (SIGKILL): its containers keep running.
    pub fn kill_agent(&mut self, node: &str) {
        let i = NODES.iter().position(|(n, _)| *n == node).unwrap();
        if let Some(mut child) = self.agents[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Kills the agent of `node` (SIGKILL) and starts it again with the same data dir.
    pub fn restart_agent(&mut self, node: &str) {
        self.kill_agent(node);
        let i = NODES.iter().position(|(n, _)| *n == node).unwrap();
        let token = std::fs::read_to_string(self.dir.join("server-data/server/token"))
            .expect("the server wrote its join token");
        self.spawn_agent(i, token.trim());
    }

    /// `node` dies as a machine would: its agent is killed (SIGKILL), its containers
    /// too, and its LAN cable is pulled (nothing of it answers any more).
    pub fn kill_node(&mut self, node: &str) {
        self.kill_agent(node);
        self.set_link(node, false);
        let sock = self.node_dir(node).join("containerd.sock");
        let ctr = |args: &[&str]| {
            run(Command::new("ctr")
                .arg("--address")
                .arg(&sock)
                .args(["-n", CONTAINERD_NAMESPACE])
                .args(args))
        };
        let tasks = String::from_utf8_lossy(&ctr(&["tasks", "ls", "-q"]).stdout).to_string();
        for task in tasks.split_whitespace() {
            let killed = ctr(&["tasks", "kill", "-s", "SIGKILL", task]);
            assert!(
                killed.status.success(),
                "kill task {task} of {node}: {}",
                String::from_utf8_lossy(&killed.stderr)
            );
        }
    }

    /// Plugs (`up`) or pulls `node`'s LAN cable: its port on the LAN bridge goes up or
    /// down, so the node's eth0 keeps its addresses and routes but loses its carrier.
    pub fn set_link(&self, node: &str, up: bool) {
        let lan = self.netns_name("lan");
        let state = if up { "up" } else { "down" };
        ip(&["-n", &lan, "link", "set", node, state]);
    }

    /// kubectl in the server's network namespace.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.in_netns("srv", "kubectl");
        cmd.args(args).env("KUBECONFIG", self.kubeconfig());
        cmd
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        run(&mut self.kubectl_cmd(args))
    }

    pub fn kubectl_out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.kubectl(args).stdout)
            .trim()
            .to_string()
    }

    /// kubectl `args`, which must succeed; its trimmed output.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// kubectl `args` with `stdin`, which must fail; its error output.
    pub fn kubectl_stdin_fails(&self, args: &[&str], stdin: &str) -> String {
        use std::io::Write;
        let mut child = self
            .kubectl_cmd(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn kubectl");
        if let Some(mut input) = child.stdin.take() {
            input
                .write_all(stdin.as_bytes())
                .expect("write kubectl stdin");
        }
        let out = child.wait_with_output().expect("kubectl");
        assert!(
            !out.status.success(),
            "kubectl {} succeeded: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).trim().to_string()
    }

    pub fn kubectl_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.kubectl(&[args, &["-o", "json"]].concat());
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    pub fn apply(&self, yaml: &str) {
        kubectl_apply(self.kubectl_cmd(&["apply", "-f", "-"]), yaml);
    }

    pub fn node(&self, name: &str) -> Option<Value> {
        self.kubectl_json(&["get", "node", name])
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        self.kubectl_json(&["get", "pod", name])
    }

    /// Waits for pod `name` to run with an IP; returns it.
    pub fn wait_running(&self, name: &str) -> Value {
        let mut pod = Value::Null;
        self.wait_for(&format!("pod {name} to be Running with an IP"), || {
            pod = self.pod(name).unwrap_or_default();
            pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()
        });
        self.remember(&pod);
        pod
    }

    pub fn remember(&self, pod: &Value) {
        if let Some(uid) = pod["metadata"]["uid"].as_str() {
            let mut uids = self.uids.borrow_mut();
            if !uids.iter().any(|u| u == uid) {
                uids.push(uid.to_string());
            }
        }
    }

    pub fn wait_for(&self, what: &str, cond: impl FnMut() -> bool) {
        self.wait_within(DEADLINE, what, cond);
    }

    pub fn wait_within(&self, deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
        wait_until_every(deadline, POLL_EVERY, what, cond);
    }

    /// Runs busybox `args` inside `pod`'s network namespace (the one the agent made at
    /// `agent/netns/<uid>`), as the pod's containers would: bounded, output or error.
    pub fn in_pod(&self, pod: &Value, args: &[&str]) -> Result<String, String> {
        let node = pod["spec"]["nodeName"].as_str().unwrap();
        let uid = pod["metadata"]["uid"].as_str().unwrap();
        let netns = self.data_dir(node).join("agent/netns").join(uid);
        let out = run(Command::new("timeout")
            .arg("10")
            .arg("nsenter")
            .arg(format!("--net={}", netns.display()))
            .arg("busybox")
            .args(args)
            .stdin(Stdio::null()));
        let stdout = String::from_utf8_lossy(&out.stdout).trim().to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!(
                "busybox {args:?} in pod {}: {} {stdout} {}",
                pod["metadata"]["name"],
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    /// Retries `args` from `pod` until it succeeds (bounded); its output.
    pub fn in_pod_until_ok(&self, pod: &Value, args: &[&str]) -> String {
        let start = Instant::now();
        loop {
            match self.in_pod(pod, args) {
                Ok(out) => return out,
                Err(e) if start.elapsed() >= DEADLINE => panic!("{e}\n{}", self.diagnostics()),
                Err(_) => std::thread::sleep(Duration::from_millis(300)),
            }
        }
    }

    /// orc's host-gw routes in `node`'s namespace, as `ip route` prints them.
    pub fn pod_routes(&self, node: &str) -> String {
        let ns = self.netns_name(node);
        let out = run(Command::new("ip").args(["-n", &ns, "route", "show", "proto", "79"]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Routes and nftables of every node, for failure messages.
    pub fn diagnostics(&self) -> String {
        let mut out = String::new();
        for (node, _) in NODES {
            for args in [
                &["ip", "route"][..],
                &["ip", "addr"],
                &["nft", "list", "ruleset"],
            ] {
                let o = run(self.in_netns(node, args[0]).args(&args[1..]));
                out.push_str(&format!(
                    "--- {node}: {} ---\n{}{}",
                    args.join(" "),
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                ));
            }
        }
        out
    }

    pub fn print_logs(&self) {
        let mut who = vec![
            "server".to_string(),
            "server2".to_string(),
            "etcd".to_string(),
        ];
        who.extend(NODES.iter().map(|(n, _)| format!("agent-{n}")));
        for w in who {
            let log = std::fs::read_to_string(self.log_path(&w)).unwrap_or_default();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
            eprintln!(
                "--- {w} log (last {} lines) ---\n{}",
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if std::thread::panicking() {
            self.print_logs();
            eprintln!("--- failed while checking: {} ---", self.step.borrow());
        }
        let servers = [&mut self.server, &mut self.server2, &mut self.etcd];
        for child in self.agents.iter_mut().chain(servers) {
            if let Some(mut c) = child.take() {
                let _ = c.kill();
                let _ = c.wait();
            }
        }
        let mut uids = self.uids.borrow().clone();
        for (node, _) in NODES {
            let pods = std::fs::read_dir(self.data_dir(node).join("agent/pods"));
            uids.extend(
                pods.into_iter()
                    .flatten()
                    .flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned()),
            );
        }
        // Stops tasks and shims, unmounts everything below each node's directory (rootfs,
        // the pods' network namespaces) and removes it.
        for dir in &self.containerds {
            let _ = Command::new(repo_path("scripts/containerd-test-env.sh"))
                .arg("stop")
                .arg(dir)
                .status();
        }
        // Bridges, routes and nftables tables live and die with these namespaces.
        for ns in &self.netns {
            let _ = Command::new("ip").args(["netns", "delete", ns]).status();
        }
        for uid in &uids {
            remove_pod_cgroups(uid);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `ip ARGS…`, which must succeed.
pub fn ip(args: &[&str]) {
    let out = run(Command::new("ip").args(args));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

pub fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}
