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
    /// Data directory orc will use (checked for living on an SD card).
    #[arg(long, env = "ORC_DATA_DIR", default_value = "/var/lib/orc")]
    pub data_dir: PathBuf,
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
    /// The Raspberry Pi boot command line file present, if any (Bookworm's
    /// /boot/firmware/cmdline.txt, or /boot/cmdline.txt before it).
    pub pi_cmdline: Option<PathBuf>,
    /// The OS's package architecture (`dpkg --print-architecture`: amd64, arm64, armhf).
    pub os_arch: Option<String>,
    /// Contents of /proc/swaps.
    pub proc_swaps: Option<String>,
    /// The data dir (or its nearest existing parent) and the block device holding it
    /// (`mmcblk0p2`), when known.
    pub data_dir: Option<(PathBuf, String)>,
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
            pi_cmdline: ["/boot/firmware/cmdline.txt", "/boot/cmdline.txt"]
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file()),
            os_arch: std::process::Command::new("dpkg")
                .arg("--print-architecture")
                .output()
                .ok()
                .filter(|o| o.status.success())
                .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string()),
            proc_swaps: std::fs::read_to_string("/proc/swaps").ok(),
            data_dir: block_device_of(&args.data_dir),
        }
    }
}

/// The block device (as /sys/dev/block names it: `mmcblk0p2`, `sda1`) holding `path`,
/// or its nearest existing parent.
fn block_device_of(path: &Path) -> Option<(PathBuf, String)> {
    use std::os::unix::fs::MetadataExt;
    let existing = path.ancestors().find(|p| p.exists())?;
    let dev = std::fs::metadata(existing).ok()?.dev();
    let (major, minor) = (nix::sys::stat::major(dev), nix::sys::stat::minor(dev));
    let link = std::fs::read_link(format!("/sys/dev/block/{major}:{minor}")).ok()?;
    let name = link.file_name()?.to_string_lossy().into_owned();
    Some((existing.to_path_buf(), name))
}

/// The size of the swap areas, in MiB (from /proc/swaps).
fn swap_in_use_mib(proc_swaps: &str) -> u64 {
    proc_swaps
        .lines()
        .skip(1)
        .filter_map(|l| l.split_whitespace().nth(2)?.parse::<u64>().ok())
        .sum::<u64>()
        / 1024
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
    let cgroup_fix = match &facts.pi_cmdline {
        Some(file) => format!(
            "add ` cgroup_memory=1 cgroup_enable=memory` to the end of the single line in {} (sudo nano {0}) and reboot",
            file.display()
        ),
        None => "enable it: add `cgroup_memory=1 cgroup_enable=memory` to the kernel command line (on Raspberry Pi: /boot/firmware/cmdline.txt) and reboot".to_string(),
    };
    out.push(Finding::new(
        "memory cgroup enabled",
        memory_cgroup_enabled(facts),
        true,
        &cgroup_fix,
    ));
    if let Some(arch) = &facts.os_arch {
        out.push(Finding::new(
            &format!("64-bit OS ({arch})"),
            !matches!(arch.as_str(), "armhf" | "armel" | "i386"),
            false,
            "orc's Raspberry Pi build is 64-bit (aarch64), and 32-bit containerd runs only 32-bit images: install the 64-bit Raspberry Pi OS (Pi 3, 4, 5)",
        ));
    }
    if let Some(swaps) = &facts.proc_swaps {
        let mib = swap_in_use_mib(swaps);
        out.push(Finding::new(
            &format!("swap off ({mib} MiB configured)"),
            swaps.lines().skip(1).all(|l| l.trim().is_empty()),
            false,
            "containers' memory limits are not enforced on swapped memory and the node slows down under pressure: sudo swapoff -a; on Raspberry Pi OS also sudo systemctl disable --now dphys-swapfile",
        ));
    }
    if let Some((dir, device)) = &facts.data_dir {
        out.push(Finding::new(
            &format!("data dir {} not on an SD card ({device})", dir.display()),
            !device.starts_with("mmcblk"),
            false,
            "the datastore writes wear SD cards out: put --data-dir on a USB SSD (or accept the wear)",
        ));
    }
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
            pi_cmdline: None,
            os_arch: Some("arm64".into()),
            proc_swaps: Some("Filename\tType\tSize\tUsed\tPriority\n".into()),
            data_dir: Some(("/var/lib".into(), "nvme0n1p1".into())),
        }
    }

    #[test]
    fn raspberry_pi_findings_name_the_exact_fix() {
        let mut facts = healthy();
        facts.cgroup_v2_controllers = Some("cpuset cpu io pids".into());
        facts.pi_cmdline = Some("/boot/firmware/cmdline.txt".into());
        facts.os_arch = Some("armhf".into());
        facts.proc_swaps =
            Some("Filename\tType\tSize\tUsed\tPriority\n/var/swap file 102396 0 -2\n".into());
        facts.data_dir = Some(("/var/lib".into(), "mmcblk0p2".into()));
        let findings = check(&facts);
        let failed: Vec<&Finding> = findings.iter().filter(|f| !f.ok).collect();
        let find = |what: &str| {
            failed
                .iter()
                .find(|f| f.what.starts_with(what))
                .unwrap_or_else(|| panic!("no failed {what}: {failed:#?}"))
        };
        assert_eq!(
            find("memory cgroup").fix,
            "add ` cgroup_memory=1 cgroup_enable=memory` to the end of the single line in /boot/firmware/cmdline.txt (sudo nano /boot/firmware/cmdline.txt) and reboot"
        );
        assert!(find("64-bit OS (armhf)")
            .fix
            .contains("64-bit Raspberry Pi OS"));
        assert_eq!(find("swap off").what, "swap off (99 MiB configured)");
        assert!(find("data dir /var/lib not on an SD card (mmcblk0p2)")
            .fix
            .contains("USB SSD"));
        assert_eq!(failed.len(), 4, "{failed:#?}");
        assert!(
            failed.iter().filter(|f| f.required).count() == 1,
            "only the cgroup is required"
        );
    }

    #[test]
    fn the_data_dir_device_is_found_for_a_missing_dir_through_its_parent() {
        // Overlay and tmpfs roots have no block device: then there is nothing to say.
        if let Some((dir, device)) = block_device_of(Path::new("/tmp/no/such/orc/dir")) {
            assert!(Path::new("/tmp").starts_with(&dir), "{}", dir.display());
            assert!(!device.is_empty());
        }
        assert_eq!(block_device_of(Path::new("relative/missing")), None);
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
