//! Remote repositories: a bare mirror under the state folder, fetched with git2 over
//! https, ssh, git or file URLs. Credentials come from files and never reach a message.

use git2::{Cred, CredentialType, FetchOptions, FetchPrune, RemoteCallbacks, Repository};
use sha2::{Digest, Sha256};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Where the manifests' repository is: a folder here, or a URL to mirror.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RepoLocation {
    /// A repository on this host (bare or not), read in place.
    Local(PathBuf),
    /// A repository elsewhere, read through a mirror under the state folder.
    Remote(Remote),
}

impl RepoLocation {
    /// A URL (`https://`, `ssh://`, `git://`, `file://`, or scp-like `git@host:path`) is
    /// remote; anything else is a local path. A password inside a URL is refused: it
    /// would be shown wherever the URL is.
    pub fn parse(text: &Path) -> Result<Self, MirrorError> {
        let Some(s) = text.to_str().filter(|s| looks_remote(s)) else {
            return Ok(RepoLocation::Local(text.to_owned()));
        };
        if s.contains("://") {
            refuse_credentials_in(s)?;
        }
        Ok(RepoLocation::Remote(Remote {
            url: s.to_owned(),
            credentials: Credentials::default(),
        }))
    }

    /// The path to open with git2: the folder itself, or the mirror of a remote.
    pub fn open_path(&self, state_dir: &Path) -> PathBuf {
        match self {
            RepoLocation::Local(dir) => dir.clone(),
            RepoLocation::Remote(remote) => remote.mirror_dir(state_dir),
        }
    }
}

/// Refuses a URL carrying a password, or, over http(s), any user (a token is often
/// given as the user name): whatever is in a URL ends up in messages.
fn refuse_credentials_in(text: &str) -> Result<(), MirrorError> {
    let Ok(url) = reqwest::Url::parse(text) else {
        return Err(MirrorError::BadUrl);
    };
    let web = matches!(url.scheme(), "http" | "https");
    if url.password().is_some() || (web && !url.username().is_empty()) {
        return Err(MirrorError::PasswordInUrl);
    }
    Ok(())
}

fn looks_remote(s: &str) -> bool {
    if let Some((scheme, _)) = s.split_once("://") {
        return !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+');
    }
    // scp-like `user@host:path`: an `@` and a `:` before any `/`.
    let head = s.split('/').next().unwrap_or_default();
    head.contains('@') && head.contains(':')
}

/// How to authenticate to a remote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Credentials {
    /// Private key for ssh URLs (no passphrase; the agent is used when absent).
    pub ssh_key_file: Option<PathBuf>,
    /// File holding a token, sent as the password over https.
    pub token_file: Option<PathBuf>,
    /// User name sent with the token (default `ringops`; most forges accept any).
    pub username: Option<String>,
}

/// A remote repository and how to reach it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Remote {
    /// The URL, without a password.
    pub url: String,
    /// How to authenticate.
    pub credentials: Credentials,
}

