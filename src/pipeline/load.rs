//! Parse stage: manifest files → [`Document`]s. The only module that reads YAML.
//!
//! Owns the bridge from serde-saphyr's spans to [`Spanned`]. Pure: takes file
//! contents, never touches the filesystem.

use crate::model::manifest::{API_VERSION, Document, Metadata, Resource};
use crate::model::{Bundle, Diagnostic, Diagnostics, Pos, Spanned};
use rayon::prelude::*;
use serde::de::{self, Deserialize, Deserializer, IgnoredAny, MapAccess, Visitor};
use serde_saphyr::budget::BudgetBreach;
use std::collections::BTreeSet;
use std::fmt;

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Spanned<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<T>::deserialize(deserializer)?;
        let at = Pos {
            line: spanned.referenced.line() as u32,
            col: spanned.referenced.column() as u32,
        };
        Ok(Spanned::new(spanned.value, at))
    }
}

/// True for paths the loader parses as manifests.
pub fn is_manifest(path: &str) -> bool {
    path.ends_with(".yaml") || path.ends_with(".yml")
}

/// The documents of a bundle, and the kinds and names of those that failed to parse.
#[derive(Debug, Default)]
pub struct Loaded {
    /// Documents that parsed.
    pub documents: Vec<Document>,
    /// `(kind, name)` of documents with errors, so references to them are not reported twice.
    pub broken: BTreeSet<(String, String)>,
}

/// Parses every manifest of a bundle, collecting problems instead of stopping. Files are
/// parsed several at a time and taken in path order, as one by one.
pub fn load(bundle: &Bundle, diags: &mut Diagnostics) -> Loaded {
    let files: Vec<(&String, &Vec<u8>)> = bundle
        .files
        .iter()
        .filter(|(p, _)| is_manifest(p))
        .collect();
    let parsed: Vec<(Loaded, Diagnostics)> = files
        .par_iter()
        .map(|(path, bytes)| {
            let mut loaded = Loaded::default();
            let mut file_diags = Diagnostics::default();
            match std::str::from_utf8(bytes) {
                Ok(text) => parse_file(path, text, &mut loaded, &mut file_diags),
                Err(e) => file_diags.push(not_utf8(path, bytes, &e)),
            }
            (loaded, file_diags)
        })
        .collect();
    let mut loaded = Loaded::default();
    for (part, file_diags) in parsed {
        loaded.documents.extend(part.documents);
        loaded.broken.extend(part.broken);
        for d in file_diags.into_sorted() {
            diags.push(d);
        }
    }
    loaded
}

/// A file that is not UTF-8, reported at its first invalid byte.
fn not_utf8(path: &str, bytes: &[u8], e: &std::str::Utf8Error) -> Diagnostic {
    let valid = &bytes[..e.valid_up_to()];
    // The prefix is valid UTF-8, so its lines and characters can be counted.
    let text = std::str::from_utf8(valid).unwrap_or_default();
    let line_start = text.rfind('\n').map_or(0, |i| i + 1);
    let at = Pos {
        line: text.matches('\n').count() as u32 + 1,
        col: text[line_start..].chars().count() as u32 + 1,
    };
    let byte = bytes.get(e.valid_up_to()).copied().unwrap_or_default();
    Diagnostic::new(
        path,
        at,
        "not-utf8",
        format!(
            "file is not UTF-8 text: byte 0x{byte:02X} here is not valid UTF-8; save the file as UTF-8"
        ),
    )
}

/// Parses the documents of one file. When the file has an error, its documents are
/// parsed one by one so every broken document is reported and the others still count.
pub fn parse_file(path: &str, text: &str, out: &mut Loaded, diags: &mut Diagnostics) {
    match parse_documents(path, text, diags) {
        Ok(docs) => out.documents.extend(docs),
        // A file past a budget is refused whole: parsing its documents one by one
        // would give each its own budget.
        Err(first) if first.code == BUDGET_CODE => diags.push(first),
        Err(first) => {
            let chunks = split_documents(text);
            let hint = !looks_like_manifest(chunks[0].1);
            let with_hint = |mut e: Diagnostic| {
                if hint {
                    e.message.push_str(TEMPLATE_HINT);
                }
                e
            };
            if chunks.len() <= 1 {
                diags.push(with_hint(first));
                out.broken.extend(header(text));
                return;
            }
            if chunks.len() > MAX_DOCUMENTS {
                let at = Pos { line: 1, col: 1 };
                let breach = BudgetBreach::Documents {
                    documents: chunks.len(),
                };
                diags.push(Diagnostic::new(
                    path,
                    at,
                    BUDGET_CODE,
                    budget_message(&breach),
                ));
                return;
            }
            for (start_line, chunk) in chunks {
                // Leading blank lines keep every position right for the whole file.
                let padded = format!("{}{chunk}", "\n".repeat(start_line));
                match parse_documents(path, &padded, diags) {
                    Ok(docs) => out.documents.extend(docs),
                    Err(e) => {
                        diags.push(with_hint(e));
                        out.broken.extend(header(&padded));
                    }
                }
            }
        }
    }
}

