//! A pod's IPC and UTS namespaces, shared by its containers and outliving each of them:
//! unshared on a short-lived thread (which also sets the pod's hostname) and bind-mounted
//! onto files in `<agent>/podns/`, as the pod's network namespace is.

use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};

use crate::agent::net::{is_netns, netns::make_shared_mount_point};

/// The files holding a pod's IPC and UTS namespaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodNamespaceFiles {
    pub ipc: PathBuf,
    pub uts: PathBuf,
}

impl PodNamespaceFiles {
    pub fn new(dir: &Path, uid: &str) -> Self {
        PodNamespaceFiles {
            ipc: dir.join(format!("{uid}-ipc")),
            uts: dir.join(format!("{uid}-uts")),
        }
    }

    /// Both namespaces exist (made by an earlier agent, for instance).
    pub fn exist(&self) -> bool {
        is_netns(&self.ipc) && is_netns(&self.uts)
    }

    /// Creates both namespaces, the UTS one with `hostname` set. Idempotent.
    pub fn create(&self, hostname: &str) -> io::Result<()> {
        if self.exist() {
            return Ok(());
        }
        self.delete()?;
        let dir = self.ipc.parent().ok_or(io::ErrorKind::InvalidInput)?;
        std::fs::create_dir_all(dir)?;
        make_shared_mount_point(dir)?;
        for f in [&self.ipc, &self.uts] {
            std::fs::File::create(f)?;
        }
        let (ipc, uts, hostname) = (self.ipc.clone(), self.uts.clone(), hostname.to_string());
        let made = thread::Builder::new()
            .name("orc-podns-create".into())
            .spawn(move || -> nix::Result<()> {
                // This thread ends right after, so its namespace change leaks nowhere.
                unshare(CloneFlags::CLONE_NEWIPC | CloneFlags::CLONE_NEWUTS)?;
                nix::unistd::sethostname(&hostname)?;
                let bind = |from: &str, to: &Path| {
                    mount(Some(from), to, None::<&str>, MsFlags::MS_BIND, None::<&str>)
                };
                bind("/proc/thread-self/ns/ipc", &ipc)?;
                bind("/proc/thread-self/ns/uts", &uts)
            })?
            .join()
            .map_err(|_| io::Error::other("namespace thread panicked"))?;
        if let Err(errno) = made {
            let _ = self.delete();
            return Err(errno.into());
        }
        Ok(())
    }

    /// Unmounts and removes both files. Idempotent.
    pub fn delete(&self) -> io::Result<()> {
        for f in [&self.ipc, &self.uts] {
            match umount2(f, MntFlags::MNT_DETACH) {
                Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(e.into()),
            }
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}
