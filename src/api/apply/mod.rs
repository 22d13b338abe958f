//! Server-side apply without I/O: merging applied configurations, tracking field
//! ownership in `metadata.managedFields`, conflicts, and removal of dropped fields,
//! following sigs.k8s.io/structured-merge-diff v4 and k8s.io/apimachinery's
//! `managedfields/internal`.

mod conflict;
mod fieldset;
mod json;
mod managers;
mod shape;
mod typed;

pub use conflict::{Conflict, Conflicts};
pub use fieldset::{FieldSet, FieldsV1Error, Path, PathElement};
pub use managers::{
    ManagedFields, ManagedFieldsEntry, ManagedFieldsError, Operation, ANCIENT_CHANGES,
    BEFORE_FIRST_APPLY, MAX_UPDATE_MANAGERS,
};
pub use shape::{ListType, Position, Shape};
pub use typed::{ValidationError, ValidationErrors};
