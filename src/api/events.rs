//! `events.k8s.io/v1` Events without I/O: the conversion between the stored core/v1
//! Event and the `events.k8s.io/v1` representation (upstream's
//! `pkg/apis/events/v1/conversion.go`: one storage, two shapes) and the field labels
//! a v1 field selector may name, mapped onto the stored fields.

use serde_json::{Map, Value};

/// The API group of the second representation.
pub const GROUP: &str = "events.k8s.io";
/// Its apiVersion.
pub const API_VERSION: &str = "events.k8s.io/v1";

/// Fields whose name differs between the two shapes: (core/v1, events.k8s.io/v1).
/// Every other field (`metadata`, `eventTime`, `series`, `reportingInstance`, `action`,
/// `reason`, `type`, `related`) has the same name and meaning in both.
const RENAMED: &[(&str, &str)] = &[
    ("involvedObject", "regarding"),
    ("message", "note"),
    ("source", "deprecatedSource"),
    ("firstTimestamp", "deprecatedFirstTimestamp"),
    ("lastTimestamp", "deprecatedLastTimestamp"),
    ("count", "deprecatedCount"),
    ("reportingComponent", "reportingController"),
];

/// Fields both shapes carry under the same name.
const SHARED: &[&str] = &[
    "metadata",
    "eventTime",
    "series",
    "reportingInstance",
    "action",
    "reason",
    "type",
    "related",
];

/// Field labels of `events.k8s.io/v1` field selectors and the stored (core) field each
/// one reads (upstream's `AddFieldLabelConversionsForEvent` of events/v1).
pub const V1_FIELD_LABELS: &[(&str, &str)] = &[
    ("metadata.name", "metadata.name"),
    ("metadata.namespace", "metadata.namespace"),
    ("reason", "reason"),
    ("regarding.kind", "involvedObject.kind"),
    ("regarding.namespace", "involvedObject.namespace"),
    ("regarding.name", "involvedObject.name"),
    ("regarding.uid", "involvedObject.uid"),
    ("regarding.apiVersion", "involvedObject.apiVersion"),
    (
        "regarding.resourceVersion",
        "involvedObject.resourceVersion",
    ),
    ("regarding.fieldPath", "involvedObject.fieldPath"),
    ("reportingController", "reportingComponent"),
    ("type", "type"),
];

/// The v1 field labels alone (what a v1 field selector may name).
pub const V1_SELECTABLE_FIELDS: &[&str] = &[
    "metadata.name",
    "metadata.namespace",
    "reason",
    "regarding.kind",
    "regarding.namespace",
    "regarding.name",
    "regarding.uid",
    "regarding.apiVersion",
    "regarding.resourceVersion",
    "regarding.fieldPath",
    "reportingController",
    "type",
];

/// The stored field a v1 field label reads (`None` for labels v1 does not support).
pub fn core_field_label(v1_label: &str) -> Option<&'static str> {
    V1_FIELD_LABELS
        .iter()
        .find(|(v1, _)| *v1 == v1_label)
        .map(|(_, core)| *core)
}

fn copy(from: &Map<String, Value>, to: &mut Map<String, Value>, src: &str, dst: &str) {
    if let Some(v) = from.get(src).filter(|v| !v.is_null()) {
        to.insert(dst.to_string(), v.clone());
    }
}

/// The stored core/v1 Event `core` as `events.k8s.io/v1` shows it. An object already
/// in v1 shape is returned as it is.
pub fn to_v1(core: &Value) -> Value {
    if core["apiVersion"] == API_VERSION {
        return core.clone();
    }
    let Some(from) = core.as_object() else {
        return core.clone();
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String(API_VERSION.into()));
    out.insert("kind".into(), Value::String("Event".into()));
    for f in SHARED {
        copy(from, &mut out, f, f);
    }
    for (core_name, v1_name) in RENAMED {
        copy(from, &mut out, core_name, v1_name);
    }
    // Upstream's v1 type marks its strings `omitempty` (core/v1 writes the reporting
    // fields even when empty) and writes `eventTime` always: `null` when unset.
    out.retain(|k, v| !(V1_OMITTED_WHEN_EMPTY.contains(&k.as_str()) && v == ""));
    out.entry("eventTime").or_insert(Value::Null);
    Value::Object(out)
}

/// The `events.k8s.io/v1` string fields left out when empty (`omitempty` upstream).
const V1_OMITTED_WHEN_EMPTY: &[&str] = &[
    "reportingController",
    "reportingInstance",
    "action",
    "reason",
    "note",
    "type",
];

