//! Node IPAM: gives every node without one a `spec.podCIDR`, the first /24 of the cluster
//! CIDR no other node holds. The choice is persisted in the Node itself, so a restart
//! rebuilds the allocation from the stored nodes.

use std::collections::HashSet;
use std::sync::Arc;

use ipnet::Ipv4Net;
use k8s_openapi::api::core::v1::Node;
use serde_json::{json, Value};

use super::framework::{
    object_key, run_workers, wait_for_sync, Client, ClientExt, Informer, WorkQueue,
};
use crate::api::resources::{self, ResourceDef};
use crate::api::status::ApiError;
use crate::store::EventType;

/// Prefix length of each node's pod network.
pub const NODE_CIDR_PREFIX: u8 = 24;

fn nodes() -> &'static ResourceDef {
    resources::by_plural("", "v1", "nodes").expect("served")
}

/// The pod CIDR of a node, if it has one.
fn pod_cidr(node: &Value) -> Option<&str> {
    node["spec"]["podCIDR"].as_str().filter(|c| !c.is_empty())
}

/// The pod CIDR of a typed node, if it has one.
fn node_pod_cidr(node: &Node) -> Option<&str> {
    node.spec
        .as_ref()?
        .pod_cidr
        .as_deref()
        .filter(|c| !c.is_empty())
}

/// The first /24 of `cluster` that is not in `taken` (`None` when all are taken).
pub fn first_free_cidr(cluster: Ipv4Net, taken: &HashSet<Ipv4Net>) -> Option<Ipv4Net> {
    cluster
        .subnets(NODE_CIDR_PREFIX.max(cluster.prefix_len()))
        .ok()?
        .find(|subnet| {
            !taken
                .iter()
                .any(|t| t.contains(subnet) || subnet.contains(t))
        })
}

pub async fn run(client: Arc<dyn Client>, cluster_cidr: Ipv4Net) {
    let queue = WorkQueue::new();
    let informers = [Informer::start(
        client.clone(),
        nodes(),
        queue.clone(),
        Box::new(|event| {
            let needs_cidr =
                event.kind != EventType::Deleted && pod_cidr(&event.kv.value).is_none();
            if needs_cidr {
                vec![object_key(&event.kv.value)]
            } else {
                vec![]
            }
        }),
    )];
    wait_for_sync(&informers).await;
    run_workers("node-ipam-controller", queue, 1, move |name| {
        let client = client.clone();
        async move {
            assign(&*client, cluster_cidr, &name).await?;
            Ok(None)
        }
    })
    .await;
}

async fn assign(client: &dyn Client, cluster: Ipv4Net, name: &str) -> Result<(), ApiError> {
    let Ok(node) = client.get_typed::<Node>(None, name) else {
        return Ok(());
    };
    if node_pod_cidr(&node).is_some() {
        return Ok(());
    }
    let taken: HashSet<Ipv4Net> = client
        .list_typed::<Node>(None)
        .iter()
        .filter_map(|n| node_pod_cidr(n)?.parse().ok())
        .collect();
    let cidr = first_free_cidr(cluster, &taken)
        .ok_or_else(|| ApiError::internal(format!("no free /{NODE_CIDR_PREFIX} left in the cluster CIDR {cluster}: use a larger --cluster-cidr")))?;
    let written = client
        .modify(nodes(), None, name, None, &|cur| {
            let mut cur = cur.clone();
            if pod_cidr(&cur).is_none() {
                cur["spec"]["podCIDR"] = json!(cidr.to_string());
                cur["spec"]["podCIDRs"] = json!([cidr.to_string()]);
            }
            Ok(cur)
        })
        .await;
    match written {
        Ok(_) => {
            tracing::info!(node = %name, %cidr, "assigned pod CIDR");
            Ok(())
        }
        Err(e) if e.code == 404 => Ok(()),
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::WriteOptions;
    use crate::controllers::testutil::{self, wait_for};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn every_node_gets_its_own_pod_cidr() {
        let registry = testutil::registry().await;
        let cluster: Ipv4Net = "10.42.0.0/16".parse().unwrap();
        let task = tokio::spawn(run(registry.clone(), cluster));
        for name in ["a", "b"] {
            let body = json!({"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}});
            registry
                .create(nodes(), None, body, &WriteOptions::default())
                .await
                .unwrap();
        }
        let cidr_of = |name: &str| {
            let node = registry.get(nodes(), None, name).ok()?;
            pod_cidr(&node.value).map(str::to_string)
        };
        wait_for("both nodes to get a CIDR", Duration::from_secs(5), || {
            cidr_of("a").is_some() && cidr_of("b").is_some()
        })
        .await;
        task.abort();
        let mut cidrs = [cidr_of("a").unwrap(), cidr_of("b").unwrap()];
        cidrs.sort();
        assert_eq!(cidrs, ["10.42.0.0/24", "10.42.1.0/24"]);
    }

    #[test]
    fn first_free_cidr_skips_taken_subnets() {
        let cluster: Ipv4Net = "10.42.0.0/16".parse().unwrap();
        let mut taken = HashSet::new();
        assert_eq!(
            first_free_cidr(cluster, &taken),
            Some("10.42.0.0/24".parse().unwrap())
        );
        taken.insert("10.42.0.0/24".parse().unwrap());
        taken.insert("10.42.2.0/24".parse().unwrap());
        assert_eq!(
            first_free_cidr(cluster, &taken),
            Some("10.42.1.0/24".parse().unwrap())
        );
        taken.insert("10.42.1.0/24".parse().unwrap());
        assert_eq!(
            first_free_cidr(cluster, &taken),
            Some("10.42.3.0/24".parse().unwrap())
        );
    }

    #[test]
    fn a_full_range_has_no_free_cidr() {
        let cluster: Ipv4Net = "10.42.0.0/23".parse().unwrap();
        let taken: HashSet<Ipv4Net> = ["10.42.0.0/24", "10.42.1.0/24"]
            .iter()
            .map(|c| c.parse().unwrap())
            .collect();
        assert_eq!(first_free_cidr(cluster, &taken), None);
    }
}
