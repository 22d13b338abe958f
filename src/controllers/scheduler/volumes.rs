//! Volume binding in the scheduler (upstream's `VolumeBinding` plugin): a pod's claims
//! must exist and not be going away; bound claims' volumes must allow the node (their
//! node affinity); `WaitForFirstConsumer` claims still unbound need, on the node, a
//! static volume that fits or a class that can provision there, and the choice is
//! written (volume pre-bound to the claim, or the claim's `selected-node` annotation)
//! before the pod is bound. Pure: the cache's maps in, decisions out.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use serde_json::Value;

use super::filters::Reason;
use super::info::{NodeInfo, NodeSelectorTerm};
use crate::api::object;
use crate::api::storage::{class_of, pod_claims, ANN_SELECTED_NODE};
use crate::controllers::persistent_volume::matching::find_matching_volume;
use crate::controllers::persistent_volume::NO_PROVISIONER;

/// Claims, volumes and classes as the scheduler sees them.
#[derive(Default)]
pub struct StorageView {
    /// Claims by `namespace/name`.
    pub claims: HashMap<String, Arc<Value>>,
    pub volumes: HashMap<String, Arc<Value>>,
    pub classes: HashMap<String, Arc<Value>>,
    /// Choices in flight for unbound claims: claim key → (node, volume if static).
    pub assumed: HashMap<String, (String, Option<String>)>,
}

/// What scheduling needs to know about a pod's claims.
#[derive(Debug, Default, Clone)]
pub struct PodVolumes {
    /// Volumes of the pod's bound claims.
    pub bound: Vec<Arc<Value>>,
    /// Unbound claims of `WaitForFirstConsumer` classes.
    pub delayed: Vec<Arc<Value>>,
}

impl PodVolumes {
    pub fn is_empty(&self) -> bool {
        self.bound.is_empty() && self.delayed.is_empty()
    }
}

/// A choice for an unbound claim on the chosen node.
#[derive(Debug, Clone, PartialEq)]
pub enum ClaimChoice {
    /// Pre-bind this static volume to the claim.
    Volume { claim: String, volume: String },
    /// Ask the class's provisioner for a volume on the node.
    Provision { claim: String },
    /// Already decided (selected node written, or assumed by another pod's bind).
    Decided { claim: String },
}

impl ClaimChoice {
    pub fn claim(&self) -> &str {
        match self {
            ClaimChoice::Volume { claim, .. }
            | ClaimChoice::Provision { claim }
            | ClaimChoice::Decided { claim } => claim,
        }
    }
}

/// Upstream's PreFilter: the pod's claims, or why no node can take the pod.
pub fn pod_volumes(pod: &Value, view: &StorageView) -> Result<PodVolumes, String> {
    let ns = object::namespace(pod).unwrap_or("default");
    let mut out = PodVolumes::default();
    for c in pod_claims(pod) {
        let key = format!("{ns}/{}", c.claim);
        let Some(pvc) = view.claims.get(&key) else {
            return Err(format!("persistentvolumeclaim \"{}\" not found", c.claim));
        };
        if object::is_deleting(pvc) {
            return Err(format!(
                "persistentvolumeclaim \"{}\" is being deleted",
                c.claim
            ));
        }
        if c.ephemeral && !owned_by(pvc, pod) {
            return Err(format!(
                "PVC {key} was not created for pod {ns}/{} (pod is not owner)",
                object::name(pod)
            ));
        }
        let volume = pvc["spec"]["volumeName"].as_str().unwrap_or("");
        if !volume.is_empty() {
            match view.volumes.get(volume) {
                Some(pv) => out.bound.push(pv.clone()),
                None => return Err(format!("persistentvolume \"{volume}\" not found")),
            }
            continue;
        }
        let delayed = view
            .classes
            .get(class_of(pvc))
            .is_some_and(|sc| sc["volumeBindingMode"] == "WaitForFirstConsumer");
        if !delayed {
            return Err("pod has unbound immediate PersistentVolumeClaims".into());
        }
        out.delayed.push(pvc.clone());
    }
    Ok(out)
}

fn owned_by(pvc: &Value, pod: &Value) -> bool {
    pvc["metadata"]["ownerReferences"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|r| r["controller"] == true && r["uid"].as_str() == object::uid(pod))
}

