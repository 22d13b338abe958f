//! ResourceQuota accounting as upstream's quota evaluators (`pkg/quota/v1/evaluator/core`)
//! and the quota admission plugin: what one object uses of each quota resource, which
//! quotas an object falls under (scopes), the containers' missing requests and limits,
//! and the check of a write against a quota's `status.hard` and `status.used`.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{json, Map, Value};

use super::quantity::{Format, Quantity};

/// Resource name → quantity, in name order (upstream `ResourceList`).
pub type ResourceList = BTreeMap<String, Quantity>;

/// The storage-class-scoped quota resources end in this (`gold.storageclass…/requests.storage`).
const STORAGE_CLASS_SUFFIX: &str = ".storageclass.storage.k8s.io/";

/// The scopes a quota may name (`spec.scopes`, `spec.scopeSelector`).
pub const SCOPES: [&str; 6] = [
    "Terminating",
    "NotTerminating",
    "BestEffort",
    "NotBestEffort",
    "PriorityClass",
    "CrossNamespacePodAffinity",
];

/// The compute resources a pod's containers must state once a quota tracks them
/// (upstream's backward-compatible `validationSet`).
const MUST_SPECIFY: [&str; 6] = [
    "cpu",
    "memory",
    "requests.cpu",
    "requests.memory",
    "limits.cpu",
    "limits.memory",
];

fn one() -> Quantity {
    Quantity::from_units(1, Format::DecimalSI)
}

fn count(n: i64) -> Quantity {
    Quantity::from_units(n, Format::DecimalSI)
}

/// `count/<plural>` for the core group, `count/<plural>.<group>` otherwise.
pub fn object_count_name(group: &str, plural: &str) -> String {
    if group.is_empty() {
        format!("count/{plural}")
    } else {
        format!("count/{plural}.{group}")
    }
}

/// The kind a `count/…` resource name counts: `(group, plural)`.
pub fn counted_kind(resource: &str) -> Option<(&str, &str)> {
    let rest = resource.strip_prefix("count/")?;
    Some(match rest.split_once('.') {
        Some((plural, group)) => (group, plural),
        None => ("", rest),
    })
}

/// The `count/…` name legacy quota names stand for (`pods` → `count/pods`).
fn legacy_count(plural: &str) -> Option<&'static str> {
    Some(match plural {
        "pods" => "pods",
        "services" => "services",
        "configmaps" => "configmaps",
        "secrets" => "secrets",
        "persistentvolumeclaims" => "persistentvolumeclaims",
        "replicationcontrollers" => "replicationcontrollers",
        "resourcequotas" => "resourcequotas",
        _ => return None,
    })
}

/// Adds `q` to `name` of `list`; a zero takes the format of what is added to it, as
/// upstream's `Quantity.Add` (so `0` + `128Mi` prints `128Mi`).
fn add_to(list: &mut ResourceList, name: &str, q: Quantity) {
    let sum = match list.get(name) {
        Some(old) if old.is_zero() => q.checked_add(old).unwrap_or(q),
        Some(old) => old.checked_add(&q).unwrap_or(*old),
        None => q,
    };
    list.insert(name.to_string(), sum);
}

/// The sum of two lists.
pub fn add(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        add_to(&mut out, k, *v);
    }
    out
}

/// `a − b` for every name of `a` or `b`.
pub fn subtract(a: &ResourceList, b: &ResourceList) -> ResourceList {
    let mut out = a.clone();
    for (k, v) in b {
        let left = out.get(k).copied().unwrap_or_else(|| count(0));
        out.insert(k.clone(), left.checked_sub(v).unwrap_or(left));
    }
    out
}

/// A resource list from its JSON form; values that are not quantities are skipped.
pub fn from_json(v: &Value) -> ResourceList {
    v.as_object()
        .into_iter()
        .flatten()
        .filter_map(|(k, v)| Some((k.clone(), Quantity::from_json(v).ok()?)))
        .collect()
}

/// The JSON form of a resource list (canonical quantity strings).
pub fn to_json(list: &ResourceList) -> Value {
    Value::Object(
        list.iter()
            .map(|(k, v)| (k.clone(), json!(v.to_string())))
            .collect::<Map<String, Value>>(),
    )
}

