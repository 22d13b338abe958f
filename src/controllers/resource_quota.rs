//! The resource quota controller (upstream `resourcequota-controller`): keeps every
//! ResourceQuota's `status.hard` equal to its `spec.hard` and `status.used` equal to
//! what the objects of its namespace use. It recounts a namespace when a quota in it
//! changes and when any object a quota there tracks is created, changed or deleted
//! (one watch of every kind, as the garbage collector's), so deletes give their usage
//! back at once and the over-count of a write charged by admission and then not stored
//! is corrected.

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::object;
use crate::api::quota::{self, ResourceList};
use crate::api::resources::{self, ResourceDef};
use crate::store::{Event, EventType};

use super::framework::{
    run_workers, wait_for_sync, Client, Informer, Reader, Reconciled, WorkQueue,
};

const WORKERS: usize = 1;
/// How often every quota is recounted even without a change (upstream's
/// `--resource-quota-sync-period`): corrects charges of writes that then failed.
const RESYNC: std::time::Duration = std::time::Duration::from_secs(300);

fn quotas_def() -> &'static ResourceDef {
    resources::by_plural("", "v1", "resourcequotas").expect("served")
}

/// `(group, plural, namespace)` of a datastore key `/<group|core>/<plural>/<ns>/<name>`.
fn key_parts(key: &str) -> Option<(&str, &str, &str)> {
    let mut parts = key.trim_start_matches('/').splitn(4, '/');
    let group = parts.next()?;
    let plural = parts.next()?;
    let ns = parts.next()?;
    parts.next()?;
    Some((if group == "core" { "" } else { group }, plural, ns))
}

/// The hard limits a quota asks for (the spec; what the controller publishes).
fn spec_hard(q: &Value) -> ResourceList {
    quota::from_json(&q["spec"]["hard"])
}

/// The kinds whose objects count towards `resource`: `(group, plural)`.
fn kinds_for(resource: &str) -> Option<(String, String)> {
    if let Some((group, plural)) = quota::counted_kind(resource) {
        return Some((group.to_string(), plural.to_string()));
    }
    let plural = match resource {
        "services" | "services.nodeports" | "services.loadbalancers" => "services",
        "persistentvolumeclaims" | "requests.storage" => "persistentvolumeclaims",
        r if r.contains(".storageclass.storage.k8s.io/") => "persistentvolumeclaims",
        "configmaps" | "secrets" | "replicationcontrollers" | "resourcequotas" => resource,
        _ if quota::tracks("", "pods", resource) => "pods",
        _ => return None,
    };
    Some((String::new(), plural.to_string()))
}

/// Whether a change of an object of `(group, plural)` in `ns` may change the usage of a
/// quota there.
fn affects(quotas: &Reader, group: &str, plural: &str, ns: &str) -> bool {
    quotas.list().iter().any(|kv| {
        object::namespace(&kv.value) == Some(ns)
            && spec_hard(&kv.value)
                .keys()
                .any(|r| quota::tracks(group, plural, r))
    })
}

/// Whether a change may lower what an object uses (upstream's replenishment): a delete,
/// or an update whose usage changed (a pod that finished, a Service that lost its node
/// ports). Creates are charged by admission, so they need no recount.
fn may_free(event: &Event, group: &str, plural: &str) -> bool {
    match (event.kind, &event.prev) {
        (EventType::Added, _) => false,
        (EventType::Deleted, _) | (EventType::Modified, None) => true,
        (EventType::Modified, Some(prev)) => {
            let now = chrono::Utc::now();
            quota::usage(group, plural, &prev.value, now)
                != quota::usage(group, plural, &event.kv.value, now)
        }
    }
}

/// Runs the controller until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let queue = WorkQueue::new();
    let informer = Informer::start(
        client.clone(),
        quotas_def(),
        queue.clone(),
        // Admission's charges change only `status.used`: recounting on them would race
        // with the creates they were charged for (a recount cannot see an object being
        // stored). A new quota, a changed spec or a status that is not the spec's are
        // counted.
        Box::new(|e: &Event| {
            let q = &e.kv.value;
            let unchanged = e
                .prev
                .as_ref()
                .is_some_and(|prev| prev.value["spec"] == q["spec"]);
            let published = quota::from_json(&q["status"]["hard"]) == spec_hard(q);
            if e.kind == EventType::Modified && unchanged && published {
                return Vec::new();
            }
            object::namespace(q)
                .map(str::to_string)
                .into_iter()
                .collect()
        }),
    );
    wait_for_sync(std::slice::from_ref(&informer)).await;
    let quotas = informer.reader();
    let watcher = tokio::spawn(watch_all(client.clone(), quotas.clone(), queue.clone()));
    run_workers("resourcequota-controller", queue, WORKERS, move |ns| {
        let (client, quotas) = (client.clone(), quotas.clone());
        async move { recount(&*client, &quotas, &ns).await }
    })
    .await;
    watcher.abort();
}

