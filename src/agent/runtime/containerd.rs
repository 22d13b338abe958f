//! `ContainerRuntime` on containerd's gRPC API (1.6 and later). containerd 1.6 has no
//! Transfer service, so pulls and imports happen here: blobs go through the Content
//! service, layers are unpacked with the Diff service onto Snapshots, and the image record
//! is written with the Images service — all under a lease so GC cannot race us.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use chrono::{DateTime, Utc};
use containerd_client::services::v1::container::Runtime as ContainerRuntimeInfo;
use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, MountsRequest, PrepareSnapshotRequest, RemoveSnapshotRequest,
    StatSnapshotRequest,
};
use containerd_client::services::v1::tasks_client::TasksClient;
use containerd_client::services::v1::{
    ApplyRequest, CloseIoRequest, Container, CreateContainerRequest, CreateImageRequest,
    CreateRequest, CreateTaskRequest, DeleteContainerRequest, DeleteProcessRequest, DeleteRequest,
    DeleteTaskRequest, ExecProcessRequest, GetContainerRequest, GetImageRequest, GetRequest, Image,
    InfoRequest, KillRequest, ListContainersRequest, ListImagesRequest, ListTasksRequest,
    ReadContentRequest, ResizePtyRequest, StartRequest, UpdateImageRequest, UpdateRequest,
    WaitRequest, WriteAction, WriteContentRequest, WriteContentResponse,
};
use containerd_client::tonic::metadata::{AsciiMetadataValue, MetadataValue};
use containerd_client::tonic::transport::Channel;
use containerd_client::tonic::{Code, Request, Status, Streaming};
use containerd_client::types::v1::{Process, Status as TaskStatus};
use containerd_client::types::{Descriptor as PbDescriptor, Mount as PbMount};
use futures::{Stream, StreamExt};
use serde::Deserialize;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tracing::{debug, info, warn};

use super::archive::{self, BlobSource, Descriptor};
use super::exec_fifos::{ExecFifos, PendingReader};
use super::registry::{sha256_digest, RegistryClient, MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX};
use super::{
    cgroup, logger, spec, ContainerConfig, ContainerRuntime, ContainerState, ContainerStatus,
    ContainerSummary, ExecCommand, ExecControl, ExecDriver, ExecOutput, ExecReader, ExecRequest,
    ExecSession, ExecWriter, ImageInfo, PullPolicy, Reference, RegistryAuth, Result, RuntimeError,
    TerminalSize, SIGKILL,
};

pub const DEFAULT_SNAPSHOTTER: &str = "overlayfs";
pub const DEFAULT_RUNTIME: &str = "io.containerd.runc.v2";
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
    pub runtime: String,
    /// The binary the shim runs as the container logger (`orc container-logger PATH`).
    pub logger_binary: PathBuf,
    /// Directory exec output is collected in.
    pub exec_dir: PathBuf,
    pub cgroup_root: PathBuf,
}

impl ContainerdConfig {
    /// Defaults for `socket`: namespace `orc`, overlayfs, runc v2, this executable as logger.
    pub fn new(socket: impl Into<PathBuf>) -> Self {
        ContainerdConfig {
            socket: socket.into(),
            namespace: super::DEFAULT_NAMESPACE.to_string(),
            snapshotter: DEFAULT_SNAPSHOTTER.to_string(),
            runtime: DEFAULT_RUNTIME.to_string(),
            logger_binary: std::env::current_exe()
                .unwrap_or_else(|_| PathBuf::from("/usr/local/bin/orc")),
            exec_dir: std::env::temp_dir().join("orc-exec"),
            cgroup_root: PathBuf::from(cgroup::CGROUP_ROOT),
        }
    }
}

pub struct ContainerdRuntime {
    client: containerd_client::Client,
    config: ContainerdConfig,
    namespace: AsciiMetadataValue,
    registry: RegistryClient,
}

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

/// Chain IDs of a layer stack: the snapshot names containerd (and Docker) use.
pub fn chain_ids(diff_ids: &[String]) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(diff_ids.len());
    for d in diff_ids {
        let next = match out.last() {
            None => d.clone(),
            Some(prev) => sha256_digest(format!("{prev} {d}").as_bytes()),
        };
        out.push(next);
    }
    out
}

