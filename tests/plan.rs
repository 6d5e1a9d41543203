//! Every `fixtures/plan/<case>/` has a `base` and a `head` tree. Committed one after
//! the other to a real Git repository, `ringops plan --base HEAD~1 --head HEAD` is
//! snapshot in text, markdown and JSON, and the JSON is checked against the expected
//! actions and against what `ringops render` writes for each side.

mod common;

use common::{Repo, Run, files_under, fixture, out_dir, secrets_dir, sha256_hex};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The value of the `db-password` secret of the `sensitive` case.
const DB_PASSWORD: &str = "pw-s3cret-xyz";

/// A repository whose HEAD~1 is the case's `base` tree and HEAD its `head` tree.
fn plan_repo(case: &Path) -> Repo {
    let repo = Repo::init();
    repo.copy_in(&case.join("base"), "");
    repo.commit("base");
    repo.replace_with(&case.join("head"));
    repo.commit("head");
    repo
}

fn plan(repo: &Repo, secrets: &Path, base: &str, head: &str, extra: &[&str]) -> Run {
    let secrets = secrets.to_str().expect("UTF-8");
    let mut args = vec!["plan", "--ring", "dev", "--base", base, "--head", head];
    args.extend(["--secrets-dir", secrets]);
    args.extend(extra);
    repo.ringops(&args)
}

/// (worker, action, path, why) of every action the case's plan must hold, in order.
fn expected_actions(case: &str) -> Vec<(&'static str, &'static str, &'static str, &'static str)> {
    let billing = "workflows/billing.yaml";
    let ring = "fleet/ring-dev.yaml";
    let groups = "fleet/groups.yaml";
    let accounts = "workflows/accounts.yaml";
    match case {
        "add-and-remove" => vec![
            ("core-dev-1", "delete", "billing/invoice/env", billing),
            (
                "core-dev-1",
                "delete",
                "billing/invoice/processor.yaml",
                billing,
            ),
            (
                "core-dev-1",
                "create",
                "reports/nightly.0/env",
                "workflows/reports.yaml",
            ),
            (
                "core-dev-1",
                "create",
                "reports/nightly.0/processor.yaml",
                "workflows/reports.yaml",
            ),
            ("core-dev-2", "delete", "billing/invoice/env", billing),
            (
                "core-dev-2",
                "delete",
                "billing/invoice/processor.yaml",
                billing,
            ),
            ("core-dev-2", "delete", "billing/mail.0/env", billing),
            (
                "core-dev-2",
                "delete",
                "billing/mail.0/processor.yaml",
                billing,
            ),
        ],
        "change-one-workflow" => vec![
            ("core-dev-1", "update", "billing/invoice/env", billing),
            (
                "core-dev-1",
                "update",
                "billing/invoice/processor.yaml",
                billing,
            ),
            ("core-dev-2", "update", "billing/invoice/env", billing),
            (
                "core-dev-2",
                "update",
                "billing/invoice/processor.yaml",
                billing,
            ),
        ],
        "move-replica" => vec![
            (
                "core-dev-1",
                "delete",
                "pipeline/cache.1/member.yaml",
                groups,
            ),
            (
                "core-dev-2",
                "delete",
                "pipeline/pool.0/member.yaml",
                groups,
            ),
            ("core-dev-3", "create", "pipeline/agent/env", groups),
            (
                "core-dev-3",
                "create",
                "pipeline/agent/processor.yaml",
                groups,
            ),
            (
                "core-dev-3",
                "create",
                "pipeline/cache.1/member.yaml",
                groups,
            ),
            (
                "core-dev-3",
                "create",
                "pipeline/pool.0/member.yaml",
                groups,
            ),
        ],
        "ring-values" => vec![
            ("core-dev-1", "update", "billing/invoice/env", ring),
            (
                "core-dev-1",
                "update",
                "billing/invoice/processor.yaml",
                ring,
            ),
            (
                "core-dev-1",
                "update",
                "orders/_raw.receiver/receiver.yaml",
                ring,
            ),
            ("core-dev-1", "update", "orders/parse/env", ring),
            ("core-dev-1", "update", "orders/parse/processor.yaml", ring),
            ("core-dev-1", "update", "orders/store.0/env", ring),
            (
                "core-dev-1",
                "update",
                "orders/store.0/processor.yaml",
                ring,
            ),
            ("core-dev-2", "update", "billing/invoice/env", ring),
            (
                "core-dev-2",
                "update",
                "billing/invoice/processor.yaml",
                ring,
            ),
            ("core-dev-2", "update", "billing/mail.0/env", ring),
            (
                "core-dev-2",
                "update",
                "billing/mail.0/processor.yaml",
                ring,
            ),
            (
                "core-dev-2",
                "update",
                "orders/_raw.receiver/receiver.yaml",
                ring,
            ),
            ("core-dev-2", "update", "orders/parse/env", ring),
            ("core-dev-2", "update", "orders/parse/processor.yaml", ring),
            (
                "edge-dev-1",
                "update",
                "orders/_raw.sender/sender.yaml",
                ring,
            ),
            ("edge-dev-1", "update", "orders/ingest/source.yaml", ring),
        ],
        "sensitive" => vec![
            ("core-dev-1", "update", "accounts/ledger/db.yaml", accounts),
            ("core-dev-2", "update", "accounts/ledger/db.yaml", accounts),
        ],
        other => panic!("add the expected actions of plan case `{other}`"),
    }
}

