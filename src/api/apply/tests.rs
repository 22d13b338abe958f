//! Engine tests: apply, update, conflicts, removal, the client-side-apply upgrade path.

use serde_json::{json, Value};

use super::*;

const T1: &str = "2024-05-01T10:00:00Z";
const T2: &str = "2024-05-01T11:00:00Z";
const T3: &str = "2024-05-01T12:00:00Z";

/// One kind's endpoint: its version, shape and reset fields.
struct Endpoint {
    api_version: &'static str,
    kind: &'static str,
    shape: Shape,
    reset: FieldSet,
    status_reset: FieldSet,
}

impl Endpoint {
    fn builtin(api_version: &'static str, kind: &'static str, has_status: bool) -> Endpoint {
        Endpoint {
            api_version,
            kind,
            shape: Shape::for_kind(kind),
            reset: reset_fields(kind, "", has_status),
            status_reset: reset_fields(kind, "status", has_status),
        }
    }

    fn deployment() -> Endpoint {
        Endpoint::builtin("apps/v1", "Deployment", true)
    }

    fn config_map() -> Endpoint {
        Endpoint::builtin("v1", "ConfigMap", false)
    }

    fn req<'a>(&'a self, manager: &'a str, now: &'a str) -> Request<'a> {
        Request {
            manager,
            api_version: self.api_version,
            kind: self.kind,
            subresource: "",
            now,
            shape: &self.shape,
            reset_fields: &self.reset,
        }
    }

    fn status_req<'a>(&'a self, manager: &'a str, now: &'a str) -> Request<'a> {
        Request {
            subresource: "status",
            reset_fields: &self.status_reset,
            ..self.req(manager, now)
        }
    }
}

fn entry<'a>(object: &'a Value, manager: &str, operation: &str) -> Option<&'a Value> {
    object["metadata"]["managedFields"]
        .as_array()?
        .iter()
        .find(|e| e["manager"] == manager && e["operation"] == operation)
}

fn fields(object: &Value, manager: &str, operation: &str) -> Value {
    entry(object, manager, operation)
        .map(|e| e["fieldsV1"].clone())
        .unwrap_or(Value::Null)
}

fn managers(object: &Value) -> Vec<String> {
    object["metadata"]["managedFields"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{}/{}",
                e["manager"].as_str().unwrap(),
                e["operation"].as_str().unwrap()
            )
        })
        .collect()
}

fn deployment_config(replicas: i64, image: &str) -> Value {
    json!({
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "web", "namespace": "default", "labels": {"app": "web"}},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": "web"}},
            "template": {
                "metadata": {"labels": {"app": "web"}},
                "spec": {"containers": [{
                    "name": "nginx",
                    "image": image,
                    "ports": [{"containerPort": 80}],
                    "env": [{"name": "MODE", "value": "prod"}],
                }]},
            },
        },
    })
}

fn conflicts(err: ApplyError) -> Conflicts {
    match err {
        ApplyError::Conflicts(c) => c,
        other => panic!("expected conflicts, got {other}"),
    }
}

#[test]
fn apply_creates_the_object_and_records_the_applier() {
    let ep = Endpoint::config_map();
    // The example of the Kubernetes "Server-Side Apply" documentation page.
    let config = json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": "test-cm", "namespace": "default", "labels": {"test-label": "test"}},
        "data": {"key": "some value"},
    });
    let object = apply(None, &config, false, &ep.req("kubectl", T1)).unwrap();
    assert_eq!(object["data"], config["data"]);
    assert_eq!(object["metadata"]["labels"], config["metadata"]["labels"]);
    assert_eq!(
        object["metadata"]["managedFields"],
        json!([{
            "manager": "kubectl", "operation": "Apply", "apiVersion": "v1", "time": T1,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:data": {"f:key": {}}, "f:metadata": {"f:labels": {"f:test-label": {}}}},
        }])
    );
}

