//! TODO

pub mod runtime;
