//! The containerd runtime against a real, private containerd (and docker-registry):
//! import, run, logs, stop, exec, OOM kill, registry pull. Needs root, containerd, runc,
//! busybox-static, skopeo and docker-registry (scripts/install-deps.sh); fails loudly
//! without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use orc::agent::runtime::logger::{parse_line, Stream};
use orc::agent::runtime::{
    ContainerConfig, ContainerRuntime, ContainerState, ContainerdConfig, ContainerdRuntime,
    ExecRequest, PullPolicy, Resources, RuntimeError, ShimSharing, TerminalSize, SIGTERM,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod support;
use support::wait::wait_until_async;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const TEST_IMAGE: &str = "docker.io/library/busybox:test";
const NAMESPACE: &str = "orc-test";

fn script(name: &str) -> PathBuf {
    Path::new(REPO).join("scripts").join(name)
}

/// Panics (never skips) when the machine cannot run these tests.
fn require_prerequisites(tools: &[&str]) {
    let uid = std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .and_then(|l| l.split_whitespace().nth(2).map(str::to_string))
        })
        .unwrap_or_default();
    assert_eq!(
        uid, "0",
        "the containerd runtime tests need root (containerd, runc and overlay mounts): run them as root after scripts/install-deps.sh"
    );
    let missing: Vec<&str> = tools
        .iter()
        .copied()
        .filter(|t| {
            !Command::new("sh")
                .args(["-c", &format!("command -v {t}")])
                .output()
                .map(|o| o.status.success())
                .unwrap_or(false)
        })
        .collect();
    assert!(
        missing.is_empty(),
        "missing {missing:?}: install them with scripts/install-deps.sh (as root)"
    );
}

/// The busybox OCI tarball, built once per test binary.
fn test_image() -> &'static Path {
    static IMAGE: OnceLock<PathBuf> = OnceLock::new();
    IMAGE.get_or_init(|| {
        let out = Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("busybox-test-{}.tar", std::process::id()));
        let status = Command::new(script("build-test-image.sh"))
            .arg(&out)
            .arg(TEST_IMAGE)
            .status()
            .expect("run scripts/build-test-image.sh");
        assert!(status.success(), "scripts/build-test-image.sh failed");
        out
    })
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A private containerd (and registry); stopped and removed on drop, even on panic.
struct TestEnv {
    dir: PathBuf,
    cgroup_parent: String,
    registry_port: Option<u16>,
}

