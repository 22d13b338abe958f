//! The files a pod's containers see that the kubelet writes: `/etc/hosts`,
//! `/etc/resolv.conf`, `/etc/hostname` and the volumes (emptyDir, hostPath, configMap,
//! secret, downwardAPI, projected). Rendering is pure; writing happens under the pod's directory.

use std::collections::BTreeMap;
use std::io;
use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use base64::Engine;
use serde_json::Value;

/// Mode of projected files when the volume sets none (upstream's 0644).
const DEFAULT_FILE_MODE: u32 = 0o644;

#[derive(Debug, thiserror::Error)]
pub enum FilesError {
    #[error("{what} {path}")]
    Io {
        what: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("{kind} {namespace}/{name} referenced by volume {volume:?} not found")]
    MissingSource {
        kind: &'static str,
        namespace: String,
        name: String,
        volume: String,
    },
    #[error("volume {volume:?}: {reason}")]
    Invalid { volume: String, reason: String },
}

pub type Result<T, E = FilesError> = std::result::Result<T, E>;

fn io_err<'a>(what: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> FilesError + 'a {
    move |source| FilesError::Io {
        what,
        path: path.to_path_buf(),
        source,
    }
}

/// DNS settings for pods (`--cluster-dns`, `--cluster-domain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DnsConfig {
    pub servers: Vec<Ipv4Addr>,
    pub domain: String,
    /// The node's resolv.conf, copied for `dnsPolicy: Default`.
    pub host_resolv_conf: PathBuf,
}

/// `/etc/hosts` of a pod: localhost entries, the pod's own name, and `hostAliases`.
pub fn render_hosts(pod: &Value, pod_ip: Option<IpAddr>, domain: &str) -> String {
    let mut out = String::from(
        "# Kubernetes-managed hosts file.\n\
         127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         fe00::0\tip6-mcastprefix\n\
         fe00::1\tip6-allnodes\n\
         fe00::2\tip6-allrouters\n",
    );
    let spec = &pod["spec"];
    let hostname = pod_hostname(pod);
    if let Some(ip) = pod_ip {
        let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
        match spec["subdomain"].as_str().filter(|s| !s.is_empty()) {
            Some(sub) => out.push_str(&format!(
                "{ip}\t{hostname}.{sub}.{ns}.svc.{domain}\t{hostname}\n"
            )),
            None => out.push_str(&format!("{ip}\t{hostname}\n")),
        }
    }
    out.push_str(&host_alias_entries(pod));
    out
}

/// The hosts file of a pod on the host's network (upstream's `nodeHostsFileContent`):
/// the node's own, then the pod's host aliases.
pub fn render_host_network_hosts(pod: &Value, node_hosts: &str) -> String {
    let mut out = String::from("# Kubernetes-managed hosts file (host network).\n");
    out.push_str(node_hosts);
    out.push_str(&host_alias_entries(pod));
    out
}

