//! Eviction thresholds as upstream's kubelet reads them from `--eviction-hard`,
//! `--eviction-soft`, `--eviction-soft-grace-period` and `--eviction-minimum-reclaim`
//! (pkg/kubelet/eviction/helpers.go `ParseThresholdConfig`), and when one is met.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use crate::api::quantity::Quantity;

/// Upstream's `--eviction-hard` default.
pub const DEFAULT_EVICTION_HARD: &str =
    "memory.available<100Mi,nodefs.available<10%,imagefs.available<15%,nodefs.inodesFree<5%";

/// What an eviction threshold watches (upstream's `evictionapi.Signal`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Signal {
    MemoryAvailable,
    NodeFsAvailable,
    NodeFsInodesFree,
    ImageFsAvailable,
    ImageFsInodesFree,
    PidAvailable,
}

/// The node resource a signal measures; pressure on it is one node condition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Resource {
    Memory,
    Disk,
    Pids,
}

impl Signal {
    pub const ALL: [Signal; 6] = [
        Signal::MemoryAvailable,
        Signal::NodeFsAvailable,
        Signal::NodeFsInodesFree,
        Signal::ImageFsAvailable,
        Signal::ImageFsInodesFree,
        Signal::PidAvailable,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory.available",
            Signal::NodeFsAvailable => "nodefs.available",
            Signal::NodeFsInodesFree => "nodefs.inodesFree",
            Signal::ImageFsAvailable => "imagefs.available",
            Signal::ImageFsInodesFree => "imagefs.inodesFree",
            Signal::PidAvailable => "pid.available",
        }
    }

    pub fn parse(s: &str) -> Option<Signal> {
        Signal::ALL.into_iter().find(|sig| sig.name() == s)
    }

    /// The node condition the signal feeds (upstream `signalToNodeCondition`).
    pub fn resource(self) -> Resource {
        match self {
            Signal::MemoryAvailable => Resource::Memory,
            Signal::PidAvailable => Resource::Pids,
            _ => Resource::Disk,
        }
    }

    /// The name of the resource in upstream's eviction message (`signalToResource`).
    pub fn starved_resource(self) -> &'static str {
        match self {
            Signal::MemoryAvailable => "memory",
            Signal::NodeFsAvailable | Signal::ImageFsAvailable => "ephemeral-storage",
            Signal::NodeFsInodesFree | Signal::ImageFsInodesFree => "inodes",
            Signal::PidAvailable => "pids",
        }
    }

    /// Whether the signal counts bytes (printed as a binary quantity) rather than items.
    pub fn is_bytes(self) -> bool {
        matches!(
            self,
            Signal::MemoryAvailable | Signal::NodeFsAvailable | Signal::ImageFsAvailable
        )
    }
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A threshold's value: an absolute amount, or a share of the capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum ThresholdValue {
    Quantity(i64),
    /// 0.0 ..= 1.0
    Percentage(f64),
}

impl ThresholdValue {
    /// The amount this value stands for on a resource of `capacity`.
    pub fn amount(self, capacity: i64) -> i64 {
        match self {
            ThresholdValue::Quantity(q) => q,
            ThresholdValue::Percentage(p) => (p * capacity as f64).round() as i64,
        }
    }
}

/// One eviction threshold (upstream `evictionapi.Threshold`).
#[derive(Debug, Clone, PartialEq)]
pub struct Threshold {
    pub signal: Signal,
    pub value: ThresholdValue,
    /// How long the signal must stay past the threshold before pods are evicted;
    /// zero for hard thresholds.
    pub grace_period: Duration,
    /// What must be free beyond the threshold before it counts as resolved.
    pub min_reclaim: Option<ThresholdValue>,
    pub hard: bool,
}

/// All thresholds the agent enforces.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Thresholds(pub Vec<Threshold>);

/// A malformed eviction flag: the agent stops with it (one line naming the flag).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid --{flag} {value:?}: {problem}")]
pub struct FlagError {
    pub flag: &'static str,
    pub value: String,
    pub problem: String,
}

fn flag_error(flag: &'static str, value: &str, problem: impl Into<String>) -> FlagError {
    FlagError {
        flag,
        value: value.to_string(),
        problem: problem.into(),
    }
}

