//! Root CA publisher (upstream's `root-ca-cert-publisher`): keeps the ConfigMap
//! `kube-root-ca.crt` holding the cluster CA in every active namespace, so the
//! `kube-api-access-*` volume of every pod can show it; recreated when deleted, restored
//! when edited.

use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::store::EventType;

use super::framework::{run_workers, wait_for_sync, Client, Informer, Reconciled, WorkQueue};

/// The ConfigMap's name and key.
pub const ROOT_CA_CONFIG_MAP: &str = "kube-root-ca.crt";
pub const ROOT_CA_KEY: &str = "ca.crt";
/// The annotation upstream puts on it.
pub const DESCRIPTION_ANNOTATION: &str = "kubernetes.io/description";
pub const DESCRIPTION: &str = "Contains a CA bundle that can be used to verify the \
kube-apiserver when using internal endpoints such as the internal service IP or \
kubernetes.default.svc. No other usage is guaranteed across distributions of Kubernetes \
clusters.";
/// Namespaces reconciled at once.
const WORKERS: usize = 1;

fn namespaces() -> &'static ResourceDef {
    resources::by_plural("", "v1", "namespaces").expect("served")
}

fn config_maps() -> &'static ResourceDef {
    resources::by_plural("", "v1", "configmaps").expect("served")
}

/// Runs the publisher for the CA bundle `ca_pem` until aborted.
pub async fn run(client: Arc<dyn Client>, ca_pem: String) {
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            namespaces(),
            queue.clone(),
            Box::new(|event| match event.kind {
                EventType::Deleted => vec![],
                _ => vec![object::name(&event.kv.value).to_string()],
            }),
        ),
        Informer::start(
            client.clone(),
            config_maps(),
            queue.clone(),
            // A change to (or the loss of) the ConfigMap re-checks its namespace.
            Box::new(|event| {
                let cm = &event.kv.value;
                match object::namespace(cm) {
                    Some(ns) if object::name(cm) == ROOT_CA_CONFIG_MAP => vec![ns.to_string()],
                    _ => vec![],
                }
            }),
        ),
    ];
    wait_for_sync(&informers).await;
    let ca_pem = Arc::new(ca_pem);
    run_workers("root-ca-cert-publisher", queue, WORKERS, move |ns| {
        let client = client.clone();
        let ca_pem = ca_pem.clone();
        async move { reconcile(&*client, &ns, &ca_pem).await }
    })
    .await;
}

/// The ConfigMap as it should be (upstream keeps only its data and this annotation).
pub fn desired(ns: &str, ca_pem: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": ROOT_CA_CONFIG_MAP, "namespace": ns,
                        "annotations": {DESCRIPTION_ANNOTATION: DESCRIPTION}},
           "data": {ROOT_CA_KEY: ca_pem}})
}

/// Whether the stored ConfigMap already holds exactly the bundle and the annotation.
fn up_to_date(cm: &Value, ca_pem: &str) -> bool {
    let data_ok = cm["data"].as_object().is_some_and(|d| {
        d.len() == 1 && d.get(ROOT_CA_KEY).and_then(Value::as_str) == Some(ca_pem)
    }) && cm
        .get("binaryData")
        .is_none_or(|b| b.as_object().is_none_or(|b| b.is_empty()));
    data_ok && cm["metadata"]["annotations"][DESCRIPTION_ANNOTATION] == DESCRIPTION
}

/// Creates or restores the ConfigMap of an active namespace; writes only on change.
async fn reconcile(client: &dyn Client, ns: &str, ca_pem: &str) -> Reconciled {
    let Ok(namespace) = client.get(namespaces(), None, ns) else {
        return Ok(None);
    };
    if object::is_deleting(&namespace.value) {
        return Ok(None);
    }
    match client.get(config_maps(), Some(ns), ROOT_CA_CONFIG_MAP) {
        Err(e) if e.code == 404 => {
            match client
                .create(config_maps(), Some(ns), desired(ns, ca_pem))
                .await
            {
                // Raced with another write, or the namespace began terminating.
                Err(e) if matches!(e.code, 403 | 404 | 409) => Ok(None),
                other => other.map(|_| None),
            }
        }
        Err(e) => Err(e),
        Ok(kv) if up_to_date(&kv.value, ca_pem) => Ok(None),
        Ok(_) => restore(client, ns, ca_pem).await.map(|_| None),
    }
}

