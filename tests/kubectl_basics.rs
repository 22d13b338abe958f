//! The real kubectl against a real `orc server`: everyday commands and what they store.

mod support;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use support::server::{stdout, wait_for, Server};

const POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web, tier: front}
spec:
  containers:
  - name: c
    image: busybox:1.36
    command: ["sleep", "3600"]
    resources: {limits: {cpu: 1, memory: 64Mi}}
"#;

const RC: &str = r#"
apiVersion: v1
kind: ReplicationController
metadata:
  name: redis
spec:
  replicas: 2
  selector: {name: redis}
  template:
    metadata:
      labels: {name: redis}
    spec:
      containers:
      - name: redis
        image: redis
        ports: [{containerPort: 6379}]
"#;

#[test]
fn fresh_cluster_has_the_system_namespaces_and_kubernetes_service() {
    let s = Server::start();
    let ns = s.ok(&["get", "ns", "-o", "name"]);
    for want in ["default", "kube-system", "kube-public", "kube-node-lease"] {
        assert!(ns.contains(&format!("namespace/{want}")), "{ns}");
    }
    let svc = s.get_json(&["svc", "kubernetes", "-n", "default"]);
    assert_eq!(svc["spec"]["clusterIP"], "10.43.0.1");
    let version = s.ok(&["version", "-o", "json"]);
    let v: serde_json::Value = serde_json::from_str(&version).unwrap();
    assert_eq!(v["serverVersion"]["minor"], "32");
}

#[test]
fn kubeconfig_is_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    let mode = std::fs::metadata(s.kubeconfig())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn create_get_and_select_pods() {
    let s = Server::start();
    assert!(s.apply_yaml("create", POD).contains("pod/web created"));
    let pod = s.get_json(&["pod", "web"]);
    assert_eq!(pod["metadata"]["namespace"], "default");
    assert!(pod["metadata"]["uid"].as_str().unwrap().len() >= 32);
    assert!(
        pod["metadata"]["resourceVersion"]
            .as_str()
            .unwrap()
            .parse::<u64>()
            .unwrap()
            > 0
    );
    assert_eq!(pod["spec"]["restartPolicy"], "Always");
    assert_eq!(
        pod["spec"]["containers"][0]["imagePullPolicy"],
        "IfNotPresent"
    );
    assert_eq!(pod["status"]["phase"], "Pending");
    // Default eviction tolerations: --default-unreachable-toleration-seconds (15) and
    // --default-not-ready-toleration-seconds (60).
    let tolerations = pod["spec"]["tolerations"].as_array().unwrap();
    assert!(tolerations
        .iter()
        .any(|t| t["key"] == "node.kubernetes.io/unreachable" && t["tolerationSeconds"] == 15));
    assert!(tolerations
        .iter()
        .any(|t| t["key"] == "node.kubernetes.io/not-ready" && t["tolerationSeconds"] == 60));
    let yaml = s.ok(&["get", "pod", "web", "-o", "yaml"]);
    assert!(
        yaml.contains("name: web") && yaml.contains("image: busybox:1.36"),
        "{yaml}"
    );
    assert!(s
        .ok(&["get", "pods", "-l", "app=web", "-o", "name"])
        .contains("pod/web"));
    assert!(s
        .ok(&[
            "get",
            "pods",
            "-l",
            "app in (web,db),tier!=back",
            "-o",
            "name"
        ])
        .contains("pod/web"));
    assert!(!s
        .ok(&["get", "pods", "-l", "app=db", "-o", "name"])
        .contains("pod/web"));
    assert!(s
        .ok(&["get", "pods", "-A", "-o", "name"])
        .contains("pod/web"));
    assert!(s
        .ok(&[
            "get",
            "pods",
            "--field-selector",
            "status.phase=Pending",
            "-o",
            "name"
        ])
        .contains("pod/web"));
    let again = s.kubectl_stdin(&["create", "-f", "-"], POD);
    assert!(String::from_utf8_lossy(&again.stderr).contains("AlreadyExists"));
}

