//! Which volume a claim binds to, and what binding writes (upstream
//! `FindMatchingVolume`, `bindVolumeToClaim`, `bindClaimToVolume`): pure functions over
//! the objects' JSON, shared by the binding controller and the scheduler.

use serde_json::{json, Value};

use crate::api::object;
use crate::api::quantity::{parse_quantity, Quantity};
use crate::api::selector::LabelSelector;
use crate::api::storage::{class_of, ANN_BIND_COMPLETED, ANN_BOUND_BY_CONTROLLER, YES};
use crate::api::validation::claim_request;

/// `spec.capacity.storage` of a volume.
pub fn volume_capacity(pv: &Value) -> Option<Quantity> {
    match &pv["spec"]["capacity"]["storage"] {
        Value::String(s) => parse_quantity(s).ok(),
        Value::Number(n) => parse_quantity(&n.to_string()).ok(),
        _ => None,
    }
}

fn volume_mode(obj: &Value) -> &str {
    obj["spec"]["volumeMode"].as_str().unwrap_or("Filesystem")
}

/// Upstream `IsVolumeBoundToClaim`: the volume's claimRef names the claim (and its uid,
/// when the ref has one).
pub fn is_volume_bound_to_claim(pv: &Value, pvc: &Value) -> bool {
    let r = &pv["spec"]["claimRef"];
    if !r.is_object() {
        return false;
    }
    let uid = r["uid"].as_str().unwrap_or("");
    r["name"].as_str() == Some(object::name(pvc))
        && r["namespace"].as_str() == object::namespace(pvc)
        && (uid.is_empty() || Some(uid) == object::uid(pvc))
}

/// Every access mode the claim asks for is one the volume offers.
pub fn access_modes_fit(pv: &Value, pvc: &Value) -> bool {
    let offered = pv["spec"]["accessModes"].as_array();
    pvc["spec"]["accessModes"]
        .as_array()
        .into_iter()
        .flatten()
        .all(|m| offered.is_some_and(|o| o.contains(m)))
}

/// Why a volume named by a claim's `volumeName` cannot take it (upstream
/// `checkVolumeSatisfyClaim`), `None` when it can.
pub fn volume_unfit_for_claim(pv: &Value, pvc: &Value) -> Option<String> {
    let request = claim_request(pvc);
    let capacity = volume_capacity(pv);
    if let (Some(r), Some(c)) = (&request, &capacity) {
        if c < r {
            return Some("requested PV is too small".into());
        }
    }
    if class_of(pv) != class_of(pvc) {
        return Some("storageClassName does not match".into());
    }
    if volume_mode(pv) != volume_mode(pvc) {
        return Some("incompatible volumeMode".into());
    }
    if !access_modes_fit(pv, pvc) {
        return Some("incompatible accessMode".into());
    }
    None
}

/// The volume a claim should bind to (upstream `FindMatchingVolume`): one already bound
/// to the claim if it fits, else the smallest available one of the claim's class, size,
/// volume mode, access modes and selector. With `delay_binding` and no `node` only a
/// volume pre-bound to the claim is returned (the scheduler binds the others). With a
/// `node`, volumes whose node affinity excludes it (`fits_node` false) are skipped and
/// only `Available` ones are taken.
pub fn find_matching_volume<'a>(
    pvc: &Value,
    volumes: impl IntoIterator<Item = &'a Value>,
    node: Option<&dyn Fn(&Value) -> bool>,
    delay_binding: bool,
) -> Option<&'a Value> {
    let request = claim_request(pvc)?;
    let class = class_of(pvc);
    let selector = match &pvc["spec"]["selector"] {
        Value::Object(_) => Some(LabelSelector::from_k8s(&pvc["spec"]["selector"]).ok()?),
        _ => None,
    };
    let mut best: Option<(&Value, Quantity)> = None;
    for pv in volumes {
        let Some(capacity) = volume_capacity(pv) else {
            continue;
        };
        if capacity < request || volume_mode(pv) != volume_mode(pvc) || object::is_deleting(pv) {
            continue;
        }
        let fits_node = node.is_none_or(|fits| fits(pv));
        if is_volume_bound_to_claim(pv, pvc) {
            return fits_node.then_some(pv);
        }
        if node.is_none() && delay_binding {
            continue;
        }
        if pv["spec"]["claimRef"].is_object() {
            continue;
        }
        if let Some(sel) = &selector {
            if !sel.matches(object::labels(pv)) {
                continue;
            }
        }
        if class_of(pv) != class || !fits_node {
            continue;
        }
        if node.is_some() && pv["status"]["phase"] != "Available" {
            continue;
        }
        if !access_modes_fit(pv, pvc) {
            continue;
        }
        if best.as_ref().is_none_or(|(_, q)| capacity < *q) {
            best = Some((pv, capacity));
        }
    }
    best.map(|(pv, _)| pv)
}

