//! The structural schema model: an `openAPIV3Schema` parsed once into a tree that is
//! cheap to share (`Send + Sync`, behind an `Arc`) and reused for every object.
//!
//! One node type serves both the structural spine (`properties`, `items`,
//! `additionalProperties`) and the value validations under `allOf`/`anyOf`/`oneOf`/`not`;
//! `structural.rs` checks which keywords each place may carry.

use std::collections::BTreeMap;
use std::sync::Arc;

use regex::Regex;
use serde_json::{Map, Value};

use super::cel::{compile_rule, CompiledRule};
use super::{CrdError, Result};

/// One schema node (upstream `JSONSchemaProps`, as far as CRDs may use it).
#[derive(Debug, Clone, Default)]
pub struct Structural {
    /// `type`; empty when unset.
    pub type_: String,
    pub format: String,
    pub title: String,
    pub description: String,
    pub nullable: bool,
    pub default: Option<Value>,
    pub enum_: Option<Vec<Value>>,
    pub maximum: Option<f64>,
    pub exclusive_maximum: bool,
    pub minimum: Option<f64>,
    pub exclusive_minimum: bool,
    pub multiple_of: Option<f64>,
    pub max_length: Option<u64>,
    pub min_length: Option<u64>,
    pub pattern: Option<Pattern>,
    pub max_items: Option<u64>,
    pub min_items: Option<u64>,
    pub unique_items: bool,
    pub max_properties: Option<u64>,
    pub min_properties: Option<u64>,
    pub required: Vec<String>,
    pub properties: BTreeMap<String, Structural>,
    pub additional_properties: Option<AdditionalProperties>,
    pub items: Option<Box<Structural>>,
    pub all_of: Vec<Structural>,
    pub any_of: Vec<Structural>,
    pub one_of: Vec<Structural>,
    pub not: Option<Box<Structural>>,
    /// `x-kubernetes-preserve-unknown-fields` as written (`Some(false)` is refused by CRD validation).
    pub x_preserve_unknown_fields: Option<bool>,
    pub x_embedded_resource: bool,
    pub x_int_or_string: bool,
    pub x_list_type: Option<String>,
    pub x_list_map_keys: Vec<String>,
    pub x_map_type: Option<String>,
    pub x_embedded_type: String,
    /// `x-kubernetes-validations`, each compiled once.
    pub rules: Vec<Rule>,
}

/// `additionalProperties`: a boolean or a schema.
#[derive(Debug, Clone)]
pub enum AdditionalProperties {
    Allows(bool),
    Schema(Box<Structural>),
}

/// A `pattern`, compiled once; `regex` holds the compile error when it is not valid.
#[derive(Debug, Clone)]
pub struct Pattern {
    pub source: String,
    pub regex: std::result::Result<Regex, String>,
}

/// One `x-kubernetes-validations` entry.
#[derive(Debug, Clone, Default)]
pub struct Rule {
    pub rule: String,
    pub message: String,
    pub message_expression: String,
    pub reason: Option<String>,
    pub field_path: String,
    pub optional_old_self: Option<bool>,
    /// The compiled rule, or the compiler's message.
    pub compiled: Option<std::result::Result<Arc<CompiledRule>, String>>,
    /// The compiled `messageExpression`, when one is set.
    pub compiled_message: Option<std::result::Result<Arc<CompiledRule>, String>>,
}

impl Structural {
    /// Parses an `openAPIV3Schema`. Fails only when a keyword has the wrong JSON type
    /// (what upstream's decoder refuses); keywords CRDs may not use are kept out of the
    /// tree and reported by `validate_crd`.
    pub fn from_json(v: &Value) -> Result<Structural> {
        parse(v, "openAPIV3Schema")
    }

    /// `x-kubernetes-preserve-unknown-fields: true`.
    pub fn preserves_unknown_fields(&self) -> bool {
        self.x_preserve_unknown_fields == Some(true)
    }

    /// The schema that applies to the value under `key` of an object.
    pub fn child(&self, key: &str) -> Option<&Structural> {
        self.properties
            .get(key)
            .or(match &self.additional_properties {
                Some(AdditionalProperties::Schema(s)) => Some(s),
                _ => None,
            })
    }

    /// The schema of `additionalProperties` when it is a schema.
    pub fn additional_schema(&self) -> Option<&Structural> {
        match &self.additional_properties {
            Some(AdditionalProperties::Schema(s)) => Some(s),
            _ => None,
        }
    }

    /// Whether this node or any below it has `x-kubernetes-validations`.
    pub fn has_rules(&self) -> bool {
        !self.rules.is_empty()
            || self.properties.values().any(Structural::has_rules)
            || self.items.as_deref().is_some_and(Structural::has_rules)
            || self.additional_schema().is_some_and(Structural::has_rules)
            || self.all_of.iter().any(Structural::has_rules)
    }
}

