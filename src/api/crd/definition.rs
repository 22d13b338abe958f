//! Validating and defaulting `apiextensions.k8s.io/v1` CustomResourceDefinitions (upstream
//! `apiextensions/validation` and `v1` defaults). Field paths follow upstream's internal
//! type, as `kubectl` shows them (`spec.conversion.webhookClientConfig`).

use serde_json::{json, Map, Value};

use super::defaulting::validate_defaults;
use super::schema::Structural;
use super::schema_checks::{check_schema, render_schema, Ctx};
use super::structural::validate_structural;
use super::FieldPath;
use crate::api::validation::{
    go_quote, is_dns1035_label, is_dns1123_subdomain, validate_object_meta_subdomain, FieldError,
};

const PRINTER_COLUMN_TYPES: &str = "boolean,date,integer,number,string";
const PRINTER_COLUMN_FORMATS: &str = "byte,date,date-time,double,float,int32,int64,password";
/// Root keywords allowed when the status subresource is enabled.
const ROOT_KEYWORDS_WITH_STATUS: [&str; 22] = [
    "description",
    "type",
    "format",
    "title",
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
    "multipleOf",
    "required",
    "items",
    "properties",
    "externalDocs",
    "example",
    "x-kubernetes-preserve-unknown-fields",
    "x-kubernetes-validations",
];
const ACCEPTED_CONVERSION_REVIEW_VERSIONS: [&str; 2] = ["v1", "v1beta1"];
const MAX_DEPRECATION_WARNING: usize = 256;

fn s<'a>(v: &'a Value, path: &[&str]) -> &'a str {
    path.iter()
        .try_fold(v, |v, k| v.get(k))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn arr(v: Option<&Value>) -> &[Value] {
    v.and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(v: Option<&Value>) -> Vec<&str> {
    arr(v).iter().filter_map(Value::as_str).collect()
}

/// Upstream v1 defaulting: `singular` (lowercased kind), `listKind` (`<Kind>List`),
/// `conversion.strategy: None`, webhook service port 443, `preserveUnknownFields: false`.
pub fn default_crd(crd: &mut Value) {
    let Some(spec) = crd.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if let Some(names) = spec.get_mut("names").and_then(Value::as_object_mut) {
        let kind = names
            .get("kind")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let empty = |names: &Map<String, Value>, k: &str| {
            names
                .get(k)
                .and_then(Value::as_str)
                .unwrap_or("")
                .is_empty()
        };
        if empty(names, "singular") {
            names.insert("singular".into(), json!(kind.to_lowercase()));
        }
        if empty(names, "listKind") && !kind.is_empty() {
            names.insert("listKind".into(), json!(format!("{kind}List")));
        }
    }
    let conversion = spec.entry("conversion").or_insert_with(|| json!({}));
    if let Some(c) = conversion.as_object_mut() {
        c.entry("strategy").or_insert_with(|| json!("None"));
        if let Some(svc) = c
            .get_mut("webhook")
            .and_then(|w| w.get_mut("clientConfig"))
            .and_then(|cc| cc.get_mut("service"))
            .and_then(Value::as_object_mut)
        {
            svc.entry("port").or_insert_with(|| json!(443));
        }
    }
    spec.entry("preserveUnknownFields").or_insert(json!(false));
}

/// The `openAPIV3Schema` of a served version (per-version schema, else top level).
pub fn schema_for_version<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    let spec = crd.get("spec")?;
    arr(spec.get("versions"))
        .iter()
        .find(|v| s(v, &["name"]) == version)
        .and_then(|v| v.pointer("/schema/openAPIV3Schema"))
        .or_else(|| spec.pointer("/validation/openAPIV3Schema"))
}

