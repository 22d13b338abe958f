//! Storage object in-use protection (upstream's `pvc-protection` and `pv-protection`
//! controllers): a claim being deleted keeps `kubernetes.io/pvc-protection` while a
//! scheduled pod uses it; a volume being deleted keeps `kubernetes.io/pv-protection`
//! while it is Bound. The finalizers are added at admission (registry strategies).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::object;
use crate::api::resources;
use crate::api::storage::{pod_claims, PVC_PROTECTION_FINALIZER, PV_PROTECTION_FINALIZER};
use crate::store::KeyValue;

use super::framework::{
    object_key, run_workers, wait_for_sync, Client, Informer, Reader, Reconciled, WorkQueue,
};
use super::persistent_volume::{claims, volumes};

const CLAIM: &str = "claim:";
const VOLUME: &str = "volume:";
const WORKERS: usize = 1;

/// Whether `pod` keeps the claim `name` of its namespace in use (upstream
/// `podUsesPVC`): only scheduled pods count; a generic ephemeral claim stops counting
/// once its pod has finished.
pub fn pod_blocks_claim(pod: &Value, name: &str) -> bool {
    if pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty() {
        return false;
    }
    let finished = matches!(
        pod["status"]["phase"].as_str(),
        Some("Succeeded" | "Failed")
    );
    pod_claims(pod)
        .iter()
        .any(|c| c.claim == name && !(c.ephemeral && finished))
}

/// Runs both protections until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let pods_def = resources::by_plural("", "v1", "pods").expect("served");
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            claims(),
            queue.clone(),
            Box::new(|e| vec![format!("{CLAIM}{}", object_key(&e.kv.value))]),
        ),
        Informer::start(
            client.clone(),
            volumes(),
            queue.clone(),
            Box::new(|e| vec![format!("{VOLUME}{}", object::name(&e.kv.value))]),
        ),
        // A pod that goes away may free the claims it used.
        Informer::start(
            client.clone(),
            pods_def,
            queue.clone(),
            Box::new(|e| {
                let pod = &e.kv.value;
                let ns = object::namespace(pod).unwrap_or("");
                pod_claims(pod)
                    .into_iter()
                    .map(|c| format!("{CLAIM}{ns}/{}", c.claim))
                    .collect()
            }),
        ),
    ];
    wait_for_sync(&informers).await;
    let (claims_cache, volumes_cache, pods) = (
        informers[0].reader(),
        informers[1].reader(),
        informers[2].reader(),
    );
    run_workers("pvc-protection", queue, WORKERS, move |key| {
        let client = client.clone();
        let (claims_cache, volumes_cache, pods) =
            (claims_cache.clone(), volumes_cache.clone(), pods.clone());
        async move {
            if let Some(key) = key.strip_prefix(CLAIM) {
                let Some(pvc) = claims_cache.get(key) else {
                    return Ok(None);
                };
                let in_use = claim_in_use(&pods, &pvc);
                release_if(&*client, &pvc, PVC_PROTECTION_FINALIZER, !in_use).await
            } else if let Some(key) = key.strip_prefix(VOLUME) {
                let Some(pv) = volumes_cache.get(key) else {
                    return Ok(None);
                };
                let bound = pv.value["status"]["phase"] == "Bound";
                release_if(&*client, &pv, PV_PROTECTION_FINALIZER, !bound).await
            } else {
                Ok(None)
            }
        }
    })
    .await;
}

fn claim_in_use(pods: &Reader, pvc: &KeyValue) -> bool {
    let ns = object::namespace(&pvc.value).unwrap_or("");
    let name = object::name(&pvc.value);
    pods.list()
        .iter()
        .any(|kv| object::namespace(&kv.value) == Some(ns) && pod_blocks_claim(&kv.value, name))
}

/// Takes `finalizer` off an object being deleted when `free`.
async fn release_if(client: &dyn Client, kv: &KeyValue, finalizer: &str, free: bool) -> Reconciled {
    let obj = &kv.value;
    if !free || !object::is_deleting(obj) || !object::finalizers(obj).iter().any(|f| f == finalizer)
    {
        return Ok(None);
    }
    let def = if finalizer == PVC_PROTECTION_FINALIZER {
        claims()
    } else {
        volumes()
    };
    tracing::info!(object = %object_key(obj), finalizer, "removing protection finalizer");
    let result = client
        .modify(
            def,
            object::namespace(obj),
            object::name(obj),
            None,
            &|cur| {
                let mut cur = cur.clone();
                let rest: Vec<String> = object::finalizers(&cur)
                    .into_iter()
                    .filter(|f| f != finalizer)
                    .collect();
                cur["metadata"]["finalizers"] = json!(rest);
                Ok(cur)
            },
        )
        .await;
    match result {
        Err(e) if e.code == 404 => Ok(None),
        other => other.map(|_| None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_scheduled_pods_and_running_ephemeral_owners_hold_a_claim() {
        let pod = |node: &str, phase: &str| {
            json!({"metadata": {"name": "web", "namespace": "default"},
                   "spec": {"nodeName": node, "volumes": [
                       {"name": "data", "persistentVolumeClaim": {"claimName": "db"}},
                       {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]},
                   "status": {"phase": phase}})
        };
        assert!(pod_blocks_claim(&pod("n1", "Running"), "db"));
        assert!(!pod_blocks_claim(&pod("", "Pending"), "db"));
        assert!(pod_blocks_claim(&pod("n1", "Running"), "web-scratch"));
        assert!(!pod_blocks_claim(&pod("n1", "Succeeded"), "web-scratch"));
        assert!(pod_blocks_claim(&pod("n1", "Succeeded"), "db"));
        assert!(!pod_blocks_claim(&pod("n1", "Running"), "other"));
    }
}
