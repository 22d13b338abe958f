//! `metadata.managedFields`: its entries, how they are read, ordered, written and
//! capped, as k8s.io/apimachinery's `managedfields/internal` package does.

use std::cmp::Ordering;

use serde_json::{Map, Value};

use super::fieldset::{FieldSet, FieldsV1Error};

/// At most this many `Update` entries are kept; older ones merge into
/// [`ANCIENT_CHANGES`] buckets (upstream's `DefaultMaxUpdateManagers`).
pub const MAX_UPDATE_MANAGERS: usize = 10;

/// The manager that collects the oldest `Update` entries past the cap.
pub const ANCIENT_CHANGES: &str = "ancient-changes";

/// The manager that owns what an object held before its first apply.
pub const BEFORE_FIRST_APPLY: &str = "before-first-apply";

/// Why `metadata.managedFields` could not be read (upstream's messages).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ManagedFieldsError {
    #[error("managedFields must be a list")]
    NotAList,
    #[error("operation must be `Apply` or `Update`")]
    BadOperation { index: usize },
    #[error("apiVersion must not be empty")]
    MissingApiVersion { index: usize },
    #[error("missing fieldsType in managed fields entry {index}")]
    MissingFieldsType { index: usize },
    #[error("invalid fieldsType {found:?} in managed fields entry {index}")]
    BadFieldsType { index: usize, found: String },
    #[error("error decoding set of managed fields entry {index}: {source}")]
    BadFields {
        index: usize,
        #[source]
        source: FieldsV1Error,
    },
}

/// The operation that recorded an entry. Ordered as upstream sorts entries (by name).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Operation {
    Apply,
    Update,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Apply => "Apply",
            Operation::Update => "Update",
        }
    }
}

/// One `managedFields` entry: who owns which fields, through which operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ManagedFieldsEntry {
    pub manager: String,
    pub operation: Operation,
    pub api_version: String,
    /// RFC 3339; `None` when the manager's operations never changed the object.
    pub time: Option<String>,
    /// `""` for the main resource, `"status"` for the status subresource.
    pub subresource: String,
    pub fields: FieldSet,
}

impl ManagedFieldsEntry {
    /// Whether both entries are the same manager: same name, operation and
    /// subresource, and for updates the same API version (an applier is one manager
    /// across versions).
    pub fn same_manager(&self, other: &ManagedFieldsEntry) -> bool {
        self.manager == other.manager
            && self.operation == other.operation
            && self.subresource == other.subresource
            && (self.operation == Operation::Apply || self.api_version == other.api_version)
    }

    /// Upstream's manager identifier: the JSON of the entry without time and fields
    /// (and without apiVersion for appliers). Managers sort by it.
    pub fn identifier(&self) -> String {
        let mut map = Map::new();
        map.insert("manager".into(), Value::String(self.manager.clone()));
        map.insert("operation".into(), self.operation.as_str().into());
        if self.operation == Operation::Update && !self.api_version.is_empty() {
            map.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        }
        if !self.subresource.is_empty() {
            map.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(map).to_string()
    }

    fn time_seconds(&self) -> i64 {
        unix_seconds(self.time.as_deref())
    }

    fn to_value(&self) -> Value {
        let mut map = Map::new();
        if !self.manager.is_empty() {
            map.insert("manager".into(), Value::String(self.manager.clone()));
        }
        map.insert("operation".into(), self.operation.as_str().into());
        map.insert("apiVersion".into(), Value::String(self.api_version.clone()));
        if let Some(time) = &self.time {
            map.insert("time".into(), Value::String(time.clone()));
        }
        map.insert("fieldsType".into(), "FieldsV1".into());
        map.insert("fieldsV1".into(), self.fields.to_fields_v1());
        if !self.subresource.is_empty() {
            map.insert(
                "subresource".into(),
                Value::String(self.subresource.clone()),
            );
        }
        Value::Object(map)
    }

    fn from_value(index: usize, v: &Value) -> Result<ManagedFieldsEntry, ManagedFieldsError> {
        let text = |key: &str| v.get(key).and_then(Value::as_str).unwrap_or_default();
        let operation = match text("operation") {
            "Apply" => Operation::Apply,
            "Update" => Operation::Update,
            _ => return Err(ManagedFieldsError::BadOperation { index }),
        };
        if text("apiVersion").is_empty() {
            return Err(ManagedFieldsError::MissingApiVersion { index });
        }
        match text("fieldsType") {
            "FieldsV1" => {}
            "" => return Err(ManagedFieldsError::MissingFieldsType { index }),
            found => {
                return Err(ManagedFieldsError::BadFieldsType {
                    index,
                    found: found.to_owned(),
                })
            }
        }
        let fields = match v.get("fieldsV1") {
            None | Some(Value::Null) => FieldSet::new(),
            Some(fields) => FieldSet::from_fields_v1(fields)
                .map_err(|source| ManagedFieldsError::BadFields { index, source })?,
        };
        Ok(ManagedFieldsEntry {
            manager: text("manager").to_owned(),
            operation,
            api_version: text("apiVersion").to_owned(),
            time: v.get("time").and_then(Value::as_str).map(str::to_owned),
            subresource: text("subresource").to_owned(),
            fields,
        })
    }
}

/// Seconds since the epoch of an RFC 3339 time; 0 when absent or unreadable, as
/// upstream treats a nil time.
pub fn unix_seconds(time: Option<&str>) -> i64 {
    time.and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .map_or(0, |t| t.timestamp())
}

/// The `managedFields` of an object.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ManagedFields(pub Vec<ManagedFieldsEntry>);

impl ManagedFields {
    /// Reads a `managedFields` list; absent or null is empty. A later entry of the same
    /// manager replaces an earlier one.
    pub fn from_value(v: Option<&Value>) -> Result<ManagedFields, ManagedFieldsError> {
        let items = match v {
            None | Some(Value::Null) => return Ok(ManagedFields::default()),
            Some(Value::Array(items)) => items,
            Some(_) => return Err(ManagedFieldsError::NotAList),
        };
        let mut out = ManagedFields::default();
        for (index, item) in items.iter().enumerate() {
            out.put(ManagedFieldsEntry::from_value(index, item)?);
        }
        Ok(out)
    }

