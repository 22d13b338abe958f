//! CustomResourceDefinitions and custom objects (issue 13) through the real binary with
//! the real kubectl and raw HTTPS: a CRD is established and its kind is served like a
//! built-in one (CRUD, selectors, watch, Table columns, scale and status, discovery,
//! categories), versions read each other's objects, deletion empties the kind first,
//! and bad definitions are refused without a trace.

use std::time::Duration;

use serde_json::{json, Value};

mod support;
use support::server::Server;
use support::wait::wait_until;

const DEADLINE: Duration = Duration::from_secs(10);

const CRONTAB_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: crontabs.stable.example.com
spec:
  group: stable.example.com
  scope: Namespaced
  names:
    plural: crontabs
    singular: crontab
    kind: CronTab
    shortNames: [ct]
    categories: [all]
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              cronSpec: {type: string}
              image: {type: string}
              replicas: {type: integer}
          status:
            type: object
            properties:
              replicas: {type: integer}
              labelSelector: {type: string}
    subresources:
      status: {}
      scale:
        specReplicasPath: .spec.replicas
        statusReplicasPath: .status.replicas
        labelSelectorPath: .status.labelSelector
    additionalPrinterColumns:
    - {name: Spec, type: string, jsonPath: .spec.cronSpec}
    - {name: Replicas, type: integer, jsonPath: .spec.replicas}
    - {name: Age, type: date, jsonPath: .metadata.creationTimestamp}
"#;

fn crontab(name: &str, ns: &str, replicas: i64, labels: &str) -> String {
    format!(
        "apiVersion: stable.example.com/v1\nkind: CronTab\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {labels}\nspec:\n  cronSpec: '*/5 * * * *'\n  image: cron:1\n  replicas: {replicas}\n"
    )
}

fn with_crontabs() -> Server {
    let s = Server::start();
    s.apply_yaml("apply", CRONTAB_CRD);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
        "--timeout=10s",
    ]);
    s
}

