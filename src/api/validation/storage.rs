//! PersistentVolume, PersistentVolumeClaim and StorageClass rules (upstream
//! `ValidatePersistentVolume*`, `ValidateStorageClass*`): access modes, sizes, one volume
//! source, immutable specs once bound (a bound claim may only grow), immutable classes.

use serde_json::Value;

use super::field_error::{render, FieldError};
use super::names::{is_dns1123_subdomain, is_qualified_name, FIELD_IMMUTABLE};
use super::workloads::validate_label_selector;
use super::{arr_at, field, obj_at, quantity_text, str_at, validate_resource_quantity, Errs};
use crate::api::quantity::{parse_quantity, Quantity};

/// The access modes a volume or claim may name.
pub const ACCESS_MODES: [&str; 4] = [
    "ReadOnlyMany",
    "ReadWriteMany",
    "ReadWriteOnce",
    "ReadWriteOncePod",
];
const VOLUME_MODES: [&str; 2] = ["Block", "Filesystem"];
const PV_RECLAIM_POLICIES: [&str; 3] = ["Delete", "Recycle", "Retain"];
const SC_RECLAIM_POLICIES: [&str; 2] = ["Delete", "Retain"];
const BINDING_MODES: [&str; 2] = ["Immediate", "WaitForFirstConsumer"];
/// The volume sources of a PersistentVolume orc knows by name (for "one type only").
const PV_SOURCES: [&str; 22] = [
    "hostPath",
    "local",
    "nfs",
    "csi",
    "iscsi",
    "fc",
    "rbd",
    "cephfs",
    "cinder",
    "glusterfs",
    "flexVolume",
    "flocker",
    "azureFile",
    "azureDisk",
    "awsElasticBlockStore",
    "gcePersistentDisk",
    "vsphereVolume",
    "quobyte",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
];
/// Upstream's message for a shrinking claim.
pub const SHRINK_FORBIDDEN: &str = "field can not be less than previous value";
const CLAIM_SPEC_IMMUTABLE: &str =
    "spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims";

/// `spec.resources.requests.storage` of a claim (`None` when missing or malformed).
pub fn claim_request(pvc: &Value) -> Option<Quantity> {
    quantity_text(&pvc["spec"]["resources"]["requests"]["storage"])
        .and_then(|s| parse_quantity(&s).ok())
}

fn validate_access_modes(spec: &Value, path: &str, claim: bool, errs: &mut Errs) {
    let modes = arr_at(spec, "accessModes");
    if modes.is_empty() {
        let detail = if claim {
            "at least 1 access mode is required"
        } else {
            ""
        };
        errs.push(FieldError::required(format!("{path}.accessModes"), detail));
    }
    let mut has_rwop = false;
    for m in modes {
        let m = m.as_str().unwrap_or("");
        has_rwop |= m == "ReadWriteOncePod";
        if !ACCESS_MODES.contains(&m) {
            errs.push(FieldError::not_supported(
                format!("{path}.accessModes"),
                m,
                &ACCESS_MODES,
            ));
        }
    }
    if has_rwop && modes.len() > 1 {
        errs.push(FieldError::forbidden(
            format!("{path}.accessModes"),
            "may not use ReadWriteOncePod with other access modes",
        ));
    }
}

fn validate_enum(spec: &Value, key: &str, path: &str, allowed: &[&str], errs: &mut Errs) {
    if let Some(v) = field(spec, key) {
        let s = v.as_str().unwrap_or("");
        if !allowed.contains(&s) {
            errs.push(FieldError::not_supported(
                format!("{path}.{key}"),
                s,
                allowed,
            ));
        }
    }
}

fn validate_class_name(spec: &Value, path: &str, errs: &mut Errs) {
    let class = str_at(spec, "storageClassName");
    if class.is_empty() {
        return;
    }
    for msg in is_dns1123_subdomain(class) {
        errs.push(FieldError::invalid(
            format!("{path}.storageClassName"),
            class,
            msg,
        ));
    }
}

