//! Apply conflicts and their messages, as upstream's `managedfields/internal/conflict.go`
//! renders them in a `Status` (message and `FieldManagerConflict` causes).

use std::fmt;

use serde_json::{json, Value};

use super::fieldset::Path;
use super::json::go_quote;
use super::managers::{ManagedFieldsEntry, Operation};

/// A field the configuration changes that another manager owns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    pub subresource: String,
    pub path: Path,
}

impl Conflict {
    pub(crate) fn new(owner: &ManagedFieldsEntry, path: Path) -> Conflict {
        Conflict {
            manager: owner.manager.clone(),
            operation: owner.operation,
            api_version: owner.api_version.clone(),
            subresource: owner.subresource.clone(),
            path,
        }
    }

    fn identifier(&self) -> String {
        ManagedFieldsEntry {
            manager: self.manager.clone(),
            operation: self.operation,
            api_version: self.api_version.clone(),
            time: None,
            subresource: self.subresource.clone(),
            fields: Default::default(),
        }
        .identifier()
    }

    /// The manager as upstream prints it: `"kubectl"`, `"x" with subresource "status"`,
    /// `"kube-controller-manager" using apps/v1` (updaters name their version).
    pub fn manager_text(&self) -> String {
        let mut text = go_quote(&self.manager);
        if !self.subresource.is_empty() {
            text = format!("{text} with subresource {}", go_quote(&self.subresource));
        }
        if self.operation == Operation::Update {
            text = format!("{text} using {}", self.api_version);
        }
        text
    }

    /// The `StatusCause` of this conflict.
    pub fn cause(&self) -> Value {
        json!({
            "reason": "FieldManagerConflict",
            "message": format!("conflict with {}", self.manager_text()),
            "field": self.path.to_string(),
        })
    }
}

/// Every conflict of one apply, ordered by manager, then by path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflicts(pub Vec<Conflict>);

impl Conflicts {
    pub(crate) fn sorted(mut conflicts: Vec<Conflict>) -> Conflicts {
        conflicts.sort_by_key(Conflict::identifier);
        Conflicts(conflicts)
    }

    /// The `details.causes` of the 409 `Status`.
    pub fn causes(&self) -> Vec<Value> {
        self.0.iter().map(Conflict::cause).collect()
    }
}

impl fmt::Display for Conflicts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let [only] = self.0.as_slice() {
            return write!(
                f,
                "Apply failed with 1 conflict: conflict with {}: {}",
                only.manager_text(),
                only.path
            );
        }
        let mut groups: Vec<(String, &Conflict, Vec<&Path>)> = Vec::new();
        for conflict in &self.0 {
            let id = conflict.identifier();
            match groups.iter_mut().find(|(g, _, _)| *g == id) {
                Some((_, _, paths)) => paths.push(&conflict.path),
                None => groups.push((id, conflict, vec![&conflict.path])),
            }
        }
        groups.sort_by(|a, b| a.0.cmp(&b.0));
        let mut lines = Vec::new();
        for (_, conflict, paths) in groups {
            lines.push(format!("conflicts with {}:", conflict.manager_text()));
            lines.extend(paths.iter().map(|p| format!("- {p}")));
        }
        write!(
            f,
            "Apply failed with {} conflicts: {}",
            self.0.len(),
            lines.join("\n")
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conflict(manager: &str, operation: Operation, version: &str, path: &[&str]) -> Conflict {
        Conflict {
            manager: manager.into(),
            operation,
            api_version: version.into(),
            subresource: String::new(),
            path: Path::fields(path),
        }
    }

    #[test]
    fn one_conflict_names_manager_version_and_path() {
        let c = Conflicts(vec![conflict(
            "kubectl-client-side-apply",
            Operation::Update,
            "apps/v1",
            &["spec", "replicas"],
        )]);
        assert_eq!(
            c.to_string(),
            r#"Apply failed with 1 conflict: conflict with "kubectl-client-side-apply" using apps/v1: .spec.replicas"#
        );
        assert_eq!(
            c.causes(),
            [json!({
                "reason": "FieldManagerConflict",
                "message": "conflict with \"kubectl-client-side-apply\" using apps/v1",
                "field": ".spec.replicas",
            })]
        );
    }

    #[test]
    fn several_conflicts_group_by_sorted_manager() {
        let c = Conflicts::sorted(vec![
            conflict("y", Operation::Apply, "v1", &["c"]),
            conflict("x", Operation::Update, "v1", &["a"]),
            conflict("x", Operation::Update, "v1", &["b"]),
        ]);
        assert_eq!(
            c.to_string(),
            "Apply failed with 3 conflicts: conflicts with \"x\" using v1:\n- .a\n- .b\nconflicts with \"y\":\n- .c"
        );
    }

    #[test]
    fn subresource_managers_say_so() {
        let mut c = conflict("kubelet", Operation::Update, "v1", &["status", "phase"]);
        c.subresource = "status".into();
        assert_eq!(
            c.manager_text(),
            r#""kubelet" with subresource "status" using v1"#
        );
    }
}
