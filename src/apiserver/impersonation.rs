//! Impersonation (upstream `filters/impersonation.go`): the `Impersonate-User`,
//! `-Group`, `-Uid` and `-Extra-*` headers make a request run as another user once the
//! caller may `impersonate` each part of that identity.

use std::collections::BTreeMap;

use http::HeaderMap;

use super::rbac::{Attributes, ResourceAttrs};
use crate::api::identity::{
    User, AUTHENTICATED_GROUP, SERVICE_ACCOUNTS_GROUP, SERVICE_ACCOUNT_USER_PREFIX,
};
use crate::api::status::ApiError;

pub const USER_HEADER: &str = "impersonate-user";
pub const GROUP_HEADER: &str = "impersonate-group";
pub const UID_HEADER: &str = "impersonate-uid";
pub const EXTRA_HEADER_PREFIX: &str = "impersonate-extra-";

const ANONYMOUS_USER: &str = "system:anonymous";
const UNAUTHENTICATED_GROUP: &str = "system:unauthenticated";
const AUTHENTICATION_GROUP: &str = "authentication.k8s.io";

/// The identity a request asks to act as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Impersonation {
    pub user: String,
    pub groups: Vec<String>,
    pub uid: Option<String>,
    pub extra: BTreeMap<String, Vec<String>>,
}