/// A positive quantity at `path` (upstream `ValidatePositiveQuantityValue` then
/// `ValidateResourceQuantityValue`).
fn validate_positive_storage(value: &Value, path: &str, errs: &mut Errs) {
    let before = errs.len();
    validate_resource_quantity("storage", value, path, errs);
    if errs.len() > before {
        return;
    }
    let text = quantity_text(value).unwrap_or_default();
    if parse_quantity(&text).is_ok_and(|q| q.is_zero()) {
        errs.push(FieldError::invalid(
            path,
            &text,
            "must be greater than zero",
        ));
    }
}

pub(super) fn validate_persistent_volume_claim(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_access_modes(spec, "spec", true, errs);
    if let Some(sel) = field(spec, "selector") {
        validate_label_selector(sel, "spec.selector", errs);
    }
    match field(&spec["resources"]["requests"], "storage") {
        None => errs.push(FieldError::required("spec.resources[storage]", "")),
        Some(v) => validate_positive_storage(v, "spec.resources[storage]", errs),
    }
    validate_class_name(spec, "spec", errs);
    validate_enum(spec, "volumeMode", "spec", &VOLUME_MODES, errs);
    if let Some(old) = old {
        validate_claim_update(obj, old, errs);
    }
}

/// Upstream `ValidatePersistentVolumeClaimUpdate`: the spec is fixed once created, except
/// that the controller sets `volumeName` once and a bound claim's storage request may
/// grow (never shrink).
fn validate_claim_update(new: &Value, old: &Value, errs: &mut Errs) {
    let mut new_spec = new["spec"].clone();
    let mut old_spec = old["spec"].clone();
    if str_at(&old_spec, "volumeName").is_empty() {
        old_spec["volumeName"] = new_spec["volumeName"].clone();
    }
    // A claim created before the default class existed gets one written in once.
    if field(&old_spec, "storageClassName").is_none()
        && old["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"].is_null()
    {
        old_spec["storageClassName"] = new_spec["storageClassName"].clone();
    }
    if new["status"]["phase"] == "Bound" {
        new_spec["resources"]["requests"]["storage"] =
            old_spec["resources"]["requests"]["storage"].clone();
    }
    normalize_nulls(&mut new_spec);
    normalize_nulls(&mut old_spec);
    if new_spec != old_spec {
        errs.push(FieldError::forbidden("spec", CLAIM_SPEC_IMMUTABLE));
    }
    if let (Some(new_size), Some(old_size)) = (claim_request(new), claim_request(old)) {
        if new_size < old_size {
            errs.push(FieldError::forbidden(
                "spec.resources.requests.storage",
                SHRINK_FORBIDDEN,
            ));
        }
    }
}

/// Drops `null` members so that an absent field and an explicit `null` compare equal.
fn normalize_nulls(v: &mut Value) {
    if let Some(m) = v.as_object_mut() {
        m.retain(|_, x| !x.is_null());
        for x in m.values_mut() {
            normalize_nulls(x);
        }
    }
}

