//! Prometheus metrics: the families orc exports (upstream's names and labels where
//! upstream has the metric), the handles instrumented code holds, and the text encoding.
//!
//! No process-wide registry: `orc server` builds one [`ServerMetrics`] and each agent one
//! [`NodeMetrics`]; the parts that record receive a (cheaply cloned) handle. Label values
//! are bounded sets (verbs, resources, codes, queue names), never object names or URLs.

pub mod process;

use std::borrow::Cow;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeLabelSet, EncodeMetric};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::{ConstGauge, Gauge};
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The `Content-Type` of a scrape answer: the Prometheus text format, version 0.0.4.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// Upstream's buckets of `apiserver_request_duration_seconds` (and of
/// `etcd_request_duration_seconds`, used for the datastore).
const REQUEST_BUCKETS: [f64; 23] = [
    0.005, 0.025, 0.05, 0.1, 0.2, 0.4, 0.6, 0.8, 1.0, 1.25, 1.5, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0,
    10.0, 15.0, 20.0, 30.0, 45.0, 60.0,
];

/// Upstream's buckets of `kubelet_pod_start_duration_seconds`.
const POD_START_BUCKETS: [f64; 25] = [
    0.5, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0, 20.0, 30.0, 45.0, 60.0, 120.0, 180.0, 240.0,
    300.0, 360.0, 480.0, 600.0, 900.0, 1200.0, 1800.0, 2700.0, 3600.0,
];

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

fn request_histogram() -> Histogram {
    Histogram::new(REQUEST_BUCKETS)
}

/// Upstream's scheduler and kube-proxy buckets: 1 ms doubling 15 times (~16 s).
fn millisecond_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 15))
}

/// Upstream's work queue buckets: 10 ns growing tenfold 10 times (~100 s).
fn workqueue_histogram() -> Histogram {
    Histogram::new(exponential_buckets(1e-8, 10.0, 10))
}

