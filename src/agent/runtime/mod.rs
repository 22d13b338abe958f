//! The container runtime seen by the kubelet: a small `ContainerRuntime` trait, its
//! containerd implementation and (in unit tests) a fake that records calls.

pub mod archive;
pub mod cgroup;
pub mod containerd;
pub mod exec_fifos;
#[cfg(test)]
pub mod fake;
pub mod handlers;
pub mod logger;
pub mod reference;
pub mod registry;
pub mod seccomp;
pub mod spec;
pub mod users;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::{mpsc, oneshot};

pub use containerd::{ContainerdConfig, ContainerdRuntime, ShimSharing};
#[cfg(test)]
pub use fake::{FakeCall, FakeRuntime};
pub use reference::Reference;

/// containerd namespace orc keeps its images and containers in.
pub const DEFAULT_NAMESPACE: &str = "orc";
/// Default containerd socket.
pub const DEFAULT_CONTAINERD_SOCKET: &str = "/run/containerd/containerd.sock";
pub const SIGKILL: u32 = 9;
pub const SIGTERM: u32 = 15;

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error(
        "containerd socket {socket} not reachable: is containerd running? \
         (install it with scripts/install-deps.sh; check with orc check)"
    )]
    Connect {
        socket: PathBuf,
        #[source]
        source: containerd_client::tonic::transport::Error,
    },
    #[error("invalid containerd namespace {namespace:?}")]
    InvalidNamespace { namespace: String },
    #[error("containerd {op}: {}", .source.message())]
    Containerd {
        op: &'static str,
        #[source]
        source: containerd_client::tonic::Status,
    },
    #[error("invalid image reference {reference:?}: {reason}")]
    InvalidReference { reference: String, reason: String },
    #[error("image {reference} not found in registry {registry}")]
    ImageNotFound { reference: String, registry: String },
    #[error("image {reference} is not present and the pull policy is Never")]
    ImageNeverPull { reference: String },
    /// As containerd's CRI words it.
    #[error("failed to get sandbox runtime: no runtime for {handler:?} is configured")]
    UnknownHandler { handler: String },
    #[error(
        "registry {registry} refused access to {reference}: \
         wrong or missing credentials (imagePullSecrets)"
    )]
    Unauthorized { reference: String, registry: String },
    #[error("registry {registry}: {message}")]
    Registry { registry: String, message: String },
    #[error("registry request {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("image {reference}: {reason}")]
    InvalidImage { reference: String, reason: String },
    #[error("image {reference} has no manifest for platform {platform}")]
    NoMatchingPlatform { reference: String, platform: String },
    #[error("read image archive {path}")]
    ReadArchive {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("image archive {path}: {reason}")]
    InvalidArchive { path: PathBuf, reason: String },
    #[error("container {id} not found")]
    ContainerNotFound { id: String },
    #[error("container {id} has no running task")]
    NotRunning { id: String },
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    /// containerd's CRI words for an image user name its `/etc/passwd` lacks.
    #[error(
        "failed to create containerd container: no users found \
         (user {user:?} is not in the image's /etc/passwd)"
    )]
    NoSuchUser { user: String },
    #[error("build runtime spec for container {id}: {reason}")]
    Spec { id: String, reason: String },
    #[error("exec in container {id} ended without an exit status")]
    ExecLost { id: String },
    #[error("exec in container {id} did not finish within {timeout:?}")]
    ExecTimeout { id: String, timeout: Duration },
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl RuntimeError {
    /// containerd does not answer (not running, restarting): nothing is known about the
    /// containers, as opposed to an answer that something failed.
    pub fn is_unavailable(&self) -> bool {
        match self {
            RuntimeError::Connect { .. } => true,
            // A call on a broken connection fails with code Unknown and the transport
            // error as its source ("transport error").
            RuntimeError::Containerd { source, .. } => {
                source.code() == containerd_client::tonic::Code::Unavailable
                    || std::error::Error::source(source)
                        .is_some_and(|e| e.is::<containerd_client::tonic::transport::Error>())
            }
            _ => false,
        }
    }
}

