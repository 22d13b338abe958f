//! The etcd datastore against a real, private etcd cluster (Debian's `etcd`): the same
//! behaviours the SQLite store's tests check, plus what only a shared, replicated
//! datastore has (two stores on one etcd, a member down, a broken watch, compaction).

mod support;

use std::sync::Arc;
use std::time::Duration;

use orc::store::cache::HistoryLimits;
use orc::store::encryption::Identity;
use orc::store::etcd::{EtcdConfig, EtcdStore, MARKER_KEY};
use orc::store::{EventType, Store, StoreError, Watcher};
use serde_json::{json, Value};
use support::etcd::EtcdCluster;

const CA: &str = "0123456789abcdef";
/// Longest a test waits for an event.
const EVENT_WITHIN: Duration = Duration::from_secs(10);

fn config(cluster: &EtcdCluster) -> EtcdConfig {
    EtcdConfig::parse(
        &cluster.endpoint(),
        None,
        None,
        None,
        Duration::from_secs(10),
    )
    .expect("endpoint parses")
}

async fn open(cluster: &EtcdCluster) -> EtcdStore {
    EtcdStore::open(
        config(cluster),
        Arc::new(Identity),
        HistoryLimits::default(),
        CA,
    )
    .await
    .expect("open the etcd store")
}

fn obj(name: &str, data: &str) -> Value {
    json!({"metadata": {"name": name}, "data": {"k": data}})
}

async fn next(w: &mut Watcher) -> Arc<orc::store::Event> {
    tokio::time::timeout(EVENT_WITHIN, w.next())
        .await
        .expect("no event in time")
        .expect("watch ended")
}

#[tokio::test]
async fn writes_get_etcd_revisions_and_preconditions_answer_as_on_sqlite() {
    let cluster = EtcdCluster::start(1);
    let store = open(&cluster).await;
    let a = store.create("/t/a", obj("a", "1")).await.unwrap();
    let b = store.create("/t/b", obj("b", "1")).await.unwrap();
    assert!(a.mod_revision < b.mod_revision);
    assert_eq!(
        a.value["metadata"]["resourceVersion"],
        a.mod_revision.to_string()
    );
    // Read-your-writes: the cache has it as soon as the write answered.
    assert_eq!(store.get("/t/a").unwrap().mod_revision, a.mod_revision);

    let err = store.create("/t/a", obj("a", "x")).await.unwrap_err();
    assert!(matches!(err, StoreError::AlreadyExists { .. }), "{err}");

    let a2 = store
        .update("/t/a", obj("a", "2"), Some(a.mod_revision))
        .await
        .unwrap();
    assert_eq!(a2.create_revision, a.mod_revision);
    assert!(a2.mod_revision > b.mod_revision);
    let err = store
        .update("/t/a", obj("a", "3"), Some(a.mod_revision))
        .await
        .unwrap_err();
    match err {
        StoreError::Conflict {
            expected, current, ..
        } => {
            assert_eq!(expected, a.mod_revision);
            assert_eq!(current, a2.mod_revision);
        }
        other => panic!("expected a conflict, got {other}"),
    }
    assert_eq!(store.get("/t/a").unwrap().value["data"]["k"], "2");
    let err = store
        .update("/t/missing", obj("m", "1"), None)
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    let err = store.delete("/t/missing", None).await.unwrap_err();
    assert!(matches!(err, StoreError::NotFound { .. }), "{err}");
    let err = store
        .delete("/t/b", Some(b.mod_revision + 100))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");

    let d = store.delete("/t/b", Some(b.mod_revision)).await.unwrap();
    assert!(d.mod_revision > a2.mod_revision);
    assert_eq!(d.value["data"]["k"], "1", "the last state is answered");
    assert_eq!(
        d.value["metadata"]["resourceVersion"],
        d.mod_revision.to_string()
    );
    assert!(store.get("/t/b").is_none());
    assert_eq!(store.revision(), d.mod_revision);

    // etcdctl users see the upstream layout, the JSON without resourceVersion, and the
    // cluster marker.
    let out = cluster.etcdctl(&["get", "--prefix", "/registry/", "--keys-only"]);
    let keys = String::from_utf8_lossy(&out.stdout);
    assert!(keys.contains("/registry/t/a"), "{keys}");
    assert!(!keys.contains("/registry/registry"), "{keys}");
    assert!(keys.contains(MARKER_KEY), "{keys}");
    let out = cluster.etcdctl(&["get", "/registry/t/a", "--print-value-only"]);
    let stored: Value = serde_json::from_slice(&out.stdout).expect("stored JSON");
    assert_eq!(stored["data"]["k"], "2");
    assert!(
        stored["metadata"].get("resourceVersion").is_none(),
        "{stored}"
    );
}

