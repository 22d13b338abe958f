//! PersistentVolume, PersistentVolumeClaim and StorageClass rules: volumes and claims are
//! created `Pending` with the protection finalizers (upstream's
//! StorageObjectInUseProtection admission), claims without a class get the default class
//! (DefaultStorageClass admission), a claim grows only where its class allows expansion
//! (PersistentVolumeClaimResize), and a node may only take the local-path finalizer off
//! a volume on it.

use futures::future::BoxFuture;
use serde_json::{json, Value};

use crate::api::identity::User;
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::storage::{
    default_class, ANN_BETA_STORAGE_CLASS, LOCAL_PATH_FINALIZER, PVC_PROTECTION_FINALIZER,
    PV_PROTECTION_FINALIZER,
};
use crate::api::table::{self, Printer};
use crate::api::validation::claim_request;
use crate::apiserver::registry::strategy::{keep_unwritten_part, schema_of, Context, Strategy};

fn storage_classes() -> &'static ResourceDef {
    resources::by_plural("storage.k8s.io", "v1", "storageclasses").expect("served")
}

/// Sets `obj.<path>` to `value` when it is missing (or null).
fn default_field(obj: &mut Value, parent: &str, key: &str, value: &str) {
    let target = if parent.is_empty() {
        &mut *obj
    } else {
        &mut obj[parent]
    };
    if target.is_object() && target.get(key).is_none_or(Value::is_null) {
        target[key] = json!(value);
    }
}

/// Adds `finalizer` to the object's finalizers unless it is there.
fn add_finalizer(obj: &mut Value, finalizer: &str) {
    let meta = object::meta_mut(obj);
    let list = meta.entry("finalizers").or_insert_with(|| json!([]));
    if let Some(list) = list.as_array_mut() {
        if !list.iter().any(|f| f == finalizer) {
            list.push(json!(finalizer));
        }
    }
}

/// Upstream's status strategy: a phase change records `lastPhaseTransitionTime`.
fn stamp_phase_transition(new: &mut Value, old: Option<&Value>) {
    let phase = new["status"]["phase"].clone();
    if phase.is_null() {
        return;
    }
    let changed = old.is_none_or(|o| o["status"]["phase"] != phase);
    if changed {
        new["status"]["lastPhaseTransitionTime"] = json!(object::timestamp(chrono::Utc::now()));
    }
}

pub struct PersistentVolumeStrategy;

/// Field labels of PersistentVolumes (cluster-scoped: the name only).
const PV_FIELDS: &[&str] = &["metadata.name"];

impl Strategy for PersistentVolumeStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
        stamp_phase_transition(obj, None);
        default_field(obj, "spec", "persistentVolumeReclaimPolicy", "Retain");
        default_field(obj, "spec", "volumeMode", "Filesystem");
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        default_field(new, "spec", "persistentVolumeReclaimPolicy", "Retain");
        default_field(new, "spec", "volumeMode", "Filesystem");
        if subresource == Some("status") {
            stamp_phase_transition(new, Some(old));
        }
    }

    fn admit_create<'a>(
        &'a self,
        _cx: &'a Context<'a>,
        obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        add_finalizer(obj, PV_PROTECTION_FINALIZER);
        Box::pin(std::future::ready(Ok(())))
    }

    fn admit(
        &self,
        _cx: &Context,
        requester: &User,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let (Some(node), Some(old)) = (requester.node_name(), old) else {
            return Ok(());
        };
        node_may_only_release_local_path(node, new, old)
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::core::v1::PersistentVolume>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::PERSISTENT_VOLUME
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        PV_FIELDS
    }
}

/// NodeRestriction for volumes: the node authorizer lets a node write only volumes whose
/// node affinity names it, and of those only the removal of the local-path finalizer
/// (once it has removed the directory).
fn node_may_only_release_local_path(node: &str, new: &Value, old: &Value) -> Result<(), ApiError> {
    let strip = |pv: &Value| {
        let mut pv = pv.clone();
        let meta = object::meta_mut(&mut pv);
        for key in [
            "finalizers",
            "resourceVersion",
            "managedFields",
            "generation",
        ] {
            meta.remove(key);
        }
        pv
    };
    let old_finalizers = object::finalizers(old);
    let removed_only_ours = object::finalizers(new)
        .iter()
        .all(|f| old_finalizers.contains(f))
        && old_finalizers
            .iter()
            .filter(|f| !object::finalizers(new).contains(f))
            .all(|f| f == LOCAL_PATH_FINALIZER);
    if removed_only_ours && strip(new) == strip(old) {
        return Ok(());
    }
    Err(ApiError::forbidden(format!(
        "persistentvolumes \"{}\" is forbidden: node \"{node}\" may only remove the {LOCAL_PATH_FINALIZER} finalizer",
        object::name(old)
    )))
}