pub type Result<T, E = RuntimeError> = std::result::Result<T, E>;

/// When to contact the registry (Kubernetes `imagePullPolicy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PullPolicy {
    Always,
    IfNotPresent,
    Never,
}

/// Registry credentials (from an imagePullSecret); sent as basic auth or traded for a token.
#[derive(Clone, PartialEq, Eq)]
pub struct RegistryAuth {
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for RegistryAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegistryAuth")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// An image known to containerd.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Normalized name, e.g. `docker.io/library/busybox:test`.
    pub name: String,
    /// Digest of the image record's target (index or manifest): the repo digest.
    pub digest: String,
    /// Digest of the image config for this platform: the image ID.
    pub config_digest: String,
    /// Compressed size of the layers for this platform.
    pub size: i64,
    /// The image config's `User` (`name`, `uid`, `uid:gid` …; empty when it sets none).
    pub user: String,
}

/// How a container gets one of its pod-shared namespaces.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum NamespaceMode {
    /// A fresh namespace of its own.
    #[default]
    New,
    /// Join the namespace at this path (`/proc/PID/ns/net` of the sandbox, `/run/netns/X`).
    Path(PathBuf),
    /// Share the host's namespace (hostNetwork, hostIPC, hostPID).
    Host,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodNamespaces {
    pub network: NamespaceMode,
    pub ipc: NamespaceMode,
    pub uts: NamespaceMode,
    /// A container's own PID namespace unless the pod has `hostPID`, or an ephemeral
    /// container targets another container (it joins that one's).
    pub pid: NamespaceMode,
}

/// A bind mount from the host into the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindMount {
    pub host_path: PathBuf,
    pub container_path: String,
    pub read_only: bool,
}

/// cgroup limits; `None` leaves the value unlimited.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Resources {
    pub memory_limit_bytes: Option<i64>,
    pub cpu_shares: Option<u64>,
    pub cpu_quota: Option<i64>,
    pub cpu_period: Option<u64>,
}

/// CFS period the kubelet uses for CPU limits.
pub const CPU_PERIOD_US: u64 = 100_000;

impl Resources {
    /// Kubernetes CPU request/limit in millicores → shares / quota, as the kubelet does.
    pub fn with_cpu_millis(mut self, request: Option<u64>, limit: Option<u64>) -> Self {
        if let Some(req) = request {
            self.cpu_shares = Some((req * 1024 / 1000).max(2));
        }
        if let Some(lim) = limit {
            self.cpu_period = Some(CPU_PERIOD_US);
            self.cpu_quota = Some(((lim * CPU_PERIOD_US) / 1000).max(1000) as i64);
        }
        self
    }
}

