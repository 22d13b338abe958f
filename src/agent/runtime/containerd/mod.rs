//! `ContainerRuntime` on containerd's gRPC API (1.6 and later). containerd 1.6 has no
//! Transfer service, so pulls and imports happen here: blobs go through the Content
//! service, layers are unpacked with the Diff service onto Snapshots, and the image record
//! is written with the Images service — all under a lease so GC cannot race us.

mod content;
mod events;
mod exec;
mod images;
mod manifest;
mod shim_groups;
mod snapshots;
mod stdin;
mod tasks;
mod userdb;

use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use containerd_client::services::v1::{CreateRequest, DeleteRequest};
use containerd_client::tonic::metadata::{AsciiMetadataValue, MetadataValue};
use containerd_client::tonic::{Request, Status};
use tracing::{debug, warn};

use super::registry::RegistryClient;
use super::{
    cgroup, ContainerConfig, ContainerEvent, ContainerRuntime, ContainerStatus, ContainerSummary,
    ExecOutput, ExecRequest, ExecSession, ImageInfo, PullPolicy, RegistryAuth, Result,
    RuntimeError,
};

pub use manifest::{chain_ids, gc_labels, host_platform};
pub use shim_groups::ShimSharing;

pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
/// Label on orc's containerd containers: where the logger writes.
pub const LOG_PATH_LABEL: &str = "io.orc.runtime/log-path";
/// Label on orc's containerd containers: the container's cgroup path.
pub const CGROUP_PATH_LABEL: &str = "io.orc.runtime/cgroup-path";
const SPEC_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Spec";
const PROCESS_TYPE_URL: &str = "types.containerd.io/opencontainers/runtime-spec/1/Process";
const NAMESPACE_HEADER: &str = "containerd-namespace";
const LEASE_HEADER: &str = "containerd-lease";
/// A lease outlives a crashed orc by at most this long.
const LEASE_EXPIRY: chrono::Duration = chrono::Duration::hours(1);
const WRITE_CHUNK: usize = 1 << 20;
/// How long a SIGKILLed task may take to be reported gone.
const KILL_WAIT: Duration = Duration::from_secs(10);
/// `TERM` of an exec with a tty whose container sets none (as containerd's CRI does).
const TTY_TERM: &str = "TERM=xterm";
/// How long the shim may take to open an exec's output fifos once the process started.
const FIFO_OPEN_TIMEOUT: Duration = Duration::from_secs(10);

/// Where and how to reach containerd.
#[derive(Debug, Clone)]
pub struct ContainerdConfig {
    pub socket: PathBuf,
    pub namespace: String,
    pub snapshotter: String,
    /// The runtime handlers containers may name, and the default one.
    pub handlers: super::handlers::Handlers,
    /// The binary the shim runs as the container logger (`orc container-logger PATH`).
    pub logger_binary: PathBuf,
    /// How the logger rotates containers' log files; `None`: never.
    pub log_rotation: Option<super::logger::Rotation>,
    /// Directory exec output is collected in.
    pub exec_dir: PathBuf,
    pub cgroup_root: PathBuf,
    /// How many containers share a shim (see [`shim_groups`]).
    pub shim_sharing: ShimSharing,
}

impl ContainerdConfig {
    /// Defaults for `socket`: namespace `orc`, overlayfs, runc only, this executable as logger.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ContainerdConfig {
            socket: socket.into(),
            namespace: super::DEFAULT_NAMESPACE.to_string(),
            snapshotter: DEFAULT_SNAPSHOTTER.to_string(),
            handlers: super::handlers::Handlers::default(),
            logger_binary: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/usr/local/bin/orc")),
            log_rotation: Some(super::logger::DEFAULT_ROTATION),
            exec_dir: std::env::temp_dir().join("orc-exec"),
            cgroup_root: PathBuf::from(cgroup::CGROUP_ROOT),
            shim_sharing: ShimSharing::NONE,
        }
    }
}

