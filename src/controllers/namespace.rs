//! Namespace controller: gives every namespace its `default` ServiceAccount and drains
//! terminating namespaces (deletes their objects, then finalizes them).

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::EventType;

use super::framework::{
    object_key, run_workers, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};

/// How soon a namespace that still has content is looked at again.
const DRAIN_RETRY: Duration = Duration::from_secs(1);
/// Finalizer the namespace controller owns (in `spec.finalizers`).
pub const NAMESPACE_FINALIZER: &str = "kubernetes";
/// Namespaces reconciled at once.
const WORKERS: usize = 2;

fn namespaces() -> &'static ResourceDef {
    resources::by_plural("", "v1", "namespaces").expect("served")
}

pub async fn run(client: Arc<dyn Client>) {
    let queue = WorkQueue::new();
    let informers = [Informer::start(
        client.clone(),
        namespaces(),
        queue.clone(),
        Box::new(|event| match event.kind {
            EventType::Deleted => vec![],
            _ => vec![object_key(&event.kv.value)],
        }),
    )];
    wait_for_sync(&informers).await;
    run_workers("namespace-controller", queue, WORKERS, move |name| {
        let client = client.clone();
        async move { reconcile(&*client, &name).await }
    })
    .await;
}

/// A live namespace gets its default ServiceAccount; a terminating one is drained and
/// looked at again until it is empty and finalized.
async fn reconcile(client: &dyn Client, name: &str) -> Reconciled {
    let Ok(ns) = client.get(namespaces(), None, name) else {
        return Ok(None);
    };
    if !object::is_deleting(&ns.value) {
        ensure_default_service_account(client, name).await?;
        return Ok(None);
    }
    Ok((!drain(client, name).await?).then_some(DRAIN_RETRY))
}

async fn ensure_default_service_account(client: &dyn Client, ns: &str) -> Result<(), ApiError> {
    let sa = resources::by_plural("", "v1", "serviceaccounts").expect("served");
    if client.get(sa, Some(ns), "default").is_ok() {
        return Ok(());
    }
    let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
    match client.create(sa, Some(ns), body).await {
        Err(e) if e.code != 409 && e.code != 403 && e.code != 404 => Err(e),
        _ => Ok(()),
    }
}

/// Deletes what is left in namespace `ns`; finalizes it once empty. True when done.
async fn drain(client: &dyn Client, ns: &str) -> Result<bool, ApiError> {
    let mut remaining = 0;
    let served = client.resources();
    for def in served
        .iter()
        .filter(|d| d.namespaced && d.kind != "Binding")
    {
        for kv in client.list(def, Some(ns), &|_| true) {
            remaining += 1;
            if object::is_deleting(&kv.value) {
                continue;
            }
            let name = object::name(&kv.value).to_string();
            if let Err(e) = client
                .delete(def, Some(ns), &name, &DeleteOptions::default())
                .await
            {
                if e.code != 404 {
                    tracing::warn!(kind = def.kind, object = %object_key(&kv.value), error = %e, "delete during namespace teardown");
                }
            }
        }
    }
    if remaining > 0 {
        return Ok(false);
    }
    let result = client
        .modify(namespaces(), None, ns, None, &|cur| {
            let mut cur = cur.clone();
            let finalizers: Vec<serde_json::Value> = cur["spec"]["finalizers"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|f| f != NAMESPACE_FINALIZER)
                .collect();
            cur["spec"]["finalizers"] = json!(finalizers);
            Ok(cur)
        })
        .await;
    match result {
        Ok(w) => Ok(w.deleted),
        Err(e) if e.code == 404 => Ok(true),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::WriteOptions;
    use crate::controllers::testutil::{self, wait_for};
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(10);

    async fn create_namespace(registry: &crate::apiserver::registry::Registry, name: &str) {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}});
        registry
            .create(namespaces(), None, body, &WriteOptions::default())
            .await
            .expect("create namespace");
    }

    #[tokio::test(start_paused = true)]
    async fn a_new_namespace_gets_a_default_service_account() {
        let registry = testutil::registry().await;
        let task = tokio::spawn(run(registry.clone()));
        create_namespace(&registry, "team").await;
        let sa = resources::by_plural("", "v1", "serviceaccounts").unwrap();
        wait_for("the default service account", WAIT, || {
            registry.get(sa, Some("team"), "default").is_ok()
        })
        .await;
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_namespace_is_emptied_then_finalized() {
        let registry = testutil::registry().await;
        let task = tokio::spawn(run(registry.clone()));
        create_namespace(&registry, "team").await;
        let cms = resources::by_plural("", "v1", "configmaps").unwrap();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "team"}});
        registry
            .create(cms, Some("team"), cm, &WriteOptions::default())
            .await
            .unwrap();
        registry
            .delete(namespaces(), None, "team", &DeleteOptions::default())
            .await
            .unwrap();
        wait_for("the namespace to be gone", WAIT, || {
            registry.get(namespaces(), None, "team").is_err()
        })
        .await;
        assert!(registry.get(cms, Some("team"), "c").is_err());
        task.abort();
    }
}
