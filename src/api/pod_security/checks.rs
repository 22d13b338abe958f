//! The Pod Security Standards' checks, one function per check version, as upstream's
//! `k8s.io/pod-security-admission/policy` (1.32) words and versions them. Each reads the
//! pod's (or template's) metadata and spec as JSON and returns why it is forbidden.

use std::collections::BTreeSet;

use serde_json::Value;

use super::Forbidden;
use crate::api::validation::go_quote;

/// `"a", "b"` (upstream `joinQuote`).
fn join_quote<S: AsRef<str>>(items: &[S]) -> String {
    if items.is_empty() {
        return String::new();
    }
    let joined: Vec<&str> = items.iter().map(AsRef::as_ref).collect();
    format!("\"{}\"", joined.join("\", \""))
}

fn pluralize<'a>(singular: &'a str, plural: &'a str, count: usize) -> &'a str {
    if count == 1 {
        singular
    } else {
        plural
    }
}

/// `container "a"` / `containers "a", "b"`.
fn containers_phrase(names: &[String]) -> String {
    format!(
        "{} {}",
        pluralize("container", "containers", names.len()),
        join_quote(names)
    )
}

/// The init, regular and ephemeral containers, in upstream's `visitContainers` order.
fn containers(spec: &Value) -> impl Iterator<Item = &Value> {
    ["initContainers", "containers", "ephemeralContainers"]
        .into_iter()
        .flat_map(move |k| spec[k].as_array().into_iter().flatten())
}

fn name(container: &Value) -> String {
    container["name"].as_str().unwrap_or("").to_string()
}

fn is_windows(spec: &Value) -> bool {
    spec["os"]["name"] == "windows"
}

fn present(v: &Value) -> bool {
    !v.is_null()
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn forbid(reason: impl Into<String>, detail: impl Into<String>) -> Option<Forbidden> {
    Some(Forbidden {
        reason: reason.into(),
        detail: detail.into(),
    })
}

fn annotations(meta: &Value) -> impl Iterator<Item = (&String, &str)> {
    meta["annotations"]
        .as_object()
        .into_iter()
        .flatten()
        .map(|(k, v)| (k, v.as_str().unwrap_or("")))
}

/// `pod`, `containers "a", "b"` joined with ` and `.
fn setters(pod: bool, containers: &[String]) -> Vec<String> {
    let mut out = Vec::new();
    if pod {
        out.push("pod".to_string());
    }
    if !containers.is_empty() {
        out.push(containers_phrase(containers));
    }
    out
}

pub(super) fn allow_privilege_escalation_1_8(_: &Value, spec: &Value) -> Option<Forbidden> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| c["securityContext"]["allowPrivilegeEscalation"] != Value::Bool(false))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbid(
        "allowPrivilegeEscalation != false",
        format!(
            "{} must set securityContext.allowPrivilegeEscalation=false",
            containers_phrase(&bad)
        ),
    )
}

pub(super) fn allow_privilege_escalation_1_25(meta: &Value, spec: &Value) -> Option<Forbidden> {
    if is_windows(spec) {
        return None;
    }
    allow_privilege_escalation_1_8(meta, spec)
}

fn apparmor_type_allowed(t: &str) -> bool {
    matches!(t, "RuntimeDefault" | "Localhost")
}

fn apparmor_annotation_allowed(v: &str) -> bool {
    v.is_empty() || v == "runtime/default" || v.starts_with("localhost/")
}

