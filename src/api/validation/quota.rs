//! ResourceQuota and LimitRange rules (upstream `ValidateResourceQuota`,
//! `ValidateLimitRange`): standard or qualified resource names, quantities that are
//! valid and not negative, whole numbers for object counts, known scopes that fit the
//! resources they limit, and LimitRange items whose min ≤ default request ≤ default ≤
//! max, with a limit/request ratio of at least 1.

use serde_json::Value;

use super::field_error::FieldError;
use super::{
    arr_at, names, obj_at, parse_quantity, quantity_text, str_at, validate_resource_quantity, Errs,
};
use crate::api::limit_range::TYPES;
use crate::api::quantity::Quantity;
use crate::api::quota::{scope_allows, SCOPES};

/// Quota resource names that need no `/` (upstream `standardQuotaResources` and the
/// compute names quota accepts).
const STANDARD_QUOTA_RESOURCES: [&str; 19] = [
    "cpu",
    "memory",
    "ephemeral-storage",
    "requests.cpu",
    "requests.memory",
    "requests.storage",
    "requests.ephemeral-storage",
    "limits.cpu",
    "limits.memory",
    "limits.ephemeral-storage",
    "pods",
    "services",
    "replicationcontrollers",
    "resourcequotas",
    "secrets",
    "configmaps",
    "persistentvolumeclaims",
    "services.nodeports",
    "services.loadbalancers",
];

/// Quota resources counted in whole objects.
fn is_count(resource: &str) -> bool {
    resource.starts_with("count/")
        || matches!(
            resource,
            "pods"
                | "services"
                | "replicationcontrollers"
                | "resourcequotas"
                | "secrets"
                | "configmaps"
                | "persistentvolumeclaims"
                | "services.nodeports"
                | "services.loadbalancers"
        )
        || resource.ends_with("/persistentvolumeclaims")
}

fn standard_quota_resource(name: &str) -> bool {
    STANDARD_QUOTA_RESOURCES.contains(&name)
        || name.starts_with("hugepages-")
        || name.starts_with("requests.hugepages-")
}

fn validate_hard(hard: &Value, path: &str, errs: &mut Errs) {
    for (name, value) in hard.as_object().into_iter().flatten() {
        let key_path = format!("{path}[{name}]");
        let problems = names::is_qualified_name(name);
        if !problems.is_empty() {
            for p in problems {
                errs.push(FieldError::invalid(&key_path, name, p));
            }
            continue;
        }
        if !name.contains('/') && !standard_quota_resource(name) {
            errs.push(FieldError::invalid(
                &key_path,
                name,
                "must be a standard resource for quota",
            ));
            continue;
        }
        validate_resource_quantity(name, value, &key_path, errs);
        if is_count(name) && name != "pods" {
            if let Some(q) = quantity_text(value).and_then(|t| parse_quantity(&t).ok()) {
                if q.milli_value() % 1000 != 0 {
                    errs.push(FieldError::invalid(
                        &key_path,
                        &quantity_text(value).unwrap_or_default(),
                        "must be an integer",
                    ));
                }
            }
        }
    }
}

pub(super) fn validate_resource_quota(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_hard(&spec["hard"], "spec.hard", errs);
    validate_hard(&obj["status"]["hard"], "status.hard", errs);
    validate_hard(&obj["status"]["used"], "status.used", errs);
    let mut scopes: Vec<&str> = Vec::new();
    for (i, s) in arr_at(spec, "scopes").iter().enumerate() {
        let scope = s.as_str().unwrap_or("");
        if !SCOPES.contains(&scope) {
            errs.push(FieldError::not_supported(
                format!("spec.scopes[{i}]"),
                scope,
                &SCOPES,
            ));
        } else {
            scopes.push(scope);
        }
    }
    let selector = &spec["scopeSelector"];
    for (i, e) in arr_at(selector, "matchExpressions").iter().enumerate() {
        let path = format!("spec.scopeSelector.matchExpressions[{i}]");
        let scope = str_at(e, "scopeName");
        if !SCOPES.contains(&scope) {
            errs.push(FieldError::not_supported(
                format!("{path}.scopeName"),
                scope,
                &SCOPES,
            ));
            continue;
        }
        scopes.push(scope);
        let operator = str_at(e, "operator");
        let values = arr_at(e, "values");
        match operator {
            "In" | "NotIn" if scope == "PriorityClass" && values.is_empty() => {
                errs.push(FieldError::required(
                    format!("{path}.values"),
                    "must be at least one value when `operator` is 'In' or 'NotIn' for scope selector",
                ))
            }
            "In" | "NotIn" if scope != "PriorityClass" => errs.push(FieldError::invalid(
                format!("{path}.operator"),
                operator,
                "must be 'Exist' when scope is any of ResourceQuotaScopeTerminating, ResourceQuotaScopeNotTerminating, ResourceQuotaScopeBestEffort, ResourceQuotaScopeNotBestEffort or ResourceQuotaScopeCrossNamespacePodAffinity",
            )),
            "Exists" | "DoesNotExist" if !values.is_empty() => {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.values"),
                    super::field_error::render(&e["values"]),
                    "must be no value when `operator` is 'Exist' or 'DoesNotExist' for scope selector",
                ))
            }
            "In" | "NotIn" | "Exists" | "DoesNotExist" => {}
            other => errs.push(FieldError::not_supported(
                format!("{path}.operator"),
                other,
                &["DoesNotExist", "Exists", "In", "NotIn"],
            )),
        }
    }
    for (a, b) in [
        ("Terminating", "NotTerminating"),
        ("BestEffort", "NotBestEffort"),
    ] {
        if scopes.contains(&a) && scopes.contains(&b) {
            errs.push(FieldError::invalid_rendered(
                "spec.scopes",
                format!("{scopes:?}").replace('"', "").replace(',', ""),
                "conflicting scopes",
            ));
        }
    }
    for name in obj_at(spec, "hard").into_iter().flatten().map(|(k, _)| k) {
        if scopes.iter().any(|s| !scope_allows(s, name)) {
            errs.push(FieldError::invalid(
                format!("spec.hard[{name}]"),
                name,
                "unsupported scope applied to resource",
            ));
        }
    }
}

