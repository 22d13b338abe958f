//! The eviction signals measured on the host: memory working set from the root cgroup
//! (v1 and v2), filesystem space and inodes by statfs of the agent's data dir (nodefs)
//! and containerd's root (imagefs), pids against the kernel's limit; and what one pod
//! uses (its cgroup's working set, the size of its directory).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::thresholds::{Observation, Signal};

/// Everything measured in one pass; a signal that could not be read is absent (and so
/// never met).
pub type Observations = BTreeMap<Signal, Observation>;

/// Where the host is read (a test points them at files of its own).
pub trait Probe: Send + Sync {
    /// Measures the signals the thresholds watch.
    fn observe(&self) -> Observations;
    /// The memory working set of pod `uid`'s cgroup, in bytes.
    fn pod_memory(&self, uid: &str) -> Option<i64>;
    /// Bytes the pod keeps on the node's filesystem (its volumes and files).
    fn pod_disk(&self, uid: &str) -> Option<i64>;
}

/// The value of `key` in a `memory.stat` file.
pub fn stat_value(stat: &str, key: &str) -> Option<i64> {
    stat.lines().find_map(|l| {
        let (k, v) = l.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok())?
    })
}

/// A `/proc/meminfo` field in bytes.
pub fn meminfo_bytes(meminfo: &str, field: &str) -> Option<i64> {
    meminfo.lines().find_map(|l| {
        let rest = l.strip_prefix(field)?.strip_prefix(':')?;
        let kb: i64 = rest.trim().trim_end_matches("kB").trim().parse().ok()?;
        Some(kb * 1024)
    })
}

/// Working set of the v1 root memory cgroup: `memory.usage_in_bytes` minus
/// `total_inactive_file` (upstream cadvisor), never below zero.
pub fn working_set_v1(usage_in_bytes: &str, stat: &str) -> Option<i64> {
    let usage: i64 = usage_in_bytes.trim().parse().ok()?;
    let inactive = stat_value(stat, "total_inactive_file").unwrap_or(0);
    Some((usage - inactive).max(0))
}

/// Working set of the v2 root: the root has no `memory.current`, so usage is
/// MemTotal − MemFree (runc's `rootStatsFromMeminfo`), minus `inactive_file` of the
/// root's `memory.stat`.
pub fn working_set_v2_root(meminfo: &str, stat: &str) -> Option<i64> {
    let usage = meminfo_bytes(meminfo, "MemTotal")? - meminfo_bytes(meminfo, "MemFree")?;
    let inactive = stat_value(stat, "inactive_file").unwrap_or(0);
    Some((usage - inactive).max(0))
}

/// Working set of a v2 (non-root) cgroup: `memory.current` − `inactive_file`.
pub fn working_set_v2(current: &str, stat: &str) -> Option<i64> {
    let usage: i64 = current.trim().parse().ok()?;
    let inactive = stat_value(stat, "inactive_file").unwrap_or(0);
    Some((usage - inactive).max(0))
}

/// Tasks running now: the second number of `/proc/loadavg`'s fourth field ("1/523"),
/// as upstream reads it (sysinfo(2) truncates it).
pub fn running_tasks(loadavg: &str) -> Option<i64> {
    loadavg
        .split_whitespace()
        .nth(3)?
        .split_once('/')?
        .1
        .parse()
        .ok()
}

/// The host as it is.
#[derive(Debug, Clone)]
pub struct HostProbe {
    /// Where cgroup hierarchies are mounted (`/sys/fs/cgroup`).
    pub cgroup_root: PathBuf,
    /// Where /proc is.
    pub proc_root: PathBuf,
    /// The agent's data dir: nodefs.
    pub node_fs: PathBuf,
    /// containerd's root: imagefs.
    pub image_fs: PathBuf,
    /// The kubelet's pod directories (`agent/pods/<uid>`).
    pub pods_dir: PathBuf,
}

fn read(path: &Path) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

