//! CRD-time checks of each `openAPIV3Schema` node (upstream
//! `ValidateCustomResourceDefinitionOpenAPISchema` and `specStandardValidatorV3`):
//! unsupported keywords, defaults where they may not be, list and map types, and the
//! `x-kubernetes-validations` entries, whose rules must compile.

use serde_json::{Map, Value};

use super::cel::compile_rule;
use super::rules::normalize_field_path;
use super::schema::Structural;
use super::validate::go_render;
use super::FieldPath;
use crate::api::validation::{go_quote, FieldError};

const OPENAPI_V3_TYPES: [&str; 6] = ["array", "boolean", "integer", "number", "object", "string"];
const META_FIELDS: [&str; 3] = ["metadata", "kind", "apiVersion"];
const VALIDATION_REASONS: [&str; 4] = [
    "FieldValueDuplicate",
    "FieldValueForbidden",
    "FieldValueInvalid",
    "FieldValueRequired",
];

/// What a node inherits from the nodes above it.
#[derive(Clone, Default)]
pub(crate) struct Ctx {
    pub forbid_defaults: Option<String>,
    pub inside_resource_meta: bool,
    /// The first ancestor whose values cannot be correlated with the old object.
    pub uncorrelatable: Option<String>,
    /// Compile the rules (the schema is structural).
    pub compile_rules: bool,
}

/// Checks `schema` (at `p`), appending schema errors to `errs` and rule compilation errors
/// to `cel_errs` (upstream reports those after the schema errors).
pub(crate) fn check_schema(
    schema: &Value,
    p: &FieldPath,
    ctx: &Ctx,
    is_root: bool,
    errs: &mut Vec<FieldError>,
    cel_errs: &mut Vec<FieldError>,
) {
    let Some(m) = schema.as_object() else { return };
    let before = errs.len();
    standard(m, p, ctx, errs);
    let str_of = |k: &str| m.get(k).and_then(Value::as_str);
    let type_ = str_of("type").unwrap_or("");
    if m.get("uniqueItems") == Some(&Value::Bool(true)) {
        errs.push(FieldError::forbidden(
            p.child("uniqueItems").field,
            "uniqueItems cannot be set to true since the runtime complexity becomes quadratic",
        ));
    }
    let props = m.get("properties").and_then(Value::as_object);
    if let Some(ap) = m.get("additionalProperties").filter(|v| !v.is_null()) {
        if props.is_some_and(|p| !p.is_empty()) && (ap == &Value::Bool(false) || ap.is_object()) {
            errs.push(FieldError::forbidden(
                p.child("additionalProperties").field,
                "additionalProperties and properties are mutual exclusive",
            ));
        }
        let mut sub = ctx.clone();
        if ctx.inside_resource_meta {
            sub.forbid_defaults =
                Some("inside additionalProperties applying to object metadata".into());
        }
        check_schema(
            ap,
            &p.child("additionalProperties"),
            &sub,
            false,
            errs,
            cel_errs,
        );
    }
    let map_correlatable = str_of("x-kubernetes-map-type") != Some("atomic");
    let embedded = m.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true));
    let mut sorted: Vec<(&String, &Value)> = props.into_iter().flatten().collect();
    sorted.sort_by_key(|(k, _)| *k);
    for (k, ps) in sorted {
        let mut sub = ctx.clone();
        if !map_correlatable && sub.uncorrelatable.is_none() {
            sub.uncorrelatable = Some(p.field.clone());
        }
        if (is_root || embedded) && META_FIELDS.contains(&k.as_str()) {
            sub.inside_resource_meta = true;
            if is_root {
                sub.forbid_defaults = Some(format!("in top-level {k}"));
            }
        }
        check_schema(
            ps,
            &p.child("properties").key(k),
            &sub,
            false,
            errs,
            cel_errs,
        );
    }
    let no_rules = Ctx {
        compile_rules: false,
        ..ctx.clone()
    };
    if let Some(n) = m.get("not") {
        check_schema(n, &p.child("not"), &no_rules, false, errs, cel_errs);
    }
    for key in ["allOf", "oneOf", "anyOf"] {
        for (i, s) in m
            .get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            check_schema(s, &p.child(key).index(i), &no_rules, false, errs, cel_errs);
        }
    }
    let list_type = str_of("x-kubernetes-list-type");
    if let Some(items) = m.get("items").filter(|i| i.is_object()) {
        let mut sub = ctx.clone();
        if list_type != Some("map") && sub.uncorrelatable.is_none() {
            sub.uncorrelatable = Some(p.field.clone());
        }
        check_schema(items, &p.child("items"), &sub, false, errs, cel_errs);
    }
    if m.get("x-kubernetes-preserve-unknown-fields") == Some(&Value::Bool(false)) {
        errs.push(FieldError::invalid_rendered(
            p.child("x-kubernetes-preserve-unknown-fields").field,
            "false",
            "must be true or undefined",
        ));
    }
    check_map_and_list_types(m, p, type_, list_type, errs);
    if let Some(rules) = m.get("x-kubernetes-validations").and_then(Value::as_array) {
        check_rules(m, rules, p, ctx, before, errs, cel_errs);
    }
}

