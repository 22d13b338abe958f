//! Namespace controller: gives every namespace its `default` ServiceAccount and drains
//! terminating namespaces (deletes their objects, then finalizes them).

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::api::object;
use crate::api::resources::{self, ResourceDef, RESOURCES};
use crate::apiserver::registry::{DeleteOptions, Registry, WriteOptions};
use crate::store::{EventType, KeyValue};

/// How soon a namespace that still has content is looked at again.
const DRAIN_RETRY: Duration = Duration::from_secs(1);
/// Finalizer the namespace controller owns (in `spec.finalizers`).
pub const NAMESPACE_FINALIZER: &str = "kubernetes";

fn namespaces() -> &'static ResourceDef {
    resources::by_plural("", "v1", "namespaces").expect("served")
}

pub async fn run(registry: Arc<Registry>) {
    loop {
        let (items, _, mut watcher) = registry.snapshot_and_watch(&namespaces().prefix());
        let mut terminating: HashSet<String> = HashSet::new();
        for kv in &items {
            observe(&registry, kv, &mut terminating).await;
        }
        loop {
            tokio::select! {
                next = watcher.next() => match next {
                    Ok(event) => {
                        if event.kind == EventType::Deleted {
                            terminating.remove(object::name(&event.kv.value));
                        } else {
                            observe(&registry, &event.kv, &mut terminating).await;
                        }
                    }
                    Err(e) => {
                        tracing::debug!(error = %e, "namespace watch ended; relisting");
                        break;
                    }
                },
                _ = tokio::time::sleep(DRAIN_RETRY), if !terminating.is_empty() => {
                    let names: Vec<String> = terminating.iter().cloned().collect();
                    for name in names {
                        if drain(&registry, &name).await {
                            terminating.remove(&name);
                        }
                    }
                }
            }
        }
    }
}

async fn observe(registry: &Registry, kv: &KeyValue, terminating: &mut HashSet<String>) {
    let name = object::name(&kv.value).to_string();
    if object::is_deleting(&kv.value) {
        if terminating.insert(name.clone()) && drain(registry, &name).await {
            terminating.remove(&name);
        }
    } else {
        ensure_default_service_account(registry, &name).await;
    }
}

async fn ensure_default_service_account(registry: &Registry, ns: &str) {
    let sa = resources::by_plural("", "v1", "serviceaccounts").expect("served");
    if registry.get(sa, Some(ns), "default").is_ok() {
        return;
    }
    let body = json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": ns}});
    match registry
        .create(sa, Some(ns), body, &WriteOptions::default())
        .await
    {
        Ok(_) => {}
        Err(e) if e.code == 409 || e.code == 403 || e.code == 404 => {}
        Err(e) => tracing::warn!(namespace = ns, error = %e, "create default service account"),
    }
}

/// Deletes what is left in namespace `ns`; finalizes it once empty. True when done.
async fn drain(registry: &Registry, ns: &str) -> bool {
    let span = tracing::info_span!("drain_namespace", namespace = ns);
    let _enter = span.enter();
    let mut remaining = 0;
    for def in RESOURCES
        .iter()
        .filter(|d| d.namespaced && d.kind != "Binding")
    {
        let page = registry.list(def, Some(ns), None, 0, &|_| true);
        for kv in page.items {
            remaining += 1;
            if object::is_deleting(&kv.value) {
                continue;
            }
            let name = object::name(&kv.value).to_string();
            if let Err(e) = registry
                .delete(def, Some(ns), &name, &DeleteOptions::default())
                .await
            {
                if e.code != 404 {
                    tracing::warn!(object = %kv.key, error = %e, "delete during namespace teardown");
                }
            }
        }
    }
    if remaining > 0 {
        return false;
    }
    let result = registry
        .modify(
            namespaces(),
            None,
            ns,
            None,
            &WriteOptions::default(),
            &|cur| {
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
            },
        )
        .await;
    match result {
        Ok(w) => w.deleted,
        Err(e) if e.code == 404 => true,
        Err(e) => {
            tracing::warn!(error = %e, "finalize namespace");
            false
        }
    }
}
