//! The claims of service-account tokens as upstream writes them: bound tokens
//! (`pkg/serviceaccount/claims.go`: audiences, expiry, `kubernetes.io` references to the
//! account and the object the token is bound to) and legacy Secret tokens
//! (`legacy.go`), with the time checks upstream makes (one minute of leeway).

use serde::{Deserialize, Deserializer, Serialize};

use crate::api::identity::SERVICE_ACCOUNT_USER_PREFIX;

/// The issuer of bound tokens unless `--service-account-issuer` says otherwise (and the
/// API server's audience).
pub const DEFAULT_ISSUER: &str = "https://kubernetes.default.svc.cluster.local";
/// The issuer of legacy Secret tokens.
pub const LEGACY_ISSUER: &str = "kubernetes/serviceaccount";
/// Clock skew tolerated on `exp`, `nbf` and `iat` (go-jose's `DefaultLeeway`).
pub const LEEWAY_SECONDS: i64 = 60;

/// Why a bound token's times do not admit it now (upstream's messages).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ClaimsError {
    #[error("service account token has expired")]
    Expired,
    #[error("service account token is not valid yet")]
    NotValidYet,
    #[error("service account token is issued in the future")]
    IssuedInTheFuture,
}

/// A reference to an object by name and uid (both omitted when empty, as upstream).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRef {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
}

impl ObjectRef {
    pub fn new(name: &str, uid: &str) -> ObjectRef {
        ObjectRef {
            name: name.to_string(),
            uid: uid.to_string(),
        }
    }
}

/// The private `kubernetes.io` claim of a bound token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KubernetesClaims {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    /// The node a bound pod runs on (or the node a token is bound to).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod: Option<ObjectRef>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<ObjectRef>,
    #[serde(default)]
    pub serviceaccount: ObjectRef,
    /// When a token whose expiry was extended (kubelet's 3607s requests) should have been
    /// refreshed: upstream only warns after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warnafter: Option<i64>,
}

/// The claims of a bound (TokenRequest) token; keys in upstream's (sorted) order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BoundClaims {
    #[serde(default, deserialize_with = "audiences")]
    pub aud: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exp: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<i64>,
    #[serde(default)]
    pub iss: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jti: Option<String>,
    #[serde(rename = "kubernetes.io", default)]
    pub kubernetes: KubernetesClaims,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    #[serde(default)]
    pub sub: String,
}

/// What a bound token is bound to, besides its service account.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Binding {
    pub pod: Option<ObjectRef>,
    pub secret: Option<ObjectRef>,
    /// The node of a bound pod, or the node a token is bound to.
    pub node: Option<ObjectRef>,
}

/// What a bound token is issued for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec<'a> {
    pub issuer: &'a str,
    pub namespace: &'a str,
    pub service_account: ObjectRef,
    pub binding: Binding,
    pub audiences: Vec<String>,
    /// Seconds since the epoch at issue.
    pub now: i64,
    pub expiration_seconds: i64,
    /// Seconds after `now` from which the token should have been replaced (extended
    /// tokens only).
    pub warn_after_seconds: Option<i64>,
    /// The token's unique id (`jti`).
    pub id: String,
}

impl BoundClaims {
    /// Upstream's `serviceaccount.Claims`: valid from `now` for `expiration_seconds`.
    pub fn new(spec: TokenSpec<'_>) -> BoundClaims {
        let TokenSpec {
            issuer,
            namespace,
            service_account,
            binding,
            audiences,
            now,
            expiration_seconds,
            warn_after_seconds,
            id,
        } = spec;
        BoundClaims {
            aud: audiences,
            exp: Some(now.saturating_add(expiration_seconds)),
            iat: Some(now),
            iss: issuer.to_string(),
            jti: Some(id),
            kubernetes: KubernetesClaims {
                namespace: namespace.to_string(),
                // A node is recorded for a bound pod, or as the binding itself.
                node: binding.node,
                pod: binding.pod,
                secret: binding.secret,
                serviceaccount: service_account.clone(),
                warnafter: warn_after_seconds.map(|s| now.saturating_add(s)),
            },
            nbf: Some(now),
            sub: format!(
                "{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{}",
                service_account.name
            ),
        }
    }

    /// Whether the token is valid at `now` (seconds since the epoch), with
    /// [`LEEWAY_SECONDS`] on each side as upstream.
    pub fn check_time(&self, now: i64) -> Result<(), ClaimsError> {
        if self.nbf.is_some_and(|nbf| now + LEEWAY_SECONDS < nbf) {
            return Err(ClaimsError::NotValidYet);
        }
        if self.exp.is_some_and(|exp| now - LEEWAY_SECONDS > exp) {
            return Err(ClaimsError::Expired);
        }
        if self.iat.is_some_and(|iat| now + LEEWAY_SECONDS < iat) {
            return Err(ClaimsError::IssuedInTheFuture);
        }
        Ok(())
    }
}

/// The claims of a legacy token kept in a `kubernetes.io/service-account-token` Secret:
/// no audience, no expiry.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyClaims {
    #[serde(default)]
    pub iss: String,
    #[serde(rename = "kubernetes.io/serviceaccount/namespace", default)]
    pub namespace: String,
    #[serde(rename = "kubernetes.io/serviceaccount/secret.name", default)]
    pub secret_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.name", default)]
    pub service_account_name: String,
    #[serde(rename = "kubernetes.io/serviceaccount/service-account.uid", default)]
    pub service_account_uid: String,
    #[serde(default)]
    pub sub: String,
}

