//! Unmapping the executable's code pages that start-up and bursts of work touched, so
//! that the resident set shows the code an idle process runs, not all it ever ran.
//!
//! The orc binary is large (43 MB, glibc release build) and its code is laid out without
//! regard to which subcommand uses it: every page fault on code maps the neighbouring
//! pages too (the kernel's fault-around, 64 KB). An idle `orc agent` thus had 26 MB of
//! the binary's code and read-only data mapped, most of it run once at start (README,
//! "Memory"). Those pages are clean copies of the file: `madvise(MADV_DONTNEED)` drops
//! them from this process's page tables and the next use faults them back from the page
//! cache, with the same contents. Only read-only mappings of the executable without any
//! anonymous (copied-on-write) page qualify: the RELRO segment, which the dynamic loader
//! relocated before making it read-only, keeps its pages.

use std::path::Path;

/// A mapping whose pages may be dropped: start address and length in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mapping {
    pub start: usize,
    pub len: usize,
}

/// The mappings of `exe` in `smaps` (the text of `/proc/self/smaps`) that hold only
/// clean pages of the file: read-only (`r--p` or `r-xp`) and without anonymous pages.
pub fn droppable_mappings(smaps: &str, exe: &str) -> Vec<Mapping> {
    let mut found = Vec::new();
    // The mapping being read, while its header named `exe` with a read-only mode.
    let mut current: Option<Mapping> = None;
    for line in smaps.lines() {
        if let Some(h) = mapping_header(line) {
            current = (h.path == exe && matches!(h.perms, "r--p" | "r-xp")).then_some(h.mapping);
            continue;
        }
        if let (Some(m), Some(anon)) = (current, line.strip_prefix("Anonymous:")) {
            if anon.trim().trim_end_matches("kB").trim() == "0" {
                found.push(m);
            }
            current = None;
        }
    }
    found
}

/// A mapping's header line in smaps: `start-end perms offset dev inode [path]`.
struct Header<'a> {
    mapping: Mapping,
    perms: &'a str,
    /// Empty for anonymous memory; may contain spaces.
    path: &'a str,
}

/// The header `line` is, or `None` for a field line (`Rss:   12 kB`).
fn mapping_header(line: &str) -> Option<Header<'_>> {
    let mut rest = line;
    let mut fields = [""; 5];
    for field in fields.iter_mut() {
        rest = rest.trim_start();
        let end = rest.find(' ').unwrap_or(rest.len());
        *field = &rest[..end];
        rest = &rest[end..];
    }
    let [range, perms, _offset, _device, _inode] = fields;
    let (start, end) = range.split_once('-')?;
    let start = usize::from_str_radix(start, 16).ok()?;
    let end = usize::from_str_radix(end, 16).ok()?;
    if end <= start || perms.len() != 4 {
        return None;
    }
    Some(Header {
        mapping: Mapping {
            start,
            len: end - start,
        },
        perms,
        path: rest.trim(),
    })
}

/// Drops this process's clean code pages of its own executable; returns the bytes of
/// mappings released (their resident part is what RSS loses). Errors (no /proc) give 0.
#[cfg(target_os = "linux")]
pub fn release() -> usize {
    let Ok(exe) = std::fs::read_link("/proc/self/exe") else {
        return 0;
    };
    let Ok(smaps) = std::fs::read_to_string("/proc/self/smaps") else {
        return 0;
    };
    release_in(&smaps, &exe)
}

#[cfg(target_os = "linux")]
fn release_in(smaps: &str, exe: &Path) -> usize {
    let Some(exe) = exe.to_str() else {
        return 0;
    };
    let mut released = 0;
    for m in droppable_mappings(smaps, exe) {
        // SAFETY: the range is a read-only private mapping of the executable file with no
        // anonymous page (checked in smaps just now; read-only pages cannot become
        // anonymous without mprotect, which orc never calls on its own image).
        // MADV_DONTNEED only removes the page-table entries: the next access faults the
        // same bytes back in from the file.
        let rc = unsafe { libc::madvise(m.start as *mut libc::c_void, m.len, libc::MADV_DONTNEED) };
        if rc == 0 {
            released += m.len;
        }
    }
    released
}

