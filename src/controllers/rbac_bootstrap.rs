//! Bootstrap RBAC objects come back when deleted: a ClusterRole or ClusterRoleBinding
//! of orc's bootstrap policy (`embedded/rbac/bootstrap.yaml`) that someone deletes is
//! created again from the policy at once, instead of at the next server start (when
//! upstream's `reconcile-policy` and orc's `rbac::bootstrap::reconcile` restore it).
//! A user who uninstalls a project whose manifest carries one of them (metrics-server's
//! and kube-prometheus' `system:aggregated-metrics-reader`, which orc ships because it
//! serves `metrics.k8s.io` itself) keeps the role orc's own API relies on. Rules added
//! to a role that still exists are the start-time reconcile's business, not this one's.

use std::collections::HashMap;
use std::sync::Arc;

use serde_json::Value;

use crate::api::object;
use crate::api::resources::{by_plural, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::rbac::bootstrap;
use crate::store::EventType;

use super::framework::{run_workers, wait_for_sync, Client, Informer, WorkQueue};

const WORKERS: usize = 1;
const KINDS: [(&str, &str); 2] = [
    ("ClusterRole", "clusterroles"),
    ("ClusterRoleBinding", "clusterrolebindings"),
];

fn def_for(kind: &str) -> Option<&'static ResourceDef> {
    let plural = KINDS.iter().find(|(k, _)| *k == kind)?.1;
    by_plural("rbac.authorization.k8s.io", "v1", plural)
}

/// The policy's objects by work-queue key (`Kind/name`).
pub fn policy_objects(policy: &str) -> Result<HashMap<String, Value>, bootstrap::BootstrapError> {
    Ok(bootstrap::parse(policy)?
        .into_iter()
        .filter_map(|obj| {
            let kind = obj["kind"].as_str()?;
            def_for(kind)?;
            Some((format!("{kind}/{}", object::name(&obj)), obj))
        })
        .collect())
}

/// Runs the controller until aborted (returns at once if the policy does not parse:
/// the server's start-time reconcile has reported that already).
pub async fn run(client: Arc<dyn Client>) {
    let policy = match policy_objects(bootstrap::POLICY) {
        Ok(p) => Arc::new(p),
        Err(error) => {
            tracing::error!(%error, "bootstrap rbac policy does not parse; deleted roles are not restored");
            return;
        }
    };
    let queue = WorkQueue::new();
    let informers: Vec<Informer> = KINDS
        .iter()
        .filter_map(|(kind, _)| Some((*kind, def_for(kind)?)))
        .map(|(kind, def)| {
            let policy = policy.clone();
            Informer::start(
                client.clone(),
                def,
                queue.clone(),
                Box::new(move |event| {
                    let key = format!("{kind}/{}", object::name(&event.kv.value));
                    (event.kind == EventType::Deleted && policy.contains_key(&key))
                        .then_some(key)
                        .into_iter()
                        .collect()
                }),
            )
        })
        .collect();
    wait_for_sync(&informers).await;
    // Whatever went missing before the informers watched (the start-time reconcile
    // ran before them) is looked at once too.
    for key in policy.keys() {
        queue.add(key.as_str());
    }
    run_workers("rbac-bootstrap-controller", queue, WORKERS, move |key| {
        let client = client.clone();
        let policy = policy.clone();
        async move {
            restore(&*client, &policy, &key).await?;
            Ok(None)
        }
    })
    .await;
}

/// Creates the policy's object `key` again if it is gone.
async fn restore(
    client: &dyn Client,
    policy: &HashMap<String, Value>,
    key: &str,
) -> Result<(), ApiError> {
    let Some(expected) = policy.get(key) else {
        return Ok(());
    };
    let Some(def) = expected["kind"].as_str().and_then(def_for) else {
        return Ok(());
    };
    let name = object::name(expected);
    match client.get(def, None, name) {
        Ok(_) => return Ok(()),
        Err(e) if e.code == 404 => {}
        Err(e) => return Err(e),
    }
    match client.create(def, None, expected.clone()).await {
        Ok(_) => {
            tracing::info!(kind = %def.kind, %name, "deleted bootstrap rbac object restored");
            Ok(())
        }
        Err(e) if e.code == 409 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::WriteOptions;
    use crate::controllers::testutil::{registry, wait_for};
    use std::time::Duration;

    #[test]
    fn the_policy_holds_the_roles_orc_serves_itself() {
        let policy = policy_objects(bootstrap::POLICY).expect("policy parses");
        assert!(policy.contains_key("ClusterRole/system:aggregated-metrics-reader"));
        assert!(policy.contains_key("ClusterRole/cluster-admin"));
        assert!(policy.contains_key("ClusterRoleBinding/cluster-admin"));
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_bootstrap_role_comes_back_and_other_roles_stay_deleted() {
        let registry = registry().await;
        bootstrap::reconcile(&registry, bootstrap::POLICY)
            .await
            .expect("bootstrap");
        let def = def_for("ClusterRole").expect("served");
        let opts = WriteOptions::default();
        let own = serde_json::json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole", "metadata": {"name": "mine"}, "rules": []});
        registry
            .create(def, None, own, &opts)
            .await
            .expect("create");
        let handle = tokio::spawn(run(registry.clone()));
        let uid = |name: &str| {
            registry
                .get(def, None, name)
                .ok()
                .and_then(|kv| object::uid(&kv.value).map(String::from))
        };
        // Deleted before the controller watched (found by its first pass), then
        // deleted again while it watches (found by the delete event): back each time.
        for _ in 0..2 {
            let before = uid("system:aggregated-metrics-reader").expect("bootstrapped");
            for name in ["system:aggregated-metrics-reader", "mine"] {
                let _ = registry.delete(def, None, name, &Default::default()).await;
            }
            wait_for(
                "the bootstrap role to be back",
                Duration::from_secs(5),
                || uid("system:aggregated-metrics-reader").is_some_and(|u| u != before),
            )
            .await;
        }
        let back = registry
            .get(def, None, "system:aggregated-metrics-reader")
            .expect("back");
        assert_eq!(back.value["rules"][0]["apiGroups"][0], "metrics.k8s.io");
        assert_eq!(uid("mine"), None);
        handle.abort();
    }
}
