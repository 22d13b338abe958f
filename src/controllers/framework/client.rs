//! The client controllers talk to the API through: get/list/watch/create/update/patch/
//! delete of one `ResourceDef` + namespace + name (never a datastore key), with typed
//! helpers over k8s-openapi types; `Registry` implements it in process.

use async_trait::async_trait;
use k8s_openapi::serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

use crate::api::patch::PatchType;
use std::sync::Arc;

use crate::api::resources::{self, ResourceDef, Resources};
use crate::api::status::ApiError;
use crate::apiserver::registry::{DeleteOptions, FieldValidation, Registry, WriteOptions, Written};
use crate::store::{KeyValue, ListFilter, Revision, StoreError, Watcher};

/// Maps the current object to the desired one (read-modify-write, retried on conflict).
pub type Mutation<'a> = &'a (dyn Fn(&Value) -> Result<Value, ApiError> + Sync);

/// What a controller may do with the API. Reads come from the in-memory watch cache and
/// may be a moment behind a write another component just made.
#[async_trait]
pub trait Client: Send + Sync + 'static {
    /// What the API serves now: the built-in kinds and the custom resources.
    fn resources(&self) -> Arc<Resources>;
    fn get(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> Result<KeyValue, ApiError>;
    /// Objects of `def` in `ns` (every namespace with `None`) accepted by `filter`.
    fn list(&self, def: &ResourceDef, ns: Option<&str>, filter: ListFilter<'_>) -> Vec<KeyValue>;
    /// Every object of `def` and a watch of each change after them (what informers
    /// start from).
    fn list_and_watch(&self, def: &ResourceDef) -> (Vec<KeyValue>, Revision, Watcher);
    /// Every object of every kind and a watch of each change after them (the garbage
    /// collector's view of the ownership graph).
    fn list_and_watch_all(&self) -> (Vec<KeyValue>, Revision, Watcher);
    /// Changes of `def` in `ns` after `after`; `410 Gone` when that history is compacted.
    fn watch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        after: Revision,
    ) -> Result<Watcher, ApiError>;
    async fn create(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        body: Value,
    ) -> Result<Written, ApiError>;
    /// Replaces an object (its status is kept for kinds with a status subresource).
    async fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: Value,
    ) -> Result<Written, ApiError>;
    /// Replaces the status of an object.
    async fn update_status(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: Value,
    ) -> Result<Written, ApiError>;
    /// Read-modify-write of the object (or its `subresource`), retried on conflicts.
    async fn modify(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        mutate: Mutation<'_>,
    ) -> Result<Written, ApiError>;
    async fn patch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
    ) -> Result<Written, ApiError>;
    /// Server-side apply of `config` (JSON or YAML) as `field_manager`; with `force`,
    /// fields other managers own are taken instead of conflicting.
    async fn apply(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        config: &[u8],
        field_manager: &str,
        force: bool,
    ) -> Result<Written, ApiError>;
    async fn delete(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Written, ApiError>;
    /// Binds a pod to a node (the `pods/binding` subresource).
    async fn bind_pod(&self, ns: &str, name: &str, binding: &Value) -> Result<Written, ApiError>;
    /// How many heartbeats (Lease renewals, Node status updates that only move
    /// heartbeat times) the API server acknowledged for the object without writing
    /// them: it grows while the node is alive although no watch sees a change.
    fn heartbeats(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> u64;
    /// Drops the in-memory heartbeats of an object that is gone.
    fn forget_heartbeats(&self, def: &ResourceDef, ns: Option<&str>, name: &str);
    /// The resource usage of pod `ns/name` last measured on `node` (`metrics.k8s.io`);
    /// `None` until the node was scraped twice with the pod running.
    fn pod_usage(&self, node: &str, ns: &str, name: &str) -> Option<crate::api::metrics::PodUsage>;
    /// The `scale` subresource of an object of `def` (an `autoscaling/v1` Scale).
    fn scale(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError>;
    /// Sets `spec.replicas` through the `scale` subresource; answers the new Scale.
    async fn update_scale(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        replicas: i32,
    ) -> Result<Value, ApiError>;
}

/// The served resource of a k8s-openapi type.
pub fn def_of<K: k8s_openapi::Resource>() -> &'static ResourceDef {
    resources::by_plural(K::GROUP, K::VERSION, K::URL_PATH_SEGMENT)
        .unwrap_or_else(|| panic!("{} is not served", K::KIND))
}

fn decode<K: DeserializeOwned>(value: &Value) -> Result<K, ApiError> {
    K::deserialize(value).map_err(|e| ApiError::internal(format!("decode stored object: {e}")))
}

/// Typed forms of the client calls, for controllers that read fields.
#[async_trait]
pub trait ClientExt: Client {
    fn get_typed<K>(&self, ns: Option<&str>, name: &str) -> Result<K, ApiError>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        decode(&self.get(def_of::<K>(), ns, name)?.value)
    }

    /// Objects of `K` in `ns` (every namespace with `None`); ones that do not decode
    /// are skipped (the registry only stores objects that do).
    fn list_typed<K>(&self, ns: Option<&str>) -> Vec<K>
    where
        K: k8s_openapi::Resource + DeserializeOwned,
    {
        self.list(def_of::<K>(), ns, &|_| true)
            .iter()
            .filter_map(|kv| decode(&kv.value).ok())
            .collect()
    }

    async fn create_typed<K>(&self, ns: Option<&str>, obj: &K) -> Result<K, ApiError>
    where
        K: k8s_openapi::Resource + Serialize + DeserializeOwned + Sync,
    {
        let body = serde_json::to_value(obj)
            .map_err(|e| ApiError::bad_request(format!("encode {}: {e}", K::KIND)))?;
        let written = self.create(def_of::<K>(), ns, body).await?;
        decode(&written.kv.value)
    }
}