/// Everything needed to create one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerConfig {
    /// containerd container id; unique on the node.
    pub id: String,
    /// Image reference; must already be present (`ensure_image`).
    pub image: String,
    /// Kubernetes `command`: replaces the image's Entrypoint (and drops its Cmd).
    pub command: Vec<String>,
    /// Kubernetes `args`: replaces the image's Cmd.
    pub args: Vec<String>,
    /// Added after the image's environment; later entries win.
    pub env: Vec<(String, String)>,
    pub working_dir: Option<String>,
    pub mounts: Vec<BindMount>,
    pub namespaces: PodNamespaces,
    pub hostname: Option<String>,
    /// cgroup directory (relative to each hierarchy's root) the container's cgroup
    /// `<cgroup_parent>/<id>` is made in, e.g. `/orc/pod-UID`.
    pub cgroup_parent: String,
    pub resources: Resources,
    /// Who the process runs as: the security context's part (the image's users and
    /// groups fill in the rest, see [`users`]).
    pub user: users::UserRequest,
    /// stdout/stderr land here in the CRI log format, written by a logger the shim owns.
    pub log_path: PathBuf,
    /// Kept on the containerd container record: the kubelet re-adopts by them.
    pub labels: BTreeMap<String, String>,
    /// Mount the image's root filesystem read-only (`readOnlyRootFilesystem`); writable
    /// by default, as Kubernetes containers are.
    pub read_only_root: bool,
    /// The process's `oom_score_adj` (by the pod's QoS class); `None` inherits the shim's.
    pub oom_score_adj: Option<i32>,
    /// The runtime handler (its pod's RuntimeClass's); `None`: the node's default.
    pub runtime_handler: Option<String>,
    /// The container's stdin is open for `kubectl attach -i` (Kubernetes `stdin`); with
    /// `stdin_once`, it reaches EOF when the first attach ends.
    pub stdin: bool,
    pub stdin_once: bool,
    /// The process runs on a terminal (Kubernetes `tty`).
    pub tty: bool,
    /// `securityContext.privileged`: every capability, no masked or read-only paths,
    /// writable sysfs and cgroupfs, every device allowed (containerd's `WithPrivileged`,
    /// `WithAllDevicesAllowed`); [`ContainerConfig::devices`] then holds the host's.
    pub privileged: bool,
    /// `securityContext.capabilities` over the default set (ignored when privileged).
    pub capabilities: CapabilityChanges,
    /// `seccompProfile` (ignored when privileged, as containerd does).
    pub seccomp: seccomp::SeccompProfile,
    /// `allowPrivilegeEscalation: false`: the process and its children gain no privileges
    /// (setuid binaries, file capabilities).
    pub no_new_privileges: bool,
    /// Device nodes made in the container (and allowed by its device cgroup).
    pub devices: Vec<DeviceNode>,
    /// The capabilities the agent itself has, as a mask (`CapEff`): what privileged and
    /// `add: [ALL]` grant (containerd's `cap.Current()`), as runc fails to grant one the
    /// host withholds. `None`: every capability Linux has.
    pub host_capabilities: Option<u64>,
}

/// Capabilities added to and dropped from the default set, as a container's
/// `securityContext.capabilities` names them (`NET_ADMIN`, `ALL`; any case, with or
/// without `CAP_`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CapabilityChanges {
    pub add: Vec<String>,
    pub drop: Vec<String>,
}

/// A device node of the host, made at the same path in a container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceNode {
    pub path: String,
    /// A character device (`c`), else a block device (`b`).
    pub char_device: bool,
    pub major: i64,
    pub minor: i64,
    /// The permission bits of the node.
    pub file_mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl ContainerConfig {
    /// A config with the given id, image and log path and every other field empty.
    pub fn new(id: impl Into<String>, image: impl Into<String>, log_path: PathBuf) -> Self {
        ContainerConfig {
            id: id.into(),
            image: image.into(),
            command: Vec::new(),
            args: Vec::new(),
            env: Vec::new(),
            working_dir: None,
            mounts: Vec::new(),
            namespaces: PodNamespaces::default(),
            hostname: None,
            cgroup_parent: "/orc".to_string(),
            resources: Resources::default(),
            user: users::UserRequest::default(),
            log_path,
            labels: BTreeMap::new(),
            read_only_root: false,
            oom_score_adj: None,
            runtime_handler: None,
            privileged: false,
            capabilities: CapabilityChanges::default(),
            no_new_privileges: false,
            seccomp: seccomp::SeccompProfile::Unconfined,
            devices: Vec::new(),
            host_capabilities: None,
            stdin: false,
            stdin_once: false,
            tty: false,
        }
    }
}

/// Where a container is in its life.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerState {
    /// Created (or its task was removed) but not running.
    Created,
    Running {
        pid: u32,
    },
    Exited {
        exit_code: u32,
        finished_at: Option<DateTime<Utc>>,
        /// The kernel's OOM killer ended a process of this container.
        oom_killed: bool,
    },
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerStatus {
    pub id: String,
    pub state: ContainerState,
}

/// A container record as listed (for re-adoption after a restart).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContainerSummary {
    pub id: String,
    pub image: String,
    pub labels: BTreeMap<String, String>,
    pub state: ContainerState,
}

/// Result of a non-interactive exec.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecOutput {
    pub stdout: Vec<u8>,
    pub stderr: Vec<u8>,
    pub exit_code: u32,
}

