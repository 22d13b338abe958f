//! containerd's event stream (`/containerd.services.events.v1.Events/Subscribe`): the
//! exits and OOM kills of the namespace's tasks, so the kubelet learns of them without
//! polling.

use containerd_client::events::{TaskExit, TaskOom};
use containerd_client::services::v1::SubscribeRequest;
use prost::Message;
use tokio::sync::mpsc;
use tracing::debug;

use super::{grpc, ContainerdRuntime};
use crate::agent::runtime::{ContainerEvent, Result};

/// Topic of a task's process exit.
const TASK_EXIT_TOPIC: &str = "/tasks/exit";
/// Topic of an OOM kill in a task's cgroup.
const TASK_OOM_TOPIC: &str = "/tasks/oom";

/// The subscription filters: these topics in `namespace` (filters are alternatives).
pub fn subscribe_filters(namespace: &str) -> Vec<String> {
    [TASK_EXIT_TOPIC, TASK_OOM_TOPIC]
        .iter()
        .map(|topic| format!("namespace=={namespace},topic==\"{topic}\""))
        .collect()
}

/// The container event an envelope of `topic` carrying `payload` means, if any: the
/// exit of a container's main process (not of an exec in it) or an OOM kill.
pub fn decode_event(topic: &str, payload: &[u8]) -> Option<ContainerEvent> {
    match topic {
        TASK_EXIT_TOPIC => {
            let exit = TaskExit::decode(payload).ok()?;
            // An exec's exit names its exec id; the main process's is the container's.
            (exit.id.is_empty() || exit.id == exit.container_id).then_some(ContainerEvent::Exited {
                id: exit.container_id,
            })
        }
        TASK_OOM_TOPIC => {
            let oom = TaskOom::decode(payload).ok()?;
            Some(ContainerEvent::OomKilled {
                id: oom.container_id,
            })
        }
        _ => None,
    }
}

impl ContainerdRuntime {
    pub(super) async fn follow_task_events(&self, out: mpsc::Sender<ContainerEvent>) -> Result<()> {
        let filters = subscribe_filters(&self.config.namespace);
        let mut stream = self
            .client
            .events()
            .subscribe(self.request(SubscribeRequest { filters }, None))
            .await
            .map_err(grpc("subscribe to events"))?
            .into_inner();
        debug!(namespace = %self.config.namespace, "following containerd's task events");
        while let Some(envelope) = stream.message().await.map_err(grpc("receive event"))? {
            let Some(payload) = envelope.event else {
                continue;
            };
            let Some(event) = decode_event(&envelope.topic, &payload.value) else {
                continue;
            };
            if out.send(event).await.is_err() {
                return Ok(());
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_name_the_namespace_and_both_topics() {
        assert_eq!(
            subscribe_filters("orc"),
            vec![
                "namespace==orc,topic==\"/tasks/exit\"".to_string(),
                "namespace==orc,topic==\"/tasks/oom\"".to_string(),
            ]
        );
    }

    #[test]
    fn a_main_process_exit_is_a_container_exit_and_an_exec_exit_is_not() {
        let main = TaskExit {
            container_id: "c1".into(),
            id: "c1".into(),
            pid: 10,
            exit_status: 1,
            exited_at: None,
        };
        assert_eq!(
            decode_event(TASK_EXIT_TOPIC, &main.encode_to_vec()),
            Some(ContainerEvent::Exited { id: "c1".into() })
        );
        let exec = TaskExit {
            id: "exec-7".into(),
            ..main
        };
        assert_eq!(decode_event(TASK_EXIT_TOPIC, &exec.encode_to_vec()), None);
    }

    #[test]
    fn an_oom_names_its_container_and_other_topics_are_ignored() {
        let oom = TaskOom {
            container_id: "c2".into(),
        };
        assert_eq!(
            decode_event(TASK_OOM_TOPIC, &oom.encode_to_vec()),
            Some(ContainerEvent::OomKilled { id: "c2".into() })
        );
        assert_eq!(decode_event("/tasks/start", &oom.encode_to_vec()), None);
        assert_eq!(decode_event(TASK_EXIT_TOPIC, &[0xff, 0xff]), None);
    }
}