/// Validates a CRD (after [`default_crd`]); `old` is the stored CRD on update.
pub fn validate_crd(new: &Value, old: Option<&Value>) -> Vec<FieldError> {
    let null = Value::Null;
    let meta = new.get("metadata").unwrap_or(&null);
    let spec = new.get("spec").unwrap_or(&null);
    let mut errs = validate_object_meta_subdomain(meta);
    let name = s(meta, &["name"]);
    if !name.is_empty()
        && name != format!("{}.{}", s(spec, &["names", "plural"]), s(spec, &["group"]))
    {
        errs.push(FieldError::invalid(
            "metadata.name",
            name,
            "must be spec.names.plural+\".\"+spec.group",
        ));
    }
    validate_spec(spec, &mut errs);
    if let Some(old) = old {
        validate_spec_update(spec, old, &mut errs);
    }
    let status = new.get("status").unwrap_or(&null);
    validate_names(
        status.get("acceptedNames").unwrap_or(&null),
        "status.acceptedNames",
        &mut errs,
    );
    if old.is_some() {
        validate_stored_versions(status, spec, &mut errs);
    }
    if spec.get("preserveUnknownFields") == Some(&Value::Bool(true))
        && old.is_none_or(|o| o.pointer("/spec/preserveUnknownFields") != Some(&Value::Bool(true)))
    {
        errs.push(FieldError::invalid_rendered(
            "spec.preserveUnknownFields",
            "true",
            "cannot set to true, set x-kubernetes-preserve-unknown-fields to true in spec.versions[*].schema instead",
        ));
    }
    errs
}

fn validate_spec(spec: &Value, errs: &mut Vec<FieldError>) {
    let group = s(spec, &["group"]);
    if group.is_empty() {
        errs.push(FieldError::required("spec.group", ""));
    } else {
        let msgs = is_dns1123_subdomain(group);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid("spec.group", group, msgs.join(",")));
        } else if !group.contains('.') {
            errs.push(FieldError::invalid(
                "spec.group",
                group,
                "should be a domain with at least one dot",
            ));
        }
    }
    let scope = s(spec, &["scope"]);
    if scope.is_empty() {
        errs.push(FieldError::required("spec.scope", ""));
    } else if scope != "Cluster" && scope != "Namespaced" {
        errs.push(FieldError::not_supported(
            "spec.scope",
            scope,
            &["Cluster", "Namespaced"],
        ));
    }

    let versions = arr(spec.get("versions"));
    let top_schema = spec.pointer("/validation/openAPIV3Schema");
    if top_schema.is_none() {
        for (i, v) in versions.iter().enumerate() {
            if v.pointer("/schema/openAPIV3Schema").is_none() {
                errs.push(FieldError::required(
                    format!("spec.versions[{i}].schema.openAPIV3Schema"),
                    "",
                ));
            }
        }
    }
    let mut names: Vec<&str> = Vec::new();
    let mut storage = 0;
    for (i, v) in versions.iter().enumerate() {
        let vname = s(v, &["name"]);
        names.push(vname);
        if v.get("storage") == Some(&Value::Bool(true)) {
            storage += 1;
        }
        let msgs = is_dns1035_label(vname);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("spec.versions[{i}].name"),
                vname,
                msgs.join(","),
            ));
        }
        validate_version(spec, v, i, errs);
    }
    let unique = names
        .iter()
        .enumerate()
        .all(|(i, n)| !names[..i].contains(n));
    let versions_rendered = || render_schema(spec.get("versions").unwrap_or(&Value::Null));
    if !unique {
        errs.push(FieldError::invalid_rendered(
            "spec.versions",
            versions_rendered(),
            "must contain unique version names",
        ));
    }
    if storage != 1 {
        errs.push(FieldError::invalid_rendered(
            "spec.versions",
            versions_rendered(),
            "must have exactly one version marked as storage version",
        ));
    }
    for key in ["plural", "singular", "kind", "listKind"] {
        if s(spec, &["names", key]).is_empty() {
            errs.push(FieldError::required(format!("spec.names.{key}"), ""));
        }
    }
    validate_names(
        spec.get("names").unwrap_or(&Value::Null),
        "spec.names",
        errs,
    );
    if let Some(c) = spec.get("conversion").filter(|c| !c.is_null()) {
        validate_conversion(c, errs);
    }
}

