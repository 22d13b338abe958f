//! `scripts/install.sh` as a user runs it, with a prebuilt binary (no compiler): a
//! server's and an agent's systemd units from the binary's embedded/ (checked with
//! `systemd-analyze verify` where it is installed), the agent's token only in a 0600
//! environment file, an upgrade in place, clear one-line refusals, a server run in the
//! foreground where systemd does not run, and `orc-uninstall.sh` removing the units.
//!
//! Needs root (the script refuses otherwise). Everything goes to the test's own
//! directories (ORC_INSTALL_DIR, ORC_SYSTEMD_DIR, ORC_ENV_DIR) and apt is left alone
//! (ORC_SKIP_PACKAGES=1): scripts/install-deps.sh installed containerd, runc and nft.

mod support;

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use support::host::{free_port, repo_path};
use support::server::{kubectl_with, wait_for, ORC};

struct Install {
    dir: tempfile::TempDir,
}

impl Install {
    fn new() -> Install {
        assert!(
            nix_is_root(),
            "tests/install.rs needs root: install.sh refuses to run without it (CI runs as root)"
        );
        Install {
            dir: tempfile::tempdir().unwrap(),
        }
    }

    fn path(&self, rel: &str) -> PathBuf {
        self.dir.path().join(rel)
    }

    /// install.sh with the test's directories, no apt, the given environment and args.
    fn command(&self, env: &[(&str, &str)], args: &[&str]) -> Command {
        let mut c = Command::new("bash");
        c.arg(repo_path("scripts/install.sh"))
            .args(args)
            .env("ORC_INSTALL_DIR", self.path("bin"))
            .env("ORC_SYSTEMD_DIR", self.path("systemd"))
            .env("ORC_ENV_DIR", self.path("default"))
            .env("ORC_SKIP_PACKAGES", "1")
            .env_remove("ORC_URL")
            .env_remove("ORC_TOKEN")
            .env_remove("ORC_BINARY");
        for (k, v) in env {
            c.env(k, v);
        }
        c
    }

    fn run(&self, env: &[(&str, &str)], args: &[&str]) -> Output {
        self.command(env, args).output().expect("run install.sh")
    }

    fn run_ok(&self, env: &[(&str, &str)], args: &[&str]) -> String {
        let out = self.run(env, args);
        assert!(
            out.status.success(),
            "install.sh failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    fn read(&self, rel: &str) -> String {
        std::fs::read_to_string(self.path(rel)).unwrap_or_else(|e| panic!("{rel}: {e}"))
    }
}

fn nix_is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(1) == Some("0"))
        })
        .unwrap_or(false)
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// `systemd-analyze verify` of a unit, where systemd-analyze is installed.
fn verify_unit(unit: &Path) {
    if Command::new("systemd-analyze")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!(
            "systemd-analyze not installed: {} not verified",
            unit.display()
        );
        return;
    }
    let out = Command::new("systemd-analyze")
        .arg("verify")
        .arg(unit)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    // Where systemd is not PID 1 (containers), verify still parses the unit but may
    // complain about the manager itself; problems of the unit name its file.
    let unit_name = unit.file_name().unwrap().to_string_lossy();
    let about_unit: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains(unit_name.as_ref()))
        .collect();
    assert!(
        about_unit.is_empty(),
        "systemd-analyze verify {}:\n{stderr}",
        unit.display()
    );
}

const ONLY_INSTALL: (&str, &str) = ("ORC_NO_START", "1");

