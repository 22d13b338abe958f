//! Homelab tools' published files (Portainer, Kubernetes Dashboard, Headlamp, Sealed
//! Secrets, external-dns, nfs-subdir-external-provisioner, kube-vip and its cloud
//! provider), with their documented examples.

use super::*;

/// The message of the `PodScheduled=False` condition of the pods in `ns` labelled
/// `selector`, once the scheduler has reported one.
fn unschedulable_message(s: &Server, ns: &str, selector: &str) -> String {
    wait_until(
        SETTLE,
        &format!("pods {selector} in {ns} to be unschedulable"),
        || {
            let pods = s.get_json(&["pods", "-n", ns, "-l", selector]);
            pods["items"][0]["status"]["conditions"]
                .as_array()?
                .iter()
                .find(|c| c["type"] == "PodScheduled" && c["status"] == "False")
                .and_then(|c| c["message"].as_str())
                .map(str::to_string)
        },
    )
}

#[test]
fn homelab_dashboards_install_with_their_node_ports_claims_and_token_secrets() {
    // Portainer (NodePort variant), the Kubernetes Dashboard v2.7.0 and Headlamp, as
    // their READMEs install them.
    let s = Server::start();
    let portainer = manifest(&s, "portainer");
    // Its `nodeSelector: {}` is left out, as Go's omitempty does: kubectl sends it
    // again (`configured`), as against any Kubernetes.
    apply_twice(&s, &portainer, 6, &["deployment.apps/portainer"]);
    deployments_have_pods(&s, "portainer");
    // The NodePorts the file asks for, and a ClusterIP.
    let svc = s.get_json(&["service", "portainer", "-n", "portainer"]);
    let ports: Vec<(u64, u64)> = svc["spec"]["ports"]
        .as_array()
        .expect("ports")
        .iter()
        .map(|p| (p["port"].as_u64().unwrap(), p["nodePort"].as_u64().unwrap()))
        .collect();
    assert_eq!(ports, [(9000, 30777), (9443, 30779), (30776, 30776)]);
    assert!(svc["spec"]["clusterIP"]
        .as_str()
        .is_some_and(|ip| ip.starts_with("10.43.")));
    // Its claim names no class (only the long-gone alpha annotation): the default class
    // is written in, and waits for the pod's node, as upstream.
    let pvc = s.get_json(&["pvc", "portainer", "-n", "portainer"]);
    assert_eq!(pvc["spec"]["storageClassName"], "local-path");
    assert_eq!(pvc["status"]["phase"], "Pending");
    // No node (the server runs without its agent): upstream's words.
    assert_eq!(
        unschedulable_message(&s, "portainer", "app.kubernetes.io/name=portainer"),
        "no nodes available to schedule pods"
    );

    let dashboard = manifest(&s, "kubernetes-dashboard");
    apply_twice(&s, &dashboard, 14, &[]);
    deployments_have_pods(&s, "kubernetes-dashboard");

    // Headlamp's Secret names the account `headlamp-admin`, which its README has the
    // user create afterwards: until then the tokens controller deletes it, as upstream.
    let headlamp = manifest(&s, "headlamp");
    let first = s.ok(&["apply", "-f", &headlamp]);
    assert_eq!(
        first.lines().filter(|l| l.ends_with(" created")).count(),
        3,
        "{first}"
    );
    wait_until(SETTLE, "the orphaned token secret to be deleted", || {
        let out = s.kubectl(&["get", "secret", "headlamp-admin", "-n", "kube-system"]);
        (!out.status.success()).then_some(())
    });
    s.ok(&[
        "create",
        "serviceaccount",
        "headlamp-admin",
        "-n",
        "kube-system",
    ]);
    let again = s.ok(&["apply", "-f", &headlamp]);
    assert_eq!(
        lines_not(&again, "unchanged"),
        ["secret/headlamp-admin created"]
    );
    let account = s.get_json(&["serviceaccount", "headlamp-admin", "-n", "kube-system"]);
    let secret = wait_until(SETTLE, "the token secret to be filled", || {
        let secret = s.get_json(&["secret", "headlamp-admin", "-n", "kube-system"]);
        secret["data"]["token"].is_string().then_some(secret)
    });
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        account["metadata"]["uid"]
    );
    assert!(secret["data"]["ca.crt"].is_string() && secret["data"]["namespace"].is_string());
    let third = s.ok(&["apply", "-f", &headlamp]);
    assert!(lines_not(&third, "unchanged").is_empty(), "{third}");
    deployments_have_pods(&s, "kube-system");

    for file in [&portainer, &dashboard, &headlamp] {
        server_side_twice(&s, &["-f", file]);
        diff_is_empty(&s, file);
    }
    delete_all(&s, &portainer, &["portainer"]);
    delete_all(&s, &dashboard, &["kubernetes-dashboard"]);
    delete_all(&s, &headlamp, &[]);
}

