//! End-to-end flows through the `ringops` binary on real Git repositories: the
//! example fleet validated, rendered and planned; the errors a user meets (bad ring,
//! bad revision, not a repository, head that does not compile); output hygiene
//! (colours, markdown size) and the secret sources.

mod common;

use common::{Repo, files_under, out_dir, output, project, ringops_in, secrets_dir};
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;

const FLEET: &str = "examples/fleet";
const DEMO_TOKEN: &str = "demo-ingest-token-not-secret";

/// A repository holding the example fleet at `examples/fleet`, committed.
fn fleet_repo() -> Repo {
    let repo = Repo::init();
    repo.copy_in(&project().join(FLEET), FLEET);
    repo.write("README.md", "a repository that holds a fleet\n");
    repo.commit("example fleet");
    repo
}

fn demo_secrets() -> String {
    project()
        .join("examples/secrets")
        .to_str()
        .expect("UTF-8")
        .to_owned()
}

/// `<command> --path examples/fleet --secrets-dir examples/secrets <args>`.
fn fleet(repo: &Repo, command: &str, args: &[&str]) -> common::Run {
    let secrets = demo_secrets();
    let mut all = vec![command, "--path", FLEET, "--secrets-dir", &secrets];
    all.extend(args);
    repo.ringops(&all)
}

fn render_dev(repo: &Repo, out: &Path, extra: &[&str]) -> common::Run {
    let mut args = vec!["--ring", "dev", "--out", out.to_str().expect("UTF-8")];
    args.extend(extra);
    fleet(repo, "render", &args)
}

fn json(run: &common::Run) -> Value {
    serde_json::from_str(&run.stdout).unwrap_or_else(|e| panic!("{e}: {}", run.stdout))
}

/// (worker, action, path, why) of every action of a JSON plan.
fn actions(plan: &Value) -> Vec<(String, String, String, Vec<String>)> {
    let mut out = Vec::new();
    for w in plan["workers"].as_array().expect("workers") {
        for a in w["actions"].as_array().expect("actions") {
            let why = a["why"].as_array().expect("why").iter();
            out.push((
                w["worker"].as_str().expect("worker").to_owned(),
                a["action"].as_str().expect("action").to_owned(),
                a["path"].as_str().expect("path").to_owned(),
                why.map(|s| s.as_str().expect("str").to_owned()).collect(),
            ));
        }
    }
    out
}

#[test]
fn the_example_fleet_validates_with_its_demo_secret() {
    let repo = fleet_repo();
    let run = fleet(&repo, "validate", &[]);
    run.expect(0);
    let lines: Vec<&str> = run.stdout.lines().collect();
    assert_eq!(lines.len(), 4, "{}", run.stdout);
    for (line, ring) in lines.iter().zip(["dev", "production", "staging"]) {
        assert!(line.starts_with(&format!("ring {ring}: ")), "{line}");
        assert!(line.ends_with(" artifacts"), "{line}");
    }
    assert_eq!(lines[3], "ok: no errors");

    // Without the secret, both references are reported where they are written.
    let missing = repo.ringops(&["validate", "--path", FLEET]);
    missing.expect(1);
    let located: Vec<&str> = missing
        .stdout
        .lines()
        .filter(|l| l.contains("secret `ingest-token` not found"))
        .map(|l| l.split(": error: ").next().expect("location"))
        .collect();
    assert_eq!(
        located,
        [
            "examples/fleet/workflows/invoices.yaml:14:16",
            "examples/fleet/workflows/telemetry.yaml:13:16"
        ],
        "{}",
        missing.stdout
    );
    assert!(
        missing.stdout.ends_with("\n2 errors\n"),
        "{}",
        missing.stdout
    );
}

#[test]
fn repo_defaults_to_the_repository_of_the_current_directory() {
    let repo = fleet_repo();
    let secrets = demo_secrets();
    let run = output(
        ringops_in(&repo.path().join(FLEET).join("workflows")).args([
            "validate",
            "--path",
            FLEET,
            "--secrets-dir",
            &secrets,
        ]),
    );
    run.expect(0);
    assert!(run.stdout.ends_with("ok: no errors\n"), "{}", run.stdout);
}

