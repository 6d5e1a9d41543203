//! The layers keep their shape, read from the source:
//! - the pure layers (`model`, `pipeline`, `report`, `fleetgen`) stay free of IO, clocks,
//!   randomness and the environment;
//! - dependencies point down: each layer imports (`crate::<layer>` paths) only the layers
//!   [`MAY_IMPORT`] lets it, so the agent and the daemon share what they need through an
//!   adapter, not through each other, and only `cli` (and `main`, `lib`) reach `cli`.

use std::path::{Path, PathBuf};

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

/// The layers each layer's code may import besides itself. A layer is a top-level module
/// of `src` (`src/engine.rs` and `src/engine/` are `engine`); `main` and `lib` may import
/// anything. A new top-level module fails the test until it is placed here.
const MAY_IMPORT: [(&str, &[&str]); 9] = [
    ("model", &[]),
    ("pipeline", &["model"]),
    ("report", &["model", "pipeline"]),
    ("fleetgen", &["model", "pipeline", "report"]),
    ("adapters", &["model", "pipeline", "report"]),
    ("engine", &["adapters", "model", "pipeline"]),
    ("agent", &["adapters", "model", "pipeline"]),
    (
        "daemon",
        &["adapters", "engine", "model", "pipeline", "report"],
    ),
    (
        "cli",
        &[
            "adapters", "agent", "daemon", "engine", "model", "pipeline", "report",
        ],
    ),
];

/// One `crate::<layer>` path in production code.
struct Import {
    file: PathBuf,
    line: usize,
    layer: String,
}

#[test]
fn dependencies_between_layers_point_down() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let src = root.join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let tests = test_only_files(&files);
    let mut offences = Vec::new();
    let mut imports_seen = 0;
    for file in files
        .iter()
        .filter(|f| !tests.iter().any(|t| f.starts_with(t)))
    {
        let from = layer_of(&src, file);
        let Some(may) = may_import(&from) else {
            offences.push(format!(
                "{}: layer `{from}` is not in MAY_IMPORT",
                file.display()
            ));
            continue;
        };
        for import in imports(file) {
            imports_seen += 1;
            if import.layer == from || may.contains(&import.layer.as_str()) {
                continue;
            }
            let rel = import.file.strip_prefix(root).unwrap_or(&import.file);
            offences.push(format!(
                "{}:{}: `{from}` imports `crate::{}`",
                rel.display(),
                import.line,
                import.layer
            ));
        }
    }
    assert!(
        imports_seen > 100,
        "found only {imports_seen} crate:: paths"
    );
    assert!(
        offences.is_empty(),
        "dependencies must point down (see MAY_IMPORT):\n{}",
        offences.join("\n")
    );
}

/// What `layer` may import; `None` for a layer not in [`MAY_IMPORT`].
fn may_import(layer: &str) -> Option<&'static [&'static str]> {
    if layer == "main" || layer == "lib" {
        return Some(&[
            "adapters", "agent", "cli", "daemon", "engine", "fleetgen", "model", "pipeline",
            "report",
        ]);
    }
    MAY_IMPORT
        .iter()
        .find(|(name, _)| *name == layer)
        .map(|(_, may)| *may)
}

/// The layer of a file under `src`: its first path component, without `.rs`.
fn layer_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).expect("under src");
    let first = rel.components().next().expect("a component");
    let first = first.as_os_str().to_string_lossy();
    first.strip_suffix(".rs").unwrap_or(&first).to_owned()
}

/// Files and folders that only tests compile: modules declared under `#[cfg(test)]`
/// (`mod tests;`, `#[path = "x.rs"] mod x;`) and everything beneath them.
fn test_only_files(files: &[PathBuf]) -> Vec<PathBuf> {
    let mut tests = Vec::new();
    for file in files {
        let text = std::fs::read_to_string(file).expect("read source");
        let lines: Vec<&str> = text.lines().map(str::trim).collect();
        for (n, line) in lines.iter().enumerate() {
            if *line != "#[cfg(test)]" {
                continue;
            }
            let item = lines[n + 1..].iter().take_while(|l| l.starts_with("#["));
            let path_attr = item.clone().find_map(|l| {
                let rest = l.strip_prefix("#[path = \"")?;
                rest.strip_suffix("\"]").map(str::to_owned)
            });
            let Some(decl) = lines.get(n + 1 + item.count()) else {
                continue;
            };
            let Some(name) = declared_module(decl) else {
                continue;
            };
            let here = file.parent().expect("a folder");
            match path_attr {
                Some(path) => tests.push(here.join(path)),
                None => {
                    let dir = module_dir(file);
                    tests.push(dir.join(format!("{name}.rs")));
                    tests.push(dir.join(name));
                }
            }
        }
    }
    tests
}

