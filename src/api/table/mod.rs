//! Server-side printing: objects as `meta.k8s.io/v1 Table` with upstream printers' columns and cells;
//! this file holds one [`Printer`] per printed kind (the kind's registry strategy picks it)
//! and builds rows and tables from it, the cells of each area live next to it.
//!
//! Columns and cell logic follow k8s.io/kubernetes `pkg/printers/internalversion/printers.go`
//! (v1.32). The server always prints the wide form (priority-1 columns included); kubectl
//! hides priority-1 columns unless `-o wide`. Cells are computed from the object's
//! Kubernetes JSON, so missing fields read as their zero value, as in Go.

mod admission_policy;
mod apiregistration;
mod autoscaling;
mod batch;
mod cells;
mod columns;
mod csi;
mod daemonset;
mod disruption;
mod event;
mod ingress;
mod negotiation;
mod network_policy;
mod node;
mod node_class;
mod pod;
mod quota;
mod scheduling;
mod service;
mod statefulset;
mod storage;
#[cfg(test)]
mod test_support;

pub use admission_policy::{VALIDATING_ADMISSION_POLICY, VALIDATING_ADMISSION_POLICY_BINDING};
pub use apiregistration::API_SERVICE;
pub use autoscaling::{HORIZONTAL_POD_AUTOSCALER, HORIZONTAL_POD_AUTOSCALER_V1};
pub use batch::{CRON_JOB, JOB};
pub use cells::human_duration;
pub use csi::{CSI_DRIVER, CSI_NODE, CSI_STORAGE_CAPACITY, VOLUME_ATTACHMENT};
pub use disruption::POD_DISRUPTION_BUDGET;
pub use ingress::{INGRESS, INGRESS_CLASS};
pub use negotiation::{negotiated_table_version, wants_table, IncludeObject};
pub use network_policy::NETWORK_POLICY;
pub use node_class::{POD_TEMPLATE, RUNTIME_CLASS};
pub use quota::{LIMIT_RANGE, RESOURCE_QUOTA};
pub use scheduling::PRIORITY_CLASS;
pub use statefulset::{CONTROLLER_REVISION, STATEFUL_SET};
pub use storage::{
    access_modes_string, is_default_class, BETA_DEFAULT_CLASS_ANNOTATION, DEFAULT_CLASS_ANNOTATION,
    PERSISTENT_VOLUME, PERSISTENT_VOLUME_CLAIM, STORAGE_CLASS,
};

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use cells::{
    age, arr, container_cells, deployment_selector, format_label_selector, int, labels_string,
    meta_str, obj_len, str_at,
};
use service::format_endpoints;

/// `apiVersion` of the tables built here.
pub const TABLE_API_VERSION: &str = "meta.k8s.io/v1";

/// How objects of one kind print as Table rows (upstream's per-kind printer, the
/// registry strategy's `TableConvertor`): its columns, the cells of a row in their
/// order, and the conditions a row carries.
pub struct Printer {
    columns: fn() -> Vec<Value>,
    cells: fn(&Value, DateTime<Utc>) -> Vec<Value>,
    conditions: fn(&Value) -> Option<Value>,
}

/// What prints Table rows: a built-in kind's [`Printer`], or a custom resource's
/// printer columns (`api::custom`).
pub trait RowPrinter: Sync {
    /// The Table's `columnDefinitions`.
    fn column_definitions(&self) -> Vec<Value>;
    /// The cells of `obj`'s row, in the order of the column definitions.
    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value>;
    /// The row's `conditions`, if it has any.
    fn conditions(&self, obj: &Value) -> Option<Value>;
}

impl RowPrinter for Printer {
    fn column_definitions(&self) -> Vec<Value> {
        (self.columns)()
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        (self.cells)(obj, now)
    }

    fn conditions(&self, obj: &Value) -> Option<Value> {
        (self.conditions)(obj)
    }
}

fn name(obj: &Value) -> Value {
    json!(meta_str(obj, "name"))
}

fn no_conditions(_: &Value) -> Option<Value> {
    None
}

