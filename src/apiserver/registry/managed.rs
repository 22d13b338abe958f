//! The registry's field manager (upstream's `fieldmanager` around every write): each
//! create, update, patch and status write records its manager's fields in
//! `metadata.managedFields`; server-side apply merges a configuration by field
//! ownership, answers conflicts with 409 and removes what an applier dropped
//! (`api::apply`).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use serde_json::{json, Value};

use super::generic::{check_name, now};
use super::{reason_for, Registry, WriteOptions, Written};
use crate::api::apply::{self, ApplyError, Request, Shape};
use crate::api::nesting;
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;

/// The manager of in-process writes (controllers, scheduler) that name none.
pub const IN_PROCESS_MANAGER: &str = "orc";
/// Longest `fieldManager` upstream accepts.
const MAX_MANAGER_LEN: usize = 128;

/// The merge shapes of the built-in kinds, built once per kind.
#[derive(Default)]
pub struct Shapes {
    built_in: RwLock<HashMap<&'static str, Arc<Shape>>>,
}

impl Shapes {
    fn of(&self, def: &ResourceDef) -> Arc<Shape> {
        if let Some(custom) = def.custom {
            return custom.shape.clone();
        }
        if let Some(shape) = self
            .built_in
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(def.kind)
        {
            return shape.clone();
        }
        let shape = Arc::new(Shape::for_kind(def.kind));
        self.built_in
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(def.kind, shape.clone());
        shape
    }
}

/// Upstream's `ValidatePatchOptions`/`ValidateUpdateOptions` for the field manager:
/// required for apply, at most 128 bytes, `force` only with apply.
pub fn check_options(
    field_manager: Option<&str>,
    force: bool,
    apply: bool,
) -> Result<(), ApiError> {
    let mut causes = Vec::new();
    match field_manager {
        None | Some("") if apply => causes.push((
            "fieldManager",
            "Required value: is required for apply patch".to_string(),
        )),
        Some(m) if m.len() > MAX_MANAGER_LEN => causes.push((
            "fieldManager",
            format!("Too long: may not be more than {MAX_MANAGER_LEN} bytes"),
        )),
        _ => {}
    }
    if force && !apply {
        causes.push((
            "force",
            "Forbidden: may not be specified for non-apply patch".to_string(),
        ));
    }
    if causes.is_empty() {
        return Ok(());
    }
    let message = causes
        .iter()
        .map(|(field, text)| format!("{field}: {text}"))
        .collect::<Vec<_>>()
        .join(", ");
    let mut e = ApiError::new(
        422,
        "Invalid",
        format!("PatchOptions.meta.k8s.io \"\" is invalid: {message}"),
    );
    e.details = Some(json!({
        "group": "meta.k8s.io", "kind": "PatchOptions",
        "causes": causes.iter().map(|(field, text)| json!({
            "reason": "FieldValueInvalid", "message": text, "field": field,
        })).collect::<Vec<_>>(),
    }));
    Err(e)
}

/// The manager a request without `fieldManager` is recorded under: its user agent's
/// first word (`kubectl/v1.32.0 (linux/amd64)` → `kubectl`), as upstream.
pub fn manager_from_user_agent(user_agent: &str) -> String {
    let name = user_agent.split('/').next().unwrap_or("").trim();
    name.chars().take(MAX_MANAGER_LEN).collect()
}

fn manager(opts: &WriteOptions) -> &str {
    match (&opts.field_manager, &opts.requester) {
        (Some(m), _) if !m.is_empty() => m,
        (_, None) => IN_PROCESS_MANAGER,
        _ => apply::UNKNOWN_MANAGER,
    }
}

fn apply_error(e: ApplyError) -> ApiError {
    let code = e.status_code();
    let mut err = ApiError::new(code, reason_for(code), e.to_string());
    if let ApplyError::Conflicts(conflicts) = &e {
        err.details = Some(json!({ "causes": conflicts.causes() }));
    }
    err
}