fn validate_version(spec: &Value, v: &Value, i: usize, errs: &mut Vec<FieldError>) {
    let vp = format!("spec.versions[{i}]");
    let deprecated = v.get("deprecated") == Some(&Value::Bool(true));
    if let Some(w) = v.get("deprecationWarning").and_then(Value::as_str) {
        let path = format!("{vp}.deprecationWarning");
        let mut msgs = Vec::new();
        if !deprecated {
            msgs.push("can only be set for deprecated versions".to_string());
        } else {
            if w.len() > MAX_DEPRECATION_WARNING {
                msgs.push("must be <= 256 characters long".into());
            }
            if w.is_empty() {
                msgs.push("must not be an empty string".into());
            }
            if let Some((idx, _)) = w.char_indices().find(|(_, c)| c.is_control()) {
                msgs.push(format!(
                    "must only contain printable UTF-8 characters; control character found at index {idx}"
                ));
            }
        }
        for m in msgs {
            errs.push(FieldError::invalid(path.clone(), w, m));
        }
    }
    let subresources = v
        .get("subresources")
        .filter(|x| !x.is_null())
        .or(spec.get("subresources"));
    let status_enabled = subresources
        .and_then(|s| s.get("status"))
        .is_some_and(|x| !x.is_null());
    if let Some(schema) = v.pointer("/schema/openAPIV3Schema") {
        validate_schema(
            schema,
            &FieldPath::new(&format!("{vp}.schema.openAPIV3Schema")),
            status_enabled,
            errs,
        );
    }
    if let Some(sub) = v.get("subresources").filter(|x| !x.is_null()) {
        validate_subresources(sub, &format!("{vp}.subresources"), errs);
    }
    for (ci, col) in arr(v.get("additionalPrinterColumns")).iter().enumerate() {
        validate_printer_column(col, &format!("{vp}.additionalPrinterColumns[{ci}]"), errs);
    }
}

/// One version's `openAPIV3Schema`: keyword checks, structurality, defaults, rules.
fn validate_schema(
    schema: &Value,
    p: &FieldPath,
    status_enabled: bool,
    errs: &mut Vec<FieldError>,
) {
    let base = p.field.trim_end_matches(".openAPIV3Schema").to_string();
    if status_enabled {
        if let Some(m) = schema.as_object() {
            let type_ = m.get("type").and_then(Value::as_str).unwrap_or("");
            if !type_.is_empty() && type_ != "object" {
                errs.push(FieldError::invalid(
                    format!("{base}.openAPIV3Schema.type"),
                    type_,
                    "only \"object\" is allowed as the type at the root of the schema if the status subresource is enabled",
                ));
            } else if m
                .keys()
                .any(|k| !ROOT_KEYWORDS_WITH_STATUS.contains(&k.as_str()))
            {
                errs.push(FieldError::invalid_rendered(
                    p.field.clone(),
                    render_schema(schema),
                    format!(
                        "only [{}] fields are allowed at the root of the schema if the status subresource is enabled",
                        ROOT_KEYWORDS_WITH_STATUS.join(" ")
                    ),
                ));
            }
        }
    }
    if schema.get("nullable") == Some(&Value::Bool(true)) {
        errs.push(FieldError::forbidden(
            format!("{base}.openAPIV3Schema.nullable"),
            "nullable cannot be true at the root",
        ));
    }
    let parsed = Structural::from_json(schema);
    let mut structural_errs = Vec::new();
    let mut compile_rules = false;
    match &parsed {
        Err(e) => structural_errs.push(FieldError::invalid(p.field.clone(), "", e.to_string())),
        Ok(st) => {
            let s_errs = validate_structural(st, p);
            if !s_errs.is_empty() {
                errs.extend(s_errs);
            } else {
                let d_errs = validate_defaults(st, p);
                compile_rules = d_errs.is_empty();
                errs.extend(d_errs);
            }
        }
    }
    let mut schema_errs = Vec::new();
    let mut cel_errs = Vec::new();
    let ctx = Ctx {
        compile_rules,
        ..Ctx::default()
    };
    check_schema(schema, p, &ctx, true, &mut schema_errs, &mut cel_errs);
    let had_errs = !errs.is_empty() || !schema_errs.is_empty() || !cel_errs.is_empty();
    errs.extend(schema_errs);
    errs.extend(cel_errs);
    if !had_errs {
        errs.extend(structural_errs);
    }
}

