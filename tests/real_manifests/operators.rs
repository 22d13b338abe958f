//! Operators with large CustomResourceDefinitions (CloudNativePG, Strimzi, the
//! OpenTelemetry operator, Kyverno, Tekton Pipelines, Knative Serving, Calico's
//! operator), installed the way each project documents it, with their example custom
//! resources.

use super::*;

/// `kubectl get` of `what` in `ns`: the header line's columns.
fn columns(s: &Server, what: &str, ns: &str) -> Vec<String> {
    s.ok(&["get", what, "-n", ns])
        .lines()
        .next()
        .unwrap_or("")
        .split("  ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .map(str::to_string)
        .collect()
}

/// The errors of a client-side `kubectl apply` of CRDs whose last-applied annotation
/// would be too big: exactly `crds`, each refused with upstream 1.32's message.
fn annotation_too_long(stderr: &str, crds: &[&str]) {
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("is invalid"))
        .collect();
    assert_eq!(errors.len(), crds.len(), "{stderr}");
    for crd in crds {
        assert!(
            stderr.contains(&format!(
                "CustomResourceDefinition \"{crd}\" is invalid: metadata.annotations: Too long: may not be more than 262144 bytes"
            )),
            "{crd}: {stderr}"
        );
    }
}

#[test]
fn cloudnative_pg_installs_server_side_and_checks_its_clusters() {
    let s = Server::start();
    let file = manifest(&s, "cloudnative-pg");
    // The documented install is server-side.
    let out = s.ok(&["apply", "--server-side", "-f", &file]);
    assert_eq!(out.lines().count(), 26, "{out}");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    // Two of its CRDs are too big for client-side apply's annotation: refused as
    // upstream 1.32 refuses them.
    let out = s.kubectl(&["apply", "-f", &file]);
    assert!(!out.status.success());
    annotation_too_long(
        &String::from_utf8_lossy(&out.stderr),
        &["clusters.postgresql.cnpg.io", "poolers.postgresql.cnpg.io"],
    );
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/clusters.postgresql.cnpg.io",
        "crd/poolers.postgresql.cnpg.io",
        "--timeout=20s",
    ]);
    deployments_have_pods(&s, "cnpg-system");
    let example = "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: {name: cluster-example, namespace: default}\nspec:\n  instances: 3\n  storage: {size: 1Gi}\n";
    // Its webhooks (failurePolicy Fail) refuse clusters while no operator pod
    // answers, as upstream.
    let err = refused(&s, example);
    assert!(err.contains("mcluster.cnpg.io"), "{err}");
    s.ok(&[
        "delete",
        "mutatingwebhookconfiguration",
        "cnpg-mutating-webhook-configuration",
    ]);
    s.ok(&[
        "delete",
        "validatingwebhookconfiguration",
        "cnpg-validating-webhook-configuration",
    ]);
    // The documented `cluster-example.yaml`: the schema's defaults are filled in, and
    // the CRD's printer columns are served.
    s.apply_yaml("apply", example);
    let cluster = s.get_json(&["cluster", "-n", "default", "cluster-example"]);
    assert_eq!(cluster["spec"]["logLevel"], "info");
    assert_eq!(cluster["spec"]["enablePDB"], true);
    assert_eq!(cluster["spec"]["primaryUpdateStrategy"], "unsupervised");
    assert_eq!(cluster["spec"]["storage"]["resizeInUseVolumes"], true);
    assert_eq!(
        columns(&s, "clusters.postgresql.cnpg.io", "default"),
        ["NAME", "AGE", "INSTANCES", "READY", "STATUS", "PRIMARY"]
    );
    let explain = s.ok(&["explain", "cluster.spec.instances"]);
    assert!(
        explain.contains("FIELD: instances <integer>")
            && explain.contains("Number of instances required in the cluster"),
        "{explain}"
    );
    // Invalid clusters are refused with the schema's and the rules' messages.
    let err = refused(
        &s,
        "apiVersion: postgresql.cnpg.io/v1\nkind: Cluster\nmetadata: {name: bad, namespace: default}\nspec:\n  instances: 0\n  imageName: ghcr.io/cloudnative-pg/postgresql:17\n  imageCatalogRef: {apiGroup: postgresql.cnpg.io, kind: Secret, name: x, major: 17}\n  bootstrap:\n    initdb: {icuLocale: en, localeProvider: libc}\n  storage: {size: 1Gi}\n",
    );
    for message in [
        "spec.instances: Invalid value: 0: spec.instances in body should be greater than or equal to 1",
        "spec: Invalid value: \"object\": imageName and imageCatalogRef are mutually exclusive",
        "spec.bootstrap.initdb: Invalid value: \"object\": icuLocale is only available when localeProvider is set to `icu`",
        "spec.imageCatalogRef: Invalid value: \"object\": Only image catalogs are supported",
    ] {
        assert!(err.contains(message), "{message}: {err}");
    }
    // A transition rule: `serviceAccountName` is set once, then immutable.
    let patch = |name: &str| {
        s.kubectl(&[
            "patch",
            "cluster",
            "-n",
            "default",
            "cluster-example",
            "--type=merge",
            "-p",
            &format!("{{\"spec\":{{\"serviceAccountName\":\"{name}\"}}}}"),
        ])
    };
    assert!(patch("pg").status.success());
    let out = patch("other");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(
            "spec.serviceAccountName: Invalid value: \"string\": serviceAccountName is immutable"
        ),
        "{out:?}"
    );
    s.ok(&["delete", "cluster", "-n", "default", "cluster-example"]);
    delete_all_with(&s, &["-f", &file], &["cnpg-system"]);
    crds_gone(&s, "cnpg.io");
}

