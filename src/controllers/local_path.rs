//! The built-in local-path provisioner, server side (k3s runs it as a pod; orc in
//! process): creates the `local-path` StorageClass at start when it is missing (never
//! overwriting the user's, and not as default when the user already has a default
//! class), and for each claim handed to `orc.io/local-path` with a node selected by the
//! scheduler creates a PersistentVolume `pvc-<claim uid>`: a host path
//! `<storage-path>/pvc-<uid>_<ns>_<claim>` with node affinity to that node, the class's
//! reclaim policy, pre-bound to the claim. The node's agent creates the directory, and
//! removes it (then the `orc.io/local-path` finalizer) once the volume is deleted.

use std::path::PathBuf;
use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::object;
use crate::api::storage::{
    default_class, local_path_dir_name, ANN_PROVISIONED_BY, ANN_SELECTED_NODE,
    ANN_STORAGE_PROVISIONER, HOSTNAME_LABEL, LOCAL_PATH_CLASS, LOCAL_PATH_FINALIZER,
    LOCAL_PATH_PROVISIONER,
};
use crate::api::table::DEFAULT_CLASS_ANNOTATION;

use super::events::{Recorder, NORMAL, WARNING};
use super::framework::{
    object_key, run_workers, wait_for_sync, Client, Informer, Reader, Reconciled, WorkQueue,
};
use super::persistent_volume::{claims, classes, volumes};

/// The component named in events.
pub const COMPONENT: &str = "orc.io/local-path";
const WORKERS: usize = 2;

/// The `local-path` class as it is created: the embedded one, without the default-class
/// annotation when `existing` classes already hold a default.
pub fn class_to_create(existing: &[Value]) -> Value {
    let mut class: Value = serde_yaml::from_str(crate::embedded::LOCAL_PATH_STORAGE_CLASS)
        .expect("the embedded StorageClass parses");
    if default_class(existing).is_some() {
        if let Some(a) = class["metadata"]["annotations"].as_object_mut() {
            a.remove(DEFAULT_CLASS_ANNOTATION);
        }
    }
    class
}

/// The PersistentVolume for `pvc` of `class` on `node`, its directory under `storage`.
pub fn volume_for(pvc: &Value, class: &Value, node: &str, storage: &std::path::Path) -> Value {
    let uid = object::uid(pvc).unwrap_or("");
    let ns = object::namespace(pvc).unwrap_or("");
    let name = object::name(pvc);
    let path = storage.join(local_path_dir_name(uid, ns, name));
    let request = pvc["spec"]["resources"]["requests"]["storage"].clone();
    json!({
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": format!("pvc-{uid}"),
            "annotations": {ANN_PROVISIONED_BY: LOCAL_PATH_PROVISIONER},
            "finalizers": [LOCAL_PATH_FINALIZER],
        },
        "spec": {
            "capacity": {"storage": request},
            "accessModes": pvc["spec"]["accessModes"],
            "persistentVolumeReclaimPolicy": class["reclaimPolicy"].as_str().unwrap_or("Delete"),
            "storageClassName": object::name(class),
            "volumeMode": "Filesystem",
            "hostPath": {"path": path.to_string_lossy(), "type": "DirectoryOrCreate"},
            "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                {"key": HOSTNAME_LABEL, "operator": "In", "values": [node]}
            ]}]}},
            "claimRef": {
                "apiVersion": "v1", "kind": "PersistentVolumeClaim",
                "namespace": ns, "name": name, "uid": uid,
                "resourceVersion": pvc["metadata"]["resourceVersion"],
            },
        },
    })
}

struct Ctx {
    client: Arc<dyn Client>,
    claims: Reader,
    classes: Reader,
    volumes: Reader,
    recorder: Recorder,
    storage: PathBuf,
}

/// Runs the provisioner (volumes under `storage`) until aborted.
pub async fn run(client: Arc<dyn Client>, storage: PathBuf) {
    super::framework::ensure_builtin(
        &*client,
        classes(),
        LOCAL_PATH_CLASS,
        "local-path StorageClass",
        class_to_create,
    )
    .await;
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            claims(),
            queue.clone(),
            Box::new(|e| vec![object_key(&e.kv.value)]),
        ),
        Informer::start(
            client.clone(),
            classes(),
            queue.clone(),
            Box::new(|_| vec![]),
        ),
        Informer::start(
            client.clone(),
            volumes(),
            queue.clone(),
            Box::new(|_| vec![]),
        ),
    ];
    wait_for_sync(&informers).await;
    let ctx = Arc::new(Ctx {
        recorder: Recorder::new(client.clone(), COMPONENT),
        client,
        claims: informers[0].reader(),
        classes: informers[1].reader(),
        volumes: informers[2].reader(),
        storage,
    });
    run_workers("local-path-provisioner", queue, WORKERS, move |key| {
        let ctx = ctx.clone();
        async move { provision(&ctx, &key).await }
    })
    .await;
}

