//! A private etcd cluster (1 or 3 members, Debian's `etcd` binary) on free loopback
//! ports in a temp dir, killed on drop. Members can be stopped and started again.

use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

use super::host::free_port;
use super::wait::wait_until;

/// Longest a member may take to become healthy.
const HEALTHY_WITHIN: Duration = Duration::from_secs(30);

pub struct Member {
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    child: Option<Child>,
}

impl Member {
    pub fn client_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer_port)
    }

    pub fn running(&self) -> bool {
        self.child.is_some()
    }
}

pub struct EtcdCluster {
    pub dir: tempfile::TempDir,
    pub members: Vec<Member>,
    token: String,
}

impl EtcdCluster {
    /// Starts `n` members and waits until every one is healthy.
    pub fn start(n: usize) -> EtcdCluster {
        let dir = tempfile::tempdir().expect("tempdir for etcd");
        let members = (0..n)
            .map(|i| Member {
                name: format!("m{i}"),
                client_port: free_port(),
                peer_port: free_port(),
                child: None,
            })
            .collect();
        let mut cluster = EtcdCluster {
            token: format!("orc-test-{}", dir.path().display()).replace('/', "-"),
            dir,
            members,
        };
        for i in 0..n {
            cluster.spawn(i, "new");
        }
        for i in 0..n {
            cluster.wait_healthy(i);
        }
        cluster
    }

    fn spawn(&mut self, i: usize, state: &str) {
        let initial: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("{}={}", m.name, m.peer_url()))
            .collect();
        let member = &self.members[i];
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path(i))
            .expect("open etcd log");
        let child = Command::new("etcd")
            .arg("--name")
            .arg(&member.name)
            .arg("--data-dir")
            .arg(self.dir.path().join(&member.name))
            .arg("--listen-client-urls")
            .arg(member.client_url())
            .arg("--advertise-client-urls")
            .arg(member.client_url())
            .arg("--listen-peer-urls")
            .arg(member.peer_url())
            .arg("--initial-advertise-peer-urls")
            .arg(member.peer_url())
            .arg("--initial-cluster")
            .arg(initial.join(","))
            .arg("--initial-cluster-token")
            .arg(&self.token)
            .arg("--initial-cluster-state")
            .arg(state)
            .arg("--logger=zap")
            .arg("--log-outputs=stderr")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd (install Debian's etcd-server: scripts/install-deps.sh)");
        self.members[i].child = Some(child);
    }

    fn log_path(&self, i: usize) -> PathBuf {
        self.dir
            .path()
            .join(format!("{}.log", self.members[i].name))
    }

    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.log_path(i)).unwrap_or_default()
    }

    fn wait_healthy(&mut self, i: usize) {
        let url = self.members[i].client_url();
        wait_until(
            HEALTHY_WITHIN,
            &format!("etcd member {url} healthy"),
            || {
                if let Some(status) = self.members[i]
                    .child
                    .as_mut()
                    .and_then(|c| c.try_wait().ok().flatten())
                {
                    panic!("etcd member {url} exited ({status}):\n{}", self.log(i));
                }
                let out = etcdctl(&url, &["endpoint", "health"]);
                out.status.success()
            },
        );
    }

    /// `etcd://H:P,H:P,…` for `--datastore-endpoint`.
    pub fn endpoint(&self) -> String {
        let hosts: Vec<String> = self
            .members
            .iter()
            .map(|m| format!("127.0.0.1:{}", m.client_port))
            .collect();
        format!("etcd://{}", hosts.join(","))
    }

    /// Every member's client URL, comma-separated (for etcdctl).
    pub fn client_urls(&self) -> String {
        let urls: Vec<String> = self.members.iter().map(Member::client_url).collect();
        urls.join(",")
    }

    /// Kills member `i` (SIGKILL).
    pub fn stop(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Starts stopped member `i` again on its data dir and waits until it is healthy.
    pub fn restart(&mut self, i: usize) {
        self.spawn(i, "existing");
        self.wait_healthy(i);
    }

    /// `etcdctl` against the running members.
    pub fn etcdctl(&self, args: &[&str]) -> Output {
        let urls: Vec<String> = self
            .members
            .iter()
            .filter(|m| m.running())
            .map(Member::client_url)
            .collect();
        etcdctl(&urls.join(","), args)
    }
}

/// `etcdctl --endpoints URLS ARGS` (v3 API), bounded by its own command timeout.
pub fn etcdctl(urls: &str, args: &[&str]) -> Output {
    Command::new("etcdctl")
        .env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(urls)
        .arg("--command-timeout=5s")
        .arg("--dial-timeout=2s")
        .args(args)
        .output()
        .expect("run etcdctl (install Debian's etcd-client: scripts/install-deps.sh)")
}

impl Drop for EtcdCluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.stop(i);
        }
    }
}
