//! Helpers shared by the tests of this module.

use serde_json::{json, Value};

use super::field_error::FieldError;

pub(super) fn messages(errs: &[FieldError]) -> Vec<String> {
    errs.iter().map(ToString::to_string).collect()
}

pub(super) fn has(errs: &[FieldError], msg: &str) -> bool {
    let all = messages(errs);
    if all.iter().any(|m| m == msg) {
        return true;
    }
    panic!("expected {msg:?} among {all:#?}");
}

pub(super) fn has_prefix(errs: &[FieldError], prefix: &str) -> bool {
    let all = messages(errs);
    if all.iter().any(|m| m.starts_with(prefix)) {
        return true;
    }
    panic!("expected a message starting {prefix:?} among {all:#?}");
}

pub(super) fn pod(spec: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
}

pub(super) fn good_pod_spec() -> Value {
    json!({
        "containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
        "restartPolicy": "Always",
        "dnsPolicy": "ClusterFirst"
    })
}
