//! Services on the kubelet's node, on the one-node cluster of `support::kubelet` (needs
//! root and containerd; see there): ClusterIP and NodePort through the proxy, endpoint
//! changes, and the Service environment variables pods get.

use std::net::SocketAddr;
use std::process::Command;
use std::time::{Duration, Instant};

mod support;
use support::host::run;
use support::kubelet::*;
use support::wait::{assert_stays_for_every, wait_until_every};

/// How soon a deleted pod must be out of its Service's rotation.
const LEAVES_ROTATION_WITHIN: Duration = Duration::from_secs(1);
/// How long every request is then watched for reaching only the remaining pods.
const STAYS_OUT_OF_ROTATION_FOR: Duration = Duration::from_secs(3);
/// How often a request goes to the Service while a change is watched.
const REQUEST_EVERY: Duration = Duration::from_millis(20);

/// Three httpd pods, each answering with its hostname, behind a NodePort Service: the
/// node reaches all three through the ClusterIP and the NodePort, another pod reaches them
/// through the `WEB_SERVICE_*` variables it got, a deleted pod leaves the rotation within
/// a second without failing a request after that, and nothing answers once the Service
/// is deleted.
#[test]
fn service_reaches_its_ready_pods() {
    let w = World::start();
    let pods = ["web-1", "web-2", "web-3"];
    let mut yaml = String::from(
        "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: NodePort
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
---
# A plain ClusterIP Service: no chain of its own, elements of the proxy's DNAT maps.
apiVersion: v1
kind: Service
metadata:
  name: web-plain
spec:
  selector:
    app: web
  ports:
  - port: 80
    targetPort: 8080
",
    );
    for name in pods {
        yaml.push_str(&httpd_pod(name, "default", "web"));
    }
    w.apply(&yaml);
    for name in pods {
        if let Some(uid) = w
            .pod(name)
            .and_then(|p| p["metadata"]["uid"].as_str().map(String::from))
        {
            w.uids.borrow_mut().push(uid);
        }
    }
    w.wait_for("Endpoints web to list the three pods as ready", || {
        let ips = w.kubectl_out(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]);
        ips.split_whitespace().count() == pods.len()
    });
    let cluster_ip: std::net::Ipv4Addr = w
        .kubectl_out(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"])
        .parse()
        .expect("service web has a ClusterIP");
    let node_port: u16 = w
        .kubectl_out(&[
            "get",
            "service",
            "web",
            "-o",
            "jsonpath={.spec.ports[0].nodePort}",
        ])
        .parse()
        .expect("service web has a NodePort");
    // ClusterIPs are no local addresses: the node only needs a route for them.
    let routed = run(Command::new("ip").args([
        "-n",
        &w.netns,
        "route",
        "replace",
        SERVICE_CIDR,
        "dev",
        "orc0",
    ]));
    assert!(
        routed.status.success(),
        "route the service network in the test namespace: {}",
        String::from_utf8_lossy(&routed.stderr)
    );

    let all: std::collections::BTreeSet<String> = pods.iter().map(|p| p.to_string()).collect();
    let service = SocketAddr::from((cluster_ip, 80));
    let node_ip: std::net::Ipv4Addr = NODE_IP.parse().unwrap();
    let on_node_port = SocketAddr::from((node_ip, node_port));
    let plain_ip: std::net::Ipv4Addr = w
        .kubectl_out(&[
            "get",
            "service",
            "web-plain",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .parse()
        .expect("service web-plain has a ClusterIP");
    let plain = SocketAddr::from((plain_ip, 80));
    w.step("The node reaches every ready pod through the ClusterIPs and the NodePort");
    for (what, addr) in [
        ("ClusterIP", service),
        ("NodePort", on_node_port),
        ("plain ClusterIP", plain),
    ] {
        let mut seen = std::collections::BTreeSet::new();
        wait_until_every(
            DEADLINE,
            POLL_EVERY,
            &format!("{what} {addr} to reach all three pods"),
            || {
                let answer = w.http_get_from_node(addr);
                if let Ok(body) = &answer {
                    seen.insert(body.clone());
                }
                (seen.len() >= pods.len())
                    .then_some(())
                    .ok_or_else(|| format!("reached only {seen:?}; last answer: {answer:?}"))
            },
        );
        assert_eq!(
            seen, all,
            "{what} answered from pods that are not endpoints"
        );
    }

    w.step("A pod started after the Service finds it through its environment");
    w.apply(&format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: client
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    # (busybox 1.35's `wget -T` crashes: bound it with `timeout` instead.)
    command: [\"sh\", \"-c\", \"while true; do timeout 3 wget -qO- http://$WEB_SERVICE_HOST:$WEB_SERVICE_PORT/ || echo failed; sleep 0.1; done\"]
"
    ));
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "the client pod to reach all three pods through its WEB_SERVICE_* variables",
        || {
            let logs = w.kubectl_out(&["logs", "client"]);
            let reached_all = pods.iter().all(|p| logs.lines().any(|l| l == *p));
            reached_all.then_some(()).ok_or(format!("its log: {logs}"))
        },
    );
    let deleted = w.kubectl(&["delete", "pod", "client", "--wait=false"]);
    assert!(deleted.status.success(), "delete client: {deleted:?}");

    w.step("A deleted pod leaves the rotation within a second; no request fails after that");
    let deleted_at = Instant::now();
    let deleted = w.kubectl(&["delete", "pod", "web-3", "--wait=false"]);
    assert!(deleted.status.success(), "delete web-3: {deleted:?}");
    // Within the first second requests may still reach web-3, or fail: they only keep
    // traffic flowing through the change.
    while deleted_at.elapsed() < LEAVES_ROTATION_WITHIN {
        let _ = w.http_get_from_node(service);
        std::thread::sleep(REQUEST_EVERY);
    }
    let mut answers = std::collections::BTreeSet::new();
    assert_stays_for_every(
        STAYS_OUT_OF_ROTATION_FOR,
        REQUEST_EVERY,
        "every request to the ClusterIP to be answered by a pod other than web-3",
        || {
            let answer = w.http_get_from_node(service);
            match &answer {
                Ok(body) if body != "web-3" => {
                    answers.insert(body.clone());
                    Ok(())
                }
                _ => Err(format!(
                    "{:?} after deleting web-3: {answer:?}",
                    deleted_at.elapsed()
                )),
            }
        },
    );
    assert_eq!(
        answers,
        ["web-1", "web-2"].map(String::from).into(),
        "the remaining pods keep answering"
    );

    w.step("Nothing answers once the Service is deleted");
    let deleted = w.kubectl(&["delete", "service", "web"]);
    assert!(
        deleted.status.success(),
        "kubectl delete service: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    w.wait_for("the deleted service to stop answering", || {
        w.http_get_from_node(service).is_err()
    });
}

