//! Real projects' published install manifests (tests/data/manifests, see its README)
//! applied to the real binary with the real kubectl, as a homelab user does: `kubectl
//! apply -f` creates everything (Deployments get their ReplicaSets and Pods), a second
//! apply says `unchanged` (the `configured` lines upstream prints too, for manifests
//! that carry explicit nulls, empty values Go's omitempty leaves out or quantities in
//! a non-canonical spelling, are named), `kubectl diff` finds nothing,
//! server-side apply takes the same file, the projects' custom resources are served,
//! and `kubectl delete -f` deletes every object and the namespace finishes
//! terminating.

use std::time::Duration;

use serde_json::Value;

mod support;
use support::server::{stdout, Server};
use support::wait::wait_until;

#[path = "real_manifests/apps.rs"]
mod apps;
#[path = "real_manifests/homelab.rs"]
mod homelab;
#[path = "real_manifests/operators.rs"]
mod operators;
#[path = "real_manifests/pod_security.rs"]
mod pod_security;
#[path = "real_manifests/round4.rs"]
mod round4;

/// Longest a namespace may take to finish terminating (upstream's 5 s grace period,
/// then the drain).
const TERMINATING: Duration = Duration::from_secs(30);
/// Longest the controllers may take to create what a manifest implies.
const SETTLE: Duration = Duration::from_secs(20);

/// Decompresses `tests/data/manifests/<name>.yaml.gz` into the server's directory and
/// answers the file's path (kubectl reads it as `-f FILE`, as users do).
fn manifest(s: &Server, name: &str) -> String {
    let yaml = support::host::published_manifest(name);
    let path = s.dir.path().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write manifest");
    path.to_string_lossy().into_owned()
}

/// The `kind/name verb` lines kubectl printed, except those whose verb is `verb`.
fn lines_not(out: &str, verb: &str) -> Vec<String> {
    out.lines()
        .filter(|l| !l.trim().is_empty() && !l.ends_with(&format!(" {verb}")))
        .map(str::to_string)
        .collect()
}

/// `kubectl apply -f FILE` twice: the first creates every object, the second changes
/// none but `configured` (objects whose manifest holds explicit nulls, which kubectl
/// always sends, as against any Kubernetes).
fn apply_twice(s: &Server, file: &str, objects: usize, configured: &[&str]) {
    apply_twice_with(s, &["-f", file], objects, configured);
}

/// [`apply_twice`] with kubectl arguments of the caller's (`-n NS -f FILE`, for files
/// that leave the namespace to the user).
fn apply_twice_with(s: &Server, args: &[&str], objects: usize, configured: &[&str]) {
    let apply: Vec<&str> = ["apply"].iter().chain(args).copied().collect();
    let first = s.ok(&apply);
    assert_eq!(
        first.lines().filter(|l| l.ends_with(" created")).count(),
        objects,
        "first apply:\n{first}"
    );
    let second = s.ok(&apply);
    let mut changed = lines_not(&second, "unchanged");
    changed.sort();
    let mut expected: Vec<String> = configured
        .iter()
        .map(|c| format!("{c} configured"))
        .collect();
    expected.sort();
    assert_eq!(changed, expected, "second apply:\n{second}");
}

/// `kubectl diff -f FILE` finds no difference (exit status 0).
fn diff_is_empty(s: &Server, file: &str) {
    diff_is_empty_with(s, &["-f", file]);
}

/// [`diff_is_empty`] with kubectl arguments of the caller's.
fn diff_is_empty_with(s: &Server, args: &[&str]) {
    let diff: Vec<&str> = ["diff"].iter().chain(args).copied().collect();
    let out = s.kubectl(&diff);
    assert_eq!(
        out.status.code(),
        Some(0),
        "kubectl diff: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stdout(&out)
    );
}

