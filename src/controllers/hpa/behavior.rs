//! Upstream's normalization of a recommended replica count (pure, clock passed in):
//! the stabilization windows over past recommendations, the scale-up and scale-down
//! rate policies over past scale events (`spec.behavior`), or without a behavior the
//! legacy rules (5-minute scale-down window, at most doubling), and the conditions
//! each step reports.

use chrono::{DateTime, Duration, Utc};

/// Stabilization window for scale-downs without a behavior
/// (`--horizontal-pod-autoscaler-downscale-stabilization`).
pub const DOWNSCALE_STABILIZATION: Duration = Duration::minutes(5);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PolicyType {
    Pods,
    Percent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Policy {
    pub kind: PolicyType,
    pub value: i32,
    pub period_seconds: i32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelectPolicy {
    Max,
    Min,
    Disabled,
}

/// One direction of `spec.behavior`, with upstream's defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rules {
    pub stabilization_window_seconds: i32,
    pub select_policy: SelectPolicy,
    pub policies: Vec<Policy>,
}

/// `spec.behavior` with defaults filled in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Behavior {
    pub scale_up: Rules,
    pub scale_down: Rules,
}

impl Rules {
    /// Upstream's scale-up defaults: no window; the larger of 4 pods or 100 % per 15 s.
    pub fn default_scale_up() -> Rules {
        Rules {
            stabilization_window_seconds: 0,
            select_policy: SelectPolicy::Max,
            policies: vec![
                Policy {
                    kind: PolicyType::Pods,
                    value: 4,
                    period_seconds: 15,
                },
                Policy {
                    kind: PolicyType::Percent,
                    value: 100,
                    period_seconds: 15,
                },
            ],
        }
    }

    /// Upstream's scale-down defaults: a 300 s window; up to 100 % per 15 s.
    pub fn default_scale_down() -> Rules {
        Rules {
            stabilization_window_seconds: 300,
            select_policy: SelectPolicy::Max,
            policies: vec![Policy {
                kind: PolicyType::Percent,
                value: 100,
                period_seconds: 15,
            }],
        }
    }

    fn longest_period(&self) -> i64 {
        self.policies
            .iter()
            .map(|p| i64::from(p.period_seconds))
            .max()
            .unwrap_or(0)
    }
}

/// A condition the normalization reports: `(type, status, reason, message)`.
pub type Condition = (&'static str, bool, &'static str, String);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Recommendation {
    replicas: i32,
    at: DateTime<Utc>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct ScaleEvent {
    change: i32,
    at: DateTime<Utc>,
    outdated: bool,
}

/// What one autoscaler remembers between syncs: its recent recommendations and scale
/// events (in memory, as upstream's controller: a restart forgets them).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct History {
    recommendations: Vec<Recommendation>,
    scale_up_events: Vec<ScaleEvent>,
    scale_down_events: Vec<ScaleEvent>,
}

/// What normalization decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Normalized {
    pub replicas: i32,
    /// AbleToScale (stabilization) and ScalingLimited.
    pub conditions: Vec<Condition>,
}

/// The arguments of one normalization.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    pub min: i32,
    pub max: i32,
    pub current: i32,
}

fn changes_within(events: &[ScaleEvent], period_seconds: i32, now: DateTime<Utc>) -> i32 {
    let since = now - Duration::seconds(i64::from(period_seconds));
    events
        .iter()
        .filter(|e| e.at > since && !e.outdated)
        .map(|e| e.change)
        .sum()
}

impl History {
    /// Records a rescale from `from` to `to` (kept as long as the longest policy
    /// period of its direction needs it).
    pub fn record_scale(
        &mut self,
        behavior: Option<&Behavior>,
        from: i32,
        to: i32,
        now: DateTime<Utc>,
    ) {
        let Some(b) = behavior else {
            return;
        };
        let (events, rules, change) = if to > from {
            (&mut self.scale_up_events, &b.scale_up, to - from)
        } else {
            (&mut self.scale_down_events, &b.scale_down, from - to)
        };
        let cutoff = now - Duration::seconds(rules.longest_period());
        for e in events.iter_mut() {
            if e.at < cutoff {
                e.outdated = true;
            }
        }
        let event = ScaleEvent {
            change,
            at: now,
            outdated: false,
        };
        match events.iter_mut().find(|e| e.outdated) {
            Some(slot) => *slot = event,
            None => events.push(event),
        }
    }