#[test]
fn reapplying_the_same_configuration_changes_nothing_and_keeps_the_time() {
    let ep = Endpoint::deployment();
    let config = deployment_config(2, "nginx:1.25");
    let first = apply(None, &config, false, &ep.req("kubectl", T1)).unwrap();
    let second = apply(Some(&first), &config, false, &ep.req("kubectl", T2)).unwrap();
    assert_eq!(second, first);
    assert_eq!(entry(&second, "kubectl", "Apply").unwrap()["time"], T1);
}

#[test]
fn applied_deployment_is_owned_by_keys_with_port_protocol_defaulted() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(2, "nginx:1.25"),
        false,
        &ep.req("kubectl", T1),
    )
    .unwrap();
    let text = serde_json::to_string(&fields(&object, "kubectl", "Apply")).unwrap();
    assert_eq!(
        text,
        concat!(
            r#"{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:replicas":{},"f:selector":{},"#,
            r#""f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"#,
            r#""k:{\"name\":\"nginx\"}":{".":{},"f:env":{"k:{\"name\":\"MODE\"}":{".":{},"f:name":{},"f:value":{}}},"#,
            r#""f:image":{},"f:name":{},"f:ports":{"k:{\"containerPort\":80,\"protocol\":\"TCP\"}":{".":{},"f:containerPort":{}}}}}}}}}"#
        )
    );
}

#[test]
fn a_second_applier_with_the_same_value_shares_ownership() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(2, "nginx:1.25"),
        false,
        &ep.req("alice", T1),
    )
    .unwrap();
    let bob = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 2},
    });
    let object = apply(Some(&object), &bob, false, &ep.req("bob", T2)).unwrap();
    assert_eq!(
        fields(&object, "bob", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(fields(&object, "alice", "Apply")["f:spec"]
        .get("f:replicas")
        .is_some());
    // A no-op apply by a new manager records no time, as upstream.
    assert!(entry(&object, "bob", "Apply")
        .unwrap()
        .get("time")
        .is_none());
}

#[test]
fn changing_another_appliers_field_conflicts_and_force_takes_it() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(2, "nginx:1.25"),
        false,
        &ep.req("alice", T1),
    )
    .unwrap();
    let bob = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "web"},
        "spec": {"replicas": 5},
    });
    let err = apply(Some(&object), &bob, false, &ep.req("bob", T2)).unwrap_err();
    assert_eq!(err.status_code(), 409);
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "alice": .spec.replicas"#
    );

    let object = apply(Some(&object), &bob, true, &ep.req("bob", T2)).unwrap();
    assert_eq!(object["spec"]["replicas"], 5);
    assert_eq!(
        fields(&object, "bob", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
    assert!(fields(&object, "alice", "Apply")["f:spec"]
        .get("f:replicas")
        .is_none());
    assert_eq!(entry(&object, "bob", "Apply").unwrap()["time"], T2);
}

#[test]
fn conflicts_with_an_updater_name_its_version_and_list_every_path() {
    let ep = Endpoint::deployment();
    let created = update(
        None,
        &deployment_config(3, "nginx:1.24"),
        &ep.req("kubectl-client-side-apply", T1),
    );
    let err = apply(
        Some(&created),
        &deployment_config(3, "nginx:1.25"),
        false,
        &ep.req("argo", T2),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.template.spec.containers[name="nginx"].image"#
    );

    let err = apply(
        Some(&created),
        &deployment_config(4, "nginx:1.25"),
        false,
        &ep.req("argo", T2),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"kubectl-client-side-apply\" using apps/v1:\n- .spec.replicas\n- .spec.template.spec.containers[name=\"nginx\"].image"
    );
    let causes = conflicts(err).causes();
    assert_eq!(
        causes[0],
        json!({
            "reason": "FieldManagerConflict",
            "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
            "field": ".spec.replicas",
        })
    );
}

#[test]
fn conflicts_with_several_managers_are_grouped_by_manager() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(2, "nginx:1.25"),
        false,
        &ep.req("alice", T1),
    )
    .unwrap();
    let mut scaled = object.clone();
    scaled["spec"]["replicas"] = json!(3);
    let object = update(Some(&object), &scaled, &ep.req("hpa", T2));
    let carol = deployment_config(9, "nginx:1.26");
    let err = apply(Some(&object), &carol, false, &ep.req("carol", T3)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Apply failed with 2 conflicts: conflicts with \"alice\":\n- .spec.template.spec.containers[name=\"nginx\"].image\nconflicts with \"hpa\" using apps/v1:\n- .spec.replicas"
    );
}

