//! The StatefulSet controller against a real in-process registry on the in-memory
//! store, on a paused tokio clock; tests mark pods ready as a kubelet would.

use std::sync::Arc;

use serde_json::{json, Value};
use tokio::task::JoinSet;

use super::identity::{POD_INDEX_LABEL, POD_NAME_LABEL};
use crate::api::object;
use crate::controllers::clock::TokioClock;
use crate::controllers::workload_tests::{def, pods_def, wait_for, Harness};

fn sets() -> &'static crate::api::resources::ResourceDef {
    crate::api::resources::by_plural("apps", "v1", "statefulsets").expect("served")
}

fn claims() -> &'static crate::api::resources::ResourceDef {
    def("", "persistentvolumeclaims")
}

fn web(replicas: i64, policy: &str) -> Value {
    json!({"apiVersion": "apps/v1", "kind": "StatefulSet",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"replicas": replicas, "serviceName": "web", "podManagementPolicy": policy,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {"metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{"name": "c", "image": "busybox:1",
                    "volumeMounts": [{"name": "data", "mountPath": "/data"}]}]}},
            "volumeClaimTemplates": [{"metadata": {"name": "data"},
                "spec": {"accessModes": ["ReadWriteOnce"],
                         "resources": {"requests": {"storage": "1Gi"}}}}]}})
}

async fn started(set: Value) -> (Harness, JoinSet<()>) {
    let h = Harness::new().await;
    let mut tasks = JoinSet::new();
    tasks.spawn(super::run(h.registry.clone(), Arc::new(TokioClock::new())));
    h.create(sets(), set).await;
    (h, tasks)
}

fn names(h: &Harness) -> Vec<String> {
    let mut names: Vec<String> = h
        .pods()
        .iter()
        .map(|p| object::name(&p.value).to_string())
        .collect();
    names.sort();
    names
}

fn has_pod(h: &Harness, name: &str) -> bool {
    h.registry.get(pods_def(), Some("default"), name).is_ok()
}

