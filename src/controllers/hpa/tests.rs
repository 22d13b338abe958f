//! The controller's sync against a real registry on the in-memory store, with metrics
//! fed into the registry's resource-metrics cache as two kubelet scrapes would.

use super::*;
use crate::api::metrics::parse_scrape;
use crate::apiserver::registry::{Registry, WriteOptions};
use crate::controllers::testutil::registry;

fn deployments() -> &'static ResourceDef {
    resources::by_plural("apps", "v1", "deployments").expect("served")
}

async fn create(reg: &Registry, def: &ResourceDef, body: Value) -> Value {
    let w = reg
        .create(def, Some("default"), body, &WriteOptions::default())
        .await
        .expect("create");
    (*w.kv.value).clone()
}

fn t(secs: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(2_000_000_000 + secs, 0).unwrap()
}

/// A Deployment `web` of `replicas` and as many running, long-ready pods on node n1,
/// each requesting 100m CPU.
async fn workload(reg: &Registry, replicas: i64) {
    create(
        reg,
        deployments(),
        json!({"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": "web", "namespace": "default"},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "app", "image": "busybox"}]}}}}),
    )
    .await;
    for i in 0..replicas {
        let mut pod = create(
            reg,
            pods(),
            json!({"apiVersion": "v1", "kind": "Pod",
                "metadata": {"name": format!("web-{i}"), "namespace": "default", "labels": {"app": "web"}},
                "spec": {"nodeName": "n1", "containers": [{"name": "app", "image": "busybox",
                    "resources": {"requests": {"cpu": "100m"}}}]}}),
        )
        .await;
        pod["status"] = json!({"phase": "Running", "startTime": "2020-01-01T00:00:00Z",
            "conditions": [{"type": "Ready", "status": "True", "lastTransitionTime": "2020-01-01T00:00:00Z"}]});
        reg.update(
            pods(),
            Some("default"),
            &format!("web-{i}"),
            pod,
            Some("status"),
            &WriteOptions::default(),
        )
        .await
        .expect("pod status");
    }
}

/// Two scrapes of n1 15 s apart in which every pod used `millicores`.
fn measure(reg: &Registry, replicas: i64, millicores: f64) {
    for (step, ms) in [(0.0, 1_000_000i64), (1.0, 1_015_000)] {
        let mut text = String::new();
        for i in 0..replicas {
            let cpu = step * millicores / 1000.0 * 15.0;
            text.push_str(&format!(
                "container_cpu_usage_seconds_total{{container=\"app\",namespace=\"default\",pod=\"web-{i}\"}} {cpu} {ms}\n\
                 container_memory_working_set_bytes{{container=\"app\",namespace=\"default\",pod=\"web-{i}\"}} 1048576 {ms}\n"
            ));
        }
        reg.resource_metrics
            .record("n1", parse_scrape(&text, 0).unwrap());
    }
}

async fn hpa(reg: &Registry, behavior: Option<Value>) -> KeyValue {
    let mut body = json!({"apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": {"name": "web", "namespace": "default"},
        "spec": {"scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "web"},
            "minReplicas": 1, "maxReplicas": 5,
            "metrics": [{"type": "Resource", "resource": {"name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": 50}}}]}});
    if let Some(b) = behavior {
        body["spec"]["behavior"] = b;
    }
    create(reg, hpas(), body).await;
    reg.get(hpas(), Some("default"), "web").unwrap()
}

fn condition<'a>(status: &'a Value, kind: &str) -> &'a Value {
    status["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == kind)
        .unwrap_or_else(|| panic!("no {kind} condition in {status}"))
}

fn replicas(reg: &Registry) -> i64 {
    reg.get(deployments(), Some("default"), "web")
        .unwrap()
        .value["spec"]["replicas"]
        .as_i64()
        .unwrap()
}

