//! Custom resources: what one served version of a CustomResourceDefinition adds to a
//! resource definition (schema, printer columns, scale paths), read from the CRD object,
//! and how its objects print as Table rows (upstream's CRD table convertor).

use std::sync::Arc;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::apply::Shape;
use super::crd::Structural;
use super::jsonpath::JsonPath;
use super::table::{human_duration, RowPrinter};

/// The `Age` column upstream serves for a version without printer columns.
const DEFAULT_AGE_DESCRIPTION: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const NAME_DESCRIPTION: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";

/// One served version of a CustomResourceDefinition.
#[derive(Debug)]
pub struct CustomResource {
    /// The CRD's `metadata.name` (`<plural>.<group>`).
    pub crd_name: String,
    /// The version objects are stored in (`spec.versions[].storage`).
    pub storage_version: String,
    /// `openAPIV3Schema` of this version, if it has one.
    pub schema: Option<Value>,
    /// The same schema, parsed (rules compiled) for validation, defaulting and pruning.
    pub structural: Option<Arc<Structural>>,
    /// How its objects merge under server-side apply (list types, map types).
    pub shape: Arc<Shape>,
    /// `spec.names.listKind`.
    pub list_kind: String,
    pub columns: Vec<PrinterColumn>,
    /// The scale subresource's paths, when the version has one.
    pub scale: Option<ScalePaths>,
    /// `deprecated` and its `deprecationWarning`.
    pub deprecation_warning: Option<String>,
    /// The CRD is being deleted: its objects are going, and no new ones are created.
    pub terminating: bool,
    /// `conversion.strategy: Webhook`: objects change version through this webhook
    /// (`None`: only `apiVersion` changes).
    pub conversion: Option<Arc<super::crd::conversion::Webhook>>,
}

/// One `additionalPrinterColumns` entry.
#[derive(Debug)]
pub struct PrinterColumn {
    pub name: String,
    /// `integer`, `number`, `string`, `boolean` or `date`.
    pub type_: String,
    pub format: String,
    pub description: String,
    pub priority: i64,
    pub json_path: String,
    path: Option<JsonPath>,
}

/// `subresources.scale`: where the replica counts and the selector live.
#[derive(Debug, Clone)]
pub struct ScalePaths {
    /// `.spec.replicas`-style path to the desired replicas.
    pub spec_replicas: String,
    pub status_replicas: String,
    pub label_selector: Option<String>,
}

impl ScalePaths {
    /// The path's field names (`.spec.replicas` → `["spec", "replicas"]`).
    pub fn fields(path: &str) -> Vec<&str> {
        path.trim_start_matches('.')
            .split('.')
            .filter(|s| !s.is_empty())
            .collect()
    }
}

/// The version entry `version` of a CRD object, if it has one.
pub fn version_entry<'a>(crd: &'a Value, version: &str) -> Option<&'a Value> {
    crd["spec"]["versions"]
        .as_array()?
        .iter()
        .find(|v| v["name"] == version)
}

