//! Service-account tokens in the API server: the authenticator of bound and legacy
//! tokens (upstream's `JWTTokenAuthenticator` with its bound and legacy validators), the
//! `serviceaccounts/token` subresource (`token_request`), TokenReview (`review`) and the
//! OIDC discovery documents (`oidc`).

pub mod oidc;
pub mod review;
pub mod token_request;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use base64::Engine;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::api::identity::User;
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::apiserver::registry::Registry;
use crate::tls::service_account::claims::{
    BoundClaims, ClaimsError, LegacyClaims, LEEWAY_SECONDS, LEGACY_ISSUER,
};
use crate::tls::service_account::{self as jwt, JwtError, SigningKey};

/// Extra keys of a service account's user, as upstream.
pub const POD_NAME_KEY: &str = "authentication.kubernetes.io/pod-name";
pub const POD_UID_KEY: &str = "authentication.kubernetes.io/pod-uid";
pub const NODE_NAME_KEY: &str = "authentication.kubernetes.io/node-name";
pub const NODE_UID_KEY: &str = "authentication.kubernetes.io/node-uid";
pub const CREDENTIAL_ID_KEY: &str = "authentication.kubernetes.io/credential-id";
/// Verified tokens remembered at most (their signature is not checked again).
const MAX_CACHED_TOKENS: usize = 4096;

/// Why a service-account token does not authenticate (upstream's messages; never the
/// token itself).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error(transparent)]
    Jwt(#[from] JwtError),
    #[error(transparent)]
    Time(#[from] ClaimsError),
    #[error("token audiences {token:?} is invalid for the target audiences {wanted:?}")]
    Audience {
        token: Vec<String>,
        wanted: Vec<String>,
    },
    #[error("{0}")]
    Claims(&'static str),
    #[error("{0}")]
    Gone(String),
    #[error("{kind} UID ({actual}) does not match {claim} ({expected})")]
    UidMismatch {
        kind: &'static str,
        actual: String,
        claim: &'static str,
        expected: String,
    },
    #[error("token has been invalidated")]
    Invalidated,
    #[error("token does not match server's copy")]
    NotServersCopy,
}

/// A token that authenticated: who it is, and the audiences it was accepted for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authenticated {
    pub user: User,
    pub audiences: Vec<String>,
}

/// A token whose signature verified, with its claims.
#[derive(Debug)]
enum Verified {
    Bound(Box<BoundClaims>),
    Legacy(LegacyClaims),
}

/// The server's service-account token issuer and authenticator. Verified signatures
/// are cached by token hash (bounded); the claims' times and the objects a token names
/// are checked on every use.
pub struct ServiceAccountTokens {
    key: Arc<SigningKey>,
    issuer: String,
    api_audiences: Vec<String>,
    verified: Mutex<HashMap<[u8; 32], Arc<Verified>>>,
}

impl std::fmt::Debug for ServiceAccountTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccountTokens")
            .field("issuer", &self.issuer)
            .finish_non_exhaustive()
    }
}