pub(super) fn app_armor_profile_1_0(meta: &Value, spec: &Value) -> Option<Forbidden> {
    let mut bad_setters = Vec::new();
    let mut bad_values = BTreeSet::new();
    let pod_profile = &spec["securityContext"]["appArmorProfile"];
    if present(pod_profile) && !apparmor_type_allowed(str_of(&pod_profile["type"])) {
        bad_setters.push("pod".to_string());
        bad_values.insert(str_of(&pod_profile["type"]).to_string());
    }
    let mut bad_containers = Vec::new();
    for c in containers(spec) {
        let profile = &c["securityContext"]["appArmorProfile"];
        if present(profile) && !apparmor_type_allowed(str_of(&profile["type"])) {
            bad_containers.push(name(c));
            bad_values.insert(str_of(&profile["type"]).to_string());
        }
    }
    if !bad_containers.is_empty() {
        bad_setters.push(containers_phrase(&bad_containers));
    }
    let mut forbidden_annotations: Vec<String> = annotations(meta)
        .filter(|(k, v)| {
            k.starts_with("container.apparmor.security.beta.kubernetes.io/")
                && !apparmor_annotation_allowed(v)
        })
        .map(|(k, v)| format!("{k}={}", go_quote(v)))
        .collect();
    let mut bad_value_list: Vec<String> = bad_values.into_iter().collect();
    if !forbidden_annotations.is_empty() {
        forbidden_annotations.sort();
        bad_setters
            .push(pluralize("annotation", "annotations", forbidden_annotations.len()).to_string());
        bad_value_list.extend(forbidden_annotations);
    }
    if bad_setters.is_empty() {
        return None;
    }
    forbid(
        pluralize(
            "forbidden AppArmor profile",
            "forbidden AppArmor profiles",
            bad_value_list.len(),
        ),
        format!(
            "{} must not set AppArmor profile type to {}",
            bad_setters.join(" and "),
            join_quote(&bad_value_list)
        ),
    )
}

const CAPABILITIES_ALLOWED_1_0: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

fn capabilities_added(c: &Value) -> impl Iterator<Item = &str> {
    c["securityContext"]["capabilities"]["add"]
        .as_array()
        .into_iter()
        .flatten()
        .map(str_of)
}

pub(super) fn capabilities_baseline_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut bad = Vec::new();
    let mut caps = BTreeSet::new();
    for c in containers(spec) {
        let mut valid = true;
        for cap in capabilities_added(c) {
            if !CAPABILITIES_ALLOWED_1_0.contains(&cap) {
                valid = false;
                caps.insert(cap.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let caps: Vec<String> = caps.into_iter().collect();
    forbid(
        "non-default capabilities",
        format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&bad),
            join_quote(&caps)
        ),
    )
}

pub(super) fn capabilities_restricted_1_22(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut missing_drop_all = Vec::new();
    let mut adding_forbidden = Vec::new();
    let mut forbidden_caps = BTreeSet::new();
    for c in containers(spec) {
        let caps = &c["securityContext"]["capabilities"];
        if !present(caps) {
            missing_drop_all.push(name(c));
            continue;
        }
        let dropped_all = caps["drop"]
            .as_array()
            .into_iter()
            .flatten()
            .any(|d| d == "ALL");
        if !dropped_all {
            missing_drop_all.push(name(c));
        }
        let mut added_forbidden = false;
        for cap in capabilities_added(c) {
            if cap != "NET_BIND_SERVICE" {
                added_forbidden = true;
                forbidden_caps.insert(cap.to_string());
            }
        }
        if added_forbidden {
            adding_forbidden.push(name(c));
        }
    }
    let mut details = Vec::new();
    if !missing_drop_all.is_empty() {
        details.push(format!(
            "{} must set securityContext.capabilities.drop=[\"ALL\"]",
            containers_phrase(&missing_drop_all)
        ));
    }
    if !adding_forbidden.is_empty() {
        let caps: Vec<String> = forbidden_caps.into_iter().collect();
        details.push(format!(
            "{} must not include {} in securityContext.capabilities.add",
            containers_phrase(&adding_forbidden),
            join_quote(&caps)
        ));
    }
    if details.is_empty() {
        return None;
    }
    forbid("unrestricted capabilities", details.join("; "))
}

pub(super) fn capabilities_restricted_1_25(meta: &Value, spec: &Value) -> Option<Forbidden> {
    if is_windows(spec) {
        return None;
    }
    capabilities_restricted_1_22(meta, spec)
}

pub(super) fn host_namespaces_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let found: Vec<&str> = [
        ("hostNetwork", "hostNetwork=true"),
        ("hostPID", "hostPID=true"),
        ("hostIPC", "hostIPC=true"),
    ]
    .into_iter()
    .filter(|(field, _)| spec[*field] == Value::Bool(true))
    .map(|(_, text)| text)
    .collect();
    if found.is_empty() {
        return None;
    }
    forbid("host namespaces", found.join(", "))
}

