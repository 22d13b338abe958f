//! The built-in `PodSecurity` validating admission plugin (upstream's
//! `plugin/pkg/admission/security/podsecurity` over `k8s.io/pod-security-admission`'s
//! `Admission`): pods are judged against their namespace's enforce, audit and warn
//! levels; workload templates are warned and audited, never refused; a namespace's labels
//! are validated, and a stricter enforce level is tried on the pods already there.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use super::Operation;
use crate::api::pod_security::{
    self as pss, evaluate, forbidden_detail, has_pod_spec, Level, LevelVersion, Policy,
};
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;

/// What the plugin reads of the cluster (the registry's cache).
pub trait Cluster {
    /// A namespace's labels, `None` when it does not exist.
    fn namespace_labels(&self, name: &str) -> Option<Map<String, Value>>;
    /// The pods of a namespace.
    fn pods(&self, namespace: &str) -> Vec<Value>;
}

/// Who and what the plugin lets through unjudged (upstream's
/// `PodSecurityConfiguration.exemptions`).
#[derive(Debug, Clone, Default)]
pub struct Exemptions {
    pub usernames: Vec<String>,
    pub namespaces: Vec<String>,
    pub runtime_classes: Vec<String>,
}

/// The plugin's configuration: the policy of unlabelled namespaces and the exemptions
/// (upstream's defaults: privileged everywhere, nothing exempt).
#[derive(Debug, Clone, Default)]
pub struct PodSecurity {
    pub defaults: Policy,
    pub exemptions: Exemptions,
}

/// One write as the plugin sees it.
pub struct Attributes<'a> {
    pub def: &'a ResourceDef,
    pub subresource: &'a str,
    pub operation: Operation,
    pub name: &'a str,
    /// The user the write is for; `None` for orc's own controllers (never exempt).
    pub username: Option<&'a str>,
    pub object: &'a Value,
    pub old_object: Option<&'a Value>,
}

/// The plugin's answer: a refusal, if any; the warnings of an admitted write; the
/// audit annotations either way (keys already prefixed `pod-security.kubernetes.io/`).
#[derive(Debug, Default)]
pub struct Outcome {
    pub refusal: Option<ApiError>,
    pub warnings: Vec<String>,
    pub audit_annotations: BTreeMap<String, String>,
}

impl Outcome {
    fn refused(error: ApiError) -> Outcome {
        Outcome {
            refusal: Some(error),
            ..Outcome::default()
        }
    }

    fn annotate(&mut self, key: &str, value: impl Into<String>) {
        self.audit_annotations
            .insert(format!("{}{key}", pss::LABEL_PREFIX), value.into());
    }
}

/// Pod subresources the plugin does not judge (upstream `ignoredPodSubresources`).
const IGNORED_POD_SUBRESOURCES: &[&str] = &[
    "exec",
    "attach",
    "binding",
    "eviction",
    "log",
    "portforward",
    "proxy",
    "status",
];

impl PodSecurity {
    /// Whether writes of `def` concern the plugin at all.
    pub fn applies_to(def: &ResourceDef) -> bool {
        (def.group.is_empty() && def.plural == "namespaces") || has_pod_spec(def.group, def.plural)
    }

    /// Judges one create or update.
    pub fn validate(&self, cluster: &dyn Cluster, attrs: &Attributes<'_>) -> Outcome {
        if !matches!(attrs.operation, Operation::Create | Operation::Update)
            || !Self::applies_to(attrs.def)
        {
            return Outcome::default();
        }
        match (attrs.def.group, attrs.def.plural) {
            ("", "namespaces") => self.validate_namespace(cluster, attrs),
            ("", "pods") => self.validate_pod(cluster, attrs),
            _ => self.validate_pod_controller(cluster, attrs),
        }
    }

    fn policy(
        &self,
        labels: &Map<String, Value>,
    ) -> (Policy, Vec<crate::api::validation::FieldError>) {
        pss::policy_to_evaluate(labels, self.defaults)
    }