/// Puts the bundle and the annotation back, keeping the rest of the metadata.
async fn restore(client: &dyn Client, ns: &str, ca_pem: &str) -> Result<(), ApiError> {
    let want = desired(ns, ca_pem);
    let result = client
        .modify(config_maps(), Some(ns), ROOT_CA_CONFIG_MAP, None, &|cur| {
            let mut cur = cur.clone();
            cur["data"] = want["data"].clone();
            if let Some(fields) = cur.as_object_mut() {
                fields.remove("binaryData");
            }
            match cur["metadata"]["annotations"].as_object_mut() {
                Some(a) => {
                    a.insert(DESCRIPTION_ANNOTATION.into(), json!(DESCRIPTION));
                }
                None => cur["metadata"]["annotations"] = want["metadata"]["annotations"].clone(),
            }
            Ok(cur)
        })
        .await;
    match result {
        Err(e) if e.code == 404 => Ok(()),
        other => other.map(drop),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::apiserver::registry::{DeleteOptions, Registry, WriteOptions};
    use crate::controllers::testutil::{self, wait_for};

    const PEM: &str = "-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n";

    fn stored(registry: &Registry, ns: &str) -> Option<Value> {
        registry
            .get(config_maps(), Some(ns), ROOT_CA_CONFIG_MAP)
            .ok()
            .map(|kv| (*kv.value).clone())
    }

    #[tokio::test(start_paused = true)]
    async fn every_namespace_gets_the_bundle_back_after_a_delete_or_an_edit() {
        let registry = testutil::registry().await;
        let client: Arc<dyn Client> = registry.clone();
        let task = tokio::spawn(run(client, PEM.to_string()));
        let within = Duration::from_secs(10);
        wait_for("the ConfigMap in default", within, || {
            stored(&registry, "default").is_some_and(|cm| up_to_date(&cm, PEM))
        })
        .await;
        let cm = stored(&registry, "kube-node-lease").expect("in every namespace");
        assert_eq!(cm["data"]["ca.crt"], PEM);
        assert_eq!(
            cm["metadata"]["annotations"]["kubernetes.io/description"],
            DESCRIPTION
        );

        let namespace =
            json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "web"}});
        registry
            .create(namespaces(), None, namespace, &WriteOptions::default())
            .await
            .unwrap();
        wait_for("the ConfigMap in a new namespace", within, || {
            stored(&registry, "web").is_some()
        })
        .await;

        registry
            .delete(
                config_maps(),
                Some("web"),
                ROOT_CA_CONFIG_MAP,
                &DeleteOptions::default(),
            )
            .await
            .unwrap();
        wait_for("the deleted ConfigMap recreated", within, || {
            stored(&registry, "web").is_some()
        })
        .await;

        let mut edited = stored(&registry, "web").unwrap();
        edited["data"] = json!({"ca.crt": "forged", "extra": "x"});
        edited["metadata"]["labels"] = json!({"kept": "yes"});
        registry
            .update(
                config_maps(),
                Some("web"),
                ROOT_CA_CONFIG_MAP,
                edited,
                None,
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        wait_for("the edited ConfigMap restored", within, || {
            stored(&registry, "web").is_some_and(|cm| up_to_date(&cm, PEM))
        })
        .await;
        assert_eq!(
            stored(&registry, "web").unwrap()["metadata"]["labels"]["kept"],
            "yes"
        );

        let before = registry.revision();
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            registry.revision(),
            before,
            "nothing rewritten once in place"
        );
        task.abort();
    }

    #[test]
    fn only_the_exact_bundle_and_annotation_are_up_to_date() {
        let good = desired("ns", PEM);
        assert!(up_to_date(&good, PEM));
        let mut extra = good.clone();
        extra["data"]["more"] = json!("x");
        assert!(!up_to_date(&extra, PEM));
        let mut bare = good.clone();
        bare["metadata"]["annotations"] = json!({});
        assert!(!up_to_date(&bare, PEM));
        assert!(!up_to_date(&good, "other"));
    }
}