#[test]
fn a_dropped_field_is_removed_when_nobody_else_owns_it() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(2, "nginx:1.25"),
        false,
        &ep.req("kubectl", T1),
    )
    .unwrap();
    let mut config = deployment_config(2, "nginx:1.25");
    config["spec"].as_object_mut().unwrap().remove("replicas");
    config["metadata"].as_object_mut().unwrap().remove("labels");
    let object = apply(Some(&object), &config, false, &ep.req("kubectl", T2)).unwrap();
    assert!(object["spec"].get("replicas").is_none());
    assert!(object["metadata"].get("labels").is_none());
    assert_eq!(object["metadata"]["name"], "web");
}

#[test]
fn a_dropped_field_another_applier_owns_stays_and_only_ownership_goes() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(2, "nginx:1.25"),
        false,
        &ep.req("alice", T1),
    )
    .unwrap();
    let bob = json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "web"}, "spec": {"replicas": 2}});
    let object = apply(Some(&object), &bob, false, &ep.req("bob", T2)).unwrap();
    let mut alice = deployment_config(2, "nginx:1.25");
    alice["spec"].as_object_mut().unwrap().remove("replicas");
    let object = apply(Some(&object), &alice, false, &ep.req("alice", T3)).unwrap();
    assert_eq!(object["spec"]["replicas"], 2);
    assert!(fields(&object, "alice", "Apply")["f:spec"]
        .get("f:replicas")
        .is_none());
    assert_eq!(
        fields(&object, "bob", "Apply"),
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn a_dropped_field_an_updater_changed_stays() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(2, "nginx:1.25"),
        false,
        &ep.req("kubectl", T1),
    )
    .unwrap();
    let mut scaled = object.clone();
    scaled["spec"]["replicas"] = json!(7);
    let object = update(
        Some(&object),
        &scaled,
        &ep.req("kube-controller-manager", T2),
    );
    let mut config = deployment_config(2, "nginx:1.25");
    config["spec"].as_object_mut().unwrap().remove("replicas");
    let object = apply(Some(&object), &config, false, &ep.req("kubectl", T3)).unwrap();
    assert_eq!(object["spec"]["replicas"], 7);
    assert_eq!(
        fields(&object, "kube-controller-manager", "Update"),
        json!({"f:spec": {"f:replicas": {}}})
    );
}

#[test]
fn dropped_list_map_items_are_removed_and_kept_ones_stay_in_place() {
    let ep = Endpoint::deployment();
    let mut config = deployment_config(1, "nginx:1.25");
    config["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "a", "image": "a", "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}]},
        {"name": "b", "image": "b", "env": [{"name": "X", "value": "1"}, {"name": "Y", "value": "2"}]},
        {"name": "c", "image": "c"},
    ]);
    let object = apply(None, &config, false, &ep.req("kubectl", T1)).unwrap();
    config["spec"]["template"]["spec"]["containers"] = json!([
        {"name": "a", "image": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}]},
        {"name": "c", "image": "c"},
        {"name": "b", "image": "b", "env": [{"name": "Y", "value": "2"}]},
    ]);
    let object = apply(Some(&object), &config, false, &ep.req("kubectl", T2)).unwrap();
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"],
        json!([
            {"name": "a", "image": "a", "ports": [{"containerPort": 53, "protocol": "UDP"}]},
            {"name": "c", "image": "c"},
            {"name": "b", "image": "b", "env": [{"name": "Y", "value": "2"}]},
        ])
    );
}

