//! The pod's volumes made ready on the host: emptyDir (on disk, or `medium: Memory` on
//! a sized tmpfs), hostPath, persistentVolumeClaim and generic ephemeral volumes (the
//! bound PV's hostPath or local directory), and configMap, secret, downwardAPI and
//! projected volumes (with service-account tokens from the kubelet's token manager)
//! written atomically from their objects (rewritten on refresh and, for pod metadata,
//! when it changes; secret and projected volumes on a tmpfs of their own), all
//! group-owned by the pod's fsGroup. While the server cannot be reached, a volume
//! written before keeps what it holds. A type without support fails the mount.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;

use chrono::Utc;
use serde_json::Value;
use tracing::{debug, warn};

use super::{containers, error_chain, PodWorker};
use crate::agent::client::ApiError;
use crate::agent::kubelet::pod_files::{self, PreparedVolume};
use crate::agent::kubelet::volume::{self, ClaimRef, FsGroup};
use crate::agent::kubelet::{tmpfs, tokens};

impl PodWorker {
    pub(super) async fn prepare_volumes(&mut self) -> Result<(), String> {
        let fs_group = FsGroup::of(&self.pod);
        let group = fs_group.map(|g| g.gid);
        for v in containers(&self.pod["spec"], "volumes") {
            let name = v["name"].as_str().unwrap_or("").to_string();
            if let Some(kind) = volume::unsupported_type(&v) {
                return Err(format!(
                    "MountVolume.SetUp failed for volume {name:?} : volume type {kind} is not \
                     supported by orc (emptyDir, hostPath, configMap, secret, downwardAPI, \
                     projected, persistentVolumeClaim and ephemeral are)"
                ));
            }
            let prepared = if v["emptyDir"].is_object() {
                if self.volumes.contains_key(&name) {
                    // Set up once, as upstream; only its size is watched.
                    self.check_empty_dir_usage(&name, &v).await;
                    continue;
                }
                self.empty_dir(&name, &v, fs_group)?
            } else if v["hostPath"].is_object() {
                pod_files::prepare_host_path(&name, &v["hostPath"]).map_err(|e| error_chain(&e))?
            } else if let Some(claim) = ClaimRef::of(&self.pod, &v) {
                if self.volumes.contains_key(&name) {
                    // Mounted once; a claim that changes later does not move it.
                    continue;
                }
                match self.claim_volume(&name, &claim, fs_group).await? {
                    Some(prepared) => prepared,
                    None => return Err(unreachable(&name)),
                }
            } else if v["configMap"].is_object() || v["secret"].is_object() {
                let (kind, source) = if v["configMap"].is_object() {
                    ("ConfigMap", &v["configMap"])
                } else {
                    ("Secret", &v["secret"])
                };
                let sub = if kind == "Secret" {
                    "secret"
                } else {
                    "configmap"
                };
                let dir = pod_files::volume_dir(&self.pod_dir, sub, &name);
                let Some(files) = self.object_files(&name, kind, source, None).await? else {
                    // No answer: what the volume holds stays (the last known contents).
                    if dir.is_dir() {
                        self.volumes.insert(name, (dir, true));
                        continue;
                    }
                    return Err(unreachable(&name));
                };
                self.write_volume(&name, &dir, &files, kind == "Secret", group)?
            } else if v["projected"].is_object() {
                let dir = pod_files::volume_dir(&self.pod_dir, "projected", &name);
                let Some(files) = self.projected_files(&name, &v["projected"]).await? else {
                    if dir.is_dir() {
                        self.volumes.insert(name, (dir, true));
                        continue;
                    }
                    return Err(unreachable(&name));
                };
                self.write_volume(&name, &dir, &files, true, group)?
            } else if v["downwardAPI"].is_object() {
                let source = &v["downwardAPI"];
                let dir = pod_files::volume_dir(&self.pod_dir, "downward-api", &name);
                let files =
                    pod_files::downward_api_files(&name, &self.pod, source, mode_of(source))
                        .map_err(|e| error_chain(&e))?;
                self.write_volume(&name, &dir, &files, false, group)?
            } else {
                let kind = v
                    .as_object()
                    .and_then(|o| o.keys().find(|k| *k != "name").cloned())
                    .unwrap_or_else(|| "(none)".into());
                return Err(format!(
                    "MountVolume.SetUp failed for volume {name:?} : volume type {kind} is not \
                     supported by orc"
                ));
            };
            self.volumes
                .insert(name, (prepared.host_path, prepared.read_only));
        }
        self.volumes_meta = volume_meta(&self.pod);
        Ok(())
    }