/// Every Deployment in `ns` has a ReplicaSet and as many Pods as it asks for.
fn deployments_have_pods(s: &Server, ns: &str) {
    let deployments = s.get_json(&["deployments", "-n", ns]);
    let deployments = deployments["items"].as_array().expect("items").clone();
    assert!(!deployments.is_empty(), "no deployments in {ns}");
    for d in deployments {
        let name = d["metadata"]["name"].as_str().unwrap_or("").to_string();
        let want = d["spec"]["replicas"].as_u64().unwrap_or(1) as usize;
        wait_until(SETTLE, &format!("deployment {ns}/{name}'s pods"), || {
            let owned = |kind: &str, owner: &str, items: &Value| -> Vec<String> {
                items["items"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter(|o| {
                        o["metadata"]["ownerReferences"]
                            .as_array()
                            .into_iter()
                            .flatten()
                            .any(|r| r["kind"] == kind && r["name"] == owner)
                    })
                    .map(|o| o["metadata"]["name"].as_str().unwrap_or("").to_string())
                    .collect()
            };
            let sets = owned("Deployment", &name, &s.get_json(&["rs", "-n", ns]));
            let pods = s.get_json(&["pods", "-n", ns]);
            let count: usize = sets
                .iter()
                .map(|rs| owned("ReplicaSet", rs, &pods).len())
                .sum();
            (sets.len() == 1 && count == want).then_some(())
        });
    }
}

/// `kubectl delete -f FILE` succeeds (every object is found and deleted, none answers
/// NotFound) and `namespaces` are gone within [`TERMINATING`].
fn delete_all(s: &Server, file: &str, namespaces: &[&str]) {
    delete_all_with(s, &["-f", file], namespaces);
}

/// [`delete_all`] with kubectl arguments of the caller's. Objects of a namespace the
/// same file deletes earlier may already be gone with it (the namespace controller
/// empties it meanwhile, as upstream's may): those are not an error.
fn delete_all_with(s: &Server, args: &[&str], namespaces: &[&str]) {
    let delete: Vec<&str> = ["delete", "--wait=false", "--ignore-not-found"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    let out = s.kubectl(&delete);
    assert!(
        out.status.success(),
        "kubectl delete -f: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stdout(&out)
    );
    assert!(
        lines_not(&stdout(&out), "deleted").is_empty(),
        "{}",
        stdout(&out)
    );
    for ns in namespaces {
        wait_until(TERMINATING, &format!("namespace {ns} to be gone"), || {
            let out = s.kubectl(&["get", "namespace", ns]);
            !out.status.success() && String::from_utf8_lossy(&out.stderr).contains("NotFound")
        });
    }
}

/// Waits until no CustomResourceDefinition of `group` is left (a CRD goes once its
/// objects are gone).
fn crds_gone(s: &Server, group: &str) {
    wait_until(
        TERMINATING,
        &format!("the CRDs of {group} to be gone"),
        || !s.ok(&["get", "crd", "-o", "name"]).contains(group),
    );
}

#[test]
fn ingress_nginx_installs_reapplies_unchanged_and_uninstalls() {
    let s = Server::start();
    let file = manifest(&s, "ingress-nginx");
    // As against any Kubernetes: the ConfigMap's manifest says `data: null`, which
    // kubectl sends on every apply, the controller's `minReadySeconds: 0` is left out
    // as Go's omitempty does (kubectl sends it again), and the webhook's `rules` (an
    // atomic list) differ from the live ones by the defaulted `scope: "*"`.
    apply_twice(
        &s,
        &file,
        19,
        &[
            "configmap/ingress-nginx-controller",
            "deployment.apps/ingress-nginx-controller",
            "validatingwebhookconfiguration.admissionregistration.k8s.io/ingress-nginx-admission",
        ],
    );
    deployments_have_pods(&s, "ingress-nginx");
    // The admission Jobs ran their pods; the webhook is registered.
    for job in [
        "ingress-nginx-admission-create",
        "ingress-nginx-admission-patch",
    ] {
        wait_until(SETTLE, &format!("job {job}'s pod"), || {
            let pods = s.ok(&[
                "get",
                "pods",
                "-n",
                "ingress-nginx",
                "-l",
                &format!("batch.kubernetes.io/job-name={job}"),
                "-o",
                "name",
            ]);
            !pods.trim().is_empty()
        });
    }
    let hook = s.get_json(&["validatingwebhookconfiguration", "ingress-nginx-admission"]);
    assert_eq!(
        hook["webhooks"][0]["name"],
        "validate.nginx.ingress.kubernetes.io"
    );
    assert!(s.ok(&["get", "ingressclass"]).contains("nginx"));
    // The ConfigMap's explicit null is the only difference kubectl diff could see, and
    // it removes nothing: the live object has no data.
    diff_is_empty(&s, &file);
    let ssa = s.ok(&["apply", "--server-side", "-f", &file]);
    assert!(
        ssa.lines().all(|l| l.ends_with(" serverside-applied")),
        "{ssa}"
    );
    delete_all(&s, &file, &["ingress-nginx"]);
    // Cluster-scoped objects went with the rest.
    assert!(!s.ok(&["get", "ingressclass"]).contains("nginx"));
    assert!(!s
        .ok(&["get", "clusterroles", "-o", "name"])
        .contains("ingress-nginx"));
}

#[test]
fn metallb_installs_serves_its_custom_resources_and_uninstalls() {
    let s = Server::start();
    let file = manifest(&s, "metallb-native");
    // The webhook's rules (atomic) differ from the live ones by the defaulted scope.
    apply_twice(
        &s,
        &file,
        26,
        &["validatingwebhookconfiguration.admissionregistration.k8s.io/metallb-webhook-configuration"],
    );
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/ipaddresspools.metallb.io",
        "crd/l2advertisements.metallb.io",
        "--timeout=20s",
    ]);
    deployments_have_pods(&s, "metallb-system");
    let ds = s.get_json(&["daemonset", "-n", "metallb-system", "speaker"]);
    assert_eq!(ds["spec"]["template"]["spec"]["hostNetwork"], true);
    diff_is_empty(&s, &file);
    // MetalLB's validating webhook (failurePolicy Fail) refuses pools while its
    // controller pod does not answer (no node runs it here), as upstream does.
    let refused = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: early, namespace: metallb-system}\nspec: {addresses: [10.0.0.0/30]}\n",
    );
    assert!(
        String::from_utf8_lossy(&refused.stderr)
            .contains("ipaddresspoolvalidationwebhook.metallb.io"),
        "{refused:?}"
    );
    s.ok(&[
        "delete",
        "validatingwebhookconfiguration",
        "metallb-webhook-configuration",
    ]);
    // A pool and its advertisement, as in MetalLB's layer 2 documentation.
    s.apply_yaml(
        "apply",
        "apiVersion: metallb.io/v1beta1\nkind: IPAddressPool\nmetadata: {name: first-pool, namespace: metallb-system}\nspec:\n  addresses: [192.168.1.240-192.168.1.250]\n---\napiVersion: metallb.io/v1beta1\nkind: L2Advertisement\nmetadata: {name: example, namespace: metallb-system}\n",
    );
    let pool = s.get_json(&["ipaddresspools", "-n", "metallb-system", "first-pool"]);
    assert_eq!(pool["spec"]["addresses"][0], "192.168.1.240-192.168.1.250");
    // The webhook configuration deleted above is the one object not found.
    let out = s.kubectl(&["delete", "-f", &file, "--wait=false"]);
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("metallb-webhook-configuration") && err.contains("NotFound"),
        "{err}"
    );
    wait_until(TERMINATING, "namespace metallb-system to be gone", || {
        !s.kubectl(&["get", "namespace", "metallb-system"])
            .status
            .success()
    });
    wait_until(TERMINATING, "MetalLB's CRDs to be gone", || {
        !s.ok(&["get", "crd"]).contains("metallb.io")
    });
}

#[test]
fn gatekeeper_installs_reapplies_and_uninstalls() {
    let s = Server::start();
    let gatekeeper = manifest(&s, "gatekeeper");
    // As against any Kubernetes: the PodDisruptionBudget's selector has the `replace`
    // patch strategy (kubectl always sends it) and the webhooks' rules differ from the
    // live ones by the defaulted scope.
    apply_twice(
        &s,
        &gatekeeper,
        31,
        &[
            "poddisruptionbudget.policy/gatekeeper-controller-manager",
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/gatekeeper-mutating-webhook-configuration",
            "validatingwebhookconfiguration.admissionregistration.k8s.io/gatekeeper-validating-webhook-configuration",
        ],
    );
    deployments_have_pods(&s, "gatekeeper-system");
    // Its webhook (failurePolicy Fail) now guards namespaces, and no gatekeeper pod
    // answers here: a new namespace is refused, as upstream refuses it.
    let refused = s.fails(&["create", "namespace", "blocked"]);
    assert!(
        refused.contains("check-ignore-label.gatekeeper.sh")
            && refused
                .contains("no endpoints available for service \"gatekeeper-webhook-service\""),
        "{refused}"
    );
    diff_is_empty(&s, &gatekeeper);
    delete_all(&s, &gatekeeper, &["gatekeeper-system"]);
    s.ok(&["create", "namespace", "allowed"]);
}

#[test]
fn longhorn_installs_reapplies_and_uninstalls() {
    let s = Server::start();
    let longhorn = manifest(&s, "longhorn");
    // `nodePort: null` in the frontend Service's port and the PriorityClass's
    // `globalDefault: false` (left out, as Go's omitempty does): kubectl sends them
    // every time.
    apply_twice(
        &s,
        &longhorn,
        51,
        &[
            "priorityclass.scheduling.k8s.io/longhorn-critical",
            "service/longhorn-frontend",
        ],
    );
    deployments_have_pods(&s, "longhorn-system");
    assert!(s
        .ok(&["get", "priorityclass"])
        .contains("longhorn-critical"));
    let ds = s.get_json(&["daemonset", "-n", "longhorn-system", "longhorn-manager"]);
    assert_eq!(ds["metadata"]["name"], "longhorn-manager");
    diff_is_empty(&s, &longhorn);
    delete_all(&s, &longhorn, &["longhorn-system"]);
}

