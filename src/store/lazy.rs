//! A stored object's parsed form, made from its JSON on demand and shared while used.
//!
//! A pending pod is ~2.7 KB of JSON but ~18.5 KB parsed (`serde_json::Value` with
//! `preserve_order`), so the watch cache, its history and the informers keep only the
//! JSON of most objects. A [`LazyValue`] is a handle on one object version:
//!
//! - every handle of that version shares one [`Shared`] (the JSON and a weak pointer to
//!   the parsed form), so while any handle holds the parsed form, every other handle
//!   gets the same `Arc<Value>` without parsing;
//! - dereferencing a handle parses once (or borrows the shared form) and *pins* the
//!   result in that handle, for as long as the handle lives: cheap repeated reads
//!   through one handle, and a clone of a pinned handle is pinned too;
//! - [`LazyValue::cold`] is a handle without the pin: long-lived holders (the cache's
//!   objects and history, informer maps) keep cold handles, so the parsed form goes
//!   when the last pinned handle (a request, a reconcile, a watch event in flight) is
//!   dropped;
//! - [`LazyValue::get`] returns the parsed form without pinning it (for holders that
//!   read once and keep the handle);
//! - [`LazyValue::selectable`] gives what label and field selectors read (the labels
//!   and the kind's selectable fields), extracted once per version and kept with the
//!   JSON, so selector lists do not parse every object.

use std::fmt;
use std::ops::Deref;
use std::sync::{Arc, Mutex, OnceLock, Weak};

use bytes::Bytes;
use serde_json::Value;

/// What every handle of one object version shares.
struct Shared {
    /// The object's JSON.
    raw: Bytes,
    /// The parsed form while some handle holds it.
    parsed: Mutex<Weak<Value>>,
    /// What selectors read, once extracted.
    selectable: OnceLock<Box<Selectable>>,
}

/// What label and field selectors read of one object version: its labels and the
/// values of its kind's selectable fields (~30 bytes and one or two allocations a
/// label or non-empty field; a pod with two labels ~0.3 KB against its ~2.7 KB of JSON).
#[derive(Debug, PartialEq, Eq)]
pub struct Selectable {
    /// The field labels `values` are for (the kind's `selectable_fields`).
    fields: &'static [&'static str],
    values: Box<[Box<str>]>,
    /// `metadata.labels`, sorted by key; a value that is not a string reads as "".
    labels: Box<[(Box<str>, Box<str>)]>,
}

impl Selectable {
    /// Extracts the labels of `obj` and the value `value_of` gives each of `fields`.
    pub fn extract(
        obj: &Value,
        fields: &'static [&'static str],
        value_of: impl Fn(&Value, &str) -> String,
    ) -> Selectable {
        let mut labels: Vec<(Box<str>, Box<str>)> = obj
            .pointer("/metadata/labels")
            .and_then(Value::as_object)
            .map(|labels| {
                labels
                    .iter()
                    .map(|(k, v)| (Box::from(k.as_str()), Box::from(v.as_str().unwrap_or(""))))
                    .collect()
            })
            .unwrap_or_default();
        labels.sort_unstable_by(|a, b| a.0.cmp(&b.0));
        Selectable {
            fields,
            values: fields
                .iter()
                .map(|f| value_of(obj, f).into_boxed_str())
                .collect(),
            labels: labels.into_boxed_slice(),
        }
    }

    /// The value of label `key`, if the object has it.
    pub fn label(&self, key: &str) -> Option<&str> {
        self.labels
            .binary_search_by(|(k, _)| (**k).cmp(key))
            .ok()
            .map(|i| &*self.labels[i].1)
    }

    /// The value of the selectable field `field` ("" for a field not extracted).
    pub fn field(&self, field: &str) -> &str {
        self.fields
            .iter()
            .position(|f| *f == field)
            .map_or("", |i| &self.values[i])
    }

    /// Heap bytes held (for measurements).
    pub fn heap_bytes(&self) -> usize {
        std::mem::size_of::<Selectable>()
            + self.values.iter().map(|v| 16 + v.len()).sum::<usize>()
            + self
                .labels
                .iter()
                .map(|(k, v)| 32 + k.len() + v.len())
                .sum::<usize>()
    }
}

impl Shared {
    /// The parsed form: the one some handle holds, or a fresh parse of the JSON.
    fn load(&self) -> Arc<Value> {
        let mut parsed = self.parsed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = parsed.upgrade() {
            return value;
        }
        let value = Arc::new(parse(&self.raw));
        *parsed = Arc::downgrade(&value);
        value
    }
}

fn parse(raw: &[u8]) -> Value {
    match serde_json::from_slice(raw) {
        Ok(value) => value,
        Err(error) => {
            // The JSON was written by `make_kv` (or checked when loaded): unreachable
            // unless memory is corrupt.
            tracing::error!(%error, bytes = raw.len(), "cached object is not valid JSON");
            Value::Null
        }
    }
}

