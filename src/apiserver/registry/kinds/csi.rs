//! The CSI kinds of storage.k8s.io/v1 (upstream `pkg/registry/storage/csidriver`,
//! `csinode`, `volumeattachment` and `csistoragecapacity`, v1.32): CSIDriver defaults
//! (`pkg/apis/storage/v1/defaults.go`) and its generation, which only a spec change
//! sets; a VolumeAttachment's status written only through its subresource.

use serde_json::{json, Map, Value};

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{keep_unwritten_part, schema_of, Context, Strategy};
use k8s_openapi::api::storage::v1 as storage;

/// Upstream `SetDefaults_CSIDriver` (with SELinuxMountReadWriteOncePod on, as in 1.32).
pub fn csi_driver_defaults(obj: &mut Value) {
    let Some(root) = obj.as_object_mut() else {
        return;
    };
    let spec = root.entry("spec").or_insert_with(|| json!({}));
    let Some(spec) = spec.as_object_mut() else {
        return;
    };
    let mut default = |key: &str, value: Value| {
        if spec.get(key).is_none_or(Value::is_null) {
            spec.insert(key.to_string(), value);
        }
    };
    default("attachRequired", json!(true));
    default("podInfoOnMount", json!(false));
    default("storageCapacity", json!(false));
    default("fsGroupPolicy", json!("ReadWriteOnceWithFSType"));
    default("requiresRepublish", json!(false));
    default("seLinuxMount", json!(false));
    let no_modes = spec
        .get("volumeLifecycleModes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_modes {
        spec.insert("volumeLifecycleModes".into(), json!(["Persistent"]));
    }
}

pub struct CsiDriverStrategy;

impl Strategy for CsiDriverStrategy {
    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        csi_driver_defaults(obj);
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        csi_driver_defaults(new);
    }

    /// Upstream moves the generation on any spec change but never sets it on create.
    fn tracks_generation(&self) -> bool {
        true
    }

    fn generation_set_on_create(&self) -> bool {
        false
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<storage::CSIDriver>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::CSI_DRIVER
    }
}

pub struct CsiNodeStrategy;

impl Strategy for CsiNodeStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<storage::CSINode>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::CSI_NODE
    }
}

pub struct VolumeAttachmentStrategy;

impl Strategy for VolumeAttachmentStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    /// Upstream resets the status a client sent (`attached` is always written).
    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        obj["status"] = Value::Object(Map::from_iter([("attached".into(), json!(false))]));
    }

    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<storage::VolumeAttachment>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::VOLUME_ATTACHMENT
    }
}

pub struct CsiStorageCapacityStrategy;

impl Strategy for CsiStorageCapacityStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<storage::CSIStorageCapacity>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::CSI_STORAGE_CAPACITY
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csi_driver_defaults_match_upstream() {
        let mut d = json!({"metadata": {"name": "d"}});
        csi_driver_defaults(&mut d);
        assert_eq!(
            d["spec"],
            json!({"attachRequired": true, "podInfoOnMount": false, "storageCapacity": false,
                "fsGroupPolicy": "ReadWriteOnceWithFSType", "requiresRepublish": false,
                "seLinuxMount": false, "volumeLifecycleModes": ["Persistent"]})
        );
        let mut nfs = json!({"spec": {"attachRequired": false, "fsGroupPolicy": "File",
            "volumeLifecycleModes": ["Ephemeral"]}});
        csi_driver_defaults(&mut nfs);
        assert_eq!(nfs["spec"]["attachRequired"], false);
        assert_eq!(nfs["spec"]["fsGroupPolicy"], "File");
        assert_eq!(nfs["spec"]["volumeLifecycleModes"], json!(["Ephemeral"]));
    }
}
