//! The CSI kinds of storage.k8s.io/v1 (upstream `pkg/apis/storage/validation`, v1.32):
//! CSIDriver, CSINode, VolumeAttachment and CSIStorageCapacity. Objects arrive
//! defaulted (a CSIDriver's required booleans are set by then unless a client wrote
//! null on purpose).

use serde_json::Value;

use super::field_error::{go_quote, render, FieldError};
use super::names::{is_dns1123_subdomain, is_qualified_name, FIELD_IMMUTABLE, NON_NEGATIVE_ERR};
use super::workloads::validate_label_selector;
use super::{arr_at, field, obj_at, str_at, validate_resource_quantity, Errs};

/// `spec.fsGroupPolicy` values (upstream `supportedFSGroupPolicy`, sorted as Go lists them).
pub const FS_GROUP_POLICIES: [&str; 3] = ["File", "None", "ReadWriteOnceWithFSType"];
/// `spec.volumeLifecycleModes` values.
pub const VOLUME_LIFECYCLE_MODES: [&str; 2] = ["Persistent", "Ephemeral"];
/// Longest CSINode `nodeID` (upstream `csiNodeIDMaxLength`; 256 only for a node that
/// already had a longer one, which orc never writes).
const CSI_NODE_ID_MAX_LENGTH: usize = 192;
/// Upstream `maxAttachedVolumeMetadataSize` and `maxVolumeErrorMessageSize`.
const MAX_ATTACHED_VOLUME_METADATA_SIZE: usize = 256 * 1024;
const MAX_VOLUME_ERROR_MESSAGE_SIZE: usize = 1024;
/// Shortest token a CSI driver may ask for, and the longest (upstream
/// `validateTokenRequests`).
const MIN_TOKEN_SECONDS: i64 = 600;
const MAX_TOKEN_SECONDS: i64 = 1 << 32;

/// A CSI driver name (upstream `ValidateCSIDriverName`: a DNS subdomain).
fn csi_driver_name(name: &str, path: &str, errs: &mut Errs) {
    for m in is_dns1123_subdomain(name) {
        errs.push(FieldError::invalid(path, name, m));
    }
}

/// A list of modes as Go's `%#v` prints `[]storage.VolumeLifecycleMode`.
fn go_modes(modes: &Value) -> String {
    match modes.as_array() {
        None => "[]storage.VolumeLifecycleMode(nil)".into(),
        Some(list) => format!(
            "[]storage.VolumeLifecycleMode{{{}}}",
            list.iter()
                .map(|m| go_quote(m.as_str().unwrap_or("")))
                .collect::<Vec<_>>()
                .join(", ")
        ),
    }
}

/// Upstream `ValidateCSIDriver` (name checked with the metadata) and, on update,
/// `ValidateCSIDriverUpdate`: `attachRequired` and `volumeLifecycleModes` never change
/// (upstream reports the former under its misspelt path `spec.attachedRequired`).
pub(super) fn validate_csi_driver(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for (key, path) in [
        ("attachRequired", "spec.attachedRequired"),
        ("podInfoOnMount", "spec.podInfoOnMount"),
        ("storageCapacity", "spec.storageCapacity"),
        ("seLinuxMount", "spec.seLinuxMount"),
    ] {
        if field(spec, key).is_none() {
            errs.push(FieldError::required(path, ""));
        }
    }
    if let Some(policy) = field(spec, "fsGroupPolicy") {
        let policy = policy.as_str().unwrap_or("");
        if !FS_GROUP_POLICIES.contains(&policy) {
            errs.push(FieldError::not_supported(
                "spec.fsGroupPolicy",
                policy,
                &FS_GROUP_POLICIES,
            ));
        }
    }
    validate_token_requests(arr_at(spec, "tokenRequests"), errs);
    for mode in arr_at(spec, "volumeLifecycleModes") {
        let mode = mode.as_str().unwrap_or("");
        if !VOLUME_LIFECYCLE_MODES.contains(&mode) {
            errs.push(FieldError::not_supported(
                "spec.volumeLifecycleModes",
                mode,
                &VOLUME_LIFECYCLE_MODES,
            ));
        }
    }
    let Some(old) = old else { return };
    let old_spec = old.get("spec").unwrap_or(&Value::Null);
    let (new_attach, old_attach) = (
        field(spec, "attachRequired"),
        field(old_spec, "attachRequired"),
    );
    if new_attach != old_attach {
        errs.push(FieldError::invalid_rendered(
            "spec.attachedRequired",
            new_attach.map(render).unwrap_or_else(|| "null".into()),
            FIELD_IMMUTABLE,
        ));
    }
    let (new_modes, old_modes) = (
        field(spec, "volumeLifecycleModes"),
        field(old_spec, "volumeLifecycleModes"),
    );
    if new_modes != old_modes {
        errs.push(FieldError::invalid_rendered(
            "spec.volumeLifecycleModes",
            go_modes(new_modes.unwrap_or(&Value::Null)),
            FIELD_IMMUTABLE,
        ));
    }
}

