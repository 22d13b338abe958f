//! Pod Security Standards (upstream's `k8s.io/pod-security-admission`, 1.32): levels and
//! versions, the policy a namespace's `pod-security.kubernetes.io/*` labels ask for, the
//! checks of each level at each version, and the messages the admission plugin gives.
//! Pure: the admission plugin (`apiserver::admission::pod_security`) does the reading.

mod checks;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

use crate::api::validation::FieldError;

pub const LABEL_PREFIX: &str = "pod-security.kubernetes.io/";
pub const ENFORCE_LEVEL_LABEL: &str = "pod-security.kubernetes.io/enforce";
pub const ENFORCE_VERSION_LABEL: &str = "pod-security.kubernetes.io/enforce-version";
pub const AUDIT_LEVEL_LABEL: &str = "pod-security.kubernetes.io/audit";
pub const AUDIT_VERSION_LABEL: &str = "pod-security.kubernetes.io/audit-version";
pub const WARN_LEVEL_LABEL: &str = "pod-security.kubernetes.io/warn";
pub const WARN_VERSION_LABEL: &str = "pod-security.kubernetes.io/warn-version";

/// The newest version the checks know (upstream's evaluator `maxVersion`): `latest`
/// and later versions are evaluated as this one.
const MAX_MINOR: u32 = 32;

/// How many existing pods a namespace relabelling evaluates (upstream's
/// `defaultNamespaceMaxPodsToCheck`).
pub const NAMESPACE_MAX_PODS_TO_CHECK: usize = 3000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    fn parse(s: &str) -> Result<Level, &'static str> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err("must be one of privileged, baseline, restricted"),
        }
    }

    fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// `latest` or `v1.N` (`Latest` is newer than every numbered version).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    Minor(u32),
    Latest,
}

impl Version {
    fn parse(s: &str) -> Result<Version, &'static str> {
        const MESSAGE: &str = "must be \"latest\" or \"v1.x\"";
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let minor = s.strip_prefix("v1.").ok_or(MESSAGE)?;
        let well_formed = !minor.is_empty()
            && minor.bytes().all(|b| b.is_ascii_digit())
            && (minor == "0" || !minor.starts_with('0'));
        if !well_formed {
            return Err(MESSAGE);
        }
        minor.parse().map(Version::Minor).map_err(|_| MESSAGE)
    }

    /// The minor version the checks are chosen for.
    fn effective_minor(self) -> u32 {
        match self {
            Version::Latest => MAX_MINOR,
            Version::Minor(m) => m.min(MAX_MINOR),
        }
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Latest => f.write_str("latest"),
            Version::Minor(m) => write!(f, "v1.{m}"),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LevelVersion {
    pub level: Level,
    pub version: Version,
}

impl LevelVersion {
    pub const PRIVILEGED: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };

    fn equivalent(&self, other: &LevelVersion) -> bool {
        (self.level == Level::Privileged && other.level == Level::Privileged) || self == other
    }
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// What a namespace asks for in each mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub enforce: LevelVersion,
    pub audit: LevelVersion,
    pub warn: LevelVersion,
}

impl Default for Policy {
    /// Upstream's default configuration: privileged in every mode.
    fn default() -> Self {
        Policy {
            enforce: LevelVersion::PRIVILEGED,
            audit: LevelVersion::PRIVILEGED,
            warn: LevelVersion::PRIVILEGED,
        }
    }
}

impl Policy {
    pub fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }

    pub fn equivalent(&self, other: &Policy) -> bool {
        self.enforce.equivalent(&other.enforce)
            && self.audit.equivalent(&other.audit)
            && self.warn.equivalent(&other.warn)
    }
}

