//! HorizontalPodAutoscaler controller (upstream `HorizontalController`): every
//! `SYNC_PERIOD` each autoscaler reads its target's `scale` subresource, asks the
//! built-in resource metrics (`metrics.k8s.io`, through the client) for the usage of the
//! pods the scale's selector picks, computes the replica count (`replicas`), normalizes
//! it (`behavior`), rescales the target, and writes status, conditions and events as
//! upstream does.

pub mod behavior;
pub mod replicas;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Value};

use crate::api::metrics::{cpu_quantity, PodUsage};
use crate::api::object;
use crate::api::quantity::parse_quantity;
use crate::api::resources::{self, ResourceDef};
use crate::api::selector::LabelSelector;
use crate::store::KeyValue;

use super::clock::Clock;
use super::events::{Recorder, NORMAL, WARNING};
use super::framework::{
    object_key, run_workers, split_key, wait_for_sync, Client, Informer, Reconciled, WorkQueue,
};
use behavior::{Behavior, Bounds, History, Policy, PolicyType, Rules, SelectPolicy};
use replicas::{PodInfo, PodMetric, Target};

/// How often each autoscaler is looked at (`--horizontal-pod-autoscaler-sync-period`).
pub const SYNC_PERIOD: Duration = Duration::from_secs(15);

fn hpas() -> &'static ResourceDef {
    resources::by_plural("autoscaling", "v2", "horizontalpodautoscalers").expect("served")
}

fn pods() -> &'static ResourceDef {
    resources::by_plural("", "v1", "pods").expect("served")
}

type Histories = Arc<Mutex<HashMap<String, History>>>;

/// Runs the controller until aborted.
pub async fn run(client: Arc<dyn Client>, clock: Arc<dyn Clock>, sync_period: Duration) {
    let queue = WorkQueue::new();
    let informers = [Informer::start(
        client.clone(),
        hpas(),
        queue.clone(),
        Box::new(|e| vec![object_key(&e.kv.value)]),
    )];
    wait_for_sync(&informers).await;
    let recorder = Arc::new(Recorder::new(client.clone(), "horizontal-pod-autoscaler"));
    let histories: Histories = Arc::default();
    run_workers("horizontal-pod-autoscaler", queue, 1, move |key| {
        let (client, clock, recorder, histories) = (
            client.clone(),
            clock.clone(),
            recorder.clone(),
            histories.clone(),
        );
        async move {
            let Some(hpa) = split_key(&key)
                .0
                .and_then(|ns| client.get(hpas(), Some(ns), split_key(&key).1).ok())
            else {
                histories
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .remove(&key);
                return Ok(None);
            };
            reconcile(&*client, clock.now(), &recorder, &histories, &key, &hpa).await?;
            Ok(Some(sync_period))
        }
    })
    .await;
}

/// A condition set as upstream's `setCondition`: the transition time moves only when
/// the status does.
fn set_condition(
    conditions: &mut Vec<Value>,
    kind: &str,
    status: bool,
    reason: &str,
    message: &str,
    now: DateTime<Utc>,
) {
    let status = if status { "True" } else { "False" };
    let time = now.to_rfc3339_opts(SecondsFormat::Secs, true);
    match conditions.iter_mut().find(|c| c["type"] == kind) {
        Some(c) => {
            if c["status"] != status {
                c["lastTransitionTime"] = json!(time);
            }
            c["status"] = json!(status);
            c["reason"] = json!(reason);
            c["message"] = json!(message);
        }
        None => conditions.push(json!({
            "type": kind, "status": status, "lastTransitionTime": time,
            "reason": reason, "message": message,
        })),
    }
}