#[test]
fn sealed_secrets_and_external_dns_serve_their_custom_resources() {
    let s = Server::start();
    let sealed = manifest(&s, "sealed-secrets");
    // The controller's `args: []`, `env: []`, `stdin: false`, `tty: false`,
    // `imagePullSecrets: []`, `initContainers: []` and template `annotations: {}` are
    // left out, as Go's omitempty does: kubectl sends them again (kubernetes#114777).
    apply_twice(
        &s,
        &sealed,
        11,
        &["deployment.apps/sealed-secrets-controller"],
    );
    deployments_have_pods(&s, "kube-system");
    server_side_twice(&s, &["-f", &sealed]);
    diff_is_empty(&s, &sealed);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/sealedsecrets.bitnami.com",
        "--timeout=20s",
    ]);
    // What `kubeseal -o yaml` writes (README's example), applied twice.
    let sealed_secret = "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata:\n  creationTimestamp: null\n  name: mysecret\n  namespace: default\nspec:\n  encryptedData:\n    foo: AgBy3i4OJSWK+PiTySYZZA9rO43cGDEq\n  template:\n    metadata:\n      creationTimestamp: null\n      name: mysecret\n      namespace: default\n";
    assert!(s.apply_yaml("apply", sealed_secret).contains("created"));
    assert!(s.apply_yaml("apply", sealed_secret).contains("unchanged"));
    assert!(s.ok(&["get", "sealedsecrets"]).contains("mysecret"));
    let err = refused(
        &s,
        "apiVersion: bitnami.com/v1alpha1\nkind: SealedSecret\nmetadata: {name: empty, namespace: default}\nspec:\n  template: {}\n",
    );
    assert!(err.contains("spec.encryptedData: Required value"), "{err}");
    s.ok(&["delete", "sealedsecret", "mysecret"]);

    // external-dns's kustomization (into `default`, which its binding names) and its
    // DNSEndpoint CRD, with the CRD source's documented example.
    let external_dns = manifest(&s, "external-dns");
    apply_twice(&s, &external_dns, 5, &[]);
    deployments_have_pods(&s, "default");
    server_side_twice(&s, &["-f", &external_dns]);
    diff_is_empty(&s, &external_dns);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/dnsendpoints.externaldns.k8s.io",
        "--timeout=20s",
    ]);
    s.apply_yaml(
        "apply",
        "apiVersion: externaldns.k8s.io/v1alpha1\nkind: DNSEndpoint\nmetadata:\n  name: examplednsrecord\n  namespace: default\nspec:\n  endpoints:\n  - dnsName: foo.bar.com\n    recordTTL: 180\n    recordType: A\n    targets:\n    - 192.168.99.216\n    providerSpecific:\n      - name: external-dns.kubernetes.io/cloudflare-proxied\n        value: \"true\"\n",
    );
    let endpoint = s.get_json(&["dnsendpoint", "examplednsrecord", "-n", "default"]);
    assert_eq!(endpoint["spec"]["endpoints"][0]["recordTTL"], 180);
    let err = refused(
        &s,
        "apiVersion: externaldns.k8s.io/v1alpha1\nkind: DNSEndpoint\nmetadata: {name: bad, namespace: default}\nspec:\n  endpoints:\n  - {dnsName: foo.bar.com, recordTTL: soon}\n",
    );
    assert!(
        err.contains("spec.endpoints[0].recordTTL in body must be of type integer: \"string\""),
        "{err}"
    );
    s.ok(&["delete", "dnsendpoint", "examplednsrecord", "-n", "default"]);
    delete_all(&s, &sealed, &[]);
    delete_all(&s, &external_dns, &[]);
}

