//! The gnostic protobuf form of a Swagger 2.0 document (`openapi.v2.Document` from
//! github.com/google/gnostic-models `openapiv2/OpenAPIv2.proto`), which kubectl asks
//! `/openapi/v2` for: the subset of its messages a Kubernetes document uses, and the
//! conversion from the JSON form as gnostic's `ParseDocument` does it (maps as repeated
//! `Named*` pairs in document order, `x-` extensions and free-form values as YAML text).
//!
//! Field numbers follow the .proto; messages and fields orc never writes (XML, OAuth2,
//! file schemas, array parameters' `items`) are left out, so a decoder sees them absent.

use prost::Message;
use serde_json::{Map, Value};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{at}: expected {expected}")]
    UnexpectedValue { at: String, expected: &'static str },
    #[error("{at}: encode as YAML")]
    Yaml {
        at: String,
        source: serde_yaml::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

#[derive(Clone, PartialEq, Message)]
pub struct Document {
    #[prost(string, tag = "1")]
    pub swagger: String,
    #[prost(message, optional, tag = "2")]
    pub info: Option<Info>,
    #[prost(string, repeated, tag = "6")]
    pub consumes: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub produces: Vec<String>,
    #[prost(message, optional, tag = "8")]
    pub paths: Option<Paths>,
    #[prost(message, optional, tag = "9")]
    pub definitions: Option<Definitions>,
    #[prost(message, repeated, tag = "12")]
    pub security: Vec<SecurityRequirement>,
    #[prost(message, optional, tag = "13")]
    pub security_definitions: Option<SecurityDefinitions>,
    #[prost(message, repeated, tag = "16")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Info {
    #[prost(string, tag = "1")]
    pub title: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(message, repeated, tag = "7")]
    pub vendor_extension: Vec<NamedAny>,
}

/// A free-form value: gnostic keeps its YAML text (field 1, a `google.protobuf.Any`, is
/// only set by gnostic extension plugins).
#[derive(Clone, PartialEq, Message)]
pub struct Any {
    #[prost(string, tag = "2")]
    pub yaml: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedAny {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Any>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Paths {
    #[prost(message, repeated, tag = "1")]
    pub vendor_extension: Vec<NamedAny>,
    #[prost(message, repeated, tag = "2")]
    pub path: Vec<NamedPathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedPathItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<PathItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct PathItem {
    #[prost(string, tag = "1")]
    pub xref: String,
    #[prost(message, optional, tag = "2")]
    pub get: Option<Operation>,
    #[prost(message, optional, tag = "3")]
    pub put: Option<Operation>,
    #[prost(message, optional, tag = "4")]
    pub post: Option<Operation>,
    #[prost(message, optional, tag = "5")]
    pub delete: Option<Operation>,
    #[prost(message, optional, tag = "6")]
    pub options: Option<Operation>,
    #[prost(message, optional, tag = "7")]
    pub head: Option<Operation>,
    #[prost(message, optional, tag = "8")]
    pub patch: Option<Operation>,
    #[prost(message, repeated, tag = "9")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, repeated, tag = "10")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Operation {
    #[prost(string, repeated, tag = "1")]
    pub tags: Vec<String>,
    #[prost(string, tag = "2")]
    pub summary: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "5")]
    pub operation_id: String,
    #[prost(string, repeated, tag = "6")]
    pub produces: Vec<String>,
    #[prost(string, repeated, tag = "7")]
    pub consumes: Vec<String>,
    #[prost(message, repeated, tag = "8")]
    pub parameters: Vec<ParametersItem>,
    #[prost(message, optional, tag = "9")]
    pub responses: Option<Responses>,
    #[prost(string, repeated, tag = "10")]
    pub schemes: Vec<String>,
    #[prost(bool, tag = "11")]
    pub deprecated: bool,
    #[prost(message, repeated, tag = "13")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ParametersItem {
    #[prost(oneof = "parameters_item::Oneof", tags = "1, 2")]
    pub oneof: Option<parameters_item::Oneof>,
}

pub mod parameters_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Parameter(Box<super::Parameter>),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct JsonReference {
    #[prost(string, tag = "1")]
    pub xref: String,
    #[prost(string, tag = "2")]
    pub description: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Parameter {
    #[prost(oneof = "parameter::Oneof", tags = "1, 2")]
    pub oneof: Option<parameter::Oneof>,
}

pub mod parameter {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        BodyParameter(Box<super::BodyParameter>),
        #[prost(message, tag = "2")]
        NonBodyParameter(super::NonBodyParameter),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct BodyParameter {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(bool, tag = "4")]
    pub required: bool,
    #[prost(message, optional, tag = "5")]
    pub schema: Option<Schema>,
    #[prost(message, repeated, tag = "6")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NonBodyParameter {
    #[prost(oneof = "non_body_parameter::Oneof", tags = "1, 2, 3, 4")]
    pub oneof: Option<non_body_parameter::Oneof>,
}

pub mod non_body_parameter {
    /// Header and path parameters share one field layout, query and form ones another.
    /// The variant names are the .proto's.
    #[allow(clippy::enum_variant_names)]
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        HeaderParameterSubSchema(super::PathParameterSubSchema),
        #[prost(message, tag = "2")]
        FormDataParameterSubSchema(super::QueryParameterSubSchema),
        #[prost(message, tag = "3")]
        QueryParameterSubSchema(super::QueryParameterSubSchema),
        #[prost(message, tag = "4")]
        PathParameterSubSchema(super::PathParameterSubSchema),
    }
}

/// `QueryParameterSubSchema` (and `FormDataParameterSubSchema`, numbered alike).
#[derive(Clone, PartialEq, Message)]
pub struct QueryParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(bool, tag = "5")]
    pub allow_empty_value: bool,
    #[prost(string, tag = "6")]
    pub r#type: String,
    #[prost(string, tag = "7")]
    pub format: String,
    #[prost(message, optional, tag = "10")]
    pub default: Option<Any>,
    #[prost(bool, tag = "20")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "21")]
    pub r#enum: Vec<Any>,
    #[prost(message, repeated, tag = "23")]
    pub vendor_extension: Vec<NamedAny>,
}

