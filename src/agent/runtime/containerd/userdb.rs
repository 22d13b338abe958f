//! An image's `/etc/passwd` and `/etc/group`, read from its unpacked layers: a read-only
//! view of the image's top snapshot names the layer directories (a bind mount of one, or
//! an overlay's `lowerdir`s), and each file is looked up through them top layer first as
//! overlayfs would (whiteouts and opaque directories hide what lies below) — containerd's
//! CRI mounts the snapshot to read them; reading the directories needs no mount. Kept per
//! top snapshot: an image's layers never change.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use containerd_client::services::v1::snapshots::ViewSnapshotRequest;
use containerd_client::types::Mount;
use tracing::warn;

use super::{grpc, ContainerdRuntime};
use crate::agent::runtime::users::{parse_group, parse_passwd, UserDb};
use crate::agent::runtime::{Result, RuntimeError};

/// Most images whose users are kept.
const USERS_CACHE_MAX: usize = 256;
/// Symbolic links followed in one lookup (`/etc/passwd` → …).
const MAX_LINKS: usize = 8;

impl ContainerdRuntime {
    /// The users and groups of the image whose top snapshot is `top`.
    pub(super) async fn image_users(&self, top: &str) -> Result<Arc<UserDb>> {
        if let Some(db) = self.lock_users().get(top) {
            return Ok(db.clone());
        }
        // Unique per lookup: two containers of a new image may look at once.
        let key = format!("orc-users-{}", uuid::Uuid::new_v4());
        let req = self.request(
            ViewSnapshotRequest {
                snapshotter: self.config.snapshotter.clone(),
                key: key.clone(),
                parent: top.to_string(),
                labels: Default::default(),
            },
            None,
        );
        let mounts = self
            .client
            .snapshots()
            .view(req)
            .await
            .map_err(grpc("view image snapshot"))?
            .into_inner()
            .mounts;
        let read = layer_dirs(&mounts).map(|dirs| UserDb {
            passwd: read_file(&dirs, "etc/passwd").map(|t| parse_passwd(&t)),
            group: read_file(&dirs, "etc/group").map(|t| parse_group(&t)),
        });
        if let Err(e) = self.remove_snapshot(&key).await {
            warn!(snapshot = %key, error = %e, "removing the view of an image's users failed");
        }
        let db = Arc::new(read.map_err(|reason| RuntimeError::Spec {
            id: top.to_string(),
            reason,
        })?);
        let mut cache = self.lock_users();
        if cache.len() >= USERS_CACHE_MAX {
            cache.clear();
        }
        cache.insert(top.to_string(), db.clone());
        Ok(db)
    }

    fn lock_users(
        &self,
    ) -> std::sync::MutexGuard<'_, std::collections::HashMap<String, Arc<UserDb>>> {
        self.users.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The directories a snapshot's mounts stack, top first.
fn layer_dirs(mounts: &[Mount]) -> std::result::Result<Vec<PathBuf>, String> {
    let [m] = mounts else {
        return Err(format!(
            "the image's snapshot has {} mounts, one expected",
            mounts.len()
        ));
    };
    match m.r#type.as_str() {
        "bind" | "rbind" => Ok(vec![PathBuf::from(&m.source)]),
        "overlay" => {
            let option = |name: &str| {
                m.options
                    .iter()
                    .find_map(|o| o.strip_prefix(name).map(str::to_string))
            };
            let mut dirs: Vec<PathBuf> =
                option("upperdir=").into_iter().map(PathBuf::from).collect();
            dirs.extend(
                option("lowerdir=")
                    .unwrap_or_default()
                    .split(':')
                    .filter(|d| !d.is_empty())
                    .map(PathBuf::from),
            );
            Ok(dirs)
        }
        other => Err(format!(
            "cannot read the image's /etc/passwd from a {other:?} mount"
        )),
    }
}

/// The text of `path` (relative to the root) as the stacked `dirs` show it; `None` when
/// no layer has it (or one above removed it).
fn read_file(dirs: &[PathBuf], path: &str) -> Option<String> {
    let mut path = PathBuf::from(path);
    for _ in 0..MAX_LINKS {
        match lookup(dirs, &path) {
            Found::File(p) => {
                return std::fs::read(&p)
                    .ok()
                    .map(|b| String::from_utf8_lossy(&b).into_owned())
            }
            Found::Link(target) => {
                path = normalize(&path.parent().unwrap_or(Path::new("")).join(target));
            }
            Found::Nothing => return None,
        }
    }
    None
}

/// `path` without `.`, `..` or a leading `/`, relative to the image's root (`..` stops
/// at the root, as in a chroot).
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(part) => out.push(part),
            Component::ParentDir => {
                out.pop();
            }
            Component::RootDir => out.clear(),
            Component::CurDir | Component::Prefix(_) => {}
        }
    }
    out
}

enum Found {
    File(PathBuf),
    Link(PathBuf),
    Nothing,
}

