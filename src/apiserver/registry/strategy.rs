//! The per-kind half of the registry: the `Strategy` a kind plugs into the generic
//! storage core (upstream's `rest.RESTCreateStrategy`, `RESTUpdateStrategy`,
//! `RESTDeleteStrategy`, `TableConvertor` and selectable fields), and the one table
//! that picks a strategy for each served kind.
//!
//! # Adding a kind
//!
//! 1. Its `ResourceDef` in `api/resources.rs` (names, scope, subresources, typed
//!    roundtrip); from then on it is routed, discovered, authorized, stored and
//!    watched like every other kind, printed as NAME and AGE and selectable by
//!    `metadata.name` and `metadata.namespace` ([`DefaultStrategy`]).
//! 2. If it has rules of its own: one file in `kinds/` with a unit struct that
//!    implements [`Strategy`], overriding only what differs (defaults and status reset
//!    in `prepare_for_create`/`prepare_for_update`, `validate`, delete rules,
//!    `printer` — a `Printer` next to the others in `api/table` — and
//!    `selectable_fields`) and `openapi_schema` (its k8s-openapi type, for
//!    `/openapi/v3`), plus its `pub mod` line in `kinds/mod.rs`;
//! 3. and one entry in [`strategy_for`].
//!
//! Handlers, watch, list, delete-collection and the OpenAPI document reach every
//! per-kind rule through `strategy_for(def)` (a test in `apiserver/openapi.rs` holds
//! every served kind to having a schema).

use futures::future::BoxFuture;
use ipnet::Ipv4Net;
use schemars::gen::SchemaGenerator;
use schemars::JsonSchema;
use serde_json::Value;

use super::kinds::event::EventRateLimit;
use super::kinds::{
    admission_policy::{
        ValidatingAdmissionPolicyBindingStrategy, ValidatingAdmissionPolicyStrategy,
    },
    api_service::ApiServiceStrategy,
    batch,
    binding::BindingStrategy,
    config_map::ConfigMapStrategy,
    crd::CrdStrategy,
    csi::{
        CsiDriverStrategy, CsiNodeStrategy, CsiStorageCapacityStrategy, VolumeAttachmentStrategy,
    },
    custom::CustomStrategy,
    daemonset::DaemonSetStrategy,
    default::DefaultStrategy,
    endpoints::{EndpointSliceStrategy, EndpointsStrategy},
    event::{EventStrategy, EventV1Strategy},
    ingress::{IngressClassStrategy, IngressStrategy},
    lease::LeaseStrategy,
    namespace::NamespaceStrategy,
    network_policy::NetworkPolicyStrategy,
    node::NodeStrategy,
    pod::PodStrategy,
    pod_disruption_budget::PodDisruptionBudgetStrategy,
    pod_template::PodTemplateStrategy,
    priority_class::PriorityClassStrategy,
    quota::{LimitRangeStrategy, ResourceQuotaStrategy},
    rbac, review,
    runtime_class::RuntimeClassStrategy,
    secret::SecretStrategy,
    service::ServiceStrategy,
    service_account::ServiceAccountStrategy,
    statefulset, storage,
    token_review::TokenReviewStrategy,
    webhook_configuration, workload,
};
use crate::api::identity::User;
use crate::api::resources::{ResourceDef, Roundtrip};
use crate::api::selector::{self, LabelSelector};
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::api::validation::FieldError;
use crate::api::{defaults, validation};
use crate::apiserver::allocator::{Allocators, Reservation};
use crate::apiserver::heartbeats::Heartbeats;
use crate::apiserver::registry::{Registry, WriteOptions, Written};
use crate::store::{KeyValue, Store};

