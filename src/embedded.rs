//! What the binary carries besides code: the repository's top-level `embedded/` folder
//! (systemd units, default manifests), compiled in so that `orc` needs no files beside
//! it. `orc embedded [NAME]` lists them or prints one (the install script writes the
//! units from it).

/// `(path under embedded/, contents)`.
pub const FILES: &[(&str, &str)] = &[
    (
        "systemd/orc.service",
        include_str!("../embedded/systemd/orc.service"),
    ),
    (
        "systemd/orc-agent.service",
        include_str!("../embedded/systemd/orc-agent.service"),
    ),
    ("rbac/bootstrap.yaml", RBAC_BOOTSTRAP_POLICY),
    ("storage/local-path.yaml", LOCAL_PATH_STORAGE_CLASS),
    ("ingress/orc.yaml", INGRESS_CLASS),
    ("manifests/runtimes.yaml", RUNTIME_CLASSES),
];

/// The IngressClass of the built-in ingress (`embedded/ingress/`), created at server
/// start when missing (`controllers::ingress`).
pub const INGRESS_CLASS: &str = include_str!("../embedded/ingress/orc.yaml");

/// The StorageClass of the built-in local-path provisioner (`embedded/storage/`),
/// created at server start when missing (`controllers::local_path`).
pub const LOCAL_PATH_STORAGE_CLASS: &str = include_str!("../embedded/storage/local-path.yaml");

/// The bootstrap RBAC policy (`embedded/rbac/bootstrap.yaml`), reconciled at every
/// server start (`apiserver::rbac::bootstrap`).
pub const RBAC_BOOTSTRAP_POLICY: &str = include_str!("../embedded/rbac/bootstrap.yaml");

/// The RuntimeClasses of the runtimes agents find beside runc (`embedded/manifests/`).
pub const RUNTIME_CLASSES: &str = include_str!("../embedded/manifests/runtimes.yaml");

/// orc's default manifests (`embedded/manifests/NAME`), written to
/// `<data-dir>/server/manifests/` at every start and applied from there: `(NAME,
/// contents)`.
pub const MANIFESTS: &[(&str, &str)] = &[("runtimes.yaml", RUNTIME_CLASSES)];

/// The embedded file at `path` (as listed by [`FILES`]).
pub fn file(path: &str) -> Option<&'static str> {
    FILES
        .iter()
        .find(|(name, _)| *name == path)
        .map(|(_, contents)| *contents)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_run_the_installed_binary_and_leave_containers_alone() {
        for (unit, command) in [
            ("systemd/orc.service", "ExecStart=/usr/local/bin/orc server"),
            (
                "systemd/orc-agent.service",
                "ExecStart=/usr/local/bin/orc agent",
            ),
        ] {
            let text = file(unit).unwrap();
            assert!(text.lines().any(|l| l == command), "{unit}");
            assert!(text.lines().any(|l| l == "KillMode=process"), "{unit}");
            assert!(text.contains("WantedBy=multi-user.target"), "{unit}");
        }
        assert_eq!(file("missing"), None);
    }
}
