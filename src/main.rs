//! orc: one binary that is either the control plane (`orc server`) or a worker (`orc agent`).

mod agent;
mod api;
mod apiserver;
mod cli;
mod controllers;
mod store;
mod tls;

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = cli::Cli::parse();
    cli::init_tracing(&cli.log_level);
    match cli::run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("orc: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
