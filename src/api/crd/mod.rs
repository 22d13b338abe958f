//! CustomResourceDefinition semantics (upstream `k8s.io/apiextensions-apiserver`): validating
//! and defaulting CRDs, and validating, defaulting and pruning custom objects against a
//! version's structural `openAPIV3Schema`, `x-kubernetes-validations` (CEL) rules included.
//!
//! Everything here is pure. The caller parses a version's schema once with
//! [`Structural::from_json`] (after [`validate_crd`] accepted the CRD), keeps it behind an
//! `Arc`, and per request runs, in upstream's order: [`prune`] (unknown fields become
//! `fieldValidation` warnings or errors), [`apply_defaults`], then [`validate`].
//!
//! Caveats:
//! - CEL rules are parsed, not type-checked: a rule naming an unknown field compiles and
//!   fails at evaluation (`no such key`), where upstream refuses the CRD.
//! - CEL cost is an upper-bound estimate from the rule's syntax and the size of the value
//!   it sees (see `cel.rs`), not cel-go's exact accounting.

pub mod cel;
pub mod conversion;
mod defaulting;
mod definition;
pub(crate) mod formats;
mod pruning;
pub(crate) mod re2;
mod rules;
mod schema;
mod schema_checks;
mod structural;
mod validate;

#[cfg(test)]
mod realworld_tests;

pub use defaulting::apply_defaults;
pub use definition::{default_crd, schema_for_version, validate_crd};
pub use pruning::prune;
pub use schema::{AdditionalProperties, Pattern, Rule, Structural};
pub use validate::validate;

/// Errors parsing a schema into a [`Structural`].
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CrdError {
    #[error("{path}: must be a JSON object (a schema)")]
    SchemaNotObject { path: String },
    #[error("{path}: keyword {keyword} must be a {expected}")]
    KeywordType {
        path: String,
        keyword: String,
        expected: &'static str,
    },
}

pub type Result<T, E = CrdError> = std::result::Result<T, E>;

/// A position in an object, rendered both ways upstream prints it: `field` as
/// `field.Path` (`spec.ports[0].labels[app]`), `openapi` as kube-openapi names it in its
/// messages (`spec.ports[0].labels.app`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FieldPath {
    pub field: String,
    pub openapi: String,
}

impl FieldPath {
    pub fn root() -> Self {
        Self::default()
    }

    pub fn new(field: &str) -> Self {
        FieldPath {
            field: field.to_string(),
            openapi: field.to_string(),
        }
    }

    pub fn child(&self, name: &str) -> Self {
        FieldPath {
            field: join(&self.field, name),
            openapi: join(&self.openapi, name),
        }
    }

    pub fn index(&self, i: usize) -> Self {
        FieldPath {
            field: format!("{}[{i}]", self.field),
            openapi: format!("{}[{i}]", self.openapi),
        }
    }

    /// A map key: `[key]` in field paths, `.key` in kube-openapi's names.
    pub fn key(&self, k: &str) -> Self {
        FieldPath {
            field: format!("{}[{k}]", self.field),
            openapi: join(&self.openapi, k),
        }
    }
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}.{name}")
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    use crate::api::validation::FieldError;

    pub fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_paths_render_both_ways() {
        let p = FieldPath::root()
            .child("spec")
            .child("ports")
            .index(0)
            .child("labels")
            .key("app");
        assert_eq!(p.field, "spec.ports[0].labels[app]");
        assert_eq!(p.openapi, "spec.ports[0].labels.app");
    }
}
