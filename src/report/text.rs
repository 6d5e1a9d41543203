//! The plan for a terminal: per worker, each artifact with `+`, `~` or `-`, the files
//! behind the change and a unified diff; then a summary line.

use super::{base, revision, summary_line};
use crate::model::{Action, ActionKind, Plan, WorkerPlan};
use anstyle::{AnsiColor, Style};
use std::fmt::Write;

/// Renders a plan; `color` adds ANSI styles (the caller strips them when not on a terminal).
pub fn render(plan: &Plan, color: bool) -> String {
    let paint = Painter(color);
    let mut out = String::new();
    header(&mut out, plan, &paint);
    for worker in &plan.workers {
        worker_section(&mut out, worker, &paint);
    }
    for u in &plan.unreachable {
        let line = format!("\nworker {} is unreachable: {}", u.worker, u.error);
        let _ = writeln!(out, "{}", paint.style(&line, AnsiColor::Red.on_default()));
    }
    out.push('\n');
    footer(&mut out, plan, &paint);
    out
}

/// The title line (ring, base → head) and the plan's fingerprint.
fn header(out: &mut String, plan: &Plan, paint: &Painter) {
    let _ = writeln!(
        out,
        "{}",
        paint.style(
            &format!(
                "Plan for ring {}: {} → {}",
                plan.ring,
                base(plan.base.as_ref()),
                revision(&plan.head)
            ),
            Style::new().bold()
        )
    );
    let _ = writeln!(out, "fingerprint: sha256:{}", plan.fingerprint);
}

/// One worker: its name, each action, then the unmanaged paths left alone.
fn worker_section(out: &mut String, worker: &WorkerPlan, paint: &Painter) {
    let _ = writeln!(
        out,
        "\n{}",
        paint.style(&format!("worker {}", worker.worker), Style::new().bold())
    );
    for action in &worker.actions {
        action_lines(out, action, paint);
    }
    for path in &worker.unmanaged {
        let _ = writeln!(out, "  = {path} (unmanaged: left alone)");
    }
}

/// One action: its marker and path, then its drift, its reasons and its diff.
fn action_lines(out: &mut String, action: &Action, paint: &Painter) {
    let color = kind_color(action.kind);
    let line = format!("  {} {}", action.kind.marker(), action.path);
    let _ = writeln!(out, "{}", paint.style(&line, color));
    if let Some(drift) = action.drift {
        let _ = writeln!(out, "      drift: {}", drift.word());
    }
    if !action.why.is_empty() {
        let _ = writeln!(out, "      because: {}", action.why.join(", "));
    }
    if let Some(diff) = &action.diff {
        for line in diff.lines() {
            let _ = writeln!(out, "      {}", paint.style(line, diff_color(line)));
        }
    }
}

/// The closing lines: unreachable workers left unplanned, then "no changes" or the summary.
fn footer(out: &mut String, plan: &Plan, paint: &Painter) {
    if !plan.unreachable.is_empty() {
        let _ = writeln!(
            out,
            "Nothing is planned for {} unreachable worker(s).",
            plan.unreachable.len()
        );
    }
    if plan.summary.is_empty() {
        let _ = writeln!(
            out,
            "No changes: ring {} already matches {}.",
            plan.ring,
            revision(&plan.head)
        );
    } else {
        let _ = writeln!(
            out,
            "{}",
            paint.style(
                &format!("Plan: {}.", summary_line(&plan.summary)),
                Style::new().bold()
            )
        );
    }
}

fn kind_color(kind: ActionKind) -> Style {
    let color = match kind {
        ActionKind::Create => AnsiColor::Green,
        ActionKind::Update => AnsiColor::Yellow,
        ActionKind::Delete => AnsiColor::Red,
    };
    Style::new().fg_color(Some(color.into()))
}

fn diff_color(line: &str) -> Style {
    let color = if line.starts_with("+++") || line.starts_with("---") {
        return Style::new().bold();
    } else if line.starts_with('+') {
        AnsiColor::Green
    } else if line.starts_with('-') {
        AnsiColor::Red
    } else if line.starts_with("@@") {
        AnsiColor::Cyan
    } else {
        return Style::new();
    };
    Style::new().fg_color(Some(color.into()))
}

struct Painter(bool);

impl Painter {
    fn style(&self, text: &str, style: Style) -> String {
        if self.0 && style != Style::new() {
            format!("{style}{text}{style:#}")
        } else {
            text.to_owned()
        }
    }
}