#[test]
fn dropped_set_items_are_removed_unless_another_manager_added_them() {
    let ep = Endpoint::config_map();
    let config = |finalizers: Value| {
        json!({"apiVersion": "v1", "kind": "ConfigMap",
               "metadata": {"name": "c", "finalizers": finalizers}})
    };
    let object = apply(
        None,
        &config(json!(["a/x", "a/y"])),
        false,
        &ep.req("kubectl", T1),
    )
    .unwrap();
    let mut edited = object.clone();
    edited["metadata"]["finalizers"] = json!(["a/x", "a/y", "ctrl/z"]);
    let object = update(Some(&object), &edited, &ep.req("ctrl", T2));
    assert_eq!(
        fields(&object, "ctrl", "Update"),
        json!({"f:metadata": {"f:finalizers": {"v:\"ctrl/z\"": {}}}})
    );
    let object = apply(
        Some(&object),
        &config(json!(["a/x"])),
        false,
        &ep.req("kubectl", T3),
    )
    .unwrap();
    assert_eq!(object["metadata"]["finalizers"], json!(["a/x", "ctrl/z"]));
}

#[test]
fn updates_take_fields_from_appliers_silently_and_merge_per_manager() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(2, "nginx:1.25"),
        false,
        &ep.req("kubectl", T1),
    )
    .unwrap();
    let mut edited = object.clone();
    edited["spec"]["replicas"] = json!(4);
    let object = update(Some(&object), &edited, &ep.req("kubectl-edit", T2));
    let mut edited = object.clone();
    edited["spec"]["paused"] = json!(true);
    let object = update(Some(&object), &edited, &ep.req("kubectl-edit", T3));
    assert_eq!(
        fields(&object, "kubectl-edit", "Update"),
        json!({"f:spec": {"f:paused": {}, "f:replicas": {}}})
    );
    assert_eq!(
        entry(&object, "kubectl-edit", "Update").unwrap()["time"],
        T3
    );
    assert!(fields(&object, "kubectl", "Apply")["f:spec"]
        .get("f:replicas")
        .is_none());
    assert_eq!(managers(&object), ["kubectl/Apply", "kubectl-edit/Update"]);

    // A write that changes nothing keeps the time.
    let again = update(
        Some(&object),
        &object,
        &ep.req("kubectl-edit", "2024-05-02T00:00:00Z"),
    );
    assert_eq!(entry(&again, "kubectl-edit", "Update").unwrap()["time"], T3);
}

#[test]
fn create_records_fields_as_upstream_for_a_defaulted_deployment() {
    let ep = Endpoint::deployment();
    // `kubectl create deployment nginx --image=nginx` after defaulting.
    let created = json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "nginx", "namespace": "default", "uid": "", "labels": {"app": "nginx"}},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": {"app": "nginx"}},
            "template": {
                "metadata": {"labels": {"app": "nginx"}},
                "spec": {
                    "containers": [{
                        "name": "nginx", "image": "nginx", "resources": {},
                        "terminationMessagePath": "/dev/termination-log",
                        "terminationMessagePolicy": "File", "imagePullPolicy": "Always",
                    }],
                    "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
                    "dnsPolicy": "ClusterFirst", "securityContext": {}, "schedulerName": "default-scheduler",
                },
            },
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}},
            "revisionHistoryLimit": 10,
            "progressDeadlineSeconds": 600,
        },
        "status": {},
    });
    let object = update(None, &created, &ep.req("kubectl-create", T1));
    // Byte for byte what a v1.30 API server records for this create.
    let upstream = r#"{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:progressDeadlineSeconds":{},"f:replicas":{},"f:revisionHistoryLimit":{},"f:selector":{},"f:strategy":{"f:rollingUpdate":{".":{},"f:maxSurge":{},"f:maxUnavailable":{}},"f:type":{}},"f:template":{"f:metadata":{"f:labels":{".":{},"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:imagePullPolicy":{},"f:name":{},"f:resources":{},"f:terminationMessagePath":{},"f:terminationMessagePolicy":{}}},"f:dnsPolicy":{},"f:restartPolicy":{},"f:schedulerName":{},"f:securityContext":{},"f:terminationGracePeriodSeconds":{}}}}}"#;
    assert_eq!(
        serde_json::to_string(&fields(&object, "kubectl-create", "Update")).unwrap(),
        upstream
    );
}

