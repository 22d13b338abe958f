//! ReplicationController, ReplicaSet and Deployment rules: created with no replicas in
//! status (their controllers own it), and the `scale` subresource, whose selector is
//! written as the kind spells it (a label map for ReplicationControllers).

use serde_json::{json, Value};

use crate::api::custom::ScalePaths;
use crate::api::defaults;
use crate::api::object;
use crate::api::resources::ResourceDef;
use crate::api::selector;
use crate::api::status::ApiError;
use crate::api::table::{self, Printer};
use crate::api::validation::FieldErrorKind;
use crate::apiserver::registry::generic::field_error;
use crate::apiserver::registry::strategy::{
    schema_of, strategy_for, Context, Strategy, NAME_AND_NAMESPACE,
};
use crate::apiserver::registry::{Registry, WriteOptions, Written};

/// How a kind writes its pod selector.
enum SelectorForm {
    /// `{"app": "web"}` (ReplicationController).
    LabelMap,
    /// `{"matchLabels": …, "matchExpressions": …}` (apps/v1).
    LabelSelector,
}

pub struct WorkloadStrategy {
    selector: SelectorForm,
    printer: &'static Printer,
    selectable_fields: &'static [&'static str],
    schema: fn(&mut schemars::gen::SchemaGenerator) -> Option<String>,
}

/// Field labels of ReplicationControllers and ReplicaSets (Deployments have only the
/// name and namespace, as upstream).
const REPLICATED_FIELDS: &[&str] = &["metadata.name", "metadata.namespace", "status.replicas"];

pub static REPLICATION_CONTROLLER: WorkloadStrategy = WorkloadStrategy {
    selector: SelectorForm::LabelMap,
    printer: &table::REPLICATION_CONTROLLER,
    selectable_fields: REPLICATED_FIELDS,
    schema: schema_of::<k8s_openapi::api::core::v1::ReplicationController>,
};
pub static REPLICA_SET: WorkloadStrategy = WorkloadStrategy {
    selector: SelectorForm::LabelSelector,
    printer: &table::REPLICA_SET,
    selectable_fields: REPLICATED_FIELDS,
    schema: schema_of::<k8s_openapi::api::apps::v1::ReplicaSet>,
};
pub static DEPLOYMENT: WorkloadStrategy = WorkloadStrategy {
    selector: SelectorForm::LabelSelector,
    printer: &table::DEPLOYMENT,
    selectable_fields: NAME_AND_NAMESPACE,
    schema: schema_of::<k8s_openapi::api::apps::v1::Deployment>,
};

impl Strategy for WorkloadStrategy {
    fn tracks_generation(&self) -> bool {
        true
    }

    fn openapi_schema(&self, gen: &mut schemars::gen::SchemaGenerator) -> Option<String> {
        (self.schema)(gen)
    }

    fn printer(&self) -> &'static Printer {
        self.printer
    }

    fn selectable_fields(&self) -> &'static [&'static str] {
        self.selectable_fields
    }

    fn field_value(&self, obj: &Value, field: &str) -> String {
        match field {
            "status.replicas" => selector::int_field_value(obj, field),
            _ => selector::field_value(obj, field),
        }
    }

    fn prepare_for_create(&self, cx: &Context, obj: &mut Value) {
        obj["status"] = json!({"replicas": 0});
        defaults::apply_defaults(cx.def.kind, obj);
    }

    fn scale_selector(&self, obj: &Value) -> String {
        match self.selector {
            SelectorForm::LabelMap => obj["spec"]["selector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            SelectorForm::LabelSelector => {
                crate::api::selector::LabelSelector::from_k8s(&obj["spec"]["selector"])
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            }
        }
    }
}

