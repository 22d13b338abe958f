//! `orc token`: print the server's join token.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    #[arg(long, env = "ORC_DATA_DIR", default_value = "/var/lib/orc")]
    pub data_dir: PathBuf,
}

pub fn run(_args: TokenArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