/// `spec.behavior` (defaulted by the API) as the normalization's rules.
pub fn parse_behavior(spec: &Value) -> Option<Behavior> {
    let b = spec.get("behavior").filter(|b| b.is_object())?;
    let rules = |v: &Value, default: Rules| -> Rules {
        if !v.is_object() {
            return default;
        }
        let policies: Vec<Policy> = v["policies"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|p| Policy {
                kind: if p["type"] == "Pods" {
                    PolicyType::Pods
                } else {
                    PolicyType::Percent
                },
                value: p["value"].as_i64().unwrap_or(0) as i32,
                period_seconds: p["periodSeconds"].as_i64().unwrap_or(0) as i32,
            })
            .collect();
        Rules {
            stabilization_window_seconds: v["stabilizationWindowSeconds"]
                .as_i64()
                .map_or(default.stabilization_window_seconds, |w| w as i32),
            select_policy: match v["selectPolicy"].as_str() {
                Some("Min") => SelectPolicy::Min,
                Some("Disabled") => SelectPolicy::Disabled,
                Some("Max") => SelectPolicy::Max,
                _ => default.select_policy,
            },
            policies: if policies.is_empty() {
                default.policies
            } else {
                policies
            },
        }
    };
    Some(Behavior {
        scale_up: rules(&b["scaleUp"], Rules::default_scale_up()),
        scale_down: rules(&b["scaleDown"], Rules::default_scale_down()),
    })
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// What the calculator needs of `pod` for `resource` (of one `container`, or all).
fn pod_info(pod: &Value, resource: &str, container: Option<&str>) -> PodInfo {
    let phase = pod["status"]["phase"].as_str().unwrap_or("");
    let ready = pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == "Ready")
        .map(|c| {
            (
                c["status"] == "True",
                parse_time(&c["lastTransitionTime"]).unwrap_or_default(),
            )
        });
    let mut request = Ok(0i64);
    for c in pod["spec"]["containers"].as_array().into_iter().flatten() {
        let name = c["name"].as_str().unwrap_or("");
        if container.is_some_and(|want| want != name) {
            continue;
        }
        let value = c["resources"]["requests"][resource]
            .as_str()
            .map(str::to_string)
            .or_else(|| {
                c["resources"]["requests"][resource]
                    .as_f64()
                    .map(|n| n.to_string())
            })
            .and_then(|q| parse_quantity(&q).ok());
        match (value, &mut request) {
            (Some(q), Ok(sum)) => *sum += q.milli_value(),
            (None, Ok(_)) => request = Err(name.to_string()),
            _ => {}
        }
    }
    PodInfo {
        name: object::name(pod).to_string(),
        ignored: pod["metadata"]["deletionTimestamp"].is_string() || phase == "Failed",
        pending: phase == "Pending",
        ready,
        start_time: parse_time(&pod["status"]["startTime"]),
        request_milli: request,
    }
}

/// A pod's usage of `resource` in milli-units (upstream's metrics client: the sum over
/// its containers, or the one named).
fn metric_of(usage: &PodUsage, resource: &str, container: Option<&str>) -> Option<PodMetric> {
    let mut total = 0i64;
    let mut found = false;
    for (name, u) in &usage.containers {
        if container.is_some_and(|want| want != name) {
            continue;
        }
        found = true;
        total += match resource {
            "cpu" => (u.cpu_nano_cores / 1_000_000) as i64,
            "memory" => (u.memory_bytes as i64).saturating_mul(1000),
            _ => return None,
        };
    }
    found.then(|| PodMetric {
        value_milli: total,
        timestamp: DateTime::from_timestamp_millis(usage.timestamp_ms).unwrap_or_default(),
        window: chrono::Duration::milliseconds(usage.window_ms),
    })
}

/// A milli-value as the quantity upstream writes (`NewMilliQuantity`, DecimalSI).
fn milli_quantity(resource: &str, milli: i64) -> String {
    if resource == "cpu" {
        return cpu_quantity((milli.max(0) as u64) * 1_000_000).0;
    }
    if milli % 1000 == 0 {
        (milli / 1000).to_string()
    } else {
        format!("{milli}m")
    }
}

/// One metric's outcome.
struct MetricResult {
    replicas: i32,
    status: Value,
    description: String,
}

/// The failure of one metric: the condition reason, event reason and message.
struct MetricFailure {
    reason: &'static str,
    message: String,
}

