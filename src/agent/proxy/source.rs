//! What the proxy and the cluster DNS read from the API server: every Service and
//! Endpoints of the cluster (list + watch, relisting after any error), turned into
//! [`Change`]s.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use serde_json::Value;
use tokio::sync::mpsc;

use super::{Change, Nft, Proxier};
use crate::agent::client::{ApiClient, ClientError, WatchEvent, WatchEvents};

/// How long one watch request stays open before it is renewed.
const WATCH_TIMEOUT_SECONDS: u64 = 300;
/// Wait before relisting after a failed list or watch.
const RELIST_DELAY: Duration = Duration::from_secs(2);
/// Changes buffered between the watches and the proxier.
const CHANGE_BUFFER: usize = 1024;

#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    #[error("{step} {resource}")]
    Request {
        step: &'static str,
        resource: &'static str,
        #[source]
        source: ClientError,
    },
    #[error("{step} {resource}: the server answered {status}: {message}")]
    Rejected {
        step: &'static str,
        resource: &'static str,
        status: u16,
        message: String,
    },
}

pub type Result<T, E = SourceError> = std::result::Result<T, E>;

/// A cluster-wide resource the proxy follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Services,
    Endpoints,
}

impl Resource {
    fn plural(self) -> &'static str {
        match self {
            Resource::Services => "services",
            Resource::Endpoints => "endpoints",
        }
    }

    /// The change that upserts `object`; `None` (logged) when it is not a valid object.
    fn upsert(self, object: Value) -> Option<Change> {
        let change = match self {
            Resource::Services => {
                serde_json::from_value::<Service>(object).map(|s| Change::Service(Box::new(s)))
            }
            Resource::Endpoints => {
                serde_json::from_value::<Endpoints>(object).map(|e| Change::Endpoints(Box::new(e)))
            }
        };
        change
            .inspect_err(|e| {
                tracing::warn!(resource = self.plural(), error = %e, "ignoring an unreadable object")
            })
            .ok()
    }

    fn deleted(self, (namespace, name): ObjectKey) -> Change {
        match self {
            Resource::Services => Change::ServiceDeleted { namespace, name },
            Resource::Endpoints => Change::EndpointsDeleted { namespace, name },
        }
    }
}

type ObjectKey = (String, String);

fn key_of(object: &Value) -> ObjectKey {
    let meta = &object["metadata"];
    (
        meta["namespace"].as_str().unwrap_or("default").to_string(),
        meta["name"].as_str().unwrap_or_default().to_string(),
    )
}

/// One list of a resource: its objects and the resourceVersion to watch from.
struct Listing {
    items: Vec<Value>,
    resource_version: String,
}

