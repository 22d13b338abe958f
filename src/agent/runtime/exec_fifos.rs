//! The named pipes an interactive exec's stdio goes through: containerd's shim opens one
//! end of each by path, orc holds the other.

use std::fs::File;
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::task::JoinHandle;

use super::ExecRequest;

/// The fifos of one exec, in a directory of their own.
#[derive(Debug)]
pub struct ExecFifos {
    dir: PathBuf,
    pub stdin: Option<PathBuf>,
    pub stdout: Option<PathBuf>,
    pub stderr: Option<PathBuf>,
}

/// A read end being opened: `open(2)` of a fifo for reading blocks until a writer (the
/// shim) opens it, which happens when the exec process starts.
pub struct PendingReader {
    path: PathBuf,
    open: JoinHandle<io::Result<File>>,
}

impl ExecFifos {
    /// Makes `dir` with a fifo for stdin if `request` asks for it, for stdout, and for
    /// stderr unless there is a tty. The shim cannot do without an output (containerd
    /// 1.6 fails to start an exec that has stdout but no stderr): the caller drains
    /// those not asked for.
    pub fn create(dir: &Path, request: &ExecRequest) -> io::Result<ExecFifos> {
        std::fs::create_dir_all(dir)?;
        let make = |wanted: bool, name: &str| -> io::Result<Option<PathBuf>> {
            if !wanted {
                return Ok(None);
            }
            let path = dir.join(name);
            nix::unistd::mkfifo(&path, nix::sys::stat::Mode::from_bits_truncate(0o600))
                .map_err(io::Error::from)?;
            Ok(Some(path))
        };
        Ok(ExecFifos {
            dir: dir.to_path_buf(),
            stdin: make(request.stdin, "stdin")?,
            stdout: make(true, "stdout")?,
            stderr: make(!request.tty, "stderr")?,
        })
    }

    /// The path to hand containerd for a stream; empty for a stream not asked for.
    pub fn uri(path: &Option<PathBuf>) -> String {
        path.as_ref()
            .map(|p| p.to_string_lossy().into_owned())
            .unwrap_or_default()
    }

    /// orc's write end of stdin. Opened read-write, so it neither blocks nor fails while
    /// the shim has not opened its end. The shim holds a write end of its own until
    /// containerd's CloseIO: the process reads EOF once both are closed.
    pub fn open_stdin(&self) -> io::Result<Option<pipe::Sender>> {
        self.stdin
            .as_ref()
            .map(|p| pipe::OpenOptions::new().read_write(true).open_sender(p))
            .transpose()
    }

    /// Starts opening the read ends of stdout and stderr.
    pub fn open_outputs(&self) -> (Option<PendingReader>, Option<PendingReader>) {
        (
            self.stdout.as_deref().map(PendingReader::start),
            self.stderr.as_deref().map(PendingReader::start),
        )
    }

    /// Removes the directory; ends already open stay usable.
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            tracing::debug!(dir = %self.dir.display(), error = %e, "removing exec fifos failed");
        }
    }
}

impl PendingReader {
    fn start(path: &Path) -> PendingReader {
        let owned = path.to_path_buf();
        PendingReader {
            path: path.to_path_buf(),
            open: tokio::task::spawn_blocking(move || File::open(owned)),
        }
    }

    /// Waits (at most `timeout`) for the writer to open its end.
    pub async fn finish(self, timeout: Duration) -> io::Result<pipe::Receiver> {
        let PendingReader { path, mut open } = self;
        let file = match tokio::time::timeout(timeout, &mut open).await {
            Ok(joined) => joined.map_err(io::Error::other)??,
            Err(_) => {
                release(&path, &mut open).await;
                return Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "the exec process did not open its output",
                ));
            }
        };
        pipe::Receiver::from_file(file)
    }

    /// Gives up: releases the blocked `open(2)` and waits for it to return.
    pub async fn cancel(mut self) {
        release(&self.path, &mut self.open).await;
    }
}

/// How often, and how many times, [`release`] tries.
const RELEASE_RETRY: Duration = Duration::from_millis(20);
const RELEASE_TRIES: usize = 250;

/// Opens and closes a write end until the reader's `open(2)` has returned. A
/// non-blocking write open only succeeds (and wakes the reader) once the reader's thread
/// is inside `open(2)`; before that it fails with ENXIO, so it is retried. After 5 s the
/// thread is left behind (logged).
async fn release(path: &Path, open: &mut JoinHandle<io::Result<File>>) {
    for _ in 0..RELEASE_TRIES {
        let _ = std::fs::OpenOptions::new()
            .write(true)
            .custom_flags(nix::libc::O_NONBLOCK)
            .open(path);
        if tokio::time::timeout(RELEASE_RETRY, &mut *open)
            .await
            .is_ok()
        {
            return;
        }
    }
    tracing::warn!(fifo = %path.display(), "an exec output was never opened; leaving its opener");
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test]
    async fn streams_flow_through_the_fifos_and_end_when_the_writer_closes() {
        let dir = tempfile::tempdir().unwrap();
        let request = ExecRequest {
            cmd: vec!["cat".into()],
            stdin: true,
            stdout: true,
            stderr: true,
            tty: false,
        };
        let fifos = ExecFifos::create(&dir.path().join("x"), &request).unwrap();
        let mut stdin = fifos.open_stdin().unwrap().expect("stdin asked for");
        let (stdout, stderr) = fifos.open_outputs();
        // The "shim": reads stdin, writes it to stdout. It opens stdin first: once stdout
        // is open (below), its stdin is too, so dropping ours ends its input.
        let (inp, out) = (fifos.stdin.clone().unwrap(), fifos.stdout.clone().unwrap());
        let shim = tokio::task::spawn_blocking(move || {
            let mut inp = File::open(inp).unwrap();
            let mut out = std::fs::OpenOptions::new().write(true).open(out).unwrap();
            std::io::copy(&mut inp, &mut out).unwrap();
        });
        let mut stdout = stdout
            .unwrap()
            .finish(Duration::from_secs(5))
            .await
            .unwrap();
        stdin.write_all(b"hello").await.unwrap();
        drop(stdin);
        let mut got = Vec::new();
        tokio::time::timeout(Duration::from_secs(5), stdout.read_to_end(&mut got))
            .await
            .expect("stdout reached EOF")
            .unwrap();
        assert_eq!(got, b"hello");
        shim.await.unwrap();
        stderr.unwrap().cancel().await;
        fifos.remove();
        assert!(!dir.path().join("x").exists());
    }

    #[tokio::test]
    async fn a_tty_has_no_stderr_fifo_and_unopened_outputs_time_out() {
        let dir = tempfile::tempdir().unwrap();
        let request = ExecRequest {
            cmd: vec!["sh".into()],
            stdin: false,
            stdout: false,
            stderr: true,
            tty: true,
        };
        let fifos = ExecFifos::create(dir.path(), &request).unwrap();
        assert!(fifos.stdin.is_none() && fifos.stderr.is_none());
        assert!(fifos.stdout.is_some());
        assert_eq!(ExecFifos::uri(&fifos.stderr), "");
        let (stdout, stderr) = fifos.open_outputs();
        assert!(stderr.is_none());
        let e = stdout
            .unwrap()
            .finish(Duration::from_millis(50))
            .await
            .unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::TimedOut);
    }
}
