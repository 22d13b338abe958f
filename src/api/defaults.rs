//! Defaulting of API objects (Kubernetes JSON wire form) as upstream's defaulters and admission do.
//!
//! Every function here is idempotent: applying it twice gives the same object as once.
//! Like upstream, a string field set to `""` counts as unset. Things that need cluster
//! state (cluster IP and node port allocation, name generation, uid, timestamps) are
//! the API server's job, not this module's.

use base64::Engine;
use serde_json::{json, Map, Value};

use super::quantity::Quantity;

/// Upstream `DefaultTerminationGracePeriodSeconds`.
pub const DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS: i64 = 30;
/// Upstream `DefaultClientIPServiceAffinitySeconds` (3 hours).
pub const DEFAULT_CLIENT_IP_AFFINITY_SECONDS: i64 = 10800;
/// Upstream DefaultTolerationSeconds admission: how long pods stay on a lost node.
pub const DEFAULT_NOT_READY_TOLERATION_SECONDS: i64 = 300;

/// The `tolerationSeconds` DefaultTolerationSeconds admission gives pods for the
/// NoExecute taints of nodes that are not ready or unreachable (upstream's
/// `--default-not-ready-toleration-seconds`, `--default-unreachable-toleration-seconds`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DefaultTolerations {
    pub not_ready: i64,
    pub unreachable: i64,
}

impl DefaultTolerations {
    /// The seconds for the taint `key` (one of the two), else None.
    pub fn for_taint(&self, key: &str) -> Option<i64> {
        match key {
            TAINT_NODE_NOT_READY => Some(self.not_ready),
            TAINT_NODE_UNREACHABLE => Some(self.unreachable),
            _ => None,
        }
    }
}

impl Default for DefaultTolerations {
    /// Upstream's five minutes for both.
    fn default() -> DefaultTolerations {
        DefaultTolerations {
            not_ready: DEFAULT_NOT_READY_TOLERATION_SECONDS,
            unreachable: DEFAULT_NOT_READY_TOLERATION_SECONDS,
        }
    }
}
/// Default file mode (0644) for configMap, secret, downwardAPI and projected volumes.
pub const DEFAULT_VOLUME_MODE: i64 = 0o644;
pub const DEFAULT_SCHEDULER_NAME: &str = "default-scheduler";
pub const TAINT_NODE_NOT_READY: &str = "node.kubernetes.io/not-ready";
pub const TAINT_NODE_UNREACHABLE: &str = "node.kubernetes.io/unreachable";
/// The label every namespace carries with its own name.
pub const LABEL_METADATA_NAME: &str = "kubernetes.io/metadata.name";

/// Fills in upstream defaults for an object of `kind`; other kinds are left alone.
pub fn apply_defaults(kind: &str, obj: &mut Value) {
    match kind {
        "Pod" => pod_defaults(obj),
        "ReplicationController" => replication_controller_defaults(obj),
        "ReplicaSet" => replica_set_defaults(obj),
        "Deployment" => deployment_defaults(obj),
        "Job" => job_defaults(obj),
        "CronJob" => cron_job_defaults(obj),
        "StatefulSet" => stateful_set_defaults(obj),
        "DaemonSet" => daemon_set_defaults(obj),
        "Service" => service_defaults(obj),
        "Namespace" => namespace_defaults(obj),
        "Secret" => secret_defaults(obj),
        "Endpoints" => endpoints_defaults(obj),
        "NetworkPolicy" => network_policy_defaults(obj),
        "LimitRange" => super::limit_range::default_limit_range(obj),
        "HorizontalPodAutoscaler" => super::autoscaling::hpa_defaults(obj),
        "PriorityClass" => {
            if let Some(pc) = obj.as_object_mut() {
                default_to(pc, "preemptionPolicy", json!("PreemptLowerPriority"));
            }
        }
        "ValidatingWebhookConfiguration" | "MutatingWebhookConfiguration" => {
            webhook_configuration_defaults(kind, obj)
        }
        "APIService" => api_service_defaults(obj),
        _ => super::admission_policy::apply_defaults(kind, obj), // the admission policies
    }
}

/// Upstream kube-aggregator `SetDefaults_ServiceReference`: a service port defaults to 443.
fn api_service_defaults(obj: &mut Value) {
    if let Some(service) = obj["spec"]["service"].as_object_mut() {
        default_to(service, "port", json!(443));
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn is_unset(m: &Map<String, Value>, key: &str) -> bool {
    match m.get(key) {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => s.is_empty(),
        _ => false,
    }
}

/// Sets `key` to `value` when it is absent, null or "".
fn default_to(m: &mut Map<String, Value>, key: &str, value: Value) {
    if is_unset(m, key) {
        m.insert(key.to_string(), value);
    }
}

/// The object at `key`, created empty when absent or not an object.
fn child<'a>(m: &'a mut Map<String, Value>, key: &str) -> &'a mut Map<String, Value> {
    let slot = m.entry(key.to_string()).or_insert_with(|| json!({}));
    if !slot.is_object() {
        *slot = json!({});
    }
    slot.as_object_mut().expect("just made an object")
}

fn for_each_in(m: &mut Map<String, Value>, key: &str, mut f: impl FnMut(&mut Map<String, Value>)) {
    if let Some(items) = m.get_mut(key).and_then(Value::as_array_mut) {
        for item in items.iter_mut().filter_map(Value::as_object_mut) {
            f(item);
        }
    }
}

fn str_of<'a>(m: &'a Map<String, Value>, key: &str) -> &'a str {
    m.get(key).and_then(Value::as_str).unwrap_or("")
}

fn is_empty_map(v: Option<&Value>) -> bool {
    v.and_then(Value::as_object).is_none_or(Map::is_empty)
}

// ---------------------------------------------------------------------------
// Pods and pod templates
// ---------------------------------------------------------------------------

/// Defaults a PodTemplateSpec (`{metadata, spec}`) as upstream does for templates in
/// ReplicationControllers, ReplicaSets and Deployments.
pub fn pod_template_defaults(template: &mut Value) {
    if let Some(t) = template.as_object_mut() {
        pod_spec_defaults(child(t, "spec"));
    }
}

/// Upstream `SetDefaults_PodSpec` plus the container, probe and volume defaulters.
pub fn pod_spec_defaults(spec: &mut Map<String, Value>) {
    default_to(spec, "dnsPolicy", json!("ClusterFirst"));
    default_to(spec, "restartPolicy", json!("Always"));
    default_to(
        spec,
        "terminationGracePeriodSeconds",
        json!(DEFAULT_TERMINATION_GRACE_PERIOD_SECONDS),
    );
    default_to(spec, "securityContext", json!({}));
    default_to(spec, "schedulerName", json!(DEFAULT_SCHEDULER_NAME));
    let host_network = spec.get("hostNetwork").and_then(Value::as_bool) == Some(true);
    for list in ["initContainers", "containers", "ephemeralContainers"] {
        for_each_in(spec, list, |c| container_defaults(c, host_network));
    }
    for_each_in(spec, "volumes", volume_defaults);
}