/// Routes `cidr` into the node's namespace over the pod bridge (service addresses are
/// no local addresses: the node only needs a route for them).
fn route_to_node(w: &World, cidr: &str) {
    let routed =
        run(Command::new("ip").args(["-n", &w.netns, "route", "replace", cidr, "dev", "orc0"]));
    assert!(
        routed.status.success(),
        "route {cidr} in the test namespace: {}",
        String::from_utf8_lossy(&routed.stderr)
    );
}

/// A ClientIP-affinity Service with an external IP, in front of three pods, made with
/// kubectl: the node always reaches the same pod through the ClusterIP and through the
/// external IP (one affinity per service port, as upstream), and the external IP stops
/// answering once it is patched out of the Service.
#[test]
fn session_affinity_and_external_ips_reach_the_pods() {
    const EXTERNAL_IP: &str = "198.51.100.50";
    let w = World::start();
    let pods = ["sticky-1", "sticky-2", "sticky-3"];
    let mut yaml = format!(
        "apiVersion: v1
kind: Service
metadata:
  name: sticky
spec:
  selector:
    app: sticky
  sessionAffinity: ClientIP
  externalIPs: [\"{EXTERNAL_IP}\"]
  ports:
  - port: 80
    targetPort: 8080
"
    );
    for name in pods {
        yaml.push_str(&httpd_pod(name, "default", "sticky"));
        w.remember(name);
    }
    w.apply(&yaml);
    w.wait_for("Endpoints sticky to list the three pods as ready", || {
        let ips = w.kubectl_out(&[
            "get",
            "endpoints",
            "sticky",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]);
        ips.split_whitespace().count() == pods.len()
    });
    let cluster_ip: std::net::Ipv4Addr = w
        .kubectl_out(&[
            "get",
            "service",
            "sticky",
            "-o",
            "jsonpath={.spec.clusterIP}",
        ])
        .parse()
        .expect("service sticky has a ClusterIP");
    let shown = w.kubectl_out(&["get", "service", "sticky", "-o", "wide"]);
    assert!(shown.contains(EXTERNAL_IP), "EXTERNAL-IP column: {shown}");
    route_to_node(&w, SERVICE_CIDR);
    route_to_node(&w, &format!("{EXTERNAL_IP}/32"));
    let external: std::net::Ipv4Addr = EXTERNAL_IP.parse().unwrap();

    w.step("Every request from the node reaches one pod, through either address");
    let mut first = None;
    for addr in [
        SocketAddr::from((cluster_ip, 80)),
        SocketAddr::from((external, 80)),
    ] {
        wait_until_every(DEADLINE, POLL_EVERY, &format!("{addr} to answer"), || {
            w.http_get_from_node(addr).map(|_| ())
        });
        let answers: std::collections::BTreeSet<String> = (0..15)
            .map(|_| w.http_get_from_node(addr).expect("the service answers"))
            .collect();
        assert_eq!(
            answers.len(),
            1,
            "ClientIP affinity through {addr}: {answers:?}"
        );
        let pod = answers.into_iter().next().unwrap();
        assert!(pods.contains(&pod.as_str()), "{pod}");
        assert_eq!(
            *first.get_or_insert(pod.clone()),
            pod,
            "one affinity per port"
        );
    }

    w.step("An external IP patched out of the Service stops answering");
    let patched = w.kubectl(&[
        "patch",
        "service",
        "sticky",
        "--type=json",
        "-p",
        r#"[{"op": "remove", "path": "/spec/externalIPs"}]"#,
    ]);
    assert!(patched.status.success(), "kubectl patch: {patched:?}");
    w.wait_for("the external IP to stop answering", || {
        w.http_get_from_node(SocketAddr::from((external, 80)))
            .is_err()
    });
    assert!(
        w.http_get_from_node(SocketAddr::from((cluster_ip, 80)))
            .is_ok(),
        "the ClusterIP still answers"
    );
}

/// Pods get Docker-link variables for the Services made before them and the API
/// server's, unless they set enableServiceLinks: false.
#[test]
fn pods_get_service_environment_variables() {
    let w = World::start();
    w.apply(
        "apiVersion: v1
kind: Service
metadata:
  name: db-main
spec:
  ports:
  - name: pg
    port: 5432
",
    );
    let db_ip = w.kubectl_ok(&[
        "get",
        "service",
        "db-main",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let api_ip = w.kubectl_ok(&[
        "get",
        "service",
        "kubernetes",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert!(
        !db_ip.is_empty() && !api_ip.is_empty(),
        "{db_ip:?} {api_ip:?}"
    );
    w.apply(&format!(
        r#"apiVersion: v1
kind: Pod
metadata:
  name: linked
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "env; echo end-of-env; exec sleep 3600"]
---
apiVersion: v1
kind: Pod
metadata:
  name: unlinked
spec:
  nodeName: kt-node
  enableServiceLinks: false
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: ["sh", "-c", "env; echo end-of-env; exec sleep 3600"]
"#
    ));
    for name in ["linked", "unlinked"] {
        w.remember(name);
    }
    let env_of = |pod: &str| {
        let mut logs = String::new();
        w.wait_for(&format!("{pod} to print its environment"), || {
            logs = w.kubectl_out(&["logs", pod]);
            logs.contains("end-of-env")
        });
        env_vars(&logs)
    };
    let linked = env_of("linked");
    for (name, value) in [
        ("DB_MAIN_SERVICE_HOST", db_ip.clone()),
        ("DB_MAIN_SERVICE_PORT", "5432".into()),
        ("DB_MAIN_SERVICE_PORT_PG", "5432".into()),
        ("DB_MAIN_PORT", format!("tcp://{db_ip}:5432")),
        ("DB_MAIN_PORT_5432_TCP", format!("tcp://{db_ip}:5432")),
        ("DB_MAIN_PORT_5432_TCP_PROTO", "tcp".into()),
        ("DB_MAIN_PORT_5432_TCP_PORT", "5432".into()),
        ("DB_MAIN_PORT_5432_TCP_ADDR", db_ip.clone()),
        ("KUBERNETES_SERVICE_HOST", api_ip.clone()),
        ("KUBERNETES_SERVICE_PORT", "443".into()),
    ] {
        assert_eq!(linked.get(name), Some(&value), "{name} in {linked:?}");
    }
    let unlinked = env_of("unlinked");
    assert_eq!(
        unlinked.get("KUBERNETES_SERVICE_HOST"),
        Some(&api_ip),
        "{unlinked:?}"
    );
    assert!(
        !unlinked.keys().any(|k| k.starts_with("DB_MAIN_")),
        "enableServiceLinks: false still got links: {unlinked:?}"
    );
}