/// Upstream `computeStatusForResourceMetric` (and the container variant).
fn resource_metric(
    client: &dyn Client,
    ns: &str,
    spec: &Value,
    current: i32,
    selector: &LabelSelector,
    now: DateTime<Utc>,
) -> Result<MetricResult, MetricFailure> {
    let container_metric = spec["type"] == "ContainerResource";
    let src = if container_metric {
        &spec["containerResource"]
    } else {
        &spec["resource"]
    };
    let resource = src["name"].as_str().unwrap_or("");
    let container = src["container"].as_str().filter(|_| container_metric);
    let reason = if container_metric {
        "FailedGetContainerResourceMetric"
    } else {
        "FailedGetResourceMetric"
    };
    let target = &src["target"];
    let target = match target["type"].as_str() {
        Some("Utilization") => {
            Target::Utilization(target["averageUtilization"].as_i64().unwrap_or(0) as i32)
        }
        _ => {
            let milli = target["averageValue"]
                .as_str()
                .and_then(|q| parse_quantity(q).ok())
                .map_or(0, |q| q.milli_value());
            Target::AverageValueMilli(milli)
        }
    };
    let what = match target {
        Target::Utilization(_) => format!("failed to get {resource} utilization"),
        Target::AverageValueMilli(_) => format!("failed to get {resource} usage"),
    };
    let pods: Vec<KeyValue> = client.list(pods(), Some(ns), &|kv: &KeyValue| {
        selector.matches(object::labels(&kv.value))
    });
    let infos: Vec<PodInfo> = pods
        .iter()
        .map(|kv| pod_info(&kv.value, resource, container))
        .collect();
    let metrics: BTreeMap<String, PodMetric> = pods
        .iter()
        .filter_map(|kv| {
            let node = kv.value["spec"]["nodeName"].as_str()?;
            let name = object::name(&kv.value);
            let usage = client.pod_usage(node, ns, name)?;
            Some((name.to_string(), metric_of(&usage, resource, container)?))
        })
        .collect();
    if metrics.is_empty() {
        return Err(MetricFailure {
            reason,
            message: format!(
                "{what}: unable to get metrics for resource {resource}: no metrics returned from resource metrics API"
            ),
        });
    }
    let r = replicas::resource_replicas(current, target, resource, &infos, &metrics, now).map_err(
        |e| MetricFailure {
            reason,
            message: format!("{what}: {e}"),
        },
    )?;
    let mut current_status = json!({"averageValue": milli_quantity(resource, r.average_milli)});
    if let Some(u) = r.utilization {
        current_status["averageUtilization"] = json!(u);
    }
    let mut status = json!({"type": spec["type"].clone()});
    let key = if container_metric {
        "containerResource"
    } else {
        "resource"
    };
    status[key] = json!({"name": resource, "current": current_status});
    if let Some(c) = container {
        status[key]["container"] = json!(c);
    }
    let description = match target {
        Target::Utilization(_) => {
            format!("{resource} resource utilization (percentage of request)")
        }
        Target::AverageValueMilli(_) => format!("{resource} resource"),
    };
    Ok(MetricResult {
        replicas: r.replicas,
        status,
        description,
    })
}

/// What the sync wants written and announced.
struct Outcome {
    status: Value,
    events: Vec<(&'static str, &'static str, String)>,
}

async fn reconcile(
    client: &dyn Client,
    now: DateTime<Utc>,
    recorder: &Recorder,
    histories: &Histories,
    key: &str,
    hpa: &KeyValue,
) -> Reconciled {
    let hpa_value = &*hpa.value;
    let outcome = sync(client, now, histories, key, hpa_value).await;
    for (kind, reason, message) in &outcome.events {
        recorder.record(hpa_value, kind, reason, message).await;
    }
    if outcome.status != hpa_value["status"] {
        let mut body = hpa_value.clone();
        body["status"] = outcome.status;
        let ns = object::namespace(hpa_value).unwrap_or("default");
        client
            .update_status(hpas(), Some(ns), object::name(hpa_value), body)
            .await?;
    }
    Ok(None)
}

