//! Images: pulled from a registry or imported from an archive into content, resolved to
//! this platform, unpacked, and recorded with the Images service, each under a lease.

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use bytes::Bytes;
use containerd_client::services::v1::{
    CreateImageRequest, DeleteImageRequest, GetImageRequest, Image, ListImagesRequest,
    UpdateImageRequest,
};
use containerd_client::tonic::Code;
use tokio::sync::mpsc;
use tracing::{debug, info};

use super::content::ContentWriter;
use super::manifest::{
    host_platform, is_index, pick_platform, to_descriptor, to_pb, ConfigDoc, ManifestDoc,
};
use super::{grpc, ContainerdRuntime, WRITE_CHUNK};
use crate::agent::runtime::archive::{self, BlobSource, Descriptor};
use crate::agent::runtime::{ImageInfo, PullPolicy, Reference, RegistryAuth, Result, RuntimeError};

/// An image resolved to this platform's manifest and config.
#[derive(Clone)]
pub(super) struct ResolvedImage {
    pub(super) target: Descriptor,
    pub(super) config_digest: String,
    pub(super) layers: Vec<Descriptor>,
    pub(super) diff_ids: Vec<String>,
    pub(super) config: Option<oci_spec::image::Config>,
}

impl ResolvedImage {
    pub(super) fn info(&self, name: &str) -> ImageInfo {
        ImageInfo {
            name: name.to_string(),
            digest: self.target.digest.clone(),
            config_digest: self.config_digest.clone(),
            size: self.layers.iter().map(|l| l.size).sum(),
            user: self
                .config
                .as_ref()
                .and_then(|c| c.user().clone())
                .unwrap_or_default(),
        }
    }
}

impl ContainerdRuntime {
    /// Follows an image target to this platform's manifest and config (read from content).
    async fn resolve(&self, reference: &str, target: &Descriptor) -> Result<ResolvedImage> {
        if let Some(known) = self.resolved_cache(&target.digest) {
            return Ok(known);
        }
        let resolved = self.resolve_from_content(reference, target).await?;
        self.remember_resolved(&resolved);
        Ok(resolved)
    }

    async fn resolve_from_content(
        &self,
        reference: &str,
        target: &Descriptor,
    ) -> Result<ResolvedImage> {
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
    pub(super) async fn present_image(
        &self,
        name: &str,
    ) -> Result<Option<(ResolvedImage, String)>> {
        let Some(target) = self.get_image(name).await? else {
            return Ok(None);
        };
        let resolved = self.resolve(name, &target).await?;
        let top = self.unpack(name, &resolved).await?;
        self.remember_present(name, &resolved, &top);
        Ok(Some((resolved, top)))
    }

    /// [`Self::present_image`], unless it found the image a moment ago.
    pub(super) async fn present_image_recent(
        &self,
        name: &str,
    ) -> Result<Option<(ResolvedImage, String)>> {
        if let Some(known) = self.recently_present(name) {
            return Ok(Some(known));
        }
        self.present_image(name).await
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
            let top = self.unpack(&name, &resolved).await?;
            self.put_image(&name, &target).await?;
            self.remember_present(&name, &resolved, &top);
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

    pub(super) async fn pull_unless_present(
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

    pub(super) async fn import_archive_file(&self, path: &Path) -> Result<Vec<String>> {
        let lease = self.create_lease().await?;
        let result = self.import_with_lease(&lease, path).await;
        self.delete_lease(&lease).await;
        for name in result.iter().flatten() {
            // It may name other content now.
            self.forget_present(name);
        }
        result
    }

    pub(super) async fn usable_images(&self) -> Result<Vec<ImageInfo>> {
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

    /// Deletes the image record with containerd's garbage collection done synchronously
    /// (`sync`), so the space is free when this returns.
    pub(super) async fn delete_image(&self, name: &str) -> Result<()> {
        self.forget_present(name);
        let req = self.request(
            DeleteImageRequest {
                name: name.to_string(),
                sync: true,
                target: None,
            },
            None,
        );
        match self.client.images().delete(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("delete image")(s)),
        }
    }
}
