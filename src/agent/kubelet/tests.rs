//! Kubelet tests on the fake runtime, network and API: what a pod worker does for a pod
//! and what it reports.

use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::watch;

use super::api::{ApiCall, FakePodApi, PodUpdate};
use super::worker::PodWorker;
use super::*;
use crate::agent::net::{FakeNetwork, NetCall};
use crate::agent::runtime::{FakeCall, FakeRuntime, SIGTERM};

struct Harness {
    shared: Arc<Shared>,
    rt: Arc<FakeRuntime>,
    net: Arc<FakeNetwork>,
    api: Arc<FakePodApi>,
    dir: tempfile::TempDir,
}

fn harness() -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let rt = Arc::new(FakeRuntime::new());
    rt.add_image("busybox:test");
    let net = Arc::new(FakeNetwork::new("10.42.3.0/24".parse().unwrap()).unwrap());
    let api = Arc::new(FakePodApi::new());
    std::fs::write(
        dir.path().join("host-resolv.conf"),
        "nameserver 192.168.1.1\n",
    )
    .unwrap();
    let config = KubeletConfig {
        node_name: "n1".into(),
        host_ip: "192.168.1.2".parse().unwrap(),
        agent_dir: dir.path().join("agent"),
        dns: DnsConfig {
            servers: vec!["10.43.0.10".parse().unwrap()],
            domain: "cluster.local".into(),
            host_resolv_conf: dir.path().join("host-resolv.conf"),
        },
        sync_interval: Duration::from_secs(1),
        cgroup_root: dir.path().join("cgroup"),
        shared_ipc_uts: false,
        secrets_on_tmpfs: false,
        memory_capacity: 1 << 30,
        oom_score_floor: None,
        runtime_handlers: vec!["runc".into(), "crun".into()],
        max_pods: 110,
        seccomp_root: dir.path().join("seccomp"),
    };
    let shared = Arc::new(Shared {
        config,
        runtime: rt.clone(),
        network: net.clone(),
        api: api.clone(),
        tokens: Default::default(),
        evictions: Default::default(),
        metrics: crate::metrics::NodeMetrics::new(),
    });
    Harness {
        shared,
        rt,
        net,
        api,
        dir,
    }
}

fn pod(uid: &str, policy: &str, command: &str) -> Value {
    json!({
        "metadata": {"name": "web", "namespace": "default", "uid": uid},
        "spec": {
            "nodeName": "n1",
            "restartPolicy": policy,
            "containers": [{
                "name": "app", "image": "busybox:test", "imagePullPolicy": "IfNotPresent",
                "command": ["sh", "-c", command],
                "env": [{"name": "ME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}],
                "volumeMounts": [{"name": "scratch", "mountPath": "/scratch"}],
            }],
            "volumes": [{"name": "scratch", "emptyDir": {}}],
        },
        "status": {"phase": "Pending"},
    })
}

fn creates(rt: &FakeRuntime) -> Vec<String> {
    rt.calls()
        .into_iter()
        .filter_map(|c| match c {
            FakeCall::CreateContainer(cfg) => Some(cfg.id),
            _ => None,
        })
        .collect()
}

fn last_status(api: &FakePodApi) -> Value {
    api.statuses().last().cloned().expect("a status was posted")
}

#[tokio::test]
async fn new_pod_gets_a_sandbox_and_a_running_container() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "sleep 1000"), vec![]);
    w.sync_once().await;

    let netns = h.dir.path().join("agent/netns/u1");
    let calls = h.net.calls();
    assert_eq!(calls[0], NetCall::CreateNetns(netns.clone()));
    assert!(matches!(&calls[1], NetCall::AttachPod { owner, .. } if owner == "u1"));

    let pod_dir = h.dir.path().join("agent/pods/u1");
    let resolv = std::fs::read_to_string(pod_dir.join("resolv.conf")).unwrap();
    assert!(resolv.contains("nameserver 10.43.0.10"), "{resolv}");
    assert!(
        resolv.contains("search default.svc.cluster.local"),
        "{resolv}"
    );
    let hosts = std::fs::read_to_string(pod_dir.join("etc-hosts")).unwrap();
    assert!(hosts.contains("10.42.3.2\tweb"), "{hosts}");
    assert!(pod_dir.join("volumes/empty-dir/scratch").is_dir());

    assert_eq!(creates(&h.rt), vec!["u1-app-0"]);
    let cfg = h.rt.container_config("u1-app-0").unwrap();
    assert!(cfg.env.contains(&("ME".to_string(), "web".to_string())));
    assert_eq!(cfg.hostname.as_deref(), Some("web"));
    assert_eq!(
        cfg.namespaces.network,
        crate::agent::runtime::NamespaceMode::Path(netns)
    );
    assert!(cfg
        .mounts
        .iter()
        .any(|m| m.container_path == "/etc/resolv.conf"));
    assert!(cfg.mounts.iter().any(|m| m.container_path == "/scratch"));
    assert!(h.rt.calls().contains(&FakeCall::Start("u1-app-0".into())));

    let s = last_status(&h.api);
    assert_eq!(s["phase"], "Running");
    assert_eq!(s["podIP"], "10.42.3.2");
    assert_eq!(s["hostIP"], "192.168.1.2");
    let cs = &s["containerStatuses"][0];
    assert_eq!(cs["containerID"], "containerd://u1-app-0");
    assert_eq!(cs["ready"], true);
    assert!(cs["state"]["running"]["startedAt"].is_string());
    assert!(cs["imageID"].as_str().unwrap().contains("@sha256:"));
    assert_eq!(h.api.event_reasons(), vec!["Pulled", "Created", "Started"]);
}

#[tokio::test]
async fn first_container_task_is_prepared_before_it_starts_once_the_pod_is_plugged_in() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "sleep 1000"), vec![]);
    w.sync_once().await;
    let calls = h.rt.calls();
    let prepared = calls
        .iter()
        .position(|c| *c == FakeCall::PrepareStart("u1-app-0".into()))
        .expect("the task is prepared while the pod is plugged in");
    let started = calls
        .iter()
        .position(|c| *c == FakeCall::Start("u1-app-0".into()))
        .expect("the container starts");
    assert!(prepared < started, "{calls:?}");
    assert!(h
        .net
        .calls()
        .iter()
        .any(|c| matches!(c, NetCall::AttachPod { owner, .. } if owner == "u1")));
    assert_eq!(last_status(&h.api)["podIP"], "10.42.3.2");
}