/// `ringops render --ring dev` of one revision: (worker, path) → sha256.
fn rendered(repo: &Repo, secrets: &Path, rev: &str) -> BTreeMap<(String, String), String> {
    let out = out_dir();
    repo.ringops(&[
        "render",
        "--ring",
        "dev",
        "--rev",
        rev,
        "--out",
        out.path().to_str().expect("UTF-8"),
        "--secrets-dir",
        secrets.to_str().expect("UTF-8"),
    ])
    .expect(0);
    files_under(out.path())
        .into_iter()
        .filter(|(path, _)| path != ".ringops-render")
        .map(|(path, bytes)| {
            let (worker, rel) = path.split_once('/').expect("worker/path");
            ((worker.to_owned(), rel.to_owned()), sha256_hex(&bytes))
        })
        .collect()
}

/// The fingerprint DESIGN.md defines, computed from rendered files.
fn fingerprint(artifacts: &BTreeMap<(String, String), String>) -> String {
    let mut text = String::new();
    for ((worker, path), sha) in artifacts {
        text.push_str(&format!("{worker}\t{path}\t{sha}\n"));
    }
    sha256_hex(text.as_bytes())
}

fn str_field<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str)
}

/// Checks the JSON plan of a case against the expected actions and the renders.
fn check_json(case: &str, json: &str, repo: &Repo, secrets: &Path) {
    let doc: Value = serde_json::from_str(json).expect("plan JSON parses");
    assert_eq!(doc["format_version"], 1);
    assert_eq!(doc["ring"], "dev");
    assert_eq!(doc["path"], "");
    let base_commit = repo.git(&["rev-parse", "HEAD~1"]);
    let head_commit = repo.git(&["rev-parse", "HEAD"]);
    assert_eq!(doc["base"]["rev"], "HEAD~1");
    assert_eq!(doc["base"]["commit"], base_commit.as_str());
    assert_eq!(doc["head"]["rev"], "HEAD");
    assert_eq!(doc["head"]["commit"], head_commit.as_str());

    let before = rendered(repo, secrets, "HEAD~1");
    let after = rendered(repo, secrets, "HEAD");
    assert_eq!(
        str_field(&doc, "fingerprint"),
        Some(fingerprint(&after).as_str()),
        "{case}: fingerprint is sha256 over the sorted worker, path, sha256 list of head"
    );

    let mut actual = Vec::new();
    for worker in doc["workers"].as_array().expect("workers") {
        let name = str_field(worker, "worker").expect("worker name");
        for a in worker["actions"].as_array().expect("actions") {
            let kind = str_field(a, "action").expect("action");
            let path = str_field(a, "path").expect("path");
            let key = (name.to_owned(), path.to_owned());
            let before_sha = str_field(a, "before_sha256");
            let after_sha = str_field(a, "after_sha256");
            assert_eq!(
                before_sha,
                before.get(&key).map(String::as_str),
                "{case} {key:?}"
            );
            assert_eq!(
                after_sha,
                after.get(&key).map(String::as_str),
                "{case} {key:?}"
            );
            match kind {
                "create" => assert!(before_sha.is_none() && after_sha.is_some()),
                "delete" => assert!(before_sha.is_some() && after_sha.is_none()),
                "update" => assert!(before_sha.is_some() && after_sha.is_some()),
                other => panic!("unknown action kind {other}"),
            }
            assert_eq!(
                a["diff"].is_null(),
                kind == "delete",
                "{case} {key:?}: a diff for creations and updates only"
            );
            let why: Vec<&str> = a["why"]
                .as_array()
                .expect("why")
                .iter()
                .map(|w| w.as_str().expect("why entries are strings"))
                .collect();
            assert_eq!(
                why.len(),
                1,
                "{case} {key:?}: one changed file behind it: {why:?}"
            );
            actual.push((
                name.to_owned(),
                kind.to_owned(),
                path.to_owned(),
                why[0].to_owned(),
            ));
        }
    }
    let expected: Vec<(String, String, String, String)> = expected_actions(case)
        .into_iter()
        .map(|(w, k, p, y)| (w.into(), k.into(), p.into(), y.into()))
        .collect();
    assert_eq!(actual, expected, "{case}: actions");

    // Independently of the expectations: exactly the artifacts whose rendered bytes
    // differ between the two commits are planned.
    let keys: BTreeSet<&(String, String)> = before.keys().chain(after.keys()).collect();
    let differing: BTreeSet<(String, String)> = keys
        .into_iter()
        .filter(|k| before.get(*k) != after.get(*k))
        .cloned()
        .collect();
    let planned: BTreeSet<(String, String)> = actual
        .iter()
        .map(|(w, _, p, _)| (w.clone(), p.clone()))
        .collect();
    assert_eq!(
        planned, differing,
        "{case}: planned artifacts vs rendered differences"
    );

    let summary = &doc["summary"];
    let count = |k: &str| actual.iter().filter(|a| a.1 == k).count();
    assert_eq!(summary["create"], count("create"));
    assert_eq!(summary["update"], count("update"));
    assert_eq!(summary["delete"], count("delete"));
    let changed: BTreeSet<&String> = actual.iter().map(|a| &a.0).collect();
    assert_eq!(summary["workers_changed"], changed.len());
}