/// The topmost layer's entry for `path`: overlayfs whiteouts (a 0/0 character device)
/// end the search, as does a directory on the way marked opaque.
fn lookup(dirs: &[PathBuf], path: &Path) -> Found {
    for dir in dirs {
        let mut opaque = false;
        let mut hidden = false;
        let mut at = dir.clone();
        for c in path.parent().into_iter().flat_map(Path::components) {
            at.push(c);
            match std::fs::symlink_metadata(&at) {
                Ok(m) if is_whiteout(&m) => hidden = true,
                Ok(m) if m.is_dir() => opaque |= is_opaque(&at),
                _ => {}
            }
            if hidden {
                break;
            }
        }
        if hidden {
            return Found::Nothing;
        }
        let file = dir.join(path);
        match std::fs::symlink_metadata(&file) {
            Ok(m) if is_whiteout(&m) => return Found::Nothing,
            Ok(m) if m.file_type().is_symlink() => {
                return match std::fs::read_link(&file) {
                    Ok(target) => Found::Link(target),
                    Err(_) => Found::Nothing,
                }
            }
            Ok(m) if m.is_file() => return Found::File(file),
            Ok(_) => return Found::Nothing,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(_) => return Found::Nothing,
        }
        if opaque {
            return Found::Nothing;
        }
    }
    Found::Nothing
}

fn is_whiteout(m: &std::fs::Metadata) -> bool {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    m.file_type().is_char_device() && m.rdev() == 0
}

/// Whether overlayfs takes directory `dir` as opaque (`trusted.` or, with `userxattr`,
/// `user.overlay.opaque` set to `y`).
fn is_opaque(dir: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = std::ffi::CString::new(dir.as_os_str().as_bytes()) else {
        return false;
    };
    [c"trusted.overlay.opaque", c"user.overlay.opaque"]
        .iter()
        .any(|name| {
            let mut value = [0u8; 4];
            // SAFETY: `path` and `name` are NUL-terminated and live across the call;
            // `value` is a writable buffer of the length passed.
            let n = unsafe {
                libc::lgetxattr(
                    path.as_ptr(),
                    name.as_ptr(),
                    value.as_mut_ptr().cast(),
                    value.len(),
                )
            };
            n == 1 && value[0] == b'y'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(dir: &Path, path: &str, text: &str) {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }

    fn whiteout(dir: &Path, path: &str) {
        let p = dir.join(path);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        nix::sys::stat::mknod(
            &p,
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::from_bits_truncate(0o600),
            0,
        )
        .unwrap();
    }

    fn mount(typ: &str, source: &str, options: &[String]) -> Mount {
        Mount {
            r#type: typ.into(),
            source: source.into(),
            target: String::new(),
            options: options.to_vec(),
        }
    }

    #[test]
    fn mounts_name_their_layers_top_first() {
        let bind = layer_dirs(&[mount("bind", "/l/1/fs", &["ro".into(), "rbind".into()])]);
        assert_eq!(bind.unwrap(), [PathBuf::from("/l/1/fs")]);
        let overlay = layer_dirs(&[mount(
            "overlay",
            "overlay",
            &[
                "index=off".into(),
                "lowerdir=/l/3/fs:/l/2/fs:/l/1/fs".into(),
            ],
        )]);
        assert_eq!(
            overlay.unwrap(),
            ["/l/3/fs", "/l/2/fs", "/l/1/fs"].map(PathBuf::from)
        );
        assert!(layer_dirs(&[]).is_err());
        assert!(layer_dirs(&[mount("zfs", "pool/x", &[])]).is_err());
    }

    #[test]
    fn files_are_read_through_the_layers_as_overlayfs_shows_them() {
        let tmp = tempfile::tempdir().unwrap();
        let (top, mid, base) = (
            tmp.path().join("3"),
            tmp.path().join("2"),
            tmp.path().join("1"),
        );
        write(&base, "etc/passwd", "root:x:0:0::/:/bin/sh\n");
        write(&base, "etc/group", "root:x:0:\n");
        write(
            &mid,
            "etc/passwd",
            "root:x:0:0::/:/bin/sh\nnode:x:1000:1000::/:/bin/sh\n",
        );
        std::fs::create_dir_all(&top).unwrap();
        let dirs = [top.clone(), mid.clone(), base.clone()];
        assert!(
            read_file(&dirs, "etc/passwd").unwrap().contains("node"),
            "upper layer wins"
        );
        assert_eq!(
            read_file(&dirs, "etc/group").unwrap(),
            "root:x:0:\n",
            "found below"
        );
        assert_eq!(read_file(&dirs, "etc/shadow"), None);
        // A whiteout in the top layer hides the file below.
        whiteout(&top, "etc/group");
        assert_eq!(read_file(&dirs, "etc/group"), None);
        // A link is followed through the layers.
        std::fs::create_dir_all(top.join("etc")).unwrap();
        write(&base, "usr/lib/passwd", "app:x:5:5::/:/bin/sh\n");
        std::fs::remove_file(mid.join("etc/passwd")).unwrap();
        std::os::unix::fs::symlink("../usr/lib/passwd", top.join("etc/passwd")).unwrap();
        assert_eq!(
            read_file(&dirs, "etc/passwd").unwrap(),
            "app:x:5:5::/:/bin/sh\n"
        );
    }
}