/// Upstream `prettyPrint`: `k=v` pairs in name order, comma separated.
pub fn pretty(list: &ResourceList) -> String {
    list.iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// A pod's requests or limits (`part`) per resource: the sum over its containers, at
/// least the largest of an init container, plus the pod overhead (upstream
/// `PodRequests`/`PodLimits`).
fn pod_resources(pod: &Value, part: &str) -> ResourceList {
    let spec = &pod["spec"];
    let mut sum = ResourceList::new();
    for c in spec["containers"].as_array().into_iter().flatten() {
        for (k, v) in from_json(&c["resources"][part]) {
            add_to(&mut sum, &k, v);
        }
    }
    // Sidecars (restartable init containers) run beside the app containers.
    let mut sidecars = ResourceList::new();
    for c in spec["initContainers"].as_array().into_iter().flatten() {
        let own = from_json(&c["resources"][part]);
        if c["restartPolicy"] == "Always" {
            for (k, v) in &own {
                add_to(&mut sum, k, *v);
                add_to(&mut sidecars, k, *v);
            }
            continue;
        }
        // An ordinary init container runs with the sidecars started before it.
        for (k, v) in add(&own, &sidecars) {
            if sum.get(&k).is_none_or(|s| *s < v) {
                sum.insert(k, v);
            }
        }
    }
    // The overhead adds to every request, and to the limits that are set.
    for (k, v) in from_json(&spec["overhead"]) {
        if part == "requests" || sum.contains_key(&k) {
            add_to(&mut sum, &k, v);
        }
    }
    sum
}

/// Upstream `podComputeUsageHelper`: `pods` and the compute resources as quota names.
fn compute_usage(requests: &ResourceList, limits: &ResourceList) -> ResourceList {
    let mut out = ResourceList::from([("pods".to_string(), one())]);
    for (name, q) in requests {
        match name.as_str() {
            "cpu" | "memory" | "ephemeral-storage" => {
                if name != "ephemeral-storage" {
                    out.insert(name.clone(), *q);
                }
                out.insert(format!("requests.{name}"), *q);
            }
            // Hugepages and extended resources are quota'd by their request.
            other if other.starts_with("hugepages-") => {
                out.insert(format!("requests.{other}"), *q);
            }
            other if other.contains('/') => {
                out.insert(format!("requests.{other}"), *q);
            }
            _ => {}
        }
    }
    for (name, q) in limits {
        if matches!(name.as_str(), "cpu" | "memory" | "ephemeral-storage") {
            out.insert(format!("limits.{name}"), *q);
        }
    }
    out
}

/// Whether a pod still counts against `pods` and compute quotas (upstream `QuotaV1Pod`):
/// not once it has finished or its deletion grace period has passed.
pub fn pod_counts(pod: &Value, now: chrono::DateTime<chrono::Utc>) -> bool {
    if matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) {
        return false;
    }
    let deleted = pod["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok());
    let grace = pod["metadata"]["deletionGracePeriodSeconds"].as_i64();
    match (deleted, grace) {
        // Any grace period a client sent: out-of-range values never end the count.
        (Some(at), Some(grace)) => chrono::Duration::try_seconds(grace)
            .and_then(|g| at.checked_add_signed(g))
            .is_none_or(|end| now <= end),
        _ => true,
    }
}

/// What one object of `(group, plural)` uses of every quota resource it affects.
pub fn usage(
    group: &str,
    plural: &str,
    obj: &Value,
    now: chrono::DateTime<chrono::Utc>,
) -> ResourceList {
    let mut out = ResourceList::from([(object_count_name(group, plural), one())]);
    if !group.is_empty() {
        return out;
    }
    match plural {
        "pods" => {
            if pod_counts(obj, now) {
                let requests = pod_resources(obj, "requests");
                let limits = pod_resources(obj, "limits");
                out.extend(compute_usage(&requests, &limits));
            }
        }
        "services" => {
            out.insert("services".into(), one());
            let ty = obj["spec"]["type"].as_str().unwrap_or("ClusterIP");
            let ports = obj["spec"]["ports"].as_array().map_or(0, Vec::len) as i64;
            let node_ports = match ty {
                "NodePort" => ports,
                "LoadBalancer" if obj["spec"]["allocateLoadBalancerNodePorts"] != false => ports,
                _ => 0,
            };
            out.insert("services.nodeports".into(), count(node_ports));
            out.insert(
                "services.loadbalancers".into(),
                count(i64::from(ty == "LoadBalancer")),
            );
        }
        "persistentvolumeclaims" => {
            out.insert("persistentvolumeclaims".into(), one());
            let storage = from_json(&obj["spec"]["resources"]["requests"])
                .get("storage")
                .copied();
            let class = obj["spec"]["storageClassName"]
                .as_str()
                .or_else(|| {
                    obj["metadata"]["annotations"]["volume.beta.kubernetes.io/storage-class"]
                        .as_str()
                })
                .unwrap_or("");
            if !class.is_empty() {
                out.insert(
                    format!("{class}{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"),
                    one(),
                );
            }
            if let Some(storage) = storage {
                out.insert("requests.storage".into(), storage);
                if !class.is_empty() {
                    out.insert(
                        format!("{class}{STORAGE_CLASS_SUFFIX}requests.storage"),
                        storage,
                    );
                }
            }
        }
        other => {
            if let Some(legacy) = legacy_count(other) {
                out.insert(legacy.into(), one());
            }
        }
    }
    out
}

/// Whether a quota resource name is one the evaluator of `(group, plural)` tracks
/// (upstream `MatchingResources`).
pub fn tracks(group: &str, plural: &str, resource: &str) -> bool {
    if resource == object_count_name(group, plural) {
        return true;
    }
    if !group.is_empty() {
        return false;
    }
    match plural {
        "pods" => {
            matches!(
                resource,
                "pods"
                    | "cpu"
                    | "memory"
                    | "requests.cpu"
                    | "requests.memory"
                    | "limits.cpu"
                    | "limits.memory"
                    | "requests.ephemeral-storage"
                    | "limits.ephemeral-storage"
            ) || resource.starts_with("requests.hugepages-")
                || (resource.starts_with("requests.") && resource.contains('/'))
        }
        "services" => matches!(
            resource,
            "services" | "services.nodeports" | "services.loadbalancers"
        ),
        "persistentvolumeclaims" => {
            matches!(resource, "persistentvolumeclaims" | "requests.storage")
                || resource.ends_with(&format!("{STORAGE_CLASS_SUFFIX}requests.storage"))
                || resource.ends_with(&format!("{STORAGE_CLASS_SUFFIX}persistentvolumeclaims"))
        }
        other => legacy_count(other) == Some(resource),
    }
}

/// Whether a pod is BestEffort for quota (no request or limit of cpu or memory).
fn best_effort(pod: &Value) -> bool {
    let spec = &pod["spec"];
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .chain(spec["initContainers"].as_array())
        .flatten();
    for c in containers {
        for part in ["requests", "limits"] {
            let list = &c["resources"][part];
            if !list["cpu"].is_null() || !list["memory"].is_null() {
                return false;
            }
        }
    }
    true
}

fn terminating(pod: &Value) -> bool {
    pod["spec"]["activeDeadlineSeconds"]
        .as_i64()
        .is_some_and(|s| s >= 0)
}

fn cross_namespace_affinity(pod: &Value) -> bool {
    let affinity = &pod["spec"]["affinity"];
    ["podAffinity", "podAntiAffinity"].iter().any(|kind| {
        ["requiredDuringSchedulingIgnoredDuringExecution"]
            .iter()
            .flat_map(|k| affinity[kind][k].as_array().into_iter().flatten())
            .chain(
                affinity[kind]["preferredDuringSchedulingIgnoredDuringExecution"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|w| &w["podAffinityTerm"]),
            )
            .any(|t| {
                t["namespaces"].as_array().is_some_and(|n| !n.is_empty())
                    || !t["namespaceSelector"].is_null()
            })
    })
}

/// One scope requirement of a quota: `scopes` entries are `Exists`.
struct ScopeRequirement<'a> {
    scope: &'a str,
    operator: &'a str,
    values: Vec<&'a str>,
}

