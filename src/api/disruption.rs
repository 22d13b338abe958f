//! PodDisruptionBudget arithmetic without I/O, shared by the disruption controller and
//! the `pods/eviction` subresource: which pods a budget covers, how many must stay
//! healthy (upstream `getExpectedPodCount`, percentages rounded up), healthy counts
//! with pods already promised to an eviction, and the status with its
//! `DisruptionAllowed` condition.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde_json::{json, Map, Value};

use super::object;
use super::selector::LabelSelector;

/// How long a pod listed in `status.disruptedPods` is counted as going away: an
/// eviction that has not deleted it by then is assumed to have failed (upstream
/// `DeletionTimeout`).
pub const DELETION_TIMEOUT: chrono::Duration = chrono::Duration::minutes(2);

/// The condition the controller keeps on every budget.
pub const DISRUPTION_ALLOWED: &str = "DisruptionAllowed";
pub const SUFFICIENT_PODS: &str = "SufficientPods";
pub const INSUFFICIENT_PODS: &str = "InsufficientPods";
pub const SYNC_FAILED: &str = "SyncFailed";

/// `unhealthyPodEvictionPolicy: AlwaysAllow`.
pub const ALWAYS_ALLOW: &str = "AlwaysAllow";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DisruptionError {
    #[error("invalid value for IntOrString: invalid value {0:?}")]
    InvalidIntOrPercent(String),
    #[error("found no controllers for pod {0:?}")]
    NoController(String),
}

/// The pods a budget covers, as the controller selects them (policy/v1: a missing
/// selector covers nothing, an empty one every pod of the namespace).
#[derive(Debug, Clone)]
pub enum Coverage {
    Nothing,
    Selected(LabelSelector),
}

impl Coverage {
    pub fn matches(&self, pod: &Value) -> bool {
        match self {
            Coverage::Nothing => false,
            Coverage::Selected(sel) => sel.matches(object::labels(pod)),
        }
    }
}

/// The budget's [`Coverage`]; `None` when its selector does not parse.
pub fn controller_selector(pdb: &Value) -> Option<Coverage> {
    let sel = &pdb["spec"]["selector"];
    if !sel.is_object() {
        return Some(Coverage::Nothing);
    }
    LabelSelector::from_k8s(sel).ok().map(Coverage::Selected)
}

/// Whether a budget guards `pod` for the eviction subresource: there a missing or empty
/// selector covers nothing ("it should match nothing, not everything", upstream).
pub fn eviction_covers(pdb: &Value, pod: &Value) -> bool {
    match LabelSelector::from_k8s(&pdb["spec"]["selector"]) {
        Ok(sel) if pdb["spec"]["selector"].is_object() && !sel.is_empty() => {
            sel.matches(object::labels(pod))
        }
        _ => false,
    }
}

