//! orc: a small, all-in-one Kubernetes-compatible orchestrator (library half of the `orc` binary).

pub mod agent;
pub mod api;
pub mod apiserver;
pub mod cli;
pub mod controllers;
pub mod embedded;
pub mod metrics;
pub mod store;
pub mod tls;
