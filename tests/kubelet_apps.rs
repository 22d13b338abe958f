//! Published applications on a real node (the one-node cluster of `support::kubelet`;
//! needs root and containerd): with no registry reachable, Istio's Bookinfo pods back off
//! pulling their images as upstream's kubelet tells it (`kubectl get pods` STATUS, the
//! waiting message, describe's counted Pulling/Failed/BackOff events), their Services get
//! no ready endpoints and `kubectl rollout status` gives up within its timeout; and the
//! security contexts homelab apps ask for (capabilities, privileged,
//! allowPrivilegeEscalation, users and groups, runAsNonRoot, seccomp profiles) reach the
//! containers.

use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::kubelet::*;

/// The first image pull and its retry (upstream's first back-off is 10 s).
const PULL_RETRIED: Duration = Duration::from_secs(40);

/// The pods of the default namespace.
fn pods(w: &World) -> Vec<Value> {
    let list: Value =
        serde_json::from_str(&w.kubectl_out(&["get", "pods", "-o", "json"])).unwrap_or_default();
    list["items"].as_array().cloned().unwrap_or_default()
}

/// The event about `pod` with `reason` whose message starts with `message`, if any.
fn event(w: &World, pod: &str, reason: &str, message: &str) -> Option<Value> {
    let list: Value =
        serde_json::from_str(&w.kubectl_out(&["get", "events", "-o", "json"])).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .find_map(|e| {
            (e["involvedObject"]["name"] == pod
                && e["reason"] == reason
                && e["message"]
                    .as_str()
                    .is_some_and(|m| m.starts_with(message)))
            .then(|| e.clone())
        })
}

#[test]
fn bookinfo_pods_back_off_pulling_with_counted_events_and_no_ready_endpoints() {
    let w = World::start();
    w.step("applying Istio's Bookinfo");
    w.apply(&support::host::published_manifest("istio-bookinfo"));

    w.step("every pod fails to pull its image and backs off");
    w.wait_for_within(
        PULL_RETRIED,
        "six Bookinfo pods in ImagePullBackOff",
        || {
            let pods = pods(&w);
            for p in &pods {
                w.remember(p["metadata"]["name"].as_str().unwrap_or(""));
            }
            pods.len() == 6
                && pods.iter().all(|p| {
                    container_status(p)["state"]["waiting"]["reason"] == "ImagePullBackOff"
                })
        },
    );
    let details = pods(&w)
        .into_iter()
        .find(|p| p["metadata"]["labels"]["app"] == "details")
        .expect("the details pod");
    let name = details["metadata"]["name"].as_str().unwrap().to_string();
    let image = details["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap()
        .to_string();
    let waiting = &container_status(&details)["state"]["waiting"];
    assert!(
        waiting["message"]
            .as_str()
            .unwrap_or("")
            .starts_with(&format!(
                "Back-off pulling image \"{image}\": ErrImagePull: "
            )),
        "{waiting}"
    );
    let table = w.kubectl_ok(&["get", "pod", &name, "--no-headers"]);
    assert_eq!(
        table.split_whitespace().nth(2),
        Some("ImagePullBackOff"),
        "{table}"
    );

    w.step("the retried pull raises the count of the first events");
    w.wait_for_within(PULL_RETRIED, "the Pulling event to count 2", || {
        event(&w, &name, "Pulling", &format!("Pulling image \"{image}\""))
            .is_some_and(|e| e["count"].as_i64() >= Some(2))
    });
    let pulling: Vec<Value> = {
        let list: Value = serde_json::from_str(&w.kubectl_out(&["get", "events", "-o", "json"]))
            .unwrap_or_default();
        list["items"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|e| e["involvedObject"]["name"] == name.as_str() && e["reason"] == "Pulling")
            .cloned()
            .collect()
    };
    assert_eq!(pulling.len(), 1, "one Event, counted: {pulling:?}");
    let failed = event(
        &w,
        &name,
        "Failed",
        &format!("Failed to pull image \"{image}\""),
    )
    .expect("the Failed event");
    assert!(failed["count"].as_i64() >= Some(2), "{failed}");
    let described = w.kubectl_ok(&["describe", "pod", &name]);
    for text in [
        "ImagePullBackOff",
        "Error: ErrImagePull",
        "Back-off pulling image",
        " over ",
    ] {
        assert!(described.contains(text), "no {text:?} in:\n{described}");
    }

    w.step("the Service has its pod as not ready, and no ready address");
    let endpoints: Value =
        serde_json::from_str(&w.kubectl_out(&["get", "endpoints", "details", "-o", "json"]))
            .unwrap_or_default();
    let subsets = endpoints["subsets"].as_array().cloned().unwrap_or_default();
    assert!(
        subsets.iter().all(|s| s["addresses"].is_null()),
        "{endpoints}"
    );
    assert!(
        subsets
            .iter()
            .any(|s| s["notReadyAddresses"][0]["targetRef"]["name"] == name.as_str()),
        "{endpoints}"
    );

    w.step("kubectl rollout status gives up within its timeout");
    let begun = Instant::now();
    let out = w.kubectl(&["rollout", "status", "deployment/details-v1", "--timeout=2s"]);
    assert!(begun.elapsed() < Duration::from_secs(10));
    assert!(!out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains(
            "Waiting for deployment \"details-v1\" rollout to finish: 0 of 1 updated replicas are available"
        ),
        "{stdout}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("timed out waiting for the condition"),
        "{out:?}"
    );
}

/// The `Cap…` masks and `NoNewPrivs` of `/proc/self/status` a container logged.
fn status_fields(log: &str) -> std::collections::BTreeMap<String, String> {
    log.lines()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

#[test]
fn capabilities_privileged_and_no_new_privileges_reach_the_containers() {
    let w = World::start();
    let report = "grep -E 'Cap|NoNewPrivs' /proc/self/status; \
                  test -c /dev/loop-control && echo host-devices; echo reported; sleep 3600";
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: caps
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: dropped
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "{report}"]
    securityContext:
      capabilities:
        drop: ["all"]
        add: ["NET_ADMIN"]
      allowPrivilegeEscalation: false
  - name: plain
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "{report}"]
  - name: privileged
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "{report}"]
    securityContext:
      privileged: true
