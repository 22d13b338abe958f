//! Garbage collector: deletes objects whose owners (by `ownerReferences` uid) are gone,
//! and carries out foreground and orphan deletion of owners (finalizers
//! `foregroundDeletion` / `orphan` set by the registry on delete).
//!
//! It keeps an index of owner uid → dependents built from one watch over every
//! resource (through the client); decisions about an object always re-read it through
//! the client, so a stale index can delay work but never delete something wrongly.
//! Objects are named `apiVersion|kind|namespace|name` (`ObjectRef`), never by datastore
//! key.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};

use serde_json::Value;

use crate::api::object;
use crate::api::resources::{ResourceDef, Resources};
use crate::api::status::ApiError;
use crate::apiserver::registry::{DeleteOptions, FOREGROUND_FINALIZER, ORPHAN_FINALIZER};
use crate::store::{Event, EventType, KeyValue};

use super::framework::{run_workers, Client, WorkQueue};

/// Work items reconciled at once.
const WORKERS: usize = 2;
/// Work item prefixes: check a dependent against its owners / process a deleting owner.
const ATTEMPT: &str = "attempt:";
const OWNER: &str = "owner:";
/// Datastore prefixes of what the collector leaves out, as upstream's
/// `DefaultIgnoredResources`: events (core and `events.k8s.io`, kept under one prefix).
/// A cluster keeps thousands of them for an hour; tracking each would cost the graph
/// several small allocations per event for nothing — events own nothing, and upstream
/// never collects an event through its owner references either.
const IGNORED_PREFIXES: [&str; 1] = ["/core/events/"];

fn ignored(key: &str) -> bool {
    IGNORED_PREFIXES
        .iter()
        .any(|prefix| key.starts_with(prefix))
}

/// Owner uid → references (`ObjectRef`) of its dependents, and the reverse.
#[derive(Default)]
struct Graph {
    dependents: HashMap<String, HashSet<String>>,
    owners_of: HashMap<String, Vec<String>>,
    uid_to_key: HashMap<String, String>,
    key_to_uid: HashMap<String, String>,
}

fn owner_uids(obj: &Value) -> Vec<String> {
    owner_refs(obj)
        .iter()
        .filter_map(|r| r["uid"].as_str().map(str::to_string))
        .collect()
}

fn owner_refs(obj: &Value) -> Vec<Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

impl Graph {
    fn set(&mut self, key: &str, obj: &Value) {
        self.remove(key);
        let owners = owner_uids(obj);
        for uid in &owners {
            self.dependents
                .entry(uid.clone())
                .or_default()
                .insert(key.to_string());
        }
        self.owners_of.insert(key.to_string(), owners);
        if let Some(uid) = object::uid(obj) {
            self.uid_to_key.insert(uid.to_string(), key.to_string());
            self.key_to_uid.insert(key.to_string(), uid.to_string());
        }
    }

    fn remove(&mut self, key: &str) {
        for uid in self.owners_of.remove(key).unwrap_or_default() {
            if let Some(deps) = self.dependents.get_mut(&uid) {
                deps.remove(key);
                if deps.is_empty() {
                    self.dependents.remove(&uid);
                }
            }
        }
        if let Some(uid) = self.key_to_uid.remove(key) {
            self.uid_to_key.remove(&uid);
        }
    }

    fn dependents_of(&self, uid: &str) -> Vec<String> {
        self.dependents
            .get(uid)
            .map(|d| d.iter().cloned().collect())
            .unwrap_or_default()
    }
}

fn has_gc_finalizer(obj: &Value) -> bool {
    object::is_deleting(obj)
        && object::finalizers(obj)
            .iter()
            .any(|f| f == FOREGROUND_FINALIZER || f == ORPHAN_FINALIZER)
}

/// How the graph and the work queue name an object: `apiVersion|kind|namespace|name`.
struct ObjectRef;

impl ObjectRef {
    fn of(obj: &Value, served: &Resources) -> Option<String> {
        let def = def_of(obj, served)?;
        Some(ObjectRef::format(
            def,
            object::namespace(obj),
            object::name(obj),
        ))
    }