    /// The legacy normalization (no `spec.behavior`): the highest recommendation of
    /// the last five minutes, then min/max and a scale-up limit of
    /// `max(2 × current, 4)`.
    pub fn normalize(&mut self, bounds: Bounds, desired: i32, now: DateTime<Utc>) -> Normalized {
        let cutoff = now - DOWNSCALE_STABILIZATION;
        let mut stabilized = desired;
        let mut reuse = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at < cutoff {
                reuse = Some(i);
            } else {
                stabilized = stabilized.max(r.replicas);
            }
        }
        let rec = Recommendation {
            replicas: desired,
            at: now,
        };
        match reuse {
            Some(i) => self.recommendations[i] = rec,
            None => self.recommendations.push(rec),
        }
        let mut conditions = vec![if stabilized != desired {
            (
                "AbleToScale",
                true,
                "ScaleDownStabilized",
                "recent recommendations were higher than current one, applying the highest recent recommendation".to_string(),
            )
        } else {
            (
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size".to_string(),
            )
        }];
        let scale_up_limit = (2 * bounds.current).max(4);
        let (max_allowed, reason, message) = if bounds.max > scale_up_limit {
            (
                scale_up_limit,
                "ScaleUpLimit",
                "the desired replica count is increasing faster than the maximum scale rate",
            )
        } else {
            (
                bounds.max,
                "TooManyReplicas",
                "the desired replica count is more than the maximum replica count",
            )
        };
        let (replicas, reason, message) = if stabilized < bounds.min {
            (
                bounds.min,
                "TooFewReplicas",
                "the desired replica count is less than the minimum replica count",
            )
        } else if stabilized > max_allowed {
            (max_allowed, reason, message)
        } else {
            (
                stabilized,
                "DesiredWithinRange",
                "the desired count is within the acceptable range",
            )
        };
        conditions.push((
            "ScalingLimited",
            replicas != stabilized,
            reason,
            message.to_string(),
        ));
        Normalized {
            replicas,
            conditions,
        }
    }

    /// The normalization with a behavior: stabilization windows in both directions,
    /// then the rate policies and min/max.
    pub fn normalize_with_behavior(
        &mut self,
        behavior: &Behavior,
        bounds: Bounds,
        desired: i32,
        now: DateTime<Utc>,
    ) -> Normalized {
        // Stabilization.
        let up_cutoff =
            now - Duration::seconds(i64::from(behavior.scale_up.stabilization_window_seconds));
        let down_cutoff =
            now - Duration::seconds(i64::from(behavior.scale_down.stabilization_window_seconds));
        let (mut up, mut down) = (desired, desired);
        let mut reuse = None;
        for (i, r) in self.recommendations.iter().enumerate() {
            if r.at > up_cutoff {
                up = up.min(r.replicas);
            }
            if r.at > down_cutoff {
                down = down.max(r.replicas);
            }
            if r.at < up_cutoff && r.at < down_cutoff {
                reuse = Some(i);
            }
        }
        let stabilized = bounds.current.max(up).min(down);
        let rec = Recommendation {
            replicas: desired,
            at: now,
        };
        match reuse {
            Some(i) => self.recommendations[i] = rec,
            None => self.recommendations.push(rec),
        }
        let mut conditions = vec![if stabilized != desired {
            if desired >= bounds.current {
                (
                    "AbleToScale",
                    true,
                    "ScaleUpStabilized",
                    "recent recommendations were lower than current one, applying the lowest recent recommendation".to_string(),
                )
            } else {
                (
                    "AbleToScale",
                    true,
                    "ScaleDownStabilized",
                    "recent recommendations were higher than current one, applying the highest recent recommendation".to_string(),
                )
            }
        } else {
            (
                "AbleToScale",
                true,
                "ReadyForNewScale",
                "recommended size matches current size".to_string(),
            )
        }];
        // Rates and bounds.
        let (replicas, reason, message) = if stabilized > bounds.current {
            let limit = self
                .scale_up_limit(&behavior.scale_up, bounds.current, now)
                .max(bounds.current);
            let (max_allowed, reason, message) = if bounds.max > limit {
                (
                    limit,
                    "ScaleUpLimit",
                    "the desired replica count is increasing faster than the maximum scale rate",
                )
            } else {
                (
                    bounds.max,
                    "TooManyReplicas",
                    "the desired replica count is more than the maximum replica count",
                )
            };
            if stabilized > max_allowed {
                (max_allowed, reason, message)
            } else {
                within(stabilized)
            }
        } else if stabilized < bounds.current {
            let limit = self
                .scale_down_limit(&behavior.scale_down, bounds.current, now)
                .min(bounds.current);
            let (min_allowed, reason, message) = if bounds.min < limit {
                (
                    limit,
                    "ScaleDownLimit",
                    "the desired replica count is decreasing faster than the maximum scale rate",
                )
            } else {
                (
                    bounds.min,
                    "TooFewReplicas",
                    "the desired replica count is less than the minimum replica count",
                )
            };
            if stabilized < min_allowed {
                (min_allowed, reason, message)
            } else {
                within(stabilized)
            }
        } else {
            within(stabilized)
        };
        conditions.push((
            "ScalingLimited",
            replicas != stabilized,
            reason,
            message.to_string(),
        ));
        Normalized {
            replicas,
            conditions,
        }
    }

    fn period_start(&self, policy: &Policy, current: i32, now: DateTime<Utc>) -> i32 {
        current - changes_within(&self.scale_up_events, policy.period_seconds, now)
            + changes_within(&self.scale_down_events, policy.period_seconds, now)
    }

    fn scale_up_limit(&self, rules: &Rules, current: i32, now: DateTime<Utc>) -> i32 {
        self.policy_limit(rules, current, now, true, |start, p| match p.kind {
            PolicyType::Pods => start.saturating_add(p.value),
            PolicyType::Percent => {
                (f64::from(start) * (1.0 + f64::from(p.value) / 100.0)).ceil() as i32
            }
        })
    }

    fn scale_down_limit(&self, rules: &Rules, current: i32, now: DateTime<Utc>) -> i32 {
        self.policy_limit(rules, current, now, false, |start, p| match p.kind {
            PolicyType::Pods => start - p.value,
            PolicyType::Percent => (f64::from(start) * (1.0 - f64::from(p.value) / 100.0)) as i32,
        })
    }

    /// The bound the policies allow (`propose` gives one policy's bound from the replicas
    /// at the start of its period): Min selects the smallest change — the lowest ceiling
    /// going up, the highest floor going down — and Max the largest.
    fn policy_limit(
        &self,
        rules: &Rules,
        current: i32,
        now: DateTime<Utc>,
        up: bool,
        propose: impl Fn(i32, &Policy) -> i32,
    ) -> i32 {
        let smallest_change = match rules.select_policy {
            SelectPolicy::Disabled => return current,
            SelectPolicy::Min => true,
            SelectPolicy::Max => false,
        };
        let (pick, none): (fn(i32, i32) -> i32, i32) = if smallest_change == up {
            (i32::min, i32::MAX)
        } else {
            (i32::max, i32::MIN)
        };
        rules
            .policies
            .iter()
            .map(|p| propose(self.period_start(p, current, now), p))
            .fold(none, pick)
    }
}

