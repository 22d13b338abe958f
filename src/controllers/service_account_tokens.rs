//! Legacy service-account token Secrets (upstream's tokens controller): every Secret of
//! type `kubernetes.io/service-account-token` naming an existing ServiceAccount gets its
//! account's uid (annotation), a non-expiring `token`, the cluster CA (`ca.crt`) and its
//! `namespace`; a Secret whose account is gone (or was recreated: another uid) is
//! deleted, as are an account's token Secrets when the account is deleted.

use std::sync::Arc;

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use serde_json::{json, Value};

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::registry::DeleteOptions;
use crate::store::{Event, KeyValue};
use crate::tls::service_account::claims::LegacyClaims;
use crate::tls::service_account::SigningKey;

use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};

pub const SERVICE_ACCOUNT_TOKEN_TYPE: &str = "kubernetes.io/service-account-token";
pub const SERVICE_ACCOUNT_NAME_ANNOTATION: &str = "kubernetes.io/service-account.name";
pub const SERVICE_ACCOUNT_UID_ANNOTATION: &str = "kubernetes.io/service-account.uid";
/// Secrets reconciled at once.
const WORKERS: usize = 2;

/// What the controller fills token Secrets with.
#[derive(Clone)]
pub struct LegacyTokenSigner {
    /// The key service-account tokens are signed with.
    pub key: Arc<SigningKey>,
    /// PEM of the cluster CA, stored as `ca.crt`.
    pub root_ca: String,
}

fn secrets() -> &'static ResourceDef {
    resources::by_plural("", "v1", "secrets").expect("served")
}

fn service_accounts() -> &'static ResourceDef {
    resources::by_plural("", "v1", "serviceaccounts").expect("served")
}

fn is_token_secret(secret: &Value) -> bool {
    secret["type"].as_str() == Some(SERVICE_ACCOUNT_TOKEN_TYPE)
}

fn annotation<'a>(obj: &'a Value, key: &str) -> &'a str {
    obj["metadata"]["annotations"][key].as_str().unwrap_or("")
}

/// Keys of the token Secrets in `ns` that name the account `name`.
fn token_secrets_of(client: &dyn Client, ns: &str, name: &str) -> Vec<String> {
    let filter = |kv: &KeyValue| {
        is_token_secret(&kv.value) && annotation(&kv.value, SERVICE_ACCOUNT_NAME_ANNOTATION) == name
    };
    client
        .list(secrets(), Some(ns), &filter)
        .iter()
        .map(|kv| object_key(&kv.value))
        .collect()
}

fn account_event_keys(client: &dyn Client, event: &Event) -> Vec<String> {
    let sa = &event.kv.value;
    match object::namespace(sa) {
        Some(ns) => token_secrets_of(client, ns, object::name(sa)),
        None => vec![],
    }
}

/// Runs the controller until aborted.
pub async fn run(client: Arc<dyn Client>, signer: LegacyTokenSigner) {
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            secrets(),
            queue.clone(),
            Box::new(|e| {
                if is_token_secret(&e.kv.value) {
                    vec![object_key(&e.kv.value)]
                } else {
                    vec![]
                }
            }),
        ),
        Informer::start(client.clone(), service_accounts(), queue.clone(), {
            let client = client.clone();
            Box::new(move |e| account_event_keys(&*client, e))
        }),
    ];
    wait_for_sync(&informers).await;
    let signer = Arc::new(signer);
    run_workers(
        "serviceaccount-token-controller",
        queue,
        WORKERS,
        move |key| {
            let (client, signer) = (client.clone(), signer.clone());
            async move { reconcile(&*client, &signer, &key).await }
        },
    )
    .await;
}

async fn reconcile(client: &dyn Client, signer: &LegacyTokenSigner, key: &str) -> Reconciled {
    let (Some(ns), name) = split_key(key) else {
        return Ok(None);
    };
    let Ok(secret) = client.get(secrets(), Some(ns), name) else {
        return Ok(None);
    };
    if !is_token_secret(&secret.value) || object::is_deleting(&secret.value) {
        return Ok(None);
    }
    let account = annotation(&secret.value, SERVICE_ACCOUNT_NAME_ANNOTATION);
    let sa = client
        .get(service_accounts(), Some(ns), account)
        .ok()
        .filter(|sa| !object::is_deleting(&sa.value));
    let wanted_uid = annotation(&secret.value, SERVICE_ACCOUNT_UID_ANNOTATION);
    let sa_uid = sa
        .as_ref()
        .and_then(|sa| object::uid(&sa.value))
        .map(str::to_string);
    let Some(sa_uid) = sa_uid.filter(|uid| wanted_uid.is_empty() || wanted_uid == uid) else {
        tracing::info!(secret = %key, service_account = account, "deleting a token secret whose service account is gone");
        return match client
            .delete(secrets(), Some(ns), name, &DeleteOptions::default())
            .await
        {
            Err(e) if e.code != 404 => Err(e),
            _ => Ok(None),
        };
    };
    if filled(&secret.value, &sa_uid, signer, ns).is_none() {
        return Ok(None);
    }
    let mutate = |cur: &Value| -> Result<Value, ApiError> {
        Ok(filled(cur, &sa_uid, signer, ns).unwrap_or_else(|| cur.clone()))
    };
    match client
        .modify(secrets(), Some(ns), name, None, &mutate)
        .await
    {
        Err(e) if e.code != 404 => Err(e),
        _ => Ok(None),
    }
}