/// This machine's platform as image indexes name it: (architecture, variant).
pub fn host_platform() -> (&'static str, Option<&'static str>) {
    match std::env::consts::ARCH {
        "x86_64" => ("amd64", None),
        "aarch64" => ("arm64", None),
        "arm" => ("arm", Some("v7")),
        "x86" => ("386", None),
        other => (other, None),
    }
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct DescriptorDoc {
    #[serde(default)]
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    platform: Option<PlatformDoc>,
}

#[derive(Debug, Deserialize)]
struct PlatformDoc {
    architecture: String,
    os: String,
    #[serde(default)]
    variant: Option<String>,
}

#[derive(Debug, Deserialize)]
struct ManifestDoc {
    #[serde(default)]
    manifests: Option<Vec<DescriptorDoc>>,
    #[serde(default)]
    config: Option<DescriptorDoc>,
    #[serde(default)]
    layers: Vec<DescriptorDoc>,
}

#[derive(Debug, Deserialize)]
struct RootFsDoc {
    diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
struct ConfigDoc {
    rootfs: RootFsDoc,
    #[serde(default)]
    config: Option<serde_json::Value>,
}

/// Picks the manifest for this host from an index.
fn pick_platform(manifests: &[DescriptorDoc]) -> Option<&DescriptorDoc> {
    let (arch, variant) = host_platform();
    manifests.iter().find(|m| match &m.platform {
        Some(p) => {
            p.os == "linux"
                && p.architecture == arch
                && match (&p.variant, variant) {
                    (Some(v), Some(want)) => v == want,
                    _ => true,
                }
        }
        None => false,
    })
}

/// Labels that let containerd's GC follow a manifest/index to what it references.
pub fn gc_labels(blob: &[u8]) -> BTreeMap<String, String> {
    let mut labels = BTreeMap::new();
    let Ok(doc) = serde_json::from_slice::<ManifestDoc>(blob) else {
        return labels;
    };
    if let Some(ms) = doc.manifests {
        for (i, m) in ms.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.m.{i}"),
                m.digest.clone(),
            );
        }
    }
    if let Some(c) = doc.config {
        labels.insert("containerd.io/gc.ref.content.config".into(), c.digest);
        for (i, l) in doc.layers.iter().enumerate() {
            labels.insert(
                format!("containerd.io/gc.ref.content.l.{i}"),
                l.digest.clone(),
            );
        }
    }
    labels
}

/// An image resolved to this platform's manifest and config.
struct ResolvedImage {
    target: Descriptor,
    config_digest: String,
    layers: Vec<Descriptor>,
    diff_ids: Vec<String>,
    config: Option<oci_spec::image::Config>,
}

impl ResolvedImage {
    fn info(&self, name: &str) -> ImageInfo {
        ImageInfo {
            name: name.to_string(),
            digest: self.target.digest.clone(),
            config_digest: self.config_digest.clone(),
            size: self.layers.iter().map(|l| l.size).sum(),
        }
    }
}

fn to_descriptor(d: &DescriptorDoc) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
    }
}

fn to_pb(d: &Descriptor) -> PbDescriptor {
    PbDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: HashMap::new(),
    }
}

fn is_index(media_type: &str, doc: &ManifestDoc) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST || doc.manifests.is_some()
}

/// An open content write (`Content.Write` stream), committed with `commit`.
struct ContentWriter {
    tx: mpsc::Sender<WriteContentRequest>,
    responses: Streaming<WriteContentResponse>,
    reference: String,
    expected: String,
    total: i64,
    offset: i64,
}

impl ContentWriter {
    async fn round_trip(&mut self, req: WriteContentRequest) -> Result<WriteContentResponse> {
        let closed = || RuntimeError::Containerd {
            op: "write content",
            source: Status::unavailable("write stream closed"),
        };
        self.tx.send(req).await.map_err(|_| closed())?;
        self.responses
            .message()
            .await
            .map_err(grpc("write content"))?
            .ok_or_else(closed)
    }

    async fn write(&mut self, data: Bytes) -> Result<()> {
        for chunk in data.chunks(WRITE_CHUNK) {
            let req = WriteContentRequest {
                action: WriteAction::Write as i32,
                r#ref: self.reference.clone(),
                offset: self.offset,
                data: chunk.to_vec(),
                ..Default::default()
            };
            let resp = self.round_trip(req).await?;
            self.offset = resp.offset;
        }
        Ok(())
    }

