//! The resource types orc serves: names, scope, verbs and how to type-check each kind.

use std::sync::{Arc, RwLock};

use serde::{de::DeserializeOwned, Serialize};
use serde_json::Value;

pub use super::custom::CustomResource;

/// Decodes a JSON object into the kind's typed form and back, dropping unknown fields.
pub type Roundtrip = fn(&Value) -> Result<Value, serde_json::Error>;

/// One served resource (e.g. `pods` in core/v1).
#[derive(Debug)]
pub struct ResourceDef {
    /// API group; empty for the core (legacy) group.
    pub group: &'static str,
    pub version: &'static str,
    pub kind: &'static str,
    pub plural: &'static str,
    pub singular: &'static str,
    pub namespaced: bool,
    pub short_names: &'static [&'static str],
    pub categories: &'static [&'static str],
    /// Subresources: `status`, `scale`, `binding`, `eviction`, `log`, `exec`, `finalize`.
    pub subresources: &'static [&'static str],
    pub roundtrip: Roundtrip,
    /// What a custom resource (served from a CustomResourceDefinition) adds: its schema,
    /// printer columns and scale paths. `None` for the built-in kinds.
    pub custom: Option<&'static CustomResource>,
}

impl PartialEq for ResourceDef {
    fn eq(&self, other: &ResourceDef) -> bool {
        self.group == other.group && self.version == other.version && self.plural == other.plural
    }
}

impl ResourceDef {
    /// `v1` or `apps/v1`.
    pub fn api_version(&self) -> String {
        if self.group.is_empty() {
            self.version.to_string()
        } else {
            format!("{}/{}", self.group, self.version)
        }
    }

    pub fn has_subresource(&self, name: &str) -> bool {
        self.subresources.contains(&name)
    }

    /// Whether `status` is a separate subresource (the main endpoint ignores status).
    pub fn has_status(&self) -> bool {
        self.has_subresource("status")
    }

    /// Datastore key prefix for all objects of this resource. `events.k8s.io` Events
    /// are the core Events in another shape: one storage, as upstream.
    pub fn prefix(&self) -> String {
        let group = if self.group.is_empty() || self.group == super::events::GROUP {
            "core"
        } else {
            self.group
        };
        format!("/{group}/{}/", self.plural)
    }

    /// Datastore key prefix for a namespace (or all objects when `namespace` is None).
    pub fn list_prefix(&self, namespace: Option<&str>) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/", self.prefix()),
            _ => self.prefix(),
        }
    }

    /// Datastore key of one object.
    pub fn key(&self, namespace: Option<&str>, name: &str) -> String {
        match (self.namespaced, namespace) {
            (true, Some(ns)) => format!("{}{ns}/{name}", self.prefix()),
            _ => format!("{}{name}", self.prefix()),
        }
    }

    /// Verbs on the main resource, as discovery reports them.
    pub fn verbs(&self) -> &'static [&'static str] {
        match self.kind {
            "Binding"
            | "TokenReview"
            | "SelfSubjectReview"
            | "SelfSubjectAccessReview"
            | "SubjectAccessReview"
            | "LocalSubjectAccessReview"
            | "SelfSubjectRulesReview" => &["create"],
            // Measured, not stored: read-only, as metrics-server serves them.
            "NodeMetrics" | "PodMetrics" if self.group == super::metrics::GROUP => &["get", "list"],
            _ => &[
                "create",
                "delete",
                "deletecollection",
                "get",
                "list",
                "patch",
                "update",
                "watch",
            ],
        }
    }
}

/// A value read as `T` and written back (unknown fields dropped, wrong types refused).
pub fn roundtrip<T: DeserializeOwned + Serialize>(v: &Value) -> Result<Value, serde_json::Error> {
    let typed: T = T::deserialize(v)?;
    serde_json::to_value(typed)
}

