//! Server-side apply for real (issue 13, item 5) through kubectl and raw HTTPS:
//! managedFields on every write, conflicts with upstream's details, force, removal of
//! dropped fields, list merging by keys (built-in and custom kinds), the upgrade from
//! client-side apply, and a CRD too large for client-side apply.

use std::io::Read;

use serde_json::{json, Value};

mod support;
use support::server::Server;

fn managers(obj: &Value) -> Vec<(String, String)> {
    obj["metadata"]["managedFields"]
        .as_array()
        .map(|entries| {
            entries
                .iter()
                .map(|e| {
                    (
                        e["manager"].as_str().unwrap_or("").to_string(),
                        e["operation"].as_str().unwrap_or("").to_string(),
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

fn owner_of<'a>(obj: &'a Value, manager: &str) -> &'a Value {
    obj["metadata"]["managedFields"]
        .as_array()
        .and_then(|entries| entries.iter().find(|e| e["manager"] == manager))
        .map(|e| &e["fieldsV1"])
        .unwrap_or(&Value::Null)
}

const CONFIG: &str = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  labels: {team: a}\ndata:\n  mode: fast\n  level: \"3\"\n";

#[test]
fn applies_own_fields_conflict_with_other_managers_and_remove_what_they_drop() {
    let s = Server::start();
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], CONFIG);
    assert!(out.status.success(), "{out:?}");
    let cm = s.get_json(&["cm", "app", "--show-managed-fields"]);
    assert_eq!(
        managers(&cm),
        [("kubectl".to_string(), "Apply".to_string())]
    );
    assert_eq!(
        owner_of(&cm, "kubectl"),
        &json!({"f:data": {"f:level": {}, "f:mode": {}}, "f:metadata": {"f:labels": {"f:team": {}}}})
    );

    // Another manager changes a field the applier owns: the next apply conflicts.
    s.ok(&["patch", "cm", "app", "-p", r#"{"data":{"mode":"slow"}}"#]);
    let cm = s.get_json(&["cm", "app", "--show-managed-fields"]);
    assert!(managers(&cm).contains(&("kubectl-patch".to_string(), "Update".to_string())));
    let conflict = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], CONFIG);
    assert!(!conflict.status.success());
    let stderr = String::from_utf8_lossy(&conflict.stderr);
    assert!(
        stderr.contains(
            r#"Apply failed with 1 conflict: conflict with "kubectl-patch" using v1: .data.mode"#
        ),
        "{stderr}"
    );
    assert_eq!(s.get_json(&["cm", "app"])["data"]["mode"], "slow");

    // Forced, the applier takes the field back.
    let forced = s.kubectl_stdin(
        &["apply", "--server-side", "--force-conflicts", "-f", "-"],
        CONFIG,
    );
    assert!(forced.status.success(), "{forced:?}");
    let cm = s.get_json(&["cm", "app", "--show-managed-fields"]);
    assert_eq!(cm["data"]["mode"], "fast");
    assert!(
        !managers(&cm).iter().any(|(m, _)| m == "kubectl-patch"),
        "{:?}",
        managers(&cm)
    );

    // A field dropped from the configuration goes; one another applier shares stays.
    let other = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\ndata:\n  level: \"3\"\n";
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=other", "-f", "-"],
        other,
    );
    assert!(out.status.success(), "{out:?}");
    let trimmed =
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: app\n  labels: {team: a}\ndata: {}\n";
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], trimmed);
    assert!(out.status.success(), "{out:?}");
    let cm = s.get_json(&["cm", "app"]);
    assert_eq!(
        cm["data"],
        json!({"level": "3"}),
        "mode is gone, level stays (other owns it)"
    );
}