fn container_defaults(c: &mut Map<String, Value>, host_network: bool) {
    if is_unset(c, "imagePullPolicy") {
        let policy = image_pull_policy_for(str_of(c, "image"));
        c.insert("imagePullPolicy".into(), json!(policy));
    }
    default_to(c, "terminationMessagePath", json!("/dev/termination-log"));
    default_to(c, "terminationMessagePolicy", json!("File"));
    default_to(c, "resources", json!({}));
    for_each_in(c, "ports", |p| {
        default_to(p, "protocol", json!("TCP"));
        if host_network {
            if let Some(port) = p.get("containerPort").cloned() {
                if p.get("hostPort").and_then(Value::as_i64).unwrap_or(0) == 0 {
                    p.insert("hostPort".into(), port);
                }
            }
        }
    });
    for probe in ["livenessProbe", "readinessProbe", "startupProbe"] {
        if let Some(p) = c.get_mut(probe).and_then(Value::as_object_mut) {
            probe_defaults(p);
        }
    }
    if let Some(lifecycle) = c.get_mut("lifecycle").and_then(Value::as_object_mut) {
        for hook in ["postStart", "preStop"] {
            if let Some(h) = lifecycle.get_mut(hook).and_then(Value::as_object_mut) {
                http_get_defaults(h);
            }
        }
    }
    for_each_in(c, "env", |e| {
        if let Some(field_ref) = e
            .get_mut("valueFrom")
            .and_then(|v| v.get_mut("fieldRef"))
            .and_then(Value::as_object_mut)
        {
            default_to(field_ref, "apiVersion", json!("v1"));
        }
    });
}

/// `Always` for `:latest` or untagged images without a digest, else `IfNotPresent`.
pub fn image_pull_policy_for(image: &str) -> &'static str {
    let (name, digest) = match image.split_once('@') {
        Some((n, _)) => (n, true),
        None => (image, false),
    };
    let last_component = name.rsplit('/').next().unwrap_or(name);
    let tag = last_component.rsplit_once(':').map(|(_, t)| t);
    match tag {
        Some("latest") => "Always",
        Some(_) => "IfNotPresent",
        None if digest => "IfNotPresent",
        None => "Always",
    }
}

fn probe_defaults(p: &mut Map<String, Value>) {
    default_to(p, "timeoutSeconds", json!(1));
    default_to(p, "periodSeconds", json!(10));
    default_to(p, "successThreshold", json!(1));
    default_to(p, "failureThreshold", json!(3));
    http_get_defaults(p);
}

/// Defaults the `httpGet` action of a probe or lifecycle handler.
fn http_get_defaults(handler: &mut Map<String, Value>) {
    if let Some(h) = handler.get_mut("httpGet").and_then(Value::as_object_mut) {
        default_to(h, "path", json!("/"));
        default_to(h, "scheme", json!("HTTP"));
    }
}

const VOLUME_SOURCES: [&str; 30] = [
    "emptyDir",
    "hostPath",
    "gitRepo",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "quobyte",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "azureDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "projected",
    "csi",
    "ephemeral",
    "image",
];

fn volume_defaults(v: &mut Map<String, Value>) {
    let has_source = VOLUME_SOURCES
        .iter()
        .any(|s| v.get(*s).is_some_and(|x| !x.is_null()));
    if !has_source {
        v.insert("emptyDir".into(), json!({}));
    }
    for source in ["secret", "configMap", "downwardAPI", "projected"] {
        if let Some(s) = v.get_mut(source).and_then(Value::as_object_mut) {
            default_to(s, "defaultMode", json!(DEFAULT_VOLUME_MODE));
        }
    }
    if let Some(s) = v.get_mut("hostPath").and_then(Value::as_object_mut) {
        if s.get("type").is_none_or(Value::is_null) {
            s.insert("type".into(), json!(""));
        }
    }
}

/// Defaults for a Pod object: the pod spec defaults plus what upstream's Pod defaulter
/// and admission plugins (ServiceAccount, Priority, DefaultTolerationSeconds) add, and
/// the initial status.
fn pod_defaults(obj: &mut Value) {
    let Some(pod) = obj.as_object_mut() else {
        return;
    };
    let spec = child(pod, "spec");
    pod_spec_defaults(spec);
    default_to(spec, "enableServiceLinks", json!(true));
    for list in ["initContainers", "containers"] {
        for_each_in(spec, list, requests_from_limits);
    }
    let account = [
        str_of(spec, "serviceAccountName"),
        str_of(spec, "serviceAccount"),
    ]
    .into_iter()
    .find(|s| !s.is_empty())
    .unwrap_or("default")
    .to_string();
    spec.insert("serviceAccountName".into(), json!(account));
    spec.insert("serviceAccount".into(), json!(account));
    pod_admission_defaults(spec);
    default_tolerations(spec);
    pod_status_defaults(obj);
}

/// The defaults of what a pod's create admission adds (the token volume comes complete;
/// the Priority admission may leave the preemption policy unset).
pub fn pod_admission_defaults(spec: &mut Map<String, Value>) {
    default_to(spec, "priority", json!(0));
    default_to(spec, "preemptionPolicy", json!("PreemptLowerPriority"));
}

/// A pod status's defaults (the only ones of a status write): `Pending`, the QoS class.
pub fn pod_status_defaults(obj: &mut Value) {
    let Some(pod) = obj.as_object_mut() else {
        return;
    };
    let status = child(pod, "status");
    default_to(status, "phase", json!("Pending"));
    if is_unset(status, "qosClass") {
        let qos = pod_qos_class(pod.get("spec").unwrap_or(&Value::Null));
        child(pod, "status").insert("qosClass".into(), json!(qos));
    }
}

/// Upstream `SetDefaults_Pod`: a resource with a limit but no request requests the limit.
fn requests_from_limits(c: &mut Map<String, Value>) {
    let Some(limits) = c
        .get("resources")
        .and_then(|r| r.get("limits"))
        .and_then(Value::as_object)
        .filter(|l| !l.is_empty())
        .cloned()
    else {
        return;
    };
    let requests = child(child(c, "resources"), "requests");
    for (name, q) in limits {
        requests.entry(name).or_insert(q);
    }
}

/// DefaultTolerationSeconds admission: tolerate not-ready/unreachable nodes for 5 minutes
/// unless the pod already tolerates those NoExecute taints.
fn default_tolerations(spec: &mut Map<String, Value>) {
    let existing: Vec<Value> = spec
        .get("tolerations")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let tolerates = |taint: &str| {
        existing.iter().any(|t| {
            let key = t.get("key").and_then(Value::as_str).unwrap_or("");
            let effect = t.get("effect").and_then(Value::as_str).unwrap_or("");
            (key == taint || key.is_empty()) && (effect == "NoExecute" || effect.is_empty())
        })
    };
    let mut added = Vec::new();
    for taint in [TAINT_NODE_NOT_READY, TAINT_NODE_UNREACHABLE] {
        if !tolerates(taint) {
            added.push(json!({
                "key": taint,
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": DEFAULT_NOT_READY_TOLERATION_SECONDS
            }));
        }
    }
    if !added.is_empty() {
        let mut all = existing;
        all.extend(added);
        spec.insert("tolerations".into(), Value::Array(all));
    }
}