use k8s_openapi::api::admissionregistration::v1 as admissionregistration;
use k8s_openapi::api::networking::v1::NetworkPolicy;
use k8s_openapi::api::node::v1 as node;
use k8s_openapi::api::{
    apps::v1 as apps, batch::v1 as batch, coordination::v1 as coordination, core::v1 as core,
    discovery::v1 as discovery, policy::v1 as policy, rbac::v1 as rbac,
    scheduling::v1 as scheduling, storage::v1 as storage,
};
use k8s_openapi::api::{authentication::v1 as authn, authorization::v1 as authz};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1 as apiextensions;
use k8s_openapi::kube_aggregator::pkg::apis::apiregistration::v1::APIService;

const ALL: &[&str] = &["all"];
const NONE: &[&str] = &[];

/// Every resource orc serves.
pub static RESOURCES: &[ResourceDef] = &[
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Namespace",
        plural: "namespaces",
        singular: "namespace",
        namespaced: false,
        short_names: &["ns"],
        categories: NONE,
        subresources: &["status", "finalize"],
        roundtrip: roundtrip::<core::Namespace>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Pod",
        plural: "pods",
        singular: "pod",
        namespaced: true,
        short_names: &["po"],
        categories: ALL,
        subresources: &[
            "status",
            "binding",
            "ephemeralcontainers",
            "eviction",
            "log",
            "exec",
            "attach",
            "portforward",
            "proxy",
        ],
        roundtrip: roundtrip::<core::Pod>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Binding",
        plural: "bindings",
        singular: "binding",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<core::Binding>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "ReplicationController",
        plural: "replicationcontrollers",
        singular: "replicationcontroller",
        namespaced: true,
        short_names: &["rc"],
        categories: ALL,
        subresources: &["status", "scale"],
        roundtrip: roundtrip::<core::ReplicationController>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Service",
        plural: "services",
        singular: "service",
        namespaced: true,
        short_names: &["svc"],
        categories: ALL,
        subresources: &["status", "proxy"],
        roundtrip: roundtrip::<core::Service>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Endpoints",
        plural: "endpoints",
        singular: "endpoints",
        namespaced: true,
        short_names: &["ep"],
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<core::Endpoints>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Node",
        plural: "nodes",
        singular: "node",
        namespaced: false,
        short_names: &["no"],
        categories: NONE,
        subresources: &["status", "proxy"],
        roundtrip: roundtrip::<core::Node>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<core::Event>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "ConfigMap",
        plural: "configmaps",
        singular: "configmap",
        namespaced: true,
        short_names: &["cm"],
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<core::ConfigMap>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "Secret",
        plural: "secrets",
        singular: "secret",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<core::Secret>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "ServiceAccount",
        plural: "serviceaccounts",
        singular: "serviceaccount",
        namespaced: true,
        short_names: &["sa"],
        categories: NONE,
        subresources: &["token"],
        roundtrip: roundtrip::<core::ServiceAccount>,
        custom: None,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "Deployment",
        plural: "deployments",
        singular: "deployment",
        namespaced: true,
        short_names: &["deploy"],
        categories: ALL,
        subresources: &["status", "scale"],
        roundtrip: roundtrip::<apps::Deployment>,
        custom: None,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "ReplicaSet",
        plural: "replicasets",
        singular: "replicaset",
        namespaced: true,
        short_names: &["rs"],
        categories: ALL,
        subresources: &["status", "scale"],
        roundtrip: roundtrip::<apps::ReplicaSet>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "PersistentVolumeClaim",
        plural: "persistentvolumeclaims",
        singular: "persistentvolumeclaim",
        namespaced: true,
        short_names: &["pvc"],
        categories: NONE,
        subresources: &["status"],
        roundtrip: roundtrip::<core::PersistentVolumeClaim>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "ResourceQuota",
        plural: "resourcequotas",
        singular: "resourcequota",
        namespaced: true,
        short_names: &["quota"],
        categories: NONE,
        subresources: &["status"],
        roundtrip: roundtrip::<core::ResourceQuota>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "PodTemplate",
        plural: "podtemplates",
        singular: "podtemplate",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<core::PodTemplate>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "LimitRange",
        plural: "limitranges",
        singular: "limitrange",
        namespaced: true,
        short_names: &["limits"],
        categories: NONE,
        subresources: &[],
        roundtrip: roundtrip::<core::LimitRange>,
        custom: None,
    },
    ResourceDef {
        group: "",
        version: "v1",
        kind: "PersistentVolume",
        plural: "persistentvolumes",
        singular: "persistentvolume",
        namespaced: false,
        short_names: &["pv"],
        categories: NONE,
        subresources: &["status"],
        roundtrip: roundtrip::<core::PersistentVolume>,
        custom: None,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "StatefulSet",
        plural: "statefulsets",
        singular: "statefulset",
        namespaced: true,
        short_names: &["sts"],
        categories: ALL,
        subresources: &["status", "scale"],
        roundtrip: roundtrip::<apps::StatefulSet>,
        custom: None,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "DaemonSet",
        plural: "daemonsets",
        singular: "daemonset",
        namespaced: true,
        short_names: &["ds"],
        categories: ALL,
        subresources: &["status"],
        roundtrip: roundtrip::<apps::DaemonSet>,
        custom: None,
    },
    ResourceDef {
        group: "apps",
        version: "v1",
        kind: "ControllerRevision",
        plural: "controllerrevisions",
        singular: "controllerrevision",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<apps::ControllerRevision>,
        custom: None,
    },
    ResourceDef {
        group: "batch",
        version: "v1",
        kind: "Job",
        plural: "jobs",
        singular: "job",
        namespaced: true,
        short_names: NONE,
        categories: ALL,
        subresources: &["status"],
        roundtrip: roundtrip::<batch::Job>,
        custom: None,
    },
    ResourceDef {
        group: "batch",
        version: "v1",
        kind: "CronJob",
        plural: "cronjobs",
        singular: "cronjob",
        namespaced: true,
        short_names: &["cj"],
        categories: ALL,
        subresources: &["status"],
        roundtrip: roundtrip::<batch::CronJob>,
        custom: None,
    },
    ResourceDef {
        group: "policy",
        version: "v1",
        kind: "PodDisruptionBudget",
        plural: "poddisruptionbudgets",
        singular: "poddisruptionbudget",
        namespaced: true,
        short_names: &["pdb"],
        categories: NONE,
        subresources: &["status"],
        roundtrip: roundtrip::<policy::PodDisruptionBudget>,
        custom: None,
    },
    // The core Events (same keys: `prefix` stores both under core), converted from and
    // to the core shape by their strategy.
    ResourceDef {
        group: super::events::GROUP,
        version: "v1",
        kind: "Event",
        plural: "events",
        singular: "event",
        namespaced: true,
        short_names: &["ev"],
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<k8s_openapi::api::events::v1::Event>,
        custom: None,
    },
    ResourceDef {
        group: "autoscaling",
        version: "v2",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        short_names: &["hpa"],
        categories: ALL,
        subresources: &["status"],
        roundtrip: roundtrip::<k8s_openapi::api::autoscaling::v2::HorizontalPodAutoscaler>,
        custom: None,
    },
    // The same stored objects (keys do not carry the version), converted from and to
    // v2 by the v1 strategy.
    ResourceDef {
        group: "autoscaling",
        version: "v1",
        kind: "HorizontalPodAutoscaler",
        plural: "horizontalpodautoscalers",
        singular: "horizontalpodautoscaler",
        namespaced: true,
        short_names: &["hpa"],
        categories: ALL,
        subresources: &["status"],
        roundtrip: roundtrip::<k8s_openapi::api::autoscaling::v1::HorizontalPodAutoscaler>,
        custom: None,
    },
    ResourceDef {
        group: "scheduling.k8s.io",
        version: "v1",
        kind: "PriorityClass",
        plural: "priorityclasses",
        singular: "priorityclass",
        namespaced: false,
        short_names: &["pc"],
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<scheduling::PriorityClass>,
        custom: None,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        kind: "StorageClass",
        plural: "storageclasses",
        singular: "storageclass",
        namespaced: false,
        short_names: &["sc"],
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<storage::StorageClass>,
        custom: None,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        kind: "CSIDriver",
        plural: "csidrivers",
        singular: "csidriver",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<storage::CSIDriver>,
        custom: None,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        kind: "CSINode",
        plural: "csinodes",
        singular: "csinode",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<storage::CSINode>,
        custom: None,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        kind: "VolumeAttachment",
        plural: "volumeattachments",
        singular: "volumeattachment",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: &["status"],
        roundtrip: roundtrip::<storage::VolumeAttachment>,
        custom: None,
    },
    ResourceDef {
        group: "storage.k8s.io",
        version: "v1",
        kind: "CSIStorageCapacity",
        plural: "csistoragecapacities",
        singular: "csistoragecapacity",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<storage::CSIStorageCapacity>,
        custom: None,
    },
    ResourceDef {
        group: "node.k8s.io",
        version: "v1",
        kind: "RuntimeClass",
        plural: "runtimeclasses",
        singular: "runtimeclass",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<node::RuntimeClass>,
        custom: None,
    },
    ResourceDef {
        group: "discovery.k8s.io",
        version: "v1",
        kind: "EndpointSlice",
        plural: "endpointslices",
        singular: "endpointslice",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<discovery::EndpointSlice>,
        custom: None,
    },
    ResourceDef {
        group: "networking.k8s.io",
        version: "v1",
        kind: "Ingress",
        plural: "ingresses",
        singular: "ingress",
        namespaced: true,
        short_names: &["ing"],
        categories: NONE,
        subresources: &["status"],
        roundtrip: roundtrip::<k8s_openapi::api::networking::v1::Ingress>,
        custom: None,
    },
    ResourceDef {
        group: "networking.k8s.io",
        version: "v1",
        kind: "IngressClass",
        plural: "ingressclasses",
        singular: "ingressclass",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<k8s_openapi::api::networking::v1::IngressClass>,
        custom: None,
    },
    ResourceDef {
        group: "apiregistration.k8s.io",
        version: "v1",
        kind: "APIService",
        plural: "apiservices",
        singular: "apiservice",
        namespaced: false,
        short_names: NONE,
        categories: &["api-extensions"],
        subresources: &["status"],
        roundtrip: roundtrip::<APIService>,
        custom: None,
    },
    ResourceDef {
        group: "networking.k8s.io",
        version: "v1",
        kind: "NetworkPolicy",
        plural: "networkpolicies",
        singular: "networkpolicy",
        namespaced: true,
        short_names: &["netpol"],
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<NetworkPolicy>,
        custom: None,
    },
    ResourceDef {
        group: "coordination.k8s.io",
        version: "v1",
        kind: "Lease",
        plural: "leases",
        singular: "lease",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<coordination::Lease>,
        custom: None,
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "Role",
        plural: "roles",
        singular: "role",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<rbac::Role>,
        custom: None,
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRole",
        plural: "clusterroles",
        singular: "clusterrole",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<rbac::ClusterRole>,
        custom: None,
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "RoleBinding",
        plural: "rolebindings",
        singular: "rolebinding",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<rbac::RoleBinding>,
        custom: None,
    },
    ResourceDef {
        group: "rbac.authorization.k8s.io",
        version: "v1",
        kind: "ClusterRoleBinding",
        plural: "clusterrolebindings",
        singular: "clusterrolebinding",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<rbac::ClusterRoleBinding>,
        custom: None,
    },
    ResourceDef {
        group: "apiextensions.k8s.io",
        version: "v1",
        kind: "CustomResourceDefinition",
        plural: "customresourcedefinitions",
        singular: "customresourcedefinition",
        namespaced: false,
        short_names: &["crd", "crds"],
        categories: &["api-extensions"],
        subresources: &["status"],
        roundtrip: roundtrip::<apiextensions::CustomResourceDefinition>,
        custom: None,
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "TokenReview",
        plural: "tokenreviews",
        singular: "tokenreview",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<k8s_openapi::api::authentication::v1::TokenReview>,
        custom: None,
    },
    ResourceDef {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingWebhookConfiguration",
        plural: "validatingwebhookconfigurations",
        singular: "validatingwebhookconfiguration",
        namespaced: false,
        short_names: NONE,
        categories: &["api-extensions"],
        subresources: NONE,
        roundtrip: roundtrip::<admissionregistration::ValidatingWebhookConfiguration>,
        custom: None,
    },
    ResourceDef {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "MutatingWebhookConfiguration",
        plural: "mutatingwebhookconfigurations",
        singular: "mutatingwebhookconfiguration",
        namespaced: false,
        short_names: NONE,
        categories: &["api-extensions"],
        subresources: NONE,
        roundtrip: roundtrip::<admissionregistration::MutatingWebhookConfiguration>,
        custom: None,
    },
    ResourceDef {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingAdmissionPolicy",
        plural: "validatingadmissionpolicies",
        singular: "validatingadmissionpolicy",
        namespaced: false,
        short_names: NONE,
        categories: &["api-extensions"],
        subresources: &["status"],
        roundtrip: roundtrip::<admissionregistration::ValidatingAdmissionPolicy>,
        custom: None,
    },
    ResourceDef {
        group: "admissionregistration.k8s.io",
        version: "v1",
        kind: "ValidatingAdmissionPolicyBinding",
        plural: "validatingadmissionpolicybindings",
        singular: "validatingadmissionpolicybinding",
        namespaced: false,
        short_names: NONE,
        categories: &["api-extensions"],
        subresources: NONE,
        roundtrip: roundtrip::<admissionregistration::ValidatingAdmissionPolicyBinding>,
        custom: None,
    },
    ResourceDef {
        group: "authentication.k8s.io",
        version: "v1",
        kind: "SelfSubjectReview",
        plural: "selfsubjectreviews",
        singular: "selfsubjectreview",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<authn::SelfSubjectReview>,
        custom: None,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectAccessReview",
        plural: "selfsubjectaccessreviews",
        singular: "selfsubjectaccessreview",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<authz::SelfSubjectAccessReview>,
        custom: None,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SubjectAccessReview",
        plural: "subjectaccessreviews",
        singular: "subjectaccessreview",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<authz::SubjectAccessReview>,
        custom: None,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "LocalSubjectAccessReview",
        plural: "localsubjectaccessreviews",
        singular: "localsubjectaccessreview",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<authz::LocalSubjectAccessReview>,
        custom: None,
    },
    ResourceDef {
        group: "authorization.k8s.io",
        version: "v1",
        kind: "SelfSubjectRulesReview",
        plural: "selfsubjectrulesreviews",
        singular: "selfsubjectrulesreview",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<authz::SelfSubjectRulesReview>,
        custom: None,
    },
    ResourceDef {
        group: super::metrics::GROUP,
        version: super::metrics::VERSION,
        kind: "NodeMetrics",
        plural: "nodes",
        singular: "nodemetrics",
        namespaced: false,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<super::metrics::NodeMetrics>,
        custom: None,
    },
    ResourceDef {
        group: super::metrics::GROUP,
        version: super::metrics::VERSION,
        kind: "PodMetrics",
        plural: "pods",
        singular: "podmetrics",
        namespaced: true,
        short_names: NONE,
        categories: NONE,
        subresources: NONE,
        roundtrip: roundtrip::<super::metrics::PodMetrics>,
        custom: None,
    },
];

