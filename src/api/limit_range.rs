//! LimitRange rules as upstream's `LimitRanger` admission plugin: defaults for the
//! containers of a new pod (`default` → limits, `defaultRequest` → requests, recorded in
//! the `kubernetes.io/limit-ranger` annotation), then the `min`, `max` and
//! `maxLimitRequestRatio` of Container, Pod and PersistentVolumeClaim items, with
//! upstream's messages. Also the defaulting of a LimitRange item itself.

use std::collections::BTreeSet;

use serde_json::{json, Map, Value};

use super::quantity::Quantity;
use super::quota::{from_json, ResourceList};

/// The quantity maps of a LimitRange item (`spec.limits[*]`).
pub const QUANTITY_MAPS: [&str; 5] = [
    "max",
    "min",
    "default",
    "defaultRequest",
    "maxLimitRequestRatio",
];

/// The annotation that records which defaults were set.
pub const ANNOTATION: &str = "kubernetes.io/limit-ranger";

/// The item types a LimitRange may hold.
pub const TYPES: [&str; 3] = ["Container", "Pod", "PersistentVolumeClaim"];

fn items(range: &Value) -> impl Iterator<Item = &Value> {
    range["spec"]["limits"].as_array().into_iter().flatten()
}

/// Upstream `SetDefaults_LimitRangeItem`: a Container item's `default` falls back to its
/// `max`, its `defaultRequest` to its `default`, then to its `min`.
pub fn default_limit_range(obj: &mut Value) {
    let Some(limits) = obj["spec"]["limits"].as_array_mut() else {
        return;
    };
    for item in limits {
        if item["type"] != "Container" {
            continue;
        }
        let fill = |item: &mut Value, into: &str, from: &str| {
            let source = item[from].as_object().cloned().unwrap_or_default();
            if source.is_empty() {
                return;
            }
            if !item[into].is_object() {
                item[into] = json!({});
            }
            let target = item[into].as_object_mut().expect("object");
            for (k, v) in source {
                target.entry(k).or_insert(v);
            }
        };
        fill(item, "default", "max");
        fill(item, "defaultRequest", "default");
        fill(item, "defaultRequest", "min");
    }
}

/// Sets the Container defaults of `ranges` on the containers of `pod` that lack them and
/// records them in the annotation; returns whether anything was set.
pub fn apply_pod_defaults(pod: &mut Value, ranges: &[Value]) -> bool {
    let mut limits = Map::new();
    let mut requests = Map::new();
    for item in ranges.iter().flat_map(items) {
        if item["type"] != "Container" {
            continue;
        }
        for (k, v) in item["default"].as_object().into_iter().flatten() {
            limits.entry(k.clone()).or_insert(v.clone());
        }
        for (k, v) in item["defaultRequest"].as_object().into_iter().flatten() {
            requests.entry(k.clone()).or_insert(v.clone());
        }
    }
    if limits.is_empty() && requests.is_empty() {
        return false;
    }
    let mut notes = Vec::new();
    for (field, prefix) in [
        ("containers", "container"),
        ("initContainers", "init container"),
    ] {
        let Some(containers) = pod["spec"][field].as_array_mut() else {
            continue;
        };
        for c in containers {
            let name = c["name"].as_str().unwrap_or("").to_string();
            let mut set = |part: &str, defaults: &Map<String, Value>| -> Vec<String> {
                let mut names = Vec::new();
                if defaults.is_empty() {
                    return names;
                }
                if !c["resources"].is_object() {
                    c["resources"] = json!({});
                }
                if !c["resources"][part].is_object() {
                    c["resources"][part] = json!({});
                }
                let list = c["resources"][part].as_object_mut().expect("object");
                for (k, v) in defaults {
                    if !list.contains_key(k) {
                        list.insert(k.clone(), v.clone());
                        names.push(k.clone());
                    }
                }
                if list.is_empty() {
                    c["resources"].as_object_mut().expect("object").remove(part);
                }
                names.sort();
                names
            };
            let set_limits = set("limits", &limits);
            let set_requests = set("requests", &requests);
            if !set_requests.is_empty() {
                notes.push(format!(
                    "{} request for {prefix} {name}",
                    set_requests.join(", ")
                ));
            }
            if !set_limits.is_empty() {
                notes.push(format!(
                    "{} limit for {prefix} {name}",
                    set_limits.join(", ")
                ));
            }
        }
    }
    if notes.is_empty() {
        return false;
    }
    let meta = crate::api::object::meta_mut(pod);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[ANNOTATION] = json!(format!("LimitRanger plugin set: {}", notes.join("; ")));
    true
}

/// Upstream `minConstraint`.
fn min_constraint(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(req) = requests.get(resource) else {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}.  No request is specified"
        ));
    };
    if req < enforced {
        return Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but request is {req}"
        ));
    }
    match limits.get(resource) {
        Some(lim) if lim < enforced => Some(format!(
            "minimum {resource} usage per {kind} is {enforced}, but limit is {lim}"
        )),
        _ => None,
    }
}