#[test]
fn strimzi_installs_into_its_namespace_the_documented_way() {
    let s = Server::start();
    let file = manifest(&s, "strimzi-cluster-operator");
    // Strimzi's deploying guide: `sed -i 's/namespace: .*/namespace: kafka/'
    // install/cluster-operator/*RoleBinding*.yaml`, then `kubectl create -f
    // install/cluster-operator -n kafka`.
    let yaml = std::fs::read_to_string(&file)
        .expect("read manifest")
        .replace("namespace: myproject", "namespace: kafka");
    std::fs::write(&file, yaml).expect("write manifest");
    s.ok(&["create", "namespace", "kafka"]);
    let out = s.ok(&["create", "-n", "kafka", "-f", &file]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        27,
        "{out}"
    );
    server_side_twice(&s, &["-n", "kafka", "-f", &file]);
    diff_is_empty_with(&s, &["-n", "kafka", "-f", &file]);
    deployments_have_pods(&s, "kafka");
    let binding = s.get_json(&["rolebinding", "-n", "kafka", "strimzi-cluster-operator"]);
    assert_eq!(binding["subjects"][0]["namespace"], "kafka");
    // Its single-node example: a KafkaNodePool and a Kafka (Strimzi 1.x's v1 API).
    s.apply_yaml(
        "apply",
        "apiVersion: kafka.strimzi.io/v1\nkind: KafkaNodePool\nmetadata:\n  name: dual-role\n  namespace: kafka\n  labels: {strimzi.io/cluster: my-cluster}\nspec:\n  replicas: 1\n  roles: [controller, broker]\n  storage:\n    type: jbod\n    volumes:\n    - {id: 0, type: persistent-claim, size: 100Gi, kraftMetadata: shared}\n---\napiVersion: kafka.strimzi.io/v1\nkind: Kafka\nmetadata: {name: my-cluster, namespace: kafka}\nspec:\n  kafka:\n    version: 4.3.1\n    metadataVersion: 4.3-IV0\n    listeners:\n    - {name: plain, port: 9092, type: internal, tls: false}\n    - {name: tls, port: 9093, type: internal, tls: true}\n    config: {offsets.topic.replication.factor: 1, default.replication.factor: 1, min.insync.replicas: 1}\n  entityOperator: {topicOperator: {}, userOperator: {}}\n",
    );
    assert_eq!(
        columns(&s, "kafka", "kafka"),
        [
            "NAME",
            "READY",
            "WARNINGS",
            "KAFKA VERSION",
            "METADATA VERSION"
        ]
    );
    // Its short name and category.
    assert!(s.ok(&["get", "k", "-n", "kafka"]).contains("my-cluster"));
    let all = s.ok(&["get", "strimzi", "-n", "kafka", "-o", "name"]);
    assert!(
        all.contains("kafka.kafka.strimzi.io/my-cluster")
            && all.contains("kafkanodepool.kafka.strimzi.io/dual-role"),
        "{all}"
    );
    let err = refused(
        &s,
        "apiVersion: kafka.strimzi.io/v1\nkind: Kafka\nmetadata: {name: bad, namespace: kafka}\nspec:\n  kafka:\n    listeners:\n    - {name: Plain!, port: 80, type: magic, tls: false}\n",
    );
    for message in [
        "spec.kafka.listeners[0].name: Invalid value: \"Plain!\": spec.kafka.listeners[0].name in body should match '^[a-z0-9]{1,11}$'",
        "spec.kafka.listeners[0].port: Invalid value: 80: spec.kafka.listeners[0].port in body should be greater than or equal to 9092",
        "spec.kafka.listeners[0].type: Unsupported value: \"magic\": supported values: \"internal\"",
    ] {
        assert!(err.contains(message), "{message}: {err}");
    }
    s.ok(&["delete", "kafka,kafkanodepool", "-n", "kafka", "--all"]);
    delete_all_with(&s, &["-n", "kafka", "-f", &file], &[]);
    s.ok(&["delete", "namespace", "kafka", "--wait=false"]);
    wait_until(
        TERMINATING,
        "Strimzi's CRDs and namespace to be gone",
        || {
            !s.ok(&["get", "crd"]).contains("strimzi.io")
                && !s.kubectl(&["get", "namespace", "kafka"]).status.success()
        },
    );
}