/// One object version, parsed on demand (see the module documentation).
pub struct LazyValue {
    shared: Arc<Shared>,
    pinned: OnceLock<Arc<Value>>,
}

impl LazyValue {
    /// A handle on `value` whose JSON is `raw` (they must agree), pinned to `value`.
    pub fn new(value: Arc<Value>, raw: Bytes) -> LazyValue {
        let shared = Shared {
            raw,
            parsed: Mutex::new(Arc::downgrade(&value)),
            selectable: OnceLock::new(),
        };
        LazyValue {
            shared: Arc::new(shared),
            pinned: OnceLock::from(value),
        }
    }

    /// A cold handle on the object whose JSON is `raw` (parsed on first use).
    pub fn from_raw(raw: Bytes) -> LazyValue {
        LazyValue {
            shared: Arc::new(Shared {
                raw,
                parsed: Mutex::new(Weak::new()),
                selectable: OnceLock::new(),
            }),
            pinned: OnceLock::new(),
        }
    }

    /// The parsed form, without pinning it in this handle: it stays shared only while
    /// the caller (or another handle) holds it.
    pub fn get(&self) -> Arc<Value> {
        match self.pinned.get() {
            Some(value) => value.clone(),
            None => self.shared.load(),
        }
    }

    /// What selectors read of this version, for a kind whose selectable fields are
    /// `fields` (rendered by `value_of`): extracted on first use from the parsed form
    /// (the one a handle holds, else a parse not kept) and kept with the JSON. `None`
    /// when it was extracted for another field set (another view of the same storage,
    /// such as `events.k8s.io` Events): the caller evaluates on the parsed object.
    pub fn selectable(
        &self,
        fields: &'static [&'static str],
        value_of: impl Fn(&Value, &str) -> String,
    ) -> Option<&Selectable> {
        let extracted = self
            .shared
            .selectable
            .get_or_init(|| Box::new(Selectable::extract(&self.get(), fields, value_of)));
        std::ptr::eq(extracted.fields, fields).then_some(&**extracted)
    }

    /// Whether this version's selectable values were extracted.
    pub fn is_extracted(&self) -> bool {
        self.shared.selectable.get().is_some()
    }

    /// Another handle on the same object version, without this one's pin.
    pub fn cold(&self) -> LazyValue {
        LazyValue {
            shared: self.shared.clone(),
            pinned: OnceLock::new(),
        }
    }

    /// Drops this handle's pin (the parsed form goes if no other handle holds it).
    pub fn cool(&mut self) {
        self.pinned.take();
    }

    /// Whether this handle holds the parsed form.
    pub fn is_pinned(&self) -> bool {
        self.pinned.get().is_some()
    }

    /// Whether some handle of this object version holds the parsed form now.
    pub fn is_parsed(&self) -> bool {
        self.is_pinned()
            || self
                .shared
                .parsed
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .strong_count()
                > 0
    }

    /// The object's JSON.
    pub fn raw(&self) -> &Bytes {
        &self.shared.raw
    }

    /// Whether both handles are of the same object version.
    pub fn same_version(&self, other: &LazyValue) -> bool {
        Arc::ptr_eq(&self.shared, &other.shared)
    }
}

impl From<Value> for LazyValue {
    /// A pinned handle on an object not read from the store (serialized once).
    fn from(value: Value) -> LazyValue {
        LazyValue::from(Arc::new(value))
    }
}

impl From<Arc<Value>> for LazyValue {
    fn from(value: Arc<Value>) -> LazyValue {
        let raw = Bytes::from(serde_json::to_vec(&*value).unwrap_or_default());
        LazyValue::new(value, raw)
    }
}

impl Clone for LazyValue {
    /// The same object version, pinned if this handle is (use [`LazyValue::cold`] for a
    /// handle kept long).
    fn clone(&self) -> LazyValue {
        let pinned = OnceLock::new();
        if let Some(value) = self.pinned.get() {
            let _ = pinned.set(value.clone());
        }
        LazyValue {
            shared: self.shared.clone(),
            pinned,
        }
    }
}

impl Deref for LazyValue {
    type Target = Value;

    /// Parses on first use (or borrows the form another handle holds) and pins it here.
    fn deref(&self) -> &Value {
        self.pinned.get_or_init(|| self.shared.load())
    }
}

impl AsRef<Value> for LazyValue {
    fn as_ref(&self) -> &Value {
        self
    }
}

impl PartialEq for LazyValue {
    fn eq(&self, other: &LazyValue) -> bool {
        self.same_version(other) || self.shared.raw == other.shared.raw || **self == **other
    }
}