impl LegacyClaims {
    pub fn new(namespace: &str, secret_name: &str, sa_name: &str, sa_uid: &str) -> LegacyClaims {
        LegacyClaims {
            iss: LEGACY_ISSUER.to_string(),
            namespace: namespace.to_string(),
            secret_name: secret_name.to_string(),
            service_account_name: sa_name.to_string(),
            service_account_uid: sa_uid.to_string(),
            sub: format!("{SERVICE_ACCOUNT_USER_PREFIX}{namespace}:{sa_name}"),
        }
    }

    /// Upstream's checks that every claim is there and `sub` names the same account.
    pub fn check_complete(&self) -> Result<(), &'static str> {
        let missing = [
            (self.sub.is_empty(), "sub claim is missing"),
            (self.namespace.is_empty(), "namespace claim is missing"),
            (self.secret_name.is_empty(), "secretName claim is missing"),
            (
                self.service_account_name.is_empty(),
                "serviceAccountName claim is missing",
            ),
            (
                self.service_account_uid.is_empty(),
                "serviceAccountUID claim is missing",
            ),
        ];
        if let Some((_, why)) = missing.iter().find(|(missing, _)| *missing) {
            return Err(why);
        }
        let expected = format!(
            "{SERVICE_ACCOUNT_USER_PREFIX}{}:{}",
            self.namespace, self.service_account_name
        );
        if self.sub != expected {
            return Err("sub claim is invalid");
        }
        Ok(())
    }
}

/// `aud` as a string or a list of strings (RFC 7519 allows both).
fn audiences<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Aud {
        One(String),
        Many(Vec<String>),
    }
    Ok(match Option::<Aud>::deserialize(d)? {
        None => Vec::new(),
        Some(Aud::One(a)) => vec![a],
        Some(Aud::Many(a)) => a,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn spec(binding: Binding) -> TokenSpec<'static> {
        TokenSpec {
            issuer: DEFAULT_ISSUER,
            namespace: "ns",
            service_account: ObjectRef::new("builder", "sa-uid"),
            binding,
            audiences: vec![DEFAULT_ISSUER.to_string()],
            now: 1_000_000,
            expiration_seconds: 3600,
            warn_after_seconds: None,
            id: "jti-1".into(),
        }
    }

    #[test]
    fn bound_claims_are_written_as_upstream_does() {
        let claims = BoundClaims::new(spec(Binding {
            pod: Some(ObjectRef::new("web", "pod-uid")),
            node: Some(ObjectRef::new("n1", "")),
            secret: None,
        }));
        let v = serde_json::to_value(&claims).unwrap();
        assert_eq!(
            v,
            json!({
                "aud": [DEFAULT_ISSUER],
                "exp": 1_003_600,
                "iat": 1_000_000,
                "iss": DEFAULT_ISSUER,
                "jti": "jti-1",
                "kubernetes.io": {
                    "namespace": "ns",
                    "node": {"name": "n1"},
                    "pod": {"name": "web", "uid": "pod-uid"},
                    "serviceaccount": {"name": "builder", "uid": "sa-uid"},
                },
                "nbf": 1_000_000,
                "sub": "system:serviceaccount:ns:builder",
            })
        );
        let keys: Vec<&String> = v.as_object().unwrap().keys().collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(keys, sorted, "claims in upstream's sorted order");
        let back: BoundClaims = serde_json::from_value(v).unwrap();
        assert_eq!(back, claims);
    }

    #[test]
    fn extended_tokens_record_when_they_should_have_been_refreshed() {
        let mut s = spec(Binding::default());
        s.expiration_seconds = 365 * 24 * 3600;
        s.warn_after_seconds = Some(3607);
        let claims = BoundClaims::new(s);
        assert_eq!(claims.kubernetes.warnafter, Some(1_003_607));
    }

    #[test]
    fn times_are_checked_with_a_minute_of_leeway() {
        let claims = BoundClaims::new(spec(Binding::default()));
        assert_eq!(claims.check_time(1_000_000), Ok(()));
        assert_eq!(claims.check_time(1_003_600 + 60), Ok(()));
        assert_eq!(claims.check_time(1_003_600 + 61), Err(ClaimsError::Expired));
        assert_eq!(claims.check_time(1_000_000 - 60), Ok(()));
        assert_eq!(
            claims.check_time(1_000_000 - 61),
            Err(ClaimsError::NotValidYet)
        );
        let mut future = claims.clone();
        future.nbf = None;
        assert_eq!(
            future.check_time(1_000_000 - 61),
            Err(ClaimsError::IssuedInTheFuture)
        );
    }

    #[test]
    fn a_single_audience_may_be_a_string() {
        let claims: BoundClaims = serde_json::from_value(json!({"aud": "api"})).unwrap();
        assert_eq!(claims.aud, ["api"]);
        let claims: BoundClaims = serde_json::from_value(json!({})).unwrap();
        assert!(claims.aud.is_empty());
    }

    #[test]
    fn legacy_claims_name_the_secret_and_account() {
        let claims = LegacyClaims::new("ns", "builder-token", "builder", "sa-uid");
        let v = serde_json::to_value(&claims).unwrap();
        assert_eq!(
            v,
            json!({
                "iss": "kubernetes/serviceaccount",
                "kubernetes.io/serviceaccount/namespace": "ns",
                "kubernetes.io/serviceaccount/secret.name": "builder-token",
                "kubernetes.io/serviceaccount/service-account.name": "builder",
                "kubernetes.io/serviceaccount/service-account.uid": "sa-uid",
                "sub": "system:serviceaccount:ns:builder",
            })
        );
        assert_eq!(claims.check_complete(), Ok(()));
        let mut other = claims.clone();
        other.sub = "system:serviceaccount:ns:admin".into();
        assert_eq!(other.check_complete(), Err("sub claim is invalid"));
        let mut missing = claims;
        missing.service_account_uid.clear();
        assert_eq!(
            missing.check_complete(),
            Err("serviceAccountUID claim is missing")
        );
    }
}