fn scope_requirements(quota: &Value) -> Vec<ScopeRequirement<'_>> {
    let spec = &quota["spec"];
    let mut out: Vec<ScopeRequirement<'_>> = spec["scopes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .map(|scope| ScopeRequirement {
            scope,
            operator: "Exists",
            values: Vec::new(),
        })
        .collect();
    for e in spec["scopeSelector"]["matchExpressions"]
        .as_array()
        .into_iter()
        .flatten()
    {
        out.push(ScopeRequirement {
            scope: e["scopeName"].as_str().unwrap_or(""),
            operator: e["operator"].as_str().unwrap_or(""),
            values: e["values"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect(),
        });
    }
    out
}

/// Whether `pod` satisfies one scope requirement (upstream `podMatchesScopeFunc`).
fn pod_matches(pod: &Value, req: &ScopeRequirement<'_>) -> bool {
    let priority_class = pod["spec"]["priorityClassName"].as_str().unwrap_or("");
    match req.scope {
        "Terminating" => terminating(pod),
        "NotTerminating" => !terminating(pod),
        "BestEffort" => best_effort(pod),
        "NotBestEffort" => !best_effort(pod),
        "CrossNamespacePodAffinity" => cross_namespace_affinity(pod),
        "PriorityClass" => match req.operator {
            "Exists" => !priority_class.is_empty(),
            "DoesNotExist" => priority_class.is_empty(),
            "In" => req.values.contains(&priority_class),
            "NotIn" => !req.values.contains(&priority_class),
            _ => false,
        },
        _ => false,
    }
}

