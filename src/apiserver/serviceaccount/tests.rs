use std::sync::Arc;

use base64::Engine;
use serde_json::{json, Value};

use super::token_request::{self, EXTENDED_EXPIRATION_SECONDS};
use super::*;
use crate::apiserver::allocator::Allocators;
use crate::apiserver::registry::{DeleteOptions, WriteOptions};
use crate::store::sqlite::SqliteStore;
use crate::tls::service_account::claims::DEFAULT_ISSUER;

struct Fixture {
    _dir: tempfile::TempDir,
    registry: Registry,
    tokens: Arc<ServiceAccountTokens>,
}

async fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = SqliteStore::open(&dir.path().join("db")).expect("open store");
    let allocators = Allocators::new("10.43.0.0/24".parse().expect("cidr"), (30000, 32767));
    let mut registry = Registry::new(Arc::new(store), allocators);
    let key = Arc::new(SigningKey::generate().expect("key").0);
    let tokens = Arc::new(ServiceAccountTokens::new(key, DEFAULT_ISSUER));
    registry.service_account_tokens = Some(tokens.clone());
    let f = Fixture {
        _dir: dir,
        registry,
        tokens,
    };
    f.create("namespaces", None, json!({"metadata": {"name": "default"}}))
        .await;
    f.create(
        "serviceaccounts",
        Some("default"),
        json!({"metadata": {"name": "builder"}}),
    )
    .await;
    // What the namespace controller creates (pods need their account to exist).
    f.create(
        "serviceaccounts",
        Some("default"),
        json!({"metadata": {"name": "default"}}),
    )
    .await;
    f
}

impl Fixture {
    async fn create(&self, plural: &str, ns: Option<&str>, mut obj: Value) -> Value {
        let def = core(plural);
        obj["apiVersion"] = json!("v1");
        obj["kind"] = json!(def.kind);
        let w = self
            .registry
            .create(def, ns, obj, &WriteOptions::default())
            .await
            .unwrap_or_else(|e| panic!("create {plural}: {e}"));
        (*w.kv.value).clone()
    }

    async fn delete(&self, plural: &str, ns: Option<&str>, name: &str) {
        let opts = DeleteOptions {
            grace_period: Some(0),
            ..DeleteOptions::default()
        };
        self.registry
            .delete(core(plural), ns, name, &opts)
            .await
            .unwrap_or_else(|e| panic!("delete {plural}/{name}: {e}"));
    }

    fn request(&self, requester: &User, name: &str, body: Value) -> Result<Value, ApiError> {
        token_request::create(
            &self.registry,
            &self.tokens,
            requester,
            "default",
            name,
            &body,
            chrono::Utc::now(),
        )
    }

    fn token(&self, spec: Value) -> String {
        let body =
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec});
        let answer = self
            .request(&admin(), "builder", body)
            .expect("token request");
        answer["status"]["token"]
            .as_str()
            .expect("token")
            .to_string()
    }

    fn authenticate(&self, token: &str) -> Result<Option<Authenticated>, TokenError> {
        self.tokens
            .authenticate(&self.registry, token, None, chrono::Utc::now().timestamp())
    }
}

use crate::api::status::ApiError;

fn admin() -> User {
    User {
        name: "admin".into(),
        groups: vec![crate::api::identity::ADMIN_GROUP.into()],
        ..Default::default()
    }
}

fn node(name: &str) -> User {
    User {
        name: format!("system:node:{name}"),
        groups: vec![crate::api::identity::NODES_GROUP.into()],
        ..Default::default()
    }
}

fn pod(name: &str, account: &str, node: Option<&str>) -> Value {
    let mut spec = json!({"serviceAccountName": account,
                          "containers": [{"name": "c", "image": "busybox"}]});
    if let Some(node) = node {
        spec["nodeName"] = json!(node);
    }
    json!({"metadata": {"name": name}, "spec": spec})
}

fn claims_of(token: &str) -> Value {
    crate::tls::service_account::unverified_payload(token).expect("payload")
}

#[tokio::test]
async fn a_requested_token_authenticates_as_its_service_account() {
    let f = fixture().await;
    let token = f.token(json!({}));
    let auth = f.authenticate(&token).expect("valid").expect("ours");
    assert_eq!(auth.user.name, "system:serviceaccount:default:builder");
    assert!(auth
        .user
        .groups
        .contains(&"system:serviceaccounts".to_string()));
    assert!(auth
        .user
        .groups
        .contains(&"system:serviceaccounts:default".to_string()));
    assert_eq!(auth.audiences, [DEFAULT_ISSUER]);
    let sa = f
        .registry
        .get(core("serviceaccounts"), Some("default"), "builder")
        .unwrap();
    assert_eq!(auth.user.uid, object::uid(&sa.value).unwrap());
    let jti = claims_of(&token)["jti"].as_str().unwrap().to_string();
    assert_eq!(auth.user.extra[CREDENTIAL_ID_KEY], [format!("JTI={jti}")]);
    // The second use comes from the cache and still checks the account.
    assert!(f.authenticate(&token).unwrap().is_some());
    f.delete("serviceaccounts", Some("default"), "builder")
        .await;
    let e = f.authenticate(&token).unwrap_err();
    assert_eq!(e.to_string(), "serviceaccounts \"builder\" not found");
    // A new account of the same name has another uid.
    f.create(
        "serviceaccounts",
        Some("default"),
        json!({"metadata": {"name": "builder"}}),
    )
    .await;
    let e = f.authenticate(&token).unwrap_err();
    assert!(matches!(e, TokenError::UidMismatch { .. }), "{e}");
}

