//! What the proxy and the cluster DNS read from the API server: every Service and
//! Endpoints of the cluster (the agent's list-watch), turned into [`Change`]s.

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tracing::Instrument;

use super::{Change, Nft, Proxier};
use crate::agent::client::last_known::LastKnownDir;
use crate::agent::client::{Event, ListWatchApi, Query, Reflector};

/// Changes buffered between the watches and the proxier.
const CHANGE_BUFFER: usize = 1024;

/// A kind of object the proxy follows, and the changes it makes.
trait Followed: DeserializeOwned + Clone + Send + 'static {
    const PLURAL: &'static str;
    /// The change that adds or updates this object.
    fn upserted(self) -> Change;
    /// The change that removes this object.
    fn deleted(&self) -> Change;
}

impl Followed for Service {
    const PLURAL: &'static str = "services";

    fn upserted(self) -> Change {
        Change::Service(Box::new(self))
    }

    fn deleted(&self) -> Change {
        let (namespace, name) = key_of(&self.metadata);
        Change::ServiceDeleted { namespace, name }
    }
}

impl Followed for Endpoints {
    const PLURAL: &'static str = "endpoints";

    fn upserted(self) -> Change {
        Change::Endpoints(Box::new(self))
    }

    fn deleted(&self) -> Change {
        let (namespace, name) = key_of(&self.metadata);
        Change::EndpointsDeleted { namespace, name }
    }
}

fn key_of(meta: &ObjectMeta) -> (String, String) {
    (
        meta.namespace.clone().unwrap_or_else(|| "default".into()),
        meta.name.clone().unwrap_or_default(),
    )
}

/// Every Service and Endpoints of the cluster: `initial` holds one upsert per object of
/// the first complete lists, `changes` everything after (watch events, and the full
/// state again after each relist, with deletions for objects that went away meanwhile).
/// Consumers (the service proxy, the cluster DNS) load `initial` before serving, so a
/// restart never drops services that still exist.
pub struct ServiceWatch {
    pub initial: Vec<Change>,
    pub changes: mpsc::Receiver<Change>,
}

/// Lists Services and Endpoints (retrying until both lists succeed) and keeps watching
/// them in background tasks that end when `changes` is dropped. `consumer` names who
/// watches, in logs. With `last_known`, both are kept on disk, and when the server
/// cannot be reached at start the last known state stands in for the first lists.
pub async fn watch_services(
    api: Arc<dyn ListWatchApi>,
    consumer: &'static str,
    last_known: Option<&LastKnownDir>,
) -> ServiceWatch {
    let span = tracing::info_span!("service_watch", consumer);
    let mut services = Reflector::<Service>::new(api.clone(), Query::all(Service::PLURAL));
    let mut endpoints = Reflector::<Endpoints>::new(api, Query::all(Endpoints::PLURAL));
    if let Some(dir) = last_known {
        services = services.remember_in(dir.file(Service::PLURAL));
        endpoints = endpoints.remember_in(dir.file(Endpoints::PLURAL));
    }
    let (services_now, endpoints_now) = async {
        let services_now = first_list(&mut services).await;
        (services_now, first_list(&mut endpoints).await)
    }
    .instrument(span.clone())
    .await;
    let initial = (services_now.into_iter().map(Followed::upserted))
        .chain(endpoints_now.into_iter().map(Followed::upserted))
        .collect();
    let (tx, changes) = mpsc::channel(CHANGE_BUFFER);
    tokio::spawn(follow(services, tx.clone()).instrument(span.clone()));
    tokio::spawn(follow(endpoints, tx).instrument(span));
    ServiceWatch { initial, changes }
}

/// The objects of the first list (the first event of a reflector), or the last known
/// ones while the server cannot be reached.
async fn first_list<T: Followed>(reflector: &mut Reflector<T>) -> Vec<T> {
    loop {
        if let Event::Restarted(objects) | Event::LastKnown(objects) = reflector.next().await {
            return objects;
        }
    }
}

/// Sends every change `reflector` sees as [`Change`]s: after a relist, a deletion for
/// each object that went away meanwhile and the full state again. Returns when the
/// receiver is gone.
async fn follow<T: Followed>(mut reflector: Reflector<T>, out: mpsc::Sender<Change>) {
    loop {
        let changes: Vec<Change> = match reflector.next().await {
            Event::Restarted(objects) | Event::LastKnown(objects) => {
                objects.into_iter().map(T::upserted).collect()
            }
            Event::Applied(object) => vec![object.upserted()],
            Event::Deleted(object) => vec![object.deleted()],
        };
        for change in changes {
            if out.send(change).await.is_err() {
                return;
            }
        }
    }
}

