//! Image manifests, indexes and configs as JSON documents: platform choice, chain IDs and
//! the GC labels that tie a manifest to what it references. Pure; no containerd calls.

use std::collections::{BTreeMap, HashMap};

use containerd_client::types::Descriptor as PbDescriptor;
use serde::Deserialize;

use crate::agent::runtime::archive::Descriptor;
use crate::agent::runtime::registry::{sha256_digest, MEDIA_DOCKER_LIST, MEDIA_OCI_INDEX};

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
pub(super) struct DescriptorDoc {
    #[serde(default)]
    pub(super) media_type: String,
    pub(super) digest: String,
    pub(super) size: i64,
    #[serde(default)]
    pub(super) platform: Option<PlatformDoc>,
}

#[derive(Debug, Deserialize)]
pub(super) struct PlatformDoc {
    pub(super) architecture: String,
    pub(super) os: String,
    #[serde(default)]
    pub(super) variant: Option<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ManifestDoc {
    #[serde(default)]
    pub(super) manifests: Option<Vec<DescriptorDoc>>,
    #[serde(default)]
    pub(super) config: Option<DescriptorDoc>,
    #[serde(default)]
    pub(super) layers: Vec<DescriptorDoc>,
}

#[derive(Debug, Deserialize)]
pub(super) struct RootFsDoc {
    pub(super) diff_ids: Vec<String>,
}

#[derive(Debug, Deserialize)]
pub(super) struct ConfigDoc {
    pub(super) rootfs: RootFsDoc,
    #[serde(default)]
    pub(super) config: Option<serde_json::Value>,
}

/// Picks the manifest for this host from an index.
pub(super) fn pick_platform(manifests: &[DescriptorDoc]) -> Option<&DescriptorDoc> {
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

pub(super) fn to_descriptor(d: &DescriptorDoc) -> Descriptor {
    Descriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
    }
}

pub(super) fn to_pb(d: &Descriptor) -> PbDescriptor {
    PbDescriptor {
        media_type: d.media_type.clone(),
        digest: d.digest.clone(),
        size: d.size,
        annotations: HashMap::new(),
    }
}

pub(super) fn is_index(media_type: &str, doc: &ManifestDoc) -> bool {
    media_type == MEDIA_OCI_INDEX || media_type == MEDIA_DOCKER_LIST || doc.manifests.is_some()
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