fn volumes(spec: &Value) -> impl Iterator<Item = &Value> {
    spec["volumes"].as_array().into_iter().flatten()
}

pub(super) fn host_path_volumes_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let bad: Vec<String> = volumes(spec)
        .filter(|v| present(&v["hostPath"]))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbid(
        "hostPath volumes",
        format!(
            "{} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad)
        ),
    )
}

pub(super) fn host_ports_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut bad = Vec::new();
    let mut ports = BTreeSet::new();
    for c in containers(spec) {
        let mut valid = true;
        for p in c["ports"].as_array().into_iter().flatten() {
            let host_port = p["hostPort"].as_i64().unwrap_or(0);
            if host_port != 0 {
                valid = false;
                ports.insert(host_port.to_string());
            }
        }
        if !valid {
            bad.push(name(c));
        }
    }
    if bad.is_empty() {
        return None;
    }
    let ports: Vec<String> = ports.into_iter().collect();
    forbid(
        "hostPort",
        format!(
            "{} {} {} {} {}",
            pluralize("container", "containers", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize("hostPort", "hostPorts", ports.len()),
            ports.join(", ")
        ),
    )
}

pub(super) fn privileged_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let bad: Vec<String> = containers(spec)
        .filter(|c| c["securityContext"]["privileged"] == Value::Bool(true))
        .map(name)
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbid(
        "privileged",
        format!(
            "{} must not set securityContext.privileged=true",
            containers_phrase(&bad)
        ),
    )
}

pub(super) fn proc_mount_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for c in containers(spec) {
        let proc_mount = &c["securityContext"]["procMount"];
        if present(proc_mount) && proc_mount != "Default" {
            bad.push(name(c));
            types.insert(str_of(proc_mount).to_string());
        }
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    forbid(
        "procMount",
        format!(
            "{} must not set securityContext.procMount to {}",
            containers_phrase(&bad),
            join_quote(&types)
        ),
    )
}

/// The volume sources the restricted level allows.
const RESTRICTED_VOLUMES_ALLOWED: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

/// The other volume sources, in upstream's order of naming them.
const RESTRICTED_VOLUME_TYPES: &[(&str, &str)] = &[
    ("hostPath", "hostPath"),
    ("gcePersistentDisk", "gcePersistentDisk"),
    ("awsElasticBlockStore", "awsElasticBlockStore"),
    ("gitRepo", "gitRepo"),
    ("nfs", "nfs"),
    ("iscsi", "iscsi"),
    ("glusterfs", "glusterfs"),
    ("rbd", "rbd"),
    ("flexVolume", "flexVolume"),
    ("cinder", "cinder"),
    ("cephfs", "cephfs"),
    ("flocker", "flocker"),
    ("fc", "fc"),
    ("azureFile", "azureFile"),
    ("vsphereVolume", "vsphereVolume"),
    ("quobyte", "quobyte"),
    ("azureDisk", "azureDisk"),
    ("photonPersistentDisk", "photonPersistentDisk"),
    ("portworxVolume", "portworxVolume"),
    ("scaleIO", "scaleIO"),
    ("storageos", "storageos"),
];