#[test]
fn status_is_owned_only_through_the_status_subresource() {
    let ep = Endpoint::deployment();
    let mut config = deployment_config(2, "nginx:1.25");
    config["status"] = json!({"replicas": 2});
    let object = apply(None, &config, false, &ep.req("kubectl", T1)).unwrap();
    assert!(fields(&object, "kubectl", "Apply")
        .get("f:status")
        .is_none());

    let mut with_status = object.clone();
    with_status["status"] = json!({"replicas": 2, "readyReplicas": 1});
    with_status["spec"]["replicas"] = json!(9);
    let object = update(
        Some(&object),
        &with_status,
        &ep.status_req("kube-controller-manager", T2),
    );
    let e = entry(&object, "kube-controller-manager", "Update").unwrap();
    assert_eq!(e["subresource"], "status");
    assert_eq!(e["fieldsV1"], json!({"f:status": {"f:readyReplicas": {}}}));
    // The spec change was not this endpoint's to make: the applier keeps replicas.
    assert!(fields(&object, "kubectl", "Apply")["f:spec"]
        .get("f:replicas")
        .is_some());
}

#[test]
fn status_apply_conflicts_name_the_subresource() {
    let ep = Endpoint::deployment();
    let object = apply(
        None,
        &deployment_config(1, "x"),
        false,
        &ep.req("kubectl", T1),
    )
    .unwrap();
    let mut s = object.clone();
    s["status"] = json!({"replicas": 1});
    let object = update(Some(&object), &s, &ep.status_req("kcm", T2));
    let status_config = json!({"apiVersion": "apps/v1", "kind": "Deployment",
                              "metadata": {"name": "web"}, "status": {"replicas": 3}});
    let err = apply(
        Some(&object),
        &status_config,
        false,
        &ep.status_req("tool", T3),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kcm" with subresource "status" using apps/v1: .status.replicas"#
    );
}

#[test]
fn managed_fields_sent_with_an_update_are_honoured_or_reset() {
    let ep = Endpoint::config_map();
    let cm = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "uid": "u1"}, "data": {"a": "1"}});
    let object = update(None, &cm, &ep.req("creator", T1));
    assert_eq!(managers(&object), ["creator/Update"]);

    let mut cleared = object.clone();
    cleared["metadata"]["managedFields"] = json!([]);
    cleared["data"]["b"] = json!("2");
    let cleared = update(Some(&object), &cleared, &ep.req("editor", T2));
    assert!(cleared["metadata"].get("managedFields").is_none());

    // An existing object without managed fields stays untracked until its first apply.
    let mut edited = cleared.clone();
    edited["data"]["c"] = json!("3");
    let edited = update(Some(&cleared), &edited, &ep.req("editor", T2));
    assert!(edited["metadata"].get("managedFields").is_none());
}

#[test]
fn stays_untracked_only_when_update_would_return_the_write_unchanged() {
    let ep = Endpoint::config_map();
    let untracked = json!({"apiVersion": "v1", "kind": "ConfigMap",
                           "metadata": {"name": "c", "uid": "u1"}, "data": {"a": "1"}});
    let mut edited = untracked.clone();
    edited["data"]["a"] = json!("2");
    assert!(stays_untracked(Some(&untracked), &edited));
    // What the fast path skips gives the same answer.
    assert_eq!(
        update(Some(&untracked), &edited, &ep.req("editor", T2)),
        edited
    );
    let mut empty = untracked.clone();
    empty["metadata"]["managedFields"] = json!([]);
    assert!(stays_untracked(Some(&empty), &edited));

    // A create, a tracked object, and managed fields sent with the write: computed.
    assert!(!stays_untracked(None, &edited));
    let mut no_uid = untracked.clone();
    no_uid["metadata"]["uid"] = json!("");
    assert!(!stays_untracked(Some(&no_uid), &edited));
    let tracked = update(None, &untracked, &ep.req("creator", T1));
    assert!(!stays_untracked(Some(&tracked), &edited));
    let mut sending = edited.clone();
    sending["metadata"]["managedFields"] = json!([]);
    assert!(!stays_untracked(Some(&untracked), &sending));
}