    fn format(def: &ResourceDef, ns: Option<&str>, name: &str) -> String {
        let ns = if def.namespaced { ns.unwrap_or("") } else { "" };
        format!("{}|{}|{ns}|{name}", def.api_version(), def.kind)
    }

    fn parse<'a>(
        reference: &'a str,
        served: &Resources,
    ) -> Option<(&'static ResourceDef, Option<&'a str>, &'a str)> {
        let mut parts = reference.splitn(4, '|');
        let (api_version, kind, ns, name) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        let def = served.by_kind(api_version, kind)?;
        Some((def, (!ns.is_empty()).then_some(ns), name))
    }
}

/// Updates the graph for a change and returns the work it causes.
fn observe(graph: &mut Graph, event: &Event, served: &Resources) -> Vec<String> {
    if ignored(&event.kv.key) {
        return vec![];
    }
    let obj = &*event.kv.value;
    // Objects of kinds this server does not serve can be neither checked nor deleted.
    let Some(key) = ObjectRef::of(obj, served) else {
        return vec![];
    };
    let mut work = Vec::new();
    if event.kind == EventType::Deleted {
        graph.remove(&key);
        if let Some(uid) = object::uid(obj) {
            work.extend(
                graph
                    .dependents_of(uid)
                    .into_iter()
                    .map(|d| format!("{ATTEMPT}{d}")),
            );
        }
        // Owners deleting in the foreground wait for this one.
        for uid in owner_uids(obj) {
            if let Some(owner) = graph.uid_to_key.get(&uid) {
                work.push(format!("{OWNER}{owner}"));
            }
        }
        return work;
    }
    let refs_changed = event.prev.as_ref().is_none_or(|p| {
        p.value["metadata"]["ownerReferences"] != obj["metadata"]["ownerReferences"]
    });
    graph.set(&key, obj);
    if refs_changed && !owner_refs(obj).is_empty() {
        work.push(format!("{ATTEMPT}{key}"));
    }
    if has_gc_finalizer(obj) {
        work.push(format!("{OWNER}{key}"));
        // Dependents learn that their owner now waits for them.
        if let Some(uid) = object::uid(obj) {
            work.extend(
                graph
                    .dependents_of(uid)
                    .into_iter()
                    .map(|d| format!("{ATTEMPT}{d}")),
            );
        }
    }
    work
}

fn def_of(obj: &Value, served: &Resources) -> Option<&'static ResourceDef> {
    served.by_kind(obj["apiVersion"].as_str()?, obj["kind"].as_str()?)
}

/// How an owner reference stands.
#[derive(Debug, PartialEq, Eq)]
enum OwnerState {
    /// Exists and is not waiting for its dependents.
    Solid,
    /// Gone, or replaced by another object of the same name.
    Dangling,
    /// Being deleted in the foreground.
    Waiting,
}

pub struct GarbageCollector {
    client: Arc<dyn Client>,
    graph: Mutex<Graph>,
    queue: Arc<WorkQueue>,
}

/// Aborts the graph's watch when the collector ends.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Runs the garbage collector until aborted.
pub async fn run(client: Arc<dyn Client>) {
    let gc = Arc::new(GarbageCollector {
        client,
        graph: Mutex::new(Graph::default()),
        queue: WorkQueue::new(),
    });
    let _watch = AbortOnDrop(tokio::spawn(gc.clone().watch_all()));
    let worker = gc.clone();
    run_workers(
        "garbage-collector",
        gc.queue.clone(),
        WORKERS,
        move |item| {
            let gc = worker.clone();
            async move {
                if let Some(key) = item.strip_prefix(ATTEMPT) {
                    gc.attempt_to_delete(key).await?;
                } else if let Some(key) = item.strip_prefix(OWNER) {
                    gc.process_deleting_owner(key).await?;
                }
                Ok(None)
            }
        },
    )
    .await;
}

impl GarbageCollector {
    fn graph(&self) -> std::sync::MutexGuard<'_, Graph> {
        self.graph.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The current state of a referenced object.
    fn get(&self, reference: &str) -> Option<KeyValue> {
        let (def, ns, name) = ObjectRef::parse(reference, &self.client.resources())?;
        self.client.get(def, ns, name).ok()
    }

