//! Validation of API objects (Kubernetes JSON wire form) with upstream field errors and messages:
//! the entry point and the JSON access helpers every kind's rules share; one file per area.
//!
//! Objects are validated *after* defaulting, as upstream does; fields that defaulting
//! fills in (protocols, policies) are only checked when present. Checks that need
//! server state (namespace existence, name/namespace/uid immutability, nodePort
//! allocation) belong to the API server, not here.

mod admission_policy;
mod apiregistration;
mod autoscaling;
mod batch;
mod cluster;
mod config;
mod csi;
mod daemonset;
mod disruption;
mod field_error;
mod ingress;
mod meta;
mod names;
mod network_policy;
mod node_class;
mod pod;
mod pod_ephemeral;
mod pod_status;
mod quota;
mod rbac;
mod scheduling;
mod service;
mod statefulset;
mod storage;
#[cfg(test)]
mod test_support;
mod webhooks;
mod workloads;

pub use csi::{FS_GROUP_POLICIES, VOLUME_LIFECYCLE_MODES};
pub use disruption::UNHEALTHY_POD_EVICTION_POLICIES;
pub(crate) use field_error::go_quote;
pub use field_error::{FieldError, FieldErrorKind};
pub use ingress::{is_wildcard_dns1123_subdomain, PATH_TYPES};
pub use meta::{validate_annotations, validate_labels};
pub use names::{
    is_config_map_key, is_dns1035_label, is_dns1123_label, is_dns1123_subdomain, is_env_var_name,
    is_qualified_name, is_valid_label_value, is_valid_port_name, is_valid_port_num,
    mask_trailing_dash, MAX_SECRET_SIZE, TOTAL_ANNOTATION_SIZE_LIMIT,
};
pub use network_policy::POLICY_TYPES;
pub use pod::{validate_pod_spec, POD_UPDATABLE_FIELDS};
pub use pod_ephemeral::validate_pod_ephemeral_containers_update;
pub use pod_status::validate_pod_status_update;
pub use rbac::{is_path_segment_name, RBAC_GROUP};
pub use scheduling::{
    HIGHEST_USER_DEFINABLE_PRIORITY, PREEMPTION_POLICIES, SYSTEM_PRIORITY_CLASSES,
    SYSTEM_PRIORITY_CLASS_PREFIX,
};
pub use storage::{claim_request, ACCESS_MODES, SHRINK_FORBIDDEN};
pub use webhooks::ACCEPTED_REVIEW_VERSIONS;
pub use workloads::validate_label_selector;

pub use super::quantity::{
    parse_quantity, quantity_bytes, quantity_millis, Quantity, QuantityError,
};

use serde_json::{Map, Value};

use admission_policy::{validate_admission_policy, validate_admission_policy_binding};
use apiregistration::validate_api_service;
use autoscaling::validate_horizontal_pod_autoscaler;
use batch::{validate_cron_job, validate_job};
use cluster::{validate_event, validate_lease, validate_namespace, validate_node, EventApi};
use config::{validate_config_map, validate_secret};
use csi::{
    validate_csi_driver, validate_csi_node, validate_csi_storage_capacity,
    validate_volume_attachment,
};
use daemonset::validate_daemon_set;
use disruption::validate_pod_disruption_budget;
use ingress::{validate_ingress, validate_ingress_class};
use meta::validate_object_meta;
use names::{name_fn_for, NON_NEGATIVE_ERR};
use network_policy::validate_network_policy;
use node_class::{validate_pod_template_object, validate_runtime_class};
use pod::validate_pod;
use quota::{validate_limit_range, validate_resource_quota};
use rbac::{validate_binding, validate_cluster_role, validate_role};
use scheduling::validate_priority_class;
use service::{validate_endpoint_slice, validate_endpoints, validate_service};
use statefulset::{validate_controller_revision, validate_stateful_set};
use storage::{
    validate_persistent_volume, validate_persistent_volume_claim, validate_storage_class,
};
use webhooks::validate_webhook_configuration;
use workloads::{validate_apps_workload, validate_replication_controller};

// ---------------------------------------------------------------------------
// JSON access helpers
// ---------------------------------------------------------------------------

/// A JSON quantity (string or number) as a string.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn arr_at<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn obj_at<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn int_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn is_empty_map(m: Option<&Map<String, Value>>) -> bool {
    m.is_none_or(Map::is_empty)
}

type Errs = Vec<FieldError>;

fn non_negative(v: &Value, key: &str, path: &str, errs: &mut Errs) {
    if let Some(n) = int_at(v, key) {
        if n < 0 {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.{key}"),
                n.to_string(),
                NON_NEGATIVE_ERR,
            ));
        }
    }
}

/// Resources whose quantities must be whole numbers (upstream `IsIntegerResourceName`,
/// the standard ones a Node or pod overhead lists).
const INTEGER_RESOURCES: [&str; 1] = ["pods"];

/// Upstream `ValidateResourceQuantityValue`: a Kubernetes quantity (the one parser in
/// `api::quantity`), not negative, whole for integer resources. `path` names the field.
fn validate_resource_quantity(resource: &str, value: &Value, path: &str, errs: &mut Errs) {
    let Some(text) = quantity_text(value) else {
        errs.push(FieldError::invalid_rendered(
            path,
            field_error::render(value),
            QuantityError::FormatWrong.to_string(),
        ));
        return;
    };
    match parse_quantity(&text) {
        Err(e) => errs.push(FieldError::invalid(path, &text, e.to_string())),
        Ok(q) if q.is_negative() => errs.push(FieldError::invalid(path, &text, NON_NEGATIVE_ERR)),
        Ok(q) if INTEGER_RESOURCES.contains(&resource) && q.milli_value() % 1000 != 0 => {
            errs.push(FieldError::invalid(path, &text, "must be an integer"))
        }
        Ok(_) => {}
    }
}

