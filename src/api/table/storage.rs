//! PersistentVolume, PersistentVolumeClaim and StorageClass rows, as upstream's
//! `printPersistentVolume`, `printPersistentVolumeClaim` and `printStorageClass` (v1.32).

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::cells::{age, arr, meta_str, str_at};
use super::columns::{age_col, col, name_col};
use super::{no_conditions, Printer};
use crate::api::quantity::parse_quantity;

/// The annotation marking the default StorageClass (and its beta spelling).
pub const DEFAULT_CLASS_ANNOTATION: &str = "storageclass.kubernetes.io/is-default-class";
pub const BETA_DEFAULT_CLASS_ANNOTATION: &str = "storageclass.beta.kubernetes.io/is-default-class";

/// Whether a StorageClass carries the default-class annotation (upstream
/// `IsDefaultAnnotation`).
pub fn is_default_class(sc: &Value) -> bool {
    let a = &sc["metadata"]["annotations"];
    a[DEFAULT_CLASS_ANNOTATION] == "true" || a[BETA_DEFAULT_CLASS_ANNOTATION] == "true"
}

/// Upstream `GetAccessModesAsString`: RWO, ROX, RWX, RWOP in that order.
pub fn access_modes_string(modes: &Value) -> String {
    let has = |m: &str| arr(modes).iter().any(|x| x == m);
    [
        ("ReadWriteOnce", "RWO"),
        ("ReadOnlyMany", "ROX"),
        ("ReadWriteMany", "RWX"),
        ("ReadWriteOncePod", "RWOP"),
    ]
    .iter()
    .filter(|(mode, _)| has(mode))
    .map(|(_, short)| *short)
    .collect::<Vec<_>>()
    .join(",")
}

/// A quantity as Go's `Quantity.String()` prints it (canonical; "0" when missing).
fn quantity_cell(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        _ => return "0".into(),
    };
    parse_quantity(&text).map(|q| q.to_string()).unwrap_or(text)
}

/// The class of a volume or claim: the beta annotation, else `spec.storageClassName`.
fn class_of(obj: &Value) -> &str {
    match str_at(&obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]) {
        "" => str_at(&obj["spec"]["storageClassName"]),
        beta => beta,
    }
}

fn phase_or_terminating(obj: &Value) -> String {
    if obj["metadata"]["deletionTimestamp"].is_string() {
        "Terminating".into()
    } else {
        str_at(&obj["status"]["phase"]).into()
    }
}

fn unset_or(v: &Value) -> String {
    match v.as_str() {
        Some(s) => s.into(),
        None => "<unset>".into(),
    }
}

fn persistent_volume_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Capacity", "string", "capacity is the description of the persistent volume's resources and capacity.", 0),
        col("Access Modes", "string", "accessModes contains all ways the volume can be mounted.", 0),
        col("Reclaim Policy", "string", "persistentVolumeReclaimPolicy defines what happens to a persistent volume when released from its claim.", 0),
        col("Status", "string", "phase indicates if a volume is available, bound to a claim, or released by a claim.", 0),
        col("Claim", "string", "claimRef is part of a bi-directional binding between PersistentVolume and PersistentVolumeClaim.", 0),
        col("StorageClass", "string", "StorageClass of the pv", 0),
        col("VolumeAttributesClass", "string", "VolumeAttributesClass of the pv", 0),
        col("Reason", "string", "reason is a brief CamelCase string that describes any failure and is meant for machine parsing and tidy display in the CLI.", 0),
        age_col(),
        col("VolumeMode", "string", "volumeMode defines if a volume is intended to be used with a formatted filesystem or to remain in raw block state.", 1),
    ]
}

fn persistent_volume_cells(pv: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &pv["spec"];
    let claim = match &spec["claimRef"] {
        Value::Object(r) => format!(
            "{}/{}",
            r.get("namespace").and_then(Value::as_str).unwrap_or(""),
            r.get("name").and_then(Value::as_str).unwrap_or("")
        ),
        _ => String::new(),
    };
    vec![
        json!(meta_str(pv, "name")),
        json!(quantity_cell(&spec["capacity"]["storage"])),
        json!(access_modes_string(&spec["accessModes"])),
        json!(str_at(&spec["persistentVolumeReclaimPolicy"])),
        json!(phase_or_terminating(pv)),
        json!(claim),
        json!(class_of(pv)),
        json!(unset_or(&spec["volumeAttributesClassName"])),
        json!(str_at(&pv["status"]["reason"])),
        json!(age(pv, now)),
        json!(unset_or(&spec["volumeMode"])),
    ]
}

pub static PERSISTENT_VOLUME: Printer = Printer {
    columns: persistent_volume_columns,
    cells: persistent_volume_cells,
    conditions: no_conditions,
};

fn persistent_volume_claim_columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Status",
            "string",
            "phase represents the current phase of PersistentVolumeClaim.",
            0,
        ),
        col(
            "Volume",
            "string",
            "volumeName is the binding reference to the PersistentVolume backing this claim.",
            0,
        ),
        col(
            "Capacity",
            "string",
            "capacity represents the actual resources of the underlying volume.",
            0,
        ),
        col(
            "Access Modes",
            "string",
            "accessModes contains the actual access modes the volume backing the PVC has.",
            0,
        ),
        col("StorageClass", "string", "StorageClass of the pvc", 0),
        col(
            "VolumeAttributesClass",
            "string",
            "VolumeAttributesClass of the pvc",
            0,
        ),
        age_col(),
        col(
            "VolumeMode",
            "string",
            "volumeMode defines what type of volume is required by the claim.",
            1,
        ),
    ]
}