/// Audiences are unique; a token lives between ten minutes and 2^32 seconds.
fn validate_token_requests(requests: &[Value], errs: &mut Errs) {
    let mut audiences: Vec<&str> = Vec::new();
    for (i, request) in requests.iter().enumerate() {
        let path = format!("spec.tokenRequests[{i}]");
        let audience = str_at(request, "audience");
        if audiences.contains(&audience) {
            errs.push(FieldError::duplicate(format!("{path}.audience"), audience));
            continue;
        }
        audiences.push(audience);
        let Some(seconds) = request.get("expirationSeconds").and_then(Value::as_i64) else {
            continue;
        };
        if seconds < MIN_TOKEN_SECONDS {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.expirationSeconds"),
                seconds.to_string(),
                "may not specify a duration less than 10 minutes",
            ));
        }
        if seconds > MAX_TOKEN_SECONDS {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.expirationSeconds"),
                seconds.to_string(),
                "may not specify a duration larger than 2^32 seconds",
            ));
        }
    }
}

/// Upstream `ValidateCSINode` and `ValidateCSINodeUpdate`: each driver is named, has a
/// node ID, a non-negative volume limit and qualified topology keys, and a driver
/// already registered never changes (Kubernetes 1.32: the whole entry).
pub(super) fn validate_csi_node(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let drivers = arr_at(obj.get("spec").unwrap_or(&Value::Null), "drivers");
    let mut names: Vec<&str> = Vec::new();
    for (i, driver) in drivers.iter().enumerate() {
        let path = format!("spec.drivers[{i}]");
        let name = str_at(driver, "name");
        csi_driver_name(name, &format!("{path}.name"), errs);
        let node_id = str_at(driver, "nodeID");
        if node_id.is_empty() {
            errs.push(FieldError::required(format!("{path}.nodeID"), ""));
        }
        if node_id.len() > CSI_NODE_ID_MAX_LENGTH {
            errs.push(FieldError::invalid(
                format!("{path}.nodeID"),
                node_id,
                format!("must be {CSI_NODE_ID_MAX_LENGTH} characters or less"),
            ));
        }
        if let Some(count) = driver.pointer("/allocatable/count").and_then(Value::as_i64) {
            if count < 0 {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.allocatable.count"),
                    count.to_string(),
                    NON_NEGATIVE_ERR,
                ));
            }
        }
        if names.contains(&name) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        }
        names.push(name);
        let mut keys: Vec<&str> = Vec::new();
        for key in arr_at(driver, "topologyKeys") {
            let key = key.as_str().unwrap_or("");
            if key.is_empty() {
                errs.push(FieldError::required(path.clone(), ""));
            }
            if keys.contains(&key) {
                errs.push(FieldError::duplicate(path.clone(), key));
            }
            keys.push(key);
            for m in is_qualified_name(key) {
                errs.push(FieldError::invalid(path.clone(), key, m));
            }
        }
    }
    let Some(old) = old else { return };
    for old_driver in arr_at(old.get("spec").unwrap_or(&Value::Null), "drivers") {
        let changed = drivers
            .iter()
            .filter(|d| d["name"] == old_driver["name"])
            .find(|d| *d != old_driver);
        if let Some(new_driver) = changed {
            errs.push(FieldError::invalid_rendered(
                "spec.drivers",
                new_driver.to_string(),
                FIELD_IMMUTABLE,
            ));
        }
    }
}