#[test]
fn metrics_server_and_keda_register_their_api_services() {
    let s = Server::start();
    let metrics = manifest(&s, "metrics-server");
    // Its Deployment's `strategy` omits the defaulted `type`: kubectl sends
    // `$retainKeys` on every apply, against any Kubernetes. Of its 9 objects, the
    // ClusterRole `system:aggregated-metrics-reader` exists already (orc serves
    // metrics.k8s.io, as k3s ships metrics-server): the first apply configures it.
    apply_twice(&s, &metrics, 8, &["deployment.apps/metrics-server"]);
    deployments_have_pods(&s, "kube-system");
    // orc serves metrics.k8s.io itself: the registration is available, and says so.
    wait_until(SETTLE, "v1beta1.metrics.k8s.io to be available", || {
        let a = s.get_json(&["apiservice", "v1beta1.metrics.k8s.io"]);
        let c = &a["status"]["conditions"][0];
        (c["type"] == "Available" && c["status"] == "True").then_some(())
    });
    let table = s.ok(&["get", "apiservices"]);
    assert!(
        table.contains("v1beta1.metrics.k8s.io")
            && table.contains("kube-system/metrics-server")
            && table.contains("True"),
        "{table}"
    );
    // KEDA's CRDs are too big for a client-side apply's annotation (as anywhere): its
    // documented install is server-side.
    let keda = manifest(&s, "keda");
    let out = s.ok(&["apply", "--server-side", "-f", &keda]);
    assert_eq!(out.lines().count(), 26, "{out}");
    let again = s.ok(&["apply", "--server-side", "-f", &keda]);
    assert_eq!(again.lines().count(), 26, "{again}");
    deployments_have_pods(&s, "keda");
    // Its external-metrics APIService is stored; orc does not proxy it and says why.
    wait_until(SETTLE, "KEDA's APIService condition", || {
        let a = s.get_json(&["apiservice", "v1beta1.external.metrics.k8s.io"]);
        let c = &a["status"]["conditions"][0];
        (c["status"] == "False" && c["reason"] == "ProxyNotSupported").then_some(())
    });
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/scaledobjects.keda.sh",
        "--timeout=20s",
    ]);
    s.apply_yaml(
        "apply",
        "apiVersion: keda.sh/v1alpha1\nkind: ScaledObject\nmetadata: {name: cron-scaledobject, namespace: default}\nspec:\n  scaleTargetRef: {name: web}\n  triggers:\n  - type: cron\n    metadata: {timezone: Europe/Berlin, start: 0 6 * * *, end: 0 20 * * *, desiredReplicas: \"2\"}\n",
    );
    assert!(s
        .ok(&["get", "scaledobjects", "-n", "default"])
        .contains("cron-scaledobject"));
    s.ok(&[
        "delete",
        "scaledobject",
        "-n",
        "default",
        "cron-scaledobject",
    ]);
    delete_all(&s, &keda, &["keda"]);
    delete_all(&s, &metrics, &[]);
    assert!(!s.ok(&["get", "apiservices"]).contains("metrics.k8s.io"));
}

#[test]
fn argo_cd_installs_server_side_and_diffs_clean() {
    let s = Server::start();
    let file = manifest(&s, "argocd-install");
    s.ok(&["create", "namespace", "argocd"]);
    let out = s.ok(&["apply", "-n", "argocd", "--server-side", "-f", &file]);
    assert_eq!(out.lines().count(), 59, "{out}");
    deployments_have_pods(&s, "argocd");
    // The StatefulSet made its pod.
    wait_until(SETTLE, "the application controller's pod", || {
        s.kubectl(&[
            "get",
            "pod",
            "-n",
            "argocd",
            "argocd-application-controller-0",
        ])
        .status
        .success()
    });
    // A client-side diff of objects that were applied server-side (no last-applied
    // annotation) finds nothing to change.
    let diff = s.kubectl(&["diff", "-n", "argocd", "-f", &file]);
    assert_eq!(
        diff.status.code(),
        Some(0),
        "{}\n{}",
        String::from_utf8_lossy(&diff.stderr),
        stdout(&diff)
    );
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/applications.argoproj.io",
        "--timeout=20s",
    ]);
    s.apply_yaml(
        "apply",
        "apiVersion: argoproj.io/v1alpha1\nkind: Application\nmetadata: {name: guestbook, namespace: argocd}\nspec:\n  project: default\n  source: {repoURL: 'https://github.com/argoproj/argocd-example-apps.git', targetRevision: HEAD, path: guestbook}\n  destination: {server: 'https://kubernetes.default.svc', namespace: guestbook}\n",
    );
    assert!(s
        .ok(&["get", "applications", "-n", "argocd"])
        .contains("guestbook"));
    let all = s.ok(&["get", "all", "-n", "argocd"]);
    assert!(all.contains("deployment.apps/argocd-server"), "{all}");
    let out = s.kubectl(&["delete", "-n", "argocd", "-f", &file, "--wait=false"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        lines_not(&stdout(&out), "deleted").is_empty(),
        "{}",
        stdout(&out)
    );
    wait_until(TERMINATING, "Argo CD's CRDs to be gone", || {
        !s.ok(&["get", "crd"]).contains("argoproj.io")
    });
    s.ok(&["delete", "namespace", "argocd", "--wait=false"]);
    wait_until(TERMINATING, "namespace argocd to be gone", || {
        !s.kubectl(&["get", "namespace", "argocd"]).status.success()
    });
}

#[test]
fn prometheus_operator_applies_server_side_twice_in_a_row() {
    let s = Server::start();
    let file = manifest(&s, "prometheus-operator");
    // Its CRDs exceed client-side apply's annotation: server-side, as documented. The
    // first apply cannot map the ServiceMonitor before its CRD exists (kubectl says
    // so, as against any Kubernetes); everything else is created.
    let only_the_service_monitor_unmapped = |out: &std::process::Output| {
        let err = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(
            err.lines()
                .all(|l| l.contains("ServiceMonitor")
                    || l.contains("ensure CRDs are installed first")),
            "{err}"
        );
        let applied = stdout(out);
        assert!(applied.lines().count() >= 15, "{applied}");
    };
    let first = s.kubectl(&["apply", "--server-side", "-f", &file]);
    only_the_service_monitor_unmapped(&first);
    // At once again, before the definitions are established: every one takes the write
    // (none is refused for having no stored version yet).
    let second = s.kubectl(&["apply", "--server-side", "-f", &file]);
    only_the_service_monitor_unmapped(&second);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/servicemonitors.monitoring.coreos.com",
        "--timeout=20s",
    ]);
    let third = s.ok(&["apply", "--server-side", "-f", &file]);
    assert_eq!(third.lines().count(), 16, "{third}");
    assert!(third
        .contains("servicemonitor.monitoring.coreos.com/prometheus-operator serverside-applied"));
    deployments_have_pods(&s, "default");
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/prometheuses.monitoring.coreos.com",
        "--timeout=20s",
    ]);
    s.apply_yaml(
        "apply",
        "apiVersion: monitoring.coreos.com/v1\nkind: Prometheus\nmetadata: {name: prometheus, namespace: default}\nspec:\n  serviceAccountName: prometheus\n  serviceMonitorSelector: {matchLabels: {team: frontend}}\n  resources: {requests: {memory: 400Mi}}\n",
    );
    assert!(s
        .ok(&["get", "prometheuses", "-n", "default"])
        .contains("prometheus"));
    let out = s.kubectl(&["delete", "-f", &file, "--wait=false"]);
    assert!(out.status.success(), "{out:?}");
    wait_until(TERMINATING, "Prometheus Operator's CRDs to be gone", || {
        !s.ok(&["get", "crd"]).contains("monitoring.coreos.com")
    });
}