#[test]
fn a_mistyped_path_is_an_error_not_an_empty_valid_fleet() {
    let repo = fleet_repo();
    let run = repo.ringops(&["validate", "--path", "examples/flet"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("no manifests (*.yaml or *.yml files) under `examples/flet` at `HEAD`"),
        "{}",
        run.stderr
    );
    let out = out_dir();
    let target = out.path().join("render");
    let args = [
        "render",
        "--ring",
        "dev",
        "--path",
        "examples/flet",
        "--out",
    ];
    let run = repo.ringops(&[&args[..], &[target.to_str().expect("UTF-8")]].concat());
    run.expect(1);
    assert!(run.stderr.contains("no manifests"), "{}", run.stderr);
    assert!(!target.exists(), "render created its output folder");
}

#[test]
fn render_writes_every_worker_job_file_deterministically() {
    let repo = fleet_repo();
    let out = out_dir();
    let first = out.path().join("first");
    let run = render_dev(&repo, &first, &[]);
    run.expect(0);
    let files = files_under(&first);
    let artifacts: BTreeMap<&String, &Vec<u8>> = files
        .iter()
        .filter(|(p, _)| *p != ".ringops-render")
        .collect();
    assert_eq!(
        run.stdout,
        format!(
            "wrote {} artifacts for 3 workers of ring dev under {}\n",
            artifacts.len(),
            first.display()
        )
    );

    // DIR/<worker>/<workflow>/<step>[.<replica>]/<file>, only for dev workers.
    for path in artifacts.keys() {
        let parts: Vec<&str> = path.split('/').collect();
        assert_eq!(parts.len(), 4, "{path}");
        assert!(
            ["edge-dev-1", "core-dev-1", "core-dev-2"].contains(&parts[0]),
            "{path}"
        );
        assert!(
            ["invoices", "reports", "telemetry"].contains(&parts[1]),
            "{path}"
        );
    }
    for expected in [
        "edge-dev-1/invoices/ingest/source.yaml",
        "edge-dev-1/invoices/ingest/token",
        "edge-dev-1/invoices/_raw.sender/sender.yaml",
        "edge-dev-1/telemetry/collect/source.yaml",
        "core-dev-1/invoices/_raw.receiver/receiver.yaml",
        "core-dev-2/invoices/_raw.receiver/receiver.yaml",
        "core-dev-1/invoices/archive.seal/processor.toml",
        "core-dev-1/invoices/archive.store/writer.ini",
        "core-dev-2/invoices/archive.store/writer.ini",
    ] {
        assert!(
            artifacts.contains_key(&expected.to_owned()),
            "{expected} missing"
        );
    }
    // Two replicas of classify, one per core worker, numbered 0 and 1.
    let mut classify: Vec<&str> = artifacts
        .keys()
        .filter(|p| p.contains("/invoices/classify."))
        .map(|p| p.split('/').nth(2).expect("job"))
        .collect();
    classify.sort();
    assert_eq!(classify, ["classify.0", "classify.1"]);

    let token = &artifacts[&"edge-dev-1/invoices/ingest/token".to_owned()];
    assert_eq!(token.as_slice(), DEMO_TOKEN.as_bytes());
    let writer = String::from_utf8(
        artifacts[&"core-dev-1/invoices/archive.store/writer.ini".to_owned()].clone(),
    )
    .expect("UTF-8");
    assert!(writer.contains("log_level = debug"), "ring value: {writer}");
    assert!(
        writer.contains("retention_days = 90"),
        "module param: {writer}"
    );
    let source =
        String::from_utf8(artifacts[&"edge-dev-1/invoices/ingest/source.yaml".to_owned()].clone())
            .expect("UTF-8");
    assert!(
        source.contains("requests_per_second: 10"),
        "dev override: {source}"
    );

    let second = out.path().join("second");
    render_dev(&repo, &second, &[]).expect(0);
    assert_eq!(files_under(&second), files, "render is deterministic");

    // Rendering again into its own output replaces it, leaving no stale file.
    std::fs::write(first.join("edge-dev-1/stale.txt"), "old").expect("write");
    render_dev(&repo, &first, &[]).expect(0);
    assert_eq!(files_under(&first), files, "re-render replaces the folder");
}

#[test]
fn render_refuses_a_folder_it_did_not_write_and_leaves_it_alone() {
    let repo = fleet_repo();
    let out = out_dir();
    std::fs::write(out.path().join("notes.txt"), "mine").expect("write");
    std::fs::create_dir(out.path().join("edge-dev-1")).expect("mkdir");
    let before = files_under(out.path());

    let run = render_dev(&repo, out.path(), &[]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("is not empty and was not written by `ringops render`"),
        "{}",
        run.stderr
    );
    assert_eq!(files_under(out.path()), before);
    assert!(
        out.path()
            .join("edge-dev-1")
            .read_dir()
            .expect("dir")
            .next()
            .is_none()
    );
    assert!(!out.path().join(".ringops-render").exists());
}

#[test]
fn worktree_reads_uncommitted_edits() {
    let repo = fleet_repo();
    let rings = "examples/fleet/rings.yaml";
    repo.edit(
        rings,
        "values: {log_level: debug,",
        "values: {log_level: trace,",
    );
    let out = out_dir();
    let writer = "core-dev-1/invoices/archive.store/writer.ini";

    render_dev(&repo, &out.path().join("committed"), &[]).expect(0);
    let committed = files_under(&out.path().join("committed"));
    let text = String::from_utf8(committed[writer].clone()).expect("UTF-8");
    assert!(text.contains("log_level = debug"), "{text}");

    render_dev(&repo, &out.path().join("worktree"), &["--worktree"]).expect(0);
    let edited = files_under(&out.path().join("worktree"));
    let text = String::from_utf8(edited[writer].clone()).expect("UTF-8");
    assert!(text.contains("log_level = trace"), "{text}");

    // An uncommitted mistake fails `--worktree` only.
    repo.edit(rings, "promotesFrom: dev", "promotesFrom: qa");
    fleet(&repo, "validate", &[]).expect(0);
    let broken = fleet(&repo, "validate", &["--worktree"]);
    broken.expect(1);
    assert!(
        broken
            .stdout
            .contains("examples/fleet/rings.yaml:22:17: error: unknown ring `qa`"),
        "{}",
        broken.stdout
    );

    // `--rev` reads an older commit.
    repo.commit("trace and a typo");
    fleet(&repo, "validate", &[]).expect(1);
    fleet(&repo, "validate", &["--rev", "HEAD~1"]).expect(0);
}

#[test]
fn plan_after_a_commit_shows_exactly_the_changed_artifacts() {
    let repo = fleet_repo();
    repo.edit(
        "examples/fleet/workflows/invoices.yaml",
        "threads: 4",
        "threads: 8",
    );
    repo.commit("more classify threads");

    let run = fleet(
        &repo,
        "plan",
        &["--ring", "dev", "--base", "HEAD~1", "--format", "json"],
    );
    run.expect(0);
    let plan = json(&run);
    let why = vec!["examples/fleet/workflows/invoices.yaml".to_owned()];
    let expected = vec![
        (
            "core-dev-1".into(),
            "update".into(),
            "invoices/classify.0/processor.toml".into(),
            why.clone(),
        ),
        (
            "core-dev-2".into(),
            "update".into(),
            "invoices/classify.1/processor.toml".into(),
            why,
        ),
    ];
    assert_eq!(actions(&plan), expected);
    assert_eq!(plan["path"], FLEET);
    assert_eq!(plan["summary"]["workers_unchanged"], 1);
    let diff = plan["workers"][0]["actions"][0]["diff"]
        .as_str()
        .expect("diff");
    assert!(diff.contains("\n-threads = 4\n+threads = 8\n"), "{diff}");

    // The same change in production touches the production replicas only.
    let prod = fleet(
        &repo,
        "plan",
        &[
            "--ring",
            "production",
            "--base",
            "HEAD~1",
            "--format",
            "json",
        ],
    );
    let prod_actions = actions(&json(prod.expect(0)));
    assert_eq!(prod_actions.len(), 2, "{prod_actions:?}");
    assert!(
        prod_actions
            .iter()
            .all(|a| a.0.starts_with("core-prod-") && a.2.starts_with("invoices/classify."))
    );

    // Text: the markers, the files behind each change and the summary.
    let text = fleet(&repo, "plan", &["--ring", "dev", "--base", "HEAD~1"]);
    let text = &text.expect(0).stdout;
    assert!(text.contains("\n  ~ invoices/classify.0/processor.toml\n      because: examples/fleet/workflows/invoices.yaml\n"), "{text}");
    assert!(
        text.ends_with("Plan: 0 to create, 2 to update, 0 to delete on 2 workers (1 unchanged).\n"),
        "{text}"
    );

    // Markdown ends with the exact command that reproduces it.
    let md = fleet(
        &repo,
        "plan",
        &["--ring", "dev", "--base", "HEAD~1", "--format", "markdown"],
    );
    let md = &md.expect(0).stdout;
    let base = repo.git(&["rev-parse", "HEAD~1"]);
    let head = repo.git(&["rev-parse", "HEAD"]);
    let command =
        format!("ringops plan --ring dev --path examples/fleet --base {base} --head {head}\n");
    assert!(md.contains(&command), "{md}");
    assert!(md.ends_with("</details>\n"), "{md}");
}

#[test]
fn a_template_file_change_is_named_as_the_reason() {
    let repo = fleet_repo();
    let template = "examples/fleet/blueprints/templates/stream-processor.toml.j2";
    repo.edit(template, "[options]", "[handler-options]");
    repo.commit("rename a section");

    let plan = json(
        fleet(
            &repo,
            "plan",
            &["--ring", "dev", "--base", "HEAD~1", "--format", "json"],
        )
        .expect(0),
    );
    let all = actions(&plan);
    let paths: Vec<(&str, &str)> = all.iter().map(|a| (a.0.as_str(), a.2.as_str())).collect();
    assert_eq!(
        paths,
        [
            ("core-dev-1", "invoices/archive.seal/processor.toml"),
            ("core-dev-1", "invoices/classify.0/processor.toml"),
            ("core-dev-1", "telemetry/rollup.0/processor.toml"),
            ("core-dev-2", "invoices/archive.seal/processor.toml"),
            ("core-dev-2", "invoices/classify.1/processor.toml"),
            ("core-dev-2", "telemetry/rollup.1/processor.toml"),
        ]
    );
    for a in &all {
        assert_eq!(a.1, "update");
        assert_eq!(a.3, [template], "{a:?}");
    }
}

#[test]
fn a_plan_names_the_side_that_does_not_compile() {
    let repo = fleet_repo();
    repo.edit(
        "examples/fleet/workflows/reports.yaml",
        "blueprint: report-builder\n      with:\n        title: Daily",
        "blueprint: report-bilder\n      with:\n        title: Daily",
    );
    repo.commit("typo");

    for format in ["text", "json", "markdown"] {
        let args = [
            "--ring",
            "dev",
            "--base",
            "HEAD~1",
            "--format",
            format,
            "--detailed-exitcode",
        ];
        let run = fleet(&repo, "plan", &args);
        run.expect(1);
        assert_eq!(run.stdout, "", "no plan is printed");
        assert!(
            run.stderr.starts_with("error: head `HEAD` does not compile:\n")
                && run.stderr.contains(
                    "examples/fleet/workflows/reports.yaml:8:18: error: unknown blueprint `report-bilder`"
                ),
            "{}",
            run.stderr
        );
    }

    // Swapped around, the broken side is the base.
    let run = fleet(
        &repo,
        "plan",
        &["--ring", "dev", "--base", "HEAD", "--head", "HEAD~1"],
    );
    run.expect(1);
    assert!(
        run.stderr
            .starts_with("error: base `HEAD` does not compile:\n"),
        "{}",
        run.stderr
    );
}

#[test]
fn rings_that_do_not_exist() {
    let repo = fleet_repo();
    let run = fleet(&repo, "plan", &["--ring", "qa", "--base", "HEAD"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("ring `qa` is not defined at head `HEAD` (rings: dev, production, staging)"),
        "{}",
        run.stderr
    );

    let out = out_dir();
    let run = fleet(
        &repo,
        "render",
        &["--ring", "qa", "--out", out.path().to_str().expect("UTF-8")],
    );
    run.expect(1);
    assert!(
        run.stderr.contains("ring `qa` is not defined"),
        "{}",
        run.stderr
    );
    assert!(files_under(out.path()).is_empty());

    // A ring that only the head defines is planned from nothing.
    let rings = repo.read("examples/fleet/rings.yaml");
    repo.write(
        "examples/fleet/rings.yaml",
        &format!("{rings}---\napiVersion: ringops/v1\nkind: Ring\nmetadata: {{name: qa}}\nspec: {{promotesFrom: dev, values: {{log_level: info, max_retries: 2}}}}\n"),
    );
    let groups = repo.read("examples/fleet/groups.yaml");
    let groups = groups
        .replace(
            "    - {name: edge-stg-1,",
            "    - {name: edge-qa-1, ring: qa, address: 10.0.9.11, labels: {region: eu}}\n    - {name: edge-stg-1,",
        )
        .replace(
            "    - {name: core-stg-1,",
            "    - {name: core-qa-1, ring: qa, address: 10.0.9.21, labels: {region: eu}}\n    - {name: core-qa-2, ring: qa, address: 10.0.9.22, labels: {region: us}}\n    - {name: core-stg-1,",
        );
    repo.write("examples/fleet/groups.yaml", &groups);
    repo.commit("ring qa");
    let plan = json(
        fleet(
            &repo,
            "plan",
            &["--ring", "qa", "--base", "HEAD~1", "--format", "json"],
        )
        .expect(0),
    );
    let all = actions(&plan);
    assert!(!all.is_empty());
    assert!(all.iter().all(|a| a.1 == "create"), "{all:?}");
    let workers: std::collections::BTreeSet<&str> = all.iter().map(|a| a.0.as_str()).collect();
    assert_eq!(
        workers.into_iter().collect::<Vec<_>>(),
        ["core-qa-1", "core-qa-2", "edge-qa-1"]
    );
}

#[test]
fn bad_revisions_and_non_repositories_are_clear_errors() {
    let repo = fleet_repo();
    for args in [
        &["--ring", "dev", "--base", "no-such-branch"][..],
        &[
            "--ring",
            "dev",
            "--base",
            "HEAD",
            "--head",
            "no-such-branch",
        ][..],
        &["--ring", "dev", "--base", "HEAD~5"][..],
    ] {
        let run = fleet(&repo, "plan", args);
        run.expect(1);
        assert!(run.stdout.is_empty());
        assert!(
            run.stderr.starts_with("error: revision `"),
            "{}",
            run.stderr
        );
        assert!(
            run.stderr.contains("` does not name a commit"),
            "{}",
            run.stderr
        );
    }
    let run = fleet(&repo, "validate", &["--rev", "no-such-tag"]);
    run.expect(1);
    assert!(
        run.stderr
            .contains("revision `no-such-tag` does not name a commit"),
        "{}",
        run.stderr
    );

    let plain = out_dir();
    let dir = plain.path().to_str().expect("UTF-8");
    for args in [
        &["validate", "--repo", dir][..],
        &["plan", "--repo", dir, "--ring", "dev", "--base", "HEAD"][..],
    ] {
        let run = output(ringops_in(plain.path()).args(args));
        run.expect(1);
        assert!(
            run.stderr
                .starts_with(&format!("error: no Git repository at or above {dir}")),
            "{}",
            run.stderr
        );
    }
}

/// A fleet with `workers` core workers in ring dev and one job on each, rendering a
/// file of `lines` lines that all hold the ring value `level`.
fn big_fleet(repo: &Repo, workers: usize, lines: usize, level: &str) {
    let mut groups = String::from(
        "apiVersion: ringops/v1\nkind: WorkerGroup\nmetadata: {name: core}\nspec:\n  workers:\n",
    );
    for i in 0..workers {
        groups.push_str(&format!("    - {{name: core-{i:04}, ring: dev}}\n"));
    }
    repo.write("fleet/groups.yaml", &groups);
    repo.write(
        "fleet/ring.yaml",
        &format!("apiVersion: ringops/v1\nkind: Ring\nmetadata: {{name: dev}}\nspec:\n  values: {{level: {level}}}\n"),
    );
    repo.write(
        "fleet/big.yaml",
        &format!(
            "apiVersion: ringops/v1\nkind: Blueprint\nmetadata: {{name: big}}\nspec:\n  files:\n    - path: big.conf\n      template: |\n        {{% for i in range({lines}) %}}\n        setting_{{{{ i }}}} = {{{{ ring.values.level }}}} on {{{{ worker.name }}}}\n        {{% endfor %}}\n---\napiVersion: ringops/v1\nkind: Workflow\nmetadata: {{name: bulk}}\nspec:\n  steps:\n    - {{name: load, blueprint: big, placement: {{group: core}}}}\n"
        ),
    );
}

#[test]
fn markdown_of_a_huge_plan_stays_under_the_comment_limit() {
    let repo = Repo::init();
    big_fleet(&repo, 60, 150, "low");
    repo.commit("base");
    big_fleet(&repo, 60, 150, "high");
    repo.commit("head");

    let plan = |format: &str| {
        let args = [
            "plan", "--ring", "dev", "--base", "HEAD~1", "--format", format,
        ];
        repo.ringops(&args)
    };
    let json_plan = json(plan("json").expect(0));
    assert_eq!(json_plan["summary"]["update"], 60, "every worker changes");
    let full: usize = json_plan["workers"]
        .as_array()
        .expect("workers")
        .iter()
        .map(|w| w["actions"][0]["diff"].as_str().expect("diff").len())
        .sum();
    assert!(
        full > 200_000,
        "the diffs alone are far over the limit: {full}"
    );

    let md = plan("markdown");
    let md = &md.expect(0).stdout;
    let chars = md.chars().count();
    assert!(chars < 60_000, "markdown has {chars} characters");
    // Every worker keeps its section; the diffs that do not fit become a line count.
    assert_eq!(md.matches("<details><summary><code>").count(), 60);
    let diffs = md.matches("```diff").count();
    assert!(diffs > 0 && diffs < 60, "{diffs} diffs shown");
    let cut = 60 - diffs;
    assert_eq!(md.matches(" lines left out)_").count(), cut);
    let note = format!(
        "> **Truncated** to keep this comment under 60000 characters: {cut} diffs are shown as a line count only."
    );
    assert!(md.contains(&note), "no truncation note `{note}`");
    // The summary table still lists every worker, and the footer survives.
    assert_eq!(md.matches("| `core-").count(), 60);
    assert!(md.ends_with("</details>\n"));
    assert!(md.contains("Reproduce locally"));
}

#[test]
fn markdown_stays_under_the_limit_with_thousands_of_workers() {
    let repo = Repo::init();
    big_fleet(&repo, 2500, 1, "low");
    repo.commit("base");
    big_fleet(&repo, 2500, 1, "high");
    repo.commit("head");
    let args = [
        "plan", "--ring", "dev", "--base", "HEAD~1", "--format", "markdown",
    ];
    let md = repo.ringops(&args);
    let md = &md.expect(0).stdout;
    let chars = md.chars().count();
    assert!(chars < 60_000, "markdown has {chars} characters");
    assert!(
        md.contains("**Truncated** to keep this comment under 60000 characters"),
        "a note says what was left out"
    );
    assert!(
        md.contains("**0 to create, 2500 to update, 0 to delete on 2500 workers (0 unchanged)**")
    );
    // The table lists the first workers and sums up the others in one row.
    let rows = md.matches("\n| `core-").count();
    assert!(rows > 100 && rows < 2500, "{rows} table rows");
    let rest = 2500 - rows;
    assert!(
        md.contains(&format!("\n| … {rest} more workers | 0 | {rest} | 0 |\n")),
        "no row for the other {rest} workers"
    );
    assert!(md.ends_with("</details>\n"));
}

#[test]
fn text_has_no_colour_off_a_terminal_or_with_no_color() {
    let repo = fleet_repo();
    repo.edit(
        "examples/fleet/workflows/invoices.yaml",
        "threads: 4",
        "threads: 8",
    );
    repo.commit("change");
    let secrets = demo_secrets();
    let args = [
        "plan",
        "--ring",
        "dev",
        "--base",
        "HEAD~1",
        "--path",
        FLEET,
        "--secrets-dir",
        &secrets,
    ];
    let piped = repo.ringops(&args);
    assert!(!piped.expect(0).stdout.contains('\x1b'), "{}", piped.stdout);

    // Colour exists (forced), so its absence above is a decision, not an accident.
    let forced = repo.ringops_env(&args, &[("CLICOLOR_FORCE", "1")]);
    assert!(
        forced.expect(0).stdout.contains("\x1b["),
        "{}",
        forced.stdout
    );

    let no_color = repo.ringops_env(&args, &[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")]);
    assert!(
        !no_color.expect(0).stdout.contains('\x1b'),
        "{}",
        no_color.stdout
    );
    assert_eq!(no_color.stdout, piped.stdout);
}

#[test]
fn secrets_resolve_from_the_environment_and_credentials_directory() {
    let repo = fleet_repo();
    let out = out_dir();
    let token = "edge-dev-1/invoices/ingest/token";

    let target = out.path().join("env");
    let args = [
        "render",
        "--path",
        FLEET,
        "--ring",
        "dev",
        "--out",
        target.to_str().expect("UTF-8"),
    ];
    let run = repo.ringops_env(&args, &[("RINGOPS_SECRET_INGEST_TOKEN", "from-env-123")]);
    run.expect(0);
    assert_eq!(files_under(&target)[token], b"from-env-123");
    let plan = repo.ringops_env(
        &[
            "plan", "--path", FLEET, "--ring", "dev", "--base", "HEAD", "--format", "json",
        ],
        &[("RINGOPS_SECRET_INGEST_TOKEN", "from-env-123")],
    );
    assert!(!plan.expect(0).stdout.contains("from-env-123"));

    // $CREDENTIALS_DIRECTORY (systemd) comes before the environment ...
    let creds = secrets_dir(&[("ingest-token", "from-credentials\n")]);
    let target = out.path().join("creds");
    let args = [
        "render",
        "--path",
        FLEET,
        "--ring",
        "dev",
        "--out",
        target.to_str().expect("UTF-8"),
    ];
    let env = [
        (
            "CREDENTIALS_DIRECTORY",
            creds.path().to_str().expect("UTF-8"),
        ),
        ("RINGOPS_SECRET_INGEST_TOKEN", "from-env-123"),
    ];
    repo.ringops_env(&args, &env).expect(0);
    assert_eq!(files_under(&target)[token], b"from-credentials");

    // ... and --secrets-dir before both.
    let target = out.path().join("dir");
    let secrets = demo_secrets();
    let args = [
        "render",
        "--path",
        FLEET,
        "--ring",
        "dev",
        "--secrets-dir",
        &secrets,
        "--out",
        target.to_str().expect("UTF-8"),
    ];
    repo.ringops_env(&args, &env).expect(0);
    assert_eq!(files_under(&target)[token], DEMO_TOKEN.as_bytes());
}

#[test]
fn without_a_base_the_plan_creates_everything_render_writes() {
    let repo = fleet_repo();
    let plan = fleet(&repo, "plan", &["--ring", "dev", "--format", "json"]);
    let plan = json(plan.expect(0));
    assert_eq!(plan["base"], Value::Null, "no base side");
    let out = out_dir();
    render_dev(&repo, out.path(), &[]).expect(0);
    let rendered: Vec<String> = files_under(out.path())
        .into_keys()
        .filter(|p| !p.starts_with(".ringops"))
        .collect();
    let created: Vec<String> = actions(&plan)
        .into_iter()
        .inspect(|(_, action, _, _)| assert_eq!(action, "create"))
        .map(|(worker, _, path, _)| format!("{worker}/{path}"))
        .collect();
    assert_eq!(
        created, rendered,
        "the plan creates exactly what render writes"
    );

    let md = fleet(&repo, "plan", &["--ring", "dev", "--format", "markdown"]);
    let md = md.expect(0).stdout.clone();
    assert!(md.contains("`the workers` → `HEAD"), "{md}");
    assert!(
        md.contains("ringops plan --ring dev --path examples/fleet --head "),
        "{md}"
    );
    assert!(!md.contains(DEMO_TOKEN), "the secret stays hidden");
}

#[test]
fn a_plan_shows_the_errors_of_both_sides_base_first() {
    let repo = fleet_repo();
    let reports = "examples/fleet/workflows/reports.yaml";
    let (good, typo) = (
        "blueprint: report-builder\n      with:\n        title: Daily",
        "blueprint: report-bilder\n      with:\n        title: Daily",
    );
    repo.edit(reports, good, typo);
    repo.commit("base: a typo");
    repo.edit(reports, typo, good);
    repo.edit(
        "examples/fleet/rings.yaml",
        "promotesFrom: dev",
        "promotesFrom: qa",
    );
    repo.commit("head: the typo fixed, another made");

    let base_error =
        "examples/fleet/workflows/reports.yaml:8:18: error: unknown blueprint `report-bilder`";
    let head_error = "examples/fleet/rings.yaml:22:17: error: unknown ring `qa`";
    for extra in [&[][..], &["--detailed-exitcode"][..]] {
        let args = [&["--ring", "dev", "--base", "HEAD~1"][..], extra].concat();
        let run = fleet(&repo, "plan", &args);
        run.expect(1);
        assert_eq!(run.stdout, "", "no plan is printed");
        let (base, head) = run
            .stderr
            .split_once("\nerror: head `HEAD` does not compile:\n")
            .unwrap_or_else(|| panic!("no head section: {}", run.stderr));
        assert!(
            base.starts_with("error: base `HEAD~1` does not compile:\n")
                && base.contains(base_error),
            "{}",
            run.stderr
        );
        assert!(!base.contains(head_error), "{}", run.stderr);
        assert!(
            head.contains(head_error) && !head.contains(base_error),
            "{}",
            run.stderr
        );
    }
}

#[test]
fn io_failures_print_their_cause_once() {
    let repo = fleet_repo();
    let out = out_dir();
    let long = out.path().join("x".repeat(300));
    let run = render_dev(&repo, &long, &[]);
    run.expect(2);
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot write {}: File name too long (os error 36)\n",
            long.display()
        )
    );

    // A Git object gone missing: git2's message, once.
    let blob = repo.git(&["rev-parse", "HEAD:examples/fleet/rings.yaml"]);
    let object = repo
        .path()
        .join(".git/objects")
        .join(&blob[..2])
        .join(&blob[2..]);
    std::fs::remove_file(object).expect("remove a loose object");
    let run = fleet(&repo, "validate", &[]);
    run.expect(2);
    assert!(
        run.stderr
            .starts_with("error: cannot read Git objects: object not found - no match for id"),
        "{}",
        run.stderr
    );
    assert_eq!(
        run.stderr.matches("object not found").count(),
        1,
        "{}",
        run.stderr
    );
    assert_eq!(run.stderr.lines().count(), 1, "{}", run.stderr);
}

#[cfg(unix)]
#[test]
fn render_output_is_private_to_its_owner() {
    use std::os::unix::fs::PermissionsExt;
    let repo = fleet_repo();
    let out = out_dir();
    let target = out.path().join("new/render");
    let mode = |p: &Path| std::fs::metadata(p).expect("metadata").permissions().mode() & 0o777;
    fn walk(dir: &Path, seen: &mut Vec<std::path::PathBuf>) {
        for entry in std::fs::read_dir(dir).expect("read_dir") {
            let path = entry.expect("entry").path();
            seen.push(path.clone());
            if path.is_dir() {
                walk(&path, seen);
            }
        }
    }
    // Once into a new folder, and again over that earlier render (even a loose one).
    for _ in 0..2 {
        if target.exists() {
            std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))
                .expect("chmod");
        }
        render_dev(&repo, &target, &[]).expect(0);
        assert_eq!(mode(&out.path().join("new")), 0o700, "created parent");
        assert_eq!(mode(&target), 0o700, "output folder");
        let mut all = Vec::new();
        walk(&target, &mut all);
        assert!(all.len() > 20, "{all:?}");
        assert!(all.contains(&target.join(".ringops-render")));
        for path in &all {
            let want = if path.is_dir() { 0o700 } else { 0o600 };
            assert_eq!(mode(path), want, "{}", path.display());
        }
    }
}

