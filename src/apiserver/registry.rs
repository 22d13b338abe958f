//! Resource semantics shared by the HTTP handlers and the in-process controllers:
//! metadata bookkeeping, defaulting, validation, optimistic concurrency, graceful
//! deletion, finalizers and per-kind rules (Service IPs/ports, pod binding, scale).

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{json, Value};

use super::allocator::{AllocError, Allocators};
use super::heartbeats::{self, Heartbeats};
use crate::api::object::{self, meta_mut};
use crate::api::patch::{self, PatchType};
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::validation::{FieldError, FieldErrorKind};
use crate::api::{defaults, validation};
use crate::store::{KeyValue, ListPage, Revision, Store, StoreError, Watcher};

/// How unknown fields in a request body are treated (`fieldValidation`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FieldValidation {
    Ignore,
    #[default]
    Warn,
    Strict,
}

impl FieldValidation {
    pub fn parse(s: &str) -> Result<FieldValidation, ApiError> {
        match s {
            "" | "Warn" => Ok(FieldValidation::Warn),
            "Strict" => Ok(FieldValidation::Strict),
            "Ignore" => Ok(FieldValidation::Ignore),
            other => Err(ApiError::bad_request(format!(
                "fieldValidation parameter unsupported: {other}, valid values are: Ignore, Warn, Strict"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct WriteOptions {
    pub dry_run: bool,
    pub field_validation: FieldValidation,
    /// Keys given twice in the request body (found while reading it).
    pub duplicate_fields: Vec<String>,
    /// The write is a pod binding: `spec.nodeName` may be set although pod specs are
    /// otherwise immutable (only `bind_pod` sets this).
    binding: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
}

/// The result of a write: the object as stored (or as it would be, for dry runs).
#[derive(Debug, Clone)]
pub struct Written {
    pub kv: KeyValue,
    pub warnings: Vec<String>,
    /// For deletes: whether the object is gone (false = deletion pending).
    pub deleted: bool,
}

/// Times a read-modify-write is retried on a concurrent change before giving up.
const MAX_CONFLICT_RETRIES: usize = 8;
/// Namespaces created at start that can never be deleted.
pub const SYSTEM_NAMESPACES: &[&str] =
    &["default", "kube-system", "kube-public", "kube-node-lease"];
const UNDELETABLE_NAMESPACES: &[&str] = &["default", "kube-system", "kube-public"];

pub struct Registry {
    store: Arc<dyn Store>,
    pub allocators: Allocators,
    /// Node heartbeats acknowledged in memory instead of being written.
    pub heartbeats: Arc<Heartbeats>,
    /// `tolerationSeconds` given to pods for the not-ready/unreachable NoExecute taints
    /// they do not tolerate themselves (upstream's DefaultTolerationSeconds admission):
    /// how long pods stay on a lost node before they are evicted.
    pub default_toleration_seconds: i64,
}

/// Finalizer asking the garbage collector to delete dependents before the owner.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer asking the garbage collector to orphan dependents before the owner goes.
pub const ORPHAN_FINALIZER: &str = "orphan";

fn unstored(key: &str, value: Value) -> KeyValue {
    let raw = bytes::Bytes::from(serde_json::to_vec(&value).unwrap_or_default());
    KeyValue {
        key: Arc::from(key),
        value: Arc::new(value),
        raw,
        create_revision: 0,
        mod_revision: 0,
    }
}

fn store_error(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(def, name),
        StoreError::NotFound { .. } => ApiError::not_found(def, name),
        StoreError::Conflict { .. } => ApiError::modified(def, name),
        StoreError::Compacted { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        other => {
            tracing::error!(error = %other, "datastore error");
            ApiError::internal(format!("datastore error: {other}"))
        }
    }
}

fn field_error(
    field: &str,
    kind: FieldErrorKind,
    value: Option<String>,
    detail: &str,
) -> FieldError {
    FieldError {
        field: field.to_string(),
        kind,
        value,
        detail: detail.to_string(),
    }
}

fn now() -> String {
    object::timestamp(chrono::Utc::now())
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, allocators: Allocators) -> Registry {
        let registry = Registry {
            store,
            allocators,
            heartbeats: Arc::new(Heartbeats::new()),
            default_toleration_seconds: defaults::DEFAULT_NOT_READY_TOLERATION_SECONDS,
        };
        registry.rebuild_allocations();
        registry
    }

    /// Re-reserves the IPs and ports of stored Services (after a restart).
    fn rebuild_allocations(&self) {
        let services = resources::by_plural("", "v1", "services").expect("services served");
        let page = self.store.list(&services.prefix(), None, 0, &|_| true);
        for kv in page.items {
            let spec = &kv.value["spec"];
            if let Some(ip) = spec["clusterIP"].as_str().and_then(|s| s.parse().ok()) {
                if let Err(e) = self.allocators.allocate_ip(Some(ip)) {
                    tracing::warn!(service = %kv.key, error = %e, "stored ClusterIP clashes");
                }
            }
            for port in spec["ports"].as_array().into_iter().flatten() {
                if let Some(np) = port["nodePort"].as_u64() {
                    let proto = port["protocol"].as_str().unwrap_or("TCP");
                    let _ = self.allocators.allocate_port(Some(np as u16), proto);
                }
            }
        }
    }

    pub fn get(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> Result<KeyValue, ApiError> {
        let kv = self
            .store
            .get(&def.key(ns, name))
            .ok_or_else(|| ApiError::not_found(def, name))?;
        Ok(match def.kind {
            "Lease" | "Node" => self.heartbeats.overlay(kv),
            _ => kv,
        })
    }

    pub fn list(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        start_after: Option<&str>,
        limit: usize,
        filter: &(dyn Fn(&KeyValue) -> bool + Sync),
    ) -> ListPage {
        let mut page = self
            .store
            .list(&def.list_prefix(ns), start_after, limit, filter);
        // Lists show the latest heartbeats too (watches only see persisted changes).
        if matches!(def.kind, "Lease" | "Node") {
            page.items = page
                .items
                .into_iter()
                .map(|kv| self.heartbeats.overlay(kv))
                .collect();
        }
        page
    }

    /// Checks a request body's type and returns its typed form (unknown fields dropped).
    fn decode(
        &self,
        def: &ResourceDef,
        mut obj: Value,
        fv: FieldValidation,
        duplicates: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        if !obj.is_object() {
            return Err(ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: the body must be a JSON object",
                def.kind, def.version, def.kind
            )));
        }
        match obj.get("apiVersion").and_then(Value::as_str) {
            Some(v) if v == def.api_version() => {}
            Some(v) => {
                return Err(ApiError::bad_request(format!(
                "the API version in the data ({v}) does not match the expected API version ({})",
                def.api_version()
            )))
            }
            None => obj["apiVersion"] = Value::String(def.api_version()),
        }
        match obj.get("kind").and_then(Value::as_str) {
            Some(k) if k == def.kind => {}
            Some(k) => {
                return Err(ApiError::bad_request(format!(
                    "the kind in the data ({k}) does not match the expected kind ({})",
                    def.kind
                )))
            }
            None => obj["kind"] = Value::String(def.kind.to_string()),
        }
        object::normalize_quantities(&mut obj);
        let typed = (def.roundtrip)(&obj).map_err(|e| {
            ApiError::bad_request(format!(
                "{} in version \"{}\" cannot be handled as a {}: {e}",
                def.kind, def.version, def.kind
            ))
        })?;
        if fv != FieldValidation::Ignore {
            let problems: Vec<String> = duplicates
                .iter()
                .map(|f| format!("duplicate field \"{f}\""))
                .chain(
                    object::unknown_fields(&obj, &typed)
                        .iter()
                        .map(|f| format!("unknown field \"{f}\"")),
                )
                .collect();
            if !problems.is_empty() {
                if fv == FieldValidation::Strict {
                    return Err(ApiError::bad_request(format!(
                        "{} in version \"{}\" cannot be handled as a {}: strict decoding error: {}",
                        def.kind,
                        def.version,
                        def.kind,
                        problems.join(", ")
                    )));
                }
                warnings.extend(problems);
            }
        }
        Ok(typed)
    }

    /// The namespace must exist and not be terminating for new content.
    fn check_namespace(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<(), ApiError> {
        let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
        match self.store.get(&namespaces.key(None, ns)) {
            None => Err(ApiError::not_found(namespaces, ns)),
            Some(kv) if object::is_deleting(&kv.value) => {
                let mut e = ApiError::forbidden(format!(
                    "{} \"{name}\" is forbidden: unable to create new content in namespace {ns} because it is being terminated",
                    crate::api::status::resource_name(def)
                ));
                e.details = Some(json!({
                    "name": name, "group": def.group, "kind": def.plural,
                    "causes": [{"reason": "NamespaceTerminating", "message": format!("namespace {ns} is being terminated"), "field": "metadata.namespace"}]
                }));
                Err(e)
            }
            Some(_) => Ok(()),
        }
    }

    pub async fn create(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut warnings = Vec::new();
        let mut obj = self.decode(
            def,
            body,
            opts.field_validation,
            &opts.duplicate_fields,
            &mut warnings,
        )?;
        if def.namespaced {
            let ns = ns.ok_or_else(|| {
                ApiError::bad_request("the namespace of the object must be set on the request")
            })?;
            match object::namespace(&obj) {
                Some(body_ns) if body_ns != ns => return Err(namespace_mismatch()),
                _ => {
                    meta_mut(&mut obj).insert("namespace".into(), Value::String(ns.into()));
                }
            }
        } else {
            meta_mut(&mut obj).remove("namespace");
        }
        let meta = meta_mut(&mut obj);
        if meta
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("")
            .is_empty()
        {
            if let Some(prefix) = meta.get("generateName").and_then(Value::as_str) {
                if !prefix.is_empty() {
                    let name = format!("{prefix}{}", object::random_suffix(5));
                    meta.insert("name".into(), Value::String(name));
                }
            }
        }
        meta.insert(
            "uid".into(),
            Value::String(uuid::Uuid::new_v4().to_string()),
        );
        meta.insert("creationTimestamp".into(), Value::String(now()));
        meta.insert("generation".into(), json!(1));
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(f);
        }
        let name = object::name(&obj).to_string();
        reset_status_on_create(def, &mut obj);
        let own_tolerations = toleration_keys(&obj);
        defaults::apply_defaults(def.kind, &mut obj);
        if def.kind == "Pod" {
            self.admit_default_tolerations(&mut obj, &own_tolerations);
        }
        let mut errors = Vec::new();
        if name.is_empty() {
            errors.push(field_error(
                "metadata.name",
                FieldErrorKind::Required,
                None,
                "name or generateName is required",
            ));
        }
        errors.extend(validation::validate(def.kind, &obj, None));
        if !errors.is_empty() {
            return Err(ApiError::invalid(def, &name, &errors));
        }
        if let (true, Some(ns)) = (def.namespaced, ns) {
            self.check_namespace(def, ns, &name)?;
        }
        let key = def.key(ns, &name);
        if self.store.get(&key).is_some() {
            return Err(ApiError::already_exists(def, &name));
        }
        let allocated = if def.kind == "Service" {
            self.allocate_service(def, &mut obj, None, &name)?
        } else {
            Allocated::default()
        };
        if opts.dry_run {
            allocated.rollback(&self.allocators);
            return Ok(Written {
                kv: unstored(&key, obj),
                warnings,
                deleted: false,
            });
        }
        match self.store.create(&key, obj).await {
            Ok(kv) => Ok(Written {
                kv,
                warnings,
                deleted: false,
            }),
            Err(e) => {
                allocated.rollback(&self.allocators);
                Err(store_error(def, &name, e))
            }
        }
    }

    /// Replaces an object (PUT), or its status with `subresource = Some("status")`.
    pub async fn update(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut warnings = Vec::new();
        let new = self.decode(
            def,
            body,
            opts.field_validation,
            &opts.duplicate_fields,
            &mut warnings,
        )?;
        check_name(&new, name)?;
        if def.namespaced {
            if let (Some(body_ns), Some(ns)) = (object::namespace(&new), ns) {
                if body_ns != ns {
                    return Err(namespace_mismatch());
                }
            }
        }
        let expected =
            object::parse_resource_version(object::meta_str(&new, "resourceVersion").unwrap_or(""))
                .map_err(ApiError::bad_request)?;
        let old = self.get(def, ns, name)?;
        if expected.is_some_and(|rv| rv != old.mod_revision) {
            return Err(ApiError::modified(def, name));
        }
        let mut written = self
            .replace(def, &old, new, subresource, opts, expected.is_some())
            .await?;
        written.warnings.extend(warnings);
        Ok(written)
    }

    /// Applies the update rules to `new` against the stored `old` and writes it.
    async fn replace(
        &self,
        def: &ResourceDef,
        old: &KeyValue,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
        _client_precondition: bool,
    ) -> Result<Written, ApiError> {
        let oldv = &*old.value;
        let name = object::name(oldv).to_string();
        if let Some(uid) = object::uid(&new) {
            if Some(uid) != object::uid(oldv) {
                return Err(ApiError::conflict(
                    def,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::uid(oldv).unwrap_or("")
                    ),
                ));
            }
        }
        if subresource == Some("status") {
            let status = new.get("status").cloned();
            new = oldv.clone();
            match status {
                Some(s) => new["status"] = s,
                None => {
                    new.as_object_mut().map(|o| o.remove("status"));
                }
            }
        } else if def.has_status() {
            match oldv.get("status") {
                Some(s) => new["status"] = s.clone(),
                None => {
                    new.as_object_mut().map(|o| o.remove("status"));
                }
            }
        }
        {
            let old_meta = oldv["metadata"].as_object().cloned().unwrap_or_default();
            let meta = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match old_meta.get(f) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("resourceVersion");
        }
        // A deleting object may only lose finalizers, never gain new ones.
        if object::is_deleting(oldv) {
            let old_f = object::finalizers(oldv);
            if object::finalizers(&new).iter().any(|f| !old_f.contains(f)) {
                return Err(ApiError::invalid(
                    def,
                    &name,
                    &[field_error(
                        "metadata.finalizers",
                        FieldErrorKind::Forbidden,
                        None,
                        "no new finalizers can be added if the object is being deleted",
                    )],
                ));
            }
        }
        defaults::apply_defaults(def.kind, &mut new);
        if object::spec_part(&new) != object::spec_part(oldv) {
            let generation = oldv["metadata"]["generation"].as_i64().unwrap_or(1) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(generation));
        }
        let mut allocated = Allocated::default();
        let mut released = Allocated::default();
        if def.kind == "Service" && subresource.is_none() {
            carry_service_allocations(oldv, &mut new);
            allocated = self.allocate_service(def, &mut new, Some(oldv), &name)?;
            released = service_allocations(oldv).minus(&service_allocations(&new));
        }
        let errors = if opts.binding {
            // Bindings change only spec.nodeName: validate the pod as if new.
            validation::validate(def.kind, &new, None)
        } else {
            validation::validate(def.kind, &new, Some(oldv))
        };
        if !errors.is_empty() {
            allocated.rollback(&self.allocators);
            return Err(ApiError::invalid(def, &name, &errors));
        }
        if object::same_content(&new, oldv) {
            return Ok(Written {
                kv: old.clone(),
                warnings: vec![],
                deleted: false,
            });
        }
        if opts.dry_run {
            allocated.rollback(&self.allocators);
            return Ok(Written {
                kv: unstored(&old.key, new),
                warnings: vec![],
                deleted: false,
            });
        }
        if heartbeats::is_heartbeat_only(def.kind, oldv, &new) {
            // Acknowledged in memory only; the stored resourceVersion stays valid.
            return Ok(Written {
                kv: self.heartbeats.record(old, new),
                warnings: vec![],
                deleted: false,
            });
        }
        // Finalization: the last finalizer removed from an object being deleted (without
        // a pending grace period) deletes it.
        let finished = object::is_deleting(&new)
            && object::finalizers(&new).is_empty()
            && (def.kind != "Namespace"
                || new["spec"]["finalizers"]
                    .as_array()
                    .is_none_or(|f| f.is_empty()))
            && new["metadata"]["deletionGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(0)
                == 0;
        let result = if finished {
            match self
                .store
                .update(&old.key, new, Some(old.mod_revision))
                .await
            {
                Ok(kv) => self
                    .store
                    .delete(&old.key, Some(kv.mod_revision))
                    .await
                    .map(|kv| (kv, true)),
                Err(e) => Err(e),
            }
        } else {
            self.store
                .update(&old.key, new, Some(old.mod_revision))
                .await
                .map(|kv| (kv, false))
        };
        match result {
            Ok((kv, deleted)) => {
                if deleted {
                    self.release_for(&kv.value);
                } else {
                    released.rollback(&self.allocators);
                }
                Ok(Written {
                    kv,
                    warnings: vec![],
                    deleted,
                })
            }
            Err(e) => {
                allocated.rollback(&self.allocators);
                Err(store_error(def, &name, e))
            }
        }
    }

    /// Read-modify-write with retries on concurrent changes: `mutate` gets the current
    /// object and returns the desired one.
    pub async fn modify(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        opts: &WriteOptions,
        mutate: &(dyn Fn(&Value) -> Result<Value, ApiError> + Sync),
    ) -> Result<Written, ApiError> {
        let mut last_err = None;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let old = self.get(def, ns, name)?;
            let new = mutate(&old.value)?;
            let mut warnings = Vec::new();
            let new = self.decode(def, new, opts.field_validation, &[], &mut warnings)?;
            check_name(&new, name)?;
            // A resourceVersion set by the caller (e.g. in a patch) is a precondition.
            let rv = object::meta_str(&new, "resourceVersion").unwrap_or("");
            if !rv.is_empty() && rv != old.mod_revision.to_string() {
                return Err(ApiError::modified(def, name));
            }
            match self.replace(def, &old, new, subresource, opts, false).await {
                Err(e) if e.reason == "Conflict" && e.code == 409 => {
                    last_err = Some(e);
                    continue;
                }
                Ok(mut w) => {
                    w.warnings.extend(warnings);
                    return Ok(w);
                }
                Err(e) => return Err(e),
            }
        }
        Err(last_err.unwrap_or_else(|| ApiError::modified(def, name)))
    }

    pub async fn patch(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        (patch_type, body): (PatchType, &[u8]),
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        if patch_type == PatchType::Apply && self.get(def, ns, name).is_err() {
            // Server-side apply of an object that does not exist creates it.
            let obj =
                patch::apply_patch(def.kind, &Value::Null, body, patch_type).map_err(|e| {
                    ApiError::new(e.status_code(), reason_for(e.status_code()), e.to_string())
                })?;
            check_name(&obj, name)?;
            return self.create(def, ns, obj, opts).await;
        }
        let kind = def.kind;
        self.modify(def, ns, name, subresource, opts, &|current| {
            patch::apply_patch(kind, current, body, patch_type).map_err(|e| {
                ApiError::new(e.status_code(), reason_for(e.status_code()), e.to_string())
            })
        })
        .await
    }

    /// Deletes an object: immediately, or by marking it (graceful pod deletion,
    /// finalizers, namespace teardown) for a controller or kubelet to finish.
    pub async fn delete(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Written, ApiError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            let old = self.get(def, ns, name)?;
            match self.delete_once(def, &old, opts).await {
                Err(e)
                    if e.code == 409
                        && e.reason == "Conflict"
                        && opts.precondition_rv.is_none() =>
                {
                    continue
                }
                other => return other,
            }
        }
        Err(ApiError::modified(def, name))
    }

    async fn delete_once(
        &self,
        def: &ResourceDef,
        old: &KeyValue,
        opts: &DeleteOptions,
    ) -> Result<Written, ApiError> {
        let oldv = &*old.value;
        let name = object::name(oldv).to_string();
        if let Some(uid) = &opts.precondition_uid {
            if Some(uid.as_str()) != object::uid(oldv) {
                return Err(ApiError::conflict(
                    def,
                    &name,
                    &format!(
                        "Precondition failed: UID in precondition: {uid}, UID in object meta: {}",
                        object::uid(oldv).unwrap_or("")
                    ),
                ));
            }
        }
        if let Some(rv) = &opts.precondition_rv {
            if *rv != old.mod_revision.to_string() {
                return Err(ApiError::conflict(
                    def,
                    &name,
                    &format!(
                        "Precondition failed: ResourceVersion in precondition: {rv}, ResourceVersion in object meta: {}",
                        old.mod_revision
                    ),
                ));
            }
        }
        if def.kind == "Namespace" && UNDELETABLE_NAMESPACES.contains(&name.as_str()) {
            return Err(ApiError::forbidden(format!(
                "namespaces \"{name}\" is forbidden: this namespace may not be deleted"
            )));
        }
        let grace = self.grace_period(def, oldv, opts);
        let mut finalizers = object::finalizers(oldv);
        // Foreground and Orphan are exclusive; an explicit policy replaces the other
        // (also on an object already being deleted), Background drops both. The garbage
        // collector handles the dependents and removes the finalizer; without
        // dependents there is nothing to wait for, so none is added.
        let gc_finalizer = match opts.propagation.as_deref() {
            None => None,
            Some("Background") => Some(None),
            Some("Foreground") => Some(Some(FOREGROUND_FINALIZER)),
            Some("Orphan") => Some(Some(ORPHAN_FINALIZER)),
            Some(other) => {
                return Err(ApiError::bad_request(format!(
                    "invalid propagationPolicy: {other}; must be one of Orphan, Foreground or Background"
                )))
            }
        };
        if let Some(wanted) = gc_finalizer {
            finalizers.retain(|f| f != FOREGROUND_FINALIZER && f != ORPHAN_FINALIZER);
            if let Some(f) = wanted {
                if self.has_dependents(oldv) {
                    finalizers.push(f.to_string());
                }
            }
        }
        finalizers.dedup();
        let needs_marking = def.kind == "Namespace" || grace > 0 || !finalizers.is_empty();
        if !needs_marking {
            if opts.dry_run {
                return Ok(Written {
                    kv: old.clone(),
                    warnings: vec![],
                    deleted: true,
                });
            }
            let kv = self
                .store
                .delete(&old.key, Some(old.mod_revision))
                .await
                .map_err(|e| store_error(def, &name, e))?;
            self.release_for(&kv.value);
            return Ok(Written {
                kv,
                warnings: vec![],
                deleted: true,
            });
        }
        let mut new = oldv.clone();
        let already = object::is_deleting(oldv);
        let old_grace = oldv["metadata"]["deletionGracePeriodSeconds"].as_i64();
        {
            let meta = meta_mut(&mut new);
            if !already || old_grace.is_some_and(|g| grace < g) {
                let when = chrono::Utc::now() + chrono::Duration::seconds(grace);
                meta.insert(
                    "deletionTimestamp".into(),
                    Value::String(object::timestamp(when)),
                );
                meta.insert("deletionGracePeriodSeconds".into(), json!(grace));
            }
            if finalizers.is_empty() {
                meta.remove("finalizers");
            } else {
                meta.insert("finalizers".into(), json!(finalizers));
            }
        }
        if def.kind == "Namespace" {
            new["status"]["phase"] = json!("Terminating");
        }
        if object::same_content(&new, oldv) {
            return Ok(Written {
                kv: old.clone(),
                warnings: vec![],
                deleted: false,
            });
        }
        if opts.dry_run {
            return Ok(Written {
                kv: unstored(&old.key, new),
                warnings: vec![],
                deleted: false,
            });
        }
        let kv = self
            .store
            .update(&old.key, new, Some(old.mod_revision))
            .await
            .map_err(|e| store_error(def, &name, e))?;
        Ok(Written {
            kv,
            warnings: vec![],
            deleted: false,
        })
    }

    /// Grace period for a delete: pods bound to a node and still running get one.
    fn grace_period(&self, def: &ResourceDef, obj: &Value, opts: &DeleteOptions) -> i64 {
        if def.kind != "Pod" {
            return 0;
        }
        let unscheduled = obj["spec"]["nodeName"].as_str().unwrap_or("").is_empty();
        let finished = matches!(
            obj["status"]["phase"].as_str(),
            Some("Succeeded") | Some("Failed")
        );
        if unscheduled || finished {
            return 0;
        }
        let grace = opts.grace_period.unwrap_or_else(|| {
            obj["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30)
        });
        grace.max(0)
    }

    /// Whether any object names `obj` as its owner.
    fn has_dependents(&self, obj: &Value) -> bool {
        let Some(uid) = object::uid(obj) else {
            return false;
        };
        let ns = object::namespace(obj);
        resources::RESOURCES.iter().any(|def| {
            let prefix = if def.namespaced {
                match ns {
                    Some(ns) => def.list_prefix(Some(ns)),
                    None => def.prefix(),
                }
            } else {
                def.prefix()
            };
            let page = self.store.list(&prefix, None, 1, &|kv: &KeyValue| {
                kv.value["metadata"]["ownerReferences"]
                    .as_array()
                    .is_some_and(|refs| refs.iter().any(|r| r["uid"] == uid))
            });
            !page.items.is_empty()
        })
    }

    fn release_for(&self, obj: &Value) {
        if obj["kind"] == "Service" {
            service_allocations(obj).rollback(&self.allocators);
        }
    }

    /// Reserves the ClusterIP and NodePorts a Service asks for (or needs).
    fn allocate_service(
        &self,
        def: &ResourceDef,
        svc: &mut Value,
        old: Option<&Value>,
        name: &str,
    ) -> Result<Allocated, ApiError> {
        let mut allocated = Allocated::default();
        let svc_type = svc["spec"]["type"]
            .as_str()
            .unwrap_or("ClusterIP")
            .to_string();
        let old_ip = old
            .and_then(|o| o["spec"]["clusterIP"].as_str())
            .unwrap_or("");
        let requested = svc["spec"]["clusterIP"].as_str().unwrap_or("").to_string();
        if svc_type == "ExternalName" {
            if let Some(spec) = svc["spec"].as_object_mut() {
                spec.remove("clusterIP");
                spec.remove("clusterIPs");
            }
        } else if requested == "None" {
            svc["spec"]["clusterIPs"] = json!(["None"]);
        } else if requested.is_empty() || requested != old_ip {
            let want: Option<Ipv4Addr> = if requested.is_empty() {
                None
            } else {
                Some(requested.parse().map_err(|_| {
                    ApiError::invalid(
                        def,
                        name,
                        &[field_error(
                            "spec.clusterIPs",
                            FieldErrorKind::Invalid,
                            Some(format!("[]string{{\"{requested}\"}}")),
                            "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                        )],
                    )
                })?)
            };
            let ip = self.allocators.allocate_ip(want).map_err(|e| {
                let detail = match (&want, &e) {
                    (Some(ip), _) => format!("failed to allocate IP {ip}: {e}"),
                    (None, _) => format!("failed to allocate a serviceIP: {e}"),
                };
                ApiError::invalid(
                    def,
                    name,
                    &[field_error(
                        "spec.clusterIPs",
                        FieldErrorKind::Invalid,
                        Some(format!("[]string{{\"{requested}\"}}")),
                        &detail,
                    )],
                )
            })?;
            allocated.ips.push(ip);
            svc["spec"]["clusterIP"] = json!(ip.to_string());
            svc["spec"]["clusterIPs"] = json!([ip.to_string()]);
        }
        let wants_node_ports = svc_type == "NodePort" || svc_type == "LoadBalancer";
        let old_ports = old.map(service_allocations).unwrap_or_default().ports;
        if let Some(ports) = svc["spec"]["ports"].as_array_mut() {
            for (i, port) in ports.iter_mut().enumerate() {
                let proto = port["protocol"].as_str().unwrap_or("TCP").to_string();
                if !wants_node_ports {
                    if let Some(p) = port.as_object_mut() {
                        p.remove("nodePort");
                    }
                    continue;
                }
                let want = port["nodePort"]
                    .as_u64()
                    .map(|p| p as u16)
                    .filter(|p| *p != 0);
                if want.is_some_and(|p| old_ports.contains(&(p, proto.clone()))) {
                    continue;
                }
                match self.allocators.allocate_port(want, &proto) {
                    Ok(p) => {
                        allocated.ports.push((p, proto));
                        port["nodePort"] = json!(p);
                    }
                    Err(e) => {
                        allocated.rollback(&self.allocators);
                        let value = want.map(|p| p.to_string());
                        return Err(ApiError::invalid(
                            def,
                            name,
                            &[field_error(
                                &format!("spec.ports[{i}].nodePort"),
                                FieldErrorKind::Invalid,
                                value,
                                &alloc_detail(&e),
                            )],
                        ));
                    }
                }
            }
        }
        Ok(allocated)
    }

    /// Sets `spec.nodeName` of a pod (the `binding` subresource).
    pub async fn bind_pod(
        &self,
        ns: &str,
        pod_name: &str,
        binding: &Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let pods = resources::by_plural("", "v1", "pods").expect("served");
        let target = binding["target"]["name"].as_str().unwrap_or("").to_string();
        if target.is_empty() {
            return Err(ApiError::invalid(
                pods,
                pod_name,
                &[field_error(
                    "target.name",
                    FieldErrorKind::Required,
                    None,
                    "",
                )],
            ));
        }
        let binding_opts = WriteOptions {
            binding: true,
            ..opts.clone()
        };
        self.modify(pods, Some(ns), pod_name, None, &binding_opts, &|pod| {
            if object::is_deleting(pod) {
                return Err(ApiError::conflict(
                    pods,
                    pod_name,
                    "pod is being deleted, cannot be assigned to a host",
                ));
            }
            let current = pod["spec"]["nodeName"].as_str().unwrap_or("");
            if !current.is_empty() {
                return Err(ApiError::conflict(
                    pods,
                    pod_name,
                    &format!("pod {pod_name} is already assigned to node \"{current}\""),
                ));
            }
            let mut pod = pod.clone();
            pod["spec"]["nodeName"] = json!(target);
            Ok(pod)
        })
        .await?;
        // Record the PodScheduled condition through the status path.
        self.modify(pods, Some(ns), pod_name, Some("status"), opts, &|pod| {
            let mut pod = pod.clone();
            set_condition(&mut pod, "PodScheduled", "True", None, None);
            Ok(pod)
        })
        .await
    }

    /// The `Scale` view of a replicated resource.
    pub fn scale_of(&self, def: &ResourceDef, obj: &Value) -> Value {
        let selector = match def.kind {
            "ReplicationController" => obj["spec"]["selector"]
                .as_object()
                .map(|m| {
                    m.iter()
                        .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                        .collect::<Vec<_>>()
                        .join(",")
                })
                .unwrap_or_default(),
            _ => crate::api::selector::LabelSelector::from_k8s(&obj["spec"]["selector"])
                .map(|s| s.to_string())
                .unwrap_or_default(),
        };
        let meta = &obj["metadata"];
        json!({
            "kind": "Scale",
            "apiVersion": "autoscaling/v1",
            "metadata": {
                "name": meta["name"], "namespace": meta["namespace"], "uid": meta["uid"],
                "resourceVersion": meta["resourceVersion"], "creationTimestamp": meta["creationTimestamp"],
            },
            "spec": {"replicas": obj["spec"]["replicas"].as_i64().unwrap_or(0)},
            "status": {"replicas": obj["status"]["replicas"].as_i64().unwrap_or(0), "selector": selector},
        })
    }

    /// Sets `spec.replicas` from a `Scale` body (PUT on the `scale` subresource).
    pub async fn update_scale(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        scale: &Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
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
        let rv = object::meta_str(scale, "resourceVersion")
            .unwrap_or("")
            .to_string();
        self.modify(def, ns, name, None, opts, &|obj| {
            if !rv.is_empty() && obj["metadata"]["resourceVersion"] != rv.as_str() {
                return Err(ApiError::modified(def, name));
            }
            let mut obj = obj.clone();
            obj["spec"]["replicas"] = json!(replicas);
            Ok(obj)
        })
        .await
    }

    /// The current revision of the store.
    pub fn revision(&self) -> Revision {
        self.store.revision()
    }

    /// Every current object under `prefix` (a `ResourceDef` prefix, or `/` for all) and
    /// a watch of each change after them: what informers and watch requests start from.
    pub fn snapshot_and_watch(&self, prefix: &str) -> (Vec<KeyValue>, Revision, Watcher) {
        self.store.snapshot_and_watch(prefix)
    }

    /// The changes under `prefix` after revision `after`; `Compacted` when that history
    /// is gone.
    pub fn watch(&self, prefix: &str, after: Revision) -> Result<Watcher, StoreError> {
        self.store.watch(prefix, after)
    }

    /// The object stored at `key` (a key taken from a stored object or watch event),
    /// as persisted: without in-memory heartbeats.
    pub fn get_by_key(&self, key: &str) -> Option<KeyValue> {
        self.store.get(key)
    }
}

/// A body naming another object than the URL does.
fn check_name(obj: &Value, name: &str) -> Result<(), ApiError> {
    if object::name(obj) == name {
        return Ok(());
    }
    Err(ApiError::bad_request(format!(
        "the name of the object ({}) does not match the name on the URL ({name})",
        object::name(obj)
    )))
}

fn namespace_mismatch() -> ApiError {
    ApiError::bad_request(
        "the namespace of the provided object does not match the namespace sent on the request",
    )
}

/// Keys of the tolerations a pod spec brings itself.
fn toleration_keys(pod: &Value) -> Vec<String> {
    pod["spec"]["tolerations"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["key"].as_str().map(str::to_string))
        .collect()
}

impl Registry {
    /// Sets the configured eviction delay on the not-ready/unreachable tolerations that
    /// defaulting added (never on ones the pod brought).
    fn admit_default_tolerations(&self, pod: &mut Value, own: &[String]) {
        let Some(tolerations) = pod["spec"]["tolerations"].as_array_mut() else {
            return;
        };
        for t in tolerations {
            let key = t["key"].as_str().unwrap_or("");
            let added = (key == defaults::TAINT_NODE_NOT_READY
                || key == defaults::TAINT_NODE_UNREACHABLE)
                && !own.iter().any(|k| k == key);
            if added {
                t["tolerationSeconds"] = json!(self.default_toleration_seconds);
            }
        }
    }
}

/// Sets (or replaces) a condition of `status.conditions` by type.
pub fn set_condition(
    obj: &mut Value,
    kind: &str,
    status: &str,
    reason: Option<&str>,
    message: Option<&str>,
) {
    let now = now();
    if !obj["status"].is_object() {
        obj["status"] = json!({});
    }
    if !obj["status"]["conditions"].is_array() {
        obj["status"]["conditions"] = json!([]);
    }
    let conditions = obj["status"]["conditions"]
        .as_array_mut()
        .expect("conditions is an array");
    let mut cond =
        json!({"type": kind, "status": status, "lastProbeTime": null, "lastTransitionTime": now});
    if let Some(r) = reason {
        cond["reason"] = json!(r);
    }
    if let Some(m) = message {
        cond["message"] = json!(m);
    }
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(existing) => {
            if existing["status"] == status {
                cond["lastTransitionTime"] = existing["lastTransitionTime"].clone();
            }
            *existing = cond;
        }
        None => conditions.push(cond),
    }
}

/// The `Status` reason for an HTTP status code.
pub fn reason_for(code: u16) -> &'static str {
    match code {
        400 => "BadRequest",
        404 => "NotFound",
        409 => "Conflict",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        _ => "InternalError",
    }
}

fn alloc_detail(e: &AllocError) -> String {
    e.to_string()
}

/// On create, status is owned by controllers and kubelets, not the client.
fn reset_status_on_create(def: &ResourceDef, obj: &mut Value) {
    match def.kind {
        "Pod" => {
            obj["status"] = json!({"phase": "Pending"});
        }
        "Namespace" => {
            obj["status"] = json!({"phase": "Active"});
        }
        "ReplicationController" | "ReplicaSet" | "Deployment" => {
            obj["status"] = json!({"replicas": 0});
        }
        "Service" => {
            obj["status"] = json!({"loadBalancer": {}});
        }
        _ => {}
    }
}

/// A PUT without clusterIP/nodePorts keeps the allocated ones (as upstream).
fn carry_service_allocations(old: &Value, new: &mut Value) {
    let new_ip = new["spec"]["clusterIP"].as_str().unwrap_or("");
    if new_ip.is_empty() {
        if let Some(ip) = old["spec"]["clusterIP"].as_str() {
            new["spec"]["clusterIP"] = json!(ip);
            new["spec"]["clusterIPs"] = old["spec"]["clusterIPs"].clone();
        }
    }
    let old_ports = old["spec"]["ports"].as_array().cloned().unwrap_or_default();
    if let Some(ports) = new["spec"]["ports"].as_array_mut() {
        for port in ports.iter_mut() {
            if port["nodePort"].as_u64().unwrap_or(0) != 0 {
                continue;
            }
            let same = old_ports.iter().find(|o| {
                o["port"] == port["port"]
                    && o["protocol"].as_str().unwrap_or("TCP")
                        == port["protocol"].as_str().unwrap_or("TCP")
            });
            if let Some(np) = same.and_then(|o| o["nodePort"].as_u64()) {
                port["nodePort"] = json!(np);
            }
        }
    }
}

/// Resources reserved for one Service.
#[derive(Debug, Default)]
struct Allocated {
    ips: Vec<Ipv4Addr>,
    ports: Vec<(u16, String)>,
}

impl Allocated {
    fn rollback(&self, allocators: &Allocators) {
        for ip in &self.ips {
            allocators.release_ip(*ip);
        }
        for (p, proto) in &self.ports {
            allocators.release_port(*p, proto);
        }
    }

    fn minus(self, other: &Allocated) -> Allocated {
        Allocated {
            ips: self
                .ips
                .into_iter()
                .filter(|ip| !other.ips.contains(ip))
                .collect(),
            ports: self
                .ports
                .into_iter()
                .filter(|p| !other.ports.contains(p))
                .collect(),
        }
    }
}

fn service_allocations(svc: &Value) -> Allocated {
    let mut a = Allocated::default();
    if let Some(ip) = svc["spec"]["clusterIP"]
        .as_str()
        .and_then(|s| s.parse().ok())
    {
        a.ips.push(ip);
    }
    for port in svc["spec"]["ports"].as_array().into_iter().flatten() {
        if let Some(np) = port["nodePort"].as_u64() {
            a.ports.push((
                np as u16,
                port["protocol"].as_str().unwrap_or("TCP").to_string(),
            ));
        }
    }
    a
}
