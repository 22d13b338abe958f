//! A [`NetworkBackend`] that touches nothing and records its calls, and an in-memory IPAM
//! store, for unit tests.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use async_trait::async_trait;
use ipnet::Ipv4Net;

use super::{Ipam, IpamStore, NetworkBackend, PodInterface, Result, RouteSync};

/// One call made to a [`FakeNetwork`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NetCall {
    EnsureNode,
    CreateNetns(PathBuf),
    DeleteNetns(PathBuf),
    AttachPod {
        owner: String,
        netns: PathBuf,
        ip: Ipv4Addr,
    },
    DetachPod {
        owner: String,
        netns: PathBuf,
    },
    SyncRoutes(Vec<(Ipv4Net, Ipv4Addr)>),
    Uninstall,
}

/// Hands out addresses from an in-memory IPAM like the real one and records every call.
#[derive(Debug)]
pub struct FakeNetwork {
    calls: Mutex<Vec<NetCall>>,
    ipam: Mutex<Ipam<MemoryStore>>,
    routes: Mutex<Vec<(Ipv4Net, Ipv4Addr)>>,
    /// While set, plugging a pod in fails as without the node's bridge.
    bridge_missing: Mutex<bool>,
}

impl FakeNetwork {
    pub fn new(pod_cidr: Ipv4Net) -> Result<Self> {
        Ok(FakeNetwork {
            calls: Mutex::new(Vec::new()),
            ipam: Mutex::new(Ipam::with_store(MemoryStore::default(), pod_cidr)?),
            routes: Mutex::new(Vec::new()),
            bridge_missing: Mutex::new(false),
        })
    }

    /// The calls so far, oldest first.
    pub fn calls(&self) -> Vec<NetCall> {
        self.calls.lock().expect("fake network poisoned").clone()
    }

    /// The routes the last `sync_routes` asked for.
    pub fn routes(&self) -> Vec<(Ipv4Net, Ipv4Addr)> {
        self.routes.lock().expect("fake network poisoned").clone()
    }

    /// Makes [`NetworkBackend::attach_pod`] fail (as the real one does when the bridge
    /// is gone) until called again with `false`.
    pub fn set_bridge_missing(&self, missing: bool) {
        *self.bridge_missing.lock().expect("fake network poisoned") = missing;
    }

    fn record(&self, call: NetCall) {
        self.calls.lock().expect("fake network poisoned").push(call);
    }
}

#[async_trait]
impl NetworkBackend for FakeNetwork {
    async fn ensure_node(&self) -> Result<()> {
        self.record(NetCall::EnsureNode);
        Ok(())
    }

    async fn create_netns(&self, path: &Path) -> Result<()> {
        self.record(NetCall::CreateNetns(path.to_path_buf()));
        Ok(())
    }

    async fn delete_netns(&self, path: &Path) -> Result<()> {
        self.record(NetCall::DeleteNetns(path.to_path_buf()));
        Ok(())
    }

    fn allocate_pod_ip(&self, owner: &str) -> Result<Ipv4Addr> {
        self.ipam
            .lock()
            .expect("fake network poisoned")
            .allocate(owner)
    }

    async fn attach_pod(&self, pod: &PodInterface) -> Result<Ipv4Addr> {
        if *self.bridge_missing.lock().expect("fake network poisoned") {
            return Err(super::Error::BridgeMissing {
                name: super::DEFAULT_BRIDGE.into(),
            });
        }
        let ip = self
            .ipam
            .lock()
            .expect("fake network poisoned")
            .allocate(&pod.owner)?;
        self.record(NetCall::AttachPod {
            owner: pod.owner.clone(),
            netns: pod.netns.clone(),
            ip,
        });
        Ok(ip)
    }

    async fn detach_pod(&self, pod: &PodInterface) -> Result<()> {
        self.ipam
            .lock()
            .expect("fake network poisoned")
            .release(&pod.owner)?;
        self.record(NetCall::DetachPod {
            owner: pod.owner.clone(),
            netns: pod.netns.clone(),
        });
        Ok(())
    }

    fn pod_ip(&self, owner: &str) -> Option<Ipv4Addr> {
        self.ipam.lock().expect("fake network poisoned").get(owner)
    }

    async fn sync_routes(&self, desired: &[(Ipv4Net, Ipv4Addr)]) -> Result<RouteSync> {
        self.record(NetCall::SyncRoutes(desired.to_vec()));
        let mut routes = self.routes.lock().expect("fake network poisoned");
        let sync = RouteSync {
            added: desired
                .iter()
                .filter(|r| !routes.contains(r))
                .copied()
                .collect(),
            removed: routes
                .iter()
                .filter(|r| !desired.contains(r))
                .copied()
                .collect(),
            conflicts: Vec::new(),
        };
        *routes = desired.to_vec();
        Ok(sync)
    }

    async fn uninstall(&self) -> Result<()> {
        self.record(NetCall::Uninstall);
        Ok(())
    }
}

/// Allocations kept in memory only (fakes and tests).
#[derive(Debug, Default)]
pub struct MemoryStore {
    records: Mutex<BTreeMap<Ipv4Addr, String>>,
}

impl IpamStore for MemoryStore {
    fn load(&self) -> Result<Vec<(Ipv4Addr, String)>> {
        let records = self.records.lock().expect("ipam memory store poisoned");
        Ok(records.iter().map(|(ip, o)| (*ip, o.clone())).collect())
    }

    fn claim(&self, ip: Ipv4Addr, owner: &str) -> Result<bool> {
        let mut records = self.records.lock().expect("ipam memory store poisoned");
        if records.contains_key(&ip) {
            return Ok(false);
        }
        records.insert(ip, owner.to_string());
        Ok(true)
    }

    fn release(&self, ip: Ipv4Addr) -> Result<()> {
        let mut records = self.records.lock().expect("ipam memory store poisoned");
        records.remove(&ip);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fake_records_calls_and_hands_out_stable_addresses() {
        let net = FakeNetwork::new("10.42.9.0/24".parse().unwrap()).unwrap();
        let pod = PodInterface::new("uid-1", "/run/orc/netns/uid-1");
        net.ensure_node().await.unwrap();
        let ip = net.attach_pod(&pod).await.unwrap();
        assert_eq!(net.attach_pod(&pod).await.unwrap(), ip);
        assert_eq!(net.pod_ip("uid-1"), Some(ip));
        net.detach_pod(&pod).await.unwrap();
        assert_eq!(net.pod_ip("uid-1"), None);
        let route = (
            "10.42.1.0/24".parse().unwrap(),
            "192.0.2.1".parse().unwrap(),
        );
        let sync = net.sync_routes(&[route]).await.unwrap();
        assert_eq!(sync.added, vec![route]);
        assert_eq!(net.sync_routes(&[]).await.unwrap().removed, vec![route]);
        assert_eq!(net.calls()[0], NetCall::EnsureNode);
        assert_eq!(net.calls().len(), 6);
        assert!(matches!(&net.calls()[3], NetCall::DetachPod { owner, .. } if owner == "uid-1"));
    }
}
