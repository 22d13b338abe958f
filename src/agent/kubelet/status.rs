//! What the kubelet knows about a pod's containers, and the pure functions over it: the
//! next step for a container (restart policy and back-off), the pod phase and the pod
//! status as posted to the API.

use std::net::IpAddr;
use std::time::Duration;

use chrono::{DateTime, SecondsFormat, Utc};
use serde_json::{json, Map, Value};

/// First restart delay after a crash; doubles per crash up to [`MAX_BACKOFF`].
pub const INITIAL_BACKOFF: Duration = Duration::from_secs(10);
pub const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// A container that ran this long before exiting restarts without back-off.
pub const BACKOFF_RESET_AFTER: Duration = Duration::from_secs(600);

/// How a container instance ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Terminated {
    pub exit_code: i32,
    /// Completed, Error, OOMKilled, ContainerCannotRun …
    pub reason: String,
    pub message: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// `containerd://ID`.
    pub container_id: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstanceState {
    Created,
    Running,
    Exited(Terminated),
}

/// One containerd container made for a pod container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Instance {
    pub id: String,
    pub restart_count: u32,
    pub image_id: String,
    pub started_at: Option<DateTime<Utc>>,
    pub state: InstanceState,
}

/// A waiting reason and message (ErrImagePull, CrashLoopBackOff, …).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Waiting {
    pub reason: String,
    pub message: String,
}

/// Everything the kubelet tracks for one container of a pod.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ContainerRecord {
    pub name: String,
    pub image: String,
    /// The newest instance, if any.
    pub current: Option<Instance>,
    /// How the instance before `current` ended (`lastState`).
    pub last_termination: Option<Terminated>,
    /// Why there is no running instance, when there is a reason to tell.
    pub waiting: Option<Waiting>,
    /// Result of the readiness probe; `None`: no probe (ready when running).
    pub probe_ready: Option<bool>,
    /// The startup probe succeeded (or there is none).
    pub started: bool,
}

impl ContainerRecord {
    pub fn new(name: &str, image: &str) -> Self {
        ContainerRecord {
            name: name.to_string(),
            image: image.to_string(),
            started: true,
            ..Default::default()
        }
    }

    pub fn restart_count(&self) -> u32 {
        self.current.as_ref().map_or(0, |i| i.restart_count)
    }

    pub fn is_running(&self) -> bool {
        matches!(
            self.current,
            Some(Instance {
                state: InstanceState::Running,
                ..
            })
        )
    }

    pub fn terminated(&self) -> Option<&Terminated> {
        match &self.current {
            Some(Instance {
                state: InstanceState::Exited(t),
                ..
            }) => Some(t),
            _ => None,
        }
    }

    pub fn ready(&self) -> bool {
        self.is_running() && self.started && self.probe_ready.unwrap_or(true)
    }
}

/// What to do about one container now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Nothing: it runs, or it ended for good.
    Keep,
    /// Create and start an instance with this restart count.
    Start { restart_count: u32 },
    /// Restart, but not before the back-off has passed.
    BackOff { remaining: Duration },
}

/// Whether init container `spec` is a sidecar (`restartPolicy: Always`): it keeps
/// running beside the app containers.
pub fn is_sidecar(spec: &Value) -> bool {
    spec["restartPolicy"] == "Always"
}

/// Whether an exited container is restarted under `policy`.
pub fn should_restart(policy: &str, exit_code: i32) -> bool {
    match policy {
        "Never" => false,
        "OnFailure" => exit_code != 0,
        _ => true,
    }
}

/// The back-off before restart number `level + 1`: none for the first restart, then
/// 10s, 20s, 40s … up to 5 minutes (upstream's CrashLoopBackOff timing).
pub fn backoff_delay(level: u32) -> Duration {
    if level == 0 {
        return Duration::ZERO;
    }
    let factor = 1u32.checked_shl(level - 1).unwrap_or(u32::MAX);
    INITIAL_BACKOFF.saturating_mul(factor).min(MAX_BACKOFF)
}

/// The next step for a container given its record, the restart policy, the back-off
/// level and how long ago its current instance exited (`None` if it has not).
pub fn next_step(
    record: &ContainerRecord,
    policy: &str,
    backoff_level: u32,
    exited_ago: Option<Duration>,
) -> Step {
    let Some(current) = &record.current else {
        return Step::Start { restart_count: 0 };
    };
    match &current.state {
        InstanceState::Running | InstanceState::Created => Step::Keep,
        InstanceState::Exited(t) if !should_restart(policy, t.exit_code) => Step::Keep,
        InstanceState::Exited(_) => {
            let delay = backoff_delay(backoff_level);
            let ago = exited_ago.unwrap_or(Duration::MAX);
            if ago >= delay {
                Step::Start {
                    restart_count: current.restart_count + 1,
                }
            } else {
                Step::BackOff {
                    remaining: delay - ago,
                }
            }
        }
    }
}

