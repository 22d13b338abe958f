//! `orc secrets-encrypt status|rotate-keys` and the server's side of `--secrets-encryption`:
//! the key file in the data dir and the lock that keeps the two apart.
//!
//! The key file is `<data-dir>/server/cred/encryption-config.json` (where k3s keeps its
//! encryption config), mode 0600. Once it exists, Secrets in that data dir stay encrypted
//! whatever the flags of later starts: dropping the flag never silently stores them in
//! clear again.
//!
//! `rotate-keys` works on the data dir directly, with the server stopped (it refuses while
//! one runs: the running server holds the lock and keeps its keys in memory). It makes a
//! new key the active one while keeping the old one, re-encrypts every stored Secret
//! revision in place in one transaction, and only then drops the old key, so an
//! interruption at any point leaves every value readable (a later server start finishes
//! the re-encryption).

use std::fs::File;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};

use crate::store::encryption::{SecretsEncryption, ValueTransformer};
use crate::store::sqlite;

#[derive(Debug, clap::Args)]
pub struct SecretsEncryptArgs {
    /// Data directory of the server.
    #[arg(
        long,
        env = "ORC_DATA_DIR",
        default_value = "/var/lib/orc",
        global = true
    )]
    pub data_dir: PathBuf,
    /// Datastore: sqlite://PATH (default: <data-dir>/server/db/state.db).
    #[arg(long, env = "ORC_DATASTORE_ENDPOINT", global = true)]
    pub datastore_endpoint: Option<String>,
    #[command(subcommand)]
    pub command: SecretsEncryptCommand,
}

#[derive(Debug, clap::Subcommand)]
pub enum SecretsEncryptCommand {
    /// Print whether Secrets are encrypted, the rotation stage and the keys.
    Status,
    /// Make a new key the active one and re-encrypt every Secret (server stopped).
    RotateKeys,
}

/// The key file of a data dir.
pub fn config_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server/cred/encryption-config.json")
}

fn lock_path(data_dir: &Path) -> PathBuf {
    data_dir.join("server/cred/encryption.lock")
}

/// Held while a server or `rotate-keys` uses a data dir's keys.
pub struct KeysLock {
    _lock: Flock<File>,
}

fn lock_keys(data_dir: &Path) -> anyhow::Result<Option<KeysLock>> {
    let path = lock_path(data_dir);
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("create {}", dir.display()))?;
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .with_context(|| format!("make {} private (0700)", dir.display()))?;
    }
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .with_context(|| format!("open {}", path.display()))?;
    match Flock::lock(file, FlockArg::LockExclusiveNonblock) {
        Ok(lock) => Ok(Some(KeysLock { _lock: lock })),
        Err((_, nix::errno::Errno::EWOULDBLOCK)) => Ok(None),
        Err((_, e)) => Err(e).with_context(|| format!("lock {}", path.display())),
    }
}

/// What the server encrypts Secrets with: `None` when encryption was never turned on for
/// this data dir and `enable` does not ask for it; otherwise the keys (created on first
/// use) and the lock the server holds while it runs.
pub fn server_encryption(
    data_dir: &Path,
    enable: bool,
) -> anyhow::Result<Option<(Arc<dyn ValueTransformer>, KeysLock)>> {
    let path = config_path(data_dir);
    let existing = SecretsEncryption::load(&path)?;
    if existing.is_none() && !enable {
        return Ok(None);
    }
    let Some(lock) = lock_keys(data_dir)? else {
        bail!(
            "{} is locked: `orc secrets-encrypt rotate-keys` or another orc server is using this data dir",
            lock_path(data_dir).display()
        );
    };
    let encryption = match existing {
        Some(encryption) => {
            if !enable {
                tracing::info!(
                    config = %path.display(),
                    "secrets stay encrypted: this data dir has an encryption config"
                );
            }
            encryption
        }
        None => {
            let encryption = SecretsEncryption::generate()?;
            encryption.save(&path)?;
            tracing::info!(config = %path.display(), "secrets encryption enabled: new key");
            encryption
        }
    };
    Ok(Some((Arc::new(encryption), lock)))
}

fn db_path(args: &SecretsEncryptArgs) -> anyhow::Result<PathBuf> {
    match args.datastore_endpoint.as_deref() {
        None | Some("") => Ok(args.data_dir.join("server/db/state.db")),
        Some(ep) => match ep.strip_prefix("sqlite://") {
            Some(path) => Ok(PathBuf::from(path)),
            None => {
                bail!("--datastore-endpoint {ep}: secrets-encrypt works on sqlite:// datastores")
            }
        },
    }
}

pub fn run(args: SecretsEncryptArgs) -> anyhow::Result<()> {
    match args.command {
        SecretsEncryptCommand::Status => status(&args),
        SecretsEncryptCommand::RotateKeys => rotate_keys(&args),
    }
}

fn status(args: &SecretsEncryptArgs) -> anyhow::Result<()> {
    let path = config_path(&args.data_dir);
    let Some(encryption) = SecretsEncryption::load(&path)? else {
        println!("Encryption Status: Disabled");
        println!(
            "Secrets are stored in clear: start `orc server --secrets-encryption` to encrypt them"
        );
        return Ok(());
    };
    let db = db_path(args)?;
    let conn =
        sqlite::open_existing(&db).with_context(|| format!("open datastore {}", db.display()))?;
    let (total, stale) = sqlite::count_stale(&conn, &encryption)?;
    let names = encryption.key_names();
    println!("Encryption Status: Enabled");
    println!("Current Rotation Stage: {}", encryption.rotation_stage());
    println!(
        "Active Key Type Names: AES-GCM {}",
        names.first().copied().unwrap_or("")
    );
    if names.len() > 1 {
        println!("Old Keys (decrypt only): {}", names[1..].join(", "));
    }
    println!(
        "Stored Secret Revisions: {total} ({} with the active key, {stale} to re-encrypt)",
        total - stale
    );
    Ok(())
}

fn rotate_keys(args: &SecretsEncryptArgs) -> anyhow::Result<()> {
    let path = config_path(&args.data_dir);
    let Some(current) = SecretsEncryption::load(&path)? else {
        bail!(
            "secrets encryption is not enabled for {}: start `orc server --secrets-encryption` first",
            args.data_dir.display()
        );
    };
    let Some(_lock) = lock_keys(&args.data_dir)? else {
        bail!(
            "the orc server using {} is running: stop it, run `orc secrets-encrypt rotate-keys` again, then start it",
            args.data_dir.display()
        );
    };
    let db = db_path(args)?;
    let mut conn =
        sqlite::open_existing(&db).with_context(|| format!("open datastore {}", db.display()))?;
    let rotated = current.rotated()?;
    // The new key is saved (with the old ones) before any value uses it.
    rotated.save(&path)?;
    let rewritten = sqlite::rewrite_stale(&mut conn, &rotated)?;
    let (_, stale) = sqlite::count_stale(&conn, &rotated)?;
    if stale > 0 {
        bail!("{stale} stored Secret revisions are still under old keys: run rotate-keys again");
    }
    let done = rotated.retire_old_keys();
    done.save(&path)?;
    println!(
        "Keys rotated: active key {} ({rewritten} stored Secret revisions re-encrypted)",
        done.key_names()[0]
    );
    Ok(())
}