#[test]
fn first_apply_to_an_untracked_object_gives_prior_fields_to_before_first_apply() {
    let ep = Endpoint::config_map();
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "c", "uid": "u1"}, "data": {"a": "1", "b": "2"}});
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {"a": "9"}});
    let err = apply(Some(&live), &config, false, &ep.req("kubectl", T2)).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "before-first-apply" using v1: .data.a"#
    );
    let object = apply(Some(&live), &config, true, &ep.req("kubectl", T2)).unwrap();
    assert_eq!(
        fields(&object, "before-first-apply", "Update"),
        json!({"f:data": {".": {}, "f:b": {}}})
    );
    assert_eq!(object["data"], json!({"a": "9", "b": "2"}));
}

#[test]
fn more_than_ten_updaters_collapse_into_ancient_changes() {
    let ep = Endpoint::config_map();
    let mut object = update(
        None,
        &json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}, "data": {}}),
        &ep.req("creator", "2024-05-01T00:00:00Z"),
    );
    object["metadata"]["uid"] = json!("u1");
    for i in 0..11 {
        let mut next = object.clone();
        next["data"][format!("k{i}")] = json!("v");
        let now = format!("2024-05-01T00:00:{:02}Z", i + 1);
        object = update(Some(&object), &next, &ep.req(&format!("m{i:02}"), &now));
    }
    let names = managers(&object);
    assert_eq!(names.len(), 10);
    assert!(names.contains(&"ancient-changes/Update".to_owned()));
    assert_eq!(
        fields(&object, "ancient-changes", "Update"),
        json!({"f:data": {".": {}, "f:k0": {}, "f:k1": {}}})
    );
}

fn client_side_applied(ep: &Endpoint, config: &Value) -> Value {
    let mut object = config.clone();
    object["metadata"]["annotations"] = json!({
        LAST_APPLIED_ANNOTATION: format!("{}\n", json::go_json(config)),
    });
    let mut object = update(None, &object, &ep.req("kubectl-client-side-apply", T1));
    object["metadata"]["uid"] = json!("u1");
    object
}

#[test]
fn kubectl_takes_over_fields_it_applied_client_side_without_conflict() {
    let ep = Endpoint::deployment();
    let csa = client_side_applied(&ep, &deployment_config(3, "nginx:1.24"));
    let ssa = deployment_config(3, "nginx:1.25");
    let object = apply(Some(&csa), &ssa, false, &ep.req("kubectl", T2)).unwrap();
    assert_eq!(
        object["spec"]["template"]["spec"]["containers"][0]["image"],
        "nginx:1.25"
    );
    let csa_fields = fields(&object, "kubectl-client-side-apply", "Update");
    assert!(
        csa_fields["f:spec"]["f:template"]["f:spec"]["f:containers"]["k:{\"name\":\"nginx\"}"]
            .get("f:image")
            .is_none()
    );
    // The annotation now holds the server-side applied configuration.
    let annotation = object["metadata"]["annotations"][LAST_APPLIED_ANNOTATION]
        .as_str()
        .unwrap();
    assert_eq!(annotation, format!("{}\n", json::go_json(&ssa)));

    // Another manager gets no such pass.
    let err = apply(Some(&csa), &ssa, false, &ep.req("argo", T2)).unwrap_err();
    assert_eq!(conflicts(err).0.len(), 1);
}

