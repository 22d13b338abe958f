//! The kubelet's service-account token manager (upstream `pkg/kubelet/token`): tokens
//! for projected `serviceAccountToken` sources, requested from the API server bound to
//! their pod, cached per (pod, account, audience, lifetime) and renewed once 80% of the
//! lifetime has passed or the token is a day old. A failed renewal keeps the old token
//! while it is valid and is retried with back-off. Decisions take the time as an
//! argument, so they are tested with a driven clock.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

/// A token is renewed once it is this old, whatever its lifetime (upstream `maxTTL`).
pub const MAX_TOKEN_AGE: Duration = Duration::from_secs(24 * 60 * 60);
/// Share of the lifetime left when a token is renewed (upstream: 20%).
const RENEW_WHEN_LEFT_PERCENT: i64 = 20;
/// Back-off after failed requests: doubles from the first up to the last.
const FIRST_RETRY: Duration = Duration::from_secs(1);
const MAX_RETRY: Duration = Duration::from_secs(128);
/// `expirationSeconds` of a source that sets none (upstream's default, one hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;

/// What a token is cached under.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenKey {
    pub pod_uid: String,
    pub namespace: String,
    pub account: String,
    /// Empty: the API server's own audience.
    pub audience: String,
    pub expiration_seconds: i64,
}

/// A token as the API server issued it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssuedToken {
    pub token: String,
    pub expires: DateTime<Utc>,
}

#[derive(Debug, Default)]
struct Entry {
    token: Option<IssuedToken>,
    failures: u32,
    retry_at: Option<DateTime<Utc>>,
}

/// What to do for a token now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// The cached token is good (or a renewal is backing off and it is still valid).
    Use(String),
    /// Ask the API server.
    Request,
    /// A request failed moments ago and there is no valid token: wait.
    BackingOff,
}

/// The tokens of this kubelet's pods (one per agent, shared by its pod workers).
#[derive(Debug, Default)]
pub struct TokenManager {
    cache: Mutex<HashMap<TokenKey, Entry>>,
}

impl TokenManager {
    pub fn new() -> TokenManager {
        TokenManager::default()
    }

    /// Whether the token under `key` may be used at `now` or must be requested.
    pub fn decide(&self, key: &TokenKey, now: DateTime<Utc>) -> Decision {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = cache.get(key) else {
            return Decision::Request;
        };
        let Some(token) = &entry.token else {
            return match entry.retry_at {
                Some(at) if now < at => Decision::BackingOff,
                _ => Decision::Request,
            };
        };
        let backing_off = entry.retry_at.is_some_and(|at| now < at);
        if !requires_refresh(token, key.expiration_seconds, now)
            || (backing_off && now < token.expires)
        {
            Decision::Use(token.token.clone())
        } else {
            Decision::Request
        }
    }

    /// Records a token the API server issued.
    pub fn issued(&self, key: &TokenKey, token: IssuedToken) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.insert(
            key.clone(),
            Entry {
                token: Some(token),
                failures: 0,
                retry_at: None,
            },
        );
    }

    /// Records a failed request at `now`: returns the old token if it is still valid
    /// (kept until a retry succeeds), and sets when the next request may happen.
    pub fn failed(&self, key: &TokenKey, now: DateTime<Utc>) -> Option<String> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        let entry = cache.entry(key.clone()).or_default();
        entry.failures += 1;
        let wait = FIRST_RETRY
            .saturating_mul(1u32 << (entry.failures - 1).min(16))
            .min(MAX_RETRY);
        entry.retry_at = Some(now + chrono::Duration::from_std(wait).unwrap_or_default());
        entry
            .token
            .as_ref()
            .filter(|t| now < t.expires)
            .map(|t| t.token.clone())
    }

    /// Drops the tokens of a pod that is gone.
    pub fn forget_pod(&self, pod_uid: &str) {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.retain(|k, _| k.pod_uid != pod_uid);
    }
}

/// Upstream `requiresRefresh`: renew past 80% of the lifetime (counted back from the
/// expiry by the requested seconds) or once the token is [`MAX_TOKEN_AGE`] old.
pub fn requires_refresh(token: &IssuedToken, expiration_seconds: i64, now: DateTime<Utc>) -> bool {
    let issued = token.expires - chrono::Duration::seconds(expiration_seconds);
    let max_age = chrono::Duration::from_std(MAX_TOKEN_AGE).unwrap_or_default();
    if now > issued + max_age {
        return true;
    }
    let renew_at = token.expires
        - chrono::Duration::seconds(expiration_seconds * RENEW_WHEN_LEFT_PERCENT / 100);
    now > renew_at
}

/// The `TokenRequest` body for a projected `source` of pod `pod` (upstream wire format:
/// bound to the pod by name and uid).
pub fn token_request(source: &Value, pod_name: &str, pod_uid: &str) -> Value {
    let audiences: Vec<&str> = source["audience"]
        .as_str()
        .filter(|a| !a.is_empty())
        .into_iter()
        .collect();
    json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
        "audiences": audiences,
        "expirationSeconds": expiration_seconds(source),
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod_name, "uid": pod_uid},
    }})
}

/// A source's `expirationSeconds` (an hour when unset).
pub fn expiration_seconds(source: &Value) -> i64 {
    source["expirationSeconds"]
        .as_i64()
        .unwrap_or(DEFAULT_EXPIRATION_SECONDS)
}

