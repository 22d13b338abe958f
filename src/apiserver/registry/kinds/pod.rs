//! Pod rules: created Pending, the default not-ready/unreachable tolerations get the
//! configured eviction delay (upstream's DefaultTolerationSeconds admission), a delete
//! of a running pod bound to a node waits its grace period for the kubelet, and the
//! `binding` subresource assigns the pod to a node. New pods pass the ServiceAccount
//! admission (`pod_service_account`), the Priority admission (`priority_class`) and the
//! RuntimeClass admission (`runtime_class`).

use futures::future::BoxFuture;
use serde_json::{json, Value};

use super::{pod_service_account, priority_class, runtime_class};
use crate::api::defaults;
use crate::api::object;
use crate::api::resources::{self, Roundtrip};
use crate::api::selector;
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::api::validation::{self, FieldError, FieldErrorKind};
use crate::apiserver::registry::generic::field_error;
use crate::apiserver::registry::strategy::{keep_unwritten_part, Context, Strategy};
use crate::apiserver::registry::{set_condition, Registry, WriteOptions, Written};

/// Grace period of a pod that does not set `terminationGracePeriodSeconds`.
const DEFAULT_TERMINATION_GRACE_SECONDS: i64 = 30;

pub struct PodStrategy;

/// The field labels a field selector may name for this kind.
const SELECTABLE_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "spec.hostNetwork",
    "status.phase",
    "status.podIP",
    "status.podIPs",
    "status.nominatedNodeName",
];