#[test]
fn kubectl_takes_over_an_untracked_client_side_applied_object_with_defaulted_atomic_lists() {
    // What `kubectl apply -f` of ingress-nginx leaves: a webhook configuration stored
    // defaulted (each rule gets `scope: "*"`, an atomic list) and not tracked.
    let ep = Endpoint::builtin(
        "admissionregistration.k8s.io/v1",
        "ValidatingWebhookConfiguration",
        false,
    );
    let config = json!({"apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration", "metadata": {"name": "hook"},
        "webhooks": [{"name": "validate.example.com", "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "clientConfig": {"service": {"name": "svc", "namespace": "ns"}},
            "rules": [{"apiGroups": ["networking.k8s.io"], "apiVersions": ["v1"],
                "operations": ["CREATE"], "resources": ["ingresses"]}]}]});
    let mut live = config.clone();
    crate::api::defaults::apply_defaults(ep.kind, &mut live);
    assert_eq!(live["webhooks"][0]["rules"][0]["scope"], "*");
    live["metadata"]["uid"] = json!("u1");
    live["metadata"]["annotations"] = json!({
        LAST_APPLIED_ANNOTATION: format!("{}\n", json::go_json(&config)),
    });
    let object = apply(Some(&live), &config, false, &ep.req("kubectl", T2))
        .expect("kubectl takes over what it applied client-side");
    assert_eq!(object["webhooks"][0]["name"], "validate.example.com");
    // A field changed since (by someone else) still conflicts.
    let mut edited = live.clone();
    edited["webhooks"][0]["rules"][0]["operations"] = json!(["CREATE", "UPDATE"]);
    let err = apply(Some(&edited), &config, false, &ep.req("kubectl", T2)).unwrap_err();
    assert_eq!(conflicts(err).0.len(), 1);
}

#[test]
fn kubectl_still_conflicts_on_fields_changed_since_the_client_side_apply() {
    let ep = Endpoint::deployment();
    let csa = client_side_applied(&ep, &deployment_config(3, "nginx:1.24"));
    let mut scaled = csa.clone();
    scaled["spec"]["replicas"] = json!(5);
    let scaled = update(
        Some(&csa),
        &scaled,
        &ep.req("kubectl-client-side-apply", T2),
    );
    let err = apply(
        Some(&scaled),
        &deployment_config(4, "nginx:1.25"),
        false,
        &ep.req("kubectl", T3),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
    );
}

#[test]
fn custom_resources_merge_by_their_schema_list_map_keys() {
    let schema = json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "routes": {
                "type": "array",
                "x-kubernetes-list-type": "map",
                "x-kubernetes-list-map-keys": ["host", "port"],
                "items": {"type": "object", "properties": {
                    "host": {"type": "string"},
                    "port": {"type": "integer", "default": 443},
                    "backend": {"type": "string"},
                }},
            },
            "hosts": {"type": "array", "items": {"type": "string"}},
        }}},
    });
    let ep = Endpoint {
        api_version: "example.com/v1",
        kind: "Gateway",
        shape: Shape::from_openapi_v3(&schema),
        reset: reset_fields("Gateway", "", true),
        status_reset: reset_fields("Gateway", "status", true),
    };
    let config = |routes: Value| {
        json!({"apiVersion": "example.com/v1", "kind": "Gateway",
               "metadata": {"name": "gw"}, "spec": {"routes": routes, "hosts": ["a"]}})
    };
    let object = apply(
        None,
        &config(json!([{"host": "a.example", "backend": "x"}])),
        false,
        &ep.req("team-a", T1),
    )
    .unwrap();
    assert_eq!(
        fields(&object, "team-a", "Apply"),
        json!({"f:spec": {"f:hosts": {}, "f:routes": {
            "k:{\"host\":\"a.example\",\"port\":443}": {".": {}, "f:backend": {}, "f:host": {}}
        }}})
    );
    let team_b = json!({"apiVersion": "example.com/v1", "kind": "Gateway", "metadata": {"name": "gw"},
                        "spec": {"routes": [{"host": "b.example", "port": 80, "backend": "y"}]}});
    let object = apply(Some(&object), &team_b, false, &ep.req("team-b", T2)).unwrap();
    assert_eq!(object["spec"]["routes"].as_array().unwrap().len(), 2);

    let object = apply(
        Some(&object),
        &config(json!([])),
        false,
        &ep.req("team-a", T3),
    )
    .unwrap();
    assert_eq!(
        object["spec"]["routes"],
        json!([{"host": "b.example", "port": 80, "backend": "y"}])
    );

    // The atomic `hosts` list conflicts as a whole.
    let err = apply(
        Some(&object),
        &json!({"apiVersion": "example.com/v1", "kind": "Gateway", "metadata": {"name": "gw"}, "spec": {"hosts": ["a", "b"]}}),
        false,
        &ep.req("team-b", T3),
    )
    .unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"Apply failed with 1 conflict: conflict with "team-a": .spec.hosts"#
    );
}

