//! Validation of API objects (Kubernetes JSON wire form) with upstream field errors and messages.
//!
//! Objects are validated *after* defaulting, as upstream does; fields that defaulting
//! fills in (protocols, policies) are only checked when present. Checks that need
//! server state (namespace existence, name/namespace/uid immutability, nodePort
//! allocation) belong to the API server, not here.

use std::collections::{BTreeMap, HashSet};
use std::fmt;

use serde_json::{Map, Value};

pub use super::quantity::{
    parse_quantity, quantity_bytes, quantity_millis, Quantity, QuantityError,
};
use super::selector::LabelSelector;

// ---------------------------------------------------------------------------
// Field errors
// ---------------------------------------------------------------------------

/// The kind of a field error; maps 1:1 onto upstream `field.ErrorType`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldErrorKind {
    Required,
    Invalid,
    NotSupported,
    Duplicate,
    Forbidden,
    TooLong,
    TooMany,
    NotFound,
}

impl FieldErrorKind {
    fn label(self) -> &'static str {
        match self {
            FieldErrorKind::Required => "Required value",
            FieldErrorKind::Invalid => "Invalid value",
            FieldErrorKind::NotSupported => "Unsupported value",
            FieldErrorKind::Duplicate => "Duplicate value",
            FieldErrorKind::Forbidden => "Forbidden",
            FieldErrorKind::TooLong => "Too long",
            FieldErrorKind::TooMany => "Too many",
            FieldErrorKind::NotFound => "Not found",
        }
    }
}

/// One field-level validation error, as upstream `field.Error`.
///
/// `value` holds the bad value already rendered the way upstream prints it (Go `%q`
/// for strings, plain for numbers, Go `%#v` for maps); `None` omits it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: String,
    pub kind: FieldErrorKind,
    pub value: Option<String>,
    pub detail: String,
}

impl FieldError {
    pub fn required(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Required, None, detail)
    }

    /// An invalid string value (rendered quoted).
    pub fn invalid(field: impl Into<String>, value: &str, detail: impl Into<String>) -> Self {
        Self::new(
            field,
            FieldErrorKind::Invalid,
            Some(go_quote(value)),
            detail,
        )
    }

    /// An invalid value already rendered (numbers, maps, structs).
    pub fn invalid_rendered(
        field: impl Into<String>,
        rendered: impl Into<String>,
        detail: impl Into<String>,
    ) -> Self {
        Self::new(
            field,
            FieldErrorKind::Invalid,
            Some(rendered.into()),
            detail,
        )
    }

    pub fn not_supported(field: impl Into<String>, value: &str, supported: &[&str]) -> Self {
        let detail = if supported.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = supported.iter().map(|s| go_quote(s)).collect();
            format!("supported values: {}", quoted.join(", "))
        };
        Self::new(
            field,
            FieldErrorKind::NotSupported,
            Some(go_quote(value)),
            detail,
        )
    }

    pub fn duplicate(field: impl Into<String>, value: &str) -> Self {
        Self::new(field, FieldErrorKind::Duplicate, Some(go_quote(value)), "")
    }

    pub fn forbidden(field: impl Into<String>, detail: impl Into<String>) -> Self {
        Self::new(field, FieldErrorKind::Forbidden, None, detail)
    }

    pub fn too_long(field: impl Into<String>, max_bytes: usize) -> Self {
        Self::new(
            field,
            FieldErrorKind::TooLong,
            None,
            format!("must have at most {max_bytes} bytes"),
        )
    }

    pub fn too_many(field: impl Into<String>, actual: usize, max: usize) -> Self {
        Self::new(
            field,
            FieldErrorKind::TooMany,
            Some(actual.to_string()),
            format!("must have at most {max} items"),
        )
    }

    pub fn not_found(field: impl Into<String>, value: &str) -> Self {
        Self::new(field, FieldErrorKind::NotFound, Some(go_quote(value)), "")
    }

    fn new(
        field: impl Into<String>,
        kind: FieldErrorKind,
        value: Option<String>,
        detail: impl Into<String>,
    ) -> Self {
        FieldError {
            field: field.into(),
            kind,
            value,
            detail: detail.into(),
        }
    }

    /// The upstream `metav1.StatusCause` reason for this error.
    pub fn reason(&self) -> &'static str {
        match self.kind {
            FieldErrorKind::Required => "FieldValueRequired",
            FieldErrorKind::Invalid => "FieldValueInvalid",
            FieldErrorKind::NotSupported => "FieldValueNotSupported",
            FieldErrorKind::Duplicate => "FieldValueDuplicate",
            FieldErrorKind::Forbidden => "FieldValueForbidden",
            FieldErrorKind::TooLong => "FieldValueTooLong",
            FieldErrorKind::TooMany => "FieldValueTooMany",
            FieldErrorKind::NotFound => "FieldValueNotFound",
        }
    }

    /// The message without the field path (upstream `ErrorBody`).
    pub fn body(&self) -> String {
        let mut s = self.kind.label().to_string();
        let shows_value = !matches!(
            self.kind,
            FieldErrorKind::Required | FieldErrorKind::Forbidden | FieldErrorKind::TooLong
        );
        if let (true, Some(v)) = (shows_value, &self.value) {
            s.push_str(": ");
            s.push_str(v);
        }
        if !self.detail.is_empty() {
            s.push_str(": ");
            s.push_str(&self.detail);
        }
        s
    }
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.body())
    }
}

/// Renders a string as Go's `%q` does.
pub(crate) fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if (c as u32) < 0x20 || c == '\x7f' => out.push_str(&format!("\\x{:02x}", c as u32)),
            c if c.is_control() => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Renders a JSON string map as Go's `%#v` of `map[string]string` (keys sorted).
fn go_string_map(m: Option<&Map<String, Value>>) -> String {
    let Some(m) = m else {
        return "map[string]string(nil)".into();
    };
    let sorted: BTreeMap<&String, &str> = m
        .iter()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
        .collect();
    let items: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}:{}", go_quote(k), go_quote(v)))
        .collect();
    format!("map[string]string{{{}}}", items.join(", "))
}

/// Renders a metav1.LabelSelector JSON as Go's `%#v` of `v1.LabelSelector`.
fn go_label_selector(sel: &Value) -> String {
    let labels = go_string_map(sel.get("matchLabels").and_then(Value::as_object));
    let exprs = match sel.get("matchExpressions").and_then(Value::as_array) {
        None => "[]v1.LabelSelectorRequirement(nil)".to_string(),
        Some(list) => {
            let items: Vec<String> = list
                .iter()
                .map(|e| {
                    let values = match e.get("values").and_then(Value::as_array) {
                        None => "[]string(nil)".to_string(),
                        Some(vs) => format!(
                            "[]string{{{}}}",
                            vs.iter()
                                .map(|v| go_quote(v.as_str().unwrap_or("")))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    };
                    format!(
                        "v1.LabelSelectorRequirement{{Key:{}, Operator:{}, Values:{}}}",
                        go_quote(str_at(e, "key")),
                        go_quote(str_at(e, "operator")),
                        values
                    )
                })
                .collect();
            format!("[]v1.LabelSelectorRequirement{{{}}}", items.join(", "))
        }
    };
    format!("v1.LabelSelector{{MatchLabels:{labels}, MatchExpressions:{exprs}}}")
}

/// Renders a JSON value the way upstream prints simple bad values.
fn render(v: &Value) -> String {
    match v {
        Value::String(s) => go_quote(s),
        Value::Null => go_quote("null"),
        other => other.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Name and value helpers (k8s.io/apimachinery/pkg/util/validation)
// ---------------------------------------------------------------------------

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;
const QUALIFIED_NAME_MAX: usize = 63;
const LABEL_VALUE_MAX: usize = 63;
/// Upstream `TotalAnnotationSizeLimitB`.
pub const TOTAL_ANNOTATION_SIZE_LIMIT: usize = 256 * 1024;
/// Upstream `core.MaxSecretSize` (also the ConfigMap limit).
pub const MAX_SECRET_SIZE: usize = 1024 * 1024;

const DNS1123_LABEL_FMT: &str = "[a-z0-9]([-a-z0-9]*[a-z0-9])?";
const DNS1123_LABEL_ERR: &str = "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character";
const DNS1123_SUBDOMAIN_FMT: &str =
    "[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*";
const DNS1123_SUBDOMAIN_ERR: &str = "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character";
const DNS1035_LABEL_FMT: &str = "[a-z]([-a-z0-9]*[a-z0-9])?";
const DNS1035_LABEL_ERR: &str = "a DNS-1035 label must consist of lower case alphanumeric characters or '-', start with an alphabetic character, and end with an alphanumeric character";
const QUALIFIED_NAME_FMT: &str = "([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]";
const QUALIFIED_NAME_ERR: &str = "must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const LABEL_VALUE_FMT: &str = "(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?";
const LABEL_VALUE_ERR: &str = "a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character";
const CONFIG_MAP_KEY_FMT: &str = "[-._a-zA-Z0-9]+";
const CONFIG_MAP_KEY_ERR: &str =
    "a valid config key must consist of alphanumeric characters, '-', '_' or '.'";
const RELAXED_ENV_VAR_NAME_ERR: &str =
    "a valid environment variable name must consist only of printable ASCII characters other than '='";
const IP_ERR: &str = "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)";
const NON_NEGATIVE_ERR: &str = "must be greater than or equal to 0";
const FILE_MODE_ERR: &str = "must be a number between 0 and 0777 (octal), both inclusive";
const FIELD_IMMUTABLE: &str = "field is immutable";
const QUANTITY_FORMAT_ERR: &str =
    "quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'";

fn max_len_error(n: usize) -> String {
    format!("must be no more than {n} characters")
}

fn empty_error() -> &'static str {
    "must be non-empty"
}

/// Upstream `RegexError` (including its double space before "or").
fn regex_error(msg: &str, fmt: &str, examples: &[&str]) -> String {
    if examples.is_empty() {
        return format!("{msg} (regex used for validation is '{fmt}')");
    }
    let mut s = format!("{msg} (e.g. ");
    for (i, e) in examples.iter().enumerate() {
        if i > 0 {
            s.push_str(" or ");
        }
        s.push('\'');
        s.push_str(e);
        s.push_str("', ");
    }
    s.push_str(&format!("regex used for validation is '{fmt}')"));
    s
}

fn is_lower_alnum(c: u8) -> bool {
    c.is_ascii_lowercase() || c.is_ascii_digit()
}

fn matches_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && is_lower_alnum(b[0])
        && is_lower_alnum(b[b.len() - 1])
        && b.iter().all(|&c| is_lower_alnum(c) || c == b'-')
}

fn matches_qualified_part(s: &str) -> bool {
    let b = s.as_bytes();
    !b.is_empty()
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter()
            .all(|&c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_' || c == b'.')
}

/// Upstream `IsDNS1123Label`: the messages for every rule `s` breaks (empty = valid).
pub fn is_dns1123_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !matches_dns1123_label(s) {
        errs.push(regex_error(
            DNS1123_LABEL_ERR,
            DNS1123_LABEL_FMT,
            &["my-name", "123-abc"],
        ));
    }
    errs
}

/// Upstream `IsDNS1123Subdomain`.
pub fn is_dns1123_subdomain(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    if !s.split('.').all(matches_dns1123_label) {
        errs.push(regex_error(
            DNS1123_SUBDOMAIN_ERR,
            DNS1123_SUBDOMAIN_FMT,
            &["example.com"],
        ));
    }
    errs
}

/// Upstream `IsDNS1035Label` (Service names).
pub fn is_dns1035_label(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_LABEL_MAX {
        errs.push(max_len_error(DNS1123_LABEL_MAX));
    }
    if !(matches_dns1123_label(s) && s.as_bytes()[0].is_ascii_lowercase()) {
        errs.push(regex_error(
            DNS1035_LABEL_ERR,
            DNS1035_LABEL_FMT,
            &["my-name", "abc-123"],
        ));
    }
    errs
}

/// Upstream `IsQualifiedName` (label keys, annotation keys, finalizers).
pub fn is_qualified_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    let parts: Vec<&str> = s.split('/').collect();
    let name = match parts.as_slice() {
        [name] => *name,
        [prefix, name] => {
            if prefix.is_empty() {
                errs.push(format!("prefix part {}", empty_error()));
            } else {
                for m in is_dns1123_subdomain(prefix) {
                    errs.push(format!("prefix part {m}"));
                }
            }
            *name
        }
        _ => {
            errs.push(format!(
                "a qualified name {} with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')",
                regex_error(QUALIFIED_NAME_ERR, QUALIFIED_NAME_FMT, &["MyName", "my.name", "123-abc"])
            ));
            return errs;
        }
    };
    if name.is_empty() {
        errs.push(format!("name part {}", empty_error()));
    } else if name.len() > QUALIFIED_NAME_MAX {
        errs.push(format!("name part {}", max_len_error(QUALIFIED_NAME_MAX)));
    }
    if !matches_qualified_part(name) {
        errs.push(format!(
            "name part {}",
            regex_error(
                QUALIFIED_NAME_ERR,
                QUALIFIED_NAME_FMT,
                &["MyName", "my.name", "123-abc"]
            )
        ));
    }
    errs
}

/// Upstream `IsValidLabelValue`.
pub fn is_valid_label_value(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > LABEL_VALUE_MAX {
        errs.push(max_len_error(LABEL_VALUE_MAX));
    }
    if !s.is_empty() && !matches_qualified_part(s) {
        errs.push(regex_error(
            LABEL_VALUE_ERR,
            LABEL_VALUE_FMT,
            &["MyValue", "my_value", "12345"],
        ));
    }
    errs
}

fn has_chdir_prefix(s: &str) -> Option<String> {
    match s {
        "." => Some("must not be '.'".into()),
        ".." => Some("must not be '..'".into()),
        _ if s.starts_with("..") => Some("must not start with '..'".into()),
        _ => None,
    }
}

/// Upstream `IsConfigMapKey` (ConfigMap and Secret data keys).
pub fn is_config_map_key(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > DNS1123_SUBDOMAIN_MAX {
        errs.push(max_len_error(DNS1123_SUBDOMAIN_MAX));
    }
    let ok = !s.is_empty()
        && s.bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'.' || c == b'_');
    if !ok {
        errs.push(regex_error(
            CONFIG_MAP_KEY_ERR,
            CONFIG_MAP_KEY_FMT,
            &["key.name", "KEY_NAME", "key-name"],
        ));
    }
    if let Some(m) = has_chdir_prefix(s) {
        errs.push(m);
    }
    errs
}

