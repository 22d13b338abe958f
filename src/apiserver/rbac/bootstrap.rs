//! The bootstrap policy (`embedded/rbac/bootstrap.yaml`: upstream's default ClusterRoles
//! and ClusterRoleBindings), reconciled at every server start as upstream's
//! `reconcile-policy`: missing objects are created; existing ones annotated
//! `rbac.authorization.kubernetes.io/autoupdate: "true"` get missing rules, aggregation
//! selectors, labels, annotations and subjects added (never removed), and a binding whose
//! roleRef differs is recreated; objects annotated `"false"` are left alone.

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde::Deserialize;
use serde_json::{json, Value};

use super::rules::{compact, uncovered};
use crate::api::object;
use crate::api::resources::{by_plural, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::registry::{DeleteOptions, Registry, WriteOptions};

/// The policy compiled into the binary.
pub const POLICY: &str = crate::embedded::RBAC_BOOTSTRAP_POLICY;
const AUTOUPDATE: &str = "rbac.authorization.kubernetes.io/autoupdate";

#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    #[error("parse the bootstrap RBAC policy")]
    Parse(#[source] serde_yaml::Error),
    #[error("bootstrap RBAC object {kind} {name:?} is not one orc reconciles")]
    UnknownKind { kind: String, name: String },
    #[error("reconcile bootstrap {kind} {name:?}")]
    Write {
        kind: String,
        name: String,
        #[source]
        source: Box<ApiError>,
    },
}

/// The objects of a multi-document policy.
pub fn parse(policy: &str) -> Result<Vec<Value>, BootstrapError> {
    serde_yaml::Deserializer::from_str(policy)
        .map(|doc| Value::deserialize(doc).map_err(BootstrapError::Parse))
        .filter(|v| !matches!(v, Ok(Value::Null)))
        .collect()
}

fn def_of(obj: &Value) -> Option<&'static ResourceDef> {
    let plural = match obj["kind"].as_str()? {
        "ClusterRole" => "clusterroles",
        "ClusterRoleBinding" => "clusterrolebindings",
        _ => return None,
    };
    by_plural("rbac.authorization.k8s.io", "v1", plural)
}

/// What reconciling `existing` toward `expected` gives: `None` when nothing is missing.
pub fn reconciled(existing: &Value, expected: &Value) -> Option<Value> {
    let mut out = existing.clone();
    for field in ["labels", "annotations"] {
        if let Some(wanted) = expected["metadata"][field].as_object() {
            let meta = &mut out["metadata"];
            if !meta[field].is_object() {
                meta[field] = json!({});
            }
            for (k, v) in wanted {
                if meta[field].get(k).is_none() {
                    meta[field][k] = v.clone();
                }
            }
        }
    }
    match expected["kind"].as_str() {
        Some("ClusterRole") => {
            let rules = |v: &Value| -> Vec<PolicyRule> { super::index::parse_rules(v) };
            let missing = compact(uncovered(&rules(existing), &rules(expected)));
            if !missing.is_empty() {
                let mut all: Vec<Value> = existing["rules"].as_array().cloned().unwrap_or_default();
                all.extend(missing.iter().filter_map(|r| serde_json::to_value(r).ok()));
                out["rules"] = Value::Array(all);
            }
            if let Some(selectors) = expected["aggregationRule"]["clusterRoleSelectors"].as_array()
            {
                let mut have = existing["aggregationRule"]["clusterRoleSelectors"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for s in selectors {
                    if !have.contains(s) {
                        have.push(s.clone());
                    }
                }
                out["aggregationRule"] = json!({"clusterRoleSelectors": have});
            }
        }
        Some("ClusterRoleBinding") => {
            let mut have = existing["subjects"].as_array().cloned().unwrap_or_default();
            for s in expected["subjects"].as_array().into_iter().flatten() {
                if !have.contains(s) {
                    have.push(s.clone());
                }
            }
            out["subjects"] = Value::Array(have);
        }
        _ => {}
    }
    (out != *existing).then_some(out)
}

/// Reconciles every object of `policy` in `registry` (as the system: no escalation
/// checks).
pub async fn reconcile(registry: &Registry, policy: &str) -> Result<(), BootstrapError> {
    let opts = WriteOptions::default();
    for expected in parse(policy)? {
        let name = object::name(&expected).to_string();
        let kind = expected["kind"].as_str().unwrap_or("").to_string();
        let Some(def) = def_of(&expected) else {
            return Err(BootstrapError::UnknownKind { kind, name });
        };
        let write_error = |source| BootstrapError::Write {
            kind: kind.clone(),
            name: name.clone(),
            source: Box::new(source),
        };
        let existing = match registry.get(def, None, &name) {
            Ok(kv) => (*kv.value).clone(),
            Err(e) if e.code == 404 => {
                registry
                    .create(def, None, expected.clone(), &opts)
                    .await
                    .map_err(write_error)?;
                tracing::info!(%kind, %name, "bootstrap rbac object created");
                continue;
            }
            Err(e) => return Err(write_error(e)),
        };
        if existing["metadata"]["annotations"][AUTOUPDATE].as_str() != Some("true") {
            continue;
        }
        if def.kind == "ClusterRoleBinding" && existing["roleRef"] != expected["roleRef"] {
            let delete = DeleteOptions {
                precondition_uid: object::uid(&existing).map(String::from),
                ..Default::default()
            };
            registry
                .delete(def, None, &name, &delete)
                .await
                .map_err(write_error)?;
            registry
                .create(def, None, expected.clone(), &opts)
                .await
                .map_err(write_error)?;
            tracing::info!(%kind, %name, "bootstrap rbac binding recreated for its roleRef");
            continue;
        }
        if reconciled(&existing, &expected).is_none() {
            continue;
        }
        registry
            .modify(def, None, &name, None, &opts, &|current| {
                Ok(reconciled(current, &expected).unwrap_or_else(|| current.clone()))
            })
            .await
            .map_err(write_error)?;
        tracing::info!(%kind, %name, "bootstrap rbac object updated with missing permissions");
    }
    Ok(())
}
