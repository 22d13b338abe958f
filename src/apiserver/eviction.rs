//! The `pods/eviction` subresource (upstream `EvictionREST`): deletes a pod unless that
//! would break the PodDisruptionBudget covering it (429 TooManyRequests), taking one
//! disruption from the budget (recorded in `status.disruptedPods`) when it does not.

use serde_json::{json, Value};

use super::delete_options;
use super::registry::{DeleteOptions, Registry, WriteOptions};
use super::request::Query;
use crate::api::disruption::{self as budget, ALWAYS_ALLOW};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::store::KeyValue;

/// Upstream `MaxDisruptedPodSize`: evictions the controller has not confirmed yet.
const MAX_DISRUPTED_POD_SIZE: usize = 2000;
/// Times a pod or budget read-modify-write is tried before answering a conflict.
const EVICTION_RETRIES: usize = 5;

const VIOLATES_BUDGET: &str = "Cannot evict pod as it would violate the pod's disruption budget.";

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

fn pdbs() -> &'static ResourceDef {
    resources::by_plural("policy", "v1", "poddisruptionbudgets").expect("served")
}

/// The Success `Status` an eviction answers with (201).
pub fn success() -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"})
}

/// Upstream `createTooManyRequestsError` and the 429 of `checkAndDecrement`.
fn too_many_requests(cause: String, retry_after: u64) -> ApiError {
    ApiError {
        details: Some(json!({
            "causes": [{"reason": "DisruptionBudget", "message": cause}],
            "retryAfterSeconds": retry_after,
        })),
        ..ApiError::new(429, "TooManyRequests", VIOLATES_BUDGET)
    }
}

/// Evicts pod `name` of `ns` as the Eviction `body` (already decoded) asks; `dry_run`
/// is the query's `dryRun=All`.
pub async fn evict(
    registry: &Registry,
    ns: &str,
    name: &str,
    body: &Value,
    dry_run: bool,
) -> Result<Value, ApiError> {
    let api_version = body["apiVersion"].as_str().unwrap_or("");
    if body["kind"] != "Eviction" || !matches!(api_version, "policy/v1" | "policy/v1beta1") {
        return Err(ApiError::bad_request(format!(
            "not a Eviction object: {api_version} {}",
            body["kind"].as_str().unwrap_or("")
        )));
    }
    if object::name(body) != name {
        return Err(ApiError::bad_request(
            "name in URL does not match name in Eviction object",
        ));
    }
    let options = match &body["deleteOptions"] {
        Value::Null => DeleteOptions {
            dry_run,
            ..DeleteOptions::default()
        },
        opts => {
            let typed = delete_options::typed(opts, api_version)?;
            delete_options::from_typed(typed, &Query::default(), dry_run)?
        }
    };
    let rv_unset = options.precondition_rv.is_none();

    // Pods that are not running (or already going) are evicted without a budget check.
    let mut pod = None;
    for _ in 0..EVICTION_RETRIES {
        let current = registry.get(pods(), Some(ns), name)?;
        if !can_ignore_budget(&current.value) {
            pod = Some(current);
            break;
        }
        let mut opts = options.clone();
        if should_enforce_resource_version(&current.value) && rv_unset {
            opts.precondition_rv = Some(current.mod_revision.to_string());
        }
        match add_condition_and_delete(registry, ns, name, opts).await {
            Err(e) if e.code == 409 && rv_unset => continue,
            Err(e) => return Err(e),
            Ok(()) => return Ok(success()),
        }
    }
    let pod = pod.ok_or_else(|| ApiError::conflict(pods(), name, "the pod kept changing"))?;

    let covering = registry.list(pdbs(), Some(ns), None, 0, &|kv: &KeyValue| {
        budget::eviction_covers(&kv.value, &pod.value)
    });
    let mut unhealthy_allowed = false;
    let mut budget_name = None;
    match covering.items.as_slice() {
        [] => {}
        [pdb] => {
            let pdb_name = object::name(&pdb.value).to_string();
            let status = &pdb.value["status"];
            if !budget::is_pod_ready(&pod.value) {
                let always = pdb.value["spec"]["unhealthyPodEvictionPolicy"] == ALWAYS_ALLOW;
                let current = status["currentHealthy"].as_i64().unwrap_or(0);
                let desired = status["desiredHealthy"].as_i64().unwrap_or(0);
                unhealthy_allowed = always || (current >= desired && desired > 0);
            }
            if !unhealthy_allowed {
                check_and_decrement(registry, ns, name, &pdb_name, options.dry_run).await?;
            }
            budget_name = Some(pdb_name);
        }
        _ => {
            return Err(ApiError::new(
                500,
                "InternalError",
                "This pod has more than one PodDisruptionBudget, which the eviction subresource does not support.",
            ))
        }
    }

    let mut opts = options;
    if unhealthy_allowed && rv_unset {
        // The pod must not have become ready since the budget was read.
        opts.precondition_rv = Some(pod.mod_revision.to_string());
    }
    match add_condition_and_delete(registry, ns, name, opts).await {
        Err(e) if e.code == 409 && unhealthy_allowed && rv_unset => Err(too_many_requests(
            format!(
                "The disruption budget {} is still being processed by the server.",
                budget_name.unwrap_or_default()
            ),
            10,
        )),
        Err(e) => Err(e),
        Ok(()) => Ok(success()),
    }
}

