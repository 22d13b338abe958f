//! Patch strategies and merge keys of the served kinds, as the `patchStrategy` /
//! `patchMergeKey` struct tags of k8s.io/api (core/v1, apps/v1, batch/v1, policy/v1,
//! autoscaling/v2, admissionregistration/v1, coordination/v1) declare them.
//!
//! The table is keyed by Go type and JSON field name, like upstream's struct-tag lookup, so
//! a pod template inside a ReplicationController, ReplicaSet or Deployment shares the
//! entries of a Pod. A field missing from the table has no strategy: its maps merge
//! recursively and its lists are replaced whole (e.g. `tolerations`, `envFrom`,
//! `resizePolicy`, `taints`, `readinessGates`, `subsets`, `containerStatuses`).

/// A Go type of the served API whose fields carry patch metadata.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// A type with no field carrying a strategy (maps merge, lists are replaced).
    Opaque,
    /// A root object whose only known part is `metadata` (ConfigMap, Secret, Endpoints,
    /// Event, Lease, Scale and any kind not in this table).
    Object,
    ObjectMeta,
    Pod,
    PodTemplateSpec,
    PodSpec,
    Container,
    PodStatus,
    Service,
    ServiceSpec,
    ServiceStatus,
    Node,
    NodeSpec,
    NodeStatus,
    Namespace,
    NamespaceStatus,
    ReplicationController,
    ReplicationControllerSpec,
    ReplicationControllerStatus,
    Deployment,
    DeploymentSpec,
    DeploymentStatus,
    ReplicaSet,
    ReplicaSetSpec,
    ReplicaSetStatus,
    StatefulSet,
    StatefulSetSpec,
    StatefulSetStatus,
    DaemonSet,
    DaemonSetSpec,
    DaemonSetStatus,
    ServiceAccount,
    PersistentVolumeClaim,
    PersistentVolumeClaimStatus,
    Job,
    JobSpec,
    JobStatus,
    CronJob,
    CronJobSpec,
    JobTemplateSpec,
    PodDisruptionBudget,
    PodDisruptionBudgetSpec,
    PodDisruptionBudgetStatus,
    HorizontalPodAutoscaler,
    HorizontalPodAutoscalerStatus,
    /// ValidatingWebhookConfiguration and MutatingWebhookConfiguration.
    WebhookConfiguration,
    /// ValidatingWebhook and MutatingWebhook.
    Webhook,
}

impl Ty {
    /// The root type of a Kubernetes kind; unknown kinds only know their `metadata`.
    pub(crate) fn of_kind(kind: &str) -> Ty {
        match kind {
            "Pod" => Ty::Pod,
            "Service" => Ty::Service,
            "Node" => Ty::Node,
            "Namespace" => Ty::Namespace,
            "ReplicationController" => Ty::ReplicationController,
            "Deployment" => Ty::Deployment,
            "ReplicaSet" => Ty::ReplicaSet,
            "StatefulSet" => Ty::StatefulSet,
            "DaemonSet" => Ty::DaemonSet,
            "ServiceAccount" => Ty::ServiceAccount,
            "PersistentVolumeClaim" => Ty::PersistentVolumeClaim,
            "Job" => Ty::Job,
            "CronJob" => Ty::CronJob,
            "PodDisruptionBudget" => Ty::PodDisruptionBudget,
            "HorizontalPodAutoscaler" => Ty::HorizontalPodAutoscaler,
            "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
                Ty::WebhookConfiguration
            }
            _ => Ty::Object,
        }
    }
}

/// How a field is patched (`patchStrategy` tag).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Strategy {
    /// `merge`: lists merge by key (maps) or as a set (primitives).
    pub merge: bool,
    /// `retainKeys`: a diff sends `$retainKeys` so that unlisted keys are cleared.
    pub retain_keys: bool,
    /// `replace`: the value is replaced whole, even a map.
    pub replace: bool,
}

