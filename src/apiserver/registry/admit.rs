//! The registry's side of the admission webhooks and policies: what a write tells them, and the
//! object a mutating webhook returned brought back to the kind's rules (decoded,
//! server-set metadata kept, defaulted again) before validation.

use serde_json::Value;

use super::kinds::workload::set_scale_replicas;
use super::strategy::Strategy;
use super::Registry;
use crate::api::identity::User;
use crate::api::object::{self, meta_mut};
use crate::api::resources;
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;
use crate::apiserver::admission::{
    self, Cluster, Operation, PodSecurity, PodSecurityAttributes, Request,
};

/// Metadata only the server writes: a webhook's changes to it are not taken.
const SERVER_SET_METADATA: &[&str] = &[
    "uid",
    "creationTimestamp",
    "generation",
    "deletionTimestamp",
    "deletionGracePeriodSeconds",
    "resourceVersion",
];

/// One client write as the webhooks see it.
pub(super) struct Call<'a> {
    pub operation: Operation,
    pub subresource: Option<&'a str>,
    pub user: &'a User,
    pub dry_run: bool,
    pub field_manager: Option<&'a str>,
}

impl Call<'_> {
    /// Whether the write is one of the `scale` subresource (webhooks see Scales).
    fn is_scale(&self) -> bool {
        self.subresource == Some("scale")
    }

    fn request<'r>(
        &'r self,
        def: &'r ResourceDef,
        name: &'r str,
        namespace: Option<&'r str>,
        object: Option<&'r Value>,
        old_object: Option<&'r Value>,
    ) -> Request<'r> {
        Request {
            group: def.group,
            version: def.version,
            kind: if self.is_scale() {
                ("autoscaling", "v1", "Scale")
            } else {
                (def.group, def.version, def.kind)
            },
            resource: def.plural,
            subresource: self.subresource.unwrap_or(""),
            name,
            namespace,
            operation: self.operation,
            user: self.user,
            object,
            old_object,
            dry_run: self.dry_run,
            options: admission::options(self.operation, self.dry_run, self.field_manager),
        }
    }
}

impl Registry {
    /// Runs the mutating webhooks on `obj` (defaulted, as it would be stored; `old` the
    /// stored object on updates) and returns the object to go on with: a changed object
    /// is decoded, keeps its server-set metadata and is defaulted again.
    pub(super) async fn admit_mutating(
        &self,
        strategy: &dyn Strategy,
        def: &ResourceDef,
        call: &Call<'_>,
        obj: Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        if self.webhooks.is_idle() {
            return Ok(obj);
        }
        let name = object::name(&obj).to_string();
        let namespace = object::namespace(&obj).map(str::to_string);
        if call.is_scale() {
            return self
                .admit_mutating_scale(def, call, obj, old, warnings)
                .await;
        }
        let request = call.request(def, &name, namespace.as_deref(), None, old);
        let mut current = Some(obj.clone());
        let changed = self
            .webhooks
            .mutate(self, def, &request, &mut current, warnings)
            .await?;
        let Some(mutated) = current.filter(|_| changed) else {
            return Ok(obj);
        };
        let cx = self.context(def);
        let mut typed = strategy.typed(&cx, &mutated).map_err(|e| {
            ApiError::internal(format!(
                "Internal error occurred: the object a mutating admission webhook returned is not a valid {}: {e}",
                def.kind
            ))
        })?;
        if object::name(&typed) != name || object::namespace(&typed) != namespace.as_deref() {
            return Err(ApiError::internal(
                "Internal error occurred: a mutating admission webhook changed the object's name or namespace",
            ));
        }
        let meta = meta_mut(&mut typed);
        for field in SERVER_SET_METADATA {
            match obj["metadata"].get(*field) {
                Some(v) => meta.insert((*field).into(), v.clone()),
                None => meta.remove(*field),
            };
        }
        match old {
            None => strategy.prepare_for_create(&cx, &mut typed),
            Some(old) => strategy.prepare_for_update(&cx, &mut typed, old, call.subresource),
        }
        Ok(typed)
    }

