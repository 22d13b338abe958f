//! Auto-deployed manifests, as k3s: every `*.yaml`, `*.yml` and `*.json` file in
//! `<data-dir>/server/manifests/` is applied (server-side apply) at start and whenever
//! its contents change. orc's own defaults (`embedded/manifests/`) are written there at
//! every start, so upgrades bring their new versions; an empty `NAME.skip` beside one
//! keeps it from being written and applied. A file that does not parse, or an object
//! that is refused, gets a Warning event in `kube-system` and a log line naming the file;
//! the other files and objects still apply, and a failed file is tried again.

use std::collections::HashMap;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use super::events::{Recorder, WARNING};
use super::framework::Client;
use crate::api::resources::ResourceDef;

/// How often the directory is looked at (k3s: 15 s). Reading a few small files costs
/// no disk writes.
pub const SCAN_INTERVAL: Duration = Duration::from_secs(5);
/// The component named in events.
const COMPONENT: &str = "orc-deploy";

#[derive(Debug, thiserror::Error)]
pub enum ManifestError {
    #[error("{file}: {source}")]
    Io {
        file: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{file}: document {index}: {reason}")]
    Parse {
        file: PathBuf,
        index: usize,
        reason: String,
    },
    #[error("{file}: {kind} {name}: {reason}")]
    Apply {
        file: PathBuf,
        kind: String,
        name: String,
        reason: String,
    },
}

/// Writes the `defaults` into `dir` (created 0700 when missing) unless a `NAME.skip`
/// file is there; a default whose file already holds the same bytes is left untouched.
pub fn write_defaults(dir: &Path, defaults: &[(&str, &str)]) -> Result<(), ManifestError> {
    let io = |file: &Path| {
        let file = file.to_path_buf();
        move |source| ManifestError::Io { file, source }
    };
    // Private as the rest of the data dir, whatever the umask.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(io(dir))?;
    for (name, contents) in defaults {
        let path = dir.join(name);
        if skipped(&path) {
            continue;
        }
        if std::fs::read(&path).is_ok_and(|current| current == contents.as_bytes()) {
            continue;
        }
        let tmp = dir.join(format!(".{name}.tmp"));
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)
            .and_then(|mut f| std::io::Write::write_all(&mut f, contents.as_bytes()))
            .map_err(io(&tmp))?;
        std::fs::rename(&tmp, &path).map_err(io(&path))?;
    }
    Ok(())
}

/// Whether `NAME.skip` exists beside `path` (`NAME` being the full file name).
fn skipped(path: &Path) -> bool {
    let mut skip = path.as_os_str().to_owned();
    skip.push(".skip");
    Path::new(&skip).exists()
}

/// The manifest files of `dir`, sorted by name: `*.yaml`, `*.yml`, `*.json`, without a
/// `.skip` beside them and not hidden.
pub fn manifest_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
            !name.starts_with('.')
                && [".yaml", ".yml", ".json"].iter().any(|x| name.ends_with(x))
                && p.is_file()
                && !skipped(p)
        })
        .collect();
    files.sort();
    files
}

/// The objects of a manifest file: every non-empty YAML (or JSON) document, the items
/// of `kind: List` documents spread.
pub fn parse(file: &Path, text: &str) -> Result<Vec<Value>, ManifestError> {
    let mut objects = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let parse_error = |reason: String| ManifestError::Parse {
            file: file.to_path_buf(),
            index: index + 1,
            reason,
        };
        let value: Value = serde::Deserialize::deserialize(document)
            .map_err(|e: serde_yaml::Error| parse_error(e.to_string()))?;
        match value {
            Value::Null => {}
            // `kind: List` (kubectl's) or a typed list such as `ConfigMapList`.
            Value::Object(_)
                if value["items"].is_array()
                    && value["kind"].as_str().is_some_and(|k| k.ends_with("List")) =>
            {
                objects.extend(value["items"].as_array().into_iter().flatten().cloned());
            }
            Value::Object(_) => objects.push(value),
            other => return Err(parse_error(format!("not an object: {other}"))),
        }
    }
    Ok(objects)
}

