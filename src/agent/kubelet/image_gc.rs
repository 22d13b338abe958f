//! Image garbage collection as upstream's kubelet (pkg/kubelet/images/image_gc_manager.go):
//! when the image filesystem (containerd's root) is `--image-gc-high-threshold` percent
//! full, unused images are removed, least recently used first, until it is below
//! `--image-gc-low-threshold`. An image a container uses (running or not) is never
//! removed, nor one unused for less than `--image-minimum-gc-age` (images imported from
//! `agent/images/` included). When and how long each image was used is kept in
//! `agent/image-gc.json`, so an agent restart does not make every image look new.
//! Failures are Warning events on the Node (`FreeDiskSpaceFailed`, `ImageGCFailed`).

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use tracing::{debug, info, warn};

use super::api::PodApi;
use crate::agent::runtime::{ContainerRuntime, ImageInfo, RuntimeError};

/// Event reasons, as upstream's kubelet records them on the Node.
pub const FREE_DISK_SPACE_FAILED: &str = "FreeDiskSpaceFailed";
pub const IMAGE_GC_FAILED: &str = "ImageGCFailed";
/// File in the agent directory keeping the images' usage history.
pub const STATE_FILE: &str = "image-gc.json";

/// When images are collected (upstream's flags and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageGcPolicy {
    /// Percent of the image filesystem in use at which collection starts.
    pub high_threshold: u8,
    /// Percent collection brings it down to.
    pub low_threshold: u8,
    /// Images unused for less than this are kept.
    pub min_age: Duration,
    /// How often the filesystem is checked (upstream: every 5 minutes).
    pub period: Duration,
}