/// The token and its expiry from a `TokenRequest` answer (`None` when it has neither).
pub fn issued_from(answer: &Value) -> Option<IssuedToken> {
    let token = answer["status"]["token"]
        .as_str()
        .filter(|t| !t.is_empty())?;
    let expires = answer["status"]["expirationTimestamp"]
        .as_str()?
        .parse::<DateTime<Utc>>()
        .ok()?;
    Some(IssuedToken {
        token: token.to_string(),
        expires,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> TokenKey {
        TokenKey {
            pod_uid: "uid-1".into(),
            namespace: "ns".into(),
            account: "default".into(),
            audience: String::new(),
            expiration_seconds: 3600,
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_700_000_000 + secs, 0).unwrap()
    }

    fn token(name: &str, issued: i64, lifetime: i64) -> IssuedToken {
        IssuedToken {
            token: name.into(),
            expires: at(issued + lifetime),
        }
    }

    #[test]
    fn a_token_is_renewed_past_eighty_percent_of_its_lifetime() {
        let t = token("a", 0, 3600);
        assert!(!requires_refresh(&t, 3600, at(0)));
        assert!(
            !requires_refresh(&t, 3600, at(2880)),
            "exactly 80%: not yet"
        );
        assert!(requires_refresh(&t, 3600, at(2881)));
        assert!(requires_refresh(&t, 3600, at(4000)), "expired");
    }

    #[test]
    fn a_long_lived_token_is_renewed_after_a_day() {
        let week = 7 * 24 * 3600;
        let t = token("a", 0, week);
        assert!(!requires_refresh(&t, week, at(24 * 3600)));
        assert!(requires_refresh(&t, week, at(24 * 3600 + 1)));
    }

    #[test]
    fn the_cache_serves_until_renewal_and_keeps_the_old_token_while_renewal_fails() {
        let tokens = TokenManager::new();
        let k = key();
        assert_eq!(tokens.decide(&k, at(0)), Decision::Request);
        tokens.issued(&k, token("first", 0, 3600));
        assert_eq!(tokens.decide(&k, at(2000)), Decision::Use("first".into()));
        assert_eq!(tokens.decide(&k, at(2900)), Decision::Request);

        // Renewal fails: the old token stays, with growing pauses between requests.
        assert_eq!(tokens.failed(&k, at(2900)), Some("first".into()));
        assert_eq!(tokens.decide(&k, at(2900)), Decision::Use("first".into()));
        assert_eq!(tokens.decide(&k, at(2901)), Decision::Request);
        assert_eq!(tokens.failed(&k, at(2901)), Some("first".into()));
        assert_eq!(tokens.decide(&k, at(2902)), Decision::Use("first".into()));
        assert_eq!(tokens.decide(&k, at(2903)), Decision::Request);
        for _ in 0..20 {
            tokens.failed(&k, at(3000));
        }
        assert_eq!(tokens.decide(&k, at(3127)), Decision::Use("first".into()));
        assert_eq!(
            tokens.decide(&k, at(3128)),
            Decision::Request,
            "back-off is capped"
        );

        // Past its expiry the old token is no longer offered.
        assert_eq!(tokens.failed(&k, at(3600)), None);
        assert_eq!(tokens.decide(&k, at(3601)), Decision::Request);
        let fresh = TokenKey {
            pod_uid: "uid-2".into(),
            ..key()
        };
        assert_eq!(tokens.failed(&fresh, at(0)), None);
        assert_eq!(tokens.decide(&fresh, at(0)), Decision::BackingOff);
        assert_eq!(tokens.decide(&fresh, at(1)), Decision::Request);

        tokens.issued(&k, token("second", 3601, 3600));
        assert_eq!(tokens.decide(&k, at(3700)), Decision::Use("second".into()));
    }

    #[test]
    fn tokens_are_kept_per_pod_account_audience_and_lifetime() {
        let tokens = TokenManager::new();
        tokens.issued(&key(), token("a", 0, 3600));
        let other_audience = TokenKey {
            audience: "vault".into(),
            ..key()
        };
        assert_eq!(tokens.decide(&other_audience, at(1)), Decision::Request);
        let other_lifetime = TokenKey {
            expiration_seconds: 600,
            ..key()
        };
        assert_eq!(tokens.decide(&other_lifetime, at(1)), Decision::Request);
        tokens.forget_pod("uid-1");
        assert_eq!(tokens.decide(&key(), at(1)), Decision::Request);
    }

    #[test]
    fn the_request_is_bound_to_the_pod_in_upstreams_wire_format() {
        let source = json!({"path": "token", "expirationSeconds": 3607});
        assert_eq!(
            token_request(&source, "web", "uid-9"),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": {
                "audiences": [], "expirationSeconds": 3607,
                "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web", "uid": "uid-9"}}})
        );
        let vault = json!({"path": "t", "audience": "vault"});
        let body = token_request(&vault, "web", "uid-9");
        assert_eq!(body["spec"]["audiences"], json!(["vault"]));
        assert_eq!(body["spec"]["expirationSeconds"], 3600);
        let answer =
            json!({"status": {"token": "jwt", "expirationTimestamp": "2026-01-02T03:04:05Z"}});
        assert_eq!(
            issued_from(&answer),
            Some(IssuedToken {
                token: "jwt".into(),
                expires: "2026-01-02T03:04:05Z".parse().unwrap()
            })
        );
        assert_eq!(issued_from(&json!({"status": {}})), None);
    }
}
