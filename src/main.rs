//! orc: one binary that is either the control plane (`orc server`) or a worker (`orc agent`).

use clap::Parser;
use orc::cli;

/// Static (musl) builds allocate with mimalloc: musl's allocator takes a global lock and
/// halves API throughput (README, "Release binaries").
#[cfg(all(target_env = "musl", not(feature = "musl-malloc")))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    use orc::agent::runtime::logger;
    let args = logger::reorder_shim_args(std::env::args_os().collect());
    // The container logger is on every container start's path (the shim waits for it):
    // straight to it, before anything the other subcommands set up.
    if let Some(logger_args) = logger::fast_args(&args) {
        return logger::main(&logger_args);
    }
    cli::malloc::limit_arenas();
    let args = match cli::config_file::expand(args) {
        Ok(args) => args,
        Err(e) => {
            eprintln!("orc: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let cli = cli::Cli::parse_from(args);
    cli::init_tracing(&cli.log_level);
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orc: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
