//! Exec processes in a running container: one whose output is captured through the
//! logger, and one streamed over fifos with a control to resize, close stdin or kill it.

use std::path::Path;
use std::time::Duration;

use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    CloseIoRequest, DeleteProcessRequest, ExecProcessRequest, KillRequest, ResizePtyRequest,
    StartRequest, WaitRequest,
};
use containerd_client::tonic::metadata::AsciiMetadataValue;
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request};
use tracing::{debug, warn};

use super::{
    grpc, ContainerdRuntime, FIFO_OPEN_TIMEOUT, KILL_WAIT, NAMESPACE_HEADER, PROCESS_TYPE_URL,
    TTY_TERM,
};
use crate::agent::runtime::exec_fifos::{ExecFifos, PendingReader};
use crate::agent::runtime::{
    logger, ExecCommand, ExecControl, ExecDriver, ExecOutput, ExecReader, ExecRequest, ExecSession,
    ExecWriter, Result, RuntimeError, TerminalSize, SIGKILL,
};

impl ContainerdRuntime {
    /// The container's process spec with `cmd` as its arguments, for an exec.
    async fn exec_process_spec(
        &self,
        id: &str,
        cmd: &[String],
        tty: bool,
    ) -> Result<prost_types::Any> {
        let container = self.get_container(id).await?;
        let spec_any = container.spec.ok_or_else(|| RuntimeError::Spec {
            id: id.to_string(),
            reason: "container record has no spec".into(),
        })?;
        let spec: oci_spec::runtime::Spec =
            serde_json::from_slice(&spec_any.value).map_err(|e| RuntimeError::Spec {
                id: id.to_string(),
                reason: format!("stored spec: {e}"),
            })?;
        let mut process = spec.process().clone().unwrap_or_default();
        process.set_args(Some(cmd.to_vec()));
        process.set_terminal(Some(tty));
        if tty {
            let mut env = process.env().clone().unwrap_or_default();
            if !env.iter().any(|e| e.starts_with("TERM=")) {
                env.push(TTY_TERM.to_string());
            }
            process.set_env(Some(env));
        }
        Ok(prost_types::Any {
            type_url: PROCESS_TYPE_URL.to_string(),
            value: serde_json::to_vec(&process).expect("process serializes"),
        })
    }

    /// The handle of exec process `exec_id` of container `id`.
    fn exec_process(&self, id: &str, exec_id: &str) -> ExecProcess {
        ExecProcess {
            tasks: self.client.tasks(),
            namespace: self.namespace.clone(),
            container_id: id.to_string(),
            exec_id: exec_id.to_string(),
        }
    }

    async fn exec_inner(
        &self,
        id: &str,
        exec_id: &str,
        cmd: &[String],
        log: &Path,
        timeout: Duration,
    ) -> Result<u32> {
        let spec = self.exec_process_spec(id, cmd, false).await?;
        // An exec's output is read back whole: never rotated.
        let uri = super::tasks::log_uri(&self.config.logger_binary, log, None);
        let process = self.exec_process(id, exec_id);
        process
            .start(spec, String::new(), uri.clone(), uri, false)
            .await?;
        let waited = match tokio::time::timeout(timeout, process.wait()).await {
            Ok(exit_code) => exit_code,
            Err(_) => {
                process.kill().await;
                let _ = tokio::time::timeout(KILL_WAIT, process.wait()).await;
                Err(RuntimeError::ExecTimeout {
                    id: id.to_string(),
                    timeout,
                })
            }
        };
        // Deleting the process makes the shim close the pipes and wait for the logger.
        process.delete().await;
        waited
    }

    pub(super) async fn exec_captured(
        &self,
        id: &str,
        cmd: &[String],
        timeout: Duration,
    ) -> Result<ExecOutput> {
        self.ensure_running(id).await?;
        let exec_id = new_exec_id();
        let log = self.config.exec_dir.join(format!("{id}-{exec_id}.log"));
        let exit_code = self.exec_inner(id, &exec_id, cmd, &log, timeout).await;
        let contents = std::fs::read(&log);
        let _ = std::fs::remove_file(&log);
        let exit_code = exit_code?;
        let contents = contents.map_err(|source| RuntimeError::Io {
            what: "read exec output",
            path: log.clone(),
            source,
        })?;
        let (stdout, stderr) = logger::split_streams(&contents);
        Ok(ExecOutput {
            stdout,
            stderr,
            exit_code,
        })
    }

