//! ObjectMeta: name or generateName, labels, annotations.

use serde_json::{Map, Value};

use super::field_error::FieldError;
use super::names::{
    is_dns1123_label, is_qualified_name, is_valid_label_value, mask_trailing_dash, NameFn,
    TOTAL_ANNOTATION_SIZE_LIMIT,
};
use super::{arr_at, non_negative, obj_at, str_at, Errs};

pub(super) fn validate_object_meta(meta: &Value, name_fn: NameFn, errs: &mut Errs) {
    let name = str_at(meta, "name");
    let generate_name = str_at(meta, "generateName");
    if !generate_name.is_empty() {
        for m in name_fn(&mask_trailing_dash(generate_name)) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                generate_name,
                m,
            ));
        }
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for m in name_fn(name) {
            errs.push(FieldError::invalid("metadata.name", name, m));
        }
    }
    let namespace = str_at(meta, "namespace");
    if !namespace.is_empty() {
        for m in is_dns1123_label(namespace) {
            errs.push(FieldError::invalid("metadata.namespace", namespace, m));
        }
    }
    non_negative(meta, "generation", "metadata", errs);
    validate_labels(obj_at(meta, "labels"), "metadata.labels", errs);
    validate_annotations(obj_at(meta, "annotations"), "metadata.annotations", errs);
    for (i, f) in arr_at(meta, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        for m in is_qualified_name(f) {
            errs.push(FieldError::invalid(
                format!("metadata.finalizers[{i}]"),
                f,
                m,
            ));
        }
    }
}

/// Upstream `ValidateLabels`: keys are qualified names, values label values.
pub fn validate_labels(labels: Option<&Map<String, Value>>, path: &str, errs: &mut Errs) {
    for (k, v) in labels.into_iter().flatten() {
        for m in is_qualified_name(k) {
            errs.push(FieldError::invalid(path, k, m));
        }
        let v = v.as_str().unwrap_or("");
        for m in is_valid_label_value(v) {
            errs.push(FieldError::invalid(format!("{path}[{k}]"), v, m));
        }
    }
}

pub fn validate_annotations(ann: Option<&Map<String, Value>>, path: &str, errs: &mut Errs) {
    let mut total = 0;
    for (k, v) in ann.into_iter().flatten() {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, m));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

#[cfg(test)]
mod tests {
    use super::super::names::TOTAL_ANNOTATION_SIZE_LIMIT;
    use super::super::validate;
    use crate::api::validation::test_support::{good_pod_spec, has_prefix, messages};
    use serde_json::json;

    #[test]
    fn name_required_unless_generate_name() {
        let errs = validate("ConfigMap", &json!({"metadata": {}}), None);
        assert_eq!(
            messages(&errs),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert!(validate(
            "ConfigMap",
            &json!({"metadata": {"generateName": "web-"}}),
            None
        )
        .is_empty());
        let errs = validate(
            "ConfigMap",
            &json!({"metadata": {"generateName": "Web-"}}),
            None,
        );
        assert!(has_prefix(
            &errs,
            "metadata.generateName: Invalid value: \"Web-\""
        ));
    }

    #[test]
    fn name_format_depends_on_kind() {
        // dotted names are fine for subdomain kinds, not for namespaces or services
        let dotted = json!({"metadata": {"name": "a.b"}});
        assert!(validate(
            "Pod",
            &json!({"metadata": {"name": "a.b"}, "spec": good_pod_spec()}),
            None
        )
        .is_empty());
        assert!(validate("Node", &dotted, None).is_empty());
        assert!(has_prefix(
            &validate("Namespace", &dotted, None),
            "metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"
        ));
        let svc = json!({"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}});
        assert!(has_prefix(
            &validate("Service", &svc, None),
            "metadata.name: Invalid value: \"1svc\": a DNS-1035 label"
        ));
    }

    #[test]
    fn labels_and_annotations_are_checked() {
        let obj = json!({"metadata": {"name": "x", "labels": {"bad key!": "ok", "app": "-bad"}, "annotations": {"Example.com/Key": "fine", "no//": "x"}}});
        let errs = validate("ConfigMap", &obj, None);
        assert!(has_prefix(
            &errs,
            "metadata.labels: Invalid value: \"bad key!\": name part must consist of"
        ));
        assert!(has_prefix(
            &errs,
            "metadata.labels[app]: Invalid value: \"-bad\": a valid label must be"
        ));
        assert!(has_prefix(
            &errs,
            "metadata.annotations: Invalid value: \"no//\""
        ));
        assert_eq!(errs.len(), 3, "{errs:#?}");
    }

    #[test]
    fn annotations_total_size_is_limited() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let obj = json!({"metadata": {"name": "x", "annotations": {"a": big}}});
        assert_eq!(
            messages(&validate("ConfigMap", &obj, None)),
            vec!["metadata.annotations: Too long: may not be more than 262144 bytes"]
        );
    }
}
