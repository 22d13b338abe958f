//! Upstream's replica calculator for resource metrics (pure): pods grouped into ready,
//! unready (CPU only), missing and ignored; the usage ratio against the target
//! (utilization of requests, or an average value); the 10 % tolerance; and the
//! conservative re-computation when some pods have no metrics or are not ready yet.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Duration, Utc};

/// Ratios within this distance of 1.0 leave the replica count alone (upstream's
/// `--horizontal-pod-autoscaler-tolerance`).
pub const TOLERANCE: f64 = 0.1;
/// While a pod is this young its CPU samples count only once it is ready
/// (`--horizontal-pod-autoscaler-cpu-initialization-period`).
pub const CPU_INITIALIZATION_PERIOD: Duration = Duration::minutes(5);
/// A pod not ready this long after start has never been ready
/// (`--horizontal-pod-autoscaler-initial-readiness-delay`).
pub const INITIAL_READINESS_DELAY: Duration = Duration::seconds(30);

/// What the calculator needs of one pod targeted by the autoscaler.
#[derive(Debug, Clone, PartialEq)]
pub struct PodInfo {
    pub name: String,
    /// Being deleted, or Failed: its samples are ignored.
    pub ignored: bool,
    /// Pending: counted as not ready.
    pub pending: bool,
    /// The pod's Ready condition: `(status is True, lastTransitionTime)`; `None` when
    /// the pod has none.
    pub ready: Option<(bool, DateTime<Utc>)>,
    pub start_time: Option<DateTime<Utc>>,
    /// The sum of its (selected) containers' requests for the resource, in milli-units;
    /// `Err(container)` names a container without one.
    pub request_milli: Result<i64, String>,
}

/// A pod's measured usage of the resource.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PodMetric {
    /// In milli-units (millicores, milli-bytes), as upstream's metrics client.
    pub value_milli: i64,
    pub timestamp: DateTime<Utc>,
    pub window: Duration,
}

/// What the metric asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// Percent of the pods' requests.
    Utilization(i32),
    /// Average per pod, in milli-units.
    AverageValueMilli(i64),
}

/// The calculator's answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recommendation {
    pub replicas: i32,
    /// Percent of requests (only for a Utilization target).
    pub utilization: Option<i32>,
    /// Average usage per pod with samples, in milli-units.
    pub average_milli: i64,
    /// The newest sample's time.
    pub timestamp: DateTime<Utc>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CalcError {
    #[error("no pods returned by selector while calculating replica count")]
    NoPods,
    #[error("did not receive metrics for targeted pods (pods might be unready)")]
    NoMetricsForReadyPods,
    #[error("missing request for {resource} in container {container} of Pod {pod}")]
    MissingRequest {
        resource: String,
        container: String,
        pod: String,
    },
    #[error("no metrics returned matched known pods")]
    NoMatchingMetrics,
}

/// Pods split as upstream's `groupPods`.
struct Groups {
    ready: usize,
    unready: BTreeSet<String>,
    missing: BTreeSet<String>,
    ignored: BTreeSet<String>,
}

fn group_pods(
    pods: &[PodInfo],
    metrics: &BTreeMap<String, PodMetric>,
    is_cpu: bool,
    now: DateTime<Utc>,
) -> Groups {
    let mut g = Groups {
        ready: 0,
        unready: BTreeSet::new(),
        missing: BTreeSet::new(),
        ignored: BTreeSet::new(),
    };
    for pod in pods {
        if pod.ignored {
            g.ignored.insert(pod.name.clone());
            continue;
        }
        if pod.pending {
            g.unready.insert(pod.name.clone());
            continue;
        }
        let Some(metric) = metrics.get(&pod.name) else {
            g.missing.insert(pod.name.clone());
            continue;
        };
        if is_cpu {
            let unready = match (pod.ready, pod.start_time) {
                (Some((ready, transition)), Some(start)) => {
                    if start + CPU_INITIALIZATION_PERIOD > now {
                        // Young pod: only samples taken a whole window after it became
                        // ready count.
                        !ready || metric.timestamp < transition + metric.window
                    } else {
                        // Not ready, and never was since its start.
                        !ready && start + INITIAL_READINESS_DELAY > transition
                    }
                }
                _ => true,
            };
            if unready {
                g.unready.insert(pod.name.clone());
                continue;
            }
        }
        g.ready += 1;
    }
    g
}

/// `(ratio, utilization percent, average)` of `metrics` against `target` and the pods'
/// `requests` (upstream's `GetResourceUtilizationRatio` / `GetMetricUsageRatio`).
fn usage_ratio(
    metrics: &BTreeMap<String, i64>,
    requests: &BTreeMap<String, i64>,
    target: Target,
) -> Result<(f64, Option<i32>, i64), CalcError> {
    let total: i64 = metrics.values().sum();
    let average = if metrics.is_empty() {
        0
    } else {
        total / metrics.len() as i64
    };
    match target {
        Target::Utilization(percent) => {
            let requested: i64 = metrics.keys().filter_map(|name| requests.get(name)).sum();
            if requested == 0 {
                return Err(CalcError::NoMatchingMetrics);
            }
            let utilization = (total * 100 / requested) as i32;
            Ok((
                f64::from(utilization) / f64::from(percent),
                Some(utilization),
                average,
            ))
        }
        Target::AverageValueMilli(value) => {
            let ratio = if value == 0 {
                0.0
            } else {
                average as f64 / value as f64
            };
            Ok((ratio, None, average))
        }
    }
}

