use std::sync::Mutex;

use serde_json::json;

use super::thresholds::Signal;
use super::*;

fn config(hard: &str, soft: &str, grace: &str, reclaim: &str) -> EvictionConfig {
    EvictionConfig {
        thresholds: Thresholds::parse(hard, soft, grace, reclaim).unwrap(),
        pressure_transition_period: Duration::from_secs(30),
        ..EvictionConfig::default()
    }
}

fn memory(available_mi: i64) -> Observations {
    Observations::from([(
        Signal::MemoryAvailable,
        Observation {
            available: available_mi << 20,
            capacity: 1024 << 20,
        },
    )])
}

#[test]
fn a_hard_threshold_reports_pressure_and_acts_at_once() {
    let c = config("memory.available<100Mi", "", "", "");
    let mut s = State::default();
    let t0 = Instant::now();
    let d = s.step(&c, &memory(500), t0);
    assert_eq!(d.pressure, Pressure::default());
    assert_eq!(d.reclaim, None);
    let d = s.step(&c, &memory(50), t0 + Duration::from_secs(10));
    assert!(d.pressure.memory && !d.pressure.disk);
    let (t, o) = d.reclaim.unwrap();
    assert_eq!(t.signal, Signal::MemoryAvailable);
    assert_eq!(o.available, 50 << 20);
    assert_eq!(
        eviction_message(&t, &o),
        "The node was low on resource: memory. Threshold quantity: 100Mi, available: 50Mi. "
    );
}

#[test]
fn the_condition_holds_for_the_transition_period_after_the_threshold_clears() {
    let c = config("memory.available<100Mi", "", "", "");
    let mut s = State::default();
    let t0 = Instant::now();
    assert!(s.step(&c, &memory(50), t0).pressure.memory);
    let d = s.step(&c, &memory(500), t0 + Duration::from_secs(10));
    assert!(d.pressure.memory, "within the transition period");
    assert_eq!(d.reclaim, None, "nothing to reclaim any more");
    let d = s.step(&c, &memory(500), t0 + Duration::from_secs(31));
    assert!(!d.pressure.memory);
}

#[test]
fn a_soft_threshold_waits_its_grace_period_before_acting() {
    let c = config("", "memory.available<200Mi", "memory.available=1m", "");
    let mut s = State::default();
    let t0 = Instant::now();
    let d = s.step(&c, &memory(150), t0);
    assert!(d.pressure.memory, "pressure is reported at once");
    assert_eq!(d.reclaim, None);
    assert_eq!(
        s.step(&c, &memory(150), t0 + Duration::from_secs(59))
            .reclaim,
        None
    );
    let d = s.step(&c, &memory(150), t0 + Duration::from_secs(60));
    let (t, _) = d.reclaim.unwrap();
    assert!(!t.hard);
    assert_eq!(
        eviction_grace(&t, 30, Duration::from_secs(10)),
        Duration::from_secs(10)
    );
    assert_eq!(
        eviction_grace(&t, 5, Duration::ZERO),
        Duration::from_secs(5)
    );
    // Recovering resets the clock.
    s.step(&c, &memory(500), t0 + Duration::from_secs(61));
    assert_eq!(
        s.step(&c, &memory(150), t0 + Duration::from_secs(62))
            .reclaim,
        None
    );
}

#[test]
fn a_met_threshold_holds_until_its_minimum_reclaim_is_free() {
    let c = config("memory.available<100Mi", "", "", "memory.available=100Mi");
    let mut s = State::default();
    let t0 = Instant::now();
    assert!(s.step(&c, &memory(50), t0).reclaim.is_some());
    assert!(
        s.step(&c, &memory(150), t0 + Duration::from_secs(1))
            .reclaim
            .is_some(),
        "150Mi free is not 100Mi + 100Mi"
    );
    assert!(s
        .step(&c, &memory(250), t0 + Duration::from_secs(2))
        .reclaim
        .is_none());
    let hard = &c.thresholds.0[0];
    assert_eq!(
        eviction_grace(hard, 30, Duration::ZERO),
        HARD_EVICTION_GRACE
    );
}