/// The pod phase from its containers (upstream `getPhase`, without init containers).
pub fn pod_phase(records: &[ContainerRecord], policy: &str) -> &'static str {
    let (mut pending, mut running, mut stopped, mut succeeded) = (0, 0, 0, 0);
    for r in records {
        if r.is_running() {
            running += 1;
        } else if let Some(t) = r.terminated() {
            stopped += 1;
            if t.exit_code == 0 {
                succeeded += 1;
            }
        } else if r.last_termination.is_some() {
            stopped += 1;
        } else {
            pending += 1;
        }
    }
    if pending > 0 || records.is_empty() {
        return "Pending";
    }
    if running > 0 {
        return "Running";
    }
    if stopped > 0 {
        if policy == "Always" {
            return "Running";
        }
        if stopped == succeeded {
            return "Succeeded";
        }
        if policy == "Never" {
            return "Failed";
        }
        // OnFailure: the failed ones restart.
        let restarting = records
            .iter()
            .any(|r| r.terminated().is_some_and(|t| t.exit_code != 0) || r.terminated().is_none());
        return if restarting { "Running" } else { "Failed" };
    }
    "Pending"
}

pub fn timestamp(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn terminated_json(t: &Terminated) -> Value {
    let mut v = json!({"exitCode": t.exit_code, "reason": t.reason, "containerID": t.container_id});
    if let Some(m) = &t.message {
        v["message"] = json!(m);
    }
    if let Some(s) = t.started_at {
        v["startedAt"] = json!(timestamp(s));
    }
    if let Some(f) = t.finished_at {
        v["finishedAt"] = json!(timestamp(f));
    }
    v
}

/// `pending` is the waiting reason of a container not created yet.
fn container_status(r: &ContainerRecord, image_for_status: &str, pending: &str) -> Value {
    let state = match (&r.waiting, &r.current) {
        (
            _,
            Some(Instance {
                state: InstanceState::Running,
                started_at,
                ..
            }),
        ) => {
            let mut running = json!({});
            if let Some(s) = started_at {
                running["startedAt"] = json!(timestamp(*s));
            }
            json!({ "running": running })
        }
        (Some(w), _) => json!({"waiting": {"reason": w.reason, "message": w.message}}),
        (
            None,
            Some(Instance {
                state: InstanceState::Exited(t),
                ..
            }),
        ) => json!({ "terminated": terminated_json(t) }),
        _ => json!({"waiting": {"reason": pending}}),
    };
    let mut status = json!({
        "name": r.name,
        "image": image_for_status,
        "imageID": r.current.as_ref().map(|i| i.image_id.clone()).unwrap_or_default(),
        "ready": r.ready(),
        "started": r.is_running() && r.started,
        "restartCount": r.restart_count(),
        "state": state,
        "lastState": r.last_termination.as_ref().map_or(json!({}), |t| json!({"terminated": terminated_json(t)})),
    });
    if let Some(i) = &r.current {
        status["containerID"] = json!(format!("containerd://{}", i.id));
    }
    status
}

/// `status.ephemeralContainerStatuses`: the image the spec names, never ready (they
/// take no part in the pod's readiness), waiting `ContainerCreating` until started.
pub fn ephemeral_container_statuses(pod: &Value, records: &[ContainerRecord]) -> Vec<Value> {
    let specs = pod["spec"]["ephemeralContainers"].as_array();
    records
        .iter()
        .map(|r| {
            let image = specs
                .into_iter()
                .flatten()
                .find(|c| c["name"] == r.name.as_str())
                .and_then(|c| c["image"].as_str())
                .unwrap_or(&r.image);
            let mut status = container_status(r, image, "ContainerCreating");
            status["ready"] = json!(false);
            status
        })
        .collect()
}

/// The inputs of a pod status besides the container records.
#[derive(Debug, Clone)]
pub struct PodFacts<'a> {
    pub pod: &'a Value,
    pub pod_ip: Option<IpAddr>,
    pub host_ip: IpAddr,
    pub start_time: DateTime<Utc>,
    pub now: DateTime<Utc>,
    /// Init containers all completed (true when there are none).
    pub initialized: bool,
    /// Set when the pod cannot start at all (e.g. a volume failed), or why it failed.
    pub message: Option<(String, String)>,
    /// The kubelet ended the pod (its activeDeadlineSeconds passed): Failed, whatever
    /// its containers say.
    pub failed: bool,
    /// The newest status known (last posted, else stored): conditions keep their
    /// transition times from it.
    pub previous: &'a Value,
}