/// Upstream `ValidateVolumeAttachment` with its v1 checks, and on update the spec
/// never changes (`ValidateVolumeAttachmentUpdate`).
pub(super) fn validate_volume_attachment(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let attacher = str_at(spec, "attacher");
    if attacher.is_empty() {
        errs.push(FieldError::required("spec.attacher", ""));
    }
    let source = spec.get("source").unwrap_or(&Value::Null);
    let pv_name = field(source, "persistentVolumeName");
    match (field(source, "inlineVolumeSpec"), pv_name) {
        (None, None) => errs.push(FieldError::required(
            "spec.source",
            "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
        )),
        (Some(_), Some(_)) => errs.push(FieldError::forbidden(
            "spec.source",
            "must specify exactly one of inlineVolumeSpec and persistentVolumeName",
        )),
        (None, Some(name)) if name.as_str().unwrap_or("").is_empty() => {
            errs.push(FieldError::required(
                "spec.source.persistentVolumeName",
                "must specify non empty persistentVolumeName",
            ))
        }
        _ => {}
    }
    let node = str_at(spec, "nodeName");
    for m in is_dns1123_subdomain(node) {
        errs.push(FieldError::invalid("spec.nodeName", node, m));
    }
    let status = obj.get("status").unwrap_or(&Value::Null);
    let metadata_size: usize = obj_at(status, "attachmentMetadata")
        .into_iter()
        .flatten()
        .map(|(k, v)| k.len() + v.as_str().map_or(0, str::len))
        .sum();
    if metadata_size > MAX_ATTACHED_VOLUME_METADATA_SIZE {
        errs.push(FieldError::too_long(
            "status.attachmentMetadata",
            MAX_ATTACHED_VOLUME_METADATA_SIZE,
        ));
    }
    for key in ["attachError", "detachError"] {
        let Some(error) = field(status, key) else {
            continue;
        };
        if str_at(error, "message").len() > MAX_VOLUME_ERROR_MESSAGE_SIZE {
            // Upstream reports the metadata limit here (a copy slip kept for fidelity).
            errs.push(FieldError::too_long(
                format!("status.{key}.message"),
                MAX_ATTACHED_VOLUME_METADATA_SIZE,
            ));
        }
    }
    if old.is_none() {
        // The stricter v1 checks of new attachments (upstream `ValidateVolumeAttachmentV1`).
        csi_driver_name(attacher, "spec.attacher", errs);
        if let Some(name) = pv_name.and_then(Value::as_str).filter(|n| !n.is_empty()) {
            for m in is_dns1123_subdomain(name) {
                errs.push(FieldError::invalid(
                    "spec.source.persistentVolumeName",
                    name,
                    m,
                ));
            }
        }
    }
    if let Some(old) = old {
        if obj.get("spec") != old.get("spec") {
            errs.push(FieldError::invalid_rendered(
                "spec",
                spec.to_string(),
                FIELD_IMMUTABLE,
            ));
        }
    }
}

