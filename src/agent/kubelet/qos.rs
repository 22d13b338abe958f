//! OOM protection as upstream's kubelet (pkg/kubelet/qos/policy.go): the agent itself
//! is (almost) never the OOM killer's choice, and pods' containers get an
//! `oom_score_adj` by QoS class, so BestEffort pods go first and Guaranteed ones last.

use std::path::Path;

use serde_json::Value;

use crate::api::quantity::Quantity;

/// The kubelet's own score (upstream `KubeletOOMScoreAdj`); orc gives it to the whole
/// agent (and the server with its embedded agent).
pub const KUBELET_OOM_SCORE_ADJ: i32 = -999;
/// Guaranteed pods and node-critical pods (upstream `guaranteedOOMScoreAdj`).
pub const GUARANTEED_OOM_SCORE_ADJ: i32 = -997;
/// BestEffort pods: killed first (upstream `besteffortOOMScoreAdj`).
pub const BEST_EFFORT_OOM_SCORE_ADJ: i32 = 1000;
/// The priority class of pods that must outlive everything else on their node.
const NODE_CRITICAL_CLASS: &str = "system-node-critical";

#[derive(Debug, thiserror::Error)]
pub enum OomError {
    #[error("set oom_score_adj {score} in {path}")]
    Write {
        score: i32,
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// The `oom_score_adj` of `container` of `pod` on a node with `memory_capacity` bytes.
/// Burstable containers get `1000 - 1000 * memoryRequest / capacity`, kept above what
/// Guaranteed ones get and below BestEffort (upstream `GetContainerOOMScoreAdjust`).
pub fn oom_score_adj(pod: &Value, container: &Value, memory_capacity: u64) -> i32 {
    if pod["spec"]["priorityClassName"] == NODE_CRITICAL_CLASS {
        return GUARANTEED_OOM_SCORE_ADJ;
    }
    match super::status::qos_class(&pod["spec"]).as_str() {
        "Guaranteed" => return GUARANTEED_OOM_SCORE_ADJ,
        "BestEffort" => return BEST_EFFORT_OOM_SCORE_ADJ,
        _ => {}
    }
    let request = Quantity::from_json(&container["resources"]["requests"]["memory"])
        .map(|q| q.value().max(0) as i128)
        .unwrap_or(0);
    let capacity = i128::from(memory_capacity.max(1));
    let score = (1000 - (1000 * request) / capacity) as i32;
    if score < 1000 + GUARANTEED_OOM_SCORE_ADJ {
        1000 + GUARANTEED_OOM_SCORE_ADJ
    } else if score >= BEST_EFFORT_OOM_SCORE_ADJ {
        BEST_EFFORT_OOM_SCORE_ADJ - 1
    } else {
        score
    }
}

/// Capability needed to lower an `oom_score_adj` (`CAP_SYS_RESOURCE`).
const CAP_SYS_RESOURCE: u32 = 24;

/// Whether the `CapEff` line of a `/proc/PID/status` holds `CAP_SYS_RESOURCE`.
pub fn may_lower_oom_scores(status: &str) -> bool {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .is_some_and(|caps| caps & (1 << CAP_SYS_RESOURCE) != 0)
}

/// The lowest score containers can be given: none (`None`) with `CAP_SYS_RESOURCE`;
/// without it (a restricted container or user namespace) nobody below this process may
/// lower a score, so the process's own — as containerd's `restrict_oom_score_adj` does,
/// lest runc fail to start Guaranteed containers.
pub fn oom_score_floor(proc_dir: &Path) -> Option<i32> {
    let status = std::fs::read_to_string(proc_dir.join("self/status")).ok()?;
    if may_lower_oom_scores(&status) {
        return None;
    }
    std::fs::read_to_string(proc_dir.join("self/oom_score_adj"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

/// Writes `score` to `proc_dir/self/oom_score_adj` (lowering it needs root).
pub fn set_own_oom_score_adj(proc_dir: &Path, score: i32) -> Result<(), OomError> {
    let path = proc_dir.join("self").join("oom_score_adj");
    std::fs::write(&path, score.to_string()).map_err(|source| OomError::Write {
        score,
        path: path.display().to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const GI: u64 = 1 << 30;

    fn pod(containers: Value) -> Value {
        json!({"spec": {"containers": containers}})
    }

    #[test]
    fn best_effort_goes_first_and_guaranteed_last() {
        let be = pod(json!([{"name": "a"}]));
        assert_eq!(oom_score_adj(&be, &be["spec"]["containers"][0], GI), 1000);
        let g = pod(json!([{"name": "a", "resources": {"limits": {"cpu": "1", "memory": "1Gi"}}}]));
        assert_eq!(oom_score_adj(&g, &g["spec"]["containers"][0], GI), -997);
    }

    #[test]
    fn burstable_scales_with_the_memory_request() {
        let c = json!({"name": "a", "resources": {"requests": {"memory": "256Mi"}}});
        let p = pod(json!([c.clone()]));
        assert_eq!(oom_score_adj(&p, &c, 4 * GI), 1000 - 1000 / 16);
        // Asking for (nearly) all memory stays above Guaranteed.
        let big = json!({"name": "a", "resources": {"requests": {"memory": "4Gi"}}});
        assert_eq!(oom_score_adj(&pod(json!([big.clone()])), &big, 4 * GI), 3);
        // A tiny or no memory request stays below BestEffort.
        let cpu_only = json!({"name": "a", "resources": {"requests": {"cpu": "100m"}}});
        assert_eq!(
            oom_score_adj(&pod(json!([cpu_only.clone()])), &cpu_only, 4 * GI),
            999
        );
    }

    #[test]
    fn node_critical_pods_are_protected_like_guaranteed_ones() {
        let mut p = pod(json!([{"name": "a"}]));
        p["spec"]["priorityClassName"] = json!("system-node-critical");
        assert_eq!(oom_score_adj(&p, &p["spec"]["containers"][0], GI), -997);
    }

    #[test]
    fn scores_are_not_lowered_without_the_capability_to() {
        assert!(may_lower_oom_scores(
            "Name:\torc\nCapEff:\t000001ffffffffff\n"
        ));
        assert!(!may_lower_oom_scores("CapEff:\t000001fffeffffff\n"));
        assert!(!may_lower_oom_scores("no caps"));
        let proc_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc_dir.path().join("self")).unwrap();
        std::fs::write(proc_dir.path().join("self/status"), "CapEff:\t0\n").unwrap();
        std::fs::write(proc_dir.path().join("self/oom_score_adj"), "0\n").unwrap();
        assert_eq!(oom_score_floor(proc_dir.path()), Some(0));
        std::fs::write(proc_dir.path().join("self/status"), "CapEff:\t1000000\n").unwrap();
        assert_eq!(oom_score_floor(proc_dir.path()), None);
    }

    #[test]
    fn own_score_is_written_to_proc() {
        let proc_dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(proc_dir.path().join("self")).unwrap();
        set_own_oom_score_adj(proc_dir.path(), KUBELET_OOM_SCORE_ADJ).unwrap();
        let written = std::fs::read_to_string(proc_dir.path().join("self/oom_score_adj")).unwrap();
        assert_eq!(written, "-999");
        let missing = tempfile::tempdir().unwrap();
        assert!(set_own_oom_score_adj(missing.path(), 0).is_err());
    }
}
