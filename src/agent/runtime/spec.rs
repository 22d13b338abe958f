//! Builds a container's OCI runtime spec from its `ContainerConfig` and image config:
//! runc's default spec (mounts, masked and read-only paths) with containerd's default
//! capabilities, then the pod's command, environment, namespaces, mounts, cgroup and
//! security context (user and groups, capabilities added and dropped, privileged, no new
//! privileges, seccomp).

use std::collections::HashSet;
use std::path::PathBuf;

use oci_spec::image::Config as ImageConfig;
use oci_spec::runtime::{
    Capability, LinuxBuilder, LinuxCapabilitiesBuilder, LinuxCpuBuilder, LinuxDevice,
    LinuxDeviceBuilder, LinuxDeviceCgroup, LinuxDeviceCgroupBuilder, LinuxDeviceType,
    LinuxMemoryBuilder, LinuxNamespace, LinuxNamespaceBuilder, LinuxNamespaceType,
    LinuxResourcesBuilder, Mount, MountBuilder, ProcessBuilder, Spec, UserBuilder,
};

use super::seccomp::{Node, SeccompProfile};
use super::users::{ProcessUser, UserDb};
use super::{ContainerConfig, DeviceNode, NamespaceMode, Result, RuntimeError};

/// PATH set when the image does not set one (as containerd does).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The capabilities containerd (and Docker) grant a non-privileged container.
pub const DEFAULT_CAPABILITIES: [Capability; 14] = [
    Capability::Chown,
    Capability::DacOverride,
    Capability::Fsetid,
    Capability::Fowner,
    Capability::Mknod,
    Capability::NetRaw,
    Capability::Setgid,
    Capability::Setuid,
    Capability::Setfcap,
    Capability::Setpcap,
    Capability::NetBindService,
    Capability::SysChroot,
    Capability::Kill,
    Capability::AuditWrite,
];

/// Every capability Linux has (kernel 6.x), at its number (its bit in a capability
/// mask such as `/proc/self/status`'s `CapEff`).
const ALL_CAPABILITIES: [&str; 41] = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/// The capabilities whose bits are set in `mask`.
pub fn capabilities_in_mask(mask: u64) -> HashSet<Capability> {
    ALL_CAPABILITIES
        .iter()
        .enumerate()
        .filter(|(bit, _)| mask & (1 << bit) != 0)
        .filter_map(|(_, name)| parse_capability(name))
        .collect()
}

/// A capability as Kubernetes names it (`NET_ADMIN`; any case, `CAP_` prefix allowed);
/// `None` for a name Linux does not have (containerd hands those to runc, which skips
/// them).
fn parse_capability(name: &str) -> Option<Capability> {
    serde_json::from_value(serde_json::Value::String(name.to_string())).ok()
}

/// The capabilities a container's process gets: all the agent has (containerd's
/// `cap.Current()`; every one Linux has when unknown) when privileged, else containerd's
/// default set changed by `securityContext.capabilities` in containerd's order (`add:
/// [ALL]`, then `drop: [ALL]`, then each named one added, then each named one dropped;
/// `ALL` in any case).
pub fn capability_set(config: &ContainerConfig) -> HashSet<Capability> {
    let all = || capabilities_in_mask(config.host_capabilities.unwrap_or(u64::MAX));
    if config.privileged {
        return all();
    }
    let changes = &config.capabilities;
    let is_all = |c: &&String| c.eq_ignore_ascii_case("ALL");
    let mut caps: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
    if changes.add.iter().any(|c| is_all(&c)) {
        caps = all();
    }
    if changes.drop.iter().any(|c| is_all(&c)) {
        caps.clear();
    }
    caps.extend(
        changes
            .add
            .iter()
            .filter(|c| !is_all(c))
            .filter_map(|c| parse_capability(c)),
    );
    for c in changes
        .drop
        .iter()
        .filter(|c| !is_all(c))
        .filter_map(|c| parse_capability(c))
    {
        caps.remove(&c);
    }
    caps
}

fn linux_device(d: &DeviceNode) -> std::result::Result<LinuxDevice, oci_spec::OciSpecError> {
    LinuxDeviceBuilder::default()
        .path(PathBuf::from(&d.path))
        .typ(if d.char_device {
            LinuxDeviceType::C
        } else {
            LinuxDeviceType::B
        })
        .major(d.major)
        .minor(d.minor)
        .file_mode(d.file_mode)
        .uid(d.uid)
        .gid(d.gid)
        .build()
}