/// What an interactive exec (`kubectl exec`) asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ExecRequest {
    pub cmd: Vec<String>,
    pub stdin: bool,
    pub stdout: bool,
    /// Ignored with a tty: a terminal has one output stream.
    pub stderr: bool,
    pub tty: bool,
}

/// A terminal's size in character cells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TerminalSize {
    pub width: u16,
    pub height: u16,
}

pub type ExecReader = Box<dyn AsyncRead + Send + Unpin>;
pub type ExecWriter = Box<dyn AsyncWrite + Send + Unpin>;

/// An attach's end of a container's stdin.
pub struct AttachedStdin {
    pub writer: ExecWriter,
    /// The container's stdin closes for good when this attach ends (`stdinOnce`).
    pub once: bool,
}

/// A started exec process: the streams it was asked for, and its control.
pub struct ExecSession {
    /// The process reads EOF once this is dropped and `ExecHandle::close_stdin` called.
    pub stdin: Option<ExecWriter>,
    /// Ends (EOF) once the process and whatever it shared its output with are gone.
    pub stdout: Option<ExecReader>,
    pub stderr: Option<ExecReader>,
    pub control: ExecControl,
}

/// What the holder of an `ExecControl` asks of a running exec process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecCommand {
    Resize(TerminalSize),
    /// The holder dropped its stdin writer: the process may see EOF.
    CloseStdin,
    Kill,
}

/// Resizes, kills and waits for an exec process. Dropping it and its handles releases
/// the process: one still running is killed, and the runtime forgets it.
pub struct ExecControl {
    commands: mpsc::Sender<ExecCommand>,
    exit: oneshot::Receiver<Result<u32>>,
    id: String,
}

/// Resizes and kills an exec process (a part of its `ExecControl`).
#[derive(Clone)]
pub struct ExecHandle {
    commands: mpsc::Sender<ExecCommand>,
}

impl ExecHandle {
    /// Sets the size of the process's terminal (no effect without one).
    pub async fn resize(&self, size: TerminalSize) {
        let _ = self.commands.send(ExecCommand::Resize(size)).await;
    }

    /// Ends the process's stdin (after its writer was dropped).
    pub async fn close_stdin(&self) {
        let _ = self.commands.send(ExecCommand::CloseStdin).await;
    }

    pub async fn kill(&self) {
        let _ = self.commands.send(ExecCommand::Kill).await;
    }
}

/// The runtime's side of an `ExecControl`: commands in, the exit code out. The holder
/// dropping its control closes `commands`.
pub struct ExecDriver {
    pub commands: mpsc::Receiver<ExecCommand>,
    pub exit: oneshot::Sender<Result<u32>>,
}

/// Commands an exec driver may have queued before it handles them.
const EXEC_COMMAND_BUFFER: usize = 8;

impl ExecControl {
    /// A control for an exec in container `id` and the driver its runtime keeps.
    pub fn new(id: &str) -> (ExecControl, ExecDriver) {
        let (commands_tx, commands) = mpsc::channel(EXEC_COMMAND_BUFFER);
        let (exit_tx, exit) = oneshot::channel();
        let control = ExecControl {
            commands: commands_tx,
            exit,
            id: id.to_string(),
        };
        (
            control,
            ExecDriver {
                commands,
                exit: exit_tx,
            },
        )
    }

    /// A handle that resizes and kills, for another task.
    pub fn handle(&self) -> ExecHandle {
        ExecHandle {
            commands: self.commands.clone(),
        }
    }

    pub async fn kill(&self) {
        self.handle().kill().await;
    }

    /// Waits for the process to exit; its exit code.
    pub async fn wait(&mut self) -> Result<u32> {
        (&mut self.exit).await.unwrap_or_else(|_| {
            Err(RuntimeError::ExecLost {
                id: self.id.clone(),
            })
        })
    }
}

