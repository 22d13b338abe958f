//! Pod garbage collector: force-deletes terminating pods bound to a node that no longer
//! exists (no kubelet will ever confirm their termination).

use std::sync::Arc;
use std::time::Duration;

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::apiserver::registry::DeleteOptions;
use crate::store::KeyValue;

use super::framework::{object_key, Client};

/// How often pods are checked (upstream `gcCheckPeriod`).
pub const POD_GC_PERIOD: Duration = Duration::from_secs(20);

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

fn nodes() -> &'static ResourceDef {
    resources::by_plural("", "v1", "nodes").expect("served")
}

/// Runs the pod GC every `period` until aborted.
pub async fn run(client: Arc<dyn Client>, period: Duration) {
    loop {
        collect(&*client).await;
        tokio::time::sleep(period).await;
    }
}

/// Terminating pods whose node is gone.
fn orphaned_terminating_pods(client: &dyn Client) -> Vec<KeyValue> {
    client.list(pods(), None, &|kv: &KeyValue| {
        let node = kv.value["spec"]["nodeName"].as_str().unwrap_or("");
        object::is_deleting(&kv.value)
            && !node.is_empty()
            && client.get(nodes(), None, node).is_err()
    })
}

/// One pass: force-deletes what `orphaned_terminating_pods` finds.
pub async fn collect(client: &dyn Client) {
    for pod in orphaned_terminating_pods(client) {
        let ns = object::namespace(&pod.value)
            .unwrap_or("default")
            .to_string();
        let name = object::name(&pod.value).to_string();
        tracing::info!(pod = %object_key(&pod.value), "force-deleting terminating pod of a deleted node");
        let opts = DeleteOptions {
            grace_period: Some(0),
            precondition_uid: object::uid(&pod.value).map(str::to_string),
            ..Default::default()
        };
        match client.delete(pods(), Some(&ns), &name, &opts).await {
            Ok(_) => {}
            Err(e) if e.code == 404 || e.code == 409 => {}
            Err(e) => {
                tracing::warn!(pod = %object_key(&pod.value), error = %e, "pod garbage collection")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::WriteOptions;
    use crate::controllers::testutil;
    use serde_json::json;

    #[tokio::test(start_paused = true)]
    async fn terminating_pods_of_missing_nodes_are_force_deleted() {
        let registry = testutil::registry().await;
        let opts = WriteOptions::default();
        registry
            .create(
                nodes(),
                None,
                json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": "here"}}),
                &opts,
            )
            .await
            .unwrap();
        for (name, node) in [("lost", "gone"), ("alive", "here"), ("running", "gone")] {
            let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "namespace": "default"},
                "spec": {"nodeName": node, "containers": [{"name": "c", "image": "busybox"}]}});
            registry
                .create(pods(), Some("default"), pod, &opts)
                .await
                .unwrap();
            if name != "running" {
                registry
                    .delete(pods(), Some("default"), name, &DeleteOptions::default())
                    .await
                    .unwrap();
            }
        }
        collect(&*registry).await;
        assert!(registry.get(pods(), Some("default"), "lost").is_err());
        assert!(
            registry.get(pods(), Some("default"), "alive").is_ok(),
            "its kubelet finishes it"
        );
        assert!(registry.get(pods(), Some("default"), "running").is_ok());
    }
}
