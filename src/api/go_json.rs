//! The words of Go's `encoding/json` for a body whose value has the wrong JSON type for a
//! built-in kind's field (`json: cannot unmarshal bool into Go struct field
//! ConfigMap.data of type string`), found by walking the body along the kind's field
//! tables (the protobuf ones, which name every Go struct and field type).
//!
//! Upstream decodes a body in document order and reports the first mismatch: the JSON
//! type (`number 1.5` where an integer cannot hold the literal), the innermost Go struct
//! whose field holds the value, the field's path of JSON names from the object's root
//! (list indices and map keys left out) and the Go type the value was meant for. Fields
//! of types with their own decoders (quantities, times, int-or-string, raw JSON) have
//! messages of their own: a walk that meets a wrong value there gives up, and the
//! caller keeps its own message.

use serde_json::{Map, Value};

use super::protobuf::{Cardinality, Field, Kind, Message};

/// Go's message for the first value of `obj` whose JSON type does not fit `message`'s
/// field, or `None` when every value fits (or the first misfit is in a field with a
/// decoder of its own). Unknown fields and nulls are not looked at: Go skips the first
/// and takes the second as the zero value.
pub fn type_error(message: &'static Message, obj: &Value) -> Option<String> {
    let Value::Object(map) = obj else {
        return None;
    };
    match walk_message(message, map, &mut Vec::new()) {
        Walk::Fits | Walk::GiveUp => None,
        Walk::Misfit(m) => Some(m.to_string()),
    }
}

/// One mismatch, in Go's terms.
struct Misfit {
    /// `bool`, `number`, `number 1.5`, `string`, `array`, `object`.
    value: String,
    /// The Go struct holding the field (`ConfigMap`).
    strukt: &'static str,
    /// JSON names from the root (`spec.template.spec.containers.env.value`).
    field: String,
    /// The Go type the value was meant for (`string`, `[]v1.Container`).
    go_type: String,
}

impl std::fmt::Display for Misfit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "json: cannot unmarshal {} into Go struct field {}.{} of type {}",
            self.value, self.strukt, self.field, self.go_type
        )
    }
}

enum Walk {
    Fits,
    Misfit(Misfit),
    /// A value Go hands to a decoder of its own, which words its errors otherwise.
    GiveUp,
}

