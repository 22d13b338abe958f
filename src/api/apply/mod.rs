//! Server-side apply without I/O: merging applied configurations, tracking field
//! ownership in `metadata.managedFields`, conflicts, and removal of dropped fields,
//! following sigs.k8s.io/structured-merge-diff v4 and k8s.io/apimachinery's
//! `managedfields/internal`.
//!
//! Two entry points, both pure functions on JSON objects:
//! - [`apply`] for `PATCH` with `application/apply-patch+yaml`: merges the configuration
//!   into the live object by the kind's [`Shape`], records the applier's fields
//!   (operation `Apply`), removes fields it applied before and dropped now unless another
//!   manager owns them, and fails with [`ApplyError::Conflicts`] when it would change
//!   another manager's fields (unless forced).
//! - [`update`] for every other write (create, update, patch, status): records the
//!   fields the write changed (operation `Update`); updates never conflict.
//!
//! The caller runs defaulting, the strategy's status reset and validation on the result,
//! as upstream's registry does after its field manager.

mod conflict;
mod fieldset;
mod json;
mod lastapplied;
mod managers;
mod shape;
mod typed;

#[cfg(test)]
mod tests;

use serde_json::{json, Value};

pub use conflict::{Conflict, Conflicts};
pub use fieldset::{FieldSet, FieldsV1Error, Path, PathElement};
pub use lastapplied::{KUBECTL_MANAGER, LAST_APPLIED_ANNOTATION};
pub use managers::{
    ManagedFields, ManagedFieldsEntry, ManagedFieldsError, Operation, ANCIENT_CHANGES,
    BEFORE_FIRST_APPLY, MAX_UPDATE_MANAGERS,
};
pub use shape::{ListType, Position, Shape};
pub use typed::{ValidationError, ValidationErrors};

use lastapplied::{allowed_conflicts, is_reset, update_annotation, without_managed_fields};
use typed::{compare, ensure_named_fields, merge, remove, to_field_set, validate};

/// The manager recorded when a request names none.
pub const UNKNOWN_MANAGER: &str = "unknown";

/// One write, as the field manager sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request<'a> {
    /// `fieldManager` of the request (or the user agent's first word, as upstream).
    pub manager: &'a str,
    /// Group/version of the endpoint, e.g. `apps/v1`.
    pub api_version: &'a str,
    /// Kind of the endpoint's objects; an applied configuration must match it.
    pub kind: &'a str,
    /// `""` for the main resource, `"status"` for the status subresource.
    pub subresource: &'a str,
    /// The time recorded in changed entries, RFC 3339 (`2024-05-01T10:00:00Z`).
    pub now: &'a str,
    pub shape: &'a Shape,
    /// Fields this endpoint does not let a write change (the strategy's
    /// `GetResetFields`); they are never owned. See [`reset_fields`].
    pub reset_fields: &'a FieldSet,
}

impl Request<'_> {
    fn manager_name(&self) -> &str {
        if self.manager.is_empty() {
            UNKNOWN_MANAGER
        } else {
            self.manager
        }
    }

    fn entry(&self, operation: Operation, manager: &str) -> ManagedFieldsEntry {
        ManagedFieldsEntry {
            manager: manager.to_owned(),
            operation,
            api_version: self.api_version.to_owned(),
            time: None,
            subresource: self.subresource.to_owned(),
            fields: FieldSet::new(),
        }
    }
}

/// The reset fields of upstream's strategies for orc's kinds: the main resource of a
/// kind with a status subresource cannot change `status`; the status subresource
/// cannot change `spec` (nor, for Pods, `metadata.deletionTimestamp` and
/// `metadata.ownerReferences`; for Deployments, `metadata.labels`).
pub fn reset_fields(kind: &str, subresource: &str, has_status_subresource: bool) -> FieldSet {
    let paths: &[&[&str]] = match (subresource, kind) {
        ("", _) if has_status_subresource => &[&["status"]],
        ("", _) => &[],
        ("status", "Pod") => &[
            &["spec"],
            &["metadata", "deletionTimestamp"],
            &["metadata", "ownerReferences"],
        ],
        ("status", "Deployment") => &[&["spec"], &["metadata", "labels"]],
        ("status", _) => &[&["spec"]],
        _ => &[],
    };
    FieldSet::from_paths(&paths.iter().map(|p| Path::fields(p)).collect::<Vec<_>>())
}