#[test]
fn memory_is_reclaimed_before_disk() {
    let c = config("memory.available<100Mi,nodefs.available<50%", "", "", "");
    let mut obs = memory(50);
    obs.insert(
        Signal::NodeFsAvailable,
        Observation {
            available: 10,
            capacity: 100,
        },
    );
    let d = State::default().step(&c, &obs, Instant::now());
    assert!(d.pressure.memory && d.pressure.disk);
    assert_eq!(d.reclaim.unwrap().0.signal, Signal::MemoryAvailable);
}

struct FakeProbe {
    observations: Mutex<Observations>,
    usage: BTreeMap<String, i64>,
}

impl Probe for FakeProbe {
    fn observe(&self) -> Observations {
        self.observations.lock().unwrap().clone()
    }
    fn pod_memory(&self, uid: &str) -> Option<i64> {
        self.usage.get(uid).copied()
    }
    fn pod_disk(&self, _uid: &str) -> Option<i64> {
        Some(0)
    }
}

struct FakePods(Mutex<Vec<Value>>);

impl PodSource for FakePods {
    fn active_pods(&self) -> BoxFuture<'_, Result<Vec<Value>, String>> {
        let pods = self.0.lock().unwrap().clone();
        Box::pin(async move { Ok(pods) })
    }
}

struct RecordingReclaimer {
    calls: Mutex<Vec<Resource>>,
    frees: Arc<FakeProbe>,
}

impl NodeReclaimer for RecordingReclaimer {
    fn name(&self) -> &'static str {
        "recording"
    }
    fn reclaim<'a>(
        &'a self,
        resource: Resource,
        _active: &'a HashSet<String>,
    ) -> BoxFuture<'a, Result<(), String>> {
        self.calls.lock().unwrap().push(resource);
        self.frees.observations.lock().unwrap().insert(
            Signal::NodeFsAvailable,
            Observation {
                available: 90,
                capacity: 100,
            },
        );
        Box::pin(async { Ok(()) })
    }
}

fn pod(name: &str, priority: i64, memory_request: Option<&str>) -> Value {
    let resources = match memory_request {
        Some(r) => json!({"requests": {"memory": r}, "limits": {"memory": r}}),
        None => json!({}),
    };
    json!({
        "metadata": {"name": name, "namespace": "default", "uid": name},
        "spec": {"priority": priority, "terminationGracePeriodSeconds": 30,
                 "containers": [{"name": "c", "resources": resources}]},
        "status": {"phase": "Running"},
    })
}

#[tokio::test(start_paused = true)]
async fn one_pass_evicts_the_best_effort_pod_and_never_a_critical_one() {
    let probe = Arc::new(FakeProbe {
        observations: Mutex::new(memory(10)),
        usage: BTreeMap::from([
            ("guaranteed".to_string(), 5 << 20),
            ("best-effort".to_string(), 1 << 20),
            ("critical".to_string(), 900 << 20),
        ]),
    });
    let pods = Arc::new(FakePods(Mutex::new(vec![
        pod("critical", 2_000_001_000, None),
        pod("guaranteed", 0, Some("64Mi")),
        pod("best-effort", 0, None),
    ])));
    let (tx, rx) = watch::channel(Pressure::default());
    let evictions = Arc::new(Evictions::default());
    let manager = Manager {
        config: config("memory.available<100Mi", "", "", ""),
        probe,
        pods: pods.clone(),
        evictions: evictions.clone(),
        reclaimers: vec![],
        pressure: tx,
    };
    let mut state = State::default();
    // The pod never goes away in this fake: the pass waits out the cleanup timeout.
    tokio::time::timeout(Duration::from_secs(120), manager.pass(&mut state))
        .await
        .expect("the pass ends (deadlocked?)");
    assert!(rx.borrow().memory);
    let order = evictions
        .take("best-effort")
        .expect("best-effort evicted first");
    assert_eq!(order.grace, HARD_EVICTION_GRACE);
    assert!(order
        .message
        .starts_with("The node was low on resource: memory."));
    assert_eq!(evictions.take("guaranteed"), None, "one pod per pass");
    // Next pass: only the critical pod and the guaranteed one remain.
    pods.0
        .lock()
        .unwrap()
        .retain(|p| p["metadata"]["uid"] != "best-effort");
    tokio::time::timeout(Duration::from_secs(120), manager.pass(&mut state))
        .await
        .expect("the pass ends (deadlocked?)");
    assert!(evictions.take("guaranteed").is_some());
    pods.0
        .lock()
        .unwrap()
        .retain(|p| p["metadata"]["uid"] != "guaranteed");
    tokio::time::timeout(Duration::from_secs(120), manager.pass(&mut state))
        .await
        .expect("the pass ends (deadlocked?)");
    assert_eq!(evictions.take("critical"), None, "critical pods stay");
}