fn image_of(h: &Harness, name: &str) -> String {
    h.get(pods_def(), name)["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

#[tokio::test(start_paused = true)]
async fn ordered_ready_pods_come_up_one_by_one_with_identity_and_claims() {
    let (h, _tasks) = started(web(3, "OrderedReady")).await;
    wait_for("web-0", || has_pod(&h, "web-0")).await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(names(&h), ["web-0"], "web-1 waits for web-0 to be ready");

    let pod = h.get(pods_def(), "web-0");
    assert_eq!(pod["spec"]["hostname"], "web-0");
    assert_eq!(pod["spec"]["subdomain"], "web");
    assert_eq!(pod["metadata"]["labels"][POD_NAME_LABEL], "web-0");
    assert_eq!(pod["metadata"]["labels"][POD_INDEX_LABEL], "0");
    assert_eq!(
        pod["spec"]["volumes"][0],
        json!({"name": "data", "persistentVolumeClaim": {"claimName": "data-web-0"}})
    );
    let claim = h.get(claims(), "data-web-0");
    assert_eq!(claim["metadata"]["labels"]["app"], "web");

    h.mark_ready("web-0").await;
    wait_for("web-1", || has_pod(&h, "web-1")).await;
    h.mark_ready("web-1").await;
    wait_for("web-2", || has_pod(&h, "web-2")).await;
    h.mark_ready("web-2").await;
    wait_for("status of 3 ready", || {
        let s = h.get(sets(), "web");
        s["status"]["readyReplicas"] == 3 && s["status"]["currentReplicas"] == 3
    })
    .await;
    let status = h.get(sets(), "web")["status"].clone();
    assert_eq!(status["currentRevision"], status["updateRevision"]);
    assert_eq!(status["observedGeneration"], 1);
    let revision = status["updateRevision"].as_str().unwrap().to_string();
    assert_eq!(
        h.get(pods_def(), "web-2")["metadata"]["labels"]["controller-revision-hash"],
        revision.as_str()
    );
    assert!(h
        .registry
        .get(
            def("apps", "controllerrevisions"),
            Some("default"),
            &revision
        )
        .is_ok());

    // A deleted pod comes back with the same name; its claim stays.
    h.delete(pods_def(), "web-1").await;
    wait_for("web-1 again", || has_pod(&h, "web-1")).await;
    assert!(h
        .registry
        .get(claims(), Some("default"), "data-web-1")
        .is_ok());
    h.mark_ready("web-1").await;

    // Scale down: the highest ordinal goes first, its claim stays (Retain).
    h.modify(sets(), "web", |s| s["spec"]["replicas"] = json!(1))
        .await;
    wait_for("web-2 gone", || !has_pod(&h, "web-2")).await;
    wait_for("web-1 gone", || !has_pod(&h, "web-1")).await;
    assert_eq!(names(&h), ["web-0"]);
    assert!(h
        .registry
        .get(claims(), Some("default"), "data-web-2")
        .is_ok());
}

#[tokio::test(start_paused = true)]
async fn a_rolling_update_replaces_only_ordinals_at_or_above_the_partition() {
    let (h, _tasks) = started(web(3, "Parallel")).await;
    wait_for("three pods", || h.pods().len() == 3).await;
    for name in ["web-0", "web-1", "web-2"] {
        h.mark_ready(name).await;
    }
    wait_for("ready", || {
        h.get(sets(), "web")["status"]["readyReplicas"] == 3
    })
    .await;
    let first = h.get(sets(), "web")["status"]["updateRevision"].clone();

    h.modify(sets(), "web", |s| {
        s["spec"]["updateStrategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 1}});
        s["spec"]["template"]["spec"]["containers"][0]["image"] = json!("busybox:2");
    })
    .await;
    wait_for("web-2 updated", || {
        has_pod(&h, "web-2") && image_of(&h, "web-2") == "busybox:2"
    })
    .await;
    assert_eq!(image_of(&h, "web-1"), "busybox:1", "one at a time");
    h.mark_ready("web-2").await;
    wait_for("web-1 updated", || {
        has_pod(&h, "web-1") && image_of(&h, "web-1") == "busybox:2"
    })
    .await;
    h.mark_ready("web-1").await;
    wait_for("two updated", || {
        h.get(sets(), "web")["status"]["updatedReplicas"] == 2
    })
    .await;
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    assert_eq!(image_of(&h, "web-0"), "busybox:1", "below the partition");
    let status = h.get(sets(), "web")["status"].clone();
    assert_eq!(status["currentRevision"], first);
    assert_ne!(status["updateRevision"], first);
    assert_eq!(status["currentReplicas"], 1);
}

#[tokio::test(start_paused = true)]
async fn claims_of_scaled_down_pods_are_owned_by_them_when_the_policy_says_delete() {
    let mut set = web(2, "Parallel");
    set["spec"]["persistentVolumeClaimRetentionPolicy"] =
        json!({"whenDeleted": "Delete", "whenScaled": "Delete"});
    let (h, _tasks) = started(set).await;
    wait_for("claims", || {
        h.registry
            .get(claims(), Some("default"), "data-web-1")
            .is_ok()
    })
    .await;
    let set_uid = h.get(sets(), "web")["metadata"]["uid"].clone();
    let owners = |name: &str| h.get(claims(), name)["metadata"]["ownerReferences"].clone();
    assert_eq!(owners("data-web-1")[0]["uid"], set_uid);
    assert_eq!(owners("data-web-1")[0]["kind"], "StatefulSet");
    // web-1 is ready so it may be scaled away; web-0 stays.
    wait_for("pods", || h.pods().len() == 2).await;
    h.mark_ready("web-0").await;
    h.mark_ready("web-1").await;
    h.modify(sets(), "web", |s| s["spec"]["replicas"] = json!(1))
        .await;
    wait_for("web-1 gone", || !has_pod(&h, "web-1")).await;
    let refs = owners("data-web-1");
    assert_eq!(refs.as_array().map(Vec::len), Some(1));
    assert_eq!(refs[0]["kind"], "Pod");
    assert_eq!(refs[0]["name"], "web-1");
    assert_eq!(owners("data-web-0")[0]["uid"], set_uid);
}
