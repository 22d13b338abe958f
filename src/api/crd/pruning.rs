//! Pruning unknown fields (upstream `pruning.PruneWithOptions`), keeping `apiVersion`,
//! `kind` and `metadata` at resource roots and pruning `metadata` to ObjectMeta's fields.

use serde_json::Value;

use super::schema::{AdditionalProperties, Structural};
use super::FieldPath;

/// The fields of ObjectMeta (`metav1.ObjectMeta`); others are pruned from `metadata`.
const OBJECT_META_FIELDS: [&str; 15] = [
    "name",
    "generateName",
    "namespace",
    "selfLink",
    "uid",
    "resourceVersion",
    "generation",
    "creationTimestamp",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "labels",
    "annotations",
    "ownerReferences",
    "finalizers",
    "managedFields",
];

/// Removes fields `schema` does not specify, unless under
/// `x-kubernetes-preserve-unknown-fields`; returns the removed paths, sorted
/// (`spec.foo`, `spec.items[0].bar`) for `unknown field` errors or warnings.
pub fn prune(schema: &Structural, obj: &mut Value) -> Vec<String> {
    prune_at(schema, obj, true)
}

/// Pruning with the value at a resource root (the object, or an embedded resource).
pub(crate) fn prune_at(schema: &Structural, obj: &mut Value, resource_root: bool) -> Vec<String> {
    let mut pruned = Vec::new();
    let root = FieldPath::root();
    if resource_root {
        prune_resource(Some(schema), obj, &root, &mut pruned);
    } else {
        prune_value(Some(schema), obj, &root, &mut pruned);
    }
    pruned.sort();
    pruned
}

fn prune_value(s: Option<&Structural>, v: &mut Value, p: &FieldPath, pruned: &mut Vec<String>) {
    if let Some(s) = s {
        if s.x_embedded_resource && v.is_object() {
            prune_resource(Some(s), v, p, pruned);
            return;
        }
        if s.preserves_unknown_fields() {
            skip_prune(s, v, p, pruned);
            return;
        }
    }
    match v {
        Value::Object(m) => {
            let Some(s) = s else {
                pruned.extend(m.keys().map(|k| p.child(k).openapi));
                m.clear();
                return;
            };
            m.retain(|k, _| {
                let known = s.properties.contains_key(k) || s.additional_properties.is_some();
                if !known {
                    pruned.push(p.child(k).openapi);
                }
                known
            });
            for (k, x) in m.iter_mut() {
                prune_value(child_schema(s, k), x, &p.child(k), pruned);
            }
        }
        Value::Array(items) => {
            let is = s.and_then(|s| s.items.as_deref());
            for (i, x) in items.iter_mut().enumerate() {
                prune_value(is, x, &p.index(i), pruned);
            }
        }
        _ => {}
    }
}

/// The schema for `k` in an object: its property, or `additionalProperties` (`None` for
/// `additionalProperties: true`, whose values upstream prunes as schemaless).
fn child_schema<'a>(s: &'a Structural, k: &str) -> Option<&'a Structural> {
    s.properties.get(k).or(match &s.additional_properties {
        Some(AdditionalProperties::Schema(ap)) => Some(ap),
        _ => None,
    })
}

/// A resource root: `apiVersion` and `kind` stay, `metadata` keeps ObjectMeta's fields.
fn prune_resource(s: Option<&Structural>, v: &mut Value, p: &FieldPath, pruned: &mut Vec<String>) {
    let Value::Object(m) = v else { return };
    let preserve = s.is_some_and(Structural::preserves_unknown_fields);
    m.retain(|k, x| {
        let keep = match k.as_str() {
            "apiVersion" | "kind" => x.is_string(),
            "metadata" => x.is_object(),
            _ => {
                preserve
                    || s.is_some_and(|s| {
                        s.properties.contains_key(k) || s.additional_properties.is_some()
                    })
            }
        };
        if !keep {
            pruned.push(p.child(k).openapi);
        }
        keep
    });
    for (k, x) in m.iter_mut() {
        match k.as_str() {
            "apiVersion" | "kind" => {}
            "metadata" => {
                if let Value::Object(meta) = x {
                    let mp = p.child("metadata");
                    meta.retain(|mk, _| {
                        let known = OBJECT_META_FIELDS.contains(&mk.as_str());
                        if !known {
                            pruned.push(mp.child(mk).openapi);
                        }
                        known
                    });
                }
            }
            _ => match s.and_then(|s| child_schema(s, k)) {
                Some(cs) => prune_value(Some(cs), x, &p.child(k), pruned),
                None if preserve => {}
                None => prune_value(None, x, &p.child(k), pruned),
            },
        }
    }
}