/// Upstream `IsValidPortName` (IANA service names).
pub fn is_valid_port_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.len() > 15 {
        errs.push(max_len_error(15));
    }
    if s.is_empty()
        || !s
            .bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-')
    {
        errs.push("must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)".into());
    }
    if !s.bytes().any(|c| c.is_ascii_lowercase()) {
        errs.push("must contain at least one letter (a-z)".into());
    }
    if s.contains("--") {
        errs.push("must not contain consecutive hyphens".into());
    }
    if s.starts_with('-') || s.ends_with('-') {
        errs.push("must not begin or end with a hyphen".into());
    }
    errs
}

/// Upstream `IsValidPortNum`.
pub fn is_valid_port_num(port: i64) -> Vec<String> {
    if (1..=65535).contains(&port) {
        Vec::new()
    } else {
        vec!["must be between 1 and 65535, inclusive".into()]
    }
}

/// Upstream `IsRelaxedEnvVarName` (the 1.32 default for container env names).
pub fn is_env_var_name(s: &str) -> Vec<String> {
    let mut errs = Vec::new();
    if s.is_empty() {
        errs.push(format!("environment variable name {}", empty_error()));
    }
    if s.chars()
        .any(|c| !c.is_ascii() || c.is_ascii_control() || c == '=')
    {
        errs.push(RELAXED_ENV_VAR_NAME_ERR.into());
    }
    errs
}

fn is_valid_ip(s: &str) -> bool {
    s.parse::<std::net::IpAddr>().is_ok()
}

/// Upstream `NameIsDNSSubdomain` etc. with `prefix` = validating a generateName.
fn mask_trailing_dash(name: &str) -> String {
    if name.len() > 1 && name.ends_with('-') {
        format!("{}a", &name[..name.len() - 2])
    } else {
        name.to_string()
    }
}

type NameFn = fn(&str) -> Vec<String>;

fn name_fn_for(kind: &str) -> NameFn {
    match kind {
        "Namespace" => is_dns1123_label,
        "Service" => is_dns1035_label,
        _ => is_dns1123_subdomain,
    }
}

/// A JSON quantity (string or number) as a string.
fn quantity_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// JSON access helpers
// ---------------------------------------------------------------------------

fn field<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.get(key).filter(|x| !x.is_null())
}

fn str_at<'a>(v: &'a Value, key: &str) -> &'a str {
    v.get(key).and_then(Value::as_str).unwrap_or("")
}

fn arr_at<'a>(v: &'a Value, key: &str) -> &'a [Value] {
    v.get(key)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn obj_at<'a>(v: &'a Value, key: &str) -> Option<&'a Map<String, Value>> {
    v.get(key).and_then(Value::as_object)
}

fn int_at(v: &Value, key: &str) -> Option<i64> {
    v.get(key).and_then(Value::as_i64)
}

fn is_empty_map(m: Option<&Map<String, Value>>) -> bool {
    m.is_none_or(Map::is_empty)
}

type Errs = Vec<FieldError>;

fn non_negative(v: &Value, key: &str, path: &str, errs: &mut Errs) {
    if let Some(n) = int_at(v, key) {
        if n < 0 {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.{key}"),
                n.to_string(),
                NON_NEGATIVE_ERR,
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Entry point
// ---------------------------------------------------------------------------

/// Validates `obj` of `kind` (after defaulting); `old` is the stored object on update.
/// Kinds without specific rules get metadata validation only.
pub fn validate(kind: &str, obj: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let mut errs = Vec::new();
    validate_object_meta(
        obj.get("metadata").unwrap_or(&Value::Null),
        name_fn_for(kind),
        &mut errs,
    );
    match kind {
        "Namespace" => validate_namespace(obj, &mut errs),
        "Pod" => validate_pod(obj, old, &mut errs),
        "ReplicationController" => validate_replication_controller(obj, &mut errs),
        "ReplicaSet" | "Deployment" => validate_apps_workload(kind, obj, old, &mut errs),
        "Service" => validate_service(obj, old, &mut errs),
        "Endpoints" => validate_endpoints(obj, &mut errs),
        "Node" => validate_node(obj, &mut errs),
        "Event" => validate_event(obj, &mut errs),
        "ConfigMap" => validate_config_map(obj, old, &mut errs),
        "Secret" => validate_secret(obj, old, &mut errs),
        "Lease" => validate_lease(obj, &mut errs),
        _ => {}
    }
    errs
}

fn validate_object_meta(meta: &Value, name_fn: NameFn, errs: &mut Errs) {
    let name = str_at(meta, "name");
    let generate_name = str_at(meta, "generateName");
    if !generate_name.is_empty() {
        for m in name_fn(&mask_trailing_dash(generate_name)) {
            errs.push(FieldError::invalid(
                "metadata.generateName",
                generate_name,
                m,
            ));
        }
    }
    if name.is_empty() {
        if generate_name.is_empty() {
            errs.push(FieldError::required(
                "metadata.name",
                "name or generateName is required",
            ));
        }
    } else {
        for m in name_fn(name) {
            errs.push(FieldError::invalid("metadata.name", name, m));
        }
    }
    let namespace = str_at(meta, "namespace");
    if !namespace.is_empty() {
        for m in is_dns1123_label(namespace) {
            errs.push(FieldError::invalid("metadata.namespace", namespace, m));
        }
    }
    non_negative(meta, "generation", "metadata", errs);
    validate_labels(obj_at(meta, "labels"), "metadata.labels", errs);
    validate_annotations(obj_at(meta, "annotations"), "metadata.annotations", errs);
    for (i, f) in arr_at(meta, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        for m in is_qualified_name(f) {
            errs.push(FieldError::invalid(
                format!("metadata.finalizers[{i}]"),
                f,
                m,
            ));
        }
    }
}

/// Upstream `ValidateLabels`: keys are qualified names, values label values.
pub fn validate_labels(labels: Option<&Map<String, Value>>, path: &str, errs: &mut Errs) {
    for (k, v) in labels.into_iter().flatten() {
        for m in is_qualified_name(k) {
            errs.push(FieldError::invalid(path, k, m));
        }
        let v = v.as_str().unwrap_or("");
        for m in is_valid_label_value(v) {
            errs.push(FieldError::invalid(format!("{path}[{k}]"), v, m));
        }
    }
}

fn validate_annotations(ann: Option<&Map<String, Value>>, path: &str, errs: &mut Errs) {
    let mut total = 0;
    for (k, v) in ann.into_iter().flatten() {
        for m in is_qualified_name(&k.to_lowercase()) {
            errs.push(FieldError::invalid(path, k, m));
        }
        total += k.len() + v.as_str().map_or(0, str::len);
    }
    if total > TOTAL_ANNOTATION_SIZE_LIMIT {
        errs.push(FieldError::too_long(path, TOTAL_ANNOTATION_SIZE_LIMIT));
    }
}

// ---------------------------------------------------------------------------
// Namespace, Node, Event, Lease
// ---------------------------------------------------------------------------

fn validate_namespace(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for (i, f) in arr_at(spec, "finalizers").iter().enumerate() {
        let f = f.as_str().unwrap_or("");
        let path = format!("spec.finalizers[{i}]");
        let msgs = is_qualified_name(f);
        for m in &msgs {
            errs.push(FieldError::invalid(&path, f, m.clone()));
        }
        if msgs.is_empty() && !f.contains('/') && f != "kubernetes" {
            errs.push(FieldError::invalid(
                &path,
                f,
                "name is neither a standard finalizer name nor is it fully qualified",
            ));
        }
    }
}

const TAINT_EFFECTS: [&str; 3] = ["NoSchedule", "PreferNoSchedule", "NoExecute"];

fn validate_node(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    for (i, t) in arr_at(spec, "taints").iter().enumerate() {
        let path = format!("spec.taints[{i}]");
        let key = str_at(t, "key");
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{path}.key"), key, m));
        }
        let value = str_at(t, "value");
        for m in is_valid_label_value(value) {
            errs.push(FieldError::invalid(format!("{path}.value"), value, m));
        }
        match str_at(t, "effect") {
            "" => errs.push(FieldError::required(format!("{path}.effect"), "")),
            e if !TAINT_EFFECTS.contains(&e) => errs.push(FieldError::not_supported(
                format!("{path}.effect"),
                e,
                &TAINT_EFFECTS,
            )),
            _ => {}
        }
    }
    let pod_cidr = str_at(spec, "podCIDR");
    if !pod_cidr.is_empty() && pod_cidr.parse::<ipnet::IpNet>().is_err() {
        errs.push(FieldError::invalid(
            "spec.podCIDR",
            pod_cidr,
            "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
        ));
    }
}

fn validate_event(obj: &Value, errs: &mut Errs) {
    let namespace = obj
        .get("metadata")
        .map(|m| str_at(m, "namespace"))
        .unwrap_or("");
    let involved = obj.get("involvedObject").unwrap_or(&Value::Null);
    let involved_ns = str_at(involved, "namespace");
    let mismatch = if involved_ns.is_empty() {
        !namespace.is_empty() && namespace != "default"
    } else {
        namespace != involved_ns
    };
    if mismatch {
        errs.push(FieldError::invalid(
            "involvedObject.namespace",
            involved_ns,
            "does not match event.namespace",
        ));
    }
}

fn validate_lease(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    if let Some(d) = int_at(spec, "leaseDurationSeconds") {
        if d <= 0 {
            errs.push(FieldError::invalid_rendered(
                "spec.leaseDurationSeconds",
                d.to_string(),
                "must be greater than 0",
            ));
        }
    }
    non_negative(spec, "leaseTransitions", "spec", errs);
}

// ---------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------

const RESTART_POLICIES: [&str; 3] = ["Always", "OnFailure", "Never"];
const DNS_POLICIES: [&str; 4] = ["ClusterFirstWithHostNet", "ClusterFirst", "Default", "None"];
const PULL_POLICIES: [&str; 3] = ["Always", "IfNotPresent", "Never"];
const PORT_PROTOCOLS: [&str; 3] = ["SCTP", "TCP", "UDP"];
const TERMINATION_MESSAGE_POLICIES: [&str; 2] = ["File", "FallbackToLogsOnError"];
const TOLERATION_OPERATORS: [&str; 2] = ["Equal", "Exists"];
/// In upstream's checking order (the first present source wins, the rest are forbidden).
const VOLUME_SOURCES: [&str; 30] = [
    "emptyDir",
    "hostPath",
    "gcePersistentDisk",
    "awsElasticBlockStore",
    "gitRepo",
    "secret",
    "nfs",
    "iscsi",
    "glusterfs",
    "persistentVolumeClaim",
    "rbd",
    "flexVolume",
    "cinder",
    "cephfs",
    "flocker",
    "downwardAPI",
    "fc",
    "azureFile",
    "configMap",
    "vsphereVolume",
    "quobyte",
    "azureDisk",
    "photonPersistentDisk",
    "projected",
    "portworxVolume",
    "scaleIO",
    "storageos",
    "csi",
    "ephemeral",
    "image",
];

/// The fields upstream lets a pod update change, in its message wording.
pub const POD_UPDATABLE_FIELDS: &str = "`spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)";

fn validate_pod(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, "spec", errs);
    if let Some(old) = old {
        validate_pod_spec_update(spec, old.get("spec").unwrap_or(&Value::Null), errs);
    }
}

/// Upstream `ValidatePodSpec` (the parts users hit); `path` is e.g. `spec` or
/// `spec.template.spec`.
pub fn validate_pod_spec(spec: &Value, path: &str, errs: &mut Errs) {
    let volumes = validate_volumes(arr_at(spec, "volumes"), &format!("{path}.volumes"), errs);
    let containers = arr_at(spec, "containers");
    let mut names = HashSet::new();
    if containers.is_empty() {
        errs.push(FieldError::required(format!("{path}.containers"), ""));
    }
    for (i, c) in containers.iter().enumerate() {
        validate_container(
            c,
            &format!("{path}.containers[{i}]"),
            &volumes,
            &mut names,
            errs,
        );
    }
    for (i, c) in arr_at(spec, "initContainers").iter().enumerate() {
        validate_container(
            c,
            &format!("{path}.initContainers[{i}]"),
            &volumes,
            &mut names,
            errs,
        );
    }
    check_enum(spec, "restartPolicy", path, &RESTART_POLICIES, errs);
    check_enum(spec, "dnsPolicy", path, &DNS_POLICIES, errs);
    validate_labels(
        obj_at(spec, "nodeSelector"),
        &format!("{path}.nodeSelector"),
        errs,
    );
    for key in ["serviceAccountName", "nodeName"] {
        let v = str_at(spec, key);
        if !v.is_empty() {
            for m in is_dns1123_subdomain(v) {
                errs.push(FieldError::invalid(format!("{path}.{key}"), v, m));
            }
        }
    }
    if let Some(d) = int_at(spec, "activeDeadlineSeconds") {
        if !(1..=i64::from(i32::MAX)).contains(&d) {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.activeDeadlineSeconds"),
                d.to_string(),
                "must be between 1 and 2147483647, inclusive",
            ));
        }
    }
    for (i, t) in arr_at(spec, "tolerations").iter().enumerate() {
        validate_toleration(t, &format!("{path}.tolerations[{i}]"), errs);
    }
}