/// Adds `key: "yes"` to the object's annotations.
fn annotate(obj: &mut Value, key: &str) {
    let meta = object::meta_mut(obj);
    let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
    if !annotations.is_object() {
        *annotations = json!({});
    }
    annotations[key] = json!(YES);
}

/// The volume with its claimRef set to the claim (upstream `bindVolumeToClaim`):
/// `bound-by-controller` when the ref was not already the user's pre-binding.
pub fn volume_bound_to(pv: &Value, pvc: &Value) -> Value {
    let mut pv = pv.clone();
    let prebound = is_volume_bound_to_claim(&pv, pvc);
    pv["spec"]["claimRef"] = json!({
        "kind": "PersistentVolumeClaim",
        "apiVersion": "v1",
        "namespace": object::namespace(pvc),
        "name": object::name(pvc),
        "uid": object::uid(pvc),
        "resourceVersion": pvc["metadata"]["resourceVersion"],
    });
    if !prebound {
        annotate(&mut pv, ANN_BOUND_BY_CONTROLLER);
    }
    pv
}

/// The claim with `volumeName` set and the bind-completed annotation (upstream
/// `bindClaimToVolume`); `bound-by-controller` when the controller chose the volume.
pub fn claim_bound_to(pvc: &Value, pv: &Value) -> Value {
    let mut pvc = pvc.clone();
    let name = object::name(pv);
    if pvc["spec"]["volumeName"].as_str().unwrap_or("") != name {
        pvc["spec"]["volumeName"] = json!(name);
        annotate(&mut pvc, ANN_BOUND_BY_CONTROLLER);
    }
    annotate(&mut pvc, ANN_BIND_COMPLETED);
    pvc
}

