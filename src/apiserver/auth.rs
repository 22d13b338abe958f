//! Authentication (client certificates, bearer tokens) and authorization of API requests.

use std::collections::HashMap;
use std::sync::RwLock;

use crate::api::resources::ResourceDef;
use crate::api::status::ApiError;

/// Group whose members may do anything (as upstream).
pub const ADMIN_GROUP: &str = "system:masters";

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub groups: Vec<String>,
}

impl From<crate::tls::Identity> for User {
    fn from(id: crate::tls::Identity) -> User {
        User {
            name: id.user,
            groups: id.groups,
        }
    }
}

impl User {
    pub fn is_admin(&self) -> bool {
        self.groups.iter().any(|g| g == ADMIN_GROUP)
    }
}

/// Static bearer tokens (compared in constant time), each mapped to a user.
#[derive(Default)]
pub struct TokenAuthenticator {
    tokens: RwLock<HashMap<String, User>>,
}

impl TokenAuthenticator {
    pub fn insert(&self, token: &str, user: User) {
        self.tokens
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(token.to_string(), user);
    }

    pub fn authenticate(&self, token: &str) -> Option<User> {
        let tokens = self.tokens.read().unwrap_or_else(|e| e.into_inner());
        tokens
            .iter()
            .find(|(known, _)| constant_time_eq(known.as_bytes(), token.as_bytes()))
            .map(|(_, user)| user.clone())
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
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
}

/// Decides whether `user` may perform `action` (403 `Status` if not).
pub fn authorize(user: &User, action: &Action<'_>) -> Result<(), ApiError> {
    if user.is_admin() {
        return Ok(());
    }
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
    Err(ApiError::forbidden(format!(
        "{subject}: User \"{}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}",
        user.name, action.verb, action.def.group
    )))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources::by_plural;

    #[test]
    fn admins_may_do_anything_and_others_get_an_upstream_style_403() {
        let pods = by_plural("", "v1", "pods").unwrap();
        let action = Action {
            verb: "list",
            def: pods,
            namespace: Some("default"),
            name: None,
            subresource: None,
        };
        let admin = User {
            name: "system:admin".into(),
            groups: vec![ADMIN_GROUP.into()],
        };
        assert!(authorize(&admin, &action).is_ok());
        let bob = User {
            name: "bob".into(),
            groups: vec![],
        };
        let err = authorize(&bob, &action).unwrap_err();
        assert_eq!(err.code, 403);
        assert_eq!(
            err.message,
            "pods is forbidden: User \"bob\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\""
        );
    }

    #[test]
    fn tokens_authenticate_only_exact_matches() {
        let auth = TokenAuthenticator::default();
        let user = User {
            name: "system:node:a".into(),
            groups: vec!["system:nodes".into()],
        };
        auth.insert("secret-token", user.clone());
        assert_eq!(auth.authenticate("secret-token"), Some(user));
        assert_eq!(auth.authenticate("secret-tokem"), None);
        assert_eq!(auth.authenticate(""), None);
    }
}
