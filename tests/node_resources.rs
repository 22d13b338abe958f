//! What a node keeps for itself, on the kubelet's one-node cluster (`support::kubelet`;
//! needs root and containerd): image garbage collection on a small image filesystem,
//! reservations and `--max-pods` in the Node's allocatable and at admission, OOM scores
//! of orc and of pods by QoS class, and bad flags refused in one line.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

mod support;
use support::host::{repo_path, run};
use support::kubelet::*;

/// The unused image the GC test imports: 6 MB of incompressible padding.
const UNUSED_IMAGE: &str = "docker.io/library/unused:test";
const PAD_BYTES: &str = "6000000";
/// Percent of the image filesystem at which collection starts, and its target.
const HIGH: u64 = 60;
const LOW: u64 = 50;

fn pod_yaml(name: &str, resources: &str, node_name: bool) -> String {
    let node = if node_name {
        "  nodeName: kt-node\n"
    } else {
        ""
    };
    format!(
        "apiVersion: v1
kind: Pod
metadata:
  name: {name}
spec:
{node}  terminationGracePeriodSeconds: 1
  containers:
  - name: app
    image: {IMAGE}
    imagePullPolicy: IfNotPresent
    command: [\"sleep\", \"3600\"]
    resources: {resources}
"
    )
}

/// Names of the images in the test's containerd namespace.
fn images(w: &World) -> Vec<String> {
    let out = run(Command::new("ctr")
        .arg("--address")
        .arg(w.dir.join("containerd.sock"))
        .args(["-n", NAMESPACE, "images", "ls", "-q"]));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::to_string)
        .collect()
}

/// Percent in use and bytes of the filesystem holding `path`.
fn usage(path: &Path) -> (u64, u64, u64) {
    let st = nix::sys::statvfs::statvfs(path).expect("statvfs");
    let block = st.fragment_size() as u64;
    let capacity = st.blocks() as u64 * block;
    let available = st.blocks_available() as u64 * block;
    (100 - available * 100 / capacity, capacity, available)
}

/// Grows the filler file in `root` until the filesystem is `percent` full.
fn fill_to(root: &Path, percent: u64) {
    let (_, capacity, available) = usage(root);
    let target_available = capacity * (100 - percent) / 100;
    let more = available.saturating_sub(target_available) as usize;
    let filler = root.join("filler");
    let mut data = std::fs::read(&filler).unwrap_or_default();
    data.resize(data.len() + more, 0xa5);
    std::fs::write(&filler, data).expect("write the filler");
}

fn node_events(w: &World, reason: &str) -> Vec<String> {
    let out = w.kubectl(&["get", "events", "-n", "default", "-o", "json"]);
    let list: Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    list["items"]
        .as_array()
        .into_iter()
        .flatten()
        .filter(|e| e["involvedObject"]["kind"] == "Node" && e["reason"] == reason)
        .map(|e| format!("{} (x{})", e["message"].as_str().unwrap_or(""), e["count"]))
        .collect()
}