impl<C: Client + ?Sized> ClientExt for C {}

/// The options of an in-process component's write: its bodies are built by orc and
/// nobody reads warnings about their unknown fields, so none are looked for (type
/// errors are still refused).
fn in_process() -> WriteOptions {
    let mut opts = WriteOptions::default();
    opts.field_validation = FieldValidation::Ignore;
    opts
}

#[async_trait]
impl Client for Registry {
    fn resources(&self) -> Arc<Resources> {
        Registry::resources(self)
    }

    fn get(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> Result<KeyValue, ApiError> {
        Registry::get(self, def, ns, name)
    }

    fn list(&self, def: &ResourceDef, ns: Option<&str>, filter: ListFilter<'_>) -> Vec<KeyValue> {
        Registry::list(self, def, ns, None, 0, filter).items
    }

    fn list_and_watch(&self, def: &ResourceDef) -> (Vec<KeyValue>, Revision, Watcher) {
        self.snapshot_and_watch(&def.prefix())
    }

    fn list_and_watch_all(&self) -> (Vec<KeyValue>, Revision, Watcher) {
        self.snapshot_and_watch("/")
    }

    fn watch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        after: Revision,
    ) -> Result<Watcher, ApiError> {
        Registry::watch(self, &def.list_prefix(ns), after).map_err(|e| match e {
            StoreError::Compacted { requested, oldest } => {
                ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
            }
            other => ApiError::internal(format!("watch {}: {other}", def.plural)),
        })
    }

    async fn create(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        body: Value,
    ) -> Result<Written, ApiError> {
        Registry::create(self, def, ns, body, &in_process()).await
    }

