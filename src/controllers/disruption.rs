//! Disruption controller: keeps each PodDisruptionBudget's status (healthy, desired and
//! expected pods, disruptions allowed, pods promised to evictions, the DisruptionAllowed
//! condition) from the pods it covers and their controllers' scale, as upstream's
//! `DisruptionController`. The arithmetic lives in `api::disruption`.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::api::disruption::{self as budget, Counts, DisruptionError};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::store::{Event, KeyValue};

use super::clock::Clock;
use super::events::{Recorder, WARNING};
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};
use super::pods::controller_ref;

/// Budgets reconciled at once.
const WORKERS: usize = 2;

fn pdbs() -> &'static ResourceDef {
    resources::by_plural("policy", "v1", "poddisruptionbudgets").expect("served")
}

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

/// Keys of the budgets in the pod's namespace covering any version of the pod.
fn budgets_covering(client: &dyn Client, event: &Event) -> Vec<String> {
    let mut versions = vec![&*event.kv.value];
    if let Some(prev) = &event.prev {
        versions.push(&*prev.value);
    }
    let Some(ns) = object::namespace(&event.kv.value) else {
        return vec![];
    };
    client
        .list(pdbs(), Some(ns), &|kv: &KeyValue| {
            budget::controller_selector(&kv.value)
                .is_some_and(|c| versions.iter().any(|p| c.matches(p)))
        })
        .iter()
        .map(|kv| object_key(&kv.value))
        .collect()
}

/// Runs the controller until aborted.
pub async fn run(client: Arc<dyn Client>, clock: Arc<dyn Clock>) {
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            pdbs(),
            queue.clone(),
            Box::new(|e| vec![object_key(&e.kv.value)]),
        ),
        Informer::start(client.clone(), pods(), queue.clone(), {
            let client = client.clone();
            Box::new(move |e| budgets_covering(&*client, e))
        }),
    ];
    wait_for_sync(&informers).await;
    let recorder = Arc::new(Recorder::new(client.clone(), "controllermanager"));
    run_workers("disruption-controller", queue, WORKERS, move |key| {
        let (client, clock, recorder) = (client.clone(), clock.clone(), recorder.clone());
        async move { reconcile(&*client, &*clock, &recorder, &key).await }
    })
    .await;
}

async fn reconcile(
    client: &dyn Client,
    clock: &dyn Clock,
    recorder: &Recorder,
    key: &str,
) -> Reconciled {
    let (Some(ns), name) = split_key(key) else {
        return Ok(None);
    };
    let Ok(kv) = client.get(pdbs(), Some(ns), name) else {
        return Ok(None);
    };
    let pdb = &*kv.value;
    match try_sync(client, clock, recorder, pdb).await {
        Ok(recheck) => Ok(recheck),
        Err(Failure::Api(e)) if e.code == 409 => Err(e),
        Err(failure) => {
            let message = failure.to_string();
            tracing::warn!(pdb = %key, error = %message, "disruption budget sync failed");
            let now = clock.now();
            client
                .modify(pdbs(), Some(ns), name, Some("status"), &|cur| {
                    let mut cur = cur.clone();
                    budget::fail_safe(&mut cur["status"], &message, now);
                    Ok(cur)
                })
                .await?;
            Err(ApiError::internal(message))
        }
    }
}

