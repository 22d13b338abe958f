//! An in-memory `ContainerRuntime` that records every call, for kubelet tests. Containers
//! run until the test ends them with `exit`; `stop` ends them at once.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use chrono::Utc;

use super::{
    ContainerConfig, ContainerEvent, ContainerRuntime, ContainerState, ContainerStatus,
    ContainerSummary, ExecCommand, ExecControl, ExecOutput, ExecReader, ExecRequest, ExecSession,
    ExecWriter, ImageInfo, PullPolicy, Reference, RegistryAuth, Result, RuntimeError, SIGKILL,
};

/// One recorded call, with its essential arguments.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FakeCall {
    EnsureImage {
        reference: String,
        policy: PullPolicy,
        with_auth: bool,
    },
    ImportArchive(PathBuf),
    ListImages,
    RemoveImage(String),
    CreateContainer(Box<ContainerConfig>),
    PrepareStart(String),
    Start(String),
    Stop {
        id: String,
        signal: u32,
        grace: Duration,
    },
    Status(String),
    Wait(String),
    Remove(String),
    Exec {
        id: String,
        cmd: Vec<String>,
    },
    ExecStreaming {
        id: String,
        request: ExecRequest,
    },
    ListContainers,
}

/// The version the fake runtime reports while it is up.
pub const FAKE_VERSION: &str = "fake-1.0";

#[derive(Debug)]
struct FakeContainer {
    config: ContainerConfig,
    state: ContainerState,
}

#[derive(Debug, Default)]
struct State {
    calls: Vec<FakeCall>,
    images: BTreeMap<String, ImageInfo>,
    /// Images a pull would find, by normalized name.
    registry: BTreeMap<String, ImageInfo>,
    containers: BTreeMap<String, FakeContainer>,
    exec_results: BTreeMap<String, ExecOutput>,
    next_pid: u32,
    /// `version` fails (the runtime does not answer).
    down: bool,
    /// Who follows the container events.
    followers: Vec<tokio::sync::mpsc::Sender<ContainerEvent>>,
}

#[derive(Debug, Default)]
pub struct FakeRuntime {
    state: Mutex<State>,
}

/// Buffer of the fake exec's in-memory pipes.
const FAKE_PIPE_BYTES: usize = 64 * 1024;

fn fake_image(name: &str) -> ImageInfo {
    ImageInfo {
        name: name.to_string(),
        digest: super::registry::sha256_digest(name.as_bytes()),
        config_digest: super::registry::sha256_digest(format!("config {name}").as_bytes()),
        size: 1024,
        user: String::new(),
    }
}

fn normalize(reference: &str) -> Result<String> {
    Ok(Reference::parse(reference)?.to_string())
}

impl FakeRuntime {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Every call so far, in order.
    pub fn calls(&self) -> Vec<FakeCall> {
        self.lock().calls.clone()
    }

    /// Makes `reference` present locally.
    pub fn add_image(&self, reference: &str) {
        let name = normalize(reference).expect("valid reference");
        self.lock().images.insert(name.clone(), fake_image(&name));
    }

    /// Makes `reference` present as an image of `size` bytes with image id `config_digest`.
    pub fn add_image_with(&self, reference: &str, config_digest: &str, size: i64) {
        let name = normalize(reference).expect("valid reference");
        let mut image = fake_image(&name);
        image.config_digest = config_digest.to_string();
        image.size = size;
        self.lock().images.insert(name, image);
    }

    /// The names of the images present.
    pub fn image_names(&self) -> Vec<String> {
        self.lock().images.keys().cloned().collect()
    }

    /// Makes `reference` pullable.
    pub fn add_registry_image(&self, reference: &str) {
        let name = normalize(reference).expect("valid reference");
        self.lock().registry.insert(name.clone(), fake_image(&name));
    }