/// The entries of the pod's `hostAliases`.
fn host_alias_entries(pod: &Value) -> String {
    let mut out = String::new();
    for alias in pod["spec"]["hostAliases"].as_array().into_iter().flatten() {
        let names: Vec<&str> = alias["hostnames"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        if let (Some(ip), false) = (alias["ip"].as_str(), names.is_empty()) {
            out.push_str(&format!(
                "\n# Entries added by HostAliases.\n{ip}\t{}\n",
                names.join("\t")
            ));
        }
    }
    out
}

/// The pod's hostname: `spec.hostname`, else its name (at most 63 bytes, as upstream).
pub fn pod_hostname(pod: &Value) -> String {
    let name = pod["spec"]["hostname"]
        .as_str()
        .filter(|h| !h.is_empty())
        .or_else(|| pod["metadata"]["name"].as_str())
        .unwrap_or("pod");
    let mut h: String = name.chars().take(63).collect();
    while h.ends_with(['-', '.']) {
        h.pop();
    }
    h
}

/// Most nameservers a resolv.conf may list (glibc reads no more).
const MAX_NAMESERVERS: usize = 3;
/// Most search domains a pod gets (upstream's `MaxDNSSearchPaths`).
const MAX_SEARCH_DOMAINS: usize = 32;

/// `/etc/resolv.conf` of a pod following its `dnsPolicy` and `dnsConfig`, as the
/// kubelet writes it: `ClusterFirst` (the default) names the cluster DNS with the
/// namespace's search path and `ndots:5`, except for host-network pods, which get the
/// node's like `Default`; `ClusterFirstWithHostNet` names the cluster DNS for every pod;
/// `None` takes only `dnsConfig`, which the other policies merge in. `host` is the
/// node's resolv.conf (also used when no cluster DNS server is configured).
pub fn render_resolv_conf(pod: &Value, dns: &DnsConfig, host: &str) -> String {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let policy = pod["spec"]["dnsPolicy"].as_str().unwrap_or("ClusterFirst");
    let host_network = pod["spec"]["hostNetwork"].as_bool().unwrap_or(false);
    // A resolver on the node's loopback is reachable only from the node's namespace.
    let node = || parse_resolv(host, host_network);
    let (mut servers, mut search, mut options): (Vec<String>, Vec<String>, Vec<String>) =
        match policy {
            "None" => (vec![], vec![], vec![]),
            "ClusterFirst" if host_network => node(),
            "Default" => node(),
            _ if dns.servers.is_empty() => node(),
            _ => {
                let d = &dns.domain;
                let mut search = vec![format!("{ns}.svc.{d}"), format!("svc.{d}"), d.clone()];
                search.extend(node().1);
                (
                    dns.servers.iter().map(|s| s.to_string()).collect(),
                    search,
                    vec!["ndots:5".to_string()],
                )
            }
        };
    let extra = &pod["spec"]["dnsConfig"];
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(str::to_string))
            .collect()
    };
    servers.extend(strings(&extra["nameservers"]));
    search.extend(strings(&extra["searches"]));
    for o in extra["options"].as_array().into_iter().flatten() {
        let Some(name) = o["name"].as_str() else {
            continue;
        };
        let opt = match o["value"].as_str() {
            Some(v) => format!("{name}:{v}"),
            None => name.to_string(),
        };
        let key = |s: &str| s.split(':').next().unwrap_or("").to_string();
        options.retain(|existing| key(existing) != name);
        options.push(opt);
    }
    let mut seen = std::collections::BTreeSet::new();
    search.retain(|domain| seen.insert(domain.clone()));
    search.truncate(MAX_SEARCH_DOMAINS);
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers.iter().take(MAX_NAMESERVERS) {
        out.push_str(&format!("nameserver {s}\n"));
    }
    if !options.is_empty() {
        out.push_str(&format!("options {}\n", options.join(" ")));
    }
    out
}

/// `(nameservers, search domains, options)` of a resolv.conf. Loopback servers are
/// dropped unless `keep_loopback`: they mean a resolver on the node, which a pod in its
/// own network namespace cannot reach.
fn parse_resolv(contents: &str, keep_loopback: bool) -> (Vec<String>, Vec<String>, Vec<String>) {
    let (mut servers, mut search, mut options) = (vec![], vec![], vec![]);
    for line in contents.lines() {
        let mut words = line.split_whitespace();
        match words.next() {
            Some("nameserver") => {
                if let Some(s) = words.next() {
                    let loopback = s.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
                    if keep_loopback || !loopback {
                        servers.push(s.to_string());
                    }
                }
            }
            Some("search" | "domain") => search = words.map(str::to_string).collect(),
            Some("options") => options.extend(words.map(str::to_string)),
            _ => {}
        }
    }
    (servers, search, options)
}

/// A volume prepared on the host: what the container mounts for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreparedVolume {
    pub host_path: PathBuf,
    /// configMap and secret volumes are always read-only.
    pub read_only: bool,
}

/// Where volume `name` of kind `kind` lives under the pod directory.
pub fn volume_dir(pod_dir: &Path, kind: &str, name: &str) -> PathBuf {
    pod_dir.join("volumes").join(kind).join(name)
}

