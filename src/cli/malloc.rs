//! Giving freed heap memory back to the system: few malloc arenas and a periodic trim
//! (glibc builds; static musl builds allocate with mimalloc, which returns memory itself).
//!
//! glibc gives each thread that allocates under contention an arena of its own, up to 8
//! per core, and keeps the pages freed chunks sit on unless they are at the top of the
//! heap. The server's tokio workers, blocking-pool threads and the agent's per-pod
//! threads (network namespaces, log readers) all allocate: after 100 pods came and went,
//! `orc server` with its embedded agent idled at 114 MB, and one `malloc_trim` took it
//! to 82 MB (README, "Memory"). `malloc_trim` once resident memory the heap does not use
//! has grown by a few MB gives that back. The arenas are capped at 8 — not 2: with two,
//! the API server's threads queued on the arenas' locks (a futex wake-up per contended
//! malloc or free), and creates cost 10–20 % more CPU (README, "Allocator arenas").

use std::time::Duration;

/// Arenas glibc may create (its default is 8 per core).
pub const ARENA_MAX: i32 = 8;
/// How often the trimmer looks at the heap (`--malloc-trim-interval`).
pub const DEFAULT_TRIM_INTERVAL: Duration = Duration::from_secs(10);
/// Resident memory not in use by the heap that may build up before it is given back.
/// After a 100-pod burst a 4 MiB threshold left 3.7 MB that one more trim gave back (the
/// trim during the teardown had reset the baseline). A trim that gives nothing back is
/// not repeated ([`TrimPolicy`]), so an idle server does not trim every interval.
pub const TRIM_THRESHOLD: usize = 1 << 20;

/// When to trim: the process's resident anonymous memory less what the heap has in use
/// (stacks, and the free pages the arenas keep) grew by more than a threshold since the
/// last trim. A trim with nothing to give back is never repeated, so an idle process
/// does not walk its heap every interval.
#[derive(Debug)]
pub struct TrimPolicy {
    threshold: usize,
    /// The lowest slack seen since the last trim (after it, at first).
    baseline: Option<usize>,
}

impl TrimPolicy {
    pub fn new(threshold: usize) -> TrimPolicy {
        TrimPolicy {
            threshold,
            baseline: None,
        }
    }

    /// Whether to trim now, given the resident bytes and the heap's bytes in use.
    pub fn should_trim(&mut self, resident: usize, in_use: usize) -> bool {
        let slack = resident.saturating_sub(in_use);
        match self.baseline {
            Some(baseline) if slack > baseline.saturating_add(self.threshold) => true,
            Some(baseline) if slack >= baseline => false,
            _ => {
                self.baseline = Some(slack);
                false
            }
        }
    }

    /// Records the state right after a trim: the new baseline.
    pub fn trimmed(&mut self, resident: usize, in_use: usize) {
        self.baseline = Some(resident.saturating_sub(in_use));
    }
}

/// Caps glibc's arenas at [`ARENA_MAX`], unless the user chose with `MALLOC_ARENA_MAX`.
/// Call first thing in `main`, before any thread exists.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn limit_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt only sets a malloc tunable; called before other threads start.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, ARENA_MAX);
        }
    }
}

/// Other C libraries: nothing to set (musl builds allocate with mimalloc).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn limit_arenas() {}

/// Starts a thread that, every `interval`, gives freed heap memory back to the system
/// when [`TrimPolicy`] says so. A zero interval starts nothing.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
pub fn start_trimmer(interval: Duration) {
    if interval.is_zero() {
        return;
    }
    let spawned = std::thread::Builder::new()
        .name("orc-malloc-trim".into())
        // It allocates (almost) nothing: a small stack is plenty.
        .stack_size(256 << 10)
        .spawn(move || {
            let mut policy = TrimPolicy::new(TRIM_THRESHOLD);
            loop {
                std::thread::sleep(interval);
                trim_heap(&mut policy);
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot start the memory trimmer; freed memory stays with the process");
    }
}

/// Other C libraries: nothing to do (mimalloc returns freed memory itself).
#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
pub fn start_trimmer(_interval: Duration) {}

/// Trims the heap when `policy` says so.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim_heap(policy: &mut TrimPolicy) {
    let Some((resident, in_use)) = heap_usage() else {
        return;
    };
    if !policy.should_trim(resident, in_use) {
        return;
    }
    // SAFETY: malloc_trim only releases free pages; it is thread-safe.
    unsafe {
        libc::malloc_trim(0);
    }
    let (after, in_use) = heap_usage().unwrap_or((resident, in_use));
    policy.trimmed(after, in_use);
    tracing::debug!(
        before = resident,
        after,
        "gave freed heap memory back to the system"
    );
}

/// Resident anonymous bytes of this process (heap, stacks; not the code pages of the
/// executable, which come and go with the code that runs) and bytes the heap has in use.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn heap_usage() -> Option<(usize, usize)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let anon = resident_anon_bytes(&status)?;
    // SAFETY: mallinfo2 only reads malloc's statistics (under the arenas' locks).
    let info = unsafe { libc::mallinfo2() };
    Some((anon, info.uordblks + info.hblkhd))
}

