//! Generic ephemeral volumes (upstream `component-helpers/storage/ephemeral`): the name
//! of the claim a pod's ephemeral volume gets, and whether a claim is the pod's.

use serde_json::Value;

/// The PVC name of ephemeral volume `volume` of pod `pod` (`VolumeClaimName`).
pub fn claim_name(pod: &str, volume: &str) -> String {
    format!("{pod}-{volume}")
}

/// Whether `pvc` has the pod of uid `pod_uid` as its controller (`VolumeIsForPod`).
pub fn claim_is_for_pod(pvc: &Value, pod_uid: &str) -> bool {
    pvc["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["controller"].as_bool() == Some(true) && r["uid"].as_str() == Some(pod_uid))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_claim_is_named_after_pod_and_volume_and_must_be_controlled_by_the_pod() {
        assert_eq!(claim_name("web-0", "scratch"), "web-0-scratch");
        let owned = json!({"metadata": {"ownerReferences": [
            {"kind": "Pod", "uid": "u1", "controller": true}]}});
        assert!(claim_is_for_pod(&owned, "u1"));
        assert!(!claim_is_for_pod(&owned, "u2"));
        let not_controller =
            json!({"metadata": {"ownerReferences": [{"kind": "Pod", "uid": "u1"}]}});
        assert!(!claim_is_for_pod(&not_controller, "u1"));
        assert!(!claim_is_for_pod(&json!({}), "u1"));
    }
}