/// Why a mirror could not be brought up to date.
#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    /// The configured URL carries a password (or, over http(s), a user).
    #[error(
        "the repository URL must not carry credentials (a password, or a user over https); put the token in token_file"
    )]
    PasswordInUrl,
    /// The configured URL does not parse (it is not shown: it may hold a secret).
    #[error("the repository URL is not a valid URL")]
    BadUrl,
    /// A token would be sent in clear.
    #[error("token_file is only sent over https (or plain http to this host's loopback)")]
    TokenInClear,
    /// A credential file could not be read.
    #[error("cannot read the Git credential {path}")]
    Credential {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The mirror folder could not be made.
    #[error("cannot create the mirror {path}")]
    Create {
        /// The folder.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// git2 failed to fetch (its message names the URL, never a credential).
    #[error("cannot fetch {url}: {message}")]
    Fetch {
        /// The remote.
        url: String,
        /// git2's explanation.
        message: String,
    },
}

/// Whether a token may be sent to `url`: over https, or over http to the loopback.
fn token_may_travel(url: &str) -> bool {
    let Ok(url) = reqwest::Url::parse(url) else {
        return false;
    };
    match url.scheme() {
        "https" => true,
        "http" => matches!(url.host_str(), Some("127.0.0.1" | "localhost" | "[::1]")),
        _ => true,
    }
}

/// How long connecting to a remote, and then waiting for any answer, may take.
const NETWORK_TIMEOUT_MS: i32 = 30_000;

/// Bounds libgit2's network waits (connect and each read), which otherwise have none: a
/// remote that accepts and then stalls must not hang a fetch forever.
///
/// # Safety
/// Sets a libgit2 global without synchronization: call it before any thread starts
/// (first thing in `main`).
pub unsafe fn bound_network_waits() {
    // SAFETY: the caller guarantees no other thread exists yet, so nothing reads or
    // writes these globals concurrently.
    unsafe {
        let _ = git2::opts::set_server_connect_timeout_in_milliseconds(NETWORK_TIMEOUT_MS);
        let _ = git2::opts::set_server_timeout_in_milliseconds(NETWORK_TIMEOUT_MS);
    }
}

/// How long one fetch may take before it is abandoned.
const FETCH_DEADLINE: Duration = Duration::from_secs(300);

impl Remote {
    /// `<state_dir>/mirrors/<digest of the URL>.git`.
    pub fn mirror_dir(&self, state_dir: &Path) -> PathBuf {
        let digest = hex::encode(Sha256::digest(self.url.as_bytes()));
        state_dir
            .join("mirrors")
            .join(format!("{}.git", &digest[..16]))
    }

    /// Brings the mirror's branches and tags level with the remote's (force-pushes and
    /// deleted branches included) and points its HEAD at the remote's default branch.
    pub fn fetch(&self, state_dir: &Path) -> Result<(), MirrorError> {
        let dir = self.mirror_dir(state_dir);
        let repo = self.open_or_init(&dir)?;
        let token = self.read_token()?;
        let fetch_error = |e: git2::Error| MirrorError::Fetch {
            url: self.url.clone(),
            message: e.message().to_owned(),
        };
        let mut remote = repo.remote_anonymous(&self.url).map_err(fetch_error)?;
        let mut options = FetchOptions::new();
        options
            .remote_callbacks(self.callbacks(token))
            .prune(FetchPrune::On)
            .download_tags(git2::AutotagOption::None);
        remote
            .fetch(
                &["+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"],
                Some(&mut options),
                None,
            )
            .map_err(fetch_error)?;
        if let Ok(head) = remote.default_branch()
            && let Ok(name) = head.as_str()
            && repo.find_reference(name).is_ok()
        {
            repo.set_head(name).map_err(fetch_error)?;
        }
        Ok(())
    }

    fn open_or_init(&self, dir: &Path) -> Result<Repository, MirrorError> {
        if let Ok(repo) = Repository::open_bare(dir) {
            return Ok(repo);
        }
        std::fs::create_dir_all(dir).map_err(|source| MirrorError::Create {
            path: dir.to_owned(),
            source,
        })?;
        Repository::init_bare(dir).map_err(|e| MirrorError::Create {
            path: dir.to_owned(),
            source: std::io::Error::other(e.message().to_owned()),
        })
    }

    fn read_token(&self) -> Result<Option<String>, MirrorError> {
        let Some(path) = &self.credentials.token_file else {
            return Ok(None);
        };
        if !token_may_travel(&self.url) {
            return Err(MirrorError::TokenInClear);
        }
        let text = std::fs::read_to_string(path).map_err(|source| MirrorError::Credential {
            path: path.clone(),
            source,
        })?;
        Ok(Some(text.trim().to_owned()))
    }

    /// Offers each kind of credential once (libgit2 asks again after a refusal, and
    /// would loop on a wrong one), and abandons a transfer past the deadline.
    fn callbacks(&self, token: Option<String>) -> RemoteCallbacks<'static> {
        let mut callbacks = RemoteCallbacks::new();
        let key = self.credentials.ssh_key_file.clone();
        let user = self.credentials.username.clone();
        let mut offered = CredentialType::empty();
        callbacks.credentials(move |_url, from_url, allowed| {
            let user = user.as_deref().or(from_url);
            if allowed.contains(CredentialType::USERNAME)
                && !offered.contains(CredentialType::USERNAME)
            {
                offered |= CredentialType::USERNAME;
                return Cred::username(user.unwrap_or("git"));
            }
            if allowed.contains(CredentialType::SSH_KEY)
                && !offered.contains(CredentialType::SSH_KEY)
            {
                offered |= CredentialType::SSH_KEY;
                let user = user.unwrap_or("git");
                return match &key {
                    Some(key) => Cred::ssh_key(user, None, key, None),
                    None => Cred::ssh_key_from_agent(user),
                };
            }
            if allowed.contains(CredentialType::USER_PASS_PLAINTEXT)
                && !offered.contains(CredentialType::USER_PASS_PLAINTEXT)
                && let Some(token) = &token
            {
                offered |= CredentialType::USER_PASS_PLAINTEXT;
                return Cred::userpass_plaintext(user.unwrap_or("ringops"), token);
            }
            Err(git2::Error::from_str(
                "authentication failed (check ssh_key_file or token_file)",
            ))
        });
        let started = Instant::now();
        callbacks.transfer_progress(move |_| started.elapsed() < FETCH_DEADLINE);
        callbacks
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> RepoLocation {
        RepoLocation::parse(Path::new(s)).unwrap()
    }

    #[test]
    fn urls_are_remote_and_paths_local() {
        for url in [
            "https://git.example.com/ops/fleet.git",
            "ssh://git@git.example.com/ops/fleet.git",
            "git@git.example.com:ops/fleet.git",
            "git://127.0.0.1:9418/fleet.git",
            "file:///srv/git/fleet.git",
        ] {
            assert!(matches!(parse(url), RepoLocation::Remote(_)), "{url}");
        }
        for path in ["/srv/git/fleet.git", "fleet", "./a:b", "dir/x@y:z"] {
            assert_eq!(
                parse(path),
                RepoLocation::Local(PathBuf::from(path)),
                "{path}"
            );
        }
    }

    #[test]
    fn a_password_in_the_url_is_refused() {
        let err = RepoLocation::parse(Path::new("https://bot:hunter2@example.com/f.git"))
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("token_file"), "{err}");
        for leaky in [
            "https://ghp_T0KEN@example.com/f.git",
            "https://bot:a/b@example.com/f.git",
            "ssh://git:pw@example.com/f.git",
        ] {
            let err = RepoLocation::parse(Path::new(leaky))
                .unwrap_err()
                .to_string();
            assert!(!err.contains("T0KEN") && !err.contains("a/b"), "{err}");
        }
        assert!(RepoLocation::parse(Path::new("ssh://git@example.com/f.git")).is_ok());
    }

    #[test]
    fn a_token_is_not_sent_in_clear() {
        assert!(token_may_travel("https://git.example.com/f.git"));
        assert!(token_may_travel("http://127.0.0.1:8080/f.git"));
        assert!(!token_may_travel("http://git.example.com/f.git"));
    }

    #[test]
    fn each_url_has_its_own_mirror() {
        let a = Remote {
            url: "https://a/x.git".into(),
            credentials: Credentials::default(),
        };
        let b = Remote {
            url: "https://b/x.git".into(),
            ..a.clone()
        };
        let state = Path::new("/state");
        assert_ne!(a.mirror_dir(state), b.mirror_dir(state));
        assert!(a.mirror_dir(state).starts_with("/state/mirrors"));
    }
}
