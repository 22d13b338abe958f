//! Authentication (client certificates, bearer tokens, with failed attempts rate-limited
//! per source) and authorization of API requests: admins may do anything, nodes get what
//! their kubelet needs for themselves and the pods bound to them (upstream's Node
//! authorizer and NodeRestriction, simplified), and the join token's bootstrap identity may
//! only ask for a node credential.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Mutex, RwLock};
use std::time::{Duration, Instant};

use serde_json::Value;

use super::rbac::{Attributes, Decision, Rbac};
use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;

pub use crate::api::identity::{
    User, ADMIN_GROUP, BOOTSTRAP_GROUP, BOOTSTRAP_USER, NODES_GROUP, NODE_LEASE_NAMESPACE,
    NODE_USER_PREFIX,
};

/// What the listener knows about the connection a request came on; set as a request
/// extension (requests built in tests have none).
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub peer: SocketAddr,
    /// The binding of the client certificate (its subject OU), see
    /// [`crate::tls::Identity::credential`].
    pub credential: Option<String>,
}

/// Why a bearer token did not authenticate.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenRefusal {
    /// No such token.
    Invalid,
    /// Too many failures from this source lately: not even checked; retry after this.
    Limited(Duration),
}

impl TokenRefusal {
    /// The answer upstream gives: 401, or 429 with `retryAfterSeconds` (the caller adds
    /// the `Retry-After` header from it).
    pub fn to_api_error(self) -> ApiError {
        match self {
            TokenRefusal::Invalid => ApiError::unauthorized(),
            TokenRefusal::Limited(after) => ApiError {
                details: Some(serde_json::json!({"retryAfterSeconds": retry_after_secs(after)})),
                ..ApiError::new(
                    429,
                    "TooManyRequests",
                    "Too many requests, please try again later.",
                )
            },
        }
    }
}

/// Whole seconds to wait, at least 1 (the `Retry-After` header has no fractions).
pub fn retry_after_secs(after: Duration) -> u64 {
    after.as_secs_f64().ceil().max(1.0) as u64
}

/// Static bearer tokens (compared in constant time), each mapped to a user, with failed
/// attempts limited per source address.
pub struct TokenAuthenticator {
    tokens: RwLock<HashMap<String, User>>,
    failures: FailureLimiter,
}

impl Default for TokenAuthenticator {
    fn default() -> Self {
        TokenAuthenticator {
            tokens: RwLock::default(),
            failures: FailureLimiter::new(FAILURE_BURST, FAILURES_PER_SECOND),
        }
    }
}

impl TokenAuthenticator {
    pub fn insert(&self, token: &str, user: User) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), user);
    }

    /// Makes `token` the only one authenticating as `user` (the join token after
    /// `orc token rotate`): the previous ones of that user stop working.
    pub fn replace(&self, token: &str, user: User) {
        let mut tokens = self.tokens.write().unwrap_or_else(|e| e.into_inner());
        tokens.retain(|_, u| *u != user);
        tokens.insert(token.to_string(), user);
    }

    pub fn authenticate(&self, token: &str) -> Option<User> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens
            .iter()
            .find(|(known, _)| constant_time_eq(known.as_bytes(), token.as_bytes()))
            .map(|(_, user)| user.clone())
    }

    /// Authenticates `token` sent from `source` (unknown for in-process requests): a
    /// source with too many recent failures is refused without checking the token, so
    /// guessing goes no faster than the limit. Failures are logged at info with the source,
    /// never with the token.
    pub fn authenticate_from(
        &self,
        token: &str,
        source: Option<IpAddr>,
    ) -> Result<User, TokenRefusal> {
        self.authenticate_from_or(token, source, |_| None)
    }

    /// [`Self::authenticate_from`], asking `other` (e.g. the service-account token
    /// authenticator) about a token that is none of the static ones; its refusals count
    /// as failures of the source too.
    pub fn authenticate_from_or(
        &self,
        token: &str,
        source: Option<IpAddr>,
        other: impl FnOnce(&str) -> Option<User>,
    ) -> Result<User, TokenRefusal> {
        let Some(ip) = source else {
            return self
                .authenticate(token)
                .or_else(|| other(token))
                .ok_or(TokenRefusal::Invalid);
        };
        let now = Instant::now();
        if let Err(after) = self.failures.check(ip, now) {
            return Err(TokenRefusal::Limited(after));
        }
        if let Some(user) = self.authenticate(token).or_else(|| other(token)) {
            return Ok(user);
        }
        let limited = self.failures.record_failure(ip, now);
        if limited {
            tracing::info!(source = %ip, retry_after_s = retry_after_secs(self.failures.wait(ip, now)), "authentication failed: invalid bearer token; further attempts from this source are refused for a while");
        } else {
            tracing::info!(source = %ip, "authentication failed: invalid bearer token");
        }
        Err(TokenRefusal::Invalid)
    }
}

/// Failed authentications a source may make in a burst, and how fast it earns more:
/// a misconfigured agent retrying with back-off never hits this, a guesser gets one try a
/// second.
const FAILURE_BURST: u32 = 10;
const FAILURES_PER_SECOND: f64 = 1.0;
/// Sources tracked at most; beyond, the ones that are not limited are forgotten.
const MAX_TRACKED_SOURCES: usize = 10_000;

/// A token bucket per source address for failed authentications. IPv6 sources count per
/// /64 (one host usually owns a whole /64).
#[derive(Debug)]
pub struct FailureLimiter {
    burst: f64,
    per_second: f64,
    buckets: Mutex<HashMap<IpAddr, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

impl FailureLimiter {
    pub fn new(burst: u32, per_second: f64) -> FailureLimiter {
        FailureLimiter {
            burst: f64::from(burst),
            per_second,
            buckets: Mutex::default(),
        }
    }