const NONE: Strategy = Strategy {
    merge: false,
    retain_keys: false,
    replace: false,
};
const MERGE: Strategy = Strategy {
    merge: true,
    retain_keys: false,
    replace: false,
};
const RETAIN_KEYS: Strategy = Strategy {
    merge: false,
    retain_keys: true,
    replace: false,
};
const REPLACE: Strategy = Strategy {
    merge: false,
    retain_keys: false,
    replace: true,
};
const MERGE_RETAIN_KEYS: Strategy = Strategy {
    merge: true,
    retain_keys: true,
    replace: false,
};

/// Patch metadata of one field: its strategy, merge key and the type of its value (or of
/// its list items).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FieldMeta {
    pub strategy: Strategy,
    pub merge_key: Option<&'static str>,
    pub ty: Ty,
}

impl FieldMeta {
    const UNKNOWN: FieldMeta = FieldMeta {
        strategy: NONE,
        merge_key: None,
        ty: Ty::Opaque,
    };
}

struct Entry {
    owner: Ty,
    field: &'static str,
    meta: FieldMeta,
}

const fn field(owner: Ty, field: &'static str, ty: Ty) -> Entry {
    Entry {
        owner,
        field,
        meta: FieldMeta {
            strategy: NONE,
            merge_key: None,
            ty,
        },
    }
}

const fn keyed(
    owner: Ty,
    field: &'static str,
    strategy: Strategy,
    key: &'static str,
    ty: Ty,
) -> Entry {
    Entry {
        owner,
        field,
        meta: FieldMeta {
            strategy,
            merge_key: Some(key),
            ty,
        },
    }
}

const fn strategy(owner: Ty, field: &'static str, strategy: Strategy) -> Entry {
    Entry {
        owner,
        field,
        meta: FieldMeta {
            strategy,
            merge_key: None,
            ty: Ty::Opaque,
        },
    }
}