impl CustomResource {
    /// The custom resource of version `version` of `crd` (a stored, valid CRD).
    pub fn from_crd(crd: &Value, version: &str) -> Option<CustomResource> {
        let spec = &crd["spec"];
        let entry = version_entry(crd, version)?;
        let storage_version = spec["versions"]
            .as_array()?
            .iter()
            .find(|v| v["storage"] == true)
            .and_then(|v| v["name"].as_str())
            .unwrap_or(version)
            .to_string();
        let schema = entry["schema"]["openAPIV3Schema"]
            .is_object()
            .then(|| entry["schema"]["openAPIV3Schema"].clone());
        let mut columns: Vec<PrinterColumn> = entry["additionalPrinterColumns"]
            .as_array()
            .map(|cols| cols.iter().filter_map(PrinterColumn::from_json).collect())
            .unwrap_or_default();
        if columns.is_empty() {
            columns.push(PrinterColumn::new(
                "Age",
                "date",
                "",
                DEFAULT_AGE_DESCRIPTION,
                0,
                ".metadata.creationTimestamp",
            ));
        }
        let scale_spec = &entry["subresources"]["scale"];
        let scale = scale_spec.is_object().then(|| ScalePaths {
            spec_replicas: scale_spec["specReplicasPath"].as_str().unwrap_or("").into(),
            status_replicas: scale_spec["statusReplicasPath"]
                .as_str()
                .unwrap_or("")
                .into(),
            label_selector: scale_spec["labelSelectorPath"].as_str().map(String::from),
        });
        let deprecation_warning = (entry["deprecated"] == true).then(|| {
            entry["deprecationWarning"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| {
                    format!(
                        "{}/{version} {} is deprecated",
                        spec["group"].as_str().unwrap_or(""),
                        spec["names"]["kind"].as_str().unwrap_or("")
                    )
                })
        });
        let structural = schema
            .as_ref()
            .and_then(|s| Structural::from_json(s).ok())
            .map(Arc::new);
        let shape = Arc::new(match &schema {
            Some(s) => Shape::from_openapi_v3(s),
            None => Shape::deduced(),
        });
        Some(CustomResource {
            structural,
            shape,
            crd_name: crd["metadata"]["name"].as_str().unwrap_or("").to_string(),
            storage_version,
            schema,
            list_kind: spec["names"]["listKind"]
                .as_str()
                .map(String::from)
                .unwrap_or_else(|| format!("{}List", spec["names"]["kind"].as_str().unwrap_or(""))),
            columns,
            scale,
            deprecation_warning,
            terminating: !crd["metadata"]["deletionTimestamp"].is_null(),
            conversion: super::crd::conversion::Webhook::of_crd(crd).map(Arc::new),
        })
    }
}

impl PrinterColumn {
    fn new(
        name: &str,
        type_: &str,
        format: &str,
        description: &str,
        priority: i64,
        json_path: &str,
    ) -> PrinterColumn {
        PrinterColumn {
            name: name.into(),
            type_: type_.into(),
            format: format.into(),
            description: description.into(),
            priority,
            json_path: json_path.into(),
            path: JsonPath::parse(json_path).ok(),
        }
    }

    fn from_json(col: &Value) -> Option<PrinterColumn> {
        let json_path = col["jsonPath"].as_str()?;
        let description = match col["description"].as_str() {
            Some(d) if !d.is_empty() => d.to_string(),
            _ => format!("Custom resource definition column (in JSONPath format): {json_path}"),
        };
        Some(PrinterColumn::new(
            col["name"].as_str()?,
            col["type"].as_str().unwrap_or("string"),
            col["format"].as_str().unwrap_or(""),
            &description,
            col["priority"].as_i64().unwrap_or(0),
            json_path,
        ))
    }

    /// The cell of this column for `obj` (upstream `cellForJSONValue`).
    fn cell(&self, obj: &Value, now: DateTime<Utc>) -> Value {
        let Some(value) = self.path.as_ref().and_then(|p| p.first(obj)) else {
            return Value::Null;
        };
        match (self.type_.as_str(), value) {
            (_, Value::Null) => Value::Null,
            ("integer", Value::Number(n)) => n
                .as_i64()
                .map(Value::from)
                .or_else(|| n.as_f64().map(|f| json!(f as i64)))
                .unwrap_or(Value::Null),
            ("number", Value::Number(n)) => n.as_f64().map(Value::from).unwrap_or(Value::Null),
            ("boolean", Value::Bool(b)) => json!(b),
            ("string", Value::String(s)) => json!(s),
            ("string", other) => json!(other.to_string()),
            ("date", Value::String(s)) => match DateTime::parse_from_rfc3339(s) {
                Ok(t) => json!(human_duration(now - t.with_timezone(&Utc))),
                Err(_) => json!("<invalid>"),
            },
            _ => Value::Null,
        }
    }
}

impl RowPrinter for CustomResource {
    fn column_definitions(&self) -> Vec<Value> {
        let mut out = vec![json!({
            "name": "Name", "type": "string", "format": "name",
            "description": NAME_DESCRIPTION, "priority": 0,
        })];
        out.extend(self.columns.iter().map(|c| {
            json!({
                "name": c.name, "type": c.type_, "format": c.format,
                "description": c.description, "priority": c.priority,
            })
        }));
        out
    }