/// `PathParameterSubSchema` (and `HeaderParameterSubSchema`, numbered alike).
#[derive(Clone, PartialEq, Message)]
pub struct PathParameterSubSchema {
    #[prost(bool, tag = "1")]
    pub required: bool,
    #[prost(string, tag = "2")]
    pub r#in: String,
    #[prost(string, tag = "3")]
    pub description: String,
    #[prost(string, tag = "4")]
    pub name: String,
    #[prost(string, tag = "5")]
    pub r#type: String,
    #[prost(string, tag = "6")]
    pub format: String,
    #[prost(message, optional, tag = "9")]
    pub default: Option<Any>,
    #[prost(bool, tag = "19")]
    pub unique_items: bool,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, repeated, tag = "22")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Responses {
    #[prost(message, repeated, tag = "1")]
    pub response_code: Vec<NamedResponseValue>,
    #[prost(message, repeated, tag = "2")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedResponseValue {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<ResponseValue>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ResponseValue {
    #[prost(oneof = "response_value::Oneof", tags = "1, 2")]
    pub oneof: Option<response_value::Oneof>,
}

pub mod response_value {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Response(Box<super::Response>),
        #[prost(message, tag = "2")]
        JsonReference(super::JsonReference),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct Response {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(message, optional, tag = "2")]
    pub schema: Option<SchemaItem>,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

/// A response schema (the `FileSchema` alternative, field 2, is never written).
#[derive(Clone, PartialEq, Message)]
pub struct SchemaItem {
    #[prost(message, optional, tag = "1")]
    pub schema: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Definitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSchema {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Schema {
    #[prost(string, tag = "1")]
    pub xref: String,
    #[prost(string, tag = "2")]
    pub format: String,
    #[prost(string, tag = "3")]
    pub title: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, optional, tag = "5")]
    pub default: Option<Any>,
    #[prost(double, tag = "6")]
    pub multiple_of: f64,
    #[prost(double, tag = "7")]
    pub maximum: f64,
    #[prost(bool, tag = "8")]
    pub exclusive_maximum: bool,
    #[prost(double, tag = "9")]
    pub minimum: f64,
    #[prost(bool, tag = "10")]
    pub exclusive_minimum: bool,
    #[prost(int64, tag = "11")]
    pub max_length: i64,
    #[prost(int64, tag = "12")]
    pub min_length: i64,
    #[prost(string, tag = "13")]
    pub pattern: String,
    #[prost(int64, tag = "14")]
    pub max_items: i64,
    #[prost(int64, tag = "15")]
    pub min_items: i64,
    #[prost(bool, tag = "16")]
    pub unique_items: bool,
    #[prost(int64, tag = "17")]
    pub max_properties: i64,
    #[prost(int64, tag = "18")]
    pub min_properties: i64,
    #[prost(string, repeated, tag = "19")]
    pub required: Vec<String>,
    #[prost(message, repeated, tag = "20")]
    pub r#enum: Vec<Any>,
    #[prost(message, optional, tag = "21")]
    pub additional_properties: Option<AdditionalPropertiesItem>,
    #[prost(message, optional, tag = "22")]
    pub r#type: Option<TypeItem>,
    #[prost(message, optional, tag = "23")]
    pub items: Option<ItemsItem>,
    #[prost(message, repeated, tag = "24")]
    pub all_of: Vec<Schema>,
    #[prost(message, optional, tag = "25")]
    pub properties: Option<Properties>,
    #[prost(string, tag = "26")]
    pub discriminator: String,
    #[prost(bool, tag = "27")]
    pub read_only: bool,
    #[prost(message, optional, tag = "29")]
    pub external_docs: Option<ExternalDocs>,
    #[prost(message, optional, tag = "30")]
    pub example: Option<Any>,
    #[prost(message, repeated, tag = "31")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct AdditionalPropertiesItem {
    #[prost(oneof = "additional_properties_item::Oneof", tags = "1, 2")]
    pub oneof: Option<additional_properties_item::Oneof>,
}

pub mod additional_properties_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        Schema(Box<super::Schema>),
        #[prost(bool, tag = "2")]
        Boolean(bool),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct TypeItem {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ItemsItem {
    #[prost(message, repeated, tag = "1")]
    pub schema: Vec<Schema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Properties {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSchema>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ExternalDocs {
    #[prost(string, tag = "1")]
    pub description: String,
    #[prost(string, tag = "2")]
    pub url: String,
    #[prost(message, repeated, tag = "3")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SecurityDefinitions {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedSecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedSecurityDefinitionsItem {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<SecurityDefinitionsItem>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SecurityDefinitionsItem {
    #[prost(oneof = "security_definitions_item::Oneof", tags = "1, 2")]
    pub oneof: Option<security_definitions_item::Oneof>,
}

pub mod security_definitions_item {
    #[derive(Clone, PartialEq, prost::Oneof)]
    pub enum Oneof {
        #[prost(message, tag = "1")]
        BasicAuthenticationSecurity(super::BasicAuthenticationSecurity),
        #[prost(message, tag = "2")]
        ApiKeySecurity(super::ApiKeySecurity),
    }
}

#[derive(Clone, PartialEq, Message)]
pub struct BasicAuthenticationSecurity {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub description: String,
    #[prost(message, repeated, tag = "3")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct ApiKeySecurity {
    #[prost(string, tag = "1")]
    pub r#type: String,
    #[prost(string, tag = "2")]
    pub name: String,
    #[prost(string, tag = "3")]
    pub r#in: String,
    #[prost(string, tag = "4")]
    pub description: String,
    #[prost(message, repeated, tag = "5")]
    pub vendor_extension: Vec<NamedAny>,
}

#[derive(Clone, PartialEq, Message)]
pub struct SecurityRequirement {
    #[prost(message, repeated, tag = "1")]
    pub additional_properties: Vec<NamedStringArray>,
}

#[derive(Clone, PartialEq, Message)]
pub struct NamedStringArray {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(message, optional, tag = "2")]
    pub value: Option<StringArray>,
}

#[derive(Clone, PartialEq, Message)]
pub struct StringArray {
    #[prost(string, repeated, tag = "1")]
    pub value: Vec<String>,
}

/// The gnostic protobuf encoding of a Swagger 2.0 document in its JSON form (as `swagger`
/// builds it); fails on a value whose JSON type the Swagger 2.0 schema does not allow.
pub fn to_protobuf(swagger: &Value) -> Result<Vec<u8>> {
    Ok(document(swagger)?.encode_to_vec())
}

/// The protobuf message of a Swagger 2.0 document in its JSON form.
pub fn document(swagger: &Value) -> Result<Document> {
    let obj = object(swagger, "document")?;
    Ok(Document {
        swagger: string(obj, "swagger", "document")?,
        info: obj.get("info").map(info).transpose()?,
        consumes: strings(obj, "consumes", "document")?,
        produces: strings(obj, "produces", "document")?,
        paths: obj.get("paths").map(paths).transpose()?,
        definitions: obj.get("definitions").map(definitions).transpose()?,
        security: array(obj, "security", "document")?
            .iter()
            .map(security_requirement)
            .collect::<Result<_>>()?,
        security_definitions: obj
            .get("securityDefinitions")
            .map(security_definitions)
            .transpose()?,
        vendor_extension: vendor_extensions(obj, "document")?,
    })
}

fn unexpected(at: &str, expected: &'static str) -> Error {
    Error::UnexpectedValue {
        at: at.to_string(),
        expected,
    }
}

fn object<'a>(value: &'a Value, at: &str) -> Result<&'a Map<String, Value>> {
    value.as_object().ok_or_else(|| unexpected(at, "an object"))
}

fn string(obj: &Map<String, Value>, key: &str, at: &str) -> Result<String> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s.clone()),
        Some(_) => Err(unexpected(&format!("{at}.{key}"), "a string")),
    }
}

