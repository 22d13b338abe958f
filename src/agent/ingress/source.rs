//! What the built-in ingress reads from the API server: Ingresses, IngressClasses,
//! Services and EndpointSlices (list-watched), and the TLS Secrets the served Ingresses
//! name (read one by one, as the node authorizer allows only those; read again every
//! [`SECRET_REFRESH`] so renewed certificates are picked up). Every change rebuilds the
//! [`Snapshot`] the proxy serves from.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{Endpoints, Service};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::api::networking::v1::{Ingress, IngressClass};
use rustls::sign::CertifiedKey;
use serde::de::DeserializeOwned;
use serde_json::Value;
use tokio::sync::mpsc;

use super::routes::RouteTable;
use super::tls::{certified_key_from_secret, CertTable, SniResolver};
use crate::agent::client::{ApiClient, Event, ListWatchApi, Query, Reflector};
use crate::agent::proxy::source::merge_slices;

/// How often the TLS Secrets in use are read again.
pub const SECRET_REFRESH: Duration = Duration::from_secs(30);
const UPDATE_BUFFER: usize = 256;
/// The label naming the Service of an EndpointSlice.
const SERVICE_NAME_LABEL: &str = "kubernetes.io/service-name";

/// What the proxy routes with: a consistent view of the routes, Services and endpoints.
#[derive(Debug, Default)]
pub struct Snapshot {
    pub routes: RouteTable,
    /// By `namespace/name`.
    pub services: BTreeMap<String, Service>,
    /// Ready endpoints merged from the EndpointSlices, by Service `namespace/name`.
    pub endpoints: BTreeMap<String, Endpoints>,
}

/// The state shared by the watches and the listeners.
pub struct State {
    snapshot: RwLock<Arc<Snapshot>>,
    pub resolver: Arc<SniResolver>,
}

impl State {
    pub fn new(resolver: Arc<SniResolver>) -> State {
        State {
            snapshot: RwLock::new(Arc::new(Snapshot::default())),
            resolver,
        }
    }

    /// The current view (cheap: an `Arc`).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    fn publish(&self, snapshot: Snapshot) {
        *self.snapshot.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(snapshot);
    }
}

/// One reflector's event (boxed: the kinds differ much in size).
enum Update {
    Ingress(Box<Event<Ingress>>),
    Class(Box<Event<IngressClass>>),
    Service(Box<Event<Service>>),
    Slice(Box<Event<EndpointSlice>>),
}

fn key_of(meta: &k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta) -> String {
    match &meta.namespace {
        Some(ns) => format!("{ns}/{}", meta.name.as_deref().unwrap_or("")),
        None => meta.name.clone().unwrap_or_default(),
    }
}

/// Objects of one kind by key, kept from a reflector's events.
struct Objects<T> {
    items: BTreeMap<String, T>,
    synced: bool,
}

impl<T> Default for Objects<T> {
    fn default() -> Self {
        Objects {
            items: BTreeMap::new(),
            synced: false,
        }
    }
}

impl<T: k8s_openapi::Metadata<Ty = k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta>>
    Objects<T>
{
    fn apply(&mut self, event: Event<T>) {
        match event {
            Event::Restarted(all) | Event::LastKnown(all) => {
                self.items = all.into_iter().map(|o| (key_of(o.metadata()), o)).collect();
                self.synced = true;
            }
            Event::Applied(o) => {
                self.items.insert(key_of(o.metadata()), o);
            }
            Event::Deleted(o) => {
                self.items.remove(&key_of(o.metadata()));
            }
        }
    }
}

/// Forwards a reflector's events until the receiver is gone.
fn follow<T: DeserializeOwned + Clone + Send + Sync + 'static>(
    api: Arc<dyn ListWatchApi>,
    query: Query,
    wrap: fn(Event<T>) -> Update,
    tx: mpsc::Sender<Update>,
) {
    tokio::spawn(async move {
        let mut reflector = Reflector::<T>::new(api, query);
        loop {
            let event = reflector.next().await;
            if tx.send(wrap(event)).await.is_err() {
                return;
            }
        }
    });
}

/// The TLS Secrets in use: their keys, and the errors already logged.
#[derive(Default)]
struct Secrets {
    keys: BTreeMap<String, Arc<CertifiedKey>>,
    failures: BTreeMap<String, String>,
}

impl Secrets {
    /// Reads `wanted` Secrets not yet known (all of them with `refresh`), and forgets
    /// the ones no longer wanted. Returns whether a key changed.
    async fn sync(&mut self, api: &ApiClient, wanted: &BTreeSet<String>, refresh: bool) -> bool {
        let before = self.keys.len();
        self.keys.retain(|k, _| wanted.contains(k));
        self.failures.retain(|k, _| wanted.contains(k));
        let mut changed = before != self.keys.len();
        for key in wanted {
            if !refresh && self.keys.contains_key(key) {
                continue;
            }
            let Some((ns, name)) = key.split_once('/') else {
                continue;
            };
            let loaded = match api
                .get(&format!("/api/v1/namespaces/{ns}/secrets/{name}"))
                .await
            {
                Ok(resp) if resp.status.is_success() => resp
                    .json()
                    .ok_or_else(|| "the answer is not JSON".to_string())
                    .and_then(|s: Value| certified_key_from_secret(&s).map_err(|e| e.to_string())),
                Ok(resp) => Err(format!("{}: {}", resp.status, resp.message())),
                Err(e) => Err(crate::agent::error_chain(&e)),
            };
            match loaded {
                Ok(k) => {
                    let same = self.keys.get(key).is_some_and(|old| old.cert == k.cert);
                    if !same {
                        tracing::info!(secret = %key, "ingress TLS certificate loaded");
                        self.keys.insert(key.clone(), Arc::new(k));
                        changed = true;
                    }
                    self.failures.remove(key);
                }
                Err(error) => {
                    if self.failures.get(key) != Some(&error) {
                        tracing::warn!(secret = %key, %error, "ingress TLS secret unusable; names it covers get the fallback certificate");
                        self.failures.insert(key.clone(), error);
                    }
                }
            }
        }
        changed
    }
}

