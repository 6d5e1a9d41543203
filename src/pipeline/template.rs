//! Template compilation for the render stage: every blueprint file's minijinja template,
//! compiled once per bundle with strict undefined and a fuel budget, and where its text
//! was written so that syntax and render errors point at the right file and line.
//!
//! Owns the minijinja environment. It may not render jobs or resolve parameters; that is
//! [`super::render`] and [`super::params`].

use super::catalog::{Catalog, Entry};
use super::checks::template_path;
use crate::model::manifest::{BlueprintSpec, FileSpec};
use crate::model::{Bundle, Diagnostics, Pos};
use minijinja::syntax::SyntaxConfig;
use minijinja::{Environment, ErrorKind, Template, UndefinedBehavior};
use std::collections::BTreeMap;

/// Instructions one template render may execute; far above any real job file.
const FUEL: u64 = 1_000_000;

/// Where a template's text was written, to locate its errors.
#[derive(Clone, Debug)]
pub(super) struct Origin {
    /// The file holding the template text (the manifest, or the `templateFile`).
    pub file: String,
    /// The line of `file` where the template text starts.
    pub first_line: u32,
    /// Repository files the template comes from.
    pub sources: Vec<String>,
}

/// Every blueprint file's template, compiled once.
pub struct Templates {
    env: Environment<'static>,
    origins: BTreeMap<String, Origin>,
}

impl Templates {
    /// Compiles every blueprint template, reporting syntax errors where they were written.
    pub fn compile(cat: &Catalog, bundle: &Bundle, diags: &mut Diagnostics) -> Self {
        let mut templates = Templates {
            env: environment(),
            origins: BTreeMap::new(),
        };
        for (name, bp) in &cat.blueprints {
            for (i, file) in bp.spec.files.iter().enumerate() {
                if let Some((text, origin)) = template_text(bp, file, bundle, diags) {
                    templates.add(name, i, file, text, origin, diags);
                }
            }
        }
        templates
    }

    /// Adds file `index` of `blueprint`, or reports its syntax error.
    fn add(
        &mut self,
        blueprint: &str,
        index: usize,
        file: &FileSpec,
        text: String,
        origin: Origin,
        diags: &mut Diagnostics,
    ) {
        let key = template_key(blueprint, index);
        match self.env.add_template_owned(key.clone(), text) {
            Ok(()) => {
                self.origins.insert(key, origin);
            }
            Err(e) => diags.error(
                &origin.file,
                error_pos(&origin, &e),
                "template-syntax",
                format!(
                    "template syntax error in blueprint `{blueprint}` file `{}`: {}",
                    file.path.value,
                    describe(&e)
                ),
            ),
        }
    }

    /// The compiled template of file `index` of `blueprint` and where it was written;
    /// `None` when it did not compile.
    pub(super) fn get(&self, blueprint: &str, index: usize) -> Option<(Template<'_, '_>, &Origin)> {
        let key = template_key(blueprint, index);
        let origin = self.origins.get(&key)?;
        let template = self.env.get_template(&key).ok()?;
        Some((template, origin))
    }
}

/// A strict environment: undefined values fail, each render has a bounded budget.
fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    // A hostile template cannot hang the compiler: each render gets a bounded budget.
    env.set_fuel(Some(FUEL));
    if let Ok(syntax) = SyntaxConfig::builder().keep_trailing_newline(true).build() {
        env.set_syntax(syntax);
    }
    env
}

fn template_key(blueprint: &str, index: usize) -> String {
    format!("{blueprint}#{index}")
}

/// The text of a blueprint file's template and where it was written; `None` for a
/// missing `templateFile` (reported by the catalog) or one that is not UTF-8 (reported
/// here).
fn template_text(
    bp: &Entry<BlueprintSpec>,
    file: &FileSpec,
    bundle: &Bundle,
    diags: &mut Diagnostics,
) -> Option<(String, Origin)> {
    let manifest = bp.file();
    if let Some(inline) = &file.template {
        let origin = Origin {
            file: manifest.to_owned(),
            first_line: inline_first_line(bundle, manifest, inline.at),
            sources: vec![manifest.to_owned()],
        };
        return Some((inline.value.clone(), origin));
    }
    let tf = file.template_file.as_ref()?;
    let path = template_path(manifest, &tf.value);
    let Ok(text) = String::from_utf8(bundle.files.get(&path)?.clone()) else {
        diags.error(
            manifest,
            tf.at,
            "template-file",
            format!("template file `{}` is not UTF-8 text", tf.value),
        );
        return None;
    };
    let origin = Origin {
        file: path.clone(),
        first_line: 1,
        sources: vec![manifest.to_owned(), path],
    };
    Some((text, origin))
}

