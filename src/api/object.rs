//! Helpers on API objects held as JSON: metadata access, decoding checks, comparisons.

use serde_json::{Map, Value};

use super::go_form::{self, Rewrite};
use super::protobuf;

/// `metadata.<field>` as a string.
pub fn meta_str<'a>(obj: &'a Value, field: &str) -> Option<&'a str> {
    obj.get("metadata")?.get(field)?.as_str()
}

pub fn name(obj: &Value) -> &str {
    meta_str(obj, "name").unwrap_or("")
}

pub fn namespace(obj: &Value) -> Option<&str> {
    meta_str(obj, "namespace").filter(|s| !s.is_empty())
}

pub fn uid(obj: &Value) -> Option<&str> {
    meta_str(obj, "uid")
}

pub fn labels(obj: &Value) -> Option<&Map<String, Value>> {
    obj.get("metadata")?.get("labels")?.as_object()
}

/// The mutable `metadata` map, created if missing.
pub fn meta_mut(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj.get("metadata").is_some_and(Value::is_object) {
        obj["metadata"] = Value::Object(Map::new());
    }
    obj["metadata"]
        .as_object_mut()
        .expect("metadata is an object")
}

/// `metadata.finalizers`.
pub fn finalizers(obj: &Value) -> Vec<String> {
    obj.get("metadata")
        .and_then(|m| m.get("finalizers"))
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|v| v.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

pub fn is_deleting(obj: &Value) -> bool {
    meta_str(obj, "deletionTimestamp").is_some()
}

/// The `omitempty` collections of `metav1.ObjectMeta` that Go drops when empty: an
/// object written with `annotations: {}` (as `kubectl apply` sends when it strips its
/// last-applied annotation) is stored and answered without them, as upstream's.
const OMIT_EMPTY_META: [&str; 4] = ["labels", "annotations", "finalizers", "ownerReferences"];

/// Removes the empty (or null) `omitempty` collections from `obj`'s metadata.
pub fn drop_empty_metadata(obj: &mut Value) {
    let Some(meta) = obj.get_mut("metadata").and_then(Value::as_object_mut) else {
        return;
    };
    meta.retain(|k, v| {
        !OMIT_EMPTY_META.contains(&k.as_str())
            || match v {
                Value::Null => false,
                Value::Object(m) => !m.is_empty(),
                Value::Array(a) => !a.is_empty(),
                _ => true,
            }
    });
}

/// RFC 3339 timestamp with second precision, as Kubernetes writes `metav1.Time`.
pub fn timestamp(now: chrono::DateTime<chrono::Utc>) -> String {
    now.format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

/// Parses a resourceVersion string; empty means "none".
pub fn parse_resource_version(rv: &str) -> Result<Option<u64>, String> {
    if rv.is_empty() {
        return Ok(None);
    }
    rv.parse::<u64>()
        .map(Some)
        .map_err(|_| format!("invalid resource version: {rv}"))
}

/// A built-in object as upstream's typed decoder reads it where the JSON says more
/// than the typed form holds.
/// - Upstream accepts plain numbers where a `Quantity` is expected (`cpu: 1`); the
///   typed decoder only takes strings, so numbers under quantity maps are turned into
///   strings: those of a built-in object's resources, capacities and volume sizes
///   anywhere, and the quantity maps of ResourceQuotas (`hard`, `used`) and LimitRanges
///   (`max`, `min`, `default`, `defaultRequest`, `maxLimitRequestRatio`) and the metric
///   values of HorizontalPodAutoscalers at their own places.
/// - Go decodes a JSON `null` map value as the value type's zero value: a Secret
///   written with `stringData: {client_id: null}` (Tailscale's operator manifest leaves
///   its OAuth keys empty so) is accepted upstream and holds `client_id: ""`; so are
///   the `null` values of the string maps whose names are theirs alone (labels,
///   annotations, ConfigMap and Secret data, node selectors, `matchLabels`).
///
/// Kinds whose fields may carry those names freely (a CRD's schema names its
/// properties as it likes — `requests: {type: integer, minimum: 1}`; a
/// ControllerRevision's `data` is kept raw) are left as they are.
///
/// Then the object takes the form upstream's Go types give it ([`go_form`]): quantities
/// in their stored spelling, `omitempty` fields without their empty values.
pub fn normalize_for_decoding(value: &mut Value) {
    normalize_with(value, Rewrite::Stored);
}

/// [`normalize_for_decoding`] of a server-side apply configuration: its quantities take
/// their stored spelling (compared as stored), but its empty fields stay, as they are
/// fields its manager owns.
pub fn normalize_apply_config(value: &mut Value) {
    normalize_with(value, Rewrite::QuantitiesOnly);
}

/// [`normalize_for_decoding`] of the `status` of a built-in object of `api_version` and
/// `kind`, written on its own.
pub fn normalize_status_for_decoding(api_version: &str, kind: &str, status: &mut Value) {
    normalize_nested(status);
    let message =
        protobuf::schema_for(api_version, kind).and_then(|m| go_form::field_message(m, "status"));
    if let Some(message) = message {
        go_form::rewrite(message, status, Rewrite::Stored);
    }
}

/// A built-in object as upstream stores it ([`go_form`]): what defaulting, admission and
/// the kind's own rules add is encoded by the Go types as well.
pub fn as_stored(value: &mut Value) {
    if let Some(message) = message_of(value) {
        go_form::rewrite(message, value, Rewrite::Stored);
    }
}

/// The field table of a built-in object's kind, by its `apiVersion` and `kind`.
fn message_of(value: &Value) -> Option<&'static protobuf::Message> {
    let kind = value.get("kind").and_then(Value::as_str)?;
    if FREE_FORM.contains(&kind) {
        return None;
    }
    protobuf::schema_for(value.get("apiVersion").and_then(Value::as_str)?, kind)
}

/// Kinds whose fields may carry the names [`normalize_for_decoding`] looks for freely.
const FREE_FORM: &[&str] = &["CustomResourceDefinition", "ControllerRevision"];

fn normalize_with(value: &mut Value, how: Rewrite) {
    let kind = value.get("kind").and_then(Value::as_str);
    if kind.is_some_and(|kind| FREE_FORM.contains(&kind)) {
        return;
    }
    normalize_kind_quantity_maps(value);
    normalize_nested(value);
    if let Some(message) = message_of(value) {
        go_form::rewrite(message, value, how);
    }
}

/// Numbers among the values of the map at `map` become strings.
fn quantity_map_to_strings(map: Option<&mut Value>) {
    if let Some(Value::Object(q)) = map {
        for qv in q.values_mut() {
            if let Value::Number(n) = qv {
                *qv = Value::String(n.to_string());
            }
        }
    }
}

/// The quantity maps whose names are too common to be looked for everywhere.
fn normalize_kind_quantity_maps(obj: &mut Value) {
    match obj.get("kind").and_then(Value::as_str) {
        Some("ResourceQuota") => {
            for path in ["/spec/hard", "/status/hard", "/status/used"] {
                quantity_map_to_strings(obj.pointer_mut(path));
            }
        }
        Some("LimitRange") => {
            let items = obj
                .pointer_mut("/spec/limits")
                .and_then(Value::as_array_mut);
            for item in items.into_iter().flatten() {
                for key in crate::api::limit_range::QUANTITY_MAPS {
                    quantity_map_to_strings(item.get_mut(key));
                }
            }
        }
        Some("HorizontalPodAutoscaler") => {
            // autoscaling/v2 metric targets and current values (`averageValue: 1000`).
            let metrics = [
                ("/spec/metrics", "target"),
                ("/status/currentMetrics", "current"),
            ];
            for (path, member) in metrics {
                let list = obj.pointer_mut(path).and_then(Value::as_array_mut);
                for metric in list.into_iter().flatten() {
                    let sources = metric
                        .as_object_mut()
                        .into_iter()
                        .flat_map(|m| m.values_mut());
                    for source in sources {
                        if let Some(values) = source.get_mut(member).and_then(Value::as_object_mut)
                        {
                            for key in ["value", "averageValue"] {
                                if let Some(Value::Number(n)) = values.get(key) {
                                    let text = n.to_string();
                                    values.insert(key.into(), Value::String(text));
                                }
                            }
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

/// The names [`normalize_for_decoding`] looks for anywhere, in one walk of the object.
fn normalize_nested(value: &mut Value) {
    const QUANTITY_MAPS: &[&str] = &["limits", "requests", "capacity", "allocatable", "overhead"];
    const STRING_MAPS: &[&str] = &[
        "labels",
        "annotations",
        "data",
        "stringData",
        "binaryData",
        "nodeSelector",
        "matchLabels",
    ];
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let k = k.as_str();
                if QUANTITY_MAPS.contains(&k) {
                    quantity_map_to_strings(Some(v));
                } else if k == "sizeLimit" || k == "storage" {
                    if let Value::Number(n) = v {
                        *v = Value::String(n.to_string());
                    }
                } else if let (true, Value::Object(members)) = (STRING_MAPS.contains(&k), &mut *v) {
                    for member in members.values_mut().filter(|m| m.is_null()) {
                        *member = Value::String(String::new());
                    }
                } else {
                    normalize_nested(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(normalize_nested),
        _ => {}
    }
}

/// Paths (like `spec.foo` or `spec.containers[0].bogus`) of fields present in `original`
/// but dropped by decoding into the typed form, i.e. fields the schema does not declare.
pub fn unknown_fields(original: &Value, typed: &Value) -> Vec<String> {
    unknown_fields_at("", original, typed)
}

/// [`unknown_fields`] of a part of an object found at `prefix` (like `status`): the
/// paths start with it.
pub fn unknown_fields_at(prefix: &str, original: &Value, typed: &Value) -> Vec<String> {
    let mut out = Vec::new();
    let mut path = prefix.to_string();
    collect_unknown(original, typed, &mut path, &mut out);
    out
}

/// Walks `original` beside `typed` with one path buffer (a path is copied only for a
/// field that is reported).
fn collect_unknown(original: &Value, typed: &Value, path: &mut String, out: &mut Vec<String>) {
    use std::fmt::Write;
    match (original, typed) {
        (Value::Object(o), Value::Object(t)) => {
            for (k, v) in o {
                let len = path.len();
                if len > 0 {
                    path.push('.');
                }
                path.push_str(k);
                match t.get(k) {
                    Some(tv) => collect_unknown(v, tv, path, out),
                    None if !v.is_null() && !is_empty_container(v) => out.push(path.clone()),
                    None => {}
                }
                path.truncate(len);
            }
        }
        (Value::Array(o), Value::Array(t)) => {
            for (i, (ov, tv)) in o.iter().zip(t.iter()).enumerate() {
                // Only containers can hold unknown fields.
                if !(ov.is_object() || ov.is_array()) {
                    continue;
                }
                let len = path.len();
                let _ = write!(path, "[{i}]");
                collect_unknown(ov, tv, path, out);
                path.truncate(len);
            }
        }
        _ => {}
    }
}

fn is_empty_container(v: &Value) -> bool {
    match v {
        Value::Object(m) => m.is_empty(),
        Value::Array(a) => a.is_empty(),
        _ => false,
    }
}

/// Keys that appear twice in one JSON object of `body` (upstream's strict decoding
/// reports them as `duplicate field "<key>"`). Invalid JSON yields no duplicates: the
/// regular decoder reports the syntax error.
pub fn duplicate_fields(body: &[u8]) -> Vec<String> {
    use serde::de::DeserializeSeed;
    let found = std::cell::RefCell::new(Vec::new());
    let mut de = serde_json::Deserializer::from_slice(body);
    let _ = DuplicateCheck { found: &found }.deserialize(&mut de);
    found.into_inner()
}

/// A map key, borrowed from the input when it has no escapes.
struct BorrowedKey<'de>(std::borrow::Cow<'de, str>);

impl<'de> serde::Deserialize<'de> for BorrowedKey<'de> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct KeyVisitor;
        impl<'de> serde::de::Visitor<'de> for KeyVisitor {
            type Value = BorrowedKey<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E>(self, s: &'de str) -> Result<BorrowedKey<'de>, E> {
                Ok(BorrowedKey(std::borrow::Cow::Borrowed(s)))
            }
            fn visit_str<E>(self, s: &str) -> Result<BorrowedKey<'de>, E> {
                Ok(BorrowedKey(std::borrow::Cow::Owned(s.to_string())))
            }
        }
        d.deserialize_str(KeyVisitor)
    }
}

struct DuplicateCheck<'a> {
    found: &'a std::cell::RefCell<Vec<String>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for DuplicateCheck<'_> {
    type Value = ();
    fn deserialize<D: serde::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
        d.deserialize_any(self)
    }
}

impl<'de> serde::de::Visitor<'de> for DuplicateCheck<'_> {
    type Value = ();
    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("any JSON value")
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        // Keys borrowed from the body where they need no unescaping, compared in a list
        // while the object has few (most do), then in a set; nothing is copied unless a
        // key repeats.
        const LIST_KEYS: usize = 32;
        let mut few: Vec<std::borrow::Cow<'de, str>> = Vec::new();
        let mut many = std::collections::HashSet::new();
        while let Some(BorrowedKey(key)) = map.next_key::<BorrowedKey<'de>>()? {
            let repeated = if many.is_empty() && few.len() < LIST_KEYS {
                few.contains(&key) || {
                    few.push(key.clone());
                    false
                }
            } else {
                many.extend(few.drain(..));
                !many.insert(key.clone())
            };
            if repeated {
                self.found.borrow_mut().push(key.into_owned());
            }
            map.next_value_seed(DuplicateCheck { found: self.found })?;
        }
        Ok(())
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq
            .next_element_seed(DuplicateCheck { found: self.found })?
            .is_some()
        {}
        Ok(())
    }
    fn visit_bool<E>(self, _: bool) -> Result<(), E> {
        Ok(())
    }
    fn visit_i64<E>(self, _: i64) -> Result<(), E> {
        Ok(())
    }
    fn visit_u64<E>(self, _: u64) -> Result<(), E> {
        Ok(())
    }
    fn visit_f64<E>(self, _: f64) -> Result<(), E> {
        Ok(())
    }
    fn visit_str<E>(self, _: &str) -> Result<(), E> {
        Ok(())
    }
    fn visit_unit<E>(self) -> Result<(), E> {
        Ok(())
    }
}

/// Whether two versions of an object are the same apart from bookkeeping fields
/// (resourceVersion, managedFields), so that an update can be skipped. Compares in
/// place (no copy of either version).
pub fn same_content(a: &Value, b: &Value) -> bool {
    let bookkeeping = |k: &str| k == "resourceVersion" || k == "managedFields";
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => members_equal(
            a,
            b,
            |_| false,
            |k, v, w| match k {
                "metadata" => match (v.as_object(), w.as_object()) {
                    (Some(m), Some(n)) => members_equal(m, n, bookkeeping, |_, x, y| x == y),
                    _ => v == w,
                },
                _ => v == w,
            },
        ),
        _ => a == b,
    }
}

/// Whether a status write's body `new` holds the stored object `old` apart from its
/// status (and a resourceVersion string in its metadata, which is a precondition):
/// compared in place. Such a body needs only its status decoded.
pub fn same_but_status(new: &Value, old: &Value) -> bool {
    match (new.as_object(), old.as_object()) {
        (Some(a), Some(b)) => members_equal(
            a,
            b,
            |k| k == "status",
            |k, v, w| match (k, v.as_object(), w.as_object()) {
                ("metadata", Some(m), Some(n)) => {
                    m.get("resourceVersion").is_none_or(Value::is_string)
                        && members_equal(m, n, |k| k == "resourceVersion", |_, x, y| x == y)
                }
                _ => v == w,
            },
        ),
        _ => false,
    }
}

/// Whether `a` and `b` have the same members (in any order, as `Value`'s equality)
/// apart from those `skip` names, members compared by `eq`.
fn members_equal(
    a: &Map<String, Value>,
    b: &Map<String, Value>,
    skip: impl Fn(&str) -> bool,
    eq: impl Fn(&str, &Value, &Value) -> bool,
) -> bool {
    let kept = |m: &Map<String, Value>| m.keys().filter(|k| !skip(k)).count();
    kept(a) == kept(b)
        && a.iter()
            .filter(|(k, _)| !skip(k))
            .all(|(k, v)| b.get(k).is_some_and(|w| eq(k, v, w)))
}

/// The members that are not what `metadata.generation` tracks.
const NOT_SPEC: [&str; 4] = ["metadata", "status", "apiVersion", "kind"];

/// Whether `a` and `b` agree on everything but `metadata`, `status`, `apiVersion` and
/// `kind` (what `metadata.generation` tracks), compared in place.
pub fn same_spec_part(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => members_equal(a, b, |k| NOT_SPEC.contains(&k), |_, v, w| v == w),
        _ => a == b,
    }
}

