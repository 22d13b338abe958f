//! The generic storage core driven through fake strategies: whatever a kind's strategy
//! says (refuse, reset, reserve, heartbeat, finalize) the core honours the same way.

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{json, Value};

use super::strategy::{Context, Strategy};
use super::{DeleteOptions, Registry, WriteOptions};
use crate::api::identity::User;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::validation::FieldError;
use crate::apiserver::allocator::{Allocators, Reservation};
use crate::store::sqlite::SqliteStore;
use crate::store::KeyValue;

fn registry() -> (tempfile::TempDir, Registry) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open store");
    let allocators = Allocators::new("10.43.0.0/24".parse().expect("cidr"), (30000, 32767));
    (dir, Registry::new(Arc::new(store), allocators))
}

/// Nodes: cluster-scoped, with a status, and no registry rules the fakes could hide.
fn nodes() -> &'static ResourceDef {
    resources::by_plural("", "v1", "nodes").expect("served")
}

fn node(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name},
           "spec": {"podCIDR": "10.42.0.0/24"}, "status": {"phase": "Running"}})
}

const RESERVED_IP: &str = "10.43.0.9";

fn reserved_ip() -> Ipv4Addr {
    RESERVED_IP.parse().expect("ip")
}

/// A kind with no rules: what the fakes below differ from.
struct Plain;
impl Strategy for Plain {}

/// Refuses every object.
struct Refusing;
impl Strategy for Refusing {
    fn validate(&self, _cx: &Context, _obj: &Value) -> Vec<FieldError> {
        vec![FieldError::required("spec.podCIDR", "refused by the fake")]
    }
    fn validate_update(&self, cx: &Context, new: &Value, _old: &Value) -> Vec<FieldError> {
        self.validate(cx, new)
    }
}

/// Owns the status: a create starts from its own.
struct PinnedStatus;
impl Strategy for PinnedStatus {
    fn prepare_for_create(&self, _cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pinned"});
    }
}

/// Holds one ClusterIP per object; `refuse_updates` fails every update validation.
struct Reserving {
    refuse_updates: bool,
}
impl Strategy for Reserving {
    fn allocate(
        &self,
        cx: &Context,
        _obj: &mut Value,
        _old: Option<&Value>,
    ) -> Result<Reservation, crate::api::status::ApiError> {
        cx.allocators
            .allocate_ip(Some(reserved_ip()))
            .map_err(|e| crate::api::status::ApiError::internal(e.to_string()))?;
        Ok(self.allocations(&Value::Null))
    }
    fn allocations(&self, _obj: &Value) -> Reservation {
        Reservation {
            ips: vec![reserved_ip()],
            ports: vec![],
        }
    }
    fn validate_update(&self, _cx: &Context, _new: &Value, _old: &Value) -> Vec<FieldError> {
        match self.refuse_updates {
            true => vec![FieldError::required("spec.podCIDR", "refused by the fake")],
            false => vec![],
        }
    }
}

/// Every change is a heartbeat, and reads show the latest one.
struct Heartbeating;
impl Strategy for Heartbeating {
    fn is_heartbeat(&self, _old: &Value, _new: &Value) -> bool {
        true
    }
    fn fresh_view(&self, cx: &Context, kv: KeyValue) -> KeyValue {
        cx.heartbeats.overlay(kv)
    }
}

/// Deletes go through a controller, which finishes by dropping the `hold` label.
struct ControllerDeleted;
impl Strategy for ControllerDeleted {
    fn deleted_by_controller(&self) -> bool {
        true
    }
    fn prepare_for_delete(&self, obj: &mut Value) {
        obj["metadata"]["labels"] = json!({"hold": "yes", "state": "terminating"});
    }
    fn finalized(&self, obj: &Value) -> bool {
        obj["metadata"]["labels"].get("hold").is_none()
    }
}