impl TestEnv {
    fn start(name: &str, with_registry: bool) -> TestEnv {
        let mut tools = vec![
            "containerd",
            "runc",
            "containerd-shim-runc-v2",
            "ctr",
            "busybox",
            "python3",
        ];
        if with_registry {
            tools.extend(["docker-registry", "skopeo"]);
        }
        require_prerequisites(&tools);
        let unique = format!("{name}-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
        let dir = std::env::temp_dir().join(format!("orc-rt-{unique}"));
        let registry_port = with_registry.then(free_port);
        let env = TestEnv {
            dir: dir.clone(),
            cgroup_parent: format!("/orc-test-{unique}"),
            registry_port,
        };
        let mut cmd = Command::new(script("containerd-test-env.sh"));
        cmd.arg("start").arg(&dir);
        if let Some(p) = registry_port {
            cmd.arg(p.to_string());
        }
        let status = cmd.status().expect("run scripts/containerd-test-env.sh");
        assert!(
            status.success(),
            "scripts/containerd-test-env.sh start failed"
        );
        env
    }

    fn socket(&self) -> PathBuf {
        self.dir.join("containerd.sock")
    }

    async fn runtime(&self) -> ContainerdRuntime {
        self.runtime_sharing(ShimSharing::NONE).await
    }

    async fn runtime_sharing(&self, shim_sharing: ShimSharing) -> ContainerdRuntime {
        let mut config = ContainerdConfig::new(self.socket());
        config.shim_sharing = shim_sharing;
        config.namespace = NAMESPACE.to_string();
        config.logger_binary = PathBuf::from(env!("CARGO_BIN_EXE_orc"));
        config.exec_dir = self.dir.join("exec");
        ContainerdRuntime::connect(config)
            .await
            .expect("connect to the private containerd")
    }

    fn container(&self, id: &str, command: &[&str]) -> ContainerConfig {
        let mut c = ContainerConfig::new(
            id,
            TEST_IMAGE,
            self.dir.join("logs").join(format!("{id}.log")),
        );
        c.command = command.iter().map(|s| s.to_string()).collect();
        c.cgroup_parent = self.cgroup_parent.clone();
        c
    }
}

impl Drop for TestEnv {
    fn drop(&mut self) {
        let _ = Command::new(script("containerd-test-env.sh"))
            .arg("stop")
            .arg(&self.dir)
            .status();
        // runc removes each container's cgroup; the per-test parent is ours to remove.
        let rel = self.cgroup_parent.trim_start_matches('/');
        if let Ok(entries) = std::fs::read_dir("/sys/fs/cgroup") {
            for e in entries.flatten() {
                let _ = std::fs::remove_dir(e.path().join(rel));
            }
        }
        let _ = std::fs::remove_dir(Path::new("/sys/fs/cgroup").join(rel));
    }
}

/// Polls `check` until it returns `Some`, or panics after `limit`.
async fn eventually<T>(limit: Duration, what: &str, mut check: impl FnMut() -> Option<T>) -> T {
    wait_until_async(limit, what, || std::future::ready(check())).await
}

/// (stream, content) of each full record in a CRI log file.
fn log_records(path: &Path) -> Vec<(Stream, String)> {
    std::fs::read(path)
        .unwrap_or_default()
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .map(|l| {
            let rec = parse_line(l)
                .unwrap_or_else(|| panic!("not a CRI log line: {:?}", String::from_utf8_lossy(l)));
            (
                rec.stream,
                String::from_utf8_lossy(&rec.content).into_owned(),
            )
        })
        .collect()
}

async fn wait_exited(rt: &ContainerdRuntime, id: &str) -> (u32, bool) {
    let status = tokio::time::timeout(Duration::from_secs(60), rt.wait(id))
        .await
        .expect("container did not exit within 60s")
        .unwrap();
    match status.state {
        ContainerState::Exited {
            exit_code,
            oom_killed,
            finished_at,
        } => {
            assert!(finished_at.is_some(), "exited container has a finish time");
            (exit_code, oom_killed)
        }
        other => panic!("{id} should have exited, is {other:?}"),
    }
}

#[tokio::test]
async fn container_writes_cri_log_and_exits_zero() {
    let env = TestEnv::start("log", false);
    let rt = env.runtime().await;
    let names = rt.import_archive(test_image()).await.unwrap();
    assert_eq!(names, [TEST_IMAGE]);
    let images = rt.list_images().await.unwrap();
    assert!(images.iter().any(|i| i.name == TEST_IMAGE), "{images:?}");
    let info = rt
        .ensure_image("busybox:test", PullPolicy::Never, None)
        .await
        .unwrap();
    assert!(info.config_digest.starts_with("sha256:"));

    let mut cfg = env.container(
        "log-c1",
        &[
            "sh",
            "-c",
            "echo hello; echo oops >&2; hostname; mkdir /scratch && echo writable > /scratch/f && cat /scratch/f",
        ],
    );
    cfg.hostname = Some("pod-host".into());
    cfg.labels
        .insert("io.kubernetes.pod.uid".into(), "uid-1".into());
    rt.create_container(&cfg).await.unwrap();
    assert_eq!(
        rt.status("log-c1").await.unwrap().state,
        ContainerState::Created
    );
    let listed = rt.list_containers().await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(
        listed[0]
            .labels
            .get("io.kubernetes.pod.uid")
            .map(String::as_str),
        Some("uid-1")
    );
    assert_eq!(listed[0].image, TEST_IMAGE);
    // A pod's own containers, filtered by containerd (a pod's teardown asks so).
    let own = rt
        .list_containers_labelled("io.kubernetes.pod.uid", "uid-1")
        .await
        .unwrap();
    assert_eq!(own.len(), 1);
    assert_eq!(own[0].id, "log-c1");
    let other = rt
        .list_containers_labelled("io.kubernetes.pod.uid", "uid-1-other")
        .await
        .unwrap();
    assert!(other.is_empty(), "{other:?}");

    let pid = rt.start("log-c1").await.unwrap();
    assert!(pid > 0);
    let (code, oom) = wait_exited(&rt, "log-c1").await;
    assert_eq!((code, oom), (0, false));
    let records = eventually(Duration::from_secs(10), "three log lines", || {
        let r = log_records(&cfg.log_path);
        (r.len() >= 4).then_some(r)
    })
    .await;
    assert!(
        records.contains(&(Stream::Stdout, "writable".into())),
        "the root filesystem is writable: {records:?}"
    );
    assert!(
        records.contains(&(Stream::Stdout, "hello".into())),
        "{records:?}"
    );
    assert!(
        records.contains(&(Stream::Stderr, "oops".into())),
        "{records:?}"
    );
    assert!(
        records.contains(&(Stream::Stdout, "pod-host".into())),
        "{records:?}"
    );

    rt.remove("log-c1").await.unwrap();
    assert!(matches!(
        rt.status("log-c1").await.unwrap_err(),
        RuntimeError::ContainerNotFound { .. }
    ));
    assert!(rt.list_containers().await.unwrap().is_empty());
}

#[tokio::test]
async fn stop_sends_the_signal_then_kills_after_the_grace_period() {
    let env = TestEnv::start("stop", false);
    let rt = env.runtime().await;
    rt.import_archive(test_image()).await.unwrap();

    // Handles SIGTERM: exits by itself, within the grace period.
    let cfg = env.container(
        "stop-trap",
        &[
            "sh",
            "-c",
            "trap 'echo got TERM; exit 0' TERM; echo ready; while true; do sleep 0.2; done",
        ],
    );
    rt.create_container(&cfg).await.unwrap();
    rt.start("stop-trap").await.unwrap();
    eventually(Duration::from_secs(10), "the trap to be installed", || {
        log_records(&cfg.log_path)
            .contains(&(Stream::Stdout, "ready".into()))
            .then_some(())
    })
    .await;
    assert!(matches!(
        rt.status("stop-trap").await.unwrap().state,
        ContainerState::Running { .. }
    ));
    let stopped = rt
        .stop("stop-trap", SIGTERM, Duration::from_secs(20))
        .await
        .unwrap();
    assert!(
        matches!(stopped.state, ContainerState::Exited { exit_code: 0, .. }),
        "{stopped:?}"
    );
    eventually(Duration::from_secs(10), "the trap's output", || {
        log_records(&cfg.log_path)
            .contains(&(Stream::Stdout, "got TERM".into()))
            .then_some(())
    })
    .await;

    // PID 1 without a handler ignores SIGTERM: SIGKILL after the grace period. (Waits for
    // the command to run: a SIGTERM that lands while runc's init is still setting up ends
    // the task with another exit code.)
    let cfg = env.container("stop-ignore", &["sh", "-c", "echo ready; exec sleep 300"]);
    rt.create_container(&cfg).await.unwrap();
    rt.start("stop-ignore").await.unwrap();
    eventually(Duration::from_secs(10), "the command to run", || {
        log_records(&cfg.log_path)
            .contains(&(Stream::Stdout, "ready".into()))
            .then_some(())
    })
    .await;
    let started = Instant::now();
    let stopped = rt
        .stop("stop-ignore", SIGTERM, Duration::from_secs(1))
        .await
        .unwrap();
    assert!(
        matches!(
            stopped.state,
            ContainerState::Exited {
                exit_code: 137,
                oom_killed: false,
                ..
            }
        ),
        "{stopped:?}"
    );
    assert!(started.elapsed() >= Duration::from_secs(1));
    rt.remove("stop-trap").await.unwrap();
    rt.remove("stop-ignore").await.unwrap();
}

#[tokio::test]
async fn exec_returns_output_and_exit_code() {
    let env = TestEnv::start("exec", false);
    let rt = env.runtime().await;
    rt.import_archive(test_image()).await.unwrap();
    let mut cfg = env.container("exec-c1", &["sleep", "300"]);
    cfg.env = vec![("GREETING".into(), "hi there".into())];
    rt.create_container(&cfg).await.unwrap();

    let err = rt
        .exec("exec-c1", &["true".into()], Duration::from_secs(5))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::NotRunning { .. }), "{err}");

    rt.start("exec-c1").await.unwrap();
    let cmd: Vec<String> = ["sh", "-c", "echo $GREETING; echo err >&2; exit 3"]
        .iter()
        .map(|s| s.to_string())
        .collect();
    let out = rt
        .exec("exec-c1", &cmd, Duration::from_secs(20))
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "hi there\n");
    assert_eq!(String::from_utf8_lossy(&out.stderr), "err\n");
    assert_eq!(out.exit_code, 3);

    let slow: Vec<String> = ["sleep", "30"].iter().map(|s| s.to_string()).collect();
    let err = rt
        .exec("exec-c1", &slow, Duration::from_millis(500))
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ExecTimeout { .. }), "{err}");

    // The main process is untouched by the exec.
    assert!(matches!(
        rt.status("exec-c1").await.unwrap().state,
        ContainerState::Running { .. }
    ));
    rt.remove("exec-c1").await.unwrap();
}

