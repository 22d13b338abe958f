//! Controllers running inside `orc server`, each on the framework in `framework/`:
//! informers over the watch cache, a rate-limited work queue, and a small API client.

pub mod api_service;
pub mod bootstrap;
pub mod clock;
pub mod clusterrole_aggregation;
pub mod cronjob;
pub mod daemonset;
pub mod deployment;
pub mod disruption;
pub mod endpoint_slices;
pub mod endpoints;
pub mod ephemeral_volume;
pub mod event_ttl;
pub mod events;
pub mod expectations;
pub mod framework;
pub mod garbage_collector;
pub mod history;
pub mod hpa;
pub mod ingress;
pub mod job;
pub mod leader_election;
pub mod local_path;
pub mod manifests;
pub mod namespace;
pub mod node_ipam;
pub mod node_lifecycle;
pub mod ownership;
pub mod peer_heartbeats;
pub mod persistent_volume;
pub mod pod_gc;
pub mod pods;
pub mod rbac_bootstrap;
pub mod replication;
pub mod resource_quota;
pub mod root_ca;
pub mod scheduler;
pub mod service_account_tokens;
pub mod service_lb;
pub mod statefulset;
#[cfg(test)]
pub(crate) mod testutil;
pub mod volume_protection;
#[cfg(test)]
pub(crate) mod workload_tests;

use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinSet;

use framework::Client;

/// Settings of the controllers (from `orc server` flags).
#[derive(Clone)]
pub struct Config {
    /// How long a node may go without heartbeat before it is marked `Ready=Unknown`.
    pub node_monitor_grace_period: Duration,
    /// How long pods without an unreachable/not-ready toleration stay on a lost node.
    pub pod_eviction_timeout: Duration,
    /// How often nodes are checked.
    pub node_monitor_period: Duration,
    /// How often terminating pods of deleted nodes are looked for.
    pub pod_gc_period: Duration,
    pub clock: Arc<dyn clock::Clock>,
    /// Fills legacy service-account token Secrets (`None`: that controller does not run).
    pub legacy_tokens: Option<service_account_tokens::LegacyTokenSigner>,
    /// The cluster CA (PEM) published as `kube-root-ca.crt` in every namespace (`None`:
    /// that controller does not run).
    pub root_ca_pem: Option<String>,
    /// Where the built-in local-path provisioner puts volumes (`None`: it does not run,
    /// `--disable-local-storage`).
    pub local_storage_path: Option<std::path::PathBuf>,
    /// Whether the built-in `orc` IngressClass is created at start (false with the
    /// server's `--disable-ingress`); the ingress status controller runs either way.
    pub create_ingress_class: bool,
    /// Whether the built-in ServiceLB serves LoadBalancer Services (`false`:
    /// `--disable-servicelb`).
    pub service_lb: bool,
    /// Where the scheduler counts its attempts (`/metrics`).
    pub scheduler_metrics: crate::metrics::SchedulerMetrics,
    /// Where the controllers' work queues report (`/metrics`).
    pub workqueue_metrics: crate::metrics::WorkQueueMetrics,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            node_monitor_grace_period: node_lifecycle::NODE_MONITOR_GRACE,
            pod_eviction_timeout: node_lifecycle::POD_EVICTION_TIMEOUT,
            node_monitor_period: node_lifecycle::NODE_MONITOR_PERIOD,
            pod_gc_period: pod_gc::POD_GC_PERIOD,
            clock: Arc::new(clock::RealClock),
            legacy_tokens: None,
            root_ca_pem: None,
            local_storage_path: None,
            create_ingress_class: false,
            service_lb: true,
            scheduler_metrics: Default::default(),
            workqueue_metrics: Default::default(),
        }
    }
}

/// Starts every controller on `client`; they run until the returned set is aborted.
pub fn start(client: Arc<dyn Client>, config: Config) -> JoinSet<()> {
    let mut set = Spawner::new(config.workqueue_metrics.clone());
    set.spawn(namespace::run(client.clone()));
    set.spawn(clusterrole_aggregation::run(client.clone()));
    set.spawn(rbac_bootstrap::run(client.clone()));
    set.spawn(api_service::run(client.clone()));
    set.spawn(event_ttl::run(client.clone(), event_ttl::DEFAULT_EVENT_TTL));
    set.spawn(endpoints::run(client.clone()));
    set.spawn(endpoint_slices::run(client.clone()));
    set.spawn(garbage_collector::run(client.clone()));
    set.spawn(ephemeral_volume::run(client.clone()));
    set.spawn(node_lifecycle::run(
        client.clone(),
        node_lifecycle::NodeLifecycleConfig {
            grace_period: config.node_monitor_grace_period,
            eviction_timeout: config.pod_eviction_timeout,
            monitor_period: config.node_monitor_period,
            clock: config.clock.clone(),
        },
    ));
    set.spawn(pod_gc::run(client.clone(), config.pod_gc_period));
    set.spawn(replication::run(
        client.clone(),
        &replication::REPLICATION_CONTROLLER,
        config.clock.clone(),
    ));
    set.spawn(replication::run(
        client.clone(),
        &replication::REPLICA_SET,
        config.clock.clone(),
    ));
    set.spawn(deployment::run(client.clone(), config.clock.clone()));
    set.spawn(job::run(client.clone(), config.clock.clone()));
    set.spawn(cronjob::run(client.clone(), config.clock.clone()));
    set.spawn(statefulset::run(client.clone(), config.clock.clone()));
    set.spawn(disruption::run(client.clone(), config.clock.clone()));
    set.spawn(daemonset::run(client.clone(), config.clock.clone()));
    set.spawn(hpa::run(
        client.clone(),
        config.clock.clone(),
        hpa::SYNC_PERIOD,
    ));
    if let Some(signer) = config.legacy_tokens {
        set.spawn(service_account_tokens::run(client.clone(), signer));
    }
    if let Some(ca_pem) = config.root_ca_pem {
        set.spawn(root_ca::run(client.clone(), ca_pem));
    }
    set.spawn(persistent_volume::run(client.clone()));
    set.spawn(volume_protection::run(client.clone()));
    set.spawn(resource_quota::run(client.clone()));
    if let Some(path) = config.local_storage_path {
        set.spawn(local_path::run(client.clone(), path));
    }
    set.spawn(ingress::run(client.clone(), config.create_ingress_class));
    if config.service_lb {
        set.spawn(service_lb::run(client.clone()));
    }
    set.spawn(scheduler::run(client, config.scheduler_metrics));
    set.tasks
}

/// A `JoinSet` whose tasks see the work queue metrics ([`framework::workers::QUEUE_METRICS`]).
struct Spawner {
    tasks: JoinSet<()>,
    metrics: crate::metrics::WorkQueueMetrics,
}

impl Spawner {
    fn new(metrics: crate::metrics::WorkQueueMetrics) -> Spawner {
        Spawner {
            tasks: JoinSet::new(),
            metrics,
        }
    }

    fn spawn(&mut self, task: impl std::future::Future<Output = ()> + Send + 'static) {
        let scoped = framework::workers::QUEUE_METRICS.scope(self.metrics.clone(), task);
        self.tasks.spawn(scoped);
    }
}