fn validate_names(names: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let dns = is_dns1035_label;
    for key in ["plural", "singular"] {
        let v = s(names, &[key]);
        let msgs = dns(v);
        if !v.is_empty() && !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.{key}"),
                v,
                msgs.join(","),
            ));
        }
    }
    for key in ["kind", "listKind"] {
        let v = s(names, &[key]);
        let msgs = dns(&v.to_lowercase());
        if !v.is_empty() && !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.{key}"),
                v,
                format!(
                    "may have mixed case, but should otherwise match: {}",
                    msgs.join(",")
                ),
            ));
        }
    }
    for (i, short) in strings(names.get("shortNames")).iter().enumerate() {
        let msgs = dns(short);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.shortNames[{i}]"),
                short,
                msgs.join(","),
            ));
        }
    }
    let kind = s(names, &["kind"]);
    if !kind.is_empty() && kind == s(names, &["listKind"]) {
        errs.push(FieldError::invalid(
            format!("{path}.listKind"),
            kind,
            "kind and listKind may not be the same",
        ));
    }
    for (i, cat) in strings(names.get("categories")).iter().enumerate() {
        let msgs = dns(cat);
        if !msgs.is_empty() {
            errs.push(FieldError::invalid(
                format!("{path}.categories[{i}]"),
                cat,
                msgs.join(","),
            ));
        }
    }
}

fn validate_simple_json_path(path: &str, field: &str, errs: &mut Vec<FieldError>) -> bool {
    let msg = if path.is_empty() {
        "must not be empty"
    } else if !path.starts_with('.') {
        "must be a simple json path starting with ."
    } else {
        return true;
    };
    errs.push(FieldError::invalid(field, path, msg));
    false
}

fn validate_subresources(sub: &Value, path: &str, errs: &mut Vec<FieldError>) {
    let Some(scale) = sub.get("scale").filter(|x| !x.is_null()) else {
        return;
    };
    for (key, prefix, msg) in [
        (
            "specReplicasPath",
            ".spec.",
            "should be a json path under .spec",
        ),
        (
            "statusReplicasPath",
            ".status.",
            "should be a json path under .status",
        ),
    ] {
        let field = format!("{path}.scale.{key}");
        let v = s(scale, &[key]);
        if v.is_empty() {
            errs.push(FieldError::required(field, ""));
        } else if validate_simple_json_path(v, &field, errs) && !v.starts_with(prefix) {
            errs.push(FieldError::invalid(field, v, msg));
        }
    }
    let sel = s(scale, &["labelSelectorPath"]);
    let field = format!("{path}.scale.labelSelectorPath");
    if !sel.is_empty()
        && validate_simple_json_path(sel, &field, errs)
        && !sel.starts_with(".spec.")
        && !sel.starts_with(".status.")
    {
        errs.push(FieldError::invalid(
            field,
            sel,
            "should be a json path under either .spec or .status",
        ));
    }
}

fn validate_printer_column(col: &Value, path: &str, errs: &mut Vec<FieldError>) {
    if s(col, &["name"]).is_empty() {
        errs.push(FieldError::required(format!("{path}.name"), ""));
    }
    let t = s(col, &["type"]);
    let types_msg = format!("must be one of {PRINTER_COLUMN_TYPES}");
    if t.is_empty() {
        errs.push(FieldError::required(format!("{path}.type"), types_msg));
    } else if !PRINTER_COLUMN_TYPES.split(',').any(|x| x == t) {
        errs.push(FieldError::invalid(format!("{path}.type"), t, types_msg));
    }
    let f = s(col, &["format"]);
    if !f.is_empty() && !PRINTER_COLUMN_FORMATS.split(',').any(|x| x == f) {
        errs.push(FieldError::invalid(
            format!("{path}.format"),
            f,
            format!("must be one of {PRINTER_COLUMN_FORMATS}"),
        ));
    }
    let jp = s(col, &["jsonPath"]);
    let field = format!("{path}.jsonPath");
    if jp.is_empty() {
        errs.push(FieldError::required(field, ""));
    } else {
        validate_simple_json_path(jp, &field, errs);
    }
}

