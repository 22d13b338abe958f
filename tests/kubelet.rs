//! The kubelet end to end: `orc server` with its embedded agent on a private containerd,
//! the busybox test image imported from `agent/images`, real `kubectl`.
//!
//! Needs root, containerd, runc, busybox-static, nsenter and kubectl, and for the pull
//! checks skopeo and docker-registry (scripts/install-deps.sh). The server runs in a
//! network namespace of the test's own (so the pod bridge and the nftables table never
//! touch the host's network), with its private containerd (scripts/containerd-test-env.sh)
//! and, where a test asks, a docker-registry on that namespace's loopback; everything
//! lives in one directory that the drop guards unmount and remove, even when the test
//! fails.
//! The embedded agent's service proxy keeps its nftables table in that namespace too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::host::{
    free_port, in_netns, kubectl_apply, on_netns_thread, remove_pod_cgroups, repo_path,
    require_root_and_tools, run,
};
use support::wait::{assert_stays_for_every, wait_until_every};

const ORC: &str = env!("CARGO_BIN_EXE_orc");
const IMAGE: &str = "docker.io/library/busybox:test";
/// The same busybox under a second name (for image updates).
const OTHER_IMAGE: &str = "docker.io/library/busybox:other";
const NAMESPACE: &str = "orc-kubelet-test";
/// Longest any single wait takes.
const DEADLINE: Duration = Duration::from_secs(30);
/// The server's default service network (ClusterIPs come from it).
const SERVICE_CIDR: &str = "10.43.0.0/16";
/// How long containerd may be away before the node is NotReady.
const RUNTIME_DOWN_AFTER: Duration = orc::agent::node::RUNTIME_DOWN_AFTER;
/// How long one request to a Service may take.
const SERVICE_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a condition is checked (most checks run kubectl).
const POLL_EVERY: Duration = Duration::from_millis(200);
/// How long a restarted agent is watched for restarting a container it should adopt.
const READOPTED_WINDOW: Duration = Duration::from_secs(2);
/// The node's address on the test namespace's stand-in for a LAN interface.
const NODE_IP: &str = "192.168.231.2";

/// The test's world: a directory, a private containerd, a network namespace and the
/// server in it. Dropping it removes all of them.
struct World {
    dir: PathBuf,
    netns: String,
    server: Option<Child>,
    port: u16,
    /// The private registry's port (in the test's network namespace), if it has one.
    registry_port: Option<u16>,
    /// Pods the test saw (their cgroups are removed at the end).
    uids: std::cell::RefCell<Vec<String>>,
    /// A containerd the test restarted itself (the script's stop ends it; reaped on drop).
    restarted_containerd: std::cell::RefCell<Option<Child>>,
}

impl World {
    fn start() -> World {
        World::start_with(false)
    }

    /// With `registry`, a private docker-registry serves on 127.0.0.1:[`World::registry_port`]
    /// inside the test's network namespace (where the agent pulls from).
    fn start_with(registry: bool) -> World {
        require_root_and_tools("tests/kubelet.rs");
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let dir = PathBuf::from(format!("/run/orc-kubelet-test-{tag}"));
        let mut world = World {
            dir: dir.clone(),
            netns: format!("orc-kt-{tag}"),
            server: None,
            port: free_port(),
            registry_port: registry.then(free_port),
            uids: Default::default(),
            restarted_containerd: Default::default(),
        };
        std::fs::create_dir_all(world.data_dir().join("agent/images")).unwrap();
        for (file, image) in [("busybox.tar", IMAGE), ("busybox-other.tar", OTHER_IMAGE)] {
            let built = run(Command::new(repo_path("scripts/build-test-image.sh"))
                .arg(world.data_dir().join("agent/images").join(file))
                .arg(image));
            assert!(
                built.status.success(),
                "build the busybox test image (needs busybox-static): {}",
                String::from_utf8_lossy(&built.stderr)
            );
        }
        let added = run(Command::new("ip").args(["netns", "add", &world.netns]));
        assert!(
            added.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        run(Command::new("ip").args(["-n", &world.netns, "link", "set", "lo", "up"]));
        // The node's "LAN" link, so the node has an address of its own (NodePorts). A
        // veth pair, not a dummy link: not every kernel has the dummy driver.
        for args in [
            vec![
                "link", "add", "eth0", "type", "veth", "peer", "name", "lan0",
            ],
            vec!["addr", "add", &format!("{NODE_IP}/24"), "dev", "eth0"],
            vec!["link", "set", "lan0", "up"],
            vec!["link", "set", "eth0", "up"],
        ] {
            let done = run(Command::new("ip").args(["-n", &world.netns]).args(&args));
            assert!(done.status.success(), "ip {args:?}: {done:?}");
        }
        // containerd (and the registry) run in the node's network namespace, as on a node.
        let mut env = world.in_netns(repo_path("scripts/containerd-test-env.sh"));
        env.arg("start").arg(&dir);
        if let Some(port) = world.registry_port {
            env.arg(port.to_string());
        }
        let started = run(&mut env);
        assert!(
            started.status.success(),
            "start a private containerd{}: {}",
            if registry { " and docker-registry" } else { "" },
            String::from_utf8_lossy(&started.stderr)
        );

        world.spawn_server();
        world
    }

    /// `program` run inside the test's network namespace.
    fn in_netns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_netns(&self.netns, program)
    }

