//! Reads image tarballs for air-gapped import: OCI image layouts (`skopeo copy
//! oci-archive:`, `docker save` from Docker 25 on) and classic `docker save` archives
//! (`manifest.json` + `<id>/layer.tar`). Plain or gzip-compressed. No containerd here:
//! this turns an archive into blobs and named targets.

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use bytes::Bytes;
use serde::Deserialize;
use sha2::{Digest, Sha256};

use super::reference::Reference;
use super::registry::{sha256_digest, MEDIA_OCI_MANIFEST};
use super::{Result, RuntimeError};

/// Files up to this size are kept in memory during the scan; larger ones are streamed.
pub const IN_MEMORY_LIMIT: u64 = 256 * 1024;
const MEDIA_OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
const MEDIA_OCI_LAYER: &str = "application/vnd.oci.image.layer.v1.tar";
const MEDIA_OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const ANNOTATION_CONTAINERD_NAME: &str = "io.containerd.image.name";
const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";

/// A content descriptor (what containerd's `Descriptor` carries).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Descriptor {
    pub media_type: String,
    pub digest: String,
    pub size: i64,
}

/// Where a blob's bytes come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSource {
    Memory(Bytes),
    /// A file in the archive, read again when the blob is written.
    ArchiveFile(String),
}

/// What an archive holds: every blob by digest, and the images it names.
#[derive(Debug, Default)]
pub struct ImportPlan {
    pub blobs: BTreeMap<String, (i64, BlobSource)>,
    /// Image name → target descriptor (a manifest or an index).
    pub images: Vec<(String, Descriptor)>,
}

#[derive(Debug, Clone)]
struct FileEntry {
    size: u64,
    digest: String,
    gzip: bool,
}

/// Pass one over the archive: digests of every file, contents of the small ones.
#[derive(Debug, Default)]
struct Scan {
    files: HashMap<String, FileEntry>,
    small: HashMap<String, Bytes>,
}

fn normalize(path: &Path) -> String {
    let s = path.to_string_lossy();
    s.trim_start_matches("./")
        .trim_start_matches('/')
        .to_string()
}

/// Opens the archive for reading, transparently un-gzipping it.
pub fn open(path: &Path) -> Result<tar::Archive<Box<dyn Read + Send>>> {
    let read_err = |source| RuntimeError::ReadArchive {
        path: path.to_path_buf(),
        source,
    };
    let mut file = File::open(path).map_err(read_err)?;
    let mut magic = [0u8; 2];
    let gz = file.read_exact(&mut magic).is_ok() && magic == [0x1f, 0x8b];
    let file = File::open(path).map_err(read_err)?;
    let reader: Box<dyn Read + Send> = if gz {
        Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
    } else {
        Box::new(BufReader::new(file))
    };
    Ok(tar::Archive::new(reader))
}

fn scan(path: &Path) -> Result<Scan> {
    let read_err = |source| RuntimeError::ReadArchive {
        path: path.to_path_buf(),
        source,
    };
    let mut archive = open(path)?;
    let mut out = Scan::default();
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(read_err)?;
        if !entry.header().entry_type().is_file() {
            continue;
        }
        let name = normalize(&entry.path().map_err(read_err)?);
        let size = entry.size();
        let mut hasher = Sha256::new();
        let mut first = Vec::new();
        let mut kept = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = entry.read(&mut buf).map_err(read_err)?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            if first.len() < 2 {
                first.extend_from_slice(&buf[..n.min(2)]);
            }
            if size <= IN_MEMORY_LIMIT {
                kept.extend_from_slice(&buf[..n]);
            }
        }
        let digest = format!("sha256:{}", hex::encode(hasher.finalize()));
        if size <= IN_MEMORY_LIMIT {
            out.small.insert(name.clone(), Bytes::from(kept));
        }
        out.files.insert(
            name,
            FileEntry {
                size,
                digest,
                gzip: first.starts_with(&[0x1f, 0x8b]),
            },
        );
    }
    Ok(out)
}

impl Scan {
    fn source(&self, name: &str) -> Option<(i64, BlobSource)> {
        let entry = self.files.get(name)?;
        let source = match self.small.get(name) {
            Some(b) => BlobSource::Memory(b.clone()),
            None => BlobSource::ArchiveFile(name.to_string()),
        };
        Some((entry.size as i64, source))
    }
}

