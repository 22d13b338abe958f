//! What the watch cache holds per object, counted by a counting global allocator: a
//! pending pod as the API stores it, kept as JSON (cold), parsed on demand, and released
//! when the last reader drops it; the history and an informer's map beside it.
//!
//! One test in this binary: the allocator counts every thread's allocations.

use std::alloc::{GlobalAlloc, Layout, System};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicIsize, Ordering};

use orc::store::cache::{self, Cache};
use orc::store::{make_kv, Event, EventType, KeyValue, ListFilter};
use serde_json::{json, Value};

/// Live heap bytes (what the program asked for; malloc's headers not included).
static LIVE: AtomicIsize = AtomicIsize::new(0);

struct Counting;

// SAFETY: forwards to the system allocator unchanged and only counts sizes.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        LIVE.fetch_add(layout.size() as isize, Ordering::Relaxed);
        System.alloc(layout)
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        System.dealloc(ptr, layout)
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        LIVE.fetch_add(
            new_size as isize - layout.size() as isize,
            Ordering::Relaxed,
        );
        System.realloc(ptr, layout, new_size)
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

const PODS: usize = 2000;

/// A pending pod as the API stores it: defaults, the service-account volume, the
/// scheduler's condition and managedFields of two writers.
fn pending_pod(i: usize) -> Value {
    let name = format!("bench-{i:05}");
    json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {
            "name": name, "namespace": "default",
            "uid": format!("6a0c3e1e-5b7d-4f7e-9a43-{i:012}"),
            "creationTimestamp": "2026-12-04T18:31:05Z",
            "labels": {"app": "bench"},
            "managedFields": [
                {"manager": "bench", "operation": "Update", "apiVersion": "v1",
                 "time": "2026-12-04T18:31:05Z", "fieldsType": "FieldsV1",
                 "fieldsV1": {"f:metadata": {"f:labels": {".": {}, "f:app": {}}},
                   "f:spec": {"f:containers": {"k:{\"name\":\"c\"}": {".": {}, "f:command": {},
                     "f:image": {}, "f:imagePullPolicy": {}, "f:name": {}, "f:resources": {},
                     "f:terminationMessagePath": {}, "f:terminationMessagePolicy": {}}},
                   "f:dnsPolicy": {}, "f:enableServiceLinks": {}, "f:restartPolicy": {},
                   "f:schedulerName": {}, "f:securityContext": {},
                   "f:terminationGracePeriodSeconds": {}}}},
                {"manager": "orc-scheduler", "operation": "Update", "apiVersion": "v1",
                 "time": "2026-12-04T18:31:05Z", "fieldsType": "FieldsV1", "subresource": "status",
                 "fieldsV1": {"f:status": {"f:conditions": {".": {},
                   "k:{\"type\":\"PodScheduled\"}": {".": {}, "f:lastProbeTime": {},
                     "f:lastTransitionTime": {}, "f:message": {}, "f:reason": {}, "f:status": {},
                     "f:type": {}}}}}}
            ]
        },
        "spec": {
            "volumes": [{"name": "kube-api-access-x7k2p", "projected": {"sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace",
                  "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}],
                "defaultMode": 420}}],
            "containers": [{"name": "c", "image": "docker.io/library/busybox:test",
                "command": ["sleep", "3600"], "resources": {},
                "volumeMounts": [{"name": "kube-api-access-x7k2p", "readOnly": true,
                  "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}],
                "terminationMessagePath": "/dev/termination-log",
                "terminationMessagePolicy": "File", "imagePullPolicy": "IfNotPresent"}],
            "restartPolicy": "Always", "terminationGracePeriodSeconds": 30,
            "dnsPolicy": "ClusterFirst", "serviceAccountName": "default",
            "serviceAccount": "default", "securityContext": {},
            "schedulerName": "default-scheduler",
            "tolerations": [
                {"key": "node.kubernetes.io/not-ready", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300},
                {"key": "node.kubernetes.io/unreachable", "operator": "Exists",
                 "effect": "NoExecute", "tolerationSeconds": 300}],
            "priority": 0, "enableServiceLinks": true,
            "preemptionPolicy": "PreemptLowerPriority"
        },
        "status": {"phase": "Pending", "qosClass": "BestEffort", "conditions": [
            {"type": "PodScheduled", "status": "False", "lastProbeTime": null,
             "lastTransitionTime": "2026-12-04T18:31:05Z", "reason": "Unschedulable",
             "message": "0/0 nodes are available: no nodes available to schedule pods."}]}
    })
}

fn key(i: usize) -> String {
    format!("/core/pods/default/bench-{i:05}")
}

fn per_pod(bytes: isize) -> isize {
    bytes / PODS as isize
}

