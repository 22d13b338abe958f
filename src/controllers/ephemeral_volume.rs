//! Ephemeral volume controller (upstream `ephemeral-volume-controller`): for every
//! generic ephemeral volume of a pod, creates the PersistentVolumeClaim `<pod>-<volume>`
//! from the volume's `volumeClaimTemplate`, with the pod as its controlling owner, so the
//! garbage collector deletes the claim with the pod. A claim of that name the pod does
//! not own is never adopted: the pod gets a Warning event and waits.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tracing::debug;

use crate::api::ephemeral::{claim_is_for_pod, claim_name as ephemeral_claim_name};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::store::EventType;

use super::events::{Recorder, WARNING};
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};

/// Pods reconciled at once.
const WORKERS: usize = 2;
/// When a pod blocked by a claim it does not own is looked at again.
const FOREIGN_CLAIM_RETRY: Duration = Duration::from_secs(30);
/// Event reason upstream gives a volume it cannot set up for the pod.
pub const FAILED_BINDING: &str = "FailedBinding";

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

fn claims() -> &'static ResourceDef {
    resources::by_plural("", "v1", "persistentvolumeclaims").expect("served")
}

/// Runs the controller until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            pods(),
            queue.clone(),
            Box::new(|event| match event.kind {
                EventType::Deleted => vec![],
                _ if has_ephemeral_volumes(&event.kv.value) => vec![object_key(&event.kv.value)],
                _ => vec![],
            }),
        ),
        // A claim deleted (or changed) under its pod is made again.
        Informer::start(
            client.clone(),
            claims(),
            queue.clone(),
            Box::new(|event| {
                let pvc = &event.kv.value;
                let ns = object::namespace(pvc).unwrap_or("");
                pvc["metadata"]["ownerReferences"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|r| r["kind"] == "Pod" && r["controller"].as_bool() == Some(true))
                    .filter_map(|r| r["name"].as_str())
                    .map(|pod| format!("{ns}/{pod}"))
                    .collect()
            }),
        ),
    ];
    wait_for_sync(&informers).await;
    let recorder = Arc::new(Recorder::new(client.clone(), "ephemeral_volume"));
    run_workers("ephemeral-volume-controller", queue, WORKERS, move |key| {
        let client = client.clone();
        let recorder = recorder.clone();
        async move { reconcile(&*client, &recorder, &key).await }
    })
    .await;
}

fn has_ephemeral_volumes(pod: &Value) -> bool {
    ephemeral_volumes(pod).next().is_some()
}

fn ephemeral_volumes(pod: &Value) -> impl Iterator<Item = &Value> {
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|v| v["ephemeral"].is_object())
}

/// The claim of ephemeral volume `volume` of `pod` (upstream: the template's labels,
/// annotations and spec; the pod as controlling owner that blocks its deletion).
pub fn desired_claim(pod: &Value, volume: &Value) -> Value {
    let template = &volume["ephemeral"]["volumeClaimTemplate"];
    let pod_name = object::name(pod);
    let mut metadata = json!({
        "name": ephemeral_claim_name(pod_name, volume["name"].as_str().unwrap_or("")),
        "namespace": object::namespace(pod),
        "ownerReferences": [{
            "apiVersion": "v1", "kind": "Pod", "name": pod_name, "uid": object::uid(pod),
            "controller": true, "blockOwnerDeletion": true,
        }],
    });
    for field in ["labels", "annotations"] {
        if template["metadata"][field].is_object() {
            metadata[field] = template["metadata"][field].clone();
        }
    }
    json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
           "metadata": metadata, "spec": template["spec"]})
}