/// Waits 30 seconds on delete unless the object is named `keep`, which it refuses.
struct Graceful;
impl Strategy for Graceful {
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        30
    }
    fn check_delete(&self, _cx: &Context, obj: &Value) -> Result<(), crate::api::status::ApiError> {
        match crate::api::object::name(obj) {
            "keep" => Err(crate::api::status::ApiError::forbidden("kept by the fake")),
            _ => Ok(()),
        }
    }
}

async fn create(registry: &Registry, strategy: &dyn Strategy, name: &str) -> KeyValue {
    registry
        .create_with(
            strategy,
            nodes(),
            None,
            node(name),
            &WriteOptions::default(),
        )
        .await
        .expect("create")
        .kv
}

#[tokio::test]
async fn an_object_its_strategy_refuses_is_not_stored() {
    let (_dir, registry) = registry();
    let err = registry
        .create_with(
            &Refusing,
            nodes(),
            None,
            node("n1"),
            &WriteOptions::default(),
        )
        .await
        .expect_err("refused");
    assert_eq!(err.code, 422);
    assert!(registry.get_with(&Plain, nodes(), None, "n1").is_err());

    let stored = create(&registry, &Plain, "n2").await;
    let mut changed = node("n2");
    changed["spec"]["providerID"] = json!("orc://n9");
    let err = registry
        .update_with(
            &Refusing,
            nodes(),
            None,
            "n2",
            changed,
            None,
            &WriteOptions::default(),
        )
        .await
        .expect_err("refused");
    assert_eq!(err.code, 422);
    let now = registry.get_with(&Plain, nodes(), None, "n2").unwrap();
    assert_eq!(now.mod_revision, stored.mod_revision);
}

#[tokio::test]
async fn status_is_the_strategys_on_create_and_kept_across_spec_writes() {
    let (_dir, registry) = registry();
    let created = create(&registry, &PinnedStatus, "n1").await;
    assert_eq!(created.value["status"], json!({"phase": "Pinned"}));

    let mut body = node("n1");
    body["spec"]["providerID"] = json!("orc://n9");
    body["status"] = json!({"phase": "Overwritten"});
    let updated = registry
        .update_with(
            &PinnedStatus,
            nodes(),
            None,
            "n1",
            body.clone(),
            None,
            &WriteOptions::default(),
        )
        .await
        .expect("update")
        .kv;
    assert_eq!(updated.value["spec"]["providerID"], "orc://n9");
    assert_eq!(updated.value["status"], json!({"phase": "Pinned"}));

    body["spec"]["podCIDR"] = json!("10.42.7.0/24");
    let status_write = registry
        .update_with(
            &PinnedStatus,
            nodes(),
            None,
            "n1",
            body,
            Some("status"),
            &WriteOptions::default(),
        )
        .await
        .expect("status update")
        .kv;
    assert_eq!(status_write.value["spec"]["providerID"], "orc://n9");
    assert_eq!(
        status_write.value["status"],
        json!({"phase": "Overwritten"})
    );
}

#[tokio::test]
async fn reservations_are_given_back_when_the_write_does_not_happen() {
    let (_dir, registry) = registry();
    let strategy = Reserving {
        refuse_updates: true,
    };
    let dry_run = WriteOptions {
        dry_run: true,
        ..WriteOptions::default()
    };
    registry
        .create_with(&strategy, nodes(), None, node("n1"), &dry_run)
        .await
        .expect("dry run");
    create(&registry, &strategy, "n1").await;
    // The stored object holds the address: a second holder is refused.
    assert!(registry
        .allocators
        .allocate_ip(Some(reserved_ip()))
        .is_err());

    registry.allocators.release_ip(reserved_ip());
    let mut changed = node("n1");
    changed["spec"]["providerID"] = json!("orc://n9");
    let err = registry
        .update_with(
            &strategy,
            nodes(),
            None,
            "n1",
            changed,
            None,
            &WriteOptions::default(),
        )
        .await
        .expect_err("refused");
    assert_eq!(err.code, 422);
    assert_eq!(
        registry.allocators.allocate_ip(Some(reserved_ip())),
        Ok(reserved_ip()),
        "a refused update gives its reservation back"
    );
}