/// One pass of upstream's `reconcileAutoscaler`: the new status and the events.
async fn sync(
    client: &dyn Client,
    now: DateTime<Utc>,
    histories: &Histories,
    key: &str,
    hpa: &Value,
) -> Outcome {
    let ns = object::namespace(hpa).unwrap_or("default");
    let spec = &hpa["spec"];
    let old_status = &hpa["status"];
    let mut conditions: Vec<Value> = old_status["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut events = Vec::new();
    let mut status = json!({
        "currentReplicas": old_status["currentReplicas"].as_i64().unwrap_or(0),
        "desiredReplicas": old_status["desiredReplicas"].as_i64().unwrap_or(0),
    });
    if let Some(g) = hpa["metadata"]["generation"].as_i64() {
        status["observedGeneration"] = json!(g);
    }
    if !old_status["lastScaleTime"].is_null() {
        status["lastScaleTime"] = old_status["lastScaleTime"].clone();
    }
    if let Some(m) = old_status.get("currentMetrics").filter(|m| !m.is_null()) {
        status["currentMetrics"] = m.clone();
    }
    let finish = |mut status: Value, conditions: Vec<Value>, events| {
        status["conditions"] = json!(conditions);
        Outcome { status, events }
    };

    // The target's scale.
    let target = &spec["scaleTargetRef"];
    let (kind, name) = (
        target["kind"].as_str().unwrap_or(""),
        target["name"].as_str().unwrap_or(""),
    );
    let api_version = target["apiVersion"].as_str().unwrap_or("");
    let group = api_version.split_once('/').map_or("", |(g, _)| g);
    let scale = client
        .resources()
        .by_kind(api_version, kind)
        .filter(|d| d.has_subresource("scale"))
        .ok_or_else(|| format!("no matches for kind \"{kind}\" in group \"{group}\""))
        .and_then(|def| {
            client
                .scale(def, ns, name)
                .map(|s| (def, s))
                .map_err(|e| e.message)
        });
    let (def, scale) = match scale {
        Ok(s) => s,
        Err(e) => {
            let message =
                format!("the HPA controller was unable to get the target's current scale: {e}");
            set_condition(
                &mut conditions,
                "AbleToScale",
                false,
                "FailedGetScale",
                &message,
                now,
            );
            events.push((WARNING, "FailedGetScale", e));
            return finish(status, conditions, events);
        }
    };
    set_condition(
        &mut conditions,
        "AbleToScale",
        true,
        "SucceededGetScale",
        "the HPA controller was able to get the target's current scale",
        now,
    );
    let current = scale["spec"]["replicas"].as_i64().unwrap_or(0) as i32;
    status["currentReplicas"] = json!(current);
    let selector_text = scale["status"]["selector"].as_str().unwrap_or("");
    let selector = match LabelSelector::parse(selector_text) {
        Ok(s) if !selector_text.is_empty() => s,
        _ => {
            let message = if selector_text.is_empty() {
                "selector is required".to_string()
            } else {
                format!("couldn't convert selector into a corresponding internal selector object: {selector_text}")
            };
            let reason = if selector_text.is_empty() {
                "SelectorRequired"
            } else {
                "InvalidSelector"
            };
            events.push((WARNING, reason, message.clone()));
            set_condition(
                &mut conditions,
                "ScalingActive",
                false,
                "InvalidSelector",
                &format!("the HPA target's scale is missing a selector: {message}"),
                now,
            );
            return finish(status, conditions, events);
        }
    };

    let min = spec["minReplicas"].as_i64().unwrap_or(1) as i32;
    let max = spec["maxReplicas"].as_i64().unwrap_or(1) as i32;
    let mut desired;
    let mut rescale_reason = String::new();
    let rescale;
    if current == 0 && min != 0 {
        desired = 0;
        rescale = false;
        set_condition(
            &mut conditions,
            "ScalingActive",
            false,
            "ScalingDisabled",
            "scaling is disabled since the replica count of the target is zero",
            now,
        );
    } else if current > max {
        rescale_reason = "Current number of replicas above Spec.MaxReplicas".into();
        desired = max;
        rescale = true;
    } else if current < min {
        rescale_reason = "Current number of replicas below Spec.MinReplicas".into();
        desired = min;
        rescale = true;
    } else {
        // Every metric; the largest recommendation wins.
        let specs = spec["metrics"].as_array().cloned().unwrap_or_default();
        let mut proposed = 0;
        let mut chosen = String::new();
        let mut statuses = Vec::new();
        let mut first_failure: Option<MetricFailure> = None;
        let mut invalid = 0;
        for m in &specs {
            let result = match m["type"].as_str().unwrap_or("") {
                "Resource" | "ContainerResource" => {
                    resource_metric(client, ns, m, current, &selector, now)
                }
                other => Err(MetricFailure {
                    reason: match other {
                        "Pods" => "FailedGetPodsMetric",
                        "Object" => "FailedGetObjectMetric",
                        _ => "FailedGetExternalMetric",
                    },
                    message: format!(
                        "unable to get metric {}: no custom or external metrics API is served (only resource metrics are built in)",
                        m[other.to_lowercase()]["metric"]["name"].as_str().unwrap_or("")
                    ),
                }),
            };
            match result {
                Ok(r) => {
                    statuses.push(r.status);
                    if r.replicas > proposed {
                        proposed = r.replicas;
                        chosen = r.description;
                    }
                }
                Err(f) => {
                    invalid += 1;
                    events.push((WARNING, f.reason, f.message.clone()));
                    statuses.push(json!({"type": ""}));
                    first_failure.get_or_insert(f);
                }
            }
        }
        if invalid > 0 && (invalid >= specs.len() || proposed < current) {
            let f = first_failure.expect("a failure was counted");
            set_condition(
                &mut conditions,
                "ScalingActive",
                false,
                f.reason,
                &format!(
                    "the HPA was unable to compute the replica count: {}",
                    f.message
                ),
                now,
            );
            let error = format!(
                "invalid metrics ({invalid} invalid out of {}), first error is: {}",
                specs.len(),
                f.message
            );
            events.push((WARNING, "FailedComputeMetricsReplicas", error));
            status["currentMetrics"] = json!(statuses);
            return finish(status, conditions, events);
        }
        set_condition(
            &mut conditions,
            "ScalingActive",
            true,
            "ValidMetricFound",
            &format!("the HPA was able to successfully calculate a replica count from {chosen}"),
            now,
        );
        status["currentMetrics"] = json!(statuses);
        desired = proposed;
        if desired > current {
            rescale_reason = format!("{chosen} above target");
        }
        if desired < current {
            rescale_reason = "All metrics below target".into();
        }
        let behavior = parse_behavior(spec);
        let bounds = Bounds { min, max, current };
        let normalized = {
            let mut h = histories.lock().unwrap_or_else(|e| e.into_inner());
            let history = h.entry(key.to_string()).or_default();
            match &behavior {
                Some(b) => history.normalize_with_behavior(b, bounds, desired, now),
                None => history.normalize(bounds, desired, now),
            }
        };
        for (kind, st, reason, message) in &normalized.conditions {
            set_condition(&mut conditions, kind, *st, reason, message, now);
        }
        desired = normalized.replicas;
        rescale = desired != current;
    }

    if rescale {
        match client.update_scale(def, ns, name, desired).await {
            Ok(_) => {
                set_condition(
                    &mut conditions,
                    "AbleToScale",
                    true,
                    "SucceededRescale",
                    &format!("the HPA controller was able to update the target scale to {desired}"),
                    now,
                );
                events.push((
                    NORMAL,
                    "SuccessfulRescale",
                    format!("New size: {desired}; reason: {rescale_reason}"),
                ));
                let behavior = parse_behavior(spec);
                histories
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(key.to_string())
                    .or_default()
                    .record_scale(behavior.as_ref(), current, desired, now);
                status["lastScaleTime"] = json!(now.to_rfc3339_opts(SecondsFormat::Secs, true));
                tracing::info!(hpa = %key, from = current, to = desired, reason = %rescale_reason, "rescaled");
            }
            Err(e) => {
                set_condition(
                    &mut conditions,
                    "AbleToScale",
                    false,
                    "FailedUpdateScale",
                    &format!(
                        "the HPA controller was unable to update the target scale: {}",
                        e.message
                    ),
                    now,
                );
                events.push((
                    WARNING,
                    "FailedRescale",
                    format!(
                        "New size: {desired}; reason: {rescale_reason}; error: {}",
                        e.message
                    ),
                ));
                return finish(status, conditions, events);
            }
        }
    }
    status["desiredReplicas"] = json!(desired);
    finish(status, conditions, events)
}

#[cfg(test)]
mod tests;