impl fmt::Debug for LazyValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The JSON, without parsing (and pinning) the object.
        match std::str::from_utf8(&self.shared.raw) {
            Ok(json) => f.write_str(json),
            Err(_) => write!(f, "<{} bytes>", self.shared.raw.len()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({"metadata": {"name": "p", "labels": {"app": "web"}}, "spec": {"nodeName": "n1"}})
    }

    fn cold_pod() -> LazyValue {
        LazyValue::from_raw(Bytes::from(serde_json::to_vec(&pod()).unwrap()))
    }

    #[test]
    fn a_cold_handle_parses_on_first_use_and_pins_the_result() {
        let kv = cold_pod();
        assert!(!kv.is_parsed());
        assert_eq!(kv["metadata"]["name"], "p");
        assert!(kv.is_pinned());
        assert_eq!(*kv, pod());
        // The same allocation on every read through this handle.
        assert!(std::ptr::eq(&*kv, &*kv));
    }

    #[test]
    fn handles_of_one_version_share_the_parsed_form_while_one_holds_it() {
        let a = cold_pod();
        let b = a.cold();
        let held = a.get();
        assert!(!a.is_pinned(), "get does not pin");
        assert!(b.is_parsed());
        assert!(Arc::ptr_eq(&held, &b.get()), "b shares a's parse");
        assert!(std::ptr::eq(&*held, &*b), "deref shares it too");
        drop(held);
        assert!(b.is_pinned() && a.is_parsed(), "b's pin keeps it");
        let mut b = b;
        b.cool();
        assert!(!a.is_parsed(), "released once nobody holds it");
        // Parsed again on demand, equal to the original.
        assert_eq!(*a.get(), pod());
    }

    #[test]
    fn clones_keep_the_pin_and_cold_handles_drop_it() {
        let pinned = LazyValue::from(pod());
        assert!(pinned.is_pinned());
        let clone = pinned.clone();
        assert!(clone.is_pinned());
        assert!(std::ptr::eq(&*clone, &*pinned));
        let cold = pinned.cold();
        assert!(!cold.is_pinned());
        assert!(cold.same_version(&pinned));
        drop((pinned, clone));
        assert!(!cold.is_parsed(), "only the cold handle is left");
    }

    #[test]
    fn the_json_is_kept_and_agrees_with_the_parsed_form() {
        let v = LazyValue::from(pod());
        let parsed: Value = serde_json::from_slice(v.raw()).unwrap();
        assert_eq!(parsed, *v);
        assert_eq!(
            format!("{:?}", v.cold()),
            String::from_utf8(v.raw().to_vec()).unwrap()
        );
    }

    static FIELDS: &[&str] = &["spec.nodeName", "status.phase"];
    static OTHER: &[&str] = &["spec.nodeName"];

    fn value_of(obj: &Value, field: &str) -> String {
        crate::api::selector::field_value(obj, field)
    }

    #[test]
    fn selectable_values_are_extracted_once_per_version_without_keeping_a_parse() {
        let kv = cold_pod();
        let other = kv.cold();
        let s = kv.selectable(FIELDS, value_of).expect("these fields");
        assert_eq!(s.label("app"), Some("web"));
        assert_eq!(s.label("tier"), None);
        assert_eq!(s.field("spec.nodeName"), "n1");
        assert_eq!(s.field("status.phase"), "");
        assert_eq!(s.field("not.extracted"), "");
        assert!(!kv.is_parsed(), "the parse made for it is not kept");
        // Every handle of the version shares it: not extracted (nor parsed) again.
        assert!(other.is_extracted());
        let again = other.selectable(FIELDS, |_, _| unreachable!("extracted once"));
        assert!(std::ptr::eq(again.expect("same fields"), s));
        // Another field set (another view of the same storage) gets none.
        assert!(other.selectable(OTHER, value_of).is_none());
        assert!(!other.is_parsed());
    }

    #[test]
    fn selectable_labels_are_sorted_and_non_strings_read_empty() {
        let obj = json!({"metadata": {"labels": {"z": "1", "a": "2", "m": 3}}});
        let s = Selectable::extract(&obj, FIELDS, value_of);
        assert_eq!(s.label("a"), Some("2"));
        assert_eq!(s.label("m"), Some(""));
        assert_eq!(s.label("z"), Some("1"));
        assert_eq!(s.label("b"), None);
        assert!(s.heap_bytes() > 0);
        let none = Selectable::extract(&json!({}), FIELDS, value_of);
        assert_eq!(none.label("a"), None);
    }

    #[test]
    fn concurrent_readers_share_the_form_one_of_them_holds() {
        let cold = cold_pod();
        let first = cold.get();
        let values: Vec<Arc<Value>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..4).map(|_| s.spawn(|| cold.cold().get())).collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        assert!(values.iter().all(|v| Arc::ptr_eq(v, &first)));
    }
}