pub(super) fn validate_persistent_volume(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_access_modes(spec, "spec", false, errs);
    match obj_at(spec, "capacity") {
        None => errs.push(FieldError::required("spec.capacity", "")),
        Some(c) if c.is_empty() => errs.push(FieldError::required("spec.capacity", "")),
        Some(c) => {
            if !c.contains_key("storage") || c.len() > 1 {
                let mut keys: Vec<&str> = c.keys().map(String::as_str).collect();
                keys.sort_unstable();
                errs.push(FieldError::not_supported_rendered(
                    "spec.capacity",
                    format!("[{}]", keys.join(" ")),
                    &["storage".to_string()],
                ));
            }
            if let Some(v) = c.get("storage") {
                validate_positive_storage(v, "spec.capacity[storage]", errs);
            }
        }
    }
    validate_enum(
        spec,
        "persistentVolumeReclaimPolicy",
        "spec",
        &PV_RECLAIM_POLICIES,
        errs,
    );
    validate_class_name(spec, "spec", errs);
    validate_enum(spec, "volumeMode", "spec", &VOLUME_MODES, errs);
    let sources: Vec<&str> = PV_SOURCES
        .iter()
        .copied()
        .filter(|s| field(spec, s).is_some())
        .collect();
    match sources.len() {
        0 => errs.push(FieldError::required("spec", "must specify a volume type")),
        1 => {}
        _ => errs.push(FieldError::forbidden(
            format!("spec.{}", sources[1]),
            "may not specify more than 1 volume type",
        )),
    }
    if let Some(host) = field(spec, "hostPath") {
        if str_at(host, "path").is_empty() {
            errs.push(FieldError::required("spec.hostPath.path", ""));
        }
    }
    if let Some(local) = field(spec, "local") {
        if str_at(local, "path").is_empty() {
            errs.push(FieldError::required("spec.local.path", ""));
        }
        if field(spec, "nodeAffinity").is_none() {
            errs.push(FieldError::required(
                "spec.nodeAffinity",
                "Local volume requires node affinity",
            ));
        }
    }
    if let Some(affinity) = field(spec, "nodeAffinity") {
        match field(affinity, "required") {
            None => errs.push(FieldError::required(
                "spec.nodeAffinity.required",
                "must specify required node constraints",
            )),
            Some(req) if arr_at(req, "nodeSelectorTerms").is_empty() => {
                errs.push(FieldError::required(
                    "spec.nodeAffinity.required.nodeSelectorTerms",
                    "must have at least one node selector term",
                ))
            }
            Some(_) => {}
        }
    }
    if let Some(claim_ref) = field(spec, "claimRef") {
        if str_at(claim_ref, "name").is_empty() {
            errs.push(FieldError::required("spec.claimRef.name", ""));
        }
    }
    if let Some(old) = old {
        validate_volume_update(obj, old, errs);
    }
}

/// Upstream `ValidatePersistentVolumeUpdate`: the volume source is fixed, the volume mode
/// too, and node affinity once set.
fn validate_volume_update(new: &Value, old: &Value, errs: &mut Errs) {
    let source_of = |pv: &Value| -> Vec<(String, Value)> {
        PV_SOURCES
            .iter()
            .filter_map(|s| field(&pv["spec"], s).map(|v| (s.to_string(), v.clone())))
            .collect()
    };
    if source_of(new) != source_of(old) {
        errs.push(FieldError::forbidden(
            "spec.persistentvolumesource",
            "spec.persistentvolumesource is immutable after creation",
        ));
    }
    let mode = |pv: &Value| field(&pv["spec"], "volumeMode").cloned();
    if mode(new) != mode(old) {
        errs.push(FieldError::invalid_rendered(
            "spec.volumeMode",
            mode(new)
                .map(|m| render(&m))
                .unwrap_or_else(|| "null".into()),
            FIELD_IMMUTABLE,
        ));
    }
    let affinity = |pv: &Value| field(&pv["spec"], "nodeAffinity").cloned();
    if affinity(old).is_some() && affinity(new) != affinity(old) {
        errs.push(FieldError::invalid_rendered(
            "nodeAffinity",
            affinity(new)
                .map(|a| render(&a))
                .unwrap_or_else(|| "null".into()),
            FIELD_IMMUTABLE,
        ));
    }
}

