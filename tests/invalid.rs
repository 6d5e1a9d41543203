//! Every `fixtures/invalid/<case>/` holds one mistake (see its `# fixture:` comment).
//! Committed to a real Git repository, it must fail `validate` with exactly its
//! `file:line:col: error: message` lines (snapshots), and `render` must fail the same
//! way without writing a single file.

mod common;

use common::{Repo, files_under, fixture, out_dir};
use std::collections::BTreeSet;
use std::path::Path;

/// Where each case's errors are, reviewed by hand against the fixture; the snapshots
/// hold the exact messages.
const LOCATIONS: &[(&str, &[&str])] = &[
    ("absolute-artifact-path", &["blueprints.yaml:9:13"]),
    ("artifact-path-characters", &["blueprints.yaml:9:13"]),
    ("auto-deploy-promoted-ring", &["fleet.yaml:15:17"]),
    ("bad-api-version", &["workflow.yaml:2:13"]),
    ("channel-no-consumer", &["workflow.yaml:8:12"]),
    ("channel-no-producer", &["workflow.yaml:8:13"]),
    (
        "crossing-channel-without-transport",
        &["workflow.yaml:7:13"],
    ),
    ("cycle", &["workflow.yaml:10:13"]),
    ("duplicate-artifact-path", &["blueprints.yaml:12:13"]),
    ("duplicate-name", &["more-blueprints.yaml:4:18"]),
    ("escaping-artifact-path", &["blueprints.yaml:9:13"]),
    ("group-without-workers-in-ring", &["workflow.yaml:11:26"]),
    (
        "many-errors",
        &[
            "blueprints.yaml:9:13",
            "fleet.yaml:18:31",
            "workflow.yaml:8:12",
            "workflow.yaml:13:15",
            "workflow.yaml:17:18",
        ],
    ),
    ("manifest-not-utf8", &["workflow.yaml:8:23"]),
    ("missing-feature", &["workflow.yaml:7:18"]),
    ("missing-required-param", &["workflow.yaml:7:13"]),
    ("module-duplicate-step", &["module.yaml:10:13"]),
    ("module-inherited-placement", &["workflow.yaml:11:42"]),
    ("module-invalid-port-name", &["module.yaml:6:12"]),
    ("module-unknown-blueprint", &["module.yaml:8:18"]),
    ("module-unknown-channel", &["module.yaml:9:16"]),
    ("module-unknown-param-ref", &["module.yaml:12:15"]),
    ("nested-artifact-path", &["blueprints.yaml:12:13"]),
    ("template-file-missing", &["blueprints.yaml:10:21"]),
    ("template-file-not-utf8", &["blueprints.yaml:10:21"]),
    ("template-named-yaml", &["templates/job.yaml:1:1"]),
    ("template-out-of-fuel", &["blueprints.yaml:12:1"]),
    ("template-output-too-large", &["blueprints.yaml:11:1"]),
    ("template-syntax", &["blueprints.yaml:13:1"]),
    ("template-undefined", &["blueprints.yaml:15:1"]),
    ("too-many-replicas", &["workflow.yaml:11:42"]),
    ("undeclared-channel", &["workflow.yaml:14:25"]),
    ("unknown-blueprint", &["workflow.yaml:8:18"]),
    ("unknown-field", &["workflow.yaml:12:7"]),
    ("unknown-field-spec", &["fleet.yaml:7:3"]),
    ("unknown-group", &["workflow.yaml:11:26"]),
    ("unknown-kind", &["widget.yaml:3:7"]),
    ("unknown-module", &["workflow.yaml:8:15"]),
    ("unknown-param", &["workflow.yaml:11:18"]),
    ("unknown-promotes-from", &["fleet.yaml:15:17"]),
    ("unknown-ring", &["fleet.yaml:18:31"]),
    ("duplicate-target", &["fleet.yaml:18:45"]),
    ("invalid-hook", &["fleet.yaml:16:20", "fleet.yaml:17:57"]),
    ("hook-command-for-agent", &["fleet.yaml:16:20"]),
    ("hook-name-for-local-worker", &["fleet.yaml:7:18"]),
    (
        "invalid-named-hook",
        &["fleet.yaml:16:17", "fleet.yaml:17:40", "fleet.yaml:26:10"],
    ),
    ("invalid-window", &["fleet.yaml:16:18", "fleet.yaml:25:55"]),
    ("unknown-transport", &["workflow.yaml:7:25"]),
    ("unresolved-secret", &["workflow.yaml:11:16"]),
    ("wrong-param-type", &["workflow.yaml:10:15"]),
    ("yaml-alias-bomb", &["bomb.yaml:13:19"]),
    ("yaml-syntax", &["workflow.yaml:9:6"]),
];

fn case_name(dir: &Path) -> &str {
    dir.file_name().and_then(|n| n.to_str()).expect("case name")
}

