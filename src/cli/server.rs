//! `orc server`: flags → server config, then run the control plane.

use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ServerArgs {
    #[arg(long, env = "ORC_DATA_DIR", default_value = "/var/lib/orc")]
    pub data_dir: PathBuf,
}

pub fn run(_args: ServerArgs) -> anyhow::Result<()> {
    anyhow::bail!("not yet")
}
