//! The RBAC authorizer (`rbac.authorization.k8s.io/v1`): decisions from the Roles,
//! ClusterRoles and their bindings, kept in memory ([`index`]) and current from the
//! registry's watch, with decisions cached per (user, groups, request) until any RBAC
//! object changes. Also the escalation checks of RBAC writes ([`escalation`]) and the
//! bootstrap policy reconciled at start ([`bootstrap`]).
//!
//! The in-memory policy may be a moment behind the store, as upstream's informer-fed
//! authorizer is.

pub mod bootstrap;
pub mod escalation;
pub mod index;
pub mod rules;

use std::collections::hash_map::RandomState;
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher};
use std::sync::{Arc, RwLock};

use k8s_openapi::api::rbac::v1::PolicyRule;
use serde_json::Value;

use super::registry::Registry;
use crate::api::identity::User;
use crate::store::EventType;
use index::Index;
pub use index::KEY_PREFIX;

/// Decisions cached at most; the cache starts over beyond.
const MAX_CACHED_DECISIONS: usize = 16_384;

/// What a request asks to do (upstream `authorizer.Attributes`): either a resource
/// request or a non-resource `path`, never both.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Attributes {
    pub verb: String,
    /// `""` = cluster scope.
    pub namespace: String,
    pub resource: Option<ResourceAttrs>,
    pub path: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ResourceAttrs {
    pub group: String,
    pub resource: String,
    pub subresource: String,
    pub name: String,
}

impl Attributes {
    /// A resource request.
    pub fn resource(
        verb: &str,
        namespace: &str,
        group: &str,
        resource: &str,
        subresource: &str,
        name: &str,
    ) -> Attributes {
        Attributes {
            verb: verb.into(),
            namespace: namespace.into(),
            resource: Some(ResourceAttrs {
                group: group.into(),
                resource: resource.into(),
                subresource: subresource.into(),
                name: name.into(),
            }),
            path: None,
        }
    }

    /// A non-resource request (`/healthz`, `/metrics`).
    pub fn non_resource(verb: &str, path: &str) -> Attributes {
        Attributes {
            verb: verb.into(),
            namespace: String::new(),
            resource: None,
            path: Some(path.into()),
        }
    }
}

/// An authorizer's answer. RBAC only allows or has no opinion (with upstream's reason,
/// e.g. a binding's missing role); `Deny` is for authorizers that refuse outright.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Allow,
    Deny(String),
    NoOpinion(String),
}

impl Decision {
    pub fn is_allowed(&self) -> bool {
        matches!(self, Decision::Allow)
    }

    /// The reason given, empty for `Allow`.
    pub fn reason(&self) -> &str {
        match self {
            Decision::Allow => "",
            Decision::Deny(r) | Decision::NoOpinion(r) => r,
        }
    }
}

struct CachedDecision {
    user: String,
    groups: Vec<String>,
    attrs: Attributes,
    decision: Decision,
}

/// Decisions of one index generation, by a hash of (user, groups, attributes); each
/// entry keeps its key, so a hash collision is a miss, never a wrong answer.
#[derive(Default)]
struct DecisionCache {
    generation: u64,
    entries: HashMap<u64, CachedDecision>,
}

/// The RBAC authorizer and rule resolver. Shared (`Arc`) by the handlers, the audit log
/// and the RBAC kinds' admission; fed by [`Rbac::load`] and [`Rbac::run`].
#[derive(Default)]
pub struct Rbac {
    index: RwLock<Arc<Index>>,
    cache: RwLock<DecisionCache>,
    hasher: RandomState,
}

impl Rbac {
    pub fn new() -> Rbac {
        Rbac::default()
    }

