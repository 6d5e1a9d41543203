//! Host secrets: `--secrets-dir`, then `$CREDENTIALS_DIRECTORY` (systemd), then
//! `RINGOPS_SECRET_<NAME>`. Values are handed to the compiler and never logged.

use crate::pipeline::SecretSource;
use crate::pipeline::params::{is_valid_secret_name, secret_env_name};
use std::path::PathBuf;

/// Secrets read from the daemon host.
#[derive(Clone, Debug, Default)]
pub struct HostSecrets {
    dirs: Vec<PathBuf>,
}

impl HostSecrets {
    /// Looks in `secrets_dir` (if given), then `$CREDENTIALS_DIRECTORY`, then the environment.
    pub fn new(secrets_dir: Option<PathBuf>) -> Self {
        let mut dirs: Vec<PathBuf> = secrets_dir.into_iter().collect();
        if let Some(creds) = std::env::var_os("CREDENTIALS_DIRECTORY") {
            dirs.push(PathBuf::from(creds));
        }
        HostSecrets { dirs }
    }

    /// Every secret value this host could resolve (files of the folders with a valid
    /// secret name, and `RINGOPS_SECRET_*`): what output of hooks run without the
    /// compiled bundle at hand (restores, rollbacks, drift repair) must never show.
    pub fn all_values(&self) -> Vec<String> {
        const MAX: u64 = 1 << 20;
        let mut out = Vec::new();
        for dir in &self.dirs {
            let Ok(entries) = std::fs::read_dir(dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let name = entry.file_name();
                let valid = name.to_str().is_some_and(is_valid_secret_name);
                let small = entry
                    .metadata()
                    .is_ok_and(|m| m.is_file() && m.len() <= MAX);
                if valid
                    && small
                    && let Ok(value) = std::fs::read_to_string(entry.path())
                {
                    out.push(trim_newline(value));
                }
            }
        }
        for (key, value) in std::env::vars() {
            if key.starts_with("RINGOPS_SECRET_") {
                out.push(value);
            }
        }
        out.retain(|v| !v.is_empty());
        out.sort();
        out.dedup();
        out
    }
}

impl SecretSource for HostSecrets {
    fn secret(&self, name: &str) -> Option<String> {
        if !is_valid_secret_name(name) {
            return None;
        }
        for dir in &self.dirs {
            if let Ok(value) = std::fs::read_to_string(dir.join(name)) {
                return Some(trim_newline(value));
            }
        }
        std::env::var(secret_env_name(name)).ok()
    }
}

/// Drops one trailing newline, which editors and `echo` add to secret files.
fn trim_newline(mut value: String) -> String {
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    value
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_win_and_lose_one_newline() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("db"), "s3cret\n").unwrap();
        let secrets = HostSecrets::new(Some(dir.path().to_owned()));
        assert_eq!(secrets.secret("db").as_deref(), Some("s3cret"));
        assert_eq!(secrets.secret("../db"), None);
        assert_eq!(secrets.secret("missing-secret-for-test"), None);
        std::fs::write(dir.path().join("api"), "t0ken").unwrap();
        std::fs::write(dir.path().join("not a name"), "ignored").unwrap();
        assert_eq!(secrets.all_values(), ["s3cret", "t0ken"]);
    }
}