    /// An emptyDir: a directory under the pod (world-writable, as upstream), or with
    /// `medium: Memory` a tmpfs sized by [`volume::memory_empty_dir_size`].
    fn empty_dir(
        &self,
        name: &str,
        v: &Value,
        fs_group: Option<FsGroup>,
    ) -> Result<PreparedVolume, String> {
        let dir = pod_files::volume_dir(&self.pod_dir, "empty-dir", name);
        let failed = |e: String| format!("MountVolume.SetUp failed for volume {name:?} : {e}");
        let memory = v["emptyDir"]["medium"].as_str() == Some("Memory");
        if memory && self.shared.config.secrets_on_tmpfs {
            let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
            let node_memory = volume::mem_total(&meminfo).unwrap_or(u64::MAX);
            let size = volume::memory_empty_dir_size(&self.pod, v, node_memory);
            tmpfs::ensure_memory_volume(&dir, size).map_err(|e| failed(error_chain(&e)))?;
        } else if !dir.is_dir() {
            std::fs::create_dir_all(&dir)
                .map_err(|e| failed(format!("create emptyDir {}: {e}", dir.display())))?;
            std::fs::set_permissions(
                &dir,
                std::fs::Permissions::from_mode(volume::EMPTY_DIR_MODE),
            )
            .map_err(|e| failed(format!("chmod emptyDir {}: {e}", dir.display())))?;
        }
        if let Some(group) = fs_group {
            volume::set_volume_ownership(&dir, group, false)
                .map_err(|e| failed(error_chain(&e)))?;
        }
        if let Some(limit) = volume::size_limit(v).filter(|_| !memory) {
            debug!(pod = %self.name(), volume = %name, limit, "emptyDir sizeLimit recorded");
        }
        Ok(PreparedVolume {
            host_path: dir,
            read_only: false,
        })
    }

    /// Tells (once per crossing) when an on-disk emptyDir holds more than its
    /// `sizeLimit`. Evicting the pod for it is not done (yet).
    async fn check_empty_dir_usage(&mut self, name: &str, v: &Value) {
        if v["emptyDir"]["medium"].as_str() == Some("Memory") {
            return;
        }
        let Some(limit) = volume::size_limit(v) else {
            return;
        };
        let dir = pod_files::volume_dir(&self.pod_dir, "empty-dir", name);
        let used = volume::disk_usage(&dir);
        let over = used > limit;
        let warned = self.size_warned.contains(name);
        if over && !warned {
            let quantity = v["emptyDir"]["sizeLimit"]
                .as_str()
                .map_or_else(|| v["emptyDir"]["sizeLimit"].to_string(), str::to_string);
            let message =
                format!("Usage of EmptyDir volume {name:?} exceeds the limit {quantity:?}.");
            warn!(pod = %self.name(), volume = %name, used, limit, "emptyDir over its sizeLimit");
            self.event("Warning", "EmptyDirSizeLimitExceeded", &message, None)
                .await;
            self.size_warned.insert(name.to_string());
        } else if !over && warned {
            self.size_warned.remove(name);
        }
    }

    /// A persistentVolumeClaim or generic ephemeral volume: the claim, its bound PV, and
    /// the PV's directory on this node (`None` when the server cannot be reached).
    async fn claim_volume(
        &self,
        name: &str,
        claim: &ClaimRef,
        fs_group: Option<FsGroup>,
    ) -> Result<Option<PreparedVolume>, String> {
        let not_ready = |e: volume::ClaimError| {
            format!("Unable to attach or mount volumes: unmounted volumes=[{name}]: {e}")
        };
        let api = &self.shared.api;
        let pvc = match api
            .get_object("persistentvolumeclaims", self.namespace(), &claim.claim)
            .await
        {
            Ok(pvc) => pvc,
            Err(ApiError::Request { .. }) => return Ok(None),
            Err(e) => return Err(not_ready_api(name, &e)),
        };
        let pv_name = volume::bound_volume(&self.pod, claim, pvc.as_ref()).map_err(not_ready)?;
        let pv = match api.get_object("persistentvolumes", "", &pv_name).await {
            Ok(pv) => pv,
            Err(ApiError::Request { .. }) => return Ok(None),
            Err(e) => return Err(not_ready_api(name, &e)),
        };
        let pvc = pvc.unwrap_or_default();
        let on_host = volume::volume_on_host(&self.pod, claim, &pvc, &pv_name, pv.as_ref())
            .map_err(not_ready)?;
        let failed = |e: String| format!("MountVolume.SetUp failed for volume {pv_name:?} : {e}");
        // A local-path volume's directory is made as the node's provisioner makes it (world
        // writable, as k3s's), whichever of the two gets there first.
        if let Some(dir) = pv.as_ref().and_then(crate::api::storage::local_path_dir) {
            crate::agent::local_path::create_dir(dir).map_err(|e| failed(error_chain(&e)))?;
        }
        match &on_host.host_path {
            Some(source) => {
                pod_files::prepare_host_path(&pv_name, source)
                    .map_err(|e| failed(error_chain(&e)))?;
            }
            None if !on_host.path.is_dir() => {
                return Err(failed(format!(
                    "path {:?} does not exist",
                    on_host.path.display().to_string()
                )))
            }
            None => {}
        }
        if let (Some(group), false) = (fs_group, claim.read_only) {
            volume::set_volume_ownership(&on_host.path, group, false)
                .map_err(|e| failed(error_chain(&e)))?;
        }
        Ok(Some(PreparedVolume {
            host_path: on_host.path,
            read_only: claim.read_only,
        }))
    }
}

