//! Upstream's ServiceAccount admission for new pods (plugin/pkg/admission/serviceaccount):
//! the pod runs as an existing ServiceAccount (`default` unless it names one), takes the
//! account's image pull secrets when it has none, and gets the `kube-api-access-*`
//! projected volume (token, cluster CA, namespace) mounted in every container unless the
//! pod or its account opts out.

use std::time::Duration;

use serde_json::{json, Value};

use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::apiserver::registry::strategy::Context;

/// The account a pod runs as when it names none.
pub const DEFAULT_SERVICE_ACCOUNT: &str = "default";
/// Prefix of the generated token volume's name (a random 5-character suffix follows).
pub const TOKEN_VOLUME_PREFIX: &str = "kube-api-access-";
/// Where every container finds the token, the CA and the namespace.
pub const TOKEN_MOUNT_PATH: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The ConfigMap holding the cluster CA in every namespace.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
/// Lifetime asked for the projected token (upstream's `WarnOnlyBoundTokenExpirationSeconds`).
pub const TOKEN_EXPIRATION_SECONDS: i64 = 3607;
/// Annotation marking the mirror of a static pod (whose spec is left as it is).
const MIRROR_POD_ANNOTATION: &str = "kubernetes.io/config.mirror";
/// Lookups of a missing `default` account before giving up (the namespace controller
/// creates it moments after the namespace), and the wait between them (upstream: 10
/// attempts, 100–200 ms apart).
const DEFAULT_ACCOUNT_ATTEMPTS: usize = 10;
const DEFAULT_ACCOUNT_RETRY: Duration = Duration::from_millis(150);

/// Admits a pod being created in `ns` (upstream `Plugin.Admit`): defaults its account,
/// refuses it when the account does not exist, and mounts the token volume.
pub async fn admit(cx: &Context<'_>, ns: &str, pod: &mut Value) -> Result<(), ApiError> {
    if pod["metadata"]["annotations"][MIRROR_POD_ANNOTATION].is_string() {
        return Ok(());
    }
    let account = account_name(pod);
    set_account_name(pod, &account);
    let def = resources::by_plural("", "v1", "serviceaccounts").expect("served");
    let attempts = if account == DEFAULT_SERVICE_ACCOUNT {
        DEFAULT_ACCOUNT_ATTEMPTS
    } else {
        1
    };
    let mut found = None;
    for attempt in 0..attempts {
        if attempt > 0 {
            tokio::time::sleep(DEFAULT_ACCOUNT_RETRY).await;
        }
        found = cx.stored(def, Some(ns), &account);
        if found.is_some() {
            break;
        }
    }
    let Some(sa) = found else {
        return Err(account_not_found(cx.def, pod, ns, &account));
    };
    if should_automount(&sa, pod) {
        let suffix = crate::api::object::random_suffix(5);
        mount_token(pod, &format!("{TOKEN_VOLUME_PREFIX}{suffix}"));
    }
    take_image_pull_secrets(&sa, pod);
    Ok(())
}

/// The account the pod names (`spec.serviceAccountName`, else the deprecated
/// `spec.serviceAccount`), `default` when none.
fn account_name(pod: &Value) -> String {
    ["serviceAccountName", "serviceAccount"]
        .iter()
        .filter_map(|f| pod["spec"][*f].as_str())
        .find(|s| !s.is_empty())
        .unwrap_or(DEFAULT_SERVICE_ACCOUNT)
        .to_string()
}

/// Sets both account fields (the deprecated one mirrors the other on the wire).
fn set_account_name(pod: &mut Value, account: &str) {
    if let Some(spec) = pod.get_mut("spec").and_then(Value::as_object_mut) {
        spec.insert("serviceAccountName".into(), json!(account));
        spec.insert("serviceAccount".into(), json!(account));
    }
}

/// Upstream's 403: `pods "p" is forbidden: error looking up service account NS/SA:
/// serviceaccount "SA" not found` (named by generateName when the name is generated).
fn account_not_found(pods: &ResourceDef, pod: &Value, ns: &str, account: &str) -> ApiError {
    let meta = &pod["metadata"];
    let name = match meta["generateName"].as_str() {
        Some(prefix) if !prefix.is_empty() => prefix,
        _ => meta["name"].as_str().unwrap_or(""),
    };
    ApiError {
        details: Some(json!({"name": name, "group": pods.group, "kind": pods.plural})),
        ..ApiError::forbidden(format!(
            "{} \"{name}\" is forbidden: error looking up service account {ns}/{account}: \
             serviceaccount \"{account}\" not found",
            crate::api::status::resource_name(pods),
        ))
    }
}

