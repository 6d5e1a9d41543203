//! Who is asking: an approver's identity comes from their token, never from a flag. The
//! configuration lists approvers by the sha256 of their token; the CLI reads the token
//! from `--token-file` or `RINGOPS_TOKEN` and looks its hash up in constant time.

use serde::Deserialize;
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};

/// `[[approvers]]` in `ringops.toml`.
#[derive(Clone, Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ApproverEntry {
    /// The name approvals are recorded under (matches a ring's `approvals.approvers`).
    pub name: String,
    /// Hex sha256 of the approver's token (`printf %s TOKEN | sha256sum`).
    pub token_sha256: String,
    /// May promote with `--emergency`, bypassing windows and gates.
    #[serde(default)]
    pub emergency: bool,
}

/// Why no identity could be established.
#[derive(Debug, thiserror::Error)]
pub enum IdentityError {
    /// Neither `--token-file` nor `RINGOPS_TOKEN` was given.
    #[error("this needs an approver token: --token-file FILE or RINGOPS_TOKEN")]
    NoToken,
    /// The token file could not be read.
    #[error("cannot read the token file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The token matches no configured approver (the token is never shown).
    #[error("the token does not belong to any approver in the configuration")]
    Unknown,
}

/// The token from `file`, else from `RINGOPS_TOKEN`; surrounding whitespace ignored.
pub fn read_token(file: Option<&Path>) -> Result<String, IdentityError> {
    let text = match file {
        Some(path) => std::fs::read_to_string(path).map_err(|source| IdentityError::Read {
            path: path.to_owned(),
            source,
        })?,
        None => std::env::var("RINGOPS_TOKEN").map_err(|_| IdentityError::NoToken)?,
    };
    let token = text.trim();
    if token.is_empty() {
        return Err(IdentityError::NoToken);
    }
    Ok(token.to_owned())
}

/// The approver whose token hash matches `token`. Every entry is compared, each in
/// constant time, so the time taken says nothing about which or how much matched.
pub fn identify<'a>(
    approvers: &'a [ApproverEntry],
    token: &str,
) -> Result<&'a ApproverEntry, IdentityError> {
    let digest = Sha256::digest(token.as_bytes());
    let mut found = None;
    for entry in approvers {
        let Ok(want) = hex::decode(entry.token_sha256.trim()) else {
            continue;
        };
        let matches = crate::daemon::webhook::Secret::new(want).is_some_and(|w| w.matches(&digest));
        if matches && found.is_none() {
            found = Some(entry);
        }
    }
    found.ok_or(IdentityError::Unknown)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(name: &str, token: &str, emergency: bool) -> ApproverEntry {
        ApproverEntry {
            name: name.into(),
            token_sha256: hex::encode(Sha256::digest(token.as_bytes())),
            emergency,
        }
    }

    #[test]
    fn a_token_names_its_approver_and_nothing_else_does() {
        let approvers = [
            entry("alice", "alice-token", true),
            entry("bob", "bob-token", false),
        ];
        assert_eq!(identify(&approvers, "bob-token").unwrap().name, "bob");
        assert!(identify(&approvers, "alice-token").unwrap().emergency);
        assert!(matches!(
            identify(&approvers, "bob"),
            Err(IdentityError::Unknown)
        ));
        let text = identify(&approvers, "guess").unwrap_err().to_string();
        assert!(!text.contains("guess"), "{text}");
    }

    #[test]
    fn a_malformed_hash_matches_nothing() {
        let mut bad = entry("eve", "x", false);
        bad.token_sha256 = "not hex".into();
        assert!(identify(&[bad], "x").is_err());
    }

    #[test]
    fn tokens_come_from_a_file_trimmed() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("token");
        std::fs::write(&file, "  s3cret\n").unwrap();
        assert_eq!(read_token(Some(&file)).unwrap(), "s3cret");
        std::fs::write(&file, "\n").unwrap();
        assert!(matches!(
            read_token(Some(&file)),
            Err(IdentityError::NoToken)
        ));
        assert!(matches!(
            read_token(Some(&dir.path().join("missing"))),
            Err(IdentityError::Read { .. })
        ));
    }
}
