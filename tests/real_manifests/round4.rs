//! Round four of real projects (trivy-operator, Traefik's CRDs, Volcano, NGINX Gateway
//! Fabric, the Keycloak operator, Velero's CRDs, Rook), installed the way each documents
//! it, with their example custom resources.

use super::*;

/// Longest new CRDs may take to reach discovery after the apply that created them
/// returned (upstream's establishing controller takes milliseconds).
const DISCOVERED: Duration = Duration::from_secs(2);

/// The header of `kubectl get ARGS`: its column names.
fn header(s: &Server, args: &[&str]) -> Vec<String> {
    let get: Vec<&str> = ["get"].iter().chain(args).copied().collect();
    s.ok(&get)
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn trivy_operator_installs_and_serves_its_reports_with_their_columns() {
    let s = Server::start();
    let file = manifest(&s, "trivy-operator");
    // As against any Kubernetes: two Secrets say `data: null`, and the operator's
    // empty env values and `readOnly: false` are left out as Go's omitempty does
    // (kubectl sends them again).
    apply_twice(
        &s,
        &file,
        30,
        &[
            "secret/trivy-operator",
            "secret/trivy-operator-trivy-config",
            "deployment.apps/trivy-operator",
        ],
    );
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    deployments_have_pods(&s, "trivy-system");
    // A report as the operator writes it, listed with the CRD's columns (the counts
    // are priority 1: `-o wide`).
    s.apply_yaml(
        "apply",
        "apiVersion: aquasecurity.github.io/v1alpha1\nkind: VulnerabilityReport\nmetadata: {name: replicaset-nginx-6d4cf56db6-nginx, namespace: default}\nreport:\n  artifact: {repository: library/nginx, tag: \"1.16\"}\n  os: {family: debian, name: \"10.3\"}\n  registry: {server: index.docker.io}\n  scanner: {name: Trivy, vendor: Aqua Security, version: 0.50.0}\n  summary: {criticalCount: 2, highCount: 10, lowCount: 5, mediumCount: 3, unknownCount: 0}\n  updateTimestamp: \"2024-01-01T00:00:00Z\"\n  vulnerabilities: []\n",
    );
    assert_eq!(
        header(&s, &["vulns", "-n", "default", "-o", "wide"]),
        [
            "NAME",
            "REPOSITORY",
            "TAG",
            "SCANNER",
            "AGE",
            "CRITICAL",
            "HIGH",
            "MEDIUM",
            "LOW",
            "UNKNOWN"
        ]
    );
    let err = refused(
        &s,
        "apiVersion: aquasecurity.github.io/v1alpha1\nkind: VulnerabilityReport\nmetadata: {name: bad, namespace: default}\nreport:\n  artifact: {repository: library/nginx}\n  os: {family: debian}\n  scanner: {name: Trivy, vendor: Aqua Security, version: 0.50.0}\n  summary: {highCount: 10, lowCount: 5, mediumCount: 3, unknownCount: 0}\n  updateTimestamp: \"2024-01-01T00:00:00Z\"\n  vulnerabilities: []\n",
    );
    assert!(
        err.contains(
            "The VulnerabilityReport \"bad\" is invalid: report.summary.criticalCount: Required value"
        ),
        "{err}"
    );
    s.ok(&["delete", "vulns", "-n", "default", "--all"]);
    delete_all(&s, &file, &["trivy-system"]);
    crds_gone(&s, "aquasecurity.github.io");
}

#[test]
fn traefik_crds_take_the_documented_resources_but_an_outdated_transport() {
    let s = Server::start();
    let crds = manifest(&s, "traefik-crds");
    let rbac = manifest(&s, "traefik-rbac");
    let args = ["-f", crds.as_str(), "-f", rbac.as_str()];
    apply_twice_with(&s, &args, 12, &[]);
    server_side_twice(&s, &args);
    diff_is_empty_with(&s, &args);
    // The reference page's resources: all are served but its ServersTransportTCP,
    // whose TLS fields moved under `spec.tls` in v3: refused by kubectl's strict field
    // validation with upstream's words.
    let resources = manifest(&s, "traefik-crd-resource");
    let out = s.kubectl(&["apply", "-f", &resources]);
    assert!(!out.status.success());
    assert_eq!(
        stdout(&out)
            .lines()
            .filter(|l| l.ends_with(" created"))
            .count(),
        9,
        "{}",
        stdout(&out)
    );
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("ServersTransportTCP in version \"v1alpha1\" cannot be handled as a ServersTransportTCP: strict decoding error: unknown field \"spec.certificatesSecrets\", unknown field \"spec.insecureSkipVerify\", unknown field \"spec.peerCertURI\", unknown field \"spec.rootCAsSecrets\", unknown field \"spec.serverName\""),
        "{err}"
    );
    let route = s.get_json(&["ingressroute", "ingressroute", "-n", "default"]);
    assert_eq!(route["spec"]["entryPoints"][0], "web");
    // A rule of the CRDs: a root CA from a Secret or a ConfigMap, not both.
    let err = refused(
        &s,
        "apiVersion: traefik.io/v1alpha1\nkind: ServersTransport\nmetadata: {name: both, namespace: default}\nspec:\n  rootCAs:\n  - {secret: ca, configMap: ca}\n",
    );
    assert!(
        err.contains("spec.rootCAs[0]: Invalid value: \"object\": RootCA cannot have both Secret and ConfigMap defined."),
        "{err}"
    );
    let out = s.kubectl(&[
        "delete",
        "--ignore-not-found",
        "--wait=false",
        "-f",
        &resources,
    ]);
    assert!(out.status.success(), "{out:?}");
    delete_all_with(&s, &args, &[]);
    crds_gone(&s, "traefik.io");
}

