//! Several nodes on one machine: `orc server --disable-agent` and two `orc agent`s that
//! join it with the token, each in a network namespace of its own on a private "LAN" (a
//! bridge in a fourth namespace), each agent with its own containerd. Pods on different
//! nodes reach each other by pod IP (host-gw routes, source addresses kept), a Service
//! whose pods all run on the other node answers through the local proxy, and a
//! replication controller's pods come back on the surviving node when an agent dies.
//!
//! Needs root, containerd, runc, busybox-static, nsenter, ip and kubectl
//! (scripts/install-deps.sh). Everything the test makes carries a name of its own
//! (namespaces, directory), so it runs alongside the other tests; the drop guard kills
//! the processes, stops the containerds and removes the namespaces and the directory,
//! even when the test fails.

use std::cell::RefCell;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::host::{
    in_netns, kubectl_apply, remove_pod_cgroups, repo_path, require_root_and_tools, run,
};

use support::wait::wait_until_every;

const ORC: &str = env!("CARGO_BIN_EXE_orc");
/// How often a condition is checked (most checks run kubectl).
const POLL_EVERY: Duration = Duration::from_millis(200);
const IMAGE: &str = "docker.io/library/busybox:test";
const CONTAINERD_NAMESPACE: &str = "orc-multinode";
/// Longest any single wait takes.
const DEADLINE: Duration = Duration::from_secs(30);
/// How long a dead node's pods may take to come back elsewhere: the grace period, the
/// controller's monitor period (5 s), the eviction timeout, and a pod start.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(45);
/// The LAN: the server and the nodes, one /24.
const SERVER_IP: &str = "192.168.77.1";
const LAN_PREFIX_LEN: u8 = 24;
/// The API port; free, as the server has a network namespace of its own.
const API_PORT: u16 = 6443;
const CLUSTER_CIDR: &str = "10.201.0.0/16";
/// Port the web pods' httpd listens on, and their Service's port.
const WEB_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;
/// The nodes: name and LAN address.
const NODES: [(&str, &str); 2] = [("n1", "192.168.77.11"), ("n2", "192.168.77.12")];
/// Short heartbeats and timeouts, so that a dead node is noticed within seconds.
const NODE_LEASE_DURATION: &str = "2s";
const NODE_MONITOR_GRACE_PERIOD: &str = "4s";
const POD_EVICTION_TIMEOUT: &str = "1s";
/// Lines of each log printed when the test fails.
const LOG_TAIL_LINES: usize = 120;

/// The test's world. Dropping it kills the processes, stops the containerds, deletes
/// the network namespaces and removes the directory.
struct Cluster {
    tag: String,
    dir: PathBuf,
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
}

impl Cluster {
    /// Names the behaviour the following checks prove (a failure names it).
    fn step(&self, behaviour: &str) {
        eprintln!("checking: {behaviour}");
        *self.step.borrow_mut() = behaviour.to_string();
    }