/// Upstream `GetPodQOS` over a pod spec: `BestEffort` without cpu/memory requests or
/// limits, `Guaranteed` when every container limits both and requests equal limits,
/// else `Burstable`.
pub fn pod_qos_class(spec: &Value) -> &'static str {
    use std::collections::BTreeMap;
    let mut requests: BTreeMap<String, i128> = BTreeMap::new();
    let mut limits: BTreeMap<String, i128> = BTreeMap::new();
    let mut guaranteed = true;
    let containers = ["initContainers", "containers"]
        .into_iter()
        .flat_map(|k| spec.get(k).and_then(Value::as_array).into_iter().flatten());
    for c in containers {
        let resources = c.get("resources");
        let positive = |list: &str| -> Vec<(String, i128)> {
            resources
                .and_then(|r| r.get(list))
                .and_then(Value::as_object)
                .into_iter()
                .flatten()
                .filter(|(name, _)| name.as_str() == "cpu" || name.as_str() == "memory")
                .filter_map(|(name, q)| {
                    let millis = Quantity::from_json(q).ok()?.milli_value();
                    (millis > 0).then(|| (name.clone(), i128::from(millis)))
                })
                .collect()
        };
        for (name, v) in positive("requests") {
            *requests.entry(name).or_default() += v;
        }
        let found = positive("limits");
        if !(found.iter().any(|(n, _)| n == "cpu") && found.iter().any(|(n, _)| n == "memory")) {
            guaranteed = false;
        }
        for (name, v) in found {
            *limits.entry(name).or_default() += v;
        }
    }
    if requests.is_empty() && limits.is_empty() {
        return "BestEffort";
    }
    if guaranteed
        && requests.len() == limits.len()
        && requests.iter().all(|(n, r)| limits.get(n) == Some(r))
    {
        return "Guaranteed";
    }
    "Burstable"
}

// ---------------------------------------------------------------------------
// Workloads
// ---------------------------------------------------------------------------

fn replication_controller_defaults(obj: &mut Value) {
    let Some(rc) = obj.as_object_mut() else {
        return;
    };
    let template_labels = rc
        .get("spec")
        .and_then(|s| s.get("template"))
        .and_then(|t| t.get("metadata"))
        .and_then(|m| m.get("labels"))
        .filter(|l| l.is_object())
        .cloned();
    if let Some(labels) = template_labels {
        let spec = child(rc, "spec");
        if is_empty_map(spec.get("selector")) {
            spec.insert("selector".into(), labels.clone());
        }
        let meta = child(rc, "metadata");
        if is_empty_map(meta.get("labels")) {
            meta.insert("labels".into(), labels);
        }
    }
    let spec = child(rc, "spec");
    default_to(spec, "replicas", json!(1));
    if let Some(t) = spec.get_mut("template").filter(|t| t.is_object()) {
        pod_template_defaults(t);
    }
}

fn replica_set_defaults(obj: &mut Value) {
    let Some(rs) = obj.as_object_mut() else {
        return;
    };
    let spec = child(rs, "spec");
    default_to(spec, "replicas", json!(1));
    pod_template_defaults(spec.entry("template").or_insert_with(|| json!({})));
}

fn deployment_defaults(obj: &mut Value) {
    let Some(d) = obj.as_object_mut() else {
        return;
    };
    let spec = child(d, "spec");
    default_to(spec, "replicas", json!(1));
    let strategy = child(spec, "strategy");
    default_to(strategy, "type", json!("RollingUpdate"));
    if str_of(strategy, "type") == "RollingUpdate" {
        let rolling = child(strategy, "rollingUpdate");
        default_to(rolling, "maxUnavailable", json!("25%"));
        default_to(rolling, "maxSurge", json!("25%"));
    }
    default_to(spec, "revisionHistoryLimit", json!(10));
    default_to(spec, "progressDeadlineSeconds", json!(600));
    pod_template_defaults(spec.entry("template").or_insert_with(|| json!({})));
}

/// Upstream `SetDefaults_StatefulSet` (apps/v1, with StatefulSetAutoDeletePVC on and
/// MaxUnavailableStatefulSet off, as in 1.32: `maxUnavailable` is honoured when set but
/// not defaulted), and the PersistentVolumeClaim defaults of its claim templates.
fn stateful_set_defaults(obj: &mut Value) {
    let Some(set) = obj.as_object_mut() else {
        return;
    };
    let spec = child(set, "spec");
    default_to(spec, "podManagementPolicy", json!("OrderedReady"));
    let strategy = child(spec, "updateStrategy");
    if is_unset(strategy, "type") {
        strategy.insert("type".into(), json!("RollingUpdate"));
        if is_unset(strategy, "rollingUpdate") {
            strategy.insert("rollingUpdate".into(), json!({}));
        }
    }
    if str_of(strategy, "type") == "RollingUpdate" {
        if let Some(rolling) = strategy
            .get_mut("rollingUpdate")
            .and_then(Value::as_object_mut)
        {
            default_to(rolling, "partition", json!(0));
        }
    }
    let retention = child(spec, "persistentVolumeClaimRetentionPolicy");
    default_to(retention, "whenDeleted", json!("Retain"));
    default_to(retention, "whenScaled", json!("Retain"));
    default_to(spec, "replicas", json!(1));
    default_to(spec, "revisionHistoryLimit", json!(10));
    for_each_in(spec, "volumeClaimTemplates", |claim| {
        default_to(claim, "apiVersion", json!("v1"));
        default_to(claim, "kind", json!("PersistentVolumeClaim"));
        default_to(child(claim, "spec"), "volumeMode", json!("Filesystem"));
        default_to(child(claim, "status"), "phase", json!("Pending"));
    });
    pod_template_defaults(spec.entry("template").or_insert_with(|| json!({})));
}

// ---------------------------------------------------------------------------
// Jobs and CronJobs
// ---------------------------------------------------------------------------

/// Upstream `SetDefaults_Job`: one completion at a time unless told otherwise, six
/// retries, NonIndexed, not suspended, the Job's labels from its template.
fn job_defaults(obj: &mut Value) {
    let Some(job) = obj.as_object_mut() else {
        return;
    };
    let spec = child(job, "spec");
    if spec.get("completions").is_none_or(Value::is_null)
        && spec.get("parallelism").is_none_or(Value::is_null)
    {
        spec.insert("completions".into(), json!(1));
        spec.insert("parallelism".into(), json!(1));
    }
    default_to(spec, "parallelism", json!(1));
    let per_index = !spec.get("backoffLimitPerIndex").is_none_or(Value::is_null);
    default_to(
        spec,
        "backoffLimit",
        json!(if per_index { i32::MAX } else { 6 }),
    );
    default_to(spec, "completionMode", json!("NonIndexed"));
    default_to(spec, "suspend", json!(false));
    let has_failure_policy = !spec.get("podFailurePolicy").is_none_or(Value::is_null);
    if let Some(rules) = spec
        .get_mut("podFailurePolicy")
        .and_then(|p| p.get_mut("rules"))
        .and_then(Value::as_array_mut)
    {
        for rule in rules.iter_mut() {
            if let Some(patterns) = rule
                .get_mut("onPodConditions")
                .and_then(Value::as_array_mut)
            {
                for p in patterns.iter_mut().filter_map(Value::as_object_mut) {
                    default_to(p, "status", json!("True"));
                }
            }
        }
    }
    default_to(
        spec,
        "podReplacementPolicy",
        json!(if has_failure_policy {
            "Failed"
        } else {
            "TerminatingOrFailed"
        }),
    );
    let template = spec.entry("template").or_insert_with(|| json!({}));
    pod_template_defaults(template);
    let template_labels = template["metadata"]["labels"].clone();
    let meta = child(job, "metadata");
    if template_labels.is_object() && is_empty_map(meta.get("labels")) {
        meta.insert("labels".into(), template_labels);
    }
}