pub(super) fn validate_storage_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let provisioner = str_at(obj, "provisioner");
    if provisioner.is_empty() {
        errs.push(FieldError::required("provisioner", ""));
    } else {
        for msg in is_qualified_name(&provisioner.to_lowercase()) {
            errs.push(FieldError::invalid("provisioner", provisioner, msg));
        }
    }
    if let Some(params) = obj_at(obj, "parameters") {
        if params.keys().any(String::is_empty) {
            errs.push(FieldError::invalid_rendered(
                "parameters",
                render(&obj["parameters"]),
                "field can not be empty.",
            ));
        }
    }
    validate_enum(obj, "reclaimPolicy", "", &SC_RECLAIM_POLICIES, errs);
    match field(obj, "volumeBindingMode") {
        None => errs.push(FieldError::required(
            "volumeBindingMode",
            "must specify a volumeBindingMode",
        )),
        Some(_) => validate_enum(obj, "volumeBindingMode", "", &BINDING_MODES, errs),
    }
    // `validate_enum` with an empty parent writes ".field": upstream paths have none.
    for e in errs.iter_mut() {
        if let Some(rest) = e.field.strip_prefix('.') {
            e.field = rest.to_string();
        }
    }
    let Some(old) = old else { return };
    let same = |key: &str| field(obj, key) == field(old, key);
    let empty_params = |v: &Value| obj_at(v, "parameters").is_none_or(|p| p.is_empty());
    if !(same("parameters") || empty_params(obj) && empty_params(old)) {
        errs.push(FieldError::forbidden(
            "parameters",
            "updates to parameters are forbidden.",
        ));
    }
    if !same("provisioner") {
        errs.push(FieldError::forbidden(
            "provisioner",
            "updates to provisioner are forbidden.",
        ));
    }
    if !same("reclaimPolicy") {
        errs.push(FieldError::forbidden(
            "reclaimPolicy",
            "updates to reclaimPolicy are forbidden.",
        ));
    }
    if !same("volumeBindingMode") {
        errs.push(FieldError::invalid_rendered(
            "volumeBindingMode",
            field(obj, "volumeBindingMode")
                .map(render)
                .unwrap_or_else(|| "null".into()),
            FIELD_IMMUTABLE,
        ));
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use crate::api::validation::test_support::messages;
    use serde_json::{json, Value};

    fn claim(size: &str) -> Value {
        json!({"metadata": {"name": "data", "namespace": "default"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "fast",
                        "resources": {"requests": {"storage": size}}},
               "status": {"phase": "Pending"}})
    }

    #[test]
    fn claims_need_access_modes_and_a_positive_storage_request() {
        let bad = json!({"metadata": {"name": "c"}, "spec": {"accessModes": ["Sometimes"]}});
        assert_eq!(
            messages(&validate("PersistentVolumeClaim", &bad, None)),
            vec![
                "spec.accessModes: Unsupported value: \"Sometimes\": supported values: \"ReadOnlyMany\", \"ReadWriteMany\", \"ReadWriteOnce\", \"ReadWriteOncePod\"",
                "spec.resources[storage]: Required value",
            ]
        );
        let none = json!({"metadata": {"name": "c"}, "spec": {"resources": {"requests": {"storage": "0"}}}});
        assert_eq!(
            messages(&validate("PersistentVolumeClaim", &none, None)),
            vec![
                "spec.accessModes: Required value: at least 1 access mode is required",
                "spec.resources[storage]: Invalid value: \"0\": must be greater than zero",
            ]
        );
        assert!(validate("PersistentVolumeClaim", &claim("1Gi"), None).is_empty());
    }

    #[test]
    fn bound_claims_may_grow_but_never_shrink_and_the_rest_is_fixed() {
        let mut old = claim("2Gi");
        old["status"]["phase"] = json!("Bound");
        old["spec"]["volumeName"] = json!("pv1");
        let mut grown = old.clone();
        grown["spec"]["resources"]["requests"]["storage"] = json!("3Gi");
        assert!(validate("PersistentVolumeClaim", &grown, Some(&old)).is_empty());
        let mut shrunk = old.clone();
        shrunk["spec"]["resources"]["requests"]["storage"] = json!("1Gi");
        assert_eq!(
            messages(&validate("PersistentVolumeClaim", &shrunk, Some(&old))),
            vec!["spec.resources.requests.storage: Forbidden: field can not be less than previous value"]
        );
        let mut other_class = old.clone();
        other_class["spec"]["storageClassName"] = json!("slow");
        assert_eq!(
            messages(&validate("PersistentVolumeClaim", &other_class, Some(&old))),
            vec!["spec: Forbidden: spec is immutable after creation except resources.requests and volumeAttributesClassName for bound claims"]
        );
        // Unbound: the request is fixed too; the controller sets volumeName once.
        let pending = claim("2Gi");
        let mut bigger = pending.clone();
        bigger["spec"]["resources"]["requests"]["storage"] = json!("3Gi");
        assert_eq!(
            validate("PersistentVolumeClaim", &bigger, Some(&pending)).len(),
            1
        );
        let mut named = pending.clone();
        named["spec"]["volumeName"] = json!("pv1");
        assert!(validate("PersistentVolumeClaim", &named, Some(&pending)).is_empty());
    }

    #[test]
    fn volumes_need_capacity_modes_and_exactly_one_source() {
        let pv = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi", "cpu": "1"},
            "accessModes": ["ReadWriteOnce"], "persistentVolumeReclaimPolicy": "Keep"}});
        assert_eq!(
            messages(&validate("PersistentVolume", &pv, None)),
            vec![
                "spec.capacity: Unsupported value: [cpu storage]: supported values: \"storage\"",
                "spec.persistentVolumeReclaimPolicy: Unsupported value: \"Keep\": supported values: \"Delete\", \"Recycle\", \"Retain\"",
                "spec: Required value: must specify a volume type",
            ]
        );
        let local = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "local": {"path": "/mnt"}}});
        assert_eq!(
            messages(&validate("PersistentVolume", &local, None)),
            vec!["spec.nodeAffinity: Required value: Local volume requires node affinity"]
        );
        let host = json!({"metadata": {"name": "pv1"}, "spec": {"capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"], "hostPath": {"path": "/mnt"}}});
        assert!(validate("PersistentVolume", &host, None).is_empty());
        let mut moved = host.clone();
        moved["spec"]["hostPath"]["path"] = json!("/srv");
        assert_eq!(
            messages(&validate("PersistentVolume", &moved, Some(&host))),
            vec!["spec.persistentvolumesource: Forbidden: spec.persistentvolumesource is immutable after creation"]
        );
    }

    #[test]
    fn storage_classes_keep_provisioner_parameters_policy_and_binding_mode() {
        let sc = json!({"metadata": {"name": "fast"}, "provisioner": "example.com/disk",
            "parameters": {"type": "ssd"}, "reclaimPolicy": "Delete", "volumeBindingMode": "Immediate"});
        assert!(validate("StorageClass", &sc, None).is_empty());
        let mut changed = sc.clone();
        changed["provisioner"] = json!("example.com/other");
        changed["parameters"] = json!({"type": "hdd"});
        changed["reclaimPolicy"] = json!("Retain");
        changed["volumeBindingMode"] = json!("WaitForFirstConsumer");
        assert_eq!(
            messages(&validate("StorageClass", &changed, Some(&sc))),
            vec![
                "parameters: Forbidden: updates to parameters are forbidden.",
                "provisioner: Forbidden: updates to provisioner are forbidden.",
                "reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden.",
                "volumeBindingMode: Invalid value: \"WaitForFirstConsumer\": field is immutable",
            ]
        );
        let bad = json!({"metadata": {"name": "x"}, "reclaimPolicy": "Recycle", "volumeBindingMode": "Later"});
        assert_eq!(
            messages(&validate("StorageClass", &bad, None)),
            vec![
                "provisioner: Required value",
                "reclaimPolicy: Unsupported value: \"Recycle\": supported values: \"Delete\", \"Retain\"",
                "volumeBindingMode: Unsupported value: \"Later\": supported values: \"Immediate\", \"WaitForFirstConsumer\"",
            ]
        );
    }
}