#[test]
fn volcano_installs_and_its_webhooks_refuse_jobs_until_they_answer() {
    let s = Server::start();
    let file = manifest(&s, "volcano-development");
    // One of its webhooks' rules leaves `scope` out: the live rule has the default
    // `*`, the atomic list differs, kubectl patches it again (as against any Kubernetes).
    apply_twice(
        &s,
        &file,
        43,
        &["validatingwebhookconfiguration.admissionregistration.k8s.io/volcano-admission-service-hypernodes-validate"],
    );
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    deployments_have_pods(&s, "volcano-system");
    let queue = "apiVersion: scheduling.volcano.sh/v1beta1\nkind: Queue\nmetadata:\n  name: root-eng-prod\n  annotations: {volcano.sh/hierarchy: root/eng/prod, volcano.sh/hierarchy-weights: 1/2/8}\nspec:\n  weight: 1\n";
    // No admission pod answers (failurePolicy Fail): refused with the message upstream's
    // endpoint resolver gives.
    let err = refused(&s, queue);
    assert!(
        err.contains("Internal error occurred: failed calling webhook \"mutatequeue.volcano.sh\": failed to call webhook: Post \"https://volcano-admission-service.volcano-system.svc:443/queues/mutate?timeout=10s\": no endpoints available for service \"volcano-admission-service\""),
        "{err}"
    );
    for kind in [
        "mutatingwebhookconfiguration",
        "validatingwebhookconfiguration",
    ] {
        s.ok(&["delete", kind, "--all"]);
    }
    // The project's examples: a hierarchical queue, then `example/job.yaml`.
    s.apply_yaml("apply", queue);
    s.apply_yaml(
        "apply",
        "apiVersion: batch.volcano.sh/v1alpha1\nkind: Job\nmetadata: {name: test-job, namespace: default}\nspec:\n  minAvailable: 3\n  schedulerName: volcano\n  priorityClassName: high-priority\n  policies:\n  - {event: PodEvicted, action: RestartJob}\n  plugins: {ssh: [], env: [], svc: []}\n  maxRetry: 5\n  queue: default\n  volumes:\n  - mountPath: /var/lib/mysql\n    volumeClaim:\n      accessModes: [ReadWriteOnce]\n      storageClassName: my-storage-class\n      resources: {requests: {storage: 1Gi}}\n  tasks:\n  - replicas: 6\n    name: default-nginx\n    template:\n      metadata: {name: web}\n      spec:\n        containers:\n        - image: nginx\n          imagePullPolicy: IfNotPresent\n          name: nginx\n          resources: {requests: {cpu: '1'}}\n        restartPolicy: OnFailure\n",
    );
    assert_eq!(
        header(&s, &["vcjob", "-n", "default", "-o", "wide"]),
        ["NAME", "STATUS", "MINAVAILABLE", "RUNNINGS", "AGE", "QUEUE"]
    );
    assert_eq!(header(&s, &["queues"]), ["NAME", "PARENT"]);
    s.ok(&["delete", "vcjob", "-n", "default", "test-job"]);
    s.ok(&["delete", "queue", "root-eng-prod"]);
    delete_all(&s, &file, &["volcano-system", "volcano-monitoring"]);
    crds_gone(&s, "volcano.sh");
}

