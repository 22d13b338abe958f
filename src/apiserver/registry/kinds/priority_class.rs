//! PriorityClass rules (scheduling.k8s.io/v1, cluster-scoped): at most one class is the
//! global default, the built-in `system-` classes are never deleted (upstream's
//! registry and Priority admission), and pods' `priorityClassName` is resolved into
//! `spec.priority` and `spec.preemptionPolicy` at admission ([`admit_pod`]).

use serde_json::{json, Value};

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::api::validation::SYSTEM_PRIORITY_CLASSES;
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};
use crate::store::KeyValue;

pub struct PriorityClassStrategy;

pub fn priority_classes() -> &'static ResourceDef {
    resources::by_plural("scheduling.k8s.io", "v1", "priorityclasses").expect("served")
}

/// The built-in classes as objects (created at every start when missing).
pub fn system_priority_classes() -> Vec<Value> {
    SYSTEM_PRIORITY_CLASSES
        .iter()
        .map(|(name, value, description)| {
            json!({
                "apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                "metadata": {"name": name}, "value": value, "description": description,
                "preemptionPolicy": "PreemptLowerPriority",
            })
        })
        .collect()
}

/// The global default class with the lowest value, if any (upstream
/// `getDefaultPriorityClass`).
fn default_class(cx: &Context) -> Option<Value> {
    let page = cx
        .store
        .list(&priority_classes().prefix(), None, 0, &|kv: &KeyValue| {
            kv.value["globalDefault"] == true
        });
    page.items
        .into_iter()
        .map(|kv| (*kv.value).clone())
        .min_by_key(|pc| pc["value"].as_i64().unwrap_or(0))
}

impl Strategy for PriorityClassStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::scheduling::v1::PriorityClass>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::PRIORITY_CLASS
    }

    /// Upstream Priority admission of PriorityClasses: only one global default.
    fn admit(
        &self,
        cx: &Context,
        _requester: &crate::api::identity::User,
        new: &Value,
        _old: Option<&Value>,
    ) -> Result<(), ApiError> {
        if new["globalDefault"] != true {
            return Ok(());
        }
        let name = object::name(new);
        if let Some(existing) = default_class(cx).filter(|pc| object::name(pc) != name) {
            return Err(ApiError::forbidden(format!(
                "priorityclasses.scheduling.k8s.io {name:?} is forbidden: PriorityClass {} already marked as default. Only one PriorityClass can be marked as globalDefault.",
                object::name(&existing)
            )));
        }
        Ok(())
    }

    fn check_delete(&self, _cx: &Context, obj: &Value) -> Result<(), ApiError> {
        let name = object::name(obj);
        if SYSTEM_PRIORITY_CLASSES.iter().any(|(n, _, _)| *n == name) {
            return Err(ApiError::forbidden(format!(
                "priorityclasses.scheduling.k8s.io {name:?} is forbidden: this is a system priority class and cannot be deleted"
            )));
        }
        Ok(())
    }
}

