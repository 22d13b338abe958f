//! DaemonSet rows (upstream `printDaemonSet`): the node counts of its status, the
//! template's node selector, and (wide) containers, images and selector.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::cells::{age, container_cells, format_label_selector, int, labels_string};
use super::columns::{age_col, col, name_col, DESC_CONTAINERS, DESC_IMAGES};

/// The columns of DaemonSets.
pub(super) fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Desired", "integer", "The total number of nodes that should be running the daemon pod (including nodes correctly running the daemon pod). More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/", 0),
        col("Current", "integer", "The number of nodes that are running at least 1 daemon pod and are supposed to run the daemon pod. More info: https://kubernetes.io/docs/concepts/workloads/controllers/daemonset/", 0),
        col("Ready", "integer", "numberReady is the number of nodes that should be running the daemon pod and have one or more of the daemon pod running with a Ready Condition.", 0),
        col("Up-to-date", "integer", "The total number of nodes that are running updated daemon pod", 0),
        col("Available", "integer", "The number of nodes that should be running the daemon pod and have one or more of the daemon pod running and available (ready for at least spec.minReadySeconds)", 0),
        col("Node Selector", "string", "NodeSelector is a selector which must be true for the pod to fit on a node. Selector which must match a node's labels for the pod to be scheduled on that node. More info: https://kubernetes.io/docs/concepts/configuration/assign-pod-node/", 0),
        age_col(),
        col("Containers", "string", DESC_CONTAINERS, 1),
        col("Images", "string", DESC_IMAGES, 1),
        col("Selector", "string", "A label query over pods that are managed by the daemon set. Must match in order to be controlled. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
    ]
}

pub(super) fn cells(obj: &Value, name: Value, now: DateTime<Utc>) -> Vec<Value> {
    let status = &obj["status"];
    let template = &obj["spec"]["template"];
    let (names, images) = container_cells(template);
    vec![
        name,
        json!(int(&status["desiredNumberScheduled"])),
        json!(int(&status["currentNumberScheduled"])),
        json!(int(&status["numberReady"])),
        json!(int(&status["updatedNumberScheduled"])),
        json!(int(&status["numberAvailable"])),
        json!(labels_string(&template["spec"]["nodeSelector"])),
        json!(age(obj, now)),
        json!(names),
        json!(images),
        json!(format_label_selector(&obj["spec"]["selector"])),
    ]
}

#[cfg(test)]
mod tests {
    use crate::api::table::test_support::{ago, cells};
    use crate::api::table::{RowPrinter, DAEMON_SET};
    use serde_json::json;

    #[test]
    fn daemon_set_counts_node_selector_and_wide_cells() {
        let ds = json!({
            "metadata": {"name": "agent", "creationTimestamp": ago(90)},
            "spec": {
                "selector": {"matchLabels": {"app": "agent"}},
                "template": {"spec": {"nodeSelector": {"role": "edge", "disk": "ssd"},
                                      "containers": [{"name": "a", "image": "busybox:1"}]}},
            },
            "status": {"desiredNumberScheduled": 3, "currentNumberScheduled": 2, "numberReady": 1,
                       "updatedNumberScheduled": 2, "numberAvailable": 1},
        });
        assert_eq!(
            cells(&DAEMON_SET, &ds),
            [
                "agent",
                "3",
                "2",
                "1",
                "2",
                "1",
                "disk=ssd,role=edge",
                "90s",
                "a",
                "busybox:1",
                "app=agent"
            ]
        );
        let fresh = json!({"metadata": {"name": "new"}, "spec": {}});
        assert_eq!(
            cells(&DAEMON_SET, &fresh)[1..7],
            ["0", "0", "0", "0", "0", "<none>"]
        );
        let names: Vec<String> = DAEMON_SET
            .column_definitions()
            .iter()
            .map(|c| c["name"].as_str().unwrap_or("").to_uppercase())
            .collect();
        assert_eq!(
            names[..8],
            [
                "NAME",
                "DESIRED",
                "CURRENT",
                "READY",
                "UP-TO-DATE",
                "AVAILABLE",
                "NODE SELECTOR",
                "AGE"
            ]
        );
    }
}
