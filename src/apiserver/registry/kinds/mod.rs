//! One registry strategy per kind with rules of its own; `default` for every other kind.

pub mod batch;
pub mod binding;
pub mod config_map;
pub mod crd;
pub mod custom;
pub mod daemonset;
pub mod default;
pub mod endpoints;
pub mod event;
pub mod lease;
pub mod namespace;
pub mod node;
pub mod pod;
pub mod pod_disruption_budget;
pub mod pod_service_account;
pub mod priority_class;
pub mod rbac;
pub mod review;
pub mod secret;
pub mod service;
pub mod service_account;
pub mod statefulset;
pub mod storage;
pub mod token_review;
pub mod webhook_configuration;
pub mod workload;
