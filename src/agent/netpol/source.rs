//! What policy enforcement reads from the API server: every pod, namespace and
//! NetworkPolicy of the cluster (the agent's list-watch), as [`Change`]s; and the start
//! of enforcement on a node (the bridge sysctl, the stand-in for the node-local cluster
//! DNS, the first full sync once all three lists are in).

use std::net::Ipv4Addr;
use std::sync::Arc;

use serde_json::{json, Value};
use tokio::sync::mpsc;
use tracing::Instrument;

use super::model::{NamedPort, PodInfo};
use super::{Change, Enforcer, Nft};
use crate::agent::client::{Event, ListWatchApi, Query, Reflector};
use crate::agent::proxy::rules::Protocol;

/// Changes buffered between the watches and the enforcer.
const CHANGE_BUFFER: usize = 1024;
/// The namespace and labels the cluster DNS stands in with: those of CoreDNS in k3s
/// and kubeadm clusters, so the policies users copy from upstream docs allow it.
pub const DNS_NAMESPACE: &str = "kube-system";
pub const DNS_POD_NAME: &str = "orc-cluster-dns";
pub const DNS_LABEL: (&str, &str) = ("k8s-app", "kube-dns");
/// With br_netfilter, bridged IPv4 traffic (pod to pod on one node) passes the `ip`
/// family's hooks only while this is 1 (per network namespace).
const BRIDGE_NF_CALL_IPTABLES: &str = "/proc/sys/net/bridge/bridge-nf-call-iptables";

/// A kind the enforcer follows, and the changes it makes.
trait Followed {
    fn upserted(object: Value) -> Change;
    fn deleted(object: &Value) -> Change;
}

struct Pods;
struct Namespaces;
struct Policies;

fn meta_str<'a>(object: &'a Value, key: &str) -> &'a str {
    object["metadata"][key].as_str().unwrap_or("")
}

impl Followed for Pods {
    fn upserted(object: Value) -> Change {
        Change::Pod(Box::new(object))
    }
    fn deleted(object: &Value) -> Change {
        Change::PodDeleted {
            namespace: meta_str(object, "namespace").to_string(),
            name: meta_str(object, "name").to_string(),
        }
    }
}