/// `secret` with what it lacks (the account's uid, a token, the CA, the namespace);
/// `None` when it lacks nothing. A token already there is kept.
fn filled(secret: &Value, sa_uid: &str, signer: &LegacyTokenSigner, ns: &str) -> Option<Value> {
    let data = &secret["data"];
    let has = |k: &str| data[k].as_str().is_some_and(|v| !v.is_empty());
    let ca = STANDARD.encode(&signer.root_ca);
    let needs_uid = annotation(secret, SERVICE_ACCOUNT_UID_ANNOTATION) != sa_uid;
    let needs_ca = !signer.root_ca.is_empty() && data["ca.crt"].as_str() != Some(ca.as_str());
    if !needs_uid && !needs_ca && has("token") && has("namespace") {
        return None;
    }
    let mut out = secret.clone();
    if !out["metadata"]["annotations"].is_object() {
        out["metadata"]["annotations"] = json!({});
    }
    out["metadata"]["annotations"][SERVICE_ACCOUNT_UID_ANNOTATION] = json!(sa_uid);
    if !out["data"].is_object() {
        out["data"] = json!({});
    }
    if !has("token") {
        let account = annotation(secret, SERVICE_ACCOUNT_NAME_ANNOTATION);
        let claims = LegacyClaims::new(ns, object::name(secret), account, sa_uid);
        match signer.key.sign(&claims) {
            Ok(token) => out["data"]["token"] = json!(STANDARD.encode(token)),
            Err(e) => {
                tracing::warn!(error = %e, secret = %object_key(secret), "cannot sign a legacy service-account token");
                return None;
            }
        }
    }
    if needs_ca {
        out["data"]["ca.crt"] = json!(ca);
    }
    if !has("namespace") {
        out["data"]["namespace"] = json!(STANDARD.encode(ns));
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::controllers::testutil::{self, wait_for};
    use std::time::Duration;

    const WAIT: Duration = Duration::from_secs(10);

    fn signer() -> LegacyTokenSigner {
        LegacyTokenSigner {
            key: Arc::new(SigningKey::generate().expect("key").0),
            root_ca: "-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n".into(),
        }
    }

    async fn create(registry: &Registry, def: &ResourceDef, obj: Value) -> Value {
        let w = registry
            .create(def, Some("default"), obj, &WriteOptions::default())
            .await
            .expect("create");
        (*w.kv.value).clone()
    }

    fn token_secret(name: &str, account: &str) -> Value {
        json!({"apiVersion": "v1", "kind": "Secret",
               "metadata": {"name": name, "annotations": {SERVICE_ACCOUNT_NAME_ANNOTATION: account}},
               "type": SERVICE_ACCOUNT_TOKEN_TYPE})
    }

    fn secret(registry: &Registry, name: &str) -> Option<Value> {
        registry
            .get(secrets(), Some("default"), name)
            .ok()
            .map(|kv| (*kv.value).clone())
    }

    #[tokio::test(start_paused = true)]
    async fn token_secrets_are_filled_and_follow_their_service_account() {
        let registry = testutil::registry().await;
        let signer = signer();
        let key = signer.key.clone();
        let sa = create(
            &registry,
            service_accounts(),
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "builder"}}),
        )
        .await;
        let sa_uid = object::uid(&sa).unwrap().to_string();
        let task = tokio::spawn(run(registry.clone(), signer));
        create(
            &registry,
            secrets(),
            token_secret("builder-token", "builder"),
        )
        .await;
        create(&registry, secrets(), token_secret("orphan-token", "nobody")).await;
        wait_for("the token secret to be filled", WAIT, || {
            secret(&registry, "builder-token").is_some_and(|s| s["data"]["token"].is_string())
        })
        .await;
        let filled = secret(&registry, "builder-token").unwrap();
        assert_eq!(annotation(&filled, SERVICE_ACCOUNT_UID_ANNOTATION), sa_uid);
        let decode = |k: &str| {
            String::from_utf8(
                STANDARD
                    .decode(filled["data"][k].as_str().unwrap())
                    .unwrap(),
            )
            .unwrap()
        };
        assert_eq!(decode("namespace"), "default");
        assert!(decode("ca.crt").contains("BEGIN CERTIFICATE"));
        let claims: LegacyClaims =
            serde_json::from_value(key.verify(&decode("token")).expect("signed")).unwrap();
        assert_eq!(
            claims,
            LegacyClaims::new("default", "builder-token", "builder", &sa_uid)
        );
        wait_for("the orphan token secret to go", WAIT, || {
            secret(&registry, "orphan-token").is_none()
        })
        .await;
        // Deleting the account deletes its token secrets.
        registry
            .delete(
                service_accounts(),
                Some("default"),
                "builder",
                &DeleteOptions::default(),
            )
            .await
            .expect("delete account");
        wait_for("the account's token secret to go", WAIT, || {
            secret(&registry, "builder-token").is_none()
        })
        .await;
        task.abort();
    }

    #[test]
    fn a_filled_secret_needs_nothing_and_keeps_its_token() {
        let signer = signer();
        let mut s = token_secret("t", "builder");
        s["metadata"]["namespace"] = json!("default");
        let once = filled(&s, "uid-1", &signer, "default").expect("fills");
        assert_eq!(filled(&once, "uid-1", &signer, "default"), None);
        let mut other_ca = signer.clone();
        other_ca.root_ca = "other".into();
        let again = filled(&once, "uid-1", &other_ca, "default").expect("new ca");
        assert_eq!(again["data"]["token"], once["data"]["token"]);
    }
}
