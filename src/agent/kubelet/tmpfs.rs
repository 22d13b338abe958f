//! Memory-backed volume directories: Secret volumes live on a tmpfs of their own (as
//! upstream's kubelet mounts them), so their contents never reach the node's disk, and
//! so do emptyDir `medium: Memory` volumes (sized); the mounts below a pod directory are
//! undone when the pod is torn down.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// Most bytes a Secret volume's tmpfs holds: a Secret is at most 1 MiB, and tmpfs
/// takes memory only for what it holds.
pub const SECRET_VOLUME_SIZE: u64 = 4 * 1024 * 1024;
/// Mode of the volume's root: readable by the container's user, whoever it is; the
/// files carry their own modes (the volume's defaultMode or items' modes).
const ROOT_MODE: u32 = 0o755;

#[derive(Debug, thiserror::Error)]
pub enum TmpfsError {
    #[error("create volume directory {path}")]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("mount a tmpfs at {path}: is the agent running as root?")]
    Mount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
    #[error("unmount {path}")]
    Unmount {
        path: PathBuf,
        #[source]
        source: nix::Error,
    },
}

pub type Result<T, E = TmpfsError> = std::result::Result<T, E>;

/// Makes `dir` a tmpfs of at most `size` bytes (nosuid, nodev, noexec), unless it is a
/// mount point already (a volume set up before, or by a previous agent: it is kept).
pub fn ensure_tmpfs(dir: &Path, size: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| TmpfsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let flags = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    let options = format!("mode={ROOT_MODE:o},size={size}");
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        flags,
        Some(options.as_str()),
    )
    .map_err(|source| TmpfsError::Mount {
        path: dir.to_path_buf(),
        source,
    })
}

/// Makes `dir` the tmpfs of an emptyDir `medium: Memory` volume of at most `size`
/// bytes, mounted as upstream mounts it (only the `size=` option: the root is 1777,
/// programs may run from it), unless it is a mount point already.
pub fn ensure_memory_volume(dir: &Path, size: u64) -> Result<()> {
    std::fs::create_dir_all(dir).map_err(|source| TmpfsError::CreateDir {
        path: dir.to_path_buf(),
        source,
    })?;
    if is_mount_point(dir) {
        return Ok(());
    }
    let options = format!("size={size}");
    mount(
        Some("tmpfs"),
        dir,
        Some("tmpfs"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| TmpfsError::Mount {
        path: dir.to_path_buf(),
        source,
    })
}

/// Whether `dir` is the root of a mount (it sits on another device than its parent).
pub fn is_mount_point(dir: &Path) -> bool {
    let (Ok(own), Some(Ok(parent))) = (std::fs::metadata(dir), dir.parent().map(std::fs::metadata))
    else {
        return false;
    };
    own.dev() != parent.dev()
}

/// Unmounts every mount below `dir` (deepest first), as `mountinfo` (the contents of
/// `/proc/self/mountinfo`) lists them. The first failure is returned after trying all.
pub fn unmount_below(dir: &Path, mountinfo: &str) -> Result<()> {
    let mut points = mounts_below(dir, mountinfo);
    points.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    let mut first_error = None;
    for point in points {
        if let Err(source) = umount2(&point, MntFlags::MNT_DETACH) {
            first_error.get_or_insert(TmpfsError::Unmount {
                path: point,
                source,
            });
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The mount points strictly below `dir` in `mountinfo`.
fn mounts_below(dir: &Path, mountinfo: &str) -> Vec<PathBuf> {
    mountinfo
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(|point| PathBuf::from(unescape(point)))
        .filter(|point| point.starts_with(dir) && point != dir)
        .collect()
}

/// A mountinfo path: spaces, tabs, newlines and backslashes are written as `\ooo`.
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| bytes[i] == b'\\' && d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match octal {
            Some(d) => {
                out.push((d[0] - b'0') * 64 + (d[1] - b'0') * 8 + (d[2] - b'0'));
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "\
22 1 8:1 / / rw,relatime shared:1 - ext4 /dev/sda1 rw
90 22 0:50 / /var/lib/orc/agent/pods/u1/volumes/secret/tok rw,nosuid - tmpfs tmpfs rw,size=4096k
91 22 0:51 / /var/lib/orc/agent/pods/u1/volumes/secret/with\\040space rw - tmpfs tmpfs rw
92 22 0:52 / /var/lib/orc/agent/pods/u10/volumes/secret/tok rw - tmpfs tmpfs rw
93 22 0:53 / /var/lib/orc/agent/pods/u1 rw - tmpfs tmpfs rw
";

    #[test]
    fn only_mounts_strictly_below_the_pod_directory_count() {
        let below = mounts_below(Path::new("/var/lib/orc/agent/pods/u1"), MOUNTINFO);
        assert_eq!(
            below,
            [
                PathBuf::from("/var/lib/orc/agent/pods/u1/volumes/secret/tok"),
                PathBuf::from("/var/lib/orc/agent/pods/u1/volumes/secret/with space"),
            ]
        );
    }

    #[test]
    fn escaped_mountinfo_paths_are_read_back() {
        assert_eq!(unescape("a\\040b\\011c\\134d"), "a b\tc\\d");
        assert_eq!(unescape("trailing\\04"), "trailing\\04");
    }

    #[test]
    fn a_plain_directory_is_no_mount_point() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("v");
        std::fs::create_dir(&sub).unwrap();
        assert!(!is_mount_point(&sub));
    }
}