    fn exempt_namespace(&self, ns: &str) -> bool {
        !ns.is_empty() && self.exemptions.namespaces.iter().any(|n| n == ns)
    }

    fn exempt_user(&self, user: Option<&str>) -> bool {
        user.is_some_and(|u| !u.is_empty() && self.exemptions.usernames.iter().any(|n| n == u))
    }

    fn exempt_runtime_class(&self, spec: &Value) -> bool {
        spec["runtimeClassName"].as_str().is_some_and(|rc| {
            !rc.is_empty() && self.exemptions.runtime_classes.iter().any(|n| n == rc)
        })
    }

    fn exemption(reason: &str) -> Outcome {
        let mut out = Outcome::default();
        out.annotate("exempt", reason);
        out
    }

    fn validate_namespace(&self, cluster: &dyn Cluster, attrs: &Attributes<'_>) -> Outcome {
        if !attrs.subresource.is_empty() {
            return Outcome::default();
        }
        let labels = labels_of(attrs.object);
        let (new_policy, new_errs) = self.policy(&labels);
        let invalid = |errs: &[crate::api::validation::FieldError]| {
            Outcome::refused(ApiError::invalid(attrs.def, attrs.name, errs))
        };
        let exempt_warning = |out: &mut Outcome| {
            if let Some(w) = self.exempt_namespace_warning(attrs.name, &new_policy, &labels) {
                out.warnings.push(w);
            }
        };
        match attrs.operation {
            Operation::Create => {
                if !new_errs.is_empty() {
                    return invalid(&new_errs);
                }
                let mut out = Outcome::default();
                if self.exempt_namespace(attrs.name) {
                    exempt_warning(&mut out);
                }
                out
            }
            _ => {
                let old_labels = attrs.old_object.map(labels_of).unwrap_or_default();
                let (old_policy, old_errs) = self.policy(&old_labels);
                if !new_errs.is_empty() && (old_errs.is_empty() || new_errs != old_errs) {
                    return invalid(&new_errs);
                }
                let (new, old) = (new_policy.enforce, old_policy.enforce);
                if new == old
                    || new.level == Level::Privileged
                    || (new.version == old.version && new.level <= old.level)
                {
                    return Outcome::default();
                }
                let mut out = Outcome::default();
                if self.exempt_namespace(attrs.name) {
                    exempt_warning(&mut out);
                    return out;
                }
                let pods: Vec<Value> = cluster
                    .pods(attrs.name)
                    .into_iter()
                    .filter(|p| !self.exempt_runtime_class(&p["spec"]))
                    .collect();
                let refs: Vec<&Value> = pods.iter().collect();
                out.warnings = pss::evaluate_pods_in_namespace(attrs.name, new, &refs);
                out
            }
        }
    }

    /// Upstream `exemptNamespaceWarning`: an exempt namespace's labels are ignored.
    fn exempt_namespace_warning(
        &self,
        ns: &str,
        policy: &Policy,
        labels: &Map<String, Value>,
    ) -> Option<String> {
        if policy.fully_privileged() || policy.equivalent(&self.defaults) {
            return None;
        }
        let has = |a: &str, b: &str| labels.contains_key(a) || labels.contains_key(b);
        let modes = [
            (
                "enforce",
                policy.enforce,
                pss::ENFORCE_LEVEL_LABEL,
                pss::ENFORCE_VERSION_LABEL,
            ),
            (
                "audit",
                policy.audit,
                pss::AUDIT_LEVEL_LABEL,
                pss::AUDIT_VERSION_LABEL,
            ),
            (
                "warn",
                policy.warn,
                pss::WARN_LEVEL_LABEL,
                pss::WARN_VERSION_LABEL,
            ),
        ];
        let parts: Vec<String> = modes
            .iter()
            .filter(|(_, lv, level, version)| lv.level != Level::Privileged && has(level, version))
            .map(|(mode, lv, _, _)| format!("{mode}={lv}"))
            .collect();
        Some(format!(
            "namespace {} is exempt from Pod Security, and the policy ({}) will be ignored",
            crate::api::validation::go_quote(ns),
            parts.join(", ")
        ))
    }

