use super::*;

fn labels(verb: &'static str, resource: &'static str) -> RequestLabels {
    RequestLabels {
        verb,
        group: "",
        version: "v1",
        resource,
        subresource: Cow::Borrowed(""),
        scope: "namespace",
        component: "apiserver",
        dry_run: "",
    }
}

/// The value of the sample line starting with `prefix` (name and labels).
fn sample(text: &str, prefix: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn requests_are_counted_by_verb_resource_and_code_in_the_prometheus_text_format() {
    let metrics = ServerMetrics::new(None);
    let post = labels("POST", "configmaps");
    for _ in 0..3 {
        metrics
            .api
            .observe(&post, 201, Some(Duration::from_millis(30)));
    }
    metrics
        .api
        .observe(&post, 409, Some(Duration::from_millis(3)));
    let text = metrics.encode();
    assert!(
        text.contains("# TYPE apiserver_request_total counter\n"),
        "{text}"
    );
    let created = r#"apiserver_request_total{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",dry_run="",code="201"}"#;
    assert_eq!(sample(&text, created), Some(3.0), "{text}");
    let conflict = created.replace("201", "409");
    assert_eq!(sample(&text, &conflict), Some(1.0));
    // Upstream's buckets: 30 ms falls in le="0.05", 3 ms in le="0.005".
    let bucket = |le: &str| {
        sample(
            &text,
            &format!(
                r#"apiserver_request_duration_seconds_bucket{{verb="POST",group="",version="v1",resource="configmaps",subresource="",scope="namespace",component="apiserver",dry_run="",le="{le}"}}"#
            ),
        )
    };
    assert_eq!(bucket("0.005"), Some(1.0));
    assert_eq!(bucket("0.025"), Some(1.0));
    assert_eq!(bucket("0.05"), Some(4.0));
    assert_eq!(bucket("+Inf"), Some(4.0));
    assert!(text.contains("apiserver_request_duration_seconds_count{"));
    assert!(
        text.ends_with('\n') && !text.contains("# EOF"),
        "Prometheus text, not OpenMetrics"
    );
}

#[test]
fn inflight_and_longrunning_gauges_follow_their_guards() {
    let metrics = ServerMetrics::new(None);
    let watch = labels("WATCH", "pods");
    let read = metrics.api.inflight(false);
    let write = metrics.api.inflight(true);
    let open = metrics.api.longrunning(&watch);
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            r#"apiserver_current_inflight_requests{request_kind="readOnly"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"apiserver_current_inflight_requests{request_kind="mutating"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"apiserver_longrunning_requests{verb="WATCH""#),
        Some(1.0)
    );
    drop((read, write, open));
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            r#"apiserver_current_inflight_requests{request_kind="readOnly"}"#
        ),
        Some(0.0)
    );
    assert_eq!(
        sample(&text, r#"apiserver_longrunning_requests{verb="WATCH""#),
        Some(0.0)
    );
}

#[test]
fn scheduler_datastore_and_workqueue_series_carry_upstream_labels() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("state.db");
    std::fs::write(&db, vec![0u8; 4096]).unwrap();
    let metrics = ServerMetrics::new(Some(db));
    metrics
        .scheduler
        .observe_attempt(ScheduleResult::Scheduled, Duration::from_millis(2));
    metrics
        .scheduler
        .observe_attempt(ScheduleResult::Unschedulable, Duration::from_millis(1));
    metrics
        .datastore
        .observe_commit("create", Duration::from_millis(4));
    let queue = metrics.workqueue.queue("deployment");
    queue.adds.inc();
    queue.depth.set(2);
    let text = metrics.encode();
    assert_eq!(
        sample(
            &text,
            r#"scheduler_schedule_attempts_total{result="scheduled",profile="default-scheduler"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"scheduler_schedule_attempts_total{result="unschedulable",profile="default-scheduler"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"orc_datastore_commit_duration_seconds_count{operation="create"}"#
        ),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"workqueue_adds_total{name="deployment"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"workqueue_depth{name="deployment"}"#),
        Some(2.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"apiserver_storage_db_total_size_in_bytes{storage_cluster_id="sqlite"}"#
        ),
        Some(4096.0)
    );
    assert!(sample(&text, "process_resident_memory_bytes ").unwrap() > 0.0);
    assert!(
        sample(&text, "process_cpu_seconds_total ").is_some(),
        "{text}"
    );
    assert!(sample(&text, "process_open_fds ").unwrap() > 0.0);
    assert!(sample(&text, "process_start_time_seconds ").unwrap() > 0.0);
}

#[test]
fn node_metrics_count_pods_starts_proxy_syncs_and_dns_queries() {
    let node = NodeMetrics::new();
    node.set_running(2, 3);
    node.observe_pod_start(Duration::from_millis(1500));
    node.observe_proxy_sync(Duration::from_millis(3));
    node.observe_dns("udp", dns_type_label("a"), "NXDOMAIN");
    node.observe_dns("udp", dns_type_label("HINFO"), "other");
    let text = node.encode();
    assert_eq!(sample(&text, "kubelet_running_pods "), Some(2.0));
    assert_eq!(
        sample(
            &text,
            r#"kubelet_running_containers{container_state="running"}"#
        ),
        Some(3.0)
    );
    assert_eq!(
        sample(
            &text,
            r#"kubelet_pod_start_duration_seconds_bucket{le="2"}"#
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        sample(&text, "kubeproxy_sync_proxy_rules_duration_seconds_count "),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"orc_dns_requests_total{proto="udp",type="A"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"orc_dns_requests_total{proto="udp",type="other"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"orc_dns_responses_total{rcode="NXDOMAIN"}"#),
        Some(1.0)
    );
    assert_eq!(
        sample(&text, r#"orc_dns_responses_total{rcode="other"}"#),
        Some(1.0)
    );
}