/// `metadata.generation` of `kubectl get ARGS` (empty when the object has none).
fn generation(s: &Server, args: &[&str]) -> String {
    let mut a = vec!["get"];
    a.extend_from_slice(args);
    a.extend_from_slice(&["-o", "jsonpath={.metadata.generation}"]);
    s.ok(&a).trim().to_string()
}

#[test]
fn flux_installs_serves_its_sources_and_uninstalls() {
    let s = Server::start();
    let file = manifest(&s, "flux");
    // Its controllers' `cpu: 1000m` limits and its quota's `pods: 1000` are stored in
    // canonical form (`1`, `1k`), so kubectl sends them again (kubernetes#116135).
    apply_twice(
        &s,
        &file,
        31,
        &[
            "deployment.apps/helm-controller",
            "deployment.apps/kustomize-controller",
            "deployment.apps/notification-controller",
            "deployment.apps/source-controller",
            "resourcequota/critical-pods-flux-system",
        ],
    );
    deployments_have_pods(&s, "flux-system");
    diff_is_empty(&s, &file);
    let ssa = s.ok(&["apply", "--server-side", "-f", &file]);
    assert_eq!(
        ssa.lines()
            .filter(|l| l.ends_with(" serverside-applied"))
            .count(),
        31,
        "{ssa}"
    );
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/gitrepositories.source.toolkit.fluxcd.io",
        "crd/kustomizations.kustomize.toolkit.fluxcd.io",
        "--timeout=20s",
    ]);
    // A source and what Flux builds from it, as in Flux's getting-started guide.
    s.apply_yaml(
        "apply",
        "apiVersion: source.toolkit.fluxcd.io/v1\nkind: GitRepository\nmetadata: {name: podinfo, namespace: flux-system}\nspec:\n  interval: 1m\n  url: https://github.com/stefanprodan/podinfo\n  ref: {branch: master}\n---\napiVersion: kustomize.toolkit.fluxcd.io/v1\nkind: Kustomization\nmetadata: {name: podinfo, namespace: flux-system}\nspec:\n  interval: 30m\n  path: ./kustomize\n  prune: true\n  sourceRef: {kind: GitRepository, name: podinfo}\n  targetNamespace: default\n",
    );
    let table = s.ok(&["get", "gitrepositories", "-n", "flux-system"]);
    assert!(
        table.starts_with("NAME") && table.contains("URL") && table.contains("podinfo"),
        "{table}"
    );
    // Custom objects always carry a generation; a spec change moves it on.
    assert_eq!(
        generation(&s, &["gitrepository", "-n", "flux-system", "podinfo"]),
        "1"
    );
    s.ok(&[
        "patch",
        "gitrepository",
        "-n",
        "flux-system",
        "podinfo",
        "--type=merge",
        "-p",
        r#"{"spec":{"interval":"5m"}}"#,
    ]);
    assert_eq!(
        generation(&s, &["gitrepository", "-n", "flux-system", "podinfo"]),
        "2"
    );
    delete_all(&s, &file, &["flux-system"]);
    crds_gone(&s, "fluxcd.io");
}

#[test]
fn cert_manager_installs_guards_its_resources_and_uninstalls() {
    let s = Server::start();
    let file = manifest(&s, "cert-manager");
    // The webhooks' rules (atomic) differ from the live ones by the defaulted scope;
    // the bindings' subjects say `apiGroup: ""`, left out as Go's omitempty does, so
    // kubectl sends them again.
    apply_twice(
        &s,
        &file,
        46,
        &[
            "clusterrolebinding.rbac.authorization.k8s.io/cert-manager-webhook:subjectaccessreviews",
            "mutatingwebhookconfiguration.admissionregistration.k8s.io/cert-manager-webhook",
            "rolebinding.rbac.authorization.k8s.io/cert-manager-webhook:dynamic-serving",
            "rolebinding.rbac.authorization.k8s.io/cert-manager:leaderelection",
            "validatingwebhookconfiguration.admissionregistration.k8s.io/cert-manager-webhook",
        ],
    );
    deployments_have_pods(&s, "cert-manager");
    diff_is_empty(&s, &file);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/clusterissuers.cert-manager.io",
        "--timeout=20s",
    ]);
    // Its webhook (failurePolicy Fail) validates cert-manager's own kinds and no
    // webhook pod answers here: an issuer is refused, as upstream refuses it.
    let refused = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: cert-manager.io/v1\nkind: ClusterIssuer\nmetadata: {name: selfsigned}\nspec: {selfSigned: {}}\n",
    );
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        err.contains("failed calling webhook \"webhook.cert-manager.io\": failed to call webhook: Post \"https://cert-manager-webhook.cert-manager.svc:443/")
            && err.contains("no endpoints available for service \"cert-manager-webhook\""),
        "{err}"
    );
    // Webhook configurations track their generation; Secrets and Services do not.
    assert_eq!(
        generation(
            &s,
            &["validatingwebhookconfiguration", "cert-manager-webhook"]
        ),
        "1"
    );
    assert_eq!(
        generation(
            &s,
            &["service", "-n", "cert-manager", "cert-manager-webhook"]
        ),
        ""
    );
    delete_all(&s, &file, &["cert-manager"]);
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: after, namespace: default}\n",
    );
}

#[test]
fn kube_prometheus_installs_in_two_steps_and_uninstalls() {
    let s = Server::start();
    // kube-prometheus' documented install: the CRDs and namespace server-side, wait,
    // then the rest.
    let setup = manifest(&s, "kube-prometheus-setup");
    let out = s.ok(&["apply", "--server-side", "-f", &setup]);
    assert_eq!(out.lines().count(), 11, "{out}");
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "--all",
        "crd",
        "--timeout=20s",
    ]);
    let file = manifest(&s, "kube-prometheus");
    // prometheus-adapter's ClusterRole `system:aggregated-metrics-reader` is one orc
    // has (it serves metrics.k8s.io itself): configured, not created. On re-apply,
    // as against any Kubernetes: Secrets written with `stringData` (kubernetes#87736),
    // PodDisruptionBudgets (`selector` is replaced), a Deployment whose `strategy`
    // omits `type` and Deployments whose volume mounts say `readOnly: false` (left
    // out, as Go's omitempty does) say `configured`.
    let first = s.ok(&["apply", "-f", &file]);
    assert_eq!(
        first.lines().filter(|l| l.ends_with(" created")).count(),
        119,
        "{first}"
    );
    assert_eq!(
        lines_not(&first, "created"),
        ["clusterrole.rbac.authorization.k8s.io/system:aggregated-metrics-reader configured"]
    );
    let second = s.ok(&["apply", "-f", &file]);
    let mut changed = lines_not(&second, "unchanged");
    changed.sort();
    assert_eq!(
        changed,
        [
            "deployment.apps/grafana configured",
            "deployment.apps/prometheus-adapter configured",
            "poddisruptionbudget.policy/alertmanager-main configured",
            "poddisruptionbudget.policy/prometheus-adapter configured",
            "poddisruptionbudget.policy/prometheus-k8s configured",
            "secret/alertmanager-main configured",
            "secret/grafana-config configured",
            "secret/grafana-datasources configured",
        ],
        "{second}"
    );
    deployments_have_pods(&s, "monitoring");
    diff_is_empty(&s, &file);
    let ssa = s.ok(&["apply", "--server-side", "-f", &file]);
    assert_eq!(ssa.lines().count(), 120, "{ssa}");
    // The stack's own custom resources are served with their columns.
    let table = s.ok(&["get", "prometheus", "-n", "monitoring"]);
    assert!(
        table.contains("k8s") && table.contains("DESIRED"),
        "{table}"
    );
    assert_eq!(
        generation(&s, &["prometheus", "-n", "monitoring", "k8s"]),
        "1"
    );
    assert_eq!(
        generation(&s, &["deployment", "-n", "monitoring", "grafana"]),
        "1"
    );
    assert_eq!(
        generation(&s, &["secret", "-n", "monitoring", "grafana-config"]),
        ""
    );
    // Uninstalling deletes the metrics reader role too; orc puts its own back.
    let out = s.kubectl(&["delete", "-f", &file, "--wait=false"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        lines_not(&stdout(&out), "deleted").is_empty(),
        "{}",
        stdout(&out)
    );
    wait_until(
        SETTLE,
        "system:aggregated-metrics-reader to be back",
        || {
            s.kubectl(&["get", "clusterrole", "system:aggregated-metrics-reader"])
                .status
                .success()
        },
    );
    delete_all(&s, &setup, &["monitoring"]);
    crds_gone(&s, "monitoring.coreos.com");
}

