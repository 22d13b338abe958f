//! Node cells: status, roles, versions and addresses.

use std::collections::BTreeSet;

use serde_json::{json, Value};

use super::cells::{arr, or_none, str_at};

const NODE_ROLE_PREFIX: &str = "node-role.kubernetes.io/";
const NODE_ROLE_LABEL: &str = "kubernetes.io/role";
pub(super) fn node_cells(node: &Value, name: Value, age: Value) -> Vec<Value> {
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

#[cfg(test)]
mod tests {
    use super::super::NODE;
    use crate::api::table::test_support::{ago, cells};
    use serde_json::json;

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
            cells(&NODE, &node),
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
        let c = cells(&NODE, &node);
        assert_eq!(c[1..3], ["NotReady,SchedulingDisabled", "worker"]);

        let bare = json!({"metadata": {"name": "n2"}});
        assert_eq!(
            cells(&NODE, &bare)[1..],
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
}