/// Added to the parse errors of a `.yaml`/`.yml` file that does not look like a
/// manifest: most likely a template named like one.
const TEMPLATE_HINT: &str =
    " (if this is a template, name it *.j2 or use a suffix other than .yaml/.yml)";

/// True when a document's text names `apiVersion` or `kind` as a key. Read as text, so
/// it also answers for YAML that does not parse.
fn looks_like_manifest(document: &str) -> bool {
    document.lines().any(|line| {
        let key = line.trim_start_matches(|c: char| c == '{' || c.is_whitespace());
        key.starts_with("apiVersion:") || key.starts_with("kind:")
    })
}

fn parse_documents(
    path: &str,
    text: &str,
    diags: &mut Diagnostics,
) -> Result<Vec<Document>, Diagnostic> {
    // Strict booleans: only `true`/`false`, so `n`, `no` and `off` stay strings (YAML 1.2).
    let options = serde_saphyr::options! {
        with_snippet: false,
        strict_booleans: true,
        budget: serde_saphyr::budget! {
            max_nodes: MAX_NODES,
            max_aliases: MAX_ALIASES,
            max_anchors: MAX_ANCHORS,
            max_depth: MAX_DEPTH,
            max_documents: MAX_DOCUMENTS,
        },
    };
    let raws = serde_saphyr::from_str_multiple_with_options::<RawDoc, Vec<_>>(text, options)
        .map_err(|e| yaml_error(path, &e))?;
    Ok(raws
        .into_iter()
        .filter_map(|raw| raw.finish(path, diags))
        .collect())
}

/// Splits a YAML stream at `---` lines: (0-based first line, text) per document.
/// Only used to isolate errors; a `---` at column 0 always starts a document when the
/// root is a mapping.
fn split_documents(text: &str) -> Vec<(usize, &str)> {
    let mut chunks = Vec::new();
    let (mut start, mut start_line) = (0, 0);
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        let bare = line.trim_end_matches(['\n', '\r']);
        let marker = bare == "---" || bare.starts_with("--- ") || bare.starts_with("---\t");
        if marker && offset > start {
            chunks.push((start_line, &text[start..offset]));
            (start, start_line) = (offset, i);
        }
        offset += line.len();
    }
    chunks.push((start_line, &text[start..]));
    chunks
}

/// The kind and name of a document, read leniently, for a document that failed to parse.
fn header(text: &str) -> Vec<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Header {
        kind: Option<String>,
        metadata: Option<HeaderMeta>,
    }
    #[derive(serde::Deserialize)]
    struct HeaderMeta {
        name: Option<String>,
    }
    serde_saphyr::from_str_multiple::<Header, Vec<_>>(text)
        .unwrap_or_default()
        .into_iter()
        .filter_map(|h| Some((h.kind?, h.metadata?.name?)))
        .collect()
}

/// Turns a YAML error into a diagnostic at its location, without the location suffix.
fn yaml_error(path: &str, error: &serde_saphyr::Error) -> Diagnostic {
    let at = error
        .location()
        .map(|l| Pos {
            line: l.line() as u32,
            col: l.column() as u32,
        })
        .unwrap_or(Pos { line: 1, col: 1 });
    if let Some(breach) = budget_breach(error) {
        return Diagnostic::new(path, at, BUDGET_CODE, budget_message(breach));
    }
    let text = error.without_snippet().to_string();
    Diagnostic::new(path, at, "yaml", clean_message(&text))
}

/// The code of a file refused at a budget.
const BUDGET_CODE: &str = "yaml-budget";

/// Most values (lists, maps, scalars) one file may expand to, an alias counting each
/// time it is used: far above any fleet, far below what exhausts memory.
pub const MAX_NODES: usize = 250_000;
/// Most aliases (`*name`) one file may use.
pub const MAX_ALIASES: usize = 50_000;
/// Most anchors (`&name`) one file may define.
pub const MAX_ANCHORS: usize = 50_000;
/// Deepest nesting of lists and maps.
pub const MAX_DEPTH: usize = 64;
/// Most documents (`---`) in one file.
pub const MAX_DOCUMENTS: usize = 1_024;

