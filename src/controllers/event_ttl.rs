//! Deletes Events once they are older than the event TTL (upstream: `--event-ttl`, 1h),
//! so the datastore does not grow with every pod ever started.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::api::resources::{self, ResourceDef};
use crate::apiserver::registry::DeleteOptions;
use crate::store::{EventType, KeyValue, Revision};

use super::framework::{split_key, Client};

pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);
/// How long a failed delete waits before it is tried again.
const RETRY: Duration = Duration::from_secs(5);

fn last_seen(event: &serde_json::Value) -> Option<chrono::DateTime<chrono::Utc>> {
    event["series"]["lastObservedTime"]
        .as_str()
        .into_iter()
        .chain(
            ["lastTimestamp", "eventTime"]
                .iter()
                .filter_map(|f| event[*f].as_str()),
        )
        .chain(event["metadata"]["creationTimestamp"].as_str())
        .find_map(|s| chrono::DateTime::parse_from_rfc3339(s).ok())
        .map(|t| t.with_timezone(&chrono::Utc))
}

/// How long until `event` expires (zero when it already has).
pub fn time_left(
    event: &serde_json::Value,
    ttl: Duration,
    now: chrono::DateTime<chrono::Utc>,
) -> Duration {
    let Some(seen) = last_seen(event) else {
        return Duration::ZERO;
    };
    let age = (now - seen).to_std().unwrap_or(Duration::ZERO);
    ttl.saturating_sub(age)
}

fn events() -> &'static ResourceDef {
    resources::by_plural("", "v1", "events").expect("served")
}

/// When each version of an event seen is due to expire, soonest first, with the
/// version's revision and the datastore key. The key is the watch cache's own (shared),
/// so an event costs this heap one slot and no allocation: a burst's hour-long events
/// are not pinned all over the heap by per-event timers, keys and informer entries. An
/// event written again (its count and lastTimestamp moved) has a later slot of its own;
/// the earlier one, finding another version, is dropped.
type Deadlines = BinaryHeap<Reverse<(Instant, Revision, Arc<str>)>>;

pub async fn run(client: Arc<dyn Client>, ttl: Duration) {
    loop {
        let (items, _, mut watcher) = client.list_and_watch(events());
        let mut due = Deadlines::new();
        let now = chrono::Utc::now();
        for kv in &items {
            schedule(&mut due, kv, ttl, now);
        }
        drop(items);
        loop {
            let next = due.peek().map(|Reverse((at, _, _))| *at);
            tokio::select! {
                changed = watcher.next() => match changed {
                    Ok(event) if event.kind != EventType::Deleted => {
                        schedule(&mut due, &event.kv, ttl, chrono::Utc::now());
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::debug!(error = %e, "event TTL watch ended; relisting");
                        break;
                    }
                },
                () = sleep_until(next) => expire_due(&*client, ttl, &mut due).await,
            }
        }
    }
}

