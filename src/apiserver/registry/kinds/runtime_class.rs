//! RuntimeClass rules (node.k8s.io/v1, cluster-scoped; upstream
//! `pkg/registry/node/runtimeclass`) and upstream's RuntimeClass admission of new pods
//! ([`admit_pod`]): a pod naming a class that does not exist is refused, and the
//! class's overhead and scheduling constraints are written into the pod.

use serde_json::{json, Map, Value};

use crate::api::object;
use crate::api::quantity::parse_quantity;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};

pub struct RuntimeClassStrategy;

pub fn runtime_classes() -> &'static ResourceDef {
    resources::by_plural("node.k8s.io", "v1", "runtimeclasses").expect("served")
}

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

impl Strategy for RuntimeClassStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::node::v1::RuntimeClass>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::RUNTIME_CLASS
    }
}

/// Upstream's RuntimeClass admission of a new pod (its mutating `Admit` and validating
/// `Validate` halves): a pod naming a class must find it; the class's
/// `overhead.podFixed` becomes `spec.overhead` (a pod bringing a different one, or one
/// without a class that defines it, is refused); its `scheduling.nodeSelector` is
/// merged into the pod's (a conflicting value is refused) and its tolerations merged
/// as upstream's `MergeTolerations` does.
pub fn admit_pod(cx: &Context, pod: &mut Value) -> Result<(), ApiError> {
    let pod_name = object::name(pod).to_string();
    let forbidden = |why: String| ApiError::admission_forbidden(pods(), &pod_name, &why);
    let class = match pod["spec"]["runtimeClassName"].as_str() {
        None => None,
        Some(name) => match cx.stored(runtime_classes(), None, name) {
            Some(class) => Some(class),
            None => {
                return Err(forbidden(format!(
                    "pod rejected: RuntimeClass {name:?} not found"
                )))
            }
        },
    };
    let spec = &mut pod["spec"];
    let fixed = class
        .as_ref()
        .and_then(|c| c["overhead"]["podFixed"].as_object());
    match fixed {
        Some(fixed) => {
            let own = spec["overhead"].as_object().filter(|o| !o.is_empty());
            if own.is_some_and(|own| !same_quantities(own, fixed)) {
                return Err(forbidden(
                    "pod rejected: Pod's Overhead doesn't match RuntimeClass's defined Overhead"
                        .into(),
                ));
            }
            spec["overhead"] = Value::Object(fixed.clone());
        }
        None if spec.get("overhead").is_some_and(|o| !o.is_null()) => {
            return Err(forbidden(
                "pod rejected: Pod Overhead set without corresponding RuntimeClass defined Overhead"
                    .into(),
            ));
        }
        None => {}
    }
    let Some(scheduling) = class
        .as_ref()
        .map(|c| &c["scheduling"])
        .filter(|s| s.is_object())
    else {
        return Ok(());
    };
    if let Some(selector) = scheduling["nodeSelector"].as_object() {
        let merged =
            merge_node_selector(spec["nodeSelector"].as_object(), selector).map_err(forbidden)?;
        spec["nodeSelector"] = Value::Object(merged);
    }
    let own = spec["tolerations"].as_array().cloned().unwrap_or_default();
    let extra = scheduling["tolerations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let merged = merge_tolerations(own, extra);
    if !merged.is_empty() {
        spec["tolerations"] = json!(merged);
    }
    Ok(())
}

/// Whether two resource lists hold the same resources with equal quantities (Go's
/// semantic equality: `1000m` equals `1`).
fn same_quantities(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let quantity = |v: &Value| v.as_str().and_then(|s| parse_quantity(s).ok());
    a.len() == b.len()
        && a.iter().all(|(k, v)| {
            b.get(k)
                .is_some_and(|w| quantity(v).is_some() && quantity(v) == quantity(w))
        })
}

/// The pod's node selector with the class's added; a key the pod sets to another value
/// is a conflict (upstream's message).
fn merge_node_selector(
    own: Option<&Map<String, Value>>,
    class: &Map<String, Value>,
) -> Result<Map<String, Value>, String> {
    let Some(own) = own else {
        return Ok(class.clone());
    };
    let mut merged = own.clone();
    for (key, value) in class {
        let class_value = value.as_str().unwrap_or("");
        if let Some(pod_value) = own.get(key).and_then(Value::as_str) {
            if pod_value != class_value {
                return Err(format!(
                    "conflict: runtimeClass.scheduling.nodeSelector[{key}] = {class_value}; pod.spec.nodeSelector[{key}] = {pod_value}"
                ));
            }
        }
        merged.insert(key.clone(), value.clone());
    }
    Ok(merged)
}

/// Upstream `tolerations.MergeTolerations`: both lists, minus any toleration another
/// one already covers (of equal ones the first is kept).
fn merge_tolerations(first: Vec<Value>, second: Vec<Value>) -> Vec<Value> {
    let all: Vec<Value> = first.into_iter().chain(second).collect();
    let mut merged: Vec<Value> = Vec::new();
    for (i, t) in all.iter().enumerate() {
        if merged.iter().any(|m| is_superset(m, t)) {
            continue;
        }
        if all[i + 1..]
            .iter()
            .any(|later| later != t && is_superset(later, t))
        {
            continue;
        }
        merged.push(t.clone());
    }
    merged
}

/// Upstream `isSuperset`: whether `ss` tolerates everything `t` does.
fn is_superset(ss: &Value, t: &Value) -> bool {
    if ss == t {
        return true;
    }
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let matches_all_keys = s(ss, "key").is_empty() && s(ss, "operator") == "Exists";
    if s(t, "key") != s(ss, "key") && !matches_all_keys {
        return false;
    }
    if s(t, "effect") != s(ss, "effect") && !s(ss, "effect").is_empty() {
        return false;
    }
    if s(ss, "effect") == "NoExecute" {
        if let Some(limit) = ss["tolerationSeconds"].as_i64() {
            match t["tolerationSeconds"].as_i64() {
                Some(own) if own <= limit => {}
                _ => return false,
            }
        }
    }
    match s(ss, "operator").as_str() {
        "" | "Equal" => s(t, "operator") == "Equal" && s(t, "value") == s(ss, "value"),
        "Exists" => true,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_selectors_merge_or_conflict_as_upstream() {
        let class = json!({"gpu": "nvidia"});
        let class = class.as_object().unwrap();
        assert_eq!(
            Value::Object(merge_node_selector(None, class).unwrap()),
            json!({"gpu": "nvidia"})
        );
        let own = json!({"zone": "a"});
        assert_eq!(
            Value::Object(merge_node_selector(own.as_object(), class).unwrap()),
            json!({"zone": "a", "gpu": "nvidia"})
        );
        let clash = json!({"gpu": "amd"});
        assert_eq!(
            merge_node_selector(clash.as_object(), class).unwrap_err(),
            "conflict: runtimeClass.scheduling.nodeSelector[gpu] = nvidia; pod.spec.nodeSelector[gpu] = amd"
        );
    }

    #[test]
    fn tolerations_merge_dropping_covered_ones() {
        let own =
            vec![json!({"key": "gpu", "operator": "Equal", "value": "x", "effect": "NoSchedule"})];
        let class = vec![
            json!({"key": "gpu", "operator": "Exists"}),
            json!({"key": "other", "operator": "Exists", "effect": "NoExecute"}),
        ];
        assert_eq!(
            merge_tolerations(own.clone(), class),
            vec![
                json!({"key": "gpu", "operator": "Exists"}),
                json!({"key": "other", "operator": "Exists", "effect": "NoExecute"}),
            ]
        );
        assert_eq!(merge_tolerations(own.clone(), own.clone()), own);
        let bounded = json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 60});
        let longer = json!({"key": "k", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 600});
        assert!(!is_superset(&bounded, &longer));
        assert!(is_superset(&longer, &bounded));
    }

    #[test]
    fn overheads_compare_as_quantities() {
        let a = json!({"cpu": "1", "memory": "128Mi"});
        let b = json!({"cpu": "1000m", "memory": "128Mi"});
        let c = json!({"cpu": "2", "memory": "128Mi"});
        assert!(same_quantities(
            a.as_object().unwrap(),
            b.as_object().unwrap()
        ));
        assert!(!same_quantities(
            a.as_object().unwrap(),
            c.as_object().unwrap()
        ));
    }
}
