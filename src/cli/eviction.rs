//! The node-pressure eviction flags of `orc agent` and `orc server` (embedded agent),
//! upstream kubelet's names and defaults, turned into a checked `EvictionConfig`.

use std::path::PathBuf;
use std::time::Duration;

use crate::agent::eviction::thresholds::{self, parse_duration, FlagError, Thresholds};
use crate::agent::eviction::EvictionConfig;

#[derive(Debug, Clone, clap::Args)]
pub struct EvictionArgs {
    /// Hard eviction thresholds, signal<value separated by commas (memory.available,
    /// nodefs.available, nodefs.inodesFree, imagefs.available, imagefs.inodesFree,
    /// pid.available; value a quantity or a percentage). Replaces the defaults; empty
    /// disables hard eviction.
    #[arg(long, env = "ORC_EVICTION_HARD", default_value = thresholds::DEFAULT_EVICTION_HARD)]
    pub eviction_hard: String,
    /// Soft eviction thresholds, as --eviction-hard; each needs a grace period.
    #[arg(long, env = "ORC_EVICTION_SOFT", default_value = "")]
    pub eviction_soft: String,
    /// How long each soft threshold must hold before pods are evicted, e.g.
    /// memory.available=1m30s.
    #[arg(long, env = "ORC_EVICTION_SOFT_GRACE_PERIOD", default_value = "")]
    pub eviction_soft_grace_period: String,
    /// What must be free beyond a threshold before its pressure counts as relieved, e.g.
    /// nodefs.available=500Mi.
    #[arg(long, env = "ORC_EVICTION_MINIMUM_RECLAIM", default_value = "")]
    pub eviction_minimum_reclaim: String,
    /// Longest grace period, in seconds, of a pod evicted for a soft threshold (0: the
    /// pod's own).
    #[arg(long, env = "ORC_EVICTION_MAX_POD_GRACE_PERIOD", default_value = "0")]
    pub eviction_max_pod_grace_period: String,
    /// How long a pressure condition stays true after its threshold was last met.
    #[arg(
        long,
        env = "ORC_EVICTION_PRESSURE_TRANSITION_PERIOD",
        default_value = "5m"
    )]
    pub eviction_pressure_transition_period: String,
    /// How often the eviction signals are measured.
    #[arg(long, env = "ORC_EVICTION_MONITORING_INTERVAL", default_value = "10s")]
    pub eviction_monitoring_interval: String,
}

fn flag_error(flag: &'static str, value: &str, problem: String) -> FlagError {
    FlagError {
        flag,
        value: value.to_string(),
        problem,
    }
}

impl EvictionArgs {
    /// The hard `memory.available` threshold as a quantity in bytes, if one is set
    /// (subtracted from allocatable memory, as upstream).
    pub fn hard_memory_available(&self) -> Result<Option<i64>, FlagError> {
        let thresholds = Thresholds::parse(&self.eviction_hard, "", "", "")?;
        Ok(thresholds
            .0
            .iter()
            .find_map(|t| match (t.signal, t.value, t.grace_period.is_zero()) {
                (
                    thresholds::Signal::MemoryAvailable,
                    thresholds::ThresholdValue::Quantity(q),
                    true,
                ) => Some(q),
                _ => None,
            }))
    }

    /// The checked config; a malformed flag is a one-line error naming it. `containerd_root`
    /// (--containerd-root) holds the image filesystem the imagefs signals watch.
    pub fn into_config(self, containerd_root: PathBuf) -> Result<EvictionConfig, FlagError> {
        let thresholds = Thresholds::parse(
            &self.eviction_hard,
            &self.eviction_soft,
            &self.eviction_soft_grace_period,
            &self.eviction_minimum_reclaim,
        )?;
        let duration = |flag: &'static str, value: &str| {
            parse_duration(value.trim()).map_err(|p| flag_error(flag, value, p))
        };
        let max_grace: u64 = self
            .eviction_max_pod_grace_period
            .trim()
            .parse()
            .map_err(|_| {
                flag_error(
                    "eviction-max-pod-grace-period",
                    &self.eviction_max_pod_grace_period,
                    "expected a whole number of seconds".into(),
                )
            })?;
        let monitoring_interval = duration(
            "eviction-monitoring-interval",
            &self.eviction_monitoring_interval,
        )?;
        if monitoring_interval.is_zero() {
            return Err(flag_error(
                "eviction-monitoring-interval",
                &self.eviction_monitoring_interval,
                "must be longer than zero".into(),
            ));
        }
        Ok(EvictionConfig {
            thresholds,
            pressure_transition_period: duration(
                "eviction-pressure-transition-period",
                &self.eviction_pressure_transition_period,
            )?,
            max_pod_grace_period: Duration::from_secs(max_grace),
            monitoring_interval,
            containerd_root,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::eviction::DEFAULT_CONTAINERD_ROOT;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: EvictionArgs,
    }

    fn config(args: &[&str]) -> Result<EvictionConfig, FlagError> {
        let mut argv = vec!["orc"];
        argv.extend_from_slice(args);
        Wrapper::try_parse_from(argv)
            .unwrap()
            .args
            .into_config(PathBuf::from(DEFAULT_CONTAINERD_ROOT))
    }

    #[test]
    fn defaults_are_upstreams() {
        let c = config(&[]).unwrap();
        assert_eq!(c, EvictionConfig::default());
        assert_eq!(c.thresholds.0.len(), 4);
        assert_eq!(c.pressure_transition_period, Duration::from_secs(300));
        assert_eq!(c.monitoring_interval, Duration::from_secs(10));
    }

    #[test]
    fn flags_set_thresholds_and_periods() {
        let c = config(&[
            "--eviction-hard=memory.available<1000Ti",
            "--eviction-soft=nodefs.available<20%",
            "--eviction-soft-grace-period=nodefs.available=2m",
            "--eviction-pressure-transition-period=2s",
            "--eviction-monitoring-interval=500ms",
            "--eviction-max-pod-grace-period=15",
        ])
        .unwrap();
        assert_eq!(c.thresholds.0.len(), 2);
        assert_eq!(c.pressure_transition_period, Duration::from_secs(2));
        assert_eq!(c.monitoring_interval, Duration::from_millis(500));
        assert_eq!(c.max_pod_grace_period, Duration::from_secs(15));
        assert!(config(&["--eviction-hard="]).unwrap().thresholds.is_empty());
    }

    #[test]
    fn malformed_flags_give_one_line_naming_the_flag() {
        for (args, flag) in [
            (
                vec!["--eviction-hard=memory.available>1Gi"],
                "--eviction-hard",
            ),
            (
                vec!["--eviction-soft=memory.available<1Gi"],
                "--eviction-soft",
            ),
            (
                vec!["--eviction-pressure-transition-period=soon"],
                "--eviction-pressure-transition-period",
            ),
            (
                vec!["--eviction-monitoring-interval=0s"],
                "--eviction-monitoring-interval",
            ),
            (
                vec!["--eviction-max-pod-grace-period=-1"],
                "--eviction-max-pod-grace-period",
            ),
            (
                vec!["--eviction-minimum-reclaim=memory.available"],
                "--eviction-minimum-reclaim",
            ),
        ] {
            let e = config(&args).unwrap_err().to_string();
            assert!(e.starts_with(&format!("invalid {flag} ")), "{args:?}: {e}");
            assert!(!e.contains('\n'), "{e}");
        }
    }
}
