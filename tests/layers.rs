//! The pure layers (`model`, `pipeline`, `report`, `fleetgen`) stay free of IO, clocks,
//! randomness and the environment: this test reads their source and fails on any such use.

use std::path::Path;

const PURE: [&str; 5] = [
    "src/model",
    "src/pipeline",
    "src/report",
    "src/fleetgen.rs",
    "src/fleetgen",
];

const FORBIDDEN: [&str; 14] = [
    "std::fs",
    "std::env",
    "std::process",
    "std::net",
    "std::time::SystemTime",
    "std::time::Instant",
    "tokio",
    "git2",
    "notify",
    "reqwest",
    "axum",
    "rusqlite",
    "rand::",
    "crate::adapters",
];

fn sources(path: &Path, out: &mut Vec<std::path::PathBuf>) {
    if path.is_dir() {
        for entry in std::fs::read_dir(path).expect("read source folder") {
            sources(&entry.expect("entry").path(), out);
        }
    } else if path.extension().is_some_and(|e| e == "rs") {
        out.push(path.to_owned());
    }
}

#[test]
fn pure_layers_use_no_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = Vec::new();
    for layer in PURE {
        sources(&root.join(layer), &mut files);
    }
    assert!(files.len() > 10, "found only {} files", files.len());
    let mut offences = Vec::new();
    for file in &files {
        let text = std::fs::read_to_string(file).expect("read source");
        // Unit tests may build fixtures with real files; only the code under test is pure.
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        for (n, line) in code.lines().enumerate() {
            if line.trim_start().starts_with("//") {
                continue;
            }
            for word in FORBIDDEN {
                if line.contains(word) {
                    offences.push(format!("{}:{}: uses `{word}`", file.display(), n + 1));
                }
            }
        }
    }
    assert!(
        offences.is_empty(),
        "pure layers must not do IO:\n{}",
        offences.join("\n")
    );
}