impl ServiceWatch {
    /// Two watches fed from this one, for two consumers: each gets every change, in
    /// order. A slow consumer holds back the other, so both must keep reading. The
    /// copying task ends when this watch ends or both consumers are gone.
    pub fn split(self) -> (ServiceWatch, ServiceWatch) {
        let ServiceWatch {
            initial,
            mut changes,
        } = self;
        let (tx_a, rx_a) = mpsc::channel(CHANGE_BUFFER);
        let (tx_b, rx_b) = mpsc::channel(CHANGE_BUFFER);
        tokio::spawn(async move {
            let mut outputs = vec![tx_a, tx_b];
            while let Some(change) = changes.recv().await {
                let mut open = Vec::with_capacity(outputs.len());
                for tx in outputs {
                    if tx.send(change.clone()).await.is_ok() {
                        open.push(tx);
                    }
                }
                if open.is_empty() {
                    return;
                }
                outputs = open;
            }
        });
        (
            ServiceWatch {
                initial: initial.clone(),
                changes: rx_a,
            },
            ServiceWatch {
                initial,
                changes: rx_b,
            },
        )
    }
}

/// Runs the service proxy on `proxier` from `watch`, forever. The proxier's first sync
/// (a full resync) happens only once both complete lists are loaded, so a restart
/// never drops services that still exist.
pub async fn run_proxy<N: Nft + 'static>(watch: ServiceWatch, mut proxier: Proxier<N>) {
    let ServiceWatch { initial, changes } = watch;
    let objects = initial.len();
    for change in initial {
        proxier.apply_change(change);
    }
    tracing::info!(table = proxier.table(), objects, "service proxy is running");
    proxier.run(changes).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn object<T: Followed>(value: serde_json::Value) -> T {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn objects_become_typed_changes() {
        let service: Service = object(json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"clusterIP": "10.43.0.5", "ports": [{"port": 80}]},
        }));
        assert!(matches!(
            service.upserted(),
            Change::Service(s) if s.metadata.name.as_deref() == Some("web")
        ));
        let endpoints: Endpoints = object(json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "subsets": [{"addresses": [{"ip": "10.42.0.2"}], "ports": [{"port": 8080}]}],
        }));
        assert!(matches!(endpoints.upserted(), Change::Endpoints(_)));
    }

    fn service(name: &str) -> serde_json::Value {
        json!({"metadata": {"namespace": "ns", "name": name, "uid": name, "resourceVersion": "1"},
               "spec": {"clusterIP": "10.43.0.5", "ports": [{"port": 80}]}})
    }

    fn describe(change: &Change) -> String {
        match change {
            Change::Service(s) => format!("service {}", s.metadata.name.as_deref().unwrap_or("")),
            Change::ServiceDeleted { name, .. } => format!("deleted service {name}"),
            Change::Endpoints(e) => {
                format!("endpoints {}", e.metadata.name.as_deref().unwrap_or(""))
            }
            Change::EndpointsDeleted { name, .. } => format!("deleted endpoints {name}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn services_gone_while_the_watch_was_expired_are_deleted_after_the_relist() {
        use crate::agent::client::fake::{Answer, FakeListWatch};
        let api = Arc::new(FakeListWatch::new());
        api.answer(
            "/api/v1/services",
            Answer::list("1", vec![service("a"), service("b")]),
        )
        .answer("/api/v1/endpoints", Answer::list("1", vec![]))
        .answer(
            "/api/v1/services",
            Answer::events([(
                "ERROR",
                json!({"kind": "Status", "code": 410, "reason": "Expired"}),
            )]),
        )
        .answer("/api/v1/services", Answer::list("7", vec![service("b")]));
        let test = async {
            let mut watch = watch_services(api.clone(), "test", None).await;
            let initial: Vec<String> = watch.initial.iter().map(describe).collect();
            assert_eq!(initial, ["service a", "service b"]);
            let mut changes = Vec::new();
            while changes.len() < 2 {
                changes.push(describe(&watch.changes.recv().await.unwrap()));
            }
            assert_eq!(changes, ["deleted service a", "service b"]);
        };
        tokio::time::timeout(Duration::from_secs(60), test)
            .await
            .expect("the service watch deadlocked");
    }

    #[tokio::test]
    async fn a_split_watch_gives_every_change_to_both_consumers() {
        let (tx, changes) = mpsc::channel(4);
        let deleted = |name: &str| Change::ServiceDeleted {
            namespace: "default".into(),
            name: name.into(),
        };
        let watch = ServiceWatch {
            initial: vec![deleted("initial")],
            changes,
        };
        let (mut a, b) = watch.split();
        assert_eq!(a.initial.len(), 1);
        assert_eq!(b.initial.len(), 1);
        drop(b);
        for name in ["one", "two"] {
            tx.send(deleted(name)).await.unwrap();
        }
        drop(tx);
        let mut seen = Vec::new();
        let drain = async {
            while let Some(Change::ServiceDeleted { name, .. }) = a.changes.recv().await {
                seen.push(name);
            }
        };
        tokio::time::timeout(Duration::from_secs(10), drain)
            .await
            .expect("split watch deadlocked after one consumer left");
        assert_eq!(seen, ["one", "two"]);
    }

    #[test]
    fn deletions_name_the_object() {
        let unnamespaced: Endpoints = object(json!({"metadata": {"name": "web"}}));
        assert!(matches!(
            unnamespaced.deleted(),
            Change::EndpointsDeleted { namespace, name } if namespace == "default" && name == "web"
        ));
    }
}
