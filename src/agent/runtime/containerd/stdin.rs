//! A container's stdin (Kubernetes `stdin: true`): a fifo whose read end the shim opens
//! when it creates the task and copies into the process (or its terminal), and whose
//! write ends `kubectl attach -i` sessions open. The shim holds a write end of its own
//! until containerd's CloseIO, so attaches come and go (also across an agent restart)
//! while the process waits for more input; with `stdinOnce` the kubelet asks for CloseIO
//! when the first attach ends, and the process reads EOF. Which of the two, and whether
//! there is a terminal, is kept on the container record (labels) for tasks made again.

use std::collections::HashMap;
use std::io;
use std::path::PathBuf;
use std::time::Duration;

use containerd_client::services::v1::{CloseIoRequest, ResizePtyRequest};
use tokio::net::unix::pipe;

use crate::agent::runtime::{
    logger, AttachedStdin, ContainerConfig, Result, RuntimeError, TerminalSize,
};

/// Label on a container with stdin: `once` or `open`.
pub const STDIN_LABEL: &str = "io.orc.runtime/stdin";
/// Label on a container whose process runs on a terminal.
pub const TTY_LABEL: &str = "io.orc.runtime/tty";
/// How long an attach waits for the shim to be reading the fifo (it opens its end
/// when the task is made, which is done by the time a pod reports running).
const READER_WAIT: Duration = Duration::from_millis(500);
const READER_POLL: Duration = Duration::from_millis(20);

/// How a container's stdin stays open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StdinMode {
    /// EOF when the first attach ends (`stdinOnce`).
    Once,
    /// Open while the task runs.
    Open,
}

/// The stdio set-up of a container's task besides its output (which the logger takes).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TaskIo {
    pub stdin: Option<StdinMode>,
    pub terminal: bool,
}

impl TaskIo {
    pub fn of(config: &ContainerConfig) -> TaskIo {
        TaskIo {
            stdin: config.stdin.then_some(if config.stdin_once {
                StdinMode::Once
            } else {
                StdinMode::Open
            }),
            terminal: config.tty,
        }
    }

    /// Writes the labels that [`TaskIo::from_labels`] reads.
    pub fn label(&self, labels: &mut HashMap<String, String>) {
        match self.stdin {
            Some(StdinMode::Once) => labels.insert(STDIN_LABEL.into(), "once".into()),
            Some(StdinMode::Open) => labels.insert(STDIN_LABEL.into(), "open".into()),
            None => None,
        };
        if self.terminal {
            labels.insert(TTY_LABEL.into(), "true".into());
        }
    }

    pub fn from_labels(labels: &HashMap<String, String>) -> TaskIo {
        TaskIo {
            stdin: match labels.get(STDIN_LABEL).map(String::as_str) {
                Some("once") => Some(StdinMode::Once),
                Some("open") => Some(StdinMode::Open),
                _ => None,
            },
            terminal: labels.get(TTY_LABEL).is_some_and(|v| v == "true"),
        }
    }
}

/// The stdin fifos of a node's containers, in one directory.
pub struct Stdins {
    dir: PathBuf,
}

impl Stdins {
    pub fn new(dir: PathBuf) -> Stdins {
        Stdins { dir }
    }

    fn fifo(&self, id: &str) -> PathBuf {
        self.dir.join(id)
    }