/// The policy a namespace's labels ask for over `defaults`, and the labels' errors
/// (upstream `PolicyToEvaluate`: a bad enforce level enforces restricted, a bad audit
/// or warn level is privileged, a bad version is `latest`; warn follows a stricter
/// enforce level that has no warn label of its own).
pub fn policy_to_evaluate(
    labels: &Map<String, Value>,
    defaults: Policy,
) -> (Policy, Vec<FieldError>) {
    let mut p = defaults;
    let mut errs = Vec::new();
    if labels.is_empty() {
        return (p, errs);
    }
    let label = |key: &str| labels.get(key).map(|v| v.as_str().unwrap_or(""));
    let mut err = |key: &str, value: &str, message: &str| {
        errs.push(FieldError::invalid(
            format!("metadata.labels[{key}]"),
            value,
            message,
        ));
    };
    let mut has_enforce_level = false;
    if let Some(v) = label(ENFORCE_LEVEL_LABEL) {
        match Level::parse(v) {
            Ok(l) => {
                p.enforce.level = l;
                has_enforce_level = true;
            }
            Err(m) => {
                p.enforce.level = Level::Restricted;
                err(ENFORCE_LEVEL_LABEL, v, m);
            }
        }
    }
    if let Some(v) = label(ENFORCE_VERSION_LABEL) {
        p.enforce.version = Version::parse(v).unwrap_or_else(|m| {
            err(ENFORCE_VERSION_LABEL, v, m);
            Version::Latest
        });
    }
    if let Some(v) = label(AUDIT_LEVEL_LABEL) {
        p.audit.level = Level::parse(v).unwrap_or_else(|m| {
            err(AUDIT_LEVEL_LABEL, v, m);
            Level::Privileged
        });
    }
    if let Some(v) = label(AUDIT_VERSION_LABEL) {
        p.audit.version = Version::parse(v).unwrap_or_else(|m| {
            err(AUDIT_VERSION_LABEL, v, m);
            Version::Latest
        });
    }
    let has_warn_level = label(WARN_LEVEL_LABEL).is_some();
    if let Some(v) = label(WARN_LEVEL_LABEL) {
        p.warn.level = Level::parse(v).unwrap_or_else(|m| {
            err(WARN_LEVEL_LABEL, v, m);
            Level::Privileged
        });
    }
    let has_warn_version = label(WARN_VERSION_LABEL).is_some();
    if let Some(v) = label(WARN_VERSION_LABEL) {
        p.warn.version = Version::parse(v).unwrap_or_else(|m| {
            err(WARN_VERSION_LABEL, v, m);
            Version::Latest
        });
    }
    if !has_warn_level && has_enforce_level && p.enforce.level > p.warn.level {
        p.warn.level = p.enforce.level;
        if !has_warn_version {
            p.warn.version = p.enforce.version;
        }
    }
    (p, errs)
}

/// Why a check forbids a pod: a short reason and its detail.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forbidden {
    pub reason: String,
    pub detail: String,
}

type CheckFn = fn(&Value, &Value) -> Option<Forbidden>;

/// One version of a check: from which minor version on it applies and which baseline
/// checks a restricted one replaces.
struct VersionedCheck {
    min_minor: u32,
    check: CheckFn,
    overrides: &'static [&'static str],
}

struct Check {
    id: &'static str,
    level: Level,
    versions: &'static [VersionedCheck],
}

const fn v(min_minor: u32, check: CheckFn) -> VersionedCheck {
    VersionedCheck {
        min_minor,
        check,
        overrides: &[],
    }
}

const fn overriding(
    min_minor: u32,
    check: CheckFn,
    overrides: &'static [&'static str],
) -> VersionedCheck {
    VersionedCheck {
        min_minor,
        check,
        overrides,
    }
}

use checks as c;

