//! `ringops drift` for people and programs: per ring, each worker whose files differ
//! from what the Active deployment wrote, with a diff per edited file (never for files
//! holding sensitive values), and what `--fix` restored.

use super::plural;
use crate::model::deployment::DeploymentId;
use crate::model::observed::Difference;
use serde::Serialize;
use std::fmt::Write;

/// Drift of every ring asked about.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct DriftReport {
    /// Rings, sorted by name.
    pub rings: Vec<RingDrift>,
    /// True when `--fix` ran.
    pub fixing: bool,
}

/// One ring's drift against its Active deployment.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct RingDrift {
    /// The ring.
    pub ring: String,
    /// Its Active deployment.
    pub deployment: DeploymentId,
    /// The deployment's commit.
    pub commit: String,
    /// Workers with drift, sorted by name.
    pub workers: Vec<WorkerDrift>,
    /// Workers checked and found in sync.
    pub in_sync: usize,
    /// Workers that could not be read, with the reason.
    pub unreachable: Vec<(String, String)>,
}

/// One drifted worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct WorkerDrift {
    /// The worker.
    pub worker: String,
    /// Its drifted files, sorted by path.
    pub files: Vec<FileDrift>,
    /// With `--fix`: `None` when restored, else why it could not be.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<FixOutcome>,
}

/// What `--fix` did to one worker.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "error", rename_all = "snake_case")]
pub enum FixOutcome {
    /// Its files are the Active deployment's again.
    Restored,
    /// Restoring failed.
    Failed(String),
}

/// One drifted file.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct FileDrift {
    /// Worker-relative path.
    pub path: String,
    /// How it differs from the record.
    pub how: Difference,
    /// Deployed → on the worker, for edited text files that hold nothing sensitive.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// What an edited file holding sensitive values shows instead of a diff.
pub const SENSITIVE_DIFF: &str = "(diff not shown: this artifact holds sensitive values)";

/// The report for a terminal.
pub fn text(report: &DriftReport) -> String {
    let mut out = String::new();
    if report.rings.is_empty() {
        out.push_str("No ring has an Active deployment: nothing to compare.\n");
        return out;
    }
    for ring in &report.rings {
        ring_text(&mut out, ring);
    }
    let drifted: usize = report.rings.iter().map(|r| r.workers.len()).sum();
    let files: usize = report
        .rings
        .iter()
        .flat_map(|r| &r.workers)
        .map(|w| w.files.len())
        .sum();
    out.push('\n');
    if drifted == 0 {
        out.push_str("No drift: every worker read holds what its Active deployment wrote.\n");
    } else if report.fixing {
        let failed = report
            .rings
            .iter()
            .flat_map(|r| &r.workers)
            .filter(|w| matches!(w.fix, Some(FixOutcome::Failed(_))))
            .count();
        let _ = writeln!(
            out,
            "Restored {} of {drifted} drifted {} from the object store.",
            drifted - failed,
            plural(drifted, "worker", "workers")
        );
    } else {
        let _ = writeln!(
            out,
            "{files} {} drifted on {drifted} {}. `ringops drift --fix` restores the Active deployment's files.",
            plural(files, "file", "files"),
            plural(drifted, "worker", "workers"),
        );
    }
    out
}

fn ring_text(out: &mut String, ring: &RingDrift) {
    let _ = writeln!(
        out,
        "ring {}: Active {} (commit {}), {} in sync",
        ring.ring,
        ring.deployment,
        super::short(&ring.commit),
        ring.in_sync
    );
    for w in &ring.workers {
        let _ = writeln!(out, "  worker {}", w.worker);
        for f in &w.files {
            let _ = writeln!(out, "    {:<9} {}", f.how, f.path);
            for line in f.diff.iter().flat_map(|d| d.lines()) {
                let _ = writeln!(out, "        {line}");
            }
        }
        match &w.fix {
            Some(FixOutcome::Restored) => out.push_str("    fixed: restored\n"),
            Some(FixOutcome::Failed(e)) => {
                let _ = writeln!(out, "    fix failed: {e}");
            }
            None => {}
        }
    }
    for (worker, reason) in &ring.unreachable {
        let _ = writeln!(out, "  worker {worker} is unreachable: {reason}");
    }
}

/// The report for programs: `{"format_version": 1, "fixing": .., "rings": [...]}`.
pub fn json(report: &DriftReport) -> String {
    #[derive(Serialize)]
    struct Doc<'r> {
        format_version: u32,
        #[serde(flatten)]
        report: &'r DriftReport,
    }
    let doc = Doc {
        format_version: 1,
        report,
    };
    let mut text = serde_json::to_string_pretty(&doc).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn report(fix: Option<FixOutcome>) -> DriftReport {
        DriftReport {
            fixing: fix.is_some(),
            rings: vec![RingDrift {
                ring: "dev".into(),
                deployment: DeploymentId(3),
                commit: "0123456789abcdef".into(),
                in_sync: 1,
                unreachable: vec![("w3".into(), "no worker directory at /x".into())],
                workers: vec![WorkerDrift {
                    worker: "w2".into(),
                    fix,
                    files: vec![
                        FileDrift {
                            path: "etl/extract/run.sh".into(),
                            how: Difference::Edited,
                            diff: Some("--- a/etl/extract/run.sh\n+++ b/etl/extract/run.sh\n@@ -1 +1 @@\n-echo 1\n+echo hacked\n".into()),
                        },
                        FileDrift {
                            path: "etl/load/secret.env".into(),
                            how: Difference::Edited,
                            diff: Some(SENSITIVE_DIFF.into()),
                        },
                        FileDrift {
                            path: "etl/load/run.sh".into(),
                            how: Difference::Missing,
                            diff: None,
                        },
                    ],
                }],
            }],
        }
    }

    #[test]
    fn drift_reads_as_text_and_json() {
        insta::assert_snapshot!("drift-text", text(&report(None)));
        insta::assert_snapshot!(
            "drift-fixed-text",
            text(&report(Some(FixOutcome::Restored)))
        );
        insta::assert_snapshot!("drift-json", json(&report(None)));
        insta::assert_snapshot!("drift-none", text(&DriftReport::default()));
    }
}