    /// `Err(wait)` while `ip` has no failure left to spend.
    pub fn check(&self, ip: IpAddr, now: Instant) -> Result<(), Duration> {
        match self.wait(ip, now) {
            Duration::ZERO => Ok(()),
            wait => Err(wait),
        }
    }

    /// How long until `ip` may fail again (zero: now).
    fn wait(&self, ip: IpAddr, now: Instant) -> Duration {
        let buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        let tokens = buckets
            .get(&source_key(ip))
            .map_or(self.burst, |b| self.refilled(b, now));
        if tokens >= 1.0 {
            Duration::ZERO
        } else {
            Duration::from_secs_f64((1.0 - tokens) / self.per_second)
        }
    }

    /// Spends one failure of `ip`; true when none is left afterwards.
    pub fn record_failure(&self, ip: IpAddr, now: Instant) -> bool {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if buckets.len() >= MAX_TRACKED_SOURCES {
            buckets.retain(|_, b| self.refilled(b, now) < self.burst);
            if buckets.len() >= MAX_TRACKED_SOURCES {
                buckets.clear();
            }
        }
        let bucket = buckets.entry(source_key(ip)).or_insert(Bucket {
            tokens: self.burst,
            updated: now,
        });
        bucket.tokens = (self.refilled(bucket, now) - 1.0).max(0.0);
        bucket.updated = now;
        bucket.tokens < 1.0
    }

    fn refilled(&self, bucket: &Bucket, now: Instant) -> f64 {
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        (bucket.tokens + elapsed * self.per_second).min(self.burst)
    }
}

/// The key a source is counted under: the address, or its /64 for IPv6.
fn source_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V4(_) => ip,
        IpAddr::V6(v6) => {
            let prefix = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(prefix.into())
        }
    }
}

/// Compares two byte strings without an early exit on the first difference.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// What a request wants to do, for authorization.
#[derive(Debug, Clone, Copy)]
pub struct Action<'a> {
    pub verb: &'a str,
    pub def: &'a ResourceDef,
    pub namespace: Option<&'a str>,
    pub name: Option<&'a str>,
    pub subresource: Option<&'a str>,
    /// For list/watch: the one object a `metadata.name=` field selector narrows it to.
    pub selected_name: Option<&'a str>,
}

/// The stored objects node authorization depends on (upstream's node graph). This is read
/// from the watch cache and may be a moment stale.
pub trait NodeGraph {
    /// `spec.nodeName` of the pod `namespace/name` (`None` if the pod does not exist).
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String>;
    /// Whether a pod bound to `node` in `namespace` references the `kind`
    /// (`Secret`, `ConfigMap`, `ServiceAccount` or `PersistentVolumeClaim`) named
    /// `name`; for `PersistentVolume` (cluster-scoped, `namespace` empty): whether the
    /// volume is bound to a claim such a pod references.
    fn node_references(&self, node: &str, namespace: &str, kind: &str, name: &str) -> bool;
    /// Whether the PersistentVolume `name` is one `node` may see: its node affinity names
    /// the node, or it is bound to a claim a pod bound to the node uses.
    fn volume_related(&self, _node: &str, _name: &str) -> bool {
        false
    }
    /// Whether the Secret `namespace/name` holds the certificate of an Ingress served by
    /// orc's built-in ingress (which runs on every node): what a node's ingress proxy
    /// reads besides its pods' Secrets.
    fn ingress_tls_secret(&self, _namespace: &str, _name: &str) -> bool {
        false
    }
}

/// Decides whether `user` may perform `action` (403 `Status` if not), as upstream's
/// authorizer chain: `system:masters` may do anything; a node gets what the node
/// authorizer grants, else what RBAC grants (its refusal keeps the node authorizer's
/// reason); everyone else what RBAC grants.
pub fn authorize(
    user: &User,
    action: &Action<'_>,
    graph: &dyn NodeGraph,
    rbac: &Rbac,
) -> Result<(), ApiError> {
    if user.is_admin() {
        return Ok(());
    }
    let node_refusal = match user.node_name() {
        Some(node) => match authorize_node(user, node, action, graph) {
            Ok(()) => return Ok(()),
            Err(e) => Some(e),
        },
        None => None,
    };
    match rbac.authorize(user, &rbac_attributes(action)) {
        Decision::Allow => Ok(()),
        refused => Err(node_refusal.unwrap_or_else(|| {
            let reason = refused.reason();
            forbidden(
                user,
                action,
                (!reason.is_empty()).then(|| reason.to_string()),
            )
        })),
    }
}

/// What RBAC is asked for `action` (a list narrowed to one name by a field selector is
/// still a list of no name, as upstream).
pub fn rbac_attributes(action: &Action<'_>) -> Attributes {
    Attributes::resource(
        action.verb,
        action.namespace.unwrap_or(""),
        action.def.group,
        action.def.plural,
        action.subresource.unwrap_or(""),
        action.name.unwrap_or(""),
    )
}

const READ_VERBS: [&str; 3] = ["get", "list", "watch"];
const WRITE_VERBS: [&str; 2] = ["update", "patch"];

