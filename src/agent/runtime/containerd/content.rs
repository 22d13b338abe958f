//! The Content service: blobs checked, read, labelled and written (streamed in chunks,
//! committed under the caller's lease).

use std::collections::BTreeMap;

use bytes::Bytes;
use containerd_client::services::v1::{
    InfoRequest, ReadContentRequest, UpdateRequest, WriteAction, WriteContentRequest,
    WriteContentResponse,
};
use containerd_client::tonic::{Code, Status, Streaming};
use futures::{Stream, StreamExt};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

use super::manifest::gc_labels;
use super::{grpc, ContainerdRuntime, WRITE_CHUNK};
use crate::agent::runtime::archive::Descriptor;
use crate::agent::runtime::{Result, RuntimeError};

/// An open content write (`Content.Write` stream), committed with `commit`.
pub(super) struct ContentWriter {
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

    pub(super) async fn write(&mut self, data: Bytes) -> Result<()> {
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
    pub(super) async fn commit(mut self, labels: BTreeMap<String, String>) -> Result<String> {
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
    pub(super) async fn content_exists(&self, digest: &str) -> Result<bool> {
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

    pub(super) async fn read_blob(&self, digest: &str) -> Result<Vec<u8>> {
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

    pub(super) async fn set_labels(
        &self,
        digest: &str,
        labels: BTreeMap<String, String>,
    ) -> Result<()> {
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

    pub(super) async fn begin_write(
        &self,
        lease: &str,
        expected: &str,
        total: i64,
    ) -> Result<ContentWriter> {
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
    pub(super) async fn write_blob<S>(
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

    pub(super) async fn write_bytes(
        &self,
        lease: &str,
        desc: &Descriptor,
        bytes: Bytes,
    ) -> Result<()> {
        let labels = gc_labels(&bytes);
        self.write_blob(lease, desc, labels, futures::stream::iter([Ok(bytes)]))
            .await
    }
}
