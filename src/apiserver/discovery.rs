//! Discovery documents: /version, /api, /apis, per group-version resource lists and
//! aggregated discovery (apidiscovery.k8s.io/v2), generated from the served resources.

use serde_json::{json, Value};

use crate::api::resources::{ResourceDef, Resources};
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

/// The versions of `group` served, highest priority first (upstream's kube-aware
/// version order: GA before beta before alpha, higher numbers first).
fn group_versions(served: &Resources, group: &str) -> Vec<&'static str> {
    let mut versions: Vec<&'static str> = Vec::new();
    for r in served.iter().filter(|r| r.group == group) {
        if !versions.contains(&r.version) {
            versions.push(r.version);
        }
    }
    versions.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
    versions
}

/// Upstream's `version.CompareKubeAwareVersionStrings` as a sort key: `v2` > `v1` >
/// `v1beta2` > `v1beta1` > `v1alpha1` > anything else (alphabetically last).
fn version_priority(v: &str) -> (u8, u64, u64, std::cmp::Reverse<String>) {
    fn parse(s: &str) -> Option<(u64, &str)> {
        let digits = s.strip_prefix('v')?;
        let end = digits
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(digits.len());
        Some((digits[..end].parse().ok()?, &digits[end..]))
    }
    match parse(v) {
        Some((major, "")) => (3, major, 0, std::cmp::Reverse(String::new())),
        Some((major, rest)) => {
            let (level, minor) = if let Some(m) = rest.strip_prefix("beta") {
                (2, m.parse().ok())
            } else if let Some(m) = rest.strip_prefix("alpha") {
                (1, m.parse().ok())
            } else {
                (0, None)
            };
            match minor {
                Some(minor) if level > 0 => (level, major, minor, std::cmp::Reverse(String::new())),
                _ => (0, 0, 0, std::cmp::Reverse(v.to_string())),
            }
        }
        None => (0, 0, 0, std::cmp::Reverse(v.to_string())),
    }
}

fn group_entry(served: &Resources, group: &str) -> Value {
    let versions: Vec<Value> = group_versions(served, group)
        .into_iter()
        .map(|version| json!({"groupVersion": format!("{group}/{version}"), "version": version}))
        .collect();
    let preferred = versions.first().cloned().unwrap_or_else(|| json!({}));
    json!({"name": group, "versions": versions, "preferredVersion": preferred})
}

pub fn groups(served: &Resources) -> Value {
    let groups: Vec<Value> = served
        .groups()
        .into_iter()
        .map(|g| group_entry(served, g))
        .collect();
    json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
}

pub fn group(served: &Resources, name: &str) -> Option<Value> {
    served.groups().contains(&name).then(|| {
        let mut g = group_entry(served, name);
        g["kind"] = json!("APIGroup");
        g["apiVersion"] = json!("v1");
        g
    })
}

/// The kind and verbs a subresource answers with.
fn subresource_info(def: &ResourceDef, sub: &str) -> (Value, Vec<&'static str>) {
    let own = json!({"group": def.group, "version": def.version, "kind": def.kind});
    match sub {
        "status" | "ephemeralcontainers" => (own, vec!["get", "patch", "update"]),
        "scale" => (
            json!({"group": "autoscaling", "version": "v1", "kind": "Scale"}),
            vec!["get", "patch", "update"],
        ),
        "binding" => (
            json!({"group": "", "version": "v1", "kind": "Binding"}),
            vec!["create"],
        ),
        "eviction" => (
            json!({"group": "policy", "version": "v1", "kind": "Eviction"}),
            vec!["create"],
        ),
        "token" => (
            json!({"group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest"}),
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
        "proxy" => (
            json!({"group": "", "version": "v1", "kind": format!("{}ProxyOptions", def.kind)}),
            vec!["create", "delete", "get", "patch", "update"],
        ),
        _ => (own, vec!["get"]),
    }
}

/// `/api/v1` or `/apis/<group>/<version>`.
pub fn resource_list(served: &Resources, group: &str, version: &str) -> Value {
    let mut out = Vec::new();
    for def in served
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

fn discovery_group(served: &Resources, group: &str) -> Value {
    let versions: Vec<Value> = group_versions(served, group)
        .into_iter()
        .map(|version| {
            let resources: Vec<Value> = served
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
pub fn aggregated(served: &Resources, core: bool) -> Value {
    let items: Vec<Value> = if core {
        vec![discovery_group(served, "")]
    } else {
        served
            .groups()
            .into_iter()
            .map(|g| discovery_group(served, g))
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
    use crate::api::resources::Catalog;

    fn resource_list(group: &str, version: &str) -> Value {
        super::resource_list(&Catalog::new().snapshot(), group, version)
    }

    fn aggregated(core: bool) -> Value {
        super::aggregated(&Catalog::new().snapshot(), core)
    }

    #[test]
    fn versions_sort_as_upstream_prefers_them() {
        let mut v = vec![
            "v1alpha1", "v1beta1", "v1", "v2beta1", "v1beta2", "v2", "foo",
        ];
        v.sort_by_key(|v| std::cmp::Reverse(version_priority(v)));
        assert_eq!(
            v,
            ["v2", "v1", "v2beta1", "v1beta2", "v1beta1", "v1alpha1", "foo"]
        );
    }

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
