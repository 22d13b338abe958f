//! Pure and file-level volume logic the pod worker builds on: the atomic writer of
//! configMap/secret/downwardAPI/projected volumes (upstream's `..data` symlink swap),
//! fsGroup ownership, emptyDir sizing, claim → volume resolution for
//! persistentVolumeClaim and generic ephemeral volumes, `subPathExpr` expansion, and the
//! names of volume types the kubelet does not support.

use std::collections::BTreeMap;
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde_json::Value;

use crate::api::quantity::Quantity;

/// The symlink naming the current payload directory of an atomically written volume.
pub const DATA_DIR: &str = "..data";
/// The symlink made next to [`DATA_DIR`] and renamed over it.
const NEW_DATA_DIR: &str = "..data_tmp";
/// Mode of emptyDir directories (upstream: world-writable, the umask notwithstanding).
pub const EMPTY_DIR_MODE: u32 = 0o777;
/// What fsGroup adds to files of writable and read-only volumes, and to directories
/// (upstream `rwMask`, `roMask`, `execMask` and setgid).
const RW_MASK: u32 = 0o660;
const RO_MASK: u32 = 0o440;
const EXEC_MASK: u32 = 0o110;
const SETGID: u32 = 0o2000;

/// Volume types a pod may name that the kubelet has no plugin for (the API accepts
/// them; the pod then waits in ContainerCreating with a FailedMount event, as upstream
/// does for a plugin it cannot find).
pub const UNSUPPORTED_TYPES: [&str; 20] = [
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "nfs",
    "iscsi",
    "glusterfs",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "fc",
    "azureFile",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "csi",
];
/// Further types a PersistentVolume may have that the kubelet cannot mount.
const UNSUPPORTED_PV_TYPES: [&str; 2] = ["storageos", "image"];

#[derive(Debug, thiserror::Error)]
pub enum VolumeError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

pub type Result<T, E = VolumeError> = std::result::Result<T, E>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> VolumeError + 'a {
    move |source| VolumeError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

// ---------------------------------------------------------------------------------------
// fsGroup

/// `securityContext.fsGroup` of a pod with its change policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsGroup {
    pub gid: u32,
    /// `fsGroupChangePolicy: OnRootMismatch`: skip the walk when the volume's root
    /// already has the group and the permission bits.
    pub on_root_mismatch: bool,
}

impl FsGroup {
    /// The pod's fsGroup, if it sets one.
    pub fn of(pod: &Value) -> Option<FsGroup> {
        let sc = &pod["spec"]["securityContext"];
        let gid = u32::try_from(sc["fsGroup"].as_i64()?).ok()?;
        Some(FsGroup {
            gid,
            on_root_mismatch: sc["fsGroupChangePolicy"].as_str() == Some("OnRootMismatch"),
        })
    }
}

/// The mode a file or directory gets under fsGroup (upstream `SetVolumeOwnership`):
/// group read (and write, unless the volume is read-only), and for directories group
/// search and setgid, so new files inherit the group.
pub fn fs_group_mode(mode: u32, is_dir: bool, read_only: bool) -> u32 {
    let mut mask = if read_only { RO_MASK } else { RW_MASK };
    if is_dir {
        mask |= EXEC_MASK | SETGID;
    }
    mode | mask
}

/// Whether the root of a volume already carries the group and bits fsGroup gives.
fn root_matches(dir: &Path, group: FsGroup, read_only: bool) -> bool {
    let Ok(meta) = std::fs::metadata(dir) else {
        return false;
    };
    let mode = meta.mode() & 0o7777;
    meta.gid() == group.gid && fs_group_mode(mode, true, read_only) == mode
}

/// Gives everything below (and including) `dir` the group `group.gid` and the fsGroup
/// bits; symlinks get the group only. With `on_root_mismatch`, a root that already
/// matches means nothing is walked.
pub fn set_volume_ownership(dir: &Path, group: FsGroup, read_only: bool) -> Result<()> {
    if group.on_root_mismatch && root_matches(dir, group, read_only) {
        return Ok(());
    }
    own(dir, group.gid, read_only)
}

