//! Which pod goes first, as upstream ranks them (pkg/kubelet/eviction/helpers.go):
//! for memory, pods using more than they requested, then lower priority, then usage
//! above the request; for disk the same with ephemeral storage; for pids, priority.
//! Critical pods are never chosen.

use std::cmp::Ordering;

use serde_json::Value;

use super::thresholds::Resource;
use crate::api::quantity::quantity_bytes;

/// Priority from which a pod is critical (upstream `scheduling.SystemCriticalPriority`).
pub const SYSTEM_CRITICAL_PRIORITY: i64 = 2_000_000_000;
/// The annotation of a mirror pod (a static pod's API copy).
const MIRROR_ANNOTATION: &str = "kubernetes.io/config.mirror";

/// A running pod as the ranking sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Candidate {
    pub namespace: String,
    pub name: String,
    pub uid: String,
    pub priority: i64,
    pub memory_request: i64,
    pub storage_request: i64,
    /// Measured usage; `None` when it could not be read.
    pub memory_usage: Option<i64>,
    pub disk_usage: Option<i64>,
    pub critical: bool,
    /// The pod's own termination grace period, in seconds.
    pub grace_seconds: i64,
}

fn sum_requests(pod: &Value, resource: &str) -> i64 {
    let sum = |field: &str| -> i64 {
        pod["spec"][field]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c["resources"]["requests"][resource].as_str())
            .filter_map(quantity_bytes)
            .sum()
    };
    // As upstream's effective request: the larger of all app containers together and
    // the largest init container.
    let apps = sum("containers");
    let init = pod["spec"]["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["resources"]["requests"][resource].as_str())
        .filter_map(quantity_bytes)
        .max()
        .unwrap_or(0);
    apps.max(init)
}

impl Candidate {
    /// The candidate for `pod` (usage filled in by the caller).
    pub fn from_pod(pod: &Value) -> Candidate {
        let meta = &pod["metadata"];
        let priority = pod["spec"]["priority"].as_i64().unwrap_or(0);
        let mirror = !meta["annotations"][MIRROR_ANNOTATION].is_null();
        Candidate {
            namespace: meta["namespace"].as_str().unwrap_or("").to_string(),
            name: meta["name"].as_str().unwrap_or("").to_string(),
            uid: meta["uid"].as_str().unwrap_or("").to_string(),
            priority,
            memory_request: sum_requests(pod, "memory"),
            storage_request: sum_requests(pod, "ephemeral-storage"),
            memory_usage: None,
            disk_usage: None,
            critical: mirror || priority >= SYSTEM_CRITICAL_PRIORITY,
            grace_seconds: pod["spec"]["terminationGracePeriodSeconds"]
                .as_i64()
                .unwrap_or(30),
        }
    }

    fn usage_and_request(&self, resource: Resource) -> (Option<i64>, i64) {
        match resource {
            Resource::Memory => (self.memory_usage, self.memory_request),
            Resource::Disk => (self.disk_usage, self.storage_request),
            Resource::Pids => (None, 0),
        }
    }
}

/// Upstream `exceedMemoryRequests`/`exceedDiskRequests`: pods without stats first, then
/// pods using more than they requested.
fn exceeds_requests(a: &Candidate, b: &Candidate, resource: Resource) -> Ordering {
    let (ua, ra) = a.usage_and_request(resource);
    let (ub, rb) = b.usage_and_request(resource);
    match (ua, ub) {
        (None, None) => Ordering::Equal,
        (None, Some(_)) => Ordering::Less,
        (Some(_), None) => Ordering::Greater,
        (Some(ua), Some(ub)) => (ub > rb).cmp(&(ua > ra)),
    }
}

/// Upstream `memory`/`disk`: more usage above the request first.
fn usage_above_request(a: &Candidate, b: &Candidate, resource: Resource) -> Ordering {
    let (ua, ra) = a.usage_and_request(resource);
    let (ub, rb) = b.usage_and_request(resource);
    let above = |u: Option<i64>, r: i64| u.map(|u| u - r);
    above(ub, rb).cmp(&above(ua, ra))
}

