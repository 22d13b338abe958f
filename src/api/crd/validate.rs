//! Validating a custom object against its structural schema: the OpenAPI keywords with
//! kube-openapi's messages (as upstream converts them to field errors), list-type
//! uniqueness, embedded resources, root `metadata`, then the CEL rules (`rules.rs`).

use std::collections::BTreeMap;

use serde_json::Value;

use super::formats;
use super::rules::validate_rules;
use super::schema::{AdditionalProperties, Structural};
use super::FieldPath;
use crate::api::validation::{
    go_quote, validate_object_meta_subdomain, FieldError, FieldErrorKind,
};

/// Validates a (pruned, defaulted) custom object against `schema`; `old` is the stored
/// object on update (it feeds `oldSelf` in transition rules).
pub fn validate(schema: &Structural, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = validate_object_meta_subdomain(obj.get("metadata").unwrap_or(&Value::Null));
    let root = FieldPath::root();
    validate_value(schema, obj, &root, &mut errs);
    validate_lists(schema, obj, &root, &mut errs);
    validate_embedded(schema, obj, &root, &mut errs);
    errs.extend(validate_rules(schema, obj, old));
    // Upstream validates a custom object from a nil field path: what is wrong with the
    // object as a whole (a root rule, a root keyword) reads `<nil>: ...`.
    for e in &mut errs {
        if e.field.is_empty() {
            e.field = NIL_PATH.to_string();
        }
    }
    errs
}

/// How upstream prints the nil `field.Path` it validates custom objects from.
const NIL_PATH: &str = "<nil>";

// ---------------------------------------------------------------------------
// OpenAPI keywords
// ---------------------------------------------------------------------------

/// The JSON type name kube-openapi reports for a value.
fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(n) if is_integral(n) => "integer",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_integral(n: &serde_json::Number) -> bool {
    n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
}

fn has_type(t: &str, v: &Value) -> bool {
    match t {
        "" => true,
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "boolean" => v.is_boolean(),
        "number" => v.is_number(),
        "integer" => matches!(v, Value::Number(n) if is_integral(n)),
        _ => true,
    }
}

/// Go's rendering of a decoded JSON value (`%v` for scalars, `%#v` for composites).
pub(crate) fn go_render(v: &Value) -> String {
    match v {
        Value::Null => "null".into(),
        Value::String(s) => go_quote(s),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::Array(a) => format!(
            "[]interface {{}}{{{}}}",
            a.iter().map(go_render).collect::<Vec<_>>().join(", ")
        ),
        Value::Object(m) => {
            let sorted: BTreeMap<&String, &Value> = m.iter().collect();
            let items: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{}", go_quote(k), go_render(v)))
                .collect();
            format!("map[string]interface {{}}{{{}}}", items.join(", "))
        }
    }
}

/// A number in a message, as Go's `%v` prints a float64 bound.
fn num(f: f64) -> String {
    format!("{f}")
}

fn invalid(p: &FieldPath, value: &Value, message: String) -> FieldError {
    FieldError::invalid_rendered(p.field.clone(), go_render(value), message)
}

/// Validates `v` against one schema node and, recursively, what lies below it.
pub(crate) fn validate_value(s: &Structural, v: &Value, p: &FieldPath, errs: &mut Vec<FieldError>) {
    let name = if p.openapi.is_empty() {
        "body"
    } else {
        p.openapi.as_str()
    };
    let type_ = if s.x_int_or_string {
        "integer,string"
    } else {
        s.type_.as_str()
    };
    if v.is_null() {
        if !type_.is_empty() && !s.nullable {
            errs.push(FieldError::invalid_rendered(
                p.field.clone(),
                go_quote("null"),
                format!("{name} in body must be of type {type_}: \"null\""),
            ));
        }
        return;
    }
    let type_ok = if s.x_int_or_string {
        has_type("integer", v) || has_type("string", v)
    } else {
        has_type(type_, v)
    };
    if !type_ok {
        let actual = type_name(v);
        errs.push(FieldError::invalid_rendered(
            p.field.clone(),
            go_quote(actual),
            format!("{name} in body must be of type {type_}: \"{actual}\""),
        ));
        return;
    }
    match v {
        Value::String(st) => validate_string(s, st, v, p, name, errs),
        Value::Number(n) => validate_number(s, n.as_f64().unwrap_or(0.0), v, p, name, errs),
        Value::Array(items) => validate_array(s, items, v, p, name, errs),
        Value::Object(m) => validate_object(s, m, p, name, errs),
        _ => {}
    }
    if let Some(allowed) = &s.enum_ {
        if !allowed.iter().any(|a| json_equal(a, v)) {
            let supported: Vec<String> = allowed
                .iter()
                .map(|a| match a {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                })
                .collect();
            errs.push(FieldError::not_supported_rendered(
                p.field.clone(),
                go_render(v),
                &supported,
            ));
        }
    }
    validate_junctors(s, v, p, name, errs);
}

