//! Pod rules: spec, containers, volumes, env, resources, tolerations and the update restrictions.

use std::collections::{BTreeMap, HashSet};

use serde_json::{Map, Value};

use crate::api::quantity::{parse_quantity, Quantity, QuantityError};

use super::cluster::TAINT_EFFECTS;
use super::field_error::{render, FieldError};
use super::meta::validate_labels;
use super::names::{
    is_config_map_key, is_dns1123_label, is_dns1123_subdomain, is_env_var_name, is_qualified_name,
    is_valid_label_value, is_valid_port_name, is_valid_port_num, FILE_MODE_ERR, NON_NEGATIVE_ERR,
};
use super::pod_ephemeral::validate_ephemeral_containers;
use super::{
    arr_at, check_enum, field, int_at, obj_at, quantity_text, str_at, validate_resource_quantity,
    Errs,
};

pub(super) const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
pub(super) const PORT_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: [&str; 2] = ["File", "FallbackToLogsOnError"];
const TOLERATION_OPERATORS: [&str; 2] = ["Equal", "Exists"];
/// In upstream's checking order (the first present source wins, the rest are forbidden).
const VOLUME_SOURCES: [&str; 30] = [
    "emptyDir",
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// The fields upstream lets a pod update change, in its message wording.
pub const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

pub(super) fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, "spec", errs);
    // Ephemeral containers come only through the `ephemeralcontainers` subresource.
    if old.is_none() && !arr_at(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            "spec.ephemeralContainers",
            "cannot be set on create",
        ));
    }
    if let Some(old) = old {
        validate_pod_spec_update(spec, old.get("spec").unwrap_or(&Value::Null), errs);
    }
}

/// Upstream `ValidatePodSpec` (the parts users hit); `path` is e.g. `spec` or
/// `spec.template.spec`.
pub fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Errs) {
    let volumes = validate_volumes(arr_at(spec, "volumes"), &format!("{path}.volumes"), errs);
    let containers = arr_at(spec, "containers");
    let mut names = HashSet::new();
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    for (i, c) in containers.iter().enumerate() {
        validate_container(
            c,
            &format!("{path}.containers[{i}]"),
            &volumes,
            &mut names,
            errs,
        );
    }
    for (i, c) in arr_at(spec, "initContainers").iter().enumerate() {
        validate_container(
            c,
            &format!("{path}.initContainers[{i}]"),
            &volumes,
            &mut names,
            errs,
        );
    }
    validate_ephemeral_containers(spec, path, &volumes, errs);
    // Every other path is a template's (`spec.template.spec`, `template.spec`).
    if path != "spec" && !arr_at(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            format!("{path}.ephemeralContainers"),
            "ephemeral containers not allowed in pod template",
        ));
    }
    validate_container_restart_policies(spec, path, errs);
    check_enum(spec, "restartPolicy", path, &RESTART_POLICIES, errs);
    check_enum(spec, "dnsPolicy", path, &DNS_POLICIES, errs);
    validate_labels(
        obj_at(spec, "nodeSelector"),
        &format!("{path}.nodeSelector"),
        errs,
    );
    validate_pod_security_context(spec, path, errs);
    for key in ["serviceAccountName", "nodeName"] {
        let v = str_at(spec, key);
        if !v.is_empty() {
            for m in is_dns1123_subdomain(v) {
                errs.push(FieldError::invalid(format!("{path}.{key}"), v, m));
            }
        }
    }
    if let Some(d) = int_at(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&d) {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.activeDeadlineSeconds"),
                d.to_string(),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for (i, t) in arr_at(spec, "tolerations").iter().enumerate() {
        validate_toleration(t, &format!("{path}.tolerations[{i}]"), errs);
    }
    if let Some(res) = field(spec, "resources") {
        validate_resources(res, &format!("{path}.resources"), errs);
    }
    for (name, q) in obj_at(spec, "overhead").into_iter().flatten() {
        validate_resource_quantity(name, q, &format!("{path}.overhead[{name}]"), errs);
    }
}