#[test]
fn rabbitmq_operator_installs_and_serves_a_cluster() {
    let s = Server::start();
    let file = manifest(&s, "rabbitmq-operator");
    apply_twice(&s, &file, 9, &[]);
    deployments_have_pods(&s, "rabbitmq-system-customized");
    diff_is_empty(&s, &file);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/rabbitmqclusters.rabbitmq.com",
        "--timeout=20s",
    ]);
    // RabbitMQ's hello-world example.
    s.apply_yaml(
        "apply",
        "apiVersion: rabbitmq.com/v1beta1\nkind: RabbitmqCluster\nmetadata: {name: hello-world, namespace: default}\n",
    );
    let table = s.ok(&["get", "rabbitmqclusters", "-n", "default"]);
    assert!(
        table.contains("hello-world") && table.contains("ALLREPLICASREADY"),
        "{table}"
    );
    // A misplaced field is refused by strict decoding, naming it, as upstream does.
    let refused = s.kubectl_stdin(
        &["apply", "-f", "-"],
        "apiVersion: rabbitmq.com/v1beta1\nkind: RabbitmqCluster\nmetadata: {name: bad, namespace: default}\nspec:\n  affinity:\n    podAntiAffinity:\n      preferredDuringSchedulingIgnoredDuringExecution:\n      - weight: 1\n        topologyKey: kubernetes.io/hostname\n",
    );
    let err = String::from_utf8_lossy(&refused.stderr).into_owned();
    assert!(
        err.contains("strict decoding error")
            && err.contains("preferredDuringSchedulingIgnoredDuringExecution[0].topologyKey"),
        "{err}"
    );
    s.ok(&["delete", "rabbitmqcluster", "-n", "default", "hello-world"]);
    delete_all(&s, &file, &["rabbitmq-system-customized"]);
}

#[test]
fn eck_operator_applies_with_its_placeholder_ca_bundle_then_server_side() {
    let s = Server::start();
    let file = manifest(&s, "eck-all-in-one");
    // The user's copy installs into a namespace of their own, created beforehand.
    s.ok(&["create", "namespace", "platform"]);
    // Its webhook configuration carries ECK's placeholder `caBundle: Cg==` (a newline,
    // replaced by the operator): stored as upstream stores it, not refused. On
    // re-apply, as against any Kubernetes: CRDs holding `creationTimestamp: null` and
    // an empty status, the StatefulSet's `cpu: 1` (kubernetes#66450) and the webhooks'
    // rules without the defaulted scope say `configured`.
    let crds = [
        "agents.agent.k8s.elastic.co",
        "apmservers.apm.k8s.elastic.co",
        "beats.beat.k8s.elastic.co",
        "elasticmapsservers.maps.k8s.elastic.co",
        "elasticsearches.elasticsearch.k8s.elastic.co",
        "enterprisesearches.enterprisesearch.k8s.elastic.co",
        "kibanas.kibana.k8s.elastic.co",
    ]
    .map(|c| format!("customresourcedefinition.apiextensions.k8s.io/{c}"));
    let mut configured: Vec<&str> = crds.iter().map(String::as_str).collect();
    configured.push("statefulset.apps/elastic-operator");
    configured.push(
        "validatingwebhookconfiguration.admissionregistration.k8s.io/elastic-operator.platform.k8s.elastic.co",
    );
    apply_twice(&s, &file, 17, &configured);
    let hook = s.get_json(&[
        "validatingwebhookconfiguration",
        "elastic-operator.platform.k8s.elastic.co",
    ]);
    assert_eq!(hook["webhooks"][0]["clientConfig"]["caBundle"], "Cg==");
    // Server-side apply after the client-side one: `cpu: 1` is the stored "1", so
    // it conflicts with nothing.
    for _ in 0..2 {
        let ssa = s.ok(&["apply", "--server-side", "-f", &file]);
        assert_eq!(
            ssa.lines()
                .filter(|l| l.ends_with(" serverside-applied"))
                .count(),
            17,
            "{ssa}"
        );
    }
    diff_is_empty(&s, &file);
    wait_until(SETTLE, "the operator's pod", || {
        s.kubectl(&["get", "pod", "-n", "platform", "elastic-operator-0"])
            .status
            .success()
    });
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/elasticsearches.elasticsearch.k8s.elastic.co",
        "--timeout=20s",
    ]);
    // ECK's quickstart: its webhook (failurePolicy Ignore) cannot be called here, so
    // the object is admitted, as upstream admits it.
    s.apply_yaml(
        "apply",
        "apiVersion: elasticsearch.k8s.elastic.co/v1\nkind: Elasticsearch\nmetadata: {name: quickstart, namespace: default}\nspec:\n  version: 8.2.0\n  nodeSets:\n  - name: default\n    count: 1\n    config: {node.store.allow_mmap: false}\n",
    );
    assert!(s
        .ok(&["get", "elasticsearch", "-n", "default"])
        .contains("quickstart"));
    delete_all(&s, &file, &[]);
    s.ok(&["delete", "namespace", "platform", "--wait=false"]);
    wait_until(TERMINATING, "ECK's CRDs and namespace to be gone", || {
        !s.ok(&["get", "crd"]).contains("k8s.elastic.co")
            && !s
                .kubectl(&["get", "namespace", "platform"])
                .status
                .success()
    });
}

/// `kubectl apply --server-side` of `args` twice in a row: every object is applied,
/// without a conflict.
fn server_side_twice(s: &Server, args: &[&str]) {
    let apply: Vec<&str> = ["apply", "--server-side"]
        .iter()
        .chain(args)
        .copied()
        .collect();
    for _ in 0..2 {
        let out = s.ok(&apply);
        assert!(
            lines_not(&out, "serverside-applied").is_empty(),
            "apply --server-side:\n{out}"
        );
    }
}