pub(super) fn restricted_volumes_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut bad = Vec::new();
    let mut types = BTreeSet::new();
    for v in volumes(spec) {
        if RESTRICTED_VOLUMES_ALLOWED
            .iter()
            .any(|field| present(&v[*field]))
        {
            continue;
        }
        bad.push(name(v));
        let kind = RESTRICTED_VOLUME_TYPES
            .iter()
            .find(|(field, _)| present(&v[*field]))
            .map_or("unknown", |(_, kind)| kind);
        types.insert(kind.to_string());
    }
    if bad.is_empty() {
        return None;
    }
    let types: Vec<String> = types.into_iter().collect();
    forbid(
        "restricted volume types",
        format!(
            "{} {} {} {} {}",
            pluralize("volume", "volumes", bad.len()),
            join_quote(&bad),
            pluralize("uses", "use", bad.len()),
            pluralize(
                "restricted volume type",
                "restricted volume types",
                types.len()
            ),
            join_quote(&types)
        ),
    )
}

pub(super) fn run_as_non_root_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let mut pod_bad = false;
    let mut pod_non_root = false;
    match spec["securityContext"]["runAsNonRoot"] {
        Value::Bool(false) => pod_bad = true,
        Value::Bool(true) => pod_non_root = true,
        _ => {}
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        match c["securityContext"]["runAsNonRoot"] {
            Value::Bool(false) => explicit.push(name(c)),
            Value::Bool(true) => {}
            _ if !pod_non_root => implicit.push(name(c)),
            _ => {}
        }
    }
    let bad_setters = setters(pod_bad, &explicit);
    if !bad_setters.is_empty() {
        return forbid(
            "runAsNonRoot != true",
            format!(
                "{} must not set securityContext.runAsNonRoot=false",
                bad_setters.join(" and ")
            ),
        );
    }
    if !implicit.is_empty() {
        return forbid(
            "runAsNonRoot != true",
            format!(
                "pod or {} must set securityContext.runAsNonRoot=true",
                containers_phrase(&implicit)
            ),
        );
    }
    None
}

pub(super) fn run_as_user_1_23(_: &Value, spec: &Value) -> Option<Forbidden> {
    let is_root = |sc: &Value| sc["runAsUser"].as_i64() == Some(0);
    let explicit: Vec<String> = containers(spec)
        .filter(|c| is_root(&c["securityContext"]))
        .map(name)
        .collect();
    let bad_setters = setters(is_root(&spec["securityContext"]), &explicit);
    if bad_setters.is_empty() {
        return None;
    }
    forbid(
        "runAsUser=0",
        format!("{} must not set runAsUser=0", bad_setters.join(" and ")),
    )
}

