//! StatefulSet and ControllerRevision rows, as upstream's `printStatefulSet` and
//! `printControllerRevision`.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::cells::{age, container_cells, int};
use super::columns::{age_col, col, name_col, DESC_CONTAINERS, DESC_IMAGES};
use super::{name, no_conditions, Printer};

/// NAME, READY (`readyReplicas/replicas`), AGE and (wide) CONTAINERS, IMAGES.
pub static STATEFUL_SET: Printer = Printer {
    columns: || {
        vec![
            name_col(),
            col("Ready", "string", "Number of the pod with ready state", 0),
            age_col(),
            col("Containers", "string", DESC_CONTAINERS, 1),
            col("Images", "string", DESC_IMAGES, 1),
        ]
    },
    cells: stateful_set_cells,
    conditions: no_conditions,
};

fn stateful_set_cells(obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let (names, images) = container_cells(&obj["spec"]["template"]);
    let ready = format!(
        "{}/{}",
        int(&obj["status"]["readyReplicas"]),
        int(&obj["spec"]["replicas"])
    );
    vec![
        name(obj),
        json!(ready),
        json!(age(obj, now)),
        json!(names),
        json!(images),
    ]
}

/// NAME, CONTROLLER (`kind.group/name` of the controller, lowercase kind), REVISION, AGE.
pub static CONTROLLER_REVISION: Printer = Printer {
    columns: || {
        vec![
            name_col(),
            col("Controller", "string", "Controller of the object", 0),
            col(
                "Revision",
                "string",
                "Revision of the ControllerRevision",
                0,
            ),
            age_col(),
        ]
    },
    cells: |obj, now| {
        vec![
            name(obj),
            json!(controller_name(obj)),
            json!(int(&obj["revision"])),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

/// Upstream `formatResourceName` of the controller reference: `statefulset.apps/web`.
fn controller_name(obj: &Value) -> String {
    let Some(owner) = obj["metadata"]["ownerReferences"]
        .as_array()
        .and_then(|refs| refs.iter().find(|r| r["controller"] == true))
    else {
        return "<none>".into();
    };
    let kind = owner["kind"].as_str().unwrap_or("").to_lowercase();
    let api_version = owner["apiVersion"].as_str().unwrap_or("");
    let name = owner["name"].as_str().unwrap_or("");
    match api_version.split_once('/') {
        Some((group, _)) => format!("{kind}.{group}/{name}"),
        None => format!("{kind}/{name}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::table::test_support::{ago, cells};
    use crate::api::table::RowPrinter;

    #[test]
    fn stateful_sets_print_ready_of_desired_and_wide_containers() {
        let set = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(90)},
            "spec": {"replicas": 3, "template": {"spec": {"containers": [
                {"name": "web", "image": "nginx:1"}, {"name": "log", "image": "busybox"}]}}},
            "status": {"replicas": 3, "readyReplicas": 2},
        });
        assert_eq!(
            cells(&STATEFUL_SET, &set),
            ["web", "2/3", "90s", "web,log", "nginx:1,busybox"]
        );
        let names: Vec<Value> = STATEFUL_SET
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, ["Name", "Ready", "Age", "Containers", "Images"]);
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"replicas": 2}});
        assert_eq!(cells(&STATEFUL_SET, &fresh)[1], "0/2");
    }

    #[test]
    fn controller_revisions_name_their_controller() {
        let revision = json!({
            "metadata": {"name": "web-7d4b9c", "creationTimestamp": ago(30),
                "ownerReferences": [{"apiVersion": "apps/v1", "kind": "StatefulSet",
                    "name": "web", "uid": "u", "controller": true}]},
            "revision": 2,
        });
        assert_eq!(
            cells(&CONTROLLER_REVISION, &revision),
            ["web-7d4b9c", "statefulset.apps/web", "2", "30s"]
        );
        let orphan = json!({"metadata": {"name": "x"}, "revision": 1});
        assert_eq!(cells(&CONTROLLER_REVISION, &orphan)[1], "<none>");
    }
}
