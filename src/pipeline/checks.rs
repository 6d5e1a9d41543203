//! Checks of single values for the index stage: resource names, worker targets,
//! durations, param defaults, approval counts, artifact paths (and that a blueprint's
//! paths do not collide) and where a blueprint file's template comes from. Each reports a diagnostic and needs nothing but the value
//! (and, for `templateFile`, the bundle's file list).
//!
//! Owns the rules for names and paths, which the edges reuse (`adapters::render_dir`).
//! It may not look things up in the catalog; that is [`super::catalog`].

use crate::model::manifest::{Approvals, FileSpec, ParamSpec, ParamType, RingSpec};
use crate::model::{Bundle, Diagnostics, Pos, Spanned};
use std::collections::BTreeMap;

/// True for names of the form `[a-z0-9]([a-z0-9-]*[a-z0-9])?`.
pub fn is_valid_name(name: &str) -> bool {
    let ok_chars = name
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    ok_chars && !name.is_empty() && !name.starts_with('-') && !name.ends_with('-')
}

/// Reports a name that is not a lowercase DNS-style label.
pub fn check_name(file: &str, name: &Spanned<String>, what: &str, diags: &mut Diagnostics) {
    if !is_valid_name(&name.value) || name.value.len() > 63 {
        diags.error(
            file,
            name.at,
            "invalid-name",
            format!(
                "invalid {} name `{}`: use lowercase letters, digits and `-` (at most 63)",
                what.to_lowercase(),
                name.value
            ),
        );
    }
}

/// Reports a worker target that is neither `dir:/absolute/path` nor an HTTP(S) URL.
pub fn check_target(file: &str, target: &Spanned<String>, diags: &mut Diagnostics) {
    let parsed = target.value.parse::<crate::model::Target>();
    let error = match parsed {
        Ok(t) if t.climbs() => crate::model::target::TargetError(target.value.clone()),
        Ok(_) => return,
        Err(e) => e,
    };
    diags.error(file, target.at, "invalid-target", error.to_string());
}

/// Every duration a ring spec sets (health, approvals, window).
pub fn ring_durations(spec: &RingSpec) -> Vec<&Spanned<String>> {
    let mut out = Vec::new();
    if let Some(h) = &spec.health {
        out.extend(h.timeout.iter());
        out.extend(h.min_healthy.iter());
        out.extend(h.healthy_deadline.iter());
        out.extend(h.progress_deadline.iter());
    }
    if let Some(a) = &spec.approvals {
        out.extend(a.timeout.iter());
    }
    if let Some(w) = &spec.window {
        out.push(&w.duration);
    }
    out
}

/// Reports a window whose cron expression or time zone is not usable.
pub fn check_window(file: &str, window: &crate::model::manifest::Window, diags: &mut Diagnostics) {
    use super::rollout::{GateError, Window};
    let zone = window.timezone.as_ref();
    match Window::new(
        &window.cron.value,
        &window.duration.value,
        zone.map(|z| z.value.as_str()),
    ) {
        Err(e @ GateError::Cron { .. }) => {
            diags.error(file, window.cron.at, "invalid-window", e.to_string());
        }
        Err(e @ GateError::Timezone(_)) => {
            let at = zone.map_or(window.cron.at, |z| z.at);
            diags.error(file, at, "invalid-window", e.to_string());
        }
        // A bad duration is reported with the other durations.
        Err(GateError::Duration(_)) | Ok(_) => {}
    }
}

/// Time limit of a hook that sets none.
pub const DEFAULT_HOOK_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reports a hook that runs nothing, a command without a program, a hook name that is
/// not one, or a `timeout` beside a named hook only (its timeout is the agent's).
pub fn check_hook(
    file: &str,
    hook: &Spanned<crate::model::manifest::Hook>,
    diags: &mut Diagnostics,
) {
    if hook.command.is_none() && hook.hook.is_none() {
        diags.error(
            file,
            hook.at,
            "invalid-hook",
            "a hook needs `command` (run by ringops for local workers) or `hook` (the name of a hook the agents' agent.toml defines), or both",
        );
    }
    if let Some(command) = &hook.command
        && command.value.first().is_none_or(|p| p.is_empty())
    {
        diags.error(
            file,
            command.at,
            "invalid-hook",
            "a hook's `command` needs a program: a list like [\"nginx\", \"-t\"]",
        );
    }
    if let Some(name) = &hook.hook
        && let Some(problem) = crate::model::desired::hook_name_problem(&name.value)
    {
        diags.error(
            file,
            name.at,
            "invalid-hook",
            format!("hook name `{}` {problem}", name.value),
        );
    }
    match (&hook.timeout, &hook.command) {
        (Some(timeout), Some(_)) => check_duration(file, timeout, diags),
        (Some(timeout), None) => diags.error(
            file,
            timeout.at,
            "invalid-hook",
            "`timeout` limits `command`; a named hook's timeout is set with it in the agent's agent.toml",
        ),
        (None, _) => {}
    }
}

