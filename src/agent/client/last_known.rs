//! The agent's last known state on disk, so that an agent started while the server is
//! unreachable keeps serving what it served before: the objects a [`super::Reflector`]
//! last saw (pods bound to this node, Services, Endpoints, Nodes), one JSON file per
//! list-watch under `<data-dir>/agent/last-known/`, and the node's pod CIDR.
//!
//! Files are written atomically, mode 0600 in a 0700 directory, at most every
//! [`SAVE_DEBOUNCE`] and never over [`MAX_FILE_BYTES`]. They hold no Secret: the kinds
//! kept here carry none. What a file holds may be stale; consumers treat it as the
//! state to keep until the server answers, never as what exists now.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::sync::watch;

/// Changes closer together than this are written once.
pub const SAVE_DEBOUNCE: Duration = Duration::from_secs(2);
/// Largest file written or read (a cluster whose Services and Endpoints outgrow it
/// starts without them while the server is away, as before: the file is removed).
pub const MAX_FILE_BYTES: usize = 32 * 1024 * 1024;
/// The directory below the agent dir.
pub const DIR: &str = "last-known";
const POD_CIDR_FILE: &str = "pod-cidr";

#[derive(Debug, thiserror::Error)]
pub enum LastKnownError {
    #[error("read {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is larger than {MAX_FILE_BYTES} bytes")]
    TooLarge { path: PathBuf },
    #[error("{path} is not a last-known state file")]
    Unreadable {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("{path} holds the state of {found:?}, not of {expected:?}")]
    OtherCollection {
        path: PathBuf,
        found: String,
        expected: String,
    },
    #[error("remove {path}")]
    Remove {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("encode the state for {path}")]
    Encode {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("write {path}")]
    Write {
        path: PathBuf,
        #[source]
        source: crate::tls::Error,
    },
}

pub type Result<T, E = LastKnownError> = std::result::Result<T, E>;

/// Where the agent keeps its last known state (`<data-dir>/agent/last-known`).
#[derive(Debug, Clone)]
pub struct LastKnownDir {
    dir: PathBuf,
}

impl LastKnownDir {
    pub fn new(agent_dir: &Path) -> LastKnownDir {
        LastKnownDir {
            dir: agent_dir.join(DIR),
        }
    }

    /// The file of the list-watch named `name` (`pods`, `services` …).
    pub fn file(&self, name: &str) -> LastKnownFile {
        LastKnownFile {
            path: self.dir.join(format!("{name}.json")),
        }
    }

    /// The pod CIDR the server gave this node, if one was kept.
    pub fn pod_cidr(&self) -> Option<ipnet::Ipv4Net> {
        std::fs::read_to_string(self.dir.join(POD_CIDR_FILE))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// Keeps the node's pod CIDR (it never changes once set).
    pub fn save_pod_cidr(&self, cidr: ipnet::Ipv4Net) -> Result<()> {
        let path = self.dir.join(POD_CIDR_FILE);
        crate::tls::write_private_file(&path, format!("{cidr}\n").as_bytes())
            .map_err(|source| LastKnownError::Write { path, source })
    }
}

/// What a file holds: the list-watch's collection path (selectors included) and its
/// objects.
#[derive(Serialize, Deserialize)]
struct Contents<T> {
    collection: String,
    items: Vec<T>,
}

/// One list-watch's last known objects on disk.
#[derive(Debug, Clone)]
pub struct LastKnownFile {
    path: PathBuf,
}

impl LastKnownFile {
    pub fn at(path: PathBuf) -> LastKnownFile {
        LastKnownFile { path }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The objects kept for `collection`; `None` when nothing was kept.
    pub fn load<T: DeserializeOwned>(&self, collection: &str) -> Result<Option<Vec<T>>> {
        let path = &self.path;
        let bytes = match std::fs::read(path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(LastKnownError::Read {
                    path: path.clone(),
                    source,
                })
            }
        };
        if bytes.len() > MAX_FILE_BYTES {
            return Err(LastKnownError::TooLarge { path: path.clone() });
        }
        let unreadable = |source| LastKnownError::Unreadable {
            path: path.clone(),
            source,
        };
        let contents: Contents<Value> = serde_json::from_slice(&bytes).map_err(unreadable)?;
        if contents.collection != collection {
            return Err(LastKnownError::OtherCollection {
                path: path.clone(),
                found: contents.collection,
                expected: collection.to_string(),
            });
        }
        let items = contents
            .items
            .into_iter()
            .map(serde_json::from_value)
            .collect::<Result<Vec<T>, _>>()
            .map_err(unreadable)?;
        Ok(Some(items))
    }