#[test]
fn an_established_crd_serves_its_kind_like_a_built_in_one() {
    let s = with_crontabs();
    let crd = s.get_json(&["crd", "crontabs.stable.example.com"]);
    let conditions = crd["status"]["conditions"].as_array().unwrap();
    for kind in ["NamesAccepted", "Established"] {
        assert!(
            conditions
                .iter()
                .any(|c| c["type"] == kind && c["status"] == "True"),
            "{kind}: {conditions:?}"
        );
    }
    assert_eq!(crd["status"]["acceptedNames"]["shortNames"], json!(["ct"]));
    assert_eq!(crd["status"]["storedVersions"], json!(["v1"]));
    assert_eq!(crd["spec"]["names"]["listKind"], "CronTabList");

    s.apply_yaml("apply", &crontab("a", "default", 1, "{tier: fe}"));
    s.apply_yaml("create", &crontab("b", "default", 2, "{tier: be}"));
    // Short name, Table columns from additionalPrinterColumns.
    let table = s.ok(&["get", "ct"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "SPEC", "REPLICAS", "AGE"], "{table}");
    assert!(table.contains("*/5 * * * *"), "{table}");
    // Label selectors and `kubectl get all` (category all).
    let selected = s.ok(&["get", "crontabs", "-l", "tier=be", "-o", "name"]);
    assert_eq!(selected.trim(), "crontab.stable.example.com/b");
    let all = s.ok(&["get", "all", "-o", "name"]);
    assert!(all.contains("crontab.stable.example.com/a"), "{all}");
    // Discovery: short names and categories, legacy and aggregated.
    let resources = s.ok(&[
        "api-resources",
        "--api-group=stable.example.com",
        "-o",
        "wide",
    ]);
    assert!(
        resources.contains("ct") && resources.contains("all"),
        "{resources}"
    );
    let list: Value =
        serde_json::from_str(&s.ok(&["get", "--raw", "/apis/stable.example.com/v1"])).unwrap();
    let names: Vec<&str> = list["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["crontabs", "crontabs/status", "crontabs/scale"]);

    // Scale and status subresources.
    s.ok(&["scale", "ct", "a", "--replicas=3"]);
    assert_eq!(s.get_json(&["ct", "a"])["spec"]["replicas"], 3);
    s.ok(&[
        "patch",
        "ct",
        "a",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":3,"labelSelector":"tier=fe"}}"#,
    ]);
    let scale: Value = serde_json::from_str(&s.ok(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/default/crontabs/a/scale",
    ]))
    .unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(
        scale["status"],
        json!({"replicas": 3, "selector": "tier=fe"})
    );
    // A write of the main resource keeps the status; the status write kept the spec.
    s.ok(&[
        "patch",
        "ct",
        "a",
        "--type=merge",
        "-p",
        r#"{"status":{"replicas":9},"spec":{"image":"cron:2"}}"#,
    ]);
    let a = s.get_json(&["ct", "a"]);
    assert_eq!(a["status"]["replicas"], 3);
    assert_eq!(a["spec"]["image"], "cron:2");
    assert_eq!(a["metadata"]["generation"], 3);
    // JSON patch works; strategic merge is refused as upstream.
    s.ok(&[
        "patch",
        "ct",
        "a",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/replicas","value":5}]"#,
    ]);
    let refused = s.fails(&["patch", "ct", "a", "-p", r#"{"spec":{"replicas":6}}"#]);
    assert!(
        refused.contains("strategic-merge-patch+json is not supported"),
        "{refused}"
    );
    assert_eq!(s.get_json(&["ct", "a"])["spec"]["replicas"], 5);

    // Dry run stores nothing; delete and deletecollection.
    let dry = s.kubectl_stdin(
        &["create", "--dry-run=server", "-f", "-"],
        &crontab("dry", "default", 1, "{}"),
    );
    assert!(dry.status.success(), "{dry:?}");
    s.fails(&["get", "ct", "dry"]);
    s.ok(&["delete", "ct", "b"]);
    s.ok(&["delete", "crontabs", "--all"]);
    assert_eq!(s.ok(&["get", "ct", "-o", "name"]).trim(), "");
}

#[test]
fn custom_objects_are_watched_owned_and_survive_a_restart() {
    let mut s = with_crontabs();
    s.apply_yaml("apply", &crontab("owner", "default", 1, "{}"));
    let owner = s.get_json(&["ct", "owner"]);
    let uid = owner["metadata"]["uid"].as_str().unwrap().to_string();
    s.apply_yaml(
        "apply",
        &format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: owned\n  ownerReferences:\n  - apiVersion: stable.example.com/v1\n    kind: CronTab\n    name: owner\n    uid: {uid}\n"
        ),
    );
    // A watch from a resourceVersion sees the next change.
    let rv = owner["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    s.ok(&["label", "ct", "owner", "seen=yes"]);
    let events = s.ok(&[
        "get",
        "--raw",
        &format!("/apis/stable.example.com/v1/namespaces/default/crontabs?watch=true&resourceVersion={rv}&timeoutSeconds=1"),
    ]);
    assert!(
        events.contains("\"type\":\"MODIFIED\"") && events.contains("\"seen\":\"yes\""),
        "{events}"
    );

    // The CRD and its objects are served again at once after a crash.
    s.kill9();
    s.spawn();
    assert_eq!(
        s.get_json(&["ct", "owner"])["metadata"]["uid"],
        uid.as_str()
    );

    // Deleting the owner collects the ConfigMap it owns.
    s.ok(&["delete", "ct", "owner"]);
    wait_until(DEADLINE, "the owned ConfigMap to be collected", || {
        !s.kubectl(&["get", "configmap", "owned"]).status.success()
    });
}

#[test]
fn deleting_a_crd_deletes_its_objects_first_and_namespaces_take_theirs_along() {
    let s = with_crontabs();
    s.ok(&["create", "namespace", "team"]);
    s.apply_yaml("apply", &crontab("cx", "team", 1, "{}"));
    s.apply_yaml("apply", &crontab("cy", "default", 1, "{}"));
    // A namespace going takes its custom objects along.
    s.ok(&["delete", "namespace", "team", "--timeout=20s"]);
    assert_eq!(
        s.ok(&["get", "ct", "-A", "-o", "name"]).trim(),
        "crontab.stable.example.com/cy"
    );

    s.ok(&[
        "delete",
        "crd",
        "crontabs.stable.example.com",
        "--timeout=20s",
    ]);
    assert!(!s
        .kubectl(&["get", "crd", "crontabs.stable.example.com"])
        .status
        .success());
    let gone = s.fails(&[
        "get",
        "--raw",
        "/apis/stable.example.com/v1/namespaces/default/crontabs",
    ]);
    assert!(
        gone.contains("NotFound") || gone.contains("not found"),
        "{gone}"
    );
    // Created again, the kind starts empty: nothing of the old objects is left behind.
    s.apply_yaml("apply", CRONTAB_CRD);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/crontabs.stable.example.com",
    ]);
    assert_eq!(s.ok(&["get", "ct", "-A", "-o", "name"]).trim(), "");
}