fn wrong(path: &str, keyword: &str, expected: &'static str) -> CrdError {
    CrdError::KeywordType {
        path: path.to_string(),
        keyword: keyword.to_string(),
        expected,
    }
}

fn string_of(m: &Map<String, Value>, key: &str, path: &str) -> Result<String> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(wrong(path, key, "string")),
    }
}

fn opt_string_of(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(wrong(path, key, "string")),
    }
}

fn bool_of(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<bool>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(_) => Err(wrong(path, key, "boolean")),
    }
}

fn number_of(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<f64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => Ok(n.as_f64()),
        Some(_) => Err(wrong(path, key, "number")),
    }
}

fn count_of(m: &Map<String, Value>, key: &str, path: &str) -> Result<Option<u64>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| wrong(path, key, "non-negative integer")),
        Some(_) => Err(wrong(path, key, "non-negative integer")),
    }
}

fn strings_of(m: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<String>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .map(|v| {
                v.as_str()
                    .map(str::to_string)
                    .ok_or_else(|| wrong(path, key, "array of strings"))
            })
            .collect(),
        Some(_) => Err(wrong(path, key, "array of strings")),
    }
}

fn schemas_of(m: &Map<String, Value>, key: &str, path: &str) -> Result<Vec<Structural>> {
    match m.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => a
            .iter()
            .enumerate()
            .map(|(i, v)| parse(v, &format!("{path}.{key}[{i}]")))
            .collect(),
        Some(_) => Err(wrong(path, key, "array of schemas")),
    }
}

fn parse(v: &Value, path: &str) -> Result<Structural> {
    let Some(m) = v.as_object() else {
        return Err(CrdError::SchemaNotObject {
            path: path.to_string(),
        });
    };
    let mut s = Structural {
        type_: string_of(m, "type", path)?,
        format: string_of(m, "format", path)?,
        title: string_of(m, "title", path)?,
        description: string_of(m, "description", path)?,
        nullable: bool_of(m, "nullable", path)?.unwrap_or(false),
        default: m.get("default").filter(|d| !d.is_null()).cloned(),
        maximum: number_of(m, "maximum", path)?,
        exclusive_maximum: bool_of(m, "exclusiveMaximum", path)?.unwrap_or(false),
        minimum: number_of(m, "minimum", path)?,
        exclusive_minimum: bool_of(m, "exclusiveMinimum", path)?.unwrap_or(false),
        multiple_of: number_of(m, "multipleOf", path)?,
        max_length: count_of(m, "maxLength", path)?,
        min_length: count_of(m, "minLength", path)?,
        max_items: count_of(m, "maxItems", path)?,
        min_items: count_of(m, "minItems", path)?,
        unique_items: bool_of(m, "uniqueItems", path)?.unwrap_or(false),
        max_properties: count_of(m, "maxProperties", path)?,
        min_properties: count_of(m, "minProperties", path)?,
        required: strings_of(m, "required", path)?,
        x_preserve_unknown_fields: bool_of(m, "x-kubernetes-preserve-unknown-fields", path)?,
        x_embedded_resource: bool_of(m, "x-kubernetes-embedded-resource", path)?.unwrap_or(false),
        x_int_or_string: bool_of(m, "x-kubernetes-int-or-string", path)?.unwrap_or(false),
        x_list_type: opt_string_of(m, "x-kubernetes-list-type", path)?,
        x_list_map_keys: strings_of(m, "x-kubernetes-list-map-keys", path)?,
        x_map_type: opt_string_of(m, "x-kubernetes-map-type", path)?,
        x_embedded_type: string_of(m, "x-kubernetes-embedded-type", path)?,
        all_of: schemas_of(m, "allOf", path)?,
        any_of: schemas_of(m, "anyOf", path)?,
        one_of: schemas_of(m, "oneOf", path)?,
        ..Structural::default()
    };
    match m.get("enum") {
        None | Some(Value::Null) => {}
        Some(Value::Array(a)) => s.enum_ = Some(a.clone()),
        Some(_) => return Err(wrong(path, "enum", "array")),
    }
    if let Some(p) = opt_string_of(m, "pattern", path)? {
        let regex = Regex::new(&super::re2::from_re2(&p)).map_err(|e| regex_error_text(&e));
        s.pattern = Some(Pattern { source: p, regex });
    }
    match m.get("properties") {
        None | Some(Value::Null) => {}
        Some(Value::Object(props)) => {
            for (k, pv) in props {
                let child = parse(pv, &format!("{path}.properties[{k}]"))?;
                s.properties.insert(k.clone(), child);
            }
        }
        Some(_) => return Err(wrong(path, "properties", "object")),
    }
    s.additional_properties = match m.get("additionalProperties") {
        None | Some(Value::Null) => None,
        Some(Value::Bool(b)) => Some(AdditionalProperties::Allows(*b)),
        Some(ap @ Value::Object(_)) => Some(AdditionalProperties::Schema(Box::new(parse(
            ap,
            &format!("{path}.additionalProperties"),
        )?))),
        Some(_) => return Err(wrong(path, "additionalProperties", "boolean or schema")),
    };
    s.items = match m.get("items") {
        // An array of schemas is refused by CRD validation; it has no place in the tree.
        None | Some(Value::Null) | Some(Value::Array(_)) => None,
        Some(it @ Value::Object(_)) => Some(Box::new(parse(it, &format!("{path}.items"))?)),
        Some(_) => return Err(wrong(path, "items", "schema")),
    };
    if let Some(n) = m.get("not").filter(|n| !n.is_null()) {
        s.not = Some(Box::new(parse(n, &format!("{path}.not"))?));
    }
    match m.get("x-kubernetes-validations") {
        None | Some(Value::Null) => {}
        Some(Value::Array(rules)) => {
            for (i, r) in rules.iter().enumerate() {
                s.rules.push(parse_rule(
                    r,
                    &format!("{path}.x-kubernetes-validations[{i}]"),
                )?);
            }
        }
        Some(_) => return Err(wrong(path, "x-kubernetes-validations", "array")),
    }
    Ok(s)
}