    /// Feeds every change of every resource into the graph.
    async fn watch_all(self: Arc<Self>) {
        loop {
            let (items, _, mut watcher) = self.client.list_and_watch_all();
            *self.graph() = Graph::default();
            for kv in items {
                let event = Event {
                    kind: EventType::Added,
                    kv,
                    prev: None,
                };
                self.enqueue(&event);
            }
            loop {
                match watcher.next().await {
                    Ok(event) => self.enqueue(&event),
                    Err(e) => {
                        tracing::debug!(error = %e, "garbage collector watch ended; relisting");
                        break;
                    }
                }
            }
        }
    }

    fn enqueue(&self, event: &Event) {
        let work = observe(&mut self.graph(), event, &self.client.resources());
        for item in work {
            self.queue.add(item);
        }
    }

    fn owner_state(&self, dependent: &Value, reference: &Value) -> OwnerState {
        let (Some(api_version), Some(kind), Some(name), Some(uid)) = (
            reference["apiVersion"].as_str(),
            reference["kind"].as_str(),
            reference["name"].as_str(),
            reference["uid"].as_str(),
        ) else {
            return OwnerState::Dangling;
        };
        let Some(def) = self.client.resources().by_kind(api_version, kind) else {
            // A kind this server does not serve cannot be checked: leave it be.
            return OwnerState::Solid;
        };
        let ns = if def.namespaced {
            object::namespace(dependent)
        } else {
            None
        };
        match self.client.get(def, ns, name).ok() {
            Some(owner) if object::uid(&owner.value) == Some(uid) => {
                let waiting = object::is_deleting(&owner.value)
                    && object::finalizers(&owner.value)
                        .iter()
                        .any(|f| f == FOREGROUND_FINALIZER);
                if waiting {
                    OwnerState::Waiting
                } else {
                    OwnerState::Solid
                }
            }
            _ => OwnerState::Dangling,
        }
    }

