//! Tests of x-kubernetes-validations evaluation: messages, reasons, field paths, transition rules, cost.

use super::*;
use crate::api::crd::test_support::messages;
use serde_json::json;

fn schema(v: Value) -> Structural {
    Structural::from_json(&v).unwrap()
}

fn spec_with_rules(rules: Value) -> Structural {
    schema(json!({
        "type": "object",
        "properties": {"spec": {
            "type": "object",
            "properties": {
                "replicas": {"type": "integer"},
                "min": {"type": "integer"},
                "max": {"type": "integer"},
                "name": {"type": "string"},
                "items": {"type": "array", "items": {"type": "string"}},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}}
            },
            "x-kubernetes-validations": rules
        }}
    }))
}

fn obj(spec: Value) -> Value {
    json!({"apiVersion": "example.com/v1", "kind": "Thing", "metadata": {"name": "t"}, "spec": spec})
}

fn run(s: &Structural, spec: Value, old: Option<Value>) -> Vec<String> {
    let old = old.map(obj);
    messages(&validate_rules(s, &obj(spec), old.as_ref()))
}

#[test]
fn failing_rules_render_as_upstream() {
    let s = spec_with_rules(json!([
        {"rule": "self.min <= self.max", "message": "min must not exceed max"},
        {"rule": "self.replicas < 100"}
    ]));
    assert!(run(&s, json!({"min": 1, "max": 2, "replicas": 3}), None).is_empty());
    assert_eq!(
        run(&s, json!({"min": 3, "max": 2, "replicas": 100}), None),
        vec![
            r#"spec: Invalid value: "object": min must not exceed max"#,
            r#"spec: Invalid value: "object": failed rule: self.replicas < 100"#,
        ]
    );
}

#[test]
fn reasons_field_paths_and_message_expressions() {
    let s = spec_with_rules(json!([
        {"rule": "has(self.name)", "reason": "FieldValueRequired", "fieldPath": ".name", "message": "name is required"},
        {"rule": "self.replicas >= 0", "reason": "FieldValueForbidden", "messageExpression": "'replicas is ' + string(self.replicas)"},
        {"rule": "self.items.all(i, i != 'x')", "reason": "FieldValueDuplicate"},
        {"rule": "!('bad' in self.labels)", "fieldPath": ".labels['bad']"}
    ]));
    assert_eq!(
        run(
            &s,
            json!({"replicas": -1, "items": ["x"], "labels": {"bad": "1"}}),
            None
        ),
        vec![
            "spec.name: Required value: name is required",
            "spec: Forbidden: replicas is -1",
            r#"spec: Duplicate value: "object""#,
            r#"spec.labels[bad]: Invalid value: "object": failed rule: !('bad' in self.labels)"#,
        ]
    );
}

#[test]
fn rules_on_items_and_map_values_see_each_element() {
    let s = schema(json!({
        "type": "object",
        "properties": {"spec": {"type": "object", "properties": {
            "items": {"type": "array", "items": {"type": "string", "x-kubernetes-validations": [{"rule": "self.size() < 4", "message": "too long"}]}},
            "labels": {"type": "object", "additionalProperties": {"type": "string", "x-kubernetes-validations": [{"rule": "self != ''"}]}}
        }}}
    }));
    assert_eq!(
        run(
            &s,
            json!({"items": ["ab", "abcd"], "labels": {"k": ""}}),
            None
        ),
        vec![
            r#"spec.items[1]: Invalid value: "string": too long"#,
            r#"spec.labels[k]: Invalid value: "string": failed rule: self != ''"#,
        ]
    );
}

#[test]
fn transition_rules_run_on_update_only() {
    let s = spec_with_rules(json!([
        {"rule": "self.replicas >= oldSelf.replicas", "message": "replicas may not decrease"},
        {"rule": "!oldSelf.hasValue() || self.name == oldSelf.value().name", "optionalOldSelf": true, "message": "name is immutable"}
    ]));
    assert!(run(&s, json!({"replicas": 1, "name": "a"}), None).is_empty());
    assert!(run(
        &s,
        json!({"replicas": 2, "name": "a"}),
        Some(json!({"replicas": 1, "name": "a"}))
    )
    .is_empty());
    assert_eq!(
        run(
            &s,
            json!({"replicas": 1, "name": "b"}),
            Some(json!({"replicas": 2, "name": "a"}))
        ),
        vec![
            r#"spec: Invalid value: "object": replicas may not decrease"#,
            r#"spec: Invalid value: "object": name is immutable"#,
        ]
    );
}

#[test]
fn evaluation_errors_are_reported_with_the_rule() {
    let s = spec_with_rules(json!([{"rule": "self.name.startsWith('a')"}]));
    let errs = run(&s, json!({"replicas": 1}), None);
    assert_eq!(errs.len(), 1);
    assert!(
        errs[0].starts_with(r#"spec: Invalid value: "object": "#),
        "{}",
        errs[0]
    );
    assert!(
        errs[0].ends_with("evaluating rule: self.name.startsWith('a')"),
        "{}",
        errs[0]
    );
}

#[test]
fn root_rules_see_type_meta_and_only_name_of_metadata() {
    let s = schema(json!({
        "type": "object",
        "properties": {"spec": {"type": "object"}},
        "x-kubernetes-validations": [
            {"rule": "self.kind == 'Thing' && self.metadata.name == 't'"},
            {"rule": "!has(self.metadata.labels)"}
        ]
    }));
    let mut o = obj(json!({}));
    o["metadata"]["labels"] = json!({"a": "b"});
    assert!(messages(&validate_rules(&s, &o, None)).is_empty());
}

#[test]
fn expensive_rules_are_stopped_by_the_cost_limit() {
    let s = spec_with_rules(json!([
        {"rule": "self.items.all(a, self.items.all(b, self.items.all(c, a + b + c != 'zzz')))"}
    ]));
    let items: Vec<String> = (0..200).map(|i| format!("i{i}")).collect();
    let errs = run(&s, json!({"items": items}), None);
    assert_eq!(
        errs,
        vec![
            r#"spec: Invalid value: "object": 'operation cancelled: actual cost limit exceeded': no further validation rules will be run due to call cost exceeds limit for rule: self.items.all(a, self.items.all(b, self.items.all(c, a + b + c != 'zzz')))"#
        ]
    );
}

#[test]
fn field_paths_follow_the_schema() {
    let s = spec_with_rules(json!([]));
    let spec = &s.properties["spec"];
    assert_eq!(
        normalize_field_path(spec, ".labels['a.b']"),
        Some(vec![Step::Child("labels".into()), Step::Key("a.b".into())])
    );
    assert_eq!(normalize_field_path(spec, ".nope"), None);
    assert_eq!(normalize_field_path(spec, "name"), None);
}