#[tokio::test]
async fn failed_network_attach_starts_nothing_and_the_sandbox_is_made_again() {
    let h = harness();
    h.net.set_bridge_missing(true);
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "sleep 1000"), vec![]);
    w.sync_once().await;

    // The container made meanwhile never ran and is gone; the address is given back.
    assert!(!h.rt.calls().iter().any(|c| matches!(c, FakeCall::Start(_))));
    assert!(h.rt.calls().contains(&FakeCall::Remove("u1-app-0".into())));
    assert!(h
        .net
        .calls()
        .iter()
        .any(|c| matches!(c, NetCall::DetachPod { owner, .. } if owner == "u1")));
    assert_eq!(h.net.pod_ip("u1"), None);
    let s = last_status(&h.api);
    assert_eq!(s["phase"], "Pending");
    assert!(
        s["containerStatuses"][0]["state"]["running"].is_null(),
        "{s}"
    );
    let events = h.api.events();
    assert!(
        events
            .iter()
            .any(|(reason, message)| reason == "FailedCreatePodSandBox"
                && message.contains("bridge orc0 does not exist")),
        "{events:?}"
    );

    h.net.set_bridge_missing(false);
    w.sync_once().await;
    let s = last_status(&h.api);
    assert_eq!(s["phase"], "Running", "{s}");
    assert_eq!(s["podIP"], h.net.pod_ip("u1").unwrap().to_string());
    assert_eq!(s["containerStatuses"][0]["restartCount"], 0);
}

#[tokio::test]
async fn status_is_posted_only_when_it_changes() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "sleep 1000"), vec![]);
    w.sync_once().await;
    w.sync_once().await;
    w.sync_once().await;
    assert_eq!(h.api.statuses().len(), 1);
    h.rt.exit("u1-app-0", 0, false);
    w.sync_once().await;
    assert_eq!(h.api.statuses().len(), 2);
}

#[tokio::test(start_paused = true)]
async fn crashing_container_backs_off_exponentially() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "exit 1"), vec![]);
    w.sync_once().await;
    // First crash: restarted at once.
    h.rt.exit("u1-app-0", 1, false);
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0", "u1-app-1"]);
    assert!(h.rt.calls().contains(&FakeCall::Remove("u1-app-0".into())));
    // Second crash: 10s of back-off.
    h.rt.exit("u1-app-1", 1, false);
    w.sync_once().await;
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff");
    assert_eq!(cs["restartCount"], 1);
    assert_eq!(cs["lastState"]["terminated"]["exitCode"], 1);
    assert_eq!(last_status(&h.api)["phase"], "Running");
    tokio::time::advance(Duration::from_secs(9)).await;
    w.sync_once().await;
    assert_eq!(creates(&h.rt).len(), 2);
    tokio::time::advance(Duration::from_secs(2)).await;
    w.sync_once().await;
    assert_eq!(creates(&h.rt).len(), 3);
    assert_eq!(
        last_status(&h.api)["containerStatuses"][0]["restartCount"],
        2
    );
    // Third crash: 20s.
    h.rt.exit("u1-app-2", 1, false);
    w.sync_once().await;
    tokio::time::advance(Duration::from_secs(19)).await;
    w.sync_once().await;
    assert_eq!(creates(&h.rt).len(), 3);
    tokio::time::advance(Duration::from_secs(2)).await;
    w.sync_once().await;
    assert_eq!(creates(&h.rt).len(), 4);
    assert_eq!(
        h.api
            .event_reasons()
            .iter()
            .filter(|r| *r == "BackOff")
            .count(),
        2
    );
}

#[tokio::test]
async fn an_ephemeral_container_starts_once_in_the_targets_pid_namespace_and_is_never_restarted() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "sleep 1000"), vec![]);
    w.sync_once().await;
    let mut debugged = pod("u1", "Always", "sleep 1000");
    debugged["spec"]["ephemeralContainers"] = json!([{"name": "debugger",
        "image": "busybox:test", "imagePullPolicy": "IfNotPresent",
        "command": ["sh"], "stdin": true, "tty": true, "targetContainerName": "app"}]);
    w.update(debugged);
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0", "u1-debugger-0"]);
    let cfg = h.rt.container_config("u1-debugger-0").unwrap();
    assert!(cfg.stdin && cfg.tty);
    assert_eq!(
        cfg.labels[super::container::CONTAINER_KIND_LABEL],
        "ephemeral"
    );
    let app_pid = match h.rt.status("u1-app-0").await.unwrap().state {
        crate::agent::runtime::ContainerState::Running { pid } => pid,
        other => panic!("app is {other:?}"),
    };
    assert_eq!(
        cfg.namespaces.pid,
        crate::agent::runtime::NamespaceMode::Path(format!("/proc/{app_pid}/ns/pid").into())
    );
    let s = last_status(&h.api);
    let es = &s["ephemeralContainerStatuses"][0];
    assert_eq!(es["name"], "debugger");
    assert!(es["state"]["running"].is_object(), "{es}");
    assert_eq!(es["ready"], false);
    assert_eq!(s["conditions"][2]["status"], "True", "the pod stays ready");

    h.rt.exit("u1-debugger-0", 0, false);
    for _ in 0..3 {
        w.sync_once().await;
    }
    assert_eq!(creates(&h.rt).len(), 2, "never restarted");
    let es = &last_status(&h.api)["ephemeralContainerStatuses"][0];
    assert_eq!(es["state"]["terminated"]["reason"], "Completed", "{es}");
    assert_eq!(es["restartCount"], 0);
    assert_eq!(last_status(&h.api)["phase"], "Running");
}

#[tokio::test]
async fn restart_policy_never_ends_in_failed_and_on_failure_in_succeeded() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Never", "exit 3"), vec![]);
    w.sync_once().await;
    h.rt.exit("u1-app-0", 3, false);
    w.sync_once().await;
    w.sync_once().await;
    let s = last_status(&h.api);
    assert_eq!(s["phase"], "Failed");
    let t = &s["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["exitCode"], 3);
    assert_eq!(t["reason"], "Error");
    assert_eq!(creates(&h.rt).len(), 1);

    let mut w = PodWorker::new(h.shared.clone(), pod("u2", "OnFailure", "true"), vec![]);
    w.sync_once().await;
    h.rt.exit("u2-app-0", 0, false);
    w.sync_once().await;
    let s = last_status(&h.api);
    assert_eq!(s["phase"], "Succeeded");
    assert_eq!(
        s["containerStatuses"][0]["state"]["terminated"]["reason"],
        "Completed"
    );
}

#[tokio::test]
async fn oom_kill_is_reported() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Never", "x"), vec![]);
    w.sync_once().await;
    h.rt.exit("u1-app-0", 137, true);
    w.sync_once().await;
    let t = &last_status(&h.api)["containerStatuses"][0]["state"]["terminated"];
    assert_eq!(t["reason"], "OOMKilled");
}