/// The pod status. Conditions keep their `lastTransitionTime` from the pod's current
/// status while their value is unchanged, so the same facts give the same status.
pub fn pod_status(
    facts: &PodFacts<'_>,
    init: &[ContainerRecord],
    records: &[ContainerRecord],
) -> Value {
    let spec = &facts.pod["spec"];
    let policy = spec["restartPolicy"].as_str().unwrap_or("Always");
    let phase = if facts.failed {
        "Failed"
    } else if !facts.initialized {
        // A sidecar's exit fails nothing: it restarts whatever the pod's policy.
        let specs = spec["initContainers"]
            .as_array()
            .map_or(&[][..], Vec::as_slice);
        let failed = init
            .iter()
            .zip(specs)
            .filter(|(_, s)| !is_sidecar(s))
            .any(|(r, _)| r.terminated().is_some_and(|t| t.exit_code != 0));
        if failed && policy == "Never" {
            "Failed"
        } else {
            "Pending"
        }
    } else {
        pod_phase(records, policy)
    };
    let previous = &facts.previous["conditions"];
    let condition = |kind: &str, ok: bool, reason: Option<&str>| {
        let status = if ok { "True" } else { "False" };
        let transition = previous
            .as_array()
            .and_then(|cs| cs.iter().find(|c| c["type"] == kind))
            .filter(|c| c["status"] == status)
            .and_then(|c| c["lastTransitionTime"].as_str())
            .map(str::to_string)
            .unwrap_or_else(|| timestamp(facts.now));
        let mut c = json!({"type": kind, "status": status, "lastTransitionTime": transition});
        if let Some(r) = reason {
            c["reason"] = json!(r);
        }
        c
    };
    let terminal = phase == "Succeeded" || phase == "Failed";
    // Sidecars count as upstream's: their readiness is the pod's too.
    let sidecars_ready = spec["initContainers"]
        .as_array()
        .into_iter()
        .flatten()
        .zip(init)
        .filter(|(s, _)| is_sidecar(s))
        .all(|(_, r)| r.ready());
    let containers_ready =
        !records.is_empty() && records.iter().all(ContainerRecord::ready) && sidecars_ready;
    let not_ready_reason = if terminal {
        Some("PodCompleted")
    } else if containers_ready {
        None
    } else {
        Some("ContainersNotReady")
    };
    let initialized_reason = match (facts.initialized, terminal) {
        (true, true) => Some("PodCompleted"),
        (true, false) => None,
        (false, _) => Some("ContainersNotInitialized"),
    };
    let images: Map<String, Value> = spec["containers"]
        .as_array()
        .into_iter()
        .chain(spec["initContainers"].as_array())
        .flatten()
        .filter_map(|c| Some((c["name"].as_str()?.to_string(), c["image"].clone())))
        .collect();
    let statuses = |rs: &[ContainerRecord], pending: &str| -> Vec<Value> {
        rs.iter()
            .map(|r| {
                let image = images
                    .get(&r.name)
                    .and_then(Value::as_str)
                    .unwrap_or(&r.image);
                container_status(r, image, pending)
            })
            .collect()
    };
    let mut status = json!({
        "phase": phase,
        "hostIP": facts.host_ip.to_string(),
        "hostIPs": [{"ip": facts.host_ip.to_string()}],
        "startTime": timestamp(facts.start_time),
        "qosClass": facts.pod["status"]["qosClass"].as_str().map_or_else(|| qos_class(spec), str::to_string),
        "conditions": [
            condition("PodReadyToStartContainers", facts.pod_ip.is_some() || spec["hostNetwork"] == true, None),
            condition("Initialized", facts.initialized, initialized_reason),
            condition("Ready", containers_ready && !terminal, not_ready_reason),
            condition("ContainersReady", containers_ready && !terminal, not_ready_reason),
            condition("PodScheduled", true, None),
        ],
        "containerStatuses": statuses(
            records,
            if facts.initialized { "ContainerCreating" } else { "PodInitializing" },
        ),
    });
    if !init.is_empty() {
        status["initContainerStatuses"] = json!(statuses(init, "PodInitializing"));
    }
    if let Some(ip) = facts.pod_ip {
        status["podIP"] = json!(ip.to_string());
        status["podIPs"] = json!([{"ip": ip.to_string()}]);
    }
    // Null clears what an earlier problem left (the status is written as a merge patch).
    let (reason, message) = match &facts.message {
        Some((r, m)) => (json!(r), json!(m)),
        None => (Value::Null, Value::Null),
    };
    status["reason"] = reason;
    status["message"] = message;
    status
}