impl Listing {
    fn keys(&self) -> BTreeSet<ObjectKey> {
        self.items.iter().map(key_of).collect()
    }
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
/// watches, in logs.
pub async fn watch_services(client: Arc<ApiClient>, consumer: &'static str) -> ServiceWatch {
    let services = list_until_ok(&client, Resource::Services, consumer).await;
    let endpoints = list_until_ok(&client, Resource::Endpoints, consumer).await;
    let mut initial = Vec::new();
    let (tx, changes) = mpsc::channel(CHANGE_BUFFER);
    for (resource, listing) in [
        (Resource::Services, services),
        (Resource::Endpoints, endpoints),
    ] {
        let keys = listing.keys();
        initial.extend(
            listing
                .items
                .into_iter()
                .filter_map(|object| resource.upsert(object)),
        );
        tokio::spawn(follow(
            client.clone(),
            resource,
            listing.resource_version,
            keys,
            tx.clone(),
            consumer,
        ));
    }
    ServiceWatch { initial, changes }
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

async fn list_until_ok(client: &ApiClient, resource: Resource, consumer: &str) -> Listing {
    loop {
        match list(client, resource).await {
            Ok(listing) => return listing,
            Err(e) => {
                tracing::warn!(consumer, error = %e, "cannot list services yet; retrying");
                tokio::time::sleep(RELIST_DELAY).await;
            }
        }
    }
}

/// Watches `resource` from `resource_version` forever; after any watch end it relists
/// and sends the full state again: every object, and a deletion for each object `known`
/// had that is gone. Returns when the receiver is gone.
async fn follow(
    client: Arc<ApiClient>,
    resource: Resource,
    mut resource_version: String,
    mut known: BTreeSet<ObjectKey>,
    out: mpsc::Sender<Change>,
    consumer: &'static str,
) {
    loop {
        match watch_from(&client, resource, resource_version, &mut known, &out).await {
            Ok(WatchEnd::ReceiverGone) => return,
            Ok(WatchEnd::Expired) => {}
            Err(e) => {
                tracing::warn!(consumer, error = %e, "service watch failed; relisting");
                tokio::time::sleep(RELIST_DELAY).await;
            }
        }
        let listing = list_until_ok(&client, resource, consumer).await;
        let now = listing.keys();
        for gone in known.difference(&now) {
            if out.send(resource.deleted(gone.clone())).await.is_err() {
                return;
            }
        }
        for object in listing.items {
            if let Some(change) = resource.upsert(object) {
                if out.send(change).await.is_err() {
                    return;
                }
            }
        }
        known = now;
        resource_version = listing.resource_version;
    }
}

async fn list(client: &ApiClient, resource: Resource) -> Result<Listing> {
    const STEP: &str = "list";
    let plural = resource.plural();
    let resp = client
        .get(&format!("/api/v1/{plural}"))
        .await
        .map_err(|source| SourceError::Request {
            step: STEP,
            resource: plural,
            source,
        })?;
    if !resp.status.is_success() {
        return Err(SourceError::Rejected {
            step: STEP,
            resource: plural,
            status: resp.status.as_u16(),
            message: resp.message(),
        });
    }
    let list = resp.json().unwrap_or_default();
    Ok(Listing {
        resource_version: list["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or("")
            .to_string(),
        items: list["items"].as_array().cloned().unwrap_or_default(),
    })
}

enum WatchEnd {
    /// The watch ended (410 Gone, a broken stream): relist.
    Expired,
    ReceiverGone,
}

/// Streams watch events as changes, renewing the watch when it times out, and keeps
/// `known` (the keys of the objects that exist) up to date.
async fn watch_from(
    client: &ApiClient,
    resource: Resource,
    mut rv: String,
    known: &mut BTreeSet<ObjectKey>,
    out: &mpsc::Sender<Change>,
) -> Result<WatchEnd> {
    const STEP: &str = "watch";
    let plural = resource.plural();
    loop {
        let path = format!(
            "/api/v1/{plural}?watch=1&resourceVersion={rv}\
             &allowWatchBookmarks=true&timeoutSeconds={WATCH_TIMEOUT_SECONDS}"
        );
        let (status, body) = client
            .stream(&path)
            .await
            .map_err(|source| SourceError::Request {
                step: STEP,
                resource: plural,
                source,
            })?;
        if !status.is_success() {
            return Err(SourceError::Rejected {
                step: STEP,
                resource: plural,
                status: status.as_u16(),
                message: String::new(),
            });
        }
        let mut events = WatchEvents::new(body);
        while let Some(event) = events.next().await {
            let WatchEvent { kind, object } = match event {
                Ok(event) => event,
                Err(e) => {
                    tracing::debug!(resource = plural, error = %e, "watch stream broke");
                    return Ok(WatchEnd::Expired);
                }
            };
            if let Some(v) = object["metadata"]["resourceVersion"].as_str() {
                rv = v.to_string();
            }
            let change = match kind.as_str() {
                "ADDED" | "MODIFIED" => {
                    known.insert(key_of(&object));
                    resource.upsert(object)
                }
                "DELETED" => {
                    let key = key_of(&object);
                    known.remove(&key);
                    Some(resource.deleted(key))
                }
                "BOOKMARK" => None,
                // ERROR (e.g. 410 Gone): the resourceVersion is too old.
                _ => return Ok(WatchEnd::Expired),
            };
            if let Some(change) = change {
                if out.send(change).await.is_err() {
                    return Ok(WatchEnd::ReceiverGone);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn objects_become_typed_changes() {
        let service = json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "spec": {"clusterIP": "10.43.0.5", "ports": [{"port": 80}]},
        });
        assert!(matches!(
            Resource::Services.upsert(service),
            Some(Change::Service(s)) if s.metadata.name.as_deref() == Some("web")
        ));
        let endpoints = json!({
            "metadata": {"namespace": "ns", "name": "web"},
            "subsets": [{"addresses": [{"ip": "10.42.0.2"}], "ports": [{"port": 8080}]}],
        });
        assert!(matches!(
            Resource::Endpoints.upsert(endpoints),
            Some(Change::Endpoints(_))
        ));
        assert!(
            Resource::Services
                .upsert(json!({"spec": {"ports": "not a list"}}))
                .is_none(),
            "an unreadable object is skipped"
        );
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
        let key = key_of(&json!({"metadata": {"name": "web"}}));
        assert_eq!(key, ("default".to_string(), "web".to_string()));
        assert!(matches!(
            Resource::Endpoints.deleted(key),
            Change::EndpointsDeleted { namespace, name } if namespace == "default" && name == "web"
        ));
    }
}