/// Upstream `IsPodReady`: the pod's Ready condition is True.
pub fn is_pod_ready(pod: &Value) -> bool {
    pod["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| c["type"] == "Ready" && c["status"] == "True")
}

/// Upstream `GetScaledValueFromIntOrPercent`: an integer as is, `N%` of `total`
/// (rounded up or down).
pub fn scaled_value(v: &Value, total: i32, round_up: bool) -> Result<i32, DisruptionError> {
    match v {
        Value::Number(n) => n
            .as_i64()
            .and_then(|n| i32::try_from(n).ok())
            .ok_or_else(|| DisruptionError::InvalidIntOrPercent(n.to_string())),
        Value::String(s) => {
            let percent: i64 = s
                .strip_suffix('%')
                .and_then(|d| d.parse().ok())
                .ok_or_else(|| DisruptionError::InvalidIntOrPercent(s.clone()))?;
            let scaled = percent * i64::from(total);
            let value = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            Ok(value as i32)
        }
        other => Err(DisruptionError::InvalidIntOrPercent(other.to_string())),
    }
}

/// Whether the budget's bound is relative to its pods' controllers' scale
/// (`maxUnavailable`, or `minAvailable` as a percentage) rather than to its pod count.
pub fn needs_controller_scale(pdb: &Value) -> bool {
    let spec = &pdb["spec"];
    !spec["maxUnavailable"].is_null() || spec["minAvailable"].is_string()
}

/// `(expectedPods, desiredHealthy)` of a budget covering `pod_count` pods whose
/// controllers want `scale` pods in all (needed when [`needs_controller_scale`]).
pub fn expected_and_desired(
    pdb: &Value,
    pod_count: i32,
    scale: i32,
) -> Result<(i32, i32), DisruptionError> {
    let spec = &pdb["spec"];
    if !spec["maxUnavailable"].is_null() {
        let max_unavailable = scaled_value(&spec["maxUnavailable"], scale, true)?;
        return Ok((scale, (scale - max_unavailable).max(0)));
    }
    match &spec["minAvailable"] {
        Value::Null => Ok((0, 0)),
        min @ Value::String(_) => Ok((scale, scaled_value(min, scale, true)?)),
        min => Ok((pod_count, scaled_value(min, pod_count, true)?)),
    }
}

/// The entries of `status.disruptedPods` still pending: pods of `pods` not yet being
/// deleted whose eviction is younger than [`DELETION_TIMEOUT`]; and when the earliest of
/// them expires (to look again then). Expired entries are dropped (their pods were not
/// deleted after all); `expired` names them.
pub struct DisruptedPods {
    pub pending: BTreeMap<String, String>,
    pub recheck_at: Option<DateTime<Utc>>,
    pub expired: Vec<String>,
}

pub fn disrupted_pods(pdb: &Value, pods: &[&Value], now: DateTime<Utc>) -> DisruptedPods {
    let listed = pdb["status"]["disruptedPods"].as_object();
    let mut out = DisruptedPods {
        pending: BTreeMap::new(),
        recheck_at: None,
        expired: Vec::new(),
    };
    let Some(listed) = listed else { return out };
    for pod in pods.iter().filter(|p| !object::is_deleting(p)) {
        let name = object::name(pod);
        let Some(at) = listed.get(name) else { continue };
        let Some(when) = at.as_str().and_then(parse_time) else {
            continue;
        };
        let expected_deletion = when + DELETION_TIMEOUT;
        if expected_deletion < now {
            out.expired.push(name.to_string());
        } else {
            out.recheck_at = Some(match out.recheck_at {
                Some(r) if r < expected_deletion => r,
                _ => expected_deletion,
            });
            out.pending
                .insert(name.to_string(), at.as_str().unwrap_or("").to_string());
        }
    }
    out
}

fn parse_time(s: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(s)
        .ok()
        .map(|t| t.with_timezone(&Utc))
}

/// Upstream `countHealthyPods`: ready pods that are neither being deleted nor promised
/// to a pending eviction.
pub fn count_healthy(
    pods: &[&Value],
    disrupted: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> i32 {
    pods.iter()
        .filter(|p| !object::is_deleting(p))
        .filter(|p| {
            disrupted
                .get(object::name(p))
                .and_then(|t| parse_time(t))
                .is_none_or(|t| t + DELETION_TIMEOUT <= now)
        })
        .filter(|p| is_pod_ready(p))
        .count() as i32
}

/// The counts a budget's status is computed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub current_healthy: i32,
    pub desired_healthy: i32,
    pub expected_pods: i32,
}

impl Counts {
    /// Disruptions allowed: none while the budget expects no pods (its first pods may
    /// appear before the controller looked), else the healthy surplus.
    pub fn disruptions_allowed(&self) -> i32 {
        let allowed = self.current_healthy - self.desired_healthy;
        if self.expected_pods <= 0 || allowed <= 0 {
            0
        } else {
            allowed
        }
    }
}

/// Upstream `updatePdbStatus`: the new status of `pdb`, or `None` when the stored one
/// already says all of it.
pub fn next_status(
    pdb: &Value,
    counts: Counts,
    disrupted: &BTreeMap<String, String>,
    now: DateTime<Utc>,
) -> Option<Value> {
    let status = &pdb["status"];
    let generation = pdb["metadata"]["generation"].as_i64().unwrap_or(0);
    let allowed = counts.disruptions_allowed();
    let stored_disrupted: BTreeMap<String, String> = status["disruptedPods"]
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.as_str().unwrap_or("").to_string()))
                .collect()
        })
        .unwrap_or_default();
    let unchanged = status["currentHealthy"].as_i64() == Some(counts.current_healthy.into())
        && status["desiredHealthy"].as_i64() == Some(counts.desired_healthy.into())
        && status["expectedPods"].as_i64() == Some(counts.expected_pods.into())
        && status["disruptionsAllowed"].as_i64() == Some(allowed.into())
        && stored_disrupted == *disrupted
        && status["observedGeneration"].as_i64() == Some(generation)
        && conditions_up_to_date(status);
    if unchanged {
        return None;
    }
    let mut next = json!({
        "currentHealthy": counts.current_healthy,
        "desiredHealthy": counts.desired_healthy,
        "expectedPods": counts.expected_pods,
        "disruptionsAllowed": allowed,
        "observedGeneration": generation,
    });
    if !disrupted.is_empty() {
        next["disruptedPods"] = json!(disrupted);
    }
    next["conditions"] = status["conditions"].clone();
    update_disruption_allowed_condition(&mut next, now);
    Some(next)
}

