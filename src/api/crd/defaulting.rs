//! Defaulting custom objects (upstream `structuraldefaulting.Default` and
//! `PruneNonNullableNullsWithoutDefaults`), and checking a schema's defaults at CRD time.

use serde_json::Value;

use super::pruning::prune_at;
use super::schema::{AdditionalProperties, Structural};
use super::validate::validate_value;
use super::FieldPath;
use crate::api::validation::FieldError;

/// Fills in defaults of absent properties (and of `null`s where the schema is not
/// `nullable`), recursively, inside list items and `additionalProperties` too; then drops
/// `null`s the schema does not allow and has no default for, as upstream's decoder does.
pub fn apply_defaults(schema: &Structural, obj: &mut Value) {
    default_value(schema, obj);
    prune_non_nullable_nulls(schema, obj);
}

fn is_non_nullable_null(v: &Value, s: &Structural) -> bool {
    v.is_null() && !s.nullable
}

fn default_value(s: &Structural, v: &mut Value) {
    match v {
        Value::Object(m) => {
            for (k, prop) in &s.properties {
                let Some(d) = &prop.default else { continue };
                match m.get(k) {
                    None => {
                        m.insert(k.clone(), d.clone());
                    }
                    Some(x) if is_non_nullable_null(x, prop) => {
                        m.insert(k.clone(), d.clone());
                    }
                    _ => {}
                }
            }
            for (k, x) in m.iter_mut() {
                if let Some(prop) = s.properties.get(k) {
                    default_value(prop, x);
                } else if let Some(AdditionalProperties::Schema(ap)) = &s.additional_properties {
                    if let (true, Some(d)) = (is_non_nullable_null(x, ap), &ap.default) {
                        *x = d.clone();
                    }
                    default_value(ap, x);
                }
            }
        }
        Value::Array(items) => {
            let Some(is) = s.items.as_deref() else { return };
            for x in items.iter_mut() {
                if let (true, Some(d)) = (is_non_nullable_null(x, is), &is.default) {
                    *x = d.clone();
                }
                default_value(is, x);
            }
        }
        _ => {}
    }
}

fn prune_non_nullable_nulls(s: &Structural, v: &mut Value) {
    match v {
        Value::Object(m) => {
            m.retain(|k, x| {
                let sub = s.properties.get(k).or(s.additional_schema());
                !sub.is_some_and(|sub| x.is_null() && sub.default.is_none() && !sub.nullable)
            });
            for (k, x) in m.iter_mut() {
                if let Some(sub) = s.properties.get(k).or(s.additional_schema()) {
                    prune_non_nullable_nulls(sub, x);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = s.items.as_deref() {
                items
                    .iter_mut()
                    .for_each(|x| prune_non_nullable_nulls(is, x));
            }
        }
        _ => {}
    }
}

/// Upstream `ValidateDefaults`: every `default` must validate against its schema and be
/// unchanged by pruning (and, for object defaults, by defaulting inside it).
pub(crate) fn validate_defaults(root: &Structural, base: &FieldPath) -> Vec<FieldError> {
    let mut errs = Vec::new();
    check_defaults(root, base, true, &mut errs);
    errs
}

fn check_defaults(s: &Structural, p: &FieldPath, is_root: bool, errs: &mut Vec<FieldError>) {
    if let Some(d) = &s.default {
        let dp = p.child("default");
        let mut defaulted = d.clone();
        default_value(s, &mut defaulted);
        let mut value_errs = Vec::new();
        validate_value(s, &defaulted, &FieldPath::new(&dp.field), &mut value_errs);
        if value_errs.is_empty() {
            let mut pruned = defaulted.clone();
            let removed = prune_at(s, &mut pruned, is_root || s.x_embedded_resource);
            if let Some(first) = removed.first() {
                errs.push(FieldError::invalid_rendered(
                    dp.field.clone(),
                    super::validate::go_render(d),
                    format!("must not have unknown fields (first: {first:?})"),
                ));
            }
        }
        errs.extend(value_errs);
    }
    for (k, ps) in &s.properties {
        // Defaults in a resource's type and object meta are refused on their own.
        let meta = (is_root || s.x_embedded_resource)
            && matches!(k.as_str(), "metadata" | "apiVersion" | "kind");
        if !meta {
            check_defaults(ps, &p.child("properties").key(k), false, errs);
        }
    }
    if let Some(ap) = s.additional_schema() {
        check_defaults(ap, &p.child("additionalProperties"), false, errs);
    }
    if let Some(is) = s.items.as_deref() {
        check_defaults(is, &p.child("items"), false, errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::crd::test_support::messages;
    use serde_json::json;

    fn schema(v: Value) -> Structural {
        Structural::from_json(&v).unwrap()
    }

    #[test]
    fn defaults_fill_absent_fields_recursively() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "spec": {
                    "type": "object",
                    "default": {},
                    "properties": {
                        "replicas": {"type": "integer", "default": 1},
                        "ports": {"type": "array", "items": {
                            "type": "object",
                            "properties": {"protocol": {"type": "string", "default": "TCP"}, "port": {"type": "integer"}}
                        }},
                        "limits": {"type": "object", "additionalProperties": {
                            "type": "object", "properties": {"unit": {"type": "string", "default": "Mi"}}
                        }}
                    }
                }
            }
        }));
        let mut obj = json!({"apiVersion": "x/v1"});
        apply_defaults(&s, &mut obj);
        assert_eq!(obj, json!({"apiVersion": "x/v1", "spec": {"replicas": 1}}));

        let mut obj =
            json!({"spec": {"replicas": 3, "ports": [{"port": 80}], "limits": {"mem": {}}}});
        apply_defaults(&s, &mut obj);
        assert_eq!(
            obj,
            json!({"spec": {"replicas": 3, "ports": [{"port": 80, "protocol": "TCP"}], "limits": {"mem": {"unit": "Mi"}}}})
        );
    }

    #[test]
    fn nulls_take_defaults_unless_nullable_and_are_dropped_without_one() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "a": {"type": "string", "default": "x"},
                "b": {"type": "string", "nullable": true, "default": "y"},
                "c": {"type": "string"},
                "d": {"type": "string", "nullable": true}
            }
        }));
        let mut obj = json!({"a": null, "b": null, "c": null, "d": null});
        apply_defaults(&s, &mut obj);
        assert_eq!(obj, json!({"a": "x", "b": null, "d": null}));
    }

    #[test]
    fn invalid_and_unpruned_defaults_are_reported() {
        let s = schema(json!({
            "type": "object",
            "properties": {
                "n": {"type": "integer", "minimum": 1, "default": 0},
                "o": {"type": "object", "properties": {"a": {"type": "string"}}, "default": {"a": "x", "b": "y"}}
            }
        }));
        let errs = validate_defaults(
            &s,
            &FieldPath::new("spec.versions[0].schema.openAPIV3Schema"),
        );
        assert_eq!(
            messages(&errs),
            vec![
                "spec.versions[0].schema.openAPIV3Schema.properties[n].default: Invalid value: 0: spec.versions[0].schema.openAPIV3Schema.properties[n].default in body should be greater than or equal to 1",
                "spec.versions[0].schema.openAPIV3Schema.properties[o].default: Invalid value: map[string]interface {}{\"a\":\"x\", \"b\":\"y\"}: must not have unknown fields (first: \"b\")",
            ]
        );
    }
}