/// Upstream's `validatePodSpecSecurityContext`: user and group IDs in range, and a
/// process namespace shared among the pod's containers cannot also be the node's.
/// (Upstream's internal type carries `hostPID` and `shareProcessNamespace` in the
/// security context, hence the error's path.)
fn validate_pod_security_context(spec: &Value, path: &str, errs: &mut Errs) {
    let sc_path = format!("{path}.securityContext");
    if let Some(sc) = field(spec, "securityContext") {
        for key in ["runAsUser", "runAsGroup", "fsGroup"] {
            check_id(int_at(sc, key), format!("{sc_path}.{key}"), errs);
        }
        for (i, gid) in arr_at(sc, "supplementalGroups").iter().enumerate() {
            check_id(
                gid.as_i64(),
                format!("{sc_path}.supplementalGroups[{i}]"),
                errs,
            );
        }
    }
    if spec["hostPID"] == Value::Bool(true) && spec["shareProcessNamespace"] == Value::Bool(true) {
        errs.push(FieldError::invalid_rendered(
            format!("{sc_path}.shareProcessNamespace"),
            "true".to_string(),
            "ShareProcessNamespace and HostPID cannot both be enabled",
        ));
    }
}

/// Upstream's `IsValidUserID` / `IsValidGroupID`: 0 to 2147483647.
fn check_id(id: Option<i64>, path: String, errs: &mut Errs) {
    if let Some(id) = id {
        if !(0..=i64::from(i32::MAX)).contains(&id) {
            errs.push(FieldError::invalid_rendered(
                path,
                id.to_string(),
                "must be between 0 and 2147483647, inclusive",
            ));
        }
    }
}

fn validate_volumes(volumes: &[Value], path: &str, errs: &mut Errs) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(vol, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else {
            let msgs = is_dns1123_label(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(format!("{idx}.name"), name, m));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{idx}.name"), name));
            }
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| field(vol, s).is_some())
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&idx, "must specify a volume type")),
            [first, rest @ ..] => {
                for extra in rest {
                    errs.push(FieldError::forbidden(
                        format!("{idx}.{extra}"),
                        "may not specify more than 1 volume type",
                    ));
                }
                validate_volume_source(first, &vol[*first], &format!("{idx}.{first}"), errs);
            }
        }
    }
    names
}

fn validate_volume_source(kind: &str, src: &Value, path: &str, errs: &mut Errs) {
    let required = |key: &str, errs: &mut Errs| {
        if str_at(src, key).is_empty() {
            errs.push(FieldError::required(format!("{path}.{key}"), ""));
        }
    };
    match kind {
        "hostPath" => required("path", errs),
        "secret" => required("secretName", errs),
        "configMap" => required("name", errs),
        "persistentVolumeClaim" => required("claimName", errs),
        "emptyDir" => {
            if let Some(q) = field(src, "sizeLimit").and_then(quantity_text) {
                match parse_quantity(&q) {
                    Err(_) => errs.push(FieldError::invalid(
                        format!("{path}.sizeLimit"),
                        &q,
                        QuantityError::FormatWrong.to_string(),
                    )),
                    Ok(limit) if limit.is_negative() => errs.push(FieldError::forbidden(
                        format!("{path}.sizeLimit"),
                        "SizeLimit field must be a valid resource quantity",
                    )),
                    Ok(_) => {}
                }
            }
        }
        "ephemeral" => {
            let claim = &src["volumeClaimTemplate"]["spec"];
            if let Some(res) = field(claim, "resources") {
                let path = format!("{path}.volumeClaimTemplate.spec.resources");
                validate_resources(res, &path, errs);
            }
        }
        _ => {}
    }
    if matches!(kind, "secret" | "configMap" | "downwardAPI" | "projected") {
        if let Some(mode) = int_at(src, "defaultMode") {
            if !(0..=0o777).contains(&mode) {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.defaultMode"),
                    mode.to_string(),
                    FILE_MODE_ERR,
                ));
            }
        }
    }
}

