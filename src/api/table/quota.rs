//! The ResourceQuota printer (upstream `printResourceQuota`: NAME, AGE, REQUEST, LIMIT,
//! each resource as `name: used/hard`, `limits.*` in LIMIT) and the LimitRange printer
//! (NAME, CREATED AT).

use serde_json::{json, Value};

use super::cells::age;
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};
use crate::api::quota::from_json;

fn quota_columns() -> Vec<Value> {
    vec![
        name_col(),
        age_col(),
        col(
            "Request",
            "string",
            "Request represents a minimum amount of cpu/memory that a container may consume.",
            0,
        ),
        col(
            "Limit",
            "string",
            "Limits control the maximum amount of cpu/memory that a container may use independent of contention on the node.",
            0,
        ),
    ]
}

/// NAME and CREATED AT, as Roles print.
fn limit_range_columns() -> Vec<Value> {
    super::columns::role()
}

/// `name: used/hard` for every resource of `spec.hard`, requests and limits apart.
fn usage_cells(obj: &Value) -> (String, String) {
    let used = from_json(&obj["status"]["used"]);
    let hard = from_json(&obj["status"]["hard"]);
    let (mut request, mut limit) = (Vec::new(), Vec::new());
    let names = obj["spec"]["hard"].as_object().into_iter().flatten();
    let mut names: Vec<&String> = names.map(|(k, _)| k).collect();
    names.sort();
    for r in names {
        let show = |list: &crate::api::quota::ResourceList| {
            list.get(r).map_or("0".to_string(), ToString::to_string)
        };
        let cell = format!("{r}: {}/{}", show(&used), show(&hard));
        if r.split('.').next() == Some("limits") && r.contains('.') {
            limit.push(cell);
        } else {
            request.push(cell);
        }
    }
    (request.join(", "), limit.join(", "))
}

pub static RESOURCE_QUOTA: Printer = Printer {
    columns: quota_columns,
    cells: |obj, now| {
        let (request, limit) = usage_cells(obj);
        vec![
            name(obj),
            json!(age(obj, now)),
            json!(request),
            json!(limit),
        ]
    },
    conditions: no_conditions,
};

pub static LIMIT_RANGE: Printer = Printer {
    columns: limit_range_columns,
    cells: |obj, _now| vec![name(obj), obj["metadata"]["creationTimestamp"].clone()],
    conditions: no_conditions,
};

#[cfg(test)]
mod tests {
    use super::super::test_support::{ago, cells};
    use super::*;

    #[test]
    fn quotas_print_used_over_hard_with_limits_apart() {
        let q = json!({"metadata": {"name": "compute", "creationTimestamp": ago(30)},
            "spec": {"hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi"}},
            "status": {"hard": {"pods": "10", "requests.cpu": "1", "limits.memory": "2Gi"},
                "used": {"pods": "2", "requests.cpu": "500m", "limits.memory": "0"}}});
        assert_eq!(
            cells(&RESOURCE_QUOTA, &q),
            [
                "compute",
                "30s",
                "pods: 2/10, requests.cpu: 500m/1",
                "limits.memory: 0/2Gi"
            ]
        );
        let fresh = json!({"metadata": {"name": "q", "creationTimestamp": ago(1)},
            "spec": {"hard": {"pods": "1"}}});
        assert_eq!(cells(&RESOURCE_QUOTA, &fresh), ["q", "1s", "pods: 0/0", ""]);
    }
}