/// The error kubectl printed for `yaml`, which the server must refuse.
fn refused(s: &Server, yaml: &str) -> String {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(!out.status.success(), "accepted:\n{yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn gateway_api_crds_validate_routes_with_their_cel_rules() {
    let s = Server::start();
    let file = manifest(&s, "gateway-api-standard");
    // The CRDs carry `creationTimestamp: null` and a `status` of nulls, which kubectl
    // always sends: `configured` on re-apply, as against any Kubernetes.
    let crds = [
        "gatewayclasses",
        "gateways",
        "grpcroutes",
        "httproutes",
        "referencegrants",
    ];
    let configured: Vec<String> = crds
        .iter()
        .map(|c| {
            format!("customresourcedefinition.apiextensions.k8s.io/{c}.gateway.networking.k8s.io")
        })
        .collect();
    let configured: Vec<&str> = configured.iter().map(String::as_str).collect();
    apply_twice(&s, &file, 5, &configured);
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    for c in crds {
        s.ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{c}.gateway.networking.k8s.io"),
            "--timeout=20s",
        ]);
    }
    // The project's getting-started objects, with an HTTPRoute whose timeouts rule
    // converts with `duration()`.
    s.apply_yaml(
        "apply",
        "apiVersion: gateway.networking.k8s.io/v1\nkind: GatewayClass\nmetadata: {name: example}\nspec: {controllerName: example.com/gateway-controller}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: web, namespace: default}\nspec:\n  gatewayClassName: example\n  listeners:\n  - {name: http, protocol: HTTP, port: 80}\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: web, namespace: default}\nspec:\n  parentRefs: [{name: web}]\n  hostnames: [www.example.com]\n  rules:\n  - matches: [{path: {type: PathPrefix, value: /api}}]\n    timeouts: {request: 10s, backendRequest: 2s}\n    backendRefs: [{name: api, port: 8080}]\n",
    );
    let route = s.get_json(&["httproute", "web", "-n", "default"]);
    // Defaults from the schema, as upstream fills them.
    assert_eq!(route["spec"]["rules"][0]["backendRefs"][0]["weight"], 1);
    assert_eq!(route["spec"]["parentRefs"][0]["kind"], "Gateway");
    let table = s.ok(&["get", "httproutes", "-n", "default"]);
    assert!(table.contains("[\"www.example.com\"]"), "{table}");
    // Invalid objects are refused with the rules' own messages, as upstream.
    let err = refused(
        &s,
        "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata: {name: slow, namespace: default}\nspec:\n  parentRefs: [{name: web}]\n  rules:\n  - timeouts: {request: 1s, backendRequest: 1m30s}\n    backendRefs: [{name: api, port: 8080}]\n",
    );
    assert!(
        err.contains("spec.rules[0].timeouts: Invalid value: \"object\": backendRequest timeout cannot be longer than request timeout"),
        "{err}"
    );
    let err = refused(
        &s,
        "apiVersion: gateway.networking.k8s.io/v1\nkind: Gateway\nmetadata: {name: twice, namespace: default}\nspec:\n  gatewayClassName: example\n  listeners:\n  - {name: http, protocol: HTTP, port: 80}\n  - {name: http, protocol: TCP, port: 443, hostname: example.com}\n",
    );
    assert!(
        err.contains("Listener name must be unique within the Gateway")
            && err.contains("hostname must not be specified for protocols ['TCP', 'UDP']"),
        "{err}"
    );
    s.ok(&["delete", "httproute,gateway", "-n", "default", "web"]);
    s.ok(&["delete", "gatewayclass", "example"]);
    delete_all(&s, &file, &[]);
    wait_until(SETTLE, "the Gateway API's resources to be gone", || {
        let out = s.kubectl(&["get", "httproutes", "-A"]);
        (!out.status.success()).then_some(())
    });
}

#[test]
fn small_homelab_controllers_install_reapply_and_uninstall() {
    // Reloader, kured, descheduler (Deployment), node-feature-discovery and k3s's
    // system-upgrade-controller: their published files, each installed, re-applied,
    // applied server-side, diffed and deleted on one server.
    let s = Server::start();
    // nfd-master's toleration says `value: ""`, left out as Go's omitempty does:
    // kubectl sends it again, and a server-side apply after the client-side one finds
    // the atomic `tolerations` it takes over (owned by `before-first-apply`) different
    // from its own, a conflict upstream reports too (kubernetes#128924).
    for (name, objects, namespace, deployments, configured) in [
        ("reloader", 6, "default", true, &[][..]),
        ("kured", 6, "kube-system", false, &[]),
        ("descheduler", 7, "kube-system", true, &[]),
        (
            "nfd",
            18,
            "node-feature-discovery",
            true,
            &["deployment.apps/nfd-master"],
        ),
        ("system-upgrade-controller", 11, "system-upgrade", true, &[]),
    ] {
        let file = manifest(&s, name);
        apply_twice(&s, &file, objects, configured);
        if deployments {
            deployments_have_pods(&s, namespace);
        }
        if name == "nfd" {
            let err = s.fails(&["apply", "--server-side", "-f", &file]);
            assert!(
                err.contains("conflict with \"before-first-apply\"")
                    && err.contains(".spec.template.spec.tolerations"),
                "{err}"
            );
            s.ok(&["apply", "--server-side", "--force-conflicts", "-f", &file]);
        }
        server_side_twice(&s, &["-f", &file]);
        diff_is_empty(&s, &file);
    }
    // Each project's documented example of its custom resources.
    for crd in [
        "plans.upgrade.cattle.io",
        "nodefeaturerules.nfd.k8s-sigs.io",
    ] {
        s.ok(&[
            "wait",
            "--for=condition=Established",
            &format!("crd/{crd}"),
            "--timeout=20s",
        ]);
    }
    s.apply_yaml(
        "apply",
        "apiVersion: upgrade.cattle.io/v1\nkind: Plan\nmetadata: {name: server-plan, namespace: system-upgrade}\nspec:\n  concurrency: 1\n  cordon: true\n  nodeSelector:\n    matchExpressions:\n    - {key: node-role.kubernetes.io/control-plane, operator: In, values: [\"true\"]}\n  serviceAccountName: system-upgrade\n  upgrade: {image: rancher/k3s-upgrade}\n  channel: https://update.k3s.io/v1-release/channels/stable\n---\napiVersion: nfd.k8s-sigs.io/v1alpha1\nkind: NodeFeatureRule\nmetadata: {name: my-sample-rule-object}\nspec:\n  rules:\n  - name: my sample rule\n    labels: {feature.node.kubernetes.io/my-sample-feature: \"true\"}\n    matchFeatures:\n    - feature: kernel.loadedmodule\n      matchExpressions:\n        dummy: {op: Exists}\n",
    );
    let plans = s.ok(&["get", "plans", "-n", "system-upgrade"]);
    assert!(
        plans.contains("server-plan")
            && plans.contains("https://update.k3s.io/v1-release/channels/stable"),
        "{plans}"
    );
    s.ok(&["get", "nodefeaturerule", "my-sample-rule-object"]);
    s.ok(&["delete", "plan", "-n", "system-upgrade", "server-plan"]);
    s.ok(&["delete", "nodefeaturerule", "my-sample-rule-object"]);
    for (name, namespaces) in [
        ("reloader", &[][..]),
        ("kured", &[]),
        ("descheduler", &[]),
        ("nfd", &["node-feature-discovery"]),
        ("system-upgrade-controller", &["system-upgrade"]),
    ] {
        let file = s.dir.path().join(format!("{name}.yaml"));
        delete_all(&s, &file.to_string_lossy(), namespaces);
    }
}