#[tokio::test(start_paused = true)]
async fn missing_image_waits_with_err_image_pull_then_back_off() {
    let h = harness();
    let mut p = pod("u1", "Always", "x");
    p["spec"]["containers"][0]["image"] = json!("registry.local/nope:1");
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert_eq!(cs["state"]["waiting"]["reason"], "ErrImagePull");
    assert!(cs["state"]["waiting"]["message"]
        .as_str()
        .unwrap()
        .contains("nope"));
    assert_eq!(last_status(&h.api)["phase"], "Pending");
    w.sync_once().await;
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert_eq!(cs["state"]["waiting"]["reason"], "ImagePullBackOff");
    let message = cs["state"]["waiting"]["message"].as_str().unwrap();
    assert!(
        message.starts_with("Back-off pulling image \"registry.local/nope:1\": ErrImagePull: "),
        "{message}"
    );
    let events = h.api.events();
    for (reason, text) in [
        ("Failed", "Error: ErrImagePull"),
        (
            "BackOff",
            "Back-off pulling image \"registry.local/nope:1\"",
        ),
        ("Failed", "Error: ImagePullBackOff"),
    ] {
        assert!(
            events.iter().any(|(r, m)| r == reason && m == text),
            "no {reason} {text:?} in {events:?}"
        );
    }
    // Once the image can be pulled, the next try after the back-off starts it.
    h.rt.add_registry_image("registry.local/nope:1");
    tokio::time::advance(Duration::from_secs(11)).await;
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0"]);
    assert!(h.api.event_reasons().contains(&"Pulling".to_string()));
}

#[tokio::test]
async fn missing_config_map_is_create_container_config_error() {
    let h = harness();
    let mut p = pod("u1", "Always", "x");
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cfg", "key": "k"}}}]);
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert_eq!(
        cs["state"]["waiting"]["reason"],
        "CreateContainerConfigError"
    );
    h.api.add_object(
        "configmaps",
        json!({"metadata": {"name": "cfg"}, "data": {"k": "v"}}),
    );
    w.sync_once().await;
    let cfg = h.rt.container_config("u1-app-0").unwrap();
    assert!(cfg.env.contains(&("X".to_string(), "v".to_string())));
}