/// `signal<value,...` of `--eviction-hard` / `--eviction-soft`: the value of each signal
/// (`None` for upstream's `0%`/`100%`, which disable the signal).
fn parse_statements(
    flag: &'static str,
    value: &str,
) -> Result<BTreeMap<Signal, Option<ThresholdValue>>, FlagError> {
    let mut out = BTreeMap::new();
    for statement in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, amount)) = statement.split_once('<') else {
            let problem = if statement.contains(['>', '=']) {
                format!("{statement:?}: only the \"<\" operator is supported")
            } else {
                format!("{statement:?}: expected signal<value, e.g. memory.available<100Mi")
            };
            return Err(flag_error(flag, value, problem));
        };
        let signal = parse_signal(flag, value, name.trim())?;
        if out.contains_key(&signal) {
            return Err(flag_error(
                flag,
                value,
                format!("found duplicate eviction threshold for signal {signal}"),
            ));
        }
        let parsed = parse_value(amount.trim())
            .map_err(|p| flag_error(flag, value, format!("{signal}: {p}")))?;
        out.insert(signal, parsed);
    }
    Ok(out)
}

fn parse_signal(flag: &'static str, value: &str, name: &str) -> Result<Signal, FlagError> {
    Signal::parse(name).ok_or_else(|| {
        let known: Vec<&str> = Signal::ALL.iter().map(|s| s.name()).collect();
        flag_error(
            flag,
            value,
            format!(
                "unsupported eviction signal {name:?} (one of {})",
                known.join(", ")
            ),
        )
    })
}

/// A quantity (`100Mi`) or percentage (`10%`); `0%` and `100%` disable the threshold.
fn parse_value(s: &str) -> Result<Option<ThresholdValue>, String> {
    if let Some(number) = s.strip_suffix('%') {
        if s == "0%" || s == "100%" {
            return Ok(None);
        }
        let p: f64 = number
            .parse()
            .map_err(|_| format!("invalid percentage {s:?}"))?;
        if !(0.0..=100.0).contains(&p) {
            return Err(format!("percentage {s} must be >= 0% and <= 100%"));
        }
        return Ok(Some(ThresholdValue::Percentage(p / 100.0)));
    }
    let q: Quantity = s
        .parse()
        .map_err(|_| format!("invalid quantity {s:?}: use e.g. 100Mi or 10%"))?;
    if q.is_negative() || q.is_zero() {
        return Err(format!("threshold {s} must be positive"));
    }
    Ok(Some(ThresholdValue::Quantity(q.value())))
}

/// `signal=duration,...` of `--eviction-soft-grace-period`.
fn parse_grace_periods(value: &str) -> Result<BTreeMap<Signal, Duration>, FlagError> {
    const FLAG: &str = "eviction-soft-grace-period";
    let mut out = BTreeMap::new();
    for statement in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, d) = statement.split_once('=').ok_or_else(|| {
            flag_error(
                FLAG,
                value,
                format!("{statement:?}: expected signal=duration, e.g. memory.available=1m30s"),
            )
        })?;
        let signal = parse_signal(FLAG, value, name.trim())?;
        let d = parse_duration(d.trim()).map_err(|p| flag_error(FLAG, value, p))?;
        if out.insert(signal, d).is_some() {
            return Err(flag_error(
                FLAG,
                value,
                format!("found duplicate grace period for signal {signal}"),
            ));
        }
    }
    Ok(out)
}

/// `signal=amount,...` of `--eviction-minimum-reclaim`.
fn parse_min_reclaims(value: &str) -> Result<BTreeMap<Signal, ThresholdValue>, FlagError> {
    const FLAG: &str = "eviction-minimum-reclaim";
    let mut out = BTreeMap::new();
    for statement in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, amount) = statement.split_once('=').ok_or_else(|| {
            flag_error(
                FLAG,
                value,
                format!("{statement:?}: expected signal=amount, e.g. nodefs.available=500Mi"),
            )
        })?;
        let signal = parse_signal(FLAG, value, name.trim())?;
        let amount = amount.trim();
        let parsed = if let Some(number) = amount.strip_suffix('%') {
            let p: f64 = number
                .parse()
                .ok()
                .filter(|p| (0.0..=100.0).contains(p))
                .ok_or_else(|| {
                    flag_error(
                        FLAG,
                        value,
                        format!("{signal}: invalid percentage {amount:?}"),
                    )
                })?;
            ThresholdValue::Percentage(p / 100.0)
        } else {
            let q: Quantity = amount.parse().map_err(|_| {
                flag_error(
                    FLAG,
                    value,
                    format!("{signal}: invalid quantity {amount:?}"),
                )
            })?;
            if q.is_negative() {
                return Err(flag_error(
                    FLAG,
                    value,
                    format!("{signal}: minimum reclaim {amount} must not be negative"),
                ));
            }
            ThresholdValue::Quantity(q.value())
        };
        if out.insert(signal, parsed).is_some() {
            return Err(flag_error(
                FLAG,
                value,
                format!("found duplicate minimum reclaim for signal {signal}"),
            ));
        }
    }
    Ok(out)
}

