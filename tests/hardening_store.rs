//! The datastore hardened, through the real binary: selector watches resumed across a
//! restart, a full disk (clear Status, `/readyz` failing, recovery), refusing a data dir
//! whose database was lost or belongs to another application, and private file modes
//! whatever the umask.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use support::host_agent::HOST_NETNS_AGENT_ARGS;
use support::server::{free_port, wait_for, Server, DEADLINE, ORC};

fn config_map(name: &str, labels: Value, data: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": name, "labels": labels},
        "data": {"k": data}
    })
}

fn config_maps(s: &Server) -> String {
    format!("{}/api/v1/namespaces/default/configmaps", s.url())
}

/// Sends `req`; the status code and the body as text.
async fn send(req: reqwest::RequestBuilder) -> (u16, String) {
    let resp = req.send().await.expect("send request");
    (
        resp.status().as_u16(),
        resp.text().await.unwrap_or_default(),
    )
}

#[tokio::test]
async fn selector_watch_resumed_after_a_restart_sees_the_object_leave_the_selector() {
    let mut s = Server::start();
    let c = s.client(true);
    let cms = config_maps(&s);
    let (code, body) = send(
        c.post(&cms)
            .json(&config_map("moved", json!({"a": "1"}), "x")),
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let created: Value = serde_json::from_str(&body).unwrap();
    let rv = created["metadata"]["resourceVersion"]
        .as_str()
        .unwrap()
        .to_string();
    let (code, body) = send(
        c.patch(format!("{cms}/moved"))
            .header("Content-Type", "application/merge-patch+json")
            .body(r#"{"metadata":{"labels":{"a":"2"}}}"#),
    )
    .await;
    assert_eq!(code, 200, "{body}");

    // The relabel is history now: the restarted server reloads it from disk.
    s.kill9();
    s.spawn();
    let c = s.client(true);
    let (code, text) = send(c.get(format!(
        "{cms}?watch=1&labelSelector=a%3D1&resourceVersion={rv}&timeoutSeconds=1"
    )))
    .await;
    assert_eq!(code, 200, "{text}");
    let events: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON event per line"))
        .collect();
    assert_eq!(events.len(), 1, "{text}");
    assert_eq!(events[0]["type"], "DELETED", "{text}");
    assert_eq!(events[0]["object"]["metadata"]["name"], "moved");
    assert_eq!(events[0]["object"]["metadata"]["labels"]["a"], "2");
}

#[tokio::test]
async fn readyz_verbose_reports_each_check() {
    let s = Server::start();
    let c = s.client(false);
    let (code, text) = send(c.get(format!("{}/readyz?verbose", s.url()))).await;
    assert_eq!(code, 200, "{text}");
    assert_eq!(
        text, "[+]ping ok\n[+]datastore ok\nreadyz check passed\n",
        "{text}"
    );
    let (code, text) = send(c.get(format!("{}/readyz", s.url()))).await;
    assert_eq!((code, text.as_str()), (200, "ok"));
}

/// A tmpfs of `size` mounted on a private directory, unmounted on drop.
struct TinyFilesystem {
    dir: tempfile::TempDir,
}

impl TinyFilesystem {
    fn mount(size: &str) -> TinyFilesystem {
        let dir = tempfile::tempdir().expect("tempdir");
        nix::mount::mount(
            Some("tmpfs"),
            dir.path(),
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some(format!("size={size},mode=0700").as_str()),
        )
        .unwrap_or_else(|e| {
            panic!("mount a small tmpfs ({e}): the full-disk test needs root (CI runs it as root)")
        });
        TinyFilesystem { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes a file until the filesystem refuses (bounded by its size).
    fn fill(&self) -> PathBuf {
        use std::io::Write;
        let path = self.path().join("filler");
        let mut file = std::fs::File::create(&path).expect("create filler");
        let chunk = vec![0u8; 64 << 10];
        for _ in 0..4096 {
            if file.write_all(&chunk).and_then(|_| file.flush()).is_err() {
                return path;
            }
        }
        panic!("the small filesystem never filled up");
    }
}

impl Drop for TinyFilesystem {
    fn drop(&mut self) {
        let _ = nix::mount::umount2(self.dir.path(), nix::mount::MntFlags::MNT_DETACH);
    }
}

#[tokio::test]
async fn a_full_disk_answers_out_of_space_fails_readyz_and_recovers_when_freed() {
    let fs = TinyFilesystem::mount("8m");
    let endpoint = format!("sqlite://{}", fs.path().join("state.db").display());
    let s = Server::start_with(&["--datastore-endpoint", &endpoint]);
    let c = s.client(true);
    let cms = config_maps(&s);
    let big = "x".repeat(256 << 10);
    let filler = fs.fill();

    // The WAL may still have room from earlier writes; the disk runs out within a few.
    let mut refused = None;
    for i in 0..40 {
        let (code, body) = send(c.post(&cms).json(&config_map(
            &format!("big{i}"),
            json!({}),
            &big,
        )))
        .await;
        if code != 201 {
            refused = Some((code, body));
            break;
        }
    }
    let (code, body) = refused.expect("a write on a full disk is refused");
    let status: Value = serde_json::from_str(&body).expect("a Status body");
    assert_eq!(code, 500, "{body}");
    assert_eq!(status["kind"], "Status", "{body}");
    assert_eq!(status["reason"], "InternalError", "{body}");
    let message = status["message"].as_str().unwrap_or("");
    assert!(message.starts_with("datastore out of space"), "{body}");

    let readyz = format!("{}/readyz?verbose", s.url());
    let (code, text) = send(c.get(&readyz)).await;
    assert_eq!(code, 500, "{text}");
    assert!(text.contains("[+]ping ok\n"), "{text}");
    assert!(
        text.contains("[-]datastore failed: reason withheld\n"),
        "{text}"
    );
    assert!(text.ends_with("readyz check failed\n"), "{text}");
    // Reads still work from the cache.
    let (code, _) = send(c.get(&cms)).await;
    assert_eq!(code, 200);

    std::fs::remove_file(&filler).expect("free the space");
    let started = Instant::now();
    loop {
        let (code, text) = send(c.get(&readyz)).await;
        if code == 200 {
            assert!(text.contains("[+]datastore ok\n"), "{text}");
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "readyz never recovered: {text}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, body) = send(c.post(&cms).json(&config_map("after", json!({}), "x"))).await;
    assert_eq!(code, 201, "{body}");
    drop(s);
}

/// Runs `orc server` on `data_dir`, which must refuse to start; its error line.
fn refused_start(data_dir: &Path) -> String {
    let kubeconfig = data_dir.with_file_name("refused-kubeconfig.yaml");
    let mut child = Command::new(ORC)
        .arg("server")
        .arg("--data-dir")
        .arg(data_dir)
        .args(["--bind-address", "127.0.0.1", "--https-port"])
        .arg(free_port().to_string())
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .arg("--disable-agent")
        .env("RUST_LOG", "error")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn orc server");
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for orc server") {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            panic!(
                "orc server started on {} instead of refusing",
                data_dir.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    let output = child.wait_with_output().expect("orc server output");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(!status.success(), "orc server exited 0: {stderr}");
    let errors: Vec<&str> = stderr.lines().filter(|l| l.starts_with("orc: ")).collect();
    assert_eq!(errors.len(), 1, "one error line: {stderr}");
    assert!(!kubeconfig.exists(), "a refused start wrote a kubeconfig");
    errors[0].to_string()
}

fn remove_database(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut name = db.as_os_str().to_owned();
        name.push(suffix);
        match std::fs::remove_file(PathBuf::from(name)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => panic!("remove database: {e}"),
            _ => {}
        }
    }
}

#[test]
fn a_data_dir_with_credentials_but_a_lost_or_foreign_database_is_refused() {
    let mut s = Server::start();
    s.kill9();
    let data = s.data_dir();
    let db = data.join("server/db/state.db");
    let start_fresh = format!(
        "remove {} to start a new cluster",
        data.join("server").display()
    );

    // Another application's database: refused, not a byte changed.
    remove_database(&db);
    {
        let conn = rusqlite::Connection::open(&db).unwrap();
        conn.execute_batch(
            "CREATE TABLE invoices (id INTEGER PRIMARY KEY, total REAL);
             INSERT INTO invoices(total) VALUES (12.5);",
        )
        .unwrap();
    }
    let before = std::fs::read(&db).unwrap();
    let error = refused_start(&data);
    assert!(
        error.contains("belongs to another application (tables: invoices)"),
        "{error}"
    );
    assert!(error.contains("--datastore-endpoint"), "{error}");
    assert_eq!(
        std::fs::read(&db).unwrap(),
        before,
        "the foreign database was changed"
    );

    // An empty file.
    remove_database(&db);
    std::fs::write(&db, b"").unwrap();
    let error = refused_start(&data);
    assert!(
        error.contains(&format!("datastore {} is empty", db.display())),
        "{error}"
    );
    assert!(error.contains(&start_fresh), "{error}");
    assert_eq!(
        std::fs::metadata(&db).unwrap().len(),
        0,
        "the empty file was written"
    );

    // No database at all.
    remove_database(&db);
    let error = refused_start(&data);
    assert!(
        error.contains(&format!("datastore {} is missing", db.display())),
        "{error}"
    );
    assert!(error.contains(&start_fresh), "{error}");
    assert!(!db.exists(), "a refused start created the database");
}

/// Every path under `dir` (and `dir`) that its group or others may access.
fn group_or_world_accessible(dir: &Path) -> Vec<String> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(path) = pending.pop() {
        let meta = std::fs::symlink_metadata(&path).expect("stat");
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            found.push(format!("{} {mode:o}", path.display()));
        }
        if meta.is_dir() {
            for entry in std::fs::read_dir(&path).expect("read dir") {
                pending.push(entry.expect("dir entry").path());
            }
        }
    }
    found
}

/// Makes `command`'s process run with umask 000 (everything it creates is 0777/0666
/// unless orc asks for less).
fn with_umask_000(command: &mut Command) -> &mut Command {
    // SAFETY: umask is async-signal-safe and touches only the child's own state.
    unsafe {
        command.pre_exec(|| {
            nix::sys::stat::umask(nix::sys::stat::Mode::empty());
            Ok(())
        })
    }
}

#[test]
fn an_agents_data_dir_is_private_under_umask_000() {
    let s = Server::start();
    let token = std::fs::read_to_string(s.data_dir().join("server/token")).unwrap();
    let scratch = tempfile::tempdir().expect("tempdir");
    let data = scratch.path().join("agent-data");
    let log = std::fs::File::create(scratch.path().join("agent.log")).unwrap();
    let mut command = Command::new(ORC);
    command
        .args(["agent", "--join", &s.url(), "--token", token.trim()])
        .args(["--node-name", "private-node"])
        .args(HOST_NETNS_AGENT_ARGS)
        .arg("--data-dir")
        .arg(&data)
        // No containerd: the agent joins and registers without touching the host.
        .arg("--containerd-socket")
        .arg(scratch.path().join("no-containerd.sock"))
        .stdout(Stdio::null())
        .stderr(log);
    let mut agent = with_umask_000(&mut command)
        .spawn()
        .expect("spawn orc agent");
    let kubeconfig = data.join("agent/kubelet.kubeconfig");
    wait_for("the agent to join and register its node", || {
        kubeconfig.exists() && s.kubectl(&["get", "node", "private-node"]).status.success()
    });
    let found = group_or_world_accessible(&data);
    let _ = agent.kill();
    let _ = agent.wait();
    assert_eq!(found, Vec::<String>::new());
}

#[test]
fn data_dir_and_everything_in_it_are_private_under_umask_000() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = free_port();
    let data = dir.path().join("data");
    let kubeconfig = dir.path().join("kubeconfig.yaml");
    let log = std::fs::File::create(dir.path().join("server.log")).unwrap();
    let mut command = Command::new(ORC);
    command
        .arg("server")
        .arg("--data-dir")
        .arg(&data)
        .args(["--bind-address", "127.0.0.1", "--https-port"])
        .arg(port.to_string())
        .arg("--write-kubeconfig")
        .arg(&kubeconfig)
        .arg("--disable-agent")
        .stdout(Stdio::null())
        .stderr(log);
    let s = Server {
        child: Some(
            with_umask_000(&mut command)
                .spawn()
                .expect("spawn orc server"),
        ),
        dir,
        port,
        extra_args: Vec::new(),
    };
    wait_for("server to answer", || {
        kubeconfig.exists() && std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    s.ok(&["create", "secret", "generic", "s", "--from-literal=k=v"]);
    let db = data.join("server/db/state.db");
    for file in [
        db.clone(),
        db.with_extension("db-wal"),
        data.join("server/token"),
    ] {
        assert!(file.exists(), "{} exists", file.display());
    }
    assert_eq!(group_or_world_accessible(&data), Vec::<String>::new());
    assert_eq!(group_or_world_accessible(&kubeconfig), Vec::<String>::new());
}
