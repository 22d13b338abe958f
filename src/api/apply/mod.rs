//! Server-side apply without I/O: merging applied configurations, tracking field
//! ownership in `metadata.managedFields`, conflicts, and removal of dropped fields,
//! following sigs.k8s.io/structured-merge-diff v4 and k8s.io/apimachinery's
//! `managedfields/internal`.

mod fieldset;
mod json;
mod shape;
mod typed;

pub use fieldset::{FieldSet, FieldsV1Error, Path, PathElement};
pub use shape::{ListType, Position, Shape};
pub use typed::{ValidationError, ValidationErrors};
