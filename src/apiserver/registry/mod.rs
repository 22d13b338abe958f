//! Resource semantics shared by the HTTP handlers and the in-process controllers: the
//! `Registry` and its API. The storage rules every kind shares live in `generic`; what
//! a kind does differently (defaults, status resets, Service IPs and ports, heartbeats,
//! pod binding, scale, namespace teardown) in its `Strategy` under `kinds/`.

mod admit;
mod generic;
mod kinds;
mod managed;
mod strategy;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use ipnet::Ipv4Net;
use serde_json::{json, Value};

use super::admission::{PodSecurity, Policies, Webhooks};
use super::allocator::Allocators;
use super::heartbeats::Heartbeats;
use crate::api::defaults;
use crate::api::identity::User;
use crate::api::patch::{self, PatchType};
use crate::api::resources::{Catalog, ResourceDef, Resources};
use crate::api::status::ApiError;
use crate::store::{KeyValue, ListPage, Revision, Store, StoreError, Watcher};
use generic::now;
pub use kinds::crd::CLEANUP_FINALIZER;
pub use kinds::event::EventRateLimit;
pub use kinds::priority_class::{priority_classes, system_priority_classes};
pub use managed::manager_from_user_agent;
pub use strategy::{schema_of, strategy_for, Strategy};

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
    /// otherwise immutable, and the status (the `PodScheduled` condition) is written in
    /// the same write (only `bind_pod` sets this).
    binding: bool,
    /// The client the write is for (the HTTP handlers set it): the kinds' admission
    /// rules (`Strategy::admit`: NodeRestriction, the event rate limit) apply to it.
    /// `None` for the in-process controllers, which are trusted.
    pub requester: Option<User>,
    /// Who the write is recorded for in `managedFields` (`fieldManager`, or the
    /// client's user agent); `None`: an in-process component.
    pub field_manager: Option<String>,
    /// Server-side apply takes fields other managers own instead of conflicting.
    pub force: bool,
    /// The write's managed fields are already recorded (server-side apply did it).
    fields_managed: bool,
    /// The write is one of the `scale` subresource: admission webhooks are asked about
    /// an autoscaling/v1 Scale (only `update_scale` sets this).
    scale: bool,
}

#[derive(Debug, Clone, Default)]
pub struct DeleteOptions {
    pub dry_run: bool,
    /// The client the delete is for (the HTTP handlers set it): admission webhooks are
    /// asked about it. `None` for the in-process controllers.
    pub requester: Option<User>,
    pub grace_period: Option<i64>,
    pub propagation: Option<String>,
    pub precondition_uid: Option<String>,
    pub precondition_rv: Option<String>,
    /// The client asked `orphanDependents: false`: a delete that does not remove the
    /// object at once answers 202 (upstream's only case; otherwise 200).
    pub orphan_dependents_false: bool,
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

/// Finalizer asking the garbage collector to delete dependents before the owner.
pub const FOREGROUND_FINALIZER: &str = "foregroundDeletion";
/// Finalizer asking the garbage collector to orphan dependents before the owner goes.
pub const ORPHAN_FINALIZER: &str = "orphan";

pub struct Registry {
    store: Arc<dyn Store>,
    pub allocators: Allocators,
    /// Node heartbeats acknowledged in memory instead of being written.
    pub heartbeats: Arc<Heartbeats>,
    /// `tolerationSeconds` given to pods for the not-ready/unreachable NoExecute taints
    /// they do not tolerate themselves (upstream's DefaultTolerationSeconds admission):
    /// how long pods stay on a lost node before they are evicted.
    pub default_tolerations: defaults::DefaultTolerations,
    /// The cluster's pod network (`--cluster-cidr`): a Node's podCIDRs must lie inside.
    /// `None` (tests) checks nothing.
    pub cluster_cidr: Option<Ipv4Net>,
    /// Events written by each node identity, rate-limited (upstream's EventRateLimit).
    pub event_rate_limit: EventRateLimit,
    /// The merge shapes of the built-in kinds (server-side apply).
    shapes: managed::Shapes,
    /// Every create records managedFields (`--managed-fields all`); otherwise an object
    /// is tracked from its first server-side apply on.
    pub managed_fields_for_all: bool,
    /// What is served: the built-in kinds and the custom resources of the established
    /// CustomResourceDefinitions (kept current by `apiserver::crds`).
    pub catalog: Catalog,
    /// The service-account token issuer and authenticator (TokenRequest, TokenReview);
    /// `None` serves neither.
    pub service_account_tokens: Option<Arc<crate::apiserver::serviceaccount::ServiceAccountTokens>>,
    /// The admission webhooks asked about every client write (kept current by
    /// `Webhooks::run`; idle until a configuration is stored).
    pub webhooks: Arc<Webhooks>,
    /// The clients of the CRDs' conversion webhooks (`apiserver::conversion`).
    pub conversion_clients: Arc<super::admission::Clients>,
    /// The ValidatingAdmissionPolicies evaluated on every client write (kept current by
    /// `Policies::run`; idle until a binding is stored).
    pub policies: Arc<Policies>,
    /// The built-in PodSecurity admission plugin (upstream's defaults: every namespace
    /// privileged unless its `pod-security.kubernetes.io/*` labels ask for more).
    pub pod_security: PodSecurity,
    /// The RBAC policy in memory: the authorizer, and the escalation checks of RBAC
    /// writes (fed by `Rbac::load` and `Rbac::run`).
    pub rbac: Arc<crate::apiserver::rbac::Rbac>,
    /// The nodes' last resource-metrics scrapes and rates (`metrics.k8s.io`, fed by
    /// `resource_metrics::collect`; empty until it runs).
    pub resource_metrics: Arc<crate::apiserver::resource_metrics::ResourceMetrics>,
}

/// Whether objects of `def` are stored in another shape than `def` serves (reads go
/// through [`in_version`]).
pub fn converts(def: &ResourceDef) -> bool {
    def.custom.is_some() || kinds::hpa::is_v1(def) || kinds::event::is_v1(def)
}

/// A stored object as a client of version `def` sees it: custom objects in any served
/// version, HorizontalPodAutoscalers as `autoscaling/v1`, Events as `events.k8s.io/v1`.
pub fn in_version(def: &ResourceDef, kv: KeyValue) -> KeyValue {
    if kinds::hpa::is_v1(def) {
        kinds::hpa::v1_view(kv)
    } else if kinds::event::is_v1(def) {
        kinds::event::v1_view(kv)
    } else {
        kinds::custom::in_version(def, kv)
    }
}

impl Registry {
    pub fn new(store: Arc<dyn Store>, allocators: Allocators) -> Registry {
        let registry = Registry {
            store,
            allocators,
            heartbeats: Arc::new(Heartbeats::new()),
            default_tolerations: defaults::DefaultTolerations::default(),
            cluster_cidr: None,
            event_rate_limit: EventRateLimit::default(),
            catalog: Catalog::new(),
            shapes: managed::Shapes::default(),
            managed_fields_for_all: false,
            service_account_tokens: None,
            webhooks: Arc::new(Webhooks::default()),
            conversion_clients: Arc::new(super::admission::Clients::new(None)),
            policies: Arc::default(),
            pod_security: PodSecurity::default(),
            rbac: Arc::default(),
            resource_metrics: Arc::default(),
        };
        registry.reclaim_allocations();
        registry
    }