    /// Ends a running container's process with `exit_code`.
    /// Followers of the events are told.
    pub fn exit(&self, id: &str, exit_code: u32, oom_killed: bool) {
        let mut state = self.lock();
        let Some(c) = state.containers.get_mut(id) else {
            return;
        };
        c.state = ContainerState::Exited {
            exit_code,
            finished_at: Some(Utc::now()),
            oom_killed,
        };
        let mut events = vec![ContainerEvent::Exited { id: id.to_string() }];
        if oom_killed {
            events.insert(0, ContainerEvent::OomKilled { id: id.to_string() });
        }
        state.followers.retain(|f| !f.is_closed());
        for f in &state.followers {
            for e in &events {
                let _ = f.try_send(e.clone());
            }
        }
    }

    /// What exec in container `id` returns (default: empty output, exit code 0).
    pub fn set_exec_result(&self, id: &str, output: ExecOutput) {
        self.lock().exec_results.insert(id.to_string(), output);
    }

    /// The config container `id` was created with.
    /// Makes every call fail as containerd does when it is not running (Unavailable),
    /// or answer again. Calls are still recorded.
    pub fn set_down(&self, down: bool) {
        self.lock().down = down;
    }

    fn check_up(&self, op: &'static str) -> Result<()> {
        if self.lock().down {
            return Err(RuntimeError::Containerd {
                op,
                source: containerd_client::tonic::Status::unavailable("the fake runtime is down"),
            });
        }
        Ok(())
    }

    pub fn container_config(&self, id: &str) -> Option<ContainerConfig> {
        self.lock().containers.get(id).map(|c| c.config.clone())
    }

    fn record(&self, call: FakeCall) {
        self.lock().calls.push(call);
    }

    fn with_container<T>(
        &self,
        id: &str,
        f: impl FnOnce(&mut FakeContainer, &mut u32) -> T,
    ) -> Result<T> {
        let mut state = self.lock();
        let State {
            containers,
            next_pid,
            ..
        } = &mut *state;
        let c = containers
            .get_mut(id)
            .ok_or_else(|| RuntimeError::ContainerNotFound { id: id.to_string() })?;
        Ok(f(c, next_pid))
    }
}

#[async_trait::async_trait]
impl ContainerRuntime for FakeRuntime {
    /// Not recorded: the health check runs on a timer, not on the kubelet's behalf.
    async fn version(&self) -> Result<String> {
        self.check_up("version")?;
        Ok(FAKE_VERSION.to_string())
    }

    async fn ensure_image(
        &self,
        reference: &str,
        policy: PullPolicy,
        auth: Option<&RegistryAuth>,
    ) -> Result<ImageInfo> {
        self.record(FakeCall::EnsureImage {
            reference: reference.to_string(),
            policy,
            with_auth: auth.is_some(),
        });
        self.check_up("pull")?;
        let r = Reference::parse(reference)?;
        let name = r.to_string();
        let mut state = self.lock();
        let present = state.images.get(&name).cloned();
        match (policy, present) {
            (PullPolicy::Never, None) => Err(RuntimeError::ImageNeverPull { reference: name }),
            (PullPolicy::Never | PullPolicy::IfNotPresent, Some(info)) => Ok(info),
            _ => match state.registry.get(&name).cloned() {
                Some(info) => {
                    state.images.insert(name, info.clone());
                    Ok(info)
                }
                None => Err(RuntimeError::ImageNotFound {
                    reference: name,
                    registry: r.registry,
                }),
            },
        }
    }

    async fn import_archive(&self, path: &Path) -> Result<Vec<String>> {
        self.record(FakeCall::ImportArchive(path.to_path_buf()));
        Err(RuntimeError::InvalidArchive {
            path: path.to_path_buf(),
            reason: "the fake runtime does not read archives".into(),
        })
    }

    async fn list_images(&self) -> Result<Vec<ImageInfo>> {
        self.record(FakeCall::ListImages);
        self.check_up("list images")?;
        Ok(self.lock().images.values().cloned().collect())
    }

    async fn remove_image(&self, name: &str) -> Result<()> {
        self.record(FakeCall::RemoveImage(name.to_string()));
        self.check_up("remove image")?;
        self.lock().images.remove(name);
        Ok(())
    }