/// Other systems: nothing to release.
#[cfg(not(target_os = "linux"))]
pub fn release() -> usize {
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SMAPS: &str = "\
5595bf212000-5595bfb40000 r--p 00000000 fe:00 10018890                   /usr/local/bin/orc
Size:               9400 kB
Rss:                4472 kB
Anonymous:             0 kB
VmFlags: rd mr mw me dw sd
5595bfb40000-5595c196d000 r-xp 0092d000 fe:00 10018890                   /usr/local/bin/orc
Rss:               21788 kB
Anonymous:             0 kB
5595c196d000-5595c1b72000 r--p 02759000 fe:00 10018890                   /usr/local/bin/orc
Rss:                2048 kB
Anonymous:          2048 kB
5595c1b72000-5595c1b7e000 rw-p 0295d000 fe:00 10018890                   /usr/local/bin/orc
Anonymous:            48 kB
5595c6ad8000-5595c6c03000 rw-p 00000000 00:00 0                          [heap]
Anonymous:          1004 kB
7f724e41c000-7f724e572000 r-xp 00026000 fe:00 2230                       /usr/lib/x86_64-linux-gnu/libc.so.6
Anonymous:             0 kB
7f724e600000-7f724e601000 r-xp 00000000 fe:00 77                         /opt/my orc/orc
Anonymous:             0 kB
";

    #[test]
    fn only_clean_read_only_mappings_of_the_executable_are_dropped() {
        let found = droppable_mappings(SMAPS, "/usr/local/bin/orc");
        assert_eq!(
            found,
            vec![
                Mapping {
                    start: 0x5595bf212000,
                    len: 0x5595bfb40000 - 0x5595bf212000
                },
                Mapping {
                    start: 0x5595bfb40000,
                    len: 0x5595c196d000 - 0x5595bfb40000
                },
            ],
            "headers and text; not the relocated RELRO pages, data, heap or libc"
        );
    }

    #[test]
    fn paths_with_spaces_match_whole() {
        assert_eq!(droppable_mappings(SMAPS, "/opt/my orc/orc").len(), 1);
        assert!(droppable_mappings(SMAPS, "/opt/my").is_empty());
    }

    #[test]
    fn a_mapping_whose_anonymous_line_is_missing_is_kept() {
        let smaps = "\
00400000-00500000 r-xp 00000000 fe:00 1 /bin/orc
Rss: 4 kB
00500000-00600000 r-xp 00000000 fe:00 1 /bin/orc
Anonymous: 4 kB
";
        assert!(droppable_mappings(smaps, "/bin/orc").is_empty());
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn released_code_runs_again() {
        fn resident_code_kb() -> u64 {
            let exe = std::fs::read_link("/proc/self/exe").unwrap();
            let smaps = std::fs::read_to_string("/proc/self/smaps").unwrap();
            let mut in_exe = false;
            let mut total = 0;
            for line in smaps.lines() {
                if let Some(header) = mapping_header(line) {
                    in_exe = header.perms == "r-xp" && Path::new(header.path) == exe.as_path();
                } else if let (true, Some(rss)) = (in_exe, line.strip_prefix("Rss:")) {
                    total += rss
                        .trim()
                        .trim_end_matches("kB")
                        .trim()
                        .parse::<u64>()
                        .unwrap();
                }
            }
            total
        }
        let before = resident_code_kb();
        assert!(before > 0, "the test binary's code is mapped");
        let released = release();
        assert!(released >= 4096, "released {released} bytes");
        let after = resident_code_kb();
        // The test harness's other threads may fault some code back meanwhile.
        assert!(after < before, "code resident {before} kB, then {after} kB");
        // Code that ran before runs again (faulted back from the file).
        let text: String = ["code", "pages"].join(" ");
        assert_eq!(format!("{text}!"), "code pages!");
        assert_eq!(release_in(SMAPS, Path::new("/nowhere")), 0);
    }
}
