//! Host set-up for the root tests and the pod benchmark, which run a real containerd in
//! network namespaces of their own: tool checks, netns commands, cgroup clean-up.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A path inside the repository.
pub fn repo_path(rel: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A published manifest, `tests/data/manifests/<name>.yaml.gz` (sources in its README),
/// decompressed.
pub fn published_manifest(name: &str) -> String {
    use std::io::Read;
    let src = repo_path(&format!("tests/data/manifests/{name}.yaml.gz"));
    let mut yaml = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open(&src).expect("open manifest"))
        .read_to_string(&mut yaml)
        .expect("gunzip manifest");
    yaml
}

/// Fails loudly, naming the fix, unless running as root with containerd, runc, ctr,
/// nsenter, ip and kubectl installed. `who` names the test or benchmark.
pub fn require_root_and_tools(who: &str) {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let euid = status
        .lines()
        .find_map(|l| l.strip_prefix("Uid:"))
        .and_then(|ids| ids.split_whitespace().nth(1))
        .unwrap_or("");
    assert_eq!(
        euid, "0",
        "{who} needs root (containerd, network namespaces): run it as root"
    );
    for tool in ["containerd", "runc", "ctr", "nsenter", "ip", "kubectl"] {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "{who} needs {tool}: run scripts/install-deps.sh (kubectl: install v1.32)"
        );
    }
}

pub fn run(cmd: &mut Command) -> Output {
    cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"))
}

/// A TCP port on 127.0.0.1 that was free a moment ago.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind an ephemeral port")
        .local_addr()
        .expect("local addr")
        .port()
}

/// Removes the cgroups of pod `uid` (and of its containers) in every hierarchy (cgroup v1
/// controllers and the v2 unified root).
pub fn remove_pod_cgroups(uid: &str) {
    for hierarchy in std::fs::read_dir("/sys/fs/cgroup")
        .into_iter()
        .flatten()
        .flatten()
        .map(|h| h.path())
        .chain([PathBuf::from("/sys/fs/cgroup")])
    {
        let pod = hierarchy.join("orc").join(format!("pod{uid}"));
        for c in std::fs::read_dir(&pod).into_iter().flatten().flatten() {
            if c.path().is_dir() {
                let _ = std::fs::remove_dir(c.path());
            }
        }
        let _ = std::fs::remove_dir(&pod);
    }
}

/// `PROGRAM` in network namespace `netns` (a name in /var/run/netns), through `nsenter`,
/// not `ip netns exec`, which remounts /sys so that runc finds no cgroups.
pub fn in_netns(netns: &str, program: impl AsRef<std::ffi::OsStr>) -> Command {
    let mut cmd = Command::new("nsenter");
    cmd.arg(format!("--net=/var/run/netns/{netns}"))
        .arg(program);
    cmd
}

/// Runs `kubectl` (set up with its arguments for `apply -f -`) with `yaml` on stdin;
/// panics with kubectl's error unless it succeeds.
pub fn kubectl_apply(mut kubectl: Command, yaml: &str) {
    use std::io::Write;
    use std::process::Stdio;
    let mut child = kubectl
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn kubectl");
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(yaml.as_bytes())
        .expect("write to kubectl");
    let out = child.wait_with_output().expect("wait for kubectl");
    assert!(
        out.status.success(),
        "kubectl apply: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread of its own inside the network namespace at `ns` (sockets it
/// opens stay there) and returns what `f` returned.
pub fn on_netns_thread<T: Send + 'static>(ns: &Path, f: impl FnOnce() -> T + Send + 'static) -> T {
    orc::agent::net::spawn_in_netns(Some(ns.to_path_buf()), move || Ok(f()))
        .expect("spawn a thread")
        .join()
        .expect("the thread in the network namespace panicked")
        .expect("enter the network namespace")
}
