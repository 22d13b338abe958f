//! Several nodes on one machine: `orc server --disable-agent` and two `orc agent`s that
//! join it with the token, each in a network namespace of its own on a private "LAN" (a
//! bridge in a fourth namespace), each agent with its own containerd. Pods on different
//! nodes reach each other by pod IP (host-gw routes, source addresses kept), a Service
//! whose pods all run on the other node answers through the local proxy, and a
//! replication controller's pods come back on the surviving node when an agent dies.
//!
//! Needs root, containerd, runc, busybox-static, nsenter, ip and kubectl
//! (scripts/install-deps.sh). The cluster is `support::multinode`'s.

use std::time::{Duration, Instant};

use serde_json::Value;

mod support;
use support::multinode::{is_ready, Cluster, IMAGE, NODES};

/// How long a dead node's pods may take to come back elsewhere: the grace period, the
/// controller's monitor period (1 s), the default toleration (1 s), and a pod start.
const FAILOVER_DEADLINE: Duration = Duration::from_secs(45);
/// Port the web pods' httpd listens on, and their Service's port.
const WEB_PORT: u16 = 8080;
const SERVICE_PORT: u16 = 80;

/// The client address httpd reports, without its IPv4-mapped IPv6 dress
/// (`[::ffff:10.0.0.1]`: httpd listens on a dual-stack socket).
fn client_ip(remote_addr: &str) -> &str {
    remote_addr
        .trim_start_matches('[')
        .trim_end_matches(']')
        .trim_start_matches("::ffff:")
}

fn ip_of(pod: &Value) -> &str {
    pod["status"]["podIP"].as_str().unwrap()
}

/// A web pod on `node` (by nodeSelector on the hostname label: through the scheduler).
/// It serves its name at `/` and the client's address at `/cgi-bin/ip`.
fn web_pod(name: &str, node: &str) -> String {
    let command = format!(
        "mkdir -p /www/cgi-bin \
         && hostname > /www/index.html \
         && printf '#!/bin/sh\\necho Content-Type: text/plain\\necho\\necho $REMOTE_ADDR\\n' > /www/cgi-bin/ip \
         && busybox chmod 755 /www/cgi-bin/ip \
         && exec httpd -f -p {WEB_PORT} -h /www"
    );
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
  labels:
    app: {name}
spec:
  nodeSelector:
    kubernetes.io/hostname: {node}
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"{command}\"]
"
    )
}

fn pods_of(c: &Cluster, selector: &str) -> Vec<Value> {
    c.kubectl_json(&["get", "pods", "-l", selector])
        .and_then(|l| l["items"].as_array().cloned())
        .unwrap_or_default()
}