#[test]
fn nginx_gateway_fabric_installs_right_after_its_crds() {
    let s = Server::start();
    let gateway_api = manifest(&s, "gateway-api-v1.6.1-standard-install");
    let crds = manifest(&s, "nginx-gateway-fabric-crds");
    let deploy = manifest(&s, "nginx-gateway-fabric");
    // Its install guide: the Gateway API, its CRDs, then at once its deployment, whose
    // NginxProxy needs them: every CRD is in discovery moments after kubectl returns,
    // before the next kubectl has started (they took seconds, one pass per event).
    s.ok(&["apply", "--server-side", "-f", &gateway_api]);
    s.ok(&["apply", "--server-side", "-f", &crds]);
    wait_until(
        DISCOVERED,
        "NGINX Gateway Fabric's CRDs in discovery",
        || {
            let served = s.ok(&[
                "api-resources",
                "--api-group=gateway.nginx.org",
                "-o",
                "name",
            ]);
            (served.lines().count() == 11).then_some(())
        },
    );
    // The cert-generator Job's template says `annotations: null` (kubectl sends it).
    apply_twice(&s, &deploy, 13, &["job.batch/nginx-gateway-cert-generator"]);
    server_side_twice(&s, &["-f", &crds, "-f", &deploy]);
    diff_is_empty_with(&s, &["-f", &crds, "-f", &deploy]);
    deployments_have_pods(&s, "nginx-gateway");
    // Its GatewayClass, and the cafe example's Gateway, read with the schema's status
    // defaults until a controller answers: `Unknown`, as upstream shows them.
    let class = s.get_json(&["gatewayclass", "nginx"]);
    assert_eq!(class["status"]["conditions"][0]["reason"], "Pending");
    let table = s.ok(&["get", "gatewayclass", "nginx"]);
    assert!(
        table
            .lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().nth(2).is_some_and(|c| c == "Unknown")),
        "{table}"
    );
    s.apply_yaml(
        "apply",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: gateway, namespace: default}\nspec:\n  gatewayClassName: nginx\n  listeners:\n  - {name: http, port: 80, protocol: HTTP, hostname: \"*.example.com\"}\n",
    );
    let gateway = s.get_json(&["gateway", "gateway", "-n", "default"]);
    let conditions: Vec<(&str, &str)> = gateway["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|c| {
            (
                c["type"].as_str().unwrap_or(""),
                c["status"].as_str().unwrap_or(""),
            )
        })
        .collect();
    assert_eq!(
        conditions,
        [("Accepted", "Unknown"), ("Programmed", "Unknown")]
    );
    // Its NginxProxy's schema: the error log level is one of nginx's.
    let err = refused(
        &s,
        "apiVersion: gateway.nginx.org/v1alpha2\nkind: NginxProxy\nmetadata: {name: bad, namespace: default}\nspec:\n  logging: {errorLevel: loud}\n",
    );
    assert!(
        err.contains("spec.logging.errorLevel: Unsupported value: \"loud\""),
        "{err}"
    );
    s.ok(&["delete", "gateway", "-n", "default", "gateway"]);
    delete_all(&s, &deploy, &["nginx-gateway"]);
    delete_all(&s, &crds, &[]);
    crds_gone(&s, "gateway.nginx.org");
}

