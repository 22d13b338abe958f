//! A built-in object in the form upstream's Go types give it: kube-apiserver decodes every
//! built-in object into its Go struct and encodes it back, so what it stores, answers and
//! sends to watchers has
//! - no field tagged `json:",omitempty"` holding its empty value (`args: []`,
//!   `stdin: false`, an env `value: ""`, `nodeSelector: {}`, a `null` pointer), while
//!   fields without the tag, pointers to zeros (`replicas: 0`) and structs
//!   (`resources: {}`: Go never counts a struct as empty) stay;
//! - every `resource.Quantity` in the spelling its parser keeps (`cpu: 0.5` → `500m`,
//!   `memory: 1024Mi` → `1Gi`, `cpu: 1` → `"1"`; see [`quantity::stored_spelling`]).
//!
//! The walk follows the kind's generated field tables ([`super::protobuf::schema`], whose
//! `omit` comes from the Go json tags). Values of the wrong JSON type are left alone for
//! the typed decoder to refuse in its own words, as are invalid quantities for
//! validation; fields the tables do not know (unknown fields, custom objects) too.

use serde_json::{Map, Value};

use super::protobuf::{Cardinality, Field, Kind, Message, Omit};
use super::quantity;

/// Which of the two rewrites a walk does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rewrite {
    /// Quantities in their stored spelling and `omitempty` fields dropped when empty: the
    /// object as upstream stores it.
    Stored,
    /// Quantities only: a server-side apply configuration, whose fields (empty ones too)
    /// are what its manager owns.
    QuantitiesOnly,
}

/// Rewrites `obj`, an object of `message`'s type, into the form upstream stores.
pub fn rewrite(message: &'static Message, obj: &mut Value, how: Rewrite) {
    if let Value::Object(map) = obj {
        rewrite_message(message, map, how);
    }
}