/// Upstream `SetDefaults_CronJob`, and the pod defaults of its job template (the Job
/// spec inside is defaulted when a Job is made from it).
fn cron_job_defaults(obj: &mut Value) {
    let Some(cj) = obj.as_object_mut() else {
        return;
    };
    let spec = child(cj, "spec");
    default_to(spec, "concurrencyPolicy", json!("Allow"));
    default_to(spec, "suspend", json!(false));
    default_to(spec, "successfulJobsHistoryLimit", json!(3));
    default_to(spec, "failedJobsHistoryLimit", json!(1));
    let job_spec = child(child(spec, "jobTemplate"), "spec");
    pod_template_defaults(job_spec.entry("template").or_insert_with(|| json!({})));
}

/// The annotation holding a DaemonSet's template generation (upstream
/// `appsv1.DeprecatedTemplateGeneration`); the DaemonSet strategy keeps it.
pub const DAEMON_SET_TEMPLATE_GENERATION: &str = "deprecated.daemonset.template.generation";

/// The template generation a DaemonSet records (None when absent or malformed).
pub fn daemon_set_template_generation(ds: &Value) -> Option<i64> {
    ds["metadata"]["annotations"][DAEMON_SET_TEMPLATE_GENERATION]
        .as_str()
        .and_then(|g| g.parse().ok())
}

/// Upstream `SetDefaults_DaemonSet` (apps/v1): RollingUpdate with maxUnavailable 1 and
/// maxSurge 0, a history of 10 revisions, and the pod template's defaults.
fn daemon_set_defaults(obj: &mut Value) {
    let Some(ds) = obj.as_object_mut() else {
        return;
    };
    let spec = child(ds, "spec");
    let strategy = child(spec, "updateStrategy");
    default_to(strategy, "type", json!("RollingUpdate"));
    if str_of(strategy, "type") == "RollingUpdate" {
        let rolling = child(strategy, "rollingUpdate");
        default_to(rolling, "maxUnavailable", json!(1));
        default_to(rolling, "maxSurge", json!(0));
    }
    default_to(spec, "revisionHistoryLimit", json!(10));
    pod_template_defaults(spec.entry("template").or_insert_with(|| json!({})));
}

// ---------------------------------------------------------------------------
// Services, Endpoints, Namespaces, Secrets
// ---------------------------------------------------------------------------

fn service_defaults(obj: &mut Value) {
    let Some(svc) = obj.as_object_mut() else {
        return;
    };
    let spec = child(svc, "spec");
    default_to(spec, "type", json!("ClusterIP"));
    default_to(spec, "sessionAffinity", json!("None"));
    match str_of(spec, "sessionAffinity") {
        "None" => {
            spec.remove("sessionAffinityConfig");
        }
        "ClientIP" => {
            let has_timeout = spec
                .get("sessionAffinityConfig")
                .and_then(|c| c.pointer("/clientIP/timeoutSeconds"))
                .is_some_and(|t| !t.is_null());
            if !has_timeout {
                spec.insert(
                    "sessionAffinityConfig".into(),
                    json!({"clientIP": {"timeoutSeconds": DEFAULT_CLIENT_IP_AFFINITY_SECONDS}}),
                );
            }
        }
        _ => {}
    }
    for_each_in(spec, "ports", |p| {
        default_to(p, "protocol", json!("TCP"));
        let target_unset = match p.get("targetPort") {
            None | Some(Value::Null) => true,
            Some(Value::Number(n)) => n.as_i64() == Some(0),
            Some(Value::String(s)) => s.is_empty(),
            _ => false,
        };
        if target_unset {
            if let Some(port) = p.get("port").cloned() {
                p.insert("targetPort".into(), port);
            }
        }
    });

    let svc_type = str_of(spec, "type").to_string();
    let has_external_ips = spec
        .get("externalIPs")
        .and_then(Value::as_array)
        .is_some_and(|a| !a.is_empty());
    let externally_accessible = svc_type == "NodePort"
        || svc_type == "LoadBalancer"
        || (svc_type == "ClusterIP" && has_external_ips);
    if externally_accessible {
        default_to(spec, "externalTrafficPolicy", json!("Cluster"));
    }
    if matches!(svc_type.as_str(), "ClusterIP" | "NodePort" | "LoadBalancer") {
        default_to(spec, "internalTrafficPolicy", json!("Cluster"));
    }
    if svc_type == "LoadBalancer" {
        default_to(spec, "allocateLoadBalancerNodePorts", json!(true));
    }
    if svc_type != "ExternalName" {
        let cluster_ip = str_of(spec, "clusterIP").to_string();
        let ips_unset = spec
            .get("clusterIPs")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if !cluster_ip.is_empty() && ips_unset {
            spec.insert("clusterIPs".into(), json!([cluster_ip]));
        }
        let selectorless_headless = cluster_ip == "None" && is_empty_map(spec.get("selector"));
        let policy = if selectorless_headless {
            "RequireDualStack"
        } else {
            "SingleStack"
        };
        default_to(spec, "ipFamilyPolicy", json!(policy));
        let families_unset = spec
            .get("ipFamilies")
            .and_then(Value::as_array)
            .is_none_or(Vec::is_empty);
        if families_unset {
            spec.insert("ipFamilies".into(), json!(["IPv4"]));
        }
    }
}

fn endpoints_defaults(obj: &mut Value) {
    let Some(ep) = obj.as_object_mut() else {
        return;
    };
    for_each_in(ep, "subsets", |subset| {
        for_each_in(subset, "ports", |p| default_to(p, "protocol", json!("TCP")));
    });
}

fn namespace_defaults(obj: &mut Value) {
    let Some(ns) = obj.as_object_mut() else {
        return;
    };
    let meta = child(ns, "metadata");
    let name = str_of(meta, "name").to_string();
    if !name.is_empty() {
        child(meta, "labels").insert(LABEL_METADATA_NAME.into(), json!(name));
    }
    default_to(child(ns, "status"), "phase", json!("Active"));
}

/// Secrets default to `Opaque`; write-only `stringData` is folded into `data` (base64),
/// overriding keys already there, as upstream's conversion does.
fn secret_defaults(obj: &mut Value) {
    let Some(secret) = obj.as_object_mut() else {
        return;
    };
    default_to(secret, "type", json!("Opaque"));
    let Some(Value::Object(string_data)) = secret.remove("stringData") else {
        return;
    };
    if string_data.is_empty() {
        return;
    }
    let data = child(secret, "data");
    for (k, v) in string_data {
        let raw = v.as_str().unwrap_or("");
        let encoded = base64::engine::general_purpose::STANDARD.encode(raw);
        data.insert(k, json!(encoded));
    }
}

