//! Command-line interface: one file per subcommand turning flags into a checked config.

pub mod agent;
pub mod check;
pub mod config_file;
pub mod eviction;
pub mod images;
pub mod malloc;
pub mod secrets_encrypt;
pub mod server;
pub mod server_join;
pub mod token;
pub mod version;

use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(
    name = "orc",
    version,
    about = "A small, all-in-one Kubernetes-compatible orchestrator",
    args_override_self = true
)]
pub struct Cli {
    /// Log level or filter (trace, debug, info, warn, error, or a RUST_LOG-style filter).
    #[arg(long, global = true, env = "ORC_LOG_LEVEL", default_value = "info")]
    pub log_level: String,
    /// How often `orc server`/`orc agent` give freed heap memory back to the system
    /// (glibc builds; 0 = never, the heap then keeps what bursts of work freed).
    #[arg(long, global = true, hide = true, env = "ORC_MALLOC_TRIM_INTERVAL",
          default_value = "10s", value_parser = server::parse_duration)]
    pub malloc_trim_interval: std::time::Duration,
    #[command(subcommand)]
    pub command: Command,
}

/// How the config file works, under `orc server --help` and `orc agent --help`.
const CONFIG_FILE_HELP: &str = "\
Config file: every flag can also be set in /etc/orc/config.yaml (another file with
--config PATH or ORC_CONFIG), whose keys are the flag names without dashes:

    https-port: 7443
    tls-san: [pi.local, 192.168.1.10]
    disable-agent: true

Flags on the command line win over the file, the file over ORC_* variables.";

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the control plane (API server, scheduler, controllers) and an embedded agent.
    #[command(after_help = CONFIG_FILE_HELP)]
    Server(Box<server::ServerArgs>),
    /// Run a worker node that joins a server.
    #[command(after_help = CONFIG_FILE_HELP)]
    Agent(Box<agent::AgentArgs>),
    /// Print the join token of the server in --data-dir.
    Token(token::TokenArgs),
    /// Manage container images (air-gapped import).
    Images(ImagesArgs),
    /// Secrets encryption at rest: status and key rotation (as k3s).
    SecretsEncrypt(secrets_encrypt::SecretsEncryptArgs),
    /// Preflight checks: kernel, cgroups, nftables, containerd, ports.
    Check(check::CheckArgs),
    /// Print the version.
    Version,
    /// List the files compiled into orc (systemd units, default manifests), or print one.
    #[command(hide = true)]
    Embedded { name: Option<String> },
    /// Holds a pod's shared PID namespace as its PID 1, started by the kubelet, not by
    /// people.
    #[command(hide = true)]
    Pause,
    /// Container log writer run by the containerd shim (binary:// log URI), not by people.
    #[command(name = "container-logger", hide = true)]
    ContainerLogger {
        path: std::path::PathBuf,
        /// Rotate the file before it grows past this many bytes.
        #[arg(long)]
        max_size: Option<u64>,
        /// Files kept, the current one included (with --max-size; at least 2).
        #[arg(long, default_value_t = crate::agent::runtime::logger::DEFAULT_ROTATION.max_files)]
        max_files: usize,
        /// Read stdout from this fifo (with --stderr-fifo; a logger orc starts itself).
        #[arg(long, requires = "stderr_fifo")]
        stdout_fifo: Option<std::path::PathBuf>,
        /// Read stderr from this fifo (with --stdout-fifo).
        #[arg(long, requires = "stdout_fifo")]
        stderr_fifo: Option<std::path::PathBuf>,
    },
}

pub use images::{ImagesArgs, ImagesCommand};

/// Installs the tracing subscriber: `RUST_LOG` wins over `--log-level`.
pub fn init_tracing(level: &str) {
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_string());
    let mut filter = tracing_subscriber::EnvFilter::try_new(&filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    if !std::env::var("RUST_LOG").is_ok_and(|f| f.contains("hickory")) {
        // The DNS library logs every query at info.
        for quiet in [
            "hickory_server=warn",
            "hickory_resolver=warn",
            "hickory_net=warn",
        ] {
            filter = filter.add_directive(quiet.parse().expect("valid directive"));
        }
    }
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
}

