//! Reads a container's cgroup for what containerd does not report: whether the OOM killer
//! hit it (cgroup v2 `memory.events`, v1 `memory.oom_control`).

use std::path::{Path, PathBuf};

/// Where cgroup hierarchies are mounted.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The `oom_kill` counter of a `memory.events` or `memory.oom_control` file.
pub fn parse_oom_kills(contents: &str) -> Option<u64> {
    contents.lines().find_map(|l| {
        let (key, value) = l.split_once(' ')?;
        (key == "oom_kill").then(|| value.trim().parse().ok())?
    })
}

/// Files that may hold the OOM-kill count of cgroup `path` (relative to the hierarchy).
pub fn oom_files(root: &Path, path: &str) -> [PathBuf; 2] {
    let rel = path.trim_start_matches('/');
    [
        root.join(rel).join("memory.events"),
        root.join("memory").join(rel).join("memory.oom_control"),
    ]
}

/// True when the OOM killer ended a process of cgroup `path`. The cgroup must still exist
/// (runc removes it when the task is deleted); `false` when it cannot be read.
pub fn oom_killed(root: &Path, path: &str) -> bool {
    oom_files(root, path).iter().any(|f| {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|c| parse_oom_kills(&c))
            .is_some_and(|n| n > 0)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_oom_kill_from_v1_and_v2_files() {
        let v2 = "low 0\nhigh 0\nmax 12\noom 1\noom_kill 1\noom_group_kill 0\n";
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n";
        assert_eq!(parse_oom_kills(v2), Some(1));
        assert_eq!(parse_oom_kills(v1), Some(0));
        assert_eq!(parse_oom_kills("oom 3\n"), None);
    }

    #[test]
    fn checks_both_hierarchies() {
        let dir = tempfile::tempdir().unwrap();
        let [v2, v1] = oom_files(dir.path(), "/orc/pod/c1");
        assert_eq!(v2, dir.path().join("orc/pod/c1/memory.events"));
        assert_eq!(v1, dir.path().join("memory/orc/pod/c1/memory.oom_control"));
        assert!(!oom_killed(dir.path(), "/orc/pod/c1"));
        std::fs::create_dir_all(v1.parent().unwrap()).unwrap();
        std::fs::write(&v1, "under_oom 0\noom_kill 2\n").unwrap();
        assert!(oom_killed(dir.path(), "/orc/pod/c1"));
    }
}
