//! Service-account tokens against a real `orc server` and the real `kubectl`:
//! `kubectl create token` (plain and pod-bound) whose tokens authenticate as the account
//! (403 from the authorizer, not 401) until the account or the pod goes; forged, expired
//! and foreign tokens refused with 401; TokenReview; the OIDC discovery documents; a
//! legacy token Secret filled by the controller; upstream's errors for bad requests.

mod support;

use std::path::PathBuf;
use std::process::{Command, Output};

use base64::Engine;
use serde_json::{json, Value};

use orc::tls::service_account::claims::{
    Binding, BoundClaims, ObjectRef, TokenSpec, DEFAULT_ISSUER,
};
use orc::tls::service_account::SigningKey;
use support::server::{stdout, wait_for, Server};

/// The cluster CA as a file, for `kubectl --certificate-authority`.
fn ca_file(s: &Server) -> PathBuf {
    let path = s.dir.path().join("ca.crt");
    if !path.exists() {
        let kubeconfig = std::fs::read_to_string(s.kubeconfig()).expect("read kubeconfig");
        let creds = orc::tls::kubeconfig_credentials(&kubeconfig).expect("parse kubeconfig");
        std::fs::write(&path, creds.ca_pem).expect("write ca");
    }
    path
}

/// `kubectl` authenticated by `token` only (no kubeconfig, no client certificate).
fn kubectl_as(s: &Server, token: &str, args: &[&str]) -> Output {
    Command::new("kubectl")
        .arg("--server")
        .arg(s.url())
        .arg("--certificate-authority")
        .arg(ca_file(s))
        .arg("--token")
        .arg(token)
        .args(args)
        .env("KUBECONFIG", s.dir.path().join("no-kubeconfig.yaml"))
        .env_remove("KUBERNETES_SERVICE_HOST")
        .output()
        .expect("kubectl is installed")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Whether `token` authenticates: the authorizer's 403 (the account may not list pods)
/// proves it did; 401 proves it did not.
fn authenticates(s: &Server, token: &str, user: &str) -> bool {
    let out = kubectl_as(s, token, &["get", "pods", "-n", "default"]);
    let err = stderr(&out);
    assert!(!out.status.success(), "listing pods as {user} succeeded");
    if err.contains("Unauthorized") {
        return false;
    }
    assert!(
        err.contains("Forbidden") && err.contains(&format!("User \"{user}\"")),
        "expected a 403 for {user}: {err}"
    );
    true
}

fn wait_for_default_account(s: &Server) {
    wait_for("the default service account", || {
        s.kubectl(&["get", "serviceaccount", "default"])
            .status
            .success()
    });
}

fn create_token(s: &Server, args: &[&str]) -> String {
    let mut all = vec!["create", "token"];
    all.extend_from_slice(args);
    s.ok(&all).trim().to_string()
}

fn payload(token: &str) -> Value {
    let part = token.split('.').nth(1).expect("three parts");
    let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(part)
        .expect("base64url");
    serde_json::from_slice(&bytes).expect("json")
}

const DEFAULT_USER: &str = "system:serviceaccount:default:default";

#[test]
fn kubectl_create_token_authenticates_until_the_account_is_deleted() {
    let s = Server::start();
    wait_for_default_account(&s);
    let token = create_token(&s, &["default"]);
    let claims = payload(&token);
    assert_eq!(claims["iss"], DEFAULT_ISSUER);
    assert_eq!(claims["aud"], json!([DEFAULT_ISSUER]));
    assert_eq!(claims["sub"], DEFAULT_USER);
    assert_eq!(claims["kubernetes.io"]["namespace"], "default");
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        3600
    );
    assert!(authenticates(&s, &token, DEFAULT_USER));
    // --duration and --audience reach the claims; another audience is not the API's.
    let long = create_token(&s, &["default", "--duration", "2h"]);
    let claims = payload(&long);
    assert_eq!(
        claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
        7200
    );
    let vault = create_token(&s, &["default", "--audience", "vault"]);
    assert_eq!(payload(&vault)["aud"], json!(["vault"]));
    assert!(!authenticates(&s, &vault, DEFAULT_USER));
    // The account goes (the namespace controller makes a new one, with another uid).
    s.ok(&["delete", "serviceaccount", "default"]);
    wait_for("the deleted account's token to be refused", || {
        !authenticates(&s, &token, DEFAULT_USER)
    });
    assert!(
        !s.log().contains(&token),
        "the server log must never hold a token"
    );
}

