//! Ephemeral container rules: upstream's `validateEphemeralContainers` (names unique
//! across every container list, only the allowed fields, a target that names a
//! container) and `ValidatePodEphemeralContainersUpdate` (what the
//! `pods/ephemeralcontainers` subresource may change).

use std::collections::HashSet;

use serde_json::Value;

use super::field_error::{go_quote, FieldError};
use super::meta::validate_object_meta;
use super::names::name_fn_for;
use super::pod::{describe_diff, validate_container, validate_pod_spec};
use super::{arr_at, str_at, Errs};

/// The fields of an ephemeral container that must stay unset (upstream's
/// `allowedEphemeralContainerFields` marks them `false`), in the field order of
/// `EphemeralContainerCommon`.
const FORBIDDEN_FIELDS: [&str; 8] = [
    "ports",
    "resources",
    "resizePolicy",
    "restartPolicy",
    "livenessProbe",
    "readinessProbe",
    "startupProbe",
    "lifecycle",
];

const CANNOT_BE_SET: &str = "cannot be set for an Ephemeral Container";

/// The annotation that marks a static (mirror) pod.
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// Whether a field holds Go's zero value: unset, null, an empty string, or (for the
/// `resources` struct) an object with nothing set.
fn is_zero(field: &str, v: Option<&Value>) -> bool {
    match v {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        Some(Value::Object(m)) if field == "resources" => m.values().all(Value::is_null),
        Some(_) => false,
    }
}

/// Upstream `validateEphemeralContainers` for the pod spec at `path`.
pub(super) fn validate_ephemeral_containers(
    spec: &Value,
    path: &str,
    volumes: &HashSet<String>,
    errs: &mut Errs,
) {
    let ephemeral = arr_at(spec, "ephemeralContainers");
    if ephemeral.is_empty() {
        return;
    }
    let others: HashSet<String> = ["containers", "initContainers"]
        .iter()
        .flat_map(|list| arr_at(spec, list))
        .map(|c| str_at(c, "name").to_string())
        .collect();
    let mut names = others.clone();
    for (i, c) in ephemeral.iter().enumerate() {
        let idx = format!("{path}.ephemeralContainers[{i}]");
        validate_container(c, &idx, volumes, &mut names, errs);
        let target = str_at(c, "targetContainerName");
        if !target.is_empty() && !others.contains(target) {
            errs.push(FieldError::not_found(
                format!("{idx}.targetContainerName"),
                target,
            ));
        }
        for field in FORBIDDEN_FIELDS {
            if !is_zero(field, c.get(field)) {
                errs.push(FieldError::forbidden(
                    format!("{idx}.{field}"),
                    CANNOT_BE_SET,
                ));
            }
        }
        for (j, m) in arr_at(c, "volumeMounts").iter().enumerate() {
            for field in ["subPath", "subPathExpr"] {
                if !str_at(m, field).is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{idx}.volumeMounts[{j}].{field}"),
                        CANNOT_BE_SET,
                    ));
                }
            }
        }
    }
}

/// Upstream `ValidatePodEphemeralContainersUpdate`: the pod as a whole stays valid,
/// a static pod takes none, and existing ephemeral containers are neither removed nor
/// changed (each is looked up by name: a patch may reorder them).
pub fn validate_pod_ephemeral_containers_update(new: &Value, old: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_object_meta(
        new.get("metadata").unwrap_or(&Value::Null),
        name_fn_for("Pod"),
        &mut errs,
    );
    validate_pod_spec(new.get("spec").unwrap_or(&Value::Null), "spec", &mut errs);
    if !old["metadata"]["annotations"][MIRROR_POD_ANNOTATION].is_null() {
        return vec![FieldError::forbidden(
            "",
            "static pods do not support ephemeral containers",
        )];
    }
    let new_list = arr_at(&new["spec"], "ephemeralContainers");
    for previous in arr_at(&old["spec"], "ephemeralContainers") {
        let name = str_at(previous, "name");
        match new_list.iter().find(|c| str_at(c, "name") == name) {
            None => errs.push(FieldError::forbidden(
                "spec.ephemeralContainers",
                format!(
                    "existing ephemeral containers {} may not be removed\n",
                    go_quote(name)
                ),
            )),
            Some(current) if current != previous => {
                let diff = describe_diff(previous, current, "");
                errs.push(FieldError::forbidden(
                    format!("spec.ephemeralContainers[{name}]"),
                    format!(
                        "existing ephemeral containers {} may not be changed\n{diff}",
                        go_quote(name)
                    ),
                ));
            }
            Some(_) => {}
        }
    }
    errs
}