#[test]
fn argo_workflows_and_rollouts_install_into_their_namespaces() {
    let s = Server::start();
    // Both leave the namespace to the user: `kubectl create namespace`, then apply
    // (Rollouts with `-n`), as their getting-started pages say.
    s.ok(&["create", "namespace", "argo"]);
    s.ok(&["create", "namespace", "argo-rollouts"]);
    let workflows = manifest(&s, "argo-workflows");
    // Its `env: []` and `args: []` are left out, as Go's omitempty does: kubectl sends
    // them again.
    apply_twice(
        &s,
        &workflows,
        24,
        &[
            "deployment.apps/argo-server",
            "deployment.apps/workflow-controller",
        ],
    );
    deployments_have_pods(&s, "argo");
    server_side_twice(&s, &["-f", &workflows]);
    diff_is_empty(&s, &workflows);
    let rollouts = manifest(&s, "argo-rollouts");
    let args = ["-n", "argo-rollouts", "-f", &rollouts];
    // Its Deployment's `strategy` names only `type`: kubectl's patch carries
    // `$retainKeys` against the defaulted `rollingUpdate`, `configured` as upstream.
    apply_twice_with(&s, &args, 15, &["deployment.apps/argo-rollouts"]);
    deployments_have_pods(&s, "argo-rollouts");
    server_side_twice(&s, &args);
    diff_is_empty_with(&s, &args);
    s.apply_yaml(
        "apply",
        "apiVersion: argoproj.io/v1alpha1\nkind: WorkflowTemplate\nmetadata: {name: hello-world, namespace: argo}\nspec:\n  entrypoint: whalesay\n  templates:\n  - name: whalesay\n    container: {image: docker/whalesay, command: [cowsay], args: [hello world]}\n---\napiVersion: argoproj.io/v1alpha1\nkind: Rollout\nmetadata: {name: rollouts-demo, namespace: default}\nspec:\n  replicas: 2\n  strategy:\n    canary:\n      steps: [{setWeight: 20}, {pause: {}}, {setWeight: 60}, {pause: {duration: 10}}]\n  revisionHistoryLimit: 2\n  selector: {matchLabels: {app: rollouts-demo}}\n  template:\n    metadata: {labels: {app: rollouts-demo}}\n    spec:\n      containers:\n      - {name: rollouts-demo, image: \"argoproj/rollouts-demo:blue\", ports: [{name: http, containerPort: 8080}]}\n",
    );
    s.ok(&["get", "workflowtemplate", "-n", "argo", "hello-world"]);
    let table = s.ok(&["get", "rollouts", "-n", "default"]);
    assert!(
        table.contains("rollouts-demo") && table.contains("DESIRED"),
        "{table}"
    );
    s.ok(&["delete", "rollout", "-n", "default", "rollouts-demo"]);
    s.ok(&["delete", "workflowtemplate", "-n", "argo", "hello-world"]);
    delete_all(&s, &workflows, &[]);
    delete_all_with(&s, &args, &[]);
    s.ok(&["delete", "namespace", "argo", "argo-rollouts"]);
}

#[test]
fn gateway_api_1_6_standard_install_applies_with_its_safe_upgrades_policy() {
    let s = Server::start();
    let file = manifest(&s, "gateway-api-v1.6.1-standard-install");
    // Ten CRDs, the safe-upgrades ValidatingAdmissionPolicy and its binding; their
    // resourceRules (atomic) differ from the live ones by the defaulted scope, so
    // kubectl sends them again (`configured`), as against any Kubernetes.
    apply_twice(
        &s,
        &file,
        12,
        &[
            "validatingadmissionpolicy.admissionregistration.k8s.io/safe-upgrades.gateway.networking.k8s.io",
            "validatingadmissionpolicybinding.admissionregistration.k8s.io/safe-upgrades.gateway.networking.k8s.io",
        ],
    );
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/tlsroutes.gateway.networking.k8s.io",
        "--timeout=20s",
    ]);
    let route = |name: &str, host: &str| {
        format!("apiVersion: gateway.networking.k8s.io/v1\nkind: TLSRoute\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  parentRefs: [{{name: web}}]\n  hostnames: [\"{host}\"]\n  rules:\n  - backendRefs: [{{name: api, port: 443}}]\n")
    };
    // TLSRoute's hostnames rule calls the IP library's `isIP`.
    s.apply_yaml("apply", &route("tls", "foo.example.com"));
    s.ok(&["get", "tlsroute", "-n", "default", "tls"]);
    let err = refused(&s, &route("by-ip", "10.0.0.1"));
    assert!(
        err.contains("spec.hostnames: Invalid value: \"array\": Hostnames cannot contain an IP"),
        "{err}"
    );
    s.ok(&["delete", "tlsroute", "-n", "default", "tls"]);

    // The policy refuses what it is meant to: CRDs of the group older than v1.5.0 (a
    // create or an update) and experimental-channel CRDs over standard ones.
    let denied = "ValidatingAdmissionPolicy 'safe-upgrades.gateway.networking.k8s.io' with binding 'safe-upgrades.gateway.networking.k8s.io' denied request:";
    let crd = "crd/gatewayclasses.gateway.networking.k8s.io";
    let out = s.kubectl(&[
        "annotate",
        crd,
        "--overwrite",
        "gateway.networking.k8s.io/bundle-version=v1.4.0",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(denied)
            && err.contains("Installing CRDs with version before v1.5.0 is prohibited by default."),
        "{err}"
    );
    let out = s.kubectl(&[
        "annotate",
        crd,
        "--overwrite",
        "gateway.networking.k8s.io/channel=experimental",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success()
            && err.contains(denied)
            && err.contains("Installing experimental CRDs on top of standard channel CRDs is prohibited by default."),
        "{err}"
    );
    let old = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: meshes.gateway.networking.k8s.io\n  annotations: {gateway.networking.k8s.io/bundle-version: v1.2.1, gateway.networking.k8s.io/channel: standard}\nspec:\n  group: gateway.networking.k8s.io\n  names: {kind: Mesh, plural: meshes}\n  scope: Cluster\n  versions:\n  - {name: v1, served: true, storage: true, schema: {openAPIV3Schema: {type: object}}}\n";
    let err = refused(&s, old);
    assert!(
        err.contains(denied) && err.contains("before v1.5.0"),
        "{err}"
    );
    // Other groups' CRDs are not its business, and a newer version of its own is fine.
    s.apply_yaml("apply", &old.replace("v1.2.1", "v1.7.0"));
    s.ok(&["delete", "crd", "meshes.gateway.networking.k8s.io"]);

    delete_all(&s, &file, &[]);
    wait_until(SETTLE, "the Gateway API install to be gone", || {
        let left = stdout(&s.kubectl(&[
            "get",
            "crd,validatingadmissionpolicies,validatingadmissionpolicybindings",
            "-o",
            "name",
        ]));
        (!left.contains("gateway.networking.k8s.io"))
            .then_some(())
            .ok_or(left)
    });
}

#[test]
fn contour_installs_and_checks_http_proxies_with_go_regex_patterns() {
    // Its HTTPProxy CRD has an integer property named `requests` (read as a quantity
    // map before) and an RFC 6265 token `pattern` with `[` inside a character class,
    // literal in Go's regexp and a nested class to the regex crate.
    let s = Server::start();
    let file = manifest(&s, "contour");
    apply_twice(&s, &file, 21, &[]);
    deployments_have_pods(&s, "projectcontour");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/httpproxies.projectcontour.io",
        "--timeout=20s",
    ]);
    let proxy = |name: &str, requests: u32, cookie: &str| {
        format!("apiVersion: projectcontour.io/v1\nkind: HTTPProxy\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  virtualhost:\n    fqdn: {name}.example.com\n    rateLimitPolicy:\n      local: {{requests: {requests}, unit: minute}}\n  routes:\n  - conditions: [{{prefix: /}}]\n    services: [{{name: web, port: 80}}]\n    cookieRewritePolicies:\n    - name: \"{cookie}\"\n      pathRewrite: {{value: /}}\n")
    };
    s.apply_yaml("apply", &proxy("basic", 100, "session-id"));
    let table = s.ok(&["get", "httpproxies", "-n", "default"]);
    assert!(table.contains("basic.example.com"), "{table}");
    let err = refused(&s, &proxy("bracket", 100, "bad[name"));
    assert!(
        err.contains("spec.routes[0].cookieRewritePolicies[0].name: Invalid value: \"bad[name\": spec.routes[0].cookieRewritePolicies[0].name in body should match '^[^()<>@,;:"),
        "{err}"
    );
    let err = refused(&s, &proxy("none", 0, "session-id"));
    assert!(
        err.contains("spec.virtualhost.rateLimitPolicy.local.requests: Invalid value: 0: spec.virtualhost.rateLimitPolicy.local.requests in body should be greater than or equal to 1"),
        "{err}"
    );
    s.ok(&["delete", "httpproxy", "-n", "default", "basic"]);
    delete_all(&s, &file, &["projectcontour"]);
}