/// `kubectl patch --subresource=status` as upstream's pod status strategy answers it:
/// only the status is taken (a spec or label change in the body is ignored), a bad
/// status is refused with 422 and nothing written, unknown status fields are warned
/// about; and the scheduler's own status write (no node can take the pod) still lands.
#[test]
fn pod_status_writes_take_only_the_status_and_check_it() {
    let s = Server::start();
    s.apply_yaml("create", POD);
    wait_for("the scheduler's Unschedulable condition", || {
        let pod = s.get_json(&["pod", "web"]);
        pod["status"]["conditions"].as_array().is_some_and(|cs| {
            cs.iter().any(|c| {
                c["type"] == "PodScheduled"
                    && c["status"] == "False"
                    && c["reason"] == "Unschedulable"
            })
        })
    });
    let before = s.get_json(&["pod", "web"]);
    let patch = r#"{"metadata": {"labels": {"app": "other"}},
        "spec": {"activeDeadlineSeconds": 5, "containers": [{"name": "c", "image": "busybox:2"}]},
        "status": {"conditions": [{"type": "example.com/gate", "status": "True"}]}}"#;
    s.ok(&[
        "patch",
        "pod",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        patch,
    ]);
    let after = s.get_json(&["pod", "web"]);
    assert_eq!(
        after["spec"], before["spec"],
        "the spec is not written through status"
    );
    assert_eq!(after["metadata"]["labels"]["app"], "web");
    assert_eq!(
        after["metadata"]["generation"],
        before["metadata"]["generation"]
    );
    assert_eq!(
        after["status"]["conditions"][0]["type"], "example.com/gate",
        "{after}"
    );
    assert_eq!(after["status"]["qosClass"], "Guaranteed");

    let refused = s.fails(&[
        "patch", "pod", "web", "--subresource=status", "--type=merge", "-p",
        r#"{"status": {"podIPs": [{"ip": "10.42.0.9"}, {"ip": "bogus"}], "conditions": [{"type": "no spaces allowed", "status": "True"}]}}"#,
    ]);
    assert!(
        refused.contains(r#"The Pod "web" is invalid"#)
            && refused.contains(
                r#"status.podIPs[1]: Invalid value: "bogus": must be a valid IP address"#
            )
            && refused
                .contains(r#"metadata.conditions[0].Type: Invalid value: "no spaces allowed""#),
        "{refused}"
    );
    let raw = s.ok(&["get", "--raw", "/api/v1/namespaces/default/pods/web"]);
    let unchanged: serde_json::Value = serde_json::from_str(&raw).expect("pod json");
    assert_eq!(
        unchanged["metadata"]["resourceVersion"], after["metadata"]["resourceVersion"],
        "a refused status write stores nothing"
    );
    let out = s.kubectl(&[
        "patch",
        "pod",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"phase": "Pending", "bogusField": 1}}"#,
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let warned = String::from_utf8_lossy(&out.stderr);
    assert!(
        warned.contains(r#"unknown field "status.bogusField""#),
        "{warned}"
    );
}

#[test]
fn label_annotate_and_delete() {
    let s = Server::start();
    s.apply_yaml("create", POD);
    s.ok(&["label", "pod", "web", "env=prod"]);
    s.ok(&["annotate", "pod", "web", "note=hello"]);
    let err = s.fails(&["label", "pod", "web", "env=dev"]);
    assert!(err.contains("already has a value"), "{err}");
    s.ok(&["label", "pod", "web", "env=dev", "--overwrite"]);
    let pod = s.get_json(&["pod", "web"]);
    assert_eq!(pod["metadata"]["labels"]["env"], "dev");
    assert_eq!(pod["metadata"]["annotations"]["note"], "hello");
    s.ok(&["label", "pod", "web", "env-"]);
    assert!(s.get_json(&["pod", "web"])["metadata"]["labels"]
        .get("env")
        .is_none());
    assert!(s.ok(&["delete", "pod", "web"]).contains("deleted"));
    let err = s.fails(&["get", "pod", "web"]);
    assert!(
        err.contains("NotFound") || err.contains("not found"),
        "{err}"
    );
}

#[test]
fn scale_a_replication_controller() {
    let s = Server::start();
    s.apply_yaml("create", RC);
    s.ok(&["scale", "rc", "redis", "--replicas=5"]);
    let rc = s.get_json(&["rc", "redis"]);
    assert_eq!(rc["spec"]["replicas"], 5);
    assert_eq!(rc["metadata"]["generation"], 2);
    let scale = s.ok(&[
        "get",
        "--raw",
        "/api/v1/namespaces/default/replicationcontrollers/redis/scale",
    ]);
    let scale: serde_json::Value = serde_json::from_str(&scale).unwrap();
    assert_eq!(scale["kind"], "Scale");
    assert_eq!(scale["spec"]["replicas"], 5);
    assert_eq!(scale["status"]["selector"], "name=redis");
}

#[test]
fn watch_streams_changes() {
    let s = Server::start();
    // A pod that exists before the watch starts: kubectl lists it first, so once it
    // shows, the watch runs from the listed version and sees every later change.
    s.apply_yaml("create", &POD.replace("name: web", "name: before-watch"));
    let mut child = Command::new("kubectl")
        .args(["get", "pods", "-w", "--output-watch-events"])
        .env("KUBECONFIG", s.kubeconfig())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let out = child.stdout.take().unwrap();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(out).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = std::time::Instant::now() + support::server::DEADLINE;
    let mut seen: Vec<String> = Vec::new();
    let next_line = |seen: &mut Vec<String>, waiting_for: &str| {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) => seen.push(line),
            Err(_) => panic!("watch did not report {waiting_for}; saw {seen:?}"),
        }
    };
    while !seen.iter().any(|l| l.contains("before-watch")) {
        next_line(&mut seen, "the pod listed before it started");
    }
    s.apply_yaml("create", POD);
    s.ok(&["label", "pod", "web", "x=y"]);
    s.ok(&["delete", "pod", "web"]);
    while !seen
        .iter()
        .any(|l| l.starts_with("DELETED") && l.contains("web"))
    {
        next_line(&mut seen, "the deletion of web");
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        seen.iter()
            .any(|l| l.starts_with("ADDED") && l.contains("web ")),
        "{seen:?}"
    );
    assert!(
        seen.iter()
            .any(|l| l.starts_with("MODIFIED") && l.contains("web ")),
        "{seen:?}"
    );
}