/// Fields no manager ever owns (upstream's `stripMetaManager`): type meta, the
/// `metadata` node itself and the server-set parts of metadata.
fn stripped_fields() -> FieldSet {
    let mut paths = vec![
        Path::fields(&["apiVersion"]),
        Path::fields(&["kind"]),
        Path::fields(&["metadata"]),
    ];
    for field in [
        "name",
        "namespace",
        "creationTimestamp",
        "selfLink",
        "uid",
        "clusterName",
        "generation",
        "managedFields",
        "resourceVersion",
    ] {
        paths.push(Path::fields(&["metadata", field]));
    }
    FieldSet::from_paths(&paths)
}

/// Why an apply was refused. [`ApplyError::status_code`] gives upstream's HTTP status.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApplyError {
    #[error("apply configuration must be an object, got {found}")]
    NotAnObject { found: String },
    #[error("invalid object type: {gvk}")]
    MissingApiVersion { gvk: String },
    #[error("invalid object type: {gvk}")]
    MissingKind { gvk: String },
    /// apiVersion or kind differ from the endpoint's.
    #[error("invalid object type: {gvk}")]
    WrongObjectType { gvk: String },
    #[error("metadata.name: Required value: name is required in an apply configuration")]
    MissingName,
    #[error("metadata.managedFields must be nil")]
    ManagedFieldsInConfig,
    /// The configuration does not fit the kind's shape (a list-map item without key
    /// fields, duplicate keys, a set item that is an object).
    #[error("failed to create typed patch object ({object}): {errors}")]
    InvalidConfig {
        object: String,
        errors: ValidationErrors,
    },
    /// The stored object does not fit the kind's shape.
    #[error("failed to create typed live object ({object}): {errors}")]
    InvalidLive {
        object: String,
        errors: ValidationErrors,
    },
    #[error("failed to decode managed fields: {0}")]
    DecodeManagedFields(#[source] ManagedFieldsError),
    /// Fields owned by other managers would change; retry with force to take them.
    #[error("{0}")]
    Conflicts(Conflicts),
}

impl ApplyError {
    /// The HTTP status: 409 for conflicts, 400 for a configuration that does not fit
    /// (upstream answers 500 there; a client's bad input is a 4xx here), 500 for a
    /// stored object or stored managed fields that cannot be read.
    pub fn status_code(&self) -> u16 {
        match self {
            ApplyError::Conflicts(_) => 409,
            ApplyError::InvalidLive { .. } | ApplyError::DecodeManagedFields(_) => 500,
            _ => 400,
        }
    }
}

/// Upstream's `GroupVersionKind.String()`: `apps/v1, Kind=Deployment`, `/v1, Kind=Pod`.
fn gvk_text(api_version: &str, kind: &str) -> String {
    let (group, version) = api_version.split_once('/').unwrap_or(("", api_version));
    format!("{group}/{version}, Kind={kind}")
}

