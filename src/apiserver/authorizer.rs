//! The server's authorizer chain for attributes that need not name a served resource
//! (impersonation, the review APIs): admins may do anything, a node what the node
//! authorizer grants it, everyone else what RBAC grants.

use serde_json::Value;

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
                if auth::authorize(user, &action, &*self.registry).is_ok() {
                    return Decision::Allow;
                }
            }
        }
        Decision::NoOpinion(String::new())
    }

    fn rules(&self, _user: &User, _namespace: &str) -> (Vec<Value>, Vec<Value>, bool) {
        (Vec::new(), Vec::new(), true)
    }
}