/// NAME and AGE: the printer of kinds without one of their own.
pub static DEFAULT: Printer = Printer {
    columns: columns::name_and_age,
    cells: |obj, now| vec![name(obj), json!(age(obj, now))],
    conditions: no_conditions,
};

pub static POD: Printer = Printer {
    columns: columns::pod,
    cells: pod::pod_cells,
    conditions: pod_conditions,
};

pub static REPLICATION_CONTROLLER: Printer = Printer {
    columns: columns::replication_controller,
    cells: |obj, now| replicated_cells(obj, now, labels_string(&obj["spec"]["selector"])),
    conditions: no_conditions,
};

pub static REPLICA_SET: Printer = Printer {
    columns: columns::replica_set,
    cells: |obj, now| replicated_cells(obj, now, format_label_selector(&obj["spec"]["selector"])),
    conditions: no_conditions,
};

/// NAME, DESIRED, CURRENT, READY, AGE and (wide) CONTAINERS, IMAGES, SELECTOR of a
/// ReplicationController or ReplicaSet; `selector` as the kind writes it.
fn replicated_cells(obj: &Value, now: DateTime<Utc>, selector: String) -> Vec<Value> {
    let (names, images) = container_cells(&obj["spec"]["template"]);
    vec![
        name(obj),
        json!(int(&obj["spec"]["replicas"])),
        json!(int(&obj["status"]["replicas"])),
        json!(int(&obj["status"]["readyReplicas"])),
        json!(age(obj, now)),
        json!(names),
        json!(images),
        json!(selector),
    ]
}

pub static DEPLOYMENT: Printer = Printer {
    columns: columns::deployment,
    cells: |obj, now| {
        let (names, images) = container_cells(&obj["spec"]["template"]);
        let status = &obj["status"];
        let ready = format!(
            "{}/{}",
            int(&status["readyReplicas"]),
            int(&obj["spec"]["replicas"])
        );
        vec![
            name(obj),
            json!(ready),
            json!(int(&status["updatedReplicas"])),
            json!(int(&status["availableReplicas"])),
            json!(age(obj, now)),
            json!(names),
            json!(images),
            json!(deployment_selector(&obj["spec"]["selector"])),
        ]
    },
    conditions: no_conditions,
};

pub static DAEMON_SET: Printer = Printer {
    columns: daemonset::columns,
    cells: |obj, now| daemonset::cells(obj, name(obj), now),
    conditions: no_conditions,
};

pub static SERVICE: Printer = Printer {
    columns: columns::service,
    cells: |obj, now| service::service_cells(obj, name(obj), json!(age(obj, now))),
    conditions: no_conditions,
};

