//! Authentication shared by ringops' HTTP servers (the daemon's API and webhook, the
//! worker agent): the [`Secret`] type and reading it from a file, the bearer-token check
//! and its `WWW-Authenticate` challenge, and the loopback test that decides whether a
//! server may listen without TLS or a token. Owns no routes and no state; the daemon
//! and the agent both import it from here, neither from the other.

use axum::http::{HeaderMap, HeaderValue, header};
use axum::response::Response;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

type HmacSha256 = Hmac<Sha256>;

/// A shared secret (the webhook's, the API's bearer token, an agent's token). Never
/// empty; its `Debug` never shows the bytes, and it is compared only in constant time
/// ([`Secret::matches`], [`Secret::signed`]).
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

    /// Whether `tag` is the HMAC-SHA256 of `message` keyed with this secret (constant
    /// time).
    pub fn signed(&self, message: &[u8], tag: &[u8]) -> bool {
        self.mac().chain_update(message).verify_slice(tag).is_ok()
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

/// The token of an `Authorization: Bearer <token>` value.
pub fn bearer(value: &str) -> Option<&str> {
    let (scheme, token) = value.split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

/// Whether `headers` carry `Authorization: Bearer` with `token` (constant time).
pub fn presents(headers: &HeaderMap, token: &Secret) -> bool {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer)
        .is_some_and(|p| token.matches(p.as_bytes()))
}

/// `response` (a 401) with the `WWW-Authenticate: Bearer` challenge.
pub fn challenge(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    response
}

/// Whether `addr` is reachable only from this host: 127.0.0.0/8, `::1`, or loopback IPv4
/// mapped into IPv6 (`::ffff:127.0.0.1`); not the unspecified `0.0.0.0` or `::`. The
/// daemon refuses any other listen address unless an API token is set; the agent serves
/// plain HTTP only on such an address.
pub fn is_loopback(addr: &SocketAddr) -> bool {
    addr.ip().to_canonical().is_loopback()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(bytes: &[u8]) -> Secret {
        Secret::new(bytes).expect("not empty")
    }

    #[test]
    fn secrets_compare_whole_and_never_show() {
        let s = secret(b"hunter2");
        assert!(s.matches(b"hunter2"));
        assert!(!s.matches(b"hunter"));
        assert!(!s.matches(b""));
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert!(Secret::new(Vec::new()).is_none());
    }

    #[test]
    fn a_signature_is_the_hmac_of_the_message() {
        let s = secret(b"key");
        let tag = s.mac().chain_update(b"message").finalize().into_bytes();
        assert!(s.signed(b"message", &tag));
        assert!(!s.signed(b"massage", &tag));
        assert!(!secret(b"other").signed(b"message", &tag));
        assert!(!s.signed(b"message", &tag[..31]));
    }

    #[test]
    fn secret_files_lose_one_trailing_newline() {
        let dir = tempfile::tempdir().expect("temp dir");
        let file = dir.path().join("secret");
        for (content, expected) in [
            (&b"abc\n"[..], &b"abc"[..]),
            (b"abc\r\n", b"abc"),
            (b"abc\n\n", b"abc\n"),
            (b"abc", b"abc"),
            (b" abc ", b" abc "),
        ] {
            std::fs::write(&file, content).expect("write");
            let s = read_secret(&file).expect("read");
            assert!(s.matches(expected), "{content:?}");
        }
        for empty in [&b""[..], b"\n", b"\r\n"] {
            std::fs::write(&file, empty).expect("write");
            let err = read_secret(&file).expect_err("empty");
            assert!(matches!(err, SecretError::Empty { .. }), "{err:?}");
        }
        let err = read_secret(&dir.path().join("missing")).expect_err("missing");
        assert!(matches!(err, SecretError::Read { .. }), "{err:?}");
        assert!(err.to_string().contains("missing"), "{err}");
    }

    #[test]
    fn a_bearer_token_is_found_in_any_case_and_checked_whole() {
        assert_eq!(bearer("Bearer t0ken"), Some("t0ken"));
        assert_eq!(bearer("bearer  t0ken "), Some("t0ken"));
        assert_eq!(bearer("Basic dXNlcg=="), None);
        assert_eq!(bearer("Bearer"), None);
        let mut headers = HeaderMap::new();
        assert!(!presents(&headers, &secret(b"t0ken")));
        let value = HeaderValue::from_static("Bearer t0ken");
        headers.insert(header::AUTHORIZATION, value);
        assert!(presents(&headers, &secret(b"t0ken")));
        assert!(!presents(&headers, &secret(b"t0ke")));
        let response = challenge(Response::default());
        let sent = response.headers().get(header::WWW_AUTHENTICATE);
        assert_eq!(sent, Some(&HeaderValue::from_static("Bearer")));
    }

    #[test]
    fn loopback_addresses() {
        for (addr, expected) in [
            ("127.0.0.1:7070", true),
            ("127.8.0.1:1", true),
            ("[::1]:7070", true),
            ("[::ffff:127.0.0.1]:7070", true),
            ("0.0.0.0:7070", false),
            ("[::]:7070", false),
            ("192.168.1.4:7070", false),
            ("[::ffff:10.0.0.1]:7070", false),
        ] {
            let addr: SocketAddr = addr.parse().expect("address");
            assert_eq!(is_loopback(&addr), expected, "{addr}");
        }
    }
}