#[test]
fn image_gc_removes_an_unused_image_and_keeps_a_used_one() {
    let mut w = World::prepare_with(false, Some("64m"));
    let built = run(Command::new(repo_path("scripts/build-test-image.sh"))
        .env("PAD_BYTES", PAD_BYTES)
        .arg(w.data_dir().join("agent/images/unused.tar"))
        .arg(UNUSED_IMAGE));
    assert!(built.status.success(), "build the padded image: {built:?}");
    // Added to the World's defaults (node-pressure eviction off: this tests image GC).
    w.server_args.extend(
        [
            "--image-gc-high-threshold",
            &HIGH.to_string(),
            "--image-gc-low-threshold",
            &LOW.to_string(),
            "--image-minimum-gc-age",
            "1s",
            "--image-gc-period",
            "1s",
            "--containerd-root",
        ]
        .map(String::from),
    );
    w.server_args
        .push(w.dir.join("root").to_string_lossy().into_owned());
    w.spawn_server();
    let root = w.dir.join("root");

    w.step("a pod uses busybox:test; the padded image is unused; the filesystem is below the threshold");
    w.apply(&pod_yaml("keeper", "{}", false));
    w.wait_running("keeper");
    w.remember("keeper");
    w.wait_for("the images to be imported", || {
        images(&w).contains(&UNUSED_IMAGE.to_string())
    });
    let (used, _, _) = usage(&root);
    assert!(
        used < HIGH - 10,
        "{used}% of the image filesystem in use before filling it"
    );
    assert!(images(&w).contains(&UNUSED_IMAGE.to_string()));

    w.step("past the high threshold, the unused image goes and the used ones stay");
    fill_to(&root, HIGH + 2);
    w.wait_for("the unused image to be removed", || {
        !images(&w).contains(&UNUSED_IMAGE.to_string())
    });
    let left = images(&w);
    assert!(left.contains(&IMAGE.to_string()), "{left:?}");
    // The same image under another name: used as well, so kept.
    assert!(left.contains(&OTHER_IMAGE.to_string()), "{left:?}");
    let (used, _, _) = usage(&root);
    assert!(used < LOW, "{used}% in use after the collection");
    assert!(
        w.log().contains("removed unused image"),
        "no log line per removed image"
    );
    // While the images were being imported the filesystem may have been past the
    // threshold for a moment with nothing old enough to remove: such a failure event may
    // exist already (events are posted a moment late). The next one must be new.
    std::thread::sleep(std::time::Duration::from_secs(2));
    let failures_before = node_events(&w, "FreeDiskSpaceFailed");
    let keeper = w.pod("keeper").unwrap();
    assert!(container_status(&keeper)["state"]["running"].is_object());

    w.step("with nothing left to remove, the node says so in a FreeDiskSpaceFailed event");
    fill_to(&root, 95);
    w.wait_for("a new FreeDiskSpaceFailed event on the node", || {
        node_events(&w, "FreeDiskSpaceFailed") != failures_before
    });
    let message = &node_events(&w, "FreeDiskSpaceFailed")[0];
    assert!(
        message.starts_with("Failed to garbage collect required amount of images"),
        "{message}"
    );
    let left = images(&w);
    assert!(left.contains(&IMAGE.to_string()), "{left:?}");
    std::fs::remove_file(root.join("filler")).unwrap();
}