#[test]
fn cached_pods_cost_about_their_json_and_parsed_forms_are_released() {
    let all: ListFilter = &|_| true;
    let json_bytes = make_kv(&key(0), pending_pod(0), 1, 1).raw.len() as isize;

    // Written through the cache as the datastore does (no watcher: the live events go).
    let start = live();
    let cache = Cache::new(vec![], vec![], 0, 0);
    let events: Vec<Event> = (0..PODS)
        .map(|i| Event {
            kind: EventType::Added,
            kv: make_kv(&key(i), pending_pod(i), i as u64 + 1, i as u64 + 1),
            prev: None,
        })
        .collect();
    cache.apply(events);
    let with_recent = live() - start;
    // The cache keeps its newest writes parsed (a bounded set): push the pods out of it
    // with as many tiny objects (their own cost measured apart) to count what every
    // cached pod costs.
    let tiny = || -> Vec<Event> {
        (0..cache::RECENT_PARSED)
            .map(|i| Event {
                kind: EventType::Added,
                kv: make_kv(&format!("/x/{i}"), json!({}), (PODS + i) as u64 + 1, 1),
                prev: None,
            })
            .collect()
    };
    let tiny_cost = {
        let other = Cache::new(vec![], vec![], 0, 0);
        let before = live();
        other.apply(tiny());
        live() - before
    };
    cache.apply(tiny());
    let cached = live() - start - tiny_cost;
    let recent_held = with_recent - cached;
    let (history_events, _) = cache.history_size();

    // Every object read and held (a list whose items are all parsed).
    let before_read = live();
    let items = cache.list("/core/pods/", None, 0, all).items;
    let names: usize = items
        .iter()
        .map(|kv| kv.value["metadata"]["name"].as_str().unwrap().len())
        .sum();
    assert_eq!(names, PODS * "bench-00000".len());
    let parsed = live() - before_read;
    drop(items);
    let after_release = live() - before_read;

    // A selector list: what selectors read (labels, the pod's selectable fields) is
    // extracted once per object and kept with its JSON; the parse made for it is not.
    let before_extract = live();
    let value_of = |obj: &Value, field: &str| match field {
        "metadata.name" | "metadata.namespace" => String::new(),
        _ => orc::api::selector::field_value(obj, field),
    };
    let pods = orc::api::resources::by_plural("", "v1", "pods").expect("pods are served");
    let pod_fields = orc::apiserver::registry::strategy_for(pods).selectable_fields();
    let selected: ListFilter = &|kv| {
        kv.value
            .selectable(pod_fields, value_of)
            .is_some_and(|s| s.label("app") == Some("bench") && s.field("spec.nodeName").is_empty())
    };
    assert_eq!(
        cache.list("/core/pods/", None, 0, selected).items.len(),
        PODS
    );
    let extracted = live() - before_extract;

    // An informer's map: cold copies by namespace/name.
    let before_map = live();
    let map: BTreeMap<String, KeyValue> = cache
        .list("/core/pods/", None, 0, all)
        .items
        .into_iter()
        .map(|kv| (kv.key[11..].to_string(), kv))
        .collect();
    let informer = live() - before_map;

    println!(
        "pending pod: {json_bytes} bytes of JSON; per pod: cache with {history_events} history events \
         {} B, parsed and held {} B, after the readers dropped it {} B, selector values extracted {} B, \
         an informer's entry {} B; the newest {} writes kept parsed: {} KB",
        per_pod(cached),
        per_pod(parsed),
        per_pod(after_release),
        per_pod(extracted),
        per_pod(informer),
        cache::RECENT_PARSED,
        recent_held / 1024
    );
    // What selectors read is small beside the JSON.
    assert!(
        per_pod(extracted) < 512,
        "extraction costs {} B per pod",
        per_pod(extracted)
    );
    // The newest writes kept parsed: a bounded amount (~256 parsed pods).
    assert!(
        recent_held < cache::RECENT_PARSED as isize * 10 * json_bytes,
        "{recent_held} B kept parsed"
    );
    // The cache (objects and history) holds about the JSON, not the parsed form.
    assert!(
        per_pod(cached) < 2 * json_bytes,
        "cache costs {} B per pod for {json_bytes} B of JSON",
        per_pod(cached)
    );
    // Parsed, the same pod is several times its JSON: what the cache no longer holds.
    assert!(per_pod(parsed) > 3 * json_bytes);
    // Released when its readers are done.
    assert!(
        after_release < 64 * 1024,
        "{after_release} bytes still held after the list was dropped"
    );
    // An informer keeps handles, not copies.
    assert!(per_pod(informer) < 256, "{} B", per_pod(informer));
    drop(map);
    drop(cache);
}
