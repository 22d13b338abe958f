//! Storage with the real kubectl: PersistentVolumes, claims and classes (rules, columns,
//! binding, reclaim, the default class), then on the one-node cluster of
//! `support::kubelet` (root and containerd) the built-in local-path provisioner: a
//! `WaitForFirstConsumer` claim waits for its pod, the scheduler picks the node, a
//! volume with node affinity appears, the node makes the directory, and deleting pod
//! and claim removes both.

use serde_json::Value;

mod support;

const STATIC_VOLUMES: &str = r#"
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-small, labels: {tier: fast}}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  hostPath: {path: /tmp/orc-test-pv-small}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-big}
spec:
  capacity: {storage: 10Gi}
  accessModes: [ReadWriteOnce, ReadWriteMany]
  storageClassName: manual
  persistentVolumeReclaimPolicy: Retain
  hostPath: {path: /tmp/orc-test-pv-big}
---
apiVersion: v1
kind: PersistentVolume
metadata: {name: pv-recycle}
spec:
  capacity: {storage: 1Gi}
  accessModes: [ReadWriteOnce]
  storageClassName: manual
  persistentVolumeReclaimPolicy: Recycle
  claimRef: {namespace: default, name: pinned}
  hostPath: {path: /tmp/orc-test-pv-recycle}
"#;

fn claim(name: &str, class: Option<&str>, size: &str, modes: &str) -> String {
    let class = class
        .map(|c| format!("  storageClassName: {c}\n"))
        .unwrap_or_default();
    format!(
        "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {{name: {name}}}\nspec:\n{class}  accessModes: [{modes}]\n  resources: {{requests: {{storage: {size}}}}}\n"
    )
}

mod rules {
    use super::*;
    use support::server::{stdout, wait_for, Server};

    fn phase(s: &Server, kind: &str, name: &str) -> String {
        let out = s.kubectl(&["get", kind, name, "-o", "jsonpath={.status.phase}"]);
        stdout(&out).trim().to_string()
    }

    /// `kubectl get` rows as columns, the header dropped.
    fn rows(s: &Server, args: &[&str]) -> Vec<Vec<String>> {
        s.ok(args)
            .lines()
            .skip(1)
            .map(|l| l.split_whitespace().map(String::from).collect())
            .collect()
    }

    #[test]
    fn claims_bind_to_the_smallest_fitting_volume_and_refuse_to_shrink() {
        let s = Server::start();

        // The built-in class is there, marked default.
        wait_for("the local-path class", || {
            s.kubectl(&["get", "sc", "local-path"]).status.success()
        });
        let classes = rows(&s, &["get", "sc"]);
        assert_eq!(classes.len(), 1, "{classes:?}");
        assert_eq!(
            classes[0][..6],
            [
                "local-path",
                "(default)",
                "orc.io/local-path",
                "Delete",
                "WaitForFirstConsumer",
                "false"
            ],
            "kubectl get sc"
        );

        s.apply_yaml("apply", STATIC_VOLUMES);
        wait_for("static volumes Available", || {
            phase(&s, "pv", "pv-small") == "Available" && phase(&s, "pv", "pv-big") == "Available"
        });

        // Bad input: 422 with upstream's field paths, nothing stored.
        let out = s.kubectl_stdin(
            &["create", "-f", "-"],
            "apiVersion: v1\nkind: PersistentVolumeClaim\nmetadata: {name: bad}\nspec:\n  resources: {requests: {storage: 1Gi}}\n",
        );
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("spec.accessModes: Required value: at least 1 access mode is required"),
            "{stderr}"
        );
        assert!(
            !s.kubectl(&["get", "pvc", "bad"]).status.success(),
            "refused claim stored"
        );

        // Smallest fitting volume of the class, with the annotations upstream writes.
        s.apply_yaml(
            "apply",
            &claim("data", Some("manual"), "1Gi", "ReadWriteOnce"),
        );
        wait_for("claim data Bound", || phase(&s, "pvc", "data") == "Bound");
        let pvc = s.get_json(&["pvc", "data"]);
        assert_eq!(pvc["spec"]["volumeName"], "pv-small");
        let annotations = &pvc["metadata"]["annotations"];
        assert_eq!(annotations["pv.kubernetes.io/bind-completed"], "yes");
        assert_eq!(annotations["pv.kubernetes.io/bound-by-controller"], "yes");
        assert_eq!(
            pvc["metadata"]["finalizers"],
            serde_json::json!(["kubernetes.io/pvc-protection"])
        );
        wait_for("volume pv-small Bound", || {
            phase(&s, "pv", "pv-small") == "Bound"
        });
        let pv_rows = rows(&s, &["get", "pv", "pv-small"]);
        assert_eq!(
            pv_rows[0][..7],
            [
                "pv-small",
                "1Gi",
                "RWO",
                "Retain",
                "Bound",
                "default/data",
                "manual"
            ],
            "kubectl get pv"
        );
        let pvc_rows = rows(&s, &["get", "pvc", "data"]);
        assert_eq!(
            pvc_rows[0][..6],
            ["data", "Bound", "pv-small", "1Gi", "RWO", "manual"],
            "kubectl get pvc"
        );