/// A Go-style duration: `90s`, `5m`, `1m30s`, `1h`, `500ms`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    crate::api::duration::parse_go_duration(s, "30s, 5m or 1m30s")
}

impl Thresholds {
    /// The thresholds of the four flags (upstream `ParseThresholdConfig`): every soft
    /// threshold needs a grace period, every grace period and minimum reclaim a
    /// threshold of its signal.
    pub fn parse(
        hard: &str,
        soft: &str,
        soft_grace: &str,
        min_reclaim: &str,
    ) -> Result<Thresholds, FlagError> {
        let hard_values = parse_statements("eviction-hard", hard)?;
        let soft_values = parse_statements("eviction-soft", soft)?;
        let graces = parse_grace_periods(soft_grace)?;
        let reclaims = parse_min_reclaims(min_reclaim)?;
        for signal in graces.keys() {
            if !soft_values.contains_key(signal) {
                return Err(flag_error(
                    "eviction-soft-grace-period",
                    soft_grace,
                    format!(
                        "grace period given for {signal}, which has no --eviction-soft threshold"
                    ),
                ));
            }
        }
        for signal in reclaims.keys() {
            if !soft_values.contains_key(signal) && !hard_values.contains_key(signal) {
                return Err(flag_error(
                    "eviction-minimum-reclaim",
                    min_reclaim,
                    format!("minimum reclaim given for {signal}, which has no eviction threshold"),
                ));
            }
        }
        let mut out = Vec::new();
        for (signal, value) in hard_values {
            if let Some(value) = value {
                out.push(Threshold {
                    signal,
                    value,
                    grace_period: Duration::ZERO,
                    min_reclaim: reclaims.get(&signal).copied(),
                    hard: true,
                });
            }
        }
        for (signal, value) in soft_values {
            let grace = graces.get(&signal).copied().ok_or_else(|| {
                flag_error(
                    "eviction-soft",
                    soft,
                    format!("no grace period specified for soft eviction threshold {signal} (--eviction-soft-grace-period)"),
                )
            })?;
            if let Some(value) = value {
                out.push(Threshold {
                    signal,
                    value,
                    grace_period: grace,
                    min_reclaim: reclaims.get(&signal).copied(),
                    hard: false,
                });
            }
        }
        Ok(Thresholds(out))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether any threshold watches `signal`.
    pub fn watches(&self, signal: Signal) -> bool {
        self.0.iter().any(|t| t.signal == signal)
    }
}

/// What was measured of one signal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Observation {
    pub available: i64,
    pub capacity: i64,
}

/// Whether `threshold` is met by `observed`; with `with_min_reclaim`, whether it is still
/// unresolved (available below threshold + minimum reclaim), as upstream `thresholdsMet`.
pub fn is_met(threshold: &Threshold, observed: &Observation, with_min_reclaim: bool) -> bool {
    let mut wanted = threshold.value.amount(observed.capacity);
    if with_min_reclaim {
        if let Some(r) = threshold.min_reclaim {
            wanted = wanted.saturating_add(r.amount(observed.capacity));
        }
    }
    observed.available < wanted
}

