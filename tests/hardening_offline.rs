//! A node without its server (issue 11, items 20 and 11): with `orc server --disable-agent`
//! and a separate `orc agent` in the test's network namespace, the server is killed and
//! the node must go on: pods keep running, the Service VIP and the cluster DNS keep
//! answering, an agent restarted meanwhile re-adopts its pods and serves the last known
//! Services without a server, and once the server is back the agent follows it again.
//! Secret and projected volumes live on a tmpfs of their own, gone with their pod.
//!
//! Needs root and the kubelet tests' tools (tests/support/kubelet.rs). Run under
//! `flock /tmp/orc-root-tests.lock`.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

mod support;
use support::kubelet::*;
use support::wait::{assert_stays_for_every, wait_until_every};

/// How long the server stays away before the agent is restarted. The issue asks for
/// ten minutes; what could give way over time (the list-watches' back-off, the
/// kubelet's retries) reaches its steady state within 31 s (1+2+4+8+16 s of back-off,
/// then its 30 s cap), so the test looks a little longer than that.
/// `ORC_OFFLINE_OUTAGE_SECS=600` runs the full window.
const DEFAULT_OUTAGE: Duration = Duration::from_secs(35);
/// How long the restarted agent is watched serving without a server.
const RESTARTED_WINDOW: Duration = Duration::from_secs(10);
/// How often the node is checked during a window (each check asks containerd, the
/// Service and the DNS).
const CHECK_EVERY: Duration = Duration::from_secs(1);
/// How long the agent may take to reach the server again (its back-off is capped at 30 s).
const RECONNECT_DEADLINE: Duration = Duration::from_secs(60);
const CLUSTER_CIDR: &str = "10.199.0.0/16";
/// A pod whose container ends at once, again and again: restarted under back-off
/// (10 s, 20 s, 40 s …), also while the server is away.
const CRASHING_POD: &str = "---
apiVersion: v1
kind: Pod
metadata:
  name: crashing
  namespace: default
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: docker.io/library/busybox:test
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"exit 1\"]
";
const SERVICE_NAME: &str = "web.default.svc.cluster.local.";