impl Default for ImageGcPolicy {
    fn default() -> Self {
        ImageGcPolicy {
            high_threshold: 85,
            low_threshold: 80,
            min_age: Duration::from_secs(120),
            period: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("--image-gc-high-threshold {0}: must be a percentage between 0 and 100")]
    High(u8),
    #[error("--image-gc-low-threshold {0}: must be a percentage between 0 and 100")]
    Low(u8),
    #[error("--image-gc-low-threshold {low} must be less than --image-gc-high-threshold {high}")]
    LowNotBelowHigh { low: u8, high: u8 },
}

impl ImageGcPolicy {
    /// Checks the thresholds as upstream's kubelet does at start.
    pub fn validate(&self) -> Result<(), PolicyError> {
        if self.high_threshold > 100 {
            return Err(PolicyError::High(self.high_threshold));
        }
        if self.low_threshold > 100 {
            return Err(PolicyError::Low(self.low_threshold));
        }
        if self.low_threshold >= self.high_threshold {
            return Err(PolicyError::LowNotBelowHigh {
                low: self.low_threshold,
                high: self.high_threshold,
            });
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ImageGcError {
    #[error("statfs the image filesystem {path}")]
    Statfs {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("invalid capacity 0 on image filesystem {path}")]
    NoCapacity { path: PathBuf },
    #[error("list images and containers")]
    Runtime(#[source] RuntimeError),
    #[error("remove image {name}")]
    Remove {
        name: String,
        #[source]
        source: RuntimeError,
    },
    /// Upstream's message, word for word.
    #[error("Failed to garbage collect required amount of images. Attempted to free {wanted} bytes, but only found {freed} bytes eligible to free.")]
    NotEnoughFreed { wanted: u64, freed: u64 },
}

/// Size and free space of a filesystem, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FsUsage {
    pub capacity: u64,
    pub available: u64,
}

impl FsUsage {
    /// Percent in use, as upstream computes it (`100 - available * 100 / capacity`).
    pub fn used_percent(&self) -> u64 {
        100 - (self.available * 100 / self.capacity.max(1)).min(100)
    }

    /// Bytes to free to get down to `low` percent in use (0 when already there).
    pub fn to_free_for(&self, low: u8) -> u64 {
        (self.capacity * u64::from(100 - low.min(100)) / 100).saturating_sub(self.available)
    }
}

/// The image filesystem's usage (statfs; a fake in tests).
pub trait ImageFs: Send + Sync {
    fn usage(&self) -> Result<FsUsage, ImageGcError>;
}

/// The filesystem holding `path` (containerd's root).
pub struct StatvfsImageFs {
    pub path: PathBuf,
}

impl ImageFs for StatvfsImageFs {
    fn usage(&self) -> Result<FsUsage, ImageGcError> {
        let st = nix::sys::statvfs::statvfs(&self.path).map_err(|e| ImageGcError::Statfs {
            path: self.path.clone(),
            source: std::io::Error::from(e),
        })?;
        let block = st.fragment_size() as u64;
        let usage = FsUsage {
            capacity: st.blocks() as u64 * block,
            available: st.blocks_available() as u64 * block,
        };
        if usage.capacity == 0 {
            return Err(ImageGcError::NoCapacity {
                path: self.path.clone(),
            });
        }
        Ok(usage)
    }
}

/// What is known of one image (by image id, the config digest).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageRecord {
    pub first_detected: DateTime<Utc>,
    /// Last time a container was seen using it; `None`: never.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_used: Option<DateTime<Utc>>,
}

impl ImageRecord {
    /// Since when the image has been unused.
    fn unused_since(&self) -> DateTime<Utc> {
        self.last_used
            .map_or(self.first_detected, |u| u.max(self.first_detected))
    }
}

/// An image id that may be removed, with its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    pub id: String,
    pub names: Vec<String>,
    pub size: u64,
    pub last_used: Option<DateTime<Utc>>,
}

/// Updates `records` from what is present now: new images are detected, images in
/// `in_use` (ids) were used `now`, records of images gone are dropped. Returns whether
/// anything worth keeping on disk changed (an image came or went, or started or stopped
/// being used); the in-memory `last_used` of images in use moves on every call.
pub fn observe(
    records: &mut BTreeMap<String, ImageRecord>,
    images: &[ImageInfo],
    in_use: &HashSet<String>,
    was_in_use: &HashSet<String>,
    now: DateTime<Utc>,
) -> bool {
    let present: BTreeSet<&str> = images.iter().map(|i| i.config_digest.as_str()).collect();
    let before = records.len();
    records.retain(|id, _| present.contains(id.as_str()));
    let mut changed = records.len() != before;
    for id in present {
        let record = records.entry(id.to_string()).or_insert_with(|| {
            changed = true;
            ImageRecord {
                first_detected: now,
                last_used: None,
            }
        });
        if in_use.contains(id) {
            record.last_used = Some(now);
        }
    }
    changed || in_use != was_in_use
}

/// The images that may go, least recently used (never used first) first: not used by
/// any container, and unused for at least `min_age`.
pub fn candidates(
    images: &[ImageInfo],
    in_use: &HashSet<String>,
    records: &BTreeMap<String, ImageRecord>,
    now: DateTime<Utc>,
    min_age: Duration,
) -> Vec<Candidate> {
    let min_age = chrono::Duration::from_std(min_age).unwrap_or(chrono::Duration::MAX);
    let mut by_id: BTreeMap<&str, Candidate> = BTreeMap::new();
    for image in images {
        let id = image.config_digest.as_str();
        if in_use.contains(id) {
            continue;
        }
        let Some(record) = records.get(id) else {
            continue;
        };
        if now - record.unused_since() < min_age {
            continue;
        }
        let c = by_id.entry(id).or_insert_with(|| Candidate {
            id: id.to_string(),
            names: Vec::new(),
            size: image.size.max(0) as u64,
            last_used: record.last_used,
        });
        c.names.push(image.name.clone());
    }
    let mut out: Vec<Candidate> = by_id.into_values().collect();
    out.sort_by(|a, b| {
        let first_detected = |c: &Candidate| records.get(&c.id).map(|r| r.first_detected);
        (a.last_used, first_detected(a), &a.id).cmp(&(b.last_used, first_detected(b), &b.id))
    });
    out
}

/// What one collection did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Collected {
    /// Names of the images removed.
    pub removed: Vec<String>,
    /// Bytes freed on the image filesystem.
    pub freed: u64,
}

/// The image garbage collector of one node.
pub struct ImageGc {
    runtime: Arc<dyn ContainerRuntime>,
    fs: Arc<dyn ImageFs>,
    api: Arc<dyn PodApi>,
    policy: ImageGcPolicy,
    node_name: String,
    state_file: PathBuf,
    records: BTreeMap<String, ImageRecord>,
    in_use: HashSet<String>,
    /// The last collection failed (a second failure in a row is an `ImageGCFailed` event).
    failed_before: bool,
}

impl ImageGc {
    /// A collector keeping its state in `agent_dir` (loaded from there if present).
    pub fn new(
        runtime: Arc<dyn ContainerRuntime>,
        fs: Arc<dyn ImageFs>,
        api: Arc<dyn PodApi>,
        policy: ImageGcPolicy,
        node_name: &str,
        agent_dir: &Path,
    ) -> ImageGc {
        let state_file = agent_dir.join(STATE_FILE);
        let records = std::fs::read(&state_file)
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default();
        ImageGc {
            runtime,
            fs,
            api,
            policy,
            node_name: node_name.to_string(),
            state_file,
            records,
            in_use: HashSet::new(),
            failed_before: false,
        }
    }

    /// The usage history (for tests and the state file).
    pub fn records(&self) -> &BTreeMap<String, ImageRecord> {
        &self.records
    }

    /// Records which images are present and used (images and containers as the runtime
    /// lists them), keeping the history on disk when it changed.
    async fn refresh(&mut self, now: DateTime<Utc>) -> Result<Vec<ImageInfo>, ImageGcError> {
        let images = self
            .runtime
            .list_images()
            .await
            .map_err(ImageGcError::Runtime)?;
        let containers = self
            .runtime
            .list_containers()
            .await
            .map_err(ImageGcError::Runtime)?;
        let used_names: HashSet<&str> = containers.iter().map(|c| c.image.as_str()).collect();
        let in_use: HashSet<String> = images
            .iter()
            .filter(|i| used_names.contains(i.name.as_str()))
            .map(|i| i.config_digest.clone())
            .collect();
        if observe(&mut self.records, &images, &in_use, &self.in_use, now) {
            self.save();
        }
        self.in_use = in_use;
        Ok(images)
    }

