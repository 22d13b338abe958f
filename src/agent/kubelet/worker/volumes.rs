//! The pod's volumes made ready on the host: emptyDir, hostPath, and configMap and
//! secret volumes written from their objects (rewritten on refresh; secret volumes on
//! a tmpfs of their own). While the server cannot be reached, a volume written before
//! keeps what it holds.

use std::collections::BTreeMap;

use super::{containers, error_chain, PodWorker};
use crate::agent::client::ApiError;
use crate::agent::kubelet::pod_files::{self, PreparedVolume};
use crate::agent::kubelet::tmpfs;

impl PodWorker {
    pub(super) async fn prepare_volumes(&mut self) -> Result<(), String> {
        let ns = self.namespace().to_string();
        for v in containers(&self.pod["spec"], "volumes") {
            let name = v["name"].as_str().unwrap_or("").to_string();
            let prepared = if v["emptyDir"].is_object() {
                let dir = pod_files::volume_dir(&self.pod_dir, "empty-dir", &name);
                std::fs::create_dir_all(&dir)
                    .map_err(|e| format!("create emptyDir {}: {e}", dir.display()))?;
                PreparedVolume {
                    host_path: dir,
                    read_only: false,
                }
            } else if v["hostPath"].is_object() {
                pod_files::prepare_host_path(&name, &v["hostPath"]).map_err(|e| error_chain(&e))?
            } else if v["configMap"].is_object() || v["secret"].is_object() {
                let (kind, plural, source, obj_name) = if v["configMap"].is_object() {
                    let s = &v["configMap"];
                    (
                        "ConfigMap",
                        "configmaps",
                        s,
                        s["name"].as_str().unwrap_or(""),
                    )
                } else {
                    let s = &v["secret"];
                    (
                        "Secret",
                        "secrets",
                        s,
                        s["secretName"].as_str().unwrap_or(""),
                    )
                };
                let sub = if kind == "Secret" {
                    "secret"
                } else {
                    "configmap"
                };
                let dir = pod_files::volume_dir(&self.pod_dir, sub, &name);
                let object = match self.shared.api.get_object(plural, &ns, obj_name).await {
                    Ok(object) => object,
                    // No answer: what the volume holds stays (the last known contents).
                    Err(ApiError::Request { .. }) if dir.is_dir() => {
                        self.volumes.insert(name, (dir, true));
                        continue;
                    }
                    Err(e) => {
                        return Err(format!(
                            "MountVolume.SetUp failed for volume {name:?}: {}",
                            error_chain(&e)
                        ))
                    }
                };
                let data = match object {
                    Some(o) => pod_files::object_data(kind, &o),
                    None if source["optional"].as_bool() == Some(true) => BTreeMap::new(),
                    None => {
                        return Err(format!(
                        "MountVolume.SetUp failed for volume {name:?}: {} \"{obj_name}\" not found",
                        kind.to_lowercase()
                    ))
                    }
                };
                let files = pod_files::projected_files(&name, source, &data)
                    .map_err(|e| error_chain(&e))?;
                if kind == "Secret" && self.shared.config.secrets_on_tmpfs {
                    tmpfs::ensure_tmpfs(&dir, tmpfs::SECRET_VOLUME_SIZE).map_err(|e| {
                        format!(
                            "MountVolume.SetUp failed for volume {name:?}: {}",
                            error_chain(&e)
                        )
                    })?;
                }
                pod_files::write_projected(&dir, &files).map_err(|e| error_chain(&e))?;
                PreparedVolume {
                    host_path: dir,
                    read_only: true,
                }
            } else {
                return Err(format!(
                    "volume {name:?}: only emptyDir, hostPath, configMap and secret volumes are supported"
                ));
            };
            self.volumes
                .insert(name, (prepared.host_path, prepared.read_only));
        }
        Ok(())
    }
}