pub fn run(cli: Cli) -> anyhow::Result<()> {
    if matches!(cli.command, Command::Server(_) | Command::Agent(_)) {
        malloc::start_trimmer(cli.malloc_trim_interval);
    }
    match cli.command {
        Command::Server(args) => server::run(*args),
        Command::Token(args) => token::run(args),
        Command::Version => {
            version::run();
            Ok(())
        }
        Command::Agent(args) => agent::run(*args),
        Command::Images(args) => images::run(args),
        Command::ContainerLogger {
            path,
            max_size,
            max_files,
            stdout_fifo,
            stderr_fifo,
        } => {
            // Reached when `fast_args` (main.rs) did not take the command line.
            let args = crate::agent::runtime::logger::LoggerArgs {
                fifos: stdout_fifo.zip(stderr_fifo),
                ..crate::agent::runtime::logger::LoggerArgs::new(path, max_size, max_files)
            };
            crate::agent::runtime::logger::run(&args)
                .map_err(|e| anyhow::anyhow!("container logger for {}: {e}", args.path.display()))
        }
        Command::Pause => crate::agent::kubelet::pidns::hold_pid_namespace()
            .map_err(|e| anyhow::anyhow!("pause: {}", crate::agent::error_chain(&e))),
        Command::Check(args) => check::run(args),
        Command::SecretsEncrypt(args) => secrets_encrypt::run(args),
        Command::Embedded { name: None } => {
            for (name, _) in crate::embedded::FILES {
                println!("{name}");
            }
            Ok(())
        }
        Command::Embedded { name: Some(name) } => match crate::embedded::file(&name) {
            Some(contents) => {
                print!("{contents}");
                Ok(())
            }
            None => anyhow::bail!("no embedded file {name:?} (`orc embedded` lists them)"),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::ffi::OsString;

    use crate::agent::runtime::logger::{fast_args, LoggerArgs, Rotation, DEFAULT_ROTATION};

    /// What clap makes of a logger command line (the slow path's reading).
    fn clap_args(args: &[OsString]) -> Option<LoggerArgs> {
        use clap::Parser;
        match super::Cli::try_parse_from(args).ok()?.command {
            super::Command::ContainerLogger {
                path,
                max_size,
                max_files,
                ..
            } => Some(LoggerArgs::new(path, max_size, max_files)),
            _ => None,
        }
    }

    #[test]
    fn the_shims_command_lines_are_read_without_clap_as_clap_reads_them() {
        let args = |a: &[&str]| a.iter().map(OsString::from).collect::<Vec<_>>();
        let cases = [
            (
                args(&[
                    "orc",
                    "container-logger",
                    "/l/0.log",
                    "--max-size",
                    "10",
                    "--max-files",
                    "3",
                ]),
                LoggerArgs::new("/l/0.log".into(), Some(10), 3),
            ),
            (
                args(&[
                    "orc",
                    "container-logger",
                    "/l/0.log",
                    "--max-files",
                    "1",
                    "--max-size",
                    "10",
                ]),
                LoggerArgs::new("/l/0.log".into(), Some(10), 2),
            ),
            (
                args(&["orc", "container-logger", "/l/0.log", "--max-size", "10"]),
                LoggerArgs::new("/l/0.log".into(), Some(10), DEFAULT_ROTATION.max_files),
            ),
            (
                args(&["orc", "container-logger", "/l/0.log"]),
                LoggerArgs::new("/l/0.log".into(), None, 5),
            ),
        ];
        for (argv, want) in cases {
            assert_eq!(fast_args(&argv).as_ref(), Some(&want), "{argv:?}");
            assert_eq!(clap_args(&argv).as_ref(), Some(&want), "{argv:?}");
        }
        assert_eq!(
            LoggerArgs::new("/l/0.log".into(), Some(10), 1).rotation,
            Some(Rotation {
                max_size: 10,
                max_files: 2
            })
        );
        assert_eq!(LoggerArgs::new("/l/0.log".into(), None, 3).rotation, None);
    }
}