/// Checks an optional enum field: empty string is Required, unknown NotSupported.
fn check_enum(v: &Value, key: &str, path: &str, allowed: &[&str], errs: &mut Errs) {
    let Some(val) = field(v, key) else { return };
    let s = val.as_str().unwrap_or("");
    if s.is_empty() {
        errs.push(FieldError::required(format!("{path}.{key}"), ""));
    } else if !allowed.contains(&s) {
        errs.push(FieldError::not_supported(
            format!("{path}.{key}"),
            s,
            allowed,
        ));
    }
}

fn validate_volumes(volumes: &[Value], path: &str, errs: &mut Errs) -> HashSet<String> {
    let mut names = HashSet::new();
    for (i, vol) in volumes.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(vol, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else {
            let msgs = is_dns1123_label(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(format!("{idx}.name"), name, m));
                }
            } else if !names.insert(name.to_string()) {
                errs.push(FieldError::duplicate(format!("{idx}.name"), name));
            }
        }
        let sources: Vec<&str> = VOLUME_SOURCES
            .iter()
            .copied()
            .filter(|s| field(vol, s).is_some())
            .collect();
        match sources.as_slice() {
            [] => errs.push(FieldError::required(&idx, "must specify a volume type")),
            [first, rest @ ..] => {
                for extra in rest {
                    errs.push(FieldError::forbidden(
                        format!("{idx}.{extra}"),
                        "may not specify more than 1 volume type",
                    ));
                }
                validate_volume_source(first, &vol[*first], &format!("{idx}.{first}"), errs);
            }
        }
    }
    names
}

fn validate_volume_source(kind: &str, src: &Value, path: &str, errs: &mut Errs) {
    let required = |key: &str, errs: &mut Errs| {
        if str_at(src, key).is_empty() {
            errs.push(FieldError::required(format!("{path}.{key}"), ""));
        }
    };
    match kind {
        "hostPath" => required("path", errs),
        "secret" => required("secretName", errs),
        "configMap" => required("name", errs),
        "persistentVolumeClaim" => required("claimName", errs),
        "emptyDir" => {
            if let Some(q) = field(src, "sizeLimit").and_then(quantity_text) {
                if parse_quantity(&q).is_err() {
                    errs.push(FieldError::invalid(
                        format!("{path}.sizeLimit"),
                        &q,
                        QUANTITY_FORMAT_ERR,
                    ));
                }
            }
        }
        _ => {}
    }
    if matches!(kind, "secret" | "configMap" | "downwardAPI" | "projected") {
        if let Some(mode) = int_at(src, "defaultMode") {
            if !(0..=0o777).contains(&mode) {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.defaultMode"),
                    mode.to_string(),
                    FILE_MODE_ERR,
                ));
            }
        }
    }
}

fn validate_container(
    c: &Value,
    path: &str,
    volumes: &HashSet<String>,
    names: &mut HashSet<String>,
    errs: &mut Errs,
) {
    let name = str_at(c, "name");
    if name.is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    } else {
        let msgs = is_dns1123_label(name);
        if !msgs.is_empty() {
            for m in msgs {
                errs.push(FieldError::invalid(format!("{path}.name"), name, m));
            }
        } else if !names.insert(name.to_string()) {
            errs.push(FieldError::duplicate(format!("{path}.name"), name));
        }
    }
    let image = str_at(c, "image");
    if image.is_empty() {
        errs.push(FieldError::required(format!("{path}.image"), ""));
    } else if image.trim() != image {
        errs.push(FieldError::invalid(
            format!("{path}.image"),
            image,
            "must not have leading or trailing whitespace",
        ));
    }
    check_enum(c, "imagePullPolicy", path, &PULL_POLICIES, errs);
    check_enum(
        c,
        "terminationMessagePolicy",
        path,
        &TERMINATION_MESSAGE_POLICIES,
        errs,
    );
    validate_container_ports(arr_at(c, "ports"), &format!("{path}.ports"), errs);
    validate_env(arr_at(c, "env"), &format!("{path}.env"), errs);
    validate_volume_mounts(
        arr_at(c, "volumeMounts"),
        &format!("{path}.volumeMounts"),
        volumes,
        errs,
    );
    if let Some(res) = field(c, "resources") {
        validate_resources(res, &format!("{path}.resources"), errs);
    }
}

fn validate_container_ports(ports: &[Value], path: &str, errs: &mut Errs) {
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(p, "name");
        if !name.is_empty() {
            let msgs = is_valid_port_name(name);
            if !msgs.is_empty() {
                for m in msgs {
                    errs.push(FieldError::invalid(format!("{idx}.name"), name, m));
                }
            } else if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{idx}.name"), name));
            }
        }
        match int_at(p, "containerPort").unwrap_or(0) {
            0 => errs.push(FieldError::required(format!("{idx}.containerPort"), "")),
            n => {
                for m in is_valid_port_num(n) {
                    errs.push(FieldError::invalid_rendered(
                        format!("{idx}.containerPort"),
                        n.to_string(),
                        m,
                    ));
                }
            }
        }
        if let Some(n) = int_at(p, "hostPort").filter(|n| *n != 0) {
            for m in is_valid_port_num(n) {
                errs.push(FieldError::invalid_rendered(
                    format!("{idx}.hostPort"),
                    n.to_string(),
                    m,
                ));
            }
        }
        check_enum(p, "protocol", &idx, &PORT_PROTOCOLS, errs);
    }
}

fn validate_env(env: &[Value], path: &str, errs: &mut Errs) {
    for (i, e) in env.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(e, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else {
            for m in is_env_var_name(name) {
                errs.push(FieldError::invalid(format!("{idx}.name"), name, m));
            }
        }
        let Some(from) = field(e, "valueFrom") else {
            continue;
        };
        let from_path = format!("{idx}.valueFrom");
        let sources = [
            "fieldRef",
            "resourceFieldRef",
            "configMapKeyRef",
            "secretKeyRef",
        ]
        .iter()
        .filter(|k| field(from, k).is_some())
        .count();
        if sources == 0 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
            ));
        } else if !str_at(e, "value").is_empty() {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not be specified when `value` is not empty",
            ));
        } else if sources > 1 {
            errs.push(FieldError::invalid(
                &from_path,
                "",
                "may not have more than one field specified at a time",
            ));
        }
        if let Some(fr) = field(from, "fieldRef") {
            if str_at(fr, "fieldPath").is_empty() {
                errs.push(FieldError::required(
                    format!("{from_path}.fieldRef.fieldPath"),
                    "",
                ));
            }
        }
        for key_ref in ["configMapKeyRef", "secretKeyRef"] {
            if let Some(r) = field(from, key_ref) {
                let key = str_at(r, "key");
                if key.is_empty() {
                    errs.push(FieldError::required(
                        format!("{from_path}.{key_ref}.key"),
                        "",
                    ));
                } else {
                    for m in is_config_map_key(key) {
                        errs.push(FieldError::invalid(
                            format!("{from_path}.{key_ref}.key"),
                            key,
                            m,
                        ));
                    }
                }
            }
        }
    }
}

fn validate_volume_mounts(
    mounts: &[Value],
    path: &str,
    volumes: &HashSet<String>,
    errs: &mut Errs,
) {
    let mut paths = HashSet::new();
    for (i, m) in mounts.iter().enumerate() {
        let idx = format!("{path}[{i}]");
        let name = str_at(m, "name");
        if name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else if !volumes.contains(name) {
            errs.push(FieldError::not_found(format!("{idx}.name"), name));
        }
        let mount_path = str_at(m, "mountPath");
        if mount_path.is_empty() {
            errs.push(FieldError::required(format!("{idx}.mountPath"), ""));
        } else if !paths.insert(mount_path) {
            errs.push(FieldError::invalid(
                format!("{idx}.mountPath"),
                mount_path,
                "must be unique",
            ));
        }
    }
}

fn validate_resources(res: &Value, path: &str, errs: &mut Errs) {
    let parse_list = |key: &str, errs: &mut Errs| -> BTreeMap<String, (String, Quantity)> {
        let mut out = BTreeMap::new();
        for (name, q) in obj_at(res, key).into_iter().flatten() {
            let qpath = format!("{path}.{key}[{name}]");
            let Some(text) = quantity_text(q) else {
                errs.push(FieldError::invalid_rendered(
                    &qpath,
                    render(q),
                    QUANTITY_FORMAT_ERR,
                ));
                continue;
            };
            match parse_quantity(&text) {
                Err(e) => errs.push(FieldError::invalid(&qpath, &text, e.to_string())),
                Ok(parsed) if parsed.is_negative() => {
                    errs.push(FieldError::invalid(&qpath, &text, NON_NEGATIVE_ERR))
                }
                Ok(parsed) => {
                    out.insert(name.clone(), (text, parsed));
                }
            }
        }
        out
    };
    let limits = parse_list("limits", errs);
    let requests = parse_list("requests", errs);
    for (name, (text, req)) in &requests {
        if let Some((limit_text, limit)) = limits.get(name) {
            if req > limit {
                errs.push(FieldError::invalid(
                    format!("{path}.requests"),
                    text,
                    format!("must be less than or equal to {name} limit of {limit_text}"),
                ));
            }
        }
    }
}

fn validate_toleration(t: &Value, path: &str, errs: &mut Errs) {
    let key = str_at(t, "key");
    let operator = str_at(t, "operator");
    let effect = str_at(t, "effect");
    let value = str_at(t, "value");
    if !key.is_empty() {
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{path}.key"), key, m));
        }
    }
    if key.is_empty() && operator != "Exists" {
        errs.push(FieldError::invalid(
            format!("{path}.operator"),
            operator,
            "operator must be Exists when `key` is empty, which means \"match all values and all keys\"",
        ));
    }
    if field(t, "tolerationSeconds").is_some() && effect != "NoExecute" {
        errs.push(FieldError::invalid(
            format!("{path}.effect"),
            effect,
            "effect must be 'NoExecute' when `tolerationSeconds` is set",
        ));
    }
    match operator {
        "" | "Equal" => {
            let msgs = is_valid_label_value(value);
            if !msgs.is_empty() {
                errs.push(FieldError::invalid(
                    format!("{path}.operator"),
                    value,
                    msgs.join(";"),
                ));
            }
        }
        "Exists" => {
            if !value.is_empty() {
                errs.push(FieldError::invalid_rendered(
                    format!("{path}.operator"),
                    t.to_string(),
                    "value must be empty when `operator` is 'Exists'",
                ));
            }
        }
        other => errs.push(FieldError::not_supported(
            format!("{path}.operator"),
            other,
            &TOLERATION_OPERATORS,
        )),
    }
    if !effect.is_empty() && !TAINT_EFFECTS.contains(&effect) {
        errs.push(FieldError::not_supported(
            format!("{path}.effect"),
            effect,
            &TAINT_EFFECTS,
        ));
    }
}