/// Every check, baseline ones then restricted ones, each sorted by ID as upstream's
/// registry orders them (byte order: `seLinuxOptions` before `seccompProfile_baseline`).
const CHECKS: &[Check] = &[
    Check {
        id: "appArmorProfile",
        level: Level::Baseline,
        versions: &[v(0, c::app_armor_profile_1_0)],
    },
    Check {
        id: "capabilities_baseline",
        level: Level::Baseline,
        versions: &[v(0, c::capabilities_baseline_1_0)],
    },
    Check {
        id: "hostNamespaces",
        level: Level::Baseline,
        versions: &[v(0, c::host_namespaces_1_0)],
    },
    Check {
        id: "hostPathVolumes",
        level: Level::Baseline,
        versions: &[v(0, c::host_path_volumes_1_0)],
    },
    Check {
        id: "hostPorts",
        level: Level::Baseline,
        versions: &[v(0, c::host_ports_1_0)],
    },
    Check {
        id: "privileged",
        level: Level::Baseline,
        versions: &[v(0, c::privileged_1_0)],
    },
    Check {
        id: "procMount",
        level: Level::Baseline,
        versions: &[v(0, c::proc_mount_1_0)],
    },
    Check {
        id: "seLinuxOptions",
        level: Level::Baseline,
        versions: &[
            v(0, c::se_linux_options_1_0),
            v(31, c::se_linux_options_1_31),
        ],
    },
    Check {
        id: "seccompProfile_baseline",
        level: Level::Baseline,
        versions: &[
            v(0, c::seccomp_profile_baseline_1_0),
            v(19, c::seccomp_profile_baseline_1_19),
        ],
    },
    Check {
        id: "sysctls",
        level: Level::Baseline,
        versions: &[
            v(0, c::sysctls_1_0),
            v(27, c::sysctls_1_27),
            v(29, c::sysctls_1_29),
            v(32, c::sysctls_1_32),
        ],
    },
    Check {
        id: "windowsHostProcess",
        level: Level::Baseline,
        versions: &[v(0, c::windows_host_process_1_0)],
    },
    Check {
        id: "allowPrivilegeEscalation",
        level: Level::Restricted,
        versions: &[
            v(8, c::allow_privilege_escalation_1_8),
            v(25, c::allow_privilege_escalation_1_25),
        ],
    },
    Check {
        id: "capabilities_restricted",
        level: Level::Restricted,
        versions: &[
            overriding(
                22,
                c::capabilities_restricted_1_22,
                &["capabilities_baseline"],
            ),
            overriding(
                25,
                c::capabilities_restricted_1_25,
                &["capabilities_baseline"],
            ),
        ],
    },
    Check {
        id: "restrictedVolumes",
        level: Level::Restricted,
        versions: &[overriding(
            0,
            c::restricted_volumes_1_0,
            &["hostPathVolumes"],
        )],
    },
    Check {
        id: "runAsNonRoot",
        level: Level::Restricted,
        versions: &[v(0, c::run_as_non_root_1_0)],
    },
    Check {
        id: "runAsUser",
        level: Level::Restricted,
        versions: &[v(23, c::run_as_user_1_23)],
    },
    Check {
        id: "seccompProfile_restricted",
        level: Level::Restricted,
        versions: &[
            overriding(
                19,
                c::seccomp_profile_restricted_1_19,
                &["seccompProfile_baseline"],
            ),
            overriding(
                25,
                c::seccomp_profile_restricted_1_25,
                &["seccompProfile_baseline"],
            ),
        ],
    },
];

/// The version of `check` that applies at `minor`, if any does yet.
fn version_at(check: &Check, minor: u32) -> Option<&VersionedCheck> {
    check.versions.iter().rev().find(|v| v.min_minor <= minor)
}

/// The forbidden reasons of every check of `lv` that `pod_meta`/`pod_spec` fails, in
/// upstream's order (none for privileged).
pub fn evaluate(lv: LevelVersion, pod_meta: &Value, pod_spec: &Value) -> Vec<Forbidden> {
    if lv.level == Level::Privileged {
        return Vec::new();
    }
    let minor = lv.version.effective_minor();
    let overridden: Vec<&str> = if lv.level == Level::Restricted {
        CHECKS
            .iter()
            .filter(|c| c.level == Level::Restricted)
            .filter_map(|c| version_at(c, minor))
            .flat_map(|v| v.overrides.iter().copied())
            .collect()
    } else {
        Vec::new()
    };
    CHECKS
        .iter()
        .filter(|c| c.level <= lv.level && !overridden.contains(&c.id))
        .filter_map(|c| version_at(c, minor))
        .filter_map(|v| (v.check)(pod_meta, pod_spec))
        .collect()
}