#[cfg(test)]
mod tests {
    use serde_json::{json, Value};

    use super::*;
    use crate::api::validation::{validate, FieldError};

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(FieldError::to_string).collect()
    }

    fn running_pod(ephemeral: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"restartPolicy": "Always", "dnsPolicy": "ClusterFirst",
                "containers": [{"name": "app", "image": "nginx:1.27"}],
                "initContainers": [{"name": "init", "image": "busybox:1"}],
                "volumes": [{"name": "data", "emptyDir": {}}],
                "ephemeralContainers": ephemeral}})
    }

    #[test]
    fn ephemeral_containers_cannot_be_set_on_create_or_in_templates() {
        let pod = running_pod(json!([{"name": "debugger", "image": "busybox:1"}]));
        let errs = messages(&validate("Pod", &pod, None));
        assert_eq!(
            errs,
            ["spec.ephemeralContainers: Forbidden: cannot be set on create"]
        );
        let rs = json!({"metadata": {"name": "web", "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {
                "metadata": {"labels": {"a": "b"}},
                "spec": pod["spec"].clone()}}});
        let errs = messages(&validate("ReplicaSet", &rs, None));
        assert!(
            errs.contains(&"spec.template.spec.ephemeralContainers: Forbidden: ephemeral containers not allowed in pod template".to_string()),
            "{errs:?}"
        );
    }

    #[test]
    fn ephemeral_containers_take_only_the_allowed_fields_and_name_a_target() {
        let old = running_pod(json!([]));
        let new = running_pod(json!([
            {"name": "app", "image": "busybox:1"},
            {"name": "init", "image": "busybox:1"},
            {"name": "debugger", "image": "busybox:1", "targetContainerName": "missing",
             "ports": [{"containerPort": 80}], "resources": {"limits": {"cpu": "1"}},
             "restartPolicy": "Always", "readinessProbe": {"exec": {"command": ["true"]}},
             "lifecycle": {"preStop": {"exec": {"command": ["true"]}}},
             "volumeMounts": [{"name": "data", "mountPath": "/d", "subPath": "x"}]},
            {"name": "debugger", "image": "busybox:1", "resources": {}, "stdin": true, "tty": true,
             "targetContainerName": "app", "securityContext": {"privileged": true}},
        ]));
        let errs = messages(&validate_pod_ephemeral_containers_update(&new, &old));
        assert_eq!(
            errs,
            [
                "spec.ephemeralContainers[0].name: Duplicate value: \"app\"",
                "spec.ephemeralContainers[1].name: Duplicate value: \"init\"",
                "spec.ephemeralContainers[2].targetContainerName: Not found: \"missing\"",
                "spec.ephemeralContainers[2].ports: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].resources: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].restartPolicy: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].readinessProbe: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].lifecycle: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[2].volumeMounts[0].subPath: Forbidden: cannot be set for an Ephemeral Container",
                "spec.ephemeralContainers[3].name: Duplicate value: \"debugger\"",
            ]
        );
    }

    #[test]
    fn existing_ephemeral_containers_may_not_be_removed_or_changed() {
        let old = running_pod(json!([
            {"name": "one", "image": "busybox:1"},
            {"name": "two", "image": "busybox:1"},
        ]));
        let added = running_pod(json!([
            {"name": "two", "image": "busybox:1"},
            {"name": "one", "image": "busybox:1"},
            {"name": "three", "image": "busybox:1", "targetContainerName": "app"},
        ]));
        assert!(
            validate_pod_ephemeral_containers_update(&added, &old).is_empty(),
            "reordered and added"
        );
        let changed = running_pod(json!([{"name": "one", "image": "busybox:2"}]));
        let errs = messages(&validate_pod_ephemeral_containers_update(&changed, &old));
        assert_eq!(errs.len(), 2, "{errs:?}");
        assert_eq!(
            errs[0],
            "spec.ephemeralContainers[one]: Forbidden: existing ephemeral containers \"one\" may not be changed\n  .image:\n-   \"busybox:1\"\n+   \"busybox:2\""
        );
        assert_eq!(
            errs[1],
            "spec.ephemeralContainers: Forbidden: existing ephemeral containers \"two\" may not be removed\n"
        );
        let mut mirror = old.clone();
        mirror["metadata"]["annotations"] = json!({MIRROR_POD_ANNOTATION: "x"});
        let errs = messages(&validate_pod_ephemeral_containers_update(&added, &mirror));
        assert_eq!(
            errs,
            [": Forbidden: static pods do not support ephemeral containers"]
        );
    }
}
