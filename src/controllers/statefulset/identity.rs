//! A StatefulSet pod's identity and storage, as upstream's `stateful_set_utils.go`:
//! names `<set>-<ordinal>`, the pod-name and pod-index labels, hostname and subdomain,
//! claims `<template>-<set>-<ordinal>` mounted as the template's volumes, and which
//! owner references claims carry under the `persistentVolumeClaimRetentionPolicy`.
//!
//! Pure functions of the objects (Kubernetes JSON).

use serde_json::{json, Value};

use crate::api::object;
use crate::controllers::history;
use crate::controllers::replication::pod_from_template;

/// The label with the pod's own name (upstream `StatefulSetPodNameLabel`).
pub const POD_NAME_LABEL: &str = "statefulset.kubernetes.io/pod-name";
/// The label with the pod's ordinal (upstream `PodIndexLabel`).
pub const POD_INDEX_LABEL: &str = "apps.kubernetes.io/pod-index";

/// `spec.ordinals.start` (0 when unset).
pub fn start_ordinal(set: &Value) -> i64 {
    set["spec"]["ordinals"]["start"]
        .as_i64()
        .unwrap_or(0)
        .max(0)
}

/// `spec.replicas` (1 when unset, as defaulting would).
pub fn replicas(set: &Value) -> i64 {
    set["spec"]["replicas"].as_i64().unwrap_or(1).max(0)
}

/// One past the last ordinal the set wants.
pub fn end_ordinal(set: &Value) -> i64 {
    start_ordinal(set) + replicas(set)
}

/// The parent name and ordinal in a pod name `<parent>-<ordinal>` (upstream
/// `getParentNameAndOrdinal`).
pub fn parent_and_ordinal(pod_name: &str) -> Option<(&str, i64)> {
    let (parent, ordinal) = pod_name.rsplit_once('-')?;
    if ordinal.is_empty() || !ordinal.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((parent, ordinal.parse().ok()?))
}

/// The ordinal of a pod (None when its name has none).
pub fn ordinal_of(pod: &Value) -> Option<i64> {
    parent_and_ordinal(object::name(pod)).map(|(_, o)| o)
}

/// Whether `pod` is named as a member of `set` (upstream `isMemberOf`).
pub fn is_member(set: &Value, pod: &Value) -> bool {
    parent_and_ordinal(object::name(pod)).is_some_and(|(parent, _)| parent == object::name(set))
}

/// Whether the pod's ordinal is one the set wants now.
pub fn in_ordinal_range(set: &Value, pod: &Value) -> bool {
    ordinal_of(pod).is_some_and(|o| o >= start_ordinal(set) && o < end_ordinal(set))
}

pub fn pod_name(set: &Value, ordinal: i64) -> String {
    format!("{}-{ordinal}", object::name(set))
}

/// The claim of template `claim_template` for the pod of `ordinal`.
pub fn claim_name(set: &Value, claim_template: &str, ordinal: i64) -> String {
    format!("{claim_template}-{}-{ordinal}", object::name(set))
}

