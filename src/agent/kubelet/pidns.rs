//! A pod's shared PID namespace (`shareProcessNamespace`): held by a small process of
//! orc's own (`orc pause`, upstream's pause container) that is the namespace's PID 1 and
//! reaps what its containers orphan, bind-mounted onto a file in `<agent>/podns/` that
//! the pod's containers join, as the IPC/UTS namespaces are. The holder outlives an
//! agent restart (the units stop only the main process); the pod's teardown ends it.

use std::io;
use std::os::unix::fs::MetadataExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use nix::errno::Errno;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{fork, ForkResult, Pid};

use crate::agent::net::{is_netns, netns::make_shared_mount_point};

/// The hidden subcommand that holds a PID namespace.
pub const HOLDER_SUBCOMMAND: &str = "pause";

/// The files of one pod's shared PID namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodPidNamespace {
    /// The namespace, bind-mounted: what containers join.
    pub file: PathBuf,
    /// The holder's pid (in the agent's PID namespace), to end it.
    holder: PathBuf,
}

impl PodPidNamespace {
    pub fn new(dir: &Path, uid: &str) -> Self {
        PodPidNamespace {
            file: dir.join(format!("{uid}-pid")),
            holder: dir.join(format!("{uid}-pid.holder")),
        }
    }

    /// The holder's pid, when it still holds the mounted namespace (a holder that died
    /// leaves a namespace no process can join: it is made again).
    fn live_holder(&self) -> Option<Pid> {
        let pid: i32 = std::fs::read_to_string(&self.holder)
            .ok()?
            .trim()
            .parse()
            .ok()?;
        let link = std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok()?;
        let ino = std::fs::metadata(&self.file).ok()?.ino();
        (is_netns(&self.file) && link.to_string_lossy() == format!("pid:[{ino}]"))
            .then_some(Pid::from_raw(pid))
    }

    /// Starts the holder (`exe pause`) and mounts its namespace. Idempotent: a live
    /// holder is kept.
    pub fn create(&self, exe: &Path) -> io::Result<()> {
        if self.live_holder().is_some() {
            return Ok(());
        }
        self.delete()?;
        let dir = self.file.parent().ok_or(io::ErrorKind::InvalidInput)?;
        std::fs::create_dir_all(dir)?;
        make_shared_mount_point(dir)?;
        let out = Command::new(exe)
            .arg0("orc")
            .arg(HOLDER_SUBCOMMAND)
            .stdin(Stdio::null())
            .stderr(Stdio::inherit())
            .output()?;
        if !out.status.success() {
            return Err(io::Error::other(format!(
                "the PID namespace holder failed: {}",
                out.status
            )));
        }
        let pid: i32 = String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .map_err(|_| io::Error::other("the PID namespace holder told no pid"))?;
        std::fs::write(&self.holder, pid.to_string())?;
        std::fs::File::create(&self.file)?;
        let source = format!("/proc/{pid}/ns/pid");
        if let Err(e) = mount(
            Some(source.as_str()),
            &self.file,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            let _ = self.delete();
            return Err(e.into());
        }
        Ok(())
    }

    /// Ends the holder (and so every process left in the namespace), unmounts and
    /// removes the files. Idempotent.
    pub fn delete(&self) -> io::Result<()> {
        if let Some(pid) = self.live_holder() {
            let _ = kill(pid, Signal::SIGKILL);
        }
        match umount2(&self.file, MntFlags::MNT_DETACH) {
            Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
            Err(e) => return Err(e.into()),
        }
        for f in [&self.file, &self.holder] {
            match std::fs::remove_file(f) {
                Err(e) if e.kind() != io::ErrorKind::NotFound => return Err(e),
                _ => {}
            }
        }
        Ok(())
    }
}

/// Why `orc pause` could not hold a PID namespace.
#[derive(Debug, thiserror::Error)]
pub enum HoldError {
    #[error("block the signals the holder waits for")]
    BlockSignals(#[source] Errno),
    #[error("unshare the PID namespace")]
    Unshare(#[source] Errno),
    #[error("fork the namespace's first process")]
    Fork(#[source] Errno),
}

/// `orc pause`: makes a PID namespace whose PID 1 is a child of this process, prints
/// that child's pid and returns; the child reaps orphans until SIGTERM or SIGINT (or a
/// SIGKILL from outside) and then returns. Runs before anything starts a thread (a
/// fork copies only the calling thread).
pub fn hold_pid_namespace() -> Result<(), HoldError> {
    let mut signals = SigSet::empty();
    for s in [Signal::SIGCHLD, Signal::SIGTERM, Signal::SIGINT] {
        signals.add(s);
    }
    // Blocked before the fork, so none is lost before the child waits for them.
    signals.thread_block().map_err(HoldError::BlockSignals)?;
    unshare(CloneFlags::CLONE_NEWPID).map_err(HoldError::Unshare)?;
    // SAFETY: the process is single-threaded here (the subcommand starts no runtime), so
    // the child may run any code.
    match unsafe { fork() }.map_err(HoldError::Fork)? {
        ForkResult::Parent { child } => {
            println!("{child}");
            Ok(())
        }
        ForkResult::Child => {
            detach_from_caller();
            loop {
                match signals.wait() {
                    Ok(Signal::SIGCHLD) => reap_all(),
                    Ok(_) => return Ok(()),
                    Err(_) => {}
                }
            }
        }
    }
}

/// Lets go of the caller's pipes (so its read of the pid ends) and session.
fn detach_from_caller() {
    if let Ok(null) = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")
    {
        use std::os::fd::AsRawFd;
        for fd in 0..=2 {
            // SAFETY: dup2 onto the standard descriptors, which nothing else holds.
            unsafe { nix::libc::dup2(null.as_raw_fd(), fd) };
        }
    }
    let _ = nix::unistd::setsid();
}

/// Reaps every exited child (the namespace's orphans become PID 1's).
fn reap_all() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_files_are_named_after_the_pod() {
        let ns = PodPidNamespace::new(Path::new("/a/podns"), "u1");
        assert_eq!(ns.file, Path::new("/a/podns/u1-pid"));
        assert_eq!(ns.holder, Path::new("/a/podns/u1-pid.holder"));
        assert!(ns.live_holder().is_none());
    }
}