#[test]
fn reservations_max_pods_and_oom_scores_as_upstream() {
    let mut w = World::prepare(false);
    // Added to the World's defaults: with eviction off (`--eviction-hard=`) no hard
    // memory threshold is held back from allocatable, only the reservations.
    w.server_args.extend(
        [
            "--system-reserved",
            "cpu=100m,memory=100Mi",
            "--kube-reserved",
            "cpu=200m,memory=156Mi",
            "--max-pods",
            "3",
        ]
        .map(String::from),
    );
    w.spawn_server();
    let server_pid = w.server.as_ref().unwrap().id();

    w.step("orc itself is one of the OOM killer's last choices (given CAP_SYS_RESOURCE)");
    // Without CAP_SYS_RESOURCE (some containers and CI sandboxes) no score can be
    // lowered: orc says so, and keeps pods' scores at or above its own (the floor).
    let may_lower = orc::agent::kubelet::qos::may_lower_oom_scores(
        &std::fs::read_to_string("/proc/self/status").unwrap(),
    );
    let inherited: i32 = std::fs::read_to_string("/proc/self/oom_score_adj")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let own: i32 = std::fs::read_to_string(format!("/proc/{server_pid}/oom_score_adj"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let floor = if may_lower {
        assert_eq!(own, -999);
        -1000
    } else {
        assert_eq!(own, inherited);
        assert!(w.log().contains("the OOM killer may pick orc first"));
        inherited
    };

    w.step("allocatable is capacity minus the reservations; pods capacity is --max-pods");
    let node: Value =
        serde_json::from_str(&w.kubectl_ok(&["get", "node", "kt-node", "-o", "json"])).unwrap();
    let status = &node["status"];
    assert_eq!(status["capacity"]["pods"], "3");
    assert_eq!(status["allocatable"]["pods"], "3");
    let cpus: i64 = status["capacity"]["cpu"].as_str().unwrap().parse().unwrap();
    let cpu_left = cpus * 1000 - 300;
    let expected_cpu = if cpu_left % 1000 == 0 {
        (cpu_left / 1000).to_string()
    } else {
        format!("{cpu_left}m")
    };
    assert_eq!(status["allocatable"]["cpu"], expected_cpu.as_str());
    let ki = |q: &Value| -> u64 {
        let s = q.as_str().unwrap();
        if let Some(n) = s.strip_suffix("Ki") {
            n.parse().unwrap()
        } else if let Some(n) = s.strip_suffix("Mi") {
            n.parse::<u64>().unwrap() * 1024
        } else if let Some(n) = s.strip_suffix("Gi") {
            n.parse::<u64>().unwrap() * 1024 * 1024
        } else {
            s.parse::<u64>().unwrap() / 1024
        }
    };
    let capacity_ki = ki(&status["capacity"]["memory"]);
    assert_eq!(
        ki(&status["allocatable"]["memory"]),
        capacity_ki - 256 * 1024
    );

    w.step("containers get oom_score_adj by their pod's QoS class");
    w.apply(&pod_yaml("best-effort", "{}", false));
    w.apply(&pod_yaml(
        "guaranteed",
        "{limits: {cpu: 100m, memory: 32Mi}}",
        false,
    ));
    w.apply(&pod_yaml("burstable", "{requests: {memory: 64Mi}}", false));
    for name in ["best-effort", "guaranteed", "burstable"] {
        w.wait_running(name);
        w.remember(name);
    }
    let score = |name: &str| {
        w.kubectl_ok(&["exec", name, "--", "cat", "/proc/1/oom_score_adj"])
            .trim()
            .to_string()
    };
    assert_eq!(score("best-effort"), 1000.max(floor).to_string());
    assert_eq!(score("guaranteed"), (-997).max(floor).to_string());
    let burstable = 1000 - (1000 * 64 * 1024) / capacity_ki as i64;
    assert_eq!(
        score("burstable"),
        (burstable.clamp(3, 999) as i32).max(floor).to_string()
    );

    w.step("a fourth pod bound to the node is rejected with OutOfpods");
    w.apply(&pod_yaml("one-too-many", "{}", true));
    w.wait_for("the fourth pod to fail", || {
        w.pod("one-too-many")
            .is_some_and(|p| p["status"]["phase"] == "Failed")
    });
    let pod = w.pod("one-too-many").unwrap();
    assert_eq!(pod["status"]["reason"], "OutOfpods", "{}", pod["status"]);
    assert_eq!(
        pod["status"]["message"],
        "Node didn't have enough resource: pods, requested: 1, used: 3, capacity: 3"
    );
    assert!(w
        .pod_events("one-too-many")
        .iter()
        .any(|(reason, _)| reason == "OutOfpods"));
}

#[test]
fn malformed_node_resource_flags_stop_orc_with_one_line_naming_the_flag() {
    let dir = tempfile::tempdir().unwrap();
    for (flag, value) in [
        ("--system-reserved", "memory=lots"),
        ("--kube-reserved", "cpu"),
        ("--max-pods", "0"),
        ("--container-log-max-files", "1"),
        ("--image-gc-low-threshold", "95"),
    ] {
        let out = run(Command::new(ORC)
            .arg("server")
            .arg("--data-dir")
            .arg(dir.path())
            .args([flag, value]));
        assert!(!out.status.success(), "{flag} {value} was accepted");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(flag), "{stderr}");
        assert!(
            std::fs::read_dir(dir.path()).unwrap().next().is_none(),
            "{flag}: the server wrote to its data dir before refusing"
        );
    }
}
