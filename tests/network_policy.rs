//! NetworkPolicies on the one-node cluster of `support::kubelet` (needs root, containerd
//! and nftables; see there): real pods, real kubectl, connections tried with `wget` and
//! `nslookup` from inside the pods with `kubectl exec`.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

mod support;
use support::kubelet::*;
use support::wait::wait_until_every;

/// How long one connection attempt from a pod may take.
const ATTEMPT_SECS: &str = "2";
/// How often blocked/allowed traffic is tried again while a change takes effect.
const TRY_EVERY: Duration = Duration::from_millis(100);
const TABLE: &str = "orc-netpol";

/// An httpd pod answering with its hostname on 8080 (the container port `http`) and 9090.
fn web_pod(namespace: &str, name: &str, app: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
  namespace: {namespace}
  labels:
    app: {app}
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: httpd
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"hostname > /www/index.html && httpd -p 9090 -h /www && exec httpd -f -p 8080 -h /www\"]
    ports:
    - name: http
      containerPort: 8080
    volumeMounts:
    - name: www
      mountPath: /www
  volumes:
  - name: www
    emptyDir: {{}}
"
    )
}

struct Cluster {
    w: World,
    ips: std::collections::BTreeMap<String, String>,
}

impl Cluster {
    fn ip(&self, pod: &str) -> &str {
        &self.ips[pod]
    }