    async fn create_container(&self, config: &ContainerConfig) -> Result<String> {
        self.record(FakeCall::CreateContainer(Box::new(config.clone())));
        self.check_up("create container")?;
        let name = normalize(&config.image)?;
        let mut state = self.lock();
        if !state.images.contains_key(&name) {
            return Err(RuntimeError::ImageNeverPull { reference: name });
        }
        if state.containers.contains_key(&config.id) {
            return Err(RuntimeError::Containerd {
                op: "create container",
                source: containerd_client::tonic::Status::already_exists(config.id.clone()),
            });
        }
        state.containers.insert(
            config.id.clone(),
            FakeContainer {
                config: config.clone(),
                state: ContainerState::Created,
            },
        );
        Ok(config.id.clone())
    }

    async fn prepare_start(&self, id: &str) -> Result<()> {
        self.record(FakeCall::PrepareStart(id.to_string()));
        self.check_up("create task")?;
        self.with_container(id, |_, _| ())
    }

    async fn start(&self, id: &str) -> Result<u32> {
        self.record(FakeCall::Start(id.to_string()));
        self.check_up("start task")?;
        self.with_container(id, |c, next_pid| {
            *next_pid += 1;
            let pid = 1000 + *next_pid;
            c.state = ContainerState::Running { pid };
            pid
        })
    }

    async fn stop(&self, id: &str, signal: u32, grace: Duration) -> Result<ContainerStatus> {
        self.record(FakeCall::Stop {
            id: id.to_string(),
            signal,
            grace,
        });
        self.check_up("kill task")?;
        self.with_container(id, |c, _| {
            if matches!(c.state, ContainerState::Running { .. }) {
                c.state = ContainerState::Exited {
                    exit_code: 128 + signal,
                    finished_at: Some(Utc::now()),
                    oom_killed: false,
                };
            }
            ContainerStatus {
                id: id.to_string(),
                state: c.state.clone(),
            }
        })
    }

    async fn status(&self, id: &str) -> Result<ContainerStatus> {
        self.record(FakeCall::Status(id.to_string()));
        self.check_up("get task")?;
        self.with_container(id, |c, _| ContainerStatus {
            id: id.to_string(),
            state: c.state.clone(),
        })
    }

    /// Returns the current status at once: a fake process never exits by itself.
    async fn wait(&self, id: &str) -> Result<ContainerStatus> {
        self.record(FakeCall::Wait(id.to_string()));
        self.check_up("wait task")?;
        self.with_container(id, |c, _| ContainerStatus {
            id: id.to_string(),
            state: c.state.clone(),
        })
    }

    async fn remove(&self, id: &str) -> Result<()> {
        self.record(FakeCall::Remove(id.to_string()));
        self.check_up("delete container")?;
        self.lock().containers.remove(id);
        Ok(())
    }

    async fn exec(&self, id: &str, cmd: &[String], _timeout: Duration) -> Result<ExecOutput> {
        self.record(FakeCall::Exec {
            id: id.to_string(),
            cmd: cmd.to_vec(),
        });
        self.check_up("exec")?;
        let running =
            self.with_container(id, |c, _| matches!(c.state, ContainerState::Running { .. }))?;
        if !running {
            return Err(RuntimeError::NotRunning { id: id.to_string() });
        }
        Ok(self
            .lock()
            .exec_results
            .get(id)
            .cloned()
            .unwrap_or_default())
    }