async fn provision(ctx: &Ctx, key: &str) -> Reconciled {
    let Some(pvc) = ctx.claims.get(key).map(|kv| (*kv.value).clone()) else {
        return Ok(None);
    };
    let annotations = &pvc["metadata"]["annotations"];
    let ours = annotations[ANN_STORAGE_PROVISIONER] == LOCAL_PATH_PROVISIONER;
    let unbound = pvc["spec"]["volumeName"].as_str().unwrap_or("").is_empty();
    if !ours || !unbound || object::is_deleting(&pvc) {
        return Ok(None);
    }
    let class_name = crate::api::storage::class_of(&pvc);
    let Some(class) = ctx.classes.get(class_name).map(|kv| (*kv.value).clone()) else {
        return Ok(None);
    };
    if class["provisioner"] != LOCAL_PATH_PROVISIONER {
        return Ok(None);
    }
    let Some(node) = annotations[ANN_SELECTED_NODE].as_str() else {
        let message = "configuration error, no node was specified: the local-path provisioner needs a node chosen by the scheduler (volumeBindingMode: WaitForFirstConsumer)";
        ctx.recorder
            .record(&pvc, WARNING, "ProvisioningFailed", message)
            .await;
        return Ok(None);
    };
    let volume = volume_for(&pvc, &class, node, &ctx.storage);
    let pv_name = object::name(&volume).to_string();
    if ctx.volumes.get(&pv_name).is_some() {
        return Ok(None);
    }
    let message = format!("External provisioner is provisioning volume for claim \"{key}\"");
    ctx.recorder
        .record(&pvc, NORMAL, "Provisioning", &message)
        .await;
    match ctx.client.create(volumes(), None, volume).await {
        Ok(_) => {
            tracing::info!(claim = %key, volume = %pv_name, %node, "provisioned local-path volume");
            let message = format!("Successfully provisioned volume {pv_name}");
            ctx.recorder
                .record(&pvc, NORMAL, "ProvisioningSucceeded", &message)
                .await;
            Ok(None)
        }
        Err(e) if e.code == 409 => Ok(None),
        Err(e) => {
            let message = format!(
                "failed to provision volume with StorageClass \"{class_name}\": {}",
                e.message
            );
            ctx.recorder
                .record(&pvc, WARNING, "ProvisioningFailed", &message)
                .await;
            Err(e)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::table::is_default_class;

    #[test]
    fn the_class_is_default_unless_the_user_has_a_default_already() {
        let ours = class_to_create(&[]);
        assert_eq!(ours["metadata"]["name"], LOCAL_PATH_CLASS);
        assert_eq!(ours["provisioner"], LOCAL_PATH_PROVISIONER);
        assert_eq!(ours["volumeBindingMode"], "WaitForFirstConsumer");
        assert_eq!(ours["reclaimPolicy"], "Delete");
        assert!(is_default_class(&ours));
        let users =
            json!({"metadata": {"name": "nfs", "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}}});
        assert!(!is_default_class(&class_to_create(&[users])));
    }

    #[test]
    fn volumes_sit_under_the_storage_path_on_the_selected_node() {
        let pvc = json!({"metadata": {"name": "data", "namespace": "web", "uid": "abc", "resourceVersion": "3"},
            "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "2Gi"}}}});
        let class = class_to_create(&[]);
        let pv = volume_for(
            &pvc,
            &class,
            "n1",
            std::path::Path::new("/var/lib/orc/storage"),
        );
        assert_eq!(pv["metadata"]["name"], "pvc-abc");
        assert_eq!(
            pv["spec"]["hostPath"]["path"],
            "/var/lib/orc/storage/pvc-abc_web_data"
        );
        assert_eq!(pv["spec"]["capacity"]["storage"], "2Gi");
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert!(crate::api::storage::volume_names_node(&pv, "n1"));
        assert_eq!(pv["spec"]["claimRef"]["uid"], "abc");
        assert_eq!(pv["metadata"]["finalizers"], json!([LOCAL_PATH_FINALIZER]));
    }
}
