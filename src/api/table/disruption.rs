//! The PodDisruptionBudget printer (upstream `printPodDisruptionBudget`): NAME, MIN
//! AVAILABLE, MAX UNAVAILABLE (`N/A` when unset), ALLOWED DISRUPTIONS, AGE.

use serde_json::{json, Value};

use super::cells::{age, int};
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};

fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Min Available",
            "string",
            "The minimum number of pods that must be available",
            0,
        ),
        col(
            "Max Unavailable",
            "string",
            "The maximum number of pods that may be unavailable",
            0,
        ),
        col(
            "Allowed Disruptions",
            "integer",
            "Calculated number of pods that may be disrupted at this time",
            0,
        ),
        age_col(),
    ]
}

/// An intOrString as Go's `IntOrString.String()` prints it; `N/A` when unset.
fn int_or_string(v: &Value) -> String {
    match v {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => "N/A".to_string(),
    }
}

pub static POD_DISRUPTION_BUDGET: Printer = Printer {
    columns,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(int_or_string(&obj["spec"]["minAvailable"])),
            json!(int_or_string(&obj["spec"]["maxUnavailable"])),
            json!(int(&obj["status"]["disruptionsAllowed"])),
            json!(age(obj, now)),
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
    fn budgets_print_their_bounds_and_allowed_disruptions() {
        let names: Vec<Value> = POD_DISRUPTION_BUDGET
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(
            names,
            [
                "Name",
                "Min Available",
                "Max Unavailable",
                "Allowed Disruptions",
                "Age"
            ]
        );
        let pdb = json!({"metadata": {"name": "web", "creationTimestamp": ago(90)},
            "spec": {"minAvailable": 2}, "status": {"disruptionsAllowed": 1}});
        assert_eq!(
            cells(&POD_DISRUPTION_BUDGET, &pdb),
            ["web", "2", "N/A", "1", "90s"]
        );
        let pdb = json!({"metadata": {"name": "db", "creationTimestamp": ago(5)},
            "spec": {"maxUnavailable": "25%"}});
        assert_eq!(
            cells(&POD_DISRUPTION_BUDGET, &pdb),
            ["db", "N/A", "25%", "0", "5s"]
        );
    }
}