/// The message of field `json` of `message` (`status` of a Deployment), looking into
/// inline structs.
pub fn field_message(message: &'static Message, json: &str) -> Option<&'static Message> {
    match field_of(message, json)?.kind {
        Kind::Message(m) => Some(m),
        _ => None,
    }
}

/// The field of `m` (or of a struct it embeds inline) named `json`.
fn field_of(m: &'static Message, json: &str) -> Option<&'static Field> {
    m.fields.iter().find_map(|f| match (f.cardinality, f.kind) {
        (Cardinality::Inline, Kind::Message(inner)) => field_of(inner, json),
        _ if f.json == json => Some(f),
        _ => None,
    })
}

fn rewrite_message(m: &'static Message, obj: &mut Map<String, Value>, how: Rewrite) {
    obj.retain(|key, value| {
        let Some(field) = field_of(m, key) else {
            return true;
        };
        if how == Rewrite::Stored && omitted(field, value) {
            return false;
        }
        rewrite_field(field, value, how);
        true
    });
}

/// Whether Go's encoder leaves `field` out when it holds `v`. Only values of the field's
/// own JSON type count: a wrong one is kept for the decoder to refuse.
fn omitted(field: &Field, v: &Value) -> bool {
    match field.omit {
        Omit::Never => false,
        Omit::Nil => v.is_null(),
        Omit::Empty => match (field.cardinality, field.kind, v) {
            (_, _, Value::Null) => true,
            (Cardinality::Repeated, _, Value::Array(items)) => items.is_empty(),
            (Cardinality::Map, _, Value::Object(entries)) => entries.is_empty(),
            (Cardinality::Optional, Kind::String | Kind::Bytes, Value::String(s)) => s.is_empty(),
            (Cardinality::Optional, Kind::Bool, Value::Bool(b)) => !b,
            (Cardinality::Optional, Kind::Int32 | Kind::Int64 | Kind::Double, Value::Number(n)) => {
                n.as_f64() == Some(0.0)
            }
            _ => false,
        },
    }
}

fn rewrite_field(field: &Field, v: &mut Value, how: Rewrite) {
    match (field.cardinality, v) {
        (Cardinality::Repeated, Value::Array(items)) => {
            for item in items {
                rewrite_value(field.kind, item, how);
            }
        }
        (Cardinality::Map, Value::Object(entries)) => {
            for value in entries.values_mut() {
                rewrite_value(field.kind, value, how);
            }
        }
        (Cardinality::Optional | Cardinality::Inline, v) => rewrite_value(field.kind, v, how),
        _ => {}
    }
}

fn rewrite_value(kind: Kind, v: &mut Value, how: Rewrite) {
    match (kind, &mut *v) {
        (Kind::Message(m), Value::Object(map)) => rewrite_message(m, map, how),
        (Kind::Quantity, Value::String(s)) => {
            if let Ok(stored) = quantity::stored_spelling(s) {
                *s = stored;
            }
        }
        // Upstream reads a JSON number as the quantity it spells (`cpu: 1` → "1").
        (Kind::Quantity, Value::Number(n)) => {
            if let Ok(stored) = quantity::stored_spelling(&n.to_string()) {
                *v = Value::String(stored);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protobuf::schema_for;
    use serde_json::json;

    fn stored(obj: Value) -> Value {
        let mut obj = obj;
        let api_version = obj["apiVersion"].as_str().unwrap().to_string();
        let kind = obj["kind"].as_str().unwrap().to_string();
        let message = schema_for(&api_version, &kind).expect("a built-in kind");
        rewrite(message, &mut obj, Rewrite::Stored);
        obj
    }

    #[test]
    fn omitempty_fields_lose_their_empty_values_and_others_keep_them() {
        // Sealed Secrets' controller: `args: []`, `stdin: false`, an env `value: ""`.
        let deploy = stored(json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "d", "labels": {}, "annotations": {"a": ""}},
            "spec": {"replicas": 0, "paused": false, "template": {
                "metadata": {"creationTimestamp": null, "labels": {"app": ""}},
                "spec": {"nodeSelector": {}, "hostNetwork": false, "enableServiceLinks": false,
                    "containers": [{"name": "c", "image": "i", "args": [], "command": null,
                        "stdin": false, "tty": true, "resources": {}, "workingDir": "",
                        "env": [{"name": "A", "value": ""}, {"name": "B", "value": "b"}],
                        "ports": [{"containerPort": 80, "hostPort": 0, "name": ""}],
                        "securityContext": null}],
                    "initContainers": [],
                    "volumes": [{"name": "v", "emptyDir": {}}]}}}}));
        assert_eq!(
            deploy,
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                "metadata": {"name": "d", "annotations": {"a": ""}},
                "spec": {"replicas": 0, "template": {
                    // A struct (metav1.Time) is never empty to Go; map values stay.
                    "metadata": {"creationTimestamp": null, "labels": {"app": ""}},
                    // A pointer to false is written.
                    "spec": {"enableServiceLinks": false,
                        "containers": [{"name": "c", "image": "i", "tty": true,
                            "resources": {},
                            "env": [{"name": "A"}, {"name": "B", "value": "b"}],
                            "ports": [{"containerPort": 80}]}],
                        "volumes": [{"name": "v", "emptyDir": {}}]}}}})
        );
    }

    #[test]
    fn fields_without_omitempty_keep_empty_values() {
        // ClusterRole.rules and Subject.name have no omitempty; a ConfigMap's "" value
        // is a map value, never left out.
        let role = stored(json!({"apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole", "metadata": {"name": "r"}, "rules": []}));
        assert_eq!(role["rules"], json!([]));
        let cm = stored(json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "c"}, "data": {"empty": ""}, "binaryData": {}}));
        assert_eq!(
            cm,
            json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "c"}, "data": {"empty": ""}})
        );
    }

    #[test]
    fn values_of_the_wrong_type_and_unknown_fields_are_left_for_the_decoder() {
        let pod = stored(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"hostNetwork": "", "containers": [{"name": "c", "stdin": 0,
                "bogus": []}]}}),
        );
        assert_eq!(pod["spec"]["hostNetwork"], json!(""));
        assert_eq!(pod["spec"]["containers"][0]["stdin"], json!(0));
        assert_eq!(pod["spec"]["containers"][0]["bogus"], json!([]));
    }

    #[test]
    fn quantities_take_the_spelling_upstream_stores() {
        let pod = stored(
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "resources": {
                    "requests": {"cpu": 0.5, "memory": "1024Mi"},
                    "limits": {"cpu": 1, "memory": "lots", "nvidia.com/gpu": "1"}}}],
                "overhead": {"cpu": "0.25"},
                "volumes": [{"name": "v", "emptyDir": {"sizeLimit": "1000Mi"}}]}}),
        );
        let resources = &pod["spec"]["containers"][0]["resources"];
        assert_eq!(
            resources["requests"],
            json!({"cpu": "500m", "memory": "1Gi"})
        );
        // Invalid quantities stay for validation to refuse.
        assert_eq!(
            resources["limits"],
            json!({"cpu": "1", "memory": "lots", "nvidia.com/gpu": "1"})
        );
        assert_eq!(pod["spec"]["overhead"], json!({"cpu": "250m"}));
        assert_eq!(
            pod["spec"]["volumes"][0]["emptyDir"]["sizeLimit"],
            json!("1000Mi")
        );
        let quota = stored(json!({"apiVersion": "v1", "kind": "ResourceQuota",
            "metadata": {"name": "q"}, "spec": {"hard": {"requests.cpu": 0.5, "pods": "10"}}}));
        assert_eq!(
            quota["spec"]["hard"],
            json!({"requests.cpu": "500m", "pods": "10"})
        );
        let limits = stored(json!({"apiVersion": "v1", "kind": "LimitRange",
            "metadata": {"name": "l"}, "spec": {"limits": [{"type": "Container",
                "default": {"memory": "2048Mi"}, "maxLimitRequestRatio": {"cpu": 2}}]}}));
        assert_eq!(
            limits["spec"]["limits"][0]["default"],
            json!({"memory": "2Gi"})
        );
        assert_eq!(
            limits["spec"]["limits"][0]["maxLimitRequestRatio"],
            json!({"cpu": "2"})
        );
    }

    #[test]
    fn an_apply_configuration_keeps_its_empty_fields() {
        let mut config = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
            "spec": {"containers": [{"name": "c", "args": [], "resources": {
                "requests": {"cpu": 0.5}}}]}});
        rewrite(
            schema_for("v1", "Pod").unwrap(),
            &mut config,
            Rewrite::QuantitiesOnly,
        );
        assert_eq!(config["spec"]["containers"][0]["args"], json!([]));
        assert_eq!(
            config["spec"]["containers"][0]["resources"]["requests"]["cpu"],
            json!("500m")
        );
    }

    #[test]
    fn status_parts_are_found_through_the_kind() {
        let deployment = schema_for("apps/v1", "Deployment").unwrap();
        let status = field_message(deployment, "status").expect("DeploymentStatus");
        let mut s = json!({"replicas": 0, "readyReplicas": 0, "conditions": []});
        rewrite(status, &mut s, Rewrite::Stored);
        assert_eq!(s, json!({}));
        let rs = field_message(schema_for("apps/v1", "ReplicaSet").unwrap(), "status").unwrap();
        let mut s = json!({"replicas": 0, "readyReplicas": 0});
        rewrite(rs, &mut s, Rewrite::Stored);
        // ReplicaSetStatus.replicas has no omitempty.
        assert_eq!(s, json!({"replicas": 0}));
    }
}
