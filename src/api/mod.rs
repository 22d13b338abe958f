//! Kubernetes API glue without I/O: resource definitions, defaulting, validation, selectors, patch, tables.

pub mod admission_policy;
pub mod apply;
pub mod autoscaling;
pub mod batch;
pub mod cel_lib;
pub mod client_config;
pub mod crd;
pub mod cron;
pub mod custom;
pub mod defaults;
pub mod disruption;
pub mod duration;
pub mod ephemeral;
pub mod events;
pub mod go_form;
pub mod go_json;
pub mod identity;
pub mod ingress;
pub mod jsonpath;
pub mod limit_range;
pub mod metrics;
pub mod nesting;
pub mod object;
pub mod patch;
pub mod pod_security;
pub mod protobuf;
pub mod quantity;
pub mod quota;
pub mod resources;
pub mod selector;
pub mod status;
pub mod storage;
pub mod table;
pub mod validation;

/// The Kubernetes version orc's API speaks (matches the k8s-openapi feature in use).
pub const KUBERNETES_VERSION: &str = "v1.32.0";
