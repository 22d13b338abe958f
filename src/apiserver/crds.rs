//! Serving CustomResourceDefinitions (upstream's naming, establishing and finalizer
//! controllers, and the apiextensions handler's resource table): keeps the registry's
//! catalog in step with the stored CRDs, writes their status (`NamesAccepted`,
//! `Established`, `acceptedNames`, `storedVersions`) and, when one is deleted, removes
//! its objects before the CRD goes.
//!
//! Every server runs this over its own watch of the CRDs, so each serves what is stored.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::registry::{
    set_crd_condition, DeleteOptions, Registry, WriteOptions, CLEANUP_FINALIZER,
};
use crate::api::custom::CustomResource;
use crate::api::object;
use crate::api::resources::{self, ResourceDef};
use crate::store::EventType;

/// How often a CRD being deleted is looked at again while its objects remain.
const CLEANUP_RECHECK: Duration = Duration::from_secs(1);

/// The stored CRDs and the resource definitions made of them.
///
/// Definitions are `&'static` like the built-in ones (handlers, watches and controllers
/// hold them freely): each distinct (CRD, version, spec) is leaked once and reused, so a
/// CRD that does not change costs nothing more, and each change of a CRD's spec costs
/// the size of its definition.
#[derive(Default)]
pub struct CrdServer {
    crds: BTreeMap<String, Stored>,
    interned: HashMap<String, &'static ResourceDef>,
}

/// One stored CRD and the digest of what its definitions are made of (uid, spec,
/// whether it is being deleted), taken once when it is read: a pass over every CRD
/// then costs no serialization of their (often large) schemas.
struct Stored {
    crd: Value,
    digest: String,
}

impl Stored {
    fn new(crd: Value) -> Stored {
        let mut hasher = Sha256::new();
        hasher.update(object::uid(&crd).unwrap_or("").as_bytes());
        hasher.update(serde_json::to_vec(&crd["spec"]).unwrap_or_default());
        hasher.update([u8::from(object::is_deleting(&crd))]);
        let digest = hex::encode(hasher.finalize());
        Stored { crd, digest }
    }
}

/// Most watch events taken in one pass: a burst of CRDs is served together, and a
/// long burst still lets the statuses of the first ones be written.
const EVENTS_PER_PASS: usize = 256;

fn crd_def() -> &'static ResourceDef {
    resources::by_plural("apiextensions.k8s.io", "v1", "customresourcedefinitions").expect("served")
}

fn leak(s: &str) -> &'static str {
    Box::leak(s.to_string().into_boxed_str())
}

fn leak_list(items: Vec<&'static str>) -> &'static [&'static str] {
    Box::leak(items.into_boxed_slice())
}

fn strings(v: &Value) -> Vec<&'static str> {
    v.as_array()
        .map(|a| a.iter().filter_map(Value::as_str).map(leak).collect())
        .unwrap_or_default()
}

/// Whether two CRDs of one group claim a name the other uses (upstream's naming
/// controller: plural, singular, kind, listKind and short names must be unique per group).
fn names_clash(a: &Value, b: &Value) -> Option<String> {
    if a["spec"]["group"] != b["spec"]["group"] {
        return None;
    }
    let names = |crd: &Value| -> Vec<String> {
        let n = &crd["spec"]["names"];
        let short = n["shortNames"].as_array().into_iter().flatten();
        [&n["plural"], &n["singular"]]
            .into_iter()
            .chain(short)
            .filter_map(Value::as_str)
            .filter(|v| !v.is_empty())
            .map(String::from)
            .collect()
    };
    let kinds = |crd: &Value| -> Vec<String> {
        let n = &crd["spec"]["names"];
        [&n["kind"], &n["listKind"]]
            .iter()
            .filter_map(|v| v.as_str())
            .map(String::from)
            .collect()
    };
    let theirs = names(b);
    if let Some(name) = names(a).into_iter().find(|name| theirs.contains(name)) {
        return Some(format!("\"{name}\" is already in use"));
    }
    let their_kinds = kinds(b);
    kinds(a)
        .into_iter()
        .find(|k| their_kinds.contains(k))
        .map(|k| format!("\"{k}\" is already in use"))
}

impl CrdServer {
    pub fn new() -> CrdServer {
        CrdServer::default()
    }

    /// Reads every stored CRD and serves what they define (at start, before the API
    /// answers, so custom resources are served from the first request on).
    pub fn load(&mut self, registry: &Registry) {
        let def = crd_def();
        for kv in registry.list(def, None, None, 0, &|_| true).items {
            self.crds
                .insert(kv.key.to_string(), Stored::new((*kv.value).clone()));
        }
        self.publish(registry);
    }

