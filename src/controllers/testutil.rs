//! Helpers for controller tests: a real registry on the in-memory datastore (so tests
//! run on a paused tokio clock), and polling a condition under a deadline.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::api::resources;
use crate::apiserver::allocator::Allocators;
use crate::apiserver::registry::{Registry, WriteOptions};
use crate::store::memory::MemoryStore;

/// A registry with the `default` and `kube-node-lease` namespaces, each with its
/// `default` ServiceAccount (as the namespace controller makes them).
pub async fn registry() -> Arc<Registry> {
    let allocators = Allocators::new("10.43.0.0/16".parse().expect("cidr"), (30000, 32767));
    let registry = Arc::new(Registry::new(Arc::new(MemoryStore::new()), allocators));
    let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
    for ns in ["default", "kube-node-lease"] {
        let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
        registry
            .create(namespaces, None, body, &WriteOptions::default())
            .await
            .expect("create namespace");
        add_default_service_account(&registry, ns).await;
    }
    registry
}

/// Creates the `default` ServiceAccount of `ns` (pods may be created there from then on).
pub async fn add_default_service_account(registry: &Registry, ns: &str) {
    let accounts = resources::by_plural("", "v1", "serviceaccounts").expect("served");
    let body = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                      "metadata": {"name": "default", "namespace": ns}});
    registry
        .create(accounts, Some(ns), body, &WriteOptions::default())
        .await
        .expect("create service account");
}

/// Polls `cond` until it holds; panics with `what` after `within` (of tokio time, so on
/// a paused clock the wait costs no real time).
pub async fn wait_for(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + within;
    loop {
        if cond() {
            return;
        }
        if tokio::time::Instant::now() >= deadline {
            panic!("timed out waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}