#[derive(Deserialize)]
struct OciIndex {
    manifests: Vec<OciDescriptor>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct OciDescriptor {
    media_type: String,
    digest: String,
    size: i64,
    #[serde(default)]
    annotations: HashMap<String, String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

/// Reads the archive and works out what to write to containerd.
pub fn plan(path: &Path) -> Result<ImportPlan> {
    let scan = scan(path)?;
    let invalid = |reason: String| RuntimeError::InvalidArchive {
        path: path.to_path_buf(),
        reason,
    };
    if let Some(index) = scan.small.get("index.json") {
        plan_oci_layout(&scan, index).map_err(invalid)
    } else if let Some(manifest) = scan.small.get("manifest.json") {
        plan_docker_archive(&scan, manifest).map_err(invalid)
    } else {
        Err(invalid(
            "neither an OCI layout (index.json) nor a docker save archive (manifest.json)".into(),
        ))
    }
}

/// Name for an image of an OCI layout: containerd's annotation, else a full reference in
/// `ref.name` (a bare tag names nothing).
fn oci_image_name(annotations: &HashMap<String, String>) -> Option<String> {
    if let Some(n) = annotations.get(ANNOTATION_CONTAINERD_NAME) {
        return Reference::parse(n).ok().map(|r| r.to_string());
    }
    let n = annotations.get(ANNOTATION_REF_NAME)?;
    if !n.contains('/') {
        return None;
    }
    Reference::parse(n).ok().map(|r| r.to_string())
}

fn plan_oci_layout(scan: &Scan, index: &[u8]) -> std::result::Result<ImportPlan, String> {
    let index: OciIndex = serde_json::from_slice(index).map_err(|e| format!("index.json: {e}"))?;
    let mut plan = ImportPlan::default();
    for (name, entry) in &scan.files {
        if let Some(rest) = name.strip_prefix("blobs/") {
            let Some((algo, hex)) = rest.split_once('/') else {
                continue;
            };
            let digest = format!("{algo}:{hex}");
            if digest != entry.digest {
                return Err(format!("blob {name} does not match its digest"));
            }
            plan.blobs
                .insert(digest, scan.source(name).expect("listed file"));
        }
    }
    for m in index.manifests {
        if !plan.blobs.contains_key(&m.digest) {
            return Err(format!(
                "index.json names {} which is not in blobs/",
                m.digest
            ));
        }
        if let Some(name) = oci_image_name(&m.annotations) {
            plan.images.push((
                name,
                Descriptor {
                    media_type: m.media_type,
                    digest: m.digest,
                    size: m.size,
                },
            ));
        }
    }
    if plan.images.is_empty() {
        return Err(
            "index.json names no image (io.containerd.image.name or a full \
                    org.opencontainers.image.ref.name annotation)"
                .into(),
        );
    }
    Ok(plan)
}

fn plan_docker_archive(scan: &Scan, manifest: &[u8]) -> std::result::Result<ImportPlan, String> {
    let entries: Vec<DockerManifestEntry> =
        serde_json::from_slice(manifest).map_err(|e| format!("manifest.json: {e}"))?;
    let mut plan = ImportPlan::default();
    for entry in entries {
        let file = |name: &str| {
            let name = normalize(Path::new(name));
            scan.files
                .get(&name)
                .cloned()
                .map(|f| (name.clone(), f))
                .ok_or_else(|| format!("manifest.json names {name} which is not in the archive"))
        };
        let (config_name, config) = file(&entry.config)?;
        plan.blobs.insert(
            config.digest.clone(),
            scan.source(&config_name).expect("listed"),
        );
        let mut layers = Vec::new();
        for layer in &entry.layers {
            let (layer_name, f) = file(layer)?;
            let media_type = if f.gzip {
                MEDIA_OCI_LAYER_GZIP
            } else {
                MEDIA_OCI_LAYER
            };
            layers.push(serde_json::json!({
                "mediaType": media_type, "digest": f.digest, "size": f.size,
            }));
            plan.blobs
                .insert(f.digest.clone(), scan.source(&layer_name).expect("listed"));
        }
        let manifest = serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2,
            "mediaType": MEDIA_OCI_MANIFEST,
            "config": {"mediaType": MEDIA_OCI_CONFIG, "digest": config.digest, "size": config.size},
            "layers": layers,
        }))
        .expect("json");
        let target = Descriptor {
            media_type: MEDIA_OCI_MANIFEST.to_string(),
            digest: sha256_digest(&manifest),
            size: manifest.len() as i64,
        };
        plan.blobs.insert(
            target.digest.clone(),
            (target.size, BlobSource::Memory(Bytes::from(manifest))),
        );
        for tag in entry.repo_tags.unwrap_or_default() {
            let name = Reference::parse(&tag)
                .map_err(|e| e.to_string())?
                .to_string();
            plan.images.push((name, target.clone()));
        }
    }
    if plan.images.is_empty() {
        return Err("manifest.json has no RepoTags: nothing to name the image by".into());
    }
    Ok(plan)
}