/// Upstream `ValidatePodSpecUpdate`'s immutability rule: only images, the active
/// deadline, added tolerations and a negative grace period (to 1) may change.
fn validate_pod_spec_update(new: &Value, old: &Value, errs: &mut Errs) {
    let mut munged = new.clone();
    for list in ["containers", "initContainers"] {
        let old_list = arr_at(old, list);
        if let Some(items) = munged.get_mut(list).and_then(Value::as_array_mut) {
            if items.len() == old_list.len() {
                for (item, old_item) in items.iter_mut().zip(old_list) {
                    if let (Some(obj), Some(img)) = (item.as_object_mut(), old_item.get("image")) {
                        obj.insert("image".into(), img.clone());
                    }
                }
            }
        }
    }
    let Some(m) = munged.as_object_mut() else {
        return;
    };
    set_or_remove(m, "activeDeadlineSeconds", old.get("activeDeadlineSeconds"));
    let old_tols = arr_at(old, "tolerations");
    let new_tols = arr_at(new, "tolerations");
    if old_tols.iter().all(|t| new_tols.contains(t)) {
        set_or_remove(m, "tolerations", old.get("tolerations"));
    }
    let old_grace = int_at(old, "terminationGracePeriodSeconds");
    if old_grace.is_some_and(|g| g < 0) && int_at(new, "terminationGracePeriodSeconds") == Some(1) {
        set_or_remove(
            m,
            "terminationGracePeriodSeconds",
            old.get("terminationGracePeriodSeconds"),
        );
    }
    if &munged != old {
        let diff = describe_diff(old, &munged, "spec");
        errs.push(FieldError::forbidden(
            "spec",
            format!("pod updates may not change fields other than {POD_UPDATABLE_FIELDS}\n{diff}"),
        ));
    }
}

fn set_or_remove(m: &mut Map<String, Value>, key: &str, v: Option<&Value>) {
    match v {
        Some(v) => {
            m.insert(key.into(), v.clone());
        }
        None => {
            m.remove(key);
        }
    }
}

/// A short human description of where two values differ (`- old` / `+ new` per path).
fn describe_diff(old: &Value, new: &Value, path: &str) -> String {
    let mut lines = Vec::new();
    diff_into(old, new, path, &mut lines);
    lines.join("\n")
}

