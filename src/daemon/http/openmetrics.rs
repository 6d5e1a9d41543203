//! A small OpenMetrics text parser for tests: checks what a scraper relies on (an
//! `# EOF` end, a `# TYPE` before each family's samples, families not interleaved, sample
//! names that fit their type, well-formed labels and values, complete histograms) and
//! returns the samples.

use std::collections::{BTreeMap, BTreeSet};

/// One sample line.
#[derive(Clone, Debug, Default, PartialEq)]
pub(crate) struct Sample {
    /// The sample's name, with its suffix (`_total`, `_bucket`, ...).
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

#[derive(Default)]
struct Family {
    name: String,
    kind: Option<String>,
}

/// The value of the sample with exactly this name and these labels.
pub(crate) fn find(samples: &[Sample], name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let wanted: BTreeMap<String, String> = labels
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    samples
        .iter()
        .find(|s| s.name == name && s.labels == wanted)
        .map(|s| s.value)
}

/// Parses an exposition, or says which line breaks the format and why.
pub(crate) fn parse(text: &str) -> Result<Vec<Sample>, String> {
    let body = text
        .strip_suffix("# EOF\n")
        .or_else(|| text.strip_suffix("# EOF"))
        .ok_or("the exposition does not end with `# EOF`")?;
    let mut seen = BTreeSet::new();
    let mut family = Family::default();
    let mut samples = Vec::new();
    for (n, line) in body.lines().enumerate() {
        let at = |e: String| format!("line {}: {e}: {line:?}", n + 1);
        if let Some(meta) = line.strip_prefix("# ") {
            metadata(meta, &mut family, &mut seen).map_err(at)?;
        } else {
            let sample = sample(line).map_err(at)?;
            fits(&sample.name, &family).map_err(at)?;
            samples.push(sample);
        }
    }
    complete_histograms(&samples, &seen)?;
    Ok(samples)
}

fn metadata(
    meta: &str,
    family: &mut Family,
    seen: &mut BTreeSet<(String, String)>,
) -> Result<(), String> {
    let mut parts = meta.splitn(3, ' ');
    let (keyword, name, rest) = (parts.next(), parts.next(), parts.next());
    let (Some(keyword), Some(name)) = (keyword, name) else {
        return Err("a comment that is not HELP, TYPE or UNIT".into());
    };
    valid_name(name)?;
    if name != family.name {
        if seen.iter().any(|(f, _)| f == name) {
            return Err(format!("family {name} appears twice"));
        }
        *family = Family {
            name: name.to_owned(),
            kind: None,
        };
    }
    match (keyword, rest) {
        ("HELP", _) => Ok(()),
        ("TYPE", Some(kind)) => {
            let known = [
                "counter",
                "gauge",
                "histogram",
                "gaugehistogram",
                "summary",
                "info",
                "stateset",
                "unknown",
            ];
            if !known.contains(&kind) || family.kind.is_some() {
                return Err(format!("bad or repeated TYPE {kind}"));
            }
            family.kind = Some(kind.to_owned());
            seen.insert((name.to_owned(), kind.to_owned()));
            Ok(())
        }
        ("UNIT", Some(unit)) if name.ends_with(&format!("_{unit}")) => Ok(()),
        _ => Err(format!("bad metadata {keyword}")),
    }
}

fn valid_name(name: &str) -> Result<(), String> {
    let mut chars = name.chars();
    let first = chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_' || c == ':');
    if first && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':') {
        Ok(())
    } else {
        Err(format!("`{name}` is not a metric name"))
    }
}

/// Whether a sample's name belongs to the current family, given its type.
fn fits(name: &str, family: &Family) -> Result<(), String> {
    let kind = family
        .kind
        .as_deref()
        .ok_or("a sample before its family's TYPE")?;
    let suffixes: &[&str] = match kind {
        "counter" => &["_total", "_created"],
        "histogram" | "gaugehistogram" => {
            &["_bucket", "_count", "_sum", "_created", "_gcount", "_gsum"]
        }
        "summary" => &["", "_count", "_sum", "_created"],
        "info" => &["_info"],
        _ => &[""],
    };
    let ok = suffixes
        .iter()
        .any(|s| name.strip_suffix(s) == Some(family.name.as_str()));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "sample {name} does not belong to {kind} {}",
            family.name
        ))
    }
}

