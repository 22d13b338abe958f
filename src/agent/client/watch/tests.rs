//! The reflector against a scripted API on a paused clock: where watches resume, when
//! it relists, what a relist reports, how it backs off, what it asks for.

use std::time::Duration;

use k8s_openapi::api::core::v1::Pod;
use serde_json::{json, Value};

use super::*;
use crate::agent::client::fake::{Answer, FakeListWatch};
use crate::agent::client::{FIRST_RETRY, MAX_RETRY};

const PODS: &str = "/api/v1/pods";

fn pod(name: &str, resource_version: &str) -> Value {
    json!({"metadata": {"namespace": "default", "name": name, "uid": format!("uid-{name}"),
                        "resourceVersion": resource_version}})
}

fn bookmark(resource_version: &str) -> Value {
    json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": resource_version}})
}

fn expired() -> Value {
    json!({"kind": "Status", "status": "Failure", "code": 410, "reason": "Expired",
           "message": "too old resource version"})
}

fn describe(event: &Event<Pod>) -> String {
    let name = |p: &Pod| p.metadata.name.clone().unwrap_or_default();
    match event {
        Event::Restarted(pods) => {
            let names: Vec<String> = pods.iter().map(name).collect();
            format!("restarted [{}]", names.join(" "))
        }
        Event::LastKnown(pods) => {
            let names: Vec<String> = pods.iter().map(name).collect();
            format!("last known [{}]", names.join(" "))
        }
        Event::Applied(p) => format!("applied {}", name(p)),
        Event::Deleted(p) => format!("deleted {}", name(p)),
    }
}

/// The next `n` events, described.
async fn next_events(reflector: &mut Reflector<Pod>, n: usize) -> Vec<String> {
    let collect = async {
        let mut seen = Vec::new();
        while seen.len() < n {
            seen.push(describe(&reflector.next().await));
        }
        seen
    };
    tokio::time::timeout(Duration::from_secs(3600), collect)
        .await
        .expect("the reflector deadlocked waiting for events")
}

fn reflector(api: &Arc<FakeListWatch>, query: Query) -> Reflector<Pod> {
    Reflector::new(api.clone(), query)
}

fn watch_path(resource_version: &str) -> String {
    format!(
        "{PODS}?watch=1&resourceVersion={resource_version}&allowWatchBookmarks=true&timeoutSeconds=300"
    )
}

#[tokio::test(start_paused = true)]
async fn a_watch_resumes_from_the_last_bookmarks_resource_version() {
    let api = Arc::new(FakeListWatch::new());
    api.answer(PODS, Answer::list("10", vec![pod("a", "9")]))
        .answer(
            PODS,
            Answer::events([("ADDED", pod("b", "11")), ("BOOKMARK", bookmark("15"))]),
        )
        .answer(PODS, Answer::events([("MODIFIED", pod("b", "16"))]));
    let started = tokio::time::Instant::now();
    let mut pods = reflector(&api, Query::all("pods"));
    assert_eq!(
        next_events(&mut pods, 3).await,
        ["restarted [a]", "applied b", "applied b"]
    );
    assert_eq!(
        api.paths(),
        [PODS.to_string(), watch_path("10"), watch_path("15")],
        "no relist: the second watch starts where the bookmark left off"
    );
    assert_eq!(
        started.elapsed(),
        Duration::ZERO,
        "no back-off after a clean end"
    );
}

#[tokio::test(start_paused = true)]
async fn expired_watches_relist_and_report_the_objects_gone_meanwhile() {
    let api = Arc::new(FakeListWatch::new());
    api.answer(PODS, Answer::list("10", vec![pod("a", "1"), pod("b", "2")]))
        // Expired while streaming: an ERROR event with code 410.
        .answer(PODS, Answer::events([("ERROR", expired())]))
        .answer(
            PODS,
            Answer::list("20", vec![pod("b", "2"), pod("c", "18")]),
        )
        // Expired before streaming: the watch request answers 410 Gone.
        .answer(PODS, Answer::Status(StatusCode::GONE))
        .answer(PODS, Answer::list("30", vec![pod("c", "18")]));
    let started = tokio::time::Instant::now();
    let mut pods = reflector(&api, Query::all("pods"));
    assert_eq!(
        next_events(&mut pods, 5).await,
        [
            "restarted [a b]",
            "deleted a",
            "restarted [b c]",
            "deleted b",
            "restarted [c]"
        ]
    );
    assert_eq!(
        api.paths(),
        [
            PODS.to_string(),
            watch_path("10"),
            PODS.to_string(),
            watch_path("20"),
            PODS.to_string()
        ]
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "410 is no failure");
}

