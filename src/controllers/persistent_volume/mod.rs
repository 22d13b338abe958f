//! PersistentVolume binding controller (upstream's `persistentvolume-binder`): binds
//! claims to static volumes (class, size, access modes, selector, `volumeName` and
//! `claimRef` pre-binding), hands claims without a match to their class's provisioner
//! (at once for `Immediate` classes, once the scheduler picked a node for
//! `WaitForFirstConsumer` ones), keeps the phases of both sides (Available, Bound,
//! Released, Failed, Lost) and reclaims released volumes (Retain keeps them, Delete
//! deletes provisioned ones, Recycle is refused as upstream does for volumes without a
//! recycler). Claims without a class get the default class once one exists.

pub mod matching;

use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::storage::{
    class_of, default_class, ANN_BETA_STORAGE_CLASS, ANN_BETA_STORAGE_PROVISIONER,
    ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, ANN_PROVISIONED_BY, ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER, LOCAL_PATH_PROVISIONER,
};
use crate::apiserver::registry::DeleteOptions;
use crate::store::EventType;

use super::events::{Recorder, NORMAL, WARNING};
use super::framework::{
    object_key, run_workers, wait_for_sync, Client, Informer, Reader, Reconciled, WorkQueue,
};
use matching::{
    bound_claim_status, claim_bound_to, find_matching_volume, is_volume_bound_to_claim,
    volume_bound_to, volume_unfit_for_claim,
};

/// The component named in events.
pub const COMPONENT: &str = "persistentvolume-controller";
/// Keys of the work queue: a claim or a volume.
const CLAIM: &str = "claim:";
const VOLUME: &str = "volume:";
const CLASSES: &str = "classes";
const WORKERS: usize = 2;
/// The provisioner of classes that never provision (local volumes made by hand).
pub const NO_PROVISIONER: &str = "kubernetes.io/no-provisioner";

pub fn claims() -> &'static ResourceDef {
    resources::by_plural("", "v1", "persistentvolumeclaims").expect("served")
}

pub fn volumes() -> &'static ResourceDef {
    resources::by_plural("", "v1", "persistentvolumes").expect("served")
}

pub fn classes() -> &'static ResourceDef {
    resources::by_plural("storage.k8s.io", "v1", "storageclasses").expect("served")
}

struct Ctx {
    client: Arc<dyn Client>,
    claims: Reader,
    volumes: Reader,
    classes: Reader,
    recorder: Recorder,
}

/// Runs the controller until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            claims(),
            queue.clone(),
            Box::new(|event| {
                let pvc = &event.kv.value;
                let mut keys = vec![format!("{CLAIM}{}", object_key(pvc))];
                if let Some(v) = pvc["spec"]["volumeName"].as_str().filter(|v| !v.is_empty()) {
                    keys.push(format!("{VOLUME}{v}"));
                }
                keys
            }),
        ),
        Informer::start(
            client.clone(),
            volumes(),
            queue.clone(),
            Box::new(|event| {
                let pv = &event.kv.value;
                let mut keys = Vec::new();
                if event.kind != EventType::Deleted {
                    keys.push(format!("{VOLUME}{}", object::name(pv)));
                }
                let r = &pv["spec"]["claimRef"];
                if let (Some(ns), Some(name)) = (r["namespace"].as_str(), r["name"].as_str()) {
                    keys.push(format!("{CLAIM}{ns}/{name}"));
                }
                keys
            }),
        ),
        // A new (default) class may let pending claims go on: look at them again.
        Informer::start(
            client.clone(),
            classes(),
            queue.clone(),
            Box::new(|_| vec![CLASSES.to_string()]),
        ),
    ];
    wait_for_sync(&informers).await;
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        claims: informers[0].reader(),
        volumes: informers[1].reader(),
        classes: informers[2].reader(),
    });
    let requeue = queue.clone();
    run_workers(COMPONENT, queue, WORKERS, move |key| {
        let (ctx, requeue) = (ctx.clone(), requeue.clone());
        async move {
            if key == CLASSES {
                for kv in ctx.claims.list() {
                    if kv.value["spec"]["volumeName"]
                        .as_str()
                        .unwrap_or("")
                        .is_empty()
                    {
                        requeue.add(format!("{CLAIM}{}", object_key(&kv.value)));
                    }
                }
                Ok(None)
            } else if let Some(claim) = key.strip_prefix(CLAIM) {
                sync_claim(&ctx, claim).await
            } else if let Some(volume) = key.strip_prefix(VOLUME) {
                sync_volume(&ctx, volume).await
            } else {
                Ok(None)
            }
        }
    })
    .await;
}

fn cached(reader: &Reader, key: &str) -> Option<Value> {
    reader.get(key).map(|kv| (*kv.value).clone())
}

