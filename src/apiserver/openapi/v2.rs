//! Swagger 2.0 for `/openapi/v2`: one document converted from the served OpenAPI v3
//! group-version documents as upstream's v3→v2 conversion does, its gnostic protobuf
//! encoding (`protobuf.rs`), and the `Accept` negotiation between the two.
//!
//! Conversion rules (upstream builds v2 and v3 from the same definitions; the v3 form differs
//! only by `#/components/schemas/` refs, `allOf: [{$ref}]` wrappers around refs with siblings
//! and `requestBody`; custom resources go through apiextensions' `ToStructuralOpenAPIV2`):
//! - `$ref`s point to `#/definitions/`; a single-`$ref` `allOf` becomes a `$ref` beside its
//!   siblings (as the v2 builder writes it), any other `allOf`, `oneOf`, `anyOf`, `not` is
//!   dropped;
//! - `nullable: true` drops `type`, `items` and `properties` (and the field from its parent's
//!   `required`); `x-kubernetes-preserve-unknown-fields` drops `items` and `properties`; an
//!   `array` left without `items` loses its `type` (kubectl rejects it otherwise);
//! - keywords Swagger 2.0 lacks are dropped (gnostic refuses them); `x-` extensions stay;
//! - `requestBody` becomes the `body` parameter, its media types `consumes`; the responses'
//!   media types become `produces`, their schema the response `schema`.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

mod protobuf;

pub use protobuf::{to_protobuf, Error};

const V3_REF_PREFIX: &str = "#/components/schemas/";
const V2_REF_PREFIX: &str = "#/definitions/";
const GVK: &str = "x-kubernetes-group-version-kind";

/// The keywords of a Swagger 2.0 Schema Object kept from a v3 schema (besides `$ref`,
/// `properties`, `items`, `additionalProperties`, `required` and `x-` extensions, which are
/// converted on their own); gnostic refuses a schema with any other key.
const SCHEMA_KEYWORDS: &[&str] = &[
    "default",
    "description",
    "enum",
    "example",
    "exclusiveMaximum",
    "exclusiveMinimum",
    "externalDocs",
    "format",
    "maxItems",
    "maxLength",
    "maxProperties",
    "maximum",
    "minItems",
    "minLength",
    "minProperties",
    "minimum",
    "multipleOf",
    "pattern",
    "readOnly",
    "title",
    "type",
    "uniqueItems",
    "xml",
];

/// What a non-body parameter takes from its v3 `schema` (a Swagger 2.0 parameter carries
/// them itself).
const PARAMETER_SCHEMA_KEYWORDS: &[&str] = &[
    "type",
    "format",
    "items",
    "collectionFormat",
    "default",
    "maximum",
    "exclusiveMaximum",
    "minimum",
    "exclusiveMinimum",
    "maxLength",
    "minLength",
    "pattern",
    "maxItems",
    "minItems",
    "uniqueItems",
    "enum",
    "multipleOf",
];

const METHODS: &[&str] = &["get", "put", "post", "delete", "options", "head", "patch"];

/// The media type of the protobuf form (what the server answers with, whichever of the two
/// protobuf names the client asked for).
pub const PROTOBUF_CONTENT_TYPE: &str =
    "application/com.github.proto-openapi.spec.v2.v1.0+protobuf";
/// The older name of the protobuf form, which kubectl before 1.27 sends.
const PROTOBUF_SUBTYPE_DEPRECATED: &str = "com.github.proto-openapi.spec.v2@v1.0+protobuf";
const PROTOBUF_SUBTYPE: &str = "com.github.proto-openapi.spec.v2.v1.0+protobuf";

/// The two encodings `/openapi/v2` is served in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Json,
    Protobuf,
}

impl Format {
    pub fn content_type(self) -> &'static str {
        match self {
            Format::Json => "application/json",
            Format::Protobuf => PROTOBUF_CONTENT_TYPE,
        }
    }
}