/// Upstream admissionregistration v1 defaults: failurePolicy Fail, matchPolicy
/// Equivalent, empty selectors, timeoutSeconds 10, rule scope `*`, service port 443
/// and (mutating) reinvocationPolicy Never. sideEffects and admissionReviewVersions
/// have no default in v1.
fn webhook_configuration_defaults(kind: &str, obj: &mut Value) {
    let Some(hooks) = obj.get_mut("webhooks").and_then(Value::as_array_mut) else {
        return;
    };
    for hook in hooks.iter_mut().filter_map(Value::as_object_mut) {
        default_to(hook, "failurePolicy", json!("Fail"));
        default_to(hook, "matchPolicy", json!("Equivalent"));
        default_to(hook, "namespaceSelector", json!({}));
        default_to(hook, "objectSelector", json!({}));
        default_to(hook, "timeoutSeconds", json!(10));
        if kind == "MutatingWebhookConfiguration" {
            default_to(hook, "reinvocationPolicy", json!("Never"));
        }
        if let Some(rules) = hook.get_mut("rules").and_then(Value::as_array_mut) {
            for rule in rules.iter_mut().filter_map(Value::as_object_mut) {
                default_to(rule, "scope", json!("*"));
            }
        }
        if let Some(service) = hook
            .get_mut("clientConfig")
            .and_then(|c| c.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            default_to(service, "port", json!(443));
        }
    }
}