#[test]
fn keycloak_operator_and_velero_crds_serve_their_documented_resources() {
    let s = Server::start();
    // Keycloak's guide: both CRDs, then `kubectl -n keycloak apply -f kubernetes.yml`.
    let keycloak = manifest(&s, "keycloak-operator");
    s.ok(&["create", "namespace", "keycloak"]);
    let args = ["-n", "keycloak", "-f", keycloak.as_str()];
    apply_twice_with(&s, &args, 14, &[]);
    server_side_twice(&s, &args);
    diff_is_empty_with(&s, &args);
    deployments_have_pods(&s, "keycloak");
    let example = "apiVersion: k8s.keycloak.org/v2alpha1\nkind: Keycloak\nmetadata: {name: example-kc, namespace: keycloak}\nspec:\n  instances: 1\n  db:\n    vendor: postgres\n    host: postgres-db\n    usernameSecret: {name: keycloak-db-secret, key: username}\n    passwordSecret: {name: keycloak-db-secret, key: password}\n  http: {tlsSecret: example-tls-secret}\n  hostname: {hostname: test.keycloak.org}\n  proxy: {headers: xforwarded}\n---\napiVersion: k8s.keycloak.org/v2alpha1\nkind: KeycloakRealmImport\nmetadata: {name: my-realm-kc, namespace: keycloak}\nspec:\n  keycloakCRName: example-kc\n  realm: {id: example-realm, realm: example-realm, displayName: ExampleRealm, enabled: true}\n";
    s.apply_yaml("apply", example);
    let again = s.apply_yaml("apply", example);
    assert!(lines_not(&again, "unchanged").is_empty(), "{again}");
    let err = refused(
        &s,
        "apiVersion: k8s.keycloak.org/v2alpha1\nkind: Keycloak\nmetadata: {name: bad, namespace: keycloak}\nspec:\n  instances: two\n  db: {vendor: 5}\n",
    );
    for message in [
        "spec.db.vendor: Invalid value: \"integer\": spec.db.vendor in body must be of type string: \"integer\"",
        "spec.instances: Invalid value: \"string\": spec.instances in body must be of type integer: \"string\"",
    ] {
        assert!(err.contains(message), "{message}: {err}");
    }
    s.ok(&[
        "delete",
        "keycloak,keycloakrealmimport",
        "-n",
        "keycloak",
        "--all",
    ]);
    delete_all_with(&s, &args, &[]);
    s.ok(&["delete", "namespace", "keycloak"]);
    crds_gone(&s, "k8s.keycloak.org");

    // Velero's CRDs (what `velero install` creates first), and a documented Schedule.
    let velero = manifest(&s, "velero-crds");
    apply_twice(&s, &velero, 13, &[]);
    server_side_twice(&s, &["-f", &velero]);
    diff_is_empty(&s, &velero);
    s.ok(&["create", "namespace", "velero"]);
    s.apply_yaml(
        "apply",
        "apiVersion: velero.io/v1\nkind: Schedule\nmetadata: {name: daily, namespace: velero}\nspec:\n  schedule: 0 7 * * *\n  template:\n    includedNamespaces: ['*']\n    ttl: 720h0m0s\n",
    );
    assert_eq!(
        header(&s, &["schedules.velero.io", "-n", "velero"]),
        ["NAME", "STATUS", "SCHEDULE", "LASTBACKUP", "AGE", "PAUSED"]
    );
    s.ok(&["delete", "namespace", "velero"]);
    delete_all(&s, &velero, &["velero"]);
    crds_gone(&s, "velero.io");
}

#[test]
fn rook_creates_its_operator_and_a_test_cluster_the_quickstart_way() {
    let s = Server::start();
    let files: Vec<String> = [
        "rook-crds",
        "rook-common",
        "rook-csi-operator",
        "rook-operator",
    ]
    .iter()
    .map(|name| manifest(&s, name))
    .collect();
    let args: Vec<&str> = files.iter().flat_map(|f| ["-f", f.as_str()]).collect();
    // The quickstart's `kubectl create` of the four files, in two steps: the last file
    // creates kinds (ceph-csi's OperatorConfig, Drivers) of CRDs the third one does,
    // which kubectl maps with the discovery it read when it started (upstream's too:
    // `ensure CRDs are installed first` in one command, against a fresh cache).
    let create: Vec<&str> = ["create"].iter().chain(&args[..6]).copied().collect();
    let out = s.ok(&create);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        117,
        "{out}"
    );
    let out = s.ok(&["create", "-f", &files[3]]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        6,
        "{out}"
    );
    server_side_twice(&s, &args);
    diff_is_empty_with(&s, &args);
    deployments_have_pods(&s, "rook-ceph");
    // Its `cluster-test.yaml`, listed with the CRD's columns.
    let cluster = manifest(&s, "rook-cluster-test");
    s.ok(&["create", "-f", &cluster]);
    assert_eq!(
        header(&s, &["cephclusters", "-n", "rook-ceph"]),
        [
            "NAME",
            "DATADIRHOSTPATH",
            "MONCOUNT",
            "AGE",
            "PHASE",
            "MESSAGE",
            "HEALTH",
            "EXTERNAL",
            "FSID"
        ]
    );
    let pool = s.get_json(&["cephblockpool", "-n", "rook-ceph", "builtin-mgr"]);
    assert_eq!(pool["spec"]["name"], ".mgr");
    delete_all(&s, &cluster, &[]);
    delete_all_with(&s, &args, &["rook-ceph"]);
    crds_gone(&s, "ceph.rook.io");
}