/// Upstream `specStandardValidatorV3.validate`.
fn standard(m: &Map<String, Value>, p: &FieldPath, ctx: &Ctx, errs: &mut Vec<FieldError>) {
    let forbid = |errs: &mut Vec<FieldError>, key: &str, msg: &str| {
        errs.push(FieldError::forbidden(p.child(key).field, msg));
    };
    if let Some(t) = m.get("type").and_then(Value::as_str) {
        if !t.is_empty() && !OPENAPI_V3_TYPES.contains(&t) {
            errs.push(FieldError::not_supported(
                p.child("type").field,
                t,
                &OPENAPI_V3_TYPES,
            ));
        }
        if t == "null" {
            forbid(
                errs,
                "type",
                "type cannot be set to null, use nullable as an alternative",
            );
        }
    }
    if let (Some(reason), Some(d)) = (&ctx.forbid_defaults, m.get("default")) {
        if !d.is_null() {
            forbid(errs, "default", &format!("must not be set {reason}"));
        }
    }
    if m.get("id")
        .and_then(Value::as_str)
        .is_some_and(|s| !s.is_empty())
    {
        forbid(errs, "id", "id is not supported");
    }
    if m.contains_key("additionalItems") {
        forbid(errs, "additionalItems", "additionalItems is not supported");
    }
    if m.get("patternProperties")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty())
    {
        forbid(
            errs,
            "patternProperties",
            "patternProperties is not supported",
        );
    }
    if m.get("definitions")
        .and_then(Value::as_object)
        .is_some_and(|p| !p.is_empty())
    {
        forbid(errs, "definitions", "definitions is not supported");
    }
    if m.contains_key("dependencies") {
        forbid(errs, "dependencies", "dependencies is not supported");
    }
    if m.contains_key("$ref") {
        forbid(errs, "$ref", "$ref is not supported");
    }
    if m.get("items").is_some_and(Value::is_array) {
        forbid(
            errs,
            "items",
            "items must be a schema object and not an array",
        );
    }
    if ctx.inside_resource_meta
        && m.get("x-kubernetes-embedded-resource") == Some(&Value::Bool(true))
    {
        forbid(
            errs,
            "x-kubernetes-embedded-resource",
            "must not be used inside of resource meta",
        );
    }
}