/// The replica count the metric asks for, with `current` replicas running `pods`
/// and `metrics` measured for some of them (upstream's `GetResourceReplicas` and
/// `GetRawResourceReplicas`).
pub fn resource_replicas(
    current: i32,
    target: Target,
    resource: &str,
    pods: &[PodInfo],
    metrics: &BTreeMap<String, PodMetric>,
    now: DateTime<Utc>,
) -> Result<Recommendation, CalcError> {
    if pods.is_empty() {
        return Err(CalcError::NoPods);
    }
    let groups = group_pods(pods, metrics, resource == "cpu", now);
    let mut values: BTreeMap<String, i64> = metrics
        .iter()
        .filter(|(name, _)| !groups.ignored.contains(*name) && !groups.unready.contains(*name))
        .filter(|(name, _)| pods.iter().any(|p| &p.name == *name))
        .map(|(name, m)| (name.clone(), m.value_milli))
        .collect();
    if values.is_empty() {
        return Err(CalcError::NoMetricsForReadyPods);
    }
    let timestamp = metrics.values().map(|m| m.timestamp).max().unwrap_or(now);
    let mut requests = BTreeMap::new();
    if matches!(target, Target::Utilization(_)) {
        for pod in pods {
            let request =
                pod.request_milli
                    .clone()
                    .map_err(|container| CalcError::MissingRequest {
                        resource: resource.to_string(),
                        container,
                        pod: pod.name.clone(),
                    })?;
            requests.insert(pod.name.clone(), request);
        }
    }
    let (ratio, utilization, average) = usage_ratio(&values, &requests, target)?;
    let answer = |replicas| Recommendation {
        replicas,
        utilization,
        average_milli: average,
        timestamp,
    };
    let scale_up_with_unready = !groups.unready.is_empty() && ratio > 1.0;
    if !scale_up_with_unready && groups.missing.is_empty() {
        if (1.0 - ratio).abs() <= TOLERANCE {
            return Ok(answer(current));
        }
        return Ok(answer((ratio * groups.ready as f64).ceil() as i32));
    }
    if !groups.missing.is_empty() {
        for name in &groups.missing {
            // Scaling down: missing pods count as using their whole request (or the
            // target); scaling up: as using nothing. Either way, the move shrinks.
            let assumed = if ratio < 1.0 {
                match target {
                    Target::Utilization(percent) => {
                        requests.get(name).copied().unwrap_or(0) * i64::from(percent.max(100)) / 100
                    }
                    Target::AverageValueMilli(value) => value,
                }
            } else {
                0
            };
            if ratio != 1.0 {
                values.insert(name.clone(), assumed);
            }
        }
    }
    if scale_up_with_unready {
        for name in &groups.unready {
            values.insert(name.clone(), 0);
        }
    }
    let (new_ratio, _, _) = usage_ratio(&values, &requests, target)?;
    if (1.0 - new_ratio).abs() <= TOLERANCE
        || (ratio < 1.0 && new_ratio > 1.0)
        || (ratio > 1.0 && new_ratio < 1.0)
    {
        return Ok(answer(current));
    }
    let replicas = (new_ratio * values.len() as f64).ceil() as i32;
    if (new_ratio < 1.0 && replicas > current) || (new_ratio > 1.0 && replicas < current) {
        return Ok(answer(current));
    }
    Ok(answer(replicas))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_000_000 + secs, 0).unwrap()
    }

    /// A pod started long ago, ready since then, requesting `request` millicores.
    fn pod(name: &str, request: i64) -> PodInfo {
        PodInfo {
            name: name.into(),
            ignored: false,
            pending: false,
            ready: Some((true, t(-3600))),
            start_time: Some(t(-3600)),
            request_milli: Ok(request),
        }
    }

    fn metrics(values: &[(&str, i64)]) -> BTreeMap<String, PodMetric> {
        values
            .iter()
            .map(|(n, v)| {
                (
                    n.to_string(),
                    PodMetric {
                        value_milli: *v,
                        timestamp: t(0),
                        window: Duration::seconds(15),
                    },
                )
            })
            .collect()
    }

    #[test]
    fn utilization_above_target_scales_by_the_ratio() {
        let pods = [pod("a", 100), pod("b", 100)];
        let m = metrics(&[("a", 150), ("b", 150)]);
        let r = resource_replicas(2, Target::Utilization(50), "cpu", &pods, &m, t(1)).unwrap();
        // 150 % of requests against 50 %: three times as many pods.
        assert_eq!(r.replicas, 6);
        assert_eq!(r.utilization, Some(150));
        assert_eq!(r.average_milli, 150);
    }

    #[test]
    fn within_tolerance_nothing_changes() {
        let pods = [pod("a", 100), pod("b", 100)];
        let m = metrics(&[("a", 54), ("b", 54)]);
        let r = resource_replicas(2, Target::Utilization(50), "cpu", &pods, &m, t(1)).unwrap();
        assert_eq!(r.replicas, 2);
        assert_eq!(r.utilization, Some(54));
    }

    #[test]
    fn below_target_scales_down() {
        let pods = [pod("a", 100), pod("b", 100), pod("c", 100), pod("d", 100)];
        let m = metrics(&[("a", 10), ("b", 10), ("c", 10), ("d", 10)]);
        let r = resource_replicas(4, Target::Utilization(50), "cpu", &pods, &m, t(1)).unwrap();
        assert_eq!(r.replicas, 1);
    }

    #[test]
    fn average_value_targets_compare_the_mean_per_pod() {
        let pods = [pod("a", 0), pod("b", 0)];
        let m = metrics(&[("a", 300_000), ("b", 100_000)]);
        let r = resource_replicas(
            2,
            Target::AverageValueMilli(100_000),
            "memory",
            &pods,
            &m,
            t(1),
        )
        .unwrap();
        assert_eq!(r.replicas, 4);
        assert_eq!(r.utilization, None);
        assert_eq!(r.average_milli, 200_000);
    }

    #[test]
    fn missing_pods_damp_a_scale_down_as_if_they_used_their_request() {
        let pods = [pod("a", 100), pod("b", 100), pod("c", 100)];
        let m = metrics(&[("a", 10), ("b", 10)]);
        // Without c: 10 % → 1 pod. With c at 100 %: (10+10+100)/300 = 40 % → ratio 0.8
        // → ceil(0.8 * 3) = 3: no change.
        let r = resource_replicas(3, Target::Utilization(50), "cpu", &pods, &m, t(1)).unwrap();
        assert_eq!(r.replicas, 3);
        assert_eq!(r.utilization, Some(10), "reported from the measured pods");
    }

    #[test]
    fn missing_pods_damp_a_scale_up_as_if_they_used_nothing() {
        let pods = [pod("a", 100), pod("b", 100)];
        let m = metrics(&[("a", 200)]);
        // a alone: 200 % → ratio 4; with b at 0: 100 % → ratio 2 → 4 pods.
        let r = resource_replicas(2, Target::Utilization(50), "cpu", &pods, &m, t(1)).unwrap();
        assert_eq!(r.replicas, 4);
    }

    #[test]
    fn unready_cpu_pods_count_as_idle_when_scaling_up() {
        let mut young = pod("b", 100);
        young.start_time = Some(t(-10));
        young.ready = Some((false, t(-10)));
        let pods = [pod("a", 100), young];
        let m = metrics(&[("a", 200), ("b", 500)]);
        // b's burst is ignored: a alone at 200 % and b at 0 → 100 % → 4 pods.
        let r = resource_replicas(2, Target::Utilization(50), "cpu", &pods, &m, t(1)).unwrap();
        assert_eq!(r.replicas, 4);
        assert_eq!(r.utilization, Some(200));
        // Memory has no readiness rule: b counts, (200 + 500) / 200 = 350 % → 14 pods.
        let r = resource_replicas(2, Target::Utilization(50), "memory", &pods, &m, t(1)).unwrap();
        assert_eq!(r.replicas, 14);
    }

    #[test]
    fn ignored_and_pending_pods_and_their_samples_do_not_count() {
        let mut deleting = pod("b", 100);
        deleting.ignored = true;
        let mut pending = pod("c", 100);
        pending.pending = true;
        let pods = [pod("a", 100), deleting, pending];
        let m = metrics(&[("a", 50), ("b", 1000)]);
        let r = resource_replicas(3, Target::Utilization(50), "cpu", &pods, &m, t(1)).unwrap();
        // a at target; c unready but the ratio is not above 1: unchanged.
        assert_eq!(r.replicas, 3);
    }

    #[test]
    fn errors_read_as_upstream() {
        let m = metrics(&[("a", 10)]);
        assert_eq!(
            resource_replicas(1, Target::Utilization(50), "cpu", &[], &m, t(1)),
            Err(CalcError::NoPods)
        );
        assert_eq!(
            resource_replicas(
                1,
                Target::Utilization(50),
                "cpu",
                &[pod("x", 100)],
                &m,
                t(1)
            ),
            Err(CalcError::NoMetricsForReadyPods)
        );
        let mut no_request = pod("a", 0);
        no_request.request_milli = Err("app".into());
        let e = resource_replicas(1, Target::Utilization(50), "cpu", &[no_request], &m, t(1))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "missing request for cpu in container app of Pod a"
        );
    }
}