impl Registry {
    /// Records the fields a non-apply write changes (an `Update` entry of its manager).
    pub(super) fn track_update(
        &self,
        def: &ResourceDef,
        old: Option<&Value>,
        new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Value {
        // Without `--managed-fields all`, a create that is not an apply leaves the object
        // untracked (as objects older than server-side apply upstream): `apply::update`
        // then leaves it so until an apply starts tracking it.
        if opts.fields_managed
            || (old.is_none() && !self.managed_fields_for_all)
            || apply::stays_untracked(old, &new)
        {
            return new;
        }
        let shape = self.shapes.of(def);
        let subresource = subresource.unwrap_or("");
        let reset = apply::reset_fields(def.kind, subresource, def.has_status());
        let (api_version, now) = (def.api_version(), now());
        let req = Request {
            manager: manager(opts),
            api_version: &api_version,
            kind: def.kind,
            subresource,
            now: &now,
            shape: &shape,
            reset_fields: &reset,
        };
        apply::update(old, &new, &req)
    }

    /// Server-side apply of the YAML or JSON configuration `body` to object `name`
    /// (created when missing).
    pub(super) async fn server_side_apply(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: &[u8],
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        check_options(opts.field_manager.as_deref(), opts.force, true)?;
        nesting::check_yaml_depth(body, nesting::MAX_NESTING_DEPTH)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        let mut config: Value = serde_yaml::from_slice(body)
            .map_err(|e| ApiError::bad_request(format!("error decoding YAML: {e}")))?;
        if def.custom.is_none() {
            // Upstream reads the configuration as the typed object, where `cpu: 1` is
            // the quantity "1": compared as stored, not as a number that conflicts.
            crate::api::object::normalize_apply_config(&mut config);
        }
        let shape = self.shapes.of(def);
        let sub = subresource.unwrap_or("");
        let reset = apply::reset_fields(def.kind, sub, def.has_status());
        let (api_version, force) = (def.api_version(), opts.force);
        let managed = WriteOptions {
            fields_managed: true,
            ..opts.clone()
        };
        let apply_to = |live: Option<&Value>| {
            let now = now();
            let req = Request {
                manager: manager(opts),
                api_version: &api_version,
                kind: def.kind,
                subresource: sub,
                now: &now,
                shape: &shape,
                reset_fields: &reset,
            };
            apply::apply(live, &config, force, &req).map_err(apply_error)
        };
        if self.get(def, ns, name).is_err() && subresource.is_none() {
            let obj = apply_to(None)?;
            check_name(&obj, name)?;
            match self.create(def, ns, obj, &managed).await {
                // Created meanwhile by someone else: apply to theirs.
                Err(e) if e.code == 409 && e.reason == "AlreadyExists" => {}
                other => return other,
            }
        }
        self.modify(def, ns, name, subresource, &managed, &|current| {
            apply_to(Some(current))
        })
        .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_manager_options_are_checked_as_upstream() {
        assert!(check_options(Some("kubectl"), true, true).is_ok());
        assert!(check_options(None, false, false).is_ok());
        let e = check_options(None, false, true).unwrap_err();
        assert_eq!(e.code, 422);
        assert_eq!(
            e.message,
            "PatchOptions.meta.k8s.io \"\" is invalid: fieldManager: Required value: is required for apply patch"
        );
        let e = check_options(Some("m"), true, false).unwrap_err();
        assert!(e.message.contains("force: Forbidden"), "{}", e.message);
        let long = "x".repeat(129);
        assert!(check_options(Some(&long), false, false).is_err());
    }

    #[test]
    fn managers_come_from_the_user_agents_first_word() {
        assert_eq!(
            manager_from_user_agent("kubectl/v1.32.0 (linux/amd64) kubernetes/abc"),
            "kubectl"
        );
        assert_eq!(manager_from_user_agent("helm"), "helm");
        assert_eq!(manager_from_user_agent(""), "");
    }
}
