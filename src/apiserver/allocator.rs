//! Service ClusterIP and NodePort allocation (in memory, rebuilt from stored Services at start).

use std::collections::HashSet;
use std::net::Ipv4Addr;
use std::sync::Mutex;

use ipnet::Ipv4Net;
use rand::Rng;

/// The default NodePort range, as upstream.
pub const NODE_PORT_RANGE: (u16, u16) = (30000, 32767);

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AllocError {
    #[error("provided IP is not in the valid range. The range of valid IPs is {range}")]
    IpOutOfRange { range: String },
    #[error("provided IP is already allocated")]
    IpTaken,
    #[error("range is full")]
    IpRangeFull,
    #[error("provided port is not in the valid range. The range of valid ports is {lo}-{hi}")]
    PortOutOfRange { lo: u16, hi: u16 },
    #[error("provided port is already allocated")]
    PortTaken,
    #[error("range is full")]
    PortRangeFull,
}

pub struct Allocators {
    service_cidr: Ipv4Net,
    node_ports: (u16, u16),
    ips: Mutex<HashSet<Ipv4Addr>>,
    ports: Mutex<HashSet<(u16, String)>>,
}

impl Allocators {
    pub fn new(service_cidr: Ipv4Net, node_ports: (u16, u16)) -> Allocators {
        Allocators {
            service_cidr,
            node_ports,
            ips: Mutex::new(HashSet::new()),
            ports: Mutex::new(HashSet::new()),
        }
    }

    /// The first usable address of the service range (the `kubernetes` Service's IP).
    pub fn first_ip(&self) -> Ipv4Addr {
        let base = u32::from(self.service_cidr.network());
        Ipv4Addr::from(base + 1)
    }

    fn usable(&self) -> (u32, u32) {
        let lo = u32::from(self.service_cidr.network()) + 1;
        let hi = u32::from(self.service_cidr.broadcast()).saturating_sub(1);
        (lo, hi)
    }

    /// Reserves a specific IP, or a random free one when `requested` is None.
    pub fn allocate_ip(&self, requested: Option<Ipv4Addr>) -> Result<Ipv4Addr, AllocError> {
        let mut ips = self.ips.lock().unwrap_or_else(|e| e.into_inner());
        let (lo, hi) = self.usable();
        if let Some(ip) = requested {
            let n = u32::from(ip);
            if n < lo || n > hi {
                return Err(AllocError::IpOutOfRange {
                    range: self.service_cidr.to_string(),
                });
            }
            if !ips.insert(ip) {
                return Err(AllocError::IpTaken);
            }
            return Ok(ip);
        }
        let size = hi - lo + 1;
        // Dynamic allocation avoids the first address (reserved for the API server's Service).
        let start = rand::thread_rng().gen_range(0..size);
        for i in 0..size {
            let ip = Ipv4Addr::from(lo + (start + i) % size);
            if ip == self.first_ip() {
                continue;
            }
            if ips.insert(ip) {
                return Ok(ip);
            }
        }
        Err(AllocError::IpRangeFull)
    }

    pub fn release_ip(&self, ip: Ipv4Addr) {
        self.ips
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&ip);
    }

    /// Reserves a NodePort for `protocol`, or a random free one when `requested` is None.
    pub fn allocate_port(&self, requested: Option<u16>, protocol: &str) -> Result<u16, AllocError> {
        let mut ports = self.ports.lock().unwrap_or_else(|e| e.into_inner());
        let (lo, hi) = self.node_ports;
        if let Some(p) = requested {
            if p < lo || p > hi {
                return Err(AllocError::PortOutOfRange { lo, hi });
            }
            if !ports.insert((p, protocol.to_string())) {
                return Err(AllocError::PortTaken);
            }
            return Ok(p);
        }
        let size = (hi - lo) as u32 + 1;
        let start = rand::thread_rng().gen_range(0..size);
        for i in 0..size {
            let p = lo + ((start + i) % size) as u16;
            if ports.insert((p, protocol.to_string())) {
                return Ok(p);
            }
        }
        Err(AllocError::PortRangeFull)
    }

    pub fn release_port(&self, port: u16, protocol: &str) {
        self.ports
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .remove(&(port, protocol.to_string()));
    }

    pub fn service_cidr(&self) -> Ipv4Net {
        self.service_cidr
    }

    pub fn node_port_range(&self) -> (u16, u16) {
        self.node_ports
    }
}

/// ClusterIPs and NodePorts held by one object: what a write reserved (released again
/// when the write does not happen) or what a stored object holds (released when it goes).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Reservation {
    pub ips: Vec<Ipv4Addr>,
    /// NodePorts with their protocol.
    pub ports: Vec<(u16, String)>,
}

