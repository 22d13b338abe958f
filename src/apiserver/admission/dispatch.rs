//! The admission webhook dispatcher (upstream `MutatingAdmissionWebhook` and
//! `ValidatingAdmissionWebhook`): follows the stored configurations through a watch,
//! runs the matching mutating webhooks in order (with one reinvocation round) and the
//! matching validating webhooks in parallel, and turns their answers into refusals,
//! patches and warnings.

use std::sync::{Arc, RwLock};

use serde_json::{Map, Value};

use super::client::{CallError, Clients};
use super::matching::{parse_configuration, Hook, Target};
use super::patch;
use super::review::{Request, Response};
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::registry::Registry;
use crate::store::EventType;

/// The stored configurations' key prefix (both kinds).
const CONFIGURATIONS_PREFIX: &str = "/admissionregistration.k8s.io/";

/// The webhooks in the order they run: by configuration name, then as listed.
#[derive(Default)]
struct Configured {
    mutating: Vec<Arc<Hook>>,
    validating: Vec<Arc<Hook>>,
}

/// The admission webhooks of the cluster. A cache of the stored configurations (kept
/// current by [`Webhooks::run`]; a request never reads them from the store).
pub struct Webhooks {
    configured: RwLock<Arc<Configured>>,
    clients: Clients,
}

impl Default for Webhooks {
    fn default() -> Webhooks {
        Webhooks::new(None)
    }
}

/// The status reasons upstream defines (a webhook's `status.reason` is passed on when it
/// is one of them).
const KNOWN_REASONS: &[&str] = &[
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "AlreadyExists",
    "Conflict",
    "Gone",
    "Invalid",
    "ServerTimeout",
    "Timeout",
    "TooManyRequests",
    "BadRequest",
    "MethodNotAllowed",
    "NotAcceptable",
    "RequestEntityTooLarge",
    "UnsupportedMediaType",
    "InternalError",
    "Expired",
    "ServiceUnavailable",
];

/// Upstream `ToStatusErr`: a webhook's refusal, at least a 400, naming the webhook.
pub fn denied(hook: &str, status: &Map<String, Value>) -> ApiError {
    let code = status
        .get("code")
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| (400..600).contains(c))
        .unwrap_or(400);
    let given = status.get("reason").and_then(Value::as_str).unwrap_or("");
    let reason = KNOWN_REASONS
        .iter()
        .find(|r| **r == given)
        .copied()
        .unwrap_or("");
    let message = status.get("message").and_then(Value::as_str).unwrap_or("");
    let by = format!("admission webhook \"{hook}\" denied the request");
    let message = if !message.is_empty() {
        format!("{by}: {message}")
    } else if !given.is_empty() {
        format!("{by}: {given}")
    } else {
        format!("{by} without explanation")
    };
    ApiError::new(code, reason, message)
}

/// A webhook that could not be asked, for a request it must refuse (failurePolicy Fail).
fn call_failed(hook: &str, e: &CallError) -> ApiError {
    ApiError::internal(format!(
        "Internal error occurred: failed calling webhook \"{hook}\": {e}"
    ))
}

impl Webhooks {
    /// No webhooks yet; `cluster_ca_pem` is trusted for webhooks without a caBundle.
    pub fn new(cluster_ca_pem: Option<String>) -> Webhooks {
        Webhooks {
            configured: RwLock::new(Arc::new(Configured::default())),
            clients: Clients::new(cluster_ca_pem),
        }
    }

    fn snapshot(&self) -> Arc<Configured> {
        self.configured
            .read()
            .map(|c| c.clone())
            .unwrap_or_default()
    }

    /// Whether any webhook is configured (requests skip all work when none is).
    pub fn is_idle(&self) -> bool {
        let c = self.snapshot();
        c.mutating.is_empty() && c.validating.is_empty()
    }