        // A bound claim never shrinks (422), and grows only where its class allows it.
        let out = s.kubectl(&[
            "patch",
            "pvc",
            "data",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"500Mi"}}}}"#,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success());
        assert!(
            stderr.contains("spec.resources.requests.storage: Forbidden: field can not be less than previous value"),
            "{stderr}"
        );
        let out = s.kubectl(&[
            "patch",
            "pvc",
            "data",
            "-p",
            r#"{"spec":{"resources":{"requests":{"storage":"2Gi"}}}}"#,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("only dynamically provisioned pvc can be resized"),
            "{stderr}"
        );

        // claimRef pre-binding: the claim named there gets that volume; Recycle is refused.
        s.apply_yaml(
            "apply",
            &claim("pinned", Some("manual"), "1Gi", "ReadWriteOnce"),
        );
        wait_for("claim pinned Bound", || {
            phase(&s, "pvc", "pinned") == "Bound"
        });
        assert_eq!(
            s.get_json(&["pvc", "pinned"])["spec"]["volumeName"],
            "pv-recycle"
        );
        s.ok(&["delete", "pvc", "pinned", "--wait=false"]);
        wait_for("recycled volume Failed", || {
            phase(&s, "pv", "pv-recycle") == "Failed"
        });
        let pv = s.get_json(&["pv", "pv-recycle"]);
        assert_eq!(
            pv["status"]["message"],
            "No recycler plugin found for the volume!"
        );

        // Retain: the volume stays Released with its claim gone.
        s.apply_yaml(
            "apply",
            &claim("shared", Some("manual"), "2Gi", "ReadWriteMany"),
        );
        wait_for("claim shared Bound", || {
            phase(&s, "pvc", "shared") == "Bound"
        });
        assert_eq!(
            s.get_json(&["pvc", "shared"])["spec"]["volumeName"],
            "pv-big"
        );
        s.ok(&["delete", "pvc", "shared"]);
        wait_for("retained volume Released", || {
            phase(&s, "pv", "pv-big") == "Released"
        });

        // No class given: the default class is written in; WaitForFirstConsumer keeps it
        // Pending with upstream's event.
        s.apply_yaml("apply", &claim("later", None, "1Gi", "ReadWriteOnce"));
        let later = s.get_json(&["pvc", "later"]);
        assert_eq!(later["spec"]["storageClassName"], "local-path");
        wait_for("WaitForFirstConsumer event", || {
            s.ok(&[
                "get",
                "events",
                "--field-selector",
                "involvedObject.name=later",
            ])
            .contains("waiting for first consumer to be created before binding")
        });
        assert_eq!(phase(&s, "pvc", "later"), "Pending");

        // Classes are immutable where upstream says so.
        let out = s.kubectl(&[
            "patch",
            "sc",
            "local-path",
            "-p",
            r#"{"reclaimPolicy":"Retain"}"#,
        ]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("reclaimPolicy: Forbidden: updates to reclaimPolicy are forbidden."),
            "{stderr}"
        );

        // Another default class marked by the user: the newest default wins, ours is
        // left alone (not fought over).
        s.apply_yaml(
            "apply",
            "apiVersion: storage.k8s.io/v1\nkind: StorageClass\nmetadata:\n  name: nfs\n  annotations: {storageclass.kubernetes.io/is-default-class: \"true\"}\nprovisioner: example.com/nfs\n",
        );
        s.ok(&[
            "annotate",
            "sc",
            "local-path",
            "--overwrite",
            "storageclass.kubernetes.io/is-default-class=false",
        ]);
        s.apply_yaml("apply", &claim("elsewhere", None, "1Gi", "ReadWriteOnce"));
        assert_eq!(
            s.get_json(&["pvc", "elsewhere"])["spec"]["storageClassName"],
            "nfs"
        );
        let names: Vec<String> = rows(&s, &["get", "sc"])
            .into_iter()
            .map(|r| r[..r.len().min(2)].join(" "))
            .collect();
        assert!(names.contains(&"nfs (default)".to_string()), "{names:?}");
        assert!(
            names.contains(&"local-path orc.io/local-path".to_string()),
            "{names:?}"
        );
    }

    #[test]
    fn disabling_local_storage_creates_no_class() {
        let s = Server::start_with(&["--disable-local-storage"]);
        let out = s.kubectl(&["get", "sc", "-o", "name"]);
        assert!(out.status.success());
        assert_eq!(stdout(&out).trim(), "", "no class expected");
    }
}