/// The device cgroup: nothing but runc's default devices, or every device for a
/// privileged container; the container's own device nodes allowed either way.
fn device_rules(
    config: &ContainerConfig,
) -> std::result::Result<Vec<LinuxDeviceCgroup>, oci_spec::OciSpecError> {
    let mut rules = vec![LinuxDeviceCgroupBuilder::default()
        .allow(config.privileged)
        .access("rwm")
        .build()?];
    for d in &config.devices {
        rules.push(LinuxDeviceCgroup::from(&linux_device(d)?));
    }
    Ok(rules)
}

/// The full argv: Kubernetes `command`/`args` over the image's Entrypoint/Cmd.
pub fn process_args(config: &ContainerConfig, image: Option<&ImageConfig>) -> Vec<String> {
    if !config.command.is_empty() {
        return config.command.iter().chain(&config.args).cloned().collect();
    }
    let entrypoint = image
        .and_then(|i| i.entrypoint().clone())
        .unwrap_or_default();
    let cmd = if config.args.is_empty() {
        image.and_then(|i| i.cmd().clone()).unwrap_or_default()
    } else {
        config.args.clone()
    };
    entrypoint.into_iter().chain(cmd).collect()
}

/// Image environment, then the container's; a later value for a name replaces the earlier
/// one in place. PATH is added when neither sets it, HOSTNAME when a hostname is given.
pub fn process_env(config: &ContainerConfig, image: Option<&ImageConfig>) -> Vec<String> {
    let mut env: Vec<(String, String)> = Vec::new();
    let mut set = |name: &str, value: &str| match env.iter_mut().find(|(n, _)| n == name) {
        Some(slot) => slot.1 = value.to_string(),
        None => env.push((name.to_string(), value.to_string())),
    };
    if !image
        .and_then(|i| i.env().as_ref())
        .is_some_and(|e| e.iter().any(|kv| kv.starts_with("PATH=")))
    {
        set("PATH", DEFAULT_PATH);
    }
    for kv in image.and_then(|i| i.env().clone()).unwrap_or_default() {
        let (name, value) = kv.split_once('=').unwrap_or((&kv, ""));
        set(name, value);
    }
    if let Some(h) = &config.hostname {
        set("HOSTNAME", h);
    }
    // As containerd's CRI for a container with a tty (the pod's own env still wins).
    if config.tty {
        set("TERM", "xterm");
    }
    for (name, value) in &config.env {
        set(name, value);
    }
    env.into_iter().map(|(n, v)| format!("{n}={v}")).collect()
}

/// The process's user: the pod's security context over the image's `User`, with groups
/// from the image's `/etc/passwd` and `/etc/group` in `users` (see [`super::users`]).
pub fn process_user(
    config: &ContainerConfig,
    image: Option<&ImageConfig>,
    users: &UserDb,
) -> Result<ProcessUser> {
    let image_user = image.and_then(|i| i.user().clone()).unwrap_or_default();
    super::users::resolve(&config.user, &image_user, users).map_err(|_| RuntimeError::NoSuchUser {
        user: image_user.split(':').next().unwrap_or("").to_string(),
    })
}

/// The cgroup path (relative to each hierarchy's root) of this container.
pub fn cgroup_path(config: &ContainerConfig) -> String {
    let parent = config.cgroup_parent.trim_end_matches('/');
    let parent = if parent.starts_with('/') {
        parent.to_string()
    } else {
        format!("/{parent}")
    };
    format!("{}/{}", parent.trim_end_matches('/'), config.id)
}

fn namespace(typ: LinuxNamespaceType, mode: &NamespaceMode) -> Option<LinuxNamespace> {
    let builder = LinuxNamespaceBuilder::default().typ(typ);
    match mode {
        NamespaceMode::Host => None,
        NamespaceMode::New => Some(builder.build().expect("namespace has its type")),
        NamespaceMode::Path(p) => Some(builder.path(p.clone()).build().expect("namespace")),
    }
}

fn bind_mount(m: &super::BindMount) -> Mount {
    let mode = if m.read_only { "ro" } else { "rw" };
    MountBuilder::default()
        .destination(PathBuf::from(&m.container_path))
        .typ("bind")
        .source(m.host_path.clone())
        .options(vec!["rbind".into(), "rprivate".into(), mode.into()])
        .build()
        .expect("mount has every field")
}