    /// An authorizer over `objects` (store key, object), without a registry: for tests
    /// and tools that decide over a fixed policy.
    pub fn from_objects<'a>(objects: impl IntoIterator<Item = (&'a str, &'a Value)>) -> Rbac {
        let rbac = Rbac::new();
        rbac.publish(Index::build(objects));
        rbac
    }

    fn snapshot(&self) -> Arc<Index> {
        self.index.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Publishes a new index (generations only grow: a relisted index continues the
    /// count, so decisions cached for the old one are dropped).
    fn publish(&self, mut index: Index) {
        let mut current = self.index.write().unwrap_or_else(|e| e.into_inner());
        index.generation = index.generation.max(current.generation + 1);
        *current = Arc::new(index);
    }

    fn change(&self, f: impl FnOnce(&mut Index)) {
        let mut current = self.index.write().unwrap_or_else(|e| e.into_inner());
        let mut next = (**current).clone();
        f(&mut next);
        *current = Arc::new(next);
    }

    fn key_hash(&self, user: &User, attrs: &Attributes) -> u64 {
        let mut h = self.hasher.build_hasher();
        user.name.hash(&mut h);
        user.groups.hash(&mut h);
        attrs.hash(&mut h);
        h.finish()
    }

    /// Whether `user` may do `attrs` by RBAC: `Allow`, or `NoOpinion` with upstream's
    /// reason (`RBAC: clusterrole.rbac.authorization.k8s.io "x" not found` when a binding
    /// of the user references a missing role; empty otherwise). A repeated question costs
    /// one hash lookup until an RBAC object changes.
    pub fn authorize(&self, user: &User, attrs: &Attributes) -> Decision {
        let hash = self.key_hash(user, attrs);
        let index = self.snapshot();
        {
            let cache = self.cache.read().unwrap_or_else(|e| e.into_inner());
            if cache.generation == index.generation {
                if let Some(hit) = cache.entries.get(&hash) {
                    if hit.user == user.name && hit.groups == user.groups && hit.attrs == *attrs {
                        return hit.decision.clone();
                    }
                }
            }
        }
        let decision = decide(&index, user, attrs);
        let mut cache = self.cache.write().unwrap_or_else(|e| e.into_inner());
        if cache.generation < index.generation || cache.entries.len() >= MAX_CACHED_DECISIONS {
            cache.entries.clear();
            cache.generation = cache.generation.max(index.generation);
        }
        if cache.generation == index.generation {
            cache.entries.insert(
                hash,
                CachedDecision {
                    user: user.name.clone(),
                    groups: user.groups.clone(),
                    attrs: attrs.clone(),
                    decision: decision.clone(),
                },
            );
        }
        decision
    }

    /// The rules that apply to `user` in `namespace` (cluster-wide ones included; `""`:
    /// only those), as SelfSubjectRulesReview reports them, and whether the list is
    /// incomplete (a binding references a role that does not exist).
    pub fn rules_for(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, bool) {
        let (rules, errors) = self.rules_and_errors(user, namespace);
        (rules, !errors.is_empty())
    }

    /// [`Rbac::rules_for`] with the reason of each binding that resolved to nothing.
    fn rules_and_errors(&self, user: &User, namespace: &str) -> (Vec<PolicyRule>, Vec<String>) {
        let index = self.snapshot();
        let mut rules = Vec::new();
        let mut errors = Vec::new();
        for binding in index.bindings_for(user, namespace) {
            match index.role_rules(&binding.role_ref, &binding.namespace) {
                Ok(found) => rules.extend(found.iter().cloned()),
                Err(e) => errors.push(e.to_string()),
            }
        }
        (rules, errors)
    }

    /// The rules of the role a binding in `namespace` references (escalation checks).
    pub fn role_ref_rules(
        &self,
        kind: &str,
        name: &str,
        namespace: &str,
    ) -> Result<Vec<PolicyRule>, index::RoleNotFound> {
        let role_ref = index::RoleRef {
            kind: kind.into(),
            name: name.into(),
        };
        self.snapshot()
            .role_rules(&role_ref, namespace)
            .map(|r| (*r).clone())
    }

    /// Reads every stored RBAC object (at start, before the API answers).
    pub fn load(&self, registry: &Registry) {
        let (items, _, _) = registry.snapshot_and_watch(KEY_PREFIX);
        self.publish(Index::build(items.iter().map(|kv| (&*kv.key, &*kv.value))));
    }

    /// Follows the stored RBAC objects for good (relisting when the watch ends).
    pub async fn run(self: Arc<Self>, registry: Arc<Registry>) {
        loop {
            let (items, _, mut watcher) = registry.snapshot_and_watch(KEY_PREFIX);
            self.publish(Index::build(items.iter().map(|kv| (&*kv.key, &*kv.value))));
            loop {
                match watcher.next().await {
                    Ok(event) => self.change(|index| match event.kind {
                        EventType::Deleted => index.remove(&event.kv.key),
                        _ => index.insert(&event.kv.key, &event.kv.value),
                    }),
                    Err(e) => {
                        tracing::info!(error = %e, "rbac watch ended; relisting");
                        break;
                    }
                }
            }
        }
    }
}

/// Upstream `RBACAuthorizer.Authorize` over one index snapshot.
fn decide(index: &Index, user: &User, attrs: &Attributes) -> Decision {
    let mut errors = Vec::new();
    for binding in index.bindings_for(user, &attrs.namespace) {
        match index.role_rules(&binding.role_ref, &binding.namespace) {
            Ok(found) => {
                if found.iter().any(|r| rules::rule_allows(r, attrs)) {
                    tracing::trace!(user = %user.name, by = %binding.describe(), "rbac allowed");
                    return Decision::Allow;
                }
            }
            Err(e) => errors.push(e.to_string()),
        }
    }
    match errors.len() {
        0 => Decision::NoOpinion(String::new()),
        1 => Decision::NoOpinion(format!("RBAC: {}", errors[0])),
        _ => Decision::NoOpinion(format!("RBAC: [{}]", errors.join(", "))),
    }
}

#[cfg(test)]
mod tests;