/// What a strategy may use besides the object: the kind being written and the
/// registry's cluster-wide state.
pub struct Context<'a> {
    pub def: &'a ResourceDef,
    pub allocators: &'a Allocators,
    pub heartbeats: &'a Heartbeats,
    /// `tolerationSeconds` for the not-ready/unreachable tolerations pods get by default.
    pub default_tolerations: crate::api::defaults::DefaultTolerations,
    /// The cluster's pod network (`--cluster-cidr`), when known.
    pub cluster_cidr: Option<Ipv4Net>,
    /// The per-node event rate limit.
    pub event_rate_limit: &'a EventRateLimit,
    /// The RBAC policy, for the escalation checks of RBAC writes.
    pub rbac: &'a crate::apiserver::rbac::Rbac,
    /// The stored objects (for admission rules that look other objects up).
    pub store: &'a dyn Store,
}

impl Context<'_> {
    /// The stored object `name` of kind `def` (`None` when there is none).
    pub fn stored(&self, def: &ResourceDef, ns: Option<&str>, name: &str) -> Option<Value> {
        self.store
            .get(&def.key(ns, name))
            .map(|kv| (*kv.value).clone())
    }
}

/// The rules of one kind. Every method has the behaviour of a kind without rules of
/// its own (defaults and validation from `api/`, status kept across updates, deleted
/// at once), so a strategy overrides only what its kind does differently.
pub trait Strategy: Sync {
    /// Upstream `PrepareForCreate` and defaulting: resets what only the system writes
    /// (status, for kinds whose controllers own it) and fills in defaults.
    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        defaults::apply_defaults(cx.def.kind, obj);
    }

    /// Upstream `PrepareForUpdate` and defaulting: a write of the main resource keeps
    /// the stored status, a write of `status` keeps everything else.
    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        keep_unwritten_part(cx.def, new, old, subresource);
        defaults::apply_defaults(cx.def.kind, new);
    }

    /// Upstream's REST storage of a kind that is never stored: a create acts on other
    /// objects and answers what that storage returns (a Binding assigns its pod to a
    /// node and answers a Success `Status`). `None` for kinds stored as written.
    fn create_instead<'a>(
        &self,
        _registry: &'a Registry,
        _ns: Option<&'a str>,
        _obj: &'a Value,
        _opts: &'a WriteOptions,
    ) -> Option<BoxFuture<'a, Result<Written, ApiError>>> {
        None
    }

    /// The typed form of a request body: the kind's type read and written back
    /// (unknown fields dropped, wrong types refused). Fields it drops are the body's
    /// unknown fields for `fieldValidation`.
    fn typed(&self, cx: &Context, obj: &Value) -> Result<Value, serde_json::Error> {
        (cx.def.roundtrip)(obj)
    }

    /// Field errors of a new object (an empty list admits it).
    fn validate(&self, cx: &Context, obj: &Value) -> Vec<FieldError> {
        validation::validate(cx.def.kind, obj, None)
    }

    /// Field errors of an update from `old` to `new` (immutable fields included).
    fn validate_update(&self, cx: &Context, new: &Value, old: &Value) -> Vec<FieldError> {
        validation::validate(cx.def.kind, new, Some(old))
    }

    /// The kind's status type, for kinds whose status writes follow upstream's status
    /// strategy: such a write keeps every other part of the stored object, so when the
    /// body's other parts are the stored ones only its status is decoded (read as this
    /// type and written back), and `prepare_for_update` and
    /// [`Strategy::validate_status_update`] look at the status only. `None`: a status
    /// write is decoded whole.
    fn status_type(&self) -> Option<Roundtrip> {
        None
    }

    /// Field errors of a write of the `status` subresource from `old` to `new` (`new`
    /// holds the stored object's other parts): the whole-object rules unless the kind
    /// validates a status on its own (upstream's `…StatusStrategy.ValidateUpdate`).
    fn validate_status_update(&self, cx: &Context, new: &Value, old: &Value) -> Vec<FieldError> {
        self.validate_update(cx, new, old)
    }

    /// Field errors of a write of another subresource that writes part of the object
    /// (`pods/ephemeralcontainers`) from `old` to `new`: the whole-object update rules
    /// unless the kind has that subresource's own (upstream's per-subresource
    /// strategies' `ValidateUpdate`).
    fn validate_subresource_update(
        &self,
        cx: &Context,
        _subresource: &str,
        new: &Value,
        old: &Value,
    ) -> Vec<FieldError> {
        self.validate_update(cx, new, old)
    }

    /// Upstream's admission plugins for this kind (NodeRestriction, EventRateLimit): run
    /// before validation for writes a client asked for (`WriteOptions::requester`), on
    /// the object as it would be stored, with the stored object as `old` on updates
    /// (`None` on create). Never for the in-process controllers.
    fn admit(
        &self,
        _cx: &Context,
        _requester: &User,
        _new: &Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        Ok(())
    }

    /// Upstream's mutating admission plugins that apply to every create, the in-process
    /// controllers' included (ServiceAccount for pods): run after `prepare_for_create`
    /// and the namespace check, before `admit` and validation; may change `obj` or refuse
    /// it. May wait a moment for an object another controller is about to create.
    fn admit_create<'a>(
        &'a self,
        _cx: &'a Context<'a>,
        _obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(std::future::ready(Ok(())))
    }

    /// Reserves what `obj` needs from cluster-wide pools (Service IPs and NodePorts) on
    /// create (`old` is None) and on updates of the main resource. The core releases
    /// the reservation again when the write does not happen.
    fn allocate(
        &self,
        _cx: &Context,
        _obj: &mut Value,
        _old: Option<&Value>,
    ) -> Result<Reservation, ApiError> {
        Ok(Reservation::default())
    }

    /// Whether objects of this kind hold anything from those pools (re-reserved from
    /// the stored objects when the registry starts).
    fn holds_allocations(&self) -> bool {
        false
    }

    /// What a stored object holds from those pools: released when it is deleted, and
    /// the part an update no longer holds is released after the update.
    fn allocations(&self, _obj: &Value) -> Reservation {
        Reservation::default()
    }

    /// Whether the kind keeps `metadata.generation`: upstream's strategies that set it
    /// to 1 in `PrepareForCreate` and move it on in `PrepareForUpdate` when the spec
    /// changes (workloads, Jobs, CronJobs, PDBs, NetworkPolicies, Ingresses,
    /// IngressClasses, EndpointSlices, webhook configurations, CRDs and custom objects
    /// in Kubernetes 1.32). Other kinds keep whatever generation the client created
    /// them with (none, as a rule) and updates never change it.
    fn tracks_generation(&self) -> bool {
        false
    }

    /// For a kind that tracks generation: whether a new object starts at generation 1
    /// (upstream's CSIDriver strategy moves it on spec changes but never sets it on
    /// create, so its first spec change makes it 1).
    fn generation_set_on_create(&self) -> bool {
        true
    }

    /// For a kind that tracks generation: whether the update from `old` to `new`
    /// moves it on (by default, anything but metadata and status changed).
    fn generation_moves(&self, _cx: &Context, new: &Value, old: &Value) -> bool {
        !crate::api::object::same_spec_part(new, old)
    }

    /// Whether an update changes nothing but heartbeat timestamps: such an update is
    /// acknowledged in memory instead of being written (see `heartbeats`).
    fn is_heartbeat(&self, _old: &Value, _new: &Value) -> bool {
        false
    }

    /// The object a get or list returns for the stored `kv` (with its latest
    /// in-memory heartbeat, for kinds that have them).
    fn fresh_view(&self, _cx: &Context, kv: KeyValue) -> KeyValue {
        kv
    }

    /// Upstream `BeforeDelete` checks: refuses deletes the kind never allows.
    fn check_delete(&self, _cx: &Context, _obj: &Value) -> Result<(), ApiError> {
        Ok(())
    }

    /// Seconds a delete waits for the object's owner to let go of it (upstream
    /// `CheckGracefulDelete`); 0 deletes at once unless finalizers remain.
    fn grace_period(&self, _obj: &Value, _requested: Option<i64>) -> i64 {
        0
    }

    /// Whether a delete always only marks the object, for a controller to finish
    /// (a namespace is emptied before it goes).
    fn deleted_by_controller(&self) -> bool {
        false
    }

    /// Changes made to an object when it is marked for deletion.
    fn prepare_for_delete(&self, _obj: &mut Value) {}

    /// Upstream `DefaultGarbageCollectionPolicy`: the propagation policy of a delete that
    /// names none (`None`: background, as for most kinds).
    fn default_propagation(&self) -> Option<&'static str> {
        None
    }

    /// Upstream `ReturnDeletedObject`: whether a delete that removes the object at once
    /// answers with the object (pods, services, custom resources, …) instead of a
    /// `Status` of success naming it.
    fn returns_deleted_object(&self) -> bool {
        false
    }

    /// Whether the kind's own finalization, besides `metadata.finalizers`, is done:
    /// an object being deleted goes once both are.
    fn finalized(&self, _obj: &Value) -> bool {
        true
    }

    /// How objects of this kind print as a `meta.k8s.io` Table (upstream's
    /// `TableConvertor`): the printer in `api::table` with the kind's columns and cells.
    fn printer(&self) -> &'static Printer {
        &table::DEFAULT
    }

    /// The field labels a field selector may name for this kind (upstream's
    /// `GetAttrs`/`SelectableFields`); `api::selector` reads their values and rejects
    /// any other label as not supported.
    fn selectable_fields(&self) -> &'static [&'static str] {
        NAME_AND_NAMESPACE
    }

    /// The value a field selector compares for `field` (one of
    /// [`Strategy::selectable_fields`]): the scalar at that path unless the kind
    /// renders it otherwise (upstream's `GetAttrs`).
    fn field_value(&self, obj: &Value, field: &str) -> String {
        selector::field_value(obj, field)
    }

    /// `status.selector` of the object's `Scale` view: its pod selector as a string.
    fn scale_selector(&self, obj: &Value) -> String {
        LabelSelector::from_k8s(&obj["spec"]["selector"])
            .map(|s| s.to_string())
            .unwrap_or_default()
    }

    /// Registers the kind's OpenAPI schema (and everything it references) with `gen`
    /// and returns its definition name; `None` for a kind whose type orc does not know.
    fn openapi_schema(&self, _gen: &mut SchemaGenerator) -> Option<String> {
        None
    }
}