/// Whether a quota applies to `obj` of `(group, plural)`: every scope it names must
/// match, and only pods match scopes (upstream `Matches`). A quota without scopes
/// applies to every object of its namespace.
pub fn quota_applies(quota: &Value, group: &str, plural: &str, obj: &Value) -> bool {
    let reqs = scope_requirements(quota);
    if reqs.is_empty() {
        return true;
    }
    group.is_empty() && plural == "pods" && reqs.iter().all(|r| pod_matches(obj, r))
}

/// The resources of `hard` a BestEffort-scoped quota may limit: only the pod count.
pub fn scope_allows(scope: &str, resource: &str) -> bool {
    match scope {
        "BestEffort" => matches!(resource, "pods" | "count/pods"),
        "Terminating"
        | "NotTerminating"
        | "NotBestEffort"
        | "PriorityClass"
        | "CrossNamespacePodAffinity" => {
            matches!(
                resource,
                "pods"
                    | "count/pods"
                    | "cpu"
                    | "memory"
                    | "requests.cpu"
                    | "requests.memory"
                    | "limits.cpu"
                    | "limits.memory"
                    | "requests.ephemeral-storage"
                    | "limits.ephemeral-storage"
            ) || resource.starts_with("requests.")
        }
        _ => false,
    }
}

/// Upstream's pod `Constraints`: every container must state the cpu/memory requests and
/// limits that `tracked` quota resources count. `Err` holds upstream's message
/// (`must specify limits.cpu for: app; requests.memory for: app,init`).
pub fn pod_constraints(pod: &Value, tracked: &BTreeSet<String>) -> Result<(), String> {
    let required: BTreeSet<&str> = MUST_SPECIFY
        .iter()
        .copied()
        .filter(|r| tracked.contains(*r))
        .collect();
    if required.is_empty() {
        return Ok(());
    }
    let mut missing: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
    let spec = &pod["spec"];
    let containers = spec["containers"]
        .as_array()
        .into_iter()
        .chain(spec["initContainers"].as_array())
        .flatten();
    for c in containers {
        let usage = compute_usage(
            &from_json(&c["resources"]["requests"]),
            &from_json(&c["resources"]["limits"]),
        );
        for r in &required {
            if !usage.contains_key(*r) {
                missing
                    .entry(r)
                    .or_default()
                    .insert(c["name"].as_str().unwrap_or("").to_string());
            }
        }
    }
    if missing.is_empty() {
        return Ok(());
    }
    let parts: Vec<String> = missing
        .iter()
        .map(|(r, names)| {
            format!(
                "{r} for: {}",
                names.iter().cloned().collect::<Vec<_>>().join(",")
            )
        })
        .collect();
    Err(format!("must specify {}", parts.join("; ")))
}

/// Why a write is refused by one quota.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// Upstream `failed quota: NAME: must specify …`.
    Constraints(String),
    /// The quota's usage is not known yet for some resource it tracks.
    StatusUnknown(String),
    /// Upstream `exceeded quota: NAME, requested: …, used: …, limited: …`.
    Exceeded(String),
}

impl Refusal {
    pub fn message(&self) -> &str {
        match self {
            Refusal::Constraints(m) | Refusal::StatusUnknown(m) | Refusal::Exceeded(m) => m,
        }
    }
}