    /// Starts `orc server` (with its embedded agent) in the test's network namespace and
    /// waits for the node to have its podCIDR.
    fn spawn_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = self
            .in_netns(ORC)
            .arg("server")
            .arg("--data-dir")
            .arg(self.data_dir())
            .args([
                "--bind-address",
                "127.0.0.1",
                "--https-port",
                &self.port.to_string(),
            ])
            .arg("--write-kubeconfig")
            .arg(self.kubeconfig())
            .args(["--node-name", "kt-node", "--cluster-cidr", "10.199.0.0/16"])
            .args(["--node-ip", NODE_IP])
            .arg("--containerd-socket")
            .arg(self.dir.join("containerd.sock"))
            .args(["--containerd-namespace", NAMESPACE])
            .env("RUST_LOG", "info,orc::agent=debug")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn orc server");
        self.server = Some(child);
        self.wait_for("the node to have its podCIDR", || {
            self.kubeconfig().exists()
                && !self
                    .kubectl_out(&["get", "node", "kt-node", "-o", "jsonpath={.spec.podCIDR}"])
                    .is_empty()
        });
    }

    /// Kills the server (and so its agent) at once.
    fn kill_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// kubectl inside the server's network namespace.
    fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.in_netns("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null());
        cmd
    }

    /// `kubectl args…` that must succeed: its stdout.
    fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The events about pod `name`, as `(reason, message)`, oldest first.
    fn pod_events(&self, name: &str) -> Vec<(String, String)> {
        let out = self.kubectl(&["get", "events", "-o", "json"]);
        let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["involvedObject"]["kind"] == "Pod" && e["involvedObject"]["name"] == name)
            .map(|e| {
                let text = |k: &str| e[k].as_str().unwrap_or("").to_string();
                (text("reason"), text("message"))
            })
            .collect()
    }

    /// Remembers the uid of pod `name` (its cgroups are removed at the end).
    fn remember(&self, name: &str) {
        if let Some(uid) = self
            .pod(name)
            .and_then(|p| p["metadata"]["uid"].as_str().map(String::from))
        {
            self.uids.borrow_mut().push(uid);
        }
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        run(&mut self.kubectl_cmd(args))
    }

    fn kubectl_out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.kubectl(args).stdout)
            .trim()
            .to_string()
    }

    fn apply(&self, yaml: &str) {
        kubectl_apply(self.kubectl_cmd(&["apply", "-f", "-"]), yaml);
    }

    fn pod(&self, name: &str) -> Option<Value> {
        let out = self.kubectl(&["get", "pod", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn wait_for(&self, what: &str, cond: impl FnMut() -> bool) {
        self.wait_for_within(DEADLINE, what, cond);
    }

    fn wait_for_within(&self, deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
        wait_until_every(deadline, POLL_EVERY, what, cond);
    }

    /// Waits for pod `name` to be Running (its cgroups are removed at the end).
    fn wait_running(&self, name: &str) {
        self.wait_for(&format!("pod {name} to be Running"), || {
            let pod = self.pod(name).unwrap_or_default();
            if let Some(uid) = pod["metadata"]["uid"].as_str() {
                if !self.uids.borrow().iter().any(|u| u == uid) {
                    self.uids.borrow_mut().push(uid.to_string());
                }
            }
            pod["status"]["phase"] == "Running"
        });
    }

    fn containers(&self) -> String {
        let out = run(Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["-n", NAMESPACE, "containers", "ls", "-q"]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

impl Drop for World {
    fn drop(&mut self) {
        self.kill_server();
        if std::thread::panicking() {
            eprintln!("--- orc server log ---\n{}", self.log());
        }
        let uids: Vec<String> = std::fs::read_dir(self.data_dir().join("agent/pods"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .chain(self.uids.borrow().iter().cloned())
            .collect();
        // Stops tasks and shims, unmounts everything below the directory (rootfs, the
        // pods' network namespaces) and removes it.
        let _ = Command::new(repo_path("scripts/containerd-test-env.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        if let Some(mut containerd) = self.restarted_containerd.take() {
            let _ = containerd.kill();
            let _ = containerd.wait();
        }
        // The bridge and the nftables table live and die with this namespace.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
        for uid in &uids {
            remove_pod_cgroups(uid);
        }
    }
}

impl World {
    /// Stops the test's containerd (its shims, and so the containers, keep running).
    fn stop_containerd(&self) {
        let pid_file = self.dir.join("containerd.pid");
        let pid = std::fs::read_to_string(&pid_file).expect("containerd.pid");
        let pid = pid.trim().to_string();
        run(Command::new("kill").arg(&pid));
        self.wait_for("containerd to exit", || {
            !std::path::Path::new(&format!("/proc/{pid}")).exists()
                || std::fs::read_to_string(format!("/proc/{pid}/stat"))
                    .is_ok_and(|s| s.contains(") Z "))
        });
    }

    /// Starts the test's containerd again, with the configuration it had.
    fn restart_containerd(&self) {
        let log = std::fs::OpenOptions::new()
            .append(true)
            .create(true)
            .open(self.dir.join("containerd.log"))
            .unwrap();
        let child = self
            .in_netns("containerd")
            .arg("--config")
            .arg(self.dir.join("config.toml"))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start containerd");
        // nsenter execs containerd: the child is containerd, which the script's stop ends.
        std::fs::write(self.dir.join("containerd.pid"), child.id().to_string()).unwrap();
        *self.restarted_containerd.borrow_mut() = Some(child);
        self.wait_for("containerd to answer", || {
            run(Command::new("ctr")
                .arg("--address")
                .arg(self.dir.join("containerd.sock"))
                .arg("version"))
            .status
            .success()
        });
    }

    /// The node's Ready condition.
    fn node_ready(&self) -> Value {
        let out = self.kubectl(&["get", "node", "kt-node", "-o", "json"]);
        let node: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        node["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|c| c["type"] == "Ready")
            .cloned()
            .unwrap_or_default()
    }

    /// The pid of the container's running task, if it runs.
    fn task_pid(&self, id: &str) -> Option<String> {
        let out = run(Command::new("ctr")
            .arg("--address")
            .arg(self.dir.join("containerd.sock"))
            .args(["-n", NAMESPACE, "tasks", "ls"]));
        String::from_utf8_lossy(&out.stdout).lines().find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            (f.first() == Some(&id) && f.get(2) == Some(&"RUNNING")).then(|| f[1].to_string())
        })
    }
}

impl World {
    fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.netns))
    }

    /// `GET /` over plain HTTP/1.0 to `addr` from inside the test's network namespace
    /// (the node's): the response body, or why there is none.
    fn http_get_from_node(&self, addr: SocketAddr) -> Result<String, String> {
        let request = move || -> Result<String, String> {
            let mut stream = TcpStream::connect_timeout(&addr, SERVICE_IO_TIMEOUT)
                .map_err(|e| format!("connect {addr}: {e}"))?;
            stream
                .set_read_timeout(Some(SERVICE_IO_TIMEOUT))
                .map_err(|e| e.to_string())?;
            stream
                .write_all(b"GET / HTTP/1.0\r\n\r\n")
                .map_err(|e| format!("send to {addr}: {e}"))?;
            let mut response = String::new();
            stream
                .read_to_string(&mut response)
                .map_err(|e| format!("read from {addr}: {e}"))?;
            match response.split_once("\r\n\r\n") {
                Some((head, body)) if head.split_whitespace().nth(1) == Some("200") => {
                    Ok(body.trim().to_string())
                }
                _ => Err(format!("unexpected response from {addr}: {response:?}")),
            }
        };
        on_netns_thread(&self.netns_path(), request)
    }
}

/// Three httpd pods, each answering with its hostname, behind a NodePort Service: the
/// node reaches all three through the ClusterIP and the NodePort, another pod reaches them
/// through the `WEB_SERVICE_*` variables it got, a deleted pod leaves the rotation within
/// a second without failing a request after that, and nothing answers once the Service
/// is deleted.
fn service_reaches_its_ready_pods(w: &World) {
    let pods = ["web-1", "web-2", "web-3"];
    let mut yaml = String::from(
        "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
",
    );
    for name in pods {
        yaml.push_str(&httpd_pod(name, "default", "web"));
    }
    w.apply(&yaml);
    for name in pods {
        if let Some(uid) = w
            .pod(name)
            .and_then(|p| p["metadata"]["uid"].as_str().map(String::from))
        {
            w.uids.borrow_mut().push(uid);
        }
    }
    w.wait_for("Endpoints web to list the three pods as ready", || {
        let ips = w.kubectl_out(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]);
        ips.split_whitespace().count() == pods.len()
    });
    let cluster_ip: std::net::Ipv4Addr = w
        .kubectl_out(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .parse()
        .expect("service web has a ClusterIP");
    let node_port: u16 = w
        .kubectl_out(&[
            "get",
            "service",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .parse()
        .expect("service web has a NodePort");
    // ClusterIPs are no local addresses: the node only needs a route for them.
    let routed = run(Command::new("ip").args([
        "-n",
        &w.netns,
        "route",
        "replace",
        SERVICE_CIDR,
        "dev",
        "orc0",
    ]));
    assert!(
        routed.status.success(),
        "route the service network in the test namespace: {}",
        String::from_utf8_lossy(&routed.stderr)
    );

    let all: std::collections::BTreeSet<String> = pods.iter().map(|p| p.to_string()).collect();
    let service = SocketAddr::from((cluster_ip, 80));
    let node_ip: std::net::Ipv4Addr = NODE_IP.parse().unwrap();
    let on_node_port = SocketAddr::from((node_ip, node_port));
    for (what, addr) in [("ClusterIP", service), ("NodePort", on_node_port)] {
        let mut seen = std::collections::BTreeSet::new();
        let mut last = Ok(String::new());
        let start = Instant::now();
        while seen.len() < pods.len() {
            assert!(
                start.elapsed() < DEADLINE,
                "{what} {addr} reached only {seen:?}; last answer: {last:?}"
            );
            last = w.http_get_from_node(addr);
            if let Ok(body) = &last {
                seen.insert(body.clone());
            } else {
                std::thread::sleep(Duration::from_millis(200));
            }
        }
        assert_eq!(
            seen, all,
            "{what} answered from pods that are not endpoints"
        );
    }

    // A pod started after the Service finds it through its environment.
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    # (busybox 1.35's `wget -T` crashes: bound it with `timeout` instead.)
    command: [\"sh\", \"-c\", \"while true; do timeout 3 wget -qO- http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/ || echo failed; sleep 0.1; done\"]
"
    ));
    let client_logs = std::cell::RefCell::new(String::new());
    let reached_all = || {
        let logs = w.kubectl_out(&["logs", "client"]);
        let done = pods.iter().all(|p| logs.lines().any(|l| l == *p));
        *client_logs.borrow_mut() = logs;
        done
    };
    let start = Instant::now();
    while !reached_all() {
        assert!(
            start.elapsed() < DEADLINE,
            "the client pod did not reach all three pods; its log: {}; env: {}",
            client_logs.borrow(),
            w.kubectl_out(&["get", "pod", "client", "-o", "jsonpath={.status}"]),
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let deleted = w.kubectl(&["delete", "pod", "client", "--wait=false"]);
    assert!(deleted.status.success(), "delete client: {deleted:?}");

    // A deleted pod leaves the rotation within a second; no request fails after that.
    let deleted_at = Instant::now();
    let deleted = w.kubectl(&["delete", "pod", "web-3", "--wait=false"]);
    assert!(deleted.status.success(), "delete web-3: {deleted:?}");
    let mut late = Vec::new();
    let mut answers = std::collections::BTreeSet::new();
    while deleted_at.elapsed() < Duration::from_secs(4) {
        let answer = w.http_get_from_node(service);
        let at = deleted_at.elapsed();
        if at > Duration::from_secs(1) {
            match &answer {
                Ok(body) if body != "web-3" => {
                    answers.insert(body.clone());
                }
                _ => late.push((at, answer)),
            }
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(
        late.is_empty(),
        "more than 1 s after deleting web-3: {late:?}"
    );
    assert_eq!(
        answers,
        ["web-1", "web-2"].map(String::from).into(),
        "the remaining pods keep answering"
    );

    let deleted = w.kubectl(&["delete", "service", "web"]);
    assert!(
        deleted.status.success(),
        "kubectl delete service: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    w.wait_for("the deleted service to stop answering", || {
        w.http_get_from_node(service).is_err()
    });
}

fn container_status(pod: &Value) -> Value {
    pod["status"]["containerStatuses"][0].clone()
}

#[test]
fn pods_run_log_crash_loop_and_are_deleted() {
    let mut w = World::start();
    // Bound by name: the test does not depend on the scheduler.
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: hello
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 2
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo hello; sleep 3600\"]
    readinessProbe:
      exec:
        command: [\"cat\", \"/etc/hostname\"]
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: crash
spec:
  nodeName: kt-node
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo bye; exit 3\"]
"
    ));

    // Running, with an address from the node's podCIDR and a ready container.
    let mut hello = Value::Null;
    w.wait_for("pod hello to be Running", || {
        hello = w.pod("hello").unwrap_or_default();
        hello["status"]["phase"] == "Running" && container_status(&hello)["ready"] == true
    });
    let ip = hello["status"]["podIP"].as_str().unwrap_or("").to_string();
    assert!(
        ip.starts_with("10.199."),
        "pod IP {ip:?} is not from the podCIDR"
    );
    let cs = container_status(&hello);
    let id = cs["containerID"]
        .as_str()
        .unwrap()
        .trim_start_matches("containerd://")
        .to_string();
    assert!(
        w.containers().contains(&id),
        "container {id} not in containerd"
    );
    assert!(cs["state"]["running"]["startedAt"].is_string(), "{cs}");
    let ready = hello["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    assert!(ready, "{}", hello["status"]);

    // Its output is in the CRI log file.
    let uid = hello["metadata"]["uid"].as_str().unwrap().to_string();
    w.uids.borrow_mut().push(uid.clone());
    let log = w
        .data_dir()
        .join(format!("agent/pods/{uid}/logs/app/0.log"));
    w.wait_for("hello in the container log", || {
        std::fs::read_to_string(&log).is_ok_and(|l| l.contains("stdout F hello"))
    });

    // kubectl logs reaches the kubelet through the API server.
    let logs = w.kubectl(&["logs", "hello"]);
    assert!(
        logs.status.success(),
        "kubectl logs: {}",
        String::from_utf8_lossy(&logs.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&logs.stdout), "hello\n");

    // -f keeps following until it is stopped.
    let inner = w.kubectl_cmd(&["logs", "-f", "hello"]);
    let mut follow = Command::new("timeout");
    follow
        .arg("2")
        .arg(inner.get_program())
        .args(inner.get_args())
        .env("KUBECONFIG", w.kubeconfig())
        .stdin(Stdio::null());
    let followed = run(&mut follow);
    assert_eq!(
        followed.status.code(),
        Some(124),
        "kubectl logs -f ended by itself"
    );
    assert_eq!(String::from_utf8_lossy(&followed.stdout), "hello\n");

    // The crashing pod backs off.
    let mut crash = Value::Null;
    w.wait_for("pod crash to be in CrashLoopBackOff", || {
        crash = w.pod("crash").unwrap_or_default();
        let cs = container_status(&crash);
        cs["restartCount"].as_u64().unwrap_or(0) >= 1
            && cs["state"]["waiting"]["reason"] == "CrashLoopBackOff"
    });
    let previous = w.kubectl_out(&["logs", "crash", "--previous"]);
    assert_eq!(previous, "bye");
    let crash_cs = container_status(&crash);
    assert_eq!(
        crash_cs["lastState"]["terminated"]["exitCode"], 3,
        "{crash_cs}"
    );
    assert_eq!(crash["status"]["phase"], "Running");
    let events = w.kubectl_out(&["get", "events", "-o", "jsonpath={.items[*].reason}"]);
    for reason in ["Pulled", "Created", "Started", "BackOff"] {
        assert!(events.contains(reason), "no {reason} event in {events}");
    }

    // The container is in the pod's network, IPC and UTS namespaces.
    let pid = w.task_pid(&id).expect("hello runs");
    for (ns, file) in [
        ("net", format!("agent/netns/{uid}")),
        ("ipc", format!("agent/podns/{uid}-ipc")),
        ("uts", format!("agent/podns/{uid}-uts")),
    ] {
        use std::os::unix::fs::MetadataExt;
        let link = std::fs::read_link(format!("/proc/{pid}/ns/{ns}")).unwrap();
        let ino = std::fs::metadata(w.data_dir().join(&file)).unwrap().ino();
        assert_eq!(
            link.to_string_lossy(),
            format!("{ns}:[{ino}]"),
            "container not in the pod's {ns} namespace"
        );
    }

    // `kubectl run` goes through the scheduler to this node.
    let ran = w.kubectl(&[
        "run",
        "scheduled",
        &format!("--image={IMAGE}"),
        "--image-pull-policy=IfNotPresent",
        "--",
        "sleep",
        "3600",
    ]);
    assert!(
        ran.status.success(),
        "kubectl run: {}",
        String::from_utf8_lossy(&ran.stderr)
    );
    w.wait_for("pod scheduled to be Running on kt-node", || {
        let p = w.pod("scheduled").unwrap_or_default();
        p["spec"]["nodeName"] == "kt-node" && p["status"]["phase"] == "Running"
    });

    // An agent restart re-adopts the running container: same container, same start.
    let pid_before = w.task_pid(&id);
    w.kill_server();
    w.spawn_server();
    w.wait_for("the restarted agent to post status", || {
        w.log().matches("kubelet is running").count() >= 2
    });
    assert!(pid_before.is_some(), "container {id} has no running task");
    assert_stays_for_every(
        READOPTED_WINDOW,
        POLL_EVERY,
        "the restarted agent to keep container hello (same id, start time and task, no restart)",
        || {
            let again = container_status(&w.pod("hello").unwrap());
            let kept = again["containerID"] == cs["containerID"]
                && again["restartCount"] == 0
                && again["state"]["running"]["startedAt"] == cs["state"]["running"]["startedAt"]
                && w.task_pid(&id) == pid_before;
            kept.then_some(()).ok_or(again)
        },
    );

    // Deleting stops and removes the container, then the pod.
    let deleted = w.kubectl(&["delete", "pod", "hello", "--timeout=20s"]);
    assert!(
        deleted.status.success(),
        "kubectl delete: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    w.wait_for("pod hello to be gone", || w.pod("hello").is_none());
    assert!(!w.containers().contains(&id), "container {id} left behind");
    assert!(!w.data_dir().join(format!("agent/pods/{uid}")).exists());
    assert!(!w.data_dir().join(format!("agent/netns/{uid}")).exists());
    assert!(!w.data_dir().join(format!("agent/podns/{uid}-ipc")).exists());

    service_reaches_its_ready_pods(&w);
}

/// One pod's containers share its network and volumes; an OOM kill, a failing liveness
/// probe, a registry pull and a missing image all show in the pod's status and events.
#[test]
fn pods_share_localhost_and_volumes_and_report_oom_probes_and_pulls() {
    let w = World::start_with(true);
    for tool in ["skopeo", "docker-registry"] {
        let found = run(Command::new("sh").args(["-c", &format!("command -v {tool}")]));
        assert!(
            found.status.success(),
            "this test needs {tool}: run scripts/install-deps.sh"
        );
    }
    let port = w.registry_port.unwrap();
    let pushed = format!("127.0.0.1:{port}/test/busybox:pushed");
    let mut copy = w.in_netns("skopeo");
    copy.args(["copy", "--dest-tls-verify=false"])
        .arg(format!(
            "oci-archive:{}",
            w.data_dir().join("agent/images/busybox.tar").display()
        ))
        .arg(format!("docker://{pushed}"));
    let copied = run(&mut copy);
    assert!(
        copied.status.success(),
        "skopeo copy to the test's registry: {}",
        String::from_utf8_lossy(&copied.stderr)
    );
    let missing = format!("127.0.0.1:{port}/nothing/here:v1");

    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: pair
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: web
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo written-by-web > /shared/note && exec httpd -f -p 8080 -h /var/www"]
    volumeMounts:
    - name: shared
      mountPath: /shared
  - name: client
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "until [ -s /data/note ]; do sleep 0.2; done; cat /data/note; until wget -qO- http://localhost:8080/; do sleep 0.2; done; exec sleep 3600"]
    volumeMounts:
    - name: shared
      mountPath: /data
  volumes:
  - name: shared
    emptyDir: {{}}
---
apiVersion: v1
kind: Pod
metadata:
  name: hog
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["tail", "/dev/zero"]
    resources:
      limits:
        memory: 16Mi
---
apiVersion: v1
kind: Pod
metadata:
  name: sick
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "touch /tmp/healthy; sleep 2; rm /tmp/healthy; exec sleep 3600"]
    livenessProbe:
      exec:
        command: ["cat", "/tmp/healthy"]
      periodSeconds: 1
      failureThreshold: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: pulled
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {pushed}
    imagePullPolicy: Always
    command: ["sh", "-c", "echo from-the-registry; exec sleep 3600"]
"#
    ));
    for name in ["pair", "hog", "sick", "pulled"] {
        w.remember(name);
    }

    // localhost is the pod's, and so is the emptyDir.
    let mut logs = String::new();
    w.wait_for("client to read the note and the page", || {
        logs = w.kubectl_out(&["logs", "pair", "-c", "client"]);
        logs.contains("hello from orc busybox")
    });
    assert_eq!(logs, "written-by-web\nhello from orc busybox", "{logs}");

    // Over its memory limit: OOM-killed, restarted, and the kill is its lastState.
    let mut hog = Value::Null;
    w.wait_for("hog to be OOM-killed", || {
        hog = w.pod("hog").unwrap_or_default();
        container_status(&hog)["lastState"]["terminated"]["reason"] == "OOMKilled"
    });
    let last = &container_status(&hog)["lastState"]["terminated"];
    assert_eq!(last["exitCode"], 137, "{last}");

    // A failing liveness probe restarts the container.
    w.wait_for("sick to be restarted by its liveness probe", || {
        let sick = w.pod("sick").unwrap_or_default();
        container_status(&sick)["restartCount"]
            .as_u64()
            .unwrap_or(0)
            >= 1
    });
    let events = w.pod_events("sick");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Unhealthy" && m.starts_with("Liveness probe failed")),
        "{events:?}"
    );
    assert!(
        events.iter().any(|(r, m)| r == "Killing"
            && m == "Container app failed liveness probe, will be restarted"),
        "{events:?}"
    );

    // Pulled over HTTP from the registry on the node's loopback.
    w.wait_for("pulled to run", || {
        w.kubectl_out(&["logs", "pulled"]) == "from-the-registry"
    });
    let pulled = container_status(&w.pod("pulled").unwrap());
    assert!(
        pulled["imageID"]
            .as_str()
            .is_some_and(|id| id.starts_with(&format!("127.0.0.1:{port}/test/busybox@sha256:"))),
        "{pulled}"
    );
    let events = w.pod_events("pulled");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Pulled" && m.starts_with("Successfully pulled image")),
        "{events:?}"
    );

    // A missing image: ErrImagePull, then ImagePullBackOff, each with a message (seen
    // through a watch: ErrImagePull lasts only until the next sync).
    let watch = PodWatch::start(&w, "check=missing-image");
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: nowhere
  labels:
    check: missing-image
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {missing}
    imagePullPolicy: IfNotPresent
"
    ));
    w.remember("nowhere");
    let mut reasons = Vec::new();
    let mut waiting = Value::Null;
    w.wait_for(
        "nowhere to report ErrImagePull, then ImagePullBackOff",
        || {
            for pod in watch.pods() {
                let state = container_status(&pod)["state"]["waiting"].clone();
                if let Some(reason) = state["reason"].as_str() {
                    if reasons.last().map(String::as_str) != Some(reason) {
                        reasons.push(reason.to_string());
                    }
                    if reason == "ErrImagePull" {
                        let message = state["message"].as_str().unwrap_or("");
                        assert!(
                            message.starts_with(&format!("Failed to pull image \"{missing}\"")),
                            "{state}"
                        );
                    }
                    waiting = state;
                }
            }
            let first_pull_failed = reasons.iter().position(|r| r == "ErrImagePull");
            let backed_off = reasons.iter().rposition(|r| r == "ImagePullBackOff");
            first_pull_failed
                .zip(backed_off)
                .is_some_and(|(f, b)| f < b)
                && waiting["reason"] == "ImagePullBackOff"
        },
    );
    let message = waiting["message"].as_str().unwrap_or("");
    assert!(
        message.starts_with(&format!("Back-off pulling image \"{missing}\"")),
        "{waiting}"
    );
    assert!(message.contains("not found"), "{waiting}");
    let events = w.pod_events("nowhere");
    for (reason, text) in [
        ("Failed", format!("Failed to pull image \"{missing}\"")),
        ("Failed", "Error: ErrImagePull".to_string()),
        ("BackOff", format!("Back-off pulling image \"{missing}\"")),
        ("Failed", "Error: ImagePullBackOff".to_string()),
    ] {
        assert!(
            events
                .iter()
                .any(|(r, m)| r == reason && m.starts_with(&text)),
            "no {reason} event {text:?} in {events:?}"
        );
    }
    let described = w.kubectl_ok(&["describe", "pod", "nowhere"]);
    for text in ["ImagePullBackOff", "ErrImagePull", "Failed to pull image"] {
        assert!(described.contains(text), "no {text} in: {described}");
    }
}

/// `kubectl get pods --watch -o json` for a label selector, read on a thread of its own;
/// killed on drop.
struct PodWatch {
    child: Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// How much of `seen` [`PodWatch::pods`] has parsed.
    parsed: std::cell::Cell<usize>,
}

impl PodWatch {
    fn start(w: &World, selector: &str) -> PodWatch {
        let mut child = w
            .kubectl_cmd(&["get", "pods", "--watch", "-o", "json", "-l", selector])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start kubectl get --watch");
        let mut out = child.stdout.take().unwrap();
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let sink = seen.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        PodWatch {
            child,
            seen,
            parsed: Default::default(),
        }
    }

    /// The pod versions the watch printed since the last call, oldest first.
    fn pods(&self) -> Vec<Value> {
        let seen = self.seen.lock().unwrap();
        let mut stream =
            serde_json::Deserializer::from_slice(&seen[self.parsed.get()..]).into_iter::<Value>();
        let mut pods = Vec::new();
        while let Some(Ok(pod)) = stream.next() {
            pods.push(pod);
        }
        // A document still being printed stays for the next call.
        self.parsed.set(self.parsed.get() + stream.byte_offset());
        pods
    }
}

impl Drop for PodWatch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The `NAME=value` lines of `env` output.
fn env_vars(output: &str) -> std::collections::BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Service variables reach pods; a new image restarts a container; activeDeadlineSeconds
/// fails a pod; the node is NotReady while containerd is down and Ready once it is back.
#[test]
fn service_env_image_updates_deadlines_and_runtime_readiness() {
    let w = World::start();
    w.apply(
        "apiVersion: v1
kind: Service
metadata:
  name: db-main
spec:
  ports:
  - name: pg
    port: 5432
",
    );
    let db_ip = w.kubectl_ok(&[
        "get",
        "service",
        "db-main",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let api_ip = w.kubectl_ok(&[
        "get",
        "service",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(
        !db_ip.is_empty() && !api_ip.is_empty(),
        "{db_ip:?} {api_ip:?}"
    );
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: linked
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "env; echo end-of-env; exec sleep 3600"]
    # Runs through containerd: its outage below must not count as failures.
    livenessProbe:
      exec:
        command: ["true"]
      periodSeconds: 1
---
apiVersion: v1
kind: Pod
metadata:
  name: unlinked
spec:
  nodeName: kt-node
  enableServiceLinks: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "env; echo end-of-env; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: swap
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "echo started; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: brief
spec:
  nodeName: kt-node
  activeDeadlineSeconds: 3
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sleep", "3600"]
"#
    ));
    for name in ["linked", "unlinked", "swap", "brief"] {
        w.remember(name);
    }

    // Docker-link variables for the Service made before the pod, and the master's.
    let env_of = |pod: &str| {
        let mut logs = String::new();
        w.wait_for(&format!("{pod} to print its environment"), || {
            logs = w.kubectl_out(&["logs", pod]);
            logs.contains("end-of-env")
        });
        env_vars(&logs)
    };
    let linked = env_of("linked");
    for (name, value) in [
        ("DB_MAIN_SERVICE_HOST", db_ip.clone()),
        ("DB_MAIN_SERVICE_PORT", "5432".into()),
        ("DB_MAIN_SERVICE_PORT_PG", "5432".into()),
        ("DB_MAIN_PORT", format!("tcp://{db_ip}:5432")),
        ("DB_MAIN_PORT_5432_TCP", format!("tcp://{db_ip}:5432")),
        ("DB_MAIN_PORT_5432_TCP_PROTO", "tcp".into()),
        ("DB_MAIN_PORT_5432_TCP_PORT", "5432".into()),
        ("DB_MAIN_PORT_5432_TCP_ADDR", db_ip.clone()),
        ("KUBERNETES_SERVICE_HOST", api_ip.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
    ] {
        assert_eq!(linked.get(name), Some(&value), "{name} in {linked:?}");
    }
    let unlinked = env_of("unlinked");
    assert_eq!(
        unlinked.get("KUBERNETES_SERVICE_HOST"),
        Some(&api_ip),
        "{unlinked:?}"
    );
    assert!(
        !unlinked.keys().any(|k| k.starts_with("DB_MAIN_")),
        "enableServiceLinks: false still got links: {unlinked:?}"
    );

    // A new image: the container is killed and started again from it.
    w.wait_for("swap to run", || {
        w.kubectl_out(&["logs", "swap"]) == "started"
    });
    let before = container_status(&w.pod("swap").unwrap());
    w.kubectl_ok(&["set", "image", "pod/swap", &format!("app={OTHER_IMAGE}")]);
    let mut after = Value::Null;
    w.wait_for("swap to run its new image", || {
        after = container_status(&w.pod("swap").unwrap_or_default());
        after["restartCount"] == 1 && after["state"]["running"].is_object()
    });
    assert_eq!(after["image"], OTHER_IMAGE, "{after}");
    assert_ne!(after["containerID"], before["containerID"], "{after}");
    let events = w.pod_events("swap");
    assert!(
        events
            .iter()
            .any(|(r, m)| r == "Killing"
                && m == "Container app definition changed, will be restarted"),
        "{events:?}"
    );

    // Past its activeDeadlineSeconds: stopped, Failed, DeadlineExceeded.
    let mut brief = Value::Null;
    w.wait_for("brief to fail past its deadline", || {
        brief = w.pod("brief").unwrap_or_default();
        brief["status"]["phase"] == "Failed"
    });
    assert_eq!(
        brief["status"]["reason"], "DeadlineExceeded",
        "{}",
        brief["status"]
    );
    assert_eq!(
        brief["status"]["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    let cs = container_status(&brief);
    assert!(cs["state"]["terminated"].is_object(), "{cs}");
    let id = cs["containerID"]
        .as_str()
        .unwrap_or("")
        .trim_start_matches("containerd://")
        .to_string();
    assert!(w.task_pid(&id).is_none(), "brief's container still runs");

    // containerd down: the node says so (once the outage outlasts upstream's 30s
    // allowance); back: Ready again, and pods start.
    assert_eq!(w.node_ready()["status"], "True", "{}", w.node_ready());
    w.stop_containerd();
    let stopped = Instant::now();
    let mut ready = Value::Null;
    w.wait_for_within(
        RUNTIME_DOWN_AFTER + DEADLINE,
        "the node to be NotReady",
        || {
            ready = w.node_ready();
            ready["status"] == "False"
        },
    );
    assert!(
        stopped.elapsed() >= RUNTIME_DOWN_AFTER - orc::agent::node::RUNTIME_CHECK_INTERVAL,
        "NotReady after only {:?}",
        stopped.elapsed()
    );
    assert_eq!(ready["reason"], "KubeletNotReady", "{ready}");
    assert!(
        ready["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("container runtime is down")),
        "{ready}"
    );
    let table = w.kubectl_ok(&["get", "node", "kt-node"]);
    assert!(table.contains("NotReady"), "{table}");
    w.restart_containerd();
    w.wait_for("the node to be Ready again", || {
        w.node_ready()["status"] == "True"
    });
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: after-outage
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo back; exec sleep 3600\"]
"
    ));
    w.remember("after-outage");
    w.wait_for("a pod to start after the outage", || {
        w.kubectl_out(&["logs", "after-outage"]) == "back"
    });
    assert_eq!(
        container_status(&w.pod("linked").unwrap())["restartCount"],
        0,
        "the outage restarted a container"
    );
    let events = w.pod_events("linked");
    assert!(
        !events
            .iter()
            .any(|(r, _)| r == "Unhealthy" || r == "Killing"),
        "{events:?}"
    );
}

/// The cluster DNS address (the server's default --cluster-dns).
const CLUSTER_DNS: &str = "10.43.0.10";

/// An httpd pod on kt-node (Service and DNS tests): serves its own hostname on port 8080.
fn httpd_pod(name: &str, namespace: &str, app: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app: {app}
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"hostname > /www/index.html && exec httpd -f -p 8080 -h /www\"]
    volumeMounts:
    - name: www
      mountPath: /www
  volumes:
  - name: www
    emptyDir: {{}}
"
    )
}

fn service_yaml(name: &str, namespace: &str, app: &str, headless: bool) -> String {
    let cluster_ip = if headless { "\n  clusterIP: None" } else { "" };
    format!(
        "---
apiVersion: v1
kind: Service
metadata:
  name: {name}
  namespace: {namespace}
spec:{cluster_ip}
  selector:
    app: {app}
  ports:
  - name: http
    port: 80
    targetPort: 8080
"
    )
}

impl World {
    fn ready_endpoint_ips(&self, namespace: &str, name: &str) -> Vec<String> {
        let ips = self.kubectl_out(&[
            "get",
            "endpoints",
            name,
            "-n",
            namespace,
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]);
        let mut ips: Vec<String> = ips.split_whitespace().map(String::from).collect();
        ips.sort();
        ips
    }

    /// Asks the cluster DNS for `name` (type A) from the node's side, over UDP or TCP:
    /// the response code and the addresses answered.
    fn dns_query_from_node(&self, name: &str, tcp: bool) -> Result<(String, Vec<String>), String> {
        use hickory_server::proto::op::{Message, Query};
        use hickory_server::proto::rr::{Name, RecordType};
        let mut message = Message::query();
        message.metadata.id = 7;
        message.metadata.recursion_desired = true;
        message.add_query(Query::query(Name::from_ascii(name).unwrap(), RecordType::A));
        let query = message.to_vec().unwrap();
        let server = SocketAddr::from((CLUSTER_DNS.parse::<std::net::Ipv4Addr>().unwrap(), 53));
        let exchange = move || -> Result<Vec<u8>, String> {
            let io =
                |e: std::io::Error| format!("{} {server}: {e}", if tcp { "TCP" } else { "UDP" });
            if tcp {
                let mut stream =
                    TcpStream::connect_timeout(&server, SERVICE_IO_TIMEOUT).map_err(io)?;
                stream
                    .set_read_timeout(Some(SERVICE_IO_TIMEOUT))
                    .map_err(io)?;
                stream
                    .write_all(&(query.len() as u16).to_be_bytes())
                    .map_err(io)?;
                stream.write_all(&query).map_err(io)?;
                let mut len = [0u8; 2];
                stream.read_exact(&mut len).map_err(io)?;
                let mut buf = vec![0; usize::from(u16::from_be_bytes(len))];
                stream.read_exact(&mut buf).map_err(io)?;
                Ok(buf)
            } else {
                let socket = std::net::UdpSocket::bind("0.0.0.0:0").map_err(io)?;
                socket
                    .set_read_timeout(Some(SERVICE_IO_TIMEOUT))
                    .map_err(io)?;
                socket.send_to(&query, server).map_err(io)?;
                let mut buf = vec![0; 4096];
                let n = socket.recv(&mut buf).map_err(io)?;
                buf.truncate(n);
                Ok(buf)
            }
        };
        let reply =
            orc::agent::net::spawn_in_netns(Some(self.netns_path()), move || Ok(exchange()))
                .expect("spawn a thread in the test's network namespace")
                .join()
                .expect("DNS query thread panicked")
                .expect("enter the test's network namespace")?;
        let reply = Message::from_vec(&reply).map_err(|e| format!("unreadable DNS reply: {e}"))?;
        let mut addresses: Vec<String> = reply.answers.iter().map(|r| r.data.to_string()).collect();
        addresses.sort();
        Ok((format!("{:?}", reply.metadata.response_code), addresses))
    }
}

/// Cluster DNS end to end: pods resolve services of their own namespace by short and
/// full name and of other namespaces by `<svc>.<ns>`, fetch from them, resolve headless
/// services to their pods and pod names to their address, and get NXDOMAIN for unknown
/// names; the node itself asks the same server over UDP and TCP.
#[test]
fn dns_pods_resolve_services_and_fetch_from_them() {
    let w = World::start();
    let created = w.kubectl(&["create", "namespace", "other"]);
    assert!(
        created.status.success(),
        "kubectl create namespace: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut yaml = service_yaml("web", "default", "web", false);
    yaml.push_str(&service_yaml("web-headless", "default", "web", true));
    yaml.push_str(&service_yaml("web", "other", "web", false));
    yaml.push_str(&httpd_pod("web-1", "default", "web"));
    yaml.push_str(&httpd_pod("web-2", "default", "web"));
    yaml.push_str(&httpd_pod("web-other", "other", "web"));
    w.apply(&yaml);
    w.wait_for("the web services to have ready endpoints", || {
        w.ready_endpoint_ips("default", "web").len() == 2
            && w.ready_endpoint_ips("default", "web-headless").len() == 2
            && w.ready_endpoint_ips("other", "web").len() == 1
    });
    let web_ips = w.ready_endpoint_ips("default", "web");
    let web_ip = w.kubectl_out(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let dns_ip = w.kubectl_out(&[
        "get",
        "service",
        "kube-dns",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(
        dns_ip, CLUSTER_DNS,
        "kube-system/kube-dns holds the cluster DNS address"
    );

    // From the node: UDP and TCP.
    let full = "web.default.svc.cluster.local.";
    let mut last = Err(String::new());
    w.wait_for("the cluster DNS to answer on the node", || {
        last = w.dns_query_from_node(full, false);
        last.is_ok()
    });
    assert_eq!(last, Ok(("NoError".to_string(), vec![web_ip.clone()])));
    assert_eq!(
        w.dns_query_from_node(full, true),
        Ok(("NoError".to_string(), vec![web_ip.clone()])),
        "over TCP"
    );
    assert_eq!(
        w.dns_query_from_node("web-headless.default.svc.cluster.local.", true),
        Ok(("NoError".to_string(), web_ips.clone()))
    );
    assert_eq!(
        w.dns_query_from_node("nope.default.svc.cluster.local.", false),
        Ok(("NXDomain".to_string(), vec![]))
    );

    // From a pod, through its resolv.conf (ClusterFirst).
    let pod_name = format!("{}.default.pod.cluster.local", web_ips[0].replace('.', "-"));
    // The image's busybox is linked statically against glibc, whose resolver functions
    // crash without NSS modules (busybox wget segfaults even on an IP): names are
    // resolved with busybox's own nslookup, through the pod's resolv.conf (search path,
    // server), and fetched with nc from the address it prints. busybox's nslookup applies
    // the search path to dotless names only; for `web.other`, `search_like_libc` walks it
    // as glibc/musl do with `ndots:5` (each search domain in turn, then the name as is).
    let script = format!(
        "resolve() {{ nslookup \"$1\" | grep '^Address: ' | tail -n 1 | cut -d ' ' -f 2; }}
         search_like_libc() {{
           for d in $(grep '^search' /etc/resolv.conf | cut -d ' ' -f 2-); do
             a=$(resolve \"$1.$d\"); [ -n \"$a\" ] && {{ echo \"$a\"; return; }}
           done
           resolve \"$1.\"
         }}
         fetch() {{ printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 \"$1\" 80; }}
         echo '== resolv.conf'; cat /etc/resolv.conf
         echo '== full'; nslookup web.default.svc.cluster.local {CLUSTER_DNS}
         echo '== short'; resolve web
         echo '== fetch short'; fetch $(resolve web)
         echo '== other'; search_like_libc web.other
         echo '== fetch other'; fetch $(search_like_libc web.other)
         echo '== headless'; nslookup web-headless.default.svc.cluster.local
         echo '== pod'; nslookup {pod_name}
         echo '== unknown'; nslookup nope.default.svc.cluster.local
         echo '== end'"
    );
    let client = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: dns-client
spec:
  nodeName: kt-node
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", {script:?}]
"
    );
    w.apply(&client);
    w.wait_for("the DNS client pod to finish", || {
        let phase = w.pod("dns-client").unwrap_or_default()["status"]["phase"].clone();
        phase == "Succeeded" || phase == "Failed"
    });
    let logs = w.kubectl_out(&["logs", "dns-client"]);
    let section = |name: &str| -> String {
        let start = logs
            .find(&format!("== {name}\n"))
            .unwrap_or_else(|| panic!("no section {name} in the client's output:\n{logs}"));
        let rest = &logs[start + name.len() + 4..];
        rest[..rest.find("\n==").unwrap_or(rest.len())].to_string()
    };
    let resolv = section("resolv.conf");
    assert!(
        resolv.contains(&format!("nameserver {CLUSTER_DNS}"))
            && resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
            && resolv.contains("ndots:5"),
        "{logs}"
    );
    assert!(
        section("full").contains(&format!("Address: {web_ip}")),
        "{logs}"
    );
    assert_eq!(
        section("short").trim(),
        web_ip,
        "web resolves through the search path:\n{logs}"
    );
    let fetched = section("fetch short");
    assert!(
        fetched.contains("web-1") || fetched.contains("web-2"),
        "fetch from web:\n{logs}"
    );
    let other_ip = w.kubectl_out(&[
        "get",
        "service",
        "web",
        "-n",
        "other",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(
        section("other").trim(),
        other_ip,
        "web.other resolves:\n{logs}"
    );
    assert!(
        section("fetch other").contains("web-other"),
        "fetch from web.other:\n{logs}"
    );
    let headless = section("headless");
    for ip in &web_ips {
        assert!(
            headless.contains(&format!("Address: {ip}")),
            "headless: {logs}"
        );
    }
    assert!(
        section("pod").contains(&format!("Address: {}", web_ips[0])),
        "{logs}"
    );
    assert!(section("unknown").contains("NXDOMAIN"), "{logs}");
}

/// `kubectl exec` through the API server to the kubelet: output, stderr and exit codes,
/// the container `-c` names, stdin, a tty, large output, and clear errors.
#[test]
fn exec_runs_commands_in_the_container() {
    let w = World::start();
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: two
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 1
  containers:
  - name: shell
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo shell > /tmp/who; sleep 3600\"]
  - name: side
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo side > /tmp/who; sleep 3600\"]
"
    ));
    w.wait_running("two");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();

    // stdout and stderr apart, and the exit code becomes kubectl's.
    let out = w.kubectl(&[
        "exec",
        "two",
        "-c",
        "shell",
        "--",
        "sh",
        "-c",
        "echo out; echo err >&2; exit 7",
    ]);
    assert_eq!(text(&out.stdout), "out\n", "stderr: {}", text(&out.stderr));
    let stderr = text(&out.stderr);
    assert!(stderr.starts_with("err\n"), "{stderr}");
    assert!(
        stderr.contains("command terminated with exit code 7"),
        "{stderr}"
    );
    assert!(
        !stderr.contains("fallback") && !stderr.contains("SPDY"),
        "{stderr}"
    );
    assert_eq!(out.status.code(), Some(7));

    let ok = w.kubectl(&["exec", "two", "-c", "shell", "--", "echo", "ok"]);
    assert!(ok.status.success(), "{}", text(&ok.stderr));
    assert_eq!(text(&ok.stdout), "ok\n");

    // -c picks the container (each has its own /tmp).
    for name in ["shell", "side"] {
        let who = w.kubectl_out(&["exec", "two", "-c", name, "--", "cat", "/tmp/who"]);
        assert_eq!(who, name);
    }

    // Output larger than the pipes in between arrives whole.
    let seq = w.kubectl(&["exec", "two", "-c", "shell", "--", "seq", "1", "30000"]);
    assert!(seq.status.success(), "{}", text(&seq.stderr));
    let lines: Vec<String> = text(&seq.stdout).lines().map(str::to_string).collect();
    assert_eq!(lines.len(), 30000);
    assert_eq!(lines.last().map(String::as_str), Some("30000"));

    // kubectl cp streams tar through exec's stdin and stdout: binary data both ways.
    let blob: Vec<u8> = (0..300_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let local = w.dir.join("blob.in");
    std::fs::write(&local, &blob).unwrap();
    let to_pod = w.kubectl(&[
        "cp",
        "-c",
        "shell",
        local.to_str().unwrap(),
        "two:/tmp/blob",
    ]);
    assert!(to_pod.status.success(), "{}", text(&to_pod.stderr));
    let back = w.dir.join("blob.out");
    let from_pod = w.kubectl(&["cp", "-c", "shell", "two:/tmp/blob", back.to_str().unwrap()]);
    assert!(from_pod.status.success(), "{}", text(&from_pod.stderr));
    assert!(
        std::fs::read(&back).unwrap() == blob,
        "kubectl cp changed the data"
    );

    // A background process that keeps the output open does not hold kubectl for good.
    let bg = w.kubectl(&[
        "exec",
        "two",
        "-c",
        "shell",
        "--",
        "sh",
        "-c",
        "sleep 60 & echo started; exit 3",
    ]);
    assert_eq!(text(&bg.stdout), "started\n");
    assert_eq!(bg.status.code(), Some(3), "{}", text(&bg.stderr));

    // stdin reaches the command, and its end ends the command.
    let mut cat = w.kubectl_cmd(&["exec", "-i", "two", "-c", "shell", "--", "cat"]);
    let mut child = cat
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"hi\n").unwrap();
    let out = wait_with_deadline(child);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");

    // With a tty (kubectl needs a terminal of its own to ask for one), sized as
    // kubectl's terminal once its first resize arrived.
    let mut script = w.in_netns("script");
    script
        .args(["-qec", TTY_EXEC, "/dev/null"])
        .env("KUBECONFIG", w.kubeconfig())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let out = wait_with_deadline(script.spawn().unwrap());
    let tty_out = text(&out.stdout);
    assert!(
        tty_out.contains("/dev/pts/"),
        "{tty_out} {}",
        text(&out.stderr)
    );
    assert!(tty_out.contains("size 30 100\r\n"), "{tty_out}");

    // A client that goes away takes its command with it.
    let mut sleeper = w
        .kubectl_cmd(&["exec", "two", "-c", "shell", "--", "sleep", "777"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let sleeping = || {
        w.kubectl_out(&["exec", "two", "-c", "shell", "--", "ps"])
            .contains("sleep 777")
    };
    w.wait_for("the exec'd sleep to run", sleeping);
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    w.wait_for("the exec'd sleep to be killed", || !sleeping());

    // Bad requests get clear errors.
    let missing = w.kubectl(&["exec", "two", "-c", "nope", "--", "true"]);
    assert!(!missing.status.success());
    assert!(
        text(&missing.stderr).contains("container nope is not valid for pod two"),
        "{}",
        text(&missing.stderr)
    );
    let not_found = w.kubectl(&["exec", "ghost", "--", "true"]);
    assert!(
        text(&not_found.stderr).contains("not found"),
        "{}",
        text(&not_found.stderr)
    );
    // Only admins (and so not a node's credential) may exec.
    let node_kubeconfig = w.data_dir().join("agent/kubelet.kubeconfig");
    let denied = w.kubectl(&[
        "--kubeconfig",
        node_kubeconfig.to_str().unwrap(),
        "exec",
        "two",
        "-c",
        "shell",
        "--",
        "true",
    ]);
    assert!(
        text(&denied.stderr)
            .contains("User \"system:node:kt-node\" cannot create resource \"pods/exec\""),
        "{}",
        text(&denied.stderr)
    );
    let not_there = w.kubectl(&["exec", "two", "-c", "shell", "--", "/no/such/binary"]);
    assert!(!not_there.status.success());
    let stderr = text(&not_there.stderr);
    assert!(
        stderr.contains("exec in container shell of pod two") && stderr.contains("/no/such/binary"),
        "{stderr}"
    );
}

/// `kubectl attach` follows a container's output from the moment it attached, on stdout
/// and stderr, and returns once the container has exited.
#[test]
fn attach_follows_a_container_until_it_exits() {
    let w = World::start();
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: ticker
spec:
  nodeName: kt-node
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"i=0; until [ -e /tmp/stop ]; do i=$((i+1)); echo tick $i; echo tock $i >&2; sleep 0.2; done; echo bye\"]
"
    ));
    w.wait_running("ticker");
    let mut attach = w
        .kubectl_cmd(&["attach", "ticker"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Attached once a tick arrives; then the container is told to finish.
    let mut stdout = std::io::BufReader::new(attach.stdout.take().unwrap());
    let (lines_tx, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut line = String::new();
        while std::io::BufRead::read_line(&mut stdout, &mut line).unwrap_or(0) > 0 {
            let _ = lines_tx.send(std::mem::take(&mut line));
        }
    });
    let first = lines
        .recv_timeout(DEADLINE)
        .expect("no output from kubectl attach");
    assert!(first.starts_with("tick "), "{first:?}");
    let stop = w.kubectl(&["exec", "ticker", "--", "touch", "/tmp/stop"]);
    assert!(stop.status.success());
    let out = wait_with_deadline(attach);
    reader.join().unwrap();
    let rest: Vec<String> = lines.try_iter().collect();
    assert_eq!(rest.last().map(String::as_str), Some("bye\n"), "{rest:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("tock "), "{stderr}");
    assert!(out.status.success(), "{stderr}");
}

/// `kubectl exec -it` in a 30x100 terminal: the command prints its tty and, once it is
/// sized (bounded wait), its size.
const TTY_EXEC: &str = "stty rows 30 cols 100; kubectl exec -it two -c shell -- sh -c '\
    tty; for i in $(seq 50); do s=$(stty size 2>&1); case $s in *[1-9]*) break;; esac; sleep 0.1; done; \
    echo size $s'";

/// Waits for a child's output, killing it if it takes longer than `DEADLINE`.
fn wait_with_deadline(mut child: Child) -> Output {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > DEADLINE {
            let _ = child.kill();
            let out = child.wait_with_output().unwrap();
            panic!(
                "timed out; stdout {:?} stderr {:?}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}