fn own(path: &Path, gid: u32, read_only: bool) -> Result<()> {
    let meta = std::fs::symlink_metadata(path).map_err(io_err("read", path))?;
    std::os::unix::fs::lchown(path, None, Some(gid)).map_err(io_err("change group of", path))?;
    if meta.file_type().is_symlink() {
        return Ok(());
    }
    let mode = meta.mode() & 0o7777;
    let wanted = fs_group_mode(mode, meta.is_dir(), read_only);
    if wanted != mode {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(wanted))
            .map_err(io_err("change mode of", path))?;
    }
    if meta.is_dir() {
        for entry in std::fs::read_dir(path).map_err(io_err("read directory", path))? {
            let entry = entry.map_err(io_err("read directory", path))?;
            own(&entry.path(), gid, read_only)?;
        }
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Atomic writer

/// A file of a volume's payload: path relative to the volume, content, mode.
pub type FileEntry = (String, Vec<u8>, u32);

/// Writes `files` into `dir` as upstream's atomic writer does: the payload goes into a
/// new hidden timestamped directory, the `..data` symlink is swapped to it in one
/// rename, and every top-level name is a symlink through `..data`. A reader sees the
/// whole old payload or the whole new one, never a mix; the directory itself stays (a
/// container bind-mounts it). Nothing is written when the payload is unchanged. With
/// `group`, the payload is group-owned as fsGroup makes it (read-only volume). Returns
/// whether anything was written.
pub fn write_atomic(dir: &Path, files: &[FileEntry], group: Option<u32>) -> Result<bool> {
    std::fs::create_dir_all(dir).map_err(io_err("create volume directory", dir))?;
    let data_link = dir.join(DATA_DIR);
    let old_ts = std::fs::read_link(&data_link).ok();
    let final_mode = |mode: u32| match group {
        Some(_) => fs_group_mode(mode, false, true),
        None => mode,
    };
    let visible: std::collections::BTreeSet<String> = files
        .iter()
        .filter_map(|(rel, _, _)| rel.split('/').next().map(str::to_string))
        .collect();
    let unchanged = old_ts.as_ref().is_some_and(|ts| {
        let ts_dir = dir.join(ts);
        payload_matches(&ts_dir, files, &final_mode)
            && visible_links_match(dir, &visible)
            && group.is_none_or(|gid| std::fs::metadata(&ts_dir).is_ok_and(|m| m.gid() == gid))
    });
    if unchanged {
        return Ok(false);
    }
    let ts_name = format!(
        "..{}.{}",
        chrono::Utc::now().format("%Y_%m_%d_%H_%M_%S"),
        rand::random::<u32>()
    );
    let ts_dir = dir.join(&ts_name);
    std::fs::create_dir(&ts_dir).map_err(io_err("create payload directory", &ts_dir))?;
    std::fs::set_permissions(&ts_dir, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err("change mode of", &ts_dir))?;
    for (rel, content, mode) in files {
        let path = ts_dir.join(rel);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
        }
        std::fs::write(&path, content).map_err(io_err("write file", &path))?;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(*mode))
            .map_err(io_err("change mode of", &path))?;
    }
    if let Some(gid) = group {
        own(&ts_dir, gid, true)?;
    }
    let new_link = dir.join(NEW_DATA_DIR);
    let _ = std::fs::remove_file(&new_link);
    std::os::unix::fs::symlink(&ts_name, &new_link).map_err(io_err("create symlink", &new_link))?;
    std::fs::rename(&new_link, &data_link).map_err(io_err("replace symlink", &data_link))?;
    // Top-level names: symlinks through `..data`; whatever else is there goes.
    for entry in std::fs::read_dir(dir)
        .map_err(io_err("read directory", dir))?
        .flatten()
    {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if !visible.contains(&name) || !is_data_link(dir, &name) {
            remove_any(&entry.path());
        }
    }
    for name in &visible {
        let link = dir.join(name);
        if std::fs::symlink_metadata(&link).is_err() {
            std::os::unix::fs::symlink(Path::new(DATA_DIR).join(name), &link)
                .map_err(io_err("create symlink", &link))?;
            if let Some(gid) = group {
                let _ = std::os::unix::fs::lchown(&link, None, Some(gid));
            }
        }
    }
    if let Some(old) = old_ts.filter(|old| *old != Path::new(&ts_name)) {
        remove_any(&dir.join(old));
    }
    // Payload directories of an interrupted write.
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_ts = name.starts_with("..") && name != DATA_DIR && name != NEW_DATA_DIR;
        if is_ts && name != ts_name {
            remove_any(&entry.path());
        }
    }
    Ok(true)
}