#[test]
fn every_served_version_reads_objects_stored_in_another() {
    let s = Server::start();
    s.apply_yaml(
        "apply",
        r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: widgets.example.org}
spec:
  group: example.org
  scope: Cluster
  names: {plural: widgets, kind: Widget}
  versions:
  - name: v1beta1
    served: true
    storage: false
    deprecated: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
  - name: v1
    served: true
    storage: true
    schema: {openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}}
"#,
    );
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/widgets.example.org",
    ]);
    let out = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: example.org/v1beta1\nkind: Widget\nmetadata: {name: w}\nspec: {size: 3}\n",
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("example.org/v1beta1 Widget is deprecated"),
        "{out:?}"
    );
    for version in ["v1", "v1beta1"] {
        let w = s.get_json(&[&format!("widgets.{version}.example.org"), "w"]);
        assert_eq!(w["apiVersion"], format!("example.org/{version}"));
        assert_eq!(w["spec"]["size"], 3);
    }
    let group: Value = serde_json::from_str(&s.ok(&["get", "--raw", "/apis/example.org"])).unwrap();
    assert_eq!(group["preferredVersion"]["version"], "v1");
}

#[tokio::test]
async fn bad_definitions_and_unknown_kinds_are_refused_and_store_nothing() {
    let s = Server::start();
    let c = s.client(true);
    let crds = format!(
        "{}/apis/apiextensions.k8s.io/v1/customresourcedefinitions",
        s.url()
    );
    let crd = |name: &str, group: &str| {
        json!({
            "apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
            "metadata": {"name": name},
            "spec": {"group": group, "scope": "Namespaced",
                     "names": {"plural": "things", "kind": "Thing"},
                     "versions": [{"name": "v1", "served": true, "storage": true,
                                   "schema": {"openAPIV3Schema": {"type": "object"}}}]}
        })
    };
    for (body, field) in [
        (
            crd("things.wrong.example.com", "example.com"),
            "metadata.name",
        ),
        (crd("things.apps", "apps"), "spec.group"),
    ] {
        let resp = c.post(&crds).json(&body).send().await.unwrap();
        assert_eq!(resp.status(), 422);
        let status: Value = resp.json().await.unwrap();
        assert_eq!(status["reason"], "Invalid");
        assert!(
            status["details"]["causes"]
                .as_array()
                .unwrap()
                .iter()
                .any(|c| c["field"] == field),
            "{status}"
        );
    }
    let list: Value = c.get(&crds).send().await.unwrap().json().await.unwrap();
    assert_eq!(list["items"], json!([]));
    let unknown = c
        .get(format!(
            "{}/apis/example.com/v1/namespaces/default/things",
            s.url()
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 404);
}

const RULED_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: backups.ops.example.com}
spec:
  group: ops.example.com
  scope: Namespaced
  names: {plural: backups, kind: Backup}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            required: [schedule]
            x-kubernetes-validations:
            - rule: "self.keep >= self.minKeep"
              message: "keep must be at least minKeep"
            - rule: "!has(oldSelf.target) || self.target == oldSelf.target"
              message: "target is immutable"
            properties:
              schedule: {type: string, pattern: '^(\S+ ){4}\S+$'}
              keep: {type: integer, default: 7, minimum: 1}
              minKeep: {type: integer, default: 1}
              mode: {type: string, enum: [full, incremental], default: full}
              target: {type: string}