#[tokio::test]
async fn conflicts_and_bad_options_answer_with_upstreams_status() {
    let s = Server::start();
    let c = s.client(true);
    let url = format!("{}/api/v1/namespaces/default/configmaps/raw", s.url());
    let apply = |manager: &str, force: bool, body: Value| {
        let mut u = format!("{url}?fieldManager={manager}");
        if force {
            u.push_str("&force=true");
        }
        c.patch(u)
            .header("Content-Type", "application/apply-patch+yaml")
            .body(serde_json::to_vec(&body).unwrap())
    };
    let cm = |v: &str| json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "raw"}, "data": {"k": v}});
    let created = apply("first", false, cm("1")).send().await.unwrap();
    assert_eq!(created.status(), 201);
    let conflict = apply("second", false, cm("2")).send().await.unwrap();
    assert_eq!(conflict.status(), 409);
    let status: Value = conflict.json().await.unwrap();
    assert_eq!(status["reason"], "Conflict");
    assert_eq!(
        status["details"]["causes"],
        json!([{"reason": "FieldManagerConflict", "message": "conflict with \"first\"", "field": ".data.k"}])
    );
    let forced = apply("second", true, cm("2")).send().await.unwrap();
    assert_eq!(forced.status(), 200);

    // Apply without a manager, force on a merge patch: 422 PatchOptions, nothing written.
    let no_manager = c
        .patch(&url)
        .header("Content-Type", "application/apply-patch+yaml")
        .body(serde_json::to_vec(&cm("3")).unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(no_manager.status(), 422);
    let status: Value = no_manager.json().await.unwrap();
    assert_eq!(status["details"]["causes"][0]["field"], "fieldManager");
    let forced_merge = c
        .patch(format!("{url}?force=true"))
        .header("Content-Type", "application/merge-patch+json")
        .body(r#"{"data":{"k":"4"}}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(forced_merge.status(), 422);
    let wrong_kind = apply(
        "second",
        false,
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "raw"}}),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(wrong_kind.status(), 400);
    let stored: Value = c.get(&url).send().await.unwrap().json().await.unwrap();
    assert_eq!(stored["data"]["k"], "2");
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: app
        image: busybox:1
        ports: [{containerPort: 80}]
";

#[test]
fn lists_merge_by_their_keys_and_client_side_apply_upgrades_without_conflicts() {
    let s = Server::start();
    // Client-side apply first, then the same manifest server-side with a change: the
    // last-applied configuration lets kubectl take over its own fields.
    s.apply_yaml("apply", DEPLOYMENT);
    let changed = DEPLOYMENT.replace("replicas: 2", "replicas: 3");
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s.get_json(&["deploy", "web"])["spec"]["replicas"], 3);

    // A second manager adds a container and a port: list-map items merge by key.
    let sidecar = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  template:
    spec:
      containers:
      - name: sidecar
        image: busybox:2
      - name: app
        ports: [{containerPort: 9090}]
