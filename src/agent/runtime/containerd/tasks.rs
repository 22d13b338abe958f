//! Containers and their tasks: created from an image's snapshot, started with orc's
//! logger on stdio, signalled, stopped, waited for, listed and removed.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use containerd_client::services::v1::container::Runtime as ContainerRuntimeInfo;
use containerd_client::services::v1::snapshots::{MountsRequest, PrepareSnapshotRequest};
use containerd_client::services::v1::{
    Container, CreateContainerRequest, CreateTaskRequest, DeleteContainerRequest,
    DeleteTaskRequest, GetContainerRequest, GetRequest, KillRequest, ListContainersRequest,
    ListTasksRequest, StartRequest, WaitRequest,
};
use containerd_client::tonic::{Code, Status};
use containerd_client::types::v1::{Process, Status as TaskStatus};
use containerd_client::types::Mount as PbMount;
use tracing::info;

use super::{
    grpc, shim_groups, stdin, timestamp, ContainerdRuntime, CGROUP_PATH_LABEL, KILL_WAIT,
    LOG_PATH_LABEL, SPEC_TYPE_URL,
};
use crate::agent::runtime::{
    cgroup, logger, spec, ContainerConfig, ContainerState, ContainerStatus, ContainerSummary,
    Reference, Result, RuntimeError, SIGKILL,
};

/// A container just created, with what starting it needs.
pub(super) struct Created {
    /// The root filesystem mounts of its snapshot (as preparing it answered).
    mounts: Vec<PbMount>,
    log_path: PathBuf,
    /// Its runtime's options (`None`: the shim's defaults, runc).
    options: Option<prost_types::Any>,
    /// Its stdin and terminal.
    io: stdin::TaskIo,
}

