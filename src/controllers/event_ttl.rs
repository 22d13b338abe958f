//! Deletes Events once they are older than the event TTL (upstream: `--event-ttl`, 1h),
//! so the datastore does not grow with every pod ever started.

use std::sync::Arc;
use std::time::Duration;

use crate::api::resources::{self, ResourceDef};
use crate::apiserver::registry::DeleteOptions;
use crate::store::EventType;

use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};

/// How long Events are kept after their last occurrence.
pub const DEFAULT_EVENT_TTL: Duration = Duration::from_secs(3600);

/// When an Event last happened (its series' last observation, lastTimestamp,
/// eventTime, or creation time). Events of both APIs are stored as core Events, so this
/// one controller expires `events.k8s.io/v1` Events too.
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

pub async fn run(client: Arc<dyn Client>, ttl: Duration) {
    let queue = WorkQueue::new();
    let informers = [Informer::start(
        client.clone(),
        events(),
        queue.clone(),
        Box::new(|e| {
            if e.kind == EventType::Deleted {
                vec![]
            } else {
                vec![object_key(&e.kv.value)]
            }
        }),
    )];
    wait_for_sync(&informers).await;
    run_workers("event-ttl-controller", queue, 1, move |key| {
        let client = client.clone();
        async move { expire(&*client, ttl, &key).await }
    })
    .await;
}

/// Deletes the Event at `key` once it expired; otherwise looks again when it will have.
async fn expire(client: &dyn Client, ttl: Duration, key: &str) -> Reconciled {
    let (ns, name) = split_key(key);
    let Ok(kv) = client.get(events(), ns, name) else {
        return Ok(None);
    };
    let left = time_left(&kv.value, ttl, chrono::Utc::now());
    if !left.is_zero() {
        return Ok(Some(left));
    }
    match client
        .delete(events(), ns, name, &DeleteOptions::default())
        .await
    {
        Err(e) if e.code != 404 => Err(e),
        _ => Ok(None),
    }
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