const SELINUX_TYPES_1_0: &[&str] = &["", "container_t", "container_init_t", "container_kvm_t"];
const SELINUX_TYPES_1_31: &[&str] = &[
    "",
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

pub(super) fn se_linux_options_1_0(meta: &Value, spec: &Value) -> Option<Forbidden> {
    se_linux_options(meta, spec, SELINUX_TYPES_1_0)
}

pub(super) fn se_linux_options_1_31(meta: &Value, spec: &Value) -> Option<Forbidden> {
    se_linux_options(meta, spec, SELINUX_TYPES_1_31)
}

fn se_linux_options(_: &Value, spec: &Value, allowed: &[&str]) -> Option<Forbidden> {
    let mut bad_types = BTreeSet::new();
    let mut set_user = false;
    let mut set_role = false;
    let mut valid = |opts: &Value| {
        let mut ok = true;
        let t = str_of(&opts["type"]);
        if !allowed.contains(&t) {
            ok = false;
            bad_types.insert(t.to_string());
        }
        if !str_of(&opts["user"]).is_empty() {
            ok = false;
            set_user = true;
        }
        if !str_of(&opts["role"]).is_empty() {
            ok = false;
            set_role = true;
        }
        ok
    };
    let pod_opts = &spec["securityContext"]["seLinuxOptions"];
    let pod_bad = present(pod_opts) && !valid(pod_opts);
    let mut bad = Vec::new();
    for c in containers(spec) {
        let opts = &c["securityContext"]["seLinuxOptions"];
        if present(opts) && !valid(opts) {
            bad.push(name(c));
        }
    }
    let bad_setters = setters(pod_bad, &bad);
    if bad_setters.is_empty() {
        return None;
    }
    let mut bad_data = Vec::new();
    if !bad_types.is_empty() {
        let types: Vec<String> = bad_types.into_iter().collect();
        bad_data.push(format!(
            "{} {}",
            pluralize("type", "types", types.len()),
            join_quote(&types)
        ));
    }
    if set_user {
        bad_data.push("user may not be set".to_string());
    }
    if set_role {
        bad_data.push("role may not be set".to_string());
    }
    forbid(
        "seLinuxOptions",
        format!(
            "{} set forbidden securityContext.seLinuxOptions: {}",
            bad_setters.join(" and "),
            bad_data.join("; ")
        ),
    )
}

const SECCOMP_POD_ANNOTATION: &str = "seccomp.security.alpha.kubernetes.io/pod";
const SECCOMP_CONTAINER_ANNOTATION_PREFIX: &str = "container.seccomp.security.alpha.kubernetes.io/";

fn seccomp_type_allowed(t: &str) -> bool {
    matches!(t, "Localhost" | "RuntimeDefault")
}

fn seccomp_annotation_allowed(v: &str) -> bool {
    v == "runtime/default" || v == "docker/default" || v.starts_with("localhost/")
}

pub(super) fn seccomp_profile_baseline_1_0(meta: &Value, spec: &Value) -> Option<Forbidden> {
    let mut forbidden = BTreeSet::new();
    let annotation = |key: &str| meta["annotations"][key].as_str().map(str::to_string);
    if let Some(v) = annotation(SECCOMP_POD_ANNOTATION) {
        if !seccomp_annotation_allowed(&v) {
            forbidden.insert(format!("{SECCOMP_POD_ANNOTATION}={}", go_quote(&v)));
        }
    }
    for c in containers(spec) {
        let key = format!("{SECCOMP_CONTAINER_ANNOTATION_PREFIX}{}", name(c));
        if let Some(v) = annotation(&key) {
            if !seccomp_annotation_allowed(&v) {
                forbidden.insert(format!("{key}={}", go_quote(&v)));
            }
        }
    }
    if forbidden.is_empty() {
        return None;
    }
    let list: Vec<String> = forbidden.into_iter().collect();
    forbid(
        "seccompProfile",
        format!(
            "forbidden {} {}",
            pluralize("annotation", "annotations", list.len()),
            list.join(", ")
        ),
    )
}

/// The explicitly bad seccomp setters and values, and whether the pod sets an allowed
/// profile (shared by the baseline 1.19 and restricted checks).
fn seccomp_setters(spec: &Value) -> (bool, bool, Vec<String>, Vec<String>, BTreeSet<String>) {
    let mut values = BTreeSet::new();
    let pod_profile = &spec["securityContext"]["seccompProfile"];
    let mut pod_bad = false;
    let mut pod_set = false;
    if present(pod_profile) {
        if seccomp_type_allowed(str_of(&pod_profile["type"])) {
            pod_set = true;
        } else {
            pod_bad = true;
            values.insert(str_of(&pod_profile["type"]).to_string());
        }
    }
    let mut explicit = Vec::new();
    let mut implicit = Vec::new();
    for c in containers(spec) {
        let profile = &c["securityContext"]["seccompProfile"];
        if present(profile) {
            if !seccomp_type_allowed(str_of(&profile["type"])) {
                explicit.push(name(c));
                values.insert(str_of(&profile["type"]).to_string());
            }
        } else if !pod_set {
            implicit.push(name(c));
        }
    }
    (pod_bad, pod_set, explicit, implicit, values)
}

fn seccomp_explicitly_bad(
    pod_bad: bool,
    explicit: &[String],
    values: BTreeSet<String>,
) -> Option<Forbidden> {
    let bad_setters = setters(pod_bad, explicit);
    if bad_setters.is_empty() {
        return None;
    }
    let values: Vec<String> = values.into_iter().collect();
    forbid(
        "seccompProfile",
        format!(
            "{} must not set securityContext.seccompProfile.type to {}",
            bad_setters.join(" and "),
            join_quote(&values)
        ),
    )
}

pub(super) fn seccomp_profile_baseline_1_19(_: &Value, spec: &Value) -> Option<Forbidden> {
    let (pod_bad, _, explicit, _, values) = seccomp_setters(spec);
    seccomp_explicitly_bad(pod_bad, &explicit, values)
}

pub(super) fn seccomp_profile_restricted_1_19(_: &Value, spec: &Value) -> Option<Forbidden> {
    let (pod_bad, _, explicit, implicit, values) = seccomp_setters(spec);
    if let Some(f) = seccomp_explicitly_bad(pod_bad, &explicit, values) {
        return Some(f);
    }
    if implicit.is_empty() {
        return None;
    }
    forbid(
        "seccompProfile",
        format!(
            "pod or {} must set securityContext.seccompProfile.type to \"RuntimeDefault\" or \"Localhost\"",
            containers_phrase(&implicit)
        ),
    )
}

pub(super) fn seccomp_profile_restricted_1_25(meta: &Value, spec: &Value) -> Option<Forbidden> {
    if is_windows(spec) {
        return None;
    }
    seccomp_profile_restricted_1_19(meta, spec)
}

const SYSCTLS_1_0: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
];
const SYSCTLS_ADDED_1_27: &[&str] = &["net.ipv4.ip_local_reserved_ports"];
const SYSCTLS_ADDED_1_29: &[&str] = &[
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];
const SYSCTLS_ADDED_1_32: &[&str] = &["net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"];