fn validate_conversion(c: &Value, errs: &mut Vec<FieldError>) {
    let strategy = s(c, &["strategy"]);
    if strategy.is_empty() {
        errs.push(FieldError::required("spec.conversion.strategy", ""));
    } else if strategy != "None" && strategy != "Webhook" {
        errs.push(FieldError::not_supported(
            "spec.conversion.strategy",
            strategy,
            &["None", "Webhook"],
        ));
    }
    let webhook = c.get("webhook").filter(|w| !w.is_null());
    let client = webhook
        .and_then(|w| w.get("clientConfig"))
        .filter(|x| !x.is_null());
    let review_versions = webhook.and_then(|w| w.get("conversionReviewVersions"));
    if strategy != "Webhook" {
        if client.is_some() {
            errs.push(FieldError::forbidden(
                "spec.conversion.webhookClientConfig",
                "should not be set when strategy is not set to Webhook",
            ));
        }
        if !arr(review_versions).is_empty() {
            errs.push(FieldError::forbidden(
                "spec.conversion.conversionReviewVersions",
                "should not be set when strategy is not set to Webhook",
            ));
        }
        return;
    }
    match client {
        None => errs.push(FieldError::required(
            "spec.conversion.webhookClientConfig",
            "required when strategy is set to Webhook",
        )),
        Some(cc) => {
            let url = cc.get("url").and_then(Value::as_str);
            let svc = cc.get("service").filter(|x| !x.is_null());
            match (url, svc) {
                (Some(_), Some(_)) | (None, None) => errs.push(FieldError::required(
                    "spec.conversion.webhookClientConfig",
                    "exactly one of url or service is required",
                )),
                (Some(u), None) => validate_webhook_url(u, errs),
                (None, Some(svc)) => validate_webhook_service(svc, errs),
            }
        }
    }
    let path = "spec.conversion.conversionReviewVersions";
    let versions = strings(review_versions);
    if versions.is_empty() {
        errs.push(FieldError::required(path, ""));
        return;
    }
    for (i, v) in versions.iter().enumerate() {
        if versions[..i].contains(v) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                v,
                "duplicate version",
            ));
            continue;
        }
        for m in is_dns1035_label(v) {
            errs.push(FieldError::invalid(format!("{path}[{i}]"), v, m));
        }
    }
    if !versions
        .iter()
        .any(|v| ACCEPTED_CONVERSION_REVIEW_VERSIONS.contains(v))
    {
        let rendered = format!(
            "[]string{{{}}}",
            versions
                .iter()
                .map(|v| go_quote(v))
                .collect::<Vec<_>>()
                .join(", ")
        );
        errs.push(FieldError::invalid_rendered(
            path,
            rendered,
            format!(
                "must include at least one of {}",
                ACCEPTED_CONVERSION_REVIEW_VERSIONS.join(", ")
            ),
        ));
    }
}

/// Upstream `webhook.ValidateWebhookURL` (with `forceHttps`).
fn validate_webhook_url(u: &str, errs: &mut Vec<FieldError>) {
    let path = "spec.conversion.webhookClientConfig.url";
    let Ok(parsed) = url::Url::parse(u) else {
        errs.push(FieldError::invalid(path, u, "url must be a valid URL"));
        return;
    };
    if parsed.scheme() != "https" {
        errs.push(FieldError::invalid(
            path,
            u,
            "'https' is the only allowed URL scheme",
        ));
    }
    if parsed.host_str().is_none_or(str::is_empty) {
        errs.push(FieldError::invalid(path, u, "host must be specified"));
    }
    if !parsed.username().is_empty() || parsed.password().is_some() {
        errs.push(FieldError::invalid(
            path,
            u,
            "user information is not permitted in the URL",
        ));
    }
    if parsed.fragment().is_some() {
        errs.push(FieldError::invalid(
            path,
            u,
            "fragments are not permitted in the URL",
        ));
    }
    if parsed.query().is_some() {
        errs.push(FieldError::invalid(
            path,
            u,
            "query parameters are not permitted in the URL",
        ));
    }
}