/// Ignores a write that lost a race (the object changed or went away): the watch brings
/// the new state and the key back.
fn settled(result: Result<(), ApiError>) -> Reconciled {
    match result {
        Err(e) if matches!(e.code, 404 | 409) => Ok(None),
        other => other.map(|()| None),
    }
}

async fn set_claim_phase(ctx: &Ctx, pvc: &Value, phase: &str) -> Result<(), ApiError> {
    if pvc["status"]["phase"] == phase {
        return Ok(());
    }
    let (ns, name) = (object::namespace(pvc), object::name(pvc));
    ctx.client
        .modify(claims(), ns, name, Some("status"), &|cur| {
            let mut cur = cur.clone();
            cur["status"]["phase"] = json!(phase);
            Ok(cur)
        })
        .await
        .map(drop)
}

async fn set_volume_phase(
    ctx: &Ctx,
    pv: &Value,
    phase: &str,
    reason: Option<(&str, &str)>,
) -> Result<(), ApiError> {
    let (want_reason, want_message) = reason.unwrap_or(("", ""));
    let same = pv["status"]["phase"] == phase
        && pv["status"]["reason"].as_str().unwrap_or("") == want_reason;
    if same {
        return Ok(());
    }
    ctx.client
        .modify(volumes(), None, object::name(pv), Some("status"), &|cur| {
            let mut cur = cur.clone();
            cur["status"]["phase"] = json!(phase);
            let status = cur["status"].as_object_mut().expect("set above");
            status.remove("reason");
            status.remove("message");
            if !want_reason.is_empty() {
                status.insert("reason".into(), json!(want_reason));
                status.insert("message".into(), json!(want_message));
            }
            Ok(cur)
        })
        .await
        .map(drop)
}

/// Binds the claim and the volume both ways, each step only if not done yet.
async fn bind(ctx: &Ctx, pvc: &Value, pv: &Value) -> Result<(), ApiError> {
    let (ns, name) = (object::namespace(pvc), object::name(pvc));
    let bound_volume = volume_bound_to(pv, pvc);
    let pv_ref_ok = pv["spec"]["claimRef"]["uid"] == pvc["metadata"]["uid"]
        && bound_volume["metadata"]["annotations"] == pv["metadata"]["annotations"];
    let pv = if pv_ref_ok {
        pv.clone()
    } else {
        let written = ctx
            .client
            .update(volumes(), None, object::name(pv), bound_volume)
            .await?;
        (*written.kv.value).clone()
    };
    set_volume_phase(ctx, &pv, "Bound", None).await?;
    let bound_claim = claim_bound_to(pvc, &pv);
    let pvc = if bound_claim == *pvc {
        pvc.clone()
    } else {
        let written = ctx.client.update(claims(), ns, name, bound_claim).await?;
        (*written.kv.value).clone()
    };
    let status = bound_claim_status(&pvc, &pv);
    if status != pvc["status"] {
        ctx.client
            .modify(claims(), ns, name, Some("status"), &|cur| {
                let mut cur = cur.clone();
                cur["status"] = status.clone();
                Ok(cur)
            })
            .await?;
    }
    tracing::info!(claim = %object_key(&pvc), volume = %object::name(&pv), "bound");
    Ok(())
}

async fn sync_claim(ctx: &Ctx, key: &str) -> Reconciled {
    let Some(pvc) = cached(&ctx.claims, key) else {
        return Ok(None);
    };
    if object::is_deleting(&pvc) {
        return Ok(None);
    }
    if pvc["metadata"]["annotations"][ANN_BIND_COMPLETED].is_null() {
        sync_unbound_claim(ctx, &pvc).await
    } else {
        sync_bound_claim(ctx, &pvc).await
    }
}

async fn sync_bound_claim(ctx: &Ctx, pvc: &Value) -> Reconciled {
    let volume_name = pvc["spec"]["volumeName"].as_str().unwrap_or("");
    let lost = |message: &'static str| async move {
        if pvc["status"]["phase"] != "Lost" {
            ctx.recorder
                .record(pvc, WARNING, "ClaimLost", message)
                .await;
        }
        settled(set_claim_phase(ctx, pvc, "Lost").await)
    };
    if volume_name.is_empty() {
        return lost(
            "Bound claim has lost reference to PersistentVolume. Data on the volume is lost!",
        )
        .await;
    }
    let Some(pv) = cached(&ctx.volumes, volume_name) else {
        return lost("Bound claim has lost its PersistentVolume. Data on the volume is lost!")
            .await;
    };
    if !pv["spec"]["claimRef"].is_object() || is_volume_bound_to_claim(&pv, pvc) {
        return settled(bind(ctx, pvc, &pv).await);
    }
    if pvc["status"]["phase"] != "Lost" {
        ctx.recorder
            .record(
                pvc,
                WARNING,
                "ClaimMisbound",
                "Two claims are bound to the same volume, this one is bound incorrectly",
            )
            .await;
    }
    settled(set_claim_phase(ctx, pvc, "Lost").await)
}

