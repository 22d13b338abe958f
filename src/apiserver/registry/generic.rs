//! The generic storage core of the registry, the same for every kind: decoding and
//! field validation, metadata bookkeeping, optimistic concurrency, dry runs, graceful
//! deletion and finalizers, and store errors as API errors. Everything a kind does
//! differently it asks the kind's `Strategy`.

use serde_json::{json, Value};

use super::admit::Call;
use super::strategy::{Context, Strategy};
use super::{
    DeleteOptions, FieldValidation, Registry, WriteOptions, Written, FOREGROUND_FINALIZER,
    MAX_CONFLICT_RETRIES, ORPHAN_FINALIZER,
};
use crate::api::object::{self, meta_mut};
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::api::validation::{FieldError, FieldErrorKind};
use crate::apiserver::admission::Operation;
use crate::store::{KeyValue, StoreError};

/// A write that was not stored (dry run): the object as it would have been.
fn unstored(key: &str, value: Value) -> KeyValue {
    KeyValue::unstored(key, value)
}

fn store_error(def: &ResourceDef, name: &str, e: StoreError) -> ApiError {
    match e {
        StoreError::AlreadyExists { .. } => ApiError::already_exists(def, name),
        StoreError::NotFound { .. } => ApiError::not_found(def, name),
        StoreError::Conflict { .. } => ApiError::modified(def, name),
        StoreError::Compacted { requested, oldest } => {
            ApiError::gone(format!("too old resource version: {requested} ({oldest})"))
        }
        // etcd refused the request for its size (its --max-request-bytes is below
        // MAX_OBJECT_BYTES plus the key and encryption overhead).
        StoreError::TooLarge { reason, .. } => {
            let mut e = ApiError::new(413, "RequestEntityTooLarge", reason);
            e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
            e
        }
        // Logged once per failed commit by the datastore writer.
        StoreError::OutOfSpace { .. } => ApiError::internal(
            "datastore out of space: the server cannot store changes until disk space is freed on its data volume",
        ),
        other => {
            tracing::error!(error = %other, "datastore error");
            ApiError::internal(format!("datastore error: {other}"))
        }
    }
}

pub(super) fn field_error(
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

pub(super) fn now() -> String {
    object::timestamp(chrono::Utc::now())
}

/// A body naming another object than the URL does.
pub(crate) fn check_name(obj: &Value, name: &str) -> Result<(), ApiError> {
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

/// The most bytes one object may take stored: etcd's default request limit (1.5 MiB),
/// which upstream objects can never exceed either. Deletes are never refused for size.
pub const MAX_OBJECT_BYTES: usize = 3 * 512 * 1024;

/// Counts the bytes written to it (the stored size, without building the bytes).
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

/// Bytes a number takes in JSON, at most (`-1.7976931348623157e308`, `u64::MAX`).
const MAX_NUMBER_LEN: usize = 24;
/// Bytes one byte of a string takes in JSON, at most (a control character: `\u001f`).
const MAX_ESCAPED_LEN: usize = 6;

/// An upper bound of the length of `value`'s compact JSON, from the lengths of its
/// strings and the count of its values (no formatting, no escaping).
fn max_json_len(value: &Value) -> usize {
    let string = |s: &str| 2 + MAX_ESCAPED_LEN * s.len();
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => MAX_NUMBER_LEN,
        Value::String(s) => string(s),
        // Brackets, a comma after each item (one too many: a bound).
        Value::Array(items) => 2 + items.iter().map(|v| 1 + max_json_len(v)).sum::<usize>(),
        // Braces, and a colon and a comma for each member.
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| string(k) + 2 + max_json_len(v))
                .sum::<usize>()
        }
    }
}