/// Whether a volume's required node affinity admits the node (no affinity: any node).
pub fn volume_fits_node(pv: &Value, node: &NodeInfo) -> bool {
    let terms = &pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"];
    match terms.as_array() {
        None => true,
        Some(terms) => terms
            .iter()
            .any(|t| NodeSelectorTerm::parse(t).matches(node)),
    }
}

/// Upstream's Filter for one node: the choices for the pod's delayed claims there.
pub fn choices_on(
    volumes: &PodVolumes,
    node: &NodeInfo,
    view: &StorageView,
) -> Result<Vec<ClaimChoice>, Reason> {
    if volumes.bound.iter().any(|pv| !volume_fits_node(pv, node)) {
        return Err(Reason::VolumeNodeAffinityConflict);
    }
    let mut taken: HashSet<String> = view
        .assumed
        .values()
        .filter_map(|(_, v)| v.clone())
        .collect();
    let mut choices = Vec::new();
    for pvc in &volumes.delayed {
        let claim = crate::controllers::framework::object_key(pvc);
        let pinned = view
            .assumed
            .get(&claim)
            .map(|(n, _)| n.as_str())
            .or_else(|| pvc["metadata"]["annotations"][ANN_SELECTED_NODE].as_str());
        if let Some(pinned) = pinned {
            if pinned != node.name {
                return Err(Reason::NoVolumesToBind);
            }
            choices.push(ClaimChoice::Decided { claim });
            continue;
        }
        let fits = |pv: &Value| volume_fits_node(pv, node);
        let candidates = view
            .volumes
            .values()
            .filter(|pv| !taken.contains(object::name(pv)))
            .map(|pv| &**pv);
        if let Some(pv) = find_matching_volume(pvc, candidates, Some(&fits), true) {
            let volume = object::name(pv).to_string();
            taken.insert(volume.clone());
            choices.push(ClaimChoice::Volume { claim, volume });
            continue;
        }
        let provisioner = view
            .classes
            .get(class_of(pvc))
            .and_then(|sc| sc["provisioner"].as_str())
            .unwrap_or("");
        if provisioner.is_empty() || provisioner == NO_PROVISIONER {
            return Err(Reason::NoVolumesToBind);
        }
        choices.push(ClaimChoice::Provision { claim });
    }
    Ok(choices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn node(name: &str) -> NodeInfo {
        NodeInfo::from_json(
            &json!({"metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "status": {"conditions": [{"type": "Ready", "status": "True"}]}}),
        )
    }

    fn on_node(name: &str, node: &str) -> Arc<Value> {
        Arc::new(json!({"metadata": {"name": name},
            "spec": {"capacity": {"storage": "1Gi"}, "accessModes": ["ReadWriteOnce"], "storageClassName": "local",
                     "local": {"path": "/mnt"}, "nodeAffinity": {"required": {"nodeSelectorTerms": [{"matchExpressions": [
                         {"key": "kubernetes.io/hostname", "operator": "In", "values": [node]}]}]}}},
            "status": {"phase": "Available"}}))
    }

    fn claim(name: &str, class: &str) -> Arc<Value> {
        Arc::new(
            json!({"metadata": {"name": name, "namespace": "default", "uid": format!("u-{name}")},
            "spec": {"accessModes": ["ReadWriteOnce"], "storageClassName": class,
                     "resources": {"requests": {"storage": "1Gi"}}}}),
        )
    }

    fn view() -> StorageView {
        let mut v = StorageView::default();
        v.classes.insert(
            "local".into(),
            Arc::new(json!({"metadata": {"name": "local"},
            "provisioner": NO_PROVISIONER, "volumeBindingMode": "WaitForFirstConsumer"})),
        );
        v.classes.insert(
            "local-path".into(),
            Arc::new(json!({"metadata": {"name": "local-path"},
            "provisioner": "orc.io/local-path", "volumeBindingMode": "WaitForFirstConsumer"})),
        );
        v.classes.insert(
            "now".into(),
            Arc::new(json!({"metadata": {"name": "now"},
            "provisioner": "x.io/disk", "volumeBindingMode": "Immediate"})),
        );
        v.volumes.insert("pv-n2".into(), on_node("pv-n2", "n2"));
        v
    }

    fn pod(claims: &[&str]) -> Value {
        let volumes: Vec<Value> = claims
            .iter()
            .map(|c| json!({"name": c, "persistentVolumeClaim": {"claimName": c}}))
            .collect();
        json!({"metadata": {"name": "p", "namespace": "default", "uid": "pod-uid"}, "spec": {"volumes": volumes}})
    }

    #[test]
    fn missing_deleting_and_unbound_immediate_claims_keep_the_pod_off_every_node() {
        let mut v = view();
        assert_eq!(
            pod_volumes(&pod(&["data"]), &v).unwrap_err(),
            "persistentvolumeclaim \"data\" not found"
        );
        v.claims.insert("default/data".into(), claim("data", "now"));
        assert_eq!(
            pod_volumes(&pod(&["data"]), &v).unwrap_err(),
            "pod has unbound immediate PersistentVolumeClaims"
        );
        let mut deleting = (*claim("data", "now")).clone();
        deleting["metadata"]["deletionTimestamp"] = json!("2024-01-01T00:00:00Z");
        v.claims.insert("default/data".into(), Arc::new(deleting));
        assert_eq!(
            pod_volumes(&pod(&["data"]), &v).unwrap_err(),
            "persistentvolumeclaim \"data\" is being deleted"
        );
        let eph = json!({"metadata": {"name": "p", "namespace": "default", "uid": "pod-uid"},
            "spec": {"volumes": [{"name": "s", "ephemeral": {"volumeClaimTemplate": {}}}]}});
        v.claims
            .insert("default/p-s".into(), claim("p-s", "local-path"));
        assert_eq!(
            pod_volumes(&eph, &v).unwrap_err(),
            "PVC default/p-s was not created for pod default/p (pod is not owner)"
        );
    }

    #[test]
    fn bound_volumes_pin_the_pod_to_their_nodes() {
        let mut v = view();
        let mut bound = (*claim("data", "local")).clone();
        bound["spec"]["volumeName"] = json!("pv-n2");
        v.claims.insert("default/data".into(), Arc::new(bound));
        let vols = pod_volumes(&pod(&["data"]), &v).unwrap();
        assert_eq!(
            choices_on(&vols, &node("n1"), &v),
            Err(Reason::VolumeNodeAffinityConflict)
        );
        assert_eq!(choices_on(&vols, &node("n2"), &v), Ok(vec![]));
    }

    #[test]
    fn delayed_claims_take_a_static_volume_on_the_node_or_are_provisioned() {
        let mut v = view();
        v.claims
            .insert("default/data".into(), claim("data", "local"));
        v.claims
            .insert("default/cache".into(), claim("cache", "local-path"));
        let vols = pod_volumes(&pod(&["data", "cache"]), &v).unwrap();
        assert_eq!(
            choices_on(&vols, &node("n1"), &v),
            Err(Reason::NoVolumesToBind)
        );
        assert_eq!(
            choices_on(&vols, &node("n2"), &v),
            Ok(vec![
                ClaimChoice::Volume {
                    claim: "default/data".into(),
                    volume: "pv-n2".into()
                },
                ClaimChoice::Provision {
                    claim: "default/cache".into()
                },
            ])
        );
        // Another pod's bind in flight took the volume.
        v.assumed
            .insert("default/other".into(), ("n2".into(), Some("pv-n2".into())));
        assert_eq!(
            choices_on(&vols, &node("n2"), &v),
            Err(Reason::NoVolumesToBind)
        );
        // A node already selected for a claim pins it.
        let mut selected = (*claim("cache", "local-path")).clone();
        selected["metadata"]["annotations"] = json!({ANN_SELECTED_NODE: "n1"});
        v.claims.insert("default/cache".into(), Arc::new(selected));
        let vols = pod_volumes(&pod(&["cache"]), &v).unwrap();
        assert_eq!(
            choices_on(&vols, &node("n2"), &v),
            Err(Reason::NoVolumesToBind)
        );
        assert_eq!(
            choices_on(&vols, &node("n1"), &v),
            Ok(vec![ClaimChoice::Decided {
                claim: "default/cache".into()
            }])
        );
    }
}