/// The budget breach behind a YAML error, if that is what it is.
fn budget_breach(error: &serde_saphyr::Error) -> Option<&BudgetBreach> {
    let mut error = error;
    loop {
        match error {
            serde_saphyr::Error::Budget { breach, .. } => return Some(breach),
            serde_saphyr::Error::AliasError { error: inner, .. }
            | serde_saphyr::Error::WithSnippet { error: inner, .. } => error = inner,
            _ => return None,
        }
    }
}

/// What limit a file hit, and why ringops has it, in plain words.
fn budget_message(breach: &BudgetBreach) -> String {
    let what = match breach {
        BudgetBreach::Nodes { .. } => format!(
            "the YAML expands to more than {MAX_NODES} values (an alias counts each time it is used)"
        ),
        BudgetBreach::Events { .. } => {
            "the YAML is too long to read (more than a million keys, values and brackets)"
                .to_owned()
        }
        BudgetBreach::Aliases { .. } => {
            format!("the YAML uses more than {MAX_ALIASES} aliases (`*name`)")
        }
        BudgetBreach::AliasAnchorRatio { .. } => {
            "the YAML uses aliases (`*name`) far more often than it defines anchors".to_owned()
        }
        BudgetBreach::Anchors { .. } => {
            format!("the YAML defines more than {MAX_ANCHORS} anchors (`&name`)")
        }
        BudgetBreach::Depth { .. } => {
            format!("the YAML nests lists and maps more than {MAX_DEPTH} levels deep")
        }
        BudgetBreach::Documents { .. } => {
            format!("the file holds more than {MAX_DOCUMENTS} documents (`---`)")
        }
        _ => "the YAML is too large or too complex to read".to_owned(),
    };
    format!(
        "{what}: ringops stops reading a manifest at this limit so that a file (such as a few \
         nested aliases that expand to billions of values) cannot exhaust its memory and time"
    )
}

/// Strips the ` at line N column M` serde-saphyr appends; the diagnostic carries it.
fn clean_message(text: &str) -> String {
    let first = text.lines().next().unwrap_or(text);
    let trimmed = match first.find(" at line ") {
        Some(i) => &first[..i],
        None => first,
    };
    trimmed.trim().to_owned()
}

/// A document before its header is checked.
struct RawDoc {
    at: Pos,
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    metadata: Option<Metadata>,
    resource: Option<Resource>,
}

impl RawDoc {
    /// Checks the header; reports what is missing or wrong.
    fn finish(self, file: &str, diags: &mut Diagnostics) -> Option<Document> {
        let mut ok = true;
        match &self.api_version {
            None => {
                diags.error(file, self.at, "missing-field", "missing field `apiVersion`");
                ok = false;
            }
            Some(v) if v.value != API_VERSION => {
                diags.error(
                    file,
                    v.at,
                    "api-version",
                    format!(
                        "unsupported apiVersion `{}` (expected `{API_VERSION}`)",
                        v.value
                    ),
                );
                ok = false;
            }
            Some(_) => {}
        }
        let Some(kind) = self.kind else {
            diags.error(file, self.at, "missing-field", "missing field `kind`");
            return None;
        };
        if !KINDS.contains(&kind.value.as_str()) {
            diags.error(
                file,
                kind.at,
                "unknown-kind",
                format!(
                    "unknown kind `{}` (expected one of: {})",
                    kind.value,
                    KINDS.join(", ")
                ),
            );
            return None;
        }
        let Some(metadata) = self.metadata else {
            diags.error(file, self.at, "missing-field", "missing field `metadata`");
            return None;
        };
        let Some(resource) = self.resource else {
            diags.error(file, self.at, "missing-field", "missing field `spec`");
            return None;
        };
        ok.then(|| Document {
            file: file.to_owned(),
            kind_at: kind.at,
            metadata,
            resource,
        })
    }
}

const KINDS: [&str; 6] = [
    "Ring",
    "WorkerGroup",
    "Workflow",
    "Blueprint",
    "Module",
    "Transport",
];

impl<'de> Deserialize<'de> for RawDoc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let spanned = serde_saphyr::Spanned::<RawDocInner>::deserialize(deserializer)?;
        let inner = spanned.value;
        Ok(RawDoc {
            at: Pos {
                line: spanned.referenced.line() as u32,
                col: spanned.referenced.column() as u32,
            },
            api_version: inner.api_version,
            kind: inner.kind,
            metadata: inner.metadata,
            resource: inner.resource,
        })
    }
}