impl Strategy for PodStrategy {
    fn returns_deleted_object(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::core::v1::Pod>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::POD
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        SELECTABLE_FIELDS
    }

    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "spec.hostNetwork" => selector::bool_field_value(obj, field),
            // The first of `status.podIPs`, else `status.podIP`.
            "status.podIP" | "status.podIPs" => {
                match obj.pointer("/status/podIPs/0/ip").and_then(Value::as_str) {
                    Some(ip) => ip.to_string(),
                    None => selector::field_value(obj, "status.podIP"),
                }
            }
            _ => selector::field_value(obj, field),
        }
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"phase": "Pending"});
        let own = toleration_keys(obj);
        let unset = |obj: &Value, key: &str| obj["spec"].get(key).is_none_or(Value::is_null);
        let (no_priority, no_policy) = (unset(obj, "priority"), unset(obj, "preemptionPolicy"));
        defaults::apply_defaults(cx.def.kind, obj);
        admit_default_tolerations(obj, &own, cx.default_tolerations);
        // The Priority admission tells what the pod brought from what it computes.
        if let Some(spec) = obj["spec"].as_object_mut() {
            if no_priority {
                spec.remove("priority");
            }
            if no_policy {
                spec.remove("preemptionPolicy");
            }
        }
    }

    /// Upstream's pod status strategy for `status` writes: the stored spec and metadata
    /// are kept, only the status is defaulted; any other write as every kind's.
    fn prepare_for_update(
        &self,
        cx: &Context,
        new: &mut Value,
        old: &Value,
        subresource: Option<&str>,
    ) {
        if subresource == Some(EPHEMERAL_CONTAINERS) {
            take_only_ephemeral_containers(new, old);
            defaults::apply_defaults(cx.def.kind, new);
            return;
        }
        keep_unwritten_part(cx.def, new, old, subresource);
        if subresource == Some("status") {
            defaults::pod_status_defaults(new);
        } else {
            defaults::apply_defaults(cx.def.kind, new);
        }
    }

    /// Upstream's `podEphemeralContainersStrategy.ValidateUpdate`.
    fn validate_subresource_update(
        &self,
        cx: &Context,
        subresource: &str,
        new: &Value,
        old: &Value,
    ) -> Vec<FieldError> {
        if subresource == EPHEMERAL_CONTAINERS {
            validation::validate_pod_ephemeral_containers_update(new, old)
        } else {
            self.validate_update(cx, new, old)
        }
    }

    fn status_type(&self) -> Option<Roundtrip> {
        Some(resources::roundtrip::<k8s_openapi::api::core::v1::PodStatus>)
    }

    /// Upstream's `ValidatePodStatusUpdate`: the spec and metadata are the stored ones,
    /// so only the status is checked.
    fn validate_status_update(&self, _cx: &Context, new: &Value, old: &Value) -> Vec<FieldError> {
        validation::validate_pod_status_update(new, old)
    }

    fn admit_create<'a>(
        &'a self,
        cx: &'a Context<'a>,
        obj: &'a mut Value,
    ) -> BoxFuture<'a, Result<(), ApiError>> {
        Box::pin(async move {
            let ns = object::namespace(obj).unwrap_or("").to_string();
            pod_service_account::admit(cx, &ns, obj).await?;
            let own_priority = obj["spec"].get("priority").is_some();
            let own_policy = obj["spec"].get("preemptionPolicy").is_some();
            priority_class::admit_pod(cx, obj, own_priority, own_policy)?;
            runtime_class::admit_pod(cx, obj)?;
            // What admission added is stored defaulted, as upstream stores it (the rest
            // was defaulted by `prepare_for_create`).
            if let Some(spec) = obj["spec"].as_object_mut() {
                defaults::pod_admission_defaults(spec);
            }
            Ok(())
        })
    }

    fn grace_period(&self, pod: &Value, requested: Option<i64>) -> i64 {
        let unscheduled = pod["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
        let finished = matches!(
            pod["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        );
        if unscheduled || finished {
            return 0;
        }
        let grace = requested.unwrap_or_else(|| {
            pod["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(DEFAULT_TERMINATION_GRACE_SECONDS)
        });
        grace.max(0)
    }
}

/// The subresource that adds ephemeral containers to a running pod.
const EPHEMERAL_CONTAINERS: &str = "ephemeralcontainers";

/// Upstream's `dropNonEphemeralContainerUpdates`: a write of `ephemeralcontainers`
/// takes only `spec.ephemeralContainers` from `new`; the spec, status and metadata
/// (apart from the managed fields the write records) are the stored ones.
fn take_only_ephemeral_containers(new: &mut Value, old: &Value) {
    let ephemeral = new["spec"]
        .get("ephemeralContainers")
        .filter(|v| !v.is_null())
        .cloned();
    let managed = new["metadata"].get("managedFields").cloned();
    *new = old.clone();
    if let Some(spec) = new["spec"].as_object_mut() {
        match ephemeral {
            Some(list) => spec.insert("ephemeralContainers".into(), list),
            None => spec.remove("ephemeralContainers"),
        };
    }
    if let (Some(meta), Some(managed)) = (new["metadata"].as_object_mut(), managed) {
        meta.insert("managedFields".into(), managed);
    }
}

/// Keys of the tolerations a pod spec brings itself.
fn toleration_keys(pod: &Value) -> Vec<String> {
    pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["key"].as_str().map(str::to_string))
        .collect()
}

/// Sets the configured eviction delay on the not-ready/unreachable tolerations that
/// defaulting added (never on ones the pod brought).
fn admit_default_tolerations(
    pod: &mut Value,
    own: &[String],
    seconds: defaults::DefaultTolerations,
) {
    let Some(tolerations) = pod["spec"]["tolerations"].as_array_mut() else {
        return;
    };
    for t in tolerations {
        let key = t["key"].as_str().unwrap_or("");
        if own.iter().any(|k| k == key) {
            continue;
        }
        if let Some(seconds) = seconds.for_taint(key) {
            t["tolerationSeconds"] = json!(seconds);
        }
    }
}

impl Registry {
    /// Sets `spec.nodeName` of a pod (the `binding` subresource).
    pub async fn bind_pod(
        &self,
        ns: &str,
        pod_name: &str,
        binding: &Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let pods = resources::by_plural("", "v1", "pods").expect("served");
        let target = binding["target"]["name"].as_str().unwrap_or("").to_string();
        if target.is_empty() {
            return Err(ApiError::invalid(
                pods,
                pod_name,
                &[field_error(
                    "target.name",
                    FieldErrorKind::Required,
                    None,
                    "",
                )],
            ));
        }
        let binding_opts = WriteOptions {
            binding: true,
            ..opts.clone()
        };
        self.modify(pods, Some(ns), pod_name, None, &binding_opts, &|pod| {
            if object::is_deleting(pod) {
                return Err(ApiError::conflict(
                    pods,
                    pod_name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let current = pod["spec"]["nodeName"].as_str().unwrap_or("");
            if !current.is_empty() {
                return Err(ApiError::conflict(
                    pods,
                    pod_name,
                    &format!("pod {pod_name} is already assigned to node \"{current}\""),
                ));
            }
            let mut pod = pod.clone();
            pod["spec"]["nodeName"] = json!(target);
            set_condition(&mut pod, "PodScheduled", "True", None, None);
            Ok(pod)
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(node: &str, phase: &str) -> Value {
        json!({"spec": {"nodeName": node, "terminationGracePeriodSeconds": 10}, "status": {"phase": phase}})
    }

    #[test]
    fn only_running_pods_bound_to_a_node_wait_for_their_grace_period() {
        assert_eq!(PodStrategy.grace_period(&pod("n1", "Running"), None), 10);
        assert_eq!(PodStrategy.grace_period(&pod("n1", "Running"), Some(3)), 3);
        assert_eq!(PodStrategy.grace_period(&pod("n1", "Running"), Some(-1)), 0);
        assert_eq!(PodStrategy.grace_period(&pod("", "Pending"), None), 0);
        assert_eq!(PodStrategy.grace_period(&pod("n1", "Succeeded"), None), 0);
        let unset = json!({"spec": {"nodeName": "n1"}, "status": {"phase": "Running"}});
        assert_eq!(PodStrategy.grace_period(&unset, None), 30);
    }

    #[test]
    fn defaulted_tolerations_get_the_eviction_delay_but_the_pods_own_do_not() {
        let mut pod = json!({"spec": {"tolerations": [
            {"key": defaults::TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoExecute"},
            {"key": defaults::TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
        ]}});
        let seconds = defaults::DefaultTolerations {
            not_ready: 60,
            unreachable: 7,
        };
        admit_default_tolerations(
            &mut pod,
            &[defaults::TAINT_NODE_NOT_READY.to_string()],
            seconds,
        );
        let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
        assert!(tolerations[0].get("tolerationSeconds").is_none());
        assert_eq!(tolerations[1]["tolerationSeconds"], 7);
        let mut bare = json!({"spec": {"tolerations": [
            {"key": defaults::TAINT_NODE_NOT_READY, "operator": "Exists", "effect": "NoExecute"},
            {"key": defaults::TAINT_NODE_UNREACHABLE, "operator": "Exists", "effect": "NoExecute"},
        ]}});
        admit_default_tolerations(&mut bare, &[], seconds);
        assert_eq!(
            bare["spec"]["tolerations"][0]["tolerationSeconds"], 60,
            "per taint"
        );
        assert_eq!(bare["spec"]["tolerations"][1]["tolerationSeconds"], 7);
    }

    mod status_writes {
        use std::sync::Arc;

        use serde_json::{json, Value};

        use crate::api::patch::PatchType;
        use crate::api::resources::{self, ResourceDef};
        use crate::api::status::ApiError;
        use crate::apiserver::allocator::Allocators;
        use crate::apiserver::registry::{FieldValidation, Registry, WriteOptions};
        use crate::store::memory::MemoryStore;

        fn pods() -> &'static ResourceDef {
            resources::by_plural("", "v1", "pods").expect("served")
        }

        /// A registry with the `default` namespace and its account, holding `pods`.
        async fn registry(pods_to_create: &[Value]) -> Registry {
            let allocators = Allocators::new("10.43.0.0/16".parse().expect("cidr"), (30000, 32767));
            let reg = Registry::new(Arc::new(MemoryStore::new()), allocators);
            let opts = WriteOptions::default();
            let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
            let ns =
                json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
            reg.create(namespaces, None, ns, &opts)
                .await
                .expect("namespace");
            let accounts = resources::by_plural("", "v1", "serviceaccounts").expect("served");
            let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                "metadata": {"name": "default", "namespace": "default"}});
            reg.create(accounts, Some("default"), sa, &opts)
                .await
                .expect("account");
            for pod in pods_to_create {
                reg.create(pods(), Some("default"), pod.clone(), &opts)
                    .await
                    .expect("pod");
            }
            reg
        }

        fn web() -> Value {
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": "web", "labels": {"app": "web"}},
                "spec": {"containers": [{"name": "app", "image": "nginx:1.27"}]}})
        }

        fn stored(reg: &Registry) -> (u64, Value) {
            let kv = reg.get(pods(), Some("default"), "web").expect("stored");
            (kv.mod_revision, (*kv.value).clone())
        }

        async fn patch_status(
            reg: &Registry,
            body: Value,
            fv: FieldValidation,
        ) -> Result<Vec<String>, ApiError> {
            let opts = WriteOptions {
                field_validation: fv,
                ..WriteOptions::default()
            };
            let body = serde_json::to_vec(&body).expect("json");
            reg.patch(
                pods(),
                Some("default"),
                "web",
                (PatchType::Merge, &body),
                Some("status"),
                &opts,
            )
            .await
            .map(|w| w.warnings)
        }

        #[tokio::test]
        async fn a_status_write_takes_the_status_and_keeps_the_stored_spec_and_metadata() {
            let reg = registry(&[web()]).await;
            let (_, before) = stored(&reg);
            let body = json!({"metadata": {"labels": {"app": "changed"}},
                "spec": {"activeDeadlineSeconds": 5, "containers": [{"name": "app", "image": "nginx:2"}]},
                "status": {"phase": "Running", "podIP": "10.42.0.7", "podIPs": [{"ip": "10.42.0.7"}],
                           "conditions": [{"type": "Ready", "status": "True"}]}});
            patch_status(&reg, body, FieldValidation::Warn)
                .await
                .expect("written");
            let (_, after) = stored(&reg);
            assert_eq!(after["spec"], before["spec"], "the spec is the stored one");
            assert_eq!(after["metadata"]["labels"], before["metadata"]["labels"]);
            assert_eq!(
                after["metadata"]["generation"], before["metadata"]["generation"],
                "no generation moves (pods have none in 1.32)"
            );
            assert_eq!(after["status"]["phase"], "Running");
            assert_eq!(after["status"]["podIPs"], json!([{"ip": "10.42.0.7"}]));
            assert_eq!(after["status"]["qosClass"], "BestEffort", "kept");

            // A replace of the status whose other parts differ from the stored ones: the
            // same (and decoded whole).
            let mut put = after.clone();
            put["spec"]["containers"][0]["image"] = json!("nginx:3");
            put["status"]["phase"] = json!("Succeeded");
            put["status"]
                .as_object_mut()
                .expect("status")
                .remove("qosClass");
            let w = reg
                .update(
                    pods(),
                    Some("default"),
                    "web",
                    put,
                    Some("status"),
                    &WriteOptions::default(),
                )
                .await
                .expect("replaced");
            assert_eq!(w.kv.value["spec"], before["spec"]);
            assert_eq!(w.kv.value["status"]["phase"], "Succeeded");
            assert_eq!(
                w.kv.value["status"]["qosClass"], "BestEffort",
                "defaulted again"
            );
        }

        #[tokio::test]
        async fn a_bad_status_is_refused_as_invalid_and_nothing_is_written() {
            let reg = registry(&[web()]).await;
            let (revision, _) = stored(&reg);
            for (body, message) in [
                (
                    json!({"status": {"podIPs": [{"ip": "not-an-ip"}]}}),
                    "status.podIPs[0]: Invalid value: \"not-an-ip\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                ),
                (
                    json!({"status": {"qosClass": "Guaranteed"}}),
                    "status.qosClass: Invalid value: \"Guaranteed\": field is immutable",
                ),
            ] {
                let e = patch_status(&reg, body, FieldValidation::Warn).await.unwrap_err();
                assert_eq!((e.code, e.reason), (422, "Invalid"), "{}", e.message);
                assert!(e.message.contains(message), "{}", e.message);
            }
            // Wrong types are refused by decoding, in the status and outside it.
            for body in [
                json!({"status": {"conditions": "Ready"}}),
                json!({"spec": {"containers": "app"}, "status": {"phase": "Running"}}),
            ] {
                let e = patch_status(&reg, body, FieldValidation::Warn)
                    .await
                    .unwrap_err();
                assert_eq!(e.code, 400, "{}", e.message);
            }
            assert_eq!(stored(&reg).0, revision, "nothing written");
        }

        #[tokio::test]
        async fn unknown_fields_of_a_status_write_are_reported_wherever_they_are() {
            let reg = registry(&[web()]).await;
            let warnings = patch_status(
                &reg,
                json!({"status": {"phase": "Running", "bogus": 1}}),
                FieldValidation::Warn,
            )
            .await
            .expect("written");
            assert_eq!(warnings, ["unknown field \"status.bogus\""]);
            assert!(stored(&reg).1["status"].get("bogus").is_none(), "dropped");
            let warnings = patch_status(
                &reg,
                json!({"spec": {"bogus": 1}, "status": {"phase": "Failed"}}),
                FieldValidation::Warn,
            )
            .await
            .expect("written");
            assert_eq!(warnings, ["unknown field \"spec.bogus\""]);
            let e = patch_status(
                &reg,
                json!({"status": {"other": 1}}),
                FieldValidation::Strict,
            )
            .await
            .unwrap_err();
            assert_eq!(e.code, 400);
            assert!(
                e.message
                    .contains("strict decoding error: unknown field \"status.other\""),
                "{}",
                e.message
            );
        }

        /// The second defaulting pass after admission is gone: what a create stores is
        /// as defaulted as defaulting it once more makes it (so a full pass after the
        /// admission, as before, would have stored the same).
        #[tokio::test]
        async fn a_created_pod_is_stored_as_defaulted_as_a_second_pass_would_make_it() {
            let pods_to_create = [
                web(),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "limited"},
                    "spec": {"automountServiceAccountToken": false, "restartPolicy": "Never",
                        "tolerations": [{"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute"}],
                        "initContainers": [{"name": "init", "image": "busybox"}],
                        "containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 80}],
                            "resources": {"limits": {"cpu": "1", "memory": "64Mi"}}}],
                        "volumes": [{"name": "cfg", "configMap": {"name": "c"}}, {"name": "scratch"}]}}),
                json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "preempting"},
                    "spec": {"preemptionPolicy": "Never", "hostNetwork": true,
                        "containers": [{"name": "app", "image": "busybox:1", "volumeMounts": [{"name": "v", "mountPath": "/v"}]}],
                        "volumes": [{"name": "v", "emptyDir": {}}]}}),
            ];
            let reg = registry(&pods_to_create).await;
            for pod in &pods_to_create {
                let name = pod["metadata"]["name"].as_str().expect("name");
                let kv = reg.get(pods(), Some("default"), name).expect("stored");
                let mut again = (*kv.value).clone();
                crate::api::defaults::apply_defaults("Pod", &mut again);
                assert_eq!(*kv.value, again, "{name}");
                assert!(kv.value["spec"]["preemptionPolicy"].is_string(), "{name}");
            }
        }
    }

    #[test]
    fn an_ephemeral_containers_write_takes_only_the_ephemeral_containers() {
        let old = json!({"metadata": {"name": "web", "labels": {"app": "web"}},
            "spec": {"containers": [{"name": "app", "image": "nginx"}]},
            "status": {"phase": "Running"}});
        let mut new = json!({"metadata": {"name": "web", "labels": {"app": "other"},
                "managedFields": [{"manager": "kubectl-debug"}]},
            "spec": {"activeDeadlineSeconds": 5, "containers": [{"name": "app", "image": "nginx:2"}],
                "ephemeralContainers": [{"name": "debugger", "image": "busybox"}]},
            "status": {"phase": "Failed"}});
        take_only_ephemeral_containers(&mut new, &old);
        let mut expected = old.clone();
        expected["spec"]["ephemeralContainers"] = json!([{"name": "debugger", "image": "busybox"}]);
        expected["metadata"]["managedFields"] = json!([{"manager": "kubectl-debug"}]);
        assert_eq!(new, expected);
        let mut emptied = json!({"metadata": {}, "spec": {}});
        take_only_ephemeral_containers(&mut emptied, &expected);
        assert!(emptied["spec"].get("ephemeralContainers").is_none());
    }

    #[test]
    fn pods_select_host_network_as_a_boolean_and_their_first_ip() {
        let pod = json!({"spec": {}, "status": {"podIP": "10.42.0.5",
                         "podIPs": [{"ip": "10.42.0.9"}, {"ip": "fd00::9"}]}});
        assert_eq!(PodStrategy.field_value(&pod, "spec.hostNetwork"), "false");
        assert_eq!(PodStrategy.field_value(&pod, "status.podIP"), "10.42.0.9");
        assert_eq!(PodStrategy.field_value(&pod, "status.podIPs"), "10.42.0.9");
        let single = json!({"status": {"podIP": "10.42.0.5"}});
        assert_eq!(
            PodStrategy.field_value(&single, "status.podIPs"),
            "10.42.0.5"
        );
    }
}