/// Upstream `webhook.ValidateWebhookService`.
fn validate_webhook_service(svc: &Value, errs: &mut Vec<FieldError>) {
    let path = "spec.conversion.webhookClientConfig.service";
    if s(svc, &["name"]).is_empty() {
        errs.push(FieldError::required(
            format!("{path}.name"),
            "service name is required",
        ));
    }
    if s(svc, &["namespace"]).is_empty() {
        errs.push(FieldError::required(
            format!("{path}.namespace"),
            "service namespace is required",
        ));
    }
    if let Some(port) = svc.get("port").and_then(Value::as_i64) {
        if !(1..=65535).contains(&port) {
            errs.push(FieldError::invalid_rendered(
                format!("{path}.port"),
                port.to_string(),
                "port is not valid: must be between 1 and 65535, inclusive",
            ));
        }
    }
    let p = s(svc, &["path"]);
    if !p.is_empty() && !p.starts_with('/') {
        errs.push(FieldError::invalid(
            format!("{path}.path"),
            p,
            "must start with a '/'",
        ));
    }
}

fn validate_spec_update(spec: &Value, old: &Value, errs: &mut Vec<FieldError>) {
    let null = Value::Null;
    let old_spec = old.get("spec").unwrap_or(&null);
    let established = arr(old.pointer("/status/conditions"))
        .iter()
        .any(|c| s(c, &["type"]) == "Established" && s(c, &["status"]) == "True");
    let mut immutable = vec![
        ("spec.group", &["group"][..]),
        ("spec.names.plural", &["names", "plural"][..]),
    ];
    if established {
        immutable.insert(0, ("spec.scope", &["scope"][..]));
        immutable.insert(1, ("spec.names.kind", &["names", "kind"][..]));
    }
    for (field, path) in immutable {
        let (new_v, old_v) = (s(spec, path), s(old_spec, path));
        if new_v != old_v {
            errs.push(FieldError::invalid(field, new_v, "field is immutable"));
        }
    }
}

fn validate_stored_versions(status: &Value, spec: &Value, errs: &mut Vec<FieldError>) {
    let path = "status.storedVersions";
    let stored = strings(status.get("storedVersions"));
    let rendered = || {
        format!(
            "[]string{{{}}}",
            stored
                .iter()
                .map(|v| go_quote(v))
                .collect::<Vec<_>>()
                .join(", ")
        )
    };
    if stored.is_empty() {
        errs.push(FieldError::invalid_rendered(
            path,
            "[]string(nil)",
            "must have at least one stored version",
        ));
        return;
    }
    let versions = arr(spec.get("versions"));
    for v in versions {
        let name = s(v, &["name"]);
        if v.get("storage") == Some(&Value::Bool(true)) && !stored.contains(&name) {
            errs.push(FieldError::invalid_rendered(
                path,
                rendered(),
                format!("must have the storage version {name}"),
            ));
        }
    }
    for (i, st) in stored.iter().enumerate() {
        if !versions.iter().any(|v| s(v, &["name"]) == *st) {
            errs.push(FieldError::invalid(
                format!("{path}[{i}]"),
                st,
                format!("missing from spec.versions; {st} was previously a storage version, and must remain in spec.versions until a storage migration ensures no data remains persisted in {st} and removes {st} from status.storedVersions"),
            ));
        }
    }
}

#[cfg(test)]
#[path = "definition_tests.rs"]
mod tests;