#[test]
fn plan_fixtures_in_every_format() {
    let secrets = secrets_dir(&[("db-password", DB_PASSWORD)]);
    let mut seen = Vec::new();
    insta::glob!("../fixtures/plan", "?*", |dir| {
        let case = dir.file_name().and_then(|n| n.to_str()).expect("case");
        seen.push(case.to_owned());
        let repo = plan_repo(dir);
        let settings = common::commit_filters();
        for format in ["text", "markdown", "json"] {
            let run = plan(
                &repo,
                secrets.path(),
                "HEAD~1",
                "HEAD",
                &["--format", format],
            );
            run.expect(0);
            assert_eq!(run.stderr, "", "{case} {format}");
            assert!(
                !run.stdout.contains('\x1b'),
                "{case} {format}: no ANSI off a terminal"
            );
            assert!(
                !run.stdout.contains(DB_PASSWORD),
                "{case} {format}: secret leaked"
            );
            settings.bind(|| insta::assert_snapshot!(format, run.stdout));
            if format == "json" {
                check_json(case, &run.stdout, &repo, secrets.path());
            }
            let detailed = ["--format", format, "--detailed-exitcode"];
            plan(&repo, secrets.path(), "HEAD~1", "HEAD", &detailed).expect(2);
            plan(&repo, secrets.path(), "HEAD", "HEAD", &detailed).expect(0);
        }
    });
    assert_eq!(seen.len(), 5, "every plan case ran: {seen:?}");
}

