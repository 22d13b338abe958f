//! One registry strategy per kind with rules of its own; `default` for every other kind.

pub mod default;
pub mod lease;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod service;
pub mod workload;
