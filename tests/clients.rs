//! orc driven by client libraries besides kubectl: the official Python client (PyPI
//! `kubernetes`) and `@kubernetes/client-node` 1.x, both installed pinned under
//! /opt/orc-test by scripts/install-deps.sh. Each test runs a script of `tests/clients/`
//! against the real binary with the kubeconfig orc writes; a script prints every check
//! (`ok` / `FAIL` with what failed) and exits non-zero when one failed.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod support;

/// The Python client's virtual environment (scripts/install-deps.sh).
const PYTHON: &str = "/opt/orc-test/python/bin/python";
/// The Node.js client's entry file in its npm prefix (scripts/install-deps.sh).
const NODE_CLIENT: &str = "/opt/orc-test/node/node_modules/@kubernetes/client-node/dist/index.js";
/// Longest one script may run.
const SCRIPT_DEADLINE: Duration = Duration::from_secs(150);

fn script(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/clients")
        .join(name)
}

fn python(name: &str) -> Command {
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: run scripts/install-deps.sh (it installs the Python client)"
    );
    let mut cmd = Command::new(PYTHON);
    cmd.arg(script(name));
    cmd
}

fn node(name: &str) -> Command {
    assert!(
        Path::new(NODE_CLIENT).exists(),
        "{NODE_CLIENT} is missing: run scripts/install-deps.sh (it installs @kubernetes/client-node)"
    );
    let mut cmd = Command::new("node");
    cmd.arg(script(name)).env("ORC_NODE_CLIENT", NODE_CLIENT);
    cmd
}

/// Runs a client script to its end (killed past [`SCRIPT_DEADLINE`]) and fails the test
/// with its output unless every check passed.
fn run_checks(what: &str, cmd: &mut Command) {
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("start {what}: {e}"));
    let mut stdout = child.stdout.take().expect("stdout");
    let mut stderr = child.stderr.take().expect("stderr");
    let out = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stdout.read_to_string(&mut s);
        s
    });
    let err = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let began = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the script") {
            break Some(status);
        }
        if began.elapsed() > SCRIPT_DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let (out, err) = (out.join().unwrap(), err.join().unwrap());
    match status {
        Some(s) if s.success() => eprintln!("{what}:\n{out}"),
        Some(s) => panic!("{what} failed ({s}):\n{out}\n{err}"),
        None => panic!("{what} did not end within {SCRIPT_DEADLINE:?}:\n{out}\n{err}"),
    }
}

/// The Python client: kubeconfig, CoreV1 CRUD, selectors and pages, watch streams, every
/// patch type, delete options, scale, CRDs and custom objects, create_from_yaml, the
/// dynamic client's discovery, events.
#[test]
fn python_client_drives_the_api() {
    let server = support::server::Server::start();
    run_checks(
        "python_api.py",
        python("python_api.py").arg(server.kubeconfig()),
    );
}

/// The Node.js client: kubeconfig, CoreV1Api/AppsV1Api, an informer through a watch the
/// server ends, Watch, KubernetesObjectApi on built-in and custom kinds with
/// server-side apply.
#[test]
fn node_client_drives_the_api() {
    let server = support::server::Server::start();
    run_checks(
        "node_api.mjs",
        node("node_api.mjs").arg(server.kubeconfig()),
    );
}

/// Both clients on a real pod (server with its agent and containerd, needs root): exec
/// over the websocket protocol, logs read and followed, port-forward (Python), and
/// metrics.k8s.io with topNodes/topPods (Node.js).
#[test]
fn python_and_node_clients_exec_log_and_port_forward_on_a_real_pod() {
    use support::kubelet::{World, IMAGE};
    let w = World::start();
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: clients
  namespace: default
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"hostname > /www/index.html; httpd -p 8080 -h /www; i=0; while true; do echo line $i; i=$((i+1)); sleep 0.3; done\"]
    resources:
      requests: {{cpu: 50m, memory: 16Mi}}
      limits: {{memory: 64Mi}}
    volumeMounts:
    - name: www
      mountPath: /www
  volumes:
  - name: www
    emptyDir: {{}}
"
    ));
    w.wait_running("clients");
    w.step("the Python client's exec, logs and port-forward");
    let mut py = w.in_netns(PYTHON);
    py.arg(script("python_pods.py"))
        .arg(w.kubeconfig())
        .args(["clients", "default"]);
    assert!(
        Path::new(PYTHON).exists(),
        "{PYTHON} is missing: run scripts/install-deps.sh"
    );
    run_checks("python_pods.py", &mut py);
    w.step("the Node.js client's Exec, Log, Metrics, topNodes and topPods");
    let mut js = w.in_netns("node");
    js.arg(script("node_pods.mjs"))
        .env("ORC_NODE_CLIENT", NODE_CLIENT)
        .arg(w.kubeconfig())
        .args(["clients", "default"]);
    run_checks("node_pods.mjs", &mut js);
}