/// Adds the `DisruptionTarget` condition of a pod the kubelet ended (upstream sets it
/// with reason `TerminationByKubelet` and the eviction message), true since `at`.
pub fn add_disruption_target(status: &mut Value, message: &str, at: DateTime<Utc>) {
    let condition = json!({
        "type": "DisruptionTarget", "status": "True",
        "reason": crate::agent::kubelet::evictions::TERMINATION_BY_KUBELET,
        "message": message, "lastTransitionTime": timestamp(at),
    });
    if let Some(cs) = status["conditions"].as_array_mut() {
        cs.retain(|c| c["type"] != "DisruptionTarget");
        cs.push(condition);
    } else {
        status["conditions"] = json!([condition]);
    }
}

/// Guaranteed / Burstable / BestEffort from the containers' requests and limits.
pub fn qos_class(spec: &Value) -> String {
    let containers: Vec<&Value> = spec["containers"]
        .as_array()
        .into_iter()
        .chain(spec["initContainers"].as_array())
        .flatten()
        .collect();
    let mut any = false;
    let mut guaranteed = true;
    for c in &containers {
        let r = &c["resources"];
        let set = |k: &str| r[k].as_object().is_some_and(|m| !m.is_empty());
        any |= set("requests") || set("limits");
        for res in ["cpu", "memory"] {
            let limit = &r["limits"][res];
            let request = if r["requests"][res].is_null() {
                limit
            } else {
                &r["requests"][res]
            };
            if limit.is_null() || request != limit {
                guaranteed = false;
            }
        }
    }
    if !any {
        "BestEffort".into()
    } else if guaranteed {
        "Guaranteed".into()
    } else {
        "Burstable".into()
    }
}