#[test]
fn a_prebuilt_binary_is_installed_with_units_upgraded_in_place_and_uninstalled() {
    let i = Install::new();
    let log = i.run_ok(
        &[("ORC_BINARY", ORC), ONLY_INSTALL],
        &["--tls-san", "pi.local"],
    );
    assert!(!log.contains("building from source"), "{log}");
    let bin = i.path("bin/orc");
    assert_eq!(mode(&bin), 0o755);
    assert_eq!(std::fs::read(&bin).unwrap(), std::fs::read(ORC).unwrap());
    assert!(i.path("bin/orc-uninstall.sh").is_file());
    let unit = i.read("systemd/orc.service");
    let exec = format!("ExecStart={} server --tls-san pi.local", bin.display());
    assert!(unit.lines().any(|l| l == exec), "{unit}");
    let env_file = i.path("default/orc");
    assert!(
        unit.lines()
            .any(|l| l == format!("EnvironmentFile=-{}", env_file.display())),
        "{unit}"
    );
    assert_eq!(mode(&env_file), 0o600);
    verify_unit(&i.path("systemd/orc.service"));

    // Upgrade: another build (here: the same binary with a byte more) replaces it.
    let newer = i.path("orc-newer");
    let mut bytes = std::fs::read(ORC).unwrap();
    bytes.push(0);
    std::fs::write(&newer, &bytes).unwrap();
    std::fs::set_permissions(&newer, std::fs::Permissions::from_mode(0o755)).unwrap();
    i.run_ok(
        &[("ORC_BINARY", newer.to_str().unwrap()), ONLY_INSTALL],
        &[],
    );
    assert_eq!(
        std::fs::read(&bin).unwrap(),
        bytes,
        "the binary was not upgraded"
    );
    let unit = i.read("systemd/orc.service");
    assert!(
        unit.lines()
            .any(|l| l == format!("ExecStart={} server", bin.display())),
        "{unit}"
    );

    // A release file beside it with a .sha256 that does not match is refused.
    std::fs::write(
        i.path("orc-newer.sha256"),
        format!("{} orc-newer\n", "0".repeat(64)),
    )
    .unwrap();
    let out = i.run(
        &[("ORC_BINARY", newer.to_str().unwrap()), ONLY_INSTALL],
        &[],
    );
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not match"), "{err}");

    // orc-uninstall.sh removes the units, the environment file and the binaries.
    let data = i.path("data");
    // In a network namespace of its own: the script also clears orc's links and routes.
    let out = Command::new("unshare")
        .args(["--net", "--"])
        .arg(i.path("bin/orc-uninstall.sh"))
        .env("ORC_BIN", &bin)
        .env("ORC_DATA_DIR", &data)
        .env("ORC_CONFIG_DIR", i.path("etc"))
        .env("ORC_SYSTEMD_DIR", i.path("systemd"))
        .env("ORC_ENV_DIR", i.path("default"))
        .env("ORC_CONTAINERD_SOCKET", i.path("no-containerd.sock"))
        .env("ORC_PROXY_NFT_TABLE", "orc-install-test-none")
        .env("ORC_POD_NFT_TABLE", "orc-install-test-none")
        .env("ORC_POD_BRIDGE", "orc-it-none")
        .env("ORC_CLUSTER_DNS", "10.254.254.254")
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    for gone in [
        "systemd/orc.service",
        "default/orc",
        "bin/orc",
        "bin/orc-uninstall.sh",
    ] {
        assert!(!i.path(gone).exists(), "{gone} is left");
    }
}

#[test]
fn an_agent_gets_its_unit_and_keeps_its_token_out_of_it() {
    let i = Install::new();
    let token = "K10abc::node:0123456789abcdef0123";
    i.run_ok(
        &[
            ("ORC_BINARY", ORC),
            ("ORC_URL", "https://10.0.0.1:6443"),
            ("ORC_TOKEN", token),
            ONLY_INSTALL,
        ],
        &["--node-label", "disk=ssd"],
    );
    let unit = i.read("systemd/orc-agent.service");
    let exec = format!(
        "ExecStart={} agent --node-label disk=ssd",
        i.path("bin/orc").display()
    );
    assert!(unit.lines().any(|l| l == exec), "{unit}");
    assert!(!unit.contains(token), "the token is in the unit");
    assert!(!i.path("systemd/orc.service").exists());
    let env_file = i.path("default/orc-agent");
    assert_eq!(mode(&env_file), 0o600);
    let env = i.read("default/orc-agent");
    assert!(
        env.lines().any(|l| l == "ORC_JOIN=https://10.0.0.1:6443"),
        "{env}"
    );
    assert!(
        env.lines().any(|l| l == format!("ORC_TOKEN={token}")),
        "{env}"
    );
    verify_unit(&i.path("systemd/orc-agent.service"));
}

#[test]
fn bad_input_gets_one_clear_line_and_installs_nothing() {
    let i = Install::new();
    let cases: [(&[(&str, &str)], &str); 2] = [
        (
            &[("ORC_BINARY", ORC), ("ORC_URL", "https://10.0.0.1:6443")],
            "ORC_URL is set but ORC_TOKEN is not",
        ),
        (&[("ORC_BINARY", "/nonexistent/orc")], "no such file"),
    ];
    for (env, expected) in cases {
        let out = i.run(env, &[]);
        assert!(!out.status.success(), "{env:?} was accepted");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(expected), "{env:?}: {err}");
    }
    assert!(!i.path("bin").exists(), "something was installed");
}

#[test]
fn without_systemd_the_server_runs_in_the_foreground() {
    let i = Install::new();
    let port = free_port();
    let kubeconfig = i.path("kubeconfig.yaml");
    let data_dir = i.path("data");
    let port_arg = port.to_string();
    let mut child = i
        .command(
            &[("ORC_BINARY", ORC), ("ORC_NO_SYSTEMD", "1")],
            &[
                "--data-dir",
                data_dir.to_str().unwrap(),
                "--bind-address",
                "127.0.0.1",
                "--https-port",
                &port_arg,
                "--write-kubeconfig",
                kubeconfig.to_str().unwrap(),
                "--disable-agent",
            ],
        )
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for("the foreground server to answer kubectl", || {
        kubeconfig.exists()
            && kubectl_with(&kubeconfig, &["get", "namespace", "kube-system"], None)
                .status
                .success()
    });
    // install.sh exec'd orc: the process is the server itself.
    let exe = std::fs::read_link(format!("/proc/{}/exe", child.id())).unwrap();
    assert_eq!(exe, i.path("bin/orc"));
    let _ = child.kill();
    let _ = child.wait();
}