/// `pods` in the order they are evicted under pressure on `resource`.
pub fn rank(pods: &mut [Candidate], resource: Resource) {
    pods.sort_by(|a, b| {
        let by_priority = a.priority.cmp(&b.priority);
        let order = match resource {
            Resource::Pids => by_priority,
            _ => exceeds_requests(a, b, resource)
                .then(by_priority)
                .then_with(|| usage_above_request(a, b, resource)),
        };
        order.then_with(|| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)))
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod(name: &str, priority: i64, memory_request: Option<&str>) -> Candidate {
        let mut resources = json!({});
        if let Some(r) = memory_request {
            resources = json!({"requests": {"memory": r}, "limits": {"memory": r}});
        }
        Candidate::from_pod(&json!({
            "metadata": {"name": name, "namespace": "default", "uid": format!("uid-{name}")},
            "spec": {"priority": priority, "containers": [{"name": "c", "resources": resources}]},
        }))
    }

    fn names(pods: &[Candidate]) -> Vec<&str> {
        pods.iter().map(|p| p.name.as_str()).collect()
    }

    #[test]
    fn best_effort_goes_before_guaranteed_under_memory_pressure() {
        let mut guaranteed = pod("guaranteed", 0, Some("64Mi"));
        guaranteed.memory_usage = Some(10 << 20);
        let mut best_effort = pod("best-effort", 0, None);
        best_effort.memory_usage = Some(1 << 20);
        let mut pods = vec![guaranteed, best_effort];
        rank(&mut pods, Resource::Memory);
        assert_eq!(names(&pods), ["best-effort", "guaranteed"]);
        assert_eq!(pods[1].memory_request, 64 << 20);
    }

    #[test]
    fn within_requests_lower_priority_goes_first_then_the_largest_excess() {
        let mut high = pod("high", 1000, None);
        high.memory_usage = Some(500 << 20);
        let mut low_small = pod("low-small", 0, None);
        low_small.memory_usage = Some(10 << 20);
        let mut low_big = pod("low-big", 0, Some("10Mi"));
        low_big.memory_usage = Some(300 << 20);
        let mut within = pod("within", -5, Some("1Gi"));
        within.memory_usage = Some(100 << 20);
        let mut pods = vec![high, within, low_small, low_big];
        rank(&mut pods, Resource::Memory);
        assert_eq!(names(&pods), ["low-big", "low-small", "high", "within"]);
    }

    #[test]
    fn pods_without_stats_go_first_and_pids_rank_by_priority() {
        let mut measured = pod("measured", 0, None);
        measured.memory_usage = Some(1);
        let unmeasured = pod("unmeasured", 0, None);
        let mut pods = vec![measured.clone(), unmeasured.clone()];
        rank(&mut pods, Resource::Memory);
        assert_eq!(names(&pods), ["unmeasured", "measured"]);
        let mut pods = vec![pod("b", 5, None), pod("a", 1, None)];
        rank(&mut pods, Resource::Pids);
        assert_eq!(names(&pods), ["a", "b"]);
    }

    #[test]
    fn disk_ranks_by_ephemeral_storage_over_requests() {
        let mut small = pod("small", 0, None);
        small.disk_usage = Some(10);
        let mut big = pod("big", 0, None);
        big.disk_usage = Some(1000);
        let mut pods = vec![small, big];
        rank(&mut pods, Resource::Disk);
        assert_eq!(names(&pods), ["big", "small"]);
    }

    #[test]
    fn critical_pods_are_recognised() {
        assert!(pod("node-critical", 2_000_001_000, None).critical);
        assert!(!pod("user", 1_000_000_000, None).critical);
        let mirror = Candidate::from_pod(&json!({
            "metadata": {"name": "m", "annotations": {"kubernetes.io/config.mirror": "x"}},
            "spec": {}
        }));
        assert!(mirror.critical);
    }
}
