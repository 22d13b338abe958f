//! RuntimeClass (node.k8s.io/v1, upstream `pkg/apis/node/validation`, v1.32) and the
//! core PodTemplate (upstream `ValidatePodTemplate`).

use serde_json::Value;

use super::field_error::FieldError;
use super::meta::{validate_annotations, validate_labels};
use super::names::{is_dns1123_label, FIELD_IMMUTABLE};
use super::pod::{validate_pod_spec, validate_toleration};
use super::{arr_at, field, obj_at, str_at, validate_resource_quantity, Errs};

/// Upstream `ValidateRuntimeClass` and `ValidateRuntimeClassUpdate`: the handler is a
/// DNS label and never changes; the overhead is a set of non-negative quantities
/// (checked as a container's limits, hence upstream's `overhead.limits[…]` paths); the
/// scheduling node selector holds valid labels and its tolerations are valid and
/// unique.
pub(super) fn validate_runtime_class(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let handler = str_at(obj, "handler");
    for m in is_dns1123_label(handler) {
        errs.push(FieldError::invalid("handler", handler, m));
    }
    if let Some(fixed) = field(obj, "overhead").and_then(|o| obj_at(o, "podFixed")) {
        for (resource, quantity) in fixed {
            let path = format!("overhead.limits[{resource}]");
            validate_resource_quantity(resource, quantity, &path, errs);
        }
    }
    if let Some(scheduling) = field(obj, "scheduling") {
        validate_labels(
            obj_at(scheduling, "nodeSelector"),
            "scheduling.nodeSelector",
            errs,
        );
        let tolerations = arr_at(scheduling, "tolerations");
        for (i, t) in tolerations.iter().enumerate() {
            let path = format!("scheduling.tolerations[{i}]");
            validate_toleration(t, &path, errs);
            let same = |u: &Value| {
                ["key", "operator", "value", "effect"]
                    .iter()
                    .all(|k| str_at(u, k) == str_at(t, k))
            };
            if tolerations[..i].iter().any(same) {
                errs.push(FieldError::duplicate_rendered(path, t.to_string()));
            }
        }
    }
    if let Some(old) = old {
        let old_handler = str_at(old, "handler");
        if handler != old_handler {
            errs.push(FieldError::invalid("handler", handler, FIELD_IMMUTABLE));
        }
    }
}

/// Upstream `ValidatePodTemplate` (metadata is checked by the caller): the template's
/// labels, annotations and pod spec. Updates have no rules of their own.
pub(super) fn validate_pod_template_object(obj: &Value, errs: &mut Errs) {
    let template = obj.get("template").unwrap_or(&Value::Null);
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    validate_labels(obj_at(meta, "labels"), "template.labels", errs);
    validate_annotations(obj_at(meta, "annotations"), "template.annotations", errs);
    let spec = template.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, "template.spec", errs);
    if !arr_at(spec, "ephemeralContainers").is_empty() {
        errs.push(FieldError::forbidden(
            "template.spec.ephemeralContainers",
            "ephemeral containers not allowed in pod template",
        ));
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::test_support::{has, has_prefix, messages};
    use super::super::validate;

    #[test]
    fn runtime_classes_are_checked_as_upstream() {
        let rc = json!({"metadata": {"name": "nvidia"}, "handler": "nvidia",
            "overhead": {"podFixed": {"cpu": "250m", "memory": "64Mi"}},
            "scheduling": {"nodeSelector": {"gpu": "true"},
                "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}});
        assert_eq!(
            messages(&validate("RuntimeClass", &rc, None)),
            Vec::<String>::new()
        );
        let bad = json!({"metadata": {"name": "x"}, "handler": "Run_C",
            "overhead": {"podFixed": {"cpu": "-1"}},
            "scheduling": {"nodeSelector": {"bad key!": "v"}, "tolerations": [
                {"key": "a", "operator": "Exists"}, {"key": "a", "operator": "Exists"}]}});
        let errs = validate("RuntimeClass", &bad, None);
        assert!(has_prefix(
            &errs,
            r#"handler: Invalid value: "Run_C": a lowercase RFC 1123 label must consist of"#
        ));
        assert!(has(
            &errs,
            r#"overhead.limits[cpu]: Invalid value: "-1": must be greater than or equal to 0"#
        ));
        assert!(has_prefix(
            &errs,
            r#"scheduling.nodeSelector: Invalid value: "bad key!""#
        ));
        assert!(has_prefix(
            &errs,
            "scheduling.tolerations[1]: Duplicate value:"
        ));
    }

    #[test]
    fn runtime_class_handler_is_immutable() {
        let old = json!({"metadata": {"name": "rc"}, "handler": "runc"});
        let new = json!({"metadata": {"name": "rc"}, "handler": "crun"});
        assert_eq!(
            messages(&validate("RuntimeClass", &new, Some(&old))),
            [r#"handler: Invalid value: "crun": field is immutable"#]
        );
        let mut scheduled = old.clone();
        scheduled["scheduling"] = json!({"nodeSelector": {"a": "b"}});
        assert!(validate("RuntimeClass", &scheduled, Some(&old)).is_empty());
    }

    #[test]
    fn pod_templates_validate_their_pod_spec() {
        let pt = json!({"metadata": {"name": "t", "namespace": "default"}, "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx", "imagePullPolicy": "Always",
                "terminationMessagePolicy": "File"}],
                "restartPolicy": "Always", "dnsPolicy": "ClusterFirst"}}});
        assert_eq!(
            messages(&validate("PodTemplate", &pt, None)),
            Vec::<String>::new()
        );
        let empty =
            json!({"metadata": {"name": "t", "namespace": "default"}, "template": {"spec": {}}});
        assert!(has(
            &validate("PodTemplate", &empty, None),
            "template.spec.containers: Required value"
        ));
    }
}