/// Queues the namespace of every change that a quota there tracks.
async fn watch_all(client: Arc<dyn Client>, quotas: Reader, queue: Arc<WorkQueue>) {
    loop {
        let (_, _, mut watcher) = client.list_and_watch_all();
        loop {
            match watcher.next().await {
                Ok(event) => {
                    let Some((group, plural, ns)) = key_parts(&event.kv.key) else {
                        continue;
                    };
                    if plural != "resourcequotas"
                        && may_free(&event, group, plural)
                        && affects(&quotas, group, plural, ns)
                    {
                        queue.add(ns.to_string());
                    }
                }
                Err(e) => {
                    tracing::debug!(error = %e, "resource quota watch ended; relisting");
                    break;
                }
            }
        }
        // Whatever changed while the watch was down is counted again.
        for kv in quotas.list() {
            if let Some(ns) = object::namespace(&kv.value) {
                queue.add(ns.to_string());
            }
        }
    }
}

/// Recounts every quota of `ns` and writes the statuses that changed.
async fn recount(client: &dyn Client, quotas: &Reader, ns: &str) -> Reconciled {
    let in_ns: Vec<_> = quotas
        .list()
        .into_iter()
        .filter(|kv| object::namespace(&kv.value) == Some(ns))
        .collect();
    if in_ns.is_empty() {
        return Ok(None);
    }
    let catalog = client.resources();
    let mut kinds: BTreeSet<(String, String)> = BTreeSet::new();
    for kv in &in_ns {
        kinds.extend(spec_hard(&kv.value).keys().filter_map(|r| kinds_for(r)));
    }
    let mut objects: Vec<(&'static str, &'static str, Value)> = Vec::new();
    for (group, plural) in &kinds {
        let Some(def) = catalog
            .iter()
            .find(|d| d.group == group && d.plural == plural && d.namespaced)
        else {
            continue;
        };
        for kv in client.list(def, Some(ns), &|_| true) {
            objects.push((def.group, def.plural, (*kv.value).clone()));
        }
    }
    let now = chrono::Utc::now();
    for kv in in_ns {
        let q = &kv.value;
        let hard = spec_hard(q);
        let used = quota::total_usage(q, &hard, objects.iter().map(|(g, p, o)| (*g, *p, o)), now);
        let current_hard = quota::from_json(&q["status"]["hard"]);
        let current_used = quota::from_json(&q["status"]["used"]);
        if current_hard == hard && current_used == used {
            continue;
        }
        let mut updated = (*kv.value).clone();
        updated["status"] =
            json!({"hard": q["spec"]["hard"].clone(), "used": quota::to_json(&used)});
        let name = object::name(q);
        tracing::debug!(quota = name, namespace = ns, used = %quota::pretty(&used), "quota usage recounted");
        client
            .update_status(quotas_def(), Some(ns), name, updated)
            .await?;
    }
    Ok(Some(RESYNC))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_name_group_plural_and_namespace() {
        assert_eq!(
            key_parts("/core/pods/default/web"),
            Some(("", "pods", "default"))
        );
        assert_eq!(
            key_parts("/apps/deployments/team/api"),
            Some(("apps", "deployments", "team"))
        );
        assert_eq!(key_parts("/core/nodes/n1"), None);
    }

    #[test]
    fn quota_resources_map_to_the_kinds_they_count() {
        let k = |r: &str| kinds_for(r).map(|(g, p)| format!("{g}/{p}"));
        assert_eq!(k("requests.cpu").as_deref(), Some("/pods"));
        assert_eq!(k("pods").as_deref(), Some("/pods"));
        assert_eq!(k("services.nodeports").as_deref(), Some("/services"));
        assert_eq!(
            k("gold.storageclass.storage.k8s.io/requests.storage").as_deref(),
            Some("/persistentvolumeclaims")
        );
        assert_eq!(
            k("count/deployments.apps").as_deref(),
            Some("apps/deployments")
        );
        assert_eq!(k("configmaps").as_deref(), Some("/configmaps"));
        assert_eq!(k("nonsense"), None);
    }
}
