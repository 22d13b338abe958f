//! `scripts/uninstall.sh` removes what a running orc left on the machine: an installed
//! `orc server` (with its embedded agent) runs in a network namespace of the test's own,
//! builds its proxy table there, then the script runs in that namespace and must stop
//! the server and leave no table, link, route, binary or data dir behind. And
//! `orc server --disable-agent` makes none of them in the first place.
//!
//! Needs root, nft, ip and nsenter (scripts/install-deps.sh). Nothing touches the
//! host's network: the script runs in the test's namespace, and it only stops processes
//! of the binary copy the test installed.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod support;
use support::host::{free_port, in_netns, repo_path, require_root_and_tools, run};
use support::wait::{assert_stays_for_every, wait_until_every};

/// How often a condition on the machine is checked (each check runs a few commands).
const POLL_EVERY: Duration = Duration::from_millis(100);

const ORC: &str = env!("CARGO_BIN_EXE_orc");
const DEADLINE: Duration = Duration::from_secs(30);
/// How long a server without an agent is watched for network changes it must not make.
const NOTHING_MADE_WINDOW: Duration = Duration::from_secs(2);

struct Machine {
    dir: PathBuf,
    netns: String,
    server: Option<Child>,
}

impl Machine {
    fn new() -> Machine {
        require_root_and_tools("tests/uninstall.rs");
        let tag = format!("{:06x}", rand::random::<u32>() & 0xff_ffff);
        let machine = Machine {
            dir: PathBuf::from(format!("/run/orc-uninstall-test-{tag}")),
            netns: format!("orc-un-{tag}"),
            server: None,
        };
        std::fs::create_dir_all(machine.dir.join("bin")).unwrap();
        std::fs::copy(ORC, machine.bin()).expect("install the orc binary copy");
        let added = run(Command::new("ip").args(["netns", "add", &machine.netns]));
        assert!(added.status.success(), "ip netns add: {added:?}");
        machine.ns(&["ip", "link", "set", "lo", "up"]);
        machine
    }