fn remove_any(path: &Path) {
    let is_dir = std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir());
    let _ = if is_dir {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    };
}

fn is_data_link(dir: &Path, name: &str) -> bool {
    std::fs::read_link(dir.join(name)).is_ok_and(|t| t == Path::new(DATA_DIR).join(name))
}

fn visible_links_match(dir: &Path, visible: &std::collections::BTreeSet<String>) -> bool {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return false;
    };
    let mut seen = 0;
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("..") {
            continue;
        }
        if !visible.contains(&name) || !is_data_link(dir, &name) {
            return false;
        }
        seen += 1;
    }
    seen == visible.len()
}

/// Whether `ts_dir` holds exactly `files` (contents and modes).
fn payload_matches(ts_dir: &Path, files: &[FileEntry], final_mode: &dyn Fn(u32) -> u32) -> bool {
    let mut count = 0;
    for (rel, content, mode) in files {
        let path = ts_dir.join(rel);
        let same = std::fs::symlink_metadata(&path)
            .is_ok_and(|m| m.is_file() && m.mode() & 0o7777 == final_mode(*mode))
            && std::fs::read(&path).is_ok_and(|old| old == *content);
        if !same {
            return false;
        }
        count += 1;
    }
    count_files(ts_dir) == count
}

fn count_files(dir: &Path) -> usize {
    std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => count_files(&e.path()),
            _ => 1,
        })
        .sum()
}

// ---------------------------------------------------------------------------------------
// emptyDir

/// The size of an emptyDir `medium: Memory` tmpfs (upstream
/// `calculateEmptyDirMemorySize`): the node's memory, lowered to the pod's memory limit
/// when every container declares one, lowered to the volume's `sizeLimit` when that is
/// smaller still.
pub fn memory_empty_dir_size(pod: &Value, volume: &Value, node_memory: u64) -> u64 {
    let mut size = node_memory;
    if let Some(limit) = pod_memory_limit(pod).filter(|l| *l > 0 && *l <= size) {
        size = limit;
    }
    if let Some(limit) = size_limit(volume).filter(|l| *l > 0 && *l <= size) {
        size = limit;
    }
    size
}

/// An emptyDir's `sizeLimit` in bytes.
pub fn size_limit(volume: &Value) -> Option<u64> {
    let q = Quantity::from_json(&volume["emptyDir"]["sizeLimit"]).ok()?;
    u64::try_from(q.value()).ok()
}

/// The pod's memory limit when every container declares one (upstream
/// `ResourceConfigForPod`): the sum over app containers, or the largest init
/// container's if that is more.
fn pod_memory_limit(pod: &Value) -> Option<u64> {
    let limit = |c: &Value| -> Option<u64> {
        let q = Quantity::from_json(&c["resources"]["limits"]["memory"]).ok()?;
        u64::try_from(q.value()).ok()
    };
    let apps = pod["spec"]["containers"].as_array()?;
    let mut sum: u64 = 0;
    for c in apps {
        sum = sum.saturating_add(limit(c)?);
    }
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        sum = sum.max(limit(c)?);
    }
    Some(sum)
}

/// Bytes used by the files below `dir` (what an emptyDir's `sizeLimit` is measured
/// against).
pub fn disk_usage(dir: &Path) -> u64 {
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let own = meta.blocks() * 512;
    if !meta.is_dir() {
        return own;
    }
    own + std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| disk_usage(&e.path()))
        .sum::<u64>()
}

/// The node's memory from `/proc/meminfo` contents (`MemTotal`, in bytes).
pub fn mem_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

// ---------------------------------------------------------------------------------------
// Claims

