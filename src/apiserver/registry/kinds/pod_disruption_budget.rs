//! PodDisruptionBudget rules: created with an empty status (the disruption controller
//! owns it), spec and status written through their own endpoints, printed with the
//! budget's bounds and allowed disruptions.

use serde_json::{json, Value};

use crate::api::defaults;
use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Context, Strategy};

pub struct PodDisruptionBudgetStrategy;

/// Upstream's zero `PodDisruptionBudgetStatus` as JSON (its counts are not omitted).
pub fn empty_status() -> Value {
    json!({"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0})
}

impl Strategy for PodDisruptionBudgetStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::policy::v1::PodDisruptionBudget>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::POD_DISRUPTION_BUDGET
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = empty_status();
        defaults::apply_defaults(cx.def.kind, obj);
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::apiserver::allocator::Allocators;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::store::memory::MemoryStore;
    use serde_json::json;

    async fn registry() -> Registry {
        let allocators = Allocators::new("10.43.0.0/16".parse().expect("cidr"), (30000, 32767));
        let reg = Registry::new(Arc::new(MemoryStore::new()), allocators);
        let namespaces = crate::api::resources::by_plural("", "v1", "namespaces").expect("served");
        let ns = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "default"}});
        reg.create(namespaces, None, ns, &WriteOptions::default())
            .await
            .expect("namespace");
        reg
    }

    fn pdbs() -> &'static crate::api::resources::ResourceDef {
        crate::api::resources::by_plural("policy", "v1", "poddisruptionbudgets").expect("served")
    }

    #[tokio::test]
    async fn created_with_an_empty_status_and_refused_when_invalid() {
        let reg = registry().await;
        let body = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
            "status": {"disruptionsAllowed": 5}});
        let w = reg
            .create(pdbs(), Some("default"), body, &WriteOptions::default())
            .await
            .unwrap();
        assert_eq!(w.kv.value["status"]["disruptionsAllowed"], 0);
        assert_eq!(w.kv.value["metadata"]["generation"], 1);
        let bad = json!({"apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": {"minAvailable": 1, "maxUnavailable": 1}});
        let err = reg
            .create(pdbs(), Some("default"), bad, &WriteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code, 422);
        assert!(reg.get(pdbs(), Some("default"), "bad").is_err());
    }
}