#[test]
fn deleting_a_namespace_removes_its_objects() {
    let s = Server::start();
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: team\n",
    );
    let out = s.kubectl_stdin(&["-n", "team", "create", "-f", "-"], POD);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: cfg\n  namespace: team\ndata: {a: b}\n",
    );
    wait_for("default service account in team", || {
        s.kubectl(&["-n", "team", "get", "sa", "default"])
            .status
            .success()
    });
    s.ok(&[
        "delete",
        "namespace",
        "team",
        "--wait=true",
        "--timeout=15s",
    ]);
    wait_for("namespace team to disappear", || {
        !s.kubectl(&["get", "ns", "team"]).status.success()
    });
    assert!(stdout(&s.kubectl(&["get", "cm", "-n", "team", "-o", "name"])).is_empty());
    let err = s.fails(&["delete", "namespace", "default"]);
    assert!(err.contains("may not be deleted"), "{err}");
}

#[test]
fn services_get_cluster_ips_and_node_ports_without_clashes() {
    let s = Server::start();
    s.apply_yaml(
        "apply",
        r#"
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  type: NodePort
  selector: {name: front}
  ports: [{port: 80, nodePort: 30080}]
"#,
    );
    let svc = s.get_json(&["svc", "front"]);
    let ip = svc["spec"]["clusterIP"].as_str().unwrap();
    assert!(ip.starts_with("10.43."), "{ip}");
    assert_eq!(svc["spec"]["ports"][0]["nodePort"], 30080);
    assert_eq!(svc["spec"]["ports"][0]["targetPort"], 80);
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        r#"
apiVersion: v1
kind: Service
metadata: {name: clash}
spec:
  type: NodePort
  ports: [{port: 80, nodePort: 30080}]
"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("provided port is already allocated"), "{err}");
    assert!(!s.kubectl(&["get", "svc", "clash"]).status.success());
    // Re-applying is a no-op: same IP, no new resourceVersion.
    let rv = svc["metadata"]["resourceVersion"].clone();
    s.apply_yaml(
        "apply",
        r#"
apiVersion: v1
kind: Service
metadata: {name: front}
spec:
  type: NodePort
  selector: {name: front}
  ports: [{port: 80, nodePort: 30080}]
"#,
    );
    let again = s.get_json(&["svc", "front"]);
    assert_eq!(again["metadata"]["resourceVersion"], rv);
    assert_eq!(again["spec"]["clusterIP"], ip);
}

#[test]
fn datastore_and_keys_are_private() {
    use std::os::unix::fs::PermissionsExt;
    let s = Server::start();
    let mode = |p: std::path::PathBuf| std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(s.data_dir().join("server")), 0o700);
    assert_eq!(mode(s.data_dir().join("server/db/state.db")), 0o600);
    assert_eq!(mode(s.data_dir().join("server/tls/ca.key")), 0o600);
    assert_eq!(mode(s.data_dir().join("server/token")), 0o600);
}