fn check_map_and_list_types(
    m: &Map<String, Value>,
    p: &FieldPath,
    type_: &str,
    list_type: Option<&str>,
    errs: &mut Vec<FieldError>,
) {
    let type_path = p.child("type").field;
    let must_be = |errs: &mut Vec<FieldError>, msg: &str| {
        errs.push(if type_.is_empty() {
            FieldError::required(type_path.clone(), msg)
        } else {
            FieldError::invalid(type_path.clone(), type_, msg)
        });
    };
    if let Some(mt) = m.get("x-kubernetes-map-type").and_then(Value::as_str) {
        if type_ != "object" {
            must_be(errs, "must be object if x-kubernetes-map-type is specified");
        }
        if mt != "atomic" && mt != "granular" {
            errs.push(FieldError::not_supported(
                p.child("x-kubernetes-map-type").field,
                mt,
                &["atomic", "granular"],
            ));
        }
    }
    let items = m.get("items").and_then(Value::as_object);
    let item_type = items
        .and_then(|i| i.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    if let Some(lt) = list_type {
        if type_ != "array" {
            must_be(errs, "must be array if x-kubernetes-list-type is specified");
        } else if let (Some(is), "set") = (items, lt) {
            let atomic_msg = "must be atomic as item of a list with x-kubernetes-list-type=set";
            match item_type {
                "array" => {
                    if let Some(ilt) = is.get("x-kubernetes-list-type").and_then(Value::as_str) {
                        if ilt != "atomic" {
                            errs.push(FieldError::invalid(
                                p.child("items").child("x-kubernetes-list-type").field,
                                ilt,
                                atomic_msg,
                            ));
                        }
                    }
                }
                "object"
                    if is.get("x-kubernetes-map-type").and_then(Value::as_str)
                        != Some("atomic") =>
                {
                    errs.push(FieldError::invalid_rendered(
                        p.child("items").child("x-kubernetes-map-type").field,
                        "null",
                        atomic_msg,
                    ));
                }
                _ => {}
            }
        }
        if !matches!(lt, "atomic" | "set" | "map") {
            errs.push(FieldError::not_supported(
                p.child("x-kubernetes-list-type").field,
                lt,
                &["atomic", "set", "map"],
            ));
        }
    }
    let keys: Vec<&str> = m
        .get("x-kubernetes-list-map-keys")
        .and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    let keys_rendered = format!(
        "[]string{{{}}}",
        keys.iter()
            .map(|k| go_quote(k))
            .collect::<Vec<_>>()
            .join(", ")
    );
    if !keys.is_empty() {
        let msg = "must be map if x-kubernetes-list-map-keys is non-empty";
        match list_type {
            None => errs.push(FieldError::required(
                p.child("x-kubernetes-list-type").field,
                msg,
            )),
            Some("map") => {}
            Some(other) => errs.push(FieldError::invalid(
                p.child("x-kubernetes-list-type").field,
                other,
                msg,
            )),
        }
    }
    if list_type == Some("map") {
        if keys.is_empty() {
            errs.push(FieldError::required(
                p.child("x-kubernetes-list-map-keys").field,
                "must not be empty if x-kubernetes-list-type is map",
            ));
        }
        match items {
            None => errs.push(FieldError::required(
                p.child("items").field,
                "must have a schema if x-kubernetes-list-type is map",
            )),
            Some(_) if item_type != "object" => errs.push(FieldError::invalid(
                p.child("items").child("type").field,
                item_type,
                "must be object if parent array's x-kubernetes-list-type is map",
            )),
            Some(is) => {
                let item_props = is.get("properties").and_then(Value::as_object);
                let mut seen: Vec<&str> = Vec::new();
                for k in &keys {
                    match item_props.and_then(|ip| ip.get(*k)) {
                        Some(kp) => {
                            let kt = kp.get("type").and_then(Value::as_str).unwrap_or("");
                            if kt == "array" || kt == "object" {
                                errs.push(FieldError::invalid(
                                    p.child("items").child("properties").key(k).child("type").field,
                                    item_type,
                                    "must be a scalar type if parent array's x-kubernetes-list-type is map",
                                ));
                            }
                        }
                        None => errs.push(FieldError::invalid_rendered(
                            p.child("x-kubernetes-list-map-keys").field,
                            keys_rendered.clone(),
                            "entries must all be names of item properties",
                        )),
                    }
                    if seen.contains(k) {
                        errs.push(FieldError::invalid_rendered(
                            p.child("x-kubernetes-list-map-keys").field,
                            keys_rendered.clone(),
                            "must not contain duplicate entries",
                        ));
                    }
                    seen.push(k);
                }
            }
        }
    }
    // Upstream `validateMapListKeysMapSet`.
    if let (Some(lt @ ("set" | "map")), Some(is)) = (list_type, items) {
        if is.get("nullable") == Some(&Value::Bool(true)) {
            errs.push(FieldError::forbidden(
                p.child("items").child("nullable").field,
                format!("cannot be nullable when x-kubernetes-list-type is {lt}"),
            ));
        }
        if lt == "map" {
            let required: Vec<&str> = is
                .get("required")
                .and_then(Value::as_array)
                .map(|a| a.iter().filter_map(Value::as_str).collect())
                .unwrap_or_default();
            let item_props = is.get("properties").and_then(Value::as_object);
            for k in &keys {
                let Some(kp) = item_props.and_then(|ip| ip.get(*k)) else {
                    continue;
                };
                let kpath = p.child("items").child("properties").key(k);
                if !required.contains(k) && kp.get("default").is_none_or(Value::is_null) {
                    errs.push(FieldError::required(
                        kpath.child("default").field,
                        "this property is in x-kubernetes-list-map-keys, so it must have a default or be a required property",
                    ));
                }
                if kp.get("nullable") == Some(&Value::Bool(true)) {
                    errs.push(FieldError::forbidden(
                        kpath.child("nullable").field,
                        "this property is in x-kubernetes-list-map-keys, so it cannot be nullable",
                    ));
                }
            }
        }
    }
}

/// Go's `%#v` of an `apiextensions.ValidationRule`, as upstream prints a bad rule.
fn render_rule(r: &Map<String, Value>) -> String {
    let s = |k: &str| go_quote(r.get(k).and_then(Value::as_str).unwrap_or(""));
    let reason = match r.get("reason").and_then(Value::as_str) {
        Some(x) => format!("&{}", go_quote(x)),
        None => "(*apiextensions.FieldValueErrorReason)(nil)".into(),
    };
    let old = match r.get("optionalOldSelf").and_then(Value::as_bool) {
        Some(b) => format!("&{b}"),
        None => "(*bool)(nil)".into(),
    };
    format!(
        "apiextensions.ValidationRule{{Rule:{}, Message:{}, MessageExpression:{}, Reason:{reason}, FieldPath:{}, OptionalOldSelf:{old}}}",
        s("rule"),
        s("message"),
        s("messageExpression"),
        s("fieldPath")
    )
}

fn has_newlines(s: &str) -> bool {
    s.contains(['\n', '\r'])
}

fn check_rules(
    node: &Map<String, Value>,
    rules: &[Value],
    p: &FieldPath,
    ctx: &Ctx,
    errs_before: usize,
    errs: &mut Vec<FieldError>,
    cel_errs: &mut Vec<FieldError>,
) {
    let structural = Structural::from_json(&Value::Object(node.clone())).ok();
    for (i, r) in rules.iter().enumerate() {
        let rp = p.child("x-kubernetes-validations").index(i);
        let Some(rm) = r.as_object() else { continue };
        let text = |k: &str| rm.get(k).and_then(Value::as_str).unwrap_or("");
        let (rule, message, msg_expr, field_path) = (
            text("rule"),
            text("message"),
            text("messageExpression"),
            text("fieldPath"),
        );
        if rule.trim().is_empty() {
            errs.push(FieldError::required(
                rp.child("rule").field,
                "rule is not specified",
            ));
        } else if !message.is_empty() && message.trim().is_empty() {
            errs.push(FieldError::invalid(
                rp.child("message").field,
                message,
                "must be non-empty if specified",
            ));
        } else if has_newlines(message.trim()) {
            errs.push(FieldError::invalid(
                rp.child("message").field,
                message,
                "must not contain line breaks",
            ));
        } else if has_newlines(rule.trim()) && message.trim().is_empty() {
            errs.push(FieldError::required(
                rp.child("message").field,
                "message must be specified if rule contains line breaks",
            ));
        }
        if !msg_expr.is_empty() && msg_expr.trim().is_empty() {
            errs.push(FieldError::required(
                rp.child("messageExpression").field,
                "messageExpression must be non-empty if specified",
            ));
        }
        if let Some(reason) = rm.get("reason").and_then(Value::as_str) {
            if !VALIDATION_REASONS.contains(&reason) {
                errs.push(FieldError::not_supported(
                    rp.child("reason").field,
                    reason,
                    &VALIDATION_REASONS,
                ));
            }
        }
        if !field_path.is_empty() && field_path.trim().is_empty() {
            errs.push(FieldError::invalid(
                rp.child("fieldPath").field,
                field_path,
                "must be non-empty if specified",
            ));
        }
        if has_newlines(field_path) {
            errs.push(FieldError::invalid(
                rp.child("fieldPath").field,
                field_path,
                "must not contain line breaks",
            ));
        }
        if !field_path.trim().is_empty() {
            if let Some(s) = &structural {
                if normalize_field_path(s, field_path.trim()).is_none() {
                    errs.push(FieldError::invalid(
                        rp.child("fieldPath").field,
                        field_path,
                        "must be a valid path",
                    ));
                }
            }
        }
    }
    // Rules compile only where this node and those below it have no schema errors.
    if errs.len() != errs_before || !ctx.compile_rules {
        return;
    }
    for (i, r) in rules.iter().enumerate() {
        let rp = p.child("x-kubernetes-validations").index(i);
        let Some(rm) = r.as_object() else { continue };
        let rule = rm.get("rule").and_then(Value::as_str).unwrap_or("");
        if rule.trim().is_empty() {
            continue;
        }
        match compile_rule(rule) {
            Err(e) => cel_errs.push(FieldError::invalid_rendered(
                rp.child("rule").field,
                render_rule(rm),
                format!("compilation failed: {e}"),
            )),
            Ok(compiled) => {
                if compiled.uses_old_self {
                    if let Some(within) = &ctx.uncorrelatable {
                        cel_errs.push(FieldError::invalid(
                            rp.child("rule").field,
                            rule,
                            format!("oldSelf cannot be used on the uncorrelatable portion of the schema within {within}"),
                        ));
                    }
                } else if let Some(b) = rm.get("optionalOldSelf").and_then(Value::as_bool) {
                    cel_errs.push(FieldError::invalid_rendered(
                        rp.child("optionalOldSelf").field,
                        b.to_string(),
                        "may not be set if oldSelf is not used in rule",
                    ));
                }
            }
        }
        let msg_expr = rm
            .get("messageExpression")
            .and_then(Value::as_str)
            .unwrap_or("");
        if !msg_expr.trim().is_empty() {
            if let Err(e) = compile_rule(msg_expr) {
                cel_errs.push(FieldError::invalid_rendered(
                    rp.child("messageExpression").field,
                    render_rule(rm),
                    format!("messageExpression compilation failed: {e}"),
                ));
            }
        }
    }
}

/// Renders a value for a root-schema error the way upstream prints its struct: here the
/// JSON as Go prints a map (upstream prints its Go struct).
pub(crate) fn render_schema(v: &Value) -> String {
    go_render(v)
}