/// Every field of the served kinds that carries a patch strategy, plus the struct-typed
/// fields leading to them. Taken from the struct tags of k8s.io/api v0.32.
static FIELDS: &[Entry] = &[
    // metav1.ObjectMeta
    strategy(Ty::ObjectMeta, "finalizers", MERGE),
    keyed(Ty::ObjectMeta, "ownerReferences", MERGE, "uid", Ty::Opaque),
    // Roots
    field(Ty::Object, "metadata", Ty::ObjectMeta),
    field(Ty::Pod, "metadata", Ty::ObjectMeta),
    field(Ty::Pod, "spec", Ty::PodSpec),
    field(Ty::Pod, "status", Ty::PodStatus),
    field(Ty::Service, "metadata", Ty::ObjectMeta),
    field(Ty::Service, "spec", Ty::ServiceSpec),
    field(Ty::Service, "status", Ty::ServiceStatus),
    field(Ty::Node, "metadata", Ty::ObjectMeta),
    field(Ty::Node, "spec", Ty::NodeSpec),
    field(Ty::Node, "status", Ty::NodeStatus),
    field(Ty::Namespace, "metadata", Ty::ObjectMeta),
    field(Ty::Namespace, "status", Ty::NamespaceStatus),
    field(Ty::ReplicationController, "metadata", Ty::ObjectMeta),
    field(
        Ty::ReplicationController,
        "spec",
        Ty::ReplicationControllerSpec,
    ),
    field(
        Ty::ReplicationController,
        "status",
        Ty::ReplicationControllerStatus,
    ),
    field(Ty::Deployment, "metadata", Ty::ObjectMeta),
    field(Ty::Deployment, "spec", Ty::DeploymentSpec),
    field(Ty::Deployment, "status", Ty::DeploymentStatus),
    field(Ty::ReplicaSet, "metadata", Ty::ObjectMeta),
    field(Ty::ReplicaSet, "spec", Ty::ReplicaSetSpec),
    field(Ty::ReplicaSet, "status", Ty::ReplicaSetStatus),
    field(Ty::StatefulSet, "metadata", Ty::ObjectMeta),
    field(Ty::StatefulSet, "spec", Ty::StatefulSetSpec),
    field(Ty::StatefulSet, "status", Ty::StatefulSetStatus),
    field(Ty::DaemonSet, "metadata", Ty::ObjectMeta),
    field(Ty::DaemonSet, "spec", Ty::DaemonSetSpec),
    field(Ty::DaemonSet, "status", Ty::DaemonSetStatus),
    field(Ty::ServiceAccount, "metadata", Ty::ObjectMeta),
    // ServiceAccount.imagePullSecrets has no strategy (unlike PodSpec's).
    keyed(Ty::ServiceAccount, "secrets", MERGE, "name", Ty::Opaque),
    // core/v1 PodTemplateSpec, PodSpec, Container, PodStatus
    field(Ty::PodTemplateSpec, "metadata", Ty::ObjectMeta),
    field(Ty::PodTemplateSpec, "spec", Ty::PodSpec),
    keyed(
        Ty::PodSpec,
        "volumes",
        MERGE_RETAIN_KEYS,
        "name",
        Ty::Opaque,
    ),
    keyed(Ty::PodSpec, "initContainers", MERGE, "name", Ty::Container),
    keyed(Ty::PodSpec, "containers", MERGE, "name", Ty::Container),
    keyed(
        Ty::PodSpec,
        "ephemeralContainers",
        MERGE,
        "name",
        Ty::Container,
    ),
    keyed(Ty::PodSpec, "imagePullSecrets", MERGE, "name", Ty::Opaque),
    keyed(Ty::PodSpec, "hostAliases", MERGE, "ip", Ty::Opaque),
    keyed(
        Ty::PodSpec,
        "topologySpreadConstraints",
        MERGE,
        "topologyKey",
        Ty::Opaque,
    ),
    keyed(Ty::PodSpec, "schedulingGates", MERGE, "name", Ty::Opaque),
    keyed(
        Ty::PodSpec,
        "resourceClaims",
        MERGE_RETAIN_KEYS,
        "name",
        Ty::Opaque,
    ),
    keyed(Ty::Container, "ports", MERGE, "containerPort", Ty::Opaque),
    keyed(Ty::Container, "env", MERGE, "name", Ty::Opaque),
    keyed(
        Ty::Container,
        "volumeMounts",
        MERGE,
        "mountPath",
        Ty::Opaque,
    ),
    keyed(
        Ty::Container,
        "volumeDevices",
        MERGE,
        "devicePath",
        Ty::Opaque,
    ),
    keyed(Ty::PodStatus, "conditions", MERGE, "type", Ty::Opaque),
    keyed(Ty::PodStatus, "podIPs", MERGE, "ip", Ty::Opaque),
    keyed(Ty::PodStatus, "hostIPs", MERGE, "ip", Ty::Opaque),
    keyed(
        Ty::PodStatus,
        "resourceClaimStatuses",
        MERGE_RETAIN_KEYS,
        "name",
        Ty::Opaque,
    ),
    // core/v1 Service, Node, Namespace, ReplicationController
    keyed(Ty::ServiceSpec, "ports", MERGE, "port", Ty::Opaque),
    keyed(Ty::ServiceStatus, "conditions", MERGE, "type", Ty::Opaque),
    strategy(Ty::NodeSpec, "podCIDRs", MERGE),
    keyed(Ty::NodeStatus, "conditions", MERGE, "type", Ty::Opaque),
    keyed(Ty::NodeStatus, "addresses", MERGE, "type", Ty::Opaque),
    keyed(Ty::NamespaceStatus, "conditions", MERGE, "type", Ty::Opaque),
    field(
        Ty::ReplicationControllerSpec,
        "template",
        Ty::PodTemplateSpec,
    ),
    keyed(
        Ty::ReplicationControllerStatus,
        "conditions",
        MERGE,
        "type",
        Ty::Opaque,
    ),
    // apps/v1 Deployment, ReplicaSet
    field(Ty::DeploymentSpec, "template", Ty::PodTemplateSpec),
    strategy(Ty::DeploymentSpec, "strategy", RETAIN_KEYS),
    keyed(
        Ty::DeploymentStatus,
        "conditions",
        MERGE,
        "type",
        Ty::Opaque,
    ),
    field(Ty::ReplicaSetSpec, "template", Ty::PodTemplateSpec),
    keyed(
        Ty::ReplicaSetStatus,
        "conditions",
        MERGE,
        "type",
        Ty::Opaque,
    ),
    // apps/v1 StatefulSet
    field(Ty::StatefulSetSpec, "template", Ty::PodTemplateSpec),
    keyed(
        Ty::StatefulSetStatus,
        "conditions",
        MERGE,
        "type",
        Ty::Opaque,
    ),
    // apps/v1 DaemonSet
    field(Ty::DaemonSetSpec, "template", Ty::PodTemplateSpec),
    keyed(Ty::DaemonSetStatus, "conditions", MERGE, "type", Ty::Opaque),
    // core/v1 PersistentVolumeClaim
    field(Ty::PersistentVolumeClaim, "metadata", Ty::ObjectMeta),
    field(
        Ty::PersistentVolumeClaim,
        "status",
        Ty::PersistentVolumeClaimStatus,
    ),
    keyed(
        Ty::PersistentVolumeClaimStatus,
        "conditions",
        MERGE,
        "type",
        Ty::Opaque,
    ),
    // batch/v1 Job, CronJob
    field(Ty::Job, "metadata", Ty::ObjectMeta),
    field(Ty::Job, "spec", Ty::JobSpec),
    field(Ty::Job, "status", Ty::JobStatus),
    field(Ty::JobSpec, "template", Ty::PodTemplateSpec),
    keyed(Ty::JobStatus, "conditions", MERGE, "type", Ty::Opaque),
    field(Ty::CronJob, "metadata", Ty::ObjectMeta),
    field(Ty::CronJob, "spec", Ty::CronJobSpec),
    field(Ty::CronJobSpec, "jobTemplate", Ty::JobTemplateSpec),
    field(Ty::JobTemplateSpec, "metadata", Ty::ObjectMeta),
    field(Ty::JobTemplateSpec, "spec", Ty::JobSpec),
    // policy/v1 PodDisruptionBudget
    field(Ty::PodDisruptionBudget, "metadata", Ty::ObjectMeta),
    field(Ty::PodDisruptionBudget, "spec", Ty::PodDisruptionBudgetSpec),
    field(
        Ty::PodDisruptionBudget,
        "status",
        Ty::PodDisruptionBudgetStatus,
    ),
    strategy(Ty::PodDisruptionBudgetSpec, "selector", REPLACE),
    keyed(
        Ty::PodDisruptionBudgetStatus,
        "conditions",
        MERGE,
        "type",
        Ty::Opaque,
    ),
    // autoscaling/v2 HorizontalPodAutoscaler
    field(Ty::HorizontalPodAutoscaler, "metadata", Ty::ObjectMeta),
    field(
        Ty::HorizontalPodAutoscaler,
        "status",
        Ty::HorizontalPodAutoscalerStatus,
    ),
    keyed(
        Ty::HorizontalPodAutoscalerStatus,
        "conditions",
        MERGE,
        "type",
        Ty::Opaque,
    ),
    // admissionregistration/v1 Validating/MutatingWebhookConfiguration
    field(Ty::WebhookConfiguration, "metadata", Ty::ObjectMeta),
    keyed(
        Ty::WebhookConfiguration,
        "webhooks",
        MERGE,
        "name",
        Ty::Webhook,
    ),
    keyed(Ty::Webhook, "matchConditions", MERGE, "name", Ty::Opaque),
];

