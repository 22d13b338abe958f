//! Pod cells: the STATUS reason, READY and RESTARTS columns as kubectl shows them.

use chrono::{DateTime, Utc};
use serde_json::{json, Value};

use super::cells::{age, arr, human_duration, int, meta_str, or_none, parse_time, str_at};

/// Upstream's label for a pod whose node went away (`NodeUnreachablePodReason`).
const NODE_LOST_REASON: &str = "NodeLost";

pub(super) fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let init_specs = arr(&spec["initContainers"]);
    let restartable: Vec<&str> = init_specs
        .iter()
        .filter(|c| str_at(&c["restartPolicy"]) == "Always")
        .map(|c| str_at(&c["name"]))
        .collect();
    let total = arr(&spec["containers"]).len() + restartable.len();

    let phase = str_at(&status["phase"]);
    let mut reason = match str_at(&status["reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let gated = arr(&status["conditions"])
        .iter()
        .any(|c| str_at(&c["type"]) == "PodScheduled" && str_at(&c["reason"]) == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".into();
    }

    let mut restarts = 0;
    let mut restartable_restarts = 0;
    let mut ready = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_restartable_restart: Option<DateTime<Utc>> = None;
    let mut initializing = false;
    for (i, c) in arr(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&c["restartCount"]);
        let finished = last_finished_at(c);
        restarts += count;
        last_restart = later(last_restart, finished);
        let is_restartable = restartable.contains(&str_at(&c["name"]));
        if is_restartable {
            restartable_restarts += count;
            last_restartable_restart = later(last_restartable_restart, finished);
        }
        let terminated = c["state"]["terminated"].as_object();
        let waiting_reason = str_at(&c["state"]["waiting"]["reason"]);
        if terminated.is_some() && int(&c["state"]["terminated"]["exitCode"]) == 0 {
            continue;
        }
        if is_restartable && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if terminated.is_some() {
            reason = format!("Init:{}", terminated_reason(&c["state"]["terminated"]));
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(status, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in arr(&status["containerStatuses"]).iter().rev() {
            restarts += int(&c["restartCount"]);
            last_restart = later(last_restart, last_finished_at(c));
            let state = &c["state"];
            let waiting_reason = str_at(&state["waiting"]["reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if state["terminated"].is_object() {
                reason = terminated_reason(&state["terminated"]);
            } else if c["ready"].as_bool() == Some(true) && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while another still runs is not "Completed".
        if reason == "Completed" && has_running {
            reason = if has_condition(status, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = !meta_str(pod, "deletionTimestamp").is_empty();
    if deleting && str_at(&status["reason"]) == NODE_LOST_REASON {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let pod_ip = arr(&status["podIPs"])
        .first()
        .map(|p| str_at(&p["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| str_at(&status["podIP"]));
    let gates = arr(&spec["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(&status["conditions"]);
        let passed = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| str_at(&c["status"]) == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };

    vec![
        json!(meta_str(pod, "name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, now)),
        json!(or_none(pod_ip)),
        json!(or_none(str_at(&spec["nodeName"]))),
        json!(or_none(str_at(&status["nominatedNodeName"]))),
        json!(readiness_gates),
    ]
}

/// A terminated container's reason, else `Signal:N` / `ExitCode:N` (upstream's fallbacks).
fn terminated_reason(terminated: &Value) -> String {
    match str_at(&terminated["reason"]) {
        "" => match int(&terminated["signal"]) {
            0 => format!("ExitCode:{}", int(&terminated["exitCode"])),
            signal => format!("Signal:{signal}"),
        },
        r => r.to_string(),
    }
}

fn last_finished_at(status: &Value) -> Option<DateTime<Utc>> {
    parse_time(&status["lastState"]["terminated"]["finishedAt"])
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn has_condition(status: &Value, ty: &str) -> bool {
    arr(&status["conditions"])
        .iter()
        .any(|c| str_at(&c["type"]) == ty && str_at(&c["status"]) == "True")
}

#[cfg(test)]
mod tests {
    use super::super::negotiation::IncludeObject;
    use super::super::RowPrinter;
    use super::super::{table, POD};
    use crate::api::table::test_support::{ago, cells, now, pod};
    use serde_json::json;

    #[test]
    fn running_pod_shows_ready_ip_and_node() {
        let p = pod(json!({
            "phase": "Running",
            "podIP": "10.42.0.5",
            "podIPs": [{"ip": "10.42.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": ago(200)}},
            }],
        }));
        assert_eq!(
            cells(&POD, &p),
            [
                "web",
                "1/1",
                "Running",
                "0",
                "5m",
                "10.42.0.5",
                "n1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pending_pod_without_ip_or_node_shows_none() {
        let mut p = pod(json!({"phase": "Pending"}));
        p["spec"].as_object_mut().unwrap().remove("nodeName");
        assert_eq!(
            cells(&POD, &p),
            ["web", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"]
        );
    }

    #[test]
    fn crash_looping_pod_shows_reason_and_last_restart() {
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}},
            }],
        }));
        let c = cells(&POD, &p);
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "3 (5m ago)");
    }

    #[test]
    fn restarts_without_finish_time_show_only_the_count() {
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 2,
                "state": {"running": {}},
            }],
        }));
        assert_eq!(cells(&POD, &p)[3], "2");
    }

    #[test]
    fn image_pull_errors_and_container_creating_show_waiting_reason() {
        for reason in ["ErrImagePull", "ImagePullBackOff", "ContainerCreating"] {
            let p = pod(json!({
                "phase": "Pending",
                "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason}},
                }],
            }));
            assert_eq!(cells(&POD, &p)[2], reason);
        }
    }

    #[test]
    fn oom_killed_and_reasonless_terminations() {
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            }],
        }));
        assert_eq!(cells(&POD, &p)[2], "OOMKilled");
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 2}}}],
        }));
        assert_eq!(cells(&POD, &p)[2], "ExitCode:2");
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 143, "signal": 15}}}],
        }));
        assert_eq!(cells(&POD, &p)[2], "Signal:15");
    }

    #[test]
    fn first_container_reason_wins() {
        let mut p = pod(json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                {"name": "b", "state": {"waiting": {"reason": "ErrImagePull"}}},
            ],
        }));
        p["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert_eq!(cells(&POD, &p)[..3], ["web", "0/2", "CrashLoopBackOff"]);
    }

    #[test]
    fn terminating_pod_shows_terminating_unless_finished() {
        let mut p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}],
        }));
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cells(&POD, &p)[2], "Terminating");
        p["status"]["phase"] = json!("Succeeded");
        p["status"]["containerStatuses"] = json!([{"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]);
        assert_eq!(cells(&POD, &p)[2], "Completed");
        p["status"]["phase"] = json!("Running");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells(&POD, &p)[2], "Unknown");
    }

    #[test]
    fn completed_pod_with_init_containers() {
        let mut p = pod(json!({
            "phase": "Succeeded",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{
                "name": "setup", "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }],
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }],
        }));
        p["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox"}]);
        assert_eq!(cells(&POD, &p)[..4], ["web", "0/1", "Completed", "0"]);
        let t = table(&POD, &[&p], IncludeObject::Metadata, now(), json!({}));
        assert_eq!(
            t["rows"][0]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                    "message": "The pod has completed successfully."}])
        );
    }

    #[test]
    fn initializing_pod_shows_init_progress() {
        let mut p = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "one", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "two", "restartCount": 0, "state": {"running": {}}},
            ],
            "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}],
        }));
        p["spec"]["initContainers"] = json!([{"name": "one"}, {"name": "two"}]);
        assert_eq!(cells(&POD, &p)[..3], ["web", "0/1", "Init:1/2"]);

        p["status"]["initContainerStatuses"] = json!([
            {"name": "one", "state": {"waiting": {"reason": "PodInitializing"}}},
        ]);
        p["spec"]["initContainers"] = json!([{"name": "one"}]);
        assert_eq!(cells(&POD, &p)[2], "Init:0/1");
    }

    #[test]
    fn failing_init_container_shows_init_reason_and_its_restarts() {
        let mut p = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [{
                "name": "setup", "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
            }],
            "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
        }));
        p["spec"]["initContainers"] = json!([{"name": "setup"}]);
        assert_eq!(
            cells(&POD, &p)[2..4],
            ["Init:CrashLoopBackOff", "4 (30s ago)"]
        );

        p["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(cells(&POD, &p)[2], "Init:ExitCode:3");
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(cells(&POD, &p)[2], "Init:Error");
    }

    #[test]
    fn sidecar_init_containers_count_as_containers() {
        let mut p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{
                "name": "proxy", "ready": true, "started": true, "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}},
            }],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}],
        }));
        p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        assert_eq!(cells(&POD, &p)[1..4], ["2/2", "Running", "1 (90s ago)"]);
    }

    #[test]
    fn completed_container_beside_a_running_one_is_running() {
        let mut p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "ready": true, "state": {"running": {}}},
            ],
        }));
        p["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert_eq!(cells(&POD, &p)[1..3], ["1/2", "Running"]);
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        assert_eq!(cells(&POD, &p)[2], "NotReady");
    }

    #[test]
    fn readiness_gates_and_scheduling_gates() {
        let mut p = pod(json!({
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                {"type": "example.com/lb", "status": "True"},
            ],
        }));
        p["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
        let c = cells(&POD, &p);
        assert_eq!(c[2], "SchedulingGated");
        assert_eq!(c[8], "1/2");
    }

    #[test]
    fn pod_cells_match_columns() {
        let p = pod(json!({}));
        assert_eq!(POD.row(&p, now()).len(), POD.column_definitions().len());
    }
}