    /// Reads `metadata.managedFields` of `object`.
    pub fn of_object(object: &Value) -> Result<ManagedFields, ManagedFieldsError> {
        ManagedFields::from_value(object.pointer("/metadata/managedFields"))
    }

    /// The entries in upstream's order (operation, time, manager, apiVersion,
    /// subresource) as a `managedFields` list.
    pub fn to_value(&self) -> Value {
        let mut entries: Vec<&ManagedFieldsEntry> = self.0.iter().collect();
        entries.sort_by(|p, q| {
            p.operation
                .cmp(&q.operation)
                .then_with(|| p.time_seconds().cmp(&q.time_seconds()))
                .then_with(|| p.manager.cmp(&q.manager))
                .then_with(|| p.api_version.cmp(&q.api_version))
                .then_with(|| p.subresource.cmp(&q.subresource))
        });
        Value::Array(
            entries
                .into_iter()
                .map(ManagedFieldsEntry::to_value)
                .collect(),
        )
    }

    /// Writes the entries into `metadata.managedFields` of `object`, or removes the
    /// field when there are none (as upstream leaves it nil).
    pub fn write_into(&self, object: &mut Value) {
        let Some(obj) = object.as_object_mut() else {
            return;
        };
        let metadata = obj
            .entry("metadata")
            .or_insert_with(|| Value::Object(Map::new()));
        let Some(metadata) = metadata.as_object_mut() else {
            return;
        };
        if self.0.is_empty() {
            metadata.remove("managedFields");
        } else {
            metadata.insert("managedFields".into(), self.to_value());
        }
    }

    pub(crate) fn find(&self, probe: &ManagedFieldsEntry) -> Option<usize> {
        self.0.iter().position(|e| e.same_manager(probe))
    }

    /// Adds `entry`, replacing the same manager's entry in place.
    pub(crate) fn put(&mut self, entry: ManagedFieldsEntry) {
        match self.find(&entry) {
            Some(i) => self.0[i] = entry,
            None => self.0.push(entry),
        }
    }

    pub(crate) fn drop_empty(&mut self) {
        self.0.retain(|e| !e.fields.is_empty());
    }

    /// Merges the oldest `Update` entries into per-version [`ANCIENT_CHANGES`] entries
    /// until at most `max` remain, as upstream's `capManagersManager`.
    pub(crate) fn cap_updaters(&mut self, max: usize) {
        let mut updaters: Vec<ManagedFieldsEntry> = self
            .0
            .iter()
            .filter(|e| e.operation == Operation::Update)
            .cloned()
            .collect();
        if updaters.len() <= max {
            return;
        }
        updaters.sort_by(|a, b| match a.time_seconds().cmp(&b.time_seconds()) {
            Ordering::Equal => a.identifier().cmp(&b.identifier()),
            other => other,
        });
        let mut first_of_version: Vec<(String, ManagedFieldsEntry)> = Vec::new();
        let mut length = updaters.len();
        for entry in updaters {
            if length <= max {
                break;
            }
            let bucket = ManagedFieldsEntry {
                manager: ANCIENT_CHANGES.into(),
                operation: Operation::Update,
                api_version: entry.api_version.clone(),
                time: None,
                subresource: String::new(),
                fields: FieldSet::new(),
            };
            let Some((_, first)) = first_of_version
                .iter()
                .find(|(v, _)| *v == entry.api_version)
            else {
                first_of_version.push((entry.api_version.clone(), entry));
                continue;
            };
            let bucket_index = match self.find(&bucket) {
                Some(i) => i,
                None => {
                    let i = self
                        .find(first)
                        .expect("first updater of a version is present");
                    let renamed = &mut self.0[i];
                    renamed.manager = ANCIENT_CHANGES.into();
                    renamed.subresource.clear();
                    i
                }
            };
            let Some(i) = self.find(&entry) else { continue };
            let merged = self.0.remove(i);
            let bucket_index = if i < bucket_index {
                bucket_index - 1
            } else {
                bucket_index
            };
            let target = &mut self.0[bucket_index];
            target.fields = merged.fields.union(&target.fields);
            target.api_version = merged.api_version;
            target.time = merged.time;
            length -= 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::api::apply::fieldset::set_of;

    fn update(manager: &str, time: &str, field: &str) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: manager.into(),
            operation: Operation::Update,
            api_version: "v1".into(),
            time: Some(time.into()),
            subresource: String::new(),
            fields: set_of(json!({ format!("f:{field}"): {} })),
        }
    }

