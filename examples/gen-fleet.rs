//! Writes a synthetic fleet (see `ringops::fleetgen`) into a new Git repository with two
//! commits, base and head, so that
//! `ringops plan --repo OUT --ring dev --base HEAD~1 --head HEAD` measures the real path.
//!
//! ```text
//! cargo run --release --example gen-fleet -- --workflows 1000 --workers 100 /tmp/fleet1000
//! ```
//!
//! Artifacts per ring (5 steps): 20,906 for 1,000 workflows and 100 workers, 28,906 for
//! 1,000 workflows and 500 workers, 104,139 for 5,000 workflows and 100 workers (the
//! shape `benches/apply.rs` uses: over 100,000 in one ring).

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use ringops::fleetgen::{FleetOptions, bundle, generate, touched};
use ringops::pipeline::{NoSecrets, Rings, compile};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Generate a synthetic fleet repository: a base commit and a head commit that changes
/// a param in `--percent`% of the workflows.
#[derive(Debug, Parser)]
struct Args {
    /// Number of workflows.
    #[arg(long, default_value_t = 1000)]
    workflows: usize,
    /// Steps per workflow (at least 2).
    #[arg(long, default_value_t = 5)]
    steps: usize,
    /// Workers per ring, split between groups `edge` and `core`.
    #[arg(long, default_value_t = 100)]
    workers: usize,
    /// Share of workflows (0-100) the head commit changes.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(0..=100))]
    percent: u32,
    /// Directory to create; must not exist or be empty.
    out: PathBuf,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let base = FleetOptions {
        workflows: args.workflows,
        steps: args.steps,
        workers: args.workers,
        revision: 0,
        percent: args.percent,
    };
    let head = base.at_revision(1);
    prepare(&args.out)?;
    let base_files = generate(&base);
    write_files(&args.out, &base_files, &BTreeMap::new())?;
    git(&args.out, &["init", "--quiet", "--initial-branch=main"])?;
    let base_commit = commit(&args.out, "fleet: base")?;
    let head_files = generate(&head);
    let written = write_files(&args.out, &head_files, &base_files)?;
    let head_commit = commit(&args.out, "fleet: head")?;

    let bytes: usize = base_files.values().map(String::len).sum();
    println!(
        "wrote {} files ({} KiB): {} workflows x {} steps, {} workers per ring, 3 rings",
        base_files.len(),
        bytes / 1024,
        base.workflows,
        base.steps.max(2),
        base.workers,
    );
    match compile(&bundle(&base_files, ""), &NoSecrets, Rings::One("dev")) {
        Ok(compiled) => {
            let dev = &compiled.states["dev"];
            println!(
                "ring dev: {} artifacts on {} workers (every ring alike)",
                dev.artifact_count(),
                dev.workers.len()
            );
        }
        Err(diags) => bail!("the generated fleet does not compile: {diags:?}"),
    }
    println!("base {base_commit}  HEAD~1");
    println!(
        "head {head_commit}  HEAD: {} files changed ({} workflows, {}%)",
        written,
        touched(&head).len(),
        args.percent
    );
    println!(
        "try: ringops plan --repo {} --ring dev --base HEAD~1 --head HEAD",
        args.out.display()
    );
    Ok(())
}

/// Creates `out`, refusing one that holds anything.
fn prepare(out: &Path) -> Result<()> {
    if out.exists() {
        let mut entries = std::fs::read_dir(out).with_context(|| format!("{}", out.display()))?;
        if entries.next().is_some() {
            bail!("{} exists and is not empty", out.display());
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("cannot create {}", out.display()))
}

/// Writes the files of `files` that differ from `previous` and removes those gone;
/// returns how many paths changed.
fn write_files(
    out: &Path,
    files: &BTreeMap<String, String>,
    previous: &BTreeMap<String, String>,
) -> Result<usize> {
    let mut changed = 0;
    for (path, text) in files {
        if previous.get(path) == Some(text) {
            continue;
        }
        let full = out.join(path);
        if let Some(dir) = full.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("{}", dir.display()))?;
        }
        std::fs::write(&full, text).with_context(|| format!("cannot write {}", full.display()))?;
        changed += 1;
    }
    for path in previous.keys().filter(|p| !files.contains_key(*p)) {
        let full = out.join(path);
        std::fs::remove_file(&full).with_context(|| format!("cannot remove {}", full.display()))?;
        changed += 1;
    }
    Ok(changed)
}

/// Commits everything in `repo`; returns the commit id.
fn commit(repo: &Path, message: &str) -> Result<String> {
    git(repo, &["add", "--all"])?;
    git(repo, &["commit", "--quiet", "--no-gpg-sign", "-m", message])?;
    git(repo, &["rev-parse", "HEAD"])
}

/// Runs `git -C repo ...` with a fixed identity; returns its trimmed stdout.
fn git(repo: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args([
            "-c",
            "user.name=gen",
            "-c",
            "user.email=gen@example.invalid",
        ])
        .args(args)
        .output()
        .context("cannot run git")?;
    ensure!(
        output.status.success(),
        "git {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&output.stderr).trim()
    );
    Ok(String::from_utf8_lossy(&output.stdout).trim().to_owned())
}