/// Why a claim cannot be mounted yet (upstream's desired-state populator messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ClaimError {
    #[error("error processing PVC {namespace}/{claim}: failed to fetch PVC from API server: persistentvolumeclaims \"{claim}\" not found")]
    ClaimNotFound { namespace: String, claim: String },
    #[error("error processing PVC {namespace}/{claim}: PVC is not bound")]
    NotBound { namespace: String, claim: String },
    #[error("can't start pod because PVC {namespace}/{claim} is being deleted")]
    ClaimDeleting { namespace: String, claim: String },
    #[error(
        "PVC {namespace}/{claim} was not created for pod {namespace}/{pod} (pod is not owner)"
    )]
    NotOwner {
        namespace: String,
        claim: String,
        pod: String,
    },
    #[error("error processing PVC {namespace}/{claim}: failed to fetch PV {volume} from API server: persistentvolumes \"{volume}\" not found")]
    VolumeNotFound {
        namespace: String,
        claim: String,
        volume: String,
    },
    #[error("error processing PVC {namespace}/{claim}: found PV object {volume} but its pv.Spec.ClaimRef does not point to the claim")]
    WrongClaimRef {
        namespace: String,
        claim: String,
        volume: String,
    },
    #[error("MountVolume.SetUp failed for volume \"{volume}\" : volume type {kind} is not supported by orc (hostPath and local are)")]
    UnsupportedVolume { volume: String, kind: String },
}

/// A pod volume that names a claim: its `persistentVolumeClaim` or the PVC a generic
/// ephemeral volume gets (`<pod>-<volume>`, which must be owned by the pod).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRef {
    pub claim: String,
    pub read_only: bool,
    /// Generic ephemeral: the claim must have the pod as its controller.
    pub ephemeral: bool,
}

impl ClaimRef {
    /// The claim of `volume` in `pod`, if the volume names one.
    pub fn of(pod: &Value, volume: &Value) -> Option<ClaimRef> {
        if let Some(pvc) = volume["persistentVolumeClaim"].as_object() {
            return Some(ClaimRef {
                claim: pvc.get("claimName")?.as_str()?.to_string(),
                read_only: pvc.get("readOnly").and_then(Value::as_bool) == Some(true),
                ephemeral: false,
            });
        }
        if volume["ephemeral"].is_object() {
            let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
            let name = volume["name"].as_str().unwrap_or("");
            return Some(ClaimRef {
                claim: ephemeral_claim_name(pod_name, name),
                read_only: false,
                ephemeral: true,
            });
        }
        None
    }
}

pub use crate::api::ephemeral::{claim_is_for_pod, claim_name as ephemeral_claim_name};

/// The PV a claim is bound to, checked as upstream's kubelet checks it.
pub fn bound_volume(
    pod: &Value,
    claim: &ClaimRef,
    pvc: Option<&Value>,
) -> Result<String, ClaimError> {
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let name = claim.claim.clone();
    let Some(pvc) = pvc else {
        return Err(ClaimError::ClaimNotFound {
            namespace,
            claim: name,
        });
    };
    if claim.ephemeral && !claim_is_for_pod(pvc, pod["metadata"]["uid"].as_str().unwrap_or("")) {
        return Err(ClaimError::NotOwner {
            namespace,
            claim: name,
            pod: pod["metadata"]["name"].as_str().unwrap_or("").to_string(),
        });
    }
    if !pvc["metadata"]["deletionTimestamp"].is_null() {
        return Err(ClaimError::ClaimDeleting {
            namespace,
            claim: name,
        });
    }
    let volume = pvc["spec"]["volumeName"].as_str().unwrap_or("");
    if pvc["status"]["phase"].as_str() != Some("Bound") || volume.is_empty() {
        return Err(ClaimError::NotBound {
            namespace,
            claim: name,
        });
    }
    Ok(volume.to_string())
}

/// What a bound PV gives the pod: a host directory (its `hostPath`, with the hostPath
/// `type`, or its `local` path).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VolumeOnHost {
    pub path: PathBuf,
    /// The PV's hostPath source (for its `type` checks); `None` for `local`.
    pub host_path: Option<Value>,
}