    fn validate_pod(&self, cluster: &dyn Cluster, attrs: &Attributes<'_>) -> Outcome {
        if IGNORED_POD_SUBRESOURCES.contains(&attrs.subresource) {
            return Outcome::default();
        }
        let ns = crate::api::object::namespace(attrs.object).unwrap_or("");
        if self.exempt_namespace(ns) {
            return Self::exemption("namespace");
        }
        if self.exempt_user(attrs.username) {
            return Self::exemption("user");
        }
        let Some(labels) = cluster.namespace_labels(ns) else {
            return Outcome::refused(ApiError::internal(format!(
                "Internal error occurred: failed to lookup namespace {}",
                crate::api::validation::go_quote(ns)
            )));
        };
        let (policy, errs) = self.policy(&labels);
        if errs.is_empty() && policy.fully_privileged() {
            let mut out = Outcome::default();
            out.annotate("enforce-policy", LevelVersion::PRIVILEGED.to_string());
            return out;
        }
        if let (Operation::Update, Some(old)) = (attrs.operation, attrs.old_object) {
            if !pss::is_significant_pod_update(attrs.object, old) {
                return Outcome::default();
            }
        }
        let o = attrs.object;
        self.evaluate_pod(&policy, &errs, &o["metadata"], &o["spec"], attrs, true)
    }

    fn validate_pod_controller(&self, cluster: &dyn Cluster, attrs: &Attributes<'_>) -> Outcome {
        if !attrs.subresource.is_empty() {
            return Outcome::default();
        }
        let ns = crate::api::object::namespace(attrs.object).unwrap_or("");
        if self.exempt_namespace(ns) {
            return Self::exemption("namespace");
        }
        if self.exempt_user(attrs.username) {
            return Self::exemption("user");
        }
        let Some(labels) = cluster.namespace_labels(ns) else {
            let mut out = Outcome::default();
            out.audit_annotations.insert(
                format!("{}error", pss::LABEL_PREFIX),
                format!(
                    "failed to lookup namespace {}",
                    crate::api::validation::go_quote(ns)
                ),
            );
            return out;
        };
        let (policy, errs) = self.policy(&labels);
        if errs.is_empty()
            && policy.warn.level == Level::Privileged
            && policy.audit.level == Level::Privileged
        {
            return Outcome::default();
        }
        let Some((meta, spec)) = pss::pod_spec_of(attrs.def.group, attrs.def.plural, attrs.object)
        else {
            return Outcome::default();
        };
        self.evaluate_pod(&policy, &errs, meta, spec, attrs, false)
    }