fn boolean(obj: &Map<String, Value>, key: &str, at: &str) -> Result<bool> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(false),
        Some(Value::Bool(b)) => Ok(*b),
        Some(_) => Err(unexpected(&format!("{at}.{key}"), "a boolean")),
    }
}

fn number(obj: &Map<String, Value>, key: &str, at: &str) -> Result<f64> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(0.0),
        Some(v) => v
            .as_f64()
            .ok_or_else(|| unexpected(&format!("{at}.{key}"), "a number")),
    }
}

fn integer(obj: &Map<String, Value>, key: &str, at: &str) -> Result<i64> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(0),
        Some(v) => v
            .as_i64()
            .ok_or_else(|| unexpected(&format!("{at}.{key}"), "an integer")),
    }
}

fn array<'a>(obj: &'a Map<String, Value>, key: &str, at: &str) -> Result<&'a [Value]> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(&[]),
        Some(Value::Array(items)) => Ok(items),
        Some(_) => Err(unexpected(&format!("{at}.{key}"), "an array")),
    }
}

fn strings(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Vec<String>> {
    array(obj, key, at)?
        .iter()
        .map(|v| {
            v.as_str()
                .map(str::to_string)
                .ok_or_else(|| unexpected(&format!("{at}.{key}"), "strings"))
        })
        .collect()
}

/// A free-form value as gnostic keeps it: its YAML text.
fn any(value: &Value, at: &str) -> Result<Any> {
    let yaml = serde_yaml::to_string(value).map_err(|source| Error::Yaml {
        at: at.to_string(),
        source,
    })?;
    Ok(Any { yaml })
}

fn optional_any(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Option<Any>> {
    obj.get(key).map(|v| any(v, at)).transpose()
}

fn anys(obj: &Map<String, Value>, key: &str, at: &str) -> Result<Vec<Any>> {
    array(obj, key, at)?.iter().map(|v| any(v, at)).collect()
}

/// The `x-` keys of an object, in document order.
fn vendor_extensions(obj: &Map<String, Value>, at: &str) -> Result<Vec<NamedAny>> {
    obj.iter()
        .filter(|(k, _)| k.starts_with("x-"))
        .map(|(name, value)| {
            Ok(NamedAny {
                name: name.clone(),
                value: Some(any(value, at)?),
            })
        })
        .collect()
}

fn info(value: &Value) -> Result<Info> {
    let at = "info";
    let obj = object(value, at)?;
    Ok(Info {
        title: string(obj, "title", at)?,
        version: string(obj, "version", at)?,
        description: string(obj, "description", at)?,
        vendor_extension: vendor_extensions(obj, at)?,
    })
}

fn paths(value: &Value) -> Result<Paths> {
    let obj = object(value, "paths")?;
    let path = obj
        .iter()
        .filter(|(k, _)| k.starts_with('/'))
        .map(|(name, item)| {
            Ok(NamedPathItem {
                name: name.clone(),
                value: Some(path_item(item, name)?),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Paths {
        vendor_extension: vendor_extensions(obj, "paths")?,
        path,
    })
}

fn path_item(value: &Value, at: &str) -> Result<PathItem> {
    let obj = object(value, at)?;
    let op = |method: &str| {
        obj.get(method)
            .map(|v| operation(v, &format!("{at} {method}")))
            .transpose()
    };
    Ok(PathItem {
        xref: string(obj, "$ref", at)?,
        get: op("get")?,
        put: op("put")?,
        post: op("post")?,
        delete: op("delete")?,
        options: op("options")?,
        head: op("head")?,
        patch: op("patch")?,
        parameters: parameters(obj, at)?,
        vendor_extension: vendor_extensions(obj, at)?,
    })
}

fn operation(value: &Value, at: &str) -> Result<Operation> {
    let obj = object(value, at)?;
    Ok(Operation {
        tags: strings(obj, "tags", at)?,
        summary: string(obj, "summary", at)?,
        description: string(obj, "description", at)?,
        operation_id: string(obj, "operationId", at)?,
        produces: strings(obj, "produces", at)?,
        consumes: strings(obj, "consumes", at)?,
        parameters: parameters(obj, at)?,
        responses: obj.get("responses").map(|r| responses(r, at)).transpose()?,
        schemes: strings(obj, "schemes", at)?,
        deprecated: boolean(obj, "deprecated", at)?,
        vendor_extension: vendor_extensions(obj, at)?,
    })
}

fn parameters(obj: &Map<String, Value>, at: &str) -> Result<Vec<ParametersItem>> {
    array(obj, "parameters", at)?
        .iter()
        .map(|p| parameters_item(p, at))
        .collect()
}

fn parameters_item(value: &Value, at: &str) -> Result<ParametersItem> {
    use non_body_parameter::Oneof as NonBody;
    let obj = object(value, at)?;
    let at = format!("{at} parameter {}", string(obj, "name", at)?);
    let at = at.as_str();
    if obj.contains_key("$ref") {
        let reference = JsonReference {
            xref: string(obj, "$ref", at)?,
            description: string(obj, "description", at)?,
        };
        return Ok(ParametersItem {
            oneof: Some(parameters_item::Oneof::JsonReference(reference)),
        });
    }
    let location = string(obj, "in", at)?;
    let parameter = match location.as_str() {
        "body" => parameter::Oneof::BodyParameter(Box::new(BodyParameter {
            description: string(obj, "description", at)?,
            name: string(obj, "name", at)?,
            r#in: location.clone(),
            required: boolean(obj, "required", at)?,
            schema: obj.get("schema").map(|s| schema(s, at)).transpose()?,
            vendor_extension: vendor_extensions(obj, at)?,
        })),
        "query" | "formData" => {
            let sub = QueryParameterSubSchema {
                required: boolean(obj, "required", at)?,
                r#in: location.clone(),
                description: string(obj, "description", at)?,
                name: string(obj, "name", at)?,
                allow_empty_value: boolean(obj, "allowEmptyValue", at)?,
                r#type: string(obj, "type", at)?,
                format: string(obj, "format", at)?,
                default: optional_any(obj, "default", at)?,
                unique_items: boolean(obj, "uniqueItems", at)?,
                r#enum: anys(obj, "enum", at)?,
                vendor_extension: vendor_extensions(obj, at)?,
            };
            let one = if location == "query" {
                NonBody::QueryParameterSubSchema(sub)
            } else {
                NonBody::FormDataParameterSubSchema(sub)
            };
            parameter::Oneof::NonBodyParameter(NonBodyParameter { oneof: Some(one) })
        }
        "path" | "header" => {
            let sub = PathParameterSubSchema {
                required: boolean(obj, "required", at)?,
                r#in: location.clone(),
                description: string(obj, "description", at)?,
                name: string(obj, "name", at)?,
                r#type: string(obj, "type", at)?,
                format: string(obj, "format", at)?,
                default: optional_any(obj, "default", at)?,
                unique_items: boolean(obj, "uniqueItems", at)?,
                r#enum: anys(obj, "enum", at)?,
                vendor_extension: vendor_extensions(obj, at)?,
            };
            let one = if location == "path" {
                NonBody::PathParameterSubSchema(sub)
            } else {
                NonBody::HeaderParameterSubSchema(sub)
            };
            parameter::Oneof::NonBodyParameter(NonBodyParameter { oneof: Some(one) })
        }
        _ => {
            return Err(unexpected(
                at,
                "`in` of body, query, formData, path or header",
            ))
        }
    };
    Ok(ParametersItem {
        oneof: Some(parameters_item::Oneof::Parameter(Box::new(Parameter {
            oneof: Some(parameter),
        }))),
    })
}

fn responses(value: &Value, at: &str) -> Result<Responses> {
    let obj = object(value, at)?;
    let is_code =
        |k: &str| k == "default" || (k.len() == 3 && k.bytes().all(|b| b.is_ascii_digit()));
    let response_code = obj
        .iter()
        .filter(|(code, _)| is_code(code))
        .map(|(code, v)| {
            let at = format!("{at} response {code}");
            let r = object(v, &at)?;
            let value = if r.contains_key("$ref") {
                response_value::Oneof::JsonReference(JsonReference {
                    xref: string(r, "$ref", &at)?,
                    description: string(r, "description", &at)?,
                })
            } else {
                response_value::Oneof::Response(Box::new(Response {
                    description: string(r, "description", &at)?,
                    schema: r
                        .get("schema")
                        .map(|s| {
                            Ok::<_, Error>(SchemaItem {
                                schema: Some(schema(s, &at)?),
                            })
                        })
                        .transpose()?,
                    vendor_extension: vendor_extensions(r, &at)?,
                }))
            };
            Ok(NamedResponseValue {
                name: code.clone(),
                value: Some(ResponseValue { oneof: Some(value) }),
            })
        })
        .collect::<Result<_>>()?;
    Ok(Responses {
        response_code,
        vendor_extension: vendor_extensions(obj, at)?,
    })
}

fn definitions(value: &Value) -> Result<Definitions> {
    Ok(Definitions {
        additional_properties: named_schemas(value, "definitions")?,
    })
}

fn named_schemas(value: &Value, at: &str) -> Result<Vec<NamedSchema>> {
    object(value, at)?
        .iter()
        .map(|(name, s)| {
            Ok(NamedSchema {
                name: name.clone(),
                value: Some(schema(s, name)?),
            })
        })
        .collect()
}

fn schema(value: &Value, at: &str) -> Result<Schema> {
    let obj = object(value, at)?;
    let additional_properties = match obj.get("additionalProperties") {
        None => None,
        Some(Value::Bool(b)) => Some(additional_properties_item::Oneof::Boolean(*b)),
        Some(s) => Some(additional_properties_item::Oneof::Schema(Box::new(schema(
            s, at,
        )?))),
    };
    let r#type = match obj.get("type") {
        None => None,
        Some(Value::String(t)) => Some(TypeItem {
            value: vec![t.clone()],
        }),
        Some(_) => Some(TypeItem {
            value: strings(obj, "type", at)?,
        }),
    };
    let items = match obj.get("items") {
        None => None,
        Some(Value::Array(list)) => Some(ItemsItem {
            schema: list.iter().map(|s| schema(s, at)).collect::<Result<_>>()?,
        }),
        Some(s) => Some(ItemsItem {
            schema: vec![schema(s, at)?],
        }),
    };
    let external_docs = match obj.get("externalDocs") {
        None => None,
        Some(docs) => {
            let docs = object(docs, at)?;
            Some(ExternalDocs {
                description: string(docs, "description", at)?,
                url: string(docs, "url", at)?,
                vendor_extension: vendor_extensions(docs, at)?,
            })
        }
    };
    Ok(Schema {
        xref: string(obj, "$ref", at)?,
        format: string(obj, "format", at)?,
        title: string(obj, "title", at)?,
        description: string(obj, "description", at)?,
        default: optional_any(obj, "default", at)?,
        multiple_of: number(obj, "multipleOf", at)?,
        maximum: number(obj, "maximum", at)?,
        exclusive_maximum: boolean(obj, "exclusiveMaximum", at)?,
        minimum: number(obj, "minimum", at)?,
        exclusive_minimum: boolean(obj, "exclusiveMinimum", at)?,
        max_length: integer(obj, "maxLength", at)?,
        min_length: integer(obj, "minLength", at)?,
        pattern: string(obj, "pattern", at)?,
        max_items: integer(obj, "maxItems", at)?,
        min_items: integer(obj, "minItems", at)?,
        unique_items: boolean(obj, "uniqueItems", at)?,
        max_properties: integer(obj, "maxProperties", at)?,
        min_properties: integer(obj, "minProperties", at)?,
        required: strings(obj, "required", at)?,
        r#enum: anys(obj, "enum", at)?,
        additional_properties: additional_properties
            .map(|one| AdditionalPropertiesItem { oneof: Some(one) }),
        r#type,
        items,
        all_of: array(obj, "allOf", at)?
            .iter()
            .map(|s| schema(s, at))
            .collect::<Result<_>>()?,
        properties: obj
            .get("properties")
            .map(|p| {
                Ok::<_, Error>(Properties {
                    additional_properties: named_schemas(p, at)?,
                })
            })
            .transpose()?,
        discriminator: string(obj, "discriminator", at)?,
        read_only: boolean(obj, "readOnly", at)?,
        external_docs,
        example: optional_any(obj, "example", at)?,
        vendor_extension: vendor_extensions(obj, at)?,
    })
}

fn security_definitions(value: &Value) -> Result<SecurityDefinitions> {
    use security_definitions_item::Oneof;
    let at = "securityDefinitions";
    let additional_properties = object(value, at)?
        .iter()
        .map(|(name, def)| {
            let obj = object(def, at)?;
            let one = match obj.get("type").and_then(Value::as_str) {
                Some("basic") => Oneof::BasicAuthenticationSecurity(BasicAuthenticationSecurity {
                    r#type: string(obj, "type", at)?,
                    description: string(obj, "description", at)?,
                    vendor_extension: vendor_extensions(obj, at)?,
                }),
                Some("apiKey") => Oneof::ApiKeySecurity(ApiKeySecurity {
                    r#type: string(obj, "type", at)?,
                    name: string(obj, "name", at)?,
                    r#in: string(obj, "in", at)?,
                    description: string(obj, "description", at)?,
                    vendor_extension: vendor_extensions(obj, at)?,
                }),
                _ => return Err(unexpected(at, "a basic or apiKey security scheme")),
            };
            Ok(NamedSecurityDefinitionsItem {
                name: name.clone(),
                value: Some(SecurityDefinitionsItem { oneof: Some(one) }),
            })
        })
        .collect::<Result<_>>()?;
    Ok(SecurityDefinitions {
        additional_properties,
    })
}

fn security_requirement(value: &Value) -> Result<SecurityRequirement> {
    let at = "security";
    let additional_properties = object(value, at)?
        .iter()
        .map(|(name, scopes)| {
            let scopes = scopes
                .as_array()
                .ok_or_else(|| unexpected(at, "an array of scopes"))?;
            Ok(NamedStringArray {
                name: name.clone(),
                value: Some(StringArray {
                    value: scopes
                        .iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect(),
                }),
            })
        })
        .collect::<Result<_>>()?;
    Ok(SecurityRequirement {
        additional_properties,
    })
}
