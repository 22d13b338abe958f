//! From a pod's container spec to the runtime's `ContainerConfig`: environment (values,
//! fieldRef, resourceFieldRef, configMap/secret refs, envFrom, `$(VAR)` expansion),
//! volume mounts (subPath, subPathExpr, readOnly), resources, the security context (user,
//! groups, `runAsNonRoot`) and the labels a restarted agent re-adopts containers by.
//! Pure: ConfigMaps and Secrets are fetched by the caller and passed in.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::pod_files::object_data;
use crate::agent::runtime::seccomp::SeccompProfile;
use crate::agent::runtime::users::{ImageUser, UserRequest};
use crate::agent::runtime::{
    BindMount, CapabilityChanges, ContainerConfig, NamespaceMode, PodNamespaces, PullPolicy,
    RegistryAuth, Resources,
};
use crate::api::quantity::Quantity;

/// Labels on every container the kubelet creates.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";
pub const RESTART_COUNT_LABEL: &str = "io.kubernetes.container.restartCount";
/// `init` for init containers, `ephemeral` for ephemeral ones, `app` otherwise.
pub const CONTAINER_KIND_LABEL: &str = "io.orc.container.kind";
/// The image as the pod spec names it (the only container field a pod update may
/// change): a running container whose spec names another one is restarted.
pub const CONTAINER_IMAGE_LABEL: &str = "io.orc.container.image";

/// ConfigMaps and Secrets the pod references, by `(kind, name)`; `None`: not found.
pub type Sources = BTreeMap<(String, String), Option<Value>>;

/// Everything about the pod a container config depends on besides its spec.
#[derive(Debug, Clone)]
pub struct PodContext<'a> {
    pub pod: &'a Value,
    pub pod_dir: &'a Path,
    /// How containers get the pod's network, IPC and UTS namespaces.
    pub namespaces: &'a PodNamespaces,
    pub pod_ip: Option<IpAddr>,
    pub host_ip: IpAddr,
    pub node_name: &'a str,
    /// Host paths of the pod's volumes, by volume name.
    pub volumes: &'a BTreeMap<String, (PathBuf, bool)>,
    /// The pod's /etc/hosts, /etc/resolv.conf and /etc/hostname files.
    pub etc_files: &'a [(PathBuf, &'static str)],
    pub sources: &'a Sources,
    /// Services whose environment variables the containers get (see [`service_env`]).
    pub services: &'a [Value],
}

/// The `(kind, name)` of every ConfigMap and Secret the container's env refers to.
pub fn env_sources(container: &Value) -> Vec<(String, String)> {
    let mut out = Vec::new();
    for e in container["env"].as_array().into_iter().flatten() {
        let from = &e["valueFrom"];
        if let Some(n) = from["configMapKeyRef"]["name"].as_str() {
            out.push(("ConfigMap".to_string(), n.to_string()));
        }
        if let Some(n) = from["secretKeyRef"]["name"].as_str() {
            out.push(("Secret".to_string(), n.to_string()));
        }
    }
    for e in container["envFrom"].as_array().into_iter().flatten() {
        if let Some(n) = e["configMapRef"]["name"].as_str() {
            out.push(("ConfigMap".to_string(), n.to_string()));
        }
        if let Some(n) = e["secretRef"]["name"].as_str() {
            out.push(("Secret".to_string(), n.to_string()));
        }
    }
    out
}

/// Docker-link style variables for Services (`<NAME>_SERVICE_HOST`, `<NAME>_PORT_…`), as
/// the kubelet sets them: every Service of the pod's namespace with a cluster IP when
/// `enableServiceLinks` is on, and always the `kubernetes` Service of `default`.
pub fn service_env(pod: &Value, services: &[Value]) -> Vec<(String, String)> {
    let ns = pod["metadata"]["namespace"].as_str().unwrap_or("default");
    let links = pod["spec"]["enableServiceLinks"].as_bool().unwrap_or(true);
    let mut chosen: BTreeMap<String, &Value> = BTreeMap::new();
    for svc in services {
        let (sns, name) = (
            svc["metadata"]["namespace"].as_str().unwrap_or(""),
            svc["metadata"]["name"].as_str().unwrap_or(""),
        );
        let ip = svc["spec"]["clusterIP"].as_str().unwrap_or("");
        if ip.is_empty() || ip == "None" {
            continue;
        }
        let master = sns == "default" && name == "kubernetes";
        if (sns == ns && links) || master {
            // A Service of the pod's own namespace wins over the master one of that name.
            if sns == ns || !chosen.contains_key(name) {
                chosen.insert(name.to_string(), svc);
            }
        }
    }
    let mut env = Vec::new();
    for (name, svc) in chosen {
        let prefix = env_var_name(&name);
        let ip = svc["spec"]["clusterIP"].as_str().unwrap_or("");
        let ports = svc["spec"]["ports"].as_array().cloned().unwrap_or_default();
        env.push((format!("{prefix}_SERVICE_HOST"), ip.to_string()));
        for (i, p) in ports.iter().enumerate() {
            let port = p["port"].as_u64().unwrap_or(0);
            let proto = p["protocol"].as_str().unwrap_or("TCP").to_lowercase();
            // Go's net.JoinHostPort: IPv6 addresses in brackets.
            let host_port = if ip.contains(':') {
                format!("[{ip}]:{port}")
            } else {
                format!("{ip}:{port}")
            };
            if i == 0 {
                env.push((format!("{prefix}_SERVICE_PORT"), port.to_string()));
                env.push((format!("{prefix}_PORT"), format!("{proto}://{host_port}")));
            }
            if let Some(pname) = p["name"].as_str().filter(|n| !n.is_empty()) {
                let pname = env_var_name(pname);
                env.push((format!("{prefix}_SERVICE_PORT_{pname}"), port.to_string()));
            }
            let base = format!("{prefix}_PORT_{port}_{}", proto.to_uppercase());
            env.push((base.clone(), format!("{proto}://{host_port}")));
            env.push((format!("{base}_PROTO"), proto.clone()));
            env.push((format!("{base}_PORT"), port.to_string()));
            env.push((format!("{base}_ADDR"), ip.to_string()));
        }
    }
    env
}