/// The custom objects' "typed form": the object itself (its schema prunes it, in the
/// registry's custom-resource strategy).
pub fn untyped(v: &Value) -> Result<Value, serde_json::Error> {
    Ok(v.clone())
}

/// Every resource the server serves at one moment: the built-in kinds and the custom
/// resources of the established CustomResourceDefinitions. A snapshot: it does not
/// change while a request uses it.
#[derive(Debug)]
pub struct Resources {
    defs: Vec<&'static ResourceDef>,
    /// Bumped on every change of the custom resources (discovery and OpenAPI caches
    /// compare it).
    pub generation: u64,
}

impl Resources {
    /// Every served resource, built-in kinds first.
    pub fn iter(&self) -> impl Iterator<Item = &'static ResourceDef> + '_ {
        self.defs.iter().copied()
    }

    /// The resource served at `group`/`version` under `plural`.
    pub fn by_plural(
        &self,
        group: &str,
        version: &str,
        plural: &str,
    ) -> Option<&'static ResourceDef> {
        self.iter()
            .find(|r| r.group == group && r.version == version && r.plural == plural)
    }

    /// The resource of a kind in an apiVersion (`v1`, `apps/v1`, `stable.example.com/v1`).
    pub fn by_kind(&self, api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
        let (group, version) = match api_version.split_once('/') {
            Some((g, v)) => (g, v),
            None => ("", api_version),
        };
        self.iter()
            .find(|r| r.kind == kind && r.group == group && r.version == version)
    }

    /// The API groups served, in discovery order (built-in groups first).
    pub fn groups(&self) -> Vec<&'static str> {
        let mut out: Vec<&'static str> = Vec::new();
        for r in self.iter() {
            if !r.group.is_empty() && !out.contains(&r.group) {
                out.push(r.group);
            }
        }
        out
    }

    /// Whether `group`/`version` is served.
    pub fn serves(&self, group: &str, version: &str) -> bool {
        self.iter()
            .any(|r| r.group == group && r.version == version)
    }
}