    pub(super) async fn exec_streamed(
        &self,
        id: &str,
        request: &ExecRequest,
    ) -> Result<ExecSession> {
        self.ensure_running(id).await?;
        let exec_id = new_exec_id();
        let dir = self.config.exec_dir.join(format!("{id}-{exec_id}"));
        let io_error = |what, source| RuntimeError::Io {
            what,
            path: dir.clone(),
            source,
        };
        let fifos =
            ExecFifos::create(&dir, request).map_err(|e| io_error("create exec fifos", e))?;
        let stdin = match fifos.open_stdin() {
            Ok(stdin) => stdin,
            Err(e) => {
                fifos.remove();
                return Err(io_error("open exec stdin", e));
            }
        };
        let (stdout, stderr) = fifos.open_outputs();
        let process = self.exec_process(id, &exec_id);
        let started = match self.exec_process_spec(id, &request.cmd, request.tty).await {
            Ok(spec) => {
                let stdio = [&fifos.stdin, &fifos.stdout, &fifos.stderr].map(ExecFifos::uri);
                let [stdin, stdout, stderr] = stdio;
                process
                    .start(spec, stdin, stdout, stderr, request.tty)
                    .await
            }
            Err(e) => Err(e),
        };
        if let Err(e) = started {
            for pending in [stdout, stderr].into_iter().flatten() {
                pending.cancel().await;
            }
            fifos.remove();
            return Err(e);
        }
        let (stdout, stderr) = match open_outputs(stdout, stderr).await {
            Ok(outputs) => outputs,
            Err(e) => {
                process.kill().await;
                process.delete().await;
                fifos.remove();
                return Err(io_error("open exec output", e));
            }
        };
        let stdout = stdout.and_then(|r| keep_or_drain(r, request.stdout));
        let stderr = stderr.and_then(|r| keep_or_drain(r, request.stderr));
        debug!(container = id, exec = %exec_id, tty = request.tty, "exec started");
        let (control, driver) = ExecControl::new(id);
        tokio::spawn(drive_exec(process, request.tty, driver, fifos));
        Ok(ExecSession {
            stdin: stdin.map(|s| Box::new(s) as ExecWriter),
            stdout,
            stderr,
            control,
        })
    }
}

fn new_exec_id() -> String {
    format!("exec-{}", &uuid::Uuid::new_v4().simple().to_string()[..12])
}

/// One exec process of a container, with what it takes to call containerd about it.
struct ExecProcess {
    tasks: TasksClient<Channel>,
    namespace: AsciiMetadataValue,
    container_id: String,
    exec_id: String,
}

