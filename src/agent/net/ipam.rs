//! Pod IP address management: hands out addresses of the node's podCIDR, one per owner
//! (pod UID or sandbox id), persisted so that an agent restart never hands one out twice.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::io::{self, Write};
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

use ipnet::Ipv4Net;
use tracing::warn;

use super::{Error, Result};

/// Where allocations are kept. Every method is one small, durable step: an allocation
/// recorded by `claim` survives a crash right after it returns.
pub trait IpamStore: Send {
    /// Every recorded allocation.
    fn load(&self) -> Result<Vec<(Ipv4Addr, String)>>;
    /// Records `ip` as held by `owner`. Returns `false` (and changes nothing) when a record
    /// for `ip` already exists, whoever holds it.
    fn claim(&self, ip: Ipv4Addr, owner: &str) -> Result<bool>;
    /// Forgets the record for `ip`; releasing an unknown address is not an error.
    fn release(&self, ip: Ipv4Addr) -> Result<()>;
}

/// One file per allocation, named after the address and holding the owner, in one
/// directory (`<data-dir>/agent/ipam/`). A record is written to a temporary file and
/// hard-linked into place, so it appears whole or not at all and two writers can never
/// both claim one address.
#[derive(Debug, Clone)]
pub struct FileStore {
    dir: PathBuf,
}

const TMP_PREFIX: &str = ".tmp-";

impl FileStore {
    /// Opens (creating if needed) the directory holding the records.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|source| Error::IpamWrite {
            path: dir.clone(),
            source,
        })?;
        Ok(FileStore { dir })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn record_path(&self, ip: Ipv4Addr) -> PathBuf {
        self.dir.join(ip.to_string())
    }
}

impl IpamStore for FileStore {
    fn load(&self) -> Result<Vec<(Ipv4Addr, String)>> {
        let read_err = |path: &Path, source| Error::IpamRead {
            path: path.to_path_buf(),
            source,
        };
        let mut records = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(|e| read_err(&self.dir, e))? {
            let entry = entry.map_err(|e| read_err(&self.dir, e))?;
            let path = entry.path();
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with(TMP_PREFIX) {
                // Left over by a crash before the record was linked into place.
                let _ = fs::remove_file(&path);
                continue;
            }
            let Ok(ip) = name.parse::<Ipv4Addr>() else {
                warn!(path = %path.display(), "ignoring unknown file in the IPAM directory");
                continue;
            };
            let owner = fs::read_to_string(&path).map_err(|e| read_err(&path, e))?;
            let owner = owner.trim();
            if owner.is_empty() {
                return Err(Error::IpamCorrupt {
                    path,
                    reason: "no owner recorded".into(),
                });
            }
            records.push((ip, owner.to_string()));
        }
        Ok(records)
    }

