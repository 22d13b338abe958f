//! The server's authorizer chain for attributes that need not name a served resource
//! (impersonation, the review APIs): admins may do anything, a node what the node
//! authorizer grants it (then RBAC), everyone else what RBAC grants.

use serde_json::{json, Value};

use super::auth::{self, User};
use super::rbac::{Attributes, Decision};
use super::reviews::Authorizer;
use super::ApiContext;

impl Authorizer for ApiContext {
    fn decide(&self, user: &User, attrs: &Attributes) -> Decision {
        if user.is_admin() {
            return Decision::Allow;
        }
        if let (Some(_), Some(r)) = (user.node_name(), &attrs.resource) {
            let served = self.registry.resources();
            let def = served
                .iter()
                .find(|d| d.group == r.group && d.plural == r.resource);
            if let Some(def) = def {
                let some = |s: &str| (!s.is_empty()).then(|| s.to_string());
                let (namespace, name, subresource) =
                    (some(&attrs.namespace), some(&r.name), some(&r.subresource));
                let action = auth::Action {
                    verb: &attrs.verb,
                    def,
                    namespace: namespace.as_deref(),
                    name: name.as_deref(),
                    subresource: subresource.as_deref(),
                    selected_name: None,
                };
                return match auth::authorize(user, &action, &*self.registry, &self.rbac) {
                    Ok(()) => Decision::Allow,
                    Err(e) => Decision::NoOpinion(e.message),
                };
            }
        }
        self.rbac.authorize(user, attrs)
    }

    /// RBAC's rules, as `authorization.k8s.io/v1` ResourceRules and NonResourceRules.
    /// What the node authorizer grants a node is not listed, so a node's list is
    /// incomplete, as upstream's.
    fn rules(&self, user: &User, namespace: &str) -> (Vec<Value>, Vec<Value>, bool) {
        let (rules, incomplete) = self.rbac.rules_for(user, namespace);
        let mut resource_rules = Vec::new();
        let mut non_resource_rules = Vec::new();
        for rule in rules {
            if let Some(urls) = rule.non_resource_urls.filter(|u| !u.is_empty()) {
                non_resource_rules.push(json!({"verbs": rule.verbs, "nonResourceURLs": urls}));
                continue;
            }
            let mut r = json!({
                "verbs": rule.verbs,
                "apiGroups": rule.api_groups.unwrap_or_default(),
                "resources": rule.resources.unwrap_or_default(),
            });
            if let Some(names) = rule.resource_names.filter(|n| !n.is_empty()) {
                r["resourceNames"] = json!(names);
            }
            resource_rules.push(r);
        }
        (
            resource_rules,
            non_resource_rules,
            incomplete || user.node_name().is_some(),
        )
    }
}