impl Registry {
    /// The `Scale` view of a replicated resource.
    pub fn scale_of(&self, def: &ResourceDef, obj: &Value) -> Value {
        let paths = scale_paths(def);
        let selector = match paths.label_selector.as_deref() {
            Some(path) => at_path(obj, path).as_str().unwrap_or("").to_string(),
            None if def.custom.is_some() => String::new(),
            None => strategy_for(def).scale_selector(obj),
        };
        let meta = &obj["metadata"];
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": at_path(obj, &paths.spec_replicas).as_i64().unwrap_or(0)},
            "status": {"replicas": at_path(obj, &paths.status_replicas).as_i64().unwrap_or(0), "selector": selector},
        })
    }

    /// Applies a patch to the `Scale` view of the current object and sets the replicas
    /// it asks for (PATCH on the `scale` subresource). As upstream, the patch is applied
    /// again to the newer object when another writer got in between, unless the patch
    /// itself names a resourceVersion.
    pub async fn patch_scale(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        (patch_type, body): (crate::api::patch::PatchType, &[u8]),
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let opts = &WriteOptions {
            scale: true,
            ..opts.clone()
        };
        self.modify(def, ns, name, None, opts, &|obj| {
            let scale = self.scale_of(def, obj);
            let patched = crate::api::patch::apply_patch("Scale", &scale, body, patch_type)
                .map_err(|e| {
                    let code = e.status_code();
                    ApiError::new(
                        code,
                        crate::apiserver::registry::reason_for(code),
                        e.to_string(),
                    )
                })?;
            if patched["metadata"]["resourceVersion"] != scale["metadata"]["resourceVersion"] {
                return Err(ApiError::modified(def, name));
            }
            let replicas = scale_replicas(def, name, &patched)?;
            let mut obj = obj.clone();
            set_path(&mut obj, &scale_paths(def).spec_replicas, json!(replicas));
            Ok(obj)
        })
        .await
    }

    /// Sets `spec.replicas` (a custom resource's `specReplicasPath`) from a `Scale` body
    /// (PUT on the `scale` subresource).
    pub async fn update_scale(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        scale: &Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let replicas = scale_replicas(def, name, scale)?;
        let rv = object::meta_str(scale, "resourceVersion")
            .unwrap_or("")
            .to_string();
        // Admission webhooks see a write of the `scale` subresource.
        let opts = &WriteOptions {
            scale: true,
            ..opts.clone()
        };
        self.modify(def, ns, name, None, opts, &|obj| {
            if !rv.is_empty() && obj["metadata"]["resourceVersion"] != rv.as_str() {
                return Err(ApiError::modified(def, name));
            }
            let mut obj = obj.clone();
            set_path(&mut obj, &scale_paths(def).spec_replicas, json!(replicas));
            Ok(obj)
        })
        .await
    }
}

/// The replica count a `Scale` body asks for (422 when negative).
fn scale_replicas(def: &ResourceDef, name: &str, scale: &Value) -> Result<i64, ApiError> {
    let replicas = scale["spec"]["replicas"].as_i64().unwrap_or(0);
    if replicas < 0 {
        return Err(ApiError::invalid(
            def,
            name,
            &[field_error(
                "spec.replicas",
                FieldErrorKind::Invalid,
                Some(replicas.to_string()),
                "must be greater than or equal to 0",
            )],
        ));
    }
    Ok(replicas)
}

/// Sets the replica count a `Scale` of `obj` shows (`spec.replicas`, or a custom
/// resource's `specReplicasPath`).
pub fn set_scale_replicas(def: &ResourceDef, obj: &mut Value, replicas: Value) {
    set_path(obj, &scale_paths(def).spec_replicas, replicas);
}

/// Where a kind keeps its replica counts: a custom resource's `subresources.scale`,
/// otherwise `spec.replicas`, `status.replicas` and the kind's own selector.
fn scale_paths(def: &ResourceDef) -> ScalePaths {
    def.custom
        .and_then(|c| c.scale.clone())
        .unwrap_or_else(|| ScalePaths {
            spec_replicas: ".spec.replicas".into(),
            status_replicas: ".status.replicas".into(),
            label_selector: None,
        })
}

/// The value at a `.a.b.c` path (`null` when missing).
fn at_path<'a>(obj: &'a Value, path: &str) -> &'a Value {
    ScalePaths::fields(path)
        .into_iter()
        .fold(obj, |v, field| &v[field])
}

/// Sets the value at a `.a.b.c` path, creating the objects on the way.
fn set_path(obj: &mut Value, path: &str, value: Value) {
    let fields = ScalePaths::fields(path);
    let Some((last, parents)) = fields.split_last() else {
        return;
    };
    let mut cur = obj;
    for field in parents {
        if !cur[*field].is_object() {
            cur[*field] = json!({});
        }
        cur = &mut cur[*field];
    }
    cur[*last] = value;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_selectors_are_written_as_label_selector_strings() {
        let rc = json!({"spec": {"selector": {"app": "web", "tier": "fe"}}});
        assert_eq!(
            REPLICATION_CONTROLLER.scale_selector(&rc),
            "app=web,tier=fe"
        );
        let rs = json!({"spec": {"selector": {"matchLabels": {"app": "web"}}}});
        assert_eq!(REPLICA_SET.scale_selector(&rs), "app=web");
    }

    #[test]
    fn replica_counts_select_missing_as_zero() {
        assert_eq!(REPLICA_SET.field_value(&json!({}), "status.replicas"), "0");
        let rc = json!({"status": {"replicas": 3}});
        assert_eq!(
            REPLICATION_CONTROLLER.field_value(&rc, "status.replicas"),
            "3"
        );
    }
}