#[tokio::test]
async fn deleting_an_object_releases_what_it_holds() {
    let (_dir, registry) = registry();
    let strategy = Reserving {
        refuse_updates: false,
    };
    create(&registry, &strategy, "n1").await;
    let deleted = registry
        .delete_with(&strategy, nodes(), None, "n1", &DeleteOptions::default())
        .await
        .expect("delete");
    assert!(deleted.deleted);
    assert_eq!(
        registry.allocators.allocate_ip(Some(reserved_ip())),
        Ok(reserved_ip())
    );
}

#[tokio::test]
async fn heartbeats_are_acknowledged_without_a_write_and_read_back_fresh() {
    let (_dir, registry) = registry();
    let stored = create(&registry, &Plain, "n1").await;
    let mut beat = node("n1");
    beat["spec"]["providerID"] = json!("orc://n9");
    let acked = registry
        .update_with(
            &Heartbeating,
            nodes(),
            None,
            "n1",
            beat,
            None,
            &WriteOptions::default(),
        )
        .await
        .expect("heartbeat")
        .kv;
    assert_eq!(acked.mod_revision, stored.mod_revision);
    let persisted = registry.get_by_key(&stored.key).expect("stored");
    assert_eq!(persisted.value["spec"]["podCIDR"], "10.42.0.0/24");
    let read = registry
        .get_with(&Heartbeating, nodes(), None, "n1")
        .unwrap();
    assert_eq!(read.value["spec"]["providerID"], "orc://n9");
}

#[tokio::test]
async fn an_object_deleted_by_its_controller_goes_once_the_strategy_says_it_is_finalized() {
    let (_dir, registry) = registry();
    create(&registry, &ControllerDeleted, "n1").await;
    let marked = registry
        .delete_with(
            &ControllerDeleted,
            nodes(),
            None,
            "n1",
            &DeleteOptions::default(),
        )
        .await
        .expect("delete");
    assert!(!marked.deleted);
    assert!(marked.kv.value["metadata"]["deletionTimestamp"].is_string());
    assert_eq!(
        marked.kv.value["metadata"]["labels"]["state"],
        "terminating"
    );

    let release = |obj: &Value| {
        let mut obj = obj.clone();
        obj["metadata"]["labels"]
            .as_object_mut()
            .expect("labels")
            .remove("hold");
        Ok(obj)
    };
    let done = registry
        .modify_with(
            &ControllerDeleted,
            nodes(),
            None,
            "n1",
            None,
            &WriteOptions::default(),
            &release,
        )
        .await
        .expect("finish");
    assert!(done.deleted);
    assert!(registry.get_with(&Plain, nodes(), None, "n1").is_err());
}

#[tokio::test]
async fn a_grace_period_marks_the_object_and_a_refused_delete_changes_nothing() {
    let (_dir, registry) = registry();
    create(&registry, &Graceful, "n1").await;
    let marked = registry
        .delete_with(&Graceful, nodes(), None, "n1", &DeleteOptions::default())
        .await
        .expect("delete");
    assert!(!marked.deleted);
    assert_eq!(
        marked.kv.value["metadata"]["deletionGracePeriodSeconds"],
        30
    );

    let kept = create(&registry, &Graceful, "keep").await;
    let err = registry
        .delete_with(&Graceful, nodes(), None, "keep", &DeleteOptions::default())
        .await
        .expect_err("refused");
    assert_eq!(err.code, 403);
    let now = registry.get_with(&Plain, nodes(), None, "keep").unwrap();
    assert_eq!(now.mod_revision, kept.mod_revision);
}

/// Refuses every write a client asks for (as NodeRestriction refuses a node's).
struct Admitting;
impl Strategy for Admitting {
    fn admit(
        &self,
        _cx: &Context,
        requester: &User,
        _new: &Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        Err(ApiError::forbidden(format!("{} may not", requester.name)))
    }
}

fn node_user() -> User {
    User {
        name: "system:node:n1".into(),
        groups: vec![crate::api::identity::NODES_GROUP.into()],
        ..Default::default()
    }
}