pub struct ContainerdRuntime {
    client: containerd_client::Client,
    config: ContainerdConfig,
    namespace: AsciiMetadataValue,
    registry: RegistryClient,
    /// Images resolved from content, by target digest: content is immutable by digest,
    /// so a lookup of a present image reads only the image record and its top snapshot.
    resolved: Mutex<HashMap<String, images::ResolvedImage>>,
    /// Images found present (record read, top snapshot unpacked) by name, and when: a
    /// container made right after its image was ensured asks containerd no more about
    /// it (see [`PRESENT_FRESH`]).
    present: Mutex<HashMap<String, (std::time::Instant, images::ResolvedImage, String)>>,
    /// Containers created here and not started yet, with what starting them needs: the
    /// start of a new container asks containerd nothing it has just been told.
    created: Mutex<HashMap<String, tasks::Created>>,
    /// Containers whose task `prepare_start` created here and that have not started
    /// yet: their start is one call.
    tasks_created: Mutex<HashSet<String>>,
    /// The shim each new container's task joins.
    shim_groups: shim_groups::ShimGroups,
    /// Containers' stdin fifos (`stdin: true`).
    stdins: stdin::Stdins,
    /// Images' users and groups, by top snapshot (see [`userdb`]).
    users: Mutex<HashMap<String, std::sync::Arc<super::users::UserDb>>>,
}

/// Most images [`ContainerdRuntime`] keeps resolved (it forgets them all past this).
const RESOLVED_CACHE_MAX: usize = 256;
/// How long an image found present is taken as present without asking again. A
/// container whose image went meanwhile fails to get its snapshot, and is retried.
const PRESENT_FRESH: std::time::Duration = std::time::Duration::from_secs(5);
/// Most created-not-started containers it remembers (older ones are looked up).
const CREATED_CACHE_MAX: usize = 1024;

fn grpc(op: &'static str) -> impl FnOnce(Status) -> RuntimeError {
    move |source| RuntimeError::Containerd { op, source }
}

fn timestamp(ts: Option<prost_types::Timestamp>) -> Option<DateTime<Utc>> {
    let ts = ts?;
    if ts.seconds <= 0 {
        return None;
    }
    DateTime::from_timestamp(ts.seconds, ts.nanos.max(0) as u32)
}

impl ContainerdRuntime {
    /// Connects to containerd and checks that it answers.
    pub async fn connect(config: ContainerdConfig) -> Result<Self> {
        let namespace: AsciiMetadataValue = MetadataValue::try_from(config.namespace.as_str())
            .map_err(|_| RuntimeError::InvalidNamespace {
                namespace: config.namespace.clone(),
            })?;
        let channel = containerd_client::connect(&config.socket)
            .await
            .map_err(|source| RuntimeError::Connect {
                socket: config.socket.clone(),
                source,
            })?;
        let client = containerd_client::Client::from(channel);
        let version = client
            .version()
            .version(())
            .await
            .map_err(grpc("version"))?
            .into_inner();
        debug!(version = %version.version, socket = %config.socket.display(), "connected to containerd");
        let shim_groups = shim_groups::ShimGroups::new(
            config.shim_sharing,
            format!("orc-{}", &uuid::Uuid::new_v4().simple().to_string()[..12]),
        );
        let stdins = stdin::Stdins::new(config.exec_dir.join("stdin").join(&config.namespace));
        Ok(ContainerdRuntime {
            client,
            config,
            namespace,
            registry: RegistryClient::new()?,
            resolved: Mutex::default(),
            present: Mutex::default(),
            created: Mutex::default(),
            tasks_created: Mutex::default(),
            shim_groups,
            stdins,
            users: Mutex::new(HashMap::new()),
        })
    }

    pub fn config(&self) -> &ContainerdConfig {
        &self.config
    }

    fn resolved_cache(&self, digest: &str) -> Option<images::ResolvedImage> {
        let cache = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        cache.get(digest).cloned()
    }

    fn remember_resolved(&self, image: &images::ResolvedImage) {
        let mut cache = self.resolved.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= RESOLVED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(image.target.digest.clone(), image.clone());
    }

    fn remember_created(&self, id: &str, created: tasks::Created) {
        let mut cache = self.created.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= CREATED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(id.to_string(), created);
    }

    fn remember_present(&self, name: &str, image: &images::ResolvedImage, top: &str) {
        let mut cache = self.present.lock().unwrap_or_else(|e| e.into_inner());
        if cache.len() >= RESOLVED_CACHE_MAX {
            cache.clear();
        }
        cache.insert(
            name.to_string(),
            (std::time::Instant::now(), image.clone(), top.to_string()),
        );
    }

    /// The image `name` and its top snapshot if found present less than
    /// [`PRESENT_FRESH`] ago.
    fn recently_present(&self, name: &str) -> Option<(images::ResolvedImage, String)> {
        let cache = self.present.lock().unwrap_or_else(|e| e.into_inner());
        let (at, image, top) = cache.get(name)?;
        (at.elapsed() < PRESENT_FRESH).then(|| (image.clone(), top.clone()))
    }

