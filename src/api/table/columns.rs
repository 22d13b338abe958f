//! Column definitions of each printed kind, as upstream printers declare them.

use serde_json::{json, Value};

const DESC_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const DESC_CREATED: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
pub(super) const DESC_CONTAINERS: &str = "Names of each container in the template.";
pub(super) const DESC_IMAGES: &str = "Images referenced by each container in the template.";
pub(super) fn col(name: &str, ty: &str, description: &str, priority: i32) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({
        "name": name,
        "type": ty,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

pub(super) fn name_col() -> Value {
    col("Name", "string", DESC_NAME, 0)
}

pub(super) fn age_col() -> Value {
    col("Age", "string", DESC_CREATED, 0)
}

/// The columns of CustomResourceDefinitions (upstream's CRD printer columns).
pub(super) fn custom_resource_definition() -> Vec<Value> {
    vec![name_col(), col("Created At", "date", DESC_CREATED, 0)]
}

/// The columns of Roles and ClusterRoles.
pub(super) fn role() -> Vec<Value> {
    vec![name_col(), col("Created At", "date", DESC_CREATED, 0)]
}

/// The columns of RoleBindings and ClusterRoleBindings.
pub(super) fn role_binding() -> Vec<Value> {
    vec![
        name_col(),
        col("Role", "string", "RoleRef can reference a Role in the current namespace or a ClusterRole in the global namespace. If the RoleRef cannot be resolved, the Authorizer must return an error. This field is immutable.", 0),
        age_col(),
        col("Users", "string", "Users in the roleBinding", 1),
        col("Groups", "string", "Groups in the roleBinding", 1),
        col("ServiceAccounts", "string", "ServiceAccounts in the roleBinding", 1),
    ]
}

/// The columns of Pods.
pub(super) fn pod() -> Vec<Value> {
    vec![
        name_col(),
        col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
        col("Status", "string", "The aggregate status of the containers in this pod.", 0),
        col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
        age_col(),
        col("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
        col("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename", 1),
        col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.", 1),
        col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates", 1),
    ]
}

/// The columns of ReplicationControllers.
pub(super) fn replication_controller() -> Vec<Value> {
    vec![
        name_col(),
        col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller", 0),
        col("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller", 0),
        col("Ready", "integer", "The number of ready replicas for this replication controller.", 0),
        age_col(),
        col("Containers", "string", DESC_CONTAINERS, 1),
        col("Images", "string", DESC_IMAGES, 1),
        col("Selector", "string", "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
    ]
}

/// The columns of ReplicaSets.
pub(super) fn replica_set() -> Vec<Value> {
    vec![
        name_col(),
        col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller", 0),
        col("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller", 0),
        col("Ready", "integer", "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.", 0),
        age_col(),
        col("Containers", "string", DESC_CONTAINERS, 1),
        col("Images", "string", DESC_IMAGES, 1),
        col("Selector", "string", "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
    ]
}

/// The columns of Deployments.
pub(super) fn deployment() -> Vec<Value> {
    vec![
        name_col(),
        col("Ready", "string", "Number of the pod with ready state", 0),
        col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0),
        col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0),
        age_col(),
        col("Containers", "string", DESC_CONTAINERS, 1),
        col("Images", "string", DESC_IMAGES, 1),
        col("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.", 1),
    ]
}

/// The columns of Services.
pub(super) fn service() -> Vec<Value> {
    vec![
        name_col(),
        col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types", 0),
        col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies", 0),
        col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.", 0),
        col("Port(s)", "string", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies", 0),
        age_col(),
        col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/", 1),
    ]
}

/// The columns of Endpoints.
pub(super) fn endpoints() -> Vec<Value> {
    vec![
        name_col(),
        col("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.", 0),
        age_col(),
    ]
}

/// The columns of Nodes.
pub(super) fn node() -> Vec<Value> {
    const ADDRESSES: &str = "List of addresses reachable to the node. Queried from cloud provider, if available. More info: https://kubernetes.io/docs/reference/node/node-status/#addresses Note: This field is declared as mergeable, but the merge key is not sufficiently unique, which can cause data corruption when it is merged. Callers should instead use a full-replacement patch. See https://pr.k8s.io/79391 for an example. Consumers should assume that addresses can change during the lifetime of a Node. However, there are some exceptions where this may not be possible, such as Pods that inherit a Node's address in its own status or consumers of the downward API (status.hostIP).";
    vec![
            name_col(),
            col("Status", "string", "The status of the node", 0),
            col("Roles", "string", "The roles of the node", 0),
            age_col(),
            col("Version", "string", "Kubelet Version reported by the node.", 0),
            col("Internal-IP", "string", ADDRESSES, 1),
            col("External-IP", "string", ADDRESSES, 1),
            col("OS-Image", "string", "OS Image reported by the node from /etc/os-release (e.g. Debian GNU/Linux 7 (wheezy)).", 1),
            col("Kernel-Version", "string", "Kernel Version reported by the node from 'uname -r' (e.g. 3.16.0-0.bpo.4-amd64).", 1),
            col("Container-Runtime", "string", "ContainerRuntime Version reported by the node through runtime remote API (e.g. containerd://1.4.2).", 1),
        ]
}

/// The columns of Namespaces.
pub(super) fn namespace() -> Vec<Value> {
    vec![
        name_col(),
        col("Status", "string", "The status of the namespace", 0),
        age_col(),
    ]
}

/// The columns of Events.
pub(super) fn event() -> Vec<Value> {
    vec![
        col("Last Seen", "string", "The time at which the most recent occurrence of this event was recorded.", 0),
        col("Type", "string", "Type of this event (Normal, Warning), new types could be added in the future", 0),
        col("Reason", "string", "This should be a short, machine understandable string that gives the reason for the transition into the object's current status.", 0),
        col("Object", "string", "The object that this event is about.", 0),
        col("Subobject", "string", "If referring to a piece of an object instead of an entire object, this string should contain a valid JSON/Go field access statement, such as desiredState.manifest.containers[2]. For example, if the object reference is to a container within a pod, this would take on a value like: \"spec.containers{name}\" (where \"name\" refers to the name of the container that triggered the event) or if no container name is specified \"spec.containers[2]\" (container with index 2 in this pod). This syntax is chosen only to have some well-defined way of referencing a part of an object.", 1),
        col("Source", "string", "The component reporting this event. Should be a short machine understandable string.", 1),
        col("Message", "string", "A human-readable description of the status of this operation.", 0),
        col("First Seen", "string", "The time at which the event was first recorded. (Time of server receipt is in TypeMeta.)", 1),
        col("Count", "string", "The number of times this event has occurred.", 1),
        col("Name", "string", DESC_NAME, 1),
    ]
}

/// The columns of ConfigMaps.
pub(super) fn config_map() -> Vec<Value> {
    vec![
        name_col(),
        col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", 0),
        age_col(),
    ]
}

/// The columns of Secrets.
pub(super) fn secret() -> Vec<Value> {
    vec![
        name_col(),
        col("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", 0),
        col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", 0),
        age_col(),
    ]
}

/// The columns of ServiceAccounts.
pub(super) fn service_account() -> Vec<Value> {
    vec![
        name_col(),
        col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret", 0),
        age_col(),
    ]
}

/// The columns of Leases.
pub(super) fn lease() -> Vec<Value> {
    vec![
        name_col(),
        col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.", 0),
        age_col(),
    ]
}

/// The columns of Validating- and MutatingWebhookConfigurations.
pub(super) fn webhook_configuration() -> Vec<Value> {
    vec![
        name_col(),
        col(
            "Webhooks",
            "integer",
            "Webhooks indicates the number of webhooks registered in this configuration.",
            0,
        ),
        age_col(),
    ]
}

/// NAME and AGE: the columns of kinds without a printer of their own.
pub(super) fn name_and_age() -> Vec<Value> {
    vec![name_col(), age_col()]
}
#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn column_definitions_have_upstream_shape() {
        let cols = pod();
        let names: Vec<&str> = cols.iter().map(|c| c["name"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "Name",
                "Ready",
                "Status",
                "Restarts",
                "Age",
                "IP",
                "Node",
                "Nominated Node",
                "Readiness Gates"
            ]
        );
        assert_eq!(cols[0]["format"], "name");
        assert_eq!(cols[1]["format"], "");
        assert_eq!(cols[4]["priority"], 0);
        assert_eq!(cols[5]["priority"], 1);
        let events = event();
        let wide: Vec<&str> = events
            .iter()
            .filter(|c| c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(wide, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        let event_name = &event()[9];
        assert_eq!(
            (
                event_name["format"].as_str(),
                event_name["priority"].as_i64()
            ),
            (Some("name"), Some(1))
        );
        let deployment = deployment();
        let deploy: Vec<&str> = deployment
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            deploy,
            [
                "Name",
                "Ready",
                "Up-to-date",
                "Available",
                "Age",
                "Containers",
                "Images",
                "Selector"
            ]
        );
    }
}