/// The `openapi_schema` of a kind served as the k8s-openapi type `T`.
pub fn schema_of<T: JsonSchema>(gen: &mut SchemaGenerator) -> Option<String> {
    gen.subschema_for::<T>();
    Some(T::schema_name())
}

/// The field labels every kind supports unless its strategy says otherwise.
pub const NAME_AND_NAMESPACE: &[&str] = &["metadata.name", "metadata.namespace"];

/// The strategy of a served kind: the only place that says which kinds have rules.
pub fn strategy_for(def: &ResourceDef) -> &'static dyn Strategy {
    if def.custom.is_some() {
        return &CustomStrategy;
    }
    match (def.group, def.kind) {
        ("apiextensions.k8s.io", "CustomResourceDefinition") => &CrdStrategy,
        ("", "Pod") => &PodStrategy,
        ("", "Binding") => &BindingStrategy,
        ("", "Service") => &ServiceStrategy,
        ("", "Endpoints") => &EndpointsStrategy,
        ("discovery.k8s.io", "EndpointSlice") => &EndpointSliceStrategy,
        ("", "Event") => &EventStrategy,
        ("events.k8s.io", "Event") => &EventV1Strategy,
        ("", "ConfigMap") => &ConfigMapStrategy,
        ("", "Secret") => &SecretStrategy,
        ("", "ServiceAccount") => &ServiceAccountStrategy,
        ("", "Namespace") => &NamespaceStrategy,
        ("", "Node") => &NodeStrategy,
        ("", "PersistentVolume") => &storage::PersistentVolumeStrategy,
        ("", "PersistentVolumeClaim") => &storage::PersistentVolumeClaimStrategy,
        ("storage.k8s.io", "StorageClass") => &storage::StorageClassStrategy,
        ("networking.k8s.io", "Ingress") => &IngressStrategy,
        ("networking.k8s.io", "IngressClass") => &IngressClassStrategy,
        ("coordination.k8s.io", "Lease") => &LeaseStrategy,
        ("authentication.k8s.io", "TokenReview") => &TokenReviewStrategy,
        ("authentication.k8s.io", "SelfSubjectReview") => &review::SELF_SUBJECT_REVIEW,
        ("authorization.k8s.io", "SelfSubjectAccessReview") => &review::SELF_SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io", "SubjectAccessReview") => &review::SUBJECT_ACCESS_REVIEW,
        ("authorization.k8s.io", "LocalSubjectAccessReview") => {
            &review::LOCAL_SUBJECT_ACCESS_REVIEW
        }
        ("authorization.k8s.io", "SelfSubjectRulesReview") => &review::SELF_SUBJECT_RULES_REVIEW,
        ("rbac.authorization.k8s.io", "Role") => &rbac::ROLE,
        ("rbac.authorization.k8s.io", "ClusterRole") => &rbac::CLUSTER_ROLE,
        ("rbac.authorization.k8s.io", "RoleBinding") => &rbac::ROLE_BINDING,
        ("rbac.authorization.k8s.io", "ClusterRoleBinding") => &rbac::CLUSTER_ROLE_BINDING,
        ("", "ReplicationController") => &workload::REPLICATION_CONTROLLER,
        ("apps", "ReplicaSet") => &workload::REPLICA_SET,
        ("apps", "Deployment") => &workload::DEPLOYMENT,
        ("batch", "Job") => &batch::JOB,
        ("batch", "CronJob") => &batch::CRON_JOB,
        ("apps", "StatefulSet") => &statefulset::StatefulSetStrategy,
        ("apps", "ControllerRevision") => &statefulset::ControllerRevisionStrategy,
        ("policy", "PodDisruptionBudget") => &PodDisruptionBudgetStrategy,
        ("autoscaling", "HorizontalPodAutoscaler") if def.version == "v1" => {
            &super::kinds::hpa::HorizontalPodAutoscalerV1Strategy
        }
        ("autoscaling", "HorizontalPodAutoscaler") => {
            &super::kinds::hpa::HorizontalPodAutoscalerStrategy
        }
        ("networking.k8s.io", "NetworkPolicy") => &NetworkPolicyStrategy,
        ("apiregistration.k8s.io", "APIService") => &ApiServiceStrategy,
        ("", "ResourceQuota") => &ResourceQuotaStrategy,
        ("", "LimitRange") => &LimitRangeStrategy,
        ("scheduling.k8s.io", "PriorityClass") => &PriorityClassStrategy,
        ("storage.k8s.io", "CSIDriver") => &CsiDriverStrategy,
        ("storage.k8s.io", "CSINode") => &CsiNodeStrategy,
        ("storage.k8s.io", "VolumeAttachment") => &VolumeAttachmentStrategy,
        ("storage.k8s.io", "CSIStorageCapacity") => &CsiStorageCapacityStrategy,
        ("node.k8s.io", "RuntimeClass") => &RuntimeClassStrategy,
        ("", "PodTemplate") => &PodTemplateStrategy,
        ("apps", "DaemonSet") => &DaemonSetStrategy,
        ("admissionregistration.k8s.io", "ValidatingWebhookConfiguration") => {
            &webhook_configuration::VALIDATING
        }
        ("admissionregistration.k8s.io", "MutatingWebhookConfiguration") => {
            &webhook_configuration::MUTATING
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicy") => {
            &ValidatingAdmissionPolicyStrategy
        }
        ("admissionregistration.k8s.io", "ValidatingAdmissionPolicyBinding") => {
            &ValidatingAdmissionPolicyBindingStrategy
        }
        _ => &DefaultStrategy,
    }
}