/// `RssAnon` of a `/proc/PID/status` text, in bytes.
#[cfg_attr(not(all(target_os = "linux", target_env = "gnu")), allow(dead_code))]
fn resident_anon_bytes(status: &str) -> Option<usize> {
    let kb = status.lines().find_map(|l| l.strip_prefix("RssAnon:"))?;
    let kb: usize = kb.trim().trim_end_matches("kB").trim().parse().ok()?;
    Some(kb * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MB: usize = 1 << 20;

    #[test]
    fn trims_when_unused_resident_memory_grew_past_the_threshold() {
        let mut p = TrimPolicy::new(4 * MB);
        assert!(
            !p.should_trim(30 * MB, 20 * MB),
            "first look: baseline 10 MB"
        );
        assert!(!p.should_trim(60 * MB, 50 * MB), "busy, not wasteful");
        assert!(!p.should_trim(64 * MB, 50 * MB), "14 MB slack: within 4 MB");
        assert!(p.should_trim(90 * MB, 20 * MB), "a burst came and went");
        p.trimmed(32 * MB, 20 * MB);
        assert!(!p.should_trim(32 * MB, 20 * MB), "nothing new to give back");
        assert!(
            !p.should_trim(32 * MB, 20 * MB),
            "still nothing: no repeated trims"
        );
    }

    #[test]
    fn heap_slack_is_measured_on_anonymous_memory() {
        let status =
            "Name:\torc\nVmRSS:\t   41312 kB\nRssAnon:\t    8812 kB\nRssFile:\t   32500 kB\n";
        assert_eq!(resident_anon_bytes(status), Some(8812 * 1024));
        assert_eq!(resident_anon_bytes("VmRSS:\t1 kB\n"), None);
    }

    #[test]
    fn a_trim_that_gave_little_back_is_not_repeated() {
        let mut p = TrimPolicy::new(4 * MB);
        assert!(!p.should_trim(20 * MB, 10 * MB));
        assert!(p.should_trim(40 * MB, 10 * MB));
        // Fragmented: only 5 MB came back; the 25 MB slack is the new baseline.
        p.trimmed(35 * MB, 10 * MB);
        assert!(!p.should_trim(35 * MB, 10 * MB));
        assert!(!p.should_trim(38 * MB, 10 * MB));
        assert!(p.should_trim(40 * MB, 10 * MB));
    }

    #[test]
    fn the_baseline_follows_slack_down() {
        let mut p = TrimPolicy::new(4 * MB);
        assert!(!p.should_trim(40 * MB, 10 * MB));
        // Freed pages were reused: slack fell to 5 MB; growth is measured from there.
        assert!(!p.should_trim(45 * MB, 40 * MB));
        assert!(p.should_trim(50 * MB, 40 * MB));
    }

    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    #[test]
    fn freed_memory_is_given_back_by_a_trim() {
        fn rss_kb() -> u64 {
            std::fs::read_to_string("/proc/self/status")
                .unwrap()
                .lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
                .unwrap()
        }
        // 64 MB in chunks small enough to stay in the heap (not mmap'd one by one).
        let blocks: Vec<Vec<u8>> = (0..16_384).map(|i| vec![(i % 251) as u8; 4096]).collect();
        let full = rss_kb();
        // Keep the last block so the heap top is pinned and free() alone cannot shrink it.
        let last = blocks.into_iter().last();
        // SAFETY: as in heap_usage.
        let free = unsafe { libc::mallinfo2() }.fordblks;
        assert!(free > 32 * MB, "only {free} B free");
        // SAFETY: as in start_trimmer.
        unsafe {
            libc::malloc_trim(0);
        }
        let trimmed = rss_kb();
        assert!(
            trimmed + 32_768 < full,
            "RSS {full} kB with the blocks, {trimmed} kB after freeing and trimming"
        );
        drop(last);
    }
}