/// The files a configMap or secret volume shows: `(relative path, content, mode)`.
/// `data` maps keys to contents; `items` (if set) selects and renames keys.
pub fn projected_files(
    volume: &str,
    source: &Value,
    data: &BTreeMap<String, Vec<u8>>,
) -> Result<Vec<(String, Vec<u8>, u32)>> {
    let default_mode = source["defaultMode"]
        .as_u64()
        .map_or(DEFAULT_FILE_MODE, |m| m as u32 & 0o777);
    let mut files = Vec::new();
    match source["items"].as_array().filter(|i| !i.is_empty()) {
        None => {
            for (k, v) in data {
                files.push((k.clone(), v.clone(), default_mode));
            }
        }
        Some(items) => {
            for item in items {
                let key = item["key"].as_str().unwrap_or("");
                let path = item["path"].as_str().unwrap_or(key);
                check_item_path(volume, path)?;
                let Some(content) = data.get(key) else {
                    if source["optional"].as_bool() == Some(true) {
                        continue;
                    }
                    return Err(FilesError::Invalid {
                        volume: volume.to_string(),
                        reason: format!("key {key:?} not found"),
                    });
                };
                let mode = item["mode"]
                    .as_u64()
                    .map_or(default_mode, |m| m as u32 & 0o777);
                files.push((path.to_string(), content.clone(), mode));
            }
        }
    }
    Ok(files)
}

/// The files of a downwardAPI volume or projection (`source` holds its `items`):
/// `(relative path, content, mode)`. Only what upstream allows in volumes: the pod's
/// name, namespace, uid, labels and annotations (all, as sorted `key="value"` lines, or
/// one), and `resourceFieldRef` of a named container.
pub fn downward_api_files(
    volume: &str,
    pod: &Value,
    source: &Value,
    default_mode: u32,
) -> Result<Vec<(String, Vec<u8>, u32)>> {
    let invalid = |reason: String| FilesError::Invalid {
        volume: volume.to_string(),
        reason,
    };
    let meta = &pod["metadata"];
    let mut files = Vec::new();
    for item in source["items"].as_array().into_iter().flatten() {
        let path = item["path"].as_str().unwrap_or("");
        check_item_path(volume, path)?;
        let content = if let Some(field) = item["fieldRef"]["fieldPath"].as_str() {
            downward_field(meta, field)
                .ok_or_else(|| invalid(format!("unsupported fieldRef {field:?}")))?
        } else if item["resourceFieldRef"].is_object() {
            let r = &item["resourceFieldRef"];
            let resource = r["resource"].as_str().unwrap_or("");
            let wanted = r["containerName"].as_str().unwrap_or("");
            let container = ["containers", "initContainers"]
                .iter()
                .flat_map(|k| pod["spec"][*k].as_array().into_iter().flatten())
                .find(|c| c["name"].as_str() == Some(wanted))
                .ok_or_else(|| invalid(format!("container {wanted:?} not found")))?;
            super::container::resource_field(container, resource, &r["divisor"])
                .ok_or_else(|| invalid(format!("unsupported resourceFieldRef {resource:?}")))?
        } else {
            return Err(invalid(format!(
                "item {path:?} has neither fieldRef nor resourceFieldRef"
            )));
        };
        let mode = item["mode"]
            .as_u64()
            .map_or(default_mode, |m| m as u32 & 0o777);
        files.push((path.to_string(), content.into_bytes(), mode));
    }
    Ok(files)
}