/// Upstream's status reset: a `status` write takes only the status from `new`, any
/// other write of a kind with a status keeps the stored one. Parts of `new` equal to
/// the stored ones are kept as they are: only a part that differs is copied from `old`.
pub fn keep_unwritten_part(
    def: &ResourceDef,
    new: &mut Value,
    old: &Value,
    subresource: Option<&str>,
) {
    if subresource == Some("status") {
        // A body missing one of the stored members is rebuilt from the stored object, so
        // the members keep the stored order (an appended one would move to the end).
        let in_place = match (new.as_object(), old.as_object()) {
            (Some(fields), Some(stored)) => stored
                .keys()
                .all(|k| k == "status" || fields.contains_key(k)),
            _ => false,
        };
        let (true, Some(fields), Some(stored)) = (in_place, new.as_object_mut(), old.as_object())
        else {
            let status = new.get("status").cloned();
            *new = old.clone();
            set_status(new, status);
            return;
        };
        fields.retain(|k, _| k == "status" || stored.contains_key(k));
        for (k, v) in stored.iter().filter(|(k, _)| *k != "status") {
            if fields.get(k) != Some(v) {
                fields.insert(k.clone(), v.clone());
            }
        }
    } else if def.has_status() {
        set_status(new, old.get("status").cloned());
    }
}