/// Waits for a line, then (bounded) for the terminal to be sized; prints size and tty.
const SIZED_TTY: &str = "read line; for i in $(seq 50); do s=$(stty size 2>&1); \
    case $s in *[1-9]*) break;; esac; sleep 0.1; done; echo $s; tty";

#[tokio::test]
async fn streaming_exec_carries_stdin_output_a_tty_and_is_killed_when_released() {
    let env = TestEnv::start("exec-stream", false);
    let rt = env.runtime().await;
    rt.import_archive(test_image()).await.unwrap();
    rt.create_container(&env.container("xs", &["sleep", "300"]))
        .await
        .unwrap();
    let cmd = |args: &[&str]| args.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let within = |d| Duration::from_secs(d);

    let request = ExecRequest {
        cmd: cmd(&["sh", "-c", "cat; echo err >&2; exit 4"]),
        stdin: true,
        stdout: true,
        stderr: true,
        tty: false,
    };
    let err = rt.exec_streaming("xs", &request).await.err().unwrap();
    assert!(matches!(err, RuntimeError::NotRunning { .. }), "{err}");
    rt.start("xs").await.unwrap();

    // stdin in, stdout and stderr apart, EOF once stdin is closed, then the exit code.
    let mut s = rt.exec_streaming("xs", &request).await.unwrap();
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"hello\n").await.unwrap();
    drop(stdin);
    s.control.handle().close_stdin().await;
    let (mut out, mut err) = (String::new(), String::new());
    let read = async {
        s.stdout.as_mut().unwrap().read_to_string(&mut out).await?;
        s.stderr.as_mut().unwrap().read_to_string(&mut err).await
    };
    tokio::time::timeout(within(20), read)
        .await
        .expect("exec output deadlocked")
        .unwrap();
    assert_eq!((out.as_str(), err.as_str()), ("hello\n", "err\n"));
    assert_eq!(s.control.wait().await.unwrap(), 4);
    drop(s);

    // A tty: one output stream, sized on request.
    let tty = ExecRequest {
        cmd: cmd(&["sh", "-c", SIZED_TTY]),
        stdin: true,
        stdout: true,
        stderr: true,
        tty: true,
    };
    let mut s = rt.exec_streaming("xs", &tty).await.unwrap();
    assert!(s.stderr.is_none());
    s.control
        .handle()
        .resize(TerminalSize {
            width: 100,
            height: 30,
        })
        .await;
    let mut stdin = s.stdin.take().unwrap();
    stdin.write_all(b"go\r").await.unwrap();
    let mut out = String::new();
    tokio::time::timeout(
        within(20),
        s.stdout.as_mut().unwrap().read_to_string(&mut out),
    )
    .await
    .expect("tty output deadlocked")
    .unwrap();
    assert!(out.contains("30 100\r\n"), "{out:?}");
    assert!(out.contains("/dev/pts/"), "{out:?}");
    assert_eq!(s.control.wait().await.unwrap(), 0);
    drop(s);

    // Released while running: killed, and its fifos are gone.
    let s = rt
        .exec_streaming(
            "xs",
            &ExecRequest {
                cmd: cmd(&["sleep", "555"]),
                stdout: true,
                ..Default::default()
            },
        )
        .await
        .unwrap();
    drop(s);
    wait_until_async(
        within(20),
        "the released exec (sleep 555) and its fifos to be gone",
        || async {
            let ps = rt.exec("xs", &cmd(&["ps"]), within(10)).await.unwrap();
            let exec_dirs = std::fs::read_dir(env.dir.join("exec"))
                .map(|d| d.flatten().filter(|e| e.path().is_dir()).count())
                .unwrap_or(0);
            let ps = String::from_utf8_lossy(&ps.stdout).into_owned();
            (!ps.contains("sleep 555") && exec_dirs == 0)
                .then_some(())
                .ok_or(format!("{exec_dirs} exec dirs; ps: {ps}"))
        },
    )
    .await;
    rt.remove("xs").await.unwrap();
}