/// The served resources, swapped as a whole when CustomResourceDefinitions change.
#[derive(Debug)]
pub struct Catalog {
    current: RwLock<Arc<Resources>>,
}

impl Default for Catalog {
    fn default() -> Catalog {
        Catalog::new()
    }
}

impl Catalog {
    /// The built-in kinds only.
    pub fn new() -> Catalog {
        Catalog {
            current: RwLock::new(Arc::new(Resources {
                defs: RESOURCES.iter().collect(),
                generation: 0,
            })),
        }
    }

    /// What is served now.
    pub fn snapshot(&self) -> Arc<Resources> {
        self.current
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// Serves the built-in kinds and `custom` from now on.
    pub fn set_custom(&self, custom: Vec<&'static ResourceDef>) {
        let mut current = self
            .current
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let defs = RESOURCES.iter().chain(custom).collect();
        *current = Arc::new(Resources {
            defs,
            generation: current.generation + 1,
        });
    }
}

/// The built-in resource served at `group`/`version` under `plural`.
pub fn by_plural(group: &str, version: &str, plural: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.group == group && r.version == version && r.plural == plural)
}

/// The built-in resource of a kind in an apiVersion (`v1`, `apps/v1`).
pub fn by_kind(api_version: &str, kind: &str) -> Option<&'static ResourceDef> {
    RESOURCES
        .iter()
        .find(|r| r.kind == kind && r.api_version() == api_version)
}