impl ServiceAccountTokens {
    /// Tokens of `issuer`, whose API audience is the issuer (as upstream's default).
    pub fn new(key: Arc<SigningKey>, issuer: &str) -> ServiceAccountTokens {
        ServiceAccountTokens {
            key,
            issuer: issuer.to_string(),
            api_audiences: vec![issuer.to_string()],
            verified: Mutex::default(),
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    /// The audiences a token must carry one of to be accepted by this API server.
    pub fn api_audiences(&self) -> &[String] {
        &self.api_audiences
    }

    pub fn key(&self) -> &SigningKey {
        &self.key
    }

    /// Authenticates `token` for `audiences` (the API server's when `None`) at `now`
    /// (seconds since the epoch). `Ok(None)`: not a service-account token of this server
    /// (not a JWT, or another issuer's), for other authenticators to try.
    pub fn authenticate(
        &self,
        registry: &Registry,
        token: &str,
        audiences: Option<&[String]>,
        now: i64,
    ) -> Result<Option<Authenticated>, TokenError> {
        if !jwt::looks_like_jwt(token) {
            return Ok(None);
        }
        let Some(verified) = self.verified(token)? else {
            return Ok(None);
        };
        let wanted = audiences.unwrap_or(&self.api_audiences);
        let authenticated = match &*verified {
            Verified::Bound(claims) => {
                claims.check_time(now)?;
                let audiences = self.accepted_audiences(&claims.aud, wanted)?;
                let user = check_bound(registry, claims, now)?;
                Authenticated { user, audiences }
            }
            Verified::Legacy(claims) => {
                // Legacy tokens carry no audience: they are good for the API server only.
                let audiences = self.accepted_audiences(&[], wanted)?;
                let user = check_legacy(registry, claims, token)?;
                Authenticated { user, audiences }
            }
        };
        Ok(Some(authenticated))
    }

    /// The token's audiences (the API server's for none) that are wanted.
    fn accepted_audiences(
        &self,
        token: &[String],
        wanted: &[String],
    ) -> Result<Vec<String>, TokenError> {
        let token = if token.is_empty() {
            &self.api_audiences
        } else {
            token
        };
        let accepted: Vec<String> = token
            .iter()
            .filter(|a| wanted.contains(a))
            .cloned()
            .collect();
        if accepted.is_empty() {
            return Err(TokenError::Audience {
                token: token.to_vec(),
                wanted: wanted.to_vec(),
            });
        }
        Ok(accepted)
    }

    /// The verified claims of `token`, from the cache or checked now; `None` for another
    /// issuer's token.
    fn verified(&self, token: &str) -> Result<Option<Arc<Verified>>, TokenError> {
        let hash: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(hit) = self.cache().get(&hash) {
            return Ok(Some(hit.clone()));
        }
        let issuer = jwt::unverified_payload(token)?["iss"]
            .as_str()
            .unwrap_or_default()
            .to_string();
        if issuer != self.issuer && issuer != LEGACY_ISSUER {
            return Ok(None);
        }
        let payload = self.key.verify(token)?;
        let verified = if issuer == LEGACY_ISSUER {
            let claims: LegacyClaims = serde_json::from_value(payload)
                .map_err(|_| TokenError::Claims("token claims are malformed"))?;
            claims.check_complete().map_err(TokenError::Claims)?;
            Verified::Legacy(claims)
        } else {
            let claims: BoundClaims = serde_json::from_value(payload)
                .map_err(|_| TokenError::Claims("token claims are malformed"))?;
            if claims.kubernetes.namespace.is_empty()
                || claims.kubernetes.serviceaccount.name.is_empty()
            {
                return Err(TokenError::Claims("service account claims are missing"));
            }
            Verified::Bound(Box::new(claims))
        };
        let verified = Arc::new(verified);
        let mut cache = self.cache();
        if cache.len() >= MAX_CACHED_TOKENS {
            let now = chrono::Utc::now().timestamp();
            cache.retain(|_, v| match &**v {
                Verified::Bound(c) => c.exp.is_none_or(|exp| exp + LEEWAY_SECONDS >= now),
                Verified::Legacy(_) => true,
            });
            if cache.len() >= MAX_CACHED_TOKENS {
                cache.clear();
            }
        }
        cache.insert(hash, verified.clone());
        Ok(Some(verified))
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Arc<Verified>>> {
        self.verified.lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn core(plural: &str) -> &'static ResourceDef {
    resources::by_plural("", "v1", plural).expect("served")
}

/// The object named by a claim, from the watch cache.
fn lookup(
    registry: &Registry,
    plural: &str,
    ns: Option<&str>,
    name: &str,
) -> Result<Arc<Value>, TokenError> {
    registry
        .get(core(plural), ns, name)
        .map(|kv| kv.value.get())
        .map_err(|e| TokenError::Gone(e.message))
}

/// Whether `obj` was marked for deletion longer than the leeway before `now` (upstream
/// keeps tokens of objects being deleted gracefully valid until then).
fn deleted_before(obj: &Value, now: i64) -> bool {
    obj["metadata"]["deletionTimestamp"]
        .as_str()
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .is_some_and(|t| t.timestamp() < now - LEEWAY_SECONDS)
}

fn check_uid(
    obj: &Value,
    kind: &'static str,
    claim: &'static str,
    expected: &str,
) -> Result<(), TokenError> {
    let actual = object::uid(obj).unwrap_or_default();
    if actual != expected {
        return Err(TokenError::UidMismatch {
            kind,
            actual: actual.to_string(),
            claim,
            expected: expected.to_string(),
        });
    }
    Ok(())
}

/// Upstream's bound-token validator: the account, and the secret, pod or node the token
/// is bound to, still exist with the uids in the claims.
fn check_bound(registry: &Registry, claims: &BoundClaims, now: i64) -> Result<User, TokenError> {
    let k = &claims.kubernetes;
    let ns = k.namespace.as_str();
    let sa = lookup(
        registry,
        "serviceaccounts",
        Some(ns),
        &k.serviceaccount.name,
    )?;
    if deleted_before(&sa, now) {
        return Err(TokenError::Gone(format!(
            "service account {ns}/{} has been deleted",
            k.serviceaccount.name
        )));
    }
    check_uid(&sa, "service account", "claim", &k.serviceaccount.uid)?;
    if let Some(secret_ref) = &k.secret {
        let secret = lookup(registry, "secrets", Some(ns), &secret_ref.name)?;
        if deleted_before(&secret, now) {
            return Err(TokenError::Gone(format!(
                "secret {ns}/{} has been deleted",
                secret_ref.name
            )));
        }
        check_uid(
            &secret,
            "secret",
            "service account secret ref claim",
            &secret_ref.uid,
        )?;
    }
    let mut user = User::service_account(ns, &k.serviceaccount.name, &k.serviceaccount.uid);
    let mut extra = BTreeMap::new();
    if let Some(pod_ref) = &k.pod {
        let pod = lookup(registry, "pods", Some(ns), &pod_ref.name)?;
        if deleted_before(&pod, now) {
            return Err(TokenError::Gone(format!(
                "pod {ns}/{} has been deleted",
                pod_ref.name
            )));
        }
        check_uid(&pod, "pod", "service account pod ref claim", &pod_ref.uid)?;
        extra.insert(POD_NAME_KEY.to_string(), vec![pod_ref.name.clone()]);
        extra.insert(POD_UID_KEY.to_string(), vec![pod_ref.uid.clone()]);
    }
    if let Some(node_ref) = &k.node {
        // A pod-bound token only records its pod's node; a node-bound one needs the node.
        if k.pod.is_none() {
            let node = lookup(registry, "nodes", None, &node_ref.name)?;
            if deleted_before(&node, now) {
                return Err(TokenError::Gone(format!(
                    "node {} has been deleted",
                    node_ref.name
                )));
            }
            check_uid(
                &node,
                "node",
                "service account node ref claim",
                &node_ref.uid,
            )?;
        }
        extra.insert(NODE_NAME_KEY.to_string(), vec![node_ref.name.clone()]);
        if !node_ref.uid.is_empty() {
            extra.insert(NODE_UID_KEY.to_string(), vec![node_ref.uid.clone()]);
        }
    }
    if let Some(jti) = claims.jti.as_deref().filter(|j| !j.is_empty()) {
        extra.insert(CREDENTIAL_ID_KEY.to_string(), vec![format!("JTI={jti}")]);
    }
    user.extra = extra;
    Ok(user)
}

/// Upstream's legacy validator: the Secret still exists and holds this very token, and
/// the account still exists with the uid in the claims.
fn check_legacy(
    registry: &Registry,
    claims: &LegacyClaims,
    token: &str,
) -> Result<User, TokenError> {
    let ns = claims.namespace.as_str();
    let secret = lookup(registry, "secrets", Some(ns), &claims.secret_name)
        .map_err(|_| TokenError::Invalidated)?;
    if object::is_deleting(&secret) {
        return Err(TokenError::Invalidated);
    }
    let stored = secret["data"]["token"]
        .as_str()
        .and_then(|b64| base64::engine::general_purpose::STANDARD.decode(b64).ok())
        .unwrap_or_default();
    if !crate::apiserver::auth::constant_time_eq(&stored, token.as_bytes()) {
        return Err(TokenError::NotServersCopy);
    }
    let sa = lookup(
        registry,
        "serviceaccounts",
        Some(ns),
        &claims.service_account_name,
    )?;
    if object::is_deleting(&sa) {
        return Err(TokenError::Gone(format!(
            "service account {ns}/{} has been deleted",
            claims.service_account_name
        )));
    }
    check_uid(&sa, "service account", "claim", &claims.service_account_uid)?;
    Ok(User::service_account(
        ns,
        &claims.service_account_name,
        &claims.service_account_uid,
    ))
}

/// A request body must be an `authentication.k8s.io/v1` `kind` whose fields have the
/// types of `T` (the status is the server's to write, cleared upstream: not checked).
fn check_body<T: serde::de::DeserializeOwned>(
    body: &Value,
    kind: &str,
) -> Result<(), crate::api::status::ApiError> {
    const API_VERSION: &str = "authentication.k8s.io/v1";
    let got_kind = body["kind"].as_str().unwrap_or(kind);
    let api_version = body["apiVersion"].as_str().unwrap_or(API_VERSION);
    if got_kind != kind || api_version != API_VERSION {
        return Err(crate::api::status::ApiError::bad_request(format!(
            "the body of the request must be a {API_VERSION} {kind}, not {api_version} {got_kind}"
        )));
    }
    let mut request = body.clone();
    if let Some(fields) = request.as_object_mut() {
        fields.remove("status");
    }
    serde_json::from_value::<T>(request).map_err(|e| {
        crate::api::status::ApiError::bad_request(format!(
            "{kind} in version \"v1\" cannot be handled as a {kind}: {e}"
        ))
    })?;
    Ok(())
}

#[cfg(test)]
mod tests;