async fn sync_unbound_claim(ctx: &Ctx, pvc: &Value) -> Reconciled {
    let (ns, name) = (object::namespace(pvc), object::name(pvc));
    // Retroactive default class (upstream since 1.28): a claim written without a class
    // gets the default one once it exists.
    let no_class = pvc["spec"]
        .get("storageClassName")
        .is_none_or(Value::is_null)
        && pvc["metadata"]["annotations"][ANN_BETA_STORAGE_CLASS].is_null();
    if no_class && pvc["spec"]["volumeName"].as_str().unwrap_or("").is_empty() {
        let all = ctx.classes.list();
        if let Some(class) = default_class(all.iter().map(|kv| &*kv.value)) {
            let result = ctx
                .client
                .modify(claims(), ns, name, None, &|cur| {
                    let mut cur = cur.clone();
                    if cur["spec"]
                        .get("storageClassName")
                        .is_none_or(Value::is_null)
                    {
                        cur["spec"]["storageClassName"] = json!(class);
                    }
                    Ok(cur)
                })
                .await;
            return settled(result.map(drop));
        }
    }
    let volume_name = pvc["spec"]["volumeName"].as_str().unwrap_or("");
    if !volume_name.is_empty() {
        return sync_prebound_claim(ctx, pvc, volume_name).await;
    }
    let class_name = class_of(pvc);
    let class = (!class_name.is_empty())
        .then(|| cached(&ctx.classes, class_name))
        .flatten();
    let delay = class
        .as_ref()
        .is_some_and(|c| c["volumeBindingMode"] == "WaitForFirstConsumer");
    let all = ctx.volumes.list();
    if let Some(pv) = find_matching_volume(pvc, all.iter().map(|kv| &*kv.value), None, delay) {
        let pv = pv.clone();
        return settled(bind(ctx, pvc, &pv).await);
    }
    settled(set_claim_phase(ctx, pvc, "Pending").await)?;
    match class {
        None if class_name.is_empty() => {
            ctx.recorder
                .record(
                    pvc,
                    NORMAL,
                    "FailedBinding",
                    "no persistent volumes available for this claim and no storage class is set",
                )
                .await;
        }
        None => {
            let message = format!("storageclass.storage.k8s.io \"{class_name}\" not found");
            ctx.recorder
                .record(pvc, WARNING, "ProvisioningFailed", &message)
                .await;
        }
        Some(class) => {
            let provisioner = class["provisioner"].as_str().unwrap_or("");
            let selected = !pvc["metadata"]["annotations"][ANN_SELECTED_NODE].is_null();
            if delay && !selected {
                ctx.recorder
                    .record(
                        pvc,
                        NORMAL,
                        "WaitForFirstConsumer",
                        "waiting for first consumer to be created before binding",
                    )
                    .await;
            } else if provisioner == NO_PROVISIONER {
                ctx.recorder
                    .record(pvc, NORMAL, "FailedBinding", "no persistent volumes available for this claim and no storage class is set")
                    .await;
            } else {
                return settled(ask_provisioner(ctx, pvc, provisioner).await);
            }
        }
    }
    Ok(None)
}

/// Names the claim's provisioner in its annotations (what external provisioners and the
/// built-in local-path one look for).
async fn ask_provisioner(ctx: &Ctx, pvc: &Value, provisioner: &str) -> Result<(), ApiError> {
    let annotations = &pvc["metadata"]["annotations"];
    if annotations[ANN_STORAGE_PROVISIONER] == provisioner
        && annotations[ANN_BETA_STORAGE_PROVISIONER] == provisioner
    {
        return Ok(());
    }
    let (ns, name) = (object::namespace(pvc), object::name(pvc));
    ctx.client
        .modify(claims(), ns, name, None, &|cur| {
            let mut cur = cur.clone();
            let meta = object::meta_mut(&mut cur);
            let a = meta.entry("annotations").or_insert_with(|| json!({}));
            a[ANN_STORAGE_PROVISIONER] = json!(provisioner);
            a[ANN_BETA_STORAGE_PROVISIONER] = json!(provisioner);
            Ok(cur)
        })
        .await?;
    if provisioner != LOCAL_PATH_PROVISIONER {
        let message = format!("Waiting for a volume to be created either by the external provisioner '{provisioner}' or manually by the system administrator. If volume creation is delayed, please verify that the provisioner is running and correctly registered.");
        ctx.recorder
            .record(pvc, NORMAL, "ExternalProvisioning", &message)
            .await;
    }
    Ok(())
}