    fn claim(&self, ip: Ipv4Addr, owner: &str) -> Result<bool> {
        let path = self.record_path(ip);
        let tmp = self
            .dir
            .join(format!("{TMP_PREFIX}{ip}-{:016x}", rand::random::<u64>()));
        let write_err = |source| Error::IpamWrite {
            path: path.clone(),
            source,
        };
        let write = || -> io::Result<()> {
            let mut file = fs::File::create(&tmp)?;
            file.write_all(owner.as_bytes())?;
            file.write_all(b"\n")?;
            file.sync_all()
        };
        if let Err(e) = write() {
            let _ = fs::remove_file(&tmp);
            return Err(write_err(e));
        }
        let linked = fs::hard_link(&tmp, &path);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                sync_dir(&self.dir).map_err(write_err)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(write_err(e)),
        }
    }

    fn release(&self, ip: Ipv4Addr) -> Result<()> {
        let path = self.record_path(ip);
        match fs::remove_file(&path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(Error::IpamWrite { path, source }),
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    fs::File::open(dir)?.sync_all()
}

/// Pod addresses of one podCIDR. The first host address is the bridge gateway; the rest
/// (up to the broadcast address, excluded) are handed out. Addresses are handed out
/// round-robin so a just-released address is not reused at once.
///
/// Not internally synchronised: callers share it behind a mutex.
#[derive(Debug)]
pub struct Ipam<S = FileStore> {
    store: S,
    cidr: Ipv4Net,
    by_owner: HashMap<String, Ipv4Addr>,
    by_ip: BTreeMap<Ipv4Addr, String>,
    /// The address handed out last; the search for a free one starts after it.
    last: Ipv4Addr,
}

impl Ipam<FileStore> {
    /// Opens the allocations kept in `dir` for `cidr`.
    pub fn open(dir: impl Into<PathBuf>, cidr: Ipv4Net) -> Result<Self> {
        Ipam::with_store(FileStore::open(dir)?, cidr)
    }
}

impl<S: IpamStore> Ipam<S> {
    /// Loads the allocations in `store`. Records outside `cidr` (a node whose podCIDR
    /// changed) are ignored and left in place.
    pub fn with_store(store: S, cidr: Ipv4Net) -> Result<Self> {
        let cidr = cidr.trunc();
        if pool_range(cidr).is_none() {
            return Err(Error::CidrTooSmall { cidr });
        }
        let mut ipam = Ipam {
            store,
            cidr,
            by_owner: HashMap::new(),
            by_ip: BTreeMap::new(),
            last: gateway_of(cidr),
        };
        for (ip, owner) in ipam.store.load()? {
            if !ipam.in_pool(ip) {
                warn!(%ip, %owner, cidr = %ipam.cidr, "ignoring an allocation outside the pod CIDR");
                continue;
            }
            if let Some(previous) = ipam.by_owner.insert(owner.clone(), ip) {
                warn!(%owner, %ip, %previous, "owner holds two addresses; keeping both reserved");
            }
            ipam.last = ipam.last.max(ip);
            ipam.by_ip.insert(ip, owner);
        }
        Ok(ipam)
    }

    pub fn cidr(&self) -> Ipv4Net {
        self.cidr
    }

    /// The bridge address: the first host address of the CIDR.
    pub fn gateway(&self) -> Ipv4Addr {
        gateway_of(self.cidr)
    }

    /// The address of `owner`, allocating (and persisting) one if it has none yet.
    /// Calling it again for the same owner returns the same address.
    pub fn allocate(&mut self, owner: &str) -> Result<Ipv4Addr> {
        if let Some(ip) = self.by_owner.get(owner) {
            return Ok(*ip);
        }
        let (first, last) = pool_range(self.cidr).expect("checked in with_store");
        let (first, last) = (u32::from(first), u32::from(last));
        let size = last - first + 1;
        let start = u32::from(self.last).clamp(first - 1, last) + 1 - first;
        for step in 0..size {
            let ip = Ipv4Addr::from(first + (start + step) % size);
            if self.by_ip.contains_key(&ip) {
                continue;
            }
            if !self.store.claim(ip, owner)? {
                // Someone else recorded it behind our back; leave it to them.
                warn!(%ip, "address recorded on disk but not known in memory; skipping it");
                continue;
            }
            self.by_owner.insert(owner.to_string(), ip);
            self.by_ip.insert(ip, owner.to_string());
            self.last = ip;
            return Ok(ip);
        }
        Err(Error::PoolExhausted {
            cidr: self.cidr,
            owner: owner.to_string(),
        })
    }

    /// Releases the address of `owner`, returning it; `None` if it held none.
    pub fn release(&mut self, owner: &str) -> Result<Option<Ipv4Addr>> {
        let Some(ip) = self.by_owner.get(owner).copied() else {
            return Ok(None);
        };
        self.store.release(ip)?;
        self.by_owner.remove(owner);
        self.by_ip.remove(&ip);
        Ok(Some(ip))
    }

    /// The address held by `owner`, if any.
    pub fn get(&self, owner: &str) -> Option<Ipv4Addr> {
        self.by_owner.get(owner).copied()
    }

    /// Every allocation as `(owner, address)`, in address order.
    pub fn allocations(&self) -> impl Iterator<Item = (&str, Ipv4Addr)> {
        self.by_ip.iter().map(|(ip, owner)| (owner.as_str(), *ip))
    }

    fn in_pool(&self, ip: Ipv4Addr) -> bool {
        pool_range(self.cidr).is_some_and(|(first, last)| (first..=last).contains(&ip))
    }
}

/// The first host address of `cidr`, given to the bridge.
pub fn gateway_of(cidr: Ipv4Net) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(cidr.network()) + 1)
}