#[tokio::test]
async fn memory_limited_container_is_oom_killed() {
    let env = TestEnv::start("oom", false);
    let rt = env.runtime().await;
    rt.import_archive(test_image()).await.unwrap();
    let mut cfg = env.container("oom-c1", &["tail", "/dev/zero"]);
    cfg.resources = Resources {
        memory_limit_bytes: Some(16 << 20),
        ..Default::default()
    };
    rt.create_container(&cfg).await.unwrap();
    rt.start("oom-c1").await.unwrap();
    let (code, oom) = wait_exited(&rt, "oom-c1").await;
    assert_eq!(code, 137, "killed by SIGKILL");
    assert!(oom, "the OOM kill is reported");
    rt.remove("oom-c1").await.unwrap();
}

#[tokio::test]
async fn docker_save_archives_import_and_run() {
    let env = TestEnv::start("dockerarchive", false);
    require_prerequisites(&["skopeo"]);
    let archive = env.dir.join("docker-archive.tar");
    let status = Command::new("skopeo")
        .arg("copy")
        .arg(format!("oci-archive:{}", test_image().display()))
        .arg(format!(
            "docker-archive:{}:example.org/team/tool:v2",
            archive.display()
        ))
        .status()
        .expect("run skopeo");
    assert!(status.success(), "skopeo copy to docker-archive failed");
    let rt = env.runtime().await;
    let names = rt.import_archive(&archive).await.unwrap();
    assert_eq!(names, ["example.org/team/tool:v2"]);
    let mut cfg = env.container("da-c1", &["sh", "-c", "cat /var/www/index.html"]);
    cfg.image = "example.org/team/tool:v2".into();
    rt.create_container(&cfg).await.unwrap();
    rt.start("da-c1").await.unwrap();
    assert_eq!(wait_exited(&rt, "da-c1").await, (0, false));
    let records = eventually(Duration::from_secs(10), "the file's content", || {
        let r = log_records(&cfg.log_path);
        (!r.is_empty()).then_some(r)
    })
    .await;
    assert_eq!(
        records,
        [(Stream::Stdout, "hello from orc busybox".to_string())]
    );
    rt.remove("da-c1").await.unwrap();
}