    /// Serves exactly the given stored configurations (either kind, any order).
    pub fn configure<'a>(&self, configurations: impl Iterator<Item = &'a Value>) {
        // The prefix the configurations are watched under holds the admission policies too.
        let mut named: Vec<(&str, bool, &Value)> = configurations
            .filter(|c| {
                c["kind"]
                    .as_str()
                    .is_some_and(|k| k.ends_with("WebhookConfiguration"))
            })
            .map(|c| {
                (
                    object::name(c),
                    c["kind"] == "MutatingWebhookConfiguration",
                    c,
                )
            })
            .collect();
        named.sort_by(|a, b| a.0.cmp(b.0));
        let mut configured = Configured::default();
        for (_, mutating, config) in named {
            let hooks = parse_configuration(config, mutating)
                .into_iter()
                .map(Arc::new);
            if mutating {
                configured.mutating.extend(hooks);
            } else {
                configured.validating.extend(hooks);
            }
        }
        let keep: Vec<(String, String, bool)> = configured
            .mutating
            .iter()
            .chain(&configured.validating)
            .map(|h| (h.configuration.clone(), h.name.clone(), h.mutating))
            .collect();
        self.clients.retain(&|config, hook, mutating| {
            keep.iter()
                .any(|(c, h, m)| c == config && h == hook && *m == mutating)
        });
        if let Ok(mut current) = self.configured.write() {
            *current = Arc::new(configured);
        }
    }

    /// Reads the stored configurations (at start, before the API answers).
    pub fn load(&self, registry: &Registry) {
        let (items, _, _) = registry.snapshot_and_watch(CONFIGURATIONS_PREFIX);
        self.configure(items.iter().map(|kv| &*kv.value));
    }

    /// Keeps the configurations current from a watch of the stored ones, forever.
    pub async fn run(self: Arc<Self>, registry: Arc<Registry>) {
        loop {
            let (items, _, mut watcher) = registry.snapshot_and_watch(CONFIGURATIONS_PREFIX);
            let mut current: std::collections::BTreeMap<String, Arc<Value>> = items
                .into_iter()
                .map(|kv| (kv.key.to_string(), kv.value.get()))
                .collect();
            self.configure(current.values().map(|v| &**v));
            loop {
                match watcher.next().await {
                    Ok(event) => {
                        match event.kind {
                            EventType::Deleted => current.remove(&*event.kv.key),
                            _ => current.insert(event.kv.key.to_string(), event.kv.value.get()),
                        };
                        self.configure(current.values().map(|v| &**v));
                        tracing::info!(
                            configurations = current.len(),
                            "admission webhook configurations changed"
                        );
                    }
                    Err(e) => {
                        tracing::info!(error = %e, "webhook configuration watch ended; relisting");
                        break;
                    }
                }
            }
        }
    }

    /// The labels a namespaceSelector looks at for this request: the Namespace's own
    /// for namespaces, its namespace's for namespaced objects, `None` (not looked at)
    /// for other cluster-scoped objects.
    fn namespace_labels(
        registry: &Registry,
        def: &ResourceDef,
        req: &Request,
    ) -> Option<Option<Map<String, Value>>> {
        if def.group.is_empty() && def.kind == "Namespace" {
            let own = req.object.or(req.old_object);
            return Some(own.and_then(object::labels).cloned());
        }
        if !def.namespaced {
            return None;
        }
        let namespaces = resources::by_plural("", "v1", "namespaces")?;
        let ns = req.namespace?;
        Some(
            registry
                .get(namespaces, None, ns)
                .ok()
                .and_then(|kv| object::labels(&kv.value).cloned()),
        )
    }

    /// Whether `hook` is to be called for `req` (with `object` the object as it is now).
    fn wants(
        hook: &Hook,
        target: &Target,
        namespace_labels: &Option<Option<Map<String, Value>>>,
        object: Option<&Value>,
        old: Option<&Value>,
    ) -> bool {
        hook.matches_rules(target)
            && hook.matches_selectors(namespace_labels.as_ref().map(Option::as_ref), object, old)
    }

    /// Asks one webhook: `Ok(None)` when it failed and its failurePolicy is Ignore.
    async fn ask(
        &self,
        registry: &Registry,
        hook: &Hook,
        req: &Request<'_>,
    ) -> Result<Option<Response>, ApiError> {
        if req.dry_run && !hook.dry_run_safe {
            return Err(ApiError::bad_request(format!(
                "admission webhook \"{}\" does not support dry run",
                hook.name
            )));
        }
        let uid = uuid::Uuid::new_v4().to_string();
        let review = req.review(&uid);
        let started = std::time::Instant::now();
        match self.clients.call(registry, hook, &review, &uid).await {
            Ok(response) => {
                tracing::debug!(webhook = %hook.name, allowed = response.allowed, elapsed_ms = started.elapsed().as_millis() as u64, "admission webhook answered");
                Ok(Some(response))
            }
            Err(e) if hook.fail_open => {
                tracing::warn!(webhook = %hook.name, error = %e, "admission webhook failed; ignored (failurePolicy Ignore)");
                Ok(None)
            }
            Err(e) => {
                tracing::warn!(webhook = %hook.name, error = %e, "admission webhook failed; request refused (failurePolicy Fail)");
                Err(call_failed(&hook.name, &e))
            }
        }
    }

    pub(super) fn target<'a>(
        registry: &Registry,
        def: &'a ResourceDef,
        req: &'a Request,
        versions: &'a mut Vec<&'static str>,
    ) -> Target<'a> {
        *versions = registry
            .resources()
            .iter()
            .filter(|d| d.group == def.group && d.plural == def.plural && d.version != def.version)
            .map(|d| d.version)
            .collect();
        Target {
            group: def.group,
            version: def.version,
            resource: def.plural,
            subresource: req.subresource,
            namespaced: def.namespaced,
            operation: req.operation,
            other_versions: versions,
        }
    }

    /// Runs the matching mutating webhooks on `obj` (the object as it would be stored,
    /// `None` for deletes): refusals are errors, patches are applied to `obj`, warnings
    /// are added to `warnings`. Returns whether any webhook changed the object.
    pub async fn mutate(
        &self,
        registry: &Registry,
        def: &ResourceDef,
        req: &Request<'_>,
        obj: &mut Option<Value>,
        warnings: &mut Vec<String>,
    ) -> Result<bool, ApiError> {
        let configured = self.snapshot();
        if configured.mutating.is_empty() {
            return Ok(false);
        }
        let mut versions = Vec::new();
        let target = Self::target(registry, def, req, &mut versions);
        if target.is_exempt() {
            return Ok(false);
        }
        let ns_labels = Self::namespace_labels(registry, def, req);
        // How many changes the object had seen when each webhook last ran.
        let mut seen_changes: Vec<Option<usize>> = vec![None; configured.mutating.len()];
        let mut changes = 0;
        for round in 0..2 {
            for (i, hook) in configured.mutating.iter().enumerate() {
                if round == 1 && !(hook.reinvoke && seen_changes[i].is_some_and(|s| s < changes)) {
                    continue;
                }
                if !Self::wants(hook, &target, &ns_labels, obj.as_ref(), req.old_object) {
                    continue;
                }
                let asked = Request {
                    object: obj.as_ref(),
                    ..req.clone()
                };
                let Some(response) = self.ask(registry, hook, &asked).await? else {
                    seen_changes[i] = Some(changes);
                    continue;
                };
                warnings.extend(response.warnings.iter().cloned());
                if !response.allowed {
                    return Err(denied(&hook.name, &response.status));
                }
                if let (Some(p), Some(current)) = (&response.patch, obj.as_ref()) {
                    let patched = patch::apply(current, p).map_err(|e| {
                        ApiError::internal(format!(
                            "Internal error occurred: admission webhook \"{}\" answered a bad patch: {e}",
                            hook.name
                        ))
                    })?;
                    if &patched != current {
                        *obj = Some(patched);
                        changes += 1;
                    }
                }
                seen_changes[i] = Some(changes);
            }
            if changes == 0 {
                break;
            }
        }
        Ok(changes > 0)
    }

    /// Runs the matching validating webhooks in parallel on the request as it will be
    /// stored: the first refusal (in webhook order) is the answer.
    pub async fn validate(
        &self,
        registry: &Registry,
        def: &ResourceDef,
        req: &Request<'_>,
        warnings: &mut Vec<String>,
    ) -> Result<(), ApiError> {
        let configured = self.snapshot();
        if configured.validating.is_empty() {
            return Ok(());
        }
        let mut versions = Vec::new();
        let target = Self::target(registry, def, req, &mut versions);
        if target.is_exempt() {
            return Ok(());
        }
        let ns_labels = Self::namespace_labels(registry, def, req);
        let calls = configured
            .validating
            .iter()
            .filter(|h| Self::wants(h, &target, &ns_labels, req.object, req.old_object))
            .map(|hook| async move { (hook, self.ask(registry, hook, req).await) });
        let mut refusal = None;
        for (hook, result) in futures::future::join_all(calls).await {
            match result {
                Ok(Some(response)) => {
                    warnings.extend(response.warnings.iter().cloned());
                    if !response.allowed && refusal.is_none() {
                        refusal = Some(denied(&hook.name, &response.status));
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    refusal.get_or_insert(e);
                }
            }
        }
        refusal.map_or(Ok(()), Err)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn status(v: Value) -> Map<String, Value> {
        v.as_object().cloned().expect("object")
    }

    #[test]
    fn refusals_name_the_webhook_and_are_at_least_400() {
        let e = denied(
            "deny.example.com",
            &status(
                json!({"code": 403, "reason": "Forbidden", "message": "no pods labelled deny"}),
            ),
        );
        assert_eq!((e.code, e.reason), (403, "Forbidden"));
        assert_eq!(
            e.message,
            "admission webhook \"deny.example.com\" denied the request: no pods labelled deny"
        );
        let e = denied("d.example.com", &status(json!({"code": 200})));
        assert_eq!((e.code, e.reason), (400, ""));
        assert_eq!(
            e.message,
            "admission webhook \"d.example.com\" denied the request without explanation"
        );
        let e = denied("d.example.com", &status(json!({"reason": "Custom"})));
        assert_eq!(
            e.message,
            "admission webhook \"d.example.com\" denied the request: Custom"
        );
    }

    #[test]
    fn configurations_run_in_name_order_and_the_cache_follows_changes() {
        let config = |name: &str, kind: &str, hooks: &[&str]| {
            json!({"kind": kind, "metadata": {"name": name},
                   "webhooks": hooks.iter().map(|h| json!({"name": h, "clientConfig": {"url": "https://x"}, "sideEffects": "None"})).collect::<Vec<_>>()})
        };
        let webhooks = Webhooks::default();
        assert!(webhooks.is_idle());
        let b = config("b", "MutatingWebhookConfiguration", &["b1.x.y", "b2.x.y"]);
        let a = config("a", "MutatingWebhookConfiguration", &["a1.x.y"]);
        let v = config("v", "ValidatingWebhookConfiguration", &["v1.x.y"]);
        webhooks.configure([&b, &v, &a].into_iter());
        let names: Vec<String> = webhooks
            .snapshot()
            .mutating
            .iter()
            .map(|h| h.name.clone())
            .collect();
        assert_eq!(names, ["a1.x.y", "b1.x.y", "b2.x.y"]);
        assert_eq!(webhooks.snapshot().validating.len(), 1);
        webhooks.configure(std::iter::empty());
        assert!(webhooks.is_idle());
    }
}
