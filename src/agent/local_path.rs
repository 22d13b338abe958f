//! The built-in local-path provisioner, node side: follows the local-path volumes whose
//! node affinity names this node (the API narrows a node's view to those), creates
//! their directories (mode 0777 as k3s's provisioner does, so that pods running as any
//! user can write), and once a volume is being deleted removes its directory, then the
//! `orc.io/local-path` finalizer so the volume goes. Only paths named like a local-path
//! volume (`pvc-<uid>_<ns>_<claim>`) are ever removed.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::Instrument;

use super::client::{ApiClient, Event, ListWatchApi, Query, Reflector};
use crate::api::object;
use crate::api::storage::{
    is_local_path_dir_name, local_path_dir, volume_names_node, LOCAL_PATH_FINALIZER,
};

/// Mode of a volume's directory.
pub const DIR_MODE: u32 = 0o777;
/// How often every volume is looked at again (a failed removal is retried then).
const RELIST_INTERVAL: Duration = Duration::from_secs(60);

#[derive(Debug, thiserror::Error)]
pub enum LocalPathError {
    #[error("create volume directory {path}")]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("remove volume directory {path}")]
    Remove {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("refusing to remove {path}: not a local-path volume directory")]
    NotAVolumeDir { path: String },
    #[error("release volume {volume}: {message}")]
    Release { volume: String, message: String },
}

/// What this node does for a volume.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Make sure the directory exists.
    Create(String),
    /// Remove the directory, then the finalizer.
    Remove(String),
    Nothing,
}

/// The step for `pv` on `node`.
pub fn step_for(pv: &Value, node: &str) -> Step {
    let Some(dir) = local_path_dir(pv) else {
        return Step::Nothing;
    };
    if !volume_names_node(pv, node) {
        return Step::Nothing;
    }
    if !object::is_deleting(pv) {
        return Step::Create(dir.to_string());
    }
    if object::finalizers(pv)
        .iter()
        .any(|f| f == LOCAL_PATH_FINALIZER)
    {
        return Step::Remove(dir.to_string());
    }
    Step::Nothing
}

/// Creates `dir` (and its parents) with [`DIR_MODE`].
pub fn create_dir(dir: &str) -> Result<(), LocalPathError> {
    let err = |source| LocalPathError::Create {
        path: dir.to_string(),
        source,
    };
    std::fs::create_dir_all(dir).map_err(err)?;
    let mode = std::fs::metadata(dir).map_err(err)?.permissions().mode() & 0o7777;
    if mode != DIR_MODE {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(DIR_MODE)).map_err(err)?;
    }
    Ok(())
}

/// Removes a volume's directory (gone already is fine).
pub fn remove_dir(dir: &str) -> Result<(), LocalPathError> {
    if !is_local_path_dir_name(dir) || !Path::new(dir).is_absolute() {
        return Err(LocalPathError::NotAVolumeDir {
            path: dir.to_string(),
        });
    }
    match std::fs::remove_dir_all(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LocalPathError::Remove {
            path: dir.to_string(),
            source: e,
        }),
        _ => Ok(()),
    }
}

/// Takes the local-path finalizer off the volume (the node may change nothing else).
async fn release(client: &ApiClient, pv: &Value) -> Result<(), LocalPathError> {
    let name = object::name(pv);
    let rest: Vec<String> = object::finalizers(pv)
        .into_iter()
        .filter(|f| f != LOCAL_PATH_FINALIZER)
        .collect();
    let patch = json!({"metadata": {
        "finalizers": rest,
        "resourceVersion": pv["metadata"]["resourceVersion"],
    }});
    let failed = |message: String| LocalPathError::Release {
        volume: name.to_string(),
        message,
    };
    let resp = client
        .merge_patch(&format!("/api/v1/persistentvolumes/{name}"), &patch)
        .await
        .map_err(|e| failed(e.to_string()))?;
    match resp.status.as_u16() {
        200..=299 | 404 => Ok(()),
        _ => Err(failed(resp.message())),
    }
}

async fn act(client: &ApiClient, node: &str, pv: &Value) {
    let volume = object::name(pv);
    match step_for(pv, node) {
        Step::Nothing => {}
        Step::Create(dir) => match create_dir(&dir) {
            Ok(()) => tracing::debug!(%volume, %dir, "volume directory ready"),
            Err(e) => {
                tracing::warn!(%volume, error = %super::error_chain(&e), "volume directory not created")
            }
        },
        Step::Remove(dir) => {
            let result = match remove_dir(&dir) {
                Ok(()) => release(client, pv).await,
                Err(e) => Err(e),
            };
            match result {
                Ok(()) => tracing::info!(%volume, %dir, "removed volume directory"),
                Err(e) => {
                    tracing::warn!(%volume, error = %super::error_chain(&e), "volume not cleaned up; will retry")
                }
            }
        }
    }
}

/// Follows this node's local-path volumes forever.
pub async fn run(api: Arc<dyn ListWatchApi>, client: Arc<ApiClient>, node: String) {
    let span = tracing::info_span!("local_path", %node);
    let query = Query::all("persistentvolumes").relist_every(RELIST_INTERVAL);
    let mut volumes = Reflector::<Value>::new(api, query);
    async move {
        loop {
            match volumes.next().await {
                Event::Restarted(all) | Event::LastKnown(all) => {
                    for pv in &all {
                        act(&client, &node, pv).await;
                    }
                }
                Event::Applied(pv) => act(&client, &node, &pv).await,
                Event::Deleted(_) => {}
            }
        }
    }
    .instrument(span)
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(node: &str, path: &str) -> Value {
        json!({"metadata": {"name": "pvc-1", "annotations": {"pv.kubernetes.io/provisioned-by": "orc.io/local-path"},
                            "finalizers": ["kubernetes.io/pv-protection", "orc.io/local-path"]},
               "spec": {"hostPath": {"path": path}, "nodeAffinity": {"required": {"nodeSelectorTerms": [
                   {"matchExpressions": [{"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}}})
    }

    #[test]
    fn a_node_creates_and_removes_only_its_own_local_path_volumes() {
        let dir = "/s/pvc-1_default_data";
        assert_eq!(step_for(&pv("n1", dir), "n1"), Step::Create(dir.into()));
        assert_eq!(step_for(&pv("n1", dir), "n2"), Step::Nothing);
        let mut deleting = pv("n1", dir);
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        assert_eq!(step_for(&deleting, "n1"), Step::Remove(dir.into()));
        deleting["metadata"]["finalizers"] = json!(["kubernetes.io/pv-protection"]);
        assert_eq!(step_for(&deleting, "n1"), Step::Nothing);
        let mut static_pv = pv("n1", dir);
        static_pv["metadata"]["annotations"] = json!({});
        assert_eq!(step_for(&static_pv, "n1"), Step::Nothing);
    }

    #[test]
    fn directories_are_world_writable_and_removal_is_limited_to_volume_dirs() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("storage/pvc-1_default_data");
        let dir = dir.to_str().unwrap();
        create_dir(dir).unwrap();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);
        std::fs::write(format!("{dir}/file"), "x").unwrap();
        remove_dir(dir).unwrap();
        assert!(!Path::new(dir).exists());
        remove_dir(dir).unwrap();
        let other = root.path().join("important");
        std::fs::create_dir(&other).unwrap();
        assert!(matches!(
            remove_dir(other.to_str().unwrap()),
            Err(LocalPathError::NotAVolumeDir { .. })
        ));
        assert!(other.exists());
    }
}