#[test]
fn render_into_a_file_is_a_user_error() {
    let repo = fleet_repo();
    let out = out_dir();
    let file = out.path().join("notes.txt");
    std::fs::write(&file, "mine").expect("write");

    let run = render_dev(&repo, &file, &[]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: {} is a file, not a folder; choose an empty or new folder\n",
            file.display()
        )
    );

    let below = file.join("render");
    let run = render_dev(&repo, &below, &[]);
    run.expect(1);
    assert_eq!(
        run.stderr,
        format!(
            "error: cannot create folder {}: {} is a file, not a folder\n",
            below.display(),
            file.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&file).expect("read"), "mine");
}

#[test]
fn the_reproduce_command_quotes_the_path_for_the_shell() {
    let repo = Repo::init();
    let path = "my fleet's $HOME";
    repo.copy_in(&project().join(FLEET), path);
    repo.commit("a fleet under an awkward folder name");
    let secrets = demo_secrets();
    let md = repo.ringops(&[
        "plan",
        "--path",
        path,
        "--secrets-dir",
        &secrets,
        "--ring",
        "dev",
        "--format",
        "markdown",
    ]);
    let md = &md.expect(0).stdout;
    let line = md
        .lines()
        .find(|l| l.starts_with("ringops plan "))
        .unwrap_or_else(|| panic!("no command: {md}"));
    assert!(
        line.starts_with(r"ringops plan --ring dev --path 'my fleet'\''s $HOME' --head "),
        "{line}"
    );

    // The shell hands ringops the path unchanged: the command reproduces the plan.
    let command = line.replacen("ringops", env!("CARGO_BIN_EXE_ringops"), 1);
    let script = format!("{command} --repo \"$1\" --secrets-dir \"$2\" --format markdown");
    let mut sh = std::process::Command::new("sh");
    sh.env_clear()
        .current_dir(repo.path())
        .args(["-c", &script, "sh", repo.path_str(), &secrets]);
    let again = output(&mut sh);
    // The same plan; only the header names the head by commit instead of `HEAD`.
    let body = |md: &str| md.split_once(" · fingerprint").map(|(_, b)| b.to_owned());
    let same = body(&again.expect(0).stdout) == body(md) && body(md).is_some();
    assert!(same, "the reproduced plan differs:\n{}", again.stdout);
}