/// Upstream's Priority admission of a new pod: `priorityClassName` (or the global
/// default class) resolved into `spec.priority` and `spec.preemptionPolicy`; a pod that
/// names an unknown class, or brings a priority or policy of its own that differs from
/// the class's, is refused. `own_priority`/`own_policy` say whether the pod's spec
/// carried them before defaulting.
pub fn admit_pod(
    cx: &Context,
    pod: &mut Value,
    own_priority: bool,
    own_policy: bool,
) -> Result<(), ApiError> {
    let pod_name = object::name(pod).to_string();
    let forbidden =
        |why: String| ApiError::forbidden(format!("pods {pod_name:?} is forbidden: {why}"));
    let class_name = pod["spec"]["priorityClassName"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let class = if class_name.is_empty() {
        default_class(cx)
    } else {
        match cx.stored(priority_classes(), None, &class_name) {
            Some(pc) => Some(pc),
            None => {
                return Err(forbidden(format!(
                    "no PriorityClass with name {class_name} was found"
                )))
            }
        }
    };
    let priority = class
        .as_ref()
        .and_then(|pc| pc["value"].as_i64())
        .unwrap_or(0);
    let spec = &mut pod["spec"];
    if own_priority {
        if let Some(given) = spec["priority"].as_i64().filter(|p| *p != priority) {
            return Err(forbidden(format!(
                "the integer value of priority ({given}) must not be provided in pod spec; priority admission controller computed {priority} from the given PriorityClass name"
            )));
        }
    }
    spec["priority"] = json!(priority);
    if let Some(pc) = &class {
        if class_name.is_empty() {
            spec["priorityClassName"] = pc["metadata"]["name"].clone();
        }
        if let Some(policy) = pc["preemptionPolicy"].as_str() {
            if own_policy {
                if let Some(given) = spec["preemptionPolicy"].as_str().filter(|g| *g != policy) {
                    return Err(forbidden(format!(
                        "the string value of PreemptionPolicy ({given}) must not be provided in pod spec; priority admission controller computed {policy} from the given PriorityClass name"
                    )));
                }
            }
            spec["preemptionPolicy"] = json!(policy);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use serde_json::json;

    use super::*;
    use crate::apiserver::allocator::Allocators;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::store::memory::MemoryStore;

    async fn registry() -> Registry {
        let allocators = Allocators::new("10.43.0.0/16".parse().expect("cidr"), (30000, 32767));
        let reg = Registry::new(Arc::new(MemoryStore::new()), allocators);
        let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        reg.create(namespaces, None, ns, &WriteOptions::default())
            .await
            .expect("namespace");
        let accounts = resources::by_plural("", "v1", "serviceaccounts").expect("served");
        let sa = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                        "metadata": {"name": "default", "namespace": "default"}});
        reg.create(accounts, Some("default"), sa, &WriteOptions::default())
            .await
            .expect("service account");
        for pc in system_priority_classes() {
            reg.create(priority_classes(), None, pc, &WriteOptions::default())
                .await
                .expect("built-in class");
        }
        reg
    }

    fn pods() -> &'static ResourceDef {
        resources::by_plural("", "v1", "pods").expect("served")
    }

    fn pod(name: &str, spec_extra: Value) -> Value {
        let mut spec = json!({"containers": [{"name": "c", "image": "busybox"}]});
        for (k, v) in spec_extra.as_object().unwrap() {
            spec[k] = v.clone();
        }
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": name, "namespace": "default"}, "spec": spec})
    }

    fn class(name: &str, value: i64, extra: Value) -> Value {
        let mut pc = json!({"apiVersion": "scheduling.k8s.io/v1", "kind": "PriorityClass",
                            "metadata": {"name": name}, "value": value});
        for (k, v) in extra.as_object().unwrap() {
            pc[k] = v.clone();
        }
        pc
    }

    #[tokio::test]
    async fn pods_get_the_priority_of_their_class_or_zero() {
        let reg = registry().await;
        let opts = WriteOptions::default();
        reg.create(
            priority_classes(),
            None,
            class("high", 1000, json!({"preemptionPolicy": "Never"})),
            &opts,
        )
        .await
        .unwrap();
        let w = reg
            .create(
                pods(),
                Some("default"),
                pod("a", json!({"priorityClassName": "high"})),
                &opts,
            )
            .await
            .unwrap();
        assert_eq!(w.kv.value["spec"]["priority"], 1000);
        assert_eq!(w.kv.value["spec"]["preemptionPolicy"], "Never");
        let w = reg
            .create(
                pods(),
                Some("default"),
                pod("b", json!({"priorityClassName": "system-node-critical"})),
                &opts,
            )
            .await
            .unwrap();
        assert_eq!(w.kv.value["spec"]["priority"], 2_000_001_000);
        let w = reg
            .create(pods(), Some("default"), pod("c", json!({})), &opts)
            .await
            .unwrap();
        assert_eq!(w.kv.value["spec"]["priority"], 0);
        assert_eq!(
            w.kv.value["spec"]["preemptionPolicy"],
            "PreemptLowerPriority"
        );
        assert!(w.kv.value["spec"]["priorityClassName"].is_null());
    }

    #[tokio::test]
    async fn unknown_classes_and_contradicting_priorities_are_refused() {
        let reg = registry().await;
        let opts = WriteOptions::default();
        let err = reg
            .create(
                pods(),
                Some("default"),
                pod("a", json!({"priorityClassName": "nope"})),
                &opts,
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods \"a\" is forbidden: no PriorityClass with name nope was found"
        );
        let err = reg
            .create(
                pods(),
                Some("default"),
                pod(
                    "b",
                    json!({"priorityClassName": "system-cluster-critical", "priority": 5}),
                ),
                &opts,
            )
            .await
            .unwrap_err();
        assert!(err.message.contains("the integer value of priority (5) must not be provided in pod spec; priority admission controller computed 2000000000"), "{}", err.message);
        let err = reg
            .create(
                pods(),
                Some("default"),
                pod("c", json!({"priority": 7})),
                &opts,
            )
            .await
            .unwrap_err();
        assert!(err.message.contains("computed 0"), "{}", err.message);
        assert!(reg.get(pods(), Some("default"), "a").is_err());
    }

    #[tokio::test]
    async fn the_global_default_class_applies_to_pods_without_one() {
        let reg = registry().await;
        let opts = WriteOptions::default();
        reg.create(
            priority_classes(),
            None,
            class("everyone", 50, json!({"globalDefault": true})),
            &opts,
        )
        .await
        .unwrap();
        let w = reg
            .create(pods(), Some("default"), pod("a", json!({})), &opts)
            .await
            .unwrap();
        assert_eq!(w.kv.value["spec"]["priority"], 50);
        assert_eq!(w.kv.value["spec"]["priorityClassName"], "everyone");
    }

    #[tokio::test]
    async fn system_classes_cannot_be_deleted_and_values_never_change() {
        let reg = registry().await;
        let err = reg
            .delete(
                priority_classes(),
                None,
                "system-node-critical",
                &Default::default(),
            )
            .await
            .unwrap_err();
        assert_eq!(err.code, 403);
        assert!(err
            .message
            .contains("this is a system priority class and cannot be deleted"));
        let opts = WriteOptions::default();
        reg.create(
            priority_classes(),
            None,
            class("high", 1000, json!({})),
            &opts,
        )
        .await
        .unwrap();
        let mut changed = reg
            .get(priority_classes(), None, "high")
            .unwrap()
            .value
            .as_ref()
            .clone();
        changed["value"] = json!(2000);
        let err = reg
            .update(priority_classes(), None, "high", changed, None, &opts)
            .await
            .unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message
                .contains("value: Forbidden: may not be changed in an update."),
            "{}",
            err.message
        );
    }
}