"#
    ));
    w.wait_running("caps");
    let log = |c: &str| {
        let mut out = String::new();
        w.wait_for(&format!("container {c}'s report"), || {
            out = w.kubectl_out(&["logs", "caps", "-c", c]);
            out.contains("reported")
        });
        out
    };

    w.step("drop: [all], add: [NET_ADMIN] leaves NET_ADMIN alone; no privilege escalation");
    let dropped = status_fields(&log("dropped"));
    assert_eq!(dropped["CapEff"], "0000000000001000", "{dropped:?}");
    assert_eq!(dropped["CapBnd"], "0000000000001000", "{dropped:?}");
    assert_eq!(dropped["NoNewPrivs"], "1", "{dropped:?}");

    w.step("no security context: containerd's fourteen defaults, none ambient");
    let plain_log = log("plain");
    let plain = status_fields(&plain_log);
    assert_eq!(plain["CapEff"], "00000000a80425fb", "{plain:?}");
    assert_eq!(plain["CapAmb"], "0000000000000000", "{plain:?}");
    assert_eq!(plain["NoNewPrivs"], "0", "{plain:?}");
    assert!(!plain_log.contains("host-devices"), "{plain_log}");

    w.step("privileged: every capability the agent has, and the host's devices");
    let own = std::fs::read_to_string("/proc/self/status").unwrap();
    let privileged_log = log("privileged");
    let privileged = status_fields(&privileged_log);
    assert_eq!(
        privileged["CapEff"],
        status_fields(&own)["CapEff"],
        "{privileged:?}"
    );
    assert!(privileged_log.contains("host-devices"), "{privileged_log}");
    w.remember("caps");
}

#[test]
fn host_network_pods_run_with_the_nodes_hosts_name_and_their_own_ipc() {
    // Pi-hole, Home Assistant and node agents run on the host's network.
    let w = World::start();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: hostnet
spec:
  hostNetwork: true
  dnsPolicy: ClusterFirstWithHostNet
  hostAliases:
  - ip: 10.0.0.9
    hostnames: [db]
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "cat /etc/resolv.conf /etc/hosts; echo host=$(hostname); echo ipc=$(readlink /proc/self/ns/ipc); echo reported; sleep 3600"]
"#
    ));
    w.step("a host-network pod starts (its IPC namespace is made for it)");
    w.wait_running("hostnet");
    let mut log = String::new();
    w.wait_for("the pod's report", || {
        log = w.kubectl_out(&["logs", "hostnet"]);
        log.contains("reported")
    });
    w.step("ClusterFirstWithHostNet: the cluster's resolver");
    assert!(log.contains(&format!("nameserver {CLUSTER_DNS}")), "{log}");
    w.step("the node's hosts file with the pod's aliases, and the node's name");
    assert!(
        log.contains("# Kubernetes-managed hosts file (host network).\n"),
        "{log}"
    );
    assert!(log.contains("10.0.0.9\tdb"), "{log}");
    let node_name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    assert!(log.contains(&format!("host={}", node_name.trim())), "{log}");
    let host_ipc = std::fs::read_link("/proc/self/ns/ipc").unwrap();
    assert!(
        !log.contains(&format!("ipc={}", host_ipc.display())),
        "not the host's IPC namespace: {log}"
    );
}