/// What downwardAPI files show of the pod and may change while it runs.
pub(super) fn volume_meta(pod: &Value) -> Value {
    serde_json::json!([pod["metadata"]["labels"], pod["metadata"]["annotations"]])
}

fn not_ready_api(volume: &str, e: &ApiError) -> String {
    format!(
        "Unable to attach or mount volumes: unmounted volumes=[{volume}]: {}",
        error_chain(e)
    )
}

/// The files of a volume: `(relative path, content, mode)`.
type Files = Vec<(String, Vec<u8>, u32)>;

impl PodWorker {
    /// The files a configMap or secret volume (or projection) `source` shows: `None`
    /// when the server cannot be reached. `default_mode` is a projected volume's mode,
    /// which its sources take unless they set their own.
    async fn object_files(
        &self,
        volume: &str,
        kind: &str,
        source: &Value,
        default_mode: Option<u32>,
    ) -> Result<Option<Files>, String> {
        let (plural, obj_name) = if kind == "Secret" {
            // A secret volume names it `secretName`, a projection `name`.
            let name = source["secretName"].as_str().or(source["name"].as_str());
            ("secrets", name.unwrap_or(""))
        } else {
            ("configmaps", source["name"].as_str().unwrap_or(""))
        };
        let object = match self
            .shared
            .api
            .get_object(plural, self.namespace(), obj_name)
            .await
        {
            Ok(object) => object,
            Err(ApiError::Request { .. }) => return Ok(None),
            Err(e) => {
                return Err(format!(
                    "MountVolume.SetUp failed for volume {volume:?}: {}",
                    error_chain(&e)
                ))
            }
        };
        let data = match object {
            Some(o) => pod_files::object_data(kind, &o),
            None if source["optional"].as_bool() == Some(true) => BTreeMap::new(),
            None => {
                return Err(format!(
                    "MountVolume.SetUp failed for volume {volume:?}: {} \"{obj_name}\" not found",
                    kind.to_lowercase()
                ))
            }
        };
        let mut source = source.clone();
        if let (Some(mode), Some(fields)) = (default_mode, source.as_object_mut()) {
            fields.insert("defaultMode".into(), mode.into());
        }
        pod_files::projected_files(volume, &source, &data)
            .map(Some)
            .map_err(|e| error_chain(&e))
    }

    /// The files of a projected volume: its secret, configMap and downwardAPI sources
    /// in order (`None` when the server cannot be reached).
    async fn projected_files(
        &self,
        volume: &str,
        projected: &Value,
    ) -> Result<Option<Files>, String> {
        let default_mode = mode_of(projected);
        let mut files = Files::new();
        for source in projected["sources"].as_array().into_iter().flatten() {
            let more = if source["secret"].is_object() {
                self.object_files(volume, "Secret", &source["secret"], Some(default_mode))
                    .await?
            } else if source["configMap"].is_object() {
                self.object_files(
                    volume,
                    "ConfigMap",
                    &source["configMap"],
                    Some(default_mode),
                )
                .await?
            } else if source["serviceAccountToken"].is_object() {
                self.token_file(volume, &source["serviceAccountToken"], default_mode)
                    .await?
            } else if source["downwardAPI"].is_object() {
                Some(
                    pod_files::downward_api_files(
                        volume,
                        &self.pod,
                        &source["downwardAPI"],
                        default_mode,
                    )
                    .map_err(|e| error_chain(&e))?,
                )
            } else {
                let kind = source
                    .as_object()
                    .and_then(|o| o.keys().next().cloned())
                    .unwrap_or_default();
                return Err(format!(
                    "MountVolume.SetUp failed for volume {volume:?}: {kind} projections are not \
                     supported (secret, configMap, downwardAPI and serviceAccountToken are)"
                ));
            };
            let Some(more) = more else {
                return Ok(None);
            };
            files.extend(more);
        }
        Ok(Some(files))
    }

