//! The built-in kinds CSI drivers and runtime installers publish, with the real
//! kubectl: storage.k8s.io/v1 CSIDriver, CSINode, VolumeAttachment and
//! CSIStorageCapacity, node.k8s.io/v1 RuntimeClass and v1 PodTemplate are discovered,
//! explained, created, listed with upstream's columns, refused when invalid (422) or
//! when an immutable field changes; a pod naming a missing RuntimeClass is refused and
//! one naming an existing class gets its overhead and scheduling constraints.

mod support;
use support::server::Server;

/// The header line of `kubectl get RESOURCE` (namespace `ns` when given).
fn header(s: &Server, args: &[&str]) -> String {
    let mut get = vec!["get"];
    get.extend_from_slice(args);
    let out = s.ok(&get);
    out.lines()
        .next()
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// The row of `name` in `kubectl get RESOURCE`, whitespace-collapsed, without AGE.
fn row(s: &Server, args: &[&str], name: &str) -> String {
    let mut get = vec!["get"];
    get.extend_from_slice(args);
    let out = s.ok(&get);
    let line = out
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name))
        .unwrap_or_else(|| panic!("no row {name} in:\n{out}"));
    line.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// What kubectl printed when the server refused `yaml`.
fn refused(s: &Server, yaml: &str) -> String {
    let out = s.kubectl_stdin(&["apply", "-f", "-"], yaml);
    assert!(!out.status.success(), "accepted:\n{yaml}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn csi_kinds_are_served_defaulted_printed_and_validated() {
    let s = Server::start();
    let resources = s.ok(&["api-resources", "--api-group=storage.k8s.io", "-o", "name"]);
    for r in [
        "csidrivers.storage.k8s.io",
        "csinodes.storage.k8s.io",
        "csistoragecapacities.storage.k8s.io",
        "volumeattachments.storage.k8s.io",
    ] {
        assert!(
            resources.lines().any(|l| l == r),
            "{r} not in:\n{resources}"
        );
    }
    let explained = s.ok(&["explain", "csidriver.spec.fsGroupPolicy"]);
    assert!(explained.contains("FIELD: fsGroupPolicy"), "{explained}");

    // CSIDriver: upstream's defaults, no generation until the spec changes.
    s.apply_yaml(
        "apply",
        "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: smb.csi.k8s.io}\nspec: {attachRequired: false}\n",
    );
    let d = s.get_json(&["csidriver", "smb.csi.k8s.io"]);
    assert_eq!(
        d["spec"],
        serde_json::json!({"attachRequired": false, "podInfoOnMount": false,
            "storageCapacity": false, "fsGroupPolicy": "ReadWriteOnceWithFSType",
            "requiresRepublish": false, "seLinuxMount": false,
            "volumeLifecycleModes": ["Persistent"]})
    );
    assert!(d["metadata"].get("generation").is_none(), "{d}");
    assert_eq!(
        header(&s, &["csidrivers"]),
        "NAME ATTACHREQUIRED PODINFOONMOUNT STORAGECAPACITY TOKENREQUESTS REQUIRESREPUBLISH MODES AGE"
    );
    let line = row(&s, &["csidrivers"], "smb.csi.k8s.io");
    assert!(
        line.starts_with("smb.csi.k8s.io false false false <unset> false Persistent "),
        "{line}"
    );
    // podInfoOnMount may change (since 1.29) and moves the generation on.
    s.ok(&[
        "patch",
        "csidriver",
        "smb.csi.k8s.io",
        "--type=merge",
        "-p",
        r#"{"spec":{"podInfoOnMount":true}}"#,
    ]);
    let d = s.get_json(&["csidriver", "smb.csi.k8s.io"]);
    assert_eq!(d["metadata"]["generation"], 1);
    let err = s.fails(&[
        "patch",
        "csidriver",
        "smb.csi.k8s.io",
        "--type=merge",
        "-p",
        r#"{"spec":{"attachRequired":true}}"#,
    ]);
    assert!(
        err.contains(r#"The CSIDriver "smb.csi.k8s.io" is invalid: spec.attachedRequired: Invalid value: true: field is immutable"#),
        "{err}"
    );
    let err = refused(
        &s,
        "apiVersion: storage.k8s.io/v1\nkind: CSIDriver\nmetadata: {name: bad.csi}\nspec: {fsGroupPolicy: Sometimes}\n",
    );
    assert!(
        err.contains(r#"spec.fsGroupPolicy: Unsupported value: "Sometimes": supported values: "File", "None", "ReadWriteOnceWithFSType""#),
        "{err}"
    );

    // CSINode: a driver registered on a node never changes.
    s.apply_yaml(
        "apply",
        "apiVersion: storage.k8s.io/v1\nkind: CSINode\nmetadata: {name: n1}\nspec:\n  drivers:\n  - {name: smb.csi.k8s.io, nodeID: n1, topologyKeys: [topology.kubernetes.io/zone]}\n",
    );
    assert_eq!(header(&s, &["csinodes"]), "NAME DRIVERS AGE");
    assert!(row(&s, &["csinodes"], "n1").starts_with("n1 1 "));
    let err = s.fails(&[
        "patch",
        "csinode",
        "n1",
        "--type=json",
        "-p",
        r#"[{"op":"replace","path":"/spec/drivers/0/nodeID","value":"n2"}]"#,
    ]);
    assert!(
        err.contains(r#"The CSINode "n1" is invalid: spec.drivers: Invalid value:"#)
            && err.contains("field is immutable"),
        "{err}"
    );

    // VolumeAttachment: status through its subresource only; the spec never changes.
    s.apply_yaml(
        "create",
        "apiVersion: storage.k8s.io/v1\nkind: VolumeAttachment\nmetadata: {name: csi-abc}\nspec:\n  attacher: smb.csi.k8s.io\n  nodeName: n1\n  source: {persistentVolumeName: pv1}\nstatus: {attached: true}\n",
    );
    let va = s.get_json(&["volumeattachment", "csi-abc"]);
    assert_eq!(va["status"], serde_json::json!({"attached": false}));
    s.ok(&[
        "patch",
        "volumeattachment",
        "csi-abc",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"attached":true,"attachmentMetadata":{"k":"v"}}}"#,
    ]);
    assert_eq!(
        header(&s, &["volumeattachments"]),
        "NAME ATTACHER PV NODE ATTACHED AGE"
    );
    assert!(
        row(&s, &["volumeattachments"], "csi-abc")
            .starts_with("csi-abc smb.csi.k8s.io pv1 n1 true "),
        "{}",
        row(&s, &["volumeattachments"], "csi-abc")
    );
    let err = s.fails(&[
        "patch",
        "volumeattachment",
        "csi-abc",
        "--type=merge",
        "-p",
        r#"{"spec":{"nodeName":"n2"}}"#,
    ]);
    assert!(
        err.contains(r#"The VolumeAttachment "csi-abc" is invalid: spec: Invalid value:"#)
            && err.contains("field is immutable"),
        "{err}"
    );
    let err = refused(
        &s,
        "apiVersion: storage.k8s.io/v1\nkind: VolumeAttachment\nmetadata: {name: nowhere}\nspec: {attacher: smb.csi.k8s.io, nodeName: n1, source: {}}\n",
    );
    assert!(
        err.contains("spec.source: Required value: must specify exactly one of inlineVolumeSpec and persistentVolumeName"),
        "{err}"
    );

    // CSIStorageCapacity (namespaced): class and topology never change.
    s.apply_yaml(
        "apply",
        "apiVersion: storage.k8s.io/v1\nkind: CSIStorageCapacity\nmetadata: {name: cap-a, namespace: kube-system}\nstorageClassName: smb\ncapacity: 1024Mi\nnodeTopology: {matchLabels: {topology.kubernetes.io/zone: a}}\n",
    );
    assert_eq!(
        header(&s, &["csistoragecapacities", "-n", "kube-system"]),
        "NAME STORAGECLASSNAME CAPACITY"
    );
    assert_eq!(
        row(&s, &["csistoragecapacities", "-n", "kube-system"], "cap-a"),
        "cap-a smb 1Gi"
    );
    let err = s.fails(&[
        "patch",
        "csistoragecapacity",
        "-n",
        "kube-system",
        "cap-a",
        "--type=merge",
        "-p",
        r#"{"storageClassName":"other"}"#,
    ]);
    assert!(
        err.contains(r#"storageClassName: Invalid value: "other": field is immutable"#),
        "{err}"
    );
    for (kind, name) in [
        ("csidriver", "smb.csi.k8s.io"),
        ("csinode", "n1"),
        ("volumeattachment", "csi-abc"),
    ] {
        s.ok(&["delete", kind, name]);
    }
    s.ok(&["delete", "csistoragecapacity", "-n", "kube-system", "cap-a"]);
}

#[test]
fn runtime_classes_and_pod_templates_are_served_and_admit_pods() {
    let s = Server::start();
    s.apply_yaml(
        "apply",
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: gvisor}\nhandler: runsc\noverhead:\n  podFixed: {cpu: 250m, memory: 64Mi}\nscheduling:\n  nodeSelector: {sandbox: gvisor}\n  tolerations:\n  - {key: sandbox, operator: Exists, effect: NoSchedule}\n",
    );
    assert_eq!(header(&s, &["runtimeclasses"]), "NAME HANDLER AGE");
    assert!(row(&s, &["runtimeclasses"], "gvisor").starts_with("gvisor runsc "));
    let err = s.fails(&[
        "patch",
        "runtimeclass",
        "gvisor",
        "--type=merge",
        "-p",
        r#"{"handler":"runc"}"#,
    ]);
    assert!(
        err.contains(r#"The RuntimeClass "gvisor" is invalid: handler: Invalid value: "runc": field is immutable"#),
        "{err}"
    );
    let err = refused(
        &s,
        "apiVersion: node.k8s.io/v1\nkind: RuntimeClass\nmetadata: {name: bad}\nhandler: Not_A_Label\n",
    );
    assert!(
        err.contains(
            r#"handler: Invalid value: "Not_A_Label": a lowercase RFC 1123 label must consist of"#
        ),
        "{err}"
    );

    // RuntimeClass admission: an unknown class refuses the pod.
    let pod = |name: &str, class: &str| {
        format!("apiVersion: v1\nkind: Pod\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  runtimeClassName: {class}\n  nodeSelector: {{zone: a}}\n  containers: [{{name: app, image: busybox}}]\n")
    };
    let err = refused(&s, &pod("lost", "kata"));
    assert!(
        err.contains(r#"pods "lost" is forbidden: pod rejected: RuntimeClass "kata" not found"#),
        "{err}"
    );
    // An existing class writes its overhead, node selector and tolerations into the pod.
    s.apply_yaml("apply", &pod("sandboxed", "gvisor"));
    let p = s.get_json(&["pod", "-n", "default", "sandboxed"]);
    assert_eq!(
        p["spec"]["overhead"],
        serde_json::json!({"cpu": "250m", "memory": "64Mi"})
    );
    assert_eq!(
        p["spec"]["nodeSelector"],
        serde_json::json!({"zone": "a", "sandbox": "gvisor"})
    );
    let tolerations = p["spec"]["tolerations"].as_array().expect("tolerations");
    assert!(
        tolerations
            .iter()
            .any(|t| t["key"] == "sandbox" && t["effect"] == "NoSchedule"),
        "{tolerations:?}"
    );
    let clash = "apiVersion: v1\nkind: Pod\nmetadata: {name: clash, namespace: default}\nspec:\n  runtimeClassName: gvisor\n  nodeSelector: {sandbox: kata}\n  containers: [{name: app, image: busybox}]\n";
    let err = refused(&s, clash);
    assert!(
        err.contains("conflict: runtimeClass.scheduling.nodeSelector[sandbox] = gvisor; pod.spec.nodeSelector[sandbox] = kata"),
        "{err}"
    );
    s.ok(&[
        "delete",
        "pod",
        "-n",
        "default",
        "sandboxed",
        "--wait=false",
    ]);

    // PodTemplate: defaulted template, upstream's columns, generation on template changes.
    s.apply_yaml(
        "apply",
        "apiVersion: v1\nkind: PodTemplate\nmetadata: {name: web, namespace: default}\ntemplate:\n  metadata: {labels: {app: web}}\n  spec:\n    containers: [{name: nginx, image: nginx}]\n",
    );
    assert_eq!(
        header(&s, &["podtemplates", "-n", "default"]),
        "NAME CONTAINERS IMAGES POD LABELS"
    );
    assert_eq!(
        row(&s, &["podtemplates", "-n", "default"], "web"),
        "web nginx nginx app=web"
    );
    let t = s.get_json(&["podtemplate", "-n", "default", "web"]);
    assert_eq!(t["metadata"]["generation"], 1);
    assert_eq!(t["template"]["spec"]["restartPolicy"], "Always");
    s.ok(&[
        "patch",
        "podtemplate",
        "-n",
        "default",
        "web",
        "--type=merge",
        "-p",
        r#"{"template":{"metadata":{"labels":{"app":"web2"}}}}"#,
    ]);
    assert_eq!(
        s.get_json(&["podtemplate", "-n", "default", "web"])["metadata"]["generation"],
        2
    );
    let err = refused(
        &s,
        "apiVersion: v1\nkind: PodTemplate\nmetadata: {name: empty, namespace: default}\ntemplate: {spec: {containers: []}}\n",
    );
    assert!(
        err.contains("template.spec.containers: Required value"),
        "{err}"
    );
    s.ok(&["delete", "podtemplate", "-n", "default", "web"]);
    s.ok(&["delete", "runtimeclass", "gvisor"]);
}