/// Builds the runtime spec. Pure: reads nothing from the host.
pub fn build_spec(
    config: &ContainerConfig,
    image: Option<&ImageConfig>,
    users: &UserDb,
) -> Result<Spec> {
    let spec_err = |reason: String| RuntimeError::Spec {
        id: config.id.clone(),
        reason,
    };
    let args = process_args(config, image);
    if args.is_empty() {
        return Err(spec_err(
            "no command: the image has no Entrypoint or Cmd and the container no command"
                .to_string(),
        ));
    }
    let user = process_user(config, image, users)?;
    let cwd = config
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| image.and_then(|i| i.working_dir().clone()))
        .filter(|w| !w.is_empty())
        .unwrap_or_else(|| "/".to_string());
    if !cwd.starts_with('/') {
        return Err(spec_err(format!(
            "working directory {cwd:?} is not absolute"
        )));
    }
    let caps = capability_set(config);
    let bounding = caps.clone();
    // No inheritable or ambient capabilities (containerd since 1.6.18, and CRI's
    // `WithoutAmbientCaps`): a process that switches to another user loses its
    // capabilities, as Kubernetes expects.
    let capabilities = LinuxCapabilitiesBuilder::default()
        .bounding(caps.clone())
        .effective(caps.clone())
        .permitted(caps)
        .inheritable(HashSet::new())
        .ambient(HashSet::new())
        .build()
        .map_err(|e| spec_err(e.to_string()))?;
    let process = ProcessBuilder::default()
        .terminal(config.tty)
        .user(
            UserBuilder::default()
                .uid(user.uid)
                .gid(user.gid)
                .additional_gids(user.additional_gids)
                .build()
                .map_err(|e| spec_err(e.to_string()))?,
        )
        .args(args)
        .env(process_env(config, image))
        .cwd(cwd)
        .capabilities(capabilities)
        .no_new_privileges(config.no_new_privileges)
        .build()
        .map_err(|e| spec_err(e.to_string()))?;
    let mut process = process;
    process.set_oom_score_adj(config.oom_score_adj);

    let ns = &config.namespaces;
    let namespaces: Vec<LinuxNamespace> = [
        namespace(LinuxNamespaceType::Pid, &ns.pid),
        namespace(LinuxNamespaceType::Mount, &NamespaceMode::New),
        namespace(LinuxNamespaceType::Cgroup, &NamespaceMode::New),
        namespace(LinuxNamespaceType::Network, &ns.network),
        namespace(LinuxNamespaceType::Ipc, &ns.ipc),
        namespace(LinuxNamespaceType::Uts, &ns.uts),
    ]
    .into_iter()
    .flatten()
    .collect();

    let mut resources = LinuxResourcesBuilder::default()
        .devices(device_rules(config).map_err(|e| spec_err(e.to_string()))?);
    let r = &config.resources;
    if let Some(limit) = r.memory_limit_bytes {
        // swap = limit: a memory limit is not escaped into swap (as the kubelet does).
        resources = resources.memory(
            LinuxMemoryBuilder::default()
                .limit(limit)
                .swap(limit)
                .build()
                .map_err(|e| spec_err(e.to_string()))?,
        );
    }
    if r.cpu_shares.is_some() || r.cpu_quota.is_some() {
        let mut cpu = LinuxCpuBuilder::default();
        if let Some(s) = r.cpu_shares {
            cpu = cpu.shares(s);
        }
        if let Some(q) = r.cpu_quota {
            cpu = cpu
                .quota(q)
                .period(r.cpu_period.unwrap_or(super::CPU_PERIOD_US));
        }
        resources = resources.cpu(cpu.build().map_err(|e| spec_err(e.to_string()))?);
    }
    let defaults = oci_spec::runtime::Linux::default();
    // A privileged container sees the whole of /proc and /sys (containerd's
    // `WithPrivileged`: no masked or read-only paths).
    let (masked, readonly) = if config.privileged {
        (Vec::new(), Vec::new())
    } else {
        (
            defaults.masked_paths().clone().unwrap_or_default(),
            defaults.readonly_paths().clone().unwrap_or_default(),
        )
    };
    let devices = config
        .devices
        .iter()
        .map(linux_device)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| spec_err(e.to_string()))?;
    let seccomp = match (&config.seccomp, config.privileged) {
        (_, true) | (SeccompProfile::Unconfined, _) => None,
        (SeccompProfile::RuntimeDefault, false) => {
            Some(super::seccomp::default_profile(&bounding, Node::this()))
        }
        (SeccompProfile::Localhost(path), false) => {
            Some(super::seccomp::load_profile(path, &bounding, Node::this())?)
        }
    };
    let mut linux = LinuxBuilder::default()
        .namespaces(namespaces)
        .cgroups_path(PathBuf::from(cgroup_path(config)))
        .resources(resources.build().map_err(|e| spec_err(e.to_string()))?)
        .masked_paths(masked)
        .readonly_paths(readonly)
        .devices(devices)
        .build()
        .map_err(|e| spec_err(e.to_string()))?;
    linux.set_seccomp(seccomp);

    let mut mounts = oci_spec::runtime::get_default_mounts();
    if config.privileged {
        // Writable sysfs and cgroupfs (containerd's `WithWriteableSysfs`,
        // `WithWriteableCgroupfs`).
        for m in &mut mounts {
            if matches!(m.typ().as_deref(), Some("sysfs" | "cgroup" | "cgroup2")) {
                let options = m.options().clone().unwrap_or_default();
                m.set_options(Some(
                    options
                        .into_iter()
                        .map(|o| if o == "ro" { "rw".to_string() } else { o })
                        .collect(),
                ));
            }
        }
    }
    // A mount of the pod's replaces a default one at the same place (e.g. /dev/shm).
    mounts.retain(|d| {
        !config
            .mounts
            .iter()
            .any(|m| d.destination() == &PathBuf::from(&m.container_path))
    });
    mounts.extend(config.mounts.iter().map(bind_mount));

    let mut spec = Spec::default();
    // runc's default spec has a read-only root; Kubernetes containers write to theirs.
    let root = oci_spec::runtime::RootBuilder::default()
        .path("rootfs")
        .readonly(config.read_only_root)
        .build()
        .map_err(|e| RuntimeError::Spec {
            id: config.id.clone(),
            reason: e.to_string(),
        })?;
    spec.set_root(Some(root));
    spec.set_process(Some(process));
    spec.set_linux(Some(linux));
    spec.set_mounts(Some(mounts));
    spec.set_annotations(None);
    spec.set_hostname(match (&ns.uts, &config.hostname) {
        // runc refuses a hostname without a UTS namespace of the container's own.
        (NamespaceMode::New, Some(h)) => Some(h.clone()),
        _ => None,
    });
    Ok(spec)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::agent::runtime::{BindMount, Resources};
    use oci_spec::image::ConfigBuilder;

    fn config() -> ContainerConfig {
        ContainerConfig::new("pod1-app", "busybox:test", "/var/log/x.log".into())
    }

    #[test]
    fn root_filesystem_is_writable_unless_asked_otherwise() {
        let img = image(&[], &["sh"]);
        let spec = build_spec(&config(), Some(&img), &UserDb::default()).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(false));
        let mut ro = config();
        ro.read_only_root = true;
        let spec = build_spec(&ro, Some(&img), &UserDb::default()).unwrap();
        assert_eq!(spec.root().as_ref().unwrap().readonly(), Some(true));
    }

    fn image(entrypoint: &[&str], cmd: &[&str]) -> ImageConfig {
        let mut b = ConfigBuilder::default()
            .env(vec!["PATH=/bin".to_string(), "A=image".to_string()])
            .working_dir("/srv".to_string());
        if !entrypoint.is_empty() {
            b = b.entrypoint(entrypoint.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        if !cmd.is_empty() {
            b = b.cmd(cmd.iter().map(|s| s.to_string()).collect::<Vec<_>>());
        }
        b.build().unwrap()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn command_and_args_follow_kubernetes_rules() {
        let img = image(&["/entry"], &["default"]);
        let mut c = config();
        assert_eq!(
            process_args(&c, Some(&img)),
            strings(&["/entry", "default"])
        );
        c.args = strings(&["mine"]);
        assert_eq!(process_args(&c, Some(&img)), strings(&["/entry", "mine"]));
        c.command = strings(&["/bin/sh", "-c"]);
        c.args = vec![];
        // command replaces Entrypoint and drops the image's Cmd
        assert_eq!(process_args(&c, Some(&img)), strings(&["/bin/sh", "-c"]));
        c.args = strings(&["echo hi"]);
        assert_eq!(
            process_args(&c, Some(&img)),
            strings(&["/bin/sh", "-c", "echo hi"])
        );
    }

    #[test]
    fn empty_command_is_an_error() {
        let err = build_spec(&config(), Some(&image(&[], &[])), &UserDb::default()).unwrap_err();
        assert!(err.to_string().contains("no command"), "{err}");
    }

    #[test]
    fn container_env_overrides_image_env_in_place() {
        let mut c = config();
        c.hostname = Some("web-0".into());
        c.env = vec![("A".into(), "pod".into()), ("B".into(), "x=y".into())];
        assert_eq!(
            process_env(&c, Some(&image(&[], &["sh"]))),
            strings(&["PATH=/bin", "A=pod", "HOSTNAME=web-0", "B=x=y"])
        );
        assert_eq!(
            process_env(&config(), None),
            vec![format!("PATH={DEFAULT_PATH}")]
        );
    }

    #[test]
    fn the_process_user_comes_from_the_image_and_the_security_context() {
        let mut img = image(&[], &["sh"]);
        img.set_user(Some("nginx".into()));
        let users = UserDb {
            passwd: Some(crate::agent::runtime::users::parse_passwd(
                "root:x:0:0::/:/bin/sh\nnginx:x:101:101::/:/bin/sh\n",
            )),
            group: Some(crate::agent::runtime::users::parse_group(
                "www:x:33:nginx\n",
            )),
        };
        let spec = build_spec(&config(), Some(&img), &users).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (101, 101));
        assert_eq!(user.additional_gids().as_deref(), Some(&[33, 101][..]));
        let err = build_spec(&config(), Some(&img), &UserDb::default()).unwrap_err();
        assert!(err.to_string().contains("no users found"), "{err}");
        let mut c = config();
        c.user.run_as_user = Some(7);
        c.user.run_as_group = Some(8);
        c.user.supplemental_groups = vec![2000];
        let spec = build_spec(&c, Some(&img), &UserDb::default()).unwrap();
        let user = spec.process().as_ref().unwrap().user().clone();
        assert_eq!((user.uid(), user.gid()), (7, 8));
        assert_eq!(user.additional_gids().as_deref(), Some(&[8, 2000][..]));
    }

    #[test]
    fn spec_carries_process_namespaces_cgroup_and_limits() {
        let mut c = config();
        c.cgroup_parent = "/orc/pod-uid/".into();
        c.hostname = Some("web-0".into());
        c.namespaces.network = NamespaceMode::Path("/run/netns/pod1".into());
        c.namespaces.ipc = NamespaceMode::Path("/proc/42/ns/ipc".into());
        c.resources = Resources {
            memory_limit_bytes: Some(64 << 20),
            ..Default::default()
        }
        .with_cpu_millis(Some(250), Some(500));
        c.oom_score_adj = Some(1000);
        let spec = build_spec(&c, Some(&image(&[], &["sh"])), &UserDb::default()).unwrap();

        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.oom_score_adj(), Some(1000));
        assert_eq!(process.args().as_ref().unwrap(), &strings(&["sh"]));
        assert_eq!(process.cwd(), &PathBuf::from("/srv"));
        assert_eq!(process.user().uid(), 0);
        assert!(!process.terminal().unwrap());
        let caps = process.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert!(caps
            .effective()
            .as_ref()
            .unwrap()
            .contains(&Capability::NetBindService));
        assert!(!caps
            .bounding()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        assert_eq!(spec.hostname().as_deref(), Some("web-0"));

        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(
            linux.cgroups_path().as_ref().unwrap(),
            &PathBuf::from("/orc/pod-uid/pod1-app")
        );
        let ns = linux.namespaces().as_ref().unwrap();
        let find = |t| ns.iter().find(|n| n.typ() == t).map(|n| n.path().clone());
        assert_eq!(find(LinuxNamespaceType::Pid), Some(None));
        assert_eq!(find(LinuxNamespaceType::Mount), Some(None));
        assert_eq!(
            find(LinuxNamespaceType::Network),
            Some(Some(PathBuf::from("/run/netns/pod1")))
        );
        assert_eq!(
            find(LinuxNamespaceType::Ipc),
            Some(Some(PathBuf::from("/proc/42/ns/ipc")))
        );
        assert_eq!(find(LinuxNamespaceType::Uts), Some(None));
        assert!(linux
            .masked_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/kcore".to_string()));
        assert!(linux
            .readonly_paths()
            .as_ref()
            .unwrap()
            .contains(&"/proc/sys".to_string()));

        let res = linux.resources().as_ref().unwrap();
        let mem = res.memory().as_ref().unwrap();
        assert_eq!((mem.limit(), mem.swap()), (Some(64 << 20), Some(64 << 20)));
        let cpu = res.cpu().as_ref().unwrap();
        assert_eq!(cpu.shares(), Some(256));
        assert_eq!((cpu.quota(), cpu.period()), (Some(50_000), Some(100_000)));
        let devices = res.devices().as_ref().unwrap();
        assert_eq!(devices.len(), 1);
        assert!(!devices[0].allow());
    }

    fn strings_of(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    fn with_changes(add: &[&str], drop: &[&str]) -> HashSet<Capability> {
        let mut c = config();
        c.capabilities = crate::agent::runtime::CapabilityChanges {
            add: strings_of(add),
            drop: strings_of(drop),
        };
        capability_set(&c)
    }

    #[test]
    fn capabilities_are_added_and_dropped_in_containerds_order() {
        let defaults: HashSet<Capability> = DEFAULT_CAPABILITIES.into_iter().collect();
        assert_eq!(with_changes(&[], &[]), defaults);
        // Sock Shop's services: everything dropped (lower case), one added back.
        assert_eq!(
            with_changes(&["NET_BIND_SERVICE"], &["all"]),
            HashSet::from([Capability::NetBindService])
        );
        // Pi-hole's NET_ADMIN; a `CAP_` prefix and lower case are read too.
        let added = with_changes(&["NET_ADMIN", "cap_sys_time"], &["CHOWN"]);
        assert!(added.contains(&Capability::NetAdmin));
        assert!(added.contains(&Capability::SysTime));
        assert!(!added.contains(&Capability::Chown));
        assert_eq!(added.len(), defaults.len() + 1);
        // `ALL` then a named drop: every capability but that one.
        let all_but_chown = with_changes(&["ALL"], &["CHOWN"]);
        assert_eq!(all_but_chown.len(), ALL_CAPABILITIES.len() - 1);
        assert!(all_but_chown.contains(&Capability::SysAdmin));
        // `ALL` is what the agent itself has (this host's bounding set may lack some).
        let mut c = config();
        c.capabilities.add = strings_of(&["all"]);
        c.host_capabilities = Some((1 << 12) | (1 << 21));
        assert_eq!(
            capability_set(&c),
            HashSet::from([Capability::NetAdmin, Capability::SysAdmin])
        );
        // A name Linux does not have changes nothing (runc skips it upstream).
        assert_eq!(with_changes(&["NOT_A_CAPABILITY"], &[]), defaults);
        // A named add survives `drop: [ALL]`; a named drop wins over its add.
        assert_eq!(
            with_changes(&["NET_RAW", "KILL"], &["ALL", "KILL"]),
            HashSet::from([Capability::NetRaw])
        );
    }

    #[test]
    fn privileged_containers_get_everything_unmasked_and_every_device() {
        let mut c = config();
        c.privileged = true;
        // Ignored when privileged, as containerd does.
        c.capabilities.drop = strings_of(&["ALL"]);
        c.devices = vec![crate::agent::runtime::DeviceNode {
            path: "/dev/ttyUSB0".into(),
            char_device: true,
            major: 188,
            minor: 0,
            file_mode: 0o660,
            uid: 0,
            gid: 20,
        }];
        let spec = build_spec(&c, Some(&image(&[], &["sh"])), &UserDb::default()).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(
            caps.bounding().as_ref().unwrap().len(),
            ALL_CAPABILITIES.len()
        );
        assert!(caps.ambient().as_ref().unwrap().is_empty());
        assert!(caps.inheritable().as_ref().unwrap().is_empty());
        assert!(caps
            .effective()
            .as_ref()
            .unwrap()
            .contains(&Capability::SysAdmin));
        let linux = spec.linux().as_ref().unwrap();
        assert_eq!(linux.masked_paths().as_ref().unwrap().len(), 0);
        assert_eq!(linux.readonly_paths().as_ref().unwrap().len(), 0);
        let rules = linux
            .resources()
            .as_ref()
            .unwrap()
            .devices()
            .clone()
            .unwrap();
        assert!(rules[0].allow(), "every device allowed: {rules:?}");
        let devices = linux.devices().clone().unwrap();
        assert_eq!(devices.len(), 1);
        assert_eq!(devices[0].path(), &PathBuf::from("/dev/ttyUSB0"));
        assert_eq!((devices[0].major(), devices[0].minor()), (188, 0));
        let mounts = spec.mounts().as_ref().unwrap();
        let sys = mounts
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/sys"))
            .unwrap();
        let options = sys.options().as_ref().unwrap();
        assert!(options.contains(&"rw".to_string()) && !options.contains(&"ro".to_string()));

        let plain = build_spec(&config(), Some(&image(&[], &["sh"])), &UserDb::default()).unwrap();
        let sys = plain
            .mounts()
            .as_ref()
            .unwrap()
            .iter()
            .find(|m| m.destination() == &PathBuf::from("/sys"))
            .cloned()
            .unwrap();
        assert!(sys.options().as_ref().unwrap().contains(&"ro".to_string()));
        assert!(!plain
            .process()
            .as_ref()
            .unwrap()
            .no_new_privileges()
            .unwrap());
        let caps = plain
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert!(caps.ambient().as_ref().unwrap().is_empty());

        c.host_capabilities = Some(u64::MAX >> 40);
        let spec = build_spec(&c, Some(&image(&[], &["sh"])), &UserDb::default()).unwrap();
        let caps = spec
            .process()
            .as_ref()
            .unwrap()
            .capabilities()
            .clone()
            .unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 24, "bits 0-23");
    }

    #[test]
    fn no_new_privileges_follows_the_config() {
        let mut c = config();
        c.no_new_privileges = true;
        let spec = build_spec(&c, Some(&image(&[], &["sh"])), &UserDb::default()).unwrap();
        assert_eq!(
            spec.process().as_ref().unwrap().no_new_privileges(),
            Some(true)
        );
    }

    #[test]
    fn host_namespaces_are_left_out_and_hostname_needs_own_uts() {
        let mut c = config();
        c.hostname = Some("node".into());
        c.namespaces.network = NamespaceMode::Host;
        c.namespaces.uts = NamespaceMode::Path("/proc/42/ns/uts".into());
        let spec = build_spec(&c, Some(&image(&[], &["sh"])), &UserDb::default()).unwrap();
        let ns = spec.linux().as_ref().unwrap().namespaces().clone().unwrap();
        assert!(!ns.iter().any(|n| n.typ() == LinuxNamespaceType::Network));
        assert_eq!(spec.hostname(), &None);
    }

    #[test]
    fn bind_mounts_replace_default_mounts_at_the_same_place() {
        let mut c = config();
        c.mounts = vec![
            BindMount {
                host_path: "/var/lib/orc/pods/x/etc-hosts".into(),
                container_path: "/etc/hosts".into(),
                read_only: false,
            },
            BindMount {
                host_path: "/var/lib/orc/pods/x/shm".into(),
                container_path: "/dev/shm".into(),
                read_only: true,
            },
        ];
        let spec = build_spec(&c, Some(&image(&[], &["sh"])), &UserDb::default()).unwrap();
        let mounts = spec.mounts().as_ref().unwrap();
        let at = |d: &str| {
            mounts
                .iter()
                .filter(|m| m.destination() == &PathBuf::from(d))
                .collect::<Vec<_>>()
        };
        assert_eq!(at("/proc").len(), 1);
        let shm = at("/dev/shm");
        assert_eq!(shm.len(), 1);
        assert_eq!(shm[0].typ().as_deref(), Some("bind"));
        assert_eq!(
            shm[0].options().as_ref().unwrap(),
            &strings(&["rbind", "rprivate", "ro"])
        );
        let hosts = at("/etc/hosts");
        assert_eq!(
            hosts[0].source().as_ref().unwrap(),
            &PathBuf::from("/var/lib/orc/pods/x/etc-hosts")
        );
        assert!(hosts[0]
            .options()
            .as_ref()
            .unwrap()
            .contains(&"rw".to_string()));
    }
}
