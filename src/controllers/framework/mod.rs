//! The framework every controller runs on: a `Client` for API reads and writes,
//! `Informer`s that list and watch one resource into a local cache and a work queue,
//! a rate-limited `WorkQueue`, and `run_workers` to reconcile its keys.
//!
//! Controllers never touch datastore keys: they name objects by `ResourceDef`,
//! namespace and name, and queue `namespace/name` keys (`object_key`).

pub mod client;
pub mod informer;
pub mod queue;
pub mod workers;

pub use client::{def_of, Client, ClientExt, Mutation};
pub use informer::{wait_for_sync, Informer, KeyMapper, Reader};
pub use queue::WorkQueue;
pub use workers::{run_workers, Reconciled};

/// `namespace/name` (or `name` for cluster objects) of an object.
pub fn object_key(obj: &serde_json::Value) -> String {
    let name = crate::api::object::name(obj);
    match crate::api::object::namespace(obj) {
        Some(ns) => format!("{ns}/{name}"),
        None => name.to_string(),
    }
}

/// Splits a key made by `object_key`.
pub fn split_key(key: &str) -> (Option<&str>, &str) {
    match key.split_once('/') {
        Some((ns, name)) => (Some(ns), name),
        None => (None, key),
    }
}

/// How many times, and how far apart, a built-in object is tried to be created.
const BUILTIN_ATTEMPTS: u32 = 12;
const BUILTIN_RETRY: std::time::Duration = std::time::Duration::from_secs(5);

/// Creates the built-in cluster-scoped object `name` of `def` (the local-path
/// StorageClass, the `orc` IngressClass) unless one of that name exists; `build` makes
/// it from the existing objects of `def`, `what` names it in log lines. A user's object
/// of that name, or one created meanwhile, is left as it is.
pub async fn ensure_builtin(
    client: &dyn Client,
    def: &crate::api::resources::ResourceDef,
    name: &str,
    what: &str,
    build: fn(&[serde_json::Value]) -> serde_json::Value,
) {
    for _ in 0..BUILTIN_ATTEMPTS {
        if client.get(def, None, name).is_ok() {
            return;
        }
        let existing: Vec<serde_json::Value> = client
            .list(def, None, &|_| true)
            .iter()
            .map(|kv| (*kv.value).clone())
            .collect();
        match client.create(def, None, build(&existing)).await {
            Ok(_) => {
                tracing::info!(class = name, "created the {what}");
                return;
            }
            Err(e) if e.code == 409 => return,
            Err(e) => {
                tracing::warn!(error = %e, "could not create the {what}; retrying");
                tokio::time::sleep(BUILTIN_RETRY).await;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip() {
        let obj = serde_json::json!({"metadata": {"name": "a", "namespace": "ns"}});
        assert_eq!(object_key(&obj), "ns/a");
        assert_eq!(split_key("ns/a"), (Some("ns"), "a"));
        assert_eq!(split_key("node1"), (None, "node1"));
    }
}