fn persistent_volume_claim_cells(pvc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &pvc["spec"];
    let volume = str_at(&spec["volumeName"]);
    let (capacity, modes) = if volume.is_empty() {
        (String::new(), String::new())
    } else {
        (
            quantity_cell(&pvc["status"]["capacity"]["storage"]),
            access_modes_string(&pvc["status"]["accessModes"]),
        )
    };
    vec![
        json!(meta_str(pvc, "name")),
        json!(phase_or_terminating(pvc)),
        json!(volume),
        json!(capacity),
        json!(modes),
        json!(class_of(pvc)),
        json!(unset_or(&spec["volumeAttributesClassName"])),
        json!(age(pvc, now)),
        json!(unset_or(&spec["volumeMode"])),
    ]
}

pub static PERSISTENT_VOLUME_CLAIM: Printer = Printer {
    columns: persistent_volume_claim_columns,
    cells: persistent_volume_claim_cells,
    conditions: no_conditions,
};

fn storage_class_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Provisioner", "string", "provisioner indicates the type of the provisioner.", 0),
        col("ReclaimPolicy", "string", "reclaimPolicy controls the reclaimPolicy for dynamically provisioned PersistentVolumes of this storage class. Defaults to Delete.", 0),
        col("VolumeBindingMode", "string", "volumeBindingMode indicates how PersistentVolumeClaims should be provisioned and bound.  When unset, VolumeBindingImmediate is used. This field is only honored by servers that enable the VolumeScheduling feature.", 0),
        col("AllowVolumeExpansion", "string", "allowVolumeExpansion shows whether the storage class allow volume expand.", 0),
        age_col(),
    ]
}

fn storage_class_cells(sc: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let mut name = meta_str(sc, "name").to_string();
    if is_default_class(sc) {
        name.push_str(" (default)");
    }
    let or = |v: &Value, default: &str| v.as_str().unwrap_or(default).to_string();
    vec![
        json!(name),
        json!(str_at(&sc["provisioner"])),
        json!(or(&sc["reclaimPolicy"], "Delete")),
        json!(or(&sc["volumeBindingMode"], "Immediate")),
        json!(sc["allowVolumeExpansion"].as_bool().unwrap_or(false)),
        json!(age(sc, now)),
    ]
}

pub static STORAGE_CLASS: Printer = Printer {
    columns: storage_class_columns,
    cells: storage_class_cells,
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::super::RowPrinter;
    use super::*;

    fn now() -> DateTime<Utc> {
        "2024-01-01T00:10:00Z".parse().unwrap()
    }

    #[test]
    fn volumes_print_capacity_modes_claim_and_class() {
        let pv = json!({"metadata": {"name": "pv1", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"capacity": {"storage": "1024Mi"}, "accessModes": ["ReadWriteMany", "ReadWriteOnce"],
                     "persistentVolumeReclaimPolicy": "Retain", "storageClassName": "manual",
                     "claimRef": {"namespace": "default", "name": "data"}},
            "status": {"phase": "Bound"}});
        assert_eq!(
            PERSISTENT_VOLUME.row(&pv, now()),
            vec![
                json!("pv1"),
                json!("1Gi"),
                json!("RWO,RWX"),
                json!("Retain"),
                json!("Bound"),
                json!("default/data"),
                json!("manual"),
                json!("<unset>"),
                json!(""),
                json!("10m"),
                json!("<unset>")
            ]
        );
        let names: Vec<String> = PERSISTENT_VOLUME
            .column_definitions()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(
            names[..5],
            [
                "Name",
                "Capacity",
                "Access Modes",
                "Reclaim Policy",
                "Status"
            ]
        );
    }

    #[test]
    fn claims_show_capacity_only_once_bound_and_terminating_while_deleted() {
        let mut pvc = json!({"metadata": {"name": "data", "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"storageClassName": "local-path", "volumeMode": "Filesystem",
                     "resources": {"requests": {"storage": "1Gi"}}},
            "status": {"phase": "Pending"}});
        let row = PERSISTENT_VOLUME_CLAIM.row(&pvc, now());
        assert_eq!(
            row[1..6],
            [
                json!("Pending"),
                json!(""),
                json!(""),
                json!(""),
                json!("local-path")
            ]
        );
        pvc["spec"]["volumeName"] = json!("pvc-1");
        pvc["status"] = json!({"phase": "Bound", "capacity": {"storage": "2Gi"}, "accessModes": ["ReadWriteOnce"]});
        pvc["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:09:00Z");
        let row = PERSISTENT_VOLUME_CLAIM.row(&pvc, now());
        assert_eq!(
            row[1..5],
            [
                json!("Terminating"),
                json!("pvc-1"),
                json!("2Gi"),
                json!("RWO")
            ]
        );
        assert_eq!(row[8], json!("Filesystem"));
    }

    #[test]
    fn the_default_class_is_marked_after_its_name() {
        let sc = json!({"metadata": {"name": "local-path", "creationTimestamp": "2024-01-01T00:00:00Z",
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}},
            "provisioner": "orc.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"});
        assert_eq!(
            STORAGE_CLASS.row(&sc, now()),
            vec![
                json!("local-path (default)"),
                json!("orc.io/local-path"),
                json!("Delete"),
                json!("WaitForFirstConsumer"),
                json!(false),
                json!("10m")
            ]
        );
    }
}
