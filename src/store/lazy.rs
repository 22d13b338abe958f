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
//!   read once and keep the handle).

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
        let raw = Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
        LazyValue::new(Arc::new(value), raw)
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
