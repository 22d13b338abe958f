//! Server-side printing: objects as `meta.k8s.io/v1 Table` with upstream printers' columns and cells;
//! this file builds rows and tables, the cells of each area live next to it.
//!
//! Columns and cell logic follow k8s.io/kubernetes `pkg/printers/internalversion/printers.go`
//! (v1.32). The server always prints the wide form (priority-1 columns included); kubectl
//! hides priority-1 columns unless `-o wide`. Cells are computed from the object's
//! Kubernetes JSON, so missing fields read as their zero value, as in Go.

mod cells;
mod columns;
mod event;
mod negotiation;
mod node;
mod pod;
mod service;
#[cfg(test)]
mod test_support;

pub use cells::human_duration;
pub use columns::column_definitions;
pub use negotiation::{negotiated_table_version, wants_table, IncludeObject};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use cells::{
    age, arr, container_cells, deployment_selector, format_label_selector, int, labels_string,
    meta_str, obj_len, str_at,
};
use event::event_cells;
use node::node_cells;
use pod::pod_cells;
use service::{format_endpoints, service_cells};

/// `apiVersion` of the tables built here.
pub const TABLE_API_VERSION: &str = "meta.k8s.io/v1";

/// The cells of `obj`'s row, in the order of [`column_definitions`] for `kind`.
pub fn row(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(meta_str(obj, "name"));
    let age = json!(age(obj, now));
    match kind {
        "Pod" => pod_cells(obj, now),
        "ReplicationController" => {
            let (names, images) = container_cells(&obj["spec"]["template"]);
            vec![
                name,
                json!(int(&obj["spec"]["replicas"])),
                json!(int(&obj["status"]["replicas"])),
                json!(int(&obj["status"]["readyReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(labels_string(&obj["spec"]["selector"])),
            ]
        }
        "ReplicaSet" => {
            let (names, images) = container_cells(&obj["spec"]["template"]);
            vec![
                name,
                json!(int(&obj["spec"]["replicas"])),
                json!(int(&obj["status"]["replicas"])),
                json!(int(&obj["status"]["readyReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(format_label_selector(&obj["spec"]["selector"])),
            ]
        }
        "Deployment" => {
            let (names, images) = container_cells(&obj["spec"]["template"]);
            let status = &obj["status"];
            let ready = format!(
                "{}/{}",
                int(&status["readyReplicas"]),
                int(&obj["spec"]["replicas"])
            );
            vec![
                name,
                json!(ready),
                json!(int(&status["updatedReplicas"])),
                json!(int(&status["availableReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(deployment_selector(&obj["spec"]["selector"])),
            ]
        }
        "Service" => service_cells(obj, name, age),
        "Endpoints" => vec![name, json!(format_endpoints(obj)), age],
        "Node" => node_cells(obj, name, age),
        "Namespace" => vec![name, json!(str_at(&obj["status"]["phase"])), age],
        "Event" => event_cells(obj, now),
        "ConfigMap" => {
            let count = obj_len(&obj["data"]) + obj_len(&obj["binaryData"]);
            vec![name, json!(count), age]
        }
        "Secret" => vec![
            name,
            json!(str_at(&obj["type"])),
            json!(obj_len(&obj["data"])),
            age,
        ],
        "ServiceAccount" => vec![name, json!(arr(&obj["secrets"]).len()), age],
        "Lease" => vec![name, json!(str_at(&obj["spec"]["holderIdentity"])), age],
        _ => vec![name, age],
    }
}

/// Row conditions upstream attaches: pods that finished are marked `Completed`.
fn row_conditions(kind: &str, obj: &Value) -> Option<Value> {
    if kind != "Pod" {
        return None;
    }
    let (reason, message) = match str_at(&obj["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

fn table_row(kind: &str, obj: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let mut r = Map::new();
    r.insert("cells".into(), Value::Array(row(kind, obj, now)));
    if let Some(conditions) = row_conditions(kind, obj) {
        r.insert("conditions".into(), conditions);
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": TABLE_API_VERSION,
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            );
        }
        IncludeObject::Object => {
            r.insert("object".into(), obj.clone());
        }
    }
    Value::Object(r)
}

/// A full Table of `objects`. `list_meta` becomes the Table's `metadata`
/// (`resourceVersion`, `continue`, `remainingItemCount` of the list).
pub fn table(
    kind: &str,
    objects: &[&Value],
    include: IncludeObject,
    now: DateTime<Utc>,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| table_row(kind, o, include, now))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": list_meta,
        "columnDefinitions": column_definitions(kind),
        "rows": rows,
    })
}

/// A one-row Table for a single object: the body of a watch event (and of a GET of one
/// object, with `with_columns`). As upstream, a watch stream carries the column
/// definitions on its first event only; later events have `"columnDefinitions": null`.
/// The Table's metadata holds the object's resourceVersion.
pub fn watch_table(
    kind: &str,
    obj: &Value,
    include: IncludeObject,
    now: DateTime<Utc>,
    with_columns: bool,
) -> Value {
    let mut meta = Map::new();
    if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
        meta.insert("resourceVersion".into(), json!(rv));
    }
    let columns = if with_columns {
        Value::Array(column_definitions(kind))
    } else {
        Value::Null
    };
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": [table_row(kind, obj, include, now)],
    })
}

/// Rewrites a Table built here for a client that negotiated another Table version
/// (`meta.k8s.io/v1beta1`): the Table and its `PartialObjectMetadata` rows.
pub fn set_api_version(table: &mut Value, api_version: &str) {
    table["apiVersion"] = json!(api_version);
    if let Some(rows) = table["rows"].as_array_mut() {
        for r in rows {
            if r["object"]["kind"] == "PartialObjectMetadata" {
                r["object"]["apiVersion"] = json!(api_version);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::columns::column_definitions;
    use super::negotiation::IncludeObject;
    use super::*;
    use crate::api::table::test_support::{ago, cells, now};
    use serde_json::json;

    fn template() -> Value {
        json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1"},
            {"name": "log", "image": "busybox"},
        ]}})
    }

    #[test]
    fn deployment_counts_and_wide_cells() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(51 * 3600)},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web", "tier": "fe"}},
                "template": template(),
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            cells("Deployment", &d),
            [
                "web",
                "2/3",
                "3",
                "2",
                "2d3h",
                "web,log",
                "nginx:1,busybox",
                "app=web,tier=fe"
            ]
        );
        let r = row("Deployment", &d, now());
        assert_eq!(r[2], json!(3), "UP-TO-DATE is a number cell");
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"replicas": 2}});
        assert_eq!(cells("Deployment", &fresh)[1..4], ["0/2", "0", "0"]);
        assert_eq!(cells("Deployment", &fresh)[7], "");
    }

    #[test]
    fn replica_set_and_replication_controller_cells() {
        let rs = json!({
            "metadata": {"name": "web-abc", "creationTimestamp": ago(10)},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                "template": template(),
            },
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        assert_eq!(
            row("ReplicaSet", &rs, now()),
            vec![
                json!("web-abc"),
                json!(2),
                json!(2),
                json!(1),
                json!("10s"),
                json!("web,log"),
                json!("nginx:1,busybox"),
                json!("app=web,env in (dev,prod)"),
            ]
        );
        let rc = json!({
            "metadata": {"name": "rc"},
            "spec": {"replicas": 1, "selector": {"b": "2", "a": "1"}, "template": template()},
        });
        assert_eq!(
            cells("ReplicationController", &rc),
            [
                "rc",
                "1",
                "0",
                "0",
                "<unknown>",
                "web,log",
                "nginx:1,busybox",
                "a=1,b=2"
            ]
        );
        let bare = json!({"metadata": {"name": "rs"}, "spec": {}});
        assert_eq!(cells("ReplicaSet", &bare)[7], "<none>");
    }

    #[test]
    fn small_kinds() {
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(86400 * 3)},
                        "status": {"phase": "Active"}});
        assert_eq!(cells("Namespace", &ns), ["kube-system", "Active", "3d"]);
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": ago(5)},
                        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            row("ConfigMap", &cm, now()),
            vec![json!("c"), json!(3), json!("5s")]
        );
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}});
        assert_eq!(cells("Secret", &secret), ["s", "Opaque", "1", "<unknown>"]);
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(cells("ServiceAccount", &sa), ["default", "0", "<unknown>"]);
        let lease = json!({"metadata": {"name": "n1", "creationTimestamp": ago(7200)},
                           "spec": {"holderIdentity": "n1"}});
        assert_eq!(cells("Lease", &lease), ["n1", "n1", "120m"]);
        let other = json!({"metadata": {"name": "thing", "creationTimestamp": ago(3)}});
        assert_eq!(cells("Widget", &other), ["thing", "3s"]);
    }

    #[test]
    fn every_kind_has_as_many_cells_as_columns() {
        let obj = json!({"metadata": {"name": "x"}});
        for kind in [
            "Pod",
            "ReplicationController",
            "ReplicaSet",
            "Deployment",
            "Service",
            "Endpoints",
            "Node",
            "Namespace",
            "Event",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Lease",
            "Other",
        ] {
            assert_eq!(
                row(kind, &obj, now()).len(),
                column_definitions(kind).len(),
                "{kind}"
            );
        }
    }

    #[test]
    fn table_includes_partial_metadata_by_default() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "y"}}, "data": {}});
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "ns"}});
        let t = table(
            "ConfigMap",
            &[&a, &b],
            IncludeObject::parse(""),
            now(),
            json!({"resourceVersion": "42"}),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 3);
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["cells"], json!(["a", 0, "<unknown>"]));
        assert_eq!(
            rows[0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "y"}}})
        );
        assert!(rows[0].get("conditions").is_none());

        let full = table("ConfigMap", &[&a], IncludeObject::Object, now(), json!({}));
        assert_eq!(full["rows"][0]["object"], a);
        let none = table("ConfigMap", &[&a], IncludeObject::None, now(), json!({}));
        assert!(none["rows"][0].get("object").is_none());
        let empty = table("Pod", &[], IncludeObject::Metadata, now(), json!({}));
        assert_eq!(empty["rows"], json!([]));
    }

    #[test]
    fn watch_tables_carry_columns_only_when_asked() {
        let cm = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let first = watch_table("ConfigMap", &cm, IncludeObject::Metadata, now(), true);
        assert_eq!(first["columnDefinitions"].as_array().unwrap().len(), 3);
        assert_eq!(first["metadata"], json!({"resourceVersion": "7"}));
        assert_eq!(first["rows"].as_array().unwrap().len(), 1);
        let later = watch_table("ConfigMap", &cm, IncludeObject::Metadata, now(), false);
        assert_eq!(later["columnDefinitions"], Value::Null);
        assert_eq!(later["rows"][0]["cells"][0], "a");
        assert_eq!(later["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn v1beta1_tables_rewrite_api_versions() {
        let cm = json!({"metadata": {"name": "a"}});
        let mut t = table(
            "ConfigMap",
            &[&cm],
            IncludeObject::Metadata,
            now(),
            json!({}),
        );
        set_api_version(&mut t, "meta.k8s.io/v1beta1");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");
    }
}
