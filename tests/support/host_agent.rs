//! A real `orc agent` joined to a test [`Server`], in the host's own network namespace
//! and without containerd: what gives a test a real node and its credential. It keeps
//! out of the host: no service proxy, no ingress ports, no NetworkPolicy table, no pod
//! network (no runtime, so no bridge or routes).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use super::server::{kubectl_with, Server, DEADLINE, ORC};
use super::wait::wait_until;

/// Flags for an agent (or a server's embedded agent) run in the host's own network
/// namespace without containerd: no service proxy, no ingress proxy on ports 80/443, and
/// no NetworkPolicy table — `--disable-network-policy` removes the named table, so it
/// names a private one that does not exist, never the host's `orc-netpol`.
pub const HOST_NETNS_AGENT_ARGS: [&str; 5] = [
    "--disable-proxy",
    "--disable-ingress",
    "--disable-network-policy",
    "--network-policy-nft-table",
    "orc-test-absent",
];

/// The containerd socket these agents are given: a file that does not exist.
pub const NO_CONTAINERD: &str = "no-containerd.sock";

/// The server's join token.
pub fn join_token(s: &Server) -> String {
    std::fs::read_to_string(s.data_dir().join("server/token"))
        .unwrap()
        .trim()
        .to_string()
}

/// A running `orc agent` (killed on drop; its log is printed when the test fails).
pub struct HostAgent {
    child: Option<Child>,
    pub data_dir: PathBuf,
    log: PathBuf,
}

impl HostAgent {
    /// `orc agent --join` to `s` as `node`, with `data_dir` (made if missing); each start
    /// logs to a file of its own in `data_dir`.
    pub fn start(s: &Server, token: &str, data_dir: &Path, node: &str) -> HostAgent {
        std::fs::create_dir_all(data_dir).unwrap();
        let log = data_dir.join(format!("agent-{}.log", super::server::free_port()));
        let child = Command::new(ORC)
            .args(["agent", "--join", &s.url(), "--token", token])
            .args(["--node-name", node])
            .args(HOST_NETNS_AGENT_ARGS)
            .arg("--data-dir")
            .arg(data_dir)
            .arg("--containerd-socket")
            .arg(data_dir.join(NO_CONTAINERD))
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .expect("spawn orc agent");
        HostAgent {
            child: Some(child),
            data_dir: data_dir.to_owned(),
            log,
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// A file of the agent's own directory (`<data-dir>/agent/NAME`), empty if missing.
    pub fn agent_file(&self, name: &str) -> String {
        std::fs::read_to_string(self.data_dir.join("agent").join(name)).unwrap_or_default()
    }

    pub fn kubeconfig(&self) -> PathBuf {
        self.data_dir.join("agent/kubelet.kubeconfig")
    }

    /// kubectl with the node's own credential.
    pub fn kubectl(&self, args: &[&str]) -> Output {
        kubectl_with(&self.kubeconfig(), args, None)
    }

    /// Waits (bounded) for the agent to exit by itself; returns whether it succeeded.
    pub fn wait_exit(&mut self) -> bool {
        let child = self.child.as_mut().expect("the agent runs");
        wait_until(DEADLINE, "the agent to exit by itself", || {
            child.try_wait().unwrap()
        })
        .success()
    }

    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for HostAgent {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "--- orc agent log ({}) ---\n{}",
                self.log.display(),
                self.log()
            );
        }
    }
}