fn diff_into(old: &Value, new: &Value, path: &str, out: &mut Vec<String>) {
    if old == new {
        return;
    }
    match (old, new) {
        (Value::Object(a), Value::Object(b)) => {
            for (k, va) in a {
                diff_into(
                    va,
                    b.get(k).unwrap_or(&Value::Null),
                    &format!("{path}.{k}"),
                    out,
                );
            }
            for (k, vb) in b.iter().filter(|(k, _)| !a.contains_key(*k)) {
                diff_into(&Value::Null, vb, &format!("{path}.{k}"), out);
            }
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => {
            for (i, (va, vb)) in a.iter().zip(b).enumerate() {
                diff_into(va, vb, &format!("{path}[{i}]"), out);
            }
        }
        _ => {
            out.push(format!("  {path}:"));
            out.push(format!("-   {old}"));
            out.push(format!("+   {new}"));
        }
    }
}

// ---------------------------------------------------------------------------
// ReplicationController, ReplicaSet, Deployment
// ---------------------------------------------------------------------------

fn validate_pod_template(template: &Value, path: &str, kind_label: &str, errs: &mut Errs) {
    let meta = template.get("metadata").unwrap_or(&Value::Null);
    validate_labels(obj_at(meta, "labels"), &format!("{path}.labels"), errs);
    validate_annotations(
        obj_at(meta, "annotations"),
        &format!("{path}.annotations"),
        errs,
    );
    let spec = template.get("spec").unwrap_or(&Value::Null);
    validate_pod_spec(spec, &format!("{path}.spec"), errs);
    let policy = str_at(spec, "restartPolicy");
    if !policy.is_empty() && policy != "Always" {
        errs.push(FieldError::not_supported(
            format!("{path}.spec.restartPolicy"),
            policy,
            &["Always"],
        ));
    }
    if let Some(d) = field(spec, "activeDeadlineSeconds") {
        errs.push(FieldError::invalid_rendered(
            format!("{path}.spec.activeDeadlineSeconds"),
            d.to_string(),
            format!("activeDeadlineSeconds in {kind_label} is not Supported"),
        ));
    }
}

fn template_labels(template: &Value) -> Option<&Map<String, Value>> {
    template.get("metadata").and_then(|m| obj_at(m, "labels"))
}

fn validate_replication_controller(obj: &Value, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    non_negative(spec, "minReadySeconds", "spec", errs);
    let selector = obj_at(spec, "selector");
    if is_empty_map(selector) {
        errs.push(FieldError::required("spec.selector", ""));
    }
    validate_labels(selector, "spec.selector", errs);
    non_negative(spec, "replicas", "spec", errs);
    let Some(template) = field(spec, "template") else {
        errs.push(FieldError::required("spec.template", ""));
        return;
    };
    if let Some(sel) = selector.filter(|m| !m.is_empty()) {
        if !LabelSelector::from_map(sel).matches(template_labels(template)) {
            errs.push(FieldError::invalid_rendered(
                "spec.template.metadata.labels",
                go_string_map(template_labels(template)),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_pod_template(template, "spec.template", "ReplicationController", errs);
}

fn validate_apps_workload(kind: &str, obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    non_negative(spec, "replicas", "spec", errs);
    non_negative(spec, "minReadySeconds", "spec", errs);
    let selector = field(spec, "selector");
    let mut parsed = None;
    match selector {
        None => errs.push(FieldError::required("spec.selector", "")),
        Some(sel) => {
            validate_label_selector(sel, "spec.selector", errs);
            let empty = is_empty_map(obj_at(sel, "matchLabels"))
                && arr_at(sel, "matchExpressions").is_empty();
            if empty {
                errs.push(FieldError::invalid_rendered(
                    "spec.selector",
                    go_label_selector(sel),
                    "empty selector is invalid for deployment",
                ));
            }
            match LabelSelector::from_k8s(sel) {
                Ok(s) => parsed = Some(s),
                Err(_) => errs.push(FieldError::invalid_rendered(
                    "spec.selector",
                    go_label_selector(sel),
                    "invalid label selector",
                )),
            }
        }
    }
    let template = spec.get("template").unwrap_or(&Value::Null);
    if let Some(sel) = parsed.filter(|s| !s.is_empty()) {
        if !sel.matches(template_labels(template)) {
            errs.push(FieldError::invalid_rendered(
                "spec.template.metadata.labels",
                go_string_map(template_labels(template)),
                "`selector` does not match template `labels`",
            ));
        }
    }
    validate_pod_template(template, "spec.template", kind, errs);

    if kind == "Deployment" {
        validate_deployment_spec(spec, errs);
    }
    if let Some(old) = old {
        let old_sel = old.get("spec").and_then(|s| s.get("selector"));
        if old_sel.filter(|v| !v.is_null()) != selector {
            errs.push(FieldError::invalid_rendered(
                "spec.selector",
                go_label_selector(selector.unwrap_or(&Value::Null)),
                FIELD_IMMUTABLE,
            ));
        }
    }
}

/// Upstream `ValidateLabelSelector` (metav1): operators, keys, values.
pub fn validate_label_selector(sel: &Value, path: &str, errs: &mut Errs) {
    validate_labels(
        obj_at(sel, "matchLabels"),
        &format!("{path}.matchLabels"),
        errs,
    );
    for (i, e) in arr_at(sel, "matchExpressions").iter().enumerate() {
        let idx = format!("{path}.matchExpressions[{i}]");
        let values = arr_at(e, "values");
        match str_at(e, "operator") {
            "In" | "NotIn" => {
                if values.is_empty() {
                    errs.push(FieldError::required(
                        format!("{idx}.values"),
                        "must be specified when `operator` is 'In' or 'NotIn'",
                    ));
                }
            }
            "Exists" | "DoesNotExist" => {
                if !values.is_empty() {
                    errs.push(FieldError::forbidden(
                        format!("{idx}.values"),
                        "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                    ));
                }
            }
            op => errs.push(FieldError::invalid(
                format!("{idx}.operator"),
                op,
                "not a valid selector operator",
            )),
        }
        let key = str_at(e, "key");
        for m in is_qualified_name(key) {
            errs.push(FieldError::invalid(format!("{idx}.key"), key, m));
        }
        for (j, v) in values.iter().enumerate() {
            let v = v.as_str().unwrap_or("");
            for m in is_valid_label_value(v) {
                errs.push(FieldError::invalid(format!("{idx}.values[{j}]"), v, m));
            }
        }
    }
}

fn validate_deployment_spec(spec: &Value, errs: &mut Errs) {
    non_negative(spec, "revisionHistoryLimit", "spec", errs);
    if let Some(strategy) = field(spec, "strategy") {
        let rolling = field(strategy, "rollingUpdate");
        match str_at(strategy, "type") {
            "Recreate" => {
                if rolling.is_some() {
                    errs.push(FieldError::forbidden(
                        "spec.strategy.rollingUpdate",
                        "may not be specified when strategy `type` is 'Recreate'",
                    ));
                }
            }
            "RollingUpdate" => {
                if let Some(ru) = rolling {
                    validate_rolling_update(ru, "spec.strategy.rollingUpdate", errs);
                }
            }
            other => errs.push(FieldError::not_supported(
                "spec.strategy.type",
                other,
                &["Recreate", "RollingUpdate"],
            )),
        }
    }
    if let Some(deadline) = int_at(spec, "progressDeadlineSeconds") {
        if deadline <= int_at(spec, "minReadySeconds").unwrap_or(0) {
            errs.push(FieldError::invalid_rendered(
                "spec.progressDeadlineSeconds",
                deadline.to_string(),
                "must be greater than minReadySeconds",
            ));
        }
    }
}

/// An intOrString as (rendered, value, is_percent); None when malformed.
fn int_or_percent(v: &Value, path: &str, errs: &mut Errs) -> Option<(i64, bool)> {
    match v {
        Value::Number(n) => {
            let n = n.as_i64().unwrap_or(-1);
            if n < 0 {
                errs.push(FieldError::invalid_rendered(
                    path,
                    n.to_string(),
                    NON_NEGATIVE_ERR,
                ));
                return None;
            }
            Some((n, false))
        }
        Value::String(s) => {
            let digits = s
                .strip_suffix('%')
                .filter(|d| !d.is_empty() && d.bytes().all(|c| c.is_ascii_digit()));
            match digits.and_then(|d| d.parse().ok()) {
                Some(n) => Some((n, true)),
                None => {
                    errs.push(FieldError::invalid(
                        path,
                        s,
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    ));
                    None
                }
            }
        }
        _ => None,
    }
}

fn validate_rolling_update(ru: &Value, path: &str, errs: &mut Errs) {
    let unavailable_path = format!("{path}.maxUnavailable");
    let unavailable = field(ru, "maxUnavailable")
        .and_then(|v| int_or_percent(v, &unavailable_path, errs).map(|r| (v, r)));
    let surge =
        field(ru, "maxSurge").and_then(|v| int_or_percent(v, &format!("{path}.maxSurge"), errs));
    if let (Some((raw, (0, _))), Some((0, _))) = (unavailable, surge) {
        errs.push(FieldError::invalid_rendered(
            &unavailable_path,
            render(raw),
            "may not be 0 when `maxSurge` is 0",
        ));
    }
    if let Some((raw, (n, true))) = unavailable {
        if n > 100 {
            errs.push(FieldError::invalid_rendered(
                &unavailable_path,
                render(raw),
                "must not be greater than 100%",
            ));
        }
    }
}

// ---------------------------------------------------------------------------
// Services and Endpoints
// ---------------------------------------------------------------------------

const SERVICE_TYPES: [&str; 4] = ["ClusterIP", "ExternalName", "LoadBalancer", "NodePort"];
const SESSION_AFFINITIES: [&str; 2] = ["ClientIP", "None"];
const TRAFFIC_POLICIES: [&str; 2] = ["Cluster", "Local"];
/// Upstream `MaxClientIPServiceAffinitySeconds`.
const MAX_CLIENT_IP_AFFINITY_SECONDS: i64 = 86400;

fn validate_service(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let spec = obj.get("spec").unwrap_or(&Value::Null);
    let svc_type = str_at(spec, "type");
    let cluster_ip = str_at(spec, "clusterIP");
    let headless = cluster_ip == "None";
    check_enum(spec, "type", "spec", &SERVICE_TYPES, errs);

    let ports = arr_at(spec, "ports");
    if ports.is_empty() && !headless && svc_type != "ExternalName" {
        errs.push(FieldError::required("spec.ports", ""));
    }
    let mut names = HashSet::new();
    for (i, p) in ports.iter().enumerate() {
        let idx = format!("spec.ports[{i}]");
        let name = str_at(p, "name");
        if ports.len() > 1 && name.is_empty() {
            errs.push(FieldError::required(format!("{idx}.name"), ""));
        } else if !name.is_empty() {
            for m in is_dns1123_label(name) {
                errs.push(FieldError::invalid(format!("{idx}.name"), name, m));
            }
            if !names.insert(name) {
                errs.push(FieldError::duplicate(format!("{idx}.name"), name));
            }
        }
        let port = int_at(p, "port").unwrap_or(0);
        for m in is_valid_port_num(port) {
            errs.push(FieldError::invalid_rendered(
                format!("{idx}.port"),
                port.to_string(),
                m,
            ));
        }
        check_enum(p, "protocol", &idx, &PORT_PROTOCOLS, errs);
        match p.get("targetPort") {
            Some(Value::Number(n)) => {
                let n = n.as_i64().unwrap_or(0);
                for m in is_valid_port_num(n) {
                    errs.push(FieldError::invalid_rendered(
                        format!("{idx}.targetPort"),
                        n.to_string(),
                        m,
                    ));
                }
            }
            Some(Value::String(s)) if !s.is_empty() => {
                for m in is_valid_port_name(s) {
                    errs.push(FieldError::invalid(format!("{idx}.targetPort"), s, m));
                }
            }
            _ => {}
        }
        if let Some(np) = int_at(p, "nodePort").filter(|n| *n != 0) {
            if svc_type == "ClusterIP" || svc_type.is_empty() {
                errs.push(FieldError::forbidden(
                    format!("{idx}.nodePort"),
                    "may not be used when `type` is 'ClusterIP'",
                ));
            } else {
                for m in is_valid_port_num(np) {
                    errs.push(FieldError::invalid_rendered(
                        format!("{idx}.nodePort"),
                        np.to_string(),
                        m,
                    ));
                }
            }
        }
    }

    if svc_type == "ExternalName" {
        let ext = str_at(spec, "externalName");
        if ext.is_empty() {
            errs.push(FieldError::required("spec.externalName", ""));
        } else {
            for m in is_dns1123_subdomain(ext.strip_suffix('.').unwrap_or(ext)) {
                errs.push(FieldError::invalid("spec.externalName", ext, m));
            }
        }
    }
    if !cluster_ip.is_empty() && !headless && !is_valid_ip(cluster_ip) {
        errs.push(FieldError::invalid(
            "spec.clusterIPs[0]",
            cluster_ip,
            IP_ERR,
        ));
    }
    for (i, ip) in arr_at(spec, "externalIPs").iter().enumerate() {
        let ip = ip.as_str().unwrap_or("");
        if !is_valid_ip(ip) {
            errs.push(FieldError::invalid(
                format!("spec.externalIPs[{i}]"),
                ip,
                IP_ERR,
            ));
        }
    }
    check_enum(spec, "sessionAffinity", "spec", &SESSION_AFFINITIES, errs);
    if str_at(spec, "sessionAffinity") == "ClientIP" {
        let timeout = spec
            .pointer("/sessionAffinityConfig/clientIP/timeoutSeconds")
            .and_then(Value::as_i64);
        if let Some(t) = timeout.filter(|t| !(1..=MAX_CLIENT_IP_AFFINITY_SECONDS).contains(t)) {
            errs.push(FieldError::invalid_rendered(
                "spec.sessionAffinityConfig.clientIP.timeoutSeconds",
                t.to_string(),
                format!("must be greater than 0 and less than {MAX_CLIENT_IP_AFFINITY_SECONDS}"),
            ));
        }
    }
    check_enum(
        spec,
        "externalTrafficPolicy",
        "spec",
        &TRAFFIC_POLICIES,
        errs,
    );
    check_enum(
        spec,
        "internalTrafficPolicy",
        "spec",
        &TRAFFIC_POLICIES,
        errs,
    );
    validate_labels(obj_at(spec, "selector"), "spec.selector", errs);

    if let Some(old) = old {
        validate_service_update(spec, old.get("spec").unwrap_or(&Value::Null), errs);
    }
}

fn service_cluster_ips(spec: &Value) -> Vec<String> {
    let ips: Vec<String> = arr_at(spec, "clusterIPs")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    if !ips.is_empty() {
        return ips;
    }
    match str_at(spec, "clusterIP") {
        "" => Vec::new(),
        ip => vec![ip.to_string()],
    }
}

/// The primary cluster IP may not change once set (except to or from ExternalName).
/// An update that omits the IP is allowed: the server carries the old one over, as
/// upstream's registry does.
fn validate_service_update(new: &Value, old: &Value, errs: &mut Errs) {
    if str_at(old, "type") == "ExternalName" || str_at(new, "type") == "ExternalName" {
        return;
    }
    let old_ips = service_cluster_ips(old);
    let new_ips = service_cluster_ips(new);
    if let (Some(o), Some(n)) = (old_ips.first(), new_ips.first()) {
        if o != n {
            let rendered = format!(
                "[]string{{{}}}",
                new_ips
                    .iter()
                    .map(|s| go_quote(s))
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            errs.push(FieldError::invalid_rendered(
                "spec.clusterIPs[0]",
                rendered,
                "may not change once set",
            ));
        }
    }
}

fn validate_endpoints(obj: &Value, errs: &mut Errs) {
    for (i, subset) in arr_at(obj, "subsets").iter().enumerate() {
        let idx = format!("subsets[{i}]");
        let addresses = arr_at(subset, "addresses");
        let not_ready = arr_at(subset, "notReadyAddresses");
        if addresses.is_empty() && not_ready.is_empty() {
            errs.push(FieldError::required(
                &idx,
                "must specify `addresses` or `notReadyAddresses`",
            ));
        }
        for (list_name, list) in [("addresses", addresses), ("notReadyAddresses", not_ready)] {
            for (j, a) in list.iter().enumerate() {
                let apath = format!("{idx}.{list_name}[{j}]");
                let ip = str_at(a, "ip");
                if !is_valid_ip(ip) {
                    errs.push(FieldError::invalid(format!("{apath}.ip"), ip, IP_ERR));
                }
                let hostname = str_at(a, "hostname");
                if !hostname.is_empty() {
                    for m in is_dns1123_label(hostname) {
                        errs.push(FieldError::invalid(
                            format!("{apath}.hostname"),
                            hostname,
                            m,
                        ));
                    }
                }
                let node = str_at(a, "nodeName");
                if !node.is_empty() {
                    for m in is_dns1123_subdomain(node) {
                        errs.push(FieldError::invalid(format!("{apath}.nodeName"), node, m));
                    }
                }
            }
        }
        let ports = arr_at(subset, "ports");
        for (j, p) in ports.iter().enumerate() {
            let ppath = format!("{idx}.ports[{j}]");
            let name = str_at(p, "name");
            if ports.len() > 1 && name.is_empty() {
                errs.push(FieldError::required(format!("{ppath}.name"), ""));
            } else if !name.is_empty() {
                for m in is_dns1123_label(name) {
                    errs.push(FieldError::invalid(format!("{ppath}.name"), name, m));
                }
            }
            let port = int_at(p, "port").unwrap_or(0);
            for m in is_valid_port_num(port) {
                errs.push(FieldError::invalid_rendered(
                    format!("{ppath}.port"),
                    port.to_string(),
                    m,
                ));
            }
            check_enum(p, "protocol", &ppath, &PORT_PROTOCOLS, errs);
        }
    }
}

// ---------------------------------------------------------------------------
// ConfigMaps and Secrets
// ---------------------------------------------------------------------------

const IMMUTABLE_WHEN_SET: &str = "field is immutable when `immutable` is set";

fn is_immutable(obj: &Value) -> bool {
    obj.get("immutable").and_then(Value::as_bool) == Some(true)
}

/// A map field, with absent and empty treated alike (as upstream's DeepEqual on
/// decoded objects effectively does for our wire form).
fn map_or_empty(obj: &Value, key: &str) -> Map<String, Value> {
    obj_at(obj, key).cloned().unwrap_or_default()
}

fn check_immutable_update(obj: &Value, old: &Value, keys: &[&str], errs: &mut Errs) {
    if !is_immutable(old) {
        return;
    }
    if !is_immutable(obj) {
        errs.push(FieldError::forbidden("immutable", IMMUTABLE_WHEN_SET));
    }
    for key in keys {
        if map_or_empty(obj, key) != map_or_empty(old, key) {
            errs.push(FieldError::forbidden(*key, IMMUTABLE_WHEN_SET));
        }
    }
}

fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let data = obj_at(obj, "data");
    let binary = obj_at(obj, "binaryData");
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        for m in is_config_map_key(k) {
            errs.push(FieldError::invalid(format!("data[{k}]"), k, m));
        }
        if binary.is_some_and(|b| b.contains_key(k)) {
            errs.push(FieldError::invalid(
                format!("data[{k}]"),
                k,
                "duplicate of key present in binaryData",
            ));
        }
        total += v.as_str().map_or(0, str::len);
    }
    for (k, v) in binary.into_iter().flatten() {
        let path = format!("binaryData[{k}]");
        for m in is_config_map_key(k) {
            errs.push(FieldError::invalid(&path, k, m));
        }
        if data.is_some_and(|d| d.contains_key(k)) {
            errs.push(FieldError::invalid(
                &path,
                k,
                "duplicate of key present in data",
            ));
        }
        total += decoded_len(v, &path, errs);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("", MAX_SECRET_SIZE));
    }
    if let Some(old) = old {
        check_immutable_update(obj, old, &["data", "binaryData"], errs);
    }
}

/// The decoded size of a base64 value; reports malformed base64 as upstream's decoder.
fn decoded_len(v: &Value, path: &str, errs: &mut Errs) -> usize {
    use base64::Engine;
    let s = v.as_str().unwrap_or("");
    match base64::engine::general_purpose::STANDARD.decode(s) {
        Ok(bytes) => bytes.len(),
        Err(e) => {
            let offset = match e {
                base64::DecodeError::InvalidByte(at, _)
                | base64::DecodeError::InvalidLastSymbol(at, _) => at,
                _ => s.len(),
            };
            errs.push(FieldError::invalid(
                path,
                "<secret contents redacted>",
                format!("illegal base64 data at input byte {offset}"),
            ));
            0
        }
    }
}

const SECRET_REQUIRED_KEYS: [(&str, &[&str]); 4] = [
    ("kubernetes.io/dockercfg", &[".dockercfg"]),
    ("kubernetes.io/dockerconfigjson", &[".dockerconfigjson"]),
    ("kubernetes.io/ssh-auth", &["ssh-privatekey"]),
    ("kubernetes.io/tls", &["tls.crt", "tls.key"]),
];

fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
    let data = obj_at(obj, "data");
    let string_data = obj_at(obj, "stringData");
    let mut total = 0;
    for (k, v) in data.into_iter().flatten() {
        let path = format!("data[{k}]");
        for m in is_config_map_key(k) {
            errs.push(FieldError::invalid(&path, k, m));
        }
        total += decoded_len(v, &path, errs);
    }
    for (k, v) in string_data.into_iter().flatten() {
        for m in is_config_map_key(k) {
            errs.push(FieldError::invalid(format!("data[{k}]"), k, m));
        }
        total += v.as_str().map_or(0, str::len);
    }
    if total > MAX_SECRET_SIZE {
        errs.push(FieldError::too_long("data", MAX_SECRET_SIZE));
    }
    let has_key = |k: &str| {
        data.is_some_and(|d| d.contains_key(k)) || string_data.is_some_and(|d| d.contains_key(k))
    };
    let secret_type = str_at(obj, "type");
    for (t, keys) in SECRET_REQUIRED_KEYS {
        if t == secret_type {
            for k in keys.iter().filter(|k| !has_key(k)) {
                errs.push(FieldError::required(format!("data[{k}]"), ""));
            }
        }
    }
    match secret_type {
        "kubernetes.io/basic-auth" if !has_key("username") && !has_key("password") => {
            errs.push(FieldError::required("data[username]", ""));
            errs.push(FieldError::required("data[password]", ""));
        }
        "kubernetes.io/service-account-token" => {
            let sa = obj
                .pointer("/metadata/annotations/kubernetes.io~1service-account.name")
                .and_then(Value::as_str)
                .unwrap_or("");
            if sa.is_empty() {
                errs.push(FieldError::required(
                    "metadata.annotations[kubernetes.io/service-account.name]",
                    "",
                ));
            }
        }
        _ => {}
    }
    if let Some(old) = old {
        let old_type = str_at(old, "type");
        if !old_type.is_empty() && old_type != secret_type {
            errs.push(FieldError::invalid("type", secret_type, FIELD_IMMUTABLE));
        }
        check_immutable_update(obj, old, &["data"], errs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn messages(errs: &[FieldError]) -> Vec<String> {
        errs.iter().map(ToString::to_string).collect()
    }

    fn has(errs: &[FieldError], msg: &str) -> bool {
        let all = messages(errs);
        if all.iter().any(|m| m == msg) {
            return true;
        }
        panic!("expected {msg:?} among {all:#?}");
    }

    fn has_prefix(errs: &[FieldError], prefix: &str) -> bool {
        let all = messages(errs);
        if all.iter().any(|m| m.starts_with(prefix)) {
            return true;
        }
        panic!("expected a message starting {prefix:?} among {all:#?}");
    }

    fn pod(spec: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "namespace": "default"}, "spec": spec})
    }

    fn good_pod_spec() -> Value {
        json!({
            "containers": [{"name": "app", "image": "busybox", "ports": [{"containerPort": 80, "protocol": "TCP"}]}],
            "restartPolicy": "Always",
            "dnsPolicy": "ClusterFirst"
        })
    }

    // --- FieldError formatting -------------------------------------------------

    #[test]
    fn field_errors_render_like_upstream() {
        assert_eq!(
            FieldError::required("spec.containers[0].name", "").to_string(),
            "spec.containers[0].name: Required value"
        );
        assert_eq!(
            FieldError::not_supported("spec.restartPolicy", "Sometimes", &RESTART_POLICIES).to_string(),
            "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""
        );
        assert_eq!(
            FieldError::duplicate("spec.containers[1].name", "app").to_string(),
            "spec.containers[1].name: Duplicate value: \"app\""
        );
        assert_eq!(
            FieldError::forbidden("spec", "nope").to_string(),
            "spec: Forbidden: nope"
        );
        assert_eq!(
            FieldError::too_long("metadata.annotations", 262144).to_string(),
            "metadata.annotations: Too long: must have at most 262144 bytes"
        );
        assert_eq!(
            FieldError::too_many("spec.x", 5, 4).to_string(),
            "spec.x: Too many: 5: must have at most 4 items"
        );
        assert_eq!(
            FieldError::invalid_rendered("spec.replicas", "-1", NON_NEGATIVE_ERR).to_string(),
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        );
        assert_eq!(
            FieldError::not_found("spec.containers[0].volumeMounts[0].name", "data").to_string(),
            "spec.containers[0].volumeMounts[0].name: Not found: \"data\""
        );
    }

    #[test]
    fn reasons_match_status_causes() {
        let cases = [
            (FieldError::required("a", ""), "FieldValueRequired"),
            (FieldError::invalid("a", "x", ""), "FieldValueInvalid"),
            (
                FieldError::not_supported("a", "x", &[]),
                "FieldValueNotSupported",
            ),
            (FieldError::duplicate("a", "x"), "FieldValueDuplicate"),
            (FieldError::forbidden("a", ""), "FieldValueForbidden"),
            (FieldError::too_long("a", 1), "FieldValueTooLong"),
            (FieldError::too_many("a", 2, 1), "FieldValueTooMany"),
            (FieldError::not_found("a", "x"), "FieldValueNotFound"),
        ];
        for (e, reason) in cases {
            assert_eq!(e.reason(), reason);
        }
    }

    #[test]
    fn go_quote_escapes_like_go() {
        assert_eq!(go_quote("a\"b\\c\n"), "\"a\\\"b\\\\c\\n\"");
        assert_eq!(go_quote("\u{1}"), "\"\\x01\"");
        assert_eq!(go_quote("héllo"), "\"héllo\"");
    }

    // --- Names -------------------------------------------------------------------

    #[test]
    fn invalid_subdomain_name_message_matches_upstream() {
        let obj = json!({"metadata": {"name": "Foo_Bar"}});
        let errs = validate("ConfigMap", &obj, None);
        assert_eq!(
            messages(&errs),
            vec![
                r#"metadata.name: Invalid value: "Foo_Bar": a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*')"#
            ]
        );
    }

    #[test]
    fn dns_label_helpers() {
        assert!(is_dns1123_label("my-name").is_empty());
        assert!(is_dns1123_label("123-abc").is_empty());
        assert_eq!(
            is_dns1123_label("-bad"),
            vec!["a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"]
        );
        let long = "a".repeat(64);
        assert_eq!(
            is_dns1123_label(&long),
            vec!["must be no more than 63 characters"]
        );
        assert!(is_dns1123_subdomain("a.b-c.d").is_empty());
        assert!(!is_dns1123_subdomain("a..b").is_empty());
        assert!(!is_dns1123_subdomain("").is_empty());
        assert_eq!(
            is_dns1123_subdomain(&"a".repeat(254)),
            vec!["must be no more than 253 characters"]
        );
        assert!(is_dns1035_label("abc-123").is_empty());
        assert!(!is_dns1035_label("1abc").is_empty());
    }

    #[test]
    fn qualified_name_helper() {
        assert!(is_qualified_name("app").is_empty());
        assert!(is_qualified_name("example.com/My_Name.1").is_empty());
        assert_eq!(
            is_qualified_name("/a"),
            vec!["prefix part must be non-empty"]
        );
        assert_eq!(
            is_qualified_name("a/b/c"),
            vec!["a qualified name must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyName',  or 'my.name',  or '123-abc', regex used for validation is '([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]') with an optional DNS subdomain prefix and '/' (e.g. 'example.com/MyName')"]
        );
        let errs = is_qualified_name("Bad_Prefix/x");
        assert!(errs[0].starts_with("prefix part a lowercase RFC 1123 subdomain"));
        let errs = is_qualified_name("x/");
        assert_eq!(errs[0], "name part must be non-empty");
        assert!(errs[1].starts_with("name part must consist of"));
        assert_eq!(
            is_qualified_name(&"a".repeat(64)),
            vec!["name part must be no more than 63 characters"]
        );
    }

    #[test]
    fn label_value_helper() {
        assert!(is_valid_label_value("").is_empty());
        assert!(is_valid_label_value("v1.2_x-y").is_empty());
        assert_eq!(
            is_valid_label_value("-x"),
            vec!["a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character (e.g. 'MyValue',  or 'my_value',  or '12345', regex used for validation is '(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')"]
        );
        assert_eq!(
            is_valid_label_value(&"a".repeat(64)),
            vec!["must be no more than 63 characters"]
        );
    }

    #[test]
    fn port_name_and_env_helpers() {
        assert!(is_valid_port_name("http").is_empty());
        assert_eq!(
            is_valid_port_name("80"),
            vec!["must contain at least one letter (a-z)"]
        );
        assert!(is_valid_port_name("a--b")
            .contains(&"must not contain consecutive hyphens".to_string()));
        assert!(
            is_valid_port_name("-ab").contains(&"must not begin or end with a hyphen".to_string())
        );
        assert!(is_valid_port_name("this-is-too-long-name")
            .contains(&"must be no more than 15 characters".to_string()));
        assert!(is_env_var_name("MY_VAR.1-x").is_empty());
        assert!(
            is_env_var_name("1abc").is_empty(),
            "relaxed rules allow a leading digit"
        );
        assert_eq!(is_env_var_name("A=B"), vec![RELAXED_ENV_VAR_NAME_ERR]);
        assert!(is_config_map_key("a.b_C-1").is_empty());
        assert!(!is_config_map_key("a/b").is_empty());
        assert_eq!(is_config_map_key(".."), vec!["must not be '..'"]);
    }

    // --- Metadata -----------------------------------------------------------------

    #[test]
    fn name_required_unless_generate_name() {
        let errs = validate("ConfigMap", &json!({"metadata": {}}), None);
        assert_eq!(
            messages(&errs),
            vec!["metadata.name: Required value: name or generateName is required"]
        );
        assert!(validate(
            "ConfigMap",
            &json!({"metadata": {"generateName": "web-"}}),
            None
        )
        .is_empty());
        let errs = validate(
            "ConfigMap",
            &json!({"metadata": {"generateName": "Web-"}}),
            None,
        );
        assert!(has_prefix(
            &errs,
            "metadata.generateName: Invalid value: \"Web-\""
        ));
    }

    #[test]
    fn name_format_depends_on_kind() {
        // dotted names are fine for subdomain kinds, not for namespaces or services
        let dotted = json!({"metadata": {"name": "a.b"}});
        assert!(validate(
            "Pod",
            &json!({"metadata": {"name": "a.b"}, "spec": good_pod_spec()}),
            None
        )
        .is_empty());
        assert!(validate("Node", &dotted, None).is_empty());
        assert!(has_prefix(
            &validate("Namespace", &dotted, None),
            "metadata.name: Invalid value: \"a.b\": a lowercase RFC 1123 label"
        ));
        let svc = json!({"metadata": {"name": "1svc"}, "spec": {"ports": [{"port": 80}]}});
        assert!(has_prefix(
            &validate("Service", &svc, None),
            "metadata.name: Invalid value: \"1svc\": a DNS-1035 label"
        ));
    }

    #[test]
    fn labels_and_annotations_are_checked() {
        let obj = json!({"metadata": {"name": "x", "labels": {"bad key!": "ok", "app": "-bad"}, "annotations": {"Example.com/Key": "fine", "no//": "x"}}});
        let errs = validate("ConfigMap", &obj, None);
        assert!(has_prefix(
            &errs,
            "metadata.labels: Invalid value: \"bad key!\": name part must consist of"
        ));
        assert!(has_prefix(
            &errs,
            "metadata.labels[app]: Invalid value: \"-bad\": a valid label must be"
        ));
        assert!(has_prefix(
            &errs,
            "metadata.annotations: Invalid value: \"no//\""
        ));
        assert_eq!(errs.len(), 3, "{errs:#?}");
    }

    #[test]
    fn annotations_total_size_is_limited() {
        let big = "x".repeat(TOTAL_ANNOTATION_SIZE_LIMIT);
        let obj = json!({"metadata": {"name": "x", "annotations": {"a": big}}});
        assert_eq!(
            messages(&validate("ConfigMap", &obj, None)),
            vec!["metadata.annotations: Too long: must have at most 262144 bytes"]
        );
    }

    // --- Pods ---------------------------------------------------------------------

    #[test]
    fn valid_pod_passes() {
        assert_eq!(
            messages(&validate("Pod", &pod(good_pod_spec()), None)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn pod_requires_containers() {
        let errs = validate("Pod", &pod(json!({})), None);
        assert_eq!(messages(&errs), vec!["spec.containers: Required value"]);
    }

    #[test]
    fn container_names_and_images() {
        let spec = json!({
            "containers": [
                {"name": "", "image": "a"},
                {"name": "Bad_Name", "image": "a"},
                {"name": "app", "image": ""},
                {"name": "app", "image": "b"}
            ],
            "initContainers": [{"name": "app", "image": "c"}]
        });
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(&errs, "spec.containers[0].name: Required value"));
        assert!(has_prefix(
            &errs,
            "spec.containers[1].name: Invalid value: \"Bad_Name\": a lowercase RFC 1123 label"
        ));
        assert!(has(&errs, "spec.containers[2].image: Required value"));
        assert!(has(
            &errs,
            "spec.containers[3].name: Duplicate value: \"app\""
        ));
        assert!(has(
            &errs,
            "spec.initContainers[0].name: Duplicate value: \"app\""
        ));
    }

    #[test]
    fn container_ports_are_checked() {
        let spec = json!({"containers": [{"name": "a", "image": "i", "ports": [
            {"containerPort": 0},
            {"containerPort": 70000, "protocol": "HTTP"},
            {"containerPort": 80, "hostPort": -1, "name": "web"},
            {"containerPort": 81, "name": "web"}
        ]}]});
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(
            &errs,
            "spec.containers[0].ports[0].containerPort: Required value"
        ));
        assert!(has(&errs, "spec.containers[0].ports[1].containerPort: Invalid value: 70000: must be between 1 and 65535, inclusive"));
        assert!(has(&errs, "spec.containers[0].ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""));
        assert!(has(&errs, "spec.containers[0].ports[2].hostPort: Invalid value: -1: must be between 1 and 65535, inclusive"));
        assert!(has(
            &errs,
            "spec.containers[0].ports[3].name: Duplicate value: \"web\""
        ));
    }

    #[test]
    fn restart_and_dns_policy_values() {
        let mut spec = good_pod_spec();
        spec["restartPolicy"] = json!("Sometimes");
        spec["dnsPolicy"] = json!("Nope");
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(&errs, "spec.restartPolicy: Unsupported value: \"Sometimes\": supported values: \"Always\", \"OnFailure\", \"Never\""));
        assert!(has(&errs, "spec.dnsPolicy: Unsupported value: \"Nope\": supported values: \"ClusterFirstWithHostNet\", \"ClusterFirst\", \"Default\", \"None\""));
    }

    #[test]
    fn volumes_unique_single_source_and_mounted_by_name() {
        let spec = json!({
            "volumes": [
                {"name": "data", "emptyDir": {}},
                {"name": "data", "emptyDir": {}},
                {"name": "none"},
                {"name": "two", "emptyDir": {}, "hostPath": {"path": "/x"}},
                {"name": "cm", "configMap": {"name": "c", "defaultMode": 1000}},
                {"name": "sec", "secret": {}}
            ],
            "containers": [{"name": "a", "image": "i", "volumeMounts": [
                {"name": "data", "mountPath": "/data"},
                {"name": "missing", "mountPath": "/m"},
                {"name": "cm", "mountPath": "/data"},
                {"name": "", "mountPath": ""}
            ]}]
        });
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(
            &errs,
            "spec.volumes[1].name: Duplicate value: \"data\""
        ));
        assert!(has(
            &errs,
            "spec.volumes[2]: Required value: must specify a volume type"
        ));
        assert!(has(
            &errs,
            "spec.volumes[3].hostPath: Forbidden: may not specify more than 1 volume type"
        ));
        assert!(has(&errs, "spec.volumes[4].configMap.defaultMode: Invalid value: 1000: must be a number between 0 and 0777 (octal), both inclusive"));
        assert!(has(
            &errs,
            "spec.volumes[5].secret.secretName: Required value"
        ));
        assert!(has(
            &errs,
            "spec.containers[0].volumeMounts[1].name: Not found: \"missing\""
        ));
        assert!(has(&errs, "spec.containers[0].volumeMounts[2].mountPath: Invalid value: \"/data\": must be unique"));
        assert!(has(
            &errs,
            "spec.containers[0].volumeMounts[3].name: Required value"
        ));
        assert!(has(
            &errs,
            "spec.containers[0].volumeMounts[3].mountPath: Required value"
        ));
    }

    #[test]
    fn env_names_and_sources() {
        let spec = json!({"containers": [{"name": "a", "image": "i", "env": [
            {"name": "OK", "value": "1"},
            {"name": ""},
            {"name": "A=B"},
            {"name": "X", "valueFrom": {}},
            {"name": "Y", "value": "v", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "Z", "valueFrom": {"fieldRef": {"fieldPath": "a"}, "secretKeyRef": {"name": "s", "key": "k"}}}
        ]}]});
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(&errs, "spec.containers[0].env[1].name: Required value"));
        assert!(has_prefix(&errs, "spec.containers[0].env[2].name: Invalid value: \"A=B\": a valid environment variable name"));
        assert!(has(&errs, "spec.containers[0].env[3].valueFrom: Invalid value: \"\": must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`"));
        assert!(has(&errs, "spec.containers[0].env[4].valueFrom: Invalid value: \"\": may not be specified when `value` is not empty"));
        assert!(has(&errs, "spec.containers[0].env[5].valueFrom: Invalid value: \"\": may not have more than one field specified at a time"));
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }

    #[test]
    fn resources_requests_must_not_exceed_limits() {
        let spec = json!({"containers": [{"name": "a", "image": "i", "resources": {
            "limits": {"cpu": "500m", "memory": "128Mi"},
            "requests": {"cpu": "1", "memory": "100Mi"}
        }}]});
        let errs = validate("Pod", &pod(spec), None);
        assert_eq!(
            messages(&errs),
            vec!["spec.containers[0].resources.requests: Invalid value: \"1\": must be less than or equal to cpu limit of 500m"]
        );
    }

    #[test]
    fn resources_quantity_syntax_is_checked() {
        let spec = json!({"containers": [{"name": "a", "image": "i", "resources": {
            "limits": {"cpu": "lots", "memory": 1024},
            "requests": {"memory": "-1Gi"}
        }}]});
        let errs = validate("Pod", &pod(spec), None);
        assert!(has(&errs, "spec.containers[0].resources.limits[cpu]: Invalid value: \"lots\": quantities must match the regular expression '^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$'"));
        assert!(has(&errs, "spec.containers[0].resources.requests[memory]: Invalid value: \"-1Gi\": must be greater than or equal to 0"));
        assert_eq!(
            errs.len(),
            2,
            "numeric JSON quantities are accepted: {errs:#?}"
        );
    }

    #[test]
    fn tolerations_are_checked() {
        let mut spec = good_pod_spec();
        spec["tolerations"] = json!([
            {"operator": "Equal", "value": "x"},
            {"key": "k", "operator": "Exists", "value": "v"},
            {"key": "k", "operator": "Maybe"},
            {"key": "k", "effect": "NoSchedule", "tolerationSeconds": 5},
            {"key": "k", "effect": "Sometimes"},
            {"operator": "Exists"}
        ]);
        let errs = validate("Pod", &pod(spec), None);
        assert!(has_prefix(&errs, "spec.tolerations[0].operator: Invalid value: \"Equal\": operator must be Exists when `key` is empty"));
        assert!(has_prefix(
            &errs,
            "spec.tolerations[1].operator: Invalid value: "
        ));
        assert!(has(&errs, "spec.tolerations[2].operator: Unsupported value: \"Maybe\": supported values: \"Equal\", \"Exists\""));
        assert!(has(&errs, "spec.tolerations[3].effect: Invalid value: \"NoSchedule\": effect must be 'NoExecute' when `tolerationSeconds` is set"));
        assert!(has(&errs, "spec.tolerations[4].effect: Unsupported value: \"Sometimes\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\""));
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }

    #[test]
    fn pod_update_may_change_image_deadline_and_add_tolerations() {
        let old = pod(good_pod_spec());
        let mut new = old.clone();
        new["spec"]["containers"][0]["image"] = json!("busybox:2");
        new["spec"]["activeDeadlineSeconds"] = json!(60);
        new["spec"]["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        new["metadata"]["labels"] = json!({"a": "b"});
        assert!(validate("Pod", &new, Some(&old)).is_empty());
    }

    #[test]
    fn pod_update_of_other_fields_is_forbidden() {
        let mut old_spec = good_pod_spec();
        old_spec["tolerations"] = json!([{"key": "k", "operator": "Exists"}]);
        let old = pod(old_spec);
        let mut new = old.clone();
        new["spec"]["containers"][0]["ports"][0]["containerPort"] = json!(8080);
        let errs = validate("Pod", &new, Some(&old));
        assert_eq!(errs.len(), 1);
        let msg = errs[0].to_string();
        assert!(msg.starts_with("spec: Forbidden: pod updates may not change fields other than `spec.containers[*].image`,`spec.initContainers[*].image`,`spec.activeDeadlineSeconds`,`spec.tolerations` (only additions to existing tolerations),`spec.terminationGracePeriodSeconds` (allow it to be set to 1 if it was previously negative)\n"), "{msg}");
        assert!(
            msg.contains("spec.containers[0].ports[0].containerPort"),
            "{msg}"
        );

        let mut removed = old.clone();
        removed["spec"]["tolerations"] = json!([]);
        assert_eq!(
            validate("Pod", &removed, Some(&old)).len(),
            1,
            "removing tolerations is forbidden"
        );
    }

    // --- Workloads --------------------------------------------------------------------

    fn rc(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "rc"}, "spec": {"replicas": 1, "selector": selector,
            "template": {"metadata": {"labels": labels}, "spec": good_pod_spec()}}})
    }

    #[test]
    fn rc_selector_must_match_template() {
        assert!(validate(
            "ReplicationController",
            &rc(json!({"app": "a"}), json!({"app": "a", "x": "y"})),
            None
        )
        .is_empty());
        let errs = validate(
            "ReplicationController",
            &rc(json!({"app": "a"}), json!({"app": "b"})),
            None,
        );
        assert_eq!(
            messages(&errs),
            vec!["spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"b\"}: `selector` does not match template `labels`"]
        );
        let errs = validate(
            "ReplicationController",
            &rc(json!({}), json!({"app": "b"})),
            None,
        );
        assert_eq!(messages(&errs), vec!["spec.selector: Required value"]);
    }

    #[test]
    fn rc_replicas_and_restart_policy() {
        let mut obj = rc(json!({"app": "a"}), json!({"app": "a"}));
        obj["spec"]["replicas"] = json!(-1);
        obj["spec"]["template"]["spec"]["restartPolicy"] = json!("OnFailure");
        let errs = validate("ReplicationController", &obj, None);
        assert!(has(
            &errs,
            "spec.replicas: Invalid value: -1: must be greater than or equal to 0"
        ));
        assert!(has(&errs, "spec.template.spec.restartPolicy: Unsupported value: \"OnFailure\": supported values: \"Always\""));
    }

    fn deployment(selector: Value, labels: Value) -> Value {
        json!({"metadata": {"name": "web"}, "spec": {"replicas": 2, "selector": selector,
            "template": {"metadata": {"labels": labels}, "spec": good_pod_spec()},
            "strategy": {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "25%", "maxUnavailable": "25%"}},
            "revisionHistoryLimit": 10, "progressDeadlineSeconds": 600}})
    }

    #[test]
    fn deployment_valid_and_selector_checks() {
        let ok = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        assert_eq!(
            messages(&validate("Deployment", &ok, None)),
            Vec::<String>::new()
        );

        let expr = deployment(
            json!({"matchExpressions": [{"key": "app", "operator": "In", "values": ["web", "api"]}]}),
            json!({"app": "db"}),
        );
        assert!(has_prefix(&validate("Deployment", &expr, None), "spec.template.metadata.labels: Invalid value: map[string]string{\"app\":\"db\"}: `selector` does not match template `labels`"));

        let mut missing = ok.clone();
        missing["spec"].as_object_mut().unwrap().remove("selector");
        assert!(has(
            &validate("ReplicaSet", &missing, None),
            "spec.selector: Required value"
        ));

        let empty = deployment(json!({}), json!({"app": "web"}));
        assert!(has(&validate("Deployment", &empty, None), "spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string(nil), MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: empty selector is invalid for deployment"));

        let bad_op = deployment(
            json!({"matchExpressions": [{"key": "app", "operator": "Like"}]}),
            json!({"app": "web"}),
        );
        assert!(has(&validate("Deployment", &bad_op, None), "spec.selector.matchExpressions[0].operator: Invalid value: \"Like\": not a valid selector operator"));
    }

    #[test]
    fn apps_selector_is_immutable() {
        let old = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web", "v": "2"}),
        );
        let new = deployment(
            json!({"matchLabels": {"app": "web", "v": "2"}}),
            json!({"app": "web", "v": "2"}),
        );
        assert_eq!(
            messages(&validate("Deployment", &new, Some(&old))),
            vec!["spec.selector: Invalid value: v1.LabelSelector{MatchLabels:map[string]string{\"app\":\"web\", \"v\":\"2\"}, MatchExpressions:[]v1.LabelSelectorRequirement(nil)}: field is immutable"]
        );
        assert!(validate("Deployment", &old, Some(&old)).is_empty());
    }

    #[test]
    fn deployment_strategy_checks() {
        let mut d = deployment(
            json!({"matchLabels": {"app": "web"}}),
            json!({"app": "web"}),
        );
        d["spec"]["strategy"] =
            json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 0}});
        assert!(has(&validate("Deployment", &d, None), "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: 0: may not be 0 when `maxSurge` is 0"));
        d["spec"]["strategy"] = json!({"type": "RollingUpdate", "rollingUpdate": {"maxSurge": "x%", "maxUnavailable": "150%"}});
        let errs = validate("Deployment", &d, None);
        assert!(has_prefix(
            &errs,
            "spec.strategy.rollingUpdate.maxSurge: Invalid value: \"x%\": a valid percent string"
        ));
        assert!(has(&errs, "spec.strategy.rollingUpdate.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%"));
        d["spec"]["strategy"] = json!({"type": "Recreate", "rollingUpdate": {}});
        assert!(has(&validate("Deployment", &d, None), "spec.strategy.rollingUpdate: Forbidden: may not be specified when strategy `type` is 'Recreate'"));
        d["spec"]["strategy"] = json!({"type": "BlueGreen"});
        assert!(has(&validate("Deployment", &d, None), "spec.strategy.type: Unsupported value: \"BlueGreen\": supported values: \"Recreate\", \"RollingUpdate\""));
    }

    // --- Services ----------------------------------------------------------------------

    fn service(spec: Value) -> Value {
        json!({"metadata": {"name": "svc"}, "spec": spec})
    }

    #[test]
    fn service_ports_rules() {
        assert!(has(
            &validate("Service", &service(json!({"type": "ClusterIP"})), None),
            "spec.ports: Required value"
        ));
        assert!(validate("Service", &service(json!({"clusterIP": "None"})), None).is_empty());
        assert!(validate(
            "Service",
            &service(json!({"type": "ExternalName", "externalName": "example.com"})),
            None
        )
        .is_empty());

        let spec = json!({"ports": [
            {"port": 80, "targetPort": 8080, "protocol": "TCP"},
            {"name": "web", "port": 0, "protocol": "HTTP", "targetPort": "Bad_Name"},
            {"name": "web", "port": 81, "targetPort": 0}
        ]});
        let errs = validate("Service", &service(spec), None);
        assert!(has(&errs, "spec.ports[0].name: Required value"));
        assert!(has(
            &errs,
            "spec.ports[1].port: Invalid value: 0: must be between 1 and 65535, inclusive"
        ));
        assert!(has(&errs, "spec.ports[1].protocol: Unsupported value: \"HTTP\": supported values: \"SCTP\", \"TCP\", \"UDP\""));
        assert!(has_prefix(
            &errs,
            "spec.ports[1].targetPort: Invalid value: \"Bad_Name\""
        ));
        assert!(has(&errs, "spec.ports[2].name: Duplicate value: \"web\""));
        assert!(has(
            &errs,
            "spec.ports[2].targetPort: Invalid value: 0: must be between 1 and 65535, inclusive"
        ));
    }

    #[test]
    fn service_type_affinity_and_node_port() {
        let spec = json!({"type": "Magic", "sessionAffinity": "Sticky", "ports": [{"port": 80, "nodePort": 30000}]});
        let errs = validate("Service", &service(spec), None);
        assert!(has(&errs, "spec.type: Unsupported value: \"Magic\": supported values: \"ClusterIP\", \"ExternalName\", \"LoadBalancer\", \"NodePort\""));
        assert!(has(&errs, "spec.sessionAffinity: Unsupported value: \"Sticky\": supported values: \"ClientIP\", \"None\""));
        let cip = json!({"type": "ClusterIP", "ports": [{"port": 80, "nodePort": 30000}]});
        assert!(has(
            &validate("Service", &service(cip), None),
            "spec.ports[0].nodePort: Forbidden: may not be used when `type` is 'ClusterIP'"
        ));
        let np = json!({"type": "NodePort", "ports": [{"port": 80, "nodePort": 99999}]});
        assert!(has(&validate("Service", &service(np), None), "spec.ports[0].nodePort: Invalid value: 99999: must be between 1 and 65535, inclusive"),
            "range is the allocator's business, but the port number must still be a port");
        let ext = json!({"type": "ExternalName"});
        assert!(has(
            &validate("Service", &service(ext), None),
            "spec.externalName: Required value"
        ));
    }

    #[test]
    fn service_cluster_ip_is_immutable() {
        let old = service(
            json!({"clusterIP": "10.43.0.10", "clusterIPs": ["10.43.0.10"], "ports": [{"port": 80}]}),
        );
        let mut new = old.clone();
        new["spec"]["clusterIP"] = json!("10.43.0.11");
        new["spec"]["clusterIPs"] = json!(["10.43.0.11"]);
        assert_eq!(
            messages(&validate("Service", &new, Some(&old))),
            vec!["spec.clusterIPs[0]: Invalid value: []string{\"10.43.0.11\"}: may not change once set"]
        );
        let mut omitted = old.clone();
        omitted["spec"].as_object_mut().unwrap().remove("clusterIP");
        omitted["spec"]
            .as_object_mut()
            .unwrap()
            .remove("clusterIPs");
        assert!(validate("Service", &omitted, Some(&old)).is_empty());
        let mut bad = old.clone();
        bad["spec"]["clusterIP"] = json!("nope");
        bad["spec"].as_object_mut().unwrap().remove("clusterIPs");
        assert!(has(&validate("Service", &bad, None), "spec.clusterIPs[0]: Invalid value: \"nope\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
    }

    #[test]
    fn endpoints_checks() {
        let obj = json!({"metadata": {"name": "svc"}, "subsets": [
            {"addresses": [{"ip": "10.42.0.5"}], "ports": [{"port": 80, "protocol": "TCP"}]},
            {"ports": [{"port": 70000}, {"name": "b", "port": 1, "protocol": "XTP"}]},
            {"addresses": [{"ip": "999.1.1.1"}]}
        ]});
        let errs = validate("Endpoints", &obj, None);
        assert!(has(
            &errs,
            "subsets[1]: Required value: must specify `addresses` or `notReadyAddresses`"
        ));
        assert!(has(&errs, "subsets[1].ports[0].name: Required value"));
        assert!(has(&errs, "subsets[1].ports[0].port: Invalid value: 70000: must be between 1 and 65535, inclusive"));
        assert!(has_prefix(
            &errs,
            "subsets[1].ports[1].protocol: Unsupported value: \"XTP\""
        ));
        assert!(has(&errs, "subsets[2].addresses[0].ip: Invalid value: \"999.1.1.1\": must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)"));
        assert_eq!(errs.len(), 5, "{errs:#?}");
    }

    // --- ConfigMaps and Secrets ----------------------------------------------------------

    #[test]
    fn config_map_keys_and_size() {
        let obj = json!({"metadata": {"name": "c"}, "data": {"good.key": "v", "bad/key": "v", "dup": "x"}, "binaryData": {"dup": "eA=="}});
        let errs = validate("ConfigMap", &obj, None);
        assert!(has(&errs, "data[bad/key]: Invalid value: \"bad/key\": a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')"));
        assert!(has(
            &errs,
            "data[dup]: Invalid value: \"dup\": duplicate of key present in binaryData"
        ));
        assert!(has(
            &errs,
            "binaryData[dup]: Invalid value: \"dup\": duplicate of key present in data"
        ));
        let big =
            json!({"metadata": {"name": "c"}, "data": {"a": "x".repeat(MAX_SECRET_SIZE + 1)}});
        assert_eq!(
            messages(&validate("ConfigMap", &big, None)),
            vec![": Too long: must have at most 1048576 bytes"]
        );
    }

    #[test]
    fn immutable_config_map_data_cannot_change() {
        let old = json!({"metadata": {"name": "c"}, "immutable": true, "data": {"a": "1"}});
        let mut new = old.clone();
        new["data"]["a"] = json!("2");
        assert_eq!(
            messages(&validate("ConfigMap", &new, Some(&old))),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
        new["immutable"] = json!(false);
        assert!(has(
            &validate("ConfigMap", &new, Some(&old)),
            "immutable: Forbidden: field is immutable when `immutable` is set"
        ));
        let mut labels_only = old.clone();
        labels_only["metadata"]["labels"] = json!({"a": "b"});
        assert!(validate("ConfigMap", &labels_only, Some(&old)).is_empty());
    }

    #[test]
    fn secret_data_must_be_base64_with_valid_keys() {
        let obj = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"ok": "aGVsbG8=", "bad": "***", "a b": "eA=="}});
        let errs = validate("Secret", &obj, None);
        assert!(has(&errs, "data[bad]: Invalid value: \"<secret contents redacted>\": illegal base64 data at input byte 0"));
        assert!(has_prefix(
            &errs,
            "data[a b]: Invalid value: \"a b\": a valid config key"
        ));
        assert_eq!(errs.len(), 2);
    }

    #[test]
    fn secret_type_rules() {
        let tls = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "eA=="}});
        assert_eq!(
            messages(&validate("Secret", &tls, None)),
            vec!["data[tls.key]: Required value"]
        );
        let basic = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/basic-auth", "stringData": {}});
        assert_eq!(
            messages(&validate("Secret", &basic, None)),
            vec![
                "data[username]: Required value",
                "data[password]: Required value"
            ]
        );
        let sa = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/service-account-token"});
        assert!(has(
            &validate("Secret", &sa, None),
            "metadata.annotations[kubernetes.io/service-account.name]: Required value"
        ));
        let old = json!({"metadata": {"name": "s"}, "type": "Opaque"});
        let new = json!({"metadata": {"name": "s"}, "type": "kubernetes.io/tls", "data": {"tls.crt": "", "tls.key": ""}});
        assert_eq!(
            messages(&validate("Secret", &new, Some(&old))),
            vec!["type: Invalid value: \"kubernetes.io/tls\": field is immutable"]
        );
        let big = json!({"metadata": {"name": "s"}, "stringData": {"a": "x".repeat(MAX_SECRET_SIZE + 1)}});
        assert_eq!(
            messages(&validate("Secret", &big, None)),
            vec!["data: Too long: must have at most 1048576 bytes"]
        );
    }

    #[test]
    fn immutable_secret_data_cannot_change() {
        let old = json!({"metadata": {"name": "s"}, "immutable": true, "data": {"a": "eA=="}});
        let new = json!({"metadata": {"name": "s"}, "immutable": true, "data": {"a": "eQ=="}});
        assert_eq!(
            messages(&validate("Secret", &new, Some(&old))),
            vec!["data: Forbidden: field is immutable when `immutable` is set"]
        );
    }

    // --- Other kinds ---------------------------------------------------------------------

    #[test]
    fn namespace_finalizers() {
        let ok = json!({"metadata": {"name": "ns"}, "spec": {"finalizers": ["kubernetes", "example.com/x"]}});
        assert!(validate("Namespace", &ok, None).is_empty());
        let bad = json!({"metadata": {"name": "ns"}, "spec": {"finalizers": ["custom"]}});
        assert_eq!(messages(&validate("Namespace", &bad, None)), vec!["spec.finalizers[0]: Invalid value: \"custom\": name is neither a standard finalizer name nor is it fully qualified"]);
    }

    #[test]
    fn node_taints_and_pod_cidr() {
        let node = json!({"metadata": {"name": "n1.example"}, "spec": {"podCIDR": "10.42.0.0/24",
            "taints": [{"key": "k", "effect": "NoSchedule"}, {"key": "k2"}, {"key": "k3", "effect": "Bad"}]}});
        let errs = validate("Node", &node, None);
        assert_eq!(messages(&errs), vec![
            "spec.taints[1].effect: Required value",
            "spec.taints[2].effect: Unsupported value: \"Bad\": supported values: \"NoSchedule\", \"PreferNoSchedule\", \"NoExecute\"",
        ]);
        let bad_cidr = json!({"metadata": {"name": "n"}, "spec": {"podCIDR": "10.42.0.0"}});
        assert!(has_prefix(
            &validate("Node", &bad_cidr, None),
            "spec.podCIDR: Invalid value: \"10.42.0.0\""
        ));
    }

    #[test]
    fn event_namespace_must_match_involved_object() {
        let ok = json!({"metadata": {"name": "e", "namespace": "ns"}, "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p"}});
        assert!(validate("Event", &ok, None).is_empty());
        let node_event = json!({"metadata": {"name": "e", "namespace": "default"}, "involvedObject": {"kind": "Node", "name": "n"}});
        assert!(validate("Event", &node_event, None).is_empty());
        let bad = json!({"metadata": {"name": "e", "namespace": "other"}, "involvedObject": {"kind": "Pod", "namespace": "ns", "name": "p"}});
        assert_eq!(
            messages(&validate("Event", &bad, None)),
            vec!["involvedObject.namespace: Invalid value: \"ns\": does not match event.namespace"]
        );
    }

    #[test]
    fn lease_durations() {
        let lease = json!({"metadata": {"name": "node1"}, "spec": {"leaseDurationSeconds": 0, "leaseTransitions": -1}});
        assert_eq!(
            messages(&validate("Lease", &lease, None)),
            vec![
                "spec.leaseDurationSeconds: Invalid value: 0: must be greater than 0",
                "spec.leaseTransitions: Invalid value: -1: must be greater than or equal to 0",
            ]
        );
    }

    #[test]
    fn unknown_kinds_get_metadata_only() {
        assert!(validate(
            "ServiceAccount",
            &json!({"metadata": {"name": "default"}}),
            None
        )
        .is_empty());
        assert!(!validate("Widget", &json!({"metadata": {"name": "UPPER"}}), None).is_empty());
    }
}
