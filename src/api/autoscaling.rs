//! HorizontalPodAutoscaler without I/O: upstream's `autoscaling/v2` defaults (minReplicas
//! 1, CPU at 80 % when no metric is given, a given behavior filled in with the default
//! rules) and the conversion between the stored `v2` object and `autoscaling/v1`
//! (`targetCPUUtilizationPercentage`; what v1 cannot say rides in upstream's
//! `autoscaling.alpha.kubernetes.io/*` annotations so a v1 round trip loses nothing).

use serde_json::{json, Map, Value};

/// Utilization target of the CPU metric a spec without metrics gets.
pub const DEFAULT_CPU_UTILIZATION: i64 = 80;
/// v1 annotation: the spec's metrics other than CPU utilization (v1 `MetricSpec` shape).
pub const METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/metrics";
/// v1 annotation: the status's current metrics other than CPU utilization.
pub const CURRENT_METRICS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/current-metrics";
/// v1 annotation: the status conditions.
pub const CONDITIONS_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/conditions";
/// v1 annotation: `spec.behavior`.
pub const BEHAVIOR_ANNOTATION: &str = "autoscaling.alpha.kubernetes.io/behavior";

fn default_scale_up() -> Value {
    json!({
        "stabilizationWindowSeconds": 0,
        "selectPolicy": "Max",
        "policies": [
            {"type": "Pods", "value": 4, "periodSeconds": 15},
            {"type": "Percent", "value": 100, "periodSeconds": 15},
        ],
    })
}

fn default_scale_down() -> Value {
    json!({
        "stabilizationWindowSeconds": 300,
        "selectPolicy": "Max",
        "policies": [{"type": "Percent", "value": 100, "periodSeconds": 15}],
    })
}

/// Upstream `GenerateHPAScaleUpRules` / `GenerateHPAScaleDownRules`: missing rules,
/// policies, select policy and window take the defaults of their direction.
fn fill_rules(rules: &mut Value, defaults: Value) {
    if !rules.is_object() {
        *rules = defaults;
        return;
    }
    for key in ["policies", "selectPolicy", "stabilizationWindowSeconds"] {
        let unset = match &rules[key] {
            Value::Null => true,
            Value::Array(a) => a.is_empty(),
            _ => false,
        };
        if unset {
            rules[key] = defaults[key].clone();
        }
    }
}

/// `autoscaling/v2` defaults.
pub fn hpa_defaults(obj: &mut Value) {
    let Some(spec) = obj.get_mut("spec").and_then(Value::as_object_mut) else {
        return;
    };
    if spec.get("minReplicas").is_none_or(Value::is_null) {
        spec.insert("minReplicas".into(), json!(1));
    }
    let no_metrics = spec
        .get("metrics")
        .and_then(Value::as_array)
        .is_none_or(Vec::is_empty);
    if no_metrics {
        spec.insert(
            "metrics".into(),
            cpu_utilization_metric(DEFAULT_CPU_UTILIZATION),
        );
    }
    if let Some(behavior) = spec.get_mut("behavior").filter(|b| b.is_object()) {
        fill_rules(&mut behavior["scaleUp"], default_scale_up());
        fill_rules(&mut behavior["scaleDown"], default_scale_down());
    }
}

fn cpu_utilization_metric(percent: i64) -> Value {
    json!([{
        "type": "Resource",
        "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": percent}},
    }])
}

fn is_cpu_utilization(metric: &Value) -> bool {
    metric["type"] == "Resource"
        && metric["resource"]["name"] == "cpu"
        && metric["resource"]["target"]["type"] == "Utilization"
}

fn annotations(obj: &mut Value) -> &mut Map<String, Value> {
    if !obj["metadata"]["annotations"].is_object() {
        obj["metadata"]["annotations"] = json!({});
    }
    obj["metadata"]["annotations"]
        .as_object_mut()
        .expect("just made an object")
}