/// JSON equality with numbers compared by value (`1` equals `1.0`).
fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| json_equal(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, a)| y.get(k).is_some_and(|b| json_equal(a, b)))
        }
        _ => a == b,
    }
}

fn validate_string(
    s: &Structural,
    st: &str,
    v: &Value,
    p: &FieldPath,
    name: &str,
    errs: &mut Vec<FieldError>,
) {
    let chars = st.chars().count() as u64;
    if let Some(max) = s.max_length {
        if chars > max {
            errs.push(FieldError::too_long(p.field.clone(), max as usize));
        }
    }
    if let Some(min) = s.min_length {
        if chars < min {
            errs.push(invalid(
                p,
                v,
                format!("{name} in body should be at least {min} chars long"),
            ));
        }
    }
    if let Some(pattern) = &s.pattern {
        if let Ok(re) = &pattern.regex {
            if !re.is_match(st) {
                errs.push(invalid(
                    p,
                    v,
                    format!("{name} in body should match '{}'", pattern.source),
                ));
            }
        }
    }
    if !s.format.is_empty() && formats::check(&s.format, st) == Some(false) {
        errs.push(invalid(
            p,
            v,
            format!(
                "{name} in body must be of type {}: {}",
                s.format,
                go_quote(st)
            ),
        ));
    }
}

fn validate_number(
    s: &Structural,
    n: f64,
    v: &Value,
    p: &FieldPath,
    name: &str,
    errs: &mut Vec<FieldError>,
) {
    if let Some(m) = s.multiple_of {
        if m != 0.0 && ((n / m) - (n / m).round()).abs() > f64::EPSILON * (n / m).abs().max(1.0) {
            errs.push(invalid(
                p,
                v,
                format!("{name} in body should be a multiple of {}", num(m)),
            ));
        }
    }
    if let Some(max) = s.maximum {
        if s.exclusive_maximum && n >= max {
            errs.push(invalid(
                p,
                v,
                format!("{name} in body should be less than {}", num(max)),
            ));
        } else if n > max {
            errs.push(invalid(
                p,
                v,
                format!(
                    "{name} in body should be less than or equal to {}",
                    num(max)
                ),
            ));
        }
    }
    if let Some(min) = s.minimum {
        if s.exclusive_minimum && n <= min {
            errs.push(invalid(
                p,
                v,
                format!("{name} in body should be greater than {}", num(min)),
            ));
        } else if n < min {
            errs.push(invalid(
                p,
                v,
                format!(
                    "{name} in body should be greater than or equal to {}",
                    num(min)
                ),
            ));
        }
    }
}

fn validate_array(
    s: &Structural,
    items: &[Value],
    _v: &Value,
    p: &FieldPath,
    name: &str,
    errs: &mut Vec<FieldError>,
) {
    let len = items.len() as u64;
    if let Some(min) = s.min_items {
        if len < min {
            errs.push(FieldError::invalid_rendered(
                p.field.clone(),
                len.to_string(),
                format!("{name} in body should have at least {min} items"),
            ));
        }
    }
    if let Some(max) = s.max_items {
        if len > max {
            errs.push(FieldError::too_many(
                p.field.clone(),
                len as usize,
                max as usize,
            ));
        }
    }
    if s.unique_items {
        let dup = items
            .iter()
            .enumerate()
            .any(|(i, a)| items[i + 1..].iter().any(|b| json_equal(a, b)));
        if dup {
            errs.push(FieldError::invalid_rendered(
                p.field.clone(),
                go_quote(""),
                format!("{name} in body shouldn't contain duplicates"),
            ));
        }
    }
    if let Some(item_schema) = &s.items {
        for (i, item) in items.iter().enumerate() {
            validate_value(item_schema, item, &p.index(i), errs);
        }
    }
}

