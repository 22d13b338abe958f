//! `orc check`: preflight checks of the host, each failure with the fix.

use std::path::{Path, PathBuf};

/// One preflight finding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub what: String,
    pub ok: bool,
    /// Whether orc cannot run pods without it.
    pub required: bool,
    /// What to do when it fails.
    pub fix: String,
}

impl Finding {
    fn new(what: &str, ok: bool, required: bool, fix: &str) -> Finding {
        Finding {
            what: what.to_string(),
            ok,
            required,
            fix: fix.to_string(),
        }
    }
}

#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// containerd socket the agent will use.
    #[arg(
        long,
        env = "ORC_CONTAINERD_SOCKET",
        default_value = "/run/containerd/containerd.sock"
    )]
    pub containerd_socket: PathBuf,
    /// HTTPS port the server will listen on.
    #[arg(long, env = "ORC_HTTPS_PORT", default_value_t = 6443)]
    pub https_port: u16,
}

/// What the checks read from the host (gathered once; pure checks below).
#[derive(Debug, Clone, Default)]
pub struct HostFacts {
    pub executables: Vec<(String, bool)>,
    pub containerd_socket: Option<PathBuf>,
    pub containerd_socket_present: bool,
    /// Contents of /sys/fs/cgroup/cgroup.controllers (cgroup v2), if any.
    pub cgroup_v2_controllers: Option<String>,
    /// Contents of /proc/cgroups (cgroup v1), if any.
    pub proc_cgroups: Option<String>,
    pub ip_forward: Option<String>,
    pub port_free: bool,
    pub https_port: u16,
}

fn executable_on_path(name: &str) -> bool {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .any(|dir| is_executable(&dir.join(name)))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

impl HostFacts {
    pub fn gather(args: &CheckArgs) -> HostFacts {
        HostFacts {
            executables: ["containerd", "runc", "nft"]
                .iter()
                .map(|n| (n.to_string(), executable_on_path(n)))
                .collect(),
            containerd_socket: Some(args.containerd_socket.clone()),
            containerd_socket_present: std::os::unix::net::UnixStream::connect(
                &args.containerd_socket,
            )
            .is_ok(),
            cgroup_v2_controllers: std::fs::read_to_string("/sys/fs/cgroup/cgroup.controllers")
                .ok(),
            proc_cgroups: std::fs::read_to_string("/proc/cgroups").ok(),
            ip_forward: std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").ok(),
            port_free: std::net::TcpListener::bind(("0.0.0.0", args.https_port)).is_ok(),
            https_port: args.https_port,
        }
    }
}

/// Whether the memory cgroup controller is available and enabled.
pub fn memory_cgroup_enabled(facts: &HostFacts) -> bool {
    if let Some(c) = &facts.cgroup_v2_controllers {
        return c.split_whitespace().any(|w| w == "memory");
    }
    facts.proc_cgroups.as_deref().is_some_and(|t| {
        t.lines().any(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.first() == Some(&"memory") && f.get(3) == Some(&"1")
        })
    })
}

/// Runs every check on gathered facts.
pub fn check(facts: &HostFacts) -> Vec<Finding> {
    let mut out = Vec::new();
    for (name, present) in &facts.executables {
        out.push(Finding::new(
            &format!("{name} installed"),
            *present,
            true,
            &format!("install it: sudo apt-get install {}", package_of(name)),
        ));
    }
    if let Some(sock) = &facts.containerd_socket {
        out.push(Finding::new(
            &format!("containerd answering at {}", sock.display()),
            facts.containerd_socket_present,
            true,
            "start it: sudo systemctl enable --now containerd (or pass --containerd-socket)",
        ));
    }
    out.push(Finding::new(
        "memory cgroup enabled",
        memory_cgroup_enabled(facts),
        true,
        "enable it: on Raspberry Pi add `cgroup_memory=1 cgroup_enable=memory` to /boot/firmware/cmdline.txt (or /boot/cmdline.txt) and reboot",
    ));
    out.push(Finding::new(
        "IPv4 forwarding on",
        facts.ip_forward.as_deref().map(str::trim) == Some("1"),
        false,
        "orc turns it on when the agent starts; to persist: echo net.ipv4.ip_forward=1 | sudo tee /etc/sysctl.d/90-orc.conf",
    ));
    out.push(Finding::new(
        &format!("port {} free", facts.https_port),
        facts.port_free,
        false,
        &format!(
            "another process listens on {}: stop it or choose --https-port",
            facts.https_port
        ),
    ));
    out
}

fn package_of(exe: &str) -> &str {
    match exe {
        "nft" => "nftables",
        other => other,
    }
}

pub fn run(args: CheckArgs) -> anyhow::Result<()> {
    let findings = check(&HostFacts::gather(&args));
    let mut failed_required = 0;
    for f in &findings {
        let mark = if f.ok {
            "ok  "
        } else if f.required {
            "FAIL"
        } else {
            "warn"
        };
        if f.ok {
            println!("[{mark}] {}", f.what);
        } else {
            println!("[{mark}] {}: {}", f.what, f.fix);
        }
        if !f.ok && f.required {
            failed_required += 1;
        }
    }
    if failed_required > 0 {
        anyhow::bail!(
            "{failed_required} required check(s) failed; fix them and run `orc check` again"
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn healthy() -> HostFacts {
        HostFacts {
            executables: vec![("containerd".into(), true), ("nft".into(), true)],
            containerd_socket: Some("/run/containerd/containerd.sock".into()),
            containerd_socket_present: true,
            cgroup_v2_controllers: Some("cpuset cpu io memory pids".into()),
            proc_cgroups: None,
            ip_forward: Some("1\n".into()),
            port_free: true,
            https_port: 6443,
        }
    }

    #[test]
    fn a_healthy_host_passes_everything() {
        assert!(check(&healthy()).iter().all(|f| f.ok));
    }

    #[test]
    fn failures_say_how_to_fix_them() {
        let mut facts = healthy();
        facts.executables = vec![("nft".into(), false)];
        facts.containerd_socket_present = false;
        facts.cgroup_v2_controllers = Some("cpuset cpu io pids".into());
        facts.port_free = false;
        let failed: Vec<Finding> = check(&facts).into_iter().filter(|f| !f.ok).collect();
        let text: Vec<String> = failed.iter().map(|f| f.fix.clone()).collect();
        assert!(
            text.iter().any(|t| t.contains("apt-get install nftables")),
            "{text:?}"
        );
        assert!(text
            .iter()
            .any(|t| t.contains("cgroup_memory=1 cgroup_enable=memory")));
        assert!(text
            .iter()
            .any(|t| t.contains("systemctl enable --now containerd")));
        assert!(text.iter().any(|t| t.contains("--https-port")));
    }

    #[test]
    fn memory_cgroup_v1_is_read_from_proc_cgroups() {
        let mut facts = healthy();
        facts.cgroup_v2_controllers = None;
        facts.proc_cgroups =
            Some("#subsys_name\thierarchy\tnum_cgroups\tenabled\nmemory\t0\t1\t0\n".into());
        assert!(!memory_cgroup_enabled(&facts));
        facts.proc_cgroups = Some("memory\t3\t50\t1\n".into());
        assert!(memory_cgroup_enabled(&facts));
    }
}
