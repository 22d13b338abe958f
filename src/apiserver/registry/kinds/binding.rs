//! Binding rules: a Binding is never stored; creating one assigns its pod to the
//! target node (see `Registry::bind_pod`) and answers a Success `Status`.

use futures::future::BoxFuture;
use serde_json::Value;

use crate::api::object;
use crate::api::resources;
use crate::api::status::{self, ApiError};
use crate::apiserver::registry::strategy::Strategy;
use crate::apiserver::registry::{Registry, WriteOptions, Written};
use crate::store::KeyValue;

pub struct BindingStrategy;

impl Strategy for BindingStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Binding>(gen)
    }

    fn create_instead<'a>(
        &self,
        registry: &'a Registry,
        ns: Option<&'a str>,
        obj: &'a Value,
        opts: &'a WriteOptions,
    ) -> Option<BoxFuture<'a, Result<Written, ApiError>>> {
        Some(Box::pin(async move {
            let pod = object::name(obj);
            registry
                .bind_pod(ns.unwrap_or("default"), pod, obj, opts)
                .await?;
            let bindings = resources::by_plural("", "v1", "bindings").expect("served");
            Ok(status_written(status::success_status(bindings, pod, None)))
        }))
    }
}

/// An answer (a `Status`, a review) given in place of a stored object.
pub(super) fn status_written(status: Value) -> Written {
    Written {
        kv: KeyValue::unstored("", status),
        warnings: Vec::new(),
        deleted: false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::api::resources;
    use crate::apiserver::allocator::Allocators;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::store::sqlite::SqliteStore;

    #[tokio::test]
    async fn creating_a_binding_assigns_the_pod_and_answers_success_without_storing_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = SqliteStore::open(&dir.path().join("db")).expect("open store");
        let allocators = Allocators::new("10.43.0.0/24".parse().expect("cidr"), (30000, 32767));
        let registry = Registry::new(std::sync::Arc::new(store), allocators);
        let pods = resources::by_plural("", "v1", "pods").expect("served");
        let bindings = resources::by_plural("", "v1", "bindings").expect("served");
        let opts = WriteOptions::default();
        let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
        let default_ns =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        registry
            .create(namespaces, None, default_ns, &opts)
            .await
            .expect("namespace");
        let accounts = resources::by_plural("", "v1", "serviceaccounts").expect("served");
        let account = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                             "metadata": {"name": "default", "namespace": "default"}});
        registry
            .create(accounts, Some("default"), account, &opts)
            .await
            .expect("service account");
        let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "web"},
                         "spec": {"containers": [{"name": "app", "image": "busybox"}]}});
        registry
            .create(pods, Some("default"), pod, &opts)
            .await
            .expect("pod");
        let binding = json!({"apiVersion": "v1", "kind": "Binding", "metadata": {"name": "web"},
                             "target": {"kind": "Node", "name": "n1"}});
        let answer = registry
            .create(bindings, Some("default"), binding, &opts)
            .await
            .expect("bound");
        assert_eq!(answer.kv.value["kind"], "Status");
        assert_eq!(answer.kv.value["status"], "Success");
        assert_eq!(answer.kv.value["details"]["name"], "web");
        let bound = registry.get(pods, Some("default"), "web").expect("pod");
        assert_eq!(bound.value["spec"]["nodeName"], "n1");
        let stored = registry.list(bindings, Some("default"), None, 0, &|_| true);
        assert!(stored.items.is_empty(), "bindings are never stored");
    }
}
