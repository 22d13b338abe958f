//! Discovery documents: /version, /api, /apis, per group-version resource lists and
//! aggregated discovery (apidiscovery.k8s.io/v2), generated from the served resources.

use serde_json::{json, Value};

use crate::api::resources::{self, ResourceDef};
use crate::api::KUBERNETES_VERSION;

/// Media type of aggregated discovery responses.
pub const AGGREGATED_CONTENT_TYPE: &str =
    "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList";

/// Whether the client asked for aggregated discovery (it lists it in Accept).
pub fn wants_aggregated(accept: &str) -> bool {
    accept.split(',').any(|part| {
        let p: Vec<&str> = part.split(';').map(str::trim).collect();
        p.contains(&"g=apidiscovery.k8s.io")
            && p.contains(&"v=v2")
            && p.contains(&"as=APIGroupDiscoveryList")
    })
}

pub fn version() -> Value {
    let v = KUBERNETES_VERSION.trim_start_matches('v');
    let mut parts = v.split('.');
    let major = parts.next().unwrap_or("1");
    let minor = parts.next().unwrap_or("0");
    json!({
        "major": major,
        "minor": minor,
        "gitVersion": format!("{KUBERNETES_VERSION}+orc"),
        "gitCommit": env!("CARGO_PKG_VERSION"),
        "gitTreeState": "clean",
        "buildDate": "1970-01-01T00:00:00Z",
        "goVersion": "rust",
        "compiler": "rustc",
        "platform": format!("linux/{}", go_arch()),
    })
}

fn go_arch() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "arm" => "arm",
        other => other,
    }
}

pub fn core_versions(advertise: &str) -> Value {
    json!({
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": advertise}],
    })
}

fn group_entry(group: &str) -> Value {
    let version = resources::RESOURCES
        .iter()
        .find(|r| r.group == group)
        .map(|r| r.version)
        .unwrap_or("v1");
    let gv = json!({"groupVersion": format!("{group}/{version}"), "version": version});
    json!({"name": group, "versions": [gv.clone()], "preferredVersion": gv})
}

pub fn groups() -> Value {
    let groups: Vec<Value> = resources::groups().into_iter().map(group_entry).collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(name: &str) -> Option<Value> {
    resources::groups().contains(&name).then(|| {
        let mut g = group_entry(name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// The kind and verbs a subresource answers with.
fn subresource_info(def: &ResourceDef, sub: &str) -> (Value, Vec<&'static str>) {
    let own = json!({"group": def.group, "version": def.version, "kind": def.kind});
    match sub {
        "status" => (own, vec!["get", "patch", "update"]),
        "scale" => (
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            vec!["get", "patch", "update"],
        ),
        "binding" => (
            json!({"group": "", "version": "v1", "kind": "Binding"}),
            vec!["create"],
        ),
        "log" => (own, vec!["get"]),
        "exec" => (
            json!({"group": "", "version": "v1", "kind": "PodExecOptions"}),
            vec!["create", "get"],
        ),
        "attach" => (
            json!({"group": "", "version": "v1", "kind": "PodAttachOptions"}),
            vec!["create", "get"],
        ),
        "portforward" => (
            json!({"group": "", "version": "v1", "kind": "PodPortForwardOptions"}),
            vec!["create", "get"],
        ),
        "finalize" => (own, vec!["update"]),
        _ => (own, vec!["get"]),
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(group: &str, version: &str) -> Value {
    let mut out = Vec::new();
    for def in resources::RESOURCES
        .iter()
        .filter(|r| r.group == group && r.version == version)
    {
        let mut entry = json!({
            "name": def.plural,
            "singularName": def.singular,
            "namespaced": def.namespaced,
            "kind": def.kind,
            "verbs": def.verbs(),
        });
        if !def.short_names.is_empty() {
            entry["shortNames"] = json!(def.short_names);
        }
        if !def.categories.is_empty() {
            entry["categories"] = json!(def.categories);
        }
        out.push(entry);
        for sub in def.subresources {
            let (kind, verbs) = subresource_info(def, sub);
            let mut e = json!({
                "name": format!("{}/{sub}", def.plural),
                "singularName": "",
                "namespaced": def.namespaced,
                "kind": kind["kind"],
                "verbs": verbs,
            });
            if kind["group"] != def.group {
                e["group"] = kind["group"].clone();
                e["version"] = kind["version"].clone();
            }
            out.push(e);
        }
    }
    let gv = if group.is_empty() {
        version.to_string()
    } else {
        format!("{group}/{version}")
    };
    json!({"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": out})
}

fn discovery_group(group: &str) -> Value {
    let mut versions: Vec<&str> = Vec::new();
    for r in resources::RESOURCES.iter().filter(|r| r.group == group) {
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    let versions: Vec<Value> = versions
        .into_iter()
        .map(|version| {
            let resources: Vec<Value> = resources::RESOURCES
                .iter()
                .filter(|r| r.group == group && r.version == version)
                .map(|def| {
                    let subresources: Vec<Value> = def
                        .subresources
                        .iter()
                        .map(|sub| {
                            let (kind, verbs) = subresource_info(def, sub);
                            json!({"subresource": sub, "responseKind": kind, "verbs": verbs})
                        })
                        .collect();
                    let mut e = json!({
                        "resource": def.plural,
                        "responseKind": {"group": def.group, "version": def.version, "kind": def.kind},
                        "scope": if def.namespaced { "Namespaced" } else { "Cluster" },
                        "singularResource": def.singular,
                        "verbs": def.verbs(),
                    });
                    if !def.short_names.is_empty() {
                        e["shortNames"] = json!(def.short_names);
                    }
                    if !def.categories.is_empty() {
                        e["categories"] = json!(def.categories);
                    }
                    if !subresources.is_empty() {
                        e["subresources"] = json!(subresources);
                    }
                    e
                })
                .collect();
            json!({"version": version, "resources": resources, "freshness": "Current"})
        })
        .collect();
    json!({"metadata": {"name": group, "creationTimestamp": null}, "versions": versions})
}

/// Aggregated discovery for `/api` (core group only) or `/apis` (named groups).
pub fn aggregated(core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group("")]
    } else {
        resources::groups()
            .into_iter()
            .map(discovery_group)
            .collect()
    };
    json!({
        "kind": "APIGroupDiscoveryList",
        "apiVersion": "apidiscovery.k8s.io/v2",
        "metadata": {},
        "items": items,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn core_resource_list_has_short_names_and_subresources() {
        let list = resource_list("", "v1");
        let res = list["resources"].as_array().unwrap();
        let pods = res.iter().find(|r| r["name"] == "pods").unwrap();
        assert_eq!(pods["shortNames"], json!(["po"]));
        assert_eq!(pods["categories"], json!(["all"]));
        let scale = res
            .iter()
            .find(|r| r["name"] == "replicationcontrollers/scale")
            .unwrap();
        assert_eq!(scale["group"], "autoscaling");
        assert_eq!(scale["kind"], "Scale");
    }

    #[test]
    fn aggregated_discovery_is_detected_and_lists_groups() {
        assert!(wants_aggregated(
            "application/json;g=apidiscovery.k8s.io;v=v2;as=APIGroupDiscoveryList,application/json"
        ));
        assert!(!wants_aggregated("application/json"));
        let apis = aggregated(false);
        let names: Vec<&str> = apis["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|g| g["metadata"]["name"].as_str().unwrap())
            .collect();
        assert!(names.contains(&"apps"));
        assert!(names.contains(&"coordination.k8s.io"));
        assert_eq!(aggregated(true)["items"][0]["metadata"]["name"], "");
    }
}