fn parse_rule(v: &Value, path: &str) -> Result<Rule> {
    let Some(m) = v.as_object() else {
        return Err(wrong(path, "rule", "object"));
    };
    let mut r = Rule {
        rule: string_of(m, "rule", path)?,
        message: string_of(m, "message", path)?,
        message_expression: string_of(m, "messageExpression", path)?,
        reason: opt_string_of(m, "reason", path)?,
        field_path: string_of(m, "fieldPath", path)?,
        optional_old_self: bool_of(m, "optionalOldSelf", path)?,
        ..Rule::default()
    };
    if !r.rule.trim().is_empty() {
        r.compiled = Some(compile_rule(&r.rule).map(Arc::new));
    }
    if !r.message_expression.trim().is_empty() {
        r.compiled_message = Some(compile_rule(&r.message_expression).map(Arc::new));
    }
    Ok(r)
}

/// The regex crate's error without its multi-line source excerpt.
fn regex_error_text(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find(|l| l.starts_with("error:"))
        .map(|l| l.trim_start_matches("error:").trim().to_string())
        .unwrap_or(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn structural_is_send_and_sync() {
        fn assert_shareable<T: Send + Sync>() {}
        assert_shareable::<Structural>();
        assert_shareable::<Arc<Structural>>();
    }

    #[test]
    fn parses_keywords_into_the_tree() {
        let s = Structural::from_json(&json!({
            "type": "object",
            "required": ["spec"],
            "properties": {
                "spec": {
                    "type": "object",
                    "properties": {
                        "replicas": {"type": "integer", "minimum": 1, "default": 1},
                        "name": {"type": "string", "pattern": "^[a-z]+$", "maxLength": 5},
                        "tags": {"type": "array", "items": {"type": "string"}, "x-kubernetes-list-type": "set"},
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                    "x-kubernetes-validations": [{"rule": "self.replicas < 10", "message": "too many"}]
                }
            }
        }))
        .unwrap();
        let spec = &s.properties["spec"];
        assert_eq!(s.required, vec!["spec"]);
        assert_eq!(spec.properties["replicas"].minimum, Some(1.0));
        assert_eq!(spec.properties["replicas"].default, Some(json!(1)));
        assert!(spec.properties["name"]
            .pattern
            .as_ref()
            .unwrap()
            .regex
            .is_ok());
        assert_eq!(spec.properties["tags"].x_list_type.as_deref(), Some("set"));
        assert!(spec.properties["labels"].additional_schema().is_some());
        assert_eq!(spec.rules.len(), 1);
        assert!(matches!(spec.rules[0].compiled, Some(Ok(_))));
        assert!(s.has_rules());
    }

    #[test]
    fn wrong_keyword_types_are_errors() {
        let err =
            Structural::from_json(&json!({"type": "object", "properties": {"a": {"type": 5}}}))
                .unwrap_err();
        assert_eq!(
            err.to_string(),
            "openAPIV3Schema.properties[a]: keyword type must be a string"
        );
        assert!(Structural::from_json(&json!("x")).is_err());
    }

    #[test]
    fn invalid_pattern_is_kept_with_its_error() {
        let s = Structural::from_json(&json!({"type": "string", "pattern": "(a"})).unwrap();
        let err = s.pattern.unwrap().regex.unwrap_err();
        assert!(err.contains("unclosed group"), "{err}");
    }
}