    /// Upstream `EvaluatePod`: enforce (for pods), audit and warn, each level evaluated
    /// once.
    fn evaluate_pod(
        &self,
        policy: &Policy,
        policy_errs: &[crate::api::validation::FieldError],
        meta: &Value,
        spec: &Value,
        attrs: &Attributes<'_>,
        enforce: bool,
    ) -> Outcome {
        if self.exempt_runtime_class(spec) {
            return Self::exemption("runtimeClass");
        }
        let mut out = Outcome::default();
        if !policy_errs.is_empty() {
            let messages: Vec<String> = policy_errs.iter().map(ToString::to_string).collect();
            out.annotate(
                "error",
                format!("Failed to parse policy: {}", aggregate(&messages)),
            );
        }
        let mut cache: Vec<(LevelVersion, Vec<pss::Forbidden>)> = Vec::new();
        let mut results = |lv: LevelVersion| -> Vec<pss::Forbidden> {
            if let Some((_, r)) = cache.iter().find(|(l, _)| *l == lv) {
                return r.clone();
            }
            let r = evaluate(lv, meta, spec);
            cache.push((lv, r.clone()));
            r
        };
        if enforce {
            out.annotate("enforce-policy", policy.enforce.to_string());
            let r = results(policy.enforce);
            if !r.is_empty() {
                out.refusal = Some(ApiError::admission_forbidden(
                    attrs.def,
                    attrs.name,
                    &format!(
                        "violates PodSecurity {}: {}",
                        crate::api::validation::go_quote(&policy.enforce.to_string()),
                        forbidden_detail(&r)
                    ),
                ));
            }
        }
        let audit = results(policy.audit);
        if !audit.is_empty() {
            out.annotate(
                "audit-violations",
                format!(
                    "would violate PodSecurity {}: {}",
                    crate::api::validation::go_quote(&policy.audit.to_string()),
                    forbidden_detail(&audit)
                ),
            );
        }
        if out.refusal.is_some() {
            return out;
        }
        let warn = results(policy.warn);
        if !warn.is_empty() {
            out.warnings.push(format!(
                "would violate PodSecurity {}: {}",
                crate::api::validation::go_quote(&policy.warn.to_string()),
                forbidden_detail(&warn)
            ));
        }
        out
    }
}

/// Upstream's `utilerrors.NewAggregate(...).Error()`: one error as is, several as
/// `[a, b]`.
fn aggregate(messages: &[String]) -> String {
    match messages {
        [one] => one.clone(),
        many => format!("[{}]", many.join(", ")),
    }
}