/// The claim's status once bound to `pv`.
pub fn bound_claim_status(pvc: &Value, pv: &Value) -> Value {
    let mut status = pvc["status"].clone();
    if !status.is_object() {
        status = json!({});
    }
    status["phase"] = json!("Bound");
    status["accessModes"] = pv["spec"]["accessModes"].clone();
    status["capacity"] = pv["spec"]["capacity"].clone();
    status
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pv(name: &str, size: &str, class: &str, modes: &[&str]) -> Value {
        json!({"metadata": {"name": name, "labels": {"tier": "fast"}},
               "spec": {"capacity": {"storage": size}, "accessModes": modes,
                        "storageClassName": class, "hostPath": {"path": "/x"}},
               "status": {"phase": "Available"}})
    }

    fn pvc(size: &str, class: &str) -> Value {
        json!({"metadata": {"name": "data", "namespace": "default", "uid": "u1", "resourceVersion": "7"},
               "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                        "resources": {"requests": {"storage": size}}}})
    }

    fn names(found: Option<&Value>) -> Option<&str> {
        found.map(object::name)
    }

    #[test]
    fn the_smallest_volume_that_fits_class_size_and_modes_wins() {
        let volumes = [
            pv("big", "10Gi", "manual", &["ReadWriteOnce"]),
            pv("small", "1Gi", "manual", &["ReadWriteOnce"]),
            pv("tiny", "500Mi", "manual", &["ReadWriteOnce"]),
            pv("right-size-other-class", "1Gi", "other", &["ReadWriteOnce"]),
            pv("read-only", "1Gi", "manual", &["ReadOnlyMany"]),
        ];
        let claim = pvc("1Gi", "manual");
        assert_eq!(
            names(find_matching_volume(&claim, &volumes, None, false)),
            Some("small")
        );
        assert_eq!(
            names(find_matching_volume(
                &pvc("20Gi", "manual"),
                &volumes,
                None,
                false
            )),
            None
        );
        // Delayed binding: the controller leaves the choice to the scheduler.
        assert_eq!(
            names(find_matching_volume(&claim, &volumes, None, true)),
            None
        );
        let mut selective = claim.clone();
        selective["spec"]["selector"] = json!({"matchLabels": {"tier": "slow"}});
        assert_eq!(
            names(find_matching_volume(&selective, &volumes, None, false)),
            None
        );
    }

    #[test]
    fn a_volume_pre_bound_to_the_claim_is_taken_first_and_others_bound_are_skipped() {
        let claim = pvc("1Gi", "manual");
        let mut taken = pv("taken", "1Gi", "manual", &["ReadWriteOnce"]);
        taken["spec"]["claimRef"] = json!({"namespace": "default", "name": "other"});
        let mut mine = pv("mine", "5Gi", "manual", &["ReadWriteOnce"]);
        mine["spec"]["claimRef"] = json!({"namespace": "default", "name": "data"});
        let volumes = [taken, mine, pv("free", "1Gi", "manual", &["ReadWriteOnce"])];
        assert_eq!(
            names(find_matching_volume(&claim, &volumes, None, true)),
            Some("mine")
        );
        let mut stale = volumes[1].clone();
        stale["spec"]["claimRef"]["uid"] = json!("an-older-claim");
        assert!(!is_volume_bound_to_claim(&stale, &claim));
    }

    #[test]
    fn with_a_node_only_available_volumes_that_fit_it_count() {
        let claim = pvc("1Gi", "manual");
        let mut elsewhere = pv("elsewhere", "1Gi", "manual", &["ReadWriteOnce"]);
        elsewhere["metadata"]["labels"]["node"] = json!("n2");
        let mut released = pv("released", "1Gi", "manual", &["ReadWriteOnce"]);
        released["status"]["phase"] = json!("Released");
        let here = pv("here", "2Gi", "manual", &["ReadWriteOnce"]);
        let volumes = [elsewhere, released, here];
        let on_n1 = |pv: &Value| pv["metadata"]["labels"]["node"] != "n2";
        assert_eq!(
            names(find_matching_volume(&claim, &volumes, Some(&on_n1), true)),
            Some("here")
        );
    }

    #[test]
    fn binding_writes_refs_annotations_and_the_claims_status() {
        let claim = pvc("1Gi", "manual");
        let volume = pv("pv1", "2Gi", "manual", &["ReadWriteOnce"]);
        let bound = volume_bound_to(&volume, &claim);
        assert_eq!(bound["spec"]["claimRef"]["uid"], "u1");
        assert_eq!(
            bound["metadata"]["annotations"][ANN_BOUND_BY_CONTROLLER],
            "yes"
        );
        let claim2 = claim_bound_to(&claim, &volume);
        assert_eq!(claim2["spec"]["volumeName"], "pv1");
        assert_eq!(claim2["metadata"]["annotations"][ANN_BIND_COMPLETED], "yes");
        let status = bound_claim_status(&claim, &volume);
        assert_eq!(status["capacity"]["storage"], "2Gi");
        assert_eq!(status["phase"], "Bound");
        // A user's pre-binding is not marked as the controller's.
        let mut prebound = volume.clone();
        prebound["spec"]["claimRef"] = json!({"namespace": "default", "name": "data"});
        assert!(volume_bound_to(&prebound, &claim)["metadata"]["annotations"].is_null());
        assert_eq!(
            volume_unfit_for_claim(&volume, &pvc("3Gi", "manual")).as_deref(),
            Some("requested PV is too small")
        );
    }
}