#[test]
fn tailscale_operator_installs_with_its_empty_oauth_keys() {
    // Its Secret leaves the OAuth keys for the user to fill in (`client_id:` → null):
    // Go decodes a null map value as "", so upstream accepts it, server-side too.
    let s = Server::start();
    let file = manifest(&s, "tailscale-operator");
    // Re-apply: the Secret's `stringData` (kubernetes#87736) and the Deployment's
    // explicit `value: null` and `strategy: {type: Recreate}` say `configured`, as
    // against any Kubernetes.
    apply_twice(
        &s,
        &file,
        20,
        &["secret/operator-oauth", "deployment.apps/operator"],
    );
    deployments_have_pods(&s, "tailscale");
    // kubectl's client-side apply drops the nulls itself; server-side apply sends them.
    server_side_twice(&s, &["-f", &file]);
    let keys = s.ok(&[
        "get",
        "secret",
        "-n",
        "tailscale",
        "operator-oauth",
        "-o",
        "jsonpath={.data}",
    ]);
    assert_eq!(keys, r#"{"client_id":"","client_secret":""}"#);
    diff_is_empty(&s, &file);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/connectors.tailscale.com",
        "--timeout=20s",
    ]);
    // The project's subnet router example, and one its CEL rule refuses.
    s.apply_yaml(
        "apply",
        "apiVersion: tailscale.com/v1alpha1\nkind: Connector\nmetadata: {name: ts-pod-cidrs}\nspec:\n  hostname: ts-pod-cidrs\n  subnetRouter:\n    advertiseRoutes: [\"10.40.0.0/14\"]\n",
    );
    let err = refused(
        &s,
        "apiVersion: tailscale.com/v1alpha1\nkind: Connector\nmetadata: {name: nothing}\nspec: {hostname: nothing}\n",
    );
    assert!(
        err.contains("spec: Invalid value: \"object\": A Connector needs to have at least one of exit node, subnet router or app connector configured."),
        "{err}"
    );
    s.ok(&["delete", "connector", "ts-pod-cidrs"]);
    delete_all(&s, &file, &["tailscale"]);
}

#[test]
fn gateway_api_xbackends_check_port_names_with_the_format_library() {
    let s = Server::start();
    let file = manifest(&s, "gateway-api-xbackends");
    // The CRD's port-name rule calls `format.dns1123Label().validate(self)`: refused as an
    // undeclared reference before the format library.
    apply_twice(&s, &file, 1, &[]);
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    s.ok(&[
        "wait",
        "--for=condition=Established",
        "crd/xbackends.gateway.networking.x-k8s.io",
        "--timeout=20s",
    ]);
    let backend = |name: &str, port: &str| {
        format!("apiVersion: gateway.networking.x-k8s.io/v1alpha1\nkind: XBackend\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  type: ExternalHostname\n  externalHostname: {{hostname: api.example.com}}\n  port: {port}\n")
    };
    s.apply_yaml("apply", &backend("api", "{port: 443}"));
    s.ok(&["get", "xbackend", "-n", "default", "api"]);
    let err = refused(&s, &backend("bad", "{port: 443, name: Not_A_Label}"));
    assert!(
        err.contains("spec.port.name: Invalid value: \"string\": Name must be a valid DNS label"),
        "{err}"
    );
    // Its other rules still hold: no in-cluster hostname.
    let err = refused(
        &s,
        &backend("cluster", "{port: 443}").replace("api.example.com", "api.svc.cluster.local"),
    );
    assert!(
        err.contains("must not be an IP address or end with .cluster.local"),
        "{err}"
    );
    s.ok(&["delete", "xbackend", "-n", "default", "api"]);
    delete_all(&s, &file, &[]);
}

#[test]
fn csi_driver_nfs_installs_its_csi_driver_reapplies_and_uninstalls() {
    // kubernetes-csi/csi-driver-nfs's deploy/ files, in install-driver.sh's order.
    let s = Server::start();
    let file = manifest(&s, "csi-driver-nfs");
    apply_twice(&s, &file, 9, &[]);
    let driver = s.ok(&["get", "csidriver", "nfs.csi.k8s.io"]);
    let row: Vec<&str> = driver
        .lines()
        .nth(1)
        .unwrap_or("")
        .split_whitespace()
        .collect();
    assert_eq!(
        row[..7],
        [
            "nfs.csi.k8s.io",
            "false",
            "false",
            "false",
            "<unset>",
            "false",
            "Persistent"
        ],
        "{driver}"
    );
    let spec = s.get_json(&["csidriver", "nfs.csi.k8s.io"])["spec"].clone();
    assert_eq!(spec["fsGroupPolicy"], "File");
    assert_eq!(spec["seLinuxMount"], false);
    deployments_have_pods(&s, "kube-system");
    server_side_twice(&s, &["-f", &file]);
    diff_is_empty(&s, &file);
    delete_all(&s, &file, &[]);
    for (kind, name) in [
        ("csidriver", "nfs.csi.k8s.io"),
        ("deployment", "csi-nfs-controller"),
        ("daemonset", "csi-nfs-node"),
        ("serviceaccount", "csi-nfs-controller-sa"),
        ("clusterrole", "nfs-external-provisioner-role"),
    ] {
        let out = s.kubectl(&["get", kind, "-n", "kube-system", name]);
        assert!(!out.status.success(), "{kind}/{name} is still there");
    }
}