";
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=mesh", "-f", "-"],
        sidecar,
    );
    assert!(out.status.success(), "{out:?}");
    let d = s.get_json(&["deploy", "web"]);
    let containers = d["spec"]["template"]["spec"]["containers"]
        .as_array()
        .unwrap();
    let mut names: Vec<&str> = containers
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["app", "sidecar"]);
    let app = containers.iter().find(|c| c["name"] == "app").unwrap();
    let mut ports: Vec<i64> = app["ports"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["containerPort"].as_i64().unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, [80, 9090]);
    // kubectl applies again unchanged: the other manager's container stays.
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &changed);
    assert!(out.status.success(), "{out:?}");
    let d = s.get_json(&["deploy", "web"]);
    assert_eq!(
        d["spec"]["template"]["spec"]["containers"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
}

#[test]
fn custom_lists_merge_by_schema_keys_and_a_huge_crd_applies_server_side() {
    let s = Server::start();
    let mut crd = String::new();
    flate2::read::GzDecoder::new(
        std::fs::File::open(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/data/crds/monitoring.coreos.com_prometheuses.yaml.gz"
        ))
        .unwrap(),
    )
    .read_to_string(&mut crd)
    .unwrap();
    // Too big for client-side apply's annotation, as on any Kubernetes.
    let csa = s.kubectl_stdin(&["apply", "-f", "-"], &crd);
    assert!(!csa.status.success());
    assert!(
        String::from_utf8_lossy(&csa.stderr)
            .contains("Too long: may not be more than 262144 bytes"),
        "{csa:?}"
    );
    let ssa = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &crd);
    assert!(ssa.status.success(), "{ssa:?}");
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/prometheuses.monitoring.coreos.com",
    ]);
    let again = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], &crd);
    assert!(again.status.success(), "{again:?}");
    // Its objects validate against the published schema: replicas must be an integer.
    let bad = s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        "apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {name: k8s}\nspec: {replicas: many}\n",
    );
    assert!(!bad.status.success());
    assert!(
        String::from_utf8_lossy(&bad.stderr).contains("spec.replicas"),
        "{bad:?}"
    );
    // `secrets` is a set (`x-kubernetes-list-type: set`): two managers keep one item
    // each; `containers` has no list type, so it is atomic: a second manager conflicts.
    let prometheus = |field: &str, item: &str| {
        format!(
            "apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {{name: k8s}}\nspec:\n  {field}: [{item}]\n"
        )
    };
    let apply_as = |manager: &str, body: String| {
        s.kubectl_stdin(
            &[
                "apply",
                "--server-side",
                &format!("--field-manager={manager}"),
                "-f",
                "-",
            ],
            &body,
        )
    };
    for (manager, secret) in [("ops", "a"), ("mesh", "b")] {
        let out = apply_as(manager, prometheus("secrets", secret));
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(
        s.get_json(&["prometheus", "k8s"])["spec"]["secrets"],
        json!(["a", "b"])
    );
    let out = apply_as("ops", prometheus("containers", "{name: a, image: busybox}"));
    assert!(out.status.success(), "{out:?}");
    let out = apply_as(
        "mesh",
        prometheus("containers", "{name: b, image: busybox}"),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"conflict with "ops""#),
        "{out:?}"
    );
}

#[test]
fn non_apply_creates_are_tracked_with_managed_fields_all_and_untracked_by_default() {
    let all = Server::start_with(&["--managed-fields", "all"]);
    all.ok(&["create", "configmap", "made", "--from-literal=a=1"]);
    let cm = all.get_json(&["cm", "made", "--show-managed-fields"]);
    assert_eq!(
        managers(&cm),
        [("kubectl-create".to_string(), "Update".to_string())]
    );
    assert_eq!(
        owner_of(&cm, "kubectl-create"),
        &json!({"f:data": {".": {}, "f:a": {}}})
    );

    // By default an object is tracked from its first apply on: a create leaves none,
    // an apply then owns what it applies and what was there before is
    // before-first-apply's.
    let light = Server::start();
    light.ok(&["create", "configmap", "made", "--from-literal=a=1"]);
    let cm = light.get_json(&["cm", "made", "--show-managed-fields"]);
    assert!(cm["metadata"]["managedFields"].is_null(), "{cm}");
    let out = light.kubectl_stdin(
        &["apply", "--server-side", "--field-manager=ops", "-f", "-"],
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: made}\ndata: {b: \"2\"}\n",
    );
    assert!(out.status.success(), "{out:?}");
    let cm = light.get_json(&["cm", "made", "--show-managed-fields"]);
    assert_eq!(cm["data"], json!({"a": "1", "b": "2"}));
    assert_eq!(owner_of(&cm, "ops"), &json!({"f:data": {"f:b": {}}}));
    light.ok(&["label", "cm", "made", "x=y"]);
    let cm = light.get_json(&["cm", "made", "--show-managed-fields"]);
    assert!(
        managers(&cm)
            .iter()
            .any(|(m, op)| m == "kubectl-label" && op == "Update"),
        "{cm}"
    );
}
