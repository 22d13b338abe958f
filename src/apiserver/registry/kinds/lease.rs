//! Lease rules: renewals of node Leases (in `kube-node-lease`) that only move
//! `renewTime` are heartbeats, kept in memory (see `apiserver::heartbeats`), and reads
//! show the latest one. Other Leases (leader election) are written as usual.

use serde_json::Value;

use crate::api::object;
use crate::api::table::{self, Printer};
use crate::apiserver::heartbeats::{self, NODE_LEASE_NAMESPACE};
use crate::apiserver::registry::strategy::{Context, Strategy};
use crate::store::KeyValue;

pub struct LeaseStrategy;

fn strip_renew_time(lease: &mut Value) {
    if let Some(spec) = lease.get_mut("spec").and_then(Value::as_object_mut) {
        spec.remove("renewTime");
    }
}

impl Strategy for LeaseStrategy {
    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        crate::apiserver::registry::strategy::schema_of::<k8s_openapi::api::coordination::v1::Lease>(
            gen,
        )
    }

    fn printer(&self) -> &'static Printer {
        &table::LEASE
    }

    fn is_heartbeat(&self, old: &Value, new: &Value) -> bool {
        object::namespace(old) == Some(NODE_LEASE_NAMESPACE)
            && heartbeats::only_heartbeat_changed(old, new, strip_renew_time)
    }

    fn fresh_view(&self, cx: &Context, kv: KeyValue) -> KeyValue {
        cx.heartbeats.overlay(kv)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn lease(renew: &str) -> Value {
        json!({"kind": "Lease", "metadata": {"name": "n1", "namespace": NODE_LEASE_NAMESPACE, "resourceVersion": "5"},
               "spec": {"holderIdentity": "n1", "renewTime": renew}})
    }

    #[test]
    fn renew_time_only_is_a_heartbeat() {
        let old = lease("2024-01-01T00:00:00.000000Z");
        let new = lease("2024-01-01T00:00:10.000000Z");
        assert!(LeaseStrategy.is_heartbeat(&old, &new));
        assert!(!LeaseStrategy.is_heartbeat(&old, &old));
        let mut holder = new.clone();
        holder["spec"]["holderIdentity"] = json!("other");
        assert!(!LeaseStrategy.is_heartbeat(&old, &holder));
        let mut elsewhere = new.clone();
        elsewhere["metadata"]["namespace"] = json!("default");
        let mut old_elsewhere = old.clone();
        old_elsewhere["metadata"]["namespace"] = json!("default");
        assert!(!LeaseStrategy.is_heartbeat(&old_elsewhere, &elsewhere));
    }
}