/// Upstream `maxConstraint`.
fn max_constraint(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let Some(lim) = limits.get(resource) else {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}.  No limit is specified"
        ));
    };
    if lim > enforced {
        return Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but limit is {lim}"
        ));
    }
    match requests.get(resource) {
        Some(req) if req > enforced => Some(format!(
            "maximum {resource} usage per {kind} is {enforced}, but request is {req}"
        )),
        _ => None,
    }
}

/// Upstream `limitRequestRatioConstraint`.
fn ratio_constraint(
    kind: &str,
    resource: &str,
    enforced: &Quantity,
    requests: &ResourceList,
    limits: &ResourceList,
) -> Option<String> {
    let req = requests.get(resource).filter(|q| !q.is_zero());
    let lim = limits.get(resource).filter(|q| !q.is_zero());
    let Some(req) = req else {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but no request is specified or request is 0"
        ));
    };
    let Some(lim) = lim else {
        return Some(format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but no limit is specified or limit is 0"
        ));
    };
    let ratio = lim.milli_value() as f64 / req.milli_value().max(1) as f64;
    let allowed = enforced.milli_value() as f64 / 1000.0;
    (ratio > allowed).then(|| {
        format!(
            "{resource} max limit to request ratio per {kind} is {enforced}, but provided ratio is {ratio:.6}"
        )
    })
}

fn check_item(
    item: &Value,
    kind: &str,
    requests: &ResourceList,
    limits: &ResourceList,
    errs: &mut Vec<String>,
) {
    for (resource, q) in from_json(&item["min"]) {
        errs.extend(min_constraint(kind, &resource, &q, requests, limits));
    }
    for (resource, q) in from_json(&item["max"]) {
        errs.extend(max_constraint(kind, &resource, &q, requests, limits));
    }
    for (resource, q) in from_json(&item["maxLimitRequestRatio"]) {
        errs.extend(ratio_constraint(kind, &resource, &q, requests, limits));
    }
}

/// A pod's requests or limits summed for a `Pod` item: the containers' sum, at least
/// each init container's.
fn pod_total(pod: &Value, part: &str) -> ResourceList {
    let mut sum = ResourceList::new();
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        for (k, v) in from_json(&c["resources"][part]) {
            let total = sum.get(&k).and_then(|s| s.checked_add(&v)).unwrap_or(v);
            sum.insert(k, total);
        }
    }
    for c in pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
    {
        for (k, v) in from_json(&c["resources"][part]) {
            if sum.get(&k).is_none_or(|s| *s < v) {
                sum.insert(k, v);
            }
        }
    }
    sum
}

/// The violations of `ranges` by `pod` (upstream `PodValidateLimitFunc`), in the order
/// upstream finds them.
pub fn check_pod(pod: &Value, ranges: &[Value]) -> Vec<String> {
    let mut errs = Vec::new();
    for item in ranges.iter().flat_map(items) {
        match item["type"].as_str() {
            Some("Container") => {
                for field in ["containers", "initContainers"] {
                    for c in pod["spec"][field].as_array().into_iter().flatten() {
                        let requests = from_json(&c["resources"]["requests"]);
                        let limits = from_json(&c["resources"]["limits"]);
                        check_item(item, "Container", &requests, &limits, &mut errs);
                    }
                }
            }
            Some("Pod") => {
                let requests = pod_total(pod, "requests");
                let limits = pod_total(pod, "limits");
                check_item(item, "Pod", &requests, &limits, &mut errs);
            }
            _ => {}
        }
    }
    dedup(errs)
}

/// The violations of `ranges` by a claim's storage request.
pub fn check_claim(pvc: &Value, ranges: &[Value]) -> Vec<String> {
    let kind = "PersistentVolumeClaim";
    let requests = from_json(&pvc["spec"]["resources"]["requests"]);
    let mut errs = Vec::new();
    for item in ranges.iter().flat_map(items) {
        if item["type"] != kind {
            continue;
        }
        for (resource, q) in from_json(&item["min"]) {
            errs.extend(min_constraint(
                kind,
                &resource,
                &q,
                &requests,
                &ResourceList::new(),
            ));
        }
        for (resource, q) in from_json(&item["max"]) {
            match requests.get(&resource) {
                None => errs.push(format!(
                    "maximum {resource} usage per {kind} is {q}.  No request is specified"
                )),
                Some(req) if *req > q => errs.push(format!(
                    "maximum {resource} usage per {kind} is {q}, but request is {req}"
                )),
                Some(_) => {}
            }
        }
    }
    dedup(errs)
}