/// Space and inodes of the filesystem holding `path`.
fn statfs(path: &Path) -> Option<(Observation, Observation)> {
    let st = nix::sys::statvfs::statvfs(path).ok()?;
    let frsize = st.fragment_size() as i64;
    let bytes = Observation {
        available: (st.blocks_available() as i64).saturating_mul(frsize),
        capacity: (st.blocks() as i64).saturating_mul(frsize),
    };
    let inodes = Observation {
        available: st.files_free() as i64,
        capacity: st.files() as i64,
    };
    Some((bytes, inodes))
}

impl HostProbe {
    fn is_cgroup_v2(&self) -> bool {
        self.cgroup_root.join("cgroup.controllers").exists()
    }

    fn memory(&self) -> Option<Observation> {
        let meminfo = read(&self.proc_root.join("meminfo"))?;
        let capacity = meminfo_bytes(&meminfo, "MemTotal")?;
        let working_set = if self.is_cgroup_v2() {
            working_set_v2_root(&meminfo, &read(&self.cgroup_root.join("memory.stat"))?)?
        } else {
            let dir = self.cgroup_root.join("memory");
            working_set_v1(
                &read(&dir.join("memory.usage_in_bytes"))?,
                &read(&dir.join("memory.stat"))?,
            )?
        };
        Some(Observation {
            available: capacity - working_set,
            capacity,
        })
    }

    fn pids(&self) -> Option<Observation> {
        let parse = |f: &str| -> Option<i64> { read(&self.proc_root.join(f))?.trim().parse().ok() };
        let pid_max = parse("sys/kernel/pid_max")?;
        let capacity = parse("sys/kernel/threads-max").map_or(pid_max, |t| t.min(pid_max));
        let running = running_tasks(&read(&self.proc_root.join("loadavg"))?)?;
        Some(Observation {
            available: capacity - running,
            capacity,
        })
    }
}

impl Probe for HostProbe {
    fn observe(&self) -> Observations {
        let mut out = Observations::new();
        if let Some(m) = self.memory() {
            out.insert(Signal::MemoryAvailable, m);
        }
        if let Some((bytes, inodes)) = statfs(&self.node_fs) {
            out.insert(Signal::NodeFsAvailable, bytes);
            out.insert(Signal::NodeFsInodesFree, inodes);
        }
        if let Some((bytes, inodes)) = statfs(&self.image_fs) {
            out.insert(Signal::ImageFsAvailable, bytes);
            out.insert(Signal::ImageFsInodesFree, inodes);
        }
        if let Some(p) = self.pids() {
            out.insert(Signal::PidAvailable, p);
        }
        out
    }

    fn pod_memory(&self, uid: &str) -> Option<i64> {
        // The kubelet puts a pod's containers below `/orc/pod<uid>` (kubelet::container).
        let rel = format!("orc/pod{uid}");
        if self.is_cgroup_v2() {
            let dir = self.cgroup_root.join(rel);
            working_set_v2(
                &read(&dir.join("memory.current"))?,
                &read(&dir.join("memory.stat"))?,
            )
        } else {
            let dir = self.cgroup_root.join("memory").join(rel);
            working_set_v1(
                &read(&dir.join("memory.usage_in_bytes"))?,
                &read(&dir.join("memory.stat"))?,
            )
        }
    }

    fn pod_disk(&self, uid: &str) -> Option<i64> {
        let dir = self.pods_dir.join(uid);
        dir.exists().then(|| dir_size(&dir, DIR_SIZE_MAX_ENTRIES))
    }
}

/// Entries one pod directory walk reads at most (a pod with millions of files is
/// counted by what was seen).
const DIR_SIZE_MAX_ENTRIES: usize = 100_000;

