//! The authorizer over a real registry (in-memory store): bootstrap policy, decisions,
//! the decision cache following changes, and rules_for.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::*;
use crate::api::resources::by_plural;
use crate::apiserver::allocator::Allocators;
use crate::apiserver::registry::WriteOptions;
use crate::store::memory::MemoryStore;

fn registry() -> Arc<Registry> {
    let allocators = Allocators::new("10.43.0.0/16".parse().expect("cidr"), (30000, 32767));
    Arc::new(Registry::new(Arc::new(MemoryStore::new()), allocators))
}

fn user(name: &str, groups: &[&str]) -> User {
    User {
        name: name.into(),
        groups: groups.iter().map(|g| g.to_string()).collect(),
        ..Default::default()
    }
}

async fn create(registry: &Registry, plural: &str, ns: Option<&str>, body: Value) {
    if let Some(ns) = ns {
        let namespaces = by_plural("", "v1", "namespaces").expect("served");
        let namespace = json!({"metadata": {"name": ns}});
        // Already there after the first object of the namespace.
        let _ = registry
            .create(namespaces, None, namespace, &WriteOptions::default())
            .await;
    }
    let def = by_plural("rbac.authorization.k8s.io", "v1", plural).expect("served");
    registry
        .create(def, ns, body, &WriteOptions::default())
        .await
        .expect("create");
}