fn dedup(errs: Vec<String>) -> Vec<String> {
    let mut seen = BTreeSet::new();
    errs.into_iter()
        .filter(|e| seen.insert(e.clone()))
        .collect()
}

/// Upstream's aggregate error text: one message as is, several in brackets.
pub fn aggregate(errs: &[String]) -> String {
    match errs {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn range(items: Value) -> Value {
        let mut r = json!({"metadata": {"name": "limits"}, "spec": {"limits": items}});
        default_limit_range(&mut r);
        r
    }

    #[test]
    fn container_items_default_from_max_and_min() {
        let r =
            range(json!([{"type": "Container", "max": {"cpu": "1"}, "min": {"memory": "64Mi"}}]));
        let item = &r["spec"]["limits"][0];
        assert_eq!(item["default"], json!({"cpu": "1"}));
        assert_eq!(
            item["defaultRequest"],
            json!({"cpu": "1", "memory": "64Mi"})
        );
        let pod_item = range(json!([{"type": "Pod", "max": {"cpu": "1"}}]));
        assert!(pod_item["spec"]["limits"][0]["default"].is_null());
    }

    #[test]
    fn defaults_fill_only_what_containers_lack_and_are_annotated() {
        let r = range(json!([{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "128Mi"}}]));
        let mut pod = json!({"metadata": {"name": "p"}, "spec": {"containers": [
            {"name": "app", "resources": {"limits": {"memory": "1Gi"}, "requests": {"memory": "1Gi"}}},
            {"name": "side"}
        ]}});
        assert!(apply_pod_defaults(&mut pod, &[r]));
        let app = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(app["limits"], json!({"memory": "1Gi", "cpu": "500m"}));
        assert_eq!(app["requests"], json!({"memory": "1Gi", "cpu": "100m"}));
        let side = &pod["spec"]["containers"][1]["resources"];
        assert_eq!(side["limits"], json!({"cpu": "500m", "memory": "256Mi"}));
        assert_eq!(
            pod["metadata"]["annotations"][ANNOTATION],
            "LimitRanger plugin set: cpu request for container app; cpu limit for container app; cpu, memory request for container side; cpu, memory limit for container side"
        );
    }

    #[test]
    fn min_max_and_ratio_give_upstreams_messages() {
        let r = range(
            json!([{"type": "Container", "min": {"cpu": "100m"}, "max": {"cpu": "1"},
            "maxLimitRequestRatio": {"cpu": "2"}}]),
        );
        let pod = |req: &str, lim: &str| {
            json!({"spec": {"containers": [{"name": "a", "resources": {
                "requests": {"cpu": req}, "limits": {"cpu": lim}}}]}})
        };
        assert!(check_pod(&pod("500m", "1"), std::slice::from_ref(&r)).is_empty());
        assert_eq!(
            check_pod(&pod("50m", "100m"), std::slice::from_ref(&r)),
            ["minimum cpu usage per Container is 100m, but request is 50m"]
        );
        assert_eq!(
            check_pod(&pod("1", "2"), std::slice::from_ref(&r)),
            ["maximum cpu usage per Container is 1, but limit is 2"]
        );
        assert_eq!(
            check_pod(&pod("200m", "1"), std::slice::from_ref(&r)),
            ["cpu max limit to request ratio per Container is 2, but provided ratio is 5.000000"]
        );
        let none = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            aggregate(&check_pod(&none, std::slice::from_ref(&r))),
            "[minimum cpu usage per Container is 100m.  No request is specified, maximum cpu usage per Container is 1.  No limit is specified, cpu max limit to request ratio per Container is 2, but no request is specified or request is 0]"
        );
    }

    #[test]
    fn pod_items_limit_the_sum_of_containers() {
        let r = range(json!([{"type": "Pod", "max": {"memory": "1Gi"}}]));
        let pod = json!({"spec": {"containers": [
            {"name": "a", "resources": {"limits": {"memory": "600Mi"}}},
            {"name": "b", "resources": {"limits": {"memory": "600Mi"}}}]}});
        assert_eq!(
            check_pod(&pod, &[r]),
            ["maximum memory usage per Pod is 1Gi, but limit is 1200Mi"]
        );
    }

    #[test]
    fn claims_are_held_to_min_and_max_storage() {
        let r = range(
            json!([{"type": "PersistentVolumeClaim", "min": {"storage": "1Gi"}, "max": {"storage": "10Gi"}}]),
        );
        let pvc = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        assert!(check_claim(&pvc("5Gi"), std::slice::from_ref(&r)).is_empty());
        assert_eq!(
            check_claim(&pvc("500Mi"), std::slice::from_ref(&r)),
            ["minimum storage usage per PersistentVolumeClaim is 1Gi, but request is 500Mi"]
        );
        assert_eq!(
            check_claim(&pvc("20Gi"), std::slice::from_ref(&r)),
            ["maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"]
        );
    }
}
