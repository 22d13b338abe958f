//! ConfigMap and Secret rules: keys, sizes, types and immutability.

use serde_json::{Map, Value};

use super::field_error::FieldError;
use super::names::{is_config_map_key, FIELD_IMMUTABLE, MAX_SECRET_SIZE};
use super::{obj_at, str_at, Errs};

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

pub(super) fn validate_config_map(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
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

pub(super) fn validate_secret(obj: &Value, old: Option<&Value>, errs: &mut Errs) {
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
    use super::super::names::MAX_SECRET_SIZE;
    use super::super::validate;
    use crate::api::validation::test_support::{has, has_prefix, messages};
    use serde_json::json;

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
            vec![": Too long: may not be more than 1048576 bytes"]
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
            vec!["data: Too long: may not be more than 1048576 bytes"]
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
}
