//! What workload controllers read from pods: active, ready and available pods, and the
//! upstream order in which surplus pods are deleted (`ActivePodsWithRanks`).
//!
//! Pure functions of the pod objects and an explicit `now`.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

use crate::api::object;
use crate::store::KeyValue;

/// Parses a `metav1.Time`.
pub fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn phase(pod: &Value) -> &str {
    pod["status"]["phase"].as_str().unwrap_or("Pending")
}

/// Counts towards a controller's replicas: not finished and not being deleted.
pub fn is_active(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed") && !object::is_deleting(pod)
}

/// Not finished (may be terminating): still holds resources on its node.
pub fn is_running_or_pending(pod: &Value) -> bool {
    !matches!(phase(pod), "Succeeded" | "Failed")
}

fn ready_condition(pod: &Value) -> Option<&Value> {
    pod["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == "Ready")
}

pub fn is_ready(pod: &Value) -> bool {
    ready_condition(pod).is_some_and(|c| c["status"] == "True")
}

/// When the pod last became ready (if it is ready).
pub fn ready_since(pod: &Value) -> Option<DateTime<Utc>> {
    if !is_ready(pod) {
        return None;
    }
    ready_condition(pod).and_then(|c| parse_time(&c["lastTransitionTime"]))
}

/// Ready for at least `min_ready_seconds` (a ready pod without a transition time counts).
pub fn is_available(pod: &Value, min_ready_seconds: i64, now: DateTime<Utc>) -> bool {
    if !is_ready(pod) {
        return false;
    }
    if min_ready_seconds <= 0 {
        return true;
    }
    match ready_since(pod) {
        Some(since) => since + chrono::Duration::seconds(min_ready_seconds) <= now,
        None => true,
    }
}

/// How long until the first ready-but-not-yet-available pod becomes available.
pub fn next_availability(
    pods: &[KeyValue],
    min_ready_seconds: i64,
    now: DateTime<Utc>,
) -> Option<Duration> {
    if min_ready_seconds <= 0 {
        return None;
    }
    pods.iter()
        .filter(|p| is_ready(&p.value) && !is_available(&p.value, min_ready_seconds, now))
        .filter_map(|p| ready_since(&p.value))
        .map(|since| since + chrono::Duration::seconds(min_ready_seconds) - now)
        .filter_map(|d| d.to_std().ok())
        .min()
}

fn phase_rank(pod: &Value) -> u8 {
    match phase(pod) {
        "Pending" => 0,
        "Unknown" => 1,
        "Running" => 2,
        _ => 3,
    }
}

fn node_name(pod: &Value) -> &str {
    pod["spec"]["nodeName"].as_str().unwrap_or("")
}

fn restarts(pod: &Value) -> i64 {
    pod["status"]["containerStatuses"]
        .as_array()
        .map(|cs| {
            cs.iter()
                .map(|c| c["restartCount"].as_i64().unwrap_or(0))
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
}

/// Upstream `ActivePodsWithRanks.Less`: `Less` means "delete first". `rank` is the
/// number of the controller's pods sharing the pod's node (crowded nodes first).
fn delete_first(a: (&KeyValue, usize), b: (&KeyValue, usize)) -> Ordering {
    let (pa, pb) = (&*a.0.value, &*b.0.value);
    let (na, nb) = (node_name(pa), node_name(pb));
    if na != nb && (na.is_empty() || nb.is_empty()) {
        return if na.is_empty() {
            Ordering::Less
        } else {
            Ordering::Greater
        };
    }
    phase_rank(pa)
        .cmp(&phase_rank(pb))
        .then_with(|| is_ready(pa).cmp(&is_ready(pb)))
        .then_with(|| b.1.cmp(&a.1))
        .then_with(|| match (ready_since(pa), ready_since(pb)) {
            // Ready for less time goes first.
            (Some(x), Some(y)) => y.cmp(&x),
            _ => Ordering::Equal,
        })
        .then_with(|| restarts(pb).cmp(&restarts(pa)))
        .then_with(|| {
            let ca = parse_time(&pa["metadata"]["creationTimestamp"]);
            let cb = parse_time(&pb["metadata"]["creationTimestamp"]);
            cb.cmp(&ca)
        })
        .then_with(|| b.0.create_revision.cmp(&a.0.create_revision))
}

/// The `count` pods to delete first when scaling down: unscheduled before scheduled,
/// pending before running, not-ready before ready, crowded nodes first, ready for less
/// time, more restarts, then newest first.
pub fn pods_to_delete(pods: &[KeyValue], count: usize) -> Vec<KeyValue> {
    let mut per_node: HashMap<&str, usize> = HashMap::new();
    for p in pods {
        let node = node_name(&p.value);
        if !node.is_empty() {
            *per_node.entry(node).or_default() += 1;
        }
    }
    let rank = |p: &KeyValue| per_node.get(node_name(&p.value)).copied().unwrap_or(0);
    let mut ranked: Vec<(&KeyValue, usize)> = pods.iter().map(|p| (p, rank(p))).collect();
    ranked.sort_by(|a, b| delete_first(*a, *b));
    ranked
        .into_iter()
        .take(count)
        .map(|(p, _)| p.clone())
        .collect()
}

/// The pod's controller owner reference (`controller: true`), if any.
pub fn controller_ref(obj: &Value) -> Option<&Value> {
    obj["metadata"]["ownerReferences"]
        .as_array()?
        .iter()
        .find(|r| r["controller"] == true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, rev: u64, node: &str, phase: &str, ready: Option<&str>) -> KeyValue {
        let mut v = json!({
            "metadata": {"name": name, "creationTimestamp": "2024-01-01T00:00:00Z"},
            "spec": {"nodeName": node},
            "status": {"phase": phase},
        });
        if let Some(since) = ready {
            v["status"]["conditions"] =
                json!([{"type": "Ready", "status": "True", "lastTransitionTime": since}]);
        }
        crate::store::make_kv(name, v, rev, rev)
    }

    fn names(pods: &[KeyValue]) -> Vec<&str> {
        pods.iter().map(|p| object::name(&p.value)).collect()
    }

    #[test]
    fn scale_down_prefers_unscheduled_then_not_ready_then_newest() {
        let t = "2024-01-01T00:00:10Z";
        let pods = vec![
            pod("old-ready", 1, "n1", "Running", Some(t)),
            pod("new-ready", 5, "n2", "Running", Some(t)),
            pod("not-ready", 2, "n3", "Running", None),
            pod("pending", 3, "n4", "Pending", None),
            pod("unscheduled", 4, "", "Pending", None),
        ];
        assert_eq!(
            names(&pods_to_delete(&pods, 5)),
            [
                "unscheduled",
                "pending",
                "not-ready",
                "new-ready",
                "old-ready"
            ]
        );
    }

    #[test]
    fn ready_for_less_time_goes_first() {
        let pods = vec![
            pod("long", 2, "n1", "Running", Some("2024-01-01T00:00:01Z")),
            pod("short", 1, "n2", "Running", Some("2024-01-01T00:05:00Z")),
        ];
        assert_eq!(names(&pods_to_delete(&pods, 1)), ["short"]);
    }

    #[test]
    fn availability_waits_for_min_ready_seconds() {
        let p = pod("a", 1, "n", "Running", Some("2024-01-01T00:00:10Z"));
        let now = parse_time(&json!("2024-01-01T00:00:15Z")).unwrap();
        assert!(is_available(&p.value, 0, now));
        assert!(!is_available(&p.value, 10, now));
        assert!(is_available(&p.value, 5, now));
        assert_eq!(
            next_availability(std::slice::from_ref(&p), 10, now),
            Some(Duration::from_secs(5))
        );
        assert!(!is_active(&json!({"status": {"phase": "Succeeded"}})));
        assert!(!is_active(
            &json!({"metadata": {"deletionTimestamp": t()}, "status": {"phase": "Running"}})
        ));
    }

    fn t() -> &'static str {
        "2024-01-01T00:00:00Z"
    }
}