#[test]
fn sensitive_values_never_appear_in_any_format() {
    let secrets = secrets_dir(&[("db-password", DB_PASSWORD)]);
    let repo = plan_repo(&fixture("plan/sensitive"));

    // The values are really in the artifacts, so their absence below means something.
    let out = out_dir();
    let out_str = out.path().to_str().expect("UTF-8");
    let secrets_str = secrets.path().to_str().expect("UTF-8");
    let args = [
        "render",
        "--ring",
        "dev",
        "--out",
        out_str,
        "--secrets-dir",
        secrets_str,
    ];
    repo.ringops(&args).expect(0);
    let db =
        String::from_utf8(files_under(out.path())["core-dev-1/accounts/ledger/db.yaml"].clone())
            .expect("UTF-8");
    assert!(
        db.contains(DB_PASSWORD) && db.contains("ak-head-1111"),
        "{db}"
    );

    for format in ["text", "markdown", "json"] {
        let run = plan(
            &repo,
            secrets.path(),
            "HEAD~1",
            "HEAD",
            &["--format", format],
        );
        run.expect(0);
        for leaked in [
            DB_PASSWORD,
            "ak-head-1111",
            "ak-base-0000",
            "ak-head",
            "ak-base",
        ] {
            assert!(
                !run.stdout.contains(leaked),
                "{format} shows `{leaked}`:\n{}",
                run.stdout
            );
            assert!(
                !run.stderr.contains(leaked),
                "{format} stderr shows `{leaked}`"
            );
        }
        assert!(
            run.stdout.contains("(sensitive value)"),
            "{format}:\n{}",
            run.stdout
        );
        // The non-sensitive change next to them is still shown.
        assert!(
            run.stdout.contains("+pool_size: 10"),
            "{format}:\n{}",
            run.stdout
        );
    }
}

#[test]
fn a_plan_of_head_against_itself_has_no_changes() {
    let secrets = secrets_dir(&[]);
    let repo = plan_repo(&fixture("plan/change-one-workflow"));
    let args = ["--detailed-exitcode"];
    let run = plan(&repo, secrets.path(), "HEAD", "HEAD", &args);
    run.expect(0);
    assert!(
        run.stdout
            .contains("No changes: ring dev already matches HEAD"),
        "{}",
        run.stdout
    );

    let json = plan(&repo, secrets.path(), "HEAD", "HEAD", &["--format", "json"]);
    let doc: Value = serde_json::from_str(&json.expect(0).stdout).expect("JSON");
    assert_eq!(doc["workers"], Value::Array(vec![]));
    assert_eq!(doc["summary"]["workers_unchanged"], 3);
    assert_eq!(doc["summary"]["workers_changed"], 0);

    let md = plan(
        &repo,
        secrets.path(),
        "HEAD",
        "HEAD",
        &["--format", "markdown"],
    );
    assert!(
        md.expect(0).stdout.contains("**No changes.**"),
        "{}",
        md.stdout
    );
}