fn authorize_node(
    user: &User,
    node: &str,
    action: &Action<'_>,
    graph: &dyn NodeGraph,
) -> Result<(), ApiError> {
    let verb = action.verb;
    let read = READ_VERBS.contains(&verb);
    let deny = |why: Option<String>| Err(forbidden(user, action, why));
    match (action.def.group, action.def.plural, action.subresource) {
        ("", "nodes", None | Some("status")) => {
            if read {
                return Ok(());
            }
            match (verb, action.name) {
                // The name is in the body: `admit_create` checks it.
                ("create", None) if action.subresource.is_none() => Ok(()),
                ("update" | "patch" | "delete", Some(name)) if name == node => Ok(()),
                ("update" | "patch" | "delete", Some(name)) => deny(Some(format!(
                    "node \"{node}\" is not allowed to modify node \"{name}\""
                ))),
                _ => deny(None),
            }
        }
        ("", "pods", None) if read => Ok(()),
        ("", "pods", sub @ (None | Some("status"))) => {
            let wanted = match (verb, sub) {
                ("delete", None) => "delete pods",
                ("update" | "patch", Some("status")) => "update pod status for pods",
                _ => return deny(None),
            };
            let bound = match (action.namespace, action.name) {
                (Some(ns), Some(name)) => graph.pod_node(ns, name).as_deref() == Some(node),
                _ => false,
            };
            if bound {
                Ok(())
            } else {
                deny(Some(format!(
                    "node \"{node}\" can only {wanted} with spec.nodeName set to itself"
                )))
            }
        }
        ("", "services" | "endpoints" | "namespaces", None) if read => Ok(()),
        ("discovery.k8s.io", "endpointslices", None) if read => Ok(()),
        // Upstream's node rules: a kubelet reads the RuntimeClasses of its pods' handlers.
        ("node.k8s.io", "runtimeclasses", None) if read => Ok(()),
        // The built-in ingress proxy routes by every Ingress of its classes.
        ("networking.k8s.io", "ingresses" | "ingressclasses", None) if read => Ok(()),
        // Every agent enforces NetworkPolicies for its pods: it reads the policies (and
        // the pods and namespaces above) of the whole cluster, and may change none.
        ("networking.k8s.io", "networkpolicies", None) if read => Ok(()),
        // Lists and watches are narrowed to the volumes on the node (`narrow_for_node`);
        // a local-path volume's finalizer is the only thing it may change (the volume
        // strategy's admission checks that).
        ("", "persistentvolumes", None) => match (verb, action.name) {
            ("list" | "watch", None) => Ok(()),
            ("get" | "update" | "patch", Some(name)) if graph.volume_related(node, name) => Ok(()),
            _ => deny(Some(format!(
                "no relationship found between node '{node}' and this object"
            ))),
        },
        ("", "persistentvolumeclaims", None) if verb == "get" => {
            match (action.namespace, action.name) {
                (Some(ns), Some(name))
                    if graph.node_references(node, ns, "PersistentVolumeClaim", name) =>
                {
                    Ok(())
                }
                _ => deny(Some(format!(
                    "no relationship found between node '{node}' and this object"
                ))),
            }
        }
        // Tokens for the accounts of its pods; NodeRestriction (in the TokenRequest
        // handler) then requires the token to be bound to such a pod.
        ("", "serviceaccounts", Some("token")) if verb == "create" => {
            match (action.namespace, action.name) {
                (Some(ns), Some(name))
                    if graph.node_references(node, ns, "ServiceAccount", name) =>
                {
                    Ok(())
                }
                _ => deny(Some(format!(
                    "no relationship found between node '{node}' and this object"
                ))),
            }
        }
        ("", plural @ ("secrets" | "configmaps"), None) if read => {
            let name = match verb {
                "get" => action.name,
                _ => action.selected_name,
            };
            let kind = if plural == "secrets" {
                "Secret"
            } else {
                "ConfigMap"
            };
            match (action.namespace, name) {
                (Some(ns), Some(name)) if graph.node_references(node, ns, kind, name) => Ok(()),
                (Some(ns), Some(name))
                    if kind == "Secret" && graph.ingress_tls_secret(ns, name) =>
                {
                    Ok(())
                }
                _ => deny(Some(format!(
                    "no relationship found between node '{node}' and this object"
                ))),
            }
        }
        // Reads and watches of one claim its pods use (upstream's graph edge pod → pvc;
        // the volumes bound to them are above).
        ("", "persistentvolumeclaims", None) if read => {
            let name = match verb {
                "get" => action.name,
                _ => action.selected_name,
            };
            match (action.namespace, name) {
                (Some(ns), Some(name))
                    if graph.node_references(node, ns, "PersistentVolumeClaim", name) =>
                {
                    Ok(())
                }
                _ => deny(Some(format!(
                    "no relationship found between node '{node}' and this object"
                ))),
            }
        }
        ("coordination.k8s.io", "leases", None) => {
            if action.namespace != Some(NODE_LEASE_NAMESPACE) {
                return deny(None);
            }
            match (verb, action.name) {
                ("create", None) => Ok(()),
                ("get" | "update" | "patch" | "delete", Some(name)) if name == node => Ok(()),
                ("get" | "update" | "patch" | "delete", Some(_)) => deny(Some(
                    "can only access node lease with the same name as the requesting node".into(),
                )),
                _ => deny(None),
            }
        }
        ("" | "events.k8s.io", "events", None)
            if verb == "create" || WRITE_VERBS.contains(&verb) =>
        {
            Ok(())
        }
        _ => deny(None),
    }
}

/// Whether `node` may still read `obj` of kind `def`, checked for every object a node's
/// watch sends (the node authorizer decides only when a watch starts): a Secret,
/// ConfigMap, PersistentVolumeClaim or PersistentVolume only while a pod bound to the
/// node uses it; everything else a node may watch at all stays readable.
pub fn node_may_read(node: &str, def: &ResourceDef, obj: &Value, graph: &dyn NodeGraph) -> bool {
    let kind = match (def.group, def.plural) {
        ("", "secrets") => "Secret",
        ("", "configmaps") => "ConfigMap",
        ("", "persistentvolumeclaims") => "PersistentVolumeClaim",
        ("", "persistentvolumes") => {
            // A local volume pinned to the node stays readable without a pod: its agent
            // removes the volume's directory once the claim is gone.
            if crate::api::storage::volume_names_node(obj, node) {
                return true;
            }
            "PersistentVolume"
        }
        _ => return true,
    };
    let namespace = crate::api::object::namespace(obj).unwrap_or("");
    let name = crate::api::object::name(obj);
    graph.node_references(node, namespace, kind, name)
        || (kind == "Secret" && graph.ingress_tls_secret(namespace, name))
}

