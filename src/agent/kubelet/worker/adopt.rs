//! Re-adoption: containers a previous agent made for the pod become its current instances,
//! with restart counts, back-off and probe results carried over.

use serde_json::Value;
use tokio::time::Instant;
use tracing::debug;

use super::{chrono_ago, exit_reason, Group, PodWorker, UNKNOWN_EXIT_CODE};
use crate::agent::kubelet::container::{
    CONTAINER_IMAGE_LABEL, CONTAINER_KIND_LABEL, CONTAINER_NAME_LABEL, RESTART_COUNT_LABEL,
};
use crate::agent::kubelet::status::{Instance, InstanceState, Terminated};
use crate::agent::runtime::{ContainerState, ContainerSummary};

impl PodWorker {
    /// Takes over containers found in the runtime: the newest instance of each container
    /// becomes its current one; older instances are stale and removed on the first sync.
    pub(super) fn adopt(&mut self, mut found: Vec<ContainerSummary>) {
        let restart = |c: &ContainerSummary| -> u32 {
            c.labels
                .get(RESTART_COUNT_LABEL)
                .and_then(|r| r.parse().ok())
                .unwrap_or(0)
        };
        found.sort_by_key(|c| std::cmp::Reverse(restart(c)));
        let previous = self.pod["status"].clone();
        for c in found {
            let name = c
                .labels
                .get(CONTAINER_NAME_LABEL)
                .cloned()
                .unwrap_or_default();
            let group = Group::from_label(c.labels.get(CONTAINER_KIND_LABEL).map(String::as_str));
            let records = match group {
                Group::Init => &mut self.init,
                Group::App => &mut self.apps,
                Group::Ephemeral => &mut self.ephemeral,
            };
            let Some(record) = records.iter_mut().find(|r| r.name == name) else {
                continue;
            };
            if record.current.is_some() {
                continue;
            }
            let container_id = format!("containerd://{}", c.id);
            let field = match group {
                Group::Init => "initContainerStatuses",
                Group::App => "containerStatuses",
                Group::Ephemeral => "ephemeralContainerStatuses",
            };
            let known = previous[field]
                .as_array()
                .into_iter()
                .flatten()
                .find(|s| s["name"] == name.as_str())
                .cloned()
                .unwrap_or_default();
            let same = known["containerID"] == container_id.as_str();
            let started_at = same
                .then(|| known["state"]["running"]["startedAt"].as_str())
                .flatten()
                .and_then(|s| s.parse().ok());
            if same {
                record.last_termination = parse_terminated(&known["lastState"]["terminated"]);
            }
            // Created and never seen running (the agent stopped between create and
            // start): started afresh whatever the restart policy, as upstream's kubelet
            // always restarts a container in the created state. The stale container is
            // replaced when its instance is created again.
            if c.state == ContainerState::Created && started_at.is_none() {
                debug!(pod = %self.name(), container = %name, id = %c.id, "container was created but never started; starting it");
                continue;
            }
            let state = match c.state {
                ContainerState::Running { .. } => InstanceState::Running,
                ContainerState::Exited {
                    exit_code,
                    finished_at,
                    oom_killed,
                } => {
                    let ago = chrono_ago(finished_at);
                    self.track.entry(name.clone()).or_default().exited_at =
                        Some(Instant::now().checked_sub(ago).unwrap_or_else(Instant::now));
                    InstanceState::Exited(Terminated {
                        exit_code: exit_code as i32,
                        reason: exit_reason(exit_code, oom_killed).into(),
                        message: None,
                        started_at,
                        finished_at,
                        container_id: container_id.clone(),
                    })
                }
                // No running task of a container that ran (the node rebooted): the
                // instance counts as ended; the restart policy decides what comes next.
                ContainerState::Created | ContainerState::Unknown => {
                    self.track.entry(name.clone()).or_default().exited_at = Some(Instant::now());
                    InstanceState::Exited(Terminated {
                        exit_code: UNKNOWN_EXIT_CODE,
                        reason: "Unknown".into(),
                        message: Some(
                            "the container was not running when the agent started".into(),
                        ),
                        started_at,
                        finished_at: None,
                        container_id: container_id.clone(),
                    })
                }
            };
            let restart_count = restart(&c);
            let track = self.track.entry(name.clone()).or_default();
            // Crashes before this instance count towards its back-off.
            track.backoff_level = restart_count;
            let ran = chrono_ago(started_at);
            track.started = Some(Instant::now().checked_sub(ran).unwrap_or_else(Instant::now));
            if same {
                // Probe results carry over: a ready container stays ready.
                record.started = known["started"].as_bool().unwrap_or(true);
                if known["ready"] == true {
                    record.probe_ready = Some(true);
                }
            }
            if let Some(image) = c.labels.get(CONTAINER_IMAGE_LABEL) {
                record.image = image.clone();
            }
            record.current = Some(Instance {
                id: c.id.clone(),
                restart_count,
                image_id: known["imageID"].as_str().unwrap_or("").to_string(),
                started_at,
                state,
            });
            debug!(pod = %self.name(), container = %name, id = %c.id, "re-adopted container");
        }
    }
}

fn parse_terminated(v: &Value) -> Option<Terminated> {
    let obj = v.as_object()?;
    Some(Terminated {
        exit_code: obj.get("exitCode")?.as_i64()? as i32,
        reason: v["reason"].as_str().unwrap_or("").to_string(),
        message: v["message"].as_str().map(str::to_string),
        started_at: v["startedAt"].as_str().and_then(|s| s.parse().ok()),
        finished_at: v["finishedAt"].as_str().and_then(|s| s.parse().ok()),
        container_id: v["containerID"].as_str().unwrap_or("").to_string(),
    })
}