/// Sets `obj`'s status, or removes it (`None`).
fn set_status(obj: &mut Value, status: Option<Value>) {
    match status {
        Some(s) => obj["status"] = s,
        None => {
            obj.as_object_mut().map(|o| o.remove("status"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::RESOURCES;
    use crate::api::table::RowPrinter;

    fn def(kind: &str) -> &'static ResourceDef {
        RESOURCES.iter().find(|d| d.kind == kind).expect("served")
    }

    #[test]
    fn the_table_hands_each_kind_its_own_rules() {
        assert!(strategy_for(def("Service")).holds_allocations());
        assert!(strategy_for(def("Namespace")).deleted_by_controller());
        let pod = serde_json::json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert_eq!(strategy_for(def("Pod")).grace_period(&pod, Some(5)), 5);
        let rc = serde_json::json!({"spec": {"selector": {"app": "web"}}});
        assert_eq!(
            strategy_for(def("ReplicationController")).scale_selector(&rc),
            "app=web"
        );
        let config_map = strategy_for(def("ConfigMap"));
        assert!(!config_map.holds_allocations());
        assert!(!config_map.deleted_by_controller());
        assert_eq!(config_map.grace_period(&pod, Some(5)), 0);
    }

    #[test]
    fn every_served_kind_prints_a_name_and_selects_by_name_and_namespace() {
        let obj = serde_json::json!({"metadata": {"name": "x", "namespace": "ns"}});
        for def in RESOURCES {
            let strategy = strategy_for(def);
            let printer = strategy.printer();
            let columns = printer.column_definitions();
            assert!(
                columns.iter().any(|c| c["name"] == "Name"),
                "{} has a Name column",
                def.kind
            );
            assert_eq!(
                printer.row(&obj, chrono::Utc::now()).len(),
                columns.len(),
                "{} prints a cell per column",
                def.kind
            );
            let fields = strategy.selectable_fields();
            assert!(fields.contains(&"metadata.name"), "{}", def.kind);
            if def.namespaced {
                assert!(fields.contains(&"metadata.namespace"), "{}", def.kind);
            }
        }
    }

    #[test]
    fn each_kind_supports_upstreams_field_labels() {
        let fields = |kind| strategy_for(def(kind)).selectable_fields();
        let check = |kind, selector: &str| {
            let sel = crate::api::selector::FieldSelector::parse(selector).expect("parses");
            crate::api::selector::check_supported(fields(kind), &sel).map_err(|e| e.to_string())
        };
        assert!(check("Pod", "spec.nodeName=n1,status.phase=Running").is_ok());
        assert!(check("Pod", "spec.hostNetwork=true,status.podIP=10.0.0.1").is_ok());
        assert_eq!(
            check("ConfigMap", "spec.nodeName=n1,status.phase=Running").unwrap_err(),
            "field label not supported: spec.nodeName"
        );
        assert!(check("ConfigMap", "metadata.name=a,metadata.namespace=b").is_ok());
        assert!(check("Node", "spec.unschedulable=false,metadata.name=n").is_ok());
        assert_eq!(
            check("Node", "metadata.namespace=x").unwrap_err(),
            "field label not supported: metadata.namespace"
        );
        assert!(check("Secret", "type=Opaque").is_ok());
        assert!(check("Event", "involvedObject.name=p,reason=x,source=kubelet").is_ok());
        assert!(check("Namespace", "status.phase=Active").is_ok());
        assert!(check("ReplicaSet", "status.replicas=1").is_ok());
        assert!(check("ReplicationController", "status.replicas=1").is_ok());
        assert!(check("Service", "spec.clusterIP=None,spec.type=ClusterIP").is_ok());
        assert_eq!(
            check("Deployment", "status.replicas=1").unwrap_err(),
            "field label not supported: status.replicas"
        );
    }

    #[test]
    fn each_kind_prints_with_its_own_columns() {
        let names = |kind| -> Vec<String> {
            strategy_for(def(kind))
                .printer()
                .column_definitions()
                .iter()
                .map(|c| c["name"].as_str().unwrap_or("").to_string())
                .collect()
        };
        assert_eq!(names("Pod")[..3], ["Name", "Ready", "Status"]);
        assert_eq!(names("Event")[0], "Last Seen");
        assert_eq!(names("Secret"), ["Name", "Type", "Data", "Age"]);
        assert_eq!(names("Lease"), ["Name", "Holder", "Age"]);
        assert_eq!(names("Deployment")[1], "Ready");
        assert_eq!(names("Binding"), ["Name", "Age"]);
        assert_eq!(names("DaemonSet")[6], "Node Selector");
    }

    #[test]
    fn status_writes_keep_the_spec_and_other_writes_keep_the_status() {
        let pods = def("Pod");
        let old = serde_json::json!({"spec": {"a": 1}, "status": {"phase": "Running"}});
        let body = serde_json::json!({"spec": {"a": 2}, "status": {"phase": "Failed"}});
        let mut status_write = body.clone();
        keep_unwritten_part(pods, &mut status_write, &old, Some("status"));
        assert_eq!(
            status_write,
            serde_json::json!({"spec": {"a": 1}, "status": {"phase": "Failed"}})
        );
        let mut main_write = body;
        keep_unwritten_part(pods, &mut main_write, &old, None);
        assert_eq!(
            main_write,
            serde_json::json!({"spec": {"a": 2}, "status": {"phase": "Running"}})
        );
    }

    #[test]
    fn a_status_write_keeps_the_stored_members_in_their_order() {
        let pods = def("Pod");
        let old = serde_json::json!({"apiVersion": "v1", "metadata": {"name": "p"},
            "spec": {"a": 1}, "status": {"phase": "Running"}});
        let mut write =
            serde_json::json!({"status": {"phase": "Failed"}, "metadata": {"name": "p"}});
        keep_unwritten_part(pods, &mut write, &old, Some("status"));
        let keys: Vec<&String> = write.as_object().unwrap().keys().collect();
        assert_eq!(keys, ["apiVersion", "metadata", "spec", "status"]);
        assert_eq!(write["status"]["phase"], "Failed");
    }
}
