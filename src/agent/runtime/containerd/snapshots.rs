//! Snapshots: image layers unpacked (Diff service) onto committed snapshots named by
//! chain ID, and snapshot lookup and removal.

use std::collections::HashMap;

use containerd_client::services::v1::snapshots::{
    CommitSnapshotRequest, PrepareSnapshotRequest, RemoveSnapshotRequest, StatSnapshotRequest,
};
use containerd_client::services::v1::ApplyRequest;
use containerd_client::tonic::Code;

use super::images::ResolvedImage;
use super::manifest::{chain_ids, to_pb};
use super::{grpc, ContainerdRuntime};
use crate::agent::runtime::archive::Descriptor;
use crate::agent::runtime::{Result, RuntimeError};

impl ContainerdRuntime {
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

    pub(super) async fn remove_snapshot(&self, key: &str) -> Result<()> {
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
    pub(super) async fn unpack(&self, reference: &str, image: &ResolvedImage) -> Result<String> {
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
}