/// What a node's list or watch of `def` returns: PersistentVolumes only where their node
/// affinity names the node (what its agent acts on); everything else as selected.
pub fn narrow_for_node(
    user: &User,
    def: &ResourceDef,
    predicate: super::watch::Predicate,
) -> super::watch::Predicate {
    match narrows_for_node(user, def) {
        Some(node) => {
            let node = node.to_string();
            std::sync::Arc::new(move |obj: &Value| {
                crate::api::storage::volume_names_node(obj, &node) && predicate(obj)
            })
        }
        _ => predicate,
    }
}

/// The node whose reads of `def` [`narrow_for_node`] narrows, if any.
pub fn narrows_for_node<'u>(user: &'u User, def: &ResourceDef) -> Option<&'u str> {
    match (user.node_name(), def.group, def.plural) {
        (Some(node), "", "persistentvolumes") => Some(node),
        _ => None,
    }
}

/// Admission of a create once its body is known (NodeRestriction): a node may create only
/// its own Node and its own Lease.
pub fn admit_create(user: &User, def: &ResourceDef, obj: &Value) -> Result<(), ApiError> {
    let Some(node) = user.node_name() else {
        return Ok(());
    };
    let name = crate::api::object::name(obj);
    let why = match def.plural {
        "nodes" if name != node => {
            format!("node \"{node}\" is not allowed to modify node \"{name}\"")
        }
        "leases" if name != node => {
            "can only access node lease with the same name as the requesting node".to_string()
        }
        _ => return Ok(()),
    };
    Err(ApiError::forbidden(format!(
        "{} \"{name}\" is forbidden: {why}",
        crate::api::status::resource_name(def)
    )))
}

/// The upstream wording of a denial, with the reason a node rule gives, if any.
fn forbidden(user: &User, action: &Action<'_>, why: Option<String>) -> ApiError {
    let resource = match action.subresource {
        Some(sub) => format!("{}/{sub}", action.def.plural),
        None => action.def.plural.to_string(),
    };
    let scope = match action.namespace {
        Some(ns) => format!("in the namespace \"{ns}\""),
        None => "at the cluster scope".to_string(),
    };
    let subject = match action.name {
        Some(name) => format!(
            "{} \"{name}\" is forbidden",
            crate::api::status::resource_name(action.def)
        ),
        None => format!(
            "{} is forbidden",
            crate::api::status::resource_name(action.def)
        ),
    };
    let why = why.map(|w| format!(": {w}")).unwrap_or_default();
    ApiError::forbidden(format!(
        "{subject}: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}{why}",
        user.name, action.verb, action.def.group
    ))
}

/// Whether `pod` references the `kind` (`Secret` or `ConfigMap`) named `name`: volumes
/// (also projected), env and envFrom of every container, and image pull secrets; or
/// runs as the `ServiceAccount` named `name`; or mounts the `PersistentVolumeClaim`
/// named `name` (a persistentVolumeClaim volume, or the `<pod>-<volume>` claim of a
/// generic ephemeral volume).
pub fn pod_references(pod: &Value, kind: &str, name: &str) -> bool {
    let spec = &pod["spec"];
    if kind == "ServiceAccount" {
        return spec["serviceAccountName"].as_str() == Some(name);
    }
    if kind == "PersistentVolumeClaim" {
        return crate::api::storage::pod_uses_claim(pod, name);
    }
    let (volume_field, ref_field, key_ref, from_ref) = match kind {
        "Secret" => ("secret", "secretName", "secretKeyRef", "secretRef"),
        "ConfigMap" => ("configMap", "name", "configMapKeyRef", "configMapRef"),
        _ => return false,
    };
    let items = |v: &Value| v.as_array().cloned().unwrap_or_default();
    let named = |v: &Value, field: &str| v[field].as_str() == Some(name);
    if kind == "Secret"
        && items(&spec["imagePullSecrets"])
            .iter()
            .any(|s| named(s, "name"))
    {
        return true;
    }
    for volume in items(&spec["volumes"]) {
        if named(&volume[volume_field], ref_field) {
            return true;
        }
        let projected = items(&volume["projected"]["sources"]);
        if projected.iter().any(|s| named(&s[volume_field], "name")) {
            return true;
        }
    }
    let containers = ["initContainers", "containers", "ephemeralContainers"]
        .iter()
        .flat_map(|f| items(&spec[*f]));
    for c in containers {
        if items(&c["env"])
            .iter()
            .any(|e| named(&e["valueFrom"][key_ref], "name"))
        {
            return true;
        }
        if items(&c["envFrom"])
            .iter()
            .any(|e| named(&e[from_ref], "name"))
        {
            return true;
        }
    }
    false
}

