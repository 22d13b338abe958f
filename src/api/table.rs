//! Server-side printing: objects as `meta.k8s.io/v1 Table` with upstream printers' columns and cells.
//!
//! Columns and cell logic follow k8s.io/kubernetes `pkg/printers/internalversion/printers.go`
//! (v1.32). The server always prints the wide form (priority-1 columns included); kubectl
//! hides priority-1 columns unless `-o wide`. Cells are computed from the object's
//! Kubernetes JSON, so missing fields read as their zero value, as in Go.

use std::collections::BTreeSet;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::selector::LabelSelector;

/// `apiVersion` of the tables built here.
pub const TABLE_API_VERSION: &str = "meta.k8s.io/v1";

const DESC_NAME: &str = "Name must be unique within a namespace. Is required when creating resources, although some resources may allow a client to request the generation of an appropriate name automatically. Name is primarily intended for creation idempotence and configuration definition. Cannot be updated. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/names#names";
const DESC_CREATED: &str = "CreationTimestamp is a timestamp representing the server time when this object was created. It is not guaranteed to be set in happens-before order across separate operations. Clients may not set this value. It is represented in RFC3339 form and is in UTC.\n\nPopulated by the system. Read-only. Null for lists. More info: https://git.k8s.io/community/contributors/devel/sig-architecture/api-conventions.md#metadata";
const DESC_CONTAINERS: &str = "Names of each container in the template.";
const DESC_IMAGES: &str = "Images referenced by each container in the template.";

/// Upstream's label for a pod whose node went away (`NodeUnreachablePodReason`).
const NODE_LOST_REASON: &str = "NodeLost";
const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";
/// How many endpoints the ENDPOINTS column lists before "+ N more...".
const MAX_LISTED_ENDPOINTS: usize = 3;

/// What each row carries in `object` (query parameter `includeObject`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IncludeObject {
    None,
    /// A `PartialObjectMetadata` with the object's metadata (upstream's default).
    #[default]
    Metadata,
    Object,
}

impl IncludeObject {
    /// Lenient parse: an unknown value is treated as the default (`Metadata`).
    pub fn parse(s: &str) -> IncludeObject {
        Self::try_parse(s).unwrap_or_default()
    }

    /// Strict parse, as upstream: the error is the message of its 400 Bad Request.
    pub fn try_parse(s: &str) -> Result<IncludeObject, String> {
        match s {
            "" | "Metadata" => Ok(IncludeObject::Metadata),
            "None" => Ok(IncludeObject::None),
            "Object" => Ok(IncludeObject::Object),
            other => Err(format!("unrecognized includeObject value: {other:?}")),
        }
    }
}

/// True when the preferred media type of `accept` that orc can serve is a Table
/// (`application/json;as=Table;v=v1;g=meta.k8s.io`, or `v=v1beta1`).
pub fn wants_table(accept: &str) -> bool {
    negotiated_table_version(accept).is_some()
}

/// The Table `apiVersion` the client asked for (`meta.k8s.io/v1` or `meta.k8s.io/v1beta1`),
/// or None when its preferred servable media type is a plain object. Clauses are tried by
/// descending `q`, in header order among equals; clauses orc cannot serve are skipped.
pub fn negotiated_table_version(accept: &str) -> Option<&'static str> {
    let mut clauses: Vec<(f32, usize, MediaType)> = accept
        .split(',')
        .enumerate()
        .filter_map(|(i, c)| MediaType::parse(c).map(|m| (m.q, i, m)))
        .filter(|(q, _, _)| *q > 0.0)
        .collect();
    clauses.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
    for (_, _, m) in clauses {
        if !m.is_json() {
            continue;
        }
        match (m.param("as"), m.param("g"), m.param("v")) {
            (None, _, _) => return None,
            (Some("Table"), Some("meta.k8s.io"), Some("v1")) => return Some("meta.k8s.io/v1"),
            (Some("Table"), Some("meta.k8s.io"), Some("v1beta1")) => {
                return Some("meta.k8s.io/v1beta1")
            }
            _ => continue,
        }
    }
    None
}

struct MediaType {
    essence: String,
    params: Vec<(String, String)>,
    q: f32,
}

impl MediaType {
    fn parse(clause: &str) -> Option<MediaType> {
        let mut parts = clause.split(';');
        let essence = parts.next()?.trim().to_ascii_lowercase();
        if essence.is_empty() {
            return None;
        }
        let mut params = Vec::new();
        let mut q = 1.0;
        for p in parts {
            let Some((k, v)) = p.split_once('=') else {
                continue;
            };
            let (k, v) = (k.trim(), v.trim().trim_matches('"'));
            if k.eq_ignore_ascii_case("q") {
                q = v.parse().unwrap_or(0.0);
            } else {
                params.push((k.to_string(), v.to_string()));
            }
        }
        Some(MediaType { essence, params, q })
    }

    fn is_json(&self) -> bool {
        matches!(
            self.essence.as_str(),
            "application/json" | "application/*" | "*/*"
        )
    }

    fn param(&self, key: &str) -> Option<&str> {
        self.params
            .iter()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }
}

fn col(name: &str, ty: &str, description: &str, priority: i32) -> Value {
    let format = if name == "Name" { "name" } else { "" };
    json!({
        "name": name,
        "type": ty,
        "format": format,
        "description": description,
        "priority": priority,
    })
}

fn name_col() -> Value {
    col("Name", "string", DESC_NAME, 0)
}

fn age_col() -> Value {
    col("Age", "string", DESC_CREATED, 0)
}

