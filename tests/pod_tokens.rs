//! Service-account tokens inside a real pod, on the one-node cluster of
//! `support::kubelet` (needs root, containerd, and the host's curl): the pod gets the
//! `kube-api-access-*` volume (token, ca.crt, namespace) and reaches the API at
//! `https://kubernetes.default.svc` as `system:serviceaccount:NS:default`; pods that
//! opt out get no volume; `kube-root-ca.crt` is in every namespace and comes back when
//! deleted.

use std::process::Output;

mod support;
use support::kubelet::*;

const MOUNT: &str = "/var/run/secrets/kubernetes.io/serviceaccount";

/// A pod that sleeps, with the host's /usr mounted read-only at /host/usr so the host's
/// curl (and the libraries it links) can run in it.
fn curl_pod(name: &str, automount: Option<bool>) -> String {
    let automount = automount
        .map(|a| format!("\n  automountServiceAccountToken: {a}"))
        .unwrap_or_default();
    format!(
        "---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0{automount}
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sleep\", \"3600\"]
    volumeMounts:
    - name: host-usr
      mountPath: /host/usr
      readOnly: true
  volumes:
  - name: host-usr
    hostPath:
      path: /usr
"
    )
}

/// Runs the host's curl in pod `name` against `url` with the pod's token and CA; the
/// output ends with the HTTP status code on a line of its own.
fn curl_in_pod(w: &World, name: &str, url: &str) -> Output {
    let script = format!(
        "/host/usr/lib/x86_64-linux-gnu/ld-linux-x86-64.so.2 --library-path /host/usr/lib/x86_64-linux-gnu \
         /host/usr/bin/curl -sS --max-time 10 --cacert {MOUNT}/ca.crt \
         -H \"Authorization: Bearer $(cat {MOUNT}/token)\" -w '\\n%{{http_code}}\\n' {url}"
    );
    w.kubectl(&["exec", name, "--", "sh", "-c", &script])
}

fn status_and_body(out: &Output) -> (String, String) {
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let mut lines: Vec<&str> = text.trim_end().lines().collect();
    let code = lines.pop().unwrap_or("").to_string();
    (code, lines.join("\n"))
}

#[test]
fn a_pod_reaches_the_api_with_its_service_account_token() {
    let w = World::start_reachable_from_pods();
    w.apply(&format!(
        "{}{}",
        curl_pod("client", None),
        curl_pod("quiet", Some(false))
    ));
    w.wait_running("client");
    w.wait_running("quiet");

    w.step("the pod gets upstream's kube-api-access volume mounted read-only");
    let pod = w.pod("client").expect("pod client");
    let volume = pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|v| {
            v["name"]
                .as_str()
                .is_some_and(|n| n.starts_with("kube-api-access-"))
        })
        .cloned()
        .expect("a kube-api-access-* volume");
    assert_eq!(volume["projected"]["defaultMode"], 420);
    assert_eq!(
        volume["projected"]["sources"][0]["serviceAccountToken"]["expirationSeconds"],
        3607
    );
    assert_eq!(pod["spec"]["serviceAccountName"], "default");
    let mounts = pod["spec"]["containers"][0]["volumeMounts"].to_string();
    assert!(mounts.contains(MOUNT), "{mounts}");

    w.step("the volume holds the token, the CA and the namespace");
    let listing = w.kubectl_out(&["exec", "client", "--", "cat", &format!("{MOUNT}/namespace")]);
    assert_eq!(listing, "default");
    let ca = w.kubectl_out(&["exec", "client", "--", "cat", &format!("{MOUNT}/ca.crt")]);
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
    let token = w.kubectl_out(&["exec", "client", "--", "cat", &format!("{MOUNT}/token")]);
    assert_eq!(token.split('.').count(), 3, "a JWT: {token}");

    w.step("discovery at https://kubernetes.default.svc answers 200, verified with ca.crt");
    let out = curl_in_pod(&w, "client", "https://kubernetes.default.svc/api");
    let (code, body) = status_and_body(&out);
    assert_eq!(
        code,
        "200",
        "{body}\nstderr: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(body.contains("\"APIVersions\""), "{body}");

    w.step("the token authenticates as the pod's service account");
    let out = curl_in_pod(
        &w,
        "client",
        "https://kubernetes.default.svc/api/v1/namespaces/default/pods",
    );
    let (code, body) = status_and_body(&out);
    assert_eq!(code, "403", "{body}");
    assert!(
        body.contains("system:serviceaccount:default:default"),
        "{body}"
    );

    w.step("the service IP 10.43.0.1 is in the serving certificate too");
    let out = curl_in_pod(&w, "client", "https://10.43.0.1/api");
    assert_eq!(status_and_body(&out).0, "200");

    w.step("a pod with automountServiceAccountToken: false gets no volume");
    let quiet = w.pod("quiet").expect("pod quiet");
    let volumes = quiet["spec"]["volumes"].to_string();
    assert!(!volumes.contains("kube-api-access-"), "{volumes}");
    let ls = w.kubectl(&["exec", "quiet", "--", "ls", MOUNT]);
    assert!(!ls.status.success(), "nothing is mounted at {MOUNT}");

    w.step("a pod naming a missing service account is refused with upstream's 403");
    let refused = w.kubectl(&[
        "run",
        "ghost",
        "--image",
        IMAGE,
        "--overrides",
        r#"{"spec": {"serviceAccountName": "ghost"}}"#,
    ]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(
        stderr.contains(
            "pods \"ghost\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"
        ),
        "{stderr}"
    );

    w.step("kube-root-ca.crt is published in a new namespace and comes back after a delete");
    w.kubectl_ok(&["create", "namespace", "fresh"]);
    let ca_in_fresh = || {
        w.kubectl_out(&[
            "get",
            "configmap",
            "kube-root-ca.crt",
            "-n",
            "fresh",
            "-o",
            "jsonpath={.data.ca\\.crt}",
        ])
    };
    w.wait_for("kube-root-ca.crt in namespace fresh", || {
        ca_in_fresh().trim() == ca.trim()
    });
    w.kubectl_ok(&["delete", "configmap", "kube-root-ca.crt", "-n", "fresh"]);
    w.wait_for("kube-root-ca.crt back in namespace fresh", || {
        ca_in_fresh().trim() == ca.trim()
    });
}