fn quantities(item: &Value, key: &str) -> Vec<(String, String, Quantity)> {
    obj_at(item, key)
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| {
            let text = quantity_text(v)?;
            Some((k.clone(), text.clone(), parse_quantity(&text).ok()?))
        })
        .collect()
}

pub(super) fn validate_limit_range(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for (i, item) in arr_at(spec, "limits").iter().enumerate() {
        let path = format!("spec.limits[{i}]");
        let ty = str_at(item, "type");
        if ty.is_empty() {
            errs.push(FieldError::required(format!("{path}.type"), ""));
        } else if !TYPES.contains(&ty) && !ty.contains('/') {
            errs.push(FieldError::not_supported(
                format!("{path}.type"),
                ty,
                &TYPES,
            ));
        }
        for key in crate::api::limit_range::QUANTITY_MAPS {
            for (name, value) in obj_at(item, key).into_iter().flatten() {
                validate_resource_quantity(name, value, &format!("{path}.{key}[{name}]"), errs);
            }
        }
        if ty == "Pod" {
            for key in ["default", "defaultRequest"] {
                if obj_at(item, key).is_some_and(|m| !m.is_empty()) {
                    errs.push(FieldError::forbidden(
                        format!("{path}.{key}"),
                        "may not be specified when `type` is 'Pod'",
                    ));
                }
            }
        }
        if ty == "PersistentVolumeClaim" {
            for (name, _, _) in quantities(item, "min")
                .iter()
                .chain(&quantities(item, "max"))
            {
                if name != "storage" {
                    errs.push(FieldError::not_supported(
                        format!("{path}.min/max[{name}]"),
                        name,
                        &["storage"],
                    ));
                }
            }
        }
        let get = |key: &str, name: &str| {
            quantities(item, key)
                .into_iter()
                .find(|(n, _, _)| n == name)
                .map(|(_, text, q)| (text, q))
        };
        let mut names: Vec<String> = crate::api::limit_range::QUANTITY_MAPS
            .iter()
            .flat_map(|k| quantities(item, k).into_iter().map(|(n, _, _)| n))
            .collect();
        names.sort();
        names.dedup();
        for name in names {
            let (min, max) = (get("min", &name), get("max", &name));
            let (default, request) = (get("default", &name), get("defaultRequest", &name));
            let ratio = get("maxLimitRequestRatio", &name);
            let at = |key: &str| format!("{path}.{key}[{name}]");
            if let (Some((min_t, min_q)), Some((max_t, max_q))) = (&min, &max) {
                if min_q > max_q {
                    errs.push(FieldError::invalid(
                        at("min"),
                        min_t,
                        format!("min value {min_t} is greater than max value {max_t}"),
                    ));
                }
            }
            if let Some((req_t, req_q)) = &request {
                if let Some((min_t, min_q)) = &min {
                    if min_q > req_q {
                        errs.push(FieldError::invalid(
                            at("defaultRequest"),
                            req_t,
                            format!(
                                "min value {min_t} is greater than default request value {req_t}"
                            ),
                        ));
                    }
                }
                if let Some((max_t, max_q)) = &max {
                    if req_q > max_q {
                        errs.push(FieldError::invalid(
                            at("defaultRequest"),
                            req_t,
                            format!(
                                "default request value {req_t} is greater than max value {max_t}"
                            ),
                        ));
                    }
                }
                if let Some((def_t, def_q)) = &default {
                    if req_q > def_q {
                        errs.push(FieldError::invalid(
                            at("defaultRequest"),
                            req_t,
                            format!("default request value {req_t} is greater than default limit value {def_t}"),
                        ));
                    }
                }
            }
            if let Some((def_t, def_q)) = &default {
                if let Some((max_t, max_q)) = &max {
                    if def_q > max_q {
                        errs.push(FieldError::invalid(
                            at("default"),
                            def_t,
                            format!("default value {def_t} is greater than max value {max_t}"),
                        ));
                    }
                }
                if let Some((min_t, min_q)) = &min {
                    if min_q > def_q {
                        errs.push(FieldError::invalid(
                            at("default"),
                            def_t,
                            format!("min value {min_t} is greater than default value {def_t}"),
                        ));
                    }
                }
            }
            if let Some((ratio_t, ratio_q)) = &ratio {
                if ratio_q.milli_value() < 1000 {
                    errs.push(FieldError::invalid(
                        at("maxLimitRequestRatio"),
                        ratio_t,
                        format!("ratio {ratio_t} is less than 1"),
                    ));
                }
                if let (Some((_, min_q)), Some((_, max_q))) = (&min, &max) {
                    if !min_q.is_zero() {
                        let allowed = max_q.milli_value() as f64 / min_q.milli_value() as f64;
                        if ratio_q.milli_value() as f64 / 1000.0 > allowed {
                            errs.push(FieldError::invalid(
                                at("maxLimitRequestRatio"),
                                ratio_t,
                                format!("ratio {ratio_t} is greater than max/min = {allowed:.6}"),
                            ));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::super::validate;

    fn messages(kind: &str, obj: serde_json::Value) -> Vec<String> {
        validate(kind, &obj, None)
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn quotas_take_standard_or_qualified_names_and_whole_counts() {
        let ok = json!({"metadata": {"name": "q", "namespace": "d"}, "spec": {"hard": {
            "pods": "10", "requests.cpu": "1500m", "count/deployments.apps": "3",
            "gold.storageclass.storage.k8s.io/requests.storage": "10Gi"}}});
        assert!(messages("ResourceQuota", ok).is_empty());
        let bad = json!({"metadata": {"name": "q", "namespace": "d"}, "spec": {"hard": {
            "pods": "1.5", "widgets": "1", "memory": "-1Gi"}}});
        let m = messages("ResourceQuota", bad);
        assert!(
            m.iter()
                .any(|e| e == "spec.hard[pods]: Invalid value: \"1.5\": must be an integer"),
            "{m:?}"
        );
        assert!(m.iter().any(|e| e == "spec.hard[widgets]: Invalid value: \"widgets\": must be a standard resource for quota"), "{m:?}");
        assert!(
            m.iter().any(|e| e.starts_with(
                "spec.hard[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0"
            )),
            "{m:?}"
        );
    }

    #[test]
    fn quota_scopes_are_known_and_fit_their_resources() {
        let q = json!({"metadata": {"name": "q", "namespace": "d"}, "spec": {
            "hard": {"requests.cpu": "1"}, "scopes": ["BestEffort", "Sometimes"]}});
        let m = messages("ResourceQuota", q);
        assert!(
            m.iter()
                .any(|e| e.starts_with("spec.scopes[1]: Unsupported value: \"Sometimes\"")),
            "{m:?}"
        );
        assert!(m.iter().any(|e| e == "spec.hard[requests.cpu]: Invalid value: \"requests.cpu\": unsupported scope applied to resource"), "{m:?}");
        let conflicting = json!({"metadata": {"name": "q", "namespace": "d"}, "spec": {
            "hard": {"pods": "1"}, "scopes": ["Terminating", "NotTerminating"]}});
        let m = messages("ResourceQuota", conflicting);
        assert!(m.iter().any(|e| e.contains("conflicting scopes")), "{m:?}");
    }

    #[test]
    fn limit_range_bounds_are_ordered() {
        let bad = json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"limits": [
            {"type": "Container", "min": {"cpu": "2"}, "max": {"cpu": "1"}, "maxLimitRequestRatio": {"memory": "500m"}},
            {"type": "Pod", "default": {"cpu": "1"}},
            {"type": "Widget"}]}});
        let m = messages("LimitRange", bad);
        assert!(m.iter().any(|e| e == "spec.limits[0].min[cpu]: Invalid value: \"2\": min value 2 is greater than max value 1"), "{m:?}");
        assert!(m.iter().any(|e| e == "spec.limits[0].maxLimitRequestRatio[memory]: Invalid value: \"500m\": ratio 500m is less than 1"), "{m:?}");
        assert!(
            m.iter().any(|e| e
                == "spec.limits[1].default: Forbidden: may not be specified when `type` is 'Pod'"),
            "{m:?}"
        );
        assert!(
            m.iter()
                .any(|e| e.starts_with("spec.limits[2].type: Unsupported value: \"Widget\"")),
            "{m:?}"
        );
        let ok = json!({"metadata": {"name": "l", "namespace": "d"}, "spec": {"limits": [
            {"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"},
             "default": {"cpu": "500m"}, "defaultRequest": {"cpu": "200m"}}]}});
        assert!(messages("LimitRange", ok).is_empty());
    }
}
