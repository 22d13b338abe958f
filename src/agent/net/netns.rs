//! Persistent network namespaces (bind-mounted nsfs files) and running netlink work inside
//! one on a dedicated OS thread (namespaces are per thread: never setns a tokio worker).

use std::fs;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::thread;

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{setns, unshare, CloneFlags};
use nix::sys::statfs::{statfs, NSFS_MAGIC};
use rtnetlink::Handle;
use tokio::sync::oneshot;

use super::{Error, Result};

/// The calling thread's own network namespace (per thread, unlike `/proc/self/ns/net`).
const THREAD_NETNS: &str = "/proc/thread-self/ns/net";

/// Creates a network namespace that outlives every process in it: a new namespace is
/// unshared on a short-lived thread and bind-mounted onto `path`. Idempotent: an existing
/// namespace at `path` is kept.
///
/// The parent directory is made a shared mount point (as `ip netns` does with
/// /run/netns) so that unmounting the namespace later also releases it in mount
/// namespaces created in the meantime.
pub fn create_netns(path: &Path) -> Result<()> {
    if is_netns(path) {
        return Ok(());
    }
    let fail = |step: &'static str, source: io::Error| Error::CreateNetns {
        path: path.to_path_buf(),
        step,
        source,
    };
    let dir = path
        .parent()
        .ok_or_else(|| fail("find parent directory", io::ErrorKind::InvalidInput.into()))?;
    fs::create_dir_all(dir).map_err(|e| fail("create parent directory", e))?;
    make_shared_mount_point(dir).map_err(|e| fail("make parent directory a shared mount", e))?;
    fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .map_err(|e| fail("create mount point file", e))?;

    let target = path.to_path_buf();
    let bound = thread::Builder::new()
        .name("orc-netns-create".into())
        .spawn(move || -> nix::Result<()> {
            // This thread ends right after, so its namespace change leaks nowhere.
            unshare(CloneFlags::CLONE_NEWNET)?;
            mount(
                Some(THREAD_NETNS),
                &target,
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
        })
        .map_err(|e| fail("start thread", e))?
        .join()
        .map_err(|_| fail("join thread", io::Error::other("thread panicked")))?;
    if let Err(errno) = bound {
        let _ = fs::remove_file(path);
        return Err(fail("unshare and bind-mount", errno.into()));
    }
    Ok(())
}

/// Unmounts and removes a namespace made by [`create_netns`]. The namespace itself goes
/// away once no process is left in it. Idempotent: a missing path is not an error.
pub fn delete_netns(path: &Path) -> Result<()> {
    let fail = |step: &'static str, source: io::Error| Error::DeleteNetns {
        path: path.to_path_buf(),
        step,
        source,
    };
    match umount2(path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (already unmounted, or never mounted).
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(errno) => return Err(fail("unmount", errno.into())),
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(fail("remove file", e)),
    }
}

/// Whether `path` is a network namespace handle (an nsfs file).
pub fn is_netns(path: &Path) -> bool {
    statfs(path).is_ok_and(|s| s.filesystem_type() == NSFS_MAGIC)
}

/// Makes `dir` a shared mount point (bind-mounting it onto itself first if needed), so
/// unmounting namespace files below it also releases copies in other mount namespaces.
pub fn make_shared_mount_point(dir: &Path) -> io::Result<()> {
    let shared = || {
        mount(
            None::<&str>,
            dir,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    match shared() {
        Ok(()) => Ok(()),
        // EINVAL: `dir` is not a mount point yet; make it one, then retry.
        Err(Errno::EINVAL) => {
            mount(
                Some(dir),
                dir,
                Some("none"),
                MsFlags::MS_BIND | MsFlags::MS_REC,
                None::<&str>,
            )?;
            Ok(shared()?)
        }
        Err(errno) => Err(errno.into()),
    }
}

/// Spawns an OS thread that enters the network namespace at `netns` (stays in the
/// process's namespace when `None`) and runs `f` there. Sockets `f` opens belong to
/// that namespace for their whole life.
pub fn spawn_in_netns<F, T>(netns: Option<PathBuf>, f: F) -> Result<thread::JoinHandle<Result<T>>>
where
    F: FnOnce() -> Result<T> + Send + 'static,
    T: Send + 'static,
{
    thread::Builder::new()
        .name("orc-netns".into())
        .spawn(move || {
            if let Some(path) = &netns {
                enter_netns(path)?;
            }
            f()
        })
        .map_err(Error::Thread)
}

/// Moves the calling thread into the network namespace at `path`. Only for threads that
/// orc owns and that end with the work they were started for.
fn enter_netns(path: &Path) -> Result<()> {
    let enter_err = |source: io::Error| Error::EnterNetns {
        path: path.to_path_buf(),
        source,
    };
    let file = fs::File::open(path).map_err(enter_err)?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(|e| enter_err(e.into()))
}

/// Runs async netlink work in the network namespace at `netns` (the process's own when
/// `None`): on a dedicated OS thread that entered it, with its own single-threaded
/// runtime and a netlink connection opened there. Blocking calls (`nft`, sysctl files)
/// inside `f` are fine: they block only that thread, and processes it starts inherit
/// its namespace.
pub async fn run<F, Fut, T>(netns: Option<PathBuf>, f: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T>>,
    T: Send + 'static,
{
    let (tx, rx) = oneshot::channel();
    spawn_in_netns(netns, move || {
        let result = (|| {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(Error::Thread)?;
            runtime.block_on(async move {
                let (connection, handle, _) =
                    rtnetlink::new_connection().map_err(Error::NetlinkSocket)?;
                let connection = tokio::spawn(connection);
                let result = f(handle).await;
                connection.abort();
                result
            })
        })();
        let _ = tx.send(result);
        Ok(())
    })?;
    rx.await.map_err(|_| Error::ThreadDied)?
}