fn claim_templates(set: &Value) -> &[Value] {
    set["spec"]["volumeClaimTemplates"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn template_name(claim: &Value) -> &str {
    claim["metadata"]["name"].as_str().unwrap_or("")
}

/// The claims the pod of `ordinal` uses, as they are created (upstream
/// `getPersistentVolumeClaims`): the template named per pod, in the set's namespace,
/// labelled with the template's labels and the set's `matchLabels`.
pub fn claims_for(set: &Value, ordinal: i64) -> Vec<Value> {
    claim_templates(set)
        .iter()
        .map(|template| {
            let mut claim = template.clone();
            claim["apiVersion"] = json!("v1");
            claim["kind"] = json!("PersistentVolumeClaim");
            if let Some(map) = claim.as_object_mut() {
                map.remove("status");
            }
            let mut labels = template["metadata"]["labels"]
                .as_object()
                .cloned()
                .unwrap_or_default();
            if let Some(selector) = set["spec"]["selector"]["matchLabels"].as_object() {
                labels.extend(selector.clone());
            }
            let meta = object::meta_mut(&mut claim);
            meta.insert(
                "name".into(),
                json!(claim_name(set, template_name(template), ordinal)),
            );
            if let Some(ns) = object::namespace(set) {
                meta.insert("namespace".into(), json!(ns));
            }
            meta.insert("labels".into(), json!(labels));
            for server_field in ["uid", "resourceVersion", "creationTimestamp"] {
                meta.remove(server_field);
            }
            claim
        })
        .collect()
}

/// The pod of `ordinal` built from `set`'s template (upstream `newStatefulSetPod`) and
/// labelled with `revision` (a revision name).
pub fn new_pod(set: &Value, ordinal: i64, revision: &str) -> Value {
    let mut pod = pod_from_template(set);
    let meta = object::meta_mut(&mut pod);
    meta.remove("generateName");
    let labels = history::with_revision_label(
        set["spec"]["template"]["metadata"]["labels"].as_object(),
        revision,
    );
    meta.insert("labels".into(), labels);
    set_identity(set, &mut pod, ordinal);
    pod["spec"]["hostname"] = json!(pod_name(set, ordinal));
    let service = set["spec"]["serviceName"].as_str().unwrap_or("");
    if !service.is_empty() {
        pod["spec"]["subdomain"] = json!(service);
    }
    set_storage(set, &mut pod, ordinal);
    pod
}

/// Upstream `updateIdentity`: name, namespace and the pod-name and pod-index labels.
pub fn set_identity(set: &Value, pod: &mut Value, ordinal: i64) {
    let name = pod_name(set, ordinal);
    let meta = object::meta_mut(pod);
    meta.insert("name".into(), json!(name));
    if let Some(ns) = object::namespace(set) {
        meta.insert("namespace".into(), json!(ns));
    }
    let labels = meta.entry("labels").or_insert_with(|| json!({}));
    if !labels.is_object() {
        *labels = json!({});
    }
    labels[POD_NAME_LABEL] = json!(name);
    labels[POD_INDEX_LABEL] = json!(ordinal.to_string());
}

/// Upstream `identityMatches`.
pub fn identity_matches(set: &Value, pod: &Value) -> bool {
    let Some((parent, ordinal)) = parent_and_ordinal(object::name(pod)) else {
        return false;
    };
    let labels = &pod["metadata"]["labels"];
    parent == object::name(set)
        && object::namespace(pod) == object::namespace(set)
        && labels[POD_NAME_LABEL] == object::name(pod)
        && labels[POD_INDEX_LABEL] == ordinal.to_string().as_str()
}

/// Upstream `updateStorage`: a `persistentVolumeClaim` volume per claim template (in
/// place of a template volume of the same name), then the pod's other volumes.
pub fn set_storage(set: &Value, pod: &mut Value, ordinal: i64) {
    let templates = claim_templates(set);
    if templates.is_empty() {
        return;
    }
    let mut volumes: Vec<Value> = templates
        .iter()
        .map(|t| {
            let name = template_name(t);
            json!({"name": name, "persistentVolumeClaim": {
                "claimName": claim_name(set, name, ordinal)}})
        })
        .collect();
    let current = pod["spec"]["volumes"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    volumes.extend(
        current
            .into_iter()
            .filter(|v| !templates.iter().any(|t| template_name(t) == v["name"])),
    );
    pod["spec"]["volumes"] = json!(volumes);
}

/// Upstream `storageMatches`: every claim template mounted from the pod's own claim.
pub fn storage_matches(set: &Value, pod: &Value) -> bool {
    let Some(ordinal) = ordinal_of(pod) else {
        return false;
    };
    let volumes = pod["spec"]["volumes"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    claim_templates(set).iter().all(|t| {
        let name = template_name(t);
        volumes.iter().any(|v| {
            v["name"] == name
                && v["persistentVolumeClaim"]["claimName"]
                    == claim_name(set, name, ordinal).as_str()
        })
    })
}

fn has_owner(obj: &Value, owner_uid: &str) -> bool {
    obj["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| refs.iter().any(|r| r["uid"] == owner_uid))
}

/// A plain (non-controller) owner reference, as upstream's `setOwnerRef`.
fn plain_reference(owner: &Value, api_version: &str, kind: &str) -> Value {
    json!({
        "apiVersion": api_version,
        "kind": kind,
        "name": object::name(owner),
        "uid": object::uid(owner).unwrap_or(""),
    })
}

/// The owner references `claim` should carry for `pod` under the set's retention policy
/// (upstream `updateClaimOwnerRefForSetAndPod`): `whenDeleted: Delete` makes the set an
/// owner; `whenScaled: Delete` makes the pod an owner once it is scaled down (its
/// ordinal is out of range), so the garbage collector deletes the claim with it.
/// `None` when the claim already carries the right ones.
pub fn claim_owner_refs(set: &Value, pod: &Value, claim: &Value) -> Option<Value> {
    let policy = &set["spec"]["persistentVolumeClaimRetentionPolicy"];
    let delete_with_set = policy["whenDeleted"] == "Delete";
    let delete_when_scaled = policy["whenScaled"] == "Delete";
    let scaled_down = !in_ordinal_range(set, pod);
    let set_uid = object::uid(set).unwrap_or("");
    let pod_uid = object::uid(pod).unwrap_or("");
    let (want_set, want_pod) = match (delete_with_set, delete_when_scaled) {
        (false, false) => (false, false),
        (true, false) => (true, false),
        (false, true) => (false, scaled_down),
        (true, true) => (!scaled_down, scaled_down),
    };
    if has_owner(claim, set_uid) == want_set && has_owner(claim, pod_uid) == want_pod {
        return None;
    }
    let mut refs: Vec<Value> = claim["metadata"]["ownerReferences"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    refs.retain(|r| r["uid"] != set_uid && r["uid"] != pod_uid);
    if want_set {
        refs.push(plain_reference(set, "apps/v1", "StatefulSet"));
    }
    if want_pod {
        refs.push(plain_reference(pod, "v1", "Pod"));
    }
    Some(json!(refs))
}

/// Whether `claim` still names an earlier pod called `pod_name` as owner (upstream
/// `PodClaimIsStale`): the garbage collector is about to delete it, so the new pod
/// waits instead of mounting it.
pub fn claim_is_stale(claim: &Value, pod_name: &str) -> bool {
    claim["metadata"]["ownerReferences"]
        .as_array()
        .is_some_and(|refs| {
            refs.iter()
                .any(|r| r["kind"] == "Pod" && r["name"] == pod_name)
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set() -> Value {
        json!({
            "apiVersion": "apps/v1", "kind": "StatefulSet",
            "metadata": {"name": "web", "namespace": "ns", "uid": "set-uid"},
            "spec": {"replicas": 2, "serviceName": "nginx",
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}},
                    "spec": {"containers": [{"name": "c", "image": "busybox"}],
                             "volumes": [{"name": "data", "emptyDir": {}},
                                         {"name": "cache", "emptyDir": {}}]}},
                "volumeClaimTemplates": [{"metadata": {"name": "data", "labels": {"tier": "db"}},
                    "spec": {"accessModes": ["ReadWriteOnce"]}, "status": {"phase": "Pending"}}]}
        })
    }

    #[test]
    fn names_parse_into_parent_and_ordinal() {
        assert_eq!(parent_and_ordinal("web-0"), Some(("web", 0)));
        assert_eq!(parent_and_ordinal("my-web-12"), Some(("my-web", 12)));
        assert_eq!(parent_and_ordinal("web"), None);
        assert_eq!(parent_and_ordinal("web-x1"), None);
        assert!(is_member(&set(), &json!({"metadata": {"name": "web-3"}})));
        assert!(!is_member(
            &set(),
            &json!({"metadata": {"name": "webby-3"}})
        ));
    }

    #[test]
    fn pods_get_identity_revision_and_claim_volumes() {
        let pod = new_pod(&set(), 1, "web-abc");
        assert_eq!(pod["metadata"]["name"], "web-1");
        assert_eq!(pod["metadata"]["namespace"], "ns");
        assert!(pod["metadata"].get("generateName").is_none());
        assert_eq!(
            pod["metadata"]["labels"],
            json!({"app": "web", POD_NAME_LABEL: "web-1", POD_INDEX_LABEL: "1",
                   "controller-revision-hash": "web-abc"})
        );
        assert_eq!(pod["spec"]["hostname"], "web-1");
        assert_eq!(pod["spec"]["subdomain"], "nginx");
        assert_eq!(
            pod["spec"]["volumes"],
            json!([{"name": "data", "persistentVolumeClaim": {"claimName": "data-web-1"}},
                   {"name": "cache", "emptyDir": {}}])
        );
        assert_eq!(pod["metadata"]["ownerReferences"][0]["uid"], "set-uid");
        assert!(identity_matches(&set(), &pod));
        assert!(storage_matches(&set(), &pod));
        let mut relabelled = pod.clone();
        relabelled["metadata"]["labels"][POD_NAME_LABEL] = json!("other");
        assert!(!identity_matches(&set(), &relabelled));
        set_identity(&set(), &mut relabelled, 1);
        assert!(identity_matches(&set(), &relabelled));
    }

    #[test]
    fn claims_are_named_per_pod_and_carry_the_selector_labels() {
        let claims = claims_for(&set(), 0);
        assert_eq!(claims.len(), 1);
        let claim = &claims[0];
        assert_eq!(claim["metadata"]["name"], "data-web-0");
        assert_eq!(claim["metadata"]["namespace"], "ns");
        assert_eq!(
            claim["metadata"]["labels"],
            json!({"tier": "db", "app": "web"})
        );
        assert_eq!(claim["kind"], "PersistentVolumeClaim");
        assert!(claim.get("status").is_none());
    }

    #[test]
    fn retention_policy_decides_the_claim_owners() {
        let mut s = set();
        let pod = json!({"metadata": {"name": "web-1", "uid": "pod-uid"}});
        let claim = json!({"metadata": {"name": "data-web-1"}});
        let uids = |refs: Option<Value>| -> Option<Vec<String>> {
            refs.map(|r| {
                r.as_array()
                    .unwrap()
                    .iter()
                    .map(|x| x["uid"].as_str().unwrap().to_string())
                    .collect()
            })
        };
        // Retain/Retain: no owners.
        s["spec"]["persistentVolumeClaimRetentionPolicy"] =
            json!({"whenDeleted": "Retain", "whenScaled": "Retain"});
        assert_eq!(claim_owner_refs(&s, &pod, &claim), None);
        // whenDeleted: Delete: the set owns the claim.
        s["spec"]["persistentVolumeClaimRetentionPolicy"]["whenDeleted"] = json!("Delete");
        assert_eq!(
            uids(claim_owner_refs(&s, &pod, &claim)),
            Some(vec!["set-uid".into()])
        );
        // Both Delete, pod scaled away (replicas 1): the pod owns it instead of the set.
        s["spec"]["persistentVolumeClaimRetentionPolicy"]["whenScaled"] = json!("Delete");
        s["spec"]["replicas"] = json!(1);
        let owned_by_set = json!({"metadata": {"name": "data-web-1", "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "StatefulSet", "name": "web", "uid": "set-uid"}]}});
        assert_eq!(
            uids(claim_owner_refs(&s, &pod, &owned_by_set)),
            Some(vec!["pod-uid".into()])
        );
        // Pod in range again: back to the set.
        s["spec"]["replicas"] = json!(2);
        assert_eq!(claim_owner_refs(&s, &pod, &owned_by_set), None);
        assert!(claim_is_stale(
            &json!({"metadata": {"ownerReferences": [{"kind": "Pod", "name": "web-1", "uid": "old"}]}}),
            "web-1"
        ));
    }
}
