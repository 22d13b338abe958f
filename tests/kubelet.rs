//! The kubelet end to end: `orc server` with its embedded agent on a private containerd,
//! the busybox test image imported from `agent/images`, real `kubectl`.
//!
//! Needs root, containerd, runc, busybox-static, nsenter and kubectl
//! (scripts/install-deps.sh). The server runs in a network namespace of the test's own
//! (so the pod bridge and the nftables table never touch the host's network), its
//! containerd is private (scripts/containerd-test-env.sh) and everything lives in one
//! directory that the drop guards unmount and remove, even when the test fails.
//! The embedded agent's service proxy keeps its nftables table in that namespace too.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

#[path = "support/host.rs"]
mod host;
use host::{free_port, repo_path, require_root_and_tools, run};

const ORC: &str = env!("CARGO_BIN_EXE_orc");
const IMAGE: &str = "docker.io/library/busybox:test";
const NAMESPACE: &str = "orc-kubelet-test";
/// Longest any single wait takes.
const DEADLINE: Duration = Duration::from_secs(30);
/// The server's default service network (ClusterIPs come from it).
const SERVICE_CIDR: &str = "10.43.0.0/16";
/// How long one request to a Service may take.
const SERVICE_IO_TIMEOUT: Duration = Duration::from_secs(2);

/// The test's world: a directory, a private containerd, a network namespace and the
/// server in it. Dropping it removes all of them.
struct World {
    dir: PathBuf,
    netns: String,
    server: Option<Child>,
    port: u16,
    /// Pods the test saw (their cgroups are removed at the end).
    uids: std::cell::RefCell<Vec<String>>,
}

impl World {
    fn start() -> World {
        require_root_and_tools("tests/kubelet.rs");
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let dir = PathBuf::from(format!("/run/orc-kubelet-test-{tag}"));
        let mut world = World {
            dir: dir.clone(),
            netns: format!("orc-kt-{tag}"),
            server: None,
            port: free_port(),
            uids: Default::default(),
        };
        std::fs::create_dir_all(world.data_dir().join("agent/images")).unwrap();
        let built = run(Command::new(repo_path("scripts/build-test-image.sh"))
            .arg(world.data_dir().join("agent/images/busybox.tar"))
            .arg(IMAGE));
        assert!(
            built.status.success(),
            "build the busybox test image (needs busybox-static): {}",
            String::from_utf8_lossy(&built.stderr)
        );
        let started = run(Command::new(repo_path("scripts/containerd-test-env.sh"))
            .arg("start")
            .arg(&dir));
        assert!(
            started.status.success(),
            "start a private containerd: {}",
            String::from_utf8_lossy(&started.stderr)
        );
        let added = run(Command::new("ip").args(["netns", "add", &world.netns]));
        assert!(
            added.status.success(),
            "ip netns add: {}",
            String::from_utf8_lossy(&added.stderr)
        );
        run(Command::new("ip").args(["-n", &world.netns, "link", "set", "lo", "up"]));

        world.spawn_server();
        world
    }

    /// Starts `orc server` (with its embedded agent) in the test's network namespace and
    /// waits for the node to have its podCIDR.
    fn spawn_server(&mut self) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("server.log"))
            .unwrap();
        let child = Command::new("nsenter")
            .arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg(ORC)
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
        let mut cmd = Command::new("nsenter");
        cmd.arg(format!("--net=/var/run/netns/{}", self.netns))
            .arg("kubectl")
            .args(args)
            .env("KUBECONFIG", self.kubeconfig())
            .stdin(Stdio::null());
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

    fn apply(&self, yaml: &str) {
        let mut cmd = self.kubectl_cmd(&["apply", "-f", "-"]);
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(yaml.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "kubectl apply: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn pod(&self, name: &str) -> Option<Value> {
        let out = self.kubectl(&["get", "pod", name, "-o", "json"]);
        out.status
            .success()
            .then(|| serde_json::from_slice(&out.stdout).ok())
            .flatten()
    }

    fn wait_for(&self, what: &str, mut cond: impl FnMut() -> bool) {
        let start = Instant::now();
        while !cond() {
            assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
            std::thread::sleep(Duration::from_millis(200));
        }
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
        // The bridge and the nftables table live and die with this namespace.
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .status();
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

impl World {
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
        orc::agent::net::spawn_in_netns(Some(self.netns_path()), move || Ok(request()))
            .expect("spawn a thread in the test's network namespace")
            .join()
            .expect("request thread panicked")
            .expect("enter the test's network namespace")
    }
}

/// Two httpd pods behind a ClusterIP Service: the node reaches both through the
/// service proxy, and not at all once the Service is deleted.
fn service_reaches_its_ready_pods(w: &World) {
    let pods = ["web-1", "web-2"];
    let mut yaml = String::from(
        "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
",
    );
    for name in pods {
        yaml.push_str(&format!(
            "---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: web
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
        ));
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
    w.wait_for("Endpoints web to list both pods as ready", || {
        let ips = w.kubectl_out(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]);
        ips.split_whitespace().count() == 2
    });
    let cluster_ip: std::net::Ipv4Addr = w
        .kubectl_out(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .parse()
        .expect("service web has a ClusterIP");
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

    let service = SocketAddr::from((cluster_ip, 80));
    let mut seen = std::collections::BTreeSet::new();
    let mut last = Ok(String::new());
    let start = Instant::now();
    while seen.len() < pods.len() {
        assert!(
            start.elapsed() < DEADLINE,
            "service {service} reached only {seen:?}; last answer: {last:?}; web-1 logs: {}",
            w.kubectl_out(&["logs", "web-1"])
        );
        last = w.http_get_from_node(service);
        if let Ok(body) = &last {
            seen.insert(body.clone());
        } else {
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    assert_eq!(
        seen,
        pods.iter().map(|p| p.to_string()).collect(),
        "the service answered from pods that are not its endpoints"
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
    std::thread::sleep(Duration::from_secs(2));
    let again = container_status(&w.pod("hello").unwrap());
    assert_eq!(again["containerID"], cs["containerID"], "{again}");
    assert_eq!(again["restartCount"], 0, "{again}");
    assert_eq!(
        again["state"]["running"]["startedAt"],
        cs["state"]["running"]["startedAt"]
    );
    assert_eq!(w.task_pid(&id), pid_before, "the container was restarted");
    assert!(pid_before.is_some(), "container {id} has no running task");

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
    let mut script = Command::new("nsenter");
    script
        .arg(format!("--net=/var/run/netns/{}", w.netns))
        .args(["script", "-qec", TTY_EXEC, "/dev/null"])
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