    fn row(&self, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
        let mut out = vec![obj["metadata"]["name"].clone()];
        out.extend(self.columns.iter().map(|c| c.cell(obj, now)));
        out
    }

    fn conditions(&self, _obj: &Value) -> Option<Value> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crd() -> Value {
        json!({
            "metadata": {"name": "crontabs.stable.example.com"},
            "spec": {
                "group": "stable.example.com",
                "names": {"kind": "CronTab", "plural": "crontabs"},
                "versions": [
                    {"name": "v1beta1", "served": true, "storage": false, "deprecated": true,
                     "schema": {"openAPIV3Schema": {"type": "object"}}},
                    {"name": "v1", "served": true, "storage": true,
                     "schema": {"openAPIV3Schema": {"type": "object"}},
                     "subresources": {"status": {}, "scale": {
                         "specReplicasPath": ".spec.replicas",
                         "statusReplicasPath": ".status.replicas",
                         "labelSelectorPath": ".status.selector"}},
                     "additionalPrinterColumns": [
                         {"name": "Spec", "type": "string", "jsonPath": ".spec.cronSpec"},
                         {"name": "Replicas", "type": "integer", "jsonPath": ".spec.replicas"},
                         {"name": "Ready", "type": "string", "priority": 1,
                          "jsonPath": ".status.conditions[?(@.type==\"Ready\")].status"},
                         {"name": "Age", "type": "date", "jsonPath": ".metadata.creationTimestamp"}]}
                ]
            }
        })
    }

    #[test]
    fn a_version_knows_its_storage_version_scale_paths_and_list_kind() {
        let v1 = CustomResource::from_crd(&crd(), "v1").unwrap();
        assert_eq!(v1.storage_version, "v1");
        assert_eq!(v1.list_kind, "CronTabList");
        let scale = v1.scale.unwrap();
        assert_eq!(
            ScalePaths::fields(&scale.spec_replicas),
            ["spec", "replicas"]
        );
        assert_eq!(scale.label_selector.as_deref(), Some(".status.selector"));
        let beta = CustomResource::from_crd(&crd(), "v1beta1").unwrap();
        assert_eq!(beta.storage_version, "v1");
        assert_eq!(
            beta.deprecation_warning.as_deref(),
            Some("stable.example.com/v1beta1 CronTab is deprecated")
        );
        assert!(CustomResource::from_crd(&crd(), "v2").is_none());
    }

    #[test]
    fn printer_columns_print_typed_cells_and_missing_values_as_null() {
        let v1 = CustomResource::from_crd(&crd(), "v1").unwrap();
        let names: Vec<Value> = v1
            .column_definitions()
            .iter()
            .map(|c| c["name"].clone())
            .collect();
        assert_eq!(names, ["Name", "Spec", "Replicas", "Ready", "Age"]);
        let now = Utc::now();
        let created = (now - chrono::Duration::seconds(90)).to_rfc3339();
        let obj = json!({
            "metadata": {"name": "tab", "creationTimestamp": created},
            "spec": {"cronSpec": "* * * * */5", "replicas": 3.0},
            "status": {"conditions": [{"type": "Synced", "status": "False"},
                                      {"type": "Ready", "status": "True"}]}
        });
        assert_eq!(
            v1.row(&obj, now),
            [
                json!("tab"),
                json!("* * * * */5"),
                json!(3),
                json!("True"),
                json!("90s")
            ]
        );
        let bare = json!({"metadata": {"name": "bare"}});
        assert_eq!(
            v1.row(&bare, now),
            [
                json!("bare"),
                Value::Null,
                Value::Null,
                Value::Null,
                Value::Null
            ]
        );
    }

    #[test]
    fn a_version_without_columns_prints_name_and_age() {
        let beta = CustomResource::from_crd(&crd(), "v1beta1").unwrap();
        let cols = beta.column_definitions();
        assert_eq!(cols.len(), 2);
        assert_eq!(cols[1]["name"], "Age");
        assert_eq!(cols[1]["type"], "date");
    }
}