impl ExecProcess {
    fn request<T>(&self, msg: T) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut()
            .insert(NAMESPACE_HEADER, self.namespace.clone());
        req
    }

    /// Creates the process on the given stdio (paths or URIs; empty for none) and starts
    /// it. A process that fails to start is deleted again.
    async fn start(
        &self,
        spec: prost_types::Any,
        stdin: String,
        stdout: String,
        stderr: String,
        terminal: bool,
    ) -> Result<()> {
        let mut tasks = self.tasks.clone();
        tasks
            .exec(self.request(ExecProcessRequest {
                container_id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
                stdin,
                stdout,
                stderr,
                terminal,
                spec: Some(spec),
            }))
            .await
            .map_err(grpc("exec"))?;
        let started = tasks
            .start(self.request(StartRequest {
                container_id: self.container_id.clone(),
                exec_id: self.exec_id.clone(),
            }))
            .await;
        if let Err(s) = started {
            self.delete().await;
            return Err(grpc("start exec")(s));
        }
        Ok(())
    }

    async fn kill(&self) {
        let req = self.request(KillRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            signal: SIGKILL,
            all: false,
        });
        if let Err(s) = self.tasks.clone().kill(req).await {
            if s.code() != Code::NotFound {
                warn!(container = %self.container_id, exec = %self.exec_id, error = %s.message(), "kill exec process failed");
            }
        }
    }

    async fn resize(&self, size: TerminalSize) {
        let req = self.request(ResizePtyRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            width: size.width.into(),
            height: size.height.into(),
        });
        if let Err(s) = self.tasks.clone().resize_pty(req).await {
            debug!(container = %self.container_id, exec = %self.exec_id, error = %s.message(), "resize exec terminal failed");
        }
    }

    /// Closes the shim's own write end of the stdin fifo (it keeps one open until
    /// told), so the process reads EOF once orc's writer is closed too.
    async fn close_stdin(&self) {
        let req = self.request(CloseIoRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
            stdin: true,
        });
        if let Err(s) = self.tasks.clone().close_io(req).await {
            debug!(container = %self.container_id, exec = %self.exec_id, error = %s.message(), "close exec stdin failed");
        }
    }

    async fn wait(&self) -> Result<u32> {
        let req = self.request(WaitRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        });
        self.tasks
            .clone()
            .wait(req)
            .await
            .map(|w| w.into_inner().exit_status)
            .map_err(grpc("wait exec"))
    }

    /// Makes the shim close the process's stdio and forget it.
    async fn delete(&self) {
        let req = self.request(DeleteProcessRequest {
            container_id: self.container_id.clone(),
            exec_id: self.exec_id.clone(),
        });
        if let Err(s) = self.tasks.clone().delete_process(req).await {
            if s.code() != Code::NotFound {
                warn!(container = %self.container_id, exec = %self.exec_id, error = %s.message(), "delete exec process failed");
            }
        }
    }
}

/// The output when it was asked for; otherwise it is read and dropped, so that the
/// process never blocks writing it.
fn keep_or_drain(mut output: ExecReader, wanted: bool) -> Option<ExecReader> {
    if wanted {
        return Some(output);
    }
    tokio::spawn(async move {
        let _ = tokio::io::copy(&mut output, &mut tokio::io::sink()).await;
    });
    None
}

/// Waits for the shim to open the output fifos of a started exec.
async fn open_outputs(
    stdout: Option<PendingReader>,
    stderr: Option<PendingReader>,
) -> std::io::Result<(Option<ExecReader>, Option<ExecReader>)> {
    let open = |pending: Option<PendingReader>| async move {
        match pending {
            Some(p) => p
                .finish(FIFO_OPEN_TIMEOUT)
                .await
                .map(|r| Some(Box::new(r) as ExecReader)),
            None => Ok(None),
        }
    };
    let (stdout, stderr) = tokio::join!(open(stdout), open(stderr));
    Ok((stdout?, stderr?))
}

/// Runs an exec process's control until it is released: resizes its terminal, kills it
/// on request, reports its exit; once the control is dropped (and the process has
/// exited, killed if need be) deletes the process and its fifos.
async fn drive_exec(process: ExecProcess, tty: bool, driver: ExecDriver, fifos: ExecFifos) {
    let ExecDriver { mut commands, exit } = driver;
    let mut released = false;
    let wait = process.wait();
    tokio::pin!(wait);
    let code = loop {
        tokio::select! {
            code = &mut wait => break code,
            command = commands.recv(), if !released => match command {
                Some(ExecCommand::Resize(size)) if tty => process.resize(size).await,
                Some(ExecCommand::Resize(_)) => {}
                Some(ExecCommand::CloseStdin) => process.close_stdin().await,
                Some(ExecCommand::Kill) => process.kill().await,
                None => {
                    released = true;
                    process.kill().await;
                }
            },
        }
    };
    let _ = exit.send(code);
    // The holder may still be reading the process's last output.
    while !released {
        match commands.recv().await {
            Some(_) => {}
            None => released = true,
        }
    }
    process.delete().await;
    fifos.remove();
    debug!(container = %process.container_id, exec = %process.exec_id, "exec released");
}