    /// The token file of a projected `serviceAccountToken` source: the cached token of
    /// the pod's account, renewed when due (`None` when the server cannot be reached
    /// and no valid token is at hand).
    async fn token_file(
        &self,
        volume: &str,
        source: &Value,
        default_mode: u32,
    ) -> Result<Option<Files>, String> {
        let path = source["path"].as_str().unwrap_or("token").to_string();
        let mode = source["mode"]
            .as_u64()
            .map_or(default_mode, |m| m as u32 & 0o777);
        let file = |token: String| Some(vec![(path.clone(), token.into_bytes(), mode)]);
        let account = self.pod["spec"]["serviceAccountName"]
            .as_str()
            .filter(|a| !a.is_empty())
            .unwrap_or("default")
            .to_string();
        let key = tokens::TokenKey {
            pod_uid: self.uid.clone(),
            namespace: self.namespace().to_string(),
            account: account.clone(),
            audience: source["audience"].as_str().unwrap_or("").to_string(),
            expiration_seconds: tokens::expiration_seconds(source),
        };
        let failed = |e: &str| format!("MountVolume.SetUp failed for volume {volume:?}: {e}");
        let manager = &self.shared.tokens;
        match manager.decide(&key, Utc::now()) {
            tokens::Decision::Use(token) => return Ok(file(token)),
            tokens::Decision::BackingOff => {
                return Err(failed("failed to fetch token: waiting to retry"))
            }
            tokens::Decision::Request => {}
        }
        let request = tokens::token_request(source, self.pod_name(), &self.uid);
        let answer = self
            .shared
            .api
            .request_token(self.namespace(), &account, &request)
            .await;
        let (error, unreachable) = match answer {
            Ok(answer) => match tokens::issued_from(&answer) {
                Some(issued) => {
                    let token = issued.token.clone();
                    manager.issued(&key, issued);
                    return Ok(file(token));
                }
                None => (
                    "the token request was answered without a token".into(),
                    false,
                ),
            },
            Err(e) => (error_chain(&e), matches!(e, ApiError::Request { .. })),
        };
        match manager.failed(&key, Utc::now()) {
            Some(old) => {
                debug!(pod = %self.name(), %account, %error, "token renewal failed; the old token stays");
                Ok(file(old))
            }
            None if unreachable => Ok(None),
            None => Err(failed(&format!("failed to fetch token: {error}"))),
        }
    }

    /// Writes a volume's files into `dir` atomically (`..data` swap), on a tmpfs of its
    /// own when it holds secrets (secret and projected volumes, as upstream), group-owned
    /// by the pod's fsGroup if it has one.
    fn write_volume(
        &self,
        volume: &str,
        dir: &std::path::Path,
        files: &Files,
        secret: bool,
        group: Option<u32>,
    ) -> Result<PreparedVolume, String> {
        let failed = |e: String| format!("MountVolume.SetUp failed for volume {volume:?} : {e}");
        if secret && self.shared.config.secrets_on_tmpfs {
            tmpfs::ensure_tmpfs(dir, tmpfs::SECRET_VOLUME_SIZE)
                .map_err(|e| failed(error_chain(&e)))?;
        }
        volume::write_atomic(dir, files, group).map_err(|e| failed(error_chain(&e)))?;
        Ok(PreparedVolume {
            host_path: dir.to_path_buf(),
            read_only: true,
        })
    }
}

/// A volume's `defaultMode` (upstream's 0644 when unset).
fn mode_of(source: &Value) -> u32 {
    source["defaultMode"]
        .as_u64()
        .map_or(0o644, |m| m as u32 & 0o777)
}

/// The error of a volume first set up while the server cannot be reached.
fn unreachable(volume: &str) -> String {
    format!("MountVolume.SetUp failed for volume {volume:?}: the API server cannot be reached")
}
