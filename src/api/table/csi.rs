//! CSIDriver, CSINode, VolumeAttachment and CSIStorageCapacity rows, as upstream's
//! `printCSIDriver`, `printCSINode`, `printVolumeAttachment` and
//! `printCSIStorageCapacity` (v1.32). Column descriptions are the first paragraph of
//! the field's API documentation.

use serde_json::{json, Value};

use super::cells::{age, arr, str_at};
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};
use crate::api::quantity::parse_quantity;

fn csi_driver_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("AttachRequired", "boolean", "attachRequired indicates this CSI volume driver requires an attach operation (because it implements the CSI ControllerPublishVolume() method), and that the Kubernetes attach detach controller should call the attach volume interface which checks the volumeattachment status and waits until the volume is attached before proceeding to mounting. The CSI external-attacher coordinates with CSI volume driver and updates the volumeattachment status when the attach operation is complete. If the CSIDriverRegistry feature gate is enabled and the value is specified to false, the attach operation will be skipped. Otherwise the attach operation will be called.", 0),
        col("PodInfoOnMount", "boolean", "podInfoOnMount indicates this CSI volume driver requires additional pod information (like podName, podUID, etc.) during mount operations, if set to true. If set to false, pod information will not be passed on mount. Default is false.", 0),
        col("StorageCapacity", "boolean", "storageCapacity indicates that the CSI volume driver wants pod scheduling to consider the storage capacity that the driver deployment will report by creating CSIStorageCapacity objects with capacity information, if set to true.", 0),
        col("TokenRequests", "string", "tokenRequests indicates the CSI driver needs pods' service account tokens it is mounting volume for to do necessary authentication.", 0),
        col("RequiresRepublish", "boolean", "requiresRepublish indicates the CSI driver wants `NodePublishVolume` being periodically called to reflect any possible change in the mounted volume. This field defaults to false.", 0),
        col("Modes", "string", "volumeLifecycleModes defines what kind of volumes this CSI volume driver supports. The default if the list is empty is \"Persistent\", which is the usage defined by the CSI specification and implemented in Kubernetes via the usual PV/PVC mechanism.", 0),
        age_col(),
    ]
}

/// A boolean field of a spec, `default` when unset (the printer's nil handling).
fn flag(spec: &Value, key: &str, default: bool) -> Value {
    json!(spec[key].as_bool().unwrap_or(default))
}

pub static CSI_DRIVER: Printer = Printer {
    columns: csi_driver_columns,
    cells: |obj, now| {
        let spec = &obj["spec"];
        let token_requests = match spec["tokenRequests"].as_array() {
            None => "<unset>".to_string(),
            Some(list) => list
                .iter()
                .map(|t| str_at(&t["audience"]))
                .collect::<Vec<_>>()
                .join(","),
        };
        let modes: Vec<&str> = arr(&spec["volumeLifecycleModes"])
            .iter()
            .map(str_at)
            .collect();
        let modes = if modes.is_empty() {
            "<none>".to_string()
        } else {
            modes.join(",")
        };
        vec![
            name(obj),
            flag(spec, "attachRequired", true),
            flag(spec, "podInfoOnMount", false),
            flag(spec, "storageCapacity", false),
            json!(token_requests),
            flag(spec, "requiresRepublish", false),
            json!(modes),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

fn csi_node_columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Drivers",
            "integer",
            "Drivers indicates the number of CSI drivers registered on the node",
            0,
        ),
        age_col(),
    ]
}