/// Whether posting `new` would change the stored `old` status (ignores fields the
/// kubelet does not set).
pub fn status_changed(old: &Value, new: &Value) -> bool {
    let Some(new) = new.as_object() else {
        return false;
    };
    new.iter().any(|(k, v)| &old[k] != v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exited(code: i32, restart_count: u32) -> ContainerRecord {
        let mut r = ContainerRecord::new("c", "busybox");
        r.current = Some(Instance {
            id: format!("u-c-{restart_count}"),
            restart_count,
            image_id: "sha256:x".into(),
            started_at: None,
            state: InstanceState::Exited(Terminated {
                exit_code: code,
                reason: if code == 0 { "Completed" } else { "Error" }.into(),
                message: None,
                started_at: None,
                finished_at: None,
                container_id: "containerd://x".into(),
            }),
        });
        r
    }

    fn running() -> ContainerRecord {
        let mut r = ContainerRecord::new("c", "busybox");
        r.current = Some(Instance {
            id: "u-c-0".into(),
            restart_count: 0,
            image_id: "sha256:x".into(),
            started_at: Some("2024-05-01T10:00:00Z".parse().unwrap()),
            state: InstanceState::Running,
        });
        r
    }

    #[test]
    fn backoff_doubles_from_ten_seconds_to_five_minutes() {
        let secs: Vec<u64> = (0..8).map(|l| backoff_delay(l).as_secs()).collect();
        assert_eq!(secs, vec![0, 10, 20, 40, 80, 160, 300, 300]);
        assert_eq!(backoff_delay(100), MAX_BACKOFF);
    }

    #[test]
    fn restart_policy_decides_restarts() {
        let never_ran = ContainerRecord::new("c", "busybox");
        assert_eq!(
            next_step(&never_ran, "Never", 0, None),
            Step::Start { restart_count: 0 }
        );
        assert_eq!(next_step(&running(), "Always", 0, None), Step::Keep);
        assert_eq!(
            next_step(&exited(0, 0), "Never", 0, Some(Duration::ZERO)),
            Step::Keep
        );
        assert_eq!(
            next_step(&exited(0, 0), "OnFailure", 0, Some(Duration::ZERO)),
            Step::Keep
        );
        assert_eq!(
            next_step(&exited(1, 0), "OnFailure", 0, Some(Duration::ZERO)),
            Step::Start { restart_count: 1 }
        );
        assert_eq!(
            next_step(&exited(0, 3), "Always", 2, Some(Duration::from_secs(5))),
            Step::BackOff {
                remaining: Duration::from_secs(15)
            }
        );
        assert_eq!(
            next_step(&exited(0, 3), "Always", 2, Some(Duration::from_secs(20))),
            Step::Start { restart_count: 4 }
        );
    }

    #[test]
    fn phase_follows_upstream_rules() {
        assert_eq!(
            pod_phase(&[ContainerRecord::new("c", "b")], "Always"),
            "Pending"
        );
        assert_eq!(pod_phase(&[running()], "Always"), "Running");
        assert_eq!(pod_phase(&[exited(0, 0)], "Never"), "Succeeded");
        assert_eq!(pod_phase(&[exited(1, 0)], "Never"), "Failed");
        assert_eq!(pod_phase(&[exited(1, 0)], "Always"), "Running");
        assert_eq!(pod_phase(&[exited(1, 0)], "OnFailure"), "Running");
        assert_eq!(pod_phase(&[exited(0, 0), running()], "Never"), "Running");
        let mut crashing = ContainerRecord::new("c", "b");
        crashing.last_termination = exited(1, 0).terminated().cloned();
        crashing.waiting = Some(Waiting {
            reason: "CrashLoopBackOff".into(),
            message: String::new(),
        });
        assert_eq!(pod_phase(&[crashing], "Always"), "Running");
    }

    #[test]
    fn status_reports_ready_running_container_with_ip() {
        let pod = json!({
            "metadata": {"name": "p", "namespace": "d"},
            "spec": {"containers": [{"name": "c", "image": "busybox:test"}]},
            "status": {"phase": "Pending", "conditions": [
                {"type": "PodScheduled", "status": "True", "lastTransitionTime": "2024-01-01T00:00:00Z"}
            ]}
        });
        let now: DateTime<Utc> = "2024-05-01T10:00:05Z".parse().unwrap();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: Some("10.42.0.5".parse().unwrap()),
            host_ip: "192.168.1.2".parse().unwrap(),
            start_time: now,
            now,
            initialized: true,
            message: None,
            failed: false,
            previous: &pod["status"],
        };
        let s = pod_status(&facts, &[], &[running()]);
        assert_eq!(s["phase"], "Running");
        assert_eq!(s["podIP"], "10.42.0.5");
        assert_eq!(s["qosClass"], "BestEffort");
        let cs = &s["containerStatuses"][0];
        assert_eq!(cs["image"], "busybox:test");
        assert_eq!(cs["ready"], true);
        assert_eq!(cs["containerID"], "containerd://u-c-0");
        assert_eq!(cs["state"]["running"]["startedAt"], "2024-05-01T10:00:00Z");
        let cond = |t: &str| {
            s["conditions"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["type"] == t)
                .unwrap()
                .clone()
        };
        assert_eq!(cond("Ready")["status"], "True");
        assert_eq!(
            cond("PodScheduled")["lastTransitionTime"],
            "2024-01-01T00:00:00Z"
        );
        assert_eq!(cond("Ready")["lastTransitionTime"], "2024-05-01T10:00:05Z");
        // The same facts later give the same status: no write.
        let mut stored = pod.clone();
        stored["status"] = s.clone();
        let later = PodFacts {
            pod: &stored,
            now: now + chrono::Duration::seconds(30),
            previous: &stored["status"],
            ..facts
        };
        assert!(!status_changed(
            &stored["status"],
            &pod_status(&later, &[], &[running()])
        ));
    }

    #[test]
    fn crash_loop_shows_waiting_with_last_state() {
        let mut r = exited(1, 2);
        r.last_termination = r.terminated().cloned();
        r.waiting = Some(Waiting {
            reason: "CrashLoopBackOff".into(),
            message: "back-off 20s restarting failed container=c".into(),
        });
        let pod = json!({"spec": {"containers": [{"name": "c", "image": "busybox"}]}});
        let now = Utc::now();
        let facts = PodFacts {
            pod: &pod,
            pod_ip: None,
            host_ip: "192.168.1.2".parse().unwrap(),
            start_time: now,
            now,
            initialized: true,
            message: None,
            failed: false,
            previous: &Value::Null,
        };
        let s = pod_status(&facts, &[], &[r]);
        let cs = &s["containerStatuses"][0];
        assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
        assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
        assert_eq!(cs["restartCount"], 2);
        assert_eq!(cs["ready"], false);
    }

    #[test]
    fn qos_classes() {
        assert_eq!(qos_class(&json!({"containers": [{}]})), "BestEffort");
        let g = json!({"containers": [{"resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]});
        assert_eq!(qos_class(&g), "Guaranteed");
        let b = json!({"containers": [{"resources": {"requests": {"cpu": "1"}}}]});
        assert_eq!(qos_class(&b), "Burstable");
    }
}