/// `reason (detail), reason (detail)` (upstream `AggregateCheckResult.ForbiddenDetail`).
pub fn forbidden_detail(results: &[Forbidden]) -> String {
    results
        .iter()
        .map(|r| {
            if r.detail.is_empty() {
                r.reason.clone()
            } else {
                format!("{} ({})", r.reason, r.detail)
            }
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// `reason, reason` (upstream `AggregateCheckResult.ForbiddenReason`).
pub fn forbidden_reason(results: &[Forbidden]) -> String {
    results
        .iter()
        .map(|r| r.reason.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

/// The resources whose objects carry a pod template, and where (upstream's
/// `DefaultPodSpecExtractor`), as `(group, plural)`.
pub fn has_pod_spec(group: &str, plural: &str) -> bool {
    matches!(
        (group, plural),
        ("", "pods" | "replicationcontrollers" | "podtemplates")
            | (
                "apps",
                "replicasets" | "deployments" | "statefulsets" | "daemonsets"
            )
            | ("batch", "jobs" | "cronjobs")
    )
}

/// The pod metadata and spec of an object of a resource [`has_pod_spec`] names, `None`
/// where the object has no template (a ReplicationController may leave it out).
pub fn pod_spec_of<'a>(
    group: &str,
    plural: &str,
    obj: &'a Value,
) -> Option<(&'a Value, &'a Value)> {
    let template = match (group, plural) {
        ("", "pods") => obj,
        ("", "podtemplates") => &obj["template"],
        ("batch", "cronjobs") => &obj["spec"]["jobTemplate"]["spec"]["template"],
        _ => &obj["spec"]["template"],
    };
    if template.is_null() {
        return None;
    }
    Some((&template["metadata"], &template["spec"]))
}

/// Whether a pod update may change what the checks see (upstream
/// `isSignificantPodUpdate`): container counts or images, or a new or re-imaged
/// ephemeral container. Other updates are not evaluated.
pub fn is_significant_pod_update(pod: &Value, old: &Value) -> bool {
    let list = |p: &'_ Value, k: &str| p["spec"][k].as_array().cloned().unwrap_or_default();
    for key in ["containers", "initContainers"] {
        let (new, old) = (list(pod, key), list(old, key));
        if new.len() != old.len() || new.iter().zip(&old).any(|(n, o)| n["image"] != o["image"]) {
            return true;
        }
    }
    let old_ephemeral = list(old, "ephemeralContainers");
    list(pod, "ephemeralContainers").iter().any(|c| {
        match old_ephemeral.iter().find(|o| o["name"] == c["name"]) {
            None => true,
            Some(o) => o["image"] != c["image"],
        }
    })
}

/// The warnings of a namespace's new enforce level over its existing pods (upstream
/// `EvaluatePodsInNamespace`): one line per distinct set of reasons naming the first pod
/// (by name) and how many others share it; pods of one controller after the others,
/// at most [`NAMESPACE_MAX_PODS_TO_CHECK`] evaluated.
pub fn evaluate_pods_in_namespace(
    namespace: &str,
    enforce: LevelVersion,
    pods: &[&Value],
) -> Vec<String> {
    // One pod per controller first, then the controllers' other pods.
    let mut seen_controllers = Vec::new();
    let mut prioritized = Vec::new();
    let mut duplicates = Vec::new();
    for pod in pods {
        let controller = pod["metadata"]["ownerReferences"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|r| r["controller"] == Value::Bool(true))
            .map(|r| r["uid"].clone());
        match controller {
            None => prioritized.push(*pod),
            Some(uid) if seen_controllers.contains(&uid) => duplicates.push(*pod),
            Some(uid) => {
                seen_controllers.push(uid);
                prioritized.push(*pod);
            }
        }
    }
    prioritized.extend(duplicates);
    let total = prioritized.len();
    prioritized.truncate(NAMESPACE_MAX_PODS_TO_CHECK);
    let checked = prioritized.len();
    let mut order: Vec<String> = Vec::new();
    let mut counts: HashMap<String, (String, usize)> = HashMap::new();
    for pod in prioritized {
        let results = evaluate(enforce, &pod["metadata"], &pod["spec"]);
        if results.is_empty() {
            continue;
        }
        let warning = forbidden_reason(&results);
        let name = pod["metadata"]["name"].as_str().unwrap_or("").to_string();
        match counts.get_mut(&warning) {
            None => {
                order.push(warning.clone());
                counts.insert(warning, (name, 1));
            }
            Some((first, count)) => {
                if name < *first {
                    *first = name;
                }
                *count += 1;
            }
        }
    }
    let mut warnings = Vec::new();
    if checked < total {
        warnings.push(format!(
            "new PodSecurity enforce level only checked against the first {checked} of {total} existing pods"
        ));
    }
    if !order.is_empty() {
        warnings.push(format!(
            "existing pods in namespace {} violate the new PodSecurity enforce level {}",
            crate::api::validation::go_quote(namespace),
            crate::api::validation::go_quote(&enforce.to_string())
        ));
    }
    let mut pod_warnings: Vec<String> = order
        .into_iter()
        .map(|warning| {
            let (name, count) = &counts[&warning];
            match count {
                1 => format!("{name}: {warning}"),
                2 => format!("{name} (and 1 other pod): {warning}"),
                n => format!("{name} (and {} other pods): {warning}", n - 1),
            }
        })
        .collect();
    pod_warnings.sort();
    warnings.extend(pod_warnings);
    warnings
}
