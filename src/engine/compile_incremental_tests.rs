//! The incremental compile through [`compile_ring`] against a full [`compile`], over
//! random series of edits on a generated fleet: every result (state, rings or problems)
//! must be exactly the full compile's.

use super::*;
use crate::fleetgen::{FleetOptions, generate};
use proptest::prelude::*;

/// A production override that reads secret `h`, so compiles look a secret up while the
/// `dev` state holds none (and is cached, with its memo).
const SECRET_OVERRIDE: &str =
    "    - {workflow: wf-0003, step: parse, with: {handler: {secret: h}}}\n";

fn base_files() -> BTreeMap<String, String> {
    let opts = FleetOptions {
        workflows: 40,
        steps: 3,
        workers: 8,
        ..FleetOptions::default()
    };
    let mut files = generate(&opts);
    if let Some(rings) = files.get_mut("rings.yaml") {
        let at = rings
            .rfind("  overrides:\n")
            .map_or(rings.len(), |i| i + 13);
        rings.insert_str(at, SECRET_OVERRIDE);
    }
    files
}

fn workflow(k: usize) -> String {
    format!("workflows/wf-{k:04}.yaml")
}

/// One edit of the fleet; `k` picks a workflow, `n` makes the edit unique.
fn edit(
    kind: u8,
    k: usize,
    n: usize,
    files: &mut BTreeMap<String, String>,
    secrets: &mut BTreeMap<String, String>,
) {
    let replace = |files: &mut BTreeMap<String, String>, path: &str, from: &str, to: &str| {
        if let Some(text) = files.get_mut(path) {
            *text = text.replacen(from, to, 1);
        }
    };
    match kind {
        0 => replace(files, &workflow(k), "threads: ", &format!("threads: {n}")),
        1 => {
            let path = "blueprints/templates/stream-processor.toml.j2";
            if let Some(text) = files.get_mut(path) {
                text.push_str(&format!("# edit {n} in {{{{ ring.name }}}}\n"));
            }
        }
        2 => {
            let to = format!("bucket_prefix: dev{n}");
            replace(files, "rings.yaml", "bucket_prefix: dev", &to);
        }
        3 => {
            let line = format!(
                "  workers:\n    - {{name: edge-dev-x{n}, ring: dev, address: 10.99.0.{n}, labels: {{region: eu}}}}\n"
            );
            replace(files, "groups.yaml", "  workers:\n", &line);
        }
        4 => {
            secrets.insert("h".to_owned(), format!("handler-{n}"));
        }
        5 => toggle_secret(secrets),
        6 => {
            files.remove(&workflow(k));
        }
        7 => {
            if let Some(text) = files.get(&workflow(k)) {
                let name = format!("wf-{k:04}");
                let text = text.replace(&name, &format!("wf-new-{n}"));
                files.insert(format!("workflows/new-{n}.yaml"), text);
            }
        }
        8 => {
            if let Some(text) = files.remove(&workflow(k)) {
                files.insert(format!("workflows/moved-{n}.yaml"), text);
            }
        }
        9 => {
            if let Some(text) = files.get(&workflow(k)).cloned() {
                files.insert(format!("workflows/dup-{n}.yaml"), text);
            }
        }
        10 => replace(files, &workflow(k), "spec:\n", "spec:\n  bogus: 1\n"),
        11 => {
            if let Some(text) = files.remove(&workflow(k)) {
                let groups = files.entry("groups.yaml".to_owned()).or_default();
                groups.push_str("---\n");
                groups.push_str(&text);
            }
        }
        12 => *files = base_files(),
        _ => {}
    }
}

/// Removes secret `h`, or puts it back when it is gone.
fn toggle_secret(secrets: &mut BTreeMap<String, String>) {
    if secrets.remove("h").is_none() {
        secrets.insert("h".to_owned(), "back".to_owned());
    }
}

fn bundle_at(files: &BTreeMap<String, String>, tree: &str) -> Bundle {
    let mut b = crate::fleetgen::bundle(files, "");
    b.tree = Some(tree.to_owned());
    b
}

