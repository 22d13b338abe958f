//! Interim CRD defaulting and validation (names, scope, versions): replaced by `api::crd`.

use serde_json::{json, Value};

use super::validation::FieldError;

pub fn default_crd(crd: &mut Value) {
    let kind = crd["spec"]["names"]["kind"]
        .as_str()
        .unwrap_or("")
        .to_string();
    if crd["spec"]["names"]["listKind"]
        .as_str()
        .unwrap_or("")
        .is_empty()
        && !kind.is_empty()
    {
        crd["spec"]["names"]["listKind"] = json!(format!("{kind}List"));
    }
    if crd["spec"]["names"]["singular"]
        .as_str()
        .unwrap_or("")
        .is_empty()
        && !kind.is_empty()
    {
        crd["spec"]["names"]["singular"] = json!(kind.to_lowercase());
    }
    if !crd["spec"]["conversion"].is_object() {
        crd["spec"]["conversion"] = json!({"strategy": "None"});
    }
}

pub fn validate_crd(crd: &Value, _old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    let spec = &crd["spec"];
    let group = spec["group"].as_str().unwrap_or("");
    let plural = spec["names"]["plural"].as_str().unwrap_or("");
    let name = crd["metadata"]["name"].as_str().unwrap_or("");
    if name != format!("{plural}.{group}") {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else if !group.contains('.') {
        errs.push(FieldError::invalid(
            "spec.group",
            group,
            "should be a domain with at least one dot",
        ));
    }
    if plural.is_empty() {
        errs.push(FieldError::required("spec.names.plural", ""));
    }
    if spec["names"]["kind"].as_str().unwrap_or("").is_empty() {
        errs.push(FieldError::required("spec.names.kind", ""));
    }
    match spec["scope"].as_str() {
        Some("Namespaced" | "Cluster") => {}
        other => errs.push(FieldError::invalid(
            "spec.scope",
            other.unwrap_or(""),
            "must be Namespaced or Cluster",
        )),
    }
    let versions = spec["versions"].as_array().cloned().unwrap_or_default();
    if versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            "null",
            "must have exactly one version marked as storage version",
        ));
    }
    let storage = versions.iter().filter(|v| v["storage"] == true).count();
    if storage != 1 && !versions.is_empty() {
        errs.push(FieldError::invalid(
            "spec.versions",
            "",
            "must have exactly one version marked as storage version",
        ));
    }
    errs
}