#[tokio::test(start_paused = true)]
async fn failures_back_off_doubling_up_to_the_cap_and_success_starts_over() {
    let api = Arc::new(FakeListWatch::new());
    for _ in 0..7 {
        api.answer(PODS, Answer::Unreachable);
    }
    api.answer(PODS, Answer::list("1", vec![pod("a", "1")]))
        .answer(PODS, Answer::events([("ADDED", pod("b", "2"))]))
        .answer(PODS, Answer::Unreachable)
        .answer(PODS, Answer::Status(StatusCode::INTERNAL_SERVER_ERROR))
        .answer(PODS, Answer::list("3", vec![pod("a", "1"), pod("b", "2")]));
    let mut pods = reflector(&api, Query::all("pods"));
    assert_eq!(
        next_events(&mut pods, 3).await,
        ["restarted [a]", "applied b", "restarted [a b]"]
    );
    let requests = api.requests();
    let gaps: Vec<u64> = requests
        .windows(2)
        .map(|w| (w[1].at - w[0].at).as_secs())
        .collect();
    let cap = MAX_RETRY.as_secs();
    assert_eq!(
        gaps,
        // Seven failed lists; the list and the watch that deliver; after those, the
        // failures (an unreachable server, a rejected watch) start again from 1 s.
        [1, 2, 4, 8, 16, cap, cap, 0, 0, 1, 2],
        "{requests:?}"
    );
    assert_eq!(
        requests.last().map(|r| r.path.as_str()),
        Some(PODS),
        "a rejected watch relists"
    );
}

#[tokio::test(start_paused = true)]
async fn a_watch_the_server_ends_at_once_is_retried_after_a_delay() {
    let api = Arc::new(FakeListWatch::new());
    api.answer(PODS, Answer::list("1", vec![]))
        .answer(PODS, Answer::events([]))
        .answer(PODS, Answer::events([("ADDED", pod("a", "2"))]));
    let mut pods = reflector(&api, Query::all("pods"));
    assert_eq!(
        next_events(&mut pods, 2).await,
        ["restarted []", "applied a"]
    );
    let requests = api.requests();
    assert_eq!(requests[2].at - requests[1].at, FIRST_RETRY);
    assert_eq!(requests[2].path, watch_path("1"));
}