/// A container's own `restartPolicy` (upstream 1.32): only init containers may set
/// one, and only `Always` (a sidecar); only sidecars may have probes and lifecycle hooks
/// among init containers.
fn validate_container_restart_policies(spec: &Value, path: &str, errs: &mut Errs) {
    for (i, c) in arr_at(spec, "containers").iter().enumerate() {
        if field(c, "restartPolicy").is_some() {
            errs.push(FieldError::forbidden(
                format!("{path}.containers[{i}].restartPolicy"),
                "may not be set for non-init containers",
            ));
        }
    }
    for (i, c) in arr_at(spec, "initContainers").iter().enumerate() {
        let at = format!("{path}.initContainers[{i}]");
        match field(c, "restartPolicy") {
            None => {
                for f in [
                    "lifecycle",
                    "livenessProbe",
                    "readinessProbe",
                    "startupProbe",
                ] {
                    if field(c, f).is_some() {
                        errs.push(FieldError::forbidden(
                            format!("{at}.{f}"),
                            "may not be set for init containers without restartPolicy=Always",
                        ));
                    }
                }
            }
            Some(p) if p.as_str() == Some("Always") => {}
            Some(p) => errs.push(FieldError::not_supported(
                format!("{at}.restartPolicy"),
                p.as_str().unwrap_or(""),
                &["Always"],
            )),
        }
    }
}

pub(super) fn validate_container(
    c: &Value,
    path: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    errs: &mut Errs,
) {
    let name = str_at(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        let msgs = is_dns1123_label(name);
        if !msgs.is_empty() {
            for m in msgs {
                errs.push(FieldError::invalid(format!("{path}.name"), name, m));
            }
        } else if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        }
    }
    let image = str_at(c, "image");
    if image.is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{path}.image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    check_enum(c, "imagePullPolicy", path, &PULL_POLICIES, errs);
    check_enum(
        c,
        "terminationMessagePolicy",
        path,
        &TERMINATION_MESSAGE_POLICIES,
        errs,
    );
    validate_container_ports(arr_at(c, "ports"), &format!("{path}.ports"), errs);
    validate_env(arr_at(c, "env"), &format!("{path}.env"), errs);
    validate_volume_mounts(
        arr_at(c, "volumeMounts"),
        &format!("{path}.volumeMounts"),
        volumes,
        errs,
    );
    if let Some(res) = field(c, "resources") {
        validate_resources(res, &format!("{path}.resources"), errs);
    }
}

fn validate_container_ports(ports: &[Value], path: &str, errs: &mut Errs) {
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(p, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(format!("{idx}.name"), name, m));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{idx}.name"), name));
            }
        }
        match int_at(p, "containerPort").unwrap_or(0) {
            0 => errs.push(FieldError::required(format!("{idx}.containerPort"), "")),
            n => {
                for m in is_valid_port_num(n) {
                    errs.push(FieldError::invalid_rendered(
                        format!("{idx}.containerPort"),
                        n.to_string(),
                        m,
                    ));
                }
            }
        }
        if let Some(n) = int_at(p, "hostPort").filter(|n| *n != 0) {
            for m in is_valid_port_num(n) {
                errs.push(FieldError::invalid_rendered(
                    format!("{idx}.hostPort"),
                    n.to_string(),
                    m,
                ));
            }
        }
        check_enum(p, "protocol", &idx, &PORT_PROTOCOLS, errs);
    }
}

fn validate_env(env: &[Value], path: &str, errs: &mut Errs) {
    for (i, e) in env.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(e, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else {
            for m in is_env_var_name(name) {
                errs.push(FieldError::invalid(format!("{idx}.name"), name, m));
            }
        }
        let Some(from) = field(e, "valueFrom") else {
            continue;
        };
        let from_path = format!("{idx}.valueFrom");
        let sources = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .iter()
        .filter(|k| field(from, k).is_some())
        .count();
        if sources == 0 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_at(e, "value").is_empty() {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
        if let Some(fr) = field(from, "fieldRef") {
            if str_at(fr, "fieldPath").is_empty() {
                errs.push(FieldError::required(
                    format!("{from_path}.fieldRef.fieldPath"),
                    "",
                ));
            }
        }
        for key_ref in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = field(from, key_ref) {
                let key = str_at(r, "key");
                if key.is_empty() {
                    errs.push(FieldError::required(
                        format!("{from_path}.{key_ref}.key"),
                        "",
                    ));
                } else {
                    for m in is_config_map_key(key) {
                        errs.push(FieldError::invalid(
                            format!("{from_path}.{key_ref}.key"),
                            key,
                            m,
                        ));
                    }
                }
            }
        }
    }
}