/// The host directory of PV `pv` bound to `pvc`.
pub fn volume_on_host(
    pod: &Value,
    claim: &ClaimRef,
    pvc: &Value,
    volume_name: &str,
    pv: Option<&Value>,
) -> Result<VolumeOnHost, ClaimError> {
    let namespace = pod["metadata"]["namespace"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let Some(pv) = pv else {
        return Err(ClaimError::VolumeNotFound {
            namespace,
            claim: claim.claim.clone(),
            volume: volume_name.to_string(),
        });
    };
    let claim_ref = &pv["spec"]["claimRef"];
    let points_back = claim_ref["name"].as_str() == Some(claim.claim.as_str())
        && claim_ref["namespace"].as_str() == Some(namespace.as_str())
        && claim_ref["uid"]
            .as_str()
            .is_none_or(|uid| Some(uid) == pvc["metadata"]["uid"].as_str());
    if !points_back {
        return Err(ClaimError::WrongClaimRef {
            namespace,
            claim: claim.claim.clone(),
            volume: volume_name.to_string(),
        });
    }
    let spec = &pv["spec"];
    if let Some(path) = spec["hostPath"]["path"].as_str() {
        return Ok(VolumeOnHost {
            path: PathBuf::from(path),
            host_path: Some(spec["hostPath"].clone()),
        });
    }
    if let Some(path) = spec["local"]["path"].as_str() {
        return Ok(VolumeOnHost {
            path: PathBuf::from(path),
            host_path: None,
        });
    }
    let kind = UNSUPPORTED_TYPES
        .iter()
        .chain(UNSUPPORTED_PV_TYPES.iter())
        .find(|t| spec[**t].is_object())
        .map_or("unknown", |t| t);
    Err(ClaimError::UnsupportedVolume {
        volume: volume_name.to_string(),
        kind: kind.to_string(),
    })
}

/// The unsupported type a pod volume has, if any.
pub fn unsupported_type(volume: &Value) -> Option<&'static str> {
    UNSUPPORTED_TYPES
        .iter()
        .copied()
        .find(|t| volume[*t].is_object())
}

// ---------------------------------------------------------------------------------------
// subPath