    /// The mutating webhooks on a write of `scale`: they see and patch the Scale; the
    /// replica count they leave is the object's.
    async fn admit_mutating_scale(
        &self,
        def: &ResourceDef,
        call: &Call<'_>,
        mut obj: Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<Value, ApiError> {
        let name = object::name(&obj).to_string();
        let namespace = object::namespace(&obj).map(str::to_string);
        let old_scale = old.map(|o| self.scale_of(def, o));
        let request = call.request(def, &name, namespace.as_deref(), None, old_scale.as_ref());
        let mut scale = Some(self.scale_of(def, &obj));
        if self
            .webhooks
            .mutate(self, def, &request, &mut scale, warnings)
            .await?
        {
            let replicas = scale.map(|s| s["spec"]["replicas"].clone());
            match replicas {
                Some(r @ Value::Number(_)) => set_scale_replicas(def, &mut obj, r),
                _ => {
                    return Err(ApiError::internal(
                        "Internal error occurred: a mutating admission webhook left the Scale without spec.replicas",
                    ))
                }
            }
        }
        Ok(obj)
    }

    /// Runs the validating webhooks on the write as it will be stored (`obj` is `None`
    /// for deletes, `old` the stored object on updates and deletes).
    pub(super) async fn admit_validating(
        &self,
        def: &ResourceDef,
        call: &Call<'_>,
        obj: Option<&Value>,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if self.webhooks.is_idle() && self.policies.is_idle() {
            return Ok(());
        }
        let Some(subject) = obj.or(old) else {
            return Ok(());
        };
        let name = object::name(subject).to_string();
        let namespace = object::namespace(subject).map(str::to_string);
        let (obj_scale, old_scale) = if call.is_scale() {
            (
                obj.map(|o| self.scale_of(def, o)),
                old.map(|o| self.scale_of(def, o)),
            )
        } else {
            (None, None)
        };
        let (obj, old) = if call.is_scale() {
            (obj_scale.as_ref(), old_scale.as_ref())
        } else {
            (obj, old)
        };
        let request = call.request(def, &name, namespace.as_deref(), obj, old);
        self.admit_by_policies(def, &request, warnings)?;
        self.webhooks.validate(self, def, &request, warnings).await
    }

    /// The ValidatingAdmissionPolicies (upstream runs them before the validating
    /// webhooks): a refusal is the answer; their warnings join `warnings`, their audit
    /// annotations go to the request's audit event.
    fn admit_by_policies(
        &self,
        def: &ResourceDef,
        request: &Request<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if self.policies.is_idle() {
            return Ok(());
        }
        let verdict = self.policies.validate(self, def, request)?;
        warnings.extend(verdict.warnings);
        for (key, value) in &verdict.audit_annotations {
            crate::apiserver::audit::annotate(key, value);
        }
        Ok(())
    }

    /// Both kinds of webhooks on a delete of the stored `old` (patches do not apply:
    /// there is no new object).
    pub(super) async fn admit_delete(
        &self,
        def: &ResourceDef,
        call: &Call<'_>,
        old: &Value,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if self.webhooks.is_idle() && self.policies.is_idle() {
            return Ok(());
        }
        let name = object::name(old).to_string();
        let namespace = object::namespace(old).map(str::to_string);
        let request = call.request(def, &name, namespace.as_deref(), None, Some(old));
        self.admit_by_policies(def, &request, warnings)?;
        let mut none = None;
        self.webhooks
            .mutate(self, def, &request, &mut none, warnings)
            .await?;
        self.webhooks.validate(self, def, &request, warnings).await
    }
}

/// What the PodSecurity plugin reads: namespaces and pods from the cache.
impl Cluster for Registry {
    fn namespace_labels(&self, name: &str) -> Option<serde_json::Map<String, Value>> {
        let namespaces = resources::by_plural("", "v1", "namespaces").expect("served");
        self.store.get(&namespaces.key(None, name)).map(|kv| {
            kv.value["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default()
        })
    }

    fn pods(&self, namespace: &str) -> Vec<Value> {
        let pods = resources::by_plural("", "v1", "pods").expect("served");
        self.store
            .list(&pods.list_prefix(Some(namespace)), None, 0, &|_| true)
            .items
            .into_iter()
            .map(|kv| (*kv.value).clone())
            .collect()
    }
}

impl Registry {
    /// The PodSecurity plugin on a create or update (`old` the stored object), for
    /// clients and orc's own controllers alike (upstream's controllers write through
    /// the API and meet it too): a refusal is the answer; warnings join `warnings`;
    /// audit annotations go to the request's audit event.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn admit_pod_security(
        &self,
        def: &ResourceDef,
        operation: Operation,
        subresource: Option<&str>,
        user: Option<&User>,
        obj: &Value,
        old: Option<&Value>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        if !PodSecurity::applies_to(def) {
            return Ok(());
        }
        let attrs = PodSecurityAttributes {
            def,
            subresource: subresource.unwrap_or(""),
            operation,
            name: object::name(obj),
            username: user.map(|u| u.name.as_str()),
            object: obj,
            old_object: old,
        };
        let outcome = self.pod_security.validate(self, &attrs);
        for (key, value) in &outcome.audit_annotations {
            crate::apiserver::audit::annotate(key, value);
        }
        match outcome.refusal {
            Some(e) => Err(e),
            None => {
                warnings.extend(outcome.warnings);
                Ok(())
            }
        }
    }
}