/// Upstream `skipPrune`: unknown fields stay, specified ones are pruned by their schema.
fn skip_prune(s: &Structural, v: &mut Value, p: &FieldPath, pruned: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, x) in m.iter_mut() {
                if let Some(cs) = child_schema(s, k) {
                    prune_value(Some(cs), x, &p.child(k), pruned);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.items.as_deref() {
                for (i, x) in items.iter_mut().enumerate() {
                    skip_prune(is, x, &p.index(i), pruned);
                }
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn schema(v: Value) -> Structural {
        Structural::from_json(&v).unwrap()
    }

    #[test]
    fn unknown_fields_are_pruned_and_reported() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "properties": {
                    "a": {"type": "string"},
                    "list": {"type": "array", "items": {"type": "object", "properties": {"x": {"type": "integer"}}}},
                    "map": {"type": "object", "additionalProperties": {"type": "object", "properties": {"v": {"type": "string"}}}}
                }}
            }
        }));
        let mut obj = json!({
            "apiVersion": "example.com/v1",
            "kind": "Thing",
            "metadata": {"name": "t", "labels": {"a": "b"}, "bogus": 1},
            "spec": {"a": "x", "b": "y", "list": [{"x": 1, "y": 2}], "map": {"k": {"v": "1", "w": "2"}}},
            "extra": true
        });
        let pruned = prune(&s, &mut obj);
        assert_eq!(
            pruned,
            vec![
                "extra",
                "metadata.bogus",
                "spec.b",
                "spec.list[0].y",
                "spec.map.k.w"
            ]
        );
        assert_eq!(
            obj,
            json!({
                "apiVersion": "example.com/v1",
                "kind": "Thing",
                "metadata": {"name": "t", "labels": {"a": "b"}},
                "spec": {"a": "x", "list": [{"x": 1}], "map": {"k": {"v": "1"}}}
            })
        );
    }

    #[test]
    fn preserve_unknown_fields_keeps_unknowns_but_prunes_specified_children() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "spec": {"type": "object", "x-kubernetes-preserve-unknown-fields": true, "properties": {
                    "known": {"type": "object", "properties": {"a": {"type": "string"}}}
                }}
            }
        }));
        let mut obj = json!({"spec": {"free": {"x": 1}, "known": {"a": "1", "b": "2"}}});
        assert_eq!(prune(&s, &mut obj), vec!["spec.known.b"]);
        assert_eq!(
            obj,
            json!({"spec": {"free": {"x": 1}, "known": {"a": "1"}}})
        );
    }

    #[test]
    fn embedded_resources_keep_type_and_object_meta() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "template": {"type": "object", "x-kubernetes-embedded-resource": true, "properties": {
                    "spec": {"type": "object", "properties": {"image": {"type": "string"}}}
                }}
            }
        }));
        let mut obj = json!({"template": {
            "apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}, "junk": 1},
            "spec": {"image": "nginx", "other": 1}, "status": {}
        }});
        assert_eq!(
            prune(&s, &mut obj),
            vec![
                "template.metadata.junk",
                "template.spec.other",
                "template.status"
            ]
        );
        assert_eq!(
            obj,
            json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {"labels": {"a": "b"}}, "spec": {"image": "nginx"}}})
        );
    }
}
