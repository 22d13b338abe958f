//! The APIService printer (kube-aggregator's table convertor): NAME, SERVICE (its
//! `namespace/name`, or `Local`), AVAILABLE (the Available condition's status, with its
//! reason when not True), AGE.

use serde_json::{json, Value};

use super::cells::age;
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};

fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Service",
            "string",
            "The reference to the service that hosts this API endpoint.",
            0,
        ),
        col(
            "Available",
            "string",
            "Whether this service is available.",
            0,
        ),
        age_col(),
    ]
}

fn service(obj: &Value) -> String {
    let svc = &obj["spec"]["service"];
    if svc.is_null() {
        return "Local".into();
    }
    format!(
        "{}/{}",
        svc["namespace"].as_str().unwrap_or(""),
        svc["name"].as_str().unwrap_or("")
    )
}

fn available(obj: &Value) -> String {
    let conditions = obj["status"]["conditions"].as_array();
    let Some(c) = conditions
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Available")
    else {
        return "Unknown".into();
    };
    let status = c["status"].as_str().unwrap_or("Unknown");
    if status == "True" {
        status.into()
    } else {
        format!("{status} ({})", c["reason"].as_str().unwrap_or(""))
    }
}

pub static API_SERVICE: Printer = Printer {
    columns,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(service(obj)),
            json!(available(obj)),
            json!(age(obj, now)),
        ]
    },
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::super::test_support::{ago, cells};
    use super::*;

    #[test]
    fn api_services_print_service_and_availability() {
        let local = json!({"metadata": {"name": "v1.apps", "creationTimestamp": ago(60)},
            "spec": {"group": "apps", "version": "v1"},
            "status": {"conditions": [{"type": "Available", "status": "True", "reason": "Local"}]}});
        assert_eq!(
            cells(&API_SERVICE, &local),
            ["v1.apps", "Local", "True", "60s"]
        );
        let remote = json!({"metadata": {"name": "v1beta1.external.metrics.k8s.io", "creationTimestamp": ago(60)},
            "spec": {"service": {"namespace": "keda", "name": "keda-operator-metrics-apiserver"}},
            "status": {"conditions": [{"type": "Available", "status": "False", "reason": "ServiceNotFound"}]}});
        assert_eq!(
            cells(&API_SERVICE, &remote),
            [
                "v1beta1.external.metrics.k8s.io",
                "keda/keda-operator-metrics-apiserver",
                "False (ServiceNotFound)",
                "60s"
            ]
        );
        let fresh = json!({"metadata": {"name": "v1.x", "creationTimestamp": ago(1)}, "spec": {}});
        assert_eq!(cells(&API_SERVICE, &fresh)[2], "Unknown");
    }
}
