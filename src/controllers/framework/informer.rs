//! Informers: list and watch one resource through the client, keep a local cache of its
//! objects (one writer, many readers), relist when the watch ends, and turn each change
//! into work-queue keys through a mapper.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock};

use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::client::Client;
use super::queue::WorkQueue;
use crate::api::resources::ResourceDef;
use crate::store::{Event, EventType, KeyValue};

/// Maps a change to the keys of the objects that must be reconciled because of it.
pub type KeyMapper = Box<dyn Fn(&Event) -> Vec<String> + Send + Sync>;

/// The objects an informer has seen, by `namespace/name`. This is a cache and may be a
/// moment behind the API.
#[derive(Clone, Default)]
pub struct Reader {
    objects: Arc<RwLock<BTreeMap<String, KeyValue>>>,
}

impl Reader {
    pub fn get(&self, key: &str) -> Option<KeyValue> {
        self.read().get(key).cloned()
    }

    pub fn list(&self) -> Vec<KeyValue> {
        self.read().values().cloned().collect()
    }

    pub fn len(&self) -> usize {
        self.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, BTreeMap<String, KeyValue>> {
        self.objects.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<String, KeyValue>> {
        self.objects.write().unwrap_or_else(|e| e.into_inner())
    }
}

/// A running informer; its task ends when it is dropped.
pub struct Informer {
    reader: Reader,
    synced: watch::Receiver<bool>,
    task: JoinHandle<()>,
}

impl Drop for Informer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl Informer {
    /// Lists and watches `def`, queueing the keys `map` returns for every object at the
    /// start (as `Added`), every change, and every object gone or changed across a relist.
    pub fn start(
        client: Arc<dyn Client>,
        def: &'static ResourceDef,
        queue: Arc<WorkQueue>,
        map: KeyMapper,
    ) -> Informer {
        let reader = Reader::default();
        let (synced_tx, synced) = watch::channel(false);
        let task = tokio::spawn(run(client, def, queue, map, reader.clone(), synced_tx));
        Informer {
            reader,
            synced,
            task,
        }
    }

    /// Whether the first list has been delivered to the queue and the cache.
    pub fn has_synced(&self) -> bool {
        *self.synced.borrow()
    }

    /// Waits until `has_synced` (workers start after this, so they never act on a
    /// partial view).
    pub async fn wait_for_sync(&self) {
        let mut synced = self.synced.clone();
        // The sender lives as long as the task; if it ended, there is nothing to wait for.
        let _ = synced.wait_for(|s| *s).await;
    }

    pub fn reader(&self) -> Reader {
        self.reader.clone()
    }
}

/// Waits until every informer has synced.
pub async fn wait_for_sync(informers: &[Informer]) {
    for informer in informers {
        informer.wait_for_sync().await;
    }
}

async fn run(
    client: Arc<dyn Client>,
    def: &'static ResourceDef,
    queue: Arc<WorkQueue>,
    map: KeyMapper,
    reader: Reader,
    synced: watch::Sender<bool>,
) {
    let deliver = |event: &Event| {
        for key in map(event) {
            queue.add(key);
        }
    };
    loop {
        let (items, _, mut watcher) = client.list_and_watch(def);
        for event in relist(&reader, items) {
            deliver(&event);
        }
        synced.send_replace(true);
        loop {
            match watcher.next().await {
                Ok(event) => {
                    apply(&reader, &event);
                    deliver(&event);
                }
                Err(e) => {
                    tracing::debug!(resource = def.plural, error = %e, "informer watch ended; relisting");
                    break;
                }
            }
        }
    }
}

/// `namespace/name` (or `name`), read from the datastore key `/<group>/<plural>/<rest>`
/// without parsing the object.
fn object_key_of(kv: &KeyValue) -> String {
    match kv.key.splitn(4, '/').nth(3) {
        Some(rest) if !rest.is_empty() => rest.to_string(),
        _ => super::object_key(&kv.value),
    }
}

fn apply(reader: &Reader, event: &Event) {
    let key = object_key_of(&event.kv);
    let mut objects = reader.write();
    match event.kind {
        EventType::Deleted => objects.remove(&key),
        // A cold handle: the parsed form goes with the event, not kept in the map.
        EventType::Added | EventType::Modified => objects.insert(key, event.kv.cold()),
    };
}

/// Replaces the cache with a fresh list; returns the events that bring a consumer of the
/// old view up to date: `Added` for every listed object (as on the first list, so each
/// is reconciled again) and `Deleted` for objects missing from the list.
fn relist(reader: &Reader, items: Vec<KeyValue>) -> Vec<Event> {
    let fresh: BTreeMap<String, KeyValue> = items
        .into_iter()
        .map(|kv| (object_key_of(&kv), kv.cold()))
        .collect();
    let old = std::mem::replace(&mut *reader.write(), fresh.clone());
    let gone: Vec<Event> = old
        .into_iter()
        .filter(|(key, _)| !fresh.contains_key(key))
        .map(|(_, kv)| Event {
            kind: EventType::Deleted,
            kv,
            prev: None,
        })
        .collect();
    let listed = fresh.into_values().map(|kv| Event {
        kind: EventType::Added,
        kv,
        prev: None,
    });
    gone.into_iter().chain(listed).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources;
    use crate::controllers::testutil::{self, wait_for};
    use crate::store::make_kv;
    use serde_json::json;
    use std::time::Duration;

    fn config_map(name: &str) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "namespace": "default"}})
    }

    #[tokio::test(start_paused = true)]
    async fn informer_queues_existing_objects_then_changes_and_syncs_first() {
        let registry = testutil::registry().await;
        let client: Arc<dyn Client> = registry.clone();
        let cms = resources::by_plural("", "v1", "configmaps").unwrap();
        client
            .create(cms, Some("default"), config_map("before"))
            .await
            .unwrap();
        let queue = WorkQueue::new();
        let informer = Informer::start(
            client.clone(),
            cms,
            queue.clone(),
            Box::new(|e| vec![crate::controllers::framework::object_key(&e.kv.value)]),
        );
        tokio::time::timeout(Duration::from_secs(5), informer.wait_for_sync())
            .await
            .expect("informer sync deadlocked");
        assert!(informer.has_synced());
        assert_eq!(queue.next().await, "default/before");
        client
            .create(cms, Some("default"), config_map("after"))
            .await
            .unwrap();
        let next = tokio::time::timeout(Duration::from_secs(5), queue.next())
            .await
            .expect("informer deadlocked");
        assert_eq!(next, "default/after");
        let reader = informer.reader();
        wait_for("the cache to hold both", Duration::from_secs(5), || {
            reader.len() == 2
        })
        .await;
        assert!(reader.get("default/before").is_some());
    }

    #[test]
    fn relist_reports_objects_that_vanished_while_not_watching() {
        let reader = Reader::default();
        let kv = |name: &str, rev| {
            make_kv(
                &format!("/core/configmaps/default/{name}"),
                config_map(name),
                rev,
                rev,
            )
        };
        relist(&reader, vec![kv("a", 1), kv("b", 2)]);
        let events = relist(&reader, vec![kv("b", 3)]);
        let summary: Vec<(EventType, String)> = events
            .iter()
            .map(|e| (e.kind, object_key_of(&e.kv)))
            .collect();
        assert_eq!(
            summary,
            [
                (EventType::Deleted, "default/a".to_string()),
                (EventType::Added, "default/b".to_string())
            ]
        );
        assert_eq!(reader.len(), 1);
    }

    #[test]
    fn the_map_holds_cold_handles_keyed_without_parsing() {
        let reader = Reader::default();
        let written = make_kv("/core/configmaps/default/a", config_map("a"), 1, 1);
        let event = Event {
            kind: EventType::Added,
            kv: written.clone(),
            prev: None,
        };
        apply(&reader, &event);
        drop((event, written));
        let held = reader.get("default/a").expect("keyed by namespace/name");
        assert!(
            !held.value.is_parsed(),
            "the informer does not keep the parsed form"
        );
        assert_eq!(held.value["metadata"]["name"], "a");
        // A cluster-scoped object is keyed by its name.
        let ns = make_kv(
            "/core/namespaces/prod",
            json!({"metadata": {"name": "prod"}}),
            2,
            2,
        );
        let cold = ns.cold();
        drop(ns);
        assert_eq!(object_key_of(&cold), "prod");
        assert!(!cold.value.is_parsed(), "keyed without parsing");
    }
}