    /// Which CRDs' names are accepted: the older of two clashing CRDs keeps its names
    /// (by creation time, then name), the younger one is refused.
    fn accepted(&self) -> BTreeMap<String, Result<(), String>> {
        let mut order: Vec<(&String, &Value)> =
            self.crds.iter().map(|(key, s)| (key, &s.crd)).collect();
        order.sort_by_key(|(key, crd)| {
            (
                crd["metadata"]["creationTimestamp"]
                    .as_str()
                    .unwrap_or("")
                    .to_string(),
                (*key).clone(),
            )
        });
        let mut winners: Vec<&Value> = Vec::new();
        let mut out = BTreeMap::new();
        for (key, crd) in order {
            match winners.iter().find_map(|w| names_clash(crd, w)) {
                Some(clash) => {
                    out.insert(key.clone(), Err(clash));
                }
                None => {
                    winners.push(crd);
                    out.insert(key.clone(), Ok(()));
                }
            }
        }
        out
    }

    /// The resource definitions of one CRD (`digest` from [`Stored`]): one per served
    /// version.
    fn definitions(
        interned: &mut HashMap<String, &'static ResourceDef>,
        crd: &Value,
        digest: &str,
    ) -> Vec<&'static ResourceDef> {
        let spec = &crd["spec"];
        let mut out = Vec::new();
        for version in spec["versions"].as_array().into_iter().flatten() {
            let Some(name) = version["name"].as_str() else {
                continue;
            };
            if version["served"] != true {
                continue;
            }
            let key = format!("{digest}/{name}");
            if let Some(def) = interned.get(&key) {
                out.push(*def);
                continue;
            }
            let Some(custom) = CustomResource::from_crd(crd, name) else {
                continue;
            };
            let mut subresources = Vec::new();
            if version["subresources"]["status"].is_object() {
                subresources.push("status");
            }
            if version["subresources"]["scale"].is_object() {
                subresources.push("scale");
            }
            let names = &spec["names"];
            let def: &'static ResourceDef = Box::leak(Box::new(ResourceDef {
                group: leak(spec["group"].as_str().unwrap_or("")),
                version: leak(name),
                kind: leak(names["kind"].as_str().unwrap_or("")),
                plural: leak(names["plural"].as_str().unwrap_or("")),
                singular: leak(names["singular"].as_str().unwrap_or("")),
                namespaced: spec["scope"] == "Namespaced",
                short_names: leak_list(strings(&names["shortNames"])),
                categories: leak_list(strings(&names["categories"])),
                subresources: leak_list(subresources),
                roundtrip: resources::untyped,
                custom: Some(Box::leak(Box::new(custom))),
            }));
            interned.insert(key, def);
            out.push(def);
        }
        out
    }

    /// Serves the custom resources of every CRD whose names are accepted.
    fn publish(&mut self, registry: &Registry) {
        let accepted = self.accepted();
        let mut defs = Vec::new();
        for (key, stored) in &self.crds {
            if matches!(accepted.get(key), Some(Ok(()))) {
                defs.extend(CrdServer::definitions(
                    &mut self.interned,
                    &stored.crd,
                    &stored.digest,
                ));
            }
        }
        registry.catalog.set_custom(defs);
    }

    /// The status a CRD should have now (only its status is copied: a CRD's schema may
    /// be megabytes, and every CRD is looked at on every pass).
    fn desired_status(crd: &Value, accepted: &Result<(), String>) -> Value {
        let mut want = json!({ "status": crd["status"].clone() });
        if !want["status"].is_object() {
            want["status"] = json!({});
        }
        match accepted {
            Ok(()) => {
                let mut names = crd["spec"]["names"].clone();
                if let Some(n) = names.as_object_mut() {
                    n.retain(|_, v| !v.is_null());
                }
                want["status"]["acceptedNames"] = names;
                set_crd_condition(
                    &mut want,
                    "NamesAccepted",
                    "True",
                    "NoConflicts",
                    "no conflicts found",
                );
                set_crd_condition(
                    &mut want,
                    "Established",
                    "True",
                    "InitialNamesAccepted",
                    "the initial names have been accepted",
                );
            }
            Err(clash) => {
                set_crd_condition(&mut want, "NamesAccepted", "False", "AlreadyInUse", clash);
                set_crd_condition(
                    &mut want,
                    "Established",
                    "False",
                    "NotAccepted",
                    "not all names are accepted",
                );
            }
        }
        let mut stored: Vec<Value> = want["status"]["storedVersions"]
            .as_array()
            .cloned()
            .unwrap_or_default();
        if let Some(storage) = crd["spec"]["versions"]
            .as_array()
            .and_then(|vs| vs.iter().find(|v| v["storage"] == true))
            .map(|v| v["name"].clone())
        {
            if !stored.contains(&storage) {
                stored.push(storage);
            }
        }
        want["status"]["storedVersions"] = json!(stored);
        want["status"].take()
    }

    /// Writes the status of the first CRD whose status is not what it should be: true
    /// when one was written, false when every status is right (or the write failed).
    /// One at a time, so that CRDs created meanwhile are served before the next write
    /// (a burst of big CRDs takes a while to write).
    async fn write_a_status(&self, registry: &Registry) -> bool {
        let accepted = self.accepted();
        let stale = self.crds.iter().find_map(|(key, stored)| {
            let verdict = accepted.get(key)?;
            (CrdServer::desired_status(&stored.crd, verdict) != stored.crd["status"])
                .then_some((object::name(&stored.crd).to_string(), verdict))
        });
        let Some((name, verdict)) = stale else {
            return false;
        };
        let result = registry
            .modify(
                crd_def(),
                None,
                &name,
                Some("status"),
                &WriteOptions::default(),
                &|cur| {
                    let mut cur = cur.clone();
                    cur["status"] = CrdServer::desired_status(&cur, verdict);
                    Ok(cur)
                },
            )
            .await;
        match result {
            Ok(_) => true,
            Err(e) => {
                if e.code != 404 {
                    tracing::warn!(crd = %name, error = %e, "crd status not written");
                }
                // Tried again on the next change rather than at once.
                false
            }
        }
    }

    /// Deletes the objects of CRDs being deleted; removes the finalizer of those whose
    /// objects are gone. True while objects remain.
    async fn clean_up(&self, registry: &Registry) -> bool {
        let mut pending = false;
        let served = registry.resources();
        for crd in self.crds.values().map(|s| &s.crd) {
            if !object::is_deleting(crd)
                || !object::finalizers(crd)
                    .iter()
                    .any(|f| f == CLEANUP_FINALIZER)
            {
                continue;
            }
            let name = object::name(crd).to_string();
            let group = crd["spec"]["group"].as_str().unwrap_or("");
            let plural = crd["spec"]["names"]["plural"].as_str().unwrap_or("");
            // Every version stores under the same prefix: one served definition reaches all.
            let def = served.iter().find(|d| {
                d.custom.is_some_and(|c| c.crd_name == name)
                    && d.group == group
                    && d.plural == plural
            });
            let mut remaining = 0;
            if let Some(def) = def {
                for kv in registry.list(def, None, None, 0, &|_| true).items {
                    remaining += 1;
                    if object::is_deleting(&kv.value) {
                        continue;
                    }
                    let ns = object::namespace(&kv.value).map(String::from);
                    let obj_name = object::name(&kv.value).to_string();
                    if let Err(e) = registry
                        .delete(def, ns.as_deref(), &obj_name, &DeleteOptions::default())
                        .await
                    {
                        if e.code != 404 {
                            tracing::warn!(crd = %name, object = %obj_name, error = %e, "custom object not deleted");
                        }
                    }
                }
            }
            if remaining > 0 {
                pending = true;
                continue;
            }
            let result = registry
                .modify(
                    crd_def(),
                    None,
                    &name,
                    None,
                    &WriteOptions::default(),
                    &|cur| {
                        let mut cur = cur.clone();
                        let finalizers: Vec<Value> = object::finalizers(&cur)
                            .into_iter()
                            .filter(|f| f != CLEANUP_FINALIZER)
                            .map(Value::String)
                            .collect();
                        cur["metadata"]["finalizers"] = json!(finalizers);
                        Ok(cur)
                    },
                )
                .await;
            if let Err(e) = result {
                if e.code != 404 {
                    tracing::warn!(crd = %name, error = %e, "crd finalizer not removed");
                }
            }
        }
        pending
    }

    /// Follows the stored CRDs for good: serves them, writes their status, cleans up
    /// after deleted ones. What the watch delivers is served before the next status
    /// write, so a CRD is in discovery moments after it is stored, however many others
    /// a manifest creates with it (kubectl applies the next file at once).
    pub async fn run(mut self, registry: Arc<Registry>) {
        let prefix = crd_def().prefix();
        loop {
            let (items, _, mut watcher) = registry.snapshot_and_watch(&prefix);
            self.crds = items
                .into_iter()
                .map(|kv| (kv.key.to_string(), Stored::new((*kv.value).clone())))
                .collect();
            self.publish(&registry);
            'watch: loop {
                let wrote = self.write_a_status(&registry).await;
                let pending = self.clean_up(&registry).await;
                let first = if wrote {
                    None
                } else if pending {
                    tokio::time::timeout(CLEANUP_RECHECK, watcher.next())
                        .await
                        .ok()
                } else {
                    Some(watcher.next().await)
                };
                let waiting = std::iter::from_fn(|| watcher.try_next());
                let mut changed = false;
                for event in first.into_iter().chain(waiting).take(EVENTS_PER_PASS) {
                    match event {
                        Ok(event) => {
                            changed = true;
                            match event.kind {
                                EventType::Deleted => {
                                    self.crds.remove(&*event.kv.key);
                                }
                                _ => {
                                    self.crds.insert(
                                        event.kv.key.to_string(),
                                        Stored::new((*event.kv.value).clone()),
                                    );
                                }
                            }
                        }
                        Err(e) => {
                            tracing::info!(error = %e, "crd watch ended; relisting");
                            break 'watch;
                        }
                    }
                }
                if changed {
                    self.publish(&registry);
                }
            }
        }
    }
}
