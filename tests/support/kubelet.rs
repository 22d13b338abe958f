//! A one-node cluster for the kubelet tests (`tests/kubelet_*.rs`): `orc server` with
//! its embedded agent in a network namespace of the test's own, on a private containerd
//! (scripts/containerd-test-env.sh) and, where a test asks, a private docker-registry,
//! with the busybox test image imported from `agent/images`; driven with real `kubectl`.
//!
//! Needs root, containerd, runc, busybox-static, nsenter and kubectl, and for the pull
//! checks skopeo and docker-registry (scripts/install-deps.sh). The pod bridge and the
//! proxy's nftables table live in the test's namespace, never the host's; everything
//! lives in one directory that the drop guard unmounts and removes, even when the test
//! fails.

use std::cell::RefCell;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use serde_json::Value;

use super::host::{
    free_port, in_netns, kubectl_apply, on_netns_thread, remove_pod_cgroups, repo_path,
    require_root_and_tools, run,
};
use super::wait::wait_until_every;

pub const ORC: &str = env!("CARGO_BIN_EXE_orc");
pub const IMAGE: &str = "docker.io/library/busybox:test";
/// The same busybox under a second name (for image updates).
pub const OTHER_IMAGE: &str = "docker.io/library/busybox:other";
pub const NAMESPACE: &str = "orc-kubelet-test";
/// Longest any single wait takes.
pub const DEADLINE: Duration = Duration::from_secs(30);
/// The server's default service network (ClusterIPs come from it).
pub const SERVICE_CIDR: &str = "10.43.0.0/16";
/// How long containerd may be away before the node is NotReady.
pub const RUNTIME_DOWN_AFTER: Duration = orc::agent::node::RUNTIME_DOWN_AFTER;
/// How long one request to a Service may take.
pub const SERVICE_IO_TIMEOUT: Duration = Duration::from_secs(2);
/// How often a condition is checked (most checks run kubectl).
pub const POLL_EVERY: Duration = Duration::from_millis(200);
/// The node's address on the test namespace's stand-in for a LAN interface.
pub const NODE_IP: &str = "192.168.231.2";

/// The test's world: a directory, a private containerd, a network namespace and the
/// server in it. Dropping it removes all of them.
pub struct World {
    pub dir: PathBuf,
    pub netns: String,
    pub server: Option<Child>,
    pub port: u16,
    /// The private registry's port (in the test's network namespace), if it has one.
    pub registry_port: Option<u16>,
    /// Pods the test saw (their cgroups are removed at the end).
    pub uids: std::cell::RefCell<Vec<String>>,
    /// A containerd the test restarted itself (the script's stop ends it; reaped on drop).
    pub restarted_containerd: std::cell::RefCell<Option<Child>>,
    /// The behaviour the test is checking now (named when the test fails).
    pub step: std::cell::RefCell<String>,
    /// Where the server listens: 127.0.0.1, or [`NODE_IP`] for pods to reach it.
    pub bind_address: &'static str,
    /// Extra flags for the next `spawn_server`. By default node-pressure eviction is
    /// off (`--eviction-hard=`): the host's free disk must not decide a test's outcome;
    /// tests of eviction set their own thresholds.
    pub server_args: Vec<String>,
}

impl World {
    pub fn start() -> World {
        World::start_with(false)
    }

    /// The server listens on [`NODE_IP`] (and the `kubernetes` Service points there), so
    /// pods reach the API at `https://kubernetes.default.svc`.
    pub fn start_reachable_from_pods() -> World {
        let mut world = World::prepare(false);
        world.bind_address = NODE_IP;
        world.spawn_server();
        world
    }

    /// With `registry`, a private docker-registry serves on 127.0.0.1:[`World::registry_port`]
    /// inside the test's network namespace (where the agent pulls from).
    pub fn start_with(registry: bool) -> World {
        let mut world = World::prepare(registry);
        world.spawn_server();
        world
    }

    /// The world without its server: the directory, the images, the network namespace
    /// and containerd (for tests that start the server and agent themselves).
    pub fn prepare(registry: bool) -> World {
        World::prepare_with(registry, None)
    }