/// Upstream's column definitions for `kind`; NAME and AGE for kinds without a printer.
pub fn column_definitions(kind: &str) -> Vec<Value> {
    match kind {
        "Pod" => vec![
            name_col(),
            col("Ready", "string", "The aggregate readiness state of this pod for accepting traffic.", 0),
            col("Status", "string", "The aggregate status of the containers in this pod.", 0),
            col("Restarts", "string", "The number of times the containers in this pod have been restarted and when the last container in this pod has restarted.", 0),
            age_col(),
            col("IP", "string", "podIP address allocated to the pod. Routable at least within the cluster. Empty if not yet allocated.", 1),
            col("Node", "string", "NodeName indicates in which node this pod is scheduled. If empty, this pod is a candidate for scheduling by the scheduler defined in schedulerName. Once this field is set, the kubelet for this node becomes responsible for the lifecycle of this pod. This field should not be used to express a desire for the pod to be scheduled on a specific node. https://kubernetes.io/docs/concepts/scheduling-eviction/assign-pod-node/#nodename", 1),
            col("Nominated Node", "string", "nominatedNodeName is set only when this pod preempts other pods on the node, but it cannot be scheduled right away as preemption victims receive their graceful termination periods. This field does not guarantee that the pod will be scheduled on this node. Scheduler may decide to place the pod elsewhere if other nodes become available sooner. Scheduler may also decide to give the resources on this node to a higher priority pod that is created after preemption. As a result, this field may be different than PodSpec.nodeName when the pod is scheduled.", 1),
            col("Readiness Gates", "string", "If specified, all readiness gates will be evaluated for pod readiness. A pod is ready when all its containers are ready AND all conditions specified in the readiness gates have status equal to \"True\" More info: https://git.k8s.io/enhancements/keps/sig-network/580-pod-readiness-gates", 1),
        ],
        "ReplicationController" => vec![
            name_col(),
            col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller", 0),
            col("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller#what-is-a-replicationcontroller", 0),
            col("Ready", "integer", "The number of ready replicas for this replication controller.", 0),
            age_col(),
            col("Containers", "string", DESC_CONTAINERS, 1),
            col("Images", "string", DESC_IMAGES, 1),
            col("Selector", "string", "Selector is a label query over pods that should match the Replicas count. If Selector is empty, it is defaulted to the labels present on the Pod template. Label keys and values that must match in order to be controlled by this replication controller, if empty defaulted to labels on Pod template. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
        ],
        "ReplicaSet" => vec![
            name_col(),
            col("Desired", "integer", "Replicas is the number of desired replicas. This is a pointer to distinguish between explicit zero and unspecified. Defaults to 1. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller", 0),
            col("Current", "integer", "Replicas is the most recently observed number of replicas. More info: https://kubernetes.io/docs/concepts/workloads/controllers/replicationcontroller/#what-is-a-replicationcontroller", 0),
            col("Ready", "integer", "readyReplicas is the number of pods targeted by this ReplicaSet with a Ready Condition.", 0),
            age_col(),
            col("Containers", "string", DESC_CONTAINERS, 1),
            col("Images", "string", DESC_IMAGES, 1),
            col("Selector", "string", "Selector is a label query over pods that should match the replica count. Label keys and values that must match in order to be controlled by this replica set. It must match the pod template's labels. More info: https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#label-selectors", 1),
        ],
        "Deployment" => vec![
            name_col(),
            col("Ready", "string", "Number of the pod with ready state", 0),
            col("Up-to-date", "string", "Total number of non-terminated pods targeted by this deployment that have the desired template spec.", 0),
            col("Available", "string", "Total number of available pods (ready for at least minReadySeconds) targeted by this deployment.", 0),
            age_col(),
            col("Containers", "string", DESC_CONTAINERS, 1),
            col("Images", "string", DESC_IMAGES, 1),
            col("Selector", "string", "Label selector for pods. Existing ReplicaSets whose pods are selected by this will be the ones affected by this deployment. It must match the pod template's labels.", 1),
        ],
        "Service" => vec![
            name_col(),
            col("Type", "string", "type determines how the Service is exposed. Defaults to ClusterIP. Valid options are ExternalName, ClusterIP, NodePort, and LoadBalancer. \"ClusterIP\" allocates a cluster-internal IP address for load-balancing to endpoints. Endpoints are determined by the selector or if that is not specified, by manual construction of an Endpoints object or EndpointSlice objects. If clusterIP is \"None\", no virtual IP is allocated and the endpoints are published as a set of endpoints rather than a virtual IP. \"NodePort\" builds on ClusterIP and allocates a port on every node which routes to the same endpoints as the clusterIP. \"LoadBalancer\" builds on NodePort and creates an external load-balancer (if supported in the current cloud) which routes to the same endpoints as the clusterIP. \"ExternalName\" aliases this service to the specified externalName. Several other fields do not apply to ExternalName services. More info: https://kubernetes.io/docs/concepts/services-networking/service/#publishing-services-service-types", 0),
            col("Cluster-IP", "string", "clusterIP is the IP address of the service and is usually assigned randomly. If an address is specified manually, is in-range (as per system configuration), and is not in use, it will be allocated to the service; otherwise creation of the service will fail. This field may not be changed through updates unless the type field is also being changed to ExternalName (which requires this field to be blank) or the type field is being changed from ExternalName (in which case this field may optionally be specified, as describe above).  Valid values are \"None\", empty string (\"\"), or a valid IP address. Setting this to \"None\" makes a \"headless service\" (no virtual IP), which is useful when direct endpoint connections are preferred and proxying is not required.  Only applies to types ClusterIP, NodePort, and LoadBalancer. If this field is specified when creating a Service of type ExternalName, creation will fail. This field will be wiped when updating a Service to type ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies", 0),
            col("External-IP", "string", "externalIPs is a list of IP addresses for which nodes in the cluster will also accept traffic for this service.  These IPs are not managed by Kubernetes.  The user is responsible for ensuring that traffic arrives at a node with this IP.  A common example is external load-balancers that are not part of the Kubernetes system.", 0),
            col("Port(s)", "string", "The list of ports that are exposed by this service. More info: https://kubernetes.io/docs/concepts/services-networking/service/#virtual-ips-and-service-proxies", 0),
            age_col(),
            col("Selector", "string", "Route service traffic to pods with label keys and values matching this selector. If empty or not present, the service is assumed to have an external process managing its endpoints, which Kubernetes will not modify. Only applies to types ClusterIP, NodePort, and LoadBalancer. Ignored if type is ExternalName. More info: https://kubernetes.io/docs/concepts/services-networking/service/", 1),
        ],
        "Endpoints" => vec![
            name_col(),
            col("Endpoints", "string", "The set of all endpoints is the union of all subsets. Addresses are placed into subsets according to the IPs they share. A single address with multiple ports, some of which are ready and some of which are not (because they come from different containers) will result in the address being displayed in different subsets for the different ports. No address will appear in both Addresses and NotReadyAddresses in the same subset. Sets of addresses and ports that comprise a service.", 0),
            age_col(),
        ],
        "Node" => {
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
        "Namespace" => vec![
            name_col(),
            col("Status", "string", "The status of the namespace", 0),
            age_col(),
        ],
        "Event" => vec![
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
        ],
        "ConfigMap" => vec![
            name_col(),
            col("Data", "string", "Data contains the configuration data. Each key must consist of alphanumeric characters, '-', '_' or '.'. Values with non-UTF-8 byte sequences must use the BinaryData field. The keys stored in Data must not overlap with the keys in the BinaryData field, this is enforced during validation process.", 0),
            age_col(),
        ],
        "Secret" => vec![
            name_col(),
            col("Type", "string", "Used to facilitate programmatic handling of secret data. More info: https://kubernetes.io/docs/concepts/configuration/secret/#secret-types", 0),
            col("Data", "string", "Data contains the secret data. Each key must consist of alphanumeric characters, '-', '_' or '.'. The serialized form of the secret data is a base64 encoded string, representing the arbitrary (possibly non-string) data value here. Described in https://tools.ietf.org/html/rfc4648#section-4", 0),
            age_col(),
        ],
        "ServiceAccount" => vec![
            name_col(),
            col("Secrets", "string", "Secrets is a list of the secrets in the same namespace that pods running using this ServiceAccount are allowed to use. Pods are only limited to this list if this service account has a \"kubernetes.io/enforce-mountable-secrets\" annotation set to \"true\". The \"kubernetes.io/enforce-mountable-secrets\" annotation is deprecated since v1.32. Prefer separate namespaces to isolate access to mounted secrets. This field should not be used to find auto-generated service account token secrets for use outside of pods. Instead, tokens can be requested directly using the TokenRequest API, or service account token secrets can be manually created. More info: https://kubernetes.io/docs/concepts/configuration/secret", 0),
            age_col(),
        ],
        "Lease" => vec![
            name_col(),
            col("Holder", "string", "holderIdentity contains the identity of the holder of a current lease. If Coordinated Leader Election is used, the holder identity must be equal to the elected LeaseCandidate.metadata.name field.", 0),
            age_col(),
        ],
        _ => vec![name_col(), age_col()],
    }
}

/// The cells of `obj`'s row, in the order of [`column_definitions`] for `kind`.
pub fn row(kind: &str, obj: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let name = json!(meta_str(obj, "name"));
    let age = json!(age(obj, now));
    match kind {
        "Pod" => pod_cells(obj, now),
        "ReplicationController" => {
            let (names, images) = container_cells(&obj["spec"]["template"]);
            vec![
                name,
                json!(int(&obj["spec"]["replicas"])),
                json!(int(&obj["status"]["replicas"])),
                json!(int(&obj["status"]["readyReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(labels_string(&obj["spec"]["selector"])),
            ]
        }
        "ReplicaSet" => {
            let (names, images) = container_cells(&obj["spec"]["template"]);
            vec![
                name,
                json!(int(&obj["spec"]["replicas"])),
                json!(int(&obj["status"]["replicas"])),
                json!(int(&obj["status"]["readyReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(format_label_selector(&obj["spec"]["selector"])),
            ]
        }
        "Deployment" => {
            let (names, images) = container_cells(&obj["spec"]["template"]);
            let status = &obj["status"];
            let ready = format!(
                "{}/{}",
                int(&status["readyReplicas"]),
                int(&obj["spec"]["replicas"])
            );
            vec![
                name,
                json!(ready),
                json!(int(&status["updatedReplicas"])),
                json!(int(&status["availableReplicas"])),
                age,
                json!(names),
                json!(images),
                json!(deployment_selector(&obj["spec"]["selector"])),
            ]
        }
        "Service" => service_cells(obj, name, age),
        "Endpoints" => vec![name, json!(format_endpoints(obj)), age],
        "Node" => node_cells(obj, name, age),
        "Namespace" => vec![name, json!(str_at(&obj["status"]["phase"])), age],
        "Event" => event_cells(obj, now),
        "ConfigMap" => {
            let count = obj_len(&obj["data"]) + obj_len(&obj["binaryData"]);
            vec![name, json!(count), age]
        }
        "Secret" => vec![
            name,
            json!(str_at(&obj["type"])),
            json!(obj_len(&obj["data"])),
            age,
        ],
        "ServiceAccount" => vec![name, json!(arr(&obj["secrets"]).len()), age],
        "Lease" => vec![name, json!(str_at(&obj["spec"]["holderIdentity"])), age],
        _ => vec![name, age],
    }
}

/// Row conditions upstream attaches: pods that finished are marked `Completed`.
fn row_conditions(kind: &str, obj: &Value) -> Option<Value> {
    if kind != "Pod" {
        return None;
    }
    let (reason, message) = match str_at(&obj["status"]["phase"]) {
        "Succeeded" => ("Succeeded", "The pod has completed successfully."),
        "Failed" => ("Failed", "The pod failed."),
        _ => return None,
    };
    Some(json!([{
        "type": "Completed",
        "status": "True",
        "reason": reason,
        "message": message,
    }]))
}

fn table_row(kind: &str, obj: &Value, include: IncludeObject, now: DateTime<Utc>) -> Value {
    let mut r = Map::new();
    r.insert("cells".into(), Value::Array(row(kind, obj, now)));
    if let Some(conditions) = row_conditions(kind, obj) {
        r.insert("conditions".into(), conditions);
    }
    match include {
        IncludeObject::None => {}
        IncludeObject::Metadata => {
            r.insert(
                "object".into(),
                json!({
                    "kind": "PartialObjectMetadata",
                    "apiVersion": TABLE_API_VERSION,
                    "metadata": obj.get("metadata").cloned().unwrap_or_else(|| json!({})),
                }),
            );
        }
        IncludeObject::Object => {
            r.insert("object".into(), obj.clone());
        }
    }
    Value::Object(r)
}

/// A full Table of `objects`. `list_meta` becomes the Table's `metadata`
/// (`resourceVersion`, `continue`, `remainingItemCount` of the list).
pub fn table(
    kind: &str,
    objects: &[&Value],
    include: IncludeObject,
    now: DateTime<Utc>,
    list_meta: Value,
) -> Value {
    let rows: Vec<Value> = objects
        .iter()
        .map(|o| table_row(kind, o, include, now))
        .collect();
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": list_meta,
        "columnDefinitions": column_definitions(kind),
        "rows": rows,
    })
}

/// A one-row Table for a single object: the body of a watch event (and of a GET of one
/// object, with `with_columns`). As upstream, a watch stream carries the column
/// definitions on its first event only; later events have `"columnDefinitions": null`.
/// The Table's metadata holds the object's resourceVersion.
pub fn watch_table(
    kind: &str,
    obj: &Value,
    include: IncludeObject,
    now: DateTime<Utc>,
    with_columns: bool,
) -> Value {
    let mut meta = Map::new();
    if let Some(rv) = obj["metadata"]["resourceVersion"].as_str() {
        meta.insert("resourceVersion".into(), json!(rv));
    }
    let columns = if with_columns {
        Value::Array(column_definitions(kind))
    } else {
        Value::Null
    };
    json!({
        "kind": "Table",
        "apiVersion": TABLE_API_VERSION,
        "metadata": meta,
        "columnDefinitions": columns,
        "rows": [table_row(kind, obj, include, now)],
    })
}

/// Rewrites a Table built here for a client that negotiated another Table version
/// (`meta.k8s.io/v1beta1`): the Table and its `PartialObjectMetadata` rows.
pub fn set_api_version(table: &mut Value, api_version: &str) {
    table["apiVersion"] = json!(api_version);
    if let Some(rows) = table["rows"].as_array_mut() {
        for r in rows {
            if r["object"]["kind"] == "PartialObjectMetadata" {
                r["object"]["apiVersion"] = json!(api_version);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Pods
// ---------------------------------------------------------------------------

fn pod_cells(pod: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let spec = &pod["spec"];
    let status = &pod["status"];
    let init_specs = arr(&spec["initContainers"]);
    let restartable: Vec<&str> = init_specs
        .iter()
        .filter(|c| str_at(&c["restartPolicy"]) == "Always")
        .map(|c| str_at(&c["name"]))
        .collect();
    let total = arr(&spec["containers"]).len() + restartable.len();

    let phase = str_at(&status["phase"]);
    let mut reason = match str_at(&status["reason"]) {
        "" => phase.to_string(),
        r => r.to_string(),
    };
    let gated = arr(&status["conditions"])
        .iter()
        .any(|c| str_at(&c["type"]) == "PodScheduled" && str_at(&c["reason"]) == "SchedulingGated");
    if gated {
        reason = "SchedulingGated".into();
    }

    let mut restarts = 0;
    let mut restartable_restarts = 0;
    let mut ready = 0;
    let mut last_restart: Option<DateTime<Utc>> = None;
    let mut last_restartable_restart: Option<DateTime<Utc>> = None;
    let mut initializing = false;
    for (i, c) in arr(&status["initContainerStatuses"]).iter().enumerate() {
        let count = int(&c["restartCount"]);
        let finished = last_finished_at(c);
        restarts += count;
        last_restart = later(last_restart, finished);
        let is_restartable = restartable.contains(&str_at(&c["name"]));
        if is_restartable {
            restartable_restarts += count;
            last_restartable_restart = later(last_restartable_restart, finished);
        }
        let terminated = c["state"]["terminated"].as_object();
        let waiting_reason = str_at(&c["state"]["waiting"]["reason"]);
        if terminated.is_some() && int(&c["state"]["terminated"]["exitCode"]) == 0 {
            continue;
        }
        if is_restartable && c["started"].as_bool() == Some(true) {
            if c["ready"].as_bool() == Some(true) {
                ready += 1;
            }
            continue;
        }
        if terminated.is_some() {
            reason = format!("Init:{}", terminated_reason(&c["state"]["terminated"]));
        } else if !waiting_reason.is_empty() && waiting_reason != "PodInitializing" {
            reason = format!("Init:{waiting_reason}");
        } else {
            reason = format!("Init:{i}/{}", init_specs.len());
        }
        initializing = true;
        break;
    }

    if !initializing || has_condition(status, "Initialized") {
        restarts = restartable_restarts;
        last_restart = last_restartable_restart;
        let mut has_running = false;
        for c in arr(&status["containerStatuses"]).iter().rev() {
            restarts += int(&c["restartCount"]);
            last_restart = later(last_restart, last_finished_at(c));
            let state = &c["state"];
            let waiting_reason = str_at(&state["waiting"]["reason"]);
            if !waiting_reason.is_empty() {
                reason = waiting_reason.to_string();
            } else if state["terminated"].is_object() {
                reason = terminated_reason(&state["terminated"]);
            } else if c["ready"].as_bool() == Some(true) && state["running"].is_object() {
                has_running = true;
                ready += 1;
            }
        }
        // A pod whose last container completed while another still runs is not "Completed".
        if reason == "Completed" && has_running {
            reason = if has_condition(status, "Ready") {
                "Running".into()
            } else {
                "NotReady".into()
            };
        }
    }

    let deleting = !meta_str(pod, "deletionTimestamp").is_empty();
    if deleting && str_at(&status["reason"]) == NODE_LOST_REASON {
        reason = "Unknown".into();
    } else if deleting && phase != "Succeeded" && phase != "Failed" {
        reason = "Terminating".into();
    }

    let restarts_cell = match last_restart {
        Some(t) if restarts != 0 => format!("{restarts} ({} ago)", human_duration(now - t)),
        _ => restarts.to_string(),
    };

    let pod_ip = arr(&status["podIPs"])
        .first()
        .map(|p| str_at(&p["ip"]))
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| str_at(&status["podIP"]));
    let gates = arr(&spec["readinessGates"]);
    let readiness_gates = if gates.is_empty() {
        "<none>".to_string()
    } else {
        let conditions = arr(&status["conditions"]);
        let passed = gates
            .iter()
            .filter(|g| {
                conditions
                    .iter()
                    .find(|c| c["type"] == g["conditionType"])
                    .is_some_and(|c| str_at(&c["status"]) == "True")
            })
            .count();
        format!("{passed}/{}", gates.len())
    };

    vec![
        json!(meta_str(pod, "name")),
        json!(format!("{ready}/{total}")),
        json!(reason),
        json!(restarts_cell),
        json!(age(pod, now)),
        json!(or_none(pod_ip)),
        json!(or_none(str_at(&spec["nodeName"]))),
        json!(or_none(str_at(&status["nominatedNodeName"]))),
        json!(readiness_gates),
    ]
}

/// A terminated container's reason, else `Signal:N` / `ExitCode:N` (upstream's fallbacks).
fn terminated_reason(terminated: &Value) -> String {
    match str_at(&terminated["reason"]) {
        "" => match int(&terminated["signal"]) {
            0 => format!("ExitCode:{}", int(&terminated["exitCode"])),
            signal => format!("Signal:{signal}"),
        },
        r => r.to_string(),
    }
}

fn last_finished_at(status: &Value) -> Option<DateTime<Utc>> {
    parse_time(&status["lastState"]["terminated"]["finishedAt"])
}

fn later(a: Option<DateTime<Utc>>, b: Option<DateTime<Utc>>) -> Option<DateTime<Utc>> {
    match (a, b) {
        (Some(a), Some(b)) => Some(a.max(b)),
        (a, b) => a.or(b),
    }
}

fn has_condition(status: &Value, ty: &str) -> bool {
    arr(&status["conditions"])
        .iter()
        .any(|c| str_at(&c["type"]) == ty && str_at(&c["status"]) == "True")
}

// ---------------------------------------------------------------------------
// Services, endpoints, nodes, events
// ---------------------------------------------------------------------------

fn service_cells(svc: &Value, name: Value, age: Value) -> Vec<Value> {
    let spec = &svc["spec"];
    let svc_type = match str_at(&spec["type"]) {
        "" => "ClusterIP",
        t => t,
    };
    let cluster_ip = arr(&spec["clusterIPs"])
        .first()
        .map(str_at)
        .filter(|ip| !ip.is_empty())
        .unwrap_or_else(|| str_at(&spec["clusterIP"]));
    let ports: Vec<String> = arr(&spec["ports"])
        .iter()
        .map(|p| {
            let protocol = match str_at(&p["protocol"]) {
                "" => "TCP",
                proto => proto,
            };
            match int(&p["nodePort"]) {
                n if n > 0 => format!("{}:{n}/{protocol}", int(&p["port"])),
                _ => format!("{}/{protocol}", int(&p["port"])),
            }
        })
        .collect();
    vec![
        name,
        json!(svc_type),
        json!(or_none(cluster_ip)),
        json!(service_external_ip(svc, svc_type)),
        json!(or_none(&ports.join(","))),
        age,
        json!(labels_string(&spec["selector"])),
    ]
}

fn service_external_ip(svc: &Value, svc_type: &str) -> String {
    let external: Vec<&str> = arr(&svc["spec"]["externalIPs"])
        .iter()
        .map(str_at)
        .collect();
    match svc_type {
        "ClusterIP" | "NodePort" if external.is_empty() => "<none>".into(),
        "ClusterIP" | "NodePort" => external.join(","),
        "LoadBalancer" => {
            let mut all: Vec<&str> = Vec::new();
            for ingress in arr(&svc["status"]["loadBalancer"]["ingress"]) {
                let addr = match str_at(&ingress["ip"]) {
                    "" => str_at(&ingress["hostname"]),
                    ip => ip,
                };
                if !addr.is_empty() && !all.contains(&addr) {
                    all.push(addr);
                }
            }
            all.extend(external);
            if all.is_empty() {
                "<pending>".into()
            } else {
                all.join(",")
            }
        }
        "ExternalName" => str_at(&svc["spec"]["externalName"]).into(),
        _ => "<unknown>".into(),
    }
}

/// Upstream `formatEndpoints`: `ip:port` pairs, at most three, then `+ N more...`.
fn format_endpoints(ep: &Value) -> String {
    let subsets = arr(&ep["subsets"]);
    if subsets.is_empty() {
        return "<none>".into();
    }
    let mut list: Vec<String> = Vec::new();
    let mut more = false;
    let mut count = 0;
    for ss in subsets {
        let addresses = arr(&ss["addresses"]);
        let ports = arr(&ss["ports"]);
        // Headless services may have no ports: list the bare addresses.
        let port_numbers: Vec<Option<i64>> = if ports.is_empty() {
            vec![None]
        } else {
            ports.iter().map(|p| Some(int(&p["port"]))).collect()
        };
        for port in port_numbers {
            count += addresses.len();
            for addr in addresses {
                if list.len() == MAX_LISTED_ENDPOINTS {
                    more = true;
                    break;
                }
                let ip = str_at(&addr["ip"]);
                list.push(match port {
                    None => ip.to_string(),
                    Some(p) if ip.contains(':') => format!("[{ip}]:{p}"),
                    Some(p) => format!("{ip}:{p}"),
                });
            }
        }
    }
    let joined = list.join(",");
    if more {
        format!("{joined} + {} more...", count - MAX_LISTED_ENDPOINTS)
    } else {
        joined
    }
}

fn node_cells(node: &Value, name: Value, age: Value) -> Vec<Value> {
    let status = &node["status"];
    // The last Ready condition wins, as with upstream's condition map.
    let ready = arr(&status["conditions"])
        .iter()
        .rev()
        .find(|c| str_at(&c["type"]) == "Ready");
    let mut states = vec![match ready {
        Some(c) if str_at(&c["status"]) == "True" => "Ready",
        Some(_) => "NotReady",
        None => "Unknown",
    }];
    if node["spec"]["unschedulable"].as_bool() == Some(true) {
        states.push("SchedulingDisabled");
    }

    let mut roles = BTreeSet::new();
    if let Some(labels) = node["metadata"]["labels"].as_object() {
        for (k, v) in labels {
            if let Some(role) = k.strip_prefix(NODE_ROLE_PREFIX) {
                if !role.is_empty() {
                    roles.insert(role.to_string());
                }
            } else if k == NODE_ROLE_LABEL && !str_at(v).is_empty() {
                roles.insert(str_at(v).to_string());
            }
        }
    }
    let roles = roles.into_iter().collect::<Vec<_>>().join(",");

    let info = &status["nodeInfo"];
    let address = |ty: &str| {
        arr(&status["addresses"])
            .iter()
            .find(|a| str_at(&a["type"]) == ty)
            .map(|a| str_at(&a["address"]).to_string())
            .unwrap_or_else(|| "<none>".into())
    };
    let or_unknown = |v: &Value| match str_at(v) {
        "" => "<unknown>".to_string(),
        s => s.to_string(),
    };
    vec![
        name,
        json!(states.join(",")),
        json!(or_none(&roles)),
        age,
        json!(str_at(&info["kubeletVersion"])),
        json!(address("InternalIP")),
        json!(address("ExternalIP")),
        json!(or_unknown(&info["osImage"])),
        json!(or_unknown(&info["kernelVersion"])),
        json!(or_unknown(&info["containerRuntimeVersion"])),
    ]
}

fn event_cells(ev: &Value, now: DateTime<Utc>) -> Vec<Value> {
    let since = |v: &Value| match parse_time(v) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    };
    let first_seen = if str_at(&ev["firstTimestamp"]).is_empty() {
        since(&ev["eventTime"])
    } else {
        since(&ev["firstTimestamp"])
    };
    let mut last_seen = if str_at(&ev["lastTimestamp"]).is_empty() {
        first_seen.clone()
    } else {
        since(&ev["lastTimestamp"])
    };
    let mut count = int(&ev["count"]);
    if ev["series"].is_object() {
        last_seen = since(&ev["series"]["lastObservedTime"]);
        count = int(&ev["series"]["count"]);
    } else if count == 0 {
        // Singleton events of the events.k8s.io API carry no count.
        count = 1;
    }
    let involved = &ev["involvedObject"];
    let kind = str_at(&involved["kind"]).to_lowercase();
    let target = match str_at(&involved["name"]) {
        "" => kind,
        name => format!("{kind}/{name}"),
    };
    let component = first_non_empty(
        str_at(&ev["source"]["component"]),
        str_at(&ev["reportingComponent"]),
    );
    let instance = first_non_empty(
        str_at(&ev["source"]["host"]),
        str_at(&ev["reportingInstance"]),
    );
    let source = if instance.is_empty() {
        component.to_string()
    } else {
        format!("{component}, {instance}")
    };
    vec![
        json!(last_seen),
        json!(str_at(&ev["type"])),
        json!(str_at(&ev["reason"])),
        json!(target),
        json!(str_at(&involved["fieldPath"])),
        json!(source),
        json!(str_at(&ev["message"]).trim()),
        json!(first_seen),
        json!(count),
        json!(meta_str(ev, "name")),
    ]
}

fn first_non_empty<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() {
        b
    } else {
        a
    }
}

// ---------------------------------------------------------------------------
// Shared cell helpers
// ---------------------------------------------------------------------------

/// Container names and images of a pod template, comma-separated (`layoutContainerCells`).
fn container_cells(template: &Value) -> (String, String) {
    let containers = arr(&template["spec"]["containers"]);
    let names: Vec<&str> = containers.iter().map(|c| str_at(&c["name"])).collect();
    let images: Vec<&str> = containers.iter().map(|c| str_at(&c["image"])).collect();
    (names.join(","), images.join(","))
}

/// Upstream `labels.FormatLabels`: sorted `k=v` pairs, `<none>` when empty.
fn labels_string(map: &Value) -> String {
    match map.as_object() {
        Some(m) if !m.is_empty() => {
            let mut pairs: Vec<String> = m
                .iter()
                .map(|(k, v)| format!("{k}={}", str_at(v)))
                .collect();
            pairs.sort();
            pairs.join(",")
        }
        _ => "<none>".into(),
    }
}

/// Upstream `metav1.FormatLabelSelector`: `<none>` for a nil or empty selector.
fn format_label_selector(selector: &Value) -> String {
    if !selector.is_object() {
        return "<none>".into();
    }
    match LabelSelector::from_k8s(selector) {
        Ok(s) if s.is_empty() => "<none>".into(),
        Ok(s) => s.to_string(),
        Err(_) => "<error>".into(),
    }
}

/// The Deployment printer renders the selector directly: empty when nil or empty.
fn deployment_selector(selector: &Value) -> String {
    if !selector.is_object() {
        return String::new();
    }
    match LabelSelector::from_k8s(selector) {
        Ok(s) => s.to_string(),
        Err(_) => "<invalid>".into(),
    }
}

fn age(obj: &Value, now: DateTime<Utc>) -> String {
    match parse_time(&obj["metadata"]["creationTimestamp"]) {
        Some(t) => human_duration(now - t),
        None => "<unknown>".into(),
    }
}

/// Upstream `duration.HumanDuration`: "45s", "3m2s", "10m", "5h", "7h30m", "2d3h", "400d", "3y10d".
pub fn human_duration(d: chrono::Duration) -> String {
    // Whole seconds, truncated toward zero like Go's int(d.Seconds()).
    let seconds = d.num_seconds();
    // Allow up to two seconds of clock skew before calling a time in the future invalid.
    if seconds < -1 {
        return "<invalid>".into();
    } else if seconds < 0 {
        return "0s".into();
    } else if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = seconds / 60;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    } else if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = seconds / 3600;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    } else if hours < 48 {
        return format!("{hours}h");
    } else if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    } else if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    } else if hours < 24 * 365 * 8 {
        let dy = (hours / 24) % 365;
        if dy == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{dy}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

fn parse_time(v: &Value) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(v.as_str()?)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

fn meta_str<'a>(obj: &'a Value, field: &str) -> &'a str {
    str_at(&obj["metadata"][field])
}

fn str_at(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn int(v: &Value) -> i64 {
    v.as_i64().unwrap_or(0)
}

fn arr(v: &Value) -> &[Value] {
    v.as_array().map(Vec::as_slice).unwrap_or(&[])
}

fn obj_len(v: &Value) -> usize {
    v.as_object().map_or(0, Map::len)
}

fn or_none(s: &str) -> String {
    if s.is_empty() {
        "<none>".into()
    } else {
        s.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()
    }

    /// RFC 3339 time `secs` seconds before [`now`].
    fn ago(secs: i64) -> String {
        (now() - chrono::Duration::seconds(secs))
            .format("%Y-%m-%dT%H:%M:%SZ")
            .to_string()
    }

    fn cells(kind: &str, obj: &Value) -> Vec<String> {
        row(kind, obj, now())
            .into_iter()
            .map(|c| match c {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .collect()
    }

    fn pod(status: Value) -> Value {
        json!({
            "metadata": {"name": "web", "namespace": "default", "creationTimestamp": ago(300)},
            "spec": {"containers": [{"name": "app", "image": "busybox"}], "nodeName": "n1"},
            "status": status,
        })
    }

    #[test]
    fn human_duration_matches_upstream_buckets() {
        let d = chrono::Duration::seconds;
        assert_eq!(human_duration(d(-5)), "<invalid>");
        assert_eq!(human_duration(chrono::Duration::milliseconds(-1500)), "0s");
        assert_eq!(human_duration(d(0)), "0s");
        assert_eq!(human_duration(d(5)), "5s");
        assert_eq!(human_duration(d(119)), "119s");
        assert_eq!(human_duration(d(120)), "2m");
        assert_eq!(human_duration(d(182)), "3m2s");
        assert_eq!(human_duration(d(599)), "9m59s");
        assert_eq!(human_duration(d(600)), "10m");
        assert_eq!(human_duration(d(179 * 60 + 30)), "179m");
        assert_eq!(human_duration(d(3 * 3600)), "3h");
        assert_eq!(human_duration(d(7 * 3600 + 30 * 60)), "7h30m");
        assert_eq!(human_duration(d(5 * 3600 + 59)), "5h");
        assert_eq!(human_duration(d(47 * 3600)), "47h");
        assert_eq!(human_duration(d(51 * 3600)), "2d3h");
        assert_eq!(human_duration(d(72 * 3600)), "3d");
        assert_eq!(human_duration(d(8 * 24 * 3600)), "8d");
        assert_eq!(human_duration(d(400 * 24 * 3600)), "400d");
        assert_eq!(human_duration(d(365 * 3 * 24 * 3600)), "3y");
        assert_eq!(human_duration(d((365 * 3 + 10) * 24 * 3600)), "3y10d");
        assert_eq!(human_duration(d(365 * 9 * 24 * 3600)), "9y");
    }

    #[test]
    fn age_is_unknown_without_creation_timestamp() {
        let cm = json!({"metadata": {"name": "cfg"}, "data": {"a": "1"}});
        assert_eq!(cells("ConfigMap", &cm), ["cfg", "1", "<unknown>"]);
    }

    #[test]
    fn running_pod_shows_ready_ip_and_node() {
        let p = pod(json!({
            "phase": "Running",
            "podIP": "10.42.0.5",
            "podIPs": [{"ip": "10.42.0.5"}],
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 0,
                "state": {"running": {"startedAt": ago(200)}},
            }],
        }));
        assert_eq!(
            cells("Pod", &p),
            [
                "web",
                "1/1",
                "Running",
                "0",
                "5m",
                "10.42.0.5",
                "n1",
                "<none>",
                "<none>"
            ]
        );
    }

    #[test]
    fn pending_pod_without_ip_or_node_shows_none() {
        let mut p = pod(json!({"phase": "Pending"}));
        p["spec"].as_object_mut().unwrap().remove("nodeName");
        assert_eq!(
            cells("Pod", &p),
            ["web", "0/1", "Pending", "0", "5m", "<none>", "<none>", "<none>", "<none>"]
        );
    }

    #[test]
    fn crash_looping_pod_shows_reason_and_last_restart() {
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 3,
                "state": {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}},
                "lastState": {"terminated": {"exitCode": 1, "reason": "Error", "finishedAt": ago(300)}},
            }],
        }));
        let c = cells("Pod", &p);
        assert_eq!(c[1], "0/1");
        assert_eq!(c[2], "CrashLoopBackOff");
        assert_eq!(c[3], "3 (5m ago)");
    }

    #[test]
    fn restarts_without_finish_time_show_only_the_count() {
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "ready": true, "restartCount": 2,
                "state": {"running": {}},
            }],
        }));
        assert_eq!(cells("Pod", &p)[3], "2");
    }

    #[test]
    fn image_pull_errors_and_container_creating_show_waiting_reason() {
        for reason in ["ErrImagePull", "ImagePullBackOff", "ContainerCreating"] {
            let p = pod(json!({
                "phase": "Pending",
                "containerStatuses": [{
                    "name": "app", "ready": false, "restartCount": 0,
                    "state": {"waiting": {"reason": reason}},
                }],
            }));
            assert_eq!(cells("Pod", &p)[2], reason);
        }
    }

    #[test]
    fn oom_killed_and_reasonless_terminations() {
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{
                "name": "app", "restartCount": 0,
                "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}},
            }],
        }));
        assert_eq!(cells("Pod", &p)[2], "OOMKilled");
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 2}}}],
        }));
        assert_eq!(cells("Pod", &p)[2], "ExitCode:2");
        let p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "state": {"terminated": {"exitCode": 143, "signal": 15}}}],
        }));
        assert_eq!(cells("Pod", &p)[2], "Signal:15");
    }

    #[test]
    fn first_container_reason_wins() {
        let mut p = pod(json!({
            "phase": "Running",
            "containerStatuses": [
                {"name": "a", "state": {"waiting": {"reason": "CrashLoopBackOff"}}},
                {"name": "b", "state": {"waiting": {"reason": "ErrImagePull"}}},
            ],
        }));
        p["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert_eq!(cells("Pod", &p)[..3], ["web", "0/2", "CrashLoopBackOff"]);
    }

    #[test]
    fn terminating_pod_shows_terminating_unless_finished() {
        let mut p = pod(json!({
            "phase": "Running",
            "containerStatuses": [{"name": "app", "ready": true, "state": {"running": {}}}],
        }));
        p["metadata"]["deletionTimestamp"] = json!(ago(1));
        assert_eq!(cells("Pod", &p)[2], "Terminating");
        p["status"]["phase"] = json!("Succeeded");
        p["status"]["containerStatuses"] = json!([{"name": "app", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}}]);
        assert_eq!(cells("Pod", &p)[2], "Completed");
        p["status"]["phase"] = json!("Running");
        p["status"]["reason"] = json!("NodeLost");
        assert_eq!(cells("Pod", &p)[2], "Unknown");
    }

    #[test]
    fn completed_pod_with_init_containers() {
        let mut p = pod(json!({
            "phase": "Succeeded",
            "conditions": [{"type": "Initialized", "status": "True"}],
            "initContainerStatuses": [{
                "name": "setup", "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }],
            "containerStatuses": [{
                "name": "app", "ready": false, "restartCount": 0,
                "state": {"terminated": {"exitCode": 0, "reason": "Completed"}},
            }],
        }));
        p["spec"]["initContainers"] = json!([{"name": "setup", "image": "busybox"}]);
        assert_eq!(cells("Pod", &p)[..4], ["web", "0/1", "Completed", "0"]);
        let t = table("Pod", &[&p], IncludeObject::Metadata, now(), json!({}));
        assert_eq!(
            t["rows"][0]["conditions"],
            json!([{"type": "Completed", "status": "True", "reason": "Succeeded",
                    "message": "The pod has completed successfully."}])
        );
    }

    #[test]
    fn initializing_pod_shows_init_progress() {
        let mut p = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [
                {"name": "one", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "two", "restartCount": 0, "state": {"running": {}}},
            ],
            "containerStatuses": [{"name": "app", "state": {"waiting": {"reason": "PodInitializing"}}}],
        }));
        p["spec"]["initContainers"] = json!([{"name": "one"}, {"name": "two"}]);
        assert_eq!(cells("Pod", &p)[..3], ["web", "0/1", "Init:1/2"]);

        p["status"]["initContainerStatuses"] = json!([
            {"name": "one", "state": {"waiting": {"reason": "PodInitializing"}}},
        ]);
        p["spec"]["initContainers"] = json!([{"name": "one"}]);
        assert_eq!(cells("Pod", &p)[2], "Init:0/1");
    }

    #[test]
    fn failing_init_container_shows_init_reason_and_its_restarts() {
        let mut p = pod(json!({
            "phase": "Pending",
            "initContainerStatuses": [{
                "name": "setup", "restartCount": 4,
                "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(30)}},
            }],
            "containerStatuses": [{"name": "app", "restartCount": 0, "state": {"waiting": {"reason": "PodInitializing"}}}],
        }));
        p["spec"]["initContainers"] = json!([{"name": "setup"}]);
        assert_eq!(
            cells("Pod", &p)[2..4],
            ["Init:CrashLoopBackOff", "4 (30s ago)"]
        );

        p["status"]["initContainerStatuses"][0]["state"] = json!({"terminated": {"exitCode": 3}});
        assert_eq!(cells("Pod", &p)[2], "Init:ExitCode:3");
        p["status"]["initContainerStatuses"][0]["state"] =
            json!({"terminated": {"exitCode": 1, "reason": "Error"}});
        assert_eq!(cells("Pod", &p)[2], "Init:Error");
    }

    #[test]
    fn sidecar_init_containers_count_as_containers() {
        let mut p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Initialized", "status": "True"}, {"type": "Ready", "status": "True"}],
            "initContainerStatuses": [{
                "name": "proxy", "ready": true, "started": true, "restartCount": 1,
                "state": {"running": {}},
                "lastState": {"terminated": {"exitCode": 1, "finishedAt": ago(90)}},
            }],
            "containerStatuses": [{"name": "app", "ready": true, "restartCount": 0, "state": {"running": {}}}],
        }));
        p["spec"]["initContainers"] = json!([{"name": "proxy", "restartPolicy": "Always"}]);
        assert_eq!(cells("Pod", &p)[1..4], ["2/2", "Running", "1 (90s ago)"]);
    }

    #[test]
    fn completed_container_beside_a_running_one_is_running() {
        let mut p = pod(json!({
            "phase": "Running",
            "conditions": [{"type": "Ready", "status": "True"}],
            "containerStatuses": [
                {"name": "a", "state": {"terminated": {"exitCode": 0, "reason": "Completed"}}},
                {"name": "b", "ready": true, "state": {"running": {}}},
            ],
        }));
        p["spec"]["containers"] = json!([{"name": "a"}, {"name": "b"}]);
        assert_eq!(cells("Pod", &p)[1..3], ["1/2", "Running"]);
        p["status"]["conditions"] = json!([{"type": "Ready", "status": "False"}]);
        assert_eq!(cells("Pod", &p)[2], "NotReady");
    }

    #[test]
    fn readiness_gates_and_scheduling_gates() {
        let mut p = pod(json!({
            "phase": "Pending",
            "conditions": [
                {"type": "PodScheduled", "status": "False", "reason": "SchedulingGated"},
                {"type": "example.com/lb", "status": "True"},
            ],
        }));
        p["spec"]["readinessGates"] =
            json!([{"conditionType": "example.com/lb"}, {"conditionType": "example.com/dns"}]);
        let c = cells("Pod", &p);
        assert_eq!(c[2], "SchedulingGated");
        assert_eq!(c[8], "1/2");
    }

    #[test]
    fn pod_cells_match_columns() {
        let p = pod(json!({}));
        assert_eq!(row("Pod", &p, now()).len(), column_definitions("Pod").len());
    }

    fn template() -> Value {
        json!({"spec": {"containers": [
            {"name": "web", "image": "nginx:1"},
            {"name": "log", "image": "busybox"},
        ]}})
    }

    #[test]
    fn deployment_counts_and_wide_cells() {
        let d = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(51 * 3600)},
            "spec": {
                "replicas": 3,
                "selector": {"matchLabels": {"app": "web", "tier": "fe"}},
                "template": template(),
            },
            "status": {"replicas": 3, "readyReplicas": 2, "updatedReplicas": 3, "availableReplicas": 2},
        });
        assert_eq!(
            cells("Deployment", &d),
            [
                "web",
                "2/3",
                "3",
                "2",
                "2d3h",
                "web,log",
                "nginx:1,busybox",
                "app=web,tier=fe"
            ]
        );
        let r = row("Deployment", &d, now());
        assert_eq!(r[2], json!(3), "UP-TO-DATE is a number cell");
        let fresh = json!({"metadata": {"name": "new"}, "spec": {"replicas": 2}});
        assert_eq!(cells("Deployment", &fresh)[1..4], ["0/2", "0", "0"]);
        assert_eq!(cells("Deployment", &fresh)[7], "");
    }

    #[test]
    fn replica_set_and_replication_controller_cells() {
        let rs = json!({
            "metadata": {"name": "web-abc", "creationTimestamp": ago(10)},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"},
                             "matchExpressions": [{"key": "env", "operator": "In", "values": ["prod", "dev"]}]},
                "template": template(),
            },
            "status": {"replicas": 2, "readyReplicas": 1},
        });
        assert_eq!(
            row("ReplicaSet", &rs, now()),
            vec![
                json!("web-abc"),
                json!(2),
                json!(2),
                json!(1),
                json!("10s"),
                json!("web,log"),
                json!("nginx:1,busybox"),
                json!("app=web,env in (dev,prod)"),
            ]
        );
        let rc = json!({
            "metadata": {"name": "rc"},
            "spec": {"replicas": 1, "selector": {"b": "2", "a": "1"}, "template": template()},
        });
        assert_eq!(
            cells("ReplicationController", &rc),
            [
                "rc",
                "1",
                "0",
                "0",
                "<unknown>",
                "web,log",
                "nginx:1,busybox",
                "a=1,b=2"
            ]
        );
        let bare = json!({"metadata": {"name": "rs"}, "spec": {}});
        assert_eq!(cells("ReplicaSet", &bare)[7], "<none>");
    }

    #[test]
    fn node_port_service() {
        let svc = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(3600 * 5)},
            "spec": {
                "type": "NodePort",
                "clusterIP": "10.43.0.15",
                "clusterIPs": ["10.43.0.15"],
                "selector": {"app": "web"},
                "ports": [
                    {"port": 80, "nodePort": 30080, "protocol": "TCP"},
                    {"port": 53, "nodePort": 30053, "protocol": "UDP"},
                ],
            },
        });
        assert_eq!(
            cells("Service", &svc),
            [
                "web",
                "NodePort",
                "10.43.0.15",
                "<none>",
                "80:30080/TCP,53:30053/UDP",
                "5h",
                "app=web"
            ]
        );
    }

    #[test]
    fn cluster_ip_load_balancer_and_external_name_services() {
        let svc = json!({
            "metadata": {"name": "api"},
            "spec": {"type": "ClusterIP", "clusterIP": "10.43.0.1",
                     "ports": [{"port": 443, "protocol": "TCP"}]},
        });
        assert_eq!(
            cells("Service", &svc)[1..5],
            ["ClusterIP", "10.43.0.1", "<none>", "443/TCP"]
        );
        assert_eq!(cells("Service", &svc)[6], "<none>");

        let mut lb = json!({
            "metadata": {"name": "lb"},
            "spec": {"type": "LoadBalancer", "clusterIPs": ["10.43.0.9"],
                     "ports": [{"port": 80, "nodePort": 31000, "protocol": "TCP"}]},
        });
        assert_eq!(cells("Service", &lb)[3], "<pending>");
        lb["status"] = json!({"loadBalancer": {"ingress": [{"ip": "192.168.1.10"}, {"hostname": "lb.example"}]}});
        lb["spec"]["externalIPs"] = json!(["1.2.3.4"]);
        assert_eq!(cells("Service", &lb)[3], "192.168.1.10,lb.example,1.2.3.4");

        let ext = json!({
            "metadata": {"name": "ext"},
            "spec": {"type": "ExternalName", "externalName": "db.example.com"},
        });
        assert_eq!(
            cells("Service", &ext)[1..5],
            ["ExternalName", "<none>", "db.example.com", "<none>"]
        );

        let headless = json!({"metadata": {"name": "h"}, "spec": {"clusterIP": "None", "clusterIPs": ["None"]}});
        assert_eq!(cells("Service", &headless)[1..3], ["ClusterIP", "None"]);
    }

    #[test]
    fn endpoints_list_three_then_count_the_rest() {
        let ep = json!({
            "metadata": {"name": "web", "creationTimestamp": ago(60)},
            "subsets": [{
                "addresses": [{"ip": "10.42.0.5"}, {"ip": "10.42.0.6"}, {"ip": "10.42.1.7"}, {"ip": "10.42.1.8"}],
                "ports": [{"port": 80, "protocol": "TCP"}],
            }],
        });
        assert_eq!(
            cells("Endpoints", &ep),
            [
                "web",
                "10.42.0.5:80,10.42.0.6:80,10.42.1.7:80 + 1 more...",
                "60s"
            ]
        );
        let two_ports = json!({
            "metadata": {"name": "web"},
            "subsets": [{"addresses": [{"ip": "10.42.0.5"}, {"ip": "fd00::5"}],
                         "ports": [{"port": 80}, {"port": 443}]}],
        });
        assert_eq!(
            cells("Endpoints", &two_ports)[1],
            "10.42.0.5:80,[fd00::5]:80,10.42.0.5:443 + 1 more..."
        );
        let headless =
            json!({"metadata": {"name": "h"}, "subsets": [{"addresses": [{"ip": "10.42.0.5"}]}]});
        assert_eq!(cells("Endpoints", &headless)[1], "10.42.0.5");
        let empty = json!({"metadata": {"name": "e"}});
        assert_eq!(cells("Endpoints", &empty)[1], "<none>");
    }

    #[test]
    fn node_status_roles_and_wide_cells() {
        let mut node = json!({
            "metadata": {"name": "n1", "creationTimestamp": ago(8 * 86400),
                         "labels": {"node-role.kubernetes.io/control-plane": "true",
                                    "node-role.kubernetes.io/master": "true",
                                    "kubernetes.io/hostname": "n1"}},
            "spec": {},
            "status": {
                "conditions": [{"type": "MemoryPressure", "status": "False"}, {"type": "Ready", "status": "True"}],
                "addresses": [{"type": "InternalIP", "address": "192.168.1.5"}, {"type": "Hostname", "address": "n1"}],
                "nodeInfo": {"kubeletVersion": "v1.32.0+orc", "osImage": "Debian GNU/Linux 12 (bookworm)",
                             "kernelVersion": "6.1.0-18-amd64", "containerRuntimeVersion": "containerd://1.6.20"},
            },
        });
        assert_eq!(
            cells("Node", &node),
            [
                "n1",
                "Ready",
                "control-plane,master",
                "8d",
                "v1.32.0+orc",
                "192.168.1.5",
                "<none>",
                "Debian GNU/Linux 12 (bookworm)",
                "6.1.0-18-amd64",
                "containerd://1.6.20"
            ]
        );
        node["status"]["conditions"][1]["status"] = json!("Unknown");
        node["spec"]["unschedulable"] = json!(true);
        node["metadata"]["labels"] = json!({"kubernetes.io/role": "worker"});
        let c = cells("Node", &node);
        assert_eq!(c[1..3], ["NotReady,SchedulingDisabled", "worker"]);

        let bare = json!({"metadata": {"name": "n2"}});
        assert_eq!(
            cells("Node", &bare)[1..],
            [
                "Unknown",
                "<none>",
                "<unknown>",
                "",
                "<none>",
                "<none>",
                "<unknown>",
                "<unknown>",
                "<unknown>"
            ]
        );
    }

    #[test]
    fn event_cells() {
        let ev = json!({
            "metadata": {"name": "web.17a", "namespace": "default"},
            "involvedObject": {"kind": "Pod", "name": "web", "fieldPath": "spec.containers{app}"},
            "reason": "BackOff",
            "message": "Back-off restarting failed container\n",
            "type": "Warning",
            "source": {"component": "kubelet", "host": "n1"},
            "firstTimestamp": ago(600),
            "lastTimestamp": ago(65),
            "count": 7,
        });
        assert_eq!(
            row("Event", &ev, now()),
            vec![
                json!("65s"),
                json!("Warning"),
                json!("BackOff"),
                json!("pod/web"),
                json!("spec.containers{app}"),
                json!("kubelet, n1"),
                json!("Back-off restarting failed container"),
                json!("10m"),
                json!(7),
                json!("web.17a"),
            ]
        );
        let new_api = json!({
            "metadata": {"name": "x"},
            "involvedObject": {"kind": "Node"},
            "eventTime": "2024-06-01T11:59:30.123456Z",
            "reportingComponent": "orc-node-controller",
            "type": "Normal",
            "reason": "NodeReady",
        });
        let c = cells("Event", &new_api);
        assert_eq!(c[0], "29s");
        assert_eq!(c[3], "node");
        assert_eq!(c[5], "orc-node-controller");
        assert_eq!(c[7], "29s");
        assert_eq!(c[8], "1");
        let series = json!({
            "metadata": {"name": "y"},
            "involvedObject": {"kind": "Pod", "name": "p"},
            "eventTime": ago(3600),
            "series": {"count": 12, "lastObservedTime": "2024-06-01T11:58:00.000000Z"},
        });
        let c = cells("Event", &series);
        assert_eq!(
            (c[0].as_str(), c[7].as_str(), c[8].as_str()),
            ("2m", "60m", "12")
        );
    }

    #[test]
    fn small_kinds() {
        let ns = json!({"metadata": {"name": "kube-system", "creationTimestamp": ago(86400 * 3)},
                        "status": {"phase": "Active"}});
        assert_eq!(cells("Namespace", &ns), ["kube-system", "Active", "3d"]);
        let cm = json!({"metadata": {"name": "c", "creationTimestamp": ago(5)},
                        "data": {"a": "1", "b": "2"}, "binaryData": {"c": "AA=="}});
        assert_eq!(
            row("ConfigMap", &cm, now()),
            vec![json!("c"), json!(3), json!("5s")]
        );
        let secret = json!({"metadata": {"name": "s"}, "type": "Opaque", "data": {"k": "dg=="}});
        assert_eq!(cells("Secret", &secret), ["s", "Opaque", "1", "<unknown>"]);
        let sa = json!({"metadata": {"name": "default"}});
        assert_eq!(cells("ServiceAccount", &sa), ["default", "0", "<unknown>"]);
        let lease = json!({"metadata": {"name": "n1", "creationTimestamp": ago(7200)},
                           "spec": {"holderIdentity": "n1"}});
        assert_eq!(cells("Lease", &lease), ["n1", "n1", "120m"]);
        let other = json!({"metadata": {"name": "thing", "creationTimestamp": ago(3)}});
        assert_eq!(cells("Widget", &other), ["thing", "3s"]);
    }

    #[test]
    fn every_kind_has_as_many_cells_as_columns() {
        let obj = json!({"metadata": {"name": "x"}});
        for kind in [
            "Pod",
            "ReplicationController",
            "ReplicaSet",
            "Deployment",
            "Service",
            "Endpoints",
            "Node",
            "Namespace",
            "Event",
            "ConfigMap",
            "Secret",
            "ServiceAccount",
            "Lease",
            "Other",
        ] {
            assert_eq!(
                row(kind, &obj, now()).len(),
                column_definitions(kind).len(),
                "{kind}"
            );
        }
    }

    #[test]
    fn column_definitions_have_upstream_shape() {
        let cols = column_definitions("Pod");
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
        let events = column_definitions("Event");
        let wide: Vec<&str> = events
            .iter()
            .filter(|c| c["priority"] == 0)
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(wide, ["Last Seen", "Type", "Reason", "Object", "Message"]);
        let event_name = &column_definitions("Event")[9];
        assert_eq!(
            (
                event_name["format"].as_str(),
                event_name["priority"].as_i64()
            ),
            (Some("name"), Some(1))
        );
        let deployment = column_definitions("Deployment");
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

    #[test]
    fn table_includes_partial_metadata_by_default() {
        let a = json!({"apiVersion": "v1", "kind": "ConfigMap",
                       "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "y"}}, "data": {}});
        let b = json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b", "namespace": "ns"}});
        let t = table(
            "ConfigMap",
            &[&a, &b],
            IncludeObject::parse(""),
            now(),
            json!({"resourceVersion": "42"}),
        );
        assert_eq!(t["kind"], "Table");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1");
        assert_eq!(t["metadata"], json!({"resourceVersion": "42"}));
        assert_eq!(t["columnDefinitions"].as_array().unwrap().len(), 3);
        let rows = t["rows"].as_array().unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0]["cells"], json!(["a", 0, "<unknown>"]));
        assert_eq!(
            rows[0]["object"],
            json!({"kind": "PartialObjectMetadata", "apiVersion": "meta.k8s.io/v1",
                   "metadata": {"name": "a", "namespace": "ns", "labels": {"x": "y"}}})
        );
        assert!(rows[0].get("conditions").is_none());

        let full = table("ConfigMap", &[&a], IncludeObject::Object, now(), json!({}));
        assert_eq!(full["rows"][0]["object"], a);
        let none = table("ConfigMap", &[&a], IncludeObject::None, now(), json!({}));
        assert!(none["rows"][0].get("object").is_none());
        let empty = table("Pod", &[], IncludeObject::Metadata, now(), json!({}));
        assert_eq!(empty["rows"], json!([]));
    }

    #[test]
    fn include_object_parsing() {
        assert_eq!(IncludeObject::parse(""), IncludeObject::Metadata);
        assert_eq!(IncludeObject::parse("Metadata"), IncludeObject::Metadata);
        assert_eq!(IncludeObject::parse("None"), IncludeObject::None);
        assert_eq!(IncludeObject::parse("Object"), IncludeObject::Object);
        assert_eq!(IncludeObject::parse("bogus"), IncludeObject::Metadata);
        assert_eq!(
            IncludeObject::try_parse("object"),
            Err("unrecognized includeObject value: \"object\"".to_string())
        );
    }

    #[test]
    fn watch_tables_carry_columns_only_when_asked() {
        let cm = json!({"metadata": {"name": "a", "resourceVersion": "7"}});
        let first = watch_table("ConfigMap", &cm, IncludeObject::Metadata, now(), true);
        assert_eq!(first["columnDefinitions"].as_array().unwrap().len(), 3);
        assert_eq!(first["metadata"], json!({"resourceVersion": "7"}));
        assert_eq!(first["rows"].as_array().unwrap().len(), 1);
        let later = watch_table("ConfigMap", &cm, IncludeObject::Metadata, now(), false);
        assert_eq!(later["columnDefinitions"], Value::Null);
        assert_eq!(later["rows"][0]["cells"][0], "a");
        assert_eq!(later["rows"][0]["object"]["kind"], "PartialObjectMetadata");
    }

    #[test]
    fn accept_header_negotiation() {
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert!(wants_table(kubectl));
        assert_eq!(negotiated_table_version(kubectl), Some("meta.k8s.io/v1"));
        assert_eq!(
            negotiated_table_version(
                "application/json;as=Table;v=v1beta1;g=meta.k8s.io, application/json"
            ),
            Some("meta.k8s.io/v1beta1")
        );
        assert!(wants_table(
            "application/json; as=Table; v=v1; g=meta.k8s.io"
        ));
        assert!(!wants_table("application/json"));
        assert!(!wants_table(""));
        assert!(!wants_table("*/*"));
        assert!(!wants_table(
            "application/json,application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert!(wants_table(
            "application/json;q=0.5,application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        // Unknown transformations and unserved types are skipped, not fatal.
        assert!(!wants_table(
            "application/json;as=Table;v=v2;g=meta.k8s.io,application/json"
        ));
        assert!(!wants_table(
            "application/json;as=PartialObjectMetadataList;v=v1;g=meta.k8s.io,application/json"
        ));
        assert!(wants_table(
            "application/vnd.kubernetes.protobuf;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1;g=meta.k8s.io"
        ));
        assert!(!wants_table(
            "application/json;as=Table;v=v1;g=meta.k8s.io;q=0"
        ));
    }

    #[test]
    fn v1beta1_tables_rewrite_api_versions() {
        let cm = json!({"metadata": {"name": "a"}});
        let mut t = table(
            "ConfigMap",
            &[&cm],
            IncludeObject::Metadata,
            now(),
            json!({}),
        );
        set_api_version(&mut t, "meta.k8s.io/v1beta1");
        assert_eq!(t["apiVersion"], "meta.k8s.io/v1beta1");
        assert_eq!(t["rows"][0]["object"]["apiVersion"], "meta.k8s.io/v1beta1");
    }
}