/// Upstream `ValidateCSIStorageCapacity` and its update rules: `nodeTopology` and
/// `storageClassName` never change.
pub(super) fn validate_csi_storage_capacity(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    if let Some(selector) = field(obj, "nodeTopology") {
        validate_label_selector(selector, "nodeTopology", errs);
    }
    let class = str_at(obj, "storageClassName");
    for m in is_dns1123_subdomain(class) {
        errs.push(FieldError::invalid("storageClassName", class, m));
    }
    if let Some(capacity) = field(obj, "capacity") {
        validate_resource_quantity("capacity", capacity, "capacity", errs);
    }
    let Some(old) = old else { return };
    if field(obj, "nodeTopology") != field(old, "nodeTopology") {
        errs.push(FieldError::invalid_rendered(
            "nodeTopology",
            field(obj, "nodeTopology").map_or_else(|| "null".into(), Value::to_string),
            FIELD_IMMUTABLE,
        ));
    }
    if class != str_at(old, "storageClassName") {
        errs.push(FieldError::invalid(
            "storageClassName",
            class,
            FIELD_IMMUTABLE,
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{has, has_prefix, messages};
    use super::super::validate;

    /// A CSIDriver as defaulting leaves it.
    fn driver(spec: serde_json::Value) -> serde_json::Value {
        let mut d = json!({"metadata": {"name": "nfs.csi.k8s.io"}, "spec": {
            "attachRequired": true, "podInfoOnMount": false, "storageCapacity": false,
            "seLinuxMount": false, "requiresRepublish": false,
            "fsGroupPolicy": "ReadWriteOnceWithFSType", "volumeLifecycleModes": ["Persistent"]}});
        for (k, v) in spec.as_object().unwrap() {
            d["spec"][k] = v.clone();
        }
        d
    }

    #[test]
    fn csi_drivers_are_checked_as_upstream() {
        assert_eq!(
            messages(&validate("CSIDriver", &driver(json!({})), None)),
            Vec::<String>::new()
        );
        let bad = driver(
            json!({"fsGroupPolicy": "Sometimes", "volumeLifecycleModes": ["Forever"],
            "attachRequired": null,
            "tokenRequests": [{"audience": "a", "expirationSeconds": 60}, {"audience": "a"}]}),
        );
        let errs = validate("CSIDriver", &bad, None);
        assert!(has(&errs, "spec.attachedRequired: Required value"));
        assert!(has(
            &errs,
            r#"spec.fsGroupPolicy: Unsupported value: "Sometimes": supported values: "File", "None", "ReadWriteOnceWithFSType""#
        ));
        assert!(has(
            &errs,
            r#"spec.volumeLifecycleModes: Unsupported value: "Forever": supported values: "Persistent", "Ephemeral""#
        ));
        assert!(has(&errs, "spec.tokenRequests[0].expirationSeconds: Invalid value: 60: may not specify a duration less than 10 minutes"));
        assert!(has(
            &errs,
            r#"spec.tokenRequests[1].audience: Duplicate value: "a""#
        ));
        let named = json!({"metadata": {"name": "Bad_Name"}, "spec": driver(json!({}))["spec"]});
        assert!(has_prefix(
            &validate("CSIDriver", &named, None),
            r#"metadata.name: Invalid value: "Bad_Name""#
        ));
    }

    #[test]
    fn csi_driver_attach_and_modes_are_immutable_the_rest_is_not() {
        let old = driver(json!({}));
        let changed = driver(
            json!({"attachRequired": false, "volumeLifecycleModes": ["Persistent", "Ephemeral"]}),
        );
        let errs = validate("CSIDriver", &changed, Some(&old));
        assert_eq!(
            messages(&errs),
            [
                "spec.attachedRequired: Invalid value: false: field is immutable",
                r#"spec.volumeLifecycleModes: Invalid value: []storage.VolumeLifecycleMode{"Persistent", "Ephemeral"}: field is immutable"#,
            ]
        );
        let mutable = driver(json!({"podInfoOnMount": true, "storageCapacity": true,
            "fsGroupPolicy": "File", "requiresRepublish": true}));
        assert_eq!(
            messages(&validate("CSIDriver", &mutable, Some(&old))),
            Vec::<String>::new()
        );
    }

    #[test]
    fn csi_nodes_need_ids_and_keep_registered_drivers() {
        let node = |id: &str| {
            json!({"metadata": {"name": "n1"}, "spec": {"drivers": [
            {"name": "nfs.csi.k8s.io", "nodeID": id, "topologyKeys": ["topology.kubernetes.io/zone"]}]}})
        };
        assert!(validate("CSINode", &node("n1"), None).is_empty());
        assert!(has(
            &validate("CSINode", &node(""), None),
            "spec.drivers[0].nodeID: Required value"
        ));
        let long = "x".repeat(193);
        assert!(has_prefix(
            &validate("CSINode", &node(&long), None),
            "spec.drivers[0].nodeID: Invalid value:"
        ));
        let dup = json!({"metadata": {"name": "n1"}, "spec": {"drivers": [
            {"name": "a", "nodeID": "1"}, {"name": "a", "nodeID": "2"}]}});
        assert!(has(
            &validate("CSINode", &dup, None),
            r#"spec.drivers[1].name: Duplicate value: "a""#
        ));
        assert!(has_prefix(
            &validate("CSINode", &node("n2"), Some(&node("n1"))),
            "spec.drivers: Invalid value:"
        ));
    }

    #[test]
    fn volume_attachments_need_one_source_and_keep_their_spec() {
        let va = |source: serde_json::Value| {
            json!({"metadata": {"name": "csi-1"}, "spec": {
            "attacher": "nfs.csi.k8s.io", "nodeName": "n1", "source": source}})
        };
        let ok = va(json!({"persistentVolumeName": "pv1"}));
        assert!(validate("VolumeAttachment", &ok, None).is_empty());
        assert!(has(
            &validate("VolumeAttachment", &va(json!({})), None),
            "spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"
        ));
        let no_attacher = json!({"metadata": {"name": "v"}, "spec": {"nodeName": "n1", "source": {"persistentVolumeName": "pv"}}});
        assert!(has(
            &validate("VolumeAttachment", &no_attacher, None),
            "spec.attacher: Required value"
        ));
        let moved = va(json!({"persistentVolumeName": "pv2"}));
        assert!(has_prefix(
            &validate("VolumeAttachment", &moved, Some(&ok)),
            "spec: Invalid value: "
        ));
        let mut attached = ok.clone();
        attached["status"] = json!({"attached": true});
        assert!(validate("VolumeAttachment", &attached, Some(&ok)).is_empty());
    }

    #[test]
    fn csi_storage_capacities_keep_class_and_topology() {
        let cap = |class: &str, qty: &str| {
            json!({"metadata": {"name": "c", "namespace": "kube-system"},
            "storageClassName": class, "capacity": qty,
            "nodeTopology": {"matchLabels": {"topology.kubernetes.io/zone": "a"}}})
        };
        assert!(validate("CSIStorageCapacity", &cap("fast", "10Gi"), None).is_empty());
        assert!(has(
            &validate("CSIStorageCapacity", &cap("fast", "-1Gi"), None),
            r#"capacity: Invalid value: "-1Gi": must be greater than or equal to 0"#
        ));
        assert!(has(
            &validate(
                "CSIStorageCapacity",
                &cap("slow", "10Gi"),
                Some(&cap("fast", "10Gi"))
            ),
            r#"storageClassName: Invalid value: "slow": field is immutable"#
        ));
        assert!(validate(
            "CSIStorageCapacity",
            &cap("fast", "5Gi"),
            Some(&cap("fast", "10Gi"))
        )
        .is_empty());
    }
}
