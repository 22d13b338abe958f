//! The binding controller against a real in-process Registry on the in-memory store.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use super::*;
use crate::apiserver::registry::{Registry, WriteOptions};
use crate::controllers::testutil::{self, wait_for};

fn phase(registry: &Registry, def: &ResourceDef, ns: Option<&str>, name: &str) -> String {
    registry
        .get(def, ns, name)
        .map(|kv| {
            kv.value["status"]["phase"]
                .as_str()
                .unwrap_or("")
                .to_string()
        })
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn a_claim_binds_a_static_volume_and_releases_it_when_deleted() {
    let registry = testutil::registry().await;
    let task = tokio::spawn(run(registry.clone()));
    let opts = WriteOptions::default();
    let pv = json!({"apiVersion": "v1", "kind": "PersistentVolume", "metadata": {"name": "pv1"},
        "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"],
                 "storageClassName": "manual", "hostPath": {"path": "/tmp/pv1"}}});
    registry.create(volumes(), None, pv, &opts).await.unwrap();
    let pvc = json!({"apiVersion": "v1", "kind": "PersistentVolumeClaim",
        "metadata": {"name": "data", "namespace": "default"},
        "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": "manual",
                 "resources": {"requests": {"storage": "500Mi"}}}});
    registry
        .create(claims(), Some("default"), pvc, &opts)
        .await
        .unwrap();
    let within = Duration::from_secs(10);
    wait_for("both sides Bound", within, || {
        phase(&registry, claims(), Some("default"), "data") == "Bound"
            && phase(&registry, volumes(), None, "pv1") == "Bound"
    })
    .await;
    let claim = registry.get(claims(), Some("default"), "data").unwrap();
    assert_eq!(claim.value["spec"]["volumeName"], "pv1");
    assert_eq!(claim.value["status"]["capacity"]["storage"], "1Gi");
    // No protection controller runs here: take the finalizer off by hand.
    let mut gone = (*claim.value).clone();
    gone["metadata"]["finalizers"] = json!([]);
    registry
        .update(claims(), Some("default"), "data", gone, None, &opts)
        .await
        .unwrap();
    registry
        .delete(claims(), Some("default"), "data", &DeleteOptions::default())
        .await
        .unwrap();
    wait_for("the retained volume Released", within, || {
        phase(&registry, volumes(), None, "pv1") == "Released"
    })
    .await;
    task.abort();
    let _ = Arc::strong_count(&registry);
}