    #[test]
    fn real_managed_fields_round_trip_in_upstream_order() {
        // As a v1.30 API server returns a Deployment scaled by `kubectl scale` after a
        // server-side apply.
        let text = r#"[{"manager":"kubectl","operation":"Apply","apiVersion":"apps/v1","time":"2024-05-01T10:00:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:replicas":{},"f:selector":{},"f:template":{"f:metadata":{"f:labels":{"f:app":{}}},"f:spec":{"f:containers":{"k:{\"name\":\"nginx\"}":{".":{},"f:image":{},"f:name":{}}}}}}}},{"manager":"kube-controller-manager","operation":"Update","apiVersion":"apps/v1","time":"2024-05-01T10:00:05Z","fieldsType":"FieldsV1","fieldsV1":{"f:status":{"f:replicas":{}}},"subresource":"status"},{"manager":"kubectl","operation":"Update","apiVersion":"autoscaling/v1","time":"2024-05-01T10:01:00Z","fieldsType":"FieldsV1","fieldsV1":{"f:spec":{"f:replicas":{}}},"subresource":"scale"}]"#;
        let value: Value = serde_json::from_str(text).unwrap();
        let mut fields = ManagedFields::from_value(Some(&value)).unwrap();
        fields.0.reverse();
        assert_eq!(serde_json::to_string(&fields.to_value()).unwrap(), text);
    }

    #[test]
    fn malformed_entries_give_upstream_messages() {
        let bad = |entry: Value| {
            ManagedFields::from_value(Some(&json!([entry])))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(
            bad(json!({"manager": "m", "operation": "Patch", "apiVersion": "v1"})),
            "operation must be `Apply` or `Update`"
        );
        assert_eq!(
            bad(json!({"manager": "m", "operation": "Apply"})),
            "apiVersion must not be empty"
        );
        assert_eq!(
            bad(json!({"manager": "m", "operation": "Apply", "apiVersion": "v1"})),
            "missing fieldsType in managed fields entry 0"
        );
        assert_eq!(
            bad(
                json!({"manager": "m", "operation": "Apply", "apiVersion": "v1", "fieldsType": "FieldsV2"})
            ),
            "invalid fieldsType \"FieldsV2\" in managed fields entry 0"
        );
    }

    #[test]
    fn identifiers_leave_out_the_version_of_appliers() {
        let mut e = update("m", "2024-01-01T00:00:00Z", "a");
        e.subresource = "status".into();
        assert_eq!(
            e.identifier(),
            r#"{"manager":"m","operation":"Update","apiVersion":"v1","subresource":"status"}"#
        );
        e.operation = Operation::Apply;
        assert_eq!(
            e.identifier(),
            r#"{"manager":"m","operation":"Apply","subresource":"status"}"#
        );
    }

    #[test]
    fn oldest_updaters_collapse_into_ancient_changes() {
        let mut fields = ManagedFields(
            (0..12)
                .map(|i| {
                    update(
                        &format!("m{i:02}"),
                        &format!("2024-01-01T00:00:{i:02}Z"),
                        &format!("f{i}"),
                    )
                })
                .collect(),
        );
        fields.cap_updaters(MAX_UPDATE_MANAGERS);
        assert_eq!(fields.0.len(), 10);
        let bucket = &fields.0[fields
            .find(&update(ANCIENT_CHANGES, "2024-01-01T00:00:00Z", "x"))
            .unwrap()];
        assert_eq!(
            bucket.fields,
            set_of(json!({"f:f0": {}, "f:f1": {}, "f:f2": {}}))
        );
        assert_eq!(bucket.time.as_deref(), Some("2024-01-01T00:00:02Z"));
        assert!(fields
            .0
            .iter()
            .all(|e| !["m00", "m01", "m02"].contains(&e.manager.as_str())));
    }
}