/// Checks a write of `obj` (`old` on updates) against `quota`: `Ok(None)` when the
/// quota is not affected, `Ok(Some(used))` with the quota's new `status.used`, or the
/// refusal. Usage is compared with `status.hard` as the quota controller last wrote it.
pub fn charge(
    quota: &Value,
    group: &str,
    plural: &str,
    obj: &Value,
    old: Option<&Value>,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Option<ResourceList>, Refusal> {
    if !quota_applies(quota, group, plural, obj) {
        return Ok(None);
    }
    let name = quota["metadata"]["name"].as_str().unwrap_or("");
    let hard = from_json(&quota["status"]["hard"]);
    let tracked: BTreeSet<String> = hard
        .keys()
        .filter(|r| tracks(group, plural, r))
        .cloned()
        .collect();
    if tracked.is_empty() {
        return Ok(None);
    }
    if group.is_empty() && plural == "pods" {
        pod_constraints(obj, &tracked)
            .map_err(|e| Refusal::Constraints(format!("failed quota: {name}: {e}")))?;
    }
    let used = from_json(&quota["status"]["used"]);
    let unknown: Vec<&str> = tracked
        .iter()
        .filter(|r| !used.contains_key(*r))
        .map(String::as_str)
        .collect();
    if !unknown.is_empty() {
        return Err(Refusal::StatusUnknown(format!(
            "status unknown for quota: {name}, resources: {}",
            unknown.join(",")
        )));
    }
    let mut delta = usage(group, plural, obj, now);
    if let Some(old) = old {
        // An update charges only what grew; the old object counted under the same quota
        // only if the quota applied to it too.
        if quota_applies(quota, group, plural, old) {
            delta = subtract(&delta, &usage(group, plural, old, now));
        }
    }
    let requested: ResourceList = delta
        .into_iter()
        .filter(|(r, q)| tracked.contains(r) && !q.is_zero() && !q.is_negative())
        .collect();
    if requested.is_empty() {
        return Ok(None);
    }
    let new_used = add(&used, &requested);
    let exceeded: Vec<&String> = requested
        .keys()
        .filter(|r| new_used[*r] > hard[*r])
        .collect();
    if !exceeded.is_empty() {
        let mask = |list: &ResourceList| -> ResourceList {
            exceeded
                .iter()
                .filter_map(|r| Some(((*r).clone(), *list.get(*r)?)))
                .collect()
        };
        return Err(Refusal::Exceeded(format!(
            "exceeded quota: {name}, requested: {}, used: {}, limited: {}",
            pretty(&mask(&requested)),
            pretty(&mask(&used)),
            pretty(&mask(&hard)),
        )));
    }
    Ok(Some(new_used))
}

/// The usage a quota controller records: for every resource of `hard`, the sum over
/// `objects` (each `(group, plural, object)` of the quota's namespace) the quota applies
/// to, zero where nothing counts.
pub fn total_usage<'a>(
    quota: &Value,
    hard: &ResourceList,
    objects: impl IntoIterator<Item = (&'a str, &'a str, &'a Value)>,
    now: chrono::DateTime<chrono::Utc>,
) -> ResourceList {
    let mut used: ResourceList = hard.keys().map(|k| (k.clone(), count(0))).collect();
    for (group, plural, obj) in objects {
        if !hard.keys().any(|r| tracks(group, plural, r)) {
            continue;
        }
        if !quota_applies(quota, group, plural, obj) {
            continue;
        }
        for (r, q) in usage(group, plural, obj, now) {
            if hard.contains_key(&r) {
                add_to(&mut used, &r, q);
            }
        }
    }
    used
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> chrono::DateTime<chrono::Utc> {
        chrono::Utc::now()
    }

    fn pod(containers: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "t"}, "spec": {"containers": containers}})
    }

    fn quota(hard: Value, used: Value) -> Value {
        json!({"metadata": {"name": "compute", "namespace": "t"},
            "spec": {"hard": hard.clone()}, "status": {"hard": hard, "used": used}})
    }

    fn list(v: Value) -> ResourceList {
        from_json(&v)
    }

    #[test]
    fn pods_use_the_sum_of_containers_at_least_an_init_container_plus_overhead() {
        let p = json!({"spec": {
            "containers": [
                {"name": "a", "resources": {"requests": {"cpu": "100m", "memory": "64Mi"},
                    "limits": {"cpu": "200m"}}},
                {"name": "b", "resources": {"requests": {"cpu": "150m"}}}
            ],
            "initContainers": [{"name": "i", "resources": {"requests": {"cpu": "1"}}}],
            "overhead": {"memory": "10Mi"}
        }});
        let u = usage("", "pods", &p, now());
        assert_eq!(u["pods"], one());
        assert_eq!(u["count/pods"], one());
        assert_eq!(u["requests.cpu"].to_string(), "1");
        assert_eq!(u["cpu"].to_string(), "1");
        assert_eq!(u["requests.memory"].to_string(), "74Mi");
        assert_eq!(u["limits.cpu"].to_string(), "200m");
        assert!(!u.contains_key("limits.memory"));
    }

    #[test]
    fn deleted_pods_count_until_their_grace_period_ends_whatever_its_value() {
        let mut p = pod(json!([{"name": "a"}]));
        p["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(30);
        assert!(!pod_counts(&p, now()), "long past its grace period");
        p["metadata"]["deletionGracePeriodSeconds"] = json!(i64::MAX);
        assert!(
            pod_counts(&p, now()),
            "no panic on an out-of-range grace period"
        );
        p["metadata"]["deletionGracePeriodSeconds"] = json!(i64::MIN);
        assert!(pod_counts(&p, now()));
    }

    #[test]
    fn finished_pods_count_only_as_objects() {
        let mut p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "1"}}}]));
        p["status"]["phase"] = json!("Succeeded");
        let u = usage("", "pods", &p, now());
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/pods"]);
    }

    #[test]
    fn services_count_node_ports_and_load_balancers() {
        let svc = json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}, {"port": 443}]}});
        let u = usage("", "services", &svc, now());
        assert_eq!(u["services"], one());
        assert_eq!(u["services.loadbalancers"], one());
        assert_eq!(u["services.nodeports"], count(2));
        let cluster_ip = json!({"spec": {"ports": [{"port": 80}]}});
        assert_eq!(
            usage("", "services", &cluster_ip, now())["services.nodeports"],
            count(0)
        );
    }

    #[test]
    fn claims_count_storage_overall_and_per_class() {
        let pvc = json!({"spec": {"storageClassName": "gold",
            "resources": {"requests": {"storage": "5Gi"}}}});
        let u = usage("", "persistentvolumeclaims", &pvc, now());
        assert_eq!(u["requests.storage"].to_string(), "5Gi");
        assert_eq!(
            u["gold.storageclass.storage.k8s.io/requests.storage"].to_string(),
            "5Gi"
        );
        assert_eq!(
            u["gold.storageclass.storage.k8s.io/persistentvolumeclaims"],
            one()
        );
    }

    #[test]
    fn other_kinds_count_by_group() {
        let u = usage("apps", "deployments", &json!({}), now());
        assert_eq!(u.keys().collect::<Vec<_>>(), ["count/deployments.apps"]);
        assert_eq!(
            counted_kind("count/deployments.apps"),
            Some(("apps", "deployments"))
        );
        assert_eq!(counted_kind("count/secrets"), Some(("", "secrets")));
        assert!(tracks("", "configmaps", "configmaps"));
        assert!(!tracks("", "configmaps", "secrets"));
    }

    #[test]
    fn a_create_within_the_quota_returns_the_new_usage() {
        let q = quota(
            json!({"pods": "2", "requests.cpu": "1"}),
            json!({"pods": "1", "requests.cpu": "500m"}),
        );
        let p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "250m"}}}]));
        let used = charge(&q, "", "pods", &p, None, now()).unwrap().unwrap();
        assert_eq!(used["pods"].to_string(), "2");
        assert_eq!(used["requests.cpu"].to_string(), "750m");
    }

    #[test]
    fn exceeding_a_quota_is_refused_with_upstreams_message() {
        let q = quota(
            json!({"pods": "2", "requests.cpu": "1"}),
            json!({"pods": "1", "requests.cpu": "800m"}),
        );
        let p = pod(json!([{"name": "a", "resources": {"requests": {"cpu": "500m"}}}]));
        let err = charge(&q, "", "pods", &p, None, now()).unwrap_err();
        assert_eq!(
            err,
            Refusal::Exceeded(
                "exceeded quota: compute, requested: requests.cpu=500m, used: requests.cpu=800m, limited: requests.cpu=1".into()
            )
        );
    }

    #[test]
    fn tracked_compute_resources_must_be_specified_by_every_container() {
        let q = quota(
            json!({"limits.memory": "1Gi", "requests.cpu": "1"}),
            json!({"limits.memory": "0", "requests.cpu": "0"}),
        );
        let p = pod(json!([
            {"name": "app", "resources": {"requests": {"cpu": "100m"}}},
            {"name": "side", "resources": {}}
        ]));
        let err = charge(&q, "", "pods", &p, None, now()).unwrap_err();
        assert_eq!(
            err.message(),
            "failed quota: compute: must specify limits.memory for: app,side; requests.cpu for: side"
        );
    }

    #[test]
    fn a_quota_not_yet_counted_refuses_what_it_tracks() {
        let q = quota(json!({"configmaps": "2"}), json!({}));
        let err = charge(&q, "", "configmaps", &json!({}), None, now()).unwrap_err();
        assert_eq!(
            err.message(),
            "status unknown for quota: compute, resources: configmaps"
        );
        // A kind it does not track is not affected.
        assert_eq!(charge(&q, "", "secrets", &json!({}), None, now()), Ok(None));
    }

    #[test]
    fn updates_charge_only_growth() {
        let q = quota(
            json!({"requests.storage": "10Gi"}),
            json!({"requests.storage": "8Gi"}),
        );
        let pvc = |size: &str| json!({"spec": {"resources": {"requests": {"storage": size}}}});
        let grown = charge(
            &q,
            "",
            "persistentvolumeclaims",
            &pvc("9Gi"),
            Some(&pvc("8Gi")),
            now(),
        );
        assert_eq!(
            grown.unwrap().unwrap()["requests.storage"].to_string(),
            "9Gi"
        );
        let too_big = charge(
            &q,
            "",
            "persistentvolumeclaims",
            &pvc("11Gi"),
            Some(&pvc("8Gi")),
            now(),
        );
        assert!(matches!(too_big, Err(Refusal::Exceeded(_))));
        let same = charge(
            &q,
            "",
            "persistentvolumeclaims",
            &pvc("8Gi"),
            Some(&pvc("8Gi")),
            now(),
        );
        assert_eq!(same, Ok(None));
    }

    #[test]
    fn scopes_select_pods_by_qos_deadline_and_priority_class() {
        let mut q = quota(json!({"pods": "1"}), json!({"pods": "0"}));
        q["spec"]["scopes"] = json!(["BestEffort"]);
        let best_effort = pod(json!([{"name": "a"}]));
        let burstable = pod(json!([{"name": "a", "resources": {"requests": {"memory": "1Mi"}}}]));
        assert!(quota_applies(&q, "", "pods", &best_effort));
        assert!(!quota_applies(&q, "", "pods", &burstable));
        assert!(!quota_applies(&q, "", "services", &json!({})));
        q["spec"]["scopes"] = json!(["Terminating"]);
        let mut job_pod = best_effort.clone();
        job_pod["spec"]["activeDeadlineSeconds"] = json!(60);
        assert!(quota_applies(&q, "", "pods", &job_pod));
        assert!(!quota_applies(&q, "", "pods", &best_effort));
        q["spec"]["scopes"] = json!([]);
        q["spec"]["scopeSelector"] = json!({"matchExpressions": [
            {"scopeName": "PriorityClass", "operator": "In", "values": ["high"]}]});
        let mut high = best_effort.clone();
        high["spec"]["priorityClassName"] = json!("high");
        assert!(quota_applies(&q, "", "pods", &high));
        assert!(!quota_applies(&q, "", "pods", &best_effort));
    }

    #[test]
    fn the_controller_totals_every_hard_resource() {
        let q = quota(
            json!({"pods": "10", "requests.memory": "1Gi", "configmaps": "5"}),
            json!({}),
        );
        let hard = from_json(&q["status"]["hard"]);
        let a = pod(json!([{"name": "a", "resources": {"requests": {"memory": "100Mi"}}}]));
        let b = pod(json!([{"name": "a", "resources": {"requests": {"memory": "28Mi"}}}]));
        let cm = json!({});
        let used = total_usage(
            &q,
            &hard,
            [
                ("", "pods", &a),
                ("", "pods", &b),
                ("", "configmaps", &cm),
                ("apps", "deployments", &cm),
            ],
            now(),
        );
        assert_eq!(pretty(&used), "configmaps=1,pods=2,requests.memory=128Mi");
        let empty = total_usage(&q, &hard, [], now());
        assert_eq!(pretty(&empty), "configmaps=0,pods=0,requests.memory=0");
        assert_eq!(list(to_json(&used)), used);
    }
}