    async fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: Value,
    ) -> Result<Written, ApiError> {
        Registry::update(self, def, ns, name, body, None, &in_process()).await
    }

    async fn update_status(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: Value,
    ) -> Result<Written, ApiError> {
        let opts = in_process();
        Registry::update(self, def, ns, name, body, Some("status"), &opts).await
    }

    async fn modify(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        mutate: Mutation<'_>,
    ) -> Result<Written, ApiError> {
        let opts = in_process();
        Registry::modify(self, def, ns, name, subresource, &opts, mutate).await
    }

    async fn patch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        patch_type: PatchType,
        body: &[u8],
    ) -> Result<Written, ApiError> {
        let opts = in_process();
        Registry::patch(self, def, ns, name, (patch_type, body), None, &opts).await
    }

    async fn apply(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        config: &[u8],
        field_manager: &str,
        force: bool,
    ) -> Result<Written, ApiError> {
        let mut opts = WriteOptions::default();
        opts.field_manager = Some(field_manager.to_string());
        opts.force = force;
        Registry::patch(self, def, ns, name, (PatchType::Apply, config), None, &opts).await
    }

    async fn delete(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Written, ApiError> {
        Registry::delete(self, def, ns, name, opts).await
    }

    async fn bind_pod(&self, ns: &str, name: &str, binding: &Value) -> Result<Written, ApiError> {
        Registry::bind_pod(self, ns, name, binding, &in_process()).await
    }

    fn heartbeats(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> u64 {
        self.heartbeats.count(&def.key(ns, name))
    }

    fn forget_heartbeats(&self, def: &ResourceDef, ns: Option<&str>, name: &str) {
        self.heartbeats.forget(&def.key(ns, name));
    }

    fn pod_usage(&self, node: &str, ns: &str, name: &str) -> Option<crate::api::metrics::PodUsage> {
        self.resource_metrics.pod(node, ns, name)
    }

    fn scale(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<Value, ApiError> {
        let kv = Registry::get(self, def, Some(ns), name)?;
        Ok(self.scale_of(def, &kv.value))
    }

    async fn update_scale(
        &self,
        def: &ResourceDef,
        ns: &str,
        name: &str,
        replicas: i32,
    ) -> Result<Value, ApiError> {
        let current = Client::scale(self, def, ns, name)?;
        let mut scale = current.clone();
        scale["spec"]["replicas"] = serde_json::json!(replicas);
        let w = Registry::update_scale(self, def, Some(ns), name, &scale, &WriteOptions::default())
            .await?;
        Ok(self.scale_of(def, &w.kv.value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controllers::testutil;
    use k8s_openapi::api::core::v1::{ConfigMap, Pod};

    #[tokio::test(start_paused = true)]
    async fn typed_helpers_read_and_write_k8s_openapi_objects() {
        let registry = testutil::registry().await;
        let client: &dyn Client = &*registry;
        let mut cm = ConfigMap::default();
        cm.metadata.name = Some("settings".into());
        cm.data = Some([("mode".to_string(), "fast".to_string())].into());
        let created = client.create_typed(Some("default"), &cm).await.unwrap();
        assert!(created.metadata.resource_version.is_some());
        let read: ConfigMap = client.get_typed(Some("default"), "settings").unwrap();
        assert_eq!(read.data.unwrap()["mode"], "fast");
        assert_eq!(client.list_typed::<ConfigMap>(None).len(), 1);
        let missing = client.get_typed::<Pod>(Some("default"), "settings");
        assert_eq!(missing.unwrap_err().code, 404);
    }

    #[tokio::test(start_paused = true)]
    async fn writes_name_objects_by_resource_namespace_and_name() {
        let registry = testutil::registry().await;
        let client: &dyn Client = &*registry;
        let cms = def_of::<ConfigMap>();
        let body = serde_json::json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c", "namespace": "default"}, "data": {"a": "1"}});
        client.create(cms, Some("default"), body).await.unwrap();
        let patch = br#"{"data": {"b": "2"}}"#;
        let patched = client
            .patch(cms, Some("default"), "c", PatchType::Merge, patch)
            .await
            .unwrap();
        assert_eq!(
            patched.kv.value["data"],
            serde_json::json!({"a": "1", "b": "2"})
        );
        let mut replaced = (*patched.kv.value).clone();
        replaced["data"] = serde_json::json!({"c": "3"});
        client
            .update(cms, Some("default"), "c", replaced)
            .await
            .unwrap();
        let read = client.get(cms, Some("default"), "c").unwrap();
        assert_eq!(read.value["data"], serde_json::json!({"c": "3"}));
        let (_, revision, _) = client.list_and_watch(cms);
        let mut watch = client.watch(cms, Some("default"), revision).unwrap();
        client
            .delete(cms, Some("default"), "c", &DeleteOptions::default())
            .await
            .unwrap();
        let event = tokio::time::timeout(std::time::Duration::from_secs(1), watch.next())
            .await
            .expect("watch deadlocked")
            .unwrap();
        assert_eq!(event.kind, crate::store::EventType::Deleted);
        assert!(client.list(cms, None, &|_| true).is_empty());
    }
}