#[derive(Debug, thiserror::Error)]
enum Failure {
    #[error(transparent)]
    Budget(#[from] DisruptionError),
    #[error(transparent)]
    Api(#[from] ApiError),
}

/// Upstream `trySync`: the status from the covered pods; `Some(d)` when a pending
/// eviction expires after `d` and the budget must be looked at again then.
async fn try_sync(
    client: &dyn Client,
    clock: &dyn Clock,
    recorder: &Recorder,
    pdb: &Value,
) -> Result<Option<std::time::Duration>, Failure> {
    let ns = object::namespace(pdb).unwrap_or("default");
    let name = object::name(pdb);
    let coverage = budget::controller_selector(pdb)
        .ok_or_else(|| ApiError::internal("the budget's selector does not parse"))?;
    let covered = client.list(pods(), Some(ns), &|kv: &KeyValue| {
        coverage.matches(&kv.value)
    });
    let pods: Vec<&Value> = covered.iter().map(|kv| &*kv.value).collect();
    let scale = if budget::needs_controller_scale(pdb) {
        let (scale, unmanaged) = expected_scale(client, ns, &pods)?;
        if !unmanaged.is_empty() {
            let selector = crate::api::selector::LabelSelector::from_k8s(&pdb["spec"]["selector"])
                .map(|s| s.to_string())
                .unwrap_or_default();
            recorder
                .record(
                    pdb,
                    WARNING,
                    "UnmanagedPods",
                    &format!("Pods selected by this PodDisruptionBudget (selector: {selector}) were found to be unmanaged. As a result, the status of the PDB cannot be calculated correctly, which may result in undefined behavior. To account for these pods please set \".spec.minAvailable\" field of the PDB to an integer value."),
                )
                .await;
        }
        scale
    } else {
        0
    };
    let (expected_pods, desired_healthy) =
        budget::expected_and_desired(pdb, pods.len() as i32, scale)?;
    let now = clock.now();
    let disrupted = budget::disrupted_pods(pdb, &pods, now);
    for expired in &disrupted.expired {
        if let Some(pod) = pods.iter().find(|p| object::name(p) == expired) {
            recorder
                .record(
                    pod,
                    WARNING,
                    "NotDeleted",
                    &format!("Pod was expected by PDB {ns}/{name} to be deleted but it wasn't"),
                )
                .await;
        }
    }
    let counts = Counts {
        current_healthy: budget::count_healthy(&pods, &disrupted.pending, now),
        desired_healthy,
        expected_pods,
    };
    if let Some(status) = budget::next_status(pdb, counts, &disrupted.pending, now) {
        let mut body = pdb.clone();
        body["status"] = status;
        client.update_status(pdbs(), Some(ns), name, body).await?;
    }
    Ok(disrupted
        .recheck_at
        .and_then(|at| (at - now).to_std().ok())
        .map(|d| d + std::time::Duration::from_secs(1)))
}

/// Upstream `getExpectedScale`: the summed scale of the controllers of `pods` (each
/// counted once) and the names of pods without a controller.
fn expected_scale(
    client: &dyn Client,
    ns: &str,
    pods: &[&Value],
) -> Result<(i32, Vec<String>), Failure> {
    let mut scales: HashMap<String, i32> = HashMap::new();
    let mut unmanaged = Vec::new();
    for pod in pods {
        let Some(owner) = controller_ref(pod) else {
            unmanaged.push(object::name(pod).to_string());
            continue;
        };
        let uid = owner["uid"].as_str().unwrap_or("");
        if scales.contains_key(uid) {
            continue;
        }
        let (controller_uid, scale) = controller_scale(client, ns, owner)
            .ok_or_else(|| DisruptionError::NoController(object::name(pod).to_string()))?;
        scales.insert(controller_uid, scale);
    }
    Ok((scales.values().sum(), unmanaged))
}

/// The uid and `spec.replicas` of the controller `owner` names (a ReplicaSet owned by a
/// Deployment answers for the Deployment), as upstream's finders; `None` when it is
/// not a kind with a scale or not there with that uid.
fn controller_scale(client: &dyn Client, ns: &str, owner: &Value) -> Option<(String, i32)> {
    let api_version = owner["apiVersion"].as_str().unwrap_or("");
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    let kind = owner["kind"].as_str().unwrap_or("");
    let plural = match (group, kind) {
        ("apps", "ReplicaSet") => "replicasets",
        ("apps", "Deployment") => "deployments",
        ("apps", "StatefulSet") => "statefulsets",
        ("", "ReplicationController") => "replicationcontrollers",
        _ => return None,
    };
    let def = resources::by_plural(group, version, plural)?;
    let obj = client.get(def, Some(ns), owner["name"].as_str()?).ok()?;
    let uid = object::uid(&obj.value)?;
    if Some(uid) != owner["uid"].as_str() {
        return None;
    }
    if kind == "ReplicaSet" {
        if let Some(deployment) = controller_ref(&obj.value).filter(|r| r["kind"] == "Deployment") {
            return controller_scale(client, ns, deployment);
        }
    }
    let replicas = obj.value["spec"]["replicas"].as_i64().unwrap_or(1) as i32;
    Some((uid.to_string(), replicas))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::controllers::clock::TokioClock;
    use crate::controllers::testutil::{registry, wait_for};
    use serde_json::json;
    use std::time::Duration;

    async fn create(reg: &Registry, def: &ResourceDef, body: Value) -> Value {
        let w = reg
            .create(def, Some("default"), body, &WriteOptions::default())
            .await
            .expect("create");
        (*w.kv.value).clone()
    }

    fn pdb_status(reg: &Registry, name: &str) -> Value {
        reg.get(pdbs(), Some("default"), name)
            .map(|kv| kv.value["status"].clone())
            .unwrap_or_default()
    }

    async fn ready_pod(reg: &Registry, name: &str, owner: Option<&Value>, ready: bool) {
        let mut body = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": name, "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        if let Some(owner) = owner {
            body["metadata"]["ownerReferences"] = json!([{"apiVersion": "apps/v1",
                "kind": owner["kind"], "name": owner["metadata"]["name"],
                "uid": owner["metadata"]["uid"], "controller": true}]);
        }
        create(reg, pods(), body).await;
        let status = if ready { "True" } else { "False" };
        reg.modify(
            pods(),
            Some("default"),
            name,
            Some("status"),
            &WriteOptions::default(),
            &|cur| {
                let mut cur = cur.clone();
                cur["status"] = json!({"phase": "Running",
                "conditions": [{"type": "Ready", "status": status}]});
                Ok(cur)
            },
        )
        .await
        .expect("status");
    }

    #[tokio::test(start_paused = true)]
    async fn status_follows_ready_pods_and_the_controllers_scale() {
        let reg = registry().await;
        let client: Arc<dyn Client> = reg.clone();
        let task = tokio::spawn(run(client, Arc::new(TokioClock::new())));
        let rs_def = resources::by_plural("apps", "v1", "replicasets").expect("served");
        let rs = create(
            &reg,
            rs_def,
            json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": "web"},
            "spec": {"replicas": 4, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}}),
        )
        .await;
        create(
            &reg,
            pdbs(),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"},
            "spec": {"maxUnavailable": "50%", "selector": {"matchLabels": {"app": "web"}}}}),
        )
        .await;
        for (name, ready) in [("a", true), ("b", true), ("c", true), ("d", false)] {
            ready_pod(&reg, name, Some(&rs), ready).await;
        }
        wait_for("budget counts the pods", Duration::from_secs(10), || {
            let s = pdb_status(&reg, "web");
            s["currentHealthy"] == 3 && s["expectedPods"] == 4
        })
        .await;
        let s = pdb_status(&reg, "web");
        assert_eq!(s["desiredHealthy"], 2);
        assert_eq!(s["disruptionsAllowed"], 1);
        assert_eq!(s["observedGeneration"], 1);
        assert_eq!(s["conditions"][0]["reason"], "SufficientPods");
        // An unmanaged pod makes a percentage budget fail safe... only when a pod has a
        // controller that cannot be found: a pod owned by an unknown kind.
        let job = json!({"kind": "Job", "metadata": {"name": "j", "uid": "u-job"}});
        ready_pod(&reg, "e", Some(&job), true).await;
        wait_for("budget fails safe", Duration::from_secs(10), || {
            pdb_status(&reg, "web")["conditions"][0]["reason"] == "SyncFailed"
        })
        .await;
        assert_eq!(pdb_status(&reg, "web")["disruptionsAllowed"], 0);
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn an_integer_min_available_counts_the_pods_present() {
        let reg = registry().await;
        let client: Arc<dyn Client> = reg.clone();
        let task = tokio::spawn(run(client, Arc::new(TokioClock::new())));
        create(
            &reg,
            pdbs(),
            json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web"},
            "spec": {"minAvailable": 2, "selector": {"matchLabels": {"app": "web"}}}}),
        )
        .await;
        ready_pod(&reg, "a", None, true).await;
        ready_pod(&reg, "b", None, true).await;
        wait_for("two healthy", Duration::from_secs(10), || {
            pdb_status(&reg, "web")["currentHealthy"] == 2
        })
        .await;
        let s = pdb_status(&reg, "web");
        assert_eq!(s["disruptionsAllowed"], 0);
        assert_eq!(s["conditions"][0]["reason"], "InsufficientPods");
        ready_pod(&reg, "c", None, true).await;
        wait_for("one disruption allowed", Duration::from_secs(10), || {
            pdb_status(&reg, "web")["disruptionsAllowed"] == 1
        })
        .await;
        task.abort();
    }
}