/// Reports a group hook (`which`: `check` or `reload`) that some of the group's workers
/// cannot run: a command line alone while a worker is reached through an agent (an agent
/// runs only the hooks its own agent.toml defines, never a command it is sent), or a
/// hook name alone while a worker is a local folder (no agent.toml defines it there).
pub fn check_hook_reach(
    file: &str,
    (group, which): (&str, &str),
    hook: &Spanned<crate::model::manifest::Hook>,
    workers: &[crate::model::manifest::Worker],
    diags: &mut Diagnostics,
) {
    let (agents, local): (Vec<_>, Vec<_>) = workers.iter().partition(|w| {
        w.target
            .as_ref()
            .and_then(|t| t.value.parse().ok())
            .is_some_and(|t| matches!(t, crate::model::Target::Agent { .. }))
    });
    if let (Some(command), None, false) = (&hook.command, &hook.hook, agents.is_empty()) {
        diags.error(
            file,
            command.at,
            "hook-command-for-agent",
            format!(
                "`{which}` of group `{group}` is a command line, but {} reached through an agent, and an agent runs only the hooks its own agent.toml defines: move the command into each agent's agent.toml as `[hooks.NAME]` and name it here with `hook: NAME` (beside `command` while local workers keep it)",
                some_workers(&agents)
            ),
        );
    }
    if let (None, Some(name), false) = (&hook.command, &hook.hook, local.is_empty()) {
        diags.error(
            file,
            name.at,
            "hook-name-for-local-worker",
            format!(
                "`{which}` of group `{group}` names the agent hook `{}`, but {} a local folder, where no agent defines it: add `command: [...]` for ringops to run there",
                name.value,
                some_workers(&local)
            ),
        );
    }
}

/// "worker `a` is", "workers `a`, `b` and 3 more are": the first three by name.
fn some_workers(workers: &[&crate::model::manifest::Worker]) -> String {
    let names: Vec<String> = workers
        .iter()
        .take(3)
        .map(|w| format!("`{}`", w.name.value))
        .collect();
    match workers.len() {
        1 => format!("worker {} is", names.join("")),
        n if n <= 3 => format!("workers {} are", names.join(", ")),
        n => format!("workers {} and {} more are", names.join(", "), n - 3),
    }
}

/// Reports a duration that does not parse (e.g. `10s`, `2m`).
pub fn check_duration(file: &str, value: &Spanned<String>, diags: &mut Diagnostics) {
    if let Err(e) = humantime::parse_duration(&value.value) {
        diags.error(
            file,
            value.at,
            "invalid-duration",
            format!("invalid duration `{}`: {e} (e.g. `10s`, `2m`)", value.value),
        );
    }
}

/// Reports param defaults that do not have the param's type.
pub fn check_params(
    file: &str,
    params: &BTreeMap<String, Spanned<ParamSpec>>,
    diags: &mut Diagnostics,
) {
    for (name, spec) in params {
        if let Some(default) = &spec.default
            && !spec.kind.admits(&default.value)
        {
            diags.error(
                file,
                default.at,
                "wrong-param-type",
                format!(
                    "default of param `{name}` must be of type {}, not {}",
                    spec.kind.name(),
                    ParamType::of(&default.value)
                ),
            );
        }
    }
}

/// Reports an approval gate that needs more approvers than it lists.
pub fn check_approvals(file: &str, approvals: &Approvals, diags: &mut Diagnostics) {
    if approvals.required.value as usize > approvals.approvers.len() {
        diags.error(
            file,
            approvals.required.at,
            "approvals",
            format!(
                "approvals require {} approvers but only {} are listed",
                approvals.required.value,
                approvals.approvers.len()
            ),
        );
    }
}