fn validate_object(
    s: &Structural,
    m: &serde_json::Map<String, Value>,
    p: &FieldPath,
    name: &str,
    errs: &mut Vec<FieldError>,
) {
    for r in &s.required {
        if !m.contains_key(r) {
            errs.push(FieldError::required(p.child(r).field, ""));
        }
    }
    let len = m.len() as u64;
    if let Some(max) = s.max_properties {
        if len > max {
            errs.push(FieldError::too_many(
                p.field.clone(),
                len as usize,
                max as usize,
            ));
        }
    }
    if let Some(min) = s.min_properties {
        if len < min {
            errs.push(FieldError::invalid_rendered(
                p.field.clone(),
                len.to_string(),
                format!("{name} in body should have at least {min} properties"),
            ));
        }
    }
    // Properties in the schema's (sorted) order, then the object's other keys.
    for (k, ps) in &s.properties {
        if let Some(x) = m.get(k) {
            validate_value(ps, x, &p.child(k), errs);
        }
    }
    for (k, x) in m.iter().filter(|(k, _)| !s.properties.contains_key(*k)) {
        match &s.additional_properties {
            Some(AdditionalProperties::Schema(ap)) => validate_value(ap, x, &p.key(k), errs),
            Some(AdditionalProperties::Allows(false)) => {
                errs.push(FieldError::invalid_rendered(
                    p.field.clone(),
                    go_quote(""),
                    format!("{} in body is a forbidden property", p.child(k).openapi),
                ));
            }
            _ => {}
        }
    }
}

/// `allOf`, `anyOf`, `oneOf`, `not`: each alternative is validated at the same place.
fn validate_junctors(
    s: &Structural,
    v: &Value,
    p: &FieldPath,
    name: &str,
    errs: &mut Vec<FieldError>,
) {
    let composite = |msg: String| FieldError::invalid_rendered(p.field.clone(), go_quote(""), msg);
    let run = |sub: &Structural| {
        let mut e = Vec::new();
        validate_value(sub, v, p, &mut e);
        e
    };
    if !s.all_of.is_empty() {
        let failures: Vec<FieldError> = s.all_of.iter().flat_map(run).collect();
        if !failures.is_empty() {
            errs.extend(failures);
            errs.push(composite(format!(
                "{name} in body must validate all the schemas (allOf)"
            )));
        }
    }
    if !s.any_of.is_empty() {
        let results: Vec<Vec<FieldError>> = s.any_of.iter().map(run).collect();
        if results.iter().all(|r| !r.is_empty()) {
            errs.push(composite(format!(
                "{name} in body must validate at least one schema (anyOf)"
            )));
            errs.extend(results.into_iter().next().unwrap_or_default());
        }
    }
    if !s.one_of.is_empty() {
        let results: Vec<Vec<FieldError>> = s.one_of.iter().map(run).collect();
        let passing = results.iter().filter(|r| r.is_empty()).count();
        if passing == 0 {
            errs.push(composite(format!(
                "{name} in body must validate one and only one schema (oneOf)"
            )));
            errs.extend(results.into_iter().next().unwrap_or_default());
        } else if passing > 1 {
            errs.push(composite(format!(
                "{name} in body must validate one and only one schema (oneOf). Found {passing} valid alternatives"
            )));
        }
    }
    if let Some(not) = &s.not {
        if run(not).is_empty() {
            errs.push(composite(format!(
                "{name} in body must not validate the schema (not)"
            )));
        }
    }
}

// ---------------------------------------------------------------------------
// x-kubernetes-list-type
// ---------------------------------------------------------------------------