    /// Readies the stdin of a task about to be made for container `id` (the fifo
    /// exists); the path to give containerd.
    pub fn prepare(&self, id: &str) -> io::Result<PathBuf> {
        std::fs::create_dir_all(&self.dir)?;
        let path = self.fifo(id);
        match nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
            Ok(()) | Err(nix::errno::Errno::EEXIST) => Ok(path),
            Err(e) => Err(e.into()),
        }
    }

    /// Where container `id`'s stdout and stderr fifos are.
    fn output_paths(&self, id: &str) -> (PathBuf, PathBuf) {
        (
            self.dir.join(format!("{id}.stdout")),
            self.dir.join(format!("{id}.stderr")),
        )
    }

    /// The stdout and stderr fifos of container `id` (made if missing).
    pub fn output_fifos(&self, id: &str) -> io::Result<(PathBuf, PathBuf)> {
        std::fs::create_dir_all(&self.dir)?;
        let paths = self.output_paths(id);
        for path in [&paths.0, &paths.1] {
            match nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)) {
                Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(paths)
    }

    /// A write end of container `id`'s stdin for an attach; `None` when its stdin was
    /// closed already (a `stdinOnce` container attached before) or it has none.
    pub async fn open_writer(&self, id: &str) -> io::Result<Option<pipe::Sender>> {
        let path = self.fifo(id);
        if !path.exists() {
            return Ok(None);
        }
        let deadline = tokio::time::Instant::now() + READER_WAIT;
        loop {
            // Write-only and non-blocking: fails (ENXIO) while nobody reads.
            match pipe::OpenOptions::new().open_sender(&path) {
                Ok(sender) => return Ok(Some(sender)),
                Err(e) if e.raw_os_error() == Some(nix::libc::ENXIO) => {
                    if tokio::time::Instant::now() >= deadline {
                        return Ok(None);
                    }
                    tokio::time::sleep(READER_POLL).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Container `id` is gone: its fifos are removed.
    pub fn forget(&self, id: &str) {
        let (stdout, stderr) = self.output_paths(id);
        for path in [self.fifo(id), stdout, stderr] {
            if let Err(e) = std::fs::remove_file(&path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::debug!(fifo = %path.display(), error = %e, "removing a fifo failed");
                }
            }
        }
    }
}

impl super::ContainerdRuntime {
    /// [`ContainerRuntime::attach_stdin`](crate::agent::runtime::ContainerRuntime::attach_stdin)
    /// on containerd: the container record says whether it has stdin and how it closes.
    pub(super) async fn open_container_stdin(&self, id: &str) -> Result<Option<AttachedStdin>> {
        let container = self.get_container(id).await?;
        let Some(mode) = TaskIo::from_labels(&container.labels).stdin else {
            return Ok(None);
        };
        let writer = self
            .stdins
            .open_writer(id)
            .await
            .map_err(|source| RuntimeError::Io {
                what: "open the container's stdin",
                path: self.stdins.fifo(id),
                source,
            })?;
        Ok(writer.map(|w| AttachedStdin {
            writer: Box::new(w),
            once: mode == StdinMode::Once,
        }))
    }

    /// Asks the shim to close its own write end of the task's stdin.
    pub(super) async fn close_container_stdin(&self, id: &str) {
        let req = self.request(
            CloseIoRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                stdin: true,
            },
            None,
        );
        if let Err(s) = self.client.tasks().close_io(req).await {
            tracing::debug!(container = %id, error = %s.message(), "close container stdin failed");
        }
    }

    /// The stdin fifo of a task about to be made for container `id` (`None`: no stdin).
    pub(super) fn task_stdin(&self, id: &str, io: &TaskIo) -> Result<Option<PathBuf>> {
        if io.stdin.is_none() {
            return Ok(None);
        }
        self.stdins
            .prepare(id)
            .map(Some)
            .map_err(|source| RuntimeError::Io {
                what: "make the container's stdin fifo",
                path: self.stdins.fifo(id),
                source,
            })
    }

    /// The output of a task with stdin and no terminal: containerd's binary logging
    /// gives a process no stdin, so its output goes to two fifos instead (the shim
    /// copies stdin in and the output out), read by a logger orc starts itself, which
    /// writes the same CRI log file and ends when the shim closes the fifos. The two
    /// stdio paths to give containerd, and the logger (to kill if the task is not made).
    pub(super) fn fifo_logger(
        &self,
        id: &str,
        log_path: &std::path::Path,
    ) -> Result<(String, String, std::process::Child)> {
        let io_err = |what: &'static str, path: PathBuf| {
            move |source| RuntimeError::Io { what, path, source }
        };
        let (out, err) = self.stdins.output_fifos(id).map_err(io_err(
            "make the container's output fifos",
            self.stdins.fifo(id),
        ))?;
        let mut cmd = std::process::Command::new(&self.config.logger_binary);
        cmd.arg(logger::SUBCOMMAND).arg(log_path);
        if let Some(r) = self.config.log_rotation {
            cmd.arg(logger::MAX_SIZE_FLAG).arg(r.max_size.to_string());
            cmd.arg(logger::MAX_FILES_FLAG).arg(r.max_files.to_string());
        }
        cmd.arg(logger::STDOUT_FIFO_FLAG)
            .arg(&out)
            .arg(logger::STDERR_FIFO_FLAG)
            .arg(&err)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null());
        // Its own process group: the agent's signals (and restarts) leave it be.
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd.spawn().map_err(io_err(
            "start the container logger",
            self.config.logger_binary.clone(),
        ))?;
        Ok((
            out.to_string_lossy().into_owned(),
            err.to_string_lossy().into_owned(),
            child,
        ))
    }

    /// Resizes the terminal of container `id`'s main process.
    pub(super) async fn resize_task_terminal(&self, id: &str, size: TerminalSize) {
        let req = self.request(
            ResizePtyRequest {
                container_id: id.to_string(),
                exec_id: String::new(),
                width: size.width.into(),
                height: size.height.into(),
            },
            None,
        );
        if let Err(s) = self.client.tasks().resize_pty(req).await {
            tracing::debug!(container = %id, error = %s.message(), "resize container terminal failed");
        }
    }

    /// Container `id` is gone: so is its stdin fifo.
    pub(super) fn forget_stdin(&self, id: &str) {
        self.stdins.forget(id);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read;

    use tokio::io::AsyncWriteExt;

    use super::*;

    #[test]
    fn the_mode_and_terminal_round_trip_through_labels() {
        let mut config = ContainerConfig::new("c", "busybox", PathBuf::from("/l"));
        assert_eq!(TaskIo::of(&config), TaskIo::default());
        config.stdin = true;
        config.tty = true;
        for (once, mode) in [(true, StdinMode::Once), (false, StdinMode::Open)] {
            config.stdin_once = once;
            let io = TaskIo::of(&config);
            assert_eq!(io.stdin, Some(mode));
            let mut labels = HashMap::new();
            io.label(&mut labels);
            assert_eq!(TaskIo::from_labels(&labels), io);
        }
        assert_eq!(TaskIo::from_labels(&HashMap::new()), TaskIo::default());
    }

    #[tokio::test]
    async fn attaches_write_while_the_shim_reads_and_not_after() {
        let dir = tempfile::tempdir().unwrap();
        let stdins = Stdins::new(dir.path().join("stdin"));
        assert!(
            stdins.open_writer("none").await.unwrap().is_none(),
            "no fifo"
        );
        let path = stdins.prepare("c1").unwrap();
        assert_eq!(
            stdins.prepare("c1").unwrap(),
            path,
            "made again for a new task"
        );
        assert!(
            stdins.open_writer("c1").await.unwrap().is_none(),
            "nobody reads"
        );
        // The "shim": reads to EOF, as containerd's shim copies the fifo in.
        let reader = path.clone();
        let shim = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::fs::File::open(reader)
                .unwrap()
                .read_to_end(&mut got)
                .unwrap();
            got
        });
        let mut w = stdins.open_writer("c1").await.unwrap().expect("shim reads");
        w.write_all(b"hello\n").await.unwrap();
        drop(w);
        assert_eq!(shim.join().unwrap(), b"hello\n");
        stdins.forget("c1");
        assert!(!path.exists());
    }
}