    /// `GET http://target/` from `ns/pod`: the body, or why there is none.
    fn fetch(&self, from: &str, target: &str) -> Result<String, String> {
        let (ns, pod) = from.split_once('/').expect("ns/pod");
        let out = self.w.kubectl(&[
            "exec",
            "-n",
            ns,
            pod,
            "--",
            "timeout",
            ATTEMPT_SECS,
            "wget",
            "-q",
            "-O",
            "-",
            &format!("http://{target}/"),
        ]);
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
        } else {
            Err(format!(
                "{from} → {target}: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    }

    fn wait_reaches(&self, from: &str, target: &str, answer: &str) {
        let body = wait_until_every(
            DEADLINE,
            TRY_EVERY,
            &format!("{from} to reach {target}"),
            || self.fetch(from, target),
        );
        assert_eq!(body, answer, "{target} answered from the wrong pod");
    }

    fn wait_blocked(&self, from: &str, target: &str) {
        wait_until_every(
            DEADLINE,
            TRY_EVERY,
            &format!("{from} to be kept from {target}"),
            || match self.fetch(from, target) {
                Ok(body) => Err(format!("answered {body:?}")),
                Err(_) => Ok(()),
            },
        );
    }

    fn assert_blocked(&self, from: &str, target: &str) {
        if let Ok(body) = self.fetch(from, target) {
            panic!("{from} reached {target} ({body:?}) while a policy forbids it");
        }
    }

    /// `nslookup name` from `ns/pod` through the cluster DNS.
    fn resolve(&self, from: &str, name: &str) -> Result<String, String> {
        let (ns, pod) = from.split_once('/').expect("ns/pod");
        let out = self.w.kubectl(&[
            "exec",
            "-n",
            ns,
            pod,
            "--",
            "timeout",
            ATTEMPT_SECS,
            "nslookup",
            name,
        ]);
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        if out.status.success() {
            Ok(stdout)
        } else {
            Err(format!("{stdout}{}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    /// The addresses of the table's `map` (from the node's side).
    fn map_elements(&self, map: &str) -> String {
        let out = self
            .w
            .in_netns("nft")
            .args(["-j", "list", "map", "ip", TABLE, map])
            .output()
            .expect("run nft");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn table_exists(&self) -> bool {
        self.w
            .in_netns("nft")
            .args(["list", "table", "ip", TABLE])
            .output()
            .expect("run nft")
            .status
            .success()
    }
}

fn start() -> Cluster {
    let w = World::start();
    let mut yaml = String::from(
        "apiVersion: v1
kind: Namespace
metadata:
  name: np-a
  labels:
    team: a
---
apiVersion: v1
kind: Namespace
metadata:
  name: np-b
  labels:
    team: b
---
apiVersion: v1
kind: Service
metadata:
  name: server
  namespace: np-a
spec:
  selector:
    app: server
  ports:
  - port: 80
    targetPort: http
",
    );
    for (ns, name, app) in [
        ("np-a", "server", "server"),
        ("np-a", "client", "client"),
        ("np-a", "other", "other"),
        ("np-b", "remote", "client"),
    ] {
        yaml.push_str(&web_pod(ns, name, app));
    }
    w.apply(&yaml);
    let mut ips = std::collections::BTreeMap::new();
    for (ns, name) in [
        ("np-a", "server"),
        ("np-a", "client"),
        ("np-a", "other"),
        ("np-b", "remote"),
    ] {
        let ip = wait_until_every(
            DEADLINE,
            POLL_EVERY,
            &format!("pod {ns}/{name} to run"),
            || {
                let out = w.kubectl_out(&[
                    "get",
                    "pod",
                    name,
                    "-n",
                    ns,
                    "-o",
                    "jsonpath={.status.phase} {.status.podIP}",
                ]);
                match out.split_once(' ') {
                    Some(("Running", ip)) if !ip.is_empty() => Ok(ip.to_string()),
                    _ => Err(out),
                }
            },
        );
        ips.insert(name.to_string(), ip);
    }
    Cluster { w, ips }
}

fn apply_timed(c: &Cluster, yaml: &str) -> Instant {
    c.w.apply(yaml);
    Instant::now()
}

/// Every behaviour users rely on, in one cluster: default deny, allow from labelled
/// pods on a named port, namespace selectors, ipBlocks with exceptions, the node's own
/// traffic, Service VIPs, egress deny and allow (the cluster DNS included), replies of
/// allowed connections, enforcement across an agent restart, removal restoring
/// traffic, validation, and `--disable-network-policy` removing the table.
#[test]
fn network_policies_are_enforced_on_the_node() {
    let c = start();
    let w = &c.w;
    let server = format!("{}:8080", c.ip("server"));
    let server_9090 = format!("{}:9090", c.ip("server"));
    let other = format!("{}:8080", c.ip("other"));
    let vip = w.kubectl_out(&[
        "get",
        "svc",
        "server",
        "-n",
        "np-a",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    let vip_80 = format!("{vip}:80");

    w.step("without policies every pod reaches every pod, also through the Service");
    c.wait_reaches("np-a/client", &server, "server");
    c.wait_reaches("np-a/other", &server, "server");
    c.wait_reaches("np-b/remote", &server, "server");
    c.wait_reaches("np-a/client", &vip_80, "server");

    w.step("default deny ingress isolates every pod of the namespace");
    let applied = apply_timed(
        &c,
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: default-deny
  namespace: np-a
spec:
  podSelector: {}
",
    );
    let server_ip = format!("\"{}\"", c.ip("server"));
    wait_until_every(
        DEADLINE,
        Duration::from_millis(5),
        "the server to be isolated in nft",
        || c.map_elements("ingress-pods").contains(&server_ip),
    );
    eprintln!(
        "measured: policy applied (kubectl returned) → enforced in nft: {:.0} ms",
        applied.elapsed().as_secs_f64() * 1000.0
    );
    c.wait_blocked("np-a/client", &server);
    c.assert_blocked("np-b/remote", &server);
    c.assert_blocked("np-a/client", &vip_80);
    let table = w.kubectl_ok(&["get", "netpol", "-n", "np-a"]);
    assert!(
        table.starts_with("NAME") && table.contains("POD-SELECTOR"),
        "{table}"
    );
    assert!(table.contains("default-deny   <none>"), "{table}");
    let types = w.kubectl_out(&[
        "get",
        "netpol",
        "default-deny",
        "-n",
        "np-a",
        "-o",
        "jsonpath={.spec.policyTypes}",
    ]);
    assert_eq!(types, r#"["Ingress"]"#, "defaulted as upstream");
    w.step("the node itself still reaches its isolated pods (probes)");
    let from_node = w.http_get_from_node(server.parse::<SocketAddr>().unwrap());
    assert_eq!(from_node.as_deref(), Ok("server"));

    w.step("an allow rule from labelled pods of the namespace on the named port reopens only that");
    w.apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-client
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: server
  ingress:
  - from:
    - podSelector:
        matchLabels:
          app: client
    ports:
    - port: http
",
    );
    c.wait_reaches("np-a/client", &server, "server");
    c.assert_blocked("np-a/client", &server_9090);
    c.assert_blocked("np-a/other", &server);
    c.assert_blocked("np-b/remote", &server);
    w.step("traffic through the Service VIP obeys the policy (after DNAT)");
    c.wait_reaches("np-a/client", &vip_80, "server");
    c.assert_blocked("np-a/other", &vip_80);
    let table = w.kubectl_ok(&["get", "netpol", "allow-client", "-n", "np-a"]);
    assert!(table.contains("app=server"), "{table}");

    w.step("a namespaceSelector lets the pods of the selected namespaces in");
    w.apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-team-b
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: server
  ingress:
  - from:
    - namespaceSelector:
        matchLabels:
          team: b
",
    );
    c.wait_reaches("np-b/remote", &server, "server");
    c.assert_blocked("np-a/other", &server);

    w.step("an ipBlock lets its addresses in, except the excepted ones");
    w.kubectl_ok(&[
        "delete",
        "netpol",
        "allow-client",
        "allow-team-b",
        "-n",
        "np-a",
    ]);
    w.apply(&format!(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-pod-network
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: server
  ingress:
  - from:
    - ipBlock:
        cidr: 10.199.0.0/16
        except:
        - {}/32
",
        c.ip("client")
    ));
    c.wait_reaches("np-a/other", &server, "server");
    c.wait_blocked("np-a/client", &server);
    c.wait_reaches("np-b/remote", &server, "server");

    w.step("the rules stay while orc is down and are reconciled when it is back");
    let mut c = c;
    c.w.kill_server();
    c.assert_blocked_by_node_view();
    c.w.spawn_server();
    c.wait_reaches("np-a/other", &server, "server");
    c.assert_blocked("np-a/client", &server);
    let w = &c.w;

    w.step("egress: a default-deny egress pod reaches only what its policy allows, and no DNS");
    w.kubectl_ok(&["delete", "netpol", "--all", "-n", "np-a"]);
    c.wait_reaches("np-a/client", &server, "server");
    let dns_name = "server.np-a.svc.cluster.local";
    wait_until_every(
        DEADLINE,
        TRY_EVERY,
        "the client to resolve before egress is isolated",
        || c.resolve("np-a/client", dns_name),
    );
    w.apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: client-egress
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: client
  policyTypes:
  - Egress
  egress:
  - to:
    - podSelector:
        matchLabels:
          app: server
    ports:
    - port: http
---
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: server-deny-egress
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: server
  policyTypes:
  - Egress
",
    );
    c.wait_blocked("np-a/client", &other);
    w.step("replies of allowed connections pass although the server may send nothing itself");
    c.wait_reaches("np-a/client", &server, "server");
    c.wait_reaches("np-a/client", &vip_80, "server");
    c.assert_blocked("np-a/client", &server_9090);
    w.step("an egress-isolated pod cannot resolve names until the cluster DNS is allowed");
    wait_until_every(
        DEADLINE,
        TRY_EVERY,
        "DNS to be blocked for the client",
        || match c.resolve("np-a/client", dns_name) {
            Ok(out) => Err(format!("resolved: {out}")),
            Err(_) => Ok(()),
        },
    );
    w.apply(
        "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: allow-dns
  namespace: np-a
spec:
  podSelector:
    matchLabels:
      app: client
  policyTypes:
  - Egress
  egress:
  - to:
    - namespaceSelector:
        matchLabels:
          kubernetes.io/metadata.name: kube-system
      podSelector:
        matchLabels:
          k8s-app: kube-dns
    ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
",
    );
    let answer = wait_until_every(DEADLINE, TRY_EVERY, "the client to resolve again", || {
        c.resolve("np-a/client", dns_name)
    });
    assert!(answer.contains(&vip), "{answer}");
    c.assert_blocked("np-a/client", &other);

    w.step("removing the policies restores all traffic");
    w.kubectl_ok(&["delete", "netpol", "--all", "-n", "np-a"]);
    c.wait_reaches("np-a/client", &other, "other");
    c.wait_reaches("np-a/other", &server, "server");
    assert!(!c
        .map_elements("egress-pods")
        .contains(&format!("\"{}\"", c.ip("client"))));

    w.step("an invalid policy is refused with upstream's message and not stored");
    let bad = "apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: bad
  namespace: np-a
spec:
  podSelector: {}
  ingress:
  - from:
    - ipBlock:
        cidr: 10.0.0.0/16
        except:
        - 192.168.0.0/24
";
    let mut apply = w.kubectl_cmd(&["apply", "-f", "-"]);
    apply
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = apply.spawn().expect("run kubectl");
    {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(bad.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("must be a strict subset of `cidr`"),
        "{stderr}"
    );
    assert!(!w
        .kubectl(&["get", "netpol", "bad", "-n", "np-a"])
        .status
        .success());

    w.step("--disable-network-policy (ORC_DISABLE_NETWORK_POLICY) removes the table");
    assert!(c.table_exists());
    c.w.kill_server();
    std::env::set_var("ORC_DISABLE_NETWORK_POLICY", "true");
    c.w.spawn_server();
    wait_until_every(
        DEADLINE,
        POLL_EVERY,
        "the netpol table to be removed",
        || !c.table_exists(),
    );
}

impl Cluster {
    /// While orc is down, the kernel keeps the rules: the server is still isolated, with
    /// the ipBlock's set in place.
    fn assert_blocked_by_node_view(&self) {
        assert!(self.table_exists(), "the table outlives the agent");
        let server = format!("\"{}\"", self.ip("server"));
        assert!(self.map_elements("ingress-pods").contains(&server));
        let listing = self
            .w
            .in_netns("nft")
            .args(["-j", "list", "sets", "ip"])
            .output()
            .expect("run nft");
        let text = String::from_utf8_lossy(&listing.stdout);
        assert!(text.contains("\"blocks-"), "the ipBlock's set: {text}");
    }
}