fn sample(line: &str) -> Result<Sample, String> {
    let end = line.find(['{', ' ']).ok_or("a sample without a value")?;
    let name = &line[..end];
    valid_name(name)?;
    let mut rest = &line[end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        rest = parse_labels(inner, &mut labels)?;
    }
    let mut fields = rest
        .strip_prefix(' ')
        .ok_or("no space before the value")?
        .split(' ');
    let value = number(fields.next().unwrap_or_default())?;
    if let Some(timestamp) = fields.next() {
        number(timestamp)?;
    }
    if fields.next().is_some() {
        return Err("trailing fields".into());
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Parses `k="v",...}` and returns what follows the closing brace.
fn parse_labels<'l>(
    mut rest: &'l str,
    labels: &mut BTreeMap<String, String>,
) -> Result<&'l str, String> {
    loop {
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let eq = rest.find("=\"").ok_or("a label without =\"")?;
        let key = &rest[..eq];
        if key.is_empty() || key.contains(':') {
            return Err(format!("bad label name {key:?}"));
        }
        valid_name(key)?;
        let mut value = String::new();
        let mut chars = rest[eq + 2..].char_indices();
        let close = loop {
            match chars.next() {
                Some((i, '"')) => break eq + 2 + i,
                Some((_, '\\')) => match chars.next() {
                    Some((_, 'n')) => value.push('\n'),
                    Some((_, c @ ('\\' | '"'))) => value.push(c),
                    _ => return Err("a bad escape in a label value".into()),
                },
                Some((_, c)) => value.push(c),
                None => return Err("an unterminated label value".into()),
            }
        };
        if labels.insert(key.to_owned(), value).is_some() {
            return Err(format!("label {key} given twice"));
        }
        rest = &rest[close + 1..];
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
}

fn number(text: &str) -> Result<f64, String> {
    match text {
        "+Inf" => Ok(f64::INFINITY),
        "-Inf" => Ok(f64::NEG_INFINITY),
        "NaN" => Ok(f64::NAN),
        _ if text
            .chars()
            .all(|c| c.is_ascii_digit() || "+-.eE".contains(c)) =>
        {
            text.parse()
                .map_err(|_| format!("`{text}` is not a number"))
        }
        _ => Err(format!("`{text}` is not a number")),
    }
}

/// Every histogram series has cumulative buckets ending with `+Inf` equal to `_count`,
/// and a `_sum`.
fn complete_histograms(
    samples: &[Sample],
    seen: &BTreeSet<(String, String)>,
) -> Result<(), String> {
    for (family, _) in seen.iter().filter(|(_, kind)| kind == "histogram") {
        let series = |suffix: &str| {
            let name = format!("{family}{suffix}");
            samples.iter().filter(move |s| s.name == name)
        };
        for count in series("_count") {
            let mut last = 0.0;
            let mut inf = None;
            for bucket in series("_bucket") {
                let mut labels = bucket.labels.clone();
                let le = labels.remove("le").ok_or("a bucket without le")?;
                if labels != count.labels {
                    continue;
                }
                if bucket.value < last {
                    return Err(format!("{family}: buckets are not cumulative"));
                }
                last = bucket.value;
                if le == "+Inf" {
                    inf = Some(bucket.value);
                }
            }
            if inf != Some(count.value) {
                return Err(format!("{family}: the +Inf bucket is not _count"));
            }
            if !series("_sum").any(|s| s.labels == count.labels) {
                return Err(format!("{family}: no _sum"));
            }
        }
        if series("_bucket").next().is_some() && series("_count").next().is_none() {
            return Err(format!("{family}: buckets without _count"));
        }
        if series("_count").next().is_some() && series("_bucket").next().is_none() {
            return Err(format!("{family}: _count without buckets"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::parse;

    #[test]
    fn the_parser_refuses_what_is_not_openmetrics() {
        assert!(parse("# TYPE a counter\na_total{b=\"\\\"x\\n\"} 1\n# EOF\n").is_ok());
        for bad in [
            "# TYPE a counter\na_total 1\n",
            "a_total 1\n# EOF\n",
            "# TYPE a counter\na 1\n# EOF\n",
            "# TYPE a gauge\na{x=\"1} 1\n# EOF\n",
            "# TYPE a gauge\na{x=\"1\",x=\"2\"} 1\n# EOF\n",
            "# TYPE a gauge\na one\n# EOF\n",
            "# TYPE a gauge\na 1\n# TYPE b gauge\nb 1\n# TYPE a gauge\na 2\n# EOF\n",
            "# TYPE a histogram\na_count 1\na_sum 1\n# EOF\n",
            "# TYPE a_seconds gauge\n# UNIT a_seconds bytes\na_seconds 1\n# EOF\n",
        ] {
            assert!(parse(bad).is_err(), "accepted {bad:?}");
        }
    }
}