#[tokio::test]
async fn busy_pods_scale_the_deployment_up_with_status_and_event() {
    let reg = registry().await;
    workload(&reg, 1).await;
    measure(&reg, 1, 200.0);
    let h = hpa(&reg, None).await;
    let out = sync(&*reg, t(0), &Histories::default(), "default/web", &h.value).await;
    // 200 % of the request against 50 %: 4 pods (also the legacy scale-up limit).
    assert_eq!(replicas(&reg), 4);
    assert_eq!(out.status["desiredReplicas"], 4);
    assert_eq!(out.status["currentReplicas"], 1);
    assert_eq!(
        out.status["currentMetrics"][0]["resource"]["current"],
        json!({"averageUtilization": 200, "averageValue": "200m"})
    );
    assert!(out.status["lastScaleTime"].is_string());
    assert_eq!(
        condition(&out.status, "AbleToScale")["reason"],
        "SucceededRescale"
    );
    assert_eq!(
        condition(&out.status, "ScalingActive")["reason"],
        "ValidMetricFound"
    );
    assert_eq!(
        out.events,
        vec![(
            NORMAL,
            "SuccessfulRescale",
            "New size: 4; reason: cpu resource utilization (percentage of request) above target"
                .to_string()
        )]
    );
}

#[tokio::test]
async fn missing_metrics_are_reported_and_nothing_scales() {
    let reg = registry().await;
    workload(&reg, 2).await;
    let h = hpa(&reg, None).await;
    let out = sync(&*reg, t(0), &Histories::default(), "default/web", &h.value).await;
    assert_eq!(replicas(&reg), 2);
    let active = condition(&out.status, "ScalingActive");
    assert_eq!(active["status"], "False");
    assert_eq!(active["reason"], "FailedGetResourceMetric");
    let reasons: Vec<&str> = out.events.iter().map(|e| e.1).collect();
    assert_eq!(
        reasons,
        ["FailedGetResourceMetric", "FailedComputeMetricsReplicas"]
    );
    assert!(out.events[0]
        .2
        .contains("no metrics returned from resource metrics API"));
}

#[tokio::test]
async fn scale_down_follows_the_behavior_window_and_policy() {
    let reg = registry().await;
    workload(&reg, 4).await;
    measure(&reg, 4, 5.0);
    let behavior = json!({"scaleDown": {"stabilizationWindowSeconds": 0,
        "policies": [{"type": "Pods", "value": 2, "periodSeconds": 15}]}});
    let h = hpa(&reg, Some(behavior)).await;
    let histories = Histories::default();
    let out = sync(&*reg, t(0), &histories, "default/web", &h.value).await;
    assert_eq!(replicas(&reg), 2, "two pods per 15 s");
    assert_eq!(
        condition(&out.status, "ScalingLimited")["reason"],
        "ScaleDownLimit"
    );
    let h = reg.get(hpas(), Some("default"), "web").unwrap();
    sync(&*reg, t(5), &histories, "default/web", &h.value).await;
    assert_eq!(replicas(&reg), 2, "the same period");
    sync(&*reg, t(16), &histories, "default/web", &h.value).await;
    assert_eq!(replicas(&reg), 1, "min replicas");
}

#[tokio::test]
async fn an_unknown_target_fails_to_get_its_scale() {
    let reg = registry().await;
    let h = hpa(&reg, None).await;
    let out = sync(&*reg, t(0), &Histories::default(), "default/web", &h.value).await;
    let able = condition(&out.status, "AbleToScale");
    assert_eq!(able["status"], "False");
    assert_eq!(able["reason"], "FailedGetScale");
    assert_eq!(out.events[0].1, "FailedGetScale");
}

#[test]
fn behavior_parses_with_defaults_for_what_is_left_out() {
    let b = parse_behavior(&json!({"behavior": {"scaleDown": {"selectPolicy": "Min"}}})).unwrap();
    assert_eq!(b.scale_up, Rules::default_scale_up());
    assert_eq!(b.scale_down.select_policy, SelectPolicy::Min);
    assert_eq!(b.scale_down.stabilization_window_seconds, 300);
    assert!(parse_behavior(&json!({})).is_none());
}