fn labels_of(obj: &Value) -> Map<String, Value> {
    obj["metadata"]["labels"]
        .as_object()
        .cloned()
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::resources;

    /// Namespaces by name with their labels, and their pods.
    struct FakeCluster {
        namespaces: Vec<(String, Value)>,
        pods: Vec<Value>,
    }

    impl Cluster for FakeCluster {
        fn namespace_labels(&self, name: &str) -> Option<Map<String, Value>> {
            self.namespaces
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, l)| l.as_object().cloned().unwrap_or_default())
        }

        fn pods(&self, namespace: &str) -> Vec<Value> {
            self.pods
                .iter()
                .filter(|p| p["metadata"]["namespace"] == namespace)
                .cloned()
                .collect()
        }
    }

    fn restricted_cluster() -> FakeCluster {
        FakeCluster {
            namespaces: vec![(
                "apps".into(),
                json!({"pod-security.kubernetes.io/enforce": "restricted"}),
            )],
            pods: vec![],
        }
    }

    fn def(plural: &str) -> &'static ResourceDef {
        let group = if plural == "deployments" { "apps" } else { "" };
        resources::by_plural(group, "v1", plural).expect("served")
    }

    fn plain_pod() -> Value {
        json!({"metadata": {"name": "web", "namespace": "apps"}, "spec": {"containers": [{"name": "nginx", "image": "nginx"}]}})
    }

    fn create<'a>(plural: &str, object: &'a Value, username: Option<&'a str>) -> Attributes<'a> {
        Attributes {
            def: def(plural),
            subresource: "",
            operation: Operation::Create,
            name: object["metadata"]["name"].as_str().unwrap_or(""),
            username,
            object,
            old_object: None,
        }
    }

    #[test]
    fn enforce_refuses_a_pod_and_records_the_policy_for_audit() {
        let pod = plain_pod();
        let out =
            PodSecurity::default().validate(&restricted_cluster(), &create("pods", &pod, None));
        let e = out.refusal.expect("refused");
        assert_eq!(e.code, 403);
        assert!(e
            .message
            .starts_with("pods \"web\" is forbidden: violates PodSecurity \"restricted:latest\": allowPrivilegeEscalation != false"));
        assert_eq!(
            out.audit_annotations["pod-security.kubernetes.io/enforce-policy"],
            "restricted:latest"
        );
    }

    #[test]
    fn a_deployment_is_warned_and_audited_never_refused() {
        let mut cluster = restricted_cluster();
        cluster.namespaces[0].1["pod-security.kubernetes.io/audit"] = json!("baseline");
        let deployment = json!({"metadata": {"name": "web", "namespace": "apps"}, "spec": {"template": {"spec": {"hostNetwork": true, "containers": [{"name": "nginx", "image": "nginx"}]}}}});
        let out =
            PodSecurity::default().validate(&cluster, &create("deployments", &deployment, None));
        assert!(out.refusal.is_none());
        assert_eq!(out.warnings.len(), 1);
        assert!(out.warnings[0].starts_with(
            "would violate PodSecurity \"restricted:latest\": host namespaces (hostNetwork=true), allowPrivilegeEscalation != false"
        ));
        assert_eq!(
            out.audit_annotations["pod-security.kubernetes.io/audit-violations"],
            "would violate PodSecurity \"baseline:latest\": host namespaces (hostNetwork=true)"
        );
    }

    #[test]
    fn exemptions_let_users_namespaces_and_runtime_classes_through() {
        let plugin = PodSecurity {
            defaults: Policy::default(),
            exemptions: Exemptions {
                usernames: vec!["ci".into()],
                namespaces: vec!["apps".into()],
                runtime_classes: vec!["kata".into()],
            },
        };
        let pod = plain_pod();
        let out = plugin.validate(&restricted_cluster(), &create("pods", &pod, Some("ci")));
        assert!(out.refusal.is_none());
        assert_eq!(
            out.audit_annotations["pod-security.kubernetes.io/exempt"],
            "namespace"
        );
        let plugin = PodSecurity {
            exemptions: Exemptions {
                namespaces: vec![],
                ..plugin.exemptions
            },
            ..plugin
        };
        let out = plugin.validate(&restricted_cluster(), &create("pods", &pod, Some("ci")));
        assert_eq!(
            out.audit_annotations["pod-security.kubernetes.io/exempt"],
            "user"
        );
        let mut kata = plain_pod();
        kata["spec"]["runtimeClassName"] = json!("kata");
        let out = plugin.validate(&restricted_cluster(), &create("pods", &kata, None));
        assert!(out.refusal.is_none());
        assert_eq!(
            out.audit_annotations["pod-security.kubernetes.io/exempt"],
            "runtimeClass"
        );
    }

    #[test]
    fn an_exempt_namespace_is_told_its_labels_are_ignored() {
        let plugin = PodSecurity {
            exemptions: Exemptions {
                namespaces: vec!["kube-system".into()],
                ..Exemptions::default()
            },
            ..PodSecurity::default()
        };
        let ns = json!({"metadata": {"name": "kube-system", "labels": {
            "pod-security.kubernetes.io/enforce": "baseline",
            "pod-security.kubernetes.io/warn": "restricted",
        }}});
        let out = plugin.validate(&restricted_cluster(), &create("namespaces", &ns, None));
        assert_eq!(
            out.warnings,
            ["namespace \"kube-system\" is exempt from Pod Security, and the policy (enforce=baseline:latest, warn=restricted:latest) will be ignored"]
        );
    }

    #[test]
    fn unchanged_images_and_status_writes_are_not_judged() {
        let pod = plain_pod();
        let mut relabelled = pod.clone();
        relabelled["metadata"]["labels"] = json!({"a": "b"});
        let update = Attributes {
            operation: Operation::Update,
            old_object: Some(&pod),
            ..create("pods", &relabelled, None)
        };
        let cluster = restricted_cluster();
        assert!(PodSecurity::default()
            .validate(&cluster, &update)
            .refusal
            .is_none());
        let status = Attributes {
            subresource: "status",
            ..create("pods", &pod, None)
        };
        assert!(PodSecurity::default()
            .validate(&cluster, &status)
            .refusal
            .is_none());
    }
}
