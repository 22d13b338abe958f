//! What the host lets a privileged container have: the agent's own capabilities
//! (containerd's `cap.Current()`), and the host's device nodes (containerd's
//! `WithHostDevices` over runc's `devices.HostDevices`): every character and block
//! device below `/dev`, except the directories a container has of its own (`pts`,
//! `shm`, `mqueue`, …) and the console.

use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::Path;

use crate::agent::runtime::DeviceNode;

/// Directories below `/dev` left out (runc's `GetDevices`).
const SKIPPED_DIRS: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// The agent's effective capabilities as a mask (`CapEff` of `/proc/self/status`).
pub fn current_capabilities() -> std::io::Result<u64> {
    let status = std::fs::read_to_string("/proc/self/status")?;
    effective_mask(&status).ok_or_else(|| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            "no CapEff line in /proc/self/status",
        )
    })
}

/// The `CapEff` mask of a `/proc/PID/status` text.
fn effective_mask(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
}

/// The device nodes below `dir` (symbolic links, FIFOs, sockets and files that vanish
/// while they are read are left out), each at its host path.
pub fn host_devices(dir: &Path) -> std::io::Result<Vec<DeviceNode>> {
    let mut out = Vec::new();
    collect(dir, &mut out)?;
    out.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(out)
}

fn collect(dir: &Path, out: &mut Vec<DeviceNode>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let path = entry.path();
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let kind = meta.file_type();
        if kind.is_dir() {
            if !SKIPPED_DIRS.iter().any(|s| name == *s) {
                collect(&path, out)?;
            }
            continue;
        }
        if name == "console" || !(kind.is_char_device() || kind.is_block_device()) {
            continue;
        }
        let rdev = meta.rdev();
        out.push(DeviceNode {
            path: path.to_string_lossy().into_owned(),
            char_device: kind.is_char_device(),
            major: i64::from(libc::major(rdev)),
            minor: i64::from(libc::minor(rdev)),
            file_mode: meta.permissions().mode() & 0o7777,
            uid: meta.uid(),
            gid: meta.gid(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hosts_devices_are_found_without_pts_and_the_console() {
        let devices = host_devices(Path::new("/dev")).unwrap();
        let null = devices
            .iter()
            .find(|d| d.path == "/dev/null")
            .expect("/dev/null is a device");
        assert!(null.char_device);
        assert_eq!((null.major, null.minor), (1, 3));
        assert!(!devices.iter().any(|d| d.path.starts_with("/dev/pts/")));
        assert!(!devices.iter().any(|d| d.path == "/dev/console"));
    }

    #[test]
    fn the_effective_mask_is_read_from_the_status() {
        let status = "Name:\tcat\nCapInh:\t0000000000000000\nCapPrm:\t000001fffeffffff\n\
                      CapEff:\t000001fffeffffff\nCapBnd:\t000001fffeffffff\n";
        assert_eq!(effective_mask(status), Some(0x1fffeffffff));
        assert_eq!(effective_mask("Name:\tcat\n"), None);
        assert!(current_capabilities().is_ok());
    }

    #[test]
    fn files_and_links_are_not_devices() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("file"), "x").unwrap();
        std::os::unix::fs::symlink("/dev/null", dir.path().join("link")).unwrap();
        std::fs::create_dir(dir.path().join("pts")).unwrap();
        assert!(host_devices(dir.path()).unwrap().is_empty());
    }
}