/// `compile_ring` under `state` and a full compile of the same bundle agree exactly.
fn assert_same(state: &Path, b: &Bundle, secrets: &BTreeMap<String, String>, step: &str) {
    let full = compile(b, secrets, Rings::One("dev"));
    let incremental = compile_ring(state, b, secrets, "dev");
    match (full, incremental) {
        (Ok(full), Ok(inc)) => {
            assert_eq!(full.rings, inc.rings, "{step}");
            assert!(full.states == inc.states, "{step}: states differ");
        }
        (Err(full), Err(inc)) => assert_eq!(full, inc, "{step}"),
        (full, inc) => panic!(
            "{step}: full ok {}, incremental ok {}",
            full.is_ok(),
            inc.is_ok()
        ),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn incremental_compiles_equal_full_compiles(
        edits in proptest::collection::vec((0u8..14, 0usize..12), 1..7)
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut files = base_files();
        let mut secrets = BTreeMap::from([("h".to_owned(), "first".to_owned())]);
        assert_same(dir.path(), &bundle_at(&files, "t0"), &secrets, "base");
        for (n, (kind, k)) in edits.into_iter().enumerate() {
            edit(kind, k, n + 1, &mut files, &mut secrets);
            let step = format!("edit {n}: kind {kind} on workflow {k}");
            assert_same(dir.path(), &bundle_at(&files, &format!("t{}", n + 1)), &secrets, &step);
        }
    }
}

/// Every kind of edit, one after another, each from a state that has a memo.
#[test]
fn every_kind_of_edit_equals_a_full_compile() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut files = base_files();
    let mut secrets = BTreeMap::from([("h".to_owned(), "first".to_owned())]);
    assert_same(dir.path(), &bundle_at(&files, "t0"), &secrets, "base");
    for kind in 0..14u8 {
        for k in [1, 4] {
            let n = usize::from(kind) * 10 + k;
            edit(kind, k, n, &mut files, &mut secrets);
            let step = format!("kind {kind} on workflow {k}");
            assert_same(
                dir.path(),
                &bundle_at(&files, &format!("t{n}")),
                &secrets,
                &step,
            );
        }
    }
}

#[test]
fn a_corrupt_or_truncated_memo_is_ignored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secrets = BTreeMap::from([("h".to_owned(), "first".to_owned())]);
    let mut files = base_files();
    assert_same(dir.path(), &bundle_at(&files, "t0"), &secrets, "base");
    let memo_dir = dir.path().join("cache/memo");
    let memo = std::fs::read_dir(&memo_dir)
        .expect("memo folder")
        .flatten()
        .map(|e| e.path())
        .next()
        .expect("a memo");
    let good = std::fs::read(&memo).expect("memo");
    for (i, damage) in [
        good[..good.len() / 2].to_vec(),
        Vec::new(),
        good.iter().map(|b| b ^ 0x55).collect(),
    ]
    .into_iter()
    .enumerate()
    {
        std::fs::write(&memo, &damage).expect("damage");
        edit(0, i, i + 1, &mut files, &mut BTreeMap::new());
        let b = bundle_at(&files, &format!("t{}", i + 1));
        assert_same(dir.path(), &b, &secrets, &format!("damage {i}"));
    }
}

/// Every file under `dir`, recursively.
fn files_under(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            found.extend(files_under(&path));
        } else {
            found.push(path);
        }
    }
    found
}

#[test]
fn no_secret_value_is_written_to_the_cache_or_the_memo() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret = "hunter2-not-on-disk";
    let secrets = BTreeMap::from([("h".to_owned(), secret.to_owned())]);
    let mut files = base_files();
    assert_same(dir.path(), &bundle_at(&files, "t0"), &secrets, "base");
    for n in 1..4 {
        edit(0, n, n, &mut files, &mut BTreeMap::new());
        assert_same(
            dir.path(),
            &bundle_at(&files, &format!("t{n}")),
            &secrets,
            "edit",
        );
    }
    let written = files_under(&dir.path().join("cache"));
    assert!(written.iter().any(|p| p.to_string_lossy().contains("memo")));
    for path in written {
        let bytes = std::fs::read(&path).expect("cache file");
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "{} holds the secret", path.display());
    }
}
