//! The PriorityClass printer (upstream `printPriorityClass`): NAME, VALUE,
//! GLOBAL-DEFAULT, AGE, PREEMPTIONPOLICY.

use serde_json::{json, Value};

use super::cells::age;
use super::columns::{age_col, col, name_col};
use super::{name, no_conditions, Printer};

fn columns() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Value",
            "integer",
            "value represents the integer value of this priority class. This is the actual priority that pods receive when they have the name of this class in their pod spec.",
            0,
        ),
        col(
            "Global-Default",
            "boolean",
            "globalDefault specifies whether this PriorityClass should be considered as the default priority for pods that do not have any priority class. Only one PriorityClass can be marked as `globalDefault`. However, if more than one PriorityClasses exists with their `globalDefault` field set to true, the smallest value of such global default PriorityClasses will be used as the default priority.",
            0,
        ),
        age_col(),
        col(
            "PreemptionPolicy",
            "string",
            "preemptionPolicy is the Policy for preempting pods with lower priority. One of Never, PreemptLowerPriority. Defaults to PreemptLowerPriority if unset.",
            0,
        ),
    ]
}

pub static PRIORITY_CLASS: Printer = Printer {
    columns,
    cells: |obj, now| {
        vec![
            name(obj),
            json!(obj["value"].as_i64().unwrap_or(0)),
            json!(obj["globalDefault"].as_bool().unwrap_or(false)),
            json!(age(obj, now)),
            json!(obj["preemptionPolicy"].as_str().unwrap_or("<none>")),
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
    fn priority_classes_print_value_default_and_policy() {
        let names: Vec<Value> = PRIORITY_CLASS
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(
            names,
            ["Name", "Value", "Global-Default", "Age", "PreemptionPolicy"]
        );
        let pc = json!({"metadata": {"name": "high", "creationTimestamp": ago(90)},
            "value": 1000, "globalDefault": true, "preemptionPolicy": "Never"});
        assert_eq!(
            cells(&PRIORITY_CLASS, &pc),
            ["high", "1000", "true", "90s", "Never"]
        );
    }
}