    /// Checks a dependent against its owners: deletes it when none is left (or all
    /// wait for their dependents), drops references to gone owners when others remain.
    async fn attempt_to_delete(&self, key: &str) -> Result<(), ApiError> {
        let Some(kv) = self.get(key) else {
            return Ok(());
        };
        let obj = &*kv.value;
        let refs = owner_refs(obj);
        if refs.is_empty() || (object::is_deleting(obj) && !has_gc_finalizer(obj)) {
            return Ok(());
        }
        let Some(def) = def_of(obj, &self.client.resources()) else {
            return Ok(());
        };
        let mut solid = 0;
        let mut gone: Vec<String> = Vec::new();
        let mut waiting_blocked = false;
        for r in &refs {
            match self.owner_state(obj, r) {
                OwnerState::Solid => solid += 1,
                OwnerState::Dangling => gone.extend(r["uid"].as_str().map(str::to_string)),
                OwnerState::Waiting => {
                    gone.extend(r["uid"].as_str().map(str::to_string));
                    waiting_blocked |= r["blockOwnerDeletion"] == true;
                }
            }
        }
        if gone.is_empty() {
            return Ok(());
        }
        let ns = object::namespace(obj).map(str::to_string);
        let name = object::name(obj).to_string();
        if solid > 0 {
            tracing::debug!(object = %key, "removing references to owners being deleted or gone");
            return self
                .remove_owner_refs(def, ns.as_deref(), &name, &gone)
                .await;
        }
        if object::is_deleting(obj) {
            return Ok(());
        }
        let policy = if waiting_blocked
            || object::finalizers(obj)
                .iter()
                .any(|f| f == FOREGROUND_FINALIZER)
        {
            "Foreground"
        } else if object::finalizers(obj)
            .iter()
            .any(|f| f == ORPHAN_FINALIZER)
        {
            "Orphan"
        } else {
            "Background"
        };
        tracing::info!(object = %key, policy, "deleting object whose owners are gone");
        let opts = DeleteOptions {
            propagation: Some(policy.to_string()),
            precondition_uid: object::uid(obj).map(str::to_string),
            ..Default::default()
        };
        match self.client.delete(def, ns.as_deref(), &name, &opts).await {
            Err(e) if e.code == 404 || e.code == 409 => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn remove_owner_refs(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        uids: &[String],
    ) -> Result<(), ApiError> {
        let result = self
            .client
            .modify(def, ns, name, None, &|cur| {
                let mut cur = cur.clone();
                let kept: Vec<Value> = owner_refs(&cur)
                    .into_iter()
                    .filter(|r| {
                        !r["uid"]
                            .as_str()
                            .is_some_and(|u| uids.iter().any(|x| x == u))
                    })
                    .collect();
                let meta = object::meta_mut(&mut cur);
                if kept.is_empty() {
                    meta.remove("ownerReferences");
                } else {
                    meta.insert("ownerReferences".into(), Value::Array(kept));
                }
                Ok(cur)
            })
            .await;
        match result {
            Err(e) if e.code == 404 => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Carries out orphan or foreground deletion of an owner, then lets it go.
    async fn process_deleting_owner(&self, key: &str) -> Result<(), ApiError> {
        let Some(kv) = self.get(key) else {
            return Ok(());
        };
        let owner = &*kv.value;
        if !has_gc_finalizer(owner) {
            return Ok(());
        }
        let served = self.client.resources();
        let (Some(def), Some(uid)) = (def_of(owner, &served), object::uid(owner)) else {
            return Ok(());
        };
        let ns = object::namespace(owner).map(str::to_string);
        let name = object::name(owner).to_string();
        let dependents: Vec<KeyValue> = self
            .graph()
            .dependents_of(uid)
            .iter()
            .filter_map(|k| self.get(k))
            .filter(|d| owner_uids(&d.value).iter().any(|u| u == uid))
            .collect();
        let finalizers = object::finalizers(owner);
        if finalizers.iter().any(|f| f == ORPHAN_FINALIZER) {
            for dep in &dependents {
                let Some(dep_def) = def_of(&dep.value, &served) else {
                    continue;
                };
                self.remove_owner_refs(
                    dep_def,
                    object::namespace(&dep.value),
                    object::name(&dep.value),
                    &[uid.to_string()],
                )
                .await?;
            }
            tracing::info!(owner = %key, orphaned = dependents.len(), "orphaned dependents");
            return self
                .remove_finalizer(def, ns.as_deref(), &name, ORPHAN_FINALIZER)
                .await;
        }
        // Foreground: dependents go first; the owner waits for the blocking ones.
        let mut blocking = 0;
        for dep in &dependents {
            let blocks = owner_refs(&dep.value)
                .iter()
                .any(|r| r["uid"] == uid && r["blockOwnerDeletion"] == true);
            if blocks {
                blocking += 1;
            }
            if let Some(dep_ref) = ObjectRef::of(&dep.value, &served) {
                if !object::is_deleting(&dep.value) {
                    self.queue.add(format!("{ATTEMPT}{dep_ref}"));
                }
            }
        }
        if blocking > 0 {
            tracing::debug!(owner = %key, blocking, "waiting for dependents");
            return Ok(());
        }
        self.remove_finalizer(def, ns.as_deref(), &name, FOREGROUND_FINALIZER)
            .await
    }

    async fn remove_finalizer(
        &self,
        def: &ResourceDef,
        ns: Option<&str>,
        name: &str,
        finalizer: &str,
    ) -> Result<(), ApiError> {
        let result = self
            .client
            .modify(def, ns, name, None, &|cur| {
                let mut cur = cur.clone();
                let kept: Vec<String> = object::finalizers(&cur)
                    .into_iter()
                    .filter(|f| f != finalizer)
                    .collect();
                let meta = object::meta_mut(&mut cur);
                if kept.is_empty() {
                    meta.remove("finalizers");
                } else {
                    meta.insert("finalizers".into(), serde_json::json!(kept));
                }
                Ok(cur)
            })
            .await;
        match result {
            Err(e) if e.code == 404 => Ok(()),
            other => other.map(|_| ()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::resources;
    use crate::apiserver::registry::{Registry, WriteOptions};
    use crate::controllers::testutil::{self, wait_for};
    use serde_json::json;
    use std::time::Duration;

    fn rs() -> &'static ResourceDef {
        resources::by_plural("apps", "v1", "replicasets").unwrap()
    }

    fn cms() -> &'static ResourceDef {
        resources::by_plural("", "v1", "configmaps").unwrap()
    }

    async fn owner(registry: &Registry, name: &str) -> Value {
        let body = json!({"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": name, "namespace": "default"},
            "spec": {"selector": {"matchLabels": {"app": name}},
                     "template": {"metadata": {"labels": {"app": name}}, "spec": {"containers": [{"name": "c", "image": "busybox"}]}}}});
        registry
            .create(rs(), Some("default"), body, &WriteOptions::default())
            .await
            .unwrap()
            .kv
            .value
            .as_ref()
            .clone()
    }

    async fn dependent(registry: &Registry, name: &str, owner: &Value, block: bool) {
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": name, "namespace": "default", "ownerReferences": [{
                "apiVersion": "apps/v1", "kind": "ReplicaSet", "name": object::name(owner),
                "uid": object::uid(owner), "blockOwnerDeletion": block, "controller": true}]}});
        registry
            .create(cms(), Some("default"), body, &WriteOptions::default())
            .await
            .unwrap();
    }

    fn exists(registry: &Registry, def: &ResourceDef, name: &str) -> bool {
        registry.get(def, Some("default"), name).is_ok()
    }

    #[test]
    fn events_are_left_out_of_the_graph_as_upstream() {
        let served = resources::Catalog::new().snapshot();
        // The prefixes are the event kinds' own (`ResourceDef::prefix`).
        for (group, version) in [("", "v1"), ("events.k8s.io", "v1")] {
            let def = resources::by_plural(group, version, "events").unwrap();
            assert!(IGNORED_PREFIXES.contains(&def.prefix().as_str()));
        }
        let owner_uid = "5df3fcee-97ec-4602-b1cd-1a6dfcc3aaaa";
        let event = |key: &str, kind: &str, api_version: &str| Event {
            kind: EventType::Added,
            kv: crate::store::make_kv(
                key,
                json!({"apiVersion": api_version, "kind": kind,
                    "metadata": {"name": "e", "namespace": "default", "uid": "u-1",
                        "ownerReferences": [{"apiVersion": "v1", "kind": "Pod", "name": "p", "uid": owner_uid}]}}),
                1,
                1,
            ),
            prev: None,
        };
        let mut graph = Graph::default();
        for (key, kind, api_version) in [
            ("/core/events/default/e", "Event", "v1"),
            ("/core/events/default/e", "Event", "events.k8s.io/v1"),
        ] {
            assert!(observe(&mut graph, &event(key, kind, api_version), &served).is_empty());
        }
        assert!(graph.owners_of.is_empty() && graph.uid_to_key.is_empty());
        assert!(graph.dependents_of(owner_uid).is_empty());
        // Anything else with the same owner reference is tracked and checked.
        let work = observe(
            &mut graph,
            &event("/core/configmaps/default/e", "ConfigMap", "v1"),
            &served,
        );
        assert_eq!(work, vec!["attempt:v1|ConfigMap|default|e".to_string()]);
        assert_eq!(graph.dependents_of(owner_uid).len(), 1);
    }

    async fn delete_with(registry: &Registry, name: &str, policy: Option<&str>) {
        let opts = DeleteOptions {
            propagation: policy.map(str::to_string),
            ..Default::default()
        };
        registry
            .delete(rs(), Some("default"), name, &opts)
            .await
            .unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn background_deletion_removes_dependents_after_the_owner() {
        let registry = testutil::registry().await;
        let task = tokio::spawn(run(registry.clone()));
        let o = owner(&registry, "bg").await;
        dependent(&registry, "bg-1", &o, false).await;
        dependent(&registry, "bg-2", &o, true).await;
        delete_with(&registry, "bg", Some("Background")).await;
        assert!(!exists(&registry, rs(), "bg"), "the owner goes at once");
        wait_for("dependents deleted", Duration::from_secs(2), || {
            !exists(&registry, cms(), "bg-1") && !exists(&registry, cms(), "bg-2")
        })
        .await;
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn foreground_deletion_removes_dependents_first() {
        let registry = testutil::registry().await;
        let o = owner(&registry, "fg").await;
        dependent(&registry, "fg-1", &o, true).await;
        delete_with(&registry, "fg", Some("Foreground")).await;
        let pending = registry.get(rs(), Some("default"), "fg").unwrap();
        assert!(object::is_deleting(&pending.value));
        assert_eq!(object::finalizers(&pending.value), [FOREGROUND_FINALIZER]);
        // Hold the dependent with a finalizer to see the owner wait for it.
        registry
            .modify(
                cms(),
                Some("default"),
                "fg-1",
                None,
                &WriteOptions::default(),
                &|c| {
                    let mut c = c.clone();
                    c["metadata"]["finalizers"] = json!(["test/hold"]);
                    Ok(c)
                },
            )
            .await
            .unwrap();
        let task = tokio::spawn(run(registry.clone()));
        wait_for("dependent deleting", Duration::from_secs(2), || {
            registry
                .get(cms(), Some("default"), "fg-1")
                .is_ok_and(|d| object::is_deleting(&d.value))
        })
        .await;
        // On the paused clock every task runs until idle before this sleep ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(
            exists(&registry, rs(), "fg"),
            "owner waits for its blocking dependent"
        );
        registry
            .modify(
                cms(),
                Some("default"),
                "fg-1",
                None,
                &WriteOptions::default(),
                &|c| {
                    let mut c = c.clone();
                    c["metadata"]["finalizers"] = json!([]);
                    Ok(c)
                },
            )
            .await
            .unwrap();
        wait_for("owner deleted", Duration::from_secs(2), || {
            !exists(&registry, rs(), "fg") && !exists(&registry, cms(), "fg-1")
        })
        .await;
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn orphan_deletion_keeps_dependents_without_the_reference() {
        let registry = testutil::registry().await;
        let task = tokio::spawn(run(registry.clone()));
        let o = owner(&registry, "or").await;
        dependent(&registry, "or-1", &o, true).await;
        delete_with(&registry, "or", Some("Orphan")).await;
        wait_for("owner deleted", Duration::from_secs(2), || {
            !exists(&registry, rs(), "or")
        })
        .await;
        // On the paused clock every task runs until idle before this sleep ends.
        tokio::time::sleep(Duration::from_millis(100)).await;
        let dep = registry
            .get(cms(), Some("default"), "or-1")
            .expect("orphan kept");
        assert!(owner_refs(&dep.value).is_empty());
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn dependents_of_missing_owners_are_deleted_and_others_keep_live_owners() {
        let registry = testutil::registry().await;
        let live = owner(&registry, "live").await;
        let ghost = json!({"metadata": {"name": "ghost", "uid": "no-such-uid"}});
        dependent(&registry, "orphaned", &ghost, false).await;
        dependent(&registry, "kept", &live, false).await;
        // Two owners, one gone: only the reference to the gone one is dropped.
        let body = json!({"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": "shared", "namespace": "default", "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "live", "uid": object::uid(&live)},
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "ghost", "uid": "no-such-uid"}]}});
        registry
            .create(cms(), Some("default"), body, &WriteOptions::default())
            .await
            .unwrap();
        let task = tokio::spawn(run(registry.clone()));
        wait_for("orphaned dependent deleted", Duration::from_secs(2), || {
            !exists(&registry, cms(), "orphaned")
        })
        .await;
        wait_for("dangling reference dropped", Duration::from_secs(2), || {
            registry
                .get(cms(), Some("default"), "shared")
                .is_ok_and(|d| owner_refs(&d.value).len() == 1)
        })
        .await;
        assert!(exists(&registry, cms(), "kept"));
        task.abort();
    }

    #[tokio::test(start_paused = true)]
    async fn explicit_policies_replace_each_other_and_background_finishes_deletion() {
        let registry = testutil::registry().await;
        let o = owner(&registry, "sw").await;
        dependent(&registry, "sw-1", &o, true).await;
        delete_with(&registry, "sw", Some("Orphan")).await;
        delete_with(&registry, "sw", Some("Foreground")).await;
        let pending = registry.get(rs(), Some("default"), "sw").unwrap();
        assert_eq!(object::finalizers(&pending.value), [FOREGROUND_FINALIZER]);
        delete_with(&registry, "sw", Some("Background")).await;
        assert!(!exists(&registry, rs(), "sw"));
        // Without dependents there is nothing to wait for.
        owner(&registry, "alone").await;
        delete_with(&registry, "alone", Some("Foreground")).await;
        assert!(!exists(&registry, rs(), "alone"));
    }
}
