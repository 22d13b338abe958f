//! NetworkPolicy rules: defaults and validation from `api/` (policy types and port
//! protocols as upstream), printed with the pod selector. Every agent enforces them
//! (`agent/netpol/`).

use crate::api::table::{self, Printer};
use crate::apiserver::registry::strategy::{schema_of, Strategy};

pub struct NetworkPolicyStrategy;

impl Strategy for NetworkPolicyStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        schema_of::<k8s_openapi::api::networking::v1::NetworkPolicy>(gen)
    }

    fn printer(&self) -> &'static Printer {
        &table::NETWORK_POLICY
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

    fn policies() -> &'static crate::api::resources::ResourceDef {
        crate::api::resources::by_plural("networking.k8s.io", "v1", "networkpolicies")
            .expect("served")
    }

    #[tokio::test]
    async fn created_with_defaults_and_refused_when_invalid() {
        let reg = registry().await;
        let body = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "db", "namespace": "default"},
            "spec": {"podSelector": {"matchLabels": {"app": "db"}},
                     "egress": [{"ports": [{"port": 53}]}]}});
        let w = reg
            .create(policies(), Some("default"), body, &WriteOptions::default())
            .await
            .unwrap();
        let spec = &w.kv.value["spec"];
        assert_eq!(spec["policyTypes"], json!(["Ingress", "Egress"]));
        assert_eq!(spec["egress"][0]["ports"][0]["protocol"], "TCP");
        let bad = json!({"apiVersion": "networking.k8s.io/v1", "kind": "NetworkPolicy",
            "metadata": {"name": "bad", "namespace": "default"},
            "spec": {"podSelector": {}, "ingress": [{"from": [{"ipBlock": {"cidr": "10.0.0.0/8",
                "except": ["192.168.0.0/16"]}}]}]}});
        let err = reg
            .create(policies(), Some("default"), bad, &WriteOptions::default())
            .await
            .unwrap_err();
        assert_eq!(err.code, 422);
        assert!(
            err.message.contains("must be a strict subset of `cidr`"),
            "{}",
            err.message
        );
        assert!(reg.get(policies(), Some("default"), "bad").is_err());
    }
}