    /// The process prints the container's exec result (`set_exec_result`), then copies
    /// stdin to stdout until EOF, and exits with the result's code (137 when killed).
    async fn exec_streaming(&self, id: &str, request: &ExecRequest) -> Result<ExecSession> {
        self.record(FakeCall::ExecStreaming {
            id: id.to_string(),
            request: request.clone(),
        });
        let running =
            self.with_container(id, |c, _| matches!(c.state, ContainerState::Running { .. }))?;
        if !running {
            return Err(RuntimeError::NotRunning { id: id.to_string() });
        }
        let result = self
            .lock()
            .exec_results
            .get(id)
            .cloned()
            .unwrap_or_default();
        let (control, mut driver) = ExecControl::new(id);
        let (mut out_w, out_r) = tokio::io::duplex(FAKE_PIPE_BYTES);
        let (mut err_w, err_r) = tokio::io::duplex(FAKE_PIPE_BYTES);
        let (in_w, mut in_r) = tokio::io::duplex(FAKE_PIPE_BYTES);
        let with_stdin = request.stdin;
        tokio::spawn(async move {
            use tokio::io::AsyncWriteExt;
            let run = async {
                out_w.write_all(&result.stdout).await?;
                err_w.write_all(&result.stderr).await?;
                if with_stdin {
                    tokio::io::copy(&mut in_r, &mut out_w).await?;
                }
                drop((out_w, err_w));
                Ok::<_, std::io::Error>(result.exit_code)
            };
            let code = tokio::select! {
                done = run => done.unwrap_or(1),
                _ = async {
                    while let Some(c) = driver.commands.recv().await {
                        if c == ExecCommand::Kill {
                            return;
                        }
                    }
                } => 128 + SIGKILL,
            };
            let _ = driver.exit.send(Ok(code));
        });
        Ok(ExecSession {
            stdin: request.stdin.then(|| Box::new(in_w) as ExecWriter),
            stdout: request.stdout.then(|| Box::new(out_r) as ExecReader),
            stderr: (request.stderr && !request.tty).then(|| Box::new(err_r) as ExecReader),
            control,
        })
    }

    /// Not recorded: the kubelet follows events all along, not per pod.
    async fn follow_events(&self, out: tokio::sync::mpsc::Sender<ContainerEvent>) -> Result<()> {
        self.check_up("subscribe to events")?;
        self.lock().followers.push(out.clone());
        out.closed().await;
        Ok(())
    }

    async fn list_containers(&self) -> Result<Vec<ContainerSummary>> {
        self.record(FakeCall::ListContainers);
        self.check_up("list containers")?;
        Ok(self
            .lock()
            .containers
            .iter()
            .map(|(id, c)| ContainerSummary {
                id: id.clone(),
                image: normalize(&c.config.image).unwrap_or_else(|_| c.config.image.clone()),
                labels: c.config.labels.clone(),
                state: c.state.clone(),
            })
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn pull_policies_decide_whether_the_registry_is_asked() {
        let rt = FakeRuntime::new();
        rt.add_registry_image("busybox:1");
        let err = rt
            .ensure_image("busybox:1", PullPolicy::Never, None)
            .await
            .unwrap_err();
        assert!(matches!(err, RuntimeError::ImageNeverPull { .. }));
        let info = rt
            .ensure_image("busybox:1", PullPolicy::IfNotPresent, None)
            .await
            .unwrap();
        assert_eq!(info.name, "docker.io/library/busybox:1");
        rt.ensure_image("busybox:1", PullPolicy::Never, None)
            .await
            .unwrap();
        let err = rt
            .ensure_image("missing:1", PullPolicy::Always, None)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("not found"), "{err}");
        assert_eq!(rt.calls().len(), 4);
    }

    #[tokio::test]
    async fn container_lifecycle_is_recorded() {
        let rt = FakeRuntime::new();
        rt.add_image("busybox:test");
        let mut cfg = ContainerConfig::new("c1", "busybox:test", "/tmp/c1.log".into());
        cfg.labels
            .insert("io.kubernetes.pod.uid".into(), "u1".into());
        rt.create_container(&cfg).await.unwrap();
        assert!(rt.create_container(&cfg).await.is_err());
        let pid = rt.start("c1").await.unwrap();
        assert_eq!(
            rt.status("c1").await.unwrap().state,
            ContainerState::Running { pid }
        );
        let stopped = rt
            .stop("c1", super::super::SIGTERM, Duration::from_secs(30))
            .await
            .unwrap();
        assert!(matches!(
            stopped.state,
            ContainerState::Exited { exit_code: 143, .. }
        ));
        let listed = rt.list_containers().await.unwrap();
        assert_eq!(listed[0].labels["io.kubernetes.pod.uid"], "u1");
        rt.remove("c1").await.unwrap();
        assert!(matches!(
            rt.status("c1").await.unwrap_err(),
            RuntimeError::ContainerNotFound { .. }
        ));
        assert!(rt.calls().contains(&FakeCall::Stop {
            id: "c1".into(),
            signal: 15,
            grace: Duration::from_secs(30)
        }));
    }
}