pub static CSI_NODE: Printer = Printer {
    columns: csi_node_columns,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(arr(&obj["spec"]["drivers"]).len()),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

fn volume_attachment_columns() -> Vec<Value> {
    let mut attacher = col("Attacher", "string", "attacher indicates the name of the volume driver that MUST handle this request. This is the name returned by GetPluginName().", 0);
    attacher["format"] = json!("name");
    vec![
        name_col(),
        attacher,
        col("PV", "string", "persistentVolumeName represents the name of the persistent volume to attach.", 0),
        col("Node", "string", "nodeName represents the node that the volume should be attached to.", 0),
        col("Attached", "boolean", "attached indicates the volume is successfully attached. This field must only be set by the entity completing the attach operation, i.e. the external-attacher.", 0),
        age_col(),
    ]
}

pub static VOLUME_ATTACHMENT: Printer = Printer {
    columns: volume_attachment_columns,
    cells: |obj, now| {
        let spec = &obj["spec"];
        vec![
            name(obj),
            json!(str_at(&spec["attacher"])),
            json!(str_at(&spec["source"]["persistentVolumeName"])),
            json!(str_at(&spec["nodeName"])),
            json!(obj["status"]["attached"].as_bool().unwrap_or(false)),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

fn csi_storage_capacity_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("StorageClassName", "string", "storageClassName represents the name of the StorageClass that the reported capacity applies to. It must meet the same requirements as the name of a StorageClass object (non-empty, DNS subdomain). If that object no longer exists, the CSIStorageCapacity object is obsolete and should be removed by its creator. This field is immutable.", 0),
        col("Capacity", "string", "capacity is the value reported by the CSI driver in its GetCapacityResponse for a GetCapacityRequest with topology and parameters that match the previous fields.", 0),
    ]
}

pub static CSI_STORAGE_CAPACITY: Printer = Printer {
    columns: csi_storage_capacity_columns,
    cells: |obj, _now| {
        let capacity = match &obj["capacity"] {
            Value::String(s) => parse_quantity(s)
                .map(|q| q.to_string())
                .unwrap_or_else(|_| s.clone()),
            Value::Number(n) => n.to_string(),
            _ => "<unset>".to_string(),
        };
        vec![
            name(obj),
            json!(str_at(&obj["storageClassName"])),
            json!(capacity),
        ]
    },
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::super::test_support::{ago, cells};
    use super::super::RowPrinter;
    use super::*;

    fn column_names(printer: &Printer) -> Vec<String> {
        printer
            .column_definitions()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_string())
            .collect()
    }

    #[test]
    fn csi_drivers_print_their_flags_audiences_and_modes() {
        assert_eq!(
            column_names(&CSI_DRIVER),
            [
                "Name",
                "AttachRequired",
                "PodInfoOnMount",
                "StorageCapacity",
                "TokenRequests",
                "RequiresRepublish",
                "Modes",
                "Age"
            ]
        );
        let nfs = json!({"metadata": {"name": "nfs.csi.k8s.io", "creationTimestamp": ago(60)},
            "spec": {"attachRequired": false, "podInfoOnMount": false,
                "volumeLifecycleModes": ["Persistent", "Ephemeral"]}});
        assert_eq!(
            cells(&CSI_DRIVER, &nfs),
            [
                "nfs.csi.k8s.io",
                "false",
                "false",
                "false",
                "<unset>",
                "false",
                "Persistent,Ephemeral",
                "60s"
            ]
        );
        let bare = json!({"metadata": {"name": "d"}, "spec": {"tokenRequests": [{"audience": "a"}, {"audience": "b"}]}});
        assert_eq!(
            cells(&CSI_DRIVER, &bare),
            [
                "d",
                "true",
                "false",
                "false",
                "a,b",
                "false",
                "<none>",
                "<unknown>"
            ]
        );
    }

    #[test]
    fn csi_nodes_attachments_and_capacities_print_as_upstream() {
        let node = json!({"metadata": {"name": "n1", "creationTimestamp": ago(5)},
            "spec": {"drivers": [{"name": "a", "nodeID": "n1"}, {"name": "b", "nodeID": "n1"}]}});
        assert_eq!(cells(&CSI_NODE, &node), ["n1", "2", "5s"]);
        let va = json!({"metadata": {"name": "csi-1", "creationTimestamp": ago(5)},
            "spec": {"attacher": "x.csi", "nodeName": "n1", "source": {"persistentVolumeName": "pv1"}},
            "status": {"attached": true}});
        assert_eq!(
            column_names(&VOLUME_ATTACHMENT),
            ["Name", "Attacher", "PV", "Node", "Attached", "Age"]
        );
        assert_eq!(
            cells(&VOLUME_ATTACHMENT, &va),
            ["csi-1", "x.csi", "pv1", "n1", "true", "5s"]
        );
        let cap =
            json!({"metadata": {"name": "c"}, "storageClassName": "fast", "capacity": "1024Mi"});
        assert_eq!(
            column_names(&CSI_STORAGE_CAPACITY),
            ["Name", "StorageClassName", "Capacity"]
        );
        assert_eq!(cells(&CSI_STORAGE_CAPACITY, &cap), ["c", "fast", "1Gi"]);
        let unset = json!({"metadata": {"name": "c"}, "storageClassName": "fast"});
        assert_eq!(
            cells(&CSI_STORAGE_CAPACITY, &unset),
            ["c", "fast", "<unset>"]
        );
    }
}