#[test]
fn detailed_exitcode_is_1_on_errors() {
    let secrets = secrets_dir(&[]);
    let repo = plan_repo(&fixture("plan/change-one-workflow"));
    let bad_rev = plan(
        &repo,
        secrets.path(),
        "no-such-branch",
        "HEAD",
        &["--detailed-exitcode"],
    );
    bad_rev.expect(1);
    assert!(bad_rev.stdout.is_empty(), "{}", bad_rev.stdout);
    assert!(
        bad_rev
            .stderr
            .contains("revision `no-such-branch` does not name a commit"),
        "{}",
        bad_rev.stderr
    );

    // The sensitive case needs a secret this secrets dir does not have: both sides fail.
    let repo = plan_repo(&fixture("plan/sensitive"));
    let unresolved = plan(
        &repo,
        secrets.path(),
        "HEAD~1",
        "HEAD",
        &["--detailed-exitcode"],
    );
    unresolved.expect(1);
    assert!(
        unresolved.stderr.contains("base `HEAD~1` does not compile")
            && unresolved.stderr.contains("secret `db-password` not found"),
        "{}",
        unresolved.stderr
    );
}

/// A fleet whose templates try every way a secret could slip into a plan: several lines,
/// JSON escaping, filters that transform it, sensitive lists and maps, and a module param
/// marked sensitive.
fn leaky_fleet(repo: &Repo, level: &str) {
    repo.write(
        "fleet.yaml",
        &format!(
            r#"apiVersion: ringops/v1
kind: Ring
metadata: {{name: dev}}
spec: {{values: {{level: {level}}}}}
---
apiVersion: ringops/v1
kind: WorkerGroup
metadata: {{name: core}}
spec: {{workers: [{{name: w1, ring: dev}}]}}
---
apiVersion: ringops/v1
kind: Blueprint
metadata: {{name: leaky}}
spec:
  params:
    pem: {{type: string, sensitive: true}}
    quoted: {{type: string}}
    keys: {{type: list, sensitive: true, default: [key-alpha-1, key-beta-2]}}
    conf: {{type: map, sensitive: true, default: {{pass: map-pass-123}}}}
    pw: {{type: string, default: ""}}
  files:
    - path: leak.conf
      template: |
        level={{{{ ring.values.level }}}}
        pem={{{{ params.pem }}}}
        json={{{{ params.quoted | tojson }}}}
        upper={{{{ params.quoted | upper }}}}
        reversed={{{{ params.quoted | reverse }}}}
        keys={{{{ params.keys }}}}
        pass={{{{ params.conf.pass | default("none") }}}}
        pw={{{{ params.pw }}}}
---
apiVersion: ringops/v1
kind: Module
metadata: {{name: wrap}}
spec:
  params: {{pw: {{type: string, sensitive: true}}}}
  steps:
    - {{name: inner, blueprint: leaky, with: {{pw: {{param: pw}}, pem: {{secret: pem}}, quoted: {{secret: quoted}}}}}}
---
apiVersion: ringops/v1
kind: Workflow
metadata: {{name: wf}}
spec:
  steps:
    - {{name: s, module: wrap, with: {{pw: module-pw-789}}, placement: {{group: core}}}}
"#
        ),
    );
}

