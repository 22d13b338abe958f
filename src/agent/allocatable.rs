//! What a node offers to pods: capacity minus `--system-reserved`, `--kube-reserved` and
//! the hard eviction threshold for memory (upstream's node allocatable formula), and
//! `--max-pods`. Parsing of the reservation flags; no I/O.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::api::quantity::{Format, Quantity};

/// Upstream's default `--max-pods`.
pub const DEFAULT_MAX_PODS: u32 = 110;
/// Resources a reservation may name (as upstream's kubelet accepts).
const RESERVABLE: [&str; 4] = ["cpu", "memory", "ephemeral-storage", "pid"];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReservationError {
    #[error("{flag} {value:?}: {reason}")]
    Invalid {
        flag: &'static str,
        value: String,
        reason: String,
    },
}

/// Resources held back from pods, by resource name (`cpu`, `memory`, …).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reserved(pub BTreeMap<String, Quantity>);

impl Reserved {
    /// Parses a reservation flag's value, `cpu=100m,memory=100Mi` (empty: nothing);
    /// errors name `flag`.
    pub fn parse(flag: &'static str, value: &str) -> Result<Reserved, ReservationError> {
        let invalid = |reason: String| ReservationError::Invalid {
            flag,
            value: value.to_string(),
            reason,
        };
        let mut out = BTreeMap::new();
        for item in value.split(',').map(str::trim).filter(|i| !i.is_empty()) {
            let (name, amount) = item
                .split_once('=')
                .ok_or_else(|| invalid(format!("{item:?} is not name=quantity")))?;
            let name = name.trim();
            if !RESERVABLE.contains(&name) {
                return Err(invalid(format!(
                    "cannot reserve {name:?}: only {}",
                    RESERVABLE.join(", ")
                )));
            }
            let q: Quantity = amount
                .trim()
                .parse()
                .map_err(|e| invalid(format!("{name}: {e}")))?;
            if q.is_negative() {
                return Err(invalid(format!("{name}: must not be negative")));
            }
            if out.insert(name.to_string(), q).is_some() {
                return Err(invalid(format!("{name} given twice")));
            }
        }
        Ok(Reserved(out))
    }

    fn get(&self, name: &str) -> Option<&Quantity> {
        self.0.get(name)
    }
}

/// How much of this node is not for pods.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeAllocation {
    pub system_reserved: Reserved,
    pub kube_reserved: Reserved,
    /// The `memory.available` hard eviction threshold (upstream subtracts it too);
    /// `None` while no eviction threshold is configured.
    pub eviction_hard_memory: Option<Quantity>,
    pub max_pods: u32,
}

impl Default for NodeAllocation {
    fn default() -> Self {
        NodeAllocation {
            system_reserved: Reserved::default(),
            kube_reserved: Reserved::default(),
            eviction_hard_memory: None,
            max_pods: DEFAULT_MAX_PODS,
        }
    }
}

impl NodeAllocation {
    /// What is held back of resource `name`.
    fn held_back(&self, name: &str) -> Option<Quantity> {
        let mut total: Option<Quantity> = None;
        let extra = (name == "memory")
            .then_some(self.eviction_hard_memory.as_ref())
            .flatten();
        for q in [
            self.system_reserved.get(name),
            self.kube_reserved.get(name),
            extra,
        ]
        .into_iter()
        .flatten()
        {
            total = Some(match total {
                None => *q,
                Some(t) => t.checked_add(q).unwrap_or(t),
            });
        }
        total
    }

    /// `status.capacity` and `status.allocatable` of a node with `cpus` CPUs and
    /// `memory_ki` KiB of memory: allocatable never goes below zero.
    pub fn capacity_and_allocatable(&self, cpus: usize, memory_ki: u64) -> (Value, Value) {
        let cpu = Quantity::from_units(cpus as i64, Format::DecimalSI);
        let memory: Quantity = format!("{memory_ki}Ki").parse().expect("a valid quantity");
        let pods = self.max_pods.to_string();
        let capacity = json!({"cpu": cpu.to_string(), "memory": memory.to_string(), "pods": pods});
        let minus = |q: Quantity, name: &str| match self.held_back(name) {
            None => q.to_string(),
            Some(held) => match q.checked_sub(&held) {
                Some(left) if !left.is_negative() => left.to_string(),
                _ => "0".to_string(),
            },
        };
        let allocatable = json!({
            "cpu": minus(cpu, "cpu"),
            "memory": minus(memory, "memory"),
            "pods": pods,
        });
        (capacity, allocatable)
    }

    /// The node's memory in bytes, for the pods' OOM scores.
    pub fn memory_bytes(memory_ki: u64) -> u64 {
        memory_ki.saturating_mul(1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_parse_as_upstreams_flags() {
        let r = Reserved::parse("--system-reserved", "cpu=100m, memory=100Mi").unwrap();
        assert_eq!(r.0["cpu"].milli_value(), 100);
        assert_eq!(r.0["memory"].value(), 100 << 20);
        assert_eq!(
            Reserved::parse("--kube-reserved", "").unwrap(),
            Reserved::default()
        );
        let e = Reserved::parse("--kube-reserved", "memory=lots").unwrap_err();
        assert!(
            e.to_string()
                .starts_with("--kube-reserved \"memory=lots\": memory:"),
            "{e}"
        );
        let e = Reserved::parse("--system-reserved", "gpu=1").unwrap_err();
        assert!(e.to_string().contains("cannot reserve \"gpu\""), "{e}");
        let e = Reserved::parse("--system-reserved", "cpu").unwrap_err();
        assert!(e.to_string().contains("not name=quantity"), "{e}");
        let e = Reserved::parse("--system-reserved", "cpu=-1").unwrap_err();
        assert!(e.to_string().contains("negative"), "{e}");
        let e = Reserved::parse("--system-reserved", "cpu=1,cpu=2").unwrap_err();
        assert!(e.to_string().contains("twice"), "{e}");
    }

    #[test]
    fn allocatable_is_capacity_minus_reservations_and_eviction_threshold() {
        let alloc = NodeAllocation {
            system_reserved: Reserved::parse("s", "cpu=100m,memory=100Mi").unwrap(),
            kube_reserved: Reserved::parse("k", "cpu=150m,memory=128Mi").unwrap(),
            eviction_hard_memory: Some("100Mi".parse().unwrap()),
            max_pods: 20,
        };
        // A 1 GB Pi: 4 CPUs, 948Mi of memory.
        let (cap, allocatable) = alloc.capacity_and_allocatable(4, 948 * 1024);
        assert_eq!(cap, json!({"cpu": "4", "memory": "948Mi", "pods": "20"}));
        assert_eq!(
            allocatable,
            json!({"cpu": "3750m", "memory": "620Mi", "pods": "20"})
        );
    }

    #[test]
    fn nothing_reserved_leaves_allocatable_equal_to_capacity_and_never_negative() {
        let (cap, allocatable) = NodeAllocation::default().capacity_and_allocatable(2, 8000000);
        assert_eq!(cap, allocatable);
        assert_eq!(
            cap,
            json!({"cpu": "2", "memory": "8000000Ki", "pods": "110"})
        );
        let greedy = NodeAllocation {
            kube_reserved: Reserved::parse("k", "cpu=3,memory=1Gi").unwrap(),
            ..Default::default()
        };
        let (_, allocatable) = greedy.capacity_and_allocatable(2, 1024);
        assert_eq!(allocatable["cpu"], "0");
        assert_eq!(allocatable["memory"], "0");
    }
}
