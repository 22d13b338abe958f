//! The built-in ingress, server side: creates the `orc` IngressClass at start when it is
//! missing (not as default when the user already has a default class), and keeps
//! `status.loadBalancer.ingress` of every Ingress the built-in controller serves at the
//! InternalIPs of the Ready nodes that run the ingress proxy (labelled
//! `ingress.orc.io/enabled=true` by their agent), so nodes need no write access to
//! Ingresses. Ingresses of other classes are left alone (their controller writes their
//! status).

use std::sync::Arc;

use serde_json::{json, Value};

use crate::api::ingress::{
    default_class, is_ours, CLASS_NAME, DEFAULT_CLASS_ANNOTATION, NODE_LABEL,
};
use crate::api::resources::{by_plural, ResourceDef};

use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reader, Reconciled,
    WorkQueue,
};

/// How long to wait before trying again to create the class after a failure.
const WORKERS: usize = 1;
/// The work-queue key that stands for "every Ingress" (a node or class changed).
const ALL: &str = "*";

fn ingresses() -> &'static ResourceDef {
    by_plural("networking.k8s.io", "v1", "ingresses").expect("served")
}

fn classes() -> &'static ResourceDef {
    by_plural("networking.k8s.io", "v1", "ingressclasses").expect("served")
}

fn nodes() -> &'static ResourceDef {
    by_plural("", "v1", "nodes").expect("served")
}

/// The `orc` class as it is created: the embedded one, without the default-class
/// annotation when `existing` classes already hold a default.
pub fn class_to_create(existing: &[Value]) -> Value {
    let mut class: Value = serde_yaml::from_str(crate::embedded::INGRESS_CLASS)
        .expect("the embedded IngressClass parses");
    if default_class(existing).is_some() {
        if let Some(a) = class["metadata"]["annotations"].as_object_mut() {
            a.remove(DEFAULT_CLASS_ANNOTATION);
        }
    }
    class
}

/// Whether `node` runs the ingress proxy and is Ready.
fn serves_ingress(node: &Value) -> bool {
    let labelled = node["metadata"]["labels"][NODE_LABEL] == "true";
    let ready = node["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True");
    labelled && ready && node["metadata"]["deletionTimestamp"].is_null()
}

/// `status.loadBalancer.ingress` for the Ingresses the built-in controller serves: the
/// InternalIP of every node that runs the proxy, sorted, each once.
pub fn load_balancer_ingress<'a>(nodes: impl IntoIterator<Item = &'a Value>) -> Vec<Value> {
    let mut ips: Vec<String> = nodes
        .into_iter()
        .filter(|n| serves_ingress(n))
        .filter_map(|n| {
            n["status"]["addresses"]
                .as_array()?
                .iter()
                .find(|a| a["type"] == "InternalIP")
                .and_then(|a| a["address"].as_str())
                .map(str::to_string)
        })
        .collect();
    ips.sort();
    ips.dedup();
    ips.into_iter().map(|ip| json!({"ip": ip})).collect()
}

struct Ctx {
    client: Arc<dyn Client>,
    queue: Arc<WorkQueue>,
    ingresses: Reader,
    classes: Reader,
    nodes: Reader,
}

/// Runs the class creation (unless `create_class` is false, `--disable-ingress` on the
/// server) and the status controller until aborted.
pub async fn run(client: Arc<dyn Client>, create_class: bool) {
    if create_class {
        super::framework::ensure_builtin(
            &*client,
            classes(),
            CLASS_NAME,
            "built-in IngressClass",
            class_to_create,
        )
        .await;
    }
    let queue = WorkQueue::new();
    let informers = [
        Informer::start(
            client.clone(),
            ingresses(),
            queue.clone(),
            Box::new(|e| vec![object_key(&e.kv.value)]),
        ),
        Informer::start(
            client.clone(),
            classes(),
            queue.clone(),
            Box::new(|_| vec![ALL.to_string()]),
        ),
        Informer::start(
            client.clone(),
            nodes(),
            queue.clone(),
            Box::new(|_| vec![ALL.to_string()]),
        ),
    ];
    wait_for_sync(&informers).await;
    let ctx = Arc::new(Ctx {
        client,
        queue: queue.clone(),
        ingresses: informers[0].reader(),
        classes: informers[1].reader(),
        nodes: informers[2].reader(),
    });
    run_workers("ingress-status", queue, WORKERS, move |key| {
        let ctx = ctx.clone();
        async move { sync_status(&ctx, &key).await }
    })
    .await;
}

async fn sync_status(ctx: &Ctx, key: &str) -> Reconciled {
    if key == ALL {
        for kv in ctx.ingresses.list() {
            ctx.queue.add(object_key(&kv.value));
        }
        return Ok(None);
    }
    let Some(ingress) = ctx.ingresses.get(key).map(|kv| (*kv.value).clone()) else {
        return Ok(None);
    };
    let classes: Vec<Value> = ctx
        .classes
        .list()
        .iter()
        .map(|kv| (*kv.value).clone())
        .collect();
    if !is_ours(&ingress, &classes) {
        return Ok(None);
    }
    let nodes: Vec<Value> = ctx
        .nodes
        .list()
        .iter()
        .map(|kv| (*kv.value).clone())
        .collect();
    let want = Value::Array(load_balancer_ingress(&nodes));
    let have = &ingress["status"]["loadBalancer"]["ingress"];
    if *have == want || (have.is_null() && want == json!([])) {
        return Ok(None);
    }
    let (ns, name) = split_key(key);
    let set = |obj: &Value| {
        let mut obj = obj.clone();
        obj["status"]["loadBalancer"] = if want == json!([]) {
            json!({})
        } else {
            json!({"ingress": want})
        };
        Ok(obj)
    };
    match ctx
        .client
        .modify(ingresses(), ns, name, Some("status"), &set)
        .await
    {
        Ok(_) => {
            tracing::info!(ingress = %key, addresses = %want, "ingress status updated");
            Ok(None)
        }
        Err(e) if e.code == 404 => Ok(None),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::ingress::{is_default_class, CONTROLLER};

    #[test]
    fn the_class_is_default_unless_the_user_has_a_default_already() {
        let ours = class_to_create(&[]);
        assert_eq!(ours["metadata"]["name"], CLASS_NAME);
        assert_eq!(ours["spec"]["controller"], CONTROLLER);
        assert!(is_default_class(&ours));
        let users = json!({"metadata": {"name": "nginx",
            "annotations": {DEFAULT_CLASS_ANNOTATION: "true"}}});
        assert!(!is_default_class(&class_to_create(&[users])));
    }

    #[test]
    fn the_addresses_are_the_ready_ingress_nodes_internal_ips() {
        let node = |name: &str, ip: &str, labelled: bool, ready: &str| {
            json!({"metadata": {"name": name,
                    "labels": if labelled { json!({NODE_LABEL: "true"}) } else { json!({}) }},
                "status": {"addresses": [{"type": "Hostname", "address": name}, {"type": "InternalIP", "address": ip}],
                    "conditions": [{"type": "Ready", "status": ready}]}})
        };
        let nodes = [
            node("b", "10.0.0.2", true, "True"),
            node("a", "10.0.0.1", true, "True"),
            node("c", "10.0.0.3", false, "True"),
            node("d", "10.0.0.4", true, "Unknown"),
        ];
        assert_eq!(
            load_balancer_ingress(&nodes),
            [json!({"ip": "10.0.0.1"}), json!({"ip": "10.0.0.2"})]
        );
        assert!(load_balancer_ingress(&nodes[2..]).is_empty());
    }
}