/// Sleeps until `at`, or forever without it.
async fn sleep_until(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn schedule(due: &mut Deadlines, kv: &KeyValue, ttl: Duration, now: chrono::DateTime<chrono::Utc>) {
    let left = time_left(&kv.value, ttl, now);
    due.push(Reverse((
        Instant::now() + left,
        kv.mod_revision,
        kv.key.clone(),
    )));
}

/// Deletes the events whose slot came and that expired; an event written since its slot
/// was taken has a later one and is left to it.
async fn expire_due(client: &dyn Client, ttl: Duration, due: &mut Deadlines) {
    let now = Instant::now();
    while let Some(Reverse((at, revision, key))) = due.peek().cloned() {
        if at > now {
            return;
        }
        due.pop();
        let Some((ns, name)) = namespace_and_name(&key) else {
            continue;
        };
        let Ok(kv) = client.get(events(), Some(ns), name) else {
            continue;
        };
        let left = time_left(&kv.value, ttl, chrono::Utc::now());
        if !left.is_zero() {
            // The same version: the wall clock is behind the monotonic one for a moment;
            // look again then. Another version has (or gets, from the watch) its own slot.
            if kv.mod_revision == revision {
                due.push(Reverse((Instant::now() + left, revision, key)));
            }
            continue;
        }
        match client
            .delete(events(), Some(ns), name, &DeleteOptions::default())
            .await
        {
            Err(e) if e.code != 404 => {
                tracing::warn!(namespace = ns, name, error = %e.message, "cannot delete an expired event; retrying");
                due.push(Reverse((Instant::now() + RETRY, revision, key)));
            }
            _ => {}
        }
    }
}

/// The namespace and name of the datastore key `/core/events/<namespace>/<name>`.
fn namespace_and_name(key: &str) -> Option<(&str, &str)> {
    let rest = key.strip_prefix(&events().prefix())?;
    let (ns, name) = split_key(rest);
    Some((ns?, name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::apiserver::registry::WriteOptions;
    use crate::controllers::testutil::{self, wait_for};
    use serde_json::json;

    fn event(name: &str, last: chrono::DateTime<chrono::Utc>) -> serde_json::Value {
        json!({"apiVersion": "v1", "kind": "Event",
               "metadata": {"name": name, "namespace": "default"},
               "involvedObject": {"kind": "Pod", "name": "p", "namespace": "default"},
               "reason": "Test", "message": "m", "type": "Normal",
               "lastTimestamp": crate::api::object::timestamp(last)})
    }

    #[tokio::test(start_paused = true)]
    async fn expired_events_are_deleted_and_fresh_ones_kept() {
        let registry = testutil::registry().await;
        let now = chrono::Utc::now();
        for (name, last) in [("old", now - chrono::Duration::hours(2)), ("fresh", now)] {
            registry
                .create(
                    events(),
                    Some("default"),
                    event(name, last),
                    &WriteOptions::default(),
                )
                .await
                .unwrap();
        }
        let task = tokio::spawn(run(registry.clone(), DEFAULT_EVENT_TTL));
        wait_for("the expired event to go", Duration::from_secs(10), || {
            registry.get(events(), Some("default"), "old").is_err()
        })
        .await;
        assert!(registry.get(events(), Some("default"), "fresh").is_ok());
        task.abort();
    }

    #[tokio::test]
    async fn an_event_written_again_lives_a_ttl_after_its_last_occurrence() {
        let registry = testutil::registry().await;
        // Timestamps are whole seconds: an event created at c expires in (c + 2 s, c + 3 s];
        // written again 1.2 s later, it expires a second later at least.
        let ttl = Duration::from_secs(3);
        let created = chrono::Utc::now();
        for name in ["once", "again"] {
            registry
                .create(
                    events(),
                    Some("default"),
                    event(name, created),
                    &WriteOptions::default(),
                )
                .await
                .unwrap();
        }
        let task = tokio::spawn(run(registry.clone(), ttl));
        tokio::time::sleep(Duration::from_millis(1200)).await;
        // "again" occurs again (a second later at least): its TTL starts over.
        let mut again = registry
            .get(events(), Some("default"), "again")
            .unwrap()
            .value
            .as_ref()
            .clone();
        again["lastTimestamp"] = crate::api::object::timestamp(chrono::Utc::now()).into();
        registry
            .update(
                events(),
                Some("default"),
                "again",
                again,
                None,
                &WriteOptions::default(),
            )
            .await
            .unwrap();
        wait_for(
            "the event that occurred once to go",
            Duration::from_secs(10),
            || registry.get(events(), Some("default"), "once").is_err(),
        )
        .await;
        let gone_at = chrono::Utc::now();
        assert!(
            gone_at - created >= chrono::Duration::milliseconds(2000),
            "deleted before its TTL"
        );
        assert!(
            registry.get(events(), Some("default"), "again").is_ok(),
            "the event that occurred again went at its first occurrence's expiry"
        );
        wait_for(
            "the event that occurred again to go",
            Duration::from_secs(10),
            || registry.get(events(), Some("default"), "again").is_err(),
        )
        .await;
        task.abort();
    }

    #[test]
    fn events_expire_ttl_after_their_last_occurrence() {
        let now = chrono::DateTime::parse_from_rfc3339("2026-01-01T02:00:00Z")
            .unwrap()
            .with_timezone(&chrono::Utc);
        let ttl = Duration::from_secs(3600);
        let fresh = json!({"lastTimestamp": "2026-01-01T01:30:00Z", "metadata": {"creationTimestamp": "2026-01-01T00:00:00Z"}});
        assert_eq!(time_left(&fresh, ttl, now), Duration::from_secs(1800));
        let old = json!({"lastTimestamp": "2026-01-01T00:30:00Z"});
        assert_eq!(time_left(&old, ttl, now), Duration::ZERO);
        let micro = json!({"eventTime": "2026-01-01T01:59:00.000000Z"});
        assert_eq!(time_left(&micro, ttl, now), Duration::from_secs(3540));
        assert_eq!(time_left(&json!({}), ttl, now), Duration::ZERO);
        // An events.k8s.io series lives as long as its last observation.
        let series = json!({"eventTime": "2026-01-01T00:00:00.000000Z",
                            "series": {"count": 5, "lastObservedTime": "2026-01-01T01:45:00.000000Z"}});
        assert_eq!(time_left(&series, ttl, now), Duration::from_secs(2700));
    }
}