/// Archive file path of every blob that has to be streamed from the archive.
pub fn streamed_files(plan: &ImportPlan) -> HashMap<String, (String, i64)> {
    plan.blobs
        .iter()
        .filter_map(|(digest, (size, src))| match src {
            BlobSource::ArchiveFile(f) => Some((f.clone(), (digest.clone(), *size))),
            BlobSource::Memory(_) => None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn tarball(dir: &Path, files: &[(&str, &[u8])]) -> PathBuf {
        let path = dir.join("image.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (name, data) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.finish().unwrap();
        path
    }

    #[test]
    fn oci_layout_images_are_named_by_annotation() {
        let dir = tempfile::tempdir().unwrap();
        let big = vec![7u8; IN_MEMORY_LIMIT as usize + 1];
        let manifest = br#"{"schemaVersion":2}"#;
        let md = sha256_digest(manifest);
        let bd = sha256_digest(&big);
        let index = format!(
            r#"{{"schemaVersion":2,"manifests":[
              {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{md}","size":{},
                "annotations":{{"io.containerd.image.name":"busybox:test"}}}},
              {{"mediaType":"{MEDIA_OCI_MANIFEST}","digest":"{md}","size":{},
                "annotations":{{"org.opencontainers.image.ref.name":"only-a-tag"}}}}]}}"#,
            manifest.len(),
            manifest.len()
        );
        let path = tarball(
            dir.path(),
            &[
                ("oci-layout", b"{}"),
                ("index.json", index.as_bytes()),
                (&format!("blobs/sha256/{}", &md[7..]), manifest),
                (&format!("./blobs/sha256/{}", &bd[7..]), &big),
            ],
        );
        let plan = plan(&path).unwrap();
        assert_eq!(plan.images.len(), 1);
        assert_eq!(plan.images[0].0, "docker.io/library/busybox:test");
        assert_eq!(plan.images[0].1.digest, md);
        assert_eq!(
            plan.blobs[&md],
            (
                manifest.len() as i64,
                BlobSource::Memory(Bytes::from_static(manifest))
            )
        );
        assert_eq!(
            plan.blobs[&bd],
            (
                big.len() as i64,
                BlobSource::ArchiveFile(format!("blobs/sha256/{}", &bd[7..]))
            )
        );
        assert_eq!(streamed_files(&plan).len(), 1);
    }

    #[test]
    fn oci_layout_with_a_corrupt_blob_is_rejected() {
        let dir = tempfile::tempdir().unwrap();
        let wrong = format!("blobs/sha256/{}", "0".repeat(64));
        let path = tarball(
            dir.path(),
            &[("index.json", br#"{"manifests":[]}"#), (&wrong, b"data")],
        );
        let err = plan(&path).unwrap_err().to_string();
        assert!(err.contains("does not match its digest"), "{err}");
    }

    #[test]
    fn docker_save_archives_get_a_synthesized_oci_manifest() {
        let dir = tempfile::tempdir().unwrap();
        let config = br#"{"rootfs":{"type":"layers","diff_ids":[]}}"#;
        let layer = b"pretend this is a tar";
        let manifest_json = br#"[{"Config":"abc.json","RepoTags":["app:v1","reg.local:5000/x/app:v1"],"Layers":["l1/layer.tar"]}]"#;
        let path = tarball(
            dir.path(),
            &[
                ("manifest.json", manifest_json),
                ("abc.json", config),
                ("l1/layer.tar", layer),
            ],
        );
        let plan = plan(&path).unwrap();
        let names: Vec<&str> = plan.images.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            ["docker.io/library/app:v1", "reg.local:5000/x/app:v1"]
        );
        let target = &plan.images[0].1;
        let (_, BlobSource::Memory(m)) = &plan.blobs[&target.digest] else {
            panic!("manifest should be in memory")
        };
        let m: serde_json::Value = serde_json::from_slice(m).unwrap();
        assert_eq!(m["config"]["digest"], sha256_digest(config));
        assert_eq!(m["layers"][0]["digest"], sha256_digest(layer));
        assert_eq!(m["layers"][0]["mediaType"], MEDIA_OCI_LAYER);
        assert!(plan.blobs.contains_key(&sha256_digest(layer)));
    }

    #[test]
    fn other_tarballs_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = tarball(dir.path(), &[("hello.txt", b"hi")]);
        assert!(plan(&path)
            .unwrap_err()
            .to_string()
            .contains("neither an OCI layout"));
    }
}