fn validate_volume_mounts(
    mounts: &[Value],
    path: &str,
    volumes: &HashSet<String>,
    errs: &mut Errs,
) {
    let mut paths = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else if !volumes.contains(name) {
            errs.push(FieldError::not_found(format!("{idx}.name"), name));
        }
        // Upstream reports subPath errors at the list's path, not the item's.
        let sub_path = str_at(m, "subPath");
        if !sub_path.is_empty() {
            validate_local_descending_path(sub_path, &format!("{path}.subPath"), errs);
        }
        let sub_path_expr = str_at(m, "subPathExpr");
        if !sub_path_expr.is_empty() {
            if !sub_path.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{idx}.subPathExpr"),
                    sub_path_expr,
                    "subPathExpr and subPath are mutually exclusive",
                ));
            }
            validate_local_descending_path(sub_path_expr, &format!("{path}.subPathExpr"), errs);
        }
        let mount_path = str_at(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(format!("{idx}.mountPath"), ""));
        } else if !paths.insert(mount_path) {
            errs.push(FieldError::invalid(
                format!("{idx}.mountPath"),
                mount_path,
                "must be unique",
            ));
        }
    }
}

/// A path that must stay below a volume (upstream `validateLocalDescendingPath`):
/// relative, without a `..` component.
fn validate_local_descending_path(target: &str, path: &str, errs: &mut Errs) {
    if target.starts_with('/') {
        errs.push(FieldError::invalid(path, target, "must be a relative path"));
    }
    if target.split('/').any(|part| part == "..") {
        errs.push(FieldError::invalid(path, target, "must not contain '..'"));
    }
}

fn validate_resources(res: &Value, path: &str, errs: &mut Errs) {
    let parse_list = |key: &str, errs: &mut Errs| -> BTreeMap<String, (String, Quantity)> {
        let mut out = BTreeMap::new();
        for (name, q) in obj_at(res, key).into_iter().flatten() {
            let qpath = format!("{path}.{key}[{name}]");
            let Some(text) = quantity_text(q) else {
                errs.push(FieldError::invalid_rendered(
                    &qpath,
                    render(q),
                    QuantityError::FormatWrong.to_string(),
                ));
                continue;
            };
            match parse_quantity(&text) {
                Err(e) => errs.push(FieldError::invalid(&qpath, &text, e.to_string())),
                Ok(parsed) if parsed.is_negative() => {
                    errs.push(FieldError::invalid(&qpath, &text, NON_NEGATIVE_ERR))
                }
                Ok(parsed) => {
                    out.insert(name.clone(), (text, parsed));
                }
            }
        }
        out
    };
    let limits = parse_list("limits", errs);
    let requests = parse_list("requests", errs);
    for (name, (text, req)) in &requests {
        if let Some((limit_text, limit)) = limits.get(name) {
            if req > limit {
                errs.push(FieldError::invalid(
                    format!("{path}.requests"),
                    text,
                    format!("must be less than or equal to {name} limit of {limit_text}"),
                ));
            }
        }
    }
}