/// Patch metadata of `field` within `owner`; fields not in the table have none.
pub(crate) fn lookup(owner: Ty, field: &str) -> FieldMeta {
    FIELDS
        .iter()
        .find(|e| e.owner == owner && e.field == field)
        .map(|e| e.meta)
        .unwrap_or(FieldMeta::UNKNOWN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pod_template_in_every_workload_reaches_container_env() {
        for root in [
            Ty::ReplicationController,
            Ty::ReplicaSet,
            Ty::Deployment,
            Ty::StatefulSet,
            Ty::DaemonSet,
        ] {
            let spec = lookup(root, "spec").ty;
            let template = lookup(spec, "template").ty;
            let pod_spec = lookup(template, "spec").ty;
            let containers = lookup(pod_spec, "containers");
            assert_eq!(containers.merge_key, Some("name"));
            let env = lookup(containers.ty, "env");
            assert!(env.strategy.merge);
            assert_eq!(env.merge_key, Some("name"));
        }
    }

    #[test]
    fn job_and_cron_job_templates_reach_container_env() {
        let job_spec = lookup(Ty::of_kind("Job"), "spec").ty;
        let cron_spec = lookup(Ty::of_kind("CronJob"), "spec").ty;
        let cron_job_spec = lookup(lookup(cron_spec, "jobTemplate").ty, "spec").ty;
        for spec in [job_spec, cron_job_spec] {
            let pod_spec = lookup(lookup(spec, "template").ty, "spec").ty;
            let containers = lookup(pod_spec, "containers");
            assert_eq!(containers.merge_key, Some("name"));
            assert_eq!(lookup(containers.ty, "env").merge_key, Some("name"));
        }
        let status = lookup(Ty::Job, "status").ty;
        assert_eq!(lookup(status, "conditions").merge_key, Some("type"));
    }

    #[test]
    fn webhook_configurations_merge_webhooks_by_name() {
        for kind in [
            "ValidatingWebhookConfiguration",
            "MutatingWebhookConfiguration",
        ] {
            let webhooks = lookup(Ty::of_kind(kind), "webhooks");
            assert!(webhooks.strategy.merge, "{kind}");
            assert_eq!(webhooks.merge_key, Some("name"), "{kind}");
            let conditions = lookup(webhooks.ty, "matchConditions");
            assert_eq!(conditions.merge_key, Some("name"), "{kind}");
            assert_eq!(lookup(webhooks.ty, "rules"), FieldMeta::UNKNOWN);
        }
    }

    #[test]
    fn disruption_budget_selector_is_replaced_whole() {
        let spec = lookup(Ty::of_kind("PodDisruptionBudget"), "spec").ty;
        assert!(lookup(spec, "selector").strategy.replace);
        let pvc = lookup(Ty::of_kind("PersistentVolumeClaim"), "status").ty;
        assert_eq!(lookup(pvc, "conditions").merge_key, Some("type"));
        let hpa = lookup(Ty::of_kind("HorizontalPodAutoscaler"), "status").ty;
        assert_eq!(lookup(hpa, "conditions").merge_key, Some("type"));
    }

    #[test]
    fn lists_without_a_tag_have_no_strategy() {
        for (owner, name) in [
            (Ty::PodSpec, "tolerations"),
            (Ty::Container, "envFrom"),
            (Ty::Container, "resizePolicy"),
            (Ty::NodeSpec, "taints"),
            (Ty::ServiceAccount, "imagePullSecrets"),
        ] {
            assert_eq!(lookup(owner, name), FieldMeta::UNKNOWN, "{name}");
        }
    }

    #[test]
    fn unknown_kinds_know_only_metadata() {
        assert_eq!(Ty::of_kind("ConfigMap"), Ty::Object);
        assert_eq!(lookup(Ty::Object, "metadata").ty, Ty::ObjectMeta);
        assert!(lookup(Ty::ObjectMeta, "finalizers").strategy.merge);
        assert_eq!(lookup(Ty::Object, "data"), FieldMeta::UNKNOWN);
    }
}