/// A claim naming its volume (`spec.volumeName`) before it is bound.
async fn sync_prebound_claim(ctx: &Ctx, pvc: &Value, volume_name: &str) -> Reconciled {
    let Some(pv) = cached(&ctx.volumes, volume_name) else {
        return settled(set_claim_phase(ctx, pvc, "Pending").await);
    };
    if pv["spec"]["claimRef"].is_object() && !is_volume_bound_to_claim(&pv, pvc) {
        settled(set_claim_phase(ctx, pvc, "Pending").await)?;
        let message = format!("volume \"{volume_name}\" already bound to a different claim.");
        ctx.recorder
            .record(pvc, WARNING, "FailedBinding", &message)
            .await;
        return Ok(None);
    }
    if !pv["spec"]["claimRef"].is_object() {
        if let Some(why) = volume_unfit_for_claim(&pv, pvc) {
            settled(set_claim_phase(ctx, pvc, "Pending").await)?;
            let message = format!("Cannot bind to requested volume \"{volume_name}\": {why}");
            ctx.recorder
                .record(pvc, WARNING, "VolumeMismatch", &message)
                .await;
            return Ok(None);
        }
    }
    settled(bind(ctx, pvc, &pv).await)
}

async fn sync_volume(ctx: &Ctx, name: &str) -> Reconciled {
    let Some(pv) = cached(&ctx.volumes, name) else {
        return Ok(None);
    };
    if object::is_deleting(&pv) && pv["status"]["phase"] != "Released" {
        return Ok(None);
    }
    let claim_ref = &pv["spec"]["claimRef"];
    if !claim_ref.is_object() || claim_ref["uid"].as_str().unwrap_or("").is_empty() {
        return settled(set_volume_phase(ctx, &pv, "Available", None).await);
    }
    let claim_key = format!(
        "{}/{}",
        claim_ref["namespace"].as_str().unwrap_or(""),
        claim_ref["name"].as_str().unwrap_or("")
    );
    let claim =
        cached(&ctx.claims, &claim_key).filter(|c| object::uid(c) == claim_ref["uid"].as_str());
    let Some(pvc) = claim else {
        return release(ctx, &pv).await;
    };
    let claim_volume = pvc["spec"]["volumeName"].as_str().unwrap_or("");
    if claim_volume == name {
        return settled(set_volume_phase(ctx, &pv, "Bound", None).await);
    }
    if claim_volume.is_empty() {
        // Being bound: the claim's sync finishes it.
        return Ok(None);
    }
    // The claim is bound to another volume: undo our half of a binding.
    if pv["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER].is_null() {
        return Ok(None);
    }
    let result = ctx
        .client
        .modify(volumes(), None, name, None, &|cur| {
            let mut cur = cur.clone();
            if let Some(spec) = cur["spec"].as_object_mut() {
                spec.remove("claimRef");
            }
            if let Some(a) = cur["metadata"]["annotations"].as_object_mut() {
                a.remove(ANN_BOUND_BY_CONTROLLER);
            }
            Ok(cur)
        })
        .await;
    settled(result.map(drop))
}

/// The claim of a bound volume is gone: Released, then the reclaim policy.
async fn release(ctx: &Ctx, pv: &Value) -> Reconciled {
    let phase = pv["status"]["phase"].as_str().unwrap_or("");
    if phase == "Failed" {
        return Ok(None);
    }
    if phase != "Released" {
        settled(set_volume_phase(ctx, pv, "Released", None).await)?;
    }
    match pv["spec"]["persistentVolumeReclaimPolicy"]
        .as_str()
        .unwrap_or("Retain")
    {
        "Recycle" => {
            let message = "No recycler plugin found for the volume!";
            ctx.recorder
                .record(pv, WARNING, "VolumeFailedRecycle", message)
                .await;
            settled(
                set_volume_phase(ctx, pv, "Failed", Some(("VolumeFailedRecycle", message))).await,
            )
        }
        "Delete" => {
            let provisioner = pv["metadata"]["annotations"][ANN_PROVISIONED_BY]
                .as_str()
                .unwrap_or("");
            if provisioner == LOCAL_PATH_PROVISIONER {
                if object::is_deleting(pv) {
                    return Ok(None);
                }
                tracing::info!(volume = %object::name(pv), "deleting released volume");
                let deleted = ctx
                    .client
                    .delete(volumes(), None, object::name(pv), &DeleteOptions::default())
                    .await;
                return settled(deleted.map(drop));
            }
            if !provisioner.is_empty() {
                // An external provisioner deletes its own volumes.
                return Ok(None);
            }
            let message = format!("error getting deleter volume plugin for volume \"{}\": no deletable volume plugin matched", object::name(pv));
            ctx.recorder
                .record(pv, WARNING, "VolumeFailedDelete", &message)
                .await;
            settled(
                set_volume_phase(ctx, pv, "Failed", Some(("VolumeFailedDelete", &message))).await,
            )
        }
        _ => Ok(None),
    }
}

#[cfg(test)]
mod tests;
