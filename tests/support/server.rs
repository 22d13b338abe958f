//! A real `orc server` (without its agent) on a free port with a private data dir, its
//! kubeconfig, the real `kubectl` against it, and a TLS client pinned to its CA.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

pub use super::host::free_port;
use super::wait::wait_until;

pub const ORC: &str = env!("CARGO_BIN_EXE_orc");
/// Longest any test waits for a condition.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// What the server prints once it serves.
const READY: &str = "orc server is ready";

/// A running `orc server` (killed on drop).
pub struct Server {
    pub dir: tempfile::TempDir,
    pub port: u16,
    pub child: Option<Child>,
    pub extra_args: Vec<String>,
}

impl Server {
    pub fn start() -> Server {
        Server::start_with(&[])
    }

    pub fn start_with(extra: &[&str]) -> Server {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut s = Server {
            dir,
            port: free_port(),
            child: None,
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
        };
        s.spawn();
        s
    }

    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.path().join("kubeconfig.yaml")
    }

    pub fn url(&self) -> String {
        format!("https://127.0.0.1:{}", self.port)
    }

    /// Starts the server process and waits until it answers. A port taken by another
    /// test's process between [`free_port`] and the server's bind is replaced by a new
    /// one (a few times).
    pub fn spawn(&mut self) {
        for attempt in 0..4 {
            let log = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("server.log"))
                .expect("open server log");
            let child = Command::new(ORC)
                .arg("server")
                .arg("--data-dir")
                .arg(self.data_dir())
                .arg("--bind-address")
                .arg("127.0.0.1")
                .arg("--https-port")
                .arg(self.port.to_string())
                .arg("--write-kubeconfig")
                .arg(self.kubeconfig())
                .arg("--disable-agent")
                .args(&self.extra_args)
                .env("RUST_LOG", "info")
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .expect("spawn orc server");
            self.child = Some(child);
            let ready_before = self.log().matches(READY).count();
            let mut exited = false;
            wait_for(&format!("server on port {} to answer", self.port), || {
                // Whoever answers on the port may be another test's server: this one
                // says it is ready once it serves, or exits when it cannot bind.
                exited = self
                    .child
                    .as_mut()
                    .is_some_and(|c| c.try_wait().is_ok_and(|s| s.is_some()));
                exited
                    || (self.log().matches(READY).count() > ready_before
                        && self.kubeconfig().exists()
                        && std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok())
            });
            if !exited {
                return;
            }
            self.child = None;
            if attempt == 3 || !self.log().contains("Address already in use") {
                panic!("orc server exited at start:\n{}", self.log());
            }
            self.port = free_port();
        }
    }

    /// Kills the server with SIGKILL (no chance to flush anything).
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("server.log")).unwrap_or_default()
    }

    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig(), args, None)
    }

    pub fn kubectl_stdin(&self, args: &[&str], stdin: &str) -> Output {
        kubectl_with(&self.kubeconfig(), args, Some(stdin))
    }

    /// Runs kubectl and returns stdout, failing the test with stderr if it fails.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}\n{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs kubectl expecting failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.kubectl(args);
        assert!(
            !out.status.success(),
            "kubectl {args:?} unexpectedly succeeded: {}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// Applies YAML from a string with `kubectl <verb> -f -`.
    pub fn apply_yaml(&self, verb: &str, yaml: &str) -> String {
        let out = self.kubectl_stdin(&[verb, "-f", "-"], yaml);
        assert!(
            out.status.success(),
            "kubectl {verb} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    pub fn get_json(&self, args: &[&str]) -> serde_json::Value {
        let mut a = vec!["get"];
        a.extend_from_slice(args);
        a.extend_from_slice(&["-o", "json"]);
        serde_json::from_str(&self.ok(&a)).expect("kubectl -o json output")
    }

    /// A kubeconfig that authenticates with bearer `token` only (no client
    /// certificate), for acting as a service account.
    pub fn token_kubeconfig(&self, token: &str) -> PathBuf {
        let creds = orc::tls::kubeconfig_credentials(
            &std::fs::read_to_string(self.kubeconfig()).expect("read kubeconfig"),
        )
        .expect("parse kubeconfig");
        let ca = self.dir.path().join("ca.crt");
        std::fs::write(&ca, &creds.ca_pem).expect("write ca");
        let path = self
            .dir
            .path()
            .join(format!("token-{}.yaml", uuid::Uuid::new_v4()));
        let yaml = format!(
            "apiVersion: v1\nkind: Config\nclusters:\n- name: orc\n  cluster:\n    server: {}\n    certificate-authority: {}\nusers:\n- name: token\n  user:\n    token: {token}\ncontexts:\n- name: orc\n  context: {{cluster: orc, user: token}}\ncurrent-context: orc\n",
            self.url(),
            ca.display()
        );
        std::fs::write(&path, yaml).expect("write token kubeconfig");
        path
    }

    /// An HTTPS client pinned to the cluster CA, authenticated as admin (or anonymous).
    pub fn client(&self, admin: bool) -> reqwest::Client {
        let creds = orc::tls::kubeconfig_credentials(
            &std::fs::read_to_string(self.kubeconfig()).expect("read kubeconfig"),
        )
        .expect("parse kubeconfig");
        let identity = admin.then_some((creds.cert_pem.as_str(), creds.key_pem.as_str()));
        let tls =
            orc::tls::client_config_pinned(&creds.ca_pem, identity).expect("client tls config");
        reqwest::Client::builder()
            .use_preconfigured_tls((*tls).clone())
            .timeout(Duration::from_secs(10))
            .build()
            .expect("reqwest client")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if std::thread::panicking() {
            eprintln!("--- orc server log ---\n{}", self.log());
        }
    }
}

pub fn kubectl_with(kubeconfig: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut cmd = Command::new("kubectl");
    cmd.args(args)
        .env("KUBECONFIG", kubeconfig)
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("kubectl is installed");
    if let Some(input) = stdin {
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    child.wait_with_output().expect("kubectl output")
}

/// Polls `cond` until it holds, failing the test after [`DEADLINE`].
pub fn wait_for(what: &str, cond: impl FnMut() -> bool) {
    wait_until(DEADLINE, what, cond);
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// A ReplicationController of two pods labelled `app=web` in `default` (the pods need
/// not run: the tests that use it count pod objects, e.g. to see the controllers heal).
pub const WEB_RC: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata: {name: web, namespace: default}
spec:
  replicas: 2
  selector: {app: web}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers: [{name: c, image: busybox}]
"#;