/// The fields of a document, read in order so `spec` is typed by the `kind` before it.
struct RawDocInner {
    api_version: Option<Spanned<String>>,
    kind: Option<Spanned<String>>,
    metadata: Option<Metadata>,
    resource: Option<Resource>,
}

impl<'de> Deserialize<'de> for RawDocInner {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = RawDocInner;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a manifest document with apiVersion, kind, metadata and spec")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawDocInner, A::Error> {
        let mut doc = RawDocInner {
            api_version: None,
            kind: None,
            metadata: None,
            resource: None,
        };
        while let Some(key) = map.next_key::<String>()? {
            match key.as_str() {
                "apiVersion" => doc.api_version = Some(map.next_value()?),
                "kind" => doc.kind = Some(map.next_value()?),
                "metadata" => doc.metadata = Some(map.next_value()?),
                "spec" => doc.resource = next_spec(&mut map, doc.kind.as_ref())?,
                other => {
                    return Err(de::Error::unknown_field(
                        other,
                        &["apiVersion", "kind", "metadata", "spec"],
                    ));
                }
            }
        }
        Ok(doc)
    }
}

/// Reads `spec` as the type its `kind` names; an unknown kind's spec is skipped.
fn next_spec<'de, A: MapAccess<'de>>(
    map: &mut A,
    kind: Option<&Spanned<String>>,
) -> Result<Option<Resource>, A::Error> {
    let Some(kind) = kind else {
        return Err(de::Error::custom("`kind` must come before `spec`"));
    };
    Ok(Some(match kind.value.as_str() {
        "Ring" => Resource::Ring(Box::new(map.next_value()?)),
        "WorkerGroup" => Resource::WorkerGroup(map.next_value()?),
        "Workflow" => Resource::Workflow(map.next_value()?),
        "Blueprint" => Resource::Blueprint(map.next_value()?),
        "Module" => Resource::Module(map.next_value()?),
        "Transport" => Resource::Transport(map.next_value()?),
        _ => {
            map.next_value::<IgnoredAny>()?;
            return Ok(None);
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> (Vec<Document>, Vec<Diagnostic>) {
        let mut diags = Diagnostics::default();
        let mut loaded = Loaded::default();
        parse_file("m.yaml", text, &mut loaded, &mut diags);
        (loaded.documents, diags.into_sorted())
    }

    #[test]
    fn every_broken_document_is_reported_and_the_rest_kept() {
        let (docs, diags) = parse(
            "apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: a}\nspec: {bad: 1}\n---\n\
             apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: b}\nspec: {}\n---\n\
             apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: c}\nspec: {worse: 1}\n",
        );
        assert_eq!(docs.len(), 1);
        assert_eq!(docs[0].name(), "b");
        let lines: Vec<u32> = diags.iter().map(|d| d.line).collect();
        assert_eq!(lines, [4, 14], "{diags:?}");
    }

    #[test]
    fn parses_multiple_documents_with_positions() {
        let (docs, diags) = parse(
            "apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: dev}\nspec: {}\n---\n\
             apiVersion: ringops/v1\nkind: WorkerGroup\nmetadata:\n  name: edge\nspec:\n  features: [tls]\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        assert_eq!(docs.len(), 2);
        assert_eq!(docs[1].name(), "edge");
        assert_eq!(docs[1].metadata.name.at, Pos { line: 9, col: 9 });
        assert_eq!(docs[1].kind_at, Pos { line: 7, col: 7 });
    }

    #[test]
    fn unknown_field_is_located() {
        let (_, diags) = parse(
            "apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: dev}\nspec:\n  autoDeploi: true\n",
        );
        assert_eq!(diags.len(), 1);
        assert_eq!(diags[0].line, 5, "{diags:?}");
        assert!(diags[0].message.contains("autoDeploi"), "{diags:?}");
    }

    #[test]
    fn unknown_kind_names_the_kinds() {
        let (docs, diags) =
            parse("apiVersion: ringops/v1\nkind: Widget\nmetadata: {name: w}\nspec: {a: 1}\n");
        assert!(docs.is_empty());
        assert_eq!(diags[0].code, "unknown-kind");
        assert_eq!((diags[0].line, diags[0].col), (2, 7));
    }

    #[test]
    fn only_true_and_false_are_booleans() {
        let (docs, diags) = parse(
            "apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: d}\nspec:\n  values: {a: n, b: no, c: true}\n",
        );
        assert!(diags.is_empty(), "{diags:?}");
        let Resource::Ring(ring) = &docs[0].resource else {
            panic!("not a ring")
        };
        assert_eq!(ring.values["a"], "n");
        assert_eq!(ring.values["b"], "no");
        assert_eq!(ring.values["c"], true);
    }

    /// Regression: a template named `*.yaml` was reported with only the parser's
    /// confusing error.
    #[test]
    fn a_file_that_is_not_a_manifest_gets_a_template_hint() {
        let (_, diags) = parse("listen: \":{{ params.port }}\"\n");
        assert_eq!(diags.len(), 1, "{diags:?}");
        assert!(diags[0].message.ends_with(TEMPLATE_HINT), "{diags:?}");
        let (_, diags) = parse("{% if params.tls %}\ntls: true\n{% endif %}\n");
        assert!(diags[0].message.ends_with(TEMPLATE_HINT), "{diags:?}");
    }

    #[test]
    fn a_broken_manifest_gets_no_template_hint() {
        for text in [
            "apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: d}\nspec: {bad: 1}\n",
            "# a ring\nkind: Ring\n  oops: [\n",
            "{apiVersion: ringops/v1, kind: Ring, metadata: {name: d}, spec: {bad: 1}}\n",
            "apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: d}\nspec: {}\n---\nport: 1\n",
        ] {
            let (_, diags) = parse(text);
            assert!(!diags.is_empty(), "{text}");
            assert!(
                diags.iter().all(|d| !d.message.contains(TEMPLATE_HINT)),
                "{text}: {diags:?}"
            );
        }
    }

    /// Regression: a non-UTF-8 manifest was reported at 1:1 with Rust's byte index.
    #[test]
    fn a_manifest_that_is_not_utf8_is_reported_at_its_first_invalid_byte() {
        let bundle = Bundle {
            files: [(
                "f/m.yaml".to_owned(),
                b"kind: Ring\n# caf\xc3\xa9 caf\xe9\n".to_vec(),
            )]
            .into(),
            ..Bundle::default()
        };
        let mut diags = Diagnostics::default();
        load(&bundle, &mut diags);
        let shown: Vec<String> = diags.into_sorted().iter().map(|d| d.to_string()).collect();
        assert_eq!(
            shown,
            [
                "f/m.yaml:2:11: error: file is not UTF-8 text: byte 0xE9 here is not valid UTF-8; save the file as UTF-8"
            ]
        );
    }

    /// Regression: budget refusals showed serde-saphyr's debug value
    /// (`budget breached: Nodes { nodes: 250001 }`).
    #[test]
    fn budget_refusals_say_which_limit_in_plain_words() {
        let ring = "apiVersion: ringops/v1\nkind: Ring\nmetadata: {name: r}\nspec:\n  values:\n";
        let nested = "[".repeat(MAX_DEPTH + 1) + &"]".repeat(MAX_DEPTH + 1);
        let deep = format!("{ring}    a: {nested}\n");
        let documents = "apiVersion: ringops/v1\n---\n".repeat(MAX_DOCUMENTS + 1);
        // A broken first document sends the file down the one-document-at-a-time path:
        // the document limit holds there too.
        let broken = format!("kind: [\n---\n{documents}");
        let mut bomb = format!("{ring}    a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
        for i in 1..9 {
            let refs = vec![format!("*a{}", i - 1); 10].join(", ");
            bomb.push_str(&format!("    a{i}: &a{i} [{refs}]\n"));
        }
        for (text, limit) in [
            (deep, format!("more than {MAX_DEPTH} levels deep")),
            (documents, format!("more than {MAX_DOCUMENTS} documents")),
            (broken, format!("more than {MAX_DOCUMENTS} documents")),
            (bomb, format!("more than {MAX_NODES} values")),
        ] {
            let (_, diags) = parse(&text);
            assert_eq!(diags.len(), 1, "{diags:?}");
            let message = &diags[0].message;
            assert_eq!(diags[0].code, "yaml-budget", "{message}");
            assert!(message.contains(&limit), "{message}");
            assert!(
                message.contains("cannot exhaust its memory and time"),
                "{message}"
            );
            assert!(!message.contains('{'), "{message}");
        }
    }

    #[test]
    fn spec_before_kind_is_an_error() {
        let (_, diags) =
            parse("apiVersion: ringops/v1\nspec: {}\nkind: Ring\nmetadata: {name: d}\n");
        assert!(
            diags[0].message.contains("`kind` must come before `spec`"),
            "{diags:?}"
        );
    }
}
