//! Pod Security Admission with the Kubernetes documentation's own example files
//! (kubernetes/website `content/en/examples/security/`): the namespaces' labels refuse,
//! warn and re-evaluate as upstream's `PodSecurity` plugin does, word for word.

use super::*;

/// What a plain `nginx` container lacks under `restricted` (upstream's message).
const NGINX_RESTRICTED: &str = r#"allowPrivilegeEscalation != false (container "nginx" must set securityContext.allowPrivilegeEscalation=false), unrestricted capabilities (container "nginx" must set securityContext.capabilities.drop=["ALL"]), runAsNonRoot != true (pod or container "nginx" must set securityContext.runAsNonRoot=true), seccompProfile (pod or container "nginx" must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost")"#;

/// A pod that meets `restricted`, as the Pod Security Standards page describes one.
const COMPLIANT_POD: &str = "apiVersion: v1\nkind: Pod\nmetadata: {name: hardened}\nspec:\n  securityContext:\n    runAsNonRoot: true\n    seccompProfile: {type: RuntimeDefault}\n  containers:\n  - name: app\n    image: nginx\n    securityContext:\n      allowPrivilegeEscalation: false\n      capabilities: {drop: [ALL]}\n";

/// The warnings kubectl printed on stderr.
fn warnings(out: &std::process::Output) -> Vec<String> {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| l.strip_prefix("Warning: "))
        .map(str::to_string)
        .collect()
}

#[test]
fn pod_security_namespace_labels_refuse_warn_and_reevaluate_as_upstream() {
    let s = Server::start();
    let restricted = manifest(&s, "k8s-docs-podsecurity-restricted");
    let baseline = manifest(&s, "k8s-docs-podsecurity-baseline");
    let pod = manifest(&s, "k8s-docs-example-baseline-pod");
    apply_twice(&s, &restricted, 1, &[]);
    apply_twice(&s, &baseline, 1, &[]);
    server_side_twice(&s, &["-f", &restricted, "-f", &baseline]);
    diff_is_empty_with(&s, &["-f", &restricted, "-f", &baseline]);

    // enforce=restricted refuses the documentation's nginx pod with upstream's 403.
    let refused = s.fails(&["apply", "-n", "my-restricted-namespace", "-f", &pod]);
    assert_eq!(
        refused.trim_end(),
        format!(
            "Error from server (Forbidden): error when creating \"{pod}\": pods \"nginx\" is forbidden: violates PodSecurity \"restricted:latest\": {NGINX_RESTRICTED}"
        )
    );
    // A dry run is judged the same; a compliant pod is admitted without a warning.
    s.fails(&[
        "apply",
        "--dry-run=server",
        "-n",
        "my-restricted-namespace",
        "-f",
        &pod,
    ]);
    let admitted = s.kubectl_stdin(
        &["apply", "-n", "my-restricted-namespace", "-f", "-"],
        COMPLIANT_POD,
    );
    assert!(admitted.status.success(), "{admitted:?}");
    assert!(warnings(&admitted).is_empty(), "{admitted:?}");

    // Workloads are warned about, never refused; their pods are refused and the
    // ReplicaSet says why, as upstream's controller reports it.
    let deployment = s.kubectl(&[
        "create",
        "deployment",
        "web",
        "--image=nginx",
        "-n",
        "my-restricted-namespace",
    ]);
    assert!(deployment.status.success(), "{deployment:?}");
    assert_eq!(
        warnings(&deployment),
        [format!(
            "would violate PodSecurity \"restricted:latest\": {NGINX_RESTRICTED}"
        )]
    );
    let failure = wait_until(SETTLE, "the ReplicaSet's ReplicaFailure condition", || {
        let sets = s.get_json(&["rs", "-n", "my-restricted-namespace", "-l", "app=web"]);
        sets["items"][0]["status"]["conditions"]
            .as_array()?
            .iter()
            .find(|c| c["type"] == "ReplicaFailure")
            .cloned()
    });
    assert_eq!(failure["reason"], "FailedCreate");
    let message = failure["message"].as_str().unwrap_or_default();
    assert!(
        message.starts_with("pods \"web-")
            && message.ends_with(&format!(
                "\" is forbidden: violates PodSecurity \"restricted:latest\": {NGINX_RESTRICTED}"
            )),
        "{message}"
    );
    let events = s.ok(&[
        "get",
        "events",
        "-n",
        "my-restricted-namespace",
        "--field-selector",
        "reason=FailedCreate",
        "-o",
        "jsonpath={.items[0].message}",
    ]);
    assert!(
        events.starts_with("Error creating: pods \"web-"),
        "{events}"
    );
    assert!(
        s.get_json(&["pods", "-n", "my-restricted-namespace", "-l", "app=web"])["items"]
            .as_array()
            .is_some_and(Vec::is_empty)
    );

    // enforce=baseline admits it; raising the namespace to restricted names the pods
    // already there that the new level would refuse.
    let created = s.kubectl(&["apply", "-n", "my-baseline-namespace", "-f", &pod]);
    assert!(created.status.success(), "{created:?}");
    assert!(warnings(&created).is_empty(), "{created:?}");
    let relabelled = s.kubectl(&[
        "label",
        "--overwrite",
        "ns",
        "my-baseline-namespace",
        "pod-security.kubernetes.io/enforce=restricted",
    ]);
    assert!(relabelled.status.success(), "{relabelled:?}");
    assert_eq!(
        warnings(&relabelled),
        [
            "existing pods in namespace \"my-baseline-namespace\" violate the new PodSecurity enforce level \"restricted:latest\"",
            "nginx: allowPrivilegeEscalation != false, unrestricted capabilities, runAsNonRoot != true, seccompProfile",
        ]
    );
    // Lowering it again, or any other label, says nothing.
    let lowered = s.kubectl(&[
        "label",
        "--overwrite",
        "ns",
        "my-baseline-namespace",
        "pod-security.kubernetes.io/enforce=baseline",
    ]);
    assert!(warnings(&lowered).is_empty(), "{lowered:?}");

    // A level that does not exist is refused as upstream validates the labels.
    let invalid = s.fails(&[
        "label",
        "--overwrite",
        "ns",
        "my-baseline-namespace",
        "pod-security.kubernetes.io/enforce=strict",
    ]);
    assert_eq!(
        invalid.trim_end(),
        "The Namespace \"my-baseline-namespace\" is invalid: metadata.labels[pod-security.kubernetes.io/enforce]: Invalid value: \"strict\": must be one of privileged, baseline, restricted"
    );

    s.ok(&[
        "delete",
        "deployment",
        "web",
        "-n",
        "my-restricted-namespace",
    ]);
    s.ok(&["delete", "pod", "hardened", "-n", "my-restricted-namespace"]);
    s.ok(&[
        "delete",
        "-n",
        "my-baseline-namespace",
        "-f",
        &pod,
        "--wait=false",
    ]);
    delete_all_with(
        &s,
        &["-f", &restricted, "-f", &baseline],
        &["my-restricted-namespace", "my-baseline-namespace"],
    );
}