/// The field manager of what this controller applies (as k3s's deploy controller);
/// forced: the file wins over edits made by hand.
pub const FIELD_MANAGER: &str = "orc-deploy";

/// How long a kind may take to be served: a CRD applied a moment ago is established
/// within milliseconds.
const NEW_KIND_WAIT: Duration = Duration::from_secs(5);

/// The resource of `kind` in `api_version`, waiting a little for a just-created CRD's.
async fn served_kind(
    client: &dyn Client,
    api_version: &str,
    kind: &str,
) -> Option<&'static ResourceDef> {
    let deadline = tokio::time::Instant::now() + NEW_KIND_WAIT;
    loop {
        if let Some(def) = client.resources().by_kind(api_version, kind) {
            return Some(def);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Applies one object with server-side apply (created when missing).
async fn apply(client: &dyn Client, file: &Path, object: &Value) -> Result<(), ManifestError> {
    let kind = object["kind"].as_str().unwrap_or("").to_string();
    let name = object["metadata"]["name"]
        .as_str()
        .unwrap_or("")
        .to_string();
    let refused = |reason: String| ManifestError::Apply {
        file: file.to_path_buf(),
        kind: kind.clone(),
        name: name.clone(),
        reason,
    };
    let api_version = object["apiVersion"].as_str().unwrap_or("");
    let def = served_kind(client, api_version, &kind)
        .await
        .ok_or_else(|| {
            refused(format!(
                "no kind {kind:?} is served in apiVersion {api_version:?}"
            ))
        })?;
    if name.is_empty() {
        return Err(refused("metadata.name is required".into()));
    }
    let namespace = def.namespaced.then(|| {
        object["metadata"]["namespace"]
            .as_str()
            .unwrap_or("default")
            .to_string()
    });
    let mut object = object.clone();
    if let Some(ns) = &namespace {
        object["metadata"]["namespace"] = json!(ns);
    }
    let body = serde_json::to_vec(&object).map_err(|e| refused(e.to_string()))?;
    client
        .apply(def, namespace.as_deref(), &name, &body, FIELD_MANAGER, true)
        .await
        .map(|_| ())
        .map_err(|e| refused(e.message))
}

/// Applies every object of `file`: the errors of those that failed (the others applied).
pub async fn apply_file(client: &dyn Client, file: &Path, text: &str) -> Vec<ManifestError> {
    let objects = match parse(file, text) {
        Ok(objects) => objects,
        Err(e) => return vec![e],
    };
    let mut errors = Vec::new();
    // Namespaces and CustomResourceDefinitions first, so that a file may hold a
    // namespace or a CRD and what lives in it.
    let first = |o: &&Value| o["kind"] == "Namespace" || o["kind"] == "CustomResourceDefinition";
    let (early, rest): (Vec<&Value>, Vec<&Value>) = objects.iter().partition(first);
    for object in early.into_iter().chain(rest) {
        if let Err(e) = apply(client, file, object).await {
            errors.push(e);
        }
    }
    errors
}

/// What a file held when it was last applied without errors.
type Applied = HashMap<PathBuf, [u8; 32]>;

/// One look at the directory: applies the files that are new, changed, or failed last
/// time; reports failures as events and log lines.
pub async fn scan(client: &dyn Client, recorder: &Recorder, dir: &Path, applied: &mut Applied) {
    let files = manifest_files(dir);
    applied.retain(|path, _| files.contains(path));
    for file in files {
        let Ok(text) = std::fs::read_to_string(&file) else {
            continue;
        };
        let digest: [u8; 32] = Sha256::digest(text.as_bytes()).into();
        if applied.get(&file) == Some(&digest) {
            continue;
        }
        let errors = apply_file(client, &file, &text).await;
        if errors.is_empty() {
            tracing::info!(file = %file.display(), "applied manifest");
            applied.insert(file, digest);
            continue;
        }
        applied.remove(&file);
        let kube_system = json!({
            "apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "kube-system", "namespace": "kube-system"},
        });
        for error in errors {
            tracing::warn!(file = %file.display(), error = %error, "manifest not applied");
            recorder
                .record(
                    &kube_system,
                    WARNING,
                    "ApplyManifestFailed",
                    &error.to_string(),
                )
                .await;
        }
    }
}

/// Writes the defaults, then applies the directory now and every [`SCAN_INTERVAL`].
pub async fn run(client: Arc<dyn Client>, dir: PathBuf) {
    if let Err(e) = write_defaults(&dir, crate::embedded::MANIFESTS) {
        tracing::warn!(error = %e, "could not write the default manifests");
    }
    let recorder = Recorder::new(client.clone(), COMPONENT);
    let mut applied = Applied::new();
    loop {
        scan(&*client, &recorder, &dir, &mut applied).await;
        tokio::time::sleep(SCAN_INTERVAL).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_written_unless_skipped_and_kept_when_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let manifests = dir.path().join("manifests");
        let defaults = [("a.yaml", "kind: A\n"), ("b.yaml", "kind: B\n")];
        std::fs::create_dir_all(&manifests).unwrap();
        std::fs::write(manifests.join("b.yaml.skip"), "").unwrap();
        write_defaults(&manifests, &defaults).unwrap();
        assert_eq!(
            std::fs::read_to_string(manifests.join("a.yaml")).unwrap(),
            "kind: A\n"
        );
        assert!(
            !manifests.join("b.yaml").exists(),
            "skipped default written"
        );
        // An edited default is put back at the next start (as k3s: upgrades bring theirs).
        std::fs::write(manifests.join("a.yaml"), "kind: Edited\n").unwrap();
        write_defaults(&manifests, &defaults).unwrap();
        assert_eq!(
            std::fs::read_to_string(manifests.join("a.yaml")).unwrap(),
            "kind: A\n"
        );
        assert_eq!(
            manifest_files(&manifests),
            vec![manifests.join("a.yaml")],
            "temporary files and skipped defaults are not manifests"
        );
    }

    #[test]
    fn files_are_yaml_or_json_not_hidden_not_skipped_in_name_order() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "b.yml",
            "a.yaml",
            "c.json",
            "notes.txt",
            ".hidden.yaml",
            "off.yaml",
        ] {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
        std::fs::write(dir.path().join("off.yaml.skip"), "").unwrap();
        let names: Vec<String> = manifest_files(dir.path())
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.yaml", "b.yml", "c.json"]);
    }

    #[test]
    fn documents_and_lists_become_objects_and_bad_yaml_names_the_document() {
        let file = Path::new("m.yaml");
        let text = "---\napiVersion: v1\nkind: ConfigMap\nmetadata: {name: a}\n---\n---\n\
                    apiVersion: v1\nkind: List\nitems:\n- {apiVersion: v1, kind: Secret, metadata: {name: b}}\n\
                    - {apiVersion: v1, kind: ConfigMap, metadata: {name: c}}\n";
        let objects = parse(file, text).unwrap();
        let names: Vec<&str> = objects
            .iter()
            .map(|o| o["metadata"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["a", "b", "c"]);
        let json = parse(
            Path::new("m.json"),
            r#"{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "x"}}"#,
        )
        .unwrap();
        assert_eq!(json.len(), 1);
        let err = parse(file, "kind: ConfigMap\n---\nkind: [unclosed\n").unwrap_err();
        assert!(err.to_string().starts_with("m.yaml: document 2: "), "{err}");
        let err = parse(file, "- a\n- b\n").unwrap_err();
        assert!(err.to_string().contains("not an object"), "{err}");
    }
}
