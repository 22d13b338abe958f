//! Tests of custom object validation: each keyword with its upstream message.

use super::*;
use crate::api::crd::test_support::messages;
use serde_json::json;

fn schema(v: Value) -> Structural {
    Structural::from_json(&v).unwrap()
}

/// A schema with `spec` holding the given properties.
fn spec_schema(props: Value) -> Structural {
    schema(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": props}}
    }))
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec})
}

fn errors(s: &Structural, spec: Value) -> Vec<String> {
    messages(&validate(s, &obj(spec), None))
}

#[test]
fn wrong_types_render_like_kube_openapi() {
    let s = spec_schema(
        json!({"replicas": {"type": "integer"}, "port": {"x-kubernetes-int-or-string": true}}),
    );
    assert_eq!(
        errors(&s, json!({"replicas": "3"})),
        vec![
            r#"spec.replicas: Invalid value: "string": spec.replicas in body must be of type integer: "string""#
        ]
    );
    assert_eq!(
        errors(&s, json!({"replicas": 1.5})),
        vec![
            r#"spec.replicas: Invalid value: "number": spec.replicas in body must be of type integer: "number""#
        ]
    );
    assert_eq!(
        errors(&s, json!({"port": true})),
        vec![
            r#"spec.port: Invalid value: "boolean": spec.port in body must be of type integer,string: "boolean""#
        ]
    );
    assert!(errors(&s, json!({"replicas": 2, "port": "http"})).is_empty());
    assert!(errors(&s, json!({"replicas": 2.0, "port": 80})).is_empty());
}

#[test]
fn null_needs_nullable() {
    let s =
        spec_schema(json!({"a": {"type": "string"}, "b": {"type": "string", "nullable": true}}));
    assert_eq!(
        errors(&s, json!({"a": null, "b": null})),
        vec![r#"spec.a: Invalid value: "null": spec.a in body must be of type string: "null""#]
    );
}

#[test]
fn required_enum_and_bounds() {
    let s = schema(json!({
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "required": ["name"],
            "properties": {
                "name": {"type": "string", "pattern": "^[a-z]+$", "minLength": 2, "maxLength": 5},
                "mode": {"type": "string", "enum": ["a", "b"]},
                "level": {"type": "integer", "enum": [1, 2]},
                "replicas": {"type": "integer", "minimum": 1, "maximum": 10},
                "ratio": {"type": "number", "exclusiveMinimum": true, "minimum": 0, "multipleOf": 0.5}
            }
        }}
    }));
    assert_eq!(
        errors(&s, json!({"mode": "x", "level": 3, "replicas": 0, "ratio": 0})),
        vec![
            "spec.name: Required value",
            r#"spec.level: Unsupported value: 3: supported values: "1", "2""#,
            r#"spec.mode: Unsupported value: "x": supported values: "a", "b""#,
            "spec.ratio: Invalid value: 0: spec.ratio in body should be greater than 0",
            "spec.replicas: Invalid value: 0: spec.replicas in body should be greater than or equal to 1",
        ]
    );
    assert_eq!(
        errors(&s, json!({"name": "A", "replicas": 11, "ratio": 0.7})),
        vec![
            r#"spec.name: Invalid value: "A": spec.name in body should be at least 2 chars long"#,
            r#"spec.name: Invalid value: "A": spec.name in body should match '^[a-z]+$'"#,
            "spec.ratio: Invalid value: 0.7: spec.ratio in body should be a multiple of 0.5",
            "spec.replicas: Invalid value: 11: spec.replicas in body should be less than or equal to 10",
        ]
    );
    assert_eq!(
        errors(&s, json!({"name": "abcdef"})),
        vec!["spec.name: Too long: may not be more than 5 bytes"]
    );
}