impl NodeGraph for super::registry::Registry {
    fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
        let pods = crate::api::resources::by_plural("", "v1", "pods").expect("served");
        let kv = self.get(pods, Some(namespace), name).ok()?;
        Some(
            kv.value["spec"]["nodeName"]
                .as_str()
                .unwrap_or("")
                .to_string(),
        )
    }

    fn node_references(&self, node: &str, namespace: &str, kind: &str, name: &str) -> bool {
        if kind == "PersistentVolume" {
            // pv → pvc: the claim it names, bound back to it, used by a pod of the node.
            let pvs = crate::api::resources::by_plural("", "v1", "persistentvolumes");
            let pvcs = crate::api::resources::by_plural("", "v1", "persistentvolumeclaims");
            let (Some(pvs), Some(pvcs)) = (pvs, pvcs) else {
                return false;
            };
            let Ok(pv) = self.get(pvs, None, name) else {
                return false;
            };
            let claim = &pv.value["spec"]["claimRef"];
            let (Some(ns), Some(claim)) = (claim["namespace"].as_str(), claim["name"].as_str())
            else {
                return false;
            };
            let bound_back = self
                .get(pvcs, Some(ns), claim)
                .is_ok_and(|pvc| pvc.value["spec"]["volumeName"].as_str() == Some(name));
            return bound_back && self.node_references(node, ns, "PersistentVolumeClaim", claim);
        }
        let pods = crate::api::resources::by_plural("", "v1", "pods").expect("served");
        let page = self.list(pods, Some(namespace), None, 1, &|kv| {
            kv.value["spec"]["nodeName"].as_str() == Some(node)
                && pod_references(&kv.value, kind, name)
        });
        !page.items.is_empty()
    }

    fn ingress_tls_secret(&self, namespace: &str, name: &str) -> bool {
        let by_plural = crate::api::resources::by_plural;
        let (Some(ingresses), Some(classes)) = (
            by_plural("networking.k8s.io", "v1", "ingresses"),
            by_plural("networking.k8s.io", "v1", "ingressclasses"),
        ) else {
            return false;
        };
        let classes: Vec<Value> = self
            .list(classes, None, None, 0, &|_| true)
            .items
            .iter()
            .map(|kv| (*kv.value).clone())
            .collect();
        let page = self.list(ingresses, Some(namespace), None, 1, &|kv| {
            crate::api::ingress::tls_secret_names(&kv.value).contains(&name)
                && crate::api::ingress::is_ours(&kv.value, &classes)
        });
        !page.items.is_empty()
    }

    fn volume_related(&self, node: &str, name: &str) -> bool {
        let volumes =
            crate::api::resources::by_plural("", "v1", "persistentvolumes").expect("served");
        let Ok(kv) = self.get(volumes, None, name) else {
            return false;
        };
        let pv = &kv.value;
        if crate::api::storage::volume_names_node(pv, node) {
            return true;
        }
        let claim = &pv["spec"]["claimRef"];
        match (claim["namespace"].as_str(), claim["name"].as_str()) {
            (Some(ns), Some(claim)) => {
                self.node_references(node, ns, "PersistentVolumeClaim", claim)
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::by_plural;
    use serde_json::json;

    /// A node graph over plain pod values.
    struct Pods(Vec<Value>);

    impl NodeGraph for Pods {
        fn pod_node(&self, namespace: &str, name: &str) -> Option<String> {
            self.0
                .iter()
                .find(|p| p["metadata"]["namespace"] == namespace && p["metadata"]["name"] == name)
                .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
        }

        fn node_references(&self, node: &str, namespace: &str, kind: &str, name: &str) -> bool {
            self.0.iter().any(|p| {
                p["metadata"]["namespace"] == namespace
                    && p["spec"]["nodeName"] == node
                    && pod_references(p, kind, name)
            })
        }
    }

    fn graph() -> Pods {
        Pods(vec![
            json!({"metadata": {"namespace": "default", "name": "mine"},
                   "spec": {"nodeName": "n1", "volumes": [{"name": "v", "secret": {"secretName": "db"}}],
                            "containers": [{"name": "c", "envFrom": [{"configMapRef": {"name": "cfg"}}]}]}}),
            json!({"metadata": {"namespace": "default", "name": "theirs"},
                   "spec": {"nodeName": "n2", "volumes": [{"name": "v", "secret": {"secretName": "other"}}]}}),
        ])
    }

    fn node(name: &str) -> User {
        User {
            name: format!("system:node:{name}"),
            groups: vec![NODES_GROUP.into()],
            ..Default::default()
        }
    }

    fn action<'a>(
        verb: &'a str,
        plural: &str,
        namespace: Option<&'a str>,
        name: Option<&'a str>,
        subresource: Option<&'a str>,
    ) -> Action<'a> {
        let def = crate::api::resources::RESOURCES
            .iter()
            .find(|d| d.plural == plural)
            .expect("served resource");
        Action {
            verb,
            def,
            namespace,
            name,
            subresource,
            selected_name: None,
        }
    }

    fn allowed(user: &User, a: &Action<'_>) -> bool {
        authorize(user, a, &graph(), &Rbac::new()).is_ok()
    }

    #[test]
    fn admins_may_do_anything_and_others_get_an_upstream_style_403() {
        let pods = by_plural("", "v1", "pods").unwrap();
        let action = Action {
            verb: "list",
            def: pods,
            namespace: Some("default"),
            name: None,
            subresource: None,
            selected_name: None,
        };
        let admin = User {
            name: "system:admin".into(),
            groups: vec![ADMIN_GROUP.into()],
            ..Default::default()
        };
        assert!(authorize(&admin, &action, &graph(), &Rbac::new()).is_ok());
        let bob = User {
            name: "bob".into(),
            groups: vec![],
            ..Default::default()
        };
        let err = authorize(&bob, &action, &graph(), &Rbac::new()).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }

    #[test]
    fn node_may_update_its_own_node_status_but_not_another_nodes() {
        let n1 = node("n1");
        for verb in ["update", "patch"] {
            assert!(allowed(
                &n1,
                &action(verb, "nodes", None, Some("n1"), Some("status"))
            ));
            assert!(allowed(&n1, &action(verb, "nodes", None, Some("n1"), None)));
        }
        let err = authorize(
            &n1,
            &action("patch", "nodes", None, Some("n2"), Some("status")),
            &graph(),
            &Rbac::new(),
        )
        .unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "nodes \"n2\" is forbidden: User \"system:node:n1\" cannot patch resource \"nodes/status\" in API group \"\" at the cluster scope: node \"n1\" is not allowed to modify node \"n2\""
        );
        // Every node reads every Node: its host-gw routes follow the others' podCIDRs.
        assert!(allowed(&n1, &action("list", "nodes", None, None, None)));
        assert!(allowed(&n1, &action("watch", "nodes", None, None, None)));
        assert!(allowed(
            &n1,
            &action("get", "nodes", None, Some("n2"), None)
        ));
    }

    #[test]
    fn node_may_read_every_network_policy_and_write_none() {
        let n1 = node("n1");
        for verb in ["list", "watch"] {
            assert!(allowed(
                &n1,
                &action(verb, "networkpolicies", None, None, None)
            ));
        }
        assert!(allowed(
            &n1,
            &action(
                "get",
                "networkpolicies",
                Some("default"),
                Some("deny"),
                None
            )
        ));
        for (verb, name) in [
            ("create", None),
            ("update", Some("deny")),
            ("delete", Some("deny")),
        ] {
            assert!(
                !allowed(
                    &n1,
                    &action(verb, "networkpolicies", Some("default"), name, None)
                ),
                "{verb}"
            );
        }
    }

    #[test]
    fn node_may_create_only_its_own_node_and_lease() {
        let n1 = node("n1");
        let nodes = by_plural("", "v1", "nodes").unwrap();
        let leases = by_plural("coordination.k8s.io", "v1", "leases").unwrap();
        assert!(allowed(&n1, &action("create", "nodes", None, None, None)));
        assert!(admit_create(&n1, nodes, &json!({"metadata": {"name": "n1"}})).is_ok());
        let err = admit_create(&n1, nodes, &json!({"metadata": {"name": "n2"}})).unwrap_err();
        assert_eq!(err.code, 403);
        assert!(
            err.message.contains("not allowed to modify node \"n2\""),
            "{}",
            err.message
        );
        assert!(admit_create(&n1, leases, &json!({"metadata": {"name": "n2"}})).is_err());
        let admin = User {
            name: "system:admin".into(),
            groups: vec![ADMIN_GROUP.into()],
            ..Default::default()
        };
        assert!(admit_create(&admin, nodes, &json!({"metadata": {"name": "n2"}})).is_ok());
    }

    #[test]
    fn node_may_not_act_as_admin() {
        let n1 = node("n1");
        let denied = [
            action("create", "namespaces", None, None, None),
            action("delete", "namespaces", None, Some("default"), None),
            action("create", "pods", Some("kube-system"), None, None),
            action("create", "secrets", Some("kube-system"), None, None),
            action("update", "secrets", Some("default"), Some("db"), None),
            action("delete", "secrets", Some("default"), Some("db"), None),
            action("list", "secrets", Some("kube-system"), None, None),
            action("create", "deployments", Some("default"), None, None),
            action(
                "update",
                "services",
                Some("default"),
                Some("kubernetes"),
                None,
            ),
            action("delete", "nodes", None, Some("n2"), None),
            action(
                "update",
                "leases",
                Some("kube-node-lease"),
                Some("n2"),
                None,
            ),
            action("create", "leases", Some("default"), None, None),
            action(
                "create",
                "pods",
                Some("default"),
                Some("mine"),
                Some("binding"),
            ),
            action("update", "pods", Some("default"), Some("mine"), None),
            // Only users debug pods: a node may not add containers to its own.
            action(
                "patch",
                "pods",
                Some("default"),
                Some("mine"),
                Some("ephemeralcontainers"),
            ),
            action(
                "update",
                "pods",
                Some("default"),
                Some("mine"),
                Some("ephemeralcontainers"),
            ),
        ];
        for a in &denied {
            let err = authorize(&n1, a, &graph(), &Rbac::new()).unwrap_err();
            assert_eq!(err.code, 403, "{a:?}");
            assert!(
                err.message.contains("User \"system:node:n1\" cannot"),
                "{}",
                err.message
            );
        }
    }

    #[test]
    fn rbac_grants_what_the_node_authorizer_refuses_and_other_users_what_is_bound() {
        let role =
            json!({"rules": [{"apiGroups": [""], "resources": ["secrets"], "verbs": ["list"]}]});
        let binding = json!({"metadata": {"name": "b", "namespace": "kube-system"},
            "roleRef": {"kind": "ClusterRole", "name": "secret-lister"},
            "subjects": [{"kind": "Group", "name": "system:nodes"}, {"kind": "User", "name": "bob"}]});
        let rbac = Rbac::from_objects([
            (
                "/rbac.authorization.k8s.io/clusterroles/secret-lister",
                &role,
            ),
            (
                "/rbac.authorization.k8s.io/rolebindings/kube-system/b",
                &binding,
            ),
        ]);
        let list_secrets = action("list", "secrets", Some("kube-system"), None, None);
        assert!(authorize(&node("n1"), &list_secrets, &graph(), &Rbac::new()).is_err());
        assert!(authorize(&node("n1"), &list_secrets, &graph(), &rbac).is_ok());
        let bob = User {
            name: "bob".into(),
            groups: vec!["system:authenticated".into()],
            ..Default::default()
        };
        assert!(authorize(&bob, &list_secrets, &graph(), &rbac).is_ok());
        let elsewhere = action("list", "secrets", Some("default"), None, None);
        let err = authorize(&bob, &elsewhere, &graph(), &rbac).unwrap_err();
        assert_eq!(
            err.message,
            "secrets is forbidden: User \"bob\" cannot list resource \"secrets\" in API group \"\" in the namespace \"default\""
        );
        // A node refused by both keeps the node authorizer's reason.
        let err = authorize(&node("n1"), &elsewhere, &graph(), &rbac).unwrap_err();
        assert!(
            err.message
                .starts_with("secrets is forbidden: User \"system:node:n1\""),
            "{}",
            err.message
        );
    }

    #[test]
    fn node_may_touch_only_pods_bound_to_it() {
        let n1 = node("n1");
        let ns = Some("default");
        assert!(allowed(&n1, &action("list", "pods", None, None, None)));
        assert!(allowed(
            &n1,
            &action("patch", "pods", ns, Some("mine"), Some("status"))
        ));
        assert!(allowed(
            &n1,
            &action("delete", "pods", ns, Some("mine"), None)
        ));
        let err = authorize(
            &n1,
            &action("update", "pods", ns, Some("theirs"), Some("status")),
            &graph(),
            &Rbac::new(),
        )
        .unwrap_err();
        assert!(
            err.message.ends_with(
                "node \"n1\" can only update pod status for pods with spec.nodeName set to itself"
            ),
            "{}",
            err.message
        );
        assert!(!allowed(
            &n1,
            &action("delete", "pods", ns, Some("theirs"), None)
        ));
        assert!(!allowed(
            &n1,
            &action("delete", "pods", ns, Some("missing"), None)
        ));
    }

    #[test]
    fn node_may_read_only_secrets_and_configmaps_its_pods_use() {
        let n1 = node("n1");
        let ns = Some("default");
        assert!(allowed(
            &n1,
            &action("get", "secrets", ns, Some("db"), None)
        ));
        assert!(allowed(
            &n1,
            &action("get", "configmaps", ns, Some("cfg"), None)
        ));
        let err = authorize(
            &n1,
            &action("get", "secrets", ns, Some("other"), None),
            &graph(),
            &Rbac::new(),
        )
        .unwrap_err();
        assert!(
            err.message
                .ends_with("no relationship found between node 'n1' and this object"),
            "{}",
            err.message
        );
        assert!(!allowed(
            &n1,
            &action("get", "secrets", Some("kube-system"), Some("db"), None)
        ));
        let mut watch_one = action("watch", "secrets", ns, None, None);
        assert!(!allowed(&n1, &watch_one));
        watch_one.selected_name = Some("db");
        assert!(allowed(&n1, &watch_one));
    }

    #[test]
    fn node_may_read_only_the_claims_its_pods_mount() {
        let graph = Pods(vec![
            json!({"metadata": {"namespace": "default", "name": "db"},
                   "spec": {"nodeName": "n1", "volumes": [
                       {"name": "data", "persistentVolumeClaim": {"claimName": "db-data"}},
                       {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}}]}}),
            json!({"metadata": {"namespace": "default", "name": "web"},
                   "spec": {"nodeName": "n2", "volumes": [
                       {"name": "data", "persistentVolumeClaim": {"claimName": "web-data"}}]}}),
        ]);
        let ns = Some("default");
        let get = |name| action("get", "persistentvolumeclaims", ns, Some(name), None);
        let n1 = node("n1");
        assert!(authorize(&n1, &get("db-data"), &graph, &Rbac::new()).is_ok());
        assert!(authorize(&n1, &get("db-scratch"), &graph, &Rbac::new()).is_ok());
        let err = authorize(&n1, &get("web-data"), &graph, &Rbac::new()).unwrap_err();
        assert!(
            err.message.contains("no relationship found"),
            "{}",
            err.message
        );
        let list = action("list", "persistentvolumeclaims", ns, None, None);
        assert!(authorize(&n1, &list, &graph, &Rbac::new()).is_err());
        let write = action(
            "update",
            "persistentvolumeclaims",
            ns,
            Some("db-data"),
            None,
        );
        assert!(authorize(&n1, &write, &graph, &Rbac::new()).is_err());
        let pv = action("get", "persistentvolumes", None, Some("pv1"), None);
        assert!(
            authorize(&n1, &pv, &graph, &Rbac::new()).is_err(),
            "no pod of the node uses a claim bound to pv1"
        );
    }

    #[test]
    fn node_may_request_tokens_only_for_the_accounts_of_its_pods() {
        let graph = Pods(vec![
            json!({"metadata": {"namespace": "default", "name": "mine"},
                   "spec": {"nodeName": "n1", "serviceAccountName": "builder"}}),
            json!({"metadata": {"namespace": "default", "name": "theirs"},
                   "spec": {"nodeName": "n2", "serviceAccountName": "deployer"}}),
        ]);
        let ns = Some("default");
        let token = |name| action("create", "serviceaccounts", ns, Some(name), Some("token"));
        assert!(authorize(&node("n1"), &token("builder"), &graph, &Rbac::new()).is_ok());
        let err = authorize(&node("n1"), &token("deployer"), &graph, &Rbac::new()).unwrap_err();
        assert_eq!(err.code, 403);
        assert!(
            err.message.contains("resource \"serviceaccounts/token\""),
            "{}",
            err.message
        );
        let get = action("get", "serviceaccounts", ns, Some("builder"), None);
        assert!(authorize(&node("n1"), &get, &graph, &Rbac::new()).is_err());
    }

    #[test]
    fn node_loses_a_secret_with_the_last_pod_that_uses_it() {
        let secrets = by_plural("", "v1", "secrets").unwrap();
        let config_maps = by_plural("", "v1", "configmaps").unwrap();
        let pods = by_plural("", "v1", "pods").unwrap();
        let db = json!({"metadata": {"namespace": "default", "name": "db"}});
        let cfg = json!({"metadata": {"namespace": "default", "name": "cfg"}});
        assert!(node_may_read("n1", secrets, &db, &graph()));
        assert!(node_may_read("n1", config_maps, &cfg, &graph()));
        assert!(!node_may_read("n2", secrets, &db, &graph()));
        let gone = Pods(vec![]);
        assert!(!node_may_read("n1", secrets, &db, &gone));
        assert!(!node_may_read("n1", config_maps, &cfg, &gone));
        assert!(node_may_read(
            "n1",
            pods,
            &json!({"metadata": {"name": "p"}}),
            &gone
        ));
    }

    #[test]
    fn node_keeps_reading_a_volume_pinned_to_it_after_its_pods_are_gone() {
        let volumes = by_plural("", "v1", "persistentvolumes").unwrap();
        let pinned = |node: &str| {
            json!({"metadata": {"name": "pv1"}, "spec": {"nodeAffinity": {"required": {
                "nodeSelectorTerms": [{"matchExpressions": [{
                    "key": "kubernetes.io/hostname", "operator": "In", "values": [node]
                }]}]
            }}}})
        };
        let gone = Pods(vec![]);
        assert!(node_may_read("n1", volumes, &pinned("n1"), &gone));
        assert!(!node_may_read("n1", volumes, &pinned("n2"), &gone));
    }

    #[test]
    fn node_renews_its_own_lease_and_records_events() {
        let n1 = node("n1");
        let lease_ns = Some(NODE_LEASE_NAMESPACE);
        assert!(allowed(
            &n1,
            &action("create", "leases", lease_ns, None, None)
        ));
        assert!(allowed(
            &n1,
            &action("update", "leases", lease_ns, Some("n1"), None)
        ));
        assert!(allowed(
            &n1,
            &action("get", "leases", lease_ns, Some("n1"), None)
        ));
        assert!(allowed(
            &n1,
            &action("create", "events", Some("default"), None, None)
        ));
        assert!(!allowed(
            &n1,
            &action("delete", "events", Some("default"), Some("e"), None)
        ));
    }

    #[test]
    fn bootstrap_identity_may_not_use_the_api() {
        let bootstrap = User::bootstrap();
        assert!(bootstrap.is_bootstrap() && bootstrap.node_name().is_none());
        for a in [
            action("get", "nodes", None, Some("n1"), None),
            action("create", "nodes", None, None, None),
            action("list", "secrets", Some("kube-system"), None, None),
        ] {
            assert_eq!(
                authorize(&bootstrap, &a, &graph(), &Rbac::new())
                    .unwrap_err()
                    .code,
                403
            );
        }
        // A node name needs the nodes group.
        let pretender = User {
            name: "system:node:n1".into(),
            groups: vec![],
            ..Default::default()
        };
        assert!(!allowed(
            &pretender,
            &action("get", "nodes", None, Some("n1"), None)
        ));
    }

    #[test]
    fn pod_references_cover_volumes_env_and_pull_secrets() {
        let pod = json!({"spec": {
            "imagePullSecrets": [{"name": "pull"}],
            "volumes": [{"name": "p", "projected": {"sources": [{"configMap": {"name": "proj"}}]}}],
            "initContainers": [{"name": "i", "env": [{"name": "X", "valueFrom": {"secretKeyRef": {"name": "envsec", "key": "k"}}}]}],
        }});
        assert!(pod_references(&pod, "Secret", "pull"));
        assert!(pod_references(&pod, "ConfigMap", "proj"));
        assert!(pod_references(&pod, "Secret", "envsec"));
        assert!(!pod_references(&pod, "ConfigMap", "pull"));
        assert!(!pod_references(&pod, "Secret", "proj"));
    }

    #[test]
    fn failures_beyond_the_burst_are_limited_until_refilled() {
        let limiter = FailureLimiter::new(3, 1.0);
        let ip: IpAddr = "192.0.2.7".parse().unwrap();
        let other: IpAddr = "192.0.2.8".parse().unwrap();
        let t0 = Instant::now();
        assert!(!limiter.record_failure(ip, t0));
        assert!(!limiter.record_failure(ip, t0));
        assert!(limiter.check(ip, t0).is_ok());
        assert!(
            limiter.record_failure(ip, t0),
            "the third failure uses the burst up"
        );
        let wait = limiter.check(ip, t0).unwrap_err();
        assert_eq!(retry_after_secs(wait), 1);
        assert!(
            limiter.check(other, t0).is_ok(),
            "other sources are not affected"
        );
        assert!(limiter.check(ip, t0 + Duration::from_millis(500)).is_err());
        assert!(limiter.check(ip, t0 + Duration::from_secs(1)).is_ok());
        assert!(limiter.record_failure(ip, t0 + Duration::from_secs(1)));
        // After a quiet spell the whole burst is back.
        let later = t0 + Duration::from_secs(60);
        assert!(!limiter.record_failure(ip, later));
        assert!(!limiter.record_failure(ip, later));
    }

    #[test]
    fn ipv6_sources_count_per_64() {
        let limiter = FailureLimiter::new(1, 1.0);
        let now = Instant::now();
        assert!(limiter.record_failure("2001:db8:1:2::1".parse().unwrap(), now));
        assert!(limiter
            .check("2001:db8:1:2:ffff::9".parse().unwrap(), now)
            .is_err());
        assert!(limiter
            .check("2001:db8:1:3::1".parse().unwrap(), now)
            .is_ok());
    }

    #[test]
    fn a_limited_source_is_refused_even_with_the_right_token_and_gets_a_429() {
        let auth = TokenAuthenticator::default();
        auth.insert("right-token-0123456789", User::bootstrap());
        let ip = Some("198.51.100.1".parse().unwrap());
        for _ in 0..FAILURE_BURST {
            assert_eq!(
                auth.authenticate_from("wrong", ip),
                Err(TokenRefusal::Invalid)
            );
        }
        let refusal = auth
            .authenticate_from("right-token-0123456789", ip)
            .unwrap_err();
        assert!(matches!(refusal, TokenRefusal::Limited(_)), "{refusal:?}");
        let status = refusal.to_api_error().to_status();
        assert_eq!(status["code"], 429);
        assert_eq!(status["reason"], "TooManyRequests");
        assert_eq!(status["details"]["retryAfterSeconds"], 1);
        let elsewhere = Some("198.51.100.2".parse().unwrap());
        assert_eq!(
            auth.authenticate_from("right-token-0123456789", elsewhere),
            Ok(User::bootstrap())
        );
    }

    #[test]
    fn replacing_a_users_token_retires_the_old_one() {
        let auth = TokenAuthenticator::default();
        auth.insert("old-token", User::bootstrap());
        auth.replace("new-token", User::bootstrap());
        assert_eq!(auth.authenticate("old-token"), None);
        assert_eq!(auth.authenticate("new-token"), Some(User::bootstrap()));
    }

    #[test]
    fn tokens_authenticate_only_exact_matches() {
        let auth = TokenAuthenticator::default();
        let user = User {
            name: "system:node:a".into(),
            groups: vec!["system:nodes".into()],
            ..Default::default()
        };
        auth.insert("secret-token", user.clone());
        assert_eq!(auth.authenticate("secret-token"), Some(user));
        assert_eq!(auth.authenticate("secret-tokem"), None);
        assert_eq!(auth.authenticate(""), None);
    }
}