/// A v2 metric spec in the v1 annotation's shape (`targetAverageUtilization`, …).
fn metric_spec_to_v1(m: &Value) -> Value {
    let mut out = m.clone();
    for source in [
        "resource",
        "containerResource",
        "pods",
        "object",
        "external",
    ] {
        let Some(src) = m.get(source).filter(|s| s.is_object()) else {
            continue;
        };
        let mut s = src.clone();
        let target = src["target"].clone();
        if let Some(o) = s.as_object_mut() {
            o.remove("target");
            match (source, target["type"].as_str()) {
                (_, Some("Utilization")) => {
                    o.insert(
                        "targetAverageUtilization".into(),
                        target["averageUtilization"].clone(),
                    );
                }
                ("resource" | "containerResource" | "pods", Some("AverageValue")) => {
                    o.insert("targetAverageValue".into(), target["averageValue"].clone());
                }
                (_, Some("AverageValue")) => {
                    o.insert("averageValue".into(), target["averageValue"].clone());
                }
                (_, Some("Value")) => {
                    o.insert("targetValue".into(), target["value"].clone());
                }
                _ => {}
            }
            if let Some(metric) = src.get("metric") {
                o.remove("metric");
                o.insert("metricName".into(), metric["name"].clone());
                if let Some(sel) = metric.get("selector") {
                    o.insert("selector".into(), sel.clone());
                }
            }
        }
        out[source] = s;
    }
    out
}

/// The v1 annotation's metric spec back in the v2 shape.
fn metric_spec_from_v1(m: &Value) -> Value {
    let mut out = m.clone();
    for source in [
        "resource",
        "containerResource",
        "pods",
        "object",
        "external",
    ] {
        let Some(src) = m.get(source).filter(|s| s.is_object()) else {
            continue;
        };
        let mut s = src.clone();
        let o = s.as_object_mut().expect("an object");
        let target = if let Some(u) = o.remove("targetAverageUtilization") {
            json!({"type": "Utilization", "averageUtilization": u})
        } else if let Some(v) = o.remove("targetAverageValue") {
            json!({"type": "AverageValue", "averageValue": v})
        } else if let Some(v) = o.remove("averageValue") {
            json!({"type": "AverageValue", "averageValue": v})
        } else if let Some(v) = o.remove("targetValue") {
            json!({"type": "Value", "value": v})
        } else {
            Value::Null
        };
        o.insert("target".into(), target);
        if let Some(name) = o.remove("metricName") {
            let mut metric = json!({"name": name});
            if let Some(sel) = o.remove("selector") {
                metric["selector"] = sel;
            }
            o.insert("metric".into(), metric);
        }
        out[source] = s;
    }
    out
}