/// Upstream `ValidateListSetsAndMaps`: set items and map-list keys must be unique.
fn validate_lists(s: &Structural, v: &Value, p: &FieldPath, errs: &mut Vec<FieldError>) {
    match v {
        Value::Array(items) => {
            match s.x_list_type.as_deref() {
                Some("set") => {
                    for (i, item) in items.iter().enumerate() {
                        if items[..i].iter().any(|prev| json_equal(prev, item)) {
                            errs.push(FieldError::duplicate_rendered(
                                p.index(i).field,
                                go_render(item),
                            ));
                        }
                    }
                }
                Some("map") => {
                    let mut seen: Vec<Vec<Option<&Value>>> = Vec::new();
                    for (i, item) in items.iter().enumerate() {
                        let Some(m) = item.as_object() else { continue };
                        let key: Vec<Option<&Value>> =
                            s.x_list_map_keys.iter().map(|k| m.get(k)).collect();
                        if seen.iter().any(|prev| keys_equal(prev, &key)) {
                            let mut shown = serde_json::Map::new();
                            for (k, kv) in s.x_list_map_keys.iter().zip(&key) {
                                if let Some(kv) = kv {
                                    shown.insert(k.clone(), (*kv).clone());
                                }
                            }
                            errs.push(FieldError::duplicate_rendered(
                                p.index(i).field,
                                go_render(&Value::Object(shown)),
                            ));
                        } else {
                            seen.push(key);
                        }
                    }
                }
                _ => {}
            }
            if let Some(is) = &s.items {
                for (i, item) in items.iter().enumerate() {
                    validate_lists(is, item, &p.index(i), errs);
                }
            }
        }
        Value::Object(m) => {
            for (k, x) in m {
                if let Some(ps) = s.properties.get(k) {
                    validate_lists(ps, x, &p.child(k), errs);
                } else if let Some(ap) = s.additional_schema() {
                    validate_lists(ap, x, &p.key(k), errs);
                }
            }
        }
        _ => {}
    }
}

fn keys_equal(a: &[Option<&Value>], b: &[Option<&Value>]) -> bool {
    a.len() == b.len()
        && a.iter().zip(b).all(|(x, y)| match (x, y) {
            (Some(x), Some(y)) => json_equal(x, y),
            (None, None) => true,
            _ => false,
        })
}

// ---------------------------------------------------------------------------
// x-kubernetes-embedded-resource
// ---------------------------------------------------------------------------

/// Upstream `objectmeta.Validate`: embedded objects need `apiVersion` and `kind`, and
/// their `metadata` is validated as ObjectMeta (names are not required there).
fn validate_embedded(s: &Structural, v: &Value, p: &FieldPath, errs: &mut Vec<FieldError>) {
    match v {
        Value::Object(m) => {
            if s.x_embedded_resource {
                validate_embedded_resource(m, p, errs);
            }
            for (k, x) in m {
                if let Some(ps) = s.properties.get(k) {
                    validate_embedded(ps, x, &p.child(k), errs);
                } else if let Some(ap) = s.additional_schema() {
                    validate_embedded(ap, x, &p.key(k), errs);
                }
            }
        }
        Value::Array(items) => {
            if let Some(is) = &s.items {
                for (i, item) in items.iter().enumerate() {
                    validate_embedded(is, item, &p.index(i), errs);
                }
            }
        }
        _ => {}
    }
}

fn validate_embedded_resource(
    m: &serde_json::Map<String, Value>,
    p: &FieldPath,
    errs: &mut Vec<FieldError>,
) {
    for key in ["apiVersion", "kind"] {
        let fp = p.child(key).field;
        match m.get(key) {
            None => errs.push(FieldError::required(fp, "must not be empty")),
            Some(Value::String(s)) if s.is_empty() => {
                errs.push(FieldError::invalid(fp, s, "must not be empty"))
            }
            Some(Value::String(s)) if key == "apiVersion" => {
                if s.matches('/').count() > 1 || s.starts_with('/') || s.ends_with('/') {
                    errs.push(FieldError::invalid(
                        fp,
                        s,
                        format!("unexpected GroupVersion string: {s}"),
                    ));
                }
            }
            Some(Value::String(s)) => {
                let msgs = crate::api::validation::is_dns1035_label(&s.to_lowercase());
                if !msgs.is_empty() {
                    errs.push(FieldError::invalid(
                        fp,
                        s,
                        format!(
                            "may have mixed case, but should otherwise match: {}",
                            msgs.join(",")
                        ),
                    ));
                }
            }
            Some(other) => errs.push(invalid(&p.child(key), other, "must be a string".into())),
        }
    }
    if let Some(meta) = m.get("metadata").filter(|x| x.is_object()) {
        for mut e in validate_object_meta_subdomain(meta) {
            let on_name = e.field == "metadata.name" || e.field == "metadata.generateName";
            if on_name && e.kind == FieldErrorKind::Required {
                continue;
            }
            e.field = if p.field.is_empty() {
                e.field
            } else {
                format!("{}.{}", p.field, e.field)
            };
            errs.push(e);
        }
    }
}

#[cfg(test)]
#[path = "validate_tests.rs"]
mod tests;
