//! Kubelet volume types in real pods, on the one-node cluster of `support::kubelet`
//! (needs root and containerd): downwardAPI and projected files (updated when the
//! labels change), emptyDir `medium: Memory` as a sized tmpfs, subPath and subPathExpr,
//! read-only mounts, fsGroup ownership, an unsupported type leaving the pod
//! ContainerCreating with a FailedMount event; persistentVolumeClaim volumes on a
//! hostPath PV (bound by hand, as a binding controller would) shared by two pods one
//! after the other, and generic ephemeral volumes whose claim the server makes and
//! deletes with the pod.

use std::process::Output;

mod support;
use support::kubelet::*;

const FS_GROUP: u32 = 2345;

/// `sh -c script` in container `c` of pod `name`.
fn sh(w: &World, name: &str, script: &str) -> Output {
    w.kubectl(&["exec", name, "--", "sh", "-c", script])
}

/// Stdout of a script that must succeed in pod `name`.
fn sh_ok(w: &World, name: &str, script: &str) -> String {
    let out = sh(w, name, script);
    assert!(
        out.status.success(),
        "{script:?} in pod {name}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim_end().to_string()
}

fn files_pod() -> String {
    format!(
        "---
apiVersion: v1
kind: ConfigMap
metadata:
  name: vol-cm
data:
  color: blue
---
apiVersion: v1
kind: Secret
metadata:
  name: vol-secret
stringData:
  pw: s3cret
---
apiVersion: v1
kind: Pod
metadata:
  name: files
  labels:
    app: files
    tier: one
  annotations:
    note: hello
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  securityContext:
    fsGroup: {FS_GROUP}
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sleep\", \"3600\"]
    env:
    - name: POD
      valueFrom:
        fieldRef:
          fieldPath: metadata.name
    resources:
      limits:
        memory: 64Mi
        cpu: 500m
    volumeMounts:
    - {{name: info, mountPath: /etc/info}}
    - {{name: all, mountPath: /etc/all}}
    - {{name: mem, mountPath: /mem}}
    - {{name: scratch, mountPath: /scratch}}
    - {{name: scratch, mountPath: /sub, subPath: a/b}}
    - {{name: scratch, mountPath: /per-pod, subPathExpr: \"logs/$(POD)\"}}
    - {{name: scratch, mountPath: /ro, readOnly: true}}
  volumes:
  - name: info
    downwardAPI:
      items:
      - {{path: labels, fieldRef: {{fieldPath: metadata.labels}}}}
      - {{path: annotations, fieldRef: {{fieldPath: metadata.annotations}}}}
      - {{path: name, fieldRef: {{fieldPath: metadata.name}}}}
      - {{path: uid, fieldRef: {{fieldPath: metadata.uid}}}}
      - path: mem_limit
        resourceFieldRef: {{containerName: c, resource: limits.memory, divisor: 1Mi}}
      - path: cpu_limit
        resourceFieldRef: {{containerName: c, resource: limits.cpu, divisor: 1m}}
  - name: all
    projected:
      defaultMode: 0440
      sources:
      - configMap: {{name: vol-cm}}
      - secret:
          name: vol-secret
          items: [{{key: pw, path: secret/pw, mode: 0400}}]
      - downwardAPI:
          items: [{{path: ns, fieldRef: {{fieldPath: metadata.namespace}}}}]
  - name: mem
    emptyDir: {{medium: Memory, sizeLimit: 16Mi}}
  - name: scratch
    emptyDir: {{}}
"
    )
}

#[test]
fn file_volumes_sub_paths_read_only_mounts_and_fs_group() {
    let w = World::start();
    w.apply(&files_pod());
    w.apply(&format!(
        "---
apiVersion: v1
kind: Pod
metadata:
  name: share
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sleep\", \"3600\"]
    volumeMounts: [{{name: nas, mountPath: /nas}}]
  volumes:
  - name: nas
    nfs: {{server: 192.0.2.1, path: /export}}
"
    ));
    w.wait_running("files");
    let pod = w.pod("files").unwrap();
    let (uid, namespace) = (
        pod["metadata"]["uid"].as_str().unwrap().to_string(),
        pod["metadata"]["namespace"].as_str().unwrap().to_string(),
    );

    w.step("the downwardAPI volume shows the pod's metadata and limits");
    let info = |f: &str| sh_ok(&w, "files", &format!("cat /etc/info/{f}"));
    assert_eq!(info("labels"), "app=\"files\"\ntier=\"one\"");
    assert!(info("annotations").contains("note=\"hello\""));
    assert_eq!(info("name"), "files");
    assert_eq!(info("uid"), uid);
    assert_eq!(info("mem_limit"), "64");
    assert_eq!(info("cpu_limit"), "500");

    w.step("one projected volume holds configMap, secret and downwardAPI files");
    assert_eq!(sh_ok(&w, "files", "cat /etc/all/color"), "blue");
    assert_eq!(sh_ok(&w, "files", "cat /etc/all/secret/pw"), "s3cret");
    assert_eq!(sh_ok(&w, "files", "cat /etc/all/ns"), namespace);
    let listing = sh_ok(&w, "files", "ls -a /etc/all");
    assert!(
        listing.contains("..data"),
        "atomic writer layout: {listing}"
    );

    w.step("a label change reaches the downwardAPI file");
    w.kubectl_ok(&["label", "pod", "files", "tier=two", "--overwrite"]);
    w.wait_for("the new label in /etc/info/labels", || {
        sh(&w, "files", "cat /etc/info/labels").stdout == b"app=\"files\"\ntier=\"two\""
    });

    w.step("emptyDir medium Memory is a tmpfs of sizeLimit");
    let mounts = sh_ok(&w, "files", "cat /proc/mounts");
    let mem = mounts
        .lines()
        .find(|l| l.split_whitespace().nth(1) == Some("/mem"))
        .unwrap_or_else(|| panic!("/mem in /proc/mounts: {mounts}"));
    assert!(mem.starts_with("tmpfs /mem tmpfs "), "{mem}");
    assert!(mem.contains("size=16384k"), "{mem}");

    w.step("subPath and subPathExpr mount directories inside the volume");
    sh_ok(&w, "files", "echo x > /sub/f && echo y > /per-pod/f");
    assert_eq!(sh_ok(&w, "files", "cat /scratch/a/b/f"), "x");
    assert_eq!(sh_ok(&w, "files", "cat /scratch/logs/files/f"), "y");

    w.step("a readOnly mount refuses writes");
    let write = sh(&w, "files", "touch /ro/nope");
    assert!(!write.status.success(), "wrote to a read-only mount");
    assert!(
        String::from_utf8_lossy(&write.stderr).contains("Read-only file system"),
        "{write:?}"
    );

    w.step("fsGroup owns the volumes: group, group bits, setgid directories");
    let stat = |path: &str| sh_ok(&w, "files", &format!("busybox stat -L -c '%g %a' {path}"));
    assert_eq!(stat("/scratch"), format!("{FS_GROUP} 2777"));
    assert_eq!(stat("/mem"), format!("{FS_GROUP} 3777"));
    sh_ok(&w, "files", "touch /scratch/new");
    assert_eq!(
        sh_ok(&w, "files", "busybox stat -c %g /scratch/new"),
        FS_GROUP.to_string(),
        "new files inherit the group"
    );
    assert_eq!(stat("/etc/all/color"), format!("{FS_GROUP} 440"));
    assert_eq!(stat("/etc/all/secret/pw"), format!("{FS_GROUP} 440"));
    assert_eq!(stat("/etc/info/name"), format!("{FS_GROUP} 644"));

    w.step("an unsupported volume type leaves the pod ContainerCreating with a FailedMount event");
    w.wait_for("the FailedMount event naming nfs", || {
        w.pod_events("share")
            .iter()
            .any(|(reason, msg)| reason == "FailedMount" && msg.contains("volume type nfs"))
    });
    let share = w.pod("share").unwrap();
    assert_eq!(share["status"]["phase"], "Pending");
    assert_eq!(
        container_status(&share)["state"]["waiting"]["reason"],
        "ContainerCreating"
    );
    assert!(w.log().lines().all(|l| !l.contains("panicked")));
}

fn claim_pod(name: &str, claim: &str, read_only: bool, script: &str) -> String {
    format!(
        "---
apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"{script}\"]
    volumeMounts: [{{name: data, mountPath: /data}}]
  volumes:
  - name: data
    persistentVolumeClaim: {{claimName: {claim}, readOnly: {read_only}}}
"
    )
}

/// A hostPath PV at `path` bound (by hand) to claim `namespace/claim`.
fn bind_by_hand(w: &World, pv: &str, path: &str, namespace: &str, claim: &str) {
    w.apply(&format!(
        "---
apiVersion: v1
kind: PersistentVolume
metadata:
  name: {pv}
spec:
  capacity: {{storage: 1Gi}}
  accessModes: [ReadWriteOnce]
  persistentVolumeReclaimPolicy: Retain
  claimRef: {{namespace: {namespace}, name: {claim}}}
  hostPath: {{path: {path}, type: DirectoryOrCreate}}
"
    ));
    w.kubectl_ok(&[
        "patch",
        "pvc",
        claim,
        "--type=merge",
        "-p",
        &format!("{{\"spec\":{{\"volumeName\":\"{pv}\"}}}}"),
    ]);
    for (kind, name) in [("pv", pv), ("pvc", claim)] {
        w.kubectl_ok(&[
            "patch",
            kind,
            name,
            "--subresource=status",
            "--type=merge",
            "-p",
            "{\"status\":{\"phase\":\"Bound\"}}",
        ]);
    }
}

#[test]
fn claims_mount_their_bound_volume_and_ephemeral_claims_live_with_the_pod() {
    let w = World::start();
    let namespace = w.kubectl_out(&["config", "view", "--minify", "-o", "jsonpath={..namespace}"]);
    let namespace = if namespace.is_empty() {
        "default".to_string()
    } else {
        namespace
    };
    let host_dir = w.dir.join("pv-data");

    w.step("a pod of an unbound claim waits with a FailedMount event");
    w.apply(
        "---
apiVersion: v1
kind: PersistentVolumeClaim
metadata:
  name: data
spec:
  accessModes: [ReadWriteOnce]
  resources: {requests: {storage: 1Gi}}
",
    );
    w.apply(&claim_pod(
        "writer",
        "data",
        false,
        "echo hello > /data/f && sleep 3600",
    ));
    w.wait_for("the FailedMount event of the unbound claim", || {
        w.pod_events("writer").iter().any(|(reason, msg)| {
            reason == "FailedMount"
                && msg.contains(&format!("PVC {namespace}/data: PVC is not bound"))
        })
    });
    assert_eq!(w.pod("writer").unwrap()["status"]["phase"], "Pending");

    w.step("once bound, the pod writes into the PV's directory");
    bind_by_hand(
        &w,
        "pv-data",
        host_dir.to_str().unwrap(),
        &namespace,
        "data",
    );
    w.wait_running("writer");
    w.wait_for("the file on the PV", || {
        std::fs::read_to_string(host_dir.join("f")).is_ok_and(|s| s == "hello\n")
    });
    w.kubectl_ok(&["delete", "pod", "writer", "--wait=true", "--timeout=30s"]);

    w.step("a second pod reads the data through a read-only claim volume");
    w.apply(&claim_pod("reader", "data", true, "sleep 3600"));
    w.wait_running("reader");
    assert_eq!(sh_ok(&w, "reader", "cat /data/f"), "hello");
    assert!(!sh(&w, "reader", "touch /data/g").status.success());

    w.step("an ephemeral volume gets its claim <pod>-<volume>, owned by the pod");
    w.apply(&format!(
        "---
apiVersion: v1
kind: Pod
metadata:
  name: eph
spec:
  nodeName: kt-node
  terminationGracePeriodSeconds: 0
  containers:
  - name: c
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sh\", \"-c\", \"echo eph > /scratch/f && sleep 3600\"]
    volumeMounts: [{{name: scratch, mountPath: /scratch}}]
  volumes:
  - name: scratch
    ephemeral:
      volumeClaimTemplate:
        metadata:
          labels: {{made-for: eph}}
        spec:
          accessModes: [ReadWriteOnce]
          resources: {{requests: {{storage: 1Gi}}}}
"
    ));
    w.wait_for("the claim eph-scratch", || {
        w.kubectl(&["get", "pvc", "eph-scratch"]).status.success()
    });
    let pvc: serde_json::Value =
        serde_json::from_str(&w.kubectl_ok(&["get", "pvc", "eph-scratch", "-o", "json"])).unwrap();
    let eph_uid = w.pod("eph").unwrap()["metadata"]["uid"].clone();
    let owner = &pvc["metadata"]["ownerReferences"][0];
    assert_eq!(owner["kind"], "Pod");
    assert_eq!(owner["uid"], eph_uid);
    assert_eq!(owner["controller"], true);
    assert_eq!(pvc["metadata"]["labels"]["made-for"], "eph");

    w.step("the ephemeral claim, once bound, is mounted like any claim");
    let eph_dir = w.dir.join("pv-eph");
    bind_by_hand(
        &w,
        "pv-eph",
        eph_dir.to_str().unwrap(),
        &namespace,
        "eph-scratch",
    );
    w.wait_running("eph");
    w.wait_for("the ephemeral volume's file", || {
        std::fs::read_to_string(eph_dir.join("f")).is_ok_and(|s| s == "eph\n")
    });

    w.step("the ephemeral claim is deleted with its pod");
    w.kubectl_ok(&["delete", "pod", "eph", "--wait=true", "--timeout=30s"]);
    w.wait_for("the claim eph-scratch gone", || {
        !w.kubectl(&["get", "pvc", "eph-scratch"]).status.success()
    });
    assert!(w.log().lines().all(|l| !l.contains("panicked")));
}