/// Refuses an object whose stored JSON would exceed [`MAX_OBJECT_BYTES`] with upstream's
/// answer to etcd's refusal (413 `RequestEntityTooLarge`), saying by how much.
pub(super) fn check_stored_size(
    def: &ResourceDef,
    name: &str,
    obj: &Value,
) -> Result<(), ApiError> {
    // Nearly every object is far below the limit: a bound found without serializing
    // settles it; only an object near the limit is serialized to count its bytes.
    if max_json_len(obj) <= MAX_OBJECT_BYTES {
        return Ok(());
    }
    let mut count = ByteCount(0);
    serde_json::to_writer(&mut count, obj)
        .map_err(|e| ApiError::internal(format!("encode {} {name:?}: {e}", def.kind)))?;
    if count.0 <= MAX_OBJECT_BYTES {
        return Ok(());
    }
    let mut e = ApiError::new(
        413,
        "RequestEntityTooLarge",
        format!(
            "etcdserver: request is too large: {} \"{name}\" would take {} bytes stored, the limit is {MAX_OBJECT_BYTES}",
            crate::api::status::resource_name(def),
            count.0
        ),
    );
    e.details = Some(json!({"name": name, "group": def.group, "kind": def.plural}));
    Err(e)
}

/// `w` with the admission webhooks' warnings added.
fn with_warnings(mut w: Written, warnings: Vec<String>) -> Written {
    w.warnings.extend(warnings);
    w
}

fn written(kv: KeyValue, deleted: bool) -> Written {
    Written {
        kv,
        warnings: vec![],
        deleted,
    }
}

/// Whether a stored object is being deleted. Its JSON is searched for the key first: an
/// object without it (nearly every Namespace, read by every create in it) is not parsed.
fn stored_is_deleting(kv: &KeyValue) -> bool {
    const KEY: &[u8] = b"\"deletionTimestamp\"";
    kv.raw.windows(KEY.len()).any(|w| w == KEY) && object::is_deleting(&kv.value)
}

/// A body that does not decode as its kind (upstream's words).
fn undecodable(def: &ResourceDef, e: impl std::fmt::Display) -> ApiError {
    ApiError::bad_request(format!(
        "{} in version \"{}\" cannot be handled as a {}: {e}",
        def.kind, def.version, def.kind
    ))
}

/// A body of a built-in kind that does not decode: in Go's words where a value has the
/// wrong JSON type for its field (`json: cannot unmarshal bool into Go struct field
/// ConfigMap.data of type string`), else in the decoder's.
fn undecodable_body(def: &ResourceDef, obj: &Value, e: impl std::fmt::Display) -> ApiError {
    let go_words = if def.custom.is_none() {
        crate::api::protobuf::schema_for(&def.api_version(), def.kind)
            .and_then(|m| crate::api::go_json::type_error(m, obj))
    } else {
        None
    };
    match go_words {
        Some(words) => undecodable(def, words),
        None => undecodable(def, e),
    }
}