/// Reports a blueprint file without exactly one of `template` or `templateFile`, or whose
/// `templateFile` is not in the bundle.
pub fn check_template_source(
    file: &str,
    spec: &FileSpec,
    bundle: &Bundle,
    diags: &mut Diagnostics,
) {
    match (&spec.template, &spec.template_file) {
        (Some(_), None) => {}
        (None, Some(tf)) => {
            if !bundle.files.contains_key(&template_path(file, &tf.value)) {
                diags.error(
                    file,
                    tf.at,
                    "template-file",
                    format!(
                        "template file `{}` not found{}",
                        tf.value,
                        looked_for(file, &tf.value)
                    ),
                );
            }
        }
        _ => diags.error(
            file,
            spec.path.at,
            "template",
            "a blueprint file needs exactly one of `template` or `templateFile`",
        ),
    }
}

/// Reports an artifact path that is absolute, leaves its job directory or uses
/// characters other than letters, digits, `.`, `_` and `-` in its parts.
pub fn check_artifact_path(file: &str, path: &Spanned<String>, diags: &mut Diagnostics) {
    if let Some(problem) = artifact_path_problem(&path.value) {
        diags.error(
            file,
            path.at,
            "artifact-path",
            format!("artifact path `{}` {problem}", one_line(&path.value)),
        );
    }
}

/// Reports files of one blueprint that would be written to the same place: a path
/// listed twice, or a path inside another file's path (`a` and `a/b`). Paths with a
/// problem of their own are left to [`check_artifact_path`].
pub fn check_artifact_paths_apart(
    file: &str,
    blueprint: &str,
    files: &[FileSpec],
    diags: &mut Diagnostics,
) {
    let mut first: BTreeMap<&str, Pos> = BTreeMap::new();
    for path in files.iter().map(|f| &f.path) {
        if artifact_path_problem(&path.value).is_some() {
            continue;
        }
        match first.get(path.value.as_str()) {
            Some(at) => diags.error(
                file,
                path.at,
                "artifact-path",
                format!(
                    "file `{}` of blueprint `{blueprint}` is listed twice (first at line {})",
                    path.value, at.line
                ),
            ),
            None => {
                first.insert(&path.value, path.at);
            }
        }
    }
    for (path, at) in &first {
        let mut outers = path.match_indices('/').map(|(i, _)| &path[..i]);
        if let Some(outer) = outers.find(|o| first.contains_key(o)) {
            diags.error(
                file,
                *at,
                "artifact-path",
                format!("file `{path}` of blueprint `{blueprint}` would be inside file `{outer}`"),
            );
        }
    }
}

/// `text` with control characters escaped (`\n`, `\t`), so a message stays on one line.
fn one_line(text: &str) -> String {
    text.chars()
        .map(|c| match c.is_control() {
            true => c.escape_default().to_string(),
            false => c.to_string(),
        })
        .collect()
}

/// Why a job-relative file path is unsafe, if it is.
pub fn artifact_path_problem(path: &str) -> Option<&'static str> {
    if path.starts_with('/') || path.contains('\\') || path.contains(':') {
        return Some("must be relative to the job directory");
    }
    if path
        .split('/')
        .any(|c| c == ".." || c == "." || c.is_empty())
    {
        return Some("must stay inside the job directory (no `..`, `.` or empty parts)");
    }
    if path.starts_with(".ringops") {
        return Some("must not be inside `.ringops`, which ringops reserves");
    }
    let plain = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b'/');
    if !path.bytes().all(plain) {
        return Some("may only use letters, digits, `.`, `_` and `-` in each part");
    }
    None
}

/// The repository path of a `templateFile`, relative to the manifest's folder.
pub fn template_path(manifest: &str, template: &str) -> String {
    let dir = manifest.rsplit_once('/').map(|(d, _)| d).unwrap_or("");
    let mut parts: Vec<&str> = dir.split('/').filter(|p| !p.is_empty()).collect();
    for part in template.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    parts.join("/")
}