/// `NAME` of a `mod NAME;` line (any visibility).
fn declared_module(line: &str) -> Option<&str> {
    let decl = line.strip_suffix(';')?;
    let name = decl.rsplit_once("mod ")?.1;
    name.chars()
        .all(|c| c.is_ascii_alphanumeric() || c == '_')
        .then_some(name)
}

/// The folder holding the child modules of `file`.
fn module_dir(file: &Path) -> PathBuf {
    let parent = file.parent().expect("a folder");
    let stem = file.file_stem().expect("a name").to_string_lossy();
    match stem.as_ref() {
        "mod" | "lib" | "main" => parent.to_owned(),
        _ => parent.join(stem.as_ref()),
    }
}

/// The `crate::<layer>` paths of `file`'s production code: comment lines, and items
/// under `#[cfg(test)]` (a `mod tests { .. }` to its closing brace) are left out. A
/// group (`crate::{a::x, b::y}`) names each of its layers.
fn imports(file: &Path) -> Vec<Import> {
    let text = std::fs::read_to_string(file).expect("read source");
    let lines: Vec<&str> = text.lines().collect();
    let mut code = String::new();
    let mut starts = Vec::new();
    let mut n = 0;
    while n < lines.len() {
        if lines[n].trim() == "#[cfg(test)]" {
            n = after_item(&lines, n + 1);
            continue;
        }
        starts.push((code.len(), n + 1));
        if !lines[n].trim_start().starts_with("//") {
            code.push_str(lines[n]);
        }
        code.push('\n');
        n += 1;
    }
    let line_of = |offset: usize| {
        let i = starts.partition_point(|(start, _)| *start <= offset);
        starts[i - 1].1
    };
    let mut found = Vec::new();
    for (at, _) in code.match_indices("crate::") {
        let before = code[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_' || c == '$') {
            continue;
        }
        for layer in layers_named(&code[at + "crate::".len()..]) {
            found.push(Import {
                file: file.to_owned(),
                line: line_of(at),
                layer,
            });
        }
    }
    found
}

/// The first line after the item that starts at `lines[from]` (skipping its
/// attributes): one line ending in `;`, or up to the line closing its braces.
fn after_item(lines: &[&str], from: usize) -> usize {
    let mut n = from;
    while lines.get(n).is_some_and(|l| l.trim().starts_with("#[")) {
        n += 1;
    }
    let Some(first) = lines.get(n) else {
        return n;
    };
    if first.trim_end().ends_with(';') {
        return n + 1;
    }
    // A top-level item (rustfmt's layout) ends at the first `}` in column 0.
    if !first.starts_with(char::is_whitespace) {
        let end = lines[n..].iter().position(|l| *l == "}");
        return end.map_or(lines.len(), |e| n + e + 1);
    }
    let mut depth = 0i64;
    for (i, line) in lines.iter().enumerate().skip(n) {
        depth += line.matches('{').count() as i64 - line.matches('}').count() as i64;
        if depth <= 0 && line.contains('}') {
            return i + 1;
        }
    }
    lines.len()
}

/// The layer(s) named by the text right after `crate::`: one identifier, or each
/// top-level entry of a `{..}` group.
fn layers_named(rest: &str) -> Vec<String> {
    let ident = |s: &str| {
        let s = s.trim_start();
        let end = s
            .find(|c: char| !(c.is_alphanumeric() || c == '_'))
            .unwrap_or(s.len());
        s[..end].to_owned()
    };
    let Some(group) = rest.strip_prefix('{') else {
        return vec![ident(rest)];
    };
    let mut layers = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in group.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                layers.push(ident(&group[start..i]));
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                layers.push(ident(&group[start..i]));
                start = i + 1;
            }
            _ => {}
        }
    }
    layers.retain(|l| !l.is_empty());
    layers
}

#[test]
fn the_import_reader_sees_groups_and_skips_tests_and_comments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let file = dir.path().join("sample.rs");
    let text = "use crate::model::x;\n\
                // use crate::cli::y;\n\
                use crate::{\n    pipeline::a,\n    report::{b, c},\n};\n\
                fn f() { crate::engine::run(); }\n\
                #[cfg(test)]\nuse crate::fleetgen;\n\
                #[cfg(test)]\nmod tests {\n    use crate::daemon::z;\n}\n";
    std::fs::write(&file, text).expect("write");
    let found: Vec<(usize, String)> = imports(&file)
        .into_iter()
        .map(|i| (i.line, i.layer))
        .collect();
    let expected = [(1, "model"), (3, "pipeline"), (3, "report"), (7, "engine")];
    let expected: Vec<(usize, String)> = expected
        .iter()
        .map(|(n, l)| (*n, (*l).to_owned()))
        .collect();
    assert_eq!(found, expected);
    assert_eq!(
        declared_module("pub(crate) mod openmetrics;"),
        Some("openmetrics")
    );
    assert_eq!(declared_module("mod tests {"), None);
}