pub struct PersistentVolumeClaimStrategy;

/// Upstream PersistentVolumeClaimResize's refusal.
const RESIZE_FORBIDDEN: &str = "only dynamically provisioned pvc can be resized and the storageclass that provisions the pvc must support resize";

impl Strategy for PersistentVolumeClaimStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
        default_field(obj, "spec", "volumeMode", "Filesystem");
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        default_field(new, "spec", "volumeMode", "Filesystem");
    }

    /// DefaultStorageClass and StorageObjectInUseProtection admission.
    fn admit_create<'a>(
        &'a self,
        cx: &'a Context<'a>,
        obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        let has_class = obj["spec"]
            .get("storageClassName")
            .is_some_and(|c| !c.is_null())
            || !obj["metadata"]["annotations"][ANN_BETA_STORAGE_CLASS].is_null();
        if !has_class && obj["spec"].is_object() {
            let classes = cx
                .store
                .list(&storage_classes().prefix(), None, 0, &|_| true)
                .items;
            if let Some(class) = default_class(classes.iter().map(|kv| &*kv.value)) {
                obj["spec"]["storageClassName"] = json!(class);
            }
        }
        add_finalizer(obj, PVC_PROTECTION_FINALIZER);
        Box::pin(std::future::ready(Ok(())))
    }

    fn admit(
        &self,
        cx: &Context,
        _requester: &User,
        new: &Value,
        old: Option<&Value>,
    ) -> Result<(), ApiError> {
        let Some(old) = old else { return Ok(()) };
        let grows = match (claim_request(new), claim_request(old)) {
            (Some(n), Some(o)) => n > o,
            _ => false,
        };
        if !grows {
            return Ok(());
        }
        let class = crate::api::storage::class_of(new);
        let expandable = !class.is_empty()
            && cx
                .stored(storage_classes(), None, class)
                .is_some_and(|sc| sc["allowVolumeExpansion"] == true);
        if expandable {
            return Ok(());
        }
        Err(ApiError::forbidden(format!(
            "persistentvolumeclaims \"{}\" is forbidden: {RESIZE_FORBIDDEN}",
            object::name(new)
        )))
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::core::v1::PersistentVolumeClaim>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::PERSISTENT_VOLUME_CLAIM
    }
}

pub struct StorageClassStrategy;

impl Strategy for StorageClassStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        default_field(obj, "", "reclaimPolicy", "Delete");
        default_field(obj, "", "volumeBindingMode", "Immediate");
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        default_field(new, "", "reclaimPolicy", "Delete");
        default_field(new, "", "volumeBindingMode", "Immediate");
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::storage::v1::StorageClass>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::STORAGE_CLASS
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        PV_FIELDS
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_may_only_take_the_local_path_finalizer_off() {
        let old = json!({"metadata": {"name": "pvc-1", "resourceVersion": "5",
            "finalizers": ["kubernetes.io/pv-protection", "orc.io/local-path"]},
            "spec": {"hostPath": {"path": "/x"}}});
        let mut released = old.clone();
        released["metadata"]["finalizers"] = json!(["kubernetes.io/pv-protection"]);
        released["metadata"]["resourceVersion"] = json!("6");
        assert!(node_may_only_release_local_path("n1", &released, &old).is_ok());
        let mut other = old.clone();
        other["metadata"]["finalizers"] = json!(["orc.io/local-path"]);
        let err = node_may_only_release_local_path("n1", &other, &old).unwrap_err();
        assert_eq!(err.code, 403);
        assert!(err
            .message
            .contains("may only remove the orc.io/local-path finalizer"));
        let mut moved = old.clone();
        moved["spec"]["hostPath"]["path"] = json!("/etc");
        assert!(node_may_only_release_local_path("n1", &moved, &old).is_err());
    }

    #[test]
    fn finalizers_are_added_once() {
        let mut pvc = json!({"metadata": {"name": "c", "finalizers": [PVC_PROTECTION_FINALIZER]}});
        add_finalizer(&mut pvc, PVC_PROTECTION_FINALIZER);
        assert_eq!(
            pvc["metadata"]["finalizers"],
            json!([PVC_PROTECTION_FINALIZER])
        );
    }
}