/// ` (looked for `path`)` when the repository path differs from what was written.
fn looked_for(manifest: &str, template: &str) -> String {
    let path = template_path(manifest, template);
    if path == template {
        String::new()
    } else {
        format!(" (looked for `{path}`)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hook_errors_name_a_few_workers_and_count_the_rest() {
        let worker = |name: &str| crate::model::manifest::Worker {
            name: Spanned::new(name.to_owned(), Pos::default()),
            ring: Spanned::new("dev".to_owned(), Pos::default()),
            address: None,
            labels: BTreeMap::new(),
            target: Some(Spanned::new(format!("https://{name}:7443"), Pos::default())),
        };
        let workers: Vec<_> = ["a", "b", "c", "d", "e"].map(worker).into();
        let refs: Vec<_> = workers.iter().collect();
        assert_eq!(some_workers(&refs[..1]), "worker `a` is");
        assert_eq!(some_workers(&refs[..2]), "workers `a`, `b` are");
        assert_eq!(some_workers(&refs), "workers `a`, `b`, `c` and 2 more are");
        let hook = crate::model::manifest::Hook {
            command: Some(Spanned::new(vec!["true".to_owned()], Pos::default())),
            ..Default::default()
        };
        let mut diags = Diagnostics::default();
        let hook = Spanned::new(hook, Pos::default());
        check_hook_reach("g.yaml", ("core", "check"), &hook, &workers, &mut diags);
        let found = diags.into_sorted();
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].code, "hook-command-for-agent");
    }

    #[test]
    fn names() {
        assert!(is_valid_name("edge-1"));
        assert!(!is_valid_name("Edge"));
        assert!(!is_valid_name("a.b"));
        assert!(!is_valid_name("-a"));
        assert!(!is_valid_name(""));
    }

    #[test]
    fn artifact_paths() {
        assert!(artifact_path_problem("conf/job.yaml").is_none());
        assert!(artifact_path_problem("/etc/passwd").is_some());
        assert!(artifact_path_problem("../x").is_some());
        assert!(artifact_path_problem("a/../../x").is_some());
        assert!(artifact_path_problem("a//b").is_some());
        assert!(artifact_path_problem(".ringops/x").is_some());
        assert!(artifact_path_problem("Conf_2/job-1.v2.yaml").is_none());
        for odd in [
            "my job.yaml",
            "a\nb",
            "a\tb",
            "a`b",
            "<b>x</b>",
            "é.yaml",
            "a$b",
        ] {
            assert_eq!(
                artifact_path_problem(odd),
                Some("may only use letters, digits, `.`, `_` and `-` in each part"),
                "{odd:?}"
            );
        }
    }

    fn collisions(paths: &[&str]) -> Vec<String> {
        let files: Vec<FileSpec> = paths
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let at = Pos {
                    line: i as u32 + 1,
                    col: 1,
                };
                FileSpec {
                    path: Spanned::new((*p).to_owned(), at),
                    template: Some(Spanned::new("x".to_owned(), at)),
                    template_file: None,
                }
            })
            .collect();
        let mut diags = Diagnostics::default();
        check_artifact_paths_apart("bp.yaml", "x", &files, &mut diags);
        diags
            .into_sorted()
            .into_iter()
            .map(|d| format!("{}: {}", d.line, d.message))
            .collect()
    }

    #[test]
    fn blueprint_paths_may_not_collide() {
        assert!(collisions(&["a", "b/c", "ab/c", "b/d"]).is_empty());
        assert_eq!(
            collisions(&["a/b", "c", "a"]),
            ["1: file `a/b` of blueprint `x` would be inside file `a`"]
        );
        assert_eq!(
            collisions(&["a", "b", "a"]),
            ["3: file `a` of blueprint `x` is listed twice (first at line 1)"]
        );
        assert_eq!(
            collisions(&["a", "a/b/c"]),
            ["2: file `a/b/c` of blueprint `x` would be inside file `a`"]
        );
        assert!(
            collisions(&["../a", "../a"]).is_empty(),
            "left to the path check"
        );
    }

    #[test]
    fn template_paths_are_relative_to_the_manifest() {
        assert_eq!(template_path("fleet/bp.yaml", "t/job.j2"), "fleet/t/job.j2");
        assert_eq!(template_path("bp.yaml", "t/job.j2"), "t/job.j2");
        assert_eq!(template_path("a/b/bp.yaml", "../t.j2"), "a/t.j2");
    }
}