/// The CustomResourceDefinitions of cert-manager's release file (what the OpenTelemetry
/// operator's Certificate and Issuer need), as a file of their own.
fn cert_manager_crds(s: &Server) -> String {
    let all = std::fs::read_to_string(manifest(s, "cert-manager")).expect("read manifest");
    let crds: Vec<&str> = all
        .split("\n---")
        .filter(|doc| doc.contains("\nkind: CustomResourceDefinition"))
        .collect();
    assert_eq!(crds.len(), 6);
    let path = s.dir.path().join("cert-manager-crds.yaml");
    std::fs::write(&path, crds.join("\n---")).expect("write manifest");
    path.to_string_lossy().into_owned()
}

#[test]
fn opentelemetry_operator_installs_after_cert_manager_crds() {
    let s = Server::start();
    let crds = cert_manager_crds(&s);
    s.ok(&["apply", "-f", &crds]);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/certificates.cert-manager.io",
        "crd/issuers.cert-manager.io",
        "--timeout=20s",
    ]);
    let file = manifest(&s, "opentelemetry-operator");
    // The webhooks' rules (atomic) differ from the live ones by the defaulted scope.
    apply_twice(
        &s,
        &file,
        20,
        &[
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/opentelemetry-operator-mutating-webhook-configuration",
            "validatingwebhookconfiguration.admissionregistration.k8s.io/opentelemetry-operator-validating-webhook-configuration",
        ],
    );
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    deployments_have_pods(&s, "opentelemetry-operator-system");
    let crd = s.get_json(&["crd", "opentelemetrycollectors.opentelemetry.io"]);
    assert_eq!(crd["spec"]["conversion"]["strategy"], "Webhook");
    assert_eq!(
        crd["status"]["storedVersions"],
        serde_json::json!(["v1beta1"])
    );
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/opentelemetrycollectors.opentelemetry.io",
        "--timeout=20s",
    ]);
    let collector = "apiVersion: opentelemetry.io/v1beta1\nkind: OpenTelemetryCollector\nmetadata: {name: otel, namespace: default}\nspec:\n  config:\n    receivers: {otlp: {protocols: {grpc: {}, http: {}}}}\n    exporters: {debug: {}}\n    service:\n      pipelines:\n        traces: {receivers: [otlp], exporters: [debug]}\n";
    // Its webhooks (failurePolicy Fail) refuse collectors while no operator pod
    // answers, as upstream.
    let err = refused(&s, collector);
    assert!(err.contains("mopentelemetrycollectorbeta.kb.io"), "{err}");
    s.ok(&[
        "delete",
        "mutatingwebhookconfiguration",
        "opentelemetry-operator-mutating-webhook-configuration",
    ]);
    s.ok(&[
        "delete",
        "validatingwebhookconfiguration",
        "opentelemetry-operator-validating-webhook-configuration",
    ]);
    // The project's v1beta1 sample collector, stored in its storage version: listing it
    // needs no conversion, so the conversion webhook's missing pod does not matter.
    let collector_file = s.dir.path().join("otelcol.yaml");
    std::fs::write(&collector_file, collector).expect("write collector");
    let collector_file = collector_file.to_string_lossy().into_owned();
    s.ok(&["apply", "-f", &collector_file]);
    let otel = s.get_json(&["otelcol", "-n", "default", "otel"]);
    assert_eq!(otel["spec"]["managementState"], "managed");
    assert_eq!(otel["spec"]["replicas"], 1);
    assert_eq!(
        columns(&s, "otelcol", "default"),
        [
            "NAME",
            "MODE",
            "VERSION",
            "READY",
            "AGE",
            "IMAGE",
            "MANAGEMENT"
        ]
    );
    let explain = s.ok(&["explain", "otelcol.spec.mode"]);
    assert!(
        explain.contains("FIELD: mode <string>") && explain.contains("statefulset"),
        "{explain}"
    );
    server_side_twice(&s, &["-f", &collector_file]);
    diff_is_empty(&s, &collector_file);
    // Read in v1alpha1 it needs the conversion webhook, whose Service has no ready
    // endpoints: upstream's 500 naming the webhook's URL.
    let err = s.fails(&[
        "get",
        "opentelemetrycollectors.v1alpha1.opentelemetry.io",
        "-n",
        "default",
    ]);
    assert!(
        err.contains("Error from server (InternalError): Internal error occurred: conversion webhook for opentelemetry.io/v1beta1, Kind=OpenTelemetryCollector failed: Post \"https://opentelemetry-operator-webhook-service.opentelemetry-operator-system.svc:443/convert?timeout=30s\""),
        "{err}"
    );
    s.ok(&["delete", "otelcol", "-n", "default", "otel"]);
    delete_all_with(
        &s,
        &["-f", &file, "--ignore-not-found"],
        &["opentelemetry-operator-system"],
    );
    delete_all(&s, &crds, &[]);
}