mod local_path {
    use super::*;
    use support::kubelet::*;

    fn pvc(w: &World, name: &str) -> Value {
        let out = w.kubectl(&["get", "pvc", name, "-o", "json"]);
        serde_json::from_slice(&out.stdout).unwrap_or_default()
    }

    fn pod_using(name: &str, claim: &str) -> String {
        format!(
            "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  terminationGracePeriodSeconds: 0
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"sleep 3600\"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}}}
"
        )
    }

    #[test]
    fn a_local_path_claim_gets_a_directory_on_the_node_of_its_first_pod() {
        let w = World::start();

        w.step("a pod whose claim does not exist stays Pending with upstream's reason");
        w.apply(&pod_using("orphan", "missing"));
        w.wait_for("FailedScheduling for the missing claim", || {
            w.pod_events("orphan").iter().any(|(reason, message)| {
                reason == "FailedScheduling"
                    && message.contains("persistentvolumeclaim \"missing\" not found")
            })
        });
        assert_eq!(w.pod("orphan").unwrap()["spec"]["nodeName"], Value::Null);
        w.kubectl_ok(&["delete", "pod", "orphan"]);

        w.step("a WaitForFirstConsumer claim stays Pending without a pod");
        w.apply(&claim("data", None, "64Mi", "ReadWriteOnce"));
        let created = pvc(&w, "data");
        assert_eq!(created["spec"]["storageClassName"], "local-path");
        std::thread::sleep(POLL_EVERY * 5);
        assert_eq!(pvc(&w, "data")["status"]["phase"], "Pending");
        assert!(w.kubectl_out(&["get", "pv", "-o", "name"]).is_empty());

        w.step("the pod's node is selected, a volume with its node affinity is bound");
        w.apply(&pod_using("user", "data"));
        w.wait_for("claim data Bound", || {
            pvc(&w, "data")["status"]["phase"] == "Bound"
        });
        let claim = pvc(&w, "data");
        let uid = claim["metadata"]["uid"].as_str().unwrap().to_string();
        assert_eq!(
            claim["metadata"]["annotations"]["volume.kubernetes.io/selected-node"],
            "kt-node"
        );
        let pv_name = format!("pvc-{uid}");
        assert_eq!(claim["spec"]["volumeName"], pv_name.as_str());
        let out = w.kubectl(&["get", "pv", &pv_name, "-o", "json"]);
        let pv: Value = serde_json::from_slice(&out.stdout).unwrap();
        let dir = w
            .data_dir()
            .join("storage")
            .join(format!("pvc-{uid}_default_data"));
        assert_eq!(pv["spec"]["hostPath"]["path"], dir.to_str().unwrap());
        assert_eq!(
            pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"][0]["matchExpressions"][0]
                ["values"],
            serde_json::json!(["kt-node"])
        );
        assert_eq!(
            pv["metadata"]["annotations"]["pv.kubernetes.io/provisioned-by"],
            "orc.io/local-path"
        );
        assert_eq!(pv["spec"]["persistentVolumeReclaimPolicy"], "Delete");
        assert_eq!(w.pod("user").unwrap()["spec"]["nodeName"], "kt-node");
        w.wait_for("the volume's directory on the node", || dir.is_dir());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o777);

        w.step("the claim is protected while its pod exists");
        w.kubectl_ok(&["delete", "pvc", "data", "--wait=false"]);
        std::thread::sleep(POLL_EVERY * 5);
        assert_eq!(
            pvc(&w, "data")["metadata"]["finalizers"],
            serde_json::json!(["kubernetes.io/pvc-protection"])
        );

        w.step("deleting pod and claim removes the volume and its directory");
        w.remember("user");
        w.kubectl_ok(&["delete", "pod", "user", "--wait=false"]);
        w.wait_for("the claim gone", || {
            !w.kubectl(&["get", "pvc", "data"]).status.success()
        });
        w.wait_for("the volume gone", || {
            !w.kubectl(&["get", "pv", &pv_name]).status.success()
        });
        assert!(!dir.exists(), "directory {} left behind", dir.display());
    }
}