"#;

#[test]
fn schemas_default_prune_and_validate_custom_objects_with_cel_rules() {
    let s = Server::start();
    s.apply_yaml("apply", RULED_CRD);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/backups.ops.example.com",
    ]);
    let backup = |spec: &str| {
        format!("apiVersion: ops.example.com/v1\nkind: Backup\nmetadata: {{name: nightly}}\nspec: {spec}\n")
    };
    // Defaults fill what is missing; unknown fields are pruned (Warn) or refused (Strict).
    let out = s.kubectl_stdin(
        &["create", "--validate=warn", "-f", "-"],
        &backup("{schedule: '0 3 * * *', target: s3, extra: 1}"),
    );
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(r#"unknown field "spec.extra""#),
        "{out:?}"
    );
    let b = s.get_json(&["backup", "nightly"]);
    assert_eq!(
        b["spec"],
        json!({"schedule": "0 3 * * *", "target": "s3", "keep": 7, "minKeep": 1, "mode": "full"})
    );
    let strict = s.kubectl_stdin(
        &["apply", "--validate=strict", "-f", "-"],
        &backup("{schedule: '0 3 * * *', target: s3, extra: 1}"),
    );
    assert!(!strict.status.success());

    // Schema keywords and CEL rules answer 422 with upstream's messages.
    for (spec, message) in [
        (
            "{schedule: 'hourly', target: s3}",
            r#"spec.schedule in body should match"#,
        ),
        (
            "{schedule: '0 3 * * *', target: s3, mode: partial}",
            r#"Unsupported value: "partial""#,
        ),
        (
            "{schedule: '0 3 * * *', target: s3, keep: 0}",
            "should be greater than or equal to 1",
        ),
        (
            "{schedule: '0 3 * * *', target: s3, keep: 2, minKeep: 5}",
            "keep must be at least minKeep",
        ),
        (
            "{schedule: '0 3 * * *', target: gcs}",
            "target is immutable",
        ),
    ] {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &backup(spec));
        assert!(!out.status.success(), "{spec} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
    assert_eq!(s.get_json(&["backup", "nightly"])["spec"]["target"], "s3");
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        &backup("{target: s3}").replace("nightly", "weekly"),
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.schedule: Required value"),
        "{out:?}"
    );

    // A rule that does not compile refuses the CRD itself.
    let broken = RULED_CRD
        .replace("backups.ops", "brokens.ops")
        .replace(
            "plural: backups, kind: Backup",
            "plural: brokens, kind: Broken",
        )
        .replace("self.keep >= self.minKeep", "self.keep >=");
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &broken);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("compilation failed"),
        "{out:?}"
    );
}