#[tokio::test(start_paused = true)]
async fn the_namespace_and_selectors_go_into_both_list_and_watch() {
    let collection = "/api/v1/namespaces/web/pods";
    let api = Arc::new(FakeListWatch::new());
    api.answer(collection, Answer::list("3", vec![]))
        .answer(collection, Answer::events([("ADDED", pod("a", "4"))]));
    let query = Query::in_namespace("web", "pods")
        .labels("app=web,tier!=db")
        .fields("spec.nodeName=n1");
    let mut pods = reflector(&api, query);
    next_events(&mut pods, 2).await;
    let selectors = "labelSelector=app%3Dweb%2Ctier%21%3Ddb&fieldSelector=spec.nodeName%3Dn1";
    assert_eq!(
        api.paths(),
        [
            format!("{collection}?{selectors}"),
            format!(
                "{collection}?{selectors}&watch=1&resourceVersion=3&allowWatchBookmarks=true&timeoutSeconds=300"
            ),
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn unreadable_objects_are_skipped_and_deletions_still_reported() {
    let api = Arc::new(FakeListWatch::new());
    let unreadable = json!({"metadata": {"name": "x", "uid": "uid-x"}, "spec": "not a spec"});
    api.answer(PODS, Answer::list("1", vec![pod("a", "1"), unreadable.clone()]))
        .answer(
            PODS,
            Answer::events([("MODIFIED", unreadable), ("DELETED", json!({"metadata": {"namespace": "default", "name": "a", "uid": "uid-a", "resourceVersion": "5"}, "spec": "unreadable"}))]),
        );
    let mut pods = reflector(&api, Query::all("pods"));
    assert_eq!(
        next_events(&mut pods, 2).await,
        ["restarted [a]", "deleted a"],
        "a's deletion is reported with a as it was last seen"
    );
}

/// Runs `pods` for `time` (on the paused clock), expecting no event meanwhile.
async fn run_quietly(pods: &mut Reflector<Pod>, time: Duration) {
    let event = tokio::time::timeout(time, pods.next()).await;
    assert!(
        event.is_err(),
        "no event expected, got {:?}",
        event.map(|e| describe(&e))
    );
}

/// Waits (on the paused clock) until `path` exists: the writer works on a real thread.
async fn wait_for_file(path: &std::path::Path) {
    for _ in 0..1000 {
        if path.exists() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{} was never written", path.display());
}

#[tokio::test(start_paused = true)]
async fn an_agent_started_without_server_goes_on_with_the_last_known_objects() {
    use crate::agent::client::last_known::LastKnownFile;
    let dir = tempfile::tempdir().unwrap();
    let file = || LastKnownFile::at(dir.path().join("pods.json"));

    // A first agent sees a, b and c; their state is saved shortly after.
    let api = Arc::new(FakeListWatch::new());
    let (events, live) = tokio::sync::mpsc::unbounded_channel();
    api.answer(PODS, Answer::list("5", vec![pod("a", "1"), pod("b", "2")]))
        .answer(PODS, Answer::Live(live));
    let mut pods = reflector(&api, Query::all("pods")).remember_in(file());
    assert_eq!(next_events(&mut pods, 1).await, ["restarted [a b]"]);
    events
        .send(WatchEvent {
            kind: "ADDED".into(),
            object: pod("c", "6"),
        })
        .unwrap();
    assert_eq!(next_events(&mut pods, 1).await, ["applied c"]);
    run_quietly(&mut pods, SAVE_DEBOUNCE * 2).await;
    wait_for_file(file().path()).await;
    drop(pods);

    // The next agent starts while the server is away: it goes on with a, b and c, and
    // once the server answers, b and c are gone.
    let api = Arc::new(FakeListWatch::new());
    api.answer(PODS, Answer::Unreachable)
        .answer(PODS, Answer::Unreachable)
        .answer(PODS, Answer::list("9", vec![pod("a", "1")]));
    let mut pods = reflector(&api, Query::all("pods")).remember_in(file());
    assert_eq!(
        next_events(&mut pods, 4).await,
        [
            "last known [a b c]",
            "deleted b",
            "deleted c",
            "restarted [a]"
        ]
    );
}

#[tokio::test(start_paused = true)]
async fn the_last_known_objects_stand_in_only_for_an_unreachable_server() {
    use crate::agent::client::last_known::LastKnownFile;
    let dir = tempfile::tempdir().unwrap();
    let file = LastKnownFile::at(dir.path().join("pods.json"));
    file.store(&LastKnownFile::encode(PODS, [pod("a", "1")].iter()).unwrap())
        .unwrap();
    // A server that answers, even with an error, is asked again: no stale state.
    let api = Arc::new(FakeListWatch::new());
    api.answer(PODS, Answer::Status(StatusCode::INTERNAL_SERVER_ERROR))
        .answer(PODS, Answer::list("3", vec![pod("b", "2")]));
    let mut pods = reflector(&api, Query::all("pods")).remember_in(file.clone());
    assert_eq!(next_events(&mut pods, 1).await, ["restarted [b]"]);
    // Once a list succeeded, a later outage keeps the live objects as they are.
    let api = Arc::new(FakeListWatch::new());
    api.answer(PODS, Answer::list("3", vec![pod("b", "2")]))
        .answer(PODS, Answer::Unreachable)
        .answer(PODS, Answer::Unreachable);
    let mut pods = reflector(&api, Query::all("pods")).remember_in(file);
    assert_eq!(next_events(&mut pods, 1).await, ["restarted [b]"]);
    run_quietly(&mut pods, Duration::from_secs(10)).await;
}
