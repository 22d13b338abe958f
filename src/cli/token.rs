//! `orc token`: print the server's join token; `orc token rotate`: replace it.

use std::path::{Path, PathBuf};

use anyhow::Context;

#[derive(Debug, clap::Args)]
pub struct TokenArgs {
    /// Data directory of the server whose token to print or rotate.
    #[arg(
        long,
        global = true,
        env = "ORC_DATA_DIR",
        default_value = "/var/lib/orc"
    )]
    pub data_dir: PathBuf,
    #[command(subcommand)]
    pub action: Option<TokenAction>,
}

#[derive(Debug, clap::Subcommand)]
pub enum TokenAction {
    /// Replace the join token: joined nodes keep working (they renew with their own
    /// certificates), new joins need the new token, the old one is refused. A running
    /// server picks it up within seconds.
    Rotate {
        /// The new token secret (at least 16 characters); generated when absent.
        #[arg(long, env = "ORC_NEW_TOKEN", hide_env_values = true)]
        new_token: Option<String>,
    },
}

pub fn run(args: TokenArgs) -> anyhow::Result<()> {
    match args.action {
        None => print(&args.data_dir),
        Some(TokenAction::Rotate { new_token }) => rotate(&args.data_dir, new_token.as_deref()),
    }
}

fn print(data_dir: &Path) -> anyhow::Result<()> {
    let path = data_dir.join("server/token");
    let token = std::fs::read_to_string(&path).with_context(|| not_a_server(&path, data_dir))?;
    println!("{}", token.trim());
    Ok(())
}

fn rotate(data_dir: &Path, new_token: Option<&str>) -> anyhow::Result<()> {
    let path = data_dir.join("server/token");
    let ca_path = data_dir.join("server/tls/ca.crt");
    let ca_pem =
        std::fs::read_to_string(&ca_path).with_context(|| not_a_server(&ca_path, data_dir))?;
    if new_token.is_some_and(|t| crate::tls::check_strength(t).is_err()) {
        anyhow::bail!(
            "--new-token must be at least {} characters; omit it to generate one",
            crate::tls::MIN_SECRET_LEN
        );
    }
    let token = crate::tls::rotate_token(&path, &ca_pem, new_token)
        .with_context(|| format!("write the new token to {}", path.display()))?;
    println!("{token}");
    eprintln!(
        "join token rotated: joined nodes are not affected; join new ones with the token above \
         (the old token is refused once the running server has reloaded it, within {} s). If \
         the server is started with --token or ORC_TOKEN, change it there too: the next start \
         would bring the old token back",
        crate::cli::server::TOKEN_RELOAD_INTERVAL.as_secs()
    );
    Ok(())
}

fn not_a_server(path: &Path, data_dir: &Path) -> String {
    format!(
        "read {}: has `orc server --data-dir {}` been started on this machine (and are you root)?",
        path.display(),
        data_dir.display()
    )
}