    /// Commits; content that appeared meanwhile (a parallel pull) counts as success.
    async fn commit(mut self, labels: BTreeMap<String, String>) -> Result<String> {
        let req = WriteContentRequest {
            action: WriteAction::Commit as i32,
            r#ref: self.reference.clone(),
            total: self.total,
            offset: self.offset,
            expected: self.expected.clone(),
            labels: labels.into_iter().collect(),
            ..Default::default()
        };
        match self.round_trip(req).await {
            Ok(resp) => Ok(resp.digest),
            Err(RuntimeError::Containerd { source, .. })
                if source.code() == Code::AlreadyExists && !self.expected.is_empty() =>
            {
                Ok(self.expected.clone())
            }
            Err(e) => Err(e),
        }
    }
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
        Ok(ContainerdRuntime {
            client,
            config,
            namespace,
            registry: RegistryClient::new()?,
        })
    }

    pub fn config(&self) -> &ContainerdConfig {
        &self.config
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

    // ---- content ------------------------------------------------------------------

    async fn content_exists(&self, digest: &str) -> Result<bool> {
        let req = self.request(
            InfoRequest {
                digest: digest.to_string(),
            },
            None,
        );
        match self.client.content().info(req).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(grpc("content info")(s)),
        }
    }

    async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
        let req = self.request(
            ReadContentRequest {
                digest: digest.to_string(),
                offset: 0,
                size: 0,
            },
            None,
        );
        let mut stream = self
            .client
            .content()
            .read(req)
            .await
            .map_err(grpc("read content"))?
            .into_inner();
        let mut out = Vec::new();
        while let Some(chunk) = stream.message().await.map_err(grpc("read content"))? {
            out.extend_from_slice(&chunk.data);
        }
        Ok(out)
    }

    async fn set_labels(&self, digest: &str, labels: BTreeMap<String, String>) -> Result<()> {
        if labels.is_empty() {
            return Ok(());
        }
        let paths = labels.keys().map(|k| format!("labels.{k}")).collect();
        let req = self.request(
            UpdateRequest {
                info: Some(containerd_client::services::v1::Info {
                    digest: digest.to_string(),
                    labels: labels.into_iter().collect(),
                    ..Default::default()
                }),
                update_mask: Some(prost_types::FieldMask { paths }),
            },
            None,
        );
        self.client
            .content()
            .update(req)
            .await
            .map_err(grpc("update content labels"))?;
        Ok(())
    }

    async fn begin_write(&self, lease: &str, expected: &str, total: i64) -> Result<ContentWriter> {
        let reference = format!("orc-{}-{}", expected, uuid::Uuid::new_v4().simple());
        let (tx, rx) = mpsc::channel(2);
        let stat = WriteContentRequest {
            action: WriteAction::Stat as i32,
            r#ref: reference.clone(),
            total,
            expected: expected.to_string(),
            ..Default::default()
        };
        tx.send(stat).await.expect("receiver is alive");
        let mut responses = self
            .client
            .content()
            .write(self.request(ReceiverStream::new(rx), Some(lease)))
            .await
            .map_err(grpc("write content"))?
            .into_inner();
        let status = responses
            .message()
            .await
            .map_err(grpc("write content"))?
            .ok_or_else(|| RuntimeError::Containerd {
                op: "write content",
                source: Status::unavailable("write stream closed"),
            })?;
        Ok(ContentWriter {
            tx,
            responses,
            reference,
            expected: expected.to_string(),
            total,
            offset: status.offset,
        })
    }

    /// Writes a blob unless containerd has it; labels are (re)applied either way.
    async fn write_blob<S>(
        &self,
        lease: &str,
        desc: &Descriptor,
        labels: BTreeMap<String, String>,
        data: S,
    ) -> Result<()>
    where
        S: Stream<Item = Result<Bytes>> + Unpin,
    {
        if self.content_exists(&desc.digest).await? {
            match self.set_labels(&desc.digest, labels.clone()).await {
                // Collected between the two calls: write it again below.
                Err(RuntimeError::Containerd { source, .. }) if source.code() == Code::NotFound => {
                }
                other => return other,
            }
        }
        let mut w = self.begin_write(lease, &desc.digest, desc.size).await?;
        let mut data = data;
        while let Some(chunk) = data.next().await {
            w.write(chunk?).await?;
        }
        w.commit(labels).await?;
        Ok(())
    }

    async fn write_bytes(&self, lease: &str, desc: &Descriptor, bytes: Bytes) -> Result<()> {
        let labels = gc_labels(&bytes);
        self.write_blob(lease, desc, labels, futures::stream::iter([Ok(bytes)]))
            .await
    }

    // ---- images -------------------------------------------------------------------

    /// Follows an image target to this platform's manifest and config (read from content).
    async fn resolve(&self, reference: &str, target: &Descriptor) -> Result<ResolvedImage> {
        let invalid = |reason: String| RuntimeError::InvalidImage {
            reference: reference.to_string(),
            reason,
        };
        let top = self.read_blob(&target.digest).await?;
        let doc: ManifestDoc = serde_json::from_slice(&top)
            .map_err(|e| invalid(format!("manifest {}: {e}", target.digest)))?;
        let manifest = if is_index(&target.media_type, &doc) {
            let ms = doc.manifests.unwrap_or_default();
            let m = pick_platform(&ms).ok_or_else(|| RuntimeError::NoMatchingPlatform {
                reference: reference.to_string(),
                platform: format!("linux/{}", host_platform().0),
            })?;
            let bytes = self.read_blob(&m.digest).await?;
            serde_json::from_slice::<ManifestDoc>(&bytes)
                .map_err(|e| invalid(format!("manifest {}: {e}", m.digest)))?
        } else {
            doc
        };
        let config_desc = manifest
            .config
            .ok_or_else(|| invalid("manifest without config".into()))?;
        let config_bytes = self.read_blob(&config_desc.digest).await?;
        let config: ConfigDoc = serde_json::from_slice(&config_bytes)
            .map_err(|e| invalid(format!("config {}: {e}", config_desc.digest)))?;
        if config.rootfs.diff_ids.len() != manifest.layers.len() {
            return Err(invalid(format!(
                "{} layers but {} diff_ids",
                manifest.layers.len(),
                config.rootfs.diff_ids.len()
            )));
        }
        let process_config = match config.config {
            Some(v) if !v.is_null() => {
                Some(serde_json::from_value(v).map_err(|e| invalid(format!("image config: {e}")))?)
            }
            _ => None,
        };
        Ok(ResolvedImage {
            target: target.clone(),
            config_digest: config_desc.digest,
            layers: manifest.layers.iter().map(to_descriptor).collect(),
            diff_ids: config.rootfs.diff_ids,
            config: process_config,
        })
    }

    async fn snapshot_exists(&self, key: &str) -> Result<bool> {
        let req = self.request(
            StatSnapshotRequest {
                snapshotter: self.config.snapshotter.clone(),
                key: key.to_string(),
            },
            None,
        );
        match self.client.snapshots().stat(req).await {
            Ok(_) => Ok(true),
            Err(s) if s.code() == Code::NotFound => Ok(false),
            Err(s) => Err(grpc("stat snapshot")(s)),
        }
    }

    async fn remove_snapshot(&self, key: &str) -> Result<()> {
        let req = self.request(
            RemoveSnapshotRequest {
                snapshotter: self.config.snapshotter.clone(),
                key: key.to_string(),
            },
            None,
        );
        match self.client.snapshots().remove(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("remove snapshot")(s)),
        }
    }

    /// Unpacks the image's layers into committed snapshots named by chain ID; returns the
    /// top one. Layers already unpacked are skipped.
    async fn unpack(&self, reference: &str, image: &ResolvedImage) -> Result<String> {
        let chain = chain_ids(&image.diff_ids);
        let Some(top) = chain.last().cloned() else {
            return Err(RuntimeError::InvalidImage {
                reference: reference.to_string(),
                reason: "image has no layers".into(),
            });
        };
        if self.snapshot_exists(&top).await? {
            return Ok(top);
        }
        let lease = self.create_lease().await?;
        let result = self.unpack_layers(&lease, reference, image, &chain).await;
        self.delete_lease(&lease).await;
        result?;
        Ok(top)
    }

    async fn unpack_layers(
        &self,
        lease: &str,
        reference: &str,
        image: &ResolvedImage,
        chain: &[String],
    ) -> Result<()> {
        let mut parent = String::new();
        for (i, chain_id) in chain.iter().enumerate() {
            if !self.snapshot_exists(chain_id).await? {
                self.unpack_layer(
                    lease,
                    reference,
                    &image.layers[i],
                    &image.diff_ids[i],
                    &parent,
                    chain_id,
                )
                .await?;
            }
            parent = chain_id.clone();
        }
        let gc_ref = format!("containerd.io/gc.ref.snapshot.{}", self.config.snapshotter);
        self.set_labels(
            &image.config_digest,
            [(gc_ref, chain[chain.len() - 1].clone())].into(),
        )
        .await
    }

    async fn unpack_layer(
        &self,
        lease: &str,
        reference: &str,
        layer: &Descriptor,
        diff_id: &str,
        parent: &str,
        chain_id: &str,
    ) -> Result<()> {
        let key = format!("orc-extract-{}-{chain_id}", uuid::Uuid::new_v4().simple());
        let prepared = self
            .client
            .snapshots()
            .prepare(self.request(
                PrepareSnapshotRequest {
                    snapshotter: self.config.snapshotter.clone(),
                    key: key.clone(),
                    parent: parent.to_string(),
                    labels: HashMap::new(),
                },
                Some(lease),
            ))
            .await
            .map_err(grpc("prepare snapshot"))?
            .into_inner();
        let applied = async {
            let applied = self
                .client
                .diff()
                .apply(self.request(
                    ApplyRequest {
                        diff: Some(to_pb(layer)),
                        mounts: prepared.mounts,
                        payloads: HashMap::new(),
                        sync_fs: false,
                    },
                    Some(lease),
                ))
                .await
                .map_err(grpc("apply layer"))?
                .into_inner()
                .applied
                .unwrap_or_default();
            if applied.digest != diff_id {
                return Err(RuntimeError::InvalidImage {
                    reference: reference.to_string(),
                    reason: format!(
                        "layer {} unpacked to {} but the config says {diff_id}",
                        layer.digest, applied.digest
                    ),
                });
            }
            let commit = self
                .client
                .snapshots()
                .commit(self.request(
                    CommitSnapshotRequest {
                        snapshotter: self.config.snapshotter.clone(),
                        name: chain_id.to_string(),
                        key: key.clone(),
                        labels: HashMap::new(),
                    },
                    Some(lease),
                ))
                .await;
            match commit {
                Ok(_) => Ok(()),
                // Someone else unpacked the same layer meanwhile.
                Err(s) if s.code() == Code::AlreadyExists => self.remove_snapshot(&key).await,
                Err(s) => Err(grpc("commit snapshot")(s)),
            }
        }
        .await;
        if applied.is_err() {
            let _ = self.remove_snapshot(&key).await;
        }
        applied
    }

    async fn put_image(&self, name: &str, target: &Descriptor) -> Result<()> {
        let image = Image {
            name: name.to_string(),
            target: Some(to_pb(target)),
            ..Default::default()
        };
        let created = self
            .client
            .images()
            .create(self.request(
                CreateImageRequest {
                    image: Some(image.clone()),
                    source_date_epoch: None,
                },
                None,
            ))
            .await;
        match created {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::AlreadyExists => {
                self.client
                    .images()
                    .update(self.request(
                        UpdateImageRequest {
                            image: Some(image),
                            update_mask: Some(prost_types::FieldMask {
                                paths: vec!["target".into()],
                            }),
                            source_date_epoch: None,
                        },
                        None,
                    ))
                    .await
                    .map_err(grpc("update image"))?;
                Ok(())
            }
            Err(s) => Err(grpc("create image")(s)),
        }
    }

    async fn get_image(&self, name: &str) -> Result<Option<Descriptor>> {
        let req = self.request(
            GetImageRequest {
                name: name.to_string(),
            },
            None,
        );
        match self.client.images().get(req).await {
            Ok(resp) => {
                let target = resp
                    .into_inner()
                    .image
                    .and_then(|i| i.target)
                    .unwrap_or_default();
                Ok(Some(Descriptor {
                    media_type: target.media_type,
                    digest: target.digest,
                    size: target.size,
                }))
            }
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(grpc("get image")(s)),
        }
    }

    /// The image as present (unpacking it if its snapshots are missing), or `None`.
    async fn present_image(&self, name: &str) -> Result<Option<(ResolvedImage, String)>> {
        let Some(target) = self.get_image(name).await? else {
            return Ok(None);
        };
        let resolved = self.resolve(name, &target).await?;
        let top = self.unpack(name, &resolved).await?;
        Ok(Some((resolved, top)))
    }

    /// Pulls `r` from its registry into content, unpacks it and records the image.
    pub async fn pull(&self, r: &Reference, auth: Option<&RegistryAuth>) -> Result<ImageInfo> {
        let name = r.to_string();
        info!(image = %name, "pulling image");
        // The lease protects the blobs from containerd's garbage collector until the
        // image record references them.
        let lease = self.create_lease().await?;
        let result = async {
            let target = self.pull_with_lease(&lease, r, auth).await?;
            let resolved = self.resolve(&name, &target).await?;
            self.unpack(&name, &resolved).await?;
            self.put_image(&name, &target).await?;
            Ok(resolved.info(&name))
        }
        .await;
        self.delete_lease(&lease).await;
        result
    }

    async fn pull_with_lease(
        &self,
        lease: &str,
        r: &Reference,
        auth: Option<&RegistryAuth>,
    ) -> Result<Descriptor> {
        let name = r.to_string();
        let invalid = |reason: String| RuntimeError::InvalidImage {
            reference: name.clone(),
            reason,
        };
        let top = self
            .registry
            .manifest(r, r.manifest_reference(), auth)
            .await?;
        let top_doc: ManifestDoc = serde_json::from_slice(&top.bytes)
            .map_err(|e| invalid(format!("manifest {}: {e}", top.digest)))?;
        let top_desc = Descriptor {
            media_type: top.media_type.clone(),
            digest: top.digest.clone(),
            size: top.bytes.len() as i64,
        };
        let (manifest, manifest_doc) = if is_index(&top.media_type, &top_doc) {
            let ms = top_doc.manifests.as_deref().unwrap_or_default();
            let m = pick_platform(ms).ok_or_else(|| RuntimeError::NoMatchingPlatform {
                reference: name.clone(),
                platform: format!("linux/{}", host_platform().0),
            })?;
            let fetched = self.registry.manifest(r, &m.digest, auth).await?;
            let doc: ManifestDoc = serde_json::from_slice(&fetched.bytes)
                .map_err(|e| invalid(format!("manifest {}: {e}", fetched.digest)))?;
            (fetched, doc)
        } else {
            (top.clone(), top_doc)
        };
        let config = manifest_doc
            .config
            .as_ref()
            .ok_or_else(|| invalid("manifest without config".into()))?;
        for blob in std::iter::once(config).chain(&manifest_doc.layers) {
            let desc = to_descriptor(blob);
            if self.content_exists(&desc.digest).await? {
                continue;
            }
            debug!(image = %name, digest = %desc.digest, size = desc.size, "fetching blob");
            let stream = self.registry.blob(r, &desc.digest, auth).await?;
            self.write_blob(lease, &desc, BTreeMap::new(), stream)
                .await?;
        }
        let manifest_desc = Descriptor {
            media_type: manifest.media_type.clone(),
            digest: manifest.digest.clone(),
            size: manifest.bytes.len() as i64,
        };
        self.write_bytes(lease, &manifest_desc, manifest.bytes.clone())
            .await?;
        if top.digest != manifest.digest {
            self.write_bytes(lease, &top_desc, top.bytes.clone())
                .await?;
        }
        Ok(top_desc)
    }

    async fn import_with_lease(&self, lease: &str, path: &Path) -> Result<Vec<String>> {
        let owned = path.to_path_buf();
        let plan = tokio::task::spawn_blocking(move || archive::plan(&owned))
            .await
            .expect("archive scan panicked")?;
        for (digest, (size, source)) in &plan.blobs {
            if let BlobSource::Memory(bytes) = source {
                let desc = Descriptor {
                    media_type: String::new(),
                    digest: digest.clone(),
                    size: *size,
                };
                self.write_bytes(lease, &desc, bytes.clone()).await?;
            }
        }
        self.import_streamed(lease, path, archive::streamed_files(&plan))
            .await?;
        let mut names = Vec::new();
        for (name, target) in &plan.images {
            let resolved = self.resolve(name, target).await?;
            self.unpack(name, &resolved).await?;
            self.put_image(name, target).await?;
            info!(image = %name, digest = %target.digest, "imported image");
            names.push(name.clone());
        }
        Ok(names)
    }

    /// Second pass over the archive: streams the large blobs into content.
    async fn import_streamed(
        &self,
        lease: &str,
        path: &Path,
        wanted: HashMap<String, (String, i64)>,
    ) -> Result<()> {
        if wanted.is_empty() {
            return Ok(());
        }
        enum Msg {
            Begin(Descriptor),
            Chunk(Bytes),
            End,
        }
        let (tx, mut rx) = mpsc::channel::<Msg>(4);
        let owned = path.to_path_buf();
        let reader = tokio::task::spawn_blocking(move || -> Result<()> {
            use std::io::Read;
            let read_err = |source| RuntimeError::ReadArchive {
                path: owned.clone(),
                source,
            };
            let mut archive = archive::open(&owned)?;
            for entry in archive.entries().map_err(read_err)? {
                let mut entry = entry.map_err(read_err)?;
                let name = entry
                    .path()
                    .map_err(read_err)?
                    .to_string_lossy()
                    .to_string();
                let name = name.trim_start_matches("./").trim_start_matches('/');
                let Some((digest, size)) = wanted.get(name) else {
                    continue;
                };
                let begin = Msg::Begin(Descriptor {
                    media_type: String::new(),
                    digest: digest.clone(),
                    size: *size,
                });
                if tx.blocking_send(begin).is_err() {
                    return Ok(()); // the writer gave up; its error is reported
                }
                let mut buf = vec![0u8; WRITE_CHUNK];
                loop {
                    let n = entry.read(&mut buf).map_err(read_err)?;
                    if n == 0 {
                        break;
                    }
                    if tx
                        .blocking_send(Msg::Chunk(Bytes::copy_from_slice(&buf[..n])))
                        .is_err()
                    {
                        return Ok(());
                    }
                }
                if tx.blocking_send(Msg::End).is_err() {
                    return Ok(());
                }
            }
            Ok(())
        });
        let written = async {
            let mut writer: Option<ContentWriter> = None;
            while let Some(msg) = rx.recv().await {
                match msg {
                    Msg::Begin(desc) => {
                        writer = if self.content_exists(&desc.digest).await? {
                            None
                        } else {
                            Some(self.begin_write(lease, &desc.digest, desc.size).await?)
                        };
                    }
                    Msg::Chunk(data) => {
                        if let Some(w) = writer.as_mut() {
                            w.write(data).await?;
                        }
                    }
                    Msg::End => {
                        if let Some(w) = writer.take() {
                            w.commit(BTreeMap::new()).await?;
                        }
                    }
                }
            }
            Ok::<(), RuntimeError>(())
        }
        .await;
        drop(rx);
        let read = reader.await.expect("archive reader panicked");
        written.and(read)
    }

    // ---- containers ---------------------------------------------------------------

    async fn get_container(&self, id: &str) -> Result<Container> {
        let req = self.request(GetContainerRequest { id: id.to_string() }, None);
        match self.client.containers().get(req).await {
            Ok(resp) => resp
                .into_inner()
                .container
                .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() }),
            Err(s) if s.code() == Code::NotFound => {
                Err(RuntimeError::ContainerNotFound { id: id.to_string() })
            }
            Err(s) => Err(grpc("get container")(s)),
        }
    }

    async fn get_task(&self, id: &str, exec_id: &str) -> Result<Option<Process>> {
        let req = self.request(
            GetRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            },
            None,
        );
        match self.client.tasks().get(req).await {
            Ok(resp) => Ok(resp.into_inner().process),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(grpc("get task")(s)),
        }
    }

    fn state_of(&self, container: &Container, task: Option<&Process>) -> ContainerState {
        let Some(p) = task else {
            return ContainerState::Created;
        };
        match TaskStatus::try_from(p.status).unwrap_or(TaskStatus::Unknown) {
            TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing => {
                ContainerState::Running { pid: p.pid }
            }
            TaskStatus::Stopped => ContainerState::Exited {
                exit_code: p.exit_status,
                finished_at: timestamp(p.exited_at),
                oom_killed: container
                    .labels
                    .get(CGROUP_PATH_LABEL)
                    .is_some_and(|path| cgroup::oom_killed(&self.config.cgroup_root, path)),
            },
            TaskStatus::Created => ContainerState::Created,
            TaskStatus::Unknown => ContainerState::Unknown,
        }
    }

    /// `binary://` URI making the shim run orc's logger writing to `log_path`.
    fn log_uri(&self, log_path: &Path) -> String {
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair(logger::SUBCOMMAND, &log_path.to_string_lossy())
            .finish();
        format!("binary://{}?{query}", self.config.logger_binary.display())
    }

    async fn delete_task(&self, id: &str) -> Result<()> {
        let req = self.request(
            DeleteTaskRequest {
                container_id: id.to_string(),
            },
            None,
        );
        match self.client.tasks().delete(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("delete task")(s)),
        }
    }

    async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let req = self.request(
            KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all,
            },
            None,
        );
        match self.client.tasks().kill(req).await {
            Ok(_) => Ok(()),
            // Already gone.
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("kill task")(s)),
        }
    }

    async fn wait_process(&self, id: &str, exec_id: &str) -> Result<()> {
        let req = self.request(
            WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            },
            None,
        );
        match self.client.tasks().wait(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("wait task")(s)),
        }
    }

    /// SIGKILLs every process of the task and waits (bounded) until it is reported gone.
    async fn kill_and_wait(&self, id: &str) -> Result<()> {
        self.kill(id, "", SIGKILL, true).await?;
        match tokio::time::timeout(KILL_WAIT, self.wait_process(id, "")).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Containerd {
                op: "wait task",
                source: Status::deadline_exceeded(format!(
                    "task {id} still running {KILL_WAIT:?} after SIGKILL"
                )),
            }),
        }
    }

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

    async fn ensure_running(&self, id: &str) -> Result<()> {
        match self.get_task(id, "").await? {
            Some(p) if TaskStatus::try_from(p.status) == Ok(TaskStatus::Running) => Ok(()),
            _ => Err(RuntimeError::NotRunning { id: id.to_string() }),
        }
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
        let uri = self.log_uri(log);
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
        let r = Reference::parse(reference)?;
        let name = r.to_string();
        if policy != PullPolicy::Always {
            if let Some((resolved, _)) = self.present_image(&name).await? {
                return Ok(resolved.info(&name));
            }
            if policy == PullPolicy::Never {
                return Err(RuntimeError::ImageNeverPull { reference: name });
            }
        }
        self.pull(&r, auth).await
    }

    async fn import_archive(&self, path: &Path) -> Result<Vec<String>> {
        let lease = self.create_lease().await?;
        let result = self.import_with_lease(&lease, path).await;
        self.delete_lease(&lease).await;
        result
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        let images = self
            .client
            .images()
            .list(self.request(ListImagesRequest { filters: vec![] }, None))
            .await
            .map_err(grpc("list images"))?
            .into_inner()
            .images;
        let mut out = Vec::new();
        for image in images {
            let target = image.target.unwrap_or_default();
            let target = Descriptor {
                media_type: target.media_type,
                digest: target.digest,
                size: target.size,
            };
            match self.resolve(&image.name, &target).await {
                Ok(resolved) => out.push(resolved.info(&image.name)),
                Err(e) => debug!(image = %image.name, error = %e, "skipping unusable image"),
            }
        }
        Ok(out)
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<String> {
        let r = Reference::parse(&config.image)?;
        let name = r.to_string();
        let (image, top) =
            self.present_image(&name)
                .await?
                .ok_or(RuntimeError::ImageNeverPull {
                    reference: name.clone(),
                })?;
        let spec = spec::build_spec(config, image.config.as_ref())?;
        let spec_json = serde_json::to_vec(&spec).map_err(|e| RuntimeError::Spec {
            id: config.id.clone(),
            reason: e.to_string(),
        })?;
        let mut labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
        labels.insert(
            LOG_PATH_LABEL.into(),
            config.log_path.to_string_lossy().into_owned(),
        );
        labels.insert(CGROUP_PATH_LABEL.into(), spec::cgroup_path(config));

        let lease = self.create_lease().await?;
        let created = async {
            self.client
                .snapshots()
                .prepare(self.request(
                    PrepareSnapshotRequest {
                        snapshotter: self.config.snapshotter.clone(),
                        key: config.id.clone(),
                        parent: top,
                        labels: HashMap::new(),
                    },
                    Some(&lease),
                ))
                .await
                .map_err(grpc("prepare container snapshot"))?;
            let container = Container {
                id: config.id.clone(),
                labels,
                image: name.clone(),
                runtime: Some(ContainerRuntimeInfo {
                    name: self.config.runtime.clone(),
                    options: None,
                }),
                spec: Some(prost_types::Any {
                    type_url: SPEC_TYPE_URL.to_string(),
                    value: spec_json,
                }),
                snapshotter: self.config.snapshotter.clone(),
                snapshot_key: config.id.clone(),
                ..Default::default()
            };
            let made = self
                .client
                .containers()
                .create(self.request(
                    CreateContainerRequest {
                        container: Some(container),
                    },
                    Some(&lease),
                ))
                .await
                .map_err(grpc("create container"));
            if made.is_err() {
                let _ = self.remove_snapshot(&config.id).await;
            }
            made.map(|_| ())
        }
        .await;
        self.delete_lease(&lease).await;
        created?;
        Ok(config.id.clone())
    }

    async fn start(&self, id: &str) -> Result<u32> {
        let container = self.get_container(id).await?;
        match self.get_task(id, "").await? {
            Some(p) if TaskStatus::try_from(p.status) == Ok(TaskStatus::Running) => {
                return Ok(p.pid)
            }
            Some(_) => self.delete_task(id).await?,
            None => {}
        }
        let mounts: Vec<PbMount> = self
            .client
            .snapshots()
            .mounts(self.request(
                MountsRequest {
                    snapshotter: container.snapshotter.clone(),
                    key: container.snapshot_key.clone(),
                },
                None,
            ))
            .await
            .map_err(grpc("snapshot mounts"))?
            .into_inner()
            .mounts;
        let log_path = container
            .labels
            .get(LOG_PATH_LABEL)
            .map(PathBuf::from)
            .ok_or_else(|| RuntimeError::Spec {
                id: id.to_string(),
                reason: format!("container has no {LOG_PATH_LABEL} label (not made by orc?)"),
            })?;
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
                what: "create log directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let uri = self.log_uri(&log_path);
        self.client
            .tasks()
            .create(self.request(
                CreateTaskRequest {
                    container_id: id.to_string(),
                    rootfs: mounts,
                    stdout: uri.clone(),
                    stderr: uri,
                    ..Default::default()
                },
                None,
            ))
            .await
            .map_err(grpc("create task"))?;
        let started = self
            .client
            .tasks()
            .start(self.request(
                StartRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await;
        match started {
            Ok(resp) => Ok(resp.into_inner().pid),
            Err(s) => {
                let _ = self.delete_task(id).await;
                Err(grpc("start task")(s))
            }
        }
    }

    async fn stop(&self, id: &str, signal: u32, grace: Duration) -> Result<ContainerStatus> {
        let running = matches!(self.status(id).await?.state, ContainerState::Running { .. });
        if running {
            self.kill(id, "", signal, false).await?;
            let exited = tokio::time::timeout(grace, self.wait_process(id, "")).await;
            if exited.is_err() {
                info!(
                    container = id,
                    ?grace,
                    "did not exit within its grace period; killing"
                );
                self.kill_and_wait(id).await?;
            }
        }
        self.status(id).await
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus> {
        let container = self.get_container(id).await?;
        let task = self.get_task(id, "").await?;
        Ok(ContainerStatus {
            id: id.to_string(),
            state: self.state_of(&container, task.as_ref()),
        })
    }

    async fn wait(&self, id: &str) -> Result<ContainerStatus> {
        self.get_container(id).await?;
        self.wait_process(id, "").await?;
        self.status(id).await
    }

    async fn remove(&self, id: &str) -> Result<()> {
        if let Some(task) = self.get_task(id, "").await? {
            if TaskStatus::try_from(task.status) != Ok(TaskStatus::Stopped) {
                self.kill_and_wait(id).await?;
            }
            self.delete_task(id).await?;
        }
        let req = self.request(DeleteContainerRequest { id: id.to_string() }, None);
        match self.client.containers().delete(req).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(grpc("delete container")(s)),
        }
        self.remove_snapshot(id).await
    }

    async fn exec(&self, id: &str, cmd: &[String], timeout: Duration) -> Result<ExecOutput> {
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

    async fn exec_streaming(&self, id: &str, request: &ExecRequest) -> Result<ExecSession> {
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

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        let containers = self
            .client
            .containers()
            .list(self.request(ListContainersRequest { filters: vec![] }, None))
            .await
            .map_err(grpc("list containers"))?
            .into_inner()
            .containers;
        let tasks = self
            .client
            .tasks()
            .list(self.request(
                ListTasksRequest {
                    filter: String::new(),
                },
                None,
            ))
            .await
            .map_err(grpc("list tasks"))?
            .into_inner()
            .tasks;
        let tasks: HashMap<String, Process> = tasks
            .into_iter()
            .map(|p| {
                let id = if p.container_id.is_empty() {
                    p.id.clone()
                } else {
                    p.container_id.clone()
                };
                (id, p)
            })
            .collect();
        Ok(containers
            .into_iter()
            .map(|c| {
                let state = self.state_of(&c, tasks.get(&c.id));
                let labels = c
                    .labels
                    .iter()
                    .filter(|(k, _)| {
                        k.as_str() != LOG_PATH_LABEL && k.as_str() != CGROUP_PATH_LABEL
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                ContainerSummary {
                    id: c.id,
                    image: c.image,
                    labels,
                    state,
                }
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_ids_follow_the_oci_definition() {
        let a = format!("sha256:{}", "a".repeat(64));
        let b = format!("sha256:{}", "b".repeat(64));
        let ids = chain_ids(&[a.clone(), b.clone()]);
        assert_eq!(ids[0], a);
        assert_eq!(ids[1], sha256_digest(format!("{a} {b}").as_bytes()));
        assert!(chain_ids(&[]).is_empty());
    }

    #[test]
    fn gc_labels_reference_children() {
        let manifest = br#"{"config":{"digest":"sha256:c","size":1},"layers":[{"digest":"sha256:l0","size":1},{"digest":"sha256:l1","size":1}]}"#;
        let labels = gc_labels(manifest);
        assert_eq!(labels["containerd.io/gc.ref.content.config"], "sha256:c");
        assert_eq!(labels["containerd.io/gc.ref.content.l.1"], "sha256:l1");
        let index = br#"{"manifests":[{"digest":"sha256:m","size":1}]}"#;
        assert_eq!(
            gc_labels(index)["containerd.io/gc.ref.content.m.0"],
            "sha256:m"
        );
        assert!(gc_labels(b"not json").is_empty());
        assert!(gc_labels(br#"{"architecture":"amd64"}"#).is_empty());
    }

    #[test]
    fn platform_choice_matches_this_host() {
        let (arch, _) = host_platform();
        let docs: Vec<DescriptorDoc> = serde_json::from_str(&format!(
            r#"[{{"digest":"sha256:w","size":1,"platform":{{"architecture":"{arch}","os":"windows"}}}},
                {{"digest":"sha256:o","size":1,"platform":{{"architecture":"other","os":"linux"}}}},
                {{"digest":"sha256:y","size":1,"platform":{{"architecture":"{arch}","os":"linux"}}}}]"#
        ))
        .unwrap();
        assert_eq!(pick_platform(&docs).unwrap().digest, "sha256:y");
        assert!(pick_platform(&docs[..2]).is_none());
    }
}