#[test]
fn kyverno_crds_too_big_for_client_side_apply_install_with_create_or_server_side() {
    let s = Server::start();
    let file = manifest(&s, "kyverno");
    // Kyverno documents `kubectl create`: its policy CRDs are too big for client-side
    // apply's annotation, refused as upstream 1.32 refuses them.
    let out = s.ok(&["create", "-f", &file]);
    assert_eq!(
        out.lines().filter(|l| l.ends_with(" created")).count(),
        65,
        "{out}"
    );
    deployments_have_pods(&s, "kyverno");
    let out = s.kubectl(&["apply", "-f", &file]);
    assert!(!out.status.success());
    annotation_too_long(
        &String::from_utf8_lossy(&out.stderr),
        &["clusterpolicies.kyverno.io", "policies.kyverno.io"],
    );
    delete_all(&s, &file, &["kyverno"]);
    crds_gone(&s, "kyverno.io");
    // The same file applied server-side, twice.
    let out = s.ok(&["apply", "--server-side", "-f", &file]);
    assert_eq!(out.lines().count(), 65, "{out}");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/clusterpolicies.kyverno.io",
        "crd/validatingpolicies.policies.kyverno.io",
        "--timeout=20s",
    ]);
    // The documented `require-labels` policy, with the schema's defaults.
    s.apply_yaml(
        "apply",
        "apiVersion: kyverno.io/v1\nkind: ClusterPolicy\nmetadata: {name: require-labels}\nspec:\n  validationFailureAction: Enforce\n  rules:\n  - name: check-team\n    match:\n      any:\n      - resources: {kinds: [Pod]}\n    validate:\n      message: \"label 'team' is required\"\n      pattern: {metadata: {labels: {team: \"?*\"}}}\n",
    );
    let policy = s.get_json(&["clusterpolicy", "require-labels"]);
    assert_eq!(policy["spec"]["background"], true);
    assert_eq!(policy["spec"]["admission"], true);
    assert_eq!(
        policy["spec"]["rules"][0]["validate"]["allowExistingViolations"],
        true
    );
    assert_eq!(
        columns(&s, "cpol", "default"),
        ["NAME", "ADMISSION", "BACKGROUND", "READY", "AGE", "MESSAGE"]
    );
    s.ok(&["delete", "clusterpolicy", "require-labels"]);
    delete_all(&s, &file, &["kyverno"]);
    crds_gone(&s, "kyverno.io");
}