impl ContainerdRuntime {
    pub(super) async fn get_container(&self, id: &str) -> Result<Container> {
        let req = self.request(GetContainerRequest { id: id.to_string() }, None);
        match self.client.containers().get(req).await {
            Ok(resp) => resp
                .into_inner()
                .container
                .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() }),
            Err(s) if s.code() == Code::NotFound => {
                Err(RuntimeError::ContainerNotFound { id: id.to_string() })
            }
            Err(s) => Err(grpc("get container")(s)),
        }
    }

    async fn get_task(&self, id: &str, exec_id: &str) -> Result<Option<Process>> {
        let req = self.request(
            GetRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            },
            None,
        );
        match self.client.tasks().get(req).await {
            Ok(resp) => Ok(resp.into_inner().process),
            Err(s) if s.code() == Code::NotFound => Ok(None),
            Err(s) => Err(grpc("get task")(s)),
        }
    }

    fn state_of(&self, container: &Container, task: Option<&Process>) -> ContainerState {
        let Some(p) = task else {
            return ContainerState::Created;
        };
        match TaskStatus::try_from(p.status).unwrap_or(TaskStatus::Unknown) {
            TaskStatus::Running | TaskStatus::Paused | TaskStatus::Pausing => {
                ContainerState::Running { pid: p.pid }
            }
            TaskStatus::Stopped => ContainerState::Exited {
                exit_code: p.exit_status,
                finished_at: timestamp(p.exited_at),
                oom_killed: container
                    .labels
                    .get(CGROUP_PATH_LABEL)
                    .is_some_and(|path| cgroup::oom_killed(&self.config.cgroup_root, path)),
            },
            TaskStatus::Created => ContainerState::Created,
            TaskStatus::Unknown => ContainerState::Unknown,
        }
    }

    /// `binary://` URI making the shim run orc's logger writing to `log_path`.
    pub(super) fn log_uri(&self, log_path: &Path) -> String {
        log_uri(
            &self.config.logger_binary,
            log_path,
            self.config.log_rotation,
        )
    }

    async fn delete_task(&self, id: &str) -> Result<()> {
        let req = self.request(
            DeleteTaskRequest {
                container_id: id.to_string(),
            },
            None,
        );
        match self.client.tasks().delete(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("delete task")(s)),
        }
    }

    pub(super) async fn kill(&self, id: &str, exec_id: &str, signal: u32, all: bool) -> Result<()> {
        let req = self.request(
            KillRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
                signal,
                all,
            },
            None,
        );
        match self.client.tasks().kill(req).await {
            Ok(_) => Ok(()),
            // Already gone.
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("kill task")(s)),
        }
    }

    async fn wait_process(&self, id: &str, exec_id: &str) -> Result<()> {
        let req = self.request(
            WaitRequest {
                container_id: id.to_string(),
                exec_id: exec_id.to_string(),
            },
            None,
        );
        match self.client.tasks().wait(req).await {
            Ok(_) => Ok(()),
            Err(s) if s.code() == Code::NotFound => Ok(()),
            Err(s) => Err(grpc("wait task")(s)),
        }
    }

    /// SIGKILLs every process of the task and waits (bounded) until it is reported gone.
    async fn kill_and_wait(&self, id: &str) -> Result<()> {
        self.kill(id, "", SIGKILL, true).await?;
        match tokio::time::timeout(KILL_WAIT, self.wait_process(id, "")).await {
            Ok(r) => r,
            Err(_) => Err(RuntimeError::Containerd {
                op: "wait task",
                source: Status::deadline_exceeded(format!(
                    "task {id} still running {KILL_WAIT:?} after SIGKILL"
                )),
            }),
        }
    }

    pub(super) async fn ensure_running(&self, id: &str) -> Result<()> {
        match self.get_task(id, "").await? {
            Some(p) if TaskStatus::try_from(p.status) == Ok(TaskStatus::Running) => Ok(()),
            _ => Err(RuntimeError::NotRunning { id: id.to_string() }),
        }
    }

    pub(super) async fn create_container_record(&self, config: &ContainerConfig) -> Result<String> {
        let r = Reference::parse(&config.image)?;
        let name = r.to_string();
        let (image, top) =
            self.present_image_recent(&name)
                .await?
                .ok_or(RuntimeError::ImageNeverPull {
                    reference: name.clone(),
                })?;
        let handler = self
            .config
            .handlers
            .get(config.runtime_handler.as_deref())
            .ok_or_else(|| RuntimeError::UnknownHandler {
                handler: config.runtime_handler.clone().unwrap_or_default(),
            })?;
        let users = self.image_users(&top).await?;
        let mut spec = spec::build_spec(config, image.config.as_ref(), &users)?;
        if let Some(group) = self.shim_groups.next() {
            spec.set_annotations(Some(HashMap::from([(
                shim_groups::GROUP_ANNOTATION.to_string(),
                group,
            )])));
        }
        let spec_json = serde_json::to_vec(&spec).map_err(|e| RuntimeError::Spec {
            id: config.id.clone(),
            reason: e.to_string(),
        })?;
        let mut labels: HashMap<String, String> = config.labels.clone().into_iter().collect();
        labels.insert(
            LOG_PATH_LABEL.into(),
            config.log_path.to_string_lossy().into_owned(),
        );
        labels.insert(CGROUP_PATH_LABEL.into(), spec::cgroup_path(config));
        let io = stdin::TaskIo::of(config);
        io.label(&mut labels);

        // The container record comes first and names its snapshot: the snapshot is
        // referenced from the moment it exists, so containerd's garbage collector cannot
        // take it and no lease (two more writes) is needed.
        let container = Container {
            id: config.id.clone(),
            labels,
            image: name.clone(),
            runtime: Some(ContainerRuntimeInfo {
                name: handler.runtime.clone(),
                options: handler.options(),
            }),
            spec: Some(prost_types::Any {
                type_url: SPEC_TYPE_URL.to_string(),
                value: spec_json,
            }),
            snapshotter: self.config.snapshotter.clone(),
            snapshot_key: config.id.clone(),
            ..Default::default()
        };
        self.client
            .containers()
            .create(self.request(
                CreateContainerRequest {
                    container: Some(container),
                },
                None,
            ))
            .await
            .map_err(grpc("create container"))?;
        let prepared = self
            .client
            .snapshots()
            .prepare(self.request(
                PrepareSnapshotRequest {
                    snapshotter: self.config.snapshotter.clone(),
                    key: config.id.clone(),
                    parent: top,
                    labels: HashMap::new(),
                },
                None,
            ))
            .await
            .map_err(grpc("prepare container snapshot"));
        let mounts = match prepared {
            Ok(resp) => resp.into_inner().mounts,
            Err(e) => {
                // Perhaps the image went since it was found: looked up afresh next time.
                self.forget_present(&name);
                let req = self.request(
                    DeleteContainerRequest {
                        id: config.id.clone(),
                    },
                    None,
                );
                let _ = self.client.containers().delete(req).await;
                return Err(e);
            }
        };
        self.remember_created(
            &config.id,
            Created {
                mounts,
                log_path: config.log_path.clone(),
                options: handler.options(),
                io,
            },
        );
        Ok(config.id.clone())
    }

    /// Creates the task of container `id` — the shim starts, with orc's logger on the
    /// container's stdio, and `runc create` makes the process, which waits for
    /// [`Self::start_created_task`]. `Some(pid)` when its task runs already.
    async fn create_task(&self, id: &str) -> Result<Option<u32>> {
        let Created {
            mounts,
            log_path,
            options,
            io,
        } = match self.take_created(id) {
            Some(created) => created,
            None => match self.existing_for_start(id).await? {
                Ok(created) => created,
                Err(running_pid) => return Ok(Some(running_pid)),
            },
        };
        if let Some(dir) = log_path.parent() {
            std::fs::create_dir_all(dir).map_err(|source| RuntimeError::Io {
                what: "create log directory",
                path: dir.to_path_buf(),
                source,
            })?;
        }
        let stdin = self.task_stdin(id, &io)?;
        // A terminal's output goes through the shim's console copy, which runs the
        // binary logger with stdin; plain pipes do not (see `fifo_logger`).
        let (stdout, stderr, mut logger) = if stdin.is_some() && !io.terminal {
            let (out, err, logger) = self.fifo_logger(id, &log_path)?;
            (out, err, Some(logger))
        } else {
            let uri = self.log_uri(&log_path);
            (uri.clone(), uri, None)
        };
        let created = self
            .client
            .tasks()
            .create(
                self.request(
                    CreateTaskRequest {
                        container_id: id.to_string(),
                        rootfs: mounts,
                        stdin: stdin
                            .map(|p| p.to_string_lossy().into_owned())
                            .unwrap_or_default(),
                        stdout,
                        stderr,
                        terminal: io.terminal,
                        // The runtime's options (which binary the runc shim runs) go with
                        // the task too: the shim reads them from its create request.
                        options,
                        ..Default::default()
                    },
                    None,
                ),
            )
            .await
            .map_err(grpc("create task"));
        if let Some(mut logger) = logger.take() {
            if created.is_err() {
                let _ = logger.kill();
            }
            // Reaped when it ends (after an agent restart, init or the subreaper does).
            tokio::task::spawn_blocking(move || logger.wait());
        }
        created?;
        Ok(None)
    }

    /// Starts the process of the task [`Self::create_task`] made (the task goes if it
    /// cannot start).
    async fn start_created_task(&self, id: &str) -> Result<u32> {
        let started = self
            .client
            .tasks()
            .start(self.request(
                StartRequest {
                    container_id: id.to_string(),
                    exec_id: String::new(),
                },
                None,
            ))
            .await;
        match started {
            Ok(resp) => Ok(resp.into_inner().pid),
            Err(s) => {
                let _ = self.delete_task(id).await;
                Err(grpc("start task")(s))
            }
        }
    }

    /// Creates the task of container `id` ahead of its start.
    pub(super) async fn prepare_task(&self, id: &str) -> Result<()> {
        if self.create_task(id).await?.is_none() {
            self.remember_task_created(id);
        }
        Ok(())
    }

    pub(super) async fn start_task(&self, id: &str) -> Result<u32> {
        if !self.take_task_created(id) {
            if let Some(running_pid) = self.create_task(id).await? {
                return Ok(running_pid);
            }
        }
        self.start_created_task(id).await
    }

    /// What starting container `id` (not created by this runtime just before) needs,
    /// read from containerd (a task left stopped is deleted first), or the pid of its
    /// task running already.
    async fn existing_for_start(&self, id: &str) -> Result<Result<Created, u32>> {
        let container = self.get_container(id).await?;
        match self.get_task(id, "").await? {
            Some(p) if TaskStatus::try_from(p.status) == Ok(TaskStatus::Running) => {
                return Ok(Err(p.pid))
            }
            Some(_) => self.delete_task(id).await?,
            None => {}
        }
        let mounts: Vec<PbMount> = self
            .client
            .snapshots()
            .mounts(self.request(
                MountsRequest {
                    snapshotter: container.snapshotter.clone(),
                    key: container.snapshot_key.clone(),
                },
                None,
            ))
            .await
            .map_err(grpc("snapshot mounts"))?
            .into_inner()
            .mounts;
        let log_path = container
            .labels
            .get(LOG_PATH_LABEL)
            .map(PathBuf::from)
            .ok_or_else(|| RuntimeError::Spec {
                id: id.to_string(),
                reason: format!("container has no {LOG_PATH_LABEL} label (not made by orc?)"),
            })?;
        let options = container.runtime.and_then(|r| r.options);
        Ok(Ok(Created {
            mounts,
            log_path,
            options,
            io: stdin::TaskIo::from_labels(&container.labels),
        }))
    }

    pub(super) async fn stop_task(
        &self,
        id: &str,
        signal: u32,
        grace: Duration,
    ) -> Result<ContainerStatus> {
        let running = matches!(
            self.container_status(id).await?.state,
            ContainerState::Running { .. }
        );
        if running {
            self.kill(id, "", signal, false).await?;
            let exited = tokio::time::timeout(grace, self.wait_process(id, "")).await;
            if exited.is_err() {
                info!(
                    container = id,
                    ?grace,
                    "did not exit within its grace period; killing"
                );
                self.kill_and_wait(id).await?;
            }
        }
        self.container_status(id).await
    }

    pub(super) async fn container_status(&self, id: &str) -> Result<ContainerStatus> {
        let container = self.get_container(id).await?;
        let task = self.get_task(id, "").await?;
        Ok(ContainerStatus {
            id: id.to_string(),
            state: self.state_of(&container, task.as_ref()),
        })
    }

    pub(super) async fn wait_task(&self, id: &str) -> Result<ContainerStatus> {
        self.get_container(id).await?;
        self.wait_process(id, "").await?;
        self.container_status(id).await
    }

    pub(super) async fn remove_container(&self, id: &str) -> Result<()> {
        self.take_created(id);
        self.take_task_created(id);
        if let Some(task) = self.get_task(id, "").await? {
            if TaskStatus::try_from(task.status) != Ok(TaskStatus::Stopped) {
                self.kill_and_wait(id).await?;
            }
            self.delete_task(id).await?;
        }
        let req = self.request(DeleteContainerRequest { id: id.to_string() }, None);
        match self.client.containers().delete(req).await {
            Ok(_) => {}
            Err(s) if s.code() == Code::NotFound => {}
            Err(s) => return Err(grpc("delete container")(s)),
        }
        self.forget_stdin(id);
        self.remove_snapshot(id).await
    }

    /// The containers matching any of `filters` (containerd's filter syntax; none: all),
    /// with their state.
    pub(super) async fn container_summaries(
        &self,
        filters: Vec<String>,
    ) -> Result<Vec<ContainerSummary>> {
        let containers = self
            .client
            .containers()
            .list(self.request(ListContainersRequest { filters }, None))
            .await
            .map_err(grpc("list containers"))?
            .into_inner()
            .containers;
        let tasks = self
            .client
            .tasks()
            .list(self.request(
                ListTasksRequest {
                    filter: String::new(),
                },
                None,
            ))
            .await
            .map_err(grpc("list tasks"))?
            .into_inner()
            .tasks;
        let tasks: HashMap<String, Process> = tasks
            .into_iter()
            .map(|p| {
                let id = if p.container_id.is_empty() {
                    p.id.clone()
                } else {
                    p.container_id.clone()
                };
                (id, p)
            })
            .collect();
        Ok(containers
            .into_iter()
            .map(|c| {
                let state = self.state_of(&c, tasks.get(&c.id));
                let labels = c
                    .labels
                    .iter()
                    .filter(|(k, _)| {
                        k.as_str() != LOG_PATH_LABEL && k.as_str() != CGROUP_PATH_LABEL
                    })
                    .map(|(k, v)| (k.clone(), v.clone()))
                    .collect();
                ContainerSummary {
                    id: c.id,
                    image: c.image,
                    labels,
                    state,
                }
            })
            .collect())
    }
}