fn outage() -> Duration {
    std::env::var("ORC_OFFLINE_OUTAGE_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map_or(DEFAULT_OUTAGE, Duration::from_secs)
}

/// The kubelet test world with the server and the node's agent as two processes.
struct SplitNode {
    world: World,
    agent: Option<Child>,
}

impl SplitNode {
    fn start() -> SplitNode {
        let mut node = SplitNode {
            world: World::prepare(false),
            agent: None,
        };
        node.spawn_server();
        node.spawn_agent();
        node.world.wait_for("the node to have its podCIDR", || {
            !node
                .world
                .kubectl_out(&["get", "node", "kt-node", "-o", "jsonpath={.spec.podCIDR}"])
                .is_empty()
        });
        node
    }

    fn log_file(&self, name: &str) -> std::fs::File {
        std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.world.dir.join(name))
            .unwrap()
    }

    /// `orc server --disable-agent` in the test's namespace (its log: server.log).
    fn spawn_server(&mut self) {
        let w = &self.world;
        let child = w
            .in_netns(ORC)
            .arg("server")
            .arg("--disable-agent")
            .arg("--data-dir")
            .arg(w.dir.join("server-data"))
            .args(["--bind-address", "127.0.0.1"])
            .args(["--https-port", &w.port.to_string()])
            .arg("--write-kubeconfig")
            .arg(w.kubeconfig())
            .args(["--cluster-cidr", CLUSTER_CIDR])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(self.log_file("server.log"))
            .spawn()
            .expect("spawn orc server");
        self.world.server = Some(child);
        let w = &self.world;
        w.wait_for("the API server to answer", || {
            w.kubeconfig().exists() && w.kubectl(&["get", "namespace", "default"]).status.success()
        });
    }

    /// `orc agent` for node kt-node, joined to the server (its log: agent.log).
    fn spawn_agent(&mut self) {
        let w = &self.world;
        let token = std::fs::read_to_string(w.dir.join("server-data/server/token"))
            .expect("the server wrote its join token");
        let child = w
            .in_netns(ORC)
            .arg("agent")
            .args(["--join", &format!("https://127.0.0.1:{}", w.port)])
            .args(["--token", token.trim()])
            .args(["--node-name", "kt-node", "--node-ip", NODE_IP])
            .arg("--data-dir")
            .arg(w.data_dir())
            .arg("--containerd-socket")
            .arg(w.dir.join("containerd.sock"))
            .args(["--containerd-namespace", NAMESPACE])
            .args(["--cluster-cidr", CLUSTER_CIDR])
            .args(&w.server_args)
            .env("RUST_LOG", "info,orc::agent=debug")
            .stdout(Stdio::null())
            .stderr(self.log_file("agent.log"))
            .spawn()
            .expect("spawn orc agent");
        self.agent = Some(child);
    }

    fn kill_agent(&mut self) {
        if let Some(mut child) = self.agent.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    fn agent_log(&self) -> String {
        std::fs::read_to_string(self.world.dir.join("agent.log")).unwrap_or_default()
    }

    /// Whether the agent process still runs.
    fn agent_runs(&mut self) -> Result<(), String> {
        match self.agent.as_mut().map(Child::try_wait) {
            Some(Ok(None)) => Ok(()),
            other => Err(format!("the agent is not running: {other:?}")),
        }
    }

    /// The containers made for the pod with `uid` (one per instance).
    fn instances_of(&self, uid: &str) -> std::collections::BTreeSet<String> {
        self.world
            .containers()
            .lines()
            .filter(|id| id.starts_with(uid))
            .map(String::from)
            .collect()
    }

    /// The id of the (only) container of pod `name`.
    fn container_id(&self, name: &str) -> String {
        let pod = self.world.pod(name).unwrap_or_default();
        container_status(&pod)["containerID"]
            .as_str()
            .and_then(|id| id.strip_prefix("containerd://"))
            .unwrap_or_else(|| panic!("pod {name} has a container: {pod}"))
            .to_string()
    }

    /// What the node serves, as the test expects it while the server is away: the
    /// agent runs, the containers run with the same task pids, the Service VIP answers
    /// from one of the pods and the cluster DNS names the VIP.
    fn serving(
        &mut self,
        tasks: &[(String, String)],
        vip: SocketAddr,
        pods: &[&str],
    ) -> Result<(), String> {
        self.agent_runs()?;
        for (id, pid) in tasks {
            let now = self.world.task_pid(id);
            if now.as_deref() != Some(pid.as_str()) {
                return Err(format!("container {id}: task {pid} is now {now:?}"));
            }
        }
        let answer = self.world.http_get_from_node(vip)?;
        if !pods.contains(&answer.as_str()) {
            return Err(format!("the Service answered {answer:?}"));
        }
        let dns = self.world.dns_query_from_node(SERVICE_NAME, false)?;
        if dns != ("NoError".to_string(), vec![vip.ip().to_string()]) {
            return Err(format!("the cluster DNS answered {dns:?}"));
        }
        Ok(())
    }
}

impl Drop for SplitNode {
    fn drop(&mut self) {
        // The agent first: then the world stops the server and containerd.
        self.kill_agent();
        if std::thread::panicking() {
            eprintln!("--- orc agent log ---\n{}", self.agent_log());
        }
    }
}

#[test]
fn pods_services_and_dns_outlive_the_server_and_an_agent_restart() {
    let mut node = SplitNode::start();
    let w = &node.world;
    w.step("A pod pair behind a Service, with the server up");
    let mut yaml = service_yaml("web", "default", "web", false);
    yaml.push_str(&httpd_pod("keep", "default", "web"));
    yaml.push_str(&httpd_pod("gone", "default", "web"));
    yaml.push_str(CRASHING_POD);
    w.apply(&yaml);
    w.wait_running("keep");
    w.wait_running("gone");
    w.wait_for("the Service to have both pods as endpoints", || {
        w.ready_endpoint_ips("default", "web").len() == 2
    });
    let vip: SocketAddr = format!(
        "{}:80",
        w.kubectl_out(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
    )
    .parse()
    .expect("the Service has a ClusterIP");
    let ids = [node.container_id("keep"), node.container_id("gone")];
    let tasks: Vec<(String, String)> = ids
        .iter()
        .map(|id| {
            let pid = node.world.task_pid(id);
            (id.clone(), pid.unwrap_or_else(|| panic!("{id} runs")))
        })
        .collect();
    // ClusterIPs are no local addresses: the node only needs a route for them.
    let routed = Command::new("ip")
        .args(["-n", &node.world.netns, "route", "replace", SERVICE_CIDR])
        .args(["dev", "orc0"])
        .status()
        .expect("run ip");
    assert!(
        routed.success(),
        "route the service network in the test namespace"
    );
    let pods = ["keep", "gone"];
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "the Service and the DNS to answer",
        || node.serving(&tasks, vip, &pods),
    );
    // The agent keeps its last known state a moment after it changes.
    node.world.wait_for("the last known state to be saved", || {
        let dir = node.world.data_dir().join("agent/last-known");
        [
            "pods.json",
            "services.json",
            "endpointslices.json",
            "pod-cidr",
        ]
        .iter()
        .all(|f| dir.join(f).exists())
            && std::fs::read_to_string(dir.join("endpointslices.json"))
                .is_ok_and(|e| e.matches("\"addresses\"").count() >= 2)
    });

    let crashing_uid = node.world.pod("crashing").unwrap()["metadata"]["uid"]
        .as_str()
        .expect("pod crashing has a uid")
        .to_string();
    node.world.remember("crashing");

    node.world
        .step("The server is gone: nothing on the node is torn down");
    let crashing_before = node.instances_of(&crashing_uid);
    node.world.kill_server();
    let outage = outage();
    assert_stays_for_every(
        outage,
        CHECK_EVERY,
        "the pods, the Service and the DNS to keep serving without a server",
        || node.serving(&tasks, vip, &pods),
    );

    node.world
        .step("The agent restarts while the server is still away: it re-adopts everything");
    node.kill_agent();
    node.spawn_agent();
    node.world.wait_for(
        "the restarted agent to go on with the last known state",
        || {
            let log = node.agent_log();
            log.matches("going on with the last known state").count() >= 3
        },
    );
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "the restarted agent to serve the Service and the DNS",
        || node.serving(&tasks, vip, &pods),
    );
    assert_stays_for_every(
        RESTARTED_WINDOW,
        CHECK_EVERY,
        "the restarted agent to keep the pods, the Service and the DNS without a server",
        || node.serving(&tasks, vip, &pods),
    );

    let crashing_after = node.instances_of(&crashing_uid);
    assert!(
        crashing_after.difference(&crashing_before).count() > 0,
        "the crashing pod was restarted while the server was away: {crashing_before:?} then {crashing_after:?}"
    );

    node.world
        .step("The server is back: a pod deleted meanwhile goes, the rest stays as it runs");
    node.spawn_server();
    node.world.kubectl_ok(&[
        "delete",
        "pod",
        "gone",
        "--force",
        "--grace-period=0",
        "--wait=false",
    ]);
    let gone_id = ids[1].clone();
    node.world.wait_for_within(
        RECONNECT_DEADLINE,
        "the deleted pod's container to be stopped and removed",
        || node.world.task_pid(&gone_id).is_none() && !node.world.containers().contains(&gone_id),
    );
    node.world
        .wait_for_within(RECONNECT_DEADLINE, "the node to be Ready again", || {
            node.world.node_ready()["status"] == "True"
        });
    node.world
        .wait_for("the Service to answer from the pod left only", || {
            (0..5).all(|_| node.world.http_get_from_node(vip).as_deref() == Ok("keep"))
        });
    let keep = &tasks[..1];
    assert_eq!(
        node.serving(keep, vip, &["keep"]),
        Ok(()),
        "the pod that stayed runs in the same task throughout"
    );
    assert_eq!(
        node.world.pod("keep").unwrap()["status"]["phase"],
        "Running"
    );
}

