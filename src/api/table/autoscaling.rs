//! The HorizontalPodAutoscaler printer (upstream `printHorizontalPodAutoscaler`): NAME,
//! REFERENCE (`Kind/name`), TARGETS (`cpu: 45%/50%`, at most two then `+ N more...`),
//! MINPODS (`<unset>`), MAXPODS, REPLICAS, AGE.

use serde_json::{json, Value};

use super::cells::age;
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};

fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col("Reference", "string", "scaleTargetRef points to the target resource to scale, and is used to the pods for which metrics should be collected, as well as to actually change the replica count.", 0),
        col("Targets", "string", "metrics contains the specifications for which to use to calculate the desired replica count (the maximum replica count across all metrics will be used).", 0),
        col("MinPods", "string", "minReplicas is the lower limit for the number of replicas to which the autoscaler can scale down.", 0),
        col("MaxPods", "string", "maxReplicas is the upper limit for the number of replicas to which the autoscaler can scale up.", 0),
        col("Replicas", "string", "currentReplicas is current number of replicas of pods managed by this autoscaler, as last seen by the autoscaler.", 0),
        age_col(),
    ]
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "<unknown>".to_string(),
        other => other.to_string(),
    }
}

fn percent(v: &Value) -> Option<String> {
    v.as_i64().map(|p| format!("{p}%"))
}

/// One metric as `current/target` (upstream `formatHPAMetrics`).
fn metric(spec: &Value, status: Option<&Value>) -> String {
    let unknown = || "<unknown>".to_string();
    match spec["type"].as_str().unwrap_or("") {
        kind @ ("Resource" | "ContainerResource") => {
            let key = if kind == "Resource" {
                "resource"
            } else {
                "containerResource"
            };
            let src = &spec[key];
            let current = status.map(|s| &s[key]["current"]);
            let name = src["name"].as_str().unwrap_or("");
            let target = &src["target"];
            if !target["averageValue"].is_null() {
                let cur = current.map_or_else(unknown, |c| text(&c["averageValue"]));
                format!("{name}: {cur}/{}", text(&target["averageValue"]))
            } else {
                let cur = current
                    .and_then(|c| percent(&c["averageUtilization"]))
                    .unwrap_or_else(unknown);
                let tgt = percent(&target["averageUtilization"]).unwrap_or_else(|| "<auto>".into());
                format!("{name}: {cur}/{tgt}")
            }
        }
        "Pods" => {
            let cur = status.map_or_else(unknown, |s| text(&s["pods"]["current"]["averageValue"]));
            format!("{cur}/{}", text(&spec["pods"]["target"]["averageValue"]))
        }
        kind @ ("Object" | "External") => {
            let key = if kind == "Object" {
                "object"
            } else {
                "external"
            };
            let target = &spec[key]["target"];
            let current = status.map(|s| &s[key]["current"]);
            if !target["averageValue"].is_null() {
                let cur = current.map_or_else(unknown, |c| text(&c["averageValue"]));
                format!("{cur}/{} (avg)", text(&target["averageValue"]))
            } else {
                let cur = current.map_or_else(unknown, |c| text(&c["value"]));
                format!("{cur}/{}", text(&target["value"]))
            }
        }
        _ => "<unknown type>".to_string(),
    }
}

/// The TARGETS cell.
fn targets(obj: &Value) -> String {
    const SHOWN: usize = 2;
    let specs = obj["spec"]["metrics"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    if specs.is_empty() {
        return "<none>".to_string();
    }
    let statuses = obj["status"]["currentMetrics"].as_array();
    let list: Vec<String> = specs
        .iter()
        .take(SHOWN)
        .enumerate()
        .map(|(i, s)| metric(s, statuses.and_then(|st| st.get(i))))
        .collect();
    let joined = list.join(", ");
    if specs.len() > SHOWN {
        format!("{joined} + {} more...", specs.len() - SHOWN)
    } else {
        joined
    }
}

fn cells(obj: &Value, now: chrono::DateTime<chrono::Utc>) -> Vec<Value> {
    let target = &obj["spec"]["scaleTargetRef"];
    vec![
        name(obj),
        json!(format!(
            "{}/{}",
            target["kind"].as_str().unwrap_or(""),
            target["name"].as_str().unwrap_or("")
        )),
        json!(targets(obj)),
        json!(obj["spec"]["minReplicas"]
            .as_i64()
            .map_or_else(|| "<unset>".to_string(), |m| m.to_string())),
        json!(obj["spec"]["maxReplicas"].as_i64().unwrap_or(0)),
        json!(obj["status"]["currentReplicas"].as_i64().unwrap_or(0)),
        json!(age(obj, now)),
    ]
}

pub static HORIZONTAL_POD_AUTOSCALER: Printer = Printer {
    columns,
    cells,
    conditions: no_conditions,
};

/// The same rows for `autoscaling/v1` objects (printed from their v2 form, as upstream
/// prints the internal one).
pub static HORIZONTAL_POD_AUTOSCALER_V1: Printer = Printer {
    columns,
    cells: |obj, now| cells(&crate::api::autoscaling::from_v1(obj), now),
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::super::test_support::{ago, cells};
    use super::super::RowPrinter;
    use super::*;

    #[test]
    fn autoscalers_print_as_kubectl_shows_them() {
        let names: Vec<Value> = HORIZONTAL_POD_AUTOSCALER
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(
            names,
            vec![
                "Name",
                "Reference",
                "Targets",
                "MinPods",
                "MaxPods",
                "Replicas",
                "Age"
            ]
        );
        let mut hpa = json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(120)},
            "spec": {"scaleTargetRef": {"kind": "Deployment", "name": "web"}, "minReplicas": 1, "maxReplicas": 5,
                "metrics": [{"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}}]},
        });
        assert_eq!(
            cells(&HORIZONTAL_POD_AUTOSCALER, &hpa),
            vec![
                "web",
                "Deployment/web",
                "cpu: <unknown>/50%",
                "1",
                "5",
                "0",
                "2m"
            ]
        );
        hpa["status"] = json!({"currentReplicas": 3, "currentMetrics": [{"type": "Resource",
            "resource": {"name": "cpu", "current": {"averageUtilization": 45, "averageValue": "45m"}}}]});
        hpa["spec"]["metrics"].as_array_mut().unwrap().extend([
            json!({"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}}),
            json!({"type": "Pods", "pods": {"metric": {"name": "qps"}, "target": {"type": "AverageValue", "averageValue": "10"}}}),
        ]);
        hpa["spec"].as_object_mut().unwrap().remove("minReplicas");
        assert_eq!(
            cells(&HORIZONTAL_POD_AUTOSCALER, &hpa)[2..6],
            [
                "cpu: 45%/50%, memory: <unknown>/100Mi + 1 more...",
                "<unset>",
                "5",
                "3"
            ]
        );
        let v1 = crate::api::autoscaling::to_v1(&hpa);
        assert_eq!(
            cells(&HORIZONTAL_POD_AUTOSCALER_V1, &v1),
            cells(&HORIZONTAL_POD_AUTOSCALER, &hpa)
        );
    }
}