/// A downward API volume's `fieldRef` (upstream `ExtractFieldPathAsString` for volumes).
fn downward_field(meta: &Value, path: &str) -> Option<String> {
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    match path {
        "metadata.name" | "metadata.namespace" | "metadata.uid" => {
            return Some(text(&meta[&path["metadata.".len()..]]))
        }
        "metadata.labels" | "metadata.annotations" => {
            let map = meta[&path["metadata.".len()..]]
                .as_object()
                .cloned()
                .unwrap_or_default();
            // Sorted `key="value"` lines, values quoted as Go's %q.
            let lines: BTreeMap<_, _> = map.iter().map(|(k, v)| (k.clone(), text(v))).collect();
            let lines: Vec<String> = lines
                .iter()
                .map(|(k, v)| format!("{k}={}", crate::api::validation::go_quote(v)))
                .collect();
            return Some(lines.join("\n"));
        }
        _ => {}
    }
    for field in ["labels", "annotations"] {
        let Some(rest) = path.strip_prefix(&format!("metadata.{field}[")) else {
            continue;
        };
        let key = rest
            .strip_prefix('\'')
            .and_then(|r| r.strip_suffix("']"))
            .or_else(|| rest.strip_prefix('"').and_then(|r| r.strip_suffix("\"]")))?;
        return Some(text(&meta[field][key]));
    }
    None
}

/// A volume item's path: relative, without `..`.
fn check_item_path(volume: &str, path: &str) -> Result<()> {
    if path.is_empty() || path.starts_with('/') || path.split('/').any(|c| c == "..") {
        return Err(FilesError::Invalid {
            volume: volume.to_string(),
            reason: format!("item path {path:?} must be relative without '..'"),
        });
    }
    Ok(())
}

/// The data of a ConfigMap (`data` and `binaryData`) or Secret (`data`, base64).
pub fn object_data(kind: &str, object: &Value) -> BTreeMap<String, Vec<u8>> {
    let mut out = BTreeMap::new();
    let b64 = base64::engine::general_purpose::STANDARD;
    let obj = |v: &Value| v.as_object().cloned().unwrap_or_default();
    if kind == "Secret" {
        for (k, v) in obj(&object["data"]) {
            if let Some(bytes) = v.as_str().and_then(|s| b64.decode(s).ok()) {
                out.insert(k, bytes);
            }
        }
        for (k, v) in obj(&object["stringData"]) {
            if let Some(s) = v.as_str() {
                out.insert(k, s.as_bytes().to_vec());
            }
        }
    } else {
        for (k, v) in obj(&object["data"]) {
            if let Some(s) = v.as_str() {
                out.insert(k, s.as_bytes().to_vec());
            }
        }
        for (k, v) in obj(&object["binaryData"]) {
            if let Some(bytes) = v.as_str().and_then(|s| b64.decode(s).ok()) {
                out.insert(k, bytes);
            }
        }
    }
    out
}

/// Writes `contents` to `path` (creating the parent) unless it already holds exactly that.
/// The new file replaces the old one by a rename, so a reader (a container reading its
/// token) sees the old contents or the new, never a part.
pub fn write_if_changed(path: &Path, contents: &[u8]) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == contents) {
        return Ok(());
    }
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(io_err("create directory", parent))?;
    }
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
    let temp = path.with_file_name(format!(".{}.tmp", name.unwrap_or_default()));
    std::fs::write(&temp, contents).map_err(io_err("write file", &temp))?;
    if let Ok(meta) = std::fs::metadata(path) {
        let _ = std::fs::set_permissions(&temp, meta.permissions());
    }
    std::fs::rename(&temp, path).map_err(io_err("replace file", path))
}