fn sysctls(spec: &Value, allowed: &[&[&str]]) -> Option<Forbidden> {
    let bad: Vec<&str> = spec["securityContext"]["sysctls"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|s| str_of(&s["name"]))
        .filter(|n| !allowed.iter().any(|set| set.contains(n)))
        .collect();
    if bad.is_empty() {
        return None;
    }
    forbid("forbidden sysctls", bad.join(", "))
}

pub(super) fn sysctls_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    sysctls(spec, &[SYSCTLS_1_0])
}

pub(super) fn sysctls_1_27(_: &Value, spec: &Value) -> Option<Forbidden> {
    sysctls(spec, &[SYSCTLS_1_0, SYSCTLS_ADDED_1_27])
}

pub(super) fn sysctls_1_29(_: &Value, spec: &Value) -> Option<Forbidden> {
    sysctls(spec, &[SYSCTLS_1_0, SYSCTLS_ADDED_1_27, SYSCTLS_ADDED_1_29])
}

pub(super) fn sysctls_1_32(_: &Value, spec: &Value) -> Option<Forbidden> {
    sysctls(
        spec,
        &[
            SYSCTLS_1_0,
            SYSCTLS_ADDED_1_27,
            SYSCTLS_ADDED_1_29,
            SYSCTLS_ADDED_1_32,
        ],
    )
}

pub(super) fn windows_host_process_1_0(_: &Value, spec: &Value) -> Option<Forbidden> {
    let host_process = |sc: &Value| sc["windowsOptions"]["hostProcess"] == Value::Bool(true);
    let bad: Vec<String> = containers(spec)
        .filter(|c| host_process(&c["securityContext"]))
        .map(name)
        .collect();
    let bad_setters = setters(host_process(&spec["securityContext"]), &bad);
    if bad_setters.is_empty() {
        return None;
    }
    forbid(
        "hostProcess",
        format!(
            "{} must not set securityContext.windowsOptions.hostProcess=true",
            bad_setters.join(" and ")
        ),
    )
}