/// Whether the token volume is mounted: the pod's `automountServiceAccountToken` wins,
/// then the account's, else yes.
pub fn should_automount(sa: &Value, pod: &Value) -> bool {
    pod["spec"]["automountServiceAccountToken"]
        .as_bool()
        .or_else(|| sa["automountServiceAccountToken"].as_bool())
        .unwrap_or(true)
}

/// Adds the token volume (named `volume` unless the pod already has a
/// `kube-api-access-*` one) and a read-only mount of it at [`TOKEN_MOUNT_PATH`] to every
/// init and app container that mounts nothing there (upstream `mountServiceAccountToken`).
pub fn mount_token(pod: &mut Value, volume: &str) {
    let existing = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v["name"].as_str())
        .find(|n| n.starts_with(TOKEN_VOLUME_PREFIX))
        .map(str::to_string);
    let name = existing.clone().unwrap_or_else(|| volume.to_string());
    let mount = json!({"name": name, "readOnly": true, "mountPath": TOKEN_MOUNT_PATH});
    let mut needed = false;
    for field in ["initContainers", "containers"] {
        // `get_mut`, not indexing: a pod without init containers keeps having none.
        let Some(containers) = pod
            .get_mut("spec")
            .and_then(|s| s.get_mut(field))
            .and_then(Value::as_array_mut)
        else {
            continue;
        };
        for c in containers {
            let mounted = c["volumeMounts"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|m| m["mountPath"] == TOKEN_MOUNT_PATH);
            if mounted {
                continue;
            }
            match c["volumeMounts"].as_array_mut() {
                Some(mounts) => mounts.push(mount.clone()),
                // Not `json!([…])`: it would copy the value through its serializer.
                None => c["volumeMounts"] = Value::Array(vec![mount.clone()]),
            }
            needed = true;
        }
    }
    if existing.is_none() && needed {
        let spec = &mut pod["spec"];
        match spec["volumes"].as_array_mut() {
            Some(volumes) => volumes.push(token_volume(&name)),
            None => spec["volumes"] = Value::Array(vec![token_volume(&name)]),
        }
    }
}