    /// The file's contents for `items` of `collection`.
    pub fn encode<'a, T: Serialize + 'a>(
        collection: &str,
        items: impl Iterator<Item = &'a T>,
    ) -> serde_json::Result<Vec<u8>> {
        serde_json::to_vec(&Contents {
            collection: collection.to_string(),
            items: items.collect::<Vec<&T>>(),
        })
    }

    /// The file's contents for `items` of `collection`, each already compact JSON (as
    /// [`LastKnownFile::encode`] writes them, without parsing them again).
    pub fn encode_json(collection: &str, items: &[impl AsRef<str>]) -> serde_json::Result<Vec<u8>> {
        let collection = serde_json::to_vec(collection)?;
        let len = items
            .iter()
            .map(|item| item.as_ref().len() + 1)
            .sum::<usize>();
        let mut out = Vec::with_capacity(len + collection.len() + 32);
        out.extend_from_slice(br#"{"collection":"#);
        out.extend_from_slice(&collection);
        out.extend_from_slice(br#","items":["#);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push(b',');
            }
            out.extend_from_slice(item.as_ref().as_bytes());
        }
        out.extend_from_slice(b"]}");
        Ok(out)
    }

    /// Replaces the file with `contents` (atomically, 0600), unless they are too large.
    pub fn store(&self, contents: &[u8]) -> Result<()> {
        if contents.len() > MAX_FILE_BYTES {
            return Err(LastKnownError::TooLarge {
                path: self.path.clone(),
            });
        }
        crate::tls::write_private_file(&self.path, contents).map_err(|source| {
            LastKnownError::Write {
                path: self.path.clone(),
                source,
            }
        })
    }

    /// Removes the file (its contents would be staler every day).
    pub fn remove(&self) -> Result<()> {
        match std::fs::remove_file(&self.path) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(LastKnownError::Remove {
                path: self.path.clone(),
                source: e,
            }),
            _ => Ok(()),
        }
    }

    /// Carries out one [`Save`]: encodes the state and replaces the file with it, or
    /// removes the file when the state outgrew [`MAX_FILE_BYTES`].
    fn carry_out(&self, save: &Save) -> Result<Saved> {
        let contents = (save.0)().map_err(|source| LastKnownError::Encode {
            path: self.path.clone(),
            source,
        })?;
        if contents.len() > MAX_FILE_BYTES {
            self.remove()?;
            return Ok(Saved::TooLarge {
                bytes: contents.len(),
            });
        }
        self.store(&contents)?;
        Ok(Saved::Written)
    }

    /// A writer task for this file: the latest [`Save`] sent to the returned sender is
    /// carried out (encoded and written off the async workers, so whoever sends it goes
    /// on at once); it ends when the sender is dropped.
    pub fn spawn_writer(self) -> watch::Sender<Option<Save>> {
        let (tx, mut rx) = watch::channel::<Option<Save>>(None);
        tokio::spawn(async move {
            let mut warned_too_large = false;
            while rx.changed().await.is_ok() {
                let Some(save) = rx.borrow_and_update().clone() else {
                    continue;
                };
                let file = self.clone();
                let done = tokio::task::spawn_blocking(move || file.carry_out(&save)).await;
                match done {
                    Ok(Ok(Saved::Written)) => {
                        warned_too_large = false;
                        tracing::debug!(file = %self.path.display(), "last known state saved")
                    }
                    Ok(Ok(Saved::TooLarge { bytes })) => {
                        if !std::mem::replace(&mut warned_too_large, true) {
                            tracing::warn!(
                                file = %self.path.display(),
                                bytes,
                                limit = MAX_FILE_BYTES,
                                "too many objects to keep on disk: a restart without server starts without them"
                            );
                        }
                    }
                    Ok(Err(e)) => {
                        tracing::warn!(error = %crate::agent::error_chain(&e), "saving the last known state failed")
                    }
                    Err(e) => tracing::warn!(error = %e, "saving the last known state panicked"),
                }
            }
        });
        tx
    }
}

/// What the writer task of a [`LastKnownFile`] does with the state: the function
/// encoding it (with [`LastKnownFile::encode`] or [`LastKnownFile::encode_json`]),
/// called on a blocking thread.
#[derive(Clone)]
pub struct Save(Arc<dyn Fn() -> serde_json::Result<Vec<u8>> + Send + Sync>);

impl Save {
    pub fn new(encode: impl Fn() -> serde_json::Result<Vec<u8>> + Send + Sync + 'static) -> Save {
        Save(Arc::new(encode))
    }
}

impl std::fmt::Debug for Save {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Save")
    }
}