#[tokio::test]
async fn lists_page_and_watches_resume_from_a_revision() {
    let cluster = EtcdCluster::start(1);
    let store = open(&cluster).await;
    let mut first = 0;
    for i in 0..5 {
        let kv = store
            .create(&format!("/p/{i}"), obj("x", "1"))
            .await
            .unwrap();
        if i == 0 {
            first = kv.mod_revision;
        }
    }
    let page = store.list("/p/", None, 2, &|_| true);
    assert_eq!(page.items.len(), 2);
    assert_eq!(page.remaining, 3);
    let rest = store.list("/p/", page.continue_after.as_deref(), 0, &|_| true);
    assert_eq!(rest.items.len(), 3);
    assert_eq!(&*rest.items[0].key, "/p/2");

    let mut w = store.watch("/p/", first).unwrap();
    for i in 1..5 {
        let e = next(&mut w).await;
        assert_eq!(e.kind, EventType::Added);
        assert_eq!(&*e.kv.key, format!("/p/{i}"));
    }
    store.update("/p/0", obj("x", "2"), None).await.unwrap();
    store.delete("/p/1", None).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventType::Modified);
    assert_eq!(e.prev.as_ref().unwrap().value["data"]["k"], "1");
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventType::Deleted);
    assert_eq!(&*e.kv.key, "/p/1");
}

#[tokio::test]
async fn compaction_uses_etcds_and_expires_older_watches() {
    let cluster = EtcdCluster::start(1);
    let store = open(&cluster).await;
    for i in 0..4 {
        store
            .create(&format!("/c/{i}"), obj("x", "1"))
            .await
            .unwrap();
    }
    let at = store.revision() - 1;
    store.compact(at).await.unwrap();
    assert!(matches!(
        store.watch("/c/", 1),
        Err(StoreError::Compacted { .. })
    ));
    assert!(store.watch("/c/", at).is_ok());
    // etcd itself compacted: reading an older revision fails there.
    let out = cluster.etcdctl(&["get", "/registry/c/0", "--rev=2"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("compacted"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Compacting again (as another server would) is fine.
    store.compact(at).await.unwrap();
}

#[tokio::test]
async fn a_restarted_store_sees_the_same_state_and_revisions() {
    let cluster = EtcdCluster::start(1);
    let (a, last) = {
        let store = open(&cluster).await;
        store.create("/r/a", obj("a", "1")).await.unwrap();
        store.create("/r/b", obj("b", "1")).await.unwrap();
        let a = store.update("/r/a", obj("a", "2"), None).await.unwrap();
        let d = store.delete("/r/b", None).await.unwrap();
        (a, d.mod_revision)
    };
    let store = open(&cluster).await;
    assert_eq!(store.revision(), last);
    let got = store.get("/r/a").unwrap();
    assert_eq!(got.mod_revision, a.mod_revision);
    assert_eq!(got.create_revision, a.create_revision);
    assert_eq!(got.value["data"]["k"], "2");
    assert!(store.get("/r/b").is_none());
    let c = store.create("/r/c", obj("c", "1")).await.unwrap();
    assert_eq!(c.mod_revision, last + 1);
}

#[tokio::test]
async fn two_stores_on_one_etcd_see_each_others_writes_through_their_watches() {
    let cluster = EtcdCluster::start(1);
    let one = open(&cluster).await;
    let two = open(&cluster).await;
    let (_, _, mut w) = two.snapshot_and_watch("/s/");
    let a = one.create("/s/a", obj("a", "1")).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventType::Added);
    assert_eq!(e.kv.mod_revision, a.mod_revision);
    assert_eq!(two.get("/s/a").unwrap().mod_revision, a.mod_revision);
    // Optimistic concurrency across servers: a write from a stale read conflicts.
    two.update("/s/a", obj("a", "2"), Some(a.mod_revision))
        .await
        .unwrap();
    let err = one
        .update("/s/a", obj("a", "3"), Some(a.mod_revision))
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict { .. }), "{err}");
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventType::Modified);
    one.delete("/s/a", None).await.unwrap();
    let e = next(&mut w).await;
    assert_eq!(e.kind, EventType::Deleted);
    assert_eq!(e.kv.value["data"]["k"], "2");
}

#[tokio::test]
async fn writes_continue_with_one_member_of_three_stopped() {
    let mut cluster = EtcdCluster::start(3);
    let store = open(&cluster).await;
    let (_, _, mut w) = store.snapshot_and_watch("/f/");
    store.create("/f/before", obj("x", "1")).await.unwrap();
    next(&mut w).await;
    // Stop the first member: the client and the watch move to the others.
    cluster.stop(0);
    for i in 0..10 {
        tokio::time::timeout(
            Duration::from_secs(20),
            store.create(&format!("/f/{i}"), obj("x", "1")),
        )
        .await
        .expect("write with a member down timed out")
        .unwrap_or_else(|e| panic!("write {i} with a member down: {e}"));
    }
    for i in 0..10 {
        let e = next(&mut w).await;
        assert_eq!(&*e.kv.key, format!("/f/{i}"));
    }
    assert!(store.ready().await.is_ok());
    cluster.restart(0);
    store.create("/f/after", obj("x", "1")).await.unwrap();
}

