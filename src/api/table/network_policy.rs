//! The NetworkPolicy printer (upstream `printNetworkPolicy`): NAME, POD-SELECTOR
//! (`metav1.FormatLabelSelector`, `<none>` for the empty selector), AGE.

use serde_json::{json, Value};

use super::cells::{age, format_label_selector};
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};

fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Pod-Selector",
            "string",
            "Selects the pods to which this NetworkPolicy object applies.",
            0,
        ),
        age_col(),
    ]
}

pub static NETWORK_POLICY: Printer = Printer {
    columns,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(format_label_selector(&obj["spec"]["podSelector"])),
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
    fn policies_print_their_pod_selector() {
        let names: Vec<Value> = NETWORK_POLICY
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, ["Name", "Pod-Selector", "Age"]);
        let all = json!({"metadata": {"name": "deny", "creationTimestamp": ago(30)},
            "spec": {"podSelector": {}}});
        assert_eq!(cells(&NETWORK_POLICY, &all), ["deny", "<none>", "30s"]);
        let some = json!({"metadata": {"name": "db", "creationTimestamp": ago(5)},
            "spec": {"podSelector": {"matchLabels": {"app": "db"},
                "matchExpressions": [{"key": "tier", "operator": "In", "values": ["a", "b"]}]}}});
        assert_eq!(
            cells(&NETWORK_POLICY, &some),
            ["db", "app=db,tier in (a,b)", "5s"]
        );
    }
}