/// Watches everything the ingress routes by and keeps `state` current. Runs forever.
pub async fn run(api: Arc<ApiClient>, state: Arc<State>) {
    let (tx, mut rx) = mpsc::channel(UPDATE_BUFFER);
    let list_watch: Arc<dyn ListWatchApi> = api.clone();
    let group = "networking.k8s.io/v1";
    follow(
        list_watch.clone(),
        Query::all_in_group(group, "ingresses"),
        |e| Update::Ingress(Box::new(e)),
        tx.clone(),
    );
    follow(
        list_watch.clone(),
        Query::all_in_group(group, "ingressclasses"),
        |e| Update::Class(Box::new(e)),
        tx.clone(),
    );
    follow(
        list_watch.clone(),
        Query::all("services"),
        |e| Update::Service(Box::new(e)),
        tx.clone(),
    );
    follow(
        list_watch,
        Query::all_in_group("discovery.k8s.io/v1", "endpointslices"),
        |e| Update::Slice(Box::new(e)),
        tx,
    );
    let mut ingresses = Objects::<Ingress>::default();
    let mut classes = Objects::<IngressClass>::default();
    let mut services = Objects::<Service>::default();
    let mut slices = Objects::<EndpointSlice>::default();
    let mut secrets = Secrets::default();
    let mut refresh = tokio::time::interval(SECRET_REFRESH);
    refresh.tick().await;
    loop {
        let refreshing = tokio::select! {
            update = rx.recv() => {
                let Some(mut update) = update else { return };
                loop {
                    match update {
                        Update::Ingress(e) => ingresses.apply(*e),
                        Update::Class(e) => classes.apply(*e),
                        Update::Service(e) => services.apply(*e),
                        Update::Slice(e) => slices.apply(*e),
                    }
                    match rx.try_recv() {
                        Ok(next) => update = next,
                        Err(_) => break,
                    }
                }
                false
            }
            _ = refresh.tick() => true,
        };
        if !(ingresses.synced && classes.synced && services.synced && slices.synced) {
            continue;
        }
        let class_values: Vec<Value> = classes
            .items
            .values()
            .filter_map(|c| serde_json::to_value(c).ok())
            .collect();
        let mut ours: Vec<&Ingress> = ingresses
            .items
            .values()
            .filter(|ing| {
                serde_json::to_value(ing)
                    .is_ok_and(|v| crate::api::ingress::is_ours(&v, &class_values))
            })
            .collect();
        ours.sort_by_key(|i| {
            (
                i.metadata.creation_timestamp.as_ref().map(|t| t.0),
                key_of(&i.metadata),
            )
        });
        let wanted: BTreeSet<String> = ours
            .iter()
            .flat_map(|ing| {
                let ns = ing.metadata.namespace.clone().unwrap_or_default();
                tls_sections(ing).filter_map(move |(_, secret)| secret.map(|s| format!("{ns}/{s}")))
            })
            .collect();
        secrets.sync(&api, &wanted, refreshing).await;
        let mut certs = CertTable::default();
        for ing in &ours {
            let ns = ing.metadata.namespace.clone().unwrap_or_default();
            for (hosts, secret) in tls_sections(ing) {
                let Some(secret) = secret else { continue };
                if let Some(key) = secrets.keys.get(&format!("{ns}/{secret}")) {
                    certs.add(&hosts, key.clone());
                }
            }
        }
        state.resolver.replace(certs);
        state.publish(Snapshot {
            routes: RouteTable::build(ours.iter().copied()),
            services: services.items.clone(),
            endpoints: merged_endpoints(&slices.items),
        });
    }
}

/// The (hosts, secret name) of each TLS section of `ing`.
fn tls_sections(ing: &Ingress) -> impl Iterator<Item = (Vec<String>, Option<String>)> + '_ {
    ing.spec
        .iter()
        .flat_map(|s| s.tls.iter().flatten())
        .map(|t| {
            (
                t.hosts.clone().unwrap_or_default(),
                t.secret_name.clone().filter(|s| !s.is_empty()),
            )
        })
}

/// Every Service's EndpointSlices merged into its Endpoints, by Service key.
fn merged_endpoints(slices: &BTreeMap<String, EndpointSlice>) -> BTreeMap<String, Endpoints> {
    let mut by_service: BTreeMap<(String, String), Vec<&EndpointSlice>> = BTreeMap::new();
    for slice in slices.values() {
        let service = slice
            .metadata
            .labels
            .as_ref()
            .and_then(|l| l.get(SERVICE_NAME_LABEL))
            .filter(|s| !s.is_empty());
        if let Some(service) = service {
            let ns = slice.metadata.namespace.clone().unwrap_or_default();
            by_service
                .entry((ns, service.clone()))
                .or_default()
                .push(slice);
        }
    }
    by_service
        .into_iter()
        .map(|((ns, svc), slices)| {
            let endpoints = merge_slices(&ns, &svc, &slices);
            (format!("{ns}/{svc}"), endpoints)
        })
        .collect()
}
