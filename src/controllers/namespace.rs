//! Namespace controller: gives every namespace its `default` ServiceAccount and drains
//! terminating namespaces (deletes their objects, then finalizes them).
//!
//! As upstream's, it starts draining a terminating namespace only
//! [`DELETION_GRACE_PERIOD`] after it first sees it terminating: `kubectl delete -f`
//! of a manifest that lists its Namespace first then still finds (and deletes) the
//! namespace's other objects itself instead of failing with NotFound on each.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::Instant;

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
/// How long after a namespace is first seen terminating its content is deleted
/// (upstream's `namespaceDeletionGracePeriod`).
pub const DELETION_GRACE_PERIOD: Duration = Duration::from_secs(5);
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
    let seen = Arc::new(TerminatingSince::default());
    run_workers("namespace-controller", queue, WORKERS, move |name| {
        let (client, seen) = (client.clone(), seen.clone());
        async move { reconcile(&*client, &seen, &name).await }
    })
    .await;
}

/// When this controller first saw each terminating namespace (by name).
#[derive(Default)]
struct TerminatingSince(Mutex<HashMap<String, Instant>>);

impl TerminatingSince {
    /// How much longer namespace `name`, terminating as of `now`, waits before it is
    /// drained (zero once [`DELETION_GRACE_PERIOD`] has passed since it was first seen).
    fn wait(&self, name: &str, now: Instant) -> Duration {
        let mut seen = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let since = *seen.entry(name.to_string()).or_insert(now);
        DELETION_GRACE_PERIOD.saturating_sub(now.saturating_duration_since(since))
    }

    fn forget(&self, name: &str) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(name);
    }
}

/// A live namespace gets its default ServiceAccount; a terminating one is drained, after
/// the grace period, and looked at again until it is empty and finalized.
async fn reconcile(client: &dyn Client, seen: &TerminatingSince, name: &str) -> Reconciled {
    let Ok(ns) = client.get(namespaces(), None, name) else {
        seen.forget(name);
        return Ok(None);
    };
    if !object::is_deleting(&ns.value) {
        seen.forget(name);
        ensure_default_service_account(client, name).await?;
        return Ok(None);
    }
    let wait = seen.wait(name, Instant::now());
    if !wait.is_zero() {
        return Ok(Some(wait));
    }
    if drain(client, name).await? {
        seen.forget(name);
        return Ok(None);
    }
    Ok(Some(DRAIN_RETRY))
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
        .modify(namespaces(), None, ns, Some("finalize"), &|cur| {
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
        let deleted = tokio::time::Instant::now();
        wait_for("the namespace to be gone", WAIT, || {
            registry.get(namespaces(), None, "team").is_err()
        })
        .await;
        assert!(registry.get(cms, Some("team"), "c").is_err());
        assert!(
            deleted.elapsed() >= DELETION_GRACE_PERIOD,
            "drained after {:?}, before the grace period",
            deleted.elapsed()
        );
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn content_outlives_the_namespace_delete_for_the_grace_period() {
        let registry = testutil::registry().await;
        let task = tokio::spawn(run(registry.clone()));
        create_namespace(&registry, "app").await;
        let cms = resources::by_plural("", "v1", "configmaps").unwrap();
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "namespace": "app"}});
        registry
            .create(cms, Some("app"), cm, &WriteOptions::default())
            .await
            .unwrap();
        registry
            .delete(namespaces(), None, "app", &DeleteOptions::default())
            .await
            .unwrap();
        tokio::time::sleep(DELETION_GRACE_PERIOD - Duration::from_millis(500)).await;
        // What `kubectl delete -f` does next: delete the namespace's objects itself.
        registry
            .delete(cms, Some("app"), "c", &DeleteOptions::default())
            .await
            .expect("the config map is still there to delete");
        wait_for("the namespace to be gone", WAIT, || {
            registry.get(namespaces(), None, "app").is_err()
        })
        .await;
        task.abort();
    }

    #[test]
    fn the_grace_period_runs_from_when_the_namespace_is_first_seen_terminating() {
        let seen = TerminatingSince::default();
        let t0 = Instant::now();
        assert_eq!(seen.wait("a", t0), DELETION_GRACE_PERIOD);
        assert_eq!(
            seen.wait("a", t0 + Duration::from_secs(2)),
            Duration::from_secs(3)
        );
        assert_eq!(seen.wait("a", t0 + Duration::from_secs(9)), Duration::ZERO);
        assert_eq!(
            seen.wait("b", t0 + Duration::from_secs(9)),
            DELETION_GRACE_PERIOD
        );
        seen.forget("a");
        assert_eq!(
            seen.wait("a", t0 + Duration::from_secs(10)),
            DELETION_GRACE_PERIOD
        );
    }
}
