//! The LimitRanger and ResourceQuota admission plugins over the store: defaults and
//! bounds of the namespace's LimitRanges on pods and claims, then every write charged to
//! the namespace's quotas. A charge is recorded in the quota's `status.used` with a
//! revision precondition before the object is stored, so concurrent writes cannot both
//! take the last unit; the resource quota controller recounts afterwards (deletes,
//! writes that failed after being charged).

use serde_json::Value;

use crate::api::object;
use crate::api::quota;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::{limit_range, object::meta_mut};
use crate::store::{Store, StoreError};

/// How often a charge is retried when another write changed the quota meanwhile.
const CHARGE_ATTEMPTS: usize = 16;

fn namespace_objects(store: &dyn Store, plural: &str, ns: &str) -> Vec<crate::store::KeyValue> {
    let Some(def) = resources::by_plural("", "v1", plural) else {
        return Vec::new();
    };
    store
        .list(&def.list_prefix(Some(ns)), None, 0, &|_| true)
        .items
}

fn is_pod(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "pods"
}

fn is_claim(def: &ResourceDef) -> bool {
    def.group.is_empty() && def.plural == "persistentvolumeclaims"
}

/// The mutating half of LimitRanger: the Container defaults of the namespace's
/// LimitRanges set on a new pod's containers that lack them.
pub fn default_limits(store: &dyn Store, def: &ResourceDef, ns: Option<&str>, obj: &mut Value) {
    let (true, Some(ns)) = (is_pod(def), ns) else {
        return;
    };
    let ranges: Vec<Value> = namespace_objects(store, "limitranges", ns)
        .into_iter()
        .map(|kv| (*kv.value).clone())
        .collect();
    if !ranges.is_empty() {
        limit_range::apply_pod_defaults(obj, &ranges);
    }
}

/// The validating half of LimitRanger: pods (on create) and claims (on create and
/// update) within the namespace's LimitRanges; 403 with upstream's messages otherwise.
pub fn check_limits(
    store: &dyn Store,
    def: &ResourceDef,
    ns: Option<&str>,
    obj: &Value,
    creating: bool,
) -> Result<(), ApiError> {
    let Some(ns) = ns else { return Ok(()) };
    let errs = if is_pod(def) && creating {
        let ranges = ranges(store, ns);
        limit_range::check_pod(obj, &ranges)
    } else if is_claim(def) {
        let ranges = ranges(store, ns);
        limit_range::check_claim(obj, &ranges)
    } else {
        return Ok(());
    };
    if errs.is_empty() {
        return Ok(());
    }
    Err(ApiError::admission_forbidden(
        def,
        object::name(obj),
        &limit_range::aggregate(&errs),
    ))
}

fn ranges(store: &dyn Store, ns: &str) -> Vec<Value> {
    namespace_objects(store, "limitranges", ns)
        .into_iter()
        .map(|kv| (*kv.value).clone())
        .collect()
}

/// Charges a write of `obj` (`old` on updates) to every quota of its namespace that
/// tracks it; refuses it (403, upstream's messages) when one would be exceeded. A dry
/// run is checked but not recorded.
pub async fn charge(
    store: &dyn Store,
    def: &ResourceDef,
    ns: Option<&str>,
    obj: &Value,
    old: Option<&Value>,
    dry_run: bool,
) -> Result<(), ApiError> {
    let Some(ns) = ns else { return Ok(()) };
    let Some(quotas_def) = resources::by_plural("", "v1", "resourcequotas") else {
        return Ok(());
    };
    let name = object::name(obj);
    for _ in 0..CHARGE_ATTEMPTS {
        let quotas = store
            .list(&quotas_def.list_prefix(Some(ns)), None, 0, &|_| true)
            .items;
        if quotas.is_empty() {
            return Ok(());
        }
        let now = chrono::Utc::now();
        let mut charges = Vec::new();
        for kv in &quotas {
            match quota::charge(&kv.value, def.group, def.plural, obj, old, now) {
                Ok(Some(used)) => charges.push((kv, used)),
                Ok(None) => {}
                Err(refusal) => {
                    tracing::debug!(
                        quota = object::name(&kv.value),
                        namespace = ns,
                        object = name,
                        refusal = refusal.message(),
                        "quota refused a write"
                    );
                    return Err(ApiError::admission_forbidden(def, name, refusal.message()));
                }
            }
        }
        if dry_run || charges.is_empty() {
            return Ok(());
        }
        match record(store, &charges).await {
            Ok(()) => return Ok(()),
            Err(StoreError::Conflict { .. }) => continue,
            Err(e) => return Err(ApiError::internal(e.to_string())),
        }
    }
    Err(ApiError::new(
        409,
        "Conflict",
        format!(
            "Operation cannot be fulfilled on resourcequotas in namespace \"{ns}\": the quotas changed too often while {} \"{name}\" was charged; try again",
            crate::api::status::resource_name(def)
        ),
    ))
}

/// Writes the new usage of each charged quota, each with its revision as precondition.
/// A conflict on a later quota leaves the earlier ones charged: the controller's recount
/// corrects that over-count (upstream has the same window).
async fn record(
    store: &dyn Store,
    charges: &[(&crate::store::KeyValue, quota::ResourceList)],
) -> Result<(), StoreError> {
    for (kv, used) in charges {
        let mut updated = (*kv.value).clone();
        updated["status"]["used"] = quota::to_json(used);
        meta_mut(&mut updated).remove("resourceVersion");
        store
            .update(&kv.key, updated, Some(kv.mod_revision))
            .await?;
    }
    Ok(())
}