/// Polls `cond` for up to a second of real time (the watch task runs concurrently).
async fn eventually(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

fn get_pods(ns: &str) -> Attributes {
    Attributes::resource("get", ns, "", "pods", "", "p")
}

#[tokio::test]
async fn bootstrap_policy_grants_discovery_to_everyone_and_everything_to_masters() {
    let registry = registry();
    bootstrap::reconcile(&registry, bootstrap::POLICY)
        .await
        .expect("reconcile");
    let rbac = Rbac::new();
    rbac.load(&registry);
    let bob = user("bob", &["system:authenticated"]);
    assert!(rbac
        .authorize(&bob, &Attributes::non_resource("get", "/apis/apps/v1"))
        .is_allowed());
    assert!(rbac
        .authorize(
            &bob,
            &Attributes::resource(
                "create",
                "",
                "authorization.k8s.io",
                "selfsubjectaccessreviews",
                "",
                ""
            )
        )
        .is_allowed());
    assert_eq!(
        rbac.authorize(&bob, &get_pods("default")),
        Decision::NoOpinion(String::new())
    );
    let root = user("root", &["system:masters"]);
    assert!(rbac
        .authorize(
            &root,
            &Attributes::resource("delete", "x", "apps", "deployments", "", "d")
        )
        .is_allowed());
    let (rules, incomplete) = rbac.rules_for(&bob, "default");
    assert!(!incomplete);
    assert!(rules.iter().any(|r| r
        .non_resource_urls
        .as_deref()
        .is_some_and(|u| u.contains(&"/api".to_string()))));
}

#[tokio::test]
async fn bootstrap_reconcile_adds_missing_rules_and_respects_autoupdate_false() {
    let registry = registry();
    let roles = by_plural("rbac.authorization.k8s.io", "v1", "clusterroles").unwrap();
    let trimmed = json!({"metadata": {"name": "system:kube-dns",
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "true"}},
        "rules": [{"apiGroups": [""], "resources": ["services"], "verbs": ["list"]},
                  {"apiGroups": ["x.io"], "resources": ["mine"], "verbs": ["get"]}]});
    create(&registry, "clusterroles", None, trimmed).await;
    let pinned = json!({"metadata": {"name": "system:discovery",
            "annotations": {"rbac.authorization.kubernetes.io/autoupdate": "false"}},
        "rules": [{"nonResourceURLs": ["/version"], "verbs": ["get"]}]});
    create(&registry, "clusterroles", None, pinned.clone()).await;
    bootstrap::reconcile(&registry, bootstrap::POLICY)
        .await
        .expect("reconcile");
    let dns = registry.get(roles, None, "system:kube-dns").unwrap();
    let rules = index::parse_rules(&dns.value);
    let wanted = index::parse_rules(&json!({"rules": [
        {"apiGroups": [""], "resources": ["endpoints", "services"], "verbs": ["list", "watch"]}]}));
    assert!(rules::uncovered(&rules, &wanted).is_empty(), "{rules:?}");
    assert!(
        rules
            .iter()
            .any(|r| r.resources.as_deref() == Some(&["mine".to_string()][..])),
        "extra rules stay"
    );
    assert_eq!(
        dns.value["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    let discovery = registry.get(roles, None, "system:discovery").unwrap();
    assert_eq!(discovery.value["rules"], pinned["rules"]);
    // A second start changes nothing.
    let rev = registry.revision();
    bootstrap::reconcile(&registry, bootstrap::POLICY)
        .await
        .expect("reconcile again");
    assert_eq!(registry.revision(), rev);
}

#[tokio::test]
async fn decisions_follow_bindings_through_the_watch_and_the_cache() {
    let registry = registry();
    let rbac = Arc::new(Rbac::new());
    let task = tokio::spawn(rbac.clone().run(registry.clone()));
    let alice = user("alice", &["devs", "system:authenticated"]);
    assert!(!rbac.authorize(&alice, &get_pods("ns1")).is_allowed());
    create(
        &registry,
        "rolebindings",
        Some("ns1"),
        json!({"metadata": {"name": "devs-view", "namespace": "ns1"},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "reader"},
               "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "Group", "name": "devs"}]}),
    )
    .await;
    eventually("the missing role to be reported", || {
        rbac.authorize(&alice, &get_pods("ns1"))
            == Decision::NoOpinion(
                "RBAC: clusterrole.rbac.authorization.k8s.io \"reader\" not found".into(),
            )
    })
    .await;
    assert!(
        rbac.rules_for(&alice, "ns1").1,
        "incomplete without the role"
    );
    create(
        &registry,
        "clusterroles",
        None,
        json!({"metadata": {"name": "reader"},
               "rules": [{"apiGroups": [""], "resources": ["pods", "pods/log"], "verbs": ["get", "list"]}]}),
    )
    .await;
    eventually("the role to grant", || {
        rbac.authorize(&alice, &get_pods("ns1")).is_allowed()
    })
    .await;
    // A RoleBinding to a ClusterRole grants it only in its namespace.
    assert!(!rbac.authorize(&alice, &get_pods("ns2")).is_allowed());
    assert!(!rbac.authorize(&alice, &get_pods("")).is_allowed());
    assert!(rbac
        .authorize(
            &alice,
            &Attributes::resource("get", "ns1", "", "pods", "log", "p")
        )
        .is_allowed());
    let def = by_plural("rbac.authorization.k8s.io", "v1", "rolebindings").unwrap();
    registry
        .delete(def, Some("ns1"), "devs-view", &Default::default())
        .await
        .expect("delete");
    eventually("the cached allow to be dropped", || {
        !rbac.authorize(&alice, &get_pods("ns1")).is_allowed()
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn service_account_subjects_match_their_user_name() {
    let registry = registry();
    create(
        &registry,
        "roles",
        Some("ci"),
        json!({"metadata": {"name": "deployer", "namespace": "ci"},
        "rules": [{"apiGroups": ["apps"], "resources": ["deployments"], "verbs": ["*"]}]}),
    )
    .await;
    create(
        &registry,
        "rolebindings",
        Some("ci"),
        json!({"metadata": {"name": "b", "namespace": "ci"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "deployer"},
        "subjects": [{"kind": "ServiceAccount", "name": "builder"}]}),
    )
    .await;
    let rbac = Rbac::new();
    rbac.load(&registry);
    let patch = Attributes::resource("patch", "ci", "apps", "deployments", "", "web");
    assert!(rbac
        .authorize(&User::service_account("ci", "builder", "u1"), &patch)
        .is_allowed());
    assert!(!rbac
        .authorize(&User::service_account("ci", "other", "u2"), &patch)
        .is_allowed());
    assert!(!rbac
        .authorize(&user("system:serviceaccount:ci:builder2", &[]), &patch)
        .is_allowed());
}

/// A non-admin decision repeated is a cache hit: report how many a second.
#[test]
fn cached_decisions_are_cheap() {
    // 2,000 bindings of other groups: a decision that scanned them would manage a few
    // thousand a second in a debug build; indexed by subject and cached it stays near
    // 100,000/s even on a loaded 2-core machine.
    let rbac = Rbac::new();
    let role = json!({"rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["get"]}]});
    let bindings: Vec<(String, Value)> = (0..2_000)
        .map(|i| {
            let group = if i == 1_999 {
                "devs".to_string()
            } else {
                format!("team-{i}")
            };
            let crb = json!({"metadata": {"name": format!("b{i}")},
                "roleRef": {"kind": "ClusterRole", "name": "r"},
                "subjects": [{"kind": "Group", "name": group}]});
            (
                format!("/rbac.authorization.k8s.io/clusterrolebindings/b{i}"),
                crb,
            )
        })
        .collect();
    rbac.publish(Index::build(
        bindings
            .iter()
            .map(|(k, v)| (k.as_str(), v))
            .chain([("/rbac.authorization.k8s.io/clusterroles/r", &role)]),
    ));
    let alice = user("alice", &["devs", "system:authenticated"]);
    let attrs = get_pods("default");
    const N: u32 = 100_000;
    let started = Instant::now();
    for _ in 0..N {
        assert!(rbac.authorize(&alice, &attrs).is_allowed());
    }
    let per_second = f64::from(N) / started.elapsed().as_secs_f64();
    eprintln!("rbac: {per_second:.0} cached decisions/s");
    assert!(per_second > 20_000.0, "{per_second:.0} decisions/s");
}