#[test]
fn tekton_pipelines_installs_and_stores_tasks() {
    let s = Server::start();
    let file = manifest(&s, "tekton-pipelines");
    // Two controllers' `args: []` are left out, as Go's omitempty does: kubectl sends
    // them again (`configured`), as against any Kubernetes.
    apply_twice(
        &s,
        &file,
        76,
        &[
            "deployment.apps/tekton-events-controller",
            "deployment.apps/tekton-pipelines-remote-resolvers",
        ],
    );
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    deployments_have_pods(&s, "tekton-pipelines");
    deployments_have_pods(&s, "tekton-pipelines-resolvers");
    let hpa = s.get_json(&["hpa", "-n", "tekton-pipelines", "tekton-pipelines-webhook"]);
    assert_eq!(hpa["spec"]["maxReplicas"], 5);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/tasks.tekton.dev",
        "crd/taskruns.tekton.dev",
        "crd/pipelines.tekton.dev",
        "crd/pipelineruns.tekton.dev",
        "--timeout=20s",
    ]);
    // Its v1 CRDs convert to v1beta1 through its webhook; objects stored in v1 read in
    // v1 without it. The getting-started Task and its TaskRun:
    s.apply_yaml(
        "apply",
        "apiVersion: tekton.dev/v1\nkind: Task\nmetadata: {name: hello, namespace: default}\nspec:\n  steps:\n  - name: echo\n    image: alpine\n    script: |\n      #!/bin/sh\n      echo \"Hello World\"\n---\napiVersion: tekton.dev/v1\nkind: TaskRun\nmetadata: {name: hello-task-run, namespace: default}\nspec:\n  taskRef: {name: hello}\n",
    );
    assert_eq!(
        columns(&s, "taskruns", "default"),
        ["NAME", "SUCCEEDED", "REASON", "STARTTIME", "COMPLETIONTIME"]
    );
    let task = s.get_json(&["task", "-n", "default", "hello"]);
    assert_eq!(task["apiVersion"], "tekton.dev/v1");
    assert_eq!(task["spec"]["steps"][0]["image"], "alpine");
    // In v1beta1 it goes through the conversion webhook, whose pod does not run here:
    // upstream's 500 for the read, and a v1beta1 write stores nothing.
    let err = s.fails(&["get", "tasks.v1beta1.tekton.dev", "-n", "default", "hello"]);
    assert!(
        err.contains("Error from server (InternalError): Internal error occurred: conversion webhook for tekton.dev/v1, Kind=Task failed: Post \"https://tekton-pipelines-webhook.tekton-pipelines.svc:443/?timeout=30s\""),
        "{err}"
    );
    let err = refused(
        &s,
        "apiVersion: tekton.dev/v1beta1\nkind: Task\nmetadata: {name: beta, namespace: default}\nspec:\n  steps:\n  - {name: echo, image: alpine, script: echo}\n",
    );
    assert!(
        err.contains("conversion webhook for tekton.dev/v1beta1, Kind=Task failed"),
        "{err}"
    );
    assert!(!s
        .kubectl(&["get", "task", "-n", "default", "beta"])
        .status
        .success());
    s.ok(&["delete", "taskrun,task", "-n", "default", "--all"]);
    delete_all(
        &s,
        &file,
        &["tekton-pipelines", "tekton-pipelines-resolvers"],
    );
}