/// Checks an optional enum field: empty string is Required, unknown NotSupported.
fn check_enum(v: &Value, key: &str, path: &str, allowed: &[&str], errs: &mut Errs) {
    let Some(val) = field(v, key) else { return };
    let s = val.as_str().unwrap_or("");
    if s.is_empty() {
        errs.push(FieldError::required(format!("{path}.{key}"), ""));
    } else if !allowed.contains(&s) {
        errs.push(FieldError::not_supported(
            format!("{path}.{key}"),
            s,
            allowed,
        ));
    }
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/// Upstream `ValidateObjectMeta` on its own (paths start at `metadata`), with names
/// checked as DNS subdomains: for kinds without a table entry here, such as custom
/// resources and the objects they embed.
pub fn validate_object_meta_subdomain(meta: &Value) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_object_meta(meta, is_dns1123_subdomain, &mut errs);
    errs
}

/// Validates an Event written through `events.k8s.io/v1`, in its stored (core/v1)
/// shape: metadata, upstream's legacy rules (with v1's `reportingController` name) and
/// its strict rules for new events; `old` (stored shape) on update.
pub fn validate_event_v1(obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_object_meta(
        obj.get("metadata").unwrap_or(&Value::Null),
        name_fn_for("Event"),
        &mut errs,
    );
    validate_event(obj, old, EventApi::EventsV1, &mut errs);
    errs
}

/// Validates `obj` of `kind` (after defaulting); `old` is the stored object on update.
/// Kinds without specific rules get metadata validation only.
pub fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_object_meta(
        obj.get("metadata").unwrap_or(&Value::Null),
        name_fn_for(kind),
        &mut errs,
    );
    match kind {
        "Namespace" => validate_namespace(obj, &mut errs),
        "Pod" => validate_pod(obj, old, &mut errs),
        "ReplicationController" => validate_replication_controller(obj, &mut errs),
        "ReplicaSet" | "Deployment" => validate_apps_workload(kind, obj, old, &mut errs),
        "Job" => validate_job(obj, old, &mut errs),
        "CronJob" => validate_cron_job(obj, &mut errs),
        "StatefulSet" => validate_stateful_set(obj, old, &mut errs),
        "ControllerRevision" => validate_controller_revision(obj, old, &mut errs),
        "DaemonSet" => validate_daemon_set(obj, old, &mut errs),
        "Service" => validate_service(obj, old, &mut errs),
        "Endpoints" => validate_endpoints(obj, &mut errs),
        "EndpointSlice" => validate_endpoint_slice(obj, old, &mut errs),
        "Node" => validate_node(obj, old, &mut errs),
        "Event" => validate_event(obj, old, EventApi::Core, &mut errs),
        "ConfigMap" => validate_config_map(obj, old, &mut errs),
        "Secret" => validate_secret(obj, old, &mut errs),
        "Lease" => validate_lease(obj, &mut errs),
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
            validate_webhook_configuration(kind, obj, &mut errs)
        }
        "ValidatingAdmissionPolicy" => validate_admission_policy(obj, &mut errs),
        "ValidatingAdmissionPolicyBinding" => validate_admission_policy_binding(obj, &mut errs),
        "Role" => validate_role(obj, &mut errs),
        "ClusterRole" => validate_cluster_role(obj, &mut errs),
        "RoleBinding" => validate_binding(obj, old, false, &mut errs),
        "ClusterRoleBinding" => validate_binding(obj, old, true, &mut errs),
        "PodDisruptionBudget" => validate_pod_disruption_budget(obj, &mut errs),
        "NetworkPolicy" => validate_network_policy(obj, &mut errs),
        "PriorityClass" => validate_priority_class(obj, old, &mut errs),
        "PersistentVolumeClaim" => validate_persistent_volume_claim(obj, old, &mut errs),
        "PersistentVolume" => validate_persistent_volume(obj, old, &mut errs),
        "StorageClass" => validate_storage_class(obj, old, &mut errs),
        "CSIDriver" => validate_csi_driver(obj, old, &mut errs),
        "CSINode" => validate_csi_node(obj, old, &mut errs),
        "VolumeAttachment" => validate_volume_attachment(obj, old, &mut errs),
        "CSIStorageCapacity" => validate_csi_storage_capacity(obj, old, &mut errs),
        "RuntimeClass" => validate_runtime_class(obj, old, &mut errs),
        "PodTemplate" => validate_pod_template_object(obj, &mut errs),
        "Ingress" => validate_ingress(obj, old, &mut errs),
        "IngressClass" => validate_ingress_class(obj, old, &mut errs),
        "ResourceQuota" => validate_resource_quota(obj, &mut errs),
        "LimitRange" => validate_limit_range(obj, &mut errs),
        "HorizontalPodAutoscaler" => validate_horizontal_pod_autoscaler(obj, &mut errs),
        "APIService" => validate_api_service(obj, &mut errs),
        _ => {}
    }
    errs
}