/// The impersonation `headers` ask for, if any: a 400 when a group, uid or extra is
/// asked for without a user (as upstream), or a header is not text.
pub fn requested(headers: &HeaderMap) -> Result<Option<Impersonation>, ApiError> {
    let text = |v: &http::HeaderValue| {
        v.to_str()
            .map(str::to_string)
            .map_err(|_| ApiError::bad_request("impersonation headers must be text"))
    };
    let user = headers.get(USER_HEADER).map(text).transpose()?;
    let groups = headers
        .get_all(GROUP_HEADER)
        .iter()
        .map(text)
        .collect::<Result<Vec<_>, _>>()?;
    let uid = headers.get(UID_HEADER).map(text).transpose()?;
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(EXTRA_HEADER_PREFIX) else {
            continue;
        };
        // Keys are percent-encoded in the header name (upstream unescapes them).
        let key = percent_decode(key);
        extra.entry(key).or_default().push(text(value)?);
    }
    let Some(user) = user else {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(None);
        }
        let mut asked = groups
            .iter()
            .map(|g| format!("{{Group  {g}}}"))
            .collect::<Vec<_>>();
        asked.extend(uid.iter().map(|u| format!("{{UID  {u}}}")));
        asked.extend(
            extra
                .iter()
                .flat_map(|(k, vs)| vs.iter().map(move |v| format!("{{UserExtra {k} {v}}}"))),
        );
        return Err(ApiError::bad_request(format!(
            "requested [{}] without impersonating a user",
            asked.join(" ")
        )));
    };
    Ok(Some(Impersonation {
        user,
        groups,
        uid,
        extra,
    }))
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                out.push((hex(h).unwrap_or(0) * 16 + hex(l).unwrap_or(0)) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// One permission impersonation needs, and how a refusal names it.
#[derive(Debug, Clone)]
pub struct Check {
    pub attrs: Attributes,
    /// `users "bob"`, `groups "dev"` ... for the 403 message.
    pub subject: String,
}

impl Impersonation {
    /// What the caller must be allowed (verb `impersonate`), one check per part: the
    /// user (`serviceaccounts` in its namespace for a service account, else `users`),
    /// each group, the uid, each extra value.
    pub fn checks(&self) -> Vec<Check> {
        let resource =
            |group: &str, resource: &str, subresource: &str, name: &str, ns: &str| Attributes {
                verb: "impersonate".to_string(),
                namespace: ns.to_string(),
                resource: Some(ResourceAttrs {
                    group: group.to_string(),
                    resource: resource.to_string(),
                    subresource: subresource.to_string(),
                    name: name.to_string(),
                }),
                path: None,
            };
        let mut checks = Vec::new();
        match service_account(&self.user) {
            Some((ns, name)) => checks.push(Check {
                attrs: resource("", "serviceaccounts", "", name, ns),
                subject: format!("serviceaccounts \"{name}\""),
            }),
            None => checks.push(Check {
                attrs: resource("", "users", "", &self.user, ""),
                subject: format!("users \"{}\"", self.user),
            }),
        }
        for group in &self.groups {
            checks.push(Check {
                attrs: resource("", "groups", "", group, ""),
                subject: format!("groups \"{group}\""),
            });
        }
        if let Some(uid) = &self.uid {
            checks.push(Check {
                attrs: resource(AUTHENTICATION_GROUP, "uids", "", uid, ""),
                subject: format!("uids.{AUTHENTICATION_GROUP} \"{uid}\""),
            });
        }
        for (key, values) in &self.extra {
            for value in values {
                checks.push(Check {
                    attrs: resource(AUTHENTICATION_GROUP, "userextras", key, value, ""),
                    subject: format!("userextras.{AUTHENTICATION_GROUP} \"{value}\""),
                });
            }
        }
        checks
    }

    /// The user the request then runs as: the groups asked for, a service account's
    /// groups, and `system:authenticated` (`system:unauthenticated` for
    /// `system:anonymous`), as upstream.
    pub fn user(&self) -> User {
        let mut groups = self.groups.clone();
        let mut add = |g: String| {
            if !groups.contains(&g) {
                groups.push(g);
            }
        };
        if let Some((ns, _)) = service_account(&self.user) {
            add(SERVICE_ACCOUNTS_GROUP.to_string());
            add(format!("{SERVICE_ACCOUNTS_GROUP}:{ns}"));
        }
        if self.user == ANONYMOUS_USER {
            add(UNAUTHENTICATED_GROUP.to_string());
        } else {
            add(AUTHENTICATED_GROUP.to_string());
        }
        User {
            name: self.user.clone(),
            groups,
            uid: self.uid.clone().unwrap_or_default(),
            extra: self.extra.clone(),
        }
    }
}

fn service_account(user: &str) -> Option<(&str, &str)> {
    user.strip_prefix(SERVICE_ACCOUNT_USER_PREFIX)?
        .split_once(':')
        .filter(|(ns, name)| !ns.is_empty() && !name.is_empty())
}

/// Upstream's refusal of one impersonation check.
pub fn forbidden(caller: &User, check: &Check) -> ApiError {
    let res = check.attrs.resource.as_ref();
    let resource = res.map_or("", |r| r.resource.as_str());
    let group = res.map_or("", |r| r.group.as_str());
    let scope = match check.attrs.namespace.as_str() {
        "" => "at the cluster scope".to_string(),
        ns => format!("in the namespace \"{ns}\""),
    };
    ApiError::forbidden(format!(
        "{} is forbidden: User \"{}\" cannot impersonate resource \"{resource}\" in API group \"{group}\" {scope}",
        check.subject, caller.name
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                http::HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn no_headers_no_impersonation() {
        assert_eq!(requested(&headers(&[])).unwrap(), None);
    }

    #[test]
    fn groups_without_a_user_are_a_bad_request() {
        let err = requested(&headers(&[("Impersonate-Group", "system:masters")])).unwrap_err();
        assert_eq!(err.code, 400);
        assert!(
            err.message.contains("without impersonating a user"),
            "{}",
            err.message
        );
    }

    #[test]
    fn a_user_with_groups_uid_and_extra() {
        let imp = requested(&headers(&[
            ("Impersonate-User", "jane"),
            ("Impersonate-Group", "dev"),
            ("Impersonate-Group", "ops"),
            ("Impersonate-Uid", "u-1"),
            ("Impersonate-Extra-Scopes%2Fx", "view"),
        ]))
        .unwrap()
        .unwrap();
        let user = imp.user();
        assert_eq!(user.name, "jane");
        assert_eq!(user.groups, ["dev", "ops", "system:authenticated"]);
        assert_eq!(user.uid, "u-1");
        assert_eq!(user.extra["scopes/x"], ["view"]);
        let subjects: Vec<_> = imp.checks().into_iter().map(|c| c.subject).collect();
        assert_eq!(
            subjects,
            [
                "users \"jane\"",
                "groups \"dev\"",
                "groups \"ops\"",
                "uids.authentication.k8s.io \"u-1\"",
                "userextras.authentication.k8s.io \"view\""
            ]
        );
        let extra = &imp.checks()[4].attrs;
        let res = extra.resource.as_ref().unwrap();
        assert_eq!(
            (res.resource.as_str(), res.subresource.as_str()),
            ("userextras", "scopes/x")
        );
    }

    #[test]
    fn a_service_account_is_checked_in_its_namespace_and_gets_its_groups() {
        let imp = requested(&headers(&[(
            "Impersonate-User",
            "system:serviceaccount:apps:builder",
        )]))
        .unwrap()
        .unwrap();
        let check = &imp.checks()[0];
        assert_eq!(check.attrs.namespace, "apps");
        let res = check.attrs.resource.as_ref().unwrap();
        assert_eq!(
            (res.resource.as_str(), res.name.as_str()),
            ("serviceaccounts", "builder")
        );
        assert_eq!(
            imp.user().groups,
            [
                "system:serviceaccounts",
                "system:serviceaccounts:apps",
                "system:authenticated"
            ]
        );
        let caller = User {
            name: "alice".into(),
            ..Default::default()
        };
        assert_eq!(
            forbidden(&caller, check).message,
            "serviceaccounts \"builder\" is forbidden: User \"alice\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"apps\""
        );
    }

    #[test]
    fn anonymous_is_unauthenticated() {
        let imp = requested(&headers(&[("Impersonate-User", "system:anonymous")]))
            .unwrap()
            .unwrap();
        assert_eq!(imp.user().groups, ["system:unauthenticated"]);
    }
}