#[test]
fn nfs_provisioner_and_kube_vip_install_and_their_examples_behave_as_upstream() {
    let s = Server::start();
    // nfs-subdir-external-provisioner: rbac.yaml, deployment.yaml, class.yaml.
    let nfs = manifest(&s, "nfs-subdir-external-provisioner");
    apply_twice(&s, &nfs, 7, &[]);
    deployments_have_pods(&s, "default");
    server_side_twice(&s, &["-f", &nfs]);
    diff_is_empty(&s, &nfs);
    // Its test claim and pod: the claim waits for the external provisioner; the pod is
    // told there is no node before anything about its claim, as upstream.
    s.apply_yaml(
        "create",
        "kind: PersistentVolumeClaim\napiVersion: v1\nmetadata:\n  name: test-claim\nspec:\n  storageClassName: nfs-client\n  accessModes:\n    - ReadWriteMany\n  resources:\n    requests:\n      storage: 1Mi\n---\nkind: Pod\napiVersion: v1\nmetadata:\n  name: test-pod\n  labels: {test: nfs}\nspec:\n  containers:\n  - name: test-pod\n    image: busybox:stable\n    command: [\"/bin/sh\"]\n    args: [\"-c\", \"touch /mnt/SUCCESS && exit 0 || exit 1\"]\n    volumeMounts:\n      - name: nfs-pvc\n        mountPath: \"/mnt\"\n  restartPolicy: \"Never\"\n  volumes:\n    - name: nfs-pvc\n      persistentVolumeClaim:\n        claimName: test-claim\n",
    );
    wait_until(SETTLE, "the claim's ExternalProvisioning event", || {
        let events = s.ok(&[
            "get",
            "events",
            "--field-selector",
            "involvedObject.name=test-claim,reason=ExternalProvisioning",
            "-o",
            "jsonpath={.items[*].message}",
        ]);
        events
            .contains("external provisioner 'k8s-sigs.io/nfs-subdir-external-provisioner'")
            .then_some(())
    });
    assert_eq!(
        unschedulable_message(&s, "default", "test=nfs"),
        "no nodes available to schedule pods"
    );
    s.ok(&["delete", "pod", "test-pod"]);
    s.ok(&["delete", "pvc", "test-claim"]);

    // kube-vip: its rbac.yaml and the DaemonSet `kube-vip manifest daemonset` prints,
    // with `creationTimestamp: null` and an empty status, which kubectl sends again on
    // every apply: `configured`, as against any Kubernetes.
    let kube_vip = manifest(&s, "kube-vip");
    apply_twice(&s, &kube_vip, 4, &["daemonset.apps/kube-vip-ds"]);
    server_side_twice(&s, &["-f", &kube_vip]);
    diff_is_empty(&s, &kube_vip);
    let ds = s.get_json(&["daemonset", "kube-vip-ds", "-n", "kube-system"]);
    assert_eq!(ds["status"]["desiredNumberScheduled"], 0);
    assert_eq!(ds["spec"]["updateStrategy"]["type"], "RollingUpdate");

    // kube-vip-cloud-provider, and its example ConfigMap, whose unquoted booleans
    // upstream refuses in Go's words; the README's `kubectl create configmap` works.
    let provider = manifest(&s, "kube-vip-cloud-provider");
    apply_twice(&s, &provider, 4, &[]);
    deployments_have_pods(&s, "kube-system");
    server_side_twice(&s, &["-f", &provider]);
    diff_is_empty(&s, &provider);
    let example = manifest(&s, "kube-vip-cloud-provider-configmap");
    let out = s.kubectl(&["apply", "-f", &example]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(
            "ConfigMap in version \"v1\" cannot be handled as a ConfigMap: json: cannot \
             unmarshal bool into Go struct field ConfigMap.data of type string"
        ),
        "{err}"
    );
    s.ok(&[
        "create",
        "configmap",
        "--namespace",
        "kube-system",
        "kubevip",
        "--from-literal",
        "cidr-global=192.168.0.220/29",
    ]);
    s.ok(&["delete", "configmap", "-n", "kube-system", "kubevip"]);
    delete_all(&s, &nfs, &[]);
    delete_all(&s, &kube_vip, &[]);
    delete_all(&s, &provider, &[]);
}