    /// As [`World::prepare`]; with `root_size` (e.g. `64m`), containerd's root — the
    /// image filesystem — is a tmpfs of that size of its own.
    pub fn prepare_with(registry: bool, root_size: Option<&str>) -> World {
        require_root_and_tools("the kubelet tests (tests/kubelet_*.rs)");
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let dir = PathBuf::from(format!("/run/orc-kubelet-test-{tag}"));
        let world = World {
            dir: dir.clone(),
            netns: format!("orc-kt-{tag}"),
            server: None,
            port: free_port(),
            registry_port: registry.then(free_port),
            uids: Default::default(),
            restarted_containerd: Default::default(),
            step: RefCell::new("setting up the node".to_string()),
            bind_address: "127.0.0.1",
            server_args: vec!["--eviction-hard=".to_string()],
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
        if let Some(size) = root_size {
            let root = dir.join("root");
            std::fs::create_dir_all(&root).unwrap();
            let mounted = run(Command::new("mount")
                .args(["-t", "tmpfs", "-o", &format!("size={size}"), "orc-image-fs"])
                .arg(&root));
            assert!(
                mounted.status.success(),
                "mount a tmpfs for containerd's root: {mounted:?}"
            );
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
        world
    }

    /// `program` run inside the test's network namespace.
    pub fn in_netns(&self, program: impl AsRef<std::ffi::OsStr>) -> Command {
        in_netns(&self.netns, program)
    }

    /// Starts `orc server` (with its embedded agent) in the test's network namespace and
    /// waits for the node to have its podCIDR.
    pub fn spawn_server(&mut self) {
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
                self.bind_address,
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
            .args(&self.server_args)
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
    pub fn kill_server(&mut self) {
        if let Some(mut c) = self.server.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig.yaml")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// kubectl inside the server's network namespace.
    pub fn kubectl_cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.in_netns("kubectl");
        cmd.args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null());
        cmd
    }

    /// `kubectl args…` that must succeed: its stdout.
    pub fn kubectl_ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The events about pod `name`, as `(reason, message)`, oldest first.
    pub fn pod_events(&self, name: &str) -> Vec<(String, String)> {
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
    pub fn remember(&self, name: &str) {
        if let Some(uid) = self
            .pod(name)
            .and_then(|p| p["metadata"]["uid"].as_str().map(String::from))
        {
            self.uids.borrow_mut().push(uid);
        }
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        run(&mut self.kubectl_cmd(args))
    }

    pub fn kubectl_out(&self, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.kubectl(args).stdout)
            .trim()
            .to_string()
    }

    pub fn apply(&self, yaml: &str) {
        kubectl_apply(self.kubectl_cmd(&["apply", "-f", "-"]), yaml);
    }

    pub fn pod(&self, name: &str) -> Option<Value> {
        let out = self.kubectl(&["get", "pod", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    /// Names the behaviour the following checks prove (a failure names it).
    pub fn step(&self, behaviour: &str) {
        eprintln!("checking: {behaviour}");
        *self.step.borrow_mut() = behaviour.to_string();
    }

    pub fn wait_for(&self, what: &str, cond: impl FnMut() -> bool) {
        self.wait_for_within(DEADLINE, what, cond);
    }

    pub fn wait_for_within(&self, deadline: Duration, what: &str, cond: impl FnMut() -> bool) {
        wait_until_every(deadline, POLL_EVERY, what, cond);
    }

    /// Waits for pod `name` to be Running (its cgroups are removed at the end).
    pub fn wait_running(&self, name: &str) {
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

    pub fn containers(&self) -> String {
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
            eprintln!("--- failed while checking: {} ---", self.step.borrow());
        }
        let uids: Vec<String> = std::fs::read_dir(self.data_dir().join("agent/pods"))
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .chain(self.uids.borrow().iter().cloned())
            .collect();
        // The `orc pause` holders of shared PID namespaces outlive the server (as on a
        // node, where they outlive an agent restart): a failed test leaves them.
        for entry in std::fs::read_dir(self.data_dir().join("agent/podns"))
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().ends_with("-pid.holder"))
        {
            if let Ok(pid) = std::fs::read_to_string(entry.path()) {
                let _ = Command::new("kill").args(["-9", pid.trim()]).status();
            }
        }
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
    pub fn stop_containerd(&self) {
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
    pub fn restart_containerd(&self) {
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
    pub fn node_ready(&self) -> Value {
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
    pub fn task_pid(&self, id: &str) -> Option<String> {
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
    pub fn netns_path(&self) -> PathBuf {
        PathBuf::from(format!("/var/run/netns/{}", self.netns))
    }

    /// `GET /` over plain HTTP/1.0 to `addr` from inside the test's network namespace
    /// (the node's): the response body, or why there is none.
    pub fn http_get_from_node(&self, addr: SocketAddr) -> Result<String, String> {
        self.http_get_path_from_node(addr, "/")
    }

    /// `GET path` over plain HTTP/1.0 to `addr` from inside the test's network namespace:
    /// the body of a 200 answer, or why there is none.
    pub fn http_get_path_from_node(&self, addr: SocketAddr, path: &str) -> Result<String, String> {
        let head = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
        let request = move || -> Result<String, String> {
            let mut stream = TcpStream::connect_timeout(&addr, SERVICE_IO_TIMEOUT)
                .map_err(|e| format!("connect {addr}: {e}"))?;
            stream
                .set_read_timeout(Some(SERVICE_IO_TIMEOUT))
                .map_err(|e| e.to_string())?;
            stream
                .write_all(head.as_bytes())
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

pub fn container_status(pod: &Value) -> Value {
    pod["status"]["containerStatuses"][0].clone()
}

/// `kubectl get pods --watch -o json` for a label selector, read on a thread of its own;
/// killed on drop.
pub struct PodWatch {
    child: Child,
    seen: std::sync::Arc<std::sync::Mutex<Vec<u8>>>,
    /// How much of `seen` [`PodWatch::pods`] has parsed.
    parsed: std::cell::Cell<usize>,
}

impl PodWatch {
    pub fn start(w: &World, selector: &str) -> PodWatch {
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
    pub fn pods(&self) -> Vec<Value> {
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
pub fn env_vars(output: &str) -> std::collections::BTreeMap<String, String> {
    output
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The cluster DNS address (the server's default --cluster-dns).
pub const CLUSTER_DNS: &str = "10.43.0.10";

/// An httpd pod on kt-node (Service and DNS tests): serves its own hostname on port 8080.
pub fn httpd_pod(name: &str, namespace: &str, app: &str) -> String {
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

pub fn service_yaml(name: &str, namespace: &str, app: &str, headless: bool) -> String {
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
    pub fn ready_endpoint_ips(&self, namespace: &str, name: &str) -> Vec<String> {
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
    pub fn dns_query_from_node(
        &self,
        name: &str,
        tcp: bool,
    ) -> Result<(String, Vec<String>), String> {
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

/// Runs `cmd` with `input` on its stdin; its stdout once it exits (killed after
/// `deadline`, then whatever it printed).
pub fn run_with_input(mut cmd: Command, input: &str, deadline: Duration) -> String {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn kubectl");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(input.as_bytes())
        .expect("write stdin");
    let started = std::time::Instant::now();
    while child.try_wait().expect("wait kubectl").is_none() && started.elapsed() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
    let mut out = String::new();
    let _ = child
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out);
    out
}