#[test]
fn delete_honours_grace_period_and_force() {
    let s = Server::start();
    // The node exists, so pod GC leaves the terminating pod alone.
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: node-x\n",
    );
    s.apply_yaml(
        "create",
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: bound\nspec:\n  nodeName: node-x\n  containers:\n  - name: c\n    image: busybox\n",
    );
    s.ok(&["delete", "pod", "bound", "--grace-period=5", "--wait=false"]);
    let pod = s.get_json(&["pod", "bound"]);
    assert_eq!(pod["metadata"]["deletionGracePeriodSeconds"], 5, "{pod}");
    s.ok(&["delete", "pod", "bound", "--grace-period=0", "--force"]);
    assert!(!s.kubectl(&["get", "pod", "bound"]).status.success());
}

/// kubectl before 1.27 validates and explains with OpenAPI v2 only; Debian's
/// kubernetes-client (v1.20) is unpacked here by `scripts/install-kubectl-1.20.sh`
/// (`ORC_KUBECTL_1_20` names another binary).
const KUBECTL_1_20: &str = "/opt/orc-test/kubectl-1.20/kubectl";

const HELLO: &str = r#"
apiVersion: apps/v1
kind: Deployment
metadata: {name: hello, labels: {app: hello}}
spec:
  replicas: 2
  selector: {matchLabels: {app: hello}}
  template:
    metadata: {labels: {app: hello}}
    spec:
      containers:
      - name: web
        image: busybox:1.36
        ports: [{name: http, containerPort: 8080}]
        readinessProbe: {tcpSocket: {port: http}, periodSeconds: 2}
        resources: {requests: {cpu: 10m, memory: 8Mi}, limits: {memory: 32Mi}}
---
apiVersion: v1
kind: Service
metadata: {name: hello}
spec:
  selector: {app: hello}
  ports: [{name: http, port: 80, targetPort: http}]
"#;

const V2_PROTOBUF: &str = "application/com.github.proto-openapi.spec.v2@v1.0+protobuf";

#[tokio::test]
async fn openapi_v2_is_served_as_json_and_protobuf() {
    let s = Server::start();
    let c = s.client(true);
    let url = format!("{}/openapi/v2", s.url());
    let resp = c.get(&url).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/json");
    let etag = resp.headers()["etag"].to_str().unwrap().to_string();
    let json: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(json["swagger"], "2.0");
    let deployment = &json["definitions"]["io.k8s.api.apps.v1.Deployment"];
    assert_eq!(
        deployment["x-kubernetes-group-version-kind"][0]["kind"],
        "Deployment"
    );
    assert_eq!(
        deployment["properties"]["spec"]["$ref"],
        "#/definitions/io.k8s.api.apps.v1.DeploymentSpec"
    );
    let create = &json["paths"]["/api/v1/namespaces/{namespace}/pods"]["post"];
    assert_eq!(create["operationId"], "createCoreV1NamespacedPod");
    assert_eq!(create["parameters"][0]["in"], "body");

    let resp = c
        .get(&url)
        .header("Accept", V2_PROTOBUF)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()["content-type"],
        "application/com.github.proto-openapi.spec.v2.v1.0+protobuf"
    );
    assert_eq!(resp.headers()["vary"], "Accept, Accept-Encoding");
    assert_ne!(resp.headers()["etag"].to_str().unwrap(), etag);
    let protobuf = resp.bytes().await.unwrap();
    // The protobuf form is the served JSON, encoded.
    let encoded = orc::apiserver::openapi::v2::to_protobuf(&json).unwrap();
    assert!(
        protobuf[..] == encoded[..],
        "protobuf is not the JSON encoded"
    );

    // Kept compressed: clients that accept gzip (kubectl) get it as it is.
    let resp = c
        .get(&url)
        .header("Accept-Encoding", "gzip")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-encoding"], "gzip");
    assert_eq!(resp.headers()["etag"].to_str().unwrap(), etag);
    let gzipped = resp.bytes().await.unwrap();
    let mut unzipped = Vec::new();
    std::io::Read::read_to_end(
        &mut flate2::read::GzDecoder::new(&gzipped[..]),
        &mut unzipped,
    )
    .unwrap();
    assert_eq!(
        serde_json::from_slice::<serde_json::Value>(&unzipped).unwrap(),
        json
    );

    let cached = c.get(&url).header("If-None-Match", &etag).send().await;
    assert_eq!(cached.unwrap().status(), 304);
    let yaml = c
        .get(&url)
        .header("Accept", "application/yaml")
        .send()
        .await;
    assert_eq!(yaml.unwrap().status(), 406);
}

