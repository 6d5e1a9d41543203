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
//! Every comparison is constant-time ([`Secret::signed`], [`Secret::matches`]). Owns no
//! IO; the secret and reading it from a file are [`crate::adapters::http_auth`]'s, the
//! HTTP side is `daemon::http`.

use crate::daemon::metrics::WebhookResult;
use axum::http::HeaderMap;
use std::fmt;

/// The shared secret, from the HTTP-auth adapter (re-exported for the callers that
/// name it here).
pub use crate::adapters::http_auth::Secret;

/// GitHub's signature header.
pub const GITHUB_SIGNATURE: &str = "x-hub-signature-256";
/// Gitea's (and Forgejo's) signature header.
pub const GITEA_SIGNATURE: &str = "x-gitea-signature";
/// GitLab's token header.
pub const GITLAB_TOKEN: &str = "x-gitlab-token";

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
    if !secret.signed(body, &tag) {
        return Err(WebhookError::BadSignature { style });
    }
    Ok(style)
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