pub(super) fn validate_toleration(t: &Value, path: &str, errs: &mut Errs) {
    let key = str_at(t, "key");
    let operator = str_at(t, "operator");
    let effect = str_at(t, "effect");
    let value = str_at(t, "value");
    if !key.is_empty() {
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{path}.key"), key, m));
        }
    }
    if key.is_empty() && operator != "Exists" {
        errs.push(FieldError::invalid(
            format!("{path}.operator"),
            operator,
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        ));
    }
    if field(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
        errs.push(FieldError::invalid(
            format!("{path}.effect"),
            effect,
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
    match operator {
        "" | "Equal" => {
            let msgs = is_valid_label_value(value);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.operator"),
                    value,
                    msgs.join(";"),
                ));
            }
        }
        "Exists" => {
            if !value.is_empty() {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.operator"),
                    t.to_string(),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.operator"),
            other,
            &TOLERATION_OPERATORS,
        )),
    }
    if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
        errs.push(FieldError::not_supported(
            format!("{path}.effect"),
            effect,
            &TAINT_EFFECTS,
        ));
    }
}

/// Upstream `ValidatePodSpecUpdate`'s immutability rule: only images, the active
/// deadline, added tolerations and a negative grace period (to 1) may change.
fn validate_pod_spec_update(new: &Value, old: &Value, errs: &mut Errs) {
    let mut munged = new.clone();
    for list in ["containers", "initContainers"] {
        let old_list = arr_at(old, list);
        if let Some(items) = munged.get_mut(list).and_then(Value::as_array_mut) {
            if items.len() == old_list.len() {
                for (item, old_item) in items.iter_mut().zip(old_list) {
                    if let (Some(obj), Some(img)) = (item.as_object_mut(), old_item.get("image")) {
                        obj.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    let Some(m) = munged.as_object_mut() else {
        return;
    };
    set_or_remove(m, "activeDeadlineSeconds", old.get("activeDeadlineSeconds"));
    let old_tols = arr_at(old, "tolerations");
    let new_tols = arr_at(new, "tolerations");
    if old_tols.iter().all(|t| new_tols.contains(t)) {
        set_or_remove(m, "tolerations", old.get("tolerations"));
    }
    let old_grace = int_at(old, "terminationGracePeriodSeconds");
    if old_grace.is_some_and(|g| g < 0) && int_at(new, "terminationGracePeriodSeconds") == Some(1) {
        set_or_remove(
            m,
            "terminationGracePeriodSeconds",
            old.get("terminationGracePeriodSeconds"),
        );
    }
    if &munged != old {
        let diff = describe_diff(old, &munged, "spec");
        errs.push(FieldError::forbidden(
            "spec",
            format!("pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\n{diff}"),
        ));
    }
}

fn set_or_remove(m: &mut Map<String, Value>, key: &str, v: Option<&Value>) {
    match v {
        Some(v) => {
            m.insert(key.into(), v.clone());
        }
        None => {
            m.remove(key);
        }
    }
}

/// A short human description of where two values differ (`- old` / `+ new` per path).
pub(super) fn describe_diff(old: &Value, new: &Value, path: &str) -> String {
    let mut lines = Vec::new();
    diff_into(old, new, path, &mut lines);
    lines.join("\n")
}

fn diff_into(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                diff_into(
                    va,
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    out,
                );
            }
            for (k, vb) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                diff_into(&Value::Null, vb, &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff_into(va, vb, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            out.push(format!("  {path}:"));
            out.push(format!("-   {old}"));
            out.push(format!("+   {new}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::validate;
    use crate::api::validation::test_support::{good_pod_spec, has, has_prefix, messages, pod};
    use serde_json::json;

    #[test]
    fn valid_pod_passes() {
        assert_eq!(
            messages(&validate("Pod", &pod(good_pod_spec()), None)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn pod_security_context_ids_and_a_shared_process_namespace_with_host_pid() {
        let mut spec = good_pod_spec();
        spec["hostPID"] = json!(true);
        spec["shareProcessNamespace"] = json!(true);
        spec["securityContext"] = json!({
            "runAsUser": -1, "runAsGroup": 1000, "fsGroup": 2147483648_i64,
            "supplementalGroups": [1, -5]
        });
        let errs = validate("Pod", &pod(spec), None);
        assert_eq!(
            messages(&errs),
            vec![
                "spec.securityContext.runAsUser: Invalid value: -1: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.fsGroup: Invalid value: 2147483648: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.supplementalGroups[1]: Invalid value: -5: must be between 0 and 2147483647, inclusive",
                "spec.securityContext.shareProcessNamespace: Invalid value: true: ShareProcessNamespace and HostPID cannot both be enabled",
            ]
        );
        let mut template = good_pod_spec();
        template["hostPID"] = json!(true);
        template["shareProcessNamespace"] = json!(false);
        assert_eq!(
            messages(&validate("Pod", &pod(template), None)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn pod_requires_containers() {
        let errs = validate("Pod", &pod(json!({})), None);
        assert_eq!(messages(&errs), vec!["spec.containers: Required value"]);
    }

    #[test]
    fn container_names_and_images() {
        let spec = json!({
            "containers": [
                {"name": "", "image": "a"},
                {"name": "Bad_Name", "image": "a"},
                {"name": "app", "image": ""},
                {"name": "app", "image": "b"}
            ],
            "initContainers": [{"name": "app", "image": "c"}]
        });
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(&errs, "spec.containers[0].name: Required value"));
        assert!(has_prefix(
            &errs,
            "spec.containers[1].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label"
        ));
        assert!(has(&errs, "spec.containers[2].image: Required value"));
        assert!(has(
            &errs,
            "spec.containers[3].name: Duplicate value: \"app\""
        ));
        assert!(has(
            &errs,
            "spec.initContainers[0].name: Duplicate value: \"app\""
        ));
    }

    #[test]
    fn container_ports_are_checked() {
        let spec = json!({"containers": [{"name": "a", "image": "i", "ports": [
            {"containerPort": 0},
            {"containerPort": 70000, "protocol": "HTTP"},
            {"containerPort": 80, "hostPort": -1, "name": "web"},
            {"containerPort": 81, "name": "web"}
        ]}]});
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(
            &errs,
            "spec.containers[0].ports[0].containerPort: Required value"
        ));
        assert!(has(&errs, "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"));
        assert!(has(&errs, "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""));
        assert!(has(&errs, "spec.containers[0].ports[2].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive"));
        assert!(has(
            &errs,
            "spec.containers[0].ports[3].name: Duplicate value: \"web\""
        ));
    }

    #[test]
    fn restart_and_dns_policy_values() {
        let mut spec = good_pod_spec();
        spec["restartPolicy"] = json!("Sometimes");
        spec["dnsPolicy"] = json!("Nope");
        let errs = validate("Pod", &pod(spec.clone()), None);
        assert!(has(&errs, "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""));
        spec["restartPolicy"] = json!("Always");
        spec["containers"][0]["restartPolicy"] = json!("Always");
        spec["initContainers"] = json!([
            {"name": "sidecar", "image": "c", "restartPolicy": "Always",
             "readinessProbe": {"exec": {"command": ["true"]}}},
            {"name": "setup", "image": "c", "restartPolicy": "Never",
             "livenessProbe": {"exec": {"command": ["true"]}}},
        ]);
        let errs = validate("Pod", &pod(spec.clone()), None);
        assert!(has(
            &errs,
            "spec.containers[0].restartPolicy: Forbidden: may not be set for non-init containers"
        ));
        assert!(has(&errs, "spec.initContainers[1].restartPolicy: Unsupported value: \"Never\": supported values: \"Always\""));
        let all = messages(&errs);
        assert!(
            !all.iter().any(|m| m.starts_with("spec.initContainers[0]")),
            "a sidecar may have probes: {all:?}"
        );
        spec["initContainers"][1]
            .as_object_mut()
            .unwrap()
            .remove("restartPolicy");
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(&errs, "spec.initContainers[1].livenessProbe: Forbidden: may not be set for init containers without restartPolicy=Always"));
        assert!(has(&errs, "spec.dnsPolicy: Unsupported value: \"Nope\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""));
    }

    #[test]
    fn sub_paths_must_stay_inside_the_volume() {
        let spec = json!({
            "volumes": [{"name": "data", "emptyDir": {}}],
            "containers": [{"name": "a", "image": "i", "volumeMounts": [
                {"name": "data", "mountPath": "/a", "subPath": "ok/dir"},
                {"name": "data", "mountPath": "/b", "subPath": "../etc"},
                {"name": "data", "mountPath": "/c", "subPath": "/etc"},
                {"name": "data", "mountPath": "/d", "subPathExpr": "$(POD)/../x"},
                {"name": "data", "mountPath": "/e", "subPathExpr": "$(POD)", "subPath": "x"}
            ]}]
        });
        let errs = validate("Pod", &pod(spec), None);
        let mounts = "spec.containers[0].volumeMounts";
        assert!(has(
            &errs,
            &format!("{mounts}.subPath: Invalid value: \"../etc\": must not contain '..'")
        ));
        assert!(has(
            &errs,
            &format!("{mounts}.subPath: Invalid value: \"/etc\": must be a relative path")
        ));
        assert!(has(
            &errs,
            &format!("{mounts}.subPathExpr: Invalid value: \"$(POD)/../x\": must not contain '..'")
        ));
        assert!(has(&errs, &format!("{mounts}[4].subPathExpr: Invalid value: \"$(POD)\": subPathExpr and subPath are mutually exclusive")));
        assert_eq!(errs.len(), 4, "{errs:?}");
    }

    #[test]
    fn volumes_unique_single_source_and_mounted_by_name() {
        let spec = json!({
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "data", "emptyDir": {}},
                {"name": "none"},
                {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}},
                {"name": "cm", "configMap": {"name": "c", "defaultMode": 1000}},
                {"name": "sec", "secret": {}}
            ],
            "containers": [{"name": "a", "image": "i", "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "missing", "mountPath": "/m"},
                {"name": "cm", "mountPath": "/data"},
                {"name": "", "mountPath": ""}
            ]}]
        });
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(
            &errs,
            "spec.volumes[1].name: Duplicate value: \"data\""
        ));
        assert!(has(
            &errs,
            "spec.volumes[2]: Required value: must specify a volume type"
        ));
        assert!(has(
            &errs,
            "spec.volumes[3].hostPath: Forbidden: may not specify more than 1 volume type"
        ));
        assert!(has(&errs, "spec.volumes[4].configMap.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive"));
        assert!(has(
            &errs,
            "spec.volumes[5].secret.secretName: Required value"
        ));
        assert!(has(
            &errs,
            "spec.containers[0].volumeMounts[1].name: Not found: \"missing\""
        ));
        assert!(has(&errs, "spec.containers[0].volumeMounts[2].mountPath: Invalid value: \"/data\": must be unique"));
        assert!(has(
            &errs,
            "spec.containers[0].volumeMounts[3].name: Required value"
        ));
        assert!(has(
            &errs,
            "spec.containers[0].volumeMounts[3].mountPath: Required value"
        ));
    }

    #[test]
    fn env_names_and_sources() {
        let spec = json!({"containers": [{"name": "a", "image": "i", "env": [
            {"name": "OK", "value": "1"},
            {"name": ""},
            {"name": "A=B"},
            {"name": "X", "valueFrom": {}},
            {"name": "Y", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "Z", "valueFrom": {"fieldRef": {"fieldPath": "a"}, "secretKeyRef": {"name": "s", "key": "k"}}}
        ]}]});
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(&errs, "spec.containers[0].env[1].name: Required value"));
        assert!(has_prefix(&errs, "spec.containers[0].env[2].name: Invalid value: \"A=B\": a valid environment variable name"));
        assert!(has(&errs, "spec.containers[0].env[3].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
        assert!(has(&errs, "spec.containers[0].env[4].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty"));
        assert!(has(&errs, "spec.containers[0].env[5].valueFrom: Invalid value: \"\": may not have more than one field specified at a time"));
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }

    #[test]
    fn resources_requests_must_not_exceed_limits() {
        let spec = json!({"containers": [{"name": "a", "image": "i", "resources": {
            "limits": {"cpu": "500m", "memory": "128Mi"},
            "requests": {"cpu": "1", "memory": "100Mi"}
        }}]});
        let errs = validate("Pod", &pod(spec), None);
        assert_eq!(
            messages(&errs),
            vec!["spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"]
        );
    }

    #[test]
    fn pod_overhead_pod_resources_and_volume_sizes_are_quantities() {
        let pod = json!({"metadata": {"name": "p", "namespace": "default"}, "spec": {
        "containers": [{"name": "c", "image": "busybox"}],
        "overhead": {"cpu": "lots"},
        "resources": {"limits": {"memory": "0x10"}},
        "volumes": [
            {"name": "scratch", "emptyDir": {"sizeLimit": "-1Gi"}},
            {"name": "eph", "ephemeral": {"volumeClaimTemplate": {"spec": {"resources": {"requests": {"storage": "*"}}}}}},
        ]}});
        let regex = "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";
        assert_eq!(
            messages(&validate("Pod", &pod, None)),
            vec![
                "spec.volumes[0].emptyDir.sizeLimit: Forbidden: SizeLimit field must be a valid resource quantity".to_string(),
                format!("spec.volumes[1].ephemeral.volumeClaimTemplate.spec.resources.requests[storage]: Invalid value: \"*\": {regex}"),
                format!("spec.resources.limits[memory]: Invalid value: \"0x10\": {regex}"),
                format!("spec.overhead[cpu]: Invalid value: \"lots\": {regex}"),
            ]
        );
    }

    #[test]
    fn resources_quantity_syntax_is_checked() {
        let spec = json!({"containers": [{"name": "a", "image": "i", "resources": {
            "limits": {"cpu": "lots", "memory": 1024},
            "requests": {"memory": "-1Gi"}
        }}]});
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(&errs, "spec.containers[0].resources.limits[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"));
        assert!(has(&errs, "spec.containers[0].resources.requests[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0"));
        assert_eq!(
            errs.len(),
            2,
            "numeric JSON quantities are accepted: {errs:#?}"
        );
    }

    #[test]
    fn tolerations_are_checked() {
        let mut spec = good_pod_spec();
        spec["tolerations"] = json!([
            {"operator": "Equal", "value": "x"},
            {"key": "k", "operator": "Exists", "value": "v"},
            {"key": "k", "operator": "Maybe"},
            {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5},
            {"key": "k", "effect": "Sometimes"},
            {"operator": "Exists"}
        ]);
        let errs = validate("Pod", &pod(spec), None);
        assert!(has_prefix(&errs, "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty"));
        assert!(has_prefix(
            &errs,
            "spec.tolerations[1].operator: Invalid value: "
        ));
        assert!(has(&errs, "spec.tolerations[2].operator: Unsupported value: \"Maybe\": supported values: \"Equal\", \"Exists\""));
        assert!(has(&errs, "spec.tolerations[3].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"));
        assert!(has(&errs, "spec.tolerations[4].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""));
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }

    #[test]
    fn pod_update_may_change_image_deadline_and_add_tolerations() {
        let old = pod(good_pod_spec());
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("busybox:2");
        new["spec"]["activeDeadlineSeconds"] = json!(60);
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        new["metadata"]["labels"] = json!({"a": "b"});
        assert!(validate("Pod", &new, Some(&old)).is_empty());
    }

    #[test]
    fn pod_update_of_other_fields_is_forbidden() {
        let mut old_spec = good_pod_spec();
        old_spec["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        let old = pod(old_spec);
        let mut new = old.clone();
        new["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080);
        let errs = validate("Pod", &new, Some(&old));
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(msg.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{msg}");
        assert!(
            msg.contains("spec.containers[0].ports[0].containerPort"),
            "{msg}"
        );

        let mut removed = old.clone();
        removed["spec"]["tolerations"] = json!([]);
        assert_eq!(
            validate("Pod", &removed, Some(&old)).len(),
            1,
            "removing tolerations is forbidden"
        );
    }
}