/// The addresses handed to pods: after the gateway, before the broadcast address.
fn pool_range(cidr: Ipv4Net) -> Option<(Ipv4Addr, Ipv4Addr)> {
    if cidr.prefix_len() > 29 {
        return None;
    }
    let first = u32::from(cidr.network()) + 2;
    let last = u32::from(cidr.broadcast()) - 1;
    Some((Ipv4Addr::from(first), Ipv4Addr::from(last)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::net::MemoryStore;

    fn cidr(s: &str) -> Ipv4Net {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> Ipv4Addr {
        s.parse().unwrap()
    }

    #[test]
    fn hands_out_addresses_after_the_gateway() {
        let mut ipam = Ipam::with_store(MemoryStore::default(), cidr("10.42.3.0/24")).unwrap();
        assert_eq!(ipam.gateway(), ip("10.42.3.1"));
        assert_eq!(ipam.allocate("a").unwrap(), ip("10.42.3.2"));
        assert_eq!(ipam.allocate("b").unwrap(), ip("10.42.3.3"));
    }

    #[test]
    fn allocate_is_idempotent_per_owner() {
        let mut ipam = Ipam::with_store(MemoryStore::default(), cidr("10.42.3.0/24")).unwrap();
        let first = ipam.allocate("pod-a").unwrap();
        assert_eq!(ipam.allocate("pod-a").unwrap(), first);
        assert_eq!(ipam.get("pod-a"), Some(first));
        assert_eq!(ipam.allocations().count(), 1);
    }

    #[test]
    fn never_hands_out_an_address_twice_and_reports_exhaustion() {
        let mut ipam = Ipam::with_store(MemoryStore::default(), cidr("10.42.3.0/24")).unwrap();
        let mut seen = std::collections::HashSet::new();
        for n in 0..253 {
            let got = ipam.allocate(&format!("pod-{n}")).unwrap();
            assert!(seen.insert(got), "{got} handed out twice");
            assert!(got > ip("10.42.3.1") && got < ip("10.42.3.255"), "{got}");
        }
        let err = ipam.allocate("one-too-many").unwrap_err();
        assert!(matches!(err, Error::PoolExhausted { .. }), "{err}");
    }

    #[test]
    fn released_address_is_reused_only_after_the_others() {
        let mut ipam = Ipam::with_store(MemoryStore::default(), cidr("10.42.3.0/29")).unwrap();
        // Pool of a /29: .2 ..= .6
        let a = ipam.allocate("a").unwrap();
        assert_eq!(ipam.release("a").unwrap(), Some(a));
        assert_eq!(ipam.release("a").unwrap(), None);
        assert_eq!(ipam.allocate("b").unwrap(), ip("10.42.3.3"));
        for owner in ["c", "d", "e"] {
            ipam.allocate(owner).unwrap();
        }
        assert_eq!(
            ipam.allocate("f").unwrap(),
            a,
            "wraps around to the freed address"
        );
    }

    #[test]
    fn rejects_a_cidr_without_room_for_pods() {
        let err = Ipam::with_store(MemoryStore::default(), cidr("10.42.3.0/30")).unwrap_err();
        assert!(matches!(err, Error::CidrTooSmall { .. }), "{err}");
    }

    #[test]
    fn file_store_survives_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let ipam_dir = dir.path().join("agent/ipam");
        let (a, b) = {
            let mut ipam = Ipam::open(&ipam_dir, cidr("10.42.7.0/24")).unwrap();
            let a = ipam.allocate("pod-a").unwrap();
            let b = ipam.allocate("pod-b").unwrap();
            ipam.allocate("pod-c").unwrap();
            ipam.release("pod-c").unwrap();
            (a, b)
        };
        let mut ipam = Ipam::open(&ipam_dir, cidr("10.42.7.0/24")).unwrap();
        assert_eq!(ipam.get("pod-a"), Some(a));
        assert_eq!(ipam.get("pod-b"), Some(b));
        assert_eq!(ipam.get("pod-c"), None);
        assert_eq!(ipam.allocate("pod-a").unwrap(), a);
        let d = ipam.allocate("pod-d").unwrap();
        assert!(d != a && d != b);
        let on_disk = fs::read_to_string(ipam_dir.join(a.to_string())).unwrap();
        assert_eq!(on_disk, "pod-a\n");
    }

    #[test]
    fn file_store_refuses_to_claim_a_recorded_address() {
        let dir = tempfile::tempdir().unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert!(store.claim(ip("10.42.0.2"), "a").unwrap());
        assert!(!store.claim(ip("10.42.0.2"), "b").unwrap());
        assert_eq!(
            store.load().unwrap(),
            vec![(ip("10.42.0.2"), "a".to_string())]
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "no temporary files left behind");
    }

    #[test]
    fn an_address_recorded_by_someone_else_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let mut ipam = Ipam::open(dir.path(), cidr("10.42.7.0/24")).unwrap();
        FileStore::open(dir.path())
            .unwrap()
            .claim(ip("10.42.7.2"), "other-agent")
            .unwrap();
        assert_eq!(ipam.allocate("pod-a").unwrap(), ip("10.42.7.3"));
    }

    #[test]
    fn records_outside_the_cidr_and_stray_files_are_ignored() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("10.99.0.5"), "old-pod\n").unwrap();
        fs::write(dir.path().join("README"), "hello").unwrap();
        fs::write(dir.path().join(".tmp-10.42.7.2-0"), "half").unwrap();
        let ipam = Ipam::open(dir.path(), cidr("10.42.7.0/24")).unwrap();
        assert_eq!(ipam.allocations().count(), 0);
        assert!(!dir.path().join(".tmp-10.42.7.2-0").exists());
    }

    #[test]
    fn an_empty_record_is_reported_as_corrupt() {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("10.42.7.9"), "").unwrap();
        let err = Ipam::open(dir.path(), cidr("10.42.7.0/24")).unwrap_err();
        assert!(matches!(err, Error::IpamCorrupt { .. }), "{err}");
    }
}