/// Builds the busybox test image as `name` with the given `scripts/build-test-image.sh`
/// variables into the agent's image directory (imported when the agent starts).
fn build_image(w: &World, file: &str, name: &str, vars: &[(&str, &str)]) {
    let built = support::host::run(
        std::process::Command::new(support::host::repo_path("scripts/build-test-image.sh"))
            .arg(w.data_dir().join("agent/images").join(file))
            .arg(name)
            .envs(vars.iter().copied()),
    );
    assert!(
        built.status.success(),
        "build {name}: {}",
        String::from_utf8_lossy(&built.stderr)
    );
}

/// The `(reason, message)` a pod's first container waits with.
fn waiting(w: &World, pod: &str) -> (String, String) {
    let p = w.pod(pod).unwrap_or_default();
    let waiting = &container_status(&p)["state"]["waiting"];
    (
        waiting["reason"].as_str().unwrap_or("").to_string(),
        waiting["message"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn users_and_groups_follow_the_image_and_the_security_context() {
    let mut w = World::prepare(false);
    const NAMED: &str = "docker.io/library/busybox:named-user";
    const GHOST: &str = "docker.io/library/busybox:ghost-user";
    // `app` (1234) and its group `staff` (50) come from the image's second layer.
    build_image(
        &w,
        "named.tar",
        NAMED,
        &[("IMAGE_USER", "app"), ("ADD_USER", "app")],
    );
    build_image(&w, "ghost.tar", GHOST, &[("IMAGE_USER", "ghost")]);
    w.spawn_server();
    let pod = |name: &str, image: &str, pod_security: &str, security: &str| {
        format!(
            r#"apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 0
  securityContext: {pod_security}
  containers:
  - name: c
    image: {image}
    imagePullPolicy: Never
    command: ["sh", "-c", "echo ids $(id -u) $(id -g) groups $(id -G); sleep 3600"]
    securityContext: {security}
---
"#
        )
    };
    let mut yaml = String::new();
    for (name, image, pod_security, security) in [
        ("named", NAMED, "{}", "{}"),
        ("named-nonroot", NAMED, "{runAsNonRoot: true}", "{}"),
        (
            "ids",
            IMAGE,
            "{runAsUser: 1000, fsGroup: 2000, supplementalGroups: [3000]}",
            "{}",
        ),
        (
            "uid-in-image",
            NAMED,
            "{runAsUser: 1234}",
            "{runAsGroup: 4000}",
        ),
        ("root-refused", IMAGE, "{runAsNonRoot: true}", "{}"),
        (
            "root-allowed",
            IMAGE,
            "{runAsNonRoot: true}",
            "{runAsNonRoot: false}",
        ),
        ("ghost", GHOST, "{}", "{}"),
    ] {
        yaml.push_str(&pod(name, image, pod_security, security));
    }
    w.apply(&yaml);
    let ids = |name: &str| {
        w.wait_running(name);
        let mut out = String::new();
        w.wait_for(&format!("pod {name}'s ids"), || {
            out = w.kubectl_out(&["logs", name]);
            out.contains("ids")
        });
        out.trim().to_string()
    };

    w.step("an image's user name runs as its uid, with its groups from /etc/group");
    assert_eq!(ids("named"), "ids 1234 1234 groups 1234 50");
    w.step("a named image user passes runAsNonRoot only with a numeric runAsUser");
    w.wait_for("named-nonroot to be refused", || {
        waiting(&w, "named-nonroot").0 == "CreateContainerConfigError"
    });
    let uid = |name: &str| {
        w.pod(name).unwrap()["metadata"]["uid"]
            .as_str()
            .unwrap()
            .to_string()
    };
    assert_eq!(
        waiting(&w, "named-nonroot").1,
        format!(
            "container has runAsNonRoot and image has non-numeric user (app), cannot verify \
             user is non-root (pod: \"named-nonroot_default({})\", container: c)",
            uid("named-nonroot")
        )
    );
    w.step("runAsUser without a passwd entry: group 0, plus fsGroup and supplementalGroups");
    assert_eq!(ids("ids"), "ids 1000 0 groups 0 2000 3000");
    w.step("runAsGroup replaces the passwd group; the image's group memberships stay");
    assert_eq!(ids("uid-in-image"), "ids 1234 4000 groups 4000 50");
    w.step("runAsNonRoot refuses an image that runs as root, unless the container allows it");
    w.wait_for("root-refused to be refused", || {
        waiting(&w, "root-refused").0 == "CreateContainerConfigError"
    });
    assert_eq!(
        waiting(&w, "root-refused").1,
        format!(
            "container has runAsNonRoot and image will run as root \
             (pod: \"root-refused_default({})\", container: c)",
            uid("root-refused")
        )
    );
    assert!(w
        .pod_events("root-refused")
        .iter()
        .any(|(reason, message)| reason == "Failed"
            && message
                .starts_with("Error: container has runAsNonRoot and image will run as root")));
    assert_eq!(ids("root-allowed"), "ids 0 0 groups 0");
    w.step("an image user missing from its /etc/passwd fails the container's creation");
    w.wait_for("ghost to fail", || {
        waiting(&w, "ghost").0 == "CreateContainerError"
    });
    let message = waiting(&w, "ghost").1;
    assert!(message.contains("no users found"), "{message}");
    for name in [
        "named",
        "named-nonroot",
        "ids",
        "uid-in-image",
        "root-refused",
        "root-allowed",
        "ghost",
    ] {
        w.remember(name);
    }
}

#[test]
fn seccomp_profiles_filter_the_containers_system_calls() {
    let mut w = World::prepare(false);
    let root = w.data_dir().join("seccomp");
    std::fs::create_dir_all(root.join("profiles")).unwrap();
    // A Localhost profile in the Docker format: everything but mkdir.
    std::fs::write(
        root.join("profiles/no-mkdir.json"),
        r#"{"defaultAction": "SCMP_ACT_ALLOW",
            "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]},
                        {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}],
            "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]}"#,
    )
    .unwrap();
    w.server_args.extend([
        "--seccomp-profile-root".to_string(),
        root.display().to_string(),
    ]);
    w.spawn_server();
    let report = "grep -E '^Seccomp' /proc/self/status; mkdir /tmp/made && echo mkdir-ok; \
                  echo reported; sleep 3600";
    let container = |name: &str, security: &str| {
        format!(
            r#"  - name: {name}
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "{report}"]
    securityContext: {security}
"#
        )
    };
    let mut yaml = String::from(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: seccomp\nspec:\n  \
         terminationGracePeriodSeconds: 0\n  securityContext:\n    seccompProfile:\n      \
         type: RuntimeDefault\n  containers:\n",
    );
    for (name, security) in [
        ("default", "{}"),
        ("unconfined", "{seccompProfile: {type: Unconfined}}"),
        (
            "localhost",
            "{seccompProfile: {type: Localhost, localhostProfile: profiles/no-mkdir.json}}",
        ),
        ("privileged", "{privileged: true}"),
    ] {
        yaml.push_str(&container(name, security));
    }
    yaml.push_str(&format!(
        r#"---
apiVersion: v1
kind: Pod
metadata:
  name: missing-profile
spec:
  terminationGracePeriodSeconds: 0
  containers:
{}"#,
        container(
            "c",
            "{seccompProfile: {type: Localhost, localhostProfile: profiles/absent.json}}"
        )
    ));
    w.apply(&yaml);
    w.wait_running("seccomp");
    let log = |c: &str| {
        let mut out = String::new();
        w.wait_for(&format!("container {c}'s report"), || {
            out = w.kubectl_out(&["logs", "seccomp", "-c", c]);
            out.contains("reported")
        });
        status_fields(&out)
            .into_iter()
            .chain([("mkdir".to_string(), out.contains("mkdir-ok").to_string())])
            .collect::<std::collections::BTreeMap<_, _>>()
    };

    w.step("the pod's RuntimeDefault: containerd's default filter (mode 2)");
    let default = log("default");
    assert_eq!(default["Seccomp"], "2", "{default:?}");
    assert_eq!(default["mkdir"], "true", "{default:?}");
    w.step("a container's Unconfined wins over the pod's profile");
    assert_eq!(log("unconfined")["Seccomp"], "0");
    w.step("a Localhost profile from the node's seccomp root refuses mkdir");
    let localhost = log("localhost");
    assert_eq!(localhost["Seccomp"], "2", "{localhost:?}");
    assert_eq!(localhost["mkdir"], "false", "{localhost:?}");
    w.step("privileged containers run without a filter, as containerd's");
    assert_eq!(log("privileged")["Seccomp"], "0");
    w.step("a profile missing from the node fails the container's creation");
    w.wait_for("missing-profile to fail", || {
        waiting(&w, "missing-profile").0 == "CreateContainerError"
    });
    let message = waiting(&w, "missing-profile").1;
    assert!(
        message.contains("cannot load seccomp profile") && message.contains("profiles/absent.json"),
        "{message}"
    );
    w.remember("seccomp");
    w.remember("missing-profile");
}

#[test]
fn sidecar_containers_run_beside_the_app_and_end_with_a_job() {
    let w = World::start();
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: with-sidecar
spec:
  terminationGracePeriodSeconds: 0
  initContainers:
  - name: proxy
    image: {IMAGE}
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sh", "-c", "touch /shared/proxy-up; if [ -e /shared/crashed ]; then sleep 3600; else touch /shared/crashed; sleep 2; exit 3; fi"]
    startupProbe:
      exec: {{command: ["test", "-e", "/shared/proxy-up"]}}
      periodSeconds: 1
    readinessProbe:
      exec: {{command: ["true"]}}
      periodSeconds: 1
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  - name: setup
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "test -e /shared/proxy-up && echo proxy-was-up"]
    volumeMounts: [{{name: shared, mountPath: /shared}}]
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sleep", "3600"]
  volumes:
  - name: shared
    emptyDir: {{}}
---
apiVersion: v1
kind: Pod
metadata:
  name: job-with-sidecar
spec:
  restartPolicy: Never
  terminationGracePeriodSeconds: 1
  initContainers:
  - name: logshipper
    image: {IMAGE}
    imagePullPolicy: Never
    restartPolicy: Always
    command: ["sleep", "3600"]
  containers:
  - name: work
    image: {IMAGE}
    imagePullPolicy: Never
    command: ["sh", "-c", "sleep 2; echo done"]
"#
    ));
    w.step("the sidecar starts first, the next init container after its startup probe");
    w.wait_running("with-sidecar");
    assert_eq!(
        w.kubectl_out(&["logs", "with-sidecar", "-c", "setup"])
            .trim(),
        "proxy-was-up"
    );
    w.step("a crashed sidecar is restarted; the pod stays initialized and counts it as ready");
    w.wait_for("the sidecar's restart and the pod's readiness", || {
        let pod = w.pod("with-sidecar").unwrap_or_default();
        let proxy = &pod["status"]["initContainerStatuses"][0];
        let ready = pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True");
        proxy["restartCount"] == 1 && proxy["ready"] == true && proxy["started"] == true && ready
    });
    let pod = w.pod("with-sidecar").unwrap();
    let initialized = pod["status"]["conditions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["type"] == "Initialized")
        .unwrap()
        .clone();
    assert_eq!(initialized["status"], "True", "{initialized}");
    let row = w.kubectl_out(&["get", "pod", "with-sidecar", "--no-headers"]);
    let columns: Vec<&str> = row.split_whitespace().collect();
    assert_eq!(&columns[1..4], ["2/2", "Running", "1"], "{row}");

    w.step("a Job's pod succeeds once its app container ends; its sidecar is stopped");
    w.wait_for("job-with-sidecar to succeed", || {
        w.pod("job-with-sidecar").unwrap_or_default()["status"]["phase"] == "Succeeded"
    });
    w.wait_for("the log shipper to be stopped", || {
        let pod = w.pod("job-with-sidecar").unwrap_or_default();
        !pod["status"]["initContainerStatuses"][0]["state"]["terminated"].is_null()
    });
    assert_eq!(
        w.kubectl_out(&["logs", "job-with-sidecar", "-c", "work"])
            .trim(),
        "done"
    );
    w.remember("with-sidecar");
    w.remember("job-with-sidecar");
}