/// The line where an inline template's text starts: after a `|` or `>` block indicator.
fn inline_first_line(bundle: &Bundle, file: &str, at: Pos) -> u32 {
    let line = bundle
        .files
        .get(file)
        .and_then(|b| std::str::from_utf8(b).ok())
        .and_then(|t| t.lines().nth(at.line.saturating_sub(1) as usize));
    let indicator = line
        .and_then(|l| l.chars().nth(at.col.saturating_sub(1) as usize))
        .is_some_and(|c| c == '|' || c == '>');
    if indicator { at.line + 1 } else { at.line }
}

/// Where a template error is in the file that holds the template.
pub(super) fn error_pos(origin: &Origin, e: &minijinja::Error) -> Pos {
    let offset = e.line().unwrap_or(1).max(1) as u32 - 1;
    Pos {
        line: origin.first_line + offset,
        col: 1,
    }
}

/// Why a render failed, in plain words: [`plain_cause`], else the error's kind and detail.
pub(super) fn render_cause(e: &minijinja::Error) -> String {
    plain_cause(e).unwrap_or_else(|| describe(e))
}

/// The cause of a render error when it can be told from ringops' limits and the
/// template's text alone (never from a value, so it may be shown for a job with
/// sensitive params): the fuel limit and why it exists, or the undefined variable by
/// name (minijinja names it from the template's text; a computed key is `...`).
pub(super) fn plain_cause(e: &minijinja::Error) -> Option<String> {
    match e.kind() {
        ErrorKind::OutOfFuel => Some(format!(
            "the template ran more than {FUEL} instructions: ringops stops a render at this \
             limit so that a template (such as a loop that never ends) cannot hang the compiler"
        )),
        ErrorKind::UndefinedError => {
            let detail = e.detail()?;
            let end = detail.find("` is undefined")?;
            let start = detail[..end].rfind('`')? + 1;
            Some(format!("undefined variable {}", &detail[start..end]))
        }
        _ => None,
    }
}

/// A template error's kind and detail, for a diagnostic message.
fn describe(e: &minijinja::Error) -> String {
    match e.detail() {
        Some(detail) => format!("{}: {detail}", e.kind()),
        None => e.kind().to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Diagnostic;
    use crate::pipeline::load::load;

    const BLUEPRINT: &str = "apiVersion: ringops/v1\nkind: Blueprint\nmetadata: {name: bp}\n\
                             spec:\n  files:\n    - path: job.conf\n      templateFile: t/job.j2\n";

    fn compile(template: &[u8]) -> Vec<Diagnostic> {
        let mut bundle = Bundle::default();
        bundle
            .files
            .insert("f/bp.yaml".into(), BLUEPRINT.as_bytes().to_vec());
        bundle.files.insert("f/t/job.j2".into(), template.to_vec());
        let mut diags = Diagnostics::default();
        let loaded = load(&bundle, &mut diags);
        let cat = Catalog::build(&loaded, &bundle, &mut diags);
        let templates = Templates::compile(&cat, &bundle, &mut diags);
        assert_eq!(templates.get("bp", 0).is_some(), diags.is_empty());
        diags.into_sorted()
    }

    #[test]
    fn a_template_file_is_read_from_next_to_its_manifest() {
        assert_eq!(compile(b"port = {{ params.port }}\n"), []);
    }

    /// Regression: a `templateFile` that is not UTF-8 was silently left out.
    #[test]
    fn a_template_file_that_is_not_utf8_is_reported_where_it_is_named() {
        let diags = compile(b"caf\xe9 = 1\n");
        let shown: Vec<String> = diags.iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown,
            ["f/bp.yaml:7:21: error: template file `t/job.j2` is not UTF-8 text"]
        );
        assert_eq!(diags[0].code, "template-file");
    }
}