#[test]
fn transformed_and_structured_secrets_never_reach_a_plan() {
    let repo = Repo::init();
    leaky_fleet(&repo, "info");
    repo.commit("base");
    leaky_fleet(&repo, "debug");
    repo.commit("head");
    let pem = "-----BEGIN KEY-----\nline-one-of-the-key\nline-two-of-the-key\n-----END KEY-----";
    let quoted = "Hunter2\"x\\y";
    let secrets = secrets_dir(&[("pem", pem), ("quoted", quoted)]);
    let leaks = [
        "line-one-of-the-key",
        "line-two-of-the-key",
        "Hunter2",
        "HUNTER2",
        "2retnuH",
        "key-alpha-1",
        "key-beta-2",
        "map-pass-123",
        "module-pw-789",
    ];
    for format in ["text", "markdown", "json"] {
        let run = plan(
            &repo,
            secrets.path(),
            "HEAD~1",
            "HEAD",
            &["--format", format],
        );
        let out = &run.expect(0).stdout;
        for leak in leaks {
            assert!(!out.contains(leak), "{format} plan shows `{leak}`:\n{out}");
        }
        assert!(
            out.contains("level=debug"),
            "{format}: the real change is shown"
        );
        assert!(
            out.contains("pem=(sensitive value)"),
            "{format}: redacted lines keep their key"
        );
    }
    // From nothing, the whole file is shown, still redacted.
    let created = repo.ringops(&[
        "plan",
        "--ring",
        "dev",
        "--secrets-dir",
        secrets.path().to_str().expect("UTF-8"),
    ]);
    let created = &created.expect(0).stdout;
    for leak in leaks {
        assert!(
            !created.contains(leak),
            "plan from nothing shows `{leak}`:\n{created}"
        );
    }
    // The artifact itself holds the real values.
    let out = out_dir();
    let render = repo.ringops(&[
        "render",
        "--ring",
        "dev",
        "--out",
        out.path().to_str().expect("UTF-8"),
        "--secrets-dir",
        secrets.path().to_str().expect("UTF-8"),
    ]);
    render.expect(0);
    let files = files_under(out.path());
    let leak_conf = String::from_utf8(files["w1/wf/s.inner/leak.conf"].clone()).expect("UTF-8");
    assert!(leak_conf.contains("upper=HUNTER2"), "{leak_conf}");
    assert!(leak_conf.contains("pw=module-pw-789"), "{leak_conf}");
}

#[test]
fn a_change_of_only_a_secret_is_shown_without_the_secret() {
    let repo = Repo::init();
    leaky_fleet(&repo, "info");
    repo.commit("base");
    repo.edit(
        "fleet.yaml",
        "with: {pw: module-pw-789}",
        "with: {pw: module-pw-790}",
    );
    repo.commit("head");
    let secrets = secrets_dir(&[("pem", "pem-value"), ("quoted", "quoted-value")]);
    let run = plan(
        &repo,
        secrets.path(),
        "HEAD~1",
        "HEAD",
        &["--format", "json"],
    );
    let out = &run.expect(0).stdout;
    assert!(!out.contains("module-pw-7"), "{out}");
    let doc: Value = serde_json::from_str(out).expect("JSON");
    let action = &doc["workers"][0]["actions"][0];
    assert_eq!(action["action"], "update");
    assert_eq!(
        action["diff"],
        "--- a/wf/s.inner/leak.conf\n+++ b/wf/s.inner/leak.conf\n(only sensitive values changed)\n"
    );
}

/// Regression: after a secret's value changed, a plan against the workers showed the
/// whole artifact as changed from a "not shown" line, gave no reason, and said the
/// sensitive values changed "too". It says that only sensitive values changed, and names
/// the secret under *because*, in every format.
#[test]
fn a_rotated_secret_is_named_in_a_plan_against_the_workers() {
    let repo = Repo::init();
    repo.copy_in(&fixture("plan/sensitive/base"), "");
    repo.commit("base");
    let state = tempfile::tempdir().expect("state dir");
    let secrets = secrets_dir(&[("db-password", "pw-before-rotation")]);
    let run = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend(["--state", state.path().to_str().expect("UTF-8")]);
        all.extend(["--secrets-dir", secrets.path().to_str().expect("UTF-8")]);
        repo.ringops(&all)
    };
    run(&["apply", "--ring", "dev", "--yes", "--reason", "first"]).expect(0);
    std::fs::write(secrets.path().join("db-password"), "pw-after-rotation").expect("rotate");
    let settings = common::commit_filters();
    for format in ["text", "markdown", "json"] {
        let plan = run(&["plan", "--ring", "dev", "--format", format]);
        plan.expect(0);
        for value in ["pw-before-rotation", "pw-after-rotation"] {
            assert!(!plan.stdout.contains(value), "{format}: {}", plan.stdout);
        }
        let name = format!("rotated-secret-{format}");
        settings.bind(|| insta::assert_snapshot!(name, plan.stdout));
    }
}