#[test]
fn bad_configurations_are_typed_errors() {
    let ep = Endpoint::deployment();
    let r = ep.req("kubectl", T1);
    let err = |config: Value| apply(None, &config, false, &r).unwrap_err();
    assert!(matches!(err(json!([1])), ApplyError::NotAnObject { .. }));
    assert_eq!(
        err(json!({"kind": "Deployment", "metadata": {"name": "x"}})).to_string(),
        "invalid object type: /, Kind=Deployment"
    );
    assert!(matches!(
        err(json!({"apiVersion": "apps/v1", "metadata": {"name": "x"}})),
        ApplyError::MissingKind { .. }
    ));
    assert_eq!(
        err(json!({"apiVersion": "apps/v1", "kind": "ReplicaSet", "metadata": {"name": "x"}}))
            .to_string(),
        "invalid object type: apps/v1, Kind=ReplicaSet"
    );
    assert_eq!(
        err(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {}})),
        ApplyError::MissingName
    );
    assert_eq!(
        err(json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "x", "managedFields": []}}))
            .to_string(),
        "metadata.managedFields must be nil"
    );

    let mut dup = deployment_config(1, "x");
    dup["spec"]["template"]["spec"]["containers"] = json!([{"name": "a"}, {"name": "a"}]);
    assert_eq!(
        err(dup).to_string(),
        r#"failed to create typed patch object (default/web; apps/v1, Kind=Deployment): .spec.template.spec.containers: duplicate entries for key [name="a"]"#
    );
    let mut keyless = deployment_config(1, "x");
    keyless["spec"]["template"]["spec"]["containers"] = json!([{"image": "a"}, "b"]);
    assert_eq!(
        err(keyless).to_string(),
        concat!(
            "failed to create typed patch object (default/web; apps/v1, Kind=Deployment): errors:\n",
            "  .spec.template.spec.containers: element 0: associative list with keys has an element that omits all key fields [\"name\"] (and doesn't have default values for any key fields)\n",
            "  .spec.template.spec.containers: element 1: associative list with keys may not have non-map elements"
        )
    );
}

#[test]
fn unreadable_live_managed_fields_fail_apply_but_not_update() {
    let ep = Endpoint::config_map();
    let live = json!({"apiVersion": "v1", "kind": "ConfigMap",
                      "metadata": {"name": "c", "uid": "u", "managedFields": [{"manager": "x", "operation": "Bogus"}]}});
    let config = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}});
    let err = apply(Some(&live), &config, false, &ep.req("kubectl", T1)).unwrap_err();
    assert_eq!(
        err.to_string(),
        "failed to decode managed fields: operation must be `Apply` or `Update`"
    );
    let mut new = live.clone();
    new["data"] = json!({"a": "b"});
    let updated = update(Some(&live), &new, &ep.req("editor", T1));
    assert!(updated["metadata"].get("managedFields").is_none());
}