#[tokio::test]
async fn admission_applies_to_clients_and_never_to_controllers() {
    let (_dir, registry) = registry();
    let stored = create(&registry, &Admitting, "n1").await;
    let from_node = WriteOptions {
        requester: Some(node_user()),
        ..Default::default()
    };
    let mut changed = node("n1");
    changed["spec"]["providerID"] = json!("orc://n1");
    let err = registry
        .update_with(
            &Admitting,
            nodes(),
            None,
            "n1",
            changed.clone(),
            None,
            &from_node,
        )
        .await
        .expect_err("admission refuses the node");
    assert_eq!(
        (err.code, err.message.as_str()),
        (403, "system:node:n1 may not")
    );
    let err = registry
        .create_with(&Admitting, nodes(), None, node("n2"), &from_node)
        .await
        .expect_err("admission refuses the node's create");
    assert_eq!(err.code, 403);
    assert!(registry.get_with(&Plain, nodes(), None, "n2").is_err());
    let now = registry.get_with(&Plain, nodes(), None, "n1").unwrap();
    assert_eq!(now.mod_revision, stored.mod_revision);
    // A controller's write (no requester) is not admitted, only validated.
    registry
        .update_with(
            &Admitting,
            nodes(),
            None,
            "n1",
            changed,
            None,
            &WriteOptions::default(),
        )
        .await
        .expect("controllers are trusted");
}

#[tokio::test]
async fn objects_over_the_stored_size_limit_are_refused_and_not_written() {
    let (_dir, registry) = registry();
    let stored = create(&registry, &Plain, "n1").await;
    let mut big = node("n2");
    big["metadata"]["labels"] = json!({"a": "b"});
    big["spec"]["providerID"] = json!("x".repeat(super::generic::MAX_OBJECT_BYTES));
    let err = registry
        .create_with(&Plain, nodes(), None, big.clone(), &WriteOptions::default())
        .await
        .expect_err("too large");
    assert_eq!((err.code, err.reason), (413, "RequestEntityTooLarge"));
    assert!(
        err.message
            .starts_with("etcdserver: request is too large: nodes \"n2\" would take "),
        "{}",
        err.message
    );
    assert!(registry.get_with(&Plain, nodes(), None, "n2").is_err());
    // A status update too, whoever writes it.
    let mut status = node("n1");
    let message = "x".repeat(super::generic::MAX_OBJECT_BYTES);
    status["status"]["conditions"] = json!([{"type": "Big", "status": "True", "message": message}]);
    let err = registry
        .update_with(
            &Plain,
            nodes(),
            None,
            "n1",
            status,
            Some("status"),
            &WriteOptions::default(),
        )
        .await
        .expect_err("too large");
    assert_eq!(err.code, 413);
    let now = registry.get_with(&Plain, nodes(), None, "n1").unwrap();
    assert_eq!(now.mod_revision, stored.mod_revision);
}

#[tokio::test]
async fn a_dry_run_update_answers_the_current_resource_version() {
    let (_dir, registry) = registry();
    let stored = create(&registry, &Plain, "n1").await;
    let mut changed = node("n1");
    changed["spec"]["providerID"] = json!("orc://n1");
    let dry_run = WriteOptions {
        dry_run: true,
        ..WriteOptions::default()
    };
    let answer = registry
        .update_with(&Plain, nodes(), None, "n1", changed, None, &dry_run)
        .await
        .expect("dry run");
    assert_eq!(answer.kv.value["spec"]["providerID"], "orc://n1");
    assert_eq!(
        answer.kv.value["metadata"]["resourceVersion"],
        stored.value["metadata"]["resourceVersion"]
    );
    let live = registry.get(nodes(), None, "n1").expect("stored");
    assert!(
        live.value["spec"]["providerID"].is_null(),
        "a dry run wrote"
    );
}

