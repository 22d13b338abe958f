//! RuntimeClass and PodTemplate rows, as upstream's `printRuntimeClass` and
//! `printPodTemplate` (v1.32).

use serde_json::{json, Value};

use super::cells::{age, container_cells, labels_string};
use super::columns::{age_col, col, name_col, DESC_CONTAINERS, DESC_IMAGES};
use super::{name, no_conditions, Printer};

fn runtime_class_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Handler", "string", "handler specifies the underlying runtime and configuration that the CRI implementation will use to handle pods of this class. The possible values are specific to the node & CRI configuration.  It is assumed that all handlers are available on every node, and handlers of the same name are equivalent on every node. For example, a handler called \"runc\" might specify that the runc OCI runtime (using native Linux containers) will be used to run the containers in a pod. The Handler must be lowercase, conform to the DNS Label (RFC 1123) requirements, and is immutable.", 0),
        age_col(),
    ]
}

pub static RUNTIME_CLASS: Printer = Printer {
    columns: runtime_class_columns,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(obj["handler"].as_str().unwrap_or("")),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

fn pod_template_columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Containers", "string", DESC_CONTAINERS, 0),
        col("Images", "string", DESC_IMAGES, 0),
        col(
            "Pod Labels",
            "string",
            "The labels for the pod template.",
            0,
        ),
    ]
}

pub static POD_TEMPLATE: Printer = Printer {
    columns: pod_template_columns,
    cells: |obj, _now| {
        let template = &obj["template"];
        let (containers, images) = container_cells(template);
        vec![
            name(obj),
            json!(containers),
            json!(images),
            json!(labels_string(&template["metadata"]["labels"])),
        ]
    },
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::super::test_support::{ago, cells};
    use super::super::RowPrinter;
    use super::*;

    #[test]
    fn runtime_classes_print_their_handler() {
        let names: Vec<Value> = RUNTIME_CLASS
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, ["Name", "Handler", "Age"]);
        let rc = json!({"metadata": {"name": "nvidia", "creationTimestamp": ago(120)}, "handler": "nvidia"});
        assert_eq!(cells(&RUNTIME_CLASS, &rc), ["nvidia", "nvidia", "2m"]);
    }

    #[test]
    fn pod_templates_print_containers_images_and_labels() {
        let names: Vec<Value> = POD_TEMPLATE
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, ["Name", "Containers", "Images", "Pod Labels"]);
        let pt = json!({"metadata": {"name": "t"}, "template": {
            "metadata": {"labels": {"b": "2", "a": "1"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}, {"name": "side", "image": "busybox"}]}}});
        assert_eq!(
            cells(&POD_TEMPLATE, &pt),
            ["t", "app,side", "nginx,busybox", "a=1,b=2"]
        );
    }
}