/// The type of the file system mounted at `path` in the agent's mount namespace (the
/// test's own: the agent enters only a network namespace), from /proc/self/mountinfo.
fn mount_type(path: &std::path::Path) -> Option<String> {
    let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let path = path.to_str()?;
    mountinfo.lines().find_map(|line| {
        let (mount, fs) = line.split_once(" - ")?;
        (mount.split(' ').nth(4) == Some(path))
            .then(|| fs.split(' ').next().unwrap_or("").to_string())
    })
}

#[test]
fn secret_and_projected_volumes_live_on_tmpfs_and_go_with_their_pod() {
    let w = World::start();
    w.step("A pod with secret, projected and downwardAPI volumes");
    w.apply(&format!(
        "---
apiVersion: v1
kind: Secret
metadata:
  name: creds
  namespace: default
stringData:
  password: s3cret
---
apiVersion: v1
kind: ConfigMap
metadata:
  name: settings
  namespace: default
data:
  mode: fast
---
apiVersion: v1
kind: Pod
metadata:
  name: reader
  namespace: default
  labels:
    app: reader
    tier: backend
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"cat /creds/password /all/secret/pw /all/mode; echo; cat /all/labels; echo; cat /info/name /info/mem; echo; sleep 3600\"]
    resources:
      limits:
        memory: 64Mi
    volumeMounts:
    - name: creds
      mountPath: /creds
    - name: all
      mountPath: /all
    - name: info
      mountPath: /info
  volumes:
  - name: creds
    secret:
      secretName: creds
  - name: all
    projected:
      defaultMode: 0400
      sources:
      - secret:
          name: creds
          items:
          - key: password
            path: secret/pw
      - configMap:
          name: settings
      - downwardAPI:
          items:
          - path: labels
            fieldRef:
              fieldPath: metadata.labels
  - name: info
    downwardAPI:
      items:
      - path: name
        fieldRef:
          fieldPath: metadata.name
      - path: mem
        resourceFieldRef:
          containerName: app
          resource: limits.memory
          divisor: 1Mi
"
    ));
    w.wait_running("reader");
    let uid = w.pod("reader").unwrap()["metadata"]["uid"]
        .as_str()
        .unwrap()
        .to_string();
    let volumes = w.data_dir().join("agent/pods").join(&uid).join("volumes");
    let (secret, projected) = (volumes.join("secret/creds"), volumes.join("projected/all"));
    for volume in [&secret, &projected] {
        assert_eq!(
            mount_type(volume).as_deref(),
            Some("tmpfs"),
            "{} is a tmpfs mount",
            volume.display()
        );
    }
    assert_eq!(
        std::fs::read_to_string(secret.join("password")).unwrap(),
        "s3cret"
    );
    let pw = projected.join("secret/pw");
    assert_eq!(std::fs::read_to_string(&pw).unwrap(), "s3cret");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&pw).unwrap().permissions().mode() & 0o777,
        0o400,
        "the projected volume's defaultMode"
    );
    assert_eq!(
        mount_type(&volumes.join("downward-api/info")),
        None,
        "downwardAPI volumes hold no secrets and stay on disk, as upstream"
    );
    let expected = "s3crets3cretfast\napp=\"reader\"\ntier=\"backend\"\nreader64";
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "the container to read its volumes",
        || {
            let out = w.kubectl(&["logs", "reader"]);
            let text = String::from_utf8_lossy(&out.stdout).into_owned();
            if text.contains(expected) {
                Ok(())
            } else {
                Err(format!("{text:?} {}", String::from_utf8_lossy(&out.stderr)))
            }
        },
    );

    w.step("The pod is deleted: the mounts go with it");
    w.kubectl_ok(&["delete", "pod", "reader", "--wait=false"]);
    w.wait_for("the pod to be gone", || w.pod("reader").is_none());
    w.wait_for(
        "the secret and projected volumes to be unmounted and removed",
        || {
            [&secret, &projected]
                .iter()
                .all(|v| mount_type(v).is_none() && !v.exists())
        },
    );
}