fn old_kubectl(s: &Server, args: &[&str], stdin: Option<&str>) -> std::process::Output {
    let bin = std::env::var("ORC_KUBECTL_1_20").unwrap_or_else(|_| KUBECTL_1_20.to_string());
    assert!(
        std::path::Path::new(&bin).exists(),
        "{bin} is missing: run scripts/install-kubectl-1.20.sh (or set ORC_KUBECTL_1_20)"
    );
    let mut child = Command::new(&bin)
        .args(args)
        .env("KUBECONFIG", s.kubeconfig())
        .env_remove("KUBERNETES_SERVICE_HOST")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run kubectl 1.20");
    let mut input = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, stdin.unwrap_or_default().as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().expect("kubectl 1.20 output")
}

#[test]
fn kubectl_1_20_validates_applies_and_explains_with_openapi_v2() {
    let s = Server::start();
    let out = old_kubectl(&s, &["apply", "-f", "-"], Some(HELLO));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    let applied = stdout(&out);
    assert!(
        applied.contains("deployment.apps/hello created")
            && applied.contains("service/hello created"),
        "{applied}"
    );
    assert_eq!(s.get_json(&["deploy", "hello"])["spec"]["replicas"], 2);

    let typo = HELLO.replacen("replicas: 2", "replicaz: 2", 1);
    let out = old_kubectl(&s, &["apply", "-f", "-"], Some(&typo));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains(
            "error validating data: ValidationError(Deployment.spec): unknown field \"replicaz\" in io.k8s.api.apps.v1.DeploymentSpec"
        ),
        "{stderr}"
    );
    let wrong_type = HELLO.replacen("replicas: 2", "replicas: two", 1);
    let out = old_kubectl(&s, &["apply", "-f", "-"], Some(&wrong_type));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("ValidationError(Deployment.spec.replicas): invalid type"),
        "{stderr}"
    );

    let out = old_kubectl(&s, &["explain", "deployment.spec.replicas"], None);
    let explain = stdout(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        explain.contains("KIND:     Deployment") && explain.contains("replicas <integer>"),
        "{explain}"
    );
    let out = old_kubectl(&s, &["explain", "pods.spec.containers.ports"], None);
    assert!(stdout(&out).contains("containerPort"), "{}", stdout(&out));
}