#[test]
fn arrays_and_maps_bounds() {
    let s = spec_schema(json!({
        "list": {"type": "array", "minItems": 2, "maxItems": 3, "items": {"type": "integer"}},
        "labels": {"type": "object", "maxProperties": 1, "additionalProperties": {"type": "string"}},
        "few": {"type": "object", "minProperties": 2, "additionalProperties": {"type": "string"}}
    }));
    assert_eq!(
        errors(
            &s,
            json!({"list": [1], "labels": {"a": "1", "b": 2}, "few": {"a": "1"}})
        ),
        vec![
            "spec.few: Invalid value: 1: spec.few in body should have at least 2 properties",
            "spec.labels: Too many: 2: must have at most 1 items",
            r#"spec.labels[b]: Invalid value: "integer": spec.labels.b in body must be of type string: "integer""#,
            "spec.list: Invalid value: 1: spec.list in body should have at least 2 items",
        ]
    );
    assert_eq!(
        errors(&s, json!({"list": [1, 2, "x", 4]})),
        vec![
            "spec.list: Too many: 4: must have at most 3 items",
            r#"spec.list[2]: Invalid value: "string": spec.list[2] in body must be of type integer: "string""#,
        ]
    );
}

#[test]
fn formats_use_the_registry() {
    let s = spec_schema(json!({
        "id": {"type": "string", "format": "uuid"},
        "when": {"type": "string", "format": "date-time"},
        "size": {"type": "integer", "format": "int32"}
    }));
    assert_eq!(
        errors(
            &s,
            json!({"id": "abc", "when": "yesterday", "size": 99999999999i64})
        ),
        vec![
            r#"spec.id: Invalid value: "abc": spec.id in body must be of type uuid: "abc""#,
            r#"spec.when: Invalid value: "yesterday": spec.when in body must be of type date-time: "yesterday""#,
        ]
    );
}

#[test]
fn junctors_report_composite_messages() {
    let s = spec_schema(json!({
        "pick": {"type": "object", "properties": {"a": {"type": "string"}, "b": {"type": "string"}},
                 "oneOf": [{"required": ["a"]}, {"required": ["b"]}]},
        "not5": {"type": "integer", "not": {"enum": [5]}}
    }));
    assert_eq!(
        errors(&s, json!({"pick": {}, "not5": 5})),
        vec![
            r#"spec.not5: Invalid value: "": spec.not5 in body must not validate the schema (not)"#,
            r#"spec.pick: Invalid value: "": spec.pick in body must validate one and only one schema (oneOf)"#,
            "spec.pick.a: Required value",
        ]
    );
    assert_eq!(
        errors(&s, json!({"pick": {"a": "1", "b": "2"}})),
        vec![
            r#"spec.pick: Invalid value: "": spec.pick in body must validate one and only one schema (oneOf). Found 2 valid alternatives"#
        ]
    );
}

#[test]
fn list_types_reject_duplicates() {
    let s = spec_schema(json!({
        "tags": {"type": "array", "x-kubernetes-list-type": "set", "items": {"type": "string"}},
        "ports": {"type": "array", "x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name", "protocol"],
                  "items": {"type": "object", "required": ["name", "protocol"], "properties": {
                      "name": {"type": "string"}, "protocol": {"type": "string"}, "port": {"type": "integer"}}}}
    }));
    assert_eq!(
        errors(
            &s,
            json!({
                "tags": ["a", "b", "a"],
                "ports": [{"name": "http", "protocol": "TCP", "port": 80}, {"name": "http", "protocol": "TCP", "port": 81}, {"name": "http", "protocol": "UDP"}]
            })
        ),
        vec![
            r#"spec.tags[2]: Duplicate value: "a""#,
            r#"spec.ports[1]: Duplicate value: map[string]interface {}{"name":"http", "protocol":"TCP"}"#,
        ]
    );
}

