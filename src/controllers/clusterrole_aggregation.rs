//! ClusterRole aggregation (upstream's `clusterrole-aggregation` controller): the rules
//! of every ClusterRole with an `aggregationRule` are the union of the rules of the
//! ClusterRoles its `clusterRoleSelectors` match (by name, each rule once), rewritten
//! whenever any ClusterRole changes. This is how `admin`, `edit` and `view` get theirs.

use std::sync::Arc;

use serde_json::Value;

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::LabelSelector;
use crate::api::status::ApiError;
use crate::store::KeyValue;

use super::framework::{run_workers, wait_for_sync, Client, Informer, WorkQueue};

/// ClusterRoles aggregated at once.
const WORKERS: usize = 1;

fn cluster_roles() -> &'static ResourceDef {
    resources::by_plural("rbac.authorization.k8s.io", "v1", "clusterroles").expect("served")
}

fn is_aggregated(role: &Value) -> bool {
    role.get("aggregationRule").is_some_and(|a| !a.is_null())
}

/// The rules `aggregated` should have, from all ClusterRoles `roles`: the rules of those
/// its selectors match (itself excluded), in name order, without repeats. `None` when
/// a selector does not parse (the role is left as it is).
pub fn aggregated_rules(aggregated: &Value, roles: &[&Value]) -> Option<Vec<Value>> {
    let selectors = aggregated["aggregationRule"]["clusterRoleSelectors"]
        .as_array()
        .into_iter()
        .flatten()
        .map(LabelSelector::from_k8s)
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let own_name = object::name(aggregated);
    let mut matching: Vec<&&Value> = roles
        .iter()
        .filter(|r| object::name(r) != own_name)
        .filter(|r| selectors.iter().any(|s| s.matches(object::labels(r))))
        .collect();
    matching.sort_by_key(|r| object::name(r));
    let mut rules: Vec<Value> = Vec::new();
    for role in matching {
        for rule in role["rules"].as_array().into_iter().flatten() {
            if !rules.contains(rule) {
                rules.push(rule.clone());
            }
        }
    }
    Some(rules)
}

/// Names of the aggregated ClusterRoles: any ClusterRole change may concern each.
fn aggregated_names(client: &dyn Client) -> Vec<String> {
    client
        .list(cluster_roles(), None, &|kv: &KeyValue| {
            is_aggregated(&kv.value)
        })
        .iter()
        .map(|kv| object::name(&kv.value).to_string())
        .collect()
}

/// Runs the controller until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let queue = WorkQueue::new();
    let informers = [Informer::start(
        client.clone(),
        cluster_roles(),
        queue.clone(),
        {
            let client = client.clone();
            Box::new(move |_| aggregated_names(&*client))
        },
    )];
    wait_for_sync(&informers).await;
    run_workers(
        "clusterrole-aggregation-controller",
        queue,
        WORKERS,
        move |key| {
            let client = client.clone();
            async move {
                reconcile(&*client, &key).await?;
                Ok(None)
            }
        },
    )
    .await;
}

async fn reconcile(client: &dyn Client, name: &str) -> Result<(), ApiError> {
    let Ok(role) = client.get(cluster_roles(), None, name) else {
        return Ok(());
    };
    if !is_aggregated(&role.value) {
        return Ok(());
    }
    let all = client.list(cluster_roles(), None, &|_| true);
    let values: Vec<&Value> = all.iter().map(|kv| &*kv.value).collect();
    let Some(rules) = aggregated_rules(&role.value, &values) else {
        tracing::warn!(clusterrole = %name, "aggregationRule selector does not parse; rules left as they are");
        return Ok(());
    };
    let current = role.value["rules"].as_array().cloned().unwrap_or_default();
    if current == rules {
        return Ok(());
    }
    let result = client
        .modify(cluster_roles(), None, name, None, &|cur| {
            let mut cur = cur.clone();
            cur["rules"] = Value::Array(rules.clone());
            Ok(cur)
        })
        .await;
    match result {
        Err(e) if e.code == 404 => Ok(()),
        other => other.map(|_| {
            tracing::info!(clusterrole = %name, rules = rules.len(), "aggregated clusterrole rules updated");
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::WriteOptions;
    use crate::controllers::testutil::{registry, wait_for};
    use serde_json::json;
    use std::time::Duration;

    fn role(name: &str, label: &str, resource: &str) -> Value {
        json!({"metadata": {"name": name, "labels": {label: "true"}},
               "rules": [{"apiGroups": [""], "resources": [resource], "verbs": ["get"]}]})
    }

    #[test]
    fn aggregation_unions_matching_roles_in_name_order_without_repeats() {
        let view = json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-view": "true"}}]}});
        let b = role("b", "agg-view", "pods");
        let a = role("a", "agg-view", "services");
        let dup = role("c", "agg-view", "pods");
        let other = role("d", "other", "secrets");
        let rules = aggregated_rules(&view, &[&view, &b, &a, &dup, &other]).unwrap();
        let resources: Vec<&Value> = rules.iter().map(|r| &r["resources"][0]).collect();
        assert_eq!(resources, [&json!("services"), &json!("pods")]);
    }

    #[tokio::test(start_paused = true)]
    async fn aggregated_roles_follow_the_roles_they_select() {
        let registry = registry().await;
        let handle = tokio::spawn(run(registry.clone()));
        let opts = WriteOptions::default();
        let def = cluster_roles();
        let view = json!({"metadata": {"name": "view"},
            "aggregationRule": {"clusterRoleSelectors": [{"matchLabels": {"agg-view": "true"}}]}});
        registry.create(def, None, view, &opts).await.unwrap();
        registry
            .create(def, None, role("pods-reader", "agg-view", "pods"), &opts)
            .await
            .unwrap();
        let rules_of = |name: &str| registry.get(def, None, name).unwrap().value["rules"].clone();
        wait_for("view to aggregate pods", Duration::from_secs(5), || {
            rules_of("view")[0]["resources"] == json!(["pods"])
        })
        .await;
        registry
            .delete(def, None, "pods-reader", &Default::default())
            .await
            .unwrap();
        wait_for("view to lose pods", Duration::from_secs(5), || {
            rules_of("view") == json!([])
        })
        .await;
        handle.abort();
    }
}
