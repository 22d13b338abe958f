//! Secrets encryption at rest through the real binary: `orc server --secrets-encryption`
//! keeps Secret data (and kubectl's last-applied annotation) out of the database files,
//! reads stay transparent across restarts, turning it on encrypts Secrets stored before,
//! and `orc secrets-encrypt status|rotate-keys` work as k3s's.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::server::{stdout, Server, ORC};

const VALUE: &str = "OrcTopSecretValue-7781";

fn secret_yaml(name: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: {name}\nstringData:\n  password: {VALUE}\n"
    )
}

fn base64_of(s: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(s)
}

fn db_path(server: &Server) -> PathBuf {
    server.data_dir().join("server/db/state.db")
}

/// Every byte of the database and its WAL.
fn db_bytes(server: &Server) -> Vec<u8> {
    let db = db_path(server);
    let mut all = std::fs::read(&db).expect("read the database");
    for suffix in ["-wal", "-journal"] {
        let mut side = db.clone().into_os_string();
        side.push(suffix);
        all.extend(std::fs::read(PathBuf::from(side)).unwrap_or_default());
    }
    all
}

fn on_disk(server: &Server, needle: &str) -> bool {
    db_bytes(server)
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

/// Neither the value (last-applied annotation) nor its base64 (`data`) is on disk.
fn assert_not_on_disk(server: &Server) {
    assert!(
        !on_disk(server, VALUE),
        "the secret value is in the database in clear"
    );
    assert!(
        !on_disk(server, &base64_of(VALUE)),
        "the secret's base64 data is in the database in clear"
    );
}

fn password_of(server: &Server, name: &str) -> String {
    let out = server.ok(&["get", "secret", name, "-o", "jsonpath={.data.password}"]);
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(out.trim())
        .expect("base64 data");
    String::from_utf8(bytes).unwrap()
}

fn secrets_encrypt(data_dir: &Path, command: &str) -> Output {
    Command::new(ORC)
        .args(["secrets-encrypt", command, "--data-dir"])
        .arg(data_dir)
        .output()
        .expect("run orc secrets-encrypt")
}

fn ok_output(out: &Output) -> String {
    assert!(
        out.status.success(),
        "orc secrets-encrypt failed: {}{}",
        String::from_utf8_lossy(&out.stderr),
        stdout(out)
    );
    stdout(out)
}

/// Stored encrypted values, each with the key name they were encrypted with.
fn stored_key_names(server: &Server) -> Vec<String> {
    let conn = rusqlite::Connection::open(db_path(server)).unwrap();
    let mut stmt = conn
        .prepare("SELECT value FROM kv WHERE key LIKE '/core/secrets/%'")
        .unwrap();
    let values: Vec<Vec<u8>> = stmt
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    values
        .iter()
        .map(|v| {
            let text = String::from_utf8_lossy(v);
            let rest = text
                .strip_prefix("k8s:enc:aesgcm:v1:")
                .unwrap_or_else(|| panic!("stored in clear: {text}"));
            rest.split(':').next().unwrap().to_string()
        })
        .collect()
}

#[test]
fn secrets_are_encrypted_on_disk_and_read_back_across_restarts_and_key_rotation() {
    let mut server = Server::start_with(&["--secrets-encryption"]);
    server.apply_yaml("apply", &secret_yaml("db"));
    let annotation = server.ok(&[
        "get",
        "secret",
        "db",
        "-o",
        "jsonpath={.metadata.annotations.kubectl\\.kubernetes\\.io/last-applied-configuration}",
    ]);
    assert!(
        annotation.contains(VALUE),
        "kubectl apply stored its annotation"
    );
    assert_eq!(password_of(&server, "db"), VALUE);
    assert_not_on_disk(&server);

    let config = server.data_dir().join("server/cred/encryption-config.json");
    let mode =
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&config).unwrap().permissions());
    assert_eq!(mode & 0o777, 0o600, "the key file is private");
    let status = ok_output(&secrets_encrypt(&server.data_dir(), "status"));
    assert!(status.contains("Encryption Status: Enabled"), "{status}");
    assert!(status.contains("Current Rotation Stage: start"), "{status}");
    assert!(
        status.contains("Active Key Type Names: AES-GCM aesgcmkey-1"),
        "{status}"
    );

    let refused = secrets_encrypt(&server.data_dir(), "rotate-keys");
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("is running: stop it"), "{err}");

    server.kill9();
    server.spawn();
    assert_eq!(
        password_of(&server, "db"),
        VALUE,
        "readable after a restart"
    );
    server.apply_yaml("apply", &secret_yaml("second"));

    server.kill9();
    let rotated = ok_output(&secrets_encrypt(&server.data_dir(), "rotate-keys"));
    assert!(rotated.contains("active key aesgcmkey-2"), "{rotated}");
    let names = stored_key_names(&server);
    assert!(!names.is_empty());
    assert!(names.iter().all(|n| n == "aesgcmkey-2"), "{names:?}");
    let status = ok_output(&secrets_encrypt(&server.data_dir(), "status"));
    assert!(
        status.contains("Current Rotation Stage: reencrypt_finished"),
        "{status}"
    );
    assert!(status.contains("AES-GCM aesgcmkey-2"), "{status}");
    assert!(
        !status.contains("aesgcmkey-1"),
        "the old key is gone: {status}"
    );
    assert_not_on_disk(&server);

    server.spawn();
    assert_eq!(password_of(&server, "db"), VALUE);
    assert_eq!(password_of(&server, "second"), VALUE);
}

#[test]
fn turning_encryption_on_encrypts_secrets_stored_before() {
    let mut server = Server::start();
    server.apply_yaml("apply", &secret_yaml("legacy"));
    let status = ok_output(&secrets_encrypt(&server.data_dir(), "status"));
    assert!(status.contains("Encryption Status: Disabled"), "{status}");
    server.kill9();
    assert!(
        on_disk(&server, VALUE),
        "without encryption the value is stored in clear (what this test guards against)"
    );

    server.extra_args = vec!["--secrets-encryption".into()];
    server.spawn();
    assert_not_on_disk(&server);
    assert_eq!(password_of(&server, "legacy"), VALUE);
    assert!(stored_key_names(&server).iter().all(|n| n == "aesgcmkey-1"));

    // Encryption is a property of the data dir: a start without the flag keeps it.
    server.kill9();
    server.extra_args.clear();
    server.spawn();
    server.apply_yaml("apply", &secret_yaml("later"));
    assert_eq!(password_of(&server, "later"), VALUE);
    assert_not_on_disk(&server);
}