/// Upstream `ConditionsAreUpToDate`: the DisruptionAllowed condition exists and was
/// written for the observed generation.
fn conditions_up_to_date(status: &Value) -> bool {
    status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["type"] == DISRUPTION_ALLOWED)
        .is_some_and(|c| c["observedGeneration"] == status["observedGeneration"])
}

/// Upstream `UpdateDisruptionAllowedCondition`: True/SufficientPods while disruptions
/// are allowed, else False/InsufficientPods.
pub fn update_disruption_allowed_condition(status: &mut Value, now: DateTime<Utc>) {
    let (value, reason) = if status["disruptionsAllowed"].as_i64().unwrap_or(0) > 0 {
        ("True", SUFFICIENT_PODS)
    } else {
        ("False", INSUFFICIENT_PODS)
    };
    set_condition(status, value, reason, "", now);
}

/// Upstream `failSafe`: no disruptions while the budget cannot be computed, with the
/// reason in the condition.
pub fn fail_safe(status: &mut Value, message: &str, now: DateTime<Utc>) {
    status["disruptionsAllowed"] = json!(0);
    set_condition(status, "False", SYNC_FAILED, message, now);
}

/// `meta.SetStatusCondition` for DisruptionAllowed: the transition time moves only when
/// the status does.
fn set_condition(status: &mut Value, value: &str, reason: &str, message: &str, now: DateTime<Utc>) {
    let generation = status["observedGeneration"].clone();
    let mut conditions: Vec<Value> = status["conditions"].as_array().cloned().unwrap_or_default();
    let existing = conditions
        .iter_mut()
        .find(|c| c["type"] == DISRUPTION_ALLOWED);
    let transition = match &existing {
        Some(c) if c["status"] == value => c["lastTransitionTime"].clone(),
        _ => json!(object::timestamp(now)),
    };
    let mut condition = Map::new();
    condition.insert("type".into(), json!(DISRUPTION_ALLOWED));
    condition.insert("status".into(), json!(value));
    if !generation.is_null() {
        condition.insert("observedGeneration".into(), generation);
    }
    condition.insert("lastTransitionTime".into(), transition);
    condition.insert("reason".into(), json!(reason));
    condition.insert("message".into(), json!(message));
    match existing {
        Some(c) => *c = Value::Object(condition),
        None => conditions.push(Value::Object(condition)),
    }
    status["conditions"] = json!(conditions);
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    fn now() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2024, 6, 1, 12, 0, 0).unwrap()
    }

    fn pdb(spec: Value) -> Value {
        json!({"metadata": {"name": "web", "namespace": "default", "generation": 1}, "spec": spec})
    }

    fn pod(name: &str, ready: bool) -> Value {
        json!({"metadata": {"name": name, "labels": {"app": "web"}},
               "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}})
    }

    #[test]
    fn percentages_of_the_expected_count_round_up() {
        assert_eq!(scaled_value(&json!("50%"), 3, true), Ok(2));
        assert_eq!(scaled_value(&json!("50%"), 3, false), Ok(1));
        assert_eq!(scaled_value(&json!("34%"), 3, true), Ok(2));
        assert_eq!(scaled_value(&json!("100%"), 7, true), Ok(7));
        assert_eq!(scaled_value(&json!("0%"), 7, true), Ok(0));
        assert_eq!(scaled_value(&json!(4), 7, true), Ok(4));
        assert!(scaled_value(&json!("x%"), 7, true).is_err());
    }

    #[test]
    fn expected_and_desired_follow_the_bound() {
        // minAvailable as a number: the pods present are expected.
        let p = pdb(json!({"minAvailable": 2}));
        assert!(!needs_controller_scale(&p));
        assert_eq!(expected_and_desired(&p, 3, 0), Ok((3, 2)));
        // minAvailable as a percentage of the controllers' scale, rounded up.
        let p = pdb(json!({"minAvailable": "50%"}));
        assert!(needs_controller_scale(&p));
        assert_eq!(expected_and_desired(&p, 2, 5), Ok((5, 3)));
        // maxUnavailable: scale minus the rounded-up share, never below 0.
        let p = pdb(json!({"maxUnavailable": "30%"}));
        assert_eq!(expected_and_desired(&p, 3, 4), Ok((4, 2)));
        let p = pdb(json!({"maxUnavailable": 9}));
        assert_eq!(expected_and_desired(&p, 3, 3), Ok((3, 0)));
        // Neither bound: nothing expected, nothing desired.
        assert_eq!(expected_and_desired(&pdb(json!({})), 3, 3), Ok((0, 0)));
    }

    #[test]
    fn disruptions_allowed_needs_expected_pods_and_a_surplus() {
        let c = |current, desired, expected| Counts {
            current_healthy: current,
            desired_healthy: desired,
            expected_pods: expected,
        };
        assert_eq!(c(3, 2, 3).disruptions_allowed(), 1);
        assert_eq!(c(2, 2, 3).disruptions_allowed(), 0);
        assert_eq!(c(1, 2, 3).disruptions_allowed(), 0);
        assert_eq!(c(3, 0, 0).disruptions_allowed(), 0);
    }

    #[test]
    fn healthy_counts_skip_unready_deleting_and_recently_evicted_pods() {
        let (a, b, c) = (pod("a", true), pod("b", false), pod("c", true));
        let mut d = pod("d", true);
        d["metadata"]["deletionTimestamp"] = json!("2024-06-01T11:59:00Z");
        let mut p = pdb(json!({"minAvailable": 1}));
        p["status"]["disruptedPods"] = json!({
            "c": object::timestamp(now() - chrono::Duration::seconds(30)),
            "a": object::timestamp(now() - chrono::Duration::minutes(5)),
            "gone": object::timestamp(now()),
        });
        let pods = [&a, &b, &c, &d];
        let disrupted = disrupted_pods(&p, &pods, now());
        assert_eq!(disrupted.pending.keys().collect::<Vec<_>>(), ["c"]);
        assert_eq!(disrupted.expired, ["a"]);
        assert_eq!(
            disrupted.recheck_at,
            Some(now() - chrono::Duration::seconds(30) + DELETION_TIMEOUT)
        );
        assert_eq!(count_healthy(&pods, &disrupted.pending, now()), 1);
    }

    #[test]
    fn status_carries_the_condition_and_is_unchanged_when_nothing_moved() {
        let mut p = pdb(json!({"minAvailable": 1}));
        let counts = Counts {
            current_healthy: 2,
            desired_healthy: 1,
            expected_pods: 2,
        };
        let status = next_status(&p, counts, &BTreeMap::new(), now()).expect("changed");
        assert_eq!(status["disruptionsAllowed"], 1);
        assert_eq!(status["observedGeneration"], 1);
        let cond = &status["conditions"][0];
        assert_eq!(
            (&cond["type"], &cond["status"], &cond["reason"]),
            (
                &json!("DisruptionAllowed"),
                &json!("True"),
                &json!("SufficientPods")
            )
        );
        p["status"] = status;
        assert_eq!(next_status(&p, counts, &BTreeMap::new(), now()), None);
        let fewer = Counts {
            current_healthy: 1,
            ..counts
        };
        let later = now() + chrono::Duration::seconds(10);
        let status = next_status(&p, fewer, &BTreeMap::new(), later).expect("changed");
        assert_eq!(status["conditions"][0]["reason"], "InsufficientPods");
        assert_eq!(
            status["conditions"][0]["lastTransitionTime"],
            object::timestamp(later)
        );
        let mut failed = status.clone();
        fail_safe(&mut failed, "found no controllers for pod \"x\"", later);
        assert_eq!(failed["conditions"][0]["reason"], "SyncFailed");
        assert_eq!(failed["conditions"].as_array().map(Vec::len), Some(1));
    }

    #[test]
    fn eviction_ignores_budgets_without_a_selector_but_the_controller_covers_all() {
        let a = pod("a", true);
        assert!(!eviction_covers(&pdb(json!({})), &a));
        assert!(!eviction_covers(&pdb(json!({"selector": {}})), &a));
        assert!(eviction_covers(
            &pdb(json!({"selector": {"matchLabels": {"app": "web"}}})),
            &a
        ));
        let all = controller_selector(&pdb(json!({"selector": {}}))).expect("parses");
        assert!(all.matches(&a));
        let none = controller_selector(&pdb(json!({}))).expect("parses");
        assert!(!none.matches(&a));
    }
}