/// Picks the encoding for an `Accept` header as upstream's handler does: clauses in order of
/// preference (quality, then specificity), the first one that matches JSON or protobuf wins;
/// `None` (406) when nothing matches. An empty header accepts anything (JSON).
pub fn negotiate(accept: &str) -> Option<Format> {
    let accept = if accept.trim().is_empty() {
        "*/*"
    } else {
        accept
    };
    let mut clauses: Vec<(f32, u8, &str, &str)> = accept
        .split(',')
        .filter_map(|clause| {
            let mut parts = clause.split(';');
            let media = parts.next()?.trim();
            let quality = parts
                .filter_map(|p| p.trim().strip_prefix("q="))
                .find_map(|q| q.trim().parse::<f32>().ok())
                .unwrap_or(1.0);
            let (ty, sub) = media.split_once('/').unwrap_or((media, "*"));
            let specificity = u8::from(ty != "*") + u8::from(sub != "*");
            (quality > 0.0).then_some((quality, specificity, ty, sub))
        })
        .collect();
    // Stable: equally preferred clauses keep the client's order.
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(b.1.cmp(&a.1)));
    let offered = [
        ("json", Format::Json),
        (PROTOBUF_SUBTYPE_DEPRECATED, Format::Protobuf),
        (PROTOBUF_SUBTYPE, Format::Protobuf),
    ];
    clauses.iter().find_map(|&(_, _, ty, sub)| {
        if ty != "application" && ty != "*" {
            return None;
        }
        offered
            .iter()
            .find(|(offered_sub, _)| sub == "*" || sub == *offered_sub)
            .map(|&(_, format)| format)
    })
}

/// The Swagger 2.0 document of the server, from its OpenAPI v3 group-version documents
/// (keyed by index path, `api/v1`, `apis/apps/v1`; each as `group_version_document` builds
/// it). Definitions shared by several group-versions are written once, with the union of
/// their group-version-kinds.
pub fn swagger(group_versions: &BTreeMap<String, Value>) -> Value {
    let mut paths: BTreeMap<String, Value> = BTreeMap::new();
    let mut definitions: BTreeMap<String, Value> = BTreeMap::new();
    let mut security_definitions = Map::new();
    let mut security = None;
    for doc in group_versions.values() {
        for (path, item) in doc["paths"].as_object().into_iter().flatten() {
            paths.insert(path.clone(), path_item(item));
        }
        let schemas = doc["components"]["schemas"].as_object();
        for (name, v3) in schemas.into_iter().flatten() {
            let v2 = schema(v3);
            match definitions.get_mut(name) {
                Some(existing) => merge_group_version_kinds(existing, &v2),
                None => {
                    definitions.insert(name.clone(), v2);
                }
            }
        }
        let schemes = doc["components"]["securitySchemes"].as_object();
        for (name, scheme) in schemes.into_iter().flatten() {
            if let Some(v2) = security_scheme(scheme) {
                security_definitions.insert(name.clone(), v2);
            }
        }
        security = security.or_else(|| doc.get("security").cloned());
    }
    let version = group_versions
        .values()
        .find_map(|doc| doc["info"]["version"].as_str())
        .unwrap_or_default();
    let mut out = json!({
        "swagger": "2.0",
        "info": { "title": "Kubernetes", "version": version },
        "paths": paths.into_iter().collect::<Map<String, Value>>(),
        "definitions": definitions.into_iter().collect::<Map<String, Value>>(),
    });
    if !security_definitions.is_empty() {
        out["securityDefinitions"] = Value::Object(security_definitions);
    }
    if let Some(security) = security {
        out["security"] = security;
    }
    out
}

/// Adds the group-version-kinds of `other` that `existing` lacks.
fn merge_group_version_kinds(existing: &mut Value, other: &Value) {
    let Some(more) = other.get(GVK).and_then(Value::as_array) else {
        return;
    };
    let Some(obj) = existing.as_object_mut() else {
        return;
    };
    let list = obj.entry(GVK).or_insert_with(|| json!([]));
    if let Value::Array(list) = list {
        for gvk in more {
            if !list.contains(gvk) {
                list.push(gvk.clone());
            }
        }
    }
}

fn security_scheme(v3: &Value) -> Option<Value> {
    let mut out = Map::new();
    match v3["type"].as_str()? {
        "apiKey" => {
            for key in ["description", "type", "name", "in"] {
                if let Some(v) = v3.get(key) {
                    out.insert(key.into(), v.clone());
                }
            }
        }
        "http" if v3["scheme"] == "basic" => {
            out.insert("type".into(), json!("basic"));
            if let Some(d) = v3.get("description") {
                out.insert("description".into(), d.clone());
            }
        }
        _ => return None,
    }
    Some(Value::Object(out))
}