/// A containerd filter selecting the containers whose label `key` equals `value`
/// (`labels."KEY"=="VALUE"`, both quoted so that dots and dashes are taken literally).
pub(super) fn label_filter(key: &str, value: &str) -> String {
    let quote = |s: &str| s.replace('\\', "\\\\").replace('"', "\\\"");
    format!("labels.\"{}\"==\"{}\"", quote(key), quote(value))
}

/// `binary://` URI making the shim run `logger` as orc's container logger writing to
/// `log_path`, rotated as `rotation` says. The shim passes the query as `key value`
/// arguments in no fixed order (see [`logger::reorder_shim_args`]).
pub fn log_uri(logger: &Path, log_path: &Path, rotation: Option<logger::Rotation>) -> String {
    let mut query = form_urlencoded::Serializer::new(String::new());
    query.append_pair(logger::SUBCOMMAND, &log_path.to_string_lossy());
    if let Some(r) = rotation {
        query.append_pair(logger::MAX_SIZE_FLAG, &r.max_size.to_string());
        query.append_pair(logger::MAX_FILES_FLAG, &r.max_files.to_string());
    }
    format!("binary://{}?{}", logger.display(), query.finish())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn label_filters_quote_the_key_and_the_value() {
        assert_eq!(
            label_filter("io.kubernetes.pod.uid", "6f1c-22"),
            r#"labels."io.kubernetes.pod.uid"=="6f1c-22""#
        );
        assert_eq!(label_filter("k", r#"a"b\c"#), r#"labels."k"=="a\"b\\c""#);
    }
}
