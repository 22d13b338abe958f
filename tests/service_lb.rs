//! LoadBalancer Services (the built-in ServiceLB) and the API proxy subresources, with the
//! real binary and kubectl.
//!
//! API-only (no agent; nodes are API objects made Ready through the status subresource):
//! which node addresses go into `status.loadBalancer.ingress` (the enablelb label), a
//! port held by one Service leaves the second pending with an event until the first is
//! deleted, `loadBalancerClass` Services are left alone, `--disable-servicelb`, and the
//! proxy's 503s.
//!
//! On the one-node cluster of `support::kubelet` (needs root and containerd): a
//! LoadBalancer Service answers on the node's address, and `kubectl get --raw` reaches a
//! service, a pod and the node's kubelet through the proxy subresources.

mod support;

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::{json, Value};
use support::kubelet::{httpd_pod, World, DEADLINE, NODE_IP, POLL_EVERY};
use support::server::{stdout, wait_for, Server};
use support::wait::wait_until_every;

/// The enablelb label (k3s' `svccontroller.k3s.cattle.io/enablelb`).
const ENABLE_LB: &str = "svccontroller.orc.io/enablelb";

/// An API-only node, Ready, with InternalIP `ip`.
fn ready_node(s: &Server, name: &str, ip: &str) {
    s.apply_yaml(
        "create",
        &format!("apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n"),
    );
    let status = json!({"status": {
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
        "addresses": [{"type": "InternalIP", "address": ip}, {"type": "Hostname", "address": name}],
    }});
    s.ok(&[
        "patch",
        "node",
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &status.to_string(),
    ]);
}

fn lb_service(name: &str, port: u16, class: Option<&str>) -> String {
    let class = class
        .map(|c| format!("  loadBalancerClass: {c}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: {name}\nspec:\n  type: LoadBalancer\n{class}  selector:\n    app: {name}\n  ports:\n  - name: http\n    port: {port}\n    targetPort: 8080\n"
    )
}

/// The ingress IPs of Service `name`.
fn ingress(s: &Server, name: &str) -> Vec<String> {
    let svc = s.get_json(&["service", name]);
    let mut ips: Vec<String> = svc["status"]["loadBalancer"]["ingress"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["ip"].as_str().map(String::from))
        .collect();
    ips.sort();
    ips
}

fn wait_for_ingress(s: &Server, name: &str, want: &[&str]) {
    let mut last = Vec::new();
    wait_for(&format!("service {name} to be served on {want:?}"), || {
        last = ingress(s, name);
        last == want
    });
}

/// `(type, reason, message)` of the events about Service `name`.
fn service_events(s: &Server, name: &str) -> Vec<(String, String, String)> {
    let list = s.get_json(&[
        "events",
        "--field-selector",
        &format!("involvedObject.name={name}"),
    ]);
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["kind"] == "Service")
        .map(|e| {
            let text = |k: &str| e[k].as_str().unwrap_or("").to_string();
            (text("type"), text("reason"), text("message"))
        })
        .collect()
}

