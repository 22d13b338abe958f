//! `orc images`: air-gapped image import into containerd.

use std::path::PathBuf;

use anyhow::Context;
use clap::Subcommand;

use crate::agent::runtime::{
    ContainerRuntime, ContainerdConfig, ContainerdRuntime, DEFAULT_CONTAINERD_SOCKET,
    DEFAULT_NAMESPACE,
};

#[derive(Debug, clap::Args)]
pub struct ImagesArgs {
    /// containerd socket to import into.
    #[arg(long, global = true, env = "ORC_CONTAINERD_SOCKET", default_value = DEFAULT_CONTAINERD_SOCKET)]
    pub containerd_socket: PathBuf,
    /// containerd namespace orc's images live in.
    #[arg(long, global = true, env = "ORC_CONTAINERD_NAMESPACE", default_value = DEFAULT_NAMESPACE)]
    pub containerd_namespace: String,
    #[command(subcommand)]
    pub command: ImagesCommand,
}

#[derive(Debug, Subcommand)]
pub enum ImagesCommand {
    /// Import an OCI or docker-archive image tarball into containerd.
    Import { file: PathBuf },
    /// List the images orc can run.
    #[command(alias = "ls")]
    List,
}

pub fn run(args: ImagesArgs) -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("start async runtime")?;
    runtime.block_on(async {
        let mut config = ContainerdConfig::new(&args.containerd_socket);
        config.namespace = args.containerd_namespace.clone();
        let containerd = ContainerdRuntime::connect(config).await?;
        match args.command {
            ImagesCommand::Import { file } => {
                let names = containerd
                    .import_archive(&file)
                    .await
                    .with_context(|| format!("import {}", file.display()))?;
                for name in names {
                    println!("imported {name}");
                }
            }
            ImagesCommand::List => {
                println!("{:<60} {:<20} SIZE", "IMAGE", "IMAGE ID");
                for image in containerd.list_images().await? {
                    let id = image.config_digest.trim_start_matches("sha256:");
                    println!(
                        "{:<60} {:<20} {}",
                        image.name,
                        &id[..id.len().min(12)],
                        image.size
                    );
                }
            }
        }
        Ok(())
    })
}