/// Makes a hostPath volume's path according to its `type` (only the `…OrCreate` types
/// create anything; the others are checked).
pub fn prepare_host_path(volume: &str, source: &Value) -> Result<PreparedVolume> {
    let path = PathBuf::from(source["path"].as_str().unwrap_or(""));
    if !path.is_absolute() {
        return Err(FilesError::Invalid {
            volume: volume.into(),
            reason: format!("hostPath {} is not absolute", path.display()),
        });
    }
    let invalid = |reason: String| FilesError::Invalid {
        volume: volume.into(),
        reason,
    };
    match source["type"].as_str().unwrap_or("") {
        "DirectoryOrCreate" => {
            std::fs::create_dir_all(&path).map_err(io_err("create hostPath directory", &path))?
        }
        "FileOrCreate" if !path.exists() => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(io_err("create hostPath directory", parent))?;
            }
            std::fs::write(&path, b"").map_err(io_err("create hostPath file", &path))?;
        }
        "Directory" if !path.is_dir() => {
            return Err(invalid(format!(
                "hostPath {} is not a directory",
                path.display()
            )))
        }
        "File" if !path.is_file() => {
            return Err(invalid(format!(
                "hostPath {} is not a file",
                path.display()
            )))
        }
        "Socket" | "CharDevice" | "BlockDevice" if !path.exists() => {
            return Err(invalid(format!(
                "hostPath {} does not exist",
                path.display()
            )))
        }
        _ => {}
    }
    Ok(PreparedVolume {
        host_path: path,
        read_only: false,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "web-1", "namespace": "shop"},
            "spec": {"containers": [{"name": "c", "image": "busybox"}]},
        })
    }

    fn dns() -> DnsConfig {
        DnsConfig {
            servers: vec!["10.43.0.10".parse().unwrap()],
            domain: "cluster.local".into(),
            host_resolv_conf: "/etc/resolv.conf".into(),
        }
    }

    #[test]
    fn cluster_first_points_at_cluster_dns_with_namespace_search() {
        let host = "nameserver 192.168.1.1\nsearch lan\n";
        let conf = render_resolv_conf(&pod(), &dns(), host);
        assert_eq!(
            conf,
            "search shop.svc.cluster.local svc.cluster.local cluster.local lan\n\
             nameserver 10.43.0.10\noptions ndots:5\n"
        );
    }

    #[test]
    fn default_policy_copies_the_host_without_loopback_servers() {
        let mut p = pod();
        p["spec"]["dnsPolicy"] = json!("Default");
        let host = "nameserver 127.0.0.53\nnameserver 1.1.1.1\nsearch lan\noptions edns0\n";
        let conf = render_resolv_conf(&p, &dns(), host);
        assert_eq!(conf, "search lan\nnameserver 1.1.1.1\noptions edns0\n");
    }

    #[test]
    fn host_network_pods_get_the_node_resolvers_unless_cluster_first_with_host_net() {
        let host = "nameserver 127.0.0.53\nsearch lan\n";
        let mut p = pod();
        p["spec"]["hostNetwork"] = json!(true);
        let conf = render_resolv_conf(&p, &dns(), host);
        assert_eq!(
            conf, "search lan\nnameserver 127.0.0.53\n",
            "the node's loopback resolver is reachable from its namespace"
        );
        p["spec"]["dnsPolicy"] = json!("ClusterFirstWithHostNet");
        let conf = render_resolv_conf(&p, &dns(), host);
        assert_eq!(
            conf,
            "search shop.svc.cluster.local svc.cluster.local cluster.local lan\n\
             nameserver 10.43.0.10\noptions ndots:5\n"
        );
        let mut not_host = pod();
        not_host["spec"]["dnsPolicy"] = json!("ClusterFirstWithHostNet");
        assert!(render_resolv_conf(&not_host, &dns(), host).contains("nameserver 10.43.0.10\n"));
    }

    #[test]
    fn none_policy_takes_only_dns_config() {
        let mut p = pod();
        p["spec"]["dnsPolicy"] = json!("None");
        p["spec"]["dnsConfig"] = json!({
            "nameservers": ["192.0.2.53"],
            "searches": ["a.example", "b.example", "a.example"],
            "options": [{"name": "ndots", "value": "1"}]
        });
        let conf = render_resolv_conf(&p, &dns(), "nameserver 192.168.1.1\nsearch lan\n");
        assert_eq!(
            conf,
            "search a.example b.example\nnameserver 192.0.2.53\noptions ndots:1\n"
        );
    }

    #[test]
    fn search_domains_are_unique_and_bounded() {
        let mut p = pod();
        let searches: Vec<String> = (0..40).map(|i| format!("d{i}.example")).collect();
        p["spec"]["dnsConfig"] = json!({"searches": ["svc.cluster.local"], "options": []});
        let conf = render_resolv_conf(&p, &dns(), "search svc.cluster.local lan\n");
        assert!(
            conf.starts_with("search shop.svc.cluster.local svc.cluster.local cluster.local lan\n"),
            "{conf}"
        );
        p["spec"]["dnsConfig"] = json!({"searches": searches});
        let conf = render_resolv_conf(&p, &dns(), "");
        let line = conf.lines().next().unwrap();
        assert_eq!(
            line.split_whitespace().count() - 1,
            MAX_SEARCH_DOMAINS,
            "{line}"
        );
    }

    #[test]
    fn dns_config_adds_servers_and_overrides_options() {
        let mut p = pod();
        p["spec"]["dnsConfig"] = json!({
            "nameservers": ["9.9.9.9"],
            "options": [{"name": "ndots", "value": "2"}, {"name": "edns0"}]
        });
        let conf = render_resolv_conf(&p, &dns(), "");
        assert!(
            conf.contains("nameserver 10.43.0.10\nnameserver 9.9.9.9\n"),
            "{conf}"
        );
        assert!(conf.ends_with("options ndots:2 edns0\n"), "{conf}");
    }

    #[test]
    fn host_network_hosts_file_is_the_nodes_with_the_pods_aliases() {
        let mut p = pod();
        p["spec"]["hostNetwork"] = json!(true);
        p["spec"]["hostAliases"] = json!([{"ip": "10.0.0.9", "hostnames": ["db"]}]);
        let hosts = render_host_network_hosts(&p, "127.0.0.1\tlocalhost\n192.168.1.5\tpi\n");
        assert_eq!(
            hosts,
            "# Kubernetes-managed hosts file (host network).\n127.0.0.1\tlocalhost\n\
             192.168.1.5\tpi\n\n# Entries added by HostAliases.\n10.0.0.9\tdb\n"
        );
    }

    #[test]
    fn hosts_file_names_the_pod_and_its_aliases() {
        let mut p = pod();
        p["spec"]["hostAliases"] = json!([{"ip": "10.0.0.9", "hostnames": ["db", "db.lan"]}]);
        let hosts = render_hosts(&p, Some("10.42.0.5".parse().unwrap()), "cluster.local");
        assert!(hosts.contains("127.0.0.1\tlocalhost\n"));
        assert!(hosts.contains("10.42.0.5\tweb-1\n"));
        assert!(hosts.contains("10.0.0.9\tdb\tdb.lan\n"));
    }

    #[test]
    fn projected_items_select_rename_and_set_modes() {
        let data = BTreeMap::from([
            ("a".to_string(), b"1".to_vec()),
            ("b".to_string(), b"2".to_vec()),
        ]);
        let all = projected_files("v", &json!({"defaultMode": 0o400}), &data).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0], ("a".to_string(), b"1".to_vec(), 0o400));
        let some = projected_files(
            "v",
            &json!({"items": [{"key": "b", "path": "dir/b.txt", "mode": 0o600}]}),
            &data,
        )
        .unwrap();
        assert_eq!(some, vec![("dir/b.txt".to_string(), b"2".to_vec(), 0o600)]);
        let bad = projected_files(
            "v",
            &json!({"items": [{"key": "a", "path": "../x"}]}),
            &data,
        );
        assert!(bad.is_err());
        let missing = projected_files("v", &json!({"items": [{"key": "zz", "path": "x"}]}), &data);
        assert!(missing.unwrap_err().to_string().contains("zz"));
    }

    #[test]
    fn secret_data_is_base64_and_configmap_data_is_text() {
        let secret = json!({"data": {"pw": "aHVudGVyMg=="}});
        assert_eq!(object_data("Secret", &secret)["pw"], b"hunter2");
        let cm = json!({"data": {"k": "v"}, "binaryData": {"b": "AAE="}});
        let d = object_data("ConfigMap", &cm);
        assert_eq!(d["k"], b"v");
        assert_eq!(d["b"], vec![0u8, 1]);
    }

    #[test]
    fn hostname_is_the_pod_name_cut_to_63() {
        let mut p = pod();
        assert_eq!(pod_hostname(&p), "web-1");
        p["metadata"]["name"] = json!("x".repeat(70));
        assert_eq!(pod_hostname(&p).len(), 63);
        p["spec"]["hostname"] = json!("h");
        assert_eq!(pod_hostname(&p), "h");
    }
}