#[test]
fn knative_serving_installs_crds_then_core() {
    let s = Server::start();
    let crds = manifest(&s, "knative-serving-crds");
    let core = manifest(&s, "knative-serving-core");
    apply_twice(&s, &crds, 12, &[]);
    // serving-core.yaml repeats the CRDs (unchanged); its PodDisruptionBudgets'
    // `selector` has the `replace` strategy, which kubectl sends on every apply, and
    // three Deployments' `cpu: 1000m` limits are stored as `1` (kubernetes#116135).
    apply_twice(
        &s,
        &core,
        47,
        &[
            "deployment.apps/activator",
            "deployment.apps/autoscaler",
            "deployment.apps/controller",
            "poddisruptionbudget.policy/activator-pdb",
            "poddisruptionbudget.policy/webhook-pdb",
        ],
    );
    server_side_twice(&s, &["-f", &crds]);
    diff_is_empty(&s, &crds);
    diff_is_empty(&s, &core);
    deployments_have_pods(&s, "knative-serving");
    // Server-side apply updates every object, and its webhook (failurePolicy Fail)
    // guards the internal `Certificate` while no webhook pod answers, as upstream.
    let out = s.kubectl(&["apply", "--server-side", "-f", &core]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("webhook.serving.knative.dev"), "{err}");
    let hello = "apiVersion: serving.knative.dev/v1\nkind: Service\nmetadata: {name: hello, namespace: default}\nspec:\n  template:\n    spec:\n      containers:\n      - image: ghcr.io/knative/helloworld-go:latest\n        ports: [{containerPort: 8080}]\n        env: [{name: TARGET, value: World}]\n";
    let err = refused(&s, hello);
    assert!(err.contains("webhook.serving.knative.dev"), "{err}");
    s.ok(&[
        "delete",
        "mutatingwebhookconfiguration",
        "webhook.serving.knative.dev",
    ]);
    s.ok(&[
        "delete",
        "validatingwebhookconfiguration",
        "validation.webhook.serving.knative.dev",
    ]);
    // The getting-started Service, with the schema's defaults.
    s.apply_yaml("apply", hello);
    let ksvc = s.get_json(&["ksvc", "-n", "default", "hello"]);
    assert_eq!(
        ksvc["spec"]["template"]["spec"]["containers"][0]["ports"][0]["protocol"],
        "TCP"
    );
    assert_eq!(
        columns(&s, "ksvc", "default"),
        [
            "NAME",
            "URL",
            "LATESTCREATED",
            "LATESTREADY",
            "READY",
            "REASON"
        ]
    );
    s.ok(&["delete", "ksvc", "-n", "default", "hello"]);
    delete_all_with(
        &s,
        &["-f", &core, "--ignore-not-found"],
        &["knative-serving"],
    );
    crds_gone(&s, "knative.dev");
}