#[test]
fn ringops_toml_supplies_settings_and_flags_win() {
    let repo = fleet_repo();
    repo.write(
        "ringops.toml",
        &format!("path = \"{FLEET}\"\nsecrets_dir = \"{}\"\n", demo_secrets()),
    );
    let from_file = repo.ringops(&["validate"]);
    assert!(
        from_file.expect(0).stdout.contains("ring dev: 3 workers"),
        "{}",
        from_file.stdout
    );
    // A flag beats the file: this path holds no manifests.
    let flag = repo.ringops(&["validate", "--path", "nowhere"]);
    assert!(
        flag.expect(1).stderr.contains("no manifests"),
        "{}",
        flag.stderr
    );

    repo.write(
        "ringops.toml",
        "path = \"examples/fleet\"\nsecret_dir = \"x\"\n",
    );
    let bad = repo.ringops(&["validate"]);
    assert!(
        bad.expect(1)
            .stderr
            .contains("ringops.toml:2:1: unknown field `secret_dir`"),
        "{}",
        bad.stderr
    );
    let explicit = repo.ringops(&["validate", "--config", "missing.toml"]);
    assert!(
        explicit
            .expect(1)
            .stderr
            .contains("cannot read missing.toml"),
        "{}",
        explicit.stderr
    );
}