impl Reservation {
    pub fn release(&self, allocators: &Allocators) {
        for ip in &self.ips {
            allocators.release_ip(*ip);
        }
        for (port, protocol) in &self.ports {
            allocators.release_port(*port, protocol);
        }
    }

    /// Reserves everything again (a stored object after a restart); returns what could
    /// not be had because another object holds it or it is out of range.
    pub fn reclaim(&self, allocators: &Allocators) -> Vec<AllocError> {
        let ips = self
            .ips
            .iter()
            .map(|ip| allocators.allocate_ip(Some(*ip)).err());
        let ports = self
            .ports
            .iter()
            .map(|(port, protocol)| allocators.allocate_port(Some(*port), protocol).err());
        ips.chain(ports).flatten().collect()
    }

    /// What `self` holds that `other` does not.
    pub fn minus(self, other: &Reservation) -> Reservation {
        Reservation {
            ips: self
                .ips
                .into_iter()
                .filter(|ip| !other.ips.contains(ip))
                .collect(),
            ports: self
                .ports
                .into_iter()
                .filter(|p| !other.ports.contains(p))
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alloc() -> Allocators {
        Allocators::new("10.43.0.0/29".parse().unwrap(), (30000, 30002))
    }

    #[test]
    fn ip_allocation_refuses_taken_and_out_of_range_addresses() {
        let a = alloc();
        let ip: Ipv4Addr = "10.43.0.5".parse().unwrap();
        assert_eq!(a.allocate_ip(Some(ip)), Ok(ip));
        assert_eq!(a.allocate_ip(Some(ip)), Err(AllocError::IpTaken));
        assert!(matches!(
            a.allocate_ip(Some("10.44.0.1".parse().unwrap())),
            Err(AllocError::IpOutOfRange { .. })
        ));
        a.release_ip(ip);
        assert_eq!(a.allocate_ip(Some(ip)), Ok(ip));
    }

    #[test]
    fn dynamic_ips_skip_the_first_address_until_the_range_is_full() {
        let a = alloc();
        let mut got = HashSet::new();
        // /29: .1-.6 usable, .1 reserved → five dynamic addresses.
        for _ in 0..5 {
            let ip = a.allocate_ip(None).unwrap();
            assert_ne!(ip, a.first_ip());
            assert!(got.insert(ip));
        }
        assert_eq!(a.allocate_ip(None), Err(AllocError::IpRangeFull));
    }

    #[test]
    fn node_ports_are_unique_per_protocol() {
        let a = alloc();
        assert_eq!(a.allocate_port(Some(30001), "TCP"), Ok(30001));
        assert_eq!(
            a.allocate_port(Some(30001), "TCP"),
            Err(AllocError::PortTaken)
        );
        assert_eq!(a.allocate_port(Some(30001), "UDP"), Ok(30001));
        assert!(matches!(
            a.allocate_port(Some(80), "TCP"),
            Err(AllocError::PortOutOfRange { .. })
        ));
        let p1 = a.allocate_port(None, "TCP").unwrap();
        let p2 = a.allocate_port(None, "TCP").unwrap();
        assert_ne!(p1, p2);
        assert_eq!(a.allocate_port(None, "TCP"), Err(AllocError::PortRangeFull));
    }

    #[test]
    fn a_released_reservation_frees_its_ips_and_ports() {
        let a = alloc();
        let ip: Ipv4Addr = "10.43.0.5".parse().unwrap();
        let held = Reservation {
            ips: vec![ip],
            ports: vec![(30001, "TCP".to_string())],
        };
        assert!(held.reclaim(&a).is_empty());
        assert_eq!(
            held.reclaim(&a),
            vec![AllocError::IpTaken, AllocError::PortTaken]
        );
        held.release(&a);
        assert_eq!(a.allocate_ip(Some(ip)), Ok(ip));
        assert_eq!(a.allocate_port(Some(30001), "TCP"), Ok(30001));
    }

    #[test]
    fn minus_keeps_only_what_the_other_does_not_hold() {
        let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
        let old = Reservation {
            ips: vec![ip("10.43.0.2")],
            ports: vec![(30000, "TCP".into()), (30001, "TCP".into())],
        };
        let new = Reservation {
            ips: vec![ip("10.43.0.2")],
            ports: vec![(30001, "TCP".into())],
        };
        assert_eq!(
            old.minus(&new),
            Reservation {
                ips: vec![],
                ports: vec![(30000, "TCP".into())]
            }
        );
    }
}