#[test]
fn pods_on_different_nodes_reach_each_other_and_come_back_when_a_node_dies() {
    let started = Instant::now();
    let mut c = Cluster::start();
    eprintln!("cluster up in {:?}", started.elapsed());
    c.step("Both nodes register and are Ready");
    let listed = c.kubectl_out(&["get", "nodes"]);
    for (node, _) in NODES {
        assert!(
            listed
                .lines()
                .any(|l| l.starts_with(node) && l.contains(" Ready")),
            "{listed}"
        );
    }

    c.step("Each node routes the other's podCIDR via the other's LAN address");
    for ((node, _), (other, other_ip)) in NODES.into_iter().zip(NODES.into_iter().rev()) {
        let cidr = c.kubectl_out(&["get", "node", other, "-o", "jsonpath={.spec.podCIDR}"]);
        let want = format!("{cidr} via {other_ip} dev eth0");
        c.wait_for(&format!("{node} to route {other}'s pods"), || {
            c.pod_routes(node) == want
        });
    }

    c.step("One web pod per node, and a Service whose only pod runs on n2");
    c.apply(&format!(
        "{}---\n{}---
apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  selector:
    app: web-n2
  ports:
  - port: {SERVICE_PORT}
    targetPort: {WEB_PORT}
",
        web_pod("web-n1", "n1"),
        web_pod("web-n2", "n2")
    ));
    let web1 = c.wait_running("web-n1");
    let web2 = c.wait_running("web-n2");
    assert_eq!(web1["spec"]["nodeName"], "n1", "{}", web1["spec"]);
    assert_eq!(web2["spec"]["nodeName"], "n2", "{}", web2["spec"]);
    let (ip1, ip2) = (ip_of(&web1), ip_of(&web2));
    for (pod, node) in [(&web1, "n1"), (&web2, "n2")] {
        let cidr = c
            .node(node)
            .and_then(|n| n["spec"]["podCIDR"].as_str().map(String::from))
            .unwrap();
        let prefix = cidr.rsplit_once(".0/").unwrap().0;
        assert!(
            ip_of(pod).starts_with(&format!("{prefix}.")),
            "pod IP {} is not from {node}'s podCIDR {cidr}",
            ip_of(pod)
        );
    }
    eprintln!("web pods running at {:?}", started.elapsed());

    c.step("The server reaches each node's kubelet: exec (with its exit code) and logs");
    for (pod, node) in [("web-n1", "n1"), ("web-n2", "n2")] {
        let out = c.kubectl(&["exec", pod, "--", "sh", "-c", "hostname; exit 3"]);
        assert_eq!(
            String::from_utf8_lossy(&out.stdout).trim(),
            pod,
            "exec on {node}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert_eq!(
            out.status.code(),
            Some(3),
            "exit code through exec on {node}"
        );
        assert!(c.kubectl(&["logs", pod]).status.success(), "logs on {node}");
    }

    c.step("Pod to pod across nodes, both ways, by pod IP; the source address is kept");
    c.in_pod_until_ok(&web1, &["ping", "-c1", "-W2", ip2]);
    c.in_pod_until_ok(&web2, &["ping", "-c1", "-W2", ip1]);
    let url = |ip: &str, path: &str| format!("http://{ip}:{WEB_PORT}/{path}");
    // No `-T`: Debian's static busybox wget crashes on it; `in_pod` bounds the time.
    let wget = |pod: &Value, url: &str| c.in_pod_until_ok(pod, &["wget", "-qO-", url]);
    assert_eq!(wget(&web1, &url(ip2, "")), "web-n2");
    assert_eq!(wget(&web2, &url(ip1, "")), "web-n1");
    assert_eq!(
        client_ip(&wget(&web1, &url(ip2, "cgi-bin/ip"))),
        ip1,
        "pod traffic between nodes was masqueraded"
    );

    c.step("The Service's only pod runs on n2: n1's proxy sends a pod on n1 there");
    c.wait_for("Endpoints web to list web-n2", || {
        c.kubectl_out(&[
            "get",
            "endpoints",
            "web",
            "-o",
            "jsonpath={.subsets[*].addresses[*].ip}",
        ]) == ip2
    });
    let cluster_ip = c.kubectl_out(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    assert_eq!(
        wget(&web1, &format!("http://{cluster_ip}:{SERVICE_PORT}/")),
        "web-n2"
    );
    assert_eq!(
        client_ip(&wget(
            &web1,
            &format!("http://{cluster_ip}:{SERVICE_PORT}/cgi-bin/ip")
        )),
        ip1,
        "service traffic between nodes was masqueraded"
    );
    // n1's cluster DNS knows the Service too.
    let answer = c.in_pod_until_ok(
        &web1,
        &["nslookup", "web.default.svc.cluster.local", "10.43.0.10"],
    );
    assert!(
        answer.contains(&format!("Address: {cluster_ip}")),
        "{answer}"
    );
    eprintln!("cross-node traffic checked at {:?}", started.elapsed());

    c.step("A replication controller spread over both nodes; n2's agent dies");
    c.apply(&format!(
        "apiVersion: v1
kind: ReplicationController
metadata:
  name: spread
spec:
  replicas: 2
  selector:
    app: spread
  template:
    metadata:
      labels:
        app: spread
    spec:
      terminationGracePeriodSeconds: 0
      containers:
      - name: app
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [\"sleep\", \"3600\"]
"
    ));
    let running_on = |pods: &[Value]| -> Vec<String> {
        let mut nodes: Vec<String> = pods
            .iter()
            .filter(|p| {
                p["metadata"]["deletionTimestamp"].is_null() && p["status"]["phase"] == "Running"
            })
            .map(|p| p["spec"]["nodeName"].as_str().unwrap_or("").to_string())
            .collect();
        nodes.sort();
        nodes
    };
    let mut pods = Vec::new();
    c.wait_for("the RC's 2 pods to be Running", || {
        pods = pods_of(&c, "app=spread");
        running_on(&pods).len() == 2
    });
    pods.iter().for_each(|p| c.remember(p));
    assert_eq!(
        running_on(&pods),
        ["n1", "n2"],
        "replicas not spread over the nodes"
    );

    c.kill_agent("n2");
    let killed = Instant::now();
    c.wait_within(FAILOVER_DEADLINE, "node n2 to stop being Ready", || {
        c.node("n2").is_some_and(|n| !is_ready(&n))
    });
    eprintln!(
        "n2 NotReady {:?} after its agent was killed",
        killed.elapsed()
    );
    c.wait_within(FAILOVER_DEADLINE, "the RC's pods to run on n1 only", || {
        pods = pods_of(&c, "app=spread");
        pods.iter().for_each(|p| c.remember(p));
        running_on(&pods) == ["n1", "n1"]
    });
    eprintln!(
        "RC pods back on n1 {:?} after n2's agent was killed; total {:?}",
        killed.elapsed(),
        started.elapsed()
    );
    assert!(
        c.node("n1").is_some_and(|n| is_ready(&n)),
        "n1 stopped being Ready"
    );

    c.step("A deleted Node's pods are no longer routed");
    let deleted = c.kubectl(&["delete", "node", "n2"]);
    assert!(
        deleted.status.success(),
        "kubectl delete node: {}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    c.wait_for("n1 to drop its route to the deleted n2's pods", || {
        c.pod_routes("n1").is_empty()
    });
}