/// What names one API request in `apiserver_request_total` and
/// `apiserver_request_duration_seconds` (upstream's labels; `code` only on the counter).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Upper case, as upstream: GET, LIST, WATCH, POST, PUT, PATCH, APPLY, DELETE,
    /// DELETECOLLECTION, CONNECT.
    pub verb: &'static str,
    pub group: &'static str,
    pub version: &'static str,
    pub resource: &'static str,
    pub subresource: Cow<'static, str>,
    /// `resource` (one named object), `namespace`, `cluster`, or empty (non-resource URL).
    pub scope: &'static str,
    pub component: &'static str,
    pub dry_run: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CodeLabels {
    #[prometheus(flatten)]
    request: RequestLabels,
    code: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestKindLabels {
    request_kind: &'static str,
}

/// The API server's request metrics.
#[derive(Clone, Debug)]
pub struct ApiServerMetrics {
    requests: Family<CodeLabels, Counter>,
    durations: Histograms<RequestLabels>,
    inflight: Family<RequestKindLabels, Gauge>,
    longrunning: Family<RequestLabels, Gauge>,
}

impl Default for ApiServerMetrics {
    fn default() -> Self {
        ApiServerMetrics {
            requests: Family::default(),
            durations: Family::new_with_constructor(request_histogram),
            inflight: Family::default(),
            longrunning: Family::default(),
        }
    }
}

/// Counts one request as in flight until dropped.
#[must_use]
pub struct InflightGuard(Gauge);

impl Drop for InflightGuard {
    fn drop(&mut self) {
        self.0.dec();
    }
}

impl ApiServerMetrics {
    /// A request of `labels` answered with `code` after `elapsed`. Long-running requests
    /// (watches, streams) are counted but their duration is not observed, as upstream.
    pub fn observe(&self, labels: &RequestLabels, code: u16, elapsed: Option<Duration>) {
        self.requests
            .get_or_create(&CodeLabels {
                request: labels.clone(),
                code,
            })
            .inc();
        if let Some(elapsed) = elapsed {
            self.durations
                .get_or_create(labels)
                .observe(elapsed.as_secs_f64());
        }
    }

    /// Marks a request as in flight (`apiserver_current_inflight_requests`) until the
    /// guard drops; `mutating` for writes, else read-only.
    pub fn inflight(&self, mutating: bool) -> InflightGuard {
        let kind = if mutating { "mutating" } else { "readOnly" };
        let gauge = self
            .inflight
            .get_or_create_owned(&RequestKindLabels { request_kind: kind });
        gauge.inc();
        InflightGuard(gauge)
    }

    /// Marks a long-running request (a watch, a stream) as open
    /// (`apiserver_longrunning_requests`) until the guard drops.
    pub fn longrunning(&self, labels: &RequestLabels) -> InflightGuard {
        let gauge = self.longrunning.get_or_create_owned(labels);
        gauge.inc();
        InflightGuard(gauge)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OperationLabels {
    operation: &'static str,
}

/// The datastore's write latency: from a write handed to the store until it is durable.
#[derive(Clone, Debug)]
pub struct DatastoreMetrics {
    commits: Histograms<OperationLabels>,
}

impl Default for DatastoreMetrics {
    fn default() -> Self {
        DatastoreMetrics {
            commits: Family::new_with_constructor(request_histogram),
        }
    }
}

impl DatastoreMetrics {
    /// `operation` is `create`, `update` or `delete`.
    pub fn observe_commit(&self, operation: &'static str, elapsed: Duration) {
        self.commits
            .get_or_create(&OperationLabels { operation })
            .observe(elapsed.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ScheduleLabels {
    result: &'static str,
    profile: &'static str,
}

/// The outcome of one scheduling attempt, as upstream's `result` label names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScheduleResult {
    Scheduled,
    Unschedulable,
    Error,
}

impl ScheduleResult {
    fn label(self) -> &'static str {
        match self {
            ScheduleResult::Scheduled => "scheduled",
            ScheduleResult::Unschedulable => "unschedulable",
            ScheduleResult::Error => "error",
        }
    }
}

/// The scheduler's attempts and their latency.
#[derive(Clone, Debug)]
pub struct SchedulerMetrics {
    attempts: Family<ScheduleLabels, Counter>,
    durations: Histograms<ScheduleLabels>,
}

impl Default for SchedulerMetrics {
    fn default() -> Self {
        SchedulerMetrics {
            attempts: Family::default(),
            durations: Family::new_with_constructor(millisecond_histogram),
        }
    }
}

/// orc's one scheduler profile, named as upstream's default.
const SCHEDULER_PROFILE: &str = "default-scheduler";

impl SchedulerMetrics {
    pub fn observe_attempt(&self, result: ScheduleResult, elapsed: Duration) {
        let labels = ScheduleLabels {
            result: result.label(),
            profile: SCHEDULER_PROFILE,
        };
        self.attempts.get_or_create(&labels).inc();
        self.durations
            .get_or_create(&labels)
            .observe(elapsed.as_secs_f64());
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct QueueLabels {
    name: &'static str,
}

/// Upstream's work queue metrics, one series per controller queue.
#[derive(Clone, Debug)]
pub struct WorkQueueMetrics {
    depth: Family<QueueLabels, Gauge>,
    adds: Family<QueueLabels, Counter>,
    queue_durations: Histograms<QueueLabels>,
    work_durations: Histograms<QueueLabels>,
}

impl Default for WorkQueueMetrics {
    fn default() -> Self {
        WorkQueueMetrics {
            depth: Family::default(),
            adds: Family::default(),
            queue_durations: Family::new_with_constructor(workqueue_histogram),
            work_durations: Family::new_with_constructor(workqueue_histogram),
        }
    }
}

/// The handles of one named queue.
#[derive(Clone, Debug)]
pub struct QueueHandle {
    pub depth: Gauge,
    pub adds: Counter,
    pub queue_duration: Histogram,
    pub work_duration: Histogram,
}

impl WorkQueueMetrics {
    /// The handles of the queue `name` (a controller's name: a fixed, small set).
    pub fn queue(&self, name: &'static str) -> QueueHandle {
        let labels = QueueLabels { name };
        QueueHandle {
            depth: self.depth.get_or_create_owned(&labels),
            adds: self.adds.get_or_create_owned(&labels),
            queue_duration: self.queue_durations.get_or_create_owned(&labels),
            work_duration: self.work_durations.get_or_create_owned(&labels),
        }
    }
}

/// Reports the size of the SQLite database files on each scrape.
#[derive(Debug)]
struct DatabaseSize {
    /// The database and its write-ahead log.
    files: Vec<PathBuf>,
}

impl Collector for DatabaseSize {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let bytes: u64 = self
            .files
            .iter()
            .filter_map(|f| std::fs::metadata(f).ok())
            .map(|m| m.len())
            .sum();
        #[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
        struct StorageCluster {
            storage_cluster_id: &'static str,
        }
        let gauge = ConstGauge::new(bytes as i64);
        let mut family = encoder.encode_descriptor(
            "apiserver_storage_db_total_size_in_bytes",
            "Total size of the storage database file physically allocated in bytes",
            None,
            gauge.metric_type(),
        )?;
        gauge.encode(family.encode_family(&StorageCluster {
            storage_cluster_id: "sqlite",
        })?)
    }
}

/// Everything `orc server` exports at `/metrics`.
#[derive(Debug)]
pub struct ServerMetrics {
    registry: Registry,
    pub api: ApiServerMetrics,
    pub datastore: DatastoreMetrics,
    pub scheduler: SchedulerMetrics,
    pub workqueue: WorkQueueMetrics,
}

impl ServerMetrics {
    /// The server's families; `database` is the SQLite file whose size is reported
    /// (`None` on etcd, whose own metrics tell it).
    pub fn new(database: Option<PathBuf>) -> Arc<ServerMetrics> {
        let mut registry = Registry::default();
        let api = ApiServerMetrics::default();
        let datastore = DatastoreMetrics::default();
        let scheduler = SchedulerMetrics::default();
        let workqueue = WorkQueueMetrics::default();
        registry.register(
            "apiserver_request",
            "Counter of apiserver requests broken out for each verb, dry run value, group, version, resource, scope, component, and HTTP response code",
            api.requests.clone(),
        );
        registry.register(
            "apiserver_request_duration_seconds",
            "Response latency distribution in seconds for each verb, dry run value, group, version, resource, subresource, scope and component",
            api.durations.clone(),
        );
        registry.register(
            "apiserver_current_inflight_requests",
            "Maximal number of currently used inflight request limit of this apiserver per request kind in last second",
            api.inflight.clone(),
        );
        registry.register(
            "apiserver_longrunning_requests",
            "Gauge of all active long-running apiserver requests broken out by verb, group, version, resource, scope and component",
            api.longrunning.clone(),
        );
        registry.register(
            "orc_datastore_commit_duration_seconds",
            "Latency of datastore writes in seconds, from the request to the durable commit (group commit included), by operation",
            datastore.commits.clone(),
        );
        registry.register(
            "scheduler_schedule_attempts",
            "Number of attempts to schedule pods, by the result",
            scheduler.attempts.clone(),
        );
        registry.register(
            "scheduler_scheduling_attempt_duration_seconds",
            "Scheduling attempt latency in seconds (scheduling algorithm + binding)",
            scheduler.durations.clone(),
        );
        registry.register(
            "workqueue_depth",
            "Current depth of workqueue",
            workqueue.depth.clone(),
        );
        registry.register(
            "workqueue_adds",
            "Total number of adds handled by workqueue",
            workqueue.adds.clone(),
        );
        registry.register(
            "workqueue_queue_duration_seconds",
            "How long in seconds an item stays in workqueue before being requested",
            workqueue.queue_durations.clone(),
        );
        registry.register(
            "workqueue_work_duration_seconds",
            "How long in seconds processing an item from workqueue takes",
            workqueue.work_durations.clone(),
        );
        if let Some(db) = database {
            let mut wal = db.clone().into_os_string();
            wal.push("-wal");
            registry.register_collector(Box::new(DatabaseSize {
                files: vec![db, PathBuf::from(wal)],
            }));
        }
        registry.register_collector(Box::new(process::ProcessCollector::default()));
        Arc::new(ServerMetrics {
            registry,
            api,
            datastore,
            scheduler,
            workqueue,
        })
    }

    /// The scrape answer's body.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ContainerStateLabels {
    container_state: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsRequestLabels {
    proto: &'static str,
    r#type: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DnsResponseLabels {
    rcode: &'static str,
}

/// What one agent exports at its kubelet's `/metrics`.
#[derive(Debug)]
pub struct NodeMetrics {
    registry: Registry,
    running_pods: Gauge,
    running_containers: Family<ContainerStateLabels, Gauge>,
    pod_start: Histogram,
    proxy_sync: Histogram,
    dns_requests: Family<DnsRequestLabels, Counter>,
    dns_responses: Family<DnsResponseLabels, Counter>,
}

impl NodeMetrics {
    pub fn new() -> Arc<NodeMetrics> {
        let mut registry = Registry::default();
        let running_pods = Gauge::default();
        let running_containers = Family::default();
        let pod_start = Histogram::new(POD_START_BUCKETS);
        let proxy_sync = millisecond_histogram();
        let dns_requests = Family::default();
        let dns_responses = Family::default();
        registry.register(
            "kubelet_running_pods",
            "Number of pods that have a running pod sandbox",
            running_pods.clone(),
        );
        registry.register(
            "kubelet_running_containers",
            "Number of containers currently running",
            running_containers.clone(),
        );
        registry.register(
            "kubelet_pod_start_duration_seconds",
            "Duration in seconds from the kubelet seeing a pod for the first time to the pod starting to run",
            pod_start.clone(),
        );
        registry.register(
            "kubeproxy_sync_proxy_rules_duration_seconds",
            "SyncProxyRules latency in seconds",
            proxy_sync.clone(),
        );
        registry.register(
            "orc_dns_requests",
            "DNS queries the node's cluster DNS answered, by transport and query type",
            dns_requests.clone(),
        );
        registry.register(
            "orc_dns_responses",
            "DNS answers of the node's cluster DNS, by response code",
            dns_responses.clone(),
        );
        registry.register_collector(Box::new(process::ProcessCollector::default()));
        Arc::new(NodeMetrics {
            registry,
            running_pods,
            running_containers,
            pod_start,
            proxy_sync,
            dns_requests,
            dns_responses,
        })
    }

    /// The pods with a sandbox and the containers running on the node, now.
    pub fn set_running(&self, pods: usize, containers: usize) {
        self.running_pods.set(pods as i64);
        self.running_containers
            .get_or_create(&ContainerStateLabels {
                container_state: "running",
            })
            .set(containers as i64);
    }

    /// A pod ran `elapsed` after the kubelet first saw it.
    pub fn observe_pod_start(&self, elapsed: Duration) {
        self.pod_start.observe(elapsed.as_secs_f64());
    }

    /// One sync of the service proxy's rules took `elapsed`.
    pub fn observe_proxy_sync(&self, elapsed: Duration) {
        self.proxy_sync.observe(elapsed.as_secs_f64());
    }

    /// One DNS query over `proto` (`udp`/`tcp`) of type `qtype` (a fixed set: see
    /// [`dns_type_label`]) answered with `rcode` (e.g. `NOERROR`, `NXDOMAIN`).
    pub fn observe_dns(&self, proto: &'static str, qtype: &'static str, rcode: &'static str) {
        self.dns_requests
            .get_or_create(&DnsRequestLabels {
                proto,
                r#type: qtype,
            })
            .inc();
        self.dns_responses
            .get_or_create(&DnsResponseLabels { rcode })
            .inc();
    }

    /// The scrape answer's body.
    pub fn encode(&self) -> String {
        encode(&self.registry)
    }
}

/// The label of a DNS query type: the common types by name, the rest `other` (as
/// CoreDNS bounds its `type` label).
pub fn dns_type_label(qtype: &str) -> &'static str {
    const KNOWN: [&str; 10] = [
        "A", "AAAA", "CNAME", "MX", "NS", "PTR", "SOA", "SRV", "TXT", "ANY",
    ];
    KNOWN
        .iter()
        .find(|k| k.eq_ignore_ascii_case(qtype))
        .copied()
        .unwrap_or("other")
}

fn encode(registry: &Registry) -> String {
    let mut out = String::new();
    // Writing into a String cannot fail; an encoder error would be a bug in a collector.
    if let Err(e) = prometheus_client::encoding::prometheus_text::encode(&mut out, registry) {
        tracing::error!(error = %e, "encoding metrics failed");
    }
    out
}

#[cfg(test)]
mod tests;