/// Expands a mount's `subPathExpr` with the container's environment as upstream's
/// `ExpandContainerVolumeMounts`: `$(VAR)` from `env` (a variable unset or empty is an
/// error naming it), `$$` for a literal `$`.
pub fn expand_sub_path_expr(expr: &str, env: &[(String, String)]) -> Result<String, String> {
    let vars: BTreeMap<&str, &str> = env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
    let mut missing = std::collections::BTreeSet::new();
    let mut out = String::with_capacity(expr.len());
    let mut rest = expr;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.get(name).filter(|v| !v.is_empty()) {
                        Some(v) => out.push_str(v),
                        None => {
                            missing.insert(name.to_string());
                        }
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    if !missing.is_empty() {
        let names: Vec<String> = missing.into_iter().collect();
        return Err(format!("missing value for {}", names.join(", ")));
    }
    Ok(out)
}

/// A subPath as upstream's kubelet checks it after expansion: relative, no `..`.
pub fn check_sub_path(sub: &str) -> Result<(), String> {
    if sub.starts_with('/') {
        return Err(format!(
            "error SubPath `{sub}` must not be an absolute path"
        ));
    }
    if sub.split('/').any(|c| c == "..") {
        return Err(format!(
            "unable to provision SubPath `{sub}`: must not contain '..'"
        ));
    }
    Ok(())
}

/// Resolves `sub` below the volume at `root` for a bind mount: created as a directory
/// (with the root's mode) when missing, and refused when it leads out of the volume
/// through a symlink (upstream's safe subpath).
pub fn resolve_sub_path(root: &Path, sub: &str) -> Result<PathBuf, String> {
    check_sub_path(sub)?;
    let path = root.join(sub);
    if std::fs::symlink_metadata(&path).is_err() {
        let mode = std::fs::metadata(root).map_or(0o755, |m| m.mode() & 0o7777);
        std::fs::create_dir_all(&path)
            .map_err(|e| format!("failed to create subPath directory {}: {e}", path.display()))?;
        let _ = std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode));
    }
    let real_root = std::fs::canonicalize(root)
        .map_err(|e| format!("cannot resolve volume path {}: {e}", root.display()))?;
    let real = std::fs::canonicalize(&path)
        .map_err(|e| format!("cannot resolve subPath {}: {e}", path.display()))?;
    if !real.starts_with(&real_root) {
        return Err(format!(
            "subpath {:?} not within volume path {:?}",
            real.display().to_string(),
            real_root.display().to_string()
        ));
    }
    Ok(real)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn sub_path_expr_expands_the_container_env_and_names_what_is_missing() {
        let e = env(&[("POD", "web-0"), ("NS", "shop"), ("EMPTY", "")]);
        assert_eq!(
            expand_sub_path_expr("logs/$(POD)", &e).unwrap(),
            "logs/web-0"
        );
        assert_eq!(
            expand_sub_path_expr("$(NS)/$(POD)/x", &e).unwrap(),
            "shop/web-0/x"
        );
        assert_eq!(expand_sub_path_expr("a$$(POD)", &e).unwrap(), "a$(POD)");
        assert_eq!(expand_sub_path_expr("cost$5", &e).unwrap(), "cost$5");
        assert_eq!(expand_sub_path_expr("open$(POD", &e).unwrap(), "open$(POD");
        assert_eq!(
            expand_sub_path_expr("$(B)/$(A)/$(EMPTY)", &e).unwrap_err(),
            "missing value for A, B, EMPTY"
        );
    }

    #[test]
    fn expanded_sub_paths_must_stay_relative() {
        assert!(check_sub_path("a/b").is_ok());
        assert!(check_sub_path("a..b").is_ok());
        assert!(check_sub_path("/etc").unwrap_err().contains("absolute"));
        assert!(check_sub_path("a/../../x").unwrap_err().contains(".."));
    }

    #[test]
    fn a_sub_path_is_created_and_may_not_escape_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir(&root).unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o777)).unwrap();
        let made = resolve_sub_path(&root, "a/b").unwrap();
        assert!(made.is_dir());
        assert_eq!(std::fs::metadata(&made).unwrap().mode() & 0o777, 0o777);
        std::os::unix::fs::symlink("/etc", root.join("out")).unwrap();
        let err = resolve_sub_path(&root, "out").unwrap_err();
        assert!(err.contains("not within volume path"), "{err}");
        std::os::unix::fs::symlink("a", root.join("in")).unwrap();
        assert_eq!(
            resolve_sub_path(&root, "in").unwrap(),
            made.parent().unwrap()
        );
    }

    #[test]
    fn fs_group_adds_group_bits_and_setgid_on_directories() {
        assert_eq!(fs_group_mode(0o644, false, false), 0o664);
        assert_eq!(fs_group_mode(0o400, false, true), 0o440);
        assert_eq!(fs_group_mode(0o755, true, false), 0o2775);
        assert_eq!(fs_group_mode(0o700, true, true), 0o2750);
        assert_eq!(fs_group_mode(0o600, false, false), 0o660);
    }

    #[test]
    fn fs_group_comes_from_the_pod_security_context() {
        let pod = json!({"spec": {"securityContext": {"fsGroup": 2000,
            "fsGroupChangePolicy": "OnRootMismatch"}}});
        assert_eq!(
            FsGroup::of(&pod),
            Some(FsGroup {
                gid: 2000,
                on_root_mismatch: true
            })
        );
        assert_eq!(FsGroup::of(&json!({"spec": {}})), None);
        let always = json!({"spec": {"securityContext": {"fsGroup": 5}}});
        assert!(!FsGroup::of(&always).unwrap().on_root_mismatch);
    }

    /// Group changes need root (chown to a group we are not in); the walk and modes are
    /// checked with our own group, which any user may set.
    #[test]
    fn volume_ownership_walks_the_tree_unless_the_root_already_matches() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("vol");
        std::fs::create_dir_all(root.join("sub")).unwrap();
        std::fs::write(root.join("sub/f"), b"x").unwrap();
        std::fs::set_permissions(root.join("sub/f"), std::fs::Permissions::from_mode(0o600))
            .unwrap();
        std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
        let gid = std::fs::metadata(&root).unwrap().gid();
        let group = FsGroup {
            gid,
            on_root_mismatch: true,
        };
        set_volume_ownership(&root, group, false).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().mode() & 0o7777;
        assert_eq!(mode(&root), 0o2775);
        assert_eq!(mode(&root.join("sub/f")), 0o660);
        // The root matches now: OnRootMismatch leaves a new file alone, Always does not.
        std::fs::write(root.join("g"), b"y").unwrap();
        std::fs::set_permissions(root.join("g"), std::fs::Permissions::from_mode(0o600)).unwrap();
        set_volume_ownership(&root, group, false).unwrap();
        assert_eq!(mode(&root.join("g")), 0o600);
        let always = FsGroup {
            on_root_mismatch: false,
            ..group
        };
        set_volume_ownership(&root, always, false).unwrap();
        assert_eq!(mode(&root.join("g")), 0o660);
    }

    #[test]
    fn the_atomic_writer_swaps_the_data_link_and_writes_only_on_change() {
        let dir = tempfile::tempdir().unwrap();
        let vol = dir.path().join("vol");
        std::fs::create_dir(&vol).unwrap();
        // A plain file an older agent wrote is replaced by the link.
        std::fs::write(vol.join("a"), b"stale").unwrap();
        let first = vec![
            ("a".to_string(), b"1".to_vec(), 0o644),
            ("d/b".to_string(), b"2".to_vec(), 0o400),
        ];
        assert!(write_atomic(&vol, &first, None).unwrap());
        assert_eq!(std::fs::read(vol.join("a")).unwrap(), b"1");
        assert_eq!(std::fs::read(vol.join("d/b")).unwrap(), b"2");
        assert_eq!(
            std::fs::read_link(vol.join("a")).unwrap(),
            Path::new("..data/a")
        );
        let ts = std::fs::read_link(vol.join(DATA_DIR)).unwrap();
        assert!(ts.to_string_lossy().starts_with(".."), "{ts:?}");
        assert_eq!(
            std::fs::metadata(vol.join("d/b")).unwrap().mode() & 0o777,
            0o400
        );
        assert!(!write_atomic(&vol, &first, None).unwrap(), "unchanged");

        let second = vec![("a".to_string(), b"one".to_vec(), 0o644)];
        assert!(write_atomic(&vol, &second, None).unwrap());
        assert_eq!(std::fs::read(vol.join("a")).unwrap(), b"one");
        assert!(
            std::fs::symlink_metadata(vol.join("d")).is_err(),
            "d went away"
        );
        assert!(!vol.join(&ts).exists(), "the old payload is removed");
        let hidden: Vec<String> = std::fs::read_dir(&vol)
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(hidden.len(), 3, "..data, one payload dir, a: {hidden:?}");

        // A mode change alone is a change.
        let third = vec![("a".to_string(), b"one".to_vec(), 0o600)];
        assert!(write_atomic(&vol, &third, None).unwrap());
    }

    #[test]
    fn memory_empty_dirs_are_sized_by_limit_then_pod_limits_then_node_memory() {
        let gib = 1u64 << 30;
        let mut pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "512Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "512Mi"}}}]}});
        let vol = json!({"emptyDir": {"medium": "Memory", "sizeLimit": "64Mi"}});
        assert_eq!(memory_empty_dir_size(&pod, &vol, 8 * gib), 64 << 20);
        let no_limit = json!({"emptyDir": {"medium": "Memory"}});
        assert_eq!(memory_empty_dir_size(&pod, &no_limit, 8 * gib), gib);
        let big = json!({"emptyDir": {"medium": "Memory", "sizeLimit": "2Gi"}});
        assert_eq!(memory_empty_dir_size(&pod, &big, 8 * gib), gib);
        pod["spec"]["containers"][1]["resources"] = json!({});
        assert_eq!(memory_empty_dir_size(&pod, &no_limit, 8 * gib), 8 * gib);
        assert_eq!(
            mem_total("MemTotal:  1024 kB\nMemFree: 1 kB\n"),
            Some(1 << 20)
        );
    }

    fn pod() -> Value {
        json!({"metadata": {"name": "web", "namespace": "shop", "uid": "u1"}})
    }

    #[test]
    fn ephemeral_claims_are_named_after_pod_and_volume_and_must_be_owned() {
        assert_eq!(ephemeral_claim_name("web", "scratch"), "web-scratch");
        let vol = json!({"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}});
        let claim = ClaimRef::of(&pod(), &vol).unwrap();
        assert_eq!(claim.claim, "web-scratch");
        assert!(claim.ephemeral);
        let foreign = json!({"metadata": {"name": "web-scratch", "uid": "c1"},
            "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}});
        assert_eq!(
            bound_volume(&pod(), &claim, Some(&foreign))
                .unwrap_err()
                .to_string(),
            "PVC shop/web-scratch was not created for pod shop/web (pod is not owner)"
        );
        let mut owned = foreign.clone();
        owned["metadata"]["ownerReferences"] =
            json!([{"kind": "Pod", "name": "web", "uid": "u1", "controller": true}]);
        assert_eq!(bound_volume(&pod(), &claim, Some(&owned)).unwrap(), "pv1");
    }

    #[test]
    fn a_claim_mounts_only_once_bound_to_a_volume_pointing_back() {
        let vol =
            json!({"name": "data", "persistentVolumeClaim": {"claimName": "db", "readOnly": true}});
        let claim = ClaimRef::of(&pod(), &vol).unwrap();
        assert!(claim.read_only && !claim.ephemeral);
        assert_eq!(
            bound_volume(&pod(), &claim, None).unwrap_err().to_string(),
            "error processing PVC shop/db: failed to fetch PVC from API server: persistentvolumeclaims \"db\" not found"
        );
        let pending = json!({"metadata": {"name": "db", "uid": "c1"}, "spec": {}, "status": {"phase": "Pending"}});
        assert_eq!(
            bound_volume(&pod(), &claim, Some(&pending)).unwrap_err(),
            ClaimError::NotBound {
                namespace: "shop".into(),
                claim: "db".into()
            }
        );
        let bound = json!({"metadata": {"name": "db", "uid": "c1"},
            "spec": {"volumeName": "pv1"}, "status": {"phase": "Bound"}});
        assert_eq!(bound_volume(&pod(), &claim, Some(&bound)).unwrap(), "pv1");
        let pv = json!({"spec": {"claimRef": {"namespace": "shop", "name": "db", "uid": "c1"},
            "hostPath": {"path": "/srv/pv1", "type": "DirectoryOrCreate"}}});
        let on_host = volume_on_host(&pod(), &claim, &bound, "pv1", Some(&pv)).unwrap();
        assert_eq!(on_host.path, PathBuf::from("/srv/pv1"));
        assert!(on_host.host_path.is_some());
        let local = json!({"spec": {"claimRef": {"namespace": "shop", "name": "db"},
            "local": {"path": "/mnt/disk"}}});
        let on_host = volume_on_host(&pod(), &claim, &bound, "pv1", Some(&local)).unwrap();
        assert_eq!(on_host.path, PathBuf::from("/mnt/disk"));
        let other = json!({"spec": {"claimRef": {"namespace": "shop", "name": "db", "uid": "c9"},
            "hostPath": {"path": "/x"}}});
        assert!(matches!(
            volume_on_host(&pod(), &claim, &bound, "pv1", Some(&other)),
            Err(ClaimError::WrongClaimRef { .. })
        ));
        let nfs = json!({"spec": {"claimRef": {"namespace": "shop", "name": "db"},
            "nfs": {"server": "nas", "path": "/x"}}});
        assert_eq!(
            volume_on_host(&pod(), &claim, &bound, "pv1", Some(&nfs))
                .unwrap_err()
                .to_string(),
            "MountVolume.SetUp failed for volume \"pv1\" : volume type nfs is not supported by orc (hostPath and local are)"
        );
        assert!(matches!(
            volume_on_host(&pod(), &claim, &bound, "pv1", None),
            Err(ClaimError::VolumeNotFound { .. })
        ));
    }

    #[test]
    fn unsupported_pod_volume_types_are_named() {
        assert_eq!(
            unsupported_type(&json!({"name": "n", "nfs": {"server": "s", "path": "/"}})),
            Some("nfs")
        );
        assert_eq!(
            unsupported_type(&json!({"name": "c", "csi": {"driver": "d"}})),
            Some("csi")
        );
        assert_eq!(
            unsupported_type(&json!({"name": "e", "emptyDir": {}})),
            None
        );
    }
}