/// Upstream `SetDefaults_NetworkPolicy` and `SetDefaults_NetworkPolicyPort`: no
/// `policyTypes` means Ingress, plus Egress when egress rules exist; ports are TCP
/// unless they say otherwise; a missing `podSelector` is the empty one (all pods).
fn network_policy_defaults(obj: &mut Value) {
    let Some(policy) = obj.as_object_mut() else {
        return;
    };
    let spec = child(policy, "spec");
    if spec.get("podSelector").is_none_or(Value::is_null) {
        spec.insert("podSelector".into(), json!({}));
    }
    for direction in ["ingress", "egress"] {
        for rule in spec
            .get_mut(direction)
            .and_then(Value::as_array_mut)
            .into_iter()
            .flatten()
        {
            for port in rule
                .get_mut("ports")
                .and_then(Value::as_array_mut)
                .into_iter()
                .flatten()
            {
                if let Some(port) = port.as_object_mut() {
                    default_to(port, "protocol", json!("TCP"));
                }
            }
        }
    }
    let no_types = spec
        .get("policyTypes")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_types {
        let has_egress = spec
            .get("egress")
            .and_then(Value::as_array)
            .is_some_and(|rules| !rules.is_empty());
        let types = if has_egress {
            json!(["Ingress", "Egress"])
        } else {
            json!(["Ingress"])
        };
        spec.insert("policyTypes".into(), types);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn defaulted(kind: &str, mut obj: Value) -> Value {
        apply_defaults(kind, &mut obj);
        let mut again = obj.clone();
        apply_defaults(kind, &mut again);
        assert_eq!(again, obj, "defaulting {kind} is not idempotent");
        obj
    }

    fn simple_pod() -> Value {
        json!({"metadata": {"name": "p"}, "spec": {"containers": [{"name": "app", "image": "nginx"}]}})
    }

    #[test]
    fn pod_spec_defaults_match_upstream() {
        let p = defaulted("Pod", simple_pod());
        let spec = &p["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert_eq!(spec["dnsPolicy"], "ClusterFirst");
        assert_eq!(spec["schedulerName"], "default-scheduler");
        assert_eq!(spec["terminationGracePeriodSeconds"], 30);
        assert_eq!(spec["securityContext"], json!({}));
        assert_eq!(spec["enableServiceLinks"], true);
        assert_eq!(spec["serviceAccountName"], "default");
        assert_eq!(spec["serviceAccount"], "default");
        assert_eq!(spec["priority"], 0);
        assert_eq!(spec["preemptionPolicy"], "PreemptLowerPriority");
        assert_eq!(
            p["status"],
            json!({"phase": "Pending", "qosClass": "BestEffort"})
        );
    }

    #[test]
    fn pod_keeps_explicit_values() {
        let p = defaulted(
            "Pod",
            json!({"spec": {"restartPolicy": "Never", "dnsPolicy": "Default", "terminationGracePeriodSeconds": 0,
                "serviceAccount": "builder", "enableServiceLinks": false, "priority": 100,
                "containers": [{"name": "a", "image": "i:1", "imagePullPolicy": "Never"}]},
                "status": {"phase": "Running"}}),
        );
        let spec = &p["spec"];
        assert_eq!(spec["restartPolicy"], "Never");
        assert_eq!(spec["dnsPolicy"], "Default");
        assert_eq!(spec["terminationGracePeriodSeconds"], 0);
        assert_eq!(
            spec["serviceAccountName"], "builder",
            "deprecated field carries over"
        );
        assert_eq!(spec["enableServiceLinks"], false);
        assert_eq!(spec["priority"], 100);
        assert_eq!(spec["containers"][0]["imagePullPolicy"], "Never");
        assert_eq!(p["status"]["phase"], "Running");
    }

    #[test]
    fn empty_strings_count_as_unset() {
        let p = defaulted(
            "Pod",
            json!({"spec": {"restartPolicy": "", "containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 80, "protocol": ""}]}]}}),
        );
        assert_eq!(p["spec"]["restartPolicy"], "Always");
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["protocol"], "TCP");
    }

    #[test]
    fn image_pull_policy_follows_tag() {
        assert_eq!(image_pull_policy_for("nginx"), "Always");
        assert_eq!(image_pull_policy_for("nginx:latest"), "Always");
        assert_eq!(image_pull_policy_for("nginx:1.27"), "IfNotPresent");
        assert_eq!(image_pull_policy_for("localhost:5000/busybox"), "Always");
        assert_eq!(
            image_pull_policy_for("localhost:5000/busybox:1"),
            "IfNotPresent"
        );
        assert_eq!(image_pull_policy_for("busybox@sha256:abcd"), "IfNotPresent");
        assert_eq!(
            image_pull_policy_for("busybox:latest@sha256:abcd"),
            "Always"
        );
    }

    #[test]
    fn container_defaults_match_upstream() {
        let p = defaulted(
            "Pod",
            json!({"spec": {
            "initContainers": [{"name": "init", "image": "busybox:1"}],
            "containers": [{
                "name": "app", "image": "nginx:1",
                "ports": [{"containerPort": 80}, {"containerPort": 53, "protocol": "UDP"}],
                "livenessProbe": {"httpGet": {"port": 80}},
                "readinessProbe": {"tcpSocket": {"port": 80}, "periodSeconds": 5},
                "lifecycle": {"preStop": {"httpGet": {"port": 80, "path": "/stop"}}},
                "env": [{"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}, {"name": "X", "value": "1"}]
            }]}}),
        );
        let c = &p["spec"]["containers"][0];
        assert_eq!(c["imagePullPolicy"], "IfNotPresent");
        assert_eq!(c["terminationMessagePath"], "/dev/termination-log");
        assert_eq!(c["terminationMessagePolicy"], "File");
        assert_eq!(c["resources"], json!({}));
        assert_eq!(c["ports"][0]["protocol"], "TCP");
        assert_eq!(c["ports"][1]["protocol"], "UDP");
        assert!(c["ports"][0].get("hostPort").is_none());
        assert_eq!(
            c["livenessProbe"],
            json!({"httpGet": {"port": 80, "path": "/", "scheme": "HTTP"}, "timeoutSeconds": 1, "periodSeconds": 10, "successThreshold": 1, "failureThreshold": 3})
        );
        assert_eq!(c["readinessProbe"]["periodSeconds"], 5);
        assert_eq!(c["readinessProbe"]["timeoutSeconds"], 1);
        assert_eq!(
            c["lifecycle"]["preStop"]["httpGet"],
            json!({"port": 80, "path": "/stop", "scheme": "HTTP"})
        );
        assert_eq!(c["env"][0]["valueFrom"]["fieldRef"]["apiVersion"], "v1");
        assert_eq!(c["env"][1], json!({"name": "X", "value": "1"}));
        let init = &p["spec"]["initContainers"][0];
        assert_eq!(init["imagePullPolicy"], "IfNotPresent");
        assert_eq!(init["terminationMessagePolicy"], "File");
    }

    #[test]
    fn host_network_ports_default_host_port() {
        let p = defaulted(
            "Pod",
            json!({"spec": {"hostNetwork": true, "containers": [{"name": "a", "image": "i", "ports": [{"containerPort": 8080}]}]}}),
        );
        assert_eq!(p["spec"]["containers"][0]["ports"][0]["hostPort"], 8080);
    }

    #[test]
    fn requests_default_to_limits() {
        let p = defaulted(
            "Pod",
            json!({"spec": {"containers": [{"name": "a", "image": "i", "resources": {
                "limits": {"cpu": "500m", "memory": "128Mi"}, "requests": {"cpu": "100m"}}}]}}),
        );
        let res = &p["spec"]["containers"][0]["resources"];
        assert_eq!(res["requests"], json!({"cpu": "100m", "memory": "128Mi"}));
        assert_eq!(p["status"]["qosClass"], "Burstable");
    }

    #[test]
    fn templates_do_not_get_pod_only_defaults() {
        let mut t = json!({"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a", "image": "i", "resources": {"limits": {"cpu": "1"}}}]}});
        pod_template_defaults(&mut t);
        let spec = &t["spec"];
        assert_eq!(spec["restartPolicy"], "Always");
        assert!(spec.get("serviceAccountName").is_none());
        assert!(spec.get("tolerations").is_none());
        assert!(spec.get("enableServiceLinks").is_none());
        assert!(spec["containers"][0]["resources"].get("requests").is_none());
        assert!(t.get("status").is_none());
    }

    #[test]
    fn default_tolerations_added_unless_present() {
        let p = defaulted("Pod", simple_pod());
        assert_eq!(
            p["spec"]["tolerations"],
            json!([
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 300}
            ])
        );
        let mut own = simple_pod();
        own["spec"]["tolerations"] = json!([{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute", "tolerationSeconds": 10}]);
        let p = defaulted("Pod", own);
        let tols = p["spec"]["tolerations"].as_array().unwrap();
        assert_eq!(tols.len(), 2);
        assert_eq!(tols[0]["tolerationSeconds"], 10);
        assert_eq!(tols[1]["key"], "node.kubernetes.io/unreachable");
        let mut all = simple_pod();
        all["spec"]["tolerations"] = json!([{"operator": "Exists"}]);
        let p = defaulted("Pod", all);
        assert_eq!(
            p["spec"]["tolerations"],
            json!([{"operator": "Exists"}]),
            "tolerate-everything covers both"
        );
    }

    #[test]
    fn volume_defaults_match_upstream() {
        let p = defaulted(
            "Pod",
            json!({"spec": {"containers": [{"name": "a", "image": "i"}], "volumes": [
                {"name": "scratch"},
                {"name": "cfg", "configMap": {"name": "c"}},
                {"name": "sec", "secret": {"secretName": "s", "defaultMode": 256}},
                {"name": "host", "hostPath": {"path": "/var/log"}},
                {"name": "api", "downwardAPI": {"items": []}}
            ]}}),
        );
        let v = &p["spec"]["volumes"];
        assert_eq!(v[0], json!({"name": "scratch", "emptyDir": {}}));
        assert_eq!(v[1]["configMap"]["defaultMode"], 420);
        assert_eq!(v[2]["secret"]["defaultMode"], 256);
        assert_eq!(v[3]["hostPath"], json!({"path": "/var/log", "type": ""}));
        assert_eq!(v[4]["downwardAPI"]["defaultMode"], 420);
    }

    #[test]
    fn qos_classes() {
        let spec =
            |resources: Value| json!({"containers": [{"name": "a", "resources": resources}]});
        assert_eq!(pod_qos_class(&spec(json!({}))), "BestEffort");
        assert_eq!(
            pod_qos_class(&spec(json!({"requests": {"cpu": "0"}}))),
            "BestEffort"
        );
        assert_eq!(
            pod_qos_class(&spec(json!({"requests": {"cpu": "100m"}}))),
            "Burstable"
        );
        assert_eq!(
            pod_qos_class(&spec(
                json!({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1000m", "memory": "1Gi"}})
            )),
            "Guaranteed"
        );
        assert_eq!(
            pod_qos_class(&spec(
                json!({"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}})
            )),
            "Burstable"
        );
        assert_eq!(
            pod_qos_class(&spec(
                json!({"requests": {"cpu": "1"}, "limits": {"cpu": "1"}})
            )),
            "Burstable",
            "guaranteed needs both cpu and memory limits"
        );
        assert_eq!(
            pod_qos_class(&spec(json!({"requests": {"ephemeral-storage": "1Gi"}}))),
            "BestEffort",
            "only cpu and memory count"
        );
        let two = json!({"containers": [
            {"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}, "requests": {"cpu": "1", "memory": "1Gi"}}},
            {"name": "b"}
        ]});
        assert_eq!(pod_qos_class(&two), "Burstable");
        let p = defaulted(
            "Pod",
            json!({"spec": {"containers": [{"name": "a", "image": "i", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]}}),
        );
        assert_eq!(
            p["status"]["qosClass"], "Guaranteed",
            "requests defaulted from limits first"
        );
    }

    #[test]
    fn replication_controller_defaults() {
        let rc = defaulted(
            "ReplicationController",
            json!({"metadata": {"name": "rc"}, "spec": {"template": {"metadata": {"labels": {"app": "web"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}}}}),
        );
        assert_eq!(rc["spec"]["replicas"], 1);
        assert_eq!(rc["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(rc["metadata"]["labels"], json!({"app": "web"}));
        assert_eq!(rc["spec"]["template"]["spec"]["restartPolicy"], "Always");
        assert_eq!(
            rc["spec"]["template"]["spec"]["containers"][0]["imagePullPolicy"],
            "Always"
        );

        let explicit = defaulted(
            "ReplicationController",
            json!({"metadata": {"name": "rc", "labels": {"team": "x"}}, "spec": {"replicas": 0, "selector": {"app": "web"},
                "template": {"metadata": {"labels": {"app": "web", "v": "1"}}, "spec": {"containers": []}}}}),
        );
        assert_eq!(explicit["spec"]["replicas"], 0);
        assert_eq!(explicit["spec"]["selector"], json!({"app": "web"}));
        assert_eq!(explicit["metadata"]["labels"], json!({"team": "x"}));
    }

    #[test]
    fn replica_set_defaults() {
        let rs = defaulted(
            "ReplicaSet",
            json!({"spec": {"selector": {"matchLabels": {"a": "b"}}, "template": {"spec": {"containers": [{"name": "a", "image": "i"}]}}}}),
        );
        assert_eq!(rs["spec"]["replicas"], 1);
        assert!(rs["spec"].get("revisionHistoryLimit").is_none());
        assert_eq!(rs["spec"]["template"]["spec"]["dnsPolicy"], "ClusterFirst");
    }

    #[test]
    fn deployment_defaults() {
        let d = defaulted(
            "Deployment",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i:2"}]}}}}),
        );
        let spec = &d["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["progressDeadlineSeconds"], 600);
        assert_eq!(
            spec["strategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}})
        );
        assert_eq!(
            spec["template"]["spec"]["schedulerName"],
            "default-scheduler"
        );

        let recreate = defaulted(
            "Deployment",
            json!({"spec": {"strategy": {"type": "Recreate"}, "template": {"spec": {}}}}),
        );
        assert_eq!(recreate["spec"]["strategy"], json!({"type": "Recreate"}));
        let partial = defaulted(
            "Deployment",
            json!({"spec": {"strategy": {"rollingUpdate": {"maxSurge": 1}}}}),
        );
        assert_eq!(
            partial["spec"]["strategy"]["rollingUpdate"],
            json!({"maxSurge": 1, "maxUnavailable": "25%"})
        );
    }

    #[test]
    fn stateful_set_defaults() {
        let s = defaulted(
            "StatefulSet",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i:2"}]}},
                   "volumeClaimTemplates": [{"metadata": {"name": "data"},
                       "spec": {"accessModes": ["ReadWriteOnce"]}}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["replicas"], 1);
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(spec["podManagementPolicy"], "OrderedReady");
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 0}})
        );
        assert_eq!(
            spec["persistentVolumeClaimRetentionPolicy"],
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"})
        );
        let claim = &spec["volumeClaimTemplates"][0];
        assert_eq!(claim["apiVersion"], "v1");
        assert_eq!(claim["kind"], "PersistentVolumeClaim");
        assert_eq!(claim["spec"]["volumeMode"], "Filesystem");
        assert_eq!(claim["status"]["phase"], "Pending");
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");

        let on_delete = defaulted(
            "StatefulSet",
            json!({"spec": {"updateStrategy": {"type": "OnDelete"}, "template": {"spec": {}}}}),
        );
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
        let explicit = defaulted(
            "StatefulSet",
            json!({"spec": {"podManagementPolicy": "Parallel",
                   "updateStrategy": {"rollingUpdate": {"partition": 2, "maxUnavailable": 2}}}}),
        );
        assert_eq!(explicit["spec"]["podManagementPolicy"], "Parallel");
        assert_eq!(
            explicit["spec"]["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"partition": 2, "maxUnavailable": 2}})
        );
    }

    #[test]
    fn service_defaults_cluster_ip() {
        let s = defaulted(
            "Service",
            json!({"spec": {"selector": {"app": "web"}, "ports": [{"port": 80}, {"port": 53, "protocol": "UDP", "targetPort": "dns"}]}}),
        );
        let spec = &s["spec"];
        assert_eq!(spec["type"], "ClusterIP");
        assert_eq!(spec["sessionAffinity"], "None");
        assert_eq!(
            spec["ports"][0],
            json!({"port": 80, "protocol": "TCP", "targetPort": 80})
        );
        assert_eq!(spec["ports"][1]["targetPort"], "dns");
        assert_eq!(spec["ipFamilies"], json!(["IPv4"]));
        assert_eq!(spec["ipFamilyPolicy"], "SingleStack");
        assert_eq!(spec["internalTrafficPolicy"], "Cluster");
        assert!(spec.get("externalTrafficPolicy").is_none());
        assert!(spec.get("sessionAffinityConfig").is_none());
        assert!(
            spec.get("clusterIPs").is_none(),
            "allocation is the server's job"
        );
    }

    #[test]
    fn service_defaults_by_type() {
        let np = defaulted(
            "Service",
            json!({"spec": {"type": "NodePort", "ports": [{"port": 80, "targetPort": 0}]}}),
        );
        assert_eq!(np["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(np["spec"]["ports"][0]["targetPort"], 80);
        let lb = defaulted(
            "Service",
            json!({"spec": {"type": "LoadBalancer", "ports": [{"port": 80}]}}),
        );
        assert_eq!(lb["spec"]["externalTrafficPolicy"], "Cluster");
        assert_eq!(lb["spec"]["allocateLoadBalancerNodePorts"], true);
        let ext = defaulted(
            "Service",
            json!({"spec": {"type": "ExternalName", "externalName": "example.com"}}),
        );
        assert!(ext["spec"].get("ipFamilies").is_none());
        assert!(ext["spec"].get("ipFamilyPolicy").is_none());
        assert!(ext["spec"].get("internalTrafficPolicy").is_none());
        let external_ips = defaulted(
            "Service",
            json!({"spec": {"externalIPs": ["1.2.3.4"], "ports": [{"port": 80}]}}),
        );
        assert_eq!(external_ips["spec"]["externalTrafficPolicy"], "Cluster");
    }

    #[test]
    fn service_session_affinity_and_headless() {
        let s = defaulted(
            "Service",
            json!({"spec": {"sessionAffinity": "ClientIP", "ports": [{"port": 80}]}}),
        );
        assert_eq!(
            s["spec"]["sessionAffinityConfig"],
            json!({"clientIP": {"timeoutSeconds": 10800}})
        );
        let keep = defaulted(
            "Service",
            json!({"spec": {"sessionAffinity": "ClientIP", "sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}),
        );
        assert_eq!(
            keep["spec"]["sessionAffinityConfig"]["clientIP"]["timeoutSeconds"],
            60
        );
        let dropped = defaulted(
            "Service",
            json!({"spec": {"sessionAffinityConfig": {"clientIP": {"timeoutSeconds": 60}}}}),
        );
        assert!(dropped["spec"].get("sessionAffinityConfig").is_none());
        let headless = defaulted(
            "Service",
            json!({"spec": {"clusterIP": "None", "selector": {"app": "db"}}}),
        );
        assert_eq!(headless["spec"]["clusterIPs"], json!(["None"]));
        assert_eq!(headless["spec"]["ipFamilyPolicy"], "SingleStack");
        let selectorless = defaulted("Service", json!({"spec": {"clusterIP": "None"}}));
        assert_eq!(selectorless["spec"]["ipFamilyPolicy"], "RequireDualStack");
        let fixed = defaulted(
            "Service",
            json!({"spec": {"clusterIP": "10.43.0.10", "ports": [{"port": 53}]}}),
        );
        assert_eq!(fixed["spec"]["clusterIPs"], json!(["10.43.0.10"]));
    }

    #[test]
    fn namespace_defaults() {
        // The `kubernetes` finalizer is the strategy's on create, not a default: an
        // update that empties `spec.finalizers` leaves them empty.
        let ns = defaulted("Namespace", json!({"metadata": {"name": "team-a"}}));
        assert_eq!(ns["spec"]["finalizers"], Value::Null);
        assert_eq!(ns["status"]["phase"], "Active");
        assert_eq!(
            ns["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "team-a"
        );
        let terminating = defaulted(
            "Namespace",
            json!({"metadata": {"name": "x", "labels": {"kubernetes.io/metadata.name": "wrong"}}, "spec": {"finalizers": []}, "status": {"phase": "Terminating"}}),
        );
        assert_eq!(terminating["spec"]["finalizers"], json!([]));
        assert_eq!(terminating["status"]["phase"], "Terminating");
        assert_eq!(
            terminating["metadata"]["labels"]["kubernetes.io/metadata.name"],
            "x"
        );
    }

    #[test]
    fn secret_defaults() {
        let s = defaulted(
            "Secret",
            json!({"metadata": {"name": "s"}, "data": {"a": "eA==", "b": "eA=="}, "stringData": {"b": "hello", "c": ""}}),
        );
        assert_eq!(s["type"], "Opaque");
        assert_eq!(s["data"], json!({"a": "eA==", "b": "aGVsbG8=", "c": ""}));
        assert!(s.get("stringData").is_none());
        let tls = defaulted("Secret", json!({"type": "kubernetes.io/tls"}));
        assert_eq!(tls["type"], "kubernetes.io/tls");
    }

    #[test]
    fn endpoints_ports_default_tcp() {
        let e = defaulted(
            "Endpoints",
            json!({"subsets": [{"addresses": [{"ip": "10.0.0.1"}], "ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}]}),
        );
        assert_eq!(e["subsets"][0]["ports"][0]["protocol"], "TCP");
        assert_eq!(e["subsets"][0]["ports"][1]["protocol"], "UDP");
    }

    #[test]
    fn other_kinds_are_untouched() {
        for kind in [
            "Node",
            "Event",
            "ConfigMap",
            "ServiceAccount",
            "Lease",
            "Widget",
        ] {
            let obj = json!({"metadata": {"name": "x"}, "spec": {}});
            assert_eq!(defaulted(kind, obj.clone()), obj, "{kind}");
        }
    }

    #[test]
    fn network_policy_types_and_port_protocols_default_as_upstream() {
        let ingress_only = defaulted(
            "NetworkPolicy",
            json!({"spec": {"ingress": [{"ports": [{"port": 80}, {"port": 53, "protocol": "UDP"}]}]}}),
        );
        assert_eq!(ingress_only["spec"]["policyTypes"], json!(["Ingress"]));
        assert_eq!(ingress_only["spec"]["podSelector"], json!({}));
        assert_eq!(
            ingress_only["spec"]["ingress"][0]["ports"][0]["protocol"],
            "TCP"
        );
        assert_eq!(
            ingress_only["spec"]["ingress"][0]["ports"][1]["protocol"],
            "UDP"
        );
        let with_egress = defaulted(
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}, "egress": [{}]}}),
        );
        assert_eq!(
            with_egress["spec"]["policyTypes"],
            json!(["Ingress", "Egress"])
        );
        let explicit = defaulted(
            "NetworkPolicy",
            json!({"spec": {"podSelector": {}, "policyTypes": ["Egress"]}}),
        );
        assert_eq!(explicit["spec"]["policyTypes"], json!(["Egress"]));
    }

    #[test]
    fn defaulted_objects_pass_validation() {
        use crate::api::validation::validate;
        let cases = [
            ("Pod", simple_pod()),
            (
                "Deployment",
                json!({"metadata": {"name": "d"}, "spec": {"selector": {"matchLabels": {"app": "a"}},
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}}}}),
            ),
            (
                "ReplicationController",
                json!({"metadata": {"name": "rc"}, "spec": {
                "template": {"metadata": {"labels": {"app": "a"}}, "spec": {"containers": [{"name": "a", "image": "i"}]}}}}),
            ),
            (
                "Service",
                json!({"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}),
            ),
            ("Namespace", json!({"metadata": {"name": "ns"}})),
            (
                "Secret",
                json!({"metadata": {"name": "s"}, "stringData": {"k": "v"}}),
            ),
        ];
        for (kind, obj) in cases {
            let obj = defaulted(kind, obj);
            let errs = validate(kind, &obj, None);
            assert!(errs.is_empty(), "{kind}: {errs:?}");
        }
    }

    #[test]
    fn webhook_configurations_get_upstreams_v1_defaults() {
        let mut cfg = json!({"webhooks": [{"name": "a.b.c", "sideEffects": "None",
            "clientConfig": {"service": {"namespace": "ns", "name": "svc"}},
            "rules": [{"operations": ["CREATE"]}]}]});
        apply_defaults("MutatingWebhookConfiguration", &mut cfg);
        let hook = &cfg["webhooks"][0];
        assert_eq!(hook["failurePolicy"], "Fail");
        assert_eq!(hook["matchPolicy"], "Equivalent");
        assert_eq!(hook["timeoutSeconds"], 10);
        assert_eq!(hook["reinvocationPolicy"], "Never");
        assert_eq!(hook["namespaceSelector"], json!({}));
        assert_eq!(hook["objectSelector"], json!({}));
        assert_eq!(hook["rules"][0]["scope"], "*");
        assert_eq!(hook["clientConfig"]["service"]["port"], 443);
        assert_eq!(hook["sideEffects"], "None");
        let mut validating = json!({"webhooks": [{"name": "a.b.c"}]});
        apply_defaults("ValidatingWebhookConfiguration", &mut validating);
        assert!(validating["webhooks"][0]
            .get("reinvocationPolicy")
            .is_none());
    }

    #[test]
    fn daemon_set_defaults() {
        let ds = defaulted(
            "DaemonSet",
            json!({"spec": {"template": {"spec": {"containers": [{"name": "a", "image": "i:2"}]}}}}),
        );
        let spec = &ds["spec"];
        assert_eq!(spec["revisionHistoryLimit"], 10);
        assert_eq!(
            spec["updateStrategy"],
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}})
        );
        assert_eq!(spec["template"]["spec"]["restartPolicy"], "Always");
        let on_delete = defaulted(
            "DaemonSet",
            json!({"spec": {"updateStrategy": {"type": "OnDelete"}, "template": {"spec": {}}}}),
        );
        assert_eq!(
            on_delete["spec"]["updateStrategy"],
            json!({"type": "OnDelete"})
        );
        let surge = defaulted(
            "DaemonSet",
            json!({"spec": {"updateStrategy": {"rollingUpdate": {"maxSurge": "10%", "maxUnavailable": 0}}}}),
        );
        assert_eq!(
            surge["spec"]["updateStrategy"]["rollingUpdate"],
            json!({"maxSurge": "10%", "maxUnavailable": 0})
        );
    }
}
