//! Cluster DNS end to end on the one-node cluster of `support::kubelet` (needs root and
//! containerd; see there): names of Services and pods, from pods and from the node.

mod support;
use support::kubelet::*;

/// Cluster DNS end to end: pods resolve services of their own namespace by short and
/// full name and of other namespaces by `<svc>.<ns>`, fetch from them, resolve headless
/// services to their pods and pod names to their address, and get NXDOMAIN for unknown
/// names; the node itself asks the same server over UDP and TCP.
#[test]
fn dns_pods_resolve_services_and_fetch_from_them() {
    let w = World::start();
    let created = w.kubectl(&["create", "namespace", "other"]);
    assert!(
        created.status.success(),
        "kubectl create namespace: {}",
        String::from_utf8_lossy(&created.stderr)
    );
    let mut yaml = service_yaml("web", "default", "web", false);
    yaml.push_str(&service_yaml("web-headless", "default", "web", true));
    yaml.push_str(&service_yaml("web", "other", "web", false));
    yaml.push_str(&httpd_pod("web-1", "default", "web"));
    yaml.push_str(&httpd_pod("web-2", "default", "web"));
    yaml.push_str(&httpd_pod("web-other", "other", "web"));
    w.apply(&yaml);
    w.wait_for("the web services to have ready endpoints", || {
        w.ready_endpoint_ips("default", "web").len() == 2
            && w.ready_endpoint_ips("default", "web-headless").len() == 2
            && w.ready_endpoint_ips("other", "web").len() == 1
    });
    let web_ips = w.ready_endpoint_ips("default", "web");
    let web_ip = w.kubectl_out(&["get", "service", "web", "-o", "jsonpath={.spec.clusterIP}"]);
    let dns_ip = w.kubectl_out(&[
        "get",
        "service",
        "kube-dns",
        "-n",
        "kube-system",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(
        dns_ip, CLUSTER_DNS,
        "kube-system/kube-dns holds the cluster DNS address"
    );

    w.step("From the node: UDP and TCP");
    let full = "web.default.svc.cluster.local.";
    let mut last = Err(String::new());
    w.wait_for("the cluster DNS to answer on the node", || {
        last = w.dns_query_from_node(full, false);
        last.is_ok()
    });
    assert_eq!(last, Ok(("NoError".to_string(), vec![web_ip.clone()])));
    assert_eq!(
        w.dns_query_from_node(full, true),
        Ok(("NoError".to_string(), vec![web_ip.clone()])),
        "over TCP"
    );
    assert_eq!(
        w.dns_query_from_node("web-headless.default.svc.cluster.local.", true),
        Ok(("NoError".to_string(), web_ips.clone()))
    );
    assert_eq!(
        w.dns_query_from_node("nope.default.svc.cluster.local.", false),
        Ok(("NXDomain".to_string(), vec![]))
    );

    w.step("From a pod, through its resolv.conf (ClusterFirst)");
    let pod_name = format!("{}.default.pod.cluster.local", web_ips[0].replace('.', "-"));
    // The image's busybox is linked statically against glibc, whose resolver functions
    // crash without NSS modules (busybox wget segfaults even on an IP): names are
    // resolved with busybox's own nslookup, through the pod's resolv.conf (search path,
    // server), and fetched with nc from the address it prints. busybox's nslookup applies
    // the search path to dotless names only; for `web.other`, `search_like_libc` walks it
    // as glibc/musl do with `ndots:5` (each search domain in turn, then the name as is).
    let script = format!(
        "resolve() {{ nslookup \"$1\" | grep '^Address: ' | tail -n 1 | cut -d ' ' -f 2; }}
         search_like_libc() {{
           for d in $(grep '^search' /etc/resolv.conf | cut -d ' ' -f 2-); do
             a=$(resolve \"$1.$d\"); [ -n \"$a\" ] && {{ echo \"$a\"; return; }}
           done
           resolve \"$1.\"
         }}
         fetch() {{ printf 'GET / HTTP/1.0\\r\\n\\r\\n' | nc -w 2 \"$1\" 80; }}
         echo '== resolv.conf'; cat /etc/resolv.conf
         echo '== full'; nslookup web.default.svc.cluster.local {CLUSTER_DNS}
         echo '== short'; resolve web
         echo '== fetch short'; fetch $(resolve web)
         echo '== other'; search_like_libc web.other
         echo '== fetch other'; fetch $(search_like_libc web.other)
         echo '== headless'; nslookup web-headless.default.svc.cluster.local
         echo '== pod'; nslookup {pod_name}
         echo '== unknown'; nslookup nope.default.svc.cluster.local
         echo '== end'"
    );
    let client = format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: dns-client
spec:
  nodeName: kt-node
  restartPolicy: Never
  terminationGracePeriodSeconds: 0
  containers:
  - name: client
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", {script:?}]
"
    );
    w.apply(&client);
    w.wait_for("the DNS client pod to finish", || {
        let phase = w.pod("dns-client").unwrap_or_default()["status"]["phase"].clone();
        phase == "Succeeded" || phase == "Failed"
    });
    let logs = w.kubectl_out(&["logs", "dns-client"]);
    let section = |name: &str| -> String {
        let start = logs
            .find(&format!("== {name}\n"))
            .unwrap_or_else(|| panic!("no section {name} in the client's output:\n{logs}"));
        let rest = &logs[start + name.len() + 4..];
        rest[..rest.find("\n==").unwrap_or(rest.len())].to_string()
    };
    let resolv = section("resolv.conf");
    assert!(
        resolv.contains(&format!("nameserver {CLUSTER_DNS}"))
            && resolv.contains("search default.svc.cluster.local svc.cluster.local cluster.local")
            && resolv.contains("ndots:5"),
        "{logs}"
    );
    assert!(
        section("full").contains(&format!("Address: {web_ip}")),
        "{logs}"
    );
    assert_eq!(
        section("short").trim(),
        web_ip,
        "web resolves through the search path:\n{logs}"
    );
    let fetched = section("fetch short");
    assert!(
        fetched.contains("web-1") || fetched.contains("web-2"),
        "fetch from web:\n{logs}"
    );
    let other_ip = w.kubectl_out(&[
        "get",
        "service",
        "web",
        "-n",
        "other",
        "-o",
        "jsonpath={.spec.clusterIP}",
    ]);
    assert_eq!(
        section("other").trim(),
        other_ip,
        "web.other resolves:\n{logs}"
    );
    assert!(
        section("fetch other").contains("web-other"),
        "fetch from web.other:\n{logs}"
    );
    let headless = section("headless");
    for ip in &web_ips {
        assert!(
            headless.contains(&format!("Address: {ip}")),
            "headless: {logs}"
        );
    }
    assert!(
        section("pod").contains(&format!("Address: {}", web_ips[0])),
        "{logs}"
    );
    assert!(section("unknown").contains("NXDOMAIN"), "{logs}");
}