/// `k8s.io.api.core.v1.ConfigMap` → `ConfigMap`.
fn struct_name(m: &'static Message) -> &'static str {
    m.name.rsplit('.').next().unwrap_or(m.name)
}

/// `k8s.io.api.core.v1.Container` → `v1.Container`, as Go's `reflect.Type` prints it.
fn message_type(m: &'static Message) -> String {
    let mut parts = m.name.rsplit('.');
    let name = parts.next().unwrap_or(m.name);
    match parts.next() {
        Some(package) => format!("{package}.{name}"),
        None => name.to_string(),
    }
}

fn go_type(kind: Kind) -> String {
    match kind {
        Kind::String => "string".into(),
        Kind::Bool => "bool".into(),
        Kind::Int32 => "int32".into(),
        Kind::Int64 => "int64".into(),
        Kind::Double => "float64".into(),
        Kind::Bytes => "[]uint8".into(),
        Kind::Time | Kind::MicroTime => "v1.Time".into(),
        Kind::Duration => "v1.Duration".into(),
        Kind::FieldsV1 => "v1.FieldsV1".into(),
        Kind::IntOrString => "intstr.IntOrString".into(),
        Kind::Quantity => "resource.Quantity".into(),
        Kind::RawExtension => "runtime.RawExtension".into(),
        Kind::StringList => "v1.ExtraValue".into(),
        Kind::Message(m) => message_type(m),
    }
}

/// The JSON type of `v` as Go names it in the message.
fn json_word(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "bool",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// The field of `m` (or of a struct it embeds inline) named `json`.
fn field_of(m: &'static Message, json: &str) -> Option<&'static Field> {
    m.fields.iter().find_map(|f| match (f.cardinality, f.kind) {
        (Cardinality::Inline, Kind::Message(inner)) => field_of(inner, json),
        _ if f.json == json => Some(f),
        _ => None,
    })
}

fn walk_message(m: &'static Message, obj: &Map<String, Value>, path: &mut Vec<String>) -> Walk {
    for (key, value) in obj {
        let Some(field) = field_of(m, key) else {
            continue;
        };
        path.push(key.clone());
        let walked = walk_field(field, value, struct_name(m), path);
        path.pop();
        if !matches!(walked, Walk::Fits) {
            return walked;
        }
    }
    Walk::Fits
}

fn walk_field(f: &'static Field, v: &Value, strukt: &'static str, path: &[String]) -> Walk {
    let misfit = |value: &str, go_type: String, path: &[String]| {
        Walk::Misfit(Misfit {
            value: value.to_string(),
            strukt,
            field: path.join("."),
            go_type,
        })
    };
    match (f.cardinality, v) {
        (_, Value::Null) => Walk::Fits,
        (Cardinality::Repeated, Value::Array(items)) => items
            .iter()
            .map(|item| walk_value(f.kind, item, strukt, path))
            .find(|w| !matches!(w, Walk::Fits))
            .unwrap_or(Walk::Fits),
        (Cardinality::Repeated, _) => misfit(json_word(v), format!("[]{}", go_type(f.kind)), path),
        (Cardinality::Map, Value::Object(entries)) => entries
            .values()
            .map(|item| walk_value(f.kind, item, strukt, path))
            .find(|w| !matches!(w, Walk::Fits))
            .unwrap_or(Walk::Fits),
        (Cardinality::Map, _) => misfit(
            json_word(v),
            format!("map[string]{}", go_type(f.kind)),
            path,
        ),
        (Cardinality::Optional | Cardinality::Inline, _) => walk_value(f.kind, v, strukt, path),
    }
}

/// Whether a JSON number fits Go's integer of `bits` (Go parses the literal: `1.0` and
/// `1e3` do not).
fn fits_integer(n: &serde_json::Number, bits: u32) -> bool {
    let Some(i) = n.as_i64() else {
        return false;
    };
    bits == 64 || (i >= i64::from(i32::MIN) && i <= i64::from(i32::MAX))
}

fn walk_value(kind: Kind, v: &Value, strukt: &'static str, path: &[String]) -> Walk {
    let misfit = |value: String| {
        Walk::Misfit(Misfit {
            value,
            strukt,
            field: path.join("."),
            go_type: go_type(kind),
        })
    };
    let fits = match (kind, v) {
        (_, Value::Null) => true,
        (Kind::String | Kind::Bytes, Value::String(_)) => true,
        (Kind::Bool, Value::Bool(_)) => true,
        (Kind::Double, Value::Number(_)) => true,
        (Kind::Int32 | Kind::Int64, Value::Number(n)) => {
            let bits = if matches!(kind, Kind::Int32) { 32 } else { 64 };
            if fits_integer(n, bits) {
                true
            } else {
                return misfit(format!("number {n}"));
            }
        }
        (Kind::Message(m), Value::Object(obj)) => {
            return walk_message(m, obj, &mut path.to_vec());
        }
        // Decoders of their own: any JSON for raw fields; otherwise their own words.
        (Kind::FieldsV1 | Kind::RawExtension, _) => true,
        (Kind::Time | Kind::MicroTime | Kind::Duration, Value::String(_)) => true,
        (Kind::Quantity | Kind::IntOrString, Value::String(_) | Value::Number(_)) => true,
        (
            Kind::Time
            | Kind::MicroTime
            | Kind::Duration
            | Kind::Quantity
            | Kind::IntOrString
            | Kind::StringList,
            _,
        ) => return Walk::GiveUp,
        _ => false,
    };
    if fits {
        Walk::Fits
    } else {
        misfit(json_word(v).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::protobuf::schema_for;
    use serde_json::json;

    fn error(api_version: &str, kind: &str, obj: Value) -> Option<String> {
        type_error(
            schema_for(api_version, kind).expect("a built-in kind"),
            &obj,
        )
    }

    #[test]
    fn a_bool_in_config_map_data_is_worded_as_go_does() {
        let cm = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "kubevip"},
            "data": {"allow-share-global": true, "cidr-default": "192.168.0.200/29"}});
        assert_eq!(
            error("v1", "ConfigMap", cm).as_deref(),
            Some("json: cannot unmarshal bool into Go struct field ConfigMap.data of type string")
        );
    }

    #[test]
    fn nested_fields_name_the_innermost_struct_and_the_path_from_the_root() {
        let deploy = |env_value: Value, pull_secrets: Value| {
            json!({"apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "d"},
                "spec": {"replicas": 1, "template": {"spec": {
                    "containers": [{"name": "c", "image": "i",
                        "env": [{"name": "A", "value": "x"}, {"name": "B", "value": env_value}]}],
                    "imagePullSecrets": pull_secrets}}}})
        };
        assert_eq!(
            error("apps/v1", "Deployment", deploy(json!(5432), json!([]))).as_deref(),
            Some(
                "json: cannot unmarshal number into Go struct field \
                 EnvVar.spec.template.spec.containers.env.value of type string"
            )
        );
        assert_eq!(
            error(
                "apps/v1",
                "Deployment",
                deploy(json!("x"), json!(["regcred"]))
            )
            .as_deref(),
            Some(
                "json: cannot unmarshal string into Go struct field \
                 PodSpec.spec.template.spec.imagePullSecrets of type v1.LocalObjectReference"
            )
        );
        // A list given an object names the list's type; the first misfit in document
        // order is the one told.
        let mut d = deploy(json!(1), json!([]));
        d["spec"]["template"]["spec"]["containers"] = json!({"name": "c"});
        assert_eq!(
            error("apps/v1", "Deployment", d).as_deref(),
            Some(
                "json: cannot unmarshal object into Go struct field \
                 PodSpec.spec.template.spec.containers of type []v1.Container"
            )
        );
    }

    #[test]
    fn integers_must_be_whole_and_in_range() {
        let deploy = |replicas: Value| json!({"apiVersion": "apps/v1", "kind": "Deployment", "spec": {"replicas": replicas}});
        assert_eq!(error("apps/v1", "Deployment", deploy(json!(3))), None);
        assert_eq!(
            error("apps/v1", "Deployment", deploy(json!(1.5))).as_deref(),
            Some(
                "json: cannot unmarshal number 1.5 into Go struct field DeploymentSpec.spec.replicas \
                 of type int32"
            )
        );
        assert_eq!(
            error("apps/v1", "Deployment", deploy(json!(3_000_000_000_i64))).as_deref(),
            Some(
                "json: cannot unmarshal number 3000000000 into Go struct field \
                 DeploymentSpec.spec.replicas of type int32"
            )
        );
        assert_eq!(
            error("apps/v1", "Deployment", deploy(json!("3"))).as_deref(),
            Some(
                "json: cannot unmarshal string into Go struct field DeploymentSpec.spec.replicas \
                 of type int32"
            )
        );
    }

    #[test]
    fn nulls_unknown_fields_and_fields_with_decoders_of_their_own_are_left_alone() {
        let svc = |target_port: Value| {
            json!({"apiVersion": "v1", "kind": "Service", "metadata": {"labels": null},
                "spec": {"ports": [{"port": 80, "targetPort": target_port}], "bogus": true}})
        };
        assert_eq!(error("v1", "Service", svc(json!("http"))), None);
        assert_eq!(error("v1", "Service", svc(json!(8080))), None);
        // int-or-string words its own errors: the caller keeps its message.
        assert_eq!(error("v1", "Service", svc(json!(true))), None);
        // Fields of embedded (inline) structs belong to the embedding struct.
        let ephemeral = json!({"apiVersion": "v1", "kind": "Pod", "spec": {
            "ephemeralContainers": [{"name": "debug", "tty": "yes"}]}});
        assert_eq!(
            error("v1", "Pod", ephemeral).as_deref(),
            Some(
                "json: cannot unmarshal string into Go struct field \
                 EphemeralContainer.spec.ephemeralContainers.tty of type bool"
            )
        );
    }
}