/// A Service or port name as a variable name (upstream `makeEnvVariableName`).
fn env_var_name(name: &str) -> String {
    name.to_uppercase().replace('-', "_")
}

/// The value a `fieldRef` names.
pub fn field_value(ctx: &PodContext<'_>, path: &str) -> Option<String> {
    let meta = &ctx.pod["metadata"];
    let text = |v: &Value| v.as_str().unwrap_or("").to_string();
    let keyed = |prefix: &str, field: &str| -> Option<String> {
        let key = path
            .strip_prefix(prefix)?
            .strip_suffix("']")
            .or_else(|| path.strip_prefix(prefix)?.strip_suffix("\"]"))?;
        Some(text(&meta[field][key]))
    };
    Some(match path {
        "metadata.name" => text(&meta["name"]),
        "metadata.namespace" => text(&meta["namespace"]),
        "metadata.uid" => text(&meta["uid"]),
        "spec.nodeName" => ctx.node_name.to_string(),
        "spec.serviceAccountName" => text(&ctx.pod["spec"]["serviceAccountName"]),
        "status.hostIP" | "status.hostIPs" => ctx.host_ip.to_string(),
        "status.podIP" | "status.podIPs" => ctx.pod_ip.map(|ip| ip.to_string()).unwrap_or_default(),
        p if p.starts_with("metadata.labels[") => keyed("metadata.labels['", "labels")
            .or_else(|| keyed("metadata.labels[\"", "labels"))?,
        p if p.starts_with("metadata.annotations[") => {
            keyed("metadata.annotations['", "annotations")
                .or_else(|| keyed("metadata.annotations[\"", "annotations"))?
        }
        _ => return None,
    })
}

/// cgroup limits from `resources.requests`/`limits` (memory limit, CPU shares and quota).
pub fn resources_of(container: &Value) -> Resources {
    let res = &container["resources"];
    let get = |kind: &str, name: &str| Quantity::from_json(&res[kind][name]).ok();
    let millis = |q: Option<Quantity>| q.and_then(|q| u64::try_from(q.milli_value()).ok());
    let cpu_limit = millis(get("limits", "cpu"));
    // A request defaults to the limit (as the API server defaults it).
    let cpu_request = millis(get("requests", "cpu")).or(cpu_limit);
    Resources {
        memory_limit_bytes: get("limits", "memory").map(|q| q.value()),
        ..Resources::default()
    }
    .with_cpu_millis(cpu_request, cpu_limit)
}

/// The container's pull policy (defaulted by the API server; defaulted again here).
pub fn pull_policy(container: &Value) -> PullPolicy {
    match container["imagePullPolicy"].as_str() {
        Some("Always") => PullPolicy::Always,
        Some("Never") => PullPolicy::Never,
        Some("IfNotPresent") => PullPolicy::IfNotPresent,
        _ => {
            let image = container["image"].as_str().unwrap_or("");
            let tagless = image
                .rsplit('/')
                .next()
                .is_some_and(|last| !last.contains(':'));
            if image.contains('@') {
                PullPolicy::IfNotPresent
            } else if tagless || image.ends_with(":latest") {
                PullPolicy::Always
            } else {
                PullPolicy::IfNotPresent
            }
        }
    }
}

/// The host a docker config key names: `https://index.docker.io/v1/` → `docker.io`.
fn registry_host(key: &str) -> String {
    let key = key
        .trim_start_matches("https://")
        .trim_start_matches("http://");
    let host = key.split('/').next().unwrap_or("").to_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "registry.hub.docker.com" => {
            "docker.io".to_string()
        }
        _ => host,
    }
}

/// Credentials for `registry` from the pod's image pull Secrets
/// (`kubernetes.io/dockerconfigjson` or `kubernetes.io/dockercfg`), first match wins.
pub fn registry_auth(secrets: &[Value], registry: &str) -> Option<RegistryAuth> {
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let wanted = registry_host(registry);
    for secret in secrets {
        let data = object_data("Secret", secret);
        let auths = if let Some(raw) = data.get(".dockerconfigjson") {
            serde_json::from_slice::<Value>(raw)
                .ok()
                .map(|v| v["auths"].clone())
        } else {
            data.get(".dockercfg")
                .and_then(|raw| serde_json::from_slice::<Value>(raw).ok())
        };
        let Some(auths) = auths.as_ref().and_then(Value::as_object) else {
            continue;
        };
        for (key, entry) in auths {
            if registry_host(key) != wanted {
                continue;
            }
            let (mut user, mut pass) = (
                entry["username"].as_str().unwrap_or("").to_string(),
                entry["password"].as_str().unwrap_or("").to_string(),
            );
            if let Some(decoded) = entry["auth"]
                .as_str()
                .and_then(|a| b64.decode(a).ok())
                .and_then(|d| String::from_utf8(d).ok())
            {
                if let Some((u, p)) = decoded.split_once(':') {
                    (user, pass) = (u.to_string(), p.to_string());
                }
            }
            if !user.is_empty() || !pass.is_empty() {
                return Some(RegistryAuth {
                    username: user,
                    password: pass,
                });
            }
        }
    }
    None
}

/// Expands `$(NAME)` from `vars`; `$$` escapes; unknown references stay as written.
pub fn expand(input: &str, vars: &[(String, String)]) -> String {
    let mut out = String::with_capacity(input.len());
    let mut rest = input;
    while let Some(i) = rest.find('$') {
        out.push_str(&rest[..i]);
        let after = &rest[i + 1..];
        if let Some(tail) = after.strip_prefix('$') {
            out.push('$');
            rest = tail;
        } else if let Some(body) = after.strip_prefix('(') {
            match body.find(')') {
                Some(end) => {
                    let name = &body[..end];
                    match vars.iter().rev().find(|(n, _)| n == name) {
                        Some((_, v)) => out.push_str(v),
                        None => out.push_str(&format!("$({name})")),
                    }
                    rest = &body[end + 1..];
                }
                None => {
                    out.push_str("$(");
                    rest = body;
                }
            }
        } else {
            out.push('$');
            rest = after;
        }
    }
    out.push_str(rest);
    out
}