#[tokio::test]
async fn empty_labels_and_annotations_are_not_kept() {
    let (_dir, registry) = registry();
    let mut n = node("n1");
    n["metadata"]["labels"] = json!({});
    n["metadata"]["annotations"] = json!({});
    let created = registry
        .create_with(&Plain, nodes(), None, n, &WriteOptions::default())
        .await
        .expect("create");
    assert!(created.kv.value["metadata"].get("labels").is_none());
    assert!(created.kv.value["metadata"].get("annotations").is_none());
    let mut updated = node("n1");
    updated["metadata"]["annotations"] = json!({});
    updated["metadata"]["finalizers"] = json!([]);
    updated["metadata"]["labels"] = json!({"a": "b"});
    let answer = registry
        .update_with(
            &Plain,
            nodes(),
            None,
            "n1",
            updated,
            None,
            &WriteOptions::default(),
        )
        .await
        .expect("update");
    let meta = &answer.kv.value["metadata"];
    assert!(meta.get("annotations").is_none() && meta.get("finalizers").is_none());
    assert_eq!(meta["labels"], json!({"a": "b"}));
}

#[tokio::test]
async fn a_new_crd_records_its_storage_version_and_takes_an_update_at_once() {
    let (_dir, registry) = registry();
    let crds = resources::by_plural("apiextensions.k8s.io", "v1", "customresourcedefinitions")
        .expect("served");
    let crd = json!({"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
        "metadata": {"name": "widgets.example.com"},
        "spec": {"group": "example.com", "scope": "Namespaced",
            "names": {"plural": "widgets", "singular": "widget", "kind": "Widget"},
            "versions": [
                {"name": "v1beta1", "served": true, "storage": false,
                 "schema": {"openAPIV3Schema": {"type": "object"}}},
                {"name": "v1", "served": true, "storage": true,
                 "schema": {"openAPIV3Schema": {"type": "object"}}}]}});
    let created = registry
        .create(crds, None, crd.clone(), &WriteOptions::default())
        .await
        .expect("create");
    assert_eq!(created.kv.value["status"]["storedVersions"], json!(["v1"]));
    // No controller has looked at it yet: a second write of the same definition (what
    // a repeated `kubectl apply --server-side` sends) is still valid.
    let mut again = crd;
    again["metadata"]["labels"] = json!({"app": "widgets"});
    registry
        .update(
            crds,
            None,
            "widgets.example.com",
            again,
            None,
            &WriteOptions::default(),
        )
        .await
        .expect("update right after the create");
}

/// Writes `body` as `kind` (`plural` of `group/version`) in `default`, then writes it
/// again changed by `change`: answers the generation after each write.
async fn generations(
    group: &str,
    version: &str,
    plural: &str,
    body: Value,
    change: fn(&mut Value),
) -> (Value, Value) {
    let registry = crate::controllers::testutil::registry().await;
    let def = resources::by_plural(group, version, plural).expect("served");
    let opts = WriteOptions::default();
    let created = registry
        .create(def, Some("default"), body, &opts)
        .await
        .expect("create")
        .kv;
    let mut next = (*created.value).clone();
    change(&mut next);
    let name = next["metadata"]["name"].as_str().expect("name").to_string();
    let updated = registry
        .update(def, Some("default"), &name, next, None, &opts)
        .await
        .expect("update")
        .kv;
    (
        created.value["metadata"]["generation"].clone(),
        updated.value["metadata"]["generation"].clone(),
    )
}