/// A stored `autoscaling/v2` object as `autoscaling/v1` shows it.
pub fn to_v1(v2: &Value) -> Value {
    let mut out = json!({
        "apiVersion": "autoscaling/v1",
        "kind": "HorizontalPodAutoscaler",
        "metadata": v2["metadata"].clone(),
        "spec": {
            "scaleTargetRef": v2["spec"]["scaleTargetRef"].clone(),
            "maxReplicas": v2["spec"]["maxReplicas"].clone(),
        },
        "status": {
            "currentReplicas": v2["status"]["currentReplicas"].as_i64().unwrap_or(0),
            "desiredReplicas": v2["status"]["desiredReplicas"].as_i64().unwrap_or(0),
        },
    });
    if !v2["spec"]["minReplicas"].is_null() {
        out["spec"]["minReplicas"] = v2["spec"]["minReplicas"].clone();
    }
    for key in ["observedGeneration", "lastScaleTime"] {
        if !v2["status"][key].is_null() {
            out["status"][key] = v2["status"][key].clone();
        }
    }
    let metrics = v2["spec"]["metrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut others = Vec::new();
    for m in &metrics {
        if is_cpu_utilization(m) && out["spec"]["targetCPUUtilizationPercentage"].is_null() {
            out["spec"]["targetCPUUtilizationPercentage"] =
                m["resource"]["target"]["averageUtilization"].clone();
        } else {
            others.push(metric_spec_to_v1(m));
        }
    }
    let current = v2["status"]["currentMetrics"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let mut current_others = Vec::new();
    // A metric that could not be read is an empty status in v2; v1 leaves it out.
    for m in current
        .iter()
        .filter(|m| m["type"].as_str().is_some_and(|t| !t.is_empty()))
    {
        let utilization = &m["resource"]["current"]["averageUtilization"];
        if m["type"] == "Resource" && m["resource"]["name"] == "cpu" && !utilization.is_null() {
            out["status"]["currentCPUUtilizationPercentage"] = utilization.clone();
        } else {
            current_others.push(m.clone());
        }
    }
    let text = |v: &Value| Value::String(v.to_string());
    if !others.is_empty() {
        annotations(&mut out).insert(METRICS_ANNOTATION.into(), text(&json!(others)));
    }
    if !current_others.is_empty() {
        annotations(&mut out).insert(
            CURRENT_METRICS_ANNOTATION.into(),
            text(&json!(current_others)),
        );
    }
    if let Some(conditions) = v2["status"]["conditions"]
        .as_array()
        .filter(|c| !c.is_empty())
    {
        annotations(&mut out).insert(CONDITIONS_ANNOTATION.into(), text(&json!(conditions)));
    }
    if v2["spec"]["behavior"].is_object() {
        annotations(&mut out).insert(BEHAVIOR_ANNOTATION.into(), text(&v2["spec"]["behavior"]));
    }
    out
}

/// An `autoscaling/v1` object (as a client wrote it) in the stored `v2` shape; the
/// annotations v1 carries for v2 fields are consumed.
pub fn from_v1(v1: &Value) -> Value {
    let mut meta = v1["metadata"].clone();
    let mut take = |key: &str| -> Option<Value> {
        let a = meta.get_mut("annotations")?.as_object_mut()?;
        let v = a.remove(key)?;
        serde_json::from_str(v.as_str()?).ok()
    };
    let other_metrics = take(METRICS_ANNOTATION);
    let current_others = take(CURRENT_METRICS_ANNOTATION);
    let conditions = take(CONDITIONS_ANNOTATION);
    let behavior = take(BEHAVIOR_ANNOTATION);
    if meta["annotations"].as_object().is_some_and(Map::is_empty) {
        if let Some(m) = meta.as_object_mut() {
            m.remove("annotations");
        }
    }
    let spec = &v1["spec"];
    let mut metrics = Vec::new();
    if let Some(cpu) = spec["targetCPUUtilizationPercentage"].as_i64() {
        metrics.extend(
            cpu_utilization_metric(cpu)
                .as_array()
                .cloned()
                .unwrap_or_default(),
        );
    }
    for m in other_metrics
        .as_ref()
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        metrics.push(metric_spec_from_v1(m));
    }
    let mut out = json!({
        "apiVersion": "autoscaling/v2",
        "kind": "HorizontalPodAutoscaler",
        "metadata": meta,
        "spec": {
            "scaleTargetRef": spec["scaleTargetRef"].clone(),
            "maxReplicas": spec["maxReplicas"].clone(),
        },
    });
    if !spec["minReplicas"].is_null() {
        out["spec"]["minReplicas"] = spec["minReplicas"].clone();
    }
    if !metrics.is_empty() {
        out["spec"]["metrics"] = json!(metrics);
    }
    if let Some(b) = behavior {
        out["spec"]["behavior"] = b;
    }
    let status = &v1["status"];
    if status.is_object() {
        let mut s = json!({
            "currentReplicas": status["currentReplicas"].as_i64().unwrap_or(0),
            "desiredReplicas": status["desiredReplicas"].as_i64().unwrap_or(0),
        });
        for key in ["observedGeneration", "lastScaleTime"] {
            if !status[key].is_null() {
                s[key] = status[key].clone();
            }
        }
        let mut current = Vec::new();
        if let Some(cpu) = status["currentCPUUtilizationPercentage"].as_i64() {
            current.push(json!({"type": "Resource", "resource": {"name": "cpu",
                "current": {"averageUtilization": cpu}}}));
        }
        current.extend(
            current_others
                .as_ref()
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .cloned(),
        );
        if !current.is_empty() {
            s["currentMetrics"] = json!(current);
        }
        if let Some(c) = conditions {
            s["conditions"] = c;
        }
        out["status"] = s;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2() -> Value {
        json!({
            "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {
                "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                "maxReplicas": 5,
                "metrics": [
                    {"type": "Resource", "resource": {"name": "cpu", "target": {"type": "Utilization", "averageUtilization": 50}}},
                    {"type": "Resource", "resource": {"name": "memory", "target": {"type": "AverageValue", "averageValue": "100Mi"}}},
                ],
                "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}},
            },
            "status": {
                "currentReplicas": 2, "desiredReplicas": 3,
                "currentMetrics": [{"type": "Resource", "resource": {"name": "cpu", "current": {"averageUtilization": 70, "averageValue": "70m"}}}],
                "conditions": [{"type": "AbleToScale", "status": "True", "reason": "SucceededRescale"}],
            },
        })
    }

    #[test]
    fn defaults_fill_min_replicas_cpu_and_a_given_behavior() {
        let mut obj = json!({"spec": {"maxReplicas": 3, "behavior": {"scaleDown": {"stabilizationWindowSeconds": 10}}}});
        hpa_defaults(&mut obj);
        assert_eq!(obj["spec"]["minReplicas"], 1);
        assert_eq!(
            obj["spec"]["metrics"][0]["resource"]["target"]["averageUtilization"],
            80
        );
        let b = &obj["spec"]["behavior"];
        assert_eq!(b["scaleDown"]["stabilizationWindowSeconds"], 10);
        assert_eq!(
            b["scaleDown"]["policies"][0],
            json!({"type": "Percent", "value": 100, "periodSeconds": 15})
        );
        assert_eq!(b["scaleUp"], default_scale_up());
        let mut without = json!({"spec": {"maxReplicas": 3}});
        hpa_defaults(&mut without);
        assert!(
            without["spec"].get("behavior").is_none(),
            "no behavior stays none"
        );
    }

    #[test]
    fn v1_shows_the_cpu_target_and_keeps_the_rest_in_annotations() {
        let v1 = to_v1(&v2());
        assert_eq!(v1["apiVersion"], "autoscaling/v1");
        assert_eq!(v1["spec"]["targetCPUUtilizationPercentage"], 50);
        assert_eq!(v1["status"]["currentCPUUtilizationPercentage"], 70);
        let a = &v1["metadata"]["annotations"];
        let others: Value = serde_json::from_str(a[METRICS_ANNOTATION].as_str().unwrap()).unwrap();
        assert_eq!(
            others[0]["resource"],
            json!({"name": "memory", "targetAverageValue": "100Mi"})
        );
        assert!(a[CONDITIONS_ANNOTATION]
            .as_str()
            .unwrap()
            .contains("SucceededRescale"));
        assert!(a[BEHAVIOR_ANNOTATION].is_string());
    }

    #[test]
    fn a_v1_round_trip_gives_the_v2_object_back() {
        let mut original = v2();
        // The CPU's averageValue is not in v1.
        original["status"]["currentMetrics"][0]["resource"]["current"] =
            json!({"averageUtilization": 70});
        let back = from_v1(&to_v1(&original));
        assert_eq!(back["spec"], original["spec"]);
        assert_eq!(back["status"], original["status"]);
        assert!(back["metadata"].get("annotations").is_none());
    }

    #[test]
    fn kubectl_autoscale_v1_body_converts() {
        let v1 = json!({"apiVersion": "autoscaling/v1", "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "web"},
            "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
                     "minReplicas": 1, "maxReplicas": 5, "targetCPUUtilizationPercentage": 50}});
        let v2 = from_v1(&v1);
        assert_eq!(v2["spec"]["metrics"], cpu_utilization_metric(50));
        assert_eq!(v2["spec"]["minReplicas"], 1);
        assert!(v2.get("status").is_none());
    }
}
