//! The optional YAML config file (`/etc/orc/config.yaml`, `--config`, `ORC_CONFIG`):
//! its keys are flag names; they are inserted before the command line's own flags, so
//! flags given on the command line win.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// Config file read when none is named and it exists.
pub const DEFAULT_CONFIG: &str = "/etc/orc/config.yaml";

#[derive(Debug, thiserror::Error)]
pub enum ConfigFileError {
    #[error("read config file {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("config file {path} is not valid YAML: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config file {path}: expected a mapping of flag names to values")]
    NotAMapping { path: PathBuf },
    #[error(
        "config file {path}: value of {key} must be a string, number, boolean or list of those"
    )]
    BadValue { path: PathBuf, key: String },
}

/// Rewrites `args` (program name first) to include the config file's flags for the
/// `server` and `agent` subcommands. The `--config PATH` flag itself is removed.
pub fn expand(args: Vec<OsString>) -> Result<Vec<OsString>, ConfigFileError> {
    let Some(sub_idx) = args
        .iter()
        .position(|a| a == "server" || a == "agent")
        .filter(|i| {
            args[1..*i]
                .iter()
                .all(|a| a.to_string_lossy().starts_with('-'))
        })
    else {
        return Ok(args);
    };
    let mut rest: Vec<OsString> = Vec::new();
    let mut explicit: Option<PathBuf> = std::env::var_os("ORC_CONFIG").map(PathBuf::from);
    let mut iter = args[sub_idx + 1..].iter();
    while let Some(a) = iter.next() {
        let s = a.to_string_lossy();
        if s == "--config" {
            explicit = iter.next().map(PathBuf::from);
        } else if let Some(p) = s.strip_prefix("--config=") {
            explicit = Some(PathBuf::from(p));
        } else {
            rest.push(a.clone());
        }
    }
    let path = match explicit {
        Some(p) => Some(p),
        None => Path::new(DEFAULT_CONFIG)
            .exists()
            .then(|| PathBuf::from(DEFAULT_CONFIG)),
    };
    let mut out: Vec<OsString> = args[..=sub_idx].to_vec();
    if let Some(path) = path {
        out.extend(flags_from_file(&path)?);
    }
    out.extend(rest);
    Ok(out)
}

fn flags_from_file(path: &Path) -> Result<Vec<OsString>, ConfigFileError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigFileError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    flags_from_yaml(path, &text)
}

fn scalar(v: &serde_yaml::Value) -> Option<String> {
    match v {
        serde_yaml::Value::String(s) => Some(s.clone()),
        serde_yaml::Value::Number(n) => Some(n.to_string()),
        serde_yaml::Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

fn flags_from_yaml(path: &Path, text: &str) -> Result<Vec<OsString>, ConfigFileError> {
    let doc: serde_yaml::Value =
        serde_yaml::from_str(text).map_err(|e| ConfigFileError::Parse {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
    let map = match doc {
        serde_yaml::Value::Null => return Ok(Vec::new()),
        serde_yaml::Value::Mapping(m) => m,
        _ => {
            return Err(ConfigFileError::NotAMapping {
                path: path.to_path_buf(),
            })
        }
    };
    let mut out = Vec::new();
    for (k, v) in map {
        let key = scalar(&k).ok_or_else(|| ConfigFileError::NotAMapping {
            path: path.to_path_buf(),
        })?;
        let flag = format!("--{key}");
        let bad = || ConfigFileError::BadValue {
            path: path.to_path_buf(),
            key: key.clone(),
        };
        match &v {
            serde_yaml::Value::Bool(true) => out.push(OsString::from(&flag)),
            serde_yaml::Value::Bool(false) | serde_yaml::Value::Null => {}
            serde_yaml::Value::Sequence(items) => {
                for item in items {
                    out.push(OsString::from(&flag));
                    out.push(OsString::from(scalar(item).ok_or_else(bad)?));
                }
            }
            other => {
                out.push(OsString::from(&flag));
                out.push(OsString::from(scalar(other).ok_or_else(bad)?));
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strs(v: &[OsString]) -> Vec<String> {
        v.iter().map(|s| s.to_string_lossy().into_owned()).collect()
    }

    #[test]
    fn yaml_keys_become_flags_and_lists_repeat() {
        let flags = flags_from_yaml(
            Path::new("c.yaml"),
            "https-port: 7443\ntls-san: [a.example, 10.0.0.1]\ndisable-agent: true\nnode-name: pi\n",
        )
        .unwrap();
        assert_eq!(
            strs(&flags),
            vec![
                "--https-port",
                "7443",
                "--tls-san",
                "a.example",
                "--tls-san",
                "10.0.0.1",
                "--disable-agent",
                "--node-name",
                "pi"
            ]
        );
    }

    #[test]
    fn bad_files_are_named_in_the_error() {
        let e = flags_from_yaml(Path::new("/etc/orc/config.yaml"), "- a\n- b\n").unwrap_err();
        assert!(e.to_string().contains("/etc/orc/config.yaml"));
        let e = flags_from_yaml(Path::new("c.yaml"), "a: {b: c}\n").unwrap_err();
        assert!(e.to_string().contains("value of a"));
    }

    #[test]
    fn config_flags_come_before_command_line_flags() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "https-port: 7443\n").unwrap();
        let args: Vec<OsString> = [
            "orc",
            "server",
            "--config",
            path.to_str().unwrap(),
            "--https-port",
            "9443",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        let out = strs(&expand(args).unwrap());
        assert_eq!(
            out,
            vec![
                "orc",
                "server",
                "--https-port",
                "7443",
                "--https-port",
                "9443"
            ]
        );
    }
}
