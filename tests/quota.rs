//! ResourceQuota and LimitRange against the real binary and kubectl: quotas counted by
//! the controller and charged at admission with upstream's messages (`must specify`,
//! `exceeded quota`), usage given back on delete, object counts of any kind, scopes,
//! dry runs checked but not charged, concurrent creates never exceeding a quota, and
//! LimitRange defaults and bounds on pods and claims.

mod support;

use serde_json::Value;
use support::server::{wait_for, Server};

fn used(s: &Server, ns: &str, quota: &str) -> Value {
    s.get_json(&["quota", quota, "-n", ns])["status"]["used"].clone()
}

fn pod_yaml(name: &str, resources: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\nspec:\n  containers:\n  - name: c\n    image: busybox\n{resources}"
    )
}

fn create_in(s: &Server, ns: &str, yaml: &str) -> std::process::Output {
    s.kubectl_stdin(&["create", "-n", ns, "-f", "-"], yaml)
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).to_string()
}

#[test]
fn quotas_count_charge_and_refuse_with_upstreams_messages() {
    let s = Server::start();
    s.ok(&["create", "namespace", "team"]);
    s.ok(&[
        "create",
        "quota",
        "compute",
        "-n",
        "team",
        "--hard=pods=2,requests.cpu=1,limits.memory=1Gi,configmaps=3,count/deployments.apps=1",
    ]);
    // The controller publishes hard and used; until then the quota refuses what it tracks.
    wait_for("the quota to be counted", || {
        let u = used(&s, "team", "compute");
        u["pods"] == "0" && u["configmaps"] == "1"
    });
    let table = s.ok(&["get", "quota", "-n", "team"]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(header, ["NAME", "AGE", "REQUEST", "LIMIT"]);
    assert!(
        table
            .contains("configmaps: 1/3, count/deployments.apps: 0/1, pods: 0/2, requests.cpu: 0/1"),
        "{table}"
    );
    assert!(table.contains("limits.memory: 0/1Gi"), "{table}");
    let described = s.ok(&["describe", "quota", "compute", "-n", "team"]);
    assert!(
        described.contains("requests.cpu") && described.contains("Used"),
        "{described}"
    );

    // Compute quotas need every container to state what they count.
    let out = create_in(&s, "team", &pod_yaml("bare", ""));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "pods \"bare\" is forbidden: failed quota: compute: must specify limits.memory for: c; requests.cpu for: c"
        ),
        "{}",
        stderr(&out)
    );

    let sized = |cpu: &str| {
        format!("    resources:\n      requests: {{cpu: {cpu}}}\n      limits: {{memory: 256Mi}}\n")
    };
    let out = create_in(&s, "team", &pod_yaml("a", &sized("600m")));
    assert!(out.status.success(), "{}", stderr(&out));
    let u = used(&s, "team", "compute");
    assert_eq!(
        (u["pods"].as_str(), u["requests.cpu"].as_str()),
        (Some("1"), Some("600m"))
    );
    assert_eq!(u["limits.memory"], "256Mi");

    let out = create_in(&s, "team", &pod_yaml("b", &sized("500m")));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains(
            "pods \"b\" is forbidden: exceeded quota: compute, requested: requests.cpu=500m, used: requests.cpu=600m, limited: requests.cpu=1"
        ),
        "{}",
        stderr(&out)
    );
    assert!(
        !s.kubectl(&["get", "pod", "b", "-n", "team"])
            .status
            .success(),
        "nothing stored"
    );

    // A dry run is judged but not charged.
    s.ok(&[
        "create",
        "-n",
        "team",
        "configmap",
        "one",
        "--dry-run=server",
    ]);
    assert_eq!(used(&s, "team", "compute")["configmaps"], "1");
    s.ok(&["create", "-n", "team", "configmap", "one"]);
    s.ok(&["create", "-n", "team", "configmap", "two"]);
    let err = s.fails(&["create", "-n", "team", "configmap", "three"]);
    assert!(
        err.contains("exceeded quota: compute, requested: configmaps=1, used: configmaps=3, limited: configmaps=3"),
        "{err}"
    );

    // Object counts of any kind.
    s.ok(&[
        "create",
        "-n",
        "team",
        "deployment",
        "web",
        "--image=busybox",
        "--replicas=0",
    ]);
    let err = s.fails(&[
        "create",
        "-n",
        "team",
        "deployment",
        "api",
        "--image=busybox",
        "--replicas=0",
    ]);
    assert!(
        err.contains("exceeded quota: compute, requested: count/deployments.apps=1"),
        "{err}"
    );

    // Deletes give usage back.
    s.ok(&[
        "delete",
        "pod",
        "a",
        "-n",
        "team",
        "--grace-period=0",
        "--force",
    ]);
    s.ok(&["delete", "configmap", "two", "-n", "team"]);
    wait_for("the usage given back", || {
        let u = used(&s, "team", "compute");
        u["pods"] == "0" && u["requests.cpu"] == "0" && u["configmaps"] == "2"
    });
    let out = create_in(&s, "team", &pod_yaml("b", &sized("500m")));
    assert!(out.status.success(), "{}", stderr(&out));

    // Raising the limit is published by the controller and admits more.
    s.ok(&[
        "patch",
        "quota",
        "compute",
        "-n",
        "team",
        "--type=merge",
        "-p",
        r#"{"spec":{"hard":{"configmaps":"10"}}}"#,
    ]);
    wait_for("the new limit published", || {
        s.get_json(&["quota", "compute", "-n", "team"])["status"]["hard"]["configmaps"] == "10"
    });
    s.ok(&["create", "-n", "team", "configmap", "three"]);
}

