//! Storage names and pure helpers shared by the API server, the controllers, the
//! scheduler and the agent: upstream's binding annotations and finalizers, orc's
//! built-in local-path provisioner, and what a pod or a volume says about claims and
//! nodes.

use serde_json::Value;

/// Set on a claim once the binding controller finished binding it.
pub const ANN_BIND_COMPLETED: &str = "pv.kubernetes.io/bind-completed";
/// Set on a claim (volume) whose `volumeName` (`claimRef`) the controller wrote.
pub const ANN_BOUND_BY_CONTROLLER: &str = "pv.kubernetes.io/bound-by-controller";
/// The provisioner that created a volume.
pub const ANN_PROVISIONED_BY: &str = "pv.kubernetes.io/provisioned-by";
/// The node the scheduler picked for a `WaitForFirstConsumer` claim.
pub const ANN_SELECTED_NODE: &str = "volume.kubernetes.io/selected-node";
/// The provisioner asked to provision a claim (and its beta spelling).
pub const ANN_STORAGE_PROVISIONER: &str = "volume.kubernetes.io/storage-provisioner";
pub const ANN_BETA_STORAGE_PROVISIONER: &str = "volume.beta.kubernetes.io/storage-provisioner";
/// The class of a claim or volume written as an annotation (before `storageClassName`).
pub const ANN_BETA_STORAGE_CLASS: &str = "volume.beta.kubernetes.io/storage-class";
/// Annotation values meaning "yes".
pub const YES: &str = "yes";

/// Finalizers upstream's StorageObjectInUseProtection admission adds.
pub const PVC_PROTECTION_FINALIZER: &str = "kubernetes.io/pvc-protection";
pub const PV_PROTECTION_FINALIZER: &str = "kubernetes.io/pv-protection";

/// orc's built-in provisioner, its default class, and the finalizer that keeps one of
/// its volumes until the node has removed the directory.
pub const LOCAL_PATH_PROVISIONER: &str = "orc.io/local-path";
pub const LOCAL_PATH_CLASS: &str = "local-path";
pub const LOCAL_PATH_FINALIZER: &str = "orc.io/local-path";
/// The node label naming the node (what local volumes' node affinity selects on).
pub const HOSTNAME_LABEL: &str = "kubernetes.io/hostname";

/// The class of a claim or volume: the beta annotation if set, else
/// `spec.storageClassName` ("" for none), as upstream's `GetPersistentVolume(Claim)Class`.
pub fn class_of(obj: &Value) -> &str {
    match obj["metadata"]["annotations"][ANN_BETA_STORAGE_CLASS].as_str() {
        Some(class) => class,
        None => obj["spec"]["storageClassName"].as_str().unwrap_or(""),
    }
}

/// One claim a pod's volume uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PodClaim {
    /// The volume's name in the pod.
    pub volume: String,
    pub claim: String,
    /// A generic ephemeral volume: the claim is `<pod>-<volume>` and owned by the pod.
    pub ephemeral: bool,
}

/// The claims of a pod's `persistentVolumeClaim` and `ephemeral` volumes, in order.
pub fn pod_claims(pod: &Value) -> Vec<PodClaim> {
    let pod_name = pod["metadata"]["name"].as_str().unwrap_or("");
    pod["spec"]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| {
            let volume = v["name"].as_str().unwrap_or("").to_string();
            if let Some(claim) = v["persistentVolumeClaim"]["claimName"].as_str() {
                return Some(PodClaim {
                    volume,
                    claim: claim.to_string(),
                    ephemeral: false,
                });
            }
            v["ephemeral"].is_object().then(|| PodClaim {
                claim: format!("{pod_name}-{volume}"),
                volume,
                ephemeral: true,
            })
        })
        .collect()
}

/// Whether a pod uses the claim `name` (its namespace assumed to be the pod's).
pub fn pod_uses_claim(pod: &Value, name: &str) -> bool {
    pod_claims(pod).iter().any(|c| c.claim == name)
}

/// Whether a volume's required node affinity names `node` outright: a term selecting
/// `kubernetes.io/hostname In [node]` or `metadata.name In [node]` (what local and
/// local-path volumes carry). The node authorizer lets a node see such volumes.
pub fn volume_names_node(pv: &Value, node: &str) -> bool {
    let terms = &pv["spec"]["nodeAffinity"]["required"]["nodeSelectorTerms"];
    let names = |reqs: &Value, key: &str| {
        reqs.as_array().into_iter().flatten().any(|r| {
            r["key"] == key
                && r["operator"] == "In"
                && r["values"]
                    .as_array()
                    .is_some_and(|v| v.iter().any(|x| x == node))
        })
    };
    terms.as_array().into_iter().flatten().any(|t| {
        names(&t["matchExpressions"], HOSTNAME_LABEL) || names(&t["matchFields"], "metadata.name")
    })
}