#[tokio::test]
async fn a_token_for_another_audience_does_not_authenticate_to_the_api() {
    let f = fixture().await;
    let token = f.token(json!({"audiences": ["vault"]}));
    let e = f.authenticate(&token).unwrap_err();
    assert!(matches!(e, TokenError::Audience { .. }), "{e}");
    let wanted = vec!["vault".to_string(), "other".to_string()];
    let auth = f
        .tokens
        .authenticate(
            &f.registry,
            &token,
            Some(&wanted),
            chrono::Utc::now().timestamp(),
        )
        .unwrap()
        .unwrap();
    assert_eq!(auth.audiences, ["vault"]);
}

#[tokio::test]
async fn expired_forged_and_foreign_tokens_are_refused() {
    let f = fixture().await;
    let token = f.token(json!({"expirationSeconds": 600}));
    let later = chrono::Utc::now().timestamp() + 600 + 61;
    let e = f
        .tokens
        .authenticate(&f.registry, &token, None, later)
        .unwrap_err();
    assert_eq!(e.to_string(), "service account token has expired");
    // Claims changed after signing.
    let parts: Vec<&str> = token.split('.').collect();
    let mut claims = claims_of(&token);
    claims["kubernetes.io"]["serviceaccount"]["name"] = json!("default");
    let forged_payload =
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(claims.to_string());
    let forged = format!("{}.{forged_payload}.{}", parts[0], parts[2]);
    assert_eq!(
        f.authenticate(&forged).unwrap_err(),
        TokenError::Jwt(JwtError::Signature)
    );
    // Signed by another key for this issuer.
    let other = SigningKey::generate().unwrap().0;
    let foreign = other.sign(&claims).unwrap();
    assert!(f.authenticate(&foreign).is_err());
    // Another issuer's token, or no JWT at all, is left to other authenticators.
    let mut elsewhere = claims.clone();
    elsewhere["iss"] = json!("https://accounts.example.com");
    assert_eq!(f.authenticate(&other.sign(&elsewhere).unwrap()), Ok(None));
    assert_eq!(f.authenticate("abc"), Ok(None));
}

#[tokio::test]
async fn a_pod_bound_token_names_the_pod_and_node_and_dies_with_the_pod() {
    let f = fixture().await;
    let node_obj = f
        .create("nodes", None, json!({"metadata": {"name": "n1"}}))
        .await;
    let p = f
        .create("pods", Some("default"), pod("web", "builder", Some("n1")))
        .await;
    let pod_uid = object::uid(&p).unwrap().to_string();
    let token =
        f.token(json!({"boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}));
    let claims = claims_of(&token);
    assert_eq!(
        claims["kubernetes.io"]["pod"],
        json!({"name": "web", "uid": pod_uid})
    );
    let node_uid = object::uid(&node_obj).unwrap();
    assert_eq!(
        claims["kubernetes.io"]["node"],
        json!({"name": "n1", "uid": node_uid})
    );
    let auth = f.authenticate(&token).unwrap().unwrap();
    assert_eq!(auth.user.extra[POD_NAME_KEY], ["web"]);
    assert_eq!(auth.user.extra[POD_UID_KEY], [pod_uid]);
    assert_eq!(auth.user.extra[NODE_NAME_KEY], ["n1"]);
    assert_eq!(auth.user.extra[NODE_UID_KEY], [node_uid]);
    f.delete("pods", Some("default"), "web").await;
    let e = f.authenticate(&token).unwrap_err();
    assert_eq!(e.to_string(), "pods \"web\" not found");
}

#[tokio::test]
async fn kubelet_style_requests_get_extended_tokens_that_warn_after_the_asked_time() {
    let f = fixture().await;
    f.create("pods", Some("default"), pod("web", "builder", None))
        .await;
    let body = json!({"spec": {"expirationSeconds": 3607,
        "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web"}}});
    let answer = f.request(&admin(), "builder", body).unwrap();
    let claims = claims_of(answer["status"]["token"].as_str().unwrap());
    let iat = claims["iat"].as_i64().unwrap();
    assert_eq!(
        claims["exp"].as_i64().unwrap() - iat,
        EXTENDED_EXPIRATION_SECONDS
    );
    assert_eq!(
        claims["kubernetes.io"]["warnafter"].as_i64().unwrap() - iat,
        3607
    );
    assert_eq!(answer["spec"]["expirationSeconds"], 3607);
    let expires = chrono::DateTime::parse_from_rfc3339(
        answer["status"]["expirationTimestamp"].as_str().unwrap(),
    )
    .unwrap();
    assert_eq!(expires.timestamp() - iat, 3607);
}

#[tokio::test]
async fn bad_token_requests_get_upstreams_errors() {
    let f = fixture().await;
    let e = f.request(&admin(), "nobody", json!({})).unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "serviceaccounts \"nobody\" not found")
    );
    let e = f
        .request(
            &admin(),
            "builder",
            json!({"spec": {"expirationSeconds": 599}}),
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    assert_eq!(
        e.message,
        "TokenRequest.authentication.k8s.io \"builder\" is invalid: spec.expirationSeconds: Invalid value: 599: may not specify a duration less than 10 minutes"
    );
    let e = f
        .request(
            &admin(),
            "builder",
            json!({"spec": {"expirationSeconds": (1i64 << 32) + 1}}),
        )
        .unwrap_err();
    assert_eq!(e.code, 422);
    let e = f
        .request(
            &admin(),
            "builder",
            json!({"spec": {"expirationSeconds": "soon"}}),
        )
        .unwrap_err();
    assert_eq!(e.code, 400);
    let bound = |kind: &str, name: &str, uid: &str| json!({"spec": {"boundObjectRef": {"kind": kind, "apiVersion": "v1", "name": name, "uid": uid}}});
    let e = f
        .request(&admin(), "builder", bound("Pod", "gone", ""))
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (404, "pods \"gone\" not found")
    );
    f.create("pods", Some("default"), pod("other", "default", None))
        .await;
    let e = f
        .request(&admin(), "builder", bound("Pod", "other", ""))
        .unwrap_err();
    assert_eq!(e.code, 400, "{e}");
    f.create(
        "secrets",
        Some("default"),
        json!({"metadata": {"name": "s"}}),
    )
    .await;
    let e = f
        .request(&admin(), "builder", bound("Secret", "s", "wrong"))
        .unwrap_err();
    assert_eq!(e.code, 409, "{e}");
    assert!(e.message.starts_with("Operation cannot be fulfilled on Secret \"s\": the UID in the bound object reference (wrong)"), "{e}");
    let e = f
        .request(&admin(), "builder", bound("ConfigMap", "c", ""))
        .unwrap_err();
    assert_eq!(e.code, 400, "{e}");
    let mut named = json!({"metadata": {"name": "someone-else"}});
    named["spec"] = json!({});
    assert_eq!(f.request(&admin(), "builder", named).unwrap_err().code, 422);
}