#[test]
fn calico_operator_installs_with_create_and_checks_its_root_rules() {
    let s = Server::start();
    let crds = manifest(&s, "calico-operator-crds");
    let operator = manifest(&s, "calico-tigera-operator");
    // Calico's quickstart: `kubectl create` of both files (its Installation CRD is too
    // big for client-side apply's annotation, refused as upstream 1.32 refuses it).
    let out = s.ok(&["create", "-f", &crds]);
    assert_eq!(out.lines().count(), 32, "{out}");
    let out = s.ok(&["create", "-f", &operator]);
    assert_eq!(out.lines().count(), 7, "{out}");
    let out = s.kubectl(&["apply", "-f", &crds]);
    assert!(!out.status.success());
    annotation_too_long(
        &String::from_utf8_lossy(&out.stderr),
        &["installations.operator.tigera.io"],
    );
    deployments_have_pods(&s, "tigera-operator");
    server_side_twice(&s, &["-f", &crds]);
    diff_is_empty(&s, &crds);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/installations.operator.tigera.io",
        "crd/ippools.crd.projectcalico.org",
        "crd/tiers.crd.projectcalico.org",
        "--timeout=20s",
    ]);
    // Its `custom-resources.yaml`, with the schema's defaults.
    s.apply_yaml(
        "create",
        "apiVersion: operator.tigera.io/v1\nkind: Installation\nmetadata: {name: default}\nspec:\n  calicoNetwork:\n    ipPools:\n    - {name: default-ipv4-ippool, blockSize: 26, cidr: 192.168.0.0/16, encapsulation: VXLANCrossSubnet, natOutgoing: Enabled, nodeSelector: all()}\n---\napiVersion: operator.tigera.io/v1\nkind: APIServer\nmetadata: {name: default}\nspec: {}\n---\napiVersion: operator.tigera.io/v1\nkind: Goldmane\nmetadata: {name: default}\n---\napiVersion: operator.tigera.io/v1\nkind: Whisker\nmetadata: {name: default}\n",
    );
    let installation = s.get_json(&["installation", "default"]);
    assert_eq!(
        installation["spec"]["calicoNetwork"]["ipPools"][0]["disableBGPExport"],
        false
    );
    // Calico's own kinds, checked by their CEL rules: a rule on a nested object, a
    // transition rule, and rules on the whole object, which upstream reports at its
    // nil field path (`<nil>: ...`).
    s.apply_yaml(
        "create",
        "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata: {name: pods}\nspec: {cidr: 10.1.0.0/16, ipipMode: Never, vxlanMode: Always, blockSize: 26}\n",
    );
    assert_eq!(
        s.get_json(&["ippool", "pods"])["spec"]["assignmentMode"],
        "Automatic"
    );
    let out = s.kubectl(&[
        "patch",
        "ippool",
        "pods",
        "--type=merge",
        "-p",
        "{\"spec\":{\"cidr\":\"10.2.0.0/16\"}}",
    ]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("spec.cidr: Invalid value: \"string\": CIDR cannot be changed; follow IP pool migration guide to avoid corruption."),
        "{out:?}"
    );
    for (yaml, message) in [
        (
            "apiVersion: crd.projectcalico.org/v1\nkind: IPPool\nmetadata: {name: both}\nspec: {cidr: 10.0.0.0/16, ipipMode: Always, vxlanMode: Always}\n",
            "IPPool \"both\" is invalid: spec: Forbidden: ipipMode and vxlanMode cannot both be enabled",
        ),
        (
            "apiVersion: crd.projectcalico.org/v1\nkind: Tier\nmetadata: {name: default}\nspec: {defaultAction: Pass, order: 1000000}\n",
            "Tier \"default\" is invalid: <nil>: Invalid value: \"object\": The 'default' tier must have default action 'Deny'",
        ),
        (
            "apiVersion: crd.projectcalico.org/v1\nkind: FelixConfiguration\nmetadata: {name: default}\nspec: {nodeSelector: all()}\n",
            "FelixConfiguration \"default\" is invalid: <nil>: Forbidden: nodeSelector must not be set on the 'default' or per-node ('node.*') FelixConfiguration",
        ),
    ] {
        let err = refused(&s, yaml);
        assert!(err.contains(message), "{message}: {err}");
    }
    s.ok(&["delete", "ippool", "pods"]);
    s.ok(&[
        "delete",
        "installation,apiserver,goldmane,whisker",
        "default",
    ]);
    delete_all(&s, &operator, &["tigera-operator"]);
    delete_all(&s, &crds, &[]);
    crds_gone(&s, "projectcalico.org");
}