/// `namespace/name; gvk`, as upstream names objects in typed-conversion errors.
fn object_text(object: &Value) -> String {
    let text = |p: &str| {
        object
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    format!(
        "{}/{}; {}",
        text("/metadata/namespace"),
        text("/metadata/name"),
        gvk_text(text("/apiVersion"), text("/kind"))
    )
}

fn check_config(config: &Value, req: &Request) -> Result<(), ApplyError> {
    if !config.is_object() {
        return Err(ApplyError::NotAnObject {
            found: json::go_json(config),
        });
    }
    let text = |p: &str| {
        config
            .pointer(p)
            .and_then(Value::as_str)
            .unwrap_or_default()
    };
    let (api_version, kind) = (text("/apiVersion"), text("/kind"));
    let gvk = gvk_text(api_version, kind);
    if api_version.is_empty() {
        return Err(ApplyError::MissingApiVersion { gvk });
    }
    if kind.is_empty() {
        return Err(ApplyError::MissingKind { gvk });
    }
    if api_version != req.api_version || kind != req.kind {
        return Err(ApplyError::WrongObjectType { gvk });
    }
    if text("/metadata/name").is_empty() {
        return Err(ApplyError::MissingName);
    }
    if config
        .pointer("/metadata/managedFields")
        .is_some_and(|v| !v.is_null())
    {
        return Err(ApplyError::ManagedFieldsInConfig);
    }
    Ok(())
}

/// Server-side apply: merges `config` (the applied configuration, with apiVersion, kind
/// and metadata.name) into `live` (`None` creates the object) and returns the new object
/// with its `metadata.managedFields`. With `force`, fields owned by others move to the
/// applier instead of conflicting.
pub fn apply(
    live: Option<&Value>,
    config: &Value,
    force: bool,
    req: &Request,
) -> Result<Value, ApplyError> {
    check_config(config, req)?;
    let (live_object, mut managers) = match live {
        Some(live) => (
            without_managed_fields(live),
            ManagedFields::of_object(live).map_err(ApplyError::DecodeManagedFields)?,
        ),
        None => (json!({}), ManagedFields::default()),
    };
    validate(&live_object, &req.shape.root, true).map_err(|errors| ApplyError::InvalidLive {
        object: object_text(&live_object),
        errors,
    })?;
    if live.is_some() && managers.0.is_empty() {
        // Upstream's skipNonAppliedManager: what the object held before its first apply
        // belongs to a manager of its own, so the applier does not take it silently.
        record_update(
            &req.shape.baseline,
            &live_object,
            &mut managers,
            BEFORE_FIRST_APPLY,
            req,
        );
        managers.cap_updaters(MAX_UPDATE_MANAGERS);
    }
    let (mut object, managers) = match apply_merge(&live_object, config, &managers, force, req) {
        Err(ApplyError::Conflicts(conflicts)) if req.manager == KUBECTL_MANAGER => {
            let allowed = live.and_then(|live| allowed_conflicts(live, &live_object, req));
            let Some(allowed) = allowed else {
                return Err(ApplyError::Conflicts(conflicts));
            };
            let remaining: Vec<Conflict> = conflicts
                .0
                .into_iter()
                .filter(|c| !allowed.has(&c.path.0))
                .collect();
            if !remaining.is_empty() {
                return Err(ApplyError::Conflicts(Conflicts(remaining)));
            }
            apply_merge(&live_object, config, &managers, true, req)?
        }
        result => result?,
    };
    if req.manager == KUBECTL_MANAGER {
        update_annotation(&mut object, config);
    }
    managers.write_into(&mut object);
    Ok(object)
}

/// The core of [`apply`] (upstream's `Updater.Apply` with the strip-meta and time
/// bookkeeping around it).
fn apply_merge(
    live: &Value,
    config: &Value,
    managers: &ManagedFields,
    force: bool,
    req: &Request,
) -> Result<(Value, ManagedFields), ApplyError> {
    let node = &req.shape.root;
    validate(config, node, false).map_err(|errors| ApplyError::InvalidConfig {
        object: object_text(config),
        errors,
    })?;
    let mut managers = managers.clone();
    let mut merged = merge(live, config, node);

    let mut applier = req.entry(Operation::Apply, req.manager_name());
    let previous = managers.find(&applier).map(|i| managers.0[i].clone());
    applier.time = previous.as_ref().and_then(|p| p.time.clone());
    applier.fields = to_field_set(config, node).recursive_difference(req.reset_fields);
    managers.put(applier.clone());

    if let Some(last) = previous.filter(|p| !p.fields.is_empty()) {
        let owned = managers
            .0
            .iter()
            .fold(FieldSet::new(), |acc, e| acc.union(&e.fields));
        let dropped =
            ensure_named_fields(&last.fields, node).difference(&ensure_named_fields(&owned, node));
        if !dropped.is_empty() {
            merged = remove(&merged, &dropped, node);
        }
    }

    let mut cmp = compare(live, &merged, node);
    cmp.exclude(req.reset_fields);
    let changed = cmp.changed();
    let mut conflicts = Vec::new();
    for entry in managers.0.iter().filter(|e| !e.same_manager(&applier)) {
        for path in entry.fields.intersection(&changed).paths() {
            conflicts.push(Conflict::new(entry, path));
        }
    }
    if !force && !conflicts.is_empty() {
        return Err(ApplyError::Conflicts(Conflicts::sorted(conflicts)));
    }
    let strip = stripped_fields();
    let object_changed = !fieldset::values_equal(live, &merged);
    for entry in managers.0.iter_mut() {
        if entry.same_manager(&applier) {
            entry.fields = entry.fields.difference(&strip);
            if object_changed {
                entry.time = Some(req.now.to_owned());
            }
        } else {
            entry.fields = entry.fields.difference(&changed).difference(&cmp.removed);
        }
    }
    managers.drop_empty();
    Ok((merged, managers))
}

/// Whether [`update`] would return `new` unchanged without looking at it: an update
/// (`old` has a uid) of an untracked object (no managed fields) that sends none. Most
/// writes of a cluster that does not use server-side apply are these (the scheduler's
/// and the kubelet's status writes), so checking this first spares [`update`]'s copy of
/// the object and the shape's reset fields.
pub fn stays_untracked(old: Option<&Value>, new: &Value) -> bool {
    let untracked = |v: &Value| match v.pointer("/metadata/managedFields") {
        None | Some(Value::Null) => true,
        Some(Value::Array(items)) => items.is_empty(),
        Some(_) => false,
    };
    let has_uid = |v: &Value| {
        v.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .is_some_and(|uid| !uid.is_empty())
    };
    old.is_some_and(|old| has_uid(old) && untracked(old))
        && new.pointer("/metadata/managedFields").is_none()
}

/// Records a non-apply write: `new` replaced `old` (`None` for a create). Returns `new`
/// with `metadata.managedFields` updated; never fails (a value that does not fit the
/// shape keeps the old object's managed fields, as upstream's `UpdateNoErrors`).
///
/// As upstream, `managedFields` sent with the write are honoured on the main resource
/// (`[]` clears them); an object that has none outside a create stays untracked until
/// its first apply.
pub fn update(old: Option<&Value>, new: &Value, req: &Request) -> Value {
    let decode_or_empty = |v: Option<&Value>| {
        v.and_then(|v| ManagedFields::of_object(v).ok())
            .unwrap_or_default()
    };
    let sent = new.pointer("/metadata/managedFields");
    let mut managers = if !req.subresource.is_empty() {
        decode_or_empty(old)
    } else if is_reset(sent) {
        ManagedFields::default()
    } else {
        match ManagedFields::of_object(new) {
            Ok(m) if !m.0.is_empty() => m,
            _ => decode_or_empty(old),
        }
    };
    let mut object = without_managed_fields(new);
    let is_create = old.is_none_or(|o| {
        o.pointer("/metadata/uid")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
    });
    if managers.0.is_empty() && !is_create {
        return object;
    }
    let old_object = old.map_or_else(|| req.shape.baseline.clone(), without_managed_fields);
    let node = &req.shape.root;
    if validate(&old_object, node, true).is_err() || validate(&object, node, true).is_err() {
        if let Some(old) = old {
            decode_or_empty(Some(old)).write_into(&mut object);
        }
        return object;
    }
    record_update(&old_object, &object, &mut managers, req.manager_name(), req);
    managers.cap_updaters(MAX_UPDATE_MANAGERS);
    managers.write_into(&mut object);
    object
}

/// Upstream's `Updater.Update` under `managedFieldsUpdater`: every manager loses what
/// the write changed or removed, and `manager`'s `Update` entry gains what it changed.
fn record_update(
    old: &Value,
    new: &Value,
    managers: &mut ManagedFields,
    manager: &str,
    req: &Request,
) {
    let mut cmp = compare(old, new, &req.shape.root);
    cmp.exclude(req.reset_fields);
    let changed = cmp.changed();
    for entry in managers.0.iter_mut() {
        entry.fields = entry.fields.difference(&changed).difference(&cmp.removed);
    }
    managers.drop_empty();
    let current = changed.difference(&stripped_fields());
    if current.is_empty() {
        return;
    }
    let mut entry = req.entry(Operation::Update, manager);
    entry.time = Some(req.now.to_owned());
    entry.fields = match managers.find(&entry) {
        Some(i) => current.union(&managers.0[i].fields),
        None => current,
    };
    managers.put(entry);
}