#[test]
fn a_pod_bound_token_stops_working_when_the_pod_is_deleted() {
    let s = Server::start();
    wait_for_default_account(&s);
    s.ok(&["run", "web", "--image", "busybox", "--restart", "Never"]);
    let token = create_token(
        &s,
        &[
            "default",
            "--bound-object-kind",
            "Pod",
            "--bound-object-name",
            "web",
        ],
    );
    let pod_uid = s.get_json(&["pod", "web"])["metadata"]["uid"].clone();
    assert_eq!(
        payload(&token)["kubernetes.io"]["pod"],
        json!({"name": "web", "uid": pod_uid})
    );
    assert!(authenticates(&s, &token, DEFAULT_USER));
    s.ok(&["delete", "pod", "web", "--wait=true"]);
    wait_for("the pod's token to be refused", || {
        !authenticates(&s, &token, DEFAULT_USER)
    });
    // Binding to a missing pod is a 404.
    let err = s.fails(&[
        "create",
        "token",
        "default",
        "--bound-object-kind",
        "Pod",
        "--bound-object-name",
        "web",
    ]);
    assert!(err.contains("pods \"web\" not found"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forged_expired_and_foreign_tokens_get_401() {
    let s = Server::start();
    wait_for_default_account(&s);
    let sa = s.get_json(&["serviceaccount", "default"]);
    let uid = sa["metadata"]["uid"].as_str().unwrap().to_string();
    let now = chrono::Utc::now().timestamp();
    let claims = |now: i64, seconds: i64| {
        BoundClaims::new(TokenSpec {
            issuer: DEFAULT_ISSUER,
            namespace: "default",
            service_account: ObjectRef::new("default", &uid),
            binding: Binding::default(),
            audiences: vec![DEFAULT_ISSUER.to_string()],
            now,
            expiration_seconds: seconds,
            warn_after_seconds: None,
            id: "test".into(),
        })
    };
    let server_key = SigningKey::load_or_create(&s.data_dir().join("server/tls"))
        .expect("the server's signing key");
    let other_key = SigningKey::generate().expect("key").0;
    let client = s.client(false);
    let status = |token: String| {
        let client = client.clone();
        let url = format!("{}/api/v1/namespaces/default/pods", s.url());
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("request")
                .status()
                .as_u16()
        }
    };
    let good = server_key.sign(&claims(now, 600)).unwrap();
    assert_eq!(status(good.clone()).await, 403, "a token the server signed");
    let expired = server_key.sign(&claims(now - 4000, 600)).unwrap();
    assert_eq!(status(expired).await, 401, "an expired token");
    let foreign = other_key.sign(&claims(now, 600)).unwrap();
    assert_eq!(status(foreign).await, 401, "another key's token");
    let parts: Vec<&str> = good.split('.').collect();
    let mut forged_claims = payload(&good);
    forged_claims["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
    let forged = format!(
        "{}.{}.{}",
        parts[0],
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(forged_claims.to_string()),
        parts[2]
    );
    assert_eq!(status(forged).await, 401, "a forged token");
}

#[test]
fn token_review_tells_who_a_token_is() {
    let s = Server::start();
    wait_for_default_account(&s);
    let token = create_token(&s, &["default"]);
    let review = |token: &str, audiences: &str| {
        let yaml = format!(
            "apiVersion: authentication.k8s.io/v1\nkind: TokenReview\nspec:\n  token: {token}\n{audiences}"
        );
        let out = s.kubectl_stdin(&["create", "-f", "-", "-o", "json"], &yaml);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str::<Value>(&stdout(&out)).expect("json")["status"].clone()
    };
    let status = review(&token, "");
    assert_eq!(status["authenticated"], true, "{status}");
    assert_eq!(status["user"]["username"], DEFAULT_USER);
    let groups = status["user"]["groups"].as_array().unwrap();
    assert!(groups.contains(&json!("system:serviceaccounts:default")));
    assert_eq!(status["audiences"], json!([DEFAULT_ISSUER]));
    assert!(status["user"]["extra"]["authentication.kubernetes.io/credential-id"].is_array());
    let status = review(&token, "  audiences: [vault]\n");
    assert!(status.get("authenticated").is_none(), "{status}");
    assert!(
        status["error"].as_str().unwrap().contains("audiences"),
        "{status}"
    );
    let status = review("not-a-token", "");
    assert_eq!(status["error"], "invalid bearer token");
    // Create-only and never stored.
    let err = s.fails(&["get", "tokenreviews"]);
    assert!(
        err.contains("MethodNotAllowed") || err.contains("not allow"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_issuer_serves_oidc_discovery_and_its_key() {
    let s = Server::start();
    let client = s.client(true);
    let get = |path: &str| {
        let req = client.get(format!("{}{path}", s.url()));
        async move {
            let resp = req.send().await.expect("request");
            assert_eq!(resp.status(), 200);
            let content_type = resp.headers()["content-type"].to_str().unwrap().to_string();
            (content_type, resp.json::<Value>().await.expect("json"))
        }
    };
    let (content_type, config) = get("/.well-known/openid-configuration").await;
    assert_eq!(content_type, "application/json");
    assert_eq!(config["issuer"], DEFAULT_ISSUER);
    let jwks_uri = config["jwks_uri"].as_str().unwrap();
    assert!(jwks_uri.starts_with("https://") && jwks_uri.ends_with("/openid/v1/jwks"));
    assert_eq!(config["response_types_supported"], json!(["id_token"]));
    assert_eq!(config["subject_types_supported"], json!(["public"]));
    assert_eq!(
        config["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    let (content_type, jwks) = get("/openid/v1/jwks").await;
    assert_eq!(content_type, "application/jwk-set+json");
    let key = &jwks["keys"][0];
    assert_eq!(
        (key["kty"].as_str(), key["crv"].as_str()),
        (Some("EC"), Some("P-256"))
    );
    assert_eq!(
        (key["alg"].as_str(), key["use"].as_str()),
        (Some("ES256"), Some("sig"))
    );
    let server_key = SigningKey::load_or_create(&s.data_dir().join("server/tls")).unwrap();
    assert_eq!(key["kid"], server_key.key_id());
    // Anonymous callers are refused.
    let anonymous = s
        .client(false)
        .get(format!("{}/openid/v1/jwks", s.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[test]
fn a_legacy_token_secret_is_filled_and_works_while_it_exists() {
    let s = Server::start();
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: ServiceAccount\nmetadata:\n  name: builder\n---\n\
         apiVersion: v1\nkind: Secret\nmetadata:\n  name: builder-token\n  annotations:\n    \
         kubernetes.io/service-account.name: builder\ntype: kubernetes.io/service-account-token\n",
    );
    wait_for("the token secret to be filled", || {
        s.get_json(&["secret", "builder-token"])["data"]["token"].is_string()
    });
    let secret = s.get_json(&["secret", "builder-token"]);
    let sa = s.get_json(&["serviceaccount", "builder"]);
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        sa["metadata"]["uid"]
    );
    let decode = |k: &str| {
        let b64 = secret["data"][k]
            .as_str()
            .unwrap_or_else(|| panic!("data.{k}"));
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode("namespace"), "default");
    assert!(decode("ca.crt").contains("BEGIN CERTIFICATE"));
    let token = decode("token");
    assert_eq!(payload(&token)["iss"], "kubernetes/serviceaccount");
    let user = "system:serviceaccount:default:builder";
    assert!(authenticates(&s, &token, user));
    s.ok(&["delete", "secret", "builder-token"]);
    wait_for("the deleted secret's token to be refused", || {
        !authenticates(&s, &token, user)
    });
    // A token secret for a missing account is deleted.
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: orphan\n  annotations:\n    \
         kubernetes.io/service-account.name: nobody\ntype: kubernetes.io/service-account-token\n",
    );
    wait_for("the orphan token secret to be deleted", || {
        !s.kubectl(&["get", "secret", "orphan"]).status.success()
    });
}

#[test]
fn bad_token_requests_get_upstreams_errors_and_discovery_lists_the_subresource() {
    let s = Server::start();
    wait_for_default_account(&s);
    let err = s.fails(&["create", "token", "nobody"]);
    assert!(
        err.contains("serviceaccounts \"nobody\" not found"),
        "{err}"
    );
    let err = s.fails(&["create", "token", "default", "--duration", "5m"]);
    assert!(
        err.contains("may not specify a duration less than 10 minutes"),
        "{err}"
    );
    let core = s.ok(&["get", "--raw", "/api/v1"]);
    let core: Value = serde_json::from_str(&core).unwrap();
    let token = core["resources"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["name"] == "serviceaccounts/token")
        .expect("serviceaccounts/token listed");
    assert_eq!(token["kind"], "TokenRequest");
    assert_eq!(token["group"], "authentication.k8s.io");
    assert_eq!(token["verbs"], json!(["create"]));
    let resources = s.ok(&["api-resources", "--api-group", "authentication.k8s.io"]);
    assert!(resources.contains("tokenreviews"), "{resources}");
}