/// The directory of a local-path volume, if `pv` is one (provisioned by orc, host path).
pub fn local_path_dir(pv: &Value) -> Option<&str> {
    let provisioned_by = &pv["metadata"]["annotations"][ANN_PROVISIONED_BY];
    if provisioned_by != LOCAL_PATH_PROVISIONER {
        return None;
    }
    pv["spec"]["hostPath"]["path"]
        .as_str()
        .or_else(|| pv["spec"]["local"]["path"].as_str())
}

/// The directory name of a local-path claim's volume: `pvc-<uid>_<namespace>_<claim>`
/// (the k3s local-path provisioner's layout).
pub fn local_path_dir_name(claim_uid: &str, namespace: &str, claim: &str) -> String {
    format!("pvc-{claim_uid}_{namespace}_{claim}")
}

/// Whether `dir`'s last component looks like a local-path volume's (the agent removes
/// nothing else).
pub fn is_local_path_dir_name(dir: &str) -> bool {
    let last = dir.rsplit('/').next().unwrap_or("");
    last.starts_with("pvc-") && last.matches('_').count() >= 2 && !last.contains("..")
}

/// The default StorageClass among `classes` (upstream `GetDefaultClass`): of those with
/// the default-class annotation the newest, then the first by name.
pub fn default_class<'a>(classes: impl IntoIterator<Item = &'a Value>) -> Option<String> {
    classes
        .into_iter()
        .filter(|sc| crate::api::table::is_default_class(sc))
        .map(|sc| {
            let created = sc["metadata"]["creationTimestamp"].as_str().unwrap_or("");
            let name = sc["metadata"]["name"].as_str().unwrap_or("");
            (std::cmp::Reverse(created.to_string()), name.to_string())
        })
        .min()
        .map(|(_, name)| name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn pods_name_their_claims_and_ephemeral_claims_after_the_pod() {
        let pod = json!({"metadata": {"name": "web"}, "spec": {"volumes": [
            {"name": "data", "persistentVolumeClaim": {"claimName": "db"}},
            {"name": "tmp", "emptyDir": {}},
            {"name": "scratch", "ephemeral": {"volumeClaimTemplate": {"spec": {}}}},
        ]}});
        let claims: Vec<(String, bool)> = pod_claims(&pod)
            .into_iter()
            .map(|c| (c.claim, c.ephemeral))
            .collect();
        assert_eq!(
            claims,
            [("db".to_string(), false), ("web-scratch".to_string(), true)]
        );
        assert!(pod_uses_claim(&pod, "web-scratch"));
        assert!(!pod_uses_claim(&pod, "tmp"));
    }

    #[test]
    fn volumes_name_a_node_by_hostname_label_or_name_field() {
        let pv = |term: Value| json!({"spec": {"nodeAffinity": {"required": {"nodeSelectorTerms": [term]}}}});
        let by_label = pv(json!({"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "In", "values": ["n1"]}]}));
        assert!(volume_names_node(&by_label, "n1"));
        assert!(!volume_names_node(&by_label, "n2"));
        let by_field = pv(json!({"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": ["n2"]}]}));
        assert!(volume_names_node(&by_field, "n2"));
        let not_in = pv(json!({"matchExpressions": [
            {"key": "kubernetes.io/hostname", "operator": "NotIn", "values": ["n1"]}]}));
        assert!(!volume_names_node(&not_in, "n1"));
        assert!(!volume_names_node(&json!({}), "n1"));
    }

    #[test]
    fn the_newest_default_class_wins() {
        let sc = |name: &str, created: &str, default: bool| {
            json!({"metadata": {"name": name, "creationTimestamp": created, "annotations":
                {"storageclass.kubernetes.io/is-default-class": if default { "true" } else { "false" }}}})
        };
        let classes = [
            sc("old", "2024-01-01T00:00:00Z", true),
            sc("new", "2024-02-01T00:00:00Z", true),
            sc("newest", "2024-03-01T00:00:00Z", false),
        ];
        assert_eq!(default_class(&classes).as_deref(), Some("new"));
        assert_eq!(default_class(&classes[2..]), None);
    }

    #[test]
    fn local_path_directories_are_recognised_by_name() {
        let dir = local_path_dir_name("1234", "default", "data");
        assert_eq!(dir, "pvc-1234_default_data");
        assert!(is_local_path_dir_name(&format!(
            "/var/lib/orc/storage/{dir}"
        )));
        assert!(!is_local_path_dir_name("/etc"));
        assert!(!is_local_path_dir_name("/var/lib/orc/storage"));
    }
}