    fn forget_present(&self, name: &str) {
        let mut cache = self.present.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(name);
    }

    fn take_created(&self, id: &str) -> Option<tasks::Created> {
        let mut cache = self.created.lock().unwrap_or_else(|e| e.into_inner());
        cache.remove(id)
    }

    fn remember_task_created(&self, id: &str) {
        let mut set = self.tasks_created.lock().unwrap_or_else(|e| e.into_inner());
        if set.len() >= CREATED_CACHE_MAX {
            // Forgotten ones are found again by their start (task created, not running).
            set.clear();
        }
        set.insert(id.to_string());
    }

    /// Whether the task of `id` was created here by `prepare_start` (and forgets it).
    fn take_task_created(&self, id: &str) -> bool {
        let mut set = self.tasks_created.lock().unwrap_or_else(|e| e.into_inner());
        set.remove(id)
    }

    fn request<T>(&self, msg: T, lease: Option<&str>) -> Request<T> {
        let mut req = Request::new(msg);
        req.metadata_mut()
            .insert(NAMESPACE_HEADER, self.namespace.clone());
        if let Some(l) = lease.and_then(|l| MetadataValue::try_from(l).ok()) {
            req.metadata_mut().insert(LEASE_HEADER, l);
        }
        req
    }

    // ---- leases -------------------------------------------------------------------

    async fn create_lease(&self) -> Result<String> {
        let id = format!("orc-{}", uuid::Uuid::new_v4().simple());
        let expire = (Utc::now() + LEASE_EXPIRY).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        self.client
            .leases()
            .create(self.request(
                CreateRequest {
                    id: id.clone(),
                    labels: [("containerd.io/gc.expire".to_string(), expire)].into(),
                },
                None,
            ))
            .await
            .map_err(grpc("create lease"))?;
        Ok(id)
    }

    async fn delete_lease(&self, id: &str) {
        let req = self.request(
            DeleteRequest {
                id: id.to_string(),
                sync: false,
            },
            None,
        );
        if let Err(e) = self.client.leases().delete(req).await {
            warn!(lease = id, error = %e.message(), "delete lease failed; it expires by itself");
        }
    }
}

/// Each operation lives with what it works on (`images`, `tasks`, `exec`); this impl
/// only routes to them.
#[async_trait::async_trait]
impl ContainerRuntime for ContainerdRuntime {
    async fn version(&self) -> Result<String> {
        let version = self
            .client
            .version()
            .version(())
            .await
            .map_err(grpc("version"))?
            .into_inner();
        Ok(version.version)
    }

    async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo> {
        self.pull_unless_present(reference, policy, auth).await
    }

    async fn import_archive(&self, path: &Path) -> Result<Vec<String>> {
        self.import_archive_file(path).await
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.usable_images().await
    }

    async fn remove_image(&self, name: &str) -> Result<()> {
        self.delete_image(name).await
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<String> {
        self.create_container_record(config).await
    }

    async fn prepare_start(&self, id: &str) -> Result<()> {
        self.prepare_task(id).await
    }

    async fn start(&self, id: &str) -> Result<u32> {
        self.start_task(id).await
    }

    async fn stop(&self, id: &str, signal: u32, grace: Duration) -> Result<ContainerStatus> {
        self.stop_task(id, signal, grace).await
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus> {
        self.container_status(id).await
    }

    async fn wait(&self, id: &str) -> Result<ContainerStatus> {
        self.wait_task(id).await
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.remove_container(id).await
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
        self.exec_captured(id, cmd, timeout).await
    }

    async fn exec_streaming(&self, id: &str, request: &ExecRequest) -> Result<ExecSession> {
        self.exec_streamed(id, request).await
    }

    async fn attach_stdin(&self, id: &str) -> Result<Option<super::AttachedStdin>> {
        self.open_container_stdin(id).await
    }

    async fn close_stdin(&self, id: &str) {
        self.close_container_stdin(id).await
    }

    async fn resize_terminal(&self, id: &str, size: super::TerminalSize) {
        self.resize_task_terminal(id, size).await
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        self.container_summaries(Vec::new()).await
    }

    async fn list_containers_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ContainerSummary>> {
        self.container_summaries(vec![tasks::label_filter(key, value)])
            .await
    }

    async fn follow_events(&self, out: tokio::sync::mpsc::Sender<ContainerEvent>) -> Result<()> {
        self.follow_task_events(out).await
    }
}