#[tokio::test]
async fn secret_and_config_map_volumes_are_written_read_only() {
    let h = harness();
    h.api.add_object(
        "secrets",
        json!({"metadata": {"name": "s"}, "data": {"password": "aHVudGVyMg=="}}),
    );
    h.api.add_object(
        "configmaps",
        json!({"metadata": {"name": "c"}, "data": {"a.conf": "x=1"}}),
    );
    let mut p = pod("u1", "Always", "x");
    p["spec"]["volumes"] = json!([
        {"name": "scratch", "emptyDir": {}},
        {"name": "sec", "secret": {"secretName": "s", "defaultMode": 0o400}},
        {"name": "conf", "configMap": {"name": "c"}},
    ]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([
        {"name": "sec", "mountPath": "/secret"},
        {"name": "conf", "mountPath": "/etc/app"},
    ]);
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    let dir = h.dir.path().join("agent/pods/u1/volumes");
    assert_eq!(
        std::fs::read(dir.join("secret/sec/password")).unwrap(),
        b"hunter2"
    );
    assert_eq!(
        std::fs::read(dir.join("configmap/conf/a.conf")).unwrap(),
        b"x=1"
    );
    let cfg = h.rt.container_config("u1-app-0").unwrap();
    let m = cfg
        .mounts
        .iter()
        .find(|m| m.container_path == "/secret")
        .unwrap();
    assert!(m.read_only);
}

#[tokio::test]
async fn the_service_account_volume_holds_a_pod_bound_token_the_ca_and_the_namespace() {
    use std::os::unix::fs::PermissionsExt;
    let h = harness();
    h.api.add_token("robot", "jwt-1", "2099-01-01T00:00:00Z");
    h.api.add_object(
        "configmaps",
        json!({"metadata": {"name": "kube-root-ca.crt"}, "data": {"ca.crt": "PEM"}}),
    );
    let mut p = pod("u1", "Always", "x");
    p["spec"]["serviceAccountName"] = json!("robot");
    p["spec"]["volumes"] = json!([{"name": "kube-api-access-abcde", "projected": {
        "defaultMode": 420, "sources": [
            {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
            {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
            {"downwardAPI": {"items": [{"path": "namespace",
                "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}}]}}]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "kube-api-access-abcde",
        "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]);
    let mut w = PodWorker::new(h.shared.clone(), p.clone(), vec![]);
    w.sync_once().await;
    let dir = h
        .dir
        .path()
        .join("agent/pods/u1/volumes/projected/kube-api-access-abcde");
    assert_eq!(std::fs::read(dir.join("token")).unwrap(), b"jwt-1");
    assert_eq!(std::fs::read(dir.join("ca.crt")).unwrap(), b"PEM");
    let namespace = p["metadata"]["namespace"].as_str().unwrap();
    assert_eq!(
        std::fs::read_to_string(dir.join("namespace")).unwrap(),
        namespace
    );
    let mode = std::fs::metadata(dir.join("token"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o644);
    let requests: Vec<Value> = h
        .api
        .calls()
        .into_iter()
        .filter_map(|c| match c {
            ApiCall::RequestToken { account, request } if account == "robot" => Some(request),
            _ => None,
        })
        .collect();
    assert_eq!(requests.len(), 1);
    assert_eq!(
        requests[0]["spec"]["boundObjectRef"],
        json!({"kind": "Pod", "apiVersion": "v1", "name": p["metadata"]["name"], "uid": "u1"})
    );
    assert_eq!(requests[0]["spec"]["expirationSeconds"], 3607);
    let cfg = h.rt.container_config("u1-app-0").unwrap();
    let m = cfg
        .mounts
        .iter()
        .find(|m| m.container_path == "/var/run/secrets/kubernetes.io/serviceaccount")
        .unwrap();
    assert!(m.read_only);

    // A second pod of the account gets its own token (tokens are bound to one pod).
    let mut other = p.clone();
    other["metadata"]["uid"] = json!("u2");
    other["metadata"]["name"] = json!("other");
    let mut w2 = PodWorker::new(h.shared.clone(), other, vec![]);
    w2.sync_once().await;
    let count = h
        .api
        .calls()
        .iter()
        .filter(|c| matches!(c, ApiCall::RequestToken { .. }))
        .count();
    assert_eq!(count, 2);
}

#[tokio::test]
async fn deleted_pod_is_stopped_torn_down_and_deleted_in_the_api() {
    let h = harness();
    let p = pod("u1", "Always", "sleep 1000");
    let (tx, rx) = watch::channel(Some(p.clone()));
    let worker = PodWorker::new(h.shared.clone(), p.clone(), vec![]);
    let task = tokio::spawn(worker.run(rx, Arc::new(tokio::sync::Notify::new())));
    let started = || h.rt.calls().contains(&FakeCall::Start("u1-app-0".into()));
    tokio::time::timeout(Duration::from_secs(5), async {
        while !started() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("container started");
    let mut deleting = p.clone();
    deleting["metadata"]["deletionTimestamp"] = json!("2030-01-01T00:00:00Z");
    deleting["metadata"]["deletionGracePeriodSeconds"] = json!(5);
    tx.send(Some(deleting)).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("worker finished (deadlocked?)")
        .unwrap();
    let calls = h.rt.calls();
    assert!(calls.contains(&FakeCall::Stop {
        id: "u1-app-0".into(),
        signal: SIGTERM,
        grace: Duration::from_secs(5)
    }));
    assert!(calls.contains(&FakeCall::Remove("u1-app-0".into())));
    let net = h.net.calls();
    assert!(net
        .iter()
        .any(|c| matches!(c, NetCall::DetachPod { owner, .. } if owner == "u1")));
    assert!(net.iter().any(|c| matches!(c, NetCall::DeleteNetns(_))));
    assert!(!h.dir.path().join("agent/pods/u1").exists());
    assert!(h.api.calls().contains(&ApiCall::DeletePod {
        pod: "default/web".into(),
        uid: "u1".into()
    }));
    assert!(h.api.event_reasons().contains(&"Killing".to_string()));
}

#[tokio::test]
async fn restarted_agent_adopts_running_containers_without_restarting_them() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "sleep 1000"), vec![]);
    w.sync_once().await;
    let mut stored = pod("u1", "Always", "sleep 1000");
    stored["status"] = last_status(&h.api);
    drop(w);

    // A new agent: same runtime and network, the pod as the API has it.
    let found = h.rt.list_containers().await.unwrap();
    let calls_before = h.rt.calls().len();
    let mut w = PodWorker::new(h.shared.clone(), stored.clone(), found);
    w.sync_once().await;
    let after: Vec<FakeCall> = h.rt.calls()[calls_before..].to_vec();
    assert!(
        !after.iter().any(|c| matches!(
            c,
            FakeCall::CreateContainer(_)
                | FakeCall::Start(_)
                | FakeCall::Stop { .. }
                | FakeCall::Remove(_)
        )),
        "{after:?}"
    );
    // Nothing changed, so nothing is posted; the status would be the same.
    assert_eq!(h.api.statuses().len(), 1);
    assert!(!status::status_changed(&stored["status"], &w.status()));
}

#[tokio::test]
async fn init_containers_run_in_order_before_app_containers() {
    let h = harness();
    let mut p = pod("u1", "Always", "sleep 1000");
    p["spec"]["initContainers"] = json!([
        {"name": "one", "image": "busybox:test", "imagePullPolicy": "IfNotPresent", "command": ["true"]},
        {"name": "two", "image": "busybox:test", "imagePullPolicy": "IfNotPresent", "command": ["true"]},
    ]);
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-one-0"]);
    let s = last_status(&h.api);
    assert_eq!(s["phase"], "Pending");
    assert!(s["initContainerStatuses"][0]["state"]["running"].is_object());
    assert_eq!(
        s["containerStatuses"][0]["state"]["waiting"]["reason"],
        "PodInitializing"
    );
    h.rt.exit("u1-one-0", 0, false);
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-one-0", "u1-two-0"]);
    h.rt.exit("u1-two-0", 0, false);
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-one-0", "u1-two-0", "u1-app-0"]);
    let s = last_status(&h.api);
    assert_eq!(s["phase"], "Running");
    let init = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap()
        .clone();
    assert_eq!(init["status"], "True");
}

#[tokio::test]
async fn pods_gone_while_the_agent_was_away_are_cleaned_up() {
    let h = harness();
    // A previous agent ran pod "old"; the API no longer has it.
    let mut w = PodWorker::new(h.shared.clone(), pod("old", "Always", "sleep 1000"), vec![]);
    w.sync_once().await;
    drop(w);
    let mut kubelet = Kubelet::new(h.shared.clone());
    kubelet.load_existing().await.unwrap();
    kubelet.handle(PodUpdate::Snapshot(vec![pod("new", "Always", "sleep 1")]));
    let gone = || {
        h.rt.calls().contains(&FakeCall::Remove("old-app-0".into()))
            && !h.dir.path().join("agent/pods/old").exists()
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while !gone() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("orphan cleaned up");
    assert!(h.rt.calls().contains(&FakeCall::Start("new-app-0".into())));
    assert!(!h
        .api
        .calls()
        .iter()
        .any(|c| matches!(c, ApiCall::DeletePod { .. })));
}

#[tokio::test]
async fn last_known_pods_are_adopted_and_nothing_is_cleaned_up_until_the_server_lists() {
    let h = harness();
    // A previous agent ran pods a and b; b started after the last known state was saved.
    for uid in ["a", "b"] {
        let mut w = PodWorker::new(h.shared.clone(), pod(uid, "Always", "sleep 1000"), vec![]);
        w.sync_once().await;
    }
    let calls_before = h.rt.calls().len();
    let mut kubelet = Kubelet::new(h.shared.clone());
    kubelet.load_existing().await.unwrap();
    kubelet.handle(PodUpdate::LastKnown(vec![pod("a", "Always", "sleep 1000")]));
    assert_eq!(kubelet.pods(), ["a"]);
    let changed_containers = |calls: &[FakeCall]| -> Vec<FakeCall> {
        calls
            .iter()
            .filter(|c| {
                matches!(
                    c,
                    FakeCall::CreateContainer(_)
                        | FakeCall::Start(_)
                        | FakeCall::Stop { .. }
                        | FakeCall::Remove(_)
                )
            })
            .cloned()
            .collect()
    };
    // A few syncs of a's worker.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        changed_containers(&h.rt.calls()[calls_before..]),
        [],
        "the last known state neither restarts a nor cleans up b"
    );
    assert!(h.dir.path().join("agent/pods/b").exists());

    // The server answers: a was deleted meanwhile, b still exists.
    kubelet.handle(PodUpdate::Deleted(pod("a", "Always", "sleep 1000")));
    kubelet.handle(PodUpdate::Snapshot(vec![pod("b", "Always", "sleep 1000")]));
    let a_gone = || {
        h.rt.calls().contains(&FakeCall::Remove("a-app-0".into()))
            && !h.dir.path().join("agent/pods/a").exists()
    };
    tokio::time::timeout(Duration::from_secs(5), async {
        while !a_gone() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("a torn down once the server listed the pods");
    let after = changed_containers(&h.rt.calls()[calls_before..]);
    assert!(
        after.iter().all(
            |c| matches!(c, FakeCall::Stop { id, .. } | FakeCall::Remove(id) if id == "a-app-0")
        ),
        "only a's container is stopped and removed; b is adopted as it runs: {after:?}"
    );
}

fn failing() -> crate::agent::runtime::ExecOutput {
    crate::agent::runtime::ExecOutput {
        stdout: b"not yet".to_vec(),
        stderr: vec![],
        exit_code: 1,
    }
}

#[tokio::test(start_paused = true)]
async fn readiness_probe_decides_ready() {
    let h = harness();
    let mut p = pod("u1", "Always", "sleep 1000");
    p["spec"]["containers"][0]["readinessProbe"] =
        json!({"exec": {"command": ["cat", "/ready"]}, "periodSeconds": 1, "failureThreshold": 1});
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    h.rt.set_exec_result("u1-app-0", failing());
    w.sync_once().await;
    let s = last_status(&h.api);
    assert_eq!(s["containerStatuses"][0]["ready"], false);
    assert!(h.api.event_reasons().contains(&"Unhealthy".to_string()));
    h.rt.set_exec_result("u1-app-0", Default::default());
    tokio::time::advance(Duration::from_secs(1)).await;
    w.sync_once().await;
    let s = last_status(&h.api);
    assert_eq!(s["containerStatuses"][0]["ready"], true);
    let ready = s["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Ready")
        .unwrap()
        .clone();
    assert_eq!(ready["status"], "True");
}

#[tokio::test(start_paused = true)]
async fn failing_liveness_probe_restarts_the_container() {
    let h = harness();
    let mut p = pod("u1", "Always", "sleep 1000");
    p["spec"]["terminationGracePeriodSeconds"] = json!(3);
    p["spec"]["containers"][0]["livenessProbe"] =
        json!({"exec": {"command": ["false"]}, "periodSeconds": 1, "failureThreshold": 2});
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    h.rt.set_exec_result("u1-app-0", failing());
    w.sync_once().await;
    let stops = |rt: &FakeRuntime| {
        rt.calls()
            .iter()
            .filter(|c| matches!(c, FakeCall::Stop { .. }))
            .count()
    };
    assert_eq!(stops(&h.rt), 0);
    tokio::time::advance(Duration::from_secs(1)).await;
    w.sync_once().await;
    assert!(h.rt.calls().contains(&FakeCall::Stop {
        id: "u1-app-0".into(),
        signal: SIGTERM,
        grace: Duration::from_secs(3)
    }));
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0", "u1-app-1"]);
    assert!(h.api.event_reasons().contains(&"Killing".to_string()));
}

#[tokio::test(start_paused = true)]
async fn startup_probe_holds_back_liveness_until_it_succeeds() {
    let h = harness();
    let mut p = pod("u1", "Always", "sleep 1000");
    p["spec"]["containers"][0]["startupProbe"] =
        json!({"exec": {"command": ["check"]}, "periodSeconds": 1, "failureThreshold": 5});
    p["spec"]["containers"][0]["livenessProbe"] =
        json!({"exec": {"command": ["live"]}, "periodSeconds": 1});
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    h.rt.set_exec_result("u1-app-0", failing());
    w.sync_once().await;
    let execs = |rt: &FakeRuntime, cmd: &str| {
        rt.calls()
            .iter()
            .filter(|c| matches!(c, FakeCall::Exec { cmd: c, .. } if c[0] == cmd))
            .count()
    };
    assert_eq!(execs(&h.rt, "check"), 1);
    assert_eq!(execs(&h.rt, "live"), 0);
    assert_eq!(
        last_status(&h.api)["containerStatuses"][0]["started"],
        false
    );
    h.rt.set_exec_result("u1-app-0", Default::default());
    tokio::time::advance(Duration::from_secs(1)).await;
    w.sync_once().await;
    tokio::time::advance(Duration::from_secs(1)).await;
    w.sync_once().await;
    assert_eq!(execs(&h.rt, "check"), 2);
    assert!(execs(&h.rt, "live") >= 1);
    assert_eq!(last_status(&h.api)["containerStatuses"][0]["started"], true);
}

#[tokio::test]
async fn containers_get_service_variables() {
    let h = harness();
    h.api.add_object(
        "services",
        json!({"metadata": {"name": "kubernetes", "namespace": "default"},
               "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443}]}}),
    );
    let mut p = pod("u1", "Always", "sleep 1000");
    p["spec"]["containers"][0]["env"] =
        json!([{"name": "API", "value": "$(KUBERNETES_SERVICE_HOST)"}]);
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    let cfg = h.rt.container_config("u1-app-0").unwrap();
    assert!(cfg.env.contains(&(
        "KUBERNETES_SERVICE_HOST".to_string(),
        "10.43.0.1".to_string()
    )));
    assert!(cfg
        .env
        .contains(&("API".to_string(), "10.43.0.1".to_string())));
}

#[tokio::test]
async fn image_pull_secrets_are_used_for_pulls() {
    use base64::Engine;
    let h = harness();
    let config = r#"{"auths":{"reg.lan:5000":{"username":"u","password":"p"}}}"#;
    h.api.add_object(
        "secrets",
        json!({"metadata": {"name": "regcred"}, "type": "kubernetes.io/dockerconfigjson",
               "data": {".dockerconfigjson": base64::engine::general_purpose::STANDARD.encode(config)}}),
    );
    h.rt.add_registry_image("reg.lan:5000/app:1");
    let mut p = pod("u1", "Always", "x");
    p["spec"]["imagePullSecrets"] = json!([{"name": "regcred"}]);
    p["spec"]["containers"][0]["image"] = json!("reg.lan:5000/app:1");
    p["spec"]["containers"][0]["imagePullPolicy"] = json!("Always");
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    assert!(h.rt.calls().contains(&FakeCall::EnsureImage {
        reference: "reg.lan:5000/app:1".into(),
        policy: crate::agent::runtime::PullPolicy::Always,
        with_auth: true
    }));
    assert_eq!(creates(&h.rt), vec!["u1-app-0"]);
}

#[tokio::test(start_paused = true)]
async fn config_map_changes_reach_volume_files() {
    let h = harness();
    h.api.add_object(
        "configmaps",
        json!({"metadata": {"name": "c"}, "data": {"a.conf": "x=1", "old": "y"}}),
    );
    let mut p = pod("u1", "Always", "x");
    p["spec"]["volumes"] = json!([{"name": "conf", "configMap": {"name": "c"}}]);
    p["spec"]["containers"][0]["volumeMounts"] = json!([{"name": "conf", "mountPath": "/etc/app"}]);
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    let dir = h.dir.path().join("agent/pods/u1/volumes/configmap/conf");
    assert_eq!(std::fs::read(dir.join("a.conf")).unwrap(), b"x=1");
    h.api.add_object(
        "configmaps",
        json!({"metadata": {"name": "c"}, "data": {"a.conf": "x=2"}}),
    );
    tokio::time::advance(Duration::from_secs(30)).await;
    w.sync_once().await;
    assert_eq!(std::fs::read(dir.join("a.conf")).unwrap(), b"x=1");
    tokio::time::advance(Duration::from_secs(31)).await;
    w.sync_once().await;
    assert_eq!(std::fs::read(dir.join("a.conf")).unwrap(), b"x=2");
    assert!(!dir.join("old").exists());
}

#[tokio::test]
async fn containers_without_a_task_after_a_reboot_are_restarted() {
    let h = harness();
    // A container record whose task is gone (as after a reboot).
    let mut cfg = crate::agent::runtime::ContainerConfig::new(
        "u1-app-0",
        "busybox:test",
        h.dir.path().join("x.log"),
    );
    for (k, v) in [
        (super::container::POD_UID_LABEL, "u1"),
        (super::container::CONTAINER_NAME_LABEL, "app"),
        (super::container::RESTART_COUNT_LABEL, "0"),
    ] {
        cfg.labels.insert(k.into(), v.into());
    }
    h.rt.create_container(&cfg).await.unwrap();
    let found = h.rt.list_containers().await.unwrap();
    // The API saw it running before the reboot.
    let mut ran = pod("u1", "Always", "sleep 1000");
    ran["status"] = json!({"phase": "Running", "containerStatuses": [{"name": "app",
        "containerID": "containerd://u1-app-0", "restartCount": 0, "ready": true,
        "state": {"running": {"startedAt": "2026-12-01T10:00:00Z"}}}]});
    let mut w = PodWorker::new(h.shared.clone(), ran, found);
    w.sync_once().await;
    assert!(h.rt.calls().contains(&FakeCall::Remove("u1-app-0".into())));
    assert!(h.rt.calls().contains(&FakeCall::Start("u1-app-1".into())));
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert_eq!(cs["restartCount"], 1);
    assert_eq!(cs["lastState"]["terminated"]["reason"], "Unknown");
}

/// An agent that stopped between creating a container and starting it: the container is
/// started on the next run, as upstream's kubelet always starts a container in the
/// created state, even with restartPolicy Never (a Job's pod must not fail for it).
#[tokio::test]
async fn a_container_created_but_never_started_is_started_even_with_restart_never() {
    let h = harness();
    let mut cfg = crate::agent::runtime::ContainerConfig::new(
        "u1-app-0",
        "busybox:test",
        h.dir.path().join("x.log"),
    );
    for (k, v) in [
        (super::container::POD_UID_LABEL, "u1"),
        (super::container::CONTAINER_NAME_LABEL, "app"),
        (super::container::RESTART_COUNT_LABEL, "0"),
    ] {
        cfg.labels.insert(k.into(), v.into());
    }
    h.rt.create_container(&cfg).await.unwrap();
    let found = h.rt.list_containers().await.unwrap();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Never", "sleep 1000"), found);
    w.sync_once().await;
    assert!(
        h.rt.calls().contains(&FakeCall::Start("u1-app-0".into())),
        "{:?}",
        h.rt.calls()
    );
    let status = last_status(&h.api);
    assert_eq!(status["phase"], "Running", "{status}");
    assert_eq!(status["containerStatuses"][0]["restartCount"], 0);
}

fn events_with(api: &FakePodApi, reason: &str) -> Vec<String> {
    api.events()
        .into_iter()
        .filter(|(r, _)| r == reason)
        .map(|(_, m)| m)
        .collect()
}

#[tokio::test]
async fn new_image_restarts_the_running_container_whatever_the_policy() {
    let h = harness();
    h.rt.add_image("busybox:other");
    let mut p = pod("u1", "Never", "sleep 1000");
    p["spec"]["terminationGracePeriodSeconds"] = json!(4);
    let mut w = PodWorker::new(h.shared.clone(), p.clone(), vec![]);
    w.sync_once().await;
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0"]);

    p["spec"]["containers"][0]["image"] = json!("busybox:other");
    w.update(p);
    w.sync_once().await;
    assert!(h.rt.calls().contains(&FakeCall::Stop {
        id: "u1-app-0".into(),
        signal: SIGTERM,
        grace: Duration::from_secs(4)
    }));
    assert_eq!(
        events_with(&h.api, "Killing"),
        ["Container app definition changed, will be restarted"]
    );
    // Started again at once (no back-off), from the new image.
    assert_eq!(creates(&h.rt), vec!["u1-app-0", "u1-app-1"]);
    assert_eq!(
        h.rt.container_config("u1-app-1").unwrap().image,
        "busybox:other"
    );
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert_eq!(cs["restartCount"], 1, "{cs}");
    assert!(cs["state"]["running"].is_object(), "{cs}");
    assert_eq!(cs["image"], "busybox:other");
    assert_eq!(last_status(&h.api)["phase"], "Running");

    // It runs on: no further restarts.
    w.sync_once().await;
    assert_eq!(creates(&h.rt).len(), 2);
}

#[tokio::test]
async fn image_changed_while_the_agent_was_away_restarts_the_adopted_container() {
    let h = harness();
    h.rt.add_image("busybox:other");
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "sleep 1000"), vec![]);
    w.sync_once().await;
    let mut stored = pod("u1", "Always", "sleep 1000");
    stored["status"] = last_status(&h.api);
    stored["spec"]["containers"][0]["image"] = json!("busybox:other");
    drop(w);

    let found = h.rt.list_containers().await.unwrap();
    let mut w = PodWorker::new(h.shared.clone(), stored, found);
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0", "u1-app-1"]);
    assert_eq!(
        h.rt.container_config("u1-app-1").unwrap().image,
        "busybox:other"
    );
}

#[tokio::test(start_paused = true)]
async fn pod_past_its_active_deadline_is_stopped_and_failed() {
    let h = harness();
    let mut p = pod("u1", "Always", "sleep 1000");
    p["spec"]["activeDeadlineSeconds"] = json!(5);
    p["spec"]["terminationGracePeriodSeconds"] = json!(2);
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    tokio::time::advance(Duration::from_secs(4)).await;
    w.sync_once().await;
    assert_eq!(last_status(&h.api)["phase"], "Running");
    assert!(!h
        .rt
        .calls()
        .iter()
        .any(|c| matches!(c, FakeCall::Stop { .. })));

    tokio::time::advance(Duration::from_secs(1)).await;
    w.sync_once().await;
    assert!(h.rt.calls().contains(&FakeCall::Stop {
        id: "u1-app-0".into(),
        signal: SIGTERM,
        grace: Duration::from_secs(2)
    }));
    let s = last_status(&h.api);
    assert_eq!(s["phase"], "Failed");
    assert_eq!(s["reason"], "DeadlineExceeded");
    assert_eq!(
        s["message"],
        "Pod was active on the node longer than the specified deadline"
    );
    assert!(
        s["containerStatuses"][0]["state"]["terminated"].is_object(),
        "{s}"
    );
    assert_eq!(
        events_with(&h.api, "DeadlineExceeded"),
        ["Pod was active on the node longer than the specified deadline"]
    );

    // Failed for good: the restart policy does not bring it back.
    tokio::time::advance(Duration::from_secs(60)).await;
    w.sync_once().await;
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0"]);
    assert_eq!(last_status(&h.api)["phase"], "Failed");
}

#[tokio::test]
async fn active_deadline_counts_from_the_pods_start_time() {
    let h = harness();
    let mut p = pod("u1", "Always", "sleep 1000");
    p["spec"]["activeDeadlineSeconds"] = json!(30);
    let started = chrono::Utc::now() - chrono::Duration::seconds(31);
    p["status"]["startTime"] = json!(status::timestamp(started));
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    assert!(creates(&h.rt).is_empty());
    assert_eq!(last_status(&h.api)["phase"], "Failed");
    assert_eq!(last_status(&h.api)["reason"], "DeadlineExceeded");
}

#[tokio::test(start_paused = true)]
async fn new_image_ends_a_crash_back_off_at_once() {
    let h = harness();
    h.rt.add_image("busybox:fixed");
    let mut p = pod("u1", "Always", "exit 1");
    let mut w = PodWorker::new(h.shared.clone(), p.clone(), vec![]);
    w.sync_once().await;
    h.rt.exit("u1-app-0", 1, false);
    w.sync_once().await;
    w.sync_once().await;
    h.rt.exit("u1-app-1", 1, false);
    w.sync_once().await;
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert_eq!(cs["state"]["waiting"]["reason"], "CrashLoopBackOff", "{cs}");

    p["spec"]["containers"][0]["image"] = json!("busybox:fixed");
    w.update(p);
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0", "u1-app-1", "u1-app-2"]);
    assert_eq!(
        h.rt.container_config("u1-app-2").unwrap().image,
        "busybox:fixed"
    );
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert!(cs["state"]["running"].is_object(), "{cs}");
    assert_eq!(cs["restartCount"], 2);
}

#[tokio::test]
async fn new_image_does_not_revive_a_container_its_policy_ended() {
    let h = harness();
    h.rt.add_image("busybox:other");
    let mut p = pod("u1", "OnFailure", "true");
    let mut w = PodWorker::new(h.shared.clone(), p.clone(), vec![]);
    w.sync_once().await;
    h.rt.exit("u1-app-0", 0, false);
    w.sync_once().await;
    assert_eq!(last_status(&h.api)["phase"], "Succeeded");
    p["spec"]["containers"][0]["image"] = json!("busybox:other");
    w.update(p);
    w.sync_once().await;
    assert_eq!(creates(&h.rt), vec!["u1-app-0"]);
}

#[tokio::test(start_paused = true)]
async fn runtime_outage_neither_fails_liveness_probes_nor_restarts_containers() {
    let h = harness();
    let mut p = pod("u1", "Always", "sleep 1000");
    p["spec"]["containers"][0]["livenessProbe"] =
        json!({"exec": {"command": ["true"]}, "periodSeconds": 1, "failureThreshold": 1});
    let mut w = PodWorker::new(h.shared.clone(), p, vec![]);
    w.sync_once().await;
    h.rt.set_down(true);
    for _ in 0..5 {
        tokio::time::advance(Duration::from_secs(1)).await;
        w.sync_once().await;
    }
    h.rt.set_down(false);
    for _ in 0..3 {
        tokio::time::advance(Duration::from_secs(1)).await;
        w.sync_once().await;
    }
    assert!(
        !h.rt
            .calls()
            .iter()
            .any(|c| matches!(c, FakeCall::Stop { .. })),
        "{:?}",
        h.rt.calls()
    );
    assert_eq!(creates(&h.rt), vec!["u1-app-0"]);
    assert!(events_with(&h.api, "Unhealthy").is_empty());
    let cs = last_status(&h.api)["containerStatuses"][0].clone();
    assert!(cs["state"]["running"].is_object(), "{cs}");
    assert_eq!(cs["restartCount"], 0);
}

#[tokio::test]
async fn pods_over_max_pods_are_rejected_with_out_of_pods() {
    let h = harness();
    let shared = Arc::new(Shared {
        config: KubeletConfig {
            max_pods: 1,
            ..h.shared.config.clone()
        },
        runtime: h.rt.clone(),
        network: h.net.clone(),
        api: h.api.clone(),
        tokens: Default::default(),
        evictions: Default::default(),
        metrics: crate::metrics::NodeMetrics::new(),
    });
    let mut kubelet = Kubelet::new(shared);
    let mut second = pod("u2", "Always", "sleep 1000");
    second["metadata"]["name"] = json!("second");
    kubelet.handle(PodUpdate::Snapshot(vec![pod("u1", "Always", "sleep 1000")]));
    kubelet.handle(PodUpdate::Upsert(second.clone()));
    tokio::time::timeout(Duration::from_secs(5), async {
        while events_with(&h.api, "OutOfpods").is_empty() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .expect("rejection recorded");
    assert_eq!(
        events_with(&h.api, "OutOfpods"),
        vec!["Node didn't have enough resource: pods, requested: 1, used: 1, capacity: 1"]
    );
    let failed = h
        .api
        .statuses()
        .into_iter()
        .find(|s| s["reason"] == "OutOfpods")
        .expect("the rejected pod failed");
    assert_eq!(failed["phase"], "Failed");
    assert_eq!(kubelet.pods(), vec!["u1".to_string()]);
    // Later events of the rejected pod start nothing.
    kubelet.handle(PodUpdate::Upsert(second));
    assert_eq!(kubelet.pods(), vec!["u1".to_string()]);
    // A finished pod is no load, and does not count.
    assert_eq!(
        over_max_pods(&json!({"status": {"phase": "Succeeded"}}), 5, 1),
        None
    );
    assert_eq!(over_max_pods(&json!({}), 0, 1), None);
}

/// Waits (bounded) until `cond` holds.
async fn eventually(what: &str, within: Duration, mut cond: impl FnMut() -> bool) {
    tokio::time::timeout(within, async {
        while !cond() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{what} within {within:?}"));
}

#[tokio::test]
async fn a_quiet_pod_sleeps_until_the_resync_and_a_busy_one_syncs_every_interval() {
    let h = harness();
    let mut w = PodWorker::new(h.shared.clone(), pod("u1", "Always", "sleep 1000"), vec![]);
    assert!(w.busy(), "a pod not set up yet");
    w.sync_once().await;
    assert!(!w.busy(), "its container runs");
    let quiet = w.next_sync_in();
    assert!(
        quiet > Duration::from_secs(50) && quiet <= worker::QUIET_RESYNC,
        "{quiet:?}"
    );
    // The container crashed: it restarts at once, then backs off — every interval.
    h.rt.exit("u1-app-0", 1, false);
    w.sync_once().await;
    h.rt.exit("u1-app-1", 1, false);
    w.sync_once().await;
    assert!(w.busy(), "a container in back-off");
    assert_eq!(w.next_sync_in(), Duration::from_secs(1));

    // A probed container is probed every interval.
    let mut probed = pod("u2", "Always", "sleep 1000");
    probed["spec"]["containers"][0]["readinessProbe"] = json!({"exec": {"command": ["true"]}});
    let mut w = PodWorker::new(h.shared.clone(), probed, vec![]);
    w.sync_once().await;
    assert!(w.busy());

    // activeDeadlineSeconds wakes the worker when due.
    let mut deadline = pod("u3", "Always", "sleep 1000");
    deadline["spec"]["activeDeadlineSeconds"] = json!(5);
    let mut w = PodWorker::new(h.shared.clone(), deadline, vec![]);
    w.sync_once().await;
    assert!(!w.busy());
    assert!(w.next_sync_in() <= Duration::from_secs(5));
}

#[tokio::test]
async fn a_container_exit_event_wakes_a_quiet_pod_at_once() {
    let h = harness();
    let mut kubelet = Kubelet::new(h.shared.clone());
    let (updates_tx, updates_rx) = mpsc::channel(8);
    let (events_tx, events_rx) = mpsc::channel(8);
    tokio::spawn(follow_runtime_events(h.rt.clone(), events_tx));
    kubelet.handle(PodUpdate::Upsert(pod("u1", "Always", "sleep 1000")));
    let task = tokio::spawn(kubelet.run(updates_rx, events_rx));
    let rt = h.rt.clone();
    eventually("the container started", Duration::from_secs(5), || {
        rt.calls().contains(&FakeCall::Start("u1-app-0".into()))
    })
    .await;
    // Past the subscription's resync; the pod is quiet (next sync in a minute).
    tokio::time::sleep(RESYNC_AFTER_SUBSCRIBE * 2).await;
    h.rt.exit("u1-app-0", 137, true);
    // Far sooner than the quiet resync: the exit event woke the worker, which restarted
    // the container (the first restart has no back-off) and told OOMKilled.
    eventually("the container restarted", Duration::from_secs(3), || {
        rt.calls().contains(&FakeCall::Start("u1-app-1".into()))
    })
    .await;
    let api = h.api.clone();
    eventually("OOMKilled reported", Duration::from_secs(3), || {
        api.statuses()
            .iter()
            .any(|s| s["containerStatuses"][0]["lastState"]["terminated"]["reason"] == "OOMKilled")
    })
    .await;
    drop(updates_tx);
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("kubelet ended with the pod watch")
        .unwrap();
}

#[tokio::test]
async fn an_eviction_order_wakes_a_quiet_pod() {
    let h = harness();
    let p = pod("u1", "Always", "sleep 1000");
    let (_tx, rx) = watch::channel(Some(p.clone()));
    let worker = PodWorker::new(h.shared.clone(), p, vec![]);
    let task = tokio::spawn(worker.run(rx, Arc::new(tokio::sync::Notify::new())));
    let rt = h.rt.clone();
    eventually("the container started", Duration::from_secs(5), || {
        rt.calls().contains(&FakeCall::Start("u1-app-0".into()))
    })
    .await;
    h.shared.evictions.order(
        "u1",
        evictions::Eviction {
            message: "The node was low on resource: memory.".into(),
            grace: Duration::ZERO,
        },
    );
    let api = h.api.clone();
    eventually("the pod failed as evicted", Duration::from_secs(3), || {
        api.statuses()
            .iter()
            .any(|s| s["reason"] == evictions::EVICTED_REASON)
    })
    .await;
    task.abort();
}

#[tokio::test]
async fn a_pods_runtime_class_picks_the_handler_its_containers_run_with() {
    let h = harness();
    h.api.add_object(
        "runtimeclasses",
        json!({"metadata": {"name": "fast"}, "handler": "crun"}),
    );
    h.api.add_object(
        "runtimeclasses",
        json!({"metadata": {"name": "vm"}, "handler": "kata"}),
    );
    let created_with = |rt: &FakeRuntime| -> Vec<Option<String>> {
        rt.calls()
            .into_iter()
            .filter_map(|c| match c {
                FakeCall::CreateContainer(cfg) => Some(cfg.runtime_handler),
                _ => None,
            })
            .collect()
    };
    let mut fast = pod("u1", "Always", "sleep 1000");
    fast["spec"]["runtimeClassName"] = json!("fast");
    PodWorker::new(h.shared.clone(), fast, vec![])
        .sync_once()
        .await;
    assert_eq!(created_with(&h.rt), [Some("crun".to_string())]);

    let mut classless = pod("u2", "Always", "sleep 1000");
    classless["metadata"]["name"] = json!("plain");
    PodWorker::new(h.shared.clone(), classless, vec![])
        .sync_once()
        .await;
    assert_eq!(created_with(&h.rt)[1], None, "the node's default");

    // A handler the node lacks, and a class gone since admission: no sandbox, no
    // container, upstream's event.
    for (uid, class, message) in [
        (
            "u3",
            "vm",
            "Failed to create pod sandbox: failed to get sandbox runtime: no runtime for \"kata\" is configured",
        ),
        (
            "u4",
            "gone",
            "Failed to create pod sandbox: runtimeclass.node.k8s.io \"gone\" not found",
        ),
    ] {
        let mut p = pod(uid, "Always", "sleep 1000");
        p["metadata"]["name"] = json!(uid);
        p["spec"]["runtimeClassName"] = json!(class);
        PodWorker::new(h.shared.clone(), p, vec![]).sync_once().await;
        assert!(
            events_with(&h.api, "FailedCreatePodSandBox").contains(&message.to_string()),
            "{:?}",
            h.api.events()
        );
    }
    assert_eq!(created_with(&h.rt).len(), 2);
    let waiting = &last_status(&h.api)["containerStatuses"][0]["state"]["waiting"];
    assert_eq!(waiting["reason"], "ContainerCreating", "{waiting}");
}