/// Upstream's `TokenVolumeSource`: the bound token, the cluster CA and the namespace.
pub fn token_volume(name: &str) -> Value {
    json!({"name": name, "projected": {"defaultMode": 420, "sources": [
        {"serviceAccountToken": {"expirationSeconds": TOKEN_EXPIRATION_SECONDS, "path": "token"}},
        {"configMap": {"name": ROOT_CA_CONFIG_MAP, "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
        {"downwardAPI": {"items": [{"path": "namespace",
            "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
    ]}})
}

/// A pod without image pull secrets takes its account's.
fn take_image_pull_secrets(sa: &Value, pod: &mut Value) {
    let has_own = pod["spec"]["imagePullSecrets"]
        .as_array()
        .is_some_and(|s| !s.is_empty());
    let Some(secrets) = sa["imagePullSecrets"].as_array().filter(|s| !s.is_empty()) else {
        return;
    };
    if !has_own {
        let refs: Vec<Value> = secrets
            .iter()
            .map(|s| json!({"name": s["name"].as_str().unwrap_or("")}))
            .collect();
        pod["spec"]["imagePullSecrets"] = json!(refs);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pod(spec: Value) -> Value {
        json!({"metadata": {"name": "p", "namespace": "ns"}, "spec": spec})
    }

    #[test]
    fn every_container_mounts_the_token_volume_read_only() {
        let mut p = pod(json!({
            "initContainers": [{"name": "i"}],
            "containers": [{"name": "a", "volumeMounts": [{"name": "data", "mountPath": "/data"}]}, {"name": "b"}],
            "volumes": [{"name": "data", "emptyDir": {}}],
        }));
        mount_token(&mut p, "kube-api-access-x7k2q");
        let mount = json!({"name": "kube-api-access-x7k2q", "readOnly": true,
                           "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"});
        assert_eq!(
            p["spec"]["initContainers"][0]["volumeMounts"],
            json!([mount])
        );
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"][1], mount);
        assert_eq!(p["spec"]["containers"][1]["volumeMounts"], json!([mount]));
        let volumes = p["spec"]["volumes"].as_array().unwrap();
        assert_eq!(volumes.len(), 2);
        assert_eq!(
            volumes[1],
            json!({"name": "kube-api-access-x7k2q", "projected": {"defaultMode": 420, "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                    "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ]}})
        );
    }

    #[test]
    fn a_container_with_its_own_mount_at_the_path_keeps_it() {
        let own = json!({"name": "mine", "mountPath": TOKEN_MOUNT_PATH});
        let mut p = pod(json!({"containers": [{"name": "a", "volumeMounts": [own.clone()]}]}));
        mount_token(&mut p, "kube-api-access-abcde");
        assert_eq!(p["spec"]["containers"][0]["volumeMounts"], json!([own]));
        assert!(
            p["spec"]["volumes"].is_null(),
            "no container needs the volume"
        );
        assert!(p["spec"].get("initContainers").is_none());

        let mut mixed = pod(json!({"containers": [
            {"name": "a", "volumeMounts": [own.clone()]}, {"name": "b"}]}));
        mount_token(&mut mixed, "kube-api-access-abcde");
        assert_eq!(mixed["spec"]["containers"][0]["volumeMounts"], json!([own]));
        assert_eq!(
            mixed["spec"]["containers"][1]["volumeMounts"][0]["name"],
            "kube-api-access-abcde"
        );
        assert_eq!(mixed["spec"]["volumes"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn an_existing_token_volume_is_reused_not_added_twice() {
        let mut p = pod(json!({"containers": [{"name": "a"}],
                               "volumes": [token_volume("kube-api-access-old12")]}));
        mount_token(&mut p, "kube-api-access-new34");
        assert_eq!(p["spec"]["volumes"].as_array().unwrap().len(), 1);
        assert_eq!(
            p["spec"]["containers"][0]["volumeMounts"][0]["name"],
            "kube-api-access-old12"
        );
    }

    #[test]
    fn the_pods_automount_choice_wins_over_the_accounts() {
        let opt_out = json!({"automountServiceAccountToken": false});
        let opt_in = json!({"automountServiceAccountToken": true});
        let silent = json!({});
        assert!(should_automount(&silent, &pod(json!({}))));
        assert!(!should_automount(&opt_out, &pod(json!({}))));
        assert!(should_automount(&opt_out, &pod(opt_in.clone())));
        assert!(!should_automount(&opt_in, &pod(opt_out.clone())));
        assert!(!should_automount(&silent, &pod(opt_out)));
    }

    #[test]
    fn the_account_is_defaulted_into_both_fields() {
        let mut p = pod(json!({"serviceAccount": "builder"}));
        let account = account_name(&p);
        set_account_name(&mut p, &account);
        assert_eq!(p["spec"]["serviceAccountName"], "builder");
        assert_eq!(p["spec"]["serviceAccount"], "builder");
        assert_eq!(account_name(&pod(json!({}))), "default");
    }

    #[test]
    fn pods_without_pull_secrets_take_the_accounts() {
        let sa = json!({"imagePullSecrets": [{"name": "reg"}]});
        let mut p = pod(json!({}));
        take_image_pull_secrets(&sa, &mut p);
        assert_eq!(p["spec"]["imagePullSecrets"], json!([{"name": "reg"}]));
        let mut own = pod(json!({"imagePullSecrets": [{"name": "mine"}]}));
        take_image_pull_secrets(&sa, &mut own);
        assert_eq!(own["spec"]["imagePullSecrets"], json!([{"name": "mine"}]));
    }

    #[test]
    fn a_missing_account_is_refused_with_upstreams_words() {
        let pods = resources::by_plural("", "v1", "pods").unwrap();
        let e = account_not_found(pods, &pod(json!({})), "ns", "robot");
        assert_eq!(e.code, 403);
        assert_eq!(
            e.message,
            "pods \"p\" is forbidden: error looking up service account ns/robot: serviceaccount \"robot\" not found"
        );
    }

    mod through_the_registry {
        use std::time::Duration;

        use serde_json::{json, Value};

        use crate::api::resources;
        use crate::apiserver::registry::{Registry, WriteOptions};
        use crate::controllers::testutil;

        async fn create_pod(registry: &Registry, ns: &str, spec: Value) -> Result<Value, u16> {
            let pods = resources::by_plural("", "v1", "pods").unwrap();
            let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"},
                              "spec": spec});
            registry
                .create(pods, Some(ns), body, &WriteOptions::default())
                .await
                .map(|w| (*w.kv.value).clone())
                .map_err(|e| e.code)
        }

        async fn add_namespace(registry: &Registry, ns: &str) {
            let namespaces = resources::by_plural("", "v1", "namespaces").unwrap();
            let body = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}});
            registry
                .create(namespaces, None, body, &WriteOptions::default())
                .await
                .unwrap();
        }

        fn containers() -> Value {
            json!([{"name": "c", "image": "busybox"}])
        }

        #[tokio::test(start_paused = true)]
        async fn a_pod_in_a_namespace_without_its_account_is_refused_after_a_short_wait() {
            let registry = testutil::registry().await;
            add_namespace(&registry, "empty").await;
            let started = tokio::time::Instant::now();
            let code = create_pod(&registry, "empty", json!({"containers": containers()}))
                .await
                .unwrap_err();
            assert_eq!(code, 403);
            assert!(
                started.elapsed() >= Duration::from_secs(1),
                "waited for the account"
            );
            let named = json!({"containers": containers(), "serviceAccountName": "robot"});
            let started = tokio::time::Instant::now();
            assert_eq!(
                create_pod(&registry, "default", named).await.unwrap_err(),
                403
            );
            assert!(
                started.elapsed() < Duration::from_millis(10),
                "no wait for others"
            );
        }

        #[tokio::test(start_paused = true)]
        async fn a_default_account_created_meanwhile_admits_the_pod() {
            let registry = testutil::registry().await;
            add_namespace(&registry, "fresh").await;
            let late = registry.clone();
            tokio::spawn(async move {
                tokio::time::sleep(Duration::from_millis(400)).await;
                testutil::add_default_service_account(&late, "fresh").await;
            });
            let pod = create_pod(&registry, "fresh", json!({"containers": containers()}))
                .await
                .expect("admitted once the account exists");
            assert_eq!(pod["spec"]["serviceAccountName"], "default");
            let volume = pod["spec"]["volumes"][0]["name"].as_str().unwrap();
            assert!(volume.starts_with("kube-api-access-") && volume.len() == 21);
        }

        #[tokio::test(start_paused = true)]
        async fn opting_out_in_the_pod_or_its_account_mounts_nothing() {
            let registry = testutil::registry().await;
            let spec = json!({"containers": containers(), "automountServiceAccountToken": false});
            let pod = create_pod(&registry, "default", spec).await.unwrap();
            assert!(pod["spec"].get("volumes").is_none());
            assert!(pod["spec"]["containers"][0].get("volumeMounts").is_none());

            let accounts = resources::by_plural("", "v1", "serviceaccounts").unwrap();
            let quiet = json!({"apiVersion": "v1", "kind": "ServiceAccount",
                               "metadata": {"name": "quiet"}, "automountServiceAccountToken": false});
            registry
                .create(accounts, Some("default"), quiet, &WriteOptions::default())
                .await
                .unwrap();
            add_namespace(&registry, "other").await;
            testutil::add_default_service_account(&registry, "other").await;
            let spec = json!({"containers": containers(), "serviceAccountName": "quiet"});
            let pod = create_pod(&registry, "other", spec).await;
            assert_eq!(pod.unwrap_err(), 403, "accounts are per namespace");
            let spec = json!({"containers": containers(), "serviceAccount": "quiet"});
            let pod = create_pod(&registry, "default", spec).await.unwrap_err();
            assert_eq!(pod, 409, "the name p is taken: admitted up to the write");
            let pods = resources::by_plural("", "v1", "pods").unwrap();
            let body = json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "q"},
                              "spec": {"containers": containers(), "serviceAccount": "quiet"}});
            let pod = registry
                .create(pods, Some("default"), body, &WriteOptions::default())
                .await
                .unwrap()
                .kv
                .value;
            assert_eq!(pod["spec"]["serviceAccount"], "quiet");
            assert!(pod["spec"].get("volumes").is_none());
        }
    }
}