#[tokio::test]
async fn a_broken_watch_resumes_without_losing_or_repeating_events() {
    let mut cluster = EtcdCluster::start(3);
    let one = open(&cluster).await;
    let (_, _, mut w) = one.snapshot_and_watch("/w/");
    one.create("/w/0", obj("x", "0")).await.unwrap();
    assert_eq!(next(&mut w).await.kv.key.as_ref(), "/w/0");
    // Whichever member `one` watches through, stopping them in turn breaks its stream
    // at least once; a second store writes meanwhile.
    let two = open(&cluster).await;
    let mut expected = vec!["/w/0".to_string()];
    for (round, member) in [0usize, 1, 2].into_iter().enumerate() {
        cluster.stop(member);
        let key = format!("/w/{}", round + 1);
        two.create(&key, obj("x", "1")).await.unwrap();
        expected.push(key);
        cluster.restart(member);
    }
    let mut seen = vec!["/w/0".to_string()];
    let mut last = 0;
    for _ in 1..expected.len() {
        let e = next(&mut w).await;
        assert!(e.revision() > last, "events in revision order, no repeat");
        last = e.revision();
        seen.push(e.kv.key.to_string());
    }
    assert_eq!(seen, expected);
    assert_eq!(one.revision(), two.revision());
}

#[tokio::test]
async fn another_clusters_etcd_and_a_foreign_etcd_are_refused() {
    let cluster = EtcdCluster::start(1);
    drop(open(&cluster).await);
    let err = EtcdStore::open(
        config(&cluster),
        Arc::new(Identity),
        HistoryLimits::default(),
        "fedcba9876543210",
    )
    .await
    .err()
    .expect("another CA is refused");
    assert!(matches!(err, StoreError::OtherCluster { .. }), "{err}");
    assert!(err.to_string().contains(CA), "{err}");

    let foreign = EtcdCluster::start(1);
    let out = foreign.etcdctl(&["put", "/registry/pods/default/x", "{}"]);
    assert!(out.status.success());
    let err = EtcdStore::open(
        config(&foreign),
        Arc::new(Identity),
        HistoryLimits::default(),
        CA,
    )
    .await
    .err()
    .expect("a foreign etcd is refused");
    assert!(
        matches!(err, StoreError::ForeignEtcd { keys: 1, .. }),
        "{err}"
    );
    // Nothing was written there.
    let out = foreign.etcdctl(&["get", MARKER_KEY]);
    assert!(out.stdout.is_empty());
}

#[tokio::test]
async fn an_unreachable_etcd_is_named_after_bounded_retries() {
    let port = support::host::free_port();
    let config = EtcdConfig::parse(
        &format!("etcd://127.0.0.1:{port}"),
        None,
        None,
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    let started = std::time::Instant::now();
    let err = EtcdStore::open(config, Arc::new(Identity), HistoryLimits::default(), CA)
        .await
        .err()
        .expect("unreachable");
    assert!(started.elapsed() < Duration::from_secs(20));
    assert!(matches!(err, StoreError::EtcdUnreachable { .. }), "{err}");
    assert!(
        err.to_string().contains(&format!("127.0.0.1:{port}")),
        "{err}"
    );
}

#[tokio::test]
async fn tls_endpoints_with_a_ca_and_a_client_certificate() {
    let cluster = EtcdCluster::start_tls(1);
    let tls = cluster.tls.clone().unwrap();
    let config = EtcdConfig::parse(
        &cluster.endpoint(),
        Some(tls.ca.clone()),
        Some(tls.cert.clone()),
        Some(tls.key.clone()),
        Duration::from_secs(10),
    )
    .unwrap();
    assert!(config.endpoints[0].starts_with("https://"));
    let store = EtcdStore::open(config, Arc::new(Identity), HistoryLimits::default(), CA)
        .await
        .expect("open over TLS");
    let a = store.create("/tls/a", obj("a", "1")).await.unwrap();
    assert_eq!(store.get("/tls/a").unwrap().mod_revision, a.mod_revision);
    let out = cluster.etcdctl(&["get", "/registry/tls/a", "--print-value-only"]);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"k\":\"1\""));

    // Without the client certificate etcd refuses the connection: reported, not hung.
    let config = EtcdConfig::parse(
        &cluster.endpoint(),
        Some(tls.ca),
        None,
        None,
        Duration::from_secs(2),
    )
    .unwrap();
    let err = EtcdStore::open(config, Arc::new(Identity), HistoryLimits::default(), CA)
        .await
        .err()
        .expect("no client certificate");
    assert!(matches!(err, StoreError::EtcdUnreachable { .. }), "{err}");
}
