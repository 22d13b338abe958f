//! StatefulSets end to end on the one-node cluster of `support::kubelet` (needs root and
//! containerd; see there), driven with real kubectl: ordered start with stable names,
//! hostnames and DNS names, re-creation, claims on local-path volumes whose data outlives
//! a pod, scale down, partitioned rollout, undo,
//! and immutable fields.

mod support;
use serde_json::Value;
use support::kubelet::*;

fn set_yaml(name: &str, replicas: i64, policy: &str, claims: bool) -> String {
    let claim_templates = if claims {
        "
  volumeClaimTemplates:
  - metadata:
      name: data
    spec:
      accessModes: [ReadWriteOnce]
      resources:
        requests:
          storage: 1Gi"
    } else {
        ""
    };
    let mounts = if claims {
        "
        volumeMounts:
        - name: data
          mountPath: /data"
    } else {
        ""
    };
    // Pods with claims go through the scheduler: it picks the node for the local-path
    // claims (WaitForFirstConsumer) before binding them.
    let node_name = if claims {
        ""
    } else {
        "\n      nodeName: kt-node"
    };
    format!(
        "---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  clusterIP: None
  selector:
    app: {name}
  ports:
  - port: 80
---
apiVersion: apps/v1
kind: StatefulSet
metadata:
  name: {name}
spec:
  replicas: {replicas}
  serviceName: {name}
  podManagementPolicy: {policy}
  selector:
    matchLabels:
      app: {name}
  template:
    metadata:
      labels:
        app: {name}
    spec:{node_name}
      terminationGracePeriodSeconds: 0
      containers:
      - name: main
        image: {IMAGE}
        imagePullPolicy: IfNotPresent
        command: [\"sh\", \"-c\", \"exec sleep 3600\"]{mounts}{claim_templates}
"
    )
}

fn ready(pod: &Value) -> bool {
    pod["status"]["phase"] == "Running"
        && pod["status"]["conditions"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

fn live(pod: &Option<Value>) -> bool {
    pod.as_ref()
        .is_some_and(|p| p["metadata"]["deletionTimestamp"].is_null())
}

fn image(w: &World, pod: &str) -> String {
    w.pod(pod).unwrap_or_default()["spec"]["containers"][0]["image"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

/// An OrderedReady set of 2: pods come up in order with stable names, hostnames and DNS
/// names; a deleted pod comes back under its name; scale down takes the highest ordinal
/// first; a partitioned rollout updates only ordinals at or above the partition;
/// `kubectl rollout undo` restores the image; immutable fields are refused.
#[test]
fn statefulset_pods_keep_names_order_storage_and_roll_out_by_ordinal() {
    let w = World::start();

    w.step("OrderedReady: web-1 is created only once web-0 is ready");
    w.apply(&set_yaml("web", 2, "OrderedReady", false));
    w.wait_for("web-0 and web-1 to be ready", || {
        // web-1 first: when it exists, web-0 (read after it) must already be ready.
        let b = w.pod("web-1");
        let a = w.pod("web-0");
        if b.is_some() {
            assert!(
                a.as_ref().is_some_and(ready),
                "web-1 exists while web-0 is not ready"
            );
        }
        a.as_ref().is_some_and(ready) && b.as_ref().is_some_and(ready)
    });
    w.remember("web-0");
    w.remember("web-1");
    let table = w.kubectl_ok(&["get", "sts", "web", "-o", "wide"]);
    assert!(table.starts_with("NAME"), "{table}");
    assert!(
        table.contains("READY") && table.contains("CONTAINERS") && table.contains("IMAGES"),
        "{table}"
    );
    w.wait_for("the status to count 2 ready", || {
        w.kubectl_out(&[
            "get",
            "sts",
            "web",
            "-o",
            "jsonpath={.status.readyReplicas}",
        ]) == "2"
    });
    assert!(w.kubectl_ok(&["get", "sts", "web"]).contains("2/2"));

    w.step("stable hostnames and DNS names through the headless service");
    assert_eq!(w.kubectl_out(&["exec", "web-1", "--", "hostname"]), "web-1");
    let ip = w.pod("web-0").unwrap()["status"]["podIP"]
        .as_str()
        .unwrap()
        .to_string();
    let mut answer = Err(String::new());
    w.wait_for("web-0.web to resolve to its pod", || {
        answer = w.dns_query_from_node("web-0.web.default.svc.cluster.local.", false);
        answer == Ok(("NoError".to_string(), vec![ip.clone()]))
    });

    w.step("a deleted pod is re-created under the same name");
    let uid = w.pod("web-0").unwrap()["metadata"]["uid"].clone();
    w.kubectl_ok(&["delete", "pod", "web-0", "--wait=false"]);
    w.wait_for("a new web-0 to be ready", || {
        w.pod("web-0")
            .is_some_and(|p| p["metadata"]["uid"] != uid && ready(&p))
    });
    w.remember("web-0");

    w.step("partitioned rollout: only ordinals >= partition get the new image");
    w.kubectl_ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec": {"updateStrategy": {"rollingUpdate": {"partition": 1}}}}"#,
    ]);
    w.kubectl_ok(&["set", "image", "sts/web", &format!("main={OTHER_IMAGE}")]);
    let status = w.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(status.contains("partitioned roll out complete"), "{status}");
    assert_eq!(image(&w, "web-1"), OTHER_IMAGE);
    assert_eq!(image(&w, "web-0"), IMAGE, "web-0 is below the partition");
    w.remember("web-1");
    w.kubectl_ok(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec": {"updateStrategy": {"rollingUpdate": {"partition": 0}}}}"#,
    ]);
    let status = w.kubectl_ok(&["rollout", "status", "sts/web", "--timeout=60s"]);
    assert!(status.contains("2 new pods have been updated"), "{status}");
    assert_eq!(image(&w, "web-0"), OTHER_IMAGE);
    w.remember("web-0");
    let history = w.kubectl_ok(&["rollout", "history", "sts/web"]);
    assert!(history.contains("REVISION"), "{history}");
    let second = w.kubectl_ok(&["rollout", "history", "sts/web", "--revision=2"]);
    assert!(second.contains(OTHER_IMAGE), "{second}");

    w.step("kubectl rollout undo restores the previous image");
    w.kubectl_ok(&["rollout", "undo", "sts/web"]);
    w.wait_for("both pods back on the first image and ready", || {
        ["web-0", "web-1"].iter().all(|p| {
            w.pod(p)
                .is_some_and(|pod| ready(&pod) && pod["spec"]["containers"][0]["image"] == IMAGE)
        })
    });
    w.remember("web-0");
    w.remember("web-1");

    w.step("scale down removes the highest ordinal first");
    w.kubectl_ok(&["scale", "sts", "web", "--replicas=3"]);
    w.wait_for("web-2 to be ready", || {
        w.pod("web-2").is_some_and(|p| ready(&p))
    });
    w.remember("web-2");
    w.kubectl_ok(&["scale", "sts", "web", "--replicas=1"]);
    w.wait_for("web-1 and web-2 to be gone", || {
        // web-2 first: while it is there, web-1 (read after it) must still be live.
        let two = w.pod("web-2");
        let one = w.pod("web-1");
        assert!(
            live(&one) || two.is_none(),
            "web-1 went while web-2 was still there"
        );
        one.is_none() && two.is_none()
    });
    assert!(w.pod("web-0").is_some_and(|p| ready(&p)));

    w.step("immutable fields are refused with upstream's message");
    let refused = w.kubectl(&[
        "patch",
        "sts",
        "web",
        "-p",
        r#"{"spec": {"serviceName": "other"}}"#,
    ]);
    assert!(!refused.status.success());
    let message = String::from_utf8_lossy(&refused.stderr);
    assert!(
        message.contains("spec: Forbidden: updates to statefulset spec for fields other than 'replicas', 'ordinals', 'template', 'updateStrategy', 'persistentVolumeClaimRetentionPolicy' and 'minReadySeconds' are forbidden"),
        "{message}"
    );

    w.step("claims from volumeClaimTemplates: one per pod, kept when pods go");
    w.apply(&set_yaml("store", 2, "Parallel", true));
    w.wait_for("claims data-store-0 and data-store-1 and both pods", || {
        w.kubectl(&["get", "pvc", "data-store-0", "data-store-1"])
            .status
            .success()
            && w.pod("store-0").is_some()
            && w.pod("store-1").is_some()
    });
    for (pod, claim) in [("store-0", "data-store-0"), ("store-1", "data-store-1")] {
        let volumes = w.pod(pod).unwrap()["spec"]["volumes"].clone();
        assert!(
            volumes
                .as_array()
                .unwrap()
                .iter()
                .any(|v| v["name"] == "data" && v["persistentVolumeClaim"]["claimName"] == claim),
            "{pod} mounts {claim}: {volumes}"
        );
    }
    w.wait_for("both store pods ready on their local-path volumes", || {
        ["store-0", "store-1"]
            .iter()
            .all(|p| w.pod(p).as_ref().is_some_and(ready))
    });
    w.step("data written to a claim survives deleting its pod");
    w.kubectl_ok(&[
        "exec",
        "store-0",
        "--",
        "sh",
        "-c",
        "echo kept > /data/note",
    ]);
    let first_uid = w.pod("store-0").unwrap()["metadata"]["uid"].clone();
    w.kubectl_ok(&["delete", "pod", "store-0", "--wait=false"]);
    w.wait_for("store-0 re-created and ready", || {
        w.pod("store-0")
            .as_ref()
            .is_some_and(|p| p["metadata"]["uid"] != first_uid && ready(p))
    });
    assert_eq!(
        w.kubectl_out(&["exec", "store-0", "--", "cat", "/data/note"])
            .trim(),
        "kept"
    );
    let claim_uid = w.kubectl_out(&[
        "get",
        "pvc",
        "data-store-0",
        "-o",
        "jsonpath={.metadata.uid}",
    ]);
    w.kubectl_ok(&["delete", "sts", "store", "--wait=false"]);
    w.wait_for("the store pods to be gone", || {
        w.pod("store-0").is_none() && w.pod("store-1").is_none()
    });
    assert_eq!(
        w.kubectl_out(&[
            "get",
            "pvc",
            "data-store-0",
            "-o",
            "jsonpath={.metadata.uid}"
        ]),
        claim_uid,
        "claims outlive their pods and set (Retain)"
    );
}
