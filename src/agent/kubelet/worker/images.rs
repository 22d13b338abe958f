//! A container's image made present under its pull policy, with the pod's
//! imagePullSecrets as credentials, and the Pulling/Pulled/Failed events.

use serde_json::Value;
use tokio::time::Instant;
use tracing::warn;

use super::{containers, error_chain, humantime, Group, PodWorker};
use crate::agent::kubelet::container::{self, pull_policy};
use crate::agent::kubelet::status::Waiting;
use crate::agent::runtime::PullPolicy;

/// An image made present for a container.
pub(super) struct PulledImage {
    /// The image ID as container statuses show it (`repo@digest`).
    pub(super) id: String,
    /// The image config's `User` (empty when it sets none).
    pub(super) user: String,
}

impl From<&crate::agent::runtime::ImageInfo> for PulledImage {
    fn from(info: &crate::agent::runtime::ImageInfo) -> Self {
        PulledImage {
            id: image_id(info),
            user: info.user.clone(),
        }
    }
}

impl PodWorker {
    /// Makes the image present; the image on success, the waiting state and the error
    /// on failure.
    pub(super) async fn pull(
        &self,
        group: Group,
        name: &str,
        spec: &Value,
        image: &str,
    ) -> Result<PulledImage, (Waiting, String)> {
        let policy = pull_policy(spec);
        let runtime = &self.shared.runtime;
        let field = self.field_path(group, name);
        if policy != PullPolicy::Always {
            if let Ok(info) = runtime.ensure_image(image, PullPolicy::Never, None).await {
                // Told after the status is written.
                self.event_at_later(
                    "Normal",
                    "Pulled",
                    &format!("Container image {image:?} already present on machine"),
                    &field,
                );
                return Ok(PulledImage::from(&info));
            }
        }
        if policy == PullPolicy::Never {
            let message =
                format!("Container image {image:?} is not present with pull policy of Never");
            self.event_at("Warning", "ErrImageNeverPull", &message, &field)
                .await;
            return Err((
                Waiting {
                    reason: "ErrImageNeverPull".into(),
                    message: message.clone(),
                },
                message,
            ));
        }
        self.event_at(
            "Normal",
            "Pulling",
            &format!("Pulling image {image:?}"),
            &field,
        )
        .await;
        let auth = self.pull_auth(image).await;
        let begun = Instant::now();
        match runtime.ensure_image(image, policy, auth.as_ref()).await {
            Ok(info) => {
                let took = begun.elapsed();
                self.event_at(
                    "Normal",
                    "Pulled",
                    &format!("Successfully pulled image {image:?} in {}", humantime(took)),
                    &field,
                )
                .await;
                Ok(PulledImage::from(&info))
            }
            Err(e) => {
                let error = error_chain(&e);
                let message = format!("Failed to pull image {image:?}: {error}");
                self.event_at("Warning", "Failed", &message, &field).await;
                Err((
                    Waiting {
                        reason: "ErrImagePull".into(),
                        message,
                    },
                    error,
                ))
            }
        }
    }

    /// Registry credentials for `image` from the pod's imagePullSecrets (missing or
    /// unreadable Secrets are skipped, as upstream does).
    async fn pull_auth(&self, image: &str) -> Option<crate::agent::runtime::RegistryAuth> {
        let registry = crate::agent::runtime::Reference::parse(image)
            .ok()?
            .registry;
        let mut secrets = Vec::new();
        for s in containers(&self.pod["spec"], "imagePullSecrets") {
            let Some(name) = s["name"].as_str() else {
                continue;
            };
            match self
                .shared
                .api
                .get_object("secrets", self.namespace(), name)
                .await
            {
                Ok(Some(secret)) => secrets.push(secret),
                Ok(None) => warn!(pod = %self.name(), secret = name, "image pull secret not found"),
                Err(e) => {
                    warn!(pod = %self.name(), secret = name, error = %e, "reading image pull secret failed")
                }
            }
        }
        container::registry_auth(&secrets, &registry)
    }
}

fn image_id(info: &crate::agent::runtime::ImageInfo) -> String {
    let repo = info
        .name
        .rsplit_once(':')
        .map_or(info.name.as_str(), |(r, tag)| {
            if tag.contains('/') {
                info.name.as_str()
            } else {
                r
            }
        });
    format!("{repo}@{}", info.digest)
}
