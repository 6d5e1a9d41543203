//! Settings: command-line flags > environment > `ringops.toml` > defaults, resolved in
//! one place so commands only see the result.

use crate::adapters::git::mirror::{Credentials, RepoLocation};
use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The configuration file looked for in the current directory.
pub const FILE_NAME: &str = "ringops.toml";

/// `ringops.toml` as written. Unknown keys are errors.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Repository holding the manifests: a folder, or a URL to mirror.
    pub repo: Option<PathBuf>,
    /// Folder of the manifests inside the repository.
    pub path: Option<String>,
    /// Branch the first ring tracks.
    pub branch: Option<String>,
    /// Folder for the state database, objects and local workers.
    pub state_dir: Option<PathBuf>,
    /// Folder with one file per secret.
    pub secrets_dir: Option<PathBuf>,
    /// Daemon: address of the HTTP API (`127.0.0.1:7070`).
    pub listen: Option<String>,
    /// Daemon: how often to look for a new commit without being told (`60s`).
    pub poll_interval: Option<String>,
    /// Daemon: how often to read every worker in full for drift (`60s`).
    pub drift_interval: Option<String>,
    /// Daemon: how long after a deployment failed on a worker it is tried again (`30s`).
    pub retry_backoff: Option<String>,
    /// Daemon: how long SIGTERM waits for a pass in progress before leaving it (`30s`).
    pub stop_grace: Option<String>,
    /// Daemon: file holding the Git webhook's secret (or a systemd credential's name).
    pub webhook_secret_file: Option<PathBuf>,
    /// Daemon: file holding the bearer token the HTTP API requires.
    pub api_token_file: Option<PathBuf>,
    /// Remote repository: private key for ssh URLs.
    pub ssh_key_file: Option<PathBuf>,
    /// Remote repository: file holding the token sent as the password over https.
    pub token_file: Option<PathBuf>,
    /// Remote repository: user name sent with the token or key.
    pub git_username: Option<String>,
    /// Approvers, each known by the sha256 of their token.
    #[serde(default)]
    pub approvers: Vec<super::identity::ApproverEntry>,
    /// Where deployment state changes are posted.
    #[serde(default)]
    pub notify: Vec<crate::adapters::notify::TargetConfig>,
    /// How many workers are read or switched at once (default 32).
    pub max_concurrent_workers: Option<usize>,
    /// Daemon: the HTTP API's connection cap and client timeouts (`[http]`).
    #[serde(default)]
    pub http: crate::adapters::http_server::HttpConfig,
}

pub use crate::adapters::config_file::ConfigError;

impl FileConfig {
    /// How many workers are read or switched at once: `max_concurrent_workers`, at
    /// least 1, else the engine's default.
    pub fn concurrency(&self) -> usize {
        self.max_concurrent_workers
            .unwrap_or(crate::engine::MAX_CONCURRENT_WORKERS)
            .max(1)
    }
}

impl FileConfig {
    /// Reads `explicit`, or `ringops.toml` in `cwd` when it exists, or nothing.
    /// Relative paths in the file are taken from the file's folder.
    pub fn find(explicit: Option<&Path>, cwd: &Path) -> Result<Self, ConfigError> {
        let path = match explicit {
            Some(p) => p.to_owned(),
            None => {
                let default = cwd.join(FILE_NAME);
                if !default.is_file() {
                    return Ok(FileConfig::default());
                }
                default
            }
        };
        let mut config: Self = crate::adapters::config_file::read(&path)?;
        let base = path.parent().unwrap_or(Path::new("."));
        config.rebase(base);
        Ok(config)
    }

    /// Parses the text of a configuration file named `path` (for messages).
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        crate::adapters::config_file::parse(path, text)
    }

    fn rebase(&mut self, base: &Path) {
        let url = |p: &PathBuf| matches!(RepoLocation::parse(p), Ok(RepoLocation::Remote(_)));
        let repo = self.repo.as_mut().filter(|p| !url(p));
        let paths = [
            repo,
            self.state_dir.as_mut(),
            self.secrets_dir.as_mut(),
            self.webhook_secret_file.as_mut(),
            self.api_token_file.as_mut(),
            self.ssh_key_file.as_mut(),
            self.token_file.as_mut(),
        ];
        for p in paths.into_iter().flatten() {
            if p.is_relative() {
                *p = base.join(&*p);
            }
        }
    }
}

impl FileConfig {
    /// The repository `flag` names (it wins) or the file does, else `cwd`, with the
    /// file's credentials when it is remote.
    pub fn repo_location(
        &self,
        flag: Option<&Path>,
        cwd: &Path,
    ) -> Result<RepoLocation, crate::adapters::git::mirror::MirrorError> {
        let text = flag.or(self.repo.as_deref()).unwrap_or(cwd);
        let mut location = RepoLocation::parse(text)?;
        if let RepoLocation::Remote(remote) = &mut location {
            remote.credentials = Credentials {
                ssh_key_file: self
                    .ssh_key_file
                    .clone()
                    .or_else(|| credential("git-ssh-key")),
                token_file: self.token_file.clone().or_else(|| credential("git-token")),
                username: self.git_username.clone(),
            };
        }
        Ok(location)
    }
}

/// The systemd credential `name` (`$CREDENTIALS_DIRECTORY/name`) when there is one.
pub fn credential(name: &str) -> Option<PathBuf> {
    let path = PathBuf::from(std::env::var_os("CREDENTIALS_DIRECTORY")?).join(name);
    path.is_file().then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_keys_are_located() {
        let err = FileConfig::parse(
            Path::new("ringops.toml"),
            "repo = \"/srv/fleet\"\nstate_dri = \"/var/lib/ringops\"\n",
        )
        .unwrap_err();
        let text = err.to_string();
        assert!(
            text.starts_with("ringops.toml:2:1: unknown field `state_dri`"),
            "{text}"
        );
    }

    #[test]
    fn relative_paths_are_taken_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(FILE_NAME),
            "state_dir = \"state\"\npath = \"fleet\"\n",
        )
        .unwrap();
        let config = FileConfig::find(None, dir.path()).unwrap();
        assert_eq!(config.state_dir, Some(dir.path().join("state")));
        assert_eq!(config.path.as_deref(), Some("fleet"));
    }

    #[test]
    fn no_file_is_no_configuration() {
        let dir = tempfile::tempdir().unwrap();
        let config = FileConfig::find(None, dir.path()).unwrap();
        assert!(config.repo.is_none() && config.state_dir.is_none());
    }
}