#[test]
fn concurrent_creates_never_exceed_a_quota_and_scopes_select_pods() {
    let s = Server::start();
    s.ok(&["create", "namespace", "busy"]);
    s.ok(&["create", "quota", "few", "-n", "busy", "--hard=secrets=5"]);
    s.ok(&[
        "create",
        "quota",
        "best-effort",
        "-n",
        "busy",
        "--hard=pods=1",
        "--scopes=BestEffort",
    ]);
    wait_for("the quotas to be counted", || {
        used(&s, "busy", "few")["secrets"] == "0" && used(&s, "busy", "best-effort")["pods"] == "0"
    });
    let kubeconfig = s.kubeconfig();
    let children: Vec<_> = (0..12)
        .map(|i| {
            std::process::Command::new("kubectl")
                .env("KUBECONFIG", &kubeconfig)
                .args([
                    "create",
                    "-n",
                    "busy",
                    "secret",
                    "generic",
                    &format!("s{i}"),
                    "--from-literal=k=v",
                ])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("kubectl")
        })
        .collect();
    let mut refused = 0;
    for child in children {
        let out = child.wait_with_output().expect("kubectl");
        if !out.status.success() {
            assert!(
                stderr(&out).contains("exceeded quota: few"),
                "{}",
                stderr(&out)
            );
            refused += 1;
        }
    }
    let listed = s.get_json(&["secrets", "-n", "busy"]);
    let stored = listed["items"].as_array().map_or(0, Vec::len);
    assert_eq!(stored, 5, "five of twelve concurrent creates fit");
    assert_eq!(refused, 7);
    assert_eq!(used(&s, "busy", "few")["secrets"], "5");

    // A BestEffort-scoped quota counts only pods without requests or limits.
    assert!(create_in(&s, "busy", &pod_yaml("be-1", ""))
        .status
        .success());
    let out = create_in(&s, "busy", &pod_yaml("be-2", ""));
    assert!(
        stderr(&out).contains(
            "exceeded quota: best-effort, requested: pods=1, used: pods=1, limited: pods=1"
        ),
        "{}",
        stderr(&out)
    );
    let burstable = "    resources:\n      requests: {memory: 8Mi}\n";
    let out = create_in(&s, "busy", &pod_yaml("burstable", burstable));
    assert!(out.status.success(), "{}", stderr(&out));
}

