//! A container's seccomp filter, as containerd's CRI builds it from the pod's
//! `seccompProfile`: none for `Unconfined` (Kubernetes' default) and for privileged
//! containers; containerd's default profile for `RuntimeDefault` (`contrib/seccomp`:
//! an allow list, widened by the container's capabilities and the node's architecture);
//! for `Localhost`, the profile file on the node, in the Docker format containerd loads
//! (`includes`/`excludes` by capability, architecture and kernel, `archMap`).

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Capability, LinuxSeccomp};
use serde::Deserialize;
use serde_json::{json, Value};
use thiserror::Error;

/// What a container's `seccompProfile` asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SeccompProfile {
    #[default]
    Unconfined,
    RuntimeDefault,
    /// The profile file (the node's seccomp root joined with `localhostProfile`).
    Localhost(PathBuf),
}

#[derive(Debug, Error)]
pub enum SeccompError {
    /// containerd's CRI words.
    #[error(
        "failed to generate seccomp spec opts: cannot load seccomp profile {path:?}: {reason}"
    )]
    Load { path: PathBuf, reason: String },
}

/// The node as a profile sees it: its architecture and kernel version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Node {
    /// Go's name of the architecture (`amd64`, `arm64`, `arm`, `386`, …).
    pub arch: &'static str,
    /// `(major, minor)` of the running kernel.
    pub kernel: (u32, u32),
}

impl Node {
    /// This machine.
    pub fn this() -> Node {
        let arch = match std::env::consts::ARCH {
            "x86_64" => "amd64",
            "aarch64" => "arm64",
            "x86" => "386",
            "powerpc64" => "ppc64le",
            other => other,
        };
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        Node {
            arch,
            kernel: kernel_version(&release),
        }
    }
}