#[tokio::test]
async fn pulls_from_a_private_registry_and_reports_missing_images() {
    let env = TestEnv::start("pull", true);
    let port = env.registry_port.unwrap();
    let reference = format!("127.0.0.1:{port}/busybox:test");
    let status = Command::new("skopeo")
        .arg("copy")
        .arg("--dest-tls-verify=false")
        .arg(format!("oci-archive:{}", test_image().display()))
        .arg(format!("docker://{reference}"))
        .status()
        .expect("run skopeo");
    assert!(
        status.success(),
        "skopeo copy to the private registry failed"
    );

    let rt = env.runtime().await;
    let err = rt
        .ensure_image(&reference, PullPolicy::Never, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ImageNeverPull { .. }), "{err}");
    let info = rt
        .ensure_image(&reference, PullPolicy::IfNotPresent, None)
        .await
        .unwrap();
    assert_eq!(info.name, reference);
    let again = rt
        .ensure_image(&reference, PullPolicy::Always, None)
        .await
        .unwrap();
    assert_eq!(again, info);

    let mut cfg = env.container("pull-c1", &["echo", "pulled"]);
    cfg.image = reference.clone();
    rt.create_container(&cfg).await.unwrap();
    rt.start("pull-c1").await.unwrap();
    assert_eq!(wait_exited(&rt, "pull-c1").await, (0, false));
    rt.remove("pull-c1").await.unwrap();

    let missing = format!("127.0.0.1:{port}/nothing/here:v1");
    let err = rt
        .ensure_image(&missing, PullPolicy::IfNotPresent, None)
        .await
        .unwrap_err();
    assert!(matches!(err, RuntimeError::ImageNotFound { .. }), "{err:?}");
    assert!(err.to_string().contains("not found"), "{err}");
    let err = rt
        .ensure_image(
            &format!("127.0.0.1:{port}/busybox:nope"),
            PullPolicy::Always,
            None,
        )
        .await
        .unwrap_err();
    assert!(err.to_string().contains("not found"), "{err}");
}