/// The container's environment. An error reads like upstream's
/// CreateContainerConfigError message.
pub fn resolve_env(
    ctx: &PodContext<'_>,
    container: &Value,
) -> Result<Vec<(String, String)>, String> {
    // Service variables first: the container's own may refer to them and override them.
    let mut env: Vec<(String, String)> = service_env(ctx.pod, ctx.services);
    let source = |kind: &str, name: &str| -> Option<BTreeMap<String, Vec<u8>>> {
        ctx.sources
            .get(&(kind.to_string(), name.to_string()))
            .and_then(|o| o.as_ref())
            .map(|o| object_data(kind, o))
    };
    for from in container["envFrom"].as_array().into_iter().flatten() {
        let prefix = from["prefix"].as_str().unwrap_or("");
        for (field, kind) in [("configMapRef", "ConfigMap"), ("secretRef", "Secret")] {
            let Some(name) = from[field]["name"].as_str() else {
                continue;
            };
            match source(kind, name) {
                Some(data) => {
                    for (k, v) in data {
                        env.push((format!("{prefix}{k}"), String::from_utf8_lossy(&v).into()));
                    }
                }
                None if from[field]["optional"].as_bool() == Some(true) => {}
                None => return Err(format!("{} \"{name}\" not found", kind.to_lowercase())),
            }
        }
    }
    for e in container["env"].as_array().into_iter().flatten() {
        let name = e["name"].as_str().unwrap_or("").to_string();
        let from = &e["valueFrom"];
        let value = if let Some(v) = e["value"].as_str() {
            expand(v, &env)
        } else if from.is_object() {
            if let Some(path) = from["fieldRef"]["fieldPath"].as_str() {
                field_value(ctx, path)
                    .ok_or_else(|| format!("unsupported fieldRef {path:?} in env {name}"))?
            } else if let Some(r) = from["resourceFieldRef"].as_object() {
                let res = r.get("resource").and_then(Value::as_str).unwrap_or("");
                resource_field(
                    container,
                    res,
                    &r.get("divisor").cloned().unwrap_or_default(),
                )
                .ok_or_else(|| format!("unsupported resourceFieldRef {res:?} in env {name}"))?
            } else {
                let (kind, r) = if from["configMapKeyRef"].is_object() {
                    ("ConfigMap", &from["configMapKeyRef"])
                } else {
                    ("Secret", &from["secretKeyRef"])
                };
                let (src, key) = (
                    r["name"].as_str().unwrap_or(""),
                    r["key"].as_str().unwrap_or(""),
                );
                let optional = r["optional"].as_bool() == Some(true);
                match source(kind, src).map(|d| d.get(key).cloned()) {
                    Some(Some(v)) => String::from_utf8_lossy(&v).into_owned(),
                    _ if optional => continue,
                    Some(None) => {
                        return Err(format!(
                            "couldn't find key {key} in {kind} {}/{src}",
                            ctx.pod["metadata"]["namespace"].as_str().unwrap_or("")
                        ))
                    }
                    None => return Err(format!("{} \"{src}\" not found", kind.to_lowercase())),
                }
            }
        } else {
            String::new()
        };
        env.push((name, value));
    }
    Ok(env)
}

pub fn resource_field(container: &Value, resource: &str, divisor: &Value) -> Option<String> {
    let (kind, name) = resource.split_once('.')?;
    let q = Quantity::from_json(&container["resources"][kind][name]).ok();
    // Upstream's divisor defaults to 1 (whole cores, bytes); the value is rounded up
    // (`ConvertResourceCPUToString`, `ConvertResourceMemoryToString`).
    let divisor = match divisor {
        Value::Null => None,
        d => Some(
            Quantity::from_json(d)
                .ok()
                .map(|d| d.milli_value())
                .filter(|d| *d > 0)?,
        ),
    };
    Some(match (name, q) {
        (_, Some(v)) => {
            let per = divisor.unwrap_or(1000);
            (v.milli_value().saturating_add(per - 1))
                .div_euclid(per)
                .to_string()
        }
        // Unset limits read as the node's capacity upstream; 0 says "unlimited" here.
        (_, None) => "0".to_string(),
    })
}

/// The containerd id of a container instance: pod uid, name and restart count.
pub fn container_id(uid: &str, name: &str, restart_count: u32) -> String {
    format!("{uid}-{name}-{restart_count}")
}

/// The CRI log file of a container instance.
pub fn log_path(pod_dir: &Path, name: &str, restart_count: u32) -> PathBuf {
    pod_dir
        .join("logs")
        .join(name)
        .join(format!("{restart_count}.log"))
}