#[test]
fn without_a_status_subresource_any_change_but_metadata_moves_the_generation() {
    let s = Server::start();
    s.apply_yaml(
        "apply",
        "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata: {name: gadgets.example.com}\nspec:\n  group: example.com\n  scope: Namespaced\n  names: {plural: gadgets, singular: gadget, kind: Gadget}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema: {type: object, x-kubernetes-preserve-unknown-fields: true}\n",
    );
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gadgets.example.com",
        "--timeout=20s",
    ]);
    s.apply_yaml(
        "create",
        "apiVersion: example.com/v1\nkind: Gadget\nmetadata: {name: g, namespace: default}\nspec: {size: 1}\n",
    );
    let generation = || s.get_json(&["gadget", "g"])["metadata"]["generation"].clone();
    assert_eq!(generation(), 1);
    // As upstream's custom resource strategy: with no status subresource, the status
    // is part of what generation tracks; labels are not.
    let patch = |p: &str| s.ok(&["patch", "gadget", "g", "--type=merge", "-p", p]);
    patch(r#"{"status":{"ready":true}}"#);
    assert_eq!(generation(), 2);
    patch(r#"{"metadata":{"labels":{"tier":"a"}}}"#);
    assert_eq!(generation(), 2);
    patch(r#"{"spec":{"size":2}}"#);
    assert_eq!(generation(), 3);
}

const LIBRARY_CRD: &str = r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata: {name: pools.net.example.com}
spec:
  group: net.example.com
  scope: Namespaced
  names: {plural: pools, kind: Pool}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            x-kubernetes-validations:
            - rule: "quantity(self.request).compareTo(quantity(self.limit)) <= 0"
              message: "request must not exceed limit"
            - rule: "cidr(self.network).containsIP(self.gateway)"
              messageExpression: "'gateway ' + self.gateway + ' is outside ' + string(cidr(self.network).masked())"
            - rule: "!has(self.interval) || self.interval >= duration('1m')"
              message: "interval must be at least a minute"
            properties:
              request:
                type: string
                x-kubernetes-validations:
                - {rule: "isQuantity(self)", message: "request must be a quantity"}
              limit: {type: string}
              endpoint:
                type: string
                x-kubernetes-validations:
                - rule: "isURL(self) && url(self).getScheme() == 'https'"
                  message: "endpoint must be an https URL"
              network: {type: string}
              gateway: {type: string}
              interval: {type: string, format: duration}
              name:
                type: string
                x-kubernetes-validations:
                - rule: "!format.dns1123Label().validate(self).hasValue()"
                  messageExpression: "format.dns1123Label().validate(self).value().join(', ')"
"#;

#[test]
fn kubernetes_cel_libraries_check_quantities_urls_and_networks() {
    let s = Server::start();
    s.apply_yaml("apply", LIBRARY_CRD);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/pools.net.example.com",
    ]);
    let pool = |spec: &str| {
        format!(
            "apiVersion: net.example.com/v1\nkind: Pool\nmetadata: {{name: lan}}\nspec: {spec}\n"
        )
    };
    let valid = "{request: 500Mi, limit: 1Gi, endpoint: 'https://pool.example.com:8443/api', \
                 network: 10.1.0.0/16, gateway: 10.1.0.1, interval: 5m, name: lan-1}";
    let out = s.kubectl_stdin(&["apply", "-f", "-"], &pool(valid));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(s.get_json(&["pool", "lan"])["spec"]["limit"], "1Gi");

    for (spec, message) in [
        (
            "{request: 2Gi, limit: 1G, network: 10.1.0.0/16, gateway: 10.1.0.1}",
            "request must not exceed limit",
        ),
        (
            "{request: 1, limit: 2, network: 10.1.0.0/16, gateway: 10.2.0.1}",
            "gateway 10.2.0.1 is outside 10.1.0.0/16",
        ),
        (
            "{request: 1, limit: 2, network: 10.1.0.0/16, gateway: 10.1.0.1, interval: 30s}",
            "interval must be at least a minute",
        ),
        (
            "{request: 1, limit: 2, network: 10.1.0.0/16, gateway: 10.1.0.1, endpoint: 'http://pool'}",
            "endpoint must be an https URL",
        ),
        (
            "{request: 1, limit: 2, network: 10.1.0.0/16, gateway: 10.1.0.1, name: Lan_1}",
            "a lowercase RFC 1123 label must consist of lower case alphanumeric characters",
        ),
        (
            "{request: lots, limit: 2, network: 10.1.0.0/16, gateway: 10.1.0.1}",
            "request must be a quantity",
        ),
        // A value a library function cannot parse is an evaluation error, as upstream.
        (
            "{request: 1, limit: 2, network: 10.1.0.0/33, gateway: 10.1.0.1}",
            "prefix length out of range evaluating rule",
        ),
    ] {
        let out = s.kubectl_stdin(&["apply", "-f", "-"], &pool(spec));
        assert!(!out.status.success(), "{spec} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{spec}: {stderr}");
    }
    assert_eq!(s.get_json(&["pool", "lan"])["spec"]["gateway"], "10.1.0.1");
}