fn within(replicas: i32) -> (i32, &'static str, &'static str) {
    (
        replicas,
        "DesiredWithinRange",
        "the desired count is within the acceptable range",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_000_000 + secs, 0).unwrap()
    }

    fn defaults() -> Behavior {
        Behavior {
            scale_up: Rules::default_scale_up(),
            scale_down: Rules::default_scale_down(),
        }
    }

    fn bounds(current: i32) -> Bounds {
        Bounds {
            min: 1,
            max: 100,
            current,
        }
    }

    fn limited(n: &Normalized) -> (bool, &'static str) {
        let c = n
            .conditions
            .iter()
            .find(|c| c.0 == "ScalingLimited")
            .unwrap();
        (c.1, c.2)
    }

    #[test]
    fn default_scale_up_is_the_larger_of_four_pods_or_double_per_period() {
        let b = defaults();
        let mut h = History::default();
        let n = h.normalize_with_behavior(&b, bounds(1), 50, t(0));
        assert_eq!(n.replicas, 5, "1 + 4 pods beats 1 × 2");
        assert_eq!(limited(&n), (true, "ScaleUpLimit"));
        h.record_scale(Some(&b), 1, 5, t(0));
        // Within the same 15 s period the period started at 1: no more room.
        let n = h.normalize_with_behavior(&b, bounds(5), 50, t(5));
        assert_eq!(n.replicas, 5);
        // The next period: 5 → 10 (100 %) beats 5 + 4.
        let n = h.normalize_with_behavior(&b, bounds(5), 50, t(16));
        assert_eq!(n.replicas, 10);
    }

    #[test]
    fn scale_down_waits_for_the_stabilization_window() {
        let b = defaults();
        let mut h = History::default();
        assert_eq!(
            h.normalize_with_behavior(&b, bounds(4), 4, t(0)).replicas,
            4
        );
        let n = h.normalize_with_behavior(&b, bounds(4), 1, t(60));
        assert_eq!(
            n.replicas, 4,
            "a recommendation of 4 is inside the 300 s window"
        );
        assert_eq!(n.conditions[0].2, "ScaleDownStabilized");
        let n = h.normalize_with_behavior(&b, bounds(4), 1, t(301));
        assert_eq!(n.replicas, 1);
        assert_eq!(n.conditions[0].2, "ReadyForNewScale");
        assert_eq!(limited(&n), (false, "DesiredWithinRange"));
    }

    #[test]
    fn a_short_window_and_pod_policy_from_the_spec_apply() {
        let b = Behavior {
            scale_up: Rules::default_scale_up(),
            scale_down: Rules {
                stabilization_window_seconds: 5,
                select_policy: SelectPolicy::Max,
                policies: vec![Policy {
                    kind: PolicyType::Pods,
                    value: 1,
                    period_seconds: 10,
                }],
            },
        };
        let mut h = History::default();
        h.normalize_with_behavior(&b, bounds(4), 4, t(0));
        let n = h.normalize_with_behavior(&b, bounds(4), 1, t(10));
        assert_eq!(n.replicas, 3, "one pod per 10 s");
        assert_eq!(limited(&n), (true, "ScaleDownLimit"));
        h.record_scale(Some(&b), 4, 3, t(10));
        assert_eq!(
            h.normalize_with_behavior(&b, bounds(3), 1, t(15)).replicas,
            3
        );
        assert_eq!(
            h.normalize_with_behavior(&b, bounds(3), 1, t(21)).replicas,
            2
        );
    }

    #[test]
    fn disabled_policies_hold_the_count_and_bounds_still_apply() {
        let mut b = defaults();
        b.scale_up.select_policy = SelectPolicy::Disabled;
        let mut h = History::default();
        assert_eq!(
            h.normalize_with_behavior(&b, bounds(2), 9, t(0)).replicas,
            2
        );
        let n = h.normalize_with_behavior(
            &defaults(),
            Bounds {
                min: 1,
                max: 3,
                current: 2,
            },
            9,
            t(400),
        );
        assert_eq!(n.replicas, 3);
        assert_eq!(limited(&n), (true, "TooManyReplicas"));
    }

    #[test]
    fn without_behavior_the_legacy_rules_apply() {
        let mut h = History::default();
        let n = h.normalize(bounds(1), 10, t(0));
        assert_eq!(n.replicas, 4, "max(2 × 1, 4)");
        assert_eq!(limited(&n), (true, "ScaleUpLimit"));
        let n = h.normalize(bounds(4), 2, t(60));
        // The highest recommendation of the last 5 minutes (10), limited to 2 × 4.
        assert_eq!(n.replicas, 8);
        let n = h.normalize(bounds(4), 2, t(400));
        assert_eq!(n.replicas, 2);
        let n = h.normalize(
            Bounds {
                min: 3,
                max: 5,
                current: 4,
            },
            1,
            t(800),
        );
        assert_eq!(n.replicas, 3);
        assert_eq!(limited(&n), (true, "TooFewReplicas"));
    }
}