/// Removes the log files (rotated ones included) of the instances of container `name`
/// older than `keep_from`: as upstream's container GC, only the last dead instance's
/// logs stay (for `kubectl logs --previous`). Returns how many files went.
pub fn remove_older_logs(pod_dir: &Path, name: &str, keep_from: u32) -> std::io::Result<usize> {
    let dir = pod_dir.join("logs").join(name);
    let mut removed = 0;
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries.flatten() {
        let file_name = entry.file_name();
        let Some(file_name) = file_name.to_str() else {
            continue;
        };
        // `N.log` or a rotated `N.log.<timestamp>`.
        let restart = file_name
            .split_once(".log")
            .filter(|(_, rest)| rest.is_empty() || rest.starts_with('.'))
            .and_then(|(n, _)| n.parse::<u32>().ok());
        if restart.is_some_and(|n| n < keep_from) {
            match std::fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
    }
    Ok(removed)
}

/// How the pod's containers get their namespaces: the pod's network namespace (the
/// host's with hostNetwork), and IPC/UTS from `ipc_uts` files when the pod has them.
pub fn pod_namespaces(pod: &Value, netns: &Path, ipc_uts: Option<(&Path, &Path)>) -> PodNamespaces {
    let spec = &pod["spec"];
    let host_network = spec["hostNetwork"].as_bool() == Some(true);
    let shared = |p: Option<&Path>| match p {
        Some(p) => NamespaceMode::Path(p.to_path_buf()),
        None => NamespaceMode::New,
    };
    PodNamespaces {
        network: if host_network {
            NamespaceMode::Host
        } else {
            NamespaceMode::Path(netns.to_path_buf())
        },
        ipc: if spec["hostIPC"].as_bool() == Some(true) {
            NamespaceMode::Host
        } else {
            shared(ipc_uts.map(|(ipc, _)| ipc))
        },
        uts: if host_network {
            NamespaceMode::Host
        } else {
            shared(ipc_uts.map(|(_, uts)| uts))
        },
        pid: if spec["hostPID"].as_bool() == Some(true) {
            NamespaceMode::Host
        } else {
            NamespaceMode::New
        },
    }
}

/// A security context's `key` (the container's over the pod's), as a non-negative id.
fn effective_id(security: &Value, pod_security: &Value, key: &str) -> Option<u32> {
    let v = &security[key];
    let v = if v.is_null() { &pod_security[key] } else { v };
    v.as_u64().and_then(|n| u32::try_from(n).ok())
}

/// The user and groups a container asks for (the kubelet's
/// `determineEffectiveSecurityContext`): `runAsUser`/`runAsGroup` with the container's
/// over the pod's, and the pod's `fsGroup` and `supplementalGroups`.
fn user_request(security: &Value, pod_security: &Value) -> UserRequest {
    let id = |v: &Value| v.as_u64().and_then(|n| u32::try_from(n).ok());
    let supplemental = id(&pod_security["fsGroup"])
        .into_iter()
        .chain(
            pod_security["supplementalGroups"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(id),
        )
        .collect();
    UserRequest {
        run_as_user: effective_id(security, pod_security, "runAsUser"),
        run_as_group: effective_id(security, pod_security, "runAsGroup"),
        supplemental_groups: supplemental,
        strict_groups: pod_security["supplementalGroupsPolicy"].as_str() == Some("Strict"),
    }
}

/// The container's `seccompProfile` over the pod's (the kubelet's `getSeccompProfile`;
/// Unconfined when neither sets one, as the kubelet without `--seccomp-default`);
/// `Localhost` profiles are found under `root`.
pub fn seccomp_profile(pod: &Value, container: &Value, root: &Path) -> SeccompProfile {
    let own = &container["securityContext"]["seccompProfile"];
    let profile = if own.is_object() {
        own
    } else {
        &pod["spec"]["securityContext"]["seccompProfile"]
    };
    match profile["type"].as_str() {
        Some("RuntimeDefault") => SeccompProfile::RuntimeDefault,
        Some("Localhost") => {
            SeccompProfile::Localhost(root.join(profile["localhostProfile"].as_str().unwrap_or("")))
        }
        _ => SeccompProfile::Unconfined,
    }
}

/// The kubelet's `verifyRunAsNonRoot`: with `runAsNonRoot: true` (container over pod),
/// the container must not run as uid 0, and an image user that is a name cannot be
/// verified. `image_user` is the image's `User`. An error is a
/// CreateContainerConfigError message, in upstream's words.
pub fn verify_run_as_non_root(
    pod: &Value,
    container: &Value,
    image_user: &str,
) -> Result<(), String> {
    let security = &container["securityContext"];
    let pod_security = &pod["spec"]["securityContext"];
    let non_root = security["runAsNonRoot"]
        .as_bool()
        .or_else(|| pod_security["runAsNonRoot"].as_bool());
    if non_root != Some(true) {
        return Ok(());
    }
    let meta = &pod["metadata"];
    let pod_name = format!(
        "{}_{}({})",
        meta["name"].as_str().unwrap_or(""),
        meta["namespace"].as_str().unwrap_or(""),
        meta["uid"].as_str().unwrap_or("")
    );
    let name = container["name"].as_str().unwrap_or("");
    let run_as_user = security["runAsUser"]
        .as_i64()
        .or_else(|| pod_security["runAsUser"].as_i64());
    if let Some(uid) = run_as_user {
        if uid == 0 {
            return Err(format!(
                "container's runAsUser breaks non-root policy (pod: {pod_name:?}, container: {name})"
            ));
        }
        return Ok(());
    }
    match ImageUser::of(image_user) {
        ImageUser::Uid(0) => Err(format!(
            "container has runAsNonRoot and image will run as root (pod: {pod_name:?}, container: {name})"
        )),
        ImageUser::Name(user) => Err(format!(
            "container has runAsNonRoot and image has non-numeric user ({user}), cannot verify \
             user is non-root (pod: {pod_name:?}, container: {name})"
        )),
        ImageUser::Uid(_) => Ok(()),
    }
}

/// The runtime config for one instance of `container`. An error is a
/// CreateContainerConfigError message.
pub fn container_config(
    ctx: &PodContext<'_>,
    container: &Value,
    restart_count: u32,
    kind: &str,
) -> Result<ContainerConfig, String> {
    let meta = &ctx.pod["metadata"];
    let uid = meta["uid"].as_str().unwrap_or("");
    let name = container["name"].as_str().unwrap_or("");
    let image = container["image"].as_str().unwrap_or("");
    let mut config = ContainerConfig::new(
        container_id(uid, name, restart_count),
        image,
        log_path(ctx.pod_dir, name, restart_count),
    );
    let env = resolve_env(ctx, container)?;
    let strings = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|s| s.as_str().map(|s| expand(s, &env)))
            .collect()
    };
    config.command = strings(&container["command"]);
    config.args = strings(&container["args"]);
    config.env = env;
    config.working_dir = container["workingDir"]
        .as_str()
        .filter(|w| !w.is_empty())
        .map(str::to_string);
    config.hostname = Some(super::pod_files::pod_hostname(ctx.pod));
    config.namespaces = ctx.namespaces.clone();
    if ctx.namespaces.uts == NamespaceMode::Host {
        config.hostname = None;
    }
    config.cgroup_parent = format!("/orc/pod{uid}");
    config.resources = resources_of(container);
    let security = &container["securityContext"];
    let pod_security = &ctx.pod["spec"]["securityContext"];
    config.read_only_root = security["readOnlyRootFilesystem"].as_bool() == Some(true);
    config.privileged = security["privileged"].as_bool() == Some(true);
    let names = |v: &Value| -> Vec<String> {
        v.as_array()
            .into_iter()
            .flatten()
            .filter_map(|c| c.as_str().map(str::to_string))
            .collect()
    };
    config.capabilities = CapabilityChanges {
        add: names(&security["capabilities"]["add"]),
        drop: names(&security["capabilities"]["drop"]),
    };
    // Upstream `AddNoNewPrivileges`: only an explicit `allowPrivilegeEscalation: false`.
    config.no_new_privileges = security["allowPrivilegeEscalation"].as_bool() == Some(false);
    config.stdin = container["stdin"].as_bool() == Some(true);
    config.stdin_once = config.stdin && container["stdinOnce"].as_bool() == Some(true);
    config.tty = container["tty"].as_bool() == Some(true);
    config.user = user_request(security, pod_security);
    for (host, dest) in ctx.etc_files {
        config.mounts.push(BindMount {
            host_path: host.clone(),
            container_path: dest.to_string(),
            read_only: false,
        });
    }
    for m in container["volumeMounts"].as_array().into_iter().flatten() {
        let vname = m["name"].as_str().unwrap_or("");
        let Some((host, volume_ro)) = ctx.volumes.get(vname) else {
            return Err(format!(
                "volume {vname:?} of mount {:?} is not prepared",
                m["mountPath"]
            ));
        };
        let sub = match m["subPathExpr"].as_str().filter(|s| !s.is_empty()) {
            Some(expr) => Some(super::volume::expand_sub_path_expr(expr, &config.env)?),
            None => m["subPath"]
                .as_str()
                .filter(|s| !s.is_empty())
                .map(str::to_string),
        };
        let host_path = match sub.filter(|s| !s.is_empty()) {
            Some(sub) => super::volume::resolve_sub_path(host, &sub)?,
            None => host.clone(),
        };
        config.mounts.push(BindMount {
            host_path,
            container_path: m["mountPath"].as_str().unwrap_or("").to_string(),
            read_only: *volume_ro || m["readOnly"].as_bool() == Some(true),
        });
    }
    let labels = [
        (POD_UID_LABEL, uid),
        (POD_NAME_LABEL, meta["name"].as_str().unwrap_or("")),
        (
            POD_NAMESPACE_LABEL,
            meta["namespace"].as_str().unwrap_or(""),
        ),
        (CONTAINER_NAME_LABEL, name),
        (CONTAINER_KIND_LABEL, kind),
        (CONTAINER_IMAGE_LABEL, image),
    ];
    for (k, v) in labels {
        config.labels.insert(k.to_string(), v.to_string());
    }
    config
        .labels
        .insert(RESTART_COUNT_LABEL.to_string(), restart_count.to_string());
    Ok(config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn pod() -> Value {
        json!({
            "metadata": {"name": "p", "namespace": "ns", "uid": "u1", "labels": {"app": "web"}},
            "spec": {"nodeName": "n1", "containers": []},
        })
    }

    fn with_ctx<T>(pod: &Value, sources: &Sources, f: impl FnOnce(&PodContext<'_>) -> T) -> T {
        let volumes = BTreeMap::from([(
            "data".to_string(),
            (PathBuf::from("/pods/u1/volumes/empty-dir/data"), false),
        )]);
        let etc = [(PathBuf::from("/pods/u1/etc-hosts"), "/etc/hosts")];
        let ctx = PodContext {
            pod,
            pod_dir: Path::new("/pods/u1"),
            namespaces: &PodNamespaces {
                network: NamespaceMode::Path("/netns/u1".into()),
                ..Default::default()
            },
            pod_ip: Some("10.42.0.7".parse().unwrap()),
            host_ip: "192.168.1.2".parse().unwrap(),
            node_name: "n1",
            volumes: &volumes,
            etc_files: &etc,
            sources,
            services: &[],
        };
        f(&ctx)
    }

    #[test]
    fn env_resolves_fields_refs_and_expansion() {
        let p = pod();
        let sources = Sources::from([
            (
                ("ConfigMap".to_string(), "cm".to_string()),
                Some(json!({"data": {"color": "blue", "size": "L"}})),
            ),
            (
                ("Secret".to_string(), "s".to_string()),
                Some(json!({"data": {"pw": "aHVudGVyMg=="}})),
            ),
        ]);
        let c = json!({
            "name": "c",
            "envFrom": [{"configMapRef": {"name": "cm"}, "prefix": "CM_"}],
            "env": [
                {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
                {"name": "IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
                {"name": "APP", "valueFrom": {"fieldRef": {"fieldPath": "metadata.labels['app']"}}},
                {"name": "COLOR", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "color"}}},
                {"name": "PW", "valueFrom": {"secretKeyRef": {"name": "s", "key": "pw"}}},
                {"name": "MISSING", "valueFrom": {"secretKeyRef": {"name": "s", "key": "x", "optional": true}}},
                {"name": "GREETING", "value": "hi $(POD) $$(POD) $(NOPE)"},
            ]
        });
        let env = with_ctx(&p, &sources, |ctx| resolve_env(ctx, &c)).unwrap();
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.as_str());
        assert_eq!(get("CM_color"), Some("blue"));
        assert_eq!(get("POD"), Some("p"));
        assert_eq!(get("IP"), Some("10.42.0.7"));
        assert_eq!(get("APP"), Some("web"));
        assert_eq!(get("COLOR"), Some("blue"));
        assert_eq!(get("PW"), Some("hunter2"));
        assert_eq!(get("MISSING"), None);
        assert_eq!(get("GREETING"), Some("hi p $(POD) $(NOPE)"));
    }

    #[test]
    fn missing_config_map_is_a_config_error() {
        let p = pod();
        let sources = Sources::from([(("ConfigMap".to_string(), "cm".to_string()), None)]);
        let c = json!({"name": "c", "env": [
            {"name": "X", "valueFrom": {"configMapKeyRef": {"name": "cm", "key": "k"}}}
        ]});
        let err = with_ctx(&p, &sources, |ctx| resolve_env(ctx, &c)).unwrap_err();
        assert_eq!(err, "configmap \"cm\" not found");
    }

    #[test]
    fn config_carries_command_mounts_limits_and_labels() {
        let p = pod();
        let c = json!({
            "name": "app", "image": "busybox:test",
            "command": ["sh", "-c"], "args": ["echo $(X)"],
            "env": [{"name": "X", "value": "1"}],
            "workingDir": "/srv",
            "volumeMounts": [{"name": "data", "mountPath": "/data", "readOnly": true}],
            "resources": {"limits": {"memory": "64Mi", "cpu": "500m"}},
        });
        let cfg = with_ctx(&p, &Sources::new(), |ctx| {
            container_config(ctx, &c, 2, "app")
        })
        .unwrap();
        assert_eq!(cfg.id, "u1-app-2");
        assert_eq!(cfg.args, vec!["echo 1"]);
        assert_eq!(cfg.working_dir.as_deref(), Some("/srv"));
        assert_eq!(cfg.hostname.as_deref(), Some("p"));
        assert_eq!(
            cfg.namespaces.network,
            NamespaceMode::Path("/netns/u1".into())
        );
        assert_eq!(cfg.resources.memory_limit_bytes, Some(64 * 1024 * 1024));
        assert_eq!(cfg.resources.cpu_quota, Some(50_000));
        assert_eq!(cfg.log_path, PathBuf::from("/pods/u1/logs/app/2.log"));
        assert_eq!(cfg.labels[POD_UID_LABEL], "u1");
        assert_eq!(cfg.labels[RESTART_COUNT_LABEL], "2");
        assert!(cfg.mounts.iter().any(|m| m.container_path == "/etc/hosts"));
        let data = cfg
            .mounts
            .iter()
            .find(|m| m.container_path == "/data")
            .unwrap();
        assert!(data.read_only);
    }

    #[test]
    fn the_user_request_takes_the_containers_ids_over_the_pods() {
        let mut p = pod();
        p["spec"]["securityContext"] = json!({"runAsUser": 1000, "runAsGroup": 3000,
            "fsGroup": 2000, "supplementalGroups": [4000, 5000]});
        let c = json!({"name": "app", "image": "busybox:test",
            "securityContext": {"runAsUser": 1001}});
        let cfg = with_ctx(&p, &Sources::new(), |ctx| {
            container_config(ctx, &c, 0, "app")
        })
        .unwrap();
        assert_eq!(
            cfg.user,
            UserRequest {
                run_as_user: Some(1001),
                run_as_group: Some(3000),
                supplemental_groups: vec![2000, 4000, 5000],
                strict_groups: false,
            }
        );
        let bare = json!({"name": "app", "image": "busybox:test"});
        let cfg = with_ctx(&pod(), &Sources::new(), |ctx| {
            container_config(ctx, &bare, 0, "app")
        });
        assert_eq!(cfg.unwrap().user, UserRequest::default());
    }

    #[test]
    fn the_containers_seccomp_profile_wins_over_the_pods() {
        let root = Path::new("/var/lib/kubelet/seccomp");
        let mut p = pod();
        let plain = json!({"name": "app"});
        assert_eq!(
            seccomp_profile(&p, &plain, root),
            SeccompProfile::Unconfined
        );
        p["spec"]["securityContext"] = json!({"seccompProfile": {"type": "RuntimeDefault"}});
        assert_eq!(
            seccomp_profile(&p, &plain, root),
            SeccompProfile::RuntimeDefault
        );
        let own = json!({"name": "app", "securityContext": {"seccompProfile": {
            "type": "Localhost", "localhostProfile": "profiles/audit.json"}}});
        assert_eq!(
            seccomp_profile(&p, &own, root),
            SeccompProfile::Localhost(root.join("profiles/audit.json"))
        );
        let unconfined = json!({"name": "app", "securityContext": {"seccompProfile": {
            "type": "Unconfined"}}});
        assert_eq!(
            seccomp_profile(&p, &unconfined, root),
            SeccompProfile::Unconfined
        );
    }

    #[test]
    fn run_as_non_root_is_verified_in_upstreams_words() {
        let mut p = pod();
        let c = json!({"name": "app", "securityContext": {"runAsNonRoot": true}});
        assert_eq!(
            verify_run_as_non_root(&p, &c, ""),
            Err("container has runAsNonRoot and image will run as root \
                 (pod: \"p_ns(u1)\", container: app)"
                .into())
        );
        assert_eq!(
            verify_run_as_non_root(&p, &c, "nginx"),
            Err(
                "container has runAsNonRoot and image has non-numeric user (nginx), cannot \
                 verify user is non-root (pod: \"p_ns(u1)\", container: app)"
                    .into()
            )
        );
        assert_eq!(verify_run_as_non_root(&p, &c, "101:101"), Ok(()));
        // The pod's runAsUser decides before the image's user.
        p["spec"]["securityContext"] = json!({"runAsUser": 0});
        assert_eq!(
            verify_run_as_non_root(&p, &c, "101"),
            Err("container's runAsUser breaks non-root policy \
                 (pod: \"p_ns(u1)\", container: app)"
                .into())
        );
        p["spec"]["securityContext"] = json!({"runAsUser": 65534, "runAsNonRoot": true});
        let plain = json!({"name": "app"});
        assert_eq!(verify_run_as_non_root(&p, &plain, "nginx"), Ok(()));
        // A container may allow root where the pod forbids it.
        p["spec"]["securityContext"] = json!({"runAsNonRoot": true});
        let allowed = json!({"name": "app", "securityContext": {"runAsNonRoot": false}});
        assert_eq!(verify_run_as_non_root(&p, &allowed, ""), Ok(()));
        assert!(verify_run_as_non_root(&p, &plain, "").is_err());
    }

    #[test]
    fn only_the_last_dead_instances_logs_are_kept() {
        let pod = tempfile::tempdir().unwrap();
        let dir = pod.path().join("logs").join("app");
        std::fs::create_dir_all(&dir).unwrap();
        let names = [
            "0.log",
            "0.log.20240101-000000.000000000",
            "1.log",
            "1.log.20240101-000001.000000000",
            "2.log",
            "10.log",
        ];
        for n in names {
            std::fs::write(dir.join(n), "x").unwrap();
        }
        assert_eq!(remove_older_logs(pod.path(), "app", 2).unwrap(), 4);
        let mut left: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        left.sort();
        assert_eq!(left, vec!["10.log", "2.log"]);
        assert_eq!(remove_older_logs(pod.path(), "gone", 5).unwrap(), 0);
    }

    #[test]
    fn services_become_link_variables() {
        let mut p = pod();
        let services = [
            json!({"metadata": {"name": "kubernetes", "namespace": "default"},
                   "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443, "protocol": "TCP"}]}}),
            json!({"metadata": {"name": "my-db", "namespace": "ns"},
                   "spec": {"clusterIP": "10.43.0.7", "ports": [{"port": 5432}]}}),
            json!({"metadata": {"name": "headless", "namespace": "ns"}, "spec": {"clusterIP": "None"}}),
            json!({"metadata": {"name": "other", "namespace": "elsewhere"}, "spec": {"clusterIP": "10.43.0.9"}}),
        ];
        let env = service_env(&p, &services);
        let get = |n: &str| env.iter().find(|(k, _)| k == n).map(|(_, v)| v.clone());
        assert_eq!(get("KUBERNETES_SERVICE_HOST").as_deref(), Some("10.43.0.1"));
        assert_eq!(get("KUBERNETES_SERVICE_PORT_HTTPS").as_deref(), Some("443"));
        assert_eq!(get("MY_DB_SERVICE_PORT").as_deref(), Some("5432"));
        assert_eq!(get("MY_DB_PORT").as_deref(), Some("tcp://10.43.0.7:5432"));
        assert_eq!(
            get("MY_DB_PORT_5432_TCP_ADDR").as_deref(),
            Some("10.43.0.7")
        );
        assert!(get("HEADLESS_SERVICE_HOST").is_none());
        assert!(get("OTHER_SERVICE_HOST").is_none());
        p["spec"]["enableServiceLinks"] = json!(false);
        let env = service_env(&p, &services);
        assert!(env.iter().all(|(k, _)| k.starts_with("KUBERNETES_")));
        assert!(!env.is_empty());
    }

    /// Every variable upstream's `envvars.FromServices` makes for a two-port Service.
    #[test]
    fn service_link_variables_match_upstream_names() {
        let p = pod();
        let services = [json!({
            "metadata": {"name": "web-front", "namespace": "ns"},
            "spec": {"clusterIP": "10.43.0.20", "ports": [
                {"name": "http-alt", "port": 8080, "protocol": "TCP"},
                {"name": "dns", "port": 53, "protocol": "UDP"},
            ]},
        })];
        let env: BTreeMap<String, String> = service_env(&p, &services).into_iter().collect();
        let expected: BTreeMap<String, String> = [
            ("WEB_FRONT_SERVICE_HOST", "10.43.0.20"),
            ("WEB_FRONT_SERVICE_PORT", "8080"),
            ("WEB_FRONT_SERVICE_PORT_HTTP_ALT", "8080"),
            ("WEB_FRONT_SERVICE_PORT_DNS", "53"),
            ("WEB_FRONT_PORT", "tcp://10.43.0.20:8080"),
            ("WEB_FRONT_PORT_8080_TCP", "tcp://10.43.0.20:8080"),
            ("WEB_FRONT_PORT_8080_TCP_PROTO", "tcp"),
            ("WEB_FRONT_PORT_8080_TCP_PORT", "8080"),
            ("WEB_FRONT_PORT_8080_TCP_ADDR", "10.43.0.20"),
            ("WEB_FRONT_PORT_53_UDP", "udp://10.43.0.20:53"),
            ("WEB_FRONT_PORT_53_UDP_PROTO", "udp"),
            ("WEB_FRONT_PORT_53_UDP_PORT", "53"),
            ("WEB_FRONT_PORT_53_UDP_ADDR", "10.43.0.20"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        assert_eq!(env, expected);
    }

    #[test]
    fn ipv6_service_addresses_are_bracketed_in_urls() {
        let p = pod();
        let services = [json!({
            "metadata": {"name": "v6", "namespace": "ns"},
            "spec": {"clusterIP": "fd00::10", "ports": [{"port": 80}]},
        })];
        let env: BTreeMap<String, String> = service_env(&p, &services).into_iter().collect();
        assert_eq!(env["V6_SERVICE_HOST"], "fd00::10");
        assert_eq!(env["V6_PORT"], "tcp://[fd00::10]:80");
        assert_eq!(env["V6_PORT_80_TCP_ADDR"], "fd00::10");
    }

    /// Upstream: the master Service of `default` always; a Service of the pod's own
    /// namespace with the same name replaces it only while service links are on.
    #[test]
    fn own_kubernetes_service_shadows_the_master_only_with_links() {
        let mut p = pod();
        let services = [
            json!({"metadata": {"name": "kubernetes", "namespace": "default"},
                   "spec": {"clusterIP": "10.43.0.1", "ports": [{"name": "https", "port": 443}]}}),
            json!({"metadata": {"name": "kubernetes", "namespace": "ns"},
                   "spec": {"clusterIP": "10.43.0.99", "ports": [{"port": 80}]}}),
        ];
        let host = |p: &Value| {
            service_env(p, &services)
                .into_iter()
                .find(|(k, _)| k == "KUBERNETES_SERVICE_HOST")
                .map(|(_, v)| v)
        };
        assert_eq!(host(&p).as_deref(), Some("10.43.0.99"));
        p["spec"]["enableServiceLinks"] = json!(false);
        assert_eq!(host(&p).as_deref(), Some("10.43.0.1"));
    }

    #[test]
    fn pull_policy_defaults_like_the_api_server() {
        assert_eq!(
            pull_policy(&json!({"image": "busybox"})),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&json!({"image": "busybox:latest"})),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&json!({"image": "reg:5000/busybox:1"})),
            PullPolicy::IfNotPresent
        );
        assert_eq!(
            pull_policy(&json!({"image": "reg:5000/busybox"})),
            PullPolicy::Always
        );
        assert_eq!(
            pull_policy(&json!({"image": "b:latest", "imagePullPolicy": "Never"})),
            PullPolicy::Never
        );
    }

    #[test]
    fn pull_secrets_give_registry_credentials() {
        // {"auths":{"reg.lan:5000":{"auth":"dTpw"}}} and a dockercfg for Docker Hub.
        let config = r#"{"auths":{"https://reg.lan:5000/v2/":{"auth":"dTpw"}}}"#;
        use base64::Engine;
        let b64 = base64::engine::general_purpose::STANDARD;
        let secrets = [
            json!({"data": {".dockerconfigjson": b64.encode(config)}}),
            json!({"data": {".dockercfg": b64.encode(r#"{"https://index.docker.io/v1/":{"username":"hub","password":"pw"}}"#)}}),
        ];
        let a = registry_auth(&secrets, "reg.lan:5000").unwrap();
        assert_eq!((a.username.as_str(), a.password.as_str()), ("u", "p"));
        let hub = registry_auth(&secrets, "docker.io").unwrap();
        assert_eq!(hub.username, "hub");
        assert!(registry_auth(&secrets, "other.lan").is_none());
    }

    #[test]
    fn security_context_reaches_the_runtime_config() {
        let container = json!({"name": "pihole", "image": "pihole/pihole", "securityContext": {
            "capabilities": {"add": ["NET_ADMIN"], "drop": ["all"]},
            "allowPrivilegeEscalation": false, "privileged": null}});
        let config = with_ctx(&pod(), &Sources::new(), |ctx| {
            container_config(ctx, &container, 0, "app").unwrap()
        });
        assert_eq!(config.capabilities.add, vec!["NET_ADMIN".to_string()]);
        assert_eq!(config.capabilities.drop, vec!["all".to_string()]);
        assert!(config.no_new_privileges);
        assert!(!config.privileged);
        let spec = crate::agent::runtime::spec::build_spec(&config, None, &Default::default());
        // No command and no image: only the capabilities matter here.
        assert!(spec.is_err());
        assert_eq!(
            crate::agent::runtime::spec::capability_set(&config),
            std::collections::HashSet::from([oci_spec::runtime::Capability::NetAdmin])
        );

        let privileged = json!({"name": "ha", "image": "home-assistant",
            "securityContext": {"privileged": true}});
        let config = with_ctx(&pod(), &Sources::new(), |ctx| {
            container_config(ctx, &privileged, 0, "app").unwrap()
        });
        assert!(config.privileged && !config.no_new_privileges);
        let plain = json!({"name": "web", "image": "nginx"});
        let config = with_ctx(&pod(), &Sources::new(), |ctx| {
            container_config(ctx, &plain, 0, "app").unwrap()
        });
        assert!(!config.privileged && !config.no_new_privileges);
        assert_eq!(config.capabilities, CapabilityChanges::default());
    }

    /// The OCI memory limit and CPU shares/quota/period a container with these
    /// `resources` runs under, through the same path the kubelet takes.
    fn cgroup_of(resources: Value) -> (Option<i64>, Option<u64>, Option<i64>, Option<u64>) {
        let container =
            json!({"name": "c", "image": "busybox", "command": ["sh"], "resources": resources});
        let config = with_ctx(&pod(), &Sources::new(), |ctx| {
            container_config(ctx, &container, 0, "app").unwrap()
        });
        let spec =
            crate::agent::runtime::spec::build_spec(&config, None, &Default::default()).unwrap();
        let linux = spec.linux().as_ref().unwrap();
        let res = linux.resources().as_ref().unwrap();
        let memory = res.memory().as_ref().and_then(|m| m.limit());
        let cpu = res.cpu().as_ref();
        (
            memory,
            cpu.and_then(|c| c.shares()),
            cpu.and_then(|c| c.quota()),
            cpu.and_then(|c| c.period()),
        )
    }

    #[test]
    fn limits_in_every_quantity_spelling_reach_the_cgroup() {
        let cases = [
            (
                json!({"limits": {"memory": "1Gi", "cpu": "500m"}}),
                (Some(1 << 30), Some(512), Some(50_000), Some(100_000)),
            ),
            (
                json!({"limits": {"memory": "500M", "cpu": "2"}}),
                (Some(500_000_000), Some(2048), Some(200_000), Some(100_000)),
            ),
            (
                json!({"limits": {"memory": "1e9", "cpu": "0.5"}}),
                (Some(1_000_000_000), Some(512), Some(50_000), Some(100_000)),
            ),
            (
                json!({"limits": {"memory": "129e6", "cpu": 1}}),
                (Some(129_000_000), Some(1024), Some(100_000), Some(100_000)),
            ),
            (
                json!({"limits": {"memory": "123Mi", "cpu": "1E0"}}),
                (Some(123 << 20), Some(1024), Some(100_000), Some(100_000)),
            ),
            // Sub-millicore CPU rounds up to one millicore; quota and shares have floors.
            (
                json!({"limits": {"memory": "1Pi", "cpu": "2n"}}),
                (Some(1 << 50), Some(2), Some(1000), Some(100_000)),
            ),
            (
                json!({"limits": {"memory": "1Ei", "cpu": "5u"}}),
                (Some(1 << 60), Some(2), Some(1000), Some(100_000)),
            ),
            (
                json!({"requests": {"cpu": "250m"}}),
                (None, Some(256), None, None),
            ),
        ];
        for (resources, want) in cases {
            assert_eq!(cgroup_of(resources.clone()), want, "resources {resources}");
        }
    }

    #[test]
    fn resource_field_refs_read_rounded_up_quantities() {
        let c = json!({"resources": {"limits": {"cpu": "1500m", "memory": "1.5Ki"}, "requests": {"cpu": "2n"}}});
        let none = Value::Null;
        assert_eq!(
            resource_field(&c, "limits.cpu", &none).as_deref(),
            Some("2")
        );
        assert_eq!(
            resource_field(&c, "requests.cpu", &none).as_deref(),
            Some("1")
        );
        assert_eq!(
            resource_field(&c, "limits.memory", &none).as_deref(),
            Some("1536")
        );
        assert_eq!(
            resource_field(&c, "requests.memory", &none).as_deref(),
            Some("0")
        );
        let milli = json!("1m");
        assert_eq!(
            resource_field(&c, "limits.cpu", &milli).as_deref(),
            Some("1500")
        );
        let kib = json!("1Ki");
        assert_eq!(
            resource_field(&c, "limits.memory", &kib).as_deref(),
            Some("2")
        );
        assert_eq!(resource_field(&c, "limits.memory", &json!("0")), None);
    }
}