/// `#/components/schemas/X` → `#/definitions/X` (other refs are left as they are).
fn rewrite_ref(reference: &Value) -> Value {
    match reference.as_str() {
        Some(r) => match r.strip_prefix(V3_REF_PREFIX) {
            Some(name) => json!(format!("{V2_REF_PREFIX}{name}")),
            None => reference.clone(),
        },
        None => reference.clone(),
    }
}

fn is_true(schema: &Value, key: &str) -> bool {
    schema.get(key) == Some(&Value::Bool(true))
}

/// The `$ref` of an `allOf` that only wraps one reference, when the schema around it has
/// no shape of its own that a reference could not carry beside it.
fn wrapped_ref(obj: &Map<String, Value>) -> Option<&Value> {
    let [only] = obj.get("allOf")?.as_array()?.as_slice() else {
        return None;
    };
    let only = only.as_object()?;
    let reference = only.get("$ref").filter(|_| only.len() == 1)?;
    let shaped = ["$ref", "type", "properties", "items"]
        .iter()
        .any(|k| obj.contains_key(*k));
    (!shaped).then_some(reference)
}

/// One OpenAPI v3 schema as a Swagger 2.0 schema (see the module doc for the rules).
fn schema(v3: &Value) -> Value {
    let Value::Object(obj) = v3 else {
        return v3.clone();
    };
    let nullable = is_true(v3, "nullable");
    let untyped_content = nullable || is_true(v3, "x-kubernetes-preserve-unknown-fields");
    let wrapped = wrapped_ref(obj);
    let mut out = Map::new();
    for (key, value) in obj {
        match key.as_str() {
            "$ref" => {
                out.insert(key.clone(), rewrite_ref(value));
            }
            "allOf" => {
                if let Some(reference) = wrapped {
                    out.insert("$ref".into(), rewrite_ref(reference));
                }
            }
            "type" if nullable => {}
            "items" | "properties" if untyped_content => {}
            "properties" => {
                let properties = value.as_object().into_iter().flatten();
                let converted: Map<String, Value> =
                    properties.map(|(k, v)| (k.clone(), schema(v))).collect();
                out.insert(key.clone(), Value::Object(converted));
            }
            // Swagger 2.0 (and gnostic) know one items schema, not a tuple.
            "items" if value.is_object() => {
                out.insert(key.clone(), schema(value));
            }
            "additionalProperties" if value.is_object() => {
                out.insert(key.clone(), schema(value));
            }
            "additionalProperties" if value.is_boolean() => {
                out.insert(key.clone(), value.clone());
            }
            "required" => {
                if let Some(required) = required_without_nullable(v3) {
                    out.insert(key.clone(), required);
                }
            }
            // A v3 discriminator is an object; a v2 one names the property.
            "discriminator" if value.is_string() => {
                out.insert(key.clone(), value.clone());
            }
            k if k.starts_with("x-") || SCHEMA_KEYWORDS.contains(&k) => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    if out.get("type") == Some(&json!("array")) && !out.contains_key("items") {
        out.remove("type");
    }
    Value::Object(out)
}

/// `required` without the properties that may be null; nothing when the map's values may
/// be null (as apiextensions' `ToStructuralOpenAPIV2`).
fn required_without_nullable(v3: &Value) -> Option<Value> {
    if v3
        .get("additionalProperties")
        .is_some_and(|a| is_true(a, "nullable"))
    {
        return None;
    }
    let required = v3["required"].as_array()?;
    let kept: Vec<Value> = required
        .iter()
        .filter(|name| {
            let property = name.as_str().and_then(|n| v3["properties"].get(n));
            !property.is_some_and(|p| is_true(p, "nullable"))
        })
        .cloned()
        .collect();
    (!kept.is_empty()).then_some(Value::Array(kept))
}

fn path_item(v3: &Value) -> Value {
    let mut out = Map::new();
    for (key, value) in v3.as_object().into_iter().flatten() {
        match key.as_str() {
            "parameters" => {
                let params = value.as_array().into_iter().flatten();
                out.insert(key.clone(), params.filter_map(parameter).collect());
            }
            m if METHODS.contains(&m) => {
                out.insert(key.clone(), operation(value));
            }
            k if k.starts_with("x-") => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Value::Object(out)
}

/// A v3 query, path or header parameter as a Swagger 2.0 one (its `schema` spelled out on
/// the parameter); `None` for a cookie parameter, which Swagger 2.0 lacks.
fn parameter(v3: &Value) -> Option<Value> {
    if let Some(reference) = v3.get("$ref") {
        return Some(json!({ "$ref": reference }));
    }
    if v3["in"] == "cookie" {
        return None;
    }
    let mut out = Map::new();
    let schema = v3["schema"].as_object();
    for (key, value) in schema.into_iter().flatten() {
        if PARAMETER_SCHEMA_KEYWORDS.contains(&key.as_str()) {
            out.insert(key.clone(), value.clone());
        }
    }
    for (key, value) in v3.as_object().into_iter().flatten() {
        match key.as_str() {
            "name" | "in" | "description" | "required" | "allowEmptyValue" => {
                out.insert(key.clone(), value.clone());
            }
            k if k.starts_with("x-") => {
                out.insert(key.clone(), value.clone());
            }
            _ => {}
        }
    }
    Some(Value::Object(out))
}

fn operation(v3: &Value) -> Value {
    let request_body = v3.get("requestBody");
    let consumes: Vec<&String> = request_body
        .and_then(|b| b["content"].as_object())
        .map(|content| content.keys().collect())
        .unwrap_or_default();
    let mut produces: Vec<&String> = Vec::new();
    for response in v3["responses"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|r| r.1)
    {
        for media_type in response["content"].as_object().into_iter().flatten() {
            if !produces.contains(&media_type.0) {
                produces.push(media_type.0);
            }
        }
    }
    let mut parameters: Vec<Value> = request_body.map(body_parameter).into_iter().collect();
    let v3_params = v3["parameters"].as_array().into_iter().flatten();
    parameters.extend(v3_params.filter_map(parameter));

    let mut out = Map::new();
    if let Some(description) = v3.get("description") {
        out.insert("description".into(), description.clone());
    }
    if !consumes.is_empty() {
        out.insert("consumes".into(), json!(consumes));
    }
    if !produces.is_empty() {
        out.insert("produces".into(), json!(produces));
    }
    out.insert("schemes".into(), json!(["https"]));
    for key in ["tags", "summary", "operationId"] {
        if let Some(v) = v3.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    out.insert("parameters".into(), Value::Array(parameters));
    out.insert("responses".into(), responses(&v3["responses"]));
    for (key, value) in v3.as_object().into_iter().flatten() {
        if key == "deprecated" || key.starts_with("x-") {
            out.insert(key.clone(), value.clone());
        }
    }
    Value::Object(out)
}

/// The schema of the first media type of a v3 `content` map.
fn content_schema(content: &Value) -> Option<Value> {
    let (_, media) = content.as_object()?.iter().next()?;
    media.get("schema").map(schema)
}

fn body_parameter(request_body: &Value) -> Value {
    let mut out = Map::new();
    out.insert("name".into(), json!("body"));
    out.insert("in".into(), json!("body"));
    if let Some(description) = request_body.get("description") {
        out.insert("description".into(), description.clone());
    }
    out.insert("required".into(), json!(is_true(request_body, "required")));
    let body_schema = content_schema(&request_body["content"]).unwrap_or_else(|| json!({}));
    out.insert("schema".into(), body_schema);
    Value::Object(out)
}

fn responses(v3: &Value) -> Value {
    let mut out = Map::new();
    for (code, response) in v3.as_object().into_iter().flatten() {
        if code.starts_with("x-") {
            out.insert(code.clone(), response.clone());
            continue;
        }
        let mut r = Map::new();
        let description = response.get("description").cloned();
        r.insert(
            "description".into(),
            description.unwrap_or_else(|| json!("")),
        );
        if let Some(s) = content_schema(&response["content"]) {
            r.insert("schema".into(), s);
        }
        for (key, value) in response.as_object().into_iter().flatten() {
            if key.starts_with("x-") {
                r.insert(key.clone(), value.clone());
            }
        }
        out.insert(code.clone(), Value::Object(r));
    }
    Value::Object(out)
}

#[cfg(test)]
mod tests;
