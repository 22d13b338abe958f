//! Kubernetes API glue without I/O: resource definitions, defaulting, validation, selectors, patch, tables.

pub mod defaults;
pub mod object;
pub mod patch;
pub mod protobuf;
pub mod resources;
pub mod selector;
pub mod status;
pub mod table;
pub mod validation;