/// The API groups served, with their versions, in discovery order.
pub fn groups() -> Vec<&'static str> {
    let mut out: Vec<&'static str> = Vec::new();
    for r in RESOURCES {
        if !r.group.is_empty() && !out.contains(&r.group) {
            out.push(r.group);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_separate_namespaces_and_scopes() {
        let pods = by_plural("", "v1", "pods").unwrap();
        assert_eq!(pods.key(Some("default"), "a"), "/core/pods/default/a");
        assert_eq!(pods.list_prefix(Some("default")), "/core/pods/default/");
        assert_eq!(pods.list_prefix(None), "/core/pods/");
        let nodes = by_plural("", "v1", "nodes").unwrap();
        assert_eq!(nodes.key(Some("ignored"), "n1"), "/core/nodes/n1");
        let events = by_plural("events.k8s.io", "v1", "events").unwrap();
        assert_eq!(events.key(Some("ns"), "e"), "/core/events/ns/e");
        let deploy = by_kind("apps/v1", "Deployment").unwrap();
        assert_eq!(deploy.key(Some("x"), "web"), "/apps/deployments/x/web");
    }

    #[test]
    fn roundtrip_drops_unknown_fields_and_rejects_wrong_types() {
        let pods = by_plural("", "v1", "pods").unwrap();
        let out = (pods.roundtrip)(&json!({
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "a", "bogus": 1},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]}
        }))
        .unwrap();
        assert!(out["metadata"].get("bogus").is_none());
        assert_eq!(out["spec"]["containers"][0]["image"], "busybox");
        let bad = (pods.roundtrip)(&json!({"metadata": {"name": 5}}));
        assert!(bad.is_err());
    }
}