    fn bin(&self) -> PathBuf {
        self.dir.join("bin/orc")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn config_dir(&self) -> PathBuf {
        self.dir.join("etc")
    }

    /// Runs a command in the machine's network namespace; its stdout.
    fn ns(&self, args: &[&str]) -> String {
        let out = run(in_netns(&self.netns, args[0]).args(&args[1..]));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn wait_for(&self, what: &str, done: impl FnMut() -> bool) {
        wait_until_every(DEADLINE, POLL_EVERY, what, done);
    }
}

impl Drop for Machine {
    fn drop(&mut self) {
        if let Some(mut server) = self.server.take() {
            let _ = server.kill();
            let _ = server.wait();
        }
        let _ = Command::new("ip")
            .args(["netns", "delete", &self.netns])
            .output();
        let _ = Command::new("umount")
            .args(["-R", "-l"])
            .arg(&self.dir)
            .stderr(Stdio::null())
            .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn exists(path: &Path) -> bool {
    path.symlink_metadata().is_ok()
}

#[test]
fn uninstall_stops_orc_and_removes_its_tables_links_and_files() {
    let mut m = Machine::new();
    std::fs::create_dir_all(m.config_dir()).unwrap();
    std::fs::write(m.config_dir().join("config.yaml"), "node-name: un-node\n").unwrap();
    let port = free_port().to_string();
    let server = in_netns(&m.netns, m.bin())
        .arg("server")
        .arg("--data-dir")
        .arg(m.data_dir())
        .args(["--bind-address", "127.0.0.1", "--https-port", &port])
        .arg("--write-kubeconfig")
        .arg(m.dir.join("kubeconfig"))
        .args(["--node-name", "un-node"])
        .arg("--containerd-socket")
        .arg(m.dir.join("no-containerd.sock"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn orc server");
    let pid = server.id();
    m.server = Some(server);
    m.wait_for("the proxy table and the cluster DNS address", || {
        m.ns(&["nft", "list", "tables"]).contains("orc-proxy")
            && m.ns(&["ip", "-o", "addr"]).contains("10.43.0.10/32")
    });
    // A host-gw route as the agent makes them, and a bind mount like a pod's netns.
    m.ns(&["ip", "link", "add", "orc0", "type", "bridge"]);
    m.ns(&["ip", "addr", "add", "10.199.0.1/24", "dev", "orc0"]);
    m.ns(&["ip", "link", "set", "orc0", "up"]);
    m.ns(&[
        "ip",
        "route",
        "add",
        "10.199.7.0/24",
        "via",
        "10.199.0.9",
        "proto",
        "79",
    ]);
    let mount = m.data_dir().join("agent/netns/some-pod");
    std::fs::create_dir_all(&mount).unwrap();
    let bound = run(Command::new("mount").arg("--bind").arg(&mount).arg(&mount));
    assert!(bound.status.success(), "bind mount: {bound:?}");

    let out = run(in_netns(&m.netns, repo_path("scripts/uninstall.sh"))
        .env("ORC_BIN", m.bin())
        .env("ORC_DATA_DIR", m.data_dir())
        .env("ORC_CONFIG_DIR", m.config_dir())
        .env("ORC_CONTAINERD_SOCKET", m.dir.join("no-containerd.sock")));
    assert!(
        out.status.success(),
        "uninstall.sh: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let mut server = m.server.take().unwrap();
    m.wait_for("the server to stop", || {
        server.try_wait().is_ok_and(|s| s.is_some())
    });
    assert!(!exists(Path::new(&format!("/proc/{pid}/exe"))));
    assert!(!m.ns(&["nft", "list", "tables"]).contains("orc"));
    assert!(!m.ns(&["ip", "-o", "link"]).contains("orc0"));
    assert!(!m.ns(&["ip", "-o", "link"]).contains("orc-dns"));
    assert!(!m.ns(&["ip", "-o", "addr"]).contains("10.43.0.10"));
    assert_eq!(m.ns(&["ip", "route", "show", "proto", "79"]).trim(), "");
    for gone in [m.data_dir(), m.config_dir(), m.bin()] {
        assert!(!exists(&gone), "{} is left", gone.display());
    }
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap();
    assert!(!mounts.contains(m.dir.to_str().unwrap()), "mount left");

    // Nothing left to do the second time.
    let again = run(in_netns(&m.netns, repo_path("scripts/uninstall.sh"))
        .env("ORC_BIN", m.bin())
        .env("ORC_DATA_DIR", m.data_dir())
        .env("ORC_CONFIG_DIR", m.config_dir())
        .env("ORC_CONTAINERD_SOCKET", m.dir.join("no-containerd.sock")));
    assert!(again.status.success(), "second run: {again:?}");
}

#[test]
fn server_without_agent_leaves_the_network_alone() {
    let mut m = Machine::new();
    let port = free_port().to_string();
    let kubeconfig = m.dir.join("kubeconfig");
    let server = in_netns(&m.netns, m.bin())
        .arg("server")
        .arg("--disable-agent")
        .arg("--data-dir")
        .arg(m.data_dir())
        .args(["--bind-address", "127.0.0.1", "--https-port", &port])
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn orc server");
    m.server = Some(server);
    // Ready: kube-dns (holding the cluster DNS address) is there, so is everything the
    // server makes at start.
    m.wait_for("the kube-dns Service", || {
        kubeconfig.exists()
            && run(in_netns(&m.netns, "kubectl")
                .args(["get", "service", "-n", "kube-system", "kube-dns"])
                .env("KUBECONFIG", &kubeconfig))
            .status
            .success()
    });
    // What the embedded agent would make (its proxy table, the bridge and dummy links,
    // the cluster DNS address) must not appear while the server runs.
    assert_stays_for_every(
        NOTHING_MADE_WINDOW,
        POLL_EVERY,
        "the namespace to have no nft table, no link but lo and no cluster DNS address",
        || {
            let tables = m.ns(&["nft", "list", "tables"]);
            let links = m.ns(&["ip", "-o", "link"]);
            let addrs = m.ns(&["ip", "-o", "addr"]);
            let untouched = tables.trim().is_empty()
                && links.lines().count() == 1
                && !addrs.contains("10.43.0.10");
            untouched
                .then_some(())
                .ok_or(format!("tables: {tables} links: {links} addrs: {addrs}"))
        },
    );
}