/// Upstream `canIgnorePDB`: terminal, pending and terminating pods.
fn can_ignore_budget(pod: &Value) -> bool {
    matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed" | "Pending")
    ) || object::is_deleting(pod)
}

/// Upstream `shouldEnforceResourceVersion`: all but terminal and terminating pods.
fn should_enforce_resource_version(pod: &Value) -> bool {
    !(matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    ) || object::is_deleting(pod))
}

/// Upstream `checkAndDecrement`, retried on conflicts: refuses when the budget allows no
/// disruption (or the controller has not seen its spec yet), else takes one and records
/// the pod in `status.disruptedPods` (not for a dry run).
async fn check_and_decrement(
    registry: &Registry,
    ns: &str,
    pod_name: &str,
    pdb_name: &str,
    dry_run: bool,
) -> Result<(), ApiError> {
    let now = chrono::Utc::now();
    let decide = |pdb: &Value| -> Result<Value, ApiError> {
        let status = &pdb["status"];
        let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
        if status["observedGeneration"].as_i64().unwrap_or(0) < generation {
            return Err(too_many_requests(
                format!("The disruption budget {pdb_name} is still being processed by the server."),
                10,
            ));
        }
        let allowed = status["disruptionsAllowed"].as_i64().unwrap_or(0);
        if allowed < 0 {
            return Err(ApiError::forbidden(format!(
                "poddisruptionbudgets.policy \"{pdb_name}\" is forbidden: pdb disruptions allowed is negative"
            )));
        }
        let disrupted = status["disruptedPods"].as_object().map_or(0, |m| m.len());
        if disrupted > MAX_DISRUPTED_POD_SIZE {
            return Err(ApiError::forbidden(format!(
                "poddisruptionbudgets.policy \"{pdb_name}\" is forbidden: DisruptedPods map too big - too many evictions not confirmed by PDB controller"
            )));
        }
        if allowed == 0 {
            return Err(too_many_requests(
                format!(
                    "The disruption budget {pdb_name} needs {} healthy pods and has {} currently",
                    status["desiredHealthy"].as_i64().unwrap_or(0),
                    status["currentHealthy"].as_i64().unwrap_or(0)
                ),
                0,
            ));
        }
        let mut next = pdb.clone();
        next["status"]["disruptionsAllowed"] = json!(allowed - 1);
        if allowed == 1 {
            budget::update_disruption_allowed_condition(&mut next["status"], now);
        }
        if !next["status"]["disruptedPods"].is_object() {
            next["status"]["disruptedPods"] = json!({});
        }
        next["status"]["disruptedPods"][pod_name] = json!(object::timestamp(now));
        Ok(next)
    };
    if dry_run {
        let pdb = registry.get(pdbs(), Some(ns), pdb_name)?;
        return decide(&pdb.value).map(|_| ());
    }
    registry
        .modify(
            pdbs(),
            Some(ns),
            pdb_name,
            Some("status"),
            &WriteOptions::default(),
            &decide,
        )
        .await
        .map(|_| ())
}

/// Upstream `addConditionAndDeletePod`: marks the pod `DisruptionTarget` (reason
/// `EvictionByEvictionAPI`), then deletes it with `opts` (a resourceVersion
/// precondition moves to the marked version).
async fn add_condition_and_delete(
    registry: &Registry,
    ns: &str,
    name: &str,
    mut opts: DeleteOptions,
) -> Result<(), ApiError> {
    if !opts.dry_run {
        let now = object::timestamp(chrono::Utc::now());
        let (uid, rv) = (opts.precondition_uid.clone(), opts.precondition_rv.clone());
        let marked = registry
            .modify(
                pods(),
                Some(ns),
                name,
                Some("status"),
                &WriteOptions::default(),
                &|cur| {
                    let cur_rv = cur["metadata"]["resourceVersion"].as_str().unwrap_or("");
                    if uid.as_deref().is_some_and(|u| Some(u) != object::uid(cur))
                        || rv.as_deref().is_some_and(|r| r != cur_rv)
                    {
                        return Err(ApiError::conflict(
                            pods(),
                            name,
                            "the object has been modified; please apply your changes to the latest version and try again",
                        ));
                    }
                    let mut next = cur.clone();
                    let mut conditions: Vec<Value> = next["status"]["conditions"]
                        .as_array()
                        .cloned()
                        .unwrap_or_default();
                    conditions.retain(|c| c["type"] != "DisruptionTarget");
                    conditions.push(json!({"type": "DisruptionTarget", "status": "True",
                        "lastTransitionTime": now, "reason": "EvictionByEvictionAPI",
                        "message": "Eviction API: evicting"}));
                    next["status"]["conditions"] = json!(conditions);
                    Ok(next)
                },
            )
            .await?;
        if opts.precondition_rv.is_some() {
            opts.precondition_rv = Some(marked.kv.mod_revision.to_string());
        }
    }
    registry
        .delete(pods(), Some(ns), name, &opts)
        .await
        .map(|_| ())
}