/// An amount as upstream prints it in eviction messages: a canonical quantity, binary
/// for bytes (`100Mi`), decimal for item counts.
pub fn format_amount(signal: Signal, amount: i64) -> String {
    let format = if signal.is_bytes() {
        crate::api::quantity::Format::BinarySI
    } else {
        crate::api::quantity::Format::DecimalSI
    };
    Quantity::from_units(amount, format).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(hard: &str) -> Result<Thresholds, FlagError> {
        Thresholds::parse(hard, "", "", "")
    }

    #[test]
    fn upstreams_default_hard_thresholds_parse() {
        let th = t(DEFAULT_EVICTION_HARD).unwrap();
        assert_eq!(th.0.len(), 4);
        let mem =
            th.0.iter()
                .find(|t| t.signal == Signal::MemoryAvailable)
                .unwrap();
        assert_eq!(mem.value, ThresholdValue::Quantity(100 * 1024 * 1024));
        assert!(mem.hard);
        assert_eq!(mem.grace_period, Duration::ZERO);
        let nodefs =
            th.0.iter()
                .find(|t| t.signal == Signal::NodeFsAvailable)
                .unwrap();
        assert_eq!(nodefs.value, ThresholdValue::Percentage(0.1));
        assert!(th.watches(Signal::ImageFsAvailable));
        assert!(!th.watches(Signal::PidAvailable));
    }

    #[test]
    fn malformed_thresholds_name_the_flag_and_the_problem() {
        let e = t("memory.available>100Mi").unwrap_err();
        assert_eq!(e.flag, "eviction-hard");
        assert!(e
            .to_string()
            .starts_with("invalid --eviction-hard \"memory.available>100Mi\": "));
        assert!(e.problem.contains("only the \"<\" operator"), "{e}");
        assert!(t("memory.free<1Gi")
            .unwrap_err()
            .problem
            .contains("unsupported eviction signal \"memory.free\""));
        assert!(t("memory.available<lots")
            .unwrap_err()
            .problem
            .contains("invalid quantity"));
        assert!(t("memory.available<-1Mi")
            .unwrap_err()
            .problem
            .contains("must be positive"));
        assert!(t("nodefs.available<150%")
            .unwrap_err()
            .problem
            .contains("<= 100%"));
        assert!(t("memory.available<1Gi,memory.available<2Gi")
            .unwrap_err()
            .problem
            .contains("duplicate"));
        assert!(t("memory.available")
            .unwrap_err()
            .problem
            .contains("expected signal<value"));
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn zero_and_hundred_percent_disable_a_signal_and_empty_means_none() {
        assert!(t("nodefs.available<0%,imagefs.available<100%")
            .unwrap()
            .is_empty());
        assert!(t("").unwrap().is_empty());
    }

    #[test]
    fn soft_thresholds_need_a_grace_period_and_reclaims_need_a_threshold() {
        let e = Thresholds::parse("", "memory.available<1Gi", "", "").unwrap_err();
        assert_eq!(e.flag, "eviction-soft");
        assert!(e.problem.contains("no grace period specified"));
        let th = Thresholds::parse(
            "memory.available<100Mi",
            "memory.available<1Gi",
            "memory.available=1m30s",
            "memory.available=200Mi",
        )
        .unwrap();
        let soft = th.0.iter().find(|t| !t.hard).unwrap();
        assert_eq!(soft.grace_period, Duration::from_secs(90));
        assert_eq!(soft.min_reclaim, Some(ThresholdValue::Quantity(200 << 20)));
        let e = Thresholds::parse("", "", "", "nodefs.available=1Gi").unwrap_err();
        assert_eq!(e.flag, "eviction-minimum-reclaim");
        let e = Thresholds::parse("", "", "memory.available=10s", "").unwrap_err();
        assert_eq!(e.flag, "eviction-soft-grace-period");
        let e =
            Thresholds::parse("", "memory.available<1Gi", "memory.available=soon", "").unwrap_err();
        assert!(e.problem.contains("invalid duration"));
    }

    #[test]
    fn thresholds_are_met_below_the_value_and_resolved_past_the_minimum_reclaim() {
        let th = Thresholds::parse("nodefs.available<10%", "", "", "nodefs.available=5%")
            .unwrap()
            .0
            .remove(0);
        let obs = |available| Observation {
            available,
            capacity: 1000,
        };
        assert!(is_met(&th, &obs(99), false));
        assert!(!is_met(&th, &obs(100), false));
        assert!(is_met(&th, &obs(120), true), "not yet 10% + 5% free");
        assert!(!is_met(&th, &obs(150), true));
    }

    #[test]
    fn amounts_print_as_upstream_quantities() {
        assert_eq!(format_amount(Signal::MemoryAvailable, 100 << 20), "100Mi");
        assert_eq!(format_amount(Signal::MemoryAvailable, 2 << 30), "2Gi");
        assert_eq!(format_amount(Signal::NodeFsAvailable, 1536), "1536");
        assert_eq!(format_amount(Signal::NodeFsInodesFree, 2000), "2k");
        assert_eq!(format_amount(Signal::PidAvailable, 42), "42");
    }
}
