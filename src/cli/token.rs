//! `orc token`: print the server's join token.

use std::path::PathBuf;

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Data directory of the server whose token to print.
    #[arg(long, env = "ORC_DATA_DIR", default_value = "/var/lib/orc")]
    pub data_dir: PathBuf,
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    let path = args.data_dir.join("server/token");
    let token = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "read {}: has `orc server --data-dir {}` been started on this machine (and are you root)?",
            path.display(),
            args.data_dir.display()
        )
    })?;
    println!("{}", token.trim());
    Ok(())
}