/// The kubelet's view of a container runtime. Implementations are cheap to share (`Arc`).
#[async_trait::async_trait]
pub trait ContainerRuntime: Send + Sync {
    /// Makes `reference` present and unpacked according to `policy`.
    async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo>;
    /// Imports an OCI-layout or `docker save` tarball; returns the image names created.
    async fn import_archive(&self, path: &std::path::Path) -> Result<Vec<String>>;
    async fn list_images(&self) -> Result<Vec<ImageInfo>>;
    /// Removes the image record `name` (content and snapshots only it used go with it,
    /// by the time this returns); an image already gone is no error.
    async fn remove_image(&self, name: &str) -> Result<()>;
    /// Creates the container (record + writable snapshot), not yet running.
    async fn create_container(&self, config: &ContainerConfig) -> Result<String>;
    /// Readies created container `id` for [`Self::start`] without running anything of
    /// the workload (containerd: the task — shim, logger, `runc create` — whose process
    /// waits for the start), so that what the caller waits for meanwhile (the pod's
    /// network being plugged) overlaps with it. A prepared container that is not to
    /// start after all goes with [`Self::remove`]. Default: nothing to do.
    async fn prepare_start(&self, _id: &str) -> Result<()> {
        Ok(())
    }
    /// Starts the container's process (preparing it first unless
    /// [`Self::prepare_start`] did); returns its host pid.
    async fn start(&self, id: &str) -> Result<u32>;
    /// Sends `signal`, then SIGKILL after `grace` if still running; returns once exited.
    async fn stop(&self, id: &str, signal: u32, grace: Duration) -> Result<ContainerStatus>;
    async fn status(&self, id: &str) -> Result<ContainerStatus>;
    /// Waits for the container's process to exit.
    async fn wait(&self, id: &str) -> Result<ContainerStatus>;
    /// Removes task, container record and snapshot; killing the process if it runs.
    async fn remove(&self, id: &str) -> Result<()>;
    /// Runs `cmd` in the running container and collects its output.
    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput>;
    /// Starts `request.cmd` in the running container with the streams it asks for.
    async fn exec_streaming(&self, id: &str, request: &ExecRequest) -> Result<ExecSession>;
    /// A write end of the container's stdin for an attach (the process reads what is
    /// written); `None` when it has none or it was closed (`stdinOnce`, attached
    /// before). Default: none.
    async fn attach_stdin(&self, _id: &str) -> Result<Option<AttachedStdin>> {
        Ok(None)
    }
    /// Closes the container's stdin for good once the writers are gone (the process
    /// reads EOF): a `stdinOnce` container's first attach ended. Best effort.
    async fn close_stdin(&self, _id: &str) {}
    /// Resizes the terminal of the container's main process (`tty: true`); best
    /// effort. Default: nothing.
    async fn resize_terminal(&self, _id: &str, _size: TerminalSize) {}
    async fn list_containers(&self) -> Result<Vec<ContainerSummary>>;
    /// The containers whose label `key` is `value` (a pod's, by its uid label). Runtimes
    /// that can filter on their side override this: a pod's teardown then does not fetch
    /// every container of the node (with its runtime spec) to find its own.
    async fn list_containers_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ContainerSummary>> {
        let mut all = self.list_containers().await?;
        all.retain(|c| c.labels.get(key).is_some_and(|v| v == value));
        Ok(all)
    }
    /// The runtime's version; an error when it does not answer (the health check).
    async fn version(&self) -> Result<String>;
    /// Sends the runtime's container events to `out` as they happen, until the event
    /// stream ends (`Ok`: the runtime closed it, or `out` was dropped) or breaks (`Err`).
    /// Events that happen while nobody follows are lost: a new follower re-reads state.
    async fn follow_events(&self, out: mpsc::Sender<ContainerEvent>) -> Result<()>;
}

/// A change of a container the runtime tells of as it happens.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContainerEvent {
    /// The container's main process exited.
    Exited { id: String },
    /// The kernel's OOM killer ended a process of the container.
    OomKilled { id: String },
}

impl ContainerEvent {
    /// The container the event is about.
    pub fn container_id(&self) -> &str {
        match self {
            ContainerEvent::Exited { id } | ContainerEvent::OomKilled { id } => id,
        }
    }
}
