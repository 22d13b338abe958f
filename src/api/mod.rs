//! Kubernetes API glue without I/O: resource definitions, defaulting, validation, selectors, patch, tables.

pub mod defaults;
pub mod patch;
pub mod selector;
pub mod table;
pub mod validation;