/// Creates the missing claims of a pod's ephemeral volumes.
async fn reconcile(client: &dyn Client, recorder: &Recorder, key: &str) -> Reconciled {
    let (ns, name) = split_key(key);
    let Ok(pod) = client.get(pods(), ns, name) else {
        return Ok(None);
    };
    let pod = &pod.value;
    if object::is_deleting(pod) {
        return Ok(None);
    }
    let ns = object::namespace(pod).unwrap_or("");
    let uid = object::uid(pod).unwrap_or("");
    let mut retry = None;
    for volume in ephemeral_volumes(pod) {
        let claim = ephemeral_claim_name(name, volume["name"].as_str().unwrap_or(""));
        match client.get(claims(), Some(ns), &claim) {
            Ok(existing) if claim_is_for_pod(&existing.value, uid) => {}
            Ok(_) => {
                let message = format!(
                    "ephemeral volume {}: PVC {ns}/{claim} was not created for pod {ns}/{name} (pod is not owner)",
                    volume["name"].as_str().unwrap_or("")
                );
                recorder
                    .record(pod, WARNING, FAILED_BINDING, &message)
                    .await;
                retry = Some(FOREIGN_CLAIM_RETRY);
            }
            Err(e) if e.code == 404 => {
                debug!(pod = %key, %claim, "creating the claim of an ephemeral volume");
                match client
                    .create(claims(), Some(ns), desired_claim(pod, volume))
                    .await
                {
                    Ok(_) => {}
                    // Made meanwhile (the next event decides), or the namespace is going.
                    Err(e) if matches!(e.code, 403 | 409) => {}
                    Err(e) => {
                        let message = format!(
                            "ephemeral volume {}: create PVC {claim}: {}",
                            volume["name"].as_str().unwrap_or(""),
                            e.message
                        );
                        recorder
                            .record(pod, WARNING, FAILED_BINDING, &message)
                            .await;
                        return Err(e);
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Ok(retry)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{DeleteOptions, Registry, WriteOptions};
    use crate::controllers::testutil::{self, wait_for};

    fn claim(registry: &Registry, name: &str) -> Option<Value> {
        registry
            .get(claims(), Some("default"), name)
            .ok()
            .map(|kv| (*kv.value).clone())
    }

    fn pod() -> Value {
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "web", "namespace": "default"},
               "spec": {"containers": [{"name": "c", "image": "busybox"}],
                        "volumes": [{"name": "scratch", "ephemeral": {"volumeClaimTemplate": {
                            "metadata": {"labels": {"app": "web"}},
                            "spec": {"accessModes": ["ReadWriteOnce"],
                                     "resources": {"requests": {"storage": "1Gi"}}}}}}]}})
    }

    #[test]
    fn the_claim_copies_the_template_and_is_controlled_by_the_pod() {
        let mut p = pod();
        p["metadata"]["uid"] = json!("u1");
        let c = desired_claim(&p, &p["spec"]["volumes"][0]);
        assert_eq!(c["metadata"]["name"], "web-scratch");
        assert_eq!(c["metadata"]["namespace"], "default");
        assert_eq!(c["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(c["spec"]["resources"]["requests"]["storage"], "1Gi");
        assert_eq!(
            c["metadata"]["ownerReferences"],
            json!([{"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": "u1",
                    "controller": true, "blockOwnerDeletion": true}])
        );
        assert!(claim_is_for_pod(&c, "u1"));
        assert!(!claim_is_for_pod(&c, "u2"));
    }

    #[tokio::test(start_paused = true)]
    async fn claims_are_made_for_the_pod_and_again_after_a_delete_but_never_adopted() {
        let registry = testutil::registry().await;
        let client: Arc<dyn Client> = registry.clone();
        let task = tokio::spawn(run(client));
        let within = Duration::from_secs(10);
        let created = registry
            .create(pods(), Some("default"), pod(), &WriteOptions::default())
            .await
            .unwrap();
        let uid = object::uid(&created.kv.value).unwrap().to_string();
        wait_for("the claim of the ephemeral volume", within, || {
            claim(&registry, "web-scratch").is_some()
        })
        .await;
        assert!(claim_is_for_pod(
            &claim(&registry, "web-scratch").unwrap(),
            &uid
        ));

        registry
            .delete(
                claims(),
                Some("default"),
                "web-scratch",
                &DeleteOptions::default(),
            )
            .await
            .unwrap();
        wait_for("the deleted claim made again", within, || {
            claim(&registry, "web-scratch").is_some()
        })
        .await;

        // A claim of the name that another owner made is left alone and told about.
        let foreign = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
            "metadata": {"name": "other-scratch", "namespace": "default"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}}});
        registry
            .create(claims(), Some("default"), foreign, &WriteOptions::default())
            .await
            .unwrap();
        let mut other = pod();
        other["metadata"]["name"] = json!("other");
        registry
            .create(pods(), Some("default"), other, &WriteOptions::default())
            .await
            .unwrap();
        let events = resources::by_plural("", "v1", "events").unwrap();
        wait_for("a FailedBinding event on the pod", within, || {
            registry
                .list(events, Some("default"), None, 100, &|kv| {
                    kv.value["reason"] == FAILED_BINDING
                        && kv.value["involvedObject"]["name"] == "other"
                })
                .items
                .iter()
                .any(|e| {
                    e.value["message"].as_str().unwrap_or("").contains(
                        "PVC default/other-scratch was not created for pod default/other (pod is not owner)",
                    )
                })
        })
        .await;
        let kept = claim(&registry, "other-scratch").unwrap();
        assert!(kept["metadata"]["ownerReferences"].is_null(), "not adopted");
        task.abort();
    }
}
