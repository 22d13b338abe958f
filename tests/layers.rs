//! The architecture's rules, checked on the source tree: imports point down only (see
//! ARCHITECTURE.md) and no hand-written source file grows past the size a reader can hold.

use std::fs;
use std::path::{Path, PathBuf};

/// Longest hand-written source file, in lines (generated files say `@generated` on top).
const MAX_LINES: usize = 1_500;

fn rust_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in fs::read_dir(&d).unwrap_or_else(|e| panic!("read {}: {e}", d.display())) {
            let path = entry.expect("directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Files under `src/<layer>` that mention one of `forbidden` (as `crate::<name>`).
fn violations(layer: &str, forbidden: &[&str]) -> Vec<String> {
    let mut found = Vec::new();
    for file in rust_files(&root().join("src").join(layer)) {
        let text = fs::read_to_string(&file).expect("read source file");
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            for name in forbidden {
                let needle = format!("crate::{name}");
                let hit = code.match_indices(&needle).any(|(i, _)| {
                    let rest = &code[i + needle.len()..];
                    !rest.starts_with(|c: char| c.is_alphanumeric() || c == '_')
                });
                if hit {
                    found.push(format!("{}:{}: {}", file.display(), n + 1, line.trim()));
                }
            }
        }
    }
    found
}

#[test]
fn bottom_layers_import_nothing_above_them() {
    for layer in ["api", "store", "tls"] {
        let v = violations(layer, &["apiserver", "controllers", "agent", "cli"]);
        assert!(
            v.is_empty(),
            "src/{layer} imports an upper layer:\n{}",
            v.join("\n")
        );
    }
    let v = violations("api", &["store", "tls"]);
    assert!(v.is_empty(), "src/api must stand alone:\n{}", v.join("\n"));
    // Metrics handles are passed down to every layer: they import nothing of orc.
    let v = violations(
        "metrics",
        &[
            "api",
            "store",
            "tls",
            "apiserver",
            "controllers",
            "agent",
            "cli",
        ],
    );
    assert!(
        v.is_empty(),
        "src/metrics must stand alone:\n{}",
        v.join("\n")
    );
}

#[test]
fn servers_and_agent_never_import_the_cli() {
    for layer in ["apiserver", "controllers", "agent"] {
        let v = violations(layer, &["cli"]);
        assert!(
            v.is_empty(),
            "src/{layer} imports the CLI:\n{}",
            v.join("\n")
        );
    }
}

#[test]
fn the_agent_never_imports_the_api_server() {
    let v = violations("agent", &["apiserver", "controllers"]);
    assert!(
        v.is_empty(),
        "src/agent imports the server side:\n{}",
        v.join("\n")
    );
}

#[test]
fn no_hand_written_source_file_is_too_long() {
    let mut long = Vec::new();
    for dir in ["src", "tests", "benches"] {
        for file in rust_files(&root().join(dir)) {
            let text = fs::read_to_string(&file).expect("read source file");
            let generated = text.lines().take(3).any(|l| l.contains("@generated"));
            let lines = text.lines().count();
            if !generated && lines > MAX_LINES {
                long.push(format!("{} ({lines} lines)", file.display()));
            }
        }
    }
    assert!(long.is_empty(), "split these files:\n{}", long.join("\n"));
}
