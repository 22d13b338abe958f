//! Runtime handlers: the names a RuntimeClass's `handler` picks, each a containerd
//! runtime and, for runc-compatible runtimes, the binary containerd's runc shim runs in
//! runc's place. As k3s, the agent finds crun and NVIDIA's runtimes where their packages
//! (or the GPU operator) put them; `runc` is always there, and `--default-runtime` names
//! the handler of pods that name no RuntimeClass.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use prost::Message;

/// containerd's runc shim, which runs any runc-compatible binary.
pub const RUNC_SHIM: &str = "io.containerd.runc.v2";
/// The handler every node has.
pub const RUNC: &str = "runc";
/// The type URL containerd's runc shim reads its options under.
pub const RUNC_OPTIONS_TYPE_URL: &str = "containerd.runc.v1.Options";

/// runc-compatible runtimes looked for, with where (in order: k3s's locations, the GPU
/// operator's toolkit before the package manager's).
const KNOWN: &[(&str, &str, &[&str])] = &[
    (
        "crun",
        "crun",
        &["usr/sbin", "usr/bin", "usr/local/bin", "usr/local/sbin"],
    ),
    (
        "nvidia",
        "nvidia-container-runtime",
        &["usr/local/nvidia/toolkit", "usr/bin"],
    ),
    (
        "nvidia-experimental",
        "nvidia-container-runtime-experimental",
        &["usr/local/nvidia/toolkit", "usr/bin"],
    ),
];

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HandlerError {
    #[error(
        "--default-runtime {name:?}: no such runtime on this node (found: {found}); \
         install it or choose one of those"
    )]
    UnknownDefault { name: String, found: String },
}

/// One handler: the containerd runtime it runs containers with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handler {
    /// containerd's runtime name (a shim), e.g. `io.containerd.runc.v2`.
    pub runtime: String,
    /// The runc-compatible binary the runc shim runs instead of `runc` (absolute).
    pub binary: Option<PathBuf>,
}

impl Handler {
    /// The runtime options containerd passes the shim (`None`: the shim's defaults).
    pub fn options(&self) -> Option<prost_types::Any> {
        let binary = self.binary.as_ref()?;
        Some(prost_types::Any {
            type_url: RUNC_OPTIONS_TYPE_URL.to_string(),
            value: RuncOptions {
                binary_name: binary.to_string_lossy().into_owned(),
            }
            .encode_to_vec(),
        })
    }
}

/// The part of containerd's `containerd.runc.v1.Options` orc sets.
#[derive(Clone, PartialEq, prost::Message)]
struct RuncOptions {
    #[prost(string, tag = "6")]
    binary_name: String,
}

/// The handlers of a node and the one pods without a RuntimeClass get.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handlers {
    default: String,
    by_name: BTreeMap<String, Handler>,
}

impl Default for Handlers {
    /// Only runc, the default.
    fn default() -> Self {
        Handlers {
            default: RUNC.to_string(),
            by_name: BTreeMap::from([(
                RUNC.to_string(),
                Handler {
                    runtime: RUNC_SHIM.to_string(),
                    binary: None,
                },
            )]),
        }
    }
}

impl Handlers {
    /// runc and the known runtimes found under `root` (the filesystem's root, `/`).
    pub fn detect(root: &Path) -> Self {
        let mut handlers = Handlers::default();
        for (name, binary, dirs) in KNOWN {
            let found = dirs
                .iter()
                .map(|dir| root.join(dir).join(binary))
                .find(|path| path.is_file());
            if let Some(path) = found {
                // The path the shim runs, as seen from `/`.
                let binary = Path::new("/").join(path.strip_prefix(root).unwrap_or(&path));
                handlers.by_name.insert(
                    name.to_string(),
                    Handler {
                        runtime: RUNC_SHIM.to_string(),
                        binary: Some(binary),
                    },
                );
            }
        }
        handlers
    }

    /// The same handlers with `name` as the default (it must be one of them).
    pub fn with_default(mut self, name: &str) -> Result<Self, HandlerError> {
        if !self.by_name.contains_key(name) {
            return Err(HandlerError::UnknownDefault {
                name: name.to_string(),
                found: self.names().join(", "),
            });
        }
        self.default = name.to_string();
        Ok(self)
    }

    /// The handler named `name`; the default one for `None`.
    pub fn get(&self, name: Option<&str>) -> Option<&Handler> {
        self.by_name.get(name.unwrap_or(&self.default))
    }

    pub fn default_name(&self) -> &str {
        &self.default
    }

    /// Every handler's name, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.by_name.keys().map(String::as_str).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn touch(root: &Path, path: &str) {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, "").unwrap();
    }

    #[test]
    fn finds_crun_and_nvidia_where_k3s_looks_preferring_the_gpu_operator() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(Handlers::detect(root.path()).names(), ["runc"]);
        touch(root.path(), "usr/local/bin/crun");
        touch(root.path(), "usr/bin/nvidia-container-runtime");
        touch(
            root.path(),
            "usr/local/nvidia/toolkit/nvidia-container-runtime",
        );
        // A directory of the binary's name is not the binary.
        std::fs::create_dir_all(
            root.path()
                .join("usr/bin/nvidia-container-runtime-experimental"),
        )
        .unwrap();
        let found = Handlers::detect(root.path());
        assert_eq!(found.names(), ["crun", "nvidia", "runc"]);
        assert_eq!(
            found.get(Some("crun")).unwrap().binary.as_deref(),
            Some(Path::new("/usr/local/bin/crun"))
        );
        assert_eq!(
            found.get(Some("nvidia")).unwrap().binary.as_deref(),
            Some(Path::new(
                "/usr/local/nvidia/toolkit/nvidia-container-runtime"
            ))
        );
        assert_eq!(found.get(None), found.get(Some("runc")));
        assert_eq!(found.get(Some("kata")), None);
    }

    #[test]
    fn the_default_must_be_a_found_handler() {
        let root = tempfile::tempdir().unwrap();
        touch(root.path(), "usr/bin/crun");
        let found = Handlers::detect(root.path());
        let crun = found.clone().with_default("crun").unwrap();
        assert_eq!(crun.default_name(), "crun");
        assert_eq!(crun.get(None), found.get(Some("crun")));
        assert_eq!(
            found.with_default("kata").unwrap_err().to_string(),
            "--default-runtime \"kata\": no such runtime on this node (found: crun, runc); \
             install it or choose one of those"
        );
    }

    #[test]
    fn a_runc_compatible_binary_is_named_in_the_shims_options() {
        let runc = Handlers::default();
        assert_eq!(runc.get(None).unwrap().options(), None);
        let crun = Handler {
            runtime: RUNC_SHIM.into(),
            binary: Some("/usr/bin/crun".into()),
        };
        let any = crun.options().unwrap();
        assert_eq!(any.type_url, "containerd.runc.v1.Options");
        // Field 6 (binary_name), length-delimited: tag byte (6 << 3) | 2.
        let mut expected = vec![0x32, 13];
        expected.extend_from_slice(b"/usr/bin/crun");
        assert_eq!(any.value, expected);
    }
}