/// A body that is not a JSON object of `def`'s kind and version is refused; a missing
/// `apiVersion` or `kind` is filled in.
fn check_type_meta(def: &ResourceDef, obj: &mut Value) -> Result<(), ApiError> {
    if !obj.is_object() {
        return Err(undecodable(def, "the body must be a JSON object"));
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
    Ok(())
}

/// A body's duplicate and unknown fields (paths), as `fieldValidation` asks: refused
/// (Strict), warned about (Warn) or ignored.
fn report_field_problems(
    def: &ResourceDef,
    fv: FieldValidation,
    duplicates: &[String],
    unknown: Vec<String>,
    warnings: &mut Vec<String>,
) -> Result<(), ApiError> {
    if fv == FieldValidation::Ignore {
        return Ok(());
    }
    let problems: Vec<String> = duplicates
        .iter()
        .map(|f| format!("duplicate field \"{f}\""))
        .chain(unknown.iter().map(|f| format!("unknown field \"{f}\"")))
        .collect();
    if problems.is_empty() {
        return Ok(());
    }
    if fv == FieldValidation::Strict {
        let problems = problems.join(", ");
        return Err(undecodable(
            def,
            format!("strict decoding error: {problems}"),
        ));
    }
    warnings.extend(problems);
    Ok(())
}

impl Registry {
    /// What `def`'s strategy may use of this registry.
    pub(super) fn context<'a>(&'a self, def: &'a ResourceDef) -> Context<'a> {
        Context {
            def,
            allocators: &self.allocators,
            heartbeats: &self.heartbeats,
            default_tolerations: self.default_tolerations,
            cluster_cidr: self.cluster_cidr,
            event_rate_limit: &self.event_rate_limit,
            rbac: &self.rbac,
            store: self.store.as_ref(),
        }
    }

    /// Re-reserves what stored objects hold (Service IPs and ports, after a restart).
    pub(super) fn reclaim_allocations(&self) {
        for def in resources::RESOURCES {
            let strategy = super::strategy_for(def);
            if !strategy.holds_allocations() {
                continue;
            }
            let page = self.store.list(&def.prefix(), None, 0, &|_| true);
            for kv in page.items {
                for error in strategy.allocations(&kv.value).reclaim(&self.allocators) {
                    tracing::warn!(object = %kv.key, %error, "stored allocation clashes");
                }
            }
        }
    }

    /// The stored object as the kind shows it (Nodes and Leases with their latest
    /// in-memory heartbeat).
    pub(super) fn get_with(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> Result<KeyValue, ApiError> {
        let kv = self
            .store
            .get(&def.key(ns, name))
            .ok_or_else(|| ApiError::not_found(def, name))?;
        Ok(strategy.fresh_view(&self.context(def), kv))
    }

    /// The stored object in `def`'s version (custom objects through their CRD's
    /// converter): what a write in that version starts from.
    async fn get_served(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> Result<KeyValue, ApiError> {
        let kv = self.get_with(strategy, def, ns, name)?;
        self.one_in_served_version(def, kv).await
    }

    /// Checks a request body's type and returns its typed form (unknown fields dropped).
    fn decode(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        mut obj: Value,
        fv: FieldValidation,
        duplicates: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        check_type_meta(def, &mut obj)?;
        if def.custom.is_none() {
            // Custom objects keep their numbers: their schema says what they are.
            object::normalize_for_decoding(&mut obj);
        }
        let typed = strategy
            .typed(&self.context(def), &obj)
            .map_err(|e| undecodable_body(def, &obj, e))?;
        let unknown = if fv == FieldValidation::Ignore {
            Vec::new()
        } else {
            object::unknown_fields(&obj, &typed)
        };
        report_field_problems(def, fv, duplicates, unknown, warnings)?;
        Ok(typed)
    }

    /// Checks the body of a `status` write against the stored `old`. A kind with a status
    /// type of its own whose body holds the stored object apart from the status (as the
    /// scheduler's, the kubelet's and most patches do) has only its status decoded: the
    /// rest is the stored object, already typed, and the write keeps it anyway. Any
    /// other body is decoded whole, so its type errors and unknown fields are reported
    /// as before.
    #[allow(clippy::too_many_arguments)]
    fn decode_status(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        mut obj: Value,
        old: &Value,
        fv: FieldValidation,
        duplicates: &[String],
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let Some(status_type) = strategy.status_type() else {
            return self.decode(strategy, def, obj, fv, duplicates, warnings);
        };
        check_type_meta(def, &mut obj)?;
        if !object::same_but_status(&obj, old) {
            return self.decode(strategy, def, obj, fv, duplicates, warnings);
        }
        let Some(status) = obj.get_mut("status") else {
            return Ok(obj);
        };
        object::normalize_status_for_decoding(&def.api_version(), def.kind, status);
        let typed = status_type(status).map_err(|e| undecodable(def, e))?;
        let unknown = if fv == FieldValidation::Ignore {
            Vec::new()
        } else {
            object::unknown_fields_at("status", status, &typed)
        };
        report_field_problems(def, fv, duplicates, unknown, warnings)?;
        *status = typed;
        Ok(obj)
    }

    /// The namespace must exist and not be terminating for new content.
    fn check_namespace(&self, def: &ResourceDef, ns: &str, name: &str) -> Result<(), ApiError> {
        let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
        match self.store.get(&namespaces.key(None, ns)) {
            None => Err(ApiError::not_found(namespaces, ns)),
            Some(kv) if stored_is_deleting(&kv) => {
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

    /// Creates an object: server-set metadata, the strategy's create rules and
    /// validation, namespace checks, then the write (or none, for a dry run).
    pub(super) async fn create_with(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let cx = self.context(def);
        let mut warnings = Vec::new();
        let mut obj = self.decode(
            strategy,
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
        if strategy.tracks_generation() && strategy.generation_set_on_create() {
            meta.insert("generation".into(), json!(1));
        }
        for f in [
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "selfLink",
        ] {
            meta.remove(f);
        }
        object::drop_empty_metadata(&mut obj);
        let name = object::name(&obj).to_string();
        strategy.prepare_for_create(&cx, &mut obj);
        // Upstream's NamespaceLifecycle admission comes before the other plugins.
        if let (true, Some(ns)) = (def.namespaced, ns) {
            self.check_namespace(def, ns, &name)?;
        }
        strategy.admit_create(&cx, &mut obj).await?;
        crate::apiserver::quota::default_limits(self.store.as_ref(), def, ns, &mut obj);
        let call = opts.requester.as_ref().map(|user| Call {
            operation: Operation::Create,
            subresource: None,
            user,
            dry_run: opts.dry_run,
            field_manager: opts.field_manager.as_deref(),
        });
        // Admission before validation, as upstream's NodeRestriction: a node learns it may
        // not write a field before it learns what the field may hold. The mutating
        // webhooks first, so the kind's own admission judges what will be stored.
        if let Some(call) = &call {
            obj = self
                .admit_mutating(strategy, def, call, obj, None, &mut warnings)
                .await?;
        }
        if def.custom.is_none() {
            // What defaulting and admission added, in the form the Go types store.
            object::as_stored(&mut obj);
        }
        if let Some(call) = &call {
            strategy.admit(&cx, call.user, &obj, None)?;
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
        errors.extend(strategy.validate(&cx, &obj));
        if !errors.is_empty() {
            return Err(ApiError::invalid(def, &name, &errors));
        }
        self.admit_pod_security(
            def,
            Operation::Create,
            None,
            opts.requester.as_ref(),
            &obj,
            None,
            &mut warnings,
        )?;
        if let Some(call) = &call {
            self.admit_validating(def, call, Some(&obj), None, &mut warnings)
                .await?;
        }
        let obj = self.track_update(def, None, obj, None, opts);
        // Stored in the CRD's storage version: a failed conversion writes nothing.
        let mut obj = self.in_storage_version(def, obj).await?;
        check_stored_size(def, &name, &obj)?;
        let key = def.key(ns, &name);
        if self.store.get(&key).is_some() {
            return Err(ApiError::already_exists(def, &name));
        }
        // LimitRanger's bounds, then ResourceQuota: the last admission step, as upstream.
        crate::apiserver::quota::check_limits(self.store.as_ref(), def, ns, &obj, true)?;
        crate::apiserver::quota::charge(self.store.as_ref(), def, ns, &obj, None, opts.dry_run)
            .await?;
        let allocated = strategy.allocate(&cx, &mut obj, None)?;
        if opts.dry_run {
            allocated.release(&self.allocators);
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
                allocated.release(&self.allocators);
                Err(store_error(def, &name, e))
            }
        }
    }

    /// Replaces an object (PUT), or its status with `subresource = Some("status")`; a
    /// `resourceVersion` in the body is a precondition.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn update_with(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        body: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let mut warnings = Vec::new();
        let (fv, duplicates) = (opts.field_validation, &opts.duplicate_fields[..]);
        // A status write's body is checked against the stored object (when there is
        // one: otherwise a bad body is refused before the object is found missing).
        let stored = match subresource {
            Some("status") => match self.get_with(strategy, def, ns, name) {
                Ok(kv) => Some(self.one_in_served_version(def, kv).await?),
                Err(_) => None,
            },
            _ => None,
        };
        let new = match &stored {
            Some(old) => self.decode_status(
                strategy,
                def,
                body,
                &old.value,
                fv,
                duplicates,
                &mut warnings,
            )?,
            None => self.decode(strategy, def, body, fv, duplicates, &mut warnings)?,
        };
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
        let old = match stored {
            Some(old) => old,
            None => self.get_served(strategy, def, ns, name).await?,
        };
        if expected.is_some_and(|rv| rv != old.mod_revision) {
            return Err(ApiError::modified(def, name));
        }
        let mut written = self
            .replace(strategy, def, &old, new, subresource, opts)
            .await?;
        written.warnings.extend(warnings);
        Ok(written)
    }

    /// Applies the update rules to `new` against the stored `old` and writes it.
    async fn replace(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        old: &KeyValue,
        mut new: Value,
        subresource: Option<&str>,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let cx = self.context(def);
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
        if !opts.binding {
            // A binding writes `spec.nodeName` and the `PodScheduled` condition of the
            // stored pod in one write, as upstream's BindingREST updates storage
            // directly; every other write keeps the part it does not own.
            strategy.prepare_for_update(&cx, &mut new, oldv, subresource);
        }
        {
            // Only these fields of the stored metadata are read: no copy of the rest.
            let old_meta = oldv["metadata"].as_object();
            let meta = meta_mut(&mut new);
            for f in [
                "uid",
                "creationTimestamp",
                "deletionTimestamp",
                "deletionGracePeriodSeconds",
                "generation",
                "namespace",
            ] {
                match old_meta.and_then(|m| m.get(f)) {
                    Some(v) => meta.insert(f.into(), v.clone()),
                    None => meta.remove(f),
                };
            }
            meta.remove("resourceVersion");
        }
        object::drop_empty_metadata(&mut new);
        let mut warnings = Vec::new();
        let call = opts.requester.as_ref().map(|user| Call {
            operation: Operation::Update,
            subresource: if opts.scale {
                Some("scale")
            } else {
                subresource
            },
            user,
            dry_run: opts.dry_run,
            field_manager: opts.field_manager.as_deref(),
        });
        if let Some(call) = &call {
            new = self
                .admit_mutating(strategy, def, call, new, Some(oldv), &mut warnings)
                .await?;
        }
        if def.custom.is_none() {
            object::as_stored(&mut new);
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
        if strategy.tracks_generation() && strategy.generation_moves(&cx, &new, oldv) {
            let unset = i64::from(strategy.generation_set_on_create());
            let generation = oldv["metadata"]["generation"].as_i64().unwrap_or(unset) + 1;
            meta_mut(&mut new).insert("generation".into(), json!(generation));
        }
        if let Some(call) = &call {
            strategy.admit(&cx, call.user, &new, Some(oldv))?;
        }
        let (allocated, released) = if subresource.is_none() {
            let allocated = strategy.allocate(&cx, &mut new, Some(oldv))?;
            let released = strategy
                .allocations(oldv)
                .minus(&strategy.allocations(&new));
            (allocated, released)
        } else {
            Default::default()
        };
        let errors = if opts.binding {
            // A binding sets the one field updates may not change: validated as new.
            strategy.validate(&cx, &new)
        } else if subresource == Some("status") {
            strategy.validate_status_update(&cx, &new, oldv)
        } else if let Some(sub) = subresource {
            strategy.validate_subresource_update(&cx, sub, &new, oldv)
        } else {
            strategy.validate_update(&cx, &new, oldv)
        };
        if !errors.is_empty() {
            allocated.release(&self.allocators);
            return Err(ApiError::invalid(def, &name, &errors));
        }
        if let Err(e) = check_stored_size(def, &name, &new) {
            allocated.release(&self.allocators);
            return Err(e);
        }
        if !opts.binding {
            let subresource = if opts.scale {
                Some("scale")
            } else {
                subresource
            };
            if let Err(e) = self.admit_pod_security(
                def,
                Operation::Update,
                subresource,
                opts.requester.as_ref(),
                &new,
                Some(oldv),
                &mut warnings,
            ) {
                allocated.release(&self.allocators);
                return Err(e);
            }
        }
        if let Some(call) = &call {
            if let Err(e) = self
                .admit_validating(def, call, Some(&new), Some(oldv), &mut warnings)
                .await
            {
                allocated.release(&self.allocators);
                return Err(e);
            }
        }
        // An apply that only adds a co-owner still records it; other writes that change
        // nothing are not written.
        let unchanged = if opts.fields_managed {
            object::same_content(&new, oldv)
                && new["metadata"]["managedFields"] == oldv["metadata"]["managedFields"]
        } else {
            object::same_content(&new, oldv)
        };
        if unchanged {
            return Ok(with_warnings(written(old.clone(), false), warnings));
        }
        // Updates are charged where they can grow a quota's usage, as upstream's
        // evaluators handle them: Services (type, ports) and claims (storage requests).
        if subresource.is_none()
            && def.group.is_empty()
            && matches!(def.plural, "services" | "persistentvolumeclaims")
        {
            let ns = object::namespace(oldv);
            let admitted = match crate::apiserver::quota::check_limits(
                self.store.as_ref(),
                def,
                ns,
                &new,
                false,
            ) {
                Ok(()) => {
                    crate::apiserver::quota::charge(
                        self.store.as_ref(),
                        def,
                        ns,
                        &new,
                        Some(oldv),
                        opts.dry_run,
                    )
                    .await
                }
                Err(e) => Err(e),
            };
            if let Err(e) = admitted {
                allocated.release(&self.allocators);
                return Err(e);
            }
        }
        if !opts.dry_run && strategy.is_heartbeat(oldv, &new) {
            // Acknowledged in memory only; the stored resourceVersion stays valid.
            return Ok(with_warnings(
                written(self.heartbeats.record(old, new), false),
                warnings,
            ));
        }
        let new = self.track_update(def, Some(oldv), new, subresource, opts);
        let new = match self.in_storage_version(def, new).await {
            Ok(new) => new,
            Err(e) => {
                allocated.release(&self.allocators);
                return Err(e);
            }
        };
        if let Err(e) = check_stored_size(def, &name, &new) {
            allocated.release(&self.allocators);
            return Err(e);
        }
        if opts.dry_run {
            allocated.release(&self.allocators);
            // As upstream's dry-run storage: the answer carries the current
            // resourceVersion (`kubectl diff` compares it with the live object).
            let mut new = new;
            crate::store::set_resource_version(&mut new, old.mod_revision);
            return Ok(with_warnings(
                written(old.clone().with_value(new), false),
                warnings,
            ));
        }
        // Finalization: the last finalizer removed from an object being deleted (without
        // a pending grace period) deletes it.
        let finished = object::is_deleting(&new)
            && object::finalizers(&new).is_empty()
            && strategy.finalized(&new)
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
                    strategy.allocations(&kv.value).release(&self.allocators);
                } else {
                    released.release(&self.allocators);
                }
                Ok(with_warnings(written(kv, deleted), warnings))
            }
            Err(e) => {
                allocated.release(&self.allocators);
                Err(store_error(def, &name, e))
            }
        }
    }

    /// Read-modify-write with retries on concurrent changes: `mutate` gets the current
    /// object and returns the desired one.
    #[allow(clippy::too_many_arguments)]
    pub(super) async fn modify_with(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        subresource: Option<&str>,
        opts: &WriteOptions,
        mutate: &(dyn Fn(&Value) -> Result<Value, ApiError> + Sync),
    ) -> Result<Written, ApiError> {
        let mut last_err = None;
        for _ in 0..MAX_CONFLICT_RETRIES {
            let old = self.get_served(strategy, def, ns, name).await?;
            let new = mutate(&old.value)?;
            let mut warnings = Vec::new();
            let fv = opts.field_validation;
            let new = if subresource == Some("status") {
                self.decode_status(strategy, def, new, &old.value, fv, &[], &mut warnings)?
            } else {
                self.decode(strategy, def, new, fv, &[], &mut warnings)?
            };
            check_name(&new, name)?;
            // A resourceVersion set by the caller (e.g. in a patch) is a precondition.
            let rv = object::meta_str(&new, "resourceVersion").unwrap_or("");
            if !rv.is_empty() && rv != old.mod_revision.to_string() {
                return Err(ApiError::modified(def, name));
            }
            match self
                .replace(strategy, def, &old, new, subresource, opts)
                .await
            {
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

    /// Deletes an object: immediately, or by marking it (graceful pod deletion,
    /// finalizers, namespace teardown) for a controller or kubelet to finish.
    pub(super) async fn delete_with(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        opts: &DeleteOptions,
    ) -> Result<Written, ApiError> {
        for _ in 0..MAX_CONFLICT_RETRIES {
            // The delete marks or removes the object as stored; the admission webhooks
            // see it in the version asked for.
            let old = self.get_with(strategy, def, ns, name)?;
            let mut warnings = Vec::new();
            if let Some(user) = &opts.requester {
                let call = Call {
                    operation: Operation::Delete,
                    subresource: None,
                    user,
                    dry_run: opts.dry_run,
                    field_manager: None,
                };
                let seen = if self.webhooks.is_idle() && self.policies.is_idle() {
                    old.clone()
                } else {
                    self.one_in_served_version(def, old.clone()).await?
                };
                self.admit_delete(def, &call, &seen.value, &mut warnings)
                    .await?;
            }
            match self
                .delete_once(strategy, def, &old, opts)
                .await
                .map(|w| with_warnings(w, warnings))
            {
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

    /// One delete attempt against the stored `old`: preconditions, the strategy's
    /// refusal, grace period and teardown rules, garbage-collection finalizers.
    async fn delete_once(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        old: &KeyValue,
        opts: &DeleteOptions,
    ) -> Result<Written, ApiError> {
        let cx = self.context(def);
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
        strategy.check_delete(&cx, oldv)?;
        let grace = strategy.grace_period(oldv, opts.grace_period);
        let mut finalizers = object::finalizers(oldv);
        // Foreground and Orphan are exclusive; an explicit policy replaces the other
        // (also on an object already being deleted), Background drops both. The garbage
        // collector handles the dependents and removes the finalizer; without
        // dependents there is nothing to wait for, so none is added.
        let has_gc_finalizer = finalizers
            .iter()
            .any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER);
        let propagation = opts.propagation.as_deref().or(if has_gc_finalizer {
            None
        } else {
            strategy.default_propagation()
        });
        let gc_finalizer = match propagation {
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
        let needs_marking = strategy.deleted_by_controller() || grace > 0 || !finalizers.is_empty();
        if !needs_marking {
            if opts.dry_run {
                return Ok(written(old.clone(), true));
            }
            let kv = self
                .store
                .delete(&old.key, Some(old.mod_revision))
                .await
                .map_err(|e| store_error(def, &name, e))?;
            strategy.allocations(&kv.value).release(&self.allocators);
            return Ok(written(kv, true));
        }
        let mut new = oldv.clone();
        let already = object::is_deleting(oldv);
        let old_grace = oldv["metadata"]["deletionGracePeriodSeconds"].as_i64();
        {
            let meta = meta_mut(&mut new);
            if !already || old_grace.is_some_and(|g| grace < g) {
                let when = deletion_time(chrono::Utc::now(), grace);
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
        strategy.prepare_for_delete(&mut new);
        if object::same_content(&new, oldv) {
            return Ok(written(old.clone(), false));
        }
        if opts.dry_run {
            return Ok(written(unstored(&old.key, new), false));
        }
        let kv = self
            .store
            .update(&old.key, new, Some(old.mod_revision))
            .await
            .map_err(|e| store_error(def, &name, e))?;
        Ok(written(kv, false))
    }

    /// Whether any object names `obj` as its owner.
    fn has_dependents(&self, obj: &Value) -> bool {
        let Some(uid) = object::uid(obj) else {
            return false;
        };
        let ns = object::namespace(obj);
        self.catalog.snapshot().iter().any(|def| {
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
}

/// When an object deleted with `grace` seconds goes away: a grace beyond what a timestamp
/// can hold (`gracePeriodSeconds` is any int64) ends in the year 9999.
fn deletion_time(now: chrono::DateTime<chrono::Utc>, grace: i64) -> chrono::DateTime<chrono::Utc> {
    use chrono::TimeZone;
    let latest = chrono::Utc
        .with_ymd_and_hms(9999, 12, 31, 23, 59, 59)
        .single()
        .unwrap_or(now);
    chrono::Duration::try_seconds(grace.max(0))
        .and_then(|d| now.checked_add_signed(d))
        .map_or(latest, |when| when.min(latest))
}

#[cfg(test)]
mod deletion_time_tests {
    use super::*;

    #[test]
    fn the_size_bound_is_never_below_the_json_length() {
        let samples = [
            json!(null),
            json!(true),
            json!(u64::MAX),
            json!(i64::MIN),
            json!(-1.7976931348623157e308),
            json!("\u{1}\u{1f}\"\\\n é ✓"),
            json!([]),
            json!({}),
            json!({"metadata": {"name": "p", "labels": {"a\u{0}": "b\t"}},
                   "spec": {"containers": [{"name": "c", "ports": [{"containerPort": 80}]}]},
                   "list": [1, 2.5, null, false, [], {}]}),
        ];
        for v in samples {
            let exact = serde_json::to_vec(&v).unwrap().len();
            assert!(max_json_len(&v) >= exact, "{v}: bound below {exact}");
        }
    }

    #[test]
    fn objects_near_the_limit_are_measured_exactly() {
        let def = crate::api::resources::by_plural("", "v1", "configmaps").unwrap();
        // Its bound is above the limit, its JSON below: admitted.
        let big = json!({"data": {"a": "x".repeat(MAX_OBJECT_BYTES / 2)}});
        assert!(max_json_len(&big) > MAX_OBJECT_BYTES);
        assert!(check_stored_size(def, "big", &big).is_ok());
        let huge = json!({"data": {"a": "x".repeat(MAX_OBJECT_BYTES)}});
        let e = check_stored_size(def, "huge", &huge).unwrap_err();
        assert_eq!((e.code, e.reason), (413, "RequestEntityTooLarge"));
    }

    #[test]
    fn a_stored_object_is_deleting_only_with_a_deletion_timestamp() {
        let kv = |v: Value| KeyValue::from_raw("k", serde_json::to_vec(&v).unwrap().into(), 1, 1);
        assert!(!stored_is_deleting(&kv(
            json!({"metadata": {"name": "ns"}})
        )));
        assert!(stored_is_deleting(&kv(
            json!({"metadata": {"name": "ns", "deletionTimestamp": "2026-12-05T00:00:00Z"}})
        )));
        assert!(!stored_is_deleting(&kv(
            json!({"metadata": {"name": "ns", "labels": {"x": "\"deletionTimestamp\""}}})
        )));
        assert!(!stored_is_deleting(&kv(
            json!({"metadata": {"name": "ns", "deletionTimestamp": null}})
        )));
    }

    #[test]
    fn huge_grace_periods_end_in_the_year_9999_and_negative_ones_now() {
        let now = chrono::Utc::now();
        assert_eq!(deletion_time(now, 30), now + chrono::Duration::seconds(30));
        assert_eq!(deletion_time(now, -5), now);
        for grace in [i64::MAX, i64::MAX / 1000, 1 << 40] {
            assert_eq!(
                deletion_time(now, grace).to_rfc3339(),
                "9999-12-31T23:59:59+00:00"
            );
        }
    }
}