    fn start() -> Cluster {
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
        };
        let image = c.dir.join("busybox.tar");
        let built = run(Command::new(repo_path("scripts/build-test-image.sh"))
            .arg(&image)
            .arg(IMAGE));
        assert!(
            built.status.success(),
            "build the busybox test image (needs busybox-static): {}",
            String::from_utf8_lossy(&built.stderr)
        );
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
            std::fs::copy(&image, images.join("busybox.tar")).unwrap();
        }
        c.make_lan();
        c.spawn_server();
        let token = std::fs::read_to_string(c.dir.join("server-data/server/token"))
            .expect("the server wrote its join token");
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

    fn netns_name(&self, role: &str) -> String {
        format!("orc-mn-{}-{role}", self.tag)
    }

    fn node_dir(&self, node: &str) -> PathBuf {
        self.dir.join(node)
    }

    fn data_dir(&self, node: &str) -> PathBuf {
        self.node_dir(node).join("data")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    fn log_path(&self, who: &str) -> PathBuf {
        self.dir.join(format!("{who}.log"))
    }

    /// The LAN: a bridge in namespace `lan`, and a veth from it to `eth0` of the server's
    /// and each node's namespace.
    fn make_lan(&mut self) {
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

    fn add_netns(&mut self, name: &str) {
        ip(&["netns", "add", name]);
        self.netns.push(name.to_string());
        ip(&["-n", name, "link", "set", "lo", "up"]);
    }

    /// `PROGRAM ARGS…` in network namespace `role` (`nsenter`, not `ip netns exec`, which
    /// remounts /sys so that runc finds no cgroups).
    fn in_netns(&self, role: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
        let mut cmd = in_netns(&self.netns_name(role), program);
        cmd.stdin(Stdio::null());
        cmd
    }

    fn spawn_logged(&self, mut cmd: Command, who: &str) -> Child {
        let log = std::fs::File::create(self.log_path(who)).unwrap();
        cmd.env("RUST_LOG", "info,orc::agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("spawn {who}: {e}"))
    }

    /// The control plane alone, in namespace `srv`, with short node timeouts.
    fn spawn_server(&mut self) {
        let mut cmd = self.in_netns("srv", ORC);
        cmd.arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(self.dir.join("server-data"))
            .args(["--bind-address", SERVER_IP])
            .args(["--https-port", &API_PORT.to_string()])
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(["--cluster-cidr", CLUSTER_CIDR])
            .args(["--node-monitor-grace-period", NODE_MONITOR_GRACE_PERIOD])
            .args(["--pod-eviction-timeout", POD_EVICTION_TIMEOUT]);
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
    fn spawn_agent(&mut self, i: usize, token: &str) {
        let (node, address) = NODES[i];
        let mut cmd = self.in_netns(node, ORC);
        cmd.arg("agent")
            .args(["--join", &format!("https://{SERVER_IP}:{API_PORT}")])
            .args(["--token", token])
            .args(["--node-name", node, "--node-ip", address])
            .arg("--data-dir")
            .arg(self.data_dir(node))
            .arg("--containerd-socket")
            .arg(self.node_dir(node).join("containerd.sock"))
            .args(["--containerd-namespace", CONTAINERD_NAMESPACE])
            .args(["--cluster-cidr", CLUSTER_CIDR])
            .args(["--node-lease-duration", NODE_LEASE_DURATION]);
        self.agents[i] = Some(self.spawn_logged(cmd, &format!("agent-{node}")));
    }

    /// Kills the agent of `node` at once (SIGKILL): its containers keep running.
    fn kill_agent(&mut self, node: &str) {
        let i = NODES.iter().position(|(n, _)| *n == node).unwrap();
        if let Some(mut child) = self.agents[i].take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// kubectl in the server's network namespace.
    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.in_netns("srv", "kubectl");
        cmd.args(args).env("KUBECONFIG", self.kubeconfig());
        cmd
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        run(&mut self.kubectl_cmd(args))
    }

    fn kubectl_out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.kubectl(args).stdout)
            .trim()
            .to_string()
    }

    fn kubectl_json(&self, args: &[&str]) -> Option<Value> {
        let out = self.kubectl(&[args, &["-o", "json"]].concat());
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn apply(&self, yaml: &str) {
        kubectl_apply(self.kubectl_cmd(&["apply", "-f", "-"]), yaml);
    }

    fn node(&self, name: &str) -> Option<Value> {
        self.kubectl_json(&["get", "node", name])
    }

    fn pod(&self, name: &str) -> Option<Value> {
        self.kubectl_json(&["get", "pod", name])
    }

    /// Waits for pod `name` to run with an IP; returns it.
    fn wait_running(&self, name: &str) -> Value {
        let mut pod = Value::Null;
        self.wait_for(&format!("pod {name} to be Running with an IP"), || {
            pod = self.pod(name).unwrap_or_default();
            pod["status"]["phase"] == "Running" && pod["status"]["podIP"].is_string()
        });
        self.remember(&pod);
        pod
    }

    fn remember(&self, pod: &Value) {
        if let Some(uid) = pod["metadata"]["uid"].as_str() {
            let mut uids = self.uids.borrow_mut();
            if !uids.iter().any(|u| u == uid) {
                uids.push(uid.to_string());
            }
        }
    }

    fn wait_for(&self, what: &str, cond: impl FnMut() -> bool) {
        self.wait_within(DEADLINE, what, cond);
    }

    fn wait_within(&self, deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
        wait_until_every(deadline, POLL_EVERY, what, cond);
    }

    /// Runs busybox `args` inside `pod`'s network namespace (the one the agent made at
    /// `agent/netns/<uid>`), as the pod's containers would: bounded, output or error.
    fn in_pod(&self, pod: &Value, args: &[&str]) -> Result<String, String> {
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
    fn in_pod_until_ok(&self, pod: &Value, args: &[&str]) -> String {
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
    fn pod_routes(&self, node: &str) -> String {
        let ns = self.netns_name(node);
        let out = run(Command::new("ip").args(["-n", &ns, "route", "show", "proto", "79"]));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// Routes and nftables of every node, for failure messages.
    fn diagnostics(&self) -> String {
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

    fn print_logs(&self) {
        let mut who = vec!["server".to_string()];
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
        for child in self.agents.iter_mut().chain([&mut self.server]) {
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
fn ip(args: &[&str]) {
    let out = run(Command::new("ip").args(args));
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_ready(node: &Value) -> bool {
    node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// The client address httpd reports, without its IPv4-mapped IPv6 dress
/// (`[::ffff:10.0.0.1]`: httpd listens on a dual-stack socket).
fn client_ip(remote_addr: &str) -> &str {
    remote_addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("::ffff:")
}

fn ip_of(pod: &Value) -> &str {
    pod["status"]["podIP"].as_str().unwrap()
}

/// A web pod on `node` (by nodeSelector on the hostname label: through the scheduler).
/// It serves its name at `/` and the client's address at `/cgi-bin/ip`.
fn web_pod(name: &str, node: &str) -> String {
    let command = format!(
        "mkdir -p /www/cgi-bin \
         && hostname > /www/index.html \
         && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip \
         && busybox chmod 755 /www/cgi-bin/ip \
         && exec httpd -f -p {WEB_PORT} -h /www"
    );
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  nodeSelector:
    kubernetes.io/hostname: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"{command}\"]
"
    )
}

fn pods_of(c: &Cluster, selector: &str) -> Vec<Value> {
    c.kubectl_json(&["get", "pods", "-l", selector])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn pods_on_different_nodes_reach_each_other_and_come_back_when_a_node_dies() {
    let started = Instant::now();
    let mut c = Cluster::start();
    eprintln!("cluster up in {:?}", started.elapsed());
    c.step("Both nodes register and are Ready");
    let listed = c.kubectl_out(&["get", "nodes"]);
    for (node, _) in NODES {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(node) && l.contains(" Ready")),
            "{listed}"
        );
    }

    c.step("Each node routes the other's podCIDR via the other's LAN address");
    for ((node, _), (other, other_ip)) in NODES.into_iter().zip(NODES.into_iter().rev()) {
        let cidr = c.kubectl_out(&["get", "node", other, "-o", "jsonpath={.spec.podCIDR}"]);
        let want = format!("{cidr} via {other_ip} dev eth0");
        c.wait_for(&format!("{node} to route {other}'s pods"), || {
            c.pod_routes(node) == want
        });
    }

    c.step("One web pod per node, and a Service whose only pod runs on n2");
    c.apply(&format!(
        "{}---\n{}---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web-n2
  ports:
  - port: {SERVICE_PORT}
    targetPort: {WEB_PORT}
",
        web_pod("web-n1", "n1"),
        web_pod("web-n2", "n2")
    ));
    let web1 = c.wait_running("web-n1");
    let web2 = c.wait_running("web-n2");
    assert_eq!(web1["spec"]["nodeName"], "n1", "{}", web1["spec"]);
    assert_eq!(web2["spec"]["nodeName"], "n2", "{}", web2["spec"]);
    let (ip1, ip2) = (ip_of(&web1), ip_of(&web2));
    for (pod, node) in [(&web1, "n1"), (&web2, "n2")] {
        let cidr = c
            .node(node)
            .and_then(|n| n["spec"]["podCIDR"].as_str().map(String::from))
            .unwrap();
        let prefix = cidr.rsplit_once(".0/").unwrap().0;
        assert!(
            ip_of(pod).starts_with(&format!("{prefix}.")),
            "pod IP {} is not from {node}'s podCIDR {cidr}",
            ip_of(pod)
        );
    }
    eprintln!("web pods running at {:?}", started.elapsed());

    c.step("The server reaches each node's kubelet: exec (with its exit code) and logs");
    for (pod, node) in [("web-n1", "n1"), ("web-n2", "n2")] {
        let out = c.kubectl(&["exec", pod, "--", "sh", "-c", "hostname; exit 3"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            pod,
            "exec on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "exit code through exec on {node}"
        );
        assert!(c.kubectl(&["logs", pod]).status.success(), "logs on {node}");
    }

    c.step("Pod to pod across nodes, both ways, by pod IP; the source address is kept");
    c.in_pod_until_ok(&web1, &["ping", "-c1", "-W2", ip2]);
    c.in_pod_until_ok(&web2, &["ping", "-c1", "-W2", ip1]);
    let url = |ip: &str, path: &str| format!("http://{ip}:{WEB_PORT}/{path}");
    // No `-T`: Debian's static busybox wget crashes on it; `in_pod` bounds the time.
    let wget = |pod: &Value, url: &str| c.in_pod_until_ok(pod, &["wget", "-qO-", url]);
    assert_eq!(wget(&web1, &url(ip2, "")), "web-n2");
    assert_eq!(wget(&web2, &url(ip1, "")), "web-n1");
    assert_eq!(
        client_ip(&wget(&web1, &url(ip2, "cgi-bin/ip"))),
        ip1,
        "pod traffic between nodes was masqueraded"
    );

    c.step("The Service's only pod runs on n2: n1's proxy sends a pod on n1 there");
    c.wait_for("Endpoints web to list web-n2", || {
        c.kubectl_out(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]) == ip2
    });
    let cluster_ip = c.kubectl_out(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(
        wget(&web1, &format!("http://{cluster_ip}:{SERVICE_PORT}/")),
        "web-n2"
    );
    assert_eq!(
        client_ip(&wget(
            &web1,
            &format!("http://{cluster_ip}:{SERVICE_PORT}/cgi-bin/ip")
        )),
        ip1,
        "service traffic between nodes was masqueraded"
    );
    // n1's cluster DNS knows the Service too.
    let answer = c.in_pod_until_ok(
        &web1,
        &["nslookup", "web.default.svc.cluster.local", "10.43.0.10"],
    );
    assert!(
        answer.contains(&format!("Address: {cluster_ip}")),
        "{answer}"
    );
    eprintln!("cross-node traffic checked at {:?}", started.elapsed());

    c.step("A replication controller spread over both nodes; n2's agent dies");
    c.apply(&format!(
        "apiVersion: v1
kind: ReplicationController
metadata:
  name: spread
spec:
  replicas: 2
  selector:
    app: spread
  template:
    metadata:
      labels:
        app: spread
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: app
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [\"sleep\", \"3600\"]
"
    ));
    let running_on = |pods: &[Value]| -> Vec<String> {
        let mut nodes: Vec<String> = pods
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
            })
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        nodes.sort();
        nodes
    };
    let mut pods = Vec::new();
    c.wait_for("the RC's 2 pods to be Running", || {
        pods = pods_of(&c, "app=spread");
        running_on(&pods).len() == 2
    });
    pods.iter().for_each(|p| c.remember(p));
    assert_eq!(
        running_on(&pods),
        ["n1", "n2"],
        "replicas not spread over the nodes"
    );

    c.kill_agent("n2");
    let killed = Instant::now();
    c.wait_within(FAILOVER_DEADLINE, "node n2 to stop being Ready", || {
        c.node("n2").is_some_and(|n| !is_ready(&n))
    });
    eprintln!(
        "n2 NotReady {:?} after its agent was killed",
        killed.elapsed()
    );
    c.wait_within(FAILOVER_DEADLINE, "the RC's pods to run on n1 only", || {
        pods = pods_of(&c, "app=spread");
        pods.iter().for_each(|p| c.remember(p));
        running_on(&pods) == ["n1", "n1"]
    });
    eprintln!(
        "RC pods back on n1 {:?} after n2's agent was killed; total {:?}",
        killed.elapsed(),
        started.elapsed()
    );
    assert!(
        c.node("n1").is_some_and(|n| is_ready(&n)),
        "n1 stopped being Ready"
    );

    c.step("A deleted Node's pods are no longer routed");
    let deleted = c.kubectl(&["delete", "node", "n2"]);
    assert!(
        deleted.status.success(),
        "kubectl delete node: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    c.wait_for("n1 to drop its route to the deleted n2's pods", || {
        c.pod_routes("n1").is_empty()
    });
}