pub static ENDPOINTS: Printer = Printer {
    columns: columns::endpoints,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(format_endpoints(obj)),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

pub static ENDPOINT_SLICE: Printer = Printer {
    columns: columns::endpoint_slice,
    cells: |obj, now| {
        let (ports, endpoints) = service::format_endpoint_slice(obj);
        vec![
            name(obj),
            json!(str_at(&obj["addressType"])),
            json!(ports),
            json!(endpoints),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

pub static NODE: Printer = Printer {
    columns: columns::node,
    cells: |obj, now| node::node_cells(obj, name(obj), json!(age(obj, now))),
    conditions: no_conditions,
};

pub static NAMESPACE: Printer = Printer {
    columns: columns::namespace,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(str_at(&obj["status"]["phase"])),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

pub static EVENT: Printer = Printer {
    columns: columns::event,
    cells: event::event_cells,
    conditions: no_conditions,
};

pub static CONFIG_MAP: Printer = Printer {
    columns: columns::config_map,
    cells: |obj, now| {
        let count = obj_len(&obj["data"]) + obj_len(&obj["binaryData"]);
        vec![name(obj), json!(count), json!(age(obj, now))]
    },
    conditions: no_conditions,
};

pub static SECRET: Printer = Printer {
    columns: columns::secret,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(str_at(&obj["type"])),
            json!(obj_len(&obj["data"])),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

pub static SERVICE_ACCOUNT: Printer = Printer {
    columns: columns::service_account,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(arr(&obj["secrets"]).len()),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

/// Validating- and MutatingWebhookConfigurations: NAME, WEBHOOKS, AGE.
pub static WEBHOOK_CONFIGURATION: Printer = Printer {
    columns: columns::webhook_configuration,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(arr(&obj["webhooks"]).len()),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

/// CustomResourceDefinitions print their creation time as a timestamp, as upstream.
pub static CUSTOM_RESOURCE_DEFINITION: Printer = Printer {
    columns: columns::custom_resource_definition,
    cells: |obj, _now| vec![name(obj), obj["metadata"]["creationTimestamp"].clone()],
    conditions: no_conditions,
};

pub static ROLE: Printer = Printer {
    columns: columns::role,
    cells: |obj, _now| vec![name(obj), obj["metadata"]["creationTimestamp"].clone()],
    conditions: no_conditions,
};

/// Upstream `printRoleBinding`: the role as `Kind/name`, then the subjects by kind
/// (service accounts as `namespace/name`).
pub static ROLE_BINDING: Printer = Printer {
    columns: columns::role_binding,
    cells: |obj, now| {
        let role_ref = &obj["roleRef"];
        let subjects = |kind: &str| -> String {
            arr(&obj["subjects"])
                .iter()
                .filter(|s| str_at(&s["kind"]) == kind)
                .map(|s| match kind {
                    "ServiceAccount" => {
                        format!("{}/{}", str_at(&s["namespace"]), str_at(&s["name"]))
                    }
                    _ => str_at(&s["name"]).to_string(),
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        vec![
            name(obj),
            json!(format!(
                "{}/{}",
                str_at(&role_ref["kind"]),
                str_at(&role_ref["name"])
            )),
            json!(age(obj, now)),
            json!(subjects("User")),
            json!(subjects("Group")),
            json!(subjects("ServiceAccount")),
        ]
    },
    conditions: no_conditions,
};

pub static LEASE: Printer = Printer {
    columns: columns::lease,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(str_at(&obj["spec"]["holderIdentity"])),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

/// Row conditions upstream attaches to pods: those that finished are `Completed`.
fn pod_conditions(obj: &Value) -> Option<Value> {
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

fn table_row(
    printer: &dyn RowPrinter,
    obj: &Value,
    include: IncludeObject,
    now: DateTime<Utc>,
) -> Value {
    let mut r = Map::new();
    r.insert("cells".into(), Value::Array(printer.row(obj, now)));
    if let Some(conditions) = printer.conditions(obj) {
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
    printer: &dyn RowPrinter,
    objects: &[&Value],
    include: IncludeObject,
    now: DateTime<Utc>,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| table_row(printer, o, include, now))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": list_meta,
        "columnDefinitions": printer.column_definitions(),
        "rows": rows,
    })
}

/// A one-row Table for a single object: the body of a watch event (and of a GET of one
/// object, with `with_columns`). As upstream, a watch stream carries the column
/// definitions on its first event only; later events have `"columnDefinitions": null`.
/// The Table's metadata holds the object's resourceVersion.
pub fn watch_table(
    printer: &dyn RowPrinter,
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
        Value::Array(printer.column_definitions())
    } else {
        Value::Null
    };
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": [table_row(printer, obj, include, now)],
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
            cells(&DEPLOYMENT, &d),
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
        let r = DEPLOYMENT.row(&d, now());
        assert_eq!(r[2], json!(3), "UP-TO-DATE is a number cell");
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"replicas": 2}});
        assert_eq!(cells(&DEPLOYMENT, &fresh)[1..4], ["0/2", "0", "0"]);
        assert_eq!(cells(&DEPLOYMENT, &fresh)[7], "");
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
            REPLICA_SET.row(&rs, now()),
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
            cells(&REPLICATION_CONTROLLER, &rc),
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
        assert_eq!(cells(&REPLICA_SET, &bare)[7], "<none>");
    }

    #[test]
    fn small_kinds() {
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(86400 * 3)},
                        "status": {"phase": "Active"}});
        assert_eq!(cells(&NAMESPACE, &ns), ["kube-system", "Active", "3d"]);
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": ago(5)},
                        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            CONFIG_MAP.row(&cm, now()),
            vec![json!("c"), json!(3), json!("5s")]
        );
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}});
        assert_eq!(cells(&SECRET, &secret), ["s", "Opaque", "1", "<unknown>"]);
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(cells(&SERVICE_ACCOUNT, &sa), ["default", "0", "<unknown>"]);
        let lease = json!({"metadata": {"name": "n1", "creationTimestamp": ago(7200)},
                           "spec": {"holderIdentity": "n1"}});
        assert_eq!(cells(&LEASE, &lease), ["n1", "n1", "120m"]);
        let binding = json!({"metadata": {"name": "b", "creationTimestamp": ago(60)},
            "roleRef": {"kind": "ClusterRole", "name": "view"},
            "subjects": [{"kind": "User", "name": "alice"}, {"kind": "User", "name": "bob"},
                         {"kind": "ServiceAccount", "namespace": "ns", "name": "sa"}]});
        assert_eq!(
            cells(&ROLE_BINDING, &binding),
            ["b", "ClusterRole/view", "60s", "alice, bob", "", "ns/sa"]
        );
        let other = json!({"metadata": {"name": "thing", "creationTimestamp": ago(3)}});
        assert_eq!(cells(&DEFAULT, &other), ["thing", "3s"]);
    }

    #[test]
    fn every_kind_has_as_many_cells_as_columns() {
        let obj = json!({"metadata": {"name": "x"}});
        for (kind, printer) in [
            ("Pod", &POD),
            ("ReplicationController", &REPLICATION_CONTROLLER),
            ("ReplicaSet", &REPLICA_SET),
            ("Deployment", &DEPLOYMENT),
            ("DaemonSet", &DAEMON_SET),
            ("Service", &SERVICE),
            ("Endpoints", &ENDPOINTS),
            ("EndpointSlice", &ENDPOINT_SLICE),
            ("Node", &NODE),
            ("Namespace", &NAMESPACE),
            ("Event", &EVENT),
            ("ConfigMap", &CONFIG_MAP),
            ("Secret", &SECRET),
            ("ServiceAccount", &SERVICE_ACCOUNT),
            ("Lease", &LEASE),
            ("ValidatingWebhookConfiguration", &WEBHOOK_CONFIGURATION),
            ("Role", &ROLE),
            ("RoleBinding", &ROLE_BINDING),
            ("Other", &DEFAULT),
        ] {
            assert_eq!(
                printer.row(&obj, now()).len(),
                printer.column_definitions().len(),
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
            &CONFIG_MAP,
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

        let full = table(&CONFIG_MAP, &[&a], IncludeObject::Object, now(), json!({}));
        assert_eq!(full["rows"][0]["object"], a);
        let none = table(&CONFIG_MAP, &[&a], IncludeObject::None, now(), json!({}));
        assert!(none["rows"][0].get("object").is_none());
        let empty = table(&POD, &[], IncludeObject::Metadata, now(), json!({}));
        assert_eq!(empty["rows"], json!([]));
    }

    #[test]
    fn watch_tables_carry_columns_only_when_asked() {
        let cm = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let first = watch_table(&CONFIG_MAP, &cm, IncludeObject::Metadata, now(), true);
        assert_eq!(first["columnDefinitions"].as_array().unwrap().len(), 3);
        assert_eq!(first["metadata"], json!({"resourceVersion": "7"}));
        assert_eq!(first["rows"].as_array().unwrap().len(), 1);
        let later = watch_table(&CONFIG_MAP, &cm, IncludeObject::Metadata, now(), false);
        assert_eq!(later["columnDefinitions"], Value::Null);
        assert_eq!(later["rows"][0]["cells"][0], "a");
        assert_eq!(later["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn v1beta1_tables_rewrite_api_versions() {
        let cm = json!({"metadata": {"name": "a"}});
        let mut t = table(
            &CONFIG_MAP,
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