#[test]
fn limit_ranges_default_and_bound_containers_and_claims() {
    let s = Server::start();
    s.ok(&["create", "namespace", "lim"]);
    s.apply_yaml(
        "create",
        "apiVersion: v1
kind: LimitRange
metadata:
  name: bounds
  namespace: lim
spec:
  limits:
  - type: Container
    default: {cpu: 500m, memory: 256Mi}
    defaultRequest: {cpu: 100m}
    max: {cpu: \"1\"}
    min: {cpu: 50m}
  - type: PersistentVolumeClaim
    max: {storage: 10Gi}
",
    );
    let range = s.get_json(&["limits", "bounds", "-n", "lim"]);
    assert_eq!(
        range["spec"]["limits"][0]["defaultRequest"]["memory"], "256Mi",
        "defaultRequest defaults to default"
    );
    let table = s.ok(&["get", "limits", "-n", "lim"]);
    assert!(
        table.starts_with("NAME") && table.contains("CREATED AT"),
        "{table}"
    );

    let out = create_in(&s, "lim", &pod_yaml("plain", ""));
    assert!(out.status.success(), "{}", stderr(&out));
    let pod = s.get_json(&["pod", "plain", "-n", "lim"]);
    let resources = &pod["spec"]["containers"][0]["resources"];
    assert_eq!(resources["requests"]["cpu"], "100m");
    assert_eq!(resources["requests"]["memory"], "256Mi");
    assert_eq!(resources["limits"]["cpu"], "500m");
    assert_eq!(resources["limits"]["memory"], "256Mi");
    assert_eq!(
        pod["metadata"]["annotations"]["kubernetes.io/limit-ranger"],
        "LimitRanger plugin set: cpu, memory request for container c; cpu, memory limit for container c"
    );

    let greedy = "    resources:\n      limits: {cpu: \"2\"}\n";
    let out = create_in(&s, "lim", &pod_yaml("greedy", greedy));
    assert!(
        stderr(&out).contains(
            "pods \"greedy\" is forbidden: maximum cpu usage per Container is 1, but limit is 2"
        ),
        "{}",
        stderr(&out)
    );

    let claim = |size: &str| {
        format!(
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata:\n  name: data\nspec:\n  accessModes: [ReadWriteOnce]\n  storageClassName: none\n  resources:\n    requests: {{storage: {size}}}\n"
        )
    };
    let out = create_in(&s, "lim", &claim("20Gi"));
    assert!(
        stderr(&out).contains(
            "maximum storage usage per PersistentVolumeClaim is 10Gi, but request is 20Gi"
        ),
        "{}",
        stderr(&out)
    );
    let out = create_in(&s, "lim", &claim("5Gi"));
    assert!(out.status.success(), "{}", stderr(&out));

    // With defaults from a LimitRange, pods without resources fit a compute quota.
    s.ok(&[
        "create",
        "quota",
        "cpu",
        "-n",
        "lim",
        "--hard=requests.cpu=150m",
    ]);
    wait_for("the quota to be counted", || {
        used(&s, "lim", "cpu")["requests.cpu"] == "100m"
    });
    let out = create_in(&s, "lim", &pod_yaml("second", ""));
    assert!(
        stderr(&out).contains("exceeded quota: cpu"),
        "{}",
        stderr(&out)
    );
}

#[test]
fn quotas_and_limit_ranges_written_with_plain_numbers_are_accepted_and_enforced() {
    // `pods: 10` and `cpu: 0.5` as YAML numbers, as many charts render them: upstream
    // reads them as quantities and stores their canonical spelling (`0.5` → `500m`).
    let s = Server::start();
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: default}\nspec:\n  hard: {pods: 1, requests.cpu: 1}\n---\napiVersion: v1\nkind: LimitRange\nmetadata: {name: lr, namespace: default}\nspec:\n  limits:\n  - type: Container\n    max: {cpu: 2}\n    default: {cpu: 0.5}\n    defaultRequest: {cpu: 0.25}\n    maxLimitRequestRatio: {cpu: 4}\n",
    );
    let q = s.get_json(&["quota", "q"]);
    assert_eq!(q["spec"]["hard"]["pods"], "1");
    let lr = s.get_json(&["limitrange", "lr"]);
    assert_eq!(lr["spec"]["limits"][0]["default"]["cpu"], "500m");
    // The range defaults a container's request; the quota counts it and holds the
    // second pod back.
    let first = create_in(&s, "default", &pod_yaml("first", ""));
    assert!(first.status.success(), "{}", stderr(&first));
    let pod = s.get_json(&["pod", "first"]);
    assert_eq!(
        pod["spec"]["containers"][0]["resources"]["requests"]["cpu"],
        "250m"
    );
    let second = create_in(&s, "default", &pod_yaml("second", ""));
    assert!(
        stderr(&second).contains("exceeded quota: q"),
        "{}",
        stderr(&second)
    );
    // Server-side apply takes the same file.
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: default}\nspec:\n  hard: {pods: 2, requests.cpu: 1}\n",
    );
    let out = s.kubectl_stdin(
        &["apply", "--server-side", "-f", "-"],
        "apiVersion: v1\nkind: ResourceQuota\nmetadata: {name: q, namespace: default}\nspec:\n  hard: {pods: 2, requests.cpu: 1}\n",
    );
    assert!(out.status.success(), "{}", stderr(&out));
}