/// The parent of process `pid` (the shim, for a container's main process).
fn parent_pid(pid: u32) -> u32 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // pid (comm) state ppid …; comm may hold spaces, so count from its ')'.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    rest.split(' ').nth(1).unwrap().parse().unwrap()
}

async fn running_pid(rt: &ContainerdRuntime, id: &str) -> u32 {
    match rt.status(id).await.unwrap().state {
        ContainerState::Running { pid } => pid,
        other => panic!("{id} should be running, is {other:?}"),
    }
}

#[tokio::test]
async fn containers_share_shims_in_bounded_groups_and_outlive_the_first() {
    let env = TestEnv::start("shim-group", false);
    let rt = env
        .runtime_sharing(ShimSharing { size: 2, spread: 1 })
        .await;
    rt.import_archive(test_image()).await.unwrap();
    let ticking = ["sh", "-c", "while true; do echo tick; sleep 0.1; done"];
    let mut configs = Vec::new();
    for id in ["group-a", "group-b", "group-c"] {
        let cfg = env.container(id, &ticking);
        rt.create_container(&cfg).await.unwrap();
        rt.start(id).await.unwrap();
        configs.push(cfg);
    }
    let mut shims = Vec::new();
    for id in ["group-a", "group-b", "group-c"] {
        shims.push(parent_pid(running_pid(&rt, id).await));
    }
    assert_eq!(shims[0], shims[1], "the first two containers share a shim");
    assert_ne!(shims[1], shims[2], "a group takes at most two containers");

    // The first container of a shim goes; the second keeps running, logging and
    // answering execs through the same shim.
    rt.remove("group-a").await.unwrap();
    let b_pid = running_pid(&rt, "group-b").await;
    assert_eq!(parent_pid(b_pid), shims[1]);
    let logged = log_records(&configs[1].log_path).len();
    eventually(Duration::from_secs(10), "group-b logging on", || {
        (log_records(&configs[1].log_path).len() > logged + 3).then_some(())
    })
    .await;
    let out = rt
        .exec(
            "group-b",
            &["echo".into(), "still here".into()],
            Duration::from_secs(20),
        )
        .await
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "still here\n");

    // Shared fate: the shim's death ends its containers (reported exited, not
    // running), and such a container starts again in a shim of its own group.
    let killed = Command::new("kill")
        .args(["-9", &shims[1].to_string()])
        .status()
        .unwrap();
    assert!(killed.success());
    wait_until_async(
        Duration::from_secs(30),
        "group-b reported ended",
        || async {
            (!matches!(
                rt.status("group-b").await.unwrap().state,
                ContainerState::Running { .. }
            ))
            .then_some(())
        },
    )
    .await;
    let c_pid = running_pid(&rt, "group-c").await;
    assert_eq!(
        parent_pid(c_pid),
        shims[2],
        "another group's shim is untouched"
    );
    // containerd cleans up after the dead shim in the background: the task may still
    // be there for a moment (the kubelet starts a new instance, with a new id).
    wait_until_async(Duration::from_secs(30), "group-b started again", || async {
        rt.start("group-b").await.ok()
    })
    .await;
    let restarted = running_pid(&rt, "group-b").await;
    assert_ne!(parent_pid(restarted), shims[1]);
    for id in ["group-b", "group-c"] {
        rt.remove(id).await.unwrap();
    }
    assert!(rt.list_containers().await.unwrap().is_empty());
}