#[tokio::test]
async fn only_kinds_whose_upstream_strategy_tracks_it_get_a_generation() {
    // Deployments: 1 on create, moved on by a spec change, not by a label.
    let deployment = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}},
                 "template": {"metadata": {"labels": {"app": "web"}},
                              "spec": {"containers": [{"name": "c", "image": "img"}]}}}});
    let moved = generations("apps", "v1", "deployments", deployment.clone(), |d| {
        d["spec"]["replicas"] = json!(3)
    })
    .await;
    assert_eq!(moved, (json!(1), json!(2)));
    let kept = generations("apps", "v1", "deployments", deployment, |d| {
        d["metadata"]["labels"] = json!({"tier": "front"})
    })
    .await;
    assert_eq!(kept, (json!(1), json!(1)));
    // NetworkPolicies and Ingresses track it too (networking's strategies).
    let policy = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
        "metadata": {"name": "deny"}, "spec": {"podSelector": {}}});
    let moved = generations("networking.k8s.io", "v1", "networkpolicies", policy, |p| {
        p["spec"]["podSelector"] = json!({"matchLabels": {"app": "db"}})
    })
    .await;
    assert_eq!(moved, (json!(1), json!(2)));
    // ConfigMaps, Secrets, Services and Pods (before 1.33) never have one.
    let config_map = json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "settings"}, "data": {"a": "1"}});
    let none = generations("", "v1", "configmaps", config_map, |c| {
        c["data"]["a"] = json!("2")
    })
    .await;
    assert_eq!(none, (Value::Null, Value::Null));
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
        "spec": {"ports": [{"port": 80}]}});
    let none = generations("", "v1", "services", service, |s| {
        s["spec"]["ports"][0]["port"] = json!(8080)
    })
    .await;
    assert_eq!(none, (Value::Null, Value::Null));
    let pod = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
        "spec": {"containers": [{"name": "c", "image": "img"}]}});
    let none = generations("", "v1", "pods", pod, |p| {
        p["spec"]["activeDeadlineSeconds"] = json!(30)
    })
    .await;
    assert_eq!(none, (Value::Null, Value::Null));
}

#[tokio::test]
async fn a_generation_a_client_sends_is_kept_on_create_and_never_updated() {
    // As upstream's BeforeCreate: only a tracking strategy sets it; BeforeUpdate keeps
    // the stored one whatever the body says.
    let secret = json!({"apiVersion": "v1", "kind": "Secret",
        "metadata": {"name": "s", "generation": 4}, "data": {"k": "dg=="}});
    let kept = generations("", "v1", "secrets", secret, |s| {
        s["metadata"]["generation"] = json!(9);
        s["data"]["k"] = json!("dw==");
    })
    .await;
    assert_eq!(kept, (json!(4), json!(4)));
    let job = json!({"apiVersion": "batch/v1", "kind": "Job",
        "metadata": {"name": "once", "generation": 7},
        "spec": {"template": {"spec": {"restartPolicy": "Never",
                 "containers": [{"name": "c", "image": "img"}]}}}});
    let reset = generations("batch", "v1", "jobs", job, |j| {
        j["metadata"]["generation"] = json!(9);
        j["spec"]["suspend"] = json!(true);
    })
    .await;
    assert_eq!(reset, (json!(1), json!(2)));
}

#[tokio::test]
async fn a_numeric_quantity_in_an_apply_matches_the_stored_string() {
    // Created by another client (as `kubectl apply` without --server-side does), then
    // server-side applied with the same `cpu: 1`: the same value, so no conflict with
    // the fields the object held before its first apply.
    let registry = crate::controllers::testutil::registry().await;
    let def = resources::by_plural("apps", "v1", "deployments").expect("served");
    let created = json!({"apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "op", "namespace": "default"},
        "spec": {"selector": {"matchLabels": {"app": "op"}},
                 "template": {"metadata": {"labels": {"app": "op"}},
                              "spec": {"containers": [{"name": "c", "image": "img",
                                  "resources": {"limits": {"cpu": 1, "memory": "1Gi"}}}]}}}});
    registry
        .create(def, Some("default"), created, &WriteOptions::default())
        .await
        .expect("create");
    let config = b"apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: op, namespace: default}\nspec:\n  selector: {matchLabels: {app: op}}\n  template:\n    metadata: {labels: {app: op}}\n    spec:\n      containers:\n      - name: c\n        image: img\n        resources: {limits: {cpu: 1, memory: 1Gi}}\n";
    let opts = WriteOptions {
        field_manager: Some("installer".into()),
        ..Default::default()
    };
    let applied = registry
        .patch(
            def,
            Some("default"),
            "op",
            (crate::api::patch::PatchType::Apply, config),
            None,
            &opts,
        )
        .await
        .expect("no conflict");
    let limits =
        &applied.kv.value["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"];
    assert_eq!(limits["cpu"], "1");
}