#[tokio::test]
async fn nodes_get_tokens_only_for_pods_bound_to_them() {
    let f = fixture().await;
    let mine = f
        .create("pods", Some("default"), pod("mine", "builder", Some("n1")))
        .await;
    let theirs = f
        .create(
            "pods",
            Some("default"),
            pod("theirs", "builder", Some("n2")),
        )
        .await;
    let bound = |p: &Value| {
        json!({"spec": {"boundObjectRef": {"kind": "Pod", "apiVersion": "v1",
            "name": object::name(p), "uid": object::uid(p).unwrap()}}})
    };
    assert!(f.request(&node("n1"), "builder", bound(&mine)).is_ok());
    let e = f
        .request(&node("n1"), "builder", bound(&theirs))
        .unwrap_err();
    assert_eq!(
        (e.code, e.message.as_str()),
        (403, "serviceaccounts \"builder\" is forbidden: node requested token bound to a pod scheduled on a different node")
    );
    let e = f.request(&node("n1"), "builder", json!({})).unwrap_err();
    assert_eq!(
        e.message,
        "serviceaccounts \"builder\" is forbidden: node requested token not bound to a pod"
    );
}

#[tokio::test]
async fn legacy_secret_tokens_work_while_the_secret_holds_them() {
    let f = fixture().await;
    let sa = f
        .registry
        .get(core("serviceaccounts"), Some("default"), "builder")
        .unwrap();
    let uid = object::uid(&sa.value).unwrap();
    let claims = LegacyClaims::new("default", "builder-token", "builder", uid);
    let token = f.tokens.key().sign(&claims).unwrap();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    // No Secret yet: invalidated.
    assert_eq!(f.authenticate(&token), Err(TokenError::Invalidated));
    f.create(
        "secrets",
        Some("default"),
        json!({"metadata": {"name": "builder-token",
                "annotations": {"kubernetes.io/service-account.name": "builder"}},
               "type": "kubernetes.io/service-account-token",
               "data": {"token": b64(&token)}}),
    )
    .await;
    let auth = f.authenticate(&token).unwrap().unwrap();
    assert_eq!(auth.user.name, "system:serviceaccount:default:builder");
    assert_eq!(auth.user.uid, uid);
    assert_eq!(auth.audiences, [DEFAULT_ISSUER]);
    // Good only for the API server's audience.
    let vault = vec!["vault".to_string()];
    assert!(f
        .tokens
        .authenticate(&f.registry, &token, Some(&vault), 0)
        .is_err());
    let other = f
        .tokens
        .key()
        .sign(&LegacyClaims::new(
            "default",
            "builder-token",
            "builder",
            uid,
        ))
        .unwrap();
    // Same claims, another (valid) signature: not the Secret's token.
    assert_ne!(other, token);
    assert_eq!(f.authenticate(&other), Err(TokenError::NotServersCopy));
}