    fn save(&self) {
        let write = || -> std::io::Result<()> {
            let tmp = self.state_file.with_extension("json.tmp");
            std::fs::write(&tmp, serde_json::to_vec(&self.records)?)?;
            std::fs::rename(&tmp, &self.state_file)
        };
        if let Err(e) = write() {
            warn!(file = %self.state_file.display(), error = %e, "keeping the image usage history failed");
        }
    }

    /// One check: collects if the filesystem is past the high threshold.
    pub async fn collect(&mut self, now: DateTime<Utc>) -> Result<Collected, ImageGcError> {
        let images = self.refresh(now).await?;
        let usage = self.fs.usage()?;
        let used = usage.used_percent();
        if used < u64::from(self.policy.high_threshold) {
            debug!(
                used_percent = used,
                "image filesystem below the high threshold"
            );
            return Ok(Collected::default());
        }
        let wanted = usage.to_free_for(self.policy.low_threshold);
        info!(
            used_percent = used,
            high_threshold = self.policy.high_threshold,
            bytes_to_free = wanted,
            "image filesystem past the high threshold: removing unused images"
        );
        let mut collected = Collected::default();
        let mut available = usage.available;
        for c in candidates(
            &images,
            &self.in_use,
            &self.records,
            now,
            self.policy.min_age,
        ) {
            for name in &c.names {
                self.runtime
                    .remove_image(name)
                    .await
                    .map_err(|source| ImageGcError::Remove {
                        name: name.clone(),
                        source,
                    })?;
                info!(
                    image = %name,
                    id = %c.id,
                    size = c.size,
                    last_used = ?c.last_used,
                    "removed unused image"
                );
                collected.removed.push(name.clone());
            }
            self.records.remove(&c.id);
            let now_usage = self.fs.usage()?;
            collected.freed += now_usage.available.saturating_sub(available);
            available = now_usage.available;
            if collected.freed >= wanted {
                break;
            }
        }
        if !collected.removed.is_empty() {
            self.save();
        }
        if collected.freed < wanted {
            let e = ImageGcError::NotEnoughFreed {
                wanted,
                freed: collected.freed,
            };
            self.node_event(FREE_DISK_SPACE_FAILED, &e.to_string())
                .await;
            return Err(e);
        }
        Ok(collected)
    }

    /// One check with upstream's failure handling: a failure is logged, and a second
    /// one in a row is an `ImageGCFailed` event too.
    pub async fn tick(&mut self, now: DateTime<Utc>) -> Option<Collected> {
        match self.collect(now).await {
            Ok(c) => {
                self.failed_before = false;
                Some(c)
            }
            Err(e) => {
                let message = crate::agent::error_chain(&e);
                warn!(error = %message, "image garbage collection failed");
                if self.failed_before {
                    self.node_event(IMAGE_GC_FAILED, &message).await;
                }
                self.failed_before = true;
                None
            }
        }
    }

    /// Checks every `policy.period` (the first check after one period, as upstream).
    pub async fn run(mut self) {
        info!(
            high_threshold = self.policy.high_threshold,
            low_threshold = self.policy.low_threshold,
            period_s = self.policy.period.as_secs_f64(),
            "image garbage collection is on"
        );
        let mut every = tokio::time::interval_at(
            tokio::time::Instant::now() + self.policy.period,
            self.policy.period,
        );
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            every.tick().await;
            self.tick(Utc::now()).await;
        }
    }

    async fn node_event(&self, reason: &str, message: &str) {
        let event = node_event(&self.node_name, reason, message, Utc::now());
        if let Err(e) = self.api.create_event("default", &event).await {
            debug!(%reason, error = %e, "node event not recorded");
        }
    }
}

/// A Warning event about this node (upstream's node reference: kind Node, the node's
/// name as its uid, in namespace `default`).
pub fn node_event(node: &str, reason: &str, message: &str, now: DateTime<Utc>) -> Value {
    let time = super::status::timestamp(now);
    let suffix = uuid::Uuid::new_v4().simple().to_string();
    json!({
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": format!("{node}.{}", &suffix[..16]), "namespace": "default"},
        "involvedObject": {"kind": "Node", "apiVersion": "v1", "name": node, "uid": node},
        "reason": reason,
        "message": message,
        "type": "Warning",
        "source": {"component": "kubelet", "host": node},
        "reportingComponent": "kubelet",
        "reportingInstance": node,
        "firstTimestamp": time,
        "lastTimestamp": time,
        "count": 1,
    })
}

#[cfg(test)]
mod tests;