/// What a [`Save`] came to.
#[derive(Debug, PartialEq, Eq)]
enum Saved {
    Written,
    /// The state outgrew [`MAX_FILE_BYTES`]: the file was removed.
    TooLarge {
        bytes: usize,
    },
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn objects_come_back_for_their_own_collection_only() {
        let dir = tempfile::tempdir().unwrap();
        let file = LastKnownDir::new(dir.path()).file("pods");
        assert!(file.load::<Value>("/api/v1/pods").unwrap().is_none());
        let pods = [json!({"metadata": {"name": "a"}})];
        file.store(&LastKnownFile::encode("/api/v1/pods", pods.iter()).unwrap())
            .unwrap();
        assert_eq!(
            file.load::<Value>("/api/v1/pods").unwrap().unwrap(),
            pods.to_vec()
        );
        let other = file.load::<Value>("/api/v1/pods?fieldSelector=spec.nodeName%3Dn2");
        assert!(
            matches!(other, Err(LastKnownError::OtherCollection { .. })),
            "{other:?}"
        );
    }

    #[test]
    fn objects_kept_as_json_are_written_as_parsed_ones_are() {
        let pods = [
            json!({"metadata": {"name": "a", "labels": {"app": "x\"y"}}, "spec": {}}),
            json!({"metadata": {"name": "b"}}),
        ];
        let texts: Vec<String> = pods.iter().map(|p| p.to_string()).collect();
        let collection = "/api/v1/pods?fieldSelector=spec.nodeName%3D\"n\"";
        assert_eq!(
            LastKnownFile::encode_json(collection, &texts).unwrap(),
            LastKnownFile::encode(collection, pods.iter()).unwrap()
        );
        assert_eq!(
            LastKnownFile::encode_json(collection, &[] as &[String]).unwrap(),
            LastKnownFile::encode(collection, [].iter() as std::slice::Iter<Value>).unwrap()
        );
        let dir = tempfile::tempdir().unwrap();
        let file = LastKnownDir::new(dir.path()).file("pods");
        file.store(&LastKnownFile::encode_json(collection, &texts).unwrap())
            .unwrap();
        assert_eq!(
            file.load::<Value>(collection).unwrap().unwrap(),
            pods.to_vec()
        );
    }

    #[test]
    fn files_are_private_and_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let keep = LastKnownDir::new(dir.path());
        let file = keep.file("services");
        file.store(b"{}").unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(file.path()), 0o600);
        assert_eq!(mode(&dir.path().join(DIR)), 0o700);
        let huge = vec![b' '; MAX_FILE_BYTES + 1];
        assert!(matches!(
            file.store(&huge),
            Err(LastKnownError::TooLarge { .. })
        ));
        std::fs::write(file.path(), &huge).unwrap();
        assert!(matches!(
            file.load::<Value>("/api/v1/services"),
            Err(LastKnownError::TooLarge { .. })
        ));
    }

    #[test]
    fn a_save_encodes_when_carried_out_and_an_outgrown_state_removes_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = LastKnownDir::new(dir.path()).file("services");
        let services = vec![json!({"metadata": {"name": "web"}})];
        let items = services.clone();
        let save = Save::new(move || LastKnownFile::encode("/api/v1/services", items.iter()));
        assert_eq!(file.carry_out(&save).unwrap(), Saved::Written);
        assert_eq!(
            file.load::<Value>("/api/v1/services").unwrap().unwrap(),
            services
        );
        let huge = Save::new(|| Ok(vec![b' '; MAX_FILE_BYTES + 1]));
        assert_eq!(
            file.carry_out(&huge).unwrap(),
            Saved::TooLarge {
                bytes: MAX_FILE_BYTES + 1
            }
        );
        assert!(file.load::<Value>("/api/v1/services").unwrap().is_none());
    }

    #[test]
    fn a_damaged_file_is_an_error_not_an_empty_state() {
        let dir = tempfile::tempdir().unwrap();
        let file = LastKnownDir::new(dir.path()).file("pods");
        file.store(b"{\"collection\": \"/api/v1/pods\", \"items\": [")
            .unwrap();
        assert!(matches!(
            file.load::<Value>("/api/v1/pods"),
            Err(LastKnownError::Unreadable { .. })
        ));
    }

    #[test]
    fn a_removed_file_leaves_nothing_to_load() {
        let dir = tempfile::tempdir().unwrap();
        let file = LastKnownDir::new(dir.path()).file("endpoints");
        file.remove().expect("nothing to remove is fine");
        file.store(&LastKnownFile::encode::<Value>("/api/v1/endpoints", [].iter()).unwrap())
            .unwrap();
        file.remove().unwrap();
        assert!(file.load::<Value>("/api/v1/endpoints").unwrap().is_none());
    }

    #[test]
    fn the_pod_cidr_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let keep = LastKnownDir::new(dir.path());
        assert_eq!(keep.pod_cidr(), None);
        keep.save_pod_cidr("10.42.3.0/24".parse().unwrap()).unwrap();
        assert_eq!(keep.pod_cidr(), Some("10.42.3.0/24".parse().unwrap()));
    }
}