/// The `file:line:col` of each error line, checking every line has that shape and
/// that the last line counts them.
fn locations(stdout: &str) -> Vec<String> {
    let lines: Vec<&str> = stdout.lines().collect();
    let (count, errors) = lines.split_last().expect("at least the count line");
    let n = errors.len();
    let expected = format!("{n} {}", if n == 1 { "error" } else { "errors" });
    assert_eq!(*count, expected, "last line counts the errors:\n{stdout}");
    errors
        .iter()
        .map(|line| {
            let (at, message) = line
                .split_once(": error: ")
                .unwrap_or_else(|| panic!("not `file:line:col: error: message`: {line}"));
            assert!(!message.trim().is_empty(), "empty message: {line}");
            let parts: Vec<&str> = at.rsplitn(3, ':').collect();
            assert_eq!(parts.len(), 3, "no line and column: {line}");
            assert!(
                parts[0].parse::<u32>().is_ok() && parts[1].parse::<u32>().is_ok(),
                "line and column are numbers: {line}"
            );
            at.to_owned()
        })
        .collect()
}

#[test]
fn every_invalid_fixture_fails_with_its_error_and_renders_nothing() {
    let mut seen = BTreeSet::new();
    insta::glob!("../fixtures/invalid", "?*", |dir| {
        assert!(dir.is_dir(), "only case folders under fixtures/invalid");
        let case = case_name(dir);
        seen.insert(case.to_owned());
        let repo = Repo::init();
        repo.copy_in(dir, "");
        repo.commit(case);

        let validate = repo.ringops(&["validate"]);
        validate.expect(1);
        assert_eq!(validate.stderr, "", "{case}: diagnostics go to stdout");
        let expected = LOCATIONS
            .iter()
            .find(|(name, _)| *name == case)
            .unwrap_or_else(|| panic!("add `{case}` to LOCATIONS after reviewing its output"))
            .1;
        assert_eq!(locations(&validate.stdout), expected, "{case}");
        insta::assert_snapshot!("validate", validate.stdout);
        let json = repo.ringops(&["validate", "--format", "json"]);
        json.expect(1);
        let doc: serde_json::Value = serde_json::from_str(&json.stdout).expect("JSON");
        assert_eq!(doc["valid"], false, "{case}");
        let json_locations: Vec<String> = doc["errors"]
            .as_array()
            .expect("errors")
            .iter()
            .map(|e| {
                format!(
                    "{}:{}:{}",
                    e["file"].as_str().unwrap_or(""),
                    e["line"],
                    e["col"]
                )
            })
            .collect();
        assert_eq!(
            json_locations, expected,
            "{case}: JSON errors match the text"
        );
        insta::assert_snapshot!("validate-json", json.stdout);

        let out = out_dir();
        let render = repo.ringops(&[
            "render",
            "--ring",
            "dev",
            "--out",
            out.path().to_str().expect("UTF-8"),
        ]);
        render.expect(1);
        assert_eq!(
            render.stdout, validate.stdout,
            "{case}: render reports the same errors as validate"
        );
        assert!(
            files_under(out.path()).is_empty(),
            "{case}: render wrote files although the manifests have errors"
        );
    });
    let listed: BTreeSet<String> = LOCATIONS.iter().map(|(c, _)| c.to_string()).collect();
    assert_eq!(seen, listed, "LOCATIONS lists exactly the fixture cases");
}

#[test]
fn worktree_validation_sees_the_fix_of_a_committed_mistake() {
    let repo = Repo::init();
    repo.copy_in(&fixture("invalid/unknown-blueprint"), "");
    repo.commit("typo");
    repo.edit("workflow.yaml", "blueprint: servcie", "blueprint: service");

    repo.ringops(&["validate"]).expect(1);
    let fixed = repo.ringops(&["validate", "--worktree"]);
    fixed.expect(0);
    assert!(
        fixed.stdout.ends_with("ok: no errors\n"),
        "{}",
        fixed.stdout
    );
}

/// Regression: an undeclared channel used to be reported at the step's name; it is
/// reported where the channel is named, in the workflow for a module's port and in
/// the module for its internal channels (there by the module's own check, which names
/// the module and its step as written).
#[test]
fn undeclared_channels_are_located_where_they_are_named_also_through_modules() {
    let repo = Repo::init();
    repo.copy_in(&common::project().join("examples/fleet"), "fleet");
    repo.edit(
        "fleet/workflows/invoices.yaml",
        "inputs: [classified]",
        "inputs: [classifed]",
    );
    repo.edit(
        "fleet/modules/archive.yaml",
        "inputs: [sealed]",
        "inputs: [seald]",
    );
    repo.commit("two typos");
    let secrets = common::project().join("examples/secrets");
    let run = repo.ringops(&[
        "validate",
        "--path",
        "fleet",
        "--secrets-dir",
        secrets.to_str().expect("UTF-8"),
    ]);
    run.expect(1);
    assert_eq!(
        run.stdout,
        "fleet/modules/archive.yaml:12:13: error: channel `archive.sealed` has no consumer (no step lists it in `inputs`)\n\
         fleet/modules/archive.yaml:25:16: error: module `archive` step `store` uses channel `seald`, which is neither a port (inputs/outputs) nor in the module's `channels`\n\
         fleet/workflows/invoices.yaml:8:17: error: channel `classified` has no consumer (no step lists it in `inputs`)\n\
         fleet/workflows/invoices.yaml:31:16: error: step `archive.seal` uses channel `classifed`, which is not declared in `channels`\n\
         4 errors\n"
    );
}