/// The `events.k8s.io/v1` Event `v1` as it is stored (core/v1). An object already in
/// core shape is returned as it is.
pub fn from_v1(v1: &Value) -> Value {
    if v1["apiVersion"] == "v1" {
        return v1.clone();
    }
    let Some(from) = v1.as_object() else {
        return v1.clone();
    };
    let mut out = Map::new();
    out.insert("apiVersion".into(), Value::String("v1".into()));
    out.insert("kind".into(), Value::String("Event".into()));
    for f in SHARED {
        copy(from, &mut out, f, f);
    }
    for (core_name, v1_name) in RENAMED {
        copy(from, &mut out, v1_name, core_name);
    }
    // The core shape requires an involved object: an event about nothing refers to `{}`.
    out.entry("involvedObject")
        .or_insert_with(|| Value::Object(Map::new()));
    Value::Object(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn core_event() -> Value {
        json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web.1", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
            "involvedObject": {"kind": "Pod", "apiVersion": "v1", "namespace": "default", "name": "web", "uid": "p1", "fieldPath": "spec.containers{app}"},
            "related": {"kind": "Node", "name": "n1"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container",
            "type": "Warning",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": "2026-12-04T10:00:00Z",
            "lastTimestamp": "2026-12-04T10:05:00Z",
            "count": 3,
            "eventTime": "2026-12-04T10:00:00.123456Z",
            "series": {"count": 3, "lastObservedTime": "2026-12-04T10:05:00.000001Z"},
            "action": "Restarting",
            "reportingComponent": "kubelet",
            "reportingInstance": "n1",
        })
    }

    #[test]
    fn core_fields_map_onto_their_v1_names() {
        let v1 = to_v1(&core_event());
        assert_eq!(v1["apiVersion"], "events.k8s.io/v1");
        assert_eq!(v1["regarding"]["name"], "web");
        assert_eq!(v1["regarding"]["fieldPath"], "spec.containers{app}");
        assert_eq!(v1["note"], "Back-off restarting failed container");
        assert_eq!(v1["deprecatedSource"]["component"], "kubelet");
        assert_eq!(v1["deprecatedSource"]["host"], "n1");
        assert_eq!(v1["deprecatedFirstTimestamp"], "2026-12-04T10:00:00Z");
        assert_eq!(v1["deprecatedLastTimestamp"], "2026-12-04T10:05:00Z");
        assert_eq!(v1["deprecatedCount"], 3);
        assert_eq!(v1["reportingController"], "kubelet");
        assert_eq!(v1["reportingInstance"], "n1");
        assert_eq!(v1["series"]["count"], 3);
        assert_eq!(v1["related"]["kind"], "Node");
        assert_eq!(v1["action"], "Restarting");
        for core_only in [
            "involvedObject",
            "message",
            "source",
            "count",
            "reportingComponent",
        ] {
            assert!(v1.get(core_only).is_none(), "{core_only} left in v1");
        }
        // The typed v1 Event reads it without loss.
        let typed: k8s_openapi::api::events::v1::Event =
            serde_json::from_value(v1.clone()).expect("a v1 Event");
        assert_eq!(
            typed.note.as_deref(),
            Some("Back-off restarting failed container")
        );
    }

    #[test]
    fn v1_writes_an_unset_event_time_as_null_and_leaves_out_empty_strings() {
        // What `kubectl create` or an old client stores: no eventTime, empty reporting
        // fields (core/v1 writes them always).
        let core = json!({
            "apiVersion": "v1",
            "kind": "Event",
            "metadata": {"name": "web.2", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web"},
            "reason": "Started",
            "message": "",
            "reportingComponent": "",
            "reportingInstance": "",
            "firstTimestamp": "2026-12-04T10:00:00Z",
        });
        let v1 = to_v1(&core);
        assert_eq!(v1.get("eventTime"), Some(&Value::Null));
        for omitted in ["reportingController", "reportingInstance", "note"] {
            assert!(v1.get(omitted).is_none(), "{omitted} written empty");
        }
        assert_eq!(v1["reason"], "Started");
        // Back in core shape nothing new appears.
        assert!(from_v1(&v1).get("eventTime").is_none());
    }

    #[test]
    fn core_to_v1_and_back_is_lossless() {
        let core = core_event();
        assert_eq!(from_v1(&to_v1(&core)), core);
    }

    #[test]
    fn v1_to_core_and_back_is_lossless() {
        let v1 = json!({
            "apiVersion": "events.k8s.io/v1",
            "kind": "Event",
            "metadata": {"name": "e", "namespace": "ns"},
            "eventTime": "2026-12-04T10:00:00.000000Z",
            "regarding": {"kind": "Deployment", "name": "web", "namespace": "ns"},
            "note": "scaled",
            "reason": "Scaled",
            "type": "Normal",
            "action": "Scale",
            "reportingController": "example.com/scaler",
            "reportingInstance": "scaler-1",
        });
        let core = from_v1(&v1);
        assert_eq!(core["involvedObject"]["kind"], "Deployment");
        assert_eq!(core["message"], "scaled");
        assert_eq!(core["reportingComponent"], "example.com/scaler");
        assert!(core.get("note").is_none());
        assert_eq!(to_v1(&core), v1);
    }

    #[test]
    fn an_event_about_nothing_refers_to_an_empty_object_in_core() {
        let core = from_v1(
            &json!({"apiVersion": API_VERSION, "kind": "Event", "metadata": {"name": "e"}}),
        );
        assert_eq!(core["involvedObject"], json!({}));
    }

    #[test]
    fn v1_field_labels_read_the_stored_fields() {
        assert_eq!(
            core_field_label("regarding.name"),
            Some("involvedObject.name")
        );
        assert_eq!(
            core_field_label("regarding.kind"),
            Some("involvedObject.kind")
        );
        assert_eq!(
            core_field_label("reportingController"),
            Some("reportingComponent")
        );
        assert_eq!(core_field_label("type"), Some("type"));
        assert_eq!(core_field_label("involvedObject.name"), None);
        assert_eq!(core_field_label("source"), None);
        for label in V1_SELECTABLE_FIELDS {
            assert!(core_field_label(label).is_some(), "{label}");
        }
        assert_eq!(V1_SELECTABLE_FIELDS.len(), V1_FIELD_LABELS.len());
    }
}