/// Bytes of the regular files below `dir`, staying on its filesystem and never
/// following symlinks; stops after `max_entries` entries.
pub fn dir_size(dir: &Path, max_entries: usize) -> i64 {
    use std::os::unix::fs::MetadataExt;
    let Ok(top) = std::fs::symlink_metadata(dir) else {
        return 0;
    };
    let device = top.dev();
    let mut total = 0i64;
    let mut seen = 0usize;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            seen += 1;
            if seen > max_entries {
                return total;
            }
            let Ok(meta) = entry.metadata() else {
                continue;
            };
            if meta.dev() != device {
                continue;
            }
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                total = total.saturating_add(meta.len() as i64);
            }
        }
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_working_set_is_usage_less_inactive_file() {
        let stat = "cache 100\ntotal_cache 5000\ntotal_inactive_file 3000\ntotal_active_file 10\n";
        assert_eq!(working_set_v1("10000\n", stat), Some(7000));
        assert_eq!(working_set_v1("1000\n", stat), Some(0), "never negative");
        assert_eq!(working_set_v1("x", stat), None);
    }

    #[test]
    fn v2_working_set_comes_from_meminfo_at_the_root_and_memory_current_below() {
        let meminfo = "MemTotal:       2048 kB\nMemFree:         512 kB\nMemAvailable: 1000 kB\n";
        let stat = "anon 1\nfile 2\ninactive_file 524288\nactive_file 3\n";
        assert_eq!(meminfo_bytes(meminfo, "MemTotal"), Some(2 << 20));
        assert_eq!(meminfo_bytes(meminfo, "MemAvailable"), Some(1000 * 1024));
        assert_eq!(
            working_set_v2_root(meminfo, stat),
            Some((1536 - 512) * 1024)
        );
        assert_eq!(working_set_v2("1048576\n", stat), Some(524288));
        assert_eq!(stat_value(stat, "file"), Some(2));
    }

    #[test]
    fn running_tasks_come_from_loadavg() {
        assert_eq!(running_tasks("0.52 0.58 0.59 3/1123 45678\n"), Some(1123));
        assert_eq!(running_tasks("garbage"), None);
    }

    #[test]
    fn the_host_probe_reads_a_v1_hierarchy_and_proc() {
        let dir = tempfile::tempdir().unwrap();
        let cg = dir.path().join("cgroup");
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(cg.join("memory/orc/podu1")).unwrap();
        std::fs::create_dir_all(proc.join("sys/kernel")).unwrap();
        std::fs::write(cg.join("memory/memory.usage_in_bytes"), "4194304\n").unwrap();
        std::fs::write(
            cg.join("memory/memory.stat"),
            "total_inactive_file 1048576\n",
        )
        .unwrap();
        std::fs::write(cg.join("memory/orc/podu1/memory.usage_in_bytes"), "3000\n").unwrap();
        std::fs::write(
            cg.join("memory/orc/podu1/memory.stat"),
            "total_inactive_file 1000\n",
        )
        .unwrap();
        std::fs::write(proc.join("meminfo"), "MemTotal: 8192 kB\nMemFree: 1 kB\n").unwrap();
        std::fs::write(proc.join("sys/kernel/pid_max"), "4194304\n").unwrap();
        std::fs::write(proc.join("sys/kernel/threads-max"), "1000\n").unwrap();
        std::fs::write(proc.join("loadavg"), "0 0 0 1/250 9\n").unwrap();
        let pods = dir.path().join("pods");
        std::fs::create_dir_all(pods.join("u1/volumes/data")).unwrap();
        std::fs::write(pods.join("u1/volumes/data/f"), vec![0u8; 5000]).unwrap();
        let probe = HostProbe {
            cgroup_root: cg,
            proc_root: proc,
            node_fs: dir.path().to_path_buf(),
            image_fs: dir.path().join("missing"),
            pods_dir: pods,
        };
        let obs = probe.observe();
        assert_eq!(
            obs[&Signal::MemoryAvailable],
            Observation {
                available: (8 << 20) - (3 << 20),
                capacity: 8 << 20
            }
        );
        assert_eq!(
            obs[&Signal::PidAvailable],
            Observation {
                available: 750,
                capacity: 1000
            }
        );
        assert!(obs[&Signal::NodeFsAvailable].capacity > 0);
        assert!(obs.contains_key(&Signal::NodeFsInodesFree));
        assert!(
            !obs.contains_key(&Signal::ImageFsAvailable),
            "unreadable: absent"
        );
        assert_eq!(probe.pod_memory("u1"), Some(2000));
        assert_eq!(probe.pod_memory("u2"), None);
        assert_eq!(probe.pod_disk("u1"), Some(5000));
        assert_eq!(probe.pod_disk("u2"), None);
    }
}