    /// What is served now (a snapshot).
    pub fn resources(&self) -> Arc<Resources> {
        self.catalog.snapshot()
    }

    /// Whether the datastore takes writes (the `/readyz` datastore check).
    pub async fn datastore_ready(&self) -> Result<(), StoreError> {
        self.store.ready().await
    }

    pub fn get(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
    ) -> Result<KeyValue, ApiError> {
        self.get_with(strategy_for(def), def, ns, name)
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
        let (strategy, cx) = (strategy_for(def), self.context(def));
        page.items = page
            .items
            .into_iter()
            .map(|kv| strategy.fresh_view(&cx, kv))
            .collect();
        page
    }

    pub async fn create(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        body: Value,
        opts: &WriteOptions,
    ) -> Result<Written, ApiError> {
        let strategy = strategy_for(def);
        if let Some(done) = strategy.create_instead(self, ns, &body, opts) {
            return done.await;
        }
        self.create_with(strategy, def, ns, body, opts).await
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
        self.update_with(strategy_for(def), def, ns, name, body, subresource, opts)
            .await
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
        self.modify_with(strategy_for(def), def, ns, name, subresource, opts, mutate)
            .await
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
        if patch_type == PatchType::Apply {
            return self
                .server_side_apply(def, ns, name, body, subresource, opts)
                .await;
        }
        managed::check_options(opts.field_manager.as_deref(), opts.force, false)?;
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
        self.delete_with(strategy_for(def), def, ns, name, opts)
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

    /// Waits until the store has reached revision `rev`, at most `timeout`; whether it
    /// did (reads that must not be older than a resourceVersion wait on this).
    pub async fn wait_for_revision(&self, rev: Revision, timeout: std::time::Duration) -> bool {
        let now = self.store.revision();
        if now >= rev {
            return true;
        }
        // Every key starts with "": this watcher sees each later revision.
        let Ok(mut watcher) = self.store.watch("", now) else {
            return self.store.revision() >= rev;
        };
        let reached = async {
            loop {
                match watcher.next().await {
                    Ok(event) if event.revision() >= rev => return true,
                    Ok(_) => {}
                    Err(_) => return false,
                }
            }
        };
        tokio::time::timeout(timeout, reached)
            .await
            .unwrap_or(false)
            || self.store.revision() >= rev
    }

    /// The object stored at `key` (a key taken from a stored object or watch event),
    /// as persisted: without in-memory heartbeats.
    pub fn get_by_key(&self, key: &str) -> Option<KeyValue> {
        self.store.get(key)
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

/// Sets (or replaces) a CustomResourceDefinition condition (no `lastProbeTime`; the
/// transition time moves only when the status does).
pub fn set_crd_condition(obj: &mut Value, kind: &str, status: &str, reason: &str, message: &str) {
    set_condition(obj, kind, status, Some(reason), Some(message));
    if let Some(conditions) = obj["status"]["conditions"].as_array_mut() {
        for c in conditions.iter_mut().filter(|c| c["type"] == kind) {
            c.as_object_mut().map(|c| c.remove("lastProbeTime"));
        }
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
