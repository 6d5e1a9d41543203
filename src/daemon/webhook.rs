//! Verification of `POST /hooks/git` calls: pure functions of the request's headers, its
//! raw body and the shared secret, and reading that secret from a file.
//!
//! Three styles are recognized, by header, in this order:
//! - Gitea (and Forgejo): `X-Gitea-Signature: <hex>`, HMAC-SHA256 of the body. Checked
//!   first because Gitea also sends GitHub's header.
//! - GitHub: `X-Hub-Signature-256: sha256=<hex>`, HMAC-SHA256 of the body.
//! - GitLab: `X-Gitlab-Token: <secret>`, the secret itself.
//!
//! The first header present decides; a request is never retried against another style.
//! Every comparison is constant-time ([`Mac::verify_slice`]; a token is compared through
//! HMACs of both sides). Owns no IO but [`read_secret`]; the HTTP side is `daemon::http`.

use crate::daemon::metrics::WebhookResult;
use axum::http::HeaderMap;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// GitHub's signature header.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// Gitea's (and Forgejo's) signature header.
pub const GITEA_SIGNATURE: &str = "x-gitea-signature";
/// GitLab's token header.
pub const GITLAB_TOKEN: &str = "x-gitlab-token";

/// A shared secret (the webhook's, or the API's bearer token). Never empty; its `Debug`
/// never shows the bytes, and it is compared only in constant time ([`Secret::matches`]).
#[derive(Clone)]
pub struct Secret(Box<[u8]>);

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

impl Secret {
    /// A secret of these bytes; `None` when there are none.
    pub fn new(bytes: impl Into<Vec<u8>>) -> Option<Self> {
        let bytes = bytes.into();
        (!bytes.is_empty()).then(|| Self(bytes.into_boxed_slice()))
    }

    /// Whether `candidate` is this secret, in time independent of where they differ:
    /// HMACs (keyed with the secret) of both are compared with [`Mac::verify_slice`].
    pub fn matches(&self, candidate: &[u8]) -> bool {
        let expected = self.mac().chain_update(&self.0).finalize().into_bytes();
        self.mac()
            .chain_update(candidate)
            .verify_slice(&expected)
            .is_ok()
    }

    /// A fresh HMAC-SHA256 keyed with the secret.
    fn mac(&self) -> HmacSha256 {
        // HMAC takes keys of any length, so this cannot fail.
        <HmacSha256 as KeyInit>::new_from_slice(&self.0).expect("HMAC accepts any key length")
    }
}

/// Why a secret file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    /// The file could not be read.
    #[error("cannot read the secret file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The file holds nothing (or only a newline).
    #[error("the secret file {path} is empty; write the shared secret into it")]
    Empty {
        /// The file.
        path: PathBuf,
    },
}

/// Reads a secret from `path` (a file, or `$CREDENTIALS_DIRECTORY/<name>` under systemd),
/// dropping one trailing newline (`\n` or `\r\n`) as editors and `echo` add it. An empty
/// secret is refused.
pub fn read_secret(path: &Path) -> Result<Secret, SecretError> {
    let mut bytes = std::fs::read(path).map_err(|source| SecretError::Read {
        path: path.to_owned(),
        source,
    })?;
    if bytes.last() == Some(&b'\n') {
        bytes.pop();
        if bytes.last() == Some(&b'\r') {
            bytes.pop();
        }
    }
    Secret::new(bytes).ok_or_else(|| SecretError::Empty {
        path: path.to_owned(),
    })
}

/// Which forge's scheme a call was signed with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Style {
    /// `X-Hub-Signature-256`.
    GitHub,
    /// `X-Gitea-Signature`.
    Gitea,
    /// `X-Gitlab-Token`.
    GitLab,
}

impl fmt::Display for Style {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::GitHub => "GitHub",
            Self::Gitea => "Gitea",
            Self::GitLab => "GitLab",
        })
    }
}

/// A call that proved it knows the secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Verified {
    /// How it was signed.
    pub style: Style,
    /// The pushed ref (`refs/heads/main`), when the body is JSON with a `ref`.
    pub git_ref: Option<String>,
}

/// Why a call is refused.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum WebhookError {
    /// None of the three headers.
    #[error("no signature: send X-Hub-Signature-256, X-Gitea-Signature or X-Gitlab-Token")]
    MissingSignature,
    /// A header that is not what its style sends.
    #[error("malformed {header}: {reason}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The signature or token does not match the secret.
    #[error("the {style} signature does not match")]
    BadSignature {
        /// The style checked.
        style: Style,
    },
}

impl WebhookError {
    /// The metrics label of this refusal.
    pub fn result(&self) -> WebhookResult {
        match self {
            Self::MissingSignature => WebhookResult::MissingSignature,
            Self::Malformed { .. } => WebhookResult::Malformed,
            Self::BadSignature { .. } => WebhookResult::BadSignature,
        }
    }
}

/// Checks a call's signature (or token) against `secret`: which style matched and the
/// pushed ref, or why it is refused.
pub fn verify(headers: &HeaderMap, body: &[u8], secret: &Secret) -> Result<Verified, WebhookError> {
    let style = if let Some(hex) = header(headers, GITEA_SIGNATURE)? {
        check_hmac(secret, body, hex, GITEA_SIGNATURE, Style::Gitea)?
    } else if let Some(value) = header(headers, GITHUB_SIGNATURE)? {
        let hex = value
            .strip_prefix("sha256=")
            .ok_or(WebhookError::Malformed {
                header: GITHUB_SIGNATURE,
                reason: "expected sha256=<hex>",
            })?;
        check_hmac(secret, body, hex, GITHUB_SIGNATURE, Style::GitHub)?
    } else if let Some(token) = header(headers, GITLAB_TOKEN)? {
        if !secret.matches(token.as_bytes()) {
            return Err(WebhookError::BadSignature {
                style: Style::GitLab,
            });
        }
        Style::GitLab
    } else {
        return Err(WebhookError::MissingSignature);
    };
    Ok(Verified {
        style,
        git_ref: pushed_ref(body),
    })
}

/// The one value of header `name`, if present.
fn header<'h>(headers: &'h HeaderMap, name: &'static str) -> Result<Option<&'h str>, WebhookError> {
    let mut values = headers.get_all(name).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    let malformed = |reason| WebhookError::Malformed {
        header: name,
        reason,
    };
    if values.next().is_some() {
        return Err(malformed("given more than once"));
    }
    value
        .to_str()
        .map(Some)
        .map_err(|_| malformed("not visible ASCII"))
}

/// Verifies a hex HMAC-SHA256 of `body` in constant time.
fn check_hmac(
    secret: &Secret,
    body: &[u8],
    hex: &str,
    header: &'static str,
    style: Style,
) -> Result<Style, WebhookError> {
    let tag = hex::decode(hex.trim()).map_err(|_| WebhookError::Malformed {
        header,
        reason: "not hexadecimal",
    })?;
    if tag.len() != 32 {
        return Err(WebhookError::Malformed {
            header,
            reason: "expected 64 hex digits (HMAC-SHA256)",
        });
    }
    secret
        .mac()
        .chain_update(body)
        .verify_slice(&tag)
        .map(|()| style)
        .map_err(|_| WebhookError::BadSignature { style })
}

/// The `ref` of a push event's JSON body (`refs/heads/main`), if any.
pub fn pushed_ref(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Push {
        #[serde(rename = "ref")]
        git_ref: Option<String>,
    }
    serde_json::from_slice::<Push>(body).ok()?.git_ref
}

#[cfg(test)]
mod tests;