#[test]
fn endpoint_slices_list_selected_pods_and_mirror_hand_made_endpoints() {
    let s = Server::start();
    // The API server's own Service is mirrored from its Endpoints.
    support::wait::wait_until(
        support::server::DEADLINE,
        "a slice of the kubernetes Service",
        || {
            let out = s.ok(&["get", "endpointslices", "-A"]);
            if out.contains("kubernetes") {
                Ok(())
            } else {
                Err(out)
            }
        },
    );
    s.apply_yaml(
        "apply",
        r#"
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  nodeName: nowhere
  containers:
  - name: c
    image: busybox:1.36
    ports: [{name: http, containerPort: 8080}]
---
apiVersion: v1
kind: Service
metadata: {name: db}
spec:
  ports: [{port: 5432}]
---
apiVersion: v1
kind: Endpoints
metadata: {name: db}
subsets:
- addresses: [{ip: 192.168.1.10}]
  notReadyAddresses: [{ip: 192.168.1.11}]
  ports: [{port: 5432}]
"#,
    );
    // Before any pod has an address the Service has an empty placeholder slice, as
    // upstream: listed with its ports and endpoints unset.
    wait_for(
        "the placeholder slice of a Service without endpoints",
        || {
            let table = s.ok(&[
                "get",
                "endpointslices",
                "-l",
                "kubernetes.io/service-name=web",
                "--no-headers",
            ]);
            let row: Vec<&str> = table.split_whitespace().collect();
            row.len() == 5 && row[1..4] == ["IPv4", "<unset>", "<unset>"]
        },
    );
    // The pod gets an address and turns ready, as its node would report.
    s.ok(&[
        "patch",
        "pod",
        "web",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status": {"phase": "Running", "podIP": "10.42.0.9", "podIPs": [{"ip": "10.42.0.9"}],
               "conditions": [{"type": "Ready", "status": "True"}]}}"#,
    ]);
    wait_for("the pod in its Service's slice", || {
        s.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
        ])
        .contains("10.42.0.9")
    });
    let table = s.ok(&[
        "get",
        "endpointslices",
        "-l",
        "kubernetes.io/service-name=web",
    ]);
    let header: Vec<&str> = table.lines().next().unwrap().split_whitespace().collect();
    assert_eq!(
        header,
        ["NAME", "ADDRESSTYPE", "PORTS", "ENDPOINTS", "AGE"],
        "{table}"
    );
    let row: Vec<&str> = table.lines().nth(1).unwrap().split_whitespace().collect();
    assert_eq!(&row[1..4], ["IPv4", "8080", "10.42.0.9"], "{table}");
    let list = s.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=web"]);
    let slice = &list["items"][0];
    assert_eq!(
        slice["metadata"]["labels"]["endpointslice.kubernetes.io/managed-by"],
        "endpointslice-controller.k8s.io"
    );
    assert_eq!(slice["metadata"]["ownerReferences"][0]["name"], "web");
    let endpoint = &slice["endpoints"][0];
    assert_eq!(endpoint["conditions"]["ready"], true);
    assert_eq!(endpoint["nodeName"], "nowhere");
    assert_eq!(endpoint["targetRef"]["name"], "web");
    assert_eq!(slice["ports"][0]["name"], "http");

    wait_for("the hand-made Endpoints mirrored", || {
        s.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=db",
        ])
        .contains("192.168.1.10,192.168.1.11")
    });
    let mirrored = s.get_json(&["endpointslices", "-l", "kubernetes.io/service-name=db"]);
    let endpoints = &mirrored["items"][0]["endpoints"];
    assert_eq!(endpoints[0]["conditions"]["ready"], true);
    assert_eq!(endpoints[1]["conditions"]["ready"], false);

    // Deleting the Service takes its slices.
    s.ok(&["delete", "svc", "web"]);
    wait_for("the slices of a deleted Service gone", || {
        s.ok(&[
            "get",
            "endpointslices",
            "-l",
            "kubernetes.io/service-name=web",
            "-o",
            "name",
        ])
        .trim()
        .is_empty()
    });

    // A bad slice is refused with the field named, and nothing is stored.
    let out = s.kubectl_stdin(
        &["create", "-f", "-"],
        r#"
apiVersion: discovery.k8s.io/v1
kind: EndpointSlice
metadata: {name: bad}
addressType: IPv4
endpoints: [{addresses: [fd00::1]}]
"#,
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("endpoints[0].addresses[0]") && err.contains("must be a valid IPv4 address"),
        "{err}"
    );
    assert!(!s.kubectl(&["get", "endpointslice", "bad"]).status.success());
}

#[test]
fn autoscaler_metric_targets_written_as_numbers_are_quantities() {
    // `averageValue: 1000` as a YAML number, as upstream's own walkthrough writes
    // custom-metric targets: read as the quantity 1000, stored in its canonical
    // spelling "1k" as upstream's does, on either kind of apply.
    let s = Server::start();
    let hpa = "apiVersion: autoscaling/v2\nkind: HorizontalPodAutoscaler\nmetadata: {name: h, namespace: default}\nspec:\n  scaleTargetRef: {apiVersion: apps/v1, kind: Deployment, name: web}\n  minReplicas: 1\n  maxReplicas: 5\n  metrics:\n  - type: Pods\n    pods:\n      metric: {name: packets-per-second}\n      target: {type: AverageValue, averageValue: 1000}\n  - type: Object\n    object:\n      metric: {name: requests-per-second}\n      describedObject: {apiVersion: networking.k8s.io/v1, kind: Ingress, name: main-route}\n      target: {type: Value, value: 10}\n";
    s.apply_yaml("apply", hpa);
    let got = s.get_json(&["hpa", "h"]);
    assert_eq!(
        got["spec"]["metrics"][0]["pods"]["target"]["averageValue"],
        "1k"
    );
    assert_eq!(got["spec"]["metrics"][1]["object"]["target"]["value"], "10");
    let out = s.kubectl_stdin(&["apply", "--server-side", "-f", "-"], hpa);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