/// Whether `a` and `b` agree on everything but `metadata`, `apiVersion` and `kind`
/// (what a custom object's generation tracks when its kind has no status
/// subresource), compared in place.
pub fn same_but_metadata(a: &Value, b: &Value) -> bool {
    match (a.as_object(), b.as_object()) {
        (Some(a), Some(b)) => members_equal(
            a,
            b,
            |k| matches!(k, "metadata" | "apiVersion" | "kind"),
            |_, v, w| v == w,
        ),
        _ => a == b,
    }
}

/// A random suffix for `generateName`, from the same alphabet upstream uses.
pub fn random_suffix(len: usize) -> String {
    use rand::Rng;
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    let mut rng = rand::thread_rng();
    (0..len)
        .map(|_| ALPHABET[rng.gen_range(0..ALPHABET.len())] as char)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// The copying form `same_spec_part` is checked against.
    fn spec_part(v: &Value) -> Value {
        let mut v = v.clone();
        if let Some(obj) = v.as_object_mut() {
            for k in NOT_SPEC {
                obj.remove(k);
            }
        }
        v
    }

    #[test]
    fn in_place_comparisons_agree_with_comparing_stripped_copies() {
        let strip = |v: &Value| {
            let mut v = v.clone();
            if let Some(meta) = v.get_mut("metadata").and_then(Value::as_object_mut) {
                meta.remove("resourceVersion");
                meta.remove("managedFields");
            }
            v
        };
        let base = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "resourceVersion": "1", "labels": {"a": "1"}},
            "spec": {"x": 1}, "status": {"phase": "Pending"}});
        let variants = [
            base.clone(),
            json!({"kind": "Pod", "apiVersion": "v1", "status": {"phase": "Pending"}, "spec": {"x": 1},
                   "metadata": {"labels": {"a": "1"}, "name": "p", "resourceVersion": "9", "managedFields": []}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}, "spec": {"x": 1}, "status": {"phase": "Pending"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"x": 2}, "status": {"phase": "Pending"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"x": 1}, "status": {"phase": "Running"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"x": 1}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p", "labels": {"a": "1"}}, "spec": {"x": 1}, "extra": null, "status": {"phase": "Pending"}}),
            json!({"apiVersion": "v1", "kind": "Pod", "metadata": "odd", "spec": {"x": 1}}),
            json!({"metadata": {"name": "p", "resourceVersion": "3"}, "status": {}}),
            json!([1, 2]),
            json!(null),
        ];
        for a in &variants {
            for b in &variants {
                assert_eq!(same_content(a, b), strip(a) == strip(b), "{a} vs {b}");
                assert_eq!(
                    same_spec_part(a, b),
                    spec_part(a) == spec_part(b),
                    "{a} vs {b}"
                );
            }
        }
    }

    #[test]
    fn unknown_fields_are_reported_with_their_path() {
        let original = json!({"spec": {"containers": [{"name": "a", "bogus": 1}], "extra": "x", "nothing": null}});
        let typed = json!({"spec": {"containers": [{"name": "a"}]}});
        assert_eq!(
            unknown_fields(&original, &typed),
            vec!["spec.containers[0].bogus", "spec.extra"]
        );
    }

    #[test]
    fn duplicate_keys_are_found_at_any_depth() {
        let body =
            br#"{"metadata": {"name": "a", "name": "b"}, "spec": {"x": [{"k": 1, "k": 2}]}}"#;
        assert_eq!(duplicate_fields(body), vec!["name", "k"]);
        assert!(duplicate_fields(br#"{"a": 1, "b": {"a": 2}}"#).is_empty());
        assert!(duplicate_fields(b"{not json").is_empty());
    }

    #[test]
    fn duplicate_keys_are_found_among_many_keys_and_escaped_ones() {
        let mut keys: Vec<String> = (0..100).map(|i| format!("\"k{i}\": {i}")).collect();
        keys.push("\"k7\": 0".into());
        keys.push("\"k99\": 0".into());
        let body = format!("{{{}}}", keys.join(", "));
        assert_eq!(duplicate_fields(body.as_bytes()), vec!["k7", "k99"]);
        assert_eq!(
            duplicate_fields(br#"{"a\u0062": 1, "ab": 2, "q\"": 1, "q\"": 2}"#),
            vec!["ab", "q\""]
        );
    }

    #[test]
    fn unknown_fields_of_a_part_start_with_its_path() {
        let original =
            json!({"phase": "Running", "bogus": [1], "conditions": [{"type": "Ready", "x": 1}]});
        let typed = json!({"phase": "Running", "conditions": [{"type": "Ready"}]});
        assert_eq!(
            unknown_fields_at("status", &original, &typed),
            vec!["status.bogus", "status.conditions[0].x"]
        );
    }

    #[test]
    fn a_status_body_holds_the_stored_object_when_only_status_and_version_differ() {
        let old = json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "p", "resourceVersion": "5", "labels": {"a": "b"}},
            "spec": {"nodeName": "n1"}, "status": {"phase": "Pending"}});
        let mut new = old.clone();
        new["status"] = json!({"phase": "Running"});
        new["metadata"]["resourceVersion"] = json!("9");
        assert!(same_but_status(&new, &old));
        new["status"] = Value::Null;
        new.as_object_mut().unwrap().remove("status");
        assert!(same_but_status(&new, &old), "a body without a status");
        let mut other = new.clone();
        other["metadata"]["resourceVersion"] = json!(9);
        assert!(
            !same_but_status(&other, &old),
            "a version of the wrong type is decoded"
        );
        let mut other = new.clone();
        other["spec"]["nodeName"] = json!("n2");
        assert!(!same_but_status(&other, &old));
        let mut other = new.clone();
        other["metadata"]["labels"] = json!({});
        assert!(!same_but_status(&other, &old));
        let mut other = new;
        other["extra"] = json!(1);
        assert!(!same_but_status(&other, &old));
    }

    #[test]
    fn numeric_quantities_become_strings() {
        let mut v = json!({"resources": {"limits": {"cpu": 1, "memory": "1Gi"}}, "x": {"requests": {"cpu": 0.5}}});
        normalize_for_decoding(&mut v);
        assert_eq!(v["resources"]["limits"]["cpu"], "1");
        assert_eq!(v["x"]["requests"]["cpu"], "0.5");
    }

    #[test]
    fn null_values_of_string_maps_read_as_empty_strings() {
        let mut secret = json!({"kind": "Secret",
            "metadata": {"name": "s", "labels": {"a": null}},
            "stringData": {"client_id": null, "client_secret": "x"}});
        normalize_for_decoding(&mut secret);
        assert_eq!(
            secret["stringData"],
            json!({"client_id": "", "client_secret": "x"})
        );
        assert_eq!(secret["metadata"]["labels"]["a"], "");
        // Elsewhere a null stays a null (an unset field), and free-form kinds are kept.
        let mut deployment = json!({"kind": "Deployment", "spec": {"template": {"spec": {
            "nodeSelector": {"disk": null}, "containers": [{"env": [{"name": "A", "value": null}]}]}}}});
        normalize_for_decoding(&mut deployment);
        let pod = &deployment["spec"]["template"]["spec"];
        assert_eq!(pod["nodeSelector"]["disk"], "");
        assert!(pod["containers"][0]["env"][0]["value"].is_null());
        let mut crd = json!({"kind": "CustomResourceDefinition", "spec": {"data": {"x": null}}});
        let kept = crd.clone();
        normalize_for_decoding(&mut crd);
        assert_eq!(crd, kept);
    }

    #[test]
    fn schemas_naming_a_property_like_a_quantity_map_keep_their_numbers() {
        // Contour's HTTPProxy CRD: `rateLimitPolicy.local.requests` is an integer.
        let requests = json!({"type": "integer", "format": "int32", "minimum": 1});
        let mut crd = json!({"kind": "CustomResourceDefinition", "spec": {"versions": [
            {"schema": {"openAPIV3Schema": {"properties": {"requests": requests.clone(),
                "limits": {"type": "object", "maxProperties": 4}}}}}]}});
        normalize_for_decoding(&mut crd);
        let props = &crd["spec"]["versions"][0]["schema"]["openAPIV3Schema"]["properties"];
        assert_eq!(props["requests"], requests);
        assert_eq!(props["limits"]["maxProperties"], 4);
        let mut revision = json!({"kind": "ControllerRevision", "revision": 1,
            "data": {"spec": {"template": {"spec": {"containers": [
                {"resources": {"limits": {"cpu": 1}}}]}}}}});
        let kept = revision.clone();
        normalize_for_decoding(&mut revision);
        assert_eq!(revision, kept);
    }

    #[test]
    fn quota_and_limit_range_quantities_become_strings_only_at_their_places() {
        let mut quota = json!({"kind": "ResourceQuota",
            "spec": {"hard": {"pods": 10, "requests.cpu": 1.5, "requests.memory": "1Gi"}},
            "status": {"used": {"pods": 2}}});
        normalize_for_decoding(&mut quota);
        assert_eq!(quota["spec"]["hard"]["pods"], "10");
        assert_eq!(quota["spec"]["hard"]["requests.cpu"], "1.5");
        assert_eq!(quota["status"]["used"]["pods"], "2");
        let mut range = json!({"kind": "LimitRange", "spec": {"limits": [{"type": "Container",
            "max": {"cpu": 2}, "min": {"cpu": 0.1}, "default": {"cpu": 1},
            "defaultRequest": {"cpu": 0.5}, "maxLimitRequestRatio": {"cpu": 4}}]}});
        normalize_for_decoding(&mut range);
        for key in [
            "max",
            "min",
            "default",
            "defaultRequest",
            "maxLimitRequestRatio",
        ] {
            assert!(range["spec"]["limits"][0][key]["cpu"].is_string(), "{key}");
        }
        let mut hpa = json!({"kind": "HorizontalPodAutoscaler", "spec": {"metrics": [
            {"type": "Pods", "pods": {"metric": {"name": "pps"},
                "target": {"type": "AverageValue", "averageValue": 1000}}},
            {"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}]},
            "status": {"currentMetrics": [{"type": "Object", "object": {"current": {"value": 3}}}]}});
        normalize_for_decoding(&mut hpa);
        assert_eq!(
            hpa["spec"]["metrics"][0]["pods"]["target"]["averageValue"],
            "1000"
        );
        assert_eq!(
            hpa["spec"]["metrics"][1]["resource"]["target"]["averageUtilization"],
            50
        );
        assert_eq!(
            hpa["status"]["currentMetrics"][0]["object"]["current"]["value"],
            "3"
        );
        // Elsewhere such names are not quantities.
        let mut other =
            json!({"kind": "HorizontalPodAutoscaler", "spec": {"max": {"replicas": 3}}});
        normalize_for_decoding(&mut other);
        assert_eq!(other["spec"]["max"]["replicas"], 3);
    }

    #[test]
    fn same_content_ignores_resource_version() {
        let a = json!({"metadata": {"name": "a", "resourceVersion": "1"}, "data": {"k": "v"}});
        let b = json!({"metadata": {"name": "a", "resourceVersion": "7"}, "data": {"k": "v"}});
        assert!(same_content(&a, &b));
        let c = json!({"metadata": {"name": "a"}, "data": {"k": "w"}});
        assert!(!same_content(&a, &c));
    }
}