#[tokio::test(start_paused = true)]
async fn disk_pressure_tries_node_level_reclaim_before_evicting() {
    let probe = Arc::new(FakeProbe {
        observations: Mutex::new(Observations::from([(
            Signal::NodeFsAvailable,
            Observation {
                available: 5,
                capacity: 100,
            },
        )])),
        usage: BTreeMap::new(),
    });
    let reclaimer = Arc::new(RecordingReclaimer {
        calls: Mutex::new(vec![]),
        frees: probe.clone(),
    });
    let evictions = Arc::new(Evictions::default());
    let (tx, rx) = watch::channel(Pressure::default());
    let manager = Manager {
        config: config("nodefs.available<10%", "", "", ""),
        probe,
        pods: Arc::new(FakePods(Mutex::new(vec![pod("p", 0, None)]))),
        evictions: evictions.clone(),
        reclaimers: vec![reclaimer.clone()],
        pressure: tx,
    };
    tokio::time::timeout(
        Duration::from_secs(120),
        manager.pass(&mut State::default()),
    )
    .await
    .expect("the pass ends (deadlocked?)");
    assert!(rx.borrow().disk);
    assert_eq!(*reclaimer.calls.lock().unwrap(), [Resource::Disk]);
    assert_eq!(evictions.take("p"), None, "reclaiming freed enough");
}

#[tokio::test]
async fn dead_containers_of_pods_gone_from_the_node_are_removed_for_disk_only() {
    use crate::agent::kubelet::container::POD_UID_LABEL;
    use crate::agent::runtime::{ContainerConfig, ContainerRuntime, FakeRuntime};
    let rt = Arc::new(FakeRuntime::new());
    rt.add_image("busybox");
    for (id, uid, running) in [
        ("gone-dead", "gone", false),
        ("gone-running", "gone", true),
        ("kept-dead", "active", false),
    ] {
        let mut config = ContainerConfig::new(id, "busybox", std::path::PathBuf::from("/dev/null"));
        config
            .labels
            .insert(POD_UID_LABEL.to_string(), uid.to_string());
        rt.create_container(&config).await.unwrap();
        rt.start(id).await.unwrap();
        if !running {
            rt.exit(id, 0, false);
        }
    }
    let reclaimer = DeadContainers {
        runtime: rt.clone(),
    };
    let active = HashSet::from(["active".to_string()]);
    reclaimer.reclaim(Resource::Memory, &active).await.unwrap();
    assert_eq!(
        rt.list_containers().await.unwrap().len(),
        3,
        "memory: nothing to gain"
    );
    reclaimer.reclaim(Resource::Disk, &active).await.unwrap();
    let mut left: Vec<String> = rt
        .list_containers()
        .await
        .unwrap()
        .into_iter()
        .map(|c| c.id)
        .collect();
    left.sort();
    assert_eq!(left, ["gone-running", "kept-dead"]);
}