#[test]
fn forbidden_additional_properties() {
    let s = spec_schema(
        json!({"strict": {"type": "object", "properties": {"a": {"type": "string"}}, "additionalProperties": false}}),
    );
    assert_eq!(
        errors(&s, json!({"strict": {"a": "1", "b": "2"}})),
        vec![r#"spec.strict: Invalid value: "": spec.strict.b in body is a forbidden property"#]
    );
}

#[test]
fn root_metadata_is_validated_as_object_meta() {
    let s = spec_schema(json!({}));
    let bad = json!({"metadata": {"name": "Bad_Name", "labels": {"a b": "c"}}, "spec": {}});
    let errs = messages(&validate(&s, &bad, None));
    assert_eq!(errs.len(), 2, "{errs:?}");
    assert!(errs[0].starts_with(
        r#"metadata.name: Invalid value: "Bad_Name": a lowercase RFC 1123 subdomain"#
    ));
    assert!(
        errs[1].starts_with(r#"metadata.labels: Invalid value: "a b": name part must consist of"#),
        "{}",
        errs[1]
    );
    assert_eq!(
        messages(&validate(&s, &json!({"spec": {}}), None)),
        vec!["metadata.name: Required value: name or generateName is required"]
    );
}

#[test]
fn embedded_resources_need_type_meta() {
    let s = spec_schema(json!({
        "template": {"type": "object", "x-kubernetes-embedded-resource": true, "x-kubernetes-preserve-unknown-fields": true}
    }));
    assert_eq!(
        errors(
            &s,
            json!({"template": {"metadata": {"labels": {"-x": "y"}}}})
        ),
        vec![
            "spec.template.apiVersion: Required value: must not be empty",
            "spec.template.kind: Required value: must not be empty",
            r#"spec.template.metadata.labels: Invalid value: "-x": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]')"#,
        ]
    );
    assert!(errors(
        &s,
        json!({"template": {"apiVersion": "v1", "kind": "Pod", "metadata": {}}})
    )
    .is_empty());
    assert_eq!(
        errors(
            &s,
            json!({"template": {"apiVersion": "v1", "kind": "Pod_x"}})
        ),
        vec![
            r#"spec.template.kind: Invalid value: "Pod_x": may have mixed case, but should otherwise match: a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character (e.g. 'my-name',  or 'abc-123', regex used for validation is '[a-z]([-a-z0-9]*[a-z0-9])?')"#
        ]
    );
}

#[test]
fn preserve_unknown_fields_and_untyped_nodes_accept_anything() {
    let s = spec_schema(json!({"any": {"x-kubernetes-preserve-unknown-fields": true}}));
    assert!(errors(&s, json!({"any": {"deep": [1, "x", null]}})).is_empty());
    assert!(errors(&s, json!({"any": 5})).is_empty());
}

#[test]
fn errors_about_the_whole_object_name_upstreams_nil_path() {
    // Calico's Tier and FelixConfiguration rules look at `metadata.name` from the root;
    // upstream validates from a nil path, printed `<nil>`.
    let s = schema(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "defaultAction": {"type": "string"}, "nodeSelector": {"type": "string"}}}},
        "x-kubernetes-validations": [
            {"rule": "self.metadata.name == 'default' ? self.spec.defaultAction == 'Deny' : true",
             "message": "The 'default' tier must have default action 'Deny'"},
            {"rule": "self.metadata.name == 'default' ? !has(self.spec.nodeSelector) : true",
             "message": "nodeSelector must not be set", "reason": "FieldValueForbidden"}
        ]
    }));
    let mut o = obj(json!({"defaultAction": "Pass", "nodeSelector": "all()"}));
    o["metadata"]["name"] = json!("default");
    assert_eq!(
        messages(&validate(&s, &o, None)),
        vec![
            r#"<nil>: Invalid value: "object": The 'default' tier must have default action 'Deny'"#,
            "<nil>: Forbidden: nodeSelector must not be set",
        ]
    );
    o["metadata"]["name"] = json!("other");
    assert!(validate(&s, &o, None).is_empty());
}