/// Node choice, port conflicts and classes, as a user sees them through kubectl.
#[test]
fn load_balancer_status_follows_nodes_ports_and_classes() {
    let s = Server::start_with(&["--node-monitor-grace-period", "10m"]);
    ready_node(&s, "n1", "192.0.2.11");
    ready_node(&s, "n2", "192.0.2.12");

    // Every Ready node's address, with ipMode VIP; kubectl shows them.
    s.apply_yaml("create", &lb_service("first", 80, None));
    wait_for_ingress(&s, "first", &["192.0.2.11", "192.0.2.12"]);
    let svc = s.get_json(&["service", "first"]);
    assert_eq!(svc["status"]["loadBalancer"]["ingress"][0]["ipMode"], "VIP");
    assert!(
        svc["spec"]["ports"][0]["nodePort"].as_u64().is_some(),
        "a NodePort is allocated unless allocateLoadBalancerNodePorts is false: {svc}"
    );
    let row = s.ok(&["get", "service", "first", "--no-headers"]);
    assert!(row.contains("192.0.2.11,192.0.2.12"), "{row}");

    // Labelling one node restricts the load balancers to it; unlabelling undoes it.
    s.ok(&["label", "node", "n2", &format!("{ENABLE_LB}=true")]);
    wait_for_ingress(&s, "first", &["192.0.2.12"]);
    s.ok(&["label", "node", "n2", &format!("{ENABLE_LB}-")]);
    wait_for_ingress(&s, "first", &["192.0.2.11", "192.0.2.12"]);
    // A node that goes away takes its address along.
    s.ok(&["delete", "node", "n1"]);
    wait_for_ingress(&s, "first", &["192.0.2.12"]);

    // A second Service on the same port stays pending with an event naming the holder.
    s.apply_yaml("create", &lb_service("second", 80, None));
    wait_for("an event about the port of service second", || {
        service_events(&s, "second")
            .iter()
            .any(|(t, reason, message)| {
                t == "Warning"
                    && reason == "SyncLoadBalancerFailed"
                    && message.contains(
                        "port 80/TCP is already used by LoadBalancer Service default/first",
                    )
            })
    });
    assert!(ingress(&s, "second").is_empty());
    let row = s.ok(&["get", "service", "second", "--no-headers"]);
    assert!(row.contains("<pending>"), "{row}");
    // A Service with another controller's class is left alone, port or not.
    s.apply_yaml(
        "create",
        &lb_service("metallb", 80, Some("metallb.io/metallb")),
    );
    // Another port is free.
    s.apply_yaml("create", &lb_service("third", 8443, None));
    wait_for_ingress(&s, "third", &["192.0.2.12"]);
    assert!(ingress(&s, "metallb").is_empty());
    assert!(
        service_events(&s, "metallb").is_empty(),
        "nothing is said about a Service of another class: {:?}",
        service_events(&s, "metallb")
    );

    // Once the holder is gone, the pending Service gets the port.
    s.ok(&["delete", "service", "first"]);
    wait_for_ingress(&s, "second", &["192.0.2.12"]);
    assert!(ingress(&s, "metallb").is_empty());

    // No longer a LoadBalancer: the addresses go.
    s.ok(&["patch", "service", "third", "--type=merge", "-p",
        r#"{"spec": {"type": "ClusterIP", "ports": [{"name": "http", "port": 8443, "targetPort": 8080, "nodePort": null}]}}"#]);
    wait_for_ingress(&s, "third", &[]);

    // allocateLoadBalancerNodePorts: false allocates no NodePort.
    let no_node_ports = lb_service("no-node-ports", 9000, None).replace(
        "  type: LoadBalancer\n",
        "  type: LoadBalancer\n  allocateLoadBalancerNodePorts: false\n",
    );
    s.apply_yaml("create", &no_node_ports);
    wait_for_ingress(&s, "no-node-ports", &["192.0.2.12"]);
    let svc = s.get_json(&["service", "no-node-ports"]);
    assert!(svc["spec"]["ports"][0].get("nodePort").is_none(), "{svc}");
}

/// `--disable-servicelb` leaves LoadBalancer Services to another controller.
#[test]
fn disabled_servicelb_leaves_load_balancers_pending() {
    let s = Server::start_with(&["--disable-servicelb", "--node-monitor-grace-period", "10m"]);
    ready_node(&s, "n1", "192.0.2.11");
    s.apply_yaml("create", &lb_service("web", 80, None));
    // A Service the controller would serve in well under a second: give it three.
    let deadline = std::time::Instant::now() + Duration::from_secs(3);
    while std::time::Instant::now() < deadline {
        assert!(ingress(&s, "web").is_empty(), "ServiceLB is disabled");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The proxy subresource answers 503 with a Status when nothing can serve, 404 for a
/// missing object, and is authorized as upstream (`get services/proxy`).
#[test]
fn proxy_without_a_backend_answers_with_a_status() {
    let s = Server::start();
    s.apply_yaml("create", &lb_service("idle", 80, None));
    let raw = |path: &str| s.kubectl(&["get", "--raw", path]);
    let out = raw("/api/v1/namespaces/default/services/idle:80/proxy/");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ServiceUnavailable") || err.contains("no endpoints available for service"),
        "{err}"
    );
    let out = raw("/api/v1/namespaces/default/services/idle:81/proxy/");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no service port 81"), "{err}");
    let out = raw("/api/v1/namespaces/default/services/missing/proxy/");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );

    // The 503 is a Status object.
    let client = s.client(true);
    let rt = tokio::runtime::Runtime::new().unwrap();
    let (code, body): (u16, Value) = rt.block_on(async {
        let resp = client
            .get(format!(
                "{}/api/v1/namespaces/default/services/idle/proxy/x",
                s.url()
            ))
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    });
    assert_eq!(code, 503);
    assert_eq!(body["kind"], "Status");
    assert_eq!(body["reason"], "ServiceUnavailable");
    assert_eq!(
        body["message"],
        "no endpoints available for service \"idle\""
    );

    // Authorized as `get services/proxy`: a user without it is refused.
    let can = s.kubectl(&[
        "auth",
        "can-i",
        "get",
        "services/proxy",
        "--as",
        "system:serviceaccount:default:default",
    ]);
    assert_eq!(stdout(&can).trim(), "no");
    assert_eq!(
        stdout(&s.kubectl(&["auth", "can-i", "get", "services/proxy"])).trim(),
        "yes"
    );
    let out = s.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/idle/proxy/",
        "--as",
        "system:serviceaccount:default:default",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("Forbidden") || err.contains("forbidden"),
        "{err}"
    );
    assert!(stdout(&out).is_empty());
}

/// On a real node: the LoadBalancer Service answers on the node's address, and the proxy
/// subresources reach a service, a pod and the kubelet.
#[test]
fn load_balancer_answers_on_the_node_address_and_the_api_proxies() {
    let w = World::start();
    let mut yaml = String::from(
        "apiVersion: v1
kind: Service
metadata:
  name: web
spec:
  type: LoadBalancer
  selector:
    app: web
  ports:
  - name: http
    port: 8081
    targetPort: 8080
",
    );
    yaml.push_str(&httpd_pod("web-1", "default", "web"));
    w.apply(&yaml);
    w.wait_running("web-1");

    w.step("The Service gets the node's address in its status");
    w.wait_for("service web to be served on the node's address", || {
        w.kubectl_out(&[
            "get",
            "service",
            "web",
            "-o",
            "jsonpath={.status.loadBalancer.ingress[*].ip}",
        ]) == NODE_IP
    });

    w.step("The node's address answers on the Service port");
    let lb: SocketAddr = format!("{NODE_IP}:8081").parse().unwrap();
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "the load balancer to answer",
        || match w.http_get_from_node(lb) {
            Ok(body) if body == "web-1" => Ok(()),
            other => Err(format!("{other:?}")),
        },
    );

    w.step("kubectl get --raw reaches the service, the pod and the kubelet");
    for path in [
        "/api/v1/namespaces/default/services/web:8081/proxy/",
        // Redirected to the path with a trailing slash, as upstream.
        "/api/v1/namespaces/default/services/web:8081/proxy",
        "/api/v1/namespaces/default/services/http:web:http/proxy/index.html",
        "/api/v1/namespaces/default/pods/web-1:8080/proxy/",
    ] {
        let body = w.kubectl_ok(&["get", "--raw", path]);
        assert_eq!(body.trim(), "web-1", "{path}");
    }
    let health = w.kubectl_ok(&["get", "--raw", "/api/v1/nodes/kt-node/proxy/healthz"]);
    assert_eq!(health.trim(), "ok");
    let missing = w.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/pods/web-1:8080/proxy/nope",
    ]);
    assert!(!missing.status.success(), "the backend's 404 is the answer");

    w.step("kubectl proxy serves the URL kubectl cluster-info prints for a service");
    let port = support::host::free_port();
    let mut proxy = w
        .kubectl_cmd(&["proxy", "--port", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("start kubectl proxy");
    let url: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let got = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut last = String::new();
        wait_until_every(
            DEADLINE,
            POLL_EVERY,
            "kubectl proxy to reach the service",
            || {
                let answer = w.http_get_path_from_node(
                    url,
                    "/api/v1/namespaces/default/services/web:http/proxy/",
                );
                last = format!("{answer:?}");
                match answer {
                    Ok(body) if body == "web-1" => Ok(()),
                    _ => Err(last.clone()),
                }
            },
        );
    }));
    let _ = proxy.kill();
    let _ = proxy.wait();
    if let Err(panic) = got {
        std::panic::resume_unwind(panic);
    }

    w.step("Without a ready endpoint the service proxy answers 503");
    w.kubectl_ok(&["delete", "pod", "web-1", "--wait=true"]);
    w.wait_for("the endpoint to go", || {
        w.ready_endpoint_ips("default", "web").is_empty()
    });
    let out = w.kubectl(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/services/web:8081/proxy/",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        err.contains("ServiceUnavailable") || err.contains("no endpoints"),
        "{err}"
    );
}