impl Followed for Namespaces {
    fn upserted(object: Value) -> Change {
        Change::Namespace {
            name: meta_str(&object, "name").to_string(),
            labels: object["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default(),
        }
    }
    fn deleted(object: &Value) -> Change {
        Change::NamespaceDeleted {
            name: meta_str(object, "name").to_string(),
        }
    }
}

impl Followed for Policies {
    fn upserted(object: Value) -> Change {
        Change::Policy(Box::new(object))
    }
    fn deleted(object: &Value) -> Change {
        Change::PolicyDeleted {
            namespace: meta_str(object, "namespace").to_string(),
            name: meta_str(object, "name").to_string(),
        }
    }
}

/// The objects of the first list of `reflector`.
async fn first_list(reflector: &mut Reflector<Value>) -> Vec<Value> {
    loop {
        if let Event::Restarted(objects) | Event::LastKnown(objects) = reflector.next().await {
            return objects;
        }
    }
}

/// Sends every change `reflector` sees; returns when the receiver is gone.
async fn follow<F: Followed>(mut reflector: Reflector<Value>, out: mpsc::Sender<Change>) {
    loop {
        let changes: Vec<Change> = match reflector.next().await {
            Event::Restarted(objects) | Event::LastKnown(objects) => {
                objects.into_iter().map(F::upserted).collect()
            }
            Event::Applied(object) => vec![F::upserted(object)],
            Event::Deleted(object) => vec![F::deleted(&object)],
        };
        for change in changes {
            if out.send(change).await.is_err() {
                return;
            }
        }
    }
}

/// Lists pods, namespaces and policies (retrying until all three succeed), then keeps
/// watching them: the first lists as upserts, and the channel of later changes.
pub async fn watch_cluster(api: Arc<dyn ListWatchApi>) -> (Vec<Change>, mpsc::Receiver<Change>) {
    let span = tracing::info_span!("netpol_watch");
    let mut pods = Reflector::<Value>::new(api.clone(), Query::all("pods"));
    let mut namespaces = Reflector::<Value>::new(api.clone(), Query::all("namespaces"));
    let mut policies = Reflector::<Value>::new(
        api,
        Query::all_in_group("networking.k8s.io/v1", "networkpolicies"),
    );
    let (pods_now, namespaces_now, policies_now) = async {
        (
            first_list(&mut pods).await,
            first_list(&mut namespaces).await,
            first_list(&mut policies).await,
        )
    }
    .instrument(span.clone())
    .await;
    let initial = (namespaces_now.into_iter().map(Namespaces::upserted))
        .chain(pods_now.into_iter().map(Pods::upserted))
        .chain(policies_now.into_iter().map(Policies::upserted))
        .collect();
    let (tx, changes) = mpsc::channel(CHANGE_BUFFER);
    tokio::spawn(follow::<Pods>(pods, tx.clone()).instrument(span.clone()));
    tokio::spawn(follow::<Namespaces>(namespaces, tx.clone()).instrument(span.clone()));
    tokio::spawn(follow::<Policies>(policies, tx).instrument(span));
    (initial, changes)
}

/// The cluster DNS served on this node at `address`, as the pod policies see: in
/// `kube-system` with CoreDNS's label and named ports `dns` (UDP 53) and `dns-tcp`
/// (TCP 53). It is never isolated itself.
pub fn cluster_dns_stand_in(address: Ipv4Addr) -> PodInfo {
    let labels = json!({ DNS_LABEL.0: DNS_LABEL.1 });
    PodInfo {
        namespace: DNS_NAMESPACE.into(),
        name: DNS_POD_NAME.into(),
        ip: address,
        labels: labels.as_object().cloned().unwrap_or_default(),
        node: None,
        ports: vec![
            NamedPort {
                name: "dns".into(),
                protocol: Protocol::Udp,
                port: 53,
            },
            NamedPort {
                name: "dns-tcp".into(),
                protocol: Protocol::Tcp,
                port: 53,
            },
        ],
    }
}

/// Makes bridged pod-to-pod traffic pass the table's `forward` hook: sets
/// `net.bridge.bridge-nf-call-iptables` to 1 in this network namespace when it is 0
/// (as k3s does). Without br_netfilter, same-node pod-to-pod traffic is not filtered:
/// says so in the log.
pub fn ensure_bridged_traffic_is_filtered() {
    match std::fs::read_to_string(BRIDGE_NF_CALL_IPTABLES) {
        Ok(value) if value.trim() == "1" => {}
        Ok(_) => match std::fs::write(BRIDGE_NF_CALL_IPTABLES, "1") {
            Ok(()) => tracing::info!(
                sysctl = BRIDGE_NF_CALL_IPTABLES,
                "bridged pod traffic now passes nftables for network policies"
            ),
            Err(e) => tracing::warn!(sysctl = BRIDGE_NF_CALL_IPTABLES, error = %e,
                "cannot enable filtering of bridged traffic: network policies do not apply between pods of this node"),
        },
        Err(_) => tracing::warn!(
            "br_netfilter is not loaded (modprobe br_netfilter): network policies do not apply between pods of this node"
        ),
    }
}

/// Runs enforcement on `enforcer` from the cluster's objects, forever. The first sync
/// (a full rewrite of the table) happens only once all three lists are in, so a
/// restart never opens or closes traffic that the policies say otherwise about.
pub async fn run_enforcer<N: Nft + 'static>(
    api: Arc<dyn ListWatchApi>,
    mut enforcer: Enforcer<N>,
    cluster_dns: Option<Ipv4Addr>,
) {
    ensure_bridged_traffic_is_filtered();
    if let Some(address) = cluster_dns {
        enforcer.add_stand_in(cluster_dns_stand_in(address));
    }
    let (initial, changes) = watch_cluster(api).await;
    let objects = initial.len();
    for change in initial {
        enforcer.apply_change(change);
    }
    tracing::info!(
        table = enforcer.table(),
        objects,
        "network policy enforcement is running"
    );
    enforcer.run(changes).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::client::fake::{Answer, FakeListWatch};
    use std::time::Duration;

    #[tokio::test(start_paused = true)]
    async fn the_first_lists_become_upserts_and_later_events_changes() {
        let api = Arc::new(FakeListWatch::new());
        api.answer(
            "/api/v1/pods",
            Answer::list(
                "1",
                vec![json!({"metadata": {"namespace": "a", "name": "p", "uid": "p", "resourceVersion": "1"}})],
            ),
        )
        .answer(
            "/api/v1/namespaces",
            Answer::list(
                "1",
                vec![json!({"metadata": {"name": "a", "uid": "a", "resourceVersion": "1", "labels": {"x": "y"}}})],
            ),
        )
        .answer(
            "/apis/networking.k8s.io/v1/networkpolicies",
            Answer::list("1", vec![]),
        )
        .answer(
            "/apis/networking.k8s.io/v1/networkpolicies",
            Answer::events([(
                "ADDED",
                json!({"metadata": {"namespace": "a", "name": "deny", "uid": "d", "resourceVersion": "2"},
                       "spec": {"podSelector": {}}}),
            )]),
        );
        let test = async {
            let (initial, mut changes) = watch_cluster(api.clone()).await;
            assert!(
                matches!(&initial[0], Change::Namespace { name, labels } if name == "a" && labels["x"] == "y")
            );
            assert!(matches!(&initial[1], Change::Pod(p) if p["metadata"]["name"] == "p"));
            assert_eq!(initial.len(), 2);
            loop {
                if let Change::Policy(p) = changes.recv().await.unwrap() {
                    assert_eq!(p["metadata"]["name"], "deny");
                    break;
                }
            }
        };
        tokio::time::timeout(Duration::from_secs(60), test)
            .await
            .expect("the policy watch deadlocked");
    }

    #[test]
    fn the_cluster_dns_stands_in_as_a_kube_system_pod() {
        let dns = cluster_dns_stand_in("10.43.0.10".parse().unwrap());
        assert_eq!(dns.named_port("dns", Protocol::Udp), Some(53));
        assert_eq!(dns.named_port("dns-tcp", Protocol::Tcp), Some(53));
        assert_eq!(dns.labels["k8s-app"], "kube-dns");
        assert!(dns.node.is_none(), "never isolated");
    }
}