/// `(major, minor)` of a kernel release such as `6.1.0-28-amd64`.
fn kernel_version(release: &str) -> (u32, u32) {
    let mut parts = release
        .trim()
        .split(|c: char| !c.is_ascii_digit())
        .map(|p| p.parse().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

/// libseccomp's names of the architectures a native one covers (containerd's `arches`).
fn arches(arch: &str) -> &'static [&'static str] {
    match arch {
        "amd64" => &["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "arm64" => &["SCMP_ARCH_ARM", "SCMP_ARCH_AARCH64"],
        "s390x" => &["SCMP_ARCH_S390", "SCMP_ARCH_S390X"],
        "riscv64" => &["SCMP_ARCH_RISCV64"],
        _ => &[],
    }
}

/// libseccomp's name of a native architecture (containerd's `nativeToSeccomp`).
fn seccomp_arch(arch: &str) -> Option<&'static str> {
    Some(match arch {
        "amd64" => "SCMP_ARCH_X86_64",
        "386" => "SCMP_ARCH_X86",
        "arm64" => "SCMP_ARCH_AARCH64",
        "arm" => "SCMP_ARCH_ARM",
        "ppc64le" => "SCMP_ARCH_PPC64LE",
        "s390x" => "SCMP_ARCH_S390X",
        "riscv64" => "SCMP_ARCH_RISCV64",
        _ => return None,
    })
}

/// Every container may make these calls under containerd's default profile.
const ALLOWED: &[&str] = &[
    "accept",
    "accept4",
    "access",
    "adjtimex",
    "alarm",
    "bind",
    "brk",
    "capget",
    "capset",
    "chdir",
    "chmod",
    "chown",
    "chown32",
    "clock_adjtime",
    "clock_adjtime64",
    "clock_getres",
    "clock_getres_time64",
    "clock_gettime",
    "clock_gettime64",
    "clock_nanosleep",
    "clock_nanosleep_time64",
    "close",
    "close_range",
    "connect",
    "copy_file_range",
    "creat",
    "dup",
    "dup2",
    "dup3",
    "epoll_create",
    "epoll_create1",
    "epoll_ctl",
    "epoll_ctl_old",
    "epoll_pwait",
    "epoll_pwait2",
    "epoll_wait",
    "epoll_wait_old",
    "eventfd",
    "eventfd2",
    "execve",
    "execveat",
    "exit",
    "exit_group",
    "faccessat",
    "faccessat2",
    "fadvise64",
    "fadvise64_64",
    "fallocate",
    "fanotify_mark",
    "fchdir",
    "fchmod",
    "fchmodat",
    "fchown",
    "fchown32",
    "fchownat",
    "fcntl",
    "fcntl64",
    "fdatasync",
    "fgetxattr",
    "flistxattr",
    "flock",
    "fork",
    "fremovexattr",
    "fsetxattr",
    "fstat",
    "fstat64",
    "fstatat64",
    "fstatfs",
    "fstatfs64",
    "fsync",
    "ftruncate",
    "ftruncate64",
    "futex",
    "futex_time64",
    "futex_waitv",
    "futimesat",
    "getcpu",
    "getcwd",
    "getdents",
    "getdents64",
    "getegid",
    "getegid32",
    "geteuid",
    "geteuid32",
    "getgid",
    "getgid32",
    "getgroups",
    "getgroups32",
    "getitimer",
    "getpeername",
    "getpgid",
    "getpgrp",
    "getpid",
    "getppid",
    "getpriority",
    "getrandom",
    "getresgid",
    "getresgid32",
    "getresuid",
    "getresuid32",
    "getrlimit",
    "get_robust_list",
    "getrusage",
    "getsid",
    "getsockname",
    "getsockopt",
    "get_thread_area",
    "gettid",
    "gettimeofday",
    "getuid",
    "getuid32",
    "getxattr",
    "inotify_add_watch",
    "inotify_init",
    "inotify_init1",
    "inotify_rm_watch",
    "io_cancel",
    "ioctl",
    "io_destroy",
    "io_getevents",
    "io_pgetevents",
    "io_pgetevents_time64",
    "ioprio_get",
    "ioprio_set",
    "io_setup",
    "io_submit",
    "io_uring_enter",
    "io_uring_register",
    "io_uring_setup",
    "ipc",
    "kill",
    "landlock_add_rule",
    "landlock_create_ruleset",
    "landlock_restrict_self",
    "lchown",
    "lchown32",
    "lgetxattr",
    "link",
    "linkat",
    "listen",
    "listxattr",
    "llistxattr",
    "_llseek",
    "lremovexattr",
    "lseek",
    "lsetxattr",
    "lstat",
    "lstat64",
    "madvise",
    "membarrier",
    "memfd_create",
    "memfd_secret",
    "mincore",
    "mkdir",
    "mkdirat",
    "mknod",
    "mknodat",
    "mlock",
    "mlock2",
    "mlockall",
    "mmap",
    "mmap2",
    "mprotect",
    "mq_getsetattr",
    "mq_notify",
    "mq_open",
    "mq_timedreceive",
    "mq_timedreceive_time64",
    "mq_timedsend",
    "mq_timedsend_time64",
    "mq_unlink",
    "mremap",
    "msgctl",
    "msgget",
    "msgrcv",
    "msgsnd",
    "msync",
    "munlock",
    "munlockall",
    "munmap",
    "nanosleep",
    "newfstatat",
    "_newselect",
    "open",
    "openat",
    "openat2",
    "pause",
    "pidfd_open",
    "pidfd_send_signal",
    "pipe",
    "pipe2",
    "poll",
    "ppoll",
    "ppoll_time64",
    "prctl",
    "pread64",
    "preadv",
    "preadv2",
    "prlimit64",
    "process_mrelease",
    "pselect6",
    "pselect6_time64",
    "pwrite64",
    "pwritev",
    "pwritev2",
    "read",
    "readahead",
    "readlink",
    "readlinkat",
    "readv",
    "recv",
    "recvfrom",
    "recvmmsg",
    "recvmmsg_time64",
    "recvmsg",
    "remap_file_pages",
    "removexattr",
    "rename",
    "renameat",
    "renameat2",
    "restart_syscall",
    "rmdir",
    "rseq",
    "rt_sigaction",
    "rt_sigpending",
    "rt_sigprocmask",
    "rt_sigqueueinfo",
    "rt_sigreturn",
    "rt_sigsuspend",
    "rt_sigtimedwait",
    "rt_sigtimedwait_time64",
    "rt_tgsigqueueinfo",
    "sched_getaffinity",
    "sched_getattr",
    "sched_getparam",
    "sched_get_priority_max",
    "sched_get_priority_min",
    "sched_getscheduler",
    "sched_rr_get_interval",
    "sched_rr_get_interval_time64",
    "sched_setaffinity",
    "sched_setattr",
    "sched_setparam",
    "sched_setscheduler",
    "sched_yield",
    "seccomp",
    "select",
    "semctl",
    "semget",
    "semop",
    "semtimedop",
    "semtimedop_time64",
    "send",
    "sendfile",
    "sendfile64",
    "sendmmsg",
    "sendmsg",
    "sendto",
    "setfsgid",
    "setfsgid32",
    "setfsuid",
    "setfsuid32",
    "setgid",
    "setgid32",
    "setgroups",
    "setgroups32",
    "setitimer",
    "setpgid",
    "setpriority",
    "setregid",
    "setregid32",
    "setresgid",
    "setresgid32",
    "setresuid",
    "setresuid32",
    "setreuid",
    "setreuid32",
    "setrlimit",
    "set_robust_list",
    "setsid",
    "setsockopt",
    "set_thread_area",
    "set_tid_address",
    "setuid",
    "setuid32",
    "setxattr",
    "shmat",
    "shmctl",
    "shmdt",
    "shmget",
    "shutdown",
    "sigaltstack",
    "signalfd",
    "signalfd4",
    "sigprocmask",
    "sigreturn",
    "socket",
    "socketcall",
    "socketpair",
    "splice",
    "stat",
    "stat64",
    "statfs",
    "statfs64",
    "statx",
    "symlink",
    "symlinkat",
    "sync",
    "sync_file_range",
    "syncfs",
    "sysinfo",
    "tee",
    "tgkill",
    "time",
    "timer_create",
    "timer_delete",
    "timer_getoverrun",
    "timer_gettime",
    "timer_gettime64",
    "timer_settime",
    "timer_settime64",
    "timerfd_create",
    "timerfd_gettime",
    "timerfd_gettime64",
    "timerfd_settime",
    "timerfd_settime64",
    "times",
    "tkill",
    "truncate",
    "truncate64",
    "ugetrlimit",
    "umask",
    "uname",
    "unlink",
    "unlinkat",
    "utime",
    "utimensat",
    "utimensat_time64",
    "utimes",
    "vfork",
    "vmsplice",
    "wait4",
    "waitid",
    "waitpid",
    "write",
    "writev",
];

/// `personality` values every container may set (Linux, `UNAME26`, `READ_IMPLIES_EXEC`
/// combinations, and the query `0xffffffff`).
const PERSONALITIES: [u64; 5] = [0x0, 0x0008, 0x20000, 0x20008, 0xffff_ffff];

/// Calls a capability in the container's bounding set allows (containerd's list).
const BY_CAPABILITY: &[(&str, &[&str])] = &[
    ("CAP_DAC_READ_SEARCH", &["open_by_handle_at"]),
    (
        "CAP_SYS_ADMIN",
        &[
            "bpf",
            "clone",
            "clone3",
            "fanotify_init",
            "fsconfig",
            "fsmount",
            "fsopen",
            "fspick",
            "lookup_dcookie",
            "mount",
            "mount_setattr",
            "move_mount",
            "name_to_handle_at",
            "open_tree",
            "perf_event_open",
            "quotactl",
            "quotactl_fd",
            "setdomainname",
            "sethostname",
            "setns",
            "syslog",
            "umount",
            "umount2",
            "unshare",
        ],
    ),
    ("CAP_SYS_BOOT", &["reboot"]),
    ("CAP_SYS_CHROOT", &["chroot"]),
    (
        "CAP_SYS_MODULE",
        &["delete_module", "init_module", "finit_module"],
    ),
    ("CAP_SYS_PACCT", &["acct"]),
    (
        "CAP_SYS_PTRACE",
        &[
            "kcmp",
            "pidfd_getfd",
            "process_madvise",
            "process_vm_readv",
            "process_vm_writev",
            "ptrace",
        ],
    ),
    ("CAP_SYS_RAWIO", &["iopl", "ioperm"]),
    (
        "CAP_SYS_TIME",
        &["settimeofday", "stime", "clock_settime", "clock_settime64"],
    ),
    ("CAP_SYS_TTY_CONFIG", &["vhangup"]),
    ("CAP_SYSLOG", &["syslog"]),
    ("CAP_BPF", &["bpf"]),
    ("CAP_PERFMON", &["perf_event_open"]),
];

/// The namespace flags `clone` may not be given without CAP_SYS_ADMIN.
const CLONE_NAMESPACES: u64 = 0x0002_0000 // CLONE_NEWNS
    | 0x0400_0000 // CLONE_NEWUTS
    | 0x0800_0000 // CLONE_NEWIPC
    | 0x1000_0000 // CLONE_NEWUSER
    | 0x2000_0000 // CLONE_NEWPID
    | 0x4000_0000 // CLONE_NEWNET
    | 0x0200_0000; // CLONE_NEWCGROUP

const ENOSYS: u32 = 38;

fn capability_name(c: &Capability) -> String {
    serde_json::to_value(c)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

fn allow(names: &[&str]) -> Value {
    json!({"names": names, "action": "SCMP_ACT_ALLOW"})
}

/// containerd's default profile (`contrib/seccomp.DefaultProfile`) for a container whose
/// bounding set is `caps`, on `node`.
pub fn default_profile(caps: &HashSet<Capability>, node: Node) -> LinuxSeccomp {
    let caps: HashSet<String> = caps.iter().map(capability_name).collect();
    let mut syscalls = vec![allow(ALLOWED)];
    for value in PERSONALITIES {
        syscalls.push(json!({"names": ["personality"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": 0, "value": value, "op": "SCMP_CMP_EQ"}]}));
    }
    if node.kernel >= (4, 8) {
        syscalls.push(allow(&["ptrace"]));
    }
    match node.arch {
        "ppc64le" => syscalls.push(allow(&["sync_file_range2", "swapcontext"])),
        "arm" | "arm64" => syscalls.push(allow(&[
            "arm_fadvise64_64",
            "arm_sync_file_range",
            "sync_file_range2",
            "breakpoint",
            "cacheflush",
            "set_tls",
        ])),
        "amd64" => syscalls.push(allow(&["arch_prctl", "modify_ldt"])),
        "386" => syscalls.push(allow(&["modify_ldt"])),
        "s390" | "s390x" => syscalls.push(allow(&[
            "s390_pci_mmio_read",
            "s390_pci_mmio_write",
            "s390_runtime_instr",
        ])),
        "riscv64" => syscalls.push(allow(&["riscv_flush_icache"])),
        _ => {}
    }
    // In the order containerd walks the bounding set: its own list's order here.
    for (cap, names) in BY_CAPABILITY {
        if caps.contains(*cap) {
            syscalls.push(allow(names));
        }
    }
    if !caps.contains("CAP_SYS_ADMIN") {
        let index = if matches!(node.arch, "s390" | "s390x") {
            1
        } else {
            0
        };
        syscalls.push(json!({"names": ["clone"], "action": "SCMP_ACT_ALLOW",
            "args": [{"index": index, "value": CLONE_NAMESPACES, "valueTwo": 0,
                      "op": "SCMP_CMP_MASKED_EQ"}]}));
        // ENOSYS, not EPERM: a libc then falls back to clone (moby#42681).
        syscalls.push(json!({"names": ["clone3"], "action": "SCMP_ACT_ERRNO",
            "errnoRet": ENOSYS}));
    }
    let profile = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": arches(node.arch),
        "syscalls": syscalls,
    });
    serde_json::from_value(profile).expect("the default profile is a valid LinuxSeccomp")
}

/// A profile file as Docker and containerd write them.
#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileFile {
    default_action: String,
    #[serde(default)]
    default_errno_ret: Option<u32>,
    #[serde(default)]
    architectures: Vec<String>,
    #[serde(default)]
    arch_map: Vec<ArchMap>,
    #[serde(default)]
    flags: Vec<String>,
    #[serde(default)]
    listener_path: Option<String>,
    #[serde(default)]
    listener_metadata: Option<String>,
    #[serde(default)]
    syscalls: Vec<ProfileSyscall>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ArchMap {
    architecture: String,
    #[serde(default)]
    sub_architectures: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct ProfileSyscall {
    #[serde(default)]
    name: String,
    #[serde(default)]
    names: Vec<String>,
    action: String,
    #[serde(default)]
    errno_ret: Option<u32>,
    #[serde(default)]
    args: Vec<Value>,
    #[serde(default)]
    includes: Filter,
    #[serde(default)]
    excludes: Filter,
}

#[derive(Debug, Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Filter {
    #[serde(default)]
    caps: Vec<String>,
    #[serde(default)]
    arches: Vec<String>,
    #[serde(default)]
    min_kernel: Option<String>,
}

/// Loads the profile at `path` for a container whose bounding set is `caps`
/// (containerd's `LoadProfile` and `setupSeccomp`).
pub fn load_profile(
    path: &Path,
    caps: &HashSet<Capability>,
    node: Node,
) -> Result<LinuxSeccomp, SeccompError> {
    let fail = |reason: String| SeccompError::Load {
        path: path.to_path_buf(),
        reason,
    };
    let text = std::fs::read(path).map_err(|e| fail(format!("open {}: {e}", path.display())))?;
    let file: ProfileFile = serde_json::from_slice(&text)
        .map_err(|e| fail(format!("decoding seccomp profile failed: {e}")))?;
    convert(file, caps, node).map_err(fail)
}

fn convert(
    file: ProfileFile,
    caps: &HashSet<Capability>,
    node: Node,
) -> Result<LinuxSeccomp, String> {
    if !file.architectures.is_empty() && !file.arch_map.is_empty() {
        return Err(
            "'architectures' and 'archMap' were specified in the seccomp profile, \
                    use either 'architectures' or 'archMap'"
                .into(),
        );
    }
    let mut architectures = file.architectures.clone();
    if let Some(native) = seccomp_arch(node.arch) {
        if let Some(m) = file.arch_map.iter().find(|m| m.architecture == native) {
            architectures.push(m.architecture.clone());
            architectures.extend(m.sub_architectures.iter().cloned());
        }
    }
    let caps: HashSet<String> = caps.iter().map(capability_name).collect();
    let kernel_at_least = |v: &Option<String>| -> Result<bool, String> {
        match v {
            None => Ok(true),
            Some(v) => {
                let (major, minor) = v
                    .split_once('.')
                    .and_then(|(a, b)| Some((a.parse::<u32>().ok()?, b.parse::<u32>().ok()?)))
                    .ok_or_else(|| format!("invalid kernel version {v:?}"))?;
                Ok(node.kernel >= (major, minor))
            }
        }
    };
    let mut syscalls = Vec::new();
    for call in file.syscalls {
        let ex = &call.excludes;
        if ex.arches.iter().any(|a| a == node.arch)
            || ex.caps.iter().any(|c| caps.contains(c))
            || (ex.min_kernel.is_some() && kernel_at_least(&ex.min_kernel)?)
        {
            continue;
        }
        let inc = &call.includes;
        if (!inc.arches.is_empty() && !inc.arches.iter().any(|a| a == node.arch))
            || !inc.caps.iter().all(|c| caps.contains(c))
            || !kernel_at_least(&inc.min_kernel)?
        {
            continue;
        }
        if !call.name.is_empty() && !call.names.is_empty() {
            return Err("'name' and 'names' were specified in the seccomp profile, \
                        use either 'name' or 'names'"
                .into());
        }
        let names = if call.name.is_empty() {
            call.names
        } else {
            vec![call.name]
        };
        if names.is_empty() {
            continue;
        }
        let mut rule = json!({"names": names, "action": call.action});
        if !call.args.is_empty() {
            rule["args"] = Value::Array(call.args);
        }
        if let Some(errno) = call.errno_ret {
            rule["errnoRet"] = errno.into();
        }
        syscalls.push(rule);
    }
    let mut profile = json!({
        "defaultAction": file.default_action,
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(errno) = file.default_errno_ret {
        profile["defaultErrnoRet"] = errno.into();
    }
    if !file.flags.is_empty() {
        profile["flags"] = json!(file.flags);
    }
    if let Some(p) = file.listener_path {
        profile["listenerPath"] = p.into();
    }
    if let Some(m) = file.listener_metadata {
        profile["listenerMetadata"] = m.into();
    }
    serde_json::from_value(profile).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMD64: Node = Node {
        arch: "amd64",
        kernel: (6, 1),
    };

    fn names(profile: &LinuxSeccomp) -> Vec<String> {
        profile
            .syscalls()
            .iter()
            .flatten()
            .filter(|s| s.args().as_ref().is_none_or(|a| a.is_empty()))
            .filter(|s| format!("{:?}", s.action()) == "ScmpActAllow")
            .flat_map(|s| s.names().clone())
            .collect()
    }

    fn caps(names: &[&str]) -> HashSet<Capability> {
        names
            .iter()
            .map(|n| serde_json::from_value(json!(n)).unwrap())
            .collect()
    }

    #[test]
    fn kernel_releases_parse() {
        assert_eq!(kernel_version("6.1.0-28-amd64\n"), (6, 1));
        assert_eq!(
            kernel_version("5.15.167.4-microsoft-standard-WSL2"),
            (5, 15)
        );
        assert_eq!(kernel_version(""), (0, 0));
    }

    #[test]
    fn the_default_profile_allows_by_capability_and_architecture() {
        let plain = default_profile(&caps(&["CAP_CHOWN", "CAP_KILL"]), AMD64);
        let json = serde_json::to_value(&plain).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(
            json["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"])
        );
        let allowed = names(&plain);
        for call in ["read", "arch_prctl", "ptrace", "io_uring_setup"] {
            assert!(allowed.iter().any(|n| n == call), "{call} allowed");
        }
        for call in [
            "mount",
            "unshare",
            "reboot",
            "chroot",
            "setns",
            "kexec_load",
        ] {
            assert!(!allowed.iter().any(|n| n == call), "{call} refused");
        }
        // clone only without namespace flags, clone3 answers ENOSYS.
        let rules = json["syscalls"].as_array().unwrap();
        let clone = rules
            .iter()
            .find(|r| r["names"] == json!(["clone"]))
            .unwrap();
        assert_eq!(clone["args"][0]["value"], CLONE_NAMESPACES);
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
        let clone3 = rules
            .iter()
            .find(|r| r["names"] == json!(["clone3"]))
            .unwrap();
        assert_eq!(
            (&clone3["action"], &clone3["errnoRet"]),
            (&json!("SCMP_ACT_ERRNO"), &json!(38))
        );

        let admin = default_profile(&caps(&["CAP_SYS_ADMIN", "CAP_SYS_CHROOT"]), AMD64);
        let allowed = names(&admin);
        for call in ["mount", "unshare", "clone", "clone3", "chroot"] {
            assert!(
                allowed.iter().any(|n| n == call),
                "{call} allowed with its capability"
            );
        }
        let arm = default_profile(
            &HashSet::new(),
            Node {
                arch: "arm64",
                kernel: (4, 4),
            },
        );
        let allowed = names(&arm);
        assert!(allowed.iter().any(|n| n == "set_tls"));
        assert!(!allowed.iter().any(|n| n == "arch_prctl" || n == "ptrace"));
    }

    #[test]
    fn localhost_profiles_load_in_the_docker_format() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.json");
        std::fs::write(
            &path,
            json!({
                "defaultAction": "SCMP_ACT_LOG",
                "archMap": [{"architecture": "SCMP_ARCH_X86_64",
                             "subArchitectures": ["SCMP_ARCH_X86"]},
                            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": []}],
                "syscalls": [
                    {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1},
                    {"name": "reboot", "action": "SCMP_ACT_ALLOW",
                     "includes": {"caps": ["CAP_SYS_BOOT"]}},
                    {"names": ["chroot"], "action": "SCMP_ACT_ALLOW",
                     "excludes": {"arches": ["amd64"]}},
                    {"names": ["bpf"], "action": "SCMP_ACT_ALLOW",
                     "includes": {"minKernel": "7.0"}},
                ]
            })
            .to_string(),
        )
        .unwrap();
        let profile = load_profile(&path, &HashSet::new(), AMD64).unwrap();
        let json = serde_json::to_value(&profile).unwrap();
        assert_eq!(json["defaultAction"], "SCMP_ACT_LOG");
        assert_eq!(
            json["architectures"],
            json!(["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"])
        );
        assert_eq!(
            json["syscalls"],
            json!([{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}])
        );
        let booted = load_profile(&path, &caps(&["CAP_SYS_BOOT"]), AMD64).unwrap();
        assert_eq!(booted.syscalls().as_ref().unwrap().len(), 2);

        let missing = load_profile(&dir.path().join("nope.json"), &HashSet::new(), AMD64);
        let err = missing.unwrap_err().to_string();
        assert!(
            err.starts_with("failed to generate seccomp spec opts: cannot load seccomp profile"),
            "{err}"
        );
        assert!(err.to_lowercase().contains("no such file"), "{err}");
        std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
        assert!(load_profile(&path, &HashSet::new(), AMD64).is_err());
        std::fs::write(&path, r#"{"defaultAction": "SCMP_ACT_ALLOW", "architectures": ["SCMP_ARCH_X86_64"], "archMap": [{"architecture": "SCMP_ARCH_X86_64"}]}"#).unwrap();
        let err = load_profile(&path, &HashSet::new(), AMD64)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("use either 'architectures' or 'archMap'"),
            "{err}"
        );
    }
}
